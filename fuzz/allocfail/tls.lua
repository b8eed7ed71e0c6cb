-- fuzz/allocfail/tls.lua CERTDIR: a TLS handshake and echo exchange on
-- loopback for tools/allocfail.sh, with the keys scripts/ssl/make_certs.sh
-- made in CERTDIR; prints "done" when the line came back.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local basic = require("spindle.basic")
local ssl = require("spindle.ssl")

local dir = assert(arg[1], "usage: tls.lua CERTDIR")
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

local server = ssl.DefaultOpenSSLContextFactory(dir .. "/server.key",
  dir .. "/server.crt")
local port = reactor.listenSSL(0, protocol.Factory.forProtocol(Echo), server,
  nil, "127.0.0.1")
local client = ssl.optionsForClientTLS("localhost", {trustRoot = dir ..
  "/ca.crt"})
reactor.connectSSL("127.0.0.1", port:getHost().port,
  protocol.ClientFactory.forProtocol(Client), client)
reactor.callLater(2, reactor.stop)
reactor.run()
