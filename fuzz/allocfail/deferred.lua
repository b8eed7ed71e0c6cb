-- fuzz/allocfail/deferred.lua: Deferred chains for tools/allocfail.sh
-- (callbacks, errbacks, a returned Deferred, inlineCallbacks, a
-- DeferredList, callLater); prints "done" when every step ran.
local reactor = require("spindle.reactor")
local defer = require("spindle.defer")

local d = defer.Deferred()
d:addCallback(function(x) return x + 1 end)
d:addCallback(function(x) error({x = x}) end)
d:addErrback(function(f)
  if type(f.value) ~= "table" then return f end -- a memory error goes on
  return f.value.x * 2
end)
d:addCallback(function(x)
  local inner = defer.Deferred()
  reactor.callLater(0, inner.callback, inner, x + 1)
  return inner
end)
local twice = defer.inlineCallbacks(function(x)
  local y = defer.await(defer.succeed(x))
  return y * 2
end)
d:addCallback(twice)
local list = defer.DeferredList({d, defer.succeed("b")})
list:addCallback(function(r)
  -- A memory error in a step reaches the list as a failed entry.
  assert(r[1][1] or tostring(r[1][2]):find("not enough memory"), r[1][2])
  assert(not r[1][1] or r[1][2] == 10, "wrong result")
  print(r[1][1] and "done" or tostring(r[1][2]))
  reactor.stop()
end)
reactor.callLater(2, reactor.stop)
reactor.callWhenRunning(d.callback, d, 1)
reactor.run()
