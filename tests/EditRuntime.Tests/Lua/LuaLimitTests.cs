using System.Diagnostics;
using EditRuntime.Lua;
using NUnit.Framework;

namespace EditRuntime.Tests.Lua;

/// <summary>Limits reach work done in native code (pattern matching, table.move, string.rep), the clock stops a
/// script wherever it is, the heap never passes its cap, and every limit error names the script's line.</summary>
public sealed class LuaLimitTests
{
    private static LuaHost Host(long maxInstructions = 0, double maxSeconds = 0, long memoryLimit = 64L << 20) => new(new LuaHostOptions
    {
        Output = new StringWriter(), DefaultBackend = "torch", MaxInstructions = maxInstructions, MaxSeconds = maxSeconds, MemoryLimitBytes = memoryLimit,
    });

    private static LuaScriptException StopsWithin(LuaHost h, string code, LuaErrorKind kind, double seconds = 3)
    {
        var sw = Stopwatch.StartNew();
        var e = h.Fails(code, kind);
        Assert.That(sw.Elapsed.TotalSeconds, Is.LessThan(seconds), "stopped promptly");
        Assert.That(e.Message, Does.Match(@"^test\.lua:\d+: "), "the limit names the script's line");
        return e;
    }

    // Nested quantifiers backtrack exponentially in Lua's C matcher (the 14-fold one ran for minutes).
    [TestCase("string.find(string.rep('a', 14), string.rep('a*', 14) .. 'b')")]
    [TestCase("local ok = pcall(string.find, string.rep('a', 30), string.rep('a*', 30) .. 'b')")]
    [TestCase("string.match(string.rep('a', 40), string.rep('a-', 40) .. '$b')")]
    [TestCase("string.gsub(string.rep('a', 30), string.rep('.-', 30) .. 'x', '')")]
    [TestCase("for w in string.gmatch(string.rep('a', 30), string.rep('a?', 30) .. 'b') do end")]
    [TestCase("string.gsub(string.rep('a', 30), string.rep('a*', 30) .. 'b', function() return 'x' end)")]
    [TestCase("string.find(string.rep('(', 200000), '%b()')\nstring.find(string.rep('(', 200000), '%b()')\nwhile true do string.find(string.rep('(', 200000), '%b()') end")]
    [TestCase("local s = string.rep('a', 1 << 20) local n = string.rep('a', 1 << 19) .. 'b'\nstring.find(s, n, 1, true)")]
    [TestCase("while true do pcall(string.find, string.rep('a', 20), string.rep('a*', 20) .. 'b') end")]
    public void Pattern_work_counts_against_the_instruction_budget(string code)
    {
        using var h = Host(maxInstructions: 1_000_000);
        var e = StopsWithin(h, code, LuaErrorKind.InstructionBudget);
        Assert.That(e.Message, Does.Contain("instruction budget of 1,000,000 exceeded"));
    }

    [TestCase("string.find(string.rep('a', 40), string.rep('a*', 40) .. 'b')")]
    [TestCase("local ok, e = pcall(string.match, string.rep('a', 40), string.rep('a-', 40) .. 'b')")]
    [TestCase("table.move({1}, 1, 2^62, 2)")]
    [TestCase("local ok = pcall(table.move, {1}, 1, 2^62, 2)")]
    [TestCase("local t = setmetatable({}, {__len = function() return 2^62 end})\ntable.insert(t, 1, 'x')")]
    [TestCase("local t = setmetatable({}, {__len = function() return 2^62 end})\ntable.remove(t, 1)")]
    [TestCase("local n = 0\nwhile true do n = n + 1 end")]
    [TestCase("local co = coroutine.wrap(function() while true do end end)\nco()")]
    public void The_clock_stops_native_work_too(string code)
    {
        using var h = Host(maxSeconds: 1);
        var e = StopsWithin(h, code, LuaErrorKind.TimeLimit, seconds: 4);
        Assert.That(e.Message, Does.Contain("time limit of 1 s exceeded"));
    }

