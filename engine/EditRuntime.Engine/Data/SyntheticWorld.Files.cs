using EditRuntime.IO;
using System.Buffers;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace EditRuntime.Data;

public sealed partial class SyntheticWorld
{
    public const string CorpusFile = "corpus.txt";
    public const string FactsFile = "facts.json";
    public const string WorldFile = "world.json";
    /// <summary>zsRE's loc field is "nq question: ..." in MEND's files; ours carries the locality prompt after this prefix.</summary>
    public const string ZsreLocPrefix = "nq question: ";

    public static string SplitName(BenchmarkSplit split) => split == BenchmarkSplit.Train ? "train" : "eval";
    public static string ZsreFile(BenchmarkSplit split) => $"zsre_{SplitName(split)}.json";
    public static string CounterFactFile(BenchmarkSplit split) => $"counterfact_{SplitName(split)}.json";
    public static string FlatFile(BenchmarkSplit split) => $"flat_{SplitName(split)}.json";
    /// <summary>The meta-training split (<see cref="MetaTrainRequests"/>) in zsRE's format, what MALMEN's authors train on.</summary>
    public const string ZsreMetaTrainFile = "zsre_meta_train.json";

    /// <summary>Every file <see cref="WriteAll"/> writes, in writing order.</summary>
    public static IReadOnlyList<string> FileNames { get; } =
    [
        CorpusFile, FactsFile,
        ZsreFile(BenchmarkSplit.Train), ZsreFile(BenchmarkSplit.Eval),
        CounterFactFile(BenchmarkSplit.Train), CounterFactFile(BenchmarkSplit.Eval),
        FlatFile(BenchmarkSplit.Train), FlatFile(BenchmarkSplit.Eval),
        ZsreMetaTrainFile,
        WorldFile,
    ];

    /// <summary>
    /// Writes every file of <see cref="FileNames"/> into <paramref name="directory"/> (created if
    /// missing), each atomically (temporary file + rename); world.json last, so its presence
    /// means the set is complete. Returns the written paths.
    /// </summary>
    public IReadOnlyList<string> WriteAll(string directory)
    {
        Directory.CreateDirectory(directory);
        var written = new List<string>();
        foreach (var name in FileNames)
        {
            string path = Path.Combine(directory, name);
            AtomicFile.WriteAllBytes(path, RenderFile(name));
            written.Add(path);
        }
        return written;
    }

    /// <summary>The bytes of one file of <see cref="FileNames"/> (UTF-8 without BOM, "\n" line ends).</summary>
    public byte[] RenderFile(string name)
    {
        foreach (var split in new[] { BenchmarkSplit.Train, BenchmarkSplit.Eval })
        {
            if (name == ZsreFile(split)) return ZsreJson(split);
            if (name == CounterFactFile(split)) return CounterFactJson(split);
            if (name == FlatFile(split)) return FlatJson(split);
        }
        return name switch
        {
            CorpusFile => Encoding.UTF8.GetBytes(Corpus),
            ZsreMetaTrainFile => ZsreJson(MetaTrainRequests),
            FactsFile => FactsJson(),
            WorldFile => WorldJson(),
            _ => throw new ArgumentException($"'{name}' is not a world file (expected one of {string.Join(", ", FileNames)}).", nameof(name)),
        };
    }

    // ------------------------------------------------------------------ JSON files

    private static readonly JsonWriterOptions JsonOptions = new()
    {
        Indented = true,
        IndentSize = 2,
        NewLine = "\n",
        // Keep apostrophes ("{}'s capital is") readable instead of \u0027; all text is ASCII.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private static byte[] Json(Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>(1 << 16);
        using (var writer = new Utf8JsonWriter(buffer, JsonOptions)) write(writer);
        var bytes = new byte[buffer.WrittenCount + 1];
        buffer.WrittenSpan.CopyTo(bytes);
        bytes[^1] = (byte)'\n';
        return bytes;
    }

    private static void WriteStrings(Utf8JsonWriter w, string name, IEnumerable<string> values)
    {
        w.WriteStartArray(name);
        foreach (var v in values) w.WriteStringValue(v);
        w.WriteEndArray();
    }

    private static string KindName(EntityKind kind) => kind.ToString().ToLowerInvariant();

    /// <summary>
    /// zsRE in MEND's eval format (zsre_mend_eval.json): subject, src (the prompt), pred, rephrase
    /// (one held-out phrasing), alt (target_new), answers ([target_true]), loc ("nq question: " +
    /// an unrelated prompt), loc_ans, cond ("pred &gt;&gt; alt || src"). pred is the world's true
    /// answer, which the trained model is expected to give.
    /// </summary>
    public byte[] ZsreJson(BenchmarkSplit split) => ZsreJson(Requests(split));

