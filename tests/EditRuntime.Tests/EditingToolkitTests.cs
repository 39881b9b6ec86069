using System.Text.Json.Nodes;
using EditRuntime.Compute;
using EditRuntime.Editing;
using EditRuntime.Models;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>The editing toolkit on its own: the hyper-parameter reader, teacher forcing, the seeded random numbers, the edit-state file.</summary>
public sealed class EditingToolkitTests
{
    private static HyperParameters Hp(string json, string source = "test.json") =>
        new("TEST", HyperParameters.ParseFile(json, source), source);

    private static string Refused(Action read) => Assert.Throws<HyperParameterException>(() => read())!.Message;

    [Test]
    public void Integers_are_exact_and_in_range()
    {
        var hp = Hp("""{"a": 3, "b": 3.0, "c": 2.5, "d": 1e30, "e": 9007199254740993, "f": -4}""");
        Assert.That(hp.Int("a", 1, 10), Is.EqualTo(3));
        Assert.That(hp.Int("b", 1, 10), Is.EqualTo(3), "3.0 is the integer 3");
        Assert.That(Refused(() => hp.Int("c", 1, 10)), Does.Contain("test.json").And.Contain("\"c\"").And.Contain("TEST").And.Contain("an integer in [1, 10]").And.Contain("got 2.5"));
        Assert.That(Refused(() => hp.Int("d")), Does.Contain("got 1e30"));
        Assert.That(Refused(() => hp.Long("d")), Does.Contain("got 1e30"));
        Assert.That(hp.Long("e"), Is.EqualTo(9007199254740993L), "no rounding through double");
        Assert.That(Refused(() => hp.Int("f", 0, 5)), Does.Contain("[0, 5]").And.Contain("got -4"));
    }

    [Test]
    public void Floats_are_finite_in_float32_and_in_range()
    {
        var hp = Hp("""{"a": 0.05, "b": 1e300, "c": 1e400, "d": 1e-50, "e": -0.5, "f": "0.1"}""");
        Assert.That(hp.Float("a", 0, 1, minExclusive: true), Is.EqualTo((float)0.05), "the float32 nearest the written double");
        Assert.That(hp.Double("a"), Is.EqualTo(0.05));
        Assert.That(Refused(() => hp.Float("b")), Does.Contain("float32").And.Contain("got 1e300"));
        Assert.That(hp.Double("b"), Is.EqualTo(1e300));
        Assert.That(Refused(() => hp.Double("c")), Does.Contain("finite").And.Contain("got 1e400"));
        Assert.That(Refused(() => hp.Float("d", 0, 1, minExclusive: true)), Does.Contain("(0, 1]").And.Contain("got 1e-50"), "0 as a float32: not positive");
        Assert.That(Refused(() => hp.Float("e", 0, 1)), Does.Contain("[0, 1]"));
        Assert.That(Refused(() => hp.Float("f")), Does.Contain("got the string \"0.1\""), "a number in quotes is a string");
        foreach (var text in new[] { "NaN", "Infinity", "-Infinity", "1e400" })
        {
            var set = Hp("""{"lr": 1}""");
            set.Set("lr", HyperParameters.ParseOverride(text), $"--set lr={text}");
            Assert.That(Refused(() => set.Float("lr")), Does.Contain($"--set lr={text}").And.Contain("\"lr\""), text);
        }
    }

