using EditRuntime.Backends;
using EditRuntime.Models;
using EditRuntime.Vulkan;

namespace EditRuntime.Cli;

/// <summary>`editrt train`: reads the recipe and the flags, runs <see cref="WorldModelTraining"/> and prints its log.</summary>
internal static class TrainCommand
{
    public static int Run(DeviceOptions options, string configPath, string? outDir, string backendName, int? steps, string? init = null, float? lr = null)
    {
        if (!File.Exists(configPath)) throw new FileNotFoundException($"--config: no file {configPath}.");
        var recipe = TrainRecipe.Load(configPath);
        if (steps is int s) recipe = recipe with { Steps = s };
        if (lr is float l) recipe = recipe with { LearningRate = l };
        outDir ??= Path.GetDirectoryName(Path.GetFullPath(configPath))!;
        using var be = BackendFactory.Create(backendName, options);
        WorldModelTraining.Run(be, recipe, configPath, outDir, init, Console.WriteLine);
        return 0;
    }
}
