--- spindle.web: an HTTP/1.1 server and client, after twisted.web.
--
-- Server: `web.Site(resource[, options])` is a Factory for listenTCP,
-- listenSSL and the endpoints; resource is a Resource tree (putChild,
-- getChild, render_GET, ...) or a plain function handler(request) ->
-- body. Requests are twisted.web.server.Request's shape (method, uri,
-- path, args, requestHeaders, content, setHeader, setResponseCode, write,
-- finish, notifyFinish, redirect, getClientAddress, registerProducer).
-- Parsing is C (runtime/http.c on llhttp); this file is the policy.
--
-- Client: `web.Agent(reactor[, options])`, `agent:request(method, url,
-- headers, bodyProducer) -> Deferred(Response)`, `web.readBody(response)`,
-- HTTPConnectionPool, RedirectAgent, and `web.get(url)`.
--
-- Everything here runs on the reactor thread.
local C = require("spindle._http")
local Cdefer = require("spindle._defer")
local reactor = require("spindle.reactor")
local defer = require("spindle.defer")
local failure = require("spindle.failure")
local log = require("spindle.log")
local protocol = require("spindle.protocol")
local check = require("spindle.check")
local Object = require("spindle.class").Object

local find, sub, lower, format = string.find, string.sub, string.lower,
  string.format
local setmetatable, rawget, type, tostring = setmetatable, rawget, type,
  tostring
local isDeferred, errhandler = Cdefer.isDeferred, Cdefer.errhandler
local Failure = failure.Failure
local writeHead, writeChunk, cwrite = C.writeHead, C.writeChunk, C.write
local CLOSE, KEEPALIVE, NOBODY, DEFTYPE = C.CLOSE, C.KEEPALIVE, C.NOBODY,
  C.DEFTYPE

local M = {}
for name, T in pairs(failure.builtinErrorTypes("web")) do M[name] = T end

--- web.NOT_DONE_YET: what render returns when it will call
-- request:finish() later. twisted.web.server.NOT_DONE_YET.
local NOT_DONE_YET = setmetatable({}, {
  __name = "NOT_DONE_YET",
  __tostring = function() return "NOT_DONE_YET" end,
})
M.NOT_DONE_YET = NOT_DONE_YET

--- web.UNKNOWN_LENGTH: a body producer's length when it is not known
-- (sent chunked). twisted.web.iweb.UNKNOWN_LENGTH.
local UNKNOWN_LENGTH = setmetatable({}, {
  __name = "UNKNOWN_LENGTH",
  __tostring = function() return "UNKNOWN_LENGTH" end,
})
M.UNKNOWN_LENGTH = UNKNOWN_LENGTH

-- Status codes that never have a body (RFC 9110 6.4.1).
local function noBodyCode(code)
  return code == 204 or code == 304 or (code >= 100 and code < 200)
end

-- ---------------------------------------------------------------- Headers

--- Headers([raw]): header fields by name, case-insensitive; raw maps
-- names to a value or a list of values. The table's own keys are the
-- lowercased names (so it is the shape the parser makes: a value string,
-- or a list when a name came more than once).
-- twisted.web.http_headers.Headers.
local Headers = Object:extend({__name = "Headers"})

function Headers:__init(raw)
  if raw ~= nil then
    for k, v in pairs(raw) do self:setRawHeaders(k, v) end
  end
end

--- h:getRawHeaders(name[, default]) -> list of values, or default when
-- there is none. twisted Headers.getRawHeaders.
function Headers:getRawHeaders(name, default)
  local v = rawget(self, lower(name))
  if v == nil then return default end
  if type(v) == "string" then return {v} end
  return {table.unpack(v)}
end

--- h:hasHeader(name) -> boolean. twisted Headers.hasHeader.
function Headers:hasHeader(name)
  return rawget(self, lower(name)) ~= nil
end

--- h:setRawHeaders(name, values): replace name's values (a list, or one
-- string). twisted Headers.setRawHeaders.
function Headers:setRawHeaders(name, values)
  check.string(name, 1, "setRawHeaders")
  if type(values) == "table" then
    local copy = {}
    for i = 1, #values do copy[i] = tostring(values[i]) end
    values = #copy == 1 and copy[1] or copy
    if #copy == 0 then values = nil end
  elseif values ~= nil then
    values = tostring(values)
  end
  rawset(self, lower(name), values)
end