    [Test]
    public void Booleans_strings_and_lists_take_only_their_type()
    {
        var hp = Hp("""{"t": true, "s": "true", "n": null, "a": [1, 2], "o": {"x": 1}, "p": "after", "l": ["h.0.mlp.c_fc", " h.1.mlp.c_fc"], "dup": ["x", "x"], "e": [], "t2": 7}""");
        Assert.That(hp.Bool("t"), Is.True);
        Assert.That(Refused(() => hp.Bool("s")), Does.Contain("true or false").And.Contain("got the string \"true\""), "a JSON boolean, not the string");
        Assert.That(Refused(() => hp.Int("n")), Does.Contain("got null"));
        Assert.That(Refused(() => hp.Int("a")), Does.Contain("a single value").And.Contain("got the list [1,2]"));
        Assert.That(Refused(() => hp.String("o")), Does.Contain("the object"));
        Assert.That(hp.String("p", "after", "last"), Is.EqualTo("after"));
        Assert.That(Refused(() => hp.String("s", "after", "last")), Does.Contain("one of \"after\", \"last\""));
        Assert.That(hp.StringList("l"), Is.EqualTo(new[] { "h.0.mlp.c_fc", "h.1.mlp.c_fc" }));
        Assert.That(Refused(() => hp.StringList("dup")), Does.Contain("without repeats"));
        Assert.That(Refused(() => hp.StringList("e")), Does.Contain("non-empty"));
        Assert.That(hp.IntList("a", 0, 5), Is.EqualTo(new[] { 1, 2 }));
        Assert.That(Refused(() => hp.IntList("a", 0, 1)), Does.Contain("[0, 1]"));
        Assert.That(Refused(() => hp.Int("missing")), Does.Contain("\"missing\"").And.Contain("missing"));
        // A lone surrogate escape is valid JSON but not text: refused as a wrong value, for every string reader.
        var bad = Hp("""{"s": "ab\ud800", "l": ["x", "\udc00"], "i": "1,\ud800"}""");
        Assert.That(Refused(() => bad.String("s")), Does.Contain("unpaired UTF-16 surrogate").And.Contain("\"s\""));
        Assert.That(Refused(() => bad.StringList("l")), Does.Contain("unpaired UTF-16 surrogate"));
        Assert.That(Refused(() => bad.StringList("s")), Does.Contain("unpaired UTF-16 surrogate"));
        Assert.That(Refused(() => bad.IntList("i")), Does.Contain("unpaired UTF-16 surrogate"));
        Assert.That(hp.IntList("t2", 0, 9), Is.EqualTo(new[] { 7 }), "one integer is a list of one (--set key=7)");
    }

    [Test]
    public void Overrides_are_numbers_booleans_or_text_and_unknown_keys_are_named()
    {
        Assert.That(HyperParameters.ParseOverride("3").GetValueKind(), Is.EqualTo(System.Text.Json.JsonValueKind.Number));
        Assert.That(HyperParameters.ParseOverride("false").GetValue<bool>(), Is.False);
        Assert.That(HyperParameters.ParseOverride("h.2.mlp.c_fc,h.3.mlp.c_fc").GetValue<string>(), Is.EqualTo("h.2.mlp.c_fc,h.3.mlp.c_fc"));
        var hp = Hp("""{"steps": 25, "layers": ["a"]}""", "defaults.json");
        hp.Set("steps", HyperParameters.ParseOverride("abc"), "--set steps=abc");
        Assert.That(hp.SourceOf("steps"), Is.EqualTo("--set steps=abc"));
        Assert.That(hp.SourceOf("layers"), Is.EqualTo("defaults.json"));
        Assert.That(Refused(() => hp.Int("steps", 1, 100)), Is.EqualTo("--set steps=abc: hyper-parameter \"steps\" of TEST must be an integer in [1, 100], got the string \"abc\"."));
        hp.Set("layers", HyperParameters.ParseOverride("a,b"), "--set layers=a,b");
        Assert.That(hp.StringList("layers"), Is.EqualTo(new[] { "a", "b" }), "--set gives a list as one comma-separated string");
        Assert.That(Refused(() => hp.Set("stpes", JsonValue.Create(1), "--set stpes=1")), Does.Contain("\"stpes\"").And.Contain("known: steps, layers"));
        Assert.That(hp.Unread, Is.Empty);
        Assert.That(hp.ToJson()["steps"]!.GetValue<string>(), Is.EqualTo("abc"), "what was given is what is described");
    }

    [Test]
    public void Files_are_one_object_with_each_key_once()
    {
        Assert.That(Refused(() => HyperParameters.ParseFile("{\"lr\": 1,\n  \"lr\": 2}", "user.json")), Does.Contain("user.json").And.Contain("\"lr\" is given twice (line 2)"));
        Assert.That(Refused(() => HyperParameters.ParseFile("[1]", "user.json")), Does.Contain("one JSON object"));
        Assert.That(Refused(() => HyperParameters.ParseFile("{\"lr\": }", "user.json")), Does.Contain("not valid JSON"));
        Assert.That(HyperParameters.ParseFile("{\"a\": {\"x\": 1}, \"b\": {\"x\": 2}}", "f").Count, Is.EqualTo(2), "the same key in two objects is fine");
    }

    [Test]
    public void Unread_keys_are_listed()
    {
        var hp = Hp("""{"a": 1, "b": 2}""");
        hp.Int("a");
        Assert.That(hp.Unread, Is.EqualTo(new[] { "b" }));
    }

