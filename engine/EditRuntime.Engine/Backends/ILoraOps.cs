namespace EditRuntime.Backends;

/// <summary>
/// MELO's ops: LoRA through one block per sample, and the nearest-centre lookup of its cluster index
/// (the vector database that picks a block). A backend implements them beside <see cref="IBackend"/>;
/// editors reach them with <c>backend.Ops&lt;ILoraOps&gt;()</c>. Conventions as in <see cref="IBackend"/>.
/// </summary>
public interface ILoraOps
{
    /// <summary>
    /// LoRA through one block per sample: y[s, t] = scale·x[s, t]·A[id_s]·B[id_s], a zero row where id_s is
    /// outside [0, blocks) (−1 = no LoRA). x (S, T, in), a (blocks, in, k), b (blocks, k, out), blockIds I32 (S) → (S, T, out).
    /// </summary>
    Tensor LoraForward(Tensor x, Tensor a, Tensor b, Tensor blockIds, float scale);
    /// <summary>
    /// Backward of <see cref="LoraForward"/>: the gradient of x (S, T, in), and of block <paramref name="block"/> only,
    /// as (in, k) and (k, out) — from the samples routed to it (zeros if none, or if block is −1).
    /// </summary>
    (Tensor GradX, Tensor GradA, Tensor GradB) LoraBackward(Tensor x, Tensor a, Tensor b, Tensor blockIds, Tensor gy, float scale, int block);
    /// <summary>
    /// Nearest-centre search of a cluster index: for each query (Q, D), the nearest of the centres (N ≥ 1, D) by
    /// Euclidean distance (ties → lowest index); beyond that cluster's radius (radii (N)) → block −1, else the block of
    /// the nearest of the cluster's points (points (P, D), pointInfo I32 (P, 2) = (cluster, block); −1 if it has none).
    /// Returns the blocks I32 (Q) and the distances to the nearest centre (Q).
    /// </summary>
    (Tensor Blocks, Tensor Distances) ClusterLookup(Tensor queries, Tensor centres, Tensor radii, Tensor points, Tensor pointInfo);
}
