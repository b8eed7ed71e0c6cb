--- spindle.ssl: TLS context factories, Context, X509 and constants, as
-- twisted.internet.ssl (with pyOpenSSL's Context and X509 underneath).
--
--   local ssl = require("spindle.ssl")
--   reactor.listenSSL(8443, factory,
--     ssl.DefaultOpenSSLContextFactory("server.key", "server.crt"))
--   reactor.connectSSL("localhost", 8443, cfactory,
--     ssl.optionsForClientTLS("localhost", {trustRoot = "ca.crt"}))
--
-- TLS 1.2 is the lowest version spoken anywhere; SSLv3_METHOD,
-- TLSv1_METHOD and TLSv1_1_METHOD raise ssl.Error when used (read).
-- Contexts, X509 objects and the verify callback are in C (runtime/ssl.c);
-- the TLS transport is runtime/tls.c.
local C = require("spindle._ssl")
local Object = require("spindle.class").Object
local check = require("spindle.check")
local failure = require("spindle.failure")

local M = {}
local getters = {}

local errors = failure.builtinErrorTypes("ssl")
M.Error = errors.Error
M.VerifyError = errors.VerifyError

for k, v in pairs(C) do
  if type(k) == "string" and k:sub(1, 1) ~= "_" then M[k] = v end
end

-- Reading an insecure method raises ssl.Error saying why and what to use
-- (so a program written for SSLv3 fails at the line that names it).
for _, name in ipairs({"SSLv3_METHOD", "TLSv1_METHOD", "TLSv1_1_METHOD"}) do
  local n = C["_" .. name]
  getters[name] = function()
    -- Context(n) raises the explanation.
    local ok, err = pcall(C.Context, n)
    if not ok then error(err, 2) end
    return n
  end
end

--- DefaultOpenSSLContextFactory(keyFile, certFile[, method]): a server's
-- context factory, from a PEM private key file and certificate file.
-- Its Context is made (and the files read) at once: a missing or bad
-- file raises ssl.Error here, its message starting with the caller's
-- "chunk:line: ". getContext() returns that same Context each
-- time, so changes made to it (set_verify, load_verify_locations) apply
-- to later connections. Setting f.handshakeTimeout (seconds) changes the
-- server-side handshake timeout of listenSSL (default 30).
-- twisted.internet.ssl.DefaultOpenSSLContextFactory.
local DefaultOpenSSLContextFactory = Object:extend({
  __name = "DefaultOpenSSLContextFactory",
  isClient = false,
})

function DefaultOpenSSLContextFactory:__init(keyFile, certFile, method)
  check.string(keyFile, 1, "DefaultOpenSSLContextFactory", 3)
  check.string(certFile, 2, "DefaultOpenSSLContextFactory", 3)
  self.privateKeyFileName = keyFile
  self.certificateFileName = certFile
  self.sslmethod = method or C.TLS_METHOD
  -- A file that cannot be read is the caller's: its ssl.Error gets the
  -- caller's position (level 3: __init is called by Class:new, which the
  -- user calls or the class's __call tail-calls), as an argument error.
  local ok, e = pcall(self.cacheContext, self)
  if not ok then error(check.locate(e, 3), 0) end
end

--- f:cacheContext(): make the Context now (twisted does it in __init__):
-- the certificate file is read first, then the key, as Twisted does.
function DefaultOpenSSLContextFactory:cacheContext()
  if self._context == nil then
    local ctx = C.Context(self.sslmethod)
    ctx:use_certificate_chain_file(self.certificateFileName)
    ctx:use_privatekey_file(self.privateKeyFileName)
    ctx:check_privatekey()
    self._context = ctx
  end
end

--- f:getContext() -> Context (the same one every time).
function DefaultOpenSSLContextFactory:getContext()
  return self._context
end

M.DefaultOpenSSLContextFactory = DefaultOpenSSLContextFactory

--- ClientContextFactory: a client's context factory; getContext() makes a
-- new Context from self.method (TLS_METHOD) with no verification of the
-- server, as Twisted's. Subclass it to add a client certificate:
--
--   local MyContext = ssl.ClientContextFactory:extend({})
--   function MyContext:getContext()
--     local ctx = ssl.ClientContextFactory.getContext(self)
--     ctx:use_certificate_file("client.crt")
--     ctx:use_privatekey_file("client.key")
--     return ctx
--   end
--
-- connectSSL takes an instance or the class itself.
-- twisted.internet.ssl.ClientContextFactory.
local ClientContextFactory = Object:extend({
  __name = "ClientContextFactory",
  isClient = true,
  method = C.TLS_METHOD,
})

--- ccf:getContext() -> a new Context for self.method (TLS_METHOD unless
-- set): no certificate, no verification. Override it to add either.
-- Raises ssl.Error for an insecure method. twisted
-- ssl.ClientContextFactory.getContext.
function ClientContextFactory:getContext()
  return C.Context(self.method or C.TLS_METHOD)
end

M.ClientContextFactory = ClientContextFactory

-- Turn "TLSv1_2", "TLSv1.2", "TLSv1_3", "TLSv1.3" or the TLS1_x_VERSION
-- numbers into a protocol version; older versions raise ssl.Error.
local function toVersion(v, what)
  if v == nil then return nil end
  if v == C.TLS1_2_VERSION or v == C.TLS1_3_VERSION then return v end
  local s = tostring(v):upper():gsub("%.", "_")
  if s == "TLSV1_2" then return C.TLS1_2_VERSION end
  if s == "TLSV1_3" then return C.TLS1_3_VERSION end
  if s == "SSLV3" or s == "TLSV1" or s == "TLSV1_0" or s == "TLSV1_1" then
    error(M.Error(what .. " " .. tostring(v) .. " is insecure and not " ..
      "supported; TLS 1.2 is the lowest version (use \"TLSv1_2\")."), 3)
  end
  error("bad " .. what .. " '" .. tostring(v) ..
    "' (\"TLSv1_2\" or \"TLSv1_3\" expected)", 3)
end

--- CertificateOptions{privateKey, certificate, verify, caCerts,
-- requireCertificate, acceptableProtocols, acceptableCiphers,
-- minimumVersion, maximumVersion, method, handshakeTimeout}: a context
-- factory for either side.
--   privateKey, certificate: PEM file paths (the certificate file may hold
--     the chain after it) or PEM text; certificate may be an X509.
--   verify: verify the peer's certificate against caCerts (a path, a list
--     of paths or of X509 objects); requireCertificate (default true when
--     verify) makes a server refuse clients without one.
--   acceptableProtocols: ALPN protocol names, most preferred first.
--   acceptableCiphers: the TLS 1.2 suites, an OpenSSL cipher string that
--     replaces ssl.DEFAULT_CIPHERS (Mozilla "intermediate": ECDHE with
--     AES-GCM or ChaCha20-Poly1305); the way to widen them.
--   minimumVersion / maximumVersion: "TLSv1_2" or "TLSv1_3".
--   handshakeTimeout: seconds a server-side handshake may take before the
--     connection is lost with ssl.Error (default 30; see listenSSL).
-- getContext() returns one Context, made on first use.
-- twisted.internet.ssl.CertificateOptions (paths instead of objects).
local CertificateOptions = Object:extend({__name = "CertificateOptions"})