    [Test]
    public void Teacher_forcing_targets_the_answer_after_each_prompt()
    {
        var tf = TeacherForcing.FromTokens([([5, 6, 7], [8, 9]), ([1], [2, 3, 4])]);
        // rows: prompt + target without its last token, right-padded to T = 4
        Assert.That(tf.Batch.Ids, Is.EqualTo(new[] { 5, 6, 7, 8, 1, 2, 3, 0 }));
        Assert.That(tf.Batch.Lengths, Is.EqualTo(new[] { 4, 3 }));
        Assert.That(tf.Batch.PromptLengths, Is.EqualTo(new[] { 3, 1 }));
        int I = TeacherForcing.Ignored;
        Assert.That(tf.Targets, Is.EqualTo(new[] { I, I, 8, 9, 2, 3, 4, I }));
        Assert.That(tf.TargetPositions(0), Is.EqualTo(new[] { 2, 3 }));
        Assert.That(tf.TargetPositions(1), Is.EqualTo(new[] { 0, 1, 2 }));
        Assert.Throws<ArgumentException>(() => TeacherForcing.FromTokens([([1], [])]));
    }

    [Test]
    public void Read_rows_join_a_teacher_forced_batch_and_their_logit_rows_are_found()
    {
        // Row 0 teacher-forced, row 1 read at its position 1 (a KL prompt), row 2 teacher-forced and also read.
        var tf = TeacherForcing.FromRows([new([5, 6], [7, 8]), ForcedRow.Read([1, 2, 3], 1), new([4], [9], ReadAt: 0)]);
        int I = TeacherForcing.Ignored, R = TeacherForcing.ReadOnly;
        Assert.That(tf.Batch.Ids, Is.EqualTo(new[] { 5, 6, 7, 1, 2, 3, 4, 0, 0 }));
        Assert.That(tf.Batch.PromptLengths, Is.EqualTo(new[] { 2, 3, 1 }));
        Assert.That(tf.Targets, Is.EqualTo(new[] { I, 7, 8, I, I, I, 9, I, I }), "the cross-entropy's targets leave the read position out");
        Assert.That(tf.Selection, Is.EqualTo(new[] { I, 7, 8, I, R, I, 9, I, I }), "the selection has it");
        Assert.That(tf.LogitRows, Is.EqualTo(4));
        Assert.That(new[] { tf.LogitRow(0, 1), tf.LogitRow(0, 2), tf.LogitRow(1, 1), tf.LogitRow(2, 0) }, Is.EqualTo(new[] { 0, 1, 2, 3 }), "position order");
        Assert.That(tf.TargetPositions(1), Is.Empty);
        Assert.Throws<ArgumentOutOfRangeException>(() => tf.LogitRow(1, 0));
        // FromTokens is FromRows of teacher-forced rows only.
        var plain = TeacherForcing.FromTokens([([5, 6, 7], [8, 9]), ([1], [2, 3, 4])]);
        Assert.That(plain.Selection, Is.EqualTo(plain.Targets));
        Assert.That(Assert.Throws<ArgumentException>(() => TeacherForcing.FromRows([new([1, 2], [])]))!.Message, Does.Contain("row 0").And.Contain("neither a target nor a read position"));
        Assert.That(Assert.Throws<ArgumentException>(() => TeacherForcing.FromRows([ForcedRow.Read([1, 2], 2)]))!.Message, Does.Contain("reads position 2"));
        Assert.Throws<ArgumentException>(() => TeacherForcing.FromRows([]));
    }

    [Test]
    public void Seeded_random_numbers_are_the_stream_the_editors_always_drew()
    {
        foreach (int seed in new[] { 0, 7919, 104729, 123456789 })
        {
            var r = new SeededRandom(seed);
            var legacy = new Random(seed);
            Assert.That(r.Normal(1001, 0.02f), Is.EqualTo(HostReference.RandomNormal(legacy, 1001, 0.02f)), $"normal, seed {seed}");
            var u = r.Uniform(513, 0.125f);
            Assert.That(u, Is.EqualTo(Enumerable.Range(0, 513).Select(_ => (float)(legacy.NextDouble() * 2 - 1) * 0.125f).ToArray()), $"uniform, seed {seed}");
        }
        // Pinned values: System.Random(seed) keeps its sequence across .NET versions; this guards that promise.
        Assert.That(new SeededRandom(0).NextDouble(), Is.EqualTo(0.7262432699679598));
    }

    private static HostTensor T(params float[] v) => new([v.Length], v);

