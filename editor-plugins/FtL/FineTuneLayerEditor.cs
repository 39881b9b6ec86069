using System.Text.Json.Nodes;
using EditRuntime.Autograd;
using EditRuntime.Backends;
using EditRuntime.IO;
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
    private readonly JsonObject _hp;
    private readonly string _weight;
    private readonly float[] _original;
    private readonly int _steps;
    private readonly float _lr, _eps;
    private int _nextId;

    public FineTuneLayerEditor(EditorContext context, JsonObject hparams)
    {
        _ctx = context;
        _hp = hparams;
        _weight = (string)hparams["layer"]! + ".weight";
        if (!context.Model.Parameters.ContainsKey(_weight))
            throw new ArgumentException($"FT-L: layer \"{hparams["layer"]}\" is not a linear site of this model (e.g. h.3.mlp.c_proj).");
        _steps = (int)(double)hparams["steps"]!;
        _lr = (float)(double)hparams["lr"]!;
        _eps = (float)(double)hparams["norm_constraint"]!;
        if (_steps <= 0 || _lr <= 0 || _eps <= 0) throw new ArgumentException("FT-L: steps, lr and norm_constraint must be positive.");
        _original = context.Model.Backend.ToFloatArray(context.Model.Parameters[_weight]);
    }

    public string Name => "FT-L";
    public bool CanRemove => false;

    public EditorDescription Describe() => new(Name, "Zhu et al., Modifying Memories in Transformer Models (2020); FT-L as in Meng et al., ROME (2022)",
        _original.LongLength, [(string)_hp["layer"]!], (JsonObject)_hp.DeepClone());

    public IReadOnlyList<int> Edit(IReadOnlyList<EditRequest> batch)
    {
        var be = _ctx.Model.Backend;
        var w = _ctx.Model.Parameters[_weight];
        var pairs = batch.Select(r => _ctx.Encode(r.Prompt, r.TargetNew)).ToList();
        var seqs = pairs.Select(p => p.Prompt.Concat(p.Target[..^1]).ToArray()).ToList();
        var tb = new TokenBatch(seqs);
        var targets = new int[tb.B * tb.T];
        Array.Fill(targets, -100);
        for (int b = 0; b < tb.B; b++)
            for (int j = 0; j < pairs[b].Target.Length; j++)
                targets[b * tb.T + pairs[b].Prompt.Length - 1 + j] = pairs[b].Target[j];
        using var adam = new AdamMoments(be, [w]);
        for (int step = 1; step <= _steps; step++)
        {
            using (var tape = new Tape(be))
            {
                var p = _ctx.Model.Bind(tape, name => name == _weight);
                var loss = _ctx.Model.Loss(tape, p, tb, targets);
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
        var be = _ctx.Model.Backend;
        var cur = be.ToFloatArray(w);
        for (int i = 0; i < cur.Length; i++) cur[i] = _original[i] + Math.Clamp(cur[i] - _original[i], -_eps, _eps);
        Overwrite(w, cur);
    }

    /// <summary>w[:] = values (a whole-tensor copy through the op set's CopyStrided).</summary>
    private void Overwrite(Tensor w, float[] values)
    {
        var be = _ctx.Model.Backend;
        using var t = be.FromArray(values, w.Shape);
        be.CopyStrided(t, w, 1, values.Length, 0, values.Length, 0, values.Length);
    }

    public void Remove(int editId) => throw new NotSupportedException("FT-L cannot remove one edit: its updates are merged into one weight (use Reset to undo all).");

    public void Reset() => Overwrite(_ctx.Model.Parameters[_weight], _original);

    /// <summary>The edit state: W − W₀ of the tuned weight, as safetensors, with the hyper-parameters in the metadata.</summary>
    public void Save(string path)
    {
        var cur = _ctx.Model.Backend.ToFloatArray(_ctx.Model.Parameters[_weight]);
        var delta = new float[cur.Length];
        for (int i = 0; i < cur.Length; i++) delta[i] = cur[i] - _original[i];
        SafeTensorsWriter.Write(path, [(_weight, new HostTensor(_ctx.Model.Parameters[_weight].Shape.ToArray(), delta))],
            new Dictionary<string, string> { ["editor"] = Name, ["hparams"] = _hp.ToJsonString() });
    }

    public void Load(string path)
    {
        using var f = SafeTensorsFile.Open(path);
        if (!f.Metadata.TryGetValue("editor", out var e) || e != Name) throw new InvalidDataException($"{path}: not an {Name} edit state.");
        var delta = f.Read(_weight);
        var cur = new float[_original.Length];
        for (int i = 0; i < cur.Length; i++) cur[i] = _original[i] + delta.Data[i];
        Overwrite(_ctx.Model.Parameters[_weight], cur);
    }

    public void Dispose() { }
}