--- h:addRawHeader(name, value): add a value after name's others.
-- twisted Headers.addRawHeader.
function Headers:addRawHeader(name, value)
  check.string(name, 1, "addRawHeader")
  local k, v = lower(name), tostring(value)
  local old = rawget(self, k)
  if old == nil then rawset(self, k, v)
  elseif type(old) == "string" then rawset(self, k, {old, v})
  else old[#old + 1] = v end
end

--- h:removeHeader(name). twisted Headers.removeHeader.
function Headers:removeHeader(name)
  rawset(self, lower(name), nil)
end

--- h:getAllRawHeaders() -> {name = {values}}: a copy, names lowercased.
-- twisted Headers.getAllRawHeaders.
function Headers:getAllRawHeaders()
  local out = {}
  for k, v in pairs(self) do
    out[k] = type(v) == "string" and {v} or {table.unpack(v)}
  end
  return out
end

M.Headers = Headers

-- Last value of a header in a parsed or Headers table.
local function lastValue(h, name)
  local v = rawget(h, name)
  if type(v) == "table" then return v[#v] end
  return v
end

-- ------------------------------------------------------------ url helpers

local function unhex(h) return string.char(tonumber(h, 16)) end

--- web.unquote(s) -> s with %XX escapes decoded. urllib.parse.unquote.
function M.unquote(s)
  if not find(s, "%", 1, true) then return s end
  return (s:gsub("%%(%x%x)", unhex))
end

local function unquotePlus(s)
  return M.unquote((s:gsub("+", " ")))
end

--- web.parseQS(qs[, into]) -> {name = {values}}: a query string (or a
-- form body) parsed as Twisted's request.args: each name maps to the list
-- of its values, in order; `+` is a space. urllib.parse.parse_qs.
function M.parseQS(qs, into)
  local args = into or {}
  for pair in qs:gmatch("[^&;]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    if k == nil then k, v = pair, "" end
    k, v = unquotePlus(k), unquotePlus(v)
    local list = args[k]
    if list == nil then args[k] = {v} else list[#list + 1] = v end
  end
  return args
end

--- web.quote(s) -> s with everything but unreserved characters %XX
-- escaped. urllib.parse.quote (safe = "/").
function M.quote(s)
  return (s:gsub("[^%w%-%._~/]", function(c)
    return format("%%%02X", c:byte())
  end))
end

--- web.escapeHTML(s) -> s with & < > " ' as entities. html.escape.
function M.escapeHTML(s)
  return (tostring(s):gsub("[&<>\"']", {
    ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
    ["'"] = "&#x27;",
  }))
end

-- ---------------------------------------------------------------- Content

--- request.content: the request body as a read-only file: read([n]),
-- seek([whence, offset]) like Lua's file:seek, getvalue(). Twisted's
-- request.content (a BytesIO).
local Content = Object:extend({__name = "Content"})

function Content:__init(s)
  self._s, self._pos = s, 0
end

--- content:read([n]) -> up to n bytes (all that is left without n);
-- "" at the end (BytesIO.read).
function Content:read(n)
  local s, pos = self._s, self._pos
  local stop = n == nil and #s or math.min(#s, pos + n)
  self._pos = stop
  return sub(s, pos + 1, stop)
end

--- content:seek([whence[, offset]]) -> position, as file:seek.
function Content:seek(whence, offset)
  whence, offset = whence or "cur", offset or 0
  local base = whence == "set" and 0 or whence == "end" and #self._s
    or self._pos
  self._pos = math.max(0, math.min(#self._s, base + offset))
  return self._pos
end

--- content:getvalue() -> the whole body (BytesIO.getvalue).
function Content:getvalue()
  return self._s
end

--- request.content with Site{streamRequestBody = true}, for a request
-- with a body: the body as it arrives. content:deliverBody(protocol):
-- protocol:dataReceived(bytes) for each part (those that came before are
-- given at once), then protocol:connectionLost(reason): a Failure of
-- web.ResponseDone when the body is complete, else the connection's
-- loss. web.readBody(request.content) gathers it. pauseProducing() /
-- resumeProducing() stop and restart reading from the client.
-- Follows twisted.web's client-side Response.deliverBody.
local RequestBody = Object:extend({__name = "RequestBody"})
M.RequestBody = RequestBody

function RequestBody:__init(request)
  self._request = request
  self._parts = {}
end

--- body:deliverBody(protocol): see RequestBody. Call once.
function RequestBody:deliverBody(proto)
  if self._proto ~= nil then error("the body already has a protocol", 2) end
  self._proto = proto
  if proto.makeConnection then proto:makeConnection(nil) end
  local parts = self._parts
  self._parts = nil
  for i = 1, #parts do proto:dataReceived(parts[i]) end
  if self._reason ~= nil then proto:connectionLost(self._reason) end
end

--- body:pauseProducing(): stop reading from the client for now.
function RequestBody:pauseProducing()
  local t = self._request.transport
  if not self._request._disconnected then t:pauseProducing() end
end

--- body:resumeProducing(): read from the client again.
function RequestBody:resumeProducing()
  local t = self._request.transport
  if not self._request._disconnected then t:resumeProducing() end
end

function RequestBody:_data(bytes)
  if self._proto ~= nil then return self._proto:dataReceived(bytes) end
  local parts = self._parts
  parts[#parts + 1] = bytes
end

function RequestBody:_end(reason)
  if self._reason ~= nil then return end
  self._reason = reason
  if self._proto ~= nil then self._proto:connectionLost(reason) end
end

--- content:deliverBody(protocol): the whole body to
-- protocol:dataReceived, then protocol:connectionLost(Failure of
-- web.ResponseDone), as RequestBody's, so web.readBody(request.content)
-- works whether or not the site streams bodies.
function Content:deliverBody(proto)
  if proto.makeConnection then proto:makeConnection(nil) end
  if #self._s > 0 then proto:dataReceived(self._s) end
  proto:connectionLost(Failure(M.ResponseDone("Request body fully received")))
end

local EMPTY_CONTENT = Content("")
-- The empty body is shared: its position never moves.
function EMPTY_CONTENT.read() return "" end
function EMPTY_CONTENT.seek() return 0 end

-- ---------------------------------------------------------------- Request

--- Request: one HTTP request and its response. Fields: method, uri,
-- path, args, clientproto ("HTTP/1.1"), requestHeaders (Headers),
-- responseHeaders (Headers), content, code, code_message, channel,
-- transport, site, finished, startedWriting, prepath, postpath (with a
-- Resource tree). twisted.web.server.Request.
local Request = Object:extend({
  __name = "Request",
  code = 200,
  code_message = nil,
  finished = false,
  startedWriting = false,
  sentLength = 0,
  chunked = false,
  _disconnected = false,
})

--- request:getHeader(name) -> the last value of the request header name,
-- or nil. twisted Request.getHeader.
function Request:getHeader(name)
  return lastValue(self.requestHeaders, lower(name))
end

--- request:getAllHeaders() -> {name = value}: every request header's last
-- value, names lowercased. twisted Request.getAllHeaders.
function Request:getAllHeaders()
  local out = {}
  for k, v in pairs(self.requestHeaders) do
    out[k] = type(v) == "table" and v[#v] or v
  end
  return out
end

--- request:setHeader(name, value): set a response header (replacing its
-- values). twisted Request.setHeader.
function Request:setHeader(name, value)
  if type(name) ~= "string" then check.typeError(1, "setHeader", "string",
    name) end
  rawset(self.responseHeaders, lower(name), tostring(value))
end

--- request:setResponseCode(code[, message]): the status (an integer) and
-- its reason phrase (default: the standard one). Raises for a non-integer
-- code. twisted Request.setResponseCode.
function Request:setResponseCode(code, message)
  if math.type(code) ~= "integer" then
    check.typeError(1, "setResponseCode", "integer", code)
  end
  self.code, self.code_message = code, message or false
end

--- request:redirect(url): answer 302 Found with Location: url.
-- twisted Request.redirect.
function Request:redirect(url)
  self:setResponseCode(302)
  self:setHeader("location", url)
end

--- request:getClientAddress() -> the peer's address ({type, host, port}).
-- twisted Request.getClientAddress.
function Request:getClientAddress()
  return self.transport:getPeer()
end

--- request:getHost() -> the local address. twisted Request.getHost.
function Request:getHost()
  return self.transport:getHost()
end

--- request:isSecure() -> boolean: the request came over TLS.
-- twisted Request.isSecure.
function Request:isSecure()
  local t = self.transport
  return t.getHandle ~= nil and t:getHandle() ~= nil
end

--- request:getRequestHostname() -> the Host header's name part, or the
-- local address. twisted Request.getRequestHostname.
function Request:getRequestHostname()
  local host = self:getHeader("host")
  if host then
    return host:match("^%[(.-)%]") or host:match("^([^:]*)")
  end
  return self:getHost().host
end

-- The flags of a response head for this request.
local function headFlags(self)
  local f = 0
  if not self.persistent then f = CLOSE
  elseif self.clientproto == "HTTP/1.0" then f = KEEPALIVE end
  if self.method == "HEAD" or noBodyCode(self.code) then f = f + NOBODY
  else f = f + DEFTYPE end
  return f
end

-- The whole response at once: head and body, one write (the fast path of
-- a render that returns a string).
local function respond(self, body)
  if self._disconnected then return end
  local len, code, flags = #body, self.code, 0
  local hdrs = self.responseHeaders
  if next(hdrs) == nil then hdrs = nil
  elseif rawget(hdrs, "content-length") ~= nil then len = -2 end
  if not self.persistent then flags = CLOSE
  elseif self.clientproto == "HTTP/1.0" then flags = KEEPALIVE end
  if self.method == "HEAD" then
    flags = flags + NOBODY
  elseif code == 204 or code == 304 or (code >= 100 and code < 200) then
    len, flags = -2, flags + NOBODY
  else
    flags = flags + DEFTYPE
    self.sentLength = #body
  end
  writeHead(self.transport, code, self.code_message or nil, hdrs, len, flags,
    body)
  self.startedWriting = true
  self:_finished()
end

--- request:write(data): send data as (part of) the body. The first write
-- sends the head: with Content-Length when that header was set, else
-- chunked (HTTP/1.1) or delimited by closing the connection (HTTP/1.0).
-- Nothing is sent for HEAD. Raises after finish().
-- twisted Request.write.
function Request:write(data)
  if self.finished then
    error("Request.write called on a request after Request.finish was " ..
      "called.", 2)
  end
  if type(data) ~= "string" then check.typeError(1, "write", "string", data)
  end
  if self._disconnected then return end
  if not self.startedWriting then
    self.startedWriting = true
    local len = -2
    local hdrs = self.responseHeaders
    if rawget(hdrs, "content-length") == nil and
        not noBodyCode(self.code) and self.method ~= "HEAD" then
      if self.clientproto == "HTTP/1.1" then
        len, self.chunked = -1, true
      else
        self.persistent = false
      end
    end
    writeHead(self.transport, self.code, self.code_message or nil, hdrs, len,
      headFlags(self))
  end
  if data == "" or self.method == "HEAD" or noBodyCode(self.code) then
    return
  end
  self.sentLength = self.sentLength + #data
  if self.chunked then writeChunk(self.transport, data)
  else cwrite(self.transport, data) end
end

--- request:finish(): the response is complete (an empty body if nothing
-- was written). Raises if called twice or after the connection was lost
-- (use notifyFinish to learn of that). twisted Request.finish.
function Request:finish()
  if self._disconnected then
    error("Request.finish called on a request after its connection was " ..
      "lost; use Request.notifyFinish to keep track of this.", 2)
  end
  if self.finished then
    error("Request.finish called on a request after Request.finish was " ..
      "called.", 2)
  end
  if not self.startedWriting then
    self.startedWriting = true
    local hdrs = self.responseHeaders
    local len = 0
    if rawget(hdrs, "content-length") ~= nil or noBodyCode(self.code) then
      len = -2
    end
    writeHead(self.transport, self.code, self.code_message or nil, hdrs, len,
      headFlags(self))
  elseif self.chunked then
    cwrite(self.transport, "0\r\n\r\n")
  end
  self:_finished()
end

--- request:notifyFinish() -> Deferred fired (with nil) when the response
-- is finished, or failed with the connection's loss if it is lost first.
-- twisted Request.notifyFinish.
function Request:notifyFinish()
  local d = defer.Deferred()
  if self.finished then d:callback(nil)
  elseif self._disconnected then d:errback(self._lostReason)
  else
    local list = self._notify
    if not list then list = {}; self._notify = list end
    list[#list + 1] = d
  end
  return d
end

--- request:registerProducer(producer, streaming): producer feeds the
-- response body (its pauseProducing/resumeProducing follow the
-- connection's write buffer, so a client that stops reading pauses it).
-- twisted Request.registerProducer.
function Request:registerProducer(producer, streaming)
  if self._disconnected then
    producer:stopProducing()
    return
  end
  self.transport:registerProducer(producer, streaming)
end

--- request:unregisterProducer(). twisted Request.unregisterProducer.
function Request:unregisterProducer()
  if not self._disconnected then self.transport:unregisterProducer() end
end

-- Bookkeeping once the response is complete.
function Request:_finished()
  self.finished = true
  if self.site.accessLog then self.site:log(self) end
  local list = self._notify
  if list then
    self._notify = nil
    for i = 1, #list do list[i]:callback(nil) end
  end
  local ch = self.channel
  if ch._current == self then ch._current = false end
  if ch._body and ch._body._request == self then
    -- Its body is still coming: the parser goes on at its end (a
    -- response that closes the connection closes it now).
    if not self.persistent then ch:_requestDone(self) end
    return
  end
  if not self.persistent or ch._blocked then ch:_requestDone(self) end
end

-- The connection was lost before the response was finished.
function Request:_connectionLost(reason)
  self._disconnected = true
  self._lostReason = reason
  local list = self._notify
  if list then
    self._notify = nil
    for i = 1, #list do list[i]:errback(reason) end
  end
end

local ERROR_PAGE = "<html><head><title>%d - %s</title></head>" ..
  "<body><h1>%s</h1><p>%s</p></body></html>"

-- Answer with a small HTML page (error pages, redirects).
local function errorPage(self, code, brief, detail)
  self:setResponseCode(code)
  self.responseHeaders = setmetatable({}, Headers)
  self:setHeader("content-type", "text/html")
  return format(ERROR_PAGE, code, M.escapeHTML(brief), M.escapeHTML(brief),
    M.escapeHTML(detail))
end

--- request:processingFailed(reason): an error while rendering: log it
-- with its traceback and answer 500 with no detail for the peer (or drop
-- the connection if the response had begun). twisted
-- Request.processingFailed (with displayTracebacks off).
function Request:processingFailed(reason)
  log.err(reason, "Exception rendering:")
  if self.finished or self._disconnected then return end
  if self.startedWriting then
    self.persistent = false
    self.transport:loseConnection()
    self:_finished()
    return
  end
  respond(self, errorPage(self, 500, "Internal Server Error",
    "An error occurred while processing the request."))
end

-- What a render (or a handler) returned.
function Request:_renderResult(body)
  if type(body) == "string" then
    if self.finished then return end
    respond(self, body)
  elseif body == NOT_DONE_YET then
    return
  elseif isDeferred(body) then
    body:addCallbacks(function(r)
      if not self._disconnected then self:_renderResult(r) end
    end, function(f)
      self:processingFailed(f)
    end)
  elseif body == nil and self.finished then
    return
  else
    self:processingFailed(Failure(
      "render returned " .. type(body) .. ", not a string, NOT_DONE_YET " ..
      "or a Deferred"))
  end
end

--- request:render(resource): render resource for this request:
-- resource:render(request); a string is the body (for HEAD, only its
-- length is sent), NOT_DONE_YET means the resource finishes later, a
-- Deferred fires with the body. An UnsupportedMethod error gives 405 with
-- Allow. twisted Request.render.
function Request:render(resource)
  local ok, body = xpcall(resource.render, errhandler, resource, self)
  if not ok then
    local f = body
    local um = f:check(M.UnsupportedMethod)
    if um then
      local allowed = f.value.allowedMethods or {}
      local page = errorPage(self, 405, "Method Not Allowed",
        "Your browser approached me (at " .. self.uri .. ") with the " ..
        "method \"" .. self.method .. "\".")
      self:setHeader("allow", table.concat(allowed, ", "))
      return respond(self, page)
    end
    return self:processingFailed(f)
  end
  return self:_renderResult(body)
end

local function splitPath(path)
  local out, n = {}, 0
  for seg in (sub(path, 2) .. "/"):gmatch("([^/]*)/") do
    n = n + 1
    out[n] = M.unquote(seg)
  end
  return out
end

-- Run the site on this request (protected by process).
local function dispatch(self)
  local site = self.site
  local handler = site.handler
  if handler ~= nil then
    return self:_renderResult(handler(self))
  end
  self.prepath = {}
  self.postpath = splitPath(self.path)
  local resource = site:getResourceFor(self)
  return self:render(resource)
end

--- request:process(): find the resource and render it; an error on the
-- way is processingFailed. twisted Request.process.
function Request:process()
  local ok, err = xpcall(dispatch, errhandler, self)
  if not ok then self:processingFailed(err) end
end

M.Request = Request

-- ---------------------------------------------------------------- Resource

--- Resource: a node of the URL tree. putChild(path, child),
-- getChild(path, request) (default: NoResource), render(request) calling
-- render_<METHOD> (HEAD falls back to render_GET; none raises
-- UnsupportedMethod, answered 405), isLeaf (stop the traversal here).
-- twisted.web.resource.Resource.
local Resource = Object:extend({__name = "Resource", isLeaf = false})
M.Resource = Resource

function Resource:__init()
  self.children = {}
end

--- r:putChild(path, child): child answers for path (one segment) below r.
-- twisted Resource.putChild.
function Resource:putChild(path, child)
  check.string(path, 1, "putChild")
  local children = rawget(self, "children")
  if children == nil then children = {}; self.children = children end
  children[path] = child
end

--- r:getChild(path, request) -> the resource for a segment with no
-- putChild entry: NoResource by default. twisted Resource.getChild.
function Resource:getChild(path, request) -- luacheck: ignore 212
  return M.NoResource()
end

--- r:getChildWithDefault(path, request) -> the putChild entry for path,
-- else getChild(path, request). twisted Resource.getChildWithDefault.
function Resource:getChildWithDefault(path, request)
  local children = rawget(self, "children")
  local child = children and children[path]
  if child ~= nil then return child end
  return self:getChild(path, request)
end

--- r:listStaticNames() -> the putChild paths. twisted
-- Resource.listStaticNames.
function Resource:listStaticNames()
  local out = {}
  for k in pairs(rawget(self, "children") or {}) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}

--- r:render(request) -> body: self:render_<METHOD>(request). Raises
-- UnsupportedMethod (with allowedMethods) when there is none.
-- twisted Resource.render.
function Resource:render(request)
  local m = self["render_" .. request.method]
  if m == nil and request.method == "HEAD" then m = self.render_GET end
  if m == nil then
    local allowed = {}
    for _, name in ipairs(METHODS) do
      if self["render_" .. name] ~= nil or
          (name == "HEAD" and self.render_GET ~= nil) then
        allowed[#allowed + 1] = name
      end
    end
    local e = M.UnsupportedMethod("allowed: " .. table.concat(allowed, ", "))
    e.allowedMethods = allowed
    error(e)
  end
  return m(self, request)
end

--- web.getChildForRequest(resource, request) -> the resource that
-- answers: walk request.postpath while the resource is not a leaf,
-- moving each segment to request.prepath.
-- twisted.web.resource.getChildForRequest.
function M.getChildForRequest(resource, request)
  local postpath, prepath = request.postpath, request.prepath
  while #postpath > 0 and not resource.isLeaf do
    local seg = table.remove(postpath, 1)
    prepath[#prepath + 1] = seg
    resource = resource:getChildWithDefault(seg, request)
  end
  return resource
end

--- ErrorPage(code, brief, detail): a leaf answering every request with
-- that status and an HTML page. twisted.web.resource.ErrorPage.
local ErrorPage = Resource:extend({__name = "ErrorPage", isLeaf = true})
M.ErrorPage = ErrorPage

function ErrorPage:__init(code, brief, detail)
  Resource.__init(self)
  self.code, self.brief, self.detail = code, brief, detail
end

--- ep:render(request) -> the error page.
function ErrorPage:render(request)
  return errorPage(request, self.code, self.brief, self.detail)
end

--- ep:getChild() -> ep itself.
function ErrorPage:getChild()
  return self
end

--- NoResource([message]): 404 Not Found. twisted NoResource.
function M.NoResource(message)
  return ErrorPage(404, "No Such Resource",
    message or "Sorry. No luck finding that resource.")
end

--- ForbiddenResource([message]): 403 Forbidden. twisted ForbiddenResource.
function M.ForbiddenResource(message)
  return ErrorPage(403, "Forbidden Resource",
    message or "Sorry, resource is forbidden.")
end

--- Redirect(url): a leaf that redirects (302) every request to url.
-- twisted.web.util.Redirect.
local Redirect = Resource:extend({__name = "Redirect", isLeaf = true})
M.Redirect = Redirect

function Redirect:__init(url)
  Resource.__init(self)
  self.url = url
end

--- rd:render(request) -> a small page, after request:redirect(url).
function Redirect:render(request)
  request:redirect(self.url)
  request:setHeader("content-type", "text/html; charset=utf-8")
  return format('<html><head><meta http-equiv="refresh" content="0;URL=%s">' ..
    '</head><body><a href="%s">click here</a></body></html>',
    M.escapeHTML(self.url), M.escapeHTML(self.url))
end

-- ------------------------------------------------------------ HTTPChannel

--- HTTPChannel: the protocol of one server connection: parses requests
-- (in C), makes a Request per request, answers them in order.
-- twisted.web.http.HTTPChannel.
local HTTPChannel = protocol.Protocol:extend({__name = "HTTPChannel"})
M.HTTPChannel = HTTPChannel
HTTPChannel.dataReceived = C.dataReceived

--- ch:connectionMade(): start the channel's timeouts (see Site).
function HTTPChannel:connectionMade()
  local t = self.transport
  if t.setTcpNoDelay ~= nil then pcall(t.setTcpNoDelay, t, true) end
  self.site:_track(self)
end

-- The Request for a parsed head; content is a string (the whole body),
-- nil (none) or a RequestBody (streamed).
local function newRequest(self, method, uri, headers, body, minor, keep)
  local site = self.site
  local q = find(uri, "?", 1, true)
  local req = setmetatable({
    channel = self, transport = self.transport, site = site,
    method = method, uri = uri, path = q and sub(uri, 1, q - 1) or uri,
    clientproto = minor == 0 and "HTTP/1.0" or "HTTP/1.1",
    requestHeaders = setmetatable(headers, Headers),
    responseHeaders = setmetatable({}, Headers),
    persistent = keep and not self._closing,
    -- Set here, not inherited: a read that misses the instance walks the
    -- class chain, and a write of a new key may grow the table (this is
    -- the per-request hot path). Sixteen fields in all: Lua sizes the
    -- table for them exactly.
    code = 200, finished = false, startedWriting = false, sentLength = 0,
    args = q and M.parseQS(sub(uri, q + 1)) or {},
    content = body and Content(body) or EMPTY_CONTENT,
  }, site.requestFactory)
  if body ~= nil and method == "POST" then
    local ct = lastValue(headers, "content-type")
    if ct and find(lower(ct), "^application/x%-www%-form%-urlencoded") then
      M.parseQS(body, req.args)
    end
  end
  return req
end

-- Run the site's handler or resource tree for req.
local function runRequest(self, req)
  self._current = req
  local handler = self.site.handler
  local ok, r
  if handler ~= nil then
    ok, r = xpcall(handler, errhandler, req)
  else
    ok, r = xpcall(dispatch, errhandler, req)
  end
  if not ok then
    req:processingFailed(r)
  elseif type(r) == "string" and not req.finished then
    respond(req, r)
  elseif handler ~= nil then
    req:_renderResult(r)
  end
end

-- One complete request from the parser (http.c): true when its response
-- is finished, so the parser goes on; false blocks it until _requestDone.
function HTTPChannel:_onRequest(method, uri, headers, body, minor, keep)
  local req = newRequest(self, method, uri, headers, body, minor, keep)
  runRequest(self, req)
  if req.finished then return true end
  self._blocked = true
  return false
end

-- With streamRequestBody: the head of a request whose body is to come;
-- the handler runs now, request.content is a RequestBody.
function HTTPChannel:_onRequestHead(method, uri, headers, minor, keep)
  local req = newRequest(self, method, uri, headers, nil, minor, keep)
  local body = RequestBody(req)
  req.content = body
  self._body = body
  runRequest(self, req)
end

-- Bytes of the streamed body.
function HTTPChannel:_onRequestBody(bytes)
  local body = self._body
  if body then body:_data(bytes) end
end

-- The streamed body is complete: true when the response is finished too.
function HTTPChannel:_onRequestEnd()
  local body = self._body
  self._body = false
  if body then
    body:_end(Failure(M.ResponseDone("Request body fully received")))
    if not body._request.finished then
      self._blocked = true
      return false
    end
  end
  return true
end

-- A request's response is finished and the connection must close or the
-- parser, blocked on it, go on (Request._finished calls this only then).
function HTTPChannel:_requestDone(req)
  if not req.persistent then
    C.stop(self)
    self.transport:loseConnection()
    return
  end
  if self._blocked then
    self._blocked = false
    C.resume(self)
  end
end

-- The parser met bad input: answer with its status and close.
-- Follows twisted HTTPChannel._respondToBadRequestAndDisconnect.
function HTTPChannel:_onParseError(status, name)
  local body = self._body
  local req = self._current
  if body then
    -- A streamed body went bad (too large, bad chunk): the request is
    -- answered with the status unless it was already, then its reader
    -- fails with web.Error (code = status).
    self._body = false
    local breq = body._request
    breq.persistent = false
    if not breq.startedWriting and not breq.finished then
      breq.code, breq.code_message = status, false
      breq.responseHeaders = setmetatable({}, Headers)
      respond(breq, "")
    elseif not breq.finished then
      self.transport:loseConnection()
    end
    local e = M.Error(format("%d %s", status, name))
    e.code = status
    body:_end(Failure(e))
    return
  end
  if req then
    req.persistent = false
    return
  end
  writeHead(self.transport, status, nil, nil, 0, CLOSE)
  self.transport:loseConnection()
end

--- ch:connectionLost(reason): fail the request being answered (its
-- notifyFinish Deferreds).
function HTTPChannel:connectionLost(reason)
  self.site:_untrack(self)
  C.stop(self)
  local body = self._body
  if body then
    self._body = false
    body:_end(reason)
  end
  local req = self._current
  if req then
    self._current = false
    if not req.finished then req:_connectionLost(reason) end
  end
end

-- Close for a timeout: 408 when a request was being read, else quietly.
function HTTPChannel:_timedOut(midRequest)
  C.stop(self)
  self._closing = true
  if midRequest then
    writeHead(self.transport, 408, nil, nil, 0, CLOSE)
  end
  self.transport:loseConnection()
  -- A peer that does not read its answer does not hold the connection.
  local t = self.transport
  reactor.callLater(0, function()
    if self.transport == t and t.abortConnection and
        not self._lost then t:abortConnection() end
  end)
end

-- -------------------------------------------------------------------- Site

--- Site(resource[, options]): the server factory. resource is a Resource
-- tree or a function handler(request) returning the body (a string), a
-- Deferred of it, or NOT_DONE_YET. options (all optional):
--   maxHeaderBytes (16384: request line plus header fields, as Node),
--   maxHeaders (500, Twisted's maxHeaders), maxUrlLength (8192),
--   maxBodyBytes (10 MiB; the body is held in memory),
--   idleTimeout (5 s between requests, Node's keepAliveTimeout),
--   headersTimeout (60 s from a request's first byte to its last header,
--   Node's), requestTimeout (300 s to its last byte, Node's),
--   accessLog (false: true logs each request in the common log format
--   through spindle.log; a function gets each line instead),
--   requestFactory (Request, or a subclass),
--   streamRequestBody (false: a request with a body is handled once the
--   body is complete, request.content holding it; true: as soon as its
--   head is, request.content a RequestBody delivering it as it comes,
--   within maxBodyBytes).
-- Bad requests get 400 (headers, target or header count over their
-- limits too, as Twisted answers them; 413 for a body too large) and the
-- connection closes. A timeout closes
-- the connection (with 408 when a request was being read).
-- twisted.web.server.Site.
local Site = protocol.Factory:extend({__name = "Site"})
M.Site = Site

local SITE_OPTIONS = {
  maxHeaderBytes = 16384, maxHeaders = 500, maxUrlLength = 8192,
  maxBodyBytes = 10 * 1024 * 1024, idleTimeout = 5, headersTimeout = 60,
  requestTimeout = 300, accessLog = false, streamRequestBody = false,
}

function Site:__init(resource, options)
  if type(resource) == "function" then
    self.handler = resource
  elseif type(resource) == "table" then
    self.resource = resource
  else
    -- Level 3 is the user's call: __init is called by Class:new, which
    -- is either called by the user (Site:new(...)) or tail-called by the
    -- class's __call (Site(...)), which leaves no frame of its own.
    check.typeError(1, "Site", "resource or function", resource, 3)
  end
  check.optTable(options, 2, "Site", 3)
  options = options or {}
  for k, def in pairs(SITE_OPTIONS) do
    local v = options[k]
    if v == nil then v = def end
    if type(def) == "number" then
      check.nonNegative(v, 2, "Site", k, 3)
    end
    self[k] = v
  end
  self.requestFactory = options.requestFactory or Request
  self._channels = {}
  self._nchannels = 0
end

--- site:buildProtocol(addr) -> an HTTPChannel with its parser.
function Site:buildProtocol(addr) -- luacheck: ignore 212/addr
  local ch = HTTPChannel()
  ch.factory, ch.site = self, self
  ch._current, ch._blocked, ch._closing, ch._body = false, false, false,
    false
  C.attach(ch, self.maxHeaderBytes, self.maxHeaders, self.maxUrlLength,
    self.maxBodyBytes, self.streamRequestBody)
  return ch
end

--- site:getResourceFor(request) -> the resource that answers request.
-- twisted Site.getResourceFor.
function Site:getResourceFor(request)
  request.site = self
  request.sitepath = {}
  return M.getChildForRequest(self.resource, request)
end

--- site:log(request): one line in the common log format:
-- `host - - [day/Mon/year:H:M:S +0000] "METHOD uri proto" code length`,
-- to spindle.log.msg (or the accessLog function).
-- twisted.web.http.combinedLogFormatter (without referer and agent).
function Site:log(request)
  local peer = request.transport:getPeer()
  local len = request.sentLength
  local line = format('%s - - [%s] "%s %s %s" %d %s',
    peer and peer.host or "-", os.date("!%d/%b/%Y:%H:%M:%S +0000"),
    request.method, request.uri, request.clientproto, request.code,
    len > 0 and tostring(len) or "-")
  if type(self.accessLog) == "function" then self.accessLog(line)
  else log.msg(line) end
end

-- The timeouts: one sweep for every connection of the site, while it has
-- some (no timer per request).
function Site:_sweep()
  self._timer = nil
  for ch in pairs(self._channels) do
    local idle, hdrAge, reqAge, blocked = C.state(ch)
    if not blocked and not ch._current then
      if hdrAge ~= nil and hdrAge >= self.headersTimeout then
        ch:_timedOut(true)
      elseif reqAge ~= nil and reqAge >= self.requestTimeout then
        ch:_timedOut(true)
      elseif reqAge == nil and idle >= self.idleTimeout then
        ch:_timedOut(false)
      end
    end
  end
  if self._nchannels > 0 then self:_schedule() end
end

function Site:_schedule()
  local t = math.min(self.idleTimeout, self.headersTimeout,
    self.requestTimeout) / 4
  t = math.max(0.02, math.min(1, t))
  self._timer = reactor.callLater(t, self._sweep, self)
end

function Site:_track(ch)
  self._channels[ch] = true
  self._nchannels = self._nchannels + 1
  if self._timer == nil then self:_schedule() end
end

function Site:_untrack(ch)
  if self._channels[ch] then
    ch._lost = true
    self._channels[ch] = nil
    self._nchannels = self._nchannels - 1
    if self._nchannels == 0 and self._timer ~= nil then
      -- At exit the reactor may have cancelled it already.
      if self._timer:active() then self._timer:cancel() end
      self._timer = nil
    end
  end
end

-- -------------------------------------------------------------- static File

local MIME = {
  html = "text/html", htm = "text/html", txt = "text/plain",
  css = "text/css", js = "text/javascript", mjs = "text/javascript",
  json = "application/json", xml = "text/xml", svg = "image/svg+xml",
  png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg",
  gif = "image/gif", webp = "image/webp", ico = "image/vnd.microsoft.icon",
  pdf = "application/pdf", zip = "application/zip",
  gz = "application/gzip", tar = "application/x-tar",
  wasm = "application/wasm", mp4 = "video/mp4", mp3 = "audio/mpeg",
  woff = "font/woff", woff2 = "font/woff2", csv = "text/csv",
  md = "text/markdown", lua = "text/x-lua", py = "text/x-python",
  c = "text/x-csrc", h = "text/x-chdr", sh = "application/x-sh",
}
local mimeLoaded = false

-- /etc/mime.types (Debian's media-types) adds to the built-in table once.
local function loadMimeTypes()
  mimeLoaded = true
  local f = io.open("/etc/mime.types", "r")
  if f == nil then return end
  for line in f:lines() do
    if not find(line, "^%s*#") then
      local t, exts = line:match("^(%S+)%s+(.+)$")
      if t then
        for ext in exts:gmatch("%S+") do
          if MIME[ext] == nil then MIME[ext] = t end
        end
      end
    end
  end
  f:close()
end

--- web.getTypeAndEncoding(path[, defaultType]) -> content type of a file
-- name by its extension (built-in table, then /etc/mime.types), or
-- defaultType. twisted.web.static.getTypeAndEncoding (type only).
function M.getTypeAndEncoding(path, defaultType)
  local ext = path:match("%.([^./]+)$")
  if ext == nil then return defaultType end
  ext = lower(ext)
  if MIME[ext] == nil and not mimeLoaded then loadMimeTypes() end
  return MIME[ext] or defaultType
end

local DirectoryLister

-- A pull producer sending a file's bytes [offset, offset + length).
local FileProducer = Object:extend({__name = "FileProducer",
  bufferSize = 64 * 1024})

function FileProducer:__init(request, f, length)
  self.request, self.file, self.remaining = request, f, length
end

--- fp:resumeProducing(): the connection drained: write the next
-- bufferSize bytes; at the end, unregister and finish the request.
function FileProducer:resumeProducing()
  local req = self.request
  if self.file == nil then return end
  local data = self.remaining > 0 and
    self.file:read(math.min(self.bufferSize, self.remaining)) or nil
  if data ~= nil then
    self.remaining = self.remaining - #data
    req:write(data)
  end
  if data == nil or self.remaining <= 0 then
    self.file:close()
    self.file = nil
    req:unregisterProducer()
    if not req._disconnected and not req.finished then req:finish() end
  end
end

--- fp:pauseProducing(): nothing (a pull producer waits to be asked).
function FileProducer:pauseProducing() end

--- fp:stopProducing(): the connection is gone: close the file.
function FileProducer:stopProducing()
  if self.file ~= nil then
    self.file:close()
    self.file = nil
  end
end

-- Parse a Range header against size: start, stop (inclusive); false for
-- unsatisfiable; nil to ignore it (malformed, or several ranges).
local function parseRange(h, size)
  local spec = h:match("^%s*bytes%s*=%s*(.-)%s*$")
  if spec == nil or find(spec, ",", 1, true) then return nil end
  local a, b = spec:match("^(%d*)%s*%-%s*(%d*)$")
  if a == nil or (a == "" and b == "") then return nil end
  if a == "" then
    local n = tonumber(b)
    if n == 0 or size == 0 then return false end
    return math.max(0, size - n), size - 1
  end
  local start = tonumber(a)
  local stop = b == "" and size - 1 or math.min(tonumber(b), size - 1)
  if start >= size or stop < start then return false end
  return start, stop
end

--- File(path[, defaultType]): serves a file, or a directory's files
-- below it (no `..`): Content-Type from the extension (defaultType,
-- "text/html" as Twisted, when unknown), Content-Length,
-- Last-Modified, Accept-Ranges and single byte ranges (206, 416);
-- a directory's index.html, or a listing. The body is sent by a pull
-- producer, 64 KiB at a time as the connection drains.
-- twisted.web.static.File.
local File = Resource:extend({__name = "File", defaultType = "text/html",
  indexNames = {"index.html", "index.htm", "index"}})
M.File = File

function File:__init(path, defaultType)
  Resource.__init(self)
  check.string(path, 1, "File", 3) -- the user's call, as in Site:__init
  self.path = path:gsub("/+$", "")
  if self.path == "" then self.path = "/" end
  self.defaultType = defaultType
end

--- f:createSimilarFile(path) -> a File for path with f's settings.
function File:createSimilarFile(path)
  local f = File(path, rawget(self, "defaultType"))
  f.indexNames = rawget(self, "indexNames")
  return f
end

--- f:getChild(path, request) -> the File below a directory (or its index
-- for ""); NoResource when there is none or the segment is unsafe.
function File:getChild(path, request) -- luacheck: ignore 212/request
  local kind = C.stat(self.path)
  if kind ~= "directory" then return M.NoResource() end
  if path == "" then
    for _, name in ipairs(self.indexNames) do
      local p = self.path .. "/" .. name
      if C.stat(p) == "file" then return self:createSimilarFile(p) end
    end
    return DirectoryLister(self.path)
  end
  if path == "." or path == ".." or find(path, "[/%z]") then
    return M.NoResource()
  end
  local p = self.path .. "/" .. path
  if C.stat(p) == nil then return M.NoResource() end
  return self:createSimilarFile(p)
end

--- f:render_GET(request) -> NOT_DONE_YET (or a page): serve the file.
function File:render_GET(request)
  local kind, size, mtime = C.stat(self.path)
  if kind == nil then return M.NoResource():render(request) end
  if kind == "directory" then
    if sub(request.path, -1) ~= "/" then
      return Redirect(request.path .. "/"):render(request)
    end
    return self:getChild("", request):render(request)
  end
  local f = io.open(self.path, "rb")
  if f == nil then return M.ForbiddenResource():render(request) end
  request:setHeader("accept-ranges", "bytes")
  request:setHeader("last-modified", C.date(mtime))
  local ctype = M.getTypeAndEncoding(self.path,
    rawget(self, "defaultType") or File.defaultType)
  if ctype then request:setHeader("content-type", ctype) end
  local start, stop = 0, size - 1
  local range = request:getHeader("range")
  if range ~= nil then
    local a, b = parseRange(range, size)
    if a == false then
      f:close()
      request:setResponseCode(416)
      request:setHeader("content-range", "bytes */" .. size)
      return ""
    elseif a ~= nil then
      start, stop = a, b
      request:setResponseCode(206)
      request:setHeader("content-range",
        format("bytes %d-%d/%d", start, stop, size))
    end
  end
  local length = stop - start + 1
  request:setHeader("content-length", tostring(length))
  if request.method == "HEAD" or length == 0 then
    f:close()
    return ""
  end
  if start > 0 then f:seek("set", start) end
  request:registerProducer(FileProducer(request, f, length), false)
  return NOT_DONE_YET
end

--- DirectoryLister(path): an HTML list of a directory's entries.
-- twisted.web.static.DirectoryLister (simplified).
DirectoryLister = Resource:extend({__name = "DirectoryLister",
  isLeaf = true})
M.DirectoryLister = DirectoryLister

function DirectoryLister:__init(path)
  Resource.__init(self)
  self.path = path
end

--- dl:render_GET(request) -> the listing page.
function DirectoryLister:render_GET(request)
  local names = C.listdir(self.path) or {}
  table.sort(names)
  local rows = {}
  for _, name in ipairs(names) do
    local kind = C.stat(self.path .. "/" .. name)
    local shown = kind == "directory" and name .. "/" or name
    rows[#rows + 1] = format('<li><a href="%s">%s</a></li>',
      M.escapeHTML(M.quote(shown)), M.escapeHTML(shown))
  end
  request:setHeader("content-type", "text/html; charset=utf-8")
  local title = "Directory listing for " .. M.escapeHTML(request.path)
  return format("<html><head><title>%s</title></head><body><h1>%s</h1>" ..
    "<ul>%s</ul></body></html>", title, title, table.concat(rows))
end

-- The client (Agent, pool, RedirectAgent, readBody, get) lives in
-- web_client.lua; it adds itself to this module table.
require("spindle.web_client")(M, {lastValue = lastValue,
  noBodyCode = noBodyCode})

return M
