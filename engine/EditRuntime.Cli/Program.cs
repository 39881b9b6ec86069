using System.CommandLine;
using EditRuntime.Cli;
using EditRuntime.Vulkan;

// The kill test's child, started dozens of times: dispatched before the command tree is built (most of start-up). Hidden.
if (args.Length > 0 && args[0] == SaveLoopCommand.Name) return SaveLoopCommand.Main(args[1..]);

var deviceOption = new Option<string?>("--device")
{
    Description = $"Vulkan device to use: an index or part of its name (see 'editrt devices'). Default: ${DeviceSelector.EnvironmentVariable}, else the first discrete GPU, then integrated, virtual, CPU.",
    Recursive = true,
};
var validationOption = new Option<bool>("--validation")
{
    Description = $"Enable VK_LAYER_KHRONOS_validation and print its messages (also: {VulkanInstance.ValidationEnvironmentVariable}=1).",
    Recursive = true,
};

var allowNonFiniteOption = new Option<bool>("--allow-nonfinite-weights")
{
    Description = $"Load a model even if a weight is NaN or infinite (refused by default, naming the tensor and element; also: {EditRuntime.Models.Gpt2Checkpoint.AllowNonFiniteVariable}=1). Non-finite logits still fail the command.",
    Recursive = true,
};

var root = new RootCommand("editrt — EditRuntime, a Vulkan runtime for editing what language models know.");
root.Options.Add(deviceOption);
root.Options.Add(validationOption);
root.Options.Add(allowNonFiniteOption);

DeviceOptions Options(ParseResult r)
{
    if (r.GetValue(allowNonFiniteOption)) Environment.SetEnvironmentVariable(EditRuntime.Models.Gpt2Checkpoint.AllowNonFiniteVariable, "1");
    return new()
    {
        Selector = r.GetValue(deviceOption),
        Validation = r.GetValue(validationOption) ? true : null,
    };
}

// ---- devices
var devices = new Command("devices", "List the Vulkan devices with their limits and features; '*' marks the one that would be used.");
devices.SetAction(r => Cli.Run(() => DevicesCommand.Run(Options(r))));
root.Subcommands.Add(devices);

// ---- bench
var bench = new Command("bench", "Benchmarks that print numbers (GPU timestamps and wall time).");
var sizesOption = new Option<string>("--sizes")
{
    Description = "Comma-separated sizes: N for N x N x N, or MxNxK.",
    DefaultValueFactory = _ => "256,512,1024,2048",
};
var repeatOption = new Option<int>("--repeat")
{
    Description = "Timed runs per size (0 = as many as fit in about 2 s, at least 1, at most 20).",
    DefaultValueFactory = _ => 0,
};
var transAOption = new Option<bool>("--trans-a") { Description = "Use A stored transposed (K x M)." };
var transBOption = new Option<bool>("--trans-b") { Description = "Use B stored transposed (N x K)." };
var batchOption = new Option<int>("--batch") { Description = "Batch of independent matmuls per dispatch.", DefaultValueFactory = _ => 1 };
var withTorchOption = new Option<bool>("--with-torch") { Description = "Also time the same matmul on the libtorch CPU backend, row by row, with the ratio." };
var checkOption = new Option<bool>("--check") { Description = "Also check the result against a float64 host matmul and print the relative error (fails above 1e-5)." };
var matmul = new Command("matmul", "C = A·B in float32 on the Vulkan device: GFLOP/s per size from GPU timestamps and from wall time.");
foreach (var o in new Option[] { sizesOption, repeatOption, transAOption, transBOption, batchOption, checkOption, withTorchOption }) matmul.Options.Add(o);
matmul.SetAction(r => Cli.Run(() => BenchMatmulCommand.Run(Options(r), r.GetValue(sizesOption)!, r.GetValue(repeatOption),
    r.GetValue(transAOption), r.GetValue(transBOption), r.GetValue(batchOption), r.GetValue(checkOption), r.GetValue(withTorchOption))));
