-- scripts/examples/echoclient.lua: Twisted's docs/core/examples/echoclient.py.
--
--   build/spindle scripts/examples/echoclient.lua [PORT]
--
-- Sends three lines to an echo server on localhost:PORT (8000), prints
-- what comes back, and exits when the server has echoed "Bye-bye!".
local defer = require("spindle.defer")
local protocol = require("spindle.protocol")
local task = require("spindle.task")
local LineReceiver = require("spindle.basic").LineReceiver

local PORT = tonumber(arg and arg[1]) or 8000

local EchoClient = LineReceiver:extend({})
EchoClient.finish = "Bye-bye!" -- the original's `end` is a Lua keyword

function EchoClient:connectionMade()
  self:sendLine("Hello, world!")
  self:sendLine("What a fine day it is.")
  self:sendLine(self.finish)
end

function EchoClient:lineReceived(line)
  print("receive:", line)
  if line == self.finish then
    self.transport:loseConnection()
  end
end

local EchoClientFactory = protocol.ClientFactory:extend({})
EchoClientFactory.protocol = EchoClient

function EchoClientFactory:__init()
  self.done = defer.Deferred()
end

function EchoClientFactory:clientConnectionFailed(connector, reason)
  print("connection failed:", reason:getErrorMessage())
  self.done:errback(reason)
end

function EchoClientFactory:clientConnectionLost(connector, reason)
  print("connection lost:", reason:getErrorMessage())
  self.done:callback(nil)
end

local function main(reactor)
  local factory = EchoClientFactory()
  reactor.connectTCP("localhost", PORT, factory)
  return factory.done
end

task.react(main)
