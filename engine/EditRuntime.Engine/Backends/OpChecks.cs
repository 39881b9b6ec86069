namespace EditRuntime.Backends;

/// <summary>
/// The argument checks of every op (dtypes, ranks, shapes, attributes), written once and called by every
/// backend, so that all backends reject the same calls with the same messages. A backend first unwraps its
/// own tensors (<see cref="NotOwned"/> builds the error when one is not), then calls the op's check here,
/// then runs the op. What stays in a backend is only what is its own limit (Vulkan: the attention matrix
/// must fit in int, optional id range checks; Torch: at most 32 dimensions, and the inner and batch
/// dimensions of matmul left to libtorch so that its message reaches the user).
///
/// Messages name the op and the argument: "layernorm: gamma must be [4] (the last dimension of x [3, 4]), got [5]."
/// Editor ops' checks are in OpChecks.Editors.cs.
/// </summary>
public static partial class OpChecks
{
    // ---------------------------------------------------------------- tensors

    /// <summary>The error for <paramref name="t"/> not being a live tensor of the <paramref name="backend"/> backend
    /// (null, another backend's, or disposed); the backend has already tested which.</summary>
    public static Exception NotOwned(string op, string arg, Tensor? t, string backend)
    {
        if (t is null) return new ArgumentNullException(arg, $"{op}: {arg} is null.");
        if (t.IsDisposed && IsBackend(t, backend)) return new ObjectDisposedException($"{op}: {arg}", $"{op}: {arg} was disposed.");
        return new ArgumentException($"{op}: {arg} is a {BackendName(t)} tensor ({t.GetType().Name}), not one of the {backend} backend's.");
    }

    private static bool IsBackend(Tensor t, string backend)
    {
        try { return t.Backend.Name == backend; }
        catch (InvalidOperationException) { return true; } // a device tensor made outside any backend
    }

    private static string BackendName(Tensor t)
    {
        try { return t.Backend.Name; }
        catch (InvalidOperationException) { return "device"; }
    }

    public static void DType(string op, string arg, Tensor t, DType dtype = Backends.DType.F32)
    {
        if (t.DType != dtype) throw new ArgumentException($"{op}: {arg} must be {dtype}, got {t.DType} {t.ShapeString}.");
    }

    public static void SameShape(string op, Tensor a, Tensor b, string an, string bn)
    {
        if (!a.Shape.SequenceEqual(b.Shape))
            throw new ArgumentException($"{op}: {an} {a.ShapeString} and {bn} {b.ShapeString} must have the same shape.");
    }

    /// <summary>An output gradient of exactly <paramref name="expected"/>.</summary>
    public static void Gy(string op, Tensor gy, int[] expected, string arg = "gy")
    {
        DType(op, arg, gy);
        if (!gy.Shape.SequenceEqual(expected)) throw new ArgumentException($"{op}: {arg} is {gy.ShapeString}, expected {Tensor.Format(expected)}.");
    }

    /// <summary>Rows and columns of x viewed as (rows, last dimension); x needs at least one dimension.</summary>
    public static (int Rows, int Cols) RowsCols(string op, Tensor x, string arg = "x")
    {
        if (x.Rank == 0) throw new ArgumentException($"{op}: {arg} needs at least one dimension, got a scalar.");
        return ((int)x.Shape[..^1].Aggregate(1L, (a, d) => a * d), x.Shape[^1]);
    }

    /// <summary>A vector <paramref name="v"/> of the last dimension of x (bias, gamma, beta).</summary>
    public static void LastDim(string op, string arg, Tensor v, int cols, Tensor x)
    {
        if (v.Rank != 1 || v.Shape[0] != cols)
            throw new ArgumentException($"{op}: {arg} must be [{cols}] (the last dimension of x {x.ShapeString}), got {v.ShapeString}.");
    }

