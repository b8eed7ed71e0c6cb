-- fuzz/allocfail/echo.lua: a TCP echo exchange on loopback for
-- tools/allocfail.sh; prints "done" when the line came back.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local basic = require("spindle.basic")

local Echo = protocol.Protocol:extend({})
function Echo:dataReceived(data) self.transport:write(data) end

local Client = basic.LineReceiver:extend({})
function Client:connectionMade() self:sendLine("hello") end
function Client:lineReceived(line)
  assert(line == "hello", "wrong line")
  print("done")
  self.transport:loseConnection()
end
function Client:connectionLost() reactor.stop() end

local port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), nil,
  "127.0.0.1")
reactor.connectTCP("127.0.0.1", port:getHost().port,
  protocol.ClientFactory.forProtocol(Client))
reactor.callLater(2, reactor.stop)
reactor.run()
