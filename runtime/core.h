/*
** core.h: helpers every runtime file shares: classes (metatables built
** from luaL_Reg arrays), protected calls that turn errors into Failures,
** the bridge to spindle.log, and strict module tables.
*/
#ifndef SP_CORE_H
#define SP_CORE_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

/* The main Lua state, the one the reactor's callbacks run in. Set by
** main.c before any module loads; pool threads have states of their own. */
extern lua_State *sp_mainstate;

/* [-0, +0, m] Create the metatable `name` (what users see in errors:
** "spindle.Deferred") with `methods` under __index and `meta` as
** metamethods. Either array may be NULL. */
void sp_class_new(lua_State *L, const char *name, const luaL_Reg *methods,
                  const luaL_Reg *meta);

/* [-0, +0, m] sp_class_new for a type with read-only state fields
** (Twisted's `called`, `connected`, `disconnecting`): `getters` maps each
** field name to a function called as getter(self) -> value. __index
** finds a method first (without touching self: the hot path), then a
** getter; any other key gives nil. Each getter checks self itself, as
** methods do. getters may be NULL (then this is sp_class_new). */
void sp_class_newx(lua_State *L, const char *name, const luaL_Reg *methods,
                   const luaL_Reg *meta, const luaL_Reg *getters);

/* [-0, +0, e] Like luaL_checkudata for a method of class `name`, with
** sp_typeerror's message. */
void *sp_class_check(lua_State *L, int idx, const char *name);

/* [-0, +0, v] luaL_argerror for a method of class cls (a metatable name):
** when Lua knows how the function was called it is luaL_argerror itself
** (`t:write(42)`: "bad argument #1 to 'write'"). When it does not (a call
** through pcall or a tail call, where luaL_argerror says "to '?'" and
** counts self), the method is named from the class and counted as the
** user writes `t:name(...)`: "bad argument #<arg-1> to 'name' (...)", or
** "calling 'name' on bad self" for arg 1. Never returns. */
int sp_argerror(lua_State *L, int arg, const char *extramsg, const char *cls);

/* [-0, +0, v] luaL_typeerror through sp_argerror: "<tname> expected, got
** <type>" (the __name of a userdata's metatable, as Lua's). */
int sp_typeerror(lua_State *L, int arg, const char *tname, const char *cls);

/* [-0, +0, v] luaL_argerror for the module function fname (its public
** name: "deferToThread"): when Lua knows how the function was called it
** is luaL_argerror itself. When it does not (through pcall or a tail
** call), luaL_argerror would name it from package.loaded, often by an
** internal module ("spindle._threads.deferToThread"); this names it
** fname. Never returns. */
int sp_fnargerror(lua_State *L, int arg, const char *extramsg,
                  const char *fname);

/* [-0, +0, v] sp_typeerror's message through sp_fnargerror. */
int sp_fntypeerror(lua_State *L, int arg, const char *tname, const char *fname);

/* [-(nargs+1), +(nresults|1), -] lua_pcall with the message handler set
** by sp_pcall_set_handler (failure.c's sp_errhandler in the binary): on
** error the one value left is a Failure whose traceback was taken where
** the error was raised. Returns the lua_pcall status. */
int sp_pcall(lua_State *L, int nargs, int nresults);

/* Set sp_pcall's message handler for every state of the process. core.c
** sits below failure.c, so the binary hands it failure.c's sp_errhandler
** (main.c, once, before any state or thread exists). */
void sp_pcall_set_handler(lua_CFunction handler);

/* [-(nargs+1), +(nresults|1), -] lua_pcall with `handler` as message
** handler, pushed under the function and removed after. */
int sp_pcall_with(lua_State *L, int nargs, int nresults, lua_CFunction handler);