bench.Subcommands.Add(matmul);
var benchBackendsOption = new Option<string>("--backend") { Description = "vulkan, torch, or both (side by side with the time ratio).", DefaultValueFactory = _ => "both" };
var benchOpsOption = new Option<string?>("--ops") { Description = "Comma-separated op name prefixes (e.g. matmul,gelu); default: all." };
var opsRepeatOption = new Option<int>("--repeat") { Description = "Timed calls per op and backend (0 = about 0.5 s worth, 3 to 50).", DefaultValueFactory = _ => 0 };
var benchOps = new Command("ops", "Time per op (forward and backward) on each backend, one run, side by side, with the ratio; GFLOP/s or GB/s.");
foreach (var o in new Option[] { benchBackendsOption, benchOpsOption, opsRepeatOption }) benchOps.Options.Add(o);
benchOps.SetAction(r => Cli.Run(() => BenchOpsCommand.Run(Options(r), r.GetValue(benchBackendsOption)!, r.GetValue(benchOpsOption), r.GetValue(opsRepeatOption))));
bench.Subcommands.Add(benchOps);
bench.Subcommands.Add(BenchModelCommand.Create(Options));
var ttSplits = new Option<string>("--splits") { Description = "Comma-separated TORCHxBLAS thread splits (libtorch intra-op threads x OpenBLAS pool), the first is the base of the ratios.", DefaultValueFactory = _ => $"{Environment.ProcessorCount}x1,{Environment.ProcessorCount}x{Environment.ProcessorCount},1x1,1x{Environment.ProcessorCount}" };
var ttRounds = new Option<int>("--rounds") { Description = "Round-robin rounds over the splits (median).", DefaultValueFactory = _ => 5 };
var ttSizes = new Option<string>("--sizes") { Description = "Square matmul sizes.", DefaultValueFactory = _ => "256,1024,2048" };
var benchThreads = new Command("torch-threads", "The Torch backend's thread split (libtorch threads x OpenBLAS threads) on editing-sized work and big products, every split in one run, round-robin, with ratios.");
foreach (var o in new Option[] { ttSplits, ttRounds, ttSizes }) benchThreads.Options.Add(o);
benchThreads.SetAction(r => Cli.Run(() => BenchTorchThreadsCommand.Run(r.GetValue(ttSplits)!, r.GetValue(ttRounds), r.GetValue(ttSizes)!)));
bench.Subcommands.Add(benchThreads);
var luaCalls = new Option<int>("--calls") { Description = "Calls per timed row.", DefaultValueFactory = _ => 2_000_000 };
var luaBenchBackend = new Option<string>("--backend") { Description = "Backend of the tensor used by the userdata-method row: vulkan or torch.", DefaultValueFactory = _ => "torch" };
var benchLua = new Command("lua", "Cost of one call from a Lua script into C# (rt.* functions), against a plain Lua function call.");
benchLua.Options.Add(luaCalls);
benchLua.Options.Add(luaBenchBackend);
benchLua.SetAction(r => Cli.Run(() => LuaCommands.Bench(r.GetValue(luaCalls), r.GetValue(luaBenchBackend)!, Options(r))));
bench.Subcommands.Add(benchLua);
root.Subcommands.Add(bench);

// ---- validate
var opOption = new Option<string?>("--op") { Description = "Only this op (and its variants, e.g. matmul → matmul_at, ...)." };
var backendOption = new Option<string>("--backend") { Description = "Backend under test (checked against torch).", DefaultValueFactory = _ => "vulkan" };
var seedOption = new Option<int?>("--seed") { Description = "Seed of the random inputs (default: fresh each run, printed)." };
var validate = new Command("validate", "Check every op, forward and backward, against the libtorch reference on fresh random inputs; prints a table, exits 1 on any failure.");
foreach (var o in new Option[] { opOption, backendOption, seedOption }) validate.Options.Add(o);
validate.SetAction(r => Cli.Run(() => ValidateCommand.Run(Options(r), r.GetValue(opOption), r.GetValue(backendOption)!, r.GetValue(seedOption))));
root.Subcommands.Add(validate);

