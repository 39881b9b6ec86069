using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static EditRuntime.Lua.LuaNative;

namespace EditRuntime.Lua;

/// <summary>
/// The string library's pattern functions in C# (<see cref="LuaPattern"/>), and the budget they and the prelude's
/// guarded library functions charge: work done in native code counts against the instruction budget and the clock,
/// which a count hook alone never sees (it fires only between VM instructions).
/// </summary>
public sealed unsafe partial class LuaHost
{
    private const int OpFind = 1, OpMatch = 2, OpStep = 3, OpGsub = 4;

    /// <summary>Thrown by <see cref="Charge"/> once a limit is crossed: <see cref="_stop"/> is set and the thread's hook raises.</summary>
    private sealed class LimitReached : Exception;

    private long _deadline; // Stopwatch timestamp; 0 = no time limit
    private IntPtr _chargeState; // the thread whose library call is being charged

    private void StartClock() =>
        _deadline = Options.MaxSeconds > 0 ? Stopwatch.GetTimestamp() + (long)(Options.MaxSeconds * Stopwatch.Frequency) : 0;

    private bool PastDeadline => _deadline != 0 && Stopwatch.GetTimestamp() > _deadline;

    private string TimeLimitText => $"time limit of {Options.MaxSeconds:0.###} s exceeded (raise it with --max-seconds, or LuaHostOptions.MaxSeconds)";

    private string BudgetText => $"instruction budget of {Options.MaxInstructions:N0} exceeded (raise it with --max-instructions, or LuaHostOptions.MaxInstructions)";

    /// <summary>Counts <paramref name="steps"/> of library work as instructions; stops the script (throws
    /// <see cref="LimitReached"/>) when the budget or the time limit is crossed.</summary>
    private void Charge(long steps)
    {
        if (_stop is not null) throw new LimitReached();
        _instructions += steps;
        if (Options.MaxInstructions > 0 && _instructions > Options.MaxInstructions) StopNow(LuaErrorKind.InstructionBudget, BudgetText);
        if (PastDeadline) StopNow(LuaErrorKind.TimeLimit, TimeLimitText);
    }

    /// <summary>Stops the script from inside a library call: records where it is, makes every later instruction raise.</summary>
    private void StopNow(LuaErrorKind kind, string why)
    {
        var L = _chargeState;
        _stop ??= StopHere(L, kind, why);
        lua_sethook(L, _luaError, LUA_MASKCOUNT, 1);
        throw new LimitReached();
    }

    /// <summary>The prelude's functions for the pattern library: find, match, step (gmatch and gsub with a function or
    /// table replacement) and gsub with a string replacement. Each returns (true, results...) or (false, message, level).</summary>
    private void PushPatternFunctions()
    {
        foreach (var (name, op) in new[] { ("find", OpFind), ("match", OpMatch), ("step", OpStep), ("gsub", OpGsub) })
        {
            PushString(_L, name);
            lua_pushinteger(_L, op);
            lua_pushcclosure(_L, &PatternFunction, 1);
            lua_rawset(_L, -3);
        }
        PushString(_L, "charge");
        lua_pushcclosure(_L, &ChargeFunction, 0);
        lua_rawset(_L, -3);
        PushString(_L, "refuse");
        lua_pushcclosure(_L, &RefuseFunction, 0);
        lua_rawset(_L, -3);
    }

    /// <summary>refuse(what, bytes): a library call that would make a block past the memory limit (string.rep) stops
    /// the script as the allocator would, before any work: returns the limit's message.</summary>
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int RefuseFunction(IntPtr L)
    {
        try
        {
            var h = FromState(L);
            int saved = h._alloc->Enforce;
            h._alloc->Enforce = 0;
            try
            {
                h._chargeState = L;
                string what = ToStringRaw(L, 1) ?? "a library call";
                double bytes = lua_tonumberx(L, 2, null);
                h._stop ??= h.StopHere(L, LuaErrorKind.MemoryLimit,
                    $"memory limit of {Mib(h.Options.MemoryLimitBytes)} exceeded: {what} would make {bytes:0} bytes, {h.MemoryLeft} left " +
                    "(raise it with --memory-limit, or LuaHostOptions.MemoryLimitBytes)");
                lua_sethook(L, h._luaError, LUA_MASKCOUNT, 1);
                PushString(L, h._stop.Message);
                return 1;
            }
            finally { h._alloc->Enforce = saved; }
        }
        catch { return 0; }
    }

