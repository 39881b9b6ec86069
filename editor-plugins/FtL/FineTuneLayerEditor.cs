using EditRuntime.Autograd;
using EditRuntime.Backends;
using EditRuntime.Models;

namespace EditRuntime.Editing.Plugins;

/// <summary>
/// FT-L: fine-tune one linear weight of the model on the edit requests, with an L∞ constraint
/// |W − W₀| ≤ norm_constraint keeping the weight near the original (the "constrained fine-tuning"
/// baseline of Zhu et al. 2020, as ROME's authors ran it). Adam on the cross-entropy of target_new
/// after each prompt; the clamp is applied after every step.
/// </summary>
[EditorPlugin("FT-L", "FtL")]
public sealed class FineTuneLayerEditor : IEditor
{
    private readonly EditorContext _ctx;
    private readonly HyperParameters _hp;
    private readonly string _site, _weight;
    private readonly int _steps;
    private readonly float _lr, _eps;
    private readonly float[] _original;
    /// <summary>W − W₀ as the last clamp (or load) wrote it: saved as it is, so a loaded state is W₀ + delta to the bit.</summary>
    private float[] _delta;
    private int _nextId;

    public FineTuneLayerEditor(EditorContext context, HyperParameters hparams)
    {
        _ctx = context;
        _hp = hparams;
        _site = hparams.Site("layer", context.Model);
        _steps = hparams.Int("steps", 1, 100_000);
        _lr = hparams.Float("lr", 0, 10, minExclusive: true);
        _eps = hparams.Float("norm_constraint", 0, float.MaxValue, minExclusive: true);
        _weight = _site + ".weight";
        _original = context.Model.Backend.ToFloatArray(context.Model.Parameters[_weight]);
        _delta = new float[_original.Length];
    }

    public string Name => "FT-L";
    public bool CanRemove => false;

    public EditorDescription Describe() => new(Name, "Zhu et al., Modifying Memories in Transformer Models (2020); FT-L as in Meng et al., ROME (2022)",
        _original.LongLength, [_site], _hp.ToJson());

    public IReadOnlyList<int> Edit(IReadOnlyList<EditRequest> batch)
    {
        var be = _ctx.Model.Backend;
        var w = _ctx.Model.Parameters[_weight];
        var tf = TeacherForcing.Build(_ctx, batch);
        using var adam = new AdamMoments(be, [w]);
        for (int step = 1; step <= _steps; step++)
        {
            using (var tape = new Tape(be))
            {
                var p = _ctx.Model.Bind(tape, name => name == _weight);
                var loss = _ctx.Model.Loss(tape, p, tf.Batch, tf.Targets);
                tape.Backward(loss);
                adam.Step([p[_weight]], new AdamConfig(_lr), step);
            }
            Clamp(w);
        }
        return batch.Select(_ => _nextId++).ToList();
    }

    /// <summary>W ← W₀ + clamp(W − W₀, −ε, ε) (on the host: the op set has no clamp yet).</summary>
    private void Clamp(Tensor w)
    {
        var cur = _ctx.Model.Backend.ToFloatArray(w);
        for (int i = 0; i < cur.Length; i++) _delta[i] = Math.Clamp(cur[i] - _original[i], -_eps, _eps);
        WriteDelta(w);
    }

    /// <summary>w[:] = W₀ + delta.</summary>
    private void WriteDelta(Tensor w)
    {
        var values = new float[_original.Length];
        for (int i = 0; i < values.Length; i++) values[i] = _original[i] + _delta[i];
        _ctx.Model.Backend.Overwrite(w, values);
    }

    public void Remove(int editId) => throw new NotSupportedException("FT-L cannot remove one edit: its updates are merged into one weight (use Reset to undo all).");

    public void Reset()
    {
        _delta = new float[_original.Length];
        _ctx.Model.Backend.Overwrite(_ctx.Model.Parameters[_weight], _original);   // W₀ itself (W₀ + 0 would turn −0 into +0)
    }

    /// <summary>The edit state: W − W₀ of the tuned weight (named as the weight).</summary>
    public void Save(string path) =>
        EditStateFile.Save(path, Name, _hp, [(_weight, new HostTensor(_ctx.Model.Parameters[_weight].Shape.ToArray(), (float[])_delta.Clone()))]);

    public void Load(string path)
    {
        using var state = EditStateFile.Open(path, Name);
        state.RequireSame("layer", _site, (h, k) => h.String(k));
        var delta = state.Tensor(_weight, _ctx.Model.Parameters[_weight].Shape.ToArray());
        // Edit clamps every element to ±norm_constraint (of the hyper-parameters the state was made with): a larger one is
        // damage (a flipped exponent bit makes 1e36, and every prediction NaN), not an edit.
        float eps;
        try { eps = state.HyperParameters.Float("norm_constraint", 0, float.MaxValue, minExclusive: true); }
        catch (HyperParameterException e) { throw state.Invalid($"its recorded hyper-parameters are not usable: {e.Message}"); }
        for (int i = 0; i < delta.Data.Length; i++)
            if (Math.Abs(delta.Data[i]) > eps)
                throw state.Invalid($"tensor \"{_weight}\" element {i} is {delta.Data[i]}, outside ±{eps} (the norm_constraint it was saved with).");
        _delta = delta.Data;
        WriteDelta(_ctx.Model.Parameters[_weight]);
    }

    public void Dispose() { }
}
