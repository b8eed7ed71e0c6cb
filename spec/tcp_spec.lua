-- reactor.listenTCP / connectTCP and the stream transport, over loopback,
-- with python3, socat and nc as outside peers.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local defer = require("spindle.defer")
local H = require("spec.support.helper")
local peers = require("spec.support.peers")
local pyfile, spawn, finish = peers.pyfile, peers.spawn, peers.finish

-- Run the reactor until d fires (failing if an error was logged meanwhile).
local function wait(d, timeout)
  return H.wait(d, timeout or 10)
end

-- A TCP port on 127.0.0.1 that nobody listens on, found by binding port 0
-- and closing: for connections meant to be refused, or for spindle's own
-- bind. Never handed to an outside server (peers.listening is for those).
local function freePort()
  local port = reactor.listenTCP(0, protocol.Factory.forProtocol(
    protocol.Protocol), nil, "127.0.0.1")
  local n = port:getHost().port
  wait(port:stopListening())
  return n
end

-- A factory whose protocols echo; `lost` fires with the reason the first
-- time a connection is lost.
local function echoFactory()
  local Echo = protocol.Protocol:extend({})
  local f = protocol.Factory.forProtocol(Echo)
  f.lost = defer.Deferred()
  f.count = 0
  function Echo:connectionMade() f.count = f.count + 1 end
  function Echo:dataReceived(data) self.transport:write(data) end
  function Echo:connectionLost(reason)
    if not f.lost.called then f.lost:callback({reason}) end
  end
  return f
end

-- A client protocol collecting what it reads; `done` fires with the data
-- when the connection is lost.
local function collector(onMade)
  local C = protocol.Protocol:extend({})
  local cf = protocol.ClientFactory.forProtocol(C)
  cf.done = defer.Deferred()
  function C:connectionMade()
    self.chunks = {}
    if onMade then onMade(self) end
  end
  function C:dataReceived(data) self.chunks[#self.chunks + 1] = data end
  function C:connectionLost(reason)
    cf.reason = reason
    cf.done:callback(table.concat(self.chunks))
  end
  function cf:clientConnectionFailed(_, reason) cf.done:errback(reason) end
  return cf
end

-- Resident memory of this process, in bytes.
local function rss()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) * 1024 end
  end
end

