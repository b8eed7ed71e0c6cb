-- scripts/examples/streaming.lua: Twisted's docs/core/examples/streaming.py.
--
-- This is a sample implementation of a push producer/consumer system. It
-- consists of a TCP server which asks the user how many random integers
-- they want, and it sends the result set back to the user, one result per
-- line, and finally closes the connection.
--
--   build/spindle scripts/examples/streaming.lua [PORT]     (PORT: 1234)
local reactor = require("spindle.reactor")
local Object = require("spindle.class").Object
local Factory = require("spindle.protocol").Factory
local LineReceiver = require("spindle.basic").LineReceiver

local PORT = tonumber(arg and arg[1]) or 1234

local function peer(transport)
  local a = transport:getPeer()
  return ("%s:%d"):format(a.host, a.port)
end

--- Send back the requested number of random integers to the client
-- (a push producer: pauseProducing, resumeProducing, stopProducing).
local Producer = Object:extend({})

function Producer:__init(proto, count)
  self._proto = proto
  self._goal = count
  self._produced = 0
  self._paused = false
end

--- When we've produced data too fast, pauseProducing() will be called
-- (reentrantly from within resumeProducing's sendLine() method, most
-- likely), so set a flag that causes production to pause temporarily.
function Producer:pauseProducing()
  self._paused = true
  print("Pausing connection from " .. peer(self._proto.transport))
  io.stdout:flush()
end

--- Resume producing integers until the requested number of integers
-- were returned to the client.
function Producer:resumeProducing()
  self._paused = false

  while not self._paused and self._produced < self._goal do
    local next_int = math.random(0, 9999)
    self._proto:sendLine(tostring(next_int))
    self._produced = self._produced + 1
  end

  if self._produced == self._goal then
    self._proto.transport:unregisterProducer()
    self._proto.transport:loseConnection()
  end
end

--- When a consumer has died, stop producing data for good.
function Producer:stopProducing()
  self._produced = self._goal
end

--- Serve up random integers.
local ServeRandom = LineReceiver:extend({})

-- The peer's address is kept: a closed transport no longer answers.
function ServeRandom:connectionMade()
  self.peer = peer(self.transport)
end

--- Once we've received a line, try to parse it as an integer and then
-- send that many random numbers back, then close the connection.
function ServeRandom:lineReceived(line)
  local count = math.tointeger(tonumber(line))
  if count == nil then
    self:sendLine("That's not an integer")
    self.transport:loseConnection()
    return
  end
  local producer = Producer(self, count)
  self.transport:registerProducer(producer, true)
  producer:resumeProducing()
end

function ServeRandom:connectionLost(reason) -- luacheck: ignore reason
  print("Connection lost from " .. self.peer)
  io.stdout:flush()
end

local function main()
  local factory = Factory()
  factory.protocol = ServeRandom
  reactor.listenTCP(PORT, factory)
  reactor.run()
end

main()
