using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static EditRuntime.Lua.LuaNative;

namespace EditRuntime.Lua;

public sealed unsafe partial class LuaHost
{
    private readonly Dictionary<long, LuaObject> _objects = new();
    private readonly Queue<long> _collected = new();
    private long _nextObjectId;
    private readonly HashSet<string> _types = new();
    private readonly Dictionary<string, byte[]> _typeNames = new();

    // ---------------------------------------------------------------- calls from Lua into C#

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Dispatch(IntPtr L)
    {
        try { return FromState(L).Invoke(L, (int)lua_tointegerx(L, UpvalueIndex(1), null)); }
        catch { return 0; } // unreachable in practice: Invoke catches everything itself
    }

    private int Invoke(IntPtr L, int id)
    {
        var fn = _functions[id];
        int saved = _alloc->Enforce;
        _alloc->Enforce = 0;
        var savedState = _currentState;
        _currentState = L;
        _runningThread = L;
        int nargs = lua_gettop(L);
        List<EditorObject>? claimed = null;
        try
        {
            DrainReleases();
            if (lua_checkstack(L, LUA_MINSTACK) == 0) throw new InvalidOperationException("Lua stack overflow");
            claimed = ClaimEditors(L, nargs, fn);
            lua_pushboolean(L, 1);
            var call = new LuaCall(this, L, fn, nargs);
            call.CheckArgCount();
            int n = 1 + fn.Body(call);
            // A long rt.* call (an evaluation, an edit) cannot be interrupted: past the time limit, the script stops
            // at its next instruction, with the line of this call.
            if (_stop is null && PastDeadline)
            {
                _stop = StopHere(L, LuaErrorKind.TimeLimit, TimeLimitText);
                lua_sethook(L, _luaError, LUA_MASKCOUNT, 1);
            }
            return n;
        }
        catch (Exception e)
        {
            lua_settop(L, nargs);
            lua_pushboolean(L, 0);
            var (message, level) = Describe(fn, e);
            PushString(L, message);
            lua_pushinteger(L, level);
            return 3;
        }
        finally
        {
            if (claimed is not null) foreach (var e in claimed) _busyEditors.Remove(e);
            _alloc->Enforce = saved;
            _currentState = savedState;
        }
    }

    /// <summary>Editors an rt.* call is using, with the call's name: a callback of that call (a progress function, a Lua
    /// editor's method) that uses the same editor again would change its state under the outer call (a nested
    /// rt.eval.run reset the outer run's edits), so any such call is refused.</summary>
    private readonly Dictionary<EditorObject, string> _busyEditors = new();

    private List<EditorObject>? ClaimEditors(IntPtr L, int nargs, HostFunction fn)
    {
        List<EditorObject>? claimed = null;
        for (int i = 1; i <= nargs; i++)
        {
            if (lua_type(L, i) != LUA_TUSERDATA) continue;
            EditorObject? e;
            try { e = TestObject(L, i, "Editor") as EditorObject; }
            catch (LuaArgumentException) { continue; } // closed: the call itself reports it
            if (e is null) continue;
            if (_busyEditors.TryGetValue(e, out var outer))
                throw new LuaArgumentException($"{fn.Name}: this editor is in use by {outer}, which called back into the script; " +
                                               "an editor cannot be used again from inside its own call (finish the outer call first)");
            _busyEditors[e] = fn.Name;
            (claimed ??= new()).Add(e);
        }
        return claimed;
    }

    /// <summary>The thread running the current rt.* call (a coroutine's, or the main one).</summary>
    private IntPtr _currentState;

    /// <summary>The message a script sees for an exception in <paramref name="fn"/>, and the error level
    /// (2: prefixed with the caller's position; 0: the message has a position already).</summary>
    private static (string, int) Describe(HostFunction fn, Exception e)
    {
        if (e is LuaArgumentException) return (e.Message, 2);
        if (e is LuaNestedException) return (e.Message, 0);
        if (e is System.Reflection.TargetInvocationException { InnerException: { } inner }) e = inner;
        bool bug = e is NullReferenceException or IndexOutOfRangeException or InvalidCastException or KeyNotFoundException { Message: "" };
        string msg = bug ? $"{fn.Name}: internal error ({e.GetType().Name}: {e.Message})" : $"{fn.Name}: {e.Message}";
        if (Environment.GetEnvironmentVariable("EDITRT_TRACE") == "1") msg += "\n" + e;
        return (msg, 2);
    }

    // ---------------------------------------------------------------- objects (userdata)

    /// <summary>Declares a userdata type: its methods (called with ':') are the only members a script can reach.</summary>
    internal void DefineType(string typeName, IEnumerable<HostFunction> methods)
    {
        fixed (byte* n = Utf8Z(typeName))
            if (luaL_newmetatable(_L, n) == 0) throw new InvalidOperationException($"Lua type {typeName} defined twice.");
        _types.Add(typeName);
        // metatable: __name (set by luaL_newmetatable), __index = methods, __gc, __tostring, __metatable (locked)
        PushString(_L, "__index");
        NewTable(_L);
        foreach (var m in methods)
        {
            PushString(_L, m.Name.Split(':')[1]);
            PushFunction(m);
            lua_rawset(_L, -3);
        }
        lua_rawset(_L, -3);
        PushString(_L, "__gc");
        lua_pushcclosure(_L, &CollectObject, 0);
        lua_rawset(_L, -3);
        PushString(_L, "__tostring");
        lua_pushcclosure(_L, &ObjectToString, 0);
        lua_rawset(_L, -3);
        PushString(_L, "__metatable");
        PushString(_L, "locked");
        lua_rawset(_L, -3);
        Pop(_L, 1);
    }

