-- scripts/tls_echo_server.lua: the seed tutorial's encrypted-channel echo
-- server (Twisted: reactor.listenSSL(8007, factory,
-- ssl.DefaultOpenSSLContextFactory('./ssl/server.key', './ssl/server.crt'))).
--
--   sh scripts/ssl/make_certs.sh        (once: makes scripts/ssl/*.key, *.crt)
--   build/spindle scripts/tls_echo_server.lua [PORT] [--once] [--timeout S]
--     [--certs DIR]
--
-- PORT defaults to 8007 (0 picks a free one); it listens on 127.0.0.1 and
-- prints "tls echo server listening on 127.0.0.1:PORT". --once exits after
-- the first client leaves, --timeout S after S seconds; --certs DIR reads
-- server.key and server.crt from DIR instead of scripts/ssl. Try it with
-- scripts/tls_echo_client.lua, or:
--
--   openssl s_client -connect 127.0.0.1:8007 -CAfile scripts/ssl/ca.crt
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local ssl = require("spindle.ssl")

local port, once, timeout = 8007, false, nil
local certs = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/ssl"
local i = 1
while arg[i] do
  if arg[i] == "--once" then once = true
  elseif arg[i] == "--timeout" then i = i + 1; timeout = tonumber(arg[i])
  elseif arg[i] == "--certs" then i = i + 1; certs = arg[i]
  else port = assert(math.tointeger(tonumber(arg[i])), "bad port: " .. arg[i])
  end
  i = i + 1
end

--- EchoServer: whatever arrives (decrypted) goes straight back (encrypted).
local EchoServer = protocol.Protocol:extend({})

function EchoServer:dataReceived(data)
  self.transport:write(data)
end

function EchoServer:connectionLost(reason) -- luacheck: ignore reason
  if once then reactor.stop() end
end

local factory = protocol.Factory()
factory.protocol = EchoServer
-- The key file and the certificate file, as in the tutorial.
local listening = reactor.listenSSL(port, factory,
  ssl.DefaultOpenSSLContextFactory(certs .. "/server.key",
    certs .. "/server.crt"), 50, "127.0.0.1")
print("tls echo server listening on 127.0.0.1:" .. listening:getHost().port)
io.stdout:flush()
if timeout then reactor.callLater(timeout, reactor.stop) end
reactor.run()
