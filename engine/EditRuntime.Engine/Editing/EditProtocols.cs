using System.Diagnostics;
using EditRuntime.Backends;
using EditRuntime.Models;

namespace EditRuntime.Editing;

/// <summary>How requests are applied: one at a time with a reset after each (single), all in one call
/// (batch), one after another on the same model (sequential), or T batches of N (sequential-batch).</summary>
public enum EditProtocol { Single, Batch, Sequential, SequentialBatch }

/// <summary>Metrics of one protocol run (NaN where the data has nothing to measure).</summary>
public sealed record EditScores(double Efficacy, double Generality, double Locality, double CounterFactSuccess, int Requests)
{
    /// <summary>GS on the rephrase prompts the unedited model answers with target_true (every token the
    /// argmax): generality where the model understands the paraphrase of the fact it is asked to change —
    /// what separates an editor's generalisation from the model's own grasp of the templates. NaN without
    /// target_true or without the run's pre-edit check (<see cref="EditProtocols.UnderstoodRephrases"/>).</summary>
    public double GeneralityUnderstood { get; init; } = double.NaN;
    /// <summary>How many rephrase prompts <see cref="GeneralityUnderstood"/> counts.</summary>
    public int UnderstoodRephrases { get; init; }
}

/// <summary>Metrics measured on the requests edited so far, after <paramref name="Edits"/> of them.</summary>
public sealed record CurvePoint(int Edits, EditScores Scores);

/// <summary>Where a long run is: phase "edit" (requests applied so far) or "measure" (a curve point).</summary>
public sealed record EditProgress(string Phase, int Done, int Total, TimeSpan Elapsed)
{
    public override string ToString() => $"{Phase} {Done}/{Total}";
}

/// <summary>How to run a protocol: a curve point every <see cref="CurveEvery"/> edits (sequential
/// protocols; 0 = only the final measurement) and a progress callback.</summary>
public sealed record EditRunOptions
{
    public int CurveEvery { get; init; }
    public Action<EditProgress>? Progress { get; init; }
}

/// <summary>The result of one protocol run. Times: wall seconds per edit (the editor's Edit calls
/// only, device work included), device seconds per edit (GPU timestamps, null on a backend without
/// them) and the peak device memory of live tensors during the run (null likewise).</summary>
public sealed record EditRunResult(EditProtocol Protocol, int Edits, int BatchSize, EditScores Scores, double SecondsPerEdit, double TotalSeconds)
{
    public IReadOnlyList<CurvePoint> Curve { get; init; } = [];
    public double? DeviceSecondsPerEdit { get; init; }
    /// <summary>Peak over the whole run, measurement included (scoring batches many prompts at once).</summary>
    public long? PeakDeviceBytes { get; init; }
    /// <summary>Peak while the editor's Edit calls ran (the model's weights included): what editing itself needs.</summary>
    public long? PeakEditDeviceBytes { get; init; }
    /// <summary>Seconds spent measuring (final scores and curve points).</summary>
    public double MeasureSeconds { get; init; }
}

/// <summary>Runs an editor over requests under a protocol and measures ES, GS, LS and CounterFact success.</summary>
public static class EditProtocols
{
    public static EditProtocol Parse(string s) => s.ToLowerInvariant() switch
    {
        "single" => EditProtocol.Single,
        "batch" => EditProtocol.Batch,
        "sequential" => EditProtocol.Sequential,
        "sequential-batch" => EditProtocol.SequentialBatch,
        _ => throw new ArgumentException($"--protocol: \"{s}\" is not single, batch, sequential or sequential-batch."),
    };

    /// <summary>Per rephrase prompt (all requests' rephrases in order): does the model as it is now answer it with
    /// the request's target_true (every token the argmax)? False where the request has no target_true.</summary>
    public static bool[] UnderstoodRephrases(EditorContext ctx, IReadOnlyList<EditRequest> reqs)
    {
        var flat = reqs.SelectMany(r => r.RephrasePrompts.Select(p => (r, p))).ToList();
        var withTrue = flat.Select((x, i) => (x, i)).Where(y => y.x.r.TargetTrue is not null).ToList();
        var scores = ctx.Model.ScoreTargets(withTrue.Select(y => ctx.Encode(y.x.p, y.x.r.TargetTrue!)).ToList());
        var known = new bool[flat.Count];
        for (int j = 0; j < withTrue.Count; j++) known[withTrue[j].i] = scores[j].Accuracy == 1.0;
        return known;
    }

