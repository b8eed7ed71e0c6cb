-- Smoke tests of scripts/examples/: each Lua twin of a Twisted example
-- runs in its own spindle process against the Python original
-- (scripts/examples/twisted/, under /usr/bin/python3 with Twisted), and
-- the originals' output must not tell which side was Lua.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local ssl = require("spindle.ssl")
local H = require("spec.support.helper")
local quote = require("spec.support.process").quote

local PY = "/usr/bin/python3"
local DIR = "scripts/examples/"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function freePort()
  local port = reactor.listenTCP(0, protocol.Factory.forProtocol(
    protocol.Protocol), nil, "127.0.0.1")
  local n = port:getHost().port
  H.wait(port:stopListening())
  return n
end

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p " .. quote(tmp)))
local Cleanup = setmetatable({}, {__gc = function()
  os.execute("rm -rf " .. quote(tmp))
end})
-- Every use goes through dir(), so the folder lives as long as the specs.
local function dir()
  return Cleanup and tmp
end

-- The Python original `name` with its port numbers replaced, written to
-- the temporary folder under its own name (some import themselves).
local function original(name, ports)
  local src = read(DIR .. "twisted/" .. name)
  for from, to in pairs(ports or {}) do
    src = src:gsub(tostring(from), tostring(to))
  end
  local path = dir() .. "/" .. name
  write(path, src)
  return path
end

-- Start a command in the background; returns a handle to stop it and
-- read its output.
local function start(cmd)
  local out = os.tmpname()
  local p = io.popen(("cd %s && (exec %s) > %s 2>&1 & echo $!"):format(
    quote(os.getenv("PWD") or "."), cmd, quote(out)))
  local pid = assert(math.tointeger(tonumber(p:read("l"))))
  p:close()
  return {pid = pid, out = out}
end

-- SIGTERM (a Twisted or spindle reactor stops on it), wait for the
-- process to end, and return its output.
local function stop(h)
  os.execute("kill " .. h.pid .. " 2>/dev/null")
  for _ = 1, 200 do
    -- gone, or a zombie nobody reaps (no init in some containers)
    local ps = io.popen("ps -o stat= -p " .. h.pid)
    local stat = ps:read("a")
    ps:close()
    if not stat:find("%a") or stat:find("Z") then break end
    os.execute("sleep 0.05")
  end
  os.execute("kill -9 " .. h.pid .. " 2>/dev/null")
  local s = read(h.out)
  os.remove(h.out)
  -- what the reactor logs on SIGTERM (both Twisted's and spindle's)
  return (s:gsub("[^\n]*Received SIGTERM[^\n]*\n", ""))
end

-- Wait until something listens on 127.0.0.1:port.
local function waitForPort(port)
  for _ = 1, 200 do
    local ok = os.execute(("%s -c %s 2>/dev/null"):format(PY, quote(
      ("import socket; socket.create_connection(('127.0.0.1', %d), 1)")
      :format(port))))
    if ok then return end
    os.execute("sleep 0.05")
  end
  error("nothing listens on port " .. port)
end

-- Run a command to its end; return its output (stderr too).
local function run(cmd)
  local p = io.popen(("timeout 30 %s 2>&1"):format(cmd))
  local s = p:read("a")
  p:close()
  return s
end

