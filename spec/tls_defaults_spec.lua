-- TLS defaults a server gets without asking (issue 7, items 8 and 9):
-- Mozilla's "intermediate" suites and versions, and the server-side
-- handshake timeout; real TLS on loopback, openssl s_client as the peer.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local defer = require("spindle.defer")
local ssl = require("spindle.ssl")
local H = require("spec.support.helper")
local peers = require("spec.support.peers")
local certs = require("spec.support.certs")()

-- A TLS server whose `done` fires when a connection that sent "DONE" is
-- lost.
local function server(cf)
  local S = protocol.Protocol:extend({})
  local f = protocol.Factory.forProtocol(S)
  f.done = defer.Deferred()
  function S:dataReceived(d)
    if d:find("DONE", 1, true) then self.last = true end
  end
  function S:connectionLost()
    if self.last then f.done:callback(true) end
  end
  local port = reactor.listenSSL(0, f, cf, 50, "127.0.0.1")
  return port, port:getHost().port, f
end

-- A shell line trying one s_client handshake: prints "<name> ok" or
-- "<name> refused".
local function attempt(port, name, opts)
  return ("echo | timeout 10 openssl s_client -connect 127.0.0.1:%d %s " ..
    ">/dev/null 2>&1 && echo '%s ok' || echo '%s refused'"):format(port,
      opts, name, name)
end

