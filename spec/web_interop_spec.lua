-- spindle.web against real peers: curl, Python's http.client and
-- Twisted's Agent as clients of spindle's server; Python's http.server,
-- Twisted's web server and a Python https server (with a CA to verify,
-- and names that must be refused) as servers for spindle's Agent.
local reactor = require("spindle.reactor")
local threads = require("spindle.threads")
local ssl = require("spindle.ssl")
local web = require("spindle.web")
local H = require("spec.support.helper")
local peers = require("spec.support.peers")
local certs = require("spec.support.certs")()

-- Twisted is Debian's python3-twisted, for the system python3.
local TWISTED_PY = "/usr/bin/python3"

local function wait(d)
  return H.wait(d, 20)
end

-- Run a shell command on a pool thread (the reactor keeps serving
-- meanwhile): Deferred of its output, stderr included.
local function run(cmd)
  return threads.deferToThread(function(c)
    local p = io.popen(c .. " 2>&1", "r")
    local out = p:read("a")
    p:close()
    return out
  end, "timeout 15 " .. cmd)
end

local function q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- A spindle server answering by path; counts connections.
local function server()
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p " .. q(dir))
  local f = io.open(dir .. "/digits.txt", "wb")
  f:write("0123456789")
  f:close()
  local files = web.File(dir)
  local site = web.Site(function(request)
    if request.path:find("^/files/") then
      request.postpath = {request.path:match("^/files/(.*)$")}
      request.prepath = {"files"}
      return request:render(web.getChildForRequest(files, request))
    end
    request:setHeader("content-type", "text/plain")
    local body = request.content:read()
    return ("%s %s %d %s"):format(request.method, request.path, #body,
      body:sub(1, 8))
  end)
  site.made = 0
  local orig = site.buildProtocol
  site.buildProtocol = function(self, addr)
    self.made = self.made + 1
    return orig(self, addr)
  end
  local port = reactor.listenTCP(0, site, nil, "127.0.0.1")
  local url = "http://127.0.0.1:" .. port:getHost().port
  return site, port, url, dir
end

local function stop(port, dir)
  wait(port:stopListening())
  if dir then os.execute("rm -rf " .. q(dir)) end
end

describe("spindle's server with curl", function()
  it("keeps the connection alive across requests", function()
    local site, port, url, dir = server()
    local out = wait(run("curl -sv " .. url .. "/a " .. url .. "/b"))
    assert.truthy(out:find("GET /a 0", 1, true))
    assert.truthy(out:find("GET /b 0", 1, true))
    assert.truthy(out:find("Re-using existing connection", 1, true))
    assert.equal(1, site.made)
    stop(port, dir)
  end)

  it("takes a chunked upload", function()
    local _, port, url, dir = server()
    local path = dir .. "/upload.bin"
    local f = io.open(path, "wb")
    f:write(("abcdefgh"):rep(50000))
    f:close()
    local out = wait(run("curl -s -H 'Transfer-Encoding: chunked' " ..
      "--data-binary @" .. q(path) .. " " .. url .. "/up"))
    assert.equal("POST /up 400000 abcdefgh", out)
    stop(port, dir)
  end)

  it("answers Expect: 100-continue", function()
    local _, port, url, dir = server()
    local out = wait(run("curl -sv -H 'Expect: 100-continue' " ..
      "--data-binary 'hello there' " .. url .. "/c"))
    assert.truthy(out:find("< HTTP/1.1 100 Continue", 1, true))
    assert.truthy(out:find("POST /c 11 hello th", 1, true))
    stop(port, dir)
  end)

  it("gets HEAD answers without a body", function()
    local _, port, url, dir = server()
    local out = wait(run("curl -sI " .. url .. "/h"))
    assert.truthy(out:find("^HTTP/1.1 200 OK\r\n"))
    assert.truthy(out:find("Content-Length: 10\r\n", 1, true))
    assert.truthy(out:find("\r\n\r\n$"))
    stop(port, dir)
  end)

  it("gets a byte range of a file", function()
    local _, port, url, dir = server()
    local out = wait(run("curl -s -r 2-5 " .. url .. "/files/digits.txt"))
    assert.equal("2345", out)
    local head = wait(run("curl -s -D - -o /dev/null -r 2-5 " .. url ..
      "/files/digits.txt"))
    assert.truthy(head:find("HTTP/1.1 206 Partial Content", 1, true))
    assert.truthy(head:find("Content-Range: bytes 2-5/10", 1, true))
    assert.truthy(head:find("Content-Type: text/plain", 1, true))
    stop(port, dir)
  end)
end)

