-- The interactive prompt (spindle -i, or spindle alone on a terminal):
-- it runs on the reactor, prints values, awaits Deferreds at top level.
-- SPINDLE_REPL=rich gives piped input the terminal's REPL (without it,
-- -i on a pipe is lua -i's line mode: spec/main_spec.lua).
local process = require("spec.support.process")

local function repl(input, opts)
  return process.run({"-i"}, {stdin = input, timeout = (opts or {}).timeout,
    env = {SPINDLE_REPL = "rich"}})
end

describe("the REPL", function()
  it("prints expression values and keeps assignments silent", function()
    local r = repl("x = 6\nx * 7\n'text', nil, true\n")
    assert.equal(0, r.status)
    assert.matches("\n42\ntext\tnil\ttrue\n$", r.stdout)
  end)

  it("pretty-prints tables to a depth, quoting strings inside", function()
    local r = repl("{1, 'two', k = {x = {y = {z = {}}}}, ['a b'] = 3}\n")
    assert.matches('{1, "two", %["a b"%] = 3, k = {x = {y = {...}}}}\n',
      r.stdout)
  end)

  it("shows a cycle instead of recursing", function()
    local r = repl("t = {}; t.self = t\nt\n")
    assert.matches("{self = <cycle>}", r.stdout, 1, true)
  end)

  it("continues unfinished statements on the next lines", function()
    local r = repl("for i = 1, 3 do\nio.write(i, ' ')\nend\n")
    assert.matches("1 2 3 ", r.stdout, 1, true)
    assert.equal("", r.stderr)
  end)

  it("reports errors with a traceback and goes on", function()
    local r = repl("error('kaput')\n'after'\n")
    assert.equal(0, r.status)
    assert.matches("stdin:1: kaput", r.stderr, 1, true)
    assert.matches("stack traceback", r.stderr, 1, true)
    assert.matches("after\n", r.stdout, 1, true)
  end)

  it("reports syntax errors and goes on", function()
    local r = repl("x = = 1\n'after'\n")
    assert.matches("unexpected symbol", r.stderr, 1, true)
    assert.matches("after\n", r.stdout, 1, true)
  end)

  it("reports a parser overflow as a syntax error and goes on", function()
    -- Before: load's "C stack overflow" came back through the REPL's
    -- message handler as a Failure, and `e:sub` raised inside the REPL.
    local r = repl(("("):rep(300) .. (")"):rep(300) .. "\n'after'\n")
    assert.matches("C stack overflow\n", r.stderr, 1, true)
    assert.not_matches("spindle REPL:", r.stderr, 1, true)
    assert.matches("after\n", r.stdout, 1, true)
  end)

  it("drops the whole of a piped line too long for its buffer", function()
    -- Before: each 4 KiB of the line was dropped, and what was left after
    -- the last full 4 KiB ran as an entry of its own.
    local r = repl(("x"):rep(5000) .. "\n'after'\n")
    assert.matches("input line too long", r.stderr, 1, true)
    assert.equal("after\n", (r.stdout:gsub("^[^\n]*Lua%.org[^\n]*\n", "")))
  end)

  it("awaits a Deferred at top level while the reactor runs", function()
    local r = repl(table.concat({
      "reactor = require('spindle.reactor')",
      "defer = require('spindle.defer')",
      "d = defer.Deferred()",
      "reactor.callLater(0.05, d.callback, d, 'fired')",
      "t0 = reactor.seconds()",
      "await(d)",
      "reactor.seconds() - t0 >= 0.04",
    }, "\n") .. "\n")
    assert.equal(0, r.status)
    assert.matches("\nfired\ntrue\n$", r.stdout)
  end)

  it("shows an awaited Deferred with what it fired with, fired before " ..
    "or after the await (newuser-report #4)", function()
      local r = repl("d = defer.succeed(42)\nawait(d)\nd\n" ..
        "e = defer.Deferred(); reactor.callLater(0.05, e.callback, e, 7)\n" ..
        "await(e)\ne\nf = defer.fail('boom')\nawait(f)\nf\n")
      assert.matches("\n42\nDeferred <fired: 42>\n7\nDeferred <fired: 7>\n",
        r.stdout, 1, true)
      assert.matches("\nDeferred <failed: boom>\n", r.stdout, 1, true)
      assert.not_matches("Unhandled", r.stdout .. r.stderr, 1, true)
    end)

  it("raises the Failure of an awaited Deferred", function()
    local r = repl("defer = require('spindle.defer')\n" ..
      "await(defer.fail(defer.errorType('Oops')('bad')))\n'next'\n")
    assert.matches("Oops: bad", r.stderr, 1, true)
    assert.matches("next\n", r.stdout, 1, true)
  end)

  it("keeps servers and timers running between entries", function()
    local r = repl(table.concat({
      "reactor = require('spindle.reactor')",
      "n = 0",
      "lc = require('spindle.task').LoopingCall(function() n = n + 1 end)",
      "lc:start(0.01)",
      "await(require('spindle.task').deferLater(reactor, 0.1, function() end))",
      "n >= 5",
    }, "\n") .. "\n")
    assert.matches("\ntrue\n$", r.stdout)
  end)

  it("shows a Deferred with its state", function()
    local r = repl("defer.succeed(3)\ndefer.Deferred()\n" ..
      "d = defer.fail(defer.errorType('Oops')('bad')); d\n" ..
      "d:addErrback(function() end)\n")
    assert.matches("Deferred <fired: 3>\nDeferred <pending>\n" ..
      "Deferred <failed: Oops: bad>\n", r.stdout, 1, true)
  end)

  it("has spindle's modules as globals, as Node has its core ones", function()
    local r = repl("type(reactor.callLater), type(defer.Deferred), " ..
      "type(inspect.summary), type(task.Clock), type(log.msg)\n")
    assert.matches("function\tfunction\tfunction\ttable\tfunction\n",
      r.stdout, 1, true)
  end)

  it("keeps locals of earlier entries, runs `x = 1; x`, sets _", function()
    local r = repl("local y = 5\ny\nx = 1; x\n_ + 1\n" ..
      "local function sq(n) return n * n end\nsq(3)\n")
    assert.matches("\n5\n1\n2\n9\n$", r.stdout)
    assert.equal("", r.stderr)
  end)

  it("prints table errors and only the user's frames", function()
    local r = repl("error({code = 1})\nerror('kaput')\n")
    assert.matches("{code = 1}", r.stderr, 1, true)
    assert.not_matches("repl.lua", r.stderr, 1, true)
    assert.not_matches("table: 0x", r.stderr, 1, true)
  end)

  it("prints arrays in columns with a count when cut, classes by name",
    function()
      local r = repl("t = {} for i = 1, 100 do t[i] = i end\nt\n" ..
        "protocol.Protocol:extend({__name = 'Echo'})()\n")
      assert.matches("{\n  1,   2,   3,", r.stdout, 1, true)
      assert.matches("... 60 more\n}", r.stdout, 1, true)
      assert.matches("\nEcho {}\n", r.stdout, 1, true)
    end)

  it("lists the dot commands with .help and runs the inspector's",
    function()
      local r = repl(".help\nd = defer.Deferred()\n.pending\n.timers\n" ..
        ".threads\n.conns\n")
      assert.matches(".pending   pending Deferreds", r.stdout, 1, true)
      assert.matches(".editor    type or paste a block", r.stdout, 1, true)
      assert.matches("Deferred made at stdin:1, [%d.]+ s ago, unfired",
        r.stdout)
      assert.matches("no pending DelayedCalls", r.stdout, 1, true)
      assert.matches("thread pool: 0/10 threads", r.stdout, 1, true)
      assert.matches("active libuv handles:", r.stdout, 1, true)
    end)

  it("runs an .editor block at .end", function()
    local r = repl(".editor\nlocal a = 2\nreturn a * 21\n.end\n'after'\n")
    assert.matches("\n42\nafter\n$", r.stdout)
  end)

  it("reports a failed Deferred dropped by an entry right after it",
    function()
      local r = repl("defer.fail(defer.errorType('Dropped')('x')) " ..
        "return nil\nprint('next')\n")
      local at = r.stderr:find("Unhandled error in Deferred", 1, true)
      assert.is_not_nil(at)
      assert.matches("Dropped: x", r.stderr, 1, true)
    end)

  it("completes string methods, module names and file paths", function()
    local r = repl(table.concat({
      "c = require('spindle.repl').complete",
      "table.concat(c(':up', '(\"ab\"):up'), ',')",
      "table.concat(c('spindle.def', 'require \"spindle.def'), ',')",
      "table.concat(c('helpe', 'dofile(\"spec/support/helpe'), ',')",
    }, "\n") .. "\n")
    assert.matches("\n:upper\nspindle.defer\nhelper.lua\n$", r.stdout)
  end)

  it("ends when the reactor is stopped", function()
    local r = repl("require('spindle.reactor').stop()\nprint('not reached')\n")
    assert.equal(0, r.status)
    assert.not_matches("not reached", r.stdout)
  end)

  it("completes globals, fields and methods", function()
    local r = repl(table.concat({
      "complete = require('spindle.repl').complete",
      "reactor = require('spindle.reactor')",
      "table.concat(complete('reactor.callL'), ',')",
      "table.concat(complete('requi'), ',')",
      "d = require('spindle.defer').Deferred()",
      "table.concat(complete('d:addCallb'), ',')",
    }, "\n") .. "\n")
    assert.matches(
      "\nreactor.callLater\nrequire\nd:addCallback,d:addCallbacks\n",
      r.stdout, 1, true)
  end)
end)

