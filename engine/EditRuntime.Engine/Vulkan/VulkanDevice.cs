using Silk.NET.Vulkan;
using Buffer = Silk.NET.Vulkan.Buffer;

namespace EditRuntime.Vulkan;

public sealed record DeviceOptions
{
    /// <summary>Device index or part of its name; null = EDITRT_DEVICE, else automatic (discrete &gt; integrated &gt; virtual &gt; CPU).</summary>
    public string? Selector { get; init; }
    /// <summary>Enable VK_LAYER_KHRONOS_validation; null = EDITRT_VALIDATION=1.</summary>
    public bool? Validation { get; init; }
    /// <summary>Never map device memory, even on unified-memory devices: every upload and download goes through
    /// a staging buffer and a copy, as on a discrete GPU. null = EDITRT_STAGING=1. Lets lavapipe test the discrete path.</summary>
    public bool? ForceStaging { get; init; }
    /// <summary>Size of the blocks buffers are sub-allocated from.</summary>
    public ulong BlockBytes { get; init; } = 256UL << 20;
    /// <summary>Buffers freed while recorded commands may still use them are returned only after those commands complete.
    /// Past this many such bytes the next allocation submits and waits first, so a long stretch of work without a host
    /// read (a loop of chunks, each freeing its temporaries) holds at most this much freed memory, not all of it.</summary>
    public ulong DeferredFreeLimitBytes { get; init; } = 32UL << 20;
}

/// <summary>
/// A logical device with one compute queue, the buffer allocator, the kernel cache and the
/// command stream. Not thread-safe: one thread records and flushes.
/// </summary>
public sealed unsafe class VulkanDevice : IDisposable
{
    public const string StagingEnvironmentVariable = "EDITRT_STAGING";
    /// <summary>Offsets of sub-allocations are multiples of this (≥ any storage-buffer offset alignment, and vec4-aligned).</summary>
    public const ulong Alignment = 256;

    public VulkanInstance Instance { get; }
    private readonly bool _ownsInstance;
    public PhysicalDeviceInfo Info { get; }
    /// <summary>This device's API object (current instance and device set once; see <see cref="VulkanApi"/>).</summary>
    public Vk Api { get; }
    public Device Handle { get; private set; }
    public Queue Queue { get; }
    public uint QueueFamily { get; }
    public ulong TimestampMask { get; }
    public KernelCache Kernels { get; }
    public CommandStream Stream { get; }
    public MemoryStats Stats { get; } = new();
    /// <summary>True when device buffers are mapped and read/written directly by the host.</summary>
    public bool DirectMapping { get; }

    private readonly uint _deviceType, _stagingType;
    private readonly ulong _blockBytes;
    private readonly ulong _deferredFreeLimit;
    private readonly Dictionary<MemoryKind, List<MemoryBlock>> _blocks = new() { [MemoryKind.Device] = new(), [MemoryKind.Staging] = new() };

    public static VulkanDevice Open(DeviceOptions? options = null)
    {
        options ??= new DeviceOptions();
        var instance = new VulkanInstance(options.Validation);
        try { return new VulkanDevice(instance, options, ownsInstance: true); }
        catch { instance.Dispose(); throw; }
    }

