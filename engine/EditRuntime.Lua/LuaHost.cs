using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using static EditRuntime.Lua.LuaNative;

namespace EditRuntime.Lua;

/// <summary>
/// A sandboxed Lua 5.4 state (KeraLua's native library) with the rt.* API.
/// <para>Safety rules the implementation keeps:</para>
/// <list type="bullet">
/// <item>No Lua error ever unwinds through a .NET frame. Every C# function called from Lua catches
/// everything and returns <c>(false, message, level)</c>; a small Lua wrapper (Prelude.lua) calls
/// <c>error()</c>. Host-side API calls that could raise are made only inside <c>lua_pcall</c>.</item>
/// <item>The allocator never refuses while C# code runs (a refused allocation inside a C# callback
/// would longjmp over it); limits are enforced while Lua code runs: an allocation that would take the heap
/// past the limit is refused (after Lua's emergency collection), so the heap never holds more.</item>
/// <item>Work done inside C library functions is invisible to a count hook: the pattern functions are C#
/// (<see cref="LuaPattern"/>, charged per step), and the prelude guards the others (table.move in chunks,
/// string.rep and table.insert/remove checked before the call). The clock is checked with the budget.</item>
/// <item>Limits stop a script from a count hook: the C# hook records where the script was and installs
/// <c>lua_error</c> itself as the hook, so the error is raised by native code after the C# hook has
/// returned — wherever the script is, even inside a metamethod or a library call that cannot yield —
/// and every later instruction raises again, so catching it with pcall does not help.</item>
/// </list>
/// </summary>
public sealed unsafe partial class LuaHost : IDisposable
{
    /// <summary>The count hook fires every this many VM instructions.</summary>
    public const int HookInterval = 1000;
    private const string InternalChunk = "=[rt]";

    [StructLayout(LayoutKind.Sequential)]
    private struct AllocState
    {
        public long Used, Peak, Limit, Refused;
        public int Enforce, Pending;
        public IntPtr MainState;
    }

    private readonly AllocState* _alloc;
    private GCHandle _self;
    private IntPtr _L;
    private readonly IntPtr _luaError;
    private long _instructions;
    private StopInfo? _stop;
    private int _wrapRef, _formatRef;
    private readonly List<HostFunction> _functions = new();

    private sealed record StopInfo(LuaErrorKind Kind, string Message, string? Traceback);

    public LuaHost(LuaHostOptions? options = null)
    {
        Options = options ?? new LuaHostOptions();
        if (Options.MaxInstructions < 0) throw new ArgumentException("LuaHostOptions.MaxInstructions: must be 0 (no limit) or positive.");
        if (Options.MemoryLimitBytes < (1 << 20)) throw new ArgumentException("LuaHostOptions.MemoryLimitBytes: at least 1 MiB.");
        if (!(Options.MaxSeconds >= 0) || double.IsInfinity(Options.MaxSeconds)) throw new ArgumentException("LuaHostOptions.MaxSeconds: must be 0 (no limit) or a positive number of seconds.");
        _alloc = (AllocState*)NativeMemory.AllocZeroed((nuint)sizeof(AllocState));
        _alloc->Limit = Options.MemoryLimitBytes;
        _self = GCHandle.Alloc(this);
        _luaError = Export("lua_error");
        _L = lua_newstate(&Allocate, (IntPtr)_alloc);
        if (_L == IntPtr.Zero) { Free(); throw new InvalidOperationException("Lua: could not create a state (out of memory)."); }
        _alloc->MainState = _L;
        *(IntPtr*)(_L - IntPtr.Size) = GCHandle.ToIntPtr(_self); // lua_getextraspace: copied into every thread
        try
        {
            OpenLibraries();
            CreateRefTable();
            Api = new RtApi(this);
            InstallPrelude();
            Api.Register();
        }
        catch { Dispose(); throw; }
        ResetHook();
    }

    public LuaHostOptions Options { get; }
    /// <summary>Every C# function reachable from Lua (rt.* functions and the methods of each userdata type).</summary>
    public IReadOnlyList<HostFunction> Functions => _functions;
    internal RtApi Api { get; private set; } = null!;
    internal IntPtr MainState => _L;

