/*
** signals.c: spindle._signals, a part of spindle.reactor:
** reactor.addSignalHandler(signal, f) -> handler with remove(), on
** uv_signal_t. Twisted has no public API for this (twisted#10536, asked
** for since 2004); the names are spindle's, the model Node's
** process.on(signal).
**
** Each handler is one uv_signal_t (libuv lets several watch one signal),
** so several handlers per signal are called in the order added, on the
** loop thread, when the loop next gets control. While a handler for
** SIGINT or SIGTERM is installed, that signal no longer stops the reactor
** (loop.c asks through sp_loop_set_signal_claim); removing the last one
** gives the signal back to the reactor. SIGCHLD is libuv's (it reaps
** spawned children), SIGKILL and SIGSTOP cannot be caught: all three are
** refused.
**
** Lifetime: a box userdata points at C memory holding the handle. While
** the handle is open it holds a registry reference to the box, whose user
** value is f; remove() (or process exit, through loop.c's live registry)
** closes the handle, and the close callback drops the reference and
** frees.
*/
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "core.h"
#include "loop.h"
#include "signals.h"

#define HANDLER_MT "spindle.SignalHandler"

typedef struct sighandler {
  uv_signal_t h; /* h.data points back here */
  sp_live live;
  int ref;   /* registry ref to the box while open */
  int signo; /* the signal watched */
} sighandler;

typedef struct handler_box {
  sighandler *s; /* NULL once removed */
  int signo;
} handler_box;

/* How many open handlers watch each signal (loop.c's claim question). */
static int nhandlers[NSIG];

/* sp_loop_set_signal_claim's hook: is signo handled by Lua code? */
static int signal_claimed(int signo) {
  return signo > 0 && signo < NSIG && nhandlers[signo] > 0;
}

static const struct {
  const char *name;
  int num;
} signames[] = {{"HUP", SIGHUP},     {"INT", SIGINT},   {"QUIT", SIGQUIT},
                {"ILL", SIGILL},     {"TRAP", SIGTRAP}, {"ABRT", SIGABRT},
                {"BUS", SIGBUS},     {"FPE", SIGFPE},   {"KILL", SIGKILL},
                {"USR1", SIGUSR1},   {"SEGV", SIGSEGV}, {"USR2", SIGUSR2},
                {"PIPE", SIGPIPE},   {"ALRM", SIGALRM}, {"TERM", SIGTERM},
                {"CHLD", SIGCHLD},   {"CONT", SIGCONT}, {"STOP", SIGSTOP},
                {"TSTP", SIGTSTP},   {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},
                {"WINCH", SIGWINCH}, {"URG", SIGURG},   {"XCPU", SIGXCPU},
                {"XFSZ", SIGXFSZ},   {"PROF", SIGPROF}, {"VTALRM", SIGVTALRM},
                {"IO", SIGIO},       {"SYS", SIGSYS}};

int sp_signal_number(const char *name) {
  if (strncmp(name, "SIG", 3) == 0) name += 3;
  for (size_t i = 0; i < sizeof signames / sizeof signames[0]; i++)
    if (strcmp(signames[i].name, name) == 0) return signames[i].num;
  return 0;
}

/* [-0, +0, e] The signal at idx: a name or a number; raises otherwise. */
static int check_signal(lua_State *L, int idx) {
  int signo;
  if (lua_type(L, idx) == LUA_TSTRING) {
    signo = sp_signal_number(lua_tostring(L, idx));
    if (signo == 0)
      luaL_argerror(
          L, idx,
          lua_pushfstring(L, "unknown signal '%s'", lua_tostring(L, idx)));
    return signo;
  }
  signo = (int)luaL_checkinteger(L, idx);
  luaL_argcheck(L, signo > 0 && signo < NSIG, idx, "no such signal");
  return signo;
}

static void handler_closed_cb(uv_handle_t *h) {
  sighandler *s = h->data;
  lua_State *L = sp_loop_state();
  sp_live_remove(&s->live);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref);
  ((handler_box *)lua_touserdata(L, -1))->s = NULL;
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, s->ref);
  free(s);
}

static void handler_free_cb(uv_handle_t *h) {
  free(h->data);
}

static void handler_close(sighandler *s) {
  if (uv_is_closing((uv_handle_t *)&s->h)) return;
  nhandlers[s->signo]--;
  uv_close((uv_handle_t *)&s->h, handler_closed_cb);
}

