-- spindle.reactor: the loop core (run, stop, system events, callLater,
-- runUntilComplete, callFromThread). Real timers with small delays: the
-- reactor is what is under test here (task.Clock is tested in task_spec).
local H = require("spec.support.helper")
local reactor = require("spindle.reactor")
local defer = require("spindle.defer")
local failure = require("spindle.failure")

-- Run the reactor until stop() is called by the test's own callbacks;
-- a watchdog fails the test after H.TIMEOUT seconds.
local function runUntilStopped()
  local timedOut = false
  local watchdog = reactor.callLater(H.TIMEOUT, function()
    timedOut = true
    reactor.stop()
  end)
  local errors = H.loggedErrors(reactor.run)
  if watchdog:active() then watchdog:cancel() end
  assert.is_false(timedOut, "the reactor was not stopped in time")
  return errors
end

-- No test may leave timers behind for the next one.
after_each(H.assertNoDelayedCalls)

local assertErrorType = H.assertErrorType

describe("reactor", function()
  it("is strict about field names", function()
    local ok, err = pcall(function() return reactor.calllater end)
    assert.is_false(ok)
    assert.truthy(err:find("did you mean 'callLater'", 1, true), err)
  end)

  it("exports its error types", function()
    assert.are.equal("AlreadyCalled", reactor.AlreadyCalled.__name)
    assert.are.equal("ReactorNotRunning", reactor.ReactorNotRunning.__name)
    assert.are.equal("TimeoutError", reactor.TimeoutError.__name)
  end)
end)

