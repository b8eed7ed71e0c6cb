-- fuzz/http.lua: the Lua half of fuzz/http.c (the input layout is in
-- that file's header). check(bytes) runs spindle.web's HTTP parsers on
-- the input three times: fed whole, in the chunks the input chooses and
-- byte by byte, and raises when the runs disagree.
--
-- Server side: a web.Site with a function handler (one site whose
-- request bodies come whole, one with streamRequestBody = true, for each
-- of the 4^4 limit choices: made once) builds a channel connected to a
-- StringTransport (spec/support/string_transport.lua) and gets the
-- request bytes through channel:dataReceived. The handler answers a body
-- echoing the method, path, sorted request headers and body length, in
-- one of several ways chosen by the path's second byte: a string (one
-- write with Content-Length), write() twice then finish() (chunked, or
-- closed by the connection for HTTP/1.0), status 204 or 304, an echoed
-- response header, or later (NOT_DONE_YET: the harness finishes it after
-- the dataReceived call returns, so the parser blocks and the pipelined
-- rest waits). What the transport received (Date values masked: the only
-- time-dependent bytes, with no access log and no reactor running), its
-- disconnecting/aborted/producer state must be the same in the three
-- runs, and C.memory(channel) stays within a bound made of the limits
-- and the input's length (checked at the end: it only grows). The
-- channel is then lost (connectionLost), which untracks it from its
-- site: the site's sweep DelayedCall is cancelled, so nothing is left
-- scheduled.
--
-- Client side: a ResponseParser (what spindle.web_client uses) with
-- small limits, fed the bytes the same three ways then finish()ed (the
-- connection's end: close-delimited bodies complete); the events (head:
-- code, reason, minor, sorted headers; body pieces joined; done and its
-- keep-alive; a parse error's status; finish's midway answer) must agree.
--
-- Allocations are most of an input's cost under ASan: sites, classes,
-- transports and event lists are made once; events are flat lists, two
-- slots an event, as in fuzz/framers.lua.
local web = require("spindle.web")
local C = require("spindle._http")
local log = require("spindle.log")
local Failure = require("spindle.failure").Failure
local StringTransport = require("spec.support.string_transport")

local sub, byte, format, concat, sort = string.sub, string.byte,
  string.format, table.concat, table.sort
local type, pairs, max = type, pairs, math.max

-- Limits, chosen by two bits each of the input's second byte.
local HEADER_BYTES = {16384, 48, 120, 400}
local HEADERS = {500, 1, 3, 8}
local URL = {8192, 4, 12, 40}
local BODY = {10 * 1024 * 1024, 0, 5, 64}

-- A handler that raised would be logged: that is a wrong answer here.
local logged
log.addObserver(function(e)
  if e.isError then logged = e.failure and e.failure:getErrorMessage() or
    tostring(e.why) end
end)

-- ------------------------------------------------------------- server side

-- The request headers as sorted "name: value" lines (a repeated name's
-- values joined by commas).
local lines = {}
local function echo(req, n)
  local k = 0
  for name, v in pairs(req.requestHeaders) do
    k = k + 1
    lines[k] = name .. ": " .. (type(v) == "table" and concat(v, ",") or v)
  end
  for i = #lines, k + 1, -1 do lines[i] = nil end
  sort(lines)
  return format("%s %s %s %d\n%s\n", req.method, req.path, req.clientproto,
    n, concat(lines, "\n"))
end

-- Requests answered later (path "/d..."), in order; the harness finishes
-- them between dataReceived calls.
local later, nlater = {}, 0

-- Answer req, whose body had n bytes, as its path's second byte says.
local function answer(req, n)
  local how = byte(req.path, 2)
  local body = echo(req, n)
  if how == 99 then -- "c": two writes, then finish
    req:write(sub(body, 1, 5))
    req:write(sub(body, 6))
    req:finish()
  elseif how == 110 then -- "n": 204 (no body sent)
    req:setResponseCode(204)
    req:write(body)
    req:finish()
  elseif how == 109 then -- "m": 304, answered with a string
    req:setResponseCode(304)
    req:write(body)
    req:finish()
  elseif how == 120 then -- "x": an echoed header and a reason phrase
    req:setHeader("x-echo", req:getHeader("x") or "none")
    req:setResponseCode(201, "Made")
    req:write(body)
    req:finish()
  else
    req:write(body)
    req:finish()
  end
