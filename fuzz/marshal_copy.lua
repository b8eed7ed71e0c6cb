-- fuzz/marshal_copy.lua: the Lua half of fuzz/marshal_copy.c, run in
-- each of its states. gen(bytes) turns fuzzer bytes into Lua values;
-- canon(...) writes values as a string that two states agree on exactly
-- when the values have the same shape (numbered objects in a traversal
-- with sorted keys, so shared references and cycles show; functions as
-- stripped bytecode and their upvalues, shared upvalues numbered too;
-- module values and error types by name). The harness runs the same
-- canon written in C (faster); this one is its reference, compared with
-- it on every input when FZ_CANON_CHECK is set.
local failure = require("spindle.failure")
local FuzzError = failure.errorType("FuzzError")
local FailureMT = debug.getregistry()["spindle.Failure"]
local ErrorTypeMT = debug.getregistry()["spindle.ErrorType"]

-- Closure makers: what gen's functions are (their upvalues come from
-- the stack; `print` makes an _ENV upvalue).
local makers = {
  function(a) return function() return a end end,
  function(a, b) return function(x) return a, b, x end end,
  function(a) return function() print(a) end end,
  function(a) -- two closures sharing one upvalue
    local function get() return a end
    local function set(v) a = v end
    return {get = get, set = set}
  end,
}

local TRACEBACKS = {"stack traceback:\n\t[C]: in ?",
  "stack traceback:\n\tfuzz/marshal_copy.lua:1: in function 'gen'"}

local modvalues = {string.format, math.floor, table.concat, math, string,
  failure.Failure, FuzzError, failure.builtinErrorTypes}

