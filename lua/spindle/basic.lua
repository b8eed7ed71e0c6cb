--- spindle.basic: line and length-prefix framing over a stream transport,
-- as twisted.protocols.basic: LineReceiver, LineOnlyReceiver,
-- NetstringReceiver, Int32StringReceiver, Int16StringReceiver,
-- Int8StringReceiver.
-- Subclass them with Class:extend{...} and override lineReceived /
-- stringReceived. The scanning (dataReceived) is done in C
-- (spindle._basic): pending bytes live in a C buffer with a read offset,
-- so a chunk of many lines is cut without copying what is still pending.
local Protocol = require("spindle.protocol").Protocol
local C = require("spindle._basic")

local M = {}

--- Pause support shared by LineReceiver and the IntN receivers.
-- Follows twisted.protocols.basic._PauseableMixin: while paused, received
-- data is buffered and not delivered; resumeProducing delivers it.
local function addPauseable(cls)
  cls.paused = false

  --- p:pauseProducing(): stop delivering and pause the transport.
  function cls:pauseProducing()
    C.setPaused(self, true)
    self.transport:pauseProducing()
  end

  --- p:resumeProducing(): resume the transport and deliver what is pending.
  function cls:resumeProducing()
    C.setPaused(self, false)
    self.transport:resumeProducing()
    self:dataReceived("")
  end

  --- p:stopProducing(): stop delivering for good and stop the transport.
  function cls:stopProducing()
    C.setPaused(self, true)
    self.transport:stopProducing()
  end
end

--- LineReceiver: lines (and, after setRawMode(), raw data) from a stream.
-- Fields: delimiter (string, default "\r\n"), MAX_LENGTH (bytes, default
-- 16384), line_mode (1 or 0, read-only: use setRawMode/setLineMode),
-- paused (read-only). Follows twisted.protocols.basic.LineReceiver.
local LineReceiver = Protocol:extend({__name = "LineReceiver"})
LineReceiver.delimiter = "\r\n"
LineReceiver.MAX_LENGTH = 16384
LineReceiver.line_mode = 1
addPauseable(LineReceiver)

--- lr:dataReceived(data) -> why: cut data into lines; calls
-- lineReceived(line) per line (rawDataReceived(data) in raw mode). Stops
-- when a callback returns a true value, when transport.disconnecting is
-- set, or while paused. Over-long input goes to lineLengthExceeded.
LineReceiver.dataReceived = C.lineDataReceived

--- lr:setRawMode(): later data goes to rawDataReceived(data).
LineReceiver.setRawMode = C.setRawMode

--- lr:setLineMode([extra]) -> why: back to line mode; extra (a string, as
-- left over in rawDataReceived) is parsed for lines first.
LineReceiver.setLineMode = C.setLineMode

--- lr:clearLineBuffer() -> string: forget and return the buffered bytes.
LineReceiver.clearLineBuffer = C.clearLineBuffer

--- lr:sendLine(line): transport:write(line .. delimiter).
LineReceiver.sendLine = C.sendLine

--- lr.__newindex(self, key, value): assigning a field an instance does
-- not have yet stores it (rawset) and tells the C scanner when it is
-- MAX_LENGTH, delimiter or lineReceived, so that only the own fields an
-- instance has are read on every line (Twisted reads all three each
-- line; the result is the same). A rawset of one of them is seen from
-- the next chunk. A subclass that defines its own __newindex replaces
-- this one; the scanner then reads all three on every line.
LineReceiver.__newindex = C.lineNewindex

--- lr:lineReceived(line): override; line is without its delimiter.
function LineReceiver:lineReceived(line)
  error("LineReceiver.lineReceived must be overridden by a subclass " ..
    "(abstract, as in Twisted)", 2)
end

--- lr:rawDataReceived(data): override when using raw mode.
function LineReceiver:rawDataReceived(data)
  error("LineReceiver.rawDataReceived must be overridden by a subclass " ..
    "(abstract, as in Twisted)", 2)
end

--- lr:lineLengthExceeded(line): a line was longer than MAX_LENGTH. line
-- holds everything buffered from the start of that line. Default: drop
-- the connection (transport:loseConnection()).
function LineReceiver:lineLengthExceeded(line)
  return self.transport:loseConnection()
end

--- LineOnlyReceiver: lines only (no raw mode), as
-- twisted.protocols.basic.LineOnlyReceiver; here it is LineReceiver,
-- whose C scanner is already the fast path.
local LineOnlyReceiver = LineReceiver:extend({__name = "LineOnlyReceiver"})

--- NetstringReceiver: netstrings ("5:hello,"). MAX_LENGTH (default 99999)
-- bounds a string; a bad prefix, an over-long string or a missing comma
-- drop the connection and set brokenPeer = 1.
-- Follows twisted.protocols.basic.NetstringReceiver.
local NetstringReceiver = Protocol:extend({__name = "NetstringReceiver"})
NetstringReceiver.MAX_LENGTH = 99999
NetstringReceiver.brokenPeer = 0

--- ns:dataReceived(data): calls stringReceived(s) per complete netstring.
NetstringReceiver.dataReceived = C.netstringDataReceived

--- ns:sendString(s): write s as a netstring.
NetstringReceiver.sendString = C.netstringSendString

--- ns:stringReceived(s): override.
function NetstringReceiver:stringReceived(s)
  error("NetstringReceiver.stringReceived must be overridden by a subclass " ..
    "(abstract, as in Twisted)", 2)
end

--- IntNStringReceiver: strings after a big-endian length prefix of
-- prefixLength bytes. MAX_LENGTH (default 99999) bounds a string.
-- Follows twisted.protocols.basic.IntNStringReceiver.
local IntNStringReceiver = Protocol:extend({__name = "IntNStringReceiver"})
IntNStringReceiver.MAX_LENGTH = 99999
addPauseable(IntNStringReceiver)

--- ins:dataReceived(data): calls stringReceived(s) per complete string.
IntNStringReceiver.dataReceived = C.intDataReceived

--- ins:sendString(s): write the prefix and s; raises StringTooLongError
-- when #s does not fit in prefixLength bytes.
IntNStringReceiver.sendString = C.intSendString

--- ins:stringReceived(s): override.
function IntNStringReceiver:stringReceived(s)
  error(tostring(self.__name) .. ".stringReceived must be overridden by " ..
    "a subclass (abstract, as in Twisted)", 2)
end

--- ins:lengthLimitExceeded(length): a prefix announced more than
-- MAX_LENGTH bytes. Default: drop the connection.
function IntNStringReceiver:lengthLimitExceeded(length)
  self.transport:loseConnection()
end

local Int32StringReceiver = IntNStringReceiver:extend({
  __name = "Int32StringReceiver", prefixLength = 4})
local Int16StringReceiver = IntNStringReceiver:extend({
  __name = "Int16StringReceiver", prefixLength = 2})
local Int8StringReceiver = IntNStringReceiver:extend({
  __name = "Int8StringReceiver", prefixLength = 1})

M.LineReceiver = LineReceiver
M.LineOnlyReceiver = LineOnlyReceiver
M.NetstringReceiver = NetstringReceiver
M.IntNStringReceiver = IntNStringReceiver
M.Int32StringReceiver = Int32StringReceiver
M.Int16StringReceiver = Int16StringReceiver
M.Int8StringReceiver = Int8StringReceiver
M.StringTooLongError = C.StringTooLongError

return require("spindle._core").strict("basic", M)
