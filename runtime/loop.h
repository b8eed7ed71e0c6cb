/*
** loop.h: the reactor's libuv loop, for the files that add handles to it,
** and the cross-thread inbox that feeds the loop thread (loop.c).
*/
#ifndef SP_LOOP_H
#define SP_LOOP_H

#include <uv.h>
#include <lua.h>

/* The one loop every handle lives on (uv_default_loop). The first call
** (on the main thread; opening spindle._loop makes it) also sets up the
** reactor's own handles and its shutdown hook. */
uv_loop_t *sp_loop(void);

/* The Lua state that loop callbacks must call into: the thread that
** called reactor.run() while it runs (a coroutine, maybe), else
** sp_mainstate. Loop thread only. */
lua_State *sp_loop_state(void);

/* Monotonic time in seconds (uv_hrtime), the clock of reactor.seconds()
** and of DelayedCall times. Any thread. */
double sp_loop_seconds(void);

/* uv_timer_start of t (initialised, on any loop) to call cb once, ms
** milliseconds from now rather than from the loop's last turn: the loop's
** cached clock is refreshed first (uv_update_time), since the caller may
** have run for long since then (a script's set-up, a blocking call).
** Every timer in the runtime is started with it. Loop thread only. */
void sp_timer_start(uv_timer_t *t, uv_timer_cb cb, uint64_t ms);

/* Is the reactor running (reactor.running)? Loop thread only. */
int sp_loop_running(void);

/* Has stop() been called on the running reactor (shutdown under way)?
** Loop thread only. */
int sp_loop_stopping(void);

/* A message for the loop thread. Embed it as the first member of your
** own struct (a pool result: marshalled buffer, Deferred id, ...). */
typedef struct sp_loop_msg sp_loop_msg;
struct sp_loop_msg {
  sp_loop_msg *next; /* owned by the inbox while queued */
  /* Runs on the loop thread with the loop's Lua state and must free m.
  ** It must not raise: call Lua with sp_pcall and log failures. At
  ** shutdown, messages never run are dropped with run(NULL, m), which
  ** only frees (possibly on the posting thread, if posted after). */
  void (*run)(lua_State *L, sp_loop_msg *m);
};

/* Queue m for the loop thread, FIFO among messages, and wake the loop
** (uv_async_send). Any thread; never blocks beyond a short mutex hold;
** m must not be touched by the caller afterwards. The reactor calls it
** for callFromThread; pool threads use it to hand back results.
** Follows twisted's reactor.callFromThread / threadCallQueue. */
void sp_loop_post(sp_loop_msg *m);

/* The live registry: every handle kind outside loop.c (streams,
** listening sockets, connecting connectors, UDP ports), and what else must
** end at exit (the thread pool, shared read buffers), links an sp_live
** into it while it is open. At process exit the loop's shutdown hook
** first calls each entry's shutdown, by phase (SP_LIVE_THREADS, then
** SP_LIVE_HANDLE, then SP_LIVE_MEMORY) and newest first within a phase,
** so that each kind closes its handles with its own close callback and
** tells its Lua side (a connection's connectionLost, a port's doStop);
** only then does it close what is left on the loop (its own timers, async
** and signals) and run the loop until every close callback has run. This
** is the one order at exit; no module registers a shutdown hook of its
** own. */
typedef struct sp_live sp_live;
struct sp_live {
  sp_live *prev, *next; /* owned by the registry while linked */
  /* Close the handle(s) behind n for process exit. It may unlink n (or
  ** other entries) and must not free n synchronously before unlinking it;
  ** close callbacks normally free and unlink. */
  void (*shutdown)(lua_State *L, sp_live *n);
  int phase; /* SP_LIVE_*; 0 (a zeroed entry) is SP_LIVE_HANDLE */
};

/* Phases of the exit order. Threads end first (a worker may be waiting on
** the loop thread, and no new reply should arrive while connections are
** lost); then handles close (connectionLost may still use the loop); last,
** memory that handles shared (the read buffers) is freed. */
enum { SP_LIVE_THREADS = -1, SP_LIVE_HANDLE = 0, SP_LIVE_MEMORY = 1 };

/* Link n into the registry (n->shutdown set) / out of it; removing an
** entry that is not linked does nothing. Loop thread only. */
void sp_live_add(sp_live *n);
void sp_live_remove(sp_live *n);

/* Call fn(n, arg) for every entry, oldest first (the inspector's view of
** the handles: each kind finds its own by n->shutdown). fn must not add
** or remove entries. Loop thread only. */
void sp_live_each(void (*fn)(sp_live *n, void *arg), void *arg);

/* Work that must wait until the DelayedCalls already due in this loop
** turn have run: a transport's close after loseConnection (Twisted closes
** in doWrite, which its reactor reaches only after runUntilCurrent, so a
** callLater(0) made right after loseConnection still writes first). An
** entry linked with sp_loop_after_due runs once, from a uv_prepare handle
** of the loop: after the idle phase that runs the due calls, before the
** loop polls. Entries linked while the pass runs wait for the next one.
** run must not raise (call Lua with sp_pcall) and may relink its entry.
** Unlink an entry before freeing its memory. Loop thread only. */
typedef struct sp_loop_later sp_loop_later;
struct sp_loop_later {
  sp_loop_later *prev, *next; /* owned by the loop while linked */
  void (*run)(lua_State *L, sp_loop_later *n);
};

/* Link n (n->run set) to run after the due calls; linking an entry that
** is already linked does nothing. sp_loop_after_due_cancel unlinks it
** (nothing if it is not linked). Loop thread only. */
void sp_loop_after_due(sp_loop_later *n);
void sp_loop_after_due_cancel(sp_loop_later *n);

/* Install fn to see SIGINT first while the reactor runs: if it returns
** nonzero the signal is handled (the REPL stops waiting or clears its
** line), otherwise the reactor stops as usual. NULL removes it. Loop
** thread only. */
void sp_loop_set_interrupt_hook(int (*fn)(lua_State *L));

/* Install fn to claim SIGINT and SIGTERM: while fn(signo) returns
** nonzero, the signal is Lua code's (signals.c's addSignalHandler) and no
** longer stops the reactor. NULL removes it. Loop thread only. */
void sp_loop_set_signal_claim(int (*fn)(int signo));
/* Run fn(L) once on the loop thread, from a Lua hook, as soon as Lua
** code runs there (the running reactor's thread, or the coroutine it
** resumes through spindle._interrupt). fn must not raise or yield; it may
** call Lua under lua_pcall. Async-signal-safe: call it from a signal
** handler running on the loop thread (the watchdog's way in); a later
** request replaces one not yet run. Nothing happens while the reactor
** is not running. As the interrupt of lua.c's laction. */
void sp_loop_request_hook(void (*fn)(lua_State *L));

#endif
