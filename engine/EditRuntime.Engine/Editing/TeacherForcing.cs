using EditRuntime.Models;

namespace EditRuntime.Editing;

/// <summary>
/// A teacher-forced batch: each row is prompt + target without its last token, and the target of each
/// position is the next target token from the prompt's last token on (<see cref="TeacherForcing.Ignored"/>
/// elsewhere), so the cross-entropy of <see cref="ILanguageModel.Loss"/> is that of the target after the prompt.
/// </summary>
public sealed class TeacherForcedBatch
{
    internal TeacherForcedBatch(TokenBatch batch, int[] targets, IReadOnlyList<(int[] Prompt, int[] Target)> pairs, int[] readAt)
    {
        Batch = batch;
        Targets = targets;
        Pairs = pairs;
        ReadAt = readAt;
    }

    // Built on first use: only editors with read rows or a logit-row lookup need them (every gradient-trained editor
    // builds batches; most never ask).
    private int[]? _selection, _logitRow;
    private int _logitRows;

    /// <summary>The rows, right-padded, with their prompt lengths (adapters that key on the last prompt token read them).</summary>
    public TokenBatch Batch { get; }
    /// <summary>(B·T) the token each position must predict, or <see cref="TeacherForcing.Ignored"/>.</summary>
    public int[] Targets { get; }
    /// <summary>The (prompt, target) token ids of each row.</summary>
    public IReadOnlyList<(int[] Prompt, int[] Target)> Pairs { get; }

    /// <summary>The positions t of row <paramref name="b"/> that predict its target tokens (prompt length − 1, ...).</summary>
    public int[] TargetPositions(int b) => Enumerable.Range(Pairs[b].Prompt.Length - 1, Pairs[b].Target.Length).ToArray();

    /// <summary>Per row, the position whose logits a read row contributes (−1: none; see <see cref="TeacherForcing.FromRows"/>).</summary>
    public int[] ReadAt { get; }

    /// <summary>(B·T) <see cref="Targets"/> with each read row's position marked <see cref="TeacherForcing.ReadOnly"/>: what
    /// <see cref="ILanguageModel.TargetLogits"/> takes to return the logits of every target position and every read
    /// position (a cross-entropy needs <see cref="Targets"/>, which leaves the read positions out). Without read rows
    /// it is <see cref="Targets"/> itself.</summary>
    public int[] Selection
    {
        get
        {
            if (_selection is not null) return _selection;
            if (ReadAt.All(at => at < 0)) return _selection = Targets;
            var s = (int[])Targets.Clone();
            for (int b = 0; b < ReadAt.Length; b++)
                if (ReadAt[b] >= 0 && s[b * Batch.T + ReadAt[b]] == TeacherForcing.Ignored) s[b * Batch.T + ReadAt[b]] = TeacherForcing.ReadOnly;
            return _selection = s;
        }
    }

    /// <summary>How many rows <see cref="ILanguageModel.TargetLogits"/> returns for <see cref="Selection"/>.</summary>
    public int LogitRows { get { LogitIndex(); return _logitRows; } }

    /// <summary>Where position <paramref name="t"/> of row <paramref name="b"/> sits among the logits
    /// <see cref="ILanguageModel.TargetLogits"/> returns for <see cref="Selection"/> (they come in position order).</summary>
    public int LogitRow(int b, int t)
    {
        int i = LogitIndex()[b * Batch.T + t];
        return i >= 0 ? i : throw new ArgumentOutOfRangeException(nameof(t), $"Row {b}, position {t} is neither a target nor a read position.");
    }

    private int[] LogitIndex()
    {
        if (_logitRow is not null) return _logitRow;
        var sel = Selection;
        var index = new int[sel.Length];
        int n = 0;
        for (int i = 0; i < sel.Length; i++) index[i] = sel[i] == TeacherForcing.Ignored ? -1 : n++;
        _logitRows = n;
        return _logitRow = index;
    }
}

