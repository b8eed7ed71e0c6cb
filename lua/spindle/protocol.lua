--- spindle.protocol: Protocol, Factory, ServerFactory, ClientFactory,
-- DatagramProtocol and ProcessProtocol, as in twisted.internet.protocol.
-- Subclass them with Class:extend{...}; the reactor calls their methods
-- on the loop thread.
local Object = require("spindle.class").Object

local M = {}

--- BaseProtocol: the connection half every stream protocol shares.
local BaseProtocol = Object:extend({__name = "BaseProtocol"})
BaseProtocol.connected = 0
BaseProtocol.transport = nil

--- p:makeConnection(transport): attach the transport and call
-- connectionMade(). Follows twisted BaseProtocol.makeConnection.
function BaseProtocol:makeConnection(transport)
  self.connected = 1
  self.transport = transport
  self:connectionMade()
end

--- p:connectionMade(): called once the connection is up. Override it.
function BaseProtocol:connectionMade() end

--- Protocol: a stream protocol (TCP, TLS, Unix sockets).
local Protocol = BaseProtocol:extend({__name = "Protocol"})
Protocol.factory = nil

--- p:dataReceived(data): bytes arrived (a string; any split of the stream).
function Protocol:dataReceived(data) end

--- p:connectionLost(reason): the connection closed; reason is a Failure,
-- ConnectionDone for a clean close, ConnectionLost otherwise.
function Protocol:connectionLost(reason) end

--- Factory: makes a protocol instance per connection.
local Factory = Object:extend({__name = "Factory"})
Factory.protocol = nil
Factory.numPorts = 0

local function isFactoryClass(cls)
  while type(cls) == "table" do
    if cls == Factory then return true end
    cls = rawget(cls, "super")
  end
  return false
end

local function forProtocol(cls, P, ...)
  local factory = cls(...)
  factory.protocol = P
  return factory
end

--- FactoryClass.forProtocol(P, ...) or FactoryClass:forProtocol(P, ...)
-- -> a factory of that class (with a dot) or of the receiver (with a
-- colon, or on a subclass) whose protocol is P; the other arguments go
-- to the factory's __init. Every factory class has its own (this makes
-- them). twisted Factory.forProtocol (a classmethod).
local function forProtocolOf(class)
  return function(cls, P, ...)
    if not isFactoryClass(cls) then return forProtocol(class, cls, P, ...) end
    return forProtocol(cls, P, ...)
  end
end

--- Factory.forProtocol(P, ...), FactoryClass.forProtocol(P, ...) or
-- FactoryClass:forProtocol(P, ...) -> a factory of that class whose
-- protocol is P; the other arguments go to the factory's __init.
-- twisted Factory.forProtocol (a classmethod).
Factory.forProtocol = forProtocolOf(Factory)

--- FactoryClass:extend([fields]) -> subclass, as Object:extend, with its
-- own forProtocol so that Subclass.forProtocol(P) (a dot call, as a
-- Twisted classmethod reads) makes a Subclass.
function Factory.extend(cls, fields)
  local sub = Object.extend(cls, fields)
  if rawget(sub, "forProtocol") == nil then
    sub.forProtocol = forProtocolOf(sub)
  end
  return sub
end

--- f:doStart(): called by each port or connector that starts using the
-- factory; calls startFactory() on the first. twisted Factory.doStart.
function Factory:doStart()
  if self.numPorts == 0 then self:startFactory() end
  self.numPorts = self.numPorts + 1
end

--- f:doStop(): the reverse of doStart; calls stopFactory() on the last.
function Factory:doStop()
  if self.numPorts == 0 then return end
  self.numPorts = self.numPorts - 1
  if self.numPorts == 0 then self:stopFactory() end
end

--- f:startFactory(): override for set-up; called (by doStart) before
-- the first port or connector uses f. twisted Factory.startFactory.
function Factory:startFactory() end

--- f:stopFactory(): override for tear-down; called (by doStop) after the
-- last port or connector stopped using f. twisted Factory.stopFactory.
function Factory:stopFactory() end

--- f:buildProtocol(addr) -> protocol or nil: an instance of f.protocol with
-- its factory set; nil refuses the connection (an override may return
-- it); raises when f.protocol is nil. addr is not used: written in C
-- (core.c), so that accepting a connection for it makes no address.
-- twisted Factory.buildProtocol.
Factory.buildProtocol = require("spindle._core").buildProtocol

local ServerFactory = Factory:extend({__name = "ServerFactory"})

--- ClientFactory: a Factory told about connection attempts.
local ClientFactory = Factory:extend({__name = "ClientFactory"})

