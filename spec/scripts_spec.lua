-- Smoke test of scripts/: every script that exits by itself runs in its
-- own spindle process and must print exactly its expected output (that of
-- its Twisted original) and exit 0 with nothing on stderr.
--
-- Adding a script: put an entry in `expected` below (script, args,
-- stdout, and optionally code, stderr (a substring) and stdin (a string
-- its standard input reads; /dev/null otherwise); a script may have
-- several entries, one per set of arguments. A script that does not exit
-- by itself (a server) goes in `servers` with the reason. A script in
-- neither table fails the spec, so none goes untested by accident.
local H = require("spec.support.helper")

local expected = {
  {script = "scripts/defer_addcallback_args.lua",
   stdout = "process(10, 1, 2) = 13\nbound arguments: 3 (nil, 7, nil)\n"},
  {script = "scripts/defer_basic.lua", stdout = "Square of 4 is 16\n"},
  {script = "scripts/defer_basic.lua", args = {"call_error"},
   stdout = "error when process \n"},
  {script = "scripts/defer_chain.lua",
   stdout = "Square of 5 is 25\nTwice of 5 is 10\n"},
  {script = "scripts/defer_chaindeferred.lua",
   stdout = "D1 got hello\nD2 got hello\nD1 called: true, D2 called: true\n" ..
     "D3 called: false, D4 called: true\n"},
  {script = "scripts/reactor_calllater.lua",
   stdout = "Square of 5 is 25\nTwice of 5 is 10\n"},
  {script = "scripts/reactor_stop.lua", stdout = "Program finished!\n"},
  {script = "scripts/process_lines.lua",
   stdout = "1: line 1\n2: line 2\n3: line 3\n3 lines; exit code 2\n"},
  {script = "scripts/process_lines.lua", args = {"sh", "-c", "kill $$"},
   stdout = "0 lines; killed by signal 15\n"},
  {script = "scripts/stdiodemo.lua", stdin = "help\nhelp quit\nfoo\nquit\n",
   stdout = "Web checker console. Type 'help' for help.\n" ..
     "Valid commands: check help quit\nquit: Quit this session\n" ..
     "Error: no such command.\nGoodbye.\n"},
  {script = "scripts/sighup_server.lua",
   stdout = "client got: hello, version 1\nSIGHUP: reloaded the greeting\n" ..
     "client got: hello, version 2\n"},
  {script = "scripts/threads_callfromthread.lua",
   stdout = "the run of must_run_in_main_thread() has been finished!\n"},
  {script = "scripts/threads_pool_size.lua",
   stdout = "suggestThreadPoolSize(10): at most 10 pool threads\n" ..
     "12 calls: 10 ran at once, 2 waited for a free thread\n"},
}

local servers = {
  -- ["scripts/echo_server.lua"] = "serves until killed",
  ["scripts/echo_server.lua"] = "needs clients: run by tcp_spec.lua",
  ["scripts/echo_client.lua"] = "needs a server: run by tcp_spec.lua",
  ["scripts/chat_server.lua"] = "needs clients: run by tcp_spec.lua",
  ["scripts/hello_server.lua"] = "needs clients and signals: run by " ..
    "workers_spec.lua",
  ["scripts/unix_echo.lua"] = "needs clients: run by unix_spec.lua",
  ["scripts/udp_echo.lua"] = "timestamped output, needs a UDP peer: " ..
    "run by spec/udp_spec.lua",
  ["scripts/threads_udp_long_operation.lua"] = "timestamped output, UDP " ..
    "port 8007 by default: run by spec/threads_spec.lua on port 0",
  ["scripts/tls_echo_server.lua"] = "needs clients and certificates: " ..
    "run by tls_spec.lua",
  ["scripts/tls_echo_client.lua"] = "needs a server: run by tls_spec.lua",
  ["scripts/tls_client_cert_server.lua"] = "needs clients and " ..
    "certificates: run by tls_spec.lua",
  ["scripts/tls_client_cert_client.lua"] = "needs a server: run by " ..
    "tls_spec.lua",
  ["scripts/web_json_server.lua"] = "needs a client: run by " ..
    "web_interop_spec.lua",
  ["scripts/web_json_client.lua"] = "needs a server: run by " ..
    "web_interop_spec.lua",
}

local shellQuote = require("spec.support.process").quote

local function listScripts()
  local list = {}
  local p = assert(io.popen("ls scripts/*.lua 2>/dev/null"))
  for line in p:lines() do list[#list + 1] = line end
  p:close()
  table.sort(list)
  return list
end

local function readAll(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

describe("scripts/", function()
  local scripts = listScripts()
  local covered = {}
  for _, e in ipairs(expected) do covered[e.script] = true end

  it("has an expectation or a reason for every script", function()
    assert.is_true(#scripts > 0)
    for _, s in ipairs(scripts) do
      assert.is_truthy(covered[s] or servers[s],
        s .. " is in neither `expected` nor `servers` of scripts_spec.lua")
    end
  end)

  -- Start every script at once (each waits on its own timers), then
  -- collect each one's output: the suite waits for the slowest only.
  local started = false
  local function startAll()
    if started then return end
    started = true
    for _, e in ipairs(expected) do
      local cmd = {shellQuote(H.SPINDLE), shellQuote(e.script)}
      for _, a in ipairs(e.args or {}) do cmd[#cmd + 1] = shellQuote(a) end
      e.errfile = os.tmpname()
      local input = "/dev/null"
      if e.stdin then
        e.infile = os.tmpname()
        local f = assert(io.open(e.infile, "w"))
        f:write(e.stdin)
        f:close()
        input = e.infile
      end
      -- timeout bounds a script that hangs.
      e.pipe = assert(io.popen("timeout 30 " .. table.concat(cmd, " ") ..
        " <" .. input .. " 2>" .. e.errfile))
    end
  end

  for _, e in ipairs(expected) do
    local name = table.concat({e.script, table.unpack(e.args or {})}, " ")
    it(name .. " prints what its Twisted original prints", function()
      startAll()
      local out = e.pipe:read("a")
      local _, _, code = e.pipe:close()
      local err = readAll(e.errfile)
      os.remove(e.errfile)
      if e.infile then os.remove(e.infile) end
      assert.are.equal(e.stdout, out)
      assert.are.equal(e.code or 0, code)
      if e.stderr then
        assert.truthy(err:find(e.stderr, 1, true), err)
      else
        assert.are.equal("", err)
      end
    end)
  end
end)
