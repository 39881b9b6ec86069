-- The sandbox prelude: runs once when a LuaHost starts, before any script, with the host's internal
-- functions as its argument. It trims the global environment to the whitelist and wraps the few
-- functions whose unwrapped form would let a script escape the host's limits. Returns the wrapper
-- factory for rt.* functions and the REPL's result formatter.
local H = ...
local error, type, select, tostring, rawget = error, type, select, tostring, rawget
local concat = table.concat
local raw_pcall, raw_setmetatable, raw_load = pcall, setmetatable, load
local co_resume, co_close = coroutine.resume, coroutine.close
local raw_rep, raw_sub, raw_byte, raw_gsub = string.rep, string.sub, string.byte, string.gsub
local raw_move, raw_insert, raw_remove = table.move, table.insert, table.remove
local tointeger, maxinteger, tonumber, rawequal, unpack = math.tointeger, math.maxinteger, tonumber, rawequal, table.unpack
local stopped, write, memory_left, charge, refuse = H.stopped, H.write, H.memory_left, H.charge, H.refuse
local c_find, c_match, c_step, c_gsub = H.find, H.match, H.step, H.gsub

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

-- A C library function called from here would name this file and its own local in an error
-- ("[rt]:9: bad argument #1 to 'raw_rep'"): call it through pcall and give the error the script's line
-- and the function's real name. A limit reached inside it is re-raised as it is.
local function named(name, ok, ...)
  if ok then return ... end
  local why = stopped()
  if why then error(why, 0) end
  local m = ...
  if type(m) == "string" then
    m = raw_gsub(raw_gsub(m, "^%[rt%]:%d+: ", ""), "to '[%w_%.%?]+'", "to '" .. name .. "'", 1)
  end
  error(m, 2)
end

