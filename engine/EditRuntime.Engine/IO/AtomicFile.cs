namespace EditRuntime.IO;

/// <summary>
/// Whole-file replacement, so readers see the old content or the complete new one, never a part:
/// write a temporary file beside the target (same file system), flush it to disk, rename it over
/// the target. The temporary file is deleted if writing fails.
/// </summary>
public static class AtomicFile
{
    /// <summary>Suffix of the temporary files (left only if the process dies mid-write).</summary>
    public const string TempSuffix = ".tmp";

    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full) ?? throw new ArgumentException($"'{path}' has no directory.", nameof(path));
        string tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}{TempSuffix}");
        RemoveStaleTemps(dir, Path.GetFileName(full));
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>
    /// Deletes the temporary files a killed writer left for <paramref name="fileName"/> in <paramref name="dir"/>
    /// (".NAME.PID.GUID.tmp" whose process is gone; a live process's are never touched). Returns how many.
    /// </summary>
    public static int RemoveStaleTemps(string dir, string fileName)
    {
        int removed = 0;
        string prefix = "." + fileName + ".";
        IEnumerable<string> candidates;
        try { candidates = Directory.EnumerateFiles(dir, prefix + "*" + TempSuffix).ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return 0; }
        foreach (var path in candidates)
        {
            // .NAME.PID.GUID.tmp: the PID sits between the name and the 32-digit GUID.
            var middle = Path.GetFileName(path)[prefix.Length..^TempSuffix.Length].Split('.');
            if (middle.Length != 2 || middle[1].Length != 32 || !int.TryParse(middle[0], out int pid)) continue;
            if (pid == Environment.ProcessId || ProcessAlive(pid)) continue;
            try { File.Delete(path); removed++; }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        return removed;
    }

    private static bool ProcessAlive(int pid)
    {
        if (OperatingSystem.IsLinux()) return Directory.Exists($"/proc/{pid}");
        try { using var p = System.Diagnostics.Process.GetProcessById(pid); return !p.HasExited; }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        var copy = bytes.ToArray();
        Write(path, s => s.Write(copy));
    }

    /// <summary>UTF-8 without BOM; invalid UTF-16 (lone surrogates) is an error, not a silent replacement.</summary>
    public static void WriteAllText(string path, string text) =>
        WriteAllBytes(path, new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true).GetBytes(text));
}
