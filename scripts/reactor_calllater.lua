-- Lua twin of the seed tutorial's "结合Defer/reactor" example (Deferred with
-- reactor.callLater): two seconds after the reactor starts, the Deferred
-- fires with 5 and its callbacks print. Prints:
--   Square of 5 is 25
--   Twice of 5 is 10
-- The Python original never stops (reactor.run() waits for Ctrl-C); this
-- twin stops the reactor once the chain has run, so it exits by itself.
local reactor = require("spindle.reactor")
local defer = require("spindle.defer")

local function printSquare(d)
  print(string.format("Square of %d is %d", d, d * d))
  return d
end

local function printTwice(d)
  print(string.format("Twice of %d is %d", d, 2 * d))
  return d
end

local function makeDefer()
  local d = defer.Deferred()
  d:addCallback(printSquare)
  d:addCallback(printTwice)
  -- Python's reactor.callLater(2, d.callback, 5): in Lua the method takes
  -- its Deferred first.
  reactor.callLater(2, d.callback, d, 5)
  -- Not in the Python: stop once the chain has run, so that we exit.
  d:addCallback(function() reactor.stop() end)
end

makeDefer()
reactor.run()
