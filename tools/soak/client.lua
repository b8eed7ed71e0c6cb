-- tools/soak/client.lua SECONDS TCP TLS POOL CERTDIR: the load of make
-- soak (tools/soak.sh) against tools/soak/server.lua, for SECONDS: four
-- loops each of TCP echo, TLS echo and pool calls, every connection
-- closed after one exchange, so connections churn. An echo sends 1 byte
-- to 64 KiB and must get every byte back; a pool connection asks for
-- ten sums and checks them. Samples the server's RSS and descriptors
-- idle before the load, after a warm-up (a tenth of the run, at least
-- 5 s) and idle after it (1 s after the last connection closed, and
-- again each second, up to 10 s more, while the descriptors differ),
-- prints the counts and samples, and exits 1 on any error, a lost
-- byte, a descriptor left open or RSS grown by more than 32 MiB after
-- the warm-up.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local basic = require("spindle.basic")
local ssl = require("spindle.ssl")
local defer = require("spindle.defer")

local seconds = assert(tonumber(arg[1]))
local ports = {tcp = tonumber(arg[2]), tls = tonumber(arg[3]),
  pool = tonumber(arg[4])}
local dir = arg[5]
local LOOPS = 4
local counts = {connections = 0, sent = 0, echoed = 0, calls = 0,
  errors = 0}
local stopping = false
local samples = {}

local function fail(why)
  counts.errors = counts.errors + 1
  if counts.errors <= 10 then
    io.stderr:write("soak client: ", tostring(why), "\n")
  end
end

-- One echo exchange: send a random payload, wait for all of it, close.
local EchoClient = protocol.Protocol:extend({})
function EchoClient:connectionMade()
  local n = math.random(1, 65536)
  self.want = string.rep(string.char(math.random(0, 255)), n)
  self.got = {}
  self.len = 0
  counts.sent = counts.sent + n
  self.transport:write(self.want)