--- cf:startedConnecting(connector): a connection attempt began.
function ClientFactory:startedConnecting(connector) end
--- cf:clientConnectionFailed(connector, reason): the attempt failed.
function ClientFactory:clientConnectionFailed(connector, reason) end
--- cf:clientConnectionLost(connector, reason): an established connection
-- was lost.
function ClientFactory:clientConnectionLost(connector, reason) end

--- ReconnectingClientFactory: a ClientFactory that reconnects with an
-- exponentially growing delay after a failed attempt or a lost
-- connection. twisted.internet.protocol.ReconnectingClientFactory, with
-- its defaults: initialDelay 1 s, maxDelay 3600 s, factor e (2.718...),
-- jitter 0.1196 (the delay is drawn from a normal distribution of that
-- relative spread), maxRetries nil (forever). Fields: delay, retries,
-- continueTrying, connector, clock (the reactor unless set; a task.Clock
-- in tests). Subclasses that override clientConnectionFailed/Lost call
-- ReconnectingClientFactory's to keep retrying; call resetDelay() from
-- buildProtocol or connectionMade once connected (as Twisted's users do).
local ReconnectingClientFactory = ClientFactory:extend({
  __name = "ReconnectingClientFactory"})
ReconnectingClientFactory.maxDelay = 3600
ReconnectingClientFactory.initialDelay = 1.0
ReconnectingClientFactory.factor = 2.7182818284590451
ReconnectingClientFactory.jitter = 0.11962656472
ReconnectingClientFactory.delay = 1.0
ReconnectingClientFactory.retries = 0
ReconnectingClientFactory.maxRetries = nil
ReconnectingClientFactory.continueTrying = true
ReconnectingClientFactory.connector = nil
ReconnectingClientFactory.clock = nil
ReconnectingClientFactory._callID = nil

-- A normally distributed number (Box-Muller), as random.normalvariate.
local function normalvariate(mu, sigma)
  local u1 = 1 - math.random() -- in (0, 1]: log(u1) is finite
  local u2 = math.random()
  return mu + sigma * math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)
end

--- rcf:clientConnectionFailed(connector, reason): retry while
-- continueTrying.
function ReconnectingClientFactory:clientConnectionFailed(connector, reason)
  if self.continueTrying then
    self.connector = connector
    self:retry()
  end
end

--- rcf:clientConnectionLost(connector, reason): retry while
-- continueTrying.
function ReconnectingClientFactory:clientConnectionLost(connector, reason)
  if self.continueTrying then
    self.connector = connector
    self:retry()
  end
end

--- rcf:retry([connector]): schedule connector:connect() after the next
-- delay: delay = min(delay * factor, maxDelay), then jittered. Does
-- nothing once stopTrying() was called or maxRetries is passed. Raises
-- if there is no connector to retry.
function ReconnectingClientFactory:retry(connector)
  if not self.continueTrying then return end
  connector = connector or self.connector
  if connector == nil then
    error("no connector to retry", 2)
  end
  self.retries = self.retries + 1
  if self.maxRetries ~= nil and self.retries > self.maxRetries then
    require("spindle.log").msg(("Abandoning %s after %d retries."):format(
      tostring(connector), self.retries - 1))
    return
  end
  self.delay = math.min(self.delay * self.factor, self.maxDelay)
  if self.jitter and self.jitter ~= 0 then
    self.delay = normalvariate(self.delay, self.delay * self.jitter)
  end
  if self.clock == nil then self.clock = require("spindle.reactor") end
  self._callID = self.clock:callLater(math.max(self.delay, 0), function()
    self._callID = nil
    connector:connect()
  end)
end

--- rcf:stopTrying(): cancel a pending retry, stop retrying, and stop a
-- connection attempt in progress.
function ReconnectingClientFactory:stopTrying()
  if self._callID ~= nil then
    self._callID:cancel()
    self._callID = nil
  end
  self.continueTrying = false
  if self.connector ~= nil then
    pcall(self.connector.stopConnecting, self.connector)
  end
end

--- rcf:resetDelay(): back to initialDelay and 0 retries (call it once a
-- connection is made).
function ReconnectingClientFactory:resetDelay()
  self.delay = self.initialDelay
  self.retries = 0
  self._callID = nil
  self.continueTrying = true
end

--- DatagramProtocol: a UDP protocol; one instance per port.
local DatagramProtocol = Object:extend({__name = "DatagramProtocol"})
DatagramProtocol.transport = nil
DatagramProtocol.numPorts = 0

--- dp:makeConnection(transport): attach the port; calls doStart().
function DatagramProtocol:makeConnection(transport)
  self.transport = transport
  self:doStart()
end

--- dp:doStart() / dp:doStop(): startProtocol() on the first port,
-- stopProtocol() after the last. twisted AbstractDatagramProtocol.
function DatagramProtocol:doStart()
  if self.numPorts == 0 then self:startProtocol() end
  self.numPorts = self.numPorts + 1