    [Test]
    public void Edit_state_files_record_the_editor_format_and_hyper_parameters_and_refuse_others()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"state-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var path = Path.Combine(dir, "s.safetensors");
            var hp = Hp("""{"layer": "h.1.mlp.c_proj", "steps": 3}""");
            EditStateFile.Save(path, "ALPHA", hp, [("w", new HostTensor([2, 2], [1, 2, 3, 4]))], new Dictionary<string, JsonNode?> { ["labels"] = new JsonArray("x", "y"), ["next_id"] = 7 });
            Assert.That(Directory.GetFiles(dir), Is.EqualTo(new[] { path }), "no temporary file left beside it");
            using (var f = SafeTensorsFile.Open(path))
                Assert.That(f.Metadata, Does.ContainKey("editor").And.ContainKey("format").And.ContainKey("hparams"));
            using (var st = EditStateFile.Open(path, "ALPHA"))
            {
                Assert.That(st.Format, Is.EqualTo(EditStateFile.Format));
                Assert.That(st.HyperParameters.Int("steps"), Is.EqualTo(3));
                Assert.That(st.Tensor("w", 2, -1).Data, Is.EqualTo(new float[] { 1, 2, 3, 4 }));
                Assert.That(Assert.Throws<InvalidDataException>(() => st.Tensor("w", 4))!.Message, Does.StartWith(path).And.Contain("(2, 2)").And.Contain("(4)"));
                Assert.That(Assert.Throws<InvalidDataException>(() => st.Tensor("v"))!.Message, Does.Contain("\"v\""));
                Assert.That(st.Int("next_id", 0), Is.EqualTo(7));
                Assert.That(Assert.Throws<InvalidDataException>(() => st.Int("next_id", 0, 5))!.Message, Does.Contain("next_id"));
                Assert.That(st.Read("labels", n => n.AsArray().Select(x => x!.GetValue<string>()).ToList()), Is.EqualTo(new[] { "x", "y" }));
                Assert.That(Assert.Throws<InvalidDataException>(() => st.Read("labels", n => n.AsObject()))!.Message, Does.Contain("labels"));
                st.RequireSame("steps", 3, (h, k) => h.Int(k));
                Assert.That(Assert.Throws<InvalidDataException>(() => st.RequireSame("steps", 4, (h, k) => h.Int(k)))!.Message,
                    Does.Contain("saved with steps = 3, this editor has 4"));
                Assert.That(Assert.Throws<InvalidDataException>(() => st.RequireSame("layer", 4, (h, k) => h.Int(k)))!.Message,
                    Does.Contain("not usable").And.Contain("layer"));
            }
            Assert.That(Assert.Throws<InvalidDataException>(() => EditStateFile.Open(path, "BETA"))!.Message,
                Does.StartWith(path).And.Contain("ALPHA").And.Contain("BETA"));
            Assert.Throws<ArgumentException>(() => EditStateFile.Save(path, "ALPHA", hp, [], new Dictionary<string, JsonNode?> { ["editor"] = "x" }));

            // A model file (no editor), a file of a newer format, and a file written before the envelope had a version.
            var model = Path.Combine(dir, "model.safetensors");
            SafeTensorsWriter.Write(model, [("w", T(1))]);
            Assert.That(Assert.Throws<InvalidDataException>(() => EditStateFile.Open(model, "ALPHA"))!.Message, Does.Contain("not an edit-state file"));
            var newer = Path.Combine(dir, "newer.safetensors");
            SafeTensorsWriter.Write(newer, [("w", T(1))], new Dictionary<string, string> { ["editor"] = "ALPHA", ["format"] = "99", ["hparams"] = "{}" });
            Assert.That(Assert.Throws<InvalidDataException>(() => EditStateFile.Open(newer, "ALPHA"))!.Message, Does.Contain("format \"99\""));
            var old = Path.Combine(dir, "old.safetensors");
            SafeTensorsWriter.Write(old, [("w", T(1))], new Dictionary<string, string> { ["editor"] = "ALPHA", ["hparams"] = "{\"steps\": 3}" });
            using (var st = EditStateFile.Open(old, "ALPHA")) Assert.That(st.Format, Is.EqualTo(0));
            var garbage = Path.Combine(dir, "garbage.safetensors");
            File.WriteAllText(garbage, "not a safetensors file");
            Assert.That(Assert.Throws<InvalidDataException>(() => EditStateFile.Open(garbage, "ALPHA"))!.Message, Does.StartWith(garbage));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
