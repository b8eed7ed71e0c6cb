/*
** loop.c: the reactor's mechanism (spindle._loop): the libuv loop and
** its run/halt, callLater's DelayedCalls, the cross-thread inbox behind
** callFromThread, and SIGINT/SIGTERM. Follows
** twisted.internet.base.ReactorBase and twisted.internet.base.DelayedCall.
** The policy written on it (system event triggers, stop(), running,
** callWhenRunning, runUntilComplete) is Lua: lua/spindle/lifecycle.lua.
**
** Timers: one uv_timer armed for the earliest entry of a binary heap of
** DelayedCalls ordered by (time, scheduling sequence), so same-time calls
** run in the order scheduled. A DelayedCall is a userdata whose function
** and arguments are its user values (nil holes kept); while pending it is
** anchored by a ref in a registry table, so firing allocates nothing.
**
** States: run() moves idle -> running and calls the policy's `started`
** hook; beginStop() moves running -> stopping (the policy then fires the
** 'shutdown' event); halt() moves stopping -> stopped, and run() returns
** to idle. A signal while running calls the policy's stop handler; one
** while stopping forces the exit.
**
** Handles (timer, async, signals) live in malloc'd memory freed in their
** close callbacks; the shutdown hook closes every handle left on the loop
** and runs it until they are closed, so lua_close ends clean.
**
** Length: this file is a little over 1000 lines. The exit registry (the
** live list and the after-due queue, loop.h) and the handle census belong
** with the loop: they mark their handles as the loop's own and run inside
** its shutdown order. If it grows further, the census (the last section,
** a separate module) is the part to move out first.
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "failure.h"
#include "loop.h"

#define DCALL_MT "spindle.DelayedCall"

/* Registry keys: addresses of these variables. */
static const char anchor_key = 'A'; /* ref -> pending DelayedCall */
static const char fifo_key = 'F';   /* callFromThread's main-thread FIFO */

typedef enum { DC_PENDING, DC_CALLED, DC_CANCELLED } dcall_state;

typedef struct dcall {
  double time;  /* when due, in sp_loop_seconds() */
  uint64_t seq; /* scheduling order, breaks ties on time */
  int heapidx;  /* index in timers.heap; -1 when not scheduled */
  int ref;      /* anchor ref while pending, else LUA_NOREF */
  int nargs;    /* user values: 1 the function, 2.. its arguments */
  dcall_state state;
} dcall;

static struct {
  dcall **heap;
  int n, cap;
  uint64_t nextseq;
  uv_timer_t *handle;
  uv_idle_t *idle; /* runs calls already due, once per loop iteration */
  int inpass;      /* inside timer_cb: arm once at its end */
} timers;

/* The reactor's state: S_RUNNING from run() to stop(), S_STOPPING while
** the shutdown event fires, S_STOPPED once run() should return. */
static enum { S_IDLE, S_RUNNING, S_STOPPING, S_STOPPED } state = S_IDLE;
static int running = 0; /* reactor.running, as Twisted's */
static int initialized = 0, closed = 0;
static lua_State *runL = NULL; /* the thread that called run() */

/* The cross-thread inbox: a locked singly linked list. */
static struct {
  uv_mutex_t lock;
  uv_async_t *async;
  sp_loop_msg *head, *tail;
  int closed;
} inbox;

static lua_Integer fifo_head = 0, fifo_tail = 0;

static const int signums[] = {SIGINT, SIGTERM};
#define NSIGNALS 2
static uv_signal_t *signals[NSIGNALS];

/* Marks the handles this file owns (handle->data), freed on close. */
static char owned_marker;

/* ---------------------------------------------------------------- */
/* Shared helpers                                                      */

double sp_loop_seconds(void) {
  return (double)uv_hrtime() / 1e9;
}

int sp_loop_running(void) {
  return running;
}

int sp_loop_stopping(void) {
  return state == S_STOPPING || state == S_STOPPED;
}

lua_State *sp_loop_state(void) {
  return runL != NULL ? runL : sp_mainstate;
}

/* [-(nargs+1), +1, -] Call f with nargs arguments under sp_pcall; leave
** its first result, or nil after logging its error as `why`. */
static void call_logged(lua_State *L, int nargs, const char *why) {
  if (sp_pcall(L, nargs, 1) != LUA_OK) {
    sp_log_failure(L, -1, why);
    lua_pop(L, 1);
    lua_pushnil(L);
  }
}

static void handle_free(uv_handle_t *h) {
  free(h);
}

/* ---------------------------------------------------------------- */
/* The timer heap                                                      */

static int dcall_before(const dcall *a, const dcall *b) {
  return a->time < b->time || (a->time == b->time && a->seq < b->seq);
}

static void heap_set(int i, dcall *c) {
  timers.heap[i] = c;
  c->heapidx = i;
}

static void heap_up(int i) {
  dcall *c = timers.heap[i];
  while (i > 0) {
    int parent = (i - 1) / 2;
    if (!dcall_before(c, timers.heap[parent])) break;
    heap_set(i, timers.heap[parent]);
    i = parent;
  }
  heap_set(i, c);
}

static void heap_down(int i) {
  dcall *c = timers.heap[i];
  for (;;) {
    int child = 2 * i + 1;
    if (child >= timers.n) break;
    if (child + 1 < timers.n &&
        dcall_before(timers.heap[child + 1], timers.heap[child]))
      child++;
    if (!dcall_before(timers.heap[child], c)) break;
    heap_set(i, timers.heap[child]);
    i = child;
  }
  heap_set(i, c);
}

