-- spindle.endpoints: endpoint strings and the endpoints' Deferreds.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local defer = require("spindle.defer")
local endpoints = require("spindle.endpoints")
local H = require("spec.support.helper")

local function wait(d, timeout)
  return H.wait(d, timeout or 10)
end

local function echoFactory()
  local Echo = protocol.Protocol:extend({})
  function Echo:dataReceived(data) self.transport:write(data) end
  return protocol.Factory.forProtocol(Echo)
end

-- A client protocol that records what it reads; lost fires on close.
local function clientFactory()
  local C = protocol.Protocol:extend({})
  local f = protocol.Factory.forProtocol(C)
  f.lost = defer.Deferred()
  function C:connectionMade() self.made = true; self.got = "" end
  function C:dataReceived(d)
    self.got = self.got .. d
    self.transport:loseConnection()
  end
  function C:connectionLost() f.lost:callback(self.got) end
  return f
end

local function freePort()
  local port = reactor.listenTCP(0, echoFactory(), nil, "127.0.0.1")
  local n = port:getHost().port
  wait(port:stopListening())
  return n
end

describe("endpoints.serverFromString", function()
  it("parses tcp with interface and backlog", function()
    local ep = endpoints.serverFromString(reactor,
      "tcp:8080:interface=127.0.0.1:backlog=7")
    assert.is_true(endpoints.TCP4ServerEndpoint:isinstance(ep))
    assert.equal(8080, ep.port)
    assert.equal("127.0.0.1", ep.interface)
    assert.equal(7, ep.backlog)
    local ep2 = endpoints.serverFromString(reactor, "tcp:port=0")
    assert.equal(0, ep2.port)
    assert.equal("", ep2.interface)
    assert.equal(50, ep2.backlog)
  end)

  it("parses tcp6 with an escaped IPv6 interface", function()
    local ep = endpoints.serverFromString(reactor, "tcp6:0:interface=\\:\\:1")
    assert.is_true(endpoints.TCP6ServerEndpoint:isinstance(ep))
    assert.equal("::1", ep.interface)
  end)

  it("parses unix positional and address= forms", function()
    local ep = endpoints.serverFromString(reactor, "unix:/tmp/a.sock")
    assert.is_true(endpoints.UNIXServerEndpoint:isinstance(ep))
    assert.equal("/tmp/a.sock", ep.address)
    ep = endpoints.serverFromString(reactor,
      "unix:address=/tmp/b.sock:backlog=3")
    assert.equal("/tmp/b.sock", ep.address)
    assert.equal(3, ep.backlog)
  end)

  it("rejects unknown types naming what is supported", function()
    local ok, err = pcall(endpoints.serverFromString, reactor, "quic:1")
    assert.is_false(ok)
    assert.matches("Unknown endpoint type: 'quic'", err, 1, true)
    assert.matches("supported: tcp, tcp6, unix, ssl, tls", err, 1, true)
  end)

  it("rejects bad values naming them", function()
    assert.has_error(function()
      endpoints.serverFromString(reactor, "tcp:http")
    end, 'bad port "http" in endpoint description "tcp:http"')
    assert.has_error(function()
      endpoints.serverFromString(reactor, 42)
    end, "bad argument #2 to 'serverFromString' (string expected, got number)")
    assert.has_error(function()
      endpoints.serverFromString(nil, "tcp:0")
    end, "bad argument #1 to 'serverFromString' (reactor expected, got nil)")
  end)

  it("raises a bad or missing value at the caller's line", function()
    local src = debug.getinfo(1, "S").short_src
    local line = debug.getinfo(1, "l").currentline + 2
    local ok, err = pcall(function()
      endpoints.serverFromString(reactor, "tcp:abc") end)
    assert.is_false(ok)
    assert.equal(src .. ":" .. line .. ': bad port "abc" in endpoint ' ..
      'description "tcp:abc"', err)
    line = debug.getinfo(1, "l").currentline + 2
    ok, err = pcall(function()
      endpoints.serverFromString(reactor, "tcp:") end)
    assert.is_false(ok)
    assert.equal(src .. ":" .. line .. ': missing port in endpoint ' ..
      'description "tcp:"', err)
    -- an ssl: key file that cannot be read: its ssl.Error, located
    line = debug.getinfo(1, "l").currentline + 2
    ok, err = pcall(function()
      endpoints.serverFromString(reactor, "ssl:0:privateKey=/nonexist.key")
    end)
    H.assertErrorType(require("spindle.ssl").Error, "/nonexist.key", ok, err)
    assert.equal(1, err.message:find(src .. ":" .. line .. ": ", 1, true),
      err.message)
  end)

  it("blames the caller for an endpoint made without a reactor", function()
    local src = debug.getinfo(1, "S").short_src
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(function() endpoints.TCP4ServerEndpoint(nil, 0) end)
    assert.is_false(ok)
    assert.equal(src .. ":" .. line .. ": bad argument #1 to " ..
      "'TCP4ServerEndpoint' (reactor expected, got nil)", err)
    line = debug.getinfo(1, "l").currentline + 1
    ok, err = pcall(function() endpoints.TCP6ServerEndpoint(nil, 0) end)
    assert.is_false(ok)
    assert.equal(src .. ":" .. line .. ": bad argument #1 to " ..
      "'TCP6ServerEndpoint' (reactor expected, got nil)", err)
  end)
end)

