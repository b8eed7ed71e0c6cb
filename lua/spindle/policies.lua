--- spindle.policies: protocol wrappers that add policy to any factory, as
-- twisted.protocols.policies: ProtocolWrapper/WrappingFactory (the
-- pattern), ThrottlingFactory (connection count and bandwidth limits),
-- LimitTotalConnectionsFactory, TimeoutMixin (drop idle connections),
-- TimeoutFactory.
--
--   local f = policies.ThrottlingFactory(myFactory, 10, 100000)
--   reactor.listenTCP(8000, f)
--
-- A wrapper stands between the transport and the wrapped protocol: the
-- wrapped protocol's transport is the ProtocolWrapper, which forwards
-- the transport methods (write, loseConnection, getPeer, producers,
-- startTLS, ...) to the real one. Lua has no __getattr__ on an instance
-- of a class, so the forwarded names are listed (TRANSPORT_METHODS);
-- `wrapper.transport` is the real transport for anything else.
local Object = require("spindle.class").Object -- luacheck: ignore Object
local protocol = require("spindle.protocol")
local log = require("spindle.log")

local M = {}

local function reactor()
  return require("spindle.reactor")
end

---------------------------------------------------------------------------
-- ProtocolWrapper, WrappingFactory

--- ProtocolWrapper(factory, wrappedProtocol): a Protocol that passes
-- events to wrappedProtocol and acts as its transport. Subclass it and
-- override dataReceived/write to add policy. Field disconnecting: true
-- once loseConnection was called. twisted policies.ProtocolWrapper.
local ProtocolWrapper = protocol.Protocol:extend({__name = "ProtocolWrapper"})
ProtocolWrapper.disconnecting = false

function ProtocolWrapper:__init(factory, wrappedProtocol)
  self.factory = factory
  self.wrappedProtocol = wrappedProtocol
end

--- pw:logPrefix() -> "<wrapped class name> (ProtocolWrapper)".
function ProtocolWrapper:logPrefix()
  local mt = getmetatable(self.wrappedProtocol)
  return tostring(mt and mt.__name or "?") .. " (" ..
    tostring(getmetatable(self).__name) .. ")"
end

--- pw:makeConnection(transport): take the real transport, register with
-- the factory (factory:registerProtocol(pw)), then start the wrapped
-- protocol with pw as its transport. Called by the reactor.
-- twisted policies.ProtocolWrapper.makeConnection.
function ProtocolWrapper:makeConnection(transport)
  protocol.Protocol.makeConnection(self, transport)
  self.factory:registerProtocol(self)
  self.wrappedProtocol:makeConnection(self)
end

--- pw:write(data): the wrapped protocol's write, passed to the real
-- transport. data: a string of bytes. Raises as the transport's write
-- (after the connection closed: "attempt to use a closed transport").
-- twisted policies.ProtocolWrapper.write.
function ProtocolWrapper:write(data)
  self.transport:write(data)
end

--- pw:writeSequence(list): as write, for a list of strings.
-- twisted policies.ProtocolWrapper.writeSequence.
function ProtocolWrapper:writeSequence(data)
  self.transport:writeSequence(data)
end

--- pw:loseConnection(): set pw.disconnecting, then close the real
-- transport once its buffered data is written.
-- twisted policies.ProtocolWrapper.loseConnection.
function ProtocolWrapper:loseConnection()
  self.disconnecting = true
  self.transport:loseConnection()
end

-- The rest of the transport, forwarded as is (names also in Twisted's
-- ITransport, ITCPTransport, IProducer, IConsumer, ISSLTransport).
M.TRANSPORT_METHODS = {
  "abortConnection", "getPeer", "getHost", "registerProducer",
  "unregisterProducer", "pauseProducing", "resumeProducing",
  "stopProducing", "stopConsuming", "setTcpNoDelay", "setTcpKeepAlive",
  "startTLS", "loseWriteConnection", "getPeerCertificate", "getHandle",
}
--- pw:abortConnection(), pw:getPeer(), pw:getHost(),
-- pw:registerProducer(p, streaming), pw:unregisterProducer(),
-- pw:pauseProducing(), pw:resumeProducing(), pw:stopProducing(),
-- pw:stopConsuming(), pw:setTcpNoDelay(b), pw:setTcpKeepAlive(b),
-- pw:startTLS(contextFactory), pw:loseWriteConnection(),
-- pw:getPeerCertificate(), pw:getHandle(): each calls the real
-- transport's method of that name with the same arguments and returns
-- what it returns (see Transport); raises what it raises, and "attempt
-- to call a nil value" when that transport has no such method (a UNIX
-- transport has no setTcpNoDelay). Twisted's ProtocolWrapper forwards
-- them with __getattr__.
for _, name in ipairs(M.TRANSPORT_METHODS) do
  ProtocolWrapper[name] = function(self, ...)
    local t = self.transport
    return t[name](t, ...)
  end