/* Room for one more entry; 0 when out of memory. */
static int heap_reserve(void) {
  if (timers.n < timers.cap) return 1;
  int cap = timers.cap ? timers.cap * 2 : 64;
  dcall **h = realloc(timers.heap, (size_t)cap * sizeof *h);
  if (h == NULL) return 0;
  timers.heap = h;
  timers.cap = cap;
  return 1;
}

static void heap_push(dcall *c) {
  timers.heap[timers.n] = c;
  c->heapidx = timers.n++;
  heap_up(c->heapidx);
}

static void heap_remove(dcall *c) {
  int i = c->heapidx;
  dcall *last;
  if (i < 0) return;
  c->heapidx = -1;
  last = timers.heap[--timers.n];
  if (i == timers.n) return;
  heap_set(i, last);
  heap_up(i);
  heap_down(last->heapidx);
}

/* A changed time: move c to its place. */
static void heap_fix(dcall *c) {
  heap_up(c->heapidx);
  heap_down(c->heapidx);
}

static void timer_cb(uv_timer_t *h);

/* Arm the uv_timer for the earliest DelayedCall (ms, rounded up; an early
** wake-up only re-arms). */
static void idle_cb(uv_idle_t *h);

/* Arm the loop for the earliest DelayedCall. A call already due goes to
** the idle handle rather than a 0 ms uv_timer: libuv 1.44 re-runs a timer
** that is due again within the same timer phase, so a callLater(0) that
** schedules itself would never let the loop poll for I/O or signals. An
** active idle handle makes the poll not block, and runs once per
** iteration, after the poll of the previous one. */
static void timers_arm(void) {
  double dt;
  uint64_t ms;
  if (timers.inpass || closed || timers.handle == NULL) return;
  if (timers.n == 0) {
    uv_timer_stop(timers.handle);
    uv_idle_stop(timers.idle);
    return;
  }
  dt = timers.heap[0]->time - sp_loop_seconds();
  if (!(dt > 0)) {
    uv_timer_stop(timers.handle);
    uv_idle_start(timers.idle, idle_cb);
    return;
  }
  uv_idle_stop(timers.idle);
  if (dt > 1e12)
    ms = UINT64_C(1000000000000000);
  else
    ms = (uint64_t)ceil(dt * 1000.0);
  sp_timer_start(timers.handle, timer_cb, ms);
}

void sp_timer_start(uv_timer_t *t, uv_timer_cb cb, uint64_t ms) {
  uv_update_time(t->loop);
  uv_timer_start(t, cb, ms, 0);
}

/* ---------------------------------------------------------------- */
/* DelayedCall                                                         */

/* [-0, +0, -] Drop the function and arguments of the DelayedCall at idx
** so that what they hold can be collected. */
static void dcall_release(lua_State *L, int idx, dcall *c) {
  idx = lua_absindex(L, idx);
  for (int i = 1; i <= c->nargs + 1; i++) {
    lua_pushnil(L);
    lua_setiuservalue(L, idx, i);
  }
}

/* [-0, +0, -] Drop the anchor of a DelayedCall leaving the heap. */
static void dcall_unanchor(lua_State *L, dcall *c) {
  if (c->ref == LUA_NOREF) return;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &anchor_key);
  luaL_unref(L, -1, c->ref);
  lua_pop(L, 1);
  c->ref = LUA_NOREF;
}

/* [-0, +1, m] Schedule the function at fidx with the nargs values after it
** to run in `delay` seconds; push the DelayedCall. Once the process has
** begun to exit (the shutdown hook closed the loop: connections lost at
** exit call protocols that may schedule more), the call is accepted as
** Twisted accepts it during shutdown, but never runs: it stays pending,
** off the heap, and is collected with the state. */
static dcall *dcall_schedule(lua_State *L, double delay, int fidx, int nargs) {
  dcall *c;
  fidx = lua_absindex(L, fidx);
  c = lua_newuserdatauv(L, sizeof *c, nargs + 1);
  c->heapidx = -1;
  c->ref = LUA_NOREF;
  c->nargs = nargs;
  c->state = DC_CANCELLED;
  luaL_setmetatable(L, DCALL_MT);
  for (int i = 0; i <= nargs; i++) {
    lua_pushvalue(L, fidx + i);
    lua_setiuservalue(L, -2, i + 1);
  }
  c->time = sp_loop_seconds() + delay;
  if (closed) {
    c->state = DC_PENDING;
    return c;
  }
  if (!heap_reserve()) luaL_error(L, "not enough memory");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &anchor_key);
  lua_pushvalue(L, -2);
  c->ref = luaL_ref(L, -2);
  lua_pop(L, 1);
  c->seq = timers.nextseq++;
  c->state = DC_PENDING;
  heap_push(c);
  if (c->heapidx == 0) timers_arm();
  return c;
}

/* Run one due DelayedCall (already off the heap); an error is logged. */
static void dcall_fire(lua_State *L, dcall *c) {
  int top = lua_gettop(L), ud;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &anchor_key);
  lua_rawgeti(L, -1, c->ref);
  ud = lua_gettop(L);
  dcall_unanchor(L, c);
  c->state = DC_CALLED;
  if (!lua_checkstack(L, c->nargs + 8)) {
    lua_pushliteral(L, "stack overflow: too many arguments to callLater");
    sp_log_failure(L, -1, NULL);
  } else {
    for (int i = 1; i <= c->nargs + 1; i++) lua_getiuservalue(L, ud, i);
    if (sp_pcall(L, c->nargs, 0) != LUA_OK) sp_log_failure(L, -1, NULL);
  }
  dcall_release(L, ud, c);
  lua_settop(L, top);
}

