using System.Runtime.InteropServices;
using System.Text;
using Silk.NET.Vulkan;

namespace EditRuntime.Vulkan;

/// <summary>
/// The Vulkan instance (optionally with VK_LAYER_KHRONOS_validation and a debug messenger that
/// feeds <see cref="ValidationLog"/>), and the list of physical devices.
/// </summary>
public sealed unsafe class VulkanInstance : IDisposable
{
    public const string ValidationEnvironmentVariable = "EDITRT_VALIDATION";

    /// <summary>This instance's API object (its current instance is this one; see <see cref="VulkanApi"/>).</summary>
    public Vk Api { get; }
    public Instance Handle { get; private set; }
    public bool ValidationEnabled { get; }
    public IReadOnlyList<PhysicalDeviceInfo> Devices { get; }
    public string LoaderVersion { get; }
    private DebugUtilsMessengerEXT _messenger;
    // VK_EXT_debug_utils, loaded by hand (the extension package is not on our feed).
    private delegate* unmanaged<Instance, DebugUtilsMessengerEXT, AllocationCallbacks*, void> _destroyMessenger;

    /// <summary>Validation on when <paramref name="validation"/> says so, or (when null) when EDITRT_VALIDATION=1.</summary>
    public VulkanInstance(bool? validation = null)
    {
        var api = VulkanApi.Global();
        try
        {
            uint loaderVersion = 0;
            api.EnumerateInstanceVersion(&loaderVersion);
            LoaderVersion = VulkanApi.VersionString(loaderVersion);
            if (loaderVersion < VulkanApi.ApiVersion12)
                throw new NotSupportedException($"The Vulkan loader supports version {LoaderVersion}; EditRuntime needs 1.2 or newer.");

            bool wantValidation = validation ?? Environment.GetEnvironmentVariable(ValidationEnvironmentVariable) == "1";
            if (wantValidation && !HasLayer(api, VulkanApi.ValidationLayer))
                throw new InvalidOperationException(
                    $"Validation was requested but {VulkanApi.ValidationLayer} is not installed (apt-get install vulkan-validationlayers, or run 'make deps').");
            bool debugUtils = HasInstanceExtension(api, VulkanApi.DebugUtilsExtension);
            if (wantValidation && !debugUtils)
                throw new InvalidOperationException($"Validation was requested but the instance lacks {VulkanApi.DebugUtilsExtension}, so its messages could not be collected.");
            ValidationEnabled = wantValidation;

            var strings = new List<nint>();
            try
            {
                var name = VulkanApi.Utf8("EditRuntime", strings);
                var app = new ApplicationInfo(pApplicationName: name, pEngineName: name, apiVersion: VulkanApi.ApiVersion12);
                byte** layers = stackalloc byte*[1];
                byte** exts = stackalloc byte*[1];
                if (wantValidation)
                {
                    layers[0] = VulkanApi.Utf8(VulkanApi.ValidationLayer, strings);
                    exts[0] = VulkanApi.Utf8(VulkanApi.DebugUtilsExtension, strings);
                }
                var messengerInfo = MessengerInfo();
                var ci = new InstanceCreateInfo(
                    // Chaining the messenger info also reports problems in vkCreateInstance itself.
                    pNext: wantValidation ? &messengerInfo : null,
                    pApplicationInfo: &app,
                    enabledLayerCount: wantValidation ? 1u : 0u, ppEnabledLayerNames: layers,
                    enabledExtensionCount: wantValidation ? 1u : 0u, ppEnabledExtensionNames: exts);
                Instance inst;
                VulkanApi.Check(api.CreateInstance(&ci, null, &inst), "vkCreateInstance");
                Handle = inst;
                Api = VulkanApi.BindInstance(api, inst);
                if (wantValidation)
                {
                    var create = (delegate* unmanaged<Instance, DebugUtilsMessengerCreateInfoEXT*, AllocationCallbacks*, DebugUtilsMessengerEXT*, Result>)
                        VulkanApi.InstanceProc(api, inst, "vkCreateDebugUtilsMessengerEXT");
                    _destroyMessenger = (delegate* unmanaged<Instance, DebugUtilsMessengerEXT, AllocationCallbacks*, void>)
                        VulkanApi.InstanceProc(api, inst, "vkDestroyDebugUtilsMessengerEXT");
                    DebugUtilsMessengerEXT m;
                    VulkanApi.Check(create(inst, &messengerInfo, null, &m), "vkCreateDebugUtilsMessengerEXT");
                    _messenger = m;
                }
            }
            finally
            {
                VulkanApi.FreeAll(strings);
            }
            Devices = EnumerateDevices();
        }
        catch
        {
            if (Handle.Handle != 0) Dispose();
            else api.Dispose();
            throw;
        }
    }

