-- spindle.inspect (pending Deferreds, DelayedCalls, connections, the
-- thread pool, summary) and the watchdog (reactor.setStallWarning).
local defer = require("spindle.defer")
local reactor = require("spindle.reactor")
local inspect = require("spindle.inspect")
local threads = require("spindle.threads")
local H = require("spec.support.helper")
local process = require("spec.support.process")

local SPEC = debug.getinfo(1, "S").short_src

local function lineOf(d, list)
  for _, e in ipairs(list) do
    if e.deferred == d then return e end
  end
end

describe("inspect.pending", function()
  it("names where each pending Deferred was made", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local d = defer.Deferred()
    local e = lineOf(d, inspect.pending())
    assert.is_not_nil(e)
    assert.equal(SPEC .. ":" .. line, e.where)
    assert.is_false(e.called)
    assert.is_true(e.age >= 0)
    d:callback(nil)
    assert.is_nil(lineOf(d, inspect.pending()))
  end)

  it("names the user's line for Deferreds made inside spindle", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local d = defer.inlineCallbacks(function() defer.await(H.sleep(10)) end)()
    local e = lineOf(d, inspect.pending())
    assert.equal(SPEC .. ":" .. line, e.where)
    assert.equal("await", e.via)
    assert.matches("^" .. SPEC:gsub("%p", "%%%0") .. ":%d+$",
      e.waitsOn.where)
    d:cancel()
    d:addErrback(function() end)
  end)

  it("follows a chain down to the Deferred that never fired", function()
    local inner = defer.Deferred()
    local innerLine = debug.getinfo(1, "l").currentline - 1
    local outer = defer.succeed(1)
    outer:addCallback(function() return inner end)
    local e = lineOf(outer, inspect.pending())
    assert.is_true(e.waiting)
    assert.equal("chain", e.via)
    assert.equal(inner, e.waitsOn.deferred)
    assert.equal(SPEC .. ":" .. innerLine, e.waitsOn.where)
    local text = inspect.pendingText()
    assert.matches("waits on %(chain%) Deferred made at " ..
      SPEC:gsub("%p", "%%%0") .. ":" .. innerLine, text)
    inner:callback(2)
    assert.equal(2, outer.result)
  end)

  it("does not list Deferreds that nothing references", function()
    defer.Deferred()
    collectgarbage()
    collectgarbage()
    for _, e in ipairs(inspect.pending()) do
      assert.is_not_nil(e.deferred)
    end
  end)
end)

describe("inspect.timers", function()
  it("lists pending DelayedCalls with their function's source", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local dc = reactor.callLater(30, function() end)
    local found
    for _, t in ipairs(inspect.timers()) do
      if t.call == dc then found = t end
    end
    assert.equal(SPEC .. ":" .. line, found.where)
    assert.is_true(found.due > 29 and found.due <= 30)
    assert.matches("in %d+%.%d+ s: " .. SPEC:gsub("%p", "%%%0"),
      inspect.timersText())
    dc:cancel()
  end)

  it("exposes a DelayedCall's func and args while pending", function()
    local function f() end
    local dc = reactor.callLater(30, f, 1, nil, 3)
    assert.equal(f, dc.func)
    assert.same({1, nil, 3, n = 3}, dc.args)
    dc:cancel()
    assert.is_nil(dc.func)
    assert.is_nil(dc.args)
  end)
end)

describe("inspect.threads", function()
  it("shows what each busy worker runs", function()
    local started = defer.Deferred()
    local line = debug.getinfo(1, "l").currentline + 1
    local d = threads.deferToThread(function()
      local t = os.clock()
      while os.clock() - t < 0.3 do end
      return true
    end)
    local seen
    reactor.callLater(0.1, function()
      seen = inspect.threads()
      started:callback(nil)
    end)
    H.wait(started)
    assert.is_true(seen.busy >= 1)
    assert.equal(SPEC .. ":" .. line, seen.running[1])
    assert.is_true(H.wait(d))
    assert.matches("thread pool: %d+/%d+ threads", inspect.threadsText())
  end)
end)

