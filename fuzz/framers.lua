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

local KINDS = {"crlf", "lf", "lines", "netstring", "int8", "int16", "int32"}
local LIMITS = {16384, 5, 64, 300}

local function classFor(kind)
  local ev
  local C
  if kind == "crlf" or kind == "lf" or kind == "lines" then
    C = basic.LineReceiver:extend({})
    if kind == "lf" then C.delimiter = "\n" end
    function C:lineReceived(line)
      ev[#ev + 1] = {"line", line}
      if kind ~= "lines" and line:sub(1, 1) == "R" then self:setRawMode() end
    end
    function C:rawDataReceived(data)
      local i = data:find("L", 1, true)
      ev[#ev + 1] = {"raw", i and data:sub(1, i - 1) or data}
      if i then return self:setLineMode(data:sub(i + 1)) end
    end
    function C:lineLengthExceeded()
      ev[#ev + 1] = {"long"}
      self.transport:loseConnection()
    end
  elseif kind == "netstring" then
    C = basic.NetstringReceiver:extend({})
    function C:stringReceived(s) ev[#ev + 1] = {"string", s} end
  else
    C = ({int8 = basic.Int8StringReceiver, int16 = basic.Int16StringReceiver,
      int32 = basic.Int32StringReceiver})[kind]:extend({})
    function C:stringReceived(s) ev[#ev + 1] = {"string", s} end
    function C:lengthLimitExceeded()
      ev[#ev + 1] = {"long"}
      self.transport:loseConnection()
    end
  end
  return C, function(e) ev = e end
end

-- Feed data in chunks (a list of sizes, the rest at the end); the events.
local function run(kind, limit, data, sizes)
  local C, setev = classFor(kind)
  local ev = {}
  setev(ev)
  local p = C()
  p.MAX_LENGTH = limit
  local t = StringTransport()
  p:makeConnection(t)
  local pos = 1
  local function feed(n)
    if pos > #data or t.disconnecting then return end
    p:dataReceived(data:sub(pos, pos + n - 1))
    pos = pos + n
  end
  for _, n in ipairs(sizes) do feed(n) end
  feed(#data)
  if kind == "netstring" and p.brokenPeer ~= 0 then ev[#ev + 1] = {"broken"} end
  -- Raw data: joined, the empty pieces dropped.
  local out = {}
  for _, e in ipairs(ev) do
    local last = out[#out]
    if e[1] == "raw" and last and last[1] == "raw" then
      last[2] = last[2] .. e[2]
    elseif e[1] ~= "raw" or e[2] ~= "" then
      out[#out + 1] = {e[1], e[2]}
    end
  end
  return out
end

local function show(ev)
  local s = {}
  for _, e in ipairs(ev) do
    s[#s + 1] = e[1] .. (e[2] and ("%q"):format(e[2]) or "")
  end
  return table.concat(s, " ")
end

-- Up to the first limit event: one must be a prefix of the other. A
-- buffered partial line (its delimiter split) may pass MAX_LENGTH one
-- line earlier than the whole line does, as in Twisted.
local function same(a, b, limited)
  local n = math.max(#a, #b)
  for i = 1, n do
    local x, y = a[i], b[i]
    if x == nil or y == nil then
      return limited and ((x and x[1] == "long") or (y and y[1] == "long") or
        (a[#a] and a[#a][1] == "long") or (b[#b] and b[#b][1] == "long"))
    end
    if x[1] ~= y[1] or x[2] ~= y[2] then
      if limited and (x[1] == "long" or y[1] == "long") then return true end
      return false
    end
    if x[1] == "long" then return true end
  end
  return true
end

-- The reference: length-prefixed strings, or plain lines.
local function model(kind, limit, data)
  local ev = {}
  if kind == "lines" then
    local delim = "\r\n"
    local pos = 1
    while true do
      local i = data:find(delim, pos, true)
      if not i then
        if #data - pos + 1 > limit then ev[#ev + 1] = {"long"} end
        break
      end
      local line = data:sub(pos, i - 1)
      if #line > limit then ev[#ev + 1] = {"long"} break end
      ev[#ev + 1] = {"line", line}
      pos = i + #delim
    end
    return ev
  end
  local w = ({int8 = 1, int16 = 2, int32 = 4})[kind]
  local pos = 1
  while pos + w - 1 <= #data do
    local n = 0
    for i = 0, w - 1 do n = n * 256 + data:byte(pos + i) end
    if n > limit then ev[#ev + 1] = {"long"} break end
    if pos + w + n - 1 > #data then break end
    ev[#ev + 1] = {"string", data:sub(pos + w, pos + w + n - 1)}
    pos = pos + w + n
  end
  return ev
end

function check(s) -- luacheck: ignore 111 (the harness's entry point)
  if #s < 3 then return end
  local kind = KINDS[s:byte(1) % #KINDS + 1]
  local limit = LIMITS[s:byte(2) % #LIMITS + 1]
  local ncuts = s:byte(3) % 16
  local sizes = {}
  for i = 1, ncuts do sizes[i] = (s:byte(3 + i) or 0) % 64 + 1 end
  local data = s:sub(4 + ncuts)
  local whole = run(kind, limit, data, {})
  local chunked = run(kind, limit, data, sizes)
  local bytes = {}
  for i = 1, #data do bytes[i] = 1 end
  local single = run(kind, limit, data, bytes)
  local limited = limit < 16384 or kind == "netstring"
  if not same(whole, chunked, limited) or not same(whole, single, limited) then
    error(("%s, MAX_LENGTH %d, chunks differ:\n  whole:   %s\n" ..
      "  chunked: %s\n  bytes:   %s"):format(kind, limit, show(whole),
      show(chunked), show(single)))
  end
  if kind == "lines" or kind:match("^int") then
    local want = model(kind, limit, data)
    if not same(want, whole, kind == "lines") then
      error(("%s, MAX_LENGTH %d, differs from the model:\n  model: %s\n" ..
        "  got:   %s"):format(kind, limit, show(want), show(whole)))
    end
  end
end