describe("spindle's server with Python and Twisted clients", function()
  it("serves Python's http.client on one connection", function()
    local site, port, url, dir = server()
    local py = peers.pyfile(([[
import http.client
c = http.client.HTTPConnection("127.0.0.1", %d)
c.request("GET", "/one")
r = c.getresponse(); print(r.status, r.read().decode())
c.request("POST", "/two", body=b"x" * 5000)
r = c.getresponse(); print(r.status, r.read().decode())
c.request("HEAD", "/three")
r = c.getresponse(); print(r.status, r.getheader("content-length"), r.read())
c.close()
]]):format(url:match(":(%d+)$")))
    local out = wait(run("python3 " .. py))
    os.remove(py)
    assert.equal("200 GET /one 0 \n200 POST /two 5000 xxxxxxxx\n" ..
      "200 14 b''\n", out)
    assert.equal(1, site.made)
    stop(port, dir)
  end)

  it("serves Twisted's Agent with a persistent pool", function()
    local site, port, url, dir = server()
    local py = peers.pyfile(([[
from io import BytesIO
from twisted.internet import defer, task
from twisted.web.client import (Agent, HTTPConnectionPool, readBody,
    FileBodyProducer)

async def main(reactor):
    pool = HTTPConnectionPool(reactor)
    agent = Agent(reactor, pool=pool)
    for path in (b"/a", b"/b"):
        r = await agent.request(b"GET", b"%s" + path)
        print(r.code, (await readBody(r)).decode())
    body = FileBodyProducer(BytesIO(b"y" * 100000))
    r = await agent.request(b"PUT", b"%s/p", bodyProducer=body)
    print(r.code, (await readBody(r)).decode())
    await pool.closeCachedConnections()

task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
]]):format(url, url))
    local out = wait(run(TWISTED_PY .. " -W ignore " .. py))
    os.remove(py)
    assert.equal("200 GET /a 0 \n200 GET /b 0 \n200 PUT /p 100000 yyyyyyyy\n",
      out)
    assert.equal(1, site.made)
    stop(port, dir)
  end)
end)

