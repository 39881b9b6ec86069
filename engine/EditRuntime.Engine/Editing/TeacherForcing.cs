using EditRuntime.Models;

namespace EditRuntime.Editing;

/// <summary>
/// A teacher-forced batch: each row is prompt + target without its last token, and the target of each
/// position is the next target token from the prompt's last token on (<see cref="TeacherForcing.Ignored"/>
/// elsewhere), so the cross-entropy of <see cref="ILanguageModel.Loss"/> is that of the target after the prompt.
/// </summary>
public sealed class TeacherForcedBatch
{
    internal TeacherForcedBatch(TokenBatch batch, int[] targets, IReadOnlyList<(int[] Prompt, int[] Target)> pairs)
    {
        Batch = batch;
        Targets = targets;
        Pairs = pairs;
    }

    /// <summary>The rows, right-padded, with their prompt lengths (adapters that key on the last prompt token read them).</summary>
    public TokenBatch Batch { get; }
    /// <summary>(B·T) the token each position must predict, or <see cref="TeacherForcing.Ignored"/>.</summary>
    public int[] Targets { get; }
    /// <summary>The (prompt, target) token ids of each row.</summary>
    public IReadOnlyList<(int[] Prompt, int[] Target)> Pairs { get; }

    /// <summary>The positions t of row <paramref name="b"/> that predict its target tokens (prompt length − 1, ...).</summary>
    public int[] TargetPositions(int b) => Enumerable.Range(Pairs[b].Prompt.Length - 1, Pairs[b].Target.Length).ToArray();
}

/// <summary>Builds the teacher-forced batch every gradient-trained editor learns its edits from.</summary>
public static class TeacherForcing
{
    /// <summary>The target of a position without one (the cross-entropy's ignore index).</summary>
    public const int Ignored = -100;

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
        var batch = new TokenBatch(pairs.Select(p => p.Prompt.Concat(p.Target[..^1]).ToArray()).ToList(),
            promptLengths: pairs.Select(p => p.Prompt.Length).ToArray());
        var targets = new int[batch.B * batch.T];
        Array.Fill(targets, Ignored);
        for (int b = 0; b < batch.B; b++)
            for (int j = 0; j < pairs[b].Target.Length; j++)
                targets[b * batch.T + pairs[b].Prompt.Length - 1 + j] = pairs[b].Target[j];
        return new TeacherForcedBatch(batch, targets, pairs);
    }
}
