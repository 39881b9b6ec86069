using System.Reflection;
using EditRuntime.Backends;
using EditRuntime.Torch;
using EditRuntime.Vulkan;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>Editor op interfaces beside the core contract: both backends implement them, and a backend that does not
/// is refused loudly, naming itself and the interface.</summary>
public sealed class BackendOpsTests : GpuTest
{
    /// <summary>An IBackend that implements nothing else (a proxy: only Name answers).</summary>
    public class CoreOnlyBackend : DispatchProxy
    {
        protected override object? Invoke(MethodInfo? method, object?[]? args) =>
            method?.Name == "get_Name" ? "core-only" : throw new NotImplementedException(method?.Name);
    }

    [Test]
    public void Both_backends_implement_the_editor_op_interfaces()
    {
        using var vulkan = new VulkanBackend(Device);
        using var torch = new TorchBackend();
        foreach (IBackend be in new IBackend[] { vulkan, torch })
        {
            Assert.That(be.Ops<ILoraOps>(), Is.SameAs(be), be.Name);
            Assert.That(be.Ops<IMoEOps>(), Is.SameAs(be), be.Name);
        }
    }

    [Test]
    public void A_backend_without_an_op_interface_is_refused_by_name()
    {
        var be = DispatchProxy.Create<IBackend, CoreOnlyBackend>();
        var e = Assert.Throws<UnsupportedOpException>(() => be.Ops<IMoEOps>())!;
        Assert.That(e.Message, Does.Contain("core-only backend").And.Contain("IMoEOps"));
        Assert.That(e.BackendName, Is.EqualTo("core-only"));
        e = Assert.Throws<UnsupportedOpException>(() => be.Ops<ILoraOps>())!;
        Assert.That(e.Message, Does.Contain("ILoraOps"));
    }
}