local function spindle(script, ...)
  local args = {quote(H.SPINDLE), quote(DIR .. script)}
  for _, a in ipairs({...}) do args[#args + 1] = quote(a) end
  return table.concat(args, " ")
end

local function python(path, ...)
  local args = {PY, quote(path)}
  for _, a in ipairs({...}) do args[#args + 1] = quote(a) end
  return table.concat(args, " ")
end

-- The output of `client` against a server started with `serverCmd`,
-- and the server's. With `settled` (the server's output so far ->
-- boolean), the server is stopped only once it says so (a bound, not a
-- delay: 10 s), so that what it does after the client ends (seeing the
-- connections close) is in its output rather than racing the SIGTERM.
local function against(serverCmd, port, client, settled)
  local srv = start(serverCmd)
  waitForPort(port)
  local out = run(client)
  if settled then
    for _ = 1, 200 do
      if settled(read(srv.out)) then break end
      os.execute("sleep 0.05")
    end
  end
  return out, stop(srv)
end

describe("scripts/examples echo", function()
  it("echoclient (Lua and Python) against echoserv (Lua and Python)",
     function()
    local port = freePort()
    local pyServer = python(original("echoserv.py", {[8000] = port}))
    local luaServer = spindle("echoserv.lua", port)
    local pyClient = python(original("echoclient.py", {[8000] = port}))
    local luaClient = spindle("echoclient.lua", port)
    local want = "receive:\tHello, world!\nreceive:\tWhat a fine day it " ..
      "is.\nreceive:\tBye-bye!\nconnection lost:\tConnection was closed " ..
      "cleanly.\n"
    assert.equal(want, (against(pyServer, port, luaClient)))
    assert.equal(want, (against(luaServer, port, luaClient)))
    local pyWant = "receive: b'Hello, world!'\nreceive: b'What a fine day " ..
      "it is.'\nreceive: b'Bye-bye!'\nconnection lost: Connection was " ..
      "closed cleanly.\n"
    assert.equal(pyWant, (against(pyServer, port, pyClient)))
    assert.equal(pyWant, (against(luaServer, port, pyClient)))
  end)

  it("echoclient reports a refused connection and exits 1", function()
    local out = run("sh -c " .. quote(spindle("echoclient.lua", freePort())
      .. " 2>/dev/null; echo rc=$?"))
    assert.matches("^connection failed:\tConnection was refused", out)
    assert.matches("rc=1\n$", out)
  end)

  it("simpleclient (Lua and Python) against simpleserv (Lua and Python)",
     function()
    local port = freePort()
    local pyServer = python(original("simpleserv.py", {[8000] = port}))
    local luaServer = spindle("simpleserv.lua", port)
    local pyClient = python(original("simpleclient.py", {[8000] = port}))
    local luaClient = spindle("simpleclient.lua", port)
    local want = "Server said:\thello, world!\nconnection lost\n" ..
      "Connection lost - goodbye!\n"
    assert.equal(want, (against(pyServer, port, luaClient)))
    assert.equal(want, (against(luaServer, port, luaClient)))
    local pyWant = "Server said: b'hello, world!'\nconnection lost\n" ..
      "Connection lost - goodbye!\n"
    assert.equal(pyWant, (against(pyServer, port, pyClient)))
    assert.equal(pyWant, (against(luaServer, port, pyClient)))
  end)
end)

describe("scripts/examples/chatserver.lua", function()
  -- Two clients: the first says hello, both get it, both leave.
  local client = [[
import socket, sys
port = int(sys.argv[1])
a = socket.create_connection(("127.0.0.1", port))
b = socket.create_connection(("127.0.0.1", port))
import time; time.sleep(0.3)
a.sendall(b"hello\r\n")
for s in (a, b):
    data = b""
    while not data.endswith(b"\n"):
        data += s.recv(100)
    print(repr(data))
a.close(); b.close()
]]

  it("broadcasts each line, as chatserver.py under twistd", function()
    local port = freePort()
    local cpath = dir() .. "/chatclient.py"
    write(cpath, client)
    local out, log = against(spindle("chatserver.lua", port), port,
      python(cpath, port), function(sofar)
        return sofar:find('received\t"hello"\n.*Lost a client!\n.*' ..
          "Lost a client!\n") ~= nil
      end)
    assert.equal("b'hello\\n'\nb'hello\\n'\n", out)
    -- (waitForPort's probe came and went first)
    log = log:gsub("^Got new client!\nLost a client!\n", "")
    assert.equal('Got new client!\nGot new client!\nreceived\t"hello"\n' ..
      "Lost a client!\nLost a client!\n", log)
    local py = original("chatserver.py", {[1025] = port})
    local pyOut = against(("twistd3 -n --pidfile= -y %s"):format(quote(py)),
      port, python(cpath, port))
    assert.equal(out, pyOut)
  end)
end)

describe("scripts/examples starttls", function()
  it("starttls_client (Lua and Python) against starttls_server (Lua and " ..
     "Python)", function()
    -- server.pem: a self-signed certificate for example.com and its key.
    local key = ssl.KeyPair.generate()
    local cert = key:selfSignedCert(1, {commonName = "example.com"},
      {isCA = true, subjectAltName = "DNS:example.com"})
    write(dir() .. "/server.pem", cert:dumpPEM())
    local pem = dir() .. "/server.pem"
    local port = freePort()
    local pyServer = python(original("starttls_server.py", {[8000] = port}))
    local luaServer = spindle("starttls_server.lua", port, pem)
    local pyClient = python(original("starttls_client.py", {[8000] = port}))
    local luaClient = spindle("starttls_client.lua", port, pem)
    local serverWant = "received: \tplain text\nreceived: \tSTARTTLS\n" ..
      "-- Switching to TLS\nreceived: \tsecure text\n"
    local pyServerWant = "received:  b'plain text'\nreceived:  b'STARTTLS'" ..
      "\n-- Switching to TLS\nreceived:  b'secure text'\n"
    local out, log = against(luaServer, port, luaClient)
    assert.equal("received: \tREADY\n", out)
    assert.equal(serverWant, log)
    out, log = against(luaServer, port, pyClient)
    assert.equal("received:  b'READY'\n", out)
    assert.equal(serverWant, log)
    out, log = against(pyServer, port, luaClient)
    assert.equal("received: \tREADY\n", out)
    assert.equal(pyServerWant, log)
  end)
end)

describe("scripts/examples/streaming.lua", function()
  local client = [[
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.argv[2].encode() + b"\r\n")
data = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    data += d
lines = data.split(b"\r\n")[:-1]
ok = all(l.isdigit() and 0 <= int(l) < 10000 for l in lines)
print(len(lines), "integers" if ok else repr(lines[:3]))
]]

  it("streams the integers asked for, as streaming.py", function()
    local port = freePort()
    local cpath = dir() .. "/streamclient.py"
    write(cpath, client)
    for _, server in ipairs({spindle("streaming.lua", port),
        python(original("streaming.py", {[1234] = port}))}) do
      local srv = start(server)
      waitForPort(port)
      assert.equal("20000 integers\n", run(python(cpath, port, "20000")))
      assert.equal("1 [b\"That's not an integer\"]\n",
        run(python(cpath, port, "many")))
      local log = stop(srv)
      assert.truthy(log:find("Connection lost from", 1, true))
    end
  end)
end)
