--- spindle.log: messages and errors, to observers.
-- Follows twisted.python.log: msg() and err() make an event table and hand
-- it to every observer; the default observer writes a line to stderr as
-- "2026-11-29 11:39:37+0000 [-] text".
local M = {}

local observers = {}
local defaultObserver

-- tostring(v) that never raises: a __tostring that raises or returns a
-- non-string gives "<T at 0x... with tostring error: ...>" (Twisted's
-- reflect.safe_str).
local function safeStr(v)
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then return s end
  local why = "__tostring returned a " .. type(s)
  if not ok then
    local eok, es = pcall(tostring, s)
    why = eok and type(es) == "string" and es or "unprintable error"
  end
  return ("<%s at %p with tostring error: %s>"):format(type(v), v, why)
end

-- The text of an event; may raise (textFromEventDict catches it).
local function eventText(event)
  if event.isError and event.failure ~= nil then
    local f = event.failure
    local text
    if require("spindle.failure").isFailure(f) then
      text = f:getTraceback()
    else
      text = safeStr(f)
    end
    local why = event.why
    why = why == nil and "Unhandled Error" or safeStr(why)
    return why .. "\n" .. text
  end
  local parts = {}
  local message = event.message or {}
  if type(message) ~= "table" then message = {message, n = 1} end
  for i = 1, (message.n or #message) do parts[i] = safeStr(message[i]) end
  return table.concat(parts, " ")
end

--- Format an event as text: its message parts joined by spaces, or for an
-- error event the `why` line (any value, as tostring gives it) and the
-- Failure's traceback. Never raises: a part whose __tostring raises is
-- shown as "<table at 0x... with tostring error: ...>", and an event
-- that cannot be formatted at all gives "Unformattable event: ..." (as
-- twisted.python.log.textFromEventDict does).
-- @tparam table event {message = {...}, isError = bool, failure = F, why = s}
-- @treturn string
function M.textFromEventDict(event)
  local ok, text = pcall(eventText, event)
  if ok and type(text) == "string" then return text end
  return "Unformattable event: " .. safeStr(text)
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
    local t = tonumber(event.time) or os.time()
    local function write()
      file:write(formatTime(t), " [", safeStr(event.system or "-"), "] ",
        text, "\n")
      if file.flush then file:flush() end
    end
    -- The terminal REPL sets M._outputWrapper (repl.wrapPrint), which
    -- clears the prompt line before and draws it again after.
    local wrap = rawget(M, "_outputWrapper")
    if wrap then wrap(write) else write() end
  end
end

defaultObserver = M.FileLogObserver(io.stderr)
observers[1] = defaultObserver

-- Send event to every observer. One that raises is reported on stderr
-- and kept, as Twisted's LogPublisher does (it may fail on one event
-- only); the others still get the event.
local function publish(event)
  event.time = event.time or os.time()
  -- Copy: an observer may add or remove observers while we loop.
  local current = table.move(observers, 1, #observers, 1, {})
  for _, observer in ipairs(current) do
    local ok, e = pcall(observer, event)
    if not ok then
      pcall(function()
        io.stderr:write("spindle.log: observer ", safeStr(observer),
          " raised: ", safeStr(e), "\n")
      end)
    end
  end
end

--- log.msg(...): log a message; its arguments are joined by spaces.
-- Follows twisted.python.log.msg.
function M.msg(...)
  publish({message = table.pack(...), isError = false})
end

--- log.err(failure, why): log an error. `failure` is a Failure or any error
-- value (wrapped in a Failure); `why` (optional, a string; anything else
-- is shown as tostring gives it) says what failed.
-- Follows twisted.python.log.err.
function M.err(failure, why)
  local F = require("spindle.failure")
  if failure == nil then failure = "log.err() called without an error" end
  if not F.isFailure(failure) then failure = F.Failure(failure) end
  publish({message = {n = 0}, isError = true, failure = failure, why = why})
end

--- log.addObserver(f): f(event) is called for every event. Raises
-- "bad argument #1 to 'addObserver' (callable expected, got T)" unless f
-- is a function or a table with __call. An observer that raises is
-- reported on stderr and kept.
function M.addObserver(observer)
  require("spindle.check").callable(observer, 1, "addObserver")
  observers[#observers + 1] = observer
end

--- log.removeObserver(f): stop sending events to f.
function M.removeObserver(observer)
  for i = #observers, 1, -1 do
    if observers[i] == observer then table.remove(observers, i) end
  end
end

--- log.startLogging(file) -> observer: log to file instead of stderr.
-- file is an open file (io.stdout, io.open(...)) or any value with a
-- write method (and a flush method); anything else, such as the string
-- "stdout", raises a bad-argument error before the default observer is
-- removed (every later line would otherwise be lost). Follows
-- twisted.python.log.startLogging.
function M.startLogging(file)
  local check = require("spindle.check")
  local ok, write = pcall(function() return file.write end)
  if type(file) == "string" or not (ok and check.isCallable(write)) then
    check.typeError(1, "startLogging", "file", file)
  end
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
