--- spindle_echo.lua: the spindle side of bench/run.py's `workers` rows,
-- run as `spindle --workers N spindle_echo.lua PORT`. Every worker
-- listens on 127.0.0.1:PORT (a fixed port: with --workers each worker
-- slot gets its own SO_REUSEPORT socket from the supervisor, and the
-- kernel spreads connections over them), writes back what it reads, and
-- prints "WORKER <reactor.workerId> <pid> ECHO <port>" once it listens,
-- so the driver knows every worker's pid (to sum their CPU time and to
-- count each one's connections). Run alone (no --workers) it says worker
-- 1. Runs until the supervisor drains it (SIGTERM to the supervisor).
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")

local port = tonumber(arg[1])
if not port then
  io.stderr:write("usage: spindle --workers N spindle_echo.lua PORT\n")
  os.exit(2)
end

local f = assert(io.open("/proc/self/stat"))
local pid = f:read("n")
f:close()

local Echo = protocol.Protocol:extend({
  connectionMade = function(self) self.transport:setTcpNoDelay(true) end,
  dataReceived = function(self, data) self.transport:write(data) end,
})

local listening = reactor.listenTCP(port, protocol.Factory.forProtocol(Echo),
  {backlog = 1024, interface = "127.0.0.1"})
print(("WORKER %d %d ECHO %d"):format(reactor.workerId or 1, pid,
  listening:getHost().port))
io.stdout:flush()
reactor.run()
