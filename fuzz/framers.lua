-- fuzz/framers.lua: the Lua half of fuzz/framers.c. check(bytes) builds
-- one of spindle.basic's framers from the first bytes and feeds it the
-- rest through dataReceived with a StringTransport
-- (spec/support/string_transport.lua), first in one chunk, then in the
-- chunks the input chooses, then byte by byte. The events (lines, raw
-- data, strings, limits) must be the same every time (raw data compared
-- joined, since its chunking is the caller's), and, for the
-- length-prefixed framers and plain lines, the same as a tiny reference
-- model's. A LineReceiver goes raw after a line starting "R" and back to
-- line mode at an "L" in raw data (setLineMode with the rest), so the
-- mode switches fall mid-chunk. check raises on a difference.
local basic = require("spindle.basic")
local StringTransport = require("spec.support.string_transport")

local sub = string.sub

local KINDS = {"crlf", "lf", "lines", "netstring", "int8", "int16", "int32"}
local LIMITS = {16384, 5, 64, 300}

-- An event list is flat, two slots an event: its tag ("line", "raw",
-- "string", "long", "broken") and its string or false, so that an event
-- costs no table of its own (the harness runs millions of inputs in one
-- state; allocations are most of an input's cost under ASan).
-- The events of the run under way (classFor's methods append to it).
local ev, nev

local function emit(tag, value)
  ev[nev + 1] = tag
  ev[nev + 2] = value or false
  nev = nev + 2
end

-- One class per kind, made once: nothing per input but the framer
-- instances.
local function classFor(kind)
  local C
  if kind == "crlf" or kind == "lf" or kind == "lines" then
    C = basic.LineReceiver:extend({})
    if kind == "lf" then C.delimiter = "\n" end
    function C:lineReceived(line)
      emit("line", line)
      if kind ~= "lines" and sub(line, 1, 1) == "R" then self:setRawMode() end
    end
    function C:rawDataReceived(data)
      local i = data:find("L", 1, true)
      emit("raw", i and sub(data, 1, i - 1) or data)
      if i then return self:setLineMode(sub(data, i + 1)) end
    end
    function C:lineLengthExceeded()
      emit("long")
      self.transport:loseConnection()
    end
  elseif kind == "netstring" then
    C = basic.NetstringReceiver:extend({})
    function C:stringReceived(s) emit("string", s) end
  else
    C = ({int8 = basic.Int8StringReceiver, int16 = basic.Int16StringReceiver,
      int32 = basic.Int32StringReceiver})[kind]:extend({})
    function C:stringReceived(s) emit("string", s) end
    function C:lengthLimitExceeded()
      emit("long")
      self.transport:loseConnection()
    end
  end
  return C
end

local MODELLED = {lines = true, int8 = true, int16 = true, int32 = true}
local CLASSES = {}
for _, kind in ipairs(KINDS) do CLASSES[kind] = classFor(kind) end

-- Made once and reset per run: the event lists (their counts say how
-- much is this run's), the chunk sizes and the transports.
local LISTS = {{}, {}, {}, {}}
local SIZES = {}
local TRANSPORTS = {StringTransport(), StringTransport(), StringTransport()}

-- Run number `r` (1..3): feed data in ncuts chunks of the sizes in
-- SIZES (0 cuts: whole), the rest at the end, or byte by byte (ncuts
-- nil); the events and their count.
local function run(r, kind, limit, data, ncuts)
  ev, nev = LISTS[r], 0
  local p = CLASSES[kind]()
  p.MAX_LENGTH = limit
  local t = TRANSPORTS[r]
  t.disconnecting, t.aborted, t.writes = false, false, 0
  t.producerState, t.producer, t.streaming = "producing", nil, nil
  t:clear()
  p:makeConnection(t)
  local received = p.dataReceived
  local pos, len = 1, #data
  if ncuts == nil then
    while pos <= len and not t.disconnecting do
      received(p, sub(data, pos, pos))
      pos = pos + 1
    end
  else
    for i = 1, ncuts do
      if pos > len or t.disconnecting then break end
      local n = SIZES[i]
      received(p, sub(data, pos, pos + n - 1))
      pos = pos + n
    end
  end
  if pos <= len and not t.disconnecting then received(p, sub(data, pos)) end
  if kind == "netstring" and p.brokenPeer ~= 0 then emit("broken") end
  -- Raw data joined, the empty pieces dropped: in place (the list is
  -- this run's own), m slots kept.
  local l, m = ev, 0
  for i = 1, nev, 2 do
    local tag, value = l[i], l[i + 1]
    if tag == "raw" and m > 0 and l[m - 1] == "raw" then
      l[m] = l[m] .. value
    elseif tag ~= "raw" or value ~= "" then
      l[m + 1], l[m + 2] = tag, value
      m = m + 2
    end
  end
  return l, m // 2
end

local function show(l, n)
  local s = {}
  for i = 1, n do
    local value = l[2 * i]
    s[i] = l[2 * i - 1] .. (value and ("%q"):format(value) or "")
  end
  return table.concat(s, " ")
end

-- Up to the first limit event: one must be a prefix of the other. A
-- buffered partial line (its delimiter split) may pass MAX_LENGTH one
-- line earlier than the whole line does, as in Twisted.
local function same(a, na, b, nb, limited)
  for i = 1, math.max(na, nb) do
    local x = i <= na and a[2 * i - 1] or nil
    local y = i <= nb and b[2 * i - 1] or nil
    if x == nil or y == nil then
      return limited and (x == "long" or y == "long" or
        (na > 0 and a[2 * na - 1] == "long") or
        (nb > 0 and b[2 * nb - 1] == "long"))
    end
    if x ~= y or a[2 * i] ~= b[2 * i] then
      return limited and (x == "long" or y == "long")
    end
    if x == "long" then return true end
  end
  return true
end

-- The reference: length-prefixed strings, or plain lines; the events and
-- their count.
local function model(kind, limit, data)
  ev, nev = LISTS[4], 0
  if kind == "lines" then
    local delim = "\r\n"
    local pos = 1
    while true do
      local i = data:find(delim, pos, true)
      if not i then
        if #data - pos + 1 > limit then emit("long") end
        break
      end
      local line = sub(data, pos, i - 1)
      if #line > limit then
        emit("long")
        break
      end
      emit("line", line)
      pos = i + #delim
    end
    return ev, nev // 2
  end
  local w = ({int8 = 1, int16 = 2, int32 = 4})[kind]
  local pos = 1
  while pos + w - 1 <= #data do
    local n = 0
    for i = 0, w - 1 do n = n * 256 + data:byte(pos + i) end
    if n > limit then
      emit("long")
      break
    end
    if pos + w + n - 1 > #data then break end
    emit("string", sub(data, pos + w, pos + w + n - 1))
    pos = pos + w + n
  end
  return ev, nev // 2
end

function check(s) -- luacheck: ignore 111 (the harness's entry point)
  if #s < 3 then return end
  local kind = KINDS[s:byte(1) % #KINDS + 1]
  local limit = LIMITS[s:byte(2) % #LIMITS + 1]
  local ncuts = s:byte(3) % 16
  for i = 1, ncuts do SIZES[i] = (s:byte(3 + i) or 0) % 64 + 1 end
  local data = sub(s, 4 + ncuts)
  local whole, nw = run(1, kind, limit, data, 0)
  local chunked, nc = run(2, kind, limit, data, ncuts)
  local single, ns = run(3, kind, limit, data, nil)
  local limited = limit < 16384 or kind == "netstring"
  if not same(whole, nw, chunked, nc, limited) or
    not same(whole, nw, single, ns, limited) then
    error(("%s, MAX_LENGTH %d, chunks differ:\n  whole:   %s\n" ..
      "  chunked: %s\n  bytes:   %s"):format(kind, limit, show(whole, nw),
      show(chunked, nc), show(single, ns)))
  end
  if MODELLED[kind] then
    local want, nm = model(kind, limit, data)
    if not same(want, nm, whole, nw, kind == "lines") then
      error(("%s, MAX_LENGTH %d, differs from the model:\n  model: %s\n" ..
        "  got:   %s"):format(kind, limit, show(want, nm), show(whole, nw)))
    end
  end
end
