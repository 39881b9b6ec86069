using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using EditRuntime.Editing;
using EditRuntime.IO;
using EditRuntime.Models;

namespace EditRuntime.Cli;

/// <summary>
/// The hidden <c>editrt save-loop --dir DIR [--first V] [--count N]</c> (for the kill test, tests/EditRuntime.Tests/KillTests.cs): writes an edit
/// state, a report and a model, in that order, again and again, each through the code the real commands use
/// (<see cref="EditStateFile.Save"/>, <see cref="AtomicFile"/>, <see cref="Gpt2Checkpoint.Save"/>), with a version
/// number in every value so that a reader can tell which write a file came from. It prints
/// "begin KIND V" before and "end KIND V" after each write, so the test knows which versions may be on disk when it
/// kills the process. No backend is opened: the loop starts in a fraction of a second, so many kills fit in the test.
/// </summary>
internal static class SaveLoopCommand
{
    /// <summary>The editor name its edit states record (no editor plugin is involved in the format).</summary>
    public const string EditorName = "save-loop";
    public const int StateValues = 1 << 16;   // 256 KiB of float32 (the fsync, not the size, makes most of a write's time)
    public const int ReportValues = 5_000;

    /// <summary>The small GPT-2 it saves (≈ 0.5 MiB); the test builds the same one to compare.</summary>
    public static Gpt2Config ModelConfig => new() { VocabSize = 256, NPositions = 32, NEmbd = 64, NLayer = 2, NHead = 2, BosTokenId = 0, EosTokenId = 0 };
    public const int ModelSeed = 19;

    public const string Name = "save-loop";

    /// <summary>Parses --dir (required), --first (default 1) and --count (default 0: until killed); test-only, so terse.</summary>
    public static int Main(string[] args)
    {
        string? dir = null;
        int first = 1, count = 0;
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--dir": dir = args[i + 1]; break;
                case "--first": first = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
                case "--count": count = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
                default: Console.Error.WriteLine($"editrt {Name}: unknown option {args[i]}"); return 2;
            }
        }
        if (dir is null || args.Length % 2 != 0) { Console.Error.WriteLine($"usage: editrt {Name} --dir DIR [--first V] [--count N]"); return 2; }
        return Cli.Run(() => Run(dir, first, count));
    }

    /// <param name="count">Versions to write (0: until killed).</param>
    public static int Run(string dir, int first, int count)
    {
        Directory.CreateDirectory(dir);
        var cfg = ModelConfig;
        var weights = Gpt2Model.RandomWeights(cfg, ModelSeed);
        var state = new float[StateValues];
        var report = new StringBuilder();
        var stdout = Console.Out;
        for (long v = first; count == 0 || v < (long)first + count; v++)
        {
            int version = checked((int)v);
            stdout.WriteLine($"begin state {version}");
            Array.Fill(state, version);
            EditStateFile.Save(Path.Combine(dir, "state.safetensors"), EditorName,
                new HyperParameters(EditorName, new JsonObject { ["version"] = version }, "save-loop"), [("values", new HostTensor([StateValues], state))],
                new Dictionary<string, JsonNode?> { ["version"] = version });
            stdout.WriteLine($"end state {version}");

            stdout.WriteLine($"begin report {version}");
            report.Clear().Append("{\"version\": ").Append(version).Append(", \"values\": [");
            for (int i = 0; i < ReportValues; i++) report.Append(i == 0 ? "" : ", ").Append(version.ToString(CultureInfo.InvariantCulture));
            report.Append("]}\n");
            AtomicFile.WriteAllText(Path.Combine(dir, "report.json"), report.ToString());
            stdout.WriteLine($"end report {version}");

            stdout.WriteLine($"begin model {version}");
            Array.Fill(weights["wte.weight"].Data, version);
            Gpt2Checkpoint.Save(Path.Combine(dir, "model"), cfg, weights);
            stdout.WriteLine($"end model {version}");
        }
        return 0;
    }
}