end

--- pw:dataReceived(data): pass data (a string of bytes) to the wrapped
-- protocol's dataReceived; override it to filter or count.
-- twisted policies.ProtocolWrapper.dataReceived.
function ProtocolWrapper:dataReceived(data)
  self.wrappedProtocol:dataReceived(data)
end

--- Forwarded to the wrapped protocol when it has handshakeCompleted (TLS).
function ProtocolWrapper:handshakeCompleted()
  local p = self.wrappedProtocol
  if p and p.handshakeCompleted then p:handshakeCompleted() end
end

--- pw:connectionLost(reason): unregister from the factory, then pass
-- reason (a Failure: ConnectionDone for a clean close) to the wrapped
-- protocol. twisted policies.ProtocolWrapper.connectionLost.
function ProtocolWrapper:connectionLost(reason)
  self.factory:unregisterProtocol(self)
  local p = self.wrappedProtocol
  if p ~= nil then p:connectionLost(reason) end
end

--- WrappingFactory(wrappedFactory): a ClientFactory (usable by servers
-- too) whose protocols are self.protocol(self, wrappedFactory's
-- protocol), ProtocolWrapper by default; tracks live wrappers in
-- self.protocols (a set). twisted policies.WrappingFactory.
local WrappingFactory = protocol.ClientFactory:extend({
  __name = "WrappingFactory", protocol = ProtocolWrapper})

function WrappingFactory:__init(wrappedFactory)
  if type(wrappedFactory) ~= "table" then
    error(("bad argument #1 to 'WrappingFactory' (factory expected, got %s)")
      :format(type(wrappedFactory)), 3)
  end
  self.wrappedFactory = wrappedFactory
  self.protocols = {}
end

