--- spindle.class: the class system of spindle.protocol and friends.
-- A class is a table; Class:extend([fields]) makes a subclass (fields become
-- its methods and defaults), Class(...) or Class:new(...) makes an instance
-- and calls its __init(...) if it has one. Instances look names up in their
-- class, then its ancestors; metamethods (__tostring, __eq, ...) are
-- inherited too. Class.super is the parent class.
local check = require("spindle.check")

local M = {}

local metamethods = {
  "__tostring", "__eq", "__lt", "__le", "__concat", "__len", "__call",
  "__close", "__add", "__sub", "__mul", "__div", "__unm", "__mod",
  "__newindex",
}

local Object = {}
Object.__index = Object
Object.__name = "Object"

local classMeta = {}
classMeta.__call = function(cls, ...) return cls:new(...) end
classMeta.__tostring = function(cls)
  return "<class " .. tostring(cls.__name or "?") .. ">"
end

setmetatable(Object, classMeta)

--- Class:new(...) -> instance: a table whose metatable is Class; calls
-- instance:__init(...) when the class or an ancestor defines it.
function Object:new(...)
  local instance = setmetatable({}, self)
  local init = self.__init
  if init then init(instance, ...) end
  return instance
end

--- Class:extend([fields]) -> subclass. fields (a table, optional) is used
-- as the subclass itself: its functions are methods, other values defaults.
function Object:extend(fields)
  check.optTable(fields, 1, "extend")
  local cls = fields or {}
  cls.__index = cls
  cls.super = self
  for _, name in ipairs(metamethods) do
    if rawget(cls, name) == nil and self[name] ~= nil then
      cls[name] = self[name]
    end
  end
  return setmetatable(cls, {
    __index = self,
    __call = classMeta.__call,
    __tostring = classMeta.__tostring,
  })
end

--- Class:isinstance(obj) -> boolean: obj is an instance of Class or of a
-- subclass of it.
function Object.isinstance(cls, obj)
  if type(obj) ~= "table" then return false end
  local mt = getmetatable(obj)
  while mt ~= nil do
    if mt == cls then return true end
    mt = rawget(mt, "super")
  end
  return false
end

M.Object = Object
return require("spindle._core").strict("class", M)
