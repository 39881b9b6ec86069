namespace EditRuntime.Backends;

// Argument checks of the LLaMA-family ops (ILlamaOps): one method per op, called by every backend, so the messages cannot drift.
public static partial class OpChecks
{
    /// <summary>The largest position count RoPE accepts: every position start + t below it is exact in float32.</summary>
    public const int RopeMaxPosition = 1 << 24;

    /// <summary>rms_norm: x F32 (..., C), weight F32 (C), eps finite and ≥ 0; returns (rows, C).</summary>
    public static (int Rows, int Cols) RmsNorm(string op, Tensor x, Tensor weight, float eps)
    {
        DType(op, "x", x);
        DType(op, "weight", weight);
        var rc = RowsCols(op, x);
        LastDim(op, "weight", weight, rc.Cols, x);
        if (!float.IsFinite(eps) || eps < 0) throw new ArgumentException($"{op}: eps must be finite and ≥ 0, got {eps}.");
        return rc;
    }

    public static (int Rows, int Cols) RmsNormBackward(Tensor x, Tensor weight, Tensor gy, float eps)
    {
        const string op = "rms_norm_backward";
        var rc = RmsNorm(op, x, weight, eps);
        Gy(op, gy, x.Shape);
        return rc;
    }

    /// <summary>
    /// rope and rope_backward: <paramref name="x"/> (named <paramref name="arg"/>: the input, or the output gradient) F32
    /// (B, H, T, D) with D even and ≥ 2; invFreq F32 (D/2); start ≥ 0 with start + T ≤ 2²⁴; positionOffsets null or
    /// I32 (B). Returns (B, H, T, D).
    /// </summary>
    public static (int B, int H, int T, int D) Rope(string op, string arg, Tensor x, Tensor invFreq, int start, Tensor? positionOffsets)
    {
        DType(op, arg, x);
        DType(op, "invFreq", invFreq);
        if (x.Rank != 4) throw new ArgumentException($"{op}: {arg} must be (B, H, T, D), got {x.ShapeString}.");
        int B = x.Shape[0], H = x.Shape[1], T = x.Shape[2], D = x.Shape[3];
        if (D < 2 || D % 2 != 0)
            throw new ArgumentException($"{op}: the head dimension D of {arg} {x.ShapeString} must be even and ≥ 2 (element i pairs with i + D/2), got {D}.");
        if (invFreq.Rank != 1 || invFreq.Shape[0] != D / 2)
            throw new ArgumentException($"{op}: invFreq must be [{D / 2}] (half the head dimension of {arg} {x.ShapeString}), got {invFreq.ShapeString}.");
        if (start < 0) throw new ArgumentOutOfRangeException(nameof(start), start, $"{op}: start must be ≥ 0, got {start}.");
        if ((long)start + T > RopeMaxPosition)
            throw new ArgumentOutOfRangeException(nameof(start), start,
                $"{op}: positions up to start + T − 1 = {(long)start + T - 1} exceed {RopeMaxPosition - 1}, beyond which float32 does not hold every position exactly.");
        if (positionOffsets is not null)
        {
            DType(op, "positionOffsets", positionOffsets, Backends.DType.I32);
            if (positionOffsets.Rank != 1 || positionOffsets.Shape[0] != B)
                throw new ArgumentException($"{op}: positionOffsets must be I32 [{B}] (one per batch row of {arg} {x.ShapeString}), got {positionOffsets.ShapeString}.");
        }
        return (B, H, T, D);
    }

    /// <summary>silu_mul: gate and up F32 of one shape.</summary>
    public static void SiluMul(string op, Tensor gate, Tensor up)
    {
        DType(op, "gate", gate);
        DType(op, "up", up);
        SameShape(op, gate, up, "gate", "up");
    }

    public static void SiluMulBackward(Tensor gate, Tensor up, Tensor gy)
    {
        const string op = "silu_mul_backward";
        SiluMul(op, gate, up);
        Gy(op, gy, gate.Shape);
    }
}
