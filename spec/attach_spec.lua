-- reactor.listenREPL and `spindle --attach PATH`, on a real terminal
-- (tmux): a REPL inside a running echo server; and the same over TLS with
-- client certificates (`spindle --attach tls:...`).
local process = require("spec.support.process")
local certs = require("spec.support.certs")
local tmux = require("spec.support.tmux")

local SERVER = [[
io.stdout:setvbuf("no")
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
-- The program's own output (a session runs it from a timer).
function tick(what) io.write("tick from the program ", what, "\n") end
local repl = reactor.listenREPL(arg[1])
io.stdout:write("port ", port:getHost().port, " repl ",
  tostring(repl:getHost().port), " ", tostring(repl:getHost().host), "\n")
io.stdout:flush()
reactor.run()
]]

local function tmpname()
  local p = os.tmpname()
  os.remove(p)
  return p
end

-- Start SERVER listening for the REPL at where (default: a fresh Unix
-- socket path).
local function start(where)
  local script, sock, out = tmpname() .. ".lua", tmpname(), tmpname()
  where = where or sock
  local f = assert(io.open(script, "w"))
  f:write(SERVER)
  f:close()
  local pidf = assert(io.popen(("%s %s %s > %s 2>&1 & echo $!"):format(
    process.quote(process.bin), script, process.quote(where), out)))
  local pid = pidf:read("l")
  pidf:close()
  local port, replPort, replHost, text
  for _ = 1, 200 do
    local o = io.open(out)
    text = o and o:read("a") or ""
    if o then o:close() end
    port, replPort, replHost = text:match("port (%d+) repl (%S+) (%S+)\n")
    if port then break end
    os.execute("sleep 0.05")
  end
  assert(port, "the server did not start: " .. text)
  return {pid = pid, sock = sock, script = script, out = out,
    port = tonumber(port), replPort = tonumber(replPort),
    replHost = replHost}
end

local function stop(srv)
  os.execute("kill " .. srv.pid .. " 2>/dev/null")
  os.remove(srv.script)
  os.remove(srv.out)
  os.remove(srv.sock)
end

-- What the server has written to its standard output and error so far.
local function output(srv)
  local f = assert(io.open(srv.out))
  local text = f:read("a")
  f:close()
  return text
end

-- Wait until the server has written text (a bound, not a delay: 30 s).
local function waitOutput(srv, text)
  for _ = 1, 600 do
    if output(srv):find(text, 1, true) then return end
    os.execute("sleep 0.05")
  end
  error(("the server never wrote %q; it wrote:\n%s"):format(text,
    output(srv)))
end

local function alive(pid)
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
end

-- A `spindle --attach TARGET` client in tmux, at its first prompt.
local function attachTerm(target)
  local t = tmux.start(process.quote(process.bin) .. " --attach " ..
    process.quote(target), {HOME = "/tmp"})
  t:waitFor("> ", 5, true)
  return t
end

