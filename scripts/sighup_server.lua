-- A server that reloads its configuration on SIGHUP, as daemons do: the
-- greeting it sends each client is read from a file, read again each
-- time the process gets SIGHUP (reactor.addSignalHandler; Twisted has no
-- public API for it). Given a file and a port it serves until stopped:
--
--   spindle scripts/sighup_server.lua greeting.txt 8000
--   kill -HUP <pid>                   (after editing greeting.txt)
--
-- Without arguments it shows itself: it writes a greeting file, serves on
-- a free port, connects once, rewrites the file, sends itself SIGHUP,
-- connects again, and stops.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local defer = require("spindle.defer")

local path, port = ...
local demo = path == nil

local function readGreeting(file)
  local f = assert(io.open(file))
  local s = f:read("l") or ""
  f:close()
  return s
end

local function writeFile(file, text)
  local f = assert(io.open(file, "w"))
  f:write(text, "\n")
  f:close()
end

if demo then
  path = os.tmpname()
  writeFile(path, "hello, version 1")
end

local greeting = readGreeting(path)

local Greeter = protocol.Protocol:extend()
function Greeter:connectionMade()
  self.transport:write(greeting .. "\n")
  self.transport:loseConnection()
end

local hup = reactor.addSignalHandler("HUP", function()
  greeting = readGreeting(path)
  print("SIGHUP: reloaded " .. (demo and "the greeting" or path))
end)

local listening = reactor.listenTCP(tonumber(port) or 0,
  protocol.Factory.forProtocol(Greeter), nil, "127.0.0.1")
if not demo then
  print(("serving on port %d; SIGHUP reloads %s"):format(
    listening:getHost().port, path))
  reactor.run()
  hup:remove()
  return
end

-- The demo: one client before the reload, one after.
local function fetch()
  local d = defer.Deferred()
  local buf = {}
  local Client = protocol.Protocol:extend()
  function Client:dataReceived(data) buf[#buf + 1] = data end
  function Client:connectionLost() d:callback(table.concat(buf)) end
  reactor.connectTCP("127.0.0.1", listening:getHost().port,
    protocol.ClientFactory.forProtocol(Client))
  return d
end

local main = defer.inlineCallbacks(function()
  io.write("client got: ", defer.await(fetch()))
  writeFile(path, "hello, version 2")
  local reloaded = defer.Deferred()
  local once = reactor.addSignalHandler("HUP", function()
    reloaded:callback()
  end)
  os.execute("kill -HUP " .. io.open("/proc/self/stat"):read("n"))
  defer.await(reloaded)
  once:remove()
  io.write("client got: ", defer.await(fetch()))
end)

main():addBoth(function(r)
  hup:remove()
  os.remove(path)
  listening:stopListening()
  reactor.stop()
  return r
end)
reactor.run()
