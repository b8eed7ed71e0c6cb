-- spindle.task: Clock, LoopingCall, deferLater, react. Timing uses
-- task.Clock; the reactor appears only where it is the clock under test.
local H = require("spec.support.helper")
local task = require("spindle.task")
local reactor = require("spindle.reactor")
local defer = require("spindle.defer")

local assertErrorType = H.assertErrorType

-- The result of a fired Deferred, or raises if it has not fired.
local function resultOf(d)
  local fired, result = false, nil
  d:addBoth(function(r)
    fired, result = true, r
    return r
  end)
  assert.is_true(fired, "the Deferred has not fired")
  return result
end

-- The Failure a fired Deferred failed with (consumed).
local function failureOf(d)
  local f
  d:addErrback(function(failure) f = failure end)
  assert.is_not_nil(f, "the Deferred did not fail")
  return f
end

describe("task.Clock", function()
  it("starts at 0 and moves only by advance()", function()
    local clock = task.Clock()
    assert.are.equal(0, clock:seconds())
    clock:advance(1.5)
    assert.are.equal(1.5, clock:seconds())
  end)

  it("runs calls when their time comes, in time order", function()
    local clock = task.Clock()
    local order = {}
    clock:callLater(2, function() order[#order + 1] = "b" end)
    clock:callLater(1, function() order[#order + 1] = "a" end)
    clock:advance(0.5)
    assert.are.same({}, order)
    clock:advance(0.5)
    assert.are.same({"a"}, order)
    clock:advance(5)
    assert.are.same({"a", "b"}, order)
  end)

  it("refuses a NaN advance, leaving time and calls alone", function()
    local clock = task.Clock()
    local c = H.counter()
    clock:callLater(1, c)
    local ok, err = pcall(function() clock:advance(0 / 0) end)
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #1 to 'advance' (amount is NaN)", 1,
      true), err)
    assert.are.equal(0, clock:seconds())
    assert.are.equal(0, c.calls)
    clock:advance(1)
    assert.are.equal(1, c.calls)
  end)

  it("runs same-time calls in the order scheduled", function()
    local clock = task.Clock()
    local order = {}
    for i = 1, 30 do
      clock:callLater(1, function() order[#order + 1] = i end)
    end
    clock:advance(1)
    for i = 1, 30 do assert.are.equal(i, order[i]) end
  end)

  it("passes arguments with nil holes", function()
    local clock = task.Clock()
    local c = H.counter()
    clock:callLater(0, c, nil, 2, nil)
    clock:advance(0)
    assert.are.same({nil, 2, nil, n = 3}, c.args[1])
  end)

  it("runs calls that a call schedules when they are due", function()
    local clock = task.Clock()
    local c = H.counter()
    clock:callLater(1, function() clock:callLater(0, c) end)
    clock:advance(1)
    assert.are.equal(1, c.calls)
  end)

  it("lets an error in a call propagate out of advance()", function()
    local clock = task.Clock()
    clock:callLater(1, error, "clock boom")
    local ok, err = pcall(clock.advance, clock, 1)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("clock boom", 1, true))
    assert.are.same({}, clock:getDelayedCalls())
  end)

  it("pump() advances by each amount", function()
    local clock = task.Clock()
    local times = {}
    for _, t in ipairs({1, 2, 3}) do
      clock:callLater(t, function() times[#times + 1] = clock:seconds() end)
    end
    clock:pump({1, 1, 1})
    assert.are.same({1, 2, 3}, times)
  end)

  it("getDelayedCalls() lists pending calls, earliest first", function()
    local clock = task.Clock()
    local b = clock:callLater(2, print)
    local a = clock:callLater(1, print)
    assert.are.same({a, b}, clock:getDelayedCalls())
    a:cancel()
    assert.are.same({b}, clock:getDelayedCalls())
    clock:advance(2)
    assert.are.same({}, clock:getDelayedCalls())
  end)

  it("raises on bad arguments to callLater", function()
    local clock = task.Clock()
    local ok, err = pcall(clock.callLater, clock, "x", print)
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #1 to 'callLater'", 1, true), err)
    ok, err = pcall(clock.callLater, clock, -1, print)
    assert.is_false(ok)
    assert.truthy(err:find("delay must be >= 0", 1, true), err)
    ok, err = pcall(clock.callLater, clock, 1, 42)
    assert.is_false(ok)
    assert.truthy(err:find("callable expected", 1, true), err)
  end)
end)

describe("task.Clock DelayedCall", function()
  it("has the reactor's methods and errors", function()
    local clock = task.Clock()
    local c = H.counter()
    local dc = clock:callLater(1, c)
    assert.is_true(dc:active())
    assert.are.equal(1, dc:getTime())
    dc:cancel()
    assert.is_false(dc:active())
    assert.is_true(dc.cancelled)
    clock:advance(2)
    assert.are.equal(0, c.calls)
    assertErrorType(reactor.AlreadyCancelled, "cancel", pcall(dc.cancel, dc))
    assertErrorType(reactor.AlreadyCancelled, "reset", pcall(dc.reset, dc, 1))
    assertErrorType(reactor.AlreadyCancelled, "delay", pcall(dc.delay, dc, 1))
    local called = clock:callLater(0, c)
    clock:advance(0)
    assert.is_true(called.called)
    assertErrorType(reactor.AlreadyCalled, "cancel",
      pcall(called.cancel, called))
    assertErrorType(reactor.AlreadyCalled, "reset",
      pcall(called.reset, called, 1))
    assertErrorType(reactor.AlreadyCalled, "delay",
      pcall(called.delay, called, 1))
  end)

  it("delay() and reset() refuse to make the due time NaN", function()
    local clock = task.Clock()
    local order = {}
    local dc = clock:callLater(1, function() order[#order + 1] = "a" end)
    clock:callLater(2, function() order[#order + 1] = "b" end)
    dc:delay(math.huge)
    local ok, err = pcall(function() dc:delay(-math.huge) end)
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #1 to 'delay' (the new due time " ..
      "would be NaN)", 1, true), err)
    ok, err = pcall(function() dc:reset(0 / 0) end)
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #1 to 'reset' (the new due time " ..
      "would be NaN)", 1, true), err)
    assert.are.equal(math.huge, dc:getTime())
    clock:advance(3)
    assert.are.same({"b"}, order)
    dc:reset(0)
    clock:advance(0)
    assert.are.same({"b", "a"}, order)
  end)

  it("reset() and delay() move the call", function()
    local clock = task.Clock()
    local c = H.counter()
    local dc = clock:callLater(1, c)
    clock:advance(0.5)
    dc:reset(1)
    assert.are.equal(1.5, dc:getTime())
    dc:delay(1)
    assert.are.equal(2.5, dc:getTime())
    clock:advance(1.9)
    assert.are.equal(0, c.calls)
    clock:advance(0.1)
    assert.are.equal(1, c.calls)
  end)
end)

describe("task.LoopingCall", function()
  local function looping(f, ...)
    local clock = task.Clock()
    local lc = task.LoopingCall(f, ...)
    lc.clock = clock
    return lc, clock
  end

  it("calls f at once and then every interval", function()
    local c = H.counter()
    local lc, clock = looping(c, "arg", nil)
    lc:start(1)
    assert.are.equal(1, c.calls)
    assert.are.same({"arg", nil, n = 2}, c.args[1])
    clock:advance(0.5)
    assert.are.equal(1, c.calls)
    clock:pump({0.5, 1, 1})
    assert.are.equal(4, c.calls)
    assert.is_true(lc.running)
  end)

  it("waits an interval first when now is false", function()
    local c = H.counter()
    local lc, clock = looping(c)
    lc:start(2, false)
    assert.are.equal(0, c.calls)
    clock:advance(2)
    assert.are.equal(1, c.calls)
  end)

  it("stop() fires the start() Deferred with the LoopingCall", function()
    local lc, clock = looping(H.counter())
    local d = lc:start(1)
    clock:advance(1)
    assert.is_false(d.called)
    lc:stop()
    assert.is_false(lc.running)
    assert.are.equal(lc, resultOf(d))
    assert.are.same({}, clock:getDelayedCalls())
  end)

  it("errbacks the Deferred and stops when f raises", function()
    local n = 0
    local lc, clock = looping(function()
      n = n + 1
      if n == 2 then error("loop boom") end
    end)
    local d = lc:start(1)
    clock:advance(1)
    assert.is_false(lc.running)
    local f = failureOf(d)
    assert.truthy(tostring(f.value):find("loop boom", 1, true))
    clock:advance(5)
    assert.are.equal(2, n)
  end)

  it("waits for a Deferred returned by f", function()
    local pending
    local n = 0
    local lc, clock = looping(function()
      n = n + 1
      pending = defer.Deferred()
      return pending
    end)
    lc:start(1)
    clock:advance(3)
    assert.are.equal(1, n)
    pending:callback(nil)
    clock:advance(1)
    assert.are.equal(2, n)
  end)

  it("stopped while f's Deferred is pending, fires when it fires",
    function()
      local pending = defer.Deferred()
      local lc = looping(function() return pending end)
      local d = lc:start(1)
      lc:stop()
      assert.is_false(d.called)
      pending:callback(nil)
      assert.are.equal(lc, resultOf(d))
    end)

  it("skips intervals missed while busy, staying aligned", function()
    local times = {}
    local lc, clock
    lc, clock = looping(function() times[#times + 1] = clock:seconds() end)
    lc:start(1)
    clock:advance(3.5)
    clock:advance(0.5)
    assert.are.same({0, 3.5, 4}, times)
  end)

  it("withCount() passes the number of intervals elapsed", function()
    local counts = {}
    local clock = task.Clock()
    local lc = task.LoopingCall.withCount(function(n)
      counts[#counts + 1] = n
    end)
    lc.clock = clock
    lc:start(1)
    clock:advance(1)
    clock:advance(3)
    assert.are.same({1, 1, 3}, counts)
  end)

  it("raises on start when running and on stop when not", function()
    local lc = looping(H.counter())
    local ok, err = pcall(lc.stop, lc)
    assert.is_false(ok)
    assert.truthy(err:find("not running", 1, true), err)
    lc:start(1)
    ok, err = pcall(lc.start, lc, 1)
    assert.is_false(ok)
    assert.truthy(err:find("already running", 1, true), err)
    ok, err = pcall(looping(print).start, looping(print), -1)
    assert.is_false(ok)
    assert.truthy(err:find("interval must be >= 0", 1, true), err)
  end)

  it("raises at start on a NaN interval, and does not run", function()
    local c = H.counter()
    local lc = looping(c)
    local ok, err = pcall(function() lc:start(0 / 0) end)
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #1 to 'start' (interval is NaN)",
      1, true), err)
    assert.is_false(lc.running)
    assert.are.equal(0, c.calls)
    assert.are.same({}, lc.clock:getDelayedCalls())
  end)

  it("uses the reactor as its clock by default", function()
    local n = 0
    local lc
    lc = task.LoopingCall(function()
      n = n + 1
      if n == 3 then lc:stop() end
    end)
    assert.are.equal(reactor, lc.clock)
    local t0 = reactor.seconds()
    assert.are.equal(lc, H.wait(lc:start(0.01)))
    assert.are.equal(3, n)
    assert.is_true(reactor.seconds() - t0 >= 0.02)
  end)
end)

describe("task.deferLater", function()
  it("fires with f's result after delay", function()
    local clock = task.Clock()
    local d = task.deferLater(clock, 2, function(a, b) return a + b end, 1, 2)
    clock:advance(1)
    assert.is_false(d.called)
    clock:advance(1)
    assert.are.equal(3, resultOf(d))
  end)

  it("fires with nil when f is nil", function()
    local clock = task.Clock()
    local d = task.deferLater(clock, 1)
    clock:advance(1)
    assert.is_true(d.called)
    assert.is_nil(resultOf(d))
  end)

  it("errbacks when f raises", function()
    local clock = task.Clock()
    local d = task.deferLater(clock, 1, error, "later boom")
    clock:advance(1)
    local value = failureOf(d).value
    assert.truthy(value:find("later boom", 1, true), value)
  end)

  it("cancel() cancels the call and fails with CancelledError", function()
    local clock = task.Clock()
    local c = H.counter()
    local d = task.deferLater(clock, 1, c)
    d:cancel()
    assert.are.same({}, clock:getDelayedCalls())
    local f = failureOf(d)
    assert.is_not_nil(f:check(defer.CancelledError))
    clock:advance(2)
    assert.are.equal(0, c.calls)
  end)

  it("works with the reactor as clock", function()
    local d = task.deferLater(reactor, 0.01, function() return "real" end)
    assert.are.equal("real", H.wait(d))
  end)

  it("blames bad arguments on deferLater", function()
    local clock = task.Clock()
    local cases = {
      {function() task.deferLater(nil, 1) end,
        "bad argument #1 to 'deferLater' (clock expected, got nil)"},
      {function() task.deferLater({}, 1) end,
        "bad argument #1 to 'deferLater' (clock expected, got table)"},
      {function() task.deferLater(clock, -1) end,
        "bad argument #2 to 'deferLater' (delay must be >= 0)"},
      {function() task.deferLater(reactor, -1) end,
        "bad argument #2 to 'deferLater' (delay must be >= 0)"},
      {function() task.deferLater(clock, 0 / 0) end,
        "bad argument #2 to 'deferLater' (delay is NaN)"},
      {function() task.deferLater(clock, "1") end,
        "bad argument #2 to 'deferLater' (number expected, got string)"},
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(case[1])
      assert.is_false(ok)
      assert.truthy(err:find(case[2], 1, true), err)
      -- Blamed on the caller's line, not on task.lua.
      assert.truthy(err:find("task_spec.lua", 1, true), err)
    end
    assert.are.same({}, clock:getDelayedCalls())
  end)
end)

describe("task.react", function()
  it("exits 0 once main's Deferred succeeds, after shutdown", function()
    local out, err, code = H.runScript([[
      local task = require("spindle.task")
      reactor = require("spindle.reactor")
      reactor.addSystemEventTrigger("after", "shutdown", print, "shutdown")
      task.react(function(r, a, b)
        print("main", r == reactor, a, b)
        return task.deferLater(r, 0.01, print, "later")
      end, {"x", "y"})
      print("not reached")
    ]])
    assert.are.equal("main\ttrue\tx\ty\nlater\nshutdown\n", out)
    assert.are.equal("", err)
    assert.are.equal(0, code)
  end)

  it("logs the failure and exits 1 when main fails", function()
    local out, err, code = H.runScript([[
      local task = require("spindle.task")
      task.react(function(r)
        return task.deferLater(r, 0.01, error, "main broke")
      end)
    ]])
    assert.are.equal("", out)
    assert.truthy(err:find("main function encountered error", 1, true), err)
    assert.truthy(err:find("main broke", 1, true), err)
    assert.are.equal(1, code)
  end)

  it("exits 1 when main raises at once", function()
    local _, err, code = H.runScript([[
      require("spindle.task").react(function() error("sync broke") end)
    ]])
    assert.truthy(err:find("sync broke", 1, true), err)
    assert.are.equal(1, code)
  end)
end)
