--- spindle.repl: what the interactive prompt does with each line (runtime/
-- repl.c reads the lines on the reactor and calls in here).
-- Each entry runs in a coroutine (defer.inlineCallbacks), so `await(d)` at
-- top level suspends the entry while the reactor keeps running; the prompt
-- comes back when the entry finishes. Values print as the lua command
-- prints them, tables pretty-printed to a depth.
local defer = require("spindle.defer")

local M = {}

local pending = nil   -- source of an unfinished statement
local waiting = nil   -- the entry whose Deferred has not fired yet

M.MAX_DEPTH = 3
M.MAX_ITEMS = 40
M.WIDTH = 78

local function isIdentifier(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

local function rawTostring(v)
  local mt = debug.getmetatable(v)
  if mt and mt.__tostring then
    local ok, s = pcall(tostring, v)
    if ok and type(s) == "string" then return s end
  end
  return tostring(v)
end

local repr

local function keyRepr(k, depth, seen)
  if isIdentifier(k) then return k end
  return "[" .. repr(k, depth, seen, false) .. "]"
end

local function tableRepr(t, depth, seen, indent)
  if seen[t] then return "<cycle>" end
  if depth >= M.MAX_DEPTH then return "{...}" end
  seen[t] = true
  local parts, n = {}, #t
  for i = 1, math.min(n, M.MAX_ITEMS) do
    parts[#parts + 1] = repr(t[i], depth + 1, seen, false, indent .. "  ")
  end
  local keys = {}
  for k in next, t do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  for _, k in ipairs(keys) do
    if #parts >= M.MAX_ITEMS then
      parts[#parts + 1] = "..."
      break
    end
    parts[#parts + 1] = keyRepr(k, depth + 1, seen) .. " = " ..
      repr(rawget(t, k), depth + 1, seen, false, indent .. "  ")
  end
  if n > M.MAX_ITEMS then parts[#parts + 1] = "..." end
  seen[t] = nil
  local line = "{" .. table.concat(parts, ", ") .. "}"
  if #line + #indent <= M.WIDTH and not line:find("\n") then return line end
  return "{\n" .. indent .. "  " ..
    table.concat(parts, ",\n" .. indent .. "  ") .. "\n" .. indent .. "}"
end

--- repr(v) -> string: how the prompt shows a value. Strings at top level
-- print as they are (as `lua` prints them), quoted inside tables; tables
-- without __tostring are shown with their contents to MAX_DEPTH levels;
-- everything else as tostring (a Deferred shows its state).
function repr(v, depth, seen, top, indent)
  local t = type(v)
  if t == "string" then
    return top and v or string.format("%q", v):gsub("\\\n", "\\n")
  elseif t == "table" then
    local mt = debug.getmetatable(v)
    if mt and mt.__tostring then return rawTostring(v) end
    return tableRepr(v, depth or 0, seen or {}, indent or "")
  end
  return rawTostring(v)
end

M.repr = function(v) return repr(v, 0, {}, true, "") end

local function show(results)
  for i = 1, results.n do
    io.stdout:write(repr(results[i], 0, {}, true, ""),
      i < results.n and "\t" or "\n")
  end
  io.stdout:flush()
end

local function showFailure(f)
  io.stderr:write(f:getTraceback(), "\n")
  io.stderr:flush()
end

--- repl.line(text) -> "more" | "ready" | "waiting"
-- Take one line: "more" when the statement is unfinished (the prompt asks
-- for the rest), "ready" when it ran (its values or error printed),
-- "waiting" when it awaits a Deferred: the prompt comes back through
-- resume() once it fires.
function M.line(text, resume)
  local src = pending and (pending .. "\n" .. text) or text
  local fn, err = load("return " .. src, "=stdin")
  if not fn then fn, err = load(src, "=stdin") end
  if not fn then
    if err:sub(-5) == "<eof>" then
      pending = src
      return "more"
    end
    pending = nil
    io.stderr:write(err, "\n")
    return "ready"
  end
  pending = nil
  local entry = {done = false}
  local function finish()
    entry.done = true
    if waiting == entry then
      waiting = nil
      resume()
    end
  end
  local d = defer.inlineCallbacks(function()
    return table.pack(fn())
  end)()
  d:addCallbacks(function(results)
    if not entry.abandoned then show(results) end
    finish()
  end, function(f)
    if not entry.abandoned then showFailure(f) end
    finish()
  end)
  if entry.done then return "ready" end
  waiting = entry
  return "waiting"
end

--- repl.interrupt() -> "resume" | "clear": Ctrl-C. While an entry waits,
-- stop waiting for it (it goes on, its result is not shown); otherwise
-- drop the unfinished statement.
function M.interrupt()
  pending = nil
  if waiting then
    waiting.abandoned = true
    waiting = nil
    io.stderr:write("KeyboardInterrupt: stopped waiting\n")
    return "resume"
  end
  return "clear"
end

--- repl.waiting() -> boolean: is an entry waiting on a Deferred?
function M.waiting() return waiting ~= nil end

local function fields(v, seen, out)
  for _ = 1, 8 do
    if v == nil or seen[v] then return end
    seen[v] = true
    if type(v) == "table" then
      for k in next, v do
        if type(k) == "string" then out[k] = true end
      end
    end
    local mt = debug.getmetatable(v)
    if mt == nil then return end
    if type(mt.__getters) == "table" then
      for k in next, mt.__getters do out[k] = true end
    end
    v = mt.__index
    if type(v) == "function" then
      -- A C __index (Deferred's) keeps its methods in its first upvalue.
      local _, up = debug.getupvalue(v, 1)
      v = up
    end
    if type(v) ~= "table" then return end
  end
end

--- repl.complete(word) -> list of completions of word: a global name, or
-- a path of fields and methods ("reactor.callL", "d:addC").
function M.complete(word)
  local base, sep, partial = word:match("^(.*)([%.:])([%w_]*)$")
  local v = _G
  if base then
    for name in base:gmatch("[^%.:]+") do
      local ok, nv = pcall(function() return v[name] end)
      if not ok or nv == nil then return {} end
      v = nv
    end
  else
    partial = word
  end
  local names = {}
  fields(v, {}, names)
  local out = {}
  for k in pairs(names) do
    if k:sub(1, #partial) == partial and isIdentifier(k) then
      out[#out + 1] = (base and (base .. sep) or "") .. k
    end
  end
  table.sort(out)
  return out
end

return require("spindle._core").strict("repl", M)
