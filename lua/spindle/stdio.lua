--- spindle.stdio: StandardIO, a transport over this process's standard
-- input and output, so any stream protocol (a LineReceiver, say) can talk
-- through a terminal, a pipe or a file without blocking the loop. The
-- mechanism is spindle._stdio (runtime/stdio.c): each side is the TCP
-- transport over the descriptor (a relay thread for files). Follows
-- twisted.internet.stdio.StandardIO (_posixstdio). Loop thread only.
--
-- End of input: a protocol with readConnectionLost() gets that and the
-- output stays open (Twisted's IHalfCloseableProtocol); otherwise what
-- was written is flushed first and then connectionLost(ConnectionDone)
-- comes (Twisted drops unwritten output there). loseConnection() flushes
-- the output, then connectionLost. connectionLost comes once.
local C = require("spindle._stdio")
local check = require("spindle.check")
local failure = require("spindle.failure")
local Object = require("spindle.class").Object

local errors = failure.builtinErrorTypes("reactor")

local M = {}

local StandardIO = Object:extend({__name = "StandardIO"})

-- The protocols of the two halves: twisted's ProcessReader/ProcessWriter.
local Half = Object:extend({__name = "StandardIOHalf"})

function Half:__init(sio, reading)
  self.sio = sio
  self.reading = reading
end

function Half:makeConnection(transport) self.transport = transport end

function Half:dataReceived(data)
  if not self.reading then return end
  local p = self.sio.protocol
  if p ~= nil and not self.sio.disconnected then p:dataReceived(data) end
end

function Half:connectionLost(reason)
  if self.reading then
    self.sio:_readConnectionLost(reason)
  else
    self.sio:_writeConnectionLost(reason)
  end
end

--- stdio.StandardIO(protocol[, stdin][, stdout]) -> transport
-- Connect protocol to descriptors stdin (default 0) and stdout (default
-- 1), whatever they are: a terminal, a pipe, a socket or a file (read or
-- written by a relay thread). protocol:makeConnection(transport) is
-- called before this returns; bytes read go to dataReceived. Raises if a
-- descriptor is closed or unusable. The transport: write(data),
-- writeSequence(list), loseConnection() (flush, then connectionLost),
-- loseWriteConnection() (close the output only; a protocol with
-- writeConnectionLost() is told), pauseProducing(), resumeProducing()
-- (reading), stopProducing(), registerProducer(p, streaming) (on the
-- output: paused past 64 KiB queued), unregisterProducer(), getPeer(),
-- getHost() ({type = "PIPE"}), fields disconnecting, disconnected and
-- kinds ({stdin = "tty" | "pipe" | "file", stdout = ...}).
-- twisted.internet.stdio.StandardIO.
function StandardIO:__init(protocol, stdin, stdout)
  if type(protocol) ~= "table" and type(protocol) ~= "userdata" then
    check.typeError(1, "StandardIO", "protocol", protocol, 3)
  end
  stdin = stdin or 0
  stdout = stdout or 1
  check.number(stdin, 2, "StandardIO", 3)
  check.number(stdout, 3, "StandardIO", 3)
  self.protocol = protocol
  self.disconnecting = false
  self.disconnected = false
  local w, wkind = C.open(stdout, false)
  local ok, r, rkind = pcall(C.open, stdin, true)
  if not ok then
    w:abortConnection()
    error(r, 3)
  end
  self._writer, self._reader = w, r
  self.kinds = {stdin = rkind, stdout = wkind}
  C.attach(w, Half(self, false))
  w:pauseProducing() -- a terminal opened read-write must not be read here
  C.attach(r, Half(self, true))
  protocol:makeConnection(self)
end

function StandardIO:__tostring()
  return ("<StandardIO %s -> %s>"):format(tostring(self.kinds.stdin),
    tostring(self.kinds.stdout))
end

--- sio:write(data), sio:writeSequence(list): to standard output, after
-- what was written before; nothing once it is closed.
function StandardIO:write(data)
  check.string(data, 1, "write")
  if self._writer ~= nil then self._writer:write(data) end
end

--- sio:writeSequence(list): write each string of list, in order.
function StandardIO:writeSequence(list)
  check.table(list, 1, "writeSequence")
  if self._writer ~= nil then self._writer:writeSequence(list) end
end

--- sio:loseConnection(): stop reading, write what is queued, then close;
-- connectionLost(ConnectionDone) follows. twisted StandardIO.loseConnection.
function StandardIO:loseConnection()
  if self.disconnecting or self.disconnected then return end
  self.disconnecting = true
  if self._reader ~= nil then self._reader:pauseProducing() end
  if self._writer ~= nil then
    self._writer:loseConnection()
  else
    self:connectionLost(nil)
  end
end

--- sio:loseWriteConnection(): close standard output once written; input
-- keeps being read. twisted StandardIO.loseWriteConnection.
function StandardIO:loseWriteConnection()
  if self._writer ~= nil then self._writer:loseConnection() end
end

--- sio:pauseProducing(), sio:resumeProducing(): stop and restart reading
-- standard input; sio:stopProducing(): loseConnection().
function StandardIO:pauseProducing()
  if self._reader ~= nil then self._reader:pauseProducing() end
end

--- sio:resumeProducing(): read standard input again.
function StandardIO:resumeProducing()
  if self._reader ~= nil then self._reader:resumeProducing() end
end

--- sio:stopProducing(): loseConnection().
function StandardIO:stopProducing() self:loseConnection() end

--- sio:registerProducer(producer, streaming), sio:unregisterProducer():
-- a producer feeding standard output, with the transport's flow control.
function StandardIO:registerProducer(producer, streaming)
  if self._writer == nil then
    producer:stopProducing()
    return
  end
  self._writer:registerProducer(producer, streaming)
end

--- sio:unregisterProducer(): forget the output's producer.
function StandardIO:unregisterProducer()
  if self._writer ~= nil then self._writer:unregisterProducer() end
end

--- sio:getPeer(), sio:getHost(): {type = "PIPE"} (twisted PipeAddress).
function StandardIO:getPeer() return {type = "PIPE"} end
--- sio:getHost() -> {type = "PIPE"}, as getPeer.
function StandardIO:getHost() return {type = "PIPE"} end

-- Call the protocol's method `name` if it has it; true if it had.
local function callIf(p, name, ...)
  local f = p ~= nil and p[name]
  if not f then return false end
  f(p, ...)
  return true
end

function StandardIO:_readConnectionLost(reason)
  self._reader = nil
  if self.disconnected then return end
  if self.disconnecting then
    if self._writer == nil then self:connectionLost(reason) end
    return
  end
  if callIf(self.protocol, "readConnectionLost") then return end
  -- End of input: flush the output, then lose the connection.
  self._lostReason = reason
  self.disconnecting = true
  if self._writer ~= nil then
    self._writer:loseConnection()
  else
    self:connectionLost(reason)
  end
end

function StandardIO:_writeConnectionLost(reason)
  self._writer = nil
  if self.disconnected then return end
  if self.disconnecting then
    self:connectionLost(self._lostReason or reason)
    return
  end
  if callIf(self.protocol, "writeConnectionLost") then return end
  self:connectionLost(reason)
end

--- sio:connectionLost(reason): both halves are done (called by the
-- halves); closes what is left and tells the protocol, once.
function StandardIO:connectionLost(reason)
  if self.disconnected then return end
  self.disconnected = true
  self.disconnecting = true
  local r, w, p = self._reader, self._writer, self.protocol
  self._reader, self._writer = nil, nil
  if w ~= nil then w:loseConnection() end
  if r ~= nil then r:loseConnection() end
  if reason == nil then
    reason = failure.Failure(errors.ConnectionDone(
      "Connection was closed cleanly."))
  end
  if p ~= nil then p:connectionLost(reason) end
end

M.StandardIO = StandardIO

return require("spindle._core").strict("stdio", M)
