-- ssl.Certificate, ssl.PrivateCertificate, ssl.KeyPair (spindle.certificates).
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local defer = require("spindle.defer")
local ssl = require("spindle.ssl")
local H = require("spec.support.helper")
local certs = require("spec.support.certs")()

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

-- Serve an echo over TLS with server options; return port, the
-- server-side peer certificates seen (a list), and a stop function.
local function tlsEcho(options)
  local seen = {}
  local S = protocol.Protocol:extend({})
  function S:handshakeCompleted()
    seen[#seen + 1] = self.transport:getPeerCertificate()
  end
  function S:dataReceived(d) self.transport:write(d) end
  local port = reactor.listenSSL(0, protocol.Factory.forProtocol(S), options,
    50, "127.0.0.1")
  return port:getHost().port, seen, port
end

-- Connect with client options, send "ping"; fires with {echo, peer} or
-- with the connection's failure.
local function ping(n, options)
  local done = defer.Deferred()
  local C = protocol.Protocol:extend({})
  local got = ""
  function C:connectionMade() self.transport:write("ping") end
  function C:dataReceived(d)
    got = got .. d
    if got == "ping" then
      self.peer = self.transport:getPeerCertificate()
      self.transport:loseConnection()
    end
  end
  function C:connectionLost(reason)
    if got == "ping" then
      done:callback({echo = got, peer = self.peer})
    else
      done:errback(reason)
    end
  end
  reactor.connectSSL("127.0.0.1", n, protocol.ClientFactory.forProtocol(C),
    options)
  return done
end

describe("ssl.Certificate", function()
  it("loads PEM and tells subject, issuer, serial and digest", function()
    local ca = ssl.Certificate.loadPEM(read(certs.ca))
    local server = ssl.Certificate.loadPEM(read(certs.server))
    assert.equal(server:getIssuer(), ca:getSubject())
    assert.equal(ca.original:digest("sha256"), ca:digest("sha256"))
    assert.truthy(ca:digest():match("^%x%x:"))
    assert.equal(16 * 3 - 1, #ca:digest()) -- md5 by default, as Twisted
    assert.is_not_nil(server:serialNumber())
    assert.equal(ca, ssl.Certificate.loadPEM(ca:dumpPEM()))
    assert.are_not.equal(ca, server)
    assert.is_string(server:getSubject().commonName)
    assert.equal(server:getSubject().commonName, server:getSubject().CN)
  end)

  it("raises ssl.Error on text that holds no certificate", function()
    local ok, err = pcall(ssl.Certificate.loadPEM, "junk")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("load_certificate", 1, true))
  end)
end)

describe("ssl.PrivateCertificate", function()
  it("loads a PEM holding key and certificate, refusing a wrong key",
     function()
    local pc = ssl.PrivateCertificate.loadPEM(read(certs.serverKey) ..
      read(certs.server))
    assert.is_true(ssl.KeyPair:isinstance(pc.privateKey))
    assert.is_true(pc:matchesKey(pc.privateKey))
    local ok, err = pcall(ssl.PrivateCertificate.loadPEM,
      read(certs.clientKey) .. read(certs.server))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("does not match", 1, true))
  end)

  it("options(ca) gives a working mutual-TLS pair", function()
    local ca = ssl.Certificate.loadPEM(read(certs.ca))
    local server = ssl.PrivateCertificate.loadPEM(read(certs.serverKey) ..
      read(certs.server))
    local client = ssl.PrivateCertificate.loadPEM(read(certs.client) ..
      read(certs.clientKey))
    local n, seen, port = tlsEcho(server:options(ca))
    local r = H.wait(ping(n, client:options(ca)))
    assert.equal("ping", r.echo)
    -- each side saw the other's certificate, as Certificate methods
    assert.equal(server:getSubject(), r.peer:getSubject())
    assert.equal(server:digest("sha256"), r.peer:digest("sha256"))
    assert.equal(client:getSubject(), seen[1]:getSubject())
    assert.equal(ca:getSubject(), seen[1]:getIssuer())
    -- a client without a certificate is refused
    H.waitForFailure(ping(n, ssl.CertificateOptions{verify = true,
      caCerts = {ca.original}}))
    -- and one with a certificate from another CA too
    local evil = ssl.PrivateCertificate.loadPEM(read(certs.badKey) ..
      read(certs.bad))
    H.waitForFailure(ping(n, evil:options(ca)))
    H.wait(port:stopListening())
  end)
end)

