-- luacheck configuration (make lint). Lua 5.4 everywhere; specs also see
-- busted's globals.
std = "lua54"
codes = true
max_line_length = 80
-- An implicit `self` (function T:m()) may go unused: protocol callbacks
-- are methods whether or not they use their object.
self = false

files["spec/"] = {std = "+busted"}

-- The base classes' empty or raising methods are the interfaces users
-- override: their argument names document what is passed, unused.
files["lua/spindle/protocol.lua"] = {
  ignore = {"212/data", "212/reason", "212/connector", "212/addr"},
}
files["lua/spindle/policies.lua"] = {ignore = {"212/addr"}}
files["scripts/examples/echoclient.lua"] = {ignore = {"212/connector"}}
files["lua/spindle/basic.lua"] = {
  ignore = {"212/line", "212/data", "212/s", "212/length"},
}