    /// <summary>A shape a tensor can have: non-null, no negative dimension, at most int.MaxValue elements.</summary>
    public static long Shape(string op, int[]? shape)
    {
        if (shape is null) throw new ArgumentNullException(nameof(shape), $"{op}: shape is null.");
        if (shape.Any(d => d < 0)) throw new ArgumentException($"{op}: negative dimension in shape {Tensor.Format(shape)}.");
        long n = shape.Aggregate(1L, (a, d) => a * d);
        if (n > int.MaxValue) throw new ArgumentException($"{op}: shape {Tensor.Format(shape)} has {n} elements; at most {int.MaxValue} are supported.");
        return n;
    }

    public static void Empty(DType dtype, int[] shape)
    {
        Shape("empty", shape);
        if (!Enum.IsDefined(dtype)) throw new ArgumentException($"empty: unknown dtype {dtype}.");
    }

    public static void FromArray(Array data, int[] shape)
    {
        ArgumentNullException.ThrowIfNull(data);
        long n = Shape("from_array", shape);
        if (data.Length != n) throw new ArgumentException($"FromArray: {data.Length} values for shape {Tensor.Format(shape)}.");
    }

    // ---------------------------------------------------------------- elementwise, layout

    public static void Reshape(Tensor x, int[] shape)
    {
        long n = Shape("reshape", shape);
        if (n != x.Count) throw new ArgumentException($"reshape: {x.ShapeString} ({x.Count} elements) cannot become {Tensor.Format(shape)} ({n}).");
    }

    /// <summary>add, sub, mul: F32 a and b of one shape.</summary>
    public static void Binary(string op, Tensor a, Tensor b)
    {
        DType(op, "a", a);
        DType(op, "b", b);
        SameShape(op, a, b, "a", "b");
    }

    public static void Axpy(Tensor x, Tensor y)
    {
        DType("axpy", "x", x);
        DType("axpy", "y", y);
        SameShape("axpy", x, y, "x", "y");
    }

    public static void CopyStrided(Tensor src, Tensor dst, int rows, int cols, long srcOffset, long srcStride, long dstOffset, long dstStride)
    {
        if (src.DType != dst.DType) throw new ArgumentException($"copy_strided: src is {src.DType} but dst is {dst.DType}.");
        StridedBlock("copy_strided", "src", src.Count, rows, cols, srcOffset, srcStride);
        StridedBlock("copy_strided", "dst", dst.Count, rows, cols, dstOffset, dstStride);
    }

    /// <summary>Checks that a strided block fits in a tensor of <paramref name="count"/> elements.</summary>
    public static void StridedBlock(string op, string arg, long count, int rows, int cols, long offset, long stride)
    {
        if (rows < 0 || cols < 0 || offset < 0 || stride < 0)
            throw new ArgumentException($"{op}: {arg}: rows, cols, offset and stride must be non-negative.");
        if (rows == 0 || cols == 0) return;
        long last = offset + (rows - 1) * stride + cols - 1;
        if (last >= count) throw new ArgumentException($"{op}: {arg}: the block ({rows} rows of {cols}, offset {offset}, stride {stride}) reaches element {last} of a tensor of {count}.");
    }

    /// <summary>(A, B, C, D) → (A, C, B, D); any dtype.</summary>
    public static int[] Transpose12(Tensor x)
    {
        if (x.Rank != 4) throw new ArgumentException($"transpose12: x must be rank 4 (A, B, C, D), got {x.ShapeString}.");
        return [x.Shape[0], x.Shape[2], x.Shape[1], x.Shape[3]];
    }

    // ---------------------------------------------------------------- reductions

    /// <summary>row_sum, row_max: (..., C) → (...), [1] for a rank-1 input; row_max needs C ≥ 1.</summary>
    public static int[] RowReduce(string op, Tensor x)
    {
        DType(op, "x", x);
        var (_, cols) = RowsCols(op, x);
        if (op == "row_max" && cols == 0) throw new ArgumentException($"row_max: the last dimension of {x.ShapeString} is empty.");
        return x.Rank == 1 ? [1] : x.Shape[..^1];
    }