describe("reactor.run", function()
  it("runs until stop() and returns", function()
    local c = H.counter()
    reactor.callLater(0, c)
    reactor.callLater(0.01, reactor.stop)
    assert.are.same({}, runUntilStopped())
    assert.are.equal(1, c.calls)
    assert.is_false(reactor.running)
  end)

  it("raises ReactorAlreadyRunning when called while running", function()
    local ok, err
    reactor.callLater(0, function()
      ok, err = pcall(reactor.run)
      reactor.stop()
    end)
    runUntilStopped()
    assertErrorType(reactor.ReactorAlreadyRunning, "already running", ok,
      err)
  end)

  it("may be called again after it returned", function()
    for round = 1, 3 do
      local c = H.counter()
      reactor.callLater(0.001 * round, c, round)
      reactor.callLater(0.002 * round, reactor.stop)
      runUntilStopped()
      assert.are.equal(1, c.calls)
      assert.are.equal(round, c.args[1][1])
    end
  end)

  it("keeps pending calls for the next run", function()
    local c = H.counter()
    reactor.callLater(0, reactor.stop)
    local later = reactor.callLater(0.03, c)
    runUntilStopped()
    assert.are.equal(0, c.calls)
    assert.is_true(later:active())
    reactor.callLater(0.05, reactor.stop)
    runUntilStopped()
    assert.are.equal(1, c.calls)
  end)

  it("fires startup triggers in phase order when it starts", function()
    local order = {}
    reactor.addSystemEventTrigger("after", "startup", function()
      order[#order + 1] = "after:" .. tostring(reactor.running)
    end)
    reactor.addSystemEventTrigger("during", "startup", function()
      order[#order + 1] = "during"
    end)
    reactor.addSystemEventTrigger("before", "startup", function()
      order[#order + 1] = "before:" .. tostring(reactor.running)
    end)
    reactor.callLater(0, reactor.stop)
    runUntilStopped()
    assert.are.same({"before:false", "during", "after:true"}, order)
  end)

  it("fires each trigger once", function()
    local c = H.counter()
    reactor.addSystemEventTrigger("after", "startup", c)
    reactor.addSystemEventTrigger("after", "shutdown", c)
    for _ = 1, 2 do
      reactor.callLater(0, reactor.stop)
      runUntilStopped()
    end
    assert.are.equal(2, c.calls)
  end)

  it("logs unhandled failed Deferreds once it stops", function()
    reactor.callLater(0, function()
      local d = defer.Deferred()
      d:errback("left unhandled")
      reactor.stop()
    end)
    local errors = runUntilStopped()
    assert.are.equal(1, #errors)
    assert.truthy(tostring(errors[1].why):find("Unhandled error in Deferred",
      1, true))
    assert.are.equal("left unhandled", errors[1].failure.value)
  end)
end)

describe("reactor.stop", function()
  it("raises ReactorNotRunning when the reactor is not running", function()
    assertErrorType(reactor.ReactorNotRunning, "isn't running",
      pcall(reactor.stop))
  end)

  it("raises ReactorNotRunning when the reactor is already stopping",
    function()
      local ok, err
      reactor.callLater(0, function()
        reactor.stop()
        ok, err = pcall(reactor.stop)
      end)
      runUntilStopped()
      assertErrorType(reactor.ReactorNotRunning, nil, ok, err)
    end)

  it("returns at once, then runs before, during and after triggers",
    function()
      local order = {}
      local function mark(s) order[#order + 1] = s end
      reactor.addSystemEventTrigger("after", "shutdown", function()
        mark("after:" .. tostring(reactor.running))
      end)
      reactor.addSystemEventTrigger("during", "shutdown", mark, "during")
      reactor.addSystemEventTrigger("before", "shutdown", function()
        mark("before:" .. tostring(reactor.running))
      end)
      reactor.callLater(0, function()
        reactor.stop()
        mark("stop returned")
      end)
      runUntilStopped()
      assert.are.same({"stop returned", "before:true", "during",
        "after:false"}, order)
    end)

  it("waits for a Deferred returned by a before-shutdown trigger",
    function()
      local order = {}
      reactor.addSystemEventTrigger("before", "shutdown", function()
        local d = defer.Deferred()
        reactor.callLater(0.05, function()
          order[#order + 1] = "deferred fired"
          d:callback(nil)
        end)
        return d
      end)
      reactor.addSystemEventTrigger("during", "shutdown", function()
        order[#order + 1] = "during"
      end)
      local t0 = reactor.seconds()
      reactor.callLater(0, reactor.stop)
      runUntilStopped()
      assert.are.same({"deferred fired", "during"}, order)
      assert.is_true(reactor.seconds() - t0 >= 0.05)
    end)

  it("logs an error raised by a trigger and goes on", function()
    local c = H.counter()
    reactor.addSystemEventTrigger("before", "shutdown", error, "trigger boom")
    reactor.addSystemEventTrigger("after", "shutdown", c)
    reactor.callLater(0, reactor.stop)
    local errors = runUntilStopped()
    assert.are.equal(1, c.calls)
    assert.are.equal(1, #errors)
    assert.are.equal("trigger boom", errors[1].failure.value)
  end)
end)

describe("system events", function()
  it("keeps running false until a before-startup Deferred fires",
    function()
      local seen = {}
      local d = defer.Deferred()
      reactor.addSystemEventTrigger("before", "startup", function()
        reactor.callLater(0.01, function()
          seen[#seen + 1] = "fire:" .. tostring(reactor.running)
          d:callback(nil)
        end)
        return d
      end)
      reactor.addSystemEventTrigger("after", "startup", function()
        seen[#seen + 1] = "after:" .. tostring(reactor.running)
        reactor.stop()
      end)
      runUntilStopped()
      assert.are.same({"fire:false", "after:true"}, seen)
    end)

  it("waits for every Deferred of the before phase, failed ones included",
    function()
      local order = {}
      local d1, d2 = defer.Deferred(), defer.Deferred()
      reactor.addSystemEventTrigger("before", "shutdown", function()
        return d1
      end)
      reactor.addSystemEventTrigger("before", "shutdown", function()
        return d2
      end)
      reactor.addSystemEventTrigger("during", "shutdown", function()
        order[#order + 1] = "during"
      end)
      reactor.callLater(0, function()
        reactor.stop()
        reactor.callLater(0.01, function()
          order[#order + 1] = "d2"
          d2:errback("d2 failed")
        end)
        reactor.callLater(0.02, function()
          order[#order + 1] = "d1"
          d1:callback(nil)
        end)
      end)
      runUntilStopped()
      assert.are.same({"d2", "d1", "during"}, order)
      -- The failure is left on d2, as Twisted's DeferredList leaves it.
      local got
      d2:addErrback(function(f) got = f.value end)
      assert.are.equal("d2 failed", got)
    end)

  it("keeps triggers added while an event fires for its next firing",
    function()
      local c = H.counter()
      reactor.addSystemEventTrigger("before", "shutdown", function()
        reactor.addSystemEventTrigger("after", "shutdown", c)
      end)
      reactor.callLater(0, reactor.stop)
      runUntilStopped()
      assert.are.equal(0, c.calls)
      reactor.callLater(0, reactor.stop)
      runUntilStopped()
      assert.are.equal(1, c.calls)
    end)

  it("fires triggers of any event name, passed as the id's event",
    function()
      local id = reactor.addSystemEventTrigger("before", "custom", print)
      assert.are.equal("custom", id.event)
      assert.are.equal("before", id.phase)
      reactor.removeSystemEventTrigger(id)
    end)

  it("lets a call scheduled during shutdown wait for the next run()",
    function()
      local c = H.counter()
      reactor.addSystemEventTrigger("during", "shutdown", function()
        reactor.callLater(0, c, "next run")
      end)
      reactor.callLater(0, reactor.stop)
      assert.are.same({}, runUntilStopped())
      assert.are.equal(0, c.calls)
      reactor.callLater(0.01, reactor.stop)
      runUntilStopped()
      assert.are.equal(1, c.calls)
    end)
end)

describe("reactor.running", function()
  it("is false outside run() and true inside", function()
    assert.is_false(reactor.running)
    local inside
    reactor.callLater(0, function()
      inside = reactor.running
      reactor.stop()
    end)
    runUntilStopped()
    assert.is_true(inside)
    assert.is_false(reactor.running)
  end)
end)

describe("reactor.callWhenRunning", function()
  it("runs f with its arguments once the loop runs", function()
    local c = H.counter()
    local id = reactor.callWhenRunning(c, 1, nil, 3)
    assert.is_not_nil(id)
    assert.are.equal(0, c.calls)
    reactor.callLater(0, reactor.stop)
    runUntilStopped()
    assert.are.equal(1, c.calls)
    assert.are.equal(3, c.args[1].n)
    assert.are.same({1, nil, 3, n = 3}, c.args[1])
  end)

  it("runs f at once when the reactor is running", function()
    local c = H.counter()
    local calledInline
    reactor.callLater(0, function()
      reactor.callWhenRunning(c, "now")
      calledInline = c.calls
      reactor.stop()
    end)
    runUntilStopped()
    assert.are.equal(1, calledInline)
  end)

  it("returns nothing when it ran f at once", function()
    local n
    reactor.callLater(0, function()
      n = select("#", reactor.callWhenRunning(function() end))
      reactor.stop()
    end)
    runUntilStopped()
    assert.are.equal(0, n)
  end)

  it("raises when f is not callable", function()
    local ok, err = pcall(reactor.callWhenRunning, 42)
    assert.is_false(ok)
    assert.truthy(err:find("callable expected", 1, true), err)
  end)
end)

describe("reactor.addSystemEventTrigger", function()
  it("passes the extra arguments, nil holes kept", function()
    local c = H.counter()
    reactor.addSystemEventTrigger("during", "shutdown", c, nil, "b", nil)
    reactor.callLater(0, reactor.stop)
    runUntilStopped()
    assert.are.same({nil, "b", nil, n = 3}, c.args[1])
  end)

  it("raises on a bad phase", function()
    local ok, err = pcall(reactor.addSystemEventTrigger, "sometime",
      "shutdown", print)
    assert.is_false(ok)
    assert.truthy(err:find("addSystemEventTrigger", 1, true), err)
    assert.truthy(err:find("sometime", 1, true), err)
  end)

  it("raises when f is not callable", function()
    local ok, err = pcall(reactor.addSystemEventTrigger, "before",
      "shutdown", "nope")
    assert.is_false(ok)
    assert.truthy(err:find("callable expected", 1, true), err)
  end)
end)

describe("reactor.removeSystemEventTrigger", function()
  it("removes a trigger so that it does not fire", function()
    local c = H.counter()
    local id = reactor.addSystemEventTrigger("before", "shutdown", c)
    local kept = H.counter()
    reactor.addSystemEventTrigger("before", "shutdown", kept)
    reactor.removeSystemEventTrigger(id)
    reactor.callLater(0, reactor.stop)
    runUntilStopped()
    assert.are.equal(0, c.calls)
    assert.are.equal(1, kept.calls)
  end)

  it("raises on an id that is not a table", function()
    local ok, err = pcall(reactor.removeSystemEventTrigger, 42)
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #1 to 'removeSystemEventTrigger' "
      .. "(table expected, got number)", 1, true), err)
  end)

  it("raises when the trigger was removed already", function()
    local id = reactor.addSystemEventTrigger("after", "startup", print)
    reactor.removeSystemEventTrigger(id)
    local ok, err = pcall(reactor.removeSystemEventTrigger, id)
    assert.is_false(ok)
    assert.truthy(err:find("not a pending system event trigger", 1, true))
  end)
end)

describe("reactor.runUntilComplete", function()
  it("returns the result of a Deferred fired later", function()
    local d = defer.Deferred()
    reactor.callLater(0.01, d.callback, d, "done")
    assert.are.equal("done", reactor.runUntilComplete(d, 5))
    assert.is_false(reactor.running)
  end)

  it("returns at once for a fired Deferred, without running", function()
    local c = H.counter()
    local id = reactor.addSystemEventTrigger("before", "startup", c)
    assert.are.equal(7, reactor.runUntilComplete(defer.succeed(7)))
    assert.are.equal(0, c.calls)
    reactor.removeSystemEventTrigger(id)
  end)

  it("raises the Failure itself, not wrapped again", function()
    local d = defer.Deferred()
    local f = failure.Failure("broken")
    reactor.callLater(0, function() d:errback(f) end)
    local ok, err = pcall(reactor.runUntilComplete, d)
    assert.is_false(ok)
    assert.are.equal(f, err)
    assert.are.equal("broken", err.value)
  end)

  it("is not stopped by a Deferred that timed out in an earlier run", function()
    local late = defer.Deferred()
    assertErrorType(reactor.TimeoutError, "0.01",
      pcall(reactor.runUntilComplete, late, 0.01))
    -- late fires during the next run: that run must go on to its own end.
    local d = defer.Deferred()
    reactor.callLater(0, late.callback, late, "late")
    reactor.callLater(0.05, d.callback, d, "mine")
    assert.are.equal("mine", reactor.runUntilComplete(d, 5))
  end)

  it("raises reactor.TimeoutError after timeout seconds", function()
    local d = defer.Deferred()
    local t0 = reactor.seconds()
    assertErrorType(reactor.TimeoutError, "0.05",
      pcall(reactor.runUntilComplete, d, 0.05))
    local took = reactor.seconds() - t0
    assert.is_true(took >= 0.05 and took < 2, tostring(took))
    assert.is_false(reactor.running)
    assert.is_false(d.called)
  end)

  it("raises ReactorNotRunning when stopped before d fired", function()
    reactor.callLater(0, reactor.stop)
    assertErrorType(reactor.ReactorNotRunning, "before the Deferred fired",
      pcall(reactor.runUntilComplete, defer.Deferred(), 5))
  end)

  it("raises ReactorAlreadyRunning when the reactor runs", function()
    local ok, err
    local d = defer.Deferred()
    reactor.callLater(0, function()
      ok, err = pcall(reactor.runUntilComplete, defer.Deferred())
      d:callback(nil)
    end)
    H.wait(d)
    assertErrorType(reactor.ReactorAlreadyRunning, nil, ok, err)
  end)

  it("raises on an argument that is not a Deferred", function()
    local ok, err = pcall(reactor.runUntilComplete, 42)
    assert.is_false(ok)
    assert.truthy(err:find("Deferred expected", 1, true), err)
  end)

  it("raises on a negative or NaN timeout", function()
    for _, t in ipairs({-1, 0 / 0}) do
      local ok, err = pcall(reactor.runUntilComplete, defer.Deferred(), t)
      assert.is_false(ok)
      assert.truthy(err:find("timeout must be >= 0", 1, true), err)
    end
  end)

  it("runs the startup and shutdown triggers around d", function()
    local order = {}
    reactor.addSystemEventTrigger("after", "startup", function()
      order[#order + 1] = "started"
    end)
    reactor.addSystemEventTrigger("after", "shutdown", function()
      order[#order + 1] = "stopped"
    end)
    local d = defer.Deferred()
    reactor.callLater(0, function()
      order[#order + 1] = "fired"
      d:callback("v")
    end)
    assert.are.equal("v", reactor.runUntilComplete(d, 5))
    assert.are.same({"started", "fired", "stopped"}, order)
  end)
end)

describe("reactor.seconds", function()
  it("returns monotonic float seconds", function()
    local a = reactor.seconds()
    H.runFor(0.02)
    local b = reactor.seconds()
    assert.are.equal("float", math.type(a))
    assert.is_true(b - a >= 0.02 and b - a < 2, tostring(b - a))
  end)
end)

describe("reactor.callLater", function()
  it("lets I/O, timers and stop() through while a callLater(0) reschedules "
    .. "itself (no starvation; bugs: the reactor froze on libuv 1.44)",
    function()
    local protocol = require("spindle.protocol")
    local spins, stopped = 0, false
    local function spin()
      spins = spins + 1
      if not stopped then reactor.callLater(0, spin) end
    end
    reactor.callLater(0, spin)
    local Echo = protocol.Protocol:extend({
      dataReceived = function(self, data) self.transport:write(data) end,
    })
    local port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), nil,
      "127.0.0.1")
    local got = defer.Deferred()
    local Client = protocol.Protocol:extend({
      connectionMade = function(self) self.transport:write("ping") end,
      dataReceived = function(self, data)
        self.transport:loseConnection()
        got:callback(data)
      end,
    })
    local cf = protocol.ClientFactory.forProtocol(Client)
    reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
    got:addCallback(function(data)
      assert.equal("ping", data)
      reactor.callLater(0.05, function()
        stopped = true
        port:stopListening()
        reactor.stop()
      end)
    end)
    runUntilStopped()
    assert.is_true(spins > 100)
  end)

  it("calls f after delay seconds, not before", function()
    local t0 = reactor.seconds()
    local firedAt
    local d = defer.Deferred()
    reactor.callLater(0.03, function()
      firedAt = reactor.seconds()
      d:callback(nil)
    end)
    H.wait(d)
    assert.is_true(firedAt - t0 >= 0.03, tostring(firedAt - t0))
  end)

  it("runs calls in time order", function()
    local order = {}
    local d = defer.Deferred()
    reactor.callLater(0.02, function() order[#order + 1] = 2 end)
    reactor.callLater(0.03, function() d:callback(nil) end)
    reactor.callLater(0.01, function() order[#order + 1] = 1 end)
    H.wait(d)
    assert.are.same({1, 2}, order)
  end)

  it("runs same-time calls in the order scheduled", function()
    local order = {}
    local d = defer.Deferred()
    for i = 1, 50 do
      reactor.callLater(0, function() order[#order + 1] = i end)
    end
    reactor.callLater(0, d.callback, d, nil)
    H.wait(d)
    for i = 1, 50 do assert.are.equal(i, order[i]) end
  end)

  it("passes the arguments, nil holes kept", function()
    local c = H.counter()
    local d = defer.Deferred()
    reactor.callLater(0, c, nil, 2, nil)
    reactor.callLater(0, d.callback, d, nil)
    H.wait(d)
    assert.are.same({nil, 2, nil, n = 3}, c.args[1])
  end)

  it("logs an error in f with its traceback and keeps running", function()
    local d = defer.Deferred()
    local function raiser() error("timed boom") end
    reactor.callLater(0, raiser)
    reactor.callLater(0.01, d.callback, d, "still running")
    local errors, result = H.loggedErrors(H.wait, d)
    assert.are.equal("still running", result)
    assert.are.equal(1, #errors)
    local tb = errors[1].failure:getTraceback()
    assert.truthy(tb:find("timed boom", 1, true), tb)
    assert.truthy(tb:find("raiser", 1, true) or
      tb:find("reactor_spec.lua", 1, true), tb)
  end)

  it("does not run calls scheduled during a pass in that pass", function()
    local n = 0
    local d = defer.Deferred()
    local function again()
      n = n + 1
      if n < 100 then reactor.callLater(0, again) end
    end
    reactor.callLater(0, again)
    reactor.callLater(0.02, function() d:callback(n) end)
    -- A zero-delay chain must not starve other timers or I/O.
    assert.is_true(H.wait(d) >= 1)
  end)

  it("works as a method of the reactor, as a clock", function()
    local d = defer.Deferred()
    local dc = reactor:callLater(0, d.callback, d, "method")
    assert.are.equal("method", H.wait(d))
    assert.is_true(dc.called)
    assert.is_number(reactor:seconds())
  end)

  it("raises on bad arguments", function()
    -- Through pcall Lua cannot see the call: the public name, not
    -- 'spindle._loop.callLater' (newuser3 #2).
    local ok, err = pcall(reactor.callLater, nil, print)
    assert.is_false(ok)
    assert.equal("bad argument #1 to 'callLater' (number expected, got nil)",
      err)
    ok, err = pcall(reactor.callLater, -1, print)
    assert.is_false(ok)
    assert.equal("bad argument #1 to 'callLater' (delay must be >= 0)", err)
    ok, err = pcall(reactor.callLater, 0 / 0, print)
    assert.is_false(ok)
    assert.equal("bad argument #1 to 'callLater' (delay is NaN)", err)
    ok, err = pcall(reactor.callLater, 1, "nope")
    assert.is_false(ok)
    assert.equal("bad argument #2 to 'callLater' (callable expected, " ..
      "got string)", err)
  end)
end)

describe("DelayedCall", function()
  it("cancel() stops the call", function()
    local c = H.counter()
    local dc = reactor.callLater(0.01, c)
    dc:cancel()
    assert.is_false(dc:active())
    assert.is_true(dc.cancelled)
    H.runFor(0.03)
    assert.are.equal(0, c.calls)
  end)

  it("raises AlreadyCancelled on cancel, reset or delay after cancel",
    function()
      local dc = reactor.callLater(1, print)
      dc:cancel()
      assertErrorType(reactor.AlreadyCancelled, "already-cancelled",
        pcall(dc.cancel, dc))
      assertErrorType(reactor.AlreadyCancelled, "reset",
        pcall(dc.reset, dc, 1))
      assertErrorType(reactor.AlreadyCancelled, "delay",
        pcall(dc.delay, dc, 1))
    end)

  it("raises AlreadyCalled on cancel, reset or delay after the call",
    function()
      local d = defer.Deferred()
      local dc = reactor.callLater(0, d.callback, d, nil)
      H.wait(d)
      assert.is_true(dc.called)
      assert.is_false(dc:active())
      assertErrorType(reactor.AlreadyCalled, "already-called",
        pcall(dc.cancel, dc))
      assertErrorType(reactor.AlreadyCalled, "reset", pcall(dc.reset, dc, 1))
      assertErrorType(reactor.AlreadyCalled, "delay", pcall(dc.delay, dc, 1))
    end)

  it("getTime() is when the call is due", function()
    local before = reactor.seconds()
    local dc = reactor.callLater(10, print)
    local after = reactor.seconds()
    assert.is_true(dc:getTime() >= before + 10 and
      dc:getTime() <= after + 10)
    assert.are.equal(dc:getTime(), dc.time)
    dc:cancel()
  end)

  it("reset() moves the call to secondsFromNow", function()
    local order = {}
    local d = defer.Deferred()
    local dc = reactor.callLater(0.01, function() order[#order + 1] = "a" end)
    reactor.callLater(0.02, function() order[#order + 1] = "b" end)
    reactor.callLater(0.04, d.callback, d, nil)
    local t = reactor.seconds()
    dc:reset(0.03)
    assert.is_true(dc:getTime() >= t + 0.03)
    H.wait(d)
    assert.are.same({"b", "a"}, order)
  end)

  it("delay() moves the call later by seconds", function()
    local dc = reactor.callLater(1, print)
    local t = dc:getTime()
    dc:delay(2)
    assert.are.equal(t + 2, dc:getTime())
    dc:delay(-0.5)
    assert.are.equal(t + 1.5, dc:getTime())
    dc:cancel()
  end)

  it("reset() and delay() raise on a NaN", function()
    local dc = reactor.callLater(1, print)
    local ok, err = pcall(function() dc:reset(0 / 0) end)
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #1 to 'reset' (number expected, " ..
      "got NaN)", 1, true), err)
    ok, err = pcall(function() dc:delay(0 / 0) end)
    assert.is_false(ok)
    assert.truthy(err:find("'delay' (number expected, got NaN)", 1, true),
      err)
    assert.is_true(dc:active())
    dc:cancel()
  end)

  it("names reset() and delay() and count from their first argument " ..
    "through pcall", function()
      local dc = reactor.callLater(1, print)
      assert.same({false, "bad argument #1 to 'reset' (number expected, " ..
        "got NaN)"}, {pcall(dc.reset, dc, 0 / 0)})
      assert.same({false, "bad argument #1 to 'reset' (number expected, " ..
        "got string)"}, {pcall(dc.reset, dc, "x")})
      assert.same({false, "bad argument #1 to 'delay' (number expected, " ..
        "got table)"}, {pcall(dc.delay, dc, {})})
      dc:delay(math.huge)
      assert.same({false, "bad argument #1 to 'delay' (the new due time " ..
        "would be NaN)"}, {pcall(dc.delay, dc, -math.huge)})
      -- at the caller's line when called as a method
      local line = debug.getinfo(1, "l").currentline + 1
      local ok, err = pcall(function() dc:reset("x") end)
      assert.is_false(ok)
      assert.equal(debug.getinfo(1, "S").short_src .. ":" .. line ..
        ": bad argument #1 to 'reset' (number expected, got string)", err)
      dc:reset("5") -- a numeric string, as luaL_checknumber takes it
      assert.is_true(dc:getTime() - reactor.seconds() > 4)
      dc:cancel()
    end)

  it("delay() and reset() refuse to make the due time NaN", function()
    local dc = reactor.callLater(1, print)
    dc:delay(math.huge)
    assert.are.equal(math.huge, dc:getTime())
    local ok, err = pcall(function() dc:delay(-math.huge) end)
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #1 to 'delay' (the new due time " ..
      "would be NaN)", 1, true), err)
    assert.are.equal(math.huge, dc:getTime())
    -- It still runs after a call due earlier.
    local order = {}
    local d = defer.Deferred()
    dc:reset(0.02)
    reactor.callLater(0.01, function() order[#order + 1] = "first" end)
    reactor.callLater(0.03, d.callback, d, nil)
    dc:cancel()
    dc = reactor.callLater(0.02, function() order[#order + 1] = "second" end)
    H.wait(d)
    assert.are.same({"first", "second"}, order)
    assert.is_false(dc:active())
  end)

  it("prints as a DelayedCall", function()
    local dc = reactor.callLater(1, print)
    assert.truthy(tostring(dc):find("^<DelayedCall"))
    dc:cancel()
  end)
end)

describe("reactor.getDelayedCalls", function()
  it("lists the pending calls", function()
    local a = reactor.callLater(5, print)
    local b = reactor.callLater(6, print)
    local found = {}
    for _, dc in ipairs(reactor.getDelayedCalls()) do found[dc] = true end
    assert.is_true(found[a] and found[b])
    a:cancel()
    b:cancel()
    for _, dc in ipairs(reactor.getDelayedCalls()) do
      assert.is_true(dc ~= a and dc ~= b)
    end
  end)
end)

describe("reactor.callFromThread", function()
  it("queues calls on the main thread, FIFO, not at once", function()
    local order = {}
    local d = defer.Deferred()
    for i = 1, 20 do
      reactor.callFromThread(function(x, y, z)
        order[#order + 1] = {x, y, z}
      end, i, nil, "z")
    end
    reactor.callFromThread(d.callback, d, nil)
    assert.are.same({}, order)
    H.wait(d)
    assert.are.equal(20, #order)
    for i = 1, 20 do assert.are.same({i, nil, "z"}, order[i]) end
  end)

  it("logs an error in f and keeps running", function()
    local d = defer.Deferred()
    reactor.callFromThread(error, "threaded boom")
    reactor.callFromThread(d.callback, d, "ok")
    local errors, result = H.loggedErrors(H.wait, d)
    assert.are.equal("ok", result)
    assert.are.equal(1, #errors)
    assert.are.equal("threaded boom", errors[1].failure.value)
  end)

  it("raises when f is not callable", function()
    local ok, err = pcall(reactor.callFromThread, nil)
    assert.is_false(ok)
    assert.truthy(err:find("callable expected", 1, true), err)
  end)
end)

describe("signals", function()
  local source = [[
    local reactor = require("spindle.reactor")
    local defer = require("spindle.defer")
    reactor.addSystemEventTrigger("before", "shutdown", function()
      print("before shutdown")
      local d = defer.Deferred()
      reactor.callLater(0.01, d.callback, d, nil)
      return d
    end)
    reactor.addSystemEventTrigger("after", "shutdown", print, "after shutdown")
    local pid = io.open("/proc/self/stat"):read("a"):match("^(%d+)")
    reactor.callWhenRunning(function()
      -- io.popen, not os.execute: system() ignores SIGINT while it waits.
      io.popen("kill -" .. arg[1] .. " " .. pid):close()
    end)
    -- A watchdog: if the signal does not stop us, say so.
    reactor.callLater(5, function() print("not stopped"); reactor.stop() end)
    reactor.run()
    print("run returned")
  ]]

  for _, sig in ipairs({"TERM", "INT"}) do
    it("SIG" .. sig .. " while running stops the reactor, triggers run",
      function()
        local out, err, code = H.runScript(source, {sig})
        assert.are.equal("before shutdown\nafter shutdown\nrun returned\n",
          out)
        assert.truthy(err:find("Received SIG" .. sig .. ", shutting down.",
          1, true), err)
        assert.are.equal(0, code)
      end)
  end

  local busy = [[
    local reactor = require("spindle.reactor")
    reactor.addSystemEventTrigger("after", "shutdown", print, "after shutdown")
    local pid = io.open("/proc/self/stat"):read("a"):match("^(%d+)")
    reactor.callWhenRunning(function()
      -- The signal comes from another process while we spin.
      io.popen("(sleep 0.2; kill -" .. arg[1] .. " " .. pid .. ") &"):close()
      local t0 = os.clock()
      while os.clock() - t0 < 20 do end
      print("not interrupted")
    end)
    reactor.run()
    print("run returned")
  ]]

  for _, sig in ipairs({"TERM", "INT"}) do
    it("SIG" .. sig .. " interrupts a callback that never returns, then "
      .. "stops the reactor (as lua's 'interrupted!')", function()
      local out, err, code = H.runScript(busy, {sig})
      assert.are.equal("after shutdown\nrun returned\n", out)
      assert.truthy(err:find("interrupted!", 1, true), err)
      assert.truthy(err:find("Received SIG" .. sig, 1, true), err)
      assert.are.equal(0, code)
    end)
  end
end)

describe("shutdown, issue 7", function()
  -- Item 11: the first signal stops the reactor; a 'before shutdown'
  -- trigger's Deferred never fires; a second signal (sent from the
  -- trigger, once shutdown is under way) forces the exit.
  local hanging = [[
    local reactor = require("spindle.reactor")
    local defer = require("spindle.defer")
    local pid = io.open("/proc/self/stat"):read("a"):match("^(%d+)")
    local function kill()
      -- io.popen, not os.execute: system() ignores SIGINT while it waits.
      io.popen("kill -" .. arg[1] .. " " .. pid):close()
    end
    reactor.addSystemEventTrigger("before", "shutdown", function()
      print("before shutdown")
      kill()
      return defer.Deferred() -- never fires
    end)
    reactor.addSystemEventTrigger("after", "shutdown", print, "not forced")
    reactor.callWhenRunning(kill)
    reactor.callLater(10, function() print("no signal"); os.exit(3) end)
    reactor.run()
    print("run returned")
  ]]

  for sig, code in pairs({INT = 130, TERM = 143}) do
    it("a second SIG" .. sig .. " while a before-shutdown Deferred hangs "
      .. "forces the exit with status " .. code, function()
      local out, err, status = H.runScript(hanging, {sig})
      assert.are.equal("before shutdown\n", out)
      assert.truthy(err:find("Received SIG" .. sig .. ", shutting down.", 1,
        true), err)
      assert.truthy(err:find("SIG" .. sig .. " while shutting down: exiting "
        .. "now", 1, true), err)
      assert.are.equal(code, status)
    end)
  end

  -- Item 12: a connection still open when the process exits is lost then;
  -- its protocol's connectionLost may call callLater, as in Twisted.
  it("accepts callLater from a connectionLost at exit (it never runs)",
    function()
      local out, err, status = H.runScript([[
        local reactor = require("spindle.reactor")
        local protocol = require("spindle.protocol")
        local P = protocol.Protocol:extend()
        function P:connectionLost()
          local dc = reactor.callLater(0, print, "ran")
          print("lost", dc:active())
          dc:reset(1)
          dc:delay(1)
          print("still", dc:active())
        end
        local port = reactor.listenTCP(0, protocol.Factory.forProtocol(P),
          nil, "127.0.0.1")
        local C = protocol.Protocol:extend()
        function C:connectionMade() reactor.stop() end
        reactor.connectTCP("127.0.0.1", port:getHost().port,
          protocol.ClientFactory.forProtocol(C))
        reactor.run()
        print("run returned")
      ]])
      assert.are.equal("run returned\nlost\ttrue\nstill\ttrue\n", out)
      assert.are.equal("", err)
      assert.are.equal(0, status)
    end)
end)
