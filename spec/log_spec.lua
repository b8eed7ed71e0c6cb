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

-- Run fn with io.stderr replaced by a recorder; returns what was written.
local function captureStderr(fn)
  local written = {}
  local stderr = io.stderr
  io.stderr = {write = function(_, ...) -- luacheck: ignore 122
    for _, s in ipairs({...}) do written[#written + 1] = tostring(s) end
  end, flush = function() end}
  local ok, err = pcall(fn)
  io.stderr = stderr -- luacheck: ignore 122
  assert(ok, err)
  return table.concat(written)
end

describe("log.addObserver", function()
  it("rejects something that is not callable, blaming the caller",
    function()
      assert.has_error(function() log.addObserver(5) end,
        "bad argument #1 to 'addObserver' (callable expected, got number)")
      local before = #log.observers()
      local ok, err = pcall(function() log.addObserver(5) end)
      assert.is_false(ok)
      assert.matches("^[^\n]*log_spec%.lua:%d+: bad argument", err)
      assert.equal(before, #log.observers())
    end)

  it("reports an observer that raises on stderr and keeps it", function()
    local good, badCalls = 0, 0
    local function bad()
      badCalls = badCalls + 1
      error("observer broke")
    end
    local function ok() good = good + 1 end
    local saved = log.observers()
    for _, o in ipairs(saved) do log.removeObserver(o) end
    log.addObserver(bad)
    log.addObserver(ok)
    local out
    local pok, perr = pcall(function()
      out = captureStderr(function()
        log.msg("one")
        log.msg("two")
      end)
    end)
    local kept = log.observers()
    log.removeObserver(ok)
    log.removeObserver(bad)
    for _, o in ipairs(saved) do log.addObserver(o) end
    assert(pok, perr)
    assert.equal(2, good)
    assert.equal(2, badCalls)
    assert.same({bad, ok}, kept)
    assert.truthy(out:find("observer broke", 1, true), out)
  end)

  it("keeps the default observer after an unformattable event", function()
    local path = os.tmpname()
    local file = assert(io.open(path, "w"))
    local observer = log.FileLogObserver(file)
    local out = captureStderr(function()
      withObserver(observer, function()
        log.err("boom", {reason = 1})
        log.msg(setmetatable({}, {__tostring = function() error("x") end}))
        log.msg(setmetatable({}, {__tostring = function() return 1 end}))
        log.msg("still logging")
      end)
    end)
    file:close()
    local text = assert(io.open(path)):read("a")
    os.remove(path)
    assert.equal("", out)
    assert.matches("%] table: 0x%x+\n\tboom", text)
    assert.matches("<table at 0x%x+ with tostring error: [^\n]*x>\n", text)
    assert.matches("%] still logging\n", text)
    local lines = 0
    for _ in text:gmatch("%+0000 %[%-%]") do lines = lines + 1 end
    assert.equal(4, lines)
  end)
end)

describe("log.textFromEventDict", function()
  it("formats any why and any message part without raising", function()
    local bad = setmetatable({}, {__tostring = function() error("no") end})
    assert.matches("^42\nbroken", log.textFromEventDict({isError = true,
      failure = failure.Failure("broken"), why = 42}))
    assert.matches("^<table at 0x%x+ with tostring error: .*no>\nbroken",
      log.textFromEventDict({isError = true,
        failure = failure.Failure("broken"), why = bad}))
    assert.matches("^a <table at 0x%x+ with tostring error: .*no.* c$",
      log.textFromEventDict({message = {"a", bad, "c", n = 3}}))
    local text = log.textFromEventDict({isError = true,
      failure = failure.Failure(bad)})
    assert.matches("^Unhandled Error\n<table at 0x%x+ with tostring error",
      text)
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

describe("log.startLogging", function()
  it("refuses what is not a file and keeps logging where it did " ..
    "(issue 7 item 7)", function()
      local seen = {}
      withObserver(function(e) seen[#seen + 1] = e end, function()
        for _, bad in ipairs({"stdout", 42, {}}) do
          local ok, err = pcall(log.startLogging, bad)
          assert.is_false(ok)
          assert.matches("bad argument #1 to 'startLogging' %(file " ..
            "expected, got " .. type(bad) .. "%)", err)
        end
        log.msg("still here")
      end)
      assert.equal(1, #seen)
      assert.equal("still here", log.textFromEventDict(seen[1]))
    end)

  it("logs to a file it is given", function()
    local path = os.tmpname()
    local file = assert(io.open(path, "w"))
    local saved = log.observers()
    local observer = log.startLogging(file)
    log.msg("to the file")
    log.removeObserver(observer)
    for _, o in ipairs(saved) do
      log.removeObserver(o)
      log.addObserver(o)
    end
    file:close()
    local text = assert(io.open(path)):read("a")
    os.remove(path)
    assert.matches("%[%-%] to the file\n", text)
  end)
end)

describe("log module", function()
  it("is strict", function()
    assert.has_error(function() return log.mgs end,
      "log has no field 'mgs' (did you mean 'msg'?)")
  end)
end)
