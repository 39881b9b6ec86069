using EditRuntime.Backends;

namespace EditRuntime.Editing.Plugins;

/// <summary>
/// MELO's vector database ("neuron index"): clusters of keys, each with a centre, a radius and a label
/// (the edit's target), holding points (key, LoRA block, edit id). The rules follow the paper and the
/// authors' code:
/// - insert: an empty index, or a key farther than radius + <see cref="InitRadius"/> from the nearest
///   centre → a new cluster of radius <see cref="InitRadius"/>; close and the same label → the key joins
///   (centre = mean of its points, radius = max(farthest point, init radius)); close but another label →
///   a new cluster, and both radii become half the distance between the key and the old centre (points
///   of the old cluster now outside it are forgotten);
/// - lookup: the nearest centre; outside its radius → no LoRA (−1); inside → the block of the cluster's
///   nearest point (−1 if a split left it none).
/// The index lives on the host (inserts are rare and sequential) and is mirrored to the device for the
/// lookup (<see cref="ILoraOps.ClusterLookup"/>), uploaded again only after a change.
/// </summary>
public sealed class ClusterIndex : IDisposable
{
    public sealed class Point
    {
        public required float[] Key;
        public required int Block;
        public required int EditId;
    }

    public sealed class Cluster
    {
        public required float[] Centre;
        public required float Radius;
        public required string Label;
        public List<Point> Points { get; } = new();
    }

    private readonly List<Cluster> _clusters = new();
    private Tensor? _centres, _radii, _points, _info;
    private bool _dirty = true;

    public ClusterIndex(int keyDim, float initRadius)
    {
        if (keyDim <= 0) throw new ArgumentException("ClusterIndex: the key dimension must be positive.");
        if (!(initRadius > 0) || !float.IsFinite(initRadius)) throw new ArgumentException($"ClusterIndex: init_radius must be positive, got {initRadius}.");
        KeyDim = keyDim;
        InitRadius = initRadius;
    }

    public int KeyDim { get; }
    public float InitRadius { get; }
    public IReadOnlyList<Cluster> Clusters => _clusters;
    public int Count => _clusters.Count;
    /// <summary>Splits (a close key with another label) since the index was made or cleared.</summary>
    public int Conflicts { get; private set; }
    /// <summary>Points dropped by splits (their keys fell outside the shrunk radius).</summary>
    public int Forgotten { get; private set; }

