-- Port of Twisted's stdiodemo.py: a line protocol on standard input and
-- output (StandardIO), with commands dispatched to do_* methods. Twisted's
-- `check <url>` fetches a web page; spindle has no HTTP client yet, so
-- `check <host> <port>` makes a TCP connection instead.
--
--   spindle scripts/stdiodemo.lua        (type help; quit or ^D ends it)
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local basic = require("spindle.basic")
local stdio = require("spindle.stdio")

local Console = basic.LineReceiver:extend({delimiter = "\n"})

local help = {
  help = "help [command]: List commands, or show help on the given command",
  quit = "quit: Quit this session",
  check = "check <host> <port>: Attempt to connect to the given TCP port",
}

function Console:connectionMade()
  self:sendLine("Web checker console. Type 'help' for help.")
end

function Console:lineReceived(line)
  local parts = {}
  for word in line:gmatch("%S+") do parts[#parts + 1] = word end
  if #parts == 0 then return end -- ignore blank lines
  local method = self["do_" .. parts[1]:lower()]
  if method == nil then
    self:sendLine("Error: no such command.")
    return
  end
  local ok, err = pcall(method, self, table.unpack(parts, 2))
  if not ok then self:sendLine("Error: " .. tostring(err)) end
end

function Console:do_help(command)
  if command then
    self:sendLine(assert(help[command], "no such command"))
  else
    local names = {}
    for name in pairs(help) do names[#names + 1] = name end
    table.sort(names)
    self:sendLine("Valid commands: " .. table.concat(names, " "))
  end
end

function Console:do_quit()
  self:sendLine("Goodbye.")
  self.transport:loseConnection()
end

function Console:do_check(host, port)
  local console = self
  local Probe = protocol.Protocol:extend()
  function Probe:connectionMade()
    console:sendLine("Success: connected to " ..
      tostring(self.transport:getPeer()))
    self.transport:loseConnection()
  end
  local f = protocol.ClientFactory.forProtocol(Probe)
  function f:clientConnectionFailed(_, reason)
    console:sendLine("Failure: " .. reason:getErrorMessage())
  end
  reactor.connectTCP(assert(host, "host expected"),
    assert(tonumber(port), "port expected"), f)
end

function Console:connectionLost()
  -- stop the reactor, only because this is meant to be run in Stdio.
  reactor.stop()
end

stdio.StandardIO(Console())
reactor.run()
