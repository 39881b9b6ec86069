using EditRuntime.Data;
using EditRuntime.Editing;
using EditRuntime.Models;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>
/// Meta-training of the hyper-network editors (MALMEN, MEND) on the built-in model with a small network: the two backends
/// take the same first meta-steps, a resumed run continues exactly where it stopped, and training lowers the meta-loss.
/// </summary>
[TestFixture]
[NonParallelizable]
public class MetaTrainingTests
{
    private const string Family = "editrt-tiny";

    /// <summary>The first requests of the world's meta-training split (train facts only).</summary>
    private static List<Editing.EditRequest> Train(int n) =>
        SyntheticWorld.Generate(null, SyntheticWorld.DefaultSeed).MetaTrainRequests.Take(n).Select(EditorFixtures.FromWorld).ToList();

    private static Dictionary<string, string> Small(string dir, int nEdits, string? msbpTraining = null, int numSeq = 1, string? rounds = null)
    {
        var d = new Dictionary<string, string>
        {
            ["rank"] = "32", ["n_edits"] = nEdits.ToString(), ["sub_batch"] = "4", ["chunk"] = "16",
            ["hypernet"] = Path.Combine(dir, "hypernet.safetensors"),
        };
        if (msbpTraining is not null) d["msbp_training"] = msbpTraining;
        d["num_seq"] = numSeq.ToString();
        if (rounds is not null) d["round_networks"] = rounds;
        return d;
    }

    private static IReadOnlyList<MetaTrainingStep> Run(string backend, string editorName, string dir, IReadOnlyList<Editing.EditRequest> data,
        int nEdits, int epochs, int? steps, bool resume = false, string? msbpTraining = null, int numSeq = 1, Action<EditorContext>? after = null,
        string? rounds = null, Action<IEditor>? edit = null)
    {
        using var s = EditorFixtures.Open(backend);
        using var editor = EditorRegistry.Create(editorName, s.Ctx, Family, null, Small(dir, nEdits, msbpTraining, numSeq, rounds));
        try
        {
        var steps_ = ((IMetaTrainable)editor).MetaTrain(data, new MetaTrainingOptions
        {
            OutDirectory = dir, Epochs = epochs, MaxSteps = steps, CheckpointEvery = 1, Resume = resume,
        });
        edit?.Invoke(editor);
        return steps_;
        }
        finally { after?.Invoke(s.Ctx); }
    }

    private static string TempDir(string what)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"metatrain-{what}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    [TestCase("MALMEN", null)]
    [TestCase("MEND", null)]
    [TestCase("EMSEdit", "reverted")]
    [TestCase("EMSEdit", "chained")]
    [TestCase("EMSEdit", "chained", "per_round", 3)]
    public void The_first_three_meta_steps_on_Vulkan_equal_Torch_s(string editorName, string? msbpTraining, string? rounds = null, int numSeq = 1)
    {
        var data = Train(24);
        string dt = TempDir(editorName + "-torch"), dv = TempDir(editorName + "-vulkan");
        try
        {
            var torch = Run("torch", editorName, dt, data, 8, 1, 3, msbpTraining: msbpTraining, rounds: rounds, numSeq: numSeq);
            var vulkan = Run("vulkan", editorName, dv, data, 8, 1, 3, msbpTraining: msbpTraining, rounds: rounds, numSeq: numSeq);
            Assert.That(torch, Has.Count.EqualTo(3));
            Assert.That(vulkan, Has.Count.EqualTo(3));
            for (int i = 0; i < 3; i++)
            {
                TestContext.Out.WriteLine($"{editorName} step {i + 1}: torch {torch[i].Loss:R} (CE {torch[i].GeneralisationLoss:R}, {torch[i].Regulariser} {torch[i].RegulariserLoss:R}), " +
                    $"vulkan {vulkan[i].Loss:R} (CE {vulkan[i].GeneralisationLoss:R}, {vulkan[i].Regulariser} {vulkan[i].RegulariserLoss:R})");
                Assert.That(double.IsFinite(torch[i].Loss) && double.IsFinite(vulkan[i].Loss), $"step {i + 1}: finite meta-losses");
                Assert.That(torch[i].Loss, Is.GreaterThan(0), $"step {i + 1}: a meta-loss is measured");
                double rel = Math.Abs(vulkan[i].Loss - torch[i].Loss) / Math.Abs(torch[i].Loss);
                Assert.That(rel, Is.LessThan(1e-4), $"step {i + 1}: meta-loss torch {torch[i].Loss:R}, vulkan {vulkan[i].Loss:R}");
                double relCe = Math.Abs(vulkan[i].GeneralisationLoss - torch[i].GeneralisationLoss) / Math.Abs(torch[i].GeneralisationLoss);
                Assert.That(relCe, Is.LessThan(1e-4), $"step {i + 1}: rephrase CE");
                double relNorm = Math.Abs(vulkan[i].GradNorm - torch[i].GradNorm) / torch[i].GradNorm;
                Assert.That(relNorm, Is.LessThan(1e-3), $"step {i + 1}: gradient norm torch {torch[i].GradNorm:R}, vulkan {vulkan[i].GradNorm:R}");
            }
            // The locality KL is 0 at step 1 (the untrained network's first shift is tiny) but must move after it.
            Assert.That(torch[2].RegulariserLoss, Is.GreaterThan(0), "the regulariser is measured");
            // Against the meta-loss, not itself: a KL of 1e-6 at step 3 is float32 noise on both backends.
            double relReg = Math.Abs(vulkan[2].RegulariserLoss - torch[2].RegulariserLoss) / torch[2].Loss;
            Assert.That(relReg, Is.LessThan(1e-4), $"step 3: {torch[2].Regulariser} torch {torch[2].RegulariserLoss:R}, vulkan {vulkan[2].RegulariserLoss:R}");
        }
        finally
        {
            Directory.Delete(dt, true);
            Directory.Delete(dv, true);
        }
    }

