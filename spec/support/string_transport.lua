--- spec.support.string_transport: an in-memory transport for protocol
-- tests, like twisted.internet.testing.StringTransport. Everything written
-- is kept (value()); loseConnection() only sets `disconnecting`.
--
--   local StringTransport = require("spec.support.string_transport")
--   local t = StringTransport()   -- or StringTransport{host=..., peer=...}
--   proto:makeConnection(t); proto:dataReceived("hi\r\n")
--   assert.equal("...", t:value())
local StringTransport = {}
StringTransport.__index = StringTransport

--- StringTransport([opts]) -> transport. opts.host / opts.peer are address
-- tables (default TCP 127.0.0.1 ports 1234 / 4321).
local function new(opts)
  opts = opts or {}
  return setmetatable({
    chunks = {},
    disconnecting = false,
    aborted = false,
    producerState = "producing",
    producer = nil,
    streaming = nil,
    host = opts.host or {type = "TCP", host = "127.0.0.1", port = 1234},
    peer = opts.peer or {type = "TCP", host = "127.0.0.1", port = 4321},
    writes = 0,
  }, StringTransport)
end

--- t:write(data): record data (a string; anything else raises).
function StringTransport:write(data)
  if type(data) ~= "string" then
    error("bad argument #1 to 'write' (string expected, got " ..
      type(data) .. ")", 2)
  end
  self.chunks[#self.chunks + 1] = data
  self.writes = self.writes + 1
end

--- t:writeSequence(list): record each string of list.
function StringTransport:writeSequence(list)
  for _, s in ipairs(list) do self:write(s) end
end

--- t:value() -> string: everything written since the last clear().
function StringTransport:value()
  local s = table.concat(self.chunks)
  self.chunks = {s}
  return s
end

--- t:clear(): forget what was written.
function StringTransport:clear() self.chunks = {} end

function StringTransport:loseConnection() self.disconnecting = true end
function StringTransport:abortConnection()
  self.disconnecting = true
  self.aborted = true
end
function StringTransport:getHost() return self.host end
function StringTransport:getPeer() return self.peer end
function StringTransport:pauseProducing() self.producerState = "paused" end
function StringTransport:resumeProducing() self.producerState = "producing" end
function StringTransport:stopProducing() self.producerState = "stopped" end
function StringTransport:registerProducer(p, streaming)
  if self.producer ~= nil then error("producer already registered", 2) end
  self.producer, self.streaming = p, streaming
end
function StringTransport:unregisterProducer()
  self.producer, self.streaming = nil, nil
end

return setmetatable({new = new}, {__call = function(_, ...)
  return new(...)
end})