    public static double Distance(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) { double d = (double)a[i] - b[i]; s += d * d; }
        return Math.Sqrt(s);
    }

    /// <summary>The nearest cluster (index, distance to its centre); (−1, ∞) when empty.</summary>
    public (int Cluster, double Distance) Nearest(ReadOnlySpan<float> key)
    {
        int best = -1;
        double bestD = double.PositiveInfinity;
        for (int c = 0; c < _clusters.Count; c++)
        {
            double d = Distance(key, _clusters[c].Centre);
            if (d < bestD) { bestD = d; best = c; }
        }
        return (best, bestD);
    }

    /// <summary>The block the host lookup gives a key (the same rule as the device kernel).</summary>
    public int Route(ReadOnlySpan<float> key)
    {
        var (c, d) = Nearest(key);
        if (c < 0 || d > _clusters[c].Radius) return -1;
        Point? best = null;
        double bestD = double.PositiveInfinity;
        foreach (var p in _clusters[c].Points)
        {
            double pd = Distance(key, p.Key);
            if (pd < bestD) { bestD = pd; best = p; }
        }
        return best?.Block ?? -1;
    }

    /// <summary>Inserts one key by MELO's rules.</summary>
    public void Insert(float[] key, string label, int block, int editId)
    {
        if (key.Length != KeyDim) throw new ArgumentException($"ClusterIndex: a key of {key.Length} values, the index holds {KeyDim}.");
        var point = new Point { Key = key, Block = block, EditId = editId };
        _dirty = true;
        var (c, d) = Nearest(key);
        if (c < 0 || d > _clusters[c].Radius + InitRadius)
        {
            Add(key, label, point, InitRadius);
            return;
        }
        var near = _clusters[c];
        if (near.Label == label)
        {
            near.Points.Add(point);
            Recentre(near, InitRadius);
            return;
        }
        // Close, but another label: a cluster of its own, and both radii halve the distance.
        Conflicts++;
        float half = (float)(d / 2);
        Add(key, label, point, half);
        near.Radius = half;
        int before = near.Points.Count;
        near.Points.RemoveAll(p => Distance(p.Key, near.Centre) > near.Radius);
        Forgotten += before - near.Points.Count;
    }

    private void Add(float[] key, string label, Point point, float radius)
    {
        var cl = new Cluster { Centre = (float[])key.Clone(), Radius = radius, Label = label };
        cl.Points.Add(point);
        _clusters.Add(cl);
    }

    /// <summary>Centre = mean of the points; radius = max(farthest point, <paramref name="floor"/>).</summary>
    private static void Recentre(Cluster cl, float floor)
    {
        int d = cl.Centre.Length;
        var mean = new double[d];
        foreach (var p in cl.Points) for (int i = 0; i < d; i++) mean[i] += p.Key[i];
        for (int i = 0; i < d; i++) cl.Centre[i] = (float)(mean[i] / cl.Points.Count);
        double far = cl.Points.Max(p => Distance(p.Key, cl.Centre));
        cl.Radius = (float)Math.Max(far, floor);
    }

    /// <summary>
    /// Drops the points of one edit; a cluster left without points by this is dropped, one that keeps
    /// points is re-centred on them (its radius never grows: a split's boundary stays). Returns whether any point was dropped.
    /// </summary>
    public bool RemoveEdit(int editId)
    {
        bool any = false;
        for (int c = _clusters.Count - 1; c >= 0; c--)
        {
            var cl = _clusters[c];
            int n = cl.Points.RemoveAll(p => p.EditId == editId);
            if (n == 0) continue;
            any = true;
            if (cl.Points.Count == 0) { _clusters.RemoveAt(c); continue; }
            float radius = cl.Radius;
            Recentre(cl, InitRadius);
            cl.Radius = Math.Min(cl.Radius, radius);
        }
        _dirty |= any;
        return any;
    }

    public void Clear()
    {
        _clusters.Clear();
        Conflicts = Forgotten = 0;
        _dirty = true;
    }

    /// <summary>Replaces the content (for loading a saved state).</summary>
    public void Restore(IEnumerable<Cluster> clusters, int conflicts, int forgotten)
    {
        _clusters.Clear();
        _clusters.AddRange(clusters);
        Conflicts = conflicts;
        Forgotten = forgotten;
        _dirty = true;
    }

    /// <summary>
    /// The block of every query (Q, D) on the device, or null when the index is empty (nothing routes).
    /// The caller owns the returned I32 (Q) tensor.
    /// </summary>
    public Tensor? Lookup(IBackend backend, Tensor queries)
    {
        if (_clusters.Count == 0) return null;
        if (_dirty || _centres is null || !ReferenceEquals(_centres.Backend, backend)) Upload(backend);
        var (blocks, dist) = backend.Ops<ILoraOps>().ClusterLookup(queries, _centres!, _radii!, _points!, _info!);
        dist.Dispose();
        return blocks;
    }

    private void Upload(IBackend be)
    {
        ReleaseDevice();
        int n = _clusters.Count, d = KeyDim;
        var centres = new float[(long)n * d];
        var radii = new float[n];
        var pts = new List<float>();
        var info = new List<int>();
        for (int c = 0; c < n; c++)
        {
            _clusters[c].Centre.CopyTo(centres, (long)c * d);
            radii[c] = _clusters[c].Radius;
            foreach (var p in _clusters[c].Points) { pts.AddRange(p.Key); info.Add(c); info.Add(p.Block); }
        }
        int np = info.Count / 2;
        _centres = be.FromArray(centres, n, d);
        _radii = be.FromArray(radii, n);
        _points = be.FromArray(pts.ToArray(), np, d);
        _info = be.FromArray(info.ToArray(), np, 2);
        _dirty = false;
    }

    private void ReleaseDevice()
    {
        _centres?.Dispose(); _radii?.Dispose(); _points?.Dispose(); _info?.Dispose();
        _centres = _radii = _points = _info = null;
    }

    public void Dispose() => ReleaseDevice();
}
