--- spindle.utils: run a child process and get its output or exit code as
-- a Deferred, on reactor.spawnProcess. Follows twisted.internet.utils.
--
-- In each, args are the arguments after the program name (the child's
-- argv is {executable, table.unpack(args)}), env the child's whole
-- environment (default: empty, as in Twisted; pass reactor.environ() for
-- ours), path its working folder (default: ours). Loop thread only.
local defer = require("spindle.defer")
local check = require("spindle.check")
local failure = require("spindle.failure")
local protocol = require("spindle.protocol")

local errors = failure.builtinErrorTypes("utils")

local M = {}

--- utils.UnexpectedErrorOutput: getProcessOutput's failure when the child
-- wrote to standard error (without errortoo); its `processEnded` field is
-- a Deferred that fires (with the end's Failure) when the child has ended.
M.UnexpectedErrorOutput = errors.UnexpectedErrorOutput

-- data as Python's repr of bytes shows it, quotes included: b'...'.
local function repr(data)
  return "b'" .. data:gsub("[%c'\\\128-\255]", function(c)
    local named = {["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
      ["'"] = "\\'", ["\\"] = "\\\\"}
    return named[c] or ("\\x%02x"):format(c:byte())
  end) .. "'"
end

local function spawn(fname, p, executable, args, env, path, reactor)
  check.string(executable, 1, fname, 3)
  if args ~= nil then check.table(args, 2, fname, 3) end
  if env ~= nil then check.table(env, 3, fname, 3) end
  if path ~= nil then check.string(path, 4, fname, 3) end
  local argv = {executable}
  for i = 1, #(args or {}) do argv[i + 1] = args[i] end
  reactor = reactor or require("spindle.reactor")
  reactor.spawnProcess(p, executable, argv, env or {}, path)
  return p.deferred
end

-- twisted utils._BackRelay.
local BackRelay = protocol.ProcessProtocol:extend({__name = "_BackRelay"})

function BackRelay:__init(errortoo)
  self.deferred = defer.Deferred()
  self.buf = {}
  self.errortoo = errortoo
end

function BackRelay:outReceived(data) self.buf[#self.buf + 1] = data end

function BackRelay:errReceived(data)
  if self.errortoo then
    self.buf[#self.buf + 1] = data
  elseif self.deferred ~= nil then
    self.onProcessEnded = defer.Deferred()
    local e = errors.UnexpectedErrorOutput("got stderr: " .. repr(data))
    e.processEnded = self.onProcessEnded
    local d = self.deferred
    self.deferred = nil
    d:errback(e)
    self.transport:loseConnection()
  end
end

function BackRelay:processEnded(reason)
  if self.deferred ~= nil then
    self.deferred:callback(table.concat(self.buf))
  elseif self.onProcessEnded ~= nil then
    self.onProcessEnded:errback(reason)
  end
end

--- utils.getProcessOutput(executable[, args][, env][, path][, reactor]
--   [, errortoo]) -> Deferred of a string: everything the child wrote to
-- its standard output (and, with errortoo, to standard error, mixed in
-- arrival order) once it has ended, whatever its exit code. Without
-- errortoo, the first bytes on standard error fail the Deferred with
-- utils.UnexpectedErrorOutput ("got stderr: ..."), and its processEnded
-- Deferred follows the child. twisted utils.getProcessOutput.
function M.getProcessOutput(executable, args, env, path, reactor, errortoo)
  local p = BackRelay(errortoo and true or false)
  return spawn("getProcessOutput", p, executable, args, env, path, reactor)
end

-- twisted utils._ValueGetter.
local ValueGetter = protocol.ProcessProtocol:extend({__name = "_ValueGetter"})

function ValueGetter:__init() self.deferred = defer.Deferred() end

function ValueGetter:processEnded(reason)
  self.deferred:callback(reason.value.exitCode)
end

--- utils.getProcessValue(executable[, args][, env][, path][, reactor])
--   -> Deferred of the child's exit code (nil when a signal ended it).
-- twisted utils.getProcessValue.
function M.getProcessValue(executable, args, env, path, reactor)
  return spawn("getProcessValue", ValueGetter(), executable, args, env, path,
    reactor)
end

-- twisted utils._EverythingGetter.
local EverythingGetter = protocol.ProcessProtocol:extend({
  __name = "_EverythingGetter"})

function EverythingGetter:__init(stdinBytes)
  self.deferred = defer.Deferred()
  self.out, self.err = {}, {}
  self.stdinBytes = stdinBytes
end

function EverythingGetter:connectionMade()
  if self.stdinBytes ~= nil then
    self.transport:writeToChild(0, self.stdinBytes)
    self.transport:closeStdin()
  end
end

function EverythingGetter:outReceived(data) self.out[#self.out + 1] = data end
function EverythingGetter:errReceived(data) self.err[#self.err + 1] = data end

function EverythingGetter:processEnded(reason)
  local e = reason.value
  local out, err = table.concat(self.out), table.concat(self.err)
  if e.signal then
    self.deferred:errback({out, err, e.signal})
  else
    self.deferred:callback({out, err, e.exitCode})
  end
end

--- utils.getProcessOutputAndValue(executable[, args][, env][, path]
--   [, reactor][, stdinBytes]) -> Deferred of {out, err, code}: the
-- child's standard output, standard error and exit code. stdinBytes (a
-- string) is written to its standard input, which is then closed. A child
-- a signal ended fails the Deferred with the value {out, err, signal}.
-- twisted utils.getProcessOutputAndValue.
function M.getProcessOutputAndValue(executable, args, env, path, reactor,
                                    stdinBytes)
  if stdinBytes ~= nil then
    check.string(stdinBytes, 6, "getProcessOutputAndValue")
  end
  return spawn("getProcessOutputAndValue", EverythingGetter(stdinBytes),
    executable, args, env, path, reactor)
end

return require("spindle._core").strict("utils", M)
