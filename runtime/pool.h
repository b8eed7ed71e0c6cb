/*
** pool.h: the thread pool (pool.c) for the other C files.
*/
#ifndef SP_POOL_H
#define SP_POOL_H

#include <lua.h>

/* Is the calling thread one of the pool's workers? Any thread. */
int sp_pool_inworker(void);

/* Stop the pool: drop the work not started, wake workers waiting in
** blockingCallFromThread (they raise), wait for running work to end and
** join every thread. Idempotent; the shutdown hook calls it. Main thread.
** Follows twisted.python.threadpool.ThreadPool.stop. */
void sp_pool_stop(void);

#endif