    private static byte[] ZsreJson(IEnumerable<EditRequest> requests) => Json(w =>
    {
        w.WriteStartArray();
        foreach (var r in requests)
        {
            w.WriteStartObject();
            w.WriteString("subject", r.Subject);
            w.WriteString("src", r.Prompt);
            w.WriteString("pred", r.TargetTrue.Name);
            w.WriteString("rephrase", r.Rephrase);
            w.WriteString("alt", r.TargetNew.Name);
            WriteStrings(w, "answers", [r.TargetTrue.Name]);
            w.WriteString("loc", ZsreLocPrefix + r.Locality.Prompt);
            w.WriteString("loc_ans", r.Locality.Answer);
            w.WriteString("cond", $"{r.TargetTrue.Name} >> {r.TargetNew.Name} || {r.Prompt}");
            w.WriteEndObject();
        }
        w.WriteEndArray();
    });

    /// <summary>
    /// CounterFact in ROME's format: case_id, pararel_idx (our fact id), requested_rewrite {prompt
    /// with "{}" for the subject, relation_id, target_new {str, id}, target_true {str, id}, subject},
    /// paraphrase_prompts, neighborhood_prompts, neighborhood_answers, attribute_prompts,
    /// generation_prompts. Differences from ROME: paraphrase prompts are bare held-out phrasings
    /// (no generated prefix text); neighbourhood prompts prefer subjects whose answer is
    /// target_true, as ROME's, but fill up with other subjects of the relation, so their answers
    /// are listed in the extra field neighborhood_answers; attribute prompts' answer is target_new,
    /// as in ROME.
    /// </summary>
    public byte[] CounterFactJson(BenchmarkSplit split) => Json(w =>
    {
        w.WriteStartArray();
        foreach (var r in Requests(split))
        {
            w.WriteStartObject();
            w.WriteNumber("case_id", r.CaseId);
            w.WriteNumber("pararel_idx", r.Fact.Id);
            w.WriteStartObject("requested_rewrite");
            w.WriteString("prompt", r.Template.Text);
            w.WriteString("relation_id", r.Relation.Id);
            w.WriteStartObject("target_new");
            w.WriteString("str", r.TargetNew.Name);
            w.WriteString("id", r.TargetNew.Id);
            w.WriteEndObject();
            w.WriteStartObject("target_true");
            w.WriteString("str", r.TargetTrue.Name);
            w.WriteString("id", r.TargetTrue.Id);
            w.WriteEndObject();
            w.WriteString("subject", r.Subject);
            w.WriteEndObject();
            WriteStrings(w, "paraphrase_prompts", r.RephrasePrompts);
            WriteStrings(w, "neighborhood_prompts", r.Neighborhood.Select(n => n.Prompt));
            WriteStrings(w, "neighborhood_answers", r.Neighborhood.Select(n => n.Answer));
            WriteStrings(w, "attribute_prompts", r.AttributePrompts);
            WriteStrings(w, "generation_prompts", r.GenerationPrompts);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    });

    /// <summary>EasyEdit's flat records: prompt, target_new, ground_truth, subject, rephrase_prompt, locality_prompt (bare), locality_ground_truth.</summary>
    public byte[] FlatJson(BenchmarkSplit split) => Json(w =>
    {
        w.WriteStartArray();
        foreach (var r in Requests(split))
        {
            w.WriteStartObject();
            w.WriteString("prompt", r.Prompt);
            w.WriteString("target_new", r.TargetNew.Name);
            w.WriteString("ground_truth", r.TargetTrue.Name);
            w.WriteString("subject", r.Subject);
            w.WriteString("rephrase_prompt", r.Rephrase);
            w.WriteString("locality_prompt", r.Locality.Prompt);
            w.WriteString("locality_ground_truth", r.Locality.Answer);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    });

    /// <summary>Every fact with its filled training and held-out prompts (to measure the trained model).</summary>
    public byte[] FactsJson() => Json(w =>
    {
        w.WriteStartArray();
        foreach (var f in Facts)
        {
            w.WriteStartObject();
            w.WriteNumber("id", f.Id);
            w.WriteString("subject", f.Subject.Name);
            w.WriteString("subject_id", f.Subject.Id);
            w.WriteString("subject_kind", KindName(f.Subject.Kind));
            w.WriteString("relation", f.Relation.Name);
            w.WriteString("relation_id", f.Relation.Id);
            w.WriteString("object", f.Object.Name);
            w.WriteString("object_id", f.Object.Id);
            w.WriteString("object_kind", KindName(f.Object.Kind));
            w.WriteString("split", SplitName(f.Split));
            WriteStrings(w, "train_prompts", f.TrainingPrompts());
            WriteStrings(w, "heldout_prompts", f.HeldOutPrompts());
            w.WriteEndObject();
        }
        w.WriteEndArray();
    });

    /// <summary>Seed, config, counts, format notes, relations with their templates (marked held-out or not) and every entity.</summary>
    public byte[] WorldJson() => Json(w =>
    {
        var c = Config;
        w.WriteStartObject();
        w.WriteString("generator", "EditRuntime.Data.SyntheticWorld");
        w.WriteNumber("format_version", 1);
        w.WriteNumber("seed", Seed);

        w.WriteStartObject("config");
        w.WriteNumber("countries", c.Countries);
        w.WriteNumber("cities_per_country", c.CitiesPerCountry);
        w.WriteNumber("major_cities_per_country", c.MajorCitiesPerCountry);
        w.WriteNumber("languages", c.Languages);
        w.WriteNumber("companies", c.Companies);
        w.WriteNumber("universities", c.Universities);
        w.WriteNumber("persons", c.Persons);
        w.WriteNumber("given_names", c.GivenNames);
        w.WriteNumber("eval_fraction", c.EvalFraction);
        w.WriteNumber("meta_train_variants", c.MetaTrainVariants);
        w.WriteNumber("neighborhood_prompts", c.NeighborhoodPrompts);
        w.WriteNumber("attribute_prompts", c.AttributePrompts);
        w.WriteNumber("sentences_per_document", c.SentencesPerDocument);
        w.WriteBoolean("composite_sentences", c.CompositeSentences);
        w.WriteEndObject();

        w.WriteStartObject("format");
        w.WriteString("joining", "Prompts end without a trailing space and answers are stored without a leading space (as CounterFact): score prompt + \" \" + answer.");
        w.WriteString("corpus", $"One sentence a line (training prompt + \" \" + object + \".\"); documents separated by a line {DocumentSeparator}. Held-out templates never appear.");
        w.WriteString("zsre_loc", $"loc = \"{ZsreLocPrefix}\" + a prompt of an unrelated fact; strip the prefix before scoring, loc_ans is its answer.");
        w.WriteString("zsre_pred", "pred = the true answer (what the trained model is expected to predict); cond = pred >> alt || src.");
        w.WriteString("counterfact_neighborhood", "Neighbourhood prompts name other subjects of the same relation, preferring those whose answer is target_true (as ROME); their answers are in neighborhood_answers. Attribute prompts' answer is target_new.");
        w.WriteString("locality_subjects", "Neighbourhood, attribute and loc prompts always name subjects of the other split, so editing a whole split never moves a fact it measures for locality.");
        w.WriteString("entity_split", "Entities of kinds that are never a subject (languages) have split null.");
        w.WriteString("ids", "Entity ids are synthetic Q<n> strings (unique in the world); relation ids are the Wikidata property ids of the matching real relations.");
        w.WriteEndObject();

        w.WriteStartObject("counts");
        w.WriteStartObject("entities");
        foreach (var kind in Enum.GetValues<EntityKind>()) w.WriteNumber(KindName(kind), EntitiesOf(kind).Count);
        w.WriteEndObject();
        w.WriteNumber("facts", Facts.Count);
        w.WriteStartObject("facts_per_relation");
        foreach (var r in Relations) w.WriteNumber(r.Id, FactsOf(r).Count);
        w.WriteEndObject();
        w.WriteStartObject("requests");
        w.WriteNumber("train", TrainRequests.Count);
        w.WriteNumber("eval", EvalRequests.Count);
        w.WriteNumber("meta_train", Config.MetaTrainVariants * TrainRequests.Count);
        w.WriteEndObject();
        var cs = CorpusSize;
        w.WriteStartObject("corpus");
        w.WriteNumber("bytes", cs.Bytes);
        w.WriteNumber("lines", cs.Lines);
        w.WriteNumber("sentences", cs.Sentences);
        w.WriteNumber("composite_sentences", cs.CompositeSentences);
        w.WriteNumber("documents", cs.Documents);
        w.WriteEndObject();
        w.WriteEndObject();

        w.WriteStartArray("relations");
        foreach (var r in Relations)
        {
            w.WriteStartObject();
            w.WriteString("id", r.Id);
            w.WriteString("name", r.Name);
            w.WriteString("subject_kind", KindName(r.SubjectKind));
            w.WriteString("object_kind", KindName(r.ObjectKind));
            w.WriteNumber("facts", FactsOf(r).Count);
            w.WriteNumber("train_facts", FactsOf(r).Count(f => f.Split == BenchmarkSplit.Train));
            w.WriteNumber("eval_facts", FactsOf(r).Count(f => f.Split == BenchmarkSplit.Eval));
            w.WriteNumber("object_vocabulary", ObjectVocabulary(r).Count);
            w.WriteStartArray("templates");
            foreach (var t in r.Templates)
            {
                w.WriteStartObject();
                w.WriteString("text", t.Text);
                w.WriteBoolean("held_out", t.HeldOut);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();

        w.WriteStartArray("entities");
        foreach (var e in Entities)
        {
            w.WriteStartObject();
            w.WriteString("id", e.Id);
            w.WriteString("kind", KindName(e.Kind));
            w.WriteString("name", e.Name);
            if (IsSubjectKind(e.Kind)) w.WriteString("split", SplitName(e.Split));
            else w.WriteNull("split");
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    });
}
