using EditRuntime.Backends;

namespace EditRuntime.Torch;

// The LLaMA-family ops on libtorch (native/editrt_torch_llama.h): the reference for the Vulkan kernels, written as Hugging
// Face's LLaMA code computes them in float32. Arguments are checked by OpChecks, shared with the Vulkan backend.
public sealed unsafe partial class TorchBackend : ILlamaOps
{
    public Tensor RmsNorm(Tensor x, Tensor weight, float eps = 1e-6f)
    {
        const string op = "rms_norm";
        var (tx, tw) = (T(x, op, "x"), T(weight, op, "weight"));
        OpChecks.RmsNorm(op, x, weight, eps);
        Check(Native.et_rms_norm(tx.Handle, tw.Handle, eps, out var h), op);
        return Wrap(h, op, DType.F32, x.Shape);
    }

    public (Tensor GradX, Tensor GradWeight) RmsNormBackward(Tensor x, Tensor weight, Tensor gy, float eps = 1e-6f)
    {
        const string op = "rms_norm_backward";
        var (tx, tw, tg) = (T(x, op, "x"), T(weight, op, "weight"), T(gy, op, "gy"));
        OpChecks.RmsNormBackward(x, weight, gy, eps);
        Check(Native.et_rms_norm_backward(tx.Handle, tw.Handle, tg.Handle, eps, out var gx, out var gw), op);
        var r = WrapAll(op, (gx, x.Shape), (gw, weight.Shape));
        return (r[0], r[1]);
    }

    public Tensor Rope(Tensor x, Tensor invFreq, int start, Tensor? positionOffsets = null)
    {
        const string op = "rope";
        var (tx, tf) = (T(x, op, "x"), T(invFreq, op, "invFreq"));
        var to = positionOffsets is null ? null : T(positionOffsets, op, "positionOffsets");
        OpChecks.Rope(op, "x", x, invFreq, start, positionOffsets);
        TorchHandle h;
        if (to is null) Check(Native.et_rope_nooffsets(tx.Handle, tf.Handle, start, IntPtr.Zero, out h), op);
        else Check(Native.et_rope(tx.Handle, tf.Handle, start, to.Handle, out h), op);
        return Wrap(h, op, DType.F32, x.Shape);
    }

    public Tensor RopeBackward(Tensor invFreq, Tensor gy, int start, Tensor? positionOffsets = null)
    {
        const string op = "rope_backward";
        var (tf, tg) = (T(invFreq, op, "invFreq"), T(gy, op, "gy"));
        var to = positionOffsets is null ? null : T(positionOffsets, op, "positionOffsets");
        OpChecks.Rope(op, "gy", gy, invFreq, start, positionOffsets);
        TorchHandle h;
        if (to is null) Check(Native.et_rope_backward_nooffsets(tf.Handle, tg.Handle, start, IntPtr.Zero, out h), op);
        else Check(Native.et_rope_backward(tf.Handle, tg.Handle, start, to.Handle, out h), op);
        return Wrap(h, op, DType.F32, gy.Shape);
    }

    public Tensor SiluMul(Tensor gate, Tensor up)
    {
        const string op = "silu_mul";
        var (tg, tu) = (T(gate, op, "gate"), T(up, op, "up"));
        OpChecks.SiluMul(op, gate, up);
        Check(Native.et_silu_mul(tg.Handle, tu.Handle, out var h), op);
        return Wrap(h, op, DType.F32, gate.Shape);
    }

    public (Tensor GradGate, Tensor GradUp) SiluMulBackward(Tensor gate, Tensor up, Tensor gy)
    {
        const string op = "silu_mul_backward";
        var (tg, tu, tgy) = (T(gate, op, "gate"), T(up, op, "up"), T(gy, op, "gy"));
        OpChecks.SiluMulBackward(gate, up, gy);
        Check(Native.et_silu_mul_backward(tg.Handle, tu.Handle, tgy.Handle, out var gg, out var gu), op);
        var r = WrapAll(op, (gg, gate.Shape), (gu, up.Shape));
        return (r[0], r[1]);
    }
}