describe("the REPL on a terminal", function()
  it("edits lines, awaits, and keeps history", function()
    local home = os.tmpname()
    os.remove(home)
    assert(os.execute("mkdir -p " .. home))
    -- python3's pty module gives the REPL a real terminal.
    local script = [==[
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.environ["HOME"] = sys.argv[2]
    os.execv(sys.argv[1], [sys.argv[1]])
out = b""
def pump(t):
    global out
    end = time.time() + t
    while time.time() < end:
        try:
            import select
            r, _, _ = select.select([fd], [], [], 0.05)
            if r: out += os.read(fd, 4096)
        except OSError:
            return
for line in [b"d = require('spindle.defer').Deferred()\r",
             b"require('spindle.reactor').callLater(0.2, d.callback, d, "
             b"6 * 7)\r",
             b"await(d)\r"]:
    os.write(fd, line); pump(0.3)
pump(0.3)
os.write(fd, b"\x04"); pump(0.5)
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode("utf-8", "replace"))
sys.stdout.write("\nEXIT %d\n" % os.WEXITSTATUS(status))
]==]
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local p = assert(io.popen("timeout 20 python3 " .. path .. " " ..
      process.quote(process.bin) .. " " .. process.quote(home)))
    local out = p:read("a")
    p:close()
    os.remove(path)
    local hf = io.open(home .. "/.spindle_history")
    local history = hf and hf:read("a") or ""
    if hf then hf:close() end
    os.execute("(sleep 1; rm -rf " .. home .. ") &")
    assert.matches("> await%(d%)\r?\n42\r?\n", out)
    assert.matches("EXIT 0", out, 1, true)
    assert.matches("await(d)", history, 1, true)
  end)
