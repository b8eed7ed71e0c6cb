--- tools/apidoc.lua OUTDIR: gather the doc comment of every public function
-- of spindle into LDoc input files, one per module, in OUTDIR (make doc then
-- runs ldoc over them into doc/api/). Run it under spindle from the top of
-- the tree with SPINDLE_LUA_PATH=lua/?.lua, so Lua functions are found in
-- their source files.
--
-- Public means: every function field of a module listed in
-- lua/spindle/init.lua (or in REQUIRED_BY_NAME below: spindle.inspect),
-- every own method of a class (a table with `extend`) or mixin in such a
-- module or reachable from one (Process, the transport spawnProcess
-- hands a ProcessProtocol), with those inherited from private bases, and
-- every method of a C userdata type that users hold (each entry of a
-- `*_methods` luaL_Reg array in runtime/*.c, named after the metatable
-- it is registered under: "spindle.Transport" -> Transport).
--
-- A Lua function's doc is the `---` comment block just above its
-- definition (above its factory for a closure, above the loop for
-- functions made in a loop, above `Class.name = C.func` for a C function
-- Lua installs); a C function's is the comment just above
-- `static int cfunc(`. A method without one that overrides a documented
-- method of an ancestor class shows that doc as "Overrides Base:name:
-- ...". Exits 1, naming them, when any public function has no doc.
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
  -- Functions made in a loop (`for _, name in ipairs(NAMES) do
  -- Class[name] = function(...)`) share one linedefined: they take the
  -- doc written above the loop.
  if lines[i] and lines[i]:match("^%s*for%s.*%sdo%s*$") then i = i - 1 end
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

-- The metatable name users see (in errors, in tostring) of the userdata
-- type whose methods a luaL_Reg array holds: "spindle.Transport" for
-- stream.c's transport_methods and for tcp.c's transport_tcp_methods,
-- which sp_stream_add_methods adds to that same type.
local macros = {}     -- C macro -> its string (or the macro it names)
local array_mt = {}   -- "file array" -> metatable name or macro

local function macro_value(v)
  local n = 0
  while v and not v:match('^"') and n < 10 do
    v, n = macros[v], n + 1
  end
  return v and v:match('^"(.*)"$')
end

local function scan_c(path)
  local lines = readlines(path)
  local src = table.concat(lines, "\n")
  for i, l in ipairs(lines) do
    local f = l:match("^static int ([%w_]+)%(lua_State") or
      l:match("^int ([%w_]+)%(lua_State")
    if f then cdoc[f] = c_comment_before(lines, i) end
    local name, value = l:match('^#define%s+([%w_]+)%s+([%w_"%.]+)%s*$')
    if name then macros[name] = value end
  end
  if not path:match("%.c$") then return end
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
  -- A function set on a module table one at a time.
  for cfunc, name in src:gmatch('lua_pushcfunction%(L,%s*([%w_]+)%);%s*' ..
      'lua_setfield%(L,%s*%-2,%s*"([%w_]+)"%)') do
    cnames[name] = cnames[name] or {}
    table.insert(cnames[name],
      {file = path, array = "pushed_funcs", name = name, cfunc = cfunc})
  end
  -- Where each methods array is registered, and under which metatable.
  for mt, array in src:gmatch("sp_class_newx?%(L,%s*([%w_\"%.]+),%s*" ..
      "([%w_]+)") do
    array_mt[path .. " " .. array] = mt
  end
  for array in src:gmatch("sp_stream_add_methods%(L,%s*([%w_]+)%)") do
    array_mt[path .. " " .. array] = "SP_TRANSPORT_MT"
  end
  -- luaL_newmetatable(L, MT) ... luaL_setfuncs(L, array, n): the nearest
  -- metatable made before the array is set.
  local last_mt
  for _, l in ipairs(lines) do
    last_mt = l:match("luaL_newmetatable%(L,%s*([%w_\"%.]+)%)") or last_mt
    local array = l:match("luaL_setfuncs%(L,%s*([%w_]+_methods),")
    if array and last_mt then array_mt[path .. " " .. array] = last_mt end
  end
end

local p = io.popen("ls runtime/*.h runtime/*.c")
for path in p:lines() do scan_c(path) end
p:close()

-- The public modules: the names spindle's lazy table loads, and those
-- users require by name that it does not load.
local modules = {}
for line in io.lines("lua/spindle/init.lua") do
  for name in line:gmatch("([%w_]+)%s*=%s*true") do
    modules[#modules + 1] = name
  end
end
local REQUIRED_BY_NAME = {
  inspect = "require('spindle.inspect'): the REPL's views (README)",
}
for name in pairs(REQUIRED_BY_NAME) do modules[#modules + 1] = name end
table.sort(modules)

-- Every other file of lua/spindle/ must be a part of a public module (its
-- functions are documented there) or internal; a new file that is
-- neither stops the tool, so a new module is not left out unseen.
local PART_OF = {
  certificates = "ssl", process = "reactor", fdset = "reactor",
  lifecycle = "reactor", class = "protocol (Object)", web_client = "web",
}
local INTERNAL_MODULES = {
  init = "the lazy spindle table", check = "argument checks",
  strict = "strict module tables", repl = "the prompt's policy",
}
do
  local known = {}
  for _, m in ipairs(modules) do known[m] = true end
  local unknown = {}
  local ls = io.popen("ls lua/spindle/*.lua")
  for path in ls:lines() do
    local name = path:match("([%w_]+)%.lua$")
    if not (known[name] or PART_OF[name] or INTERNAL_MODULES[name]) then
      unknown[#unknown + 1] = path
    end
  end
  ls:close()
  if #unknown > 0 then
    io.stderr:write("apidoc: neither a public module (lua/spindle/init.lua",
      " or REQUIRED_BY_NAME) nor listed in PART_OF or INTERNAL_MODULES ",
      "(tools/apidoc.lua):\n  ", table.concat(unknown, "\n  "), "\n")
    os.exit(1)
  end
end

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

local function is_class(v)
  return type(v) == "table" and
    (rawget(v, "extend") ~= nil or rawget(v, "super") ~= nil)
end

-- A class is named by its __name (DN and DistinguishedName are one
-- class), else by the field that holds it.
local function class_name(cls, key)
  local n = rawget(cls, "__name")
  return type(n) == "string" and n or key
end

-- Load every public module first, so that the C functions of spindle's C
-- modules can be told apart by value below.
local loaded = {}
for _, mod in ipairs(modules) do loaded[mod] = require("spindle." .. mod) end

-- C function -> the name its C module registers it under, so a C function
-- that Lua re-exports under another name (basic.lua's
-- `LineReceiver.dataReceived = C.lineDataReceived`) finds its luaL_Reg
-- entry.
local cfunc_key = {}
for name, t in sorted_pairs(package.loaded) do
  if name:match("^spindle") and type(t) == "table" then
    for k, v in sorted_pairs(t) do
      if type(v) == "function" and debug.getinfo(v, "S").what == "C" then
        cfunc_key[v] = cfunc_key[v] or k
      end
    end
  end
end

-- The `---` block above `Owner.key = ...` in a Lua file: how Lua code
-- documents a C function it installs as a method or module function.
local function assign_doc(files, owner, key)
  local pat = "^" .. owner:gsub("%p", "%%%0") .. "%." .. key .. "%s*="
  for _, path in ipairs(files) do
    local ok, lines = pcall(readlines, path)
    if ok then
      lua_files[path] = lua_files[path] or lines
      for i, l in ipairs(lines) do
        if l:match(pat) then
          local doc = lua_doc(path, i)
          if doc then return doc end
        end
      end
    end
  end
  return nil
end

local lua_paths = {}
do
  local ls = io.popen("ls lua/spindle/*.lua")
  for path in ls:lines() do lua_paths[#lua_paths + 1] = path end
  ls:close()
end

-- f's own doc comment (not inherited), and where f is. owner is the class
-- name or "M" for a module function; mod the module whose file to search
-- first.
local function own_doc(f, key, owner, mod)
  local info = debug.getinfo(f, "S")
  if info.what == "C" then
    local files = {"lua/spindle/" .. mod .. ".lua"}
    if owner ~= "M" then files = lua_paths end
    local doc = assign_doc(files, owner, key)
    if doc then return doc, "C" end
    local e = cfunc_for(cfunc_key[f] or key)
    return e and cdoc[e.cfunc], e and e.file or "C"
  end
  local path = info.source:match("^@(.*)")
  return path and lua_doc(path, info.linedefined),
    (path or "?") .. ":" .. info.linedefined
end

-- A method without a doc of its own that overrides a documented method of
-- an ancestor (up the `super` chain) shows that doc, saying so.
local function inherited_doc(cls, key)
  local base = rawget(cls, "super")
  while is_class(base) do
    local bf = rawget(base, key)
    if type(bf) == "function" then
      local bname = class_name(base, "?")
      local doc = own_doc(bf, key, bname, "")
      if doc then
        return ("Overrides %s:%s: %s"):format(bname, key, doc)
      end
    end
    base = rawget(base, "super")
  end
  return nil
end

local function doc_function(mod, qname, key, f, owner, cls)
  local doc, where = own_doc(f, key, owner, mod)
  if not doc and cls then doc = inherited_doc(cls, key) end
  add(mod, qname, doc, where)
end

-- "Class:method" for a method, "Class.func" for a Lua function whose
-- first parameter is not self (nor, in a class, cls: Factory:forProtocol):
-- KeyPair.generate(...), a mixin's TimeoutMixin.mixInto(cls).
local function member_name(cname, key, f, in_class)
  local first = debug.getlocal(f, 1)
  if debug.getinfo(f, "S").what == "Lua" and first ~= "self" and
      (first ~= "cls" or not in_class) then
    return cname .. "." .. key
  end
  return cname .. ":" .. key
end

-- A class's own methods, and those it inherits from private ancestors
-- (named "_..."): TCPClient's startService lives in _AbstractClient.
local function doc_class(mod, cls, key)
  local cname = class_name(cls, key)
  local c, done = cls, {}
  repeat
    for mk, mv in sorted_pairs(c) do
      if type(mv) == "function" and mk:sub(1, 1) ~= "_" and not done[mk] then
        done[mk] = true
        doc_function(mod, member_name(cname, mk, mv, is_class(c)), mk, mv,
          class_name(c, "?"), c)
      end
    end
    c = rawget(c, "super")
  until not is_class(c) or class_name(c, "?"):sub(1, 1) ~= "_"
end

-- Classes no module exports but users still hold an instance of: the
-- transport spawnProcess gives a ProcessProtocol, Object (the root of
-- every class: extend, new, isinstance). Found by walking from each
-- module through table fields and function upvalues; a class goes to the
-- module nearest to it (or its HOME). Internal classes (a name starting
-- with "_", or listed here with the reason) are skipped.
local HOME = {Object = "protocol"}
local INTERNAL = {
  ProcessPipe = "the protocol on one of a child's pipes, inside Process",
  StandardIOHalf = "the protocol on one of StandardIO's two streams",
}
local exported, reached = {}, {}
for _, mod in ipairs(modules) do
  for _, v in sorted_pairs(loaded[mod]) do
    if is_class(v) then exported[v] = true end
  end
end
do
  local module_tables = {}
  for _, t in pairs(package.loaded) do module_tables[t] = true end
  local seen_v, queue, head = {}, {}, 1
  for _, mod in ipairs(modules) do
    queue[#queue + 1] = {loaded[mod], mod}
    seen_v[loaded[mod]] = true
  end
  local function visit(v, mod)
    if (type(v) == "table" or type(v) == "function") and not seen_v[v] and
        not module_tables[v] then
      seen_v[v] = true
      queue[#queue + 1] = {v, mod}
    end
  end
  while queue[head] do
    local v, mod = queue[head][1], queue[head][2]
    head = head + 1
    if type(v) == "table" then
      if is_class(v) and not exported[v] and not reached[v] then
        local n = class_name(v, "_")
        if n:sub(1, 1) ~= "_" and not INTERNAL[n] then
          reached[v] = HOME[n] or mod
          reached[#reached + 1] = v
        end
      end
      for _, x in next, v do visit(x, mod) end
    else
      local i = 1
      while true do
        local name, x = debug.getupvalue(v, i)
        if not name then break end
        if name ~= "_ENV" then visit(x, mod) end
        i = i + 1
      end
    end
  end
end

for _, mod in ipairs(modules) do
  local m = loaded[mod]
  for k, v in sorted_pairs(m) do
    if k:sub(1, 1) ~= "_" then
      if type(v) == "function" then
        doc_function(mod, mod .. "." .. k, k, v, "M")
      elseif is_class(v) or type(v) == "table" and
          type(rawget(v, "mixInto")) == "function" then
        -- a class, or a mixin (policies.TimeoutMixin)
        doc_class(mod, v, k)
      end
    end
  end
end
for _, cls in ipairs(reached) do doc_class(reached[cls], cls, "?") end

-- C types only spindle's own Lua code holds.
local INTERNAL_TYPES = {
  ["spindle.Poll"] = "spindle._fdset's watcher, held by fdset.lua only",
}
local untyped = {}
for _, e in ipairs(cmethods) do
  local mod = cfile_module[e.file] or "reactor"
  local mt = macro_value(array_mt[e.file .. " " .. e.array])
  if mt and not INTERNAL_TYPES[mt] then
    local typename = mt:match("([%w_]+)$")
    add(mod, typename .. ":" .. e.name, cdoc[e.cfunc], e.file)
  elseif not mt and not untyped[e.file .. " " .. e.array] then
    untyped[e.file .. " " .. e.array] = true
    untyped[#untyped + 1] = e.array .. " (" .. e.file .. ")"
  end
end
if #untyped > 0 then
  io.stderr:write("apidoc: methods arrays registered under no metatable ",
    "this tool can see (sp_class_new, sp_stream_add_methods, ",
    "luaL_newmetatable + luaL_setfuncs):\n  ",
    table.concat(untyped, "\n  "), "\n")
  os.exit(1)
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
  -- A module written in C only (spindle.failure): its file's head comment.
  ok, lines = pcall(readlines, "runtime/" .. mod .. ".c")
  if ok and lines[1] and lines[1]:match("^/%*") then
    local block = {}
    for i = 2, #lines do
      if lines[i]:match("%*/") then break end
      block[#block + 1] = lines[i]:gsub("^%*%*%s?", "")
    end
    if #block > 0 then return table.concat(block, "\n") end
  end
  return "spindle." .. mod
end

-- Doc comments are plain text, read by LDoc as markdown: keep it from
-- taking __getattr__ for bold, `*` for emphasis or "<name>" for an HTML
-- tag, except inside `code` spans; and make an indented block after a
-- blank line (an example) a code block.
local function md_line(line)
  local out, pos = {}, 1
  while pos <= #line do
    local a, b = line:find("`[^`]*`", pos)
    local text = line:sub(pos, (a or #line + 1) - 1)
    text = text:gsub("[_*]", "\\%0"):gsub("<", "&lt;")
    out[#out + 1] = text
    if not a then break end
    out[#out + 1] = line:sub(a, b)
    pos = b + 1
  end
  return table.concat(out)
end

local function markdown(s)
  local out, blank, code = {}, true, false
  for line in (s .. "\n"):gmatch("(.-)\n") do
    if line:match("^%s*$") then
      blank, code = true, false
      out[#out + 1] = ""
    elseif line:match("^  ") and (blank or code) then
      blank, code = false, true
      out[#out + 1] = "    " .. line
    else
      blank, code = false, false
      out[#out + 1] = md_line(line)
    end
  end
  return table.concat(out, "\n")
end

local function ldoc_text(s)
  -- Each line becomes a comment line; '@' would start an LDoc tag.
  s = markdown(s):gsub("@", "(at)")
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
