-- spec/support/helper.lua's after-each check: a test that leaves a
-- listening port open or a DelayedCall pending fails. The leaking specs
-- run in a child busted under the same spindle binary.
local H = require("spec.support.helper")

-- Run busted on one spec file's source; return its output and whether it
-- exited 0.
local function busted(source)
  local path = os.tmpname() .. "_spec.lua"
  local f = assert(io.open(path, "w"))
  f:write(source)
  f:close()
  local p = assert(io.popen(("busted --lua=%s %s 2>&1"):format(H.SPINDLE,
    path)))
  local out = p:read("a")
  local ok = p:close()
  os.remove(path)
  return out, ok
end

describe("the helper's after-each check", function()
  it("fails a test that leaves a listening port open", function()
    local out, ok = busted([[
      local H = require("spec.support.helper")
      it("leaks a port", function()
        H.reactor.listenTCP(0, require("spindle.protocol").Factory())
      end)
      it("is clean", function() end)
    ]])
    assert.is_falsy(ok, out)
    assert.matches("test 'leaks a port' left open handles: tcp 1", out, 1,
      true)
    assert.matches("2 successes / 0 failures / 1 error", out, 1, true)
  end)

  it("fails a test that leaves a DelayedCall pending, and cancels it",
    function()
      local out, ok = busted([[
        local H = require("spec.support.helper")
        it("leaks a call", function() H.reactor.callLater(60, print) end)
        it("sees none", function()
          assert.equal(0, #H.reactor.getDelayedCalls())
        end)
      ]])
      assert.is_falsy(ok, out)
      assert.matches("test 'leaks a call' left 1 pending DelayedCall(s) " ..
        "(cancelled)", out, 1, true)
      assert.matches("2 successes / 0 failures / 1 error", out, 1, true)
    end)

  it("passes a test that closes what it opened", function()
    local out, ok = busted([[
      local H = require("spec.support.helper")
      it("closes", function()
        local port = H.reactor.listenTCP(0,
          require("spindle.protocol").Factory())
        local dc = H.reactor.callLater(60, print)
        dc:cancel()
        H.wait(port:stopListening())
      end)
    ]])
    assert.is_truthy(ok, out)
    assert.matches("1 success / 0 failures / 0 errors", out, 1, true)
  end)
end)
