using EditRuntime.Autograd;
using EditRuntime.Backends;

namespace EditRuntime.Models;

/// <summary>What every architecture's model shares: the site hooks (adapters and captures) and target scoring. A
/// model passes its <see cref="SiteLayout"/> and calls <see cref="Hooks"/>.Run after each linear site.</summary>
public abstract class HookedModel(IBackend backend, SiteLayout layout)
{
    private protected SiteHooks Hooks { get; } = new(backend, layout);

    /// <summary>The linear sites and their names (see <see cref="SiteLayout"/>).</summary>
    public SiteLayout Sites => Hooks.Layout;

    /// <summary>The sites that have an adapter, and who attached it (<see cref="Attach"/>).</summary>
    public IReadOnlyDictionary<string, string> AttachedAdapters => Hooks.AttachedAdapters;

    /// <summary>Hooks an adapter on a linear site; see <see cref="SiteHooks.Attach"/>.</summary>
    public IDisposable Attach(string site, ILinearAdapter adapter, string owner) => Hooks.Attach(site, adapter, owner);

    /// <summary>Records what a linear site sees in every forward until disposed; see <see cref="SiteHooks.Capture"/>.</summary>
    public SiteCapture Capture(string site, SiteCapture.Keep keep = SiteCapture.Keep.Both) => Hooks.Capture(site, keep);

    /// <summary>Bound on one scoring forward, counted as sequences × padded length × vocabulary (32 MiB of float logits);
    /// larger request lists are scored in chunks of similar lengths so memory stays bounded (<see cref="TargetScoring"/>).</summary>
    public long ScoreLogitBudget { get; set; } = 8L << 20;
}

/// <summary>
/// The adapters and captures on a model's linear sites, written once for every architecture: a model calls
/// <see cref="Run"/> after each linear site's frozen output, and it applies the site's adapter and feeds its captures.
/// </summary>
internal sealed class SiteHooks(IBackend backend, SiteLayout layout)
{
    private readonly Dictionary<string, AdapterHandle> _adapters = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<SiteCapture>> _captures = new(StringComparer.Ordinal);

    public IBackend Backend { get; } = backend;
    public SiteLayout Layout { get; } = layout;

    public IReadOnlyDictionary<string, string> AttachedAdapters => _adapters.ToDictionary(a => a.Key, a => a.Value.Owner);

    /// <summary>
    /// Hooks an adapter on a linear site, through which an editor (LoRA blocks, a codebook, an expert bypass) changes
    /// the forward without touching the frozen weights; it sees the site's input and output. One adapter per site: two
    /// editors on one site would each train against a forward the other changes, so a taken site is an error naming its
    /// owner. Disposing the returned handle detaches exactly this adapter (and only once), whatever else was attached
    /// or detached meanwhile.
    /// </summary>
    public IDisposable Attach(string site, ILinearAdapter adapter, string owner)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        CheckSite(site, owner);
        if (_adapters.TryGetValue(site, out var taken))
            throw new InvalidOperationException($"{owner}: the site {site} already has an adapter, attached by {taken.Owner}; one adapter per site (close the {taken.Owner} editor first, or choose another site).");
        var handle = new AdapterHandle(this, site, adapter, owner);
        _adapters[site] = handle;
        return handle;
    }

    /// <summary>
    /// Records what the given linear site sees in every forward until disposed: its input and its output (after the
    /// site's adapter, if any), as copies the capture owns (the forward's own tensors die with its tape). Each forward
    /// replaces the previous one's. Any number of captures may watch a site.
    /// </summary>
    public SiteCapture Capture(string site, SiteCapture.Keep keep)
    {
        CheckSite(site, "capture");
        if (!_captures.TryGetValue(site, out var list)) _captures[site] = list = new List<SiteCapture>();
        var c = new SiteCapture(this, site, keep);
        list.Add(c);
        return c;
    }

    private void CheckSite(string site, string who)
    {
        if (!Layout.Contains(site))
            throw new ArgumentException($"{who}: \"{site}\" is not a linear site of this model ({Layout.Describe()} with N < {Layout.Layers}).");
    }

    /// <summary>The site's output after its adapter (if any); its captures record input and that output.</summary>
    public Var Run(Tape tape, string site, Var input, Var output, ForwardContext ctx)
    {
        if (_adapters.TryGetValue(site, out var a)) output = a.Adapter.Apply(tape, site, input, output, ctx);
        if (_captures.TryGetValue(site, out var watching))
            foreach (var c in watching.ToArray()) c.Record(input.Value, output.Value);
        return output;
    }

    internal void Detach(AdapterHandle handle)
    {
        if (_adapters.TryGetValue(handle.Site, out var current) && ReferenceEquals(current, handle)) _adapters.Remove(handle.Site);
    }

    internal void Detach(SiteCapture capture)
    {
        if (_captures.TryGetValue(capture.Site, out var list) && list.Remove(capture) && list.Count == 0) _captures.Remove(capture.Site);
    }
}

