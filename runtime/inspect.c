/*
** inspect.c: the inspector's mechanism and the watchdog (spindle._inspect,
** behind lua/spindle/inspect.lua and reactor.setStallWarning).
**
** Provenance: sp_inspect_where records, for each Deferred, the first Lua
** frame outside lua/spindle/ (file:line) and the loop time. Source names
** are copied once per file into a list that lives as long as the
** process; a thread-local cache keyed by the source string's address
** (checked against the copy's text, since an address can be reused)
** makes the usual case one lua_getinfo and one short strcmp.
**
** Providers: each transport module registers a function that appends one
** row per live handle (sp_inspect_register); _inspect.rows() gathers
** them. _inspect.handles() lists every libuv handle on the loop, as
** Node's process.getActiveResourcesInfo does, for what has no provider.
**
** Watchdog (reactor.setStallWarning): the loop thread notes the time and
** libuv's idle-time metric at each prepare and check phase, so "busy
** since" is (now - mark) - (idle since mark): time in callbacks, not in
** epoll_wait. A watchdog thread wakes every quarter of the limit; when
** no phase has passed since its last look it sends SIGURG to the loop
** thread, whose handler asks loop.c for a Lua hook
** (sp_loop_request_hook); the hook runs on the loop thread, measures,
** and logs one warning per stall with the Lua traceback of what runs. The
** next phase logs how long the stall lasted. Only the hook and the
** phase callbacks touch the marks, both on the loop thread; the watchdog
** thread reads `epoch` and `armed` (atomics) and nothing else. While the
** reactor is not running no phase passes: one SIGURG is sent, finds no
** Lua state to hook (loop.c's hook needs a running reactor), and `armed`
** stays set until the next phase, so no more are sent.
*/
#include <pthread.h>
#include <signal.h>
#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <uv.h>

#include "core.h"
#include "inspect.h"
#include "loop.h"

/* ---------------------------------------------------------------- */
/* Provenance                                                          */

#define SRC_SLOTS 256 /* per-thread cache, a power of two */
#define SRC_MAX 4096  /* distinct source names kept; then "?" */
#define WHERE_DEPTH 8 /* frames looked at */

typedef struct src_copy {
  struct src_copy *next;
  char s[];
} src_copy;

static pthread_mutex_t src_lock = PTHREAD_MUTEX_INITIALIZER;
static src_copy *src_all = NULL; /* every copy, never freed */
static int src_count = 0;
static _Thread_local struct {
  const char *key;
  const char *copy;
  int spindle; /* the file is under lua/spindle/ */
} src_cache[SRC_SLOTS];

/* The process-long copy of short_src, found through key (the source
** string's address) in this thread's cache, else in the list; NULL when
** none can be kept. *spindle: whether the file is spindle's own (under
** lua/spindle/), remembered with the copy so a cache hit costs no strstr. */
static const char *src_intern(const char *key, const char *shortsrc,
                              int *spindle) {
  size_t h = ((uintptr_t)key >> 4) & (SRC_SLOTS - 1);
  src_copy *c;
  size_t n;
  if (src_cache[h].key == key && strcmp(src_cache[h].copy, shortsrc) == 0) {
    *spindle = src_cache[h].spindle;
    return src_cache[h].copy;
  }
  *spindle = strstr(shortsrc, "lua/spindle/") != NULL;
  pthread_mutex_lock(&src_lock);
  for (c = src_all; c != NULL; c = c->next)
    if (strcmp(c->s, shortsrc) == 0) break;
  if (c == NULL && src_count < SRC_MAX) {
    n = strlen(shortsrc) + 1;
    c = malloc(sizeof *c + n);
    if (c != NULL) {
      memcpy(c->s, shortsrc, n);
      c->next = src_all;
      src_all = c;
      src_count++;
    }
  }
  pthread_mutex_unlock(&src_lock);
  if (c == NULL) return NULL;
  src_cache[h].key = key;
  src_cache[h].copy = c->s;
  src_cache[h].spindle = *spindle;
  return c->s;
}

