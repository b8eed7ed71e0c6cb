--- spindle.threads: running work on the thread pool and talking to the
-- reactor thread from it. Follows twisted.internet.threads. The C half is
-- spindle._threads (runtime/pool.c); values cross threads by copy
-- (runtime/marshal.c), see API.md's spindle.threads section.
local C = require("spindle._threads")
local failure = require("spindle.failure")
local check = require("spindle.check")

local M = {}

--- threads.deferToThread(f, ...) -> Deferred: run f(...) on a pool
-- thread. The Deferred fires on the main thread with f's first result
-- (copied back), or a Failure carrying f's error and its traceback.
-- Raises threads.TransferError at the call if f or an argument cannot be
-- copied. Main thread. twisted.internet.threads.deferToThread.
M.deferToThread = C.deferToThread

--- threads.blockingCallFromThread(f, ...) -> result: from a pool thread,
-- run f(...) on the main thread and wait for it; if f returns a Deferred,
-- wait for that to fire. Returns the result or raises the error. On the
-- main thread it raises (it would wait for itself).
-- twisted.internet.threads.blockingCallFromThread.
M.blockingCallFromThread = C.blockingCallFromThread

-- Runs on the pool thread: each {f, args...} in order; an error stops the
-- rest and is logged, as Twisted's _runMultiple.
local function runMultiple(tupleList)
  for i = 1, #tupleList do
    local t = tupleList[i]
    t[1](table.unpack(t, 2, t.n or #t))
  end
end

--- threads.callMultipleInThread({{f, arg...}, ...}): run each f(arg...)
-- in order, on one pool thread. A table may carry `n` (its length with
-- nils). Raises TransferError at the call as callInThread does. Main
-- thread. twisted.internet.threads.callMultipleInThread.
function M.callMultipleInThread(tupleList)
  check.table(tupleList, 1, "callMultipleInThread")
  for i = 1, #tupleList do
    local t = tupleList[i]
    if not (type(t) == "table" and check.isCallable(t[1])) then
      check.argError(1, "callMultipleInThread", "entry " .. i ..
        " must be {callable, args...}")
    end
  end
  C.callMultiple(runMultiple, tupleList)
end

for name, T in pairs(failure.builtinErrorTypes("threads")) do M[name] = T end

return require("spindle._core").strict("threads", M)
