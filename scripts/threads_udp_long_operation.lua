--- scripts/threads_udp_long_operation.lua: the tutorial's callInThread
-- example. The UDP Echo protocol's startProtocol prints the time and
-- ": started", then hands long_operation to a pool thread with
-- reactor.callInThread, which returns at once; the thread sleeps and
-- prints how long the protocol has been started.
--
--   spindle scripts/threads_udp_long_operation.lua [port]
--
-- port defaults to 8007 as in the tutorial (0 picks a free one).
-- Differences, for a script that ends by itself: the sleep is 0.5 s
-- instead of 5 s (the message still says 5 seconds, as the original's),
-- and long_operation stops the reactor afterwards. The protocol itself
-- cannot cross to another thread (its transport is the main thread's),
-- so the thread gets its description, tostring(protocol). Lua's os.date
-- has whole seconds where Python's datetime.now() has microseconds.
--
-- Twisted original:
--   def long_operation(protocol):
--       import time
--       time.sleep(5)
--       print("%s: The protocol %s has been started for 5 seconds." %
--             (datetime.datetime.now(), protocol))
--   class Echo(DatagramProtocol):
--       def startProtocol(self):
--           print(datetime.datetime.now(), ": started")
--           reactor.callInThread(long_operation, self)
--   protocol = Echo()
--   reactor.listenUDP(8007, protocol)
--   reactor.run()
local reactor = require("spindle.reactor")
local DatagramProtocol = require("spindle.protocol").DatagramProtocol

local port = tonumber(arg[1] or "8007")
if port == nil or math.type(port) ~= "integer" then
  io.stderr:write("usage: spindle scripts/threads_udp_long_operation.lua " ..
    "[port]\n")
  os.exit(2)
end

local function now()
  return os.date("%Y-%m-%d %H:%M:%S")
end

-- Runs on a pool thread: `now` and `reactor` arrive as copies (the
-- reactor by name: the thread's own, whose callFromThread reaches the
-- main thread).
local function long_operation(protocol)
  os.execute("sleep 0.5")          -- time.sleep(5) in the tutorial
  print(("%s: The protocol %s has been started for 5 seconds."):format(
    now(), protocol))
  reactor.callFromThread(reactor.stop)   -- by name: the real reactor.stop
end

local Echo = DatagramProtocol:extend({__name = "Echo"})

function Echo:startProtocol()
  print(now() .. " : started")
  reactor.callInThread(long_operation, tostring(self))
end

function Echo:datagramReceived(data, addr)
  self.transport:write(data, addr)
end

local protocol = Echo()
reactor.listenUDP(port, protocol)
reactor.run()
