using System.Reflection;
using System.Runtime.InteropServices;

namespace EditRuntime.Vulkan;

/// <summary>
/// Checks a C# push-constant mirror struct against its shader's block, member by member: the same
/// number of members, and each field at the offset the SPIR-V decorates, of the same size and kind
/// (float, int, uint, pointer ↔ float, int, uint, ulong). A block of the right size with two members
/// swapped or one missing is caught here, not by a wrong result.
/// </summary>
public static class PushConstantLayout
{
    /// <summary>Throws an InvalidOperationException naming the kernel, the struct, the member index and both offsets
    /// at the first difference.</summary>
    public static void Check(Kernel kernel, Type mirror)
    {
        var members = kernel.PushMembers;
        var fields = mirror.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)
            .Select(f => (Field: f, Offset: (uint)Marshal.OffsetOf(mirror, f.Name)))
            .OrderBy(f => f.Offset).ToArray();
        string where = $"Kernel {kernel}: push-constant struct {mirror.Name}";
        for (int i = 0; i < Math.Max(fields.Length, members.Length); i++)
        {
            if (i >= fields.Length)
                throw new InvalidOperationException($"{where} has {fields.Length} fields but the shader's block has {members.Length} members (member {i}: {members[i]} has no field).");
            var (f, offset) = fields[i];
            var (kind, size) = KindOf(f.FieldType);
            string field = $"{SpirvReflection.KindName(kind, size)} at offset {offset}";
            if (i >= members.Length)
                throw new InvalidOperationException($"{where} has {fields.Length} fields but the shader's block has {members.Length} members (field {i} {f.Name}: {field} has no member).");
            var m = members[i];
            if (m.Offset != offset || m.Size != size || m.Kind != kind)
                throw new InvalidOperationException($"{where}: member {i} ({f.Name}) is {field} in C# but {m} in the shader.");
        }
    }

    private static (SpirvReflection.ScalarKind, uint) KindOf(Type t)
    {
        uint size = (uint)Marshal.SizeOf(t);
        if (t == typeof(float) || t == typeof(double)) return (SpirvReflection.ScalarKind.Float, size);
        if (t == typeof(int) || t == typeof(short) || t == typeof(sbyte)) return (SpirvReflection.ScalarKind.Int, size);
        if (t == typeof(uint) || t == typeof(ushort) || t == typeof(byte)) return (SpirvReflection.ScalarKind.UInt, size);
        // Tensors are passed as buffer device addresses: a ulong on the host, a PhysicalStorageBuffer pointer in the shader.
        if (t == typeof(ulong)) return (SpirvReflection.ScalarKind.Pointer, size);
        return (SpirvReflection.ScalarKind.Other, size);
    }
}
