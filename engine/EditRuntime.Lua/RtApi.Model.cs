using EditRuntime.Autograd;
using EditRuntime.Backends;
using EditRuntime.Editing;
using EditRuntime.Models;

namespace EditRuntime.Lua;

/// <summary>A loaded model as scripts hold it.</summary>
internal sealed class ModelObject(string path, IModelFolder directory, ILanguageModel model) : LuaObject
{
    public string Path { get; } = path;
    public EditorContext Context { get; } = new(model, directory);
    public ILanguageModel Model => Closed ? throw new LuaArgumentException($"the model {Path} was closed") : model;
    public IModelFolder Directory => directory;
    public bool Closed { get; private set; }
    public string Family => Directory.Family;

    public override string TypeName => "Model";
    public override string Describe() => Closed ? $"Model({Path}, closed)"
        : $"Model({Path}: {model.Shape.Architecture}, {model.Shape.Layers} layers, {model.Shape.Width} wide, {model.Backend.Name})";

    public void Close()
    {
        if (Closed) return;
        Closed = true;
        Context.Model.Dispose();
    }
}

internal sealed partial class RtApi
{
    private void RegisterModel()
    {
        Fn("rt.model.load", 1, 2, "rt.model.load(path[, {backend=}])", c =>
        {
            var given = c.String(1);
            var path = Paths.CheckReadTree(given, c.Name); // every file the loader opens, not only the folder
            var o = c.Options(2, "backend");
            var be = Backend(Str(o, "backend", c));
            var md = ModelFolders.Load(path);   // GPT-2 or a LLaMA-family folder
            var model = ModelFolders.Open(be, md);
            return c.Return(new ModelObject(given, md, model));
        });
        Fn("rt.model.builtin", 0, 0, "rt.model.builtin()", c =>
            c.Return(BuiltinModels.TinyPath ?? throw new InvalidOperationException($"the built-in model models/{BuiltinModels.Name} was not found above {AppContext.BaseDirectory} or the working directory")));

        _host.DefineType("Model",
        [
            Method("Model:info", 0, 0, "model:info()", c =>
            {
                var m = c.Self<ModelObject>();
                var shape = m.Model.Shape;
                return c.Return(new Dictionary<string, object?>
                {
                    ["path"] = m.Path, ["backend"] = m.Model.Backend.Name, ["device"] = m.Model.Backend.DeviceDescription, ["arch"] = shape.Architecture,
                    ["layers"] = shape.Layers, ["width"] = shape.Width, ["heads"] = Heads(m.Directory), ["vocab"] = shape.VocabSize, ["positions"] = shape.Positions,
                    ["parameters"] = m.Model.Parameters.Values.Sum(t => t.Count), ["prepend_bos"] = m.Directory.PromptPrefixLength > 0, ["family"] = m.Family,
                    ["sites"] = Sites(m.Model),
                });
            }),
            Method("Model:tokenize", 1, 1, "model:tokenize(text)", c =>
            {
                var m = c.Self<ModelObject>();
                var ids = m.Directory.Tokenizer.Encode(c.String(1));
                return c.Return(ids, ids.Select(i => TokenText(m.Directory.Tokenizer, i)).ToList());
            }),
            Method("Model:decode", 1, 1, "model:decode(ids)", c =>
            {
                var m = c.Self<ModelObject>();
                var ids = c.List(1, "ids").Select((v, i) => v is long l && l >= 0 && l < m.Directory.Tokenizer.VocabSize ? (int)l
                    : throw c.ArgError(1, $"ids[{i + 1}] is not a token id of this model (0..{m.Directory.Tokenizer.VocabSize - 1})")).ToList();
                return c.Return(m.Directory.Tokenizer.Decode(ids));
            }),
            Method("Model:generate", 1, 2, "model:generate(prompt[, {max_tokens=20}])", c =>
            {
                var m = c.Self<ModelObject>();
                var prompt = c.String(1);
                var o = c.Options(2, "max_tokens");
                int max = Int(o, "max_tokens", c, 20, 1);
                var ids = m.Directory.EncodePrompt(prompt);
                if (ids.Length == m.Directory.PromptPrefixLength) throw c.ArgError(1, "the prompt has no tokens");
                var tok = m.Directory.Tokenizer;
                var stops = m.Directory.StopIds;
                var gen = m.Model.GenerateGreedy(ids, max, stops).Where(i => !stops.Contains(i)).ToArray();
                return c.Return(tok.Decode(gen), gen);
            }),
            Method("Model:logprob", 2, 2, "model:logprob(prompt, target)", c =>
            {
                var m = c.Self<ModelObject>();
                var (p, t) = m.Context.Encode(c.String(1).TrimEnd(), c.String(2).TrimStart());
                if (p.Length == m.Directory.PromptPrefixLength) throw c.ArgError(1, "the prompt has no tokens");
                var s = m.Model.ScoreTargets([(p, t)])[0];
                return c.Return(new Dictionary<string, object?>
                {
                    ["logprob"] = s.LogProb, ["mean_nll"] = s.MeanNll, ["accuracy"] = s.Accuracy, ["tokens"] = t,
                    ["token_logprobs"] = s.TokenLogProbs.ToList(), ["hits"] = s.ArgmaxHits.ToList(), ["argmax"] = s.ArgmaxIds,
                });
            }),
            Method("Model:params", 0, 0, "model:params()", c =>
            {
                var m = c.Self<ModelObject>();
                return c.Return(m.Model.Parameters.ToDictionary(p => p.Key, p => (object?)p.Value.Shape.ToList()));
            }),
            Method("Model:weight", 1, 1, "model:weight(name)", c =>
            {
                var m = c.Self<ModelObject>();
                var name = ParamName(m, c.String(1), c, 1);
                return c.Return(new TensorObject(this, m.Model.Parameters[name], owned: false, m, name));
            }),
            Method("Model:activations", 2, 3, "model:activations(prompts, site[, {which=\"input\", position=\"last\"}])", c =>
            {
                var m = c.Self<ModelObject>();
                var prompts = Prompts(c, 1);
                var site = Site(m, c.String(2), c, 2);
                var o = c.Options(3, "which", "position");
                bool input = Str(o, "which", c) switch { null or "input" => true, "output" => false, var w => throw c.ArgError(3, $"which = \"{w}\": input or output") };
                bool last = Str(o, "position", c) switch { null or "last" => true, "all" => false, var w => throw c.ArgError(3, $"position = \"{w}\": last or all") };
                return c.Return(Activations(m, prompts, site, input, last));
            }),
            Method("Model:grad", 2, 2, "model:grad(requests, {param names})", c =>
            {
                var m = c.Self<ModelObject>();
                var reqs = ReadRequests(c, 1);
                var names = c.List(2, "param names").Select((v, i) => v is string s ? ParamName(m, s, c, 2)
                    : throw c.ArgError(2, $"names[{i + 1}]: string expected, got {LuaValues.Describe(v)}")).Distinct().ToList();
                if (names.Count == 0) throw c.ArgError(2, "no parameter names");
                var (loss, grads) = Grad(m, reqs, names);
                return c.Return(loss, grads);
            }),
            Method("Model:loss", 1, 1, "model:loss(requests)", c =>
            {
                var m = c.Self<ModelObject>();
                var tf = TeacherForcing.Build(m.Context, ReadRequests(c, 1));
                using var tape = new Tape(m.Model.Backend);
                var loss = m.Model.Loss(tape, m.Model.Bind(tape, _ => false), tf.Batch, tf.Targets);
                return c.Return((double)m.Model.Backend.ToFloatArray(loss.Value)[0]);
            }),
            Method("Model:close", 0, 0, "model:close()", c =>
            {
                var m = c.Self<ModelObject>();
                if (_host.LiveObjects.OfType<EditorObject>().Any(e => e.Model == m && !e.Closed))
                    throw new InvalidOperationException("close its editors first (editor:close())");
                foreach (var t in _host.LiveObjects.OfType<TensorObject>().Where(t => t.Model == m).ToList()) _host.ForgetObject(t);
                m.Close();
                return c.Nothing();
            }),
        ]);
    }

