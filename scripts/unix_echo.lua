-- scripts/unix_echo.lua: an echo server on a Unix socket (as
-- echo_server.lua, through reactor.listenUNIX).
--
--   build/spindle scripts/unix_echo.lua [PATH] [--once] [--timeout S]
--
-- PATH defaults to /tmp/spindle-echo.sock (it must not exist; it is
-- removed on exit). It prints "echo server listening on PATH". Try it:
--
--   socat - UNIX-CONNECT:/tmp/spindle-echo.sock   (type lines)
--   echo hello | nc -N -U /tmp/spindle-echo.sock
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")

local path, once, timeout = "/tmp/spindle-echo.sock", false, nil
local i = 1
while arg[i] do
  if arg[i] == "--once" then once = true
  elseif arg[i] == "--timeout" then i = i + 1; timeout = tonumber(arg[i])
  else path = arg[i]
  end
  i = i + 1
end

local Echo = protocol.Protocol:extend({})

function Echo:dataReceived(data)
  self.transport:write(data)
end

function Echo:connectionLost(reason) -- luacheck: ignore reason
  if once then reactor.stop() end
end

local port = reactor.listenUNIX(path, protocol.Factory.forProtocol(Echo))
print("echo server listening on " .. path)
io.stdout:flush()
if timeout then reactor.callLater(timeout, reactor.stop) end
reactor.addSystemEventTrigger("after", "shutdown", function()
  port:stopListening()
end)
reactor.run()
