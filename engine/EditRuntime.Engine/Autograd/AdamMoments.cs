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

    public void Dispose()
    {
        foreach (var t in _m.Concat(_v)) t.Dispose();
    }
}
