-- reactor.addReader / addWriter and friends (IReactorFDSet) on pipes made
-- with luv, the way another library would own a descriptor.
local reactor = require("spindle.reactor")
local defer = require("spindle.defer")
local H = require("spec.support.helper")
local uv = require("luv")

local function pipe()
  local fds = uv.pipe({nonblock = true}, {nonblock = true})
  return fds.read, fds.write
end

local function reader(fd, onLost)
  local r = {got = {}}
  function r.fileno() return fd end
  function r.doRead()
    local data = uv.fs_read(fd, 4096)
    if data == "" then return reactor.ConnectionDone("end of file") end
    r.got[#r.got + 1] = data
  end
  function r.connectionLost(_, reason) onLost(reason) end
  return r
end

describe("IReactorFDSet", function()
  it("calls doRead and doWrite until removed; a result from doRead " ..
    "disconnects with it", function()
      local rfd, wfd = pipe()
      local lost = defer.Deferred()
      local R = reader(rfd, function(reason) lost:callback({reason}) end)
      local W = {n = 0}
      function W.fileno() return wfd end
      function W:doWrite()
        self.n = self.n + 1
        uv.fs_write(wfd, "x" .. self.n)
        if self.n == 3 then
          reactor.removeWriter(self)
          uv.fs_close(wfd)
        end
      end
      reactor.addReader(R)
      reactor.addWriter(W)
      assert.same({R}, reactor.getReaders())
      assert.same({W}, reactor.getWriters())
      local reason = H.wait(lost)[1]
      uv.fs_close(rfd)
      assert.is_truthy(reason:check(reactor.ConnectionDone))
      assert.equal("x1x2x3", table.concat(R.got))
      assert.same({}, reactor.getReaders())
      assert.same({}, reactor.getWriters())
    end)

  it("disconnects an object whose doRead raises, with the error",
    function()
      local rfd, wfd = pipe()
      local lost = defer.Deferred()
      local R = {}
      function R.fileno() return rfd end
      function R.doRead() error("boom") end
      function R.connectionLost(_, reason) lost:callback({reason}) end
      reactor.addReader(R)
      uv.fs_write(wfd, "x")
      local errors, got = H.loggedErrors(H.wait, lost)
      local reason = got[1]
      uv.fs_close(rfd)
      uv.fs_close(wfd)
      assert.equal(1, #errors)
      assert.matches("boom", tostring(reason.value), 1, true)
    end)

  it("removeAll returns every reader and writer once and stops them",
    function()
      local rfd, wfd = pipe()
      local called = 0
      local R = reader(rfd, function() called = called + 1 end)
      local W = {}
      function W.fileno() return wfd end
      function W.doWrite() end
      reactor.addReader(R)
      reactor.addWriter(W)
      reactor.addReader(R) -- twice: still once
      local all = reactor.removeAll()
      assert.equal(2, #all)
      assert.same({}, reactor.getReaders())
      reactor.removeReader(R) -- not watched: nothing happens
      H.runFor(0.05)
      uv.fs_close(rfd)
      uv.fs_close(wfd)
      assert.equal(0, called)
    end)

  it("tells a reader still watched at process exit it is lost", function()
    local out, _, code = H.runScript([[
      local reactor = require("spindle.reactor")
      local uv = require("luv")
      local fds = uv.pipe({nonblock = true}, {nonblock = true})
      local r = {}
      function r.fileno() return fds.read end
      function r.doRead() end
      function r.connectionLost(_, reason) print(reason.value.code) end
      reactor.addReader(r)
      reactor.callLater(0, reactor.stop)
      reactor.run()
      print("exiting")
    ]])
    assert.equal("exiting\nESHUTDOWN\n", out)
    assert.equal(0, code)
  end)

  it("raises for an object without a usable fileno", function()
    assert.has_error(function() reactor.addReader({}) end)
    assert.has_error(function()
      reactor.addReader({fileno = function() return -1 end})
    end)
  end)

  it("blames a descriptor libuv refuses on the caller's line", function()
    local src = debug.getinfo(1, "S").short_src
    local bad = {fileno = function() return 9999 end, doRead = print,
      doWrite = print}
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(function() reactor.addReader(bad) end)
    assert.is_false(ok)
    assert.equal(1, err:find(src .. ":" .. line .. ": cannot watch " ..
      "descriptor 9999: bad file descriptor (EBADF)", 1, true), err)
    line = debug.getinfo(1, "l").currentline + 1
    ok, err = pcall(function() reactor.addWriter(bad) end)
    assert.is_false(ok)
    assert.equal(1, err:find(src .. ":" .. line .. ": cannot watch " ..
      "descriptor 9999", 1, true), err)
    assert.same({}, reactor.getReaders())
    assert.same({}, reactor.getWriters())
    -- argument errors too
    line = debug.getinfo(1, "l").currentline + 1
    ok, err = pcall(function() reactor.addReader(5) end)
    assert.is_false(ok)
    assert.equal(1, err:find(src .. ":" .. line .. ": bad argument #1 " ..
      "to 'addReader' (object with fileno() expected, got number)", 1,
      true), err)
  end)
end)
