-- scripts/web_json_client.lua: calls scripts/web_json_server.lua's API
-- with spindle.web's Agent (one persistent connection) and lua-cjson.
--
--   build/spindle scripts/web_json_client.lua [URL]
--
-- URL defaults to http://127.0.0.1:8080. It adds two notes, lists them,
-- deletes the first, fetches it again (404) and prints each step:
--
--   created note 1: buy milk
--   created note 2: write specs
--   2 notes: buy milk, write specs
--   deleted note 1: 204
--   note 1: 404 no such note
local reactor = require("spindle.reactor")
local task = require("spindle.task")
local defer = require("spindle.defer")
local web = require("spindle.web")
local cjson = require("cjson")

local base = (arg[1] or "http://127.0.0.1:8080"):gsub("/$", "")

local main = defer.inlineCallbacks(function()
  local pool = web.HTTPConnectionPool(reactor)
  local agent = web.Agent(reactor, {pool = pool})
  local json = {["content-type"] = "application/json"}

  -- One call: method, path, optional document -> status, decoded body.
  local function call(method, path, doc)
    local body = doc and cjson.encode(doc) or nil
    local resp = defer.await(agent:request(method, base .. path, json, body))
    local text = defer.await(web.readBody(resp))
    return resp.code, text ~= "" and cjson.decode(text) or nil
  end

  for _, text in ipairs({"buy milk", "write specs"}) do
    local _, note = call("POST", "/notes", {text = text})
    print(("created note %d: %s"):format(note.id, note.text))
  end
  local _, list = call("GET", "/notes")
  local texts = {}
  for _, note in ipairs(list) do texts[#texts + 1] = note.text end
  print(("%d notes: %s"):format(#list, table.concat(texts, ", ")))
  print("deleted note 1: " .. call("DELETE", "/notes/1"))
  local code, err = call("GET", "/notes/1")
  print(("note 1: %d %s"):format(code, err.error))
  defer.await(pool:closeCachedConnections())
end)

task.react(function() return main() end)
