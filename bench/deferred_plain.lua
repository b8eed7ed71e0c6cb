-- bench/deferred_plain.lua: chains per second of a plain-Lua Deferred with
-- the semantics of spindle's C one (Twisted's _runCallbacks: passthrough
-- steps, bound arguments with nil holes, errors caught with a traceback
-- handler into Failures, a returned Deferred pauses the chain, iterative
-- chain stack), run by the same binary as bench/deferred.lua.
-- Usage: build/spindle bench/deferred_plain.lua [seconds]
-- Prints "plain-lua <chains/second>".
local failure = require("spindle.failure")
local Failure, isFailure = failure.Failure, failure.isFailure
local pack, unpack = table.pack, table.unpack

local Deferred = {}
Deferred.__index = Deferred

local function passthru(x) return x end
local function handler(e) return Failure(e, debug.traceback(nil, 2)) end
local NOARGS = {n = 0}
local CONTINUE = {}

function Deferred.new(canceller)
  return setmetatable({callbacks = {}, head = 1, paused = 0, called = false,
    canceller = canceller}, Deferred)
end

local function isDeferred(v) return getmetatable(v) == Deferred end

function Deferred:addCallbacks(cb, eb, cbArgs, ebArgs)
  local cbs = self.callbacks
  cbs[#cbs + 1] = {cb, eb or passthru, cbArgs or NOARGS, ebArgs or NOARGS}
  if self.called then self:_run() end
  return self
end

function Deferred:addCallback(f, ...)
  local args = select("#", ...) > 0 and pack(...) or NOARGS
  return self:addCallbacks(f, passthru, args, NOARGS)
end

function Deferred:addErrback(f, ...)
  local args = select("#", ...) > 0 and pack(...) or NOARGS
  return self:addCallbacks(passthru, f, NOARGS, args)
end

function Deferred:addBoth(f, ...)
  local args = select("#", ...) > 0 and pack(...) or NOARGS
  return self:addCallbacks(f, f, args, args)
end

function Deferred:callback(result)
  assert(not isDeferred(result), "a Deferred cannot be a result")
  self:_start(result)
end

function Deferred:errback(f)
  if not isFailure(f) then f = Failure(f or "errback() called") end
  self:_start(f)
end

function Deferred:_start(result)
  if self.called then error("AlreadyCalledError", 2) end
  self.called = true
  self.result = result
  self:_run()
end

function Deferred:pause() self.paused = self.paused + 1 end

function Deferred:unpause()
  self.paused = self.paused - 1
  if self.paused == 0 and self.called then self:_run() end
end

function Deferred:_run()
  if self.running then return end
  local chain = {self}
  while #chain > 0 do
    local current = chain[#chain]
    local finished = true
    if current.paused == 0 then
      local cbs = current.callbacks
      while current.head <= #cbs do
        local step = cbs[current.head]
        cbs[current.head] = nil
        current.head = current.head + 1
        local fail = isFailure(current.result)
        local f = fail and step[2] or step[1]
        if f == CONTINUE then
          local chainee = step[3]
          chainee.result, current.result = current.result, nil
          chainee.paused = chainee.paused - 1
          chain[#chain + 1] = chainee
          finished = false
          break
        end
        if f ~= passthru then
          local args = fail and step[4] or step[3]
          current.running = true
          local ok, r = xpcall(f, handler, current.result,
            unpack(args, 1, args.n))
          current.running = false
          current.result = r
          if ok and isDeferred(r) then
            if not r.called or r.paused > 0 or isDeferred(r.result) then
              current.paused = current.paused + 1
              r.callbacks[#r.callbacks + 1] = {CONTINUE, CONTINUE, current}
              break
            end
            current.result, r.result = r.result, nil
          end
        end
      end
      if current.head > #cbs then current.callbacks, current.head = {}, 1 end
    end
    if finished then chain[#chain] = nil end
  end
end

local function inc(x) return x + 1 end

local function chain()
  local d = Deferred.new()
  d:addCallback(inc); d:addCallback(inc); d:addCallback(inc)
  d:addCallback(inc); d:addCallback(inc); d:addCallback(inc)
  d:addCallback(inc); d:addCallback(inc); d:addCallback(inc)
  d:addCallback(inc)
  d:callback(0)
  return d
end

local seconds = tonumber(arg and arg[1]) or 1
assert(chain().result == 10, "a chain must end with 10")
local n, batch, start = 0, 10000, os.clock()
repeat
  for _ = 1, batch do chain() end
  n = n + batch
until os.clock() - start >= seconds
print(("plain-lua %.0f"):format(n / (os.clock() - start)))
