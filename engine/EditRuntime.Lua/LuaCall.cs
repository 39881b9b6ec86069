using System.Collections;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static EditRuntime.Lua.LuaNative;

namespace EditRuntime.Lua;

/// <summary>A C# function callable from Lua: its Lua name ("rt.model.load", "Model:generate"), argument counts
/// (not counting self), body and a one-line usage shown in argument-count errors.</summary>
public sealed record HostFunction(string Name, bool IsMethod, int MinArgs, int MaxArgs, Func<LuaCall, int> Body, string Usage);

/// <summary>An error in the arguments of an rt.* call; its message is complete ("bad argument #1 to 'f' (...)").</summary>
public sealed class LuaArgumentException(string message) : Exception(message);

/// <summary>An error raised by Lua code that C# called (an editor written in Lua, a progress callback): the
/// message already carries its "file.lua:LINE:" position.</summary>
public sealed class LuaNestedException(string message) : Exception(message);

/// <summary>An object a script holds as userdata: only the methods of its type's table are visible to Lua.</summary>
public abstract class LuaObject
{
    /// <summary>The Lua type name (metatable __name): "Model", "Editor", "Tensor", "Baseline".</summary>
    public abstract string TypeName { get; }
    public abstract string Describe();
    /// <summary>Called when the script's last reference is collected (or the host closes).</summary>
    public virtual void OnCollected() { }
}

/// <summary>A Lua function kept for C# to call later (an editor's methods, a progress callback).</summary>
public sealed class LuaFunctionRef : IDisposable
{
    internal LuaFunctionRef(LuaHost host, int reference) { Host = host; Reference = reference; }
    internal LuaHost Host { get; }
    internal int Reference { get; private set; }
    public void Dispose()
    {
        if (Reference != 0) Host.Unref(Reference);
        Reference = 0;
    }
}

/// <summary>The arguments of one call from Lua into C#, and the way back (results). Argument numbers are the
/// script's: for methods, self is not counted.</summary>
public sealed unsafe class LuaCall
{
    private readonly IntPtr _L;
    private readonly int _nargs;

    internal LuaCall(LuaHost host, IntPtr L, HostFunction fn, int nargs)
    {
        Host = host; _L = L; Function = fn; _nargs = nargs;
    }

    public LuaHost Host { get; }
    public HostFunction Function { get; }
    public string Name => Function.Name;
    internal IntPtr State => _L;
    private int Offset => Function.IsMethod ? 1 : 0;
    /// <summary>Arguments given (not counting self).</summary>
    public int Count => Math.Max(0, _nargs - Offset);

    private int Idx(int i) => i + Offset;

    internal void CheckArgCount()
    {
        if (Function.IsMethod)
        {
            if (_nargs < 1 || luaL_TestSelf() is null)
                throw new LuaArgumentException($"{Name}: call it with ':' (the {TypeOfSelf} is missing: got {(_nargs < 1 ? "no value" : TypeName(_L, 1))} as self)");
        }
        int n = Count;
        if (n < Function.MinArgs || (Function.MaxArgs >= 0 && n > Function.MaxArgs))
        {
            string expected = Function.MaxArgs < 0 ? $"at least {Function.MinArgs}"
                : Function.MinArgs == Function.MaxArgs ? $"{Function.MinArgs}" : $"{Function.MinArgs} to {Function.MaxArgs}";
            throw new LuaArgumentException($"{Name}: expected {expected} argument{(expected == "1" ? "" : "s")}, got {n}" +
                                           (Function.Usage.Length > 0 ? $" (usage: {Function.Usage})" : ""));
        }
    }

    private string TypeOfSelf => Function.Name.Split(':')[0];

    private LuaObject? luaL_TestSelf() => Host.TestObject(_L, 1, TypeOfSelf);

    public LuaArgumentException ArgError(int i, string problem) => new($"bad argument #{i} to '{Name}' ({problem})");

    private LuaArgumentException TypeError(int i, string expected) => ArgError(i, $"{expected} expected, got {TypeName(_L, Idx(i))}");

    public bool IsNil(int i) => i > Count || lua_type(_L, Idx(i)) <= LUA_TNIL;

    public string String(int i)
    {
        int t = i > Count ? LUA_TNONE : lua_type(_L, Idx(i));
        if (t == LUA_TSTRING) return ToStringRaw(_L, Idx(i))!;
        if (t == LUA_TNUMBER) return NumberText(Idx(i));
        throw TypeError(i, "string");
    }

    public string? OptString(int i) => IsNil(i) ? null : String(i);

    private string NumberText(int idx) => lua_isinteger(_L, idx) != 0
        ? lua_tointegerx(_L, idx, null).ToString(CultureInfo.InvariantCulture)
        : lua_tonumberx(_L, idx, null).ToString("R", CultureInfo.InvariantCulture);