describe("spindle's Agent with outside servers", function()
  it("talks to Python's http.server", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. q(dir))
    local f = io.open(dir .. "/hello.txt", "wb")
    f:write("from python")
    f:close()
    local py = peers.pyfile(([[
import functools, http.server
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=%q)
h.func.log_message = lambda *a: None
s = http.server.HTTPServer(("127.0.0.1", 0), h)
s.timeout = 5
print(s.server_address[1], flush=True)
for i in range(2):
    s.handle_request()
]]):format(dir))
    local p, n = peers.listening("timeout 15 python3 " .. py, "^(%d+)$")
    local base = "http://127.0.0.1:" .. n
    assert.equal("from python", wait(web.get(base .. "/hello.txt")))
    local resp = wait(web.Agent(reactor):request("GET", base .. "/nope"))
    assert.equal(404, resp.code)
    wait(web.readBody(resp))
    peers.finish(p)
    os.remove(py)
    os.execute("rm -rf " .. q(dir))
  end)

  it("talks to Twisted's web server", function()
    local py = peers.pyfile([[
from twisted.internet import reactor
from twisted.web import resource, server

class R(resource.Resource):
    isLeaf = True
    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        if request.uri == b"/last":
            reactor.callLater(0.2, reactor.stop)
        return b"twisted says hi at " + request.uri

p = reactor.listenTCP(0, server.Site(R()), interface="127.0.0.1")
print(p.getHost().port, flush=True)
reactor.callLater(10, reactor.stop)
reactor.run()
]])
    local p, n = peers.listening("timeout 15 " .. TWISTED_PY .. " " .. py,
      "^(%d+)$")
    local pool = web.HTTPConnectionPool(reactor)
    local agent = web.Agent(reactor, {pool = pool})
    local base = "http://127.0.0.1:" .. n
    local r1 = wait(agent:request("GET", base .. "/first"))
    assert.equal("text/plain", r1.headers:getRawHeaders("content-type")[1])
    assert.equal("twisted says hi at /first", wait(web.readBody(r1)))
    local r2 = wait(agent:request("GET", base .. "/last"))
    assert.equal("twisted says hi at /last", wait(web.readBody(r2)))
    wait(pool:closeCachedConnections())
    peers.finish(p)
    os.remove(py)
  end)

  describe("over https", function()
    local function httpsServer(requests)
      local py = peers.pyfile(([[
import http.server, ssl
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"secure hello " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(%q, %q)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.timeout = 5
print(s.server_address[1], flush=True)
for i in range(%d):
    s.handle_request()
]]):format(certs.server, certs.serverKey, requests))
      local p, n = peers.listening("timeout 15 python3 " .. py, "^(%d+)$")
      return p, n, py
    end

    it("verifies the server against the CA it is given", function()
      local p, n, py = httpsServer(1)
      local agent = web.Agent(reactor, {tlsOptions = function(host)
        return ssl.optionsForClientTLS(host, {trustRoot = certs.ca})
      end})
      local resp = wait(agent:request("GET", "https://localhost:" .. n ..
        "/s"))
      assert.equal(200, resp.code)
      assert.equal("secure hello /s", wait(web.readBody(resp)))
      peers.finish(p)
      os.remove(py)
    end)

    it("refuses a certificate for another name", function()
      local p, n, py = httpsServer(1)
      local agent = web.Agent(reactor, {tlsOptions = function()
        return ssl.optionsForClientTLS("wrong.example", {trustRoot = certs.ca})
      end})
      local f = H.waitForFailure(agent:request("GET", "https://localhost:" ..
        n .. "/s"), 20)
      -- As Twisted's Agent: the handshake's failure inside
      -- ResponseNeverReceived.
      assert.truthy(f:check(web.ResponseNeverReceived))
      local reason = f.value.reasons[1]
      assert.truthy(reason:check(ssl.VerifyError))
      assert.truthy(reason:getErrorMessage():find("wrong.example", 1, true))
      peers.finish(p)
      os.remove(py)
    end)

    it("verifies against the system CA store by default", function()
      local p, n, py = httpsServer(1)
      local f = H.waitForFailure(web.Agent(reactor):request("GET",
        "https://localhost:" .. n .. "/s"), 20)
      assert.truthy(f:check(web.ResponseNeverReceived))
      assert.truthy(f.value.reasons[1]:check(ssl.Error))
      peers.finish(p)
      os.remove(py)
    end)
  end)
end)

describe("scripts/web_json_server.lua and web_json_client.lua", function()
  it("serve and call the JSON API, each in its own process", function()
    local p, n = peers.listening(q(H.SPINDLE) ..
      " scripts/web_json_server.lua 0 --requests 5",
      "^json api listening on 127%.0%.0%.1:(%d+)$")
    local out = wait(run(q(H.SPINDLE) .. " scripts/web_json_client.lua " ..
      "http://127.0.0.1:" .. n))
    assert.equal("created note 1: buy milk\ncreated note 2: write specs\n" ..
      "2 notes: buy milk, write specs\ndeleted note 1: 204\n" ..
      "note 1: 404 no such note\n", out)
    assert.equal("", peers.finish(p))
  end)
end)