    private static List<object?> Sites(ILanguageModel model) =>
        Enumerable.Range(0, model.Sites.Layers).SelectMany(l => model.Sites.Kinds.Select(k => (object?)model.Sites.Name(l, k))).ToList();

    private static int Heads(IModelFolder f) => f switch { ModelDirectory g => g.Config.NHead, LlamaDirectory l => l.Config.NumAttentionHeads, _ => 0 };

    /// <summary>A token's text: GPT-2's byte-level symbol, or the token decoded alone.</summary>
    private static string TokenText(ITokenizer tok, int id) => tok is EditRuntime.Text.Gpt2Tokenizer g ? g.TokenText(id) : tok.Decode([id]);

    private static string ParamName(ModelObject m, string name, LuaCall c, int arg) =>
        m.Model.Parameters.ContainsKey(name) ? name
        : throw c.ArgError(arg, $"no parameter \"{name}\" in this model (e.g. {m.Model.Sites.Name(0, m.Model.Sites.KindsOf(SiteRole.MlpOut)[0])}.weight; model:params() lists them)");

    private static string Site(ModelObject m, string site, LuaCall c, int arg) =>
        m.Model.Sites.Contains(site) ? site
        : throw c.ArgError(arg, $"\"{site}\" is not a linear site of this model ({m.Model.Sites.Describe()} with N < {m.Model.Sites.Layers})");

