--- spindle.application: services, as twisted.application.service and
-- twisted.application.internet. A service is something that starts and
-- stops with the program (a listening port, a timer, a client that keeps
-- one connection up); services nest in a MultiService, and an Application
-- is the root of the tree that the reactor starts and stops.
--
--   local application = require("spindle.application")
--   local app = application.Application("chatserver")
--   application.TCPServer(1025, factory):setServiceParent(app)
--   reactor.run()  -- starts app once running, stops it on shutdown
--
-- The names are also grouped as Twisted groups them:
-- application.service (Service, MultiService, Application,
-- IServiceCollection, IService) and application.internet (TCPServer,
-- TCPClient, SSLServer, SSLClient, UNIXServer, UNIXClient,
-- StreamServerEndpointService, TimerService, ClientService,
-- backoffPolicy).
--
-- Deviation from Twisted: there is no twistd. Application(name) itself
-- asks the reactor to start the tree once it runs (reactor.run or
-- task.react; at the next turn if it is running already) and to stop it
-- in the 'before shutdown' phase, waiting for the Deferred stopService
-- returns, which is what `twistd -y` does with the module's `application`.
local Object = require("spindle.class").Object
local defer = require("spindle.defer")
local log = require("spindle.log")
local task = require("spindle.task")

local M = {}

local function reactor()
  return require("spindle.reactor")
end

local function typeError(n, fname, expected, got)
  error(("bad argument #%d to '%s' (%s expected, got %s)"):format(n, fname,
    expected, type(got)), 3)
end

local function isCallable(f)
  local mt = getmetatable(f)
  return type(f) == "function" or (type(mt) == "table" and mt.__call ~= nil)
end

---------------------------------------------------------------------------
-- Service, MultiService

--- Service: the base of every service. Fields: name (nil or a string),
-- parent (the MultiService holding it), running (boolean).
-- twisted.application.service.Service.
local Service = Object:extend({__name = "Service"})
Service.name = nil
Service.parent = nil
Service.running = false

--- s:setName(name): name the service; raises if it already has a parent
-- (a parent indexes its children by name).
function Service:setName(name)
  if self.parent ~= nil then
    error("cannot change name when parent exists", 2)
  end
  self.name = name
end

--- s:setServiceParent(parent) -> whatever parent:addService returns:
-- move the service under parent (a MultiService or Application); starts
-- it if parent is running.
function Service:setServiceParent(parent)
  if type(parent) ~= "table" or parent.addService == nil then
    typeError(1, "setServiceParent", "service collection", parent)
  end
  if self.parent ~= nil then self:disownServiceParent() end
  self.parent = parent
  return parent:addService(self)
end

--- s:disownServiceParent() -> nil or a Deferred: leave the parent
-- (stopping the service if the parent runs; the Deferred of its
-- stopService).
function Service:disownServiceParent()
  local d = self.parent:removeService(self)
  self.parent = nil
  return d
end

--- s:privilegedStartService(): the part of starting done before
-- privileges would be dropped (binding ports). Override it.
function Service:privilegedStartService() end

--- s:startService(): mark running. Subclasses call Service.startService.
function Service:startService()
  self.running = true
end

--- s:stopService() -> nil or Deferred: mark stopped; a subclass returns a
-- Deferred when stopping takes time.
function Service:stopService()
  self.running = false
end

function Service:__tostring()
  return ("<%s %s>"):format(getmetatable(self).__name or "Service",
    tostring(self.name))
end

--- MultiService: a service holding services; starting or stopping it
-- starts or stops them (stopping in reverse order). Iterate with
-- ms:iterServices() (or ipairs(ms.services)).
-- twisted.application.service.MultiService.
local MultiService = Service:extend({__name = "MultiService"})

function MultiService:__init()
  self.services = {}
  self.namedServices = {}
end

--- ms:privilegedStartService(): this service's, then each child's
-- privilegedStartService, in the order they were added. twisted
-- MultiService.privilegedStartService.
function MultiService:privilegedStartService()
  Service.privilegedStartService(self)
  for _, s in ipairs(self.services) do s:privilegedStartService() end
