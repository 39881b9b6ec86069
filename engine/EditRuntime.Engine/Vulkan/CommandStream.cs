using System.Runtime.CompilerServices;

namespace EditRuntime.Vulkan;

/// <summary>
/// Decides where barriers go: a new command needs one when it reads or writes a range written
/// since the last barrier (RAW, WAW), or writes a range read since then (WAR). Independent
/// commands share one barrier-free run, so the GPU may overlap them.
/// </summary>
public sealed class HazardTracker
{
    private readonly List<BufferRange> _written = new();
    private readonly List<BufferRange> _read = new();
    /// <summary>Past this many tracked ranges a barrier is cheaper than the overlap checks.</summary>
    public const int MaxTracked = 512;

    /// <summary>Records the accesses of the next command; returns true if a barrier must precede it.</summary>
    public bool Access(ReadOnlySpan<BufferRange> reads, ReadOnlySpan<BufferRange> writes)
    {
        bool barrier = _written.Count + _read.Count > MaxTracked;
        for (int i = 0; !barrier && i < reads.Length; i++)
            barrier = AnyOverlap(_written, reads[i]);
        for (int i = 0; !barrier && i < writes.Length; i++)
            barrier = AnyOverlap(_written, writes[i]) || AnyOverlap(_read, writes[i]);
        if (barrier) Reset();
        foreach (var r in reads) _read.Add(r);
        foreach (var w in writes) _written.Add(w);
        return barrier;
    }

    public void Reset() { _written.Clear(); _read.Clear(); }

    private static bool AnyOverlap(List<BufferRange> list, in BufferRange r)
    {
        foreach (var x in list) if (x.Overlaps(r)) return true;
        return false;
    }
}

/// <summary>GPU time of one recorded command, from timestamps written around it.</summary>
public readonly record struct KernelTiming(string Label, double Milliseconds);

/// <summary>
/// Records many dispatches and copies into one command buffer, with barriers only where a hazard
/// requires one, and submits only when the host needs a result (<see cref="Flush"/>).
/// With <see cref="Profiling"/> on, every command is bracketed by timestamps.
/// </summary>
public sealed unsafe class CommandStream : IDisposable
{
    private readonly VulkanDevice _device;
    private readonly VkApi _api;
    private ulong _pool, _fence, _queries;
    private nint _cmd;
    private bool _recording;
    private readonly HazardTracker _hazards = new();
    private readonly List<string> _queryLabels = new();
    private const uint QueryCapacity = 2048; // two per timed command, and the last two for the whole submit
    private const uint SubmitStartQuery = QueryCapacity - 2, SubmitEndQuery = QueryCapacity - 1;
    private readonly List<Action> _afterCompletion = new();

    public int RecordedCommands { get; private set; }
    public int Barriers { get; private set; }
    public long Submits { get; private set; }
    public bool Profiling { get; set; }
    /// <summary>Timings collected by flushes while profiling; clear it yourself.</summary>
    public List<KernelTiming> Timings { get; } = new();
    public bool HasPendingWork => _recording && RecordedCommands > 0;
    /// <summary>Device time of every submit so far (timestamps at the start and end of each command
    /// buffer), in seconds: the GPU time of the work, without host gaps between submits. 0 when the
    /// device has no timestamps.</summary>
    public double BusySeconds { get; private set; }

