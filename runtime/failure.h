/*
** failure.h: Failure objects and error types (spindle.failure).
*/
#ifndef SP_FAILURE_H
#define SP_FAILURE_H

#include <lua.h>

/* Metatable names (what users see in errors): a Failure's, and the one
** every error type shares. */
#define SP_FAILURE_MT "spindle.Failure"
#define SP_ERRORTYPE_MT "spindle.ErrorType"

/* spindle.failure's opener (states made in marshal.c and pool threads
** require it directly). */
int luaopen_spindle_failure(lua_State *L);

/* [-0, +0, -] Is the value at idx a Failure? */
int sp_failure_is(lua_State *L, int idx);

/* [-0, +1, m] Push a Failure for the value at idx of L (returned as is if
** it is already a Failure). Its traceback is taken from `from` (L or a
** coroutine that raised) at `level`; from == NULL takes none. */
void sp_failure_new(lua_State *L, int idx, lua_State *from, int level);

/* [-1, +1, m] Message handler for lua_pcall: wraps the error in a Failure
** with the traceback of where it was raised; a Failure passes through. */
int sp_errhandler(lua_State *L);

/* [-0, +1, e] Push the built-in error type registered under `key`
** ("defer.CancelledError", "reactor.CannotListenError", ...). */
void sp_errortype_push(lua_State *L, const char *key);

/* [-0, +1, m] Register a new error type under `key`, named `name`, a
** subtype of the type registered under `parentkey` (may be NULL); pushes it.
** Registering an existing key pushes the existing type. */
void sp_errortype_register(lua_State *L, const char *key, const char *name,
                           const char *parentkey);

/* [-0, +1, e] Push an error value of type `key` with message `msg`. */
void sp_errortype_make(lua_State *L, const char *key, const char *msg);

/* [-0, +0, e] Raise an error value of type `key`; the message is formatted
** as with lua_pushfstring. If `code` is not NULL it is set as the error's
** `code` field (a libuv error name such as "EADDRINUSE"). */
int sp_errortype_raise(lua_State *L, const char *key, const char *code,
                       const char *fmt, ...);

/* [-0, +1, m] Push a new table mapping every built-in error type to its
** key ("reactor.CannotListenError"), for marshal.c, which sends built-in
** types by key. */
void sp_errortype_pushkeys(lua_State *L);

/* [-0, +0, m] Copy the built-in types whose key starts with `prefix.`
** ("reactor") into the table at idx under their names ("CannotListenError"). */
void sp_errortype_export(lua_State *L, int idx, const char *prefix);

#endif