--- wf:logPrefix() -> "<wrapped factory class name> (WrappingFactory)"
-- (the subclass's name in place of WrappingFactory).
-- twisted policies.WrappingFactory.logPrefix.
function WrappingFactory:logPrefix()
  local mt = getmetatable(self.wrappedFactory)
  return tostring(mt and mt.__name or "?") .. " (" ..
    tostring(getmetatable(self).__name) .. ")"
end

--- wf:doStart(): start the wrapped factory (its doStart), then this
-- one. Called by the reactor when a port or connector starts using wf.
-- twisted policies.WrappingFactory.doStart.
function WrappingFactory:doStart()
  self.wrappedFactory:doStart()
  protocol.ClientFactory.doStart(self)
end

--- wf:doStop(): stop the wrapped factory (its doStop), then this one.
-- twisted policies.WrappingFactory.doStop.
function WrappingFactory:doStop()
  self.wrappedFactory:doStop()
  protocol.ClientFactory.doStop(self)
end

--- wf:startedConnecting(connector): passed to the wrapped factory.
-- twisted policies.WrappingFactory.startedConnecting.
function WrappingFactory:startedConnecting(connector)
  self.wrappedFactory:startedConnecting(connector)
end

--- wf:clientConnectionFailed(connector, reason): passed to the wrapped
-- factory (reason: a Failure). twisted
-- policies.WrappingFactory.clientConnectionFailed.
function WrappingFactory:clientConnectionFailed(connector, reason)
  self.wrappedFactory:clientConnectionFailed(connector, reason)
end

--- wf:clientConnectionLost(connector, reason): passed to the wrapped
-- factory (reason: a Failure). twisted
-- policies.WrappingFactory.clientConnectionLost.
function WrappingFactory:clientConnectionLost(connector, reason)
  self.wrappedFactory:clientConnectionLost(connector, reason)
end

--- wf:buildProtocol(addr) -> a wrapper around the wrapped factory's
-- protocol, or nil when that factory refuses.
function WrappingFactory:buildProtocol(addr)
  local p = self.wrappedFactory:buildProtocol(addr)
  if p == nil then return nil end
  return self.protocol(self, p)
end

--- wf:registerProtocol(p): add wrapper p to wf.protocols; called by each
-- wrapper when its connection starts.
-- twisted policies.WrappingFactory.registerProtocol.
function WrappingFactory:registerProtocol(p)
  self.protocols[p] = true
end

--- wf:unregisterProtocol(p): remove wrapper p from wf.protocols; called
-- by each wrapper when its connection ends.
-- twisted policies.WrappingFactory.unregisterProtocol.
function WrappingFactory:unregisterProtocol(p)
  self.protocols[p] = nil
end

---------------------------------------------------------------------------
-- ThrottlingFactory

--- ThrottlingProtocol: counts bytes for its ThrottlingFactory and pauses
-- reading (the transport) or writing (the registered producer) when told.
local ThrottlingProtocol = ProtocolWrapper:extend({
  __name = "ThrottlingProtocol"})

--- tp:write(data): count #data bytes as written (the factory's
-- registerWritten), then write. twisted policies.ThrottlingProtocol.write.
function ThrottlingProtocol:write(data)
  self.factory:registerWritten(#data)
  ProtocolWrapper.write(self, data)
end

--- tp:writeSequence(list): count the bytes of all strings of list as
-- written, then write them. twisted
-- policies.ThrottlingProtocol.writeSequence.
function ThrottlingProtocol:writeSequence(seq)
  local n = 0
  for _, s in ipairs(seq) do n = n + #s end
  self.factory:registerWritten(n)
  ProtocolWrapper.writeSequence(self, seq)
end

--- tp:dataReceived(data): count #data bytes as read (the factory's
-- registerRead), then pass data on. twisted
-- policies.ThrottlingProtocol.dataReceived.
function ThrottlingProtocol:dataReceived(data)
  self.factory:registerRead(#data)
  ProtocolWrapper.dataReceived(self, data)
end

--- tp:registerProducer(producer, streaming): remember producer (so
-- throttleWrites can pause it), then register it with the transport.
-- twisted policies.ThrottlingProtocol.registerProducer.
function ThrottlingProtocol:registerProducer(producer, streaming)
  self.producer = producer
  ProtocolWrapper.registerProducer(self, producer, streaming)
end

--- tp:unregisterProducer(): forget the producer and unregister it from
-- the transport. twisted policies.ThrottlingProtocol.unregisterProducer.
function ThrottlingProtocol:unregisterProducer()
  self.producer = nil
  ProtocolWrapper.unregisterProducer(self)
end

--- tp:throttleReads(): stop reading from the transport
-- (pauseProducing). twisted policies.ThrottlingProtocol.throttleReads.
function ThrottlingProtocol:throttleReads()
  self.transport:pauseProducing()
end

--- tp:unthrottleReads(): read from the transport again
-- (resumeProducing). twisted policies.ThrottlingProtocol.unthrottleReads.
function ThrottlingProtocol:unthrottleReads()
  self.transport:resumeProducing()
end

--- tp:throttleWrites(): pause the registered producer, if any.
-- twisted policies.ThrottlingProtocol.throttleWrites.
function ThrottlingProtocol:throttleWrites()
  if self.producer ~= nil then self.producer:pauseProducing() end
end

--- tp:unthrottleWrites(): resume the registered producer, if any.
-- twisted policies.ThrottlingProtocol.unthrottleWrites.
function ThrottlingProtocol:unthrottleWrites()
  if self.producer ~= nil then self.producer:resumeProducing() end
end

--- ThrottlingFactory(wrappedFactory[, maxConnectionCount=math.huge]
-- [, readLimit][, writeLimit]): refuse connections past
-- maxConnectionCount (buildProtocol returns nil: the connection is
-- closed), and keep the bytes read or written per second by all its
-- connections under readLimit / writeLimit (bytes per second; nil: no
-- limit) by pausing the transports (reads) or their producers (writes)
-- once a second's budget is spent, for the time the excess is worth.
-- Field clock: the reactor unless set (a task.Clock in tests).
-- twisted policies.ThrottlingFactory, same accounting.
local ThrottlingFactory = WrappingFactory:extend({
  __name = "ThrottlingFactory", protocol = ThrottlingProtocol})

function ThrottlingFactory:__init(wrappedFactory, maxConnectionCount,
    readLimit, writeLimit)
  WrappingFactory.__init(self, wrappedFactory)
  self.connectionCount = 0
  self.maxConnectionCount = maxConnectionCount or math.huge
  self.readLimit, self.writeLimit = readLimit, writeLimit
  self.readThisSecond, self.writtenThisSecond = 0, 0
end

--- tf:callLater(period, f): the clock's callLater (override in tests).
function ThrottlingFactory:callLater(period, f)
  local clock = self.clock or reactor()
  return clock:callLater(period, f)
end

--- tf:registerWritten(length): add length (bytes) to this second's
-- written count. twisted policies.ThrottlingFactory.registerWritten.
function ThrottlingFactory:registerWritten(length)
  self.writtenThisSecond = self.writtenThisSecond + length
end

--- tf:registerRead(length): add length (bytes) to this second's read
-- count. twisted policies.ThrottlingFactory.registerRead.
function ThrottlingFactory:registerRead(length)
  self.readThisSecond = self.readThisSecond + length
end

--- tf:checkReadBandwidth(): once a second: over the limit, pause reads
-- for (read / limit - 1) seconds.
function ThrottlingFactory:checkReadBandwidth()
  if self.readThisSecond > self.readLimit then
    self:throttleReads()
    local throttleTime = self.readThisSecond / self.readLimit - 1.0
    self.unthrottleReadsID = self:callLater(throttleTime, function()
      self:unthrottleReads()
    end)
  end
  self.readThisSecond = 0
  self.checkReadBandwidthID = self:callLater(1, function()
    self:checkReadBandwidth()
  end)
end

--- tf:checkWriteBandwidth(): once a second: over writeLimit, pause
-- writes for (written / limit - 1) seconds; resets the count.
-- twisted policies.ThrottlingFactory.checkWriteBandwidth.
function ThrottlingFactory:checkWriteBandwidth()
  if self.writtenThisSecond > self.writeLimit then
    self:throttleWrites()
    local throttleTime = self.writtenThisSecond / self.writeLimit - 1.0
    self.unthrottleWritesID = self:callLater(throttleTime, function()
      self:unthrottleWrites()
    end)
  end
  self.writtenThisSecond = 0
  self.checkWriteBandwidthID = self:callLater(1, function()
    self:checkWriteBandwidth()
  end)
end

local function each(self, method)
  local list = {}
  for p in pairs(self.protocols) do list[#list + 1] = p end
  for _, p in ipairs(list) do p[method](p) end
end

--- tf:throttleReads(): log it and throttle reads on every live
-- connection. twisted policies.ThrottlingFactory.throttleReads.
function ThrottlingFactory:throttleReads()
  log.msg(("Throttling reads on %s"):format(tostring(self)))
  each(self, "throttleReads")
end

--- tf:unthrottleReads(): log it and let every live connection read
-- again. twisted policies.ThrottlingFactory.unthrottleReads.
function ThrottlingFactory:unthrottleReads()
  self.unthrottleReadsID = nil
  log.msg(("Stopped throttling reads on %s"):format(tostring(self)))
  each(self, "unthrottleReads")
end

--- tf:throttleWrites(): log it and pause the producers of every live
-- connection. twisted policies.ThrottlingFactory.throttleWrites.
function ThrottlingFactory:throttleWrites()
  log.msg(("Throttling writes on %s"):format(tostring(self)))
  each(self, "throttleWrites")
end

--- tf:unthrottleWrites(): log it and resume the producers of every live
-- connection. twisted policies.ThrottlingFactory.unthrottleWrites.
function ThrottlingFactory:unthrottleWrites()
  self.unthrottleWritesID = nil
  log.msg(("Stopped throttling writes on %s"):format(tostring(self)))
  each(self, "unthrottleWrites")
end

--- tf:buildProtocol(addr) -> a ThrottlingProtocol, or nil (logged: "Max
-- connection count reached!") when maxConnectionCount connections are
-- open. The first connection starts the once-a-second bandwidth checks.
-- twisted policies.ThrottlingFactory.buildProtocol.
function ThrottlingFactory:buildProtocol(addr)
  if self.connectionCount == 0 then
    if self.readLimit ~= nil then self:checkReadBandwidth() end
    if self.writeLimit ~= nil then self:checkWriteBandwidth() end
  end
  if self.connectionCount < self.maxConnectionCount then
    local p = WrappingFactory.buildProtocol(self, addr)
    if p ~= nil then self.connectionCount = self.connectionCount + 1 end
    return p
  end
  log.msg("Max connection count reached!")
  return nil
end

local function cancelIfActive(self, field)
  local dc = self[field]
  if dc ~= nil then
    if dc:active() then dc:cancel() end
    self[field] = nil
  end
end

--- tf:unregisterProtocol(p): forget wrapper p; when the last connection
-- ends, cancel the bandwidth checks and pending unthrottles.
-- twisted policies.ThrottlingFactory.unregisterProtocol.
function ThrottlingFactory:unregisterProtocol(p)
  WrappingFactory.unregisterProtocol(self, p)
  self.connectionCount = self.connectionCount - 1
  if self.connectionCount == 0 then
    cancelIfActive(self, "unthrottleReadsID")
    cancelIfActive(self, "checkReadBandwidthID")
    cancelIfActive(self, "unthrottleWritesID")
    cancelIfActive(self, "checkWriteBandwidthID")
  end
end

---------------------------------------------------------------------------
-- LimitTotalConnectionsFactory

--- LimitTotalConnectionsFactory: a ServerFactory allowing at most
-- connectionLimit (nil: any number) connections at once; past it, each
-- new connection gets an overflowProtocol instance if one is set, else
-- is refused. Subclass it (or set fields) with protocol, connectionLimit,
-- overflowProtocol. Field connectionCount. twisted
-- policies.LimitTotalConnectionsFactory.
local LimitTotalConnectionsFactory = protocol.ServerFactory:extend({
  __name = "LimitTotalConnectionsFactory"})
LimitTotalConnectionsFactory.connectionCount = 0
LimitTotalConnectionsFactory.connectionLimit = nil
LimitTotalConnectionsFactory.overflowProtocol = nil

--- ltf:buildProtocol(addr) -> a ProtocolWrapper around self.protocol(),
-- or around self.overflowProtocol() past connectionLimit, or nil (the
-- connection is refused) past it with no overflowProtocol.
-- twisted policies.LimitTotalConnectionsFactory.buildProtocol.
function LimitTotalConnectionsFactory:buildProtocol(addr)
  local wrapped
  if self.connectionLimit == nil or
      self.connectionCount < self.connectionLimit then
    wrapped = self.protocol()
  elseif self.overflowProtocol == nil then
    return nil
  else
    wrapped = self.overflowProtocol()
  end
  wrapped.factory = self
  local p = ProtocolWrapper(self, wrapped)
  self.connectionCount = self.connectionCount + 1
  return p
end

--- ltf:registerProtocol(p): nothing (buildProtocol already counted the
-- connection). twisted
-- policies.LimitTotalConnectionsFactory.registerProtocol.
function LimitTotalConnectionsFactory:registerProtocol(p) end -- luacheck: ignore

--- ltf:unregisterProtocol(p): one connection fewer in connectionCount.
-- twisted policies.LimitTotalConnectionsFactory.unregisterProtocol.
function LimitTotalConnectionsFactory:unregisterProtocol(p) -- luacheck: ignore
  self.connectionCount = self.connectionCount - 1
end

---------------------------------------------------------------------------
-- TimeoutMixin

--- TimeoutMixin: methods that drop a connection idle for timeOut
-- seconds. Mix them into a protocol class with
-- TimeoutMixin.mixInto(P) (or policies.mixin(P, TimeoutMixin)); then
-- call self:setTimeout(seconds) (in connectionMade, say),
-- self:resetTimeout() on activity (in dataReceived), and
-- self:setTimeout(nil) in connectionLost. When the time passes,
-- timeoutConnection() runs: by default transport:loseConnection().
-- callLater(period, f) uses self.clock (the reactor unless set).
-- twisted policies.TimeoutMixin.
local TimeoutMixin = {}
TimeoutMixin.timeOut = nil

--- callLater(period, f) -> DelayedCall on self.clock or the reactor.
function TimeoutMixin:callLater(period, f)
  local clock = self.clock or reactor()
  return clock:callLater(period, f)
end

--- resetTimeout(): restart the idle countdown (call on activity).
function TimeoutMixin:resetTimeout()
  local call = rawget(self, "_timeoutCall")
  if call ~= nil and self.timeOut ~= nil then call:reset(self.timeOut) end
end

--- setTimeout(period) -> the previous timeout: period in seconds, or nil
-- to cancel the countdown.
function TimeoutMixin:setTimeout(period)
  if period ~= nil and type(period) ~= "number" then
    error(("bad argument #1 to 'setTimeout' (number expected, got %s)")
      :format(type(period)), 2)
  end
  local prev = self.timeOut
  self.timeOut = period
  local call = rawget(self, "_timeoutCall")
  if call ~= nil then
    if period == nil then
      if call:active() then call:cancel() end
      rawset(self, "_timeoutCall", nil)
    elseif call:active() then
      call:reset(period)
    end
  elseif period ~= nil then
    rawset(self, "_timeoutCall", self:callLater(period, function()
      rawset(self, "_timeoutCall", nil)
      self:timeoutConnection()
    end))
  end
  return prev
end

--- timeoutConnection(): the connection was idle too long; override it to
-- say goodbye first.
function TimeoutMixin:timeoutConnection()
  self.transport:loseConnection()
end

--- policies.mixin(cls, mixin) -> cls: copy the mixin's fields into the
-- class, except those the class itself defines (as Python's method
-- resolution puts the class first).
function M.mixin(cls, mixin)
  for k, v in pairs(mixin) do
    if k ~= "mixInto" and rawget(cls, k) == nil then rawset(cls, k, v) end
  end
  return cls
end

--- TimeoutMixin.mixInto(cls) -> cls: policies.mixin(cls, TimeoutMixin).
function TimeoutMixin.mixInto(cls)
  return M.mixin(cls, TimeoutMixin)
end

--- TimeoutProtocol / TimeoutFactory(wrappedFactory[, timeoutPeriod=1800]):
-- wrap any factory so its connections drop after timeoutPeriod seconds
-- without traffic either way. twisted policies.TimeoutFactory.
local TimeoutProtocol = ProtocolWrapper:extend({__name = "TimeoutProtocol"})
M.mixin(TimeoutProtocol, TimeoutMixin)

function TimeoutProtocol:__init(factory, wrappedProtocol, timeoutPeriod)
  ProtocolWrapper.__init(self, factory, wrappedProtocol)
  self.clock = factory.clock
  self:setTimeout(timeoutPeriod)
end

--- tp:write(data): restart the idle countdown, then write.
-- twisted policies.TimeoutProtocol.write.
function TimeoutProtocol:write(data)
  self:resetTimeout()
  ProtocolWrapper.write(self, data)
end

--- tp:writeSequence(list): restart the idle countdown, then write list.
-- twisted policies.TimeoutProtocol.writeSequence.
function TimeoutProtocol:writeSequence(seq)
  self:resetTimeout()
  ProtocolWrapper.writeSequence(self, seq)
end

--- tp:dataReceived(data): restart the idle countdown, then pass data on.
-- twisted policies.TimeoutProtocol.dataReceived.
function TimeoutProtocol:dataReceived(data)
  self:resetTimeout()
  ProtocolWrapper.dataReceived(self, data)
end

--- tp:connectionLost(reason): cancel the countdown, then as
-- ProtocolWrapper. twisted policies.TimeoutProtocol.connectionLost.
function TimeoutProtocol:connectionLost(reason)
  self:setTimeout(nil)
  ProtocolWrapper.connectionLost(self, reason)
end

--- tp:timeoutConnection(): idle for timeoutPeriod seconds: abort the
-- connection (abortConnection: unsent data is dropped). Twisted's
-- TimeoutProtocol.timeoutFunc calls loseConnection instead, which waits
-- for buffered data a stalled peer may never read.
function TimeoutProtocol:timeoutConnection()
  self.transport:abortConnection()
end

local TimeoutFactory = WrappingFactory:extend({__name = "TimeoutFactory",
  protocol = TimeoutProtocol})

function TimeoutFactory:__init(wrappedFactory, timeoutPeriod)
  WrappingFactory.__init(self, wrappedFactory)
  self.timeoutPeriod = timeoutPeriod or 30 * 60
end

--- tof:buildProtocol(addr) -> a TimeoutProtocol around the wrapped
-- factory's protocol with this factory's timeoutPeriod, or nil when the
-- wrapped factory refuses. twisted policies.TimeoutFactory.buildProtocol.
function TimeoutFactory:buildProtocol(addr)
  local p = self.wrappedFactory:buildProtocol(addr)
  if p == nil then return nil end
  return self.protocol(self, p, self.timeoutPeriod)
end

M.ProtocolWrapper = ProtocolWrapper
M.WrappingFactory = WrappingFactory
M.ThrottlingProtocol = ThrottlingProtocol
M.ThrottlingFactory = ThrottlingFactory
M.LimitTotalConnectionsFactory = LimitTotalConnectionsFactory
M.TimeoutMixin = TimeoutMixin
M.TimeoutProtocol = TimeoutProtocol
M.TimeoutFactory = TimeoutFactory

return require("spindle._core").strict("policies", M)
