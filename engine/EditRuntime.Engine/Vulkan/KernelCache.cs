using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.InteropServices;
using Silk.NET.Vulkan;

namespace EditRuntime.Vulkan;

/// <summary>A compute pipeline: one shader with one set of specialization constants.</summary>
public sealed class Kernel
{
    public required string Name { get; init; }
    public required uint[] SpecConstants { get; init; }
    public required Pipeline Pipeline { get; init; }
    public required PipelineLayout Layout { get; init; }
    /// <summary>Bytes of the shader's push-constant block (reflected from SPIR-V).</summary>
    public required uint PushConstantBytes { get; init; }
    /// <summary>The block's members (offset, size, kind), reflected from SPIR-V.</summary>
    public required SpirvReflection.PushMember[] PushMembers { get; init; }
    /// <summary>The mirror struct last found to match <see cref="PushMembers"/> (so the check runs once per struct, not per dispatch).</summary>
    internal Type? CheckedPush;
    public required uint[] LocalSize { get; init; }
    public uint Threads => LocalSize[0] * LocalSize[1] * LocalSize[2];
    public override string ToString() => SpecConstants.Length == 0 ? Name : $"{Name}<{string.Join(",", SpecConstants)}>";
}

/// <summary>
/// Compute pipelines keyed by shader name + specialization constants, created on first use.
/// Shaders are the SPIR-V files embedded at build time as "shaders/&lt;dir&gt;/&lt;name&gt;.spv";
/// a kernel is named by "&lt;dir&gt;/&lt;name&gt;", e.g. "core/matmul". Specialization constant i is
/// constant_id = i, 32 bits.
/// </summary>
public sealed unsafe class KernelCache : IDisposable
{
    private readonly VulkanDevice _device;
    private readonly ConcurrentDictionary<string, Kernel> _kernels = new();
    private readonly Dictionary<string, (ShaderModule Module, SpirvReflection.Info Info)> _modules = new();
    private readonly Dictionary<uint, PipelineLayout> _layouts = new();
    private readonly object _lock = new();

    internal KernelCache(VulkanDevice device) => _device = device;

    public int Count => _kernels.Count;

    /// <summary>Names of every shader embedded in the engine ("core/matmul", ...).</summary>
    public static IReadOnlyList<string> EmbeddedShaders() =>
        typeof(KernelCache).Assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith("shaders/") && n.EndsWith(".spv"))
            .Select(n => n["shaders/".Length..^".spv".Length]).OrderBy(n => n).ToList();

    public static uint[] LoadSpirv(string shader)
    {
        using var s = typeof(KernelCache).Assembly.GetManifestResourceStream($"shaders/{shader}.spv")
            ?? throw new KeyNotFoundException($"No shader \"{shader}\" is embedded in the engine (looked for shaders/{shader}.comp at build time). Embedded: {string.Join(", ", EmbeddedShaders())}");
        var bytes = new byte[s.Length];
        s.ReadExactly(bytes);
        return MemoryMarshal.Cast<byte, uint>(bytes).ToArray();
    }

    public Kernel Get(string shader, params uint[] specConstants)
    {
        string key = specConstants.Length == 0 ? shader : shader + "|" + string.Join(",", specConstants);
        if (_kernels.TryGetValue(key, out var k)) return k;
        lock (_lock)
        {
            if (_kernels.TryGetValue(key, out k)) return k;
            k = Create(shader, specConstants);
            _kernels[key] = k;
            return k;
        }
    }

    private Kernel Create(string shader, uint[] spec)
    {
        var api = _device.Api;
        if (!_modules.TryGetValue(shader, out var mod))
        {
            var code = LoadSpirv(shader);
            var info = SpirvReflection.Reflect(code, shader);
            if (info.PushConstantBytes > _device.Info.MaxPushConstantsSize)
                throw new InvalidOperationException($"Shader {shader}: push constants of {info.PushConstantBytes} bytes exceed the device limit of {_device.Info.MaxPushConstantsSize}.");
            ShaderModule module;
            fixed (uint* p = code)
            {
                var ci = new ShaderModuleCreateInfo(codeSize: (nuint)(code.Length * 4), pCode: p);
                VulkanApi.Check(api.CreateShaderModule(_device.Handle, &ci, null, &module), $"vkCreateShaderModule({shader})");
            }
            mod = (module, info);
            _modules[shader] = mod;
        }
        var layout = LayoutFor(mod.Info.PushConstantBytes);
        var entries = stackalloc SpecializationMapEntry[Math.Max(1, spec.Length)];
        for (int i = 0; i < spec.Length; i++) entries[i] = new SpecializationMapEntry(constantID: (uint)i, offset: (uint)(4 * i), size: 4);
        Pipeline pipeline;
        var main = "main\0"u8;
        fixed (uint* data = spec)
        fixed (byte* entry = main)
        {
            var si = new SpecializationInfo(mapEntryCount: (uint)spec.Length, pMapEntries: entries, dataSize: (nuint)(4 * spec.Length), pData: data);
            var ci = new ComputePipelineCreateInfo(
                stage: new PipelineShaderStageCreateInfo(
                    stage: ShaderStageFlags.ComputeBit,
                    module: mod.Module,
                    pName: entry,
                    pSpecializationInfo: spec.Length > 0 ? &si : null),
                layout: layout);
            VulkanApi.Check(api.CreateComputePipelines(_device.Handle, default, 1, &ci, null, &pipeline), $"vkCreateComputePipelines({shader})");
        }
        return new Kernel
        {
            Name = shader, SpecConstants = spec, Pipeline = pipeline, Layout = layout,
            PushConstantBytes = mod.Info.PushConstantBytes, PushMembers = mod.Info.PushMembers, LocalSize = mod.Info.LocalSizeWith(spec),
        };
    }

    private PipelineLayout LayoutFor(uint pushBytes)
    {
        if (_layouts.TryGetValue(pushBytes, out var l)) return l;
        var range = new PushConstantRange(stageFlags: ShaderStageFlags.ComputeBit, offset: 0, size: pushBytes);
        var ci = new PipelineLayoutCreateInfo(pushConstantRangeCount: pushBytes > 0 ? 1u : 0u, pPushConstantRanges: &range);
        VulkanApi.Check(_device.Api.CreatePipelineLayout(_device.Handle, &ci, null, &l), "vkCreatePipelineLayout");
        _layouts[pushBytes] = l;
        return l;
    }

    public void Dispose()
    {
        var api = _device.Api;
        foreach (var k in _kernels.Values) api.DestroyPipeline(_device.Handle, k.Pipeline, null);
        foreach (var m in _modules.Values) api.DestroyShaderModule(_device.Handle, m.Module, null);
        foreach (var l in _layouts.Values) api.DestroyPipelineLayout(_device.Handle, l, null);
        _kernels.Clear(); _modules.Clear(); _layouts.Clear();
    }
}
