--- spec.support.peers: outside programs (python3, socat, nc, openssl) as
-- peers of spindle in the specs.
--
--   local peers = require("spec.support.peers")
--   local path = peers.pyfile(src)     -- a python3 program in a temp file
--   local p = peers.spawn(cmd)         -- start a shell command (stderr too)
--   local out = peers.finish(p)        -- wait for it, return its output
--   local p, port = peers.listening(cmd, pattern)
--                                      -- start a server on port 0 and
--                                      -- read the port it got
--
-- Servers outside spindle listen on port 0 (or a fresh path) and say
-- where; a spec reads that before connecting, so it neither hands out a
-- port found free earlier (someone else may take it) nor sleeps hoping
-- the server is up.
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

--- peers.listening(cmd, pattern) -> p, where: spawn cmd, a server that
-- prints a line once it listens (socat -d -d: "listening on AF=2
-- 127.0.0.1:PORT"; openssl s_server: "ACCEPT 127.0.0.1:PORT"; a python3
-- peer: its port), and read its output up to the first line matching
-- pattern. where is pattern's capture (a number if it reads as one); the
-- server is then accepting. Raises, with the output so far, if cmd ends
-- first. p is for peers.finish.
function M.listening(cmd, pattern)
  local p = M.spawn(cmd)
  local seen = {}
  for line in p:lines() do
    local where = line:match(pattern)
    if where then return p, tonumber(where) or where end
    seen[#seen + 1] = line
  end
  p:close()
  error(("peer ended before listening: %s\n%s"):format(cmd,
    table.concat(seen, "\n")), 2)
end

--- peers.finish(p) -> string: all the output of a spawned command.
function M.finish(p)
  local out = p:read("a")
  p:close()
  return out
end

return M