    /// <summary>Bytes the Lua heap holds now, and its peak.</summary>
    public long HeapBytes => _alloc->Used;
    public long PeakHeapBytes => _alloc->Peak;
    /// <summary>Instructions counted during the last run (in steps of <see cref="HookInterval"/>).</summary>
    public long InstructionsUsed => _instructions;

    // ---------------------------------------------------------------- running code

    /// <summary>Runs a script file: its chunk gets <paramref name="args"/> as "..." and the global <c>arg</c>
    /// (arg[0] = the path). Errors throw <see cref="LuaScriptException"/> ("path:LINE: message").</summary>
    public void RunFile(string path, IReadOnlyList<string>? args = null)
    {
        CheckAlive();
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such script.");
        var source = SkipPrefix(File.ReadAllBytes(path));
        Api.ScriptDirectory = Path.GetDirectoryName(Path.GetFullPath(path));
        args ??= [];
        int top = lua_gettop(_L);
        try
        {
            LoadChunk(source, "@" + path);
            PushGlobalsTable();
            // arg table, as the standalone interpreter makes it: arg[0] = the script, arg[1..n] = its arguments.
            PushString(_L, "arg");
            lua_createtable(_L, args.Count, 1);
            PushString(_L, path);
            lua_rawseti(_L, -2, 0);
            for (int i = 0; i < args.Count; i++) { PushString(_L, args[i]); lua_rawseti(_L, -2, i + 1); }
            lua_rawset(_L, -3);
            Pop(_L, 1);
            foreach (var a in args) PushString(_L, a);
            Call(args.Count, 0);
        }
        finally { lua_settop(_L, top); }
    }

    /// <summary>Runs a chunk of code; returns its results formatted with tostring (tab-separated) and their count.
    /// For the REPL: the host stays usable after any error.</summary>
    public (string Text, int Count) Execute(string code, string chunkName = "=(string)")
    {
        CheckAlive();
        int top = lua_gettop(_L);
        try
        {
            LoadChunk(Encoding.UTF8.GetBytes(code), chunkName);
            int n = Call(0, LUA_MULTRET, top);
            // Format the results with the prelude's formatter (tostring may run __tostring: protected).
            lua_rawgeti(_L, LUA_REGISTRYINDEX, _formatRef);
            Insert(_L, top + 1);
            Call(n, 2, top);
            var text = ToStringRaw(_L, -2) ?? "";
            long count = lua_tointegerx(_L, -1, null);
            return (text, (int)count);
        }
        finally { lua_settop(_L, top); }
    }

    /// <summary>True when <paramref name="code"/> fails to compile only because it ends too early (REPL continuation).</summary>
    public bool IsIncomplete(string code)
    {
        CheckAlive();
        int top = lua_gettop(_L);
        try
        {
            var bytes = Encoding.UTF8.GetBytes(code);
            int status;
            fixed (byte* p = bytes)
            fixed (byte* name = Utf8Z("=stdin"))
            fixed (byte* mode = Utf8Z("t"))
                status = luaL_loadbufferx(_L, p, (nuint)bytes.Length, name, mode);
            return status == LUA_ERRSYNTAX && (ToStringRaw(_L, -1) ?? "").EndsWith("<eof>", StringComparison.Ordinal);
        }
        finally { lua_settop(_L, top); }
    }

    /// <summary>As the standalone interpreter does: a UTF-8 byte order mark and a first line starting with '#'
    /// ("#!/usr/bin/env lua") are skipped; the line's newline stays, so line numbers do not move.</summary>
    internal static byte[] SkipPrefix(byte[] source)
    {
        int start = source.Length >= 3 && source[0] == 0xEF && source[1] == 0xBB && source[2] == 0xBF ? 3 : 0;
        if (start < source.Length && source[start] == '#')
        {
            int nl = Array.IndexOf(source, (byte)'\n', start);
            start = nl < 0 ? source.Length : nl;
        }
        return start == 0 ? source : source[start..];
    }

