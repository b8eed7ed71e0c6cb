-- bench/deferred_fail.lua: the cost of failing Deferreds (issue 7).
-- Usage: build/spindle bench/deferred_fail.lua heap <newer objects>
--   Make 1000 Deferreds, then <newer objects> live tables, then time
--   errback on the 1000. Failing must cost the same whatever the heap
--   holds. Prints "heap <newer> <seconds>".
-- Usage: build/spindle bench/deferred_fail.lua reverse <n>
--   Make n Deferreds, then time errback on each, newest first (each ends
--   holding its Failure, unhandled for now). Must grow linearly with n.
--   Prints "reverse <n> <seconds>".
-- Every failure is handled afterwards, so nothing is logged.
local Deferred = require("spindle.defer").Deferred

local mode, n = arg[1], tonumber(arg[2])
assert((mode == "heap" or mode == "reverse") and n,
  "usage: deferred_fail.lua heap|reverse <count>")

local function handled() end
local count = mode == "heap" and 1000 or n
local ds = {}
for i = 1, count do ds[i] = Deferred() end
local newer = {}
if mode == "heap" then
  for i = 1, n do newer[i] = {} end
end
local err = "failed"
local start = os.clock()
for i = count, 1, -1 do ds[i]:errback(err) end
local elapsed = os.clock() - start
for i = 1, count do ds[i]:addErrback(handled) end
assert(#newer == (mode == "heap" and n or 0))
print(("%s %d %.4f"):format(mode, n, elapsed))
