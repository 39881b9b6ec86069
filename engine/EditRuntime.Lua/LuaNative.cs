using System.Runtime.InteropServices;
using System.Text;

namespace EditRuntime.Lua;

/// <summary>
/// The Lua 5.4 C API as the host uses it: the library is KeraLua's native build (liblua54, shipped in
/// the KeraLua NuGet package), called through blittable P/Invoke declarations so that callbacks can be
/// plain function pointers (<c>[UnmanagedCallersOnly]</c>) and no delegate or marshalling sits on the
/// hot path. Only functions that cannot raise a Lua error from a host context are used inside
/// callbacks (raw table access, type tests, pushes — the allocator never refuses while the host runs).
/// </summary>
internal static unsafe class LuaNative
{
    private const string Lib = "lua54";

    public const int LUA_MULTRET = -1;
    public const int LUA_REGISTRYINDEX = -1000000 - 1000; // -LUAI_MAXSTACK - 1000
    public const int LUA_RIDX_GLOBALS = 2;
    public const int LUA_MINSTACK = 20;

    public const int LUA_OK = 0, LUA_YIELD = 1, LUA_ERRRUN = 2, LUA_ERRSYNTAX = 3, LUA_ERRMEM = 4, LUA_ERRERR = 5;
    public const int LUA_TNONE = -1, LUA_TNIL = 0, LUA_TBOOLEAN = 1, LUA_TLIGHTUSERDATA = 2, LUA_TNUMBER = 3,
        LUA_TSTRING = 4, LUA_TTABLE = 5, LUA_TFUNCTION = 6, LUA_TUSERDATA = 7, LUA_TTHREAD = 8;
    public const int LUA_MASKCOUNT = 1 << 3;
    public const int LUA_GCCOUNT = 3, LUA_GCCOUNTB = 4, LUA_GCCOLLECT = 2;

    public static int UpvalueIndex(int i) => LUA_REGISTRYINDEX - i;

    [DllImport(Lib)] public static extern IntPtr lua_newstate(delegate* unmanaged[Cdecl]<IntPtr, IntPtr, nuint, nuint, IntPtr> f, IntPtr ud);
    [DllImport(Lib)] public static extern void lua_close(IntPtr L);
    [DllImport(Lib)] public static extern int lua_gettop(IntPtr L);
    [DllImport(Lib)] public static extern void lua_settop(IntPtr L, int idx);
    [DllImport(Lib)] public static extern void lua_pushvalue(IntPtr L, int idx);
    [DllImport(Lib)] public static extern void lua_rotate(IntPtr L, int idx, int n);
    [DllImport(Lib)] public static extern int lua_checkstack(IntPtr L, int n);
    [DllImport(Lib)] public static extern int lua_type(IntPtr L, int idx);
    [DllImport(Lib)] public static extern IntPtr lua_typename(IntPtr L, int tp);
    [DllImport(Lib)] public static extern double lua_tonumberx(IntPtr L, int idx, int* isnum);
    [DllImport(Lib)] public static extern long lua_tointegerx(IntPtr L, int idx, int* isnum);
    [DllImport(Lib)] public static extern int lua_isinteger(IntPtr L, int idx);
    [DllImport(Lib)] public static extern int lua_toboolean(IntPtr L, int idx);
    [DllImport(Lib)] public static extern byte* lua_tolstring(IntPtr L, int idx, nuint* len);
    [DllImport(Lib)] public static extern nuint lua_rawlen(IntPtr L, int idx);
    [DllImport(Lib)] public static extern void* lua_touserdata(IntPtr L, int idx);
    [DllImport(Lib)] public static extern int lua_rawequal(IntPtr L, int a, int b);
    [DllImport(Lib)] public static extern void lua_pushnil(IntPtr L);
    [DllImport(Lib)] public static extern void lua_pushnumber(IntPtr L, double n);
    [DllImport(Lib)] public static extern void lua_pushinteger(IntPtr L, long n);
    [DllImport(Lib)] public static extern byte* lua_pushlstring(IntPtr L, byte* s, nuint len);
    [DllImport(Lib)] public static extern void lua_pushcclosure(IntPtr L, delegate* unmanaged[Cdecl]<IntPtr, int> fn, int n);
    [DllImport(Lib)] public static extern void lua_pushboolean(IntPtr L, int b);
    [DllImport(Lib)] public static extern int lua_rawget(IntPtr L, int idx);
    [DllImport(Lib)] public static extern int lua_rawgeti(IntPtr L, int idx, long n);
    [DllImport(Lib)] public static extern void lua_createtable(IntPtr L, int narr, int nrec);
    [DllImport(Lib)] public static extern void* lua_newuserdatauv(IntPtr L, nuint sz, int nuvalue);
    [DllImport(Lib)] public static extern int lua_getmetatable(IntPtr L, int idx);
    [DllImport(Lib)] public static extern void lua_rawset(IntPtr L, int idx);
    [DllImport(Lib)] public static extern void lua_rawseti(IntPtr L, int idx, long n);
    [DllImport(Lib)] public static extern int lua_setmetatable(IntPtr L, int idx);
    [DllImport(Lib)] public static extern int lua_pcallk(IntPtr L, int nargs, int nresults, int errfunc, IntPtr ctx, IntPtr k);
    [DllImport(Lib)] public static extern int lua_load(IntPtr L, delegate* unmanaged[Cdecl]<IntPtr, IntPtr, nuint*, byte*> reader, IntPtr data, byte* chunkname, byte* mode);
    [DllImport(Lib)] public static extern int lua_next(IntPtr L, int idx);
    [DllImport(Lib)] public static extern int lua_gc(IntPtr L, int what, int data);
    [DllImport(Lib)] public static extern void lua_sethook(IntPtr L, IntPtr f, int mask, int count);
    [DllImport(Lib)] public static extern int lua_getstack(IntPtr L, int level, LuaDebug* ar);
    [DllImport(Lib)] public static extern int lua_getinfo(IntPtr L, byte* what, LuaDebug* ar);
    [DllImport(Lib)] public static extern void luaL_traceback(IntPtr L, IntPtr L1, byte* msg, int level);
    [DllImport(Lib)] public static extern int luaL_newmetatable(IntPtr L, byte* tname);
    [DllImport(Lib)] public static extern void* luaL_testudata(IntPtr L, int ud, byte* tname);
    [DllImport(Lib)] public static extern void luaL_requiref(IntPtr L, byte* modname, IntPtr openf, int glb);
    [DllImport(Lib)] public static extern int luaL_loadbufferx(IntPtr L, byte* buff, nuint sz, byte* name, byte* mode);

