-- spec/alloc_callbacks_spec.lua: a memory error inside a reactor
-- callback whose Lua work is not a protocol's (a signal, a polled
-- descriptor's error, a TLS handshake timeout) is logged and the reactor
-- goes on: run() returns. Each case is a child script run once per
-- allocation index (spindle._alloc.failAt), armed just before the
-- callback, so that the sweep reaches the allocations the callback makes.
-- Regressions: signals.c slot_cb took its snapshot of the handlers,
-- fdset.c poll_call made the error name ("EBADF"), tls.c's handshake
-- timer made the "TLS handshake timed out" message outside a protected
-- call, so a memory error there was thrown out of the event loop (the
-- script died with "not enough memory" and exit status 1).
local process = require("spec.support.process")

local SCRIPT = [[
local reactor = require("spindle.reactor")
local alloc = require("spindle._alloc")
local mode, n = arg[1], tonumber(arg[2])
local finished = false
local function finish(what)
  alloc.failAt(0)
  if finished then return end
  finished = true
  print(what)
  reactor.stop()
end
-- When a memory error ate the event, nothing else ends the run.
reactor.callLater(1, finish, "no event")
if mode == "signal" then
  local f = io.open("/proc/self/stat")
  local pid = f:read("n")
  f:close()
  reactor.addSignalHandler("USR1", function() finish("handled") end)
  reactor.callWhenRunning(function()
    os.execute("kill -USR1 " .. pid)
    alloc.failAt(n) -- the signal is pending: its callback comes next
  end)
elseif mode == "poll" then
  -- A full pipe whose reader is closed: its writer polls an error
  -- (POLLERR: libuv's UV_EBADF), named "EBADF" for the callback.
  local uv = require("luv")
  local fds = uv.pipe({nonblock = true}, {nonblock = true})
  local chunk = string.rep("x", 65536)
  while uv.fs_write(fds.write, chunk) do end
  local W = {}
  function W.fileno() return fds.write end
  function W.doWrite() end
  function W.connectionLost() finish("lost") end
  reactor.addWriter(W)
  reactor.callWhenRunning(function()
    uv.fs_close(fds.read)
    alloc.failAt(n)
  end)
elseif mode == "tls" then
  -- A TCP client that never says hello: the server's handshake times
  -- out; the failing allocation is armed halfway through the wait.
  local ssl = require("spindle.ssl")
  local protocol = require("spindle.protocol")
  local S = protocol.Protocol:extend({})
  function S:connectionMade()
    reactor.callLater(0.15, alloc.failAt, n)
  end
  function S:connectionLost() finish("lost") end
  local port = reactor.listenSSL(0, protocol.Factory.forProtocol(S),
    ssl.DefaultOpenSSLContextFactory(arg[3], arg[4]), nil, "127.0.0.1",
    {handshakeTimeout = 0.3})
  reactor.callWhenRunning(function()
    reactor.connectTCP("127.0.0.1", port:getHost().port,
      protocol.ClientFactory.forProtocol(protocol.Protocol))
  end)
end
reactor.run()
alloc.failAt(0)
print("done")
]]

local script
setup(function()
  script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(SCRIPT)
  f:close()
end)
teardown(function() os.remove(script) end)

-- Run the script in mode once per allocation index 1..count: each run
-- must end (exit status 0, "done") with nothing left open.
local function sweep(mode, count, extra)
  for n = 1, count do
    local args = {script, mode, tostring(n)}
    for _, a in ipairs(extra or {}) do args[#args + 1] = a end
    local r = process.run(args, {timeout = 20})
    local out = r.stdout .. r.stderr
    assert.are.equal(0, r.status, mode .. ", allocation " .. n .. ": " .. out)
    assert.truthy(r.stdout:find("done", 1, true), mode .. " " .. n .. out)
    assert.is_nil(out:find("open handles", 1, true), mode .. " " .. n .. out)
  end
end

describe("a reactor callback out of memory", function()
  it("is logged when it hits a signal's handler snapshot", function()
    sweep("signal", 12)
  end)

  it("is logged when it hits a polled descriptor's error", function()
    sweep("poll", 12)
  end)

  it("is logged when it hits a TLS handshake timeout", function()
    local certs = require("spec.support.certs")()
    sweep("tls", 25, {certs.serverKey, certs.server})
  end)
end)
