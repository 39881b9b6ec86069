namespace EditRuntime.Vulkan;

/// <summary>
/// Reads what the host must agree on with a compute shader: its push-constant block (byte size, and
/// each member's offset, size and scalar kind) and its local workgroup size. Used to check the C#
/// mirror structs (<see cref="PushConstantLayout"/>).
/// </summary>
public static class SpirvReflection
{
    private const uint Magic = 0x07230203;
    private const int OpConstant = 43, OpSpecConstant = 50, OpSpecConstantComposite = 51, OpDecorate = 71, OpExecutionMode = 16, OpTypeInt = 21, OpTypeFloat = 22, OpTypeVector = 23,
        OpTypeStruct = 30, OpTypePointer = 32, OpTypeForwardPointer = 39, OpVariable = 59, OpMemberDecorate = 72;
    private const uint ExecutionModeLocalSize = 17, DecorationOffset = 35, StorageClassPushConstant = 9,
        StorageClassPhysicalStorageBuffer = 5349, DecorationSpecId = 1, DecorationBuiltIn = 11, BuiltInWorkgroupSize = 25;

    /// <summary>What a push-constant member holds, as far as the host can tell it apart.</summary>
    public enum ScalarKind { Float, Int, UInt, Pointer, Other }

    /// <summary>One member of the push-constant block: its byte offset (the Offset decoration), byte size and kind.</summary>
    public readonly record struct PushMember(uint Offset, uint Size, ScalarKind Kind)
    {
        public override string ToString() => $"{KindName(Kind, Size)} at offset {Offset}";
    }

    /// <summary>"uint", "float", "pointer", ... with the size where it is not the 4 bytes of the common case.</summary>
    public static string KindName(ScalarKind kind, uint size) => kind switch
    {
        ScalarKind.Pointer => "pointer (8 bytes)",
        ScalarKind.Other => $"{size}-byte aggregate",
        _ => kind.ToString().ToLowerInvariant() + (size == 4 ? "" : $"{size * 8}"),
    };

    /// <param name="PushMembers">The block's members in declaration order (empty without a block).</param>
    /// <param name="LocalSize">Workgroup size with default specialization values.</param>
    /// <param name="LocalSizeSpecIds">Per dimension, the specialization constant id that sets it (layout(local_size_x_id = ...)), or -1.</param>
    public readonly record struct Info(uint PushConstantBytes, PushMember[] PushMembers, uint[] LocalSize, int[] LocalSizeSpecIds)
    {
        /// <summary>The workgroup size once <paramref name="spec"/> (constant i = id i) is applied.</summary>
        public uint[] LocalSizeWith(uint[] spec)
        {
            var size = (uint[])LocalSize.Clone();
            for (int d = 0; d < 3; d++)
                if (LocalSizeSpecIds[d] >= 0 && LocalSizeSpecIds[d] < spec.Length) size[d] = spec[LocalSizeSpecIds[d]];
            return size;
        }
    }

