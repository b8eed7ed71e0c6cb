/*
** loop.h: the reactor's libuv loop, for the files that add handles to it.
*/
#ifndef SP_LOOP_H
#define SP_LOOP_H

#include <uv.h>
#include <lua.h>

/* The one loop every handle lives on (uv_default_loop). */
uv_loop_t *sp_loop(void);

#endif