/* [-0, +0, -] fn(p), with the light userdata p as its one argument,
** protected: for the Lua half of a libuv or OpenSSL callback, which must
** never raise. An error (a memory error, most often) is logged as
** "Unhandled Error" and dropped, as Twisted's reactor logs what a
** callback raises. Returns the lua_pcall status. */
int sp_run_protected(lua_State *L, lua_CFunction fn, void *p);

/* Results of sp_callmethod. */
enum { SP_CALL_OK, SP_CALL_MISSING, SP_CALL_ERROR };

/* [-nargs, +1, -] obj:name(args...) for obj at objidx and the nargs
** arguments on top, protected (sp_pcall), the method lookup included (an
** object's __index may raise). Pushes the method's first result
** (SP_CALL_OK), nil when obj has no such method (SP_CALL_MISSING), or the
** Failure of an error, which is logged as "Unhandled Error", as Twisted's
** reactor logs what a callback raises (SP_CALL_ERROR). The one protected
** method call for libuv callbacks (factories, protocols, producers),
** which must never raise. */
int sp_callmethod(lua_State *L, int objidx, const char *name, int nargs);

/* [-0, +0, -] Log the value at idx (a Failure or any error value) through
** spindle.log.err, with `why` as the context line ("Unhandled error in
** Deferred:"). Never raises: if logging itself fails it writes to stderr. */
void sp_log_failure(lua_State *L, int idx, const char *why);

/* [-0, +0, -] spindle.log.msg(text), never raising: if logging fails the
** line is dropped (it is a notice, not an error). */
void sp_log_msg(lua_State *L, const char *text);

/* [-0, +1, m] Push the registry's table under key (the address of a
** static), made on first use with weak references of `mode` ("k", "v" or
** "kv", Lua's __mode). */
void sp_registry_weak(lua_State *L, const void *key, const char *mode);

/* [-0, +0, m] Make the module table at idx strict: reading a missing field
** raises "<name> has no field 'x' (did you mean 'y'?)". */
void sp_strict(lua_State *L, int idx, const char *name);

/* [-0, +0, e] Raise a bad-argument error unless idx is callable (a function
** or a value whose metatable has __call). */
void sp_checkcallable(lua_State *L, int idx);

/* [-0, +0, v] sp_checkcallable for argument idx of the module function
** fname, named through sp_fntypeerror. */
void sp_fncheckcallable(lua_State *L, int idx, const char *fname);

/* [-0, +0, e] Open the standard libraries, preload the C modules of
** `cmodules` (embed.h's generated sp_cmodules: main.c passes it, so that
** core.c, which every module uses, does not depend on the table that
** names them all) and install the searcher for the Lua files compiled
** into the binary (and SPINDLE_LUA_PATH for development). */
void sp_openlibs(lua_State *L, const luaL_Reg *cmodules);

/* [-0, +0, e] Insert searcher into package.searchers right after the
** preload one, so it answers before the path searchers. A searcher that
** does not know a name must return nothing (no string), so that a failed
** require lists the same places `lua` lists. */
void sp_add_searcher(lua_State *L, lua_CFunction searcher);

/* Register fn to run when the process ends normally, before lua_close
** (the reactor closes its handles there). Hooks run last-registered first. */
void sp_on_shutdown(void (*fn)(lua_State *L));

/* Run the shutdown hooks; main.c calls it once. */
void sp_shutdown(lua_State *L);

/* spindle._core's opener (pool threads preload it in their states). */
int luaopen_spindle__core(lua_State *L);

/* f:buildProtocol(addr) -> protocol: an instance of f.protocol (called
** with no arguments) whose `factory` field is f; raises "Factory.
** buildProtocol: factory has no 'protocol' set" (at the caller) when
** f.protocol is nil. It is spindle.protocol's Factory.buildProtocol; addr
** is not used, so an accept path that finds this function as a factory's
** buildProtocol (lua_tocfunction) may pass nil and make no address, the
** garbage of every accepted connection otherwise. Loop thread. twisted
** Factory.buildProtocol. */
int sp_factory_buildProtocol(lua_State *L);

#endif
