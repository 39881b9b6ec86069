using System.Diagnostics;
using EditRuntime.TextTests;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>The editrt command line as a user runs it (the built dll, in a child process).</summary>
public sealed class CliTests
{
    private static (int Code, string Out, string Err) Editrt(string args, Dictionary<string, string>? env = null) => EditrtProcess.Run(args, env);

    [Test]
    public void Devices_lists_each_device_with_its_limits()
    {
        var (code, output, err) = Editrt("devices");
        Assert.That(code, Is.Zero, err);
        Assert.That(output, Does.Contain("validation on"));
        foreach (var row in new[] { "type", "driver", "device memory", "subgroup size", "shared memory", "max workgroups", "storage-buffer range", "fp16 / fp64" })
            Assert.That(output, Does.Contain(row));
        Assert.That(output, Does.Contain("] * "), "one device is marked as selected");
        if (Environment.GetEnvironmentVariable("EDITRT_EXPECT_DEVICE") is string expected)
            Assert.That(output, Does.Contain(expected));
    }

    [Test]
    public void Bench_matmul_prints_gflops_and_checks()
    {
        var (code, output, err) = Editrt("bench matmul --sizes 67x33x21,64 --repeat 2 --check");
        Assert.That(code, Is.Zero, err);
        Assert.That(output, Does.Contain("GFLOP/s GPU").And.Contain("67x33x21").And.Contain("64x64x64"));
        Assert.That(output, Does.Contain("check: every result within 1e-05 of float64"));
        Assert.That(err, Is.Empty, "no validation messages, no errors");
    }


    [Test]
    public void Bench_solve_times_the_least_squares_stages_on_both_backends_and_checks_the_residual()
    {
        var (code, output, err) = Editrt("bench solve --shapes 67x13,96x32 --rows 150 --repeat 1");
        Assert.That(code, Is.Zero, err);
        foreach (var b in new[] { "torch", "vulkan" })
            foreach (var s in new[] { "67 × 13", "96 × 32" })
                Assert.That(output, Does.Match($@"\| {b} \| {s} \|( [0-9.]+ \|){{9}} [0-9.]+e-?[0-9]+ \|"), $"{b} {s}: times, GFLOP/s and residual");
        var (bad, _, badErr) = Editrt("bench solve --shapes 67by13");
        Assert.That(bad, Is.Not.Zero);
        Assert.That(badErr, Does.Contain("--shapes").And.Contain("67by13"));
    }

