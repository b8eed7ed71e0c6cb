--- scripts/threads_pool_size.lua: the tutorial's thread pool example,
-- reactor.suggestThreadPoolSize(10): calls made with callInThread (here
-- deferToThread, to know when they end) run at once, each on its own
-- thread, while no more than 10 are running; beyond that they wait in
-- the queue until a thread is free.
--
--   spindle scripts/threads_pool_size.lua
--
-- The tutorial shows only the one call, which prints nothing; this
-- script makes it visible: 12 calls each report to the main thread when
-- they start (blockingCallFromThread) and are held there until 10 have
-- started, so the counts printed are always the same: 10 ran at once,
-- 2 waited.
--
-- Twisted original:
--   reactor.suggestThreadPoolSize(10)
local reactor = require("spindle.reactor")
local defer = require("spindle.defer")
local threads = require("spindle.threads")

local SIZE, CALLS = 10, 12

-- Main-thread bookkeeping, a global so that functions copied to the pool
-- threads and back find it when they run here.
-- luacheck: globals demo
demo = {running = 0, most = 0, late = 0, held = {}, released = false}

-- On the main thread: a call has started. The first SIZE are held until
-- all of them run at once.
local function started()
  demo.running = demo.running + 1
  demo.most = math.max(demo.most, demo.running)
  if demo.released then
    demo.late = demo.late + 1
    return nil
  end
  local d = defer.Deferred()
  demo.held[#demo.held + 1] = d
  if demo.running == SIZE then
    demo.released = true
    for _, h in ipairs(demo.held) do h:callback(nil) end
  end
  return d
end

local function finished()
  demo.running = demo.running - 1
end

-- On a pool thread.
local function work()
  threads.blockingCallFromThread(started)
  threads.blockingCallFromThread(finished)
end

reactor.suggestThreadPoolSize(SIZE)
print(("suggestThreadPoolSize(%d): at most %d pool threads"):format(SIZE,
  reactor.getThreadPool().max))
local calls = {}
for i = 1, CALLS do calls[i] = threads.deferToThread(work) end
reactor.runUntilComplete(defer.gatherResults(calls), 10)
print(("%d calls: %d ran at once, %d waited for a free thread"):format(
  CALLS, demo.most, demo.late))
