--- spindle.defer: Deferred and its helpers, after twisted.internet.defer.
-- The Deferred itself and its chain runner are C (spindle._defer, in
-- runtime/defer.c); this file adds addTimeout, succeed, fail,
-- maybeDeferred, DeferredList, gatherResults, inlineCallbacks/await,
-- DeferredLock, DeferredSemaphore, DeferredQueue and the error types.
-- Everything here runs on the reactor thread.
local C = require("spindle._defer")
local failure = require("spindle.failure")
local Object = require("spindle.class").Object
local check = require("spindle.check")

local Deferred = C.Deferred
local isDeferred = C.isDeferred
local isFailure = failure.isFailure
local Failure = failure.Failure
local errhandler = C.errhandler
local pack, unpack = table.pack, table.unpack
local coresume = require("spindle._interrupt").resume -- coroutine.resume

local M = {}

M.Deferred = Deferred
M.setDebugging = C.setDebugging
M.getDebugging = C.getDebugging
M.errorType = failure.errorType
for name, T in pairs(failure.builtinErrorTypes("defer")) do M[name] = T end

local CancelledError, TimeoutError = M.CancelledError, M.TimeoutError
local FirstError = M.FirstError

local isCallable = check.isCallable
local checkCallable = check.callable

-- Does clock look like a clock (a table or userdata with callLater)?
-- Indexing a userdata may raise: that is a no.
local function hasCallLater(clock)
  local t = type(clock)
  if t ~= "table" and t ~= "userdata" then return false end
  local ok, f = pcall(function() return clock.callLater end)
  return ok and isCallable(f)
end

local function checkDeferred(d, n, fname)
  if not isDeferred(d) then
    check.typeError(n, fname, "Deferred", d, 3)
  end
end

--- The default onTimeoutCancel of addTimeout: a CancelledError Failure
-- becomes a TimeoutError; any other Failure is raised again; a success
-- passes. twisted.internet.defer._cancelledToTimedOutError.
local function cancelledToTimedOutError(value, timeout)
  if isFailure(value) then
    value:trap(CancelledError)
    error(TimeoutError(("Deferred timed out after %s seconds")
      :format(timeout), {timeout = timeout}))
  end
  return value
end

--- d:addTimeout(seconds[, clock][, onTimeoutCancel]) -> d
-- Cancel d if it has not fired after `seconds` (a number >= 0, seconds);
-- the failure is then defer.TimeoutError unless onTimeoutCancel(value,
-- seconds) says otherwise. clock has callLater (default: the reactor;
-- task.Clock in tests). The timeout covers the callbacks added before
-- this call. Bad arguments (seconds not a number, negative or NaN; clock
-- without callLater; onTimeoutCancel not callable) raise naming
-- addTimeout. twisted.internet.defer.Deferred.addTimeout.
function C.methods.addTimeout(self, seconds, clock, onTimeoutCancel)
  checkDeferred(self, 1, "addTimeout")
  check.nonNegative(seconds, 1, "addTimeout", "timeout")
  if onTimeoutCancel == nil and type(clock) == "function" then
    clock, onTimeoutCancel = nil, clock
  end
  if clock ~= nil and not hasCallLater(clock) then
    check.argError(2, "addTimeout", "clock with callLater expected")
  end
  if onTimeoutCancel ~= nil then
    checkCallable(onTimeoutCancel, 3, "addTimeout")
  end
  local reactor = package.loaded["spindle.reactor"]
  if clock == nil then
    reactor = require("spindle.reactor")
    clock = reactor
  end
  local timedOut = false
  local function timeItOut()
    timedOut = true
    self:cancel()
  end
  local delayedCall
  if clock == reactor then
    delayedCall = clock.callLater(seconds, timeItOut)
  else
    delayedCall = clock:callLater(seconds, timeItOut)
  end
  self:addBoth(function(value)
    if timedOut then
      return (onTimeoutCancel or cancelledToTimedOutError)(value, seconds)
    end
    return value
  end)
  self:addBoth(function(result)
    if delayedCall:active() then delayedCall:cancel() end
    return result
  end)
  return self
end

