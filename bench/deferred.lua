-- bench/deferred.lua: chains per second of spindle's C Deferred.
-- A chain is: make a Deferred, add ten callbacks, fire it.
-- Usage: build/spindle bench/deferred.lua [seconds]
-- Prints "spindle-c <chains/second>".
local Deferred = require("spindle.defer").Deferred

local function inc(x) return x + 1 end

local function chain()
  local d = Deferred()
  d:addCallback(inc); d:addCallback(inc); d:addCallback(inc)
  d:addCallback(inc); d:addCallback(inc); d:addCallback(inc)
  d:addCallback(inc); d:addCallback(inc); d:addCallback(inc)
  d:addCallback(inc)
  d:callback(0)
  return d
end

local seconds = tonumber(arg and arg[1]) or 1
assert(chain().result == 10, "a chain must end with 10")
local n, batch, start = 0, 10000, os.clock()
repeat
  for _ = 1, batch do chain() end
  n = n + batch
until os.clock() - start >= seconds
print(("spindle-c %.0f"):format(n / (os.clock() - start)))
