using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using EditRuntime.Autograd;
using EditRuntime.Backends;
using EditRuntime.Models;

namespace EditRuntime.Editing;

/// <summary>
/// The second moment C = E[k·kᵀ] of what a linear site reads (its input, one row per token) over a text corpus: the
/// "key statistics" of the locate-then-edit editors (ROME, MEMIT, AlphaEdit), which stand for what the model already
/// knows at that site. Collected once per model, site and corpus, on the model's backend, summed in float64 on the host,
/// and cached beside the model (<c>stats/SITE.mom2.safetensors</c>, written atomically) with the model's fingerprint,
/// the corpus's SHA-256 and the token count; a file made for another model, site, corpus or token budget is refused,
/// naming what differs.
/// </summary>
public sealed class KeyStatistics
{
    public const string Kind = "editrt-key-statistics";

    private KeyStatistics(string site, int width, long tokens, string corpusSha256, string file, double seconds, bool loaded, double[] moment)
    {
        (Site, Width, Tokens, CorpusSha256, FilePath, Seconds, Loaded, Moment) = (site, width, tokens, corpusSha256, file, seconds, loaded, moment);
    }

    public string Site { get; }
    /// <summary>The site's input width (d_k): C is Width × Width.</summary>
    public int Width { get; }
    /// <summary>Tokens the moment averages over.</summary>
    public long Tokens { get; }
    public string CorpusSha256 { get; }
    public string FilePath { get; }
    /// <summary>Seconds the collection took (when this run collected it; the file's record when loaded).</summary>
    public double Seconds { get; }
    /// <summary>Whether it came from the cache file.</summary>
    public bool Loaded { get; }
    /// <summary>C, row-major, float64.</summary>
    public double[] Moment { get; }

    /// <summary>Where the statistics of a site are cached for a model folder.</summary>
    public static string FileFor(IModelFolder dir, string site) => Path.Combine(dir.Path, "stats", $"{site}.mom2.safetensors");

