-- reactor.listenUNIX / connectUNIX: the stream transport over Unix sockets,
-- with socat and nc as outside peers.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local defer = require("spindle.defer")
local H = require("spec.support.helper")
local peers = require("spec.support.peers")
local spawn, finish = peers.spawn, peers.finish

local function wait(d, timeout)
  return H.wait(d, timeout or 10)
end

local function tmpPath()
  local p = os.tmpname()
  os.remove(p)
  return p .. ".sock"
end

-- Is there a socket at path? (A socket cannot be opened as a file.)
local function exists(path)
  return os.execute("test -S " .. path) == true
end

local function echoFactory()
  local Echo = protocol.Protocol:extend({})
  local f = protocol.Factory.forProtocol(Echo)
  f.lost = defer.Deferred()
  function Echo:connectionMade() f.transport = self.transport end
  function Echo:dataReceived(data) self.transport:write(data) end
  function Echo:connectionLost(reason)
    if not f.lost.called then f.lost:callback({reason}) end
  end
  return f
end

local function collector(onMade)
  local C = protocol.Protocol:extend({})
  local cf = protocol.ClientFactory.forProtocol(C)
  cf.done = defer.Deferred()
  function C:connectionMade()
    self.chunks = {}
    cf.transport = self.transport
    if onMade then onMade(self) end
  end
  function C:dataReceived(data)
    self.chunks[#self.chunks + 1] = data
    if cf.until_ and table.concat(self.chunks):find(cf.until_, 1, true) then
      self.transport:loseConnection()
    end
  end
  function C:connectionLost(reason)
    cf.reason = reason
    cf.done:callback(table.concat(self.chunks))
  end
  function cf:clientConnectionFailed(_, reason) cf.done:errback(reason) end
  return cf
end

describe("reactor.listenUNIX", function()
  it("answers socat and nc as an echo server and removes the socket on " ..
    "stopListening", function()
      local path = tmpPath()
      local f = echoFactory()
      local port = reactor.listenUNIX(path, f)
      assert.same({type = "UNIX", name = path, host = path}, port:getHost())
      assert.equal("UNIXAddress('" .. path .. "')", tostring(port:getHost()))
      assert.is_true(exists(path))
      local p = spawn("printf 'over unix' | timeout 5 socat - UNIX-CONNECT:" ..
        path)
      wait(f.lost)
      assert.equal("over unix", finish(p))
      local f2 = echoFactory()
      wait(port:stopListening())
      assert.is_false(exists(path))
      port = reactor.listenUNIX(path, f2)
      p = spawn("printf 'nc too' | timeout 5 nc -N -U " .. path)
      wait(f2.lost)
      assert.equal("nc too", finish(p))
      wait(port:stopListening())
    end)

  it("raises CannotListenError with code EADDRINUSE when the path is taken",
    function()
      local path = tmpPath()
      local port = reactor.listenUNIX(path, echoFactory())
      H.assertErrorType(reactor.CannotListenError, path,
        pcall(reactor.listenUNIX, path, echoFactory()))
      local _, err = pcall(reactor.listenUNIX, path, echoFactory())
      assert.equal("EADDRINUSE", err.code)
      wait(port:stopListening())
    end)

  it("raises CannotListenError for a path that is too long", function()
    local path = "/tmp/" .. ("x"):rep(200)
    local ok, err = pcall(reactor.listenUNIX, path, echoFactory())
    H.assertErrorType(reactor.CannotListenError, "name too long", ok, err)
    assert.equal("ENAMETOOLONG", err.code)
  end)

  it("raises CannotListenError ENOENT when the directory does not exist",
    function()
      -- libuv's uv_pipe_bind reports bind()'s ENOENT as EACCES (for
      -- Windows); Python and Twisted say ENOENT.
      local path = tmpPath() .. ".d/sock"
      local ok, err = pcall(reactor.listenUNIX, path, echoFactory())
      H.assertErrorType(reactor.CannotListenError, "no such file or directory",
        ok, err)
      assert.equal("ENOENT", err.code)
      assert.matches(path, tostring(err), 1, true)
    end)

  it("rejects bad arguments naming them", function()
    assert.has_error(function() reactor.listenUNIX(nil, echoFactory()) end,
      "bad argument #1 to 'listenUNIX' (string expected, got nil)")
    assert.has_error(function() reactor.listenUNIX(tmpPath(), "f") end,
      "bad argument #2 to 'listenUNIX' (factory expected, got string)")
  end)
end)

describe("reactor.connectUNIX", function()
  it("talks to a spindle server and reports UNIX addresses", function()
    local path = tmpPath()
    local f = echoFactory()
    local port = reactor.listenUNIX(path, f)
    local cf = collector(function(c) c.transport:write("ping") end)
    cf.until_ = "ping"
    local connector = reactor.connectUNIX(path, cf)
    assert.same({type = "UNIX", name = path, host = path},
      connector:getDestination())
    assert.equal("ping", wait(cf.done))
    assert.is_truthy(cf.reason:check(reactor.ConnectionDone))
    assert.equal(path, cf.transport:getPeer().name)
    assert.equal("UNIX", cf.transport:getHost().type)
    assert.equal(path, f.transport:getHost().name)
    wait(f.lost)
    wait(port:stopListening())
  end)

  it("talks to a socat echo server", function()
    local path = tmpPath()
    local p = peers.listening("timeout 10 socat -d -d UNIX-LISTEN:" ..
      path .. " EXEC:cat", "listening on AF=1 (%S+)")
    local cf = collector(function(c) c.transport:write("via socat\n") end)
    cf.until_ = "\n"
    reactor.connectUNIX(path, cf)
    assert.equal("via socat\n", wait(cf.done))
    finish(p)
  end)

  it("delivers ConnectError ENOENT for a missing path, naming it", function()
    local path = tmpPath()
    local cf = collector()
    reactor.connectUNIX(path, cf)
    local f = H.waitForFailure(cf.done)
    assert.is_truthy(f:check(reactor.ConnectError))
    assert.equal("ENOENT", f.value.code)
    assert.matches(path, f:getErrorMessage(), 1, true)
  end)

  it("delivers ConnectError ENOENT when the directory does not exist",
    function()
      local path = tmpPath() .. ".d/sock"
      local cf = collector()
      reactor.connectUNIX(path, cf)
      local f = H.waitForFailure(cf.done)
      assert.is_truthy(f:check(reactor.ConnectError))
      assert.equal("ENOENT", f.value.code)
    end)

  it("delivers ConnectionRefusedError for a socket nobody listens on",
    function()
      local path = tmpPath()
      -- A bound socket that does not listen refuses connections.
      local p = spawn("python3 -c \"import socket,time; s=socket.socket(" ..
        "socket.AF_UNIX); s.bind('" .. path .. "'); print('ok', flush=True);" ..
        " time.sleep(1)\"")
      assert.equal("ok", p:read("l"))
      local cf = collector()
      reactor.connectUNIX(path, cf)
      local f = H.waitForFailure(cf.done)
      assert.is_truthy(f:check(reactor.ConnectionRefusedError))
      finish(p)
      os.remove(path)
    end)

  it("raises on TCP options of a Unix transport", function()
    local path = tmpPath()
    local f = echoFactory()
    local port = reactor.listenUNIX(path, f)
    local err
    local cf = collector(function(c)
      err = select(2, pcall(function() c.transport:setTcpNoDelay(true) end))
      c.transport:loseConnection()
    end)
    reactor.connectUNIX(path, cf)
    wait(cf.done)
    assert.matches("not a TCP transport", err, 1, true)
    wait(f.lost)
    wait(port:stopListening())
  end)
end)

describe("scripts/unix_echo.lua", function()
  it("echoes over its socket and exits by itself with --once", function()
    local path = tmpPath()
    local p = spawn("timeout 10 " .. H.SPINDLE .. " scripts/unix_echo.lua " ..
      path .. " --once --timeout 8")
    assert.equal("echo server listening on " .. path, p:read("l"))
    local c = spawn("printf 'hello unix' | timeout 5 socat - UNIX-CONNECT:" ..
      path)
    assert.equal("hello unix", finish(c))
    assert.equal("", finish(p))
    assert.is_false(exists(path))
  end)
end)

describe("reactor.listenUNIX mode", function()
  it("sets the socket file's permission bits", function()
    local path = tmpPath()
    local port = reactor.listenUNIX(path, echoFactory(), nil,
      tonumber("600", 8))
    local p = io.popen("stat -c %a " .. path)
    assert.equal("600", p:read("l"))
    p:close()
    wait(port:stopListening())
  end)
end)
