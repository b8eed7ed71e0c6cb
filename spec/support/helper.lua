--- spec/support/helper.lua: what every spec needs to drive the reactor.
--
--   local H = require("spec.support.helper")
--
-- Running the reactor (each asserts that no error, such as
-- "Unhandled error in Deferred:", was logged while it ran, so a failure
-- that nobody handled fails the test):
--   H.wait(d[, timeout])        run the reactor until Deferred d fires;
--                               return its result, or raise its Failure.
--                               Fails the test after `timeout` seconds
--                               (H.TIMEOUT = 5 by default).
--   H.waitForFailure(d[, timeout]) -> Failure: like wait, but d must fail.
--   H.runFor(seconds)           run the reactor that long, then stop it.
--   H.sleep(seconds) -> Deferred fired (with nil) after that long on the
--                               real reactor; cancellable.
--   H.loggedErrors(fn, ...) -> errors, ...: call fn(...) (which may run the
--                               reactor through H.wait / H.runFor: their
--                               own check is then off) and return the list
--                               of error events logged meanwhile
--                               ({failure = F, why = "..."}), then fn's
--                               results. Those errors are not printed.
--   H.captureLog() -> capture   observe spindle.log from now on:
--                               capture.events (all events), capture:errors(),
--                               capture:text() (each event as the log
--                               would print it), capture:stop().
--
--   H.assertNoDelayedCalls()   fail if reactor.callLater calls are pending
--                               (a test that leaves timers behind).
--
-- After each test (busted after_each, registered when a spec file loads
-- this module): the test fails if it left a DelayedCall pending (they are
-- cancelled) or a libuv handle open (a listening port, a connection, a
-- UDP port, a connect timer: spindle._handles.count()) that was not open
-- before it. The reactor gets one short turn first, so closes already
-- under way finish. H.leftovers() -> text or nil runs the same check.
--
-- Checking errors:
--   H.assertErrorType(T, substring, pcall(f, ...)): the call failed with
--                               an error value of type T whose text holds
--                               substring (nil: any text).
--
-- Counting calls:
--   H.counter([result]) -> c    a callable: each call appends its packed
--                               arguments to c.args and bumps c.calls;
--                               it returns `result` if given, else its first
--                               argument (so it passes Deferred results on).
--
-- Subprocesses:
--   H.SPINDLE                   the spindle binary running these specs
--                               (build/spindle, or build-asan/spindle);
--                               spec.support.process runs it with options.
--   H.runScript(source[, args]) -> stdout, stderr, code: run Lua source as
--                               a script in a new spindle process.
--
-- Also re-exported: H.reactor, H.defer, H.task (the modules).
local reactor = require("spindle.reactor")
local defer = require("spindle.defer")
local log = require("spindle.log")
local failure = require("spindle.failure")
local process = require("spec.support.process")
local handles = require("spindle._handles")

local H = {}

H.TIMEOUT = 5
H.reactor = reactor
H.defer = defer
H.task = require("spindle.task")

-- The binary busted was started with (busted --lua=...).
H.SPINDLE = process.bin

-- Nesting depth of H.loggedErrors: inside it, logged errors are returned
-- instead of failing the test.
local collecting = 0

