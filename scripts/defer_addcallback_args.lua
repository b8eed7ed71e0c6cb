-- scripts/defer_addcallback_args.lua: the seed tutorial's addCallback
-- snippet, process(d, num1, num2): arguments given to addCallback after
-- the function are passed after the result (nils included).
-- Prints "process(10, 1, 2) = 13" and "bound arguments: 3 (nil, 7, nil)".
local defer = require("spindle.defer")

local function process(d, num1, num2) -- several arguments: a fine callback
  return d + num1 + num2
end

local d = defer.Deferred()
d:addCallback(process, 1, 2)
d:addCallback(function(result)
  print(("process(10, 1, 2) = %d"):format(result))
end)
d:callback(10)

local e = defer.Deferred()
e:addCallback(function(_, ...)
  local args = table.pack(...)
  print(("bound arguments: %d (%s, %s, %s)"):format(args.n,
    tostring(args[1]), tostring(args[2]), tostring(args[3])))
end, nil, 7, nil)
e:callback("ignored")
