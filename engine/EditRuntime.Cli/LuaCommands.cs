using EditRuntime.Backends;
using EditRuntime.Lua;
using EditRuntime.Vulkan;

namespace EditRuntime.Cli;

/// <summary>`editrt run SCRIPT`, `editrt lua` (interactive) and `editrt bench lua`.</summary>
internal static class LuaCommands
{
    public sealed record Limits(long MaxInstructions, double MaxSeconds, long MemoryLimitMib, long TensorMemoryLimitMib, string[] AllowRead, string[] AllowWrite, string Backend);

    public static LuaHostOptions HostOptions(DeviceOptions device, Limits l)
    {
        if (l.MemoryLimitMib < 1) throw new ArgumentException("--memory-limit: at least 1 (MiB).");
        if (l.TensorMemoryLimitMib < 1) throw new ArgumentException("--tensor-memory-limit: at least 1 (MiB).");
        if (l.MaxInstructions < 0) throw new ArgumentException("--max-instructions: 0 (no limit) or a positive count.");
        if (!(l.MaxSeconds >= 0) || double.IsInfinity(l.MaxSeconds)) throw new ArgumentException("--max-seconds: 0 (no limit) or a positive number of seconds.");
        try { BackendFactory.Check(l.Backend); }
        catch (ArgumentException e) { throw new ArgumentException($"--backend: {e.Message}."); }
        foreach (var d in l.AllowRead.Concat(l.AllowWrite))
            if (!Directory.Exists(d)) throw new ArgumentException($"--allow-read/--allow-write: no directory {d}.");
        return new LuaHostOptions
        {
            MaxInstructions = l.MaxInstructions,
            MaxSeconds = l.MaxSeconds,
            MemoryLimitBytes = l.MemoryLimitMib << 20,
            TensorMemoryLimitBytes = l.TensorMemoryLimitMib << 20,
            ReadRoots = l.AllowRead,
            WriteRoots = l.AllowWrite,
            DefaultBackend = l.Backend.ToLowerInvariant(),
            Device = device,
        };
    }

    /// <summary>How long past --max-seconds a run may stay inside one call that cannot be interrupted (a long rt.*
    /// call, or native code) before the process itself is stopped.</summary>
    public const double WatchdogGraceSeconds = 5;

    /// <summary>The last line of defence for --max-seconds: the host stops a script at its next instruction, library
    /// step or rt.* return; a call that never returns (a backend kernel, a loop in a library) is ended here by
    /// ending the process, with the limit's message and exit code 1.</summary>
    private static Timer? Watchdog(LuaHostOptions options, string what)
    {
        if (options.MaxSeconds <= 0) return null;
        return new Timer(_ =>
        {
            Console.Out.Flush();
            Console.Error.WriteLine($"{what}: time limit of {options.MaxSeconds:0.###} s exceeded by more than {WatchdogGraceSeconds:0} s inside a call " +
                                    "that cannot be interrupted; the process was stopped (raise it with --max-seconds)");
            Console.Error.Flush();
            Environment.Exit(1);
        }, null, TimeSpan.FromSeconds(options.MaxSeconds + WatchdogGraceSeconds), Timeout.InfiniteTimeSpan);
    }

    public static int Run(LuaHostOptions options, string script, string[] args)
    {
        using var host = new LuaHost(options);
        try
        {
            using var watchdog = Watchdog(options, script);
            host.RunFile(script, args);
            return 0;
        }
        catch (LuaScriptException e)
        {
            Console.Out.Flush();
            Console.Error.WriteLine(e.Report);
            return 1;
        }
    }

    /// <summary>Read-eval-print: an expression prints its value(s), a statement runs; an incomplete chunk asks for
    /// more lines; an error is printed and the session goes on with its state intact.</summary>
    public static int Repl(LuaHostOptions options)
    {
        bool interactive = !Console.IsInputRedirected;
        using var host = new LuaHost(options);
        if (interactive)
            Console.Error.WriteLine($"EditRuntime Lua 5.4 (KeraLua) — rt.* is the API (scripts/README.md); backend {options.DefaultBackend}; Ctrl-D quits.");
        var buffer = new System.Text.StringBuilder();
        while (true)
        {
            if (interactive) Console.Error.Write(buffer.Length == 0 ? "> " : ">> ");
            var line = Console.ReadLine();
            if (line is null) break;
            if (buffer.Length > 0) buffer.Append('\n');
            buffer.Append(line);
            var code = buffer.ToString();
            if (code.Trim().Length == 0) { buffer.Clear(); continue; }
            try
            {
                (string Text, int Count) r;
                using var watchdog = Watchdog(options, "stdin");
                try { r = host.Execute("return " + code, "=stdin"); }
                catch (LuaScriptException e) when (e.Kind == LuaErrorKind.Syntax)
                {
                    if (host.IsIncomplete(code)) continue;
                    r = host.Execute(code, "=stdin");
                }
                if (r.Count > 0) Console.WriteLine(r.Text);
            }
            catch (LuaScriptException e)
            {
                Console.Out.Flush();
                Console.Error.WriteLine(e.Report);
            }
            buffer.Clear();
        }
        return 0;
    }

    /// <summary>Cost of one call from Lua into C# through the rt.* error-checking wrapper, against a plain Lua call.</summary>
    public static int Bench(int calls, string backend, DeviceOptions device)
    {
        if (calls < 1000) throw new ArgumentException("--calls: at least 1000.");
        using var host = new LuaHost(new LuaHostOptions
        {
            MaxInstructions = 0, DefaultBackend = backend, Device = device,
        });
        host.Register("bench.noop", 0, -1, c => 0);
        host.Register("bench.add", 2, 2, c => c.Return(c.Number(1) + c.Number(2)));
        host.Register("bench.len", 1, 1, c => c.Return((long)c.String(1).Length));
        host.Register("bench.raw_noop", 0, -1, c => 0, raw: true);
        Console.WriteLine($"Lua → C# call overhead: {calls:N0} calls per row, median of 5 runs (os.clock); backend for the tensor row: {backend}");
        host.Execute($$"""
            local N = {{calls}}
            local clock = os.clock
            local function median(f)
              local t = {}
              for r = 1, 5 do local t0 = clock(); f(); t[r] = (clock() - t0) / N * 1e9 end
              table.sort(t)
              return t[3]
            end
            local function lua_noop() end
            local function lua_add(a, b) return a + b end
            local noop, add, len, raw = bench.noop, bench.add, bench.len, bench.raw_noop
            local x = rt.tensor.zeros({2, 3})
            local rows = {
              {"empty loop (per iteration)", function() for i = 1, N do end end},
              {"Lua function, no arguments", function() for i = 1, N do lua_noop() end end},
              {"Lua function, 2 numbers -> 1", function() for i = 1, N do lua_add(i, 2) end end},
              {"C# function, no arguments (rt.* wrapper)", function() for i = 1, N do noop() end end},
              {"C# function, 2 numbers -> 1 (rt.* wrapper)", function() for i = 1, N do add(i, 2) end end},
              {"C# function, a string -> 1 (rt.* wrapper)", function() for i = 1, N do len("abcdefgh") end end},
              {"C# method on userdata, t:numel() (rt.* wrapper)", function() for i = 1, N do x:numel() end end},
              {"C# function, no arguments, raw (no wrapper)", function() for i = 1, N do raw() end end},
            }
            local base
            for _, row in ipairs(rows) do
              local ns = median(row[2])
              if row[1] == "Lua function, no arguments" then base = ns end
              print(("  %-50s %8.1f ns/call"):format(row[1], ns))
            end
            x:free()
            """, "=bench");
        return 0;
    }
}
