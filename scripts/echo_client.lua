-- scripts/echo_client.lua: a TCP echo client, as Twisted's echoclient.py:
-- sends three lines, prints each line the server sends back, and stops
-- after "Bye-bye!".
--
--   build/spindle scripts/echo_client.lua [HOST] [PORT]
--
-- HOST defaults to 127.0.0.1, PORT to 8000. Try it against
-- scripts/echo_server.lua, or against socat as the echo server:
--
--   socat TCP-LISTEN:8000,bind=127.0.0.1,reuseaddr,fork EXEC:cat &
--   build/spindle scripts/echo_client.lua 127.0.0.1 8000
--
-- It prints "receive: <line>" per line, then "connection lost: ..." (or
-- "connection failed: ...") and exits.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local basic = require("spindle.basic")

local host = arg[1] or "127.0.0.1"
local port = math.tointeger(tonumber(arg[2] or "8000"))

local EchoClient = basic.LineReceiver:extend({})
EchoClient.finish = "Bye-bye!"

function EchoClient:connectionMade()
  self:sendLine("Hello, world!")
  self:sendLine("What a fine day it is.")
  self:sendLine(self.finish)
end

function EchoClient:lineReceived(line)
  print("receive: " .. line)
  if line == self.finish then self.transport:loseConnection() end
end

local EchoClientFactory = protocol.ClientFactory:extend({})
EchoClientFactory.protocol = EchoClient

function EchoClientFactory:clientConnectionFailed(_, reason)
  print("connection failed: " .. reason:getErrorMessage())
  reactor.stop()
end

function EchoClientFactory:clientConnectionLost(_, reason)
  print("connection lost: " .. reason:getErrorMessage())
  reactor.stop()
end

reactor.connectTCP(host, port, EchoClientFactory())
reactor.run()
