-- connectTCP's timeout counts from the call, not from the event loop's
-- last turn (libuv's cached clock). Regression: after the process had
-- blocked outside the reactor for longer than the timeout (a spec waiting
-- on child processes, a long computation), the next connect failed at
-- once with "took longer than N seconds" and left its socket open.
local H = require("spec.support.helper")
local reactor = require("spindle.reactor")
local protocol = require("spindle.protocol")
local defer = require("spindle.defer")

describe("connectTCP's timeout", function()
  it("counts from the call, even when the loop has not turned for longer " ..
     "than the timeout", function()
    local server = reactor.listenTCP(0,
      protocol.Factory.forProtocol(protocol.Protocol), nil, "127.0.0.1")
    H.wait(H.sleep(0)) -- the loop turns: its clock is read now
    -- The process blocks outside the reactor for longer than the timeout.
    assert.is_true(os.execute("sleep 1.5"))
    local made, lost = defer.Deferred(), defer.Deferred()
    local C = protocol.Protocol:extend({})
    function C:connectionMade()
      made:callback("made")
      self.transport:loseConnection()
    end
    function C:connectionLost() lost:callback(nil) end
    local f = protocol.ClientFactory.forProtocol(C)
    function f.clientConnectionFailed(_, _, reason) made:errback(reason) end
    reactor.connectTCP("127.0.0.1", server:getHost().port, f, 1)
    assert.equal("made", H.wait(made))
    H.wait(lost)
    H.wait(server:stopListening())
  end)
end)
