-- Lua twin of the seed tutorial's "定时退出Twisted消息循环" example: stop the
-- reactor after 4 seconds, then print "Program finished!".
local reactor = require("spindle.reactor")

reactor.callLater(4, reactor.stop)
reactor.run()
print("Program finished!")
