namespace EditRuntime.Models;

/// <summary>Teacher-forced accuracy of answers after prompts (the ES/GS measure of METHODS.md).</summary>
public static class TeacherForcedAccuracy
{
    /// <summary>Mean over requests of the fraction of answer tokens that are the argmax, and the fraction of
    /// requests whose every answer token is. The answer is joined as prompt + " " + answer; with
    /// <paramref name="bos"/>, every prompt starts with that token (as the built-in model was trained).</summary>
    public static (double TokenAccuracy, double ExactMatch, int Count) Measure(ILanguageModel model, Func<string, int[]> encode,
        IEnumerable<(string Prompt, string Answer)> items, int? bos = null, int batchSize = 64) =>
        Measure(model, p => bos is int b ? [b, .. encode(p)] : encode(p), encode, items, batchSize);

    /// <summary>As above, with prompts encoded as a model folder feeds them (<see cref="IModelFolder.EncodePrompt"/>).</summary>
    public static (double TokenAccuracy, double ExactMatch, int Count) Measure(ILanguageModel model, IModelFolder folder,
        IEnumerable<(string Prompt, string Answer)> items, int batchSize = 64) =>
        Measure(model, folder.EncodePrompt, folder.Tokenizer.Encode, items, batchSize);

    private static (double TokenAccuracy, double ExactMatch, int Count) Measure(ILanguageModel model, Func<string, int[]> encodePrompt, Func<string, int[]> encode,
        IEnumerable<(string Prompt, string Answer)> items, int batchSize)
    {
        double tok = 0, exact = 0;
        int n = 0;
        foreach (var chunk in items.Chunk(batchSize))
        {
            var reqs = chunk.Select(i => (encodePrompt(i.Prompt), encode(" " + i.Answer))).ToList();
            foreach (var s in model.ScoreTargets(reqs))
            {
                tok += s.Accuracy;
                exact += s.ArgmaxHits.All(h => h) ? 1 : 0;
                n++;
            }
        }
        return n == 0 ? (0, 0, 0) : (tok / n, exact / n, n);
    }
}
