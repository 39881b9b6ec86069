using EditRuntime.Backends;
using EditRuntime.Lua;
using EditRuntime.Vulkan;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>A Lua pipeline on the Vulkan backend (validation layer on): load, generate, edit with FT-L, tensor ops, metrics.</summary>
public sealed class LuaVulkanTests : GpuTest
{
    [Test]
    public void Script_edits_on_the_Vulkan_backend()
    {
        var output = new StringWriter();
        using var h = new LuaHost(new LuaHostOptions
        {
            DefaultBackend = "vulkan",
            Output = output,
            BackendFactory = name => name == "vulkan" ? new VulkanBackend(Device) : throw new ArgumentException("this test runs on Vulkan only"),
        });
        var result = h.Execute("""
            local model = rt.model.load(rt.model.builtin())
            assert(model:info().backend == "vulkan")
            local r = rt.data.synthetic{limit = 4}[4]
            assert(model:generate(r.prompt, {max_tokens = 2}):match("^ " .. r.target_true), "the unedited model knows the fact")
            local baseline = rt.eval.baseline(model, {r})
            local ed = rt.editor.new("ft-l", {model = model, hparams = {steps = 15}})
            ed:edit(r)
            local m = rt.eval.metrics(model, {r}, baseline)
            print(("ES %.2f GS %.2f LS %.2f"):format(m.es, m.gs, m.ls))
            assert(m.es == 1 and m.ls == 1, "the edit holds and the neighbour does not move")
            local k = model:activations(r.prompt, "h.2.mlp.c_proj")
            local w = model:weight("h.2.mlp.c_proj.weight")
            local y = k:matmul(w)
            assert(y:shape()[1] == 1 and y:shape()[2] == 192 and y:backend() == "vulkan")
            local loss, g = model:grad({r}, {"h.2.mlp.c_proj.weight"})
            assert(loss < 1 and g["h.2.mlp.c_proj.weight"]:norm() >= 0)
            ed:rollback()
            return model:generate(r.prompt, {max_tokens = 2})
            """, "@vulkan_test.lua");
        TestContext.Out.WriteLine(output + result.Text);
        Assert.That(result.Text, Does.StartWith(" Neplith"), "rollback restores the fact");
        Assert.That(output.ToString(), Does.Contain("ES 1.00"));
    }
}