end

--- dp:doStop(): called when a port stops using dp; stopProtocol() after
-- the last, and dp.transport becomes nil. twisted
-- AbstractDatagramProtocol.doStop.
function DatagramProtocol:doStop()
  if self.numPorts == 0 then return end
  self.numPorts = self.numPorts - 1
  self.transport = nil
  if self.numPorts == 0 then self:stopProtocol() end
end

--- dp:startProtocol(): override for set-up; called once the first port
-- listens with dp (dp.transport is set). twisted
-- AbstractDatagramProtocol.startProtocol.
function DatagramProtocol:startProtocol() end

--- dp:stopProtocol(): override for tear-down; called after the last port
-- stopped listening with dp. twisted AbstractDatagramProtocol.stopProtocol.
function DatagramProtocol:stopProtocol() end

--- dp:datagramReceived(data, addr): a datagram arrived from
-- addr = {host = "127.0.0.1", port = 9999}.
function DatagramProtocol:datagramReceived(data, addr) end

--- dp:connectionRefused(): a connected port's peer refused (ICMP).
function DatagramProtocol:connectionRefused() end

--- ProcessProtocol: talks to a child process started by
-- reactor.spawnProcess; its transport is the Process (write, closeStdin,
-- signalProcess, pid, ...). Follows twisted.internet.protocol.
-- ProcessProtocol.
local ProcessProtocol = BaseProtocol:extend({__name = "ProcessProtocol"})

--- pp:childDataReceived(childFD, data): bytes the child wrote on childFD
-- (an integer); the default sends fd 1 to outReceived, 2 to errReceived.
function ProcessProtocol:childDataReceived(childFD, data)
  if childFD == 1 then
    self:outReceived(data)
  elseif childFD == 2 then
    self:errReceived(data)
  end
end

--- pp:outReceived(data), pp:errReceived(data): the child wrote to its
-- standard output / standard error. Override them.
function ProcessProtocol:outReceived(data) end
--- pp:errReceived(data): the child wrote data to its standard error.
function ProcessProtocol:errReceived(data) end

--- pp:childConnectionLost(childFD): the pipe to childFD closed (the child
-- closed it, exited, or closeChildFD was called); the default calls
-- inConnectionLost (0), outConnectionLost (1) or errConnectionLost (2).
function ProcessProtocol:childConnectionLost(childFD)
  if childFD == 0 then
    self:inConnectionLost()
  elseif childFD == 1 then
    self:outConnectionLost()
  elseif childFD == 2 then
    self:errConnectionLost()
  end
end

--- pp:inConnectionLost(), pp:outConnectionLost(), pp:errConnectionLost():
-- the child's standard input / output / error pipe closed. Override them.
function ProcessProtocol:inConnectionLost() end
--- pp:outConnectionLost(): the child's standard output pipe closed.
function ProcessProtocol:outConnectionLost() end
--- pp:errConnectionLost(): the child's standard error pipe closed.
function ProcessProtocol:errConnectionLost() end

--- pp:processExited(reason): the child ended (its pipes may still be
-- open); reason is a Failure of reactor.ProcessDone (exit code 0) or
-- reactor.ProcessTerminated, with exitCode, signal and status.
function ProcessProtocol:processExited(reason) end

--- pp:processEnded(reason): the child ended and every pipe to it closed:
-- the last call this protocol gets; reason as in processExited.
function ProcessProtocol:processEnded(reason) end

M.BaseProtocol = BaseProtocol
-- Internal: a stand-in for factory whose methods are factory's (bound to
-- it) and whose buildProtocol returns factory:buildProtocol(addr) after
-- onProtocol(p) has changed it (nil is passed on untouched). For
-- wrappers that must touch each protocol a factory builds without
-- changing the factory: ClientService (application.lua), wrapClientTLS
-- (endpoints.lua).
function M._buildThrough(factory, onProtocol)
  local proxy = setmetatable({}, {__index = function(_, k)
    local v = factory[k]
    if type(v) == "function" then
      return function(_, ...) return v(factory, ...) end
    end
    return v
  end})
  function proxy.buildProtocol(_, addr)
    local p = factory:buildProtocol(addr)
    if p ~= nil then onProtocol(p) end
    return p
  end
  return proxy
end

M.ProcessProtocol = ProcessProtocol
M.Protocol = Protocol
M.Factory = Factory
M.ServerFactory = ServerFactory
M.ClientFactory = ClientFactory
M.ReconnectingClientFactory = ReconnectingClientFactory
M.DatagramProtocol = DatagramProtocol

return require("spindle._core").strict("protocol", M)
