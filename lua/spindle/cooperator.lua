--- spindle.cooperator: cooperative scheduling of long loops, as
-- twisted.internet.task's Cooperator, cooperate and coiterate; its names
-- are re-exported by spindle.task (task.cooperate, task.Cooperator, ...).
--
-- A long loop written as an iterator runs a few steps per reactor turn
-- (for at most 10 ms per turn by default), so timers and I/O keep being
-- served. An iterator is what Lua's generic `for` takes:
--
--   task.cooperate(ipairs(bigList))          -- f, s, var
--   task.cooperate(function() ... end)       -- a closure; nil ends it
--   task.cooperate(coroutine.create(fn))     -- a coroutine; each yield
--                                            -- is one step
--   task.cooperate(coroutine.wrap(fn))       -- likewise
--
-- A step that produces a Deferred (returns it, or yields it) pauses its
-- task until the Deferred fires; a failure there ends the task with it.
local Object = require("spindle.class").Object
local defer = require("spindle.defer")
local failure = require("spindle.failure")

local M = {}

local errorType = failure.errorType
local isDeferred = require("spindle._defer").isDeferred

--- Errors, with Twisted's names and parents (twisted.internet.task).
M.SchedulerError = errorType("SchedulerError")
M.SchedulerStopped = errorType("SchedulerStopped", M.SchedulerError)
M.TaskFinished = errorType("TaskFinished", M.SchedulerError)
M.TaskDone = errorType("TaskDone", M.TaskFinished)
M.TaskStopped = errorType("TaskStopped", M.TaskFinished)
M.TaskFailed = errorType("TaskFailed", M.TaskFinished)
M.NotPaused = errorType("NotPaused", M.SchedulerError)

local function reactor()
  return require("spindle.reactor")
end

-- One step of an iterator given as (f, s, var) or a coroutine: returns
-- (more, value) where more is false once it is exhausted.
local function makeStepper(it, s, var)
  if type(it) == "thread" then
    return function()
      local res = table.pack(coroutine.resume(it))
      if not res[1] then error(res[2], 0) end
      if coroutine.status(it) == "dead" then
        return false, nil
      end
      return true, res[2]
    end
  end
  return function()
    local v, second = it(s, var)
    if v == nil then return false, nil end
    var = v
    -- ipairs/pairs give (key, value): the value is what a step produces.
    if second ~= nil then return true, second end
    return true, v
  end
end

local function checkIterator(it, fname)
  local mt = getmetatable(it)
  if type(it) ~= "function" and type(it) ~= "thread" and
      not (type(mt) == "table" and mt.__call) then
    error(("bad argument #1 to '%s' (iterator expected, got %s)"):format(
      fname, type(it)), 3)
  end
end

---------------------------------------------------------------------------
-- CooperativeTask

--- CooperativeTask: a running iterator inside a Cooperator. Made by
-- cooperator:cooperate(...). twisted.internet.task.CooperativeTask.
local CooperativeTask = Object:extend({__name = "CooperativeTask"})

function CooperativeTask:__init(iterator, step, cooperator)
  self._iterator = iterator
  self._step = step
  self._cooperator = cooperator
  self._deferreds = {}
  self._pauseCount = 0
  self._completionState = nil
  self._completionResult = nil
  cooperator:_addTask(self)
end

