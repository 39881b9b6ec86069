using System.Text.Json;

namespace EditRuntime.Editing;

public static partial class EditDataset
{
    /// <summary>Turns one record (a JSON object) into an <see cref="EditRequest"/>; every error names file, record and field.</summary>
    private sealed class RecordReader(string file, int index)
    {
        // ------------------------------------------------------------ formats

        public EditRequest Zsre(JsonElement rec)
        {
            string subject = Subject(Required(rec, "subject"), "subject");
            string prompt = Prompt(String(Required(rec, "src"), "src"), "src");
            string targetNew = Target(StringOrFirst(Required(rec, "alt"), "alt"), "alt");
            string? targetTrue = null;
            var answers = StringOrList(Required(rec, "answers"), "answers");
            if (answers.Count > 0) targetTrue = Target(answers[0], "answers[0]");

            var rephrases = new List<string>();
            if (Optional(rec, "rephrase") is JsonElement reph)
                rephrases.AddRange(StringOrList(reph, "rephrase").Select((p, i) => Prompt(p, reph.ValueKind == JsonValueKind.Array ? $"rephrase[{i}]" : "rephrase")));

            var locality = new List<LocalityPrompt>();
            if (Optional(rec, "loc") is JsonElement loc)
            {
                string q = String(loc, "loc");
                if (q.StartsWith(ZsreLocPrefix, StringComparison.Ordinal)) q = q[ZsreLocPrefix.Length..];
                q = Prompt(q, "loc");
                string a = Target(StringOrFirst(Required(rec, "loc_ans", "(needed with \"loc\")"), "loc_ans"), "loc_ans");
                locality.Add(new LocalityPrompt(q, a));
            }
            return new EditRequest(prompt, subject, targetNew, targetTrue, rephrases.AsReadOnly(), locality.AsReadOnly(), index, index, file);
        }

        public EditRequest CounterFact(JsonElement rec)
        {
            int caseId = index;
            if (Optional(rec, "case_id") is JsonElement id)
            {
                if (id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out caseId))
                    throw Error("case_id", id.ValueKind == JsonValueKind.Number ? "is not a whole number in the int range" : $"is {Describe(id.ValueKind)}, expected a number");
            }
            var rr = Object(Required(rec, "requested_rewrite"), "requested_rewrite");
            string subject = Subject(Required(rr, "subject", path: "requested_rewrite.subject"), "requested_rewrite.subject");
            string template = String(Required(rr, "prompt", path: "requested_rewrite.prompt"), "requested_rewrite.prompt");
            if (!template.Contains("{}", StringComparison.Ordinal))
                throw Error("requested_rewrite.prompt", $"has no \"{{}}\" where the subject goes: \"{Clip(template)}\"");
            string prompt = Prompt(template.Replace("{}", subject, StringComparison.Ordinal), "requested_rewrite.prompt");
            string targetNew = CfTarget(rr, "target_new");
            string targetTrue = CfTarget(rr, "target_true");

            var rephrases = Optional(rec, "paraphrase_prompts") is JsonElement para
                ? Prompts(StringList(para, "paraphrase_prompts"), "paraphrase_prompts") : [];

            var locality = new List<LocalityPrompt>();
            var answersField = Optional(rec, "neighborhood_answers");
            if (Optional(rec, "neighborhood_prompts") is JsonElement nb)
            {
                var prompts = Prompts(StringList(nb, "neighborhood_prompts"), "neighborhood_prompts");
                IReadOnlyList<string> answers;
                if (answersField is JsonElement na)
                {
                    var list = StringList(na, "neighborhood_answers");
                    if (list.Count != prompts.Count)
                        throw Error("neighborhood_answers", $"has {list.Count} item(s), expected {prompts.Count} (one per neighborhood prompt)");
                    answers = list.Select((a, i) => Target(a, $"neighborhood_answers[{i}]")).ToList();
                }
                else answers = Enumerable.Repeat(targetTrue, prompts.Count).ToList();
                for (int i = 0; i < prompts.Count; i++) locality.Add(new LocalityPrompt(prompts[i], answers[i]));
            }
            else if (answersField is not null)
                throw Error("neighborhood_prompts", "is missing (needed with \"neighborhood_answers\")");

            return new EditRequest(prompt, subject, targetNew, targetTrue, rephrases, locality.AsReadOnly(), caseId, index, file);
        }

        /// <summary>requested_rewrite.target_new.str (ROME), or a bare string in place of the object.</summary>
        private string CfTarget(JsonElement rr, string name)
        {
            string path = "requested_rewrite." + name;
            var t = Required(rr, name, path: path);
            if (t.ValueKind == JsonValueKind.String) return Target(Text(t, path), path);
            if (t.ValueKind != JsonValueKind.Object) throw Error(path, $"is {Describe(t.ValueKind)}, expected an object with \"str\"");
            return Target(String(Required(t, "str", path: path + ".str"), path + ".str"), path + ".str");
        }

