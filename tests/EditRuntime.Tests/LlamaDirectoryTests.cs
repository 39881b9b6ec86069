using System.Text.Json;
using System.Text.Json.Nodes;
using EditRuntime.Backends;
using EditRuntime.Models;
using EditRuntime.Text;
using EditRuntime.TextTests;
using EditRuntime.Torch;
using EditRuntime.Vulkan;
using NUnit.Framework;

namespace EditRuntime.Tests;

/// <summary>
/// A LLaMA-3-layout folder as Hugging Face publishes it (config.json, model.safetensors, tokenizer.json and an ignored
/// generation_config.json), with random small weights and a hand-made byte-level tokenizer.json whose ids cover the
/// config's vocab_size exactly: loading it through <see cref="LlamaDirectory"/>, generation against
/// <see cref="LlamaModel.GenerateGreedy"/> on the in-memory weights, the refusals, and `editrt generate` on it.
/// </summary>
public sealed class LlamaDirectoryTests : GpuTest
{
    // Ids 0..255: the bytes in GPT-2's byte-level order ('Ġ' = space = 220); then three merges; then the specials.
    private static readonly string[] Merged = ["Ġt", "he", "Ġthe"];
    private static readonly string[] Merges = ["Ġ t", "h e", "Ġt he"];
    private const int TheId = 258, Bos = 259, Eos = 260, Vocab = 261;
    private const int Seed = 11;

    private TorchBackend? _torch;
    private string _root = "";
    private string _dir = "";
    private Dictionary<string, HostTensor> _weights = [];

    private static LlamaConfig Config(int vocab = Vocab) =>
        LlamaConfig.SmallLlama3(vocabSize: vocab) with { BosTokenId = vocab > Bos ? Bos : 0, EosTokenIds = [vocab > Eos ? Eos : 1] };