    internal void PushObject(IntPtr L, LuaObject o)
    {
        if (!_types.Contains(o.TypeName)) throw new InvalidOperationException($"Lua type {o.TypeName} is not defined.");
        long id = ++_nextObjectId;
        var p = (long*)lua_newuserdatauv(L, sizeof(long), 0);
        *p = id;
        _objects[id] = o;
        fixed (byte* n = Utf8Z(o.TypeName)) luaL_newmetatable(L, n); // exists: pushes it
        lua_setmetatable(L, -2);
    }

    /// <summary>The object at idx if it is a userdata of type <paramref name="typeName"/> still alive, else null.</summary>
    internal LuaObject? TestObject(IntPtr L, int idx, string typeName)
    {
        if (!_typeNames.TryGetValue(typeName, out var name)) _typeNames[typeName] = name = Utf8Z(typeName);
        void* p;
        fixed (byte* n = name) p = luaL_testudata(L, idx, n);
        if (p == null) return null;
        return _objects.TryGetValue(*(long*)p, out var o) ? o : throw new LuaArgumentException($"this {typeName} was closed");
    }

    /// <summary>Any of our userdata at idx, or null.</summary>
    internal LuaObject? AnyObject(IntPtr L, int idx)
    {
        foreach (var t in _types)
            if (TestObject(L, idx, t) is { } o) return o;
        return null;
    }

    /// <summary>Forgets an object (explicit close): the userdata stays but every use reports "closed".</summary>
    internal IEnumerable<LuaObject> LiveObjects => _objects.Values;

    internal void ForgetObject(LuaObject o)
    {
        foreach (var (id, v) in _objects)
            if (ReferenceEquals(v, o)) { _objects.Remove(id); return; }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int CollectObject(IntPtr L)
    {
        // Only queues the release: __gc can run inside any allocation, also in the middle of a C# call.
        try
        {
            var p = (long*)lua_touserdata(L, 1);
            if (p != null) FromState(L)._collected.Enqueue(*p);
        }
        catch { }
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int ObjectToString(IntPtr L)
    {
        try
        {
            var h = FromState(L);
            int saved = h._alloc->Enforce;
            h._alloc->Enforce = 0;
            try
            {
                var p = (long*)lua_touserdata(L, 1);
                string s = p != null && h._objects.TryGetValue(*p, out var o) ? o.Describe() : $"{TypeName(L, 1)} (closed)";
                PushString(L, s);
                return 1;
            }
            finally { h._alloc->Enforce = saved; }
        }
        catch { return 0; }
    }

    private void DrainReleases()
    {
        while (_collected.Count > 0)
        {
            long id = _collected.Dequeue();
            if (_objects.Remove(id, out var o))
            {
                try { o.OnCollected(); } catch { /* a failing release must not break the script */ }
            }
        }
    }

    // ---------------------------------------------------------------- Lua functions kept by C#

    internal LuaFunctionRef NewFunctionRef(IntPtr L)
    {
        // The function is on top of L's stack; keep it in the registry (pops it).
        lua_rawgeti(L, LUA_REGISTRYINDEX, _refTable);
        Insert(L, -2);
        long slot = _freeRefs.Count > 0 ? _freeRefs.Pop() : ++_lastRef;
        lua_rawseti(L, -2, slot);
        Pop(L, 1);
        return new LuaFunctionRef(this, (int)slot);
    }

    private int _refTable;
    private long _lastRef;
    private readonly Stack<long> _freeRefs = new();

    internal void Unref(int reference)
    {
        if (_L == IntPtr.Zero) return;
        lua_rawgeti(_L, LUA_REGISTRYINDEX, _refTable);
        lua_pushnil(_L);
        lua_rawseti(_L, -2, reference);
        Pop(_L, 1);
        _freeRefs.Push(reference);
    }

    private void CreateRefTable()
    {
        NewTable(_L);
        _refTable = Ref();
    }

    /// <summary>Calls a kept Lua function from C# (inside an rt.* call) with the given arguments; returns its
    /// results as C# values. A Lua error becomes a <see cref="LuaNestedException"/> (message with position).</summary>
    internal object?[] CallFunction(LuaFunctionRef f, int nresults, params object?[] args)
    {
        if (f.Reference == 0) throw new ObjectDisposedException("Lua function");
        var L = _currentState != IntPtr.Zero ? _currentState : _L;
        int top = lua_gettop(L);
        if (lua_checkstack(L, args.Length + 4) == 0) throw new InvalidOperationException("Lua stack overflow");
        try
        {
            lua_pushcclosure(L, &MessageHandler, 0);
            int handler = lua_gettop(L);
            lua_rawgeti(L, LUA_REGISTRYINDEX, _refTable);
            lua_rawgeti(L, -1, f.Reference);
            Remove(L, -2);
            foreach (var a in args) LuaValues.Push(this, L, a, 0);
            int saved = _alloc->Enforce;
            _alloc->Enforce = 1;
            int status;
            try { status = PCall(L, args.Length, nresults, handler); }
            finally { _alloc->Enforce = saved; }
            if (status != LUA_OK)
            {
                if (_stop is not null) throw new LuaNestedException(_stop.Message);
                if (status == LUA_ERRMEM) throw new LuaNestedException($"memory limit of {Mib(Options.MemoryLimitBytes)} exceeded");
                var (message, _) = SplitTraceback(ToStringRaw(L, -1) ?? "(error object is not a string)");
                throw new LuaNestedException(message);
            }
            var results = new object?[nresults];
            for (int i = 0; i < nresults; i++) results[i] = LuaValues.ToClr(this, L, handler + 1 + i, 0, $"result {i + 1}");
            return results;
        }
        finally { lua_settop(L, top); }
    }
}