static void handler_shutdown(lua_State *L, sp_live *n) {
  (void)L;
  handler_close((sighandler *)((char *)n - offsetof(sighandler, live)));
}

/* The signal arrived: f(signum), protected; an error is logged. */
static void handler_cb(uv_signal_t *h, int signo) {
  sighandler *s = h->data;
  lua_State *L = sp_loop_state();
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref);
  lua_getiuservalue(L, -1, 1);
  lua_pushinteger(L, signo);
  if (sp_pcall(L, 1, 0) != LUA_OK) sp_log_failure(L, -1, "Unhandled Error");
  lua_settop(L, top);
}

/* reactor.addSignalHandler(signal, f) -> handler
** Call f(signum) on the loop thread each time `signal` (a name such as
** "HUP" or "SIGHUP", or a number) arrives, until handler:remove().
** Several handlers may watch one signal; they run in the order added.
** A handler for SIGINT or SIGTERM replaces the reactor's stop on that
** signal while it is installed; one for SIGHUP keeps the signal from
** killing the process. Signals that arrive while the reactor is not
** running are handled when it next runs. Raises for an unknown signal,
** for SIGKILL and SIGSTOP (uncatchable) and SIGCHLD (libuv's: use
** processEnded). spindle's own (Twisted has none); uv_signal_start. */
static int signal_addSignalHandler(lua_State *L) {
  int signo, r;
  handler_box *b;
  sighandler *s;
  if (lua_type(L, 1) == LUA_TTABLE) lua_remove(L, 1); /* reactor:add... */
  signo = check_signal(L, 1);
  sp_checkcallable(L, 2);
  luaL_argcheck(L, signo != SIGKILL && signo != SIGSTOP, 1,
                "SIGKILL and SIGSTOP cannot be handled");
  luaL_argcheck(L, signo != SIGCHLD, 1,
                "SIGCHLD is the reactor's (see processEnded)");
  b = lua_newuserdatauv(L, sizeof *b, 1);
  b->s = NULL;
  b->signo = signo;
  luaL_setmetatable(L, HANDLER_MT);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  s = calloc(1, sizeof *s);
  if (s == NULL) return luaL_error(L, "not enough memory");
  uv_signal_init(sp_loop(), &s->h);
  s->h.data = s;
  s->signo = signo;
  r = uv_signal_start(&s->h, handler_cb, signo);
  if (r < 0) {
    uv_close((uv_handle_t *)&s->h, handler_free_cb);
    return luaL_error(L, "addSignalHandler: %s (%s)", uv_strerror(r),
                      uv_err_name(r));
  }
  lua_pushvalue(L, -1);
  s->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  s->live.shutdown = handler_shutdown;
  sp_live_add(&s->live);
  nhandlers[signo]++;
  b->s = s;
  return 1;
}

/* handler:remove(): stop calling f; later calls do nothing. */
static int handler_remove(lua_State *L) {
  handler_box *b = luaL_checkudata(L, 1, HANDLER_MT);
  if (b->s != NULL) handler_close(b->s);
  return 0;
}

/* handler:active() -> boolean: not removed yet. */
static int handler_active(lua_State *L) {
  handler_box *b = luaL_checkudata(L, 1, HANDLER_MT);
  lua_pushboolean(L, b->s != NULL && !uv_is_closing((uv_handle_t *)&b->s->h));
  return 1;
}

static int handler_tostring(lua_State *L) {
  handler_box *b = luaL_checkudata(L, 1, HANDLER_MT);
  lua_pushfstring(L, "<SignalHandler %d%s>", b->signo,
                  b->s != NULL ? "" : " (removed)");
  return 1;
}

static const luaL_Reg handler_methods[] = {
    {"remove", handler_remove}, {"active", handler_active}, {NULL, NULL}};

static const luaL_Reg handler_meta[] = {{"__tostring", handler_tostring},
                                        {NULL, NULL}};

static const luaL_Reg signal_funcs[] = {
    {"addSignalHandler", signal_addSignalHandler}, {NULL, NULL}};

int luaopen_spindle__signals(lua_State *L) {
  sp_class_new(L, HANDLER_MT, handler_methods, handler_meta);
  sp_loop_set_signal_claim(signal_claimed);
  luaL_newlib(L, signal_funcs);
  return 1;
}
