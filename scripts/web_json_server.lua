-- scripts/web_json_server.lua: a small JSON API on spindle.web, with
-- Debian's lua-cjson: a list of notes kept in memory.
--
--   build/spindle scripts/web_json_server.lua [PORT] [--requests N]
--
-- PORT defaults to 8080 (0 picks a free one); the server listens on
-- 127.0.0.1 and prints "json api listening on 127.0.0.1:PORT". With
-- --requests N it stops after answering N requests. The API:
--
--   GET    /notes        -> 200 [{"id": 1, "text": "..."}, ...]
--   POST   /notes        {"text": "..."} -> 201 {"id": n, "text": "..."}
--   GET    /notes/<id>   -> 200 {"id": .., "text": ..} or 404
--   DELETE /notes/<id>   -> 204 or 404
--
-- Bad JSON or a missing "text" is 400 {"error": "..."}. Try it:
--
--   curl -d '{"text":"hi"}' http://127.0.0.1:8080/notes
--   curl http://127.0.0.1:8080/notes
local reactor = require("spindle.reactor")
local web = require("spindle.web")
local cjson = require("cjson")

local portArg, maxRequests = 8080, nil
local i = 1
while arg[i] do
  if arg[i] == "--requests" then i = i + 1; maxRequests = tonumber(arg[i])
  else portArg = assert(math.tointeger(tonumber(arg[i])), "bad port") end
  i = i + 1
end

local notes, order, nextId = {}, {}, 1

-- Answer with a JSON document and a status.
local function json(request, code, value)
  request:setResponseCode(code)
  request:setHeader("content-type", "application/json")
  if value == nil then return "" end
  return cjson.encode(value)
end

--- Notes: the collection (GET lists, POST adds); its children are the
-- notes by id.
local Notes = web.Resource:extend({})

function Notes:render_GET(request)
  local list = {}
  for _, id in ipairs(order) do
    if notes[id] then list[#list + 1] = notes[id] end
  end
  if #list == 0 then return json(request, 200, cjson.empty_array) end
  return json(request, 200, list)
end

function Notes:render_POST(request)
  local ok, doc = pcall(cjson.decode, request.content:read())
  if not ok or type(doc) ~= "table" or type(doc.text) ~= "string" then
    return json(request, 400, {error = 'expected {"text": "..."}'})
  end
  local note = {id = nextId, text = doc.text}
  notes[nextId], order[#order + 1] = note, nextId
  nextId = nextId + 1
  request:setHeader("location", "/notes/" .. note.id)
  return json(request, 201, note)
end

--- Note: one note, by the id in the path.
local Note = web.Resource:extend({isLeaf = true})

function Note:__init(id)
  web.Resource.__init(self)
  self.id = id
end

function Note:render_GET(request)
  local note = notes[self.id]
  if note == nil then return json(request, 404, {error = "no such note"}) end
  return json(request, 200, note)
end

function Note:render_DELETE(request)
  if notes[self.id] == nil then
    return json(request, 404, {error = "no such note"})
  end
  notes[self.id] = nil
  return json(request, 204, nil)
end

function Notes:getChild(path)
  return Note(math.tointeger(tonumber(path)) or -1)
end

local root = web.Resource()
root:putChild("notes", Notes())

local site = web.Site(root)
if maxRequests then
  local answered = 0
  local Counting = web.Request:extend({})
  function Counting:_finished()
    web.Request._finished(self)
    answered = answered + 1
    if answered == maxRequests then reactor.callLater(0, reactor.stop) end
  end
  site.requestFactory = Counting
end

local port = reactor.listenTCP(portArg, site, nil, "127.0.0.1")
print("json api listening on 127.0.0.1:" .. port:getHost().port)
io.stdout:flush()
reactor.run()