/* Run the DelayedCalls due now, in (time, seq) order. Calls scheduled
** during this pass wait for the next one, as in Twisted's
** runUntilCurrent, so a callLater(0) loop cannot starve the loop. */
static void timers_run(void) {
  lua_State *L = sp_loop_state();
  double now = sp_loop_seconds();
  uint64_t limit = timers.nextseq;
  timers.inpass = 1;
  while (timers.n > 0) {
    dcall *c = timers.heap[0];
    if (c->time > now || c->seq >= limit) break;
    heap_remove(c);
    dcall_fire(L, c);
  }
  timers.inpass = 0;
  timers_arm();
}

static void timer_cb(uv_timer_t *h) {
  (void)h;
  timers_run();
}

static void idle_cb(uv_idle_t *h) {
  (void)h;
  timers_run();
}

static dcall *dcall_check(lua_State *L) {
  return luaL_checkudata(L, 1, DCALL_MT);
}

/* Raise AlreadyCalled / AlreadyCancelled unless c is pending; `verb`
** names the attempted action. */
static void dcall_checkpending(lua_State *L, dcall *c, const char *verb) {
  if (c->state == DC_CALLED)
    sp_errortype_raise(L, "reactor.AlreadyCalled", NULL,
                       "Tried to %s an already-called event.", verb);
  if (c->state == DC_CANCELLED)
    sp_errortype_raise(L, "reactor.AlreadyCancelled", NULL,
                       "Tried to %s an already-cancelled event.", verb);
}

/* dc:cancel(): unschedule the call. Raises AlreadyCalled if it ran,
** AlreadyCancelled if it was cancelled. twisted DelayedCall.cancel. */
static int dcall_cancel(lua_State *L) {
  dcall *c = dcall_check(L);
  int wastop;
  dcall_checkpending(L, c, "cancel");
  wastop = c->heapidx == 0;
  heap_remove(c);
  c->state = DC_CANCELLED;
  dcall_unanchor(L, c);
  dcall_release(L, 1, c);
  if (wastop) timers_arm();
  return 0;
}

/* [-0, +0, -] Give c a new due time and its place in the heap. */
static void dcall_move(dcall *c, double time) {
  c->time = time;
  if (c->heapidx < 0) return; /* accepted after exit began: never runs */
  c->seq = timers.nextseq++;
  heap_fix(c);
  timers_arm();
}

/* [-0, +0, v] The seconds of reset/delay (argument 2): a number, not
** NaN (a numeric string converted, as luaL_checknumber); the errors name
** the method through pcall too (sp_argerror). */
static double dcall_checkseconds(lua_State *L) {
  int isnum;
  double s = lua_tonumberx(L, 2, &isnum);
  if (!isnum) sp_typeerror(L, 2, "number", DCALL_MT);
  if (s != s) sp_argerror(L, 2, "number expected, got NaN", DCALL_MT);
  return s;
}

/* dc:reset(secondsFromNow): run the call secondsFromNow seconds from now
** instead. Raises as cancel() does, and a bad-argument error when
** secondsFromNow is NaN. twisted DelayedCall.reset. */
static int dcall_reset(lua_State *L) {
  dcall *c = dcall_check(L);
  double s = dcall_checkseconds(L), t;
  dcall_checkpending(L, c, "reset");
  t = sp_loop_seconds() + s;
  if (t != t) sp_argerror(L, 2, "the new due time would be NaN", DCALL_MT);
  dcall_move(c, t);
  return 0;
}

/* dc:delay(seconds): push the call `seconds` later (earlier if
** negative). Raises as cancel() does, and a bad-argument error when
** seconds is NaN or would make the due time NaN (math.huge, then
** -math.huge). twisted DelayedCall.delay. */
static int dcall_delay(lua_State *L) {
  dcall *c = dcall_check(L);
  double s = dcall_checkseconds(L), t;
  dcall_checkpending(L, c, "delay");
  t = c->time + s;
  if (t != t) sp_argerror(L, 2, "the new due time would be NaN", DCALL_MT);
  dcall_move(c, t);
  return 0;
}

/* dc:active() -> boolean: neither called nor cancelled. */
static int dcall_active(lua_State *L) {
  lua_pushboolean(L, dcall_check(L)->state == DC_PENDING);
  return 1;
}

/* dc:getTime() -> seconds: when the call is due, in reactor.seconds(). */
static int dcall_getTime(lua_State *L) {
  lua_pushnumber(L, dcall_check(L)->time);
  return 1;
}

static int dcall_tostring(lua_State *L) {
  dcall *c = dcall_check(L);
  char in[32];
  snprintf(in, sizeof in, "%.3f", c->time - sp_loop_seconds());
  lua_pushfstring(L, "<DelayedCall %p [%ss] called=%d cancelled=%d>", (void *)c,
                  in, c->state == DC_CALLED, c->state == DC_CANCELLED);
  return 1;
}

/* dc.called, dc.cancelled -> boolean; dc.time -> seconds (when due, in
** reactor.seconds()): read-only fields, as Twisted's DelayedCall has. */
static int dcall_getcalled(lua_State *L) {
  lua_pushboolean(L, dcall_check(L)->state == DC_CALLED);
  return 1;
}

static int dcall_getcancelled(lua_State *L) {
  lua_pushboolean(L, dcall_check(L)->state == DC_CANCELLED);
  return 1;
}

static int dcall_gettime(lua_State *L) {
  lua_pushnumber(L, dcall_check(L)->time);
  return 1;
}

