/*
** failure.c: error types and Failure (spindle.failure).
**
** An error type is a table T: T.__name is its name, T.__parent its parent
** type, and T is also the metatable of its error values, so
** getmetatable(e) == T. Types share the metatable "spindle.ErrorType",
** whose __call makes values: T(message [, fields]).
**
** A Failure is a table {value = v, type = T or type-name, _tb = traceback}
** with the metatable "spindle.Failure". It follows
** twisted.python.failure.Failure: the error value, its type and the
** traceback of the point where it was raised.
*/
#include <stdarg.h>
#include <string.h>

#include "core.h"
#include "failure.h"

#define FAILURE_MT SP_FAILURE_MT
#define ERRORTYPE_MT SP_ERRORTYPE_MT

static const char errortypes_key = 'E'; /* registry: key -> error type */

/* [-0, +1, m] The registry table of built-in error types, made once. */
static void errortypes_push(lua_State *L);

/* [-0, +0, -] Is the value at idx an error type? */
static int errortype_is(lua_State *L, int idx) {
  int r;
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, ERRORTYPE_MT);
  r = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return r;
}

/* [-0, +1, m] Push the type of error value idx: its error type, or the
** Lua type name ("string", "number", "table", ...). */
static void errorvalue_pushtype(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TTABLE && lua_getmetatable(L, idx)) {
    if (errortype_is(L, -1)) return;
    lua_pop(L, 1);
  }
  lua_pushstring(L, luaL_typename(L, idx));
}

/* [-0, +0, -] Does type a (at idx a) equal or descend from type b? */
static int errortype_matches(lua_State *L, int a, int b) {
  int n = 0, r = 0;
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  if (lua_rawequal(L, a, b)) return 1;
  if (!errortype_is(L, a) || !errortype_is(L, b)) return 0;
  lua_pushvalue(L, a);
  for (n = 0; n < 64; n++) {
    if (lua_getfield(L, -1, "__parent") != LUA_TTABLE) {
      lua_pop(L, 1);
      break;
    }
    lua_remove(L, -2);
    if (lua_rawequal(L, -1, b)) {
      r = 1;
      break;
    }
  }
  lua_pop(L, 1);
  return r;
}

/* __tostring of error values: "Name: message" ("Name" without one). */
static int errorvalue_tostring(lua_State *L) {
  if (!lua_getmetatable(L, 1)) return luaL_typeerror(L, 1, "error value");
  lua_getfield(L, -1, "__name");
  if (lua_getfield(L, 1, "message") == LUA_TNIL) {
    lua_pop(L, 1);
    return 1;
  }
  lua_pushliteral(L, ": ");
  lua_insert(L, -2);
  luaL_tolstring(L, -1, NULL);
  lua_remove(L, -2);
  lua_concat(L, 3);
  return 1;
}

/* T(message [, fields]) -> error value: a table {message = message} with
** each of fields copied in, whose metatable is T. */
static int errortype_call(lua_State *L) {
  lua_settop(L, 3);
  lua_newtable(L);
  if (lua_type(L, 3) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, 3) != 0) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, 4);
    }
  } else if (!lua_isnil(L, 3)) {
    return luaL_typeerror(L, 3, "table or nil");
  }
  if (!lua_isnil(L, 2)) {
    lua_pushvalue(L, 2);
    lua_setfield(L, 4, "message");
  }
  lua_pushvalue(L, 1);
  lua_setmetatable(L, 4);
  return 1;
}

static int errortype_tostring(lua_State *L) {
  lua_getfield(L, 1, "__name");
  lua_pushfstring(L, "<error type %s>", lua_tostring(L, -1));
  return 1;
}

/* [-0, +1, m] Make a type named `name` whose parent is at parentidx (0 for
** none). */
static void errortype_new(lua_State *L, const char *name, int parentidx) {
  parentidx = parentidx ? lua_absindex(L, parentidx) : 0;
  lua_createtable(L, 0, 5);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  if (parentidx) {
    lua_pushvalue(L, parentidx);
    lua_setfield(L, -2, "__parent");
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, errorvalue_tostring);
  lua_setfield(L, -2, "__tostring");
  luaL_setmetatable(L, ERRORTYPE_MT);
}

