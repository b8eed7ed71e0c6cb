/*
** defer.h: Deferreds for the other C files (spindle.defer is defer.c).
*/
#ifndef SP_DEFER_H
#define SP_DEFER_H

#include <lua.h>

/* [-0, +1, m] Push a new unfired Deferred with no canceller. */
void sp_deferred_new(lua_State *L);

/* [-0, +1, m] Push the Deferred metatable of L, for a C function that
** makes many Deferreds to keep as an upvalue (sp_deferred_new_meta). */
void sp_deferred_meta(lua_State *L);

/* [-0, +1, m] sp_deferred_new with the metatable sp_deferred_meta pushed
** at index mt (an upvalue index, say): no registry lookup (pool.c's
** deferToThread, once per call). */
void sp_deferred_new_meta(lua_State *L, int mt);

/* [-0, +0, -] Is the value at idx a Deferred? */
int sp_deferred_is(lua_State *L, int idx);

/* [-0, +0, e] d:callback(value) for the Deferred at d and value at v;
** raises AlreadyCalledError as the Lua method does. */
void sp_deferred_callback(lua_State *L, int d, int v);

/* [-0, +0, e] sp_deferred_callback for a value at d known to be a
** Deferred (one the caller made with sp_deferred_new and kept): d is not
** checked, which saves a registry lookup per result (pool.c). */
void sp_deferred_callback_known(lua_State *L, int d, int v);

/* [-0, +0, e] d:errback(f) for the Deferred at d and the Failure or error
** value at f (wrapped in a Failure). */
void sp_deferred_errback(lua_State *L, int d, int f);

#endif
