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

  it("prints spindle, Lua, libuv and OpenSSL versions with -v", function()
    local r = run({"-v"})
    assert.equal(0, r.status)
    assert.matches("^spindle %d+%.%d+%.%d+ %(Lua 5%.4%.%d+, libuv 1%.%d+%.%d+, "
      .. "OpenSSL 3[^)]*%)\n$", r.stdout)
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
