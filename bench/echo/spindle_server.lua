--- spindle_server.lua: the spindle side of bench/echo, run with
-- build/spindle. Listens on three ports of 127.0.0.1 picked by the kernel
-- and prints them as "ECHO <port>", "LINES <port>" and "HTTP <port>": an
-- echo Protocol, a LineReceiver answering each line with sendLine, and an
-- HTTP-shaped Protocol answering each request (up to "\r\n\r\n") with a
-- fixed 200 response, written as a user of API.md would write them.
-- Prints "UNAVAILABLE <what> <reason>" for a part the binary lacks (the
-- other parts still run). Runs until SIGTERM/SIGINT.
local function has(module, field)
  local ok, value = pcall(function() return module[field] end)
  return ok and value ~= nil
end

local okReactor, reactor = pcall(require, "spindle.reactor")
local protocol = require("spindle.protocol")

local function listen(P)
  local factory = protocol.Factory()
  factory.protocol = P
  return reactor.listenTCP(0, factory, 1024, "127.0.0.1"):getHost().port
end

if not (okReactor and has(reactor, "listenTCP")) then
  print("UNAVAILABLE ECHO build/spindle lacks listenTCP")
  print("UNAVAILABLE LINES build/spindle lacks listenTCP")
  os.exit(0)
end

local Echo = protocol.Protocol:extend({
  connectionMade = function(self) self.transport:setTcpNoDelay(true) end,
  dataReceived = function(self, data) self.transport:write(data) end,
})
print("ECHO " .. listen(Echo))

local okBasic, basic = pcall(require, "spindle.basic")
if okBasic and has(basic, "LineReceiver") then
  local Line = basic.LineReceiver:extend({
    connectionMade = function(self) self.transport:setTcpNoDelay(true) end,
    lineReceived = function(self, line) self:sendLine(line) end,
  })
  print("LINES " .. listen(Line))
else
  print("UNAVAILABLE LINES build/spindle lacks spindle.basic.LineReceiver")
end
local RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" ..
  "Content-Length: 13\r\n\r\nHello, world!"
local Http = protocol.Protocol:extend({
  connectionMade = function(self) self.transport:setTcpNoDelay(true) end,
  dataReceived = function(self, data)
    if self.tail then data = self.tail .. data end
    local n, pos = 0, 1
    while true do
      local _, e = data:find("\r\n\r\n", pos, true)
      if not e then break end
      n, pos = n + 1, e + 1
    end
    self.tail = pos <= #data and data:sub(math.max(pos, #data - 2)) or nil
    if n > 0 then self.transport:write(RESPONSE:rep(n)) end
  end,
})
print("HTTP " .. listen(Http))
io.stdout:flush()
reactor.run()