    internal CommandStream(VulkanDevice device)
    {
        _device = device;
        _api = device.Api;
        var pci = new VkCommandPoolCreateInfo
        {
            sType = VkStructureType.VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
            flags = (uint)VkCommandPoolCreateFlagBits.VK_COMMAND_POOL_CREATE_TRANSIENT_BIT,
            queueFamilyIndex = device.QueueFamily,
        };
        ulong pool;
        Vk.Check(_api.vkCreateCommandPool(device.Handle, &pci, null, &pool), "vkCreateCommandPool");
        _pool = pool;
        var ai = new VkCommandBufferAllocateInfo
        {
            sType = VkStructureType.VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
            commandPool = _pool,
            level = VkCommandBufferLevel.VK_COMMAND_BUFFER_LEVEL_PRIMARY,
            commandBufferCount = 1,
        };
        nint cmd;
        Vk.Check(_api.vkAllocateCommandBuffers(device.Handle, &ai, &cmd), "vkAllocateCommandBuffers");
        _cmd = cmd;
        var fci = new VkFenceCreateInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
        ulong fence;
        Vk.Check(_api.vkCreateFence(device.Handle, &fci, null, &fence), "vkCreateFence");
        _fence = fence;
        if (device.Info.Timestamps)
        {
            var qci = new VkQueryPoolCreateInfo
            {
                sType = VkStructureType.VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                queryType = VkQueryType.VK_QUERY_TYPE_TIMESTAMP,
                queryCount = QueryCapacity,
            };
            ulong q;
            Vk.Check(_api.vkCreateQueryPool(device.Handle, &qci, null, &q), "vkCreateQueryPool");
            _queries = q;
        }
    }

    private void Begin()
    {
        if (_recording) return;
        var bi = new VkCommandBufferBeginInfo
        {
            sType = VkStructureType.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
            flags = (uint)VkCommandBufferUsageFlagBits.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
        };
        Vk.Check(_api.vkBeginCommandBuffer(_cmd, &bi), "vkBeginCommandBuffer");
        if (_queries != 0)
        {
            _api.vkCmdResetQueryPool(_cmd, _queries, 0, QueryCapacity);
            _api.vkCmdWriteTimestamp(_cmd, VkPipelineStageFlagBits.VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, _queries, SubmitStartQuery);
        }
        _queryLabels.Clear();
        _hazards.Reset();
        _recording = true;
        RecordedCommands = 0;
    }

    /// <summary>Runs <paramref name="action"/> once the work recorded so far has completed (after the next flush).</summary>
    public void AfterCompletion(Action action)
    {
        if (HasPendingWork) _afterCompletion.Add(action);
        else action();
    }

    private void BeforeCommand(ReadOnlySpan<BufferRange> reads, ReadOnlySpan<BufferRange> writes, string label)
    {
        if (Profiling && _queries != 0 && _queryLabels.Count * 2 + 2 > SubmitStartQuery) Flush();
        Begin();
        if (_hazards.Access(reads, writes)) EmitBarrier();
        if (Profiling && _queries != 0)
            _api.vkCmdWriteTimestamp(_cmd, VkPipelineStageFlagBits.VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, _queries, (uint)(_queryLabels.Count * 2));
    }

    private void AfterCommand(string label)
    {
        if (Profiling && _queries != 0)
        {
            _api.vkCmdWriteTimestamp(_cmd, VkPipelineStageFlagBits.VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, _queries, (uint)(_queryLabels.Count * 2 + 1));
            _queryLabels.Add(label);
        }
        RecordedCommands++;
    }

    private void EmitBarrier()
    {
        var mb = new VkMemoryBarrier
        {
            sType = VkStructureType.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            srcAccessMask = (uint)(VkAccessFlagBits.VK_ACCESS_SHADER_WRITE_BIT | VkAccessFlagBits.VK_ACCESS_TRANSFER_WRITE_BIT),
            dstAccessMask = (uint)(VkAccessFlagBits.VK_ACCESS_SHADER_READ_BIT | VkAccessFlagBits.VK_ACCESS_SHADER_WRITE_BIT
                                   | VkAccessFlagBits.VK_ACCESS_TRANSFER_READ_BIT | VkAccessFlagBits.VK_ACCESS_TRANSFER_WRITE_BIT),
        };
        const uint stages = (uint)(VkPipelineStageFlagBits.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VkPipelineStageFlagBits.VK_PIPELINE_STAGE_TRANSFER_BIT);
        _api.vkCmdPipelineBarrier(_cmd, stages, stages, 0, 1, &mb, 0, null, 0, null);
        Barriers++;
    }

