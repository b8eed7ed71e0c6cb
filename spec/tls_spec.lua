-- TLS: reactor.listenSSL / connectSSL, transport:startTLS and
-- getPeerCertificate, and spindle.ssl (context factories, Context, X509),
-- over loopback with real TLS; python3 and the openssl command as outside
-- peers. Keys and certificates are made at test time (spec.support.certs).
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local defer = require("spindle.defer")
local ssl = require("spindle.ssl")
local H = require("spec.support.helper")
local peers = require("spec.support.peers")
local pyfile, spawn, finish = peers.pyfile, peers.spawn, peers.finish
local certs = require("spec.support.certs")()

local function wait(d, timeout)
  return H.wait(d, timeout or 10)
end

local function serverCF()
  return ssl.DefaultOpenSSLContextFactory(certs.serverKey, certs.server)
end

local function trusting(host, extra)
  local opts = {trustRoot = certs.ca}
  for k, v in pairs(extra or {}) do opts[k] = v end
  return ssl.optionsForClientTLS(host or "localhost", opts)
end

-- A TLS echo server on 127.0.0.1 with context factory cf; f.lost fires
-- with {reason, protocol} the first time a connection is lost; f.made
-- counts connections.
local function echoServer(cf, P)
  local Echo = P or protocol.Protocol:extend({})
  if not P then
    function Echo:dataReceived(data) self.transport:write(data) end
  end
  local f = protocol.Factory.forProtocol(Echo)
  f.lost = defer.Deferred()
  f.made = 0
  local made = Echo.connectionMade
  function Echo:connectionMade()
    f.made = f.made + 1
    made(self)
  end
  function Echo:connectionLost(reason)
    if not f.lost.called then f.lost:callback({reason, self}) end
  end
  local port = reactor.listenSSL(0, f, cf or serverCF(), 50, "127.0.0.1")
  return port, port:getHost().port, f
end

