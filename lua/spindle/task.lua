--- spindle.task: scheduling helpers over any clock, as in
-- twisted.internet.task: LoopingCall, deferLater, Clock (a fake clock for
-- tests) and react (run the reactor around a main function).
--
-- A clock is anything with clock:seconds() and
-- clock:callLater(delay, f, ...) returning a DelayedCall: the reactor
-- (its functions also work as methods) or a task.Clock.
local Object = require("spindle.class").Object
local check = require("spindle.check")
local defer = require("spindle.defer")
local errors = require("spindle.failure").builtinErrorTypes("reactor")

local M = {}

local function reactor()
  return require("spindle.reactor")
end

---------------------------------------------------------------------------
-- Clock

--- A DelayedCall of a task.Clock: same methods and errors as the
-- reactor's (twisted.internet.base.DelayedCall).
local DelayedCall = {}
DelayedCall.__index = DelayedCall
DelayedCall.__name = "DelayedCall"

function DelayedCall:__tostring()
  return string.format("<DelayedCall %s [%ss] called=%d cancelled=%d>",
    self._id, self.time - self._clock.rightNow, self.called and 1 or 0,
    self.cancelled and 1 or 0)
end

local function checkPending(dc, verb)
  if dc.called then
    error(errors.AlreadyCalled(
      "Tried to " .. verb .. " an already-called event."), 3)
  end
  if dc.cancelled then
    error(errors.AlreadyCancelled(
      "Tried to " .. verb .. " an already-cancelled event."), 3)
  end
end

--- dc:cancel(): unschedule. Raises AlreadyCalled / AlreadyCancelled.
function DelayedCall:cancel()
  checkPending(self, "cancel")
  self.cancelled = true
  self._clock:_remove(self)
  self.func, self.args = nil, nil
end

-- Raise when a new due time t is NaN (a NaN argument, or math.huge then
-- -math.huge): it would fire out of order.
local function checkTime(t, fname)
  if t ~= t then
    check.argError(1, fname, "the new due time would be NaN", 3)
  end
end

--- dc:reset(secondsFromNow): run secondsFromNow seconds from the clock's
-- now instead. Raises AlreadyCalled / AlreadyCancelled, and a
-- bad-argument error if the due time would be NaN.
function DelayedCall:reset(secondsFromNow)
  check.number(secondsFromNow, 1, "reset")
  checkPending(self, "reset")
  local t = self._clock:seconds() + secondsFromNow
  checkTime(t, "reset")
  self.time = t
end

--- dc:delay(seconds): run `seconds` later. Raises as reset does.
function DelayedCall:delay(seconds)
  check.number(seconds, 1, "delay")
  checkPending(self, "delay")
  local t = self.time + seconds
  checkTime(t, "delay")
  self.time = t
end

--- dc:active() -> boolean: neither called nor cancelled.
function DelayedCall:active()
  return not (self.called or self.cancelled)
end

--- dc:getTime() -> seconds: when it is due, in clock:seconds().
function DelayedCall:getTime()
  return self.time
end

--- task.Clock(): a clock whose time moves only by advance(), for tests.
-- Follows twisted.internet.task.Clock: seconds() starts at 0.
local Clock = Object:extend({__name = "Clock"})

function Clock:__init()
  self.rightNow = 0.0
  self.calls = {}
  self._seq = 0
end

--- clock:seconds() -> the clock's time (starts at 0).
function Clock:seconds()
  return self.rightNow
end