void sp_inspect_where(lua_State *L, sp_where *w) {
  lua_Debug ar;
  const char *src;
  int spindle;
  w->src = NULL;
  w->line = 0;
  w->born = uv_now(uv_default_loop());
  for (int level = 1; level <= WHERE_DEPTH; level++) {
    if (!lua_getstack(L, level, &ar)) return;
    lua_getinfo(L, "Sl", &ar);
    if (ar.currentline < 0) continue;
    src = src_intern(ar.source, ar.short_src, &spindle);
    if (spindle) continue;
    w->src = src;
    w->line = ar.currentline;
    return;
  }
}

void sp_inspect_pushwhere(lua_State *L, const sp_where *w) {
  double now = (double)(uv_hrtime() / 1000000);
  if (w->src == NULL)
    lua_pushliteral(L, "?");
  else
    lua_pushfstring(L, "%s:%d", w->src, w->line);
  lua_pushnumber(L, (now - (double)w->born) / 1e3);
}

/* ---------------------------------------------------------------- */
/* Providers and handles                                               */

#define MAX_KINDS 16
static struct {
  const char *kind;
  sp_inspect_rows fn;
} providers[MAX_KINDS];
static int nproviders = 0;

void sp_inspect_register(const char *kind, sp_inspect_rows fn) {
  for (int i = 0; i < nproviders; i++) {
    if (strcmp(providers[i].kind, kind) == 0) {
      providers[i].fn = fn;
      return;
    }
  }
  if (nproviders == MAX_KINDS) return;
  providers[nproviders].kind = kind;
  providers[nproviders].fn = fn;
  nproviders++;
}

/* _inspect.rows() -> {row, ...}: every registered provider's rows, each
** with `transport` set to its kind. Loop thread. */
static int inspect_rows(lua_State *L) {
  lua_newtable(L);
  for (int i = 0; i < nproviders; i++) {
    lua_Integer from = (lua_Integer)lua_rawlen(L, -1) + 1;
    lua_Integer to;
    providers[i].fn(L, lua_gettop(L));
    to = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer j = from; j <= to; j++) {
      if (lua_rawgeti(L, -1, j) == LUA_TTABLE &&
          lua_getfield(L, -1, "transport") == LUA_TNIL) {
        lua_pushstring(L, providers[i].kind);
        lua_setfield(L, -3, "transport");
      }
      lua_settop(L, 1);
    }
  }
  return 1;
}

/* [-0, +0, m] Set field `name` of the table on top to the address sa
** as "host:port" ("[v6]:port"), if it is an IP address. */
static void addr_field(lua_State *L, const struct sockaddr_storage *sa,
                       const char *name) {
  char host[64];
  int port;
  if (sa->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    uv_ip4_name(in, host, sizeof host);
    port = ntohs(in->sin_port);
    lua_pushfstring(L, "%s:%d", host, port);
  } else if (sa->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(in6, host, sizeof host);
    port = ntohs(in6->sin6_port);
    lua_pushfstring(L, "[%s]:%d", host, port);
  } else {
    return;
  }
  lua_setfield(L, -2, name);
}

