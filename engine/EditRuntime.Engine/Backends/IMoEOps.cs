namespace EditRuntime.Backends;

/// <summary>
/// Mixture-of-experts ops (MOMoE's bypass experts): top-k gating, routing tokens to experts
/// (a stable counting sort), dispatch (gather of token rows grouped per expert), the experts' grouped
/// matmul, and the weighted combine (scatter back to tokens). Shapes: N tokens, E experts
/// (1 ≤ E ≤ <see cref="MaxExperts"/>), k slots per token (1 ≤ k ≤ E), M = N·k routed rows. Index tensors
/// are I32. A backend implements them beside <see cref="IBackend"/>; editors reach them with
/// <c>backend.Ops&lt;IMoEOps&gt;()</c>. Conventions as in <see cref="IBackend"/>.
/// </summary>
public interface IMoEOps
{
    /// <summary>Most experts the MoE ops take (the Vulkan route kernel's shared counters and the gate's 64-bit mask);
    /// every backend holds to the same limit, so both accept the same inputs.</summary>
    const int MaxExperts = 64;

    /// <summary>
    /// Gate: logits (N, E) → weights (N, k) and indices (N, k) I32. Row n's k experts are those with the
    /// largest logits, in descending order; ties go to the lowest index. weights[n, j] is the softmax
    /// probability of expert indices[n, j] over all E (not renormalised over the k, so top-1 still
    /// passes a gradient to the gate).
    /// </summary>
    (Tensor Weights, Tensor Indices) MoeGateTopK(Tensor logits, int k);
    /// <summary>Gradient of the logits (N, E) given gWeights (N, k); the selection is recomputed (it has no gradient).</summary>
    Tensor MoeGateTopKBackward(Tensor logits, int k, Tensor gWeights);

    /// <summary>
    /// Routing: indices (N, k) I32 → order (M), position (M), offsets (E + 1), all I32, M = N·k.
    /// Entry i = n·k + j goes to expert indices[n, j]. order lists the entries grouped by expert,
    /// each group in entry order (a stable sort); the rows of expert e are order[offsets[e] .. offsets[e+1]).
    /// An index outside [0, E) drops its entry: dropped entries come last (from offsets[E], in entry order)
    /// and belong to no expert. position is the inverse permutation: order[position[i]] = i. Forward only.
    /// </summary>
    (Tensor Order, Tensor Position, Tensor Offsets) MoeRoute(Tensor indices, int experts);

    /// <summary>Dispatch: x (N, C), order (M) from <see cref="MoeRoute"/> → xs (M, C), xs[p] = x[order[p] / k].</summary>
    Tensor MoeDispatch(Tensor x, Tensor order, int k);
    /// <summary>Gradient of x (N, C) given gxs (M, C): gx[n] = Σ_j gxs[position[n·k + j]]. Takes the inverse
    /// permutation <paramref name="position"/> (made by <see cref="MoeRoute"/> beside order) so that every
    /// output row sums its own k rows: no scatter, no atomics.</summary>
    Tensor MoeDispatchBackward(Tensor position, Tensor gxs, int k);

    /// <summary>
    /// Grouped matmul: xs (M, K), w (E, K, Nout), offsets (E + 1) I32 → y (M, Nout) with y[p] = xs[p]·w[e] for
    /// offsets[e] ≤ p &lt; offsets[e+1], and y[p] = 0 for rows in no group (p ≥ offsets[E]). offsets must be
    /// non-decreasing from offsets[0] = 0 with offsets[E] ≤ M (as <see cref="MoeRoute"/> makes them).
    /// </summary>
    Tensor GroupedMatmul(Tensor xs, Tensor w, Tensor offsets);
    (Tensor GradXs, Tensor GradW) GroupedMatmulBackward(Tensor xs, Tensor w, Tensor offsets, Tensor gy);

    /// <summary>
    /// Combine: ys (M, C), weights (N, k), position (M) → y (N, C), y[n] = Σ_j weights[n, j]·ys[position[n·k + j]]
    /// (j in order). position must be a permutation of [0, M) (as <see cref="MoeRoute"/> makes it).
    /// </summary>
    Tensor MoeCombine(Tensor ys, Tensor weights, Tensor position);
    (Tensor GradYs, Tensor GradWeights) MoeCombineBackward(Tensor ys, Tensor weights, Tensor position, Tensor gy);
}
