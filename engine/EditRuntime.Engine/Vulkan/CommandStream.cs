using EditRuntime.Backends;
using Silk.NET.Vulkan;

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

/// <summary>
/// Records many dispatches and copies into one command buffer, with barriers only where a hazard
/// requires one, and submits only when the host needs a result (<see cref="Flush"/>).
/// With <see cref="Profiling"/> on, every command is bracketed by timestamps.
/// </summary>
public sealed unsafe class CommandStream : IDisposable
{
    private readonly VulkanDevice _device;
    private readonly Vk _api;
    private CommandPool _pool;
    private Fence _fence;
    private QueryPool _queries;
    private CommandBuffer _cmd;
    private bool _recording;
    private readonly HazardTracker _hazards = new();
    private readonly List<string> _queryLabels = new();
    private const uint QueryCapacity = 2048; // two per timed command, and the last two for the whole submit
    private const uint SubmitStartQuery = QueryCapacity - 2, SubmitEndQuery = QueryCapacity - 1;
    private readonly List<Action> _afterCompletion = new();
    private bool HasQueries => _queries.Handle != 0;

    public int RecordedCommands { get; private set; }
    public int Barriers { get; private set; }
    public long Submits { get; private set; }
    public bool Profiling { get; set; }
    /// <summary>GPU time of each recorded command (timestamps around it), collected by flushes while profiling; clear it yourself.</summary>
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
        var pci = new CommandPoolCreateInfo(flags: CommandPoolCreateFlags.TransientBit, queueFamilyIndex: device.QueueFamily);
        CommandPool pool;
        VulkanApi.Check(_api.CreateCommandPool(device.Handle, &pci, null, &pool), "vkCreateCommandPool");
        _pool = pool;
        var ai = new CommandBufferAllocateInfo(commandPool: _pool, level: CommandBufferLevel.Primary, commandBufferCount: 1);
        CommandBuffer cmd;
        VulkanApi.Check(_api.AllocateCommandBuffers(device.Handle, &ai, &cmd), "vkAllocateCommandBuffers");
        _cmd = cmd;
        var fci = new FenceCreateInfo(sType: StructureType.FenceCreateInfo);
        Fence fence;
        VulkanApi.Check(_api.CreateFence(device.Handle, &fci, null, &fence), "vkCreateFence");
        _fence = fence;
        if (device.Info.Timestamps)
        {
            var qci = new QueryPoolCreateInfo(queryType: QueryType.Timestamp, queryCount: QueryCapacity);
            QueryPool q;
            VulkanApi.Check(_api.CreateQueryPool(device.Handle, &qci, null, &q), "vkCreateQueryPool");
            _queries = q;
        }
    }

    private void Begin()
    {
        if (_recording) return;
        var bi = new CommandBufferBeginInfo(flags: CommandBufferUsageFlags.OneTimeSubmitBit);
        VulkanApi.Check(_api.BeginCommandBuffer(_cmd, &bi), "vkBeginCommandBuffer");
        if (HasQueries)
        {
            _api.CmdResetQueryPool(_cmd, _queries, 0, QueryCapacity);
            _api.CmdWriteTimestamp(_cmd, PipelineStageFlags.TopOfPipeBit, _queries, SubmitStartQuery);
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
        if (Profiling && HasQueries && _queryLabels.Count * 2 + 2 > SubmitStartQuery) Flush();
        Begin();
        if (_hazards.Access(reads, writes)) EmitBarrier();
        if (Profiling && HasQueries)
            _api.CmdWriteTimestamp(_cmd, PipelineStageFlags.BottomOfPipeBit, _queries, (uint)(_queryLabels.Count * 2));
    }

    private void AfterCommand(string label)
    {
        if (Profiling && HasQueries)
        {
            _api.CmdWriteTimestamp(_cmd, PipelineStageFlags.BottomOfPipeBit, _queries, (uint)(_queryLabels.Count * 2 + 1));
            _queryLabels.Add(label);
        }
        RecordedCommands++;
    }

    private void EmitBarrier()
    {
        var mb = new MemoryBarrier(
            srcAccessMask: AccessFlags.ShaderWriteBit | AccessFlags.TransferWriteBit,
            dstAccessMask: AccessFlags.ShaderReadBit | AccessFlags.ShaderWriteBit | AccessFlags.TransferReadBit | AccessFlags.TransferWriteBit);
        const PipelineStageFlags stages = PipelineStageFlags.ComputeShaderBit | PipelineStageFlags.TransferBit;
        _api.CmdPipelineBarrier(_cmd, stages, stages, 0, 1, &mb, 0, null, 0, null);
        Barriers++;
    }

    /// <summary>Records one dispatch. <typeparamref name="TPush"/> mirrors the shader's push-constant block: its size is
    /// checked at every dispatch, its fields against the SPIR-V member offsets the first time it meets the kernel.</summary>
    public void Dispatch<TPush>(Kernel kernel, in TPush push, uint groupsX, uint groupsY, uint groupsZ,
        ReadOnlySpan<BufferRange> reads, ReadOnlySpan<BufferRange> writes, string? label = null) where TPush : unmanaged
    {
        uint size = (uint)sizeof(TPush);
        // The C# struct must cover the block exactly, up to its own trailing alignment padding.
        if (size < kernel.PushConstantBytes || size - kernel.PushConstantBytes >= 8)
            throw new InvalidOperationException($"Kernel {kernel}: push-constant struct {typeof(TPush).Name} is {size} bytes but the shader's block is {kernel.PushConstantBytes}.");
        if (!ReferenceEquals(kernel.CheckedPush, typeof(TPush)))
        {
            PushConstantLayout.Check(kernel, typeof(TPush));
            kernel.CheckedPush = typeof(TPush);
        }
        var lim = _device.Info.MaxWorkgroupCount;
        if (groupsX > lim[0] || groupsY > lim[1] || groupsZ > lim[2])
            throw new InvalidOperationException($"Kernel {kernel}: {groupsX}x{groupsY}x{groupsZ} workgroups exceed the device limit {lim[0]}x{lim[1]}x{lim[2]}.");
        if (groupsX == 0 || groupsY == 0 || groupsZ == 0) return;
        label ??= kernel.ToString();
        BeforeCommand(reads, writes, label);
        _api.CmdBindPipeline(_cmd, PipelineBindPoint.Compute, kernel.Pipeline);
        if (kernel.PushConstantBytes > 0)
        {
            var copy = push;
            _api.CmdPushConstants(_cmd, kernel.Layout, ShaderStageFlags.ComputeBit, 0, kernel.PushConstantBytes, &copy);
        }
        _api.CmdDispatch(_cmd, groupsX, groupsY, groupsZ);
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
        var region = new BufferCopy(srcOffset: src.Offset, dstOffset: dst.Offset, size: src.Size);
        _api.CmdCopyBuffer(_cmd, src.Block.Buffer, dst.Block.Buffer, 1, &region);
        AfterCommand("copy");
    }

    /// <summary>Records a fill of dst with a repeated 32-bit pattern (vkCmdFillBuffer: a memset on the device).</summary>
    public void FillBuffer(BufferRange dst, uint pattern)
    {
        if (dst.Size == 0) return;
        if (dst.Offset % 4 != 0 || dst.Size % 4 != 0) throw new ArgumentException($"FillBuffer: offset {dst.Offset} and size {dst.Size} must be multiples of 4.");
        ReadOnlySpan<BufferRange> w = [dst];
        BeforeCommand([], w, "fill");
        _api.CmdFillBuffer(_cmd, dst.Block.Buffer, dst.Offset, dst.Size, pattern);
        AfterCommand("fill");
    }

    /// <summary>Submits what was recorded and waits for it. A no-op when nothing was recorded.</summary>
    public void Flush()
    {
        if (!_recording) { RunAfterCompletion(); return; }
        // Make every device write visible to the host before the fence signals.
        var mb = new MemoryBarrier(srcAccessMask: AccessFlags.ShaderWriteBit | AccessFlags.TransferWriteBit, dstAccessMask: AccessFlags.HostReadBit);
        _api.CmdPipelineBarrier(_cmd, PipelineStageFlags.ComputeShaderBit | PipelineStageFlags.TransferBit, PipelineStageFlags.HostBit,
            0, 1, &mb, 0, null, 0, null);
        if (HasQueries) _api.CmdWriteTimestamp(_cmd, PipelineStageFlags.BottomOfPipeBit, _queries, SubmitEndQuery);
        VulkanApi.Check(_api.EndCommandBuffer(_cmd), "vkEndCommandBuffer");
        _recording = false;
        var cmd = _cmd;
        var si = new SubmitInfo(commandBufferCount: 1, pCommandBuffers: &cmd);
        var fence = _fence;
        VulkanApi.Check(_api.QueueSubmit(_device.Queue, 1, &si, fence), "vkQueueSubmit");
        VulkanApi.Check(_api.WaitForFences(_device.Handle, 1, &fence, true, ulong.MaxValue), "vkWaitForFences");
        VulkanApi.Check(_api.ResetFences(_device.Handle, 1, &fence), "vkResetFences");
        Submits++;
        if (HasQueries) ReadSubmitTime();
        if (_queryLabels.Count > 0) ReadTimestamps();
        VulkanApi.Check(_api.ResetCommandPool(_device.Handle, _pool, 0), "vkResetCommandPool");
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
        VulkanApi.Check(_api.GetQueryPoolResults(_device.Handle, _queries, SubmitStartQuery, 2, 16, v, 8,
            QueryResultFlags.Result64Bit | QueryResultFlags.ResultWaitBit), "vkGetQueryPoolResults");
        ulong mask = _device.TimestampMask;
        BusySeconds += (((v[1] & mask) - (v[0] & mask)) & mask) * _device.Info.TimestampPeriodNs * 1e-9;
    }

    private void ReadTimestamps()
    {
        int n = _queryLabels.Count * 2;
        var values = new ulong[n];
        fixed (ulong* v = values)
            VulkanApi.Check(_api.GetQueryPoolResults(_device.Handle, _queries, 0, (uint)n, (nuint)(n * 8), v, 8,
                QueryResultFlags.Result64Bit | QueryResultFlags.ResultWaitBit), "vkGetQueryPoolResults");
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
        if (_pool.Handle == 0) return;
        if (_recording) Flush();
        var dev = _device.Handle;
        if (HasQueries) _api.DestroyQueryPool(dev, _queries, null);
        _api.DestroyFence(dev, _fence, null);
        _api.DestroyCommandPool(dev, _pool, null);
        _pool = default;
    }
}