-- gen's state: the input, its position, the value stack and the objects
-- made so far (tables reused with their counts: the harness runs
-- millions of inputs in one state, and allocations are most of an
-- input's cost under ASan; slots past a count are stale).
local src, pos, stack, top, objs, nobjs = "", 1, {}, 0, {}, 0
local SPECIAL = {1 / 0, -1 / 0, -0.0, 0 / 0, 2 ^ 53, 1e-310}

local function byte()
  local b = src:byte(pos) or 0
  pos = pos + 1
  return b
end

local function push(v)
  top = top + 1
  stack[top] = v
end

local function pop()
  if top == 0 then return nil end
  local v = stack[top]
  stack[top] = nil
  top = top - 1
  return v
end

local function obj(v)
  nobjs = nobjs + 1
  objs[nobjs] = v
  push(v)
end

local function keyok(k)
  local t = type(k)
  if t == "string" then return k:sub(1, 2) ~= "__" end
  return (t == "number" and k == k) or t == "boolean"
end

function gen(s) -- luacheck: ignore 111 (called by the harness)
  src, pos, top, nobjs = s, 1, 0, 0
  while pos <= #s and top < 64 do
    local op = byte() % 16
    if op == 0 then push(nil)
    elseif op == 1 then push(true)
    elseif op == 2 then push(false)
    elseif op == 3 then
      local b = byte()
      if b == 255 then push(math.mininteger)
      elseif b == 254 then push(math.maxinteger)
      else push(b - 128) end
    elseif op == 4 then
      local b = byte()
      push(SPECIAL[b % 16] or b / 7)
    elseif op == 5 then
      local n = byte() % 24
      push(s:sub(pos, pos + n - 1))
      pos = pos + n
    elseif op == 6 then obj({})
    elseif op == 7 then -- t[k] = v with t, k, v on the stack
      local v, k, t = pop(), pop(), stack[top]
      if type(t) == "table" and keyok(k) and not getmetatable(t) then
        rawset(t, k, v)
      end
    elseif op == 8 and nobjs > 0 then push(objs[byte() % nobjs + 1])
    elseif op == 9 then
      local m = makers[byte() % #makers + 1]
      local a, b = pop(), pop()
      obj(m(a, b))
    elseif op == 10 then
      local v = pop()
      -- A traceback given: Failure() would take one here, which costs
      -- more than all the rest of an input's work.
      obj(failure.Failure(v == nil and "nil" or v, TRACEBACKS[byte() % 2 + 1]))
    elseif op == 11 then obj(FuzzError(tostring(byte())))
    elseif op == 12 then push(modvalues[byte() % #modvalues + 1])
    elseif op == 13 then -- a plain table of objs becomes top's metatable
      local i = byte() % (nobjs + 1)
      local mt, t = i > 0 and objs[i] or nil, stack[top]
      if type(t) == "table" and type(mt) == "table" and not getmetatable(t)
        and not getmetatable(mt) then
        local plain = true
        for k in pairs(mt) do
          if type(k) == "string" and k:sub(1, 2) == "__" then plain = false end
        end
        if plain then setmetatable(t, mt) end
      end
    elseif op == 14 then -- a cycle: top[k] = top
      local t = stack[top]
      if type(t) == "table" and not getmetatable(t) then t[byte()] = t end
    elseif op == 15 then pop()
    end
  end
  return table.unpack(stack, 1, math.min(top, 8))
end

-- Module values by name: what canon writes for them (fuzz/marshal_copy.c's
-- canon calls this once per state).
local rev
function canon_names() -- luacheck: ignore 111 (called by the harness)
  if rev then return rev end
  rev = {}
  local function add(v, name)
    local old = rev[v]
    if old == nil or name < old then rev[v] = name end
  end
  for name, mod in pairs(package.loaded) do
    if type(mod) == "table" then
      add(mod, name)
      for k, v in pairs(mod) do
        if type(k) == "string" and (type(v) == "function" or type(v) ==
          "table") then
          add(v, name .. "." .. k)
        end
      end
    end
  end
  return rev
end

local order = {boolean = 1, number = 2, string = 3}
local function keyless(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return (order[ta] or 9) < (order[tb] or 9) end
  if ta == "boolean" then return not a and b end
  if ta == "number" or ta == "string" then return a < b end
  return false
end

-- Integers as strings, each converted once (tostring of a number costs
-- a formatted print, and every piece canon writes would be a new string).
local istr = setmetatable({}, {__index = function(t, k)
  local v = tostring(k)
  t[k] = v
  return v
end})

-- canon's output pieces: one buffer for every call (concatenated up to
-- the call's count), so a call allocates only for what it visits.
local out = {}

function canon(...) -- luacheck: ignore 111 (called by the harness)
  local n, ids, nid, upids, nup = 0, {}, 0, {}, 0
  local names = canon_names() -- luacheck: ignore 113 (defined above)
  local function w(s)
    n = n + 1
    out[n] = s
  end
  local visit
  function visit(v)
    local t = type(v)
    if t == "nil" then w("nil")
    elseif t == "boolean" then w(v and "true" or "false")
    elseif t == "number" then
      if math.type(v) == "integer" then
        w("i")
        w(istr[v])
      elseif v ~= v then w("nan")
      else
        w("f")
        w(string.format("%a", v))
      end
    elseif t == "string" then
      w("s")
      w(istr[#v])
      w(":")
      w(v)
    elseif names[v] then
      w("M:")
      w(names[v])
    elseif ids[v] then
      w("@")
      w(istr[ids[v]])
    elseif t == "table" and debug.getmetatable(v) == ErrorTypeMT then
      w("E:")
      w(tostring(v))
    else
      nid = nid + 1
      ids[v] = nid
      if t == "function" then
        local code = string.dump(v, true)
        w("F")
        w(istr[nid])
        w(":")
        w(istr[#code])
        w(":")
        w(code)
        for i = 1, 255 do
          local name, uv = debug.getupvalue(v, i)
          if name == nil then break end
          local id = debug.upvalueid(v, i)
          -- _ENV is bound to the receiver's globals, not joined (marshal.c).
          if name == "_ENV" then w(uv == _G and "G" or "?")
          elseif upids[id] then
            w("^")
            w(istr[upids[id]])
          else
            nup = nup + 1
            upids[id] = nup
            w("U")
            w(istr[nup])
            visit(uv)
          end
        end
      elseif t == "table" then
        -- Keys sorted: by < when all are strings or all numbers (no
        -- comparison function to call), else by keyless.
        local keys, nk, kt, mixed = {}, 0, nil, false
        for k in next, v do
          nk = nk + 1
          keys[nk] = k
          local tk = type(k)
          if kt == nil then kt = tk elseif tk ~= kt then mixed = true end
        end
        if nk > 1 then
          if mixed or (kt ~= "string" and kt ~= "number") then
            table.sort(keys, keyless)
          else
            table.sort(keys)
          end
        end
        w("T")
        w(istr[nid])
        w("{")
        for i = 1, nk do
          local k = keys[i]
          visit(k)
          w("=")
          visit(rawget(v, k))
          w(",")
        end
        w("}")
        local mt = debug.getmetatable(v)
        if mt == FailureMT then w("Failure")
        elseif mt ~= nil then
          w("mt")
          visit(mt)
        end
      else
        w("?")
        w(t)
      end
    end
  end
  for i = 1, select("#", ...) do
    visit((select(i, ...)))
    w(";")
  end
  return table.concat(out, "", 1, n)
end