    /// <summary>SHA-256 over the model's weights as loaded from its folder (names, shapes and values, in name order).</summary>
    public static string Fingerprint(IModelFolder dir)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var (name, t) in dir.Weights.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            sha.AppendData(System.Text.Encoding.UTF8.GetBytes(name + ":" + string.Join(",", t.Shape) + ";"));
            sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.Data.AsSpan()));
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>
    /// The statistics of <paramref name="site"/>'s input over the first <paramref name="maxTokens"/> tokens of
    /// <paramref name="corpus"/> (a UTF-8 text file, one passage per line, each line a sequence cut to the model's
    /// context): read from the cache when it was made for this model, site, corpus and budget, else collected and cached.
    /// The model must be unedited (the statistics describe the model as its folder holds it).
    /// </summary>
    public static KeyStatistics LoadOrCollect(EditorContext ctx, string site, string corpus, long maxTokens, string owner, Action<string>? log = null)
    {
        if (!File.Exists(corpus)) throw new FileNotFoundException($"{owner}: the key-statistics corpus {corpus} does not exist (name a UTF-8 text file, one passage per line).", corpus);
        if (maxTokens < 1) throw new ArgumentOutOfRangeException(nameof(maxTokens), $"{owner}: the key-statistics token budget must be at least 1, got {maxTokens}.");
        var model = ctx.Model;
        int width = model.Parameters[site + ".weight"].Shape[0];
        string corpusSha = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(corpus)));
        string fingerprint = Fingerprint(ctx.Directory);
        string file = FileFor(ctx.Directory, site);
        if (File.Exists(file)) return Load(file, site, width, corpusSha, fingerprint, maxTokens);

        var sw = Stopwatch.StartNew();
        var (moment, tokens) = Collect(ctx, site, File.ReadLines(corpus), maxTokens, log);
        double seconds = sw.Elapsed.TotalSeconds;
        var meta = new Dictionary<string, string>
        {
            ["kind"] = Kind, ["site"] = site, ["width"] = width.ToString(CultureInfo.InvariantCulture),
            ["tokens"] = tokens.ToString(CultureInfo.InvariantCulture), ["max_tokens"] = maxTokens.ToString(CultureInfo.InvariantCulture),
            ["corpus"] = corpus, ["corpus_sha256"] = corpusSha, ["model_fingerprint"] = fingerprint,
            ["seconds"] = seconds.ToString("R", CultureInfo.InvariantCulture), ["backend"] = model.Backend.Name,
        };
        Directory.CreateDirectory(Path.GetDirectoryName(file)!);
        SafeTensorsWriter.Write(file, [("mom2", new HostTensor([width, width], moment.Select(v => (float)v).ToArray()))], meta);
        log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"{owner}: key statistics of {site}: {tokens:N0} tokens in {seconds:F1} s → {file} ({new FileInfo(file).Length / 1024.0 / 1024.0:F1} MiB)"));
        // What later runs will read: the float32 values of the file.
        return new KeyStatistics(site, width, tokens, corpusSha, file, seconds, false, moment.Select(v => (double)(float)v).ToArray());
    }

    private static KeyStatistics Load(string file, string site, int width, string corpusSha, string fingerprint, long maxTokens)
    {
        using var f = SafeTensorsFile.Open(file);
        Exception Refuse(string problem) => new InvalidDataException($"{file}: {problem} Delete the file to collect the statistics again for this model and corpus.");
        string Meta(string key) => f.Metadata.TryGetValue(key, out var v) ? v : throw Refuse($"metadata \"{key}\" is missing: it is not a key-statistics file of this version.");
        if (Meta("kind") != Kind) throw Refuse($"it is a \"{Meta("kind")}\" file, not key statistics.");
        if (Meta("site") != site) throw Refuse($"it holds the statistics of {Meta("site")}, not of {site} (another layer's file under this name).");
        if (Meta("width") != width.ToString(CultureInfo.InvariantCulture)) throw Refuse($"its keys are {Meta("width")} wide, {site} reads {width}.");
        if (Meta("model_fingerprint") != fingerprint) throw Refuse($"it was collected on another model (weights fingerprint {Meta("model_fingerprint")[..12]}…, this model's {fingerprint[..12]}…): stale statistics.");
        if (Meta("corpus_sha256") != corpusSha) throw Refuse($"it was collected over another corpus ({Meta("corpus")}, SHA-256 {Meta("corpus_sha256")[..12]}…; the corpus named now has {corpusSha[..12]}…).");
        if (Meta("max_tokens") != maxTokens.ToString(CultureInfo.InvariantCulture)) throw Refuse($"it was collected with a budget of {Meta("max_tokens")} tokens, the hyper-parameters ask for {maxTokens}.");
        if (!f.Contains("mom2")) throw Refuse("tensor \"mom2\" is missing.");
        var t = f.Read("mom2");
        if (!t.Shape.SequenceEqual([width, width])) throw Refuse($"tensor \"mom2\" is [{string.Join(", ", t.Shape)}], [{width}, {width}] was expected.");
        for (int i = 0; i < t.Data.Length; i++)
            if (!float.IsFinite(t.Data[i])) throw Refuse($"tensor \"mom2\" element {i} is {t.Data[i]}.");
        long tokens = long.Parse(Meta("tokens"), CultureInfo.InvariantCulture);
        double seconds = double.Parse(Meta("seconds"), CultureInfo.InvariantCulture);
        return new KeyStatistics(site, width, tokens, corpusSha, file, seconds, true, t.Data.Select(v => (double)v).ToArray());
    }

    /// <summary>Σ k·kᵀ / n over the non-pad tokens of the corpus's lines (in order, until the budget), and n.</summary>
    public static (double[] Moment, long Tokens) Collect(EditorContext ctx, string site, IEnumerable<string> lines, long maxTokens, Action<string>? log = null)
    {
        var model = ctx.Model;
        var be = model.Backend;
        int width = model.Parameters[site + ".weight"].Shape[0];
        int context = model.Shape.Positions;
        int layer = model.Sites.Layer(site);
        var sum = new double[(long)width * width];
        long tokens = 0, nextLog = maxTokens / 10;
        var pending = new List<int[]>();
        using var capture = model.Capture(site, SiteCapture.Keep.Input);
        void Flush()
        {
            if (pending.Count == 0) return;
            var batch = new TokenBatch(pending);
            using (var _ = model.ResidualAt(batch, layer + 1)) { }   // runs the layers up to the site; the capture keeps its input
            var positions = Enumerable.Range(0, batch.B).SelectMany(b => Enumerable.Range(0, batch.Lengths[b]).Select(t => b * batch.T + t)).ToArray();
            using var rows = TokenRows.Gather(be, capture.Input!, positions);
            using var gram = be.Matmul(rows, rows, transA: true);
            var g = be.ToFloatArray(gram);
            for (long i = 0; i < g.Length; i++) sum[i] += g[i];
            tokens += positions.Length;
            pending.Clear();
            if (tokens >= nextLog) { log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"key statistics of {site}: {tokens:N0} / {maxTokens:N0} tokens")); nextLog += maxTokens / 10; }
        }
        foreach (var line in lines)
        {
            if (tokens >= maxTokens) break;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var ids = ctx.Directory.EncodePrompt(line.Trim());
            long room = maxTokens - tokens - pending.Sum(p => (long)p.Length);
            if (room <= 0) { Flush(); continue; }
            int n = (int)Math.Min(Math.Min(ids.Length, context), room);
            pending.Add(ids[..n]);
            if (pending.Count == 32) Flush();
        }
        Flush();
        if (tokens == 0) throw new ArgumentException($"key statistics of {site}: the corpus has no text.");
        for (long i = 0; i < sum.Length; i++) sum[i] /= tokens;
        return (sum, tokens);
    }
}

/// <summary>Rows of a (B, T, W) activation at flattened positions b·T + t.</summary>
public static class TokenRows
{
    /// <summary>(positions.Length, W): src's rows at the given flattened positions, in order.</summary>
    public static Tensor Gather(IBackend be, Tensor src, IReadOnlyList<int> positions)
    {
        int width = src.Shape[^1];
        using var flat = be.Reshape(src, (int)(src.Count / width), width);
        using var idx = be.FromArray(positions.ToArray(), positions.Count);
        return be.Embedding(idx, flat);
    }
}