--- clock:callLater(delay, f, ...) -> DelayedCall: call f(...) once the
-- clock has advanced by `delay` seconds (>= 0); nil arguments kept.
function Clock:callLater(delay, f, ...)
  check.nonNegative(delay, 1, "callLater", "delay")
  check.callable(f, 2, "callLater")
  self._seq = self._seq + 1
  local dc = setmetatable({
    time = self.rightNow + delay, func = f, args = table.pack(...),
    called = false, cancelled = false, _clock = self, _seq = self._seq,
    _id = tostring(self._seq),
  }, DelayedCall)
  self.calls[#self.calls + 1] = dc
  return dc
end

function Clock:_remove(dc)
  for i, c in ipairs(self.calls) do
    if c == dc then
      table.remove(self.calls, i)
      return
    end
  end
end

-- Earliest first; ties keep the order the calls were made in.
local function callOrder(a, b)
  if a.time ~= b.time then return a.time < b.time end
  return a._seq < b._seq
end

--- clock:getDelayedCalls() -> list of the pending DelayedCalls, earliest
-- first.
function Clock:getDelayedCalls()
  table.sort(self.calls, callOrder)
  return table.move(self.calls, 1, #self.calls, 1, {})
end

--- clock:advance(seconds): move time forward and run the calls now due,
-- in time order. As in Twisted, an error in a call propagates out of
-- advance() (the call is spent). A NaN amount is a bad argument (Twisted
-- would run nothing and be stuck at NaN).
function Clock:advance(amount)
  check.number(amount, 1, "advance")
  if amount ~= amount then check.argError(1, "advance", "amount is NaN") end
  self.rightNow = self.rightNow + amount
  while true do
    table.sort(self.calls, callOrder)
    local call = self.calls[1]
    if call == nil or call.time > self.rightNow then break end
    table.remove(self.calls, 1)
    call.called = true
    local f, args = call.func, call.args
    call.func, call.args = nil, nil
    f(table.unpack(args, 1, args.n))
  end
end

--- clock:pump(timings): advance by each amount of the list in turn.
function Clock:pump(timings)
  for _, amount in ipairs(timings) do self:advance(amount) end
end

M.Clock = Clock

---------------------------------------------------------------------------
-- LoopingCall

--- task.LoopingCall(f, ...): call f(...) every interval seconds.
-- Follows twisted.internet.task.LoopingCall: calls are aligned to
-- start + k * interval, so intervals missed while the process was busy
-- are skipped (LoopingCall.withCount tells how many). Fields: running,
-- interval, clock (settable; the reactor by default), deferred.
local LoopingCall = Object:extend({__name = "LoopingCall"})

function LoopingCall:__init(f, ...)
  check.callable(f, 1, "LoopingCall", 3)
  self.f = f
  self.a = table.pack(...)
  self.running = false
  self.clock = reactor()
end

--- LoopingCall.withCount(countCallable) -> LoopingCall that calls
-- countCallable(n), n being the number of intervals since the last call
-- (more than 1 when intervals were skipped). twisted LoopingCall.withCount.
function LoopingCall.withCount(countCallable)
  check.callable(countCallable, 1, "withCount")
  local self
  local function counter()
    local now = self.clock:seconds()
    if self.interval == 0 then
      self._realLastTime = now
      return countCallable(1)
    end
    local lastTime = self._realLastTime
    if lastTime == nil then
      lastTime = self.starttime
      if self._runAtStart then lastTime = lastTime - self.interval end
    end
    local count = self:_intervalOf(now) - self:_intervalOf(lastTime)
    if count > 0 then
      self._realLastTime = now
      return countCallable(count)
    end
  end
  self = LoopingCall(counter)
  return self
end

function LoopingCall:_intervalOf(t)
  local n = (t - self.starttime) / self.interval
  return n >= 0 and math.floor(n) or math.ceil(n)
end

--- lc:start(interval[, now=true]) -> Deferred: call f every `interval`
-- seconds (>= 0), the first time at once unless now is false. The
-- Deferred fires with lc when stop() is called, or errbacks if f raises
-- (or its Deferred fails); the loop then ends. If f returns a Deferred
-- the next call waits for it. Raises if already running, and a
-- bad-argument error if interval is negative or NaN (Twisted asserts
-- interval >= 0).
function LoopingCall:start(interval, now)
  check.number(interval, 1, "start")
  if self.running then
    error("Tried to start an already running LoopingCall.", 2)
  end
  check.nonNegative(interval, 1, "start", "interval")
  self.running = true
  local d = defer.Deferred()
  self.deferred = d
  self.starttime = self.clock:seconds()
  self.interval = interval
  self._runAtStart = now ~= false
  if now ~= false then
    self:__call()
  else
    self:_scheduleFrom(self.starttime)
  end
  return d
end

--- lc:stop(): stop looping; fires start()'s Deferred (at once, or when a
-- Deferred returned by f fires). Raises if not running.
function LoopingCall:stop()
  if not self.running then
    error("Tried to stop a LoopingCall that was not running.", 2)
  end
  self.running = false
  if self.call ~= nil then
    self.call:cancel()
    self.call = nil
    local d = self.deferred
    self.deferred = nil
    d:callback(self)
  end
end

--- lc:reset(): restart the interval from now. Raises if not running.
function LoopingCall:reset()
  if not self.running then
    error("Tried to reset a LoopingCall that was not running.", 2)
  end
  if self.call ~= nil then
    self.call:cancel()
    self.call = nil
    self.starttime = self.clock:seconds()
    self:_scheduleFrom(self.starttime)
  end
end

-- One iteration: run f, then schedule the next (twisted __call__).
function LoopingCall:__call()
  self.call = nil
  local d = defer.maybeDeferred(self.f, table.unpack(self.a, 1, self.a.n))
  d:addCallback(function()
    if self.running then
      self:_scheduleFrom(self.clock:seconds())
    else
      local done = self.deferred
      self.deferred = nil
      done:callback(self)
    end
  end)
  d:addErrback(function(failure)
    self.running = false
    local done = self.deferred
    self.deferred = nil
    done:errback(failure)
  end)
end

function LoopingCall:_scheduleFrom(when)
  local delay
  if self.interval == 0 then
    delay = 0
  else
    local runningFor = when - self.starttime
    delay = self.interval - (runningFor % self.interval)
    if when == when + delay then delay = self.interval end
  end
  self.call = self.clock:callLater(delay, self.__call, self)
end

function LoopingCall:__tostring()
  return string.format("<LoopingCall %s running=%s interval=%s>",
    tostring(self.f), tostring(self.running), tostring(self.interval))
end

M.LoopingCall = LoopingCall

---------------------------------------------------------------------------
-- deferLater, react

-- Does clock have a callable callLater (indexing a userdata may raise)?
local function hasCallLater(clock)
  local t = type(clock)
  if t ~= "table" and t ~= "userdata" then return false end
  local ok, f = pcall(function() return clock.callLater end)
  return ok and check.isCallable(f)
end

--- task.deferLater(clock, delay, f, ...) -> Deferred: call f(...) after
-- `delay` seconds (>= 0) of `clock` (the reactor or a Clock); the
-- Deferred fires with f's result (or its error). f may be nil: fire with
-- nil. Cancelling the Deferred cancels the call (CancelledError). Bad
-- arguments (clock without callLater, delay not a number, negative or
-- NaN, f not callable) raise naming deferLater.
-- twisted.internet.task.deferLater.
function M.deferLater(clock, delay, f, ...)
  if not hasCallLater(clock) then
    check.typeError(1, "deferLater", "clock", clock)
  end
  check.nonNegative(delay, 2, "deferLater", "delay")
  if f ~= nil then check.callable(f, 3, "deferLater") end
  local dc
  local d = defer.Deferred(function() dc:cancel() end)
  if f ~= nil then
    local args = table.pack(...)
    d:addCallback(function() return f(table.unpack(args, 1, args.n)) end)
  end
  dc = clock:callLater(delay, d.callback, d, nil)
  return d
end

--- task.react(main, argv): call main(reactor, table.unpack(argv)), run
-- the reactor until the Deferred it returns fires (a plain value or an
-- error counts as fired), stop it and exit the process: status 0 on
-- success, 1 on failure after logging it. Never returns.
-- twisted.internet.task.react.
function M.react(main, argv)
  check.callable(main, 1, "react")
  local r = reactor()
  argv = argv or {}
  local code = 0
  local stopping = false
  r.addSystemEventTrigger("before", "shutdown", function() stopping = true end)
  local function finish(result, stopReactor)
    if stopReactor then pcall(r.stop) end
    if require("spindle.failure").isFailure(result) then
      require("spindle.log").err(result, "main function encountered error")
      code = 1
    end
  end
  local finished = defer.maybeDeferred(main, r,
    table.unpack(argv, 1, argv.n or #argv))
  finished:addBoth(function(result)
    if stopping then
      finish(result, false)
    else
      r.callWhenRunning(finish, result, true)
    end
  end)
  r.run()
  os.exit(code)
end

-- Cooperator, cooperate, coiterate and their errors live in
-- spindle.cooperator (twisted.internet.task's names).
for _, name in ipairs({"Cooperator", "CooperativeTask", "cooperate",
    "coiterate", "SchedulerError", "SchedulerStopped", "TaskFinished",
    "TaskDone", "TaskStopped", "TaskFailed", "NotPaused"}) do
  M[name] = require("spindle.cooperator")[name]
end

return require("spindle._core").strict("task", M)