-- Run the attempts in order, then a last connection saying DONE, while
-- the reactor runs; returns {name = "ok" | "refused"}.
local function scan(port, f, list)
  local lines = {}
  for _, a in ipairs(list) do lines[#lines + 1] = attempt(port, a[1], a[2]) end
  lines[#lines + 1] = ("printf DONE | timeout 10 openssl s_client " ..
    "-connect 127.0.0.1:%d -brief >/dev/null 2>&1"):format(port)
  local p = peers.spawn("(" .. table.concat(lines, "; ") .. ")")
  H.wait(f.done, 60)
  local out = {}
  for name, verdict in peers.finish(p):gmatch("(%S+) (%a+)\n") do
    out[name] = verdict
  end
  return out
end

describe("a default listenSSL server (ssl.DEFAULT_CIPHERS)", function()
  it("speaks TLS 1.2 with ECDHE AEAD suites and TLS 1.3 only: no CBC, " ..
    "no static RSA key exchange, nothing below TLS 1.2 (issue 7 item 9)",
    function()
      local port, n, f = server(ssl.DefaultOpenSSLContextFactory(
        certs.serverKey, certs.server))
      local old = "-cipher 'DEFAULT:@SECLEVEL=0'"
      local got = scan(n, f, {
        {"gcm128", "-tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256"},
        {"gcm256", "-tls1_2 -cipher ECDHE-ECDSA-AES256-GCM-SHA384"},
        {"chacha", "-tls1_2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305"},
        {"tls13", "-tls1_3"},
        {"cbc-sha", "-tls1_2 -cipher ECDHE-ECDSA-AES128-SHA"},
        {"cbc-sha256", "-tls1_2 -cipher ECDHE-ECDSA-AES128-SHA256"},
        {"cbc-sha384", "-tls1_2 -cipher ECDHE-ECDSA-AES256-SHA384"},
        {"rsa-gcm", "-tls1_2 -cipher AES128-GCM-SHA256"},
        {"3des", "-tls1_2 -cipher 'DES-CBC3-SHA:@SECLEVEL=0'"},
        {"tls11", "-tls1_1 " .. old},
        {"tls10", "-tls1 " .. old},
      })
      assert.same({gcm128 = "ok", gcm256 = "ok", chacha = "ok",
        tls13 = "ok", ["cbc-sha"] = "refused", ["cbc-sha256"] = "refused",
        ["cbc-sha384"] = "refused", ["rsa-gcm"] = "refused",
        ["3des"] = "refused", tls11 = "refused", tls10 = "refused"}, got)
      H.wait(port:stopListening())
    end)

  it("widens to what set_cipher_list or acceptableCiphers name", function()
    local opts = ssl.CertificateOptions({privateKey = certs.serverKey,
      certificate = certs.server,
      acceptableCiphers = ssl.DEFAULT_CIPHERS .. ":ECDHE-ECDSA-AES128-SHA"})
    local port, n, f = server(opts)
    local got = scan(n, f, {
      {"cbc-sha", "-tls1_2 -cipher ECDHE-ECDSA-AES128-SHA"},
      {"cbc-sha256", "-tls1_2 -cipher ECDHE-ECDSA-AES128-SHA256"},
      {"gcm128", "-tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256"},
    })
    assert.same({["cbc-sha"] = "ok", ["cbc-sha256"] = "refused",
      gcm128 = "ok"}, got)
    H.wait(port:stopListening())
  end)
end)

-- A TCP client that sends the first bytes of a ClientHello (a record
-- header announcing 512 bytes, then 100 of them) and waits; `lost`
-- fires when the server drops it.
local function halfHello()
  local P = protocol.Protocol:extend({})
  local cf = protocol.ClientFactory.forProtocol(P)
  cf.lost = defer.Deferred()
  function P:connectionMade()
    self.transport:write("\22\3\1\2\0" .. ("\1"):rep(100))
  end
  function P:connectionLost(reason) cf.lost:callback({reason}) end
  return cf
end

-- A TLS echo server counting lost connections: f.reasons, and f.waitLost
-- (n) -> Deferred fired once n connections were lost.
local function echo(cf, options)
  local S = protocol.Protocol:extend({})
  function S:dataReceived(d) self.transport:write(d) end
  local f = protocol.Factory.forProtocol(S)
  f.reasons = {}
  function S:connectionLost(reason)
    f.reasons[#f.reasons + 1] = reason
    if f.want and #f.reasons >= f.want.n and not f.want.d.called then
      f.want.d:callback(#f.reasons)
    end
  end
  function f.waitLost(n)
    f.want = {n = n, d = defer.Deferred()}
    if #f.reasons >= n then f.want.d:callback(#f.reasons) end
    return f.want.d
  end
  local port = reactor.listenSSL(0, f, cf, 1024, "127.0.0.1", options)
  return port, port:getHost().port, f
end

local function serverCF()
  return ssl.DefaultOpenSSLContextFactory(certs.serverKey, certs.server)
end

-- Resident set size of this process, bytes (Linux /proc).
local function rss()
  local fh = assert(io.open("/proc/self/statm"))
  local pages = fh:read("n") and fh:read("n")
  fh:close()
  return pages * 4096
end

describe("listenSSL's handshakeTimeout (issue 7 item 8)", function()
  it("loses a client that sends half a ClientHello with ssl.Error " ..
    "(listenSSL option)", function()
      local port, n, f = echo(serverCF(), {handshakeTimeout = 0.1})
      local cf = halfHello()
      reactor.connectTCP("127.0.0.1", n, cf)
      local clientReason = H.wait(cf.lost)[1]
      H.wait(f.waitLost(1))
      H.assertErrorType(ssl.Error, "TLS handshake timed out after 0.1 " ..
        "seconds", false, f.reasons[1].value)
      assert.equal("handshake timeout", f.reasons[1].value.reason)
      assert.is_truthy(clientReason:check(reactor.ConnectionDone),
        tostring(clientReason))
      H.wait(port:stopListening())
    end)

  it("takes the context factory's handshakeTimeout", function()
    local cf = ssl.CertificateOptions({privateKey = certs.serverKey,
      certificate = certs.server, handshakeTimeout = 0.1})
    local port, n, f = echo(cf)
    local c = halfHello()
    reactor.connectTCP("127.0.0.1", n, c)
    H.wait(c.lost)
    H.wait(f.waitLost(1))
    H.assertErrorType(ssl.Error, "timed out", false, f.reasons[1].value)
    H.wait(port:stopListening())
  end)

  it("does not touch a connection whose handshake completed", function()
    local port, n, f = echo(serverCF(), {handshakeTimeout = 0.1})
    local C = protocol.Protocol:extend({})
    local done = defer.Deferred()
    function C:handshakeCompleted()
      -- Write after the timeout would have fired.
      H.sleep(0.3):addCallback(function()
        self.transport:write("still here")
      end)
    end
    function C:dataReceived(d)
      self.transport:loseConnection()
      done:callback(d)
    end
    reactor.connectSSL("127.0.0.1", n, protocol.ClientFactory.forProtocol(C),
      ssl.optionsForClientTLS("localhost", {trustRoot = certs.ca}))
    assert.equal("still here", H.wait(done))
    H.wait(f.waitLost(1))
    assert.is_truthy(f.reasons[1]:check(reactor.ConnectionDone),
      tostring(f.reasons[1]))
    H.wait(port:stopListening())
  end)

  it("refuses a handshakeTimeout that is not a number above 0", function()
    local f = protocol.Factory.forProtocol(protocol.Protocol)
    for _, bad in ipairs({0, -1, "5", 0 / 0}) do
      assert.has_error(function()
        reactor.listenSSL(0, f, serverCF(), 50, "127.0.0.1",
          {handshakeTimeout = bad})
      end)
      local cf = serverCF()
      cf.handshakeTimeout = bad
      assert.has_error(function()
        reactor.listenSSL(0, f, cf, 50, "127.0.0.1")
      end)
    end
  end)

  it("names listenSSL and the argument through pcall", function()
    local f = protocol.Factory.forProtocol(protocol.Protocol)
    local msg = "handshakeTimeout must be a number of seconds above 0"
    assert.same({false, "bad argument #6 to 'listenSSL' (" .. msg .. ")"},
      {pcall(reactor.listenSSL, 0, f, serverCF(), 50, "127.0.0.1",
        {handshakeTimeout = -1})})
    local cf = serverCF()
    cf.handshakeTimeout = -1
    assert.same({false, "bad argument #3 to 'listenSSL' (" .. msg .. ")"},
      {pcall(reactor.listenSSL, 0, f, cf)})
    assert.same({false, "bad argument #3 to 'listenSSL' (context factory " ..
      "expected, got number)"}, {pcall(reactor.listenSSL, 0, f, 5)})
    assert.same({false, "bad argument #4 to 'connectSSL' (context " ..
      "factory expected, got number)"},
      {pcall(reactor.connectSSL, "127.0.0.1", 1, f, 5)})
    -- an interface that is not a string is argument #5
    local line = debug.getinfo(1, "l").currentline + 2
    local ok, err = pcall(function()
      reactor.listenSSL(0, f, serverCF(), 50, 5) end)
    assert.is_false(ok)
    assert.equal(debug.getinfo(1, "S").short_src .. ":" .. line ..
      ": bad argument #5 to 'listenSSL' (string expected, got number)", err)
  end)

  it("frees what 1000 stalled clients held", function()
    local port, n, f = echo(serverCF(), {handshakeTimeout = 0.05})
    local batch, rounds = 100, 10
    local before
    for round = 1, rounds do
      local lost = {}
      for i = 1, batch do
        local c = halfHello()
        reactor.connectTCP("127.0.0.1", n, c)
        lost[i] = c.lost
      end
      H.wait(defer.DeferredList(lost), 30)
      H.wait(f.waitLost(round * batch), 30)
      collectgarbage()
      if round == 1 then before = rss() end
    end
    assert.equal(rounds * batch, #f.reasons)
    for _, r in ipairs(f.reasons) do
      assert.is_truthy(r:check(ssl.Error), tostring(r))
    end
    -- Under ASan freed memory sits in quarantine, so RSS says nothing.
    if not H.SPINDLE:find("asan", 1, true) then
      local grown = rss() - before
      assert.is_true(grown < 8 * 1024 * 1024, ("RSS grew by %d bytes " ..
        "over %d stalled clients"):format(grown, (rounds - 1) * batch))
    end
    H.wait(port:stopListening())
  end)
end)