    public static void SumBackward(Tensor gy, int[] shape)
    {
        DType("sum_backward", "gy", gy);
        Shape("sum_backward", shape);
        if (gy.Count != 1) throw new ArgumentException($"sum_backward: gy must have one element, got {gy.ShapeString}.");
    }

    public static void RowSumBackward(Tensor gy, int[] shape)
    {
        DType("row_sum_backward", "gy", gy);
        Shape("row_sum_backward", shape);
        long rows = shape.Length <= 1 ? 1 : shape[..^1].Aggregate(1L, (a, d) => a * d);
        if (gy.Count != rows) throw new ArgumentException($"row_sum_backward: gy {gy.ShapeString} must have one value per row of {Tensor.Format(shape)}.");
    }

    // ---------------------------------------------------------------- matmul

    private static string MatmulText(Tensor a, Tensor b, bool transA, bool transB) =>
        $"matmul: A {a.ShapeString}{(transA ? "ᵀ" : "")} · B {b.ShapeString}{(transB ? "ᵀ" : "")}";

    /// <summary>dtypes and ranks of op(A)·op(B) (rank-3 A may take a rank-2 B, broadcast over the batch); returns the
    /// output shape from the outer dimensions. The inner and batch dimensions are checked by <see cref="Matmul"/>.</summary>
    public static int[] MatmulRanks(string op, Tensor a, Tensor b, bool transA, bool transB)
    {
        DType(op, "A", a);
        DType(op, "B", b);
        if (a.Rank is < 2 or > 3 || b.Rank is < 2 or > 3 || (a.Rank == 2 && b.Rank == 3))
            throw new ArgumentException($"{MatmulText(a, b, transA, transB)}: A and B must be rank 2 or 3 (rank-3 A may take a rank-2 B, broadcast over the batch).");
        int m = transA ? a.Shape[^1] : a.Shape[^2];
        int n = transB ? b.Shape[^2] : b.Shape[^1];
        return a.Rank == 3 ? [a.Shape[0], m, n] : [m, n];
    }

    /// <summary>Every check of op(A)·op(B): (batch, M, N, K, broadcastB).</summary>
    public static (int Batch, int M, int N, int K, bool BroadcastB) Matmul(string op, Tensor a, Tensor b, bool transA, bool transB)
    {
        MatmulRanks(op, a, b, transA, transB);
        int batch = a.Rank == 3 ? a.Shape[0] : 1;
        if (b.Rank == 3 && b.Shape[0] != batch) throw new ArgumentException($"{MatmulText(a, b, transA, transB)}: batch sizes differ.");
        int ra = a.Shape[^2], ca = a.Shape[^1], rb = b.Shape[^2], cb = b.Shape[^1];
        int M = transA ? ca : ra, K = transA ? ra : ca, kB = transB ? cb : rb, N = transB ? rb : cb;
        if (K != kB) throw new ArgumentException($"{MatmulText(a, b, transA, transB)}: inner dimensions {K} and {kB} differ.");
        return (batch, M, N, K, a.Rank == 3 && b.Rank == 2);
    }

    /// <summary>gy of matmul_backward: the shape of op(A)·op(B).</summary>
    public static void MatmulGy(Tensor gy, int[] outShape)
    {
        DType("matmul_backward", "gy", gy);
        if (!gy.Shape.SequenceEqual(outShape)) throw new ArgumentException($"matmul_backward: gy is {gy.ShapeString}, expected {Tensor.Format(outShape)}.");
    }

    // ---------------------------------------------------------------- layers

    /// <summary>bias_add: x (..., C), bias (C); returns (rows, C).</summary>
    public static (int Rows, int Cols) BiasAdd(string op, Tensor x, Tensor bias)
    {
        DType(op, "x", x);
        DType(op, "bias", bias);
        var rc = RowsCols(op, x);
        LastDim(op, "bias", bias, rc.Cols, x);
        return rc;
    }

    public static (int Rows, int Cols) BiasAddBackward(Tensor x, Tensor bias, Tensor gy)
    {
        var rc = BiasAdd("bias_add_backward", x, bias);
        Gy("bias_add_backward", gy, x.Shape);
        return rc;
    }

