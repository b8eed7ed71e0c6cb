-- bench/timers/luv.lua N: the luv peer of timers/spindle.lua (one
-- uv.new_timer per call, closed when it fires).
local uv = require("luv")
local n = tonumber(arg[1]) or 200000
local fired = 0
local function tick(t)
  t:close()
  fired = fired + 1
end
local t0 = uv.hrtime()
for i = 1, n do
  local t = uv.new_timer()
  t:start(i % 100, 0, function() tick(t) end)
end
uv.run()
print(("luv %.3f"):format((uv.hrtime() - t0) / 1e9))
assert(fired == n)