    [Test]
    public void A_resumed_run_takes_the_same_steps_as_one_that_never_stopped()
    {
        var data = Train(16);
        string straight = TempDir("straight"), stopped = TempDir("stopped");
        try
        {
            var all = Run("torch", "MALMEN", straight, data, 8, 3, null);
            Assert.That(all, Has.Count.EqualTo(6), "16 requests in batches of 8, 3 epochs");
            var first = Run("torch", "MALMEN", stopped, data, 8, 3, 4);
            Assert.That(first, Has.Count.EqualTo(4));
            var e = Assert.Throws<IOException>(() => Run("torch", "MALMEN", stopped, data, 8, 3, null))!;
            Assert.That(e.Message, Does.Contain("--resume"), "a folder with a checkpoint is not overwritten without --resume");
            var resumed = Run("torch", "MALMEN", stopped, data, 8, 3, null, resume: true);
            Assert.That(resumed.Select(s => s.Step), Is.EqualTo(new[] { 1, 2, 3, 4, 5, 6 }), "the log carries the steps before the stop");
            for (int i = 0; i < 6; i++)
                Assert.That(resumed[i].Loss, Is.EqualTo(all[i].Loss).Within(1e-6 * Math.Abs(all[i].Loss)),
                    $"step {i + 1}: the resumed run's meta-loss (network, Adam moments and batch order restored)");
            var bad = Assert.Throws<InvalidDataException>(() => Run("torch", "MALMEN", stopped, Train(24), 8, 3, null, resume: true))!;
            Assert.That(bad.Message, Does.Contain("16 requests").And.Contain("24"), "resuming on other data is refused");
        }
        finally
        {
            Directory.Delete(straight, true);
            Directory.Delete(stopped, true);
        }
    }