    /// <summary>gelu, scale, fill, sum: one F32 input.</summary>
    public static void Unary(string op, Tensor x) => DType(op, "x", x);

    public static void GeluBackward(Tensor x, Tensor gy)
    {
        DType("gelu_backward", "x", x);
        Gy("gelu_backward", gy, x.Shape);
    }

    public static (int Rows, int Cols) LayerNorm(string op, Tensor x, Tensor gamma, Tensor beta, float eps)
    {
        DType(op, "x", x);
        DType(op, "gamma", gamma);
        DType(op, "beta", beta);
        var rc = RowsCols(op, x);
        LastDim(op, "gamma", gamma, rc.Cols, x);
        LastDim(op, "beta", beta, rc.Cols, x);
        if (!float.IsFinite(eps) || eps < 0) throw new ArgumentException($"{op}: eps must be finite and ≥ 0, got {eps}.");
        return rc;
    }

    public static (int Rows, int Cols) LayerNormBackward(Tensor x, Tensor gamma, Tensor beta, Tensor gy, float eps)
    {
        var rc = LayerNorm("layernorm_backward", x, gamma, beta, eps);
        Gy("layernorm_backward", gy, x.Shape);
        return rc;
    }

    public static (int Rows, int Cols) Softmax(string op, Tensor x)
    {
        DType(op, "x", x);
        return RowsCols(op, x);
    }

    public static (int Rows, int Cols) SoftmaxBackward(Tensor x, Tensor gy)
    {
        var rc = Softmax("softmax_backward", x);
        Gy("softmax_backward", gy, x.Shape);
        return rc;
    }

    // ---------------------------------------------------------------- sequence

    /// <summary>q, k, v (B, H, T, D), keyMask (B, T) or null, gy (if given) like q; returns the sizes.</summary>
    public static (int B, int H, int T, int D) Attention(string op, Tensor q, Tensor k, Tensor v, Tensor? keyMask, Tensor? gy)
    {
        DType(op, "q", q);
        DType(op, "k", k);
        DType(op, "v", v);
        if (q.Rank != 4) throw new ArgumentException($"{op}: q must be (B, H, T, D), got {q.ShapeString}.");
        if (!k.Shape.SequenceEqual(q.Shape)) throw new ArgumentException($"{op}: k is {k.ShapeString}, expected q's shape {q.ShapeString} (B, H, T, D).");
        if (!v.Shape.SequenceEqual(q.Shape)) throw new ArgumentException($"{op}: v is {v.ShapeString}, expected q's shape {q.ShapeString} (B, H, T, D).");
        int B = q.Shape[0], H = q.Shape[1], T = q.Shape[2], D = q.Shape[3];
        if (keyMask != null)
        {
            DType(op, "keyMask", keyMask);
            if (keyMask.Rank != 2 || keyMask.Shape[0] != B || keyMask.Shape[1] != T)
                throw new ArgumentException($"{op}: keyMask is {keyMask.ShapeString}, expected (B, T) = [{B}, {T}].");
        }
        if (gy != null)
        {
            DType(op, "gy", gy);
            if (!gy.Shape.SequenceEqual(q.Shape)) throw new ArgumentException($"{op}: gy is {gy.ShapeString}, expected q's shape {q.ShapeString} (B, H, T, D).");
        }
        return (B, H, T, D);
    }

    /// <summary>ids I32 (any shape), table (V, C); returns (V, C).</summary>
    public static (int V, int C) Embedding(Tensor ids, Tensor table)
    {
        DType("embedding", "ids", ids, Backends.DType.I32);
        DType("embedding", "table", table);
        if (table.Rank != 2) throw new ArgumentException($"embedding: table must be (V, C), got {table.ShapeString}.");
        return (table.Shape[0], table.Shape[1]);
    }

