--- spec.support.process: run the spindle binary (the one running the
-- specs: arg's lowest index under `busted --lua=...`) as a child process.
--
--   local process = require("spec.support.process")
--   process.bin                      -- absolute path of the binary
--   local r = process.run({"-e", "print(1)"}, {stdin = "...", env = {X = "1"}})
--   r.stdout, r.stderr, r.status     -- strings and the exit status
local M = {}

local function interpreter()
  local i = 0
  while arg[i - 1] ~= nil do i = i - 1 end
  local bin = arg[i]
  if not bin:find("^/") then
    local pwd = os.getenv("PWD") or io.popen("pwd"):read("l")
    bin = pwd .. "/" .. bin
  end
  return bin
end

M.bin = os.getenv("SPINDLE_BIN") or interpreter()

--- Quote s for /bin/sh.
function M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  os.remove(path)
  return s
end

--- process.run(args [, opts]) -> {stdout, stderr, status}
-- args: list of strings given to the binary; opts.stdin: string fed to
-- its standard input (default: empty); opts.env: extra environment;
-- opts.cwd: folder to run in; opts.timeout: seconds (default 30).
function M.run(args, opts)
  opts = opts or {}
  local parts = {}
  for k, v in pairs(opts.env or {}) do
    parts[#parts + 1] = k .. "=" .. M.quote(v)
  end
  parts[#parts + 1] = "timeout " .. tostring(opts.timeout or 30)
  parts[#parts + 1] = M.quote(opts.bin or M.bin)
  for _, a in ipairs(args) do parts[#parts + 1] = M.quote(a) end
  local inpath, errpath = os.tmpname(), os.tmpname()
  local f = assert(io.open(inpath, "wb"))
  f:write(opts.stdin or "")
  f:close()
  local cmd = table.concat(parts, " ") .. " <" .. inpath .. " 2>" .. errpath
  if opts.cwd then cmd = "cd " .. M.quote(opts.cwd) .. " && " .. cmd end
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, _, status = p:close()
  os.remove(inpath)
  return {stdout = out, stderr = slurp(errpath), status = status}
end

return M
