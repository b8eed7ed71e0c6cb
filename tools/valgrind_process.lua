-- A spindle program that exercises process.c, stdio.c, signals.c (spawns
-- cat, a missing program, a killed sleep, tty on a pty, 10 short children;
-- a SIGHUP handler; StandardIO on its stdin), for valgrind:
--   valgrind --leak-check=full --child-silent-after-fork=yes \
--     --error-exitcode=9 build/spindle tools/valgrind_process.lua </etc/hostname
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local utils = require("spindle.utils")
local defer = require("spindle.defer")
local stdio = require("spindle.stdio")
local P = protocol.ProcessProtocol:extend()
local function run(exe, args, pty, onMade)
  local p = P()
  p.d = defer.Deferred()
  p.out = {}
  function p:connectionMade() if onMade then onMade(self) end end
  function p:childDataReceived(fd, d) self.out[#self.out+1] = d end
  function p:processEnded(r) self.d:callback({tostring(r.value), table.concat(self.out)}) end
  reactor.spawnProcess(p, exe, args, nil, nil, nil, nil, pty)
  return p.d
end
local main = defer.inlineCallbacks(function()
  local r = defer.await(run("cat", {"cat"}, false, function(p) p.transport:write(string.rep("x", 300000)) p.transport:closeStdin() end))
  print(#r[2], r[1])
  print(defer.await(run("/nonexistent", {"x"}))[1])
  print(defer.await(run("sleep", {"sleep", "5"}, false, function(p) p.transport:signalProcess("KILL") end))[1])
  print(defer.await(run("tty", {"tty"}, true))[2])
  print(defer.await(utils.getProcessOutput("echo", {"hi"})))
  local ds = {}
  for i = 1, 10 do ds[i] = run("true", {"true"}, i % 2 == 0) end
  defer.await(defer.gatherResults(ds))
  local got = defer.Deferred()
  local h = reactor.addSignalHandler("HUP", function() got:callback() end)
  os.execute("kill -HUP " .. io.open("/proc/self/stat"):read("n"))
  defer.await(got)
  h:remove()
  local lost = defer.Deferred()
  local E = protocol.Protocol:extend()
  function E:dataReceived(d) self.transport:write(d) end
  function E:connectionLost() lost:callback() end
  stdio.StandardIO(E())
  defer.await(lost)
end)
main():addBoth(function(r) print("done", r) reactor.stop() end)
reactor.run()
