using EditRuntime.Data;
using EditRuntime.Lua;
using NUnit.Framework;

namespace EditRuntime.Tests.Lua;

/// <summary>Every rt.* function and method, called from Lua on the built-in model (Torch backend), with its results checked in Lua.</summary>
public sealed class LuaApiTests
{
    private string _dir = "";

    [OneTimeSetUp]
    public void WriteData()
    {
        _dir = Path.Combine(Path.GetTempPath(), "editrt-lua-api-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
        var world = SyntheticWorld.Generate(null, 1234);
        File.WriteAllBytes(Path.Combine(_dir, "zsre.json"), world.ZsreJson(BenchmarkSplit.Eval));
        File.WriteAllBytes(Path.Combine(_dir, "counterfact.json"), world.CounterFactJson(BenchmarkSplit.Eval));
        File.WriteAllBytes(Path.Combine(_dir, "flat.json"), world.FlatJson(BenchmarkSplit.Eval));
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(_dir, true);

    private string Script => """
        local dir = "@DIR@"
        -- rt.info, rt.clock, rt.backend
        local info = rt.info()
        assert(info.backend == "torch" and info.memory_limit == 64 * 1024 * 1024 and info.max_instructions == 0, "info")
        local t0 = rt.clock(); assert(type(t0) == "number" and rt.clock() >= t0)
        local backends = rt.backend.list()
        assert(#backends == 2 and backends[1].name == "vulkan" and backends[2].name == "torch" and backends[2].selected, "list")
        assert(backends[2].available == true and backends[2].device:match("libtorch"), "torch available")
        assert(rt.backend.current() == "torch")
        assert(rt.backend.select("torch"):match("CPU"))

        -- rt.model and Model methods
        local path = rt.model.builtin()
        assert(path:match("models/editrt%-tiny$"), path)
        local model = rt.model.load(path, {backend = "torch"})
        local mi = model:info()
        assert(mi.layers == 4 and mi.width == 192 and mi.vocab == 2048 and mi.backend == "torch" and mi.prepend_bos == true and #mi.sites == 16, "model:info")
        local ids, toks = model:tokenize("The capital of Vamar is")
        assert(#ids == #toks and #ids > 3 and math.type(ids[1]) == "integer", "tokenize")
        assert(model:decode(ids) == "The capital of Vamar is", "decode")
        local text, gen = model:generate("The capital of Vamar is", {max_tokens = 3})
        assert(text:sub(1, 8) == " Kaigati" and #gen >= 1, "generate: " .. text)
        local lp = model:logprob("The capital of Vamar is", "Kaigati")
        assert(lp.accuracy == 1 and lp.logprob < 0 and lp.logprob > -1 and #lp.tokens == #lp.token_logprobs and lp.hits[1] == true and #lp.argmax == #lp.tokens, "logprob")
        local params = model:params()
        assert(params["h.2.mlp.c_proj.weight"][1] == 768 and params["h.2.mlp.c_proj.weight"][2] == 192, "params")

        -- rt.data
        local zs = rt.data.load(dir .. "/zsre.json", {limit = 3})
        local cf = rt.data.load(dir .. "/counterfact.json", {format = "counterfact", limit = 2})
        local fl = rt.data.load(dir .. "/flat.json", {format = "flat"})
        assert(#zs == 3 and #cf == 2 and #fl == 1680, "data.load")
        local bi = rt.data.load("builtin:counterfact_eval", {limit = 2})
        assert(#bi == 2 and bi[1].prompt == cf[1].prompt and bi[1].source == "counterfact_eval.json", "builtin data")
        assert(zs[1].source == "zsre.json" and #zs[1].locality == 1 and zs[1].target_new ~= nil, "zsre fields")
        local reqs = rt.data.synthetic{limit = 2}
        assert(#reqs == 2 and reqs[1].prompt == cf[1].prompt and reqs[1].target_new == cf[1].target_new, "synthetic = counterfact file")
        local train = rt.data.synthetic{split = "train", seed = 1234, limit = 1}
        assert(train[1].source == "synthetic/train")
        local byhand = rt.data.request{prompt = "The capital of Vamar is ", subject = "Vamar", target_new = " Lurefem",
          rephrase = "Vamar's capital is", locality = {{prompt = "The capital of Detia is", answer = "Kaigati"}}}
        assert(byhand.prompt == "The capital of Vamar is" and byhand.target_new == "Lurefem" and byhand.rephrase[1] == "Vamar's capital is", "request normalised")

        -- tensors on engine ops
        local a = rt.tensor.from_table({1, 2, 3, 4, 5, 6}, {2, 3})
        local b = rt.tensor.zeros({2, 3}):fill_(2)
        assert(a:numel() == 6 and a:shape()[1] == 2 and a:shape()[2] == 3 and a:backend() == "torch", "shape")
        local s = a:add(b):sub(b):mul(b):scale(0.5)
        assert(s:sum() == 21 and a:dot(b) == 42 and math.abs(a:norm() - math.sqrt(91)) < 1e-5, "elementwise")
        local m = a:matmul(b, {trans_b = true})
        assert(m:shape()[1] == 2 and m:shape()[2] == 2 and m:to_table()[1] == 12, "matmul")
        local r = a:reshape({3, 2}):clone()
        assert(r:shape()[1] == 3 and r:to_table()[6] == 6, "reshape/clone")
        local c = rt.tensor.zeros({2, 3}):copy_(a):axpy_(-1, a)
        assert(c:norm() == 0, "copy_/axpy_")
        assert(rt.tensor.from_table({7}, {1}):item() == 7, "item")
        for _, x in ipairs({a, b, s, m, r, c}) do x:free() end

        -- a layer's activations, a weight's gradient, a delta added to the weight
        local keys = model:activations({reqs[1].prompt, reqs[2].prompt}, "h.2.mlp.c_proj")
        assert(keys:shape()[1] == 2 and keys:shape()[2] == 768, "activations (last token)")
        local outs = model:activations(reqs[1].prompt, "h.2.mlp.c_proj", {which = "output", position = "all"})
        assert(outs:shape()[1] == 1 and outs:shape()[3] == 192, "activations (all positions)")
        local loss0 = model:loss(reqs[1])
        local loss, grads = model:grad({reqs[1]}, {"h.2.mlp.c_proj.weight"})
        local g = grads["h.2.mlp.c_proj.weight"]
        assert(math.abs(loss - loss0) < 1e-4 and g:shape()[1] == 768 and g:norm() > 0, "grad")
        local w = model:weight("h.2.mlp.c_proj.weight")
        local w0 = w:clone()
        w:axpy_(-0.5, g)                                -- one gradient step on the model's own weight
        assert(model:loss(reqs[1]) < loss0, "the step lowers the loss")
        w:copy_(w0)
        assert(math.abs(model:loss(reqs[1]) - loss0) < 1e-5, "copy_ restores the weight")
        for _, x in ipairs({keys, outs, g, w0}) do x:free() end

        -- rt.editor and Editor methods
        local names = rt.editor.list()
        assert(table.concat(names, ","):match("FT%-L") and table.concat(names, ","):match("GRACE"), "editor.list")
        local ed = rt.editor.new("ft-l", {model = model, hparams = {steps = 12}})
        local ei = ed:info()
        assert(ei.name == "FT-L" and ei.hparams.steps == 12 and ei.layers[1] == "h.2.mlp.c_proj" and ei.can_remove == false, "editor:info")
        assert(ed:can_remove() == false)
        local baseline = rt.eval.baseline(model, reqs)
        assert(baseline:info().requests == 2 and baseline:info().locality_prompts > 0, "baseline:info")
        local before = rt.eval.metrics(model, reqs, baseline)
        assert(before.es < 0.5 and before.ls == 1 and before.requests == 2, "metrics before")
        local edit_ids = ed:edit(reqs)
        assert(#edit_ids == 2, "edit ids")
        local after = rt.eval.metrics(model, reqs, baseline)
        assert(after.es > before.es, "the edit raises ES")
        assert(rt.eval.metrics(model, reqs).ls == nil, "no baseline, no LS")
        local state = ed:save(dir .. "/ftl.safetensors")
        ed:rollback()
        assert(rt.eval.metrics(model, reqs, baseline).es == before.es, "rollback")
        ed:load(state)
        assert(rt.eval.metrics(model, reqs, baseline).es == after.es, "load")
        ed:rollback()
        local ok, err = pcall(ed.rollback, ed, 0)
        assert(not ok and err:match("FT%-L cannot remove one edit"), err)

        -- rt.eval.run, protocols, report
        local protocols = rt.eval.protocols()
        assert(#protocols == 4 and protocols[4] == "sequential-batch")
        local seen = 0
        local run = rt.eval.run(ed, reqs, {protocol = "sequential", curve_every = 1, progress = function(msg) seen = seen + 1 end,
                                           out = dir .. "/run", data = "two synthetic requests"})
        assert(run.report == dir .. "/run/report.json", "eval.run out")
        assert(run.editor == "FT-L" and run.edits == 2 and run.es > 0 and run.ls and run.seconds_per_edit > 0 and seen >= 2, "eval.run")
        assert(#run.curve == 2 and run.curve[1].edits == 1 and run.curve[2].edits == 2 and run.curve[2].es == run.es, "eval.run curve")
        assert(run.understood_rephrases > 0 and run.gs_understood >= 0 and run.gs_understood <= 1 and run.measure_seconds > 0, "eval.run understood")
        if rt.backend.current() == "vulkan" then
          assert(run.device_seconds_per_edit > 0 and run.peak_edit_device_mib > 0 and run.peak_device_mib >= run.peak_edit_device_mib, "eval.run device counters")
        else
          assert(run.device_seconds_per_edit == nil, "no device counters on torch")
        end
        local ok2, err2 = pcall(rt.eval.run, ed, reqs, {curve_every = -1})
        assert(not ok2 and err2:match("curve_every"), err2)
        ed:rollback()
        local report = rt.eval.report(dir .. "/report", {run}, {title = "api test"})
        assert(report == dir .. "/report/report.json")

        -- an editor defined in Lua runs under the same protocol
        local W = model:weight("h.2.mlp.c_proj.weight")
        local W0 = W:clone()
        local calls = {}
        local lua_ed = rt.editor.define{
          name = "lua-sgd", model = model, hparams = {lr = 1.0},
          edit = function(rs)
            calls[#calls + 1] = #rs
            for _ = 1, 3 do
              local _, gr = model:grad(rs, {"h.2.mlp.c_proj.weight"})
              W:axpy_(-1.0, gr["h.2.mlp.c_proj.weight"])
              gr["h.2.mlp.c_proj.weight"]:free()
            end
          end,
          reset = function() W:copy_(W0) end,
          info = function() return {trainable_parameters = W:numel(), layers = {"h.2.mlp.c_proj"}} end,
        }
        local li = lua_ed:info()
        assert(li.name == "lua-sgd" and li.trainable_parameters == 768 * 192 and li.hparams.lr == 1.0 and li.can_remove == false, "defined info")
        local lr = rt.eval.run(lua_ed, reqs, {protocol = "batch"})
        assert(#calls == 1 and calls[1] == 2 and lr.edits == 2 and lr.batch == 2, "defined editor ran once on the batch")
        lua_ed:rollback()
        -- meta-training a hyper-network editor (small network, two steps), which then edits
        local mt = rt.editor.new("MALMEN", {model = model, hparams = {rank = 32, n_edits = 2, sub_batch = 2, chunk = 16,
          hypernet = "@DIR@/mt/hypernet.safetensors"}})
        local hist = mt:meta_train(rt.data.synthetic{split = "train", limit = 4}, {out = "@DIR@/mt", steps = 2, checkpoint_every = 1})
        assert(#hist == 2 and hist[2].step == 2 and hist[1].loss > 0 and hist[1].regulariser == "locality KL", "meta_train history")
        assert(#mt:edit(reqs) == 2, "the trained editor edits")
        mt:rollback()
        mt:close()
        local ok, err = pcall(function() return ed:meta_train(reqs, {out = "@DIR@/mt2"}) end)
        assert(not ok and err:match("nothing to meta%-train"), "FT-L has no hyper-network")
        assert(math.abs(model:loss(reqs[1]) - loss0) < 1e-5, "defined reset")
        lua_ed:close()
        ed:close()
        W0:free()
        model:close()
        return "done"
        """.Replace("@DIR@", _dir);

    [Test]
    public void Every_API_function_works_from_Lua()
    {
        using var h = new LuaHost(new LuaHostOptions { DefaultBackend = "torch", MaxInstructions = 0, MemoryLimitBytes = 64L << 20, Output = new StringWriter() });
        var script = Script;
        foreach (var fn in h.Functions)
            Assert.That(script, Does.Contain(fn.IsMethod ? ":" + fn.Name.Split(':')[1] + "(" : fn.Name), $"the API test calls {fn.Name}");
        Assert.That(h.Execute(script, "@api_test.lua").Text, Is.EqualTo("done"));
        Assert.That(File.ReadAllText(Path.Combine(_dir, "report", "report.md")), Does.Contain("| FT-L | torch | sequential | 2 |"));
        Assert.That(File.ReadAllText(Path.Combine(_dir, "report", "report.json")), Does.Contain("\"title\": \"api test\""));
        // rt.eval.run{out=} writes the report files of `editrt eval --out`, which `editrt compare` reads
        var run = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, "run", "report.json")))!;
        Assert.That((string)run["editor"]!, Is.EqualTo("FT-L"));
        Assert.That((string)run["data"]!, Is.EqualTo("two synthetic requests"));
        Assert.That((string)run["protocol"]!, Is.EqualTo("sequential"));
        Assert.That((int)run["edits"]!, Is.EqualTo(2));
        Assert.That((double)run["metrics"]!["ES"]!, Is.InRange(0.0, 1.0));
        Assert.That(run["curve"]!.AsArray(), Has.Count.EqualTo(2));
        Assert.That((string)run["build"]!, Does.Match("^[0-9a-f]{40}"));
        Assert.That(File.Exists(Path.Combine(_dir, "run", "report.svg")));
    }

    [Test]
    public void A_llama_layout_model_loads_scores_and_edits_from_Lua()
    {
        using var h = new LuaHost(new LuaHostOptions { DefaultBackend = "torch", MaxInstructions = 0, MemoryLimitBytes = 64L << 20, Output = new StringWriter() });
        Assert.That(h.Execute("""
            local path = rt.model.builtin():gsub("editrt%-tiny$", "editrt-tiny-llama")
            local model = rt.model.load(path, {backend = "torch"})
            local mi = model:info()
            assert(mi.arch == "llama" and mi.layers == 4 and mi.width == 192 and mi.prepend_bos == true and #mi.sites == 28, "model:info")
            assert(mi.family == "editrt-tiny-llama" and mi.sites[28] == "model.layers.3.mlp.down_proj", "sites and family")
            local params = model:params()
            assert(params["model.layers.2.mlp.down_proj.weight"][1] == 512 and params["model.layers.2.mlp.down_proj.weight"][2] == 192, "site weights (in, out)")
            local keys = model:activations("The capital of Vamar is", "model.layers.2.mlp.down_proj")
            assert(keys:shape()[1] == 1 and keys:shape()[2] == 512, "activations")
            keys:free()
            local reqs = rt.data.synthetic{limit = 2}
            local baseline = rt.eval.baseline(model, reqs)
            local before = rt.eval.metrics(model, reqs, baseline)
            local ed = rt.editor.new("GRACE", {model = model})
            assert(ed:info().layers[1] == "model.layers.2.mlp.down_proj", "the editrt-tiny-llama defaults")
            ed:edit(reqs)
            local after = rt.eval.metrics(model, reqs, baseline)
            assert(after.es == 1 and after.es > before.es and after.ls > 0.9, "GRACE edits the LLaMA layout")
            return "done"
            """, "@llama.lua").Text, Is.EqualTo("done"));
    }

    [Test]
    public void Every_editor_edits_the_llama_layout_model_from_Lua_and_rolls_back()
    {
        var output = new StringWriter();
        using var h = new LuaHost(new LuaHostOptions { DefaultBackend = "torch", MaxInstructions = 0, MemoryLimitBytes = 64L << 20, Output = output });
        Assert.That(h.Execute("""
            local path = rt.model.builtin():gsub("editrt%-tiny$", "editrt-tiny-llama")
            local model = rt.model.load(path, {backend = "torch"})
            local reqs = rt.data.synthetic{limit = 2}
            local baseline = rt.eval.baseline(model, reqs)
            local before = rt.eval.metrics(model, reqs, baseline)
            local names = rt.editor.list()
            assert(#names == 10, "ten editor plugins, got " .. #names)
            for _, name in ipairs(names) do
              local ed = rt.editor.new(name, {model = model})
              for _, layer in ipairs(ed:info().layers) do
                assert(layer:match("^model%.layers%.%d+%."), name .. " edits a LLaMA site, not " .. layer)
              end
              ed:edit(reqs)
              local after = rt.eval.metrics(model, reqs, baseline)
              for _, k in ipairs({"es", "gs", "ls"}) do
                assert(after[k] == after[k] and after[k] >= 0 and after[k] <= 1, name .. ": " .. k .. " is a score")
              end
              print(string.format("%s ES %.3f -> %.3f  LS %.3f", name, before.es, after.es, after.ls))
              ed:rollback()
              local back = rt.eval.metrics(model, reqs, baseline)
              assert(back.es == before.es and back.gs == before.gs and back.ls == before.ls, name .. ": rollback gives the unedited scores back")
              ed:close()
            end
            return "done"
            """, "@llama-every-editor.lua").Text, Is.EqualTo("done"));
        TestContext.Out.WriteLine(output.ToString());
    }

    [Test]
    public void Model_and_editor_methods_reject_extra_arguments_and_wrong_types()
    {
        using var h = LuaTesting.Host();
        h.Eval("""
            objects = {}
            objects.Model = rt.model.load(rt.model.builtin())
            objects.Editor = rt.editor.new("ft-l", {model = objects.Model})
            objects.Baseline = rt.eval.baseline(objects.Model, rt.data.synthetic{limit = 1})
            """);
        int n = 0;
        foreach (var fn in h.Functions.Where(f => f.IsMethod && f.Name.Split(':')[0] is "Model" or "Editor" or "Baseline"))
        {
            var (type, method) = (fn.Name.Split(':')[0], fn.Name.Split(':')[1]);
            if (method == "close") continue;
            var e = h.Fails($"objects.{type}:{method}({string.Join(", ", Enumerable.Repeat("1", fn.MaxArgs + 1))})");
            Assert.That(e.Message, Does.StartWith($"test.lua:1: {fn.Name}: expected"));
            if (fn.MinArgs > 0)
            {
                e = h.Fails($"objects.{type}:{method}({string.Join(", ", Enumerable.Repeat("coroutine.create(print)", fn.MinArgs))})");
                Assert.That(e.Message, Does.StartWith("test.lua:1: ").And.Contain(fn.Name).And.Contain("thread"));
            }
            n++;
        }
        Assert.That(n, Is.GreaterThanOrEqualTo(15));
    }

    [Test]
    public void An_error_inside_a_Lua_editor_reaches_the_script_once_with_its_own_line()
    {
        using var h = LuaTesting.Host();
        var e = h.Fails("""
            local model = rt.model.load(rt.model.builtin())
            local ed = rt.editor.define{name = "broken", model = model,
              edit = function(rs)
                error("no edit today")
              end,
              reset = function() end}
            rt.eval.run(ed, rt.data.synthetic{limit = 1})
            """);
        Assert.That(e.Message, Is.EqualTo("test.lua:4: no edit today"));
        e = h.Fails("""
            local model = rt.model.load(rt.model.builtin())
            local ed = rt.editor.define{name = "spins", model = model, edit = function() while true do end end, reset = function() end}
            ed:edit(rt.data.synthetic{limit = 1})
            """, LuaErrorKind.InstructionBudget);
        Assert.That(e.Message, Does.Contain("instruction budget"));
    }
}
