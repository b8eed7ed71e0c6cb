-- luacheck: globals init request req wrk
-- bench/web/pipeline.lua: a wrk script keeping 16 requests in flight on
-- each connection (sent as one write, answered in order).
local depth = 16

init = function()
  local r = {}
  for i = 1, depth do r[i] = wrk.format() end
  req = table.concat(r)
end

request = function()
  return req
end
