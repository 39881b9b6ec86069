#pragma warning disable CS0649 // push-constant test structs are never written
using EditRuntime.Vulkan;
using NUnit.Framework;
using Silk.NET.Vulkan;

namespace EditRuntime.Tests;

public sealed class HazardTrackerTests
{
    private static readonly MemoryBlock B1 = NewBlock(), B2 = NewBlock();

    private static MemoryBlock NewBlock() =>
        (MemoryBlock)Activator.CreateInstance(typeof(MemoryBlock), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance,
            null, new object[] { 1UL << 20, false }, null)!;

    [Test]
    public void Barriers_only_for_real_hazards()
    {
        var h = new HazardTracker();
        var x = new BufferRange(B1, 0, 100);
        var y = new BufferRange(B1, 256, 100);
        var z = new BufferRange(B2, 0, 100);
        Assert.That(h.Access([], [x]), Is.False, "first write");
        Assert.That(h.Access([z], [y]), Is.False, "independent ranges");
        Assert.That(h.Access([x], [z]), Is.True, "read after write (x)");
        Assert.That(h.Access([x], [y]), Is.False, "x and z were synchronised; y's earlier write was too");
        Assert.That(h.Access([], [x]), Is.True, "write after read (x)");
        Assert.That(h.Access([], [x]), Is.True, "write after write (x)");
        Assert.That(h.Access([new BufferRange(B1, 50, 10)], []), Is.True, "overlapping sub-range");
        Assert.That(h.Access([new BufferRange(B1, 100, 10)], []), Is.False, "adjacent, not overlapping");
    }
}

public sealed class CommandStreamTests : GpuTest
{
    [Test]
    public void Dependent_dispatches_run_in_one_submit_with_barriers()
    {
        Device.Stream.Flush();
        using var x = new GpuTensor(Device, 999);
        Ops.Fill(x, 1f);
        long submits = Device.Stream.Submits;
        int barriers = Device.Stream.Barriers;
        for (int i = 0; i < 100; i++) Ops.Scale(x, 1.01f, x);
        Assert.That(Device.Stream.Submits, Is.EqualTo(submits), "nothing submitted while recording");
        var h = x.ToArray();
        Assert.That(Device.Stream.Submits, Is.EqualTo(submits + 1), "one submit when the host reads");
        Assert.That(Device.Stream.Barriers - barriers, Is.EqualTo(100), "each in-place scale depends on the one before (and the first on the fill)");
        AssertClose(h, Enumerable.Repeat(Math.Pow(1.01f, 100), 999).ToArray(), 1e-5, "1.01^100");
    }

    [Test]
    public void Memory_freed_under_unsubmitted_work_is_bounded_by_the_deferred_free_limit()
    {
        // 24 temporaries of 8 MiB, each filled, added into an accumulator and disposed, with no host read in between:
        // without the limit all 192 MiB would wait for the one submit at the end.
        const int n = 2 << 20, rounds = 24;
        Device.Stream.Flush();
        using var acc = new GpuTensor(Device, n);
        Ops.Fill(acc, 0f);
        ulong before = Device.Stats.InUseBytes;
        Device.Stats.PeakInUseBytes = before;
        long flushes = Device.Stats.DeferredFlushes;
        for (int i = 0; i < rounds; i++)
        {
            using var t = new GpuTensor(Device, n);
            Ops.Fill(t, i + 1);
            Ops.Axpy(1f, t, acc);
        }
        ulong limit = new DeviceOptions().DeferredFreeLimitBytes, bytes = 4UL * n;
        Assert.That(Device.Stats.PeakInUseBytes - before, Is.LessThanOrEqualTo(limit + 2 * bytes),
            $"freed temporaries held at most the limit ({limit >> 20} MiB) plus the one being freed and the one allocated");
        Assert.That(Device.Stats.DeferredFlushes, Is.GreaterThan(flushes), "the limit forced a submit");
        var h = acc.ToArray();
        Assert.That(h, Is.All.EqualTo(rounds * (rounds + 1) / 2f), "the work across the forced submits is the work asked for");
        Assert.That(Device.Stats.DeferredFreeBytes, Is.Zero, "nothing waits once the stream is flushed");
    }

