-- spec/alloc_spec.lua: memory-error paths, proved by failing one chosen
-- allocation (spindle._alloc.failAt, runtime/alloc.c), as Lua's own test
-- suite does. tools/allocfail.sh does the same to whole scripts.
local H = require("spec.support.helper")
local reactor = require("spindle.reactor")
local threads = require("spindle.threads")
local alloc = require("spindle._alloc")
local process = require("spec.support.process")

-- Is err a memory error (bare, or inside a Failure)?
local function isMemoryError(err)
  return tostring(err):find("not enough memory", 1, true) ~= nil
end

describe("alloc.failAt", function()
  after_each(function() alloc.failAt(0) end)

  it("fails the nth allocation from now with a memory error", function()
    local ok, err = pcall(function()
      alloc.failAt(1)
      return {}
    end)
    alloc.failAt(0)
    assert.is_false(ok)
    assert.truthy(isMemoryError(err))
  end)

  it("counts the allocations since the last call", function()
    alloc.failAt(0)
    local t = {}
    for i = 1, 10 do t[i] = {} end
    assert.is_true(alloc.failAt(0) >= 10)
    assert.are.equal(10, #t)
  end)
end)

describe("threads.deferToThread out of memory", function()
  after_each(function() alloc.failAt(0) end)

  -- Regression (fuzz/allocfail/thread.lua, tools/allocfail.sh): a memory
  -- error while packing the arguments was raised as nil. Run first in
  -- the suite's process, this is also the first thread call, whose
  -- memory errors leaked the names worker.c had taken before (seen by
  -- LeakSanitizer in make test-asan).
  it("raises a memory error when the arguments cannot be packed", function()
    local arg = {a = {1, 2, 3}, b = "x", c = {d = {e = {}}}}
    local n, done = 0, false
    local function identity(t) return t end
    local function call()
      alloc.failAt(n)
      return threads.deferToThread(identity, arg)
    end
    while not done do
      n = n + 1
      local ok, d = pcall(call)
      local counted = alloc.failAt(0)
      if ok then
        local ok2, r = pcall(H.wait, d, 10)
        if ok2 then assert.are.same(arg, r)
        else assert.truthy(isMemoryError(r), tostring(r)) end
        done = counted < n
      else
        assert.truthy(isMemoryError(d), tostring(d))
      end
    end
    assert.is_true(n > 1)
  end)

  -- Regression (fuzz/allocfail/thread.lua): a pool thread that could not
  -- make its Lua state left its job queued for ever, so the Deferred
  -- never fired.
  it("fails the Deferred when a new pool thread has no memory", function()
    local failed = 0
    local function one() return 1 end
    -- Keeps a thread busy for a while (a pool thread: so the next call
    -- needs a new one).
    local function spin(seconds)
      local t = os.clock()
      while os.clock() - t < seconds do end
    end
    -- The failing allocation is armed only while the call is queued and
    -- the new thread makes its state (the reactor is not run meanwhile,
    -- so the failure cannot land in the spec's own machinery).
    local function call(n)
      local ok, d = pcall(function()
        alloc.failAt(n)
        return threads.deferToThread(one)
      end)
      spin(0.1)
      alloc.failAt(0)
      if not ok then error(d, 0) end
      return H.wait(d, 10)
    end
    for n = 1, 400, 37 do
      -- At most one pool thread: the others end when they next look for
      -- work.
      reactor.suggestThreadPoolSize(1)
      for _ = 1, 500 do
        if reactor.getThreadPool().workers <= 1 then break end
        H.wait(H.sleep(0.01))
      end
      local busy = threads.deferToThread(spin, 0.1)
      reactor.suggestThreadPoolSize(2)
      local ok, r = pcall(call, n)
      -- The busy call may be the one whose new thread had no memory.
      local bok, br = pcall(H.wait, busy, 10)
      assert.truthy(bok or isMemoryError(br), tostring(br))
      if not ok then
        assert.truthy(isMemoryError(r), tostring(r))
        failed = failed + 1
      end
    end
    reactor.suggestThreadPoolSize(10)
    assert.is_true(failed > 0)
    assert.are.equal(1, H.wait(threads.deferToThread(one), 10))
  end)
end)

describe("reactor.stop out of memory", function()
  -- Regression (fuzz/allocfail/thread.lua, tools/allocfail.sh): a memory
  -- error while the 'shutdown' event was fired left the reactor stopping
  -- for ever, so run() never returned.
  it("ends run() whichever allocation fails", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local reactor = require("spindle.reactor")
      local alloc = require("spindle._alloc")
      local n = tonumber(arg[1])
      reactor.addSystemEventTrigger("before", "shutdown", function() end)
      reactor.callWhenRunning(function()
        alloc.failAt(n)
        local ok = pcall(reactor.stop)
        alloc.failAt(0)
        -- Failed before the stop began: stop again (if it began, this
        -- raises ReactorNotRunning).
        if not ok then pcall(reactor.stop) end
      end)
      reactor.run()
      alloc.failAt(0)
      print("stopped")
    ]])
    f:close()
    for n = 1, 40 do
      local r = process.run({script, tostring(n)}, {timeout = 10})
      assert.is_truthy(r.stdout:find("stopped", 1, true) or
        r.stderr:find("not enough memory", 1, true),
        "failing allocation " .. n .. ": " .. r.stdout .. r.stderr)
      assert.is_true(r.status == 0 or r.status == 1, r.stderr)
    end
    os.remove(script)
  end)
