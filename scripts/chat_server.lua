-- scripts/chat_server.lua: a line-based chat server: each line a client
-- sends goes to every other client, as "<name> line". Follows the chat
-- example of Twisted's documentation (LineReceiver and a shared dict).
--
--   build/spindle scripts/chat_server.lua [PORT] [--timeout S]
--
-- PORT defaults to 8123 (0 picks a free one); it prints
-- "chat server listening on 127.0.0.1:PORT". Try it with two terminals:
--
--   nc 127.0.0.1 8123          (first line: your name; then chat)
--   socat - TCP:127.0.0.1:8123
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local basic = require("spindle.basic")

local port, timeout = 8123, nil
local i = 1
while arg[i] do
  if arg[i] == "--timeout" then i = i + 1; timeout = tonumber(arg[i])
  else port = assert(math.tointeger(tonumber(arg[i])), "bad port: " .. arg[i])
  end
  i = i + 1
end

--- Chat: one per client; lines are cut by spindle.basic.LineReceiver.
-- The delimiter is "\n" so that nc works; a "\r" before it is dropped.
-- A line longer than MAX_LENGTH drops the client (LineReceiver's
-- lineLengthExceeded), so nobody can grow our memory.
local Chat = basic.LineReceiver:extend({})
Chat.delimiter = "\n"

function Chat:connectionMade()
  self:sendLine("What's your name?\r")
end

function Chat:lineReceived(line)
  local users = self.factory.users
  line = line:gsub("\r$", "")
  if self.name == nil then
    if line == "" or users[line] then
      self.transport:write("Name taken, please choose another.\r\n")
      return
    end
    self.name = line
    users[line] = self
    self.transport:write("Welcome, " .. line .. "!\r\n")
    return
  end
  local message = "<" .. self.name .. "> " .. line .. "\r\n"
  for name, other in pairs(users) do
    if name ~= self.name then other.transport:write(message) end
  end
end

function Chat:connectionLost(reason) -- luacheck: ignore reason
  if self.name then self.factory.users[self.name] = nil end
end

local factory = protocol.Factory.forProtocol(Chat)
factory.users = {}

local listening = reactor.listenTCP(port, factory, nil, "127.0.0.1")
print("chat server listening on 127.0.0.1:" .. listening:getHost().port)
io.stdout:flush()
if timeout then reactor.callLater(timeout, reactor.stop) end
reactor.run()