function CertificateOptions:__init(opts)
  opts = check.optTable(opts, 1, "CertificateOptions", 3) or {}
  for k, v in pairs(opts) do self[k] = v end
  if (self.privateKey == nil) ~= (self.certificate == nil) then
    error("CertificateOptions: privateKey and certificate go together", 3)
  end
  if self.verify and self.caCerts == nil then
    error("CertificateOptions: verify = true needs caCerts", 3)
  end
  self._minimum = toVersion(self.minimumVersion, "minimumVersion")
  self._maximum = toVersion(self.maximumVersion, "maximumVersion")
end

local function isPEM(s)
  return type(s) == "string" and s:find("-----BEGIN", 1, true) ~= nil
end

-- Trust caCerts: a PEM file path, PEM text, an X509, or a list of them.
local function loadCAs(ctx, caCerts)
  if type(caCerts) ~= "table" then caCerts = {caCerts} end
  for _, ca in ipairs(caCerts) do
    if isPEM(ca) then ctx:add_ca(C.load_certificate(ca))
    elseif type(ca) == "string" then ctx:load_verify_locations(ca)
    else ctx:add_ca(ca) end
  end
end

-- Use certificate (a path to a PEM chain file, PEM text or an X509) and
-- privateKey (a path or PEM text), and check that they match.
local function useKeyPair(ctx, certificate, privateKey)
  if isPEM(certificate) then
    ctx:use_certificate(C.load_certificate(certificate))
  elseif type(certificate) == "string" then
    ctx:use_certificate_chain_file(certificate)
  else
    ctx:use_certificate(certificate)
  end
  if isPEM(privateKey) then ctx:use_privatekey(privateKey)
  else ctx:use_privatekey_file(privateKey) end
  ctx:check_privatekey()
end

