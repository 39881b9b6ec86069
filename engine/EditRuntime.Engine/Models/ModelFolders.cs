using EditRuntime.Backends;

namespace EditRuntime.Models;

/// <summary>Loads a model folder of either layout: the LLaMA family (config.json's model_type llama / qwen2 / mistral,
/// <see cref="LlamaDirectory"/>) or GPT-2 (<see cref="ModelDirectory"/>, whose errors name the files a GPT-2 folder needs).</summary>
public static class ModelFolders
{
    public static IModelFolder Load(string dir) => LlamaDirectory.IsLlamaFolder(dir) ? LlamaDirectory.Load(dir) : ModelDirectory.Load(dir);

    /// <summary>The folder's model on a backend (its weights copied to the device).</summary>
    public static ILanguageModel Open(IBackend backend, IModelFolder folder) => folder switch
    {
        ModelDirectory g => new Gpt2Model(backend, g.Config, g.Weights),
        LlamaDirectory l => new LlamaModel(backend, l.Config, l.Weights),
        _ => throw new ArgumentException($"{folder.Path}: no model class for a {folder.GetType().Name}."),
    };
}