describe("endpoints.clientFromString", function()
  it("parses tcp with keywords and positionally", function()
    local ep = endpoints.clientFromString(reactor,
      "tcp:host=127.0.0.1:port=8080:timeout=5")
    assert.is_true(endpoints.TCP4ClientEndpoint:isinstance(ep))
    assert.equal("127.0.0.1", ep.host)
    assert.equal(8080, ep.port)
    assert.equal(5, ep.timeout)
    ep = endpoints.clientFromString(reactor,
      "tcp:localhost:81:bindAddress=127.0.0.1")
    assert.equal("localhost", ep.host)
    assert.equal(81, ep.port)
    assert.same({"127.0.0.1", 0}, ep.bindAddress)
  end)

  it("parses unix", function()
    local ep = endpoints.clientFromString(reactor, "unix:path=/tmp/x:timeout=2")
    assert.is_true(endpoints.UNIXClientEndpoint:isinstance(ep))
    assert.equal("/tmp/x", ep.path)
    assert.equal(2, ep.timeout)
    assert.equal("/tmp/y",
      endpoints.clientFromString(reactor, "unix:/tmp/y").path)
  end)

  it("rejects an unknown type and a missing host", function()
    local ok, err = pcall(endpoints.clientFromString, reactor,
      "quic:host=a:port=1")
    assert.is_false(ok)
    assert.matches("supported: tcp, tcp6, unix, ssl, tls", err, 1, true)
    assert.has_error(function()
      endpoints.clientFromString(reactor, "tcp:port=80")
    end, 'missing host in "tcp:port=80"')
  end)

  it("raises a missing port at the caller's line, saying it is missing",
    function()
      local src = debug.getinfo(1, "S").short_src
      local line = debug.getinfo(1, "l").currentline + 2
      local ok, err = pcall(function()
        endpoints.clientFromString(reactor, "tcp:host=x") end)
      assert.is_false(ok)
      assert.equal(src .. ":" .. line .. ': missing port in endpoint ' ..
        'description "tcp:host=x"', err)
      -- also inside a tls: description's endpoint=
      line = debug.getinfo(1, "l").currentline + 2
      ok, err = pcall(function()
        endpoints.clientFromString(reactor, "tls:h:443:endpoint=tcp\\:h")
      end)
      assert.is_false(ok)
      assert.equal(src .. ":" .. line .. ': missing port in endpoint ' ..
        'description "tcp:h"', err)
      line = debug.getinfo(1, "l").currentline + 2
      ok, err = pcall(function()
        endpoints.clientFromString(reactor,
          "tls:h:443:trustRoots=/nonexist.crt")
      end)
      H.assertErrorType(require("spindle.ssl").Error, "/nonexist.crt", ok,
        err)
      assert.equal(1, err.message:find(src .. ":" .. line .. ": ", 1, true),
        err.message)
    end)
end)

