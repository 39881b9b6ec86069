using EditRuntime.Editing;
using EditRuntime.IO;
using EditRuntime.Models;
using EditRuntime.TextTests;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>
/// Issue 19's items outside the Lua sandbox: each test failed on the tree at 2939c82. Bad input gets a clear error
/// naming the file / flag / field before any work, non-finite values never pass with exit 0, output folders are claimed
/// before a run, killed writers leave nothing behind.
/// </summary>
public sealed class BadInputTests
{
    private static string Tiny => Path.Combine(TokFixtures.RepoRoot, "models", "editrt-tiny");
    private static (int Code, string Out, string Err) Editrt(string args, Dictionary<string, string>? env = null) => EditrtProcess.Run(args, env);

    private string _dir = "";

    [SetUp]
    public void MakeDir() => _dir = Directory.CreateTempSubdirectory("editrt-bad-").FullName;

    [TearDown]
    public void RemoveDir() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    /// <summary>A copy of the built-in model with one weight set to <paramref name="value"/>.</summary>
    private string ModelWith(float value, string tensor = "h.1.mlp.c_fc.weight", int element = 5)
    {
        var dir = Path.Combine(_dir, "model");
        Directory.CreateDirectory(dir);
        foreach (var f in new[] { "vocab.json", "merges.txt", "editrt.json" }) File.Copy(Path.Combine(Tiny, f), Path.Combine(dir, f));
        var (config, w) = Gpt2Checkpoint.Load(Tiny);
        w[tensor].Data[element] = value;
        Gpt2Checkpoint.Save(dir, config, w);
        return dir;
    }

    [Test]
    public void A_NaN_or_infinite_weight_is_refused_at_load_naming_the_tensor_and_element_unless_allowed()
    {
        foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
        {
            var dir = ModelWith(bad);
            var e = Assert.Throws<Gpt2CheckpointException>(() => ModelDirectory.Load(dir))!;
            Assert.That(e.Message, Does.Contain("h.1.mlp.c_fc.weight").And.Contain("element 5 (index [0, 5])").And.Contain("--allow-nonfinite-weights"), bad.ToString());
            Directory.Delete(dir, true);
        }
        var nan = ModelWith(float.NaN);
        var (code, _, err) = Editrt($"generate --model {nan} --prompt \"Paris is\" --backend torch");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(err, Does.Contain("h.1.mlp.c_fc.weight"));
        // Allowed: it loads, and the first non-finite logits fail the command naming the step (it printed "!!!!" with exit 0).
        var (c2, o2, e2) = Editrt($"generate --model {nan} --prompt \"Paris is\" --backend torch --allow-nonfinite-weights");
        Assert.That(c2, Is.EqualTo(1), o2);
        Assert.That(e2, Does.Contain("generate: the logits of new token 1").And.Contain("not finite"));
        var (c3, _, e3) = Editrt($"logprob --model {nan} --prompt \"Paris is\" --target \" big\" --backend torch --allow-nonfinite-weights");
        Assert.That(c3, Is.EqualTo(1));
        Assert.That(e3, Does.Contain("log-probability of target token 0"));
    }

    [Test]
    public void First_non_finite_finds_every_position()
    {
        for (int n = 0; n < 70; n++)
        {
            var data = Enumerable.Range(0, n).Select(i => (float)i).ToArray();
            Assert.That(Gpt2Checkpoint.FirstNonFinite(data), Is.Null);
            for (int at = 0; at < n; at++)
            {
                var copy = (float[])data.Clone();
                copy[at] = at % 2 == 0 ? float.NaN : float.NegativeInfinity;
                if (at + 1 < n) copy[n - 1] = float.PositiveInfinity;
                Assert.That(Gpt2Checkpoint.FirstNonFinite(copy), Is.EqualTo(at), $"n={n} at={at}");
            }
        }
    }

    [Test]
    public void Config_json_duplicate_keys_and_an_epsilon_infinite_in_float32_are_refused()
    {
        var good = File.ReadAllText(Path.Combine(Tiny, "config.json"));
        var dup = good.Replace("\"n_layer\": 4,", "\"n_layer\": 4,\n  \"n_layer\": 2,");
        Assert.That(dup, Is.Not.EqualTo(good));
        var e = Assert.Throws<Gpt2ConfigException>(() => Gpt2Config.Parse(dup, "c.json"))!;
        Assert.That(e.Message, Does.Contain("n_layer").And.Contain("appears twice"));
        foreach (var eps in new[] { "1e300", "1e-50", "0" })
        {
            var bad = good.Replace("\"layer_norm_epsilon\": 1E-05", $"\"layer_norm_epsilon\": {eps}");
            Assert.That(bad, Is.Not.EqualTo(good));
            Assert.That(() => Gpt2Config.Parse(bad, "c.json"), Throws.InstanceOf<Gpt2ConfigException>().With.Message.Contains("layer_norm_epsilon"), eps);
        }
    }

