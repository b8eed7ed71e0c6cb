-- scripts/defer_chaindeferred.lua: the seed tutorial's chainDeferred
-- snippet, D1:chainDeferred(D2): firing D1 runs D2's callbacks too, but
-- firing D2 does not touch D1 (chaining is one way).
local defer = require("spindle.defer")

local D1 = defer.Deferred()
local D2 = defer.Deferred()
D1:addCallback(function(r) print("D1 got " .. r); return r end)
D2:addCallback(function(r) print("D2 got " .. r); return r end)
D1:chainDeferred(D2) -- firing D1 fires D2's chain as well
D1:callback("hello")
print("D1 called: " .. tostring(D1.called) ..
  ", D2 called: " .. tostring(D2.called))

local D3 = defer.Deferred()
local D4 = defer.Deferred()
D3:addCallback(function(r) print("D3 got " .. r) end)
D3:chainDeferred(D4)
D4:callback("direct") -- D4 fired alone: D3 stays unfired
print("D3 called: " .. tostring(D3.called) ..
  ", D4 called: " .. tostring(D4.called))