/* dc.func -> the function, dc.args -> {arguments..., n = count}: what
** the call will run, while it is pending (nil once it has run or been
** cancelled, when they are let go), as Twisted's DelayedCall.func and
** .args; the inspector shows where func was defined. */
static int dcall_getfunc(lua_State *L) {
  dcall_check(L);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int dcall_getargs(lua_State *L) {
  dcall *c = dcall_check(L);
  if (c->state != DC_PENDING) return 0;
  luaL_checkstack(L, c->nargs + 2, NULL);
  lua_createtable(L, c->nargs, 1);
  for (int i = 1; i <= c->nargs; i++) {
    lua_getiuservalue(L, 1, i + 1);
    lua_rawseti(L, -2, i);
  }
  lua_pushinteger(L, c->nargs);
  lua_setfield(L, -2, "n");
  return 1;
}

static const luaL_Reg dcall_getters[] = {
    {"called", dcall_getcalled}, {"cancelled", dcall_getcancelled},
    {"time", dcall_gettime},     {"func", dcall_getfunc},
    {"args", dcall_getargs},     {NULL, NULL}};

static const luaL_Reg dcall_meta[] = {{"__tostring", dcall_tostring},
                                      {NULL, NULL}};

static const luaL_Reg dcall_methods[] = {
    {"cancel", dcall_cancel},   {"reset", dcall_reset},
    {"delay", dcall_delay},     {"active", dcall_active},
    {"getTime", dcall_getTime}, {NULL, NULL}};

/* ---------------------------------------------------------------- */
/* Queued calls                                                        */

/* [-0, +1, -] Call entry {f, args..., n = nargs} at idx (callFromThread's
** FIFO); push its result (nil after logging an error). */
static void entry_call(lua_State *L, int idx) {
  int n;
  idx = lua_absindex(L, idx);
  lua_getfield(L, idx, "n");
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (!lua_checkstack(L, n + 8)) {
    lua_pushnil(L);
    return;
  }
  for (int i = 1; i <= n + 1; i++) lua_rawgeti(L, idx, i);
  call_logged(L, n, NULL);
}

/* ---------------------------------------------------------------- */
/* run / stop                                                          */

/* Registry key: the function a signal calls to stop the reactor (the
** policy's reactor.stop, set with _loop.setStopHandler). */
static const char stophandler_key = 'S';

/* _loop.beginStop() -> boolean: mark a running reactor as stopping (its
** shutdown is under way) and return true; false if it is not running or
** stopping already. The policy (lifecycle.lua) then fires 'shutdown'. */
static int loop_beginStop(lua_State *L) {
  int ok = state == S_RUNNING;
  if (ok) state = S_STOPPING;
  lua_pushboolean(L, ok);
  return 1;
}

/* _loop.halt(): shutdown has finished: end run() once the current
** callback returns. Does nothing unless the reactor is stopping. */
static int loop_halt(lua_State *L) {
  (void)L;
  if (state != S_STOPPING) return 0;
  state = S_STOPPED;
  uv_stop(sp_loop());
  return 0;
}

/* _loop.setRunning(b): set reactor.running (the policy sets it once the
** 'before startup' triggers are done, clears it at 'during shutdown'). */
static int loop_setRunning(lua_State *L) {
  running = lua_toboolean(L, 1);
  return 0;
}

/* _loop.state() -> "idle", "running", "stopping" or "stopped". */
static int loop_state(lua_State *L) {
  static const char *const names[] = {"idle", "running", "stopping", "stopped"};
  lua_pushstring(L, names[state]);
  return 1;
}

/* _loop.setStopHandler(f): f() is what SIGINT/SIGTERM call to stop a
** running reactor (the policy's reactor.stop). */
static int loop_setStopHandler(lua_State *L) {
  sp_checkcallable(L, 1);
  lua_settop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &stophandler_key);
  return 0;
}

/* SIGINT / SIGTERM while running: stop, so shutdown triggers run, as
** Twisted's _SignalReactorMixin does. One while shutdown is already under
** way (a 'before shutdown' trigger's Deferred that never fires, say)
** forces the exit, as Node and systemd users expect of a second Ctrl-C or
** SIGTERM: a line on stderr, then _exit with 128 + the signal's number
** (130, 143), the status a shell reports for a process the signal
** killed. Nothing more runs: not the rest of shutdown, nor the exit
** hooks, since they may be what hangs. */
static int (*interrupt_hook)(lua_State *L) = NULL;
static void interrupt_clear(void);

void sp_loop_set_interrupt_hook(int (*fn)(lua_State *L)) {
  interrupt_hook = fn;
}

static void signal_force_exit(int signum) {
  const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
  fflush(NULL);
  fprintf(stderr,
          "spindle: %s while shutting down: exiting now, without "
          "waiting for shutdown to finish (status %d)\n",
          name, 128 + signum);
  fflush(stderr);
  _exit(128 + signum);
}

static int (*signal_claim)(int signo) = NULL;

void sp_loop_set_signal_claim(int (*fn)(int signo)) {
  signal_claim = fn;
}

static void signal_cb(uv_signal_t *h, int signum) {
  lua_State *L = sp_loop_state();
  char text[64];
  (void)h;
  interrupt_clear();
  if (signal_claim != NULL && signal_claim(signum)) return;
  if (state == S_STOPPING) signal_force_exit(signum);
  if (state != S_RUNNING) return;
  if (signum == SIGINT && interrupt_hook != NULL && interrupt_hook(L)) return;
  snprintf(text, sizeof text, "Received %s, shutting down.",
           signum == SIGINT ? "SIGINT" : "SIGTERM");
  sp_log_msg(L, text);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &stophandler_key) == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (sp_pcall(L, 0, 0) != LUA_OK) {
    sp_log_failure(L, -1, NULL);
    lua_pop(L, 1);
  }
}

