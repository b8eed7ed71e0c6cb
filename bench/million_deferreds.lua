-- bench/million_deferreds.lua: make and fire a million Deferreds (with
-- callbacks, errbacks, chained inner Deferreds and some left failed for
-- the unhandled-error log), for leak checks:
--   valgrind --leak-check=full build/spindle bench/million_deferreds.lua
-- Usage: spindle bench/million_deferreds.lua [count]
local defer = require("spindle.defer")
local log = require("spindle.log")

local N = tonumber(arg and arg[1]) or 1000000
local Deferred = defer.Deferred

-- Keep the unhandled-error log quiet but counted.
local unhandled = 0
for _, o in ipairs(log.observers()) do log.removeObserver(o) end
log.addObserver(function(e)
  if e.why == "Unhandled error in Deferred:" then unhandled = unhandled + 1 end
end)

local function inc(x, step) return x + (step or 1) end
local sum = 0
for i = 1, N do
  local d = Deferred()
  d:addCallback(inc):addCallback(inc, 2)
  if i % 10 == 0 then
    local inner = Deferred()
    d:addCallback(function() return inner end)
    d:callback(i)
    inner:callback(1)
  elseif i % 1000 == 1 then
    d:addCallback(function() error("left unhandled") end)
    d:callback(i)
  else
    d:addErrback(function() return 0 end)
    d:callback(i)
  end
  sum = sum + (tonumber(d.result) or 0)
end
collectgarbage()
collectgarbage()
print(("%d Deferreds fired, sum %d, %d unhandled errors logged")
  :format(N, sum, unhandled))
