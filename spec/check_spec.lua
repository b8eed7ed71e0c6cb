-- spindle.check: the argument checks of spindle's Lua modules, in Lua's
-- own wording, blaming the caller of the public function.
local check = require("spindle.check")
local defer = require("spindle.defer")
local task = require("spindle.task")


describe("check", function()
  it("words a type error as luaL_typeerror does", function()
    local function f(x) check.number(x, 1, "f") end
    local ok, err = pcall(f, nil)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'f' (number expected, got nil)", err,
      1, true)
  end)

  it("names a userdata by its metatable's __name", function()
    assert.equal("spindle.Deferred", check.typeName(defer.Deferred()))
    assert.equal("table", check.typeName({}))
  end)

  it("blames the line that called the public function", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(function() task.deferLater({}, 1) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'deferLater' (clock expected, got " ..
      "table)", err, 1, true)
    assert.equal(1, err:find(debug.getinfo(1, "S").short_src .. ":" ..
      line .. ":", 1, true), err)
  end)

  it("blames the caller through a class constructor", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(function() task.LoopingCall(42) end)
    assert.is_false(ok)
    assert.equal(1, err:find(debug.getinfo(1, "S").short_src .. ":" ..
      line .. ":", 1, true), err)
    assert.matches("bad argument #1 to 'LoopingCall' (callable expected, " ..
      "got number)", err, 1, true)
  end)

  it("tells NaN and negative numbers apart", function()
    local function f(x) check.nonNegative(x, 2, "f", "delay") end
    assert.has_error(function() f(0 / 0) end)
    local _, nan = pcall(f, 0 / 0)
    local _, neg = pcall(f, -1)
    assert.matches("(delay is NaN)", nan, 1, true)
    assert.matches("(delay must be >= 0)", neg, 1, true)
  end)

  it("accepts functions and tables with __call as callables", function()
    assert.is_true(check.isCallable(print))
    assert.is_true(check.isCallable(setmetatable({}, {__call = print})))
    assert.is_false(check.isCallable({}))
    assert.is_false(check.isCallable(nil))
  end)
end)

describe("check.where and check.locate", function()
  it("give the position of the caller's caller, as luaL_where", function()
    local function f()
      local w = check.where() -- not a tail call: f keeps its frame
      return w
    end
    local line = debug.getinfo(1, "l").currentline + 1
    local w = f()
    assert.equal(debug.getinfo(1, "S").short_src .. ":" .. line .. ": ", w)
    -- called by pcall (a C function): no position
    assert.equal("", select(2, pcall(check.where, 1)))
    local e = {message = "m"}
    local function g()
      local r = check.locate(e)
      return r
    end
    line = debug.getinfo(1, "l").currentline + 1
    local _ = g()
    assert.equal(debug.getinfo(1, "S").short_src .. ":" .. line .. ": m",
      e.message)
    assert.equal("s", check.locate("s"))
  end)
end)
