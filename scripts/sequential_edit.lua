-- sequential_edit.lua — apply T edits one after another and watch the earlier ones hold (or fade).
--   ./editrt run scripts/sequential_edit.lua [T=20] [editor=ft-l] [every=5] [--backend torch]
local T = tonumber(arg[1]) or 20
local EDITOR = arg[2] or "ft-l"
local EVERY = tonumber(arg[3]) or 5

local model = rt.model.load(rt.model.builtin())
local requests = rt.data.synthetic{limit = T}
local baseline = rt.eval.baseline(model, requests)
local editor = rt.editor.new(EDITOR, {model = model})
print(("%s, %d sequential edits on %s (%s)"):format(editor:info().name, T, model:info().path, model:info().backend))
-- Locality baselines (the unedited model's answers) for every checkpoint, taken before the first edit.
local checkpoints, prefix, baselines = {}, {}, {}
for i = EVERY, T, EVERY do checkpoints[#checkpoints + 1] = i end
if checkpoints[#checkpoints] ~= T then checkpoints[#checkpoints + 1] = T end
for _, i in ipairs(checkpoints) do
  prefix[i] = {table.unpack(requests, 1, i)}
  baselines[i] = rt.eval.baseline(model, prefix[i])
end
local first = {requests[1]}
local first_baseline = rt.eval.baseline(model, first)

print("edits   ES      GS      LS      (all edited so far)   ES of the first edit")
for i, r in ipairs(requests) do
  editor:edit(r)                                   -- one request at a time, on the same model
  if baselines[i] then
    local m = rt.eval.metrics(model, prefix[i], baselines[i])
    local f = rt.eval.metrics(model, first, first_baseline)
    print(("%5d   %.3f   %.3f   %.3f                         %.3f"):format(i, m.es, m.gs, m.ls, f.es))
  end
end
local final = rt.eval.metrics(model, requests, baseline)
print(("after %d edits: ES %.3f  GS %.3f  LS %.3f  CF %.3f"):format(T, final.es, final.gs, final.ls, final.cf))
editor:rollback()

-- The same through the protocol runner, with a progress callback.
local r = rt.eval.run(editor, requests, {protocol = "sequential", progress = function(msg)
  if msg:match("/" .. T .. "$") then print("  " .. msg) end
end})
print(("rt.eval.run sequential: ES %.3f  GS %.3f  LS %.3f  CF %.3f, %.0f ms/edit"):format(r.es, r.gs, r.ls, r.cf, r.seconds_per_edit * 1000))
editor:rollback()