    [TestCase("table.move({1}, 1, 2^62, 2)")]
    [TestCase("local t = setmetatable({}, {__len = function() return 2^62 end})\ntable.insert(t, 1, 'x')")]
    public void Native_loops_count_against_the_instruction_budget(string code)
    {
        using var h = Host(maxInstructions: 1_000_000);
        StopsWithin(h, code, LuaErrorKind.InstructionBudget);
    }

    [Test]
    public void Guarded_library_functions_still_work()
    {
        using var h = Host(maxInstructions: 50_000_000);
        Assert.That(h.Eval("local t = {} for i = 1, 100000 do t[i] = i end table.move(t, 1, 100000, 3) return t[3], t[100002], #t"), Is.EqualTo("1\t100000\t100002"));
        Assert.That(h.Eval("local t = {} for i = 1, 100000 do t[i] = i end table.move(t, 3, 100000, 1) return t[1], t[99998], t[100000]"), Is.EqualTo("3\t100000\t100000"));
        Assert.That(h.Eval("local t = {} for i = 1, 50000 do t[i] = i end table.insert(t, 1, 0) return t[1], t[2], t[50001], #t"), Is.EqualTo("0\t1\t50000\t50001"));
        Assert.That(h.Eval("local t = {} for i = 1, 50000 do t[i] = i end local v = table.remove(t, 1) return v, t[1], t[49999], #t"), Is.EqualTo("1\t2\t50000\t49999"));
        Assert.That(h.Eval("local a, b = {1, 2, 3}, {} table.move(a, 1, 3, 2, b) return b[2], b[4]"), Is.EqualTo("1\t3"));
        Assert.That(h.Eval("return ('ab'):rep(3, ','), ('x'):rep(0), ('x'):rep(-1)"), Is.EqualTo("ab,ab,ab\t\t"));
        // Empty pieces: C's string.rep looped 2^62 times to make ""; the guard answers at once.
        Assert.That(h.Eval("return #string.rep('', 2^62), #string.rep('', 2^62, '')"), Is.EqualTo("0\t0"));
        Assert.That(h.Fails("string.rep()").Message, Is.EqualTo("test.lua:1: bad argument #1 to 'rep' (string expected, got no value)"));
        Assert.That(h.Fails("table.move({}, 1)").Message, Does.StartWith("test.lua:1: bad argument #3 to 'move'"));
        Assert.That(h.Fails("table.insert({}, 5, 1)").Message, Does.StartWith("test.lua:1: bad argument #2 to 'insert' (position out of bounds)"));
    }

    [Test]
    public void A_huge_repetition_fails_cleanly_under_the_memory_cap()
    {
        using var h = Host(memoryLimit: 16L << 20);
        foreach (var code in new[] { "local s = string.rep('x', 2^40)", "local ok, e = pcall(string.rep, 'x', 2^40)", "local s = ('x'):rep(1 << 30, ',')" })
        {
            var e = Assert.Throws<LuaScriptException>(() => h.Execute(code, "@test.lua"))!;
            Assert.That(e.Message, Does.StartWith("test.lua:1: ").And.Contain("memory limit"), code);
        }
        Assert.That(h.PeakHeapBytes, Is.LessThanOrEqualTo(16L << 20));
    }