describe("endpoint:listen and endpoint:connect", function()
  it("listen gives a Deferred of the Port and connect one of the protocol, " ..
    "after connectionMade", function()
      local server = endpoints.serverFromString(reactor,
        "tcp:0:interface=127.0.0.1")
      local port = wait(server:listen(echoFactory()))
      local n = port:getHost().port
      assert.is_true(n > 0)
      local cf = clientFactory()
      local client = endpoints.clientFromString(reactor,
        "tcp:host=127.0.0.1:port=" .. n)
      local proto = wait(client:connect(cf))
      assert.is_true(proto.made)
      assert.equal(cf, proto.factory)
      -- The one-shot makeConnection override is gone.
      assert.is_nil(rawget(proto, "makeConnection"))
      proto.transport:write("through endpoints")
      assert.equal("through endpoints", wait(cf.lost))
      wait(port:stopListening())
    end)

  it("listen fails with CannotListenError when the port is taken", function()
    local port = reactor.listenTCP(0, echoFactory(), nil, "127.0.0.1")
    local ep = endpoints.TCP4ServerEndpoint(reactor, port:getHost().port, nil,
      "127.0.0.1")
    local f = H.waitForFailure(ep:listen(echoFactory()))
    assert.is_truthy(f:check(reactor.CannotListenError))
    wait(port:stopListening())
  end)

  it("connect fails with ConnectionRefusedError", function()
    local ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", freePort())
    local f = H.waitForFailure(ep:connect(clientFactory()))
    assert.is_truthy(f:check(reactor.ConnectionRefusedError))
  end)

  it("connect fails when the factory builds no protocol", function()
    local port = reactor.listenTCP(0, echoFactory(), nil, "127.0.0.1")
    local f = protocol.Factory()
    function f:buildProtocol() return nil end
    local ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1",
      port:getHost().port)
    local failure = H.waitForFailure(ep:connect(f))
    assert.is_truthy(failure:check(reactor.ConnectError))
    wait(port:stopListening())
  end)

  it("cancelling connect stops the attempt with ConnectingCancelledError",
    function()
      local ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", freePort())
      local d = ep:connect(clientFactory())
      d:cancel()
      local f = H.waitForFailure(d)
      assert.is_truthy(f:check(reactor.ConnectingCancelledError))
      -- Let the abandoned attempt's close callbacks run.
      H.runFor(0.05)
    end)

  it("unix listen fails with CannotListenError ENOENT when the directory " ..
    "does not exist", function()
      local path = os.tmpname()
      os.remove(path)
      local ep = endpoints.serverFromString(reactor,
        "unix:" .. path .. ".d/sock")
      local f = H.waitForFailure(ep:listen(echoFactory()))
      assert.is_truthy(f:check(reactor.CannotListenError))
      assert.equal("ENOENT", f.value.code)
    end)

  it("listens and connects over unix endpoints", function()
    local path = os.tmpname()
    os.remove(path)
    local port = wait(endpoints.serverFromString(reactor, "unix:" .. path)
      :listen(echoFactory()))
    local cf = clientFactory()
    local proto = wait(endpoints.clientFromString(reactor,
      "unix:path=" .. path):connect(cf))
    proto.transport:write("unix endpoint")
    assert.equal("unix endpoint", wait(cf.lost))
    wait(port:stopListening())
  end)
end)