-- A client factory whose protocol records what happens: cf.done fires
-- with the data read once the connection is lost (cf.reason, cf.events,
-- cf.clientLost then set). hooks: connectionMade(p), dataReceived(p, d),
-- handshakeCompleted(p).
local function client(hooks)
  hooks = hooks or {}
  local C = protocol.Protocol:extend({})
  local cf = protocol.ClientFactory.forProtocol(C)
  cf.done = defer.Deferred()
  cf.events = {}
  local function event(e) cf.events[#cf.events + 1] = e end
  function C:connectionMade()
    event("made")
    self.chunks = {}
    if hooks.connectionMade then hooks.connectionMade(self) end
  end
  function C:handshakeCompleted()
    event("handshake")
    cf.peer = self.transport:getPeerCertificate()
    if hooks.handshakeCompleted then hooks.handshakeCompleted(self) end
  end
  function C:dataReceived(data)
    self.chunks[#self.chunks + 1] = data
    if hooks.dataReceived then hooks.dataReceived(self, data) end
  end
  function C:connectionLost(reason)
    event("lost")
    cf.reason = reason
    cf.done:callback(table.concat(self.chunks))
  end
  function cf:clientConnectionLost(_, reason) cf.clientLost = reason end
  function cf:clientConnectionFailed(_, reason) cf.done:errback(reason) end
  return cf
end

describe("reactor.listenSSL and reactor.connectSSL", function()
  it("echo over TLS with a ClientContextFactory instance", function()
    local port, n = echoServer()
    local cf = client({
      connectionMade = function(p) p.transport:write("hello over TLS") end,
      dataReceived = function(p) p.transport:loseConnection() end,
    })
    reactor.connectSSL("127.0.0.1", n, cf, ssl.ClientContextFactory())
    assert.equal("hello over TLS", wait(cf.done))
    assert.is_truthy(cf.reason:check(reactor.ConnectionDone))
    assert.is_truthy(cf.clientLost:check(reactor.ConnectionDone))
    assert.same({"made", "handshake", "lost"}, cf.events)
    wait(port:stopListening())
  end)

  it("takes the ClientContextFactory class itself", function()
    local port, n = echoServer()
    local cf = client({
      connectionMade = function(p) p.transport:write("class") end,
      dataReceived = function(p) p.transport:loseConnection() end,
    })
    reactor.connectSSL("127.0.0.1", n, cf, ssl.ClientContextFactory)
    assert.equal("class", wait(cf.done))
    wait(port:stopListening())
  end)

  it("holds writes made before the handshake, then sends them encrypted",
    function()
      local port, n, sf = echoServer()
      local before
      local cf = client({
        connectionMade = function(p)
          before = p.transport:getPeerCertificate()
          p.transport:write("one ")
          p.transport:writeSequence({"two ", "three"})
        end,
        dataReceived = function(p)
          if #table.concat(p.chunks) == 13 then p.transport:loseConnection() end
        end,
      })
      reactor.connectSSL("127.0.0.1", n, cf, trusting())
      assert.equal("one two three", wait(cf.done))
      assert.is_nil(before)
      assert.equal("localhost", cf.peer:get_subject().CN)
      assert.equal(1, sf.made)
      wait(port:stopListening())
    end)

  it("loseConnection before the handshake ends still delivers what was " ..
    "written, then closes cleanly", function()
      local got = defer.Deferred()
      local S = protocol.Protocol:extend({})
      function S:connectionMade() self.buf = {} end
      function S:dataReceived(d) self.buf[#self.buf + 1] = d end
      local port, n, sf = echoServer(nil, S)
      sf.lost:addCallback(function(r)
        got:callback({table.concat(r[2].buf), r[1]})
      end)
      local cf = client({connectionMade = function(p)
        p.transport:write("last words")
        p.transport:loseConnection()
      end})
      reactor.connectSSL("127.0.0.1", n, cf, trusting())
      wait(cf.done)
      local r = wait(got)
      assert.equal("last words", r[1])
      assert.is_truthy(r[2]:check(reactor.ConnectionDone))
      assert.is_truthy(cf.reason:check(reactor.ConnectionDone))
      wait(port:stopListening())
    end)

  it("carries 16 MiB each way intact", function()
    local size = 16 * 1024 * 1024
    local block = {}
    for i = 1, 4096 do block[i] = string.char((i * 7 + 3) % 256) end
    block = table.concat(block)
    local data = block:rep(size // #block - 1) .. ("x"):rep(#block - 3) .. "end"
    assert.equal(size, #data)
    local port, n = echoServer()
    local cf = client({
      connectionMade = function(p)
        p.got = 0
        p.transport:write(data)
      end,
      dataReceived = function(p, d)
        p.got = p.got + #d
        if p.got >= size then p.transport:loseConnection() end
      end,
    })
    reactor.connectSSL("127.0.0.1", n, cf, trusting())
    local back = wait(cf.done, 60)
    assert.equal(size, #back)
    assert.is_true(back == data, "the echoed bytes differ")
    wait(port:stopListening())
  end)

  it("logs a getContext error on an accepted connection and drops it",
    function()
      local good = serverCF()
      local calls = 0
      local flaky = {getContext = function()
        calls = calls + 1
        if calls > 1 then error("no context today") end
        return good:getContext()
      end}
      local port, n, sf = echoServer(flaky)
      local cf = client()
      reactor.connectSSL("127.0.0.1", n, cf, trusting())
      local errors = H.loggedErrors(function() wait(cf.done) end)
      assert.equal(1, #errors)
      assert.matches("no context today", tostring(errors[1].failure))
      assert.matches("Could not start TLS", errors[1].why)
      assert.equal(0, sf.made)
      assert.is_truthy(cf.reason:check(ssl.Error), tostring(cf.reason))
      wait(port:stopListening())
    end)

  it("raises ssl.Error at listenSSL when the context factory cannot make " ..
    "a Context", function()
      local bad = {getContext = function() error(ssl.Error("no key")) end}
      H.assertErrorType(ssl.Error, "no key", pcall(reactor.listenSSL, 0,
        protocol.Factory.forProtocol(protocol.Protocol), bad))
      assert.has_error(function()
        reactor.listenSSL(0, protocol.Factory.forProtocol(protocol.Protocol),
          42)
      end, "bad argument #3 to 'listenSSL' (context factory expected, " ..
        "got number)")
    end)
end)

describe("certificate verification", function()
  it("fails with ssl.VerifyError when the server's certificate is not " ..
    "trusted", function()
      local port, n, sf = echoServer(
        ssl.DefaultOpenSSLContextFactory(certs.badKey, certs.bad))
      local cf = client()
      reactor.connectSSL("127.0.0.1", n, cf, trusting())
      wait(cf.done)
      H.assertErrorType(ssl.VerifyError, "certificate verify failed",
        false, cf.reason.value)
      assert.is_truthy(cf.reason:check(ssl.Error))
      assert.is_truthy(cf.clientLost:check(ssl.VerifyError))
      assert.same({"made", "lost"}, cf.events)
      -- The server hears the client's alert.
      local r = wait(sf.lost)
      assert.is_truthy(r[1]:check(ssl.Error), tostring(r[1]))
      wait(port:stopListening())
    end)

  it("fails with ssl.VerifyError naming the hostname on a mismatch",
    function()
      local port, n = echoServer()
      local cf = client()
      reactor.connectSSL("127.0.0.1", n, cf, trusting("example.com"))
      wait(cf.done)
      H.assertErrorType(ssl.VerifyError, "example.com", false,
        cf.reason.value)
      assert.matches("hostname mismatch", cf.reason:getErrorMessage())
      wait(port:stopListening())
    end)

  it("trusts X509 objects given by trustRootFromCertificates", function()
    local port, n = echoServer()
    local cf = client({
      connectionMade = function(p) p.transport:write("x509 root") end,
      dataReceived = function(p) p.transport:loseConnection() end,
    })
    reactor.connectSSL("127.0.0.1", n, cf, ssl.optionsForClientTLS(
      "localhost", {trustRoot = ssl.trustRootFromCertificates(
        {ssl.load_certificate_file(certs.ca)})}))
    assert.equal("x509 root", wait(cf.done))
    wait(port:stopListening())
  end)

  it("accepts the server's IP address when it is in the certificate",
    function()
      local port, n = echoServer()
      local cf = client({
        connectionMade = function(p) p.transport:write("ip") end,
        dataReceived = function(p) p.transport:loseConnection() end,
      })
      reactor.connectSSL("127.0.0.1", n, cf, trusting("127.0.0.1"))
      assert.equal("ip", wait(cf.done))
      wait(port:stopListening())
    end)
end)

-- A server context that asks for a client certificate, trusts the test CA
-- and calls back with each certificate; `answer(ok, ...)` decides.
local function clientAuthServer(answer, mode)
  local calls = {}
  local scf = serverCF()
  local ctx = scf:getContext()
  ctx:set_verify(mode or (ssl.VERIFY_PEER | ssl.VERIFY_FAIL_IF_NO_PEER_CERT),
    function(conn, x509, errnum, errdepth, ok)
      calls[#calls + 1] = {
        subject = x509:get_subject().CN, issuer = x509:get_issuer().CN,
        errnum = errnum, depth = errdepth, ok = ok,
        hasTransport = conn:get_app_data() ~= nil,
      }
      return answer(ok, x509)
    end)
  ctx:load_verify_locations(certs.ca)
  return scf, calls
end

-- The seed tutorial's client: a ClientContextFactory subclass adding the
-- client certificate in getContext.
local MyContext = ssl.ClientContextFactory:extend({})
function MyContext:getContext()
  local ctx = ssl.ClientContextFactory.getContext(self)
  ctx:use_certificate_file(self.cert or certs.client)
  ctx:use_privatekey_file(self.key or certs.clientKey)
  return ctx
end

describe("client certificates and Context:set_verify", function()
  it("calls the verify callback per certificate and accepts when it " ..
    "returns true", function()
      local scf, calls = clientAuthServer(function() return true end)
      local S = protocol.Protocol:extend({})
      local peer
      function S:dataReceived(d)
        peer = self.transport:getPeerCertificate()
        self.transport:write(d)
      end
      local port, n = echoServer(scf, S)
      local cf = client({
        connectionMade = function(p) p.transport:write("authenticated") end,
        dataReceived = function(p) p.transport:loseConnection() end,
      })
      reactor.connectSSL("localhost", n, cf, MyContext)
      assert.equal("authenticated", wait(cf.done))
      assert.equal(2, #calls)
      assert.same({subject = "spindle test CA", issuer = "spindle test CA",
        errnum = 0, depth = 1, ok = true, hasTransport = true}, calls[1])
      assert.same({subject = "spindle client", issuer = "spindle test CA",
        errnum = 0, depth = 0, ok = true, hasTransport = true}, calls[2])
      assert.equal("spindle client", peer:get_subject().CN)
      assert.equal("clients", peer:get_subject().OU)
      wait(port:stopListening())
    end)

  it("refuses the client when the callback returns false", function()
    local scf, calls = clientAuthServer(function() return false end)
    local port, n, sf = echoServer(scf)
    local cf = client({
      connectionMade = function(p) p.transport:write("let me in") end,
    })
    reactor.connectSSL("127.0.0.1", n, cf, MyContext())
    local r = wait(sf.lost)
    H.assertErrorType(ssl.VerifyError, "certificate verify failed", false,
      r[1].value)
    assert.equal("", wait(cf.done))
    assert.is_truthy(cf.reason:check(ssl.Error), tostring(cf.reason))
    assert.is_truthy(cf.clientLost:check(ssl.Error))
    assert.equal(1, #calls)
    wait(port:stopListening())
  end)

  it("logs an error raised by the callback and refuses", function()
    local scf = clientAuthServer(function() error("callback broke") end)
    local port, n, sf = echoServer(scf)
    local cf = client()
    reactor.connectSSL("127.0.0.1", n, cf, MyContext())
    local errors, r = H.loggedErrors(function()
      local lost = wait(sf.lost)
      wait(cf.done)
      return lost
    end)
    assert.is_truthy(r[1]:check(ssl.VerifyError))
    assert.is_true(#errors >= 1)
    assert.matches("callback broke", tostring(errors[1].failure))
    wait(port:stopListening())
  end)

  it("lets the callback accept a certificate OpenSSL refused (ok false)",
    function()
      local scf, calls = clientAuthServer(function() return true end)
      local port, n = echoServer(scf)
      local cf = client({
        connectionMade = function(p) p.transport:write("untrusted") end,
        dataReceived = function(p) p.transport:loseConnection() end,
      })
      local cc = MyContext()
      cc.cert, cc.key = certs.bad, certs.badKey
      reactor.connectSSL("127.0.0.1", n, cf, cc)
      assert.equal("untrusted", wait(cf.done))
      assert.is_false(calls[1].ok)
      assert.is_true(calls[1].errnum ~= 0)
      wait(port:stopListening())
    end)

  it("refuses a client without a certificate under " ..
    "VERIFY_FAIL_IF_NO_PEER_CERT", function()
      local scf, calls = clientAuthServer(function() return true end)
      local port, n, sf = echoServer(scf)
      local cf = client({
        connectionMade = function(p) p.transport:write("anonymous") end,
      })
      reactor.connectSSL("127.0.0.1", n, cf, ssl.ClientContextFactory())
      local r = wait(sf.lost)
      H.assertErrorType(ssl.Error, "certificate", false, r[1].value)
      wait(cf.done)
      assert.is_truthy(cf.reason:check(ssl.Error), tostring(cf.reason))
      assert.equal(0, #calls)
      wait(port:stopListening())
    end)

  it("sends optionsForClientTLS's clientCertificate", function()
    local scf = clientAuthServer(function(ok) return ok end)
    local S = protocol.Protocol:extend({})
    function S:dataReceived()
      self.transport:write(self.transport:getPeerCertificate():get_subject().CN)
    end
    local port, n = echoServer(scf, S)
    local cf = client({
      connectionMade = function(p) p.transport:write("who am I?") end,
      dataReceived = function(p) p.transport:loseConnection() end,
    })
    reactor.connectSSL("127.0.0.1", n, cf, trusting("localhost", {
      clientCertificate = {certificate = certs.client,
        privateKey = certs.clientKey}}))
    assert.equal("spindle client", wait(cf.done))
    wait(port:stopListening())
  end)
end)

describe("transport:startTLS", function()
  it("upgrades a TCP connection in the middle of a conversation", function()
    local S = protocol.Protocol:extend({})
    local serverGot = defer.Deferred()
    function S:dataReceived(d)
      if d == "STARTTLS\n" then
        self.transport:write("GO\n")
        self.transport:startTLS(serverCF())
      else
        serverGot:callback({d, self.transport:getHandle()
          :get_protocol_version_name()})
        self.transport:write("secret reply")
      end
    end
    local port = reactor.listenTCP(0, protocol.Factory.forProtocol(S), 50,
      "127.0.0.1")
    local cf = client({
      connectionMade = function(p) p.transport:write("STARTTLS\n") end,
      dataReceived = function(p, d)
        if d == "GO\n" then
          p.transport:startTLS(trusting())
          p.transport:write("secret")
        elseif d == "secret reply" then
          p.transport:loseConnection()
        end
      end,
    })
    reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
    assert.equal("GO\nsecret reply", wait(cf.done))
    local r = wait(serverGot)
    assert.equal("secret", r[1])
    assert.matches("^TLSv1%.[23]$", r[2])
    assert.same({"made", "handshake", "lost"}, cf.events)
    assert.equal("localhost", cf.peer:get_subject().CN)
    wait(port:stopListening())
  end)

  it("raises when TLS is already on and on a closed transport", function()
    local port, n = echoServer()
    local transport
    local cf = client({handshakeCompleted = function(p)
      transport = p.transport
      assert.has_error(function() p.transport:startTLS(serverCF()) end,
        "TLS is already started")
      -- Through pcall the method is still named (was "#2 to '?'").
      local ok, err = pcall(p.transport.startTLS, p.transport, 42)
      assert.is_false(ok)
      assert.equal("bad argument #1 to 'startTLS' (context factory " ..
        "expected, got number)", err)
      p.transport:loseConnection()
    end})
    reactor.connectSSL("127.0.0.1", n, cf, trusting())
    wait(cf.done)
    assert.has_error(function() transport:startTLS(serverCF()) end,
      "calling 'startTLS' on bad self (attempt to use a closed transport)")
    wait(port:stopListening())
  end)
end)

describe("TLS half-close and producers (issue 7 item 10)", function()
  -- A python server that reads "hello", answers, then tells a
  -- close_notify from a bare EOF (suppress_ragged_eofs=False) and answers
  -- the close_notify with its own (OpenSSL writes nothing more once it
  -- has received one, so the answer comes first).
  local halfCloseServer = [[
import socket, ssl
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(%q, %q)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
raw, _ = srv.accept()
s = ctx.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
data = b""
while len(data) < 5:
    data += s.recv(5 - len(data))
s.sendall(b"reply after half-close")
try:
    while True:
        d = s.recv(100)
        if not d:
            print("close_notify after", data.decode(), flush=True)
            break
        data += d
except ssl.SSLEOFError:
    print("bare EOF after", data.decode(), flush=True)
try:
    s.unwrap()
except (ssl.SSLError, OSError) as e:
    print("unwrap:", e, flush=True)
raw.close()
]]

  -- In connectionMade, before the handshake, "hello" is held, then sent,
  -- then close_notify follows; in handshakeCompleted both go at once.
  for _, when in ipairs({"connectionMade", "handshakeCompleted"}) do
    it("loseWriteConnection sends close_notify, then reads on until the " ..
      "peer's close_notify (called in " .. when .. ")", function()
        local py = pyfile(halfCloseServer:format(certs.server,
          certs.serverKey))
        local p, n = peers.listening("timeout 10 python3 " .. py,
          "^(%d+)$")
        local cf = client({
          [when] = function(c)
            c.transport:write("hello")
            c.transport:loseWriteConnection()
          end,
        })
        reactor.connectSSL("localhost", n, cf, trusting())
        assert.equal("reply after half-close", wait(cf.done))
        local out = finish(p)
        os.remove(py)
        assert.equal("close_notify after hello\n", out)
        -- (writeConnectionLost may not come: the peer's close_notify can
        -- close the connection before the socket's shutdown completes.)
        assert.is_truthy(cf.reason:check(reactor.ConnectionDone),
          tostring(cf.reason))
      end)
  end

  it("pauses a streaming producer while writes wait for the handshake, " ..
    "and resumes it once they are sent", function()
      local port, n = echoServer()
      local events = {}
      local Producer = {
        pauseProducing = function() events[#events + 1] = "pause" end,
        resumeProducing = function() events[#events + 1] = "resume" end,
        stopProducing = function() events[#events + 1] = "stop" end,
      }
      local cf = client({
        connectionMade = function(c)
          c.transport:registerProducer(Producer, true)
          c.transport:write("produced")
        end,
        handshakeCompleted = function()
          events[#events + 1] = "handshake"
        end,
        dataReceived = function(c)
          c.transport:unregisterProducer()
          c.transport:loseConnection()
        end,
      })
      reactor.connectSSL("localhost", n, cf, trusting())
      assert.equal("produced", wait(cf.done))
      assert.same({"pause", "handshake", "resume"}, events)
      wait(port:stopListening())
    end)
end)

describe("TLS with broken peers", function()
  it("loses a plain TCP peer sending garbage with ssl.Error and keeps " ..
    "serving", function()
      local port, n, sf = echoServer()
      local py = pyfile(([[
import socket
s = socket.create_connection(("127.0.0.1", %d))
s.sendall(b"GET / HTTP/1.0\r\n\r\n" + bytes(range(256)) * 64)
s.settimeout(5)
try:
    while s.recv(4096): pass
except OSError: pass
print("closed")
]]):format(n))
      local p = spawn("timeout 10 python3 " .. py)
      local r = wait(sf.lost)
      assert.equal("closed\n", finish(p))
      os.remove(py)
      H.assertErrorType(ssl.Error, "TLS handshake failed", false, r[1].value)
      assert.is_string(r[1].value.reason)
      -- Still serving.
      local cf = client({
        connectionMade = function(c) c.transport:write("still here") end,
        dataReceived = function(c) c.transport:loseConnection() end,
      })
      reactor.connectSSL("127.0.0.1", n, cf, trusting())
      assert.equal("still here", wait(cf.done))
      wait(port:stopListening())
    end)

  it("loses a peer that sends garbage after the handshake with ssl.Error",
    function()
      local got = {}
      local S = protocol.Protocol:extend({})
      function S:dataReceived(d) got[#got + 1] = d end
      local port, n, sf = echoServer(nil, S)
      local py = pyfile(([[
import os, random, socket, ssl, time
ctx = ssl.create_default_context(cafile=%q)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", %d)),
                    server_hostname="localhost")
s.sendall(b"before garbage")
time.sleep(0.2)
random.seed(7)
os.write(s.fileno(), bytes(random.getrandbits(8) for _ in range(5000)))
time.sleep(0.5)
print("sent")
]]):format(certs.ca, n))
      local p = spawn("timeout 10 python3 " .. py)
      local r = wait(sf.lost)
      assert.equal("sent\n", finish(p))
      os.remove(py)
      H.assertErrorType(ssl.Error, "TLS connection failed", false, r[1].value)
      assert.equal("before garbage", table.concat(got))
      wait(port:stopListening())
    end)

  it("loses a peer that closes during the handshake with ssl.Error",
    function()
      local port, n, sf = echoServer()
      local C = protocol.Protocol:extend({})
      function C:connectionMade()
        self.transport:write("\22\3\1\0\5hel") -- a truncated record
        self.transport:loseConnection()
      end
      reactor.connectTCP("127.0.0.1", n, protocol.ClientFactory.forProtocol(C))
      local r = wait(sf.lost)
      H.assertErrorType(ssl.Error, "TLS handshake failed", false, r[1].value)
      wait(port:stopListening())
    end)

  it("fails a TLS client talking to a plain TCP server", function()
    local S = protocol.Protocol:extend({})
    function S:connectionMade()
      self.transport:write("220 plain text here, not TLS\r\n")
    end
    local port = reactor.listenTCP(0, protocol.Factory.forProtocol(S), 50,
      "127.0.0.1")
    local cf = client()
    reactor.connectSSL("127.0.0.1", port:getHost().port, cf, trusting())
    wait(cf.done)
    H.assertErrorType(ssl.Error, "TLS handshake failed", false,
      cf.reason.value)
    assert.is_truthy(cf.clientLost:check(ssl.Error))
    wait(port:stopListening())
  end)
end)

describe("outside peers", function()
  it("serves openssl s_client", function()
    local S = protocol.Protocol:extend({})
    function S:dataReceived(d)
      self.transport:write("echo: " .. d)
      self.transport:loseConnection()
    end
    local port, n, sf = echoServer(nil, S)
    local p = io.popen(("printf 'hi from s_client\\n' | timeout 10 openssl " ..
      "s_client -connect 127.0.0.1:%d -servername localhost -quiet " ..
      "-CAfile %s -verify_return_error 2>/dev/null"):format(n, certs.ca))
    local r = wait(sf.lost)
    assert.is_truthy(r[1]:check(reactor.ConnectionDone))
    assert.equal("echo: hi from s_client\n", finish(p))
    wait(port:stopListening())
  end)

  it("serves python3's ssl module, which verifies our certificate",
    function()
      local port, n, sf = echoServer()
      local py = pyfile(([[
import socket, ssl
ctx = ssl.create_default_context(cafile=%q)
with socket.create_connection(("127.0.0.1", %d)) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"python says hi")
        print(s.recv(100).decode(), s.version())
]]):format(certs.ca, n))
      local p = spawn("timeout 10 python3 " .. py)
      local r = wait(sf.lost)
      local out = finish(p)
      os.remove(py)
      assert.matches("^python says hi TLSv1%.3\n$", out)
      -- Python closes its socket without a close_notify.
      H.assertErrorType(reactor.ConnectionLost, "without a TLS close_notify",
        false, r[1].value)
      wait(port:stopListening())
    end)

  it("answers a peer's close_notify with its own and closes cleanly",
    function()
      -- Python's unwrap() sends close_notify and waits for ours, which
      -- goes through the transport's write queue before it closes.
      local port, n, sf = echoServer()
      local py = pyfile(([[
import socket, ssl
ctx = ssl.create_default_context(cafile=%q)
with socket.create_connection(("127.0.0.1", %d)) as raw:
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.sendall(b"bye")
    print(s.recv(100).decode())
    s.unwrap()
    print("unwrapped")
]]):format(certs.ca, n))
      local p = spawn("timeout 10 python3 " .. py)
      local r = wait(sf.lost)
      local out = finish(p)
      os.remove(py)
      assert.equal("bye\nunwrapped\n", out)
      assert.is_truthy(r[1]:check(reactor.ConnectionDone))
      wait(port:stopListening())
    end)

  it("connects to openssl s_server", function()
    local p, n = peers.listening(("timeout 10 openssl s_server -accept " ..
      "127.0.0.1:0 -cert %s -key %s -naccept 1 -rev"):format(certs.server,
        certs.serverKey), "^ACCEPT [%d.]+:(%d+)")
    local cf = client({
      connectionMade = function(c) c.transport:write("hello\n") end,
      dataReceived = function(c) c.transport:loseConnection() end,
    })
    reactor.connectSSL("localhost", n, cf, trusting())
    assert.equal("olleh\n", wait(cf.done))
    finish(p)
  end)
end)

describe("spindle.ssl", function()
  describe("DefaultOpenSSLContextFactory", function()
    it("returns the same Context from each getContext()", function()
      local f = serverCF()
      assert.equal(f:getContext(), f:getContext())
      assert.equal("userdata", type(f:getContext()))
    end)

    it("raises ssl.Error for a missing key file", function()
      H.assertErrorType(ssl.Error, "no/such.key", pcall(
        ssl.DefaultOpenSSLContextFactory, "no/such.key", certs.server))
    end)

    it("raises ssl.Error when the key does not match the certificate",
      function()
        H.assertErrorType(ssl.Error, "key values mismatch", pcall(
          ssl.DefaultOpenSSLContextFactory, certs.clientKey, certs.server))
      end)

    it("locates a missing file at the caller's line, certificate first " ..
      "(as Twisted's cacheContext)", function()
        local line = debug.getinfo(1, "l").currentline + 2
        local ok, err = pcall(function()
          local _ = ssl.DefaultOpenSSLContextFactory("/nonexist.key",
            "/nonexist.crt")
        end)
        H.assertErrorType(ssl.Error, nil, ok, err)
        local src = debug.getinfo(1, "S").short_src
        assert.equal(1, err.message:find(src .. ":" .. line .. ": " ..
          "use_certificate_chain_file('/nonexist.crt'): No such file", 1,
          true), err.message)
        line = debug.getinfo(1, "l").currentline + 2
        ok, err = pcall(function()
          local _ = ssl.DefaultOpenSSLContextFactory:new("/nonexist.key",
            certs.server)
        end)
        H.assertErrorType(ssl.Error, "/nonexist.key", ok, err)
        assert.equal(1, err.message:find(src .. ":" .. line .. ": ", 1,
          true), err.message)
      end)
  end)

  describe("optionsForClientTLS", function()
    it("locates an unreadable trustRoot at the caller's line", function()
      local line = debug.getinfo(1, "l").currentline + 2
      local ok, err = pcall(function()
        local _ = ssl.optionsForClientTLS("h", {trustRoot = "/nonexist.crt"})
      end)
      H.assertErrorType(ssl.Error, nil, ok, err)
      assert.equal(1, err.message:find(debug.getinfo(1, "S").short_src ..
        ":" .. line .. ": load_verify_locations('/nonexist.crt')", 1, true),
        err.message)
    end)
  end)

  describe("ClientContextFactory", function()
    it("makes a new Context from self.method each time", function()
      local f = ssl.ClientContextFactory()
      assert.are_not.equal(f:getContext(), f:getContext())
      local Sub = ssl.ClientContextFactory:extend({method = ssl.TLSv1_3_METHOD})
      assert.equal("userdata", type(Sub():getContext()))
    end)
  end)

  describe("methods", function()
    it("refuses the insecure methods with ssl.Error saying what to use",
      function()
        for _, name in ipairs({"SSLv3_METHOD", "TLSv1_METHOD",
            "TLSv1_1_METHOD"}) do
          H.assertErrorType(ssl.Error, "use ssl.TLS_METHOD",
            pcall(function() return ssl[name] end))
        end
        assert.equal(ssl.TLS_METHOD, ssl.SSLv23_METHOD)
      end)

    it("pins TLS 1.2 with TLSv1_2_METHOD and refuses a TLS 1.3-only peer",
      function()
        local port, n, sf = echoServer(ssl.DefaultOpenSSLContextFactory(
          certs.serverKey, certs.server, ssl.TLSv1_2_METHOD))
        local version
        local cf = client({
          connectionMade = function(p) p.transport:write("x") end,
          dataReceived = function(p)
            version = p.transport:getHandle():get_protocol_version_name()
            p.transport:loseConnection()
          end,
        })
        reactor.connectSSL("127.0.0.1", n, cf, trusting())
        wait(cf.done)
        assert.equal("TLSv1.2", version)
        local Only13 = ssl.ClientContextFactory:extend({
          method = ssl.TLSv1_3_METHOD})
        local cf2 = client()
        reactor.connectSSL("127.0.0.1", n, cf2, Only13)
        wait(cf2.done)
        H.assertErrorType(ssl.Error, "", false, cf2.reason.value)
        wait(sf.lost)
        wait(port:stopListening())
      end)
  end)

  describe("CertificateOptions", function()
    it("verifies clients, negotiates ALPN and honours minimumVersion",
      function()
        local opts = ssl.CertificateOptions({
          privateKey = certs.serverKey, certificate = certs.server,
          verify = true, caCerts = {certs.ca},
          acceptableProtocols = {"h2", "spdy/3", "http/1.1"},
          minimumVersion = "TLSv1_3",
        })
        assert.equal(opts:getContext(), opts:getContext())
        local port, n = echoServer(opts)
        local proto, version
        local cf = client({
          connectionMade = function(p) p.transport:write("alpn") end,
          dataReceived = function(p)
            proto = p.transport:getNegotiatedProtocol()
            version = p.transport:getHandle():get_protocol_version_name()
            p.transport:loseConnection()
          end,
        })
        reactor.connectSSL("127.0.0.1", n, cf, trusting("localhost", {
          acceptableProtocols = {"http/1.1", "h2"},
          clientCertificate = {certificate = certs.client,
            privateKey = certs.clientKey}}))
        assert.equal("alpn", wait(cf.done))
        assert.equal("h2", proto)
        assert.equal("TLSv1.3", version)
        -- Without a client certificate the server refuses.
        local cf2 = client()
        reactor.connectSSL("127.0.0.1", n, cf2, trusting())
        wait(cf2.done)
        assert.is_truthy(cf2.reason:check(ssl.Error), tostring(cf2.reason))
        wait(port:stopListening())
      end)

    it("takes PEM text and X509 objects instead of paths", function()
      local function slurp(path)
        local f = assert(io.open(path))
        local text = f:read("a")
        f:close()
        return text
      end
      local opts = ssl.CertificateOptions({
        privateKey = slurp(certs.serverKey),
        certificate = ssl.load_certificate(slurp(certs.server)),
        verify = true, caCerts = slurp(certs.ca),
      })
      local port, n = echoServer(opts)
      local cf = client({
        connectionMade = function(p) p.transport:write("pem") end,
        dataReceived = function(p) p.transport:loseConnection() end,
      })
      reactor.connectSSL("127.0.0.1", n, cf, ssl.optionsForClientTLS(
        "localhost", {trustRoot = slurp(certs.ca), clientCertificate = {
          certificate = slurp(certs.client),
          privateKey = slurp(certs.clientKey)}}))
      assert.equal("pem", wait(cf.done))
      wait(port:stopListening())
    end)

    it("refuses a minimumVersion below TLS 1.2", function()
      H.assertErrorType(ssl.Error, "TLS 1.2", pcall(ssl.CertificateOptions,
        {minimumVersion = "TLSv1_1"}))
    end)
  end)

  describe("optionsForClientTLS", function()
    it("checks its arguments and reads the trust root at once", function()
      assert.has_error(function() ssl.optionsForClientTLS(nil) end,
        "bad argument #1 to 'optionsForClientTLS' (hostname expected, " ..
        "got nil)")
      H.assertErrorType(ssl.Error, "missing.pem", pcall(
        ssl.optionsForClientTLS, "localhost", {trustRoot = "missing.pem"}))
    end)
  end)

  describe("Context", function()
    it("raises ssl.Error naming the OpenSSL reason", function()
      local ctx = ssl.Context(ssl.TLS_METHOD)
      H.assertErrorType(ssl.Error, "No such file", pcall(
        ctx.use_certificate_file, ctx, "/nonexistent.crt"))
      H.assertErrorType(ssl.Error, "no cipher match", pcall(
        ctx.set_cipher_list, ctx, "NOT-A-CIPHER"))
      H.assertErrorType(ssl.Error, "check_privatekey", pcall(
        ctx.check_privatekey, ctx))
      assert.is_number(ctx:set_options(ssl.OP_NO_COMPRESSION))
      ctx:set_verify(ssl.VERIFY_PEER)
      assert.equal(ssl.VERIFY_PEER, ctx:get_verify_mode())
      assert.has_error(function() ctx:set_verify(ssl.VERIFY_PEER, 42) end)
    end)
  end)

  describe("X509", function()
    it("answers subject, issuer, serial, digest and dates", function()
      local x = ssl.load_certificate_file(certs.server)
      local subject = x:get_subject()
      assert.equal("localhost", subject.CN)
      assert.equal("spindle", subject.O)
      assert.equal("CN", subject.C)
      assert.equal("/C=CN/O=spindle/CN=localhost", tostring(subject))
      assert.equal("/C=CN/O=spindle/OU=tests/CN=spindle test CA",
        tostring(x:get_issuer()))
      local fp = io.popen("openssl x509 -noout -fingerprint -sha256 -in " ..
        certs.server):read("a"):match("=(%S+)")
      assert.equal(fp, x:digest("sha256"))
      local serial = io.popen("openssl x509 -noout -serial -in " ..
        certs.server):read("a"):match("=(%x+)")
      local s = x:get_serial_number()
      assert.is_truthy(math.type(s) == "integer" or s:match("^%d+$"))
      assert.is_true(#serial > 0)
      assert.matches("^%d%d%d%d%d%d%d%d%d%d%d%d%d%dZ$", x:get_notBefore())
      assert.is_true(x:get_notAfter() > x:get_notBefore())
      assert.is_false(x:has_expired())
      H.assertErrorType(ssl.Error, "unknown digest", pcall(x.digest, x,
        "nope"))
      assert.matches("^%-%-%-%-%-BEGIN CERTIFICATE", x:to_pem())
    end)
  end)
end)

describe("scripts/tls_*.lua", function()
  local function run(cmd)
    return spawn("timeout 10 " .. H.SPINDLE .. " " .. cmd)
  end
  local echoed = "receive: Hello, world!\nreceive: What a fine day it is.\n" ..
    "receive: Bye-bye!\nconnection lost: Connection was closed cleanly.\n"

  it("tls_echo_client.lua talks to tls_echo_server.lua --once; both exit",
    function()
      local srv = run("scripts/tls_echo_server.lua 0 --once --timeout 8 " ..
        "--certs " .. certs.dir)
      local n = srv:read("l"):match(":(%d+)$")
      local out = finish(run("scripts/tls_echo_client.lua 127.0.0.1 " .. n))
      assert.equal(echoed, out)
      assert.equal("", finish(srv))
    end)

  it("tls_client_cert_client.lua authenticates to " ..
    "tls_client_cert_server.lua, whose callback prints each certificate",
    function()
      local srv = run("scripts/tls_client_cert_server.lua 0 --once " ..
        "--timeout 8 --certs " .. certs.dir)
      local n = srv:read("l"):match(":(%d+)$")
      local out = finish(run("scripts/tls_client_cert_client.lua localhost " ..
        n .. " --certs " .. certs.dir))
      assert.equal(echoed, out)
      local ca = "/C=CN/O=spindle/OU=tests/CN=spindle test CA"
      assert.equal(
        "_verify(on=1)\n" ..
        "subject: <X509Name object '" .. ca .. "'>\n" ..
        "issuer: <X509Name object '" .. ca .. "'>\n" ..
        "errnum 0, errdepth 1\n" ..
        "_verify(on=1)\n" ..
        "subject: <X509Name object " ..
          "'/C=CN/O=spindle/OU=clients/CN=spindle client'>\n" ..
        "issuer: <X509Name object '" .. ca .. "'>\n" ..
        "errnum 0, errdepth 0\n", finish(srv))
    end)

  it("tls_client_cert_server.lua refuses tls_echo_client.lua, which has " ..
    "no certificate", function()
      local srv = run("scripts/tls_client_cert_server.lua 0 --once " ..
        "--timeout 8 --certs " .. certs.dir)
      local n = srv:read("l"):match(":(%d+)$")
      local out = finish(run("scripts/tls_echo_client.lua 127.0.0.1 " .. n))
      assert.matches("^connection lost: TLS connection failed: .*" ..
        "certificate required", out)
      assert.equal("", finish(srv))
    end)
end)

describe("endpoints ssl: and tls:", function()
  local endpoints = require("spindle.endpoints")

  it("listen with ssl: and connect with tls: and ssl:", function()
    local S = protocol.Protocol:extend({})
    function S:dataReceived(d) self.transport:write(d) end
    local server = endpoints.serverFromString(reactor, ("ssl:0:privateKey=" ..
      "%s:certKey=%s:interface=127.0.0.1"):format(certs.serverKey,
        certs.server))
    assert.is_true(endpoints.SSL4ServerEndpoint:isinstance(server))
    local port = wait(server:listen(protocol.Factory.forProtocol(S)))
    local n = port:getHost().port
    for _, desc in ipairs({
      ("tls:localhost:%d:trustRoots=%s"):format(n, certs.ca),
      ("ssl:host=127.0.0.1:port=%d"):format(n),
      ("ssl:host=localhost:port=%d:caCerts=%s:certKey=%s:privateKey=%s")
        :format(n, certs.ca, certs.client, certs.clientKey),
    }) do
      local ep = endpoints.clientFromString(reactor, desc)
      assert.is_true(endpoints.SSL4ClientEndpoint:isinstance(ep) or
        endpoints._WrapperEndpoint:isinstance(ep))
      local cf = client({
        connectionMade = function(p) p.transport:write(desc) end,
        dataReceived = function(p) p.transport:loseConnection() end,
      })
      wait(ep:connect(cf))
      assert.equal(desc, wait(cf.done))
    end
    wait(port:stopListening())
  end)

  it("tls: verifies the server's certificate", function()
    local port, n = echoServer(
      ssl.DefaultOpenSSLContextFactory(certs.badKey, certs.bad))
    local ep = endpoints.clientFromString(reactor,
      ("tls:host=localhost:port=%d:trustRoots=%s"):format(n, certs.ca))
    local cf = client()
    wait(ep:connect(cf))
    wait(cf.done)
    H.assertErrorType(ssl.VerifyError, "certificate verify failed", false,
      cf.reason.value)
    wait(port:stopListening())
  end)

  it("rejects ssl: without privateKey and a half client certificate",
    function()
      assert.has_error(function()
        endpoints.serverFromString(reactor, "ssl:0")
      end, 'missing privateKey in "ssl:0"')
      assert.has_error(function()
        endpoints.clientFromString(reactor, "tls:h:1:certificate=c.pem")
      end, "a client certificate needs both its certificate and " ..
        'privateKey in "tls:h:1:certificate=c.pem"')
    end)
end)
