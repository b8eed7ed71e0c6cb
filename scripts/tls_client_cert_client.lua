-- scripts/tls_client_cert_client.lua: the seed tutorial's client that
-- proves who it is with a client certificate (./ssl/client.crt and
-- ./ssl/client.key), set in a ClientContextFactory subclass, MySSLContext;
-- connectSSL is given the class itself, as in the tutorial. It then talks
-- as scripts/tls_echo_client.lua does.
--
--   build/spindle scripts/tls_client_cert_client.lua [HOST] [PORT]
--     [--certs DIR]
--
-- HOST defaults to localhost, PORT to 8007
-- (scripts/tls_client_cert_server.lua). It prints "receive: <line>" per
-- line echoed, then "connection lost: ..." and exits.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local basic = require("spindle.basic")
local ssl = require("spindle.ssl")

local certs = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/ssl"
local rest = {}
local i = 1
while arg[i] do
  if arg[i] == "--certs" then i = i + 1; certs = arg[i]
  else rest[#rest + 1] = arg[i] end
  i = i + 1
end
local host = rest[1] or "localhost"
local port = math.tointeger(tonumber(rest[2] or "8007"))

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

local MySSLContext = ssl.ClientContextFactory:extend({})

function MySSLContext:getContext()
  -- The protocol version. The tutorial sets ssl.SSLv3_METHOD here; SSL 3.0
  -- is broken (POODLE) and spindle refuses it (reading ssl.SSLv3_METHOD
  -- raises ssl.Error), so this twin uses TLS (1.2 or 1.3).
  self.method = ssl.TLS_METHOD
  local ctx = ssl.ClientContextFactory.getContext(self)
  ctx:use_certificate_file(certs .. "/client.crt") -- client certificate
  ctx:use_privatekey_file(certs .. "/client.key")  -- client private key
  return ctx
end

-- SSL connection
reactor.connectSSL(host, port, EchoClientFactory(), MySSLContext)
reactor.run()
