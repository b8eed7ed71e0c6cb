-- bench/tls/spindle_server.lua KEY CERT: a TLS echo server on a port of
-- 127.0.0.1 picked by the kernel (reactor.listenSSL with
-- ssl.DefaultOpenSSLContextFactory), printed as "TLS <port>". Runs until
-- SIGTERM or SIGINT.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local ssl = require("spindle.ssl")

local Echo = protocol.Protocol:extend({
  dataReceived = function(self, data) self.transport:write(data) end,
})
local factory = protocol.Factory()
factory.protocol = Echo
local ctx = ssl.DefaultOpenSSLContextFactory(arg[1], arg[2])
local port = reactor.listenSSL(0, factory, ctx, 1024, "127.0.0.1")
print("TLS " .. port:getHost().port)
io.stdout:flush()
reactor.run()