    private void LoadChunk(byte[] source, string chunkName)
    {
        _lastChunk = chunkName;
        int status;
        fixed (byte* p = source)
        fixed (byte* name = Utf8Z(chunkName))
        fixed (byte* mode = Utf8Z("t"))
            status = luaL_loadbufferx(_L, p, (nuint)source.Length, name, mode);
        if (status == LUA_OK) return;
        var msg = ToStringRaw(_L, -1) ?? "could not load the chunk";
        Pop(_L, 1);
        if (status == LUA_ERRMEM) msg = $"{ShortName(chunkName)}: not enough memory to load the chunk";
        throw new LuaScriptException(LuaErrorKind.Syntax, msg, null);
    }

    /// <summary>Calls the function below the top <paramref name="nargs"/> values under the message handler and the
    /// limits; returns the number of results. Stack base for counting results: <paramref name="baseTop"/>.</summary>
    private int Call(int nargs, int nresults, int? baseTop = null)
    {
        int funcIndex = lua_gettop(_L) - nargs;
        int bottom = baseTop ?? funcIndex - 1;
        lua_pushcclosure(_L, &MessageHandler, 0);
        Insert(_L, funcIndex);
        _instructions = 0;
        _stop = null;
        _refusedAt = null;
        StartClock();
        int saved = _alloc->Enforce;
        _alloc->Enforce = 1;
        int status;
        try { status = PCall(_L, nargs, nresults, funcIndex); }
        finally { _alloc->Enforce = saved; }
        Remove(_L, funcIndex); // the message handler
        DrainReleases();
        if (status == LUA_OK)
        {
            ClearStop(); // a limit crossed by the very last allocations: the script finished anyway
            return lua_gettop(_L) - bottom;
        }
        var error = ToStringRaw(_L, -1);
        Pop(_L, 1);
        var stop = _stop;
        bool refused = _alloc->Refused > 0;
        long refusedBytes = _alloc->Refused;
        var refusedAt = _refusedAt;
        ClearStop();
        lua_gc(_L, LUA_GCCOLLECT, 0);
        if (stop is not null) throw new LuaScriptException(stop.Kind, stop.Message, stop.Traceback);
        if (status == LUA_ERRMEM)
        {
            string what = refused
                ? $"memory limit of {Mib(Options.MemoryLimitBytes)} exceeded: an allocation of {Mib(refusedBytes)} was refused (Lua heap {Mib(_alloc->Used)}; raise it with --memory-limit, or LuaHostOptions.MemoryLimitBytes)"
                : "out of memory";
            // The error left no frame to ask for a line (memory errors skip the message handler): use where the allocation was refused.
            throw new LuaScriptException(LuaErrorKind.MemoryLimit, (refusedAt ?? ShortName(_lastChunk) + ": ") + what, null);
        }
        var (message, traceback) = SplitTraceback(error ?? "(error object is not a string)");
        throw new LuaScriptException(LuaErrorKind.Runtime, message, traceback);
    }

    private string _lastChunk = "?";

    private void ClearStop()
    {
        _stop = null;
        _alloc->Pending = 0;
        _alloc->Refused = 0;
        _refusedAt = null;
        ResetHook();
    }

    private void ResetHook()
    {
        delegate* unmanaged[Cdecl]<IntPtr, LuaDebug*, void> hook = &Hook;
        lua_sethook(_L, (IntPtr)hook, LUA_MASKCOUNT, HookInterval);
    }

    private static string ShortName(string chunk) => chunk.Length > 0 && (chunk[0] == '@' || chunk[0] == '=') ? chunk[1..] : chunk;

    internal static string Mib(long bytes) => bytes >= 1 << 30 ? $"{bytes / (double)(1 << 30):0.##} GiB" : $"{bytes / (double)(1 << 20):0.##} MiB";

    /// <summary>"msg\nstack traceback:\n..." → message and a traceback without the host's own frames.</summary>
    internal static (string Message, string? Traceback) SplitTraceback(string full)
    {
        int i = full.IndexOf("\nstack traceback:", StringComparison.Ordinal);
        if (i < 0) return (full, null);
        return (full[..i], CleanTraceback(full[(i + 1)..]));
    }