    /// <summary>ids I32, gy (ids.shape..., C), vocabSize ≥ 0; returns C.</summary>
    public static int EmbeddingBackward(Tensor ids, Tensor gy, int vocabSize)
    {
        const string op = "embedding_backward";
        DType(op, "ids", ids, Backends.DType.I32);
        DType(op, "gy", gy);
        if (vocabSize < 0) throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, $"{op}: vocabSize must be ≥ 0, got {vocabSize}.");
        if (gy.Rank != ids.Rank + 1 || !gy.Shape[..^1].SequenceEqual(ids.Shape))
            throw new ArgumentException($"{op}: gy is {gy.ShapeString}, expected (ids.shape..., C) with ids {ids.ShapeString}.");
        return gy.Shape[^1];
    }

    /// <summary>logits (N, V), targets I32 (N); returns (N, V).</summary>
    public static (int N, int V) CrossEntropy(string op, Tensor logits, Tensor targets)
    {
        DType(op, "logits", logits);
        DType(op, "targets", targets, Backends.DType.I32);
        if (logits.Rank != 2) throw new ArgumentException($"{op}: logits must be (N, V), got {logits.ShapeString}.");
        if (targets.Rank != 1 || targets.Shape[0] != logits.Shape[0])
            throw new ArgumentException($"{op}: targets must be [{logits.Shape[0]}] (one per row of logits {logits.ShapeString}), got {targets.ShapeString}.");
        return (logits.Shape[0], logits.Shape[1]);
    }

    public static (int N, int V) CrossEntropyBackward(Tensor logits, Tensor targets, Tensor gy)
    {
        var nv = CrossEntropy("cross_entropy_backward", logits, targets);
        Gy("cross_entropy_backward", gy, [1]);
        return nv;
    }

    // ---------------------------------------------------------------- optimizer

    /// <summary>param, grad, m, v F32 of one shape, four different tensors (param, m and v are updated in place);
    /// step ≥ 1; PyTorch's ranges for the hyper-parameters.</summary>
    public static void AdamStep(Tensor param, Tensor grad, Tensor m, Tensor v, AdamConfig c, int step)
    {
        const string op = "adam_step";
        DType(op, "param", param);
        DType(op, "grad", grad);
        DType(op, "m", m);
        DType(op, "v", v);
        SameShape(op, param, grad, "param", "grad");
        SameShape(op, param, m, "param", "m");
        SameShape(op, param, v, "param", "v");
        if (step < 1) throw new ArgumentOutOfRangeException(nameof(step), step, $"{op}: step is 1-based, got {step}.");
        if (!(c.LearningRate >= 0) || !float.IsFinite(c.LearningRate)) throw new ArgumentException($"{op}: learning rate must be finite and ≥ 0, got {c.LearningRate}.");
        if (!(c.Beta1 >= 0 && c.Beta1 < 1)) throw new ArgumentException($"{op}: beta1 must be in [0, 1), got {c.Beta1}.");
        if (!(c.Beta2 >= 0 && c.Beta2 < 1)) throw new ArgumentException($"{op}: beta2 must be in [0, 1), got {c.Beta2}.");
        if (!(c.Epsilon >= 0) || !float.IsFinite(c.Epsilon)) throw new ArgumentException($"{op}: epsilon must be finite and ≥ 0, got {c.Epsilon}.");
        if (!(c.WeightDecay >= 0) || !float.IsFinite(c.WeightDecay)) throw new ArgumentException($"{op}: weight decay must be finite and ≥ 0, got {c.WeightDecay}.");
        // Pairwise, without allocating: this runs once per parameter per optimizer step.
        Distinct(param, "param", grad, "grad"); Distinct(param, "param", m, "m"); Distinct(param, "param", v, "v");
        Distinct(grad, "grad", m, "m"); Distinct(grad, "grad", v, "v"); Distinct(m, "m", v, "v");

        static void Distinct(Tensor a, string an, Tensor b, string bn)
        {
            if (ReferenceEquals(a, b))
                throw new ArgumentException($"{op}: {an} and {bn} are the same tensor; Adam updates param, m and v in place and reads grad.");
        }
    }
}
