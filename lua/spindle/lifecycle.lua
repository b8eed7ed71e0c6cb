--- spindle.lifecycle: the reactor's lifecycle policy, a part of
-- spindle.reactor (reactor.lua takes its fields): run and stop, system
-- event triggers, callWhenRunning and runUntilComplete, written on the
-- mechanism of spindle._loop (runtime/loop.c: run the loop, halt it, mark
-- it stopping, the DelayedCall heap, signals). Follows
-- twisted.internet.base.ReactorBase and _ThreePhaseEvent.
--
-- Shutdown, as Twisted does it: stop() marks the loop stopping and
-- schedules the 'shutdown' event for the next timer pass; its 'before'
-- triggers run and any Deferreds they return are waited on; then
-- `running` turns false, the 'during' and 'after' triggers run, and the
-- loop halts, so run() returns. Triggers are one-shot: an event's
-- triggers are detached when it fires, so triggers added while it fires
-- wait for the next time (a later run()). Loop thread only.
--
-- Draining, as gunicorn and Node's server.close() do it: SIGTERM or
-- SIGINT does not stop at once but drains: the reactor is marked
-- stopping (so a second signal forces the exit, loop.c), every listening
-- Port stops accepting (it takes no new connection at once, accepts for
-- a moment what its queue holds, then closes: closing a listening socket
-- resets the connections queued on it), reactor.draining turns true and
-- the 'drain' event fires (a protocol may close idle connections from its
-- 'before' trigger, and a Deferred it returns is waited on); once every
-- accepted connection has closed, or the drain period (--drain, default
-- 10 s) is over, the 'shutdown' event fires as for stop(), and
-- connections still open are lost when the process exits. Under spindle
-- --workers the supervisor sends SIGTERM to drain a worker.
local C = require("spindle._loop")
local S = require("spindle._supervisor")
local Cdefer = require("spindle._defer")
local failure = require("spindle.failure")

local isDeferred = Cdefer.isDeferred
local errhandler = Cdefer.errhandler -- wraps an error in a Failure
local isFailure = failure.isFailure
local errors = failure.builtinErrorTypes("reactor")
local pack, unpack = table.pack, table.unpack

local M = {}

-- The mechanism's functions that are the reactor's own.
M.seconds = C.seconds
M.callLater = C.callLater
M.getDelayedCalls = C.getDelayedCalls
M.callFromThread = C.callFromThread
-- reactor.running, and reactor.draining, workerId, workerCount.
local draining = false
M.__getters = {
  draining = function() return draining end,
  workerId = S.workerId,
  workerCount = S.workerCount,
}
for k, v in pairs(C.__getters) do M.__getters[k] = v end

local PHASES = {before = true, during = true, after = true}

-- event name -> {before = {entry...}, during = ..., after = ...}; an entry
-- is the trigger's id: {f, args..., n = #args, phase =, event =}.
local events = {}

local check = require("spindle.check")
local argError, typeError = check.argError, check.typeError

-- log.err(f, why), loaded late: spindle.log may not be loaded yet.
local function logErr(f, why)
  require("spindle.log").err(f, why)
end

-- Call trigger entry e; its result, or nil after logging its error.
local function call(e)
  local r = pack(xpcall(e[1], errhandler, unpack(e, 2, e.n + 1)))
  if not r[1] then
    logErr(r[2])
    return nil
  end
  return r[2]
end

local function runPhase(list)
  if list == nil then return end
  for i = 1, #list do call(list[i]) end
end

-- Fire system event `name`: detach its triggers, run the 'before' ones,
-- wait for the Deferreds they return, then 'during' and 'after'; after
-- shutdown, halt the loop; then call `done` if given. Twisted's
-- ReactorBase.fireSystemEvent and _ThreePhaseEvent.fireEvent /
-- _continueFiring.
local function fire(name, done)
  local ev = events[name] or {}
  events[name] = nil
  -- One count for the loop below, so Deferreds that fired already cannot
  -- continue the event before all 'before' triggers ran.
  local pending = 1
  local function continue()
    if name == "startup" then C.setRunning(true) end
    if name == "shutdown" then C.setRunning(false) end
    runPhase(ev.during)
    runPhase(ev.after)
    if name == "shutdown" then C.halt() end
    if name == "startup" then S.ready() end
    if done then done() end
  end
  local function countdown()
    pending = pending - 1
    if pending == 0 then continue() end
  end
  -- Passes the result on, as DeferredList leaves it.
  local function passed(result)
    countdown()
    return result
  end
  local before = ev.before or {}
  for i = 1, #before do
    local d = call(before[i])
    if isDeferred(d) then
      pending = pending + 1
      local ok, err = xpcall(d.addBoth, errhandler, d, passed)
      if not ok then
        logErr(err, "while waiting on a 'before' trigger:")
        countdown()
      end
    end
  end
  countdown()
