using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace EditRuntime.Models;

/// <summary>
/// A SafeTensors file opened read-only through a memory map. <see cref="Open"/> reads and validates
/// the whole header; tensor data is only touched by <see cref="Read"/> / <see cref="ReadBytes"/>.
/// </summary>
/// <remarks>
/// Enforced (a <see cref="SafeTensorsFormatException"/> naming file, tensor and rule): file of at
/// least 8 bytes; header length at most 100,000,000 bytes and within the file; header valid UTF-8
/// JSON whose root is an object; no duplicate keys; "__metadata__" (optional) an object of strings;
/// each tensor an object with a known "dtype", a "shape" of non-negative integers and "data_offsets"
/// of two non-negative integers with begin &lt;= end &lt;= data section length; end - begin equal to
/// product(shape) x dtype size (with overflow checked); no two non-empty tensors overlapping.
/// Not enforced, reported in <see cref="Warnings"/>: data bytes covered by no tensor (holes between
/// tensors or trailing bytes after the last one). The reference implementation rejects those; they
/// do not make any tensor ambiguous, so this reader accepts them.
/// </remarks>
public sealed class SafeTensorsFile : IDisposable
{
    /// <summary>The format's cap on the JSON header (the reference implementation's MAX_HEADER_SIZE).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private const int ChunkBytes = 1 << 20;

    private readonly MemoryMappedFile? _map;
    private readonly Dictionary<string, SafeTensorInfo> _byName;
    private bool _disposed;

    /// <summary>The path as given to <see cref="Open"/>.</summary>
    public string Path { get; }

    /// <summary>Total file length in bytes.</summary>
    public long FileLength { get; }

    /// <summary>Length of the JSON header (including padding), the N of the format.</summary>
    public long HeaderLength { get; }

    /// <summary>Absolute file offset of the data section (8 + <see cref="HeaderLength"/>).</summary>
    public long DataOffset => 8 + HeaderLength;

    /// <summary>Length of the data section in bytes.</summary>
    public long DataLength => FileLength - DataOffset;

    /// <summary>The "__metadata__" map (empty when the header has none).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Tensors in header order.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    /// <summary>Tensor names in header order.</summary>
    public IEnumerable<string> Names => Tensors.Select(t => t.Name);

    /// <summary>Things the format's reference implementation rejects but this reader accepts (holes in the data section).</summary>
    public IReadOnlyList<string> Warnings { get; }

    private SafeTensorsFile(string path, MemoryMappedFile? map, long fileLength, long headerLength,
        Dictionary<string, string> metadata, List<SafeTensorInfo> tensors, List<string> warnings)
    {
        Path = path;
        _map = map;
        FileLength = fileLength;
        HeaderLength = headerLength;
        Metadata = metadata;
        Tensors = tensors;
        Warnings = warnings;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>Opens and validates a SafeTensors file.</summary>
    /// <exception cref="SafeTensorsFormatException">The file breaks a rule of the format.</exception>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    public static SafeTensorsFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1, FileOptions.RandomAccess);
        MemoryMappedFile? map = null;
        try
        {
            long fileLength = fs.Length;
            if (fileLength < 8)
                throw new SafeTensorsFormatException(path, null,
                    $"the file is {fileLength} bytes long, shorter than the 8-byte header length prefix");

            Span<byte> prefix = stackalloc byte[8];
            RandomAccess.Read(fs.SafeFileHandle, prefix, 0);
            ulong n = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
            if (n > MaxHeaderBytes)
                throw new SafeTensorsFormatException(path, null,
                    $"the header length prefix says {n} bytes, more than the format's limit of {MaxHeaderBytes}");
            if (8 + (long)n > fileLength)
                throw new SafeTensorsFormatException(path, null,
                    $"the header length prefix says {n} bytes, past the end of the file ({fileLength} bytes, so at most {fileLength - 8} for the header)");

            var headerBytes = new byte[(int)n];
            int got = 0;
            while (got < headerBytes.Length)
            {
                int r = RandomAccess.Read(fs.SafeFileHandle, headerBytes.AsSpan(got), 8 + got);
                if (r <= 0) throw new SafeTensorsFormatException(path, null, "the file ended while reading the header");
                got += r;
            }

            long dataLength = fileLength - 8 - (long)n;
            var (metadata, tensors, warnings) = ParseHeader(path, headerBytes, dataLength);

            // A map of the whole file (read-only). Its length is >= 8 here, so the map is never empty.
            map = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            return new SafeTensorsFile(path, map, fileLength, (long)n, metadata, tensors, warnings);
        }
        catch
        {
            map?.Dispose();
            fs.Dispose();
            throw;
        }
    }

