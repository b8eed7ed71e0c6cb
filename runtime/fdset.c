/*
** fdset.c: spindle._fdset, the mechanism under reactor.addReader and
** friends (twisted IReactorFDSet; the policy is lua/spindle/fdset.lua):
** a Poll watches one descriptor someone else owns (another library's
** socket, a pipe) with uv_poll_t and calls back on readiness. It never
** reads, writes or closes the descriptor.
**
** Lifetime: a box userdata points at C memory holding the handle. While
** the handle is open it holds a registry reference to the box, whose user
** value is the callback; close() (or process exit, through loop.c's live
** registry, after one last callback with the error "ESHUTDOWN") closes
** the handle, and the close callback drops the reference and frees.
*/
#include <stddef.h>
#include <stdlib.h>

#include <lauxlib.h>

#include "core.h"
#include "loop.h"

#define POLL_MT "spindle.Poll"

typedef struct fdpoll {
  uv_poll_t h; /* h.data points back here */
  sp_live live;
  int ref; /* registry ref to the box while open */
} fdpoll;

typedef struct poll_box {
  fdpoll *p; /* NULL once closed */
  int fd;
} poll_box;

static void poll_closed_cb(uv_handle_t *h) {
  fdpoll *p = h->data;
  lua_State *L = sp_loop_state();
  sp_live_remove(&p->live);
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref);
  ((poll_box *)lua_touserdata(L, -1))->p = NULL;
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, p->ref);
  free(p);
}

static void poll_close(fdpoll *p) {
  if (!uv_is_closing((uv_handle_t *)&p->h))
    uv_close((uv_handle_t *)&p->h, poll_closed_cb);
}

/* (callback, readable, writable, err) -> (): callback(readable,
** writable, err), err a C string as light userdata made a Lua string
** here, inside the protected call (it may allocate). */
static int poll_tramp(lua_State *L) {
  if (lua_islightuserdata(L, 4)) {
    lua_pushstring(L, lua_touserdata(L, 4));
    lua_replace(L, 4);
  }
  lua_call(L, 3, 0);
  return 0;
}

/* [-0, +0, -] callback(readable, writable, err), protected and logged. */
static void poll_call(lua_State *L, fdpoll *p, int r, int w, const char *err) {
  int top = lua_gettop(L);
  lua_pushcfunction(L, poll_tramp);
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref);
  lua_getiuservalue(L, -1, 1);
  lua_remove(L, -2);
  lua_pushboolean(L, r);
  lua_pushboolean(L, w);
  if (err != NULL)
    lua_pushlightuserdata(L, (void *)err);
  else
    lua_pushnil(L);
  if (sp_pcall(L, 4, 0) != LUA_OK) sp_log_failure(L, -1, "Unhandled Error");
  lua_settop(L, top);
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  fdpoll *p = h->data;
  lua_State *L = sp_loop_state();
  if (status < 0) {
    poll_call(L, p, 0, 0, uv_err_name(status));
    return;
  }
  /* A hang-up with nothing left to read is a lost connection, as
  ** Twisted's pollers report POLLHUP without POLLIN. */
  if ((events & UV_DISCONNECT) && !(events & UV_READABLE)) {
    poll_call(L, p, 0, 0, "EOF");
    return;
  }
  poll_call(L, p, (events & UV_READABLE) != 0, (events & UV_WRITABLE) != 0,
            NULL);
}

/* At exit: one last callback (err "ESHUTDOWN": the policy tells the
** reader it is lost), then close. */
static void poll_shutdown(lua_State *L, sp_live *n) {
  fdpoll *p = (fdpoll *)((char *)n - offsetof(fdpoll, live));
  if (uv_is_closing((uv_handle_t *)&p->h)) return;
  poll_call(L, p, 0, 0, "ESHUTDOWN");
  poll_close(p);
}

/* _fdset.poll(fd, callback) -> Poll
** Watch descriptor fd (not yet: start() says for what); callback(
** readable, writable, err) runs on the loop thread, err a libuv error
** name ("EBADF"), "EOF" for a hang-up, or "ESHUTDOWN" at exit. Raises
** when libuv cannot poll fd (a regular file: EPERM). uv_poll_init. */
static int fdset_poll(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1), r;
  poll_box *b;
  fdpoll *p;
  sp_checkcallable(L, 2);
  b = lua_newuserdatauv(L, sizeof *b, 1);
  b->p = NULL;
  b->fd = fd;
  luaL_setmetatable(L, POLL_MT);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  p = calloc(1, sizeof *p);
  if (p == NULL) return luaL_error(L, "not enough memory");
  r = uv_poll_init(sp_loop(), &p->h, fd);
  if (r < 0) { /* libuv fails before the handle joins the loop */
    free(p);
    return luaL_error(L, "cannot watch descriptor %d: %s (%s)", fd,
                      uv_strerror(r), uv_err_name(r));
  }
  p->h.data = p;
  lua_pushvalue(L, -1);
  p->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  p->live.shutdown = poll_shutdown;
  sp_live_add(&p->live);
  b->p = p;
  return 1;
}

/* poll:start(readable, writable): watch for what is asked (both false:
** stop watching, the handle stays open). Does nothing once closed. */
static int poll_start(lua_State *L) {
  poll_box *b = luaL_checkudata(L, 1, POLL_MT);
  int ev = (lua_toboolean(L, 2) ? UV_READABLE | UV_DISCONNECT : 0) |
           (lua_toboolean(L, 3) ? UV_WRITABLE : 0);
  int r;
  if (b->p == NULL || uv_is_closing((uv_handle_t *)&b->p->h)) return 0;
  r = ev == 0 ? uv_poll_stop(&b->p->h) : uv_poll_start(&b->p->h, ev, poll_cb);
  if (r < 0)
    return luaL_error(L, "cannot watch descriptor %d: %s (%s)", b->fd,
                      uv_strerror(r), uv_err_name(r));
  return 0;
}

/* poll:close(): stop watching for good; idempotent. */
static int poll_closem(lua_State *L) {
  poll_box *b = luaL_checkudata(L, 1, POLL_MT);
  if (b->p != NULL) poll_close(b->p);
  return 0;
}

static const luaL_Reg poll_methods[] = {
    {"start", poll_start}, {"close", poll_closem}, {NULL, NULL}};

static const luaL_Reg fdset_funcs[] = {{"poll", fdset_poll}, {NULL, NULL}};

int luaopen_spindle__fdset(lua_State *L) {
  sp_class_new(L, POLL_MT, poll_methods, NULL);
  luaL_newlib(L, fdset_funcs);
  return 1;
}