    public double Number(int i)
    {
        int ok;
        if (i <= Count && lua_type(_L, Idx(i)) == LUA_TNUMBER) return lua_tonumberx(_L, Idx(i), &ok);
        throw TypeError(i, "number");
    }

    public long Integer(int i)
    {
        int ok;
        if (i <= Count && lua_type(_L, Idx(i)) == LUA_TNUMBER)
        {
            long v = lua_tointegerx(_L, Idx(i), &ok);
            if (ok != 0) return v;
            throw ArgError(i, "number has no integer representation");
        }
        throw TypeError(i, "integer");
    }

    public int Int(int i, int min = int.MinValue, int max = int.MaxValue)
    {
        long v = Integer(i);
        if (v < min || v > max) throw ArgError(i, max == int.MaxValue ? $"must be at least {min}, got {v}" : $"must be in [{min}, {max}], got {v}");
        return (int)v;
    }

    public bool Bool(int i)
    {
        if (i <= Count && lua_type(_L, Idx(i)) == LUA_TBOOLEAN) return lua_toboolean(_L, Idx(i)) != 0;
        throw TypeError(i, "boolean");
    }

    public T Self<T>() where T : LuaObject => (T)Host.TestObject(_L, 1, TypeOfSelf)!;

    public T Object<T>(int i, string typeName) where T : LuaObject
    {
        var o = i <= Count ? Host.TestObject(_L, Idx(i), typeName) : null;
        return o as T ?? throw TypeError(i, typeName);
    }

    /// <summary>Any argument as a C# value (tables become List / Dictionary; see <see cref="LuaValues"/>).</summary>
    public object? Value(int i, string what)
    {
        if (i > Count) return null;
        try { return LuaValues.ToClr(Host, _L, Idx(i), 0, what); }
        catch (LuaArgumentException e) when (!e.Message.StartsWith("bad argument", StringComparison.Ordinal)) { throw ArgError(i, e.Message); }
    }

    /// <summary>A table argument (or nil) as a string-keyed dictionary; unknown keys are an error naming the known ones.</summary>
    public Dictionary<string, object?> Options(int i, params string[] known)
    {
        if (IsNil(i)) return new();
        if (lua_type(_L, Idx(i)) != LUA_TTABLE) throw TypeError(i, "table");
        var v = Value(i, $"argument #{i}");
        var d = LuaValues.AsDictionary(v, $"bad argument #{i} to '{Name}'");
        foreach (var k in d.Keys)
            if (!known.Contains(k))
                throw ArgError(i, $"unknown option '{k}'; known: {string.Join(", ", known)}");
        return d;
    }

    public List<object?> List(int i, string what)
    {
        if (i > Count || lua_type(_L, Idx(i)) != LUA_TTABLE) throw TypeError(i, "table");
        return LuaValues.AsList(Value(i, what), $"bad argument #{i} to '{Name}'");
    }

    public bool IsTable(int i) => i <= Count && lua_type(_L, Idx(i)) == LUA_TTABLE;
    public bool IsFunction(int i) => i <= Count && lua_type(_L, Idx(i)) == LUA_TFUNCTION;

    // ---------------------------------------------------------------- results

    public int Return(object? value) { LuaValues.Push(Host, _L, value, 0); return 1; }

    public int Return(params object?[] values)
    {
        if (lua_checkstack(_L, values.Length + LUA_MINSTACK) == 0) throw new InvalidOperationException("Lua stack overflow");
        foreach (var v in values) LuaValues.Push(Host, _L, v, 0);
        return values.Length;
    }

    public int Nothing() => 0;
}

/// <summary>Conversions between Lua values and C# values (raw access only: no metamethod ever runs).</summary>
internal static unsafe class LuaValues
{
    private const int MaxDepth = 32;

    /// <summary>nil → null, boolean, integer → long, float → double, string, table → List (keys 1..n) or
    /// Dictionary (string keys), our userdata → LuaObject, function → LuaFunctionRef.</summary>
    public static object? ToClr(LuaHost host, IntPtr L, int idx, int depth, string path)
    {
        switch (lua_type(L, idx))
        {
            case LUA_TNONE:
            case LUA_TNIL: return null;
            case LUA_TBOOLEAN: return lua_toboolean(L, idx) != 0;
            case LUA_TNUMBER: return lua_isinteger(L, idx) != 0 ? (object)lua_tointegerx(L, idx, null) : lua_tonumberx(L, idx, null);
            case LUA_TSTRING: return ToStringRaw(L, idx);
            case LUA_TUSERDATA:
                return host.AnyObject(L, idx) ?? throw new LuaArgumentException($"{path}: a foreign userdata value is not accepted");
            case LUA_TFUNCTION:
                lua_pushvalue(L, idx);
                return host.NewFunctionRef(L);
            case LUA_TTABLE: return Table(host, L, idx, depth, path);
            default: throw new LuaArgumentException($"{path}: a {TypeName(L, idx)} value is not accepted");
        }
    }

