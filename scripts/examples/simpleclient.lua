-- scripts/examples/simpleclient.lua: Twisted's
-- docs/core/examples/simpleclient.py. An example client. Run
-- simpleserv.lua first before running this.
--
--   build/spindle scripts/examples/simpleclient.lua [PORT]
local protocol = require("spindle.protocol")
local reactor = require("spindle.reactor")

local PORT = tonumber(arg and arg[1]) or 8000

-- a client protocol

--- Once connected, send a message, then print the result.
local EchoClient = protocol.Protocol:extend({})

function EchoClient:connectionMade()
  self.transport:write("hello, world!")
end

--- As soon as any data is received, write it back.
function EchoClient:dataReceived(data)
  print("Server said:", data)
  self.transport:loseConnection()
end

function EchoClient:connectionLost(reason) -- luacheck: ignore reason
  print("connection lost")
end

local EchoFactory = protocol.ClientFactory:extend({})
EchoFactory.protocol = EchoClient

function EchoFactory:clientConnectionFailed(connector, reason) -- luacheck: ignore
  print("Connection failed - goodbye!")
  reactor.stop()
end

function EchoFactory:clientConnectionLost(connector, reason) -- luacheck: ignore
  print("Connection lost - goodbye!")
  reactor.stop()
end

-- this connects the protocol to a server running on port 8000
local function main()
  local f = EchoFactory()
  reactor.connectTCP("localhost", PORT, f)
  reactor.run()
end

main()
