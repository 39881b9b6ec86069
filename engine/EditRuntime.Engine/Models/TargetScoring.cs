using EditRuntime.Autograd;
using EditRuntime.Editing;

namespace EditRuntime.Models;

/// <summary>Teacher-forced scoring of targets after prompts, for any <see cref="ILanguageModel"/> (what
/// <see cref="ILanguageModel.ScoreTargets"/> does): requests sorted by length into chunks within the model's
/// <see cref="ILanguageModel.ScoreLogitBudget"/>, one forward per chunk on the frozen parameters, only the positions
/// that predict a target token through the head.</summary>
public static class TargetScoring
{
    public static TargetScore[] Score(ILanguageModel model, IReadOnlyList<(int[] Prompt, int[] Target)> requests)
    {
        if (requests.Count == 0) return [];
        var seqs = requests.Select(r =>
        {
            if (r.Prompt.Length == 0 || r.Target.Length == 0) throw new ArgumentException("logprob: prompt and target need at least one token each.");
            return r.Prompt.Concat(r.Target[..^1]).ToArray();
        }).ToList();
        var scores = new TargetScore[requests.Count];
        int V = model.Shape.VocabSize;
        var be = model.Backend;
        // Chunks of sequences of similar length (sorted, stable), each within the logit budget.
        var order = Enumerable.Range(0, seqs.Count).OrderBy(i => seqs[i].Length).ToArray();
        for (int start = 0; start < order.Length;)
        {
            int end = start + 1;
            while (end < order.Length && (long)(end - start + 1) * seqs[order[end]].Length * V <= model.ScoreLogitBudget) end++;
            var idx = order[start..end];
            var batch = new TokenBatch(idx.Select(i => seqs[i]).ToList(), promptLengths: idx.Select(i => requests[i].Prompt.Length).ToArray());
            // Only the positions that predict a target token go through the LM head and come back, in position order.
            var targets = Enumerable.Repeat(TeacherForcing.Ignored, batch.B * batch.T).ToArray();
            for (int b = 0; b < idx.Length; b++)
            {
                var (prompt, target) = requests[idx[b]];
                for (int j = 0; j < target.Length; j++) targets[b * batch.T + prompt.Length - 1 + j] = target[j];
            }
            float[] logits;
            using (var tape = new Tape(be))
                logits = be.ToFloatArray(model.TargetLogits(tape, model.Bind(tape, _ => false), batch, targets).Value);
            int r = 0;
            for (int b = 0; b < idx.Length; b++)
            {
                var (prompt, target) = requests[idx[b]];
                var lp = new double[target.Length];
                var hit = new bool[target.Length];
                var top = new int[target.Length];
                for (int j = 0; j < target.Length; j++)
                {
                    var row = logits.AsSpan(r++ * V, V);
                    double max = double.NegativeInfinity;
                    foreach (var z in row) max = Math.Max(max, z);
                    double sum = 0;
                    foreach (var z in row) sum += Math.Exp(z - max);
                    lp[j] = row[target[j]] - max - Math.Log(sum);
                    if (!double.IsFinite(lp[j]))
                        throw new NonFiniteException($"scoring: the log-probability of target token {j} of request {idx[b]} is {lp[j]} (the model's logits are not finite)");
                    top[j] = Gpt2Model.ArgMax(row);
                    hit[j] = top[j] == target[j];
                }
                scores[idx[b]] = new TargetScore(lp, hit, top);
            }
            start = end;
        }
        return scores;
    }
}
