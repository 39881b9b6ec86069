using System.Runtime.InteropServices;

namespace EditRuntime.Lua;

/// <summary>
/// Which files a script may read and write through rt.* (it has no io library at all): paths are made
/// absolute and symbolic links resolved (realpath of the deepest existing ancestor), then must lie under one
/// of the allowed roots. So a shared script cannot read ~/.ssh or overwrite ~/.bashrc with an editor state.
/// </summary>
internal sealed class PathPolicy
{
    private readonly List<string> _read, _write;

    public PathPolicy(IEnumerable<string> readRoots, IEnumerable<string> writeRoots)
    {
        _write = writeRoots.Select(Real).Distinct().ToList();
        _read = readRoots.Select(Real).Concat(_write).Distinct().ToList();
    }

    public IReadOnlyList<string> ReadRoots => _read;
    public IReadOnlyList<string> WriteRoots => _write;

    public string CheckRead(string path, string fn) => Check(path, _read, fn, "read", "--allow-read");
    public string CheckWrite(string path, string fn) => Check(path, _write, fn, "write", "--allow-write");

    private static string Check(string path, List<string> roots, string fn, string verb, string flag)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new LuaArgumentException($"{fn}: empty path");
        var real = Real(path);
        foreach (var r in roots)
            if (real == r || real.StartsWith(r.EndsWith('/') ? r : r + "/", StringComparison.Ordinal)) return real;
        throw new LuaArgumentException($"{fn}: may not {verb} \"{path}\" (resolves to {real}): scripts {verb} only under {string.Join(", ", roots)} (add a directory with {flag})");
    }

    /// <summary>Absolute path with every symbolic link of its existing part resolved.</summary>
    internal static string Real(string path)
    {
        var full = Path.GetFullPath(path);
        var rest = new Stack<string>();
        var cur = full;
        while (!File.Exists(cur) && !Directory.Exists(cur))
        {
            var parent = Path.GetDirectoryName(cur);
            if (parent is null) break;
            rest.Push(Path.GetFileName(cur));
            cur = parent;
        }
        var resolved = RealPath(cur) ?? cur;
        while (rest.Count > 0) resolved = Path.Combine(resolved, rest.Pop());
        return resolved.Length > 1 ? resolved.TrimEnd('/') : resolved;
    }

    [DllImport("libc", EntryPoint = "realpath", SetLastError = true)]
    private static extern IntPtr realpath(string path, IntPtr resolved);

    [DllImport("libc", EntryPoint = "free")]
    private static extern void free(IntPtr p);

    private static string? RealPath(string path)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return path;
        var p = realpath(path, IntPtr.Zero);
        if (p == IntPtr.Zero) return null;
        try { return Marshal.PtrToStringUTF8(p); }
        finally { free(p); }
    }
}
