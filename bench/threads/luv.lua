-- bench/threads/luv.lua: the luv peer of bench/threads/spindle.lua: the
-- same tiny function on luv's thread pool (uv.new_work, work:queue), its
-- result back on the loop, WINDOW calls in flight.
-- Usage: lua5.4 bench/threads/luv.lua [seconds|-N calls]
-- Prints "luv <round trips/second> <calls>".
local uv = require("luv")

local arg1 = arg and arg[1] or "2"
local limit = tonumber(arg1)
local count = limit < 0 and -limit or math.huge
local seconds = limit < 0 and math.huge or limit
local WINDOW = 64
local done, sent, start = 0, 0, nil

local work
work = uv.new_work(function(x) return x + 1 end, function()
  done = done + 1
  if done >= count or uv.hrtime() / 1e9 - start >= seconds then return end
  sent = sent + 1
  work:queue(sent)
end)

start = uv.hrtime() / 1e9
for _ = 1, WINDOW do sent = sent + 1; work:queue(sent) end
uv.run()
print(("luv %.0f %d"):format(done / (uv.hrtime() / 1e9 - start), done))
