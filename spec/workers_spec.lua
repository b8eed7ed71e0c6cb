-- Serving in production (issue 9): draining on SIGTERM/SIGINT, spindle
-- --workers (spread, restart, drain, reload, give-up), systemd socket
-- activation, HAProxy in front. Processes are driven from outside by
-- spec/support/workers_driver.py (python3), as an operator and clients
-- would; the server is spec/support/workers_app.lua.
local H = require("spec.support.helper")
local process = require("spec.support.process")
local reactor = require("spindle.reactor")
local endpoints = require("spindle.endpoints")
local protocol = require("spindle.protocol")

local function here(path)
  local pwd = os.getenv("PWD") or io.popen("pwd"):read("l")
  return pwd .. "/" .. path
end

local DRIVER = here("spec/support/workers_driver.py")
local APP = here("spec/support/workers_app.lua")

-- Run a driver scenario: its key=value results, and the whole output
-- (with the processes' logs) for failure messages.
local function scenario(name, env)
  local vars = ""
  for k, v in pairs(env or {}) do
    vars = vars .. k .. "=" .. process.quote(v) .. " "
  end
  local p = assert(io.popen(("%stimeout 60 python3 %s %s %s %s 2>&1"):format(
    vars, DRIVER, name, process.quote(H.SPINDLE), process.quote(APP))))
  local text = p:read("a")
  p:close()
  local r = {}
  for k, v in text:gmatch("([%w_]+)=([^\n]*)") do
    if r[k] == nil then r[k] = v end
  end
  return r, text
end

local function have(cmd)
  local p = io.popen("command -v " .. cmd .. " 2>/dev/null")
  local out = p:read("a")
  p:close()
  return out ~= ""
end

describe("drain (SIGTERM/SIGINT on one process)", function()
  it("stops accepting, lets a slow request finish, exits 0; a second " ..
    "signal forces the exit", function()
    local r, text = scenario("single")
    assert.are.equal("True", r.refused, text)
    assert.are.equal("True", r.slow_answered, text)
    assert.are.equal("0", r.status, text)
    assert.are.equal("143", r.forced_status, text)
  end)

  local source = [[
    local reactor = require("spindle.reactor")
    local protocol = require("spindle.protocol")
    local defer = require("spindle.defer")
    local pid = io.open("/proc/self/stat"):read("n")
    local Server = protocol.Protocol:extend()
    function Server:connectionMade()
      -- The connection closes 0.3 s after the drain began.
      reactor.addSystemEventTrigger("after", "drain", function()
        reactor.callLater(0.3, function()
          print("closing the open connection")
          self.transport:loseConnection()
        end)
      end)
      io.popen("kill -" .. arg[1] .. " " .. pid):close()
    end
    local port = reactor.listenTCP(0, protocol.Factory.forProtocol(Server),
      {interface = "127.0.0.1"})
    reactor.addSystemEventTrigger("before", "drain", function()
      print("before drain, draining=" .. tostring(reactor.draining) ..
        " running=" .. tostring(reactor.running))
      local d = defer.Deferred()
      reactor.callLater(0.05, d.callback, d, nil)
      return d
    end)
    reactor.addSystemEventTrigger("after", "drain", function()
      -- The port closes once its queue is empty (at once here).
      reactor.callLater(0.1, function()
        local f = protocol.ClientFactory()
        function f.clientConnectionFailed(_, _, reason)
          print("new connection: " .. tostring(reason.type))
        end
        reactor.connectTCP("127.0.0.1", port:getHost().port, f)
      end)
    end)
    reactor.addSystemEventTrigger("before", "shutdown", print, "shutdown")
    reactor.connectTCP("127.0.0.1", port:getHost().port,
      protocol.ClientFactory.forProtocol(protocol.Protocol))
    reactor.callLater(5, function() print("not stopped"); os.exit(3) end)
    reactor.run()
    print("run returned")
  ]]

  for _, sig in ipairs({"TERM", "INT"}) do
    it("SIG" .. sig .. ": 'drain' triggers (waited on), reactor.draining, " ..
      "then shutdown once the last connection closed", function()
      local out, err, code = H.runScript(source, {sig})
      assert.are.equal("before drain, draining=true running=true\n" ..
        "new connection: <error type ConnectionRefusedError>\n" ..
        "closing the open connection\nshutdown\nrun returned\n", out)
      assert.truthy(err:find("Draining: stopped accepting on 1 port; " ..
        "waiting up to 10 s for 1 open connection.", 1, true), err)
      assert.are.equal(0, code)
    end)
  end

  it("reactor.stop() during the drain ends it at once", function()
    local out, err, code = H.runScript([[
      local reactor = require("spindle.reactor")
      local protocol = require("spindle.protocol")
      local pid = io.open("/proc/self/stat"):read("n")
      local Server = protocol.Protocol:extend()
      function Server:connectionMade()
        io.popen("kill -TERM " .. pid):close()
      end
      local port = reactor.listenTCP(0, protocol.Factory.forProtocol(Server),
        {interface = "127.0.0.1"})
      reactor.addSystemEventTrigger("after", "drain", function()
        reactor.callLater(0.1, reactor.stop)
      end)
      reactor.connectTCP("127.0.0.1", port:getHost().port,
        protocol.ClientFactory.forProtocol(protocol.Protocol))
      local t0 = reactor.seconds()
      reactor.run()
      print(reactor.seconds() - t0 < 5)
    ]])
    assert.are.equal("true\n", out, err)
    assert.are.equal(0, code)
  end)

  it("--drain bounds the wait: connections still open are closed",
    function()
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write([[
        local reactor = require("spindle.reactor")
        local protocol = require("spindle.protocol")
        local pid = io.open("/proc/self/stat"):read("n")
        local Server = protocol.Protocol:extend()
        function Server:connectionMade()
          io.popen("kill -TERM " .. pid):close()
        end
        function Server:connectionLost() print("lost at exit") end
        local port = reactor.listenTCP(0,
          protocol.Factory.forProtocol(Server), {interface = "127.0.0.1"})
        reactor.connectTCP("127.0.0.1", port:getHost().port,
          protocol.ClientFactory.forProtocol(protocol.Protocol))
        reactor.run()
        print("run returned")
      ]])
      f:close()
      local r = process.run({"--drain", "0.2", script})
      os.remove(script)
      assert.are.equal("run returned\nlost at exit\n", r.stdout, r.stderr)
      assert.truthy(r.stderr:find("Drain period over: closing 1 open " ..
        "connection.", 1, true), r.stderr)
      assert.are.equal(0, r.status)
    end)

  it("reactor.draining is false, workerId and workerCount nil, outside " ..
    "a supervisor and a drain", function()
    assert.is_false(reactor.draining)
    assert.is_nil(reactor.workerId)
    assert.is_nil(reactor.workerCount)
  end)
end)

describe("spindle --workers", function()
  it("spreads connections over both workers (distinct pids)", function()
    local r, text = scenario("spread")
    assert.are.equal("2", r.distinct_pids, text)
    assert.are.equal("0", r.status, text)
    assert.truthy(text:find("worker 1 ready", 1, true), text)
    assert.truthy(text:find("worker 2 ready", 1, true), text)
  end)

  it("runs the README's example (scripts/hello_server.lua): both " ..
    "workers answer, before and after a reload; SIGTERM drains", function()
    local r, text = scenario("readme")
    assert.are.equal("2", r.distinct_pids, text)
    assert.are.equal("2", r.reloaded_pids, text)
    assert.are.equal("0", r.status, text)
    assert.are.equal("True", r.drained, text)
  end)

  it("hands sockets to workers that listen after start-up", function()
    local r, text = scenario("late")
    assert.are.equal("2", r.distinct_pids, text)
    assert.are.equal("0", r.status, text)
  end)

  it("spreads TLS connections (listenSSL) over both workers", function()
    local certs = require("spec.support.certs")()
    local r, text = scenario("tls", {CERT = certs.server,
      KEY = certs.serverKey})
    assert.are.equal("2", r.distinct_pids, text)
    assert.are.equal("0", r.status, text)
  end)

  it("replaces a killed worker", function()
    local r, text = scenario("replace")
    assert.are.equal("False", r.victim_answered, text)
    assert.are.equal("True", r.replacement_answered, text)
    assert.are.equal("2", r.distinct_pids, text)
    assert.are.equal("0", r.status, text)
  end)

  it("drains on SIGTERM: a slow request completes, new connections are " ..
    "refused, the supervisor exits 0 within the drain period", function()
    local r, text = scenario("drain")
    assert.are.equal("True", r.refused, text)
    assert.are.equal("True", r.slow_answered, text)
    assert.are.equal("0", r.status, text)
    assert.are.equal("True", r.within_drain, text)
  end)

  it("reloads on SIGHUP under a client loop of 2000 requests, none " ..
    "failed; 20 more reloads leave its descriptors and memory flat",
    function()
    local r, text = scenario("reload")
    assert.are.equal("0", r.failed, text)
    assert.is_true(tonumber(r.requests) >= 2000, text)
    assert.are.equal("4", r.distinct_pids, text)
    -- 20 more reloads, each waited for: the same descriptors, and
    -- resident memory within allocator noise (64 KiB).
    assert.are.equal("20", r.reloads, text)
    assert.are.equal(r.fds_before, r.fds_after, text)
    assert.is_true(tonumber(r.rss_after) - tonumber(r.rss_before) <= 64,
      text)
    assert.are.equal("0", r.status, text)
  end)

  it("gives up, with a message and status 1, on a script that crashes " ..
    "at start-up", function()
    local r, text = scenario("crash")
    assert.are.equal("1", r.status, text)
    assert.are.equal("True", r.gave_up, text)
  end)

  it("workers drain and exit when the supervisor is killed", function()
    local r, text = scenario("orphan")
    assert.are.equal("True", r.workers_gone, text)
  end)

  it("listens on a Unix socket path once, for every worker", function()
    local r, text = scenario("unix")
    assert.are.equal("40", r.answered, text)
    assert.are.equal("0", r.status, text)
    assert.are.equal("True", r.path_removed, text)
  end)

  it("rejects a bad count and a missing script", function()
    local r = process.run({"--workers", "zero", "x.lua"})
    assert.are.equal(1, r.status)
    assert.truthy(r.stderr:find("--workers needs a number", 1, true))
    r = process.run({"--workers", "2"})
    assert.are.equal(1, r.status)
    assert.truthy(r.stderr:find("--workers needs a script file", 1, true))
    r = process.run({"--drain", "soon", "-e", "print(1)"})
    assert.are.equal(1, r.status)
    assert.truthy(r.stderr:find("--drain needs a number", 1, true))
  end)
end)

describe("systemd socket activation", function()
  it("serves on the socket systemd passed " ..
    "(systemd:domain=INET:index=0)", function()
    local r, text = scenario("systemd")
    assert.are.equal("True", r.answered, text)
    assert.are.equal("0", r.status, text)
  end)

  it("serverFromString raises without LISTEN_FDS", function()
    local ok, err = pcall(endpoints.serverFromString, reactor,
      "systemd:domain=INET:index=0")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("no socket 0 from systemd", 1, true))
  end)

  it("adoptStreamPort raises CannotListenError on a descriptor that is " ..
    "not a listening socket", function()
    H.assertErrorType(reactor.CannotListenError, nil, pcall(
      reactor.adoptStreamPort, 1000, "INET",
      protocol.Factory.forProtocol(protocol.Protocol)))
  end)
end)

describe("HAProxy in front of two spindle processes", function()
  local run = have("haproxy") and it or pending
  run("moves the traffic to the other one when one drains, with no " ..
    "failed request", function()
    local r, text = scenario("haproxy")
    assert.are.equal("True", r.both_served, text)
    assert.are.equal("0", r.s1_status, text)
    assert.are.equal("True", r.after_stop_pids, text)
    assert.are.equal("0", r.failed, text)
    assert.are.equal("0", r.s2_status, text)
  end)
end)