/* A signal reaches signal_cb only when the loop gets control back. Lua code
** that never returns (a busy loop in a callback) would keep it from ever
** doing so, and SIGINT/SIGTERM could not stop the process. So our own
** handler sits in front of libuv's: it notes the time and sets a Lua hook
** (lua_sethook is safe in a signal handler, as lua.c's laction uses it);
** if the loop has not handled the signal half a second later, the hook
** raises "interrupted!" in the running Lua code, as the lua command does.
** The error is caught and logged like any callback error, the loop gets
** control back, and signal_cb stops the reactor. */
#define INTERRUPT_GRACE 0.5 /* seconds */
static volatile sig_atomic_t interrupt_pending = 0;
static struct timespec interrupt_at;
static lua_State *volatile interrupt_L = NULL;
static lua_State *volatile interrupt_co = NULL; /* coroutine resumed now */
static struct sigaction libuv_action[NSIGNALS];
/* The actions in place before run() (main.c's "interrupted!" handler while
** a chunk runs, or what the shell gave us), put back when run() returns:
** uv_signal_stop would leave SIG_DFL. */
static struct sigaction outer_action[NSIGNALS];

/* A hook requested by sp_loop_request_hook: run once, at the next hook
** call on the loop thread. */
static void (*volatile request_fn)(lua_State *L) = NULL;
static volatile sig_atomic_t request_pending = 0;

static void interrupt_lhook(lua_State *L, lua_Debug *ar);

/* The hook a thread had when interrupt_lhook took its place (an attached
** session's watch, repl.c), one per thread that can be interrupted
** (interrupt_L's, interrupt_co's), put back when interrupt_lhook is done:
** Lua has one hook per thread. */
#define HOOK_MASK (LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT)
static struct {
  lua_State *volatile L;
  lua_Hook hook;
  int mask, count;
} hook_saved[2];

/* Put interrupt_lhook on L (slot 0: interrupt_L, 1: interrupt_co), run
** every count instructions, keeping the hook it replaces. Signal-safe. */
static void hook_arm(int slot, lua_State *L, int count) {
  lua_Hook h = lua_gethook(L);
  if (h != interrupt_lhook) {
    hook_saved[slot].L = NULL;
    hook_saved[slot].hook = h;
    hook_saved[slot].mask = lua_gethookmask(L);
    hook_saved[slot].count = lua_gethookcount(L);
    hook_saved[slot].L = L;
  }
  lua_sethook(L, interrupt_lhook, HOOK_MASK, count);
}

/* Take interrupt_lhook off L, putting back the hook it replaced. A hook
** other than interrupt_lhook is left alone. Signal-safe. */
static void hook_disarm(lua_State *L) {
  if (L == NULL || lua_gethook(L) != interrupt_lhook) return;
  for (int i = 0; i < 2; i++)
    if (hook_saved[i].L == L) {
      hook_saved[i].L = NULL;
      lua_sethook(L, hook_saved[i].hook, hook_saved[i].mask,
                  hook_saved[i].count);
      return;
    }
  lua_sethook(L, NULL, 0, 0);
}

static void interrupt_lhook(lua_State *L, lua_Debug *ar) {
  struct timespec now;
  double dt;
  (void)ar;
  if (request_pending) {
    void (*fn)(lua_State * L) = request_fn;
    request_pending = 0;
    if (fn != NULL) fn(L);
  }
  if (!interrupt_pending) {
    hook_disarm(L);
    return;
  }
  clock_gettime(CLOCK_MONOTONIC, &now);
  dt = (double)(now.tv_sec - interrupt_at.tv_sec) +
       (double)(now.tv_nsec - interrupt_at.tv_nsec) / 1e9;
  if (dt < INTERRUPT_GRACE) return;
  interrupt_pending = 0;
  hook_disarm(L);
  lua_pushliteral(L, "interrupted!");
  lua_error(L);
}

static void interrupt_handler(int signum, siginfo_t *info, void *ctx) {
  int i = signum == SIGINT ? 0 : 1;
  lua_State *L = interrupt_L;
  if (!interrupt_pending) {
    clock_gettime(CLOCK_MONOTONIC, &interrupt_at);
    interrupt_pending = 1;
  }
  if (L != NULL) hook_arm(0, L, 1000);
  L = interrupt_co;
  if (L != NULL) hook_arm(1, L, 1000);
  if (libuv_action[i].sa_flags & SA_SIGINFO)
    libuv_action[i].sa_sigaction(signum, info, ctx);
  else if (libuv_action[i].sa_handler != SIG_DFL &&
           libuv_action[i].sa_handler != SIG_IGN)
    libuv_action[i].sa_handler(signum);
}

void sp_loop_request_hook(void (*fn)(lua_State *L)) {
  lua_State *L = interrupt_L;
  request_fn = fn;
  request_pending = 1;
  if (L != NULL) hook_arm(0, L, 100);
  L = interrupt_co;
  if (L != NULL) hook_arm(1, L, 100);
}

/* The loop has the signal: no need to interrupt Lua code any more. */
static void interrupt_clear(void) {
  interrupt_pending = 0;
  hook_disarm(interrupt_L);
  hook_disarm(interrupt_co);
}

/* spindle._interrupt.resume(co, ...) -> coroutine.resume(co, ...)
** Hooks are per Lua thread, so the interrupt above must know which
** coroutine runs: defer.inlineCallbacks resumes through this. */
static int interrupt_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  lua_State *prev = interrupt_co;
  int n;
  luaL_argexpected(L, co != NULL, 1, "coroutine");
  interrupt_co = co;
  if (interrupt_pending) hook_arm(1, co, 1000);
  lua_pushvalue(L, lua_upvalueindex(1)); /* coroutine.resume */
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  interrupt_co = prev;
  n = lua_gettop(L);
  return n;
}