    public VulkanDevice(VulkanInstance instance, DeviceOptions options, bool ownsInstance = false)
    {
        Instance = instance;
        _ownsInstance = ownsInstance;
        var selector = options.Selector ?? Environment.GetEnvironmentVariable(DeviceSelector.EnvironmentVariable);
        Info = DeviceSelector.Pick(instance.Devices, selector);
        if (!Info.BufferDeviceAddress)
            throw new NotSupportedException($"Device \"{Info.Name}\" lacks bufferDeviceAddress (Vulkan 1.2), which EditRuntime's kernels use to address tensors.");
        var iapi = instance.Api;
        var pd = Info.Handle;

        // A queue family with compute, preferring one without graphics (a dedicated compute queue).
        uint qn = 0;
        iapi.GetPhysicalDeviceQueueFamilyProperties(pd, &qn, null);
        var qf = new QueueFamilyProperties[qn];
        fixed (QueueFamilyProperties* q = qf) iapi.GetPhysicalDeviceQueueFamilyProperties(pd, &qn, q);
        int family = -1;
        for (int pass = 0; pass < 2 && family < 0; pass++)
            for (int i = 0; i < qn && family < 0; i++)
            {
                bool compute = (qf[i].QueueFlags & QueueFlags.ComputeBit) != 0;
                bool graphics = (qf[i].QueueFlags & QueueFlags.GraphicsBit) != 0;
                if (compute && (pass == 1 || !graphics)) family = i;
            }
        if (family < 0) throw new NotSupportedException($"Device \"{Info.Name}\" has no compute queue.");
        QueueFamily = (uint)family;
        uint validBits = qf[family].TimestampValidBits;
        TimestampMask = validBits >= 64 ? ulong.MaxValue : (1UL << (int)validBits) - 1;

        // Features: enable what the kernels may use and the device has. (Named-argument constructors:
        // they set sType, which an object initialiser would leave at 0.)
        var have12 = new PhysicalDeviceVulkan12Features(sType: StructureType.PhysicalDeviceVulkan12Features);
        var have11 = new PhysicalDeviceVulkan11Features(sType: StructureType.PhysicalDeviceVulkan11Features, pNext: &have12);
        var have = new PhysicalDeviceFeatures2(sType: StructureType.PhysicalDeviceFeatures2, pNext: &have11);
        iapi.GetPhysicalDeviceFeatures2(pd, &have);
        var want12 = new PhysicalDeviceVulkan12Features(
            bufferDeviceAddress: true,
            shaderFloat16: have12.ShaderFloat16,
            storageBuffer8BitAccess: have12.StorageBuffer8BitAccess,
            scalarBlockLayout: have12.ScalarBlockLayout,
            vulkanMemoryModel: have12.VulkanMemoryModel);
        var want11 = new PhysicalDeviceVulkan11Features(pNext: &want12, storageBuffer16BitAccess: have11.StorageBuffer16BitAccess);
        var want = new PhysicalDeviceFeatures2(pNext: &want11, features: new PhysicalDeviceFeatures(
            shaderInt64: have.Features.ShaderInt64,
            shaderFloat64: have.Features.ShaderFloat64,
            shaderInt16: have.Features.ShaderInt16));

        float priority = 1f;
        var qci = new DeviceQueueCreateInfo(queueFamilyIndex: QueueFamily, queueCount: 1, pQueuePriorities: &priority);
        var dci = new DeviceCreateInfo(pNext: &want, queueCreateInfoCount: 1, pQueueCreateInfos: &qci);
        Device device;
        VulkanApi.Check(iapi.CreateDevice(pd, &dci, null, &device), $"vkCreateDevice({Info.Name})");
        Handle = device;
        Api = VulkanApi.ForDevice(instance.Handle, device);
        Queue queue;
        Api.GetDeviceQueue(device, QueueFamily, 0, &queue);
        Queue = queue;

        // Memory types. Unified memory (CPU, integrated GPU): device buffers are mapped directly.
        // Discrete: device-local buffers, reached through host-visible staging buffers.
        PhysicalDeviceMemoryProperties mp = default;
        iapi.GetPhysicalDeviceMemoryProperties(pd, &mp);
        const MemoryPropertyFlags DL = MemoryPropertyFlags.DeviceLocalBit;
        const MemoryPropertyFlags HV = MemoryPropertyFlags.HostVisibleBit;
        const MemoryPropertyFlags HC = MemoryPropertyFlags.HostCoherentBit;
        const MemoryPropertyFlags CA = MemoryPropertyFlags.HostCachedBit;
        bool forceStaging = options.ForceStaging ?? Environment.GetEnvironmentVariable(StagingEnvironmentVariable) == "1";
        DirectMapping = Info.UnifiedMemory && !forceStaging;
        static int Find(in PhysicalDeviceMemoryProperties mp, MemoryPropertyFlags required, MemoryPropertyFlags preferred)
        {
            int best = -1;
            for (int i = 0; i < mp.MemoryTypeCount; i++)
            {
                var f = mp.MemoryTypes[i].PropertyFlags;
                if ((f & required) != required) continue;
                if (best < 0 || ((f & preferred) == preferred && (mp.MemoryTypes[best].PropertyFlags & preferred) != preferred)) best = i;
            }
            return best;
        }
        int dt = DirectMapping ? Find(mp, DL | HV | HC, CA) : Find(mp, DL, 0);
        int st = Find(mp, HV | HC, CA);
        if (dt < 0 || st < 0) throw new NotSupportedException($"Device \"{Info.Name}\": no suitable memory type (device {dt}, staging {st}).");
        _deviceType = (uint)dt;
        _stagingType = (uint)st;
        _blockBytes = Math.Min(options.BlockBytes, Info.MaxMemoryAllocationSize);
        _deferredFreeLimit = options.DeferredFreeLimitBytes;

        Kernels = new KernelCache(this);
        Stream = new CommandStream(this);
    }