    [Test]
    public void Generate_refuses_a_negative_or_unreachable_token_count_before_any_work()
    {
        var (c1, _, e1) = Editrt($"generate --model {Tiny} --prompt \"Paris is\" --max-tokens -5 --backend torch");
        Assert.That(c1, Is.EqualTo(1));
        Assert.That(e1, Does.Contain("--max-tokens: -5 is negative"));
        var (c2, _, e2) = Editrt($"generate --model {Tiny} --prompt \"Paris is\" --max-tokens 100 --backend torch");
        Assert.That(c2, Is.EqualTo(1));
        Assert.That(e2, Does.Match(@"--max-tokens: 100 tokens after a prompt of \d+ exceed the model's 64 positions; at most \d+ can follow"));
    }

    [Test]
    public void Eval_checks_its_flags_and_output_folder_before_loading_anything()
    {
        // A model folder that does not exist: a check that ran after loading would report the model instead.
        string noModel = Path.Combine(_dir, "no-model");
        var (c1, _, e1) = Editrt($"eval --editor FT-L --model {noModel} --data builtin:counterfact_eval --edits 0");
        Assert.That((c1, e1.Trim()), Is.EqualTo((1, "editrt: error: --edits: 0; give a positive number of requests.")));
        var file = Path.Combine(_dir, "a-file");
        File.WriteAllText(file, "x");
        var (c2, _, e2) = Editrt($"eval --editor FT-L --model {noModel} --data builtin:counterfact_eval --edits 1 --out {file}");
        Assert.That(c2, Is.EqualTo(1));
        Assert.That(e2, Does.Contain($"--out {file}: is a file, not a directory"));
        var (c3, _, e3) = Editrt($"eval --editor FT-L --model {noModel} --data {_dir} --edits 1");
        Assert.That(c3, Is.EqualTo(1));
        Assert.That(e3, Does.Contain($"--data {_dir}: is a directory"));
        var (c4, _, e4) = Editrt($"eval --editor FT-L --model {noModel} --data builtin:nope --edits 1");
        Assert.That(c4, Is.EqualTo(1));
        Assert.That(e4, Does.Contain("no built-in dataset \"nope\"").And.Contain("builtin:counterfact_eval"));
    }

    [Test]
    public void A_builtin_dataset_name_resolves_to_the_world_split_of_the_builtin_model()
    {
        var path = BuiltinModels.ResolveData("builtin:zsre_eval");
        Assert.That(path, Is.EqualTo(Path.Combine(Tiny, "data", "zsre_eval.json")));
        Assert.That(File.Exists(path) && File.Exists(Path.Combine(Tiny, "data", "world.json")), Is.True);
        Assert.That(EditDataset.Load(path), Has.Count.GreaterThan(1000));
        Assert.That(BuiltinModels.DataNames, Is.EquivalentTo(new[] { "zsre_train", "zsre_eval", "counterfact_train", "counterfact_eval", "flat_train", "flat_eval", "zsre_meta_train" }));
    }

    [Test]
    public void An_output_folder_is_claimed_by_one_run_at_a_time_and_freed_when_the_run_ends()
    {
        var outDir = Path.Combine(_dir, "out");
        using (OutputDirectory.Claim(outDir, "--out"))
        {
            // The lock is the operating system's (flock): another process is refused the same way.
            var e = Assert.Throws<IOException>(() => OutputDirectory.Claim(outDir, "--out"))!;
            Assert.That(e.Message, Does.Contain("another run is writing to this folder"));
            var (code, _, err) = Editrt($"compare {TokFixtures.RepoRoot}/results/melo/vulkan-100 --out {outDir}");
            Assert.That(code, Is.EqualTo(1));
            Assert.That(err, Does.Contain("another run is writing to this folder"));
        }
        Assert.That(File.Exists(Path.Combine(outDir, OutputDirectory.LockFile)), Is.False);
        using (OutputDirectory.Claim(outDir, "--out")) { }
        Assert.That(() => OutputDirectory.Claim("", "--out"), Throws.ArgumentException.With.Message.Contains("--out: empty"));
    }