end)

describe("reactor.listenTCP out of memory", function()
  after_each(function() alloc.failAt(0) end)

  -- Found by tools/allocfail.sh (fuzz/allocfail/echo.lua): a memory error
  -- in the factory's doStart is raised as nil (tcp.c reads the bare
  -- error's "value" field as if it were a Failure); tcp.c now raises the
  -- error itself when it is no Failure, as pool.c's deferToThread does.
  it("raises a memory error when the factory cannot start", function()
    local protocol = require("spindle.protocol")
    local factory = protocol.Factory.forProtocol(protocol.Protocol)
    local n = 0
    local function listen()
      alloc.failAt(n)
      return reactor.listenTCP(0, factory, nil, "127.0.0.1")
    end
    while true do
      n = n + 1
      local ok, port = pcall(listen)
      local counted = alloc.failAt(0)
      if ok then
        H.wait(port:stopListening())
        if counted < n then break end
      else
        assert.truthy(isMemoryError(port), tostring(port))
      end
    end
  end)
end)

describe("a pool thread out of memory", function()
  -- Regression (fuzz/allocfail/thread.lua, tools/allocfail.sh): a memory
  -- error while a worker packed its outcome, outside any protected call,
  -- made Lua panic and abort the process.
  it("fails the Deferred with a memory error, whichever allocation fails",
    function()
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write([[
        local reactor = require("spindle.reactor")
        local threads = require("spindle.threads")
        local alloc = require("spindle._alloc")
        local n = tonumber(arg[1])
        local function work(t)
          local r = {t, {t}, "x" .. t}
          collectgarbage() -- so packing allocates its names again
          return r
        end
        reactor.callWhenRunning(function()
          threads.deferToThread(work, 1):addBoth(function()
            alloc.failAt(n)
            local ok, d = pcall(threads.deferToThread, work, 2)
            if not ok then
              alloc.failAt(0)
              print(d)
              return reactor.stop()
            end
            d:addBoth(function(r)
              alloc.failAt(0)
              print(type(r) == "table" and "done" or tostring(r))
              reactor.stop()
            end)
          end)
        end)
        reactor.callLater(5, reactor.stop)
        reactor.run()
      ]])
      f:close()
      for n = 1, 40 do
        local r = process.run({script, tostring(n)}, {timeout = 10})
        assert.is_true(r.status == 0 or r.status == 1,
          "failing allocation " .. n .. ": " .. r.stderr)
        assert.is_truthy(r.stdout:find("done", 1, true) or
          (r.stdout .. r.stderr):find("not enough memory", 1, true),
          "failing allocation " .. n .. ": " .. r.stdout .. r.stderr)
      end
      os.remove(script)
    end)
end)

