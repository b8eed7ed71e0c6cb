-- spec/failure_spec.lua: spindle.failure (API.md, "spindle.failure").
local failure = require("spindle.failure")
local defer = require("spindle.defer")

local Failure = failure.Failure

-- A Failure made by raising `err` at a known line under the traceback
-- handler, as the Deferred runner does. Returns it and the line.
local function raised(err)
  local line
  local ok, f = xpcall(function()
    line = debug.getinfo(1, "l").currentline + 1
    error(err, 0)
  end, function(e) return Failure(e) end)
  assert(not ok)
  return f, line
end

describe("failure.Failure", function()
  it("keeps the value and its type", function()
    local E = defer.errorType("E")
    local e = E("msg")
    local f = Failure(e)
    assert.equal(e, f.value)
    assert.equal(E, f.type)
    local s = Failure("text")
    assert.equal("text", s.value)
    assert.equal("string", s.type)
    assert.equal("number", Failure(42).type)
  end)

  it("returns a Failure given a Failure", function()
    local f = Failure("x")
    assert.equal(f, Failure(f))
  end)

  it("takes a traceback string when given one", function()
    local f = Failure("x", "stack traceback:\n\tsomewhere:1: here")
    assert.matches("somewhere:1: here", f:getTraceback(), 1, true)
  end)

  it("refuses nil", function()
    assert.has_error(function() Failure(nil) end)
  end)

  it("refuses a traceback that is not a string", function()
    local ok, err = pcall(Failure, "x", 5)
    assert.is_false(ok)
    assert.matches("bad argument #2 to '.*Failure' %(string expected, " ..
      "got number%)", err)
    assert.is_false((pcall(Failure, "x", {})))
  end)

  it("is made with value nil for a raised nil (error())", function()
    local d = defer.maybeDeferred(function() error() end)
    local f = d.result
    d:addErrback(function() end)
    assert.is_true(failure.isFailure(f))
    assert.is_nil(f.value)
    assert.equal("nil", f.type)
    assert.equal("nil", f:getErrorMessage())
    assert.equal("[Failure instance: nil]", tostring(f))
    assert.matches("^nil\n", f:getTraceback())
  end)

  it("is recognised by isFailure", function()
    assert.is_true(failure.isFailure(Failure("x")))
    assert.is_false(failure.isFailure({}))
    assert.is_false(failure.isFailure("x"))
  end)
end)

describe("Failure:getErrorMessage", function()
  it("gives an error value's message and a string error itself", function()
    local E = defer.errorType("E")
    assert.equal("the message", Failure(E("the message")):getErrorMessage())
    assert.equal("plain", Failure("plain"):getErrorMessage())
    assert.equal("", Failure(E()):getErrorMessage())
  end)

  it("always gives a string, even when tostring of the error raises",
    function()
      local E = defer.errorType("E")
      local bad = setmetatable({}, {__tostring = function() error("no") end})
      local worse = setmetatable({}, {__tostring = function() return {} end})
      for _, v in ipairs({bad, worse, E(bad)}) do
        local f = Failure(v)
        assert.matches("^<table at 0x%x+ with tostring error: ",
          f:getErrorMessage())
        assert.matches("^%[Failure instance: <table at", tostring(f))
        assert.matches("^<table at", f:getTraceback())
      end
      assert.equal("42", Failure(42):getErrorMessage())
      assert.equal("true", Failure(true):getErrorMessage())
    end)
end)

describe("Failure:getTraceback", function()
  it("shows the error and the line that raised it", function()
    local f, line = raised("boom")
    local tb = f:getTraceback()
    assert.matches("^boom\n", tb)
    assert.matches("failure_spec.lua:" .. line .. ":", tb, 1, true)
  end)

  it("says when there are no frames", function()
    local f = Failure("x", nil)
    assert.is_string(f:getTraceback())
  end)
end)

