using EditRuntime.Autograd;
using EditRuntime.Backends;

namespace EditRuntime.Models;

/// <summary>What a tokenizer does for the editors and the harness: text to ids and back.</summary>
public interface ITokenizer
{
    int VocabSize { get; }
    /// <summary>The ids of <paramref name="text"/> (no BOS: a model folder's <see cref="IModelFolder.EncodePrompt"/> adds it).</summary>
    int[] Encode(string text);
    /// <summary>The ids of text that is data, not markup: where the tokenizer can, a special token's text (GPT-2's
    /// "&lt;|endoftext|&gt;") is encoded as ordinary text. A tokenizer.json's added tokens are always matched, as the
    /// Hugging Face tokenizers library does, so there it is <see cref="Encode"/>.</summary>
    int[] EncodePlain(string text) => Encode(text);
    string Decode(IEnumerable<int> ids);
}

/// <summary>The sizes every editor reads, whatever the architecture.</summary>
/// <param name="Architecture">"gpt2" or "llama" (LLaMA, Qwen2 and Mistral layouts).</param>
/// <param name="Width">The residual stream's width (GPT-2's n_embd, LLaMA's hidden_size).</param>
/// <param name="Positions">The longest sequence the model reads.</param>
public sealed record ModelShape(string Architecture, int Width, int Layers, int Positions, int VocabSize);

/// <summary>What a linear site does in its block; an editor that needs one kind of site asks for its role, so one
/// hyper-parameter check serves every architecture.</summary>
[Flags]
public enum SiteRole
{
    /// <summary>Projections into attention (GPT-2's fused c_attn; LLaMA's q_proj, k_proj, v_proj).</summary>
    AttentionIn = 1,
    /// <summary>Attention's output projection (c_proj; o_proj).</summary>
    AttentionOut = 2,
    /// <summary>The MLP's input projections (c_fc; gate_proj, up_proj).</summary>
    MlpIn = 4,
    /// <summary>The MLP's output projection, whose input is the MLP's hidden activation (c_proj; down_proj).</summary>
    MlpOut = 8,
    Any = AttentionIn | AttentionOut | MlpIn | MlpOut,
}

/// <summary>
/// The names of an architecture's linear sites ("PREFIX{layer}.KIND"), their order in the forward and their roles.
/// GPT-2: h.N.attn.c_attn, h.N.attn.c_proj, h.N.mlp.c_fc, h.N.mlp.c_proj. LLaMA family (Hugging Face names):
/// model.layers.N.self_attn.{q,k,v,o}_proj, model.layers.N.mlp.{gate,up,down}_proj.
/// </summary>
public sealed class SiteLayout
{
    private readonly (string Kind, SiteRole Role)[] _kinds;

    private SiteLayout(string prefix, int layers, (string Kind, SiteRole Role)[] kinds)
    {
        Prefix = prefix;
        Layers = layers;
        _kinds = kinds;
    }

    public static SiteLayout Gpt2(int layers) => new("h.", layers,
        [("attn.c_attn", SiteRole.AttentionIn), ("attn.c_proj", SiteRole.AttentionOut), ("mlp.c_fc", SiteRole.MlpIn), ("mlp.c_proj", SiteRole.MlpOut)]);

    public static SiteLayout Llama(int layers) => new("model.layers.",
        layers,
        [("self_attn.q_proj", SiteRole.AttentionIn), ("self_attn.k_proj", SiteRole.AttentionIn), ("self_attn.v_proj", SiteRole.AttentionIn),
         ("self_attn.o_proj", SiteRole.AttentionOut), ("mlp.gate_proj", SiteRole.MlpIn), ("mlp.up_proj", SiteRole.MlpIn), ("mlp.down_proj", SiteRole.MlpOut)]);

    /// <summary>What every site name starts with ("h." or "model.layers.").</summary>
    public string Prefix { get; }
    public int Layers { get; }

    /// <summary>The site kinds of a block in forward order (e.g. "mlp.c_fc").</summary>
    public IReadOnlyList<string> Kinds => _kinds.Select(k => k.Kind).ToArray();

    /// <summary>The kinds with one of the given roles, in forward order.</summary>
    public IReadOnlyList<string> KindsOf(SiteRole roles) => _kinds.Where(k => (k.Role & roles) != 0).Select(k => k.Kind).ToArray();

    /// <summary>The site of a kind at a layer.</summary>
    public string Name(int layer, string kind) => $"{Prefix}{layer}.{kind}";

    /// <summary>Position of a site in the forward (layer, then kind order); −1 if the name is not one of this layout
    /// (the layer is not checked against <see cref="Layers"/>).</summary>
    public int Order(string site)
    {
        if (site is null || !site.StartsWith(Prefix, StringComparison.Ordinal)) return -1;
        var rest = site.AsSpan(Prefix.Length);
        int dot = rest.IndexOf('.');
        if (dot <= 0 || !int.TryParse(rest[..dot], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int layer)) return -1;
        var kind = rest[(dot + 1)..].ToString();
        int k = Array.FindIndex(_kinds, x => x.Kind == kind);
        return k < 0 ? -1 : layer * _kinds.Length + k;
    }

    /// <summary>The layer of a site; −1 if the name is not one.</summary>
    public int Layer(string site) => Order(site) is var o and >= 0 ? o / _kinds.Length : -1;

    /// <summary>The role of a site (null if the name is not one).</summary>
    public SiteRole? Role(string site) => Order(site) is var o and >= 0 ? _kinds[o % _kinds.Length].Role : null;

    /// <summary>Whether <paramref name="site"/> is a site of a layer below <see cref="Layers"/> with one of the roles.</summary>
    public bool Contains(string site, SiteRole roles = SiteRole.Any) =>
        Layer(site) is var l && l >= 0 && l < Layers && (Role(site)!.Value & roles) != 0;

