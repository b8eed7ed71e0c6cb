-- spindle.threads and the reactor's thread entry points, on real pool
-- threads (runtime/pool.c). A function sent to a thread is a copy: it
-- can reach the main thread's values only through globals or modules
-- looked up when it runs there, so results here come back through the
-- Deferreds or through the `sink` module below.
local H = require("spec.support.helper")
local reactor = require("spindle.reactor")
local defer = require("spindle.defer")
local failure = require("spindle.failure")
local threads = require("spindle.threads")

-- The main thread's collector: code sent back with callFromThread finds
-- it with require (looked up when it runs, on the main thread).
local sink = {events = {}}
function sink.add(...) sink.events[#sink.events + 1] = table.pack(...) end
package.loaded["threads_spec.sink"] = sink

-- The main thread's gate for pool calls: each probed call reports its
-- start and end here (blockingCallFromThread), so a spec sees how many
-- ran at once and in what order, never how long they took. Calls that
-- start are held (their thread waits) until `holdUntil` run at once; from
-- then on none is held. A pool that cannot run that many at once never
-- opens the gate: the spec fails on its timeout.
local gate = {}
package.loaded["threads_spec.gate"] = gate

local function gateReset(holdUntil)
  gate.running, gate.most, gate.order = 0, 0, {}
  gate.held, gate.open, gate.holdUntil = {}, false, holdUntil
end

-- Open the gate: release every held call (also after a failed spec, so
-- that no pool thread stays blocked).
function gate.release()
  gate.open = true
  local held = gate.held or {}
  gate.held = {}
  for _, d in ipairs(held) do d:callback(nil) end
end

-- On the main thread: call i started; a Deferred holds its thread.
function gate.started(i)
  gate.running = gate.running + 1
  gate.most = math.max(gate.most, gate.running)
  gate.order[#gate.order + 1] = "start " .. i
  if gate.open then return nil end
  if gate.running >= gate.holdUntil then gate.release() return nil end
  local d = defer.Deferred()
  gate.held[#gate.held + 1] = d
  return d
end

function gate.finished(i)
  gate.running = gate.running - 1
  gate.order[#gate.order + 1] = "end " .. i
end

-- A function for the pool: report start, end, and return i.
local function probed(i)
  return function()
    local T = require("spindle.threads")
    T.blockingCallFromThread(function(n)
      return package.loaded["threads_spec.gate"].started(n)
    end, i)
    T.blockingCallFromThread(function(n)
      package.loaded["threads_spec.gate"].finished(n)
    end, i)
    return i
  end
end

local TE = threads.TransferError

before_each(function()
  sink.events = {}
  reactor.suggestThreadPoolSize(10)
end)

after_each(function()
  gate.release()
  -- Released calls end before the next spec resets the gate.
  for _ = 1, 500 do
    local pool = reactor.getThreadPool()
    if pool.busy + pool.queued == 0 then break end
    H.runFor(0.01)
  end
  reactor.suggestThreadPoolSize(10)
  H.assertNoDelayedCalls()
end)

-- Wait for every Deferred in list; return their results.
local function all(list)
  return H.wait(defer.gatherResults(list), 10)
end

local function sleeper(seconds)
  return function() os.execute("sleep " .. seconds) return true end
end

describe("threads.deferToThread", function()
  it("fires with f's first result, on the main thread", function()
    local d = threads.deferToThread(function(a, b)
      return a + b, "dropped"
    end, 2, 3)
    assert.are.equal(5, H.wait(d))
  end)

  it("copies arguments and results by value, tables included", function()
    local arg = {list = {1, 2, 3}}
    arg.self = arg
    local r = H.wait(threads.deferToThread(function(t)
      t.list[4] = 4
      return {list = t.list, same = t.self == t}
    end, arg))
    assert.are.same({1, 2, 3, 4}, r.list)
    assert.is_true(r.same)
    assert.are.equal(3, #arg.list)     -- the caller's table is untouched
  end)

  it("copies a function's upvalues afresh on each call", function()
    -- The worker keeps the function it loaded (by its bytecode's hash),
    -- but what it closes over is the caller's at each call.
    local n = 0
    local function bump() n = n + 1; return n end
    reactor.suggestThreadPoolSize(1)
    assert.are.equal(1, H.wait(threads.deferToThread(bump)))
    assert.are.equal(1, H.wait(threads.deferToThread(bump)))
    n = 41
    assert.are.equal(42, H.wait(threads.deferToThread(bump)))
  end)

  it("keeps closures of one prototype apart, in one call and across calls",
    function()
      local function make(i) return function() return i end end
      reactor.suggestThreadPoolSize(1)
      assert.are.equal(1, H.wait(threads.deferToThread(make(1))))
      assert.are.equal(2, H.wait(threads.deferToThread(make(2))))
      -- The called function and its upvalue are of one prototype.
      local outer = make(3)
      local r = H.wait(threads.deferToThread(function(a, b)
        return a() * 100 + b() * 10 + outer()
      end, make(4), make(5)))
      assert.are.equal(453, r)
      -- Two functions sharing an upvalue, sent again after being joined.
      local count = 0
      local function inc() count = count + 1 end
      local function get() return count end
      for _ = 1, 2 do
        assert.are.equal(2, H.wait(threads.deferToThread(function()
          inc(); inc(); return get()
        end)))
      end
    end)

  it("names deferToThread in an argument error, through pcall too",
    function()
      assert.same({false, "bad argument #1 to 'deferToThread' (callable " ..
        "expected, got number)"}, {pcall(threads.deferToThread, 42)})
      local line = debug.getinfo(1, "l").currentline + 1
      local ok, err = pcall(function() threads.deferToThread(42) end)
      assert.is_false(ok)
      assert.equal(debug.getinfo(1, "S").short_src .. ":" .. line ..
        ": bad argument #1 to 'deferToThread' (callable expected, got " ..
        "number)", err)
    end)

  it("fails with f's error message and traceback", function()
    local f = H.waitForFailure(threads.deferToThread(function()
      error("boom in thread")
    end))
    assert.truthy(f:getErrorMessage():find("boom in thread", 1, true))
    local tb = f:getTraceback()
    assert.truthy(tb:find("stack traceback", 1, true), tb)
    assert.truthy(tb:find("threads_spec.lua", 1, true), tb)
  end)

  it("keeps the type of an error raised in the thread", function()
    local MyError = failure.errorType("MyError")
    local f = H.waitForFailure(threads.deferToThread(function()
      error(MyError("typed"))
    end))
    assert.are.equal(MyError, f:check(MyError))
    assert.are.equal("typed", f:getErrorMessage())
  end)

  it("sends an error value that cannot be copied as its text", function()
    local f = H.waitForFailure(threads.deferToThread(function()
      error(io.stdout)
    end))
    assert.truthy(f:getErrorMessage():find("^file %("), f:getErrorMessage())
    assert.truthy(f:getTraceback():find("threads_spec.lua", 1, true))
  end)

  it("fails with TransferError when the result cannot be copied", function()
    local f = H.waitForFailure(threads.deferToThread(function()
      return {out = io.stdout}
    end))
    assert.are.equal(TE, f:check(TE))
    assert.truthy(f:getErrorMessage():find("result #1 .out", 1, true),
      f:getErrorMessage())
  end)

  it("raises TransferError at the call, naming the argument", function()
    H.assertErrorType(TE, "arg #2 .conn", pcall(threads.deferToThread,
      function() end, {conn = io.stdout}))
    local out = io.stdout
    H.assertErrorType(TE, "arg #1 upvalue 'out'", pcall(
      threads.deferToThread, function() return out end))
    local co = coroutine.create(print)
    H.assertErrorType(TE, "arg #3 [1]", pcall(threads.deferToThread,
      function() end, 1, {co}))
  end)

  it("raises on a non-callable", function()
    local ok, err = pcall(threads.deferToThread, 42)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("callable expected", 1, true), err)
  end)

  it("runs calls in parallel up to the pool size", function()
    reactor.suggestThreadPoolSize(4)
    gateReset(4)
    local list = {}
    for i = 1, 6 do list[i] = threads.deferToThread(probed(i)) end
    assert.are.same({1, 2, 3, 4, 5, 6}, {table.unpack(all(list), 1, 6)})
    assert.are.equal(4, gate.most) -- 4 at once (the gate), never 5
    assert.are.equal(12, #gate.order)
  end)

  it("gives a call its own thread while another is stuck in a long one, " ..
    "after many short calls", function()
    -- Many short calls make the pool batch them on one awake worker; a
    -- call queued while that worker is stuck in a long call must still
    -- run beside it (on a new or woken thread), not wait for it.
    for _ = 1, 40 do
      local batch = {}
      for i = 1, 5 do
        batch[i] = threads.deferToThread(function(x) return x end, i)
      end
      H.wait(defer.gatherResults(batch))
    end
    local order = {}
    local long = threads.deferToThread(sleeper(1))
    long:addCallback(function() order[#order + 1] = "long" end)
    H.runFor(0.05)
    local quick = threads.deferToThread(function() return "quick" end)
    quick:addCallback(function() order[#order + 1] = "quick" end)
    H.wait(defer.gatherResults({long, quick}))
    assert.are.same({"quick", "long"}, order)
  end)

  it("runs them one after another with suggestThreadPoolSize(1)", function()
    reactor.suggestThreadPoolSize(1)
    gateReset(math.huge) -- hold each: a second call would run meanwhile
    local list = {}
    for i = 1, 3 do list[i] = threads.deferToThread(probed(i)) end
    -- The gate never fills: release each held call in turn.
    for _ = 1, 3 do
      while #gate.held == 0 do H.runFor(0.01) end
      table.remove(gate.held, 1):callback(nil)
    end
    all(list)
    assert.are.equal(1, gate.most)
    assert.are.same({"start 1", "end 1", "start 2", "end 2", "start 3",
      "end 3"}, gate.order)
  end)

  it("keeps each thread's Lua state for its life", function()
    reactor.suggestThreadPoolSize(1)
    local function count()
      -- luacheck: globals counter
      counter = (counter or 0) + 1   -- a global of the worker's state
      return counter
    end
    local a = H.wait(threads.deferToThread(count))
    local b = H.wait(threads.deferToThread(count))
    assert.are.equal(a + 1, b)
    assert.is_nil(rawget(_G, "counter"))
  end)
end)

describe("reactor.callInThread", function()
  it("runs f on a pool thread with copied arguments", function()
    reactor.suggestThreadPoolSize(1)
    reactor.callInThread(function(t)
      require("spindle.reactor").callFromThread(function(v)
        require("threads_spec.sink").add(v)
      end, t.x * 2)
    end, {x = 21})
    -- Same thread, so this runs after it; its reply comes after f's.
    H.wait(threads.deferToThread(function() end))
    assert.are.equal(1, #sink.events)
    assert.are.equal(42, sink.events[1][1])
  end)

  it("logs an error in f with its traceback on the main thread", function()
    reactor.suggestThreadPoolSize(1)
    local errors = H.loggedErrors(function()
      reactor.callInThread(function() error("callInThread boom") end)
      H.wait(threads.deferToThread(function() end))
    end)
    assert.are.equal(1, #errors)
    local tb = errors[1].failure:getTraceback()
    assert.truthy(tb:find("callInThread boom", 1, true), tb)
    assert.truthy(tb:find("threads_spec.lua", 1, true), tb)
  end)

  it("raises TransferError at the call", function()
    H.assertErrorType(TE, "arg #2 .conn", pcall(reactor.callInThread,
      function() end, {conn = io.stderr}))
  end)
end)

describe("reactor.callFromThread from a pool thread", function()
  it("runs the calls on the main thread in FIFO order", function()
    H.wait(threads.deferToThread(function()
      local r = require("spindle.reactor")
      local function add(i) require("threads_spec.sink").add(i) end
      for i = 1, 200 do r.callFromThread(add, i) end
    end))
    assert.are.equal(200, #sink.events)
    for i = 1, 200 do assert.are.equal(i, sink.events[i][1]) end
  end)

  it("raises TransferError in the thread", function()
    local f = H.waitForFailure(threads.deferToThread(function()
      require("spindle.reactor").callFromThread(print, io.stdout)
    end))
    assert.are.equal(TE, f:check(TE))
    assert.truthy(f:getErrorMessage():find("arg #2", 1, true))
  end)
end)

describe("threads.blockingCallFromThread", function()
  it("runs f on the main thread and returns its result", function()
    local r = H.wait(threads.deferToThread(function(x)
      local T = require("spindle.threads")
      return T.blockingCallFromThread(function(y)
        -- On the main thread: the spec's own modules are here.
        require("threads_spec.sink").add("main", y)
        return {y * 10}
      end, x)
    end, 4))
    assert.are.same({40}, r)
    assert.are.same({n = 2, "main", 4}, sink.events[1])
  end)

  it("waits for a Deferred that f returns", function()
    local r = H.wait(threads.deferToThread(function()
      return require("spindle.threads").blockingCallFromThread(function()
        local d = require("spindle.defer").Deferred()
        require("spindle.reactor").callLater(0.05, function()
          d:callback("later")
        end)
        return d
      end)
    end))
    assert.are.equal("later", r)
  end)

  it("raises f's error in the thread", function()
    local r = H.wait(threads.deferToThread(function()
      local ok, err = pcall(require("spindle.threads").blockingCallFromThread,
        function() error("main side failed") end)
      return {ok = ok, err = tostring(err)}
    end))
    assert.is_false(r.ok)
    assert.truthy(r.err:find("main side failed", 1, true), r.err)
  end)

  it("raises the error of a Deferred that fails", function()
    local f = H.waitForFailure(threads.deferToThread(function()
      return require("spindle.threads").blockingCallFromThread(function()
        return require("spindle.defer").fail("deferred failed")
      end)
    end))
    assert.truthy(f:getErrorMessage():find("deferred failed", 1, true))
  end)

  it("raises a clear error on the main thread", function()
    local ok, err = pcall(threads.blockingCallFromThread, print)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("pool thread", 1, true), err)
  end)
end)

describe("threads.callMultipleInThread", function()
  it("runs the calls in order on one thread", function()
    reactor.suggestThreadPoolSize(1)
    local function add(a, b)
      require("spindle.reactor").callFromThread(function(x, y)
        require("threads_spec.sink").add(x, y)
      end, a, b)
    end
    threads.callMultipleInThread({{add, 1, "a"}, {add, 2, nil, n = 3},
      {add, 3, "c"}})
    H.wait(threads.deferToThread(function() end))
    assert.are.equal(3, #sink.events)
    assert.are.same({n = 2, 1, "a"}, sink.events[1])
    assert.are.same({n = 2, 2, nil}, sink.events[2])
    assert.are.same({n = 2, 3, "c"}, sink.events[3])
  end)

  it("raises on an entry without a callable", function()
    local ok, err = pcall(threads.callMultipleInThread, {{42}})
    assert.is_false(ok)
    assert.truthy(tostring(err):find("entry 1", 1, true), err)
    H.assertErrorType(TE, "arg #1 [1][2]", pcall(
      threads.callMultipleInThread, {{print, io.stdout}}))
  end)
end)

describe("reactor.getThreadPool", function()
  it("counts workers, busy ones and queued work", function()
    local p = reactor.getThreadPool()
    assert.are.equal(0, p.min)
    assert.are.equal(10, p.max)
    reactor.suggestThreadPoolSize(1)
    local list = {}
    for i = 1, 3 do list[i] = threads.deferToThread(sleeper(0.1)) end
    p = reactor.getThreadPool()
    assert.are.equal(1, p.max)
    assert.are.equal(1, p.workers)
    assert.are.equal(3, p.busy + p.queued)
    all(list)
    p = reactor.getThreadPool()
    assert.are.equal(0, p.busy)
    assert.are.equal(0, p.queued)
  end)
end)

describe("reactor.suggestThreadPoolSize", function()
  it("takes effect at once for waiting work", function()
    reactor.suggestThreadPoolSize(1)
    gateReset(2) -- the first call waits until a second runs beside it
    local list = {}
    for i = 1, 2 do list[i] = threads.deferToThread(probed(i)) end
    reactor.suggestThreadPoolSize(2)
    all(list)
    assert.are.equal(2, gate.most)
  end)

  it("ends threads beyond a lowered size when they are idle", function()
    reactor.suggestThreadPoolSize(3)
    local list = {}
    for i = 1, 3 do list[i] = threads.deferToThread(sleeper(0.1)) end
    all(list)
    reactor.suggestThreadPoolSize(1)
    local t0 = reactor.seconds()
    while reactor.getThreadPool().workers > 1 and
        reactor.seconds() - t0 < 2 do
      H.runFor(0.02)
    end
    assert.are.equal(1, reactor.getThreadPool().workers)
  end)

  it("raises on a bad size", function()
    assert.has_error(function() reactor.suggestThreadPoolSize(-1) end)
    assert.has_error(function() reactor.suggestThreadPoolSize("x") end)
  end)

  it("refuses 0, which would leave every later call queued forever " ..
    "(issue 7 item 7)", function()
      local before = reactor.getThreadPool().max
      local ok, err = pcall(reactor.suggestThreadPoolSize, 0)
      assert.is_false(ok)
      assert.matches("bad argument #1 to '.*suggestThreadPoolSize' %(size " ..
        "must be at least 1", err)
      assert.equal(before, reactor.getThreadPool().max)
      assert.equal(42, H.wait(threads.deferToThread(function() return 42 end)))
    end)
end)

describe("pool threads' spindle", function()
  it("forwards spindle.log messages and errors to the main thread", function()
    local errors, capture
    errors = H.loggedErrors(function()
      capture = H.captureLog()
      H.wait(threads.deferToThread(function()
        local log = require("spindle.log")
        log.msg("from", "a thread", 7)
        log.err("thread trouble", "while testing")
      end))
      capture.stop()
    end)
    assert.truthy(capture.text():find("from a thread 7", 1, true),
      capture.text())
    assert.are.equal(1, #errors)
    assert.are.equal("while testing", errors[1].why)
    assert.truthy(errors[1].failure:getTraceback():find("thread trouble", 1,
      true))
  end)

  it("refuses the modules that drive the reactor", function()
    local f = H.waitForFailure(threads.deferToThread(function()
      return require("spindle.defer")
    end))
    assert.truthy(f:getErrorMessage():find("not available in a pool thread",
      1, true), f:getErrorMessage())
  end)

  it("carries main-thread modules it lacks, usable back there", function()
    -- `defer` is an upvalue of main; the thread has no spindle.defer.
    local function main()
      local d = defer.Deferred()
      reactor.callLater(0, d.callback, d, "via an absent module")
      return d
    end
    local r = H.wait(threads.deferToThread(function()
      local ok, err = pcall(function() return defer.succeed end)
      return {require("spindle.threads").blockingCallFromThread(main),
        ok, tostring(err)}
    end))
    assert.are.equal("via an absent module", r[1])
    assert.is_false(r[2])
    assert.truthy(r[3]:find("'spindle.defer' is not available in this " ..
      "thread", 1, true), r[3])
  end)

  it("lends modules by name: the thread's reactor", function()
    local r = reactor   -- an upvalue: arrives as the thread's own reactor
    local t = H.wait(threads.deferToThread(function()
      local ok, err = pcall(r.listenTCP, 0, {})
      return {type(r.callFromThread), type(r.seconds()), ok, tostring(err)}
    end))
    assert.are.equal("function", t[1])
    assert.are.equal("number", t[2])
    assert.is_false(t[3])
    assert.truthy(t[4]:find("reactor.listenTCP can only be called on the " ..
      "reactor thread", 1, true), t[4])
  end)

  it("guards every other function of the real reactor and threads",
    function()
      local function names(t)
        local out = {}
        for k, v in pairs(t) do
          if type(v) == "function" then out[#out + 1] = k end
        end
        table.sort(out)
        return out
      end
      local got = H.wait(threads.deferToThread(function()
        local r, t = require("spindle.reactor"), require("spindle.threads")
        local out = {}
        for _, m in ipairs({r, t}) do
          local list = {}
          for k, v in pairs(m) do
            if type(v) == "function" then list[#list + 1] = k end
          end
          table.sort(list)
          out[#out + 1] = list
        end
        local ok, err = pcall(r.getDelayedCalls)
        out.err = not ok and tostring(err)
        return out
      end))
      assert.are.same(names(reactor), got[1])
      assert.are.same(names(threads), got[2])
      assert.truthy(got.err:find("reactor.getDelayedCalls can only be "
        .. "called on the reactor thread", 1, true), got.err)
    end)

  it("sends the reactor's functions back by name", function()
    -- Twisted's idiom: reactor.callFromThread(reactor.stop) from a thread.
    reactor.callInThread(function()
      local r = require("spindle.reactor")
      r.callFromThread(r.stop)
    end)
    local watchdog
    local errors, took = H.loggedErrors(function()
      watchdog = reactor.callLater(H.TIMEOUT, reactor.stop)
      local t0 = reactor.seconds()
      reactor.run()
      return reactor.seconds() - t0
    end)
    if watchdog:active() then watchdog:cancel() end
    assert.are.equal(0, #errors)
    assert.is_true(took < H.TIMEOUT - 1, "stopped by the watchdog")
  end)
end)

describe("the pool at exit", function()
  it("waits for running work, drops queued work, exits clean", function()
    local out, err, code = H.runScript([[
      local reactor = require("spindle.reactor")
      reactor.suggestThreadPoolSize(2)
      reactor.callInThread(function()
        os.execute("sleep 0.3")
        io.stdout:write("running work finished\n")
      end)
      reactor.callInThread(function()
        local T = require("spindle.threads")
        local ok, e = pcall(T.blockingCallFromThread, function() end)
        io.stdout:write("blocked call: ", tostring(ok), " ",
          tostring(e):match("reactor shut down") or tostring(e), "\n")
      end)
      reactor.callInThread(function() io.stdout:write("never\n") end)
      os.execute("sleep 0.1")
      io.stdout:write("main exits\n")
    ]])
    assert.are.equal(0, code)
    assert.are.equal("", err)
    assert.truthy(out:find("main exits\n", 1, true), out)
    assert.truthy(out:find("running work finished\n", 1, true), out)
    assert.truthy(out:find("blocked call: false reactor shut down", 1, true),
      out)
    assert.falsy(out:find("never", 1, true), out)
  end)
end)

describe("scripts/threads_udp_long_operation.lua", function()
  it("prints started, then the long operation's line, and exits", function()
    local r = require("spec.support.process").run(
      {"scripts/threads_udp_long_operation.lua", "0"})
    assert.are.equal(0, r.status, r.stderr)
    assert.are.equal("", r.stderr)
    local stamp = "%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d"
    local lines = {}
    for line in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal(2, #lines, r.stdout)
    assert.truthy(lines[1]:match("^" .. stamp .. " : started$"), lines[1])
    assert.truthy(lines[2]:match("^" .. stamp .. ": The protocol Echo.* " ..
      "has been started for 5 seconds%.$"), lines[2])
  end)
end)
