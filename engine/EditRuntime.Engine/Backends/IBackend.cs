namespace EditRuntime.Backends;

/// <summary>
/// One op set, forward and backward, implemented by every backend (Vulkan: our shaders; Torch:
/// libtorch, with backward from torch's own autograd so it independently checks ours).
///
/// Conventions, shared by all implementations:
/// - Tensors are row-major; "rows" means all leading dimensions flattened, "C" the last one.
/// - Every op returns new tensors owned by the caller; inputs are never modified unless the
///   method says "in place".
/// - Backward methods take the forward inputs (and attributes) plus the gradient of the output,
///   and return the gradient of each float input, in the order of the forward parameters.
///   They recompute what they need from the inputs (stateless: no saved context).
/// - F32 everywhere except ids and targets (I32). A wrong dtype or shape is an ArgumentException
///   naming the op, the argument and the expected shape.
/// - An op a backend cannot run throws <see cref="UnsupportedOpException"/>.
///
/// Editors' own ops are not here: they sit behind their own interfaces (<see cref="ILoraOps"/>,
/// <see cref="IMoEOps"/>) that a backend implements beside this one, reached through
/// <see cref="BackendOps.Ops{T}"/>, so the core contract does not grow with every editor.
/// </summary>
public interface IBackend : IDisposable
{
    /// <summary>"vulkan" or "torch".</summary>
    string Name { get; }
    /// <summary>Human-readable device, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)" or "CPU, 2 threads".</summary>
    string DeviceDescription { get; }
    /// <summary>When true every tensor the backend allocates is first filled with NaN (validation sets this),
    /// so an element an op forgets to write is caught.</summary>
    bool PoisonAllocations { get; set; }

    // ---------------------------------------------------------------- tensors
    Tensor Empty(DType dtype, params int[] shape);
    Tensor FromArray(float[] data, params int[] shape);
    Tensor FromArray(int[] data, params int[] shape);
    float[] ToFloatArray(Tensor t);
    int[] ToIntArray(Tensor t);
    /// <summary>Waits until all work issued so far has finished (for timing).</summary>
    void Synchronize();

    // ---------------------------------------------------------------- elementwise (equal shapes)
    /// <summary>In place: x[:] = value.</summary>
    void Fill(Tensor x, float value);
    /// <summary>A copy of x with the given shape (same element count).</summary>
    Tensor Reshape(Tensor x, params int[] shape);
    Tensor Add(Tensor a, Tensor b);
    Tensor Sub(Tensor a, Tensor b);
    Tensor Mul(Tensor a, Tensor b);
    Tensor Scale(Tensor x, float alpha);
    /// <summary>In place: y += alpha·x (gradient accumulation, optimizer updates).</summary>
    void Axpy(float alpha, Tensor x, Tensor y);

    // ---------------------------------------------------------------- layout
    /// <summary>In place on dst: dst[dstOffset + r·dstStride + c] = src[srcOffset + r·srcStride + c] for r &lt; rows, c &lt; cols
    /// (offsets and strides in elements; src and dst of the same dtype; every index in bounds). Splits, concatenations, KV-cache appends.</summary>
    void CopyStrided(Tensor src, Tensor dst, int rows, int cols, long srcOffset, long srcStride, long dstOffset, long dstStride);
    /// <summary>(A, B, C, D) → (A, C, B, D), e.g. (batch, time, heads, head dim) ↔ (batch, heads, time, head dim). Its own backward.</summary>
    Tensor Transpose12(Tensor x);

    // ---------------------------------------------------------------- reductions
    /// <summary>Σ of all elements → shape [1].</summary>
    Tensor Sum(Tensor x);
    /// <summary>Σ over the last dimension: (..., C) → (...) (shape [1] for a rank-1 input).</summary>
    Tensor RowSum(Tensor x);
    /// <summary>max over the last dimension: (..., C) → (...). Forward only.</summary>
    Tensor RowMax(Tensor x);
    /// <summary>Backward of Sum·scale: a tensor of <paramref name="shape"/> filled with scale·gy[0].</summary>
    Tensor SumBackward(Tensor gy, int[] shape, float scale);
    /// <summary>Backward of RowSum·scale: y[r, c] = scale·gy[r], y of <paramref name="shape"/>.</summary>
    Tensor RowSumBackward(Tensor gy, int[] shape, float scale);

