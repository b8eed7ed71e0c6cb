--- spindle.log: messages and errors, to observers.
-- Follows twisted.python.log: msg() and err() make an event table and hand
-- it to every observer; the default observer writes a line to stderr as
-- "2026-11-29 11:39:37+0000 [-] text".
local M = {}

local observers = {}
local defaultObserver

--- Format an event as text: its message parts joined by spaces, or for an
-- error event the `why` line and the Failure's traceback.
-- @tparam table event {message = {...}, isError = bool, failure = F, why = s}
-- @treturn string
function M.textFromEventDict(event)
  if event.isError and event.failure ~= nil then
    local f = event.failure
    local text = type(f) == "table" and f.getTraceback and f:getTraceback()
      or tostring(f)
    return (event.why or "Unhandled Error") .. "\n" .. text
  end
  local parts = {}
  local message = event.message or {}
  for i = 1, (message.n or #message) do parts[i] = tostring(message[i]) end
  return table.concat(parts, " ")
end

local function formatTime(t)
  return os.date("!%Y-%m-%d %H:%M:%S+0000", math.floor(t))
end

--- Make an observer that writes each event as a line to a file.
-- @param file an open file (io.stderr, io.stdout, io.open(...))
-- @treturn function the observer, to pass to removeObserver
function M.FileLogObserver(file)
  return function(event)
    local text = M.textFromEventDict(event)
    text = text:gsub("\n", "\n\t")
    file:write(formatTime(event.time), " [", event.system or "-", "] ",
      text, "\n")
    file:flush()
  end
end

defaultObserver = M.FileLogObserver(io.stderr)
observers[1] = defaultObserver

local function publish(event)
  event.time = event.time or os.time()
  -- Copy: an observer may add or remove observers while we loop.
  local current = table.move(observers, 1, #observers, 1, {})
  for _, observer in ipairs(current) do
    local ok, e = pcall(observer, event)
    if not ok then
      M.removeObserver(observer)
      io.stderr:write("spindle.log: observer raised and was removed: ",
        tostring(e), "\n")
    end
  end
end

--- log.msg(...): log a message; its arguments are joined by spaces.
-- Follows twisted.python.log.msg.
function M.msg(...)
  publish({message = table.pack(...), isError = false})
end

--- log.err(failure, why): log an error. `failure` is a Failure or any error
-- value (wrapped in a Failure); `why` (string, optional) says what failed.
-- Follows twisted.python.log.err.
function M.err(failure, why)
  local F = require("spindle.failure")
  if failure == nil then failure = "log.err() called without an error" end
  if not F.isFailure(failure) then failure = F.Failure(failure) end
  publish({message = {n = 0}, isError = true, failure = failure, why = why})
end

--- log.addObserver(f): f(event) is called for every event.
function M.addObserver(observer)
  assert(type(observer) == "function" or
    (getmetatable(observer) or {}).__call,
    "bad argument #1 to 'addObserver' (callable expected)")
  observers[#observers + 1] = observer
end

--- log.removeObserver(f): stop sending events to f.
function M.removeObserver(observer)
  for i = #observers, 1, -1 do
    if observers[i] == observer then table.remove(observers, i) end
  end
end

--- log.startLogging(file): log to file instead of stderr.
-- Follows twisted.python.log.startLogging.
function M.startLogging(file)
  M.removeObserver(defaultObserver)
  local observer = M.FileLogObserver(file)
  M.addObserver(observer)
  return observer
end

--- log.observers(): a copy of the list of observers.
function M.observers()
  return table.move(observers, 1, #observers, 1, {})
end

return require("spindle._core").strict("log", M)
