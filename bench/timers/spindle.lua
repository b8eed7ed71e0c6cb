-- bench/timers/spindle.lua N: N reactor.callLater timers, delays spread
-- over 0-99 ms; prints "spindle <seconds from the first callLater to the
-- last call>".
local reactor = require("spindle.reactor")
local n = tonumber(arg[1]) or 200000
local fired, t0 = 0, nil
local function tick()
  fired = fired + 1
  if fired == n then reactor.stop() end
end
reactor.callWhenRunning(function()
  t0 = reactor.seconds()
  for i = 1, n do reactor.callLater((i % 100) / 1000, tick) end
end)
reactor.run()
print(("spindle %.3f"):format(reactor.seconds() - t0))
