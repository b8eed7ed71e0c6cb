-- spec/basic_spec.lua: spindle.basic framings against an in-memory
-- transport (spec/support/string_transport.lua); the real-TCP part is in
-- the "over TCP" block at the end.
local basic = require("spindle.basic")
local cbasic = require("spindle._basic")
local StringTransport = require("spec.support.string_transport")

-- A LineReceiver that records lines and raw chunks.
local Recorder = basic.LineReceiver:extend({__name = "Recorder"})
function Recorder:__init() self.lines, self.raw, self.exceeded = {}, {}, {} end
function Recorder:lineReceived(line) self.lines[#self.lines + 1] = line end
function Recorder:rawDataReceived(data) self.raw[#self.raw + 1] = data end
function Recorder:lineLengthExceeded(line)
  self.exceeded[#self.exceeded + 1] = line
  return basic.LineReceiver.lineLengthExceeded(self, line)
end

local function connect(P, ...)
  local p, t = P(...), StringTransport()
  p:makeConnection(t)
  return p, t
end

-- Feed `data` to a fresh receiver in pieces cut at the given offsets.
local function feedSplit(P, data, cuts, setup)
  local p, t = connect(P)
  if setup then setup(p) end
  local prev = 0
  for _, c in ipairs(cuts) do
    p:dataReceived(data:sub(prev + 1, c))
    prev = c
  end
  p:dataReceived(data:sub(prev + 1))
  return p, t
end

describe("LineReceiver", function()
  describe("its framer", function()
    it("is checked when its field was overwritten", function()
      local p = connect(Recorder)
      p:dataReceived("one\r\n")
      local key
      for k, v in pairs(p) do
        if type(k) == "userdata" and type(v) == "userdata" then key = k end
      end
      assert.is_not_nil(key)
      p[key] = io.stdout
      local ok, err = pcall(p.dataReceived, p, "two\r\n")
      assert.is_false(ok)
      assert.truthy(tostring(err):find("framer field was overwritten", 1,
        true), tostring(err))
      assert.same({"one"}, p.lines)
    end)

    it("has a __gc that refuses other values", function()
      local mt = debug.getregistry()["spindle.Framer"]
      local ok, err = pcall(mt.__gc, io.stdout)
      assert.is_false(ok)
      assert.truthy(err:find("spindle.Framer expected, got FILE*", 1, true),
        err)
    end)
  end)

  describe("dataReceived", function()
    it("delivers each line without its delimiter", function()
      local p = connect(Recorder)
      p:dataReceived("one\r\ntwo\r\n\r\nthree")
      assert.same({"one", "two", ""}, p.lines)
      p:dataReceived("\r\n")
      assert.same({"one", "two", "", "three"}, p.lines)
    end)

    it("gives the same lines for a split at every byte boundary", function()
      local data = "alpha\r\nbeta\r\n\r\ngamma delta\r\nx\r\ntail"
      local want = {"alpha", "beta", "", "gamma delta", "x"}
      for i = 0, #data do
        local p = feedSplit(Recorder, data, {i})
        assert.same(want, p.lines, "split at " .. i)
        for j = i, #data do
          p = feedSplit(Recorder, data, {i, j})
          assert.same(want, p.lines, "split at " .. i .. "," .. j)
        end
      end
    end)

    it("handles one byte at a time", function()
      local data = string.rep("abc\r\n", 50)
      local p = connect(Recorder)
      for i = 1, #data do p:dataReceived(data:sub(i, i)) end
      assert.equal(50, #p.lines)
      assert.equal("abc", p.lines[50])
      assert.equal(0, (cbasic.bufferInfo(p)))
    end)

    it("splits on delimiters of several bytes", function()
      for _, delim in ipairs({"\n", "\r\n", "END\n", "aab", "::::"}) do
        local P = Recorder:extend({delimiter = delim})
        local parts = {"first", "a", "", "aaa", "last one"}
        if delim == "aab" then parts = {"first", "xa", "", "zz", "b"} end
        local data = table.concat(parts, delim) .. delim
        for i = 0, #data do
          local p = feedSplit(P, data, {i})
          assert.same(parts, p.lines, ("delim %q split %d"):format(delim, i))
        end
      end
    end)

    it("finds an overlapping delimiter split across chunks", function()
      local P = Recorder:extend({delimiter = "aab"})
      local p = connect(P)
      p:dataReceived("xa")
      p:dataReceived("a")
      p:dataReceived("aab")  -- "xaaaab": the line is "xaa"
      assert.same({"xaa"}, p.lines)
    end)

    it("uses a delimiter changed from lineReceived for the next line",
      function()
      local P = Recorder:extend()
      function P:lineReceived(line)
        Recorder.lineReceived(self, line)
        self.delimiter = "\n"
      end
      local p = connect(P)
      p:dataReceived("a\r\nb\nc\r\n")
      assert.same({"a", "b", "c\r"}, p.lines)
    end)

    it("uses fields set on the instance before any data, and ones a " ..
      "lineReceived sets, also MAX_LENGTH and lineReceived", function()
      local P = Recorder:extend()
      function P:connectionMade() self.delimiter = "|" end
      local p = connect(P)
      local got = {}
      function P:lineReceived(line)
        Recorder.lineReceived(self, line)
        if line == "a" then
          self.MAX_LENGTH = 2
          self.lineReceived = function(_, l) got[#got + 1] = l end
        end
      end
      p:dataReceived("a|bb|ccc|")
      assert.same({"a"}, p.lines)
      assert.same({"bb"}, got)
      assert.same({"ccc|"}, p.exceeded)
    end)

    it("sees a delimiter set with rawset from the next chunk on", function()
      local P = Recorder:extend()
      function P:lineReceived(line)
        Recorder.lineReceived(self, line)
        if line == "a" then rawset(self, "delimiter", "\n") end
      end
      local p = connect(P)
      p:dataReceived("a\r\nb\nc\r\n")
      p:dataReceived("d\ne\n")
      assert.same({"a", "b\nc", "d", "e"}, p.lines)
    end)

    it("reads every field on every line for a class with its own " ..
      "__newindex", function()
      local seen = {}
      local P = Recorder:extend({__newindex = function(t, k, v)
        seen[#seen + 1] = k
        rawset(t, k, v)
      end})
      function P:lineReceived(line)
        Recorder.lineReceived(self, line)
        if line == "a" then self.delimiter = "\n" end
      end
      local p = connect(P)
      p:dataReceived("a\r\nb\nc\r\n")
      assert.same({"a", "b", "c\r"}, p.lines)
      assert.is_truthy(table.concat(seen, " "):find("delimiter", 1, true))
    end)

    it("raises for an empty delimiter and recovers after", function()
      local P = Recorder:extend({delimiter = ""})
      local p = connect(P)
      local ok, err = pcall(p.dataReceived, p, "abc")
      assert.is_false(ok)
      assert.truthy(tostring(err):find("delimiter must be a non-empty string",
        1, true))
      p.delimiter = "\n"
      p:dataReceived("\n")
      assert.same({"abc"}, p.lines)
    end)

    it("stops and returns when lineReceived returns a true value", function()
      local P = Recorder:extend()
      function P:lineReceived(line)
        Recorder.lineReceived(self, line)
        if line == "stop" then return "why" end
      end
      local p = connect(P)
      assert.equal("why", p:dataReceived("a\r\nstop\r\nb\r\n"))
      assert.same({"a", "stop"}, p.lines)
      p:dataReceived("")
      assert.same({"a", "stop", "b"}, p.lines)
    end)

    it("stops delivering lines once the transport is disconnecting",
      function()
      local P = Recorder:extend()
      function P:lineReceived(line)
        Recorder.lineReceived(self, line)
        if line == "quit" then self.transport:loseConnection() end
      end
      local p, t = connect(P)
      p:dataReceived("a\r\nquit\r\nb\r\nc\r\n")
      assert.same({"a", "quit"}, p.lines)
      assert.is_true(t.disconnecting)
    end)

    it("buffers data received from inside lineReceived", function()
      local P = Recorder:extend()
      function P:lineReceived(line)
        Recorder.lineReceived(self, line)
        if line == "a" then self:dataReceived("c\r\n") end
      end
      local p = connect(P)
      p:dataReceived("a\r\nb\r\n")
      assert.same({"a", "b", "c"}, p.lines)
    end)

    it("returns the rest from clearLineBuffer inside lineReceived",
      function()
      local P = Recorder:extend()
      function P:lineReceived(line)
        Recorder.lineReceived(self, line)
        self.cleared = self:clearLineBuffer()
      end
      local p = connect(P)
      p:dataReceived("a\r\nb\r\nc")
      assert.same({"a"}, p.lines)
      assert.equal("b\r\nc", p.cleared)
      assert.equal("", p:clearLineBuffer())
    end)

    it("propagates an error in lineReceived and keeps the rest", function()
      local P = Recorder:extend()
      function P:lineReceived(line)
        if line == "bad" then error("boom in lineReceived") end
        Recorder.lineReceived(self, line)
      end
      local p = connect(P)
      local ok, err = pcall(p.dataReceived, p, "a\r\nbad\r\nc\r\n")
      assert.is_false(ok)
      assert.truthy(tostring(err):find("boom in lineReceived", 1, true))
      assert.truthy(err.getTraceback and
        err:getTraceback():find("lineReceived", 1, true))
      assert.same({"a"}, p.lines)
      -- Not stuck "busy": the pending line comes with the next call.
      p:dataReceived("d\r\n")
      assert.same({"a", "c", "d"}, p.lines)
    end)
  end)

  describe("setRawMode", function()
    it("sends the rest of the buffer to rawDataReceived", function()
      local P = Recorder:extend()
      function P:lineReceived(line)
        Recorder.lineReceived(self, line)
        if line == "RAW" then self:setRawMode() end
      end
      local p = connect(P)
      p:dataReceived("a\r\nRAW\r\nbinary\r\nstuff")
      assert.same({"a", "RAW"}, p.lines)
      assert.same({"binary\r\nstuff"}, p.raw)
      assert.equal(0, p.line_mode)
      p:dataReceived("more")
      assert.same({"binary\r\nstuff", "more"}, p.raw)
    end)

    it("switches at every byte boundary of the input", function()
      local P = Recorder:extend()
      function P:lineReceived(line)
        Recorder.lineReceived(self, line)
        if line == "RAW" then self:setRawMode() end
      end
      local data = "x\r\nRAW\r\n0123456789"
      for i = 0, #data do
        local p = feedSplit(P, data, {i})
        assert.same({"x", "RAW"}, p.lines)
        assert.equal("0123456789", table.concat(p.raw))
      end
    end)
  end)

  describe("setLineMode", function()
    it("parses extra data given from rawDataReceived", function()
      local P = Recorder:extend()
      function P:lineReceived(line)
        Recorder.lineReceived(self, line)
        if line == "RAW" then self:setRawMode() end
      end
      function P:rawDataReceived(data)
        -- a 5-byte body, then back to lines
        self.raw[#self.raw + 1] = data:sub(1, 5)
        self:setLineMode(data:sub(6))
      end
      local p = connect(P)
      p:dataReceived("RAW\r\nHELLOnext\r\nlast\r\n")
      assert.same({"RAW", "next", "last"}, p.lines)
      assert.same({"HELLO"}, p.raw)
      assert.equal(1, p.line_mode)
    end)

    it("raises for a non-string extra", function()
      local p = connect(Recorder)
      assert.has_error(function() p:setLineMode({}) end)
    end)
  end)

  describe("MAX_LENGTH", function()
    it("calls lineLengthExceeded and disconnects for a long line",
      function()
      local P = Recorder:extend({MAX_LENGTH = 10})
      local p, t = connect(P)
      p:dataReceived("short\r\n" .. string.rep("x", 11) .. "\r\nrest")
      assert.same({"short"}, p.lines)
      assert.same({string.rep("x", 11) .. "\r\nrest"}, p.exceeded)
      assert.is_true(t.disconnecting)
    end)

    it("accepts a line of exactly MAX_LENGTH", function()
      local P = Recorder:extend({MAX_LENGTH = 10})
      local p, t = connect(P)
      p:dataReceived(string.rep("y", 10) .. "\r\n")
      assert.same({string.rep("y", 10)}, p.lines)
      assert.is_false(t.disconnecting)
    end)

    it("disconnects a peer sending 10 MiB without a delimiter, with "
      .. "bounded memory", function()
      local p, t = connect(Recorder)
      local chunk = string.rep("z", 65536)
      local maxcap, maxpending = 0, 0
      for _ = 1, 160 do
        p:dataReceived(chunk)
        local pending, cap = cbasic.bufferInfo(p)
        if cap > maxcap then maxcap = cap end
        if pending > maxpending then maxpending = pending end
      end
      assert.is_true(t.disconnecting)
      assert.is_true(#p.exceeded >= 1)
      assert.is_true(#p.exceeded[1] >= p.MAX_LENGTH)
      assert.is_true(maxpending < p.MAX_LENGTH + 2 + 65536)
      assert.is_true(maxcap <= 2 * (p.MAX_LENGTH + 2 + 65536),
        "buffer capacity " .. maxcap)
    end)

    it("bounds memory for small chunks without a delimiter", function()
      local P = Recorder:extend({MAX_LENGTH = 1000})
      local p, t = connect(P)
      for _ = 1, 5000 do p:dataReceived("abcdefghij") end
      assert.is_true(t.disconnecting)
      local pending = cbasic.bufferInfo(p)
      assert.is_true(pending < 1000 + 2 + 10)
    end)
  end)

  describe("pauseProducing", function()
    it("holds lines while paused and delivers them on resume", function()
      local P = Recorder:extend()
      function P:lineReceived(line)
        Recorder.lineReceived(self, line)
        if line == "pause" then self:pauseProducing() end
      end
      local p, t = connect(P)
      p:dataReceived("a\r\npause\r\nb\r\n")
      assert.same({"a", "pause"}, p.lines)
      assert.is_true(p.paused)
      assert.equal("paused", t.producerState)
      p:dataReceived("c\r\n")
      assert.same({"a", "pause"}, p.lines)
      p:resumeProducing()
      assert.same({"a", "pause", "b", "c"}, p.lines)
      assert.equal("producing", t.producerState)
      assert.is_false(p.paused)
    end)
  end)

  describe("sendLine", function()
    it("writes the line and the delimiter in one write", function()
      local p, t = connect(Recorder)
      p:sendLine("hello")
      assert.equal("hello\r\n", t:value())
      assert.equal(1, t.writes)
      p.delimiter = "\n"
      p:sendLine("")
      assert.equal("hello\r\n\n", t:value())
    end)

    it("raises naming the argument for a non-string line", function()
      local p = connect(Recorder)
      assert.has_error(function() p:sendLine(nil) end,
        "bad argument #1 to 'sendLine' (string expected, got nil)")
      -- Numbers are not coerced: Twisted raises TypeError for non-bytes.
      assert.has_error(function() p:sendLine(5) end,
        "bad argument #1 to 'sendLine' (string expected, got number)")
    end)
  end)
end)

describe("LineOnlyReceiver", function()
  it("is a LineReceiver", function()
    local P = basic.LineOnlyReceiver:extend()
    function P:__init() self.lines = {} end
    function P:lineReceived(line) self.lines[#self.lines + 1] = line end
    local p = connect(P)
    p:dataReceived("x\r\ny\r")
    p:dataReceived("\n")
    assert.same({"x", "y"}, p.lines)
    assert.is_true(basic.LineReceiver:isinstance(p))
  end)
end)

-- A NetstringReceiver that records strings.
local NS = basic.NetstringReceiver:extend({__name = "NS"})
function NS:__init() self.strings = {} end
function NS:stringReceived(s) self.strings[#self.strings + 1] = s end

describe("NetstringReceiver", function()
  describe("dataReceived", function()
    it("delivers netstrings split at every byte boundary", function()
      local data = "5:hello,0:,3:a,b,12:hello world!,"
      for i = 0, #data do
        local p, t = feedSplit(NS, data, {i})
        assert.same({"hello", "", "a,b", "hello world!"}, p.strings)
        assert.is_false(t.disconnecting)
      end
    end)

    for _, case in ipairs({
      {"a missing length", "hello,"},
      {"a leading zero", "05:hello,"},
      {"a negative length", "-1:a,"},
      {"a missing colon", "5;hello,"},
      {"a missing comma", "5:hello!"},
      {"a length over MAX_LENGTH", "100000:"},
      {"a partial length over MAX_LENGTH", "123456"},
      {"a huge length", string.rep("9", 40) .. ":"},
    }) do
      it("drops the connection for " .. case[1], function()
        local p, t = connect(NS)
        p:dataReceived("2:ok," .. case[2])
        assert.same({"ok"}, p.strings)
        assert.is_true(t.disconnecting)
        assert.equal(1, p.brokenPeer)
        p:dataReceived("2:no,")
        assert.same({"ok"}, p.strings)
        assert.equal(0, (cbasic.bufferInfo(p)))
      end)
    end

    it("honours a smaller MAX_LENGTH", function()
      local P = NS:extend({MAX_LENGTH = 3})
      local p, t = connect(P)
      p:dataReceived("3:abc,4:abcd,")
      assert.same({"abc"}, p.strings)
      assert.is_true(t.disconnecting)
    end)
  end)

  describe("sendString", function()
    it("writes a netstring that reads back", function()
      local p, t = connect(NS)
      p:sendString("hello")
      p:sendString("")
      assert.equal("5:hello,0:,", t:value())
      local q = connect(NS)
      q:dataReceived(t:value())
      assert.same({"hello", ""}, q.strings)
    end)
  end)
end)

-- An IntN receiver that records strings.
local function recorderOf(Base)
  local P = Base:extend()
  function P:__init() self.strings, self.limits = {}, {} end
  function P:stringReceived(s) self.strings[#self.strings + 1] = s end
  function P:lengthLimitExceeded(n)
    self.limits[#self.limits + 1] = n
    Base.lengthLimitExceeded(self, n)
  end
  return P
end

describe("Int32StringReceiver", function()
  local I32 = recorderOf(basic.Int32StringReceiver)

  describe("sendString", function()
    it("writes a big-endian 4-byte length prefix", function()
      local p, t = connect(I32)
      p:sendString("abc")
      assert.equal("\0\0\0\3abc", t:value())
    end)
  end)

  describe("dataReceived", function()
    it("round-trips strings split at every byte boundary", function()
      local sender, t = connect(I32)
      local msgs = {"", "x", string.rep("y", 300), "\0\1\2\r\n"}
      for _, m in ipairs(msgs) do sender:sendString(m) end
      local wire = t:value()
      for i = 0, #wire do
        local p = feedSplit(I32, wire, {i})
        assert.same(msgs, p.strings, "split at " .. i)
      end
    end)

    it("calls lengthLimitExceeded for a prefix over MAX_LENGTH", function()
      local P = I32:extend({MAX_LENGTH = 100})
      local p, t = connect(P)
      p:dataReceived("\0\0\0\2ok\0\0\0\101" .. string.rep("x", 101))
      assert.same({"ok"}, p.strings)
      assert.same({101}, p.limits)
      assert.is_true(t.disconnecting)
      assert.equal(0, (cbasic.bufferInfo(p)))
    end)

    it("holds strings while paused", function()
      local p, t = connect(I32)
      p:pauseProducing()
      p:dataReceived("\0\0\0\1a")
      assert.same({}, p.strings)
      assert.equal("paused", t.producerState)
      p:resumeProducing()
      assert.same({"a"}, p.strings)
    end)
  end)
end)

describe("Int16StringReceiver and Int8StringReceiver", function()
  it("use 2- and 1-byte prefixes", function()
    local I16 = recorderOf(basic.Int16StringReceiver)
    local I8 = recorderOf(basic.Int8StringReceiver)
    local p16, t16 = connect(I16)
    p16:sendString("hi")
    assert.equal("\0\2hi", t16:value())
    local p8, t8 = connect(I8)
    p8:sendString("hi")
    assert.equal("\2hi", t8:value())
    p8:dataReceived("\2hi\1")
    p8:dataReceived("!")
    assert.same({"hi", "!"}, p8.strings)
  end)

  it("raise StringTooLongError for a string that does not fit", function()
    local I8 = recorderOf(basic.Int8StringReceiver)
    local p = connect(I8)
    local ok, err = pcall(p.sendString, p, string.rep("x", 256))
    assert.is_false(ok)
    local F = require("spindle.failure").Failure(err)
    assert.equal(basic.StringTooLongError, F:check(basic.StringTooLongError))
    assert.truthy(tostring(err):find("maximum is 256", 1, true))
  end)
end)

-- Over real TCP (needs reactor.listenTCP from the tcp branch), with python3
-- as the peer.
describe("spindle.basic over TCP", function()
  local reactor = require("spindle.reactor")
  local defer = require("spindle.defer")
  local log = require("spindle.log")
  local protocol = require("spindle.protocol")
  local haveTCP = pcall(function() return reactor.listenTCP end)
  local TIMEOUT = 5
  local ports = {}

  after_each(function()
    for _, port in ipairs(ports) do
      local d = port:stopListening()
      if d then reactor.runUntilComplete(d, TIMEOUT) end
    end
    ports = {}
  end)

  -- Listen on 127.0.0.1 with a factory of P; returns the port number.
  local function serve(P)
    local port = reactor.listenTCP(0, protocol.Factory.forProtocol(P), nil,
      "127.0.0.1")
    ports[#ports + 1] = port
    return port:getHost().port
  end

  -- Run python3 code (with PORT set) in the background; a Deferred fires
  -- with its output once it exits.
  local function python(code, port)
    local out = os.tmpname()
    local script = out .. ".py"
    local f = assert(io.open(script, "w"))
    f:write("import socket, struct, sys, time\nPORT = ", port, "\n", code)
    f:close()
    os.execute(("(python3 %s > %s 2>&1; touch %s.done) &")
      :format(script, out, out))
    local d = defer.Deferred()
    local deadline = reactor.seconds() + TIMEOUT
    local function poll()
      local done = io.open(out .. ".done")
      if done then
        done:close()
        local o = io.open(out)
        local text = o:read("a")
        o:close()
        os.remove(out); os.remove(out .. ".done"); os.remove(script)
        return d:callback(text)
      end
      if reactor.seconds() > deadline then
        return d:errback("python3 peer timed out")
      end
      reactor.callLater(0.02, poll)
    end
    poll()
    return d
  end

  local function wait(d) return reactor.runUntilComplete(d, TIMEOUT) end

  local function skipWithoutTCP()
    if not haveTCP then
      pending("reactor.listenTCP is not on this branch yet")
      return true
    end
  end

  it("echoes pipelined lines sent in odd pieces", function()
    if skipWithoutTCP() then return end
    local Echo = basic.LineReceiver:extend({delimiter = "\n"})
    function Echo:lineReceived(line) self:sendLine("<" .. line .. ">") end
    local n = serve(Echo)
    local out = wait(python([[
s = socket.create_connection(("127.0.0.1", PORT))
data = b"".join(b"line %d\n" % i for i in range(500))
for i in range(0, len(data), 7):
    s.sendall(data[i:i + 7])
want = b"".join(b"<line %d>\n" % i for i in range(500))
got = b""
s.settimeout(4)
while len(got) < len(want):
    b = s.recv(65536)
    if not b: break
    got += b
print("ok" if got == want else "mismatch %r" % got[:200])
]], n))
    assert.equal("ok\n", out)
  end)

  -- Python code that sends `data` (a Python bytes literal) in one sendall
  -- and prints all it reads until the server closes.
  local function sendAndRead(data)
    return ([[
s = socket.create_connection(("127.0.0.1", PORT))
s.settimeout(4)
s.sendall(%s)
got = b""
while True:
    b = s.recv(65536)
    if not b: break
    got += b
print(got)
]]):format(data)
  end

  it("follows fields that lineReceived sets on the instance, line by line",
    function()
    if skipWithoutTCP() then return end
    local P = basic.LineReceiver:extend()
    local exceeded
    function P:lineReceived(line)
      if line == "a" then
        self.delimiter = "\n"
        self:sendLine("A")
      elseif line == "b" then
        self.lineReceived = function(me, l)
          if l == "c" then
            me.MAX_LENGTH = 3
            return me:sendLine("C")
          end
          me:sendLine("other " .. l)
        end
        self:sendLine("B")
      end
    end
    function P:lineLengthExceeded(rest)
      exceeded = rest
      self:sendLine("long")
      self.transport:loseConnection()
    end
    local n = serve(P)
    local out = wait(python(sendAndRead([[b"a\r\nb\nc\nxyz\ntoolong\nq\n"]]),
      n))
    assert.equal("b'A\\nB\\nC\\nother xyz\\nlong\\n'\n", out)
    assert.equal("toolong\nq\n", exceeded)
  end)

  it("writes to and asks a transport that lineReceived put in place",
    function()
    if skipWithoutTCP() then return end
    local P = basic.LineReceiver:extend()
    local seen = {}
    function P:lineReceived(line)
      seen[#seen + 1] = line
      if line == "swap" then
        local real = self.transport
        self.transport = {
          disconnecting = false,
          write = function(_, data) real:write("via " .. data) end,
          loseConnection = function() real:loseConnection() end,
        }
      elseif line == "stop" then
        self.transport.disconnecting = true
        self.transport:loseConnection()
        return
      end
      self:sendLine(line)
    end
    local n = serve(P)
    local out = wait(python(sendAndRead(
      [[b"one\r\nswap\r\ntwo\r\nstop\r\nno\r\n"]]), n))
    assert.equal("b'one\\r\\nvia swap\\r\\nvia two\\r\\n'\n", out)
    assert.same({"one", "swap", "two", "stop"}, seen)
  end)

  it("gives a dataReceived that overrides LineReceiver's a string",
    function()
    if skipWithoutTCP() then return end
    local P = basic.LineReceiver:extend()
    local types = {}
    function P:dataReceived(data)
      types[type(data)] = true
      return basic.LineReceiver.dataReceived(self, data)
    end
    function P:lineReceived(line)
      self:sendLine("<" .. line .. ">")
      if line == "bye" then self.transport:loseConnection() end
    end
    local n = serve(P)
    local out = wait(python(sendAndRead([[b"x\r\nbye\r\n"]]), n))
    assert.equal("b'<x>\\r\\n<bye>\\r\\n'\n", out)
    assert.same({string = true}, types)
  end)

  it("hands the rest of a read to rawDataReceived after setRawMode",
    function()
    if skipWithoutTCP() then return end
    local P = basic.LineReceiver:extend()
    local raw = {}
    function P:lineReceived(line)
      self:sendLine(line)
      if line == "raw" then self:setRawMode() end
    end
    function P:rawDataReceived(data)
      raw[#raw + 1] = data
      if table.concat(raw):find("END", 1, true) then
        self.transport:write("raw " .. table.concat(raw))
        self.transport:loseConnection()
      end
    end
    local n = serve(P)
    local out = wait(python(sendAndRead([[b"hi\r\nraw\r\nX\r\nY END"]]), n))
    assert.equal("b'hi\\r\\nraw\\r\\nraw X\\r\\nY END'\n", out)
    assert.equal("string", type(raw[1]))
  end)

  it("delivers no line after loseConnection in lineReceived", function()
    if skipWithoutTCP() then return end
    local lines, flag = {}, nil
    local P = basic.LineReceiver:extend()
    function P:lineReceived(line)
      lines[#lines + 1] = line
      if line == "quit" then
        self:sendLine("bye")
        self.transport:loseConnection()
        flag = self.transport.disconnecting
        if flag == nil then flag = self.transport:isClosed() end
      end
    end
    local n = serve(P)
    local out = wait(python([[
s = socket.create_connection(("127.0.0.1", PORT))
s.settimeout(4)
s.sendall(b"a\r\nquit\r\nb\r\nc\r\n")
got = b""
while True:
    b = s.recv(100)
    if not b: break
    got += b
print(got)
]], n))
    assert.equal("b'bye\\r\\n'\n", out)
    assert.is_true(flag)
    assert.same({"a", "quit"}, lines)
  end)

  it("disconnects a peer sending 10 MiB without a delimiter", function()
    if skipWithoutTCP() then return end
    local exceeded = 0
    local P = basic.LineReceiver:extend()
    function P:lineReceived() end
    function P:lineLengthExceeded(line)
      exceeded = exceeded + 1
      self.maxSeen = #line
      return basic.LineReceiver.lineLengthExceeded(self, line)
    end
    local n = serve(P)
    local out = wait(python([[
s = socket.create_connection(("127.0.0.1", PORT))
s.settimeout(4)
sent = 0
try:
    chunk = b"x" * 65536
    while sent < 10 * 1024 * 1024:
        s.sendall(chunk)
        sent += len(chunk)
    r = s.recv(10)
    print("closed" if r == b"" else "data")
except (ConnectionResetError, BrokenPipeError):
    print("closed")
]], n))
    assert.equal("closed\n", out)
    assert.is_true(exceeded >= 1)
  end)

  it("logs an error in lineReceived and drops the connection", function()
    if skipWithoutTCP() then return end
    local errors = {}
    local function observer(e) if e.isError then errors[#errors + 1] = e end end
    local saved = log.observers()
    for _, o in ipairs(saved) do log.removeObserver(o) end
    log.addObserver(observer)
    local P = basic.LineReceiver:extend()
    function P:lineReceived(line)
      if line == "bad" then error("lineReceived blew up") end
      self:sendLine("ok " .. line)
    end
    local n = serve(P)
    local ok, out = pcall(wait, python([[
s = socket.create_connection(("127.0.0.1", PORT))
s.settimeout(4)
s.sendall(b"a\r\nbad\r\nc\r\n")
got = b""
while True:
    b = s.recv(100)
    if not b: break
    got += b
print(got)
]], n))
    log.removeObserver(observer)
    for _, o in ipairs(saved) do log.addObserver(o) end
    assert.is_true(ok, out)
    -- The connection is dropped at once, as Twisted does: what was written
    -- in the same dataReceived may be lost with it, "c" is never seen.
    assert.truthy(out == "b''\n" or out == "b'ok a\\r\\n'\n", out)
    assert.equal(1, #errors)
    assert.truthy(errors[1].failure:getTraceback():find("lineReceived blew up",
      1, true))
  end)

  it("drops a netstring peer with a bad length prefix", function()
    if skipWithoutTCP() then return end
    local got = {}
    local P = basic.NetstringReceiver:extend()
    function P:stringReceived(s) got[#got + 1] = s; self:sendString(s) end
    local n = serve(P)
    local out = wait(python([[
s = socket.create_connection(("127.0.0.1", PORT))
s.settimeout(4)
s.sendall(b"5:hello,x:bad,")
got = b""
while True:
    b = s.recv(100)
    if not b: break
    got += b
print(got)
]], n))
    assert.equal("b'5:hello,'\n", out)
    assert.same({"hello"}, got)
  end)

  it("round-trips Int32 strings", function()
    if skipWithoutTCP() then return end
    local P = basic.Int32StringReceiver:extend()
    function P:stringReceived(s) self:sendString(s:reverse()) end
    local n = serve(P)
    local out = wait(python([[
s = socket.create_connection(("127.0.0.1", PORT))
s.settimeout(4)
msgs = [b"", b"abc", b"x" * 70000]
wire = b"".join(struct.pack("!I", len(m)) + m for m in msgs)
for i in range(0, len(wire), 1000):
    s.sendall(wire[i:i + 1000])
want = b"".join(struct.pack("!I", len(m)) + m[::-1] for m in msgs)
got = b""
while len(got) < len(want):
    b = s.recv(65536)
    if not b: break
    got += b
print("ok" if got == want else "mismatch")
]], n))
    assert.equal("ok\n", out)
  end)
end)