/// <summary>What an adapter knows about the forward it is part of: the batch and the first position.</summary>
public sealed record ForwardContext(TokenBatch Batch, int Start);

/// <summary>Changes the output of one linear site of a model (see <see cref="ILanguageModel.Attach"/>).</summary>
public interface ILinearAdapter
{
    /// <param name="input">The site's input (B, T, in).</param>
    /// <param name="output">The frozen linear's output (B, T, out).</param>
    /// <returns>The output to use instead (same shape).</returns>
    Var Apply(Tape tape, string site, Var input, Var output, ForwardContext context);
}

/// <summary>An adapter on one site of one model; disposing it detaches exactly that adapter, once.</summary>
internal sealed class AdapterHandle(SiteHooks model, string site, ILinearAdapter adapter, string owner) : IDisposable
{
    public string Site { get; } = site;
    public ILinearAdapter Adapter { get; } = adapter;
    public string Owner { get; } = owner;
    public void Dispose() => model.Detach(this);
}

/// <summary>
/// The input and output a linear site saw in the latest forward (<see cref="ILanguageModel.Capture"/>), as
/// tensors this capture owns until taken. Disposing it stops the recording and frees what it holds.
/// </summary>
public sealed class SiteCapture : IDisposable
{
    /// <summary>What to copy in each forward (copies cost device memory and a pass over the activations).</summary>
    [Flags]
    public enum Keep { Input = 1, Output = 2, Both = Input | Output }

    private readonly SiteHooks _model;
    private readonly Keep _keep;
    private Tensor? _input, _output;

    internal SiteCapture(SiteHooks model, string site, Keep keep)
    {
        _model = model;
        Site = site;
        _keep = keep;
    }

    public string Site { get; }
    /// <summary>Forwards that reached the site since the capture began.</summary>
    public int Forwards { get; private set; }
    /// <summary>The site's input (B, T, in) in the latest forward; null before one.</summary>
    public Tensor? Input => _input;
    /// <summary>The site's output (B, T, out), after its adapter, in the latest forward; null before one.</summary>
    public Tensor? Output => _output;

    internal void Record(Tensor input, Tensor output)
    {
        var be = _model.Backend;
        Forwards++;
        // Copies (x·1 is exact), because the forward's tensors belong to its tape.
        if (_keep.HasFlag(Keep.Input)) { _input?.Dispose(); _input = be.Scale(input, 1f); }
        if (_keep.HasFlag(Keep.Output)) { _output?.Dispose(); _output = be.Scale(output, 1f); }
    }

    /// <summary>The latest input; the caller owns it from now on.</summary>
    public Tensor TakeInput() => Take(ref _input, "input");

    /// <summary>The latest output; the caller owns it from now on.</summary>
    public Tensor TakeOutput() => Take(ref _output, "output");

    private Tensor Take(ref Tensor? t, string what)
    {
        var r = t ?? throw new InvalidOperationException($"capture of {Site}: no forward has reached the site (or its {what} was not kept, or was taken already).");
        t = null;
        return r;
    }

    public void Dispose()
    {
        _model.Detach(this);
        _input?.Dispose();
        _output?.Dispose();
        _input = _output = null;
    }
}