--- t:whenDone() -> Deferred fired with the iterator when it is
-- exhausted; fails with TaskStopped if stopped, SchedulerStopped if its
-- Cooperator stops, or the step's error.
function CooperativeTask:whenDone()
  local d = defer.Deferred()
  if self._completionState == nil then
    self._deferreds[#self._deferreds + 1] = d
  elseif failure.isFailure(self._completionResult) then
    d:errback(self._completionResult)
  else
    d:callback(self._completionResult)
  end
  return d
end

-- Raise the completion error if the task is over.
function CooperativeTask:_checkFinish()
  if self._completionState ~= nil then
    error(self._completionState(), 3)
  end
end

--- t:pause(): stop running steps until resume() (counted). Raises
-- TaskDone/TaskStopped/TaskFailed if the task is over.
function CooperativeTask:pause()
  self:_checkFinish()
  self._pauseCount = self._pauseCount + 1
  if self._pauseCount == 1 then self._cooperator:_removeTask(self) end
end

--- t:resume(): undo one pause(). Raises NotPaused if not paused.
function CooperativeTask:resume()
  if self._pauseCount == 0 then
    error(M.NotPaused("resume() called on a task that is not paused"), 2)
  end
  self._pauseCount = self._pauseCount - 1
  if self._pauseCount == 0 and self._completionState == nil then
    self._cooperator:_addTask(self)
  end
end

-- End the task: state is an error type; result the iterator or a Failure.
function CooperativeTask:_completeWith(state, result)
  self._completionState = state
  self._completionResult = result
  if self._pauseCount == 0 then self._cooperator:_removeTask(self) end
  local ds = self._deferreds
  self._deferreds = {}
  for _, d in ipairs(ds) do
    if failure.isFailure(result) then
      d:errback(result)
    else
      d:callback(result)
    end
  end
end

--- t:stop(): end the task now; whenDone Deferreds fail with TaskStopped.
-- Raises TaskDone/TaskStopped/TaskFailed if it is already over.
function CooperativeTask:stop()
  self:_checkFinish()
  self:_completeWith(M.TaskStopped,
    failure.Failure(M.TaskStopped("the task was stopped")))
end

-- Run one step (called by the Cooperator).
function CooperativeTask:_oneWorkUnit()
  local ok, more, value = pcall(self._step)
  if not ok then
    local f = failure.isFailure(more) and more or failure.Failure(more)
    self:_completeWith(M.TaskFailed, f)
    return
  end
  if not more then
    self:_completeWith(M.TaskDone, self._iterator)
    return
  end
  if isDeferred(value) then
    self:pause()
    value:addCallbacks(function()
      if self._completionState == nil then self:resume() end
    end, function(f)
      if self._completionState == nil then
        self._pauseCount = 0
        self:_completeWith(M.TaskFailed, f)
      end
    end)
  end
end

---------------------------------------------------------------------------
-- Cooperator

-- The default termination predicate: a turn ends after 10 ms
-- (twisted.internet.task._Timer, MAX_SLICE = 0.01).
local function defaultTerminationPredicateFactory()
  local stop = reactor().seconds() + 0.01
  return function() return reactor().seconds() >= stop end
end

-- The default scheduler: the next reactor turn (twisted uses
-- callLater(_EPSILON)).
local function defaultScheduler(x)
  return reactor().callLater(0, x)
end

--- Cooperator([{terminationPredicateFactory=, scheduler=, started=}]):
-- runs CooperativeTasks round-robin, a slice per scheduled turn.
-- terminationPredicateFactory() returns a function saying when the turn
-- must end (default: after 10 ms); scheduler(f) arranges for f to run
-- later and returns something with cancel() (default: reactor.callLater
-- 0). started=false makes it wait for start(). The three may also be
-- given positionally, as Twisted's. twisted.internet.task.Cooperator.
local Cooperator = Object:extend({__name = "Cooperator"})

function Cooperator:__init(terminationPredicateFactory, scheduler, started)
  if type(terminationPredicateFactory) == "table" and
      getmetatable(terminationPredicateFactory) == nil then
    local o = terminationPredicateFactory
    terminationPredicateFactory, scheduler, started =
      o.terminationPredicateFactory, o.scheduler, o.started
  end
  self._tasks = {}
  self._metarator = 1
  self._terminationPredicateFactory = terminationPredicateFactory or
    defaultTerminationPredicateFactory
  self._scheduler = scheduler or defaultScheduler
  self._delayedCall = nil
  self._stopped = false
  self._started = started ~= false
end

--- c:coiterate(iterator[, s][, var][, doneDeferred]) -> Deferred fired
-- with the iterator once it is exhausted (or failed with its error).
function Cooperator:coiterate(it, s, var)
  checkIterator(it, "coiterate")
  return self:cooperate(it, s, var):whenDone()
end

--- c:cooperate(iterator[, s][, var]) -> CooperativeTask. Raises nothing
-- if the Cooperator is stopped: the task is then already failed with
-- SchedulerStopped.
function Cooperator:cooperate(it, s, var)
  checkIterator(it, "cooperate")
  return CooperativeTask(it, makeStepper(it, s, var), self)
end

function Cooperator:_addTask(t)
  if self._stopped then
    self._tasks[#self._tasks + 1] = t
    t:_completeWith(M.SchedulerStopped,
      failure.Failure(M.SchedulerStopped("the Cooperator is stopped")))
  else
    self._tasks[#self._tasks + 1] = t
    self:_reschedule()
  end
end

function Cooperator:_removeTask(t)
  for i, x in ipairs(self._tasks) do
    if x == t then
      table.remove(self._tasks, i)
      if i < self._metarator then self._metarator = self._metarator - 1 end
      break
    end
  end
  if #self._tasks == 0 and self._delayedCall ~= nil then
    self._delayedCall:cancel()
    self._delayedCall = nil
  end
end

-- One turn: step tasks round-robin until the predicate says stop.
function Cooperator:_tick()
  self._delayedCall = nil
  local terminate = self._terminationPredicateFactory()
  while #self._tasks > 0 do
    if self._metarator > #self._tasks then self._metarator = 1 end
    local t = self._tasks[self._metarator]
    self._metarator = self._metarator + 1
    t:_oneWorkUnit()
    if terminate() then break end
  end
  self:_reschedule()
end

function Cooperator:_reschedule()
  if not self._started then return end
  if self._delayedCall == nil and #self._tasks > 0 then
    self._delayedCall = self._scheduler(function() self:_tick() end)
  end
end

--- c:start(): begin scheduling (for a Cooperator made with
-- started=false). twisted Cooperator.start.
function Cooperator:start()
  self._stopped = false
  self._started = true
  self:_reschedule()
end

--- c:stop(): stop every task (their whenDone fail with SchedulerStopped)
-- and fail later cooperate() tasks likewise. Raises SchedulerStopped if
-- already stopped. twisted Cooperator.stop.
function Cooperator:stop()
  if self._stopped then
    error(M.SchedulerStopped("the Cooperator is already stopped"), 2)
  end
  self._stopped = true
  local tasks = self._tasks
  self._tasks = {}
  for _, t in ipairs(tasks) do
    t:_completeWith(M.SchedulerStopped,
      failure.Failure(M.SchedulerStopped("the Cooperator was stopped")))
  end
  if self._delayedCall ~= nil then
    self._delayedCall:cancel()
    self._delayedCall = nil
  end
end

--- c.running: started and not stopped.
function Cooperator:isRunning()
  return self._started and not self._stopped
end

M.Cooperator = Cooperator
M.CooperativeTask = CooperativeTask

local theCooperator

local function global()
  if theCooperator == nil then theCooperator = Cooperator() end
  return theCooperator
end

--- task.cooperate(iterator[, s][, var]) -> CooperativeTask on the global
-- Cooperator (made on first use; it runs while the reactor runs).
-- twisted.internet.task.cooperate.
function M.cooperate(it, s, var)
  checkIterator(it, "cooperate")
  return global():cooperate(it, s, var)
end

--- task.coiterate(iterator[, s][, var]) -> Deferred fired with the
-- iterator when exhausted. twisted.internet.task.coiterate.
function M.coiterate(it, s, var)
  checkIterator(it, "coiterate")
  return global():coiterate(it, s, var)
end

return require("spindle._core").strict("cooperator", M)