    /// <summary>Scores of the current (edited or not) model on the requests; with <paramref name="understood"/>
    /// (<see cref="UnderstoodRephrases"/> of the unedited model, for these requests) also GS on those prompts.</summary>
    public static EditScores Measure(EditorContext ctx, IReadOnlyList<EditRequest> reqs, IReadOnlyList<TargetScore> localityBaseline, IReadOnlyList<bool>? understood = null)
    {
        var model = ctx.Model;
        var es = model.ScoreTargets(reqs.Select(r => ctx.Encode(r.Prompt, r.TargetNew)).ToList());
        var gsFlat = model.ScoreTargets(reqs.SelectMany(r => r.RephrasePrompts.Select(p => ctx.Encode(p, r.TargetNew))).ToList());
        if (understood is not null && understood.Count != gsFlat.Length)
            throw new ArgumentException($"understood rephrases: {understood.Count} flags for {gsFlat.Length} rephrase prompts.");
        // Per request: its rephrase scores, and (with understood) those of its understood rephrases.
        var gs = new List<IReadOnlyList<TargetScore>>();
        var kept = new List<IReadOnlyList<TargetScore>>();
        int k = 0;
        foreach (var r in reqs)
        {
            var mine = Enumerable.Range(k, r.RephrasePrompts.Count);
            gs.Add(mine.Select(i => gsFlat[i]).ToList());
            if (understood is not null) kept.Add(mine.Where(i => understood[i]).Select(i => gsFlat[i]).ToList());
            k += r.RephrasePrompts.Count;
        }
        var loc = LocalityScores(ctx, reqs);
        var withTrue = reqs.Select((r, i) => (r, i)).Where(x => x.r.TargetTrue is not null).ToList();
        var tTrue = model.ScoreTargets(withTrue.Select(x => ctx.Encode(x.r.Prompt, x.r.TargetTrue!)).ToList());
        double cf = EditMetrics.CounterFactSuccess(withTrue.Select(x => es[x.i]).ToList(), tTrue);
        var scores = new EditScores(EditMetrics.Efficacy(es), EditMetrics.Generality(gs), loc.Count == 0 ? double.NaN : EditMetrics.Locality(loc, localityBaseline), cf, reqs.Count);
        if (understood is null) return scores;
        return scores with { GeneralityUnderstood = EditMetrics.Generality(kept), UnderstoodRephrases = understood.Count(u => u) };
    }

    /// <summary>Teacher-forced scores of every request's locality prompts with their answers.</summary>
    public static IReadOnlyList<TargetScore> LocalityScores(EditorContext ctx, IReadOnlyList<EditRequest> reqs) =>
        ctx.Model.ScoreTargets(reqs.SelectMany(r => r.Locality.Select(l => ctx.Encode(l.Prompt, l.Answer))).ToList());

    /// <summary>
    /// Every prompt a run scores (edit, rephrases, locality) with its target fits the model's positions: refused before
    /// any edit, naming the record, instead of failing when that prompt is first scored, hours in.
    /// </summary>
    public static void CheckFits(EditorContext ctx, IEnumerable<EditRequest> requests)
    {
        int positions = ctx.Model.Shape.Positions;
        foreach (var r in requests)
        {
            void Check(string what, string prompt, string target)
            {
                var (p, t) = ctx.Encode(prompt, target);
                if (p.Length + t.Length - 1 > positions)
                    throw new ArgumentException($"{r.Source} record {r.Index}: the {what} with its target is {p.Length + t.Length - 1} tokens, over the model's {positions} positions.");
            }
            Check("prompt", r.Prompt, r.TargetNew);
            if (r.TargetTrue is not null) Check("prompt (with target_true)", r.Prompt, r.TargetTrue);
            for (int i = 0; i < r.RephrasePrompts.Count; i++) Check($"rephrase prompt {i}", r.RephrasePrompts[i], r.TargetNew);
            for (int i = 0; i < r.Locality.Count; i++) Check($"locality prompt {i}", r.Locality[i].Prompt, r.Locality[i].Answer);
        }
    }

    public static EditRunResult Run(EditorContext ctx, IEditor editor, IReadOnlyList<EditRequest> requests, EditProtocol protocol,
        int edits, int batchSize, Action<string>? progress = null) =>
        Run(ctx, editor, requests, protocol, edits, batchSize, new EditRunOptions { Progress = progress is null ? null : p => progress(p.ToString()) });

