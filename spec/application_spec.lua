-- spindle.application (services, ClientService) and
-- protocol.ReconnectingClientFactory.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local defer = require("spindle.defer")
local task = require("spindle.task")
local endpoints = require("spindle.endpoints")
local application = require("spindle.application")
local H = require("spec.support.helper")

-- A server on 127.0.0.1 whose connections can all be dropped.
local function server(port)
  local S = protocol.Protocol:extend({})
  local f = protocol.Factory.forProtocol(S)
  f.conns = {}
  function S:connectionMade() f.conns[self] = true end
  function S:connectionLost() f.conns[self] = nil end
  function S:dataReceived(d) self.transport:write(d) end
  f.port = reactor.listenTCP(port or 0, f, nil, "127.0.0.1")
  function f.stop()
    for c in pairs(f.conns) do c.transport:loseConnection() end
    return f.port:stopListening()
  end
  return f, f.port:getHost().port
end

local function freePort()
  local f, port = server()
  H.wait(f.stop())
  return port
end

describe("protocol.ReconnectingClientFactory", function()
  it("has Twisted's defaults", function()
    local f = protocol.ReconnectingClientFactory()
    assert.equal(1.0, f.initialDelay)
    assert.equal(3600, f.maxDelay)
    assert.near(math.exp(1), f.factor, 1e-12)
    assert.near(0.11962656472, f.jitter, 1e-12)
    assert.is_nil(f.maxRetries)
  end)

  it("reconnects after the server is stopped and restarted, its delays " ..
     "growing by the factor", function()
    local srv, port = server()
    local clock = task.Clock()
    local events = {}
    local next -- Deferred fired by the next connection event
    local function signal(what)
      events[#events + 1] = what
      local d = next
      next = nil
      if d then d:callback(what) end
    end
    local P = protocol.Protocol:extend({})
    function P:connectionMade()
      self.factory:resetDelay()
      signal("made")
    end
    local F = protocol.ReconnectingClientFactory:extend({protocol = P})
    function F:clientConnectionFailed(c, r)
      protocol.ReconnectingClientFactory.clientConnectionFailed(self, c, r)
      signal("failed")
    end
    function F:clientConnectionLost(c, r)
      protocol.ReconnectingClientFactory.clientConnectionLost(self, c, r)
      signal("lost")
    end
    local f = F()
    f.clock, f.jitter, f.factor = clock, 0, 2
    next = defer.Deferred()
    reactor.connectTCP("127.0.0.1", port, f)
    assert.equal("made", H.wait(next))

    -- The server goes away: lost, then refused twice, each wait doubling.
    next = defer.Deferred()
    srv.stop()
    assert.equal("lost", H.wait(next))
    local delays = {}
    local function pendingDelay()
      local calls = clock:getDelayedCalls()
      assert.equal(1, #calls)
      return calls[1]:getTime() - clock:seconds()
    end
    for _ = 1, 2 do
      local delay = pendingDelay()
      delays[#delays + 1] = delay
      next = defer.Deferred()
      clock:advance(delay)
      assert.equal("failed", H.wait(next))
    end
    delays[#delays + 1] = pendingDelay()
    assert.same({2, 4, 8}, delays)
    assert.equal(3, f.retries)

    -- Back on the same port: the next retry connects and resets the delay.
    local srv2 = server(port)
    next = defer.Deferred()
    clock:advance(8)
    assert.equal("made", H.wait(next))
    assert.equal(1.0, f.delay)
    assert.equal(0, f.retries)
    f:stopTrying()
    local lostD = defer.Deferred()
    next = lostD
    H.wait(srv2.stop())
    assert.equal("lost", H.wait(lostD))
    assert.same({}, clock:getDelayedCalls())
  end)

  it("stops after maxRetries and after stopTrying", function()
    local port = freePort()
    local clock = task.Clock()
    local failed = 0
    local next
    local F = protocol.ReconnectingClientFactory:extend({
      protocol = protocol.Protocol})
    function F:clientConnectionFailed(c, r)
      protocol.ReconnectingClientFactory.clientConnectionFailed(self, c, r)
      failed = failed + 1
      local d = next
      next = nil
      d:callback(nil)
    end
    local f = F()
    f.clock, f.maxRetries = clock, 2
    next = defer.Deferred()
    reactor.connectTCP("127.0.0.1", port, f)
    H.wait(next)
    for _ = 1, 2 do
      next = defer.Deferred()
      clock:advance(clock:getDelayedCalls()[1]:getTime())
      H.wait(next)
    end
    assert.equal(3, failed)
    assert.same({}, clock:getDelayedCalls())

    local g = F()
    g.clock = clock
    next = defer.Deferred()
    reactor.connectTCP("127.0.0.1", port, g)
    H.wait(next)
    assert.equal(1, #clock:getDelayedCalls())
    g:stopTrying()
    assert.same({}, clock:getDelayedCalls())
    assert.is_false(g.continueTrying)
  end)
end)

describe("application.MultiService", function()
  it("starts and stops children in order, reverse order", function()
    local log = {}
    local S = application.Service:extend({})
    function S:startService()
      application.Service.startService(self)
      log[#log + 1] = "start " .. self.name
    end
    function S:stopService()
      application.Service.stopService(self)
      log[#log + 1] = "stop " .. self.name
    end
    local ms = application.MultiService()
    local a, b = S(), S()
    a:setName("a")
    b:setName("b")
    a:setServiceParent(ms)
    b:setServiceParent(ms)
    assert.equal(b, ms:getServiceNamed("b"))
    local c = S()
    c:setName("a")
    assert.has_error(function() c:setServiceParent(ms) end)
    ms:privilegedStartService()
    ms:startService()
    assert.is_true(a.running)
    H.wait(ms:stopService())
    assert.same({"start a", "start b", "stop b", "stop a"}, log)
    assert.is_false(b.running)
    assert.has_error(function() a:setName("x") end)
  end)

  it("starts a child added while running", function()
    local ms = application.MultiService()
    ms:startService()
    local s = application.Service()
    s:setServiceParent(ms)
    assert.is_true(s.running)
    s:disownServiceParent()
    assert.is_false(s.running)
    assert.is_nil(s.parent)
  end)
end)

describe("application.TCPServer and TimerService", function()
  it("listen while running and stop listening when stopped", function()
    local F = protocol.Factory.forProtocol(protocol.Protocol:extend({
      connectionMade = function(self)
        self.transport:write("hi")
        self.transport:loseConnection()
      end}))
    local ms = application.MultiService()
    local ts = application.TCPServer(0, F, 50, "127.0.0.1")
    ts:setServiceParent(ms)
    local ticks = 0
    local clock = task.Clock()
    local timer = application.TimerService(1, function() ticks = ticks + 1 end)
    timer.clock = clock
    timer:setServiceParent(ms)
    ms:privilegedStartService()
    ms:startService()
    assert.equal(1, ticks)
    clock:advance(1)
    assert.equal(2, ticks)
    local port = ts._port:getHost().port
    local ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    local got = defer.Deferred()
    local C = protocol.Protocol:extend({})
    function C:dataReceived(d) got:callback(d) end
    H.wait(ep:connect(protocol.Factory.forProtocol(C)))
    assert.equal("hi", H.wait(got))
    H.wait(ms:stopService())
    clock:advance(5)
    assert.equal(2, ticks)
    H.waitForFailure(ep:connect(protocol.Factory.forProtocol(C)))
  end)
end)

describe("application.StreamServerEndpointService", function()
  it("listens on the endpoint and stops listening", function()
    local F = protocol.Factory.forProtocol(protocol.Protocol)
    local s = application.StreamServerEndpointService(
      endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1"), F)
    s:startService()
    local port = H.wait(s._waitingForPort)
    assert.is_true(port:getHost().port > 0)
    H.wait(s:stopService())
    assert.is_false(s.running)
  end)
end)

describe("application.Application", function()
  it("is started by reactor.run and stopped at shutdown", function()
    local out = H.runScript([[
      local reactor = require("spindle.reactor")
      local application = require("spindle.application")
      local app = application.Application("demo")
      local S = application.Service:extend({})
      function S:startService()
        application.Service.startService(self)
        print("started", self.parent.name)
        reactor.callLater(0, reactor.stop)
      end
      function S:stopService()
        application.Service.stopService(self)
        local d = require("spindle.defer").Deferred()
        reactor.callLater(0.05, function() print("stopped"); d:callback() end)
        return d
      end
      S():setServiceParent(app)
      reactor.addSystemEventTrigger("after", "shutdown", print, "after")
      reactor.run()
      print("returned")
    ]])
    assert.equal("started\tdemo\nstopped\nafter\nreturned\n", out)
  end)
end)

describe("application.ClientService", function()
  it("has Twisted's backoff policy", function()
    local policy = application.backoffPolicy(nil, nil, nil,
      function() return 0 end)
    assert.equal(1.5, policy(1))
    assert.equal(2.25, policy(2))
    assert.equal(60, policy(50))
    assert.equal(60, policy(1e9))
  end)

  it("whenConnected fails after N failures", function()
    local port = freePort()
    local clock = task.Clock()
    local ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    local cs = application.ClientService(ep,
      protocol.Factory.forProtocol(protocol.Protocol),
      function() return 1 end, clock)
    local d3 = cs:whenConnected(3)
    local d1 = cs:whenConnected(1)
    local dnone = cs:whenConnected()
    cs:startService()
    local f1 = H.waitForFailure(d1)
    assert.truthy(f1:check(reactor.ConnectionRefusedError))
    assert.is_false(d3.called)
    for _ = 1, 2 do
      assert.equal(1, #clock:getDelayedCalls())
      clock:advance(1)
      if not d3.called then H.runFor(0.05) end
    end
    local f3 = H.waitForFailure(d3)
    assert.truthy(f3:check(reactor.ConnectionRefusedError))
    assert.is_false(dnone.called)
    H.wait(cs:stopService())
    assert.truthy(H.waitForFailure(dnone):check(defer.CancelledError))
    assert.same({}, clock:getDelayedCalls())
    assert.truthy(H.waitForFailure(cs:whenConnected()):check(
      defer.CancelledError))
  end)

  it("connects, reconnects after a loss, runs prepareConnection, and " ..
     "stops", function()
    local srv, port = server()
    local clock = task.Clock()
    local prepared = 0
    local ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    local lost = 0
    local P = protocol.Protocol:extend({})
    function P:connectionLost() lost = lost + 1 end
    local cs = application.ClientService(ep, protocol.Factory.forProtocol(P),
      function(n) return n * 10 end, clock, function(p)
        prepared = prepared + 1
        p.prepared = true
      end)
    cs:startService()
    local p1 = H.wait(cs:whenConnected())
    assert.is_true(p1.prepared)
    assert.equal(p1, H.wait(cs:whenConnected()))
    -- the server drops it: one retry scheduled, 10 s (attempt 1)
    for c in pairs(srv.conns) do c.transport:loseConnection() end
    while lost == 0 do H.runFor(0.02) end
    local again = cs:whenConnected()
    assert.equal(1, lost)
    assert.equal(10, clock:getDelayedCalls()[1]:getTime() - clock:seconds())
    clock:advance(10)
    local p2 = H.wait(again)
    assert.are_not.equal(p1, p2)
    assert.equal(2, prepared)
    H.wait(cs:stopService())
    assert.equal(2, lost)
    assert.is_false(cs.running)
    H.wait(srv.stop())
  end)

  it("stopService cancels a pending attempt", function()
    local clock = task.Clock()
    -- An endpoint whose connect never finishes until cancelled.
    local cancelled = false
    local ep = {connect = function()
      return defer.Deferred(function() cancelled = true end)
    end}
    local cs = application.ClientService(ep,
      protocol.Factory.forProtocol(protocol.Protocol), nil, clock)
    cs:startService()
    local w = cs:whenConnected()
    H.wait(cs:stopService())
    assert.is_true(cancelled)
    assert.truthy(H.waitForFailure(w):check(defer.CancelledError))
    assert.same({}, clock:getDelayedCalls())
  end)
end)

describe("application.ClientService prepareConnection", function()
  it("counts a rejection as a failed attempt and closes that connection",
     function()
    local srv, port = server()
    local clock = task.Clock()
    local ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    local lost = defer.Deferred()
    local P = protocol.Protocol:extend({})
    function P:connectionLost() lost:callback(nil) end
    local cs = application.ClientService(ep, protocol.Factory.forProtocol(P),
      function() return 5 end, clock, function() error("not healthy") end)
    local w = cs:whenConnected(1)
    cs:startService()
    local f = H.waitForFailure(w)
    assert.truthy(tostring(f.value):find("not healthy", 1, true))
    H.wait(lost)
    assert.equal(1, #clock:getDelayedCalls())
    H.wait(cs:stopService())
    assert.same({}, clock:getDelayedCalls())
    H.wait(srv.stop())
  end)
end)
