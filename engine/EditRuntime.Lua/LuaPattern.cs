namespace EditRuntime.Lua;

/// <summary>A malformed pattern or replacement ("malformed pattern (missing ']')"): the message Lua's own string
/// library gives, raised at the script's line by the prelude.</summary>
internal sealed class LuaPatternException(string message) : Exception(message);

/// <summary>
/// Lua 5.4 patterns (string.find, match, gmatch, gsub) matched in C# with a step budget. Lua's own matcher is C code
/// that backtracks without ever returning to the VM, so neither the instruction budget nor a clock can stop it
/// (<c>("a"):rep(30):find(("a*"):rep(30) .. "b")</c> runs for hours); this one reports every
/// <see cref="StepsPerCharge"/> steps to <see cref="Charge"/>, which stops the script at a limit by throwing.
/// Semantics follow the reference manual (§6.4.1): classes by the C locale (ASCII), captures (up to 32),
/// position captures, back-references, %b, %f, anchors, and the same error texts.
/// </summary>
internal sealed unsafe class LuaPattern
{
    /// <summary>Steps between two calls of <see cref="Charge"/> (a few microseconds of matching).</summary>
    public const int StepsPerCharge = 4096;
    private const int MaxCaptures = 32;
    /// <summary>Recursion depth of the matcher (Lua's MAXCCALLS): deeper patterns are "too complex".</summary>
    private const int MaxDepth = 200;
    private const int CapUnfinished = -1, CapPosition = -2;

    private readonly byte* _s;
    private readonly int _sLen;
    private readonly byte* _p;
    private readonly int _pLen;
    private readonly Action<long> _charge;
    private int _steps;
    private int _depth;
    private int _level;
    private readonly int[] _capStart = new int[MaxCaptures];
    private readonly int[] _capLen = new int[MaxCaptures];

    /// <param name="charge">Called with a step count every <see cref="StepsPerCharge"/> steps; throws to stop.</param>
    public LuaPattern(byte* subject, int subjectLength, byte* pattern, int patternLength, Action<long> charge)
    {
        _s = subject; _sLen = subjectLength; _p = pattern; _pLen = patternLength; _charge = charge;
    }

    /// <summary>Captures of the last successful match.</summary>
    public int Level => _level;

    /// <summary>Steps not yet reported to the charge function (report them once the call ends).</summary>
    public int PendingSteps => _steps;

    /// <summary>True when the pattern has none of Lua's special characters: a plain search gives the same answer.</summary>
    public static bool IsPlain(byte* p, int len)
    {
        for (int i = 0; i < len; i++)
            if ("^$*+?.([%-"u8.IndexOf(p[i]) >= 0) return false;
        return true;
    }

    /// <summary>Plain substring search from <paramref name="init"/> (0-based); the start, or -1.
    /// Charged by bytes compared: a long needle at every position of a long subject is quadratic.</summary>
    public static int FindPlain(byte* s, int sLen, byte* p, int pLen, int init, Action<long> charge)
    {
        if (pLen == 0) return init;
        var needle = new ReadOnlySpan<byte>(p, pLen);
        long pending = 0;
        for (int i = init; i + pLen <= sLen; i++)
        {
            if (s[i] != p[0]) { if (++pending >= StepsPerCharge) { charge(pending); pending = 0; } continue; }
            pending += pLen;
            if (new ReadOnlySpan<byte>(s + i, pLen).SequenceEqual(needle)) { charge(pending); return i; }
            if (pending >= StepsPerCharge) { charge(pending); pending = 0; }
        }
        charge(pending);
        return -1;
    }

    /// <summary>The first match starting at or after <paramref name="from"/> (only at it when <paramref name="anchor"/>)
    /// whose end differs from <paramref name="lastMatch"/> (gmatch and gsub skip an empty match where the previous one ended).
    /// <paramref name="patternStart"/> skips a leading '^'. Returns (start, end) 0-based, end exclusive, or (-1, -1).</summary>
    public (int Start, int End) Search(int from, int patternStart, bool anchor, int lastMatch = -1)
    {
        for (int s1 = from; s1 <= _sLen; s1++)
        {
            _level = 0;
            _depth = 0;
            int e = Match(s1, patternStart);
            if (e >= 0 && e != lastMatch) return (s1, e);
            if (anchor) break;
        }
        return (-1, -1);
    }

