local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local basic = require("spindle.basic")
local L = basic.LineReceiver:extend({MAX_LENGTH = 1e6, delimiter = "\r\n",
  lineReceived = function(self, l) self:sendLine(tostring(#l) .. ":" .. (l:sub(1, 8))) end})
local p = reactor.listenTCP(0, protocol.Factory.forProtocol(L), nil, "127.0.0.1")
print("PORT", p:getHost().port) io.stdout:flush()
reactor.callLater(20, reactor.stop)
reactor.run()