describe("a connection out of memory", function()
  -- Regression (fuzz/allocfail/echo.lua and tls.lua, tools/allocfail.sh):
  -- libuv callbacks (tcp.c's on_connection and connect callback, tls.c's
  -- attach, stream.c's close, read, write and later callbacks) called Lua
  -- outside a protected call: a memory error there was thrown out of the
  -- event loop (the script died with open handles, the stream and its SSL
  -- leaked; at exit a TLS handshake timer was closed twice). Now it is
  -- logged and the connection lost. Each run fails one allocation from
  -- the connect on ("connect") or from the close on ("close"); run() must
  -- return (exit status 0) with nothing left open.
  local certs = require("spec.support.certs")()
  local script = os.tmpname()
  setup(function()
    local f = assert(io.open(script, "w"))
    f:write([[
      local reactor = require("spindle.reactor")
      local protocol = require("spindle.protocol")
      local alloc = require("spindle._alloc")
      local n, mode, key, crt, ca = tonumber(arg[1]), arg[2], arg[3],
        arg[4], arg[5]
      local Echo = protocol.Protocol:extend({})
      function Echo:dataReceived(data) self.transport:write(data) end
      local Client = protocol.Protocol:extend({})
      function Client:connectionMade() self.transport:write("hello") end
      function Client:dataReceived()
        alloc.failAt(mode == "close" and n or 0)
        print("done")
        self.transport:loseConnection()
      end
      function Client:connectionLost()
        reactor.callLater(0.05, reactor.stop)
      end
      local ssl = key and require("spindle.ssl")
      local server = protocol.Factory.forProtocol(Echo)
      local client = protocol.ClientFactory.forProtocol(Client)
      local port
      if ssl then
        port = reactor.listenSSL(0, server,
          ssl.DefaultOpenSSLContextFactory(key, crt), nil, "127.0.0.1")
      else
        port = reactor.listenTCP(0, server, nil, "127.0.0.1")
      end
      reactor.callWhenRunning(function()
        if mode == "connect" then alloc.failAt(n) end
        local ok, err = pcall(function()
          local p = port:getHost().port
          if ssl then
            return reactor.connectSSL("127.0.0.1", p, client,
              ssl.optionsForClientTLS("localhost", {trustRoot = ca}))
          end
          return reactor.connectTCP("127.0.0.1", p, client)
        end)
        if not ok then
          alloc.failAt(0)
          print(err)
          reactor.stop()
        end
      end)
      reactor.callLater(3, reactor.stop)
      reactor.run()
      alloc.failAt(0)
    ]])
    f:close()
  end)
  teardown(function() os.remove(script) end)

  local function sweep(mode, tls, count)
    local args = {script, nil, mode}
    if tls then
      args[4], args[5], args[6] = certs.serverKey, certs.server, certs.ca
    end
    for n = 1, count do
      args[2] = tostring(n)
      local r = process.run(args, {timeout = 20})
      local out = r.stdout .. r.stderr
      assert.are.equal(0, r.status, mode .. ", allocation " .. n .. ": " .. out)
      assert.is_nil(out:find("open handles", 1, true), mode .. " " .. n)
    end
  end

  it("is logged when it hits accepting or connecting over TCP", function()
    sweep("connect", false, 40)
  end)
  it("is logged when it hits closing over TCP", function()
    sweep("close", false, 25)
  end)
  it("is logged when it hits accepting or connecting over TLS", function()
    sweep("connect", true, 70)
  end)
  it("is logged when it hits closing over TLS", function()
    sweep("close", true, 30)
  end)
end)

describe("a datagram out of memory", function()
  -- Regression: udp.c's receive callback made the datagram's string and
  -- address outside a protected call, so a memory error there was thrown
  -- out of the event loop (the script died). Now it is logged.
  it("is logged, whichever allocation from the send on fails", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local reactor = require("spindle.reactor")
      local protocol = require("spindle.protocol")
      local alloc = require("spindle._alloc")
      local n = tonumber(arg[1])
      local P = protocol.DatagramProtocol:extend({})
      function P:datagramReceived()
        alloc.failAt(0)
        print("done")
        reactor.stop()
      end
      local port = reactor.listenUDP(0, P(), "127.0.0.1")
      reactor.callWhenRunning(function()
        alloc.failAt(n)
        local ok, err = pcall(port.write, port, "hello",
          {"127.0.0.1", port:getHost().port})
        if not ok then
          alloc.failAt(0)
          print(err)
          reactor.stop()
        end
      end)
      reactor.callLater(2, reactor.stop)
      reactor.run()
      alloc.failAt(0)
    ]])
    f:close()
    for n = 1, 30 do
      local r = process.run({script, tostring(n)}, {timeout = 20})
      assert.are.equal(0, r.status,
        "allocation " .. n .. ": " .. r.stdout .. r.stderr)
    end
    os.remove(script)
  end)
end)
