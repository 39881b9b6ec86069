using System.Buffers.Binary;

namespace EditRuntime.Models;

// SafeTensors format (https://github.com/huggingface/safetensors), as read and written here:
//   [8 bytes: N, little-endian u64][N bytes: UTF-8 JSON header][data section]
// The header is a JSON object: an optional "__metadata__" string->string map, and for every
// tensor {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]} with the
// offsets relative to the start of the data section. Data is little-endian, row-major.

/// <summary>Element types named by the SafeTensors format (the names are the format's strings).</summary>
public enum SafeTensorsDType
{
    BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64,
}

public static class SafeTensorsDTypes
{
    private static readonly Dictionary<string, SafeTensorsDType> ByName =
        Enum.GetValues<SafeTensorsDType>().ToDictionary(d => d.ToString(), d => d, StringComparer.Ordinal);

    /// <summary>Bytes per element.</summary>
    public static int SizeOf(SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.BOOL or SafeTensorsDType.U8 or SafeTensorsDType.I8
            or SafeTensorsDType.F8_E5M2 or SafeTensorsDType.F8_E4M3 => 1,
        SafeTensorsDType.I16 or SafeTensorsDType.U16 or SafeTensorsDType.F16 or SafeTensorsDType.BF16 => 2,
        SafeTensorsDType.I32 or SafeTensorsDType.U32 or SafeTensorsDType.F32 => 4,
        SafeTensorsDType.F64 or SafeTensorsDType.I64 or SafeTensorsDType.U64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    /// <summary>The format's name for the dtype ("F32", "BF16", ...).</summary>
    public static string Name(SafeTensorsDType dtype) => dtype.ToString();

    /// <summary>Parses a format dtype string (case-sensitive, as the format writes it).</summary>
    public static bool TryParse(string? name, out SafeTensorsDType dtype)
    {
        dtype = default;
        return name is not null && ByName.TryGetValue(name, out dtype);
    }

    /// <summary>Dtypes that <see cref="SafeTensorsFile.Read"/> converts to float32: F32, F16, BF16 and F64 (narrowed, round to nearest).</summary>
    public static bool IsReadableAsFloat(SafeTensorsDType dtype) =>
        dtype is SafeTensorsDType.F32 or SafeTensorsDType.F16 or SafeTensorsDType.BF16 or SafeTensorsDType.F64;

    /// <summary>Dtypes that <see cref="SafeTensorsWriter"/> can write from float32.</summary>
    public static bool IsWritableFromFloat(SafeTensorsDType dtype) =>
        dtype is SafeTensorsDType.F32 or SafeTensorsDType.F16 or SafeTensorsDType.BF16;

    /// <summary>All names, for error messages.</summary>
    public static string KnownNames => string.Join(", ", ByName.Keys);
}

/// <summary>One tensor as the header describes it. Offsets are relative to the data section.</summary>
public sealed record SafeTensorInfo(string Name, SafeTensorsDType DType, long[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;

    /// <summary>Product of the dims (1 for a scalar, shape []).</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, d) => a * d);

    public override string ToString() =>
        $"{Name}: {DType} [{string.Join(", ", Shape)}] @ [{Begin}, {End})";
}

/// <summary>
/// Base of the errors about the content of a model file (SafeTensors, config.json, checkpoint).
/// An <see cref="IOException"/> because <see cref="InvalidDataException"/>, the natural base, is sealed.
/// </summary>
public abstract class ModelFileException : IOException
{
    /// <summary>The file (or directory, or description of the source) at fault.</summary>
    public string FilePath { get; }

    protected ModelFileException(string filePath, string message, Exception? inner)
        : base(message, inner) => FilePath = filePath;
}

/// <summary>A model's config.json is missing a field, has a wrong type, breaks a rule or asks for something this
/// runtime does not implement; the message names the file and the field (<see cref="Gpt2ConfigException"/>,
/// <see cref="LlamaConfigException"/>).</summary>
public abstract class ConfigFieldException : ModelFileException
{
    public string Field { get; }

    protected ConfigFieldException(string layout, string source, string field, string rule, Exception? inner)
        : base(source, $"{layout} config '{source}', field \"{field}\": {rule}", inner)
        => Field = field;
}

/// <summary>
/// A SafeTensors file breaks a rule of the format. The message names the file, the tensor (when one
/// is at fault) and the rule.
/// </summary>
public class SafeTensorsFormatException : ModelFileException
{
    public string? TensorName { get; }
    public string Rule { get; }

    public SafeTensorsFormatException(string filePath, string? tensorName, string rule, Exception? inner = null)
        : base(filePath, Format(filePath, tensorName, rule), inner)
    {
        TensorName = tensorName;
        Rule = rule;
    }

    private static string Format(string file, string? tensor, string rule) =>
        tensor is null ? $"SafeTensors file '{file}': {rule}" : $"SafeTensors file '{file}', tensor '{tensor}': {rule}";
}

/// <summary>Element conversions between float32 and the 16-bit float formats (bit exact, round to nearest even).</summary>
public static class SafeTensorsConvert
{
    /// <summary>IEEE binary16 bits to float32 (exact: subnormals, infinities and NaN payloads kept).</summary>
    public static float HalfBitsToSingle(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    /// <summary>float32 to IEEE binary16 bits, round to nearest even; overflow gives infinity.</summary>
    public static ushort SingleToHalfBits(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    /// <summary>bfloat16 bits to float32 (exact: bf16 is the top half of a float32).</summary>
    public static float BFloat16BitsToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>float32 to bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN with its sign.</summary>
    public static ushort SingleToBFloat16Bits(float value)
    {
        uint u = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((u >> 16) | 0x0040);
        uint rounding = 0x7FFFu + ((u >> 16) & 1u);
        return (ushort)((u + rounding) >> 16);
    }

    private static float[]? _halfTable;

    private static float[] HalfTable => _halfTable ??= BuildHalfTable();

    private static float[] BuildHalfTable()
    {
        var t = new float[65536];
        for (int i = 0; i < t.Length; i++) t[i] = HalfBitsToSingle((ushort)i);
        return t;
    }

    internal static void DecodeToSingle(SafeTensorsDType dtype, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (dtype)
        {
            case SafeTensorsDType.F32:
                for (int i = 0; i < dst.Length; i++)
                    dst[i] = BinaryPrimitives.ReadSingleLittleEndian(src.Slice(4 * i, 4));
                break;
            case SafeTensorsDType.F16:
            {
                var table = HalfTable; // every binary16 value widened once: a lookup is ~10x faster than converting
                for (int i = 0; i < dst.Length; i++)
                    dst[i] = table[BinaryPrimitives.ReadUInt16LittleEndian(src.Slice(2 * i, 2))];
                break;
            }
            case SafeTensorsDType.BF16:
                for (int i = 0; i < dst.Length; i++)
                    dst[i] = BFloat16BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(src.Slice(2 * i, 2)));
                break;
            case SafeTensorsDType.F64:
                for (int i = 0; i < dst.Length; i++)
                    dst[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(src.Slice(8 * i, 8));
                break;
            default:
                throw new NotSupportedException($"dtype {dtype} is not converted to float32");
        }
    }

    internal static void EncodeFromSingle(SafeTensorsDType dtype, ReadOnlySpan<float> src, Span<byte> dst)
    {
        switch (dtype)
        {
            case SafeTensorsDType.F32:
                for (int i = 0; i < src.Length; i++)
                    BinaryPrimitives.WriteSingleLittleEndian(dst.Slice(4 * i, 4), src[i]);
                break;
            case SafeTensorsDType.F16:
                for (int i = 0; i < src.Length; i++)
                    BinaryPrimitives.WriteUInt16LittleEndian(dst.Slice(2 * i, 2), SingleToHalfBits(src[i]));
                break;
            case SafeTensorsDType.BF16:
                for (int i = 0; i < src.Length; i++)
                    BinaryPrimitives.WriteUInt16LittleEndian(dst.Slice(2 * i, 2), SingleToBFloat16Bits(src[i]));
                break;
            default:
                throw new NotSupportedException($"dtype {dtype} is not written from float32");
        }
    }
}