    // ---------------------------------------------------------------- matmul
    /// <summary>op(A)·op(B). A (M,K) or (K,M) if transA; B (K,N) or (N,K) if transB; rank 3 = batched with equal batch.</summary>
    Tensor Matmul(Tensor a, Tensor b, bool transA = false, bool transB = false);
    (Tensor GradA, Tensor GradB) MatmulBackward(Tensor a, Tensor b, Tensor gy, bool transA = false, bool transB = false);

    // ---------------------------------------------------------------- layers
    /// <summary>y = x + bias, x (..., C), bias (C).</summary>
    Tensor BiasAdd(Tensor x, Tensor bias);
    (Tensor GradX, Tensor GradBias) BiasAddBackward(Tensor x, Tensor bias, Tensor gy);

    /// <summary>GPT-2's GELU, tanh form: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).</summary>
    Tensor Gelu(Tensor x);
    Tensor GeluBackward(Tensor x, Tensor gy);

    /// <summary>LayerNorm over the last dimension: (x − mean)/√(var + eps)·gamma + beta (biased variance). gamma, beta (C).</summary>
    Tensor LayerNorm(Tensor x, Tensor gamma, Tensor beta, float eps = 1e-5f);
    (Tensor GradX, Tensor GradGamma, Tensor GradBeta) LayerNormBackward(Tensor x, Tensor gamma, Tensor beta, Tensor gy, float eps = 1e-5f);

    /// <summary>Softmax over the last dimension.</summary>
    Tensor Softmax(Tensor x);
    Tensor SoftmaxBackward(Tensor x, Tensor gy);

    /// <summary>
    /// Causal multi-head attention core: q, k, v (B, H, T, D) → softmax(q·kᵀ/√D + mask)·v, (B, H, T, D).
    /// Query i attends to key j iff j ≤ i and keyMask[b, j] ≠ 0 (keyMask (B, T), 1 = token, 0 = padding;
    /// null = no padding). A query with no key to attend to outputs 0 (and passes no gradient).
    /// </summary>
    Tensor CausalAttention(Tensor q, Tensor k, Tensor v, Tensor? keyMask);
    (Tensor GradQ, Tensor GradK, Tensor GradV) CausalAttentionBackward(Tensor q, Tensor k, Tensor v, Tensor? keyMask, Tensor gy);

    /// <summary>Rows of table (V, C) picked by ids (I32, any shape) → (ids.shape..., C). An id outside [0, V) is an error
    /// (Vulkan checks on the host only when asked; see the backend).</summary>
    Tensor Embedding(Tensor ids, Tensor table);
    /// <summary>Gradient of the table: (V, C), Σ of gy rows per id (scatter-add).</summary>
    Tensor EmbeddingBackward(Tensor ids, Tensor gy, int vocabSize);

    /// <summary>Mean over positions whose target ≠ ignoreIndex of −log softmax(logits[n])[target[n]] → shape [1].
    /// logits (N, V), targets I32 (N). No counted position → 0.</summary>
    Tensor CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex = -100);
    /// <summary>Gradient of the logits given gy of shape [1].</summary>
    Tensor CrossEntropyBackward(Tensor logits, Tensor targets, Tensor gy, int ignoreIndex = -100);

    // ---------------------------------------------------------------- optimizer
    /// <summary>In place, PyTorch's Adam/AdamW step number <paramref name="step"/> (1-based) on param, m and v.</summary>
    void AdamStep(Tensor param, Tensor grad, Tensor m, Tensor v, AdamConfig config, int step);
}
