--- spindle.inspect: what the running reactor is waiting on.
-- Pending Deferreds (where each was made, how long ago, what it waits
-- on), DelayedCalls, ports and connections, the thread pool, and a
-- one-line summary. Each view is a function returning data and a
-- `*Text` twin returning lines for people (the REPL's .pending, .timers,
-- .conns, .threads). Loop thread only. No Twisted equivalent
-- (twisted#4304 asks for it); Node's getActiveResourcesInfo gives the
-- handle types only.
local C = require("spindle._inspect")
local D = require("spindle._defer")

local M = {}

local function reactor() return require("spindle.reactor") end

local function funcWhere(f)
  if type(f) ~= "function" then return "?" end
  local info = debug.getinfo(f, "S")
  if info.what == "C" then return "[C]" end
  return info.short_src .. ":" .. info.linedefined
end

--- Walk everything reachable from the registry (tables, closures'
-- upvalues, userdata's user values and metatables, coroutines' stacks),
-- calling visit(v) once for each table, function, userdata and thread.
-- Values held only by weak references are not reachable and are skipped.
local function walk(visit)
  local seen, stack, n = {}, {}, 0
  local getmetatable, getupvalue = debug.getmetatable, debug.getupvalue
  local getuservalue, getlocal = debug.getuservalue, debug.getlocal
  local getinfo = debug.getinfo
  local function push(v)
    local t = type(v)
    if (t == "table" or t == "function" or t == "userdata" or
        t == "thread") and not seen[v] then
      seen[v] = true
      n = n + 1
      stack[n] = v
    end
  end
  seen[seen], seen[stack] = true, true
  push(debug.getregistry())
  push(coroutine.running())
  while n > 0 do
    local v = stack[n]
    stack[n] = nil
    n = n - 1
    visit(v)
    local t = type(v)
    if t == "table" then
      local mt = getmetatable(v)
      local mode = mt and rawget(mt, "__mode")
      local weakK = type(mode) == "string" and mode:find("k")
      local weakV = type(mode) == "string" and mode:find("v")
      for k, x in next, v do
        if not weakK then push(k) end
        if not weakV then push(x) end
      end
      push(mt)
    elseif t == "function" then
      for i = 1, 255 do
        local name, x = getupvalue(v, i)
        if name == nil then break end
        push(x)
      end
    elseif t == "userdata" then
      push(getmetatable(v))
      for i = 1, 255 do
        local x, ok = getuservalue(v, i)
        if not ok then break end
        push(x)
      end
    elseif t == "thread" then
      for level = 0, 1000 do
        local info = getinfo(v, level, "f")
        if info == nil then break end
        push(info.func)
        for i = 1, 255 do
          local name, x = getlocal(v, level, i)
          if name == nil then break end
          push(x)
        end
      end
    end
  end
end

local function describe(d)
  local where, age, called, paused, waiting = D.info(d)
  return {deferred = d, where = where, age = age, called = called,
    paused = paused - (waiting and 1 or 0), waiting = waiting}
end

--- inspect.pending() -> {entry, ...}
-- The Deferreds still referenced that have not fired or wait on another
-- Deferred, oldest first. An entry: {deferred, where = "file:line" (the
-- first frame outside lua/spindle/ when it was made), age (seconds),
-- called (fired but waiting), paused (pause() count), waitsOn = the
-- entry of the Deferred it waits on (a callback returned it, or an
-- inlineCallbacks function awaits it), via = "chain" | "await"}. Walks
-- the whole Lua heap: costs time in proportion to it.
function M.pending()
  local entries, awaits = {}, {}
  walk(function(v)
    if type(v) == "userdata" and D.isDeferred(v) then
      local e = describe(v)
      if not e.called or e.waiting then entries[v] = e end
    elseif type(v) == "table" then
      -- An inlineCallbacks coroutine's status: its Deferred and the one
      -- it awaits (defer.lua's `status` table).
      local d, w = rawget(v, "deferred"), rawget(v, "waitingOn")
      if D.isDeferred(d) and D.isDeferred(w) then awaits[d] = w end
    end
  end)
  local list = {}
  for d, e in pairs(entries) do
    local inner, via
    if e.waiting then
      inner, via = d.result, "chain"
    elseif awaits[d] then
      inner, via = awaits[d], "await"
    end
    if inner ~= nil then
      e.waitsOn = entries[inner] or describe(inner)
      e.via = via
    end
    list[#list + 1] = e
  end
  table.sort(list, function(a, b)
    if a.age ~= b.age then return a.age > b.age end
    return a.where < b.where
  end)
  return list
end

local function state(e)
  if e.waiting then return "fired, waiting" end
  if e.called then return "fired" end
  if e.paused > 0 then return "unfired, paused" end
  return "unfired"
end

--- inspect.pendingText() -> string: pending() for people: each chain of
-- waits once, from the outermost Deferred down to the one it waits on.
function M.pendingText()
  local list = M.pending()
  local inner = {}
  for _, e in ipairs(list) do
    if e.waitsOn then inner[e.waitsOn.deferred] = true end
  end
  local out = {}
  for _, e in ipairs(list) do
    if not inner[e.deferred] then
      local indent, cur, via, depth = "", e, nil, 0
      while cur and depth < 50 do
        out[#out + 1] = ("%s%sDeferred made at %s, %.1f s ago, %s"):format(
          indent, via and ("waits on (" .. via .. ") ") or "",
          cur.where, cur.age, state(cur))
        indent, via, cur = indent .. "  ", cur.via, cur.waitsOn
        depth = depth + 1
      end
    end
  end
  if #out == 0 then return "no pending Deferreds" end
  table.insert(out, 1, ("%d pending Deferred(s):"):format(#list))
  return table.concat(out, "\n")
end

--- inspect.timers() -> {{call, due (seconds from now), where}, ...}:
-- the pending DelayedCalls, soonest first; `where` is where the function
-- to call was defined.
function M.timers()
  local r = reactor()
  local now, list = r.seconds(), {}
  for _, dc in ipairs(r.getDelayedCalls()) do
    list[#list + 1] = {call = dc, due = dc.time - now,
      where = funcWhere(dc.func)}
  end
  table.sort(list, function(a, b) return a.due < b.due end)
  return list
end

--- inspect.timersText() -> string
function M.timersText()
  local list = M.timers()
  if #list == 0 then return "no pending DelayedCalls" end
  local out = {("%d pending DelayedCall(s):"):format(#list)}
  for _, t in ipairs(list) do
    out[#out + 1] = ("  in %.3f s: %s"):format(t.due, t.where)
  end
  return table.concat(out, "\n")
end

--- inspect.connections() -> {row, ...}: the ports and connections that
-- the transport modules report (see runtime/inspect.h for a row's
-- fields), and `handles`, every libuv handle on the loop as
-- {type, active, ref, closing}.
function M.connections()
  return C.rows(), C.handles()
end

-- An address (addr.c's table, or a string) as "host:port" or its path.
local function addrText(a)
  if type(a) ~= "table" then return tostring(a) end
  local host, port, name = rawget(a, "host"), rawget(a, "port"),
    rawget(a, "name")
  if host and port then
    return (tostring(host):find(":") and "[" .. host .. "]" or host) ..
      ":" .. port
  end
  return name or "(unnamed)"
end

local function rowText(row)
  local parts = {row.transport or "?", row.kind or ""}
  if row.protocol then parts[#parts + 1] = row.protocol end
  if row.host then parts[#parts + 1] = addrText(row.host) end
  if row.peer then parts[#parts + 1] = "<-> " .. addrText(row.peer) end
  if row.age then parts[#parts + 1] = ("%.1f s old"):format(row.age) end
  if row.bytesIn then
    parts[#parts + 1] = ("in %d B, out %d B,"):format(row.bytesIn,
      row.bytesOut or 0)
  end
  if row.queued then parts[#parts + 1] = ("queued %d B"):format(row.queued) end
  if row.producer then parts[#parts + 1] = "producer " .. row.producer end
  if row.paused then parts[#parts + 1] = "paused" end
  return "  " .. table.concat(parts, " ")
end

local function handleCounts(handles)
  local counts, names = {}, {}
  for _, h in ipairs(handles) do
    if not h.closing then
      if not counts[h.type] then names[#names + 1] = h.type end
      counts[h.type] = (counts[h.type] or 0) + (h.active and 1 or 0)
    end
  end
  table.sort(names)
  local parts = {}
  for _, name in ipairs(names) do
    if counts[name] > 0 then
      parts[#parts + 1] = ("%s %d"):format(name, counts[name])
    end
  end
  return table.concat(parts, ", ")
end

local SOCKETS = {tcp = true, udp = true, pipe = true}

--- inspect.connectionsText() -> string: the transports' rows when they
-- report them, else each open socket handle with its addresses.
function M.connectionsText()
  local rows, handles = M.connections()
  local out = {}
  if #rows == 0 then
    for _, h in ipairs(handles) do
      if SOCKETS[h.type] and not h.closing and (h.host or h.peer) then
        local parts = {"  " .. h.type, h.host or "?"}
        if h.peer or h.connection then
          parts[#parts + 1] = "<-> " .. (h.peer or "(unnamed)")
        elseif h.type ~= "udp" then
          parts[#parts + 1] = h.active and "listening" or "idle"
        end
        if h.queued and h.queued > 0 then
          parts[#parts + 1] = ("queued %d B"):format(h.queued)
        end
        rows[#rows + 1] = table.concat(parts, " ")
      end
    end
    out[1] = ("%d socket(s):"):format(#rows)
    for _, line in ipairs(rows) do out[#out + 1] = line end
  else
    out[1] = ("%d port(s) and connection(s):"):format(#rows)
    for _, row in ipairs(rows) do out[#out + 1] = rowText(row) end
  end
  out[#out + 1] = "active libuv handles: " .. handleCounts(handles)
  return table.concat(out, "\n")
end

--- inspect.threads() -> {max, workers, busy, queued, running}: the
-- thread pool (reactor.getThreadPool), `running` listing where each
-- running function was defined.
function M.threads()
  return reactor().getThreadPool()
end

--- inspect.threadsText() -> string
function M.threadsText()
  local p = M.threads()
  local out = {("thread pool: %d/%d threads, %d busy, %d queued"):format(
    p.workers, p.max, p.busy, p.queued)}
  for _, where in ipairs(p.running) do
    out[#out + 1] = "  running " .. where
  end
  return table.concat(out, "\n")
end

--- inspect.summary() -> string: one line of counts (DelayedCalls,
-- ports and connections, active handles, thread pool), cheap enough to
-- log every second: it does not walk the heap, so it has no count of
-- pending Deferreds (pending() does).
function M.summary()
  local r = reactor()
  local p = r.getThreadPool()
  local active = 0
  for _, h in ipairs(C.handles()) do
    if h.active and h.ref and not h.closing then active = active + 1 end
  end
  return ("timers=%d conns=%d handles=%d threads=%d/%d queued=%d"):format(
    #r.getDelayedCalls(), #C.rows(), active, p.busy, p.workers, p.queued)
end

--- inspect.report() -> string: every view, as the REPL shows them.
function M.report()
  return table.concat({M.summary(), M.pendingText(), M.timersText(),
    M.connectionsText(), M.threadsText()}, "\n")
end

return require("spindle._core").strict("inspect", M)