    private static object Table(LuaHost host, IntPtr L, int idx, int depth, string path)
    {
        if (depth >= MaxDepth) throw new LuaArgumentException($"{path}: tables nested more than {MaxDepth} deep (a cycle?)");
        if (lua_checkstack(L, 4) == 0) throw new LuaArgumentException($"{path}: Lua stack overflow");
        if (idx < 0) idx = lua_gettop(L) + idx + 1;
        long n = (long)lua_rawlen(L, idx);
        var list = new List<object?>();
        Dictionary<string, object?>? dict = null;
        long count = 0;
        lua_pushnil(L);
        while (lua_next(L, idx) != 0)
        {
            count++;
            int kt = lua_type(L, -2);
            if (kt == LUA_TNUMBER && lua_isinteger(L, -2) != 0)
            {
                long k = lua_tointegerx(L, -2, null);
                if (k < 1 || k > n) { Pop(L, 3); throw new LuaArgumentException($"{path}: key {k} is outside the array part 1..{n} (mixed tables are not accepted)"); }
            }
            else if (kt == LUA_TSTRING)
            {
                var key = ToStringRaw(L, -2)!;
                dict ??= new Dictionary<string, object?>();
                try { dict[key] = ToClr(host, L, -1, depth + 1, path + "." + key); }
                catch { Pop(L, 2); throw; }
            }
            else { string t = TypeName(L, -2); Pop(L, 3); throw new LuaArgumentException($"{path}: a {t} key is not accepted (keys are strings or 1..n)"); }
            Pop(L, 1);
        }
        if (dict is not null)
        {
            if (count != dict.Count) throw new LuaArgumentException($"{path}: a table with both string keys and array items is not accepted");
            return dict;
        }
        for (long i = 1; i <= n; i++)
        {
            lua_rawgeti(L, idx, i);
            try { list.Add(ToClr(host, L, -1, depth + 1, $"{path}[{i}]")); }
            finally { Pop(L, 1); }
        }
        if (list.Count != count) throw new LuaArgumentException($"{path}: the array has holes (nil items)");
        return list;
    }

    public static Dictionary<string, object?> AsDictionary(object? v, string path) => v switch
    {
        null => new(),
        Dictionary<string, object?> d => d,
        List<object?> { Count: 0 } => new(),
        _ => throw new LuaArgumentException($"{path}: a table with string keys expected, got {Describe(v)}"),
    };

    public static List<object?> AsList(object? v, string path) => v switch
    {
        List<object?> l => l,
        _ => throw new LuaArgumentException($"{path}: an array (a table with items 1..n) expected, got {Describe(v)}"),
    };

    public static string Describe(object? v) => v switch
    {
        null => "nil",
        bool => "boolean",
        long or double => "number",
        string => "string",
        List<object?> => "an array",
        Dictionary<string, object?> => "a table with string keys",
        LuaObject o => o.TypeName,
        LuaFunctionRef => "function",
        _ => v.GetType().Name,
    };

    public static void Push(LuaHost host, IntPtr L, object? v, int depth)
    {
        if (depth > MaxDepth) throw new InvalidOperationException("result nested too deep");
        if (lua_checkstack(L, 4) == 0) throw new InvalidOperationException("Lua stack overflow");
        switch (v)
        {
            case null: lua_pushnil(L); break;
            case bool b: lua_pushboolean(L, b ? 1 : 0); break;
            case int i: lua_pushinteger(L, i); break;
            case long l: lua_pushinteger(L, l); break;
            case float f: lua_pushnumber(L, f); break;
            case double d: lua_pushnumber(L, d); break;
            case string s: PushString(L, s); break;
            case LuaObject o: host.PushObject(L, o); break;
            case IDictionary<string, object?> dict:
                lua_createtable(L, 0, dict.Count);
                foreach (var (k, val) in dict)
                {
                    if (val is null) continue;
                    PushString(L, k);
                    Push(host, L, val, depth + 1);
                    lua_rawset(L, -3);
                }
                break;
            case float[] fa:
                lua_createtable(L, fa.Length, 0);
                for (int i = 0; i < fa.Length; i++) { lua_pushnumber(L, fa[i]); lua_rawseti(L, -2, i + 1); }
                break;
            case int[] ia:
                lua_createtable(L, ia.Length, 0);
                for (int i = 0; i < ia.Length; i++) { lua_pushinteger(L, ia[i]); lua_rawseti(L, -2, i + 1); }
                break;
            case IEnumerable e:
                var items = e.Cast<object?>().ToList();
                lua_createtable(L, items.Count, 0);
                for (int i = 0; i < items.Count; i++) { Push(host, L, items[i], depth + 1); lua_rawseti(L, -2, i + 1); }
                break;
            default: throw new InvalidOperationException($"cannot pass a {v.GetType().Name} to Lua");
        }
    }
}