        public EditRequest Flat(JsonElement rec)
        {
            string prompt = Prompt(String(Required(rec, "prompt"), "prompt"), "prompt");
            string subject = Subject(Required(rec, "subject"), "subject");
            string targetNew = Target(StringOrFirst(Required(rec, "target_new"), "target_new"), "target_new");
            string? targetTrue = null;
            if (Optional(rec, "ground_truth") is JsonElement gt)
            {
                var list = StringOrList(gt, "ground_truth");
                if (list.Count > 0) targetTrue = Target(list[0], gt.ValueKind == JsonValueKind.Array ? "ground_truth[0]" : "ground_truth");
            }

            IReadOnlyList<string> rephrases = Optional(rec, "rephrase_prompt") is JsonElement reph
                ? Prompts(StringOrList(reph, "rephrase_prompt"), "rephrase_prompt") : [];

            var locality = new List<LocalityPrompt>();
            var lp = Optional(rec, "locality_prompt");
            var lg = Optional(rec, "locality_ground_truth");
            if (lp is JsonElement lpe)
            {
                if (lg is not JsonElement lge) throw Error("locality_ground_truth", "is missing (needed with \"locality_prompt\")");
                if (lpe.ValueKind == JsonValueKind.String)
                {
                    // One prompt: its answer is a string, or a list of alternatives (first used).
                    locality.Add(new LocalityPrompt(Prompt(Text(lpe, "locality_prompt"), "locality_prompt"),
                        Target(StringOrFirst(lge, "locality_ground_truth"), "locality_ground_truth")));
                }
                else
                {
                    var prompts = Prompts(StringList(lpe, "locality_prompt"), "locality_prompt");
                    if (lge.ValueKind != JsonValueKind.Array)
                        throw Error("locality_ground_truth", $"is {Describe(lge.ValueKind)}, expected an array (\"locality_prompt\" is one)");
                    if (lge.GetArrayLength() != prompts.Count)
                        throw Error("locality_ground_truth", $"has {lge.GetArrayLength()} item(s), expected {prompts.Count} (one per locality prompt)");
                    int i = 0;
                    foreach (var a in lge.EnumerateArray())
                    {
                        string path = $"locality_ground_truth[{i}]";
                        locality.Add(new LocalityPrompt(prompts[i], Target(StringOrFirst(a, path), path)));
                        i++;
                    }
                }
            }
            else if (lg is not null) throw Error("locality_prompt", "is missing (needed with \"locality_ground_truth\")");

            return new EditRequest(prompt, subject, targetNew, targetTrue, rephrases, locality.AsReadOnly(), index, index, file);
        }

        // ------------------------------------------------------------ fields

        private EditDatasetException Error(string field, string problem) => new(file, index, field, problem);

        private JsonElement Required(JsonElement obj, string name, string? note = null, string? path = null)
        {
            if (obj.TryGetProperty(name, out var v)) return v;
            throw Error(path ?? name, "is missing" + (note is null ? "" : " " + note));
        }

        /// <summary>The field, or null when absent or JSON null.</summary>
        private static JsonElement? Optional(JsonElement obj, string name) =>
            obj.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

        private JsonElement Object(JsonElement e, string path) =>
            e.ValueKind == JsonValueKind.Object ? e : throw Error(path, $"is {Describe(e.ValueKind)}, expected an object");

        private string String(JsonElement e, string path) =>
            e.ValueKind == JsonValueKind.String ? Text(e, path) : throw Error(path, $"is {Describe(e.ValueKind)}, expected a string");

        /// <summary>The string's value; bytes that are not UTF-8 are an error naming the field (.NET's own message names none).</summary>
        private string Text(JsonElement e, string path)
        {
            try { return e.GetString()!; }
            catch (InvalidOperationException) { throw Error(path, "is not valid UTF-8 text"); }
        }

        /// <summary>A string, or the first string of a non-empty array (EasyEdit/zsRE lists of alternatives).</summary>
        private string StringOrFirst(JsonElement e, string path)
        {
            if (e.ValueKind == JsonValueKind.String) return Text(e, path);
            if (e.ValueKind != JsonValueKind.Array) throw Error(path, $"is {Describe(e.ValueKind)}, expected a string or an array of strings");
            if (e.GetArrayLength() == 0) throw Error(path, "is an empty array, expected a string");
            return String(e[0], path + "[0]");
        }

        /// <summary>A string (one item) or an array of strings.</summary>
        private IReadOnlyList<string> StringOrList(JsonElement e, string path) =>
            e.ValueKind == JsonValueKind.String ? [Text(e, path)]
            : e.ValueKind == JsonValueKind.Array ? StringList(e, path)
            : throw Error(path, $"is {Describe(e.ValueKind)}, expected a string or an array of strings");

        private List<string> StringList(JsonElement e, string path)
        {
            if (e.ValueKind != JsonValueKind.Array) throw Error(path, $"is {Describe(e.ValueKind)}, expected an array of strings");
            var list = new List<string>(e.GetArrayLength());
            int i = 0;
            foreach (var item in e.EnumerateArray()) list.Add(String(item, $"{path}[{i++}]"));
            return list;
        }

        private IReadOnlyList<string> Prompts(IReadOnlyList<string> raw, string path) =>
            raw.Select((p, i) => Prompt(p, $"{path}[{i}]")).ToList().AsReadOnly();

        private string Prompt(string s, string path)
        {
            s = s.TrimEnd();
            return s.Length > 0 ? s : throw Error(path, "is empty");
        }

        private string Target(string s, string path)
        {
            s = s.TrimStart();
            return s.Length > 0 ? s : throw Error(path, "is empty");
        }

        private string Subject(JsonElement e, string path)
        {
            string s = String(e, path).Trim();
            return s.Length > 0 ? s : throw Error(path, "is empty");
        }

        private static string Clip(string s) => s.Length <= 80 ? s : s[..77] + "...";
    }
}