    [Test]
    public void Compare_writes_nothing_when_one_report_cannot_be_plotted()
    {
        var good = Path.Combine(TokFixtures.RepoRoot, "results", "melo", "vulkan-100");
        var bad = Path.Combine(_dir, "bad");
        Directory.CreateDirectory(bad);
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(good, "report.json")))!.AsObject();
        json["curve"]![0]!["edits"] = "ten";
        File.WriteAllText(Path.Combine(bad, "report.json"), json.ToJsonString());
        var outDir = Path.Combine(_dir, "cmp");
        var (code, _, err) = Editrt($"compare {good} {bad} --out {outDir}");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(err, Does.Contain("its curve of ES is malformed"));
        Assert.That(Directory.EnumerateFiles(outDir).Select(Path.GetFileName), Is.Empty, "no compare.md without its plots");
    }

    [Test]
    public void Temporary_files_of_a_killed_writer_are_removed_by_the_next_write_and_a_live_writer_s_are_kept()
    {
        var target = Path.Combine(_dir, "state.safetensors");
        // A PID above the kernel's pid_max (4194304) can belong to no process.
        var dead = Path.Combine(_dir, $".state.safetensors.4194399.{Guid.NewGuid():N}{AtomicFile.TempSuffix}");
        var live = Path.Combine(_dir, $".state.safetensors.1.{Guid.NewGuid():N}{AtomicFile.TempSuffix}"); // PID 1 is always alive
        var other = Path.Combine(_dir, $".other.bin.4194399.{Guid.NewGuid():N}{AtomicFile.TempSuffix}");
        foreach (var f in new[] { dead, live, other }) File.WriteAllBytes(f, new byte[1000]);
        AtomicFile.WriteAllText(target, "new");
        Assert.That(File.ReadAllText(target), Is.EqualTo("new"));
        Assert.That((File.Exists(dead), File.Exists(live), File.Exists(other)), Is.EqualTo((false, true, true)));
    }

    [Test]
    public void Dataset_text_that_is_not_UTF8_names_the_file_record_and_field()
    {
        var bytes = "[{\"prompt\": \"a\", \"target_new\": \"b\", \"subject\": \"a\"}, {\"prompt\": \"x"u8.ToArray()
            .Concat(new byte[] { 0xC3, 0x28 }).Concat("\", \"target_new\": \"y\", \"subject\": \"x\"}]"u8.ToArray()).ToArray();
        var e = Assert.Throws<EditDatasetException>(() => EditDataset.Parse(bytes, "d.json"))!;
        Assert.That(e.Message, Does.Contain("d.json").And.Contain("1").And.Contain("prompt").And.Contain("not valid UTF-8"));
    }

    [Test]
    public void A_prompt_longer_than_the_model_is_refused_before_any_edit_naming_the_record()
    {
        var md = ModelDirectory.Load(Tiny);
        using var be = new EditRuntime.Torch.TorchBackend();
        using var model = new Gpt2Model(be, md.Config, md.Weights);
        var ctx = new EditorContext(model, md);
        var reqs = EditDataset.Load(BuiltinModels.ResolveData("builtin:counterfact_eval")).Take(3).ToList();
        var longOne = reqs[2] with { RephrasePrompts = [.. reqs[2].RephrasePrompts, string.Join(" ", Enumerable.Repeat("the city of", 40))] };
        Assert.DoesNotThrow(() => EditProtocols.CheckFits(ctx, reqs));
        var e = Assert.Throws<ArgumentException>(() => EditProtocols.CheckFits(ctx, [reqs[0], longOne]))!;
        Assert.That(e.Message, Does.StartWith("counterfact_eval.json record 2: the rephrase prompt").And.Contain("over the model's 64 positions"));
    }

    [Test]
    public void An_editor_whose_state_would_not_fit_the_backend_s_memory_is_refused_naming_its_sizes()
    {
        var md = ModelDirectory.Load(Tiny);
        using var be = new EditRuntime.Torch.TorchBackend();
        using var model = new Gpt2Model(be, md.Config, md.Weights);
        var ctx = new EditorContext(model, md);
        Assert.That(ctx.DeviceMemoryLimit, Is.GreaterThan(0), "the default limit is what the backend can hold");
        // ≈ 15 GB of LoRA banks: killed by the out-of-memory killer after allocating, before the limit.
        var e = Assert.Throws<HyperParameterException>(() => EditorRegistry.Create("MELO", ctx with { DeviceMemoryLimit = 1L << 30 }, "editrt-tiny", null,
            new Dictionary<string, string> { ["num_blocks"] = "100000", ["rank_per_block"] = "100" }))!;
        Assert.That(e.Message, Does.Contain("LoRA banks").And.Contain("num_blocks").And.Contain("rank_per_block").And.Contain("over the limit of 1024.0 MiB"));
    }

    [Test]
    public void Torch_thread_counts_past_4_per_processor_are_refused_not_hung_on()
    {
        Assert.That(() => EditRuntime.Torch.TorchBackend.ResolveThreads("100000", null, 2), Throws.ArgumentException.With.Message.Contains("more than 8 threads"));
        Assert.That(EditRuntime.Torch.TorchBackend.ResolveThreads("8", null, 2).Threads, Is.EqualTo(8));
        Assert.That(() => EditRuntime.Torch.TorchBackend.ResolveThreads(null, "1000", 16), Throws.ArgumentException.With.Message.Contains("OMP_NUM_THREADS"));
        var (code, _, err) = Editrt($"logprob --model {Tiny} --prompt a --target \" b\" --backend torch", new() { ["EDITRT_TORCH_THREADS"] = "100000" });
        Assert.That(code, Is.EqualTo(1));
        Assert.That(err, Does.Contain("EDITRT_TORCH_THREADS='100000' asks for more than"));
    }
}