int luaopen_spindle__interrupt(lua_State *L) {
  lua_newtable(L);
  lua_getglobal(L, "coroutine");
  lua_getfield(L, -1, "resume");
  lua_remove(L, -2);
  lua_pushcclosure(L, interrupt_resume, 1);
  lua_setfield(L, -2, "resume");
  return 1;
}

static void signals_start(lua_State *L) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = interrupt_handler;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&sa.sa_mask);
  for (int i = 0; i < NSIGNALS; i++)
    sigaction(signums[i], NULL, &outer_action[i]);
  for (int i = 0; i < NSIGNALS; i++) {
    int r = uv_signal_start(signals[i], signal_cb, signums[i]);
    if (r != 0) luaL_error(L, "uv_signal_start: %s", uv_strerror(r));
  }
  interrupt_L = L;
  for (int i = 0; i < NSIGNALS; i++)
    sigaction(signums[i], &sa, &libuv_action[i]);
}

static void signals_stop(void) {
  /* Give libuv its own handlers back before it unregisters them. */
  for (int i = 0; i < NSIGNALS; i++)
    sigaction(signums[i], &libuv_action[i], NULL);
  interrupt_clear();
  interrupt_L = NULL;
  for (int i = 0; i < NSIGNALS; i++) uv_signal_stop(signals[i]);
  for (int i = 0; i < NSIGNALS; i++)
    sigaction(signums[i], &outer_action[i], NULL);
}

/* [-0, +0, e] Run the loop: call `started` (the function at idx, or
** nothing if it is nil; an error in it is logged), then run until halt(),
** then collect garbage so that unhandled failed Deferreds get logged. */
static void loop_runloop(lua_State *L, int started) {
  lua_State *prevL = runL;
  if (closed) luaL_error(L, "the reactor has shut down");
  sp_loop();
  signals_start(L);
  state = S_RUNNING;
  runL = L;
  if (!lua_isnil(L, started)) {
    lua_pushvalue(L, started);
    call_logged(L, 0, NULL);
    lua_pop(L, 1);
  }
  while (state != S_STOPPED) uv_run(sp_loop(), UV_RUN_DEFAULT);
  signals_stop();
  runL = prevL;
  running = 0;
  state = S_IDLE;
  lua_gc(L, LUA_GCCOLLECT);
}

/* _loop.run([started]): run the loop until halt(), calling started()
** (the policy's 'startup' event) once the loop is marked running and
** signals stop it. Raises ReactorAlreadyRunning if it runs already, and
** once the process has begun to exit. The thread calling it is the
** one loop callbacks call into (sp_loop_state). twisted ReactorBase.run
** (its policy is lifecycle.lua's reactor.run). */
static int loop_run(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) sp_checkcallable(L, 1);
  lua_settop(L, 1);
  if (state != S_IDLE)
    return sp_errortype_raise(L, "reactor.ReactorAlreadyRunning", NULL,
                              "reactor is already running");
  loop_runloop(L, 1);
  return 0;
}

/* The reactor's functions also work as methods (reactor:callLater(...),
** reactor:seconds()), so the reactor can stand where a task.Clock is
** expected, as in Twisted. Drops a leading table argument. */
static void drop_self(lua_State *L) {
  if (lua_type(L, 1) == LUA_TTABLE) lua_remove(L, 1);
}

/* reactor.seconds() -> seconds: monotonic time as a float.
** twisted IReactorTime.seconds. */
static int loop_seconds(lua_State *L) {
  lua_pushnumber(L, sp_loop_seconds());
  return 1;
}

/* reactor.callLater(delay, f, ...) -> DelayedCall: call f(...) in `delay`
** seconds (a float >= 0). Same-time calls run in the order scheduled; an
** error in f is logged with its traceback and the reactor keeps running.
** twisted IReactorTime.callLater. */
static int loop_callLater(lua_State *L) {
  double delay;
  int isnum;
  drop_self(L);
  delay = lua_tonumberx(L, 1, &isnum);
  if (!isnum) sp_fntypeerror(L, 1, "number", "callLater");
  if (!(delay >= 0))
    sp_fnargerror(L, 1, delay != delay ? "delay is NaN" : "delay must be >= 0",
                  "callLater");
  sp_fncheckcallable(L, 2, "callLater");
  dcall_schedule(L, delay, 2, lua_gettop(L) - 2);
  return 1;
}

/* reactor.getDelayedCalls() -> {DelayedCall, ...}: the pending calls, in
** no particular order. twisted IReactorTime.getDelayedCalls. */
static int loop_getDelayedCalls(lua_State *L) {
  lua_createtable(L, timers.n, 0);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &anchor_key);
  for (int i = 0; i < timers.n; i++) {
    lua_rawgeti(L, -1, timers.heap[i]->ref);
    lua_rawseti(L, -3, i + 1);
  }
  lua_pop(L, 1);
  return 1;
}

/* ---------------------------------------------------------------- */
/* callFromThread and the inbox                                        */

void sp_loop_post(sp_loop_msg *m) {
  m->next = NULL;
  uv_mutex_lock(&inbox.lock);
  if (inbox.closed) {
    uv_mutex_unlock(&inbox.lock);
    m->run(NULL, m);
    return;
  }
  if (inbox.tail != NULL)
    inbox.tail->next = m;
  else
    inbox.head = m;
  inbox.tail = m;
  /* Sent under the lock: the shutdown hook closes the handle only after
  ** taking it and marking the inbox closed. */
  uv_async_send(inbox.async);
  uv_mutex_unlock(&inbox.lock);
}