end

--- ms:startService(): mark running, then start each child in the order
-- they were added. twisted MultiService.startService.
function MultiService:startService()
  Service.startService(self)
  for _, s in ipairs(self.services) do s:startService() end
end

--- ms:stopService() -> Deferred fired (with a DeferredList result) when
-- every child has stopped, children stopped last-added first.
function MultiService:stopService()
  Service.stopService(self)
  local l = {}
  for i = #self.services, 1, -1 do
    local s = self.services[i]
    l[#l + 1] = defer.maybeDeferred(s.stopService, s)
  end
  return defer.DeferredList(l)
end

--- ms:getServiceNamed(name) -> the child of that name; raises if none.
function MultiService:getServiceNamed(name)
  local s = self.namedServices[name]
  if s == nil then
    error(("no service named %q"):format(tostring(name)), 2)
  end
  return s
end

--- ms:iterServices() -> iterator over the children, in order added.
function MultiService:iterServices()
  local i = 0
  return function()
    i = i + 1
    return self.services[i]
  end
end

--- ms:addService(service): add a child (use service:setServiceParent(ms),
-- which calls this); starts it at once when ms runs. Raises if a child
-- of the same name exists.
function MultiService:addService(service)
  if service.name ~= nil then
    if self.namedServices[service.name] ~= nil then
      error("cannot have two services with same name '" ..
        tostring(service.name) .. "'", 2)
    end
    self.namedServices[service.name] = service
  end
  self.services[#self.services + 1] = service
  if self.running then
    service:privilegedStartService()
    service:startService()
  end
end

--- ms:removeService(service) -> nil or the Deferred of the child's
-- stopService when ms runs.
function MultiService:removeService(service)
  if service.name ~= nil then self.namedServices[service.name] = nil end
  for i, s in ipairs(self.services) do
    if s == service then
      table.remove(self.services, i)
      break
    end
  end
  if self.running then
    return defer.maybeDeferred(service.stopService, service)
  end
end

--- Application(name[, uid][, gid]) -> the root service of a program.
-- twisted.application.service.Application (there a Componentized with
-- a MultiService; here the MultiService itself). The reactor starts it
-- once running and stops it before shutdown (see the module's note).
local Application = MultiService:extend({__name = "Application"})

--- application.startApplication(app[, save]): what twistd does with a
-- service tree: privilegedStartService now, startService once the
-- reactor runs, stopService in the 'before shutdown' phase (the reactor
-- waits for its Deferred). Application() calls it for you; call it for
-- a tree whose root is not an Application. A second call for the same
-- tree does nothing. twisted.application.app.startApplication.
function M.startApplication(app)
  if type(app) ~= "table" or app.startService == nil then
    typeError(1, "startApplication", "service", app)
  end
  if rawget(app, "_spindleStarted") then return end
  rawset(app, "_spindleStarted", true)
  local r = reactor()
  local function start()
    app:privilegedStartService()
    app:startService()
  end
  local stopped = false
  r.addSystemEventTrigger("before", "shutdown", function()
    if stopped or not app.running then return end
    stopped = true
    return app:stopService()
  end)
  if r.running then
    r.callLater(0, start)
  else
    r.callWhenRunning(start)
  end
end

function Application:__init(name, uid, gid)
  MultiService.__init(self)
  if name ~= nil and type(name) ~= "string" then
    typeError(1, "Application", "string", name)
  end
  self.name = name
  self.uid, self.gid = uid, gid
  M.startApplication(self)
end

--- IServiceCollection(app), IService(app) -> app: Twisted adapts an
-- Application to these interfaces; here it already is both.
local function identity(x) return x end

---------------------------------------------------------------------------
-- Servers and clients on the reactor

-- _AbstractServer: a port made by reactor[method](table.unpack(args)),
-- bound in privilegedStartService, closed in stopService.
local AbstractServer = Service:extend({__name = "_AbstractServer"})

function AbstractServer:__init(...)
  self.args = table.pack(...)
end

function AbstractServer:_getPort()
  local r = reactor()
  return r[self.method](table.unpack(self.args, 1, self.args.n))
end

--- server:privilegedStartService(): bind the port now (reactor.listenTCP,
-- listenSSL or listenUNIX with the constructor's arguments), before
-- privileges are dropped; raises CannotListenError as that call does.
-- twisted.application.internet._AbstractServer.privilegedStartService.
function AbstractServer:privilegedStartService()
  Service.privilegedStartService(self)
  self._port = self:_getPort()
end

--- server:startService(): mark running, and bind the port unless
-- privilegedStartService already did; raises CannotListenError as the
-- listen call does. twisted _AbstractServer.startService.
function AbstractServer:startService()
  Service.startService(self)
  if self._port == nil then self._port = self:_getPort() end
end

--- server:stopService() -> Deferred fired once the port is closed.
function AbstractServer:stopService()
  Service.stopService(self)
  if self._port ~= nil then
    local d = self._port:stopListening()
    self._port = nil
    return d
  end
end

--- TCPServer(port, factory[, backlog][, interface]): reactor.listenTCP as
-- a service. SSLServer(port, factory, contextFactory[, backlog]
-- [, interface]), UNIXServer(path, factory[, ...]) likewise.
-- twisted.application.internet.TCPServer and friends.
local TCPServer = AbstractServer:extend({__name = "TCPServer",
  method = "listenTCP"})
local SSLServer = AbstractServer:extend({__name = "SSLServer",
  method = "listenSSL"})
local UNIXServer = AbstractServer:extend({__name = "UNIXServer",
  method = "listenUNIX"})

-- _AbstractClient: a connector started in startService and disconnected
-- in stopService.
local AbstractClient = Service:extend({__name = "_AbstractClient"})

function AbstractClient:__init(...)
  self.args = table.pack(...)
end

--- client:startService(): mark running and start connecting
-- (reactor.connectTCP, connectSSL or connectUNIX with the constructor's
-- arguments); the factory hears how it goes. twisted
-- _AbstractClient.startService.
function AbstractClient:startService()
  Service.startService(self)
  local r = reactor()
  self._connection = r[self.method](table.unpack(self.args, 1,
    self.args.n))
end

--- client:stopService(): mark stopped and disconnect the connector (the
-- connection, or the attempt). twisted _AbstractClient.stopService.
function AbstractClient:stopService()
  Service.stopService(self)
  if self._connection ~= nil then
    self._connection:disconnect()
    self._connection = nil
  end
end

--- TCPClient(host, port, factory[, timeout][, bindAddress]),
-- SSLClient(host, port, factory, contextFactory[, timeout]),
-- UNIXClient(path, factory[, timeout]): one connection as a service.
local TCPClient = AbstractClient:extend({__name = "TCPClient",
  method = "connectTCP"})
local SSLClient = AbstractClient:extend({__name = "SSLClient",
  method = "connectSSL"})
local UNIXClient = AbstractClient:extend({__name = "UNIXClient",
  method = "connectUNIX"})

--- StreamServerEndpointService(endpoint, factory): listen on a server
-- endpoint while running. A listen failure is logged (or, with
-- _raiseSynchronously set, raised from privilegedStartService when it
-- fails at once). twisted StreamServerEndpointService.
local StreamServerEndpointService = Service:extend({
  __name = "StreamServerEndpointService"})

function StreamServerEndpointService:__init(endpoint, factory)
  self.endpoint, self.factory = endpoint, factory
  self._waitingForPort = nil
  self._raiseSynchronously = false
end

--- sses:privilegedStartService(): listen on the endpoint with the
-- factory (binding a low port before privileges are dropped). A failure
-- is logged, or raised here when _raiseSynchronously is set and the
-- endpoint failed at once. twisted
-- StreamServerEndpointService.privilegedStartService.
function StreamServerEndpointService:privilegedStartService()
  Service.privilegedStartService(self)
  local d = self.endpoint:listen(self.factory)
  self._waitingForPort = d
  local raised
  d:addErrback(function(f)
    if self._raiseSynchronously then
      raised = f
    else
      log.err(f, "StreamServerEndpointService failed to listen")
    end
  end)
  if raised ~= nil then raised:raiseException() end
end

--- sses:startService(): mark running, and listen unless
-- privilegedStartService already did. twisted
-- StreamServerEndpointService.startService.
function StreamServerEndpointService:startService()
  Service.startService(self)
  if self._waitingForPort == nil then self:privilegedStartService() end
end

--- sses:stopService() -> Deferred fired once the port (if any) stopped
-- listening; cancels a listen still in progress.
function StreamServerEndpointService:stopService()
  local d = self._waitingForPort
  if d == nil then
    Service.stopService(self)
    return defer.succeed(nil)
  end
  self._waitingForPort = nil
  d:cancel()
  d:addCallback(function(port)
    if port ~= nil then return port:stopListening() end
  end)
  d:addBoth(function(passthrough)
    self.running = false
    return passthrough
  end)
  return d
end

--- TimerService(step, f, ...): call f(...) every `step` seconds while
-- running (a task.LoopingCall, first call at start). An error in f is
-- logged and ends the loop. Field clock: the reactor unless set.
-- twisted.application.internet.TimerService.
local TimerService = Service:extend({__name = "TimerService"})

function TimerService:__init(step, f, ...)
  if type(step) ~= "number" then
    typeError(1, "TimerService", "number", step)
  end
  if not isCallable(f) then typeError(2, "TimerService", "callable", f) end
  self.step, self.call = step, {f = f, args = table.pack(...)}
  self.clock = nil
end

--- ts:startService(): mark running and start the LoopingCall on
-- ts.clock (the reactor unless set), calling f at once and then every
-- step seconds; an error in f is logged and ends the loop. twisted
-- TimerService.startService.
function TimerService:startService()
  Service.startService(self)
  local loop = task.LoopingCall(self.call.f,
    table.unpack(self.call.args, 1, self.call.args.n))
  loop.clock = self.clock or reactor()
  self._loop = loop
  self._loopFinished = loop:start(self.step, true)
  self._loopFinished:addErrback(function(why)
    loop.running = false
    log.err(why)
  end)
end

--- ts:stopService() -> Deferred fired when the loop has ended.
function TimerService:stopService()
  if self._loop.running then self._loop:stop() end
  return self._loopFinished:addCallback(function()
    Service.stopService(self)
  end)
end

---------------------------------------------------------------------------
-- ClientService

--- backoffPolicy([initialDelay=1][, maxDelay=60][, factor=1.5]
-- [, jitter=math.random]) -> policy(attempt) -> seconds:
-- min(initialDelay * factor ^ min(100, attempt), maxDelay) + jitter().
-- twisted.application.internet.backoffPolicy, same defaults.
function M.backoffPolicy(initialDelay, maxDelay, factor, jitter)
  initialDelay = initialDelay or 1.0
  maxDelay = maxDelay or 60.0
  factor = factor or 1.5
  jitter = jitter or math.random
  return function(attempt)
    local delay = math.min(initialDelay * factor ^ math.min(100, attempt),
      maxDelay)
    if delay ~= delay then delay = maxDelay end
    return delay + jitter()
  end
end

--- ClientService(endpoint, factory[, retryPolicy][, clock]
-- [, prepareConnection]): keep one connection to a client endpoint up
-- while running: connect at start, and after a failed attempt or a lost
-- connection wait retryPolicy(failedAttempts) seconds (default
-- backoffPolicy(): 1 s growing by 1.5 up to 60 s, plus up to 1 s of
-- jitter) and try again. prepareConnection(protocol), if given, runs
-- after each connect; if it raises or its Deferred fails the attempt
-- counts as failed and the connection is closed (Twisted leaves such a
-- connection open and unused). The five arguments may also be given as
-- one options table {endpoint=, factory=, retryPolicy=, clock=,
-- prepareConnection=}.
-- twisted.application.internet.ClientService (its state machine,
-- written out).
local ClientService = Service:extend({__name = "ClientService"})

function ClientService:__init(endpoint, factory, retryPolicy, clock,
    prepareConnection)
  if type(endpoint) ~= "table" and type(endpoint) ~= "userdata" then
    typeError(1, "ClientService", "endpoint", endpoint)
  end
  if factory == nil then typeError(2, "ClientService", "factory", factory) end
  self.endpoint, self.factory = endpoint, factory
  self._retryPolicy = retryPolicy or M.backoffPolicy()
  self._clock = clock or reactor()
  self._prepareConnection = prepareConnection
  self._state = "init"
  self._failedAttempts = 0
  self._awaiting = {}
  self._stopWaiters = {}
end

-- Fire every whenConnected Deferred with value (a protocol or Failure).
function ClientService:_unawait(value)
  local waiting = self._awaiting
  self._awaiting = {}
  for _, w in ipairs(waiting) do
    if require("spindle.failure").isFailure(value) then
      w.d:errback(value)
    else
      w.d:callback(value)
    end
  end
end

function ClientService:_cancelled()
  return require("spindle.failure").Failure(defer.CancelledError(
    "the ClientService was stopped"))
end

function ClientService:_finishStopping()
  local waiting = self._stopWaiters
  self._stopWaiters = {}
  for _, w in ipairs(waiting) do w:callback(nil) end
end

function ClientService:_waitForStop()
  local d = defer.Deferred()
  self._stopWaiters[#self._stopWaiters + 1] = d
  return d
end

-- A connection attempt: the user's factory, with each protocol it builds
-- telling the service when its connection is lost (twisted
-- _DisconnectFactory and _ReconnectingProtocolProxy, without the proxy:
-- the instance's connectionLost is wrapped instead).
function ClientService:_connect()
  self._state = "connecting"
  local service = self
  local proxy = require("spindle.protocol")._buildThrough(self.factory,
    function(p)
      local lost = p.connectionLost
      rawset(p, "connectionLost", function(self2, reason)
        rawset(self2, "connectionLost", nil)
        local ok, err = pcall(lost, self2, reason)
        service:_clientDisconnected(self2)
        if not ok then error(err, 0) end
      end)
    end)
  local d = defer.maybeDeferred(self.endpoint.connect, self.endpoint, proxy)
  self._connectionInProgress = d
  d:addCallback(function(p)
    if self._prepareConnection == nil then return p end
    return defer.maybeDeferred(self._prepareConnection, p):addCallbacks(
      function() return p end, function(f)
        -- Rejected: closed here (Twisted leaves it open, unused).
        if p.transport then p.transport:loseConnection() end
        return f
      end)
  end)
  d:addCallbacks(function(p) self:_connectionMade(p) end,
    function(f) self:_connectionFailed(f) end)
end

function ClientService:_connectionMade(p)
  if self._state == "connecting" then
    self._state = "connected"
    self._failedAttempts = 0
    self._currentConnection = p
    self:_unawait(p)
  elseif p.transport then
    -- Stopped meanwhile (a cancel that came too late): drop it.
    p.transport:loseConnection()
  end
end

function ClientService:_connectionFailed(f)
  if self._state == "connecting" then
    self._state = "waiting"
    self:_wait()
    -- Deliver the failure to the waiters that reached their threshold.
    local ready, notReady = {}, {}
    for _, w in ipairs(self._awaiting) do
      if w.remaining == nil then
        notReady[#notReady + 1] = w
      elseif w.remaining <= 1 then
        ready[#ready + 1] = w
      else
        notReady[#notReady + 1] = {d = w.d, remaining = w.remaining - 1}
      end
    end
    self._awaiting = notReady
    for _, w in ipairs(ready) do w.d:errback(f) end
  elseif self._state == "disconnecting" then
    self._state = "stopped"
    self:_unawait(self:_cancelled())
    self:_finishStopping()
  end
end

function ClientService:_wait()
  self._failedAttempts = self._failedAttempts + 1
  local delay = self._retryPolicy(self._failedAttempts)
  log.msg(("Scheduling retry %d to connect %s in %s seconds."):format(
    self._failedAttempts, tostring(self.endpoint), tostring(delay)))
  self._retryCall = self._clock:callLater(delay, function()
    self._retryCall = nil
    if self._state == "waiting" then self:_connect() end
  end)
end

function ClientService:_clientDisconnected(p)
  if p ~= self._currentConnection then return end
  self._currentConnection = nil
  if self._state == "connected" then
    self._state = "waiting"
    self:_wait()
  elseif self._state == "disconnecting" then
    self._state = "stopped"
    self:_unawait(self:_cancelled())
    self:_finishStopping()
  elseif self._state == "restarting" then
    self:_finishStopping()
    self:_connect()
  end
end

--- cs:whenConnected([failAfterFailures]) -> Deferred of the connected
-- protocol: at once when connected, else at the next connection. With
-- failAfterFailures = N it fails with the connection error once N
-- attempts in a row have failed (1: the first failure). Fails with
-- CancelledError if the service is or gets stopped. The argument may
-- also be a table {failAfterFailures = N}.
function ClientService:whenConnected(failAfterFailures)
  if type(failAfterFailures) == "table" then
    failAfterFailures = failAfterFailures.failAfterFailures
  end
  if failAfterFailures ~= nil and type(failAfterFailures) ~= "number" then
    typeError(1, "whenConnected", "number", failAfterFailures)
  end
  if self._state == "connected" then
    return defer.succeed(self._currentConnection)
  elseif self._state == "stopped" then
    return defer.fail(self:_cancelled())
  end
  local d = defer.Deferred()
  self._awaiting[#self._awaiting + 1] = {d = d,
    remaining = failAfterFailures}
  return d
end

--- cs:startService(): begin connecting (no-op when running).
function ClientService:startService()
  if self.running then return end
  Service.startService(self)
  local s = self._state
  if s == "init" or s == "stopped" then
    self:_connect()
  elseif s == "disconnecting" then
    self._state = "restarting"
    self._failedAttempts = 0
  end
end

--- cs:stopService() -> Deferred fired once the connection is closed and
-- any attempt or pending retry is cancelled; whenConnected waiters get
-- CancelledError.
function ClientService:stopService()
  if not self.running then return defer.succeed(nil) end
  Service.stopService(self)
  local s = self._state
  if s == "init" or s == "stopped" then
    self._state = "stopped"
    return defer.succeed(nil)
  elseif s == "connecting" then
    self._state = "disconnecting"
    local d = self:_waitForStop()
    self._connectionInProgress:cancel()
    return d
  elseif s == "waiting" then
    self._state = "stopped"
    local d = self:_waitForStop()
    self:_unawait(self:_cancelled())
    if self._retryCall ~= nil then
      self._retryCall:cancel()
      self._retryCall = nil
    end
    self:_finishStopping()
    return d
  elseif s == "connected" then
    self._state = "disconnecting"
    local d = self:_waitForStop()
    self._currentConnection.transport:loseConnection()
    return d
  else -- disconnecting, restarting
    self._state = "disconnecting"
    return self:_waitForStop()
  end
end

---------------------------------------------------------------------------

M.Service = Service
M.MultiService = MultiService
M.Application = Application
M.IServiceCollection = identity
M.IService = identity
M.TCPServer = TCPServer
M.SSLServer = SSLServer
M.UNIXServer = UNIXServer
M.TCPClient = TCPClient
M.SSLClient = SSLClient
M.UNIXClient = UNIXClient
M.StreamServerEndpointService = StreamServerEndpointService
M.TimerService = TimerService
M.ClientService = ClientService

local strict = require("spindle._core").strict
M.service = strict("application.service", {
  Service = Service, MultiService = MultiService, Application = Application,
  IServiceCollection = identity, IService = identity,
})
M.internet = strict("application.internet", {
  TCPServer = TCPServer, SSLServer = SSLServer, UNIXServer = UNIXServer,
  TCPClient = TCPClient, SSLClient = SSLClient, UNIXClient = UNIXClient,
  StreamServerEndpointService = StreamServerEndpointService,
  TimerService = TimerService, ClientService = ClientService,
  backoffPolicy = M.backoffPolicy,
})

return strict("application", M)
