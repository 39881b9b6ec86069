-- The sandbox prelude: runs once when a LuaHost starts, before any script, with the host's internal
-- functions as its argument. It trims the global environment to the whitelist and wraps the few
-- functions whose unwrapped form would let a script escape the host's limits. Returns the wrapper
-- factory for rt.* functions and the REPL's result formatter.
local H = ...
local error, type, select, tostring, rawget = error, type, select, tostring, rawget
local concat = table.concat
local raw_pcall, raw_setmetatable, raw_load = pcall, setmetatable, load
local co_resume, co_close = coroutine.resume, coroutine.close
local raw_rep = string.rep
local stopped, write, memory_left = H.stopped, H.write, H.memory_left

-- No file access, no bytecode, no process control, no environment: only what is listed here stays.
dofile, loadfile, warn, require, package, debug, io = nil, nil, nil, nil, nil, nil, nil
string.dump, string.pack, string.packsize, string.unpack = nil, nil, nil, nil
os = { clock = os.clock, time = os.time, date = os.date, difftime = os.difftime }
getmetatable("").__metatable = "locked"

-- A stopped script (instruction budget, memory limit) must not be resumed by catching the error.
local function unless_stopped(ok, ...)
  if not ok then
    local why = stopped()
    if why then error(why, 0) end
  end
  return ok, ...
end
function pcall(f, ...) return unless_stopped(raw_pcall(f, ...)) end
-- xpcall's handler runs after the failed call has unwound (through pcall), not at the error point: a
-- handler runs there with hooks off (the count hook could not stop a loop in it), and scripts have no
-- debug library to inspect that stack anyway.
local function handled(handler, ok, ...)
  if ok then return true, ... end
  local why = stopped()
  if why then error(why, 0) end
  return false, handler((...))
end
function xpcall(f, handler, ...)
  if type(handler) ~= "function" then
    error("bad argument #2 to 'xpcall' (function expected, got " .. type(handler) .. ")", 2)
  end
  return handled(handler, raw_pcall(f, ...))
end
coroutine.resume = function(co, ...) return unless_stopped(co_resume(co, ...)) end
coroutine.close = function(co) return unless_stopped(co_close(co)) end

function setmetatable(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: __gc finalizers are not allowed in scripts (the sandbox runs no script code during garbage collection)", 2)
  end
  return raw_setmetatable(t, mt)
end

function load(chunk, name, mode, ...)
  if mode ~= nil and mode ~= "t" then
    error("load: mode \"" .. tostring(mode) .. "\" refused: scripts may load text chunks only, never bytecode", 2)
  end
  if type(chunk) == "function" then
    local parts, n = {}, 0
    while true do
      local piece = chunk()
      if piece == nil or piece == "" then break end
      if type(piece) ~= "string" then return nil, "reader function must return a string" end
      n = n + 1
      parts[n] = piece
    end
    chunk = concat(parts, "", 1, n)
  end
  if type(chunk) ~= "string" then
    error("bad argument #1 to 'load' (string expected, got " .. type(chunk) .. ")", 2)
  end
  return raw_load(chunk, name, "t", ...)
end

-- string.rep is the one library function that makes a large block from small arguments: check first,
-- so that the error names the script's line.
string.rep = function(s, n, sep)
  if type(n) == "number" and n > 1 then
    local size = (#tostring(s) + (sep ~= nil and #tostring(sep) or 0)) * n
    local left = memory_left()
    if size > left then
      error(("string.rep: a result of %.0f bytes would exceed the memory limit (%.0f bytes left)"):format(size, left), 2)
    end
  end
  return raw_rep(s, n, sep)
end

function print(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  write(concat(parts, "\t", 1, n) .. "\n")
end

-- rt.* functions: the C# side returns (true, results...) or (false, message, level); the error is raised
-- here, in Lua, so that no Lua error ever unwinds through a .NET frame.
local function check(ok, ...)
  if ok then return ... end
  local message, level = ...
  error(message, level)
end
local function wrap(raw)
  return function(...) return check(raw(...)) end
end

local function format(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  return concat(parts, "\t", 1, n), n
end

return wrap, format