-- Leave with Ctrl-D once the client is idle at its prompt again (an
-- entry whose answer shows it), so that Ctrl-D is not read while the
-- empty line is still going; the client must exit 0.
local function detachIdle(t)
  t:line("'idle'")
  t:waitFor("\nidle\n", 5, true)
  t:keys("C-d")
  t:waitFor("[exited 0]", 5, true)
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
      term = attachTerm(srv.sock)
      term:line(".conns")
      term:waitFor("tcp connection Echo 127%.0%.0%.1:" .. srv.port ..
        " <%-> 127%.0%.0%.1:%d+ [%d.]+ s old in 6 B, out 6 B, queued 0 B")
      term:waitFor("tcp port Factory 127%.0%.0%.1:" .. srv.port)
      term:line(".pending")
      local script = srv.script:gsub("%p", "%%%0")
      term:waitFor("Deferred made at [^\n]*" .. script:sub(-20) ..
        ":10, [%d.]+ s ago, fired, waiting\n%s+waits on %(chain%) " ..
        "Deferred made at [^\n]*" .. script:sub(-20) .. ":9,")
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
    term = attachTerm(srv.sock)
    term:type("stuck:addCallb")
    term:keys("Tab")
    term:waitFor("stuck:addCallback", 5, true)
    term:keys("C-u")
    detachIdle(term)
  end)

  it("completes what a chain of fields reaches, with the session's own " ..
    "variables", function()
      term = attachTerm(srv.sock)
      term:line("local mine = {deep = {field = 1}}")
      term:line("'typed'")
      term:waitFor("\ntyped\n", 5, true)
      term:type('mine["deep"].fi')
      term:keys("Tab")
      term:waitFor('> mine["deep"].field', 5, true)
      term:keys("C-u")
      term:type('("ab"):up')
      term:keys("Tab")
      term:waitFor('> ("ab"):upper', 5, true)
      term:keys("C-u")
      detachIdle(term)
    end)

  it("writes io.write, io.stdout:write and print of the session's entries " ..
    "to the session, the program's own output to its stdout", function()
      term = attachTerm(srv.sock)
      -- A second session at the same time gets its own output only.
      local other = tmux.start(process.quote(process.bin) .. " --attach " ..
        process.quote(srv.sock), {HOME = "/tmp"})
      other:waitFor("> ", 5, true)
      term:line('io.write("hi\\n")')
      term:waitFor("\nhi\n", 5, true)
      other:line('io.stdout:write("from ", "other", "\\n"):write("more\\n")')
      other:waitFor("\nfrom other\nmore\n", 5, true)
      term:line("print('printed', 1); io.stderr:write('to stderr\\n')")
      term:waitFor("\nprinted%s+1\nto stderr\n", 5)
      term:line("function later() io.write('later\\n') end")
      term:line("reactor.callLater(0, later); reactor.callLater(0, tick, 1)")
      term:waitFor("\nlater\n", 5, true)
      waitOutput(srv, "tick from the program 1\n")
      other:line("reactor.callLater(0, tick, 2)")
      waitOutput(srv, "tick from the program 2\n")
      local out = output(srv)
      assert.not_matches("hi\n", out, 1, true)
      assert.not_matches("from other", out, 1, true)
      assert.not_matches("printed", out, 1, true)
      assert.not_matches("later", out, 1, true)
      assert.not_matches("to stderr", out, 1, true)
      local screen = term:screen()
      assert.not_matches("from other", screen, 1, true)
      assert.not_matches("tick from", screen, 1, true)
      assert.not_matches("hi\n", other:screen(), 1, true)
      other:stop()
    end)

  -- What the echo server answers to "ping\n" (bounded: 30 s).
  local function ping(port)
    local p = assert(io.popen(("printf 'ping\\n' | timeout 30 nc -q1 " ..
      "127.0.0.1 %d"):format(port)))
    local text = p:read("a")
    p:close()
    return text
  end

  -- An entry that writes the file marker (so the spec knows it runs:
  -- its own output waits for the loop), then never returns.
  local function spinner(marker)
    return ('local f = io.open(%q, "w"); f:write("x"); f:close(); ' ..
      'while true do end'):format(marker)
  end

  local function waitFile(path)
    for _ = 1, 600 do
      local f = io.open(path)
      if f then
        f:close()
        return
      end
      os.execute("sleep 0.05")
    end
    error("the entry never ran (no " .. path .. ")")
  end

  it("interrupts a busy entry on Ctrl-C in the client (newuser-report " ..
    "#1); the program goes on serving", function()
      local marker = tmpname()
      term = attachTerm(srv.sock)
      term:line(spinner(marker))
      waitFile(marker)
      os.remove(marker)
      term:keys("C-c")
      term:waitFor("interrupted!", 5, true)
      assert.equal("ping\n", ping(srv.port))
      term:line("6 * 7")
      term:waitFor("\n42\n", 5, true)
      assert.truthy(alive(srv.pid))
      -- The hint is for a Ctrl-C at an empty prompt only, on its own line
      -- (newuser-report #6); .exit draws no prompt after detaching.
      assert.not_matches("To detach", term:screen(), 1, true)
      term:keys("C-c")
      term:waitFor("\n(To detach, press Ctrl-D or type .exit)\n>", 5,
        true)
      term:line(".exit")
      local screen = term:waitFor("[exited 0]", 5, true)
      assert.matches("closed)\n[exited 0]", screen, 1, true)
    end)

  -- Lua has one hook per thread: the stall watchdog's hook took the
  -- session's watch off the entry, and Ctrl-C did nothing after it.
  it("interrupts a busy entry on Ctrl-C after the stall watchdog has " ..
    "logged it", function()
      local marker = tmpname()
      term = attachTerm(srv.sock)
      term:line("reactor.setStallWarning(0.2)")
      term:waitFor("> ", 5, true)
      term:line(spinner(marker))
      waitFile(marker)
      os.remove(marker)
      waitOutput(srv, "stall warning: the reactor has been busy")
      term:keys("C-c")
      term:waitFor("interrupted!", 5, true)
      term:line("reactor.setStallWarning(nil); 6 * 7")
      term:waitFor("\n42\n", 5, true)
      assert.equal("ping\n", ping(srv.port))
      detachIdle(term)
    end)

  it("interrupts a busy entry whose client hangs up (newuser-report #1)",
    function()
      local marker, entry = tmpname(), tmpname()
      local f = assert(io.open(entry, "w"))
      f:write(spinner(marker), "\n")
      f:close()
      local pidf = assert(io.popen(("(cat %s; sleep 60) | %s --attach %s " ..
        ">/dev/null 2>&1 & echo $!"):format(entry,
        process.quote(process.bin), process.quote(srv.sock))))
      local pid = pidf:read("l")
      pidf:close()
      waitFile(marker)
      os.remove(marker)
      os.remove(entry)
      os.execute("kill -9 " .. pid)
      assert.equal("ping\n", ping(srv.port))
      local r = process.run({"--attach", srv.sock}, {stdin = "6 * 7\n",
        env = {SPINDLE_REPL = "rich"}})
      assert.matches("42", r.stdout)
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
    local ok, e = pcall(reactor.listenREPL, "tcp:8000")
    assert.is_false(ok)
    assert.matches("listenREPL: only a Unix socket path or TLS with " ..
      "client certificates is accepted (got 'tcp:8000'): a REPL is served " ..
      "over the network only with TLS and client certificates", e, 1, true)
  end)
end)