    private static List<string> Prompts(LuaCall c, int i)
    {
        if (!c.IsTable(i)) return [c.String(i)];
        var list = c.List(i, "prompts");
        if (list.Count == 0) throw c.ArgError(i, "no prompts");
        return list.Select((p, k) => p is string s && s.Trim().Length > 0 ? s : throw c.ArgError(i, $"prompts[{k + 1}]: a non-empty string expected")).ToList();
    }

    private (double Loss, Dictionary<string, object?> Grads) Grad(ModelObject m, List<EditRequest> reqs, List<string> names)
    {
        var model = m.Model;
        var be = model.Backend;
        long bytes = names.Sum(n => model.Parameters[n].Count * 4L);
        ReserveTensorBytes(bytes);
        var tf = TeacherForcing.Build(m.Context, reqs);   // target_new after each prompt, as the editors train
        var grads = new Dictionary<string, object?>();
        long taken = 0;
        try
        {
            using var tape = new Tape(be);
            var p = model.Bind(tape, n => names.Contains(n));
            var loss = model.Loss(tape, p, tf.Batch, tf.Targets);
            tape.Backward(loss);
            double l = be.ToFloatArray(loss.Value)[0];
            foreach (var n in names)
            {
                // Leaf gradients belong to the caller (the tape does not free them): the script owns them now.
                var g = p[n].Grad ?? throw new InvalidOperationException($"no gradient reached {n}");
                grads[n] = new TensorObject(this, g, owned: true, null, "grad " + n, reserved: true);
                taken += g.Count * 4L;
            }
            return (l, grads);
        }
        catch
        {
            foreach (var g in grads.Values.Cast<TensorObject>()) g.Free();
            ReleaseTensorBytes(bytes - taken);
            throw;
        }
    }

    private TensorObject Activations(ModelObject m, List<string> prompts, string site, bool input, bool last)
    {
        var model = m.Model;
        var be = model.Backend;
        var seqs = prompts.Select(p => m.Directory.EncodePrompt(p.TrimEnd())).ToList();
        var tb = new TokenBatch(seqs);
        Tensor all;
        using (var capture = model.Capture(site, input ? SiteCapture.Keep.Input : SiteCapture.Keep.Output))
        {
            using (var tape = new Tape(be)) model.Logits(tape, model.Bind(tape, _ => false), tb);
            if (capture.Forwards == 0) throw new InvalidOperationException($"the forward did not reach {site}");
            all = input ? capture.TakeInput() : capture.TakeOutput();
        }
        int C = all.Shape[^1];
        if (!last)
        {
            try { ReserveTensorBytes(all.Count * 4L); }
            catch { all.Dispose(); throw; }
            return new TensorObject(this, all, owned: true, null, $"{site} {(input ? "input" : "output")}", reserved: true);
        }
        try
        {
            ReserveTensorBytes((long)tb.B * C * 4);
            var rows = be.Empty(DType.F32, tb.B, C);
            for (int b = 0; b < tb.B; b++)
                be.CopyStrided(all, rows, 1, C, ((long)b * tb.T + tb.Lengths[b] - 1) * C, C, (long)b * C, C);
            return new TensorObject(this, rows, owned: true, null, $"{site} {(input ? "input" : "output")} at the last prompt token", reserved: true);
        }
        finally { all.Dispose(); }
    }
}
