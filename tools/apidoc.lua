--- tools/apidoc.lua OUTDIR: gather the doc comment of every public function
-- of spindle into LDoc input files, one per module, in OUTDIR (make doc then
-- runs ldoc over them into doc/api/). Run it under spindle from the top of
-- the tree with SPINDLE_LUA_PATH=lua/?.lua, so Lua functions are found in
-- their source files.
--
-- Public means: every function field of a module listed in
-- lua/spindle/init.lua, every own method of a class (a table with
-- `extend`) in such a module, and every method of a C userdata type (each
-- entry of a `*_methods` luaL_Reg array in runtime/*.c). A Lua function's
-- doc is the `---` comment block just above its definition; a C function's
-- is the comment just above `static int cfunc(`. Exits 1, naming them, when
-- any public function has none.
local outdir = assert(arg[1], "usage: apidoc.lua OUTDIR")

local function readlines(path)
  local lines = {}
  for line in io.lines(path) do lines[#lines + 1] = line end
  return lines
end

local function strip_lua_comment(line)
  return (line:gsub("^%s*%-%-%-?%s?", ""))
end

-- The `---` block that ends on the line above `line` in a Lua file.
local lua_files = {}
local function lua_doc(path, line)
  local lines = lua_files[path]
  if not lines then
    lines = readlines(path)
    lua_files[path] = lines
  end
  local i, block = line - 1, {}
  -- A closure made by a factory (`local function makeRun(cls) return
  -- function(...)`) takes the doc of its factory.
  if lines[i] and lines[i]:match("^%s*local function") then i = i - 1 end
  while i >= 1 and lines[i]:match("^%s*%-%-") do
    table.insert(block, 1, strip_lua_comment(lines[i]))
    if lines[i]:match("^%s*%-%-%-") then return table.concat(block, "\n") end
    i = i - 1
  end
  return nil
end

-- C: for every luaL_Reg entry, the Lua name, the C function and its doc.
local cdoc = {}      -- cfunc -> doc text
local cnames = {}    -- lua name -> list of {file, array, cfunc}
local cmethods = {}  -- list of {file, array, name, cfunc}

local function c_comment_before(lines, i)
  -- lines[i] is "static int cfunc(...": take the /* ... */ block above it.
  local j = i - 1
  if not (lines[j] and lines[j]:match("%*/%s*$")) then return nil end
  local block = {}
  while j >= 1 do
    local l = lines[j]
    table.insert(block, 1, l)
    if l:match("^%s*/%*") then break end
    j = j - 1
  end
  local text = table.concat(block, "\n")
  text = text:gsub("^%s*/%*+%s?", ""):gsub("%s*%*/%s*$", "")
  text = text:gsub("\n%s*%*%*? ?", "\n")
  return text
end

local function scan_c(path)
  local lines = readlines(path)
  local src = table.concat(lines, "\n")
  for i, l in ipairs(lines) do
    local f = l:match("^static int ([%w_]+)%(lua_State") or
      l:match("^int ([%w_]+)%(lua_State")
    if f then cdoc[f] = c_comment_before(lines, i) end
  end
  for array, body in src:gmatch("luaL_Reg%s+([%w_]+)%[%]%s*=%s*(%b{})") do
    for name, cfunc in body:gmatch('{%s*"([^"]+)"%s*,%s*([%w_]+)%s*}') do
      local e = {file = path, array = array, name = name, cfunc = cfunc}
      cnames[name] = cnames[name] or {}
      table.insert(cnames[name], e)
      if array:match("_methods$") and not name:match("^__") then
        cmethods[#cmethods + 1] = e
      end
    end
  end
end

local p = io.popen("ls runtime/*.c")
for path in p:lines() do scan_c(path) end
p:close()

-- The public modules: the names spindle's lazy table loads.
local modules = {}
for line in io.lines("lua/spindle/init.lua") do
  for name in line:gmatch("([%w_]+)%s*=%s*true") do
    modules[#modules + 1] = name
  end
end
table.sort(modules)

-- The C file a userdata method belongs to decides its module's page.
local cfile_module = {
  ["runtime/defer.c"] = "defer", ["runtime/failure.c"] = "failure",
  ["runtime/ssl.c"] = "ssl", ["runtime/basic.c"] = "basic",
  ["runtime/linebuf.c"] = "basic", ["runtime/pool.c"] = "threads",
}

local pages = {}    -- module -> list of {name, doc}
local missing = {}
local seen = {}

local function add(mod, name, doc, where)
  if seen[mod .. " " .. name] then return end
  seen[mod .. " " .. name] = true
  if not doc or doc:match("^%s*$") then
    missing[#missing + 1] = name .. " (" .. where .. ")"
    return
  end
  pages[mod] = pages[mod] or {}
  table.insert(pages[mod], {name = name, doc = doc})
end

local function cfunc_for(k)
  local list = cnames[k]
  if not list then return nil end
  for _, e in ipairs(list) do
    if e.array:match("_funcs$") then return e end
  end
  return list[1]
end

local function doc_function(mod, qname, key, f)
  local info = debug.getinfo(f, "S")
  if info.what == "C" then
    local e = cfunc_for(key)
    add(mod, qname, e and cdoc[e.cfunc], e and e.file or "C")
  else
    local path = info.source:match("^@(.*)")
    add(mod, qname, path and lua_doc(path, info.linedefined),
      (path or "?") .. ":" .. info.linedefined)
  end
end

local function sorted_pairs(t)
  local keys = {}
  for k in pairs(t) do
    if type(k) == "string" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  local i = 0
  return function()
    i = i + 1
    if keys[i] then return keys[i], rawget(t, keys[i]) end
  end
end

for _, mod in ipairs(modules) do
  local m = require("spindle." .. mod)
  for k, v in sorted_pairs(m) do
    if k:sub(1, 1) ~= "_" then
      if type(v) == "function" then
        doc_function(mod, mod .. "." .. k, k, v)
      elseif type(v) == "table" and type(rawget(v, "extend")) ~= "nil" or
          type(v) == "table" and rawget(v, "super") ~= nil then
        for mk, mv in sorted_pairs(v) do
          if type(mv) == "function" and mk:sub(1, 1) ~= "_" then
            doc_function(mod, k .. ":" .. mk, mk, mv)
          end
        end
      end
    end
  end
end

for _, e in ipairs(cmethods) do
  local mod = cfile_module[e.file] or "reactor"
  local typename = e.array:gsub("_methods$", "")
  typename = typename:sub(1, 1):upper() .. typename:sub(2)
  add(mod, typename .. ":" .. e.name, cdoc[e.cfunc], e.file)
end

if #missing > 0 and not os.getenv("APIDOC_ALLOW_MISSING") then
  table.sort(missing)
  io.stderr:write("apidoc: public functions without a doc comment:\n  ",
    table.concat(missing, "\n  "), "\n")
  os.exit(1)
end

-- LDoc input: one file per module, each function a @function entry.
local function module_doc(mod)
  local ok, lines = pcall(readlines, "lua/spindle/" .. mod .. ".lua")
  if ok then
    local block = {}
    for _, l in ipairs(lines) do
      if not l:match("^%-%-") then break end
      block[#block + 1] = strip_lua_comment(l)
    end
    if #block > 0 then return table.concat(block, "\n") end
  end
  return "spindle." .. mod
end

local function ldoc_text(s)
  -- Each line becomes a comment line; '@' would start an LDoc tag.
  s = s:gsub("@", "(at)")
  return "-- " .. s:gsub("\n", "\n-- ")
end

os.execute("mkdir -p " .. outdir)
local count = 0
for _, mod in ipairs(modules) do
  local f = assert(io.open(outdir .. "/" .. mod .. ".lua", "w"))
  f:write("-", ldoc_text(module_doc(mod)), "\n-- @module spindle.", mod,
    "\n\n")
  for _, e in ipairs(pages[mod] or {}) do
    f:write("-", ldoc_text(e.doc), "\n-- @function ", e.name, "\n\n")
    count = count + 1
  end
  f:close()
end
print(string.format("apidoc: %d modules, %d public functions documented",
  #modules, count))