end

local function fireStartup() fire("startup") end
local function fireShutdown() fire("shutdown") end

-- Mark the reactor stopping and fire 'shutdown' on the next timer pass,
-- so stop() returns at once; false if it is not running (or stopping).
local function beginStop()
  if not C.beginStop() then return false end
  C.callLater(0, fireShutdown)
  return true
end

--- reactor.run(): run the loop until stop() has finished. Fires the
-- 'startup' triggers first. Raises ReactorAlreadyRunning if the reactor
-- is running; unlike Twisted's, it may run again after it returned.
-- twisted ReactorBase.run.
function M.run()
  draining = false
  C.run(fireStartup)
  draining = false
end

-- The drain under way: {timer = DelayedCall, poll = DelayedCall,
-- close = DelayedCall, ports = the Ports to close, event = true once the
-- 'drain' event has finished, closed = true once the Ports are closed},
-- or nil.
local drain

-- Seconds a draining Port keeps accepting what its queue holds.
local QUIESCE = 0.05

-- Close the draining Ports (their queues are empty by now).
local function closePorts(dr)
  if dr.closed then return end
  dr.closed = true
  if dr.close:active() then dr.close:cancel() end
  for _, p in ipairs(dr.ports) do
    local ok, err = xpcall(p.stopListening, errhandler, p)
    if not ok then logErr(err, "while draining:") end
  end
end

local function logMsg(text)
  require("spindle.log").msg(text)
end

-- End the drain (all closed, the period over, or stop() called): fire
-- 'shutdown' on the next timer pass, as stop() does.
local function endDrain()
  if drain == nil then return end
  local dr = drain
  drain = nil
  closePorts(dr)
  if dr.timer:active() then dr.timer:cancel() end
  if dr.poll ~= nil and dr.poll:active() then dr.poll:cancel() end
  C.callLater(0, fireShutdown)
end

local POLL = 0.05 -- seconds between looks at the open connections

local function pollDrain()
  if drain == nil then return end
  drain.poll = nil
  if drain.event and drain.closed and S.openConnections() == 0 then
    endDrain()
  else
    drain.poll = C.callLater(POLL, pollDrain)
  end
end

local function drainOver()
  if drain == nil then return end
  local n = S.openConnections()
  if n > 0 then
    logMsg(("Drain period over: closing %d open connection%s."):format(n,
      n == 1 and "" or "s"))
  end
  endDrain()
end