    [TestCase("local t = {}\nfor i = 1, 1e9 do t[i] = {i, i, i} end")]
    [TestCase("local s = 'x'\nwhile true do s = s .. s end")]
    [TestCase("local t = {}\nwhile true do t[#t + 1] = ('y'):rep(100000) .. #t end")]
    [TestCase("local t = {}\nlocal ok = pcall(function() while true do t[#t + 1] = {} end end)")]
    public void The_heap_never_passes_its_limit(string code)
    {
        using var h = Host(memoryLimit: 8L << 20);
        var e = Assert.Throws<LuaScriptException>(() => h.Execute(code, "@test.lua"))!;
        TestContext.Out.WriteLine(e.Message + $" (peak {h.PeakHeapBytes})");
        Assert.That(e.Kind, Is.EqualTo(LuaErrorKind.MemoryLimit));
        Assert.That(e.Message, Does.Match(@"^test\.lua:\d+: memory limit of 8 MiB exceeded"));
        // The script's allocations stop at the limit (they reached twice it before); the host's own, made while it
        // reports the stop (the traceback), are never refused and may add a few hundred bytes.
        Assert.That(h.PeakHeapBytes, Is.LessThanOrEqualTo((8L << 20) + (16 << 10)), "the heap stayed within the limit");
    }

