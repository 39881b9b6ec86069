using EditRuntime.Backends;
using EditRuntime.Data;
using EditRuntime.Editing;
using EditRuntime.Models;
using EditRuntime.TextTests;
using EditRuntime.Vulkan;

namespace EditRuntime.Tests;

/// <summary>What the editor tests share: the built-in model and the first eval requests of the synthetic world (seed 1234).</summary>
internal static class EditorFixtures
{
    public static ModelDirectory Builtin() => ModelDirectory.Load(Path.Combine(TokFixtures.RepoRoot, "models", "editrt-tiny"));

    public static Editing.EditRequest FromWorld(Data.EditRequest r) => new(r.Prompt, r.Subject, r.TargetNew.Name, r.Fact.Object.Name,
        r.RephrasePrompts, r.Neighborhood.Select(n => new LocalityPrompt(n.Prompt, n.Answer)).ToList(), r.CaseId, r.CaseId, "world");

    public static List<Editing.EditRequest> Requests(int n) =>
        SyntheticWorld.Generate(null, 1234).EvalRequests.Take(n).Select(FromWorld).ToList();

    /// <summary>The built-in model on "torch" (a fresh libtorch backend, disposed with the session) or "vulkan" (the test device), with its editor context.</summary>
    public static BuiltinSession Open(string backend) => new(backend);

    /// <summary>The built-in models the editor contract runs on: the GPT-2 one and the LLaMA-layout one.</summary>
    public static readonly string[] BuiltinModelNames = [BuiltinModels.Name, "editrt-tiny-llama"];

    /// <summary>A built-in model of either layout (models/NAME) on a backend, with its editor context.</summary>
    public static ModelSession OpenModel(string name, string backend) => new(Path.Combine(TokFixtures.RepoRoot, "models", name), backend);
}

/// <summary>A model folder of either layout loaded on one backend, and the editor context over it.</summary>
internal sealed class ModelSession : IDisposable
{
    private readonly EditRuntime.Torch.TorchBackend? _torch;
    public IModelFolder Folder { get; }
    public IBackend Backend { get; }
    public ILanguageModel Model { get; }
    public EditorContext Ctx { get; }

    public ModelSession(string dir, string backend)
    {
        Folder = ModelFolders.Load(dir);
        _torch = backend switch
        {
            "torch" => new EditRuntime.Torch.TorchBackend(),
            "vulkan" => null,
            _ => throw new ArgumentException($"backend '{backend}': expected torch or vulkan"),
        };
        Backend = _torch is not null ? _torch : new VulkanBackend(GpuFixture.Device);
        Model = ModelFolders.Open(Backend, Folder);
        Ctx = new EditorContext(Model, Folder);
    }

    public void Dispose()
    {
        Model.Dispose();
        _torch?.Dispose();
    }
}

/// <summary>The built-in model loaded on one backend, and the editor context over it.</summary>
internal sealed class BuiltinSession : IDisposable
{
    private readonly EditRuntime.Torch.TorchBackend? _torch;
    public ModelDirectory Md { get; }
    public IBackend Backend { get; }
    public Gpt2Model Model { get; }
    public EditorContext Ctx { get; }

    public BuiltinSession(string backend)
    {
        Md = EditorFixtures.Builtin();
        _torch = backend switch
        {
            "torch" => new EditRuntime.Torch.TorchBackend(),
            "vulkan" => null,
            _ => throw new ArgumentException($"backend '{backend}': expected torch or vulkan"),
        };
        Backend = _torch is not null ? _torch : new VulkanBackend(GpuFixture.Device);
        Model = new Gpt2Model(Backend, Md.Config, Md.Weights);
        Ctx = new EditorContext(Model, Md);
    }

    public void Dispose()
    {
        Model.Dispose();
        _torch?.Dispose();
    }
}
