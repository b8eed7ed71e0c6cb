--- spindle.reactor: the one reactor, assembled from the parts that run
-- on its libuv loop (C modules, and lifecycle.lua's policy on loop.c).
-- Each part is a module whose functions become the reactor's; a part's
-- __getters table adds dynamic read-only fields
-- (reactor.running). See API.md's spindle.reactor section.
local parts = {
  "spindle.lifecycle", -- run, stop, system events (lifecycle.lua on loop.c)
  "spindle._tcp",    -- listenTCP, connectTCP, listenUNIX, connectUNIX (tcp.c)
  "spindle._udp",    -- listenUDP, listenMulticast (udp.c)
  "spindle._tls",    -- listenSSL, connectSSL; startTLS on transports (tls.c)
  "spindle._pool",   -- callInThread, the thread pool's size (pool.c)
  "spindle.process", -- spawnProcess, environ (process.lua on process.c)
  "spindle._signals", -- addSignalHandler (signals.c)
  "spindle.fdset",   -- addReader, addWriter, ... (fdset.lua on fdset.c)
  "spindle._watchdog", -- setStallWarning (inspect.c)
}

local M = {}
local getters = {}

for _, name in ipairs(parts) do
  for k, v in pairs(require(name)) do
    if k == "__getters" then
      for gk, gv in pairs(v) do getters[gk] = gv end
    else
      M[k] = v
    end
  end
end

--- reactor.listenREPL(where[, options]) -> the listening port: an
-- attachable REPL (`spindle --attach PATH`) on a Unix socket, or over
-- TLS that requires client certificates (`spindle --attach tls:...`);
-- see spindle.repl.listen.
function M.listenREPL(...)
  return require("spindle.repl").listen(...)
end

for name, T in pairs(require("spindle.failure").builtinErrorTypes("reactor")) do
  M[name] = T
end

return require("spindle._core").strict("reactor", M, getters)
