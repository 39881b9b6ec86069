namespace EditRuntime.Backends;

/// <summary>The one way to reach an op interface a backend implements beside <see cref="IBackend"/>.</summary>
public static class BackendOps
{
    /// <summary>
    /// <paramref name="backend"/> as <typeparamref name="TOps"/> (e.g. <see cref="ILoraOps"/>, <see cref="IMoEOps"/>), or an
    /// <see cref="UnsupportedOpException"/> naming the backend and the interface: never a silent fallback to another backend.
    /// </summary>
    public static TOps Ops<TOps>(this IBackend backend) where TOps : class =>
        backend as TOps ?? throw UnsupportedOpException.MissingInterface(backend.Name, typeof(TOps));

    /// <summary>dst[:] = src, element for element (same element count; through the op set's CopyStrided).</summary>
    public static void CopyInto(this IBackend backend, Tensor src, Tensor dst)
    {
        if (src.Count != dst.Count) throw new ArgumentException($"CopyInto: a source of {src.Count} elements for a destination of {dst.Count}.");
        int n = checked((int)src.Count);
        backend.CopyStrided(src, dst, 1, n, 0, n, 0, n);
    }

    /// <summary>dst[:] = values (as many values as dst has elements), uploaded and copied in place.</summary>
    public static void Overwrite(this IBackend backend, Tensor dst, float[] values)
    {
        using var src = backend.FromArray(values, dst.Shape);
        backend.CopyInto(src, dst);
    }
}
