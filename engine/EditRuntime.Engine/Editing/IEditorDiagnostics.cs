using System.Text.Json.Nodes;

namespace EditRuntime.Editing;

/// <summary>
/// Optional: an editor that reports what happened inside it (e.g. MOMoE's expert utilisation per edit
/// batch). `editrt eval` prints it and stores it under "diagnostics" in report.json.
/// </summary>
public interface IEditorDiagnostics
{
    JsonObject Diagnostics();
}