    private static JsonObject TokenizerJson()
    {
        var vocab = new JsonObject();
        int id = 0;
        foreach (var t in TokFixtures.ByteTokens().Concat(Merged)) vocab[t] = id++;
        var merges = new JsonArray(Merges.Select(m => (JsonNode?)JsonValue.Create(m)).ToArray());
        JsonObject Added(int i, string content) => new()
        {
            ["id"] = i, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
            ["normalized"] = false, ["special"] = true,
        };
        JsonObject Special(string name, int typeId) => new() { ["SpecialToken"] = new JsonObject { ["id"] = name, ["type_id"] = typeId } };
        JsonObject Seq(string name, int typeId) => new() { ["Sequence"] = new JsonObject { ["id"] = name, ["type_id"] = typeId } };
        return new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(Added(Bos, "<|begin_of_text|>"), Added(Eos, "<|end_of_text|>")),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true },
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(Special("<|begin_of_text|>", 0), Seq("A", 0)),
                ["pair"] = new JsonArray(Special("<|begin_of_text|>", 0), Seq("A", 0), Special("<|begin_of_text|>", 1), Seq("B", 1)),
                ["special_tokens"] = new JsonObject
                {
                    ["<|begin_of_text|>"] = new JsonObject
                    {
                        ["id"] = "<|begin_of_text|>", ["ids"] = new JsonArray(Bos), ["tokens"] = new JsonArray("<|begin_of_text|>"),
                    },
                },
            },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false,
                ["vocab"] = vocab, ["merges"] = merges,
            },
        };
    }

    /// <summary>A folder as published: weights and config, tokenizer.json, and a generation_config.json that must be ignored.</summary>
    private static Dictionary<string, HostTensor> WriteFolder(string dir, LlamaConfig config, bool tokenizer = true)
    {
        var w = LlamaCheckpoint.WriteRandom(dir, config, Seed, std: 0.15f);
        if (tokenizer)
            File.WriteAllText(Path.Combine(dir, LlamaDirectory.TokenizerFileName),
                TokenizerJson().ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
        // Different eos and a sampling temperature: were it read, generation would stop elsewhere or sample.
        File.WriteAllText(Path.Combine(dir, "generation_config.json"),
            "{\"bos_token_id\": 0, \"eos_token_id\": 5, \"do_sample\": true, \"temperature\": 0.6, \"top_p\": 0.9, \"transformers_version\": \"4.45.0\"}\n");
        return w;
    }

    private string NewDir(string name) => Directory.CreateDirectory(Path.Combine(_root, name)).FullName;

    [OneTimeSetUp]
    public void MakeFolder()
    {
        _torch = new TorchBackend();
        _root = Directory.CreateTempSubdirectory("editrt-llamadir-").FullName;
        _dir = NewDir("llama3");
        _weights = WriteFolder(_dir, Config());
    }

    [OneTimeTearDown]
    public void Cleanup()
    {
        _torch?.Dispose();
        if (_root.Length > 0) Directory.Delete(_root, true);
    }

    private IBackend Backend(string name) => name switch
    {
        "vulkan" => new VulkanBackend(Device),
        "torch" => _torch!,
        _ => throw new ArgumentException(name),
    };

    [Test]
    public void IsLlamaFolder_decides_by_model_type()
    {
        Assert.That(LlamaDirectory.IsLlamaFolder(_dir), Is.True);
        var gpt2 = NewDir("gpt2");
        new Gpt2Config { NPositions = 16, NEmbd = 8, NLayer = 1, NHead = 2, VocabSize = 300, BosTokenId = 0, EosTokenId = 0 }.Save(Path.Combine(gpt2, "config.json"));
        Assert.That(LlamaDirectory.IsLlamaFolder(gpt2), Is.False, "a gpt2 config.json");
        Assert.That(LlamaDirectory.IsLlamaFolder(NewDir("empty")), Is.False, "no config.json");
        Assert.That(LlamaDirectory.IsLlamaFolder(Path.Combine(_root, "no-such-folder")), Is.False, "no folder");
        var qwen = NewDir("qwen-config-only");
        File.WriteAllText(Path.Combine(qwen, "config.json"), "{\"model_type\": \"qwen2\"}");
        Assert.That(LlamaDirectory.IsLlamaFolder(qwen), Is.True, "qwen2");
        var broken = NewDir("broken-config");
        File.WriteAllText(Path.Combine(broken, "config.json"), "{ not json");
        Assert.That(LlamaDirectory.IsLlamaFolder(broken), Is.False, "invalid JSON");
    }

    [Test]
    public void Load_reads_config_weights_and_tokenizer_and_EncodePrompt_starts_with_the_bos()
    {
        var ld = LlamaDirectory.Load(_dir);
        Assert.That(ld.Config, Is.EqualTo(Config()).Using<LlamaConfig>((a, b) => a.ToJson() == b.ToJson()));
        Assert.That(ld.Tokenizer.VocabSize, Is.EqualTo(ld.Config.VocabSize));
        Assert.That(ld.Weights.Keys, Is.EquivalentTo(_weights.Keys));
        foreach (var (name, t) in _weights) Assert.That(ld.Weights[name].Data, Is.EqualTo(t.Data), name);
        Assert.That(ld.Tokenizer.TemplatePrefixIds, Is.EqualTo(new[] { Bos }));
        Assert.That(ld.StopIds, Is.EqualTo(new[] { Eos }), "config.json's eos, not generation_config.json's");
        var ids = ld.EncodePrompt(" the hat");
        Assert.That(ids, Is.EqualTo(new[] { Bos, TheId, 220, 71, 64, 83 })); // BOS, " the", " ", 'h', 'a', 't'
        Assert.That(ids[1..], Is.EqualTo(ld.Tokenizer.Encode(" the hat")));
        Assert.That(ld.Tokenizer.Decode(ids[1..]), Is.EqualTo(" the hat"));
    }

    [Test]
    public void Load_reads_a_sharded_checkpoint_through_its_index()
    {
        var dir = NewDir("sharded");
        var w = WriteFolder(dir, Config());
        const string shard = "model-00001-of-00001.safetensors";
        File.Move(Path.Combine(dir, LlamaCheckpoint.WeightsFileName), Path.Combine(dir, shard));
        var map = new JsonObject();
        foreach (var name in w.Keys) map[name] = shard;
        File.WriteAllText(Path.Combine(dir, LlamaCheckpoint.IndexFileName), new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = map }.ToJsonString());
        var ld = LlamaDirectory.Load(dir);
        foreach (var (name, t) in w) Assert.That(ld.Weights[name].Data, Is.EqualTo(t.Data), name);
    }

    [TestCase("torch"), TestCase("vulkan")]
    public void Generation_through_the_directory_equals_GenerateGreedy_on_the_same_ids(string backend)
    {
        var ld = LlamaDirectory.Load(_dir);
        var be = Backend(backend);
        try
        {
            int[] ids = [Bos, .. ld.Tokenizer.Encode("the cat sat")];
            Assert.That(ld.EncodePrompt("the cat sat"), Is.EqualTo(ids));
            using var fromDir = new LlamaModel(be, ld.Config, ld.Weights);
            using var inMemory = new LlamaModel(be, Config(), _weights);
            var got = fromDir.GenerateGreedy(ld.EncodePrompt("the cat sat"), 12, ld.StopIds.ToHashSet());
            var want = inMemory.GenerateGreedy(ids, 12, new HashSet<int> { Eos });
            Assert.That(got, Is.EqualTo(want));
            Assert.That(got, Is.Not.Empty);
            Assert.That(got.All(i => i >= 0 && i < Vocab), Is.True);
        }
        finally { if (be != _torch) be.Dispose(); }
    }

    [Test]
    public void Missing_tokenizer_json_is_refused_naming_the_file_expected()
    {
        var dir = NewDir("no-tokenizer");
        WriteFolder(dir, Config(), tokenizer: false);
        var e = Assert.Throws<FileNotFoundException>(() => LlamaDirectory.Load(dir))!;
        Assert.That(e.FileName, Is.EqualTo(Path.Combine(dir, "tokenizer.json")));
        Assert.That(e.Message, Does.Contain(Path.Combine(dir, "tokenizer.json")).And.Contain("tokenizers file"));
    }

    [Test]
    public void Missing_weights_are_refused_naming_the_files_expected()
    {
        var dir = NewDir("no-weights");
        WriteFolder(dir, Config());
        File.Delete(Path.Combine(dir, LlamaCheckpoint.WeightsFileName));
        var e = Assert.Throws<FileNotFoundException>(() => LlamaDirectory.Load(dir))!;
        Assert.That(e.Message, Does.Contain("model.safetensors").And.Contain("model.safetensors.index.json").And.Contain(dir));
    }

    [Test]
    public void Missing_config_json_is_refused_naming_it()
    {
        var dir = NewDir("no-config");
        WriteFolder(dir, Config());
        File.Delete(Path.Combine(dir, "config.json"));
        var e = Assert.Throws<FileNotFoundException>(() => LlamaDirectory.Load(dir))!;
        Assert.That(e.Message, Does.Contain("config.json"));
    }

    [Test]
    public void A_vocab_size_smaller_than_the_tokenizers_ids_is_refused_naming_both()
    {
        var dir = NewDir("small-vocab");
        WriteFolder(dir, Config(vocab: 200));
        var e = Assert.Throws<LlamaConfigException>(() => LlamaDirectory.Load(dir))!;
        Assert.That(e.Field, Is.EqualTo("vocab_size"));
        Assert.That(e.FilePath, Is.EqualTo(Path.Combine(dir, "config.json")));
        Assert.That(e.Message, Does.Contain(Path.Combine(dir, "config.json")).And.Contain(Path.Combine(dir, "tokenizer.json"))
                                   .And.Contain("200").And.Contain("261"));
    }

    private static (int Code, string Out, string Err) Editrt(string args) => EditrtProcess.Run(args);

    [TestCase("torch"), TestCase("vulkan")]
    public void Cli_generate_on_the_folder_prints_the_decoded_greedy_continuation(string backend)
    {
        const string prompt = "the cat sat";
        var (code, output, err) = Editrt($"generate --model \"{_dir}\" --prompt \"{prompt}\" --max-tokens 6 --backend {backend}");
        Assert.That(code, Is.Zero, err);
        int[] want;
        var be = Backend(backend);
        try
        {
            using var model = new LlamaModel(be, Config(), _weights);
            want = model.GenerateGreedy([Bos, .. LlamaDirectory.Load(_dir).Tokenizer.Encode(prompt)], 6, new HashSet<int> { Eos });
        }
        finally { if (be != _torch) be.Dispose(); }
        var tok = HfTokenizer.Load(Path.Combine(_dir, "tokenizer.json"));
        var shown = want.Length > 0 && want[^1] == Eos ? want[..^1] : want;
        Assert.That(output.TrimEnd('\r', '\n'), Is.EqualTo(prompt + tok.Decode(shown)));
        Assert.That(err, Does.Contain($"[{backend}: {want.Length} tokens"));
    }

    [Test]
    public void Cli_generate_refuses_a_folder_without_tokenizer_json()
    {
        var dir = NewDir("cli-no-tokenizer");
        WriteFolder(dir, Config(), tokenizer: false);
        var (code, _, err) = Editrt($"generate --model \"{dir}\" --prompt \"hi\" --backend torch");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(err, Does.Contain("tokenizer.json"));
    }

    [Test]
    public void Cli_generate_help_names_both_layouts()
    {
        var (code, output, err) = Editrt("generate --help");
        Assert.That(code, Is.Zero, err);
        Assert.That(output, Does.Contain("tokenizer.json").And.Contain("model_type").And.Contain("vocab.json").And.Contain("eos_token_id"));
    }
}