    [Test]
    public void Scripts_with_a_byte_order_mark_or_a_shebang_line_run_with_their_line_numbers()
    {
        var path = Path.Combine(Path.GetTempPath(), $"editrt-prefix-{Guid.NewGuid():N}.lua");
        try
        {
            using var h = Host();
            foreach (var prefix in new[] { "\uFEFF", "#!/usr/bin/env editrt run\n", "\uFEFF#!/usr/bin/env lua\n" })
            {
                int lines = prefix.Count(ch => ch == '\n');
                File.WriteAllText(path, prefix + "local x = 1\nerror('line ' .. " + (lines + 2) + ")\n", new System.Text.UTF8Encoding(false));
                var e = Assert.Throws<LuaScriptException>(() => h.RunFile(path))!;
                Assert.That(e.Kind, Is.EqualTo(LuaErrorKind.Runtime), e.Message);
                Assert.That(e.Message, Is.EqualTo($"{path}:{lines + 2}: line {lines + 2}"), prefix);
            }
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void Patterns_match_as_the_C_library_does()
    {
        // The same cases through stock Lua 5.4 (KeraLua's library, no sandbox) and through the host's C# matcher (names in
        // errors made alike: stock Lua calls a function reached through pcall 'string.gsub', a direct call 'gsub').
        const string cases = """
            local out = {}
            local function add(...) local t = table.pack(...) for i = 1, t.n do t[i] = tostring(t[i]) end out[#out + 1] = table.concat(t, ",") end
            local function try(f, ...)
              local d = table.pack(...)
              for i = 1, d.n do local v = d[i] d[i] = (type(v) == "string" or type(v) == "number") and string.format("%q", v) or type(v) end
              local r = table.pack(pcall(f, ...))
              if r[1] then add(table.concat(d, " "), "=>", table.unpack(r, 2, r.n)) else add(table.concat(d, " "), "=> error", (tostring(r[2]):gsub("^.-:%d+: ", ""):gsub("'string%.(%a+)'", "'%1'"))) end
            end
            local subjects = {"hello world", "  key = value  ", "f(a(b)c)d", "THE (quick) fox", "a,b,,c", "", "aaa", "x=1, y=22, z=333", "caf\195\169 \0 end", "[[x]]", "^$%."}
            local patterns = {"o", "l+", "^h", "d$", "%s*(%w+)%s*=%s*(%w+)", "%b()", "%f[%w]%w+", "(a*(.)%w(%s*))", "()ll()", "[%a_][%w_]*",
              "[^,]*", "a-b", "%d+", ".-=", "[%]x]+", "%%", "^$", "(%w+)%s*%1", "[a-c%d]+", "%u+", "%p", "%c", "[]]", "[^]]+", "%x+",
              "a?a?a", "(h)(e)(l)(l)(o)", ".", "", "%f[%z]", "%f[^%z]", "(", "%", "[a", "%b", "%f", "(()", "%1", "a)", "%g+"}
            for _, s in ipairs(subjects) do
              for _, p in ipairs(patterns) do
                try(string.find, s, p)
                try(string.find, s, p, 3)
                try(string.find, s, p, -2)
                try(string.match, s, p)
                try(string.gsub, s, p, "<%0>")
                try(string.gsub, s, p, "%1-%%", 2)
                try(string.gsub, s, p, function(a, b) return b end)
                try(string.gsub, s, p, {hello = "HI", o = 0})
                try(function() local r = {} for a, b in string.gmatch(s, p) do r[#r + 1] = tostring(a) .. "/" .. tostring(b) end return table.concat(r, ";") end)
                try(string.find, s, p, 1, true)
              end
            end
            try(string.find, 123456, 34)
            try(string.gsub, "abc", "%w", "%2")
            try(string.gsub, "abc", "%w", "%")
            try(string.gsub, "abc", "b", false)
            try(string.gsub, "abc", "(b)", {b = true})
            try(string.gmatch, "abc", "b", 1.5)
            try(string.find, "abc", "b", 10)
            try(string.find, "abc", "", 4)
            try(string.find, "abc", "", 5)
            try(string.find)
            try(string.gsub, "hello world", "(o)", "[%1]", 1)
            try(string.gsub, "abc", "", "-")
            try(string.gsub, "hello", "^h", "J")
            for k, v in string.gmatch("a=1, b=2", "(%w+)=(%w+)") do add(k, v) end
            for w in string.gmatch("one two", "%a+", 4) do add(w) end
            return table.concat(out, "\n")
            """;
        using var stock = new KeraLua.Lua();
        stock.OpenLibs();
        Assert.That(stock.DoString(cases), Is.False, stock.ToString(-1));
        var expected = System.Text.Encoding.UTF8.GetString(stock.ToBuffer(-1)); // bytes: KeraLua's ToString decodes as ASCII
        using var h = Host();
        var got = h.Eval(cases);
        var e = expected.Split('\n');
        var g = got.Split('\n');
        Assert.That(g.Length, Is.EqualTo(e.Length));
        for (int i = 0; i < e.Length; i++) Assert.That(g[i], Is.EqualTo(e[i]), $"case {i + 1}");
        TestContext.Out.WriteLine($"{e.Length} pattern cases agree with stock Lua");
    }
}

/// <summary>Files reached through a folder (a model, an editor state) are checked one by one, and their contents
/// never reach an error message; editors are not re-entered from callbacks; tensor memory is counted before ops run.</summary>
public sealed class LuaFolderAndStateTests
{
    private static string LinkedModel(string dir, string? replaced, string? target)
    {
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(EditRuntime.Models.BuiltinModels.TinyPath!))
        {
            var name = Path.GetFileName(f);
            File.CreateSymbolicLink(Path.Combine(dir, name), name == replaced ? target! : f);
        }
        return dir;
    }

    [Test]
    public void A_model_folder_with_a_file_linked_from_outside_the_roots_is_refused_without_its_contents()
    {
        var dir = Path.Combine(Path.GetTempPath(), "editrt-linked-" + Guid.NewGuid().ToString("N"));
        var outside = Path.Combine("/dev/shm", "editrt-outside-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var h = LuaTesting.Host();
            LinkedModel(Path.Combine(dir, "ok"), null, null);
            Assert.That(h.Eval($"local m = rt.model.load('{dir}/ok') return m:info().layers > 0"), Is.EqualTo("true"), "links inside the roots load");
            LinkedModel(Path.Combine(dir, "passwd"), "merges.txt", "/etc/passwd");
            var e = h.Fails($"rt.model.load('{dir}/passwd')");
            Assert.That(e.Message, Does.StartWith("test.lua:1: rt.model.load: may not read").And.Contain("/etc/passwd").And.Not.Contain("root:"));
            if (Directory.Exists("/dev/shm"))
            {
                Directory.CreateDirectory(outside);
                File.Copy(Path.Combine(EditRuntime.Models.BuiltinModels.TinyPath!, "vocab.json"), Path.Combine(outside, "vocab.json"));
                LinkedModel(Path.Combine(dir, "vocab"), "vocab.json", Path.Combine(outside, "vocab.json"));
                e = h.Fails($"rt.model.load('{dir}/vocab')");
                Assert.That(e.Message, Does.Contain("may not read").And.Contain(outside), "a valid vocab.json from outside does not load");
            }
        }
        finally
        {
            Directory.Delete(dir, true);
            if (Directory.Exists(outside)) Directory.Delete(outside, true);
        }
    }

    [Test]
    public void Tokenizer_file_errors_name_file_and_line_but_never_quote_the_text()
    {
        var dir = Path.Combine(Path.GetTempPath(), "editrt-badmerges-" + Guid.NewGuid().ToString("N"));
        try
        {
            Directory.CreateDirectory(dir);
            foreach (var f in Directory.GetFiles(EditRuntime.Models.BuiltinModels.TinyPath!)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
            File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\nsecret-word-one secret-word-two secret-word-three\n");
            using var h = LuaTesting.Host();
            var e = h.Fails($"rt.model.load('{dir}')");
            Assert.That(e.Message, Does.Contain("merges.txt line 2").And.Not.Contain("secret"));
            File.WriteAllText(Path.Combine(dir, "vocab.json"), "{\"secret-token\": -4}");
            e = h.Fails($"rt.model.load('{dir}')");
            Assert.That(e.Message, Does.Contain("vocab.json line 1").And.Not.Contain("secret"));
            File.WriteAllText(Path.Combine(dir, "vocab.json"), "secret:x:0:0");
            e = h.Fails($"rt.model.load('{dir}')");
            Assert.That(e.Message, Does.Contain("vocab.json line 1").And.Not.Contain("'s'").And.Not.Contain("secret"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void An_editor_cannot_be_re_entered_from_its_own_progress_callback()
    {
        using var h = LuaTesting.Host(maxInstructions: 0);
        var e = h.Fails("""
            local model = rt.model.load(rt.model.builtin())
            local ed = rt.editor.new("FT-L", {model = model})
            local reqs = rt.data.synthetic{limit = 2}
            rt.eval.run(ed, reqs, {progress = function(msg)
              rt.eval.run(ed, reqs)
            end})
            """);
        Assert.That(e.Message, Does.StartWith("test.lua:5: rt.eval.run: this editor is in use by rt.eval.run"));
        // Used again after the outer call ended, it is free.
        Assert.That(h.Eval("""
            local model = rt.model.load(rt.model.builtin())
            local ed = rt.editor.new("FT-L", {model = model})
            local reqs = rt.data.synthetic{limit = 1}
            rt.eval.run(ed, reqs)
            return rt.eval.run(ed, reqs).edits
            """), Is.EqualTo("1"));
    }

    [Test]
    public void Tensor_memory_is_checked_before_an_op_and_a_failed_tensor_is_not_counted()
    {
        using var h = LuaTesting.Host(tensorLimit: 1L << 20);
        // (8, 256, 4) x (8, 4, 256) → 8 × 256 × 256 floats = 2 MiB: refused before the product is computed.
        var e = h.Fails("local a = rt.tensor.zeros({8, 256, 4})\nlocal b = rt.tensor.zeros({8, 4, 256})\nlocal c = a:matmul(b)");
        Assert.That(e.Message, Does.StartWith("test.lua:3: Tensor:matmul: tensor memory limit of 1 MiB exceeded"));
        Assert.That(h.Eval("collectgarbage() collectgarbage() return rt.info().tensor_bytes"), Is.EqualTo("0"));
        // An op that fails (mismatched shapes) held its result's bytes only while it ran.
        Assert.That(h.Eval("local a = rt.tensor.zeros({4, 3}) local b = rt.tensor.zeros({5, 2}) local ok = pcall(a.matmul, a, b) " +
                           "local n = rt.info().tensor_bytes a:free() b:free() return ok, n"), Is.EqualTo("false\t88")); // 12 + 10 floats
    }
}
