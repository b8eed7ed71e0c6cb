-- reactor.addSignalHandler: real signals sent to this process (and to a
-- spindle child for the reactor's own SIGTERM stop).
local reactor = require("spindle.reactor")
local defer = require("spindle.defer")
local H = require("spec.support.helper")

local function mypid()
  local f = io.open("/proc/self/stat")
  local pid = f:read("n")
  f:close()
  return pid
end

local function kill(sig)
  os.execute("kill -" .. sig .. " " .. mypid())
end

describe("reactor.addSignalHandler", function()
  it("calls the handlers of SIGHUP on the loop thread, not removed ones",
    function()
      local d = defer.Deferred()
      local calls = {}
      local h1 = reactor.addSignalHandler("HUP", function(n)
        calls[#calls + 1] = "one " .. n
      end)
      local h2 = reactor.addSignalHandler("SIGHUP", function()
        calls[#calls + 1] = "removed"
      end)
      local h3 = reactor.addSignalHandler(1, function(n)
        calls[#calls + 1] = "three " .. n
        d:callback()
      end)
      assert.is_true(h2:active())
      h2:remove()
      h2:remove() -- idempotent
      reactor.callLater(0, kill, "HUP")
      H.wait(d)
      h1:remove()
      h3:remove()
      assert.same({"one 1", "three 1"}, calls) -- in the order added
      assert.is_false(h1:active())
    end)

  it("calls many handlers in the order added, skipping one removed by " ..
    "an earlier one", function()
      local d = defer.Deferred()
      local calls, hs = {}, {}
      for i = 1, 8 do
        hs[i] = reactor.addSignalHandler("USR1", function()
          calls[#calls + 1] = i
          if i == 2 then hs[3]:remove() end
          if i == 8 then d:callback() end
        end)
      end
      reactor.callLater(0, kill, "USR1")
      H.wait(d)
      for i = 1, 8 do hs[i]:remove() end
      assert.same({1, 2, 4, 5, 6, 7, 8}, calls)
    end)

  it("raises for unknown and uncatchable signals", function()
    assert.has_error(function() reactor.addSignalHandler("NOPE", print) end,
      "bad argument #1 to 'addSignalHandler' (unknown signal 'NOPE')")
    assert.has_error(function() reactor.addSignalHandler("KILL", print) end)
    assert.has_error(function() reactor.addSignalHandler("CHLD", print) end)
    assert.has_error(function() reactor.addSignalHandler("HUP", 3) end)
  end)

  it("keeps SIGTERM stopping the reactor when no handler is installed, " ..
    "and lets a handler take it", function()
      local out, _, code = H.runScript([[
        local reactor = require("spindle.reactor")
        local pid = io.open("/proc/self/stat"):read("n")
        reactor.addSystemEventTrigger("before", "shutdown", function()
          print("shutdown")
        end)
        local h
        h = reactor.addSignalHandler("TERM", function(n)
          print("handled " .. n)
          h:remove()
          os.execute("kill -TERM " .. pid) -- now the reactor's again
        end)
        reactor.callLater(0, os.execute, "kill -TERM " .. pid)
        reactor.callLater(10, print, "not stopped")
        reactor.run()
        print("stopped")
      ]])
      assert.equal("handled 15\nshutdown\nstopped\n", out)
      assert.equal(0, code)
    end)

  it("keeps SIGHUP from killing the process while a handler is installed",
    function()
      local out, _, code = H.runScript([[
        local reactor = require("spindle.reactor")
        local pid = io.open("/proc/self/stat"):read("n")
        local h = reactor.addSignalHandler("HUP", function()
          print("reload")
          reactor.stop()
        end)
        reactor.callLater(0, os.execute, "kill -HUP " .. pid)
        reactor.run()
        h:remove()
        print("done")
      ]])
      assert.equal("reload\ndone\n", out)
      assert.equal(0, code)
    end)
end)