    /// <summary>"h.N.mlp.c_fc, h.N.mlp.c_proj" for the roles (for error messages).</summary>
    public string Describe(SiteRole roles = SiteRole.Any) => string.Join(", ", KindsOf(roles).Select(k => $"{Prefix}N.{k}"));
}

/// <summary>
/// A language model as the editors, the evaluation harness and the trainer see it: GPT-2 (<see cref="Gpt2Model"/>) or
/// the LLaMA family (<see cref="LlamaModel"/>). The forward is written on an autograd <see cref="Tape"/>; editors hook
/// adapters and captures on linear sites (<see cref="Sites"/>) and read or change site weights in
/// <see cref="Parameters"/>. Convention for every architecture: a linear site's weight "SITE.weight" is (in, out) on
/// the device, y = x·W (+ b) — GPT-2's Conv1D layout; the LLaMA model transposes Hugging Face's (out, in) nn.Linear
/// weights when it loads them and back in <see cref="ToHost"/>, so an editor's ΔW means the same on both.
/// </summary>
public interface ILanguageModel : IDisposable
{
    IBackend Backend { get; }
    ModelShape Shape { get; }
    SiteLayout Sites { get; }
    IReadOnlyDictionary<string, Tensor> Parameters { get; }
    /// <summary>The token embedding's parameter name, (V, C) ("wte.weight"; "model.embed_tokens.weight").</summary>
    string EmbeddingName { get; }
    /// <summary>The learned position embedding's parameter name ("wpe.weight"), or null where positions are not a
    /// parameter (RoPE). Training leaves it out of the weight decay, as GPT-2's recipe does.</summary>
    string? PositionEmbeddingName { get; }
    /// <summary>The sites that have an adapter, and who attached it.</summary>
    IReadOnlyDictionary<string, string> AttachedAdapters { get; }
    /// <summary>Bound on one scoring forward (sequences × padded length × vocabulary); see <see cref="ScoreTargets"/>.</summary>
    long ScoreLogitBudget { get; set; }

    /// <summary>The parameters as tape leaves; <paramref name="trainable"/> picks those that get gradients (null: all).</summary>
    Dictionary<string, Var> Bind(Tape tape, Func<string, bool>? trainable = null);
    /// <summary>Logits (B, T, V) of a right-padded batch.</summary>
    Var Logits(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch);
    /// <summary>Mean cross-entropy against per-position targets (B·T, −100 = ignored); only target positions reach the
    /// head. With <paramref name="residual"/> (from <see cref="ResidualAt"/>) the forward starts at <paramref name="fromLayer"/>.</summary>
    Var Loss(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch, int[] targets, Tensor? residual = null, int fromLayer = 0);
    /// <summary>The logits (rows, V) of the positions with a target, in position order, from the forward <see cref="Loss"/> runs.</summary>
    Var TargetLogits(Tape tape, IReadOnlyDictionary<string, Var> p, TokenBatch batch, int[] targets, Tensor? residual = null, int fromLayer = 0);
    /// <summary>The residual stream entering <paramref name="layer"/> (B, T, C) on the frozen parameters with the adapters
    /// below it; nothing is recorded. The caller owns the tensor.</summary>
    Tensor ResidualAt(TokenBatch batch, int layer);
    /// <summary>Hooks an adapter on a linear site (one per site; disposing the handle detaches it).</summary>
    IDisposable Attach(string site, ILinearAdapter adapter, string owner);
    /// <summary>Records a linear site's input and output in every forward until disposed.</summary>
    SiteCapture Capture(string site, SiteCapture.Keep keep = SiteCapture.Keep.Both);
    /// <summary>Logits (V) of the last position of one sequence, on the host.</summary>
    float[] NextTokenLogits(int[] ids);
    /// <summary>Greedy decoding with a key/value cache after <paramref name="prompt"/>: at most
    /// <paramref name="maxNewTokens"/> tokens, stopping after one of <paramref name="stopIds"/> (included) or at the last position.</summary>
    int[] GenerateGreedy(int[] prompt, int maxNewTokens, IReadOnlyCollection<int>? stopIds);
    /// <summary>Teacher-forced log-probabilities and argmax hits of targets after prompts, in bounded chunks.</summary>
    TargetScore[] ScoreTargets(IReadOnlyList<(int[] Prompt, int[] Target)> requests);
    /// <summary>Every parameter as a host tensor, in the checkpoint's own layout (for saving).</summary>
    Dictionary<string, HostTensor> ToHost();
}

/// <summary>A model folder as the editors see it: where it is, which hyper-parameter defaults apply, its tokenizer and
/// how prompts are fed.</summary>
public interface IModelFolder
{
    string Path { get; }
    /// <summary>The hyper-parameter family of editors' defaults (editor-plugins/NAME/hparams/FAMILY.json).</summary>
    string Family { get; }
    ITokenizer Tokenizer { get; }
    /// <summary>The weights as the folder holds them (host; what a key-statistics cache fingerprints).</summary>
    IReadOnlyDictionary<string, HostTensor> Weights { get; }
    /// <summary>Token ids of a prompt as the model expects them (a BOS first where the model wants one).</summary>
    int[] EncodePrompt(string prompt);
    /// <summary>How many tokens <see cref="EncodePrompt"/> puts before the text's own.</summary>
    int PromptPrefixLength { get; }
    /// <summary>The model's sizes, from its config.json.</summary>
    ModelShape Shape { get; }
    /// <summary>The ids that end generated text (GPT-2's &lt;|endoftext|&gt;; config.json's eos_token_id).</summary>
    IReadOnlyList<int> StopIds { get; }
}