end)

describe("the REPL and SIGINT", function()
  it("interrupts an entry that never returns and goes on", function()
    -- The shell sends SIGINT while the entry spins; the next line runs.
    local cmd = "(sleep 0.5; kill -INT $(cat " .. "%s" .. ")) & " ..
      "echo $$ > %s; exec %s -i"
    local pidfile = os.tmpname()
    local p = assert(io.popen(string.format(
      "printf 'while true do end\\n\"after\"\\n' | SPINDLE_REPL=rich " ..
      "timeout 20 sh -c %s 2>&1",
      process.quote(string.format(cmd, pidfile, pidfile,
        process.quote(process.bin))))))
    local out = p:read("a")
    p:close()
    os.remove(pidfile)
    assert.matches("interrupted!", out, 1, true)
    assert.matches("\nafter\n", out, 1, true)
  end)
end)

describe("the REPL on a tmux terminal", function()
  local tmux = require("spec.support.tmux")
  local term, home
  before_each(function()
    home = os.tmpname()
    os.remove(home)
    assert(os.execute("mkdir -p " .. home))
    term = tmux.start(process.quote(process.bin), {HOME = home})
    term:waitFor("> ", 5, true)
  end)
  after_each(function()
    term:stop()
    os.execute("(sleep 1; rm -rf " .. home .. ") &")
  end)

  it("says how to leave on Ctrl-C at an empty prompt", function()
    term:keys("C-c")
    -- On a line of its own, the prompt on the next (newuser-report #6).
    term:waitFor("\n(To exit, press Ctrl-D or type .exit)\n>", 5, true)
    term:line(".exit")
    term:waitFor("[exited 0]", 5, true)
  end)

  it("gives no hint for the Ctrl-C that stops a running entry " ..
    "(newuser-report #6)", function()
      local marker = os.tmpname()
      os.remove(marker)
      term:line(('local f = io.open(%q, "w"); f:write("x"); f:close(); ' ..
        'while true do end'):format(marker))
      for _ = 1, 600 do
        local f = io.open(marker)
        if f then
          f:close()
          break
        end
        os.execute("sleep 0.05")
      end
      os.remove(marker)
      term:keys("C-c")
      term:waitFor("interrupted!", 5, true)
      term:line("6 * 7")
      local screen = term:waitFor("\n42\n", 5, true)
      assert.not_matches("To exit", screen, 1, true)
    end)

  it("cancels the awaited Deferred on Ctrl-C and drops the entry's rest",
    function()
      term:line("d = defer.Deferred(); n = 0")
      term:line("await(d); n = 1")
      os.execute("sleep 0.3")
      term:keys("C-c")
      term:waitFor("KeyboardInterrupt: the awaited Deferred is cancelled",
        5, true)
      term:line("n, d.called")
      term:waitFor("\n0%s+true\n", 5)
      -- The awaited Deferred shows how it ended (newuser-report #4).
      term:line("d")
      term:waitFor("Deferred <failed: CancelledError", 5, true)
    end)

  it("completes a string literal's methods with Tab", function()
    term:type('("ab"):up')
    term:keys("Tab")
    term:waitFor('("ab"):upper', 5, true)
    term:type("()")
    term:keys("Enter")
    term:waitFor("\nAB\n", 5, true)
  end)

  it("completes what a chain of names, literal keys and parenthesised " ..
    "literals reaches with Tab, running no __index function", function()
      term:line("t = {inner = {first = 1, [2] = {deep = true}}}; calls = 0")
      term:line("lazy = setmetatable({}, {__index = function() " ..
        "calls = calls + 1; return {boom = 1} end})")
      term:line("local mine = defer.Deferred()")
      term:line("C = protocol.Protocol:extend({__name = 'C'}); " ..
        "function C:ownMethod() end; c = C()")
      term:line("'ready'")
      term:waitFor("\nready\n", 5, true)
      -- Before, `t["inner"].fi` completed nothing and `lazy.x.bo` ran
      -- lazy's __index (calls became 1) to complete `boom`.
      term:type('t["inner"].fi')
      term:keys("Tab")
      term:waitFor('> t["inner"].first', 5, true)
      term:keys("C-u")
      term:type("(t.inner[2]).de")
      term:keys("Tab")
      term:waitFor("> (t.inner[2]).deep", 5, true)
      term:keys("C-u")
      term:type("mine:addCallb")
      term:keys("Tab")
      term:waitFor("> mine:addCallback", 5, true)
      term:keys("C-u")
      term:type("c:ownM")
      term:keys("Tab")
      term:waitFor("> c:ownMethod", 5, true)
      term:keys("C-u")
      term:type("c:connectionM")
      term:keys("Tab")
      term:waitFor("> c:connectionMade", 5, true)
      term:keys("C-u")
      term:type("reactor.callL")
      term:keys("Tab")
      term:waitFor("> reactor.callLater", 5, true)
      term:keys("C-u")
      term:type("lazy.x.bo")
      term:keys("Tab")
      term:keys("C-u")
      term:line("'calls ' .. calls")
      term:waitFor("\ncalls 0\n", 5, true)
      assert.not_matches("lazy.x.boom", term:screen(), 1, true)
    end)

  it("redraws the prompt and the typed line after a timer prints",
    function()
      term:line("reactor.callLater(0.5, print, 'from the timer')")
      term:type("half typed")
      term:waitFor("\nfrom the timer\n> half typed", 5, true)
      term:keys("C-u")
      term:line("")
    end)

  it("redraws the prompt and the typed line after a timer logs",
    function()
      term:line("reactor.callLater(0.5, log.msg, 'logged by the timer')")
      term:type("half typed")
      term:waitFor("logged by the timer\n> half typed", 5, true)
      term:keys("C-u")
      term:line("")
    end)

  it("runs an .editor block on Ctrl-D", function()
    term:line(".editor")
    term:line("local a = 20")
    term:line("return a + 22")
    term:keys("C-d")
    term:waitFor("\n42\n", 5, true)
    term:line("'still here'")
    term:waitFor("\nstill here\n", 5, true)
  end)
end)

describe("the REPL's Ctrl-R on a tmux terminal", function()
  it("finds an earlier line and shows it at the prompt", function()
    local tmux = require("spec.support.tmux")
    local home = os.tmpname()
    os.remove(home)
    assert(os.execute("mkdir -p " .. home))
    local term = tmux.start(process.quote(process.bin), {HOME = home})
    term:waitFor("> ", 5, true)
    term:line("'needle' .. 1")
    term:waitFor("\nneedle1\n", 5, true)
    term:line("'other'")
    term:waitFor("\nother\n", 5, true)
    term:keys("C-r")
    term:type("need")
    -- Before, libedit's search read EAGAIN from the non-blocking terminal
    -- as end of input, and the line became "<\4>".
    term:waitFor("\n> 'needle' .. 1\nbck:need", 5, true)
    term:keys("Enter")
    term:waitFor("> 'other'\nother\n> 'needle' .. 1\nneedle1\n", 5, true)
    local screen = term:screen()
    term:stop()
    os.execute("(sleep 1; rm -rf " .. home .. ") &")
    assert.not_matches("<\\4>", screen, 1, true)
  end)
end)
