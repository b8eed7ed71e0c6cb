--- spec/support/workers_app.lua: the server that spec/workers_spec.lua
-- runs under `spindle --workers`, alone, behind HAProxy and under
-- systemd-socket-activate. Each connection sends one line and gets one
-- line back, then the server closes it:
--   "hi"        -> "pid PID worker ID"
--   "slow S"    -> the same, S seconds later (a request in flight)
-- Usage: spindle workers_app.lua WHERE, WHERE being a TCP port on
-- 127.0.0.1, "late:PORT" (the same, listened on once the reactor runs),
-- "unix:PATH" or an endpoint string ("systemd:...").
-- "crash" as WHERE raises at start-up. Prints "listening" once it does.
local reactor = require("spindle.reactor")
local basic = require("spindle.basic")
local protocol = require("spindle.protocol")
local endpoints = require("spindle.endpoints")

local where = arg[1] or "0"
if where == "crash" then error("this app crashes at start-up") end

local f = io.open("/proc/self/stat")
local pid = f:read("n")
f:close()

local App = basic.LineReceiver:extend()
App.delimiter = "\n"

function App:lineReceived(line)
  local answer = ("pid %d worker %s"):format(pid, tostring(reactor.workerId))
  local delay = tonumber(line:match("^slow (%S+)"))
  local function reply()
    self:sendLine(answer)
    self.transport:loseConnection()
  end
  if delay then reactor.callLater(delay, reply) else reply() end
end

local factory = protocol.Factory.forProtocol(App)
if where:match("^late:%d+$") then
  -- Listen once the reactor runs (the worker has said it is ready).
  reactor.callLater(0.2, function()
    reactor.listenTCP(tonumber(where:sub(6)), factory,
      {interface = "127.0.0.1"})
    print("late listening")
    io.stdout:flush()
  end)
elseif where:match("^%d+$") then
  reactor.listenTCP(tonumber(where), factory, {interface = "127.0.0.1"})
elseif where:match("^unix:") then
  reactor.listenUNIX(where:sub(6), factory)
else
  endpoints.serverFromString(reactor, where):listen(factory)
end
print("listening")
io.stdout:flush()
reactor.run()
