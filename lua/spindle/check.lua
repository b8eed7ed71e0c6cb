--- spindle.check: argument checks for spindle's Lua modules, worded as
-- Lua's own (lauxlib.c's luaL_argerror / luaL_typeerror):
--
--   bad argument #1 to 'callLater' (number expected, got nil)
--
-- Each check names the public function (fname) and the argument's position
-- (n) as the user wrote the call. `level` means what error()'s level would
-- mean where the check is called: the default 2 blames the caller of the
-- public function that makes the check (the user's call site); a check
-- made inside a helper of that function passes 3. Internal: not part of
-- the API in API.md; any thread's Lua state may use it.
local M = {}

--- check.typeName(v) -> string: the name of v's type as Lua's error
-- messages give it: the metatable's __name when it is a string (as
-- luaL_typeerror does, so a "spindle.Deferred" is named so), else type(v).
function M.typeName(v)
  -- debug.getmetatable: a protected metatable (__metatable) still names
  -- its type, as luaL_getmetafield sees it.
  local mt = debug.getmetatable(v)
  if type(mt) == "table" then
    local name = rawget(mt, "__name")
    if type(name) == "string" and type(v) == "userdata" then return name end
  end
  return type(v)
end

--- check.argError(n, fname, extramsg[, level]): raise
-- "bad argument #n to 'fname' (extramsg)" at level (default 2).
-- luaL_argerror.
function M.argError(n, fname, extramsg, level)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, extramsg),
    (level or 2) + 1)
end

--- check.typeError(n, fname, expected, v[, level]): raise
-- "bad argument #n to 'fname' (expected expected, got <type of v>)".
-- luaL_typeerror.
function M.typeError(n, fname, expected, v, level)
  M.argError(n, fname, ("%s expected, got %s"):format(expected,
    M.typeName(v)), (level or 2) + 1)
end

--- check.isCallable(v) -> boolean: v is a function or has a __call
-- metamethod (a class instance, a table made callable).
function M.isCallable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__call") ~= nil
end

--- check.callable(v, n, fname[, level]) -> v: raises "callable expected"
-- unless check.isCallable(v).
function M.callable(v, n, fname, level)
  if not M.isCallable(v) then
    M.typeError(n, fname, "callable", v, (level or 2) + 1)
  end
  return v
end

--- check.number(v, n, fname[, level]) -> v: raises "number expected"
-- unless v is a number (NaN passes: see check.nonNegative).
function M.number(v, n, fname, level)
  if type(v) ~= "number" then
    M.typeError(n, fname, "number", v, (level or 2) + 1)
  end
  return v
end

--- check.nonNegative(v, n, fname, what[, level]) -> v: v must be a number,
-- not NaN ("<what> is NaN") and >= 0 ("<what> must be >= 0"); what names
-- the quantity ("delay", "timeout").
function M.nonNegative(v, n, fname, what, level)
  level = (level or 2) + 1
  M.number(v, n, fname, level)
  if v ~= v then M.argError(n, fname, what .. " is NaN", level) end
  if v < 0 then M.argError(n, fname, what .. " must be >= 0", level) end
  return v
end

--- check.table(v, n, fname[, level]) -> v: raises "table expected" unless
-- v is a table.
function M.table(v, n, fname, level)
  if type(v) ~= "table" then
    M.typeError(n, fname, "table", v, (level or 2) + 1)
  end
  return v
end

--- check.optTable(v, n, fname[, level]) -> v: like check.table, nil
-- allowed.
function M.optTable(v, n, fname, level)
  if v ~= nil then M.table(v, n, fname, (level or 2) + 1) end
  return v
end

--- check.string(v, n, fname[, level]) -> v: raises "string expected"
-- unless v is a string (numbers are not converted, unlike
-- luaL_checkstring: spindle's Lua API takes text as strings).
function M.string(v, n, fname, level)
  if type(v) ~= "string" then
    M.typeError(n, fname, "string", v, (level or 2) + 1)
  end
  return v
end

--- check.where([level]) -> string: "chunk:line: " of the function at
-- `level` as error()'s level would mean it where check.where is called
-- (default 2: the caller of the function calling it), or "" when that
-- function has no line (a C function such as pcall). luaL_where.
function M.where(level)
  local info = debug.getinfo((level or 2) + 1, "Sl")
  if info ~= nil and info.currentline > 0 then
    return ("%s:%d: "):format(info.short_src, info.currentline)
  end
  return ""
end

--- check.locate(e[, level]) -> e: an error value (a table with a string
-- `message`, such as an ssl.Error) gets check.where(level)'s position in
-- front of its message, as error(string, level) would give a string; any
-- other value is returned as it is. Used where an error value made deep
-- inside (an OpenSSL failure reading a file) is about the caller's
-- arguments.
function M.locate(e, level)
  if type(e) == "table" and type(rawget(e, "message")) == "string" then
    e.message = M.where((level or 2) + 1) .. e.message
  end
  return e
end

return M
