-- The spindle binary: the standalone `lua` command's command line.
local process = require("spec.support.process")
local run = process.run

describe("spindle binary", function()
  it("runs a script with its arguments in arg and ...", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("print(arg[0] == ..., select('#', ...), arg[1], arg[2], ...)\n")
    f:close()
    local r = run({path, "a", "b"})
    os.remove(path)
    assert.equal(0, r.status)
    assert.equal("false\t2\ta\tb\ta\tb\n", r.stdout)
  end)

  it("puts the interpreter and options at negative arg indices", function()
    local r = run({"-e", "x=1", "-e", "print(arg[-1], arg[-2], arg[-4])", "-"},
      {stdin = "print(arg[0])"})
    assert.equal(0, r.status)
    assert.equal("print(arg[-1], arg[-2], arg[-4])\t-e\t-e\n-\n", r.stdout)
  end)

  -- Before: libuv's epoll descriptor took number 0 and uv__close
  -- asserted at exit (SIGABRT, status 134); a socket could take 1.
  it("runs with standard input, output and error closed, each on " ..
    "/dev/null", function()
      local out = os.tmpname()
      local code = ([[
local r = require("spindle.reactor")
r.callLater(0.05, r.stop)
r.run()
local f = assert(io.open("/proc/self/stat"))
local pid = f:read("a"):match("^(%%d+)")
f:close()
local p = assert(io.popen("readlink /proc/" .. pid .. "/fd/0 " ..
  "/proc/" .. pid .. "/fd/1 /proc/" .. pid .. "/fd/2"))
local links = p:read("a")
p:close()
print("not seen")
f = assert(io.open(%q, "w"))
f:write(links)
f:close()]]):format(out)
      local ok, how, status = os.execute(("%s -e %s <&- >&- 2>&-"):format(
        process.quote(process.bin), process.quote(code)))
      local f = assert(io.open(out))
      local links = f:read("a")
      f:close()
      os.remove(out)
      assert.same({true, "exit", 0}, {ok, how, status})
      assert.equal("/dev/null\n/dev/null\n/dev/null\n", links)
    end)

  it("runs -e chunks in order", function()
    local r = run({"-e", "x = 40", "-e", "print(x + 2)"})
    assert.equal(0, r.status)
    assert.equal("42\n", r.stdout)
  end)

  it("loads -l modules into globals, with g=mod naming the global", function()
    local r = run({"-l", "spindle.failure", "-l", "F=spindle.failure",
      "-e", "print(rawequal(F, require('spindle.failure')))"})
    assert.equal(0, r.status)
    assert.equal("true\n", r.stdout)
  end)

  it("prints one -v line ending with Lua's own banner", function()
    local r = run({"-v"})
    assert.equal(0, r.status)
    assert.matches("^spindle %d+%.%d+%.%d+ %(libuv 1%.%d+%.%d+, "
      .. "OpenSSL 3[^)]*%) Lua 5%.4%.%d+  Copyright %(C%) 1994%-%d+ "
      .. "Lua%.org, PUC%-Rio\n$", r.stdout)
  end)

  it("executes standard input with -", function()
    local r = run({"-"}, {stdin = "io.write('from stdin')"})
    assert.equal(0, r.status)
    assert.equal("from stdin", r.stdout)
  end)

  it("executes standard input when it is not a terminal", function()
    local r = run({}, {stdin = "print(6 * 7)"})
    assert.equal(0, r.status)
    assert.equal("42\n", r.stdout)
  end)

  it("stops handling options after --", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("print(...)\n")
    f:close()
    local r = run({"--", path, "-e", "x"})
    os.remove(path)
    assert.equal(0, r.status)
    assert.equal("-e\tx\n", r.stdout)
  end)

  it("exits 1 with the message and a traceback on an uncaught error", function()
    local r = run({"-e", "local function boom() error('kaput') end boom()"})
    assert.equal(1, r.status)
    assert.matches("kaput", r.stderr)
    assert.matches("stack traceback:", r.stderr)
    assert.matches("in local 'boom'", r.stderr)
  end)

  it("prints an uncaught Failure with its traceback", function()
    local r = run({"-e",
      "local F = require('spindle.failure') " ..
      "error(F.Failure(F.errorType('MyError')('bad thing')))"})
    assert.equal(1, r.status)
    assert.matches("MyError: bad thing", r.stderr)
  end)

  it("honours os.exit(n) as lua does", function()
    assert.equal(3, run({"-e", "os.exit(3)"}).status)
    assert.equal(0, run({"-e", "os.exit(true)"}).status)
    assert.equal(1, run({"-e", "os.exit(false)"}).status)
  end)

  it("rejects unknown options with usage", function()
    local r = run({"-Q"})
    assert.equal(1, r.status)
    assert.matches("unrecognized option '%-Q'", r.stderr)
    assert.matches("usage:", r.stderr)
  end)

  it("reports a missing script", function()
    local r = run({"/nonexistent/script.lua"})
    assert.equal(1, r.status)
    assert.matches("cannot open /nonexistent/script.lua", r.stderr)
  end)

  it("turns warnings on with -W", function()
    local r = run({"-W", "-e", "warn('careful')"})
    assert.equal(0, r.status)
    assert.matches("Lua warning: careful", r.stderr)
  end)

  it("runs LUA_INIT unless -E is given", function()
    local init = {env = {LUA_INIT = "INITED = 'yes'"}}
    local r = run({"-e", "print(INITED)"}, init)
    assert.equal("yes\n", r.stdout)
    r = run({"-E", "-e", "print(INITED)"}, init)
    assert.equal("nil\n", r.stdout)
  end)

  it("loads spindle modules from the binary in any folder", function()
    local r = run({"-e", "print(type(require('spindle.protocol').Protocol))"},
      {cwd = "/"})
    assert.equal(0, r.status)
    assert.equal("table\n", r.stdout)
  end)

  it("prefers SPINDLE_LUA_PATH over the compiled-in modules", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. "/spindle"))
    local f = assert(io.open(dir .. "/spindle/class.lua", "w"))
    f:write("return {overridden = true}\n")
    f:close()
    local r = run({"-e", "print(require('spindle.class').overridden)"},
      {env = {SPINDLE_LUA_PATH = dir .. "/?.lua"}})
    os.execute("rm -rf " .. dir)
    assert.equal("true\n", r.stdout)
  end)