-- The same for one chunk of a guarded loop: the error keeps its own position (a metamethod's), none is added.
local function chunk_ok(name, ok, ...)
  if ok then return end
  local why = stopped()
  if why then error(why, 0) end
  local m = ...
  if type(m) == "string" then
    m = raw_gsub(raw_gsub(m, "^%[rt%]:%d+: ", ""), "to '[%w_%.%?]+'", "to '" .. name .. "'", 1)
  end
  error(m, 0)
end

-- Work done inside C, reported to the host (instruction budget, clock); a limit crossed stops the script here.
local function spend(n)
  local why = charge(n)
  if why then error(why, 0) end
end

-- string.rep makes a large block from small arguments, and loops once per repetition even when the pieces
-- are empty (("").rep("", 2^62) never returns): the size and the count are checked first.
string.rep = function(...)
  local s, n, sep = ...
  if type(n) == "number" and n > 1 and tointeger(n) and (type(s) == "string" or type(s) == "number")
      and (sep == nil or type(sep) == "string" or type(sep) == "number") then
    local piece = #tostring(s) + (sep ~= nil and #tostring(sep) or 0)
    if piece == 0 then return "" end -- empty pieces: the result is empty however many there are
    local size = #tostring(s) * n + (sep ~= nil and #tostring(sep) or 0) * (n - 1)
    if size > memory_left() then error(refuse("string.rep", size), 0) end
    spend(size // 64)
  end
  return named("rep", raw_pcall(raw_rep, ...))
end

-- Pattern functions: matched in C# with a step budget (Lua's C matcher backtracks without returning to the
-- VM, so no hook could stop it). Errors carry the script's line; a limit reached while matching stops the script.
local function check_c(ok, ...)
  if ok then return ... end
  local message, level = ...
  error(message, level)
end
string.find = function(...) return check_c(c_find(...)) end
string.match = function(...) return check_c(c_match(...)) end

local function arg_string(v, i, fname, given)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  error(("bad argument #%d to '%s' (string expected, got %s)"):format(i, fname, given and t or "no value"), 3)
end

local function arg_integer(v, i, fname, default)
  if v == nil then return default end
  local n = tointeger(v)
  if n then return n end
  if type(v) == "string" then n = tointeger(tonumber(v)) if n then return n end end
  error(("bad argument #%d to '%s' (%s)"):format(i, fname,
    type(v) == "number" and "number has no integer representation" or "number expected, got " .. type(v)), 3)
end

string.gmatch = function(...)
  local s, p, init = ...
  local given = select("#", ...)
  s = arg_string(s, 1, "gmatch", given >= 1)
  p = arg_string(p, 2, "gmatch", given >= 2)
  local ls = #s
  init = arg_integer(init, 3, "gmatch", 1)
  if init == 0 or init < -ls then init = 1 elseif init < 0 then init = ls + init + 1 end
  local src, last = init - 1, -1
  if src > ls then src = ls + 1 end
  local function take(ok, start, e, ...)
    if not ok then error(start, e) end
    if start == nil then src = ls + 1 return nil end
    src, last = e, e
    return ...
  end
  return function()
    if src > ls then return nil end
    return take(c_step(s, p, src, last, false))
  end
end

local gsub_string = function(...) return check_c(c_gsub(...)) end
string.gsub = function(...)
  local s, p, repl, n = ...
  local tr = type(repl)
  if tr ~= "function" and tr ~= "table" then return check_c(c_gsub(...)) end
  local given = select("#", ...)
  s = arg_string(s, 1, "gsub", given >= 1)
  p = arg_string(p, 2, "gsub", given >= 2)
  local max = arg_integer(n, 4, "gsub", #s + 1)
  local anchor = raw_byte(p, 1) == 94 -- '^'
  local parts, np, src, last, count = {}, 0, 0, -1, 0
  while count < max do
    local r = { c_step(s, p, src, last, true) }
    if not r[1] then error(r[2], r[3]) end
    local start, e = r[2], r[3]
    if start == nil then break end
    count = count + 1
    np = np + 1
    parts[np] = raw_sub(s, src + 1, start)
    local v
    if tr == "function" then v = repl(unpack(r, 4)) else v = repl[r[4]] end
    if not v then v = raw_sub(s, start + 1, e)
    elseif type(v) ~= "string" and type(v) ~= "number" then error("invalid replacement value (a " .. type(v) .. ")", 2)
    end
    np = np + 1
    parts[np] = v
    src, last = e, e
    if anchor then break end
  end
  parts[np + 1] = raw_sub(s, src + 1)
  return concat(parts, "", 1, np + 1), count
end

-- table.move, table.insert and table.remove loop in C over a range the script chooses (table.move({1}, 1, 2^62, 2),
-- or a __len that says 2^62): large ranges move in chunks, each charged before it runs.
local CHUNK = 1 << 14
local function move(a1, f, e, t, a2)
  local fi, ei, ti = tointeger(f), tointeger(e), tointeger(t)
  if not (fi and ei and ti) or ei < fi or ei - fi < CHUNK then
    return named("move", raw_pcall(raw_move, a1, f, e, t, a2))
  end
  if not (fi > 0 or ei < maxinteger + fi) then error("bad argument #3 to 'move' (too many elements to move)", 2) end
  local n = ei - fi + 1
  if ti > maxinteger - n + 1 then error("bad argument #4 to 'move' (destination wrap around)", 2) end
  local dest = a2
  if dest == nil then dest = a1 end
  if ti > fi and ti <= ei and rawequal(dest, a1) then
    -- Overlapping, destination after the source: copy from the end, as table.move does.
    local i = n
    while i > 0 do
      local len = i < CHUNK and i or CHUNK
      spend(len)
      chunk_ok("move", raw_pcall(raw_move, a1, fi + i - len, fi + i - 1, ti + i - len, dest))
      i = i - len
    end
  else
    local i = 0
    while i < n do
      local len = n - i < CHUNK and n - i or CHUNK
      spend(len)
      chunk_ok("move", raw_pcall(raw_move, a1, fi + i, fi + i + len - 1, ti + i, dest))
      i = i + len
    end
  end
  return dest
end
table.move = move

table.insert = function(...)
  local t, pos, v = ...
  if select("#", ...) == 3 and type(t) == "table" then
    local e = #t + 1
    local p = tointeger(pos)
    if p and p >= 1 and p <= e and e - p > CHUNK then
      move(t, p, e - 1, p + 1)
      t[p] = v
      return
    end
  end
  return named("insert", raw_pcall(raw_insert, ...))
end

table.remove = function(...)
  local t, pos = ...
  if select("#", ...) >= 2 and type(t) == "table" then
    local size = #t
    local p = tointeger(pos)
    if p and p >= 1 and p < size and size - p > CHUNK then
      local v = t[p]
      move(t, p + 1, size, p)
      t[size] = nil
      return v
    end
  end
  return named("remove", raw_pcall(raw_remove, ...))
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
