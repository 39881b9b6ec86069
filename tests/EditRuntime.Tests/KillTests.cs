using System.Diagnostics;
using System.Text.Json.Nodes;
using EditRuntime.Editing;
using EditRuntime.IO;
using EditRuntime.Models;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>
/// Saves survive SIGKILL (issue 19): a child (the hidden <c>editrt save-loop</c>, which writes an edit state
/// through <see cref="EditStateFile"/>, a report through <see cref="AtomicFile"/> and a model through
/// <see cref="Gpt2Checkpoint.Save"/>, versions numbered in every value) is killed at random points,
/// <see cref="Trials"/> times in all. After each kill every file is the previous version intact or the new one
/// complete — it loads, and each of its values is the one version the file says it is, one the child wrote —
/// and the temporary files a killed child left are removed by the next child's next write to that path.
/// </summary>
[NonParallelizable]
public sealed class KillTests
{
    /// <summary>Kills in all (issue 19 asks for at least 50).</summary>
    private const int Trials = 51;
    private static readonly string[] Kinds = ["state", "report", "model"];

    /// <summary>Children killed side by side, each in its own folder: the 2-core test machine spends most of a trial starting .NET, so lanes overlap those starts.</summary>
    private const int Lanes = 3;

    [Test]
    public void A_killed_save_leaves_the_old_file_or_the_new_one_and_the_next_run_removes_its_temps()
    {
        int seed = Environment.GetEnvironmentVariable("EDITRT_TEST_SEED") is string s ? int.Parse(s) : 1919;
        TestContext.Out.WriteLine($"seed {seed} (rerun with EDITRT_TEST_SEED={seed})");
        var root = Path.Combine(Path.GetTempPath(), $"kill-{Guid.NewGuid():N}");
        var clock = Stopwatch.StartNew();
        var expectedWeights = Gpt2Model.RandomWeights(SaveLoopConfig, SaveLoopSeed);
        var testDir = TestContext.CurrentContext.TestDirectory;
        try
        {
            var lanes = Enumerable.Range(0, Lanes).Select(lane => Task.Run(() =>
                Lane(Path.Combine(root, $"lane{lane}"), lane, Trials / Lanes + (lane < Trials % Lanes ? 1 : 0), new Random(seed + lane), expectedWeights, testDir))).ToArray();
            Task.WaitAll(lanes);
            var (newer, older, midWrite) = (lanes.Sum(l => l.Result.Newer), lanes.Sum(l => l.Result.Older), lanes.Sum(l => l.Result.MidWrite));
            TestContext.Out.WriteLine($"{Trials} kills in {Lanes} lanes ({midWrite} left a temporary file: killed inside a write); files checked {Trials * Kinds.Length}: " +
                                      $"{newer} were a new version, {older} the previous one; {clock.Elapsed.TotalSeconds:0.0} s");
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            // The first lane's assertion, as NUnit reports it.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    /// <summary>One folder: a complete run, <paramref name="trials"/> killed ones, a complete run; every file checked after each.</summary>
    private static (int Newer, int Older, int MidWrite) Lane(string dir, int lane, int trials, Random rng, Dictionary<string, HostTensor> expectedWeights, string testDir)
    {
        int Version(int trial) => lane * 1_000_000 + trial * 10_000;   // distinct in every lane and child; exact in float32 (< 2^24)
        // Version 0 of the lane, written to the end: from here on there is always a previous file.
        var (baseline, cycleMs) = RunToEnd(testDir, dir, Version(0), count: 3);
        var done = Kinds.ToDictionary(k => k, k => baseline.Last(l => l.Kind == k && l.End).Version);
        int newer = 0, older = 0, midWrite = 0;
        for (int trial = 1; trial <= trials; trial++)
        {
            // Kill points spread over three write cycles after the child's first write began (the first, JIT-slow, takes longest).
            var (lines, pid) = RunAndKill(testDir, dir, Version(trial), TimeSpan.FromMilliseconds(rng.NextDouble() * 3 * cycleMs));
            var temps = Temps(dir);
            foreach (var kind in Kinds)
            {
                var mine = lines.Where(l => l.Kind == kind).ToList();
                // The last complete write (this child's, else what was on disk), or the one it was killed inside.
                var allowed = new HashSet<int> { mine.LastOrDefault(l => l.End)?.Version ?? done[kind] };
                if (mine.Count > 0 && !mine[^1].End) allowed.Add(mine[^1].Version);
                int onDisk = ReadVersion(dir, kind, expectedWeights);
                Assert.That(allowed, Does.Contain(onDisk), $"lane {lane} trial {trial}: {kind} is version {onDisk}; the child had completed {string.Join(", ", mine.Where(l => l.End).Select(l => l.Version))}");
                if (onDisk != done[kind]) newer++; else older++;
                done[kind] = onDisk;
                if (mine.Any(l => l.End))
                {
                    // This child finished a write to the path: every temp an earlier child left there is gone.
                    var stale = temps.Where(t => t.Kind == kind && t.Pid != pid).Select(t => t.Path).ToList();
                    Assert.That(stale, Is.Empty, $"lane {lane} trial {trial}: temps of earlier children for {kind} survived a complete write");
                }
            }
            midWrite += temps.Any(t => t.Pid == pid) ? 1 : 0;
        }
        // A child that runs to the end removes what the last killed one left.
        int last = Version(trials + 1);
        RunToEnd(testDir, dir, last, count: 1);
        Assert.That(Temps(dir), Is.Empty, $"lane {lane}: temporary files after a complete run");
        foreach (var kind in Kinds) Assert.That(ReadVersion(dir, kind, expectedWeights), Is.EqualTo(last), kind);
        return (newer, older, midWrite);
    }

    // ---------------------------------------------------------------- the child

    /// <summary>What the child's SaveLoopCommand saves (kept in step with engine/EditRuntime.Cli/SaveLoopCommand.cs).</summary>
    private static Gpt2Config SaveLoopConfig => new() { VocabSize = 256, NPositions = 32, NEmbd = 64, NLayer = 2, NHead = 2, BosTokenId = 0, EosTokenId = 0 };
    private const int SaveLoopSeed = 19, StateValues = 1 << 16, ReportValues = 5_000;

    private sealed record Line(string Kind, bool End, int Version, TimeSpan At);

    private static Process Start(string testDir, string dir, int first, int count)
    {
        var dll = Path.Combine(testDir, "editrt.dll");
        var psi = new ProcessStartInfo("dotnet", $"\"{dll}\" save-loop --dir \"{dir}\" --first {first} --count {count}")
            { RedirectStandardOutput = true, RedirectStandardError = true };
        return Process.Start(psi)!;
    }

    private static Line Parse(string text, TimeSpan at)
    {
        var p = text.Split(' ');
        Assert.That(p, Has.Length.EqualTo(3), text);
        return new Line(p[1], p[0] == "end", int.Parse(p[2]), at);
    }

    /// <summary>Runs the child for <paramref name="count"/> versions to its end; returns its lines and the time of one write cycle (ms).</summary>
    private static (List<Line> Lines, double CycleMs) RunToEnd(string testDir, string dir, int first, int count)
    {
        using var p = Start(testDir, dir, first, count);
        var clock = Stopwatch.StartNew();
        var err = p.StandardError.ReadToEndAsync();
        var lines = new List<Line>();
        while (p.StandardOutput.ReadLine() is string l) lines.Add(Parse(l, clock.Elapsed));
        Assert.That(p.WaitForExit(60_000), Is.True, "save-loop ends");
        Assert.That(p.ExitCode, Is.Zero, err.Result);
        var starts = lines.Where(l => l.Kind == "state" && !l.End).Select(l => l.At.TotalMilliseconds).ToList();
        return (lines, starts.Count > 1 ? (starts[^1] - starts[0]) / (starts.Count - 1) : 100);
    }

    /// <summary>Starts the child, kills it (SIGKILL) <paramref name="delay"/> after its first write began, and returns every line it printed.</summary>
    private static (List<Line> Lines, int Pid) RunAndKill(string testDir, string dir, int first, TimeSpan delay)
    {
        using var p = Start(testDir, dir, first, 0);
        int pid = p.Id;
        var clock = Stopwatch.StartNew();
        var lines = new List<Line>();
        var began = new ManualResetEventSlim();
        var reader = Task.Run(() =>
        {
            while (p.StandardOutput.ReadLine() is string l)
            {
                lock (lines) lines.Add(Parse(l, clock.Elapsed));
                began.Set();
            }
        });
        var err = p.StandardError.ReadToEndAsync();
        Assert.That(began.Wait(60_000), Is.True, "save-loop began writing");
        Thread.Sleep(delay);
        Assert.That(p.HasExited, Is.False, $"save-loop runs until killed: {(p.HasExited ? err.Result : "")}");
        p.Kill();   // SIGKILL on Unix
        Assert.That(p.WaitForExit(30_000), Is.True, "a killed child exits");
        Assert.That(reader.Wait(30_000), Is.True, "its output ends");
        return (lines, pid);
    }

    // ---------------------------------------------------------------- the files

    /// <summary>The version a file holds, after checking it is whole: it loads and every value is that version.</summary>
    private static int ReadVersion(string dir, string kind, Dictionary<string, HostTensor> expectedWeights)
    {
        switch (kind)
        {
            case "state":
            {
                using var state = EditStateFile.Open(Path.Combine(dir, "state.safetensors"), "save-loop");
                int v = state.Int("version");
                Assert.That(state.HyperParameters.Int("version", 0, int.MaxValue), Is.EqualTo(v), "the recorded hyper-parameters are the same write's");
                var t = state.Tensor("values", StateValues);
                Assert.That(t.Data.All(x => x == v), Is.True, $"every value of state version {v} is {v}");
                return v;
            }
            case "report":
            {
                var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "report.json")))!.AsObject();
                int v = json["version"]!.GetValue<int>();
                var values = json["values"]!.AsArray();
                Assert.That(values, Has.Count.EqualTo(ReportValues));
                Assert.That(values.All(x => x!.GetValue<int>() == v), Is.True, $"every value of report version {v} is {v}");
                return v;
            }
            default:
            {
                var (config, tensors) = Gpt2Checkpoint.Load(Path.Combine(dir, "model"));
                Assert.That((config.NEmbd, config.NLayer, config.VocabSize), Is.EqualTo((SaveLoopConfig.NEmbd, SaveLoopConfig.NLayer, SaveLoopConfig.VocabSize)));
                var wte = tensors["wte.weight"].Data;
                int v = (int)wte[0];
                Assert.That(wte.All(x => x == v), Is.True, $"every wte value of model version {v} is {v}");
                foreach (var (name, t) in tensors.Where(t => t.Key != "wte.weight"))
                    Assert.That(t.Data, Is.EqualTo(expectedWeights[name].Data), name);
                return v;
            }
        }
    }

    private sealed record Temp(string Path, string Kind, int Pid);

    /// <summary>The temporary files in the child's folders (".NAME.PID.GUID.tmp"), by the kind of file they were for.</summary>
    private static List<Temp> Temps(string dir)
    {
        var found = new List<Temp>();
        foreach (var (folder, kind) in new[] { (dir, ""), (Path.Combine(dir, "model"), "model") })
        {
            if (!Directory.Exists(folder)) continue;
            foreach (var path in Directory.EnumerateFiles(folder, "*" + AtomicFile.TempSuffix))
            {
                var parts = Path.GetFileName(path).Split('.');   // "", NAME..., PID, GUID, "tmp"
                string target = string.Join('.', parts[1..^3]);
                string k = kind != "" ? kind : target == "state.safetensors" ? "state" : target == "report.json" ? "report" : target;
                found.Add(new Temp(path, k, int.Parse(parts[^3])));
            }
        }
        return found;
    }
}
