using EditRuntime.Backends;

namespace EditRuntime.Autograd;

/// <summary>
/// Adam's first and second moments (zeroed) for a fixed list of parameter tensors, and the step over
/// them: what an editor's training loop keeps beside the tensors it trains. Dispose frees the moments.
/// </summary>
public sealed class AdamMoments : IDisposable
{
    private readonly IBackend _be;
    private readonly IReadOnlyList<Tensor> _params;
    private readonly Tensor[] _m, _v;

    public AdamMoments(IBackend backend, IReadOnlyList<Tensor> parameters)
    {
        _be = backend;
        _params = parameters;
        var made = new List<Tensor>();
        try
        {
            Tensor Zero(Tensor p) { var t = backend.Empty(DType.F32, p.Shape); made.Add(t); backend.Fill(t, 0); return t; }
            _m = parameters.Select(Zero).ToArray();
            _v = parameters.Select(Zero).ToArray();
        }
        catch { foreach (var t in made) t.Dispose(); throw; }
    }

    /// <summary>One Adam step (<paramref name="step"/> counts from 1) on parameter i for each variable
    /// <paramref name="vars"/>[i] that has a gradient, whose gradient is then cleared.</summary>
    public void Step(IReadOnlyList<Var> vars, AdamConfig cfg, int step)
    {
        if (vars.Count != _params.Count) throw new ArgumentException($"Adam: {vars.Count} variables for {_params.Count} parameters.");
        for (int i = 0; i < vars.Count; i++)
        {
            if (vars[i].Grad is not { } g) continue;
            _be.AdamStep(_params[i], g, _m[i], _v[i], cfg, step);
            vars[i].ClearGrad();
        }
    }

    /// <summary>One Adam step on parameter i with gradient <paramref name="grads"/>[i] (skipped where null); the gradients stay the caller's.</summary>
    public void Step(IReadOnlyList<Tensor?> grads, AdamConfig cfg, int step)
    {
        if (grads.Count != _params.Count) throw new ArgumentException($"Adam: {grads.Count} gradients for {_params.Count} parameters.");
        for (int i = 0; i < grads.Count; i++)
            if (grads[i] is { } g) _be.AdamStep(_params[i], g, _m[i], _v[i], cfg, step);
    }

    /// <summary>The first moments, one per parameter (for a checkpoint; <see cref="Restore"/> writes them back).</summary>
    public IReadOnlyList<Tensor> First => _m;
    /// <summary>The second moments, one per parameter.</summary>
    public IReadOnlyList<Tensor> Second => _v;

    /// <summary>Overwrites moment <paramref name="i"/> (first and second) with values of its parameter's size.</summary>
    public void Restore(int i, float[] first, float[] second)
    {
        int n = (int)_params[i].Count;
        if (first.Length != n || second.Length != n) throw new ArgumentException($"Adam: moments of {first.Length}/{second.Length} values for a parameter of {n}.");
        _be.Overwrite(_m[i], first);
        _be.Overwrite(_v[i], second);
    }

    public void Dispose()
    {
        foreach (var t in _m.Concat(_v)) t.Dispose();
    }
}
