-- spec/udp_spec.lua: reactor.listenUDP and the UDP Port, over real
-- sockets on 127.0.0.1 and ::1, with python3 and socat as outside peers.
local reactor = require("spindle.reactor")
local defer = require("spindle.defer")
local log = require("spindle.log")
local failure = require("spindle.failure")
local DatagramProtocol = require("spindle.protocol").DatagramProtocol

local TIMEOUT = 5

-- Ports opened by a test; closed after it.
local opened = {}
local function listen(...)
  local port = reactor.listenUDP(...)
  opened[#opened + 1] = port
  return port
end

after_each(function()
  local waits = {}
  for _, port in ipairs(opened) do
    local d = port:stopListening()
    if d then waits[#waits + 1] = d end
  end
  opened = {}
  if #waits > 0 then
    reactor.runUntilComplete(defer.DeferredList(waits), TIMEOUT)
  end
end)

-- After the closing above (busted runs a block's after_each functions in
-- the order given): the helper's check of what each test left open.
local H = require("spec.support.helper")

-- Run the reactor until d fires; return its result.
local function wait(d, timeout)
  return reactor.runUntilComplete(d, timeout or TIMEOUT)
end

-- A protocol that records datagrams and fires self.got[n] Deferreds.
local Recorder = DatagramProtocol:extend({__name = "Recorder"})
function Recorder:__init()
  self.datagrams, self.addrs, self.waiting = {}, {}, {}
  self.started, self.stopped, self.refused = 0, 0, 0
end
function Recorder:startProtocol() self.started = self.started + 1 end
function Recorder:stopProtocol() self.stopped = self.stopped + 1 end
function Recorder:datagramReceived(data, addr)
  self.datagrams[#self.datagrams + 1] = data
  self.addrs[#self.addrs + 1] = addr
  local d = table.remove(self.waiting, 1)
  if d then d:callback(data) end
end
function Recorder:connectionRefused()
  self.refused = self.refused + 1
  local d = self.onRefused
  self.onRefused = nil
  if d then d:callback(true) end
end
-- Deferred fired with the next datagram.
function Recorder:next()
  local d = defer.Deferred()
  self.waiting[#self.waiting + 1] = d
  return d
end

-- Run a shell command in the background; its stdout goes to a temp file
-- read back by the returned function (nil until the command finished).
local function background(cmd)
  local out = os.tmpname()
  local done = out .. ".done"
  os.execute("( (" .. cmd .. ") > " .. out .. " 2>&1; touch " .. done ..
    " ) &")
  local function peek()
    local o = io.open(out)
    if not o then return "" end
    local text = o:read("a")
    o:close()
    return text
  end
  return function()
    local f = io.open(done)
    if not f then return nil end
    f:close()
    local o = io.open(out)
    local text = o:read("a")
    o:close()
    os.remove(out)
    os.remove(done)
    return text
  end, peek
end

-- Deferred fired with the first non-nil result of poll(), polled on the
-- reactor (the output of a background command, say).
local function whenDone(poll, timeout)
  local d = defer.Deferred()
  local deadline = reactor.seconds() + (timeout or TIMEOUT)
  local function check()
    local text = poll()
    if text ~= nil then return d:callback(text) end
    if reactor.seconds() > deadline then
      return d:errback("background command timed out")
    end
    reactor.callLater(0.02, check)
  end
  check()
  return d
end

-- Collect error events logged while fn runs (instead of printing them).
local function loggedErrors(fn)
  local errors = {}
  local function observer(e) if e.isError then errors[#errors + 1] = e end end
  local saved = log.observers()
  for _, o in ipairs(saved) do log.removeObserver(o) end
  log.addObserver(observer)
  local ok, err = pcall(fn)
  log.removeObserver(observer)
  for _, o in ipairs(saved) do log.addObserver(o) end
  if not ok then error(err, 0) end
  return errors
end

describe("reactor.listenUDP", function()
  it("calls makeConnection, so startProtocol runs once", function()
    local p = Recorder()
    local port = listen(0, p, "127.0.0.1")
    assert.equal(1, p.started)
    assert.equal(port, p.transport)
    assert.equal(8192, port.maxPacketSize)
    assert.equal(p, port.protocol)
  end)

  it("delivers datagrams with addr {host, port} between two ports",
    function()
    local a, b = Recorder(), Recorder()
    local pa = listen(0, a, "127.0.0.1")
    local pb = listen(0, b, "127.0.0.1")
    local got = b:next()
    pa:write("hello", {host = "127.0.0.1", port = pb:getHost().port})
    assert.equal("hello", wait(got))
    assert.same({type = "UDP", host = "127.0.0.1", port = pa:getHost().port,
      "127.0.0.1", pa:getHost().port}, b.addrs[1])
    assert.equal(("IPv4Address(type='UDP', host='127.0.0.1', port=%d)")
      :format(pa:getHost().port), tostring(b.addrs[1]))
    -- Reply to the addr as received, and with the positional form.
    got = a:next()
    pb:write("back", b.addrs[1])
    assert.equal("back", wait(got))
    got = a:next()
    pb:write("", {"127.0.0.1", pa:getHost().port})
    assert.equal("", wait(got))
  end)

  it("echoes to python3 as an outside peer", function()
    local Echo = Recorder:extend()
    function Echo:datagramReceived(data, addr)
      Recorder.datagramReceived(self, data, addr)
      self.transport:write(data:upper(), addr)
    end
    local port = listen(0, Echo(), "127.0.0.1")
    local poll = background(([[python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(4)
for i in range(3):
    s.sendto(b"ping%%d" %% i, ("127.0.0.1", %d))
    print(s.recvfrom(100)[0].decode())
']]):format(port:getHost().port))
    assert.equal("PING0\nPING1\nPING2\n", wait(whenDone(poll)))
  end)

  it("receives from socat", function()
    local p = Recorder()
    local port = listen(0, p, "127.0.0.1")
    local got = p:next()
    os.execute(("printf 'from socat' | socat -u - UDP:127.0.0.1:%d")
      :format(port:getHost().port))
    assert.equal("from socat", wait(got))
    assert.equal("127.0.0.1", p.addrs[1].host)
  end)

  it("works over IPv6 on ::1", function()
    local a, b = Recorder(), Recorder()
    local pa = listen(0, a, "::1")
    local pb = listen(0, b, "::1")
    local host = pb:getHost()
    assert.same("::1", host.host)
    assert.equal("UDP", host.type)
    local got = b:next()
    pa:write("six", {host = "::1", port = host.port})
    assert.equal("six", wait(got))
    assert.equal("::1", b.addrs[1].host)
    assert.equal(pa:getHost().port, b.addrs[1].port)
  end)

  it("takes maxPacketSize as third argument when interface is left out",
    function()
    local port = listen(0, Recorder(), 512)
    assert.equal(512, port.maxPacketSize)
    assert.equal("0.0.0.0", port:getHost().host)
  end)

  it("truncates datagrams longer than maxPacketSize", function()
    local a, b = Recorder(), Recorder()
    local pa = listen(0, a, "127.0.0.1")
    local pb = listen(0, b, "127.0.0.1", 10)
    assert.equal(10, pb.maxPacketSize)
    local got = b:next()
    pa:write(string.rep("x", 100), {"127.0.0.1", pb:getHost().port})
    assert.equal(string.rep("x", 10), wait(got))
    got = b:next()
    pa:write("short", {"127.0.0.1", pb:getHost().port})
    assert.equal("short", wait(got))
  end)

  it("raises CannotListenError with a code for a port in use", function()
    local port = listen(0, Recorder(), "127.0.0.1")
    local n = port:getHost().port
    local ok, err = pcall(reactor.listenUDP, n, Recorder(), "127.0.0.1")
    assert.is_false(ok)
    assert.truthy(failure.Failure(err):check(reactor.CannotListenError))
    assert.equal("EADDRINUSE", err.code)
    assert.truthy(tostring(err):find("127.0.0.1:" .. n, 1, true))
  end)

  it("raises errors naming the argument for bad input", function()
    assert.has_error(function() reactor.listenUDP(0, {}) end,
      "bad argument #2 to 'listenUDP' (DatagramProtocol expected (no " ..
      "makeConnection))")
    local p = Recorder()
    assert.has_error(function() reactor.listenUDP("x", p) end,
      "bad argument #1 to 'listenUDP' (integer expected, got string)")
    assert.has_error(function() reactor.listenUDP(70000, p) end,
      "bad argument #1 to 'listenUDP' (port out of range)")
    assert.has_error(function() reactor.listenUDP(0, nil) end,
      "bad argument #2 to 'listenUDP' (protocol expected, got nil)")
    assert.has_error(function() reactor.listenUDP(0, p, {}) end,
      "bad argument #3 to 'listenUDP' (string expected, got table)")
    assert.has_error(function() reactor.listenUDP(0, p, nil, 0) end,
      "bad argument #4 to 'listenUDP' (maxPacketSize out of range)")
    local ok, err = pcall(reactor.listenUDP, 0, p, "localhost")
    assert.is_false(ok)
    assert.truthy(failure.Failure(err):check(reactor.InvalidAddressError))
    assert.equal(0, p.started)
  end)

  it("raises what startProtocol raises and closes the port", function()
    local Bad = Recorder:extend()
    function Bad:startProtocol() error("cannot start") end
    local p = Bad()
    local ok, err = pcall(reactor.listenUDP, 0, p, "127.0.0.1")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("cannot start", 1, true))
    -- The port is closed: its close callback runs on the next iteration.
    wait(defer.succeed(nil))
    local d = defer.Deferred()
    reactor.callLater(0.01, function() d:callback(nil) end)
    wait(d)
    assert.equal("<UDP port (closed)>", tostring(p.transport))
    assert.has_error(function() p.transport:getHost() end,
      "calling 'getHost' on bad self (attempt to use a closed transport)")
  end)

  it("logs an error in datagramReceived and keeps the port running",
    function()
    local Bad = Recorder:extend()
    function Bad:datagramReceived(data, addr)
      Recorder.datagramReceived(self, data, addr)
      if data == "boom" then error("datagramReceived exploded") end
    end
    local a, b = Recorder(), Bad()
    local pa = listen(0, a, "127.0.0.1")
    local pb = listen(0, b, "127.0.0.1")
    local to = {"127.0.0.1", pb:getHost().port}
    local errors = loggedErrors(function()
      local got = b:next()
      pa:write("boom", to)
      wait(got)
      got = b:next()
      pa:write("after", to)
      assert.equal("after", wait(got))
    end)
    assert.equal(1, #errors)
    local text = errors[1].failure:getTraceback()
    assert.truthy(text:find("datagramReceived exploded", 1, true))
    assert.truthy(text:find("traceback", 1, true))
  end)
end)

describe("Port:write", function()
  it("raises MessageLengthError for a datagram too long to send", function()
    local port = listen(0, Recorder(), "127.0.0.1")
    local ok, err = pcall(port.write, port, string.rep("x", 70000),
      {"127.0.0.1", port:getHost().port})
    assert.is_false(ok)
    assert.truthy(failure.Failure(err):check(reactor.MessageLengthError))
  end)

  it("raises for a missing or bad address", function()
    local port = listen(0, Recorder(), "127.0.0.1")
    assert.has_error(function() port:write("x") end,
      "bad argument #2 to 'write' (address table expected, got no value " ..
      "(the port is not connected))")
    assert.has_error(function() port:write("x", "127.0.0.1") end,
      "bad argument #2 to 'write' (address table expected, got string)")
    assert.has_error(function() port:write(nil, {"127.0.0.1", 9}) end,
      "bad argument #1 to 'write' (string expected, got nil)")
    -- No number coercion (Twisted raises TypeError for non-bytes).
    assert.has_error(function() port:write(5, {"127.0.0.1", 9}) end,
      "bad argument #1 to 'write' (string expected, got number)")
    assert.has_error(function() port:write("x", {"127.0.0.1", 99999}) end)
    local ok, err = pcall(port.write, port, "x", {"example.com", 9})
    assert.truthy(not ok and
      failure.Failure(err):check(reactor.InvalidAddressError))
    ok, err = pcall(port.write, port, "x", {"::1", 9})
    assert.truthy(not ok and
      failure.Failure(err):check(reactor.InvalidAddressError))
    assert.truthy(tostring(err):find("IPv4 port", 1, true))
  end)
end)

describe("Port methods through pcall", function()
  it("name the method and count arguments as written", function()
    -- As README says of transports: Lua cannot see a call made through
    -- pcall; before, these said "bad argument #3 to '?'".
    local port = listen(0, Recorder(), "127.0.0.1")
    local function msg(...)
      local ok, err = pcall(...)
      assert.is_false(ok)
      return tostring(err)
    end
    assert.equal("bad argument #2 to 'write' (address table expected, " ..
      "got no value (the port is not connected))", msg(port.write, port, "x"))
    assert.equal("bad argument #2 to 'write' (address port must be an " ..
      "integer in 0..65535)", msg(port.write, port, "x", {"127.0.0.1"}))
    assert.equal("bad argument #1 to 'write' (string expected, got number)",
      msg(port.write, port, 5, {"127.0.0.1", 9}))
    assert.equal("bad argument #1 to 'setTTL' (ttl must be in 1..255)",
      msg(port.setTTL, port, 1000))
    assert.equal("bad argument #1 to 'setTTL' (number expected, got string)",
      msg(port.setTTL, port, "x"))
    assert.equal("bad argument #2 to 'connect' (port out of range)",
      msg(port.connect, port, "127.0.0.1", 70000))
    assert.equal(
      "bad argument #1 to 'joinGroup' (string expected, got no value)",
      msg(port.joinGroup, port))
    assert.equal("bad argument #1 to 'setLoopbackMode' (value expected)",
      msg(port.setLoopbackMode, port))
  end)
end)

describe("Port:connect", function()
  it("writes without an address once connected", function()
    local a, b = Recorder(), Recorder()
    local pa = listen(0, a, "127.0.0.1")
    local pb = listen(0, b, "127.0.0.1")
    pa:connect("127.0.0.1", pb:getHost().port)
    local got = b:next()
    pa:write("connected")
    assert.equal("connected", wait(got))
    assert.has_error(function() pa:connect("127.0.0.1", 9) end,
      "already connected, reconnecting is not currently supported")
    assert.has_error(function() pa:write("x", {"127.0.0.1", 9}) end,
      "bad argument #2 to 'write' (not the connected address)")
  end)

  it("calls connectionRefused when the peer's port is closed and stays "
    .. "open", function()
    local a, b = Recorder(), Recorder()
    local pa = listen(0, a, "127.0.0.1")
    local pb = reactor.listenUDP(0, b, "127.0.0.1")
    local n = pb:getHost().port
    wait(pb:stopListening())
    pa:connect("127.0.0.1", n)
    a.onRefused = defer.Deferred()
    local refused = a.onRefused
    pa:write("anyone?")
    -- The ICMP error comes back to the next read (or the next write).
    local retry = reactor.callLater(0.05, function()
      if a.refused == 0 then pa:write("anyone there?") end
    end)
    assert.is_true(wait(refused))
    if retry:active() then retry:cancel() end
    assert.is_true(a.refused >= 1)
    assert.is_true(pa.connected)
    assert.equal("127.0.0.1", pa:getHost().host)
    -- A new listener on that port gets the next datagram.
    local c = Recorder()
    local ok, pc = pcall(listen, n, c, "127.0.0.1")
    if ok then
      local got = c:next()
      pa:write("again")
      assert.equal("again", wait(got))
      assert.equal(pc, c.transport)
    end
  end)

  it("raises for a host that is not an IP address", function()
    local port = listen(0, Recorder(), "127.0.0.1")
    local ok, err = pcall(port.connect, port, "localhost", 9)
    assert.truthy(not ok and
      failure.Failure(err):check(reactor.InvalidAddressError))
    assert.has_error(function() port:connect("127.0.0.1", "x") end,
      "bad argument #2 to 'connect' (integer expected, got string)")
  end)
end)

describe("Port:getHost", function()
  it("returns the bound UDP address", function()
    local port = listen(0, Recorder(), "127.0.0.1")
    local h = port:getHost()
    assert.equal("UDP", h.type)
    assert.equal("127.0.0.1", h.host)
    assert.is_true(h.port > 0)
    assert.equal("<UDP port " .. h.port .. ">", tostring(port))
  end)
end)

describe("Port:stopListening", function()
  it("returns a Deferred fired after stopProtocol, then nil", function()
    local p = Recorder()
    local port = reactor.listenUDP(0, p, "127.0.0.1")
    local n = port:getHost().port
    local d = port:stopListening()
    assert.truthy(tostring(d):find("Deferred", 1, true))
    assert.is_nil(port:stopListening())
    assert.is_nil(wait(d))
    assert.equal(1, p.stopped)
    assert.is_nil(p.transport)
    assert.is_false(port.connected)
    assert.has_error(function() port:getHost() end,
      "calling 'getHost' on bad self (attempt to use a closed transport)")
    assert.has_error(function() port:write("x", {"127.0.0.1", 9}) end,
      "calling 'write' on bad self (attempt to use a closed transport)")
    -- The port number is free again.
    listen(n, Recorder(), "127.0.0.1")
  end)
end)

describe("multicast", function()
  local GROUP = "239.255.77.77"

  it("joins a group on loopback and receives what is sent to it",
    function()
    local r = Recorder()
    local listener = reactor.listenMulticast(0, r, "", 8192, true)
    opened[#opened + 1] = listener
    local joined, joinErr
    listener:joinGroup(GROUP, "127.0.0.1"):addCallbacks(
      function() joined = true end,
      function(f) joinErr = f end)
    if joinErr then
      pending("kernel has no multicast on lo: " .. tostring(joinErr))
      return
    end
    assert.is_true(joined)
    local sender = listen(0, Recorder())
    wait(sender:setOutgoingInterface("127.0.0.1"))
    sender:setLoopbackMode(1)
    assert.equal(1, sender:getLoopbackMode())
    sender:setTTL(2)
    assert.equal(2, sender:getTTL())
    local got = r:next()
    sender:write("to the group", {GROUP, listener:getHost().port})
    assert.equal("to the group", wait(got))
    local left
    listener:leaveGroup(GROUP, "127.0.0.1"):addCallback(function()
      left = true
    end)
    assert.is_true(left)
  end)

  it("fails the Deferred of a bad join with MulticastJoinError", function()
    local port = listen(0, Recorder())
    local f
    port:joinGroup("127.0.0.1"):addErrback(function(e) f = e end)
    assert.truthy(f and f:check(reactor.MulticastJoinError))
    assert.truthy(f:getErrorMessage():find("127.0.0.1", 1, true))
  end)

  it("sets and reads loopback mode, TTL and broadcast", function()
    local port = listen(0, Recorder(), "127.0.0.1")
    port:setLoopbackMode(0)
    assert.equal(0, port:getLoopbackMode())
    port:setLoopbackMode(true)
    assert.equal(1, port:getLoopbackMode())
    port:setTTL(5)
    assert.equal(5, port:getTTL())
    assert.has_error(function() port:setTTL(0) end,
      "bad argument #1 to 'setTTL' (ttl must be in 1..255)")
    port:setBroadcastAllowed(true)
    assert.is_true(port:getBroadcastAllowed())
    port:setBroadcastAllowed(false)
    assert.is_false(port:getBroadcastAllowed())
  end)
end)

describe("scripts/udp_echo.lua", function()
  it("prints ': started', echoes datagrams and exits by itself", function()
    local spindle = (arg and arg[-1]) or "build/spindle"
    local poll, peek = background(spindle ..
      " scripts/udp_echo.lua 0 1.5")
    local n = tonumber(wait(whenDone(function()
      return peek():match("listening on UDP port (%d+)")
    end)))
    local p = Recorder()
    local port = listen(0, p, "127.0.0.1")
    local got = p:next()
    port:write("echo me\n", {"127.0.0.1", n})
    assert.equal("echo me\n", wait(got))
    local out = wait(whenDone(poll))
    assert.truthy(out:match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d : started\n"),
      out)
    assert.truthy(out:find('received "echo me\\n" from 127.0.0.1:' ..
      port:getHost().port, 1, true), out)
  end)
end)

describe("a UDP protocol's methods", function()
  it("are looked up inside the protected call: an __index that raises is " ..
    "logged and the reactor goes on", function()
      -- In a child process: before the fix the error escaped the libuv
      -- callback.
      local out, err, status = H.runScript([[
local reactor = require("spindle.reactor")
local DatagramProtocol = require("spindle.protocol").DatagramProtocol
local P = setmetatable({}, {__index = function(_, k)
  if k == "datagramReceived" then error("index exploded") end
  return DatagramProtocol[k]
end})
local port = reactor.listenUDP(0, P, "127.0.0.1")
port:write("ping", {"127.0.0.1", port:getHost().port})
reactor.callLater(0.2, function()
  print("still running")
  port:stopListening()
  reactor.stop()
end)
reactor.run()
print("done")
]])
      assert.equal("still running\ndone\n", out)
      assert.matches("index exploded", err)
      assert.equal(0, status)
    end)

  it("still logs a missing method as a call of nil", function()
    local out, err, status = H.runScript([[
local reactor = require("spindle.reactor")
local P = {makeConnection = function() end, doStart = function() end,
  doStop = function() end}
local port = reactor.listenUDP(0, P, "127.0.0.1")
port:write("ping", {"127.0.0.1", port:getHost().port})
reactor.callLater(0.2, function()
  port:stopListening()
  reactor.stop()
end)
reactor.run()
print("done")
]])
    assert.equal("done\n", out)
    assert.matches("attempt to call a nil value", err)
    assert.equal(0, status)
  end)
end)