/* defer.errorType(name [, parent]) -> T
** Make an error type; see twisted's exception classes. name must be a
** string, parent an error type or nil (else a bad-argument error). T(msg)
** makes a value whose tostring is "name: msg"; Failure:check(parent)
** matches it. */
static int failure_errorType(lua_State *L) {
  const char *name;
  luaL_checktype(L, 1, LUA_TSTRING);
  name = lua_tostring(L, 1);
  if (!lua_isnoneornil(L, 2) && !errortype_is(L, 2))
    return luaL_typeerror(L, 2, "error type or nil");
  errortype_new(L, name, lua_isnoneornil(L, 2) ? 0 : 2);
  return 1;
}

int sp_failure_is(lua_State *L, int idx) {
  int r;
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, FAILURE_MT);
  r = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return r;
}

void sp_failure_new(lua_State *L, int idx, lua_State *from, int level) {
  idx = lua_absindex(L, idx);
  if (sp_failure_is(L, idx)) {
    lua_pushvalue(L, idx);
    return;
  }
  lua_createtable(L, 0, 3);
  lua_pushvalue(L, idx);
  lua_setfield(L, -2, "value");
  errorvalue_pushtype(L, idx);
  lua_setfield(L, -2, "type");
  if (from != NULL) {
    luaL_traceback(L, from, NULL, level);
    lua_setfield(L, -2, "_tb");
  }
  if (luaL_getmetatable(L, FAILURE_MT) == LUA_TNIL) {
    /* made before spindle.failure was loaded */
    lua_pop(L, 1);
    errortypes_push(L);
    lua_pop(L, 1);
    luaL_getmetatable(L, FAILURE_MT);
  }
  lua_setmetatable(L, -2);
}

int sp_errhandler(lua_State *L) {
  sp_failure_new(L, 1, L, 1);
  return 1;
}

/* failure.Failure(value [, traceback]) -> Failure
** Wrap an error value; follows twisted.python.failure.Failure. traceback
** is a string (as from debug.traceback; anything else but nil is a bad
** argument); without it the traceback is taken here. A Failure is
** returned as it is. Raises if value is nil: a raised nil (error()) is
** wrapped by the runtime itself (sp_failure_new), as a Failure whose
** value is nil, type "nil" and message "nil". */
static int failure_new(lua_State *L) {
  luaL_argexpected(L, !lua_isnoneornil(L, 1), 1, "error value");
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TSTRING);
    sp_failure_new(L, 1, NULL, 0);
    if (!sp_failure_is(L, 1)) {
      lua_pushvalue(L, 2);
      lua_setfield(L, -2, "_tb");
    }
  } else {
    sp_failure_new(L, 1, L, 1);
  }
  return 1;
}

/* The protected half of safe_tostring: tostring(arg 1). */
static int tostring_protected(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* [-0, +1, m] Push tostring of the value at idx without raising: a
** __tostring that raises or returns a non-string gives
** "<T at 0x... with tostring error: ...>" (Twisted's reflect.safe_str). */
static void safe_tostring(lua_State *L, int idx) {
  const char *err;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER ||
      lua_type(L, idx) == LUA_TNIL || lua_type(L, idx) == LUA_TBOOLEAN) {
    luaL_tolstring(L, idx, NULL);
    return;
  }
  lua_pushcfunction(L, tostring_protected);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) return;
  err = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                       : luaL_typename(L, -1);
  lua_pushfstring(L, "<%s at %p with tostring error: %s>",
                  luaL_typename(L, idx), lua_topointer(L, idx), err);
  lua_remove(L, -2);
}

static void failure_check_self(lua_State *L) {
  if (!sp_failure_is(L, 1)) luaL_typeerror(L, 1, "Failure");
}

