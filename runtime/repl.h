/*
** repl.h: the interactive prompt (spindle with no script, or -i).
*/
#ifndef SP_REPL_H
#define SP_REPL_H

#include <lua.h>

/* A protected call (lua_pcall's shape) whose error, if any, is left as
** the message the binary prints (main.c's, with its traceback). */
typedef int (*sp_repl_docall)(lua_State *L, int narg, int nres);

/* Read-eval-print until end of input; see repl.c. The binary passes its
** own docall, so the REPL reports errors as scripts do, without repl.c
** depending on main.c. Main thread. */
void sp_repl_run(lua_State *L, sp_repl_docall docall);

/* Make the next sp_repl_run a client of the REPL served at the Unix
** socket path (reactor.listenREPL in another process): `spindle
** --attach PATH`. path must outlive the session. Main thread. */
void sp_repl_attach(const char *path);

#endif
