using EditRuntime.Backends;
using EditRuntime.Vulkan;

namespace EditRuntime.Lua;

/// <summary>Limits and wiring of one <see cref="LuaHost"/>.</summary>
public sealed record LuaHostOptions
{
    public const long DefaultMaxInstructions = 1_000_000_000;
    public const long DefaultMemoryLimitBytes = 512L << 20;
    public const long DefaultTensorMemoryLimitBytes = 4L << 30;

    /// <summary>Lua VM instructions one run (a script, or one REPL input) may execute; 0 = no limit.
    /// Counted in steps of <see cref="LuaHost.HookInterval"/> by a count hook.</summary>
    public long MaxInstructions { get; init; } = DefaultMaxInstructions;

    /// <summary>Wall-clock seconds one run (a script, or one REPL input) may take, rt.* calls and library functions
    /// included; 0 = no limit. Checked with the instruction budget (every <see cref="LuaHost.HookInterval"/> instructions,
    /// every few thousand pattern steps) and when an rt.* call returns.</summary>
    public double MaxSeconds { get; init; }

    /// <summary>Bytes the Lua heap may hold (every table, string and closure of the script). An allocation that would
    /// take the heap past the limit is refused (after a full collection) and the script stops with the limit's message.</summary>
    public long MemoryLimitBytes { get; init; } = DefaultMemoryLimitBytes;

    /// <summary>Bytes of tensors the script may own at once (rt.tensor results, gradients, activations; not the model's weights).</summary>
    public long TensorMemoryLimitBytes { get; init; } = DefaultTensorMemoryLimitBytes;

    /// <summary>Where print() and rt output go.</summary>
    public TextWriter Output { get; init; } = Console.Out;

    /// <summary>Backend used by rt.model.load and rt.tensor when the script selects none: "vulkan" or "torch".</summary>
    public string DefaultBackend { get; init; } = "vulkan";

    /// <summary>Vulkan device choice and validation for the Vulkan backend.</summary>
    public DeviceOptions? Device { get; init; }

    /// <summary>Builds a backend by name (null: <see cref="EditRuntime.Backends.BackendFactory"/> with <see cref="Device"/>; tests replace it).</summary>
    public Func<string, IBackend>? BackendFactory { get; init; }

    /// <summary>Directories the script may read (models, data, editor states) besides the defaults: the working
    /// directory, the script's directory, the built-in models and the temporary directory.</summary>
    public IReadOnlyList<string> ReadRoots { get; init; } = [];

    /// <summary>Directories the script may write (reports, editor states) besides the defaults: the working
    /// directory and the temporary directory.</summary>
    public IReadOnlyList<string> WriteRoots { get; init; } = [];
}

/// <summary>A script error as the user sees it: <see cref="Message"/> is "file.lua:LINE: message".</summary>
public sealed class LuaScriptException(LuaErrorKind kind, string message, string? traceback)
    : Exception(message)
{
    public LuaErrorKind Kind { get; } = kind;
    /// <summary>"stack traceback:" and the script's frames (host-internal frames removed), or null for syntax errors.</summary>
    public string? Traceback { get; } = traceback;

    /// <summary>Message and traceback, as printed by `editrt run`.</summary>
    public string Report => Traceback is null ? Message : Message + "\n" + Traceback;
}

public enum LuaErrorKind { Syntax, Runtime, InstructionBudget, MemoryLimit, TimeLimit }