    private static DebugUtilsMessengerCreateInfoEXT MessengerInfo() => new(
        messageSeverity: DebugUtilsMessageSeverityFlagsEXT.WarningBitExt | DebugUtilsMessageSeverityFlagsEXT.ErrorBitExt,
        messageType: DebugUtilsMessageTypeFlagsEXT.GeneralBitExt | DebugUtilsMessageTypeFlagsEXT.ValidationBitExt | DebugUtilsMessageTypeFlagsEXT.PerformanceBitExt,
        pfnUserCallback: new PfnDebugUtilsMessengerCallbackEXT(&ValidationLog.Callback));

    private static bool HasLayer(Vk api, string name)
    {
        uint n = 0;
        api.EnumerateInstanceLayerProperties(&n, null);
        var props = new LayerProperties[n];
        fixed (LayerProperties* p = props) api.EnumerateInstanceLayerProperties(&n, p);
        for (int i = 0; i < n; i++)
            fixed (byte* s = props[i].LayerName)
                if (VulkanApi.FixedString(s, 256) == name) return true;
        return false;
    }

    private static bool HasInstanceExtension(Vk api, string name)
    {
        if (HasExtension(api, null, name)) return true;
        // The validation layer provides VK_EXT_debug_utils too.
        var layer = Encoding.ASCII.GetBytes(VulkanApi.ValidationLayer + "\0");
        fixed (byte* l = layer) return HasExtension(api, l, name);
    }

    private static bool HasExtension(Vk api, byte* layer, string name)
    {
        uint n = 0;
        if (api.EnumerateInstanceExtensionProperties(layer, &n, null) != Result.Success) return false;
        var props = new ExtensionProperties[n];
        fixed (ExtensionProperties* p = props) api.EnumerateInstanceExtensionProperties(layer, &n, p);
        for (int i = 0; i < n; i++)
            fixed (byte* s = props[i].ExtensionName)
                if (VulkanApi.FixedString(s, 256) == name) return true;
        return false;
    }

    private List<PhysicalDeviceInfo> EnumerateDevices()
    {
        uint n = 0;
        VulkanApi.Check(Api.EnumeratePhysicalDevices(Handle, &n, null), "vkEnumeratePhysicalDevices");
        var handles = new PhysicalDevice[n];
        fixed (PhysicalDevice* h = handles) VulkanApi.Check(Api.EnumeratePhysicalDevices(Handle, &n, h), "vkEnumeratePhysicalDevices");
        var list = new List<PhysicalDeviceInfo>();
        for (int i = 0; i < n; i++) list.Add(Describe(i, handles[i]));
        return list;
    }

