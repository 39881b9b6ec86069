-- custom_editor.lua — a new editor written in Lua on the engine's primitives, evaluated like the plugins.
--   ./editrt run scripts/custom_editor.lua [N=5] [--backend torch]
--
-- "Rank-one key editor": for each request, take the key k = the input of one MLP projection at the
-- prompt's last token (model:activations), and descend the edit loss with updates of W restricted to
-- that key's direction: ΔW = −lr · k (kᵀ G) / (k·k), where G = ∂loss/∂W (model:grad). Inputs orthogonal to
-- k see no change, which is what keeps unrelated facts in place. Each edit's ΔW is kept, so one edit can
-- be removed (editor:rollback(id)) and all can be undone (editor:rollback()).
local N = tonumber(arg[1]) or 5
local SITE, STEPS, LR, STOP_LOSS = "h.2.mlp.c_proj", 40, 0.5, 0.05

local model = rt.model.load(rt.model.builtin())
local W = model:weight(SITE .. ".weight")        -- a view of the model's weight: in-place ops edit the model
local W0 = W:clone()                             -- the original, for reset
local deltas = {}                                -- edit id -> its ΔW

local function edit_one(r)
  local k = model:activations(r.prompt, SITE)     -- (1, in): the key
  local kk = k:dot(k)
  local total = rt.tensor.zeros(W:shape(), {backend = W:backend()})
  local loss
  for step = 1, STEPS do
    local grads
    loss, grads = model:grad({r}, {SITE .. ".weight"})
    if loss < STOP_LOSS then grads[SITE .. ".weight"]:free() break end
    local G = grads[SITE .. ".weight"]            -- (in, out)
    local kG = k:matmul(G)                        -- (1, out)
    local d = k:matmul(kG, {trans_a = true})      -- (in, out) = kᵀ (k G): rank one
    W:axpy_(-LR / kk, d)
    total:axpy_(-LR / kk, d)
    G:free(); kG:free(); d:free()
  end
  k:free()
  return total, loss
end

local editor = rt.editor.define{
  name = "rank-one key editor (Lua)",
  model = model,
  hparams = {site = SITE, steps = STEPS, lr = LR, stop_loss = STOP_LOSS},
  edit = function(requests)
    local ids = {}
    for i, r in ipairs(requests) do
      local delta = edit_one(r)
      deltas[#deltas + 1] = delta
      ids[i] = #deltas
    end
    return ids
  end,
  remove = function(id)
    local d = assert(deltas[id], "no edit with this id")
    W:axpy_(-1, d)
    d:free()
    deltas[id] = nil
  end,
  reset = function()
    W:copy_(W0)
    for id, d in pairs(deltas) do d:free() end
    deltas = {}
  end,
  info = function() return {trainable_parameters = W:numel(), layers = {SITE}} end,
}

local requests = rt.data.synthetic{limit = N}
print(("%s on %s, %d requests"):format(editor:info().name, model:info().path, N))

-- One edit by hand: before / after, then remove it.
local r = requests[1]
print("before   " .. r.prompt .. model:generate(r.prompt, {max_tokens = 3}))
local id = editor:edit(r)[1]
print("after    " .. r.prompt .. model:generate(r.prompt, {max_tokens = 3}) .. "   (wanted: " .. r.target_new .. ")")
editor:rollback(id)
print("removed  " .. r.prompt .. model:generate(r.prompt, {max_tokens = 3}))

-- The same protocol and metrics as any plugin.
local result = rt.eval.run(editor, requests, {protocol = "sequential"})
print(("sequential, %d edits:  ES %.3f  GS %.3f  LS %.3f  CF %.3f  (%.0f ms/edit)"):format(
  result.edits, result.es, result.gs, result.ls, result.cf, result.seconds_per_edit * 1000))
editor:rollback()