    /// <summary>Records one dispatch. <typeparamref name="TPush"/> mirrors the shader's push-constant block.</summary>
    public void Dispatch<TPush>(Kernel kernel, in TPush push, uint groupsX, uint groupsY, uint groupsZ,
        ReadOnlySpan<BufferRange> reads, ReadOnlySpan<BufferRange> writes, string? label = null) where TPush : unmanaged
    {
        uint size = (uint)sizeof(TPush);
        // The C# struct must cover the block exactly, up to its own trailing alignment padding.
        if (size < kernel.PushConstantBytes || size - kernel.PushConstantBytes >= 8)
            throw new InvalidOperationException($"Kernel {kernel}: push-constant struct {typeof(TPush).Name} is {size} bytes but the shader's block is {kernel.PushConstantBytes}.");
        var lim = _device.Info.MaxWorkgroupCount;
        if (groupsX > lim[0] || groupsY > lim[1] || groupsZ > lim[2])
            throw new InvalidOperationException($"Kernel {kernel}: {groupsX}x{groupsY}x{groupsZ} workgroups exceed the device limit {lim[0]}x{lim[1]}x{lim[2]}.");
        if (groupsX == 0 || groupsY == 0 || groupsZ == 0) return;
        label ??= kernel.ToString();
        BeforeCommand(reads, writes, label);
        _api.vkCmdBindPipeline(_cmd, VkPipelineBindPoint.VK_PIPELINE_BIND_POINT_COMPUTE, kernel.Pipeline);
        if (kernel.PushConstantBytes > 0)
        {
            var copy = push;
            _api.vkCmdPushConstants(_cmd, kernel.Layout, (uint)VkShaderStageFlagBits.VK_SHADER_STAGE_COMPUTE_BIT, 0, kernel.PushConstantBytes, &copy);
        }
        _api.vkCmdDispatch(_cmd, groupsX, groupsY, groupsZ);
        AfterCommand(label);
    }

    /// <summary>Records a buffer-to-buffer copy of src.Size bytes.</summary>
    public void Copy(BufferRange src, BufferRange dst)
    {
        if (dst.Size < src.Size) throw new ArgumentException($"Copy of {src.Size} bytes into a range of {dst.Size}.");
        if (src.Size == 0) return;
        ReadOnlySpan<BufferRange> r = [src];
        ReadOnlySpan<BufferRange> w = [dst];
        BeforeCommand(r, w, "copy");
        var region = new VkBufferCopy { srcOffset = src.Offset, dstOffset = dst.Offset, size = src.Size };
        _api.vkCmdCopyBuffer(_cmd, src.Block.Buffer, dst.Block.Buffer, 1, &region);
        AfterCommand("copy");
    }

    /// <summary>Records a fill of dst with a repeated 32-bit pattern (vkCmdFillBuffer: a memset on the device).</summary>
    public void FillBuffer(BufferRange dst, uint pattern)
    {
        if (dst.Size == 0) return;
        if (dst.Offset % 4 != 0 || dst.Size % 4 != 0) throw new ArgumentException($"FillBuffer: offset {dst.Offset} and size {dst.Size} must be multiples of 4.");
        ReadOnlySpan<BufferRange> w = [dst];
        BeforeCommand([], w, "fill");
        _api.vkCmdFillBuffer(_cmd, dst.Block.Buffer, dst.Offset, dst.Size, pattern);
        AfterCommand("fill");
    }

