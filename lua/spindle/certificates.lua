--- spindle.certificates: twisted.internet.ssl's certificate objects,
-- re-exported by spindle.ssl: Certificate, PrivateCertificate, KeyPair,
-- PublicKey, DistinguishedName.
--
--   local pem = io.open("server.pem"):read("a")
--   local cert = ssl.PrivateCertificate.loadPEM(pem)
--   reactor.listenSSL(8443, f, cert:options(caCert))  -- mutual TLS
--   local kp = ssl.KeyPair.generate()
--   local ca = kp:selfSignedCert(1, {commonName = "my CA"})
--
-- Keys are kept as PEM text (KeyPair.pem: PKCS#8), which every spindle.ssl
-- function accepts; certificates are the X509 objects of spindle._ssl
-- (Certificate.original). X509 objects, such as
-- transport:getPeerCertificate() returns, also answer Certificate's
-- methods (getSubject, getIssuer, digest, dumpPEM, ...): Twisted returns
-- pyOpenSSL's X509 there and its users wrap it in a Certificate, which
-- spindle spares them (Certificate.peerFromTransport(t) gives a real one).
--
-- Deviations from Twisted: Certificate.load/dump know PEM, and dump also
-- DER (FILETYPE_ASN1); certificateRequest returns a table (the public key
-- and the name) rather than a DER request, which only
-- signCertificateRequest reads; keys are RSA (TYPE_RSA, 2048 bits by
-- default) or P-256 (TYPE_EC), not DSA.
local Object = require("spindle.class").Object
local C = require("spindle._ssl")
local K = require("spindle._sslkeys")

local M = {}

M.TYPE_RSA = "RSA"
M.TYPE_EC = "EC"

-- Twisted's DistinguishedName names and OpenSSL's short ones.
local longNames = {
  commonName = "CN", organizationName = "O",
  organizationalUnitName = "OU", countryName = "C",
  stateOrProvinceName = "ST", localityName = "L", emailAddress =
  "emailAddress",
}
local shortToLong = {}
for long, short in pairs(longNames) do shortToLong[short] = long end
-- The order names are written in when given as a map.
local nameOrder = {"countryName", "stateOrProvinceName", "localityName",
  "organizationName", "organizationalUnitName", "commonName", "emailAddress"}

---------------------------------------------------------------------------
-- DistinguishedName

--- DistinguishedName{commonName = ..., organizationName = ..., ...}: a
-- certificate's subject or issuer. Fields by Twisted's long names
-- (commonName) and by the short ones (CN, O, OU, C, ST, L);
-- dn:getComponents() gives {{short, value}, ...} in certificate order;
-- tostring gives "/C=../CN=..". twisted.internet.ssl.DistinguishedName.
local DistinguishedName = Object:extend({__name = "DistinguishedName"})

function DistinguishedName:__init(fields)
  rawset(self, "_components", {})
  if fields == nil then return end
  if type(fields) ~= "table" then
    error(("bad argument #1 to 'DistinguishedName' (table expected, got %s)")
      :format(type(fields)), 3)
  end
  if #fields > 0 then -- a list of {short, value}
    for _, kv in ipairs(fields) do self:_add(kv[1], kv[2]) end
    return
  end
  for _, long in ipairs(nameOrder) do
    local v = fields[long] or fields[longNames[long]]
    if v ~= nil then self:_add(longNames[long], v) end
  end
  for k in pairs(fields) do
    if longNames[k] == nil and shortToLong[k] == nil then
      error(("unknown distinguished name field '%s'"):format(tostring(k)), 3)
    end
  end
end

function DistinguishedName:_add(short, value)
  short = longNames[short] or short
  local comps = rawget(self, "_components")
  comps[#comps + 1] = {short, tostring(value)}
  if rawget(self, short) == nil then
    rawset(self, short, tostring(value))
    if shortToLong[short] then
      rawset(self, shortToLong[short], tostring(value))
    end
  end
end

--- dn:getComponents() -> list of {shortName, value} pairs ({"CN",
-- "example.com"}), in the certificate's order (names may repeat).
-- twisted ssl.DistinguishedName.getComponents.
function DistinguishedName:getComponents()
  return rawget(self, "_components")
end

--- dn:inspect() -> lines "     Common Name: x", as Twisted's.
function DistinguishedName:inspect()
  local out = {}
  for _, kv in ipairs(rawget(self, "_components")) do
    out[#out + 1] = ("%s: %s"):format(shortToLong[kv[1]] or kv[1], kv[2])
  end
  return table.concat(out, "\n")
end

function DistinguishedName:__tostring()
  local out = {}
  for _, kv in ipairs(rawget(self, "_components")) do
    out[#out + 1] = "/" .. kv[1] .. "=" .. kv[2]
  end
  return table.concat(out)
end

function DistinguishedName.__eq(a, b)
  return tostring(a) == tostring(b)
end

local function dnFromX509Name(name)
  local dn = DistinguishedName()
  for _, kv in ipairs(name:get_components()) do dn:_add(kv[1], kv[2]) end
  return dn
end

local function toDN(x)
  if DistinguishedName:isinstance(x) then return x end
  return DistinguishedName(x)
end

---------------------------------------------------------------------------
-- PublicKey, KeyPair

--- PublicKey(pem): the public half of a key (PEM text of it or of the
-- private key). pk.pem; pk:matches(other) (a PublicKey, KeyPair or
-- Certificate). twisted ssl.PublicKey.
local PublicKey = Object:extend({__name = "PublicKey"})

function PublicKey:__init(pem)
  self.pem = K.public(pem)
  self.original = self.pem
end

--- pk:matches(other) -> boolean: other (a PublicKey, KeyPair or
-- Certificate) has the same public key. twisted ssl.PublicKey.matches.
function PublicKey:matches(other)
  return self.pem == other:getPublicKey().pem
end

--- pk:getPublicKey() -> pk itself (so matches takes any key holder).
function PublicKey:getPublicKey()
  return self
end

--- KeyPair: a private key (PEM text in kp.pem, also kp.original).
-- twisted.internet.ssl.KeyPair.
local KeyPair = Object:extend({__name = "KeyPair"})

function KeyPair:__init(pem)
  if type(pem) ~= "string" then
    error(("bad argument #1 to 'KeyPair' (string expected, got %s)"):format(
      type(pem)), 3)
  end
  local key = pem:match("%-%-%-%-%-BEGIN [%u ]*PRIVATE KEY%-%-%-%-%-.-" ..
    "%-%-%-%-%-END [%u ]*PRIVATE KEY%-%-%-%-%-")
  if key == nil then
    error(require("spindle.failure").builtinErrorTypes("ssl").Error(
      "KeyPair: no PEM private key in the data"), 3)
  end
  K.public(key) -- raises ssl.Error if OpenSSL cannot read it
  self.pem = key .. "\n"
  self.original = self.pem
end

-- Calls as Class.f(...) and Class:f(...) both work.
local function shift(cls, ...)
  if type(cls) == "table" and rawget(cls, "__index") == cls then
    return ...
  end
  return cls, ...
end

--- KeyPair.generate([kind=TYPE_RSA][, size=2048]) -> a new KeyPair.
function KeyPair.generate(...)
  local kind, size = shift(...)
  return KeyPair(K.generate(kind or M.TYPE_RSA, size or 2048))
end

--- KeyPair.load(data[, format]) -> KeyPair from PEM text.
function KeyPair.load(...)
  local data, format = shift(...)
  if format ~= nil and format ~= C.FILETYPE_PEM then
    error("KeyPair.load: only PEM (FILETYPE_PEM) is supported", 2)
  end
  return KeyPair(data)
end

--- kp:dump([format]) -> the PEM text.
function KeyPair:dump()
  return self.pem
end

--- kp:getPublicKey() -> PublicKey of this private key. Raises ssl.Error
-- when OpenSSL cannot read the key. twisted ssl.KeyPair (PublicKey).
function KeyPair:getPublicKey()
  return PublicKey(self.pem)
end

--- kp:certificateRequest(dn) -> a request for signCertificateRequest:
-- {publicKey = PEM, subject = DistinguishedName} (Twisted gives DER).
function KeyPair:certificateRequest(dn)
  return {publicKey = K.public(self.pem), subject = toDN(dn)}
end

-- Number of seconds a certificate is valid for by default (Twisted: one
-- year, 60 * 60 * 24 * 365).
local YEAR = 60 * 60 * 24 * 365

--- kp:signCertificateRequest(issuerDN, request, verifyDNCallback,
-- serialNumber[, secondsToExpiry=1 year][, digestAlgorithm="sha256"]
-- [, extra]) -> Certificate of request's key and name, signed by kp as
-- issuerDN. verifyDNCallback(dn) must return true (or a Deferred is not
-- supported: a plain value) to sign. extra = {isCA = bool,
-- subjectAltName = "DNS:localhost,IP:127.0.0.1"}.
-- twisted KeyPair.signCertificateRequest.
function KeyPair:signCertificateRequest(issuerDN, request, verifyDNCallback,
    serialNumber, secondsToExpiry, _, extra)
  if verifyDNCallback ~= nil and not verifyDNCallback(request.subject) then
    error(require("spindle.failure").builtinErrorTypes("ssl").Error(
      "signCertificateRequest: the request's name was refused"), 2)
  end
  extra = extra or {}
  local x = K.issue(request.publicKey, request.subject:getComponents(),
    self.pem, toDN(issuerDN):getComponents(), serialNumber or 1,
    math.floor(secondsToExpiry or YEAR), extra.isCA or false,
    extra.subjectAltName)
  return M.Certificate(x)
end

--- kp:newCertificate(request[, serial]) and kp:selfSignedCert(serial, dn
-- [, extra]) -> PrivateCertificate certified by its own key (isCA by
-- default: a root to sign others with). twisted KeyPair.selfSignedCert.
function KeyPair:selfSignedCert(serialNumber, dn, extra)
  dn = toDN(dn)
  extra = extra or {}
  if extra.isCA == nil then extra.isCA = true end
  local cert = self:signCertificateRequest(dn, self:certificateRequest(dn),
    nil, serialNumber, nil, nil, extra)
  return M.PrivateCertificate.fromCertificateAndKeyPair(cert, self)
end

function KeyPair:__tostring()
  return "<KeyPair>"
end

---------------------------------------------------------------------------
-- Certificate

--- Certificate(x509): a certificate (x509 an X509 object, the field
-- original). twisted.internet.ssl.Certificate.
local Certificate = Object:extend({__name = "Certificate"})

function Certificate:__init(x509)
  if type(x509) ~= "userdata" then
    error(("bad argument #1 to 'Certificate' (X509 expected, got %s)")
      :format(type(x509)), 3)
  end
  self.original = x509
end

--- Certificate.loadPEM(data) -> Certificate of the first certificate in
-- PEM text data (a string). Raises ssl.Error when data holds none.
-- twisted ssl.Certificate.loadPEM.
function Certificate.loadPEM(...)
  local cls, data = ...
  if type(cls) == "string" then cls, data = Certificate, cls end
  return cls(C.load_certificate(data))
end

--- Certificate.load(data[, format=FILETYPE_PEM]) -> Certificate, as
-- loadPEM. Raises an error for any other format, ssl.Error when data
-- holds no certificate. twisted ssl.Certificate.load.
function Certificate.load(...)
  local cls, data, format = ...
  if type(cls) == "string" then cls, data, format = Certificate, cls, data end
  if format ~= nil and format ~= C.FILETYPE_PEM then
    error("Certificate.load: only PEM (FILETYPE_PEM) is supported", 2)
  end
  return cls(C.load_certificate(data))
end

--- Certificate.peerFromTransport(t) / hostFromTransport(t) ->
-- Certificate of the peer (nil before the handshake, or none sent).
function Certificate.peerFromTransport(...)
  local t = select(select("#", ...), ...)
  local x = t:getPeerCertificate()
  if x == nil then return nil end
  if Certificate:isinstance(x) then return x end
  return Certificate(x)
end

--- c:getSubject() -> DistinguishedName of the certificate's subject.
-- twisted ssl.Certificate.getSubject.
function Certificate:getSubject()
  return dnFromX509Name(self.original:get_subject())
end

--- c:getIssuer() -> DistinguishedName of the certificate's issuer.
-- twisted ssl.Certificate.getIssuer.
function Certificate:getIssuer()
  return dnFromX509Name(self.original:get_issuer())
end

--- c:digest([method="md5"]) -> "AB:CD:..." (hex pairs, colons).
function Certificate:digest(method)
  return self.original:digest(method or "md5")
end

--- c:serialNumber() -> integer (or decimal string when huge).
function Certificate:serialNumber()
  return self.original:get_serial_number()
end

--- c:dumpPEM() -> the certificate as PEM text. twisted
-- ssl.Certificate.dumpPEM.
function Certificate:dumpPEM()
  return self.original:to_pem()
end

--- c:dump([format=FILETYPE_PEM]) -> PEM text, or the DER bytes (a
-- binary string) with ssl.FILETYPE_ASN1. twisted ssl.Certificate.dump.
function Certificate:dump(format)
  if format == C.FILETYPE_ASN1 then return K.dump_der(self.original) end
  return self.original:to_pem()
end

--- c:getPublicKey() -> PublicKey of the certified key.
function Certificate:getPublicKey()
  return PublicKey(K.pubkey_of(self.original))
end

--- c:matchesKey(key) -> boolean: key (a KeyPair or PublicKey) is this
-- certificate's key.
function Certificate:matchesKey(key)
  return K.matches(self.original, key.pem)
end

--- c:inspect() -> a few lines: subject, issuer, serial, digest.
function Certificate:inspect()
  return table.concat({
    "Certificate For Subject:", self:getSubject():inspect(),
    "", "Issuer:", self:getIssuer():inspect(),
    "", "Serial Number: " .. tostring(self:serialNumber()),
    "Digest: " .. self:digest("sha256"),
  }, "\n")
end

function Certificate.__eq(a, b)
  return a.original:to_pem() == b.original:to_pem()
end

function Certificate:__tostring()
  return ("<%s Subject=%s Issuer=%s>"):format(getmetatable(self).__name,
    tostring(self:getSubject()), tostring(self:getIssuer()))
end

-- Certificate options take a list of authorities.
local function authorities(...)
  local list = {}
  for i = 1, select("#", ...) do
    local a = select(i, ...)
    list[#list + 1] = a.original or a
  end
  return list
end

--- c:options(...) -> CertificateOptions trusting the given Certificates
-- as authorities (verifying peers), without a key of its own.
function Certificate:options(...)
  local ssl = require("spindle.ssl")
  local cas = authorities(...)
  if #cas == 0 then return ssl.CertificateOptions{} end
  return ssl.CertificateOptions{verify = true, caCerts = cas,
    requireCertificate = true}
end

---------------------------------------------------------------------------
-- PrivateCertificate

--- PrivateCertificate: a Certificate with its KeyPair (field privateKey).
-- twisted.internet.ssl.PrivateCertificate.
local PrivateCertificate = Certificate:extend({__name = "PrivateCertificate"})

--- PrivateCertificate.loadPEM(data) -> from PEM text holding both the
-- certificate and its private key (as Twisted's server.pem).
function PrivateCertificate.loadPEM(...)
  local cls, data = ...
  if type(cls) == "string" then cls, data = PrivateCertificate, cls end
  local c = cls(C.load_certificate(data))
  return c:_setPrivateKey(KeyPair(data))
end

--- PrivateCertificate.load(data, privateKey[, format]) -> from a
-- certificate's PEM text and a KeyPair.
function PrivateCertificate.load(...)
  local cls, data, key = ...
  if type(cls) == "string" then
    cls, data, key = PrivateCertificate, cls, data
  end
  return cls(C.load_certificate(data)):_setPrivateKey(key)
end

--- PrivateCertificate.fromCertificateAndKeyPair(cert, keyPair).
function PrivateCertificate.fromCertificateAndKeyPair(...)
  local cls, cert, key = ...
  if Certificate:isinstance(cls) then
    cls, cert, key = PrivateCertificate, cls, cert
  end
  return cls(cert.original):_setPrivateKey(key)
end

function PrivateCertificate:_setPrivateKey(key)
  if not K.matches(self.original, key.pem) then
    error(require("spindle.failure").builtinErrorTypes("ssl").Error(
      "PrivateCertificate: the private key does not match the certificate"),
      3)
  end
  self.privateKey = key
  return self
end

--- pc:dumpPEM() -> the key's PEM text followed by the certificate's.
function PrivateCertificate:dumpPEM()
  return self.privateKey:dump() .. self.original:to_pem()
end

--- pc:options(...) -> CertificateOptions presenting this certificate
-- and key; given authority Certificates, it also verifies peers against
-- them and (as a server) requires a client certificate: one call makes
-- either side of mutual TLS. twisted PrivateCertificate.options.
function PrivateCertificate:options(...)
  local ssl = require("spindle.ssl")
  local cas = authorities(...)
  local o = {privateKey = self.privateKey.pem, certificate = self.original}
  if #cas > 0 then
    o.verify, o.caCerts, o.requireCertificate = true, cas, true
  end
  return ssl.CertificateOptions(o)
end

--- pc:signCertificateRequest(request, verifyDNCallback, serialNumber
-- [, secondsToExpiry][, digest][, extra]) -> Certificate signed by this
-- certificate's key as its subject. twisted
-- PrivateCertificate.signCertificateRequest.
function PrivateCertificate:signCertificateRequest(request, verify, serial,
    seconds, digest, extra)
  return self.privateKey:signCertificateRequest(self:getSubject(), request,
    verify, serial, seconds, digest, extra)
end

--- pc:signRequestObject, newCertificate: see KeyPair.
function PrivateCertificate:newCertificate(request, serial, extra)
  return self:signCertificateRequest(request, nil, serial, nil, nil, extra)
end

---------------------------------------------------------------------------
-- X509 objects answer Certificate's methods.

local function addCertificateMethods()
  local methods = K.x509_methods()
  local plainDigest = methods.digest
  for _, name in ipairs({"getSubject", "getIssuer", "serialNumber",
      "dumpPEM", "dump", "inspect", "matchesKey", "getPublicKey",
      "options"}) do
    local f = Certificate[name]
    methods[name] = function(self, ...)
      return f(Certificate(self), ...)
    end
  end
  methods.digest = function(self, method)
    return plainDigest(self, method or "md5")
  end
end
addCertificateMethods()

---------------------------------------------------------------------------
-- spindle.ssl's entry points take these objects too.

-- A trust root given as Certificates becomes what spindle.ssl reads: an
-- X509 or a list of them (paths and PEM text pass through).
local function rawTrust(t)
  if type(t) ~= "table" then return t end
  if Certificate:isinstance(t) then return {t.original} end
  local out = {}
  for i, v in ipairs(t) do
    out[i] = Certificate:isinstance(v) and v.original or v
  end
  return out
end

local function isCertificate(x)
  return Certificate:isinstance(x) or type(x) == "userdata"
end

--- M.install(ssl): add the classes to spindle.ssl, and let
-- CertificateOptions{privateKey = KeyPair, certificate = Certificate,
-- trustRoot = Certificate(s), caCerts = Certificates} and
-- optionsForClientTLS(hostname, trustRoot[, clientCertificate]
-- [, acceptableProtocols]) (Twisted's positional form, trustRoot a
-- Certificate and clientCertificate a PrivateCertificate) work beside
-- the table forms. CertificateOptions' trustRoot turns on verify and,
-- for a server, requireCertificate, as Twisted's does.
function M.install(ssl)
  for _, name in ipairs({"DistinguishedName", "DN", "PublicKey", "KeyPair",
      "Certificate", "PrivateCertificate", "TYPE_RSA", "TYPE_EC"}) do
    ssl[name] = M[name]
  end
  local CO = ssl.CertificateOptions
  local init = CO.__init
  function CO:__init(opts)
    if type(opts) == "table" then
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      if KeyPair:isinstance(o.privateKey) then
        o.privateKey = o.privateKey.pem
      end
      if Certificate:isinstance(o.certificate) then
        o.certificate = o.certificate.original
      end
      if o.trustRoot ~= nil then
        o.caCerts = rawTrust(o.trustRoot)
        o.trustRoot = nil
        if o.verify == nil then o.verify = true end
        if o.requireCertificate == nil then o.requireCertificate = true end
      elseif o.caCerts ~= nil then
        o.caCerts = rawTrust(o.caCerts)
      end
      opts = o
    end
    return init(self, opts)
  end
  local optionsForClientTLS = ssl.optionsForClientTLS
  --- ssl.optionsForClientTLS(hostname[, options]) -> ClientTLSOptions, a
  -- context factory for connectSSL, startTLS or wrapClientTLS that
  -- verifies the server: its chain against the system's CA certificates
  -- (or options.trustRoot), its name against hostname (a DNS name or IP
  -- literal, also sent as SNI). options: {trustRoot, clientCertificate,
  -- acceptableProtocols}; trustRoot is a path to a PEM file of CA
  -- certificates, PEM text, an X509, a Certificate, a list of those, or
  -- ssl.trustRootFromCertificates(...) / ssl.platformTrust();
  -- clientCertificate is {certificate = path, privateKey = path} or a
  -- PrivateCertificate; acceptableProtocols a list of ALPN names. Twisted's
  -- positional form (hostname, trustRoot, clientCertificate,
  -- acceptableProtocols) works too when trustRoot is a Certificate, an
  -- X509 or a list, or nil. A mismatch fails the handshake with
  -- ssl.VerifyError naming the hostname. Raises a bad-argument error for a
  -- hostname that is not a string, ssl.Error for unreadable files.
  -- twisted.internet.ssl.optionsForClientTLS.
  ssl.optionsForClientTLS = function(hostname, opts, clientCertificate,
      acceptableProtocols)
    if isCertificate(opts) or (opts == nil and clientCertificate ~= nil) or
        (type(opts) == "table" and opts[1] ~= nil) then
      opts = {trustRoot = opts, clientCertificate = clientCertificate,
        acceptableProtocols = acceptableProtocols}
    end
    if type(opts) == "table" then
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      o.trustRoot = rawTrust(o.trustRoot)
      local cc = o.clientCertificate
      if PrivateCertificate:isinstance(cc) then
        o.clientCertificate = {certificate = cc.original,
          privateKey = cc.privateKey.pem}
      end
      opts = o
    end
    return optionsForClientTLS(hostname, opts)
  end
end

M.DistinguishedName = DistinguishedName
M.DN = DistinguishedName
M.PublicKey = PublicKey
M.KeyPair = KeyPair
M.Certificate = Certificate
M.PrivateCertificate = PrivateCertificate

return M
