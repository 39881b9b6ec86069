-- compare_editors.lua — several editors, the same requests, the same protocols; one report.
--   ./editrt run scripts/compare_editors.lua [N=10] [out=/tmp/editrt-compare] [--backend torch]
local N = tonumber(arg[1]) or 10
local OUT = arg[2] or "/tmp/editrt-compare"
local EDITORS = {"ft-l", "grace"}
local PROTOCOLS = {"batch", "sequential"}

local model = rt.model.load(rt.model.builtin())
local requests = rt.data.synthetic{limit = N}
print(("%d requests, model %s on %s; editors available: %s"):format(N, model:info().path, model:info().backend, table.concat(rt.editor.list(), ", ")))

local runs = {}
for _, name in ipairs(EDITORS) do
  local editor = rt.editor.new(name, {model = model})
  for _, protocol in ipairs(PROTOCOLS) do
    local r = rt.eval.run(editor, requests, {protocol = protocol})
    editor:rollback()                                  -- the next run starts from the unedited model
    runs[#runs + 1] = r
    print(("%-6s %-11s ES %.3f  GS %.3f  LS %.3f  CF %.3f  %7.0f ms/edit"):format(r.editor, protocol, r.es, r.gs, r.ls, r.cf, r.seconds_per_edit * 1000))
  end
  editor:close()
end
print("report: " .. rt.eval.report(OUT, runs, {title = ("Editors on %d synthetic requests"):format(N)}))
