-- spec/defer_spec.lua: spindle.defer (API.md, "spindle.defer").
local defer = require("spindle.defer")
local failure = require("spindle.failure")
local log = require("spindle.log")

local Deferred = defer.Deferred

-- A fake clock with Twisted's IReactorTime.callLater shape, until
-- task.Clock lands: callLater(delay, f, ...) -> call with active()/cancel().
local function FakeClock()
  local clock = {now = 0, calls = {}}
  function clock:callLater(delay, f, ...)
    local args = table.pack(...)
    local call = {time = self.now + delay, cancelled = false, called = false}
    function call.active() return not call.cancelled and not call.called end
    function call.cancel() call.cancelled = true end
    call.run = function()
      call.called = true
      f(table.unpack(args, 1, args.n))
    end
    self.calls[#self.calls + 1] = call
    return call
  end
  function clock:advance(s)
    self.now = self.now + s
    for _, call in ipairs(self.calls) do
      if call.active() and call.time <= self.now then call.run() end
    end
  end
  return clock
end

-- Collect log events while fn runs.
local function captureLog(fn)
  local events = {}
  local function observer(e) events[#events + 1] = e end
  local saved = log.observers()
  for _, o in ipairs(saved) do log.removeObserver(o) end
  log.addObserver(observer)
  local ok, err = pcall(fn)
  log.removeObserver(observer)
  for _, o in ipairs(saved) do log.addObserver(o) end
  assert(ok, err)
  return events
end

-- The "Unhandled error in Deferred:" events among captureLog's, in order.
local function unhandled(events)
  local found = {}
  for _, e in ipairs(events) do
    if e.isError and e.why == "Unhandled error in Deferred:" then
      found[#found + 1] = e
    end
  end
  return found
end

-- The message of an error (or of a Failure's value) as a string.
local function message(e)
  if failure.isFailure(e) then e = e.value end
  return tostring(e)
end

describe("defer.Deferred", function()
  it("makes an unfired Deferred with read-only state", function()
    local d = Deferred()
    assert.is_false(d.called)
    assert.equal(0, d.paused)
    assert.is_nil(d.result)
    assert.has_error(function() d.called = true end,
      "Deferred field 'called' is read-only")
    assert.has_error(function() d.result = 1 end)
  end)

  it("keeps other fields a user sets", function()
    local d = Deferred()
    d.label = "mine"
    assert.equal("mine", d.label)
    assert.is_nil(d.other)
  end)

  it("shows its state in tostring like Twisted", function()
    local d = Deferred()
    assert.matches("^<Deferred at 0x%x+>$", tostring(d))
    d:callback(4)
    assert.matches("^<Deferred at 0x%x+ current result: 4>$", tostring(d))
    local outer, inner = Deferred(), Deferred()
    outer:addCallback(function() return inner end)
    outer:callback(1)
    assert.matches("^<Deferred at 0x%x+ waiting on Deferred at 0x%x+>$",
      tostring(outer))
    assert.matches(tostring(inner):match("0x%x+"), tostring(outer), 1, true)
  end)

  it("has metamethods that refuse a value that is not a Deferred",
    function()
      local d = Deferred()
      d:errback("x")
      d:addErrback(function() end)
      for _, m in ipairs({debug.getmetatable(d)}) do
        for _, call in ipairs({
          function() return m.__index(io.stdout, "called") end,
          function() return m.__index({}, "result") end,
          function() m.__newindex(io.stdout, "x", 1) end,
          function() return m.__tostring(io.stdout) end,
          function() return m.__tostring(nil) end,
        }) do
          local ok, e = pcall(call)
          assert.is_false(ok)
          assert.matches("Deferred expected", e, 1, true)
        end
      end
      -- The real ones still work.
      assert.is_true(d.called)
      assert.matches("^<Deferred at", tostring(d))
    end)

  it("rejects a canceller that is not callable", function()
    assert.has_error(function() Deferred(42) end)
  end)
end)

describe("Deferred:addCallback", function()
  it("returns the Deferred and passes results down the chain", function()
    local d = Deferred()
    assert.equal(d, d:addCallback(function(x) return x + 1 end))
    d:addCallback(function(x) return x * 10 end)
    d:callback(1)
    assert.equal(20, d.result)
  end)

  it("keeps nil holes in bound arguments", function()
    local got
    local d = Deferred()
    d:addCallback(function(...) got = table.pack(...) end, nil, 2, nil)
    d:callback(nil)
    assert.equal(4, got.n)
    assert.is_nil(got[1]); assert.is_nil(got[2])
    assert.equal(2, got[3]); assert.is_nil(got[4])
  end)

  it("makes the result nil when the callback returns nothing", function()
    local d = Deferred():addCallback(function() end)
    d:callback(5)
    assert.is_true(d.called)
    assert.is_nil(d.result)
  end)

  it("runs at once when added to a fired Deferred (rule 5)", function()
    local d = defer.succeed(3)
    local got
    d:addCallback(function(x) got = x end)
    assert.equal(3, got)
  end)

  it("skips callbacks while the result is a failure (rule 1)", function()
    local ran = false
    local d = defer.fail("bad"):addCallback(function() ran = true end)
    assert.is_false(ran)
    d:addErrback(function() end)
  end)

  it("rejects a callback that is not callable", function()
    assert.has_error(function() Deferred():addCallback(5) end)
    assert.has_error(function() Deferred.addCallback({}, print) end)
  end)

  it("accepts a callable table", function()
    local obj = setmetatable({}, {__call = function(_, x) return x + 1 end})
    local d = Deferred():addCallback(obj)
    d:callback(1)
    assert.equal(2, d.result)
  end)

  -- The first two slots of a Deferred are kept in the userdata (defer.c,
  -- SLOTS_INLINE), the rest in a table made when first needed: steps that
  -- straddle the two, and a table made while a run is going on.
  it("runs steps added by a running callback, past the first slots",
    function()
      local seen = {}
      local d = Deferred()
      d:addCallback(function(x)
        seen[#seen + 1] = "a" .. x
        d:addCallback(function(y, k) seen[#seen + 1] = k .. y; return y + 1 end,
          "b")
        d:addCallbacks(function(y) seen[#seen + 1] = "c" .. y; return y + 1 end,
          function(f) return f end)
        d:addCallback(function(y) seen[#seen + 1] = "d" .. y; return y end)
        return x + 1
      end)
      d:callback(1)
      assert.same({"a1", "b2", "c3", "d4"}, seen)
      assert.equal(4, d.result)
      d:addBoth(function(y, k) return y .. k end, "!")
      assert.equal("4!", d.result)
    end)

  it("lets go of the callbacks it has run", function()
    local weak = setmetatable({}, {__mode = "k"})
    local d = Deferred()
    local function add(n)
      for _ = 1, n do
        local f = function(x) return x end
        weak[f] = true
        d:addCallback(f)
      end
    end
    add(1)
    d:callback(1)
    add(5)
    d:addCallback(function(x, a, b) return x + a + b end, 2, 3)
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak))
    assert.equal(6, d.result)
  end)
end)

describe("Deferred methods through pcall", function()
  it("name the method and count arguments as written", function()
    -- Lua cannot see a call made through pcall; before, these said
    -- "bad argument #2 to '?'".
    local d = Deferred()
    local function msg(...)
      local ok, err = pcall(...)
      assert.is_false(ok)
      return tostring(err)
    end
    assert.equal("bad argument #1 to 'addCallback' (callable expected, " ..
      "got nil)", msg(d.addCallback, d, nil))
    assert.equal("bad argument #1 to 'addErrback' (callable expected, " ..
      "got number)", msg(d.addErrback, d, 42))
    assert.equal("bad argument #2 to 'addCallbacks' (callable expected, " ..
      "got string)", msg(d.addCallbacks, d, print, "x"))
    assert.equal("bad argument #3 to 'addCallbacks' (table expected, " ..
      "got number)", msg(d.addCallbacks, d, print, print, 1))
    assert.equal("bad argument #1 to 'callback' (a Deferred cannot be a " ..
      "result (return it from a callback to chain it))",
      msg(d.callback, d, Deferred()))
  end)
end)

describe("Deferred:addErrback", function()
  it("gets a Failure and recovers the chain (rule 2)", function()
    local got
    local d = Deferred()
    d:addCallback(function() error("boom") end)
    d:addErrback(function(f, extra)
      got = {f, extra}
      return "recovered"
    end, "x")
    d:addCallback(function(r) return r .. "!" end)
    d:callback(1)
    assert.is_true(failure.isFailure(got[1]))
    assert.matches("boom", got[1]:getErrorMessage())
    assert.equal("x", got[2])
    assert.equal("recovered!", d.result)
  end)

  it("keeps failing when the errback returns the Failure", function()
    local seen = 0
    local d = Deferred()
    d:addErrback(function(f) seen = seen + 1; return f end)
    d:addErrback(function(f) seen = seen + 1; return f end)
    d:addErrback(function() return "ok" end)
    d:errback("e")
    assert.equal(2, seen)
    assert.equal("ok", d.result)
  end)

  it("moves to the errback chain when an errback raises", function()
    local d = Deferred()
    d:addErrback(function() error("second", 0) end)
    local msg
    d:addErrback(function(f) msg = f:getErrorMessage() end)
    d:errback("first")
    assert.equal("second", msg)
  end)

  it("skips errbacks on success", function()
    local ran = false
    local d = defer.succeed(1):addErrback(function() ran = true end)
    assert.is_false(ran)
    assert.equal(1, d.result)
  end)
end)

describe("Deferred:addBoth", function()
  it("runs on success and on failure with the same arguments", function()
    local calls = {}
    local function both(r, tag) calls[#calls + 1] = {r, tag}; return "x" end
    defer.succeed(1):addBoth(both, "a")
    defer.fail("e"):addBoth(both, "b")
    assert.equal(1, calls[1][1]); assert.equal("a", calls[1][2])
    assert.is_true(failure.isFailure(calls[2][1]))
    assert.equal("b", calls[2][2])
  end)
end)

describe("Deferred:addCallbacks", function()
  it("adds one step with both functions and argument tables", function()
    local got
    local d = Deferred()
    d:addCallbacks(function(r, a, b, c) got = {r, a, b, c}; error("x") end,
      function() got = "wrong" end, table.pack(1, nil, 3), {9})
    local eb
    d:addCallbacks(function() end, function(_, a) eb = a end, nil, {7})
    d:callback(0)
    assert.same({0, 1, nil, 3}, got)
    assert.equal(7, eb)
  end)

  it("passes failures through when errback is nil", function()
    local d = Deferred()
    d:addCallbacks(function() return 1 end, nil)
    local f
    d:addErrback(function(x) f = x end)
    d:errback("boom")
    assert.equal("boom", f.value)
  end)
end)

describe("Deferred:chainDeferred", function()
  it("fires the second Deferred with the first's result, one way", function()
    local d1, d2 = Deferred(), Deferred()
    local got
    d2:addCallback(function(r) got = r end)
    assert.equal(d1, d1:chainDeferred(d2))
    d1:callback("v")
    assert.equal("v", got)
    assert.is_nil(d1.result)
    local d3, d4 = Deferred(), Deferred()
    d3:chainDeferred(d4)
    d4:callback(1)
    assert.is_false(d3.called)
  end)

  it("passes failures to the second Deferred's errbacks", function()
    local d1, d2 = Deferred(), Deferred()
    d1:chainDeferred(d2)
    local f
    d2:addErrback(function(x) f = x end)
    d1:errback("bad")
    assert.equal("bad", f.value)
  end)

  -- Issue 7: past about 200 links the C stack overflowed and the value
  -- never arrived.
  for _, how in ipairs({"callback", "errback"}) do
    it("passes a " .. (how == "callback" and "value" or "failure") ..
      " to the end of 100000 chained Deferreds (issue 7)", function()
        local N = 100000
        local ds = {}
        for i = 1, N do ds[i] = Deferred() end
        for i = 1, N - 1 do ds[i]:chainDeferred(ds[i + 1]) end
        local got, errors
        ds[N]:addBoth(function(r) got = r end)
        errors = captureLog(function() ds[1][how](ds[1], "end") end)
        assert.same({}, errors)
        if how == "callback" then
          assert.equal("end", got)
        else
          assert.is_true(failure.isFailure(got))
          assert.equal("end", got.value)
        end
        for i = 1, N - 1 do assert.is_nil(ds[i].result) end
      end)
  end

  it("runs the second Deferred's chain before the first one's next steps",
    function()
      local d1, d2, order = Deferred(), Deferred(), {}
      d1:chainDeferred(d2)
      d1:addCallback(function(r) order[#order + 1] = "d1:" .. tostring(r) end)
      d2:addCallback(function(r) order[#order + 1] = "d2:" .. tostring(r) end)
      d1:callback("v")
      assert.same({"d2:v", "d1:nil"}, order)
    end)

  it("gives the first Deferred AlreadyCalledError if the second has fired",
    function()
      local d1, d2 = Deferred(), defer.succeed(1)
      d1:chainDeferred(d2)
      local f
      d1:addErrback(function(x) f = x end)
      d1:callback(2)
      assert.is_truthy(f:check(defer.AlreadyCalledError))
      assert.equal(1, d2.result)
    end)

  it("eats the result when the second was cancelled without canceller",
    function()
      local d1, d2 = Deferred(), Deferred()
      d1:chainDeferred(d2)
      d2:addErrback(function() end)
      d2:cancel()
      d1:callback(5)
      assert.is_nil(d1.result)
      assert.is_nil(d2.result)
    end)

  it("fires a paused second Deferred, which runs on unpause", function()
    local d1, d2 = Deferred(), Deferred()
    local got
    d2:pause()
    d2:addCallback(function(r) got = r end)
    d1:chainDeferred(d2)
    d1:callback("v")
    assert.is_nil(got)
    assert.is_true(d2.called)
    d2:unpause()
    assert.equal("v", got)
  end)
end)

describe("Deferred:callback", function()
  it("raises AlreadyCalledError on a second fire", function()
    local d = Deferred()
    d:callback(1)
    local ok, e = pcall(d.callback, d, 2)
    assert.is_false(ok)
    assert.equal(defer.AlreadyCalledError, getmetatable(e))
    ok, e = pcall(d.errback, d, "x")
    assert.is_false(ok)
    assert.equal(defer.AlreadyCalledError, getmetatable(e))
  end)

  it("refuses a Deferred as the result", function()
    assert.has_error(function() Deferred():callback(Deferred()) end)
  end)

  it("treats a Failure as the result like errback", function()
    local d = Deferred()
    local f
    d:addErrback(function(x) f = x end)
    local fail = failure.Failure("x")
    d:callback(fail)
    assert.equal(fail, f)
  end)

  it("ignores the first late fire after cancel() without canceller",
    function()
      local d = Deferred()
      d:addErrback(function(f) f:trap(defer.CancelledError) end)
      d:cancel()
      d:callback("late") -- ignored, as Twisted's _suppressAlreadyCalled
      assert.has_error(function() d:callback("again") end)
    end)

  it("does not ignore a late fire when there was a canceller", function()
    local d = Deferred(function() end)
    d:addErrback(function() end)
    d:cancel()
    assert.has_error(function() d:callback("late") end)
  end)
end)

describe("Deferred:errback", function()
  it("wraps a non-Failure value in a Failure", function()
    local f
    local E = defer.errorType("MyError")
    Deferred():addErrback(function(x) f = x end):errback(E("m"))
    assert.is_true(failure.isFailure(f))
    assert.equal(E, f.type)
    assert.equal("m", f:getErrorMessage())
  end)

  it("makes a Failure with a message when called without one", function()
    local f
    Deferred():addErrback(function(x) f = x end):errback()
    assert.equal("errback() called without a failure", f:getErrorMessage())
  end)
end)

describe("Deferred:pause", function()
  it("is counted, and unpause at zero runs what was added", function()
    local d = Deferred()
    local ran = 0
    d:pause(); d:pause()
    assert.equal(2, d.paused)
    d:addCallback(function() ran = ran + 1 end)
    d:callback(1)
    assert.equal(0, ran)
    d:unpause()
    assert.equal(0, ran)
    d:unpause()
    assert.equal(1, ran)
    assert.equal(0, d.paused)
  end)

  it("stops the chain when called inside a callback", function()
    local d = Deferred()
    local order = {}
    d:addCallback(function(r) order[#order + 1] = "a"; d:pause(); return r end)
    d:addCallback(function(r) order[#order + 1] = "b"; return r + 1 end)
    d:callback(1)
    assert.same({"a"}, order)
    d:unpause()
    assert.same({"a", "b"}, order)
    assert.equal(2, d.result)
  end)

  -- Issue 7: unpause() on a Deferred waiting for an inner one resumed the
  -- chain with the inner Deferred as the value and miscounted.
  it("does not resume a Deferred waiting on an inner one (issue 7)",
    function()
      local outer, inner = Deferred(), Deferred()
      local got = {}
      outer:addCallback(function() return inner end)
      outer:addCallback(function(r) got[#got + 1] = r; return r end)
      outer:callback(1)
      assert.equal(1, outer.paused)
      outer:unpause()
      assert.same({}, got)
      assert.equal(1, outer.paused)
      inner:callback(2)
      assert.same({2}, got)
      assert.equal(0, outer.paused)
      outer:pause()
      outer:addCallback(function(r) got[#got + 1] = r + 1; return r end)
      assert.same({2}, got)
      outer:unpause()
      assert.same({2, 3}, got)
      assert.equal(0, outer.paused)
    end)

  it("keeps a user pause made while waiting until its unpause", function()
    local outer, inner = Deferred(), Deferred()
    local got
    outer:addCallback(function() return inner end)
    outer:addCallback(function(r) got = r end)
    outer:callback(1)
    outer:pause()
    assert.equal(2, outer.paused)
    inner:callback(2)
    assert.is_nil(got)
    assert.equal(1, outer.paused)
    outer:unpause()
    assert.equal(2, got)
    assert.equal(0, outer.paused)
  end)

  it("test_chainedPausedDeferredWithResult, unpaused while waiting",
    function()
      local paused = defer.succeed("expected")
      paused:pause()
      local chained = Deferred()
      chained:addCallback(function() return paused end)
      chained:callback(nil)
      local result = {}
      chained:addCallback(function(r) result[#result + 1] = r end)
      chained:unpause()
      assert.same({}, result)
      paused:unpause()
      assert.same({"expected"}, result)
    end)
end)

describe("Deferred:cancel", function()
  it("runs the canceller, then errbacks CancelledError", function()
    local seen
    local d = Deferred(function(x) seen = x end)
    local f
    d:addErrback(function(x) f = x end)
    d:cancel()
    assert.equal(d, seen)
    assert.is_truthy(f:check(defer.CancelledError))
  end)

  it("lets a canceller fire the Deferred itself", function()
    local d = Deferred(function(x) x:callback("stopped") end)
    d:cancel()
    assert.equal("stopped", d.result)
  end)

  it("does nothing on a fired Deferred", function()
    local d = defer.succeed(1)
    d:cancel()
    assert.equal(1, d.result)
  end)

  it("cancels the inner Deferred it waits on", function()
    local innerCancelled = false
    local inner = Deferred(function() innerCancelled = true end)
    local outer = Deferred()
    outer:addCallback(function() return inner end)
    local f
    outer:addErrback(function(x) f = x end)
    outer:callback(1)
    outer:cancel()
    assert.is_true(innerCancelled)
    assert.is_truthy(f:check(defer.CancelledError))
    assert.is_nil(inner.result)
  end)

  it("reaches the innermost of a long chain of waits", function()
    local ds = {}
    for i = 1, 1000 do ds[i] = Deferred() end
    for i = 1, 999 do ds[i]:addCallback(function() return ds[i + 1] end) end
    for i = 1, 999 do ds[i]:callback(i) end
    local f
    ds[1]:addErrback(function(x) f = x end)
    ds[1]:cancel()
    assert.is_truthy(f:check(defer.CancelledError))
  end)
end)

describe("Deferred:addTimeout", function()
  it("fails with TimeoutError when the time passes", function()
    local clock = FakeClock()
    local d = Deferred()
    d:addTimeout(2, clock)
    local f
    d:addErrback(function(x) f = x end)
    clock:advance(1)
    assert.is_false(d.called)
    clock:advance(1.5)
    assert.is_truthy(f:check(defer.TimeoutError))
  end)

  it("cancels the timer when the Deferred fires first", function()
    local clock = FakeClock()
    local d = Deferred():addTimeout(2, clock)
    d:callback("done")
    assert.is_false(clock.calls[1].active())
    assert.equal("done", d.result)
  end)

  it("calls onTimeoutCancel with the value and the timeout", function()
    local clock = FakeClock()
    local got
    local d = Deferred():addTimeout(3, clock, function(_, t)
      got = t
      return "converted"
    end)
    clock:advance(3)
    assert.equal(3, got)
    assert.equal("converted", d.result)
  end)

  it("rejects a timeout that is not a number", function()
    assert.has_error(function() Deferred():addTimeout("x", FakeClock()) end,
      "bad argument #1 to 'addTimeout' (number expected, got string)")
  end)

  it("rejects a negative or NaN timeout naming addTimeout", function()
    assert.has_error(function() Deferred():addTimeout(-1, FakeClock()) end,
      "bad argument #1 to 'addTimeout' (timeout must be >= 0)")
    assert.has_error(function() Deferred():addTimeout(-1) end,
      "bad argument #1 to 'addTimeout' (timeout must be >= 0)")
    assert.has_error(function() Deferred():addTimeout(0 / 0) end,
      "bad argument #1 to 'addTimeout' (timeout is NaN)")
  end)

  it("rejects a clock without callLater and a bad onTimeoutCancel",
    function()
      assert.has_error(function() Deferred():addTimeout(1, {}) end,
        "bad argument #2 to 'addTimeout' (clock with callLater expected)")
      assert.has_error(function() Deferred():addTimeout(1, io.stdout) end,
        "bad argument #2 to 'addTimeout' (clock with callLater expected)")
      assert.has_error(function()
        Deferred():addTimeout(1, FakeClock(), 5)
      end, "bad argument #3 to 'addTimeout' (callable expected, got number)")
    end)
end)

describe("chain rule 3: a step returning a Deferred", function()
  it("pauses the outer chain until the inner one fires", function()
    local inner = Deferred()
    local outer = Deferred()
    local got
    outer:addCallback(function() return inner end)
    outer:addCallback(function(r) got = r; return r end)
    outer:callback(1)
    assert.is_nil(got)
    assert.equal(1, outer.paused)
    inner:callback("inner")
    assert.equal("inner", got)
    assert.is_nil(inner.result)
    assert.equal(0, outer.paused)
  end)

  it("continues the outer chain with the inner failure", function()
    local inner = Deferred()
    local outer = Deferred()
    local f
    outer:addCallback(function() return inner end)
    outer:addErrback(function(x) f = x; return "handled" end)
    outer:callback(1)
    inner:errback("bad")
    assert.equal("bad", f.value)
    assert.equal("handled", outer.result)
    assert.is_nil(inner.result)
  end)

  it("takes the result of an inner Deferred that has fired", function()
    local inner = defer.succeed(7)
    local d = defer.succeed(1):addCallback(function() return inner end)
    assert.equal(7, d.result)
    assert.is_nil(inner.result)
  end)

  it("works when an errback returns a Deferred", function()
    local inner = Deferred()
    local outer = defer.fail("x"):addErrback(function() return inner end)
    assert.is_true(outer.called)
    inner:callback("again")
    assert.equal("again", outer.result)
  end)

  it("turns a callback returning its own Deferred into a failure", function()
    local d = Deferred()
    d:addCallback(function() return d end)
    local f
    d:addErrback(function(x) f = x end)
    d:callback(1)
    assert.matches("returned the Deferred it was attached to",
      f:getErrorMessage())
  end)
end)

describe("chain rule 4: long chains", function()
  it("runs 100000 Deferreds each waiting on the next", function()
    local N = 100000
    local ds = {}
    for i = 1, N do ds[i] = Deferred() end
    for i = 1, N - 1 do ds[i]:addCallback(function() return ds[i + 1] end) end
    local got
    ds[1]:addCallback(function(r) got = r end)
    for i = 1, N - 1 do ds[i]:callback(i) end
    ds[N]:callback("end")
    assert.equal("end", got)
  end)

  it("runs 100000 Deferreds each returned already fired", function()
    local d = Deferred()
    for _ = 1, 100000 do
      d:addCallback(function(r) return defer.succeed(r + 1) end)
    end
    d:callback(0)
    assert.equal(100000, d.result)
  end)
end)

describe("chain rule 6: unhandled errors", function()
  it("logs a failure left in a collected Deferred, once", function()
    local events = captureLog(function()
      local d = Deferred()
      d:errback("lost error")
      d = nil -- luacheck: ignore 311
      collectgarbage(); collectgarbage()
    end)
    local found = unhandled(events)
    assert.equal(1, #found)
    assert.equal("lost error", found[1].failure.value)
    assert.matches("lost error", log.textFromEventDict(found[1]))
  end)

  it("logs nothing when the failure was handled", function()
    local events = captureLog(function()
      local d = Deferred()
      d:errback("handled")
      d:addErrback(function() end)
      d = nil -- luacheck: ignore 311
      collectgarbage(); collectgarbage()
    end)
    for _, e in ipairs(events) do
      assert.is_not.equal("Unhandled error in Deferred:", e.why)
    end
  end)

  -- Issue 7: a Deferred used to get a finalizer (a new metatable) when it
  -- failed, and Lua finds an object's place by walking every object made
  -- after it: failing cost time in proportion to the heap.
  it("keeps the Deferred's metatable when it fails (issue 7)", function()
    local d = Deferred()
    local mt = debug.getmetatable(d)
    assert.is_nil(rawget(mt, "__gc"))
    d:errback("x")
    assert.equal(mt, debug.getmetatable(d))
    d:addErrback(function() end)
  end)

  it("logs each of many failed Deferreds once", function()
    local events = captureLog(function()
      local ds = {}
      for i = 1, 1000 do ds[i] = Deferred() end
      local newer = {}
      for i = 1, 10000 do newer[i] = {} end
      for i = 1000, 1, -1 do ds[i]:errback("e" .. i) end
      assert.equal(10000, #newer)
      ds, newer = nil, nil -- luacheck: ignore
      collectgarbage(); collectgarbage()
    end)
    local seen, found = {}, 0
    for _, e in ipairs(events) do
      if e.isError and e.why == "Unhandled error in Deferred:" and
        tostring(e.failure.value):match("^e%d+$") then
        found = found + 1
        assert.is_nil(seen[e.failure.value])
        seen[e.failure.value] = true
      end
    end
    assert.equal(1000, found)
  end)

  it("logs nothing when the failure is handled after a collection",
    function()
      local events = captureLog(function()
        local d = Deferred()
        d:errback("late")
        collectgarbage(); collectgarbage()
        d:addErrback(function() end)
        d = nil -- luacheck: ignore
        collectgarbage(); collectgarbage()
      end)
      for _, e in ipairs(events) do
        assert.is_not.equal("Unhandled error in Deferred:", e.why)
      end
    end)

  it("logs a failure raised again after one was handled, once", function()
    local events = captureLog(function()
      local d = Deferred()
      d:errback("first")
      d:addErrback(function() return "handled" end)
      d:addCallback(function() error("second", 0) end)
      d = nil -- luacheck: ignore
      collectgarbage(); collectgarbage()
    end)
    local found = {}
    for i, e in ipairs(unhandled(events)) do found[i] = e.failure.value end
    assert.same({"second"}, found)
  end)

  it("logs nothing for a failure handed to an outer Deferred", function()
    local events = captureLog(function()
      local inner = Deferred()
      local outer = Deferred()
      outer:addCallback(function() return inner end)
      outer:addErrback(function() end)
      outer:callback(1)
      inner:errback("passed on")
      inner, outer = nil, nil -- luacheck: ignore 311
      collectgarbage(); collectgarbage()
    end)
    for _, e in ipairs(events) do
      assert.is_not.equal("Unhandled error in Deferred:", e.why)
    end
  end)
end)

describe("defer.setDebugging", function()
  after_each(function() defer.setDebugging(false) end)

  it("makes AlreadyCalledError name where the Deferred was made and fired",
    function()
      defer.setDebugging(true)
      assert.is_true(defer.getDebugging())
      local d = Deferred()                  -- made here
      local madeLine = debug.getinfo(1, "l").currentline - 1
      d:callback(1)                         -- first fired here
      local firedLine = debug.getinfo(1, "l").currentline - 1
      local ok, e = pcall(d.callback, d, 2)
      assert.is_false(ok)
      local msg = tostring(e)
      assert.matches("Deferred was created", msg, 1, true)
      assert.matches("First Invoker was", msg, 1, true)
      assert.matches("defer_spec.lua:" .. madeLine .. ":", msg, 1, true)
      assert.matches("defer_spec.lua:" .. firedLine .. ":", msg, 1, true)
    end)

  it("leaves the places out when off", function()
    local d = defer.succeed(1)
    local _, e = pcall(d.callback, d, 2)
    assert.is_nil(tostring(e):find("Deferred was created", 1, true))
  end)
end)

describe("defer.succeed", function()
  it("returns a fired Deferred", function()
    local d = defer.succeed("v")
    assert.is_true(d.called)
    assert.equal("v", d.result)
  end)
end)

describe("defer.fail", function()
  it("returns a failed Deferred, wrapping the value", function()
    local d = defer.fail("e")
    assert.is_true(failure.isFailure(d.result))
    assert.equal("e", d.result.value)
    d:addErrback(function() end)
  end)
end)

describe("defer.maybeDeferred", function()
  it("wraps a plain value, a raise, a Failure and a Deferred", function()
    assert.equal(3, defer.maybeDeferred(function(a, b) return a + b end,
      1, 2).result)
    local d = defer.maybeDeferred(function() error("oops") end)
    assert.matches("oops", d.result:getErrorMessage())
    assert.matches("defer_spec.lua", d.result:getTraceback())
    d:addErrback(function() end)
    local f = failure.Failure("x")
    local fd = defer.maybeDeferred(function() return f end)
    assert.equal(f, fd.result)
    fd:addErrback(function() end)
    local inner = Deferred()
    assert.equal(inner, defer.maybeDeferred(function() return inner end))
  end)

  it("passes nil arguments", function()
    local d = defer.maybeDeferred(function(...) return select("#", ...) end,
      nil, nil)
    assert.equal(2, d.result)
  end)
end)

describe("defer.DeferredList", function()
  it("fires with {success, value} pairs in order", function()
    local a, b = Deferred(), Deferred()
    local dl = defer.DeferredList({a, b})
    b:callback("b")
    assert.is_false(dl.called)
    a:errback("bad")
    local r = dl.result
    assert.same({true, "b"}, r[2])
    assert.is_false(r[1][1])
    assert.equal("bad", r[1][2].value)
    a:addErrback(function() end)
  end)

  it("gives its pairs n = 2, so that a nil value is kept", function()
    local r = defer.DeferredList({defer.succeed(nil), defer.succeed(2)})
      .result
    assert.equal(2, r[1].n)
    assert.same({true, nil}, {table.unpack(r[1], 1, r[1].n)})
    assert.same({{true, nil}, {true, 2}}, r)
    local one = defer.DeferredList({Deferred(), defer.succeed(nil)},
      {fireOnOneCallback = true}).result
    assert.equal(2, one.n)
    assert.is_nil(one[1])
    assert.equal(2, one[2])
  end)

  it("fires at once with {} for an empty list", function()
    assert.same({}, defer.DeferredList({}).result)
  end)

  it("fires with {value, index} on fireOnOneCallback", function()
    local a, b = Deferred(), Deferred()
    local dl = defer.DeferredList({a, b}, {fireOnOneCallback = true})
    b:callback("second")
    assert.same({"second", 2}, dl.result)
    a:callback("late")
  end)

  it("fails with FirstError on fireOnOneErrback", function()
    local a, b = Deferred(), Deferred()
    local dl = defer.DeferredList({a, b}, {fireOnOneErrback = true,
      consumeErrors = true})
    local f
    dl:addErrback(function(x) f = x end)
    b:errback("boom")
    assert.is_truthy(f:check(defer.FirstError))
    assert.equal(2, f.value.index)
    assert.equal("boom", f.value.subFailure.value)
    assert.is_nil(b.result) -- consumed
  end)

  it("cancels every Deferred when cancelled", function()
    local a, b = Deferred(), Deferred()
    local dl = defer.DeferredList({a, b}, {consumeErrors = true})
    dl:cancel()
    assert.is_true(a.called and b.called)
    assert.is_false(dl.result[1][1])
    assert.is_truthy(dl.result[1][2]:check(defer.CancelledError))
  end)

  it("rejects a list with something other than Deferreds", function()
    assert.has_error(function() defer.DeferredList({1}) end)
  end)
end)

describe("defer.gatherResults", function()
  it("fires with the list of results", function()
    local a, b = Deferred(), Deferred()
    local d = defer.gatherResults({a, b})
    a:callback(1)
    b:callback(2)
    assert.same({1, 2}, d.result)
  end)

  it("sets n to the number of results, nil results included", function()
    local d = defer.gatherResults({defer.succeed(1), defer.succeed(nil),
      defer.succeed(3)})
    local r = d.result
    assert.equal(3, r.n)
    assert.equal(1, r[1])
    assert.is_nil(r[2])
    assert.equal(3, r[3])
    assert.same({1, 2}, defer.gatherResults({defer.succeed(1),
      defer.succeed(2)}).result)
    assert.equal(0, defer.gatherResults({}).result.n)
  end)

  it("fails with FirstError at the first failure", function()
    local a, b = Deferred(), Deferred()
    local d = defer.gatherResults({a, b}, true)
    local f
    d:addErrback(function(x) f = x end)
    a:errback("no")
    assert.equal(1, f.value.index)
    assert.equal("no", f.value.subFailure.value)
  end)
end)

describe("defer.inlineCallbacks", function()
  it("returns a Deferred of the function's return value", function()
    local gate = Deferred()
    local f = defer.inlineCallbacks(function(a, b)
      local x = defer.await(gate)
      local y = defer.await(defer.succeed(10))
      return a + b + x + y
    end)
    local d = f(1, 2)
    assert.is_false(d.called)
    gate:callback(100)
    assert.equal(113, d.result)
  end)

  it("raises the awaited Failure itself so trap works", function()
    local trapped
    local E = defer.errorType("E")
    local f = defer.inlineCallbacks(function()
      local ok, err = pcall(defer.await, defer.fail(E("x")))
      assert(not ok)
      assert(failure.isFailure(err))
      trapped = err:trap(E)
      return "after"
    end)
    assert.equal("after", f().result)
    assert.equal(E, trapped)
  end)

  it("fails with the traceback of the raise point", function()
    local f = defer.inlineCallbacks(function()
      defer.await(defer.succeed(1))
      error("from coroutine")
    end)
    local raiseLine = debug.getinfo(1, "l").currentline - 2
    local d = f()
    local fl = d.result
    assert.is_true(failure.isFailure(fl))
    assert.matches("from coroutine", fl:getErrorMessage())
    assert.matches("defer_spec.lua:" .. raiseLine .. ":", fl:getTraceback(),
      1, true)
    d:addErrback(function() end)
  end)

  it("fails with a nil-valued Failure when fn raises nil before awaiting",
    function()
      for _, raise in ipairs({function() error() end,
        function() error(nil) end}) do
        local f = defer.inlineCallbacks(raise)
        local ok, d = pcall(f)
        assert.is_true(ok, d)
        assert.is_true(d.called)
        local fl = d.result
        assert.is_true(failure.isFailure(fl))
        assert.is_nil(fl.value)
        assert.equal("nil", fl.type)
        assert.equal("nil", fl:getErrorMessage())
        assert.matches("defer_spec.lua", fl:getTraceback(), 1, true)
        d:addErrback(function() end)
      end
    end)

  it("fails with a nil-valued Failure when fn raises nil after awaiting",
    function()
      local gate = Deferred()
      local f = defer.inlineCallbacks(function()
        defer.await(gate)
        error(nil)
      end)
      local d = f()
      local events = captureLog(function() gate:callback(1) end)
      assert.same({}, events)
      assert.is_true(d.called)
      assert.is_nil(d.result.value)
      assert.equal("nil", d.result:getErrorMessage())
      d:addErrback(function() end)
    end)

  it("cancels the awaited Deferred when the outer one is cancelled",
    function()
      local awaitedCancelled = false
      local awaited = Deferred(function() awaitedCancelled = true end)
      local f = defer.inlineCallbacks(function()
        return defer.await(awaited)
      end)
      local d = f()
      local fl
      d:addErrback(function(x) fl = x end)
      d:cancel()
      assert.is_true(awaitedCancelled)
      assert.is_truthy(fl:check(defer.CancelledError))
    end)

  it("lets the coroutine catch the cancel and go on", function()
    local f = defer.inlineCallbacks(function()
      local ok = pcall(defer.await, Deferred())
      assert(not ok)
      return "recovered"
    end)
    local d = f()
    d:cancel()
    assert.equal("recovered", d.result)
  end)

  it("loops over many fired Deferreds without growing the stack", function()
    local f = defer.inlineCallbacks(function()
      local s = 0
      for i = 1, 100000 do s = s + defer.await(defer.succeed(i)) end
      return s
    end)
    assert.equal(5000050000, f().result)
  end)
end)

describe("defer.await", function()
  it("raises a clear error outside inlineCallbacks", function()
    assert.has_error(function() defer.await(defer.succeed(1)) end,
      "await() called outside an inlineCallbacks function " ..
      "(wrap the caller in defer.inlineCallbacks)")
  end)

  it("returns a non-Deferred as it is", function()
    local f = defer.inlineCallbacks(function() return defer.await(5) end)
    assert.equal(5, f().result)
  end)
end)

describe("defer.DeferredLock", function()
  it("hands the lock out in order", function()
    local lock = defer.DeferredLock()
    local order = {}
    lock:acquire():addCallback(function(l) order[#order + 1] = 1; return l end)
    local second = lock:acquire():addCallback(function()
      order[#order + 1] = 2
    end)
    assert.is_true(lock.locked)
    assert.same({1}, order)
    lock:release()
    assert.same({1, 2}, order)
    assert.is_true(second.called)
    lock:release()
    assert.is_false(lock.locked)
    assert.has_error(function() lock:release() end)
  end)

  it("runs a function under the lock and releases after", function()
    local lock = defer.DeferredLock()
    local gate = Deferred()
    local d = lock:run(function(x)
      return gate:addCallback(function() return x end)
    end, "v")
    assert.is_true(lock.locked)
    gate:callback()
    assert.equal("v", d.result)
    assert.is_false(lock.locked)
  end)

  it("names the method when called with a dot", function()
    local lock = defer.DeferredLock()
    lock:acquire()
    assert.has_error(function() lock.release() end,
      "calling 'release' on bad self (DeferredLock expected, got nil; " ..
      "call it as obj:release())")
    assert.is_true(lock.locked)
    assert.has_error(function() lock.run(function() end) end,
      "calling 'run' on bad self (DeferredLock expected, got function; " ..
      "call it as obj:run())")
  end)

  it("removes a cancelled waiter", function()
    local lock = defer.DeferredLock()
    lock:acquire()
    local w = lock:acquire()
    w:addErrback(function() end)
    w:cancel()
    lock:release()
    assert.is_false(lock.locked)
  end)
end)

describe("defer.DeferredSemaphore", function()
  it("lets `tokens` holders in at once", function()
    local sem = defer.DeferredSemaphore(2)
    local a, b, c = sem:acquire(), sem:acquire(), sem:acquire()
    assert.is_true(a.called and b.called)
    assert.is_false(c.called)
    assert.equal(0, sem.tokens)
    sem:release()
    assert.is_true(c.called)
    assert.equal(2, sem.limit)
    assert.has_error(function() defer.DeferredSemaphore(0) end,
      "bad argument #1 to 'DeferredSemaphore' " ..
      "(DeferredSemaphore requires tokens >= 1)")
  end)

  it("takes an integral float and names the argument otherwise", function()
    local sem = defer.DeferredSemaphore(2.0)
    assert.equal(2, sem.limit)
    assert.equal("integer", math.type(sem.tokens))
    assert.has_error(function() defer.DeferredSemaphore(2.5) end,
      "bad argument #1 to 'DeferredSemaphore' " ..
      "(DeferredSemaphore requires an integer number of tokens)")
    assert.has_error(function() defer.DeferredSemaphore("2") end,
      "bad argument #1 to 'DeferredSemaphore' (number expected, got string)")
  end)

  it("names the method when called with a dot", function()
    local sem = defer.DeferredSemaphore(1)
    assert.has_error(function() sem.release() end,
      "calling 'release' on bad self (DeferredSemaphore expected, got nil; " ..
      "call it as obj:release())")
    assert.has_error(function() sem.acquire(5) end,
      "calling 'acquire' on bad self (DeferredSemaphore expected, " ..
      "got number; call it as obj:acquire())")
  end)
end)

describe("defer.DeferredQueue", function()
  it("hands out objects in order, to waiting gets first", function()
    local q = defer.DeferredQueue()
    local g = q:get()
    q:put("a")
    assert.equal("a", g.result)
    q:put("b"); q:put("c")
    assert.equal("b", q:get().result)
    assert.equal("c", q:get().result)
  end)

  it("raises QueueOverflow and QueueUnderflow past its limits", function()
    local q = defer.DeferredQueue(1, 1)
    q:put(1)
    local ok, e = pcall(q.put, q, 2)
    assert.is_false(ok)
    assert.equal(defer.QueueOverflow, getmetatable(e))
    q:get()
    q:get()
    ok, e = pcall(q.get, q)
    assert.is_false(ok)
    assert.equal(defer.QueueUnderflow, getmetatable(e))
  end)

  it("queues nil like any object", function()
    local q = defer.DeferredQueue()
    q:put(1); q:put(nil); q:put(3)
    assert.equal(3, q.pending.n)
    local a, b, c, d = q:get(), q:get(), q:get(), q:get()
    assert.equal(1, a.result)
    assert.is_true(b.called)
    assert.is_nil(b.result)
    assert.equal(3, c.result)
    assert.is_false(d.called)
    assert.equal(0, q.pending.n)
    q:put(nil)
    assert.is_true(d.called)
    assert.is_nil(d.result)
  end)

  it("counts nils against size", function()
    local q = defer.DeferredQueue(2)
    q:put(nil); q:put(nil)
    local ok, e = pcall(q.put, q, nil)
    assert.is_false(ok)
    assert.equal(defer.QueueOverflow, getmetatable(e))
  end)

  it("rejects a size or backlog that is not a number >= 0", function()
    assert.has_error(function() defer.DeferredQueue("x") end,
      "bad argument #1 to 'DeferredQueue' (number or nil expected, " ..
      "got string)")
    assert.has_error(function() defer.DeferredQueue(nil, {}) end,
      "bad argument #2 to 'DeferredQueue' (number or nil expected, " ..
      "got table)")
    assert.has_error(function() defer.DeferredQueue(-1) end,
      "bad argument #1 to 'DeferredQueue' (size must be >= 0)")
    assert.has_error(function() defer.DeferredQueue(0 / 0) end,
      "bad argument #1 to 'DeferredQueue' (size is NaN)")
    assert.has_error(function() defer.DeferredQueue().put(1) end,
      "calling 'put' on bad self (DeferredQueue expected, got number; " ..
      "call it as obj:put())")
  end)
end)

describe("defer module", function()
  it("is strict and exports the error types", function()
    assert.has_error(function() return defer.Deferrd end,
      "defer has no field 'Deferrd' (did you mean 'Deferred'?)")
    for _, name in ipairs({"AlreadyCalledError", "CancelledError",
      "TimeoutError", "FirstError", "QueueOverflow", "QueueUnderflow"}) do
      assert.is_table(defer[name], name)
    end
    assert.equal(failure.errorType, defer.errorType)
    local T = defer.errorType("MyError")
    assert.equal("MyError: msg", tostring(T("msg")))
  end)

  it("refuses an errorType name that is not a string", function()
    assert.has_error(function() defer.errorType(5) end)
    local ok, e = pcall(defer.errorType, 5)
    assert.is_false(ok)
    assert.matches("bad argument #1 to '.*errorType' " ..
      "%(string expected, got number%)", e)
  end)

  it("gives messages a string form", function()
    assert.equal("x", message("x"))
  end)
end)

-- Ported from Twisted's twisted/test/test_defer.py (names kept).
describe("Deferred chaining, as Twisted's test_defer", function()
  local function append(list) return function(r) list[#list + 1] = r end end

  it("test_reentrantRunCallbacks: adds to the end of the chain", function()
    local d, called = Deferred(), {}
    d:addCallback(function()
      called[#called + 1] = 1
      d:addCallback(function() called[#called + 1] = 3 end)
    end)
    d:addCallback(function() called[#called + 1] = 2 end)
    d:callback(nil)
    assert.same({1, 2, 3}, called)
  end)

  it("test_nonReentrantCallbacks: runs after the running callback",
    function()
      local d, called = Deferred(), {}
      d:addCallback(function()
        called[#called + 1] = 1
        d:addCallback(function() called[#called + 1] = 2 end)
        assert.same({1}, called)
      end)
      d:callback(nil)
      assert.same({1, 2}, called)
    end)

  it("test_reentrantRunCallbacksWithFailure", function()
    local d = Deferred()
    d:addCallback(function()
      d:addCallback(function() error("callback raised exception", 0) end)
    end)
    d:callback(nil)
    assert.equal("callback raised exception", d.result.value)
    d:addErrback(function() end)
  end)

  it("test_nestedAsynchronousChainedDeferreds", function()
    local results, failures = {}, {}
    local inner = Deferred()
    local function cb(result)
      results[#results + 1] = {"start-of-cb", result}
      local d = defer.succeed("inner")
      d:addCallback(function()
        results[#results + 1] = {"firstCallback", "inner"}
        return inner
      end):addCallback(function(r)
        results[#results + 1] = {"secondCallback", r}
        return r .. r
      end)
      d:addErrback(append(failures))
      return d
    end
    local outer = defer.succeed("outer")
    outer:addCallback(cb)
    outer:addCallback(append(results))
    assert.same({{"start-of-cb", "outer"}, {"firstCallback", "inner"}},
      results)
    inner:callback("orange")
    inner:addErrback(append(failures))
    outer:addErrback(append(failures))
    assert.same({}, failures)
    assert.same({{"start-of-cb", "outer"}, {"firstCallback", "inner"},
      {"secondCallback", "orange"}, "orangeorange"}, results)
  end)

  it("test_boundedStackDepth: callbacks run at the same depth", function()
    local function depth()
      local n = 1
      while debug.getinfo(n, "l") do n = n + 1 end
      return n
    end
    local function chainDeferreds(howMany)
      local stack = {}
      local top = Deferred()
      local inners = {}
      for i = 1, howMany do inners[i] = Deferred() end
      local originals = table.move(inners, 1, #inners, 1, {})
      local last = Deferred()
      local inner = table.remove(inners)
      top:addCallback(function() return inner end)
      top:addCallback(function() stack[#stack + 1] = depth() end)
      while #inners > 0 do
        local newInner = table.remove(inners)
        inner:addCallback(function() return newInner end)
        inner = newInner
      end
      inner:addCallback(function() return last end)
      top:callback(nil)
      for _, d in ipairs(originals) do d:callback(nil) end
      assert.same({}, stack)
      last:callback(nil)
      return stack[1]
    end
    assert.equal(chainDeferreds(1), chainDeferreds(2))
    assert.equal(chainDeferreds(1), chainDeferreds(1000))
  end)

  it("test_resultOfDeferredResultOfDeferredOfFiredDeferredCalled",
    function()
      local first, second, third = Deferred(), Deferred(), Deferred()
      first:addCallback(function() return second end)
      second:addCallback(function() return third end)
      second:callback(nil)
      first:callback(nil)
      third:callback(nil)
      local results = {}
      second:addCallback(function(r) results[#results + 1] = r or "nil" end)
      assert.same({"nil"}, results)
    end)

  it("test_chainedPausedDeferredWithResult", function()
    local expected = {}
    local paused = Deferred()
    paused:callback(expected)
    paused:pause()
    local chained = Deferred()
    chained:addCallback(function() return paused end)
    chained:callback(nil)
    local result = {}
    chained:addCallback(append(result))
    assert.same({}, result)
    paused:unpause()
    assert.equal(expected, result[1])
  end)

  it("test_pausedDeferredChained", function()
    local first, second = Deferred(), Deferred()
    first:addCallback(function() return second end)
    first:callback(nil)
    first:pause()
    second:callback(nil)
    local result = {}
    second:addCallback(function(r) result[#result + 1] = r or "nil" end)
    assert.same({"nil"}, result)
  end)

  it("test_innerCallbacksPreserved", function()
    local results, failures = {}, {}
    local inner = Deferred()
    local function cb(result)
      results[#results + 1] = {"start-of-cb", result}
      local d = defer.succeed("inner")
      d:addCallback(function()
        results[#results + 1] = {"firstCallback", "inner"}
        return inner
      end):addCallback(function(r)
        results[#results + 1] = {"secondCallback", r}
        return r .. r
      end)
      d:addErrback(append(failures))
      return d
    end
    local outer = defer.succeed("outer")
    outer:addCallback(cb)
    inner:callback("orange")
    outer:addCallback(append(results))
    inner:addErrback(append(failures))
    outer:addErrback(append(failures))
    assert.same({}, failures)
    assert.same({{"start-of-cb", "outer"}, {"firstCallback", "inner"},
      {"secondCallback", "orange"}, "orangeorange"}, results)
  end)

  it("test_callbackOrderPreserved", function()
    local results, failures = {}, {}
    local a = Deferred()
    local function cb(result)
      results[#results + 1] = {"cb", result}
      local d = Deferred()
      d:addCallback(function()
        results[#results + 1] = {"firstCallback"}
        return defer.gatherResults({a})
      end)
      d:addCallback(function(r)
        results[#results + 1] = {"secondCallback", r}
      end)
      d:addErrback(append(failures))
      d:callback(nil)
      return d
    end
    local outer = Deferred()
    outer:addCallback(cb)
    outer:addCallback(function() results[#results + 1] = {"final"} end)
    outer:addErrback(append(failures))
    outer:callback("outer")
    assert.same({{"cb", "outer"}, {"firstCallback"}}, results)
    a:callback("withers")
    assert.same({}, failures)
    assert.same({{"cb", "outer"}, {"firstCallback"},
      {"secondCallback", {"withers"}}, {"final"}}, results)
  end)

  it("test_cancelNestedDeferred", function()
    local count = 0
    local b = Deferred(function() count = count + 1 end)
    local a = Deferred(function() error("must not be called") end)
    a:callback(nil)
    a:addCallback(function() return b end)
    a:cancel()
    local f
    a:addErrback(function(x) f = x end)
    assert.equal(1, count)
    assert.equal(defer.CancelledError, f.type)
  end)

  it("test_cancellerMultipleCancel: the canceller runs once", function()
    local count = 0
    local d = Deferred(function() count = count + 1 end)
    local f
    d:addErrback(function(x) f = x end)
    d:cancel()
    local first = f
    d:cancel()
    assert.equal(first, f)
    assert.equal(1, count)
  end)

  it("test_raisesAfterCancelAndCallback", function()
    local d = Deferred()
    d:addErrback(function() end)
    d:cancel()
    d:callback(nil)
    assert.has_error(function() d:callback(nil) end)
    assert.has_error(function() d:errback("x") end)
  end)

  it("test_cancelGatherResults", function()
    local one, two = Deferred(), Deferred()
    local result = defer.gatherResults({one, two})
    result:cancel()
    local f
    result:addErrback(function(x) f = x end)
    assert.is_truthy(f:check(defer.FirstError))
    assert.is_truthy(f.value.subFailure:check(defer.CancelledError))
    one:addErrback(function() end)
    two:addErrback(function() end)
  end)

  it("test_cancelDeferredListWithFireOnOneCallbackAndDeferredCallback",
    function()
      local one = Deferred(function(d) d:callback("Callback Result") end)
      local two = Deferred()
      local dl = defer.DeferredList({one, two}, {fireOnOneCallback = true})
      dl:cancel()
      assert.same({"Callback Result", 1}, dl.result)
      assert.is_truthy(two.result:check(defer.CancelledError))
      two:addErrback(function() end)
    end)

  it("test_errbackAddedBeforeTimeoutSuppressesCancellation", function()
    local clock = FakeClock()
    local d = Deferred()
    local seen
    d:addErrback(function(f) seen = f; f:trap(defer.CancelledError) end)
    d:addTimeout(10, clock)
    clock:advance(15)
    assert.equal(defer.CancelledError, seen.type)
    assert.is_true(d.called)
    assert.is_nil(d.result)
  end)

  it("test_timedOutProvidedCancelSuccess", function()
    local clock = FakeClock()
    local d = Deferred(function(c) c:callback("I was cancelled!") end)
    d:addTimeout(10, clock)
    assert.is_false(d.called)
    clock:advance(15)
    assert.equal("I was cancelled!", d.result)
  end)

  it("test_chainedErrorCleanup and test_errorClearedByChaining log nothing",
    function()
      local events = captureLog(function()
        local d = Deferred()
        d:addCallback(function() return defer.fail("zoop") end)
        d:callback(nil)
        local errors = {}
        d:addErrback(append(errors))
        assert.equal(1, #errors)
        local bad = defer.fail("oh no")
        local good = Deferred()
        bad:addErrback(function() return good end)
        d, bad, good = nil, nil, nil -- luacheck: ignore 311
        collectgarbage(); collectgarbage()
      end)
      assert.same({}, events)
    end)
end)

describe("Deferred:addTimeout with task.Clock and the reactor", function()
  local H = require("spec.support.helper")
  local task = require("spindle.task")

  it("times out on a task.Clock", function()
    local clock = task.Clock()
    local d = Deferred():addTimeout(1, clock)
    clock:advance(0.5)
    assert.is_false(d.called)
    clock:advance(0.6)
    local f
    d:addErrback(function(x) f = x end)
    assert.is_truthy(f:check(defer.TimeoutError))
    assert.same({}, clock:getDelayedCalls())
  end)

  it("cancels its task.Clock call when fired in time", function()
    local clock = task.Clock()
    local d = Deferred():addTimeout(1, clock)
    d:callback("in time")
    assert.same({}, clock:getDelayedCalls())
  end)

  it("uses the reactor when no clock is given", function()
    local d = Deferred():addTimeout(0.05)
    local f = H.waitForFailure(d)
    assert.is_truthy(f:check(defer.TimeoutError))
    H.assertNoDelayedCalls()
  end)

  it("leaves no reactor call behind when fired in time", function()
    local d = Deferred():addTimeout(10)
    H.reactor.callLater(0.01, function() d:callback("done") end)
    assert.equal("done", H.wait(d))
    H.assertNoDelayedCalls()
  end)
end)

describe("defer.inlineCallbacks on the reactor", function()
  local H = require("spec.support.helper")

  it("awaits real timers", function()
    local f = defer.inlineCallbacks(function()
      local a = defer.await(H.sleep(0.01))
      local b = defer.await(H.task.deferLater(H.reactor, 0.01,
        function() return 5 end))
      return tostring(a) .. b
    end)
    assert.equal("nil5", H.wait(f()))
  end)

  -- Issue 7: each level used to nest a coroutine resume on the C stack,
  -- which overflowed at 97 levels.
  local LEVELS = 1000

  -- A function of n that awaits itself at n - 1, down to 0, which awaits
  -- bottom(); each level adds 1 to the result.
  local function nested(bottom)
    local f
    f = defer.inlineCallbacks(function(n)
      if n == 0 then return defer.await(bottom()) end
      return defer.await(f(n - 1)) + 1
    end)
    return f
  end

  it("runs 1000 nested levels whose innermost waits on callLater (issue 7)",
    function()
      local f = nested(function()
        local d = Deferred()
        H.reactor.callLater(0, d.callback, d, 0)
        return d
      end)
      local d = f(LEVELS)
      assert.is_false(d.called)
      assert.equal(LEVELS, H.wait(d))
    end)

  it("runs 1000 nested levels that finish at once", function()
    local f = nested(function() return defer.succeed(0) end)
    assert.equal(LEVELS, f(LEVELS).result)
  end)

  it("runs 1000 nested levels that await through gatherResults", function()
    local f
    f = defer.inlineCallbacks(function(n)
      if n == 0 then return defer.await(H.sleep(0)) or 0 end
      return defer.await(defer.gatherResults({f(n - 1)}))[1] + 1
    end)
    assert.equal(LEVELS, H.wait(f(LEVELS)))
  end)

  it("passes an error up 1000 levels with its traceback", function()
    local f = nested(function()
      return H.sleep(0):addCallback(function() error("deep") end)
    end)
    local raiseLine = debug.getinfo(1, "l").currentline - 2
    local fl = H.waitForFailure(f(LEVELS))
    assert.matches("deep", fl:getErrorMessage())
    assert.matches("defer_spec.lua:" .. raiseLine .. ":", fl:getTraceback(),
      1, true)
  end)

  it("cancels the innermost awaited Deferred through 1000 levels",
    function()
      local cancelled = false
      local f = nested(function()
        return Deferred(function() cancelled = true end)
      end)
      local d = f(LEVELS)
      d:cancel()
      assert.is_true(cancelled)
      assert.is_truthy(H.waitForFailure(d):check(defer.CancelledError))
    end)

  it("lets SIGINT interrupt a coroutine 300 levels down", function()
    local source = [[
      local reactor = require("spindle.reactor")
      local defer = require("spindle.defer")
      local pid = io.open("/proc/self/stat"):read("a"):match("^(%d+)")
      local spin = defer.inlineCallbacks(function()
        defer.await(defer.succeed(1))
        local t0 = os.clock()
        while os.clock() - t0 < 20 do end
        print("not interrupted")
      end)
      local f
      f = defer.inlineCallbacks(function(n)
        if n == 0 then return defer.await(spin()) end
        return defer.await(f(n - 1))
      end)
      reactor.callWhenRunning(function()
        io.popen("(sleep 0.2; kill -INT " .. pid .. ") &"):close()
        f(300):addErrback(function(fl)
          print("failed: " .. fl:getErrorMessage())
        end)
      end)
      reactor.run()
      print("run returned")
    ]]
    local out, err, code = H.runScript(source)
    assert.are.equal("failed: interrupted!\nrun returned\n", out)
    assert.truthy(err:find("Received SIGINT", 1, true), err)
    assert.are.equal(0, code)
  end)

  it("fails when fn returns its own Deferred", function()
    local gate, d = Deferred(), nil
    d = defer.inlineCallbacks(function()
      defer.await(gate)
      return d
    end)()
    gate:callback(1)
    assert.matches("returned its own Deferred", H.waitForFailure(d).value)
  end)

  it("starts a nested function before returning its Deferred", function()
    local order = {}
    local inner = defer.inlineCallbacks(function()
      order[#order + 1] = "inner"
      return "v"
    end)
    local outer = defer.inlineCallbacks(function()
      local d = inner()
      order[#order + 1] = "returned"
      assert.is_true(d.called)
      return defer.await(d)
    end)
    assert.equal("v", outer().result)
    assert.same({"inner", "returned"}, order)
  end)
end)

describe("defer.gatherResults arguments", function()
  it("names gatherResults for a non-table list", function()
    assert.has_error(function() defer.gatherResults(5) end,
      "bad argument #1 to 'gatherResults' (table expected, got number)")
  end)

  it("names gatherResults, at the caller's line, for a non-Deferred item",
    function()
      local line = debug.getinfo(1, "l").currentline + 1
      local ok, err = pcall(function() defer.gatherResults({1, 2}) end)
      assert.is_false(ok)
      assert.equal(1, err:find(debug.getinfo(1, "S").short_src .. ":" ..
        line .. ":", 1, true), err)
      assert.truthy(err:find("bad argument #1 to 'gatherResults' " ..
        "(element 1 is a number, not a Deferred)", 1, true), err)
      line = debug.getinfo(1, "l").currentline + 1
      ok, err = pcall(function() defer.DeferredList({defer.succeed(1), 2}) end)
      assert.is_false(ok)
      assert.equal(1, err:find(debug.getinfo(1, "S").short_src .. ":" ..
        line .. ":", 1, true), err)
      assert.truthy(err:find("bad argument #1 to 'DeferredList' " ..
        "(element 2 is a number, not a Deferred)", 1, true), err)
    end)
end)

-- A Deferred with one plain callback fired with a value takes a short
-- way in defer.c (run_one); what the callback does there must come out
-- as on the general path.
describe("a Deferred with one plain callback", function()
  it("runs a step the callback adds to its own Deferred", function()
    local d, order = Deferred(), {}
    d:addCallback(function(r)
      order[#order + 1] = r
      d:addCallback(function(r2) order[#order + 1] = r2 .. "!"; return 3 end)
      return "two"
    end)
    d:callback("one")
    assert.same({"one", "two!"}, order)
    assert.equal(3, d.result)
    d:addCallback(function(r) return r + 1 end)
    assert.equal(4, d.result)
  end)

  it("stops when the callback pauses its Deferred, goes on at unpause",
    function()
      local d, seen = Deferred(), nil
      d:addCallback(function(r) d:pause(); return r * 2 end)
      d:callback(21)
      d:addCallback(function(r) seen = r; return r end)
      assert.is_nil(seen)
      assert.equal(1, d.paused)
      d:unpause()
      assert.equal(42, seen)
    end)

  it("waits on an unfired Deferred the callback returns", function()
    local d, inner, seen = Deferred(), Deferred(), nil
    d:addCallback(function() return inner end)
    d:callback(1)
    assert.equal(1, d.paused)
    d:addCallback(function(r) seen = r; return r end)
    inner:callback("late")
    assert.equal("late", seen)
    assert.equal(0, d.paused)
  end)

  it("takes the result of a fired Deferred the callback returns", function()
    local d, inner = Deferred(), Deferred()
    inner:callback("now")
    d:addCallback(function() return inner end)
    d:callback(1)
    assert.equal("now", d.result)
    assert.is_nil(inner.result)
  end)

  it("holds the error the callback raises, logged once if unhandled",
    function()
      local events = captureLog(function()
        local d = Deferred()
        d:addCallback(function() error("in callback", 0) end)
        d:callback(1)
        assert.is_true(failure.isFailure(d.result))
        d = nil -- luacheck: ignore 311
        collectgarbage(); collectgarbage()
      end)
      local found = unhandled(events)
      assert.equal(1, #found)
      assert.equal("in callback", found[1].failure.value)
    end)

  it("passes a Failure over the callback to a later errback", function()
    local d, called, got = Deferred(), false, nil
    d:addCallback(function() called = true end)
    d:errback("bad")
    assert.is_false(called)
    d:addErrback(function(f) got = f.value end)
    assert.equal("bad", got)
  end)

  it("lets go of the callback once it has run", function()
    local d = Deferred()
    local weak = setmetatable({}, {__mode = "v"})
    do
      local cb = function(r) return r end
      weak[1] = cb
      d:addCallback(cb)
    end
    d:callback(1)
    collectgarbage(); collectgarbage()
    assert.is_nil(weak[1])
    assert.equal(1, d.result)
  end)
end)