/* [-0, +0, m] The addresses and write queue of a socket handle, read
** through libuv's public calls (the stream's own struct is stream.c's):
** host, peer, queued. */
static void handle_addrs(lua_State *L, uv_handle_t *h) {
  struct sockaddr_storage sa;
  char path[256];
  size_t plen = sizeof path;
  int len = sizeof sa;
  uv_handle_type t = uv_handle_get_type(h);
  if (t == UV_TCP) {
    if (uv_tcp_getsockname((uv_tcp_t *)h, (struct sockaddr *)&sa, &len) == 0)
      addr_field(L, &sa, "host");
    len = sizeof sa;
    if (uv_tcp_getpeername((uv_tcp_t *)h, (struct sockaddr *)&sa, &len) == 0)
      addr_field(L, &sa, "peer");
  } else if (t == UV_UDP) {
    if (uv_udp_getsockname((uv_udp_t *)h, (struct sockaddr *)&sa, &len) == 0)
      addr_field(L, &sa, "host");
  } else if (t == UV_NAMED_PIPE) {
    if (uv_pipe_getsockname((uv_pipe_t *)h, path, &plen) == 0 && plen > 0) {
      lua_pushlstring(L, path, plen);
      lua_setfield(L, -2, "host");
    }
    plen = sizeof path;
    if (uv_pipe_getpeername((uv_pipe_t *)h, path, &plen) == 0 && plen > 0) {
      lua_pushlstring(L, path, plen);
      lua_setfield(L, -2, "peer");
    }
  }
  if (t == UV_TCP || t == UV_NAMED_PIPE || t == UV_TTY) {
    lua_pushinteger(
        L, (lua_Integer)uv_stream_get_write_queue_size((uv_stream_t *)h));
    lua_setfield(L, -2, "queued");
    lua_pushboolean(L, uv_is_readable((uv_stream_t *)h) ||
                           uv_is_writable((uv_stream_t *)h));
    lua_setfield(L, -2, "connection");
  }
}