describe("Failure:check", function()
  local Base = defer.errorType("Base")
  local Sub = defer.errorType("Sub", Base)
  local Other = defer.errorType("Other")

  it("matches the type and its parents, returning the first match", function()
    local f = Failure(Sub("x"))
    assert.equal(Sub, f:check(Sub))
    assert.equal(Base, f:check(Base))
    assert.equal(Base, f:check(Other, Base, Sub))
    assert.is_nil(f:check(Other))
    assert.is_nil(Failure(Base("x")):check(Sub))
  end)

  it("matches a string error with the type \"string\"", function()
    assert.equal("string", Failure("x"):check("string"))
    assert.is_nil(Failure("x"):check(Base))
  end)

  it("knows the built-in hierarchy", function()
    local reactorTypes = failure.builtinErrorTypes("reactor")
    local f = Failure(reactorTypes.ConnectionLost("gone"))
    assert.equal(reactorTypes.ConnectionClosed,
      f:check(reactorTypes.ConnectionClosed))
  end)
end)

describe("Failure:trap", function()
  local Base = defer.errorType("Base")
  local Sub = defer.errorType("Sub", Base)

  it("returns the first match", function()
    assert.equal(Base, Failure(Sub("x")):trap(Base))
  end)

  it("raises the same Failure object when nothing matches", function()
    local f = Failure(Base("x"))
    local ok, e = pcall(f.trap, f, Sub)
    assert.is_false(ok)
    assert.equal(f, e)
  end)

  it("lets an errback pass errors it does not handle", function()
    local d = defer.fail(Base("x"))
    d:addErrback(function(fl) fl:trap(Sub) return "handled" end)
    local seen
    d:addErrback(function(fl) seen = fl end)
    assert.equal(Base, seen.type)
  end)
end)

describe("Failure:raiseException", function()
  it("raises the original error value", function()
    local E = defer.errorType("E")
    local e = E("m")
    local ok, got = pcall(function() Failure(e):raiseException() end)
    assert.is_false(ok)
    assert.equal(e, got)
  end)
end)

describe("tostring(Failure)", function()
  it("names the error", function()
    local E = defer.errorType("MyError")
    assert.equal("[Failure instance: MyError: bad]",
      tostring(Failure(E("bad"))))
    assert.equal("[Failure instance: x]", tostring(Failure("x")))
  end)
end)

describe("failure.errorType", function()
  it("makes callable types whose values print as Name: message", function()
    local T = failure.errorType("Thing")
    local v = T("went wrong", {code = "E1"})
    assert.equal("Thing: went wrong", tostring(v))
    assert.equal("E1", v.code)
    assert.equal(T, getmetatable(v))
    assert.equal("<error type Thing>", tostring(T))
  end)

  it("refuses a parent that is not an error type", function()
    assert.has_error(function() failure.errorType("X", {}) end)
  end)
end)

describe("failure module", function()
  it("is strict", function()
    assert.has_error(function() return failure.Failur end,
      "failure has no field 'Failur' (did you mean 'Failure'?)")
  end)
end)

describe("failure.builtinErrorTypes", function()
  it("holds every built-in type, the ones the C parts expose included",
    function()
      local reactor = require("spindle.reactor")
      local basic = require("spindle.basic")
      local r = failure.builtinErrorTypes("reactor")
      for _, name in ipairs({"ConnectionAborted", "NotConnectingError",
          "InvalidAddressError", "MulticastJoinError", "CannotListenError",
          "ConnectionLost"}) do
        assert.is_not_nil(r[name], name)
        assert.are.equal(r[name], reactor[name], name)
        assert.are.equal(name, r[name].__name)
      end
      assert.are.equal(r.ConnectionLost, r.ConnectionAborted.__parent)
      assert.are.equal(r.ConnectionClosed, r.ConnectionLost.__parent)
      local b = failure.builtinErrorTypes("basic")
      assert.are.equal(basic.StringTooLongError, b.StringTooLongError)
    end)
end)
