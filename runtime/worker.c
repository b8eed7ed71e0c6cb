/*
** worker.c: a pool thread's Lua state. Each worker (pool.c) keeps one for
** its life: the standard libraries and the thread-safe part of spindle,
** as a module system of its own. spindle.reactor there has
** callFromThread and seconds; spindle.threads has blockingCallFromThread;
** spindle.log sends its lines and errors to the main thread's log;
** spindle.failure and spindle.class are the real ones. Every other
** function of the real spindle.reactor and spindle.threads is a guard
** that raises, saying how to reach it (reactor.callFromThread); their
** names are taken from the real modules on the main thread
** (sp_worker_snapshot), so a new reactor function is guarded without a
** list to keep. Other spindle modules are refused with a clear error.
**
** The functions that talk to the loop thread are the pool's (pool.c owns
** that path and its lock): they come in through sp_worker_funcs, so this
** file depends on no file above it.
*/
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "embed.h"
#include "failure.h"
#include "loop.h"
#include "worker.h"

/* The guarded names: NULL-terminated arrays, each in one malloc'd block
** with its strings. Written once on the main thread before any worker
** starts (uv_thread_create orders it before the workers' reads), freed
** after they are joined; read-only in between. */
static struct {
  int taken;
  const char **reactor, **threads;
} guarded;

/* [-0, +0, -] Does the string key at -2 name one of `own`? */
static int is_own(lua_State *L, const char *const *own) {
  for (int i = 0; own[i] != NULL; i++)
    if (strcmp(lua_tostring(L, -2), own[i]) == 0) return 1;
  return 0;
}

/* [-0, +0, e] The function fields of module `name` (required here), but
** `own`, as a NULL-terminated array in one malloc'd block; NULL when out
** of memory. The names are first gathered in a Lua table, so nothing
** raises once the block is allocated. */
static const char **names_take(lua_State *L, const char *name,
                               const char *const *own) {
  size_t n = 0, size = 0;
  const char **names;
  char *p;
  int list;
  lua_getglobal(L, "require");
  lua_pushstring(L, name);
  lua_call(L, 1, 1);
  lua_newtable(L);
  list = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, list - 1) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TFUNCTION &&
        !is_own(L, own)) {
      size += lua_rawlen(L, -2) + 1;
      lua_pushvalue(L, -2);
      lua_rawseti(L, list, (lua_Integer)++n);
    }
    lua_pop(L, 1);
  }
  names = malloc((n + 1) * sizeof *names + size);
  if (names != NULL) {
    p = (char *)(names + n + 1);
    for (size_t i = 0; i < n; i++) {
      size_t len;
      const char *s;
      lua_rawgeti(L, list, (lua_Integer)i + 1);
      s = lua_tolstring(L, -1, &len);
      memcpy(p, s, len + 1);
      names[i] = p;
      p += len + 1;
      lua_pop(L, 1);
    }
    names[n] = NULL;
  }
  lua_pop(L, 2);
  return names;
}

void sp_worker_snapshot(lua_State *L) {
  static const char *const reactor_own[] = {"callFromThread", "seconds", NULL};
  static const char *const threads_own[] = {"blockingCallFromThread", NULL};
  if (guarded.taken) return;
  guarded.reactor = names_take(L, "spindle.reactor", reactor_own);
  guarded.threads = names_take(L, "spindle.threads", threads_own);
  guarded.taken = 1;
  if (guarded.reactor == NULL || guarded.threads == NULL) {
    sp_worker_release();
    luaL_error(L, "not enough memory");
  }
}

void sp_worker_release(void) {
  free(guarded.reactor);
  free(guarded.threads);
  guarded.reactor = guarded.threads = NULL;
  guarded.taken = 0;
}

/* reactor.stop, threads.deferToThread and the like in a pool thread:
** refused, with the way round. */
static int worker_mainonly(lua_State *L) {
  const char *name = lua_tostring(L, lua_upvalueindex(1));
  return luaL_error(L,
                    "%s can only be called on the reactor thread (from "
                    "a pool thread: reactor.callFromThread(%s, ...))",
                    name, name);
}

/* [-0, +1, m] A strict module table from funcs, named `name`. */
static void worker_module(lua_State *L, const luaL_Reg *funcs,
                          const char *name) {
  lua_newtable(L);
  luaL_setfuncs(L, funcs, 0);
  sp_strict(L, -1, name);
}

/* reactor.seconds() -> seconds in a pool thread: the reactor's monotonic
** clock. twisted IReactorTime.seconds. */
static int worker_seconds(lua_State *L) {
  lua_pushnumber(L, sp_loop_seconds());
  return 1;
}

