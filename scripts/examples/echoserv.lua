-- scripts/examples/echoserv.lua: Twisted's docs/core/examples/echoserv.py.
--
--   build/spindle scripts/examples/echoserv.lua [PORT]
--
-- An echo server on PORT (8000, as the original); serves until stopped.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")

local PORT = tonumber(arg and arg[1]) or 8000

--- Protocol Implementation

-- This is just about the simplest possible protocol
local Echo = protocol.Protocol:extend({})

--- As soon as any data is received, write it back.
function Echo:dataReceived(data)
  self.transport:write(data)
end

local function main()
  local f = protocol.Factory()
  f.protocol = Echo
  reactor.listenTCP(PORT, f)
  reactor.run()
end

main()