/* [-0, +1, m] Push the message of error value idx, always a string (see
** safe_tostring). */
static void errorvalue_pushmessage(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TTABLE && lua_getmetatable(L, idx)) {
    int is = errortype_is(L, -1);
    lua_pop(L, 1);
    if (is) {
      if (lua_getfield(L, idx, "message") == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushliteral(L, "");
      } else {
        safe_tostring(L, -1);
        lua_remove(L, -2);
      }
      return;
    }
  }
  safe_tostring(L, idx);
}

/* f:getErrorMessage() -> string: the error's message (an error value's
** `message`, a string error itself, "nil" for a raised nil; never raises,
** like Twisted's safe_str). twisted Failure.getErrorMessage. */
static int failure_getErrorMessage(lua_State *L) {
  failure_check_self(L);
  lua_getfield(L, 1, "value");
  errorvalue_pushmessage(L, 2);
  return 1;
}

/* f:getTraceback() -> string: "<error>\n<stack traceback>" where the
** stack is where the error was raised. twisted Failure.getTraceback. */
static int failure_getTraceback(lua_State *L) {
  failure_check_self(L);
  lua_getfield(L, 1, "value");
  safe_tostring(L, 2);
  if (lua_getfield(L, 1, "_tb") == LUA_TSTRING) {
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  } else {
    lua_pop(L, 1);
    lua_pushliteral(L, "\n(failure with no frames)");
    lua_concat(L, 2);
  }
  return 1;
}

/* [-0, +0, -] Does error type or type name at idx match this Failure? */
static int failure_matches(lua_State *L, int idx) {
  int r;
  lua_getfield(L, 1, "type");
  r = errortype_matches(L, -1, idx);
  lua_pop(L, 1);
  return r;
}

/* f:check(T, ...) -> the first T that the error's type equals or
** descends from, or nil. T is an error type or a type name ("string").
** twisted Failure.check. */
static int failure_check(lua_State *L) {
  int i, n = lua_gettop(L);
  failure_check_self(L);
  for (i = 2; i <= n; i++) {
    if (failure_matches(L, i)) {
      lua_pushvalue(L, i);
      return 1;
    }
  }
  lua_pushnil(L);
  return 1;
}

/* f:trap(T, ...) -> the first matching T; else raises f itself, so that
** an errback can let errors it does not handle pass. twisted Failure.trap. */
static int failure_trap(lua_State *L) {
  failure_check(L);
  if (!lua_isnil(L, -1)) return 1;
  lua_pushvalue(L, 1);
  return lua_error(L);
}

/* f:raiseException(): raise the original error value, as
** twisted Failure.raiseException does. */
static int failure_raiseException(lua_State *L) {
  failure_check_self(L);
  lua_getfield(L, 1, "value");
  return lua_error(L);
}

/* tostring(f) -> "[Failure instance: <error>]" */
static int failure_tostring(lua_State *L) {
  lua_getfield(L, 1, "value");
  lua_pushliteral(L, "[Failure instance: ");
  safe_tostring(L, 2);
  lua_pushliteral(L, "]");
  lua_concat(L, 3);
  return 1;
}

/* f:cleanFailure(): nothing (Twisted drops frame references to free
** memory; a Failure here keeps only its traceback string). Raises a
** bad-argument error when f is not a Failure. twisted
** python.failure.Failure.cleanFailure. */
static int failure_cleanFailure(lua_State *L) {
  failure_check_self(L);
  return 0;
}

static const luaL_Reg failure_methods[] = {
    {"getErrorMessage", failure_getErrorMessage},
    {"getTraceback", failure_getTraceback},
    {"check", failure_check},
    {"trap", failure_trap},
    {"raiseException", failure_raiseException},
    {"cleanFailure", failure_cleanFailure},
    {NULL, NULL}};

static const luaL_Reg failure_meta[] = {{"__tostring", failure_tostring},
                                        {NULL, NULL}};

