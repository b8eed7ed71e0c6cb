-- Smoke test of scripts/: every script that exits by itself runs in its
-- own spindle process and must print exactly its expected output (that of
-- its Twisted original) and exit 0 with nothing on stderr.
--
-- Adding a script: put an entry in `expected` below (args, stdout, and
-- optionally code and stderr, a substring); its key is the script's path,
-- or a label with the path in `script` (to run one script several ways). A script that does not exit
-- by itself (a server) goes in `servers` with the reason. A script in
-- neither table fails the spec, so none goes untested by accident.
local H = require("spec.support.helper")

local expected = {
  ["scripts/defer_basic.lua"] = {
    stdout = "Square of 4 is 16\n",
  },
  ["scripts/defer_basic.lua call_error"] = {
    script = "scripts/defer_basic.lua", args = {"call_error"},
    stdout = "error when process \n",
  },
  ["scripts/defer_chain.lua"] = {
    stdout = "Square of 5 is 25\nTwice of 5 is 10\n",
  },
  ["scripts/defer_chaindeferred.lua"] = {
    stdout = "D1 got hello\nD2 got hello\nD1 called: true, D2 called: true\n"
      .. "D3 called: false, D4 called: true\n",
  },
  ["scripts/defer_addcallback_args.lua"] = {
    stdout = "process(10, 1, 2) = 13\nbound arguments: 3 (nil, 7, nil)\n",
  },
  ["scripts/reactor_calllater.lua"] = {
    stdout = "Square of 5 is 25\nTwice of 5 is 10\n",
  },
  ["scripts/reactor_stop.lua"] = {
    stdout = "Program finished!\n",
  },
}

local servers = {
  -- ["scripts/echo_server.lua"] = "serves until killed",
  ["scripts/udp_echo.lua"] = "timestamped output, needs a UDP peer: " ..
    "run by spec/udp_spec.lua",
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

  it("has an expectation or a reason for every script", function()
    assert.is_true(#scripts > 0)
    local covered = {}
    for label, e in pairs(expected) do covered[e.script or label] = true end
    for _, s in ipairs(scripts) do
      assert.is_truthy(covered[s] or servers[s],
        s .. " is in neither `expected` nor `servers` of scripts_spec.lua")
    end
  end)

  -- Start every script at once (each waits on its own timers), then
  -- collect each one's output: the suite waits for the slowest only.
  local runs = {}
  local labels = {}
  for label in pairs(expected) do labels[#labels + 1] = label end
  table.sort(labels)

  local function startAll()
    for _, s in ipairs(labels) do
      local e = expected[s]
      if runs[s] == nil then
        local errfile = os.tmpname()
        local cmd = {shellQuote(H.SPINDLE), shellQuote(e.script or s)}
        for _, a in ipairs(e.args or {}) do cmd[#cmd + 1] = shellQuote(a) end
        -- timeout bounds a script that hangs.
        runs[s] = {
          errfile = errfile,
          pipe = assert(io.popen("timeout 30 " .. table.concat(cmd, " ") ..
            " 2>" .. errfile)),
        }
      end
    end
  end

  for _, s in ipairs(labels) do
    local e = expected[s]
    if e then
      it(s .. " prints what its Twisted original prints", function()
        startAll()
        local run = runs[s]
        local out = run.pipe:read("a")
        local _, _, code = run.pipe:close()
        local err = readAll(run.errfile)
        os.remove(run.errfile)
        assert.are.equal(e.stdout, out)
        assert.are.equal(e.code or 0, code)
        if e.stderr then
          assert.truthy(err:find(e.stderr, 1, true), err)
        else
          assert.are.equal("", err)
        end
      end)
    end
  end
end)
