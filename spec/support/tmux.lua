--- spec.support.tmux: drive a program on a real terminal (a tmux pane),
-- as a person would: type keys, read the screen.
--
--   local tmux = require("spec.support.tmux")
--   local t = tmux.start("spindle -i", {HOME = dir})  -- 100x30 pane
--   t:type("1 + 1") ; t:keys("Enter")   -- literal text; tmux key names
--   t:waitFor("\n2\n")                   -- screen matches (5 s), or error
--   t:screen()                           -- the pane's text, with history
--   t:stop()                             -- kill the pane's tmux server
-- Each terminal has its own tmux server (-L), so specs never share one.
local process = require("spec.support.process")

local M = {}
local T = {}
T.__index = T

local count = 0

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  p:close()
  return out
end

--- tmux.start(cmd, env) -> terminal: run cmd (a shell command) in a new
-- pane with the variables in env set; the pane stays after cmd exits,
-- showing "[exited N]".
function M.start(cmd, env)
  count = count + 1
  local self = setmetatable({}, T)
  self.server = ("spindle-spec-%d-%d-%d"):format(os.time(),
    math.random(1, 1000000000), count)
  local vars = {}
  for k, v in pairs(env or {}) do
    vars[#vars + 1] = k .. "=" .. process.quote(v)
  end
  local full = (#vars > 0 and ("env " .. table.concat(vars, " ") .. " ") or
    "") .. cmd .. "; echo \"[exited $?]\"; sleep 60"
  sh(("tmux -L %s -f /dev/null new-session -d -x 100 -y 30 %s"):format(
    self.server, process.quote(full)))
  return self
end

function T:tmux(args)
  return sh(("tmux -L %s %s"):format(self.server, args))
end

--- t:type(text): type text literally (no Enter).
function T:type(text)
  self:tmux("send-keys -l " .. process.quote(text))
end

--- t:keys(...): press tmux-named keys ("Enter", "C-c", "C-d", "Tab").
function T:keys(...)
  self:tmux("send-keys " .. table.concat({...}, " "))
end

--- t:line(text): type text and press Enter.
function T:line(text)
  self:type(text)
  self:keys("Enter")
end

--- t:screen() -> string: what the pane shows, with its history, lines
-- joined where they wrapped, trailing spaces dropped.
function T:screen()
  return self:tmux("capture-pane -p -J -S -200")
end

--- t:waitFor(pattern[, timeout[, plain]]) -> screen: poll the pane until
-- pattern (a Lua pattern, or plain text) matches; raise with the screen
-- after timeout seconds (at least 30, see below).
function T:waitFor(pattern, timeout, plain)
  -- A bound, not a delay: a loaded machine running the ASan build (CI's
  -- second pass) may take many seconds to start or exit, so never wait
  -- less than 30 s before calling it a failure.
  local deadline = os.time() + math.max(timeout or 5, 30) + 1
  local s
  repeat
    s = self:screen()
    if s:find(pattern, 1, plain) then return s end
    sh("sleep 0.05")
  until os.time() > deadline
  error(("terminal never showed %q; screen:\n%s"):format(pattern, s), 2)
end

function T:stop()
  self:tmux("kill-server")
end

return M
