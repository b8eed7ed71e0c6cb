-- scripts/echo_server.lua: a TCP echo server, as Twisted's echoserv.py.
--
--   build/spindle scripts/echo_server.lua [PORT] [--once] [--timeout S]
--
-- PORT defaults to 8000 (0 picks a free one); the server listens on
-- 127.0.0.1 and prints "echo server listening on 127.0.0.1:PORT".
-- --once exits after the first client leaves; --timeout S exits after S
-- seconds. Try it from another terminal:
--
--   nc 127.0.0.1 8000                      (type lines; each comes back)
--   echo hello | socat - TCP:127.0.0.1:8000
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")

local port, once, timeout = 8000, false, nil
local i = 1
while arg[i] do
  if arg[i] == "--once" then once = true
  elseif arg[i] == "--timeout" then i = i + 1; timeout = tonumber(arg[i])
  else port = assert(math.tointeger(tonumber(arg[i])), "bad port: " .. arg[i])
  end
  i = i + 1
end

--- Echo: whatever arrives goes straight back.
local Echo = protocol.Protocol:extend({})

function Echo:dataReceived(data)
  self.transport:write(data)
end

function Echo:connectionLost(reason) -- luacheck: ignore reason
  if once then reactor.stop() end
end

-- A backlog of 1024 (Twisted's default is 50) lets bursts of clients in.
local listening = reactor.listenTCP(port, protocol.Factory.forProtocol(Echo),
  1024, "127.0.0.1")
print("echo server listening on 127.0.0.1:" .. listening:getHost().port)
io.stdout:flush()
if timeout then reactor.callLater(timeout, reactor.stop) end
reactor.run()
