-- scripts/examples/chatserver.lua: Twisted's docs/core/examples/chatserver.py.
--
-- The most basic chat protocol possible.
--
--   build/spindle scripts/examples/chatserver.lua [PORT]
--
-- then connect with multiple telnet clients to PORT (1025). The original
-- is run with `twistd -y chatserver.py`; here the Application starts when
-- the reactor runs (the last line) and stops with it.
local basic = require("spindle.basic")

local PORT = tonumber(arg and arg[1]) or 1025

local MyChat = basic.LineReceiver:extend({})

function MyChat:connectionMade()
  print("Got new client!")
  io.stdout:flush()
  local clients = self.factory.clients
  clients[#clients + 1] = self
end

function MyChat:connectionLost(reason) -- luacheck: ignore reason
  print("Lost a client!")
  io.stdout:flush()
  local clients = self.factory.clients
  for i, c in ipairs(clients) do
    if c == self then table.remove(clients, i) break end
  end
end

function MyChat:lineReceived(line)
  print("received", ("%q"):format(line))
  io.stdout:flush()
  for _, c in ipairs(self.factory.clients) do
    c:message(line)
  end
end

function MyChat:message(message)
  self.transport:write(message .. "\n")
end

local application = require("spindle.application")
local internet, service = application.internet, application.service
local protocol = require("spindle.protocol")

local factory = protocol.ServerFactory()
factory.protocol = MyChat
factory.clients = {}

local app = service.Application("chatserver")
internet.TCPServer(PORT, factory):setServiceParent(app)

require("spindle.reactor").run() -- what `twistd -y` does
