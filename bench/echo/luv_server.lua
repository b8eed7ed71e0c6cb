--- luv_server.lua: the luv peer of bench/echo, run with `lua5.4`.
-- Listens on three ports of 127.0.0.1 picked by the kernel and prints them
-- as "ECHO <port>", "LINES <port>" and "HTTP <port>": the first writes back
-- what it reads, the second splits the stream on "\r\n" and answers each
-- line with the line plus "\r\n" (the answers to one read go out in one
-- write, as a careful luv user would do), the third answers each request
-- (up to "\r\n\r\n") with a fixed 200 response. Lines over 16384 bytes
-- drop the connection. Runs until SIGTERM or SIGINT.
local uv = require("luv")

local MAX_LINE = 16384

local function onEcho(client)
  client:read_start(function(err, data)
    if err or not data then
      if not client:is_closing() then client:close() end
      return
    end
    client:write(data)
  end)
end

local function onLines(client)
  local rest = ""
  client:read_start(function(err, data)
    if err or not data then
      if not client:is_closing() then client:close() end
      return
    end
    if rest ~= "" then data = rest .. data end
    local out, n, pos = {}, 0, 1
    while true do
      local s, e = data:find("\r\n", pos, true)
      if not s then break end
      n = n + 1
      out[n] = data:sub(pos, e)
      pos = e + 1
    end
    rest = data:sub(pos)
    if n > 0 then client:write(out) end
    if #rest > MAX_LINE then client:close() end
  end)
end

local RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" ..
  "Content-Length: 13\r\n\r\nHello, world!"

local function onHttp(client)
  local tail
  client:read_start(function(err, data)
    if err or not data then
      if not client:is_closing() then client:close() end
      return
    end
    if tail then data = tail .. data end
    local n, pos = 0, 1
    while true do
      local _, e = data:find("\r\n\r\n", pos, true)
      if not e then break end
      n, pos = n + 1, e + 1
    end
    tail = pos <= #data and data:sub(math.max(pos, #data - 2)) or nil
    if n > 0 then client:write(RESPONSE:rep(n)) end
  end)
end

local function listen(handler)
  local server = uv.new_tcp()
  assert(server:bind("127.0.0.1", 0))
  assert(server:listen(1024, function(err)
    if err then return end
    local client = uv.new_tcp()
    server:accept(client)
    client:nodelay(true)
    handler(client)
  end))
  return server:getsockname().port
end

local echoPort = listen(onEcho)
local linesPort = listen(onLines)
local httpPort = listen(onHttp)
for _, signame in ipairs({"sigterm", "sigint"}) do
  local sig = uv.new_signal()
  sig:start(signame, function() uv.stop() end)
end
-- A client that goes away with answers in flight must not kill the server
-- (libuv leaves SIGPIPE alone; raw_server ignores it, Node and Python too).
uv.new_signal():start("sigpipe", function() end)
io.stdout:write(("ECHO %d\nLINES %d\nHTTP %d\n"):format(echoPort, linesPort,
  httpPort))
io.stdout:flush()
uv.run()
