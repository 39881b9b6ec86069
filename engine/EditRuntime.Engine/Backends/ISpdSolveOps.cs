namespace EditRuntime.Backends;

/// <summary>
/// Symmetric positive-definite systems (MALMEN's least squares, (KᵀK + λI)·X = KᵀD, and the stage-2 solve with the same
/// matrix): a Cholesky factorisation and the two triangular solves with it, blocked, for n up to a few thousand on a
/// device (d_k = 3072 for GPT-2's mlp.c_proj, 16384 for GPT-J's). A backend implements them beside <see cref="IBackend"/>;
/// editors reach them with <c>backend.Ops&lt;ISpdSolveOps&gt;()</c>. F32; new outputs.
/// </summary>
public interface ISpdSolveOps
{
    /// <summary>s (n, n) ← s + value·I, in place (the ridge term).</summary>
    void AddDiagonal(Tensor s, float value);

    /// <summary>
    /// The lower Cholesky factor L (n, n) of a symmetric positive-definite s (n, n), s = L·Lᵀ; the strict upper
    /// triangle of L is 0. Only s's lower triangle is read. A matrix that is not positive definite (a pivot ≤ 0 or
    /// not finite) gives an L that holds NaN (from that column on), never an exception: the caller checks what it solves.
    /// </summary>
    Tensor CholeskyFactor(Tensor s);

    /// <summary>X (n, m) with L·Lᵀ·X = b (n, m), for L from <see cref="CholeskyFactor"/>: a forward then a backward substitution.
    /// Its gradient of b is the same solve of gx (L·Lᵀ is symmetric).</summary>
    Tensor CholeskySolve(Tensor l, Tensor b);
}