    [Test]
    public void Bench_edit_reports_time_stages_and_memory_against_the_cache()
    {
        var dir = Path.Combine(Path.GetTempPath(), "editrt-cli-bench-edit-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (code, output, err) = Editrt($"bench edit --editor MALMEN --model {Path.Combine(TextTests.TokFixtures.RepoRoot, "models", "editrt-tiny")} --sizes 4,16 --backend both --out {dir}");
            Assert.That(code, Is.Zero, err);
            Assert.That(output, Does.Match(@"\| vulkan \| 16 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|"), "vulkan: device time, stages, cache and peak");
            Assert.That(output, Does.Match(@"\| torch \| 16 \| [0-9.]+ \| [0-9.]+ \| — \|"), "torch: wall time, no device timestamps");
            var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "bench.json")))!;
            var rows = json["rows"]!.AsArray();
            Assert.That(rows, Has.Count.EqualTo(4));
            foreach (var r in rows)
            {
                long cache = (long)r!["cache_bytes"]!;
                Assert.That(cache, Is.EqualTo((long)r["cached_rows"]! * 2 * 4 * (768 + 192)), "two c_proj sites: rows × (768 + 192) floats each");
                if ((string)r["backend"]! == "vulkan")
                    Assert.That((long)r["peak_device_bytes"]! - (long)r["device_bytes_before"]!, Is.GreaterThanOrEqualTo(cache), "the peak holds at least the cache");
            }
            Assert.That(File.Exists(Path.Combine(dir, "memory.svg")) && File.Exists(Path.Combine(dir, "time.svg")) && File.Exists(Path.Combine(dir, "bench.md")));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }
    [Test]
    public void Eval_prints_metrics_profile_and_writes_the_report()
    {
        var dir = Path.Combine(Path.GetTempPath(), "editrt-cli-eval-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (wc, _, we) = Editrt($"world --out {dir}/world");
            Assert.That(wc, Is.Zero, we);
            var data = $"{dir}/world/counterfact_eval.json";
            var (code, output, err) = Editrt($"eval --editor MELO --model {TokFixtures.RepoRoot}/models/editrt-tiny --data {data} --protocol sequential --edits 2 --backend vulkan --set num_iter=3 --profile --out {dir}/report");
            Assert.That(code, Is.Zero, err);
            Assert.That(output, Does.Match(@"ES \d\.\d{3}  GS \d\.\d{3}  LS \d\.\d{3}"));
            Assert.That(output, Does.Match(@"GS on the \d+ rephrase prompts the unedited model answers with target_true: \d\.\d{3}"));
            Assert.That(output, Does.Contain("profile:").And.Contain("core/matmul").And.Contain("µs each"));
            Assert.That(err, Does.Contain("edit    2/2"), "progress on stderr");
            foreach (var f in new[] { "report.json", "report.md", "report.svg" }) Assert.That(File.Exists($"{dir}/report/{f}"), f);
            Assert.That(File.ReadAllText($"{dir}/report/report.json"), Does.Contain("\"GS_understood\""));
            // --profile times Vulkan kernels; on Torch it is refused before any work.
            var (tc, _, terr) = Editrt($"eval --editor MELO --model {TokFixtures.RepoRoot}/models/editrt-tiny --data {data} --edits 1 --backend torch --profile");
            Assert.That(tc, Is.EqualTo(1));
            Assert.That(terr, Does.Contain("--profile times Vulkan kernels"));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Test]
    public void Meta_train_runs_a_hyper_network_editor_and_refuses_one_without_a_network_before_touching_the_folder()
    {
        var dir = Path.Combine(Path.GetTempPath(), "editrt-cli-metatrain-" + Guid.NewGuid().ToString("N"));
        var model = Path.Combine(TokFixtures.RepoRoot, "models", "editrt-tiny");
        try
        {
            var (c1, _, e1) = Editrt($"meta-train --editor FT-L --model {model} --data builtin:zsre_meta_train --out {dir}/ftl --backend torch");
            Assert.That(c1, Is.EqualTo(1));
            Assert.That(e1, Does.Contain("nothing to meta-train").And.Contain("EMSEdit, MALMEN, MEND"));
            Assert.That(Directory.Exists($"{dir}/ftl"), Is.False, "no folder claimed for a run that cannot start");
            var (code, output, err) = Editrt($"meta-train --editor EMSEdit --model {model} --data builtin:zsre_meta_train --out {dir}/ems " +
                "--backend torch --steps 1 --set rank=32 --set n_edits=4 --set sub_batch=4 --set chunk=16");
            Assert.That(code, Is.Zero, err);
            Assert.That(output, Does.Contain("step 1/1").And.Contain("norm ||W-W0||^2").And.Contain("cache").And.Contain("hyper-network update"));
            foreach (var f in new[] { "hypernet.safetensors", "checkpoint.safetensors", "log.jsonl", "loss.svg", "train_config.json" })
                Assert.That(File.Exists($"{dir}/ems/{f}"), f);
            Assert.That(File.ReadAllText($"{dir}/ems/log.jsonl"), Does.Contain("\"reg_norm\"").And.Contain("\"stages\""));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Test]
    public void Compare_tables_and_plots_several_reports()
    {
        var dir = Path.Combine(Path.GetTempPath(), "editrt-cli-compare-" + Guid.NewGuid().ToString("N"));
        try
        {
            static string Report(string editor, string protocol, int edits, double[] gs, int iters = 1, long? peak = null)
            {
                var curve = new System.Text.Json.Nodes.JsonArray();
                for (int i = 0; i < gs.Length; i++)
                    curve.Add(new System.Text.Json.Nodes.JsonObject { ["edits"] = (i + 1) * edits / gs.Length, ["metrics"] = new System.Text.Json.Nodes.JsonObject { ["ES"] = 1.0, ["GS"] = gs[i], ["LS"] = 0.99 } });
                return new System.Text.Json.Nodes.JsonObject
                {
                    ["editor"] = editor, ["protocol"] = protocol, ["backend"] = "torch", ["edits"] = edits, ["batch_size"] = 1, ["trainable_parameters"] = 42,
                    ["metrics"] = new System.Text.Json.Nodes.JsonObject { ["ES"] = 1.0, ["GS"] = gs[^1], ["LS"] = 0.99, ["CF_success"] = 1.0, ["GS_understood"] = 0.9, ["requests"] = edits },
                    ["curve"] = curve,
                    ["timings"] = new System.Text.Json.Nodes.JsonObject { ["wall_seconds_per_edit"] = 0.5, ["device_seconds_per_edit"] = null, ["peak_edit_device_bytes"] = peak, ["peak_device_bytes"] = peak * 2 },
                    ["hparams"] = new System.Text.Json.Nodes.JsonObject { ["iters"] = iters },
                }.ToJsonString();
            }
            Directory.CreateDirectory($"{dir}/a"); Directory.CreateDirectory($"{dir}/b");
            File.WriteAllText($"{dir}/a/report.json", Report("ED-A", "sequential", 40, [0.5, 0.25, 0.125, 0.75]));
            File.WriteAllText($"{dir}/b/report.json", Report("ED-B", "batch", 40, [0.625], peak: 3 * 1048576 / 2));
            Directory.CreateDirectory($"{dir}/c");
            File.WriteAllText($"{dir}/c/report.json", Report("ED-B", "batch", 40, [0.5], iters: 2));
            var (code, output, err) = Editrt($"compare {dir}/a {dir}/b/report.json {dir}/c --out {dir}/out --metrics GS,LS");
            Assert.That(code, Is.Zero, err);
            Assert.That(output, Does.Contain("| ED-B (2 rounds) | batch | torch | 40 | 1.000 | 0.500 |"), "a multi-step run is its own method (MALMEN² beside MALMEN)");
            Assert.That(output, Does.Contain("| ED-A | sequential | torch | 40 | 1.000 | 0.750 | 0.900 | 0.990 | 1.000 | 500 | – | – / – | 42 |"));
            Assert.That(output, Does.Contain("| ED-B | batch | torch | 40 | 1.000 | 0.625 | 0.900 | 0.990 | 1.000 | 500 | – | 1.5 / 3.0 | 42 |"), "peak device memory while editing / in the whole run");
            var svg = File.ReadAllText($"{dir}/out/compare-GS.svg");
            Assert.That(svg, Does.Contain("ED-A sequential torch").And.Contain("ED-B batch torch").And.Contain("ED-B (2 rounds) batch torch"));
            Assert.That(System.Text.RegularExpressions.Regex.Matches(svg, "<circle").Count, Is.EqualTo(6), "four curve points and two batch points");
            Assert.That(svg, Does.Contain("ED-A sequential torch: 30, 0.125"));
            Assert.That(File.Exists($"{dir}/out/compare-LS.svg") && File.Exists($"{dir}/out/compare.md") && !File.Exists($"{dir}/out/compare-ES.svg"), Is.True);
            var (c2, _, e2) = Editrt($"compare {dir}/missing");
            Assert.That(c2, Is.EqualTo(1));
            Assert.That(e2, Does.Contain("missing does not exist"));
            var (c3, _, e3) = Editrt($"compare {dir}/a --metrics GS,XS");
            Assert.That(c3, Is.EqualTo(1));
            Assert.That(e3, Does.Contain("\"XS\" is not one of"));
            File.WriteAllText($"{dir}/a/report.json", "{\"editor\": \"x\"}");
            var (c4, _, e4) = Editrt($"compare {dir}/a");
            Assert.That(c4, Is.EqualTo(1));
            Assert.That(e4, Does.Contain("has no \"protocol\""));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Test]
    public void Unknown_device_is_a_clear_error()
    {
        var (code, _, err) = Editrt("devices --device no-such-gpu");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(err, Does.Contain("editrt: error: No Vulkan device name contains \"no-such-gpu\""));
    }

    [Test]
    public void Bad_size_is_a_clear_error()
    {
        var (code, _, err) = Editrt("bench matmul --sizes 12x0x3");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(err, Does.Contain("--sizes: \"12x0x3\""));
    }

    [Test]
    public void Help_lists_the_commands()
    {
        var (code, output, _) = Editrt("--help");
        Assert.That(code, Is.Zero);
        Assert.That(output, Does.Contain("devices").And.Contain("bench").And.Contain("--device"));
    }
}

/// <summary>Runs the built editrt.dll in a child process, with the validation layer on.</summary>
internal static class EditrtProcess
{
    public static (int Code, string Out, string Err) Run(string args, Dictionary<string, string>? env = null)
    {
        var dll = Path.Combine(TestContext.CurrentContext.TestDirectory, "editrt.dll");
        Assert.That(File.Exists(dll), Is.True, dll);
        var psi = new ProcessStartInfo("dotnet", $"\"{dll}\" {args}") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.Environment["EDITRT_VALIDATION"] = "1";
        foreach (var kv in env ?? new()) psi.Environment[kv.Key] = kv.Value;
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEnd();
        p.WaitForExit();
        TestContext.Out.WriteLine(o.Result + e);
        return (p.ExitCode, o.Result, e);
    }
}
