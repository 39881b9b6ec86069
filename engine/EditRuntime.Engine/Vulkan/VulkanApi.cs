using System.Runtime.InteropServices;
using Silk.NET.Vulkan;

namespace EditRuntime.Vulkan;

/// <summary>A Vulkan call returned an error code.</summary>
public sealed class VulkanException(string what, Result result)
    : Exception($"{what} failed: {result}")
{
    public Result Result { get; } = result;
}

/// <summary>
/// Where the engine gets its Silk.NET <see cref="Vk"/> objects, and small helpers around them.
///
/// Silk resolves an entry point once, from the loader's exports or else through
/// vkGetInstanceProcAddr / vkGetDeviceProcAddr of the API object's <see cref="Vk.CurrentInstance"/> and
/// <see cref="Vk.CurrentDevice"/> at that moment. So each <see cref="VulkanInstance"/> and each
/// <see cref="VulkanDevice"/> owns its own API object whose current instance/device is set here, once,
/// right after the handle exists, and never changed: no call can resolve against another instance's or
/// device's dispatch chain.
/// </summary>
public static unsafe class VulkanApi
{
    public const string ValidationLayer = "VK_LAYER_KHRONOS_validation";
    public const string DebugUtilsExtension = "VK_EXT_debug_utils";
    public static readonly uint ApiVersion12 = Vk.Version12;

    /// <summary>An API object for the global commands (enumeration, instance creation).</summary>
    public static Vk Global()
    {
        try { return Vk.GetApi(); }
        catch (Exception e) when (e is DllNotFoundException or FileNotFoundException or Silk.NET.Core.PlatformException or TypeInitializationException)
        {
            throw new DllNotFoundException(
                "No Vulkan loader found (libvulkan.so.1). On Debian/Ubuntu: apt-get install libvulkan1 mesa-vulkan-drivers (or run 'make deps').", e);
        }
    }

    /// <summary>Makes <paramref name="api"/> the instance's own: its instance-level entry points resolve through <paramref name="instance"/>.</summary>
    public static Vk BindInstance(Vk api, Instance instance)
    {
        api.CurrentInstance = instance;
        return api;
    }

    /// <summary>A new API object for <paramref name="device"/> (created from <paramref name="instance"/>): device-level entry
    /// points resolve through that device.</summary>
    public static Vk ForDevice(Instance instance, Device device)
    {
        var api = Global();
        api.CurrentInstance = instance;
        api.CurrentDevice = device;
        return api;
    }

    /// <summary>An extension entry point of <paramref name="instance"/>, or an error naming it. The extension packages
    /// (Silk.NET.Vulkan.Extensions.*) are not on our feed, so the few extension commands we call are fetched here.</summary>
    public static nint InstanceProc(Vk api, Instance instance, string name)
    {
        nint f = (nint)api.GetInstanceProcAddr(instance, name).Handle;
        if (f == 0) throw new EntryPointNotFoundException($"Vulkan instance command {name} is not available (is its extension enabled?).");
        return f;
    }

    public static void Check(Result r, string what)
    {
        if (r != Result.Success) throw new VulkanException(what, r);
    }

    public static string VersionString(uint v) => $"{v >> 22}.{(v >> 12) & 0x3ff}.{v & 0xfff}";

    /// <summary>A NUL-terminated UTF-8 string of at most <paramref name="max"/> bytes (Vulkan's fixed char arrays).</summary>
    public static string FixedString(byte* p, int max)
    {
        int n = 0;
        while (n < max && p[n] != 0) n++;
        return System.Text.Encoding.UTF8.GetString(p, n);
    }

    /// <summary>A UTF-8 copy of <paramref name="s"/> on the native heap, recorded in <paramref name="owned"/> to free later.</summary>
    internal static byte* Utf8(string s, List<nint> owned)
    {
        var p = Marshal.StringToCoTaskMemUTF8(s);
        owned.Add(p);
        return (byte*)p;
    }

    internal static void FreeAll(List<nint> owned)
    {
        foreach (var p in owned) Marshal.FreeCoTaskMem(p);
        owned.Clear();
    }
}
