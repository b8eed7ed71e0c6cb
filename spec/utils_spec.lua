-- spindle.utils: getProcessOutput, getProcessValue and
-- getProcessOutputAndValue on real child processes (twisted.internet.utils).
local reactor = require("spindle.reactor")
local utils = require("spindle.utils")
local H = require("spec.support.helper")

local function wait(d) return H.wait(d, 20) end

describe("utils.getProcessOutput", function()
  it("gives the child's standard output, args after the program name",
    function()
      assert.equal("hi there\n",
        wait(utils.getProcessOutput("echo", {"hi", "there"})))
    end)

  it("passes env and path", function()
    assert.equal("bar /tmp\n", wait(utils.getProcessOutput("/bin/sh",
      {"-c", "echo $FOO $(pwd)"}, {FOO = "bar"}, "/tmp")))
  end)

  it("fails with UnexpectedErrorOutput on stderr, whose processEnded " ..
    "follows the child", function()
      local f = H.waitForFailure(utils.getProcessOutput("/bin/sh",
        {"-c", "echo bad >&2; exit 4"}))
      assert.is_truthy(f:check(utils.UnexpectedErrorOutput))
      assert.equal("UnexpectedErrorOutput: got stderr: b'bad\\n'",
        tostring(f.value))
      local ended = H.waitForFailure(f.value.processEnded)
      assert.is_truthy(ended:check(reactor.ConnectionClosed))
    end)

  it("mixes stderr in with errortoo", function()
    assert.equal("o\ne\n", wait(utils.getProcessOutput("/bin/sh",
      {"-c", "echo o; echo e >&2"}, nil, nil, nil, true)))
  end)
end)

describe("utils.getProcessValue", function()
  it("gives the exit code", function()
    assert.equal(7, wait(utils.getProcessValue("/bin/sh", {"-c", "exit 7"})))
    assert.equal(0, wait(utils.getProcessValue("true")))
  end)

  it("gives nil for a child a signal ended", function()
    assert.is_nil(wait(utils.getProcessValue("/bin/sh", {"-c", "kill $$"})))
  end)
end)

describe("utils.getProcessOutputAndValue", function()
  it("gives {out, err, code} and writes stdinBytes", function()
    local r = wait(utils.getProcessOutputAndValue("/bin/sh",
      {"-c", "cat; echo x >&2; exit 2"}, nil, nil, nil, "input\n"))
    assert.same({"input\n", "x\n", 2}, r)
  end)

  it("fails with {out, err, signal} when a signal ends the child",
    function()
      local f = H.waitForFailure(utils.getProcessOutputAndValue("/bin/sh",
        {"-c", "echo o; kill -9 $$"}))
      assert.same({"o\n", "", 9}, f.value)
    end)

  it("raises on bad arguments", function()
    assert.has_error(function() utils.getProcessValue(nil) end,
      "bad argument #1 to 'getProcessValue' (string expected, got nil)")
  end)
end)
