--- spindle: every module, loaded on first use (spindle.reactor, ...).
local modules = {
  defer = true, failure = true, reactor = true, protocol = true,
  basic = true, ssl = true, threads = true, task = true, endpoints = true,
  log = true, application = true, policies = true, cooperator = true,
  utils = true, stdio = true, web = true,
}

local M = {}
local getters = {}
for name in pairs(modules) do
  getters[name] = function()
    local m = require("spindle." .. name)
    rawset(M, name, m)
    return m
  end
end

return require("spindle._core").strict("spindle", M, getters)