describe("ssl.KeyPair", function()
  it("generates keys, a CA and certificates it signs, usable for TLS " ..
     "with optionsForClientTLS's positional form", function()
    local caKey = ssl.KeyPair.generate()
    local ca = caKey:selfSignedCert(1, {commonName = "Spec CA",
      organizationName = "spindle"})
    assert.is_true(ssl.PrivateCertificate:isinstance(ca))
    assert.equal("Spec CA", ca:getSubject().commonName)
    assert.equal(ca:getSubject(), ca:getIssuer())
    local function issue(cn, serial)
      local key = ssl.KeyPair.generate(ssl.TYPE_EC)
      local cert = ca:signCertificateRequest(key:certificateRequest(
        {commonName = cn}), nil, serial, nil, nil,
        {subjectAltName = "DNS:" .. cn})
      assert.equal(serial, cert:serialNumber())
      return ssl.PrivateCertificate.fromCertificateAndKeyPair(cert, key)
    end
    local server, client = issue("localhost", 2), issue("client", 3)
    assert.equal(ca:getSubject(), server:getIssuer())
    local n, seen, port = tlsEcho(server:options(ca))
    local r = H.wait(ping(n, ssl.optionsForClientTLS("localhost", ca,
      client)))
    assert.equal("ping", r.echo)
    assert.equal("client", seen[1]:getSubject().commonName)
    -- the name is checked: the same server is refused as "example.com"
    local f = H.waitForFailure(ping(n, ssl.optionsForClientTLS(
      "example.com", ca, client)))
    assert.truthy(f:check(ssl.VerifyError))
    H.wait(port:stopListening())
  end)

  it("loads and dumps PEM, and rejects text without a key", function()
    local kp = ssl.KeyPair.generate(ssl.TYPE_EC)
    assert.equal(kp:dump(), ssl.KeyPair.load(kp:dump()):dump())
    assert.is_true(kp:getPublicKey():matches(kp))
    assert.has_error(function() ssl.KeyPair.load("nothing") end)
  end)
end)

describe("endpoints.wrapClientTLS", function()
  local endpoints = require("spindle.endpoints")

  it("starts TLS over the wrapped endpoint, as tls: strings do", function()
    local ca = ssl.Certificate.loadPEM(read(certs.ca))
    local server = ssl.PrivateCertificate.loadPEM(read(certs.serverKey) ..
      read(certs.server))
    local n, _, port = tlsEcho(server:options())
    for _, ep in ipairs({
      endpoints.wrapClientTLS(ssl.optionsForClientTLS("localhost", ca),
        endpoints.HostnameEndpoint(reactor, "localhost", n)),
      endpoints.clientFromString(reactor, ("tls:localhost:%d:trustRoots=%s:" ..
        "endpoint=tcp\\:127.0.0.1\\:%d"):format(n, certs.ca, n)),
    }) do
      local P = protocol.Protocol:extend({})
      local done = defer.Deferred()
      function P:handshakeCompleted()
        self.peer = ssl.Certificate.peerFromTransport(self.transport)
        self.transport:write("hi")
      end
      function P:dataReceived() self.transport:loseConnection() end
      function P:connectionLost(reason) done:callback({self, reason}) end
      local proto = H.wait(ep:connect(protocol.Factory.forProtocol(P)))
      local r = H.wait(done)
      assert.equal(proto, r[1])
      assert.is_true(ssl.Certificate:isinstance(proto.peer))
      assert.equal(server:getSubject(), proto.peer:getSubject())
    end
    H.wait(port:stopListening())
  end)
end)
