-- spec/log_spec.lua: spindle.log (API.md, "spindle.log").
local log = require("spindle.log")
local failure = require("spindle.failure")

-- Run fn with only `observer` attached; put the others back after.
local function withObserver(observer, fn)
  local saved = log.observers()
  for _, o in ipairs(saved) do log.removeObserver(o) end
  log.addObserver(observer)
  local ok, err = pcall(fn)
  log.removeObserver(observer)
  for _, o in ipairs(saved) do log.addObserver(o) end
  assert(ok, err)
end

describe("log.msg", function()
  it("sends an event with the message parts to observers", function()
    local events = {}
    withObserver(function(e) events[#events + 1] = e end, function()
      log.msg("hello", 42, nil, "end")
    end)
    assert.equal(1, #events)
    assert.is_false(events[1].isError)
    assert.equal("hello 42 nil end", log.textFromEventDict(events[1]))
    assert.is_number(events[1].time)
  end)
end)

describe("log.err", function()
  it("wraps an error value in a Failure and keeps why", function()
    local events = {}
    withObserver(function(e) events[#events + 1] = e end, function()
      log.err("broken", "while testing")
    end)
    local e = events[1]
    assert.is_true(e.isError)
    assert.is_true(failure.isFailure(e.failure))
    assert.equal("broken", e.failure.value)
    assert.equal("while testing", e.why)
    assert.matches("^while testing\nbroken", log.textFromEventDict(e))
  end)

  it("passes a Failure as it is", function()
    local f = failure.Failure("x")
    local got
    withObserver(function(e) got = e.failure end, function() log.err(f) end)
    assert.equal(f, got)
  end)
end)

describe("log.addObserver", function()
  it("rejects something that is not callable", function()
    assert.has_error(function() log.addObserver(5) end)
  end)

  it("removes an observer that raises and keeps logging", function()
    local good = 0
    local function bad() error("observer broke") end
    local function ok() good = good + 1 end
    local saved = log.observers()
    for _, o in ipairs(saved) do log.removeObserver(o) end
    log.addObserver(bad)
    log.addObserver(ok)
    local stderr = io.stderr
    io.stderr = {write = function() end} -- luacheck: ignore
    local pok, perr = pcall(function()
      log.msg("one")
      log.msg("two")
    end)
    io.stderr = stderr -- luacheck: ignore
    log.removeObserver(ok)
    for _, o in ipairs(saved) do log.addObserver(o) end
    assert(pok, perr)
    assert.equal(2, good)
    for _, o in ipairs(log.observers()) do assert.not_equal(bad, o) end
  end)
end)

describe("log.removeObserver", function()
  it("stops events going to the observer", function()
    local n = 0
    local function obs() n = n + 1 end
    withObserver(obs, function()
      log.msg("a")
      log.removeObserver(obs)
      log.msg("b")
    end)
    assert.equal(1, n)
  end)
end)

describe("log.FileLogObserver", function()
  it("writes a time-stamped line per event", function()
    local path = os.tmpname()
    local file = assert(io.open(path, "w"))
    withObserver(log.FileLogObserver(file), function()
      log.msg("line one")
      log.err("bad thing", "context")
    end)
    file:close()
    local text = assert(io.open(path)):read("a")
    os.remove(path)
    assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%+0000 " ..
      "%[%-%] line one\n", text)
    assert.matches("%[%-%] context\n\tbad thing", text)
  end)
end)

describe("log module", function()
  it("is strict", function()
    assert.has_error(function() return log.mgs end,
      "log has no field 'mgs' (did you mean 'msg'?)")
  end)
end)