-- SIGINT and SIGTERM: drain, then stop (see the top of this file). False
-- if the reactor is not running (or already stopping).
local function gracefulStop()
  if not C.beginStop() then return false end
  draining = true
  local period = S.drainPeriod()
  local dr = {timer = C.callLater(period, drainOver), ports = {}}
  drain = dr
  for _, p in ipairs(S.ports()) do
    if S.refuseNew(p) then dr.ports[#dr.ports + 1] = p end
  end
  dr.close = C.callLater(QUIESCE, closePorts, dr)
  local listening, n = #dr.ports, S.openConnections()
  if n > 0 then -- with no open connection a stop looks as it does in Twisted
    logMsg(("Draining: stopped accepting on %d port%s; waiting up to %.14g" ..
      " s for %d open connection%s."):format(listening,
      listening == 1 and "" or "s", period, n, n == 1 and "" or "s"))
  end
  fire("drain", function()
    dr.event = true
    pollDrain()
  end)
  return true
end

--- reactor.stop(): stop the reactor: returns at once; the loop then fires
-- the 'before shutdown' triggers (waiting on Deferreds they return), the
-- 'during' and 'after' ones, and run() returns. While the reactor drains
-- (after SIGTERM or SIGINT) it ends the drain now. Raises
-- ReactorNotRunning if the reactor is not running or already stopping.
-- twisted ReactorBase.stop.
function M.stop()
  if drain ~= nil then return endDrain() end
  if not beginStop() then
    error(errors.ReactorNotRunning("Can't stop reactor that isn't running."))
  end
end

C.setStopHandler(gracefulStop) -- what SIGINT and SIGTERM call

--- reactor.addSystemEventTrigger(phase, event, f, ...) -> id
-- Call f(...) at `phase` ("before", "during", "after") of `event`
-- ("startup", "shutdown", "drain"; any string names an event). A
-- 'before' trigger may return a Deferred: the event waits for it. Each
-- trigger fires once; an error in one is logged. Returns an opaque id for
-- removeSystemEventTrigger. Raises on a bad phase, a non-string event or
-- a non-callable f. twisted IReactorCore.addSystemEventTrigger.
function M.addSystemEventTrigger(phase, event, f, ...)
  local n = select("#", ...)
  local fname = "addSystemEventTrigger"
  if type(phase) ~= "string" then
    typeError(1, fname, "string", phase)
  elseif not PHASES[phase] then
    argError(1, fname, "invalid option '" .. phase .. "'")
  end
  if type(event) == "number" then event = tostring(event) end
  if type(event) ~= "string" then
    typeError(2, fname, "string", event)
  end
  check.callable(f, 3, fname)
  local entry = {f, ...}
  entry.n, entry.phase, entry.event = n, phase, event
  local ev = events[event]
  if ev == nil then
    ev = {}
    events[event] = ev
  end
  local list = ev[phase]
  if list == nil then
    list = {}
    ev[phase] = list
  end
  list[#list + 1] = entry
  return entry
end

--- reactor.removeSystemEventTrigger(id): remove a trigger that has not
-- fired. Raises if id is not a pending trigger.
-- twisted IReactorCore.removeSystemEventTrigger.
function M.removeSystemEventTrigger(id)
  local fname = "removeSystemEventTrigger"
  if type(id) ~= "table" then
    typeError(1, fname, "table", id)
  end
  local ev = type(id.event) == "string" and events[id.event]
  local list = ev and type(id.phase) == "string" and ev[id.phase]
  if list then
    for i = 1, #list do
      if rawequal(list[i], id) then
        table.remove(list, i)
        return
      end
    end
  end
  argError(1, fname, "not a pending system event trigger")
end

--- reactor.callWhenRunning(f, ...) -> id or nil: call f(...) once the
-- reactor runs (an 'after startup' trigger, whose id is returned), or at
-- once if it is running (an error in f then reaches the caller).
-- twisted ReactorBase.callWhenRunning.
function M.callWhenRunning(...)
  local f = ...
  check.callable(f, 1, "callWhenRunning")
  if C.__getters.running() then
    f(select(2, ...))
    return
  end
  return M.addSystemEventTrigger("after", "startup", ...)
end

-- runUntilComplete's outcome in holder: return it or raise it.
local function finish(holder, timeout)
  if holder.done then
    if isFailure(holder.result) then error(holder.result, 0) end
    return holder.result
  end
  if holder.timedout then
    error(errors.TimeoutError(("Deferred did not fire within %.14g seconds")
      :format(timeout)))
  end
  error(errors.ReactorNotRunning("reactor stopped before the Deferred fired"))
end

--- reactor.runUntilComplete(d[, timeout]) -> result
-- Run the reactor until Deferred d has fired (then stop it, shutdown
-- triggers included) and return d's result, or raise its Failure (the
-- same Failure object, never wrapped again). If d has fired already the
-- loop does not run. After `timeout` seconds (float, optional) raises
-- reactor.TimeoutError; d is left as it is. Raises ReactorAlreadyRunning
-- if the reactor runs, ReactorNotRunning if it was stopped before d
-- fired. For tests and scripts, like asyncio's run_until_complete.
function M.runUntilComplete(d, timeout)
  local fname = "runUntilComplete"
  if not isDeferred(d) then
    typeError(1, fname, "Deferred", d)
  end
  if timeout ~= nil then
    if math.type(timeout) == nil then
      timeout = tonumber(timeout) or
        typeError(2, fname, "number", timeout)
    end
    -- NaN too: not (NaN >= 0).
    if not (timeout >= 0) then -- luacheck: ignore 581
      argError(2, fname, "timeout must be >= 0")
    end
  end
  if C.state() ~= "idle" then
    error(errors.ReactorAlreadyRunning("reactor is already running"))
  end
  local holder = {waiting = true}
  -- A Failure is consumed (runUntilComplete raises it); a success passes.
  -- Once this call has returned (timed out, or the reactor was stopped),
  -- d firing later must not stop some other run.
  d:addBoth(function(result)
    holder.done, holder.result = true, result
    if holder.waiting then beginStop() end
    if isFailure(result) then return nil end
    return result
  end)
  if holder.done then return finish(holder, 0) end
  local tc
  if timeout ~= nil then
    tc = C.callLater(timeout, function()
      holder.timedout = true
      beginStop()
    end)
  end
  M.run()
  holder.waiting = false
  if tc ~= nil and tc:active() then tc:cancel() end
  return finish(holder, timeout)
end

return M
