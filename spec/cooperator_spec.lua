-- task.cooperate, task.coiterate, task.Cooperator (spindle.cooperator).
local reactor = require("spindle.reactor")
local defer = require("spindle.defer")
local task = require("spindle.task")
local H = require("spec.support.helper")

-- A Cooperator driven by hand: each turn runs `perTurn` steps; turns are
-- queued in `pending` and run by turn().
local function manual(perTurn)
  local pending = {}
  local c = task.Cooperator(function()
    local n = 0
    return function()
      n = n + 1
      return n >= perTurn
    end
  end, function(f)
    local entry = {f = f}
    function entry.cancel() entry.cancelled = true end
    pending[#pending + 1] = entry
    return entry
  end)
  local function turn()
    local e = table.remove(pending, 1)
    while e and e.cancelled do e = table.remove(pending, 1) end
    if e then e.f() end
    return e ~= nil
  end
  return c, turn, pending
end

local function counter(name, n, log)
  local i = 0
  return function()
    i = i + 1
    if i > n then return nil end
    log[#log + 1] = name .. i
    return i
  end
end

describe("task.Cooperator", function()
  it("interleaves tasks round-robin, a slice per turn", function()
    local c, turn = manual(3)
    local log = {}
    local da = c:coiterate(counter("a", 3, log))
    local db = c:coiterate(counter("b", 2, log))
    assert.is_true(turn())
    assert.same({"a1", "b1", "a2"}, log)
    while turn() do end
    assert.same({"a1", "b1", "a2", "b2", "a3"}, log)
    assert.is_true(da.called and db.called)
  end)

  it("runs generic-for triples and coroutines", function()
    local c, turn = manual(100)
    local seen = {}
    local t = {10, 20, 30}
    local d1 = c:coiterate(ipairs(t))
    local co = coroutine.create(function()
      for i = 1, 3 do seen[#seen + 1] = i; coroutine.yield(i) end
    end)
    local d2 = c:coiterate(co)
    while turn() do end
    assert.same({1, 2, 3}, seen)
    assert.equal(co, H.wait(d2))
    assert.is_true(d1.called)
  end)

  it("pauses, resumes and stops a CooperativeTask", function()
    local c, turn = manual(1)
    local log = {}
    local t = c:cooperate(counter("a", 10, log))
    turn()
    t:pause()
    t:pause()
    assert.is_false(turn())
    t:resume()
    assert.is_false(turn())
    t:resume()
    H.assertErrorType(task.NotPaused, nil, pcall(t.resume, t))
    turn()
    assert.same({"a1", "a2"}, log)
    local done = t:whenDone()
    t:stop()
    assert.truthy(H.waitForFailure(done):check(task.TaskStopped))
    H.assertErrorType(task.TaskStopped, nil, pcall(t.stop, t))
    H.assertErrorType(task.TaskStopped, nil, pcall(t.pause, t))
    assert.is_false(turn())
  end)

  it("waits for a Deferred a step produces and fails with its error",
     function()
    local c, turn = manual(10)
    local gate = defer.Deferred()
    local steps = 0
    local d = c:coiterate(coroutine.wrap(function()
      steps = steps + 1
      coroutine.yield(gate)
      steps = steps + 1
      coroutine.yield(defer.fail("boom"))
      steps = steps + 1
    end))
    turn()
    assert.equal(1, steps)
    assert.is_false(turn())
    gate:callback(nil)
    while turn() do end
    assert.equal(2, steps)
    local f = H.waitForFailure(d)
    assert.truthy(tostring(f.value):find("boom"))
  end)

  it("fails a task whose step raises, and stop() fails the rest", function()
    local c, turn = manual(10)
    local d1 = c:coiterate(function() error("bad step") end)
    local d2 = c:coiterate(function() return 1 end)
    turn()
    assert.truthy(H.waitForFailure(d1).value:find("bad step"))
    c:stop()
    assert.truthy(H.waitForFailure(d2):check(task.SchedulerStopped))
    local d3 = c:coiterate(function() return 1 end)
    assert.truthy(H.waitForFailure(d3):check(task.SchedulerStopped))
    H.assertErrorType(task.SchedulerStopped, nil, pcall(c.stop, c))
  end)

  it("raises on a non-iterator", function()
    assert.has_error(function() task.cooperate(42) end,
      "bad argument #1 to 'cooperate' (iterator expected, got number)")
  end)
end)

describe("task.cooperate", function()
  it("interleaves two long iterators on the reactor while a timer fires",
     function()
    local N = 400
    local done = {a = 0, b = 0}
    local order = {}
    local function busy(name)
      local i = 0
      return function()
        i = i + 1
        if i > N then return nil end
        local stop = os.clock() + 0.0005 -- half a millisecond of work
        repeat until os.clock() >= stop
        done[name] = i
        if #order < 6 then order[#order + 1] = name end
        return i
      end
    end
    local timerSaw
    reactor.callLater(0.02, function()
      timerSaw = {a = done.a, b = done.b}
    end)
    local t1 = task.cooperate(busy("a"))
    local d = defer.gatherResults({t1:whenDone(),
      task.coiterate(busy("b"))})
    H.wait(d, 30)
    assert.same({"a", "b", "a", "b", "a", "b"}, order)
    assert.equal(N, done.a)
    assert.equal(N, done.b)
    -- The timer ran while both loops were still going.
    assert.is_not_nil(timerSaw)
    assert.is_true(timerSaw.a > 0 and timerSaw.a < N)
    assert.is_true(timerSaw.b > 0 and timerSaw.b < N)
  end)
end)
