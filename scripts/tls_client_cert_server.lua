-- scripts/tls_client_cert_server.lua: the seed tutorial's echo server that
-- authenticates its clients by certificate: it asks each client for one,
-- checks it against ./ssl/ca.crt, and its verify callback prints what it
-- sees for each certificate of the client's chain (CA first) and accepts.
--
--   sh scripts/ssl/make_certs.sh        (once)
--   build/spindle scripts/tls_client_cert_server.lua [PORT] [--once]
--     [--timeout S] [--certs DIR]
--
-- PORT defaults to 8007 (0 picks a free one); it prints "tls client-cert
-- server listening on 127.0.0.1:PORT", then for each certificate:
--   _verify(on=1)
--   subject: <X509Name object '/C=CN/O=spindle/OU=clients/CN=spindle client'>
--   issuer: <X509Name object '/C=CN/O=spindle/OU=tests/CN=spindle test CA'>
--   errnum 0, errdepth 0
-- --once, --timeout and --certs as in tls_echo_server.lua. Its client is
-- scripts/tls_client_cert_client.lua; a client without a certificate is
-- refused (VERIFY_FAIL_IF_NO_PEER_CERT).
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

local EchoServer = protocol.Protocol:extend({})

function EchoServer:dataReceived(data)
  self.transport:write(data)
end

function EchoServer:connectionLost(reason) -- luacheck: ignore reason
  if once then reactor.stop() end
end

--- verifyCallback: decide from the x509 certificate whether the client
-- may connect; ok is OpenSSL's verdict (did the CA match?), a boolean.
-- luacheck: ignore connection
local function verifyCallback(connection, x509, errnum, errdepth, ok)
  print(string.format("_verify(on=%d)", ok and 1 or 0))
  print("subject: <X509Name object '" .. tostring(x509:get_subject()) .. "'>")
  print("issuer: <X509Name object '" .. tostring(x509:get_issuer()) .. "'>")
  print(string.format("errnum %s, errdepth %s", errnum, errdepth))
  io.stdout:flush()
  return true -- allow the connection
end

local factory = protocol.Factory()
factory.protocol = EchoServer
-- The key file and the certificate file.
local myContextFactory = ssl.DefaultOpenSSLContextFactory(
  certs .. "/server.key", certs .. "/server.crt")
local ctx = myContextFactory:getContext()
-- How the context verifies clients: a certificate is required.
ctx:set_verify(ssl.VERIFY_PEER | ssl.VERIFY_FAIL_IF_NO_PEER_CERT,
  verifyCallback)
-- (The tutorial calls it load_verify_location; pyOpenSSL's and our name
-- ends in an s.)
ctx:load_verify_locations(certs .. "/ca.crt")

local listening = reactor.listenSSL(port, factory, myContextFactory, 50,
  "127.0.0.1")
print("tls client-cert server listening on 127.0.0.1:" ..
  listening:getHost().port)
io.stdout:flush()
if timeout then reactor.callLater(timeout, reactor.stop) end
reactor.run()
