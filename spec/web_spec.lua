-- spindle.web: the HTTP/1.1 server (Site, Resource, Request, File), its
-- limits and errors, and the client (Agent, pool, RedirectAgent,
-- readBody), over real sockets on 127.0.0.1. Outside peers (curl,
-- Python, Twisted) are in web_interop_spec.lua.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local defer = require("spindle.defer")
local web = require("spindle.web")
local ssl = require("spindle.ssl")
local endpoints = require("spindle.endpoints")
local H = require("spec.support.helper")
local certs = require("spec.support.certs")()

local function wait(d)
  return H.wait(d, 10)
end

-- Listen with a Site on 127.0.0.1; returns site, port, number.
local function serve(resource, options)
  local site = web.Site(resource, options)
  local port = reactor.listenTCP(0, site, nil, "127.0.0.1")
  return site, port, port:getHost().port
end

-- Connect, write `data` (a string or a list of strings written one after
-- another), collect every byte until the connection closes: Deferred of
-- the bytes. opts.onData(proto, all) may act on what came so far.
local function raw(n, data, opts)
  opts = opts or {}
  local P = protocol.Protocol:extend({})
  local cf = protocol.ClientFactory.forProtocol(P)
  local done = defer.Deferred()
  function P:connectionMade()
    self.chunks = {}
    cf.proto = self
    if type(data) == "string" then self.transport:write(data)
    elseif data then
      for _, s in ipairs(data) do self.transport:write(s) end
    end
    if opts.onMade then opts.onMade(self) end
  end
  function P:dataReceived(s)
    self.chunks[#self.chunks + 1] = s
    if opts.onData then opts.onData(self, table.concat(self.chunks)) end
  end
  function P:connectionLost(reason)
    cf.reason = reason
    done:callback(table.concat(self.chunks))
  end
  function cf:clientConnectionFailed(_, reason) done:errback(reason) end
  reactor.connectTCP("127.0.0.1", n, cf)
  return done, cf
end

-- Close the client once `count` responses have fully arrived (by
-- counting status lines and the last body's end marker).
local function closeAfter(count, marker)
  return function(p, all)
    local n = 0
    for _ in all:gmatch("HTTP/1%.1 %d%d%d") do n = n + 1 end
    if n >= count and all:sub(-#marker) == marker then
      p.transport:loseConnection()
    end
  end
end

local function GET(path, extra)
  return "GET " .. path .. " HTTP/1.1\r\nHost: x\r\n" .. (extra or "") ..
    "\r\n"
end

local function statusOf(resp)
  return tonumber(resp:match("^HTTP/1%.1 (%d%d%d)"))
end

local function stop(port)
  wait(port:stopListening())
end

describe("web.Site", function()
  it("answers a function handler's string with Content-Length", function()
    local _, port, n = serve(function(request)
      return "hello " .. request.method .. " " .. request.path
    end)
    local resp = wait(raw(n, GET("/a/b?x=1", "Connection: close\r\n")))
    assert.equal(200, statusOf(resp))
    assert.truthy(resp:find("\r\nContent-Length: 14\r\n", 1, true))
    assert.truthy(resp:find("\r\nContent-Type: text/html\r\n", 1, true))
    assert.truthy(resp:find("\r\nDate: %a%a%a, "))
    assert.truthy(resp:find("\r\nConnection: close\r\n", 1, true))
    assert.equal("hello GET /a/b", resp:match("\r\n\r\n(.*)$"))
    stop(port)
  end)

  it("gives args, headers and the request's fields as Twisted does",
    function()
      local seen
      local _, port, n = serve(function(request)
        seen = {
          args = request.args, uri = request.uri, path = request.path,
          proto = request.clientproto, ua = request:getHeader("User-Agent"),
          multi = request.requestHeaders:getRawHeaders("x-multi"),
          host = request:getRequestHostname(),
          peer = request:getClientAddress().host,
        }
        return "ok"
      end)
      wait(raw(n, GET("/p%20q?a=1&b=x+y&a=%41", "User-Agent: t/1\r\n" ..
        "X-Multi: 1\r\nx-multi: 2\r\nConnection: close\r\n")))
      assert.same({a = {"1", "A"}, b = {"x y"}}, seen.args)
      assert.equal("/p%20q?a=1&b=x+y&a=%41", seen.uri)
      assert.equal("/p%20q", seen.path)
      assert.equal("HTTP/1.1", seen.proto)
      assert.equal("t/1", seen.ua)
      assert.same({"1", "2"}, seen.multi)
      assert.equal("x", seen.host)
      assert.equal("127.0.0.1", seen.peer)
      stop(port)
    end)

  it("keeps the connection open and answers pipelined requests in order",
    function()
      local _, port, n = serve(function(request)
        if request.path == "/slow" then
          reactor.callLater(0.05, function()
            request:write("slow")
            request:finish()
          end)
          return web.NOT_DONE_YET
        end
        return "fast" .. request.path
      end)
      local resp = wait(raw(n, GET("/slow") .. GET("/1") .. GET("/2"),
        {onData = closeAfter(3, "fast/2")}))
      local i1 = resp:find("slow", 1, true)
      local i2 = resp:find("fast/1", 1, true)
      local i3 = resp:find("fast/2", 1, true)
      assert.truthy(i1 and i2 and i3)
      assert.truthy(i1 < i2 and i2 < i3)
      assert.is_nil(resp:find("Connection: close", 1, true))
      stop(port)
    end)

  it("sends a body written without a length chunked, and ends it",
    function()
      local _, port, n = serve(function(request)
        request:write("abc")
        request:write("")
        request:write("defgh")
        request:finish()
        return web.NOT_DONE_YET
      end)
      local resp = wait(raw(n, GET("/", "Connection: close\r\n")))
      assert.truthy(resp:find("Transfer-Encoding: chunked", 1, true))
      assert.equal("3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n",
        resp:match("\r\n\r\n(.*)$"))
      stop(port)
    end)

  it("reads chunked and Content-Length request bodies", function()
    local bodies = {}
    local _, port, n = serve(function(request)
      bodies[#bodies + 1] = request.content:read()
      return "ok"
    end)
    wait(raw(n, {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " ..
      "chunked\r\n\r\n4\r\nWiki\r\n", "5\r\npedia\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n" ..
      "Connection: close\r\n\r\nxyz"}))
    assert.same({"Wikipedia", "xyz"}, bodies)
    stop(port)
  end)

  it("parses a form body into args", function()
    local args
    local _, port, n = serve(function(request)
      args = request.args
      return "ok"
    end)
    wait(raw(n, "POST /?q=1 HTTP/1.1\r\nHost: x\r\nContent-Type: " ..
      "application/x-www-form-urlencoded\r\nContent-Length: 9\r\n" ..
      "Connection: close\r\n\r\nname=a%2B"))
    assert.same({q = {"1"}, name = {"a+"}}, args)
    stop(port)
  end)

  it("answers Expect: 100-continue before the body is sent", function()
    local _, port, n = serve(function(request)
      return "got " .. request.content:read()
    end)
    local sentBody = false
    local resp = wait(raw(n, "POST / HTTP/1.1\r\nHost: x\r\nContent-" ..
      "Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n", {
        onData = function(p, all)
          if not sentBody and all:find("^HTTP/1%.1 100 Continue\r\n\r\n")
          then
            sentBody = true
            p.transport:write("body")
          end
        end,
      }))
    assert.is_true(sentBody)
    assert.truthy(resp:find("got body$"))
    stop(port)
  end)

  it("sends HEAD answers with the length and no body", function()
    local _, port, n = serve(function() return "twelve bytes" end)
    local resp = wait(raw(n, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" ..
      GET("/", "Connection: close\r\n")))
    local first = resp:match("^(.-\r\n\r\n)")
    assert.truthy(first:find("Content-Length: 12", 1, true))
    assert.truthy(resp:find("\r\n\r\nHTTP/1.1 200", 1, true))
    assert.truthy(resp:find("twelve bytes$"))
    stop(port)
  end)

  it("waits for a Deferred returned by the handler", function()
    local _, port, n = serve(function()
      local d = defer.Deferred()
      reactor.callLater(0.01, function() d:callback("later") end)
      return d
    end)
    local resp = wait(raw(n, GET("/", "Connection: close\r\n")))
    assert.truthy(resp:find("\r\n\r\nlater$"))
    stop(port)
  end)

  it("answers 500 without the traceback and logs the error", function()
    local _, port, n = serve(function() error("secret detail") end)
    local errors, resp = H.loggedErrors(function()
      return wait(raw(n, GET("/", "Connection: close\r\n")))
    end)
    assert.equal(500, statusOf(resp))
    assert.is_nil(resp:find("secret", 1, true))
    assert.is_nil(resp:find("traceback", 1, true))
    assert.equal(1, #errors)
    assert.truthy(errors[1].failure:getErrorMessage():find("secret detail"))
    assert.truthy(errors[1].failure:getTraceback():find("web_spec"))
    stop(port)
  end)

  it("fires notifyFinish's Deferred with the loss of the connection",
    function()
      local lost = defer.Deferred()
      local _, port, n = serve(function(request)
        request:notifyFinish():addErrback(function(f) lost:callback({f}) end)
        return web.NOT_DONE_YET
      end)
      local _, cf = raw(n, GET("/"), {onMade = function(p)
        reactor.callLater(0.05, function() p.transport:loseConnection() end)
      end})
      local f = wait(lost)[1]
      assert.truthy(f:check(reactor.ConnectionDone, reactor.ConnectionLost))
      assert.truthy(cf)
      stop(port)
    end)

  it("pauses a streaming producer while the client does not read",
    function()
      local paused, stopped = defer.Deferred(), defer.Deferred()
      local producer = {written = 0}
      local request
      function producer.pauseProducing(self)
        self.paused = true
        if not paused.called then paused:callback(self.written) end
      end
      function producer.resumeProducing(self) self.paused = false end
      function producer.stopProducing() stopped:callback(true) end
      local chunk = string.rep("x", 64 * 1024)
      local _, port, n = serve(function(req)
        request = req
        req:registerProducer(producer, true)
        local function pump()
          while not producer.paused and producer.written < 64 * 2 ^ 20 do
            req:write(chunk)
            producer.written = producer.written + #chunk
          end
        end
        pump()
        return web.NOT_DONE_YET
      end)
      local _, cf = raw(n, GET("/"), {onMade = function(p)
        p.transport:pauseProducing()
      end})
      local written = wait(paused)
      assert.truthy(written < 16 * 2 ^ 20)
      assert.truthy(request)
      cf.proto.transport:abortConnection()
      wait(stopped)
      stop(port)
    end)

  it("writes an access line in the common log format when asked",
    function()
      local lines = {}
      local _, port, n = serve(function() return "12345" end,
        {accessLog = function(line) lines[#lines + 1] = line end})
      wait(raw(n, GET("/x?y", "Connection: close\r\n")))
      assert.equal(1, #lines)
      assert.truthy(lines[1]:find('^127%.0%.0%.1 %- %- %[%d%d/%a%a%a/' ..
        '%d%d%d%d:%d%d:%d%d:%d%d %+0000%] "GET /x%?y HTTP/1%.1" 200 5$'))
      stop(port)
    end)

  it("logs nothing per request by default", function()
    local _, port, n = serve(function() return "x" end)
    local cap = H.captureLog()
    wait(raw(n, GET("/", "Connection: close\r\n")))
    cap:stop()
    assert.equal(0, #cap.events)
    stop(port)
  end)

  it("rejects a Site of something else", function()
    local ok, err = pcall(web.Site, 42)
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #1 to 'Site' (resource or " ..
      "function expected, got number)", 1, true))
  end)

  it("blames argument errors on the caller's line, not class.lua", function()
    -- Each call is a statement (not a tail call), so its line is known.
    local function blamed(f)
      local ok, err = pcall(f)
      assert.is_false(ok)
      assert.matches("^[^:]*web_spec%.lua:%d+: bad argument", err)
      return err
    end
    blamed(function() local _ = web.Site(42) end)
    blamed(function() local _ = web.Site:new(42) end)
    blamed(function() local _ = web.Site(web.Resource(), "x") end)
    assert.matches("idleTimeout", blamed(function()
      local _ = web.Site(web.Resource(), {idleTimeout = -1})
    end), 1, true)
    blamed(function() local _ = web.File(42) end)
  end)
end)

describe("web.Resource", function()
  local function tree()
    local root = web.Resource()
    local Hello = web.Resource:extend({isLeaf = true})
    function Hello:render_GET(request)
      return "hello " .. table.concat(request.postpath, "|")
    end
    function Hello:render_POST() return "posted" end
    local Dyn = web.Resource:extend({})
    function Dyn:getChild(path) -- luacheck: ignore 212
      local r = web.Resource()
      r.render_GET = function() return "dyn:" .. path end
      return r
    end
    root:putChild("hello", Hello())
    root:putChild("dyn", Dyn())
    root:putChild("", web.Redirect("/hello"))
    return root
  end

  it("walks putChild, getChild and isLeaf as Twisted does", function()
    local _, port, n = serve(tree())
    local resp = wait(raw(n, GET("/hello/a/b") .. GET("/dyn/zz") ..
      GET("/") .. GET("/nope", "Connection: close\r\n")))
    assert.truthy(resp:find("hello a|b", 1, true))
    assert.truthy(resp:find("dyn:zz", 1, true))
    assert.truthy(resp:find("HTTP/1.1 302 Found\r\n", 1, true))
    assert.truthy(resp:find("Location: /hello\r\n", 1, true))
    assert.truthy(resp:find("HTTP/1.1 404 Not Found\r\n", 1, true))
    stop(port)
  end)

  it("answers 405 with Allow for a method without render_", function()
    local _, port, n = serve(tree())
    local resp = wait(raw(n, "DELETE /hello HTTP/1.1\r\nHost: x\r\n" ..
      "Connection: close\r\n\r\n"))
    assert.equal(405, statusOf(resp))
    assert.truthy(resp:find("Allow: GET, HEAD, POST\r\n", 1, true))
    stop(port)
  end)
end)

describe("web limits", function()
  local function site()
    return serve(function() return "fine" end, {headersTimeout = 0.3,
      idleTimeout = 0.3, requestTimeout = 1})
  end

  -- Another client is answered while the bad one is handled.
  local function stillServes(n)
    local resp = wait(raw(n, GET("/", "Connection: close\r\n")))
    assert.equal(200, statusOf(resp))
  end

  it("answers garbage with 400 and closes", function()
    local _, port, n = site()
    local resp = wait(raw(n, "\1\2garbage\255\r\n\r\n"))
    assert.equal(400, statusOf(resp))
    assert.truthy(resp:find("Connection: close", 1, true))
    stillServes(n)
    stop(port)
  end)

  it("answers a 1 MiB header with 400 and closes, memory bounded",
    function()
      local s, port, n = site()
      local big = string.rep("a", 64 * 1024)
      local parts = {"GET / HTTP/1.1\r\nX-Big: "}
      for i = 2, 17 do parts[i] = big end
      local peak = 0
      local orig = web.HTTPChannel._onParseError
      local mem = require("spindle._http").memory
      s.buildProtocol = function(self, addr)
        local ch = web.Site.buildProtocol(self, addr)
        ch._onParseError = function(c, ...)
          peak = math.max(peak, mem(c))
          return orig(c, ...)
        end
        return ch
      end
      local resp = wait(raw(n, parts))
      assert.equal(400, statusOf(resp))
      assert.truthy(peak > 0 and peak <= 64 * 1024)
      stillServes(n)
      stop(port)
    end)

  it("answers a request line without end with 400", function()
    local _, port, n = site()
    local resp = wait(raw(n, "GET /" .. string.rep("a", 20000)))
    assert.equal(400, statusOf(resp))
    stillServes(n)
    stop(port)
  end)

  it("closes a slow-loris client with 408 after headersTimeout", function()
    local _, port, n = site()
    local timer
    local d = raw(n, "GET / HTTP/1.1\r\n", {onMade = function(p)
      local i = 0
      local function drip()
        i = i + 1
        p.transport:write("X-" .. i .. ": y\r\n")
        timer = reactor.callLater(0.05, drip)
      end
      drip()
    end})
    local resp = wait(d)
    if timer:active() then timer:cancel() end
    assert.equal(408, statusOf(resp))
    stillServes(n)
    stop(port)
  end)

  it("answers an invalid chunk size with 400 and closes", function()
    local _, port, n = site()
    local resp = wait(raw(n, "POST / HTTP/1.1\r\nHost: x\r\n" ..
      "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n"))
    assert.equal(400, statusOf(resp))
    stillServes(n)
    stop(port)
  end)

  it("answers a body over maxBodyBytes with 413", function()
    local _, port, n = serve(function() return "x" end, {maxBodyBytes = 10})
    local resp = wait(raw(n, "POST / HTTP/1.1\r\nHost: x\r\n" ..
      "Content-Length: 11\r\n\r\n01234567890"))
    assert.equal(413, statusOf(resp))
    stop(port)
  end)

  it("answers too many header fields with 400", function()
    local _, port, n = serve(function() return "x" end, {maxHeaders = 3})
    local resp = wait(raw(n, GET("/", "A: 1\r\nB: 2\r\nC: 3\r\n")))
    assert.equal(400, statusOf(resp))
    stop(port)
  end)

  it("stops reading pipelined requests while one is answered", function()
    local first, channel
    local _, port, n = serve(function(request)
      if first == nil then
        first = request
        channel = request.channel
        return web.NOT_DONE_YET
      end
      return "later"
    end)
    local flood = string.rep(GET("/more"), 20000) -- about 520 KB
    local peak = 0
    local mem = require("spindle._http").memory
    local d = raw(n, {GET("/first"), flood}, {onMade = function(p)
      local function check()
        if channel then peak = math.max(peak, mem(channel)) end
        if first and peak > 0 and p.transport then
          first:write("first")
          first:finish()
          p.transport:loseConnection()
          return
        end
        reactor.callLater(0.02, check)
      end
      reactor.callLater(0.1, check)
    end})
    wait(d)
    -- 64 KiB of waiting input, one read more, and the parser's own
    assert.truthy(peak > 0 and peak <= 256 * 1024, "peak " .. peak)
    stop(port)
  end)

  it("closes an idle keep-alive connection after idleTimeout", function()
    local _, port, n = site()
    local t0 = reactor.seconds()
    local resp = wait(raw(n, GET("/")))
    assert.equal(200, statusOf(resp))
    assert.truthy(reactor.seconds() - t0 >= 0.25)
    stop(port)
  end)
end)

describe("web.File", function()
  local dir
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p '" .. dir .. "/sub'")
    local f = io.open(dir .. "/a.txt", "wb")
    f:write("0123456789")
    f:close()
    f = io.open(dir .. "/page.html", "wb")
    f:write("<p>hi</p>")
    f:close()
    f = io.open(dir .. "/big.bin", "wb")
    f:write(string.rep("z", 300 * 1024))
    f:close()
    f = io.open(dir .. "/sub/index.html", "wb")
    f:write("index!")
    f:close()
  end)
  teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("serves a file with its type and length", function()
    local _, port, n = serve(web.File(dir))
    local resp = wait(raw(n, GET("/a.txt") .. GET("/page.html",
      "Connection: close\r\n")))
    assert.truthy(resp:find("Content-Type: text/plain\r\n", 1, true))
    assert.truthy(resp:find("Content-Length: 10\r\n", 1, true))
    assert.truthy(resp:find("\r\n\r\n0123456789HTTP", 1, true))
    assert.truthy(resp:find("Content-Type: text/html\r\n", 1, true))
    assert.truthy(resp:find("Accept-Ranges: bytes\r\n", 1, true))
    assert.truthy(resp:find("<p>hi</p>$"))
    stop(port)
  end)

  it("serves byte ranges (206) and refuses bad ones (416)", function()
    local _, port, n = serve(web.File(dir))
    local resp = wait(raw(n, GET("/a.txt", "Range: bytes=2-4\r\n") ..
      GET("/a.txt", "Range: bytes=-3\r\n") ..
      GET("/a.txt", "Range: bytes=20-\r\nConnection: close\r\n")))
    assert.truthy(resp:find("HTTP/1.1 206 Partial Content\r\n", 1, true))
    assert.truthy(resp:find("Content-Range: bytes 2-4/10\r\n", 1, true))
    assert.truthy(resp:find("\r\n\r\n234HTTP", 1, true))
    assert.truthy(resp:find("Content-Range: bytes 7-9/10\r\n", 1, true))
    assert.truthy(resp:find("\r\n\r\n789HTTP", 1, true))
    assert.truthy(resp:find("HTTP/1.1 416 ", 1, true))
    assert.truthy(resp:find("Content-Range: bytes */10\r\n", 1, true))
    stop(port)
  end)

  it("streams a large file whole, HEAD without it", function()
    local _, port, n = serve(web.File(dir))
    local resp = wait(raw(n, "HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n" ..
      GET("/big.bin", "Connection: close\r\n")))
    local _, count = resp:gsub("Content%-Length: 307200\r\n", "")
    assert.equal(2, count)
    assert.equal(300 * 1024, #resp:match("\r\n\r\n(z+)$"))
    stop(port)
  end)

  it("serves a directory's index, lists others, keeps to its root",
    function()
      local _, port, n = serve(web.File(dir))
      local resp = wait(raw(n, GET("/sub/") .. GET("/sub") .. GET("/") ..
        GET("/../etc/passwd") .. GET("/nope", "Connection: close\r\n")))
      assert.truthy(resp:find("index!", 1, true))
      assert.truthy(resp:find("Location: /sub/\r\n", 1, true))
      assert.truthy(resp:find('<a href="a.txt">a.txt</a>', 1, true))
      local _, n404 = resp:gsub("HTTP/1%.1 404", "")
      assert.equal(2, n404)
      stop(port)
    end)
end)

describe("web.Agent", function()
  local function echoSite()
    return serve(function(request)
      if request.path == "/redirect" then
        request:redirect("/final?from=r")
        return ""
      elseif request.path == "/loop" then
        request:redirect("/loop")
        return ""
      elseif request.path == "/see" then
        request:setResponseCode(303)
        request:setHeader("location", "/final")
        return ""
      elseif request.path == "/stream" then
        request:write("a")
        reactor.callLater(0.01, function()
          request:write("b")
          request:finish()
        end)
        return web.NOT_DONE_YET
      end
      request:setHeader("x-method", request.method)
      return request.method .. " " .. request.uri .. " " ..
        request.content:read() .. " " ..
        tostring(request:getHeader("x-test"))
    end)
  end

  it("requests and reads the body (readBody)", function()
    local _, port, n = echoSite()
    local agent = web.Agent(reactor)
    local resp = wait(agent:request("GET", "http://127.0.0.1:" .. n ..
      "/p?q=1", {["X-Test"] = "yes"}))
    assert.equal(200, resp.code)
    assert.equal("OK", resp.phrase)
    assert.same({"HTTP", 1, 1}, resp.version)
    assert.equal("GET", resp.headers:getRawHeaders("X-Method")[1])
    assert.equal(#"GET /p?q=1  yes", resp.length)
    assert.equal("GET /p?q=1  yes", wait(web.readBody(resp)))
    stop(port)
  end)

  it("sends a string body and a chunked body producer", function()
    local _, port, n = echoSite()
    local agent = web.Agent(reactor)
    local url = "http://127.0.0.1:" .. n .. "/b"
    local r1 = wait(agent:request("POST", url, nil, "payload"))
    assert.equal("POST /b payload nil", wait(web.readBody(r1)))
    local producer = {length = web.UNKNOWN_LENGTH}
    function producer.startProducing(_, consumer)
      consumer:write("chunk1-")
      consumer:write("chunk2")
      return defer.succeed(nil)
    end
    function producer.stopProducing() end
    local r2 = wait(agent:request("PUT", url, nil, producer))
    assert.equal("PUT /b chunk1-chunk2 nil", wait(web.readBody(r2)))
    stop(port)
  end)

  it("reads a chunked response body", function()
    local _, port, n = echoSite()
    local body = wait(web.get("http://127.0.0.1:" .. n .. "/stream"))
    assert.equal("ab", body)
    stop(port)
  end)

  it("reuses a pooled connection and closes cached ones", function()
    local made = 0
    local site, port, n = echoSite()
    local orig = site.buildProtocol
    site.buildProtocol = function(self, addr)
      made = made + 1
      return orig(self, addr)
    end
    local pool = web.HTTPConnectionPool(reactor)
    local agent = web.Agent(reactor, {pool = pool})
    local url = "http://127.0.0.1:" .. n .. "/x"
    for _ = 1, 3 do
      wait(web.readBody(wait(agent:request("GET", url))))
    end
    assert.equal(1, made)
    wait(pool:closeCachedConnections())
    stop(port)
  end)

  it("limits connections per host and queues the rest", function()
    local live, peak = 0, 0
    local _, port, n = serve(function(request)
      live = live + 1
      peak = math.max(peak, live)
      reactor.callLater(0.02, function()
        live = live - 1
        request:write("k")
        request:finish()
      end)
      return web.NOT_DONE_YET
    end)
    local pool = web.HTTPConnectionPool(reactor)
    pool.maxConnectionsPerHost = 2
    local agent = web.Agent(reactor, {pool = pool})
    local ds = {}
    for i = 1, 6 do
      ds[i] = agent:request("GET", "http://127.0.0.1:" .. n .. "/"):
        addCallback(web.readBody)
    end
    local r = wait(defer.gatherResults(ds))
    assert.equal("kkkkkk", table.concat(r, "", 1, 6))
    assert.equal(2, peak)
    wait(pool:closeCachedConnections())
    stop(port)
  end)

  it("follows redirects only through RedirectAgent", function()
    local _, port, n = echoSite()
    local base = "http://127.0.0.1:" .. n
    local plain = wait(web.Agent(reactor):request("GET", base .. "/redirect"))
    assert.equal(302, plain.code)
    wait(web.readBody(plain))
    local ra = web.RedirectAgent(web.Agent(reactor))
    local r = wait(ra:request("GET", base .. "/redirect"))
    assert.equal(200, r.code)
    assert.equal(302, r.previousResponse.code)
    assert.equal("GET /final?from=r  nil", wait(web.readBody(r)))
    local r303 = wait(ra:request("POST", base .. "/see", nil, "x"))
    assert.equal("GET /final  nil", wait(web.readBody(r303)))
    local f = H.waitForFailure(ra:request("POST", base .. "/redirect"))
    assert.truthy(f:check(web.ResponseFailed))
    assert.truthy(f.value.reasons[1]:check(web.PageRedirect))
    local f2 = H.waitForFailure(web.RedirectAgent(web.Agent(reactor), 3)
      :request("GET", base .. "/loop"))
    assert.truthy(f2:check(web.InfiniteRedirection))
    stop(port)
  end)

  it("fails for an unsupported scheme and a refused connection", function()
    local f = H.waitForFailure(web.Agent(reactor):request("GET",
      "ftp://127.0.0.1/"))
    assert.truthy(f:check(web.SchemeNotSupported))
    local probe = reactor.listenTCP(0, protocol.Factory.forProtocol(
      protocol.Protocol), nil, "127.0.0.1")
    local n = probe:getHost().port
    wait(probe:stopListening())
    local f2 = H.waitForFailure(web.get("http://127.0.0.1:" .. n .. "/"))
    assert.truthy(f2:check(reactor.ConnectionRefusedError))
  end)

  it("fails web.get for an error status with web.Error", function()
    local _, port, n = serve(web.Resource())
    local f = H.waitForFailure(web.get("http://127.0.0.1:" .. n .. "/x"))
    assert.truthy(f:check(web.Error))
    assert.equal(404, f.value.code)
    stop(port)
  end)
end)

describe("web.Site as a factory", function()
  local function hello(request) return "hi " .. tostring(request:isSecure())
  end

  it("serves over listenSSL to an Agent that verifies it", function()
    local site = web.Site(hello)
    local port = reactor.listenSSL(0, site, ssl.DefaultOpenSSLContextFactory(
      certs.serverKey, certs.server), nil, "127.0.0.1")
    local agent = web.Agent(reactor, {tlsOptions = function(host)
      return ssl.optionsForClientTLS(host, {trustRoot = certs.ca})
    end})
    local resp = wait(agent:request("GET", "https://localhost:" ..
      port:getHost().port .. "/"))
    assert.equal("hi true", wait(web.readBody(resp)))
    wait(port:stopListening())
  end)

  it("listens through a server endpoint string", function()
    local ep = endpoints.serverFromString(reactor,
      "tcp:0:interface=127.0.0.1")
    local port = wait(ep:listen(web.Site(hello)))
    local body = wait(web.get("http://127.0.0.1:" .. port:getHost().port ..
      "/"))
    assert.equal("hi false", body)
    wait(port:stopListening())
  end)
end)

describe("web HTTP/1.0", function()
  it("closes after the answer unless keep-alive was asked", function()
    local _, port, n = serve(function() return "ten bytes!" end)
    local resp = wait(raw(n, "GET / HTTP/1.0\r\n\r\n"))
    assert.truthy(resp:find("Content-Length: 10\r\n", 1, true))
    assert.truthy(resp:find("Connection: close\r\n", 1, true))
    local two = wait(raw(n, "GET / HTTP/1.0\r\nConnection: keep-alive" ..
      "\r\n\r\nGET / HTTP/1.0\r\n\r\n"))
    local _, count = two:gsub("ten bytes!", "")
    assert.equal(2, count)
    assert.truthy(two:find("Connection: keep-alive\r\n", 1, true))
    stop(port)
  end)

  it("ends a body of unknown length by closing", function()
    local _, port, n = serve(function(request)
      request:write("part1 ")
      request:write("part2")
      request:finish()
      return web.NOT_DONE_YET
    end)
    local resp = wait(raw(n, "GET / HTTP/1.0\r\nConnection: keep-alive" ..
      "\r\n\r\n"))
    assert.is_nil(resp:find("chunked", 1, true))
    assert.truthy(resp:find("\r\n\r\npart1 part2$"))
    stop(port)
  end)
end)

describe("web.Agent timeouts", function()
  it("aborts a request whose Deferred times out (addTimeout)", function()
    local pending
    local _, port, n = serve(function(request)
      pending = request
      return web.NOT_DONE_YET
    end)
    local d = web.Agent(reactor):request("GET", "http://127.0.0.1:" .. n ..
      "/hang")
    d:addTimeout(0.1, reactor)
    local f = H.waitForFailure(d)
    assert.truthy(f:check(defer.TimeoutError))
    wait(pending:notifyFinish():addErrback(function() return "lost" end))
    stop(port)
  end)
end)

describe("web.Site{streamRequestBody = true}", function()
  it("runs the handler at the head and streams the body to it", function()
    local events = {}
    local _, port, n = serve(function(request)
      events[#events + 1] = "handler"
      request.content:deliverBody({
        dataReceived = function(_, bytes)
          events[#events + 1] = "data " .. bytes
        end,
        connectionLost = function(_, reason)
          events[#events + 1] = reason:check(web.ResponseDone) and "done" or
            "lost"
          request:write("got it")
          request:finish()
        end,
      })
      return web.NOT_DONE_YET
    end, {streamRequestBody = true})
    local sent = false
    local resp = wait(raw(n, "POST / HTTP/1.1\r\nHost: x\r\n" ..
      "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", {
        onMade = function(p)
          reactor.callLater(0.05, function()
            sent = true
            p.transport:write("6\r\n world\r\n0\r\n\r\n" .. GET("/",
              "Connection: close\r\n"))
          end)
        end,
      }))
    assert.is_true(sent)
    assert.same({"handler", "data hello", "data  world", "done", "handler",
      "done"}, events)
    assert.truthy(resp:find("got it", 1, true))
    local _, count = resp:gsub("HTTP/1%.1 200", "")
    assert.equal(2, count)
    stop(port)
  end)

  it("gathers a streamed body with readBody, within maxBodyBytes",
    function()
      local _, port, n = serve(function(request)
        return web.readBody(request.content):addCallbacks(function(body)
          return "len " .. #body
        end, function(f)
          -- the channel answered 413 already
          f:trap(web.Error)
          assert(f.value.code == 413)
          return web.NOT_DONE_YET
        end)
      end, {streamRequestBody = true, maxBodyBytes = 100000})
      local resp = wait(raw(n, "POST / HTTP/1.1\r\nHost: x\r\n" ..
        "Content-Length: 70000\r\n\r\n" .. string.rep("b", 70000) ..
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked" ..
        "\r\n\r\n" .. ("10000\r\n" .. string.rep("c", 65536) ..
        "\r\n"):rep(2)))
      assert.truthy(resp:find("len 70000", 1, true))
      assert.truthy(resp:find("HTTP/1.1 413 ", 1, true))
      stop(port)
    end)

  it("answers a body-less request at once", function()
    local _, port, n = serve(function(request)
      return "plain " .. request.content:read()
    end, {streamRequestBody = true})
    local resp = wait(raw(n, GET("/", "Connection: close\r\n")))
    assert.truthy(resp:find("plain $"))
    stop(port)
  end)
end)

describe("spindle._http's request parser", function()
  local C = require("spindle._http")

  -- A channel stub recording what the parser hands over.
  local function channel(opts)
    local ch = {seen = {}, errors = {}}
    function ch._onRequest(self, method, uri, headers, body)
      self.seen[#self.seen + 1] = {method, uri, headers, body}
      return true
    end
    function ch._onParseError(self, status, name)
      self.errors[#self.errors + 1] = {status, name}
    end
    C.attach(ch, opts and opts.maxHeaderBytes, nil, nil, nil)
    return ch
  end

  local stream = table.concat({
    "GET /a?x=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-a: 2\r\n\r\n",
    "POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
    "PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nEmpty:\r\n\r\n" ..
      "3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nTrailer: t\r\n\r\n",
    "DELETE /" .. string.rep("d", 300) .. " HTTP/1.1\r\nLong: " ..
      string.rep("v", 3000) .. "   \r\n\r\n",
  })

  local function check(ch)
    assert.same({}, ch.errors)
    assert.equal(4, #ch.seen)
    local a, b, c, d = table.unpack(ch.seen)
    assert.same({"GET", "/a?x=1", {host = "h", ["x-a"] = {"1", "2"}}}, a)
    assert.same({"POST", "/b", {["content-length"] = "5"}, "hello"}, b)
    assert.equal("abcdefg", c[4])
    assert.equal("", c[3].empty)
    assert.equal(string.rep("v", 3000), d[3].long)
    assert.equal(301, #d[2])
  end

  it("gives the same requests however the bytes are split", function()
    local ch = channel()
    C.dataReceived(ch, stream)
    check(ch)
    for _, seed in ipairs({1, 2, 3, 4, 5}) do
      math.randomseed(seed)
      ch = channel()
      local i = 1
      while i <= #stream do
        local n = math.random(1, 40)
        C.dataReceived(ch, stream:sub(i, i + n - 1))
        i = i + n
      end
      check(ch)
    end
    ch = channel()
    for i = 1, #stream do C.dataReceived(ch, stream:sub(i, i)) end
    check(ch)
  end)

  it("leaves a chunked body's trailer fields out of the headers", function()
    -- fuzz/http.c: they were added to the request's headers.
    for _, step in ipairs({1, 1000}) do
      local ch = channel()
      local req = "POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n" ..
        "X: 1\r\n\r\n3\r\nabc\r\n0\r\nX: 2\r\nTrailer-Y: t\r\n\r\n"
      for i = 1, #req, step do C.dataReceived(ch, req:sub(i, i + step - 1)) end
      assert.same({}, ch.errors)
      assert.same({"POST", "/t", {["transfer-encoding"] = "chunked",
        x = "1"}, "abc"}, ch.seen[1])
    end
  end)

  it("refuses a header field with an empty name", function()
    -- fuzz/http.c: llhttp 8.1 took ": x" as a field named "".
    for _, req in ipairs({"GET / HTTP/1.1\r\n: x\r\n\r\n",
        "GET / HTTP/1.1\r\nA: b\r\n:\r\n\r\n"}) do
      local ch = channel()
      C.dataReceived(ch, req)
      assert.same({{400, "HPE_USER"}}, ch.errors)
      assert.same({}, ch.seen)
    end
  end)

  it("fails with 400 past maxHeaderBytes, however split", function()
    local big = "GET / HTTP/1.1\r\nX: " .. string.rep("y", 5000) ..
      "\r\n\r\n"
    for _, step in ipairs({1, 7, 4096, #big}) do
      local ch = channel({maxHeaderBytes = 4096})
      local i = 1
      while i <= #big do
        C.dataReceived(ch, big:sub(i, i + step - 1))
        i = i + step
      end
      assert.same({{400, "HPE_USER"}}, ch.errors)
      assert.equal(0, #ch.seen)
      assert.truthy(C.memory(ch) <= 16 * 1024)
    end
  end)
end)

describe("spindle._http's response parser", function()
  local C = require("spindle._http")

  local function client()
    local obj = {events = {}}
    function obj._onHead(self, code, reason, minor, headers)
      self.events[#self.events + 1] = ("head %d %s 1.%d %s"):format(code,
        reason, minor, tostring(headers["content-type"]))
    end
    function obj._onBody(self, bytes)
      local last = self.events[#self.events]
      if last:find("^body ") then self.events[#self.events] = last .. bytes
      else self.events[#self.events + 1] = "body " .. bytes end
    end
    function obj._onDone(self, keep)
      self.events[#self.events + 1] = "done " .. tostring(keep)
    end
    function obj._onParseError(self, status, name, reason)
      -- HPE_USER: a limit or check of http.c's own, whose reason counts.
      self.events[#self.events + 1] = "error " .. status .. " " .. name ..
        (name == "HPE_USER" and ": " .. reason or "")
    end
    return obj
  end

  local stream = "HTTP/1.1 100 Continue\r\n\r\n" ..
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3" ..
    "\r\n\r\nabc" ..
    "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n" ..
    "2\r\nde\r\n3\r\nfgh\r\n0\r\n\r\n" ..
    "HTTP/1.0 200 OK\r\n\r\nuntil the end"
  local expected = {
    "head 100 Continue 1.1 nil", "done true",
    "head 200 OK 1.1 text/plain", "body abc", "done true",
    "head 201 Created 1.1 nil", "body defgh", "done true",
    "head 200 OK 1.0 nil", "body until the end", "done false",
  }

  it("gives the same events however the bytes are split", function()
    for _, step in ipairs({#stream, 1, 2, 5, 13}) do
      local p, obj = C.ResponseParser(), client()
      local i = 1
      while i <= #stream do
        p:feed(obj, stream:sub(i, i + step - 1))
        i = i + step
      end
      assert.is_false(p:finish(obj))
      assert.same(expected, obj.events)
    end
  end)

  it("gives the head without the trailer fields, however split", function()
    -- fuzz/http.c: fed at once, the head came at the message's end with
    -- the trailer fields among its headers; fed byte by byte, without.
    local resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" ..
      "2\r\nhi\r\n0\r\nContent-Type: late\r\n\r\n"
    for _, step in ipairs({#resp, 1}) do
      local p, obj = C.ResponseParser(), client()
      for i = 1, #resp, step do p:feed(obj, resp:sub(i, i + step - 1)) end
      assert.same({"head 200 OK 1.1 nil", "body hi", "done true"},
        obj.events)
    end
  end)

  it("gives the head before an error in the body, however split", function()
    -- fuzz/http.c: fed at once, the head was lost (only the error came).
    local resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" ..
      "2\r\nhi\r\nzz\r\n"
    for _, step in ipairs({#resp, 1}) do
      local p, obj = C.ResponseParser(), client()
      for i = 1, #resp, step do p:feed(obj, resp:sub(i, i + step - 1)) end
      assert.same({"head 200 OK 1.1 nil", "body hi",
        "error 400 HPE_INVALID_CHUNK_SIZE"}, obj.events)
    end
  end)

  it("knows a HEAD answer has no body, and a cut body is cut", function()
    local p, obj = C.ResponseParser(), client()
    p:setNoBody(true)
    p:feed(obj, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
    assert.same({"head 200 OK 1.1 nil", "done true"}, obj.events)
    p, obj = C.ResponseParser(), client()
    p:feed(obj, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")
    assert.is_true(p:finish(obj))
    p, obj = C.ResponseParser(), client()
    p:feed(obj, "HTTP/1.1 2x0 OK\r\n\r\n")
    assert.same({"error 400 HPE_INVALID_STATUS"}, obj.events)
    -- fuzz/http.c: llhttp took a status line without a code as code 0.
    p, obj = C.ResponseParser(), client()
    -- Its reason is http.c's, which llhttp used to replace with "User
    -- callback error" (newuser3 #1).
    p:feed(obj, "HTTP/1.1 \r\nContent-Length: 0\r\n\r\n")
    assert.same({"error 400 HPE_USER: Invalid status code"}, obj.events)
    -- ... and gave an empty span, which was copied from a NULL buffer
    -- (UBSan, make test-asan).
    p, obj = C.ResponseParser(), client()
    p:feed(obj, "HTTP/1.1 \r\x8a:\r\xff\xff")
    assert.same({"error 400 HPE_USER: Empty header name"}, obj.events)
    -- ... and a field with an empty name (the empty head computed
    -- NULL + 0 too).
    p, obj = C.ResponseParser(), client()
    p:feed(obj, "HTTP/1.1 200\r\n:\r\n\r\n")
    assert.same({"error 400 HPE_USER: Empty header name"}, obj.events)
  end)
end)

-- Argument errors of the client (web_client.lua) name the public function
-- and blame the caller's line, not request's checks inside web_client.lua.
describe("web client argument errors", function()
  -- f must make the call on the line after the one calling blamedAt.
  local function blamedAt(f)
    local line = debug.getinfo(2, "l").currentline + 1
    local ok, err = pcall(f)
    assert.is_false(ok)
    assert.equal(1, err:find(debug.getinfo(1, "S").short_src .. ":" ..
      line .. ":", 1, true), err)
    return err
  end
  local function has(err, s) assert.truthy(err:find(s, 1, true), err) end

  it("names get and request and their own argument numbers", function()
    has(blamedAt(function()
      local _ = web.get(5) end),
      "bad argument #1 to 'get' (string expected, got number)")
    has(blamedAt(function()
      local _ = web.get("http://127.0.0.1:1/", 5) end),
      "bad argument #2 to 'get' (table expected, got number)")
    has(blamedAt(function()
      local _ = web.request(5) end),
      "bad argument #1 to 'request' (string expected, got number)")
    has(blamedAt(function()
      local _ = web.request("GET", 5) end),
      "bad argument #2 to 'request' (string expected, got number)")
    has(blamedAt(function()
      local _ = web.Agent(reactor):request("GET", nil) end),
      "bad argument #2 to 'request' (string expected, got nil)")
    has(blamedAt(function()
      local _ = web.RedirectAgent(web.Agent(reactor)):request(5) end),
      "bad argument #1 to 'request' (string expected, got number)")
  end)

  it("refuses an Agent of something that is not a reactor", function()
    has(blamedAt(function()
      local _ = web.Agent(5) end),
      "bad argument #1 to 'Agent' (reactor expected, got number)")
    has(blamedAt(function()
      local _ = web.Agent:new({}) end),
      "bad argument #1 to 'Agent' (reactor expected, got table)")
    has(blamedAt(function()
      local _ = web.Agent(reactor, 5) end),
      "bad argument #2 to 'Agent' (table expected, got number)")
    has(blamedAt(function()
      local _ = web.RedirectAgent(5) end),
      "bad argument #1 to 'RedirectAgent' (agent expected, got number)")
    -- nil is the default reactor, as before.
    assert.equal(reactor, web.Agent()._reactor)
  end)
end)