end

-- The streamed body's reader: counts the bytes, answers at its end
-- (unless the request is answered later, or was answered by the parse
-- error that cut the body).
local Counter = {}
Counter.__index = Counter
function Counter:dataReceived(bytes) self.n = self.n + #bytes end
function Counter:connectionLost(reason)
  local req = self.req
  if reason:check(web.ResponseDone) then
    req._bodyLength = self.n
    if not req._later and not req.finished then answer(req, self.n) end
  end
end

local function handler(req)
  if byte(req.path, 2) == 100 then -- "d": later
    req._later = true
    nlater = nlater + 1
    later[nlater] = req
  end
  local content = req.content
  if content.getvalue then -- the whole body
    req._bodyLength = #content:getvalue()
    if req._later then return web.NOT_DONE_YET end
    local how = byte(req.path, 2)
    if how == nil or how == 115 then -- "/" or "s": a string
      return echo(req, req._bodyLength)
    end
    answer(req, req._bodyLength)
    return nil
  end
  content:deliverBody(setmetatable({n = 0, req = req}, Counter))
  return web.NOT_DONE_YET
end

-- Finish the requests answered later whose bodies are complete, in
-- order (finishing one resumes the parser, which may add more).
local function drain()
  local i = 1
  while i <= nlater do
    local req = later[i]
    if req.finished or req._disconnected then
      i = i + 1
    elseif req._bodyLength == nil then
      break
    else
      answer(req, req._bodyLength)
      i = i + 1
    end
  end
  -- Keep the ones not done, in order.
  local k = 0
  for j = i, nlater do
    k = k + 1
    later[k] = later[j]
  end
  for j = k + 1, nlater do later[j] = nil end
  nlater = k
end

-- The sites, made once: [limits byte * 2 + stream + 1].
local SITES = {}
for b = 0, 255 do
  for stream = 0, 1 do
    SITES[b * 2 + stream + 1] = web.Site(handler, {
      maxHeaderBytes = HEADER_BYTES[b % 4 + 1],
      maxHeaders = HEADERS[b // 4 % 4 + 1],
      maxUrlLength = URL[b // 16 % 4 + 1],
      maxBodyBytes = BODY[b // 64 + 1],
      streamRequestBody = stream == 1,
    })
  end
end

-- The most a channel's parser may hold (runtime/http.c's buffers double
-- from 1 KiB; the field array from 16): head (target, names, values)
-- within maxHeaderBytes, the body within maxBodyBytes (or what came in
-- one read, streamed), input waiting while a request is answered within
-- the input's length.
local function bound(site, inlen)
  local function cap(n) return 2 * max(1024, n) end
  return cap(site.maxHeaderBytes) + cap(math.min(site.maxBodyBytes, inlen)) +
    cap(inlen) + max(16, 2 * site.maxHeaders) * 16
end

local LOST = Failure("connection lost (fuzz/http.lua)")
local received = web.HTTPChannel.dataReceived
local TRANSPORTS = {StringTransport(), StringTransport(), StringTransport()}
local SIZES = {}

-- Run number r (1..3) on the server: the transport's bytes (Date values
-- masked) and its state.
local function serve(r, site, data, ncuts)
  local t = TRANSPORTS[r]
  t.disconnecting, t.aborted, t.writes = false, false, 0
  t.producerState, t.producer, t.streaming = "producing", nil, nil
  t:clear()
  local ch = site:buildProtocol(nil)
  ch:makeConnection(t)
  local pos, len = 1, #data
  -- The byte-by-byte run is half of an input's cost: nothing but the
  -- call per byte (drain only when a request waits).
  if ncuts == nil then
    while pos <= len and not t.disconnecting do
      received(ch, sub(data, pos, pos))
      if nlater > 0 then drain() end
      pos = pos + 1
    end
  else
    for i = 1, ncuts do
      if pos > len or t.disconnecting then break end
      local n = SIZES[i]
      received(ch, sub(data, pos, pos + n - 1))
      if nlater > 0 then drain() end
      pos = pos + n
    end
  end
  if pos <= len and not t.disconnecting then
    received(ch, sub(data, pos))
    if nlater > 0 then drain() end
  end
  -- The parser's buffers only grow while under 64 KiB (http.c's
  -- BUF_KEEP), far over these inputs: what it holds now is its peak.
  local m, limit = C.memory(ch), bound(site, len)
  if m > limit then
    error(format("the parser holds %d bytes, over %d", m, limit))
  end
  ch:connectionLost(LOST)
  drain()
  for i = 1, nlater do later[i] = nil end
  nlater = 0
  local out = t:value():gsub("\r\nDate: [^\r\n]*\r\n", "\r\nDate: -\r\n")
  return format("%s%s %s\n", out, tostring(t.disconnecting),
    tostring(t.aborted)) .. t.producerState
