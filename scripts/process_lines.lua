-- A process runner: start a child (by default a small shell loop; or the
-- command given as arguments), stream its standard output through a
-- LineReceiver one line at a time, and report how it ended, as
-- Twisted's ProcessProtocol howto does with its child processes.
--
--   spindle scripts/process_lines.lua [command [args...]]
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local basic = require("spindle.basic")

local argv = {...}
if #argv == 0 then
  argv = {"sh", "-c", "for i in 1 2 3; do echo \"line $i\"; done; exit 2"}
end

-- The child's output, framed into lines by a LineReceiver.
local Lines = basic.LineReceiver:extend({delimiter = "\n"})

function Lines:__init() self.count = 0 end

function Lines:lineReceived(line)
  self.count = self.count + 1
  print(("%d: %s"):format(self.count, line))
end

local Runner = protocol.ProcessProtocol:extend()

function Runner:connectionMade()
  self.lines = Lines()
  self.transport:closeStdin() -- nothing to say to the child
end

function Runner:outReceived(data) self.lines:dataReceived(data) end

function Runner:errReceived(data) io.write("stderr: ", data) end

function Runner:processEnded(reason)
  local e = reason.value
  if e.signal then
    print(("%d lines; killed by signal %d"):format(self.lines.count, e.signal))
  else
    print(("%d lines; exit code %d"):format(self.lines.count, e.exitCode))
  end
  reactor.stop()
end

-- The child gets our environment (spawnProcess's default is an empty one).
reactor.spawnProcess(Runner(), argv[1], argv, reactor.environ())
reactor.run()