    [Test]
    public void Independent_dispatches_need_no_barrier()
    {
        Device.Stream.Flush();
        var ts = Enumerable.Range(0, 10).Select(_ => new GpuTensor(Device, 257)).ToList();
        int barriers = Device.Stream.Barriers;
        foreach (var t in ts) Ops.Fill(t, 3f);
        Assert.That(Device.Stream.Barriers - barriers, Is.Zero);
        foreach (var t in ts) { Assert.That(t.ToArray(), Is.All.EqualTo(3f)); t.Dispose(); }
    }

    [Test]
    public void Timestamps_time_every_dispatch()
    {
        Assert.That(Device.Info.Timestamps, Is.True, "this device reports no timestamp support on its compute queue");
        using var a = RandomTensor(128, 128);
        using var b = RandomTensor(128, 128);
        using var c = new GpuTensor(Device, 128, 128);
        Device.Stream.Flush();
        Device.Stream.Timings.Clear();
        Device.Stream.Profiling = true;
        try
        {
            Ops.Matmul(a, b, c);
            Ops.Scale(c, 2f, c);
            Device.Stream.Flush();
        }
        finally { Device.Stream.Profiling = false; }
        var t = Device.Stream.Timings;
        Assert.That(t.Select(x => x.Label), Is.EqualTo(new[] { "core/matmul<0,0,1>", "core/scale" }));
        Assert.That(t.All(x => x.Milliseconds >= 0 && double.IsFinite(x.Milliseconds)), Is.True);
        Assert.That(t[0].Milliseconds, Is.GreaterThan(0), "a 128^3 matmul takes measurable time");
    }

    [Test]
    public void Push_constant_struct_of_the_wrong_size_is_refused()
    {
        var k = Device.Kernels.Get("core/scale");
        var e = Assert.Throws<InvalidOperationException>(() =>
            Device.Stream.Dispatch(k, new WrongPush(), 1, 1, 1, [], []))!;
        Assert.That(e.Message, Does.Contain("push-constant struct WrongPush is 8 bytes but the shader's block is 24"));
    }

    private struct WrongPush { public ulong X; }

    [Test]
    public void Push_constant_struct_with_members_out_of_order_is_refused()
    {
        // Right size (24 bytes), but alpha and n swapped: only the member offsets and kinds tell.
        var k = Device.Kernels.Get("core/scale");
        var e = Assert.Throws<InvalidOperationException>(() =>
            Device.Stream.Dispatch(k, new SwappedScalePush(), 1, 1, 1, [], []))!;
        Assert.That(e.Message, Does.Contain("Kernel core/scale: push-constant struct SwappedScalePush: member 2 (Alpha) is float at offset 16 in C# but uint at offset 16 in the shader"));
    }

    private struct SwappedScalePush { public ulong X, Y; public float Alpha; public uint N; }

    [Test]
    public void Push_constant_struct_missing_a_member_is_refused()
    {
        // 20 bytes of fields pad to 24, the block's size, but the shader's last member (cols) has no field.
        var k = Device.Kernels.Get("core/row_sum");
        var e = Assert.Throws<InvalidOperationException>(() =>
            Device.Stream.Dispatch(k, new RowPushWithoutCols(), 1, 1, 1, [], []))!;
        Assert.That(e.Message, Does.Contain("push-constant struct RowPushWithoutCols has 3 fields but the shader's block has 4 members (member 3: uint at offset 20 has no field)"));
    }

    private struct RowPushWithoutCols { public ulong X, Y; public uint Rows; }

    [Test]
    public void Too_many_workgroups_is_refused()
    {
        var k = Device.Kernels.Get("core/scale");
        Assert.Throws<InvalidOperationException>(() =>
            Device.Stream.Dispatch(k, new ScaleLike(), Device.Info.MaxWorkgroupCount[0] + 1, 1, 1, [], []));
    }

    private struct ScaleLike { public ulong X, Y; public uint N; public float Alpha; }
}

public sealed class KernelCacheTests : GpuTest
{
    [Test]
    public void Pipelines_are_cached_by_shader_and_specialization()
    {
        var a = Device.Kernels.Get("core/matmul", 0, 1, 0);
        var b = Device.Kernels.Get("core/matmul", 0, 1, 0);
        var c = Device.Kernels.Get("core/matmul", 1, 1, 0);
        Assert.That(b, Is.SameAs(a));
        Assert.That(c, Is.Not.SameAs(a));
        Assert.That(c.Pipeline, Is.Not.EqualTo(a.Pipeline));
    }

