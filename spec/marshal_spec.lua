-- Copying values between Lua states (runtime/marshal.c), through the test
-- hook spindle._marshal.roundtrip: the values go into a fresh Lua state
-- (standard libraries and spindle.failure, as a pool thread has) and come
-- back, or with "call" first are called there and their results come back.
local H = require("spec.support.helper")
local marshal = require("spindle._marshal")
local failure = require("spindle.failure")
local threads = require("spindle.threads")

local roundtrip = marshal.roundtrip

describe("marshal", function()
  describe("functions sent again", function()
    it("finds modules among the upvalues of a function packed before",
      function()
        -- A function packed once is not looked up among module fields
        -- again; its upvalues (a module, a function using one) still are,
        -- and the index they use must stay on the stack (it once landed
        -- in a frame that popped it: a crash on the second pack).
        local up, rep, concat = string.upper, string.rep, table.concat
        local function helper(s) return up(s) .. #concat({"a", "b"}) end
        local function f() return helper("x"), rep("y", 2) end
        for _ = 1, 3 do
          assert.are.same({"X2", "yy"}, {roundtrip("call", f)})
        end
      end)
  end)

  describe("plain values", function()
    it("copies nil, booleans, integers, floats and strings", function()
      local n, a, b, c, d, e, f, g = select("#", roundtrip(nil, true, false,
        42, 1.5, "x\0y", math.mininteger, nil)),
        roundtrip(nil, true, false, 42, 1.5, "x\0y", math.mininteger, nil)
      assert.are.equal(8, n)
      assert.is_nil(a)
      assert.is_true(b)
      assert.is_false(c)
      assert.are.equal(42, d)
      assert.are.equal(math.type(42), math.type(d))
      assert.are.equal(1.5, e)
      assert.are.equal("x\0y", f)
      assert.are.equal(math.mininteger, g)
    end)

    it("keeps the float subtype of whole floats", function()
      local x = roundtrip(2.0)
      assert.are.equal("float", math.type(x))
    end)
  end)

  describe("tables", function()
    it("copies nested tables by value", function()
      local t = {1, 2, {x = "y", [true] = 3}, a = {b = {c = "deep"}}}
      local r = roundtrip(t)
      assert.are_not.equal(t, r)
      assert.are.same(t, r)
    end)

    it("keeps shared references and cycles", function()
      local shared = {v = 1}
      local t = {shared, shared, inner = {}}
      t.self = t
      t.inner.up = t
      local r = roundtrip(t)
      assert.are.equal(r, r.self)
      assert.are.equal(r, r.inner.up)
      assert.are.equal(r[1], r[2])
      assert.are.equal(1, r[1].v)
    end)

    it("keeps sharing across arguments", function()
      local s = {}
      local a, b = roundtrip(s, {s})
      assert.are.equal(a, b[1])
    end)

    it("copies metatables with the table", function()
      local mt = {__index = function(_, k) return k .. "!" end}
      local r = roundtrip(setmetatable({}, mt))
      assert.are.equal("hi!", r.hi)
    end)
  end)

  describe("functions", function()
    it("copies a function as bytecode and runs it there", function()
      local r = table.pack(roundtrip("call", function(x)
        return x * 2, string.format("%03d", x)
      end, 21))
      assert.are.same({n = 2, 42, "021"}, r)
    end)

    it("copies upvalues, shared ones kept shared", function()
      local n = 10
      local function inc() n = n + 1 return n end
      local function get() return n end
      local inc2, get2 = roundtrip(inc, get)
      assert.are.equal(11, inc2())
      assert.are.equal(12, inc2())
      assert.are.equal(12, get2())
      assert.are.equal(10, n)            -- the original is untouched
    end)

    it("copies recursive local functions", function()
      local function fact(k)
        if k <= 1 then return 1 end
        return k * fact(k - 1)
      end
      assert.are.equal(120, roundtrip("call", fact, 5))
    end)

    it("binds _ENV to the receiving state's globals", function()
      -- In the scratch state there is no spindle.reactor and no busted.
      local hasReactor, hasDescribe = roundtrip("call", function()
        return package.loaded["spindle.reactor"] ~= nil, describe ~= nil
      end)
      assert.is_false(hasReactor)
      assert.is_false(hasDescribe)
    end)

    it("sends modules and library functions by name", function()
      local format, strlib = string.format, string
      local r = roundtrip("call", function()
        return format("%d-%s", 7, strlib.rep("a", 2))
      end)
      assert.are.equal("7-aa", r)
    end)
  end)

  describe("errors", function()
    it("keeps built-in error types", function()
      local v = roundtrip(threads.TransferError("x"))
      assert.are.equal(threads.TransferError, getmetatable(v))
      assert.are.equal("TransferError: x", tostring(v))
    end)

    it("brings a user error type back as the same type", function()
      local MyError = failure.errorType("MyError")
      local v = roundtrip(MyError("boom"))
      assert.are.equal(MyError, getmetatable(v))
    end)

    it("copies a Failure with its traceback", function()
      local f = failure.Failure("oops")
      local r = roundtrip(f)
      assert.is_true(failure.isFailure(r))
      assert.are.equal("oops", r:getErrorMessage())
      assert.are.equal(f:getTraceback(), r:getTraceback())
    end)
  end)

  describe("TransferError", function()
    local TE = threads.TransferError

    it("names the argument and the path to a userdata", function()
      H.assertErrorType(TE, "arg #2 .conn", pcall(roundtrip, 1,
        {conn = io.stdout}))
      H.assertErrorType(TE, "arg #1 [3].x", pcall(roundtrip,
        {1, 2, {x = io.stdout}}))
      H.assertErrorType(TE, "userdata (FILE*)", pcall(roundtrip,
        {conn = io.stdout}))
    end)

    it("names upvalues on the path", function()
      local out = io.stdout
      H.assertErrorType(TE, "arg #1 upvalue 'out'", pcall(roundtrip,
        function() return out end))
    end)

    -- The path is written only when the error is raised, from where the
    -- pack was: keys, metatables and upvalues, through functions.
    it("writes the whole path, nested through keys, metatables and " ..
      "upvalues", function()
        local function message(...)
          local ok, e = pcall(roundtrip, ...)
          assert.is_false(ok)
          return tostring(e)
        end
        local out = io.stdout
        local f = function() return out end
        assert.matches(": arg #1 .a%[3%]%[\"x y\"%]%[true%]%[2.5%]$",
          message({a = {1, 2, {["x y"] = {[true] = {[2.5] = io.stdout}}}}}))
        assert.matches(": arg #1 <key>$", message({[io.stdout] = 1}))
        assert.matches(": arg #1 .t <metatable>.__index$",
          message({t = setmetatable({}, {__index = io.stdout})}))
        assert.matches(": arg #2 .k upvalue 'out'$", message(1, {k = f}))
        assert.matches(": arg #1 %[1%]%[<string>%]$",
          message({{[("z"):rep(50)] = io.stdout}}))
        -- Deeper than the message has room for: cut with "...".
        local t = {v = io.stdout}
        for _ = 1, 100 do t = {t} end
        local m = message(t)
        assert.matches(": arg #1 %[1%]%[1%]", m)
        assert.matches("%.%.%.$", m)
        assert.is_true(#m < 400)
      end)

    it("refuses coroutines and C functions that are no module's", function()
      H.assertErrorType(TE, "cannot copy thread", pcall(roundtrip,
        coroutine.create(print)))
      -- An iterator made by gmatch is a C closure of no module.
      H.assertErrorType(TE, "cannot copy C function", pcall(roundtrip,
        {iter = string.gmatch("a", "a")}))
    end)

    it("bounds the depth of nesting", function()
      local deep = {}
      local c = deep
      for _ = 1, 300 do c.a = {} c = c.a end
      H.assertErrorType(TE, "nested more than 200 levels deep",
        pcall(roundtrip, deep))
    end)
  end)
end)

describe("marshal of a module's metatable the receiver lacks", function()
  -- Regression (fuzz/marshal_bytes.c found lua_setmetatable given a
  -- non-table; spec/tcp_spec.lua's address through a thread met it): a
  -- table whose metatable is a field of a module the receiving state
  -- cannot require arrives without a metatable, instead of one made of
  -- the absent module's userdata (undefined behaviour).
  it("arrives as a plain table with its fields", function()
    local reactor = require("spindle.reactor")
    local protocol = require("spindle.protocol")
    local port = reactor.listenTCP(0, protocol.Factory.forProtocol(
      protocol.Protocol), nil, "127.0.0.1")
    local host = port:getHost()
    local r = roundtrip(host)
    H.wait(port:stopListening())
    assert.are.equal("127.0.0.1", r.host)
    assert.are.equal(host.port, r.port)
    assert.is_nil(getmetatable(r))
  end)
end)