end

-- The reference, for plain input: HTTP/1.1 requests of a common
-- method, a path of letters, digits and slashes whose second byte asks
-- for a string answer (or "/"), and "Name: value" fields of letters,
-- digits and dashes (no framing, Connection, Expect or Upgrade field),
-- under the default limits: the answers a server must give. nil when the
-- input is anything else.
local SPECIAL = {["content-length"] = true, ["transfer-encoding"] = true,
  connection = true, expect = true, upgrade = true}
local METHODS = {GET = true, HEAD = true, POST = true, PUT = true,
  DELETE = true, OPTIONS = true, PATCH = true}
local modelFields, modelOut = {}, {}
local function model(data)
  local pos, nout = 1, 0
  while pos <= #data do
    local method, path, e = data:match("^(%u+) (/[%w/]*) HTTP/1%.1\r\n()",
      pos)
    if not METHODS[method] then return nil end
    local how = byte(path, 2)
    if how ~= nil and how ~= 115 then return nil end
    pos = e
    for k in pairs(modelFields) do modelFields[k] = nil end
    while true do
      local name, value, e2 = data:match("^([%w%-]+): ([%w%-]*)\r\n()", pos)
      if name == nil then break end
      name = name:lower()
      if SPECIAL[name] then return nil end
      local old = modelFields[name]
      modelFields[name] = old and old .. "," .. value or value
      pos = e2
    end
    if sub(data, pos, pos + 1) ~= "\r\n" then return nil end
    pos = pos + 2
    local k = 0
    for name, v in pairs(modelFields) do
      k = k + 1
      lines[k] = name .. ": " .. v
    end
    for i = #lines, k + 1, -1 do lines[i] = nil end
    sort(lines)
    local body = format("%s %s HTTP/1.1 0\n%s\n", method, path,
      concat(lines, "\n"))
    nout = nout + 1
    -- HEAD: no default Content-Type (runtime/http.c's writeHead flags).
    modelOut[nout] = format("HTTP/1.1 200 OK\r\nDate: -\r\n%s" ..
      "Content-Length: %d\r\n\r\n%s", method == "HEAD" and "" or
      "Content-Type: text/html\r\n", #body, method == "HEAD" and "" or body)
  end
  return concat(modelOut, "", 1, nout) .. "false false\nproducing"
end

-- ------------------------------------------------------------- client side

local ev, nev
-- The parser met an error: it parses nothing more (feeding stops).
local failed

local function emit(tag, value)
  ev[nev + 1] = tag
  ev[nev + 2] = value or false
  nev = nev + 2
end

local Client = {}
function Client._onHead(_, code, reason, minor, headers)
  local k = 0
  for name, v in pairs(headers) do
    k = k + 1
    lines[k] = name .. ": " .. (type(v) == "table" and concat(v, ",") or v)
  end
  for i = #lines, k + 1, -1 do lines[i] = nil end
  sort(lines)
  emit("head", format("%d %s 1.%d\n%s", code, reason, minor,
    concat(lines, "\n")))
end
function Client._onBody(_, bytes)
  if nev > 0 and ev[nev - 1] == "body" then ev[nev] = ev[nev] .. bytes
  else emit("body", bytes) end
end
function Client._onDone(_, keepAlive) emit("done", tostring(keepAlive)) end
-- Its status only: which of two faults is met first may depend on the
-- chunking (llhttp reports a span at its end or the read's, so a limit
-- counted on spans can be passed before or after a bad byte in it).
function Client._onParseError(_, status)
  emit("error", tostring(status))
  failed = true
end

local LISTS = {{}, {}, {}}

-- FUZZ_HTTP_SHOW=1 prints each input's whole-feed answer to stderr (to
-- look at what a corpus file does: build/fuzz/http FILE).
local SHOW = os.getenv("FUZZ_HTTP_SHOW")

local function fetch(r, maxHead, maxFields, nobody, data, ncuts)
  ev, nev, failed = LISTS[r], 0, false
  local p = C.ResponseParser(maxHead, maxFields)
  if nobody then p:setNoBody(true) end
  local feed = p.feed
  local pos, len = 1, #data
  if ncuts == nil then
    while pos <= len and not failed do
      feed(p, Client, sub(data, pos, pos))
      pos = pos + 1
    end
  else
    for i = 1, ncuts do
      if pos > len or failed then break end
      local n = SIZES[i]
      feed(p, Client, sub(data, pos, pos + n - 1))
      pos = pos + n
    end
  end
  if pos <= len and not failed then feed(p, Client, sub(data, pos)) end
  emit("finish", tostring(p:finish(Client)))
  return ev, nev
end

local function show(l, n)
  local s = {}
  for i = 1, n, 2 do
    s[#s + 1] = l[i] .. " " .. format("%q", l[i + 1])
  end
  return concat(s, " | ")
end

local function same(a, na, b, nb)
  if na ~= nb then return false end
  for i = 1, na do
    if a[i] ~= b[i] then return false end
  end
  return true
end

function check(s) -- luacheck: ignore 111 (the harness's entry point)
  if #s < 3 then return end
  local mode, limits = byte(s, 1) % 4, byte(s, 2)
  local ncuts = byte(s, 3) % 16
  for i = 1, ncuts do SIZES[i] = (byte(s, 3 + i) or 0) % 64 + 1 end
  local data = sub(s, 4 + ncuts)
  logged = nil
  if mode < 2 then
    local site = SITES[limits * 2 + mode + 1]
    local whole = serve(1, site, data, 0)
    local chunked = serve(2, site, data, ncuts)
    local single = serve(3, site, data, nil)
    if SHOW then io.stderr:write(whole, "\n") end
    local want = limits == 0 and model(data)
    if want and want ~= whole then
      error(format("server (stream %d) differs from the model:\n" ..
        "model: %q\ngot:   %q", mode, want, whole))
    end
    if whole ~= chunked or whole ~= single then
      error(format("server (stream %d, limits %d) differs:\n" ..
        "whole:   %q\nchunked: %q\nbytes:   %q", mode, limits, whole, chunked,
        single))
    end
  else
    local maxHead = HEADER_BYTES[limits % 4 + 1]
    local maxFields = HEADERS[limits // 4 % 4 + 1]
    local nobody = mode == 3
    local a, na = fetch(1, maxHead, maxFields, nobody, data, 0)
    local b, nb = fetch(2, maxHead, maxFields, nobody, data, ncuts)
    local c, nc = fetch(3, maxHead, maxFields, nobody, data, nil)
    if SHOW then io.stderr:write(show(a, na), "\n") end
    if not same(a, na, b, nb) or not same(a, na, c, nc) then
      error(format("client (limits %d, HEAD %s) differs:\nwhole:   %s\n" ..
        "chunked: %s\nbytes:   %s", limits, tostring(nobody), show(a, na),
        show(b, nb), show(c, nc)))
    end
  end
  if logged ~= nil then error("logged an error: " .. logged) end
end