    [Test]
    public void Unknown_shader_names_the_embedded_ones()
    {
        var e = Assert.Throws<KeyNotFoundException>(() => Device.Kernels.Get("core/nope"))!;
        Assert.That(e.Message, Does.Contain("core/matmul"));
    }

    [Test]
    public void Every_embedded_shader_reflects_and_builds()
    {
        var names = KernelCache.EmbeddedShaders();
        Assert.That(names, Is.SupersetOf(new[] { "core/copy", "core/add", "core/mul", "core/scale", "core/row_sum", "core/row_max", "core/matmul" }));
        foreach (var n in names)
        {
            var info = SpirvReflection.Reflect(KernelCache.LoadSpirv(n), n);
            Assert.That(info.PushConstantBytes, Is.InRange(1u, 128u), n);
            Assert.That(info.PushMembers, Is.Not.Empty, n);
            Assert.That(info.PushMembers.Max(m => m.Offset + m.Size), Is.EqualTo(info.PushConstantBytes), n);
            Assert.That(info.PushMembers.Select(m => m.Offset), Is.Ordered.Ascending, n);
            Assert.That(info.LocalSize[0] * info.LocalSize[1] * info.LocalSize[2], Is.InRange(1u, 1024u), n);
        }
        var mm = SpirvReflection.Reflect(KernelCache.LoadSpirv("core/matmul"), "core/matmul");
        Assert.That(mm.LocalSize, Is.EqualTo(new uint[] { 8, 8, 1 }));
        Assert.That(mm.PushConstantBytes, Is.EqualTo(68u), "3 addresses + 9 uints + 2 floats");
        Assert.That(mm.PushMembers.Select(m => m.Offset), Is.EqualTo(new uint[] { 0, 8, 16, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64 }));
        Assert.That(mm.PushMembers.Select(m => m.Kind), Is.EqualTo(
            Enumerable.Repeat(SpirvReflection.ScalarKind.Pointer, 3).Concat(Enumerable.Repeat(SpirvReflection.ScalarKind.UInt, 9)).Concat(Enumerable.Repeat(SpirvReflection.ScalarKind.Float, 2))));
        Assert.That(mm.LocalSizeSpecIds, Is.EqualTo(new[] { -1, -1, -1 }));
        // layout(local_size_x_id = 0): the specialization constant sets the workgroup size.
        var ln = SpirvReflection.Reflect(KernelCache.LoadSpirv("core/layernorm_forward"), "core/layernorm_forward");
        Assert.That(ln.LocalSizeSpecIds[0], Is.EqualTo(0));
        Assert.That(ln.LocalSize[0], Is.EqualTo(128u), "default");
        Assert.That(Device.Kernels.Get("core/layernorm_forward", 32u).LocalSize, Is.EqualTo(new uint[] { 32, 1, 1 }));
    }
}

public sealed class ValidationLayerTests : GpuTest
{
    [Test]
    public unsafe void The_validation_layer_is_live_and_its_messages_are_caught()
    {
        Assert.That(Device.Instance.ValidationEnabled, Is.True);
        // A deliberately wrong sType: the layer reports it, the driver ignores it.
        var ci = new FenceCreateInfo(sType: StructureType.BufferCreateInfo);
        Fence fence;
        var r = Device.Api.CreateFence(Device.Handle, &ci, null, &fence);
        if (r == Result.Success) Device.Api.DestroyFence(Device.Handle, fence, null);
        var msgs = ValidationLog.Drain();
        Assert.That(msgs, Has.Some.Contains("VUID-VkFenceCreateInfo-sType-sType"), "the validation layer must report the wrong sType");
    }

    [Test]
    public unsafe void Silk_structs_get_their_sType_only_from_the_named_argument_constructors()
    {
        // The pitfall the engine avoids: an object initialiser (or `new T()`) leaves sType at 0, which
        // lavapipe accepts and only the validation layer reports.
        Assert.That(new FenceCreateInfo().SType, Is.EqualTo((StructureType)0));
        Assert.That(new FenceCreateInfo(flags: 0).SType, Is.EqualTo(StructureType.FenceCreateInfo));
        Assert.That(new PhysicalDeviceVulkan12Features(bufferDeviceAddress: true).SType, Is.EqualTo(StructureType.PhysicalDeviceVulkan12Features));
    }
}