    /// <summary>Capture <paramref name="i"/> (0-based) of the last match: a substring (start, length) or a position.
    /// With no captures, capture 0 is the whole match [start, end).</summary>
    public (int Start, int Length, bool IsPosition) Capture(int i, int start, int end)
    {
        if (i >= _level)
        {
            if (i == 0) return (start, end - start, false);
            throw new LuaPatternException($"invalid capture index %{i + 1}");
        }
        int len = _capLen[i];
        if (len == CapUnfinished) throw new LuaPatternException("unfinished capture");
        return len == CapPosition ? (_capStart[i], 0, true) : (_capStart[i], len, false);
    }

    private void Step()
    {
        if (++_steps >= StepsPerCharge) { _charge(_steps); _steps = 0; }
    }

    // ---------------------------------------------------------------- classes

    /// <summary>Index just past the single-character class at <paramref name="p"/>.</summary>
    private int ClassEnd(int p)
    {
        byte c = _p[p++];
        if (c == '%')
        {
            if (p >= _pLen) throw new LuaPatternException("malformed pattern (ends with '%')");
            return p + 1;
        }
        if (c == '[')
        {
            if (p < _pLen && _p[p] == '^') p++;
            // The first character of a set is literal even when it is ']': the loop consumes before it tests.
            do
            {
                if (p >= _pLen) throw new LuaPatternException("malformed pattern (missing ']')");
                byte x = _p[p++];
                if (x == '%' && p < _pLen) p++;
            } while (p >= _pLen || _p[p] != ']');
            return p + 1;
        }
        return p;
    }

    private static bool IsAlpha(int c) => (uint)((c | 0x20) - 'a') < 26;
    private static bool IsDigit(int c) => (uint)(c - '0') < 10;

    /// <summary>%a, %d, ... in the C locale; an upper-case letter is the complement; any other character stands for itself.</summary>
    private static bool MatchClass(int c, int cl)
    {
        bool r;
        switch (cl | 0x20)
        {
            case 'a': r = IsAlpha(c); break;
            case 'c': r = c < 32 || c == 127; break;
            case 'd': r = IsDigit(c); break;
            case 'g': r = c > 32 && c < 127; break;
            case 'l': r = (uint)(c - 'a') < 26; break;
            case 'p': r = c > 32 && c < 127 && !IsAlpha(c) && !IsDigit(c); break;
            case 's': r = c == ' ' || (uint)(c - '\t') < 5; break;
            case 'u': r = (uint)(c - 'A') < 26; break;
            case 'w': r = IsAlpha(c) || IsDigit(c); break;
            case 'x': r = IsDigit(c) || (uint)((c | 0x20) - 'a') < 6; break;
            case 'z': r = c == 0; break; // deprecated in the manual, still accepted by Lua 5.4
            default: return cl == c;
        }
        return (uint)(cl - 'A') < 26 ? !r : r;
    }

    /// <summary>Does <paramref name="c"/> belong to the set [ ... ] from <paramref name="p"/> ('[') to <paramref name="ec"/> (']')?</summary>
    private bool MatchSet(int c, int p, int ec)
    {
        bool member = true;
        if (_p[p + 1] == '^') { member = false; p++; }
        while (++p < ec)
        {
            if (_p[p] == '%')
            {
                p++;
                if (MatchClass(c, _p[p])) return member;
            }
            else if (_p[p + 1] == '-' && p + 2 < ec)
            {
                p += 2;
                if (_p[p - 2] <= c && c <= _p[p]) return member;
            }
            else if (_p[p] == c) return member;
        }
        return !member;
    }

    private bool SingleMatch(int s, int p, int ep)
    {
        if (s >= _sLen) return false;
        int c = _s[s];
        return _p[p] switch
        {
            (byte)'.' => true,
            (byte)'%' => MatchClass(c, _p[p + 1]),
            (byte)'[' => MatchSet(c, p, ep - 1),
            var x => x == c,
        };
    }

    // ---------------------------------------------------------------- matching