    // ---------------------------------------------------------------- allocation

    /// <summary>Allocates <paramref name="bytes"/> bytes (at least 4) from a block of the given kind.</summary>
    public GpuBuffer Allocate(ulong bytes, MemoryKind kind = MemoryKind.Device)
    {
        ulong size = Math.Max(4, (bytes + 3) & ~3UL);
        // Too much freed memory waits on unsubmitted work: run that work so the memory comes back before taking more.
        if (Stats.DeferredFreeBytes > _deferredFreeLimit && Stream.HasPendingWork) { Stream.Flush(); Stats.DeferredFlushes++; }
        if (size > Info.MaxMemoryAllocationSize)
            throw new OutOfMemoryException($"A buffer of {size} bytes exceeds the device's largest allocation ({Info.MaxMemoryAllocationSize} bytes) on \"{Info.Name}\".");
        var blocks = _blocks[kind];
        if (size <= _blockBytes / 2)
        {
            foreach (var b in blocks)
            {
                if (b.Dedicated) continue;
                var off = b.Free.Allocate(size, Alignment);
                if (off is ulong o) return Track(new GpuBuffer(this, b, o, size, kind));
            }
            var nb = CreateBlock(_blockBytes, kind, dedicated: false);
            blocks.Add(nb);
            return Track(new GpuBuffer(this, nb, nb.Free.Allocate(size, Alignment)!.Value, size, kind));
        }
        var db = CreateBlock(size, kind, dedicated: true);
        blocks.Add(db);
        return Track(new GpuBuffer(this, db, db.Free.Allocate(size, 1)!.Value, size, kind));
    }

    private GpuBuffer Track(GpuBuffer b)
    {
        b.Block.LiveAllocations++;
        Stats.InUseBytes += b.Size;
        Stats.PeakInUseBytes = Math.Max(Stats.PeakInUseBytes, Stats.InUseBytes);
        return b;
    }

    internal void Release(GpuBuffer b)
    {
        // Recorded but unsubmitted commands may still use the range: free it after they complete.
        bool deferred = Stream.HasPendingWork;
        if (deferred) Stats.DeferredFreeBytes += b.Size;
        Stream.AfterCompletion(() =>
        {
            if (deferred) Stats.DeferredFreeBytes -= b.Size;
            var block = b.Block;
            block.Free.Release(b.Offset, b.Size);
            block.LiveAllocations--;
            Stats.InUseBytes -= b.Size;
            if (block.Dedicated && block.LiveAllocations == 0)
            {
                _blocks[b.Kind].Remove(block);
                DestroyBlock(block);
            }
        });
    }

    private MemoryBlock CreateBlock(ulong size, MemoryKind kind, bool dedicated)
    {
        var block = new MemoryBlock(size, dedicated);
        var bci = new BufferCreateInfo(
            size: size,
            usage: BufferUsageFlags.StorageBufferBit | BufferUsageFlags.TransferSrcBit | BufferUsageFlags.TransferDstBit | BufferUsageFlags.ShaderDeviceAddressBit,
            sharingMode: SharingMode.Exclusive);
        Buffer buffer;
        VulkanApi.Check(Api.CreateBuffer(Handle, &bci, null, &buffer), "vkCreateBuffer");
        MemoryRequirements req;
        Api.GetBufferMemoryRequirements(Handle, buffer, &req);
        uint type = kind == MemoryKind.Device ? _deviceType : _stagingType;
        if ((req.MemoryTypeBits & (1u << (int)type)) == 0)
        {
            Api.DestroyBuffer(Handle, buffer, null);
            throw new NotSupportedException($"Device \"{Info.Name}\": storage buffers cannot live in memory type {type}.");
        }
        var flags = new MemoryAllocateFlagsInfo(flags: MemoryAllocateFlags.DeviceAddressBit);
        var mai = new MemoryAllocateInfo(pNext: &flags, allocationSize: req.Size, memoryTypeIndex: type);
        DeviceMemory memory;
        var r = Api.AllocateMemory(Handle, &mai, null, &memory);
        if (r != Result.Success)
        {
            Api.DestroyBuffer(Handle, buffer, null);
            throw new OutOfMemoryException($"vkAllocateMemory of {req.Size} bytes ({kind}) failed on \"{Info.Name}\": {r}. In use: {Stats.InUseBytes} bytes in {Stats.Blocks} blocks.");
        }
        VulkanApi.Check(Api.BindBufferMemory(Handle, buffer, memory, 0), "vkBindBufferMemory");
        block.Memory = memory;
        block.Buffer = buffer;
        var bai = new BufferDeviceAddressInfo(buffer: buffer);
        block.Address = Api.GetBufferDeviceAddress(Handle, &bai);
        if (kind == MemoryKind.Staging || DirectMapping)
        {
            void* p;
            VulkanApi.Check(Api.MapMemory(Handle, memory, 0, Vk.WholeSize, 0, &p), "vkMapMemory");
            block.Mapped = (byte*)p;
        }
        Stats.ReservedBytes += size;
        Stats.Blocks++;
        return block;
    }

