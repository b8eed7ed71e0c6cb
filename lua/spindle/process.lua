--- spindle.process: reactor.spawnProcess and the Process transport, a part
-- of spindle.reactor (reactor.lua takes its fields), the policy on
-- spindle._process (runtime/process.c: uv_spawn, socketpairs, openpty).
-- Follows twisted.internet.process.Process, PTYProcess and
-- _baseprocess.BaseProcess.
--
-- Each child descriptor the parent talks to is a stream transport (the
-- TCP transport over a socketpair), driven by a small pipe protocol that
-- hands its bytes to processProtocol:childDataReceived(fd, data) and its
-- loss to childConnectionLost(fd). processEnded comes once the child has
-- exited and every pipe has closed. Loop thread only.
local C = require("spindle._process")
local Cloop = require("spindle._loop")
local Cdefer = require("spindle._defer")
local check = require("spindle.check")
local failure = require("spindle.failure")
local Object = require("spindle.class").Object

local errors = failure.builtinErrorTypes("reactor")
local errhandler = Cdefer.errhandler

local M = {}

local function logErr(f, why)
  require("spindle.log").err(f, why)
end

-- Call obj:name(...) protected; an error is logged (Twisted's log.err
-- around each protocol call of a process).
local function callLogged(obj, name, ...)
  local f = obj[name]
  if f == nil then return end
  local ok, err = xpcall(f, errhandler, obj, ...)
  if not ok then logErr(err, "Unhandled Error") end
end

-- The reason a child ended, as twisted _BaseProcess._getReason: exit code
-- 0 is ProcessDone, anything else ProcessTerminated; each carries
-- exitCode, signal and status (the wait status: code << 8, or the signal).
local function reasonFor(code, signal, detail, errcode)
  local e
  if signal == nil and code == 0 then
    e = errors.ProcessDone(
      "A process has ended without apparent errors: " ..
      "process finished with exit code 0.")
  else
    local s = "process ended"
    if signal == nil then
      s = s .. " with exit code " .. code
    else
      s = s .. " by signal " .. signal
      code = nil
    end
    if detail ~= nil then s = s .. " (" .. detail .. ")" end
    e = errors.ProcessTerminated(
      "A process has ended with a probable error condition: " .. s .. ".")
  end
  e.exitCode = code
  e.code = errcode
  e.signal = signal
  e.status = signal or (code or 0) << 8
  return failure.Failure(e)
end

--- Process: the transport of a ProcessProtocol (twisted Process).
-- Fields: `pid` (nil once the child ended), `status` (the wait status,
-- once ended), `pipes` ({[childFD] = transport}, the open ones).
local Process = Object:extend({__name = "Process"})

function Process:__tostring()
  return ("<Process pid=%s status=%s>"):format(tostring(self.pid),
    tostring(self.status))
end

-- The pipe that write() feeds: stdin, or the pty.
function Process:_inPipe()
  if self.usePTY then return self.pipes[1] end
  return self.pipes[0]
end

--- p:write(data): send data to the child's standard input (the pty with
-- usePTY), after what was written before; nothing once it is closed.
-- twisted Process.write.
function Process:write(data)
  check.string(data, 1, "write")
  local t = self:_inPipe()
  if t ~= nil then t:write(data) end
end

--- p:writeSequence(list): write each string of list to standard input.
function Process:writeSequence(list)
  check.table(list, 1, "writeSequence")
  local t = self:_inPipe()
  if t ~= nil then t:writeSequence(list) end
end

--- p:writeToChild(childFD, data): write data to the child's descriptor
-- childFD (one it reads: "w" in childFDs). Raises if there is no open
-- pipe to childFD. twisted Process.writeToChild.
function Process:writeToChild(childFD, data)
  check.number(childFD, 1, "writeToChild")
  check.string(data, 2, "writeToChild")
  local t = self.pipes[childFD]
  if t == nil then
    check.argError(1, "writeToChild", "no open pipe to child fd " ..
      tostring(childFD))
  end
  t:write(data)
end

--- p:closeChildFD(childFD): close the pipe to childFD once what was
-- written to it is sent (the child reads EOF on it).
-- twisted Process.closeChildFD.
function Process:closeChildFD(childFD)
  local t = self.pipes[childFD]
  if t ~= nil then t:loseConnection() end
end

