/*
** worker.h: a pool thread's Lua state (worker.c), for pool.c.
*/
#ifndef SP_WORKER_H
#define SP_WORKER_H

#include <lua.h>

/* The functions of a worker's state that talk to the loop thread; the
** pool (pool.c) owns that path, so it hands them in. Each is the C
** function behind the Lua function of the same name in the worker. */
typedef struct sp_worker_funcs {
  lua_CFunction callFromThread;         /* reactor.callFromThread */
  lua_CFunction blockingCallFromThread; /* threads.blockingCallFromThread */
  lua_CFunction log_msg;                /* log.msg */
  lua_CFunction log_err;                /* log.err */
} sp_worker_funcs;

/* [-0, +0, e] Take the names a worker's spindle.reactor and
** spindle.threads guard (every function field of the real modules that
** only the reactor thread may call) from the modules themselves, once,
** requiring them in L if need be. Main thread, before the first worker
** starts; later calls do nothing. Raises if a module cannot load. */
void sp_worker_snapshot(lua_State *L);

/* Free the names taken by sp_worker_snapshot. Main thread, once no
** worker runs (the pool has stopped and joined them). */
void sp_worker_release(void);

/* A new Lua state for a pool thread: the standard libraries, and the
** thread-safe part of spindle (spindle.reactor's callFromThread and
** seconds, spindle.threads' blockingCallFromThread, spindle.log,
** spindle.failure, spindle.class); the rest of the reactor and threads
** functions are guards that raise, and other spindle modules are
** refused. funcs must live as long as the state. NULL if it cannot be
** made. Called by the worker thread that will own the state. */
lua_State *sp_worker_newstate(const sp_worker_funcs *funcs);

#endif
