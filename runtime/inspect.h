/*
** inspect.h: what the inspector (inspect.c, spindle._inspect behind
** lua/spindle/inspect.lua) needs from the other C files, and the hook
** through which they show their handles.
*/
#ifndef SP_INSPECT_H
#define SP_INSPECT_H

#include <stdint.h>

#include <lua.h>

/* Where a Deferred (or anything else) was made: the first frame above
** the caller that is Lua code outside spindle's own lua/spindle/ files.
** src is interned by inspect.c and lives as long as the process (never
** freed by the caller); NULL when no such frame was found. born is
** uv_now() of the loop, milliseconds. */
typedef struct sp_where {
  const char *src;
  int line;
  uint64_t born;
} sp_where;

/* [-0, +0, -] Fill w with the Lua code that is making something now
** (lua_getstack from level 1, past C functions and lua/spindle/ code, at
** most a few frames). Cheap: no allocation except the first time a
** source file is seen. Loop thread (the thread of L). */
void sp_inspect_where(lua_State *L, sp_where *w);

/* [-0, +2, m] Push w as "file:line" (or "?") and its age in seconds. */
void sp_inspect_pushwhere(lua_State *L, const sp_where *w);

/* A provider of inspector rows for one kind of handle ("tcp", "unix",
** "udp", "tls", ...): it appends one table per live handle to the array
** at stack index t (lua_rawseti(L, t, lua_rawlen(L, t) + 1)), with the
** fields the inspector prints when present: kind ("port" or
** "connection"), protocol (class name), host, peer (address strings),
** age (seconds), bytesIn, bytesOut, queued (bytes), producer
** ("streaming", "pull", nil), paused (boolean). It runs on the loop
** thread inside a protected call and may raise. */
typedef void (*sp_inspect_rows)(lua_State *L, int t);

/* Register fn as the rows of `kind` (a static string). Called once per
** kind, from its module's opener; a second call for the same kind
** replaces the first. At most 16 kinds. Loop thread. */
void sp_inspect_register(const char *kind, sp_inspect_rows fn);

#endif
