--- spindle.web's client half (loaded by web.lua, which is the public
-- face): Agent, HTTPConnectionPool, RedirectAgent, Response, readBody,
-- FileBodyProducer, web.get and web.request, after twisted.web.client and
-- twisted.web._newclient. Internal: call the returned function with the
-- web module table and web.lua's shared helpers; it adds the client's
-- names to the table.
local C = require("spindle._http")
local reactor = require("spindle.reactor")
local defer = require("spindle.defer")
local failure = require("spindle.failure")
local protocol = require("spindle.protocol")
local endpoints = require("spindle.endpoints")
local check = require("spindle.check")
local Object = require("spindle.class").Object

local find, sub, lower, format = string.find, string.sub, string.lower,
  string.format
local setmetatable, type = setmetatable, type
local Failure = failure.Failure
local writeChunk, cwrite = C.writeChunk, C.write

return function(M, shared)
  local lastValue, noBodyCode = shared.lastValue, shared.noBodyCode
  local Headers, UNKNOWN_LENGTH = M.Headers, M.UNKNOWN_LENGTH

  -- ================================================================ client

  --- web.urlparse(url) -> {scheme, host, port, path, netloc} or nil,
  -- message: an absolute http or https URL taken apart (path keeps the
  -- query, "/" when empty; the default port by scheme).
  -- twisted.web.client.URI.fromBytes.
  function M.urlparse(url)
    if type(url) ~= "string" then return nil, "URL must be a string" end
    local scheme, rest = url:match("^(%a[%w+.%-]*)://(.*)$")
    if scheme == nil then return nil, "not an absolute URL: " .. url end
    scheme = lower(scheme)
    local netloc, path = rest:match("^([^/?#]*)(.*)$")
    path = path:gsub("#.*$", "")
    if path == "" then path = "/"
    elseif sub(path, 1, 1) == "?" then path = "/" .. path end
    local hostport = netloc:match("@([^@]*)$") or netloc
    local host, port
    if sub(hostport, 1, 1) == "[" then
      host, port = hostport:match("^%[(.-)%]:?(%d*)$")
    else
      host, port = hostport:match("^(.*):(%d+)$")
      if host == nil then host, port = hostport, "" end
    end
    if host == nil or host == "" then return nil, "no host in URL: " .. url end
    port = tonumber(port) or (scheme == "https" and 443 or 80)
    return {scheme = scheme, host = host, port = port, path = path,
      netloc = hostport}
  end

  --- web.urljoin(base, ref) -> ref resolved against the absolute URL base
  -- (a redirect's Location). urllib.parse.urljoin (common cases).
  local function urljoin(base, ref)
    if ref:match("^%a[%w+.%-]*://") then return ref end
    local u = assert(M.urlparse(base))
    local origin = u.scheme .. "://" .. u.netloc
    if sub(ref, 1, 2) == "//" then return u.scheme .. ":" .. ref end
    if sub(ref, 1, 1) == "/" then return origin .. ref end
    local dir = u.path:gsub("%?.*$", ""):gsub("[^/]*$", "")
    if sub(ref, 1, 1) == "?" then
      return origin .. u.path:gsub("%?.*$", "") .. ref
    end
    return origin .. dir .. ref
  end
  M.urljoin = urljoin

  --- Response: what agent:request's Deferred fires with: version
  -- ({"HTTP", 1, minor}), code, phrase, headers (Headers), length (bytes,
  -- or UNKNOWN_LENGTH), request ({method, uri, headers}),
  -- previousResponse (after redirects); deliverBody(protocol).
  -- twisted.web._newclient.Response.
  local Response = Object:extend({__name = "Response"})
  M.Response = Response

  --- response:deliverBody(protocol): the body goes to
  -- protocol:dataReceived(bytes), then protocol:connectionLost(reason),
  -- reason a Failure of web.ResponseDone when it is complete, else of
  -- web.ResponseFailed. Call once. twisted Response.deliverBody.
  function Response:deliverBody(proto)
    if self._bodyProtocol ~= nil then
      error("Response already has protocol", 2)
    end
    self._bodyProtocol = proto
    if proto.makeConnection then proto:makeConnection(nil) end
    local buffered = self._buffered
    self._buffered = nil
    if buffered ~= nil then
      for i = 1, #buffered do proto:dataReceived(buffered[i]) end
    end
    if self._endReason ~= nil then
      proto:connectionLost(self._endReason)
    end
  end

  function Response:_data(chunk)
    local p = self._bodyProtocol
    if p ~= nil then return p:dataReceived(chunk) end
    local b = self._buffered
    if b == nil then b = {}; self._buffered = b end
    b[#b + 1] = chunk
  end

  function Response:_end(reason)
    if self._endReason ~= nil then return end
    self._endReason = reason
    local p = self._bodyProtocol
    if p ~= nil then p:connectionLost(reason) end
  end

  -- Request bodies -------------------------------------------------------

  --- FileBodyProducer(input[, readSize]): a request body read from input:
  -- a string, or a file (io.open) read readSize bytes (64 KiB) at a time;
  -- length is known (a file's from seek). twisted
  -- web.client.FileBodyProducer.
  local FileBodyProducer = Object:extend({__name = "FileBodyProducer"})
  M.FileBodyProducer = FileBodyProducer

  function FileBodyProducer:__init(input, readSize)
    self.readSize = readSize or 64 * 1024
    if type(input) == "string" then
      self._string = input
      self.length = #input
    else
      self._file = input
      local here = input:seek()
      local stop = input:seek("end")
      input:seek("set", here)
      self.length = stop and here and stop - here or UNKNOWN_LENGTH
    end
  end

  --- p:startProducing(consumer) -> Deferred fired when all is written.
  function FileBodyProducer:startProducing(consumer)
    self._consumer = consumer
    self._done = defer.Deferred()
    if self._string ~= nil then
      consumer:write(self._string)
      self._done:callback(nil)
      return self._done
    end
    consumer:registerProducer(self, false)
    return self._done
  end

  --- p:resumeProducing(): the consumer wants more (pull).
  function FileBodyProducer:resumeProducing()
    if self._file == nil then return end
    local data = self._file:read(self.readSize)
    if data ~= nil then self._consumer:write(data) end
    if data == nil or #data < self.readSize then
      self._file = nil
      self._consumer:unregisterProducer()
      if not self._done.called then self._done:callback(nil) end
    end
  end

  --- p:pauseProducing(): as IBodyProducer (a pull producer: nothing).
  function FileBodyProducer:pauseProducing() end

  --- p:stopProducing(): the request is abandoned: read no more.
  function FileBodyProducer:stopProducing()
    self._file = nil
  end

  -- Chunked transfer coding on a transport for a producer of unknown length.
  local ChunkedEncoder = Object:extend({__name = "ChunkedEncoder"})

  function ChunkedEncoder:__init(transport)
    self.transport = transport
  end

  --- enc:write(data): data as one chunk ("<hex>\r\n<data>\r\n").
  function ChunkedEncoder:write(data)
    if #data > 0 then writeChunk(self.transport, data) end
  end

  --- enc:registerProducer(p, streaming): the transport's.
  function ChunkedEncoder:registerProducer(p, streaming)
    self.transport:registerProducer(p, streaming)
  end

  --- enc:unregisterProducer(): the transport's.
  function ChunkedEncoder:unregisterProducer()
    self.transport:unregisterProducer()
  end

  -- Same interface, no coding (a known length).
  local PlainEncoder = ChunkedEncoder:extend({__name = "PlainEncoder"})

  --- enc:write(data): data as it is (a body of known length).
  function PlainEncoder:write(data)
    cwrite(self.transport, data)
  end

  -- The client protocol -----------------------------------------------------

  --- HTTP11ClientProtocol: one client connection; request(req) sends one
  -- request at a time and returns a Deferred of its Response.
  -- twisted.web._newclient.HTTP11ClientProtocol.
  local HTTP11ClientProtocol = protocol.Protocol:extend({
    __name = "HTTP11ClientProtocol",
    state = "QUIESCENT",
  })
  M.HTTP11ClientProtocol = HTTP11ClientProtocol

  --- proto:connectionMade(): make the response parser (runtime/http.c).
  function HTTP11ClientProtocol:connectionMade()
    self._parser = C.ResponseParser()
  end

  -- Format and send a request head.
  local function requestHead(req, bodyLength)
    local parts = {req.method, " ", req.path, " HTTP/1.1\r\n"}
    local h = req.headers
    if not h:hasHeader("host") then
      parts[#parts + 1] = "Host: " .. req.hostHeader .. "\r\n"
    end
    for k, v in pairs(h) do
      local vs = type(v) == "table" and v or {v}
      for _, one in ipairs(vs) do
        if find(one, "[\r\n]") or find(k, "[\r\n:]") then
          error("header " .. k .. " contains a line break or colon", 0)
        end
        parts[#parts + 1] = k .. ": " .. one .. "\r\n"
      end
    end
    if bodyLength == UNKNOWN_LENGTH then
      parts[#parts + 1] = "Transfer-Encoding: chunked\r\n"
    elseif bodyLength ~= nil then
      parts[#parts + 1] = "Content-Length: " .. bodyLength .. "\r\n"
    end
    if not req.persistent then parts[#parts + 1] = "Connection: close\r\n" end
    parts[#parts + 1] = "\r\n"
    return table.concat(parts)
  end

  --- proto:request(req) -> Deferred(Response): req = {method, path,
  -- hostHeader, headers (Headers), bodyProducer, persistent}. Fails with
  -- web.RequestNotSent if a request is already under way, with
  -- web.ResponseNeverReceived when the connection ends before a response
  -- head, web.ResponseFailed on a bad response.
  -- twisted HTTP11ClientProtocol.request.
  function HTTP11ClientProtocol:request(req)
    if self.state ~= "QUIESCENT" or self._lost then
      return defer.fail(M.RequestNotSent("connection busy or closed"))
    end
    self.state = "TRANSMITTING"
    self._req = req
    self._response = nil
    local d = defer.Deferred(function()
      if self.transport then self.transport:abortConnection() end
    end)
    self._finished = d
    self._parser:setNoBody(req.method == "HEAD")
    local body = req.bodyProducer
    local length
    if type(body) == "string" then
      body = FileBodyProducer(body)
    end
    if body ~= nil then length = body.length end
    if length == nil and (req.method == "POST" or req.method == "PUT") then
      length = 0
    end
    local ok, head = pcall(requestHead, req, length)
    if not ok then
      self.state = "QUIESCENT"
      self._finished = nil
      return defer.fail(head)
    end
    cwrite(self.transport, head)
    if body == nil then
      self.state = "WAITING"
      return d
    end
    local enc = length == UNKNOWN_LENGTH and ChunkedEncoder(self.transport) or
      PlainEncoder(self.transport)
    self._bodyProducer = body
    local pd = defer.maybeDeferred(body.startProducing, body, enc)
    pd:addCallbacks(function()
      self._bodyProducer = nil
      if length == UNKNOWN_LENGTH and not self._lost then
        cwrite(self.transport, "0\r\n\r\n")
      end
      if self.state == "TRANSMITTING" then self.state = "WAITING" end
    end, function(f)
      self._bodyProducer = nil
      self:_fail(M.RequestNotSent("request body failed: " ..
        f:getErrorMessage()))
      if self.transport then self.transport:abortConnection() end
    end)
    return d
  end

  function HTTP11ClientProtocol:_fail(err)
    local d = self._finished
    if d ~= nil and not d.called then
      self._finished = nil
      d:errback(err)
    end
  end

  --- proto:dataReceived(data): response bytes to the parser; bytes with
  -- no request under way drop the connection.
  function HTTP11ClientProtocol:dataReceived(data)
    if self.state == "QUIESCENT" then
      -- Bytes with no request: the server is confused; drop the connection.
      self.transport:loseConnection()
      return
    end
    self._parser:feed(self, data)
  end

  -- The parser's events (runtime/http.c).
  function HTTP11ClientProtocol:_onHead(code, reason, minor, headers)
    if code >= 100 and code < 200 then return end -- 100 Continue and kin
    local req = self._req
    local cl = tonumber(lastValue(headers, "content-length") or "")
    local resp = setmetatable({
      version = {"HTTP", 1, minor}, code = code, phrase = reason,
      headers = setmetatable(headers, Headers),
      length = cl or UNKNOWN_LENGTH, request = req, _proto = self,
    }, Response)
    if req.method == "HEAD" or noBodyCode(code) then resp.length = 0 end
    self._response = resp
    self.state = "RECEIVING"
    local d = self._finished
    self._finished = nil
    if d ~= nil then d:callback(resp) end
  end

  function HTTP11ClientProtocol:_onBody(chunk)
    local resp = self._response
    if resp ~= nil then resp:_data(chunk) end
  end

  function HTTP11ClientProtocol:_onDone(keepAlive)
    local resp = self._response
    if resp == nil then return end -- an interim (1xx) response
    self._response = nil
    self.state = "QUIESCENT"
    local reusable = keepAlive and self._req.persistent and not self._lost
      and self._bodyProducer == nil
    self._req = nil
    resp:_end(Failure(M.ResponseDone("Response body fully received")))
    if reusable and self.onIdle then
      self.onIdle(self)
    elseif not self._lost then
      self.transport:loseConnection()
    end
  end

  function HTTP11ClientProtocol:_onParseError(_, name, reason)
    local err = M.ResponseFailed("bad response: " .. name .. " " .. reason)
    local resp = self._response
    self._response = nil
    if resp ~= nil then resp:_end(Failure(err)) else self:_fail(err) end
    self.state = "CONNECTION_LOST"
    self.transport:loseConnection()
  end

  --- proto:connectionLost(reason): a request under way fails
  -- (ResponseNeverReceived before the head, ResponseFailed in the body; a
  -- body delimited by the connection's end completes).
  function HTTP11ClientProtocol:connectionLost(reason)
    self._lost = true
    if self._parser and self.state ~= "QUIESCENT" then
      self._parser:finish(self)
    end
    local resp = self._response
    self._response = nil
    local why = reason and reason:getErrorMessage() or "connection lost"
    if resp ~= nil then
      local e = M.ResponseFailed("connection lost in the body: " .. why)
      e.reasons = {reason}
      resp:_end(Failure(e))
    end
    if self._finished ~= nil then
      local e = M.ResponseNeverReceived("connection lost: " .. why)
      e.reasons = {reason}
      self:_fail(e)
    end
    self.state = "CONNECTION_LOST"
    if self.onLost then self.onLost(self) end
  end

  -- The pool -----------------------------------------------------------------

  local ClientFactory = protocol.ClientFactory:extend({
    __name = "HTTP11ClientFactory"})

  function ClientFactory:buildProtocol()
    local p = HTTP11ClientProtocol()
    p.factory = self
    return p
  end

  --- HTTPConnectionPool(reactor[, persistent = true]): connections by
  -- (scheme, host, port) for Agents. Fields: persistent,
  -- maxPersistentPerHost (2: idle connections kept per host),
  -- cachedConnectionTimeout (240 s: an idle one is closed after),
  -- maxConnectionsPerHost (nil: no limit; a number queues requests beyond
  -- it). twisted.web.client.HTTPConnectionPool.
  local HTTPConnectionPool = Object:extend({
    __name = "HTTPConnectionPool",
    maxPersistentPerHost = 2,
    cachedConnectionTimeout = 240,
    maxConnectionsPerHost = nil,
  })
  M.HTTPConnectionPool = HTTPConnectionPool

  function HTTPConnectionPool:__init(reactor_, persistent)
    self._reactor = reactor_ or reactor
    self.persistent = persistent ~= false
    self._idle = {}    -- key -> list of protocols
    self._timers = {}  -- protocol -> DelayedCall
    self._count = {}   -- key -> open connections
    self._waiting = {} -- key -> list of {d, endpoint}
    self._all = {}     -- protocol -> key
  end

  --- pool:getConnection(key, endpoint) -> Deferred(protocol): an idle
  -- connection for key, else a new one from endpoint:connect. With
  -- maxConnectionsPerHost, waits for one to be free.
  -- twisted HTTPConnectionPool.getConnection.
  function HTTPConnectionPool:getConnection(key, endpoint)
    local idle = self._idle[key]
    while idle ~= nil and #idle > 0 do
      local p = table.remove(idle)
      local t = self._timers[p]
      if t ~= nil then
        self._timers[p] = nil
        if t:active() then t:cancel() end
      end
      if not p._lost then return defer.succeed(p) end
    end
    local limit = self.maxConnectionsPerHost
    if limit ~= nil and (self._count[key] or 0) >= limit then
      local d
      d = defer.Deferred(function()
        local q = self._waiting[key] or {}
        for i = #q, 1, -1 do if q[i].d == d then table.remove(q, i) end end
      end)
      local q = self._waiting[key]
      if q == nil then q = {}; self._waiting[key] = q end
      q[#q + 1] = {d = d, endpoint = endpoint}
      return d
    end
    return self:_newConnection(key, endpoint)
  end

  function HTTPConnectionPool:_newConnection(key, endpoint)
    self._count[key] = (self._count[key] or 0) + 1
    local counted = true
    local function uncount()
      if counted then
        counted = false
        self._count[key] = self._count[key] - 1
        self:_wake(key)
      end
    end
    local d = endpoint:connect(ClientFactory())
    d:addCallbacks(function(p)
      self._all[p] = key
      p.onLost = function(proto)
        self:_remove(key, proto)
        uncount()
      end
      p.onIdle = function(proto) self:_putConnection(key, proto) end
      return p
    end, function(f)
      uncount()
      return f
    end)
    return d
  end

  -- A connection is free for a waiting request, or closes.
  function HTTPConnectionPool:_wake(key)
    local q = self._waiting[key]
    if q == nil or #q == 0 then return end
    local limit = self.maxConnectionsPerHost
    if limit ~= nil and (self._count[key] or 0) >= limit then return end
    local w = table.remove(q, 1)
    self:_newConnection(key, w.endpoint):chainDeferred(w.d)
  end

  --- pool:_putConnection(key, protocol): a connection whose response is
  -- done: hand it to a waiting request, keep it idle (up to
  -- maxPersistentPerHost, for cachedConnectionTimeout seconds), or close.
  function HTTPConnectionPool:_putConnection(key, p)
    local q = self._waiting[key]
    if q ~= nil and #q > 0 then
      local w = table.remove(q, 1)
      w.d:callback(p)
      return
    end
    if not self.persistent then
      p.transport:loseConnection()
      return
    end
    local idle = self._idle[key]
    if idle == nil then idle = {}; self._idle[key] = idle end
    if #idle >= self.maxPersistentPerHost then
      local old = table.remove(idle, 1)
      self:_closeIdle(old)
    end
    idle[#idle + 1] = p
    self._timers[p] = self._reactor.callLater(self.cachedConnectionTimeout,
      function()
        self._timers[p] = nil
        self:_remove(key, p)
        p.transport:loseConnection()
      end)
  end

  function HTTPConnectionPool:_closeIdle(p)
    local t = self._timers[p]
    if t ~= nil then
      self._timers[p] = nil
      if t:active() then t:cancel() end
    end
    if not p._lost then p.transport:loseConnection() end
  end

  function HTTPConnectionPool:_remove(key, p)
    local idle = self._idle[key]
    if idle ~= nil then
      for i = #idle, 1, -1 do
        if idle[i] == p then table.remove(idle, i) end
      end
    end
    local t = self._timers[p]
    if t ~= nil then
      self._timers[p] = nil
      if t:active() then t:cancel() end
    end
    self._all[p] = nil
  end

  --- pool:closeCachedConnections() -> Deferred fired when every idle
  -- connection has closed. twisted HTTPConnectionPool.closeCachedConnections.
  function HTTPConnectionPool:closeCachedConnections()
    local ds = {}
    for key, idle in pairs(self._idle) do
      for _, p in ipairs(idle) do
        local d = defer.Deferred()
        local prev = p.onLost
        p.onLost = function(proto)
          if prev then prev(proto) end
          d:callback(nil)
        end
        ds[#ds + 1] = d
        self:_closeIdle(p)
      end
      self._idle[key] = nil
    end
    return defer.DeferredList(ds):addCallback(function() return nil end)
  end

  -- The Agent ----------------------------------------------------------------

  --- Agent(reactor[, {pool=, connectTimeout=, tlsOptions=, bindAddress=}]):
  -- makes requests. pool: an HTTPConnectionPool (default: a new
  -- non-persistent one, as Twisted: each request its own connection).
  -- connectTimeout: seconds (30). tlsOptions: for https, a function(host,
  -- port) -> client context factory, an object with creatorForNetloc(host,
  -- port), or one context factory for every host; default
  -- ssl.optionsForClientTLS(host): the chain is verified against the
  -- system's CA store and the name against host. twisted.web.client.Agent.
  local Agent = Object:extend({__name = "Agent"})
  M.Agent = Agent

  -- Has r a callable connectTCP (indexing a userdata may raise)?
  local function hasConnectTCP(r)
    local t = type(r)
    if t ~= "table" and t ~= "userdata" then return false end
    local ok, f = pcall(function() return r.connectTCP end)
    return ok and check.isCallable(f)
  end

  function Agent:__init(reactor_, options)
    -- Level 3 is the user's call: __init is called by Class:new, called
    -- by the user or tail-called by the class's __call (see web.Site).
    if reactor_ ~= nil and not hasConnectTCP(reactor_) then
      check.typeError(1, "Agent", "reactor", reactor_, 3)
    end
    check.optTable(options, 2, "Agent", 3)
    options = options or {}
    self._reactor = reactor_ or reactor
    self._pool = options.pool or HTTPConnectionPool(self._reactor, false)
    self._connectTimeout = options.connectTimeout or 30
    self._tlsOptions = options.tlsOptions
    self._bindAddress = options.bindAddress
  end

  function Agent:_tlsFor(host, port)
    local t = self._tlsOptions
    if t == nil then
      return require("spindle.ssl").optionsForClientTLS(host)
    elseif type(t) == "function" then
      return t(host, port)
    elseif type(t) == "table" and t.creatorForNetloc then
      return t:creatorForNetloc(host, port)
    end
    return t
  end

  function Agent:_endpoint(u)
    if u.scheme == "https" then
      return endpoints.SSL4ClientEndpoint(self._reactor, u.host, u.port,
        self:_tlsFor(u.host, u.port), self._connectTimeout, self._bindAddress)
    end
    return endpoints.TCP4ClientEndpoint(self._reactor, u.host, u.port,
      self._connectTimeout, self._bindAddress)
  end

  -- checkRequest(method, url, headers, fname, n): the checks of the
  -- arguments request takes, for fname (request or a helper forwarding to
  -- it: get), whose argument #n is the method (0: it takes none, GET) and
  -- the URL #n + 1; blames fname's caller. headers: nil, a Headers or a
  -- table.
  local function checkRequest(method, url, headers, fname, n)
    if n > 0 then check.string(method, n, fname, 3) end
    check.string(url, n + 1, fname, 3)
    check.optTable(headers, n + 2, fname, 3)
  end

  --- agent:request(method, url[, headers[, bodyProducer]]) ->
  -- Deferred(Response): headers is a Headers or a table name -> value(s);
  -- bodyProducer an IBodyProducer (length, startProducing(consumer) ->
  -- Deferred; UNKNOWN_LENGTH sends it chunked) or a string. Fails with
  -- web.SchemeNotSupported for a scheme other than http/https, the
  -- connection's error (ConnectionRefusedError, DNSLookupError, ssl.Error
  -- ...), web.ResponseNeverReceived or web.ResponseFailed. Cancelling it
  -- stops the attempt or aborts the connection.
  -- twisted.web.client.Agent.request.
  function Agent:request(method, url, headers, bodyProducer)
    checkRequest(method, url, headers, "request", 1)
    local u, err = M.urlparse(url)
    if u == nil then return defer.fail(M.SchemeNotSupported(err)) end
    if u.scheme ~= "http" and u.scheme ~= "https" then
      return defer.fail(M.SchemeNotSupported("Unsupported scheme: " ..
        u.scheme))
    end
    if headers == nil then headers = Headers()
    elseif getmetatable(headers) ~= Headers then headers = Headers(headers) end
    local default = u.scheme == "https" and 443 or 80
    local hostHeader = u.port == default and u.netloc:gsub(":%d+$", "") or
      u.netloc
    local pool = self._pool
    local key = u.scheme .. "://" .. u.host .. ":" .. u.port
    local ok, ep = pcall(self._endpoint, self, u)
    if not ok then return defer.fail(ep) end
    local req = {method = method, path = u.path, uri = url,
      hostHeader = hostHeader, headers = headers,
      bodyProducer = bodyProducer, persistent = pool.persistent}
    return pool:getConnection(key, ep):addCallback(function(p)
      return p:request(req)
    end)
  end

  --- RedirectAgent(agent[, redirectLimit = 20]): follows redirects: 301,
  -- 302, 307 and 308 for GET and HEAD (other methods fail with
  -- web.ResponseFailed carrying web.PageRedirect), 303 as a GET. Too many
  -- fail with web.InfiniteRedirection; no Location with
  -- web.RedirectWithNoLocation. response.previousResponse links the chain.
  -- twisted.web.client.RedirectAgent.
  local RedirectAgent = Object:extend({__name = "RedirectAgent"})
  M.RedirectAgent = RedirectAgent

  function RedirectAgent:__init(agent, redirectLimit)
    -- Level 3: the user's call (see Agent:__init).
    if type(agent) ~= "table" or not check.isCallable(agent.request) then
      check.typeError(1, "RedirectAgent", "agent", agent, 3)
    end
    if redirectLimit ~= nil then
      check.nonNegative(redirectLimit, 2, "RedirectAgent", "redirectLimit", 3)
    end
    self._agent = agent
    self._redirectLimit = redirectLimit or 20
  end

  local function discard(response)
    response:deliverBody({dataReceived = function() end,
      connectionLost = function() end})
  end

  function RedirectAgent:_handle(response, method, url, headers, count)
    local code = response.code
    local same = code == 301 or code == 302 or code == 307 or code == 308
    if not same and code ~= 303 then return response end
    local location = lastValue(response.headers, "location")
    if same and method ~= "GET" and method ~= "HEAD" then
      discard(response)
      local e = M.PageRedirect(format("%d %s", code, response.phrase))
      e.location = location
      local rf = M.ResponseFailed("redirect for " .. method)
      rf.reasons = {Failure(e)}
      rf.response = response
      error(rf)
    end
    if location == nil then
      discard(response)
      error(M.RedirectWithNoLocation(format("%d %s: no Location for %s",
        code, response.phrase, url)))
    end
    if count >= self._redirectLimit then
      discard(response)
      error(M.InfiniteRedirection(format("%d %s: more than %d redirects",
        code, response.phrase, self._redirectLimit)))
    end
    discard(response)
    local nextMethod = code == 303 and "GET" or method
    local nextUrl = urljoin(url, location)
    return self._agent:request(nextMethod, nextUrl, headers):addCallback(
      function(r)
        r.previousResponse = response
        return self:_handle(r, nextMethod, nextUrl, headers, count + 1)
      end)
  end

  --- ra:request(method, url[, headers[, bodyProducer]]) ->
  -- Deferred(Response): as Agent's, following redirects.
  function RedirectAgent:request(method, url, headers, bodyProducer)
    checkRequest(method, url, headers, "request", 1)
    return self._agent:request(method, url, headers, bodyProducer)
      :addCallback(function(r)
        return self:_handle(r, method, url, headers, 0)
      end)
  end

  --- web.readBody(response) -> Deferred(string): the whole body; fails
  -- with the reason of a body cut short. twisted.web.client.readBody.
  function M.readBody(response)
    local parts = {}
    local d = defer.Deferred(function()
      if response._proto and response._proto.transport then
        response._proto.transport:abortConnection()
      end
    end)
    response:deliverBody({
      dataReceived = function(_, data) parts[#parts + 1] = data end,
      connectionLost = function(_, reason)
        if d.called then return end
        if reason:check(M.ResponseDone) then
          d:callback(table.concat(parts))
        else
          d:errback(reason)
        end
      end,
    })
    return d
  end

  --- web.request(method, url[, headers[, body]]) -> Deferred(Response with
  -- response.body set): a one-off request on its own connection,
  -- following redirects, body read.
  function M.request(method, url, headers, body)
    checkRequest(method, url, headers, "request", 1)
    local agent = RedirectAgent(Agent(reactor))
    return agent:request(method, url, headers, body):addCallback(function(r)
      return M.readBody(r):addCallback(function(b)
        r.body = b
        return r
      end)
    end)
  end

  --- web.get(url[, headers]) -> Deferred(body): GET url (following
  -- redirects, a connection of its own) and read the body. A status of 400
  -- or more fails with web.Error (code, response and body fields). The
  -- response is also at web.request's Deferred.
  function M.get(url, headers)
    checkRequest("GET", url, headers, "get", 0)
    return M.request("GET", url, headers):addCallback(function(r)
      if r.code >= 400 then
        local e = M.Error(format("%d %s", r.code, r.phrase))
        e.code, e.response, e.body = r.code, r, r.body
        error(e)
      end
      return r.body
    end)
  end

end
