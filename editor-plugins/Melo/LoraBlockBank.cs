using EditRuntime.Autograd;
using EditRuntime.Backends;
using EditRuntime.Models;

namespace EditRuntime.Editing.Plugins;

/// <summary>
/// The LoRA of one linear site, cut into blocks: total rank r = blocks × k, stored as A (blocks, in, k)
/// and B (blocks, k, out), so block i is the rank slice [i·k, (i+1)·k) of one rank-r LoRA. A sample uses
/// at most one block: its delta is scale·x·A[i]·B[i] with scale = lora_alpha / k, which is the paper's
/// (lora_alpha / r)·(√(r/k))² (each slice of A and B is scaled by √(r/k)). A block starts as A uniform in
/// ±1/√r (PyTorch's kaiming-uniform(a = √5) on the authors' (in, r) matrix) and B = 0, so it adds nothing
/// until trained.
/// </summary>
public sealed class LoraBlockBank : IDisposable
{
    public LoraBlockBank(IBackend backend, string site, int inWidth, int outWidth, int blocks, int rank, float scale)
    {
        Backend = backend;
        Site = site;
        In = inWidth; Out = outWidth; Blocks = blocks; Rank = rank; Scale = scale;
        A = backend.Empty(DType.F32, blocks, inWidth, rank);
        B = backend.Empty(DType.F32, blocks, rank, outWidth);
        backend.Fill(A, 0);
        backend.Fill(B, 0);
    }

    public IBackend Backend { get; }
    public string Site { get; }
    public int In { get; }
    public int Out { get; }
    public int Blocks { get; }
    public int Rank { get; }
    public float Scale { get; }
    /// <summary>(blocks, in, k)</summary>
    public Tensor A { get; private set; }
    /// <summary>(blocks, k, out)</summary>
    public Tensor B { get; private set; }
    public long ParametersPerBlock => (long)Rank * (In + Out);

    /// <summary>Fresh values for one block (A random, B zero): returned as the trainable (in, k) and (k, out) tensors, and written into the bank.</summary>
    public (Tensor A, Tensor B) StartBlock(int block, SeededRandom rng)
    {
        float bound = 1f / MathF.Sqrt(Blocks * Rank);
        var a = rng.Uniform(In * Rank, bound);
        var ta = Backend.FromArray(a, In, Rank);
        var tb = Backend.Empty(DType.F32, Rank, Out);
        Backend.Fill(tb, 0);
        Write(block, ta, tb);
        return (ta, tb);
    }

    /// <summary>Copies a block's parameters (in, k) and (k, out) into the bank.</summary>
    public void Write(int block, Tensor a, Tensor b)
    {
        long na = (long)In * Rank, nb = (long)Rank * Out;
        Backend.CopyStrided(a, A, 1, (int)na, 0, na, block * na, na);
        Backend.CopyStrided(b, B, 1, (int)nb, 0, nb, block * nb, nb);
    }

    /// <summary>output + the LoRA of each sample's block (ids I32 (S); −1 = none), on the tape.</summary>
    public Var Apply(Tape tape, Var input, Var output, Tensor ids, LoraTrainedBlock? train) =>
        tape.Add(output, tape.LoraBlocks(input, A, B, ids, Scale, train));

    public (HostTensor A, HostTensor B) ToHost() =>
        (new HostTensor(A.Shape.ToArray(), Backend.ToFloatArray(A)), new HostTensor(B.Shape.ToArray(), Backend.ToFloatArray(B)));

    /// <summary>Device copies of saved banks (A, B) of this bank's shapes, for <see cref="Replace"/>; the caller owns them until then.</summary>
    public (Tensor A, Tensor B) Upload(HostTensor a, HostTensor b)
    {
        if (!a.Shape.SequenceEqual(A.Shape) || !b.Shape.SequenceEqual(B.Shape))
            throw new InvalidDataException($"MELO: the saved LoRA of {Site} is {Tensor.Format(a.Shape)} and {Tensor.Format(b.Shape)}, this editor's is {A.ShapeString} and {B.ShapeString}.");
        var na = Backend.FromArray(a.Data, a.Shape);
        try { return (na, Backend.FromArray(b.Data, b.Shape)); }
        catch { na.Dispose(); throw; }
    }

    /// <summary>Takes <paramref name="a"/> and <paramref name="b"/> (from <see cref="Upload"/>) as the bank, freeing the old one.</summary>
    public void Replace(Tensor a, Tensor b)
    {
        A.Dispose(); B.Dispose();
        A = a; B = b;
    }

    public void Dispose() { A.Dispose(); B.Dispose(); }
}