    [TestCase("MALMEN")]
    [TestCase("MEND")]
    [TestCase("EMSEdit")]
    public void Meta_training_on_one_batch_lowers_its_meta_loss(string editorName)
    {
        var data = Train(8);
        string dir = TempDir(editorName + "-fit");
        try
        {
            var steps = Run("torch", editorName, dir, data, 8, 12, 12);   // EMSEdit: two rounds (meta-steps) per batch
            Assert.That(steps, Has.Count.EqualTo(12));
            TestContext.Out.WriteLine($"{editorName}: meta-loss {string.Join(", ", steps.Select(s => s.Loss.ToString("F3")))}");
            Assert.That(steps.All(s => double.IsFinite(s.Loss)), "every meta-loss is finite");
            Assert.That(steps[^1].Loss, Is.LessThan(0.8 * steps[0].Loss), "twelve steps on the same 8 requests lower the meta-loss by a fifth");
            Assert.That(File.Exists(Path.Combine(dir, "hypernet.safetensors")) && File.Exists(Path.Combine(dir, "log.jsonl")), "the run's files");
            // The trained network is what the editor loads: an editor pointed at it edits.
            using var s = EditorFixtures.Open("torch");
            using var editor = EditorRegistry.Create(editorName, s.Ctx, Family, null, Small(dir, 8));
            Assert.That(((EditRuntime.Editing.Plugins.ShiftEditor)editor).Trained, Is.True);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void The_norm_regulariser_needs_no_locality_prompt_and_is_the_squared_drift_of_the_edited_weights()
    {
        // Requests without locality prompts: EMSEdit (norm) trains on them, MALMEN (KL) refuses them naming the record.
        var data = Train(8).Select(r => r with { Locality = [] }).ToList();
        string dir = TempDir("norm"), kl = TempDir("kl");
        try
        {
            var steps = Run("torch", "EMSEdit", dir, data, 8, 1, 2, msbpTraining: "reverted");
            Assert.That(steps, Has.Count.EqualTo(2), "one batch of 8, two rounds");
            Assert.That(steps.Select(s => s.Regulariser), Is.All.EqualTo("norm ||W-W0||^2"));
            Assert.That(steps[0].Stages!.Keys, Does.Contain("norm loss").And.Not.Contain("locality loss"), "no locality pass is run");
            foreach (var s in steps)
            {
                Assert.That(s.RegulariserLoss, Is.GreaterThan(0).And.LessThan(double.PositiveInfinity), "the drift of a nonzero shift");
                Assert.That(s.Loss, Is.EqualTo(s.GeneralisationLoss + 0.001 * s.RegulariserLoss).Within(1e-9 * s.Loss), "meta-loss = CE + reg_coef·Σ‖W − W₀‖² (reg_coef 0.001, hparams/editrt-tiny.json)");
            }
            var e = Assert.Throws<ArgumentException>(() => Run("torch", "MALMEN", kl, data, 8, 1, 1))!;
            Assert.That(e.Message, Does.Contain("locality prompt"));
        }
        finally
        {
            Directory.Delete(dir, true);
            Directory.Delete(kl, true);
        }
    }

    [Test]
    public void Chained_rounds_take_one_meta_step_per_batch_and_train_on_the_edited_trajectory()
    {
        var data = Train(16);
        string rev = TempDir("reverted"), ch = TempDir("chained");
        try
        {
            var reverted = Run("torch", "EMSEdit", rev, data, 8, 1, null, msbpTraining: "reverted");
            var chained = Run("torch", "EMSEdit", ch, data, 8, 1, null, msbpTraining: "chained");
            Assert.That(reverted, Has.Count.EqualTo(4), "two batches of 8, two rounds each a meta-step");
            Assert.That(chained, Has.Count.EqualTo(2), "two batches of 8, one meta-step each");
            // Both first steps start from the same network on the same batch; the chained one takes its loss after the
            // second round (the cache timed twice), so its loss and drift differ from the one-round step.
            Assert.That(chained[0].Stages!["cache"], Is.GreaterThan(0));
            Assert.That(chained[0].RegulariserLoss, Is.Not.EqualTo(reverted[0].RegulariserLoss));
            Assert.That(chained[0].GeneralisationLoss, Is.LessThan(reverted[0].GeneralisationLoss), "two rounds fit the rephrases better than one");
        }
        finally
        {
            Directory.Delete(rev, true);
            Directory.Delete(ch, true);
        }
    }

    [Test]
    public void A_sequence_keeps_each_batch_s_edit_for_the_next_and_training_leaves_the_model_as_it_found_it()
    {
        var data = Train(24);
        string one = TempDir("seq1"), three = TempDir("seq3"), resumed = TempDir("seq3-resumed");
        try
        {
            float[]? before = null, afterTraining = null;
            var probe = EditorFixtures.Requests(1)[0];
            var alone = Run("torch", "EMSEdit", one, data, 8, 1, null, numSeq: 1);
            var seq = Run("torch", "EMSEdit", three, data, 8, 1, null, numSeq: 3, after: ctx =>
                afterTraining = ctx.Model.NextTokenLogits(ctx.Encode(probe.Prompt, probe.TargetNew).Prompt));
            using (var s = EditorFixtures.Open("torch")) before = s.Model.NextTokenLogits(s.Ctx.Encode(probe.Prompt, probe.TargetNew).Prompt);
            Assert.That(seq, Has.Count.EqualTo(3));
            Assert.That(seq[0].Loss, Is.EqualTo(alone[0].Loss), "the first batch of a sequence starts at W₀ as a lone batch does");
            Assert.That(seq[1].RegulariserLoss, Is.GreaterThan(alone[1].RegulariserLoss), "batch 2's drift includes batch 1's kept edit");
            Assert.That(afterTraining, Is.EqualTo(before), "meta-training leaves the model's weights at W₀");
            // Resumed mid-sequence (after step 2 of 3): the kept edits come back from the checkpoint.
            var first = Run("torch", "EMSEdit", resumed, data, 8, 1, 2, numSeq: 3);
            var rest = Run("torch", "EMSEdit", resumed, data, 8, 1, null, resume: true, numSeq: 3);
            Assert.That(rest[2].Loss, Is.EqualTo(seq[2].Loss).Within(1e-6 * seq[2].Loss), "step 3 after a resume equals the unbroken sequence's");
        }
        finally
        {
            foreach (var d in new[] { one, three, resumed }) Directory.Delete(d, true);
        }
    }

    [Test]
    public void Per_round_networks_have_rank_over_round_plus_one_all_train_and_a_file_of_the_other_kind_is_refused()
    {
        var data = Train(16);
        string dir = TempDir("per-round");
        try
        {
            System.Text.Json.Nodes.JsonObject? diag = null;
            var steps = Run("torch", "EMSEdit", dir, data, 8, 1, null, msbpTraining: "chained", numSeq: 2, rounds: "per_round",
                edit: e => { e.Edit(EditorFixtures.Requests(4)); diag = ((IEditorDiagnostics)e).Diagnostics(); });
            Assert.That(steps, Has.Count.EqualTo(2));
            string file = Path.Combine(dir, "hypernet.safetensors");
            using (var f = SafeTensorsFile.Open(file))
            {
                var round0 = f.Names.Where(n => n.StartsWith("net.", StringComparison.Ordinal) && !n.StartsWith("net.round", StringComparison.Ordinal) && n.EndsWith(".block0.A", StringComparison.Ordinal)).ToList();
                var round1 = f.Names.Where(n => n.StartsWith("net.round1.", StringComparison.Ordinal) && n.EndsWith(".block0.A", StringComparison.Ordinal)).ToList();
                Assert.That(round0, Has.Count.EqualTo(1), "one weight shape: one round-0 net");
                Assert.That(round1, Has.Count.EqualTo(1), "and one round-1 net");
                Assert.That(f.Read(round0[0]).Shape[1], Is.EqualTo(32), "round 0: the full rank");
                Assert.That(f.Read(round1[0]).Shape[1], Is.EqualTo(16), "round 1: rank / 2");
                Assert.That(f.Names.Any(n => n.StartsWith("net.round2.", StringComparison.Ordinal)), Is.False, "two rounds, two nets");
                // B starts at 0 in every block: a non-zero B is a net that took gradient steps.
                foreach (var prefix in new[] { round0[0], round1[0] })
                    Assert.That(f.Read(prefix[..^1] + "B").Data.Any(v => v != 0), $"{prefix[..^8]} was trained");
                Assert.That(f.Metadata["round_networks"], Is.EqualTo("per_round:2"));
            }
            var coefficients = diag!["coefficients"]!.AsArray();
            Assert.That(coefficients.Select(c => (int)c!["round"]!).Distinct(), Is.EquivalentTo(new[] { 0, 1 }), "each round edits with its own coefficients");

            // The same file under one shared net (or another number of rounds) is refused, naming both.
            using var s = EditorFixtures.Open("torch");
            var shared = Small(dir, 8, "chained", 1, "shared");
            var e1 = Assert.Throws<InvalidDataException>(() => EditorRegistry.Create("EMSEdit", s.Ctx, Family, null, shared).Dispose());
            Assert.That(e1!.Message, Does.Contain("one network per round for 2 rounds").And.Contain("one network shared by all rounds"));
            var three = Small(dir, 8, "chained", 1, "per_round");
            three["iters"] = "3";
            var e2 = Assert.Throws<InvalidDataException>(() => EditorRegistry.Create("EMSEdit", s.Ctx, Family, null, three).Dispose());
            Assert.That(e2!.Message, Does.Contain("for 3 rounds"));
            // Per-round nets are trained on the rounds they edit: reverted rounds cannot train them.
            var reverted = Small(Path.Combine(dir, "none"), 8, "reverted", 1, "per_round");
            var e3 = Assert.Throws<HyperParameterException>(() => EditorRegistry.Create("EMSEdit", s.Ctx, Family, null, reverted).Dispose());
            Assert.That(e3!.Message, Does.Contain("round_networks").And.Contain("chained"));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
