-- spindle.stdio.StandardIO: a spindle child speaking a line protocol on
-- its standard input and output through a pipe, a file and a pty.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local defer = require("spindle.defer")
local H = require("spec.support.helper")
local process = require("spec.support.process")

-- The child: a LineReceiver echoing "got <line>"; it reports the kinds on
-- stderr and stops the reactor at connectionLost. Mode (arg[1]):
-- "echo", "half" (readConnectionLost: answer "bye" after EOF), "flood"
-- (write 8 MiB through a producer, then loseConnection), "burst" (write
-- 1 MiB at once, then loseConnection).
local SCRIPT = [[
local reactor = require("spindle.reactor")
local basic = require("spindle.basic")
local stdio = require("spindle.stdio")
local mode = arg[1] or "echo"
local E = basic.LineReceiver:extend({delimiter = "\n"})
function E:connectionMade()
  local k = self.transport.kinds
  io.stderr:write("kinds ", k.stdin, " ", k.stdout, "\n")
  if mode == "flood" then
    local t, n = self.transport, 0
    local pr = {pauses = 0}
    function pr:pauseProducing()
      self.paused = true
      self.pauses = self.pauses + 1
    end
    function pr:resumeProducing()
      self.paused = false
      while not self.paused and n < 128 do
        n = n + 1
        t:write(string.rep("z", 65536))
      end
      if n == 128 and not self.done then
        self.done = true
        io.stderr:write("paused ", tostring(self.pauses > 0), "\n")
        t:unregisterProducer()
        t:loseConnection()
      end
    end
    function pr:stopProducing() end
    t:registerProducer(pr, true)
    pr:resumeProducing()
  elseif mode == "burst" then
    self.transport:write(string.rep("y", 1048576))
    self.transport:loseConnection()
  end
end
function E:lineReceived(line) self:sendLine("got " .. line) end
if mode == "half" then
  function E:readConnectionLost()
    self:sendLine("bye")
    self.transport:loseConnection()
  end
end
function E:connectionLost(r)
  io.stderr:write("lost ", tostring(r.value), "\n")
  reactor.stop()
end
stdio.StandardIO(E())
reactor.run()
]]

local script
setup(function()
  script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(SCRIPT)
  f:close()
end)
teardown(function() os.remove(script) end)

local function sh(cmd, opts)
  opts = opts or {}
  opts.bin = "/bin/sh"
  return process.run({"-c", cmd}, opts)
end

local Q = process.quote

describe("stdio.StandardIO", function()
  it("speaks a line protocol through a pipe", function()
    local r = sh("printf 'a\\nb\\n' | " .. Q(process.bin) .. " " .. Q(script))
    assert.equal("got a\ngot b\n", r.stdout)
    assert.matches("kinds pipe pipe", r.stderr, 1, true)
    assert.matches("lost ConnectionDone", r.stderr, 1, true)
    assert.equal(0, r.status)
  end)

  it("reads standard input from a file and writes to a file", function()
    local out = os.tmpname()
    local r = process.run({script}, {stdin = "x\ny\n"})
    assert.equal("got x\ngot y\n", r.stdout)
    assert.matches("kinds file pipe", r.stderr, 1, true)
    r = sh(Q(process.bin) .. " " .. Q(script) .. " > " .. Q(out),
      {stdin = "z\n"})
    local f = assert(io.open(out))
    assert.equal("got z\n", f:read("a"))
    f:close()
    os.remove(out)
    assert.matches("kinds file file", r.stderr, 1, true)
  end)

  it("keeps the output open after EOF for readConnectionLost", function()
    local r = sh("printf 'a\\n' | " .. Q(process.bin) .. " " .. Q(script) ..
      " half")
    assert.equal("got a\nbye\n", r.stdout)
  end)

  it("respects backpressure on its output and flushes on loseConnection",
    function()
      local r = sh(Q(process.bin) .. " " .. Q(script) ..
        " flood </dev/null | (sleep 0.3; wc -c)")
      assert.equal("8388608", r.stdout:match("%d+"))
      assert.matches("paused true", r.stderr, 1, true)
      r = sh(Q(process.bin) .. " " .. Q(script) .. " burst </dev/null | wc -c")
      assert.equal("1048576", r.stdout:match("%d+"))
    end)

  it("speaks through a pseudo-terminal", function()
    local d = defer.Deferred()
    local P = protocol.ProcessProtocol:extend()
    local buf = ""
    function P:childDataReceived(_, data)
      buf = buf .. data
      -- Type only once the child has said which kinds it has, so the
      -- terminal's echo cannot fall in the middle of that line.
      if not self.typed and buf:find("kinds [^\n]*\n") then
        self.typed = true
        self.transport:write("hello\n")
      end
      if buf:find("got hello") and not self.eof then
        self.eof = true
        self.transport:write("\4") -- ^D: end of input on a terminal
      end
    end
    function P:processEnded(reason) d:callback({reason}) end
    reactor.spawnProcess(P(), process.bin, {process.bin, script}, nil, nil,
      nil, nil, true)
    local reason = H.wait(d, 20)[1]
    assert.is_truthy(reason:check(reactor.ProcessDone))
    assert.matches("kinds tty tty", buf, 1, true)
    assert.matches("got hello\r\n", buf, 1, true)
    assert.matches("lost ConnectionDone", buf, 1, true)
  end)

  it("raises for a descriptor that is not open", function()
    local ok, err = pcall(require("spindle.stdio").StandardIO,
      protocol.Protocol(), 57)
    assert.is_false(ok)
    assert.matches("not open", tostring(err), 1, true)
  end)
end)
