-- scripts/examples/starttls_server.lua: Twisted's
-- docs/core/examples/starttls_server.py.
--
--   build/spindle scripts/examples/starttls_server.lua [PORT] [PEM]
--
-- Lines in the clear until the client says STARTTLS, then TLS with the
-- certificate and key in PEM (server.pem next to this script, as the
-- original's). PORT: 8000.
local defer = require("spindle.defer")
local endpoints = require("spindle.endpoints")
local protocol = require("spindle.protocol")
local ssl = require("spindle.ssl")
local task = require("spindle.task")
local LineReceiver = require("spindle.basic").LineReceiver

local PORT = tonumber(arg and arg[1]) or 8000
local PEM = arg and arg[2] or
  ((arg and arg[0] or ""):match("^(.*)/") or ".") .. "/server.pem"

local TLSServer = LineReceiver:extend({})

function TLSServer:lineReceived(line)
  print("received: ", line)
  io.stdout:flush()

  if line == "STARTTLS" then
    print("-- Switching to TLS")
    io.stdout:flush()
    self:sendLine("READY")
    self.transport:startTLS(self.factory.options)
  end
end

local function main(reactor)
  local file = assert(io.open(PEM, "rb"))
  local certData = file:read("a")
  file:close()
  local cert = ssl.PrivateCertificate.loadPEM(certData)

  local factory = protocol.Factory.forProtocol(TLSServer)
  factory.options = cert:options()
  local endpoint = endpoints.TCP4ServerEndpoint(reactor, PORT)
  endpoint:listen(factory)
  return defer.Deferred()
end

task.react(main)
