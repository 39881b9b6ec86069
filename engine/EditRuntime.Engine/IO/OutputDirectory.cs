namespace EditRuntime.IO;

/// <summary>
/// An output folder (a command's --out) checked and claimed before the work that fills it: a run of hours must
/// not find at its end that the folder is a file, cannot be made or written, or is being written by another
/// run. The claim is an exclusive lock on ".editrt-lock" inside it, held until disposed; the operating system
/// drops it when the process dies, so a killed run never blocks the next one.
/// </summary>
public sealed class OutputDirectory : IDisposable
{
    public const string LockFile = ".editrt-lock";

    private readonly FileStream _lock;

    public string Path { get; }

    private OutputDirectory(string path, FileStream lockStream)
    {
        Path = path;
        _lock = lockStream;
    }

    /// <param name="dir">The folder (made if missing).</param>
    /// <param name="flag">How the user named it, for errors (e.g. "--out").</param>
    public static OutputDirectory Claim(string dir, string flag)
    {
        if (string.IsNullOrWhiteSpace(dir)) throw new ArgumentException($"{flag}: empty; give a directory.");
        string full = System.IO.Path.GetFullPath(dir);
        if (File.Exists(full)) throw new ArgumentException($"{flag} {dir}: is a file, not a directory.");
        try { Directory.CreateDirectory(full); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"{flag} {dir}: cannot be created ({e.Message}).", e);
        }
        FileStream lockStream;
        try
        {
            lockStream = new FileStream(System.IO.Path.Combine(full, LockFile), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (UnauthorizedAccessException e) { throw new ArgumentException($"{flag} {dir}: not writable ({e.Message}).", e); }
        catch (IOException e)
        {
            throw new IOException($"{flag} {dir}: another run is writing to this folder (it holds {LockFile}); wait for it or choose another folder.", e);
        }
        try
        {
            lockStream.SetLength(0);
            lockStream.Write(System.Text.Encoding.ASCII.GetBytes($"{Environment.ProcessId}\n"));
            lockStream.Flush();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            lockStream.Dispose();
            throw new ArgumentException($"{flag} {dir}: not writable ({e.Message}).", e);
        }
        return new OutputDirectory(full, lockStream);
    }

    public void Dispose()
    {
        _lock.Dispose();
        try { File.Delete(System.IO.Path.Combine(Path, LockFile)); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
