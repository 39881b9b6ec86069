namespace EditRuntime.Editing;

/// <summary>
/// Eigen-decomposition of a real symmetric matrix on the host in float64: Householder reduction to tridiagonal form,
/// then the implicit QL iteration with Wilkinson-style shifts, the rotations accumulated into the eigenvectors.
/// O(n³); for the one-time decompositions of key statistics (AlphaEdit's null-space projector), not for per-edit work.
/// </summary>
public static class SymmetricEigen
{
    /// <summary>Eigenvalues ascending and the eigenvectors as the rows of a row-major n × n array (row i belongs to value i).</summary>
    /// <param name="a">Row-major n × n, symmetric (only symmetry up to rounding is assumed; the lower triangle is used).</param>
    public static (double[] Values, double[] Vectors) Decompose(double[] a, int n)
    {
        if (a.Length != (long)n * n) throw new ArgumentException($"a {n} × {n} matrix needs {(long)n * n} values, got {a.Length}.");
        foreach (var x in a) if (!double.IsFinite(x)) throw new ArgumentException("the matrix has a non-finite value.");
        var m = (double[])a.Clone();
        // Symmetrise from the lower triangle.
        for (int i = 0; i < n; i++) for (int j = 0; j < i; j++) m[(long)j * n + i] = m[(long)i * n + j];
        // q holds Qᵀ: A = Q·T·Qᵀ, Q's columns are q's rows.
        var q = new double[(long)n * n];
        for (int i = 0; i < n; i++) q[(long)i * n + i] = 1;
        var v = new double[n];
        var p = new double[n];
        for (int k = 0; k + 2 < n; k++)
        {
            int len = n - k - 1;
            double norm = 0;
            for (int i = 0; i < len; i++) { v[i] = m[(long)(k + 1 + i) * n + k]; norm += v[i] * v[i]; }
            norm = Math.Sqrt(norm);
            if (norm == 0) continue;
            double alpha = v[0] > 0 ? -norm : norm;
            v[0] -= alpha;
            double vn = 0;
            for (int i = 0; i < len; i++) vn += v[i] * v[i];
            vn = Math.Sqrt(vn);
            if (vn == 0) continue;
            for (int i = 0; i < len; i++) v[i] /= vn;
            // H = I − 2vvᵀ on rows/columns k+1..n−1: A' = A − 2v·wᵀ − 2w·vᵀ with p = A·v, w = p − (vᵀp)·v.
            for (int i = 0; i < len; i++)
            {
                double s = 0;
                long row = (long)(k + 1 + i) * n + k + 1;
                for (int j = 0; j < len; j++) s += m[row + j] * v[j];
                p[i] = s;
            }
            double vp = 0;
            for (int i = 0; i < len; i++) vp += v[i] * p[i];
            for (int i = 0; i < len; i++) p[i] -= vp * v[i];
            for (int i = 0; i < len; i++)
            {
                long row = (long)(k + 1 + i) * n + k + 1;
                double vi = v[i], wi = p[i];
                for (int j = 0; j < len; j++) m[row + j] -= 2 * (vi * p[j] + wi * v[j]);
            }
            m[(long)(k + 1) * n + k] = m[(long)k * n + k + 1] = alpha;
            for (int i = 1; i < len; i++) m[(long)(k + 1 + i) * n + k] = m[(long)k * n + k + 1 + i] = 0;
            // Qᵀ ← H·Qᵀ on rows k+1..n−1.
            for (int c = 0; c < n; c++)
            {
                double s = 0;
                for (int i = 0; i < len; i++) s += v[i] * q[(long)(k + 1 + i) * n + c];
                if (s == 0) continue;
                s *= 2;
                for (int i = 0; i < len; i++) q[(long)(k + 1 + i) * n + c] -= s * v[i];
            }
        }
        var d = new double[n];
        var e = new double[n];   // e[i] couples d[i] and d[i+1]; e[n−1] = 0
        for (int i = 0; i < n; i++) d[i] = m[(long)i * n + i];
        for (int i = 0; i + 1 < n; i++) e[i] = m[(long)(i + 1) * n + i];
        Ql(d, e, q, n);
        // Ascending order.
        var order = Enumerable.Range(0, n).OrderBy(i => d[i]).ToArray();
        var values = order.Select(i => d[i]).ToArray();
        var vectors = new double[(long)n * n];
        for (int r = 0; r < n; r++) Array.Copy(q, (long)order[r] * n, vectors, (long)r * n, n);
        return (values, vectors);
    }

    /// <summary>Implicit QL on the tridiagonal (d, e); every rotation of positions (i, i+1) is applied to rows i and i+1 of z.</summary>
    private static void Ql(double[] d, double[] e, double[] z, int n)
    {
        for (int l = 0; l < n; l++)
        {
            int iterations = 0;
            while (true)
            {
                int m = l;
                for (; m < n - 1; m++)
                {
                    double dd = Math.Abs(d[m]) + Math.Abs(d[m + 1]);
                    if (Math.Abs(e[m]) <= 1e-15 * dd) break;
                }
                if (m == l) break;
                if (++iterations > 100) throw new ArithmeticException($"symmetric eigen-decomposition: no convergence at eigenvalue {l} of {n}.");
                double g = (d[l + 1] - d[l]) / (2 * e[l]);
                double r = Hypot(g, 1);
                g = d[m] - d[l] + e[l] / (g + (g >= 0 ? Math.Abs(r) : -Math.Abs(r)));
                double s = 1, c = 1, p = 0;
                int i = m - 1;
                bool deflated = false;
                for (; i >= l; i--)
                {
                    double f = s * e[i], b = c * e[i];
                    r = Hypot(f, g);
                    e[i + 1] = r;
                    if (r == 0)
                    {
                        d[i + 1] -= p;
                        e[m] = 0;
                        deflated = true;
                        break;
                    }
                    s = f / r;
                    c = g / r;
                    g = d[i + 1] - p;
                    r = (d[i] - g) * s + 2 * c * b;
                    p = s * r;
                    d[i + 1] = g + p;
                    g = c * r - b;
                    long ri = (long)i * n, rj = (long)(i + 1) * n;
                    for (int k = 0; k < n; k++)
                    {
                        double zf = z[rj + k], zi = z[ri + k];
                        z[rj + k] = s * zi + c * zf;
                        z[ri + k] = c * zi - s * zf;
                    }
                }
                if (deflated) continue;
                d[l] -= p;
                e[l] = g;
                e[m] = 0;
            }
        }
    }

    private static double Hypot(double a, double b)
    {
        double x = Math.Abs(a), y = Math.Abs(b);
        if (x < y) (x, y) = (y, x);
        if (x == 0) return 0;
        double t = y / x;
        return x * Math.Sqrt(1 + t * t);
    }
}