describe("spindle --attach over TLS", function()
  local c, srv
  setup(function() c = certs() end)
  before_each(function()
    srv = start(("ssl:0:privateKey=%s:certKey=%s:caCerts=%s"):format(
      c.serverKey, c.server, c.ca))
  end)
  after_each(function() stop(srv) end)

  local function tls(extra)
    return ("tls:host=127.0.0.1:port=%d:trustRoots=%s%s"):format(
      srv.replPort, c.ca, extra or "")
  end
  local GOOD = function()
    return tls((":certificate=%s:privateKey=%s"):format(c.client,
      c.clientKey))
  end
  local function attach(where, stdin)
    return process.run({"--attach", where},
      {stdin = stdin, env = {SPINDLE_REPL = "rich"}})
  end

  it("listens on 127.0.0.1 unless told otherwise", function()
    assert.equal("127.0.0.1", srv.replHost)
  end)

  it("runs entries in the server for a client with a certificate " ..
    "signed by the CA", function()
      local r = attach(GOOD(), "x = 6 * 7; print('in server', x)\n" ..
        "stuck.called\nerror('oops')\n")
      assert.matches("in server\t42\n", r.stdout, 1, true)
      assert.matches("\ntrue\n", r.stdout, 1, true)
      assert.matches("stdin:1: oops", r.stderr, 1, true)
      assert.equal(0, r.status)
      -- A second session sees what the first left: it is the same process.
      r = attach(GOOD(), "x\n")
      assert.matches("^42\n", r.stdout)
      assert.is_true(alive(srv.pid))
    end)

  it("refuses a client without a certificate; the server goes on",
    function()
      local r = attach(tls(), "print('ran')\n")
      assert.equal(1, r.status)
      assert.matches("cannot attach to tls:", r.stderr, 1, true)
      assert.matches("certificate required", r.stderr, 1, true)
      assert.not_matches("ran", r.stdout, 1, true)
      assert.is_true(alive(srv.pid))
      r = attach(GOOD(), "1 + 1\n")
      assert.matches("^2\n", r.stdout)
    end)

  it("refuses a client whose certificate another CA signed", function()
    local r = attach(tls((":certificate=%s:privateKey=%s"):format(c.bad,
      c.badKey)), "print('ran')\n")
    assert.equal(1, r.status)
    assert.matches("cannot attach to tls:", r.stderr, 1, true)
    assert.matches("unknown ca", r.stderr, 1, true)
    assert.not_matches("ran", r.stdout, 1, true)
    assert.is_true(alive(srv.pid))
  end)

  it("refuses a server whose certificate the client's CA did not sign",
    function()
      local r = attach(("tls:host=127.0.0.1:port=%d:trustRoots=%s:" ..
        "certificate=%s:privateKey=%s"):format(srv.replPort, c.evilCa,
        c.client, c.clientKey), "print('ran')\n")
      assert.equal(1, r.status)
      assert.matches("cannot attach to tls:", r.stderr, 1, true)
      assert.not_matches("ran", r.stdout, 1, true)
      assert.is_true(alive(srv.pid))
    end)

  it("completes with Tab over TLS, with the session's own variables",
    function()
      local term = tmux.start(process.quote(process.bin) .. " --attach " ..
        process.quote(GOOD()), {HOME = "/tmp"})
      term:waitFor("> ", 5, true)
      term:line("local mine = {deep = {field = 1}}")
      term:line("'typed'")
      term:waitFor("\ntyped\n", 5, true)
      -- Before, completion spoke only to a Unix socket: nothing completed.
      term:type("stuck:addCallb")
      term:keys("Tab")
      term:waitFor("> stuck:addCallback", 5, true)
      term:keys("C-u")
      term:type("mine.deep.fi")
      term:keys("Tab")
      term:waitFor("> mine.deep.field", 5, true)
      term:keys("C-u")
      detachIdle(term)
      term:stop()
      assert.is_true(alive(srv.pid))
    end)

  it("takes only a path or tls:", function()
    local r = attach(("tcp:host=127.0.0.1:port=%d"):format(srv.replPort),
      "1\n")
    assert.equal(1, r.status)
    assert.matches("--attach takes a Unix socket path or tls:", r.stderr, 1,
      true)
  end)
end)