// ---- models and data
var modelOption = new Option<string>("--model")
{
    Description = "Model directory: the Hugging Face GPT-2 layout (config.json, model.safetensors, vocab.json, merges.txt), or a LLaMA-family folder " +
                  "(config.json with model_type llama, qwen2 or mistral; model.safetensors or its index; tokenizer.json), told apart by config.json's model_type.",
    Required = true,
};
var promptOption = new Option<string>("--prompt") { Description = "Prompt text.", Required = true };
var mBackendOption = new Option<string>("--backend") { Description = "vulkan or torch.", DefaultValueFactory = _ => "vulkan" };
var maxTokensOption = new Option<int>("--max-tokens") { Description = "Tokens to generate (stops earlier at <|endoftext|> on GPT-2, at config.json's eos_token_id on LLaMA-family folders).", DefaultValueFactory = _ => 20 };
var genModelOption = new Option<string>("--model")
{
    Description = "Model directory: the Hugging Face GPT-2 layout (config.json, model.safetensors, vocab.json, merges.txt), or a LLaMA-family folder " +
                  "as published (config.json with model_type llama, qwen2 or mistral; model.safetensors or model.safetensors.index.json; tokenizer.json; " +
                  "generation_config.json is ignored), told apart by config.json's model_type.",
    Required = true,
};
var generate = new Command("generate", "Greedy generation with a key/value cache; LLaMA-family prompts start with what tokenizer.json's template prepends (the BOS).");
foreach (var o in new Option[] { genModelOption, promptOption, mBackendOption, maxTokensOption }) generate.Options.Add(o);
generate.SetAction(r => Cli.Run(() => ModelCommands.Generate(Options(r), r.GetValue(mBackendOption)!, r.GetValue(genModelOption)!, r.GetValue(promptOption)!, r.GetValue(maxTokensOption))));
root.Subcommands.Add(generate);

var targetOption = new Option<string>("--target") { Description = "Target text scored after the prompt (include its leading space, e.g. \" Paris\").", Required = true };
var logprob = new Command("logprob", "Teacher-forced log-probability of a target after a prompt, per token.");
foreach (var o in new Option[] { modelOption, promptOption, targetOption, mBackendOption }) logprob.Options.Add(o);
logprob.SetAction(r => Cli.Run(() => ModelCommands.LogProb(Options(r), r.GetValue(mBackendOption)!, r.GetValue(modelOption)!, r.GetValue(promptOption)!, r.GetValue(targetOption)!)));
root.Subcommands.Add(logprob);

var textOption = new Option<string>("--text") { Description = "Text to tokenize.", Required = true };
var tokenize = new Command("tokenize", "Print the token ids of a text (and the tokens, on stderr).");
foreach (var o in new Option[] { modelOption, textOption }) tokenize.Options.Add(o);
tokenize.SetAction(r => Cli.Run(() => ModelCommands.Tokenize(r.GetValue(modelOption)!, r.GetValue(textOption)!)));
root.Subcommands.Add(tokenize);

var outOption = new Option<string>("--out") { Description = "Output directory.", Required = true };
var worldSeedOption = new Option<int>("--seed") { Description = "World seed.", DefaultValueFactory = _ => 1234 };
var world = new Command("world", "Write the synthetic knowledge world: corpus, facts, and zsRE / CounterFact / flat edit benchmarks (train and eval splits).");
foreach (var o in new Option[] { outOption, worldSeedOption }) world.Options.Add(o);
world.SetAction(r => Cli.Run(() => ModelCommands.World(r.GetValue(outOption)!, r.GetValue(worldSeedOption))));
root.Subcommands.Add(world);

