/*
** repl.h: the interactive prompt (spindle with no script, or -i).
*/
#ifndef SP_REPL_H
#define SP_REPL_H

#include <lua.h>

/* Read-eval-print until end of input; see repl.c. */
void sp_repl_run(lua_State *L);

#endif
