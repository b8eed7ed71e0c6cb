/*
** embed.h: what the build compiles into the binary (tools/embed.sh).
*/
#ifndef SP_EMBED_H
#define SP_EMBED_H

#include <stddef.h>

#include <lua.h>
#include <lauxlib.h>

typedef struct sp_luafile {
  const char *name;  /* module name: "spindle.protocol" */
  const char *chunk; /* chunk name for tracebacks: "@lua/spindle/..." */
  const char *source;
  size_t size;
} sp_luafile;

/* Every Lua file under lua/spindle, terminated by a NULL name. */
extern const sp_luafile sp_luafiles[];

/* Every luaopen_spindle_* in runtime/, as "spindle.x" / "spindle._x". */
extern const luaL_Reg sp_cmodules[];

#endif