end)

describe("strict modules", function()
  it("name the missing field and suggest the closest one", function()
    local protocol = require("spindle.protocol")
    local ok, err = pcall(function() return protocol.Protcol end)
    assert.is_false(ok)
    assert.matches(
      "protocol has no field 'Protcol' %(did you mean 'Protocol'%?%)", err)
  end)

  it("match names whatever their case", function()
    local log = require("spindle.log")
    local ok, err = pcall(function() return log.MSG end)
    assert.is_false(ok)
    assert.matches("did you mean 'msg'", err)
  end)

  it("suggest nothing when no name is close", function()
    local failure = require("spindle.failure")
    local ok, err = pcall(function() return failure.zzzzzzzzzzzz end)
    assert.is_false(ok)
    assert.matches("failure has no field 'zzzzzzzzzzzz'$", err)
  end)

  it("load the spindle table's modules lazily", function()
    local spindle = require("spindle")
    assert.equal(require("spindle.log"), spindle.log)
    local ok, err = pcall(function() return spindle.protocl end)
    assert.is_false(ok)
    assert.matches("did you mean 'protocol'", err)
  end)
end)

describe("spindle.class", function()
  local Object = require("spindle.class").Object

  it("makes subclasses whose instances inherit methods and __init", function()
    local A = Object:extend({__name = "A"})
    function A:__init(x) self.x = x end
    function A:get() return self.x end
    local B = A:extend()
    function B:get() return A.get(self) * 2 end
    local b = B(21)
    assert.equal(42, b:get())
    assert.is_true(A:isinstance(b))
    assert.is_false(B:isinstance(A(1)))
    assert.equal(A, B.super)
  end)

  it("inherits metamethods", function()
    local A = Object:extend({__tostring = function() return "an A" end})
    local B = A:extend()
    assert.equal("an A", tostring(B()))
  end)

  it("rejects a non-table for extend", function()
    assert.has_error(function() Object:extend(3) end,
      "bad argument #1 to 'extend' (table expected, got number)")
  end)
end)

describe("strict modules' dynamic fields", function()
  it("are read-only", function()
    local reactor = require("spindle.reactor")
    assert.has_error(function() reactor.running = true end,
      "reactor.running is read-only")
    assert.is_false(reactor.running)
  end)
end)