var facts = new Command("facts", "Accuracies of a model trained on the synthetic world: objects of trained facts, held-out paraphrases, and target_new before any edit.");
foreach (var o in new Option[] { modelOption, mBackendOption }) facts.Options.Add(o);
facts.SetAction(r => Cli.Run(() => ModelCommands.Facts(Options(r), r.GetValue(mBackendOption)!, r.GetValue(modelOption)!)));
root.Subcommands.Add(facts);

var editorOption = new Option<string>("--editor") { Description = $"Editor plugin: {string.Join(", ", EditRuntime.Editing.EditorRegistry.Names)}.", Required = true };
var dataOption = new Option<string>("--data") { Description = $"Edit requests: zsRE (MEND), CounterFact (ROME) or EasyEdit flat JSON (format detected), or a split of the built-in world, made on first use: {string.Join(", ", EditRuntime.Models.BuiltinModels.DataNames.Select(n => EditRuntime.Models.BuiltinModels.DataPrefix + n))}.", Required = true };
var protocolOption = new Option<string>("--protocol") { Description = "single, batch, sequential or sequential-batch.", DefaultValueFactory = _ => "sequential" };
var editsOption = new Option<int>("--edits") { Description = "Number of requests (the first ones of the file).", DefaultValueFactory = _ => 100 };
var batchOptionE = new Option<int>("--batch") { Description = "Batch size of sequential-batch.", DefaultValueFactory = _ => 10 };
var evalOut = new Option<string?>("--out") { Description = "Write report.json, report.md and report.svg (ES/GS/LS against the number of edits) here." };
var curveOption = new Option<int?>("--curve-every") { Description = "Sequential protocols: measure ES/GS/LS on the requests edited so far every K edits (default: a tenth of --edits; 0 = only at the end)." };
var familyOption = new Option<string?>("--family") { Description = "Hyper-parameter family (default: editrt-tiny / editrt-tiny-llama for our built-in models, else gpt2 or llama by the folder's layout)." };
var hparamsOption = new Option<string?>("--hparams") { Description = "Hyper-parameter JSON overriding the family defaults." };
var setOption = new Option<string[]>("--set") { Description = "key=value hyper-parameter override (repeatable).", AllowMultipleArgumentsPerToken = false };
var profileOption = new Option<bool>("--profile") { Description = "Vulkan: time every kernel with GPU timestamps and print the kernels by total device time (slows the run a little)." };
var eval = new Command("eval", "Run an editor over edit requests under a protocol and report ES, GS, LS, CounterFact success and time per edit.");
foreach (var o in new Option[] { editorOption, modelOption, dataOption, protocolOption, editsOption, batchOptionE, mBackendOption, evalOut, curveOption, familyOption, hparamsOption, setOption, profileOption }) eval.Options.Add(o);
eval.SetAction(r => Cli.Run(() => EvalCommand.Run(Options(r), r.GetValue(editorOption)!, r.GetValue(modelOption)!, r.GetValue(dataOption)!,
    r.GetValue(protocolOption)!, r.GetValue(editsOption), r.GetValue(batchOptionE), r.GetValue(mBackendOption)!, r.GetValue(evalOut), r.GetValue(curveOption),
    r.GetValue(familyOption), r.GetValue(hparamsOption), r.GetValue(setOption) ?? [], r.GetValue(profileOption))));
root.Subcommands.Add(eval);