static void handle_row(uv_handle_t *h, void *arg) {
  lua_State *L = arg;
  lua_createtable(L, 0, 8);
  if (!uv_is_closing(h)) handle_addrs(L, h);
  lua_pushstring(L, uv_handle_type_name(uv_handle_get_type(h)));
  lua_setfield(L, -2, "type");
  lua_pushboolean(L, uv_is_active(h));
  lua_setfield(L, -2, "active");
  lua_pushboolean(L, uv_has_ref(h));
  lua_setfield(L, -2, "ref");
  lua_pushboolean(L, uv_is_closing(h));
  lua_setfield(L, -2, "closing");
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

/* _inspect.handles() -> {{type=, active=, ref=, closing=, host=, peer=,
** queued=}, ...}: every libuv handle on the loop (spindle's own timer,
** async and signals included), as uv_walk sees them; sockets with their
** local and peer addresses ("host:port", or a Unix path), the bytes
** libuv still has to write, and whether it is a connection (readable or
** writable) rather than a listening port. Loop thread. Like Node's
** process.getActiveResourcesInfo, with states. */
static int inspect_handles(lua_State *L) {
  lua_newtable(L);
  luaL_checkstack(L, 8, NULL);
  uv_walk(sp_loop(), handle_row, L);
  return 1;
}

/* ---------------------------------------------------------------- */
/* The watchdog                                                        */

static struct {
  double limit; /* seconds; 0: off */
  uv_prepare_t *prepare;
  uv_check_t *check;
  uv_thread_t tid;
  int thread_on;
  int sync_made;   /* lock and cond initialized */
  uv_mutex_t lock; /* guards quit and the condition */
  uv_cond_t cond;
  int quit;
  pthread_t loop_thread;
  uint64_t mark, idle_mark; /* loop thread: hrtime and idle at a phase */
  int warned;               /* loop thread: this stall was logged */
  uint64_t stall_start;     /* loop thread: hrtime the stall began */
} wd;
static atomic_uint_fast64_t wd_epoch; /* phases passed */
static atomic_int wd_armed;           /* a hook is asked for, not run */

static double wd_busy(uint64_t now) {
  uint64_t idle = uv_metrics_idle_time(sp_loop()) - wd.idle_mark;
  uint64_t spent = now - wd.mark;
  return spent > idle ? (double)(spent - idle) / 1e9 : 0;
}

/* The Lua hook (loop thread): log the stall if the loop has been busy
** longer than the limit, with the traceback of the running code. */
static void wd_hook(lua_State *L) {
  uint64_t now = uv_hrtime();
  double busy;
  char head[160];
  atomic_store(&wd_armed, 0);
  if (wd.limit <= 0 || wd.warned || wd.mark == 0) return;
  busy = wd_busy(now);
  if (busy < wd.limit) return;
  wd.warned = 1;
  wd.stall_start = now - (uint64_t)(busy * 1e9);
  snprintf(head, sizeof head,
           "stall warning: the reactor has been busy in one callback for "
           "%.2f s (limit %.2f s); it is running:",
           busy, wd.limit);
  if (!lua_checkstack(L, 4)) return;
  luaL_traceback(L, L, head, 0);
  sp_log_msg(L, lua_tostring(L, -1));
  lua_pop(L, 1);
}

static void wd_signal(int signum) {
  (void)signum;
  sp_loop_request_hook(wd_hook);
}

/* prepare and check phases (loop thread): a new mark; end a stall. */
static void wd_phase(void) {
  uint64_t now = uv_hrtime();
  if (wd.warned) {
    char text[120];
    wd.warned = 0;
    snprintf(text, sizeof text,
             "stall warning: the reactor was busy for %.2f s in all",
             (double)(now - wd.stall_start) / 1e9);
    sp_log_msg(sp_loop_state(), text);
  }
  wd.mark = now;
  wd.idle_mark = uv_metrics_idle_time(sp_loop());
  atomic_fetch_add(&wd_epoch, 1);
  /* A hook asked for while no Lua ran (the loop idle, or stopped) is not
  ** owed any more: the next stall may ask again. */
  atomic_store(&wd_armed, 0);
}

static void wd_prepare_cb(uv_prepare_t *h) {
  (void)h;
  wd_phase();
}

static void wd_check_cb(uv_check_t *h) {
  (void)h;
  wd_phase();
}

/* The watchdog thread: wake every quarter of the limit; if no phase has
** passed since the last wake and no hook is already asked for, ask. */
static void wd_main(void *arg) {
  uint64_t seen = atomic_load(&wd_epoch);
  (void)arg;
  uv_mutex_lock(&wd.lock);
  while (!wd.quit) {
    uint64_t period = (uint64_t)(wd.limit / 4 * 1e9), e;
    if (period < 10000000) period = 10000000;
    uv_cond_timedwait(&wd.cond, &wd.lock, period);
    if (wd.quit) break;
    e = atomic_load(&wd_epoch);
    if (e == seen && !atomic_exchange(&wd_armed, 1))
      pthread_kill(wd.loop_thread, SIGURG);
    seen = e;
  }
  uv_mutex_unlock(&wd.lock);
}

static void wd_handle_free(uv_handle_t *h) {
  free(h);
}

static void wd_stop_thread(void) {
  if (!wd.thread_on) return;
  uv_mutex_lock(&wd.lock);
  wd.quit = 1;
  uv_cond_signal(&wd.cond);
  uv_mutex_unlock(&wd.lock);
  uv_thread_join(&wd.tid);
  wd.thread_on = 0;
}

static void wd_shutdown(lua_State *L, sp_live *n);
static sp_live wd_live = {NULL, NULL, wd_shutdown, SP_LIVE_THREADS};

/* Turn the watchdog off: stop the thread, close the phase handles (their
** close callbacks free them), leave the live registry. */
static void wd_off(void) {
  sp_live_remove(&wd_live);
  wd_stop_thread();
  wd.limit = 0;
  wd.warned = 0;
  if (wd.prepare != NULL) {
    uv_close((uv_handle_t *)wd.prepare, wd_handle_free);
    uv_close((uv_handle_t *)wd.check, wd_handle_free);
    wd.prepare = NULL;
    wd.check = NULL;
  }
}

/* At exit (loop.h's live registry, SP_LIVE_THREADS phase): off; the
** loop's last run finishes the closes. */
static void wd_shutdown(lua_State *L, sp_live *n) {
  (void)L;
  (void)n;
  wd_off();
}

/* [-0, +0, e] Start the phase handles, the SIGURG handler and the thread,
** once. */
static void wd_start(lua_State *L) {
  struct sigaction sa;
  if (wd.thread_on) return;
  if (wd.prepare == NULL) {
    wd.prepare = malloc(sizeof *wd.prepare);
    wd.check = malloc(sizeof *wd.check);
    if (wd.prepare == NULL || wd.check == NULL) {
      free(wd.prepare);
      free(wd.check);
      wd.prepare = NULL;
      wd.check = NULL;
      luaL_error(L, "not enough memory");
    }
    uv_loop_configure(sp_loop(), UV_METRICS_IDLE_TIME);
    uv_prepare_init(sp_loop(), wd.prepare);
    uv_check_init(sp_loop(), wd.check);
    uv_prepare_start(wd.prepare, wd_prepare_cb);
    uv_check_start(wd.check, wd_check_cb);
    uv_unref((uv_handle_t *)wd.prepare);
    uv_unref((uv_handle_t *)wd.check);
    sp_live_add(&wd_live);
  }
  if (!wd.sync_made) {
    uv_mutex_init(&wd.lock);
    uv_cond_init(&wd.cond);
    wd.sync_made = 1;
  }
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = wd_signal;
  sa.sa_flags = SA_RESTART;
  sigfillset(&sa.sa_mask);
  sigaction(SIGURG, &sa, NULL);
  wd.loop_thread = pthread_self();
  wd.quit = 0;
  wd.mark = 0;
  if (uv_thread_create(&wd.tid, wd_main, NULL) != 0)
    luaL_error(L, "cannot start the watchdog thread");
  wd.thread_on = 1;
}

/* reactor.setStallWarning(seconds): from now on, when one callback keeps
** the reactor busy for longer than `seconds` (a number > 0), log once
** (log.msg) "stall warning: ..." with the Lua traceback of the code
** running at that moment, and when it ends, how long the stall lasted.
** nil, false or 0 turn it off. Main (loop) thread. Costs a thread that
** wakes every seconds/4 and two libuv phase callbacks per loop turn.
** A stall in C code with no Lua running is seen when Lua next runs.
** No Twisted equivalent (twisted#4304); like Node's --trace-sync-io
** spirit, or asyncio's slow_callback_duration in debug mode. */
static int inspect_setStallWarning(lua_State *L) {
  double s;
  if (lua_type(L, 1) == LUA_TTABLE) lua_remove(L, 1); /* reactor:... */
  s = lua_toboolean(L, 1) ? luaL_checknumber(L, 1) : 0;
  luaL_argcheck(L, s >= 0 && s == s, 1, "seconds must be >= 0");
  if (s == 0) {
    wd_off();
    return 0;
  }
  wd_stop_thread();
  wd.limit = s;
  wd_start(L);
  return 0;
}

/* reactor.getStallWarning() -> seconds or nil. */
static int inspect_getStallWarning(lua_State *L) {
  if (wd.limit > 0)
    lua_pushnumber(L, wd.limit);
  else
    lua_pushnil(L);
  return 1;
}

static const luaL_Reg inspect_funcs[] = {
    {"rows", inspect_rows}, {"handles", inspect_handles}, {NULL, NULL}};

static const luaL_Reg watchdog_funcs[] = {
    {"setStallWarning", inspect_setStallWarning},
    {"getStallWarning", inspect_getStallWarning},
    {NULL, NULL}};

/* spindle._inspect: the C half of spindle.inspect. */
int luaopen_spindle__inspect(lua_State *L) {
  luaL_newlib(L, inspect_funcs);
  return 1;
}

/* spindle._watchdog: the watchdog, a reactor part (reactor.lua). Two
** openers, as pool.c has: the reactor takes every field of its parts. */
int luaopen_spindle__watchdog(lua_State *L) {
  luaL_newlib(L, watchdog_funcs);
  return 1;
}
