-- scripts/tls_echo_client.lua: the seed tutorial's encrypted-channel
-- client (Twisted: reactor.connectSSL(host, 8000, factory,
-- ssl.ClientContextFactory())) with the echo client's protocol: sends
-- three lines over TLS, prints each line that comes back, and stops after
-- "Bye-bye!".
--
--   build/spindle scripts/tls_echo_client.lua [HOST] [PORT]
--
-- HOST defaults to 127.0.0.1, PORT to 8007 (scripts/tls_echo_server.lua).
-- Like Twisted's ClientContextFactory, it encrypts but does not check the
-- server's certificate (ssl.optionsForClientTLS does). It prints
-- "receive: <line>" per line, then "connection lost: ..." (or
-- "connection failed: ...") and exits.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local basic = require("spindle.basic")
local ssl = require("spindle.ssl")

local host = arg[1] or "127.0.0.1"
local port = math.tointeger(tonumber(arg[2] or "8007"))

local EchoClient = basic.LineReceiver:extend({})
EchoClient.finish = "Bye-bye!"

-- These lines are written before the TLS handshake ends: the transport
-- holds them and sends them encrypted once it has.
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

-- SSL connection
reactor.connectSSL(host, port, EchoClientFactory(), ssl.ClientContextFactory())
reactor.run()