/* [-0, +0, m] In module table at -1, a guard for each name that raises
** "<prefix>.<name> can only be called on the reactor thread". A guard is
** a field of the module, so passed to callFromThread it arrives on the
** main thread as the real function of that name (marshal.c), as in
** Twisted's reactor.callFromThread(reactor.stop). */
static void worker_guards(lua_State *L, const char *prefix,
                          const char *const *names) {
  for (int i = 0; names != NULL && names[i] != NULL; i++) {
    lua_pushfstring(L, "%s.%s", prefix, names[i]);
    lua_pushcclosure(L, worker_mainonly, 1);
    lua_setfield(L, -2, names[i]);
  }
}

/* [-0, +1, m] The funcs of the state being opened (upvalue 1). */
static const sp_worker_funcs *worker_funcs(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

static int worker_open_reactor(lua_State *L) {
  const luaL_Reg funcs[] = {{"callFromThread", worker_funcs(L)->callFromThread},
                            {"seconds", worker_seconds},
                            {NULL, NULL}};
  lua_newtable(L);
  worker_guards(L, "reactor", guarded.reactor);
  luaL_setfuncs(L, funcs, 0);
  sp_strict(L, -1, "reactor (in a pool thread)");
  return 1;
}

static int worker_open_threads(lua_State *L) {
  const luaL_Reg funcs[] = {
      {"blockingCallFromThread", worker_funcs(L)->blockingCallFromThread},
      {NULL, NULL}};
  lua_newtable(L);
  worker_guards(L, "threads", guarded.threads);
  luaL_setfuncs(L, funcs, 0);
  sp_errortype_export(L, -1, "threads");
  sp_strict(L, -1, "threads (in a pool thread)");
  return 1;
}

static int worker_open_log(lua_State *L) {
  const luaL_Reg funcs[] = {{"msg", worker_funcs(L)->log_msg},
                            {"err", worker_funcs(L)->log_err},
                            {NULL, NULL}};
  worker_module(L, funcs, "log (in a pool thread)");
  return 1;
}

/* The pure Lua modules a worker may load from the binary. */
static const char *const worker_luamods[] = {"spindle.class", NULL};

/* Searcher, before the path searchers: spindle's modules other than the
** thread-safe ones are refused with a clear error instead of "not found"
** (they drive the reactor, which lives on the main thread). */
static int worker_searcher(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  if (strcmp(name, "spindle") != 0 && strncmp(name, "spindle.", 8) != 0)
    return 0; /* not ours: add nothing to require's message */
  for (int i = 0; worker_luamods[i] != NULL; i++) {
    const sp_luafile *f;
    if (strcmp(worker_luamods[i], name) != 0) continue;
    for (f = sp_luafiles; f->name != NULL; f++) {
      if (strcmp(f->name, name) != 0) continue;
      if (luaL_loadbuffer(L, f->source, f->size, f->chunk) != LUA_OK)
        return lua_error(L);
      lua_pushstring(L, f->chunk + 1);
      return 2;
    }
  }
  return luaL_error(L,
                    "module '%s' is not available in a pool thread "
                    "(there: spindle.reactor's callFromThread and seconds, "
                    "spindle.threads.blockingCallFromThread, spindle.log, "
                    "spindle.failure, spindle.class)",
                    name);
}

/* [-0, +0, e] Open a worker's state; its funcs are lightuserdata at 1. */
static int worker_open(lua_State *L) {
  static const luaL_Reg preloads[] = {{"spindle.reactor", worker_open_reactor},
                                      {"spindle.threads", worker_open_threads},
                                      {"spindle.log", worker_open_log},
                                      {NULL, NULL}};
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_spindle_failure);
  lua_setfield(L, -2, "spindle.failure");
  lua_pushcfunction(L, luaopen_spindle__core);
  lua_setfield(L, -2, "spindle._core");
  lua_pushvalue(L, 1);
  luaL_setfuncs(L, preloads, 1);
  lua_pop(L, 1);
  luaL_requiref(L, "spindle.failure", luaopen_spindle_failure, 0);
  lua_pop(L, 1);
  sp_add_searcher(L, worker_searcher);
  return 0;
}

lua_State *sp_worker_newstate(const sp_worker_funcs *funcs) {
  lua_State *L = luaL_newstate();
  if (L == NULL) return NULL;
  lua_pushcfunction(L, worker_open);
  lua_pushlightuserdata(L, (void *)funcs);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    lua_close(L);
    return NULL;
  }
  return L;
}
