-- scripts/defer_basic.lua: the seed tutorial's first Deferred example
-- (Twisted: d.addCallback(printSquare); d.addErrback(processError)).
-- Usage: spindle scripts/defer_basic.lua [call_error]
-- Prints "Square of 4 is 16", or "error when process " with call_error.
local defer = require("spindle.defer")
local failure = require("spindle.failure")

local d = defer.Deferred() -- make the Deferred

-- Phase one: add the callbacks.

local function printSquare(n) -- the success handler
  print(("Square of %d is %d"):format(n, n * n))
end

local function processError(_) -- the error handler
  print("error when process ")
end

d:addCallback(printSquare) -- add the success callback
d:addErrback(processError) -- add the error callback

-- Phase two: fire the Deferred.
if arg[1] == "call_error" then
  local f = failure.Failure(defer.errorType("Exception")("my exception"))
  d:errback(f) -- calls processError
else
  d:callback(4) -- calls printSquare(4)
end