end
function EchoClient:dataReceived(data)
  self.got[#self.got + 1] = data
  self.len = self.len + #data
  if self.len >= #self.want then
    if table.concat(self.got) ~= self.want then fail("echo differs") end
    counts.echoed = counts.echoed + self.len
    self.ok = true
    self.transport:loseConnection()
  end
end
function EchoClient:connectionLost(reason)
  if not self.ok then fail("echo lost: " .. tostring(reason)) end
  self.factory.done:callback(nil)
end

local function sum(n) return n * (n + 1) // 2 end

local PoolClient = basic.LineReceiver:extend({delimiter = "\n"})
function PoolClient:connectionMade()
  self.asked = {}
  for i = 1, 10 do
    local n = math.random(1, 20000) * 10 + i -- ten different numbers
    self.asked[n] = true
    self:sendLine(tostring(n))
  end
  self.answers = 0
end
function PoolClient:lineReceived(line)
  if self.stats then
    self.stats:callback(line)
    return self.transport:loseConnection()
  end
  self.answers = self.answers + 1
  local n, r = line:match("^(%d+) (%d+)$")
  n, r = tonumber(n), tonumber(r)
  if not self.asked[n] or r ~= sum(n) then fail("wrong answer " .. line) end
  self.asked[n] = nil
  counts.calls = counts.calls + 1
  if self.answers == 10 then
    self.ok = true
    self.transport:loseConnection()
  end
end
function PoolClient:connectionLost(reason)
  if not self.ok and not self.stats then
    fail("pool lost: " .. tostring(reason))
  end
  if self.factory.done then self.factory.done:callback(nil) end
end

local clientTLS = ssl.optionsForClientTLS("localhost",
  {trustRoot = dir .. "/ca.crt"})

local function once(kind)
  local d = defer.Deferred()
  local factory = protocol.ClientFactory.forProtocol(kind == "pool" and
    PoolClient or EchoClient)
  factory.done = d
  function factory:clientConnectionFailed(_, reason)
    fail(kind .. " connect failed: " .. tostring(reason))
    d:callback(nil)
  end
  counts.connections = counts.connections + 1
  if kind == "tls" then
    reactor.connectSSL("127.0.0.1", ports.tls, factory, clientTLS)
  else
    reactor.connectTCP("127.0.0.1", ports[kind], factory)
  end
  return d
end

local running = 0
local function loop(kind)
  running = running + 1
  local function again()
    if stopping then
      running = running - 1
      return
    end
    once(kind):addCallback(again)
  end
  again()
end

-- Ask the server for "RSS_KB FDS".
local function sample(name)
  local d = defer.Deferred()
  local factory = protocol.ClientFactory.forProtocol(PoolClient)
  function factory.buildProtocol(f, addr)
    local p = protocol.ClientFactory.buildProtocol(f, addr)
    p.stats = d
    p.connectionMade = function(self) self:sendLine("stats") end
    return p
  end
  reactor.connectTCP("127.0.0.1", ports.pool, factory)
  return d:addCallback(function(line)
    local rss, fds = line:match("^(%d+) (%d+)$")
    samples[name] = {rss = tonumber(rss), fds = tonumber(fds)}
  end)
end

local function finish()
  local s = samples
  print(("soak: %d connections, %d bytes sent, %d echoed, %d pool calls," ..
    " %d errors"):format(counts.connections, counts.sent, counts.echoed,
    counts.calls, counts.errors))
  print(("soak: server RSS %d KiB idle, %d KiB after warm-up, %d KiB after" ..
    " the load (%+d KiB since warm-up); descriptors %d idle before," ..
    " %d idle after"):format(s.idle.rss, s.warm.rss, s.after.rss,
    s.after.rss - s.warm.rss, s.idle.fds, s.after.fds))
  -- Bounded: the load's steady state is reached at the warm-up sample;
  -- more than 32 MiB on top of it over the run is a leak.
  local ok = counts.errors == 0 and counts.sent == counts.echoed and
    s.after.fds == s.idle.fds and s.after.rss - s.warm.rss <= 32768
  local function done()
    print(ok and "soak: ok" or "soak: FAILED")
    reactor.stop()
    reactor.callWhenRunning(function() end)
    os.exit(ok and 0 or 1, true)
  end
  if s.after.fds == s.idle.fds then return done() end
  -- A descriptor count that does not match: show what the server holds.
  local Open = basic.LineReceiver:extend({delimiter = "\n"})
  function Open:connectionMade() self:sendLine("open") end
  function Open:lineReceived(line)
    if line == "end" then return self.transport:loseConnection() end
    print("soak: server " .. line:sub(3))
  end
  Open.connectionLost = done
  reactor.connectTCP("127.0.0.1", ports.pool,
    protocol.ClientFactory.forProtocol(Open))
end

reactor.callWhenRunning(function()
  math.randomseed(os.time())
  sample("idle"):addCallback(function()
    for _ = 1, LOOPS do
      loop("tcp")
      loop("tls")
      loop("pool")
    end
    reactor.callLater(math.max(5, seconds / 10), function()
      sample("warm")
    end)
    reactor.callLater(seconds, function()
      stopping = true
      local function drained()
        if running > 0 then return reactor.callLater(0.1, drained) end
        -- The server closes its side after the client's: give it a
        -- second, and up to ten more when a loaded machine delays it (a
        -- descriptor still open after that is left open).
        local tries = 0
        local function settled()
          if samples.after.fds == samples.idle.fds or tries == 10 then
            return finish()
          end
          tries = tries + 1
          print(("soak: %d descriptors idle after %d s; sampling again"):
            format(samples.after.fds, tries))
          reactor.callLater(1, function()
            sample("after"):addCallback(settled)
          end)
        end
        reactor.callLater(1, function()
          sample("after"):addCallback(settled)
        end)
      end
      drained()
    end)
  end)
end)
reactor.run()