/* Every built-in error type, the C and the Lua modules' alike: key,
** name, parent key. The key's prefix names the module table that exposes
** the type (reactor.lua, defer.lua, ssl.lua, threads.lua, basic.lua, and
** the C parts that register them). Parents follow Twisted's class
** hierarchy (twisted.internet.error, twisted.internet.defer,
** twisted.protocols.basic, twisted.web.error and twisted.web._newclient). */
static const char *const builtin_types[][3] = {
    {"defer.AlreadyCalledError", "AlreadyCalledError", NULL},
    {"defer.CancelledError", "CancelledError", NULL},
    {"defer.TimeoutError", "TimeoutError", NULL},
    {"defer.FirstError", "FirstError", NULL},
    {"defer.QueueOverflow", "QueueOverflow", NULL},
    {"defer.QueueUnderflow", "QueueUnderflow", NULL},
    {"reactor.AlreadyCalled", "AlreadyCalled", NULL},
    {"reactor.AlreadyCancelled", "AlreadyCancelled", NULL},
    {"reactor.ReactorNotRunning", "ReactorNotRunning", NULL},
    {"reactor.ReactorAlreadyRunning", "ReactorAlreadyRunning", NULL},
    {"reactor.BindError", "BindError", NULL},
    {"reactor.CannotListenError", "CannotListenError", "reactor.BindError"},
    {"reactor.ConnectError", "ConnectError", NULL},
    {"reactor.ConnectionRefusedError", "ConnectionRefusedError",
     "reactor.ConnectError"},
    {"reactor.DNSLookupError", "DNSLookupError", "reactor.ConnectError"},
    {"reactor.TimeoutError", "TimeoutError", "reactor.ConnectError"},
    {"reactor.UserError", "UserError", "reactor.ConnectError"},
    {"reactor.ConnectingCancelledError", "ConnectingCancelledError", NULL},
    {"reactor.ConnectionClosed", "ConnectionClosed", NULL},
    {"reactor.ConnectionLost", "ConnectionLost", "reactor.ConnectionClosed"},
    {"reactor.ConnectionDone", "ConnectionDone", "reactor.ConnectionClosed"},
    {"reactor.ConnectionAborted", "ConnectionAborted",
     "reactor.ConnectionLost"},
    {"reactor.ProcessDone", "ProcessDone", "reactor.ConnectionDone"},
    {"reactor.ProcessTerminated", "ProcessTerminated",
     "reactor.ConnectionLost"},
    {"reactor.ProcessExitedAlready", "ProcessExitedAlready", NULL},
    {"reactor.NotConnectingError", "NotConnectingError", NULL},
    {"reactor.MessageLengthError", "MessageLengthError", NULL},
    {"reactor.InvalidAddressError", "InvalidAddressError", NULL},
    {"reactor.MulticastJoinError", "MulticastJoinError", NULL},
    {"reactor.AlreadyListened", "AlreadyListened", NULL},
    {"basic.StringTooLongError", "StringTooLongError", NULL},
    {"ssl.Error", "Error", NULL},
    {"ssl.VerifyError", "VerifyError", "ssl.Error"},
    {"threads.TransferError", "TransferError", NULL},
    {"web.Error", "Error", NULL},
    {"web.PageRedirect", "PageRedirect", "web.Error"},
    {"web.InfiniteRedirection", "InfiniteRedirection", "web.Error"},
    {"web.RedirectWithNoLocation", "RedirectWithNoLocation", "web.Error"},
    {"web.UnsupportedMethod", "UnsupportedMethod", NULL},
    {"web.SchemeNotSupported", "SchemeNotSupported", NULL},
    {"web.ResponseDone", "ResponseDone", NULL},
    {"web.ResponseFailed", "ResponseFailed", NULL},
    {"web.ResponseNeverReceived", "ResponseNeverReceived", NULL},
    {"web.RequestNotSent", "RequestNotSent", NULL},
    {"web.PotentialDataLoss", "PotentialDataLoss", NULL},
    {"utils.UnexpectedErrorOutput", "UnexpectedErrorOutput", NULL},
    {NULL, NULL, NULL}};