    /// <summary>Submits what was recorded and waits for it. A no-op when nothing was recorded.</summary>
    public void Flush()
    {
        if (!_recording) { RunAfterCompletion(); return; }
        // Make every device write visible to the host before the fence signals.
        var mb = new VkMemoryBarrier
        {
            sType = VkStructureType.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            srcAccessMask = (uint)(VkAccessFlagBits.VK_ACCESS_SHADER_WRITE_BIT | VkAccessFlagBits.VK_ACCESS_TRANSFER_WRITE_BIT),
            dstAccessMask = (uint)VkAccessFlagBits.VK_ACCESS_HOST_READ_BIT,
        };
        _api.vkCmdPipelineBarrier(_cmd,
            (uint)(VkPipelineStageFlagBits.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VkPipelineStageFlagBits.VK_PIPELINE_STAGE_TRANSFER_BIT),
            (uint)VkPipelineStageFlagBits.VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, null, 0, null);
        if (_queries != 0) _api.vkCmdWriteTimestamp(_cmd, VkPipelineStageFlagBits.VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, _queries, SubmitEndQuery);
        Vk.Check(_api.vkEndCommandBuffer(_cmd), "vkEndCommandBuffer");
        _recording = false;
        var cmd = _cmd;
        var si = new VkSubmitInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_SUBMIT_INFO, commandBufferCount = 1, pCommandBuffers = &cmd };
        var fence = _fence;
        Vk.Check(_api.vkQueueSubmit(_device.Queue, 1, &si, fence), "vkQueueSubmit");
        Vk.Check(_api.vkWaitForFences(_device.Handle, 1, &fence, 1, ulong.MaxValue), "vkWaitForFences");
        Vk.Check(_api.vkResetFences(_device.Handle, 1, &fence), "vkResetFences");
        Submits++;
        if (_queries != 0) ReadSubmitTime();
        if (_queryLabels.Count > 0) ReadTimestamps();
        Vk.Check(_api.vkResetCommandPool(_device.Handle, _pool, 0), "vkResetCommandPool");
        RecordedCommands = 0;
        RunAfterCompletion();
    }

    private void RunAfterCompletion()
    {
        if (_afterCompletion.Count == 0) return;
        var list = _afterCompletion.ToArray();
        _afterCompletion.Clear();
        foreach (var a in list) a();
    }

    private void ReadSubmitTime()
    {
        var v = stackalloc ulong[2];
        Vk.Check(_api.vkGetQueryPoolResults(_device.Handle, _queries, SubmitStartQuery, 2, 16, v, 8,
            (uint)(VkQueryResultFlagBits.VK_QUERY_RESULT_64_BIT | VkQueryResultFlagBits.VK_QUERY_RESULT_WAIT_BIT)), "vkGetQueryPoolResults");
        ulong mask = _device.TimestampMask;
        BusySeconds += (((v[1] & mask) - (v[0] & mask)) & mask) * _device.Info.TimestampPeriodNs * 1e-9;
    }

    private void ReadTimestamps()
    {
        int n = _queryLabels.Count * 2;
        var values = new ulong[n];
        fixed (ulong* v = values)
            Vk.Check(_api.vkGetQueryPoolResults(_device.Handle, _queries, 0, (uint)n, (nuint)(n * 8), v, 8,
                (uint)(VkQueryResultFlagBits.VK_QUERY_RESULT_64_BIT | VkQueryResultFlagBits.VK_QUERY_RESULT_WAIT_BIT)), "vkGetQueryPoolResults");
        ulong mask = _device.TimestampMask;
        double period = _device.Info.TimestampPeriodNs;
        for (int i = 0; i < _queryLabels.Count; i++)
        {
            ulong t0 = values[2 * i] & mask, t1 = values[2 * i + 1] & mask;
            ulong ticks = (t1 - t0) & mask;
            Timings.Add(new KernelTiming(_queryLabels[i], ticks * period * 1e-6));
        }
        _queryLabels.Clear();
    }

    public void Dispose()
    {
        if (_pool == 0) return;
        if (_recording) Flush();
        var dev = _device.Handle;
        if (_queries != 0) _api.vkDestroyQueryPool(dev, _queries, null);
        _api.vkDestroyFence(dev, _fence, null);
        _api.vkDestroyCommandPool(dev, _pool, null);
        _pool = 0;
    }
}