/// <summary>A row of a mixed teacher-forced batch: a prompt with its target, or (empty target) a prompt whose logits
/// are only read, at position <see cref="ReadAt"/> (a KL term's prompt).</summary>
public readonly record struct ForcedRow(int[] Prompt, int[] Target, int ReadAt = -1)
{
    /// <summary>A prompt whose logits are read at <paramref name="position"/> (no target).</summary>
    public static ForcedRow Read(int[] prompt, int position) => new(prompt, [], position);
}

/// <summary>Builds the teacher-forced batch every gradient-trained editor learns its edits from.</summary>
public static class TeacherForcing
{
    /// <summary>The target of a position without one (the cross-entropy's ignore index).</summary>
    public const int Ignored = -100;

    /// <summary>The placeholder a read position carries in <see cref="TeacherForcedBatch.Selection"/> (any token id would
    /// do: only the selection reads it).</summary>
    public const int ReadOnly = 0;

    /// <summary>target_new after each request's prompt.</summary>
    public static TeacherForcedBatch Build(EditorContext context, IEnumerable<EditRequest> requests) =>
        Build(context, requests.Select(r => (r.Prompt, r.TargetNew)));

    /// <summary>Each target after its prompt, tokenised as the model expects (<see cref="EditorContext.Encode"/>).</summary>
    public static TeacherForcedBatch Build(EditorContext context, IEnumerable<(string Prompt, string Target)> pairs) =>
        FromTokens(pairs.Select(p => context.Encode(p.Prompt, p.Target)).ToList());

    /// <summary>From token ids: every prompt and target needs at least one token.</summary>
    public static TeacherForcedBatch FromTokens(IReadOnlyList<(int[] Prompt, int[] Target)> pairs)
    {
        if (pairs.Count == 0) throw new ArgumentException("A teacher-forced batch needs at least one (prompt, target).");
        foreach (var (p, t) in pairs)
            if (p.Length == 0 || t.Length == 0) throw new ArgumentException("Teacher forcing: every prompt and every target needs at least one token.");
        return FromRows(pairs.Select(p => new ForcedRow(p.Prompt, p.Target)).ToList());
    }

    /// <summary>Teacher-forced rows (prompt + target) and read rows (a prompt and the position whose logits a loss
    /// other than the cross-entropy reads, <see cref="ForcedRow.Read"/>) in one batch, in the given order. A read
    /// position may also be a target position of its row.</summary>
    public static TeacherForcedBatch FromRows(IReadOnlyList<ForcedRow> rows)
    {
        if (rows.Count == 0) throw new ArgumentException("A teacher-forced batch needs at least one row.");
        for (int b = 0; b < rows.Count; b++)
        {
            var (p, t, at) = rows[b];
            if (p.Length == 0) throw new ArgumentException($"Teacher forcing: row {b} has an empty prompt.");
            if (t.Length == 0 && at < 0) throw new ArgumentException($"Teacher forcing: row {b} has neither a target nor a read position.");
            if (at >= p.Length + Math.Max(0, t.Length - 1)) throw new ArgumentException($"Teacher forcing: row {b} reads position {at}, the row has {p.Length + Math.Max(0, t.Length - 1)} tokens.");
        }
        var batch = new TokenBatch(rows.Select(r => r.Target.Length == 0 ? r.Prompt : r.Prompt.Concat(r.Target[..^1]).ToArray()).ToList(),
            promptLengths: rows.Select(r => r.Prompt.Length).ToArray());
        var targets = new int[batch.B * batch.T];
        Array.Fill(targets, Ignored);
        for (int b = 0; b < batch.B; b++)
            for (int j = 0; j < rows[b].Target.Length; j++)
                targets[b * batch.T + rows[b].Prompt.Length - 1 + j] = rows[b].Target[j];
        return new TeacherForcedBatch(batch, targets, rows.Select(r => (r.Prompt, r.Target)).ToList(), rows.Select(r => r.ReadAt).ToArray());
    }
}
