using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Silk.NET.Core;
using Silk.NET.Vulkan;

namespace EditRuntime.Vulkan;

/// <summary>
/// Collects messages from VK_EXT_debug_utils (the validation layer's warnings and errors).
/// Tests assert it stays empty; the CLI prints what it holds.
/// </summary>
public static unsafe class ValidationLog
{
    private static readonly ConcurrentQueue<string> s_messages = new();

    public static int Count => s_messages.Count;

    public static IReadOnlyList<string> Messages => s_messages.ToArray();

    /// <summary>Removes and returns every message collected so far.</summary>
    public static List<string> Drain()
    {
        var list = new List<string>();
        while (s_messages.TryDequeue(out var m)) list.Add(m);
        return list;
    }

    /// <summary>Echo each message to stderr as it arrives (the CLI turns this on).</summary>
    public static bool EchoToStderr { get; set; }

    [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
    internal static Bool32 Callback(DebugUtilsMessageSeverityFlagsEXT severity, DebugUtilsMessageTypeFlagsEXT types, DebugUtilsMessengerCallbackDataEXT* data, void* user)
    {
        string sev = (severity & DebugUtilsMessageSeverityFlagsEXT.ErrorBitExt) != 0 ? "error"
            : (severity & DebugUtilsMessageSeverityFlagsEXT.WarningBitExt) != 0 ? "warning" : "info";
        string msg = data->PMessage != null ? Marshal.PtrToStringUTF8((nint)data->PMessage) ?? "" : "";
        string id = data->PMessageIdName != null ? Marshal.PtrToStringUTF8((nint)data->PMessageIdName) ?? "" : "";
        var line = $"[vulkan {sev}] {id}: {msg}";
        s_messages.Enqueue(line);
        if (EchoToStderr) Console.Error.WriteLine(line);
        return false; // VK_FALSE: never abort the call
    }
}
