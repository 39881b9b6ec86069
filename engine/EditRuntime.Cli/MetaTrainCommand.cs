using System.Globalization;
using System.Text.Json.Nodes;
using EditRuntime.Backends;
using EditRuntime.Editing;
using EditRuntime.IO;
using EditRuntime.Models;
using EditRuntime.Reports;
using EditRuntime.Vulkan;

namespace EditRuntime.Cli;

/// <summary>`editrt meta-train`: train an editor's hyper-network on a training split, with checkpoints, a log and a loss curve.</summary>
internal static class MetaTrainCommand
{
    public static int Run(DeviceOptions options, string editorName, string modelDir, string data, string outDir, string backendName,
        int epochs, int? steps, int checkpointEvery, bool resume, string? family, string? hparams, IReadOnlyList<string> overrides)
    {
        if (epochs < 1) throw new ArgumentException($"--epochs: {epochs}; give at least 1.");
        if (steps is < 1) throw new ArgumentException($"--steps: {steps}; give a positive number of meta-steps.");
        if (checkpointEvery < 1) throw new ArgumentException($"--checkpoint-every: {checkpointEvery}; give a positive number of steps.");
        // Before anything is loaded (and before "hypernet" is set on an editor that has none).
        if (!typeof(IMetaTrainable).IsAssignableFrom(EditorRegistry.EditorType(editorName)))
            throw new ArgumentException($"--editor {editorName}: it has nothing to meta-train (editors with a hyper-network: {string.Join(", ", EditorRegistry.MetaTrainableNames)}).");
        var ov = HyperParameterOverrides.Parse(overrides);
        if (ov.ContainsKey("hypernet"))
            throw new ArgumentException("--set hypernet=...: meta-training writes its hyper-network into --out (DIR/hypernet.safetensors); point \"hypernet\" there when you edit.");
        using var output = OutputDirectory.Claim(outDir, "--out");
        data = BuiltinModels.ResolveData(data);
        var requests = EditDataset.Load(data);
        var md = ModelFolders.Load(modelDir);
        family ??= md.Family;
        using var be = BackendFactory.Create(backendName, options);
        using var model = ModelFolders.Open(be, md);
        var ctx = new EditorContext(model, md);
        var all = new Dictionary<string, string>(ov) { ["hypernet"] = Path.GetFullPath(Path.Combine(outDir, "hypernet.safetensors")) };
        using var editor = EditorRegistry.Create(editorName, ctx, family, hparams, all);
        var trainable = (IMetaTrainable)editor;
        var d = editor.Describe();
        Console.WriteLine($"{d.Name} meta-training on {modelDir} ({be.Name}: {be.DeviceDescription}); {data}: {requests.Count} requests; {epochs} epoch(s)" + (steps is int s ? $", at most {s} steps" : ""));
        Console.WriteLine($"hyper-parameters ({family}): {d.HyperParameters.ToJsonString()}; hyper-network parameters {d.TrainableParameters}; sites {string.Join(", ", d.LayersTouched)}");
        var history = trainable.MetaTrain(requests, new MetaTrainingOptions
        {
            OutDirectory = outDir,
            Epochs = epochs,
            MaxSteps = steps,
            CheckpointEvery = checkpointEvery,
            Resume = resume,
            Log = Console.WriteLine,
            Provenance = new JsonObject
            {
                ["model"] = modelDir, ["data"] = data, ["family"] = family, ["backend"] = be.Name, ["device"] = be.DeviceDescription,
                ["build"] = BuildInfo.Commit, ["command"] = string.Join(' ', Environment.GetCommandLineArgs().Skip(1)),
            },
        });
        if (history.Count > 0)
        {
            var svg = SvgPlot.Lines($"{d.Name} meta-training ({be.Name})", "meta-step", "loss",
            [
                new PlotSeries("meta-loss", "#1f77b4", history.Select(h => ((double)h.Step, h.Loss)).ToList()),
                new PlotSeries("rephrase CE", "#2ca02c", history.Select(h => ((double)h.Step, h.GeneralisationLoss)).ToList(), Dashed: true),
                new PlotSeries(history[^1].Regulariser, "#d62728", history.Select(h => ((double)h.Step, h.RegulariserLoss)).ToList(), Dashed: true),
            ], 0);
            AtomicFile.WriteAllText(Path.Combine(outDir, "loss.svg"), svg);
            var last = history[^1];
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"done: {history.Count} steps; last meta-loss {last.Loss:F4} (first {history[0].Loss:F4}); {history.Average(h => h.Seconds):F2} s per step; " +
                $"{Path.Combine(outDir, "hypernet.safetensors")}, loss.svg, log.jsonl, train_config.json"));
        }
        return 0;
    }
}
