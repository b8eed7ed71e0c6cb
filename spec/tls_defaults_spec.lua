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
