-- reactor.spawnProcess and ProcessProtocol: real child processes (sh,
-- cat, tty, sleep), reported as Twisted reports them.
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local defer = require("spindle.defer")
local basic = require("spindle.basic")
local H = require("spec.support.helper")

local function wait(d, timeout)
  return H.wait(d, timeout or 20)
end

-- A ProcessProtocol recording everything; rec.ended fires with rec at
-- processEnded. fields: methods to override.
local function recorder(fields)
  local P = protocol.ProcessProtocol:extend(fields or {})
  local p = P()
  p.rec = {events = {}, out = {}, err = {}, fds = {}, lost = {}}
  p.ended = defer.Deferred()
  local rec = p.rec
  local base = protocol.ProcessProtocol
  function p:childDataReceived(fd, data)
    if not (fields and fields.quiet) then -- quiet: keep no data
      rec.events[#rec.events + 1] = {fd, data}
      rec.fds[fd] = (rec.fds[fd] or "") .. data
    end
    base.childDataReceived(self, fd, data)
  end
  -- (rawget: an extended class inherits ProcessProtocol's no-ops)
  p.outReceived = fields and rawget(fields, "outReceived") or
    function(_, data) rec.out[#rec.out + 1] = data end
  p.errReceived = fields and rawget(fields, "errReceived") or
    function(_, data) rec.err[#rec.err + 1] = data end
  function p:childConnectionLost(fd)
    rec.lost[#rec.lost + 1] = fd
  end
  function p:processExited(reason)
    rec.exited = reason
    rec.order = (rec.order or "") .. "x"
  end
  function p:processEnded(reason)
    rec.reason = reason
    rec.order = (rec.order or "") .. "e"
    self.ended:callback(rec)
  end
  return p
end

local function sorted(list)
  local t = {table.unpack(list)}
  table.sort(t)
  return t
end

describe("reactor.spawnProcess", function()
  it("runs a child, gives its output and ProcessDone when it exits 0",
    function()
      local p = recorder()
      local proc = reactor.spawnProcess(p, "sh", {"sh", "-c", "echo hello"})
      assert.equal(proc, p.transport)
      assert.is_true(math.type(proc.pid) == "integer" and proc.pid > 0)
      local rec = wait(p.ended)
      assert.equal("hello\n", table.concat(rec.out))
      assert.equal("xe", rec.order)
      assert.same({0, 1, 2}, sorted(rec.lost))
      local e = rec.reason.value
      assert.is_truthy(rec.reason:check(reactor.ProcessDone))
      assert.is_truthy(rec.reason:check(reactor.ConnectionDone))
      assert.equal(0, e.exitCode)
      assert.is_nil(e.signal)
      assert.equal(0, e.status)
      assert.equal("ProcessDone: A process has ended without apparent " ..
        "errors: process finished with exit code 0.", tostring(e))
      assert.is_nil(proc.pid)
      assert.equal(0, proc.status)
    end)

  it("reports a non-zero exit code as ProcessTerminated", function()
    local p = recorder()
    reactor.spawnProcess(p, "sh", {"sh", "-c", "exit 3"})
    local rec = wait(p.ended)
    local e = rec.reason.value
    assert.is_truthy(rec.reason:check(reactor.ProcessTerminated))
    assert.is_truthy(rec.reason:check(reactor.ConnectionLost))
    assert.equal(3, e.exitCode)
    assert.is_nil(e.signal)
    assert.equal(3 << 8, e.status)
    assert.equal("ProcessTerminated: A process has ended with a probable " ..
      "error condition: process ended with exit code 3.", tostring(e))
    assert.equal(rec.exited.value, e)
  end)

  it("reports a child killed by SIGKILL with its signal, and then " ..
    "signalProcess raises ProcessExitedAlready", function()
    local p = recorder({connectionMade = function(self)
      self.transport:signalProcess("KILL")
    end})
    local proc = reactor.spawnProcess(p, "sleep", {"sleep", "30"})
    local rec = wait(p.ended)
    local e = rec.reason.value
    assert.is_truthy(rec.reason:check(reactor.ProcessTerminated))
    assert.is_nil(e.exitCode)
    assert.equal(9, e.signal)
    assert.equal(9, e.status)
    assert.matches("process ended by signal 9", tostring(e), 1, true)
    H.assertErrorType(reactor.ProcessExitedAlready, "already exited",
      pcall(proc.signalProcess, proc, "TERM"))
  end)

  it("takes signals by number and by SIG name", function()
    local p1, p2 = recorder(), recorder()
    local a = reactor.spawnProcess(p1, "sleep", {"sleep", "30"})
    local b = reactor.spawnProcess(p2, "sleep", {"sleep", "30"})
    -- Before: raised from inside process.lua, and a number the system
    -- refuses did not say which argument was wrong.
    local ok, err = pcall(function() a:signalProcess("NOPE") end)
    assert.is_false(ok)
    assert.matches("process_spec.lua:%d+: bad argument #1 to " ..
      "'signalProcess' %(unknown signal 'NOPE'%)", err)
    ok, err = pcall(function() a:signalProcess(99999) end)
    assert.is_false(ok)
    assert.matches("process_spec.lua:%d+: bad argument #1 to " ..
      "'signalProcess' %(signal 99999: invalid argument %(EINVAL%)%)", err)
    a:signalProcess(15)
    b:signalProcess("SIGINT")
    assert.equal(15, wait(p1.ended).reason.value.signal)
    assert.equal(2, wait(p2.ended).reason.value.signal)
  end)

  it("ends a missing executable at once in processEnded, never hangs",
    function()
      local made = false
      local p = recorder({connectionMade = function() made = true end})
      local proc = reactor.spawnProcess(p, "/nonexistent/prog", {"prog"})
      assert.is_true(made)
      assert.is_nil(proc.pid)
      local rec = wait(p.ended)
      local e = rec.reason.value
      assert.is_truthy(rec.reason:check(reactor.ProcessTerminated))
      assert.equal(1, e.exitCode)
      assert.equal("ENOENT", e.code)
      assert.matches("could not run '/nonexistent/prog'", tostring(e), 1,
        true)
      assert.equal("xe", rec.order)
    end)

  it("says the working directory is missing, not the program", function()
    -- Before: "could not run 'cat': no such file or directory" for a
    -- cat that exists, in a path that does not.
    local p = recorder()
    reactor.spawnProcess(p, "cat", {"cat"}, nil, "/nonexistent/dir")
    local e = wait(p.ended).reason.value
    assert.equal("ENOENT", e.code)
    assert.matches("could not run 'cat': working directory " ..
      "'/nonexistent/dir': no such file or directory", tostring(e), 1, true)
  end)

  it("makes cat exit with closeStdin, after what was written", function()
    local p = recorder({connectionMade = function(self)
      self.transport:write("abc")
      self.transport:writeSequence({"d", "ef"})
      self.transport:closeStdin()
    end})
    reactor.spawnProcess(p, "cat", {"cat"})
    local rec = wait(p.ended)
    assert.equal("abcdef", table.concat(rec.out))
    assert.is_truthy(rec.reason:check(reactor.ProcessDone))
    assert.same({0, 1, 2}, sorted(rec.lost))
  end)

  it("delivers stderr and stdout interleaved as the child writes them",
    function()
      -- The child waits for a line from us between writes, so the order
      -- is the child's, not a race.
      local p = recorder()
      function p:childDataReceived(fd, data)
        protocol.ProcessProtocol.childDataReceived(self, fd, data)
        self.rec.events[#self.rec.events + 1] = {fd, data}
        self.transport:write("\n")
      end
      reactor.spawnProcess(p, "sh", {"sh", "-c",
        "echo o1; read x; echo e1 >&2; read x; echo o2; read x; " ..
        "echo e2 >&2; read x"})
      local rec = wait(p.ended)
      assert.same({{1, "o1\n"}, {2, "e1\n"}, {1, "o2\n"}, {2, "e2\n"}},
        rec.events)
      assert.equal("o1\no2\n", table.concat(rec.out))
      assert.equal("e1\ne2\n", table.concat(rec.err))
    end)

  it("passes a descriptor of ours with childFDs, and opens 'r'/'w' pipes " ..
    "on other child descriptors", function()
      local uv = require("luv")
      local fds = uv.pipe()
      local p = recorder({connectionMade = function(self)
        self.transport:writeToChild(4, "to four")
        self.transport:closeChildFD(4)
      end})
      reactor.spawnProcess(p, "sh",
        {"sh", "-c", "echo via3 >&5; echo on3 >&3; cat <&4 >&3"},
        nil, nil, nil, nil, false,
        {[0] = "w", [1] = "r", [2] = "r", [3] = "r", [4] = "w",
         [5] = fds.write})
      local rec = wait(p.ended)
      uv.fs_close(fds.write)
      assert.equal("via3\n", uv.fs_read(fds.read, 100))
      uv.fs_close(fds.read)
      assert.equal("on3\nto four", rec.fds[3])
      assert.same({0, 1, 2, 3, 4}, sorted(rec.lost))
    end)

  it("closes child descriptors childFDs does not name", function()
    local p = recorder()
    reactor.spawnProcess(p, "sh", {"sh", "-c", "echo x >&2 || exit 9"},
      nil, nil, nil, nil, false, {[0] = "w", [1] = "r"})
    local rec = wait(p.ended)
    -- fd 2 is /dev/null for the child (0-2 are never left closed)
    assert.equal(0, rec.reason.value.exitCode)
    assert.same({}, rec.err)
  end)

  it("gives the child a terminal with usePTY", function()
    local p = recorder()
    local proc = reactor.spawnProcess(p, "tty", {"tty"}, nil, nil, nil, nil,
      true)
    local rec = wait(p.ended)
    assert.equal(0, rec.reason.value.exitCode)
    assert.matches("^/dev/pts/%d+", table.concat(rec.out))
    assert.is_true(proc.usePTY)
  end)

  it("without usePTY the child has no terminal", function()
    local p = recorder()
    reactor.spawnProcess(p, "tty", {"tty"})
    local rec = wait(p.ended)
    assert.equal(1, rec.reason.value.exitCode)
  end)

  it("passes an empty environment for env nil, and env, path as given",
    function()
      local p1, p2 = recorder(), recorder()
      reactor.spawnProcess(p1, "/usr/bin/env", {"env"})
      reactor.spawnProcess(p2, "/bin/sh", {"sh", "-c", "echo $FOO; pwd"},
        {FOO = "bar"}, "/tmp")
      assert.equal("", table.concat(wait(p1.ended).out))
      assert.equal("bar\n/tmp\n", table.concat(wait(p2.ended).out))
      local env = reactor.environ()
      assert.equal(os.getenv("PATH"), env.PATH)
    end)

  it("streams a child's output through a LineReceiver", function()
    local lines = {}
    local L = basic.LineReceiver:extend({delimiter = "\n"})
    function L:lineReceived(line) lines[#lines + 1] = line end
    local lr = L()
    local p = recorder({outReceived = function(_, data)
      lr:dataReceived(data)
    end})
    reactor.spawnProcess(p, "sh", {"sh", "-c", "printf 'a\\nbb\\nccc\\n'"})
    wait(p.ended)
    assert.same({"a", "bb", "ccc"}, lines)
  end)

  it("pauses and resumes reading the child's output", function()
    local p = recorder({connectionMade = function(self)
      self.transport:pauseProducing()
      reactor.callLater(0.2, function()
        self.rec.beforeResume = #self.rec.out
        self.transport:resumeProducing()
      end)
    end})
    reactor.spawnProcess(p, "sh", {"sh", "-c", "echo x"})
    local rec = wait(p.ended)
    assert.equal(0, rec.beforeResume)
    assert.equal("x\n", table.concat(rec.out))
  end)

  it("loseConnection closes every pipe; the child sees EOF", function()
    local p = recorder({connectionMade = function(self)
      self.transport:loseConnection()
    end})
    reactor.spawnProcess(p, "cat", {"cat"})
    local rec = wait(p.ended)
    assert.same({0, 1, 2}, sorted(rec.lost))
  end)

  it("raises on bad arguments", function()
    local p = protocol.ProcessProtocol()
    assert.has_error(function() reactor.spawnProcess(nil, "true") end,
      "bad argument #1 to 'spawnProcess' (process protocol expected, " ..
      "got nil)")
    -- A table that is no process protocol is refused before a child
    -- starts (it was spawned, then left running).
    assert.has_error(function()
      reactor.spawnProcess({}, "sleep", {"sleep", "30"})
    end, "bad argument #1 to 'spawnProcess' (process protocol expected, " ..
      "got table)")
    assert.has_error(function() reactor.spawnProcess(p, 3) end)
    assert.has_error(function()
      reactor.spawnProcess(p, "true", {"true", 3})
    end, "bad argument #3 to 'spawnProcess' (string expected at index 2)")
    assert.has_error(function()
      reactor.spawnProcess(p, "true", {"true"}, {A = 1})
    end, "bad argument #4 to 'spawnProcess' (string names and values " ..
      "expected)")
    -- Before: "process.lua:307: bad argument #8 to 'spawn'" (the C call).
    assert.has_error(function()
      reactor.spawnProcess(p, "true", {"true"}, nil, nil, nil, nil, false,
        {[0] = "x"})
    end, "bad argument #9 to 'spawnProcess' (childFDs values are \"r\", " ..
      "\"w\" or a descriptor)")
    assert.has_error(function()
      reactor.spawnProcess(p, "true", {"true"}, nil, nil, nil, nil, false,
        {[256] = "r"})
    end, "bad argument #9 to 'spawnProcess' (child descriptors are " ..
      "integers 0..255)")
  end)

  it("refuses NUL bytes that exec would cut an argument at", function()
    -- Before: {"echo", "a\0b"} ran `echo a` and printed "a".
    local p = protocol.ProcessProtocol()
    assert.has_error(function()
      reactor.spawnProcess(p, "echo", {"echo", "a\0b"})
    end, "bad argument #3 to 'spawnProcess' (NUL byte at index 2)")
    assert.has_error(function()
      reactor.spawnProcess(p, "ec\0ho", {"echo"})
    end, "bad argument #2 to 'spawnProcess' (NUL byte in executable)")
    assert.has_error(function()
      reactor.spawnProcess(p, "true", {"true"}, {A = "x\0y"})
    end, "bad argument #4 to 'spawnProcess' (NUL byte in the value of A)")
    assert.has_error(function()
      reactor.spawnProcess(p, "true", {"true"}, {["A=B"] = "x"})
    end, "bad argument #4 to 'spawnProcess' (bad variable name \"A=B\")")
    assert.has_error(function()
      reactor.spawnProcess(p, "true", {"true"}, nil, "/tmp\0/x")
    end, "bad argument #5 to 'spawnProcess' (NUL byte in path)")
  end)

  it("sends 64 MiB through cat and back intact with a producer and " ..
    "bounded memory", function()
      local CHUNK, N = 65536, 1024 -- 64 MiB
      -- A pseudo-random block; chunk i is the block rotated by i * 257.
      local seed, bytes = 12345, {}
      for i = 1, CHUNK do
        seed = (seed * 1103515245 + 12345) % 2147483648
        bytes[i] = string.char(seed >> 16 & 255)
      end
      local block = table.concat(bytes)
      local block2 = block .. block
      local function chunk(i)
        local r = (i * 257) % CHUNK
        return block2:sub(r + 1, r + CHUNK)
      end
      -- Does data match the expected stream at byte offset pos (0-based)?
      local function matches(pos, data)
        local at = 1
        while at <= #data do
          local i, off = pos // CHUNK, pos % CHUNK
          local n = math.min(CHUNK - off, #data - at + 1)
          local r = (i * 257) % CHUNK
          local s = r + off + 1
          if block2:sub(s, s + n - 1) ~= data:sub(at, at + n - 1) then
            return false
          end
          at, pos = at + n, pos + n
        end
        return true
      end
      local function rss()
        local f = io.open("/proc/self/status")
        local s = f:read("a")
        f:close()
        return tonumber(s:match("VmHWM:%s*(%d+)")) * 1024
      end
      local before = rss()
      -- sha256 of a stream by a sha256sum child, fed by `producer`
      -- (registered on its stdin) or by whatever writes to it.
      local function summer()
        local sp = recorder()
        reactor.spawnProcess(sp, "sha256sum", {"sha256sum"},
          {PATH = "/usr/bin:/bin"})
        return sp
      end
      -- A streaming producer writing chunks 0..N-1 to transport t, then
      -- closing its stdin.
      local function producerFor(t, onChunk)
        local pr = {i = 0, pauses = 0}
        function pr:pauseProducing()
          self.paused = true
          self.pauses = self.pauses + 1
        end
        function pr:resumeProducing()
          self.paused = false
          while not self.paused and self.i < N do
            local c = chunk(self.i)
            self.i = self.i + 1
            t:write(c)
            if onChunk then onChunk(c) end
          end
          if self.i == N and not self.done then
            self.done = true
            t:unregisterProducer()
            t:closeStdin()
          end
        end
        function pr:stopProducing() end
        t:registerProducer(pr, true)
        pr:resumeProducing()
        return pr
      end
      -- cat's output goes to a sha256sum child, with cat as the streaming
      -- producer of that child's stdin: memory stays bounded end to end.
      local gotSum = summer()
      local pos, bad, producer = 0, nil, nil
      local p = recorder({
        quiet = true,
        connectionMade = function(self)
          gotSum.transport:registerProducer(self.transport, true)
          producer = producerFor(self.transport)
        end,
        outReceived = function(_, data)
          if bad == nil and not matches(pos, data) then bad = pos end
          pos = pos + #data
          gotSum.transport:write(data)
        end,
      })
      reactor.spawnProcess(p, "cat", {"cat"})
      local rec = wait(p.ended, 120)
      gotSum.transport:unregisterProducer()
      gotSum.transport:closeStdin()
      wait(gotSum.ended, 30)
      assert.is_nil(bad)
      assert.equal(CHUNK * N, pos)
      assert.is_truthy(rec.reason:check(reactor.ProcessDone))
      assert.is_true(producer.pauses > 0)
      -- the same stream straight into sha256sum
      local sentSum = summer()
      producerFor(sentSum.transport)
      wait(sentSum.ended, 60)
      local sent = table.concat(sentSum.rec.out)
      assert.matches("^%x+", sent)
      assert.equal(sent, table.concat(gotSum.rec.out))
      -- ASan's quarantine keeps freed memory and TSan's shadow memory
      -- grows with what was touched: measure only the plain build.
      if os.getenv("ASAN_OPTIONS") == nil and
          os.getenv("TSAN_OPTIONS") == nil then
        assert.is_true(rss() - before < 48 * 1024 * 1024,
          "peak RSS grew by " .. (rss() - before))
      end
    end)

  it("leaves no zombie and no descriptor behind after 200 short-lived " ..
    "processes", function()
      local pid = io.open("/proc/self/stat"):read("n")
      -- The set of our open descriptors (luv lists /proc/self/fd).
      local function fdset()
        local uv, set = require("luv"), {}
        local req = assert(uv.fs_scandir("/proc/self/fd"))
        while true do
          local name = uv.fs_scandir_next(req)
          if name == nil then break end
          set[tonumber(name)] = true
        end
        return set
      end
      -- Descriptors open now that were not before (one closed meanwhile by
      -- an earlier test's handle is no leak).
      local function newSince(before)
        local extra = {}
        for fd in pairs(fdset()) do
          if not before[fd] then extra[#extra + 1] = fd end
        end
        return extra
      end
      local function zombies()
        local p = io.popen("ps -o stat= --ppid " .. pid)
        local n = 0
        for line in p:lines() do
          if line:match("^Z") then n = n + 1 end
        end
        p:close()
        return n
      end
      local warm = recorder()
      reactor.spawnProcess(warm, "true", {"true"})
      wait(warm.ended)
      H.runFor(0.05) -- the closes under way finish
      local fds = fdset()
      local done = 0
      for _ = 1, 10 do -- 10 rounds of 20 at once
        local ds = {}
        for i = 1, 20 do
          local p = recorder()
          reactor.spawnProcess(p, "true", {"true"}, nil, nil, nil, nil,
            i % 5 == 0)
          ds[#ds + 1] = p.ended
        end
        for _, r in ipairs(wait(defer.gatherResults(ds))) do
          if r.reason.value.exitCode == 0 then done = done + 1 end
        end
      end
      assert.equal(200, done)
      H.runFor(0.05)
      assert.equal(0, zombies())
      assert.same({}, newSince(fds))
    end)
end)

describe("ProcessProtocol", function()
  it("sends childDataReceived to outReceived/errReceived and " ..
    "childConnectionLost to in/out/errConnectionLost", function()
      local calls = {}
      local P = protocol.ProcessProtocol:extend({
        outReceived = function(_, d) calls[#calls + 1] = "out " .. d end,
        errReceived = function(_, d) calls[#calls + 1] = "err " .. d end,
        inConnectionLost = function() calls[#calls + 1] = "in lost" end,
        outConnectionLost = function() calls[#calls + 1] = "out lost" end,
        errConnectionLost = function() calls[#calls + 1] = "err lost" end,
      })
      local p = P()
      p:childDataReceived(1, "a")
      p:childDataReceived(2, "b")
      p:childDataReceived(3, "c")
      p:childConnectionLost(0)
      p:childConnectionLost(1)
      p:childConnectionLost(2)
      p:childConnectionLost(3)
      assert.same({"out a", "err b", "in lost", "out lost", "err lost"},
        calls)
    end)
end)