    internal static string CleanTraceback(string traceback)
    {
        var lines = traceback.Split('\n');
        var kept = new List<string>();
        for (int i = 0; i < lines.Length; i++)
        {
            var t = lines[i].Trim();
            bool nextInternal = i + 1 < lines.Length && lines[i + 1].Contains("[rt]:", StringComparison.Ordinal);
            if (t.StartsWith("[rt]:", StringComparison.Ordinal)) continue;
            if (t == "[C]: in upvalue 'raw'" || t == "[C]: in ?" || t.StartsWith("[C]: in upvalue 'c_", StringComparison.Ordinal) || t.StartsWith("[C]: in function 'rt.", StringComparison.Ordinal)) continue;
            if (t == "[C]: in function 'error'" && nextInternal) continue;
            if (t == "(...tail calls...)" && kept.Count > 0 && kept[^1].Trim() == "(...tail calls...)") continue;
            // The sandbox's wrappers call the originals through upvalues: show the names scripts use.
            kept.Add(lines[i].Replace("in upvalue 'raw_pcall'", "in function 'pcall'").Replace("in upvalue 'raw_xpcall'", "in function 'xpcall'")
                .Replace("in upvalue 'co_resume'", "in function 'coroutine.resume'").Replace("in upvalue 'raw_load'", "in function 'load'"));
        }
        // A leading "(...tail calls...)" left by a removed wrapper frame says nothing to the user.
        while (kept.Count > 1 && kept[1].Trim() == "(...tail calls...)") kept.RemoveAt(1);
        return string.Join("\n", kept);
    }

    // ---------------------------------------------------------------- set-up

    private void OpenLibraries()
    {
        // Only these libraries are opened; io, os (reduced by the prelude), debug and package never are.
        foreach (var (name, opener) in new[] { ("_G", "luaopen_base"), ("coroutine", "luaopen_coroutine"), ("table", "luaopen_table"),
                     ("string", "luaopen_string"), ("math", "luaopen_math"), ("utf8", "luaopen_utf8"), ("os", "luaopen_os") })
        {
            fixed (byte* n = Utf8Z(name)) luaL_requiref(_L, n, Export(opener), 1);
            Pop(_L, 1);
        }
    }

    private void InstallPrelude()
    {
        using var s = typeof(LuaHost).Assembly.GetManifestResourceStream("EditRuntime.Lua.Prelude.lua")
            ?? throw new InvalidOperationException("Prelude.lua is not embedded in EditRuntime.Lua.");
        using var ms = new MemoryStream();
        s.CopyTo(ms);
        LoadChunk(ms.ToArray(), InternalChunk);
        lua_createtable(_L, 0, 10);
        PushPatternFunctions();
        SetPlain("stopped", &Stopped);
        SetPlain("write", &Write);
        SetPlain("memory_left", &MemoryLeftFn);
        Call(1, 2);
        _formatRef = Ref();
        _wrapRef = Ref();

        void SetPlain(string name, delegate* unmanaged[Cdecl]<IntPtr, int> fn)
        {
            PushString(_L, name);
            lua_pushcclosure(_L, fn, 0);
            lua_rawset(_L, -3);
        }
    }

    private int _nextRef = 1;
    private int Ref()
    {
        // A private reference slot in the registry (integer keys from 1000, away from luaL_ref's and the globals').
        int r = 1000 + _nextRef++;
        lua_rawseti(_L, LUA_REGISTRYINDEX, r);
        return r;
    }

    internal void PushGlobalsTable() => lua_rawgeti(_L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);

    /// <summary>Pushes the wrapped (error-raising) Lua function for a registered C# function.</summary>
    internal void PushFunction(HostFunction fn)
    {
        int id = _functions.Count;
        _functions.Add(fn);
        lua_rawgeti(_L, LUA_REGISTRYINDEX, _wrapRef);
        lua_pushinteger(_L, id);
        lua_pushcclosure(_L, &Dispatch, 1);
        if (PCall(_L, 1, 1, 0) != LUA_OK) throw new InvalidOperationException("Lua: wrapping " + fn.Name + " failed: " + ToStringRaw(_L, -1));
    }

    /// <summary>Pushes the raw function (no wrapper: returns true/false and the results) — for the overhead benchmark.</summary>
    internal void PushRawFunction(HostFunction fn)
    {
        int id = _functions.Count;
        _functions.Add(fn);
        lua_pushinteger(_L, id);
        lua_pushcclosure(_L, &Dispatch, 1);
    }

