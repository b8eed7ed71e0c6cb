-- scripts/examples/starttls_client.lua: Twisted's
-- docs/core/examples/starttls_client.py.
--
--   build/spindle scripts/examples/starttls_client.lua [PORT] [PEM]
--
-- Sends a line in the clear, asks for STARTTLS, then one line over TLS,
-- trusting the certificate in PEM (server.pem next to this script) for
-- the name example.com. PORT: 8000.
local defer = require("spindle.defer")
local endpoints = require("spindle.endpoints")
local protocol = require("spindle.protocol")
local ssl = require("spindle.ssl")
local task = require("spindle.task")
local LineReceiver = require("spindle.basic").LineReceiver

local PORT = tonumber(arg and arg[1]) or 8000
local PEM = arg and arg[2] or
  ((arg and arg[0] or ""):match("^(.*)/") or ".") .. "/server.pem"

local StartTLSClient = LineReceiver:extend({})

function StartTLSClient:connectionMade()
  self:sendLine("plain text")
  self:sendLine("STARTTLS")
end

function StartTLSClient:lineReceived(line)
  print("received: ", line)
  if line == "READY" then
    self.transport:startTLS(self.factory.options)
    self:sendLine("secure text")
    self.transport:loseConnection()
  end
end

local main = defer.inlineCallbacks(function(reactor)
  local factory = protocol.Factory.forProtocol(StartTLSClient)
  local file = assert(io.open(PEM, "rb"))
  local certData = file:read("a")
  file:close()
  factory.options = ssl.optionsForClientTLS("example.com",
    ssl.PrivateCertificate.loadPEM(certData))
  local endpoint = endpoints.HostnameEndpoint(reactor, "localhost", PORT)
  local startTLSClient = defer.await(endpoint:connect(factory))

  local done = defer.Deferred()
  startTLSClient.connectionLost = function(_, reason) -- luacheck: ignore reason
    done:callback(nil)
  end
  defer.await(done)
end)

task.react(main)