    /// <summary>Reads only the header of a file (validated as by <see cref="Open"/>) and closes it.</summary>
    public static (IReadOnlyDictionary<string, string> Metadata, IReadOnlyList<SafeTensorInfo> Tensors) ReadHeader(string path)
    {
        using var f = Open(path);
        return (f.Metadata, f.Tensors);
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public bool TryGetInfo(string name, out SafeTensorInfo info) => _byName.TryGetValue(name, out info!);

    /// <summary>The header entry of a tensor.</summary>
    /// <exception cref="KeyNotFoundException">No such tensor; the message lists some that exist.</exception>
    public SafeTensorInfo GetInfo(string name)
    {
        if (_byName.TryGetValue(name, out var info)) return info;
        throw new KeyNotFoundException(MissingMessage(name));
    }

    /// <summary>
    /// Reads one tensor as float32. F32 is copied, F16 and BF16 are widened exactly, F64 is narrowed
    /// (round to nearest). Integer, bool and FP8 dtypes are refused with an error naming the dtype.
    /// </summary>
    public HostTensor Read(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var info = GetInfo(name);
        if (!SafeTensorsDTypes.IsReadableAsFloat(info.DType))
            throw new SafeTensorsFormatException(Path, name,
                $"dtype {info.DType} cannot be read as float32 (only F32, F16, BF16 and F64 are)");

        var shape = new int[info.Shape.Length];
        for (int i = 0; i < shape.Length; i++)
        {
            if (info.Shape[i] > int.MaxValue)
                throw new SafeTensorsFormatException(Path, name, $"dimension {i} is {info.Shape[i]}, too large for a host tensor");
            shape[i] = (int)info.Shape[i];
        }
        long count = info.ElementCount;
        if (count > Array.MaxLength)
            throw new SafeTensorsFormatException(Path, name, $"{count} elements are too many for one host array (max {Array.MaxLength})");

        var data = new float[count];
        if (count == 0) return new HostTensor(shape, data);

        int elemSize = SafeTensorsDTypes.SizeOf(info.DType);
        using var view = _map!.CreateViewStream(DataOffset + info.Begin, info.ByteLength, MemoryMappedFileAccess.Read);
        if (info.DType == SafeTensorsDType.F32 && BitConverter.IsLittleEndian)
        {
            for (int at = 0; at < data.Length; at += 1 << 26) // spans of bytes are int-indexed
                view.ReadExactly(MemoryMarshal.AsBytes(data.AsSpan(at, Math.Min(1 << 26, data.Length - at))));
        }
        else
        {
            var buffer = new byte[Math.Min(ChunkBytes, info.ByteLength)];
            int perChunk = buffer.Length / elemSize;
            for (long done = 0; done < count;)
            {
                int k = (int)Math.Min(perChunk, count - done);
                view.ReadExactly(buffer, 0, k * elemSize);
                SafeTensorsConvert.DecodeToSingle(info.DType, buffer.AsSpan(0, k * elemSize), data.AsSpan((int)done, k));
                done += k;
            }
        }
        return new HostTensor(shape, data);
    }

    /// <summary>The raw little-endian bytes of a tensor, any dtype.</summary>
    public byte[] ReadBytes(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var info = GetInfo(name);
        if (info.ByteLength > Array.MaxLength)
            throw new SafeTensorsFormatException(Path, name, $"{info.ByteLength} bytes are too many for one host array");
        var bytes = new byte[info.ByteLength];
        if (bytes.Length == 0) return bytes;
        using var view = _map!.CreateViewStream(DataOffset + info.Begin, info.ByteLength, MemoryMappedFileAccess.Read);
        view.ReadExactly(bytes);
        return bytes;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _map?.Dispose();
    }

    private string MissingMessage(string name)
    {
        var names = _byName.Keys.Order(StringComparer.Ordinal).ToList();
        string some = names.Count == 0 ? "it holds no tensors"
            : $"it holds {names.Count} tensor(s), e.g. " + string.Join(", ", names.Take(8).Select(s => $"'{s}'"))
              + (names.Count > 8 ? ", ..." : "");
        return $"SafeTensors file '{Path}' has no tensor '{name}'; {some}.";
    }

    // ---- header parsing -------------------------------------------------------------------

    private static (Dictionary<string, string>, List<SafeTensorInfo>, List<string>) ParseHeader(
        string path, byte[] headerBytes, long dataLength)
    {
        if (!System.Text.Unicode.Utf8.IsValid(headerBytes))
            throw new SafeTensorsFormatException(path, null, "the header is not valid UTF-8");
        JsonDocument doc;
        try
        {
            // Trailing spaces (the padding) are JSON whitespace.
            doc = JsonDocument.Parse(headerBytes, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw new SafeTensorsFormatException(path, null, $"the header is not valid JSON ({e.Message})", e);
        }

        using (doc)
        {
            try { return ParseRoot(path, doc.RootElement, dataLength); }
            catch (InvalidOperationException e)
            {
                // System.Text.Json reads an escape like "\ud800" (a lone surrogate) as valid JSON and fails only when the string is read.
                throw new SafeTensorsFormatException(path, null, $"the header holds a string that is not valid Unicode ({e.Message})", e);
            }
        }
    }

    private static (Dictionary<string, string>, List<SafeTensorInfo>, List<string>) ParseRoot(string path, JsonElement root, long dataLength)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new SafeTensorsFormatException(path, null, $"the header must be a JSON object, found {root.ValueKind}");

        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var tensors = new List<SafeTensorInfo>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        bool sawMetadata = false;

        foreach (var prop in root.EnumerateObject())
        {
            if (prop.Name == "__metadata__")
            {
                if (sawMetadata) throw new SafeTensorsFormatException(path, null, "the header has \"__metadata__\" twice");
                sawMetadata = true;
                ParseMetadata(path, prop.Value, metadata);
                continue;
            }
            if (!seen.Add(prop.Name))
                throw new SafeTensorsFormatException(path, prop.Name, "the header names this tensor twice");
            tensors.Add(ParseTensor(path, prop.Name, prop.Value, dataLength));
        }

        var warnings = CheckLayout(path, tensors, dataLength);
        return (metadata, tensors, warnings);
    }

    private static void ParseMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind == JsonValueKind.Null) return;
        if (value.ValueKind != JsonValueKind.Object)
            throw new SafeTensorsFormatException(path, null, $"\"__metadata__\" must be an object of strings, found {value.ValueKind}");
        foreach (var p in value.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String)
                throw new SafeTensorsFormatException(path, null,
                    $"\"__metadata__\" entry \"{p.Name}\" must be a string, found {p.Value.ValueKind}");
            if (!metadata.TryAdd(p.Name, p.Value.GetString()!))
                throw new SafeTensorsFormatException(path, null, $"\"__metadata__\" has the key \"{p.Name}\" twice");
        }
    }

    private static SafeTensorInfo ParseTensor(string path, string name, JsonElement value, long dataLength)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new SafeTensorsFormatException(path, name, $"the header entry must be an object, found {value.ValueKind}");

        JsonElement? dtypeEl = null, shapeEl = null, offsetsEl = null;
        foreach (var p in value.EnumerateObject())
        {
            switch (p.Name)
            {
                case "dtype": dtypeEl = dtypeEl is null ? p.Value : throw Dup("dtype"); break;
                case "shape": shapeEl = shapeEl is null ? p.Value : throw Dup("shape"); break;
                case "data_offsets": offsetsEl = offsetsEl is null ? p.Value : throw Dup("data_offsets"); break;
                default: break; // unknown keys are tolerated
            }
        }
        SafeTensorsFormatException Dup(string key) => new(path, name, $"\"{key}\" appears twice");

        if (dtypeEl is null) throw new SafeTensorsFormatException(path, name, "the entry has no \"dtype\"");
        if (shapeEl is null) throw new SafeTensorsFormatException(path, name, "the entry has no \"shape\"");
        if (offsetsEl is null) throw new SafeTensorsFormatException(path, name, "the entry has no \"data_offsets\"");

        if (dtypeEl.Value.ValueKind != JsonValueKind.String)
            throw new SafeTensorsFormatException(path, name, $"\"dtype\" must be a string, found {dtypeEl.Value.ValueKind}");
        string dtypeName = dtypeEl.Value.GetString()!;
        if (!SafeTensorsDTypes.TryParse(dtypeName, out var dtype))
            throw new SafeTensorsFormatException(path, name,
                $"unknown dtype \"{dtypeName}\" (known: {SafeTensorsDTypes.KnownNames})");

        if (shapeEl.Value.ValueKind != JsonValueKind.Array)
            throw new SafeTensorsFormatException(path, name, $"\"shape\" must be an array of integers, found {shapeEl.Value.ValueKind}");
        var shape = new long[shapeEl.Value.GetArrayLength()];
        int i = 0;
        foreach (var d in shapeEl.Value.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim))
                throw new SafeTensorsFormatException(path, name, $"\"shape\"[{i}] must be an integer, found {d.GetRawText()}");
            if (dim < 0)
                throw new SafeTensorsFormatException(path, name, $"\"shape\"[{i}] is {dim}; dimensions must not be negative");
            shape[i++] = dim;
        }

        var offs = offsetsEl.Value;
        if (offs.ValueKind != JsonValueKind.Array || offs.GetArrayLength() != 2)
            throw new SafeTensorsFormatException(path, name, $"\"data_offsets\" must be an array of two integers [begin, end], found {offs.GetRawText()}");
        long[] be = new long[2];
        for (int k = 0; k < 2; k++)
        {
            var o = offs[k];
            if (o.ValueKind != JsonValueKind.Number || !o.TryGetInt64(out be[k]) || be[k] < 0)
                throw new SafeTensorsFormatException(path, name,
                    $"\"data_offsets\" must be two non-negative integers, found {offs.GetRawText()}");
        }
        long begin = be[0], end = be[1];
        if (begin > end)
            throw new SafeTensorsFormatException(path, name, $"\"data_offsets\" [{begin}, {end}]: begin is after end");
        if (end > dataLength)
            throw new SafeTensorsFormatException(path, name,
                $"\"data_offsets\" [{begin}, {end}]: end is past the data section ({dataLength} bytes after the header)");

        long count = 1, bytes;
        try
        {
            foreach (long d in shape) count = checked(count * d);
            bytes = checked(count * SafeTensorsDTypes.SizeOf(dtype));
        }
        catch (OverflowException)
        {
            throw new SafeTensorsFormatException(path, name, $"shape [{string.Join(", ", shape)}] overflows the element count");
        }
        if (bytes != end - begin)
            throw new SafeTensorsFormatException(path, name,
                $"byte length {end - begin} (data_offsets [{begin}, {end}]) does not match shape [{string.Join(", ", shape)}] x {dtype} ({SafeTensorsDTypes.SizeOf(dtype)} bytes) = {bytes} bytes");

        return new SafeTensorInfo(name, dtype, shape, begin, end);
    }

    private static List<string> CheckLayout(string path, List<SafeTensorInfo> tensors, long dataLength)
    {
        var warnings = new List<string>();
        var sorted = tensors.Where(t => t.ByteLength > 0)
            .OrderBy(t => t.Begin).ThenBy(t => t.End).ToList();
        long covered = 0;
        SafeTensorInfo? prev = null;
        foreach (var t in sorted)
        {
            if (prev is not null && t.Begin < prev.End)
                throw new SafeTensorsFormatException(path, t.Name,
                    $"data_offsets [{t.Begin}, {t.End}] overlap tensor '{prev.Name}' at [{prev.Begin}, {prev.End}]");
            if (t.Begin > covered)
                warnings.Add($"{path}: bytes [{covered}, {t.Begin}) of the data section, before tensor '{t.Name}', belong to no tensor");
            covered = t.End;
            prev = t;
        }
        if (covered < dataLength)
            warnings.Add($"{path}: bytes [{covered}, {dataLength}) at the end of the data section belong to no tensor");
        return warnings;
    }
}