describe("reactor.listenTCP", function()
  it("raises startFactory's error and frees the port (bug: the socket "
    .. "was left listening)", function()
    local Bad = protocol.Factory:extend({protocol = protocol.Protocol,
      startFactory = function() error("boom") end})
    local probe = reactor.listenTCP(0, protocol.Factory.forProtocol(
      protocol.Protocol), nil, "127.0.0.1")
    local portnum = probe:getHost().port
    wait(probe:stopListening())
    local ok, err = pcall(reactor.listenTCP, portnum, Bad(), nil, "127.0.0.1")
    assert.is_false(ok)
    assert.matches("boom", tostring(err))
    local p = reactor.listenTCP(portnum,
      protocol.Factory.forProtocol(protocol.Protocol), nil, "127.0.0.1")
    assert.equal(portnum, p:getHost().port)
    wait(p:stopListening())
  end)

  it("answers an outside python3 client as an echo server", function()
    local f = echoFactory()
    local port = reactor.listenTCP(0, f, nil, "127.0.0.1")
    local n = port:getHost().port
    assert.is_true(n > 0)
    local py = pyfile(([[
import socket
s = socket.create_connection(("127.0.0.1", %d))
msg = b"hello spindle " * 1000
s.sendall(msg)
got = b""
while len(got) < len(msg):
    b = s.recv(65536)
    if not b: break
    got += b
print("OK" if got == msg else "BAD %%d" %% len(got))
s.close()
]]):format(n))
    local p = spawn("python3 " .. py)
    local reason = wait(f.lost)[1]
    assert.equal("OK\n", finish(p))
    assert.is_truthy(reason:check(reactor.ConnectionDone))
    os.remove(py)
    wait(port:stopListening())
  end)

  it("answers nc (netcat-openbsd) as an echo server", function()
    local f = echoFactory()
    local port = reactor.listenTCP(0, f, nil, "127.0.0.1")
    local p = spawn("printf 'ping-pong' | timeout 5 nc -N 127.0.0.1 " ..
      port:getHost().port)
    wait(f.lost)
    assert.equal("ping-pong", finish(p))
    wait(port:stopListening())
  end)

  it("gives addresses that print as Twisted's and travel to threads",
    function()
      local threads = require("spindle.threads")
      local port = reactor.listenTCP(0, echoFactory(), nil, "127.0.0.1")
      local host = port:getHost()
      assert.equal(("IPv4Address(type='TCP', host='127.0.0.1', port=%d)")
        :format(host.port), tostring(host))
      assert.equal("127.0.0.1:" .. host.port, wait(threads.deferToThread(
        function(a) return a.host .. ":" .. a.port end, host)))
      wait(port:stopListening())
    end)

  it("listens on IPv6 loopback and reports the address", function()
    local f = echoFactory()
    local ok, port = pcall(reactor.listenTCP, 0, f, 5, "::1")
    if not ok then return pending("no IPv6 loopback: " .. tostring(port)) end
    local host = port:getHost()
    assert.same({type = "TCP", host = "::1", port = host.port, "::1",
      host.port, flowInfo = 0, scopeID = 0}, host)
    assert.equal(("IPv6Address(type='TCP', host='::1', port=%d, " ..
      "flowInfo=0, scopeID=0)"):format(host.port), tostring(host))
    local cf = collector(function(p) p.transport:write("six") end)
    cf.protocol.dataReceived = function(self, data)
      self.chunks[#self.chunks + 1] = data
      self.transport:loseConnection()
    end
    reactor.connectTCP("::1", host.port, cf)
    assert.equal("six", wait(cf.done))
    wait(port:stopListening())
  end)

  it("raises CannotListenError with code EADDRINUSE when the port is taken",
    function()
      local f = echoFactory()
      local port = reactor.listenTCP(0, f, nil, "127.0.0.1")
      local n = port:getHost().port
      local ok, err = pcall(reactor.listenTCP, n, f, nil, "127.0.0.1")
      assert.is_false(ok)
      assert.equal(reactor.CannotListenError, getmetatable(err))
      assert.equal("EADDRINUSE", err.code)
      assert.matches("127.0.0.1:" .. n, err.message, 1, true)
      assert.equal(1, f.numPorts)
      wait(port:stopListening())
    end)

  it("rejects bad arguments naming them", function()
    local f = echoFactory()
    -- A numeric string is a port, as for Lua's own functions (issue 7).
    assert.has_error(function() reactor.listenTCP("http", f) end,
      "bad argument #1 to 'listenTCP' (port number expected, got string)")
    assert.has_error(function() reactor.listenTCP(70000, f) end,
      "bad argument #1 to 'listenTCP' (port number must be an integer " ..
      "in 0..65535)")
    assert.has_error(function() reactor.listenTCP(0, nil) end,
      "bad argument #2 to 'listenTCP' (factory expected, got nil)")
    assert.has_error(function() reactor.listenTCP(0, {}) end,
      "bad argument #2 to 'listenTCP' (factory expected (no buildProtocol " ..
      "method))")
    H.assertErrorType(reactor.CannotListenError,
      "the interface must be an IP address",
      pcall(reactor.listenTCP, 0, f, nil, "localhost"))
    assert.has_error(function() reactor.listenTCP(0, f, -1) end,
      "bad argument #3 to 'listenTCP' (backlog must be positive)")
  end)

  it("refuses an interface that is not a string, at the caller's line",
    function()
      local f = echoFactory()
      local line = debug.getinfo(1, "l").currentline + 1
      local ok, err = pcall(function() reactor.listenTCP(0, f, 50, 5) end)
      assert.is_false(ok)
      assert.equal(debug.getinfo(1, "S").short_src .. ":" .. line ..
        ": bad argument #4 to 'listenTCP' (string expected, got number)",
        err)
      -- through pcall: no position, the public name
      assert.same({false, "bad argument #4 to 'listenTCP' (string " ..
        "expected, got boolean)"}, {pcall(reactor.listenTCP, 0, f, 50, true)})
    end)

  it("calls startFactory once for two ports and stopFactory after both",
    function()
      local f = echoFactory()
      local starts, stops = 0, 0
      function f:startFactory() starts = starts + 1 end
      function f:stopFactory() stops = stops + 1 end
      local p1 = reactor.listenTCP(0, f, nil, "127.0.0.1")
      local p2 = reactor.listenTCP(0, f, nil, "127.0.0.1")
      assert.equal(1, starts)
      assert.equal(2, f.numPorts)
      wait(p1:stopListening())
      assert.equal(0, stops)
      local d = p2:stopListening()
      wait(d)
      assert.equal(1, stops)
      assert.equal(0, f.numPorts)
      -- Stopping again gives a fired Deferred.
      assert.is_true(p2:stopListening().called)
    end)

  it("listens again after startListening", function()
    local f = echoFactory()
    local port = reactor.listenTCP(0, f, nil, "127.0.0.1")
    wait(port:stopListening())
    port:startListening()
    assert.has_error(function() port:startListening() end,
      "startListening: port is already listening")
    local cf = collector(function(p) p.transport:loseConnection() end)
    reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
    wait(cf.done)
    wait(port:stopListening())
  end)

  it("closes the connection when buildProtocol returns nil", function()
    local f = protocol.Factory()
    local asked
    function f:buildProtocol(addr) asked = addr; return nil end
    local port = reactor.listenTCP(0, f, nil, "127.0.0.1")
    local cf = collector()
    reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
    assert.equal("", wait(cf.done))
    assert.equal("TCP", asked.type)
    assert.equal("127.0.0.1", asked.host)
    wait(port:stopListening())
  end)
end)

describe("reactor.connectTCP", function()
  it("talks to a socat echo server", function()
    local p, n = peers.listening("timeout 10 socat -d -d " ..
      "TCP-LISTEN:0,bind=127.0.0.1,reuseaddr EXEC:cat",
      "listening on AF=2 [%d.]+:(%d+)")
    local cf = collector(function(c)
      c.transport:write("through socat\n")
    end)
    cf.protocol.dataReceived = function(self, data)
      self.chunks[#self.chunks + 1] = data
      if table.concat(self.chunks):find("\n") then
        self.transport:loseConnection()
      end
    end
    reactor.connectTCP("127.0.0.1", n, cf)
    assert.equal("through socat\n", wait(cf.done))
    finish(p)
  end)

  it("follows the ClientFactory life cycle in Twisted's order", function()
    local f = echoFactory()
    local port = reactor.listenTCP(0, f, nil, "127.0.0.1")
    local calls = {}
    local C = protocol.Protocol:extend({})
    function C:makeConnection(t)
      calls[#calls + 1] = "makeConnection"
      protocol.Protocol.makeConnection(self, t)
    end
    function C:connectionMade()
      calls[#calls + 1] = "connectionMade"
      self.transport:loseConnection()
    end
    function C:connectionLost() calls[#calls + 1] = "connectionLost" end
    local cf = protocol.ClientFactory.forProtocol(C)
    local done = defer.Deferred()
    function cf:startFactory() calls[#calls + 1] = "startFactory" end
    function cf:stopFactory()
      calls[#calls + 1] = "stopFactory"
      done:callback(nil)
    end
    function cf:startedConnecting(c)
      calls[#calls + 1] = "startedConnecting " .. c.state
    end
    function cf:buildProtocol(addr)
      calls[#calls + 1] = "buildProtocol " .. addr.type .. " " .. addr.port
      return protocol.ClientFactory.buildProtocol(self, addr)
    end
    function cf:clientConnectionLost(c, reason)
      calls[#calls + 1] = "clientConnectionLost " ..
        tostring(reason:check(reactor.ConnectionDone) ~= nil) .. " " .. c.state
    end
    local n = port:getHost().port
    local connector = reactor.connectTCP("127.0.0.1", n, cf)
    assert.same({type = "TCP", host = "127.0.0.1", port = n, "127.0.0.1", n},
      connector:getDestination())
    assert.equal(("IPv4Address(type='TCP', host='127.0.0.1', port=%d)")
      :format(n), tostring(connector:getDestination()))
    wait(done)
    assert.same({"startFactory", "startedConnecting connecting",
      "buildProtocol TCP " .. n, "makeConnection", "connectionMade",
      "connectionLost", "clientConnectionLost true disconnected",
      "stopFactory"}, calls)
    wait(port:stopListening())
  end)

  it("raises what doStart raises and keeps nothing of the attempt",
    function()
      -- Twisted's BaseConnector.connect calls factory.doStart() first and
      -- lets its error propagate; nothing may pin the Connector (and so
      -- the factory) afterwards.
      local f = echoFactory()
      local port = reactor.listenTCP(0, f, nil, "127.0.0.1")
      local weak = setmetatable({}, {__mode = "v"})
      do
        local cf = protocol.ClientFactory.forProtocol(protocol.Protocol)
        function cf:startFactory() error({tag = "no start"}) end
        function cf:startedConnecting() error("must not be reached") end
        weak.factory = cf
        local ok, err = pcall(reactor.connectTCP, "127.0.0.1",
          port:getHost().port, cf)
        assert.is_false(ok)
        assert.equal("no start", err.tag)
      end
      collectgarbage("collect")
      collectgarbage("collect")
      assert.is_nil(weak.factory)
      assert.equal(0, f.count)
      wait(port:stopListening())
    end)

  it("lets an error of startedConnecting reach the caller while the " ..
    "attempt goes on, as Twisted does", function()
      -- twisted BaseConnector.connect: factory.startedConnecting(self) is
      -- its last statement, after the transport exists; what it raises
      -- propagates out of connectTCP and the connection still happens.
      local f = echoFactory()
      local port = reactor.listenTCP(0, f, nil, "127.0.0.1")
      local cf = protocol.ClientFactory.forProtocol(protocol.Protocol:extend({
        connectionMade = function(self) self.transport:loseConnection() end}))
      local done = defer.Deferred()
      function cf:startedConnecting() error({tag = "started"}) end
      function cf:clientConnectionLost(_, reason) done:callback({reason}) end
      local ok, err = pcall(reactor.connectTCP, "127.0.0.1",
        port:getHost().port, cf)
      assert.is_false(ok)
      assert.equal("started", err.tag)
      assert.is_truthy(wait(done)[1]:check(reactor.ConnectionDone))
      assert.equal(1, f.count)
      wait(port:stopListening())
    end)

  it("resolves names without blocking and reconnects from " ..
    "clientConnectionLost", function()
      local f = echoFactory()
      local port = reactor.listenTCP(0, f, nil, "127.0.0.1")
      local made, starts = 0, 0
      local cf = protocol.ClientFactory.forProtocol(protocol.Protocol:extend({
        connectionMade = function(self)
          made = made + 1
          self.transport:loseConnection()
        end}))
      local done = defer.Deferred()
      function cf:startFactory() starts = starts + 1 end
      function cf:clientConnectionLost(connector)
        if made < 3 then connector:connect() else done:callback(made) end
      end
      reactor.connectTCP("localhost", port:getHost().port, cf)
      assert.equal(3, wait(done))
      assert.equal(1, starts)
      wait(port:stopListening())
    end)

  it("makes a factory of the class forProtocol is called on, with a dot",
     function()
    -- Twisted's forProtocol is a classmethod: MyClientFactory.forProtocol(P)
    -- is a MyClientFactory. Before, a dot call gave a plain Factory, so
    -- the subclass's clientConnectionFailed was never called.
    assert.is_true(protocol.ClientFactory.isinstance(protocol.ClientFactory,
      protocol.ClientFactory.forProtocol(protocol.Protocol)))
    local failed = defer.Deferred()
    local CF = protocol.ClientFactory:extend({
      clientConnectionFailed = function(_, _, reason)
        failed:callback({reason})
      end,
    })
    local f = CF.forProtocol(protocol.Protocol)
    assert.is_true(CF.isinstance(CF, f))
    assert.equal(protocol.Protocol, f.protocol)
    assert.is_true(CF.isinstance(CF, CF:forProtocol(protocol.Protocol)))
    assert.is_true(CF.isinstance(protocol.Factory,
      protocol.Factory.forProtocol(protocol.Protocol)))
    reactor.connectTCP("127.0.0.1", freePort(), f)
    assert.is_truthy(wait(failed)[1]:check(reactor.ConnectionRefusedError))
  end)

  it("delivers ConnectionRefusedError naming the address", function()
    local n = freePort()
    local cf = collector()
    reactor.connectTCP("127.0.0.1", n, cf)
    local ok, f = pcall(wait, cf.done)
    assert.is_false(ok)
    assert.is_truthy(f:check(reactor.ConnectionRefusedError))
    assert.is_truthy(f:check(reactor.ConnectError))
    assert.equal("ECONNREFUSED", f.value.code)
    assert.matches("127.0.0.1:" .. n, f:getErrorMessage(), 1, true)
  end)

  it("delivers DNSLookupError naming the host", function()
    -- A 64-byte label cannot be put in a DNS query: it fails locally.
    local host = string.rep("x", 64) .. ".invalid"
    local cf = collector()
    reactor.connectTCP(host, 80, cf)
    local ok, f = pcall(wait, cf.done)
    assert.is_false(ok)
    assert.is_truthy(f:check(reactor.DNSLookupError))
    assert.matches(host, f:getErrorMessage(), 1, true)
  end)

  it("delivers reactor.TimeoutError when the connect takes too long",
    function()
      -- A listener whose accept queue is full drops further SYNs.
      local py = pyfile([[
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(0)
fill = []
for i in range(4):
    c = socket.socket()
    c.setblocking(False)
    try: c.connect(s.getsockname())
    except BlockingIOError: pass
    fill.append(c)
print(s.getsockname()[1], flush=True)
time.sleep(1.5)
]])
      local p = spawn("python3 " .. py)
      local n = tonumber(p:read("l"))
      local cf = collector()
      local t0 = reactor.seconds()
      reactor.connectTCP("127.0.0.1", n, cf, 0.5)
      local ok, f = pcall(wait, cf.done)
      assert.is_false(ok)
      assert.is_truthy(f:check(reactor.TimeoutError))
      assert.matches("127.0.0.1:" .. n, f:getErrorMessage(), 1, true)
      assert.is_true(reactor.seconds() - t0 < 2)
      finish(p)
      os.remove(py)
    end)

  it("stops connecting with UserError and raises NotConnectingError after",
    function()
      local n = freePort()
      local cf = collector()
      local c = reactor.connectTCP("127.0.0.1", n, cf)
      c:stopConnecting()
      local ok, f = pcall(wait, cf.done)
      assert.is_false(ok)
      assert.is_truthy(f:check(reactor.UserError))
      assert.equal("disconnected", c.state)
      local ok2, err = pcall(c.stopConnecting, c)
      assert.is_false(ok2)
      assert.equal(reactor.NotConnectingError, getmetatable(err))
    end)

  it("binds to bindAddress", function()
    local f = echoFactory()
    local port = reactor.listenTCP(0, f, nil, "127.0.0.1")
    local local_port = freePort()
    local host
    local cf = collector(function(p)
      host = p.transport:getHost()
      p.transport:loseConnection()
    end)
    reactor.connectTCP("127.0.0.1", port:getHost().port, cf, 5,
      {"127.0.0.1", local_port})
    wait(cf.done)
    assert.equal(local_port, host.port)
    wait(port:stopListening())
  end)

  it("rejects bad arguments naming them", function()
    local cf = collector()
    assert.has_error(function() reactor.connectTCP(nil, 80, cf) end,
      "bad argument #1 to 'connectTCP' (string expected, got nil)")
    assert.has_error(function() reactor.connectTCP("h", "x", cf) end,
      "bad argument #2 to 'connectTCP' (port number expected, got string)")
    assert.has_error(function() reactor.connectTCP("h", 80, 5) end,
      "bad argument #3 to 'connectTCP' (factory expected, got number)")
    assert.has_error(function() reactor.connectTCP("h", 80, cf, -1) end,
      "bad argument #4 to 'connectTCP' (timeout must be a positive number " ..
      "of seconds)")
  end)
end)

describe("transport and connector metamethods", function()
  it("refuse a value of another type", function()
    local reg = debug.getregistry()
    local tmt, cmt = reg["spindle.Transport"], reg["spindle.Connector"]
    for _, call in ipairs({
      function() return tmt.__index(io.stdout, "connected") end,
      function() return tmt.__index({}, "disconnected") end,
      function() return tmt.__tostring(io.stdout) end,
      function() return cmt.__index(io.stdout, "state") end,
      function() return cmt.__gc(io.stdout) end,
      function() return cmt.__tostring(io.stdout) end,
    }) do
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.truthy(err:find("expected, got", 1, true), err)
    end
  end)
end)

describe("transport", function()
  -- Connect a client to a server built from protocol class S; returns the
  -- port and the client factory (collector).
  local function pair(S, onMade)
    local f = protocol.Factory.forProtocol(S)
    local port = reactor.listenTCP(0, f, nil, "127.0.0.1")
    local cf = collector(onMade)
    reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
    return port, cf
  end

  it("delivers 64 MiB written then loseConnection complete to a slow reader",
    function()
      local all = {}
      for i = 0, 255 do all[#all + 1] = string.char(i) end
      all = table.concat(all)
      local base = all:rep(255) .. all:sub(1, 248)
      local blocks = {}
      for k = 0, 1023 do blocks[k + 1] = ("%08d"):format(k) .. base end
      local data = table.concat(blocks)
      assert.equal(64 * 1024 * 1024, #data)
      local f = protocol.Factory()
      local lost = defer.Deferred()
      local S = protocol.Protocol:extend({
        connectionMade = function(self)
          self.transport:write(data)
          self.transport:loseConnection()
          self.transport:write("ignored? no: still queued before close")
        end,
        connectionLost = function(_, reason) lost:callback({reason}) end,
      })
      f.protocol = S
      local port = reactor.listenTCP(0, f, nil, "127.0.0.1")
      local py = pyfile(([[
import socket, hashlib, time
base = bytes(range(256)) * 255 + bytes(range(248))
h = hashlib.sha256()
for k in range(1024):
    h.update(b"%%08d" %% k + base)
h.update(b"ignored? no: still queued before close")
want = h.hexdigest()
s = socket.create_connection(("127.0.0.1", %d))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
got = hashlib.sha256()
n = 0
while True:
    b = s.recv(65536)
    if not b: break
    got.update(b)
    n += len(b)
    if n %% (1 << 20) < len(b): time.sleep(0.002)
print(n, "OK" if got.hexdigest() == want else "BAD")
]]):format(port:getHost().port))
      local p = spawn("python3 " .. py)
      local reason = wait(lost, 60)[1]
      assert.is_truthy(reason:check(reactor.ConnectionDone))
      assert.equal(("%d OK\n"):format(64 * 1024 * 1024 + 38), finish(p))
      os.remove(py)
      wait(port:stopListening())
    end)

  it("keeps memory bounded under a streaming producer writing 256 MiB",
    function()
      local total = 256 * 1024 * 1024
      local chunk = ("0123456789abcdef"):rep(4096) -- 64 KiB
      local lost = defer.Deferred()
      local stats = {pauses = 0, resumes = 0, peak = 0}
      local S = protocol.Protocol:extend({})
      function S:connectionMade()
        self.sent, self.paused = 0, false
        self.transport:registerProducer(self, true)
        self:produce()
      end
      function S:produce()
        local t = self.transport
        local n = 0
        while not self.paused and self.sent < total and n < 256 do
          t:write(chunk)
          self.sent = self.sent + #chunk
          n = n + 1
        end
        local q = t:getBufferSize()
        if q > stats.peak then stats.peak = q end
        if self.sent >= total then
          t:unregisterProducer()
          t:loseConnection()
        elseif not self.paused then
          reactor.callLater(0, self.produce, self)
        end
      end
      function S:pauseProducing()
        stats.pauses = stats.pauses + 1
        self.paused = true
      end
      function S:resumeProducing()
        stats.resumes = stats.resumes + 1
        self.paused = false
        reactor.callLater(0, self.produce, self)
      end
      function S:stopProducing() stats.stopped = true end
      function S:connectionLost(reason) lost:callback({reason}) end
      local port = reactor.listenTCP(0, protocol.Factory.forProtocol(S), nil,
        "127.0.0.1")
      collectgarbage()
      local before = rss()
      local py = pyfile(([[
import socket, time
s = socket.create_connection(("127.0.0.1", %d))
n, t0 = 0, time.time()
while True:
    b = s.recv(65536)
    if not b: break
    n += len(b)
    ahead = n / 150e6 - (time.time() - t0)  # about 150 MB/s
    if ahead > 0: time.sleep(ahead)
print(n)
]]):format(port:getHost().port))
      local p = spawn("python3 " .. py)
      local reason = wait(lost, 60)[1]
      local after = rss()
      assert.is_truthy(reason:check(reactor.ConnectionDone))
      assert.equal(tostring(total) .. "\n", finish(p))
      assert.is_true(stats.pauses > 0)
      assert.is_true(stats.resumes > 0)
      assert.is_true(after - before < 64 * 1024 * 1024,
        "RSS grew by " .. (after - before))
      assert.is_true(stats.peak < 32 * 1024 * 1024, "queue peak " .. stats.peak)
      os.remove(py)
      wait(port:stopListening())
    end)

  it("stops reading from a peer that sends without reading once 64 MiB " ..
    "are queued", function()
      local f = protocol.Factory.forProtocol(protocol.Protocol:extend({
        dataReceived = function(self, d) self.transport:write(d) end,
        connectionLost = function() end,
      }))
      local port = reactor.listenTCP(0, f, nil, "127.0.0.1")
      collectgarbage()
      local before = rss()
      local py = pyfile(([[
import socket
s = socket.create_connection(("127.0.0.1", %d))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
s.settimeout(2)
chunk, sent = b"x" * (1 << 20), 0
try:
    while sent < (400 << 20):
        sent += s.send(chunk)
except socket.timeout:
    pass
print("blocked" if sent < (400 << 20) else "sent all", flush=True)
import time; time.sleep(0.5)
]]):format(port:getHost().port))
      local p = spawn("python3 " .. py)
      local d = defer.Deferred()
      local peak, polling = 0, nil
      local function poll()
        peak = math.max(peak, rss() - before)
        polling = reactor.callLater(0.05, poll)
      end
      poll()
      reactor.callLater(3, function()
        polling:cancel()
        d:callback(nil)
      end)
      wait(d)
      assert.equal("blocked\n", finish(p))
      -- 64 MiB queued, plus garbage strings of the reads not yet collected.
      assert.is_true(peak < 200 * 1024 * 1024, "RSS grew by " .. peak)
      os.remove(py)
      wait(port:stopListening())
    end)

  it("calls a pull producer's resumeProducing each time the queue drains",
    function()
      local calls, lost = 0, defer.Deferred()
      local S = protocol.Protocol:extend({})
      function S:connectionMade()
        self.transport:registerProducer(self, false)
      end
      function S:resumeProducing()
        calls = calls + 1
        if calls <= 5 then
          self.transport:write(("x"):rep(1000))
        else
          self.transport:unregisterProducer()
          self.transport:loseConnection()
        end
      end
      function S:connectionLost(reason) lost:callback({reason}) end
      local port, cf = pair(S)
      wait(lost)
      assert.equal(6, calls)
      assert.equal(5000, #wait(cf.done))
      wait(port:stopListening())
    end)

  it("stops the producer when the connection is lost", function()
    local stopped = defer.Deferred()
    local S = protocol.Protocol:extend({})
    function S:connectionMade()
      self.transport:registerProducer({
        pauseProducing = function() end,
        resumeProducing = function() end,
        stopProducing = function() stopped:callback("stopped") end,
      }, true)
      assert.has_error(function()
        self.transport:registerProducer({}, true)
      end)
    end
    local port = pair(S, function(c) c.transport:loseConnection() end)
    assert.equal("stopped", wait(stopped))
    wait(port:stopListening())
  end)

  it("writes sequences, reports peer and host, and sets TCP options",
    function()
      local info = {}
      local S = protocol.Protocol:extend({})
      function S:connectionMade()
        local t = self.transport
        t:setTcpNoDelay(true)
        t:setTcpKeepAlive(true)
        info.nodelay, info.keepalive = t:getTcpNoDelay(), t:getTcpKeepAlive()
        info.peer, info.host = t:getPeer(), t:getHost()
        t:writeSequence({"a", "", "bc", "def"})
        t:loseConnection()
      end
      local port, cf = pair(S)
      assert.equal("abcdef", wait(cf.done))
      assert.is_true(info.nodelay)
      assert.is_true(info.keepalive)
      local pn = port:getHost().port
      assert.same({type = "TCP", host = "127.0.0.1", port = pn,
        "127.0.0.1", pn}, info.host)
      assert.equal(("IPv4Address(type='TCP', host='127.0.0.1', port=%d)")
        :format(pn), tostring(info.host))
      assert.equal("127.0.0.1", info.peer.host)
      wait(port:stopListening())
    end)

  it("answers getPeer and getHost in and after connectionLost, also when " ..
    "the peer reset the connection (the socket no longer knows its peer)",
    function()
      local seen = {}
      local lost = defer.Deferred()
      local S = protocol.Protocol:extend({})
      function S:connectionMade()
        seen.made = {self.transport:getPeer(), self.transport:getHost()}
      end
      function S:connectionLost(reason)
        seen.reason = reason
        seen.lost = {self.transport:getPeer(), self.transport:getHost()}
        reactor.callLater(0, lost.callback, lost, self.transport)
      end
      local port = reactor.listenTCP(0, protocol.Factory.forProtocol(S), nil,
        "127.0.0.1")
      local py = pyfile(([[
import socket, struct, time
s = socket.create_connection(("127.0.0.1", %d))
print(s.getsockname()[1], flush=True)
time.sleep(0.3)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
]]):format(port:getHost().port))
      local p = spawn("python3 " .. py)
      local t = wait(lost)
      local cport = tonumber(finish(p))
      local pn = port:getHost().port
      assert.is_truthy(seen.reason:check(reactor.ConnectionLost))
      for _, ends in ipairs({seen.made, seen.lost,
        {t:getPeer(), t:getHost()}}) do
        assert.same({type = "TCP", host = "127.0.0.1", port = cport,
          "127.0.0.1", cport}, ends[1])
        assert.same({type = "TCP", host = "127.0.0.1", port = pn,
          "127.0.0.1", pn}, ends[2])
      end
      assert.equal("<TCP transport (closed)>", tostring(t))
      os.remove(py)
      wait(port:stopListening())
    end)

  it("raises on bad writes and on closed-transport options, and ignores " ..
    "writes after the connection is lost", function()
      local errors = {}
      local lost = defer.Deferred()
      local S = protocol.Protocol:extend({})
      function S:connectionMade()
        local t = self.transport
        errors[1] = select(2, pcall(function() t:write(42) end))
        errors[2] = select(2, pcall(function() t:writeSequence({"a", 1}) end))
        errors[3] = select(2, pcall(function() t:write(nil) end))
        t:loseConnection()
        t:write("after loseConnection: still sent, as in Twisted")
      end
      function S:connectionLost(reason)
        local t = self.transport
        t:write("dropped")
        t:loseConnection()
        t:abortConnection()
        errors[4] = select(2, pcall(function() t:setTcpNoDelay(true) end))
        errors[5] = select(2, pcall(t.getTcpKeepAlive, t))
        lost:callback({reason})
      end
      local port, cf = pair(S)
      wait(lost)
      assert.equal("after loseConnection: still sent, as in Twisted",
        wait(cf.done))
      assert.matches("bad argument #1 to 'write' (string expected, got number)",
        errors[1], 1, true)
      assert.matches("bad argument #1 to 'writeSequence' (string expected " ..
        "at index 2, got number)", errors[2], 1, true)
      assert.matches("string expected, got nil", errors[3], 1, true)
      -- The method is named, through pcall too (was the bare message).
      assert.matches("calling 'setTcpNoDelay' on bad self (attempt to use " ..
        "a closed transport)", errors[4], 1, true)
      assert.matches("calling 'getTcpKeepAlive' on bad self (attempt to " ..
        "use a closed transport)", errors[5], 1, true)
      wait(port:stopListening())
    end)

  it("aborts with ConnectionAborted, dropping queued data", function()
    local lost = defer.Deferred()
    local S = protocol.Protocol:extend({})
    function S:connectionMade()
      self.transport:write(("z"):rep(8 * 1024 * 1024))
      self.transport:abortConnection()
    end
    function S:connectionLost(reason) lost:callback({reason}) end
    local port, cf = pair(S)
    local reason = wait(lost)[1]
    assert.is_truthy(reason:check(reactor.ConnectionAborted))
    assert.is_truthy(reason:check(reactor.ConnectionLost))
    assert.is_true(#wait(cf.done) < 8 * 1024 * 1024)
    wait(port:stopListening())
  end)

  it("pauses and resumes reading", function()
    local S = protocol.Protocol:extend({})
    local server
    function S:connectionMade()
      server = self
      self.got = {}
      self.transport:pauseProducing()
    end
    function S:dataReceived(d) self.got[#self.got + 1] = d end
    local port, cf = pair(S, function(c) c.transport:write("held") end)
    local d = defer.Deferred()
    reactor.callLater(0.2, function()
      d:callback(#server.got)
      server.transport:resumeProducing()
    end)
    assert.equal(0, wait(d))
    local d2 = defer.Deferred()
    local function poll()
      if #server.got > 0 then d2:callback(table.concat(server.got))
      else reactor.callLater(0.01, poll) end
    end
    poll()
    assert.equal("held", wait(d2))
    server.transport:loseConnection()
    wait(cf.done)
    wait(port:stopListening())
  end)

  it("gives readConnectionLost on EOF to a half-closeable protocol", function()
    local events = {}
    local lost = defer.Deferred()
    local S = protocol.Protocol:extend({})
    function S:dataReceived(d) events[#events + 1] = "data " .. d end
    function S:readConnectionLost()
      events[#events + 1] = "readConnectionLost"
      self.transport:write("reply after EOF")
      self.transport:loseConnection()
    end
    function S:connectionLost(r)
      events[#events + 1] = "connectionLost"
      lost:callback({r})
    end
    local port = reactor.listenTCP(0, protocol.Factory.forProtocol(S), nil,
      "127.0.0.1")
    local py = pyfile(([[
import socket
s = socket.create_connection(("127.0.0.1", %d))
s.sendall(b"question")
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    b = s.recv(1000)
    if not b: break
    got += b
print(got.decode())
]]):format(port:getHost().port))
    local p = spawn("python3 " .. py)
    wait(lost)
    assert.equal("reply after EOF\n", finish(p))
    assert.same({"data question", "readConnectionLost", "connectionLost"},
      events)
    os.remove(py)
    wait(port:stopListening())
  end)

  it("half-closes with loseWriteConnection and tells writeConnectionLost",
    function()
      local events = {}
      local lost = defer.Deferred()
      local S = protocol.Protocol:extend({})
      function S:connectionMade()
        self.transport:write("all I have")
        self.transport:loseWriteConnection()
      end
      function S:writeConnectionLost() events[#events + 1] = "wcl" end
      function S:dataReceived(d)
        events[#events + 1] = "data " .. d
        self.transport:write("not sent")
      end
      function S:readConnectionLost()
        events[#events + 1] = "rcl"
        self.transport:loseConnection()
      end
      function S:connectionLost(r) lost:callback({r}) end
      local port = reactor.listenTCP(0, protocol.Factory.forProtocol(S), nil,
        "127.0.0.1")
      local py = pyfile(([[
import socket
s = socket.create_connection(("127.0.0.1", %d))
got = b""
while True:
    b = s.recv(1000)
    if not b: break
    got += b
s.sendall(b"thanks for " + got)
s.shutdown(socket.SHUT_WR)
print(s.recv(100))
]]):format(port:getHost().port))
      local p = spawn("python3 " .. py)
      local reason = wait(lost)[1]
      assert.is_truthy(reason:check(reactor.ConnectionDone))
      assert.equal("b''\n", finish(p))
      assert.same({"wcl", "data thanks for all I have", "rcl"}, events)
      os.remove(py)
      wait(port:stopListening())
    end)

  -- Sockets open in this process (from /proc/<our pid>/fd; only sockets,
  -- since the popen's own pipe may or may not be in the listing yet).
  local function socketCount()
    local f = assert(io.open("/proc/self/stat"))
    local pid = f:read("n")
    f:close()
    local ls = io.popen("ls -l /proc/" .. pid .. "/fd")
    local n = 0
    for line in ls:lines() do
      if line:find("socket:", 1, true) then n = n + 1 end
    end
    ls:close()
    return n
  end

  it("closes once both halves are down, with one ConnectionDone on each " ..
    "side, and leaves no descriptor behind (issue 7 item 5)", function()
      -- Both ends are spindle protocols with readConnectionLost: the
      -- client half-closes first, the server answers and half-closes in
      -- readConnectionLost. Twisted closes each side once both of its
      -- halves are down.
      local rounds = 200
      local events = {}
      local function halfCloser(side, onLost)
        local P = protocol.Protocol:extend({})
        function P:connectionMade()
          self.got = {}
          if side == "client" then
            self.transport:write("question")
            self.transport:loseWriteConnection()
          end
        end
        function P:dataReceived(d) self.got[#self.got + 1] = d end
        function P:readConnectionLost()
          events[side .. " rcl"] = (events[side .. " rcl"] or 0) + 1
          if side == "server" then
            self.transport:write("answer to " .. table.concat(self.got))
            self.transport:loseWriteConnection()
          end
          -- Reading stays stopped while half open.
          self.transport:resumeProducing()
        end
        function P:writeConnectionLost()
          events[side .. " wcl"] = (events[side .. " wcl"] or 0) + 1
        end
        function P:connectionLost(reason)
          events[side .. " lost"] = (events[side .. " lost"] or 0) + 1
          onLost(self, reason)
        end
        return P
      end
      local serverLost = {}
      local S = halfCloser("server", function(_, reason)
        serverLost[#serverLost + 1] = reason
      end)
      local port = reactor.listenTCP(0, protocol.Factory.forProtocol(S), nil,
        "127.0.0.1")
      local portnum = port:getHost().port
      local function round()
        local d = defer.Deferred()
        local C = halfCloser("client", function(self, reason)
          d:callback({table.concat(self.got), reason})
        end)
        reactor.connectTCP("127.0.0.1", portnum,
          protocol.ClientFactory.forProtocol(C))
        return d
      end
      -- One round first: the descriptors the reactor opens once (its
      -- loop, its signal pipe) are then already there.
      local first = wait(round())
      assert.equal("answer to question", first[1])
      assert.is_truthy(first[2]:check(reactor.ConnectionDone))
      wait(H.sleep(0.05)) -- the server's side of it closes too
      local before = socketCount()
      for i = 2, rounds do
        local r = wait(round())
        assert.equal("answer to question", r[1])
        assert.is_truthy(r[2]:check(reactor.ConnectionDone), tostring(r[2]))
        if i % 50 == 0 then
          -- The server side closes in the same turn or the next.
          wait(H.sleep(0.01))
        end
      end
      wait(H.sleep(0.05))
      assert.equal(rounds, #serverLost)
      for _, reason in ipairs(serverLost) do
        assert.is_truthy(reason:check(reactor.ConnectionDone),
          tostring(reason))
      end
      for _, k in ipairs({"client rcl", "client wcl", "client lost",
        "server rcl", "server wcl", "server lost"}) do
        assert.equal(rounds, events[k], k)
      end
      assert.equal(before, socketCount())
      wait(port:stopListening())
    end)

  it("lets a write made in a callLater(0) right after loseConnection reach " ..
    "the peer, as Twisted does (issue 7 item 6)", function()
      local S = protocol.Protocol:extend({})
      function S:connectionMade()
        self.transport:write("first ")
        self.transport:loseConnection()
        reactor.callLater(0, function() self.transport:write("late") end)
      end
      local port = reactor.listenTCP(0, protocol.Factory.forProtocol(S), nil,
        "127.0.0.1")
      local cf = collector()
      reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
      assert.equal("first late", wait(cf.done))
      assert.is_truthy(cf.reason:check(reactor.ConnectionDone))
      -- The same from dataReceived, with nothing queued at the close.
      local E = protocol.Protocol:extend({})
      function E:dataReceived()
        self.transport:loseConnection()
        reactor.callLater(0, function() self.transport:write("after") end)
      end
      local port2 = reactor.listenTCP(0, protocol.Factory.forProtocol(E), nil,
        "127.0.0.1")
      local cf2 = collector(function(c) c.transport:write("go") end)
      reactor.connectTCP("127.0.0.1", port2:getHost().port, cf2)
      assert.equal("after", wait(cf2.done))
      wait(port:stopListening())
      wait(port2:stopListening())
    end)

  it("logs an error in dataReceived with its traceback and drops only that " ..
    "connection", function()
      local S = protocol.Protocol:extend({})
      local lost = {}
      function S:dataReceived(d)
        if d == "boom" then error("exploded in dataReceived") end
        self.transport:write(d)
      end
      function S:connectionLost(r) lost[#lost + 1] = r end
      local port = reactor.listenTCP(0, protocol.Factory.forProtocol(S), nil,
        "127.0.0.1")
      local n = port:getHost().port
      local bad = collector(function(c) c.transport:write("boom") end)
      local good = collector(function(c) c.transport:write("fine") end)
      good.protocol.dataReceived = function(self, d)
        self.chunks[#self.chunks + 1] = d
        self.transport:loseConnection()
      end
      local errors, got = H.loggedErrors(function()
        reactor.connectTCP("127.0.0.1", n, bad)
        reactor.connectTCP("127.0.0.1", n, good)
        wait(bad.done)
        return wait(good.done)
      end)
      assert.equal("fine", got)
      assert.equal(1, #errors)
      local tb = errors[1].failure:getTraceback()
      assert.matches("exploded in dataReceived", tb, 1, true)
      assert.matches("tcp_spec.lua", tb, 1, true)
      assert.matches("exploded in dataReceived", tostring(lost[1].value), 1,
        true)
      wait(port:stopListening())
    end)

  it("survives a protocol whose method lookup raises", function()
    local f = protocol.Factory()
    function f:buildProtocol()
      return setmetatable({
        makeConnection = function(p, t) rawset(p, "transport", t) end,
      }, {__index = function(_, k) error("strict protocol: no " .. k) end})
    end
    local port = reactor.listenTCP(0, f, nil, "127.0.0.1")
    local cf = collector(function(c) c.transport:write("data") end)
    local errors = H.loggedErrors(function()
      reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
      wait(cf.done)
    end)
    assert.is_true(#errors >= 1)
    assert.matches("strict protocol: no dataReceived",
      errors[1].failure:getTraceback(), 1, true)
    wait(port:stopListening())
  end)

  it("logs once, clearly, a buildProtocol that returns a non-protocol",
    function()
    local f = protocol.Factory:extend({
      buildProtocol = function() return 42 end})()
    local port = reactor.listenTCP(0, f, nil, "127.0.0.1")
    local cf = collector(function(c) c.transport:write("data") end)
    local errors = H.loggedErrors(function()
      reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
      wait(cf.done)
    end)
    assert.equal(1, #errors)
    assert.matches("buildProtocol returned a number value, not a protocol",
      errors[1].failure:getTraceback(), 1, true)
    wait(port:stopListening())
  end)

  it("logs an error in connectionMade and drops the connection", function()
    local S = protocol.Protocol:extend({
      connectionMade = function() error("no thanks") end})
    local port, cf
    local errors = H.loggedErrors(function()
      port, cf = pair(S)
      wait(cf.done)
    end)
    assert.equal(1, #errors)
    assert.matches("no thanks", errors[1].failure:getTraceback(), 1, true)
    wait(port:stopListening())
  end)
end)

describe("2,000 concurrent connections", function()
  it("each echo correctly through scripts/echo_server.lua", function()
    local py = pyfile([[
import os, selectors, socket, subprocess, sys, time
srv = subprocess.Popen([sys.argv[1], "scripts/echo_server.lua", "0",
                        "--timeout", "60"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
line = srv.stdout.readline()
port = int(line.rsplit(":", 1)[1])
N = 2000
socks = []
for i in range(N):
    s = socket.create_connection(("127.0.0.1", port))
    socks.append(s)
sel = selectors.DefaultSelector()
want, got = {}, {}
for i, s in enumerate(socks):
    msg = ("client %d says hello\n" % i).encode()
    s.sendall(msg)
    want[s] = msg
    got[s] = b""
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
left, deadline = N, time.time() + 30
while left and time.time() < deadline:
    for key, _ in sel.select(1):
        s = key.fileobj
        b = s.recv(4096)
        got[s] += b
        if len(got[s]) >= len(want[s]):
            sel.unregister(s)
            left -= 1
ok = sum(1 for s in socks if got[s] == want[s])
for s in socks: s.close()
srv.terminate()
srv.wait()
print("echoed", ok)
]])
    local p = spawn("ulimit -n $(ulimit -Hn); timeout 60 python3 " .. py ..
      " " .. require("spec.support.process").bin)
    assert.equal("echoed 2000\n", finish(p))
    os.remove(py)
  end)
end)

describe("scripts/", function()
  it("echo_client.lua talks to echo_server.lua --once; both exit", function()
    local srv = spawn("timeout 10 " .. H.SPINDLE ..
      " scripts/echo_server.lua 0 --once --timeout 8")
    local n = srv:read("l"):match(":(%d+)$")
    local out = finish(spawn("timeout 10 " .. H.SPINDLE ..
      " scripts/echo_client.lua 127.0.0.1 " .. n))
    assert.equal("receive: Hello, world!\nreceive: What a fine day it is.\n" ..
      "receive: Bye-bye!\nconnection lost: Connection was closed cleanly.\n",
      out)
    assert.equal("", finish(srv))
  end)

  it("echo_client.lua reports a refused connection", function()
    local out = finish(spawn("timeout 10 " .. H.SPINDLE ..
      " scripts/echo_client.lua 127.0.0.1 " .. freePort()))
    assert.matches("^connection failed: Connection was refused by other " ..
      "side: connecting to 127%.0%.0%.1:%d+", out)
  end)

  it("chat_server.lua relays each line to every other client", function()
    local srv = spawn("timeout 10 " .. H.SPINDLE ..
      " scripts/chat_server.lua 0 --timeout 2")
    local n = tonumber(srv:read("l"):match(":(%d+)$"))
    local py = pyfile(([[
import socket, time
def conn(name):
    s = socket.create_connection(("127.0.0.1", %d))
    s.settimeout(5)
    f = s.makefile("rb")
    assert f.readline() == b"What's your name?\r\n"
    s.sendall(name + b"\n")
    assert f.readline() == b"Welcome, " + name + b"!\r\n"
    return s, f
a, fa = conn(b"alice")
b, fb = conn(b"bob")
c, fc = conn(b"carol")
a.sendall(b"hi all\r\n")
print(fb.readline().decode().strip(), "|", fc.readline().decode().strip())
b.sendall(b"hello alice\n")
print(fa.readline().decode().strip(), "|", fc.readline().decode().strip())
]]):format(n))
    local out = finish(spawn("python3 " .. py))
    assert.equal("<alice> hi all | <alice> hi all\n" ..
      "<bob> hello alice | <bob> hello alice\n", out)
    assert.equal("", finish(srv))
    os.remove(py)
  end)
end)

describe("transport state fields", function()
  it("reports connected, disconnecting and disconnected as Twisted does",
    function()
      local seen = {}
      local lost = defer.Deferred()
      local S = protocol.Protocol:extend({})
      function S:connectionMade()
        local t = self.transport
        seen[1] = {t.connected, t.disconnecting, t.disconnected}
        t:loseConnection()
        seen[2] = {t.connected, t.disconnecting, t.disconnected}
      end
      function S:connectionLost()
        local t = self.transport
        seen[3] = {t.connected, t.disconnecting, t.disconnected}
        lost:callback(nil)
      end
      local f = protocol.Factory.forProtocol(S)
      local port = reactor.listenTCP(0, f, nil, "127.0.0.1")
      reactor.connectTCP("127.0.0.1", port:getHost().port, collector())
      wait(lost)
      assert.same({{true, false, false}, {true, true, false},
        {false, true, true}}, seen)
      wait(port:stopListening())
    end)
end)

describe("argument errors (issue 7 item 7)", function()
  it("name the transport method and count as t:method(...) does", function()
    local seen = defer.Deferred()
    local S = protocol.Protocol:extend({})
    function S:connectionMade()
      local t = self.transport
      local out = {}
      -- Through pcall Lua cannot see the call: the method is named from
      -- the transport's class.
      out[1] = select(2, pcall(t.write, t, 42))
      out[2] = select(2, pcall(t.write, 42))
      out[3] = select(2, pcall(t.writeSequence, t, {"a", 7}))
      out[4] = select(2, pcall(function() t:write(42) end))
      t:loseConnection()
      seen:callback(out)
    end
    local port = reactor.listenTCP(0, protocol.Factory.forProtocol(S), nil,
      "127.0.0.1")
    local cf = collector()
    reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
    local out = wait(seen)
    wait(cf.done)
    assert.equal("bad argument #1 to 'write' (string expected, got number)",
      out[1])
    assert.equal("calling 'write' on bad self (spindle.Transport " ..
      "expected, got number)", out[2])
    assert.equal("bad argument #1 to 'writeSequence' (string expected at " ..
      "index 2, got number)", out[3])
    assert.matches("bad argument #1 to 'write' %(string expected, got " ..
      "number%)$", out[4])
    wait(port:stopListening())
  end)

  it("listenTCP takes a port number written as a string", function()
    local port = reactor.listenTCP("0", protocol.Factory.forProtocol(
      protocol.Protocol), nil, "127.0.0.1")
    local n = port:getHost().port
    assert.is_true(n > 0)
    wait(port:stopListening())
    local ok, err = pcall(reactor.listenTCP, "http",
      protocol.Factory.forProtocol(protocol.Protocol))
    assert.is_false(ok)
    assert.matches("bad argument #1 to '.*listenTCP' %(port number " ..
      "expected, got string%)", err)
    ok, err = pcall(reactor.listenTCP, "70000",
      protocol.Factory.forProtocol(protocol.Protocol))
    assert.is_false(ok)
    assert.matches("0..65535", err)
  end)

  it("connectTCP refuses port 0 at the call", function()
    local cf = collector()
    local ok, err = pcall(reactor.connectTCP, "127.0.0.1", 0, cf)
    assert.is_false(ok)
    assert.matches("bad argument #2 to '.*connectTCP' %(port 0 cannot be " ..
      "connected to", err)
    assert.is_false(cf.done.called)
  end)
end)

describe("reactor.resolve", function()
  it("resolves a name to an IPv4 address without blocking", function()
    local d = reactor.resolve("localhost")
    assert.is_false(d.called)
    assert.equal("127.0.0.1", wait(d))
  end)

  it("returns an IP literal as it is", function()
    assert.equal("::1", wait(reactor.resolve("::1")))
  end)

  it("fails with DNSLookupError naming the name", function()
    local name = ("y"):rep(64) .. ".invalid"
    local f = H.waitForFailure(reactor.resolve(name))
    assert.is_truthy(f:check(reactor.DNSLookupError))
    assert.matches(name, f:getErrorMessage(), 1, true)
  end)
end)

describe("reactor.listenTCP options", function()
  it("lets two ports share a port number with reusePort", function()
    local f = protocol.Factory.forProtocol(protocol.Protocol)
    local p1 = reactor.listenTCP(0, f, {interface = "127.0.0.1",
      reusePort = true})
    local n = p1:getHost().port
    local p2 = reactor.listenTCP(n, f, nil, "127.0.0.1", {reusePort = true})
    assert.equal(n, p2:getHost().port)
    H.assertErrorType(reactor.CannotListenError, "EADDRINUSE",
      pcall(reactor.listenTCP, n, f, nil, "127.0.0.1"))
    wait(p1:stopListening())
    wait(p2:stopListening())
  end)

  it("rejects bad option values naming the argument", function()
    local f = protocol.Factory.forProtocol(protocol.Protocol)
    assert.has_error(function()
      reactor.listenTCP(0, f, {backlog = "x"})
    end, "bad argument #3 to 'listenTCP' (backlog must be a positive integer)")
    H.assertErrorType(reactor.CannotListenError, "Couldn't listen on nope:0",
      pcall(reactor.listenTCP, 0, f, 5, {interface = "nope"}))
  end)
end)
