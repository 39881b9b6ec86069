namespace EditRuntime.Backends;

/// <summary>
/// The hyper-network editors' ops (MALMEN, MEND, EMSEdit): the normaliser over [key, value-gradient] rows, the
/// activation of a residual low-rank block, the value differences, and the KL loss of locality. Rows: N, width D.
/// A backend implements them beside <see cref="IBackend"/>; editors reach them with
/// <c>backend.Ops&lt;IHyperNetOps&gt;()</c>. Conventions as in <see cref="IBackend"/>: F32 tensors, new outputs.
/// </summary>
public interface IHyperNetOps
{
    /// <summary>Column statistics of x (N, D), N ≥ 1: the mean (D) and the unbiased variance (D) (0 for N = 1, where
    /// torch's var is NaN). Two passes (mean, then squared deviations), so a large common offset costs no accuracy. Forward only.</summary>
    (Tensor Mean, Tensor Var) ColumnMeanVar(Tensor x);

    /// <summary>The normaliser: (x − mean) / (std + eps), x (N, D), mean and std (D), row-broadcast.</summary>
    Tensor Normalize(Tensor x, Tensor mean, Tensor std, float eps);
    /// <summary>Gradient of x: gy / (std + eps) (mean and std are statistics, not parameters).</summary>
    Tensor NormalizeBackward(Tensor gy, Tensor std, float eps);

    /// <summary>
    /// The activation of a hyper-network block whose low-rank product h = y·A·B (N, D) is made by matmuls:
    /// o = y + scale ⊙ max(h + bias, 0) + shift, with bias, scale, shift (D) row-broadcast. The ReLU's derivative at
    /// h + bias = 0 is 1 (torch's clamp_min), which is what lets a block with B = 0 and bias = 0 train at all.
    /// </summary>
    Tensor HyperBlockActivation(Tensor y, Tensor h, Tensor bias, Tensor scale, Tensor shift);
    /// <summary>Gradients given go (N, D): of h (N, D) = go ⊙ scale ⊙ [h + bias ≥ 0]; of bias (D) = Σ_rows of that;
    /// of scale (D) = Σ_rows go ⊙ max(h + bias, 0); of shift (D) = Σ_rows go. (The gradient of y is go itself plus
    /// what flows back through h; the tape adds them.)</summary>
    (Tensor GradH, Tensor GradBias, Tensor GradScale, Tensor GradShift) HyperBlockActivationBackward(Tensor h, Tensor bias, Tensor scale, Tensor go);

    /// <summary>
    /// Value differences: d_i = −eta · ⟨k_i, kt_i⟩ · gt_i for k, kt (N, dk), gt (N, dv), eta (1) → d (N, dv):
    /// the output change the rank-1 update −eta·kt_i⊗gt_i makes on its own raw key k_i.
    /// </summary>
    Tensor ValueDiff(Tensor k, Tensor kt, Tensor gt, Tensor eta);
    /// <summary>Gradients given gd (N, dv): of kt (N, dk) = −eta·⟨gd_i, gt_i⟩·k_i; of gt (N, dv) = −eta·⟨k_i, kt_i⟩·gd_i;
    /// of eta (1) = −Σ_i ⟨k_i, kt_i⟩·⟨gd_i, gt_i⟩. (k is data: no gradient.)</summary>
    (Tensor GradKt, Tensor GradGt, Tensor GradEta) ValueDiffBackward(Tensor k, Tensor kt, Tensor gt, Tensor eta, Tensor gd);

    /// <summary>
    /// KL(p_ref ‖ p) averaged over rows: (1/N)·Σ_i Σ_v p_ref[i,v]·(log p_ref[i,v] − log p[i,v]), with p_ref = softmax(refLogits)
    /// and p = softmax(logits), both (N, V), N ≥ 1 → a scalar (1). Log-softmax computed stably (max-subtracted);
    /// a p_ref of 0 contributes 0. torch: kl_div(log_softmax(logits), log_softmax(refLogits), "batchmean", log_target).
    /// </summary>
    Tensor KlDivergence(Tensor refLogits, Tensor logits);
    /// <summary>Gradient of logits (N, V) given gy (1): gy·(softmax(logits) − softmax(refLogits)) / N (refLogits get none).</summary>
    Tensor KlDivergenceBackward(Tensor refLogits, Tensor logits, Tensor gy);
}
