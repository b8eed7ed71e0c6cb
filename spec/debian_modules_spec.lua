-- Debian's Lua 5.4 C modules load in spindle as they do in lua5.4 (the
-- binary links the system liblua5.4 and exports its symbols), and work
-- beside the reactor.
local process = require("spec.support.process")

describe("Debian's Lua modules", function()
  it("lua-cjson encodes and decodes inside a reactor callback", function()
    local r = process.run({"-e", [[
      local cjson = require("cjson")
      local reactor = require("spindle.reactor")
      reactor.callLater(0, function()
        local t = cjson.decode('{"name":"spindle","ports":[8000,8443]}')
        print(t.name, t.ports[2] == 8443, cjson.encode({ok = true}))
        reactor.stop()
      end)
      reactor.run()
    ]]})
    assert.equal("", r.stderr)
    assert.equal(0, r.status)
    assert.equal("spindle\ttrue\t{\"ok\":true}\n", r.stdout)
  end)

  it("lua-lpeg matches a grammar", function()
    local r = process.run({"-e", [[
      local lpeg = require("lpeg")
      local num = lpeg.C(lpeg.R("09") ^ 1) / tonumber
      local list = lpeg.Ct(num * ("," * num) ^ 0) * -1
      local t = list:match("10,20,30")
      print(#t, t[1] + t[2] + t[3], list:match("1,x"))
    ]]})
    assert.equal("", r.stderr)
    assert.equal(0, r.status)
    assert.equal("3\t60\tnil\n", r.stdout)
  end)
end)