    private PhysicalDeviceInfo Describe(int index, PhysicalDevice pd)
    {
        var driver = new PhysicalDeviceDriverProperties(sType: StructureType.PhysicalDeviceDriverProperties);
        var subgroup = new PhysicalDeviceSubgroupProperties(sType: StructureType.PhysicalDeviceSubgroupProperties, pNext: &driver);
        var props = new PhysicalDeviceProperties2(sType: StructureType.PhysicalDeviceProperties2, pNext: &subgroup);
        Api.GetPhysicalDeviceProperties2(pd, &props);

        var f12 = new PhysicalDeviceVulkan12Features(sType: StructureType.PhysicalDeviceVulkan12Features);
        var f2 = new PhysicalDeviceFeatures2(sType: StructureType.PhysicalDeviceFeatures2, pNext: &f12);
        Api.GetPhysicalDeviceFeatures2(pd, &f2);

        PhysicalDeviceMemoryProperties mem;
        Api.GetPhysicalDeviceMemoryProperties(pd, &mem);
        ulong deviceLocal = 0, hostVisible = 0;
        for (int h = 0; h < mem.MemoryHeapCount; h++)
            if ((mem.MemoryHeaps[h].Flags & MemoryHeapFlags.DeviceLocalBit) != 0) deviceLocal += mem.MemoryHeaps[h].Size;
        bool unified = false;
        const MemoryPropertyFlags dl = MemoryPropertyFlags.DeviceLocalBit;
        const MemoryPropertyFlags hv = MemoryPropertyFlags.HostVisibleBit | MemoryPropertyFlags.HostCoherentBit;
        for (int t = 0; t < mem.MemoryTypeCount; t++)
        {
            var ty = mem.MemoryTypes[t];
            if ((ty.PropertyFlags & hv) == hv) hostVisible = Math.Max(hostVisible, mem.MemoryHeaps[(int)ty.HeapIndex].Size);
            // Unified: the largest device-local heap is host-visible (not just a small BAR window).
            if ((ty.PropertyFlags & (dl | hv)) == (dl | hv) && mem.MemoryHeaps[(int)ty.HeapIndex].Size * 2 >= deviceLocal) unified = true;
        }

        uint qn = 0;
        Api.GetPhysicalDeviceQueueFamilyProperties(pd, &qn, null);
        var qf = new QueueFamilyProperties[qn];
        fixed (QueueFamilyProperties* q = qf) Api.GetPhysicalDeviceQueueFamilyProperties(pd, &qn, q);
        bool timestamps = qf.Any(q => (q.QueueFlags & QueueFlags.ComputeBit) != 0 && q.TimestampValidBits > 0);

        ref var p = ref props.Properties;
        ref var lim = ref p.Limits;
        return new PhysicalDeviceInfo
        {
            Index = index,
            Handle = pd,
            Name = VulkanApi.FixedString(props.Properties.DeviceName, 256),
            Type = p.DeviceType,
            DriverName = VulkanApi.FixedString(driver.DriverName, 256),
            DriverInfo = VulkanApi.FixedString(driver.DriverInfo, 256),
            ApiVersion = VulkanApi.VersionString(p.ApiVersion),
            VendorId = p.VendorID,
            DeviceLocalBytes = deviceLocal,
            HostVisibleBytes = hostVisible,
            UnifiedMemory = unified,
            SubgroupSize = subgroup.SubgroupSize,
            MaxSharedMemoryBytes = lim.MaxComputeSharedMemorySize,
            MaxWorkgroupCount = new[] { lim.MaxComputeWorkGroupCount[0], lim.MaxComputeWorkGroupCount[1], lim.MaxComputeWorkGroupCount[2] },
            MaxWorkgroupInvocations = lim.MaxComputeWorkGroupInvocations,
            MaxStorageBufferRange = lim.MaxStorageBufferRange,
            MaxMemoryAllocationSize = MaxAllocation(pd),
            MaxPushConstantsSize = lim.MaxPushConstantsSize,
            Fp16 = (bool)f12.ShaderFloat16,
            Fp64 = (bool)f2.Features.ShaderFloat64,
            Int64 = (bool)f2.Features.ShaderInt64,
            BufferDeviceAddress = (bool)f12.BufferDeviceAddress,
            Timestamps = timestamps,
            TimestampPeriodNs = lim.TimestampPeriod,
        };
    }

    private ulong MaxAllocation(PhysicalDevice pd)
    {
        var m3 = new PhysicalDeviceMaintenance3Properties(sType: StructureType.PhysicalDeviceMaintenance3Properties);
        var props = new PhysicalDeviceProperties2(sType: StructureType.PhysicalDeviceProperties2, pNext: &m3);
        Api.GetPhysicalDeviceProperties2(pd, &props);
        return m3.MaxMemoryAllocationSize;
    }

    public void Dispose()
    {
        if (Handle.Handle == 0) return;
        if (_messenger.Handle != 0) _destroyMessenger(Handle, _messenger, null);
        Api.DestroyInstance(Handle, null);
        Handle = default;
        Api.Dispose();
    }
}
