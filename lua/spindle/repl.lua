--- spindle.repl: what the interactive prompt does with each line (runtime/
-- repl.c reads the lines on the reactor and calls in here).
-- Each entry runs in a coroutine (defer.inlineCallbacks), so `await(d)` at
-- top level suspends the entry while the reactor keeps running; the prompt
-- comes back when the entry finishes. Values print as the lua command
-- prints them, tables pretty-printed to a depth.
local defer = require("spindle.defer")
local isDeferred = require("spindle._defer").isDeferred
local deferredInfo = require("spindle._defer").info
local isFailure = require("spindle.failure").isFailure

local M = {}


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

-- What each Deferred awaited at the prompt fired with, kept as {result}:
-- defer.await takes the result away from the Deferred it waits on, as
-- Twisted's inlineCallbacks leaves None in it, but a Deferred awaited at
-- the prompt should go on showing what it fired with (or its Failure,
-- CancelledError after a Ctrl-C) when typed afterwards.
local awaitedResults = setmetatable({}, {__mode = "k"})

-- The prompt's await(d): defer.await, noting d's result first.
local function promptAwait(d)
  if isDeferred(d) then
    d:addBoth(function(r)
      awaitedResults[d] = {r}
      return r
    end)
  end
  return defer.await(d)
end

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
  local shown = math.min(n, M.MAX_ITEMS)
  if n > M.MAX_ITEMS then
    table.insert(parts, shown + 1, ("... %d more"):format(n - M.MAX_ITEMS))
    shown = shown + 1
  end
  seen[t] = nil
  local line = "{" .. table.concat(parts, ", ") .. "}"
  if #line + #indent <= M.WIDTH and not line:find("\n") then return line end
  -- Array items without newlines go in columns, several to a line.
  local lines, cur, width = {}, nil, 0
  for i = 1, math.min(n, M.MAX_ITEMS) do width = math.max(width, #parts[i]) end
  for i, part in ipairs(parts) do
    local cell = part .. ","
    if i <= shown and not part:find("\n") and width < M.WIDTH / 3 then
      cell = cell .. (" "):rep(width + 1 - #part)
      if cur and #cur + #cell + #indent + 2 <= M.WIDTH then
        cur = cur .. " " .. cell
      else
        if cur then lines[#lines + 1] = cur end
        cur = cell
      end
    else
      if cur then lines[#lines + 1] = cur end
      cur = nil
      lines[#lines + 1] = cell
    end
  end
  if cur then lines[#lines + 1] = cur end
  for i, l in ipairs(lines) do lines[i] = l:gsub("%s+$", "") end
  lines[#lines] = lines[#lines]:gsub(",$", "")
  return "{\n" .. indent .. "  " ..
    table.concat(lines, "\n" .. indent .. "  ") .. "\n" .. indent .. "}"
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
    local body = tableRepr(v, depth or 0, seen or {}, indent or "")
    -- An instance of a spindle.class class: its class's name first.
    if mt and rawget(mt, "__index") == mt and type(mt.__name) == "string" then
      return mt.__name .. " " .. body
    end
    return body
  elseif t == "userdata" and isDeferred(v) then
    local _, _, called, _, waiting = deferredInfo(v)
    if not called then return "Deferred <pending>" end
    if waiting then return "Deferred <waiting on another Deferred>" end
    local r = v.result
    if r == nil and awaitedResults[v] then r = awaitedResults[v][1] end
    if isFailure(r) then
      return "Deferred <failed: " .. tostring(r.value) .. ">"
    end
    return "Deferred <fired: " .. repr(r, (depth or 0) + 1, seen or {},
      false, indent or "") .. ">"
  end
  return rawTostring(v)
end

M.repr = function(v) return repr(v, 0, {}, true, "") end

-- The modules a person wants at hand: globals at the prompt, loaded on
-- first use (as Node exposes its core modules).
M.PRELOAD = {reactor = "spindle.reactor", defer = "spindle.defer",
  task = "spindle.task", protocol = "spindle.protocol",
  basic = "spindle.basic", ssl = "spindle.ssl", threads = "spindle.threads",
  log = "spindle.log", inspect = "spindle.inspect"}

local function lookup(k)
  local v = _G[k]
  if v == nil and M.PRELOAD[k] then
    local ok, mod = pcall(require, M.PRELOAD[k])
    if ok then v = mod end
  end
  return v
end

local HELP = [[
.help      this text
.exit      leave (on an attached REPL: detach; the program goes on)
.editor    type or paste a block; Ctrl-D or a line .end runs it
.pending   pending Deferreds: where made, what each waits on
.timers    pending DelayedCalls
.conns     ports, connections and libuv handles
.threads   the thread pool
.inspect   all of the above, with a summary line
Globals: reactor, defer, task, protocol, basic, ssl, threads, log,
inspect (loaded on first use); await(d) waits for a Deferred.]]

local COMMANDS = {
  pending = function() return require("spindle.inspect").pendingText() end,
  timers = function() return require("spindle.inspect").timersText() end,
  conns = function() return require("spindle.inspect").connectionsText() end,
  threads = function() return require("spindle.inspect").threadsText() end,
  inspect = function() return require("spindle.inspect").report() end,
  help = function() return HELP end,
}

--- repl.errorText(f) -> string: how the prompt shows the Failure of an
-- entry: a table error value pretty-printed (`{code = 1}`), and the
-- traceback cut to the user's frames (the REPL's own are dropped).
function M.errorText(f)
  local text = f:getTraceback()
  local v = f.value
  if type(v) == "table" and not (debug.getmetatable(v) or {}).__tostring then
    local shown = tostring(v)
    local at = text:find(shown, 1, true)
    if at then
      text = text:sub(1, at - 1) .. M.repr(v) .. text:sub(at + #shown)
    end
  end
  local lines = {}
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if not (line:find("lua/spindle/repl.lua", 1, true) or
        line:find("(...tail calls...)", 1, true) or
        line:find("lua/spindle/defer.lua", 1, true) or
        line:find("[C]: in ?", 1, true)) then
      lines[#lines + 1] = line
    end
  end
  return (table.concat(lines, "\n"):gsub("%s+$", ""))
end

--- repl.unfinished(src) -> boolean: is src the start of a statement
-- that goes on (the prompt asks for more), as the session compiles it?
-- Compiles only; runs nothing.
function M.unfinished(src)
  if load("return " .. src, "=stdin") then return false end
  local _, e = load(src, "=stdin")
  if not e then return false end
  local head, tail = src:match("^(.*);%s*([^;]-)%s*$")
  if head and tail ~= "" and load(head .. ";\nreturn " .. tail, "=stdin") then
    return false
  end
  return e:sub(-5) == "<eof>"
end

-- io.write's text for its arguments, raising as io.write does.
local function writeText(...)
  local parts = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if math.type(v) == "integer" then v = ("%d"):format(v)
    elseif math.type(v) == "float" then v = ("%.14g"):format(v)
    elseif type(v) ~= "string" then
      error(("bad argument #%d to 'write' (string expected, got %s)"):format(
        i, type(v)), 3)
    end
    parts[i] = v
  end
  return table.concat(parts)
end

-- A file object standing for a session's standard output or error:
-- write(text) sends there. Only what a standard output is used for.
local SessionFile = {}
SessionFile.__index = SessionFile
SessionFile.__name = "FILE*"
function SessionFile:write(...)
  self._write(writeText(...))
  return self
end
function SessionFile:flush() return self end
function SessionFile:setvbuf() return true end
function SessionFile:seek() return nil, "Illegal seek", 29 end
function SessionFile:close() return nil, "cannot close standard file" end
function SessionFile:__tostring() return "file (" .. self._name .. ")" end

-- The `io` an attached session's entries see: the program's io library,
-- but io.write, io.stdout, io.stderr and io.output() are the session's
-- (as Twisted's manhole gives each session its own sys.stdout).
local function sessionIO(out, err)
  local stdout = setmetatable({_write = out, _name = "session stdout"},
    SessionFile)
  local stderr = setmetatable({_write = err, _name = "session stderr"},
    SessionFile)
  local sio = setmetatable({stdout = stdout, stderr = stderr}, {
    __index = io})
  function sio.write(...)
    out(writeText(...))
    return stdout
  end
  function sio.output(f)
    if f == nil or f == stdout then return stdout end
    return io.output(f)
  end
  return sio
end

--- repl.Session(out, err[, onExit[, ownIO[, watch]]]) -> session: one prompt's
-- state (an unfinished statement, the entry being awaited). out(text)
-- and err(text) write its output and errors; onExit() is what `.exit`
-- does. Entries see the program's globals, the PRELOAD modules and a
-- `print` writing to out; with ownIO, also an `io` whose write, stdout,
-- stderr and output() write to out and err (an attached session: its
-- output goes to its own terminal, not the program's). The local prompt
-- is one session (repl.line etc.); each attached client (repl.listen)
-- is another. watch(), if given, is called at the start of each entry,
-- inside the coroutine that runs it (an attached session watches its
-- socket there, so its client's Ctrl-C or hang-up interrupts it).
function M.Session(out, err, onExit, ownIO, watch)
  local self = {}
  local pending, waiting, editor = nil, nil, nil
  -- The last entry ended in "interrupted!" (Ctrl-C stopped it running):
  -- the Ctrl-C that did it is not also a Ctrl-C at an empty prompt.
  local stopped = false
  local locals = {} -- names declared `local` at the prompt
  local env = setmetatable({}, {
    __index = function(_, k) return lookup(k) end,
    __newindex = function(t, k, v)
      if locals[k] then rawset(t, k, v) else _G[k] = v end
    end,
  })
  rawset(env, "await", promptAwait)
  if ownIO then rawset(env, "io", sessionIO(out, err)) end
  rawset(env, "print", function(...)
    local n, parts = select("#", ...), {}
    for i = 1, n do parts[i] = tostring((select(i, ...))) end
    out(table.concat(parts, "\t") .. "\n")
  end)
  self.env = env

  local function show(results)
    local parts = {}
    for i = 1, results.n do
      parts[i] = repr(results[i], 0, {}, true, "")
    end
    if results.n > 0 then
      out(table.concat(parts, "\t") .. "\n")
      locals._ = true
      env._ = results[1]
    end
  end

  -- `local x, y = ...` at the start of an entry: x and y stay visible to
  -- later entries (as session variables, not the program's globals).
  local function keepLocals(src)
    local fname = src:match("^%s*local%s+function%s+([%a_][%w_]*)")
    local names = fname or src:match("^%s*local%s+([%a_][%w_%s,]*)=") or
      src:match("^%s*local%s+([%a_][%w_%s,]*)$")
    if not names then return src end
    for name in names:gmatch("[%a_][%w_]*") do locals[name] = true end
    return (src:gsub("^%s*local%s+", "", 1))
  end

  -- Compile an entry: as an expression, as statements, or as statements
  -- whose last part is an expression (`x = 1; x`). Returns fn or nil,
  -- error.
  local function compile(src)
    local fn = load("return " .. src, "=stdin", "t", env)
    if fn then return fn end
    src = keepLocals(src)
    local e
    fn, e = load(src, "=stdin", "t", env)
    if fn then return fn end
    -- An error the parser raises (C stack overflow, out of memory) went
    -- through the REPL's message handler, which made it a Failure.
    if type(e) == "table" and type(e.value) == "string" then e = e.value end
    e = tostring(e)
    local head, tail = src:match("^(.*);%s*([^;]-)%s*$")
    if head and tail ~= "" then
      local fn2 = load(head .. ";\nreturn " .. tail, "=stdin", "t", env)
      if fn2 then return fn2 end
    end
    return nil, e
  end

  local function run(fn, resume)
    local entry = {done = false}
    local function finish()
      entry.done = true
      -- A Deferred dropped by this entry with a Failure in it reports its
      -- unhandled error now, not at some later collection.
      collectgarbage()
      collectgarbage()
      if waiting == entry then
        waiting = nil
        resume()
      end
    end
    local d = defer.inlineCallbacks(function()
      if watch then watch() end
      return table.pack(fn())
    end)()
    entry.deferred = d
    d:addCallbacks(function(results)
      if not entry.abandoned then show(results) end
      finish()
    end, function(f)
      stopped = f.value == "interrupted!"
      if not entry.abandoned then err(M.errorText(f) .. "\n") end
      finish()
    end)
    if entry.done then return "ready" end
    waiting = entry
    return "waiting"
  end

  --- session.line(text, resume) -> "more" | "ready" | "waiting": as
  -- repl.line.
  function self.line(text, resume)
    stopped = false
    if editor then
      if text:match("^%s*%.end%s*$") then return self.eof(nil, resume) end
      editor[#editor + 1] = text
      return "more"
    end
    local cmd = not pending and text:match("^%s*%.(%a+)%s*$")
    if cmd == "exit" then
      if onExit then onExit() end
      return "ready"
    elseif cmd == "editor" then
      editor = {}
      out("// Entering editor mode (Ctrl-D or a line .end to run it, " ..
        "Ctrl-C to cancel)\n")
      return "more"
    elseif cmd and COMMANDS[cmd] then
      local ok, r = pcall(COMMANDS[cmd])
      if ok then out(r .. "\n") else err(tostring(r) .. "\n") end
      return "ready"
    end
    local src = pending and (pending .. "\n" .. text) or text
    local fn, e = compile(src)
    if not fn then
      if e:sub(-5) == "<eof>" then
        pending = src
        return "more"
      end
      pending = nil
      err(e .. "\n")
      return "ready"
    end
    pending = nil
    return run(fn, resume)
  end

  --- session.eof(_, resume) -> "ready" | "waiting" | "end": Ctrl-D. In
  -- editor mode, run what was typed; otherwise the session ends.
  function self.eof(_, resume)
    if not editor then return "end" end
    local src = table.concat(editor, "\n")
    editor = nil
    local fn, e = compile(src)
    if not fn then
      err(e .. "\n")
      return "ready"
    end
    return run(fn, resume)
  end

  --- session.interrupt([line]) -> "resume" | "clear": as repl.interrupt.
  function self.interrupt(line)
    local wasEmpty = pending == nil and editor == nil and
      (line == nil or line == "")
    if stopped and wasEmpty and not waiting then
      stopped = false
      return "ignore"
    end
    pending, editor = nil, nil
    if waiting then
      local entry = waiting
      entry.abandoned = true
      waiting = nil
      err("KeyboardInterrupt: the awaited Deferred is cancelled\n")
      -- The rest of the entry is abandoned: await raises CancelledError.
      entry.deferred:cancel()
      return "resume"
    end
    if wasEmpty then err("\n(To exit, press Ctrl-D or type .exit)") end
    return "clear"
  end

  function self.waiting() return waiting ~= nil end

  --- session.complete(word, line) -> list: repl.complete with this
  -- session's own variables.
  function self.complete(word, line) return M.complete(word, line, env) end

  return self
end

-- Writes to the terminal go through _repl.output, which keeps the
-- prompt and the line being typed intact when a timer prints.
local function stdoutWrite(text)
  require("spindle._repl").output(function()
    io.stdout:write(text)
    io.stdout:flush()
  end)
end

local function stderrWrite(text)
  require("spindle._repl").output(function()
    io.stderr:write(text)
    io.stderr:flush()
  end)
end

local console = M.Session(stdoutWrite, stderrWrite, function()
  require("spindle.reactor").stop()
end)

--- repl.line(text, resume) -> "more" | "ready" | "waiting"
-- Take one line at the local prompt: "more" when the statement is
-- unfinished (the prompt asks for the rest), "ready" when it ran (its
-- values or error printed), "waiting" when it awaits a Deferred: the
-- prompt comes back through resume() once it fires. `.help` lists the
-- dot commands.
function M.line(text, resume) return console.line(text, resume) end

--- repl.interrupt() -> "resume" | "clear": Ctrl-C. While an entry waits,
-- stop waiting for it (it goes on, its result is not shown); otherwise
-- drop the unfinished statement.
function M.interrupt(line) return console.interrupt(line) end

--- repl.wrapPrint(): make the global print and spindle.log's file
-- observers, when they write outside an entry (from a timer, a
-- protocol), clear the prompt line first and draw it again after, with
-- what was being typed. The terminal REPL calls it.
function M.wrapPrint()
  local output = require("spindle._repl").output
  local print0 = print
  _G.print = function(...) return output(print0, ...) end
  rawset(require("spindle.log"), "_outputWrapper", output)
end

--- repl.eof(_, resume) -> "ready" | "waiting" | "end": Ctrl-D (end of
-- input): runs the `.editor` buffer when one is open, else ends.
function M.eof(_, resume) return console.eof(_, resume) end

--- repl.waiting() -> boolean: is an entry waiting on a Deferred?
function M.waiting() return console.waiting() end

-- Completion evaluates nothing that could run code: names, fields with
-- literal keys and parenthesised literals, looked up with rawget along
-- chains of __index tables. A C __index function (spindle's classes, the
-- Deferred) keeps its methods table in its first upvalue, which is read
-- without calling it; a Lua __index function is never run.
local MAX_CHAIN = 16

-- The methods table of a C __index function, or nil.
local function cMethods(f)
  if debug.getinfo(f, "S").what ~= "C" then return nil end
  local _, up = debug.getupvalue(f, 1)
  if type(up) == "table" then return up end
  return nil
end

-- The table v's lookups go on to after its own fields, or nil.
local function nextIndex(v)
  local mt = debug.getmetatable(v)
  if type(mt) ~= "table" then return nil end
  local idx = rawget(mt, "__index")
  if type(idx) == "function" then idx = cMethods(idx) end
  if type(idx) == "table" then return idx end
  return nil
end

-- v[k] as Lua would find it, following only __index tables.
local function safeIndex(v, k)
  for _ = 1, MAX_CHAIN do
    if v == nil then return nil end
    if type(v) == "table" then
      local r = rawget(v, k)
      if r ~= nil then return r end
    end
    v = nextIndex(v)
  end
  return nil
end

-- Add to out the string keys v shows: its own, its getters', and those
-- of the tables its lookups go on to.
local function fields(v, out)
  local seen = {}
  for _ = 1, MAX_CHAIN do
    if v == nil or seen[v] then return end
    seen[v] = true
    if type(v) == "table" then
      for k in next, v do
        if type(k) == "string" then out[k] = true end
      end
    end
    local mt = debug.getmetatable(v)
    local getters = type(mt) == "table" and rawget(mt, "__getters")
    if type(getters) == "table" then
      for k in next, getters do out[k] = true end
    end
    v = nextIndex(v)
  end
end

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in
  local nil not or repeat return then true until while]]):gmatch("%a+") do
  KEYWORDS[w] = true
end

-- A literal at s[i]: a short string, a number, true or false, or one of
-- those in parentheses. Returns its value (nil for none) and the index
-- after it. Evaluating a literal's text runs no code of anyone's.
local function literalAt(s, i)
  i = s:match("^%s*()", i)
  local c = s:sub(i, i)
  if c == "(" then
    local v, j = literalAt(s, i + 1)
    if v == nil then return nil end
    j = s:match("^%s*()", j)
    if s:sub(j, j) ~= ")" then return nil end
    return v, j + 1
  elseif c == '"' or c == "'" then
    local j = i + 1
    while j <= #s do
      local d = s:sub(j, j)
      if d == "\\" then j = j + 2
      elseif d == c then
        local f = load("return " .. s:sub(i, j), "=literal", "t", {})
        if not f then return nil end
        return f(), j + 1
      elseif d == "\n" then return nil
      else j = j + 1 end
    end
    return nil
  end
  local word, j = s:match("^([%w_%.]+)()", i)
  if word == "true" then return true, j end
  if word == "false" then return false, j end
  if word and word:match("^%d") then
    -- An exponent's sign: 1e-3.
    local more, k = s:match("^([%-%+][%w%.]+)()", j)
    if more and word:match("[eEpP]$") then word, j = word .. more, k end
    local n = tonumber(word)
    if n then return n, j end
  end
  return nil
end

local exprAt

-- An expression completion may evaluate, parsed from s[i]: a name, or a
-- parenthesised literal or expression, then .name and [literal] steps.
-- Returns {head = {name = n} | {value = v} | {inner = expr}, keys} and
-- the index after it, or nil. It stops before a "." whose name runs to
-- the end of s (the name being completed) and before ":" (a method is a
-- call: nothing goes on past one).
function exprAt(s, i)
  i = s:match("^%s*()", i)
  local e, p = {keys = {}}
  local name = s:match("^[%a_][%w_]*", i)
  if name then
    if KEYWORDS[name] then return nil end
    e.head, p = {name = name}, i + #name
  elseif s:sub(i, i) == "(" then
    local v, j = literalAt(s, i)
    if v ~= nil then
      e.head, p = {value = v}, j
    else
      local inner, k = exprAt(s, i + 1)
      if not inner then return nil end
      k = s:match("^%s*()", k)
      if s:sub(k, k) ~= ")" then return nil end
      e.head, p = {inner = inner}, k + 1
    end
  else
    return nil
  end
  while true do
    local q = s:match("^%s*()", p)
    local c = s:sub(q, q)
    if c == "." then
      local r = s:match("^%s*()", q + 1)
      local part = s:match("^[%a_][%w_]*", r)
      if not part or KEYWORDS[part] or r + #part == #s + 1 then
        return e, p
      end
      e.keys[#e.keys + 1] = part
      p = r + #part
    elseif c == "[" then
      local key, j = literalAt(s, q + 1)
      if key == nil then return e, p end
      j = s:match("^%s*()", j)
      if s:sub(j, j) ~= "]" then return e, p end
      e.keys[#e.keys + 1] = key
      p = j + 1
    else
      return e, p
    end
  end
end

-- Parse s from i as an expression (exprAt) followed by "." or ":" and
-- the partial name being completed at the end of s. Returns the
-- expression, the separator and the partial name, or nil.
local function chainAt(s, i)
  local e, p = exprAt(s, i)
  if not e then return nil end
  local q = s:match("^%s*()", p)
  local sep = s:sub(q, q)
  if sep ~= "." and sep ~= ":" then return nil end
  local r = s:match("^%s*()", q + 1)
  local part = s:match("^[%a_][%w_]*", r) or ""
  if r + #part ~= #s + 1 then return nil end
  return e, sep, part
end

-- The chain ending line, parsed: where it starts is the first place from
-- which all the rest parses, after something that cannot be the end of
-- an expression of its own (so `f(x).y` is not taken for `y`).
local function trailingChain(line)
  for i = 1, #line do
    local prev = line:sub(1, i - 1):match("(%S)%s*$")
    local startsHere = line:sub(i, i):match("[%a_%(]") and
      not (prev and prev:match("[%w_%.:%]%)\"']")) and
      not line:sub(i - 1, i - 1):match("[%w_]")
    if startsHere then
      local e, sep, part = chainAt(line, i)
      if e then return e, sep, part end
    end
  end
  return nil
end

-- The value of the name at the start of a chain, for a session whose own
-- variables are in vars: those, the program's globals, PRELOAD modules.
local function nameValue(name, vars)
  local v = vars and rawget(vars, name)
  if v == nil then v = safeIndex(_G, name) end
  if v == nil and M.PRELOAD[name] then
    v = package.loaded[M.PRELOAD[name]]
    if v == nil then
      local ok, mod = pcall(require, M.PRELOAD[name])
      if ok then v = mod end
    end
  end
  return v
end

-- The value of an expression exprAt parsed (nil where a step finds
-- nothing): lookups only, as safeIndex makes them.
local function evaluate(e, vars)
  local v
  if e.head.name then v = nameValue(e.head.name, vars)
  elseif e.head.inner then v = evaluate(e.head.inner, vars)
  else v = e.head.value end
  for _, k in ipairs(e.keys) do
    if v == nil then return nil end
    v = safeIndex(v, k)
  end
  return v
end

--- repl.complete(word[, line[, vars]]) -> list of completions of word:
-- a global name, or a field or method of what a chain of names, fields
-- with literal keys and parenthesised literals reaches ("reactor.callL",
-- `t.inner["k"].fi`, "d:addC", `("ab"):u`); a module name after require
-- "; a file path in a string passed to dofile, loadfile, io.open or
-- io.lines. line is the whole line up to the word's end; vars, the
-- session's own variables (looked up before the globals). Runs no
-- function and no __index function of anyone's (rawget along __index
-- tables only), so completing never runs the program's code.
-- Completions of word as a module name (require "spindle.").
local function moduleNames(word)
  local out, seen = {}, {}
  for _, t in ipairs({package.preload, package.loaded}) do
    for name in pairs(t) do
      if type(name) == "string" and name:sub(1, #word) == word and
        not seen[name] then
        seen[name] = true
        out[#out + 1] = name
      end
    end
  end
  table.sort(out)
  return out
end

-- Completions of word as a file path (inside dofile("..."), ...).
local function filePaths(word)
  local dir, partial = word:match("^(.*/)([^/]*)$")
  dir, partial = dir or "", partial or word
  local p = io.popen("ls -1ap " .. ("'" .. (dir == "" and "." or dir):gsub(
    "'", "'\\''") .. "'") .. " 2>/dev/null")
  local out = {}
  if not p then return out end
  for name in p:lines() do
    if name ~= "./" and name ~= "../" and
      name:sub(1, #partial) == partial then
      out[#out + 1] = dir .. name
    end
  end
  p:close()
  return out
end

-- The names matching partial among names, each as word ending in it.
local function candidates(names, partial, word)
  local out, head = {}, word:sub(1, #word - #partial)
  for k in pairs(names) do
    if k:sub(1, #partial) == partial and isIdentifier(k) and
      not KEYWORDS[k] then
      out[#out + 1] = head .. k
    end
  end
  table.sort(out)
  return out
end

function M.complete(word, line, vars)
  line = line or word
  vars = vars or console.env
  local full = line:match("require%s*%(?%s*[\"']([^\"']*)$")
  local list
  if full then
    list = moduleNames(full)
  else
    for _, f in ipairs({"dofile", "loadfile", "io%.open", "io%.lines"}) do
      full = full or line:match(f .. "%s*%(?%s*[\"']([^\"']*)$")
    end
    if full then list = filePaths(full) end
  end
  if list then
    -- The line editor replaces only `word`, the end of `full`.
    local cut = #full - #word
    for i, name in ipairs(list) do list[i] = name:sub(cut + 1) end
    return list
  end
  local e, _, partial = trailingChain(line)
  if e then
    if word:sub(-#partial) ~= partial and partial ~= "" then return {} end
    local v = evaluate(e, vars)
    if v == nil then return {} end
    local names = {}
    fields(v, names)
    return candidates(names, partial, word)
  end
  -- A name of its own: a session variable, a global, a PRELOAD module.
  partial = line:match("[%a_][%w_]*$")
  if not partial or line:sub(1, #line - #partial):match("[%.:]%s*$") then
    return {}
  end
  local names = {}
  fields(_G, names)
  if vars then fields(vars, names) end
  for k in pairs(M.PRELOAD) do names[k] = true end
  return candidates(names, partial, word)
end

--- The attach protocol: frames of one kind byte, a decimal length, ":"
-- and the payload. Client to server: E (an entry, complete), I (Ctrl-C),
-- C (complete: "session id\0word\0line"). Server to client: S (the
-- session's id, first), O (output), R (errors), D (the entry is done),
-- C (completions, one a line).
local function frame(kind, payload)
  payload = payload or ""
  return kind .. #payload .. ":" .. payload
end
M.frame = frame

-- Split buf into frames: calls each(kind, payload); returns the rest.
local function unframe(buf, each)
  while true do
    local kind, len, at = buf:match("^(%a)(%d+):()")
    if not kind then
      if #buf > 20 and not buf:match("^%a%d*$") then
        error("bad frame from peer")
      end
      return buf
    end
    len = tonumber(len)
    if #buf - at + 1 < len then return buf end
    each(kind, buf:sub(at, at + len - 1))
    buf = buf:sub(at + len)
  end
end

-- The sessions attached now, by the id each was told (its S frame): a
-- completion request, which comes on a connection of its own, names the
-- session whose variables it completes.
local sessions = setmetatable({}, {__mode = "v"})
local sessionCount = 0

local function sessionProtocol()
  local protocol = require("spindle.protocol")
  local P = protocol.Protocol:extend({__name = "REPLSession"})
  function P:connectionMade()
    self.buf = ""
    local transport = self.transport
    local function send(kind, text)
      if self.connected == 1 then
        transport:write(frame(kind, text))
      elseif kind == "O" or kind == "R" then
        -- Code typed in a session that has gone (a function it defined,
        -- called by a timer) writes where the program's output goes.
        local f = kind == "O" and io.stdout or io.stderr
        f:write(text)
        f:flush()
      end
    end
    self.send = send
    self.session = M.Session(function(t) send("O", t) end,
      function(t) send("R", t) end,
      function() transport:loseConnection() end, true, function()
        local C = require("spindle._repl")
        local okTLS, tls = pcall(transport.getHandle, transport)
        C.watch(transport, okTLS and tls ~= nil)
      end)
    sessionCount = sessionCount + 1
    self.id = tostring(sessionCount)
    sessions[self.id] = self.session
    send("S", self.id)
  end
  function P:dataReceived(data)
    -- A session's error is its own: it never reaches the server.
    local ok, e = pcall(function()
      self.buf = unframe(self.buf .. data, function(kind, payload)
        if kind == "E" then
          local r = self.session.line(payload, function()
            self.send("D")
          end)
          if r ~= "waiting" then self.send("D") end
        elseif kind == "I" then
          -- An I after the entry ended (its watch already interrupted
          -- it, or it finished meanwhile) has nothing left to stop.
          if self.session.waiting() and
            self.session.interrupt() == "resume" then
            self.send("D")
          end
        elseif kind == "C" then
          -- "id\0word\0line": complete in session id (or this one).
          local id, word, line = payload:match("^(%Z*)%z(%Z*)%z(.*)$")
          local session = sessions[id] or self.session
          self.send("C", table.concat(session.complete(word or payload,
            line), "\n"))
        end
      end)
    end)
    if not ok then
      self.send("R", "spindle REPL: " .. tostring(e) .. "\n")
      self.transport:loseConnection()
    end
  end
  function P:connectionLost()
    self.connected = 0
    sessions[self.id] = nil
    if self.session.waiting() then self.session.interrupt() end
  end
  return P
end

-- What a REPL over the network needs, said when something else is asked.
local NEEDS = "a REPL is served over the network only with TLS and " ..
  "client certificates verified against a CA the program names: " ..
  "\"ssl:PORT:privateKey=KEY:certKey=CERT:caCerts=CA[:interface=IP]\", " ..
  "or ssl.CertificateOptions{privateKey = KEY, certificate = CERT, " ..
  "verify = true, caCerts = CA} (requireCertificate not false); " ..
  "otherwise give a Unix socket path"

-- The context factory of a REPL served over TLS: a CertificateOptions
-- with a certificate of its own that requires and verifies the client's
-- certificate against caCerts. opts is one, or a table of its fields
-- (verify defaults to true there). Raises saying what is required.
local function replTLSOptions(opts, what)
  local ssl = require("spindle.ssl")
  if type(opts) ~= "table" then
    error(("listenREPL: %s: %s"):format(what, NEEDS), 4)
  end
  if not ssl.CertificateOptions:isinstance(opts) then
    if debug.getmetatable(opts) ~= nil then
      error(("listenREPL: %s: only ssl.CertificateOptions can say that " ..
        "client certificates are required; %s"):format(what, NEEDS), 4)
    end
    local given = {}
    for k, v in pairs(opts) do given[k] = v end
    if given.verify == nil then given.verify = given.caCerts ~= nil end
    local ok, o = pcall(ssl.CertificateOptions, given)
    if not ok then error("listenREPL: " .. tostring(o), 4) end
    opts = o
  end
  if not opts.verify or opts.caCerts == nil or
    opts.requireCertificate == false then
    error(("listenREPL: %s does not require client certificates " ..
      "verified against a CA: %s"):format(what, NEEDS), 4)
  end
  if opts.certificate == nil then
    error(("listenREPL: %s has no certificate of its own: %s"):format(what,
      NEEDS), 4)
  end
  return opts
end

-- Listen for REPL clients over TLS: spec is {port, interface, backlog,
-- tls = CertificateOptions}; the interface is 127.0.0.1 unless named.
local function listenTLS(spec, factory)
  local reactor = require("spindle.reactor")
  return reactor.listenSSL(spec.port, factory, spec.tls, spec.backlog or 50,
    spec.interface or "127.0.0.1")
end

-- An "ssl:..." description and options as listenTLS takes them.
local function sslSpec(where, options)
  local _, args, kw = require("spindle.endpoints")._parse(where)
  local port = math.tointeger(tonumber(kw.port or args[1]))
  if port == nil then
    error(("listenREPL: no port in '%s'"):format(where), 3)
  end
  local tls = options
  if tls == nil then
    if kw.caCerts == nil then
      error(("listenREPL: '%s' has no caCerts=CA: %s"):format(where, NEEDS),
        3)
    end
    if kw.privateKey == nil then
      error(("listenREPL: '%s' has no privateKey=KEY: %s"):format(where,
        NEEDS), 3)
    end
    tls = {privateKey = kw.privateKey, certificate = kw.certKey or
      kw.privateKey, caCerts = kw.caCerts}
  end
  return {port = port, interface = kw.interface or args[2],
    backlog = kw.backlog and tonumber(kw.backlog),
    tls = replTLSOptions(tls, "'" .. where .. "'")}
end

--- repl.listen(where[, options]) -> Port: serve the REPL to `spindle
-- --attach` clients, each its own session (history, completion and line
-- editing happen in the client; entries run here, in this process, on
-- its reactor, with its globals). Several sessions may be attached at
-- once; an error in one is reported to it and never disturbs the
-- program. where is one of:
--   a Unix socket path, or "unix:PATH": its file is made with
--     permissions 0600 (only this user can attach): `spindle --attach
--     PATH`;
--   "ssl:PORT:privateKey=KEY:certKey=CERT:caCerts=CA[:interface=IP]
--     [:backlog=N]" (KEY, CERT, CA: PEM file paths; certKey defaults to
--     privateKey), or "ssl:PORT[:interface=IP]" with options an
--     ssl.CertificateOptions (or a table of its fields) whose verify and
--     caCerts make the client's certificate required and verified;
--   a table {port = PORT, interface = IP, backlog = N, privateKey,
--     certificate, caCerts, ...} (the fields of ssl.CertificateOptions;
--     verify defaults to true) or {port = ..., tls = CertificateOptions}.
-- Over TLS the interface is 127.0.0.1 unless one is named, and a client
-- attaches with `spindle --attach tls:host=H:port=P:certificate=C:
-- privateKey=K:trustRoots=CA`; a client without a certificate signed by
-- the CA fails its handshake and never reaches a session. Raises for
-- anything else (tcp:, TLS without verified client certificates),
-- saying what is required. Main thread. Also reactor.listenREPL.
-- Twisted's manhole (twisted.conch.manhole), without conch.
function M.listen(where, options)
  local factory = require("spindle.protocol").Factory.forProtocol(
    sessionProtocol())
  if type(where) == "table" then
    local tls = where.tls
    if tls == nil then
      tls = {}
      for k, v in pairs(where) do
        if k ~= "port" and k ~= "interface" and k ~= "backlog" then
          tls[k] = v
        end
      end
    end
    local port = math.tointeger(where.port)
    if port == nil then
      error("listenREPL: the table needs port = PORT (0: any)", 2)
    end
    return listenTLS({port = port, interface = where.interface,
      backlog = where.backlog,
      tls = replTLSOptions(tls, "the options table")}, factory)
  end
  require("spindle.check").string(where, 1, "listenREPL")
  if where:match("^ssl:") then
    return listenTLS(sslSpec(where, options), factory)
  end
  local path = where:match("^unix:(.+)$") or where
  if path:match("^%a+:") then
    error("listenREPL: only a Unix socket path or TLS with client " ..
      "certificates is accepted (got '" .. where .. "'): " .. NEEDS, 2)
  end
  path = path:gsub("^path=", "")
  local reactor = require("spindle.reactor")
  local C = require("spindle._repl")
  local old = C.umask(tonumber("177", 8))
  local ok, port = pcall(reactor.listenUNIX, path, factory, nil,
    tonumber("600", 8))
  C.umask(old)
  if not ok then error(port, 2) end
  return port
end

-- What _repl.request needs to ask a REPL served over TLS, from the
-- --attach tls: description: {host, port, hostname, context}, the
-- context made as endpoints.clientFromString makes the session's (the
-- client's certificate; the server's verified against trustRoots and
-- its name against host). Over endpoint=DESC, the host and port only
-- name the server: completion then has nowhere to go (nil).
local function tlsTarget(description)
  local _, args, kw = require("spindle.endpoints")._parse(description)
  local host, port = kw.host or args[1], tonumber(kw.port or args[2])
  if kw.endpoint or not host or not port then return nil end
  local cert = kw.certificate
  local cf = require("spindle.ssl").optionsForClientTLS(host, {
    trustRoot = kw.trustRoots, clientCertificate = cert and {
      certificate = cert, privateKey = kw.privateKey}})
  return {host = host, port = math.tointeger(port), hostname = host,
    context = cf:getContext()}
end

--- repl.client(where) -> the object repl.c drives for `spindle --attach
-- WHERE`: line, interrupt, waiting, complete, as the local prompt's, but
-- entries run in the process listening at where (repl.listen): a Unix
-- socket path (or "unix:PATH"), or "tls:host=H:port=P:certificate=C:
-- privateKey=K:trustRoots=CA" (endpoints.clientFromString's tls: form:
-- the client presents its certificate and verifies the server's against
-- CA and its name against H). Whether a statement is finished is decided
-- here (by compiling it), so only whole entries travel; completion asks
-- the server synchronously on a second short connection, made the same
-- way (Unix socket, or TLS with the same certificates), and completes
-- with the session's own variables. Raises for any other kind of
-- address.
function M.client(path)
  local overTLS = path:match("^tls:") ~= nil
  if not overTLS and path:match("^%a+:") and not path:match("^unix:") then
    debug.getregistry()["spindle.attach.failed"] = true
    error("spindle: --attach takes a Unix socket path or " ..
      "tls:host=H:port=P:certificate=C:privateKey=K:trustRoots=CA (got '" ..
      path .. "')", 0)
  end
  path = path:match("^unix:(.+)$") or path
  path = path:gsub("^path=", "")
  local reactor = require("spindle.reactor")
  local protocol = require("spindle.protocol")
  local C = require("spindle._repl")
  local client, conn, pending, resumeFn = {}, nil, nil, nil
  local queue = {}
  local heard = false -- has the server sent anything yet?
  local sessionId = "" -- this session's id at the server (its S frame)
  local function send(data)
    if conn then conn.transport:write(data) else queue[#queue + 1] = data end
  end
  local P = protocol.Protocol:extend({__name = "REPLClient"})
  function P:connectionMade()
    conn = self
    self.buf = ""
    for _, data in ipairs(queue) do self.transport:write(data) end
    queue = {}
  end
  function P:dataReceived(data)
    heard = true
    self.buf = unframe(self.buf .. data, function(kind, payload)
      if kind == "S" then sessionId = payload
      elseif kind == "O" then stdoutWrite(payload)
      elseif kind == "R" then stderrWrite(payload)
      elseif kind == "D" and resumeFn then
        local r = resumeFn
        resumeFn = nil
        r()
      end
    end)
  end
  local function failed(reason)
    stderrWrite("spindle: cannot attach to " .. path .. ": " ..
      tostring(reason.value) .. "\n")
    debug.getregistry()["spindle.attach.failed"] = true
    if reactor.running then reactor.stop() end
  end
  function P:connectionLost(reason)
    conn = nil
    -- Over TLS, a server refusing the client's certificate ends the
    -- connection with an ssl.Error before it ever answered.
    if overTLS and not heard and reason and
      reason:check(require("spindle.ssl").Error) then
      return failed(reason)
    end
    stderrWrite("\nspindle: detached (" .. path .. " closed)\n")
    if reactor.running then reactor.stop() end
  end
  if overTLS then
    local endpoints = require("spindle.endpoints")
    local ok, ep = pcall(endpoints.clientFromString, reactor, path)
    if not ok then
      debug.getregistry()["spindle.attach.failed"] = true
      error("spindle: --attach " .. path .. ": " .. tostring(ep), 0)
    end
    local F = protocol.Factory:extend({protocol = P})
    ep:connect(F()):addErrback(failed)
  else
    local F = protocol.ClientFactory:extend({protocol = P})
    function F.clientConnectionFailed(_, _, reason) failed(reason) end
    reactor.connectUNIX(path, F())
  end

  local editor
  local function submit(src, resume)
    resumeFn = resume
    send(frame("E", src))
    return "waiting"
  end
  function client.eof(_, resume)
    if not editor then return "end" end
    local src = table.concat(editor, "\n")
    editor = nil
    return submit(src, resume)
  end
  function client.line(text, resume)
    if editor then
      if text:match("^%s*%.end%s*$") then return client.eof(nil, resume) end
      editor[#editor + 1] = text
      return "more"
    end
    local src = pending and (pending .. "\n" .. text) or text
    if not pending and text:match("^%s*%.exit%s*$") then
      -- No prompt again: the session ends when the connection does.
      if conn then
        conn.transport:loseConnection()
        return "waiting"
      end
      return "ready"
    elseif not pending and text:match("^%s*%.editor%s*$") then
      editor = {}
      stdoutWrite("// Entering editor mode (Ctrl-D or a line .end to run " ..
        "it, Ctrl-C to cancel)\n")
      return "more"
    end
    if not (not pending and text:match("^%s*%.%a+%s*$")) and
      M.unfinished(src) then
      pending = src
      return "more"
    end
    pending = nil
    return submit(src, resume)
  end
  function client.interrupt(line)
    local wasEmpty = pending == nil and editor == nil and
      (line == nil or line == "")
    pending, editor = nil, nil
    if resumeFn then
      send(frame("I"))
      return "ignore"
    end
    if wasEmpty then
      stderrWrite("\n(To detach, press Ctrl-D or type .exit)")
    end
    return "clear"
  end
  function client.waiting() return resumeFn ~= nil end
  -- Where completion requests go: the socket path, or the server's
  -- address and the client's TLS context (as the session's connection).
  local target = path
  if overTLS then
    local ok, t = pcall(tlsTarget, path)
    target = ok and t or nil
  end
  function client.complete(word, line)
    local ok, reply = pcall(C.request, target,
      frame("C", sessionId .. "\0" .. word .. "\0" .. (line or word)))
    local out = {}
    if ok and reply then
      unframe(reply, function(kind, payload)
        if kind == "C" then
          for name in payload:gmatch("[^\n]+") do out[#out + 1] = name end
        end
      end)
    end
    return out
  end
  return client
end

return require("spindle._core").strict("repl", M)
