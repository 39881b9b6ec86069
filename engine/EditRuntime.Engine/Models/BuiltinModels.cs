using EditRuntime.Data;

namespace EditRuntime.Models;

/// <summary>
/// Where the built-in model lives (models/ beside the repository's Makefile, found from the running binary or the
/// working directory), and its edit benchmarks by name: <c>builtin:counterfact_eval</c> is
/// models/editrt-tiny/data/counterfact_eval.json, made from the model's world (the seed in its train_config.json)
/// on first use, atomically, so that a fresh clone needs no `editrt world` step before `editrt eval`.
/// </summary>
public static class BuiltinModels
{
    public const string Name = "editrt-tiny";
    public const string DataPrefix = "builtin:";

    public static string? ModelsDirectory { get; } = Find();

    public static string? TinyPath => ModelsDirectory is null ? null : Path.Combine(ModelsDirectory, Name);

    /// <summary>The dataset names <see cref="ResolveData"/> accepts after "builtin:" (the world's benchmark files without .json).</summary>
    public static IReadOnlyList<string> DataNames { get; } =
        SyntheticWorld.FileNames.Where(f => f.EndsWith(".json", StringComparison.Ordinal) && f != SyntheticWorld.WorldFile && f != SyntheticWorld.FactsFile)
            .Select(f => f[..^".json".Length]).ToList();

    /// <summary>
    /// <paramref name="data"/> itself, or for "builtin:NAME" the path of that split of the built-in world (written first if
    /// missing). A path that is a directory is refused here, naming the flag, before anything is loaded.
    /// </summary>
    public static string ResolveData(string data, string flag = "--data")
    {
        if (!data.StartsWith(DataPrefix, StringComparison.Ordinal))
        {
            if (Directory.Exists(data)) throw new ArgumentException($"{flag} {data}: is a directory; give a JSON file of edit requests (or {DataPrefix}NAME: {string.Join(", ", DataNames)}).");
            if (!File.Exists(data)) throw new FileNotFoundException($"{flag} {data}: no such file (or give {DataPrefix}NAME: {string.Join(", ", DataNames)}).", data);
            return data;
        }
        string name = data[DataPrefix.Length..];
        if (!DataNames.Contains(name)) throw new ArgumentException($"{flag} {data}: no built-in dataset \"{name}\"; choose one of {string.Join(", ", DataNames.Select(n => DataPrefix + n))}.");
        return Path.Combine(WorldDirectory($"{flag} {data}"), name + ".json");
    }

    /// <summary>The built-in world's text corpus (models/editrt-tiny/data/corpus.txt, written first if missing): what the
    /// built-in model was trained on, and the default corpus of the key statistics.</summary>
    public static string CorpusPath(string what) => Path.Combine(WorldDirectory(what), "corpus.txt");

    /// <summary>The built-in world's folder, written (once) from the model's recipe seed when incomplete.</summary>
    private static string WorldDirectory(string what)
    {
        string model = TinyPath ?? throw new DirectoryNotFoundException($"{what}: the built-in model models/{Name} was not found above {AppContext.BaseDirectory} or the working directory.");
        string dir = Path.Combine(model, "data");
        // world.json is written last by WriteAll: its presence means the set is complete.
        if (!File.Exists(Path.Combine(dir, SyntheticWorld.WorldFile)))
        {
            string recipe = Path.Combine(model, "train_config.json");
            int seed = File.Exists(recipe) ? TrainRecipe.Load(recipe).WorldSeed : 1234;
            Console.Error.WriteLine($"{what}: writing the built-in world (seed {seed}) to {dir} (once)");
            SyntheticWorld.Generate(null, seed).WriteAll(dir);
        }
        return dir;
    }

    private static string? Find()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
            for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "models", Name, "config.json"))) return Path.Combine(d.FullName, "models");
        return null;
    }
}
