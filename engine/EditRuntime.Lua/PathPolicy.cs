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

    /// <summary>Checks a path the script may read and, when it is a folder (a model, an editor state), every file and
    /// folder in it (symbolic links resolved, 10,000 entries at most): loaders open files by name inside the folder
    /// (config.json, shards, vocab.json, merges.txt, editrt.json, state files), and any of them could be a link out of
    /// the allowed roots.</summary>
    public string CheckReadTree(string path, string fn)
    {
        var real = CheckRead(path, fn);
        if (!Directory.Exists(real)) return real;
        int seen = 0;
        var pending = new Stack<string>();
        pending.Push(real);
        while (pending.Count > 0)
        {
            foreach (var entry in Directory.EnumerateFileSystemEntries(pending.Pop()))
            {
                if (++seen > 10_000) throw new LuaArgumentException($"{fn}: \"{path}\" holds more than 10,000 files: not a model or state folder");
                var resolved = Check(entry, _read, fn, "read", "--allow-read");
                // A linked folder is checked where it resolves to (inside the roots); its own entries in turn.
                if (Directory.Exists(resolved) && !new FileInfo(entry).Attributes.HasFlag(FileAttributes.ReparsePoint)) pending.Push(entry);
            }
        }
        return real;
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
