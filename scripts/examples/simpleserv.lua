-- scripts/examples/simpleserv.lua: Twisted's docs/core/examples/simpleserv.py.
--
--   build/spindle scripts/examples/simpleserv.lua [PORT]
local protocol = require("spindle.protocol")
local reactor = require("spindle.reactor")

local PORT = tonumber(arg and arg[1]) or 8000

--- This is just about the simplest possible protocol
local Echo = protocol.Protocol:extend({})

--- As soon as any data is received, write it back.
function Echo:dataReceived(data)
  self.transport:write(data)
end

--- This runs the protocol on port 8000
local function main()
  local factory = protocol.ServerFactory()
  factory.protocol = Echo
  reactor.listenTCP(PORT, factory)
  reactor.run()
end

main()
