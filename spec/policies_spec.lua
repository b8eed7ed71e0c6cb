-- spindle.policies: wrappers, throttling, connection limits, timeouts.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local defer = require("spindle.defer")
local task = require("spindle.task")
local policies = require("spindle.policies")
local H = require("spec.support.helper")

local Echo = protocol.Protocol:extend({})
function Echo:dataReceived(d) self.transport:write(d) end

-- A client that collects what it reads; f.lost fires with it on close.
local function client(port, onMade)
  local C = protocol.Protocol:extend({})
  local f = protocol.ClientFactory.forProtocol(C)
  f.made, f.lost, f.got = defer.Deferred(), defer.Deferred(), ""
  function C:connectionMade()
    f.proto = self
    if onMade then onMade(self) end
    f.made:callback(self)
  end
  function C:dataReceived(d)
    f.got = f.got .. d
    if f.want and #f.got >= f.want.n then
      local w = f.want
      f.want = nil
      w.d:callback(f.got)
    end
  end
  function C:connectionLost() f.lost:callback(f.got) end
  function f.expect(n)
    f.want = {n = n, d = defer.Deferred()}
    return f.want.d
  end
  reactor.connectTCP("127.0.0.1", port, f)
  return f
end

local function listen(factory)
  local port = reactor.listenTCP(0, factory, nil, "127.0.0.1")
  return port, port:getHost().port
end

describe("policies.WrappingFactory", function()
  it("composes: a wrapper of a wrapper still echoes, forwarding the " ..
     "transport", function()
    local inner = protocol.Factory.forProtocol(Echo)
    local wf = policies.WrappingFactory(policies.WrappingFactory(inner))
    local port, n = listen(wf)
    local c = client(n)
    H.wait(c.made)
    local got = c.expect(5)
    c.proto.transport:write("hello")
    assert.equal("hello", H.wait(got))
    local w = next(wf.protocols)
    assert.is_true(policies.ProtocolWrapper:isinstance(w))
    assert.equal("TCP", w:getPeer().type)
    assert.equal(w, w.wrappedProtocol.transport)
    c.proto.transport:loseConnection()
    H.wait(c.lost)
    H.wait(port:stopListening())
    assert.is_nil(next(wf.protocols))
    assert.equal(0, inner.numPorts)
  end)
end)

describe("policies.ThrottlingFactory", function()
  it("refuses connections past maxConnectionCount", function()
    local tf = policies.ThrottlingFactory(protocol.Factory.forProtocol(Echo),
      1)
    local port, n = listen(tf)
    local a = client(n)
    H.wait(a.made)
    local got = a.expect(2)
    a.proto.transport:write("ok")
    H.wait(got)
    local b = client(n)
    H.wait(b.lost)
    assert.equal(1, tf.connectionCount)
    a.proto.transport:loseConnection()
    H.wait(a.lost)
    assert.equal(0, tf.connectionCount)
    H.wait(port:stopListening())
  end)

  it("pauses reading once a second's read budget is spent", function()
    local clock = task.Clock()
    local tf = policies.ThrottlingFactory(protocol.Factory.forProtocol(Echo),
      nil, 100)
    tf.clock = clock
    local port, n = listen(tf)
    local c = client(n)
    H.wait(c.made)
    local got = c.expect(300)
    c.proto.transport:write(string.rep("x", 300))
    H.wait(got)
    assert.equal(300, tf.readThisSecond)
    clock:advance(1) -- 300 read of 100/s: reads paused for 2 s
    assert.equal(0, tf.readThisSecond)
    c.proto.transport:write("late")
    H.runFor(0.1)
    assert.equal(300, #c.got)
    clock:advance(2)
    got = c.expect(304)
    assert.equal(string.rep("x", 300) .. "late", H.wait(got))
    c.proto.transport:loseConnection()
    H.wait(c.lost)
    H.wait(port:stopListening())
    assert.same({}, clock:getDelayedCalls())
  end)
end)

describe("policies.LimitTotalConnectionsFactory", function()
  it("gives the overflow protocol to connections past the limit", function()
    local Busy = protocol.Protocol:extend({})
    function Busy:connectionMade()
      self.transport:write("busy")
      self.transport:loseConnection()
    end
    local f = policies.LimitTotalConnectionsFactory()
    f.protocol, f.connectionLimit, f.overflowProtocol = Echo, 1, Busy
    local port, n = listen(f)
    local a = client(n)
    H.wait(a.made)
    local b = client(n)
    assert.equal("busy", H.wait(b.lost))
    assert.equal(1, f.connectionCount)
    a.proto.transport:loseConnection()
    H.wait(a.lost)
    assert.equal(0, f.connectionCount)
    local c = client(n)
    H.wait(c.made)
    local got = c.expect(3)
    c.proto.transport:write("abc")
    assert.equal("abc", H.wait(got))
    c.proto.transport:loseConnection()
    H.wait(c.lost)
    H.wait(port:stopListening())
  end)
end)

describe("policies.TimeoutMixin", function()
  it("drops an idle connection, activity postponing it", function()
    local clock = task.Clock()
    local timedOut = 0
    local P = protocol.Protocol:extend({})
    policies.TimeoutMixin.mixInto(P)
    function P:connectionMade()
      self.clock = clock
      assert.is_nil(self:setTimeout(5))
    end
    function P:dataReceived(d)
      self:resetTimeout()
      self.transport:write(d)
    end
    function P:timeoutConnection()
      timedOut = timedOut + 1
      policies.TimeoutMixin.timeoutConnection(self)
    end
    function P:connectionLost() self:setTimeout(nil) end
    local port, n = listen(protocol.Factory.forProtocol(P))
    local c = client(n)
    H.wait(c.made)
    local got = c.expect(1)
    c.proto.transport:write("a")
    H.wait(got)
    clock:advance(4)
    got = c.expect(2)
    c.proto.transport:write("b") -- resets: 5 s from now
    H.wait(got)
    clock:advance(4)
    assert.equal(0, timedOut)
    assert.is_false(c.lost.called)
    clock:advance(1.5)
    assert.equal(1, timedOut)
    assert.equal("ab", H.wait(c.lost))
    assert.same({}, clock:getDelayedCalls())
    H.wait(port:stopListening())
  end)

  it("setTimeout(nil) cancels and returns the previous timeout", function()
    local clock = task.Clock()
    local obj = policies.mixin({clock = clock, transport = {
      loseConnection = function() error("should not time out") end}},
      policies.TimeoutMixin)
    obj:setTimeout(3)
    assert.equal(3, obj:setTimeout(nil))
    clock:advance(10)
    assert.same({}, clock:getDelayedCalls())
  end)
end)

describe("policies.TimeoutFactory", function()
  it("aborts a connection with no traffic", function()
    local clock = task.Clock()
    local tf = policies.TimeoutFactory(protocol.Factory.forProtocol(Echo), 2)
    tf.clock = clock
    local port, n = listen(tf)
    local c = client(n)
    H.wait(c.made)
    H.runFor(0.05)
    clock:advance(2)
    H.wait(c.lost)
    H.wait(port:stopListening())
  end)
end)
