--- spec.support.peers: outside programs (python3, socat, nc, openssl) as
-- peers of spindle in the specs.
--
--   local peers = require("spec.support.peers")
--   local path = peers.pyfile(src)     -- a python3 program in a temp file
--   local p = peers.spawn(cmd)         -- start a shell command (stderr too)
--   local out = peers.finish(p)        -- wait for it, return its output
local M = {}

--- peers.pyfile(src) -> path: src written to a temporary .py file (the
-- caller removes it).
function M.pyfile(src)
  local base = os.tmpname()
  os.remove(base) -- os.tmpname made it; only the .py file is used
  local path = base .. ".py"
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  return path
end

--- peers.spawn(cmd) -> popen handle of cmd, stderr merged into its output,
-- which is read (blocking) by finish once the reactor has done its part.
function M.spawn(cmd)
  return assert(io.popen(cmd .. " 2>&1", "r"))
end

--- peers.finish(p) -> string: all the output of a spawned command.
function M.finish(p)
  local out = p:read("a")
  p:close()
  return out
end

return M