--- defer.succeed(value) -> a Deferred that has fired with value.
-- twisted.internet.defer.succeed.
function M.succeed(value)
  local d = Deferred()
  d:callback(value)
  return d
end

--- defer.fail(f) -> a Deferred that has failed with f (a Failure or any
-- error value, wrapped). twisted.internet.defer.fail.
function M.fail(f)
  local d = Deferred()
  if f ~= nil and not isFailure(f) then
    f = Failure(f, debug.traceback(nil, 2))
  end
  d:errback(f)
  return d
end

--- defer.maybeDeferred(f, ...) -> Deferred
-- Call f(...): a Deferred it returns is returned as is, a Failure or a
-- raised error becomes a failed Deferred (with the traceback of the raise
-- point), any other value a fired one. twisted...defer.maybeDeferred.
function M.maybeDeferred(f, ...)
  checkCallable(f, 1, "maybeDeferred")
  local ok, result = xpcall(f, errhandler, ...)
  if not ok then
    local d = Deferred()
    d:errback(result)
    return d
  end
  if isDeferred(result) then return result end
  if isFailure(result) then return M.fail(result) end
  return M.succeed(result)
end

-- The metatable of the pairs DeferredList makes: their field n is 2, as
-- table.pack would set it, so table.unpack(p, 1, p.n) keeps a nil value.
-- (Through __index, so that n is not one of the pair's own keys.)
local PairMeta = {__index = {n = 2}}

-- gatherResults' lists: the metatable gives `n`, their length (nil values
-- included), kept in a weak table; not an own key, as for the pairs.
local listLength = setmetatable({}, {__mode = "k"})
local ListMeta = {__index = function(t, k)
  if k == "n" then return listLength[t] end
end}

local newDeferredList

--- defer.DeferredList(list[, options]) -> Deferred
-- Fires when every Deferred in list has fired, with a list of
-- {success, value} pairs in list order (each pair has p.n == 2, so a nil
-- value is kept by table.unpack(p, 1, p.n); the list itself never has
-- holes). options (a table, may be nil):
-- fireOnOneCallback fires with {value, index} at the first success (n 2);
-- fireOnOneErrback fails with a FirstError (fields subFailure, index) at
-- the first failure; consumeErrors turns the failures of the list's
-- Deferreds into nil results for their later callbacks. Indexes are
-- 1-based. Cancelling it cancels every Deferred in list.
-- twisted.internet.defer.DeferredList.
function M.DeferredList(list, options)
  check.table(list, 1, "DeferredList")
  options = check.optTable(options, 2, "DeferredList") or {}
  -- Not a tail call: newDeferredList blames the caller of this frame.
  local dl = newDeferredList(list, options, "DeferredList")
  return dl
end

-- newDeferredList(list, options, fname) -> Deferred: DeferredList once its
-- arguments' types are checked; a non-Deferred element is a bad argument
-- #1 to fname (the public function: DeferredList or gatherResults),
-- blamed on that function's caller. (Twisted raises AttributeError from
-- inside DeferredList for one: ``'int' object has no attribute
-- 'addCallbacks'``.)
function newDeferredList(list, options, fname)
  local n = list.n or #list
  for i = 1, n do
    if not isDeferred(list[i]) then
      check.argError(1, fname, ("element %d is a %s, not a " ..
        "Deferred"):format(i, check.typeName(list[i])), 3)
    end
  end
  local fireOnOneCallback = options.fireOnOneCallback
  local fireOnOneErrback = options.fireOnOneErrback
  local consumeErrors = options.consumeErrors
  local resultList, finished = {}, 0
  local dl = Deferred(function()
    for i = 1, n do
      local ok, e = xpcall(list[i].cancel, errhandler, list[i])
      if not ok then
        require("spindle.log").err(e,
          "Exception raised from user supplied canceller")
      end
    end
  end)
  if n == 0 and not fireOnOneCallback then dl:callback(resultList) end

  local function gotResult(result, index, succeeded)
    resultList[index] = setmetatable({succeeded, result}, PairMeta)
    finished = finished + 1
    if not dl.called then
      if succeeded and fireOnOneCallback then
        dl:callback(setmetatable({result, index}, PairMeta))
      elseif not succeeded and fireOnOneErrback then
        dl:errback(Failure(FirstError(("[#%d, %s]")
          :format(index, tostring(result.value)),
          {subFailure = result, index = index})))
      elseif finished == n then
        dl:callback(resultList)
      end
    end
    if not succeeded and consumeErrors then return nil end
    return result
  end

  for i = 1, n do
    list[i]:addCallbacks(gotResult, gotResult, {i, true}, {i, false})
  end
  return dl
