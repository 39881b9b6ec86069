-- demo.lua — edit one fact of the built-in model and look at what changed.
--   ./editrt run scripts/demo.lua            (this is `make demo`)
--   ./editrt run scripts/demo.lua --backend torch
-- The editor is one name: MELO (the first seed method); "ft-l", "grace" or "momoe" work the same way.
local EDITOR = "melo"
local REQUEST = tonumber(arg[1]) or 4   -- which request of the synthetic world's eval split to edit

local t0 = rt.clock()
local model = rt.model.load(rt.model.builtin())
local info = model:info()
print(("model   %s: %d layers, %d wide, %d parameters"):format(info.path, info.layers, info.width, info.parameters))
print(("backend %s (%s)"):format(info.backend, info.device))

local r = rt.data.synthetic{limit = REQUEST}[REQUEST]
local function continue(prompt) return (model:generate(prompt, {max_tokens = 4})) end
local function says(text, answer) return text:sub(1, #answer + 1) == " " .. answer end

print()
print("the fact      " .. r.prompt .. " [" .. r.target_true .. "]")
print("the edit      " .. r.target_true .. "  ->  " .. r.target_new)
print("before        " .. r.prompt .. continue(r.prompt))
local p_true, p_new = model:logprob(r.prompt, r.target_true), model:logprob(r.prompt, r.target_new)
print(("              log p(%s) = %.2f, log p(%s) = %.2f"):format(r.target_true, p_true.logprob, r.target_new, p_new.logprob))

local baseline = rt.eval.baseline(model, {r})   -- the unedited model's answers, for locality
local editor = rt.editor.new(EDITOR, {model = model})
local e = editor:info()
print()
print(("editor        %s on %s (%d trainable parameters)"):format(e.name, table.concat(e.layers, ", "), e.trainable_parameters))
local t = rt.clock()
editor:edit(r)
print(("edited in     %.2f s"):format(rt.clock() - t))

print()
local after = continue(r.prompt)
print("after         " .. r.prompt .. after .. (says(after, r.target_new) and "   <- the new fact" or "   (the edit did not take)"))
local para = r.rephrase[1]
local para_after = continue(para)
print("paraphrase    " .. para .. para_after .. (says(para_after, r.target_new) and "   <- follows the edit" or "   (does not follow)"))
local loc = r.locality[1]
local loc_after = continue(loc.prompt)
print("unrelated     " .. loc.prompt .. loc_after .. (says(loc_after, loc.answer) and "   <- unchanged, as it should be" or "   (changed!)"))

local m = rt.eval.metrics(model, {r}, baseline)
print()
print(("metrics       ES %.2f   GS %.2f   LS %.2f   CounterFact success %.2f"):format(m.es, m.gs, m.ls, m.cf))

editor:rollback()
print("rolled back   " .. r.prompt .. continue(r.prompt))
print(("(%.1f s in all)"):format(rt.clock() - t0))
