-- bench/web/hello.lua: spindle.web's hello world for bench/web/run.sh.
--   spindle bench/web/hello.lua PORT
local reactor = require("spindle.reactor")
local web = require("spindle.web")

local site = web.Site(function() return "hello world" end)
reactor.listenTCP(tonumber(arg[1]), site, 1024, "127.0.0.1")
print("listening")
io.stdout:flush()
reactor.run()
