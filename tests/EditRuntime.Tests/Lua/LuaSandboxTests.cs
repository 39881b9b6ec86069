using EditRuntime.Lua;
using NUnit.Framework;

namespace EditRuntime.Tests.Lua;

/// <summary>Shared helpers: a host whose print() goes to a StringWriter, chunks named "test.lua".</summary>
internal static class LuaTesting
{
    public static LuaHost Host(StringWriter? output = null, long maxInstructions = 50_000_000, long memoryLimit = 64L << 20, long tensorLimit = 256L << 20) =>
        new(new LuaHostOptions
        {
            Output = output ?? new StringWriter(),
            DefaultBackend = "torch",
            MaxInstructions = maxInstructions,
            MemoryLimitBytes = memoryLimit,
            TensorMemoryLimitBytes = tensorLimit,
        });

    public static string Eval(this LuaHost h, string code) => h.Execute(code, "@test.lua").Text;

    public static LuaScriptException Fails(this LuaHost h, string code, LuaErrorKind kind = LuaErrorKind.Runtime)
    {
        var e = Assert.Throws<LuaScriptException>(() => h.Execute(code, "@test.lua"))!;
        TestContext.Out.WriteLine(e.Report);
        Assert.That(e.Kind, Is.EqualTo(kind), e.Report);
        // The host stays usable after every error.
        Assert.That(h.Eval("return 20 + 22"), Is.EqualTo("42"), "the host answers after the error");
        return e;
    }
}

/// <summary>Errors of every kind reach the script as "test.lua:LINE: message", and the host survives them.</summary>
public sealed class LuaErrorTests
{
    [Test]
    public void Syntax_error_names_file_and_line()
    {
        using var h = LuaTesting.Host();
        var e = h.Fails("local x = 1\nlocal y = = 2", LuaErrorKind.Syntax);
        Assert.That(e.Message, Does.StartWith("test.lua:2:").And.Contain("unexpected symbol"));
    }

    [Test]
    public void Runtime_error_has_line_and_traceback()
    {
        using var h = LuaTesting.Host();
        var e = h.Fails("local function inner()\n  return nosuch()\nend\nlocal function outer() inner() end\nouter()");
        Assert.That(e.Message, Is.EqualTo("test.lua:2: attempt to call a nil value (global 'nosuch')"));
        Assert.That(e.Traceback, Does.StartWith("stack traceback:").And.Contain("test.lua:2: in").And.Contain("test.lua:4: in").And.Contain("test.lua:5: in main chunk"));
        Assert.That(e.Traceback, Does.Not.Contain("[rt]"), "host-internal frames are hidden");
    }

    [Test]
    public void Error_objects_that_are_not_strings_are_described()
    {
        using var h = LuaTesting.Host();
        Assert.That(h.Fails("error({code = 1})").Message, Is.EqualTo("(error object is a table value)"));
        Assert.That(h.Fails("error('plain', 0)").Message, Is.EqualTo("plain"));
    }

    [Test]
    public void Wrong_argument_count_and_type_name_the_function_and_the_script_line()
    {
        using var h = LuaTesting.Host();
        var e = h.Fails("\nrt.model.load()");
        Assert.That(e.Message, Is.EqualTo("test.lua:2: rt.model.load: expected 1 to 2 arguments, got 0 (usage: rt.model.load(path[, {backend=}]))"));
        Assert.That(e.Traceback, Does.Contain("test.lua:2: in main chunk"));
        e = h.Fails("rt.model.load({})");
        Assert.That(e.Message, Is.EqualTo("test.lua:1: bad argument #1 to 'rt.model.load' (string expected, got table)"));
        e = h.Fails("rt.backend.select('cuda')");
        Assert.That(e.Message, Does.StartWith("test.lua:1: bad argument #1 to 'rt.backend.select' (unknown backend \"cuda\""));
        e = h.Fails("rt.data.synthetic{limt = 3}");
        Assert.That(e.Message, Does.Contain("unknown option 'limt'").And.Contain("limit"));
        e = h.Fails("rt.data.request{prompt = 'p', subject = 's'}");
        Assert.That(e.Message, Is.EqualTo("test.lua:1: rt.data.request: request.target_new: missing (a string is required)"));
    }

