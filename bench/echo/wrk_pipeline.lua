-- wrk_pipeline.lua: wrk sends 16 requests per write (HTTP pipelining),
-- for bench/run.py's "HTTP pipelined" row.
-- luacheck: globals wrk init request
local req
function init()
  local r = {}
  for i = 1, 16 do r[i] = wrk.format(nil, "/") end
  req = table.concat(r)
end
function request() return req end
