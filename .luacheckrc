-- luacheck configuration (make lint). Lua 5.4 everywhere; specs also see
-- busted's globals.
std = "lua54"
codes = true
max_line_length = 80
-- An implicit `self` (function T:m()) may go unused: protocol callbacks
-- are methods whether or not they use their object.
self = false

files["spec/"] = {std = "+busted"}