    // Library openers, looked up by name (luaopen_*), used only through luaL_requiref.
    public static IntPtr Export(string name) => NativeLibrary.GetExport(Handle, name);

    private static IntPtr s_handle;
    private static IntPtr Handle
    {
        get
        {
            if (s_handle == IntPtr.Zero)
                s_handle = NativeLibrary.Load(Lib, typeof(LuaNative).Assembly, null);
            return s_handle;
        }
    }

    // ---------------------------------------------------------------- helpers (the C API's macros)

    public static void Pop(IntPtr L, int n) => lua_settop(L, -n - 1);
    public static void NewTable(IntPtr L) => lua_createtable(L, 0, 0);
    public static int PCall(IntPtr L, int nargs, int nresults, int errfunc) => lua_pcallk(L, nargs, nresults, errfunc, IntPtr.Zero, IntPtr.Zero);
    public static void Insert(IntPtr L, int idx) => lua_rotate(L, idx, 1);
    public static void Remove(IntPtr L, int idx) { lua_rotate(L, idx, -1); Pop(L, 1); }

    public static void PushString(IntPtr L, string s)
    {
        int max = Encoding.UTF8.GetMaxByteCount(s.Length);
        if (max <= 512)
        {
            byte* buf = stackalloc byte[max];
            int n = Encoding.UTF8.GetBytes(s, new Span<byte>(buf, max));
            lua_pushlstring(L, buf, (nuint)n);
        }
        else
        {
            var bytes = Encoding.UTF8.GetBytes(s);
            fixed (byte* p = bytes) lua_pushlstring(L, p, (nuint)bytes.Length);
        }
    }

    /// <summary>The string at idx, only if it is a string (numbers are not converted: lua_tolstring would change the slot).</summary>
    public static string? ToStringRaw(IntPtr L, int idx)
    {
        if (lua_type(L, idx) != LUA_TSTRING) return null;
        nuint len;
        byte* p = lua_tolstring(L, idx, &len);
        return p == null ? null : Encoding.UTF8.GetString(p, (int)len);
    }

    public static string TypeName(IntPtr L, int idx)
    {
        int t = lua_type(L, idx);
        if (t == LUA_TNONE) return "no value";
        if (t == LUA_TUSERDATA && lua_getmetatable(L, idx) != 0)
        {
            // Our userdata carry __name (set by luaL_newmetatable): "Model", "Editor", ...
            PushString(L, "__name");
            lua_rawget(L, -2);
            var name = ToStringRaw(L, -1);
            Pop(L, 2);
            if (name is not null) return name.StartsWith("rt.", StringComparison.Ordinal) ? name[3..] : name;
        }
        return Marshal.PtrToStringUTF8(lua_typename(L, t)) ?? "?";
    }

    public static byte[] Utf8Z(string s) => Encoding.UTF8.GetBytes(s + "\0");
}

/// <summary>lua_Debug of Lua 5.4 (public part, then the private CallInfo pointer); LUA_IDSIZE = 60.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct LuaDebug
{
    public int Event;
    public byte* Name, NameWhat, What, Source;
    public nuint SourceLength;
    public int CurrentLine, LineDefined, LastLineDefined;
    public byte NumberUpvalues, NumberParameters, IsVararg, IsTailCall;
    public ushort FirstTransferred, NumberTransferred;
    public fixed byte ShortSource[60];
    public IntPtr CallInfo;

    public string ShortSourceText
    {
        get { fixed (byte* p = ShortSource) return Marshal.PtrToStringUTF8((IntPtr)p) ?? "?"; }
    }
}
