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
}
