-- bench/threads/spindle.lua: thread pool round trips per second. A tiny
-- function (x + 1) goes to a pool thread by threads.deferToThread and its
-- result comes back on the loop, where the Deferred's callback sends the
-- next one; WINDOW calls are kept in flight.
-- Usage: build/spindle bench/threads/spindle.lua [seconds|-N calls]
-- Prints "spindle <round trips/second> <calls>".
local reactor = require("spindle.reactor")
local threads = require("spindle.threads")

local arg1 = arg and arg[1] or "2"
local limit = tonumber(arg1)
local count = limit < 0 and -limit or math.huge
local seconds = limit < 0 and math.huge or limit
local WINDOW = 64
local done, sent, start = 0, 0, nil

local function inc(x) return x + 1 end

local send
local function back(r)
  done = done + 1
  if done >= count or reactor.seconds() - start >= seconds then
    if done == sent then reactor.stop() end
    return r
  end
  send()
  return r
end

send = function()
  sent = sent + 1
  threads.deferToThread(inc, sent):addCallback(back)
end

reactor.callWhenRunning(function()
  start = reactor.seconds()
  for _ = 1, WINDOW do send() end
end)
reactor.run()
local elapsed = reactor.seconds() - start
print(("spindle %.0f %d"):format(done / elapsed, done))