describe("endpoints.HostnameEndpoint", function()
  -- A reactor whose connectTCP to `dead` never completes (a SYN into a
  -- black hole) until stopped; anything else goes to the real reactor.
  local function blackholeReactor(dead)
    local attempts = {}
    local fake = setmetatable({}, {__index = reactor})
    function fake.connectTCP(host, port, factory, ...)
      attempts[#attempts + 1] = {host = host, at = reactor.seconds()}
      if host ~= dead then
        return reactor.connectTCP(host, port, factory, ...)
      end
      local c = {state = "connecting"}
      function c.stopConnecting()
        c.state = "disconnected"
        attempts.stopped = (attempts.stopped or 0) + 1
        factory:clientConnectionFailed(c, reactor.UserError("stopped"))
      end
      factory:startedConnecting(c)
      return c
    end
    function fake.callLater(_, ...) return reactor.callLater(...) end
    return fake, attempts
  end

  it("connects over IPv4 when the IPv6 address is dead, without " ..
     "waiting for its timeout, and cancels the loser", function()
    local port = reactor.listenTCP(0, echoFactory(), nil, "127.0.0.1")
    local n = port:getHost().port
    local fake, attempts = blackholeReactor("2001:db8::1")
    local ep = endpoints.HostnameEndpoint(fake, "dual.example", n, 30)
    function ep._nameResolution(_, host, p)
      assert.equal("dual.example", host)
      return defer.succeed({
        {family = "INET6", host = "2001:db8::1", port = p},
        {family = "INET", host = "127.0.0.1", port = p},
      })
    end
    local cf = clientFactory()
    local proto = wait(ep:connect(cf), 5)
    assert.is_true(proto.made)
    assert.equal(2, #attempts)
    assert.equal("2001:db8::1", attempts[1].host)
    assert.equal("127.0.0.1", attempts[2].host)
    assert.equal(1, attempts.stopped) -- the IPv6 attempt was cancelled
    -- the IPv4 attempt waited the attempt delay (0.3 s), not 30 s
    assert.is_true(attempts[2].at - attempts[1].at >= 0.25)
    proto.transport:write("x")
    assert.equal("x", wait(cf.lost))
    wait(port:stopListening())
    H.assertNoDelayedCalls()
  end)

  it("tries the next address at once when one is refused", function()
    local port = reactor.listenTCP(0, echoFactory(), nil, "127.0.0.1")
    local n = port:getHost().port
    local fake, attempts = blackholeReactor(nil)
    local ep = endpoints.HostnameEndpoint(fake, "h", n, 30, nil, 10)
    function ep._nameResolution(_, _, p)
      return defer.succeed({
        {family = "INET6", host = "::1", port = p},   -- refused
        {family = "INET", host = "127.0.0.1", port = p},
      })
    end
    local proto = wait(ep:connect(clientFactory()), 5)
    assert.equal(2, #attempts)
    proto.transport:loseConnection()
    wait(port:stopListening())
    H.assertNoDelayedCalls()
  end)

  it("interleaves the families, first family first (RFC 8305)", function()
    local fake, attempts = blackholeReactor("none")
    local ep = endpoints.HostnameEndpoint(fake, "h", freePort(), 30, nil,
      0.01)
    function ep._nameResolution(_, _, p)
      return defer.succeed({
        {family = "INET6", host = "::1", port = p},
        {family = "INET6", host = "::1", port = p},
        {family = "INET", host = "127.0.0.1", port = p},
      })
    end
    local f = H.waitForFailure(ep:connect(clientFactory()), 5)
    assert.truthy(f:check(reactor.ConnectionRefusedError))
    assert.same({"::1", "127.0.0.1", "::1"},
      {attempts[1].host, attempts[2].host, attempts[3].host})
    H.assertNoDelayedCalls()
  end)

  it("resolves a real name, and fails with DNSLookupError", function()
    local port = reactor.listenTCP(0, echoFactory(), nil, "127.0.0.1")
    local n = port:getHost().port
    local ep = endpoints.clientFromString(reactor, "tcp:localhost:" .. n)
    assert.is_true(endpoints.HostnameEndpoint:isinstance(ep))
    local proto = wait(ep:connect(clientFactory()))
    proto.transport:loseConnection()
    wait(port:stopListening())
    local bad = endpoints.HostnameEndpoint(reactor, "nonexistent.invalid", 80)
    assert.truthy(H.waitForFailure(bad:connect(clientFactory()), 10):check(
      reactor.DNSLookupError))
  end)

  it("cancels every attempt when its Deferred is cancelled", function()
    local fake, attempts = blackholeReactor("2001:db8::1")
    local ep = endpoints.HostnameEndpoint(fake, "h", 1, 30, nil, 0.05)
    function ep._nameResolution(_, _, p)
      return defer.succeed({{family = "INET6", host = "2001:db8::1",
        port = p}, {family = "INET6", host = "2001:db8::1", port = p}})
    end
    local d = ep:connect(clientFactory())
    H.runFor(0.1)
    d:cancel()
    assert.truthy(H.waitForFailure(d):check(reactor.ConnectingCancelledError))
    assert.equal(2, attempts.stopped)
    H.assertNoDelayedCalls()
  end)
end)

describe("endpoints.connectProtocol", function()
  it("connects one given protocol instance", function()
    local port = reactor.listenTCP(0, echoFactory(), nil, "127.0.0.1")
    local p = protocol.Protocol()
    local got = defer.Deferred()
    function p.dataReceived(_, d) got:callback(d) end
    local ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1",
      port:getHost().port)
    assert.equal(p, wait(endpoints.connectProtocol(ep, p)))
    p.transport:write("one")
    assert.equal("one", wait(got))
    p.transport:loseConnection()
    wait(port:stopListening())
  end)
end)

describe("endpoints.HostnameEndpoint attempts failing at once", function()
  it("keeps one stagger timer when an attempt fails synchronously",
     function()
    local port = reactor.listenTCP(0, echoFactory(), nil, "127.0.0.1")
    local n = port:getHost().port
    local fake = setmetatable({}, {__index = reactor})
    local calls = 0
    function fake.connectTCP(host, ...)
      calls = calls + 1
      if host == "bad" then error(reactor.ConnectError("bad address")) end
      return reactor.connectTCP(host, ...)
    end
    local timers = 0
    function fake.callLater(_, ...)
      timers = timers + 1
      return reactor.callLater(...)
    end
    local ep = endpoints.HostnameEndpoint(fake, "h", n, 30, nil, 5)
    function ep._nameResolution(_, _, p)
      return defer.succeed({{family = "INET", host = "bad", port = p},
        {family = "INET", host = "127.0.0.1", port = p},
        {family = "INET", host = "127.0.0.1", port = p}})
    end
    local proto = wait(ep:connect(clientFactory()))
    assert.equal(2, calls)
    assert.equal(1, timers)
    proto.transport:loseConnection()
    wait(port:stopListening())
    H.assertNoDelayedCalls()
  end)
end)
