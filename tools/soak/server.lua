-- tools/soak/server.lua CERTDIR: the process make soak loads (tools/soak.sh).
-- Listens on 127.0.0.1, free ports, and prints "ports TCP TLS POOL":
--   TCP  echo;  TLS  echo over TLS (CERTDIR/server.key, server.crt);
--   POOL lines: "N" -> "N SUM", SUM = 1 + ... + N computed on a pool
--        thread (answers come in the order the threads finish);
--        "stats" -> "RSS_KB FDS" of this process (from /proc).
-- Runs until SIGTERM (reactor.stop), then exits 0.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local basic = require("spindle.basic")
local ssl = require("spindle.ssl")
local threads = require("spindle.threads")

local dir = assert(arg[1], "usage: server.lua CERTDIR")

local Echo = protocol.Protocol:extend({})
function Echo:dataReceived(data) self.transport:write(data) end

local function stats()
  local f = assert(io.open("/proc/self/status"))
  local rss = f:read("a"):match("VmRSS:%s*(%d+)")
  f:close()
  f = assert(io.open("/proc/self/stat"))
  local pid = f:read("a"):match("^(%d+)")
  f:close()
  local p = assert(io.popen("ls /proc/" .. pid .. "/fd | wc -l"))
  -- The pipe to ls is one of the descriptors counted.
  local fds = tonumber(p:read("a")) - 1
  p:close()
  return rss .. " " .. fds
end

local function sum(n)
  local s = 0
  for i = 1, n do s = s + i end
  return s
end

local Pool = basic.LineReceiver:extend({delimiter = "\n"})
function Pool:lineReceived(line)
  if line == "stats" then return self:sendLine(stats()) end
  if line == "open" then -- what is open, when a count does not match
    local f = assert(io.open("/proc/self/stat"))
    local pid = f:read("a"):match("^(%d+)")
    f:close()
    local p = assert(io.popen("ls -l /proc/" .. pid .. "/fd"))
    local fds = p:read("a")
    p:close()
    local text = require("spindle.inspect").connectionsText() .. "\n" .. fds
    for l in text:gmatch("[^\n]+") do self:sendLine("| " .. l) end
    return self:sendLine("end")
  end
  local n = tonumber(line)
  threads.deferToThread(sum, n):addCallbacks(function(r)
    self:sendLine(n .. " " .. r)
  end, function(f)
    io.stderr:write("soak server: pool error: ", tostring(f), "\n")
    self.transport:loseConnection()
  end)
end

local tcp = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), nil,
  "127.0.0.1")
local tls = reactor.listenSSL(0, protocol.Factory.forProtocol(Echo),
  ssl.DefaultOpenSSLContextFactory(dir .. "/server.key",
    dir .. "/server.crt"), nil, "127.0.0.1")
local pool = reactor.listenTCP(0, protocol.Factory.forProtocol(Pool), nil,
  "127.0.0.1")
print(("ports %d %d %d"):format(tcp:getHost().port, tls:getHost().port,
  pool:getHost().port))
io.stdout:flush()
reactor.run()