/* [-0, +0, -] Run the main-thread FIFO up to its tail at entry; calls
** queued meanwhile wait for the next wake-up (already signalled). */
static void fifo_drain(lua_State *L) {
  lua_Integer last = fifo_tail;
  int top = lua_gettop(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &fifo_key);
  while (fifo_head < last) {
    lua_rawgeti(L, top + 1, ++fifo_head);
    lua_pushnil(L);
    lua_rawseti(L, top + 1, fifo_head);
    entry_call(L, -1);
    lua_settop(L, top + 1);
  }
  /* Emptied: reuse the same array slots from 1 again. */
  if (fifo_head == fifo_tail) fifo_head = fifo_tail = 0;
  lua_settop(L, top);
}

static void async_cb(uv_async_t *h) {
  lua_State *L = sp_loop_state();
  sp_loop_msg *m, *next;
  (void)h;
  uv_mutex_lock(&inbox.lock);
  m = inbox.head;
  inbox.head = inbox.tail = NULL;
  uv_mutex_unlock(&inbox.lock);
  for (; m != NULL; m = next) {
    next = m->next;
    m->run(L, m);
  }
  fifo_drain(L);
}

/* reactor.callFromThread(f, ...): queue f(...) to run on the main thread
** (FIFO; never blocks); an error in f is logged. Only the main thread's
** Lua can call this function; pool threads reach the same inbox through
** sp_loop_post. twisted IReactorThreads.callFromThread. */
static int loop_callFromThread(lua_State *L) {
  int n = lua_gettop(L);
  sp_checkcallable(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &fifo_key);
  lua_createtable(L, n, 1);
  for (int i = 1; i <= n; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i);
  }
  lua_pushinteger(L, n - 1);
  lua_setfield(L, -2, "n");
  lua_rawseti(L, -2, ++fifo_tail);
  uv_async_send(inbox.async);
  return 0;
}

/* ---------------------------------------------------------------- */
/* Set-up and shutdown                                                 */

static void walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  if (uv_is_closing(h)) return;
  uv_close(h, h->data == &owned_marker ? handle_free : NULL);
}

/* The live-handle registry (loop.h): a circular list with a sentinel. */
static sp_live live_head = {&live_head, &live_head, NULL, SP_LIVE_HANDLE};

void sp_live_add(sp_live *n) {
  n->next = live_head.next;
  n->prev = &live_head;
  live_head.next->prev = n;
  live_head.next = n;
}

void sp_live_each(void (*fn)(sp_live *n, void *arg), void *arg) {
  for (sp_live *n = live_head.prev; n != &live_head; n = n->prev) fn(n, arg);
}

void sp_live_remove(sp_live *n) {
  if (n->next == NULL) return;
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->next = n->prev = NULL;
}

/* The entries waiting for the due calls (loop.h): a circular list with a
** sentinel, and the uv_prepare handle that runs them, active only while
** the list is not empty. */
static sp_loop_later later_head = {&later_head, &later_head, NULL};
static uv_prepare_t *later_prepare = NULL;

static void later_cb(uv_prepare_t *h);

void sp_loop_after_due(sp_loop_later *n) {
  if (n->next != NULL || closed) return;
  n->prev = later_head.prev;
  n->next = &later_head;
  later_head.prev->next = n;
  later_head.prev = n;
  if (later_prepare != NULL) uv_prepare_start(later_prepare, later_cb);
}

void sp_loop_after_due_cancel(sp_loop_later *n) {
  if (n->next == NULL) return;
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->next = n->prev = NULL;
}

/* Run the entries linked before this pass, oldest first: they move to a
** local list first, so that an entry linked meanwhile waits for the next
** pass and one unlinked meanwhile (a stream freed) is skipped. */
static void later_cb(uv_prepare_t *h) {
  sp_loop_later pass = {&pass, &pass, NULL};
  lua_State *L = sp_loop_state();
  if (later_head.next == &later_head) {
    uv_prepare_stop(h);
    return;
  }
  pass.next = later_head.next;
  pass.prev = later_head.prev;
  pass.next->prev = &pass;
  pass.prev->next = &pass;
  later_head.next = later_head.prev = &later_head;
  while (pass.next != &pass) {
    sp_loop_later *n = pass.next;
    sp_loop_after_due_cancel(n);
    n->run(L, n);
  }
  if (later_head.next == &later_head) uv_prepare_stop(h);
}

/* The newest entry of `phase`, or NULL. */
static sp_live *live_first(int phase) {
  sp_live *n;
  for (n = live_head.next; n != &live_head; n = n->next)
    if (n->phase == phase) return n;
  return NULL;
}

/* Close every registered entry with its own shutdown, phase by phase and
** newest first within one (loop.h); an entry may unlink itself or others
** while this runs, and one linked meanwhile in an earlier phase (a
** connection made by a connectionLost) still runs, in the next pass. */
static void live_shutdown(lua_State *L) {
  for (int phase = SP_LIVE_THREADS; phase <= SP_LIVE_MEMORY; phase++) {
    sp_live *n;
    while ((n = live_first(phase)) != NULL) {
      sp_live_remove(n);
      n->shutdown(L, n);
    }
  }
  if (live_head.next != &live_head) live_shutdown(L);
}

