-- scripts/defer_chain.lua: the seed tutorial's second example: several
-- callbacks form a chain, each passing its result to the next.
-- Prints "Square of 5 is 25" then "Twice of 5 is 10".
local defer = require("spindle.defer")

local d = defer.Deferred() -- make the Deferred

local function printSquare(n) -- success handler
  print(("Square of %d is %d"):format(n, n * n))
  return n
end

local function processError(_) -- error handler
  print("error when process ")
end

local function printTwice(n)
  print(("Twice of %d is %d"):format(n, 2 * n))
  return n
end

d:addCallback(printSquare) -- first success callback
d:addErrback(processError) -- error callback
d:addCallback(printTwice)  -- second success callback

d:callback(5) -- runs printSquare() then printTwice()