--- p:closeStdin(), p:closeStdout(), p:closeStderr(): closeChildFD(0, 1,
-- 2). With usePTY they do nothing (as Twisted's PTYProcess): write "\4"
-- for end of file, or loseConnection().
function Process:closeStdin()
  if not self.usePTY then self:closeChildFD(0) end
end
--- p:closeStdout(): closeChildFD(1) (nothing with usePTY).
function Process:closeStdout()
  if not self.usePTY then self:closeChildFD(1) end
end
--- p:closeStderr(): closeChildFD(2) (nothing with usePTY).
function Process:closeStderr()
  if not self.usePTY then self:closeChildFD(2) end
end

--- p:loseConnection(): close stdin, stderr and stdout (the pty with
-- usePTY); the child is not signalled. twisted Process.loseConnection.
function Process:loseConnection()
  if self.usePTY then
    local t = self.pipes[1]
    if t ~= nil then t:loseConnection() end
    return
  end
  self:closeStdin()
  self:closeStderr()
  self:closeStdout()
end

--- p:signalProcess(sig): send sig ("TERM", "KILL", "INT", "HUP", any
-- other name with or without "SIG", or a number) to the child. Raises
-- reactor.ProcessExitedAlready once it has ended.
-- twisted Process.signalProcess.
function Process:signalProcess(sig)
  if type(sig) ~= "string" and math.type(sig) ~= "integer" then
    check.typeError(1, "signalProcess", "signal name or number", sig)
  end
  local sent, err = false, nil
  if self.pid ~= nil and self._handle ~= nil then
    sent, err = C.kill(self._handle, sig)
  end
  if sent == nil then
    check.argError(1, "signalProcess", err)
  elseif not sent then
    error(errors.ProcessExitedAlready(
      "The process has already exited and the operation requested can " ..
      "no longer be performed."), 2)
  end
end

--- p:registerProducer(producer, streaming), p:unregisterProducer(): a
-- producer feeding the child's standard input, paused while more than
-- 64 KiB wait (streaming) or asked for more as it drains (pull), as on a
-- TCP transport. twisted Process.registerProducer.
function Process:registerProducer(producer, streaming)
  local t = self:_inPipe()
  if t == nil then
    producer:stopProducing()
    return
  end
  t:registerProducer(producer, streaming)
end

--- p:unregisterProducer(): forget the standard input's producer.
function Process:unregisterProducer()
  local t = self:_inPipe()
  if t ~= nil then t:unregisterProducer() end
end

--- p:pauseProducing(), p:resumeProducing(): stop and restart reading
-- the child's output (flow control); p:stopProducing() loses the
-- connection. twisted Process.pauseProducing.
function Process:pauseProducing()
  for _, t in pairs(self.pipes) do t:pauseProducing() end
end

--- p:resumeProducing(): read the child's output again.
function Process:resumeProducing()
  for _, t in pairs(self.pipes) do t:resumeProducing() end
end

--- p:stopProducing(): loseConnection().
function Process:stopProducing()
  self:loseConnection()
end

--- p:getPeer(), p:getHost(): {type = "PROCESS"} (twisted _ProcessAddress).
function Process:getPeer() return {type = "PROCESS"} end
--- p:getHost() -> {type = "PROCESS"}, as getPeer.
function Process:getHost() return {type = "PROCESS"} end

-- twisted Process.maybeCallProcessEnded: once the child is reaped and no
-- pipe is open, processEnded, once.
function Process:_maybeEnded()
  if next(self.pipes) ~= nil or not self._exited then return end
  local proto = self.proto
  if proto == nil then return end
  self.proto = nil
  callLogged(proto, "processEnded", self._reason)
end

-- The child ended (exit code, signal or nil): twisted
-- _BaseProcess.processEnded.
function Process:_exit(code, signal, detail, errcode)
  self._reason = reasonFor(code, signal, detail, errcode)
  self.status = self._reason.value.status
  self._exited = true
  self.pid = nil
  self._handle = nil
  if self.proto ~= nil then
    callLogged(self.proto, "processExited", self._reason)
  end
  self:_maybeEnded()
end

-- A pipe closed: twisted Process.childConnectionLost.
function Process:_pipeLost(fd)
  self.pipes[fd] = nil
  if self.proto ~= nil and not self.usePTY then
    callLogged(self.proto, "childConnectionLost", fd)
  end
  self:_maybeEnded()
end

-- The protocol of one pipe: twisted ProcessReader / ProcessWriter.
local Pipe = Object:extend({__name = "ProcessPipe"})

function Pipe:__init(process, fd)
  self.process = process
  self.fd = fd
end

function Pipe:makeConnection(transport) self.transport = transport end

function Pipe:dataReceived(data)
  local proto = self.process.proto
  if proto ~= nil then proto:childDataReceived(self.fd, data) end
end

function Pipe:connectionLost()
  self.process:_pipeLost(self.fd)
end

local DEFAULT_FDS = {[0] = "w", [1] = "r", [2] = "r"}

--- reactor.spawnProcess(processProtocol, executable[, args][, env]
--   [, path][, uid][, gid][, usePTY][, childFDs]) -> Process
-- Start executable (found in the child's PATH, or /bin:/usr/bin, when it
-- has no slash) with args as its argv (args[1] is its argv[0]; default
-- {executable}). env: a table {NAME = value} for the child's whole
-- environment; nil gives an empty one, as Twisted does on POSIX: pass
-- reactor.environ() for ours (or a copy with changes). path: its working
-- folder (default ours). uid, gid: numbers to run as (root only).
-- usePTY: true gives the child a pseudo-terminal as 0, 1 and 2 (its
-- output arrives as childFD 1). childFDs: {[childFD] = "w" (we write,
-- the child reads) | "r" (the child writes, we read) | a descriptor of
-- ours the child inherits}; default {[0] = "w", [1] = "r", [2] = "r"};
-- child descriptors not named are closed (0-2 read /dev/null).
-- processProtocol:makeConnection(process) is called before this returns.
-- A child that cannot start (no such executable, permission) ends at
-- once as Twisted reports it: processExited and processEnded on the next
-- loop turn with ProcessTerminated, exitCode 1, whose message names the
-- error and whose `code` field is the libuv error name ("ENOENT").
-- Bad arguments raise. twisted IReactorProcess.spawnProcess.
function M.spawnProcess(pp, executable, args, env, path, uid, gid, usePTY,
                        childFDs)
  -- Checked before anything starts: a child spawned for a protocol that
  -- cannot take it would be left running.
  if (type(pp) ~= "table" and type(pp) ~= "userdata") or
      not check.isCallable(pp.makeConnection) then
    check.typeError(1, "spawnProcess", "process protocol", pp)
  end
  -- exec(2) takes C strings: a NUL byte would silently cut an argument,
  -- so it is refused here (as Node's spawn does).
  check.string(executable, 2, "spawnProcess")
  if executable:find("\0", 1, true) then
    check.argError(2, "spawnProcess", "NUL byte in executable")
  end
  if args ~= nil then
    check.table(args, 3, "spawnProcess")
    for i = 1, #args do
      if type(args[i]) ~= "string" then
        check.argError(3, "spawnProcess", "string expected at index " .. i)
      elseif args[i]:find("\0", 1, true) then
        check.argError(3, "spawnProcess", "NUL byte at index " .. i)
      end
    end
  end
  if env ~= nil then
    check.table(env, 4, "spawnProcess")
    for k, v in pairs(env) do
      if type(k) ~= "string" or type(v) ~= "string" then
        check.argError(4, "spawnProcess", "string names and values expected")
      elseif k == "" or k:find("[=%z]") then
        check.argError(4, "spawnProcess",
          "bad variable name " .. string.format("%q", k))
      elseif v:find("\0", 1, true) then
        check.argError(4, "spawnProcess", "NUL byte in the value of " .. k)
      end
    end
  end
  if path ~= nil then
    check.string(path, 5, "spawnProcess")
    if path:find("\0", 1, true) then
      check.argError(5, "spawnProcess", "NUL byte in path")
    end
  end
  if uid ~= nil then check.number(uid, 6, "spawnProcess") end
  if gid ~= nil then check.number(gid, 7, "spawnProcess") end
  if childFDs ~= nil then
    check.table(childFDs, 9, "spawnProcess")
    for fd, v in pairs(childFDs) do
      if math.type(fd) ~= "integer" or fd < 0 or fd > 255 then
        check.argError(9, "spawnProcess",
          "child descriptors are integers 0..255")
      elseif v ~= "r" and v ~= "w" and math.type(v) ~= "integer" then
        check.argError(9, "spawnProcess",
          'childFDs values are "r", "w" or a descriptor')
      end
    end
  end
  local proc = Process()
  proc.proto = pp
  proc.pipes = {}
  proc.usePTY = usePTY and true or false
  local handle, pid, pipes = C.spawn(executable, args or {executable}, env,
    path, uid, gid, proc.usePTY, childFDs or DEFAULT_FDS,
    function(code, signal) proc:_exit(code, signal) end)
  if handle == nil then
    local code, message = pid, pipes
    pp:makeConnection(proc)
    Cloop.callLater(0, function()
      proc:_exit(1, nil, ("could not run '%s': %s, %s"):format(executable,
        message, code), code)
    end)
    return proc
  end
  proc._handle = handle
  proc.pid = pid
  for fd, t in pairs(pipes) do proc.pipes[fd] = t end
  for fd, t in pairs(pipes) do C.attach(t, Pipe(proc, fd)) end
  pp:makeConnection(proc)
  return proc
end

--- reactor.environ() -> {NAME = value}: a copy of this process's
-- environment, to give spawnProcess (which passes an empty one for nil).
-- spindle's stand-in for Python's os.environ.
M.environ = C.environ

return M