    public static EditRunResult Run(EditorContext ctx, IEditor editor, IReadOnlyList<EditRequest> requests, EditProtocol protocol,
        int edits, int batchSize, EditRunOptions options)
    {
        if (edits <= 0 || edits > requests.Count) throw new ArgumentException($"--edits: {edits} requested but the data has {requests.Count}.");
        if (batchSize <= 0) throw new ArgumentException("--batch must be positive.");
        if (options.CurveEvery < 0) throw new ArgumentException("--curve-every must be 0 (off) or positive.");
        var reqs = requests.Take(edits).ToList();
        CheckFits(ctx, reqs);
        var backend = ctx.Model.Backend;
        var counters = backend as IDeviceCounters;
        var baseline = LocalityScores(ctx, reqs);
        var understood = UnderstoodRephrases(ctx, reqs);
        var locStarts = new int[reqs.Count + 1];
        var rephStarts = new int[reqs.Count + 1];
        for (int i = 0; i < reqs.Count; i++)
        {
            locStarts[i + 1] = locStarts[i] + reqs[i].Locality.Count;
            rephStarts[i + 1] = rephStarts[i] + reqs[i].RephrasePrompts.Count;
        }
        IReadOnlyList<bool> Understood(int from, int to) => understood[rephStarts[from]..rephStarts[to]];
        counters?.ResetPeakDeviceBytes();
        var sw = Stopwatch.StartNew();
        double editSeconds = 0, deviceSeconds = 0, measureSeconds = 0;
        long runPeak = 0, editPeak = 0;
        long TakePeak()
        {
            if (counters is null) return 0;
            long p = counters.PeakDeviceBytes;
            counters.ResetPeakDeviceBytes();
            return p;
        }
        EditScores scores;
        var curve = new List<CurvePoint>();
        void Report(string phase, int done, int total) => options.Progress?.Invoke(new EditProgress(phase, done, total, sw.Elapsed));
        void Timed(IReadOnlyList<EditRequest> b)
        {
            backend.Synchronize();
            runPeak = Math.Max(runPeak, TakePeak());
            double busy0 = counters?.DeviceBusySeconds ?? 0;
            var t = Stopwatch.StartNew();
            editor.Edit(b);
            backend.Synchronize();
            editSeconds += t.Elapsed.TotalSeconds;
            deviceSeconds += (counters?.DeviceBusySeconds ?? 0) - busy0;
            long p = TakePeak();
            editPeak = Math.Max(editPeak, p);
            runPeak = Math.Max(runPeak, p);
        }
        EditScores Measured(int count)
        {
            var t = Stopwatch.StartNew();
            var r = Measure(ctx, reqs.Take(count).ToList(), LocalitySlice(baseline, locStarts, 0, count), Understood(0, count));
            measureSeconds += t.Elapsed.TotalSeconds;
            return r;
        }
        switch (protocol)
        {
            case EditProtocol.Single:
            {
                var per = new List<EditScores>();
                for (int i = 0; i < reqs.Count; i++)
                {
                    Timed([reqs[i]]);
                    var t = Stopwatch.StartNew();
                    per.Add(Measure(ctx, [reqs[i]], LocalitySlice(baseline, locStarts, i, i + 1), Understood(i, i + 1)));
                    measureSeconds += t.Elapsed.TotalSeconds;
                    editor.Reset();
                    Report("edit", i + 1, reqs.Count);
                }
                scores = new EditScores(Mean(per, s => s.Efficacy), Mean(per, s => s.Generality), Mean(per, s => s.Locality), Mean(per, s => s.CounterFactSuccess), per.Count)
                {
                    GeneralityUnderstood = Mean(per, s => s.GeneralityUnderstood),
                    UnderstoodRephrases = per.Sum(s => s.UnderstoodRephrases),
                };
                break;
            }
            case EditProtocol.Batch:
                Timed(reqs);
                Report("edit", reqs.Count, reqs.Count);
                scores = Measured(reqs.Count);
                curve.Add(new CurvePoint(reqs.Count, scores));
                break;
            default:
            {
                int n = protocol == EditProtocol.Sequential ? 1 : batchSize;
                int nextPoint = options.CurveEvery > 0 ? options.CurveEvery : int.MaxValue;
                for (int i = 0; i < reqs.Count; i += n)
                {
                    Timed(reqs.Skip(i).Take(n).ToList());
                    int done = Math.Min(i + n, reqs.Count);
                    Report("edit", done, reqs.Count);
                    if (done >= nextPoint && done < reqs.Count)
                    {
                        Report("measure", done, reqs.Count);
                        curve.Add(new CurvePoint(done, Measured(done)));
                        while (nextPoint <= done) nextPoint += options.CurveEvery;
                    }
                }
                scores = Measured(reqs.Count);
                curve.Add(new CurvePoint(reqs.Count, scores));
                break;
            }
        }
        return new EditRunResult(protocol, reqs.Count, protocol == EditProtocol.Sequential || protocol == EditProtocol.Single ? 1 : protocol == EditProtocol.Batch ? reqs.Count : batchSize,
            scores, editSeconds / reqs.Count, sw.Elapsed.TotalSeconds)
        {
            Curve = curve,
            DeviceSecondsPerEdit = counters is null ? null : deviceSeconds / reqs.Count,
            PeakDeviceBytes = counters is null ? null : Math.Max(runPeak, TakePeak()),
            PeakEditDeviceBytes = counters is null ? null : editPeak,
            MeasureSeconds = measureSeconds,
        };
    }

    /// <summary>The baseline locality scores of requests [from, to): they come in request order, so a
    /// request's items start at the running sum of the locality counts before it.</summary>
    private static IReadOnlyList<TargetScore> LocalitySlice(IReadOnlyList<TargetScore> all, int[] starts, int from, int to) =>
        all.Skip(starts[from]).Take(starts[to] - starts[from]).ToList();

    private static double Mean(List<EditScores> v, Func<EditScores, double> f)
    {
        var x = v.Select(f).Where(d => !double.IsNaN(d)).ToList();
        return x.Count == 0 ? double.NaN : x.Average();
    }
}
