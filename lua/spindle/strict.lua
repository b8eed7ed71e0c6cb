--- spindle.strict(name, t [, getters]) -> t: make a module table strict, so
-- reading a missing field raises "<name> has no field 'x' (did you mean
-- 'y'?)". getters maps names to functions for dynamic read-only fields.
return require("spindle._core").strict