end

--- defer.gatherResults(list[, consumeErrors]) -> Deferred
-- Fires with the list of results of the Deferreds in list, or fails with
-- FirstError at the first failure. The list's field n is the number of
-- results, nil results included (#values stops at a nil): use
-- table.unpack(values, 1, values.n). n comes from the list's metatable,
-- not an own key. twisted.internet.defer.gatherResults.
function M.gatherResults(list, consumeErrors)
  check.table(list, 1, "gatherResults")
  local n = list.n or #list
  local dl = newDeferredList(list, {fireOnOneErrback = true,
    consumeErrors = consumeErrors}, "gatherResults")
  return dl:addCallback(function(resultList)
    local values = setmetatable({}, ListMeta)
    for i = 1, n do values[i] = resultList[i][2] end
    listLength[values] = n
    return values
  end)
end

--- Coroutines (inlineCallbacks / await).
-- running[co] is the status of each inlineCallbacks coroutine (Twisted's
-- _CancellationStatus): co, the Deferred its end fires (deferred), the one
-- its caller got (outer; the same until a cancel replaces deferred) and
-- the Deferred it waits on (waitingOn). statusOf[d] finds it from either
-- Deferred.
--
-- Coroutines waiting on each other cost heap, never C stack (DESIGN.md),
-- because resume() runs them all from one loop:
-- - An inlineCallbacks function called inside another's coroutine does
--   not resume its new coroutine from inside the running one: the running
--   one yields START to the loop, which runs the new one until it waits or
--   ends, then goes back to the caller with the new one's Deferred. The
--   call still returns after the new coroutine ran, as in Twisted. (Where
--   the caller cannot yield, inside a C function such as a string.gsub
--   callback, the new coroutine is resumed from inside it, as before.)
-- - When a coroutine ends, the Deferred it fires is often what its
--   caller's coroutine awaits, directly or through other Deferreds
--   (gatherResults, addCallback). A coroutine whose awaited Deferred fires
--   during that fire is not resumed inside it but by the same loop right
--   after it (`tail`), so the rest of the fire's callbacks run before it,
--   not after as in Twisted. Only resumptions at the same depth (`depth`:
--   resume() calls on the stack) are put off; those inside a coroutine
--   that a callback started are not.
local running = setmetatable({}, {__mode = "k"})
local statusOf = setmetatable({}, {__mode = "k"})
local START = setmetatable({}, {__name = "inlineCallbacks start"})
local tail -- while a coroutine's end fires: {depth, n, co, status, r, ...}
local depth = 0

local resume

-- A Deferred yielded by the coroutine: wait for it. While it has a result
-- already, go on without waiting (Twisted's `waiting` flag), so a loop of
-- awaits on fired Deferreds does not grow the stack.
local function waitFor(co, status, d)
  local sync, done, value = true, false, nil
  d:addBoth(function(r)
    if sync then
      done, value = true, r
      return nil
    end
    status.waitingOn = nil
    local t = tail
    if t ~= nil and t.depth == depth then
      local n = t.n
      t[n + 1], t[n + 2], t[n + 3] = co, status, r
      t.n = n + 3
    else
      resume(co, status, r)
    end
    return nil
  end)
  sync = false
  if done then return true, value end
  status.waitingOn = d
  return false
end

-- Fire d with the end of coroutine co: its error (a Failure keeping the
-- traceback of its raise point), a Deferred to wait on, or its value.
local function fire(co, d, ok, r)
  if not ok then
    -- C.toFailure, not Failure: error() and error(nil) raise nil.
    if not isFailure(r) then r = C.toFailure(r, debug.traceback(co)) end
    d:errback(r)
  elseif r == d then
    d:errback(C.toFailure("an inlineCallbacks function returned its own " ..
      "Deferred", debug.traceback(co)))
  elseif isDeferred(r) then
    C.adopt(d, r)
  else
    d:callback(r)
  end
end

-- Fire the Deferred of a coroutine that has ended. Returns the `tail`
-- list of the coroutines awaiting it, for resume() to run, or nil. Never
-- raises (resume() must go on with the coroutines it holds): a fire that
-- fails (fn returned its own Deferred) fails d instead.
local function finish(co, status, ok, r)
  local d = status.deferred
  if d.called then return nil end -- cancelled and not waiting on anything
  local t, saved = {depth = depth, n = 0}, tail
  tail = t
  local fired, e = xpcall(fire, errhandler, co, d, ok, r)
  if not fired and not d.called then d:errback(e) end
  tail = saved
  return t
end

-- Run co with `value`, and every coroutine that asks to be run meanwhile
-- (see above), each until it waits on a Deferred or ends; an end fires
-- status.deferred. `work` holds the coroutines to run next, three slots
-- each (co, status, value), the last one first.
resume = function(co, status, value)
  local work, n = {}, 0
  depth = depth + 1
  while true do
    local ok, r, child = coresume(co, value)
    local nextOne = true
    if not ok or coroutine.status(co) == "dead" then
      running[co] = nil
      local t = finish(co, status, ok, r)
      if t ~= nil then
        for i = t.n - 2, 1, -3 do
          work[n + 1], work[n + 2], work[n + 3] = t[i], t[i + 1], t[i + 2]
          n = n + 3
        end
      end
    elseif r == START then
      work[n + 1], work[n + 2], work[n + 3] = co, status, child.outer
      n = n + 3
      co, status, value = child.co, child, nil
      nextOne = false
    elseif isDeferred(r) then
      local ready, v = waitFor(co, status, r)
      if ready then value, nextOne = v, false end
    else
      value = r
      nextOne = false
    end
    if nextOne then
      if n == 0 then break end
      co, status, value = work[n - 2], work[n - 1], work[n]
      work[n - 2], work[n - 1], work[n] = nil, nil, nil
      n = n - 3
    end
  end
  depth = depth - 1
end

-- The canceller of an inlineCallbacks Deferred d (the one its caller got,
-- or one that replaced it). As Twisted's _cancellableInlineCallbacks: if
-- its coroutine waits on a Deferred, d now waits on a fresh one that the
-- coroutine's end will fire, and the awaited one is cancelled. When that
-- one is itself an inlineCallbacks Deferred whose coroutine waits, the
-- work its canceller would do is done by this loop instead of a nested
-- call, so a cancel through any number of levels costs no C stack.
local function cancel(d)
  while true do
    local status = statusOf[d]
    local awaited = status and status.waitingOn
    if awaited == nil then return end
    local fresh = Deferred(cancel)
    statusOf[fresh] = status
    status.deferred = fresh
    C.adopt(d, fresh)
    -- What awaited:cancel() reaches: it follows Deferreds waiting on others.
    local target = awaited
    while target.called and isDeferred(target.result) do
      target = target.result
    end
    local lower = not target.called and statusOf[target]
    if not lower or lower.waitingOn == nil then
      awaited:cancel()
      return
    end
    d = target
  end
end

--- defer.inlineCallbacks(fn) -> function(...) -> Deferred
-- The returned function runs fn(...) in a new coroutine, in which
-- defer.await(d) suspends until d fires, and returns a Deferred of fn's
-- return value (or of its error, as a Failure with the traceback of the
-- raise point). It returns once fn has run up to its first wait on an
-- unfired Deferred (or to its end). Cancelling that Deferred cancels the
-- one fn awaits; fn sees CancelledError raised by await and may go on.
-- Any number of these functions may await each other (nested calls cost
-- heap, not C stack). twisted.internet.defer.inlineCallbacks.
function M.inlineCallbacks(fn)
  checkCallable(fn, 1, "inlineCallbacks")
  return function(...)
    local args = pack(...)
    local co = coroutine.create(function()
      return fn(unpack(args, 1, args.n))
    end)
    local outer = Deferred(cancel)
    local status = {co = co, deferred = outer, outer = outer}
    statusOf[outer] = status
    running[co] = status
    if running[coroutine.running()] ~= nil and coroutine.isyieldable() then
      coroutine.yield(START, status) -- resume() runs co, then comes back
    else
      resume(co, status, nil)
    end
    return outer
  end
end

--- defer.await(d) -> result
-- Inside an inlineCallbacks function: wait until d fires; return its
-- result, or raise its Failure (the Failure object itself, so f:trap()
-- works under pcall). A non-Deferred is returned as it is. Raises an
-- error when called outside an inlineCallbacks coroutine.
function M.await(d)
  local co = coroutine.running()
  if running[co] == nil then
    error("await() called outside an inlineCallbacks function " ..
      "(wrap the caller in defer.inlineCallbacks)", 2)
  end
  if not isDeferred(d) then return d end
  local r = coroutine.yield(d)
  if isFailure(r) then error(r, 0) end
  return r
end

--- Lock, semaphore and queue (twisted.internet.defer's).

-- Raise a clear error when a method is called with a dot (lock.release())
-- or on something that is not an instance of cls.
local function checkSelf(self, cls, fname)
  if not cls:isinstance(self) then
    error(("calling '%s' on bad self (%s expected, got %s; call it as " ..
      "obj:%s())"):format(fname, cls.__name, type(self), fname), 3)
  end
end

--- lock:run(f, ...) -> Deferred: acquire the lock (or a semaphore
-- token), call f(...) (which may return a Deferred), release once f's
-- result is ready, and fire with that result (or f's Failure). f: a
-- callable; raises a bad-argument error when f is not one, and "calling
-- 'run' on bad self" when run is called with a dot (lock.run(f)). Shared
-- by DeferredLock and DeferredSemaphore.
-- twisted.internet.defer._ConcurrencyPrimitive.run.
local function makeRun(cls)
  return function(self, f, ...)
    checkSelf(self, cls, "run")
    checkCallable(f, 1, "run")
    local args = pack(...)
    return self:acquire():addCallback(function()
      return M.maybeDeferred(f, unpack(args, 1, args.n)):addBoth(function(r)
        self:release()
        return r
      end)
    end)
  end
end

local function removeWaiting(waiting, d)
  for i = 1, #waiting do
    if waiting[i] == d then
      table.remove(waiting, i)
      return
    end
  end
end

--- defer.DeferredLock(): a lock for event-driven code. lock:acquire() ->
-- Deferred fired with the lock once it is ours; lock:release();
-- lock:run(f, ...); lock.locked. Methods called with a dot
-- (lock.release()) raise "calling 'release' on bad self ...".
-- twisted.internet.defer.DeferredLock.
local DeferredLock = Object:extend({__name = "DeferredLock"})

function DeferredLock:__init()
  self.locked = false
  self.waiting = {}
end

--- lock:acquire() -> Deferred fired with the lock when it is ours;
-- waiters are served in order; cancelling a waiting one drops it.
function DeferredLock:acquire()
  checkSelf(self, DeferredLock, "acquire")
  local d = Deferred(function(d) removeWaiting(self.waiting, d) end)
  if self.locked then
    self.waiting[#self.waiting + 1] = d
  else
    self.locked = true
    d:callback(self)
  end
  return d
end

--- lock:release(): free the lock, handing it to the first waiter.
-- Raises if the lock is not held.
function DeferredLock:release()
  checkSelf(self, DeferredLock, "release")
  if not self.locked then error("Tried to release an unlocked lock", 2) end
  self.locked = false
  if #self.waiting > 0 then
    self.locked = true
    table.remove(self.waiting, 1):callback(self)
  end
end

DeferredLock.run = makeRun(DeferredLock)

--- defer.DeferredSemaphore(tokens): at most `tokens` holders at once;
-- tokens is an integer >= 1 (an integral float such as 2.0 is taken),
-- else a bad-argument error. acquire(), release(), run(f, ...), tokens,
-- limit. twisted.internet.defer.DeferredSemaphore.
local DeferredSemaphore = Object:extend({__name = "DeferredSemaphore"})

function DeferredSemaphore:__init(tokens)
  -- Level 3: the caller of DeferredSemaphore(...) (its __call is a tail
  -- call to new, which calls us).
  check.number(tokens, 1, "DeferredSemaphore", 3)
  local n = math.tointeger(tokens)
  if n == nil then
    check.argError(1, "DeferredSemaphore", "DeferredSemaphore requires " ..
      "an integer number of tokens", 3)
  elseif n < 1 then
    check.argError(1, "DeferredSemaphore", "DeferredSemaphore requires " ..
      "tokens >= 1", 3)
  end
  self.tokens = n
  self.limit = n
  self.waiting = {}
end

--- sem:acquire() -> Deferred fired with the semaphore when a token is
-- free; cancelling a waiting one drops it.
function DeferredSemaphore:acquire()
  checkSelf(self, DeferredSemaphore, "acquire")
  local d = Deferred(function(d) removeWaiting(self.waiting, d) end)
  if self.tokens == 0 then
    self.waiting[#self.waiting + 1] = d
  else
    self.tokens = self.tokens - 1
    d:callback(self)
  end
  return d
end

--- sem:release(): give a token back (to the first waiter if any).
-- Raises if more tokens come back than were taken.
function DeferredSemaphore:release()
  checkSelf(self, DeferredSemaphore, "release")
  if self.tokens >= self.limit then
    error("Someone released me too many times: too many tokens!", 2)
  end
  self.tokens = self.tokens + 1
  if #self.waiting > 0 then
    self.tokens = self.tokens - 1
    table.remove(self.waiting, 1):callback(self)
  end
end

DeferredSemaphore.run = makeRun(DeferredSemaphore)

--- defer.DeferredQueue([size[, backlog]]): an event-driven queue.
-- put(obj) raises QueueOverflow past `size` pending objects; get() ->
-- Deferred of the next object, raises QueueUnderflow past `backlog`
-- waiting gets. size and backlog are numbers >= 0 or nil (no limit),
-- else a bad-argument error. nil is queued like any object (as Twisted
-- queues None): q.pending is the list of objects not yet taken, its
-- length, nils included, in q.pending.n. twisted...defer.DeferredQueue.
local DeferredQueue = Object:extend({__name = "DeferredQueue"})

local function checkLimit(x, n, what)
  if x == nil then return end
  if type(x) ~= "number" then
    check.typeError(n, "DeferredQueue", "number or nil", x, 4)
  end
  check.nonNegative(x, n, "DeferredQueue", what, 4)
end

function DeferredQueue:__init(size, backlog)
  checkLimit(size, 1, "size")
  checkLimit(backlog, 2, "backlog")
  self.waiting = {}
  self.pending = setmetatable({}, ListMeta)
  listLength[self.pending] = 0
  self.size = size
  self.backlog = backlog
end

--- q:put(obj): hand obj (nil included) to the first waiting get(), else
-- keep it. Raises QueueOverflow when `size` objects are already pending.
function DeferredQueue:put(obj)
  checkSelf(self, DeferredQueue, "put")
  local pending = self.pending
  local n = listLength[pending] or #pending
  if #self.waiting > 0 then
    table.remove(self.waiting, 1):callback(obj)
  elseif self.size == nil or n < self.size then
    pending[n + 1] = obj
    listLength[pending] = n + 1
  else
    error(M.QueueOverflow("queue is full"), 2)
  end
end

--- q:get() -> Deferred of the next object (fired now if one is
-- pending). Raises QueueUnderflow when `backlog` gets already wait.
function DeferredQueue:get()
  checkSelf(self, DeferredQueue, "get")
  local pending = self.pending
  local n = listLength[pending] or #pending
  if n > 0 then
    local obj = pending[1]
    table.move(pending, 2, n, 1)
    pending[n] = nil
    listLength[pending] = n - 1
    return M.succeed(obj)
  elseif self.backlog == nil or #self.waiting < self.backlog then
    local d = Deferred(function(d) removeWaiting(self.waiting, d) end)
    self.waiting[#self.waiting + 1] = d
    return d
  end
  error(M.QueueUnderflow("too many gets waiting"), 2)
end

M.DeferredLock = DeferredLock
M.DeferredSemaphore = DeferredSemaphore
M.DeferredQueue = DeferredQueue

return require("spindle._core").strict("defer", M)