    [Test]
    public void Exceptions_inside_CSharp_become_script_errors()
    {
        using var h = LuaTesting.Host();
        var dir = Path.Combine(Path.GetTempPath(), "editrt-lua-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            File.WriteAllText(Path.Combine(dir, "bad.json"), "[{\"prompt\": 3}]");
            var e = h.Fails($"local ok = 1\nrt.data.load('{dir}/bad.json')");
            Assert.That(e.Message, Does.StartWith("test.lua:2: rt.data.load: ").And.Contain("bad.json").And.Contain("record 0"));
            e = h.Fails($"rt.model.load('{dir}/nomodel')");
            Assert.That(e.Message, Does.StartWith("test.lua:1: rt.model.load: ").And.Contain("nomodel"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void Methods_called_with_a_dot_say_so()
    {
        using var h = LuaTesting.Host();
        var e = h.Fails("local t = rt.tensor.zeros({2})\nt.numel()");
        Assert.That(e.Message, Does.StartWith("test.lua:2: Tensor:numel: call it with ':'"));
        e = h.Fails("local t = rt.tensor.zeros({2})\nt:free()\nt:numel()");
        Assert.That(e.Message, Does.StartWith("test.lua:3: ").And.Contain("closed"));
    }

    [Test]
    public void Pcall_catches_API_errors_with_their_message()
    {
        using var h = LuaTesting.Host();
        Assert.That(h.Eval("local ok, e = pcall(rt.tensor.zeros, 'x') return ok, e"),
            Is.EqualTo("false\tbad argument #1 to 'rt.tensor.zeros' (table expected, got string)"));
        Assert.That(h.Eval("local ok, e = pcall(function() local t = rt.tensor.zeros({-1}) end) return ok, e"),
            Does.StartWith("false\ttest.lua:1: bad argument #1 to 'rt.tensor.zeros' (shape[1]: a positive integer expected"));
    }

    [Test]
    public void Every_API_function_rejects_extra_arguments_and_wrong_types_without_crashing()
    {
        using var h = LuaTesting.Host();
        h.Eval("""
            objects = { Tensor = rt.tensor.zeros({2, 2}) }
            """);
        var checkedCount = 0;
        foreach (var fn in h.Functions)
        {
            string call;
            if (fn.IsMethod)
            {
                var (type, method) = (fn.Name.Split(':')[0], fn.Name.Split(':')[1]);
                if (type != "Tensor") continue; // Model/Editor/Baseline methods: see LuaApiTests (they need a model)
                call = $"objects.Tensor:{method}";
            }
            else call = fn.Name;
            if (fn.MaxArgs >= 0)
            {
                var args = string.Join(", ", Enumerable.Repeat("1", fn.MaxArgs + 1));
                var e = h.Fails($"{call}({args})");
                Assert.That(e.Message, Does.StartWith("test.lua:1: " + fn.Name + ": expected"), fn.Name);
            }
            if (fn.MinArgs > 0)
            {
                var args = string.Join(", ", Enumerable.Repeat("coroutine.create(print)", fn.MinArgs));
                var e = h.Fails($"{call}({args})");
                Assert.That(e.Message, Does.StartWith("test.lua:1: ").And.Contain(fn.Name), fn.Name);
                Assert.That(e.Message, Does.Contain("thread"), fn.Name + ": names the wrong type");
            }
            checkedCount++;
        }
        Assert.That(checkedCount, Is.GreaterThan(35));
    }
}

/// <summary>Scripts cannot reach files, processes, bytecode, debug hooks or .NET, and cannot run or grow without bound.</summary>
public sealed class LuaSandboxTests
{
    [TestCase("io.open('/etc/passwd')", "attempt to index a nil value (global 'io')")]
    [TestCase("io.popen('ls')", "attempt to index a nil value (global 'io')")]
    [TestCase("os.execute('echo pwned')", "attempt to call a nil value (field 'execute')")]
    [TestCase("os.remove('/tmp/x')", "attempt to call a nil value (field 'remove')")]
    [TestCase("os.rename('/tmp/x', '/tmp/y')", "attempt to call a nil value (field 'rename')")]
    [TestCase("os.exit(3)", "attempt to call a nil value (field 'exit')")]
    [TestCase("os.getenv('HOME')", "attempt to call a nil value (field 'getenv')")]
    [TestCase("debug.getregistry()", "attempt to index a nil value (global 'debug')")]
    [TestCase("debug.sethook()", "attempt to index a nil value (global 'debug')")]
    [TestCase("string.dump(print)", "attempt to call a nil value (field 'dump')")]
    [TestCase("('x'):dump()", "attempt to call a nil value (method 'dump')")]
    [TestCase("luanet.load_assembly('System')", "attempt to index a nil value (global 'luanet')")]
    [TestCase("import('System.IO')", "attempt to call a nil value (global 'import')")]
    [TestCase("require('io')", "attempt to call a nil value (global 'require')")]
    [TestCase("package.loadlib('libc.so.6', 'system')", "attempt to index a nil value (global 'package')")]
    [TestCase("dofile('/etc/passwd')", "attempt to call a nil value (global 'dofile')")]
    [TestCase("loadfile('/etc/passwd')", "attempt to call a nil value (global 'loadfile')")]
    [TestCase("load('return 1', 'x', 'b')", "load: mode \"b\" refused: scripts may load text chunks only, never bytecode")]
    [TestCase("load('return 1', 'x', 'bt')", "refused")]
    [TestCase("setmetatable({}, {__gc = function() end})", "__gc finalizers are not allowed")]
    [TestCase("getmetatable('').__index.dump(print)", "attempt to index a nil value (field '__index')")]
    public void Escape_is_refused(string code, string message)
    {
        using var h = LuaTesting.Host();
        var e = h.Fails(code);
        Assert.That(e.Message, Does.StartWith("test.lua:1:").And.Contain(message));
    }

    [Test]
    public void Bytecode_strings_do_not_load()
    {
        using var h = LuaTesting.Host();
        Assert.That(h.Eval("local f, err = load('\\27Lua\\84\\0') return f, err"), Does.StartWith("nil\t").And.Contain("attempt to load a binary chunk (mode is 't')"));
        var script = Path.Combine(Path.GetTempPath(), $"editrt-bytecode-{Guid.NewGuid():N}.lua");
        File.WriteAllBytes(script, [0x1b, (byte)'L', (byte)'u', (byte)'a', 0x54, 0]);
        try
        {
            var e = Assert.Throws<LuaScriptException>(() => h.RunFile(script))!;
            Assert.That(e.Kind, Is.EqualTo(LuaErrorKind.Syntax));
            Assert.That(e.Message, Does.Contain("attempt to load a binary chunk"));
        }
        finally { File.Delete(script); }
    }

    [Test]
    public void Only_the_whitelisted_globals_exist()
    {
        using var h = LuaTesting.Host();
        var names = h.Eval("local t = {} for k in pairs(_G) do t[#t + 1] = k end table.sort(t) return table.concat(t, ' ')").Split(' ');
        Assert.That(names, Is.EquivalentTo(new[]
        {
            "_G", "_VERSION", "assert", "collectgarbage", "coroutine", "error", "getmetatable", "ipairs", "load", "math", "next", "os", "pairs",
            "pcall", "print", "rawequal", "rawget", "rawlen", "rawset", "rt", "select", "setmetatable", "string", "table", "tonumber", "tostring",
            "type", "utf8", "xpcall",
        }));
        Assert.That(h.Eval("local t = {} for k in pairs(os) do t[#t + 1] = k end table.sort(t) return table.concat(t, ' ')"), Is.EqualTo("clock date difftime time"));
    }

    [Test]
    public void Userdata_expose_no_dotnet_members()
    {
        using var h = LuaTesting.Host();
        h.Eval("t = rt.tensor.zeros({2, 3})");
        Assert.That(h.Eval("return getmetatable(t)"), Is.EqualTo("locked"));
        Assert.That(h.Eval("return t.GetType, t.ToString, t.Value, t.Dispose, t.__index, t.__gc, t.Backend"), Is.EqualTo("nil\tnil\tnil\tnil\tnil\tnil\tnil"));
        Assert.That(h.Eval("return tostring(t)"), Is.EqualTo("Tensor[2, 3] (torch)"));
        Assert.That(h.Eval("return type(t)"), Is.EqualTo("userdata"));
        Assert.That(h.Fails("t.Value = 1").Message, Does.Contain("attempt to index a Tensor value"));
        Assert.That(h.Fails("rawget(t, 'numel')").Message, Does.Contain("table expected, got Tensor"));
        Assert.That(h.Fails("setmetatable(t, {})").Message, Does.Contain("table expected, got Tensor"));
        Assert.That(h.Fails("for k in pairs(t) do end").Message, Does.Contain("table expected, got Tensor"));
        // Methods are plain Lua functions: calling one on a table does not reach the object.
        Assert.That(h.Fails("t.numel({})").Message, Does.Contain("call it with ':'"));
        // The functions of rt are Lua closures over a C function: no userdata or light userdata in reach.
        Assert.That(h.Eval("""
            local bad, n = 0, 0
            for _, m in pairs(rt) do
              if type(m) == 'table' then for _, f in pairs(m) do n = n + 1 if type(f) ~= 'function' then bad = bad + 1 end end
              elseif type(m) == 'function' then n = n + 1 else bad = bad + 1 end
            end
            return bad, n >= 20
            """), Is.EqualTo("0\ttrue"));
    }

    [Test]
    public void Infinite_loop_stops_at_the_budget_with_its_line()
    {
        using var h = LuaTesting.Host(maxInstructions: 2_000_000);
        var e = h.Fails("local n = 0\nwhile true do\n  n = n + 1\nend", LuaErrorKind.InstructionBudget);
        Assert.That(e.Message, Does.Match(@"^test\.lua:[23]: instruction budget of 2,000,000 exceeded"));
        Assert.That(e.Traceback, Does.Contain("test.lua"));
    }

    [TestCase("local function spin() while true do end end\nwhile true do pcall(spin) end")]
    [TestCase("while true do xpcall(function() while true do end end, function(m) while true do end end) end")]
    [TestCase("local co = coroutine.wrap(function() while true do end end)\nco()")]
    [TestCase("while true do coroutine.resume(coroutine.create(function() while true do end end)) end")]
    [TestCase("table.sort({3, 2, 1, 5, 4}, function(a, b) while true do end end)")]
    [TestCase("local t = setmetatable({}, {__index = function() while true do end end})\nprint(table.concat({1, 2}, t.x))")]
    [TestCase("local s = string.gsub('aaaa', 'a', function() while true do end end)")]
    [TestCase("print(setmetatable({}, {__tostring = function() while true do end end}))")]
    public void A_stopped_script_cannot_catch_the_stop(string code)
    {
        using var h = LuaTesting.Host(maxInstructions: 1_000_000);
        var e = h.Fails(code, LuaErrorKind.InstructionBudget);
        Assert.That(e.Message, Does.StartWith("test.lua:").And.Contain("instruction budget"));
    }

    [Test]
    public void The_budget_is_configurable()
    {
        const string loop = "local n = 0 for i = 1, 300000 do n = n + i end return n";
        using (var h = LuaTesting.Host(maxInstructions: 100_000)) h.Fails(loop, LuaErrorKind.InstructionBudget);
        using (var h = LuaTesting.Host(maxInstructions: 10_000_000)) Assert.That(h.Eval(loop), Is.EqualTo("45000150000"));
        using (var h = LuaTesting.Host(maxInstructions: 0)) Assert.That(h.Eval(loop), Is.EqualTo("45000150000"));
    }

    [TestCase("local t = {}\nfor i = 1, 1e9 do t[i] = {i, i, i} end")]
    [TestCase("local t = {}\nfor i = 1, 1e9 do t[#t + 1] = ('x'):rep(1000) .. i end")]
    [TestCase("local s = 'x'\nwhile true do s = s .. s end")]
    [TestCase("local s = ('x'):rep(2^40)")]
    [TestCase("local t = {}\nwhile true do local ok = pcall(function() for i = 1, 1e6 do t[#t + 1] = {} end end) end")]
    [TestCase("local co = coroutine.wrap(function() local t = {} while true do t[#t + 1] = {} end end)\nco()")]
    public void Memory_bombs_stop_at_the_limit_with_a_line(string code)
    {
        using var h = LuaTesting.Host(memoryLimit: 16L << 20, maxInstructions: 0);
        var e = Assert.Throws<LuaScriptException>(() => h.Execute(code, "@test.lua"))!;
        TestContext.Out.WriteLine(e.Report);
        Assert.That(e.Message, Does.Match(@"^test\.lua:\d+: ").And.Contain("memory limit"));
        Assert.That(h.Eval("return 1 + 1"), Is.EqualTo("2"));
        Assert.That(h.HeapBytes, Is.LessThan(16L << 20), "the garbage of the stopped script is collected");
    }

    [Test]
    public void The_memory_limit_is_configurable()
    {
        const string eightMiB = "local t = {} for i = 1, 8 do t[i] = ('x'):rep(1 << 20) end return #t";
        using (var h = LuaTesting.Host(memoryLimit: 4L << 20)) Assert.That(Assert.Throws<LuaScriptException>(() => h.Eval(eightMiB))!.Message, Does.Contain("memory limit of 4 MiB"));
        using (var h = LuaTesting.Host(memoryLimit: 64L << 20)) Assert.That(h.Eval(eightMiB), Is.EqualTo("8"));
    }

    [Test]
    public void Tensor_memory_is_limited_too()
    {
        using var h = LuaTesting.Host(tensorLimit: 1L << 20);
        var e = h.Fails("local a = rt.tensor.zeros({256, 512})\nlocal b = rt.tensor.zeros({256, 512})\nlocal c = rt.tensor.zeros({256, 512})");
        Assert.That(e.Message, Does.StartWith("test.lua:3: rt.tensor.zeros: tensor memory limit of 1 MiB exceeded"));
        Assert.That(h.Eval("local a = rt.tensor.zeros({256, 512}) a:free() local b = rt.tensor.zeros({256, 512}) b:free() return rt.info().tensor_bytes"), Is.EqualTo("0"));
    }

    [Test]
    public void Files_outside_the_allowed_directories_are_refused()
    {
        using var h = LuaTesting.Host();
        Assert.That(h.Fails("rt.data.load('/etc/passwd')").Message, Does.Contain("may not read \"/etc/passwd\""));
        Assert.That(h.Fails("rt.eval.report('/etc/editrt', {{es = 1}})").Message, Does.Contain("may not write \"/etc/editrt\""));
        var link = Path.Combine(Path.GetTempPath(), $"editrt-link-{Guid.NewGuid():N}");
        File.CreateSymbolicLink(link, "/etc");
        try { Assert.That(h.Fails($"rt.data.load('{link}/passwd')").Message, Does.Contain("resolves to /etc/passwd")); }
        finally { File.Delete(link); }
    }
}
