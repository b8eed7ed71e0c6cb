--- spindle.endpoints: server and client endpoints, as
-- twisted.internet.endpoints: an endpoint knows where to listen or
-- connect; endpoint:listen(factory) gives a Deferred of the Port,
-- endpoint:connect(factory) a Deferred of the connected protocol.
--
--   local ep = endpoints.serverFromString(reactor,
--     "tcp:8080:interface=127.0.0.1")
--   ep:listen(factory):addCallback(function(port) ... end)
--   local cp = endpoints.clientFromString(reactor,
--     "tcp:host=127.0.0.1:port=8080")
--   cp:connect(factory):addCallback(function(proto) ... end)
--
-- Strings follow Twisted's syntax: "type:arg:key=value:...", with "\:"
-- for a colon inside a value. Types: tcp, tcp6, unix, ssl (servers and
-- clients) and tls (clients that verify the server's name).
local Object = require("spindle.class").Object
local protocol = require("spindle.protocol")
local defer = require("spindle.defer")
local check = require("spindle.check")

local M = {}

-- checkReactor(reactor, fname[, level]): level as check's, where
-- checkReactor is called (default 2: the caller of serverFromString...);
-- an endpoint's __init passes 3 (it is called by Class:new).
local function checkReactor(reactor, fname, level)
  if reactor == nil then
    check.typeError(1, fname, "reactor", nil, (level or 2) + 1)
  end
end

--- _WrappingFactory: the ClientFactory an endpoint's connect() hands to
-- the reactor; it fires `d` with the protocol the user's factory built,
-- after that protocol's connectionMade, or errbacks on failure.
-- twisted.internet.endpoints._WrappingFactory.
local WrappingFactory = protocol.ClientFactory:extend({
  __name = "_WrappingFactory"})

function WrappingFactory:__init(wrapped)
  self.wrappedFactory = wrapped
  self.onConnection = defer.Deferred(function(d)
    d:errback(require("spindle.reactor").ConnectingCancelledError(
      "connecting was cancelled"))
    if self.connector ~= nil and self.connector.state == "connecting" then
      self.connector:stopConnecting()
    end
  end)
end

function WrappingFactory:doStart()
  if self.wrappedFactory.doStart then self.wrappedFactory:doStart() end
end

function WrappingFactory:doStop()
  if self.wrappedFactory.doStop then self.wrappedFactory:doStop() end
end

function WrappingFactory:startedConnecting(connector)
  self.connector = connector
end

--- Build the user's protocol; the Deferred fires once its makeConnection
-- (and so connectionMade) has run. The protocol is not wrapped: the
-- instance's makeConnection is overridden once, then removed, so that
-- reads cost nothing extra.
function WrappingFactory:buildProtocol(addr)
  local d = self.onConnection
  local ok, proto = pcall(self.wrappedFactory.buildProtocol,
    self.wrappedFactory, addr)
  if not ok then
    if not d.called then d:errback(proto) end
    error(proto, 0)
  end
  if proto == nil then
    if not d.called then
      d:errback(require("spindle.reactor").ConnectError(
        "the factory built no protocol (buildProtocol returned nil)"))
    end
    return nil
  end
  -- An instance override set by an inner factory (wrapClientTLS's) is
  -- kept and runs next.
  local inner = rawget(proto, "makeConnection")
  rawset(proto, "makeConnection", function(p, transport)
    rawset(p, "makeConnection", inner)
    p:makeConnection(transport)
    if not d.called then d:callback(p) end
  end)
  return proto
end

function WrappingFactory:clientConnectionFailed(_, reason)
  if not self.onConnection.called then self.onConnection:errback(reason) end
end

local function connectWith(connectfn)
  local ok, err = pcall(connectfn)
  if not ok then return defer.fail(err) end
end

--- TCP4ServerEndpoint(reactor, port[, backlog][, interface]): listens on
-- a TCP port. twisted TCP4ServerEndpoint.
local TCP4ServerEndpoint = Object:extend({__name = "TCP4ServerEndpoint"})

function TCP4ServerEndpoint:__init(reactor, port, backlog, interface)
  checkReactor(reactor, "TCP4ServerEndpoint", 3)
  self.reactor, self.port = reactor, port
  self.backlog, self.interface = backlog or 50, interface or ""
end

--- ep:listen(factory) -> Deferred of the Port (or a CannotListenError
-- Failure).
function TCP4ServerEndpoint:listen(factory)
  return defer.maybeDeferred(self.reactor.listenTCP, self.port, factory,
    self.backlog, self.interface)
end

--- TCP6ServerEndpoint(reactor, port[, backlog][, interface = "::"]).
local TCP6ServerEndpoint = TCP4ServerEndpoint:extend({
  __name = "TCP6ServerEndpoint"})

function TCP6ServerEndpoint:__init(reactor, port, backlog, interface)
  checkReactor(reactor, "TCP6ServerEndpoint", 3)
  TCP4ServerEndpoint.__init(self, reactor, port, backlog, interface or "::")
end

--- TCP4ClientEndpoint(reactor, host, port[, timeout][, bindAddress]):
-- connects over TCP. twisted TCP4ClientEndpoint.
local TCP4ClientEndpoint = Object:extend({__name = "TCP4ClientEndpoint"})

function TCP4ClientEndpoint:__init(reactor, host, port, timeout, bindAddress)
  checkReactor(reactor, "TCP4ClientEndpoint", 3)
  self.reactor, self.host, self.port = reactor, host, port
  self.timeout, self.bindAddress = timeout or 30, bindAddress
end

--- ep:connect(factory) -> Deferred of the protocol factory built, fired
-- after its connectionMade; a failed connection errbacks it with the
-- reactor's error (ConnectionRefusedError, ...); cancelling it stops the
-- attempt with ConnectingCancelledError.
function TCP4ClientEndpoint:connect(factory)
  local wf = WrappingFactory(factory)
  return connectWith(function()
    self.reactor.connectTCP(self.host, self.port, wf, self.timeout,
      self.bindAddress)
  end) or wf.onConnection
end

local TCP6ClientEndpoint = TCP4ClientEndpoint:extend({
  __name = "TCP6ClientEndpoint"})

--- HostnameEndpoint(reactor, host, port[, timeout=30][, bindAddress]
-- [, attemptDelay=0.3]): connects to a host name over whichever of its
-- addresses answers first, IPv6 or IPv4 ("Happy Eyeballs"). The name is
-- resolved to all its addresses (getaddrinfo, off the loop thread); the
-- attempts start one after another, attemptDelay seconds apart, the
-- first at once; the first to connect wins and the others are cancelled.
-- The Deferred of connect() fires with the winner's protocol (after its
-- connectionMade), or fails with the last attempt's error once all
-- failed, with DNSLookupError when the name does not resolve, and with
-- ConnectingCancelledError when cancelled. A subclass of
-- TCP4ClientEndpoint (fields host, port, timeout, bindAddress).
-- twisted.internet.endpoints.HostnameEndpoint, with two steps of RFC
-- 8305 that Twisted leaves out: the addresses are interleaved by family
-- (the first family getaddrinfo gives, then the other, in turn), and an
-- attempt that fails starts the next one at once instead of waiting out
-- the delay. Override ep:_nameResolution(host, port) -> Deferred of
-- {{host=, port=, family="INET6"|"INET"}, ...} to resolve otherwise (as
-- Twisted's tests replace the name resolver).
local HostnameEndpoint = TCP4ClientEndpoint:extend({
  __name = "HostnameEndpoint", _DEFAULT_ATTEMPT_DELAY = 0.3})

function HostnameEndpoint:__init(reactor, host, port, timeout, bindAddress,
    attemptDelay)
  checkReactor(reactor, "HostnameEndpoint", 3)
  TCP4ClientEndpoint.__init(self, reactor, host, port, timeout, bindAddress)
  self.attemptDelay = attemptDelay or self._DEFAULT_ATTEMPT_DELAY
end

function HostnameEndpoint:__tostring()
  local host = tostring(self.host)
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  return ("<HostnameEndpoint %s:%s>"):format(host, tostring(self.port))
end

function HostnameEndpoint:_nameResolution(host, port)
  return require("spindle._resolve").getaddrinfo(host, port)
end

-- RFC 8305 section 4: alternate the families, starting with the first.
local function interleave(addresses)
  if #addresses == 0 then return addresses end
  local first = addresses[1].family
  local a, b = {}, {}
  for _, addr in ipairs(addresses) do
    if addr.family == first then a[#a + 1] = addr else b[#b + 1] = addr end
  end
  local out = {}
  for i = 1, math.max(#a, #b) do
    out[#out + 1] = a[i]
    out[#out + 1] = b[i]
  end
  return out
end

--- ep:connect(factory) -> Deferred of the connected protocol (see the
-- class comment).
function HostnameEndpoint:connect(factory)
  local r = require("spindle.reactor")
  if type(self.host) ~= "string" or self.host == "" then
    return defer.fail(r.DNSLookupError(("invalid hostname: %s"):format(
      tostring(self.host))))
  end
  local resolution
  local pending, failures = {}, {}
  local queue, timer, done = nil, nil, false
  local outer
  local function finish()
    done = true
    if timer ~= nil and timer:active() then timer:cancel() end
    timer = nil
    local list = {}
    for a in pairs(pending) do list[#list + 1] = a end
    pending = {}
    for _, a in ipairs(list) do a:cancel() end
  end
  outer = defer.Deferred(function(d)
    if resolution ~= nil and not resolution.called then resolution:cancel() end
    finish()
    if not d.called then
      d:errback(r.ConnectingCancelledError(("connecting to %s was " ..
        "cancelled"):format(tostring(self))))
    end
  end)
  local startNext
  local function checkDone()
    if done or next(pending) ~= nil or (queue and #queue > 0) then return end
    finish()
    outer:errback(failures[#failures])
  end
  startNext = function()
    if timer ~= nil and timer:active() then timer:cancel() end
    timer = nil
    if done then return end
    local addr = table.remove(queue, 1)
    if addr == nil then return checkDone() end
    local Class = addr.family == "INET6" and TCP6ClientEndpoint or
      TCP4ClientEndpoint
    local ep = Class(self.reactor, addr.host, addr.port, self.timeout,
      self.bindAddress)
    local attempt = ep:connect(factory)
    pending[attempt] = true
    attempt:addCallbacks(function(p)
      pending[attempt] = nil
      if done then
        if p.transport then p.transport:loseConnection() end
        return
      end
      finish()
      outer:callback(p)
    end, function(f)
      if not pending[attempt] then return end -- cancelled by us
      pending[attempt] = nil
      failures[#failures + 1] = f
      if not done then
        if #queue > 0 then startNext() else checkDone() end
      end
    end)
    -- (an attempt that failed at once has already started the next one,
    -- and its timer)
    if not done and #queue > 0 and timer == nil then
      timer = self.reactor:callLater(self.attemptDelay, startNext)
    end
  end
  resolution = defer.maybeDeferred(self._nameResolution, self, self.host,
    self.port)
  resolution:addCallbacks(function(addresses)
    if done then return end
    if #addresses == 0 then
      done = true
      outer:errback(r.DNSLookupError(("no results for hostname lookup: %s")
        :format(self.host)))
      return
    end
    queue = interleave(addresses)
    startNext()
  end, function(f)
    if done or outer.called then return end
    done = true
    if f:check(r.DNSLookupError) then
      outer:errback(f)
    else
      outer:errback(r.DNSLookupError(("Couldn't find the hostname '%s': %s")
        :format(self.host, f:getErrorMessage())))
    end
  end)
  return outer
end

--- endpoints.connectProtocol(endpoint, proto) -> Deferred of proto once
-- connected: connect with a factory that builds only this protocol
-- instance. twisted.internet.endpoints.connectProtocol.
function M.connectProtocol(endpoint, proto)
  if type(endpoint) ~= "table" or endpoint.connect == nil then
    error(("bad argument #1 to 'connectProtocol' (endpoint expected, " ..
      "got %s)"):format(type(endpoint)), 2)
  end
  local OneShotFactory = protocol.Factory:extend({})
  function OneShotFactory.buildProtocol() return proto end
  return endpoint:connect(OneShotFactory())
end

-- The endpoint wrapClientTLS returns.
local WrapperEndpoint = Object:extend({__name = "_WrapperEndpoint"})

function WrapperEndpoint:__init(wrappedEndpoint, connectionCreator)
  self.wrappedEndpoint = wrappedEndpoint
  self.connectionCreator = connectionCreator
end

function WrapperEndpoint:connect(factory)
  local creator = self.connectionCreator
  local proxy = require("spindle.protocol")._buildThrough(factory,
    function(p)
      local mc = rawget(p, "makeConnection")
      rawset(p, "makeConnection", function(self2, transport)
        rawset(self2, "makeConnection", mc)
        transport:startTLS(creator)
        self2:makeConnection(transport)
      end)
    end)
  return self.wrappedEndpoint:connect(proxy)
end

--- endpoints.wrapClientTLS(connectionCreator, wrappedEndpoint) -> an
-- endpoint that connects with wrappedEndpoint, then starts TLS on the
-- connection with connectionCreator (ssl.optionsForClientTLS(...), or any
-- context factory) before the protocol's connectionMade; its connect's
-- Deferred fires with the protocol once TCP is up (the handshake follows;
-- the protocol's handshakeCompleted() tells when it ends). Field
-- wrappedEndpoint. Raises a bad-argument error when wrappedEndpoint has
-- no connect method. twisted.internet.endpoints.wrapClientTLS.
function M.wrapClientTLS(connectionCreator, wrappedEndpoint)
  if type(wrappedEndpoint) ~= "table" or wrappedEndpoint.connect == nil then
    error(("bad argument #2 to 'wrapClientTLS' (endpoint expected, got %s)")
      :format(type(wrappedEndpoint)), 2)
  end
  return WrapperEndpoint(wrappedEndpoint, connectionCreator)
end

--- UNIXServerEndpoint(reactor, address[, backlog]): listens on a Unix
-- socket. twisted UNIXServerEndpoint.
local UNIXServerEndpoint = Object:extend({__name = "UNIXServerEndpoint"})

function UNIXServerEndpoint:__init(reactor, address, backlog)
  checkReactor(reactor, "UNIXServerEndpoint", 3)
  self.reactor, self.address, self.backlog = reactor, address, backlog or 50
end

--- ep:listen(factory) -> Deferred of the Port listening on the socket
-- path (or a CannotListenError Failure). twisted
-- UNIXServerEndpoint.listen.
function UNIXServerEndpoint:listen(factory)
  return defer.maybeDeferred(self.reactor.listenUNIX, self.address, factory,
    self.backlog)
end

--- UNIXClientEndpoint(reactor, path[, timeout]): connects to a Unix
-- socket. twisted UNIXClientEndpoint.
local UNIXClientEndpoint = Object:extend({__name = "UNIXClientEndpoint"})

function UNIXClientEndpoint:__init(reactor, path, timeout)
  checkReactor(reactor, "UNIXClientEndpoint", 3)
  self.reactor, self.path, self.timeout = reactor, path, timeout or 30
end

--- ep:connect(factory) -> Deferred of the protocol factory built, fired
-- after its connectionMade; a failed connection errbacks it with the
-- reactor's error (ConnectionRefusedError, ...); cancelling it stops the
-- attempt with ConnectingCancelledError. twisted UNIXClientEndpoint.connect.
function UNIXClientEndpoint:connect(factory)
  local wf = WrappingFactory(factory)
  return connectWith(function()
    self.reactor.connectUNIX(self.path, wf, self.timeout)
  end) or wf.onConnection
end

--- SSL4ServerEndpoint(reactor, port, sslContextFactory[, backlog]
-- [, interface]): listens on a TCP port with TLS. twisted
-- SSL4ServerEndpoint.
local SSL4ServerEndpoint = Object:extend({__name = "SSL4ServerEndpoint"})

function SSL4ServerEndpoint:__init(reactor, port, sslContextFactory, backlog,
    interface)
  checkReactor(reactor, "SSL4ServerEndpoint", 3)
  self.reactor, self.port = reactor, port
  self.sslContextFactory = sslContextFactory
  self.backlog, self.interface = backlog or 50, interface or ""
end

--- ep:listen(factory) -> Deferred of the TLS Port (or a
-- CannotListenError Failure). twisted SSL4ServerEndpoint.listen.
function SSL4ServerEndpoint:listen(factory)
  return defer.maybeDeferred(self.reactor.listenSSL, self.port, factory,
    self.sslContextFactory, self.backlog, self.interface)
end

--- SSL4ClientEndpoint(reactor, host, port, sslContextFactory[, timeout]
-- [, bindAddress]): connects over TLS; the Deferred of connect() fires
-- after connectionMade (TCP connected; the handshake follows, and the
-- protocol's handshakeCompleted() tells when it ends). twisted
-- SSL4ClientEndpoint.
local SSL4ClientEndpoint = Object:extend({__name = "SSL4ClientEndpoint"})

function SSL4ClientEndpoint:__init(reactor, host, port, sslContextFactory,
    timeout, bindAddress)
  checkReactor(reactor, "SSL4ClientEndpoint", 3)
  self.reactor, self.host, self.port = reactor, host, port
  self.sslContextFactory = sslContextFactory
  self.timeout, self.bindAddress = timeout or 30, bindAddress
end

--- ep:connect(factory) -> Deferred of the protocol factory built, fired
-- after its connectionMade (TCP up; the handshake follows); a failed
-- connection errbacks it with the reactor's error; a failed handshake
-- reaches the protocol's connectionLost as an ssl.Error Failure.
-- twisted SSL4ClientEndpoint.connect.
function SSL4ClientEndpoint:connect(factory)
  local wf = WrappingFactory(factory)
  return connectWith(function()
    self.reactor.connectSSL(self.host, self.port, wf, self.sslContextFactory,
      self.timeout, self.bindAddress)
  end) or wf.onConnection
end

--- AdoptedStreamServerEndpoint(reactor, fileDescriptor, addressFamily):
-- listens on a socket that is already bound and listening (addressFamily
-- "INET", "INET6" or "UNIX"); listen() adopts it once, as Twisted's, and
-- fails on a second call. twisted AdoptedStreamServerEndpoint.
local AdoptedStreamServerEndpoint = Object:extend({
  __name = "AdoptedStreamServerEndpoint"})

function AdoptedStreamServerEndpoint:__init(reactor, fileDescriptor,
    addressFamily)
  checkReactor(reactor, "AdoptedStreamServerEndpoint", 3)
  self.reactor, self.fileDescriptor = reactor, fileDescriptor
  self.addressFamily = addressFamily
end

--- ep:listen(factory) -> Deferred of the Port serving the adopted
-- descriptor (reactor.adoptStreamPort); a second call gives a Deferred
-- failing with reactor.AlreadyListened. twisted
-- AdoptedStreamServerEndpoint.listen.
function AdoptedStreamServerEndpoint:listen(factory)
  if self._used then
    return defer.fail(require("spindle.reactor").AlreadyListened(
      "Cannot listen on the same adopted descriptor twice"))
  end
  self._used = true
  return defer.maybeDeferred(self.reactor.adoptStreamPort,
    self.fileDescriptor, self.addressFamily, factory)
end

-- Parsing ------------------------------------------------------------------

--- Split a description into its type, positional args and key=value
-- args, as twisted.internet.endpoints._parse: ':' separates, '\' escapes
-- the next character, the first '=' of a field splits key and value.
local function parse(description)
  local fields, cur, key = {}, {}, nil
  local i, n = 1, #description
  local function finish()
    local value = table.concat(cur)
    fields[#fields + 1] = key and {key = key, value = value} or {value = value}
    cur, key = {}, nil
  end
  while i <= n do
    local c = description:sub(i, i)
    if c == "\\" and i < n then
      i = i + 1
      cur[#cur + 1] = description:sub(i, i)
    elseif c == ":" then
      finish()
    elseif c == "=" and key == nil then
      key = table.concat(cur)
      cur = {}
    else
      cur[#cur + 1] = c
    end
    i = i + 1
  end
  finish()
  local kind = table.remove(fields, 1)
  local args, kwargs = {}, {}
  for _, f in ipairs(fields) do
    if f.key then kwargs[f.key] = f.value else args[#args + 1] = f.value end
  end
  return kind.key and (kind.key .. "=" .. kind.value) or kind.value, args,
    kwargs
end

local supported = "supported: tcp, tcp6, unix, ssl, tls, systemd"

-- A description that cannot be used: serverFrom/clientFrom and their
-- helpers raise DescError values (a message, or the error value made
-- while building the endpoint, such as ssl.Error for a key file), and
-- fromString raises them at the public function's caller, however deep
-- the helper. (Twisted raises ValueError; spindle's error is a string.)
local DescError = {}

local function descError(fmt, ...)
  error(setmetatable({message = fmt:format(...)}, DescError), 0)
end

-- pcall(f, ...), an error turned into a DescError carrying it.
local function orDescError(f, ...)
  local ok, v = pcall(f, ...)
  if not ok then error(setmetatable({value = v}, DescError), 0) end
  return v
end

local function badType(kind, description)
  descError("Unknown endpoint type: '%s' in %q (%s)", tostring(kind),
    description, supported)
end

local function missing(value, what, description)
  if value == nil or value == "" then
    descError("missing %s in endpoint description %q", what, description)
  end
end

local function toint(value, what, description)
  missing(value, what, description)
  local v = tonumber(value)
  if v == nil or v ~= math.floor(v) then
    descError("bad %s %q in endpoint description %q", what, tostring(value),
      description)
  end
  return math.tointeger(v)
end

local function tonum(value, what, description)
  missing(value, what, description)
  local v = tonumber(value)
  if v == nil then
    descError("bad %s %q in endpoint description %q", what, tostring(value),
      description)
  end
  return v
end

-- fromString(make, reactor, description) -> make(reactor, description),
-- its DescError raised at the caller of fromString's caller (level 3).
local function fromString(make, reactor, description)
  local ok, ep = pcall(make, reactor, description)
  if ok then return ep end
  if getmetatable(ep) == DescError then
    if ep.message == nil then error(check.locate(ep.value, 3), 0) end
    error(ep.message, 3)
  end
  error(ep, 0)
end

local serverFrom, clientFrom

local function checkDescription(description, fname)
  check.string(description, 2, fname, 3)
end

--- endpoints.serverFromString(reactor, description) -> server endpoint.
-- "tcp:PORT[:interface=IP][:backlog=N]" (also "tcp:port=PORT"),
-- "tcp6:PORT[...]" (interface "::"), "unix:PATH[:backlog=N]" (also
-- "unix:address=PATH"), "ssl:PORT:privateKey=KEY[:certKey=CERT]
-- [:interface=IP][:backlog=N]" (certKey defaults to privateKey: one PEM
-- file with both), "systemd:domain=INET:index=N" (the Nth socket systemd
-- passed by socket activation, LISTEN_FDS; domain INET, INET6 or UNIX);
-- a bare "PORT" means tcp. Raises on an unknown type or a bad or
-- missing value, naming it, at the caller's line (Twisted raises
-- ValueError; spindle a string); a key or certificate file that cannot
-- be read raises its ssl.Error, the caller's position in front of its
-- message. twisted endpoints.serverFromString.
function M.serverFromString(reactor, description)
  checkReactor(reactor, "serverFromString")
  checkDescription(description, "serverFromString")
  local ep = fromString(serverFrom, reactor, description)
  return ep -- not a tail call: fromString blames this function's caller
end

-- serverFrom(reactor, description) -> endpoint: serverFromString's work,
-- raising DescError values.
function serverFrom(reactor, description)
  if description:match("^%d+$") or description:match("^%d+:") then
    description = "tcp:" .. description
  end
  local kind, args, kw = parse(description)
  if kind == "tcp" or kind == "tcp6" then
    local port = toint(kw.port or args[1], "port", description)
    local backlog = toint(kw.backlog or args[3] or 50, "backlog", description)
    local Class = kind == "tcp" and TCP4ServerEndpoint or TCP6ServerEndpoint
    return Class(reactor, port, backlog, kw.interface or args[2])
  elseif kind == "ssl" then
    local port = toint(kw.port or args[1], "port", description)
    if kw.privateKey == nil then
      descError("missing privateKey in %q", description)
    end
    local ssl = require("spindle.ssl")
    local cf = orDescError(ssl.DefaultOpenSSLContextFactory, kw.privateKey,
      kw.certKey or kw.privateKey)
    return SSL4ServerEndpoint(reactor, port, cf,
      toint(kw.backlog or 50, "backlog", description), kw.interface)
  elseif kind == "systemd" then
    local index = toint(kw.index or 0, "index", description)
    local domain = kw.domain or "INET"
    if domain ~= "INET" and domain ~= "INET6" and domain ~= "UNIX" then
      descError("bad domain %q in %q (INET, INET6 or UNIX)", domain,
        description)
    end
    local fds = require("spindle._supervisor").listenFds()
    if fds[index + 1] == nil then
      descError("no socket %d from systemd in %q (LISTEN_FDS gives %d)",
        index, description, #fds)
    end
    return AdoptedStreamServerEndpoint(reactor, fds[index + 1], domain)
  elseif kind == "unix" then
    local address = kw.address or args[1]
    if address == nil or address == "" then
      descError("missing socket path in %q", description)
    end
    return UNIXServerEndpoint(reactor, address,
      toint(kw.backlog or 50, "backlog", description))
  end
  badType(kind, description)
end

-- "ssl:host=H:port=P[:certKey=C:privateKey=K][:caCerts=PEM]" (caCerts
-- also turns on verification of the server and of its name) and
-- "tls:H:P[:trustRoots=PEM][:certificate=C:privateKey=K][:endpoint=DESC]"
-- (always verifies, against the system's CAs without trustRoots; a
-- wrapClientTLS over a HostnameEndpoint, or over the endpoint DESC).
local function tlsClient(reactor, kind, args, kw, description)
  local ssl = require("spindle.ssl")
  local host = kw.host or args[1]
  if host == nil or host == "" then
    descError("missing host in %q", description)
  end
  local port = toint(kw.port or args[2], "port", description)
  local timeout = tonum(kw.timeout or 30, "timeout", description)
  local bind = kw.bindAddress and {kw.bindAddress, 0} or nil
  local cert = kind == "tls" and kw.certificate or kw.certKey
  local key = kw.privateKey
  if (cert == nil) ~= (key == nil) and not (kind == "ssl" and key) then
    descError("a client certificate needs both its certificate and " ..
      "privateKey in %q", description)
  end
  cert = cert or key
  local trust = kind == "tls" and kw.trustRoots or kw.caCerts
  local cf
  if kind == "tls" then
    -- Twisted 25: TLS over a HostnameEndpoint, or over the endpoint
    -- described by endpoint= (host and port then only name the server).
    cf = orDescError(ssl.optionsForClientTLS, host, {trustRoot = trust,
      clientCertificate = cert and {certificate = cert, privateKey = key}})
    local wrapped
    if kw.endpoint then
      wrapped = clientFrom(reactor, kw.endpoint)
    else
      wrapped = HostnameEndpoint(reactor, host, port, timeout, bind)
    end
    return M.wrapClientTLS(cf, wrapped)
  elseif trust then
    cf = orDescError(ssl.optionsForClientTLS, host, {trustRoot = trust,
      clientCertificate = cert and {certificate = cert, privateKey = key}})
  elseif cert then
    local C = ssl.ClientContextFactory:extend({})
    function C.getContext(self)
      local ctx = ssl.ClientContextFactory.getContext(self)
      ctx:use_certificate_chain_file(cert)
      ctx:use_privatekey_file(key)
      return ctx
    end
    cf = C()
  else
    cf = ssl.ClientContextFactory()
  end
  return SSL4ClientEndpoint(reactor, host, port, cf, timeout, bind)
end

--- endpoints.clientFromString(reactor, description) -> client endpoint.
-- "tcp:host=HOST:port=PORT[:timeout=S][:bindAddress=IP]" (or
-- "tcp:HOST:PORT"; a HostnameEndpoint, trying every address of HOST,
-- where Twisted gives a TCP4ClientEndpoint), "tcp6:..." likewise (a
-- TCP6ClientEndpoint), "unix:path=PATH[:timeout=S]"
-- (or "unix:PATH"), "ssl:host=HOST:port=PORT[:certKey=CERT:privateKey=KEY]
-- [:caCerts=PEM]" (without caCerts the server is not verified, as
-- Twisted's ClientContextFactory), "tls:HOST:PORT[:trustRoots=PEM]
-- [:certificate=CERT:privateKey=KEY][:timeout=S][:bindAddress=IP]
-- [:endpoint=DESC]" (verifies the server's chain and name:
-- wrapClientTLS(ssl.optionsForClientTLS(HOST, ...), HostnameEndpoint or
-- DESC's endpoint), as Twisted 25). Errors as serverFromString's.
-- twisted endpoints.clientFromString.
function M.clientFromString(reactor, description)
  checkReactor(reactor, "clientFromString")
  checkDescription(description, "clientFromString")
  local ep = fromString(clientFrom, reactor, description)
  return ep -- not a tail call: fromString blames this function's caller
end

-- clientFrom(reactor, description) -> endpoint: clientFromString's work,
-- raising DescError values (also for the endpoint= of a tls: one).
function clientFrom(reactor, description)
  local kind, args, kw = parse(description)
  if kind == "tcp" or kind == "tcp6" then
    local host = kw.host or args[1]
    if host == nil or host == "" then
      descError("missing host in %q", description)
    end
    local port = toint(kw.port or args[2], "port", description)
    local timeout = tonum(kw.timeout or 30, "timeout", description)
    local bind = kw.bindAddress and {kw.bindAddress, 0} or nil
    if kind == "tcp" then
      return HostnameEndpoint(reactor, host, port, timeout, bind)
    end
    return TCP6ClientEndpoint(reactor, host, port, timeout, bind)
  elseif kind == "ssl" or kind == "tls" then
    return tlsClient(reactor, kind, args, kw, description)
  elseif kind == "unix" then
    local path = kw.path or args[1]
    if path == nil or path == "" then
      descError("missing socket path in %q", description)
    end
    return UNIXClientEndpoint(reactor, path,
      tonum(kw.timeout or 30, "timeout", description))
  end
  badType(kind, description)
end

M.TCP4ServerEndpoint = TCP4ServerEndpoint
M.TCP6ServerEndpoint = TCP6ServerEndpoint
M.TCP4ClientEndpoint = TCP4ClientEndpoint
M.TCP6ClientEndpoint = TCP6ClientEndpoint
M.UNIXServerEndpoint = UNIXServerEndpoint
M.UNIXClientEndpoint = UNIXClientEndpoint
M.SSL4ServerEndpoint = SSL4ServerEndpoint
M.SSL4ClientEndpoint = SSL4ClientEndpoint
M.HostnameEndpoint = HostnameEndpoint
M._WrapperEndpoint = WrapperEndpoint
M._parse = parse -- spindle.repl reads the keys of an ssl: description
M.AdoptedStreamServerEndpoint = AdoptedStreamServerEndpoint

return require("spindle._core").strict("endpoints", M)
