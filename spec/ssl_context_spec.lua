-- spindle.ssl's Context and X509 ownership (issue 6): what a Context sets
-- on its SSL_CTX (the ALPN list, the verify callback) lives with the
-- SSL_CTX, so it survives the Context userdata; real TLS on loopback.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local defer = require("spindle.defer")
local ssl = require("spindle.ssl")
local H = require("spec.support.helper")
local certs = require("spec.support.certs")()

-- A server protocol that echoes, and records its connection's
-- ssl.Connection and negotiated protocol in `seen`.
local function server(ctx, seen)
  local S = protocol.Protocol:extend({})
  function S:dataReceived(d)
    seen.handle = self.transport:getHandle()
    seen.proto = self.transport:getNegotiatedProtocol()
    self.transport:write(d)
  end
  local f = protocol.Factory.forProtocol(S)
  return reactor.listenSSL(0, f, {getContext = function() return ctx end},
    50, "127.0.0.1")
end

-- Connect with a client certificate, offering ALPN; fires with the echo.
local function talk(port, text)
  local C = protocol.Protocol:extend({})
  local done = defer.Deferred()
  function C:connectionMade() self.transport:write(text) end
  function C:dataReceived(d)
    self.got = d
    self.transport:loseConnection()
  end
  function C:connectionLost(reason)
    if self.got then done:callback(self.got) else done:errback(reason) end
  end
  reactor.connectSSL("127.0.0.1", port:getHost().port,
    protocol.ClientFactory.forProtocol(C),
    ssl.optionsForClientTLS("localhost", {trustRoot = certs.ca,
      acceptableProtocols = {"http/1.1", "h2"},
      clientCertificate = {certificate = certs.client,
        privateKey = certs.clientKey}}))
  return H.wait(done, 10)
end

describe("ssl.Context", function()
  it("keeps its ALPN list and verify callback with the SSL_CTX when the " ..
    "Context is collected and get_context() rebuilds one (issue 6)",
    function()
      local calls = 0
      local seen = {}
      -- In a function of its own, so that nothing on this stack keeps the
      -- first Context.
      local function firstRound()
        local ctx = ssl.Context()
        ctx:use_certificate_chain_file(certs.server)
        ctx:use_privatekey_file(certs.serverKey)
        ctx:load_verify_locations(certs.ca)
        ctx:set_verify(ssl.VERIFY_PEER | ssl.VERIFY_FAIL_IF_NO_PEER_CERT,
          function(_, _, _, _, ok)
            calls = calls + 1
            return ok
          end)
        ctx:set_alpn_protos({"h2", "http/1.1"})
        local port = server(ctx, seen)
        assert.equal("one", talk(port, "one"))
        H.wait(port:stopListening())
      end
      firstRound()
      assert.equal("h2", seen.proto)
      assert.equal(2, calls)
      -- The connections are gone; only seen.handle (an ssl.Connection)
      -- keeps the SSL_CTX. Collect the Context that made it.
      H.wait(H.sleep(0.05))
      collectgarbage()
      collectgarbage()
      local ctx2 = seen.handle:get_context()
      seen.proto = nil
      local port = server(ctx2, seen)
      assert.equal("two", talk(port, "two"))
      H.wait(port:stopListening())
      assert.equal("h2", seen.proto)
      assert.equal(4, calls)
    end)
end)