    /// <summary>charge(n): the prelude's guarded functions (table.move in chunks, ...) report work done in C.</summary>
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int ChargeFunction(IntPtr L)
    {
        try
        {
            var h = FromState(L);
            h._chargeState = L;
            try { h.Charge(Math.Max(1, lua_tointegerx(L, 1, null))); }
            catch (LimitReached) { PushString(L, h._stop!.Message); return 1; }
            return 0;
        }
        catch { return 0; }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int PatternFunction(IntPtr L)
    {
        try { return FromState(L).Pattern(L, (int)lua_tointegerx(L, UpvalueIndex(1), null)); }
        catch { return 0; }
    }

    private int Pattern(IntPtr L, int op)
    {
        int saved = _alloc->Enforce;
        _alloc->Enforce = 0; // pushes below must not fail: a refused allocation would longjmp over this frame
        _chargeState = L;
        int nargs = lua_gettop(L);
        string fname = op switch { OpFind => "find", OpMatch => "match", OpStep => "gmatch", _ => "gsub" };
        LuaPattern? m = null;
        try
        {
            if (lua_checkstack(L, 40) == 0) throw new LuaPatternException("stack overflow");
            var (sp, sLen) = StringArgRaw(L, 1, fname);
            byte* s = (byte*)sp;
            var (pp, pLen) = StringArgRaw(L, 2, fname);
            byte* p = (byte*)pp;
            m = new LuaPattern(s, sLen, p, pLen, Charge);
            lua_pushboolean(L, 1);
            int top = lua_gettop(L);
            switch (op)
            {
                case OpFind:
                case OpMatch:
                {
                    int init = StartIndex(L, 3, nargs, sLen, fname);
                    if (init > sLen) { lua_pushnil(L); break; }
                    bool plainArg = op == OpFind && nargs >= 4 && lua_toboolean(L, 4) != 0;
                    if (op == OpFind && (plainArg || LuaPattern.IsPlain(p, pLen)))
                    {
                        int at = LuaPattern.FindPlain(s, sLen, p, pLen, init, Charge);
                        if (at < 0) lua_pushnil(L);
                        else { lua_pushinteger(L, at + 1); lua_pushinteger(L, at + pLen); }
                        break;
                    }
                    bool anchor = pLen > 0 && p[0] == '^';
                    var (start, end) = m.Search(init, anchor ? 1 : 0, anchor);
                    if (start < 0) { lua_pushnil(L); break; }
                    if (op == OpFind) { lua_pushinteger(L, start + 1); lua_pushinteger(L, end); PushCaptures(L, m, s, start, end, false); }
                    else PushCaptures(L, m, s, start, end, true);
                    break;
                }
                case OpStep:
                {
                    // step(s, p, from, lastmatch, anchored): 0-based positions; (start, end, captures or the whole match) or nothing.
                    int from = (int)lua_tointegerx(L, 3, null), last = (int)lua_tointegerx(L, 4, null);
                    bool anchored = lua_toboolean(L, 5) != 0;
                    bool anchor = anchored && pLen > 0 && p[0] == '^';
                    if (from > sLen) break;
                    var (start, end) = m.Search(from, anchor ? 1 : 0, anchor, last);
                    if (start < 0) break;
                    lua_pushinteger(L, start);
                    lua_pushinteger(L, end);
                    PushCaptures(L, m, s, start, end, true);
                    break;
                }
                default:
                    Gsub(L, m, s, sLen, p, pLen, nargs);
                    break;
            }
            Charge(m.PendingSteps);
            return lua_gettop(L) - top + 1;
        }
        catch (Exception e)
        {
            lua_settop(L, nargs);
            lua_pushboolean(L, 0);
            if (e is LimitReached) { PushString(L, _stop?.Message ?? "stopped"); lua_pushinteger(L, 0); }
            else
            {
                PushString(L, e is LuaPatternException or LuaArgumentException ? e.Message : $"{fname}: internal error ({e.GetType().Name}: {e.Message})");
                lua_pushinteger(L, 2);
            }
            return 3;
        }
        finally { _alloc->Enforce = saved; }
    }

    /// <summary>gsub(s, p, repl[, n]) with a string (or number) replacement: %0 the match, %1..%9 the captures, %% a '%'.</summary>
    private void Gsub(IntPtr L, LuaPattern m, byte* s, int sLen, byte* p, int pLen, int nargs)
    {
        int rt = nargs >= 3 ? lua_type(L, 3) : LUA_TNONE;
        if (rt != LUA_TSTRING && rt != LUA_TNUMBER)
            throw new LuaArgumentException($"bad argument #3 to 'gsub' (string/function/table expected, got {(rt == LUA_TNONE ? "no value" : TypeName(L, 3))})");
        var (rp, rLen) = StringArgRaw(L, 3, "gsub");
        byte* r = (byte*)rp;
        long max = sLen + 1L;
        if (nargs >= 4 && lua_type(L, 4) > LUA_TNIL)
        {
            int ok;
            max = lua_tointegerx(L, 4, &ok);
            if (ok == 0) throw new LuaArgumentException(lua_type(L, 4) == LUA_TNUMBER ? "bad argument #4 to 'gsub' (number has no integer representation)"
                : $"bad argument #4 to 'gsub' (number expected, got {TypeName(L, 4)})");
        }
        bool anchor = pLen > 0 && p[0] == '^';
        var output = new System.Buffers.ArrayBufferWriter<byte>(Math.Min(sLen + 16, 1 << 20));
        long left = MemoryLeft;
        void Append(byte* from, int count)
        {
            if (count <= 0) return;
            if (output.WrittenCount + (long)count > left)
            {
                _stop ??= StopHere(L, LuaErrorKind.MemoryLimit, $"memory limit of {Mib(Options.MemoryLimitBytes)} exceeded: the result of gsub would be larger than the {Mib(left)} left");
                lua_sethook(L, _luaError, LUA_MASKCOUNT, 1);
                throw new LimitReached();
            }
            new ReadOnlySpan<byte>(from, count).CopyTo(output.GetSpan(count));
            output.Advance(count);
            if (count > 256) Charge(count / 256);
        }
        int src = 0, last = -1;
        long n = 0;
        while (n < max)
        {
            var (start, end) = m.Search(src, anchor ? 1 : 0, anchor, last);
            if (start < 0) break;
            n++;
            Append(s + src, start - src);
            for (int i = 0; i < rLen; i++)
            {
                if (r[i] != '%') { int j = i; while (j < rLen && r[j] != '%') j++; Append(r + i, j - i); i = j - 1; continue; }
                i++;
                if (i < rLen && r[i] == '%') { Append(r + i, 1); continue; }
                if (i >= rLen || !(r[i] >= '0' && r[i] <= '9')) throw new LuaPatternException("invalid use of '%' in replacement string");
                if (r[i] == '0') { Append(s + start, end - start); continue; }
                var (cs, cl, isPosition) = m.Capture(r[i] - '1', start, end);
                if (isPosition)
                {
                    var digits = System.Text.Encoding.ASCII.GetBytes((cs + 1).ToString(System.Globalization.CultureInfo.InvariantCulture));
                    fixed (byte* d = digits) Append(d, digits.Length);
                }
                else Append(s + cs, cl);
            }
            Charge(1);
            src = last = end;
            if (anchor) break;
        }
        Append(s + src, sLen - src);
        fixed (byte* o = output.WrittenSpan) lua_pushlstring(L, o, (nuint)output.WrittenCount);
        lua_pushinteger(L, n);
    }

    private static void PushCaptures(IntPtr L, LuaPattern m, byte* s, int start, int end, bool wholeIfNone)
    {
        int n = m.Level == 0 && wholeIfNone ? 1 : m.Level;
        for (int i = 0; i < n; i++)
        {
            var (cs, cl, isPosition) = m.Capture(i, start, end);
            if (isPosition) lua_pushinteger(L, cs + 1);
            else lua_pushlstring(L, s + cs, (nuint)cl);
        }
    }

    /// <summary>Argument i as bytes: a string, or a number converted as Lua converts it.</summary>
    private static (IntPtr Bytes, int Length) StringArgRaw(IntPtr L, int i, string fname)
    {
        int t = lua_type(L, i);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            throw new LuaArgumentException($"bad argument #{i} to '{fname}' (string expected, got {(t == LUA_TNONE ? "no value" : TypeName(L, i))})");
        nuint len;
        byte* p = lua_tolstring(L, i, &len); // a number becomes a string in its slot: that slot is this call's own argument
        if (len > int.MaxValue) throw new LuaArgumentException($"bad argument #{i} to '{fname}' (a string of {len} bytes is longer than patterns support)");
        return ((IntPtr)p, (int)len);
    }

    /// <summary>The 0-based start of init (argument i, default 1; negative counts from the end), as string.find takes it.</summary>
    private static int StartIndex(IntPtr L, int i, int nargs, int len, string fname)
    {
        if (nargs < i || lua_type(L, i) <= LUA_TNIL) return 0;
        int ok;
        long v = lua_tointegerx(L, i, &ok);
        if (ok == 0) throw new LuaArgumentException(lua_type(L, i) == LUA_TNUMBER ? $"bad argument #{i} to '{fname}' (number has no integer representation)"
            : $"bad argument #{i} to '{fname}' (number expected, got {TypeName(L, i)})");
        long pos = v > 0 ? v : v == 0 ? 1 : v < -(long)len ? 1 : len + v + 1;
        return pos > len + 1L ? len + 1 : (int)(pos - 1);
    }
}
