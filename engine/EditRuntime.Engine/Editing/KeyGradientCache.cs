using EditRuntime.Autograd;
using EditRuntime.Backends;
using EditRuntime.Models;

namespace EditRuntime.Editing;

/// <summary>Which positions of a teacher-forced row a <see cref="KeyGradientCache"/> keeps.</summary>
public enum CachedTokens
{
    /// <summary>The positions that predict a target token (MALMEN's <c>token: ans</c>).</summary>
    Answer,
    /// <summary>Every position of the row that is not padding (MEND's <c>token: all</c>).</summary>
    All,
}

/// <summary>The keys and value-gradients of one linear site: K (N, in), G (N, out), one row per cached position.</summary>
public sealed class SiteKeysGradients(string site, Tensor keys, Tensor grads, IReadOnlyList<int> subBatchRows) : IDisposable
{
    public string Site { get; } = site;
    /// <summary>The rows each sub-batch added, in order (they sum to <see cref="Rows"/>): the authors update the
    /// normaliser once per sub-batch, and its update depends on how the rows are grouped.</summary>
    public IReadOnlyList<int> SubBatchRows { get; } = subBatchRows;
    /// <summary>The site's input at each cached position (N, in).</summary>
    public Tensor Keys { get; } = keys;
    /// <summary>∂loss/∂(site output) at each cached position (N, out).</summary>
    public Tensor Grads { get; } = grads;
    public int Rows => Keys.Shape[0];

    public void Dispose()
    {
        Keys.Dispose();
        Grads.Dispose();
    }
}

/// <summary>
/// The key / value-gradient cache of the hyper-network editors (MEND, MALMEN, EMSEdit): for every edited linear site,
/// the site's input k and the gradient g of the cross-entropy with respect to the site's output, at the cached positions
/// of the teacher-forced requests, so that ∇_W = Kᵀ·G. The requests run in sub-batches (one forward and one backward
/// each, the cross-entropy a token mean over the sub-batch's target tokens, as the authors' cache does), so the LM's
/// activation memory is that of one sub-batch whatever the number of edits; only K and G grow with it, and they stay on
/// the model's device (the authors write them to disk per sub-batch).
/// </summary>
public static class KeyGradientCache
{
    /// <param name="owner">Who attaches the probes to the sites (an editor's name, for errors).</param>
    /// <param name="progress">Called after each sub-batch with (rows done, rows in all).</param>
    public static IReadOnlyList<SiteKeysGradients> Build(EditorContext context, IReadOnlyList<(int[] Prompt, int[] Target)> pairs,
        IReadOnlyList<string> sites, int subBatch, CachedTokens tokens, string owner, Action<int, int>? progress = null)
    {
        if (pairs.Count == 0) throw new ArgumentException($"{owner}: the key/gradient cache needs at least one request.");
        if (sites.Count == 0) throw new ArgumentException($"{owner}: the key/gradient cache needs at least one site.");
        if (subBatch < 1) throw new ArgumentOutOfRangeException(nameof(subBatch), $"{owner}: the sub-batch size must be at least 1, got {subBatch}.");
        var model = context.Model;
        var be = model.Backend;

        // Every sub-batch's positions first: the cache is allocated once, at its final size.
        var chunks = new List<(TeacherForcedBatch Tf, int[] Positions)>();
        for (int start = 0; start < pairs.Count; start += subBatch)
        {
            var tf = TeacherForcing.FromTokens(pairs.Skip(start).Take(subBatch).ToList());
            chunks.Add((tf, Positions(tf, tokens)));
        }
        int total = chunks.Sum(c => c.Positions.Length);
        var shapes = sites.Select(s => model.Parameters[s + ".weight"].Shape).ToArray();
        var rowsPerChunk = chunks.Select(c => c.Positions.Length).ToArray();
        var result = new List<SiteKeysGradients>();
        try
        {
            for (int i = 0; i < sites.Count; i++)
            {
                var k = be.Empty(DType.F32, total, shapes[i][0]);
                Tensor g;
                try { g = be.Empty(DType.F32, total, shapes[i][1]); }
                catch { k.Dispose(); throw; }
                result.Add(new SiteKeysGradients(sites[i], k, g, rowsPerChunk));
            }

            int row = 0;
            foreach (var (tf, positions) in chunks)
            {
                var probes = sites.Select(s => new Probe()).ToArray();
                var handles = new List<IDisposable>();
                try
                {
                    for (int i = 0; i < sites.Count; i++) handles.Add(model.Attach(sites[i], probes[i], owner));
                    using var tape = new Tape(be);
                    var p = model.Bind(tape, _ => false);
                    var loss = model.Loss(tape, p, tf.Batch, tf.Targets);
                    tape.Backward(loss);
                    using var idx = be.FromArray(positions, positions.Length);
                    for (int i = 0; i < sites.Count; i++)
                    {
                        var probe = probes[i];
                        if (probe.Input is null || probe.Zero?.Grad is null)
                            throw new InvalidOperationException($"{owner}: the forward did not reach {sites[i]} (or no gradient flowed back to it).");
                        Gather(be, idx, probe.Input.Value, result[i].Keys, row);
                        Gather(be, idx, probe.Zero.Grad, result[i].Grads, row);
                        probe.Zero.ClearGrad();   // a leaf's gradient is ours to free
                    }
                }
                finally
                {
                    foreach (var h in handles) h.Dispose();
                }
                row += positions.Length;
                progress?.Invoke(row, total);
            }
            return result;
        }
        catch
        {
            foreach (var r in result) r.Dispose();
            throw;
        }
    }

    /// <summary>The flattened (b·T + t) positions of a batch the cache keeps, in order.</summary>
    public static int[] Positions(TeacherForcedBatch tf, CachedTokens tokens)
    {
        var batch = tf.Batch;
        var list = new List<int>();
        for (int b = 0; b < batch.B; b++)
            for (int t = 0; t < batch.T; t++)
            {
                int i = b * batch.T + t;
                bool keep = tokens == CachedTokens.Answer ? tf.Targets[i] != TeacherForcing.Ignored : t < batch.Lengths[b];
                if (keep) list.Add(i);
            }
        return list.ToArray();
    }

    /// <summary>dst[row + j, :] = src (B·T, width) flattened, at position idx[j].</summary>
    private static void Gather(IBackend be, Tensor idx, Tensor src, Tensor dst, int row)
    {
        int width = src.Shape[^1];
        using var flat = be.Reshape(src, (int)(src.Count / width), width);
        using var rows = be.Embedding(idx, flat);
        int n = idx.Shape[0];
        be.CopyStrided(rows, dst, n, width, 0, width, (long)row * width, width);
    }

    /// <summary>Hands the forward its output plus a zero that requires a gradient: after the backward, that zero's
    /// gradient is ∂loss/∂(site output); the input is kept as the key.</summary>
    private sealed class Probe : ILinearAdapter
    {
        public Var? Input { get; private set; }
        public Var? Zero { get; private set; }

        public Var Apply(Tape tape, string site, Var input, Var output, ForwardContext context)
        {
            var be = tape.Backend;
            var zero = be.Empty(DType.F32, output.Shape);
            tape.OnDispose([zero]);
            be.Fill(zero, 0);
            Zero = tape.Param(zero, requiresGrad: true, name: site + ".probe");
            Input = input;
            return tape.Add(output, Zero);
        }
    }
}