var mtData = new Option<string>("--data") { Description = $"Training requests (never the ones you measure on): any dataset format, or {EditRuntime.Models.BuiltinModels.DataPrefix}zsre_meta_train (the built-in world's meta-training split, made on first use).", Required = true };
var mtOut = new Option<string>("--out") { Description = "Run folder: hypernet.safetensors (what the editor loads), checkpoint.safetensors, log.jsonl, loss.svg, train_config.json.", Required = true };
var mtEpochs = new Option<int>("--epochs") { Description = "Passes over the training requests.", DefaultValueFactory = _ => 1 };
var mtSteps = new Option<int?>("--steps") { Description = "Stop after this many meta-steps (default: the epochs decide)." };
var mtEvery = new Option<int>("--checkpoint-every") { Description = "Write the checkpoint every K meta-steps (and after the last).", DefaultValueFactory = _ => 10 };
var mtResume = new Option<bool>("--resume") { Description = "Continue from the checkpoint in --out (same data and hyper-parameters)." };
var metaTrain = new Command("meta-train", "Meta-train an editor's hyper-network (MALMEN, MEND, EMSEdit) on training requests: progress per step, atomic checkpoints, resumable, loss curve.");
foreach (var o in new Option[] { editorOption, modelOption, mtData, mtOut, mBackendOption, mtEpochs, mtSteps, mtEvery, mtResume, familyOption, hparamsOption, setOption }) metaTrain.Options.Add(o);
metaTrain.SetAction(r => Cli.Run(() => MetaTrainCommand.Run(Options(r), r.GetValue(editorOption)!, r.GetValue(modelOption)!, r.GetValue(mtData)!, r.GetValue(mtOut)!,
    r.GetValue(mBackendOption)!, r.GetValue(mtEpochs), r.GetValue(mtSteps), r.GetValue(mtEvery), r.GetValue(mtResume), r.GetValue(familyOption), r.GetValue(hparamsOption), r.GetValue(setOption) ?? [])));
root.Subcommands.Add(metaTrain);

// bench edit / bench solve: after the editing options they share are defined.
var beData = new Option<string[]>("--data") { Description = "Edit requests (repeatable; concatenated in order). Default: builtin:counterfact_eval then builtin:counterfact_train (3,360 for the built-in model).", AllowMultipleArgumentsPerToken = false };
var beSizes = new Option<string>("--sizes") { Description = "Comma-separated batch sizes N (the first N requests).", DefaultValueFactory = _ => "100,1000,1680,3360" };
var beOut = new Option<string?>("--out") { Description = "Write bench.md, bench.json, time.svg and (Vulkan) memory.svg here." };
var benchEdit = new Command("edit", "One batch edit of N requests for each N, per backend: wall and device time, stages (key/gradient cache, shift), peak device memory against the cache's bytes.");
foreach (var o in new Option[] { editorOption, modelOption, beData, beSizes, benchBackendsOption, beOut, familyOption, hparamsOption, setOption }) benchEdit.Options.Add(o);
benchEdit.SetAction(r => Cli.Run(() => BenchEditCommand.Run(Options(r), r.GetValue(editorOption)!, r.GetValue(modelOption)!, r.GetValue(beData) ?? [], r.GetValue(beSizes)!,
    r.GetValue(benchBackendsOption)!, r.GetValue(beOut), r.GetValue(familyOption), r.GetValue(hparamsOption), r.GetValue(setOption) ?? [])));
bench.Subcommands.Add(benchEdit);
var bsShapes = new Option<string>("--shapes") { Description = "Comma-separated DKxDV weight shapes (GPT-2 c_proj 3072x768, GPT-J fc_out 16384x4096).", DefaultValueFactory = _ => "768x192,3072x768,16384x4096" };
var bsRows = new Option<int>("--rows") { Description = "Cached rows (keys) in K.", DefaultValueFactory = _ => 4096 };
var bsRepeat = new Option<int>("--repeat") { Description = "Timed runs per shape (median), after one warm-up.", DefaultValueFactory = _ => 3 };
var bsVulkanMax = new Option<int>("--vulkan-max-dk") { Description = "Skip shapes with a larger d_k on Vulkan (lavapipe: about 10 GFLOP/s).", DefaultValueFactory = _ => 4096 };
var benchSolve = new Command("solve", "MALMEN's least-squares shift alone on random keys: Gram matrix, Cholesky factor, KᵀD, triangular solves; time, GFLOP/s and residual per stage and backend.");
foreach (var o in new Option[] { bsShapes, bsRows, benchBackendsOption, bsRepeat, bsVulkanMax }) benchSolve.Options.Add(o);
benchSolve.SetAction(r => Cli.Run(() => BenchSolveCommand.Run(Options(r), r.GetValue(bsShapes)!, r.GetValue(bsRows), r.GetValue(benchBackendsOption)!, r.GetValue(bsRepeat), r.GetValue(bsVulkanMax))));
bench.Subcommands.Add(benchSolve);

