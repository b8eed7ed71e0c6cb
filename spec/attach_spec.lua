-- reactor.listenREPL and `spindle --attach PATH`, on a real terminal
-- (tmux): a REPL inside a running echo server.
local process = require("spec.support.process")
local tmux = require("spec.support.tmux")

local SERVER = [[
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local defer = require("spindle.defer")
local Echo = protocol.Protocol:extend({__name = "Echo"})
function Echo:dataReceived(data) self.transport:write(data) end
local port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), nil,
  "127.0.0.1")
never = defer.Deferred()
stuck = defer.succeed(1)
stuck:addCallback(function() return never end)
reactor.listenREPL(arg[1])
io.stdout:write("port ", port:getHost().port, "\n")
io.stdout:flush()
reactor.run()
]]

local function tmpname()
  local p = os.tmpname()
  os.remove(p)
  return p
end

local function start()
  local script, sock, out = tmpname() .. ".lua", tmpname(), tmpname()
  local f = assert(io.open(script, "w"))
  f:write(SERVER)
  f:close()
  local pidf = assert(io.popen(("%s %s %s > %s 2>&1 & echo $!"):format(
    process.quote(process.bin), script, sock, out)))
  local pid = pidf:read("l")
  pidf:close()
  local port
  for _ = 1, 100 do
    local o = io.open(out)
    local text = o and o:read("a") or ""
    if o then o:close() end
    port = text:match("port (%d+)")
    if port then break end
    os.execute("sleep 0.05")
  end
  assert(port, "the server did not start")
  return {pid = pid, sock = sock, script = script, out = out,
    port = tonumber(port)}
end

local function stop(srv)
  os.execute("kill " .. srv.pid .. " 2>/dev/null")
  os.remove(srv.script)
  os.remove(srv.out)
  os.remove(srv.sock)
end

local function alive(pid)
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
end

describe("spindle --attach", function()
  local srv, term
  before_each(function() srv = start() end)
  after_each(function()
    if term then term:stop() end
    stop(srv)
  end)

  it("serves the socket to its owner only", function()
    local p = assert(io.popen("stat -c %a " .. process.quote(srv.sock)))
    assert.equal("600", p:read("l"))
    p:close()
  end)

  it("inspects the running server, then detaches leaving it running",
    function()
      -- A client stays connected to the echo server meanwhile.
      local nc = assert(io.popen(("(echo hello; sleep 3) | " ..
        "timeout 5 nc 127.0.0.1 %d"):format(srv.port)))
      term = tmux.start(process.quote(process.bin) .. " --attach " ..
        process.quote(srv.sock), {HOME = "/tmp"})
      term:waitFor("> ", 5, true)
      term:line(".conns")
      term:waitFor("tcp connection Echo 127%.0%.0%.1:" .. srv.port ..
        " <%-> 127%.0%.0%.1:%d+ [%d.]+ s old in 6 B, out 6 B, queued 0 B")
      term:waitFor("tcp port Factory 127%.0%.0%.1:" .. srv.port)
      term:line(".pending")
      local script = srv.script:gsub("%p", "%%%0")
      term:waitFor("Deferred made at [^\n]*" .. script:sub(-20) ..
        ":9, [%d.]+ s ago, fired, waiting\n%s+waits on %(chain%) " ..
        "Deferred made at [^\n]*" .. script:sub(-20) .. ":8,")
      term:line("never.called")
      term:waitFor("\nfalse\n", 5, true)
      term:line("x = 6 * 7; x")
      term:waitFor("\n42\n", 5, true)
      term:line("for i = 1, 2 do")
      term:line("print('line ' .. i) end")
      term:waitFor("\nline 1\nline 2\n", 5, true)
      term:line("error({code = 1})")
      term:waitFor("{code = 1}", 5, true)
      -- A second session at the same time, with an error of its own.
      local both = process.run({"--attach", srv.sock}, {stdin =
        "x + 1\nerror('second')\nnil + 1\n'still'\n",
        env = {SPINDLE_REPL = "rich"}})
      assert.matches("^43\n", both.stdout)
      assert.matches("still\n", both.stdout, 1, true)
      assert.matches("stdin:1: second", both.stderr, 1, true)
      term:line("x + 2")
      term:waitFor("\n44\n", 5, true)
      term:keys("C-d")
      term:waitFor("[exited 0]", 5, true)
      assert.is_true(alive(srv.pid))
      assert.equal("hello\n", nc:read("a"))
      nc:close()
      -- A second session sees what the first one left.
      local r = process.run({"--attach", srv.sock},
        {stdin = "x\n", env = {SPINDLE_REPL = "rich"}})
      assert.matches("^42\n", r.stdout)
      assert.is_true(alive(srv.pid))
    end)

  it("completes names from the server with Tab", function()
    term = tmux.start(process.quote(process.bin) .. " --attach " ..
      process.quote(srv.sock), {HOME = "/tmp"})
    term:waitFor("> ", 5, true)
    term:type("stuck:addCallb")
    term:keys("Tab")
    term:waitFor("stuck:addCallback", 5, true)
    term:keys("C-u")
    term:line("")
    term:keys("C-d")
    term:waitFor("[exited 0]", 5, true)
  end)

  it("says why it cannot attach", function()
    local r = process.run({"--attach", srv.sock .. ".missing"},
      {stdin = "", env = {SPINDLE_REPL = "rich"}})
    assert.matches("cannot attach to .*%.missing", r.stderr)
    assert.equal(1, r.status)
  end)
end)

describe("reactor.listenREPL", function()
  it("checks its argument", function()
    local reactor = require("spindle.reactor")
    assert.has_error(function() reactor.listenREPL(nil) end,
      "bad argument #1 to 'listenREPL' (string expected, got nil)")
  end)

  it("refuses network endpoints", function()
    local reactor = require("spindle.reactor")
    assert.has_error(function() reactor.listenREPL("tcp:8000") end,
      "listenREPL: only a Unix socket path is accepted (got 'tcp:8000'): " ..
      "a REPL is never served over the network")
  end)
end)