describe("inspect.connections", function()
  it("reports ports and connections with their class, peer and bytes",
    function()
      local protocol = require("spindle.protocol")
      local Echo = protocol.Protocol:extend({__name = "EchoSpec"})
      local got = defer.Deferred()
      function Echo:dataReceived(data) self.transport:write(data .. data) end
      local Client = protocol.Protocol:extend({__name = "ClientSpec"})
      function Client:connectionMade() self.transport:write("abc") end
      function Client:dataReceived(data)
        if not got.called then got:callback(self) end
        self.data = data
      end
      local port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo),
        nil, "127.0.0.1")
      reactor.connectTCP("127.0.0.1", port:getHost().port,
        protocol.ClientFactory.forProtocol(Client))
      local client = H.wait(got)
      local rows = inspect.connections()
      local server, listening
      for _, row in ipairs(rows) do
        if row.protocol == "EchoSpec" then server = row end
        if row.kind == "port" and row.host.port == port:getHost().port then
          listening = row
        end
      end
      assert.equal("connection", server.kind)
      assert.equal("tcp", server.transport)
      assert.equal(3, server.bytesIn)
      assert.equal(6, server.bytesOut)
      assert.equal(0, server.queued)
      assert.is_false(server.paused)
      assert.equal(client.transport:getHost().port, server.peer.port)
      assert.is_true(server.age >= 0)
      assert.equal("tcp", listening.transport)
      assert.matches("tcp connection EchoSpec 127%.0%.0%.1:%d+ <%-> " ..
        "127%.0%.0%.1:%d+ [%d.]+ s old in 3 B, out 6 B,",
        inspect.connectionsText())
      client.transport:loseConnection()
      H.wait(port:stopListening())
      H.runFor(0.05)
    end)
end)

describe("inspect.connections for UDP", function()
  it("reports a UDP port with its protocol's class and address", function()
    local protocol = require("spindle.protocol")
    local P = protocol.DatagramProtocol:extend({__name = "DgramSpec"})
    local port = reactor.listenUDP(0, P(), "127.0.0.1")
    local found
    for _, row in ipairs(inspect.connections()) do
      if row.protocol == "DgramSpec" then found = row end
    end
    assert.equal("udp", found.transport)
    assert.equal("port", found.kind)
    assert.equal(port:getHost().port, found.host.port)
    assert.equal(0, found.queued)
    assert.matches("udp port DgramSpec 127%.0%.0%.1:%d+",
      inspect.connectionsText())
    H.wait(port:stopListening())
  end)
end)

describe("inspect.connections and summary", function()
  it("lists the loop's handles and sums up in one line", function()
    local dc = reactor.callLater(30, function() end)
    local _, handles = inspect.connections()
    assert.is_true(#handles > 0)
    assert.is_string(handles[1].type)
    assert.matches("^timers=%d+ conns=%d+ handles=%d+ threads=%d+/%d+ " ..
      "queued=%d+$", inspect.summary())
    assert.matches("active libuv handles:", inspect.connectionsText(), 1, true)
    dc:cancel()
  end)
end)

local function runScript(src)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  local r = process.run({path}, {timeout = 20})
  os.remove(path)
  return r, path
end

describe("reactor.setStallWarning", function()
  it("logs one warning naming the stalling callback, then its length",
    function()
      local r, path = runScript([[
local reactor = require("spindle.reactor")
require("spindle.log").startLogging(io.stdout)
reactor.setStallWarning(0.5)
local function spinner()
  local t = reactor.seconds()
  while reactor.seconds() - t < 2 do end
end
reactor.callLater(0.1, spinner)
reactor.callLater(2.5, reactor.stop)
reactor.run()
]])
      assert.equal(0, r.status)
      local _, n = r.stdout:gsub("has been busy in one callback", "")
      assert.equal(1, n)
      local short = path:gsub("%p", "%%%0")
      assert.matches(short .. ":6: in function <" .. short .. ":4>",
        r.stdout)
      local lasted = tonumber(r.stdout:match("was busy for ([%d.]+) s"))
      assert.is_true(lasted >= 1.5)
    end)

  it("stays quiet while the loop is idle", function()
    local r = runScript([[
local reactor = require("spindle.reactor")
require("spindle.log").startLogging(io.stdout)
reactor.setStallWarning(0.2)
assert(reactor.getStallWarning() == 0.2)
reactor.callLater(1.5, reactor.stop)
reactor.run()
]])
    assert.equal(0, r.status)
    assert.not_matches("stall warning", r.stdout)
  end)

  it("warns in each run of the reactor, not only the first", function()
    local capture = H.captureLog()
    reactor.setStallWarning(0.2)
    H.runFor(0.3) -- idle: no warning
    local function spin()
      local t = reactor.seconds()
      while reactor.seconds() - t < 0.6 do end
    end
    for _ = 1, 2 do
      reactor.callLater(0.01, spin)
      H.runFor(0.8)
    end
    reactor.setStallWarning(nil)
    assert.is_nil(reactor.getStallWarning())
    capture:stop()
    local _, n = capture:text():gsub("has been busy in one callback", "")
    assert.equal(2, n)
  end)

  it("rejects a negative limit", function()
    assert.has_error(function() reactor.setStallWarning(-1) end,
      "bad argument #1 to 'setStallWarning' (seconds must be >= 0)")
  end)
end)