    private void DestroyBlock(MemoryBlock b)
    {
        if (b.Mapped != null) Api.UnmapMemory(Handle, b.Memory);
        Api.DestroyBuffer(Handle, b.Buffer, null);
        Api.FreeMemory(Handle, b.Memory, null);
        Stats.ReservedBytes -= b.Size;
        Stats.Blocks--;
    }

    // ---------------------------------------------------------------- host transfers

    /// <summary>Writes <paramref name="data"/> into <paramref name="dst"/> at byte <paramref name="offset"/>,
    /// ordered after everything recorded so far.</summary>
    public void Upload(GpuBuffer dst, ReadOnlySpan<byte> data, ulong offset = 0)
    {
        if (offset + (ulong)data.Length > dst.Size)
            throw new ArgumentOutOfRangeException(nameof(data), $"Upload of {data.Length} bytes at offset {offset} into a buffer of {dst.Size} bytes.");
        if (data.Length == 0) return;
        if (dst.Mapped != null)
        {
            Stream.Flush(); // recorded commands may still read or write this memory
            data.CopyTo(new Span<byte>(dst.Mapped + offset, data.Length));
            return;
        }
        var staging = Allocate((ulong)data.Length, MemoryKind.Staging);
        data.CopyTo(new Span<byte>(staging.Mapped, data.Length));
        Stream.Copy(staging.Slice(0, (ulong)data.Length), dst.Slice(offset, (ulong)data.Length));
        staging.Dispose(); // freed once the copy has run
    }

    /// <summary>Reads <paramref name="dst"/>.Length bytes from <paramref name="src"/> at byte <paramref name="offset"/>;
    /// flushes the stream (this is where the host waits for the GPU).</summary>
    public void Download(GpuBuffer src, Span<byte> dst, ulong offset = 0)
    {
        if (offset + (ulong)dst.Length > src.Size)
            throw new ArgumentOutOfRangeException(nameof(dst), $"Download of {dst.Length} bytes at offset {offset} from a buffer of {src.Size} bytes.");
        if (dst.Length == 0) return;
        if (src.Mapped != null)
        {
            Stream.Flush();
            new ReadOnlySpan<byte>(src.Mapped + offset, dst.Length).CopyTo(dst);
            return;
        }
        using var staging = Allocate((ulong)dst.Length, MemoryKind.Staging);
        Stream.Copy(src.Slice(offset, (ulong)dst.Length), staging.Slice(0, (ulong)dst.Length));
        Stream.Flush();
        new ReadOnlySpan<byte>(staging.Mapped, dst.Length).CopyTo(dst);
    }

    public void Dispose()
    {
        if (Handle.Handle == 0) return;
        Stream.Flush();
        Api.DeviceWaitIdle(Handle);
        Stream.Dispose();
        Kernels.Dispose();
        foreach (var list in _blocks.Values)
        {
            foreach (var b in list) DestroyBlock(b);
            list.Clear();
        }
        Api.DestroyDevice(Handle, null);
        Handle = default;
        Api.Dispose();
        if (_ownsInstance) Instance.Dispose();
    }
}