function CertificateOptions:_makeContext()
  local ctx = C.Context(self.method or C.TLS_METHOD)
  if self._minimum then ctx:set_min_proto_version(self._minimum) end
  if self._maximum then ctx:set_max_proto_version(self._maximum) end
  if self.acceptableCiphers then
    ctx:set_cipher_list(self.acceptableCiphers)
  end
  if self.certificate then
    useKeyPair(ctx, self.certificate, self.privateKey)
  end
  if self.verify then
    loadCAs(ctx, self.caCerts)
    local mode = C.VERIFY_PEER
    if self.requireCertificate ~= false then
      mode = mode | C.VERIFY_FAIL_IF_NO_PEER_CERT
    end
    ctx:set_verify(mode)
  end
  if self.acceptableProtocols then
    ctx:set_alpn_protos(self.acceptableProtocols)
  end
  return ctx
end

--- o:getContext() -> Context (made once).
function CertificateOptions:getContext()
  if self._context == nil then self._context = self:_makeContext() end
  return self._context
end

M.CertificateOptions = CertificateOptions

--- optionsForClientTLS(hostname[, {trustRoot, clientCertificate,
-- acceptableProtocols}]) -> a client context factory that verifies the
-- server: its chain against the system's CA certificates (or trustRoot: a
-- PEM file of CA certificates, PEM text, an X509, or a list of those), and
-- its name against hostname (DNS name or IP literal; also sent as SNI). A
-- mismatch fails the handshake with ssl.VerifyError naming the hostname.
-- clientCertificate = {certificate = path, privateKey = path}.
-- twisted.internet.ssl.optionsForClientTLS.
local ClientTLSOptions = Object:extend({
  __name = "ClientTLSOptions",
  isClient = true,
})

--- opts:getContext() -> the Context (made on the first call, the same
-- one after) that verifies the peer as optionsForClientTLS describes.
-- Raises ssl.Error when the trust root or client certificate cannot be
-- loaded. twisted ssl.ClientTLSOptions (its _clientContextFactory).
function ClientTLSOptions:getContext()
  if self._context == nil then
    local o = self._options
    local ctx = C.Context(C.TLS_METHOD)
    if o.trustRoot ~= nil then loadCAs(ctx, o.trustRoot)
    else ctx:set_default_verify_paths() end
    ctx:set_verify(C.VERIFY_PEER)
    local cc = o.clientCertificate
    if cc ~= nil then useKeyPair(ctx, cc.certificate, cc.privateKey) end
    if o.acceptableProtocols then
      ctx:set_alpn_protos(o.acceptableProtocols)
    end
    self._context = ctx
  end
  return self._context
end

--- ssl.optionsForClientTLS(hostname[, {trustRoot, clientCertificate,
-- acceptableProtocols}]) -> ClientTLSOptions, as described above it;
-- spindle.certificates wraps it to take Twisted's objects too.
-- twisted.internet.ssl.optionsForClientTLS.
function M.optionsForClientTLS(hostname, opts)
  if type(hostname) ~= "string" or hostname == "" then
    check.typeError(1, "optionsForClientTLS", "hostname", hostname)
  end
  opts = check.optTable(opts, 2, "optionsForClientTLS") or {}
  local cc = opts.clientCertificate
  if cc ~= nil and (type(cc) ~= "table" or cc.certificate == nil
      or type(cc.privateKey) ~= "string") then
    check.argError(2, "optionsForClientTLS", "clientCertificate must be " ..
      "{certificate = path, privateKey = path}")
  end
  local o = ClientTLSOptions()
  o._hostname = hostname
  o._options = opts
  -- Read the files now, so that errors raise here, at the caller's line
  -- (spindle.certificates' wrapper tail-calls this function).
  local ok, e = pcall(o.getContext, o)
  if not ok then error(check.locate(e, 2), 0) end
  return o
end

--- platformTrust() -> nil: as a trustRoot, the system's CA certificates
-- (the default). twisted.internet.ssl.platformTrust.
function M.platformTrust()
  return nil
end

--- trustRootFromCertificates(list) -> list: X509 objects (or PEM paths)
-- to trust, as a trustRoot. twisted.internet.ssl.trustRootFromCertificates.
function M.trustRootFromCertificates(list)
  check.table(list, 1, "trustRootFromCertificates")
  return list
end

-- Certificate, PrivateCertificate, KeyPair, PublicKey, DistinguishedName
-- and their constants (spindle.certificates), with CertificateOptions and
-- optionsForClientTLS taking those objects too.
require("spindle.certificates").install(M)

return require("spindle._core").strict("ssl", M, getters)