    public static Info Reflect(ReadOnlySpan<uint> words, string name)
    {
        if (words.Length < 5 || words[0] != Magic) throw new InvalidDataException($"{name}: not a SPIR-V module.");
        var scalarSize = new Dictionary<uint, uint>();          // int/float/pointer id -> bytes
        var scalarKind = new Dictionary<uint, ScalarKind>();
        var vectors = new Dictionary<uint, (uint Comp, uint Count)>();
        var structs = new Dictionary<uint, uint[]>();
        var pointers = new Dictionary<uint, (uint Storage, uint Type)>();
        var offsets = new Dictionary<(uint, uint), uint>();
        uint pushPointerType = 0;
        uint[] local = { 1, 1, 1 };
        var constants = new Dictionary<uint, uint>();   // OpConstant / OpSpecConstant id -> value (32-bit)
        var specIds = new Dictionary<uint, int>();       // spec constant id -> SpecId
        var composites = new Dictionary<uint, uint[]>();
        uint workgroupSizeId = 0;
        for (int i = 5; i < words.Length;)
        {
            uint w0 = words[i];
            int count = (int)(w0 >> 16), op = (int)(w0 & 0xffff);
            if (count == 0 || i + count > words.Length) throw new InvalidDataException($"{name}: truncated SPIR-V at word {i}.");
            var ins = words.Slice(i, count);
            switch (op)
            {
                case OpExecutionMode when ins[2] == ExecutionModeLocalSize:
                    local = new[] { ins[3], ins[4], ins[5] };
                    break;
                case OpTypeInt:
                    scalarSize[ins[1]] = ins[2] / 8;
                    scalarKind[ins[1]] = ins[3] != 0 ? ScalarKind.Int : ScalarKind.UInt;
                    break;
                case OpTypeFloat:
                    scalarSize[ins[1]] = ins[2] / 8;
                    scalarKind[ins[1]] = ScalarKind.Float;
                    break;
                case OpTypeVector:
                    vectors[ins[1]] = (ins[2], ins[3]);
                    break;
                case OpTypeStruct:
                    structs[ins[1]] = ins[2..].ToArray();
                    break;
                case OpTypePointer:
                    pointers[ins[1]] = (ins[2], ins[3]);
                    if (ins[2] == StorageClassPhysicalStorageBuffer) { scalarSize[ins[1]] = 8; scalarKind[ins[1]] = ScalarKind.Pointer; }
                    break;
                case OpTypeForwardPointer when ins[2] == StorageClassPhysicalStorageBuffer:
                    scalarSize[ins[1]] = 8;
                    scalarKind[ins[1]] = ScalarKind.Pointer;
                    break;
                case OpConstant when count == 4:
                case OpSpecConstant when count == 4:
                    constants[ins[2]] = ins[3];
                    break;
                case OpSpecConstantComposite:
                    composites[ins[2]] = ins[3..].ToArray();
                    break;
                case OpDecorate when ins[2] == DecorationSpecId:
                    specIds[ins[1]] = (int)ins[3];
                    break;
                case OpDecorate when ins[2] == DecorationBuiltIn && ins[3] == BuiltInWorkgroupSize:
                    workgroupSizeId = ins[1];
                    break;
                case OpVariable when ins[3] == StorageClassPushConstant:
                    pushPointerType = ins[1];
                    break;
                case OpMemberDecorate when ins[3] == DecorationOffset:
                    offsets[(ins[1], ins[2])] = ins[4];
                    break;
            }
            i += count;
        }
        uint push = 0;
        var members = Array.Empty<PushMember>();
        if (pushPointerType != 0)
        {
            uint block = pointers[pushPointerType].Type;
            push = StructSize(block);
            var types = structs[block];
            members = new PushMember[types.Length];
            for (uint m = 0; m < types.Length; m++)
                members[m] = new PushMember(offsets[(block, m)], SizeOf(types[m]), scalarKind.GetValueOrDefault(types[m], ScalarKind.Other));
        }
        int[] localSpec = { -1, -1, -1 };
        // A WorkgroupSize built-in (from local_size_*_id) overrides the LocalSize execution mode.
        if (workgroupSizeId != 0 && composites.TryGetValue(workgroupSizeId, out var parts) && parts.Length == 3)
            for (int d = 0; d < 3; d++)
            {
                if (constants.TryGetValue(parts[d], out var v)) local[d] = v;
                if (specIds.TryGetValue(parts[d], out var sid)) localSpec[d] = sid;
            }
        return new Info(push, members, local, localSpec);

        uint SizeOf(uint type)
        {
            if (scalarSize.TryGetValue(type, out var s)) return s;
            if (vectors.TryGetValue(type, out var v)) return SizeOf(v.Comp) * v.Count;
            if (structs.ContainsKey(type)) return StructSize(type);
            throw new InvalidDataException($"{name}: push-constant member of a type this reflector does not size (id {type}).");
        }

        uint StructSize(uint type)
        {
            uint end = 0;
            var members = structs[type];
            for (uint m = 0; m < members.Length; m++)
            {
                if (!offsets.TryGetValue((type, m), out var off))
                    throw new InvalidDataException($"{name}: push-constant member {m} has no Offset decoration.");
                end = Math.Max(end, off + SizeOf(members[m]));
            }
            return end;
        }
    }
}
