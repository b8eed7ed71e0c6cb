--- scripts/threads_callfromthread.lua: the tutorial's "main thread"
-- example. A pool thread asks for must_run_in_main_thread to run on the
-- main thread with reactor.callFromThread, which queues the call and
-- returns at once (the tutorial's comment says the thread waits: it does
-- not, in Twisted or here; threads.blockingCallFromThread is the waiting
-- one), then prints that it is done.
--
--   spindle scripts/threads_callfromthread.lua
--
-- The tutorial's MyProtocol is a placeholder; here it is a protocol with
-- an in-memory transport, and the script checks on the main thread that
-- the message was written, then stops. A function crosses threads as a
-- copy (must_run_in_main_thread goes to the pool thread as an upvalue of
-- run_in_any_thread, and back), so it finds `protocol` as a global of the
-- main thread's Lua state when it runs there.
--
-- Twisted original:
--   protocol = MyProtocol()
--   def must_run_in_main_thread(message):
--       protocol.send = True
--       protocol.transport.write(message)
--   def run_in_any_thread():
--       reactor.callFromThread(must_run_in_main_thread, "Good Morning")
--       print("the run of must_run_in_main_thread() has been finished!")
local reactor = require("spindle.reactor")
local Protocol = require("spindle.protocol").Protocol

local MyProtocol = Protocol:extend({__name = "MyProtocol"})

-- A transport that keeps what is written.
local written = {}
-- luacheck: globals protocol
protocol = MyProtocol()                         -- a global, as in Python
protocol.transport = {
  write = function(_, data) written[#written + 1] = data end,
}

local function must_run_in_main_thread(message)
  protocol.send = true
  protocol.transport:write(message)
  reactor.stop()
end

local function run_in_any_thread()
  reactor.callFromThread(must_run_in_main_thread, "Good Morning")
  print("the run of must_run_in_main_thread() has been finished!")
end

reactor.callInThread(run_in_any_thread)
local bound = reactor.callLater(5, reactor.stop)  -- if all else fails
reactor.run()
if bound:active() then bound:cancel() end
assert(protocol.send == true and written[1] == "Good Morning",
  "must_run_in_main_thread did not run on the main thread")