/* The shutdown hook: close the registered handles (live_shutdown), drop
** undelivered messages, close every handle left on the loop and run it
** until they are closed, then close the loop. */
static void loop_shutdown(lua_State *L) {
  sp_loop_msg *m, *next;
  live_shutdown(L);
  uv_mutex_lock(&inbox.lock);
  inbox.closed = 1;
  m = inbox.head;
  inbox.head = inbox.tail = NULL;
  uv_mutex_unlock(&inbox.lock);
  for (; m != NULL; m = next) {
    next = m->next;
    m->run(NULL, m);
  }
  closed = 1;
  while (later_head.next != &later_head)
    sp_loop_after_due_cancel(later_head.next);
  for (int i = 0; i < timers.n; i++) {
    timers.heap[i]->heapidx = -1;
    timers.heap[i]->state = DC_CANCELLED;
  }
  timers.n = 0;
  free(timers.heap);
  timers.heap = NULL;
  timers.cap = 0;
  uv_walk(uv_default_loop(), walk_close, NULL);
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
  if (uv_loop_close(uv_default_loop()) != 0)
    fprintf(stderr, "spindle: the loop still had open handles at exit\n");
  timers.handle = NULL;
  timers.idle = NULL;
  later_prepare = NULL;
  inbox.async = NULL;
}

/* Allocate and init one handle of the loop's own; aborts on failure, as
** nothing works without it. */
static void *handle_new(size_t size) {
  uv_handle_t *h = calloc(1, size);
  if (h == NULL) {
    fprintf(stderr, "spindle: out of memory starting the loop\n");
    abort();
  }
  return h;
}

uv_loop_t *sp_loop(void) {
  uv_loop_t *loop = uv_default_loop();
  if (initialized) return loop;
  initialized = 1;
  timers.handle = handle_new(sizeof(uv_timer_t));
  uv_timer_init(loop, timers.handle);
  timers.handle->data = &owned_marker;
  timers.idle = handle_new(sizeof(uv_idle_t));
  uv_idle_init(loop, timers.idle);
  timers.idle->data = &owned_marker;
  later_prepare = handle_new(sizeof(uv_prepare_t));
  uv_prepare_init(loop, later_prepare);
  later_prepare->data = &owned_marker;
  inbox.async = handle_new(sizeof(uv_async_t));
  uv_mutex_init(&inbox.lock);
  uv_async_init(loop, inbox.async, async_cb);
  inbox.async->data = &owned_marker;
  uv_unref((uv_handle_t *)inbox.async);
  for (int i = 0; i < NSIGNALS; i++) {
    signals[i] = handle_new(sizeof(uv_signal_t));
    uv_signal_init(loop, signals[i]);
    signals[i]->data = &owned_marker;
  }
  sp_on_shutdown(loop_shutdown);
  return loop;
}

/* reactor.running, through reactor.lua's __getters. */
static int loop_getrunning(lua_State *L) {
  lua_pushboolean(L, running);
  return 1;
}

static const luaL_Reg loop_funcs[] = {{"run", loop_run},
                                      {"beginStop", loop_beginStop},
                                      {"halt", loop_halt},
                                      {"setRunning", loop_setRunning},
                                      {"state", loop_state},
                                      {"setStopHandler", loop_setStopHandler},
                                      {"seconds", loop_seconds},
                                      {"callLater", loop_callLater},
                                      {"getDelayedCalls", loop_getDelayedCalls},
                                      {"callFromThread", loop_callFromThread},
                                      {NULL, NULL}};

/* [-0, +0, m] The registry tables and the DelayedCall class. */
static void loop_registry_init(lua_State *L) {
  const void *keys[] = {&anchor_key, &fifo_key};
  for (int i = 0; i < 2; i++) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, keys[i]) == LUA_TNIL) {
      lua_newtable(L);
      lua_rawsetp(L, LUA_REGISTRYINDEX, keys[i]);
    }
    lua_pop(L, 1);
  }
  sp_class_newx(L, DCALL_MT, dcall_methods, dcall_meta, dcall_getters);
}

int luaopen_spindle__loop(lua_State *L) {
  sp_loop();
  loop_registry_init(L);
  luaL_newlib(L, loop_funcs);
  lua_newtable(L);
  lua_pushcfunction(L, loop_getrunning);
  lua_setfield(L, -2, "running");
  lua_setfield(L, -2, "__getters");
  return 1;
}

/* ---------------------------------------------------------------- */
/* Open-handle census (spindle._handles), for the spec helper         */

/* Counts by uv_handle_type of the handles uv_walk sees. */
typedef struct {
  int n[UV_HANDLE_TYPE_MAX];
} handle_census;

/* Count h unless it is closing (its close callback will free it) or one
** of the loop's own permanent handles (timer, idle, inbox, signals). Pure
** C: nothing may raise inside uv_walk, which holds the loop's handle queue
** apart while it walks. */
static void walk_count(uv_handle_t *h, void *arg) {
  handle_census *c = arg;
  uv_handle_type t = uv_handle_get_type(h);
  if (uv_is_closing(h) || h->data == &owned_marker) return;
  if (t > UV_UNKNOWN_HANDLE && t < UV_HANDLE_TYPE_MAX) c->n[t]++;
}

/* spindle._handles.count() -> {[type] = n, ...}: the open handles on the
** loop by libuv type name ("tcp", "udp", "pipe", "timer", ...), leaving
** out closing ones and the reactor's own; an empty table when none are
** open. Internal, loop thread only: spec/support/helper.lua checks after
** each test that it left no transport, port or timer open. */
static int handles_count(lua_State *L) {
  handle_census c;
  memset(&c, 0, sizeof c);
  uv_walk(sp_loop(), walk_count, &c);
  lua_newtable(L);
  for (int t = UV_UNKNOWN_HANDLE + 1; t < UV_HANDLE_TYPE_MAX; t++) {
    if (c.n[t] == 0) continue;
    lua_pushinteger(L, c.n[t]);
    lua_setfield(L, -2, uv_handle_type_name((uv_handle_type)t));
  }
  return 1;
}

int luaopen_spindle__handles(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, handles_count);
  lua_setfield(L, -2, "count");
  return 1;
}
