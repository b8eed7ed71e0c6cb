--- spindle.fdset: reactor.addReader, addWriter, removeReader,
-- removeWriter, removeAll, getReaders, getWriters: watch descriptors that
-- another library owns. A part of spindle.reactor (reactor.lua takes its
-- fields), the policy on spindle._fdset (runtime/fdset.c, uv_poll).
-- Follows twisted.internet.interfaces.IReactorFDSet and posixbase's
-- _disconnectSelectable.
--
-- A reader is an object with fileno() -> descriptor, doRead() and
-- connectionLost(reason); a writer has doWrite() instead of doRead(). The
-- object may be both. doRead/doWrite return nil to go on; any other value
-- (an error value, such as reactor.ConnectionDone(...)) or an error they
-- raise removes the object (reading and writing) and calls its
-- connectionLost with that as a Failure. A hang-up with nothing to read,
-- a descriptor libuv reports broken, and process exit do the same with
-- reactor.ConnectionLost. The descriptor is never read, written or
-- closed by the reactor. Loop thread only.
local C = require("spindle._fdset")
local Cdefer = require("spindle._defer")
local check = require("spindle.check")
local failure = require("spindle.failure")

local errors = failure.builtinErrorTypes("reactor")
local errhandler = Cdefer.errhandler

local M = {}

local watched = {}            -- fd -> {poll =, reader =, writer =}
local readers, writers = {}, {} -- object -> fd

local function logErr(f, why)
  require("spindle.log").err(f, why)
end

local function update(fd)
  local e = watched[fd]
  if e == nil then return end
  if e.reader == nil and e.writer == nil then
    watched[fd] = nil
    e.poll:close()
    return
  end
  e.poll:start(e.reader ~= nil, e.writer ~= nil)
end

local function fileno(obj, fname)
  if type(obj) ~= "table" and type(obj) ~= "userdata" then
    check.typeError(1, fname, "object with fileno()", obj, 3)
  end
  local ok, fd = pcall(obj.fileno, obj)
  if not ok or math.type(fd) ~= "integer" or fd < 0 then
    check.argError(1, fname, "fileno() must return a descriptor", 3)
  end
  return fd
end

local function remove(obj)
  local fd = readers[obj]
  if fd ~= nil then
    readers[obj] = nil
    if watched[fd] then watched[fd].reader = nil end
    update(fd)
  end
  fd = writers[obj]
  if fd ~= nil then
    writers[obj] = nil
    if watched[fd] then watched[fd].writer = nil end
    update(fd)
  end
end

-- twisted posixbase._disconnectSelectable: stop watching obj, then
-- obj:connectionLost(Failure(why)).
local function disconnect(obj, why)
  remove(obj)
  local f = failure.isFailure(why) and why or failure.Failure(why)
  local lost = obj.connectionLost
  if lost ~= nil then
    local ok, err = xpcall(lost, errhandler, obj, f)
    if not ok then logErr(err, "Unhandled Error") end
  end
end

local WHY = {ESHUTDOWN = "the process is exiting", EOF = "hang-up"}

local function lostError(err)
  local e = errors.ConnectionLost(
    "Connection to the other side was lost in a non-clean fashion: " ..
    (WHY[err] or err) .. ".")
  e.code = err
  return e
end

-- Call obj:method() (doRead/doWrite); disconnect on a result or error.
local function run(obj, method)
  local ok, why = xpcall(obj[method], errhandler, obj)
  if not ok then
    logErr(why, "Unhandled Error")
  end
  if not ok or why ~= nil then disconnect(obj, why) end
end

local function onEvent(fd, readable, writable, err)
  local e = watched[fd]
  if e == nil then return end
  if err ~= nil then
    local r, w = e.reader, e.writer
    if r ~= nil then disconnect(r, lostError(err)) end
    if w ~= nil and w ~= r then disconnect(w, lostError(err)) end
    return
  end
  if readable and e.reader ~= nil then run(e.reader, "doRead") end
  e = watched[fd]
  if writable and e ~= nil and e.writer ~= nil then
    run(e.writer, "doWrite")
  end
end

-- entry(fd) -> the entry watching fd, made if need be. Called by
-- addReader/addWriter only: a descriptor libuv refuses ("cannot watch
-- descriptor 9999: bad file descriptor (EBADF)") is raised at their
-- caller's line (level 3), not here.
local function entry(fd)
  local e = watched[fd]
  if e == nil then
    -- Called by pcall, C.poll's error has no position of its own.
    local ok, poll = pcall(C.poll, fd, function(r, w, err)
      onEvent(fd, r, w, err)
    end)
    if not ok then error(poll, 3) end
    e = {poll = poll}
    watched[fd] = e
  end
  return e
end

--- reactor.addReader(reader): call reader:doRead() each time
-- reader:fileno() is readable, until removeReader(reader). Raises if the
-- descriptor cannot be watched (a regular file, one a spindle transport
-- already watches). twisted IReactorFDSet.addReader.
function M.addReader(reader)
  local fd = fileno(reader, "addReader")
  if readers[reader] ~= nil then return end
  local e = entry(fd)
  if e.reader ~= nil and e.reader ~= reader then remove(e.reader) end
  e.reader = reader
  readers[reader] = fd
  update(fd)
end

--- reactor.addWriter(writer): call writer:doWrite() each time
-- writer:fileno() is writable, until removeWriter(writer).
-- twisted IReactorFDSet.addWriter.
function M.addWriter(writer)
  local fd = fileno(writer, "addWriter")
  if writers[writer] ~= nil then return end
  local e = entry(fd)
  if e.writer ~= nil and e.writer ~= writer then
    local old = e.writer
    writers[old] = nil
  end
  e.writer = writer
  writers[writer] = fd
  update(fd)
end

--- reactor.removeReader(reader), reactor.removeWriter(writer): stop
-- watching; nothing happens for an object not watched.
function M.removeReader(reader)
  local fd = readers[reader]
  if fd == nil then return end
  readers[reader] = nil
  if watched[fd] then watched[fd].reader = nil end
  update(fd)
end

--- reactor.removeWriter(writer): stop calling writer:doWrite().
function M.removeWriter(writer)
  local fd = writers[writer]
  if fd == nil then return end
  writers[writer] = nil
  if watched[fd] then watched[fd].writer = nil end
  update(fd)
end

local function list(set)
  local out = {}
  for obj in pairs(set) do out[#out + 1] = obj end
  return out
end

--- reactor.getReaders(), reactor.getWriters() -> list of the objects
-- watched (in no particular order). twisted IReactorFDSet.getReaders.
function M.getReaders() return list(readers) end
--- reactor.getWriters() -> list of the writers watched.
function M.getWriters() return list(writers) end

--- reactor.removeAll() -> list: stop watching every reader and writer and
-- return them (each once). twisted IReactorFDSet.removeAll.
function M.removeAll()
  local seen, out = {}, {}
  for _, set in ipairs({readers, writers}) do
    for obj in pairs(set) do
      if not seen[obj] then
        seen[obj] = true
        out[#out + 1] = obj
      end
    end
  end
  for i = 1, #out do remove(out[i]) end
  return out
end

return M