var compareReports = new Argument<string[]>("reports") { Description = "Report folders written by 'editrt eval --out' (or their report.json files).", Arity = ArgumentArity.OneOrMore };
var compareOut = new Option<string?>("--out") { Description = "Write compare.md and one compare-METRIC.svg per metric (the metric against the number of edits, one line per report) here." };
var compareMetrics = new Option<string>("--metrics") { Description = "Metrics to plot, comma-separated: ES, GS, LS, CF_success, GS_understood.", DefaultValueFactory = _ => "ES,GS,LS" };
var compare = new Command("compare", "Several eval reports side by side: a Markdown table (metrics, time per edit, peak device memory, trainable parameters) and plots of the metrics against the number of edits.");
compare.Arguments.Add(compareReports);
compare.Options.Add(compareOut);
compare.Options.Add(compareMetrics);
compare.SetAction(r => Cli.Run(() => CompareCommand.Run(r.GetValue(compareReports) ?? [], r.GetValue(compareOut), r.GetValue(compareMetrics)!)));
root.Subcommands.Add(compare);

var radiiOption = new Option<string>("--radii") { Description = "Comma-separated init_radius values.", Required = true };
var sweepOut = new Option<string?>("--out") { Description = "Write sweep.md, sweep.json and sweep.svg (ES/GS/LS against the radius) here." };
var meloSweep = new Command("melo-sweep", "MELO's GS/LS trade-off: edit the first --edits requests once (sequentially), then rebuild the index for each radius and measure ES, GS, LS.");
foreach (var o in new Option[] { modelOption, dataOption, editsOption, radiiOption, mBackendOption, sweepOut, familyOption, setOption }) meloSweep.Options.Add(o);
meloSweep.SetAction(r => Cli.Run(() => MeloSweepCommand.Run(Options(r), r.GetValue(modelOption)!, r.GetValue(dataOption)!, r.GetValue(editsOption),
    r.GetValue(radiiOption)!, r.GetValue(mBackendOption)!, r.GetValue(sweepOut), r.GetValue(familyOption), r.GetValue(setOption) ?? [])));
root.Subcommands.Add(meloSweep);


var configOption = new Option<string>("--config") { Description = "Training recipe (JSON), e.g. models/editrt-tiny/train_config.json.", Required = true };
var trainOut = new Option<string?>("--out") { Description = "Output model directory (default: the recipe's directory)." };
var trainBackend = new Option<string>("--backend") { Description = "vulkan or torch.", DefaultValueFactory = _ => "torch" };
var trainSteps = new Option<int?>("--steps") { Description = "Override the recipe's number of steps." };
var trainLr = new Option<float?>("--learning-rate") { Description = "Override the recipe's peak learning rate." };
var trainInit = new Option<string?>("--init") { Description = "Start from this model directory's weights (same recipe) instead of a random initialisation." };
var train = new Command("train", "Train a model from scratch on the synthetic world (GPT-2, or the LLaMA layout with \"arch\": \"llama\" in the recipe): world, BPE vocabulary, model, log and accuracies.");
foreach (var o in new Option[] { configOption, trainOut, trainBackend, trainSteps, trainInit, trainLr }) train.Options.Add(o);
train.SetAction(r => Cli.Run(() => TrainCommand.Run(Options(r), r.GetValue(configOption)!, r.GetValue(trainOut), r.GetValue(trainBackend)!, r.GetValue(trainSteps), r.GetValue(trainInit), r.GetValue(trainLr))));
root.Subcommands.Add(train);