describe("spindle as a drop-in for lua", function()
  it("lists only lua's own places when require fails", function()
    local code = "package.path = '?.lua'; package.cpath = '?.so'; " ..
      "print(select(2, pcall(require, 'no_such_mod')))"
    local r = run({"-e", code})
    assert.equal(0, r.status)
    assert.equal("module 'no_such_mod' not found:\n" ..
      "\tno field package.preload['no_such_mod']\n" ..
      "\tno file 'no_such_mod.lua'\n\tno file 'no_such_mod.so'\n", r.stdout)
  end)

  it("lists only lua's own places when require fails in a pool thread",
    function()
    local code = "local t = require('spindle.threads') " ..
      "local r = require('spindle.reactor') " ..
      "print(r.runUntilComplete(t.deferToThread(function() " ..
      "package.path = '?.lua'; package.cpath = '?.so' " ..
      "return select(2, pcall(require, 'no_such_mod')) end)))"
    local r = run({"-e", code})
    assert.equal(0, r.status)
    assert.equal("module 'no_such_mod' not found:\n" ..
      "\tno field package.preload['no_such_mod']\n" ..
      "\tno file 'no_such_mod.lua'\n\tno file 'no_such_mod.so'\n", r.stdout)
  end)

  describe("-i with standard input that is not a terminal", function()
    it("prints prompts, echoes lines and prints results as lua -i", function()
      local r = run({"-e", "_PROMPT='P> ' _PROMPT2='C> '", "-i"},
        {stdin = "x = 1\nx\n=6*7\nfunction f()\nreturn 5 end\nf()\n"})
      assert.equal(0, r.status)
      local banner = r.stdout:match("^spindle [^\n]*\n")
      assert.truthy(banner)
      assert.equal("P> x = 1\nP> x\n1\nP> =6*7\n42\nP> function f()\n" ..
        "C> return 5 end\nP> f()\n5\nP> \n", r.stdout:sub(#banner + 1))
    end)

    it("uses the default prompts '> ' and '>> '", function()
      local r = run({"-i"}, {stdin = "if true then\nend\n"})
      assert.equal(0, r.status)
      assert.matches("\n> if true then\n>> end\n> \n$", r.stdout)
    end)

    it("prints through the global print", function()
      local r = run({"-i"}, {stdin = "print = nil\n1\n"})
      assert.matches("error calling 'print'", r.stderr)
    end)

    it("reads a line longer than 512 bytes whole, as readline does",
       function()
      -- Before: lua.c's 512-byte fgets split it, and each piece was
      -- compiled as a line of its own ("unfinished string").
      local r = run({"-i"},
        {stdin = "s = '" .. ("x"):rep(5000) .. "' print(#s)\n=#s\n"})
      assert.equal("", r.stderr)
      assert.matches("' print%(#s%)\n5000\n> =#s\n5000\n", r.stdout)
    end)

    it("reports errors without the program name and goes on", function()
      local r = run({"-i"}, {stdin = "error('boom')\n=2\n"})
      assert.matches("^stdin:1: boom", r.stderr)
      assert.matches("\n2\n", r.stdout)
    end)
  end)

  describe("SIGINT while a chunk runs outside the reactor", function()
    -- The shell runs spindle in the background, where SIGINT starts out
    -- ignored; the chunk touches a marker file, then spins until the
    -- signal raises "interrupted!" in it.
    local function interrupt(code)
      local marker = os.tmpname()
      os.remove(marker)
      local chunk = "local f = io.open(" .. string.format("%q", marker) ..
        ", 'w') f:close() " .. code
      -- The signal goes to spindle itself, once; a watchdog kills it
      -- after 20 s so that a lost signal fails the spec instead of
      -- hanging the suite.
      local cmd = process.quote(process.bin) ..
        " -e " .. process.quote(chunk) .. " & pid=$!; " ..
        "(sleep 20; kill -9 $pid) 2>/dev/null & dog=$!; " ..
        "while [ ! -e " .. marker .. " ]; do sleep 0.05; done; " ..
        "kill -INT $pid; wait $pid; rc=$?; kill $dog 2>/dev/null; " ..
        "echo rc=$rc"
      local p = assert(io.popen("sh -c " .. process.quote(cmd) .. " 2>&1"))
      local out = p:read("a")
      p:close()
      os.remove(marker)
      return out
    end

    it("raises interrupted! that pcall catches", function()
      local out = interrupt(
        "print(pcall(function() while true do end end)); print(42)")
      assert.matches("false\t[^\n]*interrupted!\n42\nrc=0\n$", out)
    end)

    it("still does after the reactor ran and stopped", function()
      local out = interrupt("local r = require('spindle.reactor') " ..
        "r.callLater(0, r.stop) r.run() " ..
        "print(pcall(function() while true do end end)); print(42)")
      assert.matches("interrupted!\n42\nrc=0\n$", out)
    end)
  end)
end)