--- H.captureLog() -> capture: record every spindle.log event until
-- capture:stop().
function H.captureLog()
  local capture = {events = {}}
  local function observer(event)
    capture.events[#capture.events + 1] = event
  end
  log.addObserver(observer)
  function capture.stop()
    log.removeObserver(observer)
  end
  function capture.errors()
    local list = {}
    for _, e in ipairs(capture.events) do
      if e.isError then list[#list + 1] = e end
    end
    return list
  end
  function capture.text()
    local parts = {}
    for _, e in ipairs(capture.events) do
      parts[#parts + 1] = log.textFromEventDict(e)
    end
    return table.concat(parts, "\n")
  end
  return capture
end

-- Run fn() with a log capture; then fail (at the caller's caller) if
-- errors were logged, unless inside H.loggedErrors (which returns them).
local function checked(fn)
  local capture = H.captureLog()
  local ok, err = pcall(fn)
  capture.stop()
  local errors = capture.errors()
  if collecting == 0 and #errors > 0 then
    local text = {}
    for _, e in ipairs(errors) do text[#text + 1] = log.textFromEventDict(e) end
    error("errors were logged while the reactor ran:\n" ..
      table.concat(text, "\n"), 3)
  end
  return ok, err
end

--- H.wait(d[, timeout]) -> result of d, or raises d's Failure; fails the
-- test if d has not fired within timeout seconds.
function H.wait(d, timeout)
  timeout = timeout or H.TIMEOUT
  local result
  local ok, err = checked(function()
    result = reactor.runUntilComplete(d, timeout)
  end)
  if not ok then
    if failure.isFailure(err) then error(err, 0) end
    if getmetatable(err) == reactor.TimeoutError then
      error(string.format("H.wait: the Deferred did not fire within %g s",
        timeout), 2)
    end
    error(err, 0)
  end
  return result
end

--- H.waitForFailure(d[, timeout]) -> the Failure d fired with; fails the
-- test if d succeeds or does not fire in time.
function H.waitForFailure(d, timeout)
  local ok, result = pcall(H.wait, d, timeout)
  if ok then
    error("H.waitForFailure: the Deferred succeeded with " ..
      tostring(result), 2)
  end
  if not failure.isFailure(result) then error(result, 0) end
  return result
end

--- H.sleep(seconds) -> Deferred fired with nil after `seconds`.
function H.sleep(seconds)
  return H.task.deferLater(reactor, seconds)
end

--- H.runFor(seconds): run the reactor for `seconds`, then stop it.
function H.runFor(seconds)
  H.wait(H.sleep(seconds), seconds + H.TIMEOUT)
end

--- H.loggedErrors(fn, ...) -> errors, fn's results: the error events
-- logged while fn ran (H.wait inside does not fail on them).
function H.loggedErrors(fn, ...)
  -- The expected errors are not printed: other observers are set aside.
  local saved = log.observers()
  for _, o in ipairs(saved) do log.removeObserver(o) end
  collecting = collecting + 1
  local capture = H.captureLog()
  local results = table.pack(pcall(fn, ...))
  capture.stop()
  collecting = collecting - 1
  for _, o in ipairs(saved) do log.addObserver(o) end
  if not results[1] then error(results[2], 0) end
  return capture.errors(), table.unpack(results, 2, results.n)
end

--- H.assertNoDelayedCalls(): fail, cancelling them, if DelayedCalls of
-- the reactor are still pending.
function H.assertNoDelayedCalls()
  local pending = reactor.getDelayedCalls()
  if #pending == 0 then return end
  local first = tostring(pending[1])
  for _, dc in ipairs(pending) do dc:cancel() end
  error(string.format("%d DelayedCall(s) left pending: %s", #pending, first),
    2)
end

-- What was open when the current test began: DelayedCalls (as a set) and
-- handle counts by type; a test answers only for what it adds.
local before = {calls = {}, handles = {}}

local function snapshot()
  before.calls = {}
  for _, dc in ipairs(reactor.getDelayedCalls()) do before.calls[dc] = true end
  before.handles = handles.count()
end

-- "tcp 1, timer 2": the handle types open beyond the snapshot, or nil.
local function extraHandles()
  local parts = {}
  for kind, n in pairs(handles.count()) do
    local more = n - (before.handles[kind] or 0)
    if more > 0 then parts[#parts + 1] = kind .. " " .. more end
  end
  if #parts == 0 then return nil end
  table.sort(parts)
  return table.concat(parts, ", ")
end

local function newDelayedCalls()
  local list = {}
  for _, dc in ipairs(reactor.getDelayedCalls()) do
    if not before.calls[dc] then list[#list + 1] = dc end
  end
  return list
end

--- H.leftovers() -> text or nil: what the current test left behind: new
-- pending DelayedCalls (cancelled), and handles still open after one short
-- turn of the reactor; nil when nothing.
function H.leftovers()
  local problems = {}
  local calls = newDelayedCalls()
  if #calls > 0 then
    problems[#problems + 1] = ("%d pending DelayedCall(s) (cancelled), " ..
      "first %s"):format(#calls, tostring(calls[1]))
    for _, dc in ipairs(calls) do dc:cancel() end
  end
  -- One turn lets closes and stops already asked for complete (a
  -- connection closing, a port stopping), as trial's janitor does.
  if extraHandles() ~= nil and not reactor.running then
    pcall(reactor.runUntilComplete, H.sleep(0.01), H.TIMEOUT)
  end
  local open = extraHandles()
  if open then
    problems[#problems + 1] = "open handles: " .. open
  end
  if #problems == 0 then return nil end
  return table.concat(problems, "; ")
end

-- Busted's after_each, in the block (usually the file) that requires this
-- module: each spec file runs insulated, with its own package.loaded, so
-- each loads this module afresh. Outside busted (a child process) there is
-- no busted module to hook.
local hasBusted, busted = pcall(require, "busted")
if hasBusted and type(busted) == "table" then
  -- The running test's full name, for the message (after_each is not told).
  local testName = "?"
  busted.subscribe({"test", "start"}, function(element)
    local names = {}
    while element and element.descriptor ~= "file" do
      table.insert(names, 1, element.name)
      element = busted.parent(element)
    end
    testName = table.concat(names, " ")
    return nil, true
  end)
  busted.before_each(snapshot)
  busted.after_each(function()
    local problem = H.leftovers()
    -- The next test answers only for its own: take what is left as given.
    snapshot()
    if problem then
      error(("test '%s' left %s"):format(testName, problem), 0)
    end
  end)
end

--- H.assertErrorType(T, substring, ok, err): assert that a pcall failed
-- with an error of type T (an error type such as reactor.AlreadyCalled)
-- whose tostring contains substring (skipped when nil).
function H.assertErrorType(T, substring, ok, err)
  assert(not ok, "expected an error of type " .. tostring(T) ..
    ", but the call succeeded")
  assert(getmetatable(err) == T, "expected an error of type " ..
    tostring(T) .. ", got " .. tostring(err))
  if substring ~= nil then
    assert(tostring(err):find(substring, 1, true), "error '" ..
      tostring(err) .. "' does not contain '" .. substring .. "'")
  end
end

--- H.counter([result]) -> a callable counting its calls.
function H.counter(...)
  local fixed = select("#", ...) > 0
  local result = ...
  local c = {calls = 0, args = {}}
  return setmetatable(c, {__call = function(self, ...)
    self.calls = self.calls + 1
    self.args[self.calls] = table.pack(...)
    if fixed then return result end
    return (...)
  end})
end

--- H.runScript(source[, args]) -> stdout, stderr, exit code: run the Lua
-- source in a new spindle process (args: a list of strings), through
-- spec.support.process.
function H.runScript(source, args)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(source)
  f:close()
  local argv = {script}
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local r = process.run(argv)
  os.remove(script)
  return r.stdout, r.stderr, r.status
end

return H