// ---- Lua
var maxInstrOption = new Option<long>("--max-instructions") { Description = $"Lua VM instructions the script may run (0 = no limit).", DefaultValueFactory = _ => EditRuntime.Lua.LuaHostOptions.DefaultMaxInstructions };
var maxSecondsOption = new Option<double>("--max-seconds") { Description = "Wall-clock seconds the script (or one REPL input) may run, library and rt.* calls included (0 = no limit).", DefaultValueFactory = _ => 0 };
var memLimitOption = new Option<long>("--memory-limit") { Description = "MiB the Lua heap may hold (tables, strings, closures).", DefaultValueFactory = _ => EditRuntime.Lua.LuaHostOptions.DefaultMemoryLimitBytes >> 20 };
var tensorLimitOption = new Option<long>("--tensor-memory-limit") { Description = "MiB of tensors the script may own at once (not the model's weights).", DefaultValueFactory = _ => EditRuntime.Lua.LuaHostOptions.DefaultTensorMemoryLimitBytes >> 20 };
var allowReadOption = new Option<string[]>("--allow-read") { Description = "A directory the script may read below (repeatable; always allowed: the working directory, the script's directory, the built-in models, the temporary directory).", AllowMultipleArgumentsPerToken = false };
var allowWriteOption = new Option<string[]>("--allow-write") { Description = "A directory the script may write below (repeatable; always allowed: the working directory and the temporary directory).", AllowMultipleArgumentsPerToken = false };
var luaBackendOption = new Option<string>("--backend") { Description = "Backend of rt.model.load and rt.tensor until the script calls rt.backend.select: vulkan or torch.", DefaultValueFactory = _ => "vulkan" };
LuaCommands.Limits LuaLimits(ParseResult r) => new(r.GetValue(maxInstrOption), r.GetValue(maxSecondsOption), r.GetValue(memLimitOption), r.GetValue(tensorLimitOption),
    r.GetValue(allowReadOption) ?? [], r.GetValue(allowWriteOption) ?? [], r.GetValue(luaBackendOption)!);
var scriptArg = new Argument<string>("script") { Description = "The Lua script (scripts/README.md documents the rt.* API)." };
var scriptArgs = new Argument<string[]>("args") { Description = "Arguments for the script: '...' of its chunk and arg[1..n] (put '--' before ones that start with '-').", Arity = ArgumentArity.ZeroOrMore };
var run = new Command("run", "Run a Lua script in the sandbox (no io/os/debug; instruction budget and memory limit); errors print as script.lua:LINE: message with a traceback.");
run.Arguments.Add(scriptArg);
run.Arguments.Add(scriptArgs);
foreach (var o in new Option[] { maxInstrOption, maxSecondsOption, memLimitOption, tensorLimitOption, allowReadOption, allowWriteOption, luaBackendOption }) run.Options.Add(o);
run.SetAction(r => Cli.Run(() => LuaCommands.Run(LuaCommands.HostOptions(Options(r), LuaLimits(r)), r.GetValue(scriptArg)!, r.GetValue(scriptArgs) ?? [])));
root.Subcommands.Add(run);
var lua = new Command("lua", "Interactive Lua (the same sandbox and rt.* API as 'run'): expressions print their values; errors leave the session usable.");
foreach (var o in new Option[] { maxInstrOption, maxSecondsOption, memLimitOption, tensorLimitOption, allowReadOption, allowWriteOption, luaBackendOption }) lua.Options.Add(o);
lua.SetAction(r => Cli.Run(() => LuaCommands.Repl(LuaCommands.HostOptions(Options(r), LuaLimits(r)))));
root.Subcommands.Add(lua);

return root.Parse(args).Invoke();
