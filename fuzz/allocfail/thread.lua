-- fuzz/allocfail/thread.lua: a thread call for tools/allocfail.sh (a
-- function with an upvalue and a table argument to a pool thread, which
-- calls back into the main thread); prints "done" with the result.
local reactor = require("spindle.reactor")
local threads = require("spindle.threads")

local k = 2
local d = threads.deferToThread(function(t)
  local r = require("spindle.reactor")
  r.callFromThread(function() end)
  return t.a * k
end, {a = 21})
d:addCallback(function(v)
  assert(v == 42, "wrong result")
  print("done")
  reactor.stop()
end)
d:addErrback(function(f) print(f) reactor.stop() end)
reactor.callLater(2, reactor.stop)
reactor.run()