    /// <summary>Matches the pattern from <paramref name="p"/> against the subject from <paramref name="s"/>; the end of the match or -1.</summary>
    private int Match(int s, int p)
    {
        if (++_depth > MaxDepth) throw new LuaPatternException("pattern too complex");
        try
        {
            while (true)
            {
                Step();
                if (p == _pLen) return s;
                switch (_p[p])
                {
                    case (byte)'(':
                        return p + 1 < _pLen && _p[p + 1] == ')' ? StartCapture(s, p + 2, CapPosition) : StartCapture(s, p + 1, CapUnfinished);
                    case (byte)')':
                        return EndCapture(s, p + 1);
                    case (byte)'$' when p + 1 == _pLen:
                        return s == _sLen ? s : -1;
                    case (byte)'%' when p + 1 < _pLen && _p[p + 1] == 'b':
                        s = MatchBalance(s, p + 2);
                        if (s < 0) return -1;
                        p += 4;
                        continue;
                    case (byte)'%' when p + 1 < _pLen && _p[p + 1] == 'f':
                    {
                        p += 2;
                        if (p >= _pLen || _p[p] != '[') throw new LuaPatternException("missing '[' after '%f' in pattern");
                        int ep = ClassEnd(p);
                        int prev = s == 0 ? 0 : _s[s - 1];
                        int cur = s < _sLen ? _s[s] : 0;
                        if (MatchSet(prev, p, ep - 1) || !MatchSet(cur, p, ep - 1)) return -1;
                        p = ep;
                        continue;
                    }
                    case (byte)'%' when p + 1 < _pLen && IsDigit(_p[p + 1]):
                        s = MatchBackReference(s, _p[p + 1]);
                        if (s < 0) return -1;
                        p += 2;
                        continue;
                }
                {
                    int ep = ClassEnd(p);
                    byte next = ep < _pLen ? _p[ep] : (byte)0;
                    if (!SingleMatch(s, p, ep))
                    {
                        if (next is (byte)'*' or (byte)'?' or (byte)'-') { p = ep + 1; continue; } // zero repetitions
                        return -1;
                    }
                    switch (next)
                    {
                        case (byte)'?':
                        {
                            int r = Match(s + 1, ep + 1);
                            if (r >= 0) return r;
                            p = ep + 1;
                            continue;
                        }
                        case (byte)'+': return MaxExpand(s + 1, p, ep);
                        case (byte)'*': return MaxExpand(s, p, ep);
                        case (byte)'-': return MinExpand(s, p, ep);
                        default: s++; p = ep; continue;
                    }
                }
            }
        }
        finally { _depth--; }
    }

    private int MaxExpand(int s, int p, int ep)
    {
        int i = 0;
        while (SingleMatch(s + i, p, ep)) { i++; Step(); }
        // Longest first, then give back one character at a time.
        for (; i >= 0; i--)
        {
            int r = Match(s + i, ep + 1);
            if (r >= 0) return r;
        }
        return -1;
    }

    private int MinExpand(int s, int p, int ep)
    {
        while (true)
        {
            int r = Match(s, ep + 1);
            if (r >= 0) return r;
            if (!SingleMatch(s, p, ep)) return -1;
            s++;
        }
    }

    private int StartCapture(int s, int p, int what)
    {
        if (_level >= MaxCaptures) throw new LuaPatternException("too many captures");
        _capStart[_level] = s;
        _capLen[_level] = what;
        _level++;
        int r = Match(s, p);
        if (r < 0) _level--;
        return r;
    }

    private int EndCapture(int s, int p)
    {
        int l = -1;
        for (int i = _level - 1; i >= 0; i--)
            if (_capLen[i] == CapUnfinished) { l = i; break; }
        if (l < 0) throw new LuaPatternException("invalid pattern capture");
        _capLen[l] = s - _capStart[l];
        int r = Match(s, p);
        if (r < 0) _capLen[l] = CapUnfinished;
        return r;
    }

    private int MatchBalance(int s, int p)
    {
        if (p + 1 >= _pLen) throw new LuaPatternException("malformed pattern (missing arguments to '%b')");
        if (s >= _sLen || _s[s] != _p[p]) return -1;
        byte open = _p[p], close = _p[p + 1];
        int depth = 1;
        while (++s < _sLen)
        {
            Step();
            byte c = _s[s];
            if (c == close) { if (--depth == 0) return s + 1; }
            else if (c == open) depth++;
        }
        return -1;
    }

    private int MatchBackReference(int s, int digit)
    {
        int l = digit - '1';
        if (l < 0 || l >= _level || _capLen[l] == CapUnfinished) throw new LuaPatternException($"invalid capture index %{l + 1}");
        int len = _capLen[l];
        if (len == CapPosition) return -1; // a position is not text: it never matches (as in Lua)
        _steps += len / 16;
        if (_sLen - s >= len && new ReadOnlySpan<byte>(_s + _capStart[l], len).SequenceEqual(new ReadOnlySpan<byte>(_s + s, len))) return s + len;
        return -1;
    }
}
