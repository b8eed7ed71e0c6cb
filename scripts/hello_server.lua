-- scripts/hello_server.lua: a server to run in production: alone, under
-- `spindle --workers N`, socket-activated by systemd or behind HAProxy
-- (README, "Running in production").
--
--   build/spindle scripts/hello_server.lua [ENDPOINT]
--
-- ENDPOINT is a server endpoint string (default
-- "tcp:8080:interface=127.0.0.1"; "systemd:domain=INET:index=0" under
-- systemd's socket activation). Each client sends a line and gets
-- "hello from worker N (pid P)" back ("worker -" outside --workers),
-- then the server closes the connection. Try it:
--
--   echo hi | socat - TCP:127.0.0.1:8080
local reactor = require("spindle.reactor")
local basic = require("spindle.basic")
local protocol = require("spindle.protocol")
local endpoints = require("spindle.endpoints")

local where = arg[1] or "tcp:8080:interface=127.0.0.1"
local stat = assert(io.open("/proc/self/stat"))
local pid = stat:read("n")
stat:close()
local me = ("worker %s (pid %d)"):format(reactor.workerId or "-", pid)

local Hello = basic.LineReceiver:extend({delimiter = "\n"})

function Hello:lineReceived()
  self:sendLine("hello from " .. me)
  self.transport:loseConnection()
end

endpoints.serverFromString(reactor, where)
  :listen(protocol.Factory.forProtocol(Hello))
  :addCallbacks(function()
    print(me .. " listening on " .. where)
    io.stdout:flush()
  end, function(f)
    io.stderr:write(me .. ": " .. f:getErrorMessage() .. "\n")
    os.exit(1)
  end)

-- SIGTERM/SIGINT: the port has stopped accepting; open connections may
-- finish (for --drain seconds, 10 by default).
reactor.addSystemEventTrigger("before", "drain", function()
  print(me .. " draining")
  io.stdout:flush()
end)
reactor.run()