describe("reactor.listenREPL over TLS", function()
  local reactor = require("spindle.reactor")
  local ssl = require("spindle.ssl")
  local c
  setup(function() c = certs() end)

  local function raisesNeeding(fn, what)
    local ok, e = pcall(fn)
    assert.is_false(ok)
    assert.matches(what, e, 1, true)
    assert.matches("client certificates verified against a CA", e, 1, true)
  end

  it("refuses tcp:", function()
    raisesNeeding(function() reactor.listenREPL("tcp:0") end,
      "only a Unix socket path or TLS with client certificates")
  end)

  it("refuses TLS that does not require client certificates", function()
    raisesNeeding(function()
      reactor.listenREPL(("ssl:0:privateKey=%s:certKey=%s"):format(
        c.serverKey, c.server))
    end, "has no caCerts=CA")
    raisesNeeding(function()
      reactor.listenREPL("ssl:0", ssl.CertificateOptions({
        privateKey = c.serverKey, certificate = c.server}))
    end, "does not require client certificates")
    raisesNeeding(function()
      reactor.listenREPL("ssl:0", ssl.CertificateOptions({
        privateKey = c.serverKey, certificate = c.server, verify = true,
        caCerts = c.ca, requireCertificate = false}))
    end, "does not require client certificates")
    raisesNeeding(function()
      reactor.listenREPL("ssl:0", ssl.DefaultOpenSSLContextFactory(
        c.serverKey, c.server))
    end, "only ssl.CertificateOptions")
    raisesNeeding(function()
      reactor.listenREPL({port = 0, privateKey = c.serverKey,
        certificate = c.server})
    end, "does not require client certificates")
  end)

  it("listens with CertificateOptions that require them", function()
    local port = reactor.listenREPL({port = 0, privateKey = c.serverKey,
      certificate = c.server, caCerts = c.ca})
    assert.equal("127.0.0.1", port:getHost().host)
    port:stopListening()
    port = reactor.listenREPL("ssl:0:interface=127.0.0.1",
      ssl.CertificateOptions({privateKey = c.serverKey,
        certificate = c.server, verify = true, caCerts = c.ca}))
    assert.is_true(port:getHost().port > 0)
    port:stopListening()
  end)
end)
