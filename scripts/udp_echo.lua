--- scripts/udp_echo.lua: the tutorial's UDP Echo server (a DatagramProtocol
-- whose startProtocol prints the time and ": started"), echoing every
-- datagram back to its sender.
--
--   spindle scripts/udp_echo.lua [port [seconds]]
--
-- port defaults to 8007 (0 picks a free port and prints it); with seconds
-- the server stops by itself after that long, otherwise run it until
-- Ctrl-C. Try it from another terminal with
--
--   socat - UDP:127.0.0.1:8007      (type a line, see it come back)
--   nc -u 127.0.0.1 8007
--
-- Twisted original:
--   class Echo(DatagramProtocol):
--       def startProtocol(self):
--           print(datetime.datetime.now(), ": started")
--   reactor.listenUDP(8007, Echo()); reactor.run()
local reactor = require("spindle.reactor")
local DatagramProtocol = require("spindle.protocol").DatagramProtocol

local port = tonumber(arg[1] or "8007")
local seconds = tonumber(arg[2] or "")
if port == nil or math.type(port) ~= "integer" then
  io.stderr:write("usage: spindle scripts/udp_echo.lua [port [seconds]]\n")
  os.exit(2)
end

io.stdout:setvbuf("line")

-- data as a quoted string, control bytes escaped ("hi\n").
local escapes = {["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
  ['"'] = '\\"', ["\\"] = "\\\\"}
local function quote(data)
  return '"' .. data:gsub('[%c"\\]', function(c)
    return escapes[c] or ("\\x%02x"):format(c:byte())
  end) .. '"'
end

local Echo = DatagramProtocol:extend({__name = "Echo"})

function Echo:startProtocol()
  print(os.date("%Y-%m-%d %H:%M:%S") .. " : started")
end

function Echo:datagramReceived(data, addr)
  print(("received %s from %s:%d"):format(quote(data), addr.host, addr.port))
  self.transport:write(data, addr)
end

local listening = reactor.listenUDP(port, Echo())
if port == 0 then
  print("listening on UDP port " .. listening:getHost().port)
end
if seconds then reactor.callLater(seconds, reactor.stop) end
reactor.run()