    /// <summary>Sets global <paramref name="path"/> ("a.b.c") to a host function, creating the tables on the way.</summary>
    public void Register(string path, int minArgs, int maxArgs, Func<LuaCall, int> body, string usage = "", bool raw = false)
    {
        CheckAlive();
        var parts = path.Split('.');
        PushGlobalsTable();
        for (int i = 0; i < parts.Length - 1; i++)
        {
            PushString(_L, parts[i]);
            if (lua_rawget(_L, -2) != LUA_TTABLE)
            {
                Pop(_L, 1);
                NewTable(_L);
                PushString(_L, parts[i]);
                lua_pushvalue(_L, -2);
                lua_rawset(_L, -4);
            }
            Remove(_L, -2);
        }
        PushString(_L, parts[^1]);
        var fn = new HostFunction(path, false, minArgs, maxArgs, body, usage);
        if (raw) PushRawFunction(fn); else PushFunction(fn);
        lua_rawset(_L, -3);
        Pop(_L, 1);
    }

    private void CheckAlive()
    {
        if (_L == IntPtr.Zero) throw new ObjectDisposedException(nameof(LuaHost));
    }

    public void Dispose()
    {
        if (_L != IntPtr.Zero)
        {
            var L = _L;
            lua_close(L); // runs our userdata's __gc (they only queue releases)
            _L = IntPtr.Zero;
        }
        Api?.Dispose();
        Free();
    }

    private void Free()
    {
        if (_self.IsAllocated) _self.Free();
        NativeMemory.Free(_alloc);
    }

    internal static LuaHost FromState(IntPtr L) => (LuaHost)GCHandle.FromIntPtr(*(IntPtr*)(L - IntPtr.Size)).Target!;

    // ---------------------------------------------------------------- limits

    /// <summary>Bytes the script may still allocate before the memory limit.</summary>
    public long MemoryLeft => Math.Max(0, _alloc->Limit - _alloc->Used);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static IntPtr Allocate(IntPtr ud, IntPtr ptr, nuint osize, nuint nsize)
    {
        var s = (AllocState*)ud;
        long old = ptr == IntPtr.Zero ? 0 : (long)osize; // with ptr == NULL, osize is a type tag
        if (nsize == 0)
        {
            if (ptr != IntPtr.Zero) { NativeMemory.Free((void*)ptr); s->Used -= old; }
            return IntPtr.Zero;
        }
        long grow = (long)nsize - old;
        if (grow > 0 && s->Enforce != 0 && s->Used + grow > s->Limit)
        {
            // Refused: Lua collects garbage and retries once, then raises a memory error; the hook (next
            // instruction) turns it into the limit's message, and every later instruction raises it again.
            s->Refused = (long)nsize;
            if (s->Pending == 0) RecordRefusal(s);
            RequestStop(s);
            return IntPtr.Zero;
        }
        void* p = NativeMemory.Realloc((void*)ptr, nsize);
        if (p == null) return IntPtr.Zero;
        s->Used += grow;
        if (s->Used > s->Peak) s->Peak = s->Used;
        return (IntPtr)p;
    }

    /// <summary>"file.lua:LINE: " where the script was when an allocation was refused (or null).</summary>
    private string? _refusedAt;
    private IntPtr _runningThread;

    private static void RecordRefusal(AllocState* s)
    {
        // lua_getstack/lua_getinfo("Sl") only read the call chain: safe inside an allocation. The running
        // thread is the one last seen by the hook or an rt.* call (a coroutine's, or the main one).
        try
        {
            var h = FromState(s->MainState);
            var L = h._runningThread != IntPtr.Zero ? h._runningThread : s->MainState;
            LuaDebug ar;
            fixed (byte* what = Utf8Z("Sl"))
                for (int level = 0; lua_getstack(L, level, &ar) != 0; level++)
                {
                    lua_getinfo(L, what, &ar);
                    if (ar.CurrentLine > 0 && ar.ShortSourceText != "[rt]") { h._refusedAt = $"{ar.ShortSourceText}:{ar.CurrentLine}: "; break; }
                }
        }
        catch { }
    }

