using System.Reflection;
using EditRuntime.Vulkan;

namespace EditRuntime.Backends;

/// <summary>
/// Opens a backend by name, for every host (the command line, the Lua host, tests). The Torch backend lives
/// in its own assembly and is reached by name only when selected, so a Vulkan-only deployment (no libtorch,
/// no EditRuntime.Torch.dll) works and says what is missing when "torch" is asked for.
/// </summary>
public static class BackendFactory
{
    public static readonly string[] Names = ["vulkan", "torch"];

    private const string TorchAssembly = "EditRuntime.Torch";
    private const string TorchType = "EditRuntime.Torch.TorchBackend";

    /// <summary>The canonical (lower-case) name, or an ArgumentException listing the choices.</summary>
    public static string Check(string name)
    {
        var n = name.Trim().ToLowerInvariant();
        return Names.Contains(n) ? n : throw new ArgumentException($"unknown backend \"{name}\"; choose one of {string.Join(", ", Names)}");
    }

    public static IBackend Create(string name, DeviceOptions? options = null) => Check(name) switch
    {
        "vulkan" => VulkanBackend.Open(options),
        _ => CreateTorch(),
    };

    private static IBackend CreateTorch()
    {
        Type type;
        try { type = Assembly.Load(TorchAssembly).GetType(TorchType, throwOnError: true)!; }
        catch (Exception e) when (e is FileNotFoundException or FileLoadException or TypeLoadException)
        {
            throw new InvalidOperationException($"The Torch backend is not deployed with this program ({TorchAssembly}.dll: {e.Message}).", e);
        }
        try { return (IBackend)Activator.CreateInstance(type)!; }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            // The backend's own error (libtorch or the shim missing, a bad thread count), not the reflection wrapper.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
            throw;
        }
    }
}
