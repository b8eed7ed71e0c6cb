/*
** signals.c: spindle._signals, a part of spindle.reactor:
** reactor.addSignalHandler(signal, f) -> handler with remove(), on
** uv_signal_t. Twisted has no public API for this (twisted#10536, asked
** for since 2004); the names are spindle's, the model Node's
** process.on(signal).
**
** One uv_signal_t (a "slot") watches a signal while it has handlers; the
** handlers, in the order added, are a list in a registry table (key: the
** address of a static variable) indexed by signal number, so several
** handlers per signal are called in that order, on the loop thread, when
** the loop next gets control. While a handler for
** SIGINT or SIGTERM is installed, that signal no longer stops the reactor
** (loop.c asks through sp_loop_set_signal_claim); removing the last one
** gives the signal back to the reactor. SIGCHLD is libuv's (it reaps
** spawned children), SIGKILL and SIGSTOP cannot be caught: all three are
** refused.
**
** Lifetime: a handler is a box userdata whose user value is f; the list
** keeps it alive until remove(). A slot is C memory freed in its close
** callback: removing the last handler of a signal closes it, and process
** exit closes every slot through loop.c's live registry.
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

typedef struct slot {
  uv_signal_t h; /* h.data points back here */
  sp_live live;
  int signo;
} slot;

typedef struct handler_box {
  int signo;
  int active; /* in its signal's list */
} handler_box;

/* Registry key of the table {[signo] = {box, ...}}. */
static const char lists_key = 'L';

/* The open slot of each signal, or NULL. */
static slot *slots[NSIG];

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

static void slot_closed_cb(uv_handle_t *h) {
  slot *sl = h->data;
  sp_live_remove(&sl->live);
  free(sl);
}

static void slot_close(slot *sl) {
  if (slots[sl->signo] == sl) slots[sl->signo] = NULL;
  nhandlers[sl->signo] = 0;
  if (!uv_is_closing((uv_handle_t *)&sl->h))
    uv_close((uv_handle_t *)&sl->h, slot_closed_cb);
}

static void slot_shutdown(lua_State *L, sp_live *n) {
  (void)L;
  slot_close((slot *)((char *)n - offsetof(slot, live)));
}

/* [-0, +1, m] Push the handler list of signo (made if absent). */
static void push_list(lua_State *L, int signo) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &lists_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &lists_key);
  }
  if (lua_rawgeti(L, -1, signo) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, signo);
  }
  lua_remove(L, -2);
}

/* (signum) -> (): each handler active when the signal arrived, in
** order, f(signum), protected (an error is logged); a handler removed by
** an earlier one in this pass is skipped. */
static int slot_tramp(lua_State *L) {
  int signo = (int)lua_tointeger(L, 1), top = lua_gettop(L), list;
  lua_Integer n, i;
  push_list(L, signo);
  n = luaL_len(L, -1);
  lua_createtable(L, (int)n, 0); /* a snapshot: handlers may change it */
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -2, i);
    lua_rawseti(L, -2, i);
  }
  list = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    handler_box *b;
    lua_rawgeti(L, list, i);
    b = lua_touserdata(L, -1);
    if (b != NULL && b->active) {
      lua_getiuservalue(L, -1, 1);
      lua_pushinteger(L, signo);
      if (sp_pcall(L, 1, 0) != LUA_OK) sp_log_failure(L, -1, "Unhandled Error");
    }
    lua_settop(L, list);
  }
  lua_settop(L, top);
  return 0;
}

/* The signal arrived: slot_tramp, protected (a memory error in taking
** the snapshot is logged; the handlers' own errors are logged there). */
static void slot_cb(uv_signal_t *h, int signo) {
  lua_State *L = sp_loop_state();
  int top = lua_gettop(L);
  (void)h;
  lua_pushcfunction(L, slot_tramp);
  lua_pushinteger(L, signo);
  if (sp_pcall(L, 1, 0) != LUA_OK) sp_log_failure(L, -1, "Unhandled Error");
  lua_settop(L, top);
}

/* [-0, +0, m] Start watching signo; returns 0 or a libuv error. */
static int slot_open(int signo) {
  slot *sl = calloc(1, sizeof *sl);
  int r;
  if (sl == NULL) return UV_ENOMEM;
  uv_signal_init(sp_loop(), &sl->h);
  sl->h.data = sl;
  sl->signo = signo;
  sl->live.shutdown = slot_shutdown;
  sp_live_add(&sl->live);
  r = uv_signal_start(&sl->h, slot_cb, signo);
  if (r < 0) {
    uv_close((uv_handle_t *)&sl->h, slot_closed_cb);
    return r;
  }
  slots[signo] = sl;
  return 0;
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
  if (lua_type(L, 1) == LUA_TTABLE) lua_remove(L, 1); /* reactor:add... */
  signo = check_signal(L, 1);
  sp_checkcallable(L, 2);
  luaL_argcheck(L, signo != SIGKILL && signo != SIGSTOP, 1,
                "SIGKILL and SIGSTOP cannot be handled");
  luaL_argcheck(L, signo != SIGCHLD, 1,
                "SIGCHLD is the reactor's (see processEnded)");
  b = lua_newuserdatauv(L, sizeof *b, 1);
  b->signo = signo;
  b->active = 0;
  luaL_setmetatable(L, HANDLER_MT);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  push_list(L, signo);
  if (slots[signo] == NULL && (r = slot_open(signo)) < 0)
    return luaL_error(L, "addSignalHandler: %s (%s)", uv_strerror(r),
                      uv_err_name(r));
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  lua_pop(L, 1);
  b->active = 1;
  nhandlers[signo]++;
  return 1;
}

/* handler:remove(): stop calling f; later calls do nothing. The last
** handler of a signal gives it back (to the reactor's stop for SIGINT
** and SIGTERM, to its default action otherwise). */
static int handler_remove(lua_State *L) {
  handler_box *b = luaL_checkudata(L, 1, HANDLER_MT);
  lua_Integer n, i, j = 0;
  if (!b->active) return 0;
  b->active = 0;
  push_list(L, b->signo);
  n = luaL_len(L, -1);
  for (i = 1; i <= n; i++) { /* keep the others, in order */
    lua_rawgeti(L, -1, i);
    if (lua_rawequal(L, -1, 1))
      lua_pop(L, 1);
    else
      lua_rawseti(L, -2, ++j);
  }
  for (i = j + 1; i <= n; i++) {
    lua_pushnil(L);
    lua_rawseti(L, -2, i);
  }
  nhandlers[b->signo] = (int)j;
  if (j == 0 && slots[b->signo] != NULL) slot_close(slots[b->signo]);
  return 0;
}

/* handler:active() -> boolean: not removed yet. */
static int handler_active(lua_State *L) {
  handler_box *b = luaL_checkudata(L, 1, HANDLER_MT);
  lua_pushboolean(L, b->active);
  return 1;
}

static int handler_tostring(lua_State *L) {
  handler_box *b = luaL_checkudata(L, 1, HANDLER_MT);
  lua_pushfstring(L, "<SignalHandler %d%s>", b->signo,
                  b->active ? "" : " (removed)");
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