    private static void RequestStop(AllocState* s)
    {
        if (s->Pending != 0) return;
        s->Pending = 1;
        // lua_sethook only sets fields (safe at any point, as from a signal handler): the C# hook runs at the
        // main thread's next instruction, where the state is consistent, and stops the script there.
        delegate* unmanaged[Cdecl]<IntPtr, LuaDebug*, void> hook = &Hook;
        lua_sethook(s->MainState, (IntPtr)hook, LUA_MASKCOUNT, 1);
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Hook(IntPtr L, LuaDebug* ar)
    {
        try { FromState(L).OnHook(L); }
        catch { /* never let an exception leave a callback */ }
    }

    private void OnHook(IntPtr L)
    {
        int saved = _alloc->Enforce;
        _alloc->Enforce = 0;
        _runningThread = L;
        try
        {
            if (_stop is null)
            {
                _instructions += _alloc->Pending != 0 ? 1 : HookInterval;
                if (Options.MaxInstructions > 0 && _instructions > Options.MaxInstructions)
                    _stop = StopHere(L, LuaErrorKind.InstructionBudget, BudgetText);
                else if (PastDeadline)
                    _stop = StopHere(L, LuaErrorKind.TimeLimit, TimeLimitText);
                else if (_alloc->Pending != 0 || _alloc->Used > _alloc->Limit)
                    _stop = StopHere(L, LuaErrorKind.MemoryLimit,
                        $"memory limit of {Mib(Options.MemoryLimitBytes)} exceeded" +
                        (_alloc->Refused > 0 ? $": an allocation of {Mib(_alloc->Refused)} was refused" : $" (Lua heap {Mib(_alloc->Used)})") +
                        " (raise it with --memory-limit, or LuaHostOptions.MemoryLimitBytes)");
            }
            if (_stop is not null)
                lua_sethook(L, _luaError, LUA_MASKCOUNT, 1); // raises at the next instruction, and at every one after
        }
        finally { _alloc->Enforce = saved; }
    }

    /// <summary>Where the script is now ("file.lua:LINE: " + why) and its traceback.</summary>
    private StopInfo StopHere(IntPtr L, LuaErrorKind kind, string why)
    {
        string where = "";
        LuaDebug ar;
        fixed (byte* what = Utf8Z("Sl"))
            for (int level = 0; lua_getstack(L, level, &ar) != 0; level++)
            {
                lua_getinfo(L, what, &ar);
                if (ar.CurrentLine > 0 && ar.ShortSourceText != "[rt]") { where = $"{ar.ShortSourceText}:{ar.CurrentLine}: "; break; }
            }
        luaL_traceback(L, L, null, 0);
        var tb = ToStringRaw(L, -1);
        Pop(L, 1);
        return new StopInfo(kind, where + why, tb is null ? null : CleanTraceback(tb));
    }

    // ---------------------------------------------------------------- plain internal functions (never raise)

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Stopped(IntPtr L)
    {
        try
        {
            var h = FromState(L);
            if (h._stop is null) return 0;
            PushString(L, h._stop.Message);
            return 1;
        }
        catch { return 0; }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Write(IntPtr L)
    {
        try
        {
            var h = FromState(L);
            h.Options.Output.Write(ToStringRaw(L, 1) ?? "");
            h.Options.Output.Flush();
        }
        catch { }
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int MemoryLeftFn(IntPtr L)
    {
        try { lua_pushnumber(L, FromState(L).MemoryLeft); return 1; }
        catch { return 0; }
    }

    /// <summary>Message handler of every protected call: the error message plus a traceback taken where it was raised.</summary>
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int MessageHandler(IntPtr L)
    {
        try
        {
            var h = FromState(L);
            int saved = h._alloc->Enforce;
            h._alloc->Enforce = 0;
            try
            {
                string msg = ToStringRaw(L, 1) ?? (lua_type(L, 1) == LUA_TNUMBER ? lua_tonumberx(L, 1, null).ToString(System.Globalization.CultureInfo.InvariantCulture)
                    : $"(error object is a {TypeName(L, 1)} value)");
                fixed (byte* m = Utf8Z(msg)) luaL_traceback(L, L, m, 1);
                return 1;
            }
            finally { h._alloc->Enforce = saved; }
        }
        catch { return 1; }
    }
}