static void errortypes_push(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &errortypes_key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  if (luaL_newmetatable(L, ERRORTYPE_MT)) {
    lua_pushcfunction(L, errortype_call);
    lua_setfield(L, -2, "__call");
    lua_pushcfunction(L, errortype_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  sp_class_new(L, FAILURE_MT, failure_methods, failure_meta);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &errortypes_key);
  for (int i = 0; builtin_types[i][0] != NULL; i++) {
    int parent = 0;
    if (builtin_types[i][2] != NULL) {
      lua_getfield(L, -1, builtin_types[i][2]);
      parent = lua_gettop(L);
    }
    errortype_new(L, builtin_types[i][1], parent);
    lua_setfield(L, -2 - (parent != 0), builtin_types[i][0]);
    if (parent) lua_pop(L, 1);
  }
}

void sp_errortype_push(lua_State *L, const char *key) {
  errortypes_push(L);
  if (lua_getfield(L, -1, key) == LUA_TNIL)
    luaL_error(L, "spindle: no error type '%s'", key);
  lua_remove(L, -2);
}

void sp_errortype_register(lua_State *L, const char *key, const char *name,
                           const char *parentkey) {
  errortypes_push(L);
  if (lua_getfield(L, -1, key) != LUA_TNIL) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  if (parentkey != NULL)
    lua_getfield(L, -1, parentkey);
  else
    lua_pushnil(L);
  errortype_new(L, name, lua_isnil(L, -1) ? 0 : -1);
  lua_remove(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, key);
  lua_remove(L, -2);
}

void sp_errortype_make(lua_State *L, const char *key, const char *msg) {
  sp_errortype_push(L, key);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  lua_insert(L, -2);
  lua_setmetatable(L, -2);
}

int sp_errortype_raise(lua_State *L, const char *key, const char *code,
                       const char *fmt, ...) {
  va_list ap;
  const char *msg;
  va_start(ap, fmt);
  msg = lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  sp_errortype_make(L, key, msg);
  if (code != NULL) {
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
  }
  return lua_error(L);
}

/* [-0, +0, m] Copy the built-in types whose key starts with `prefix.` into
** the table at idx, under their names. Used by the module openers. */
void sp_errortype_export(lua_State *L, int idx, const char *prefix) {
  size_t n = strlen(prefix);
  idx = lua_absindex(L, idx);
  for (int i = 0; builtin_types[i][0] != NULL; i++) {
    const char *key = builtin_types[i][0];
    if (strncmp(key, prefix, n) != 0 || key[n] != '.') continue;
    sp_errortype_push(L, key);
    lua_setfield(L, idx, key + n + 1);
  }
}

void sp_errortype_pushkeys(lua_State *L) {
  lua_newtable(L);
  for (int i = 0; builtin_types[i][0] != NULL; i++) {
    sp_errortype_push(L, builtin_types[i][0]);
    lua_pushstring(L, builtin_types[i][0]);
    lua_rawset(L, -3);
  }
}

/* failure.builtinErrorTypes(prefix) -> {name = T, ...}
** The built-in error types of one module ("defer", "reactor", "ssl",
** "threads", "basic", "web"), as the module tables export them. */
static int failure_builtinErrorTypes(lua_State *L) {
  const char *prefix = luaL_checkstring(L, 1);
  lua_newtable(L);
  sp_errortype_export(L, -1, prefix);
  return 1;
}

static const luaL_Reg failure_funcs[] = {
    {"Failure", failure_new},
    {"builtinErrorTypes", failure_builtinErrorTypes},
    {"errorType", failure_errorType},
    {NULL, NULL}};

/* failure.isFailure(v) -> boolean: v is a Failure (any value may be
** passed; never raises). Python's isinstance(v, Failure). */
static int failure_isFailure(lua_State *L) {
  lua_pushboolean(L, sp_failure_is(L, 1));
  return 1;
}

int luaopen_spindle_failure(lua_State *L) {
  errortypes_push(L);
  lua_pop(L, 1);
  luaL_newlib(L, failure_funcs);
  lua_pushcfunction(L, failure_isFailure);
  lua_setfield(L, -2, "isFailure");
  luaL_getmetatable(L, FAILURE_MT);
  lua_setfield(L, -2, "FailureMeta");
  sp_strict(L, -1, "failure");
  return 1;
}
