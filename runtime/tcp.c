/*
** tcp.c: spindle._tcp, the reactor's TCP and Unix socket entry points:
** listenTCP, connectTCP, listenUNIX, connectUNIX, and the Port and
** Connector objects they return. Connections themselves are stream.c's
** transports.
**
** Follows twisted.internet.tcp (Port, Client, Connector) and
** twisted.internet.unix, with the factory life cycle Twisted uses:
** Port: factory:doStart() once listening, factory:doStop() once closed;
** buildProtocol(addr) per accepted connection (nil refuses it), then
** protocol:makeConnection(transport).
** Connector: factory:doStart(), startedConnecting(connector), then either
** buildProtocol(addr) + makeConnection, later clientConnectionLost, or
** clientConnectionFailed; then doStop() unless the factory reconnected.
**
** Lifetimes: a listening socket and each connection attempt are libuv
** handles in C memory, freed in their close callbacks. A listening Port
** and a connecting Connector hold a registry reference to their userdata;
** a connected Connector is kept alive by its transport.
**
** Length: over 1000 lines because it is all of spindle._tcp: Port,
** Connector, the TCP options of transports and reactor.resolve; each part
** is a section below and they share the module's argument checks. The
** Connector section is the one to move to a file of its own when this
** module grows again.
*/
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <lauxlib.h>

#include "addr.h"
#include "core.h"
#include "defer.h"
#include "failure.h"
#include "inspect.h"
#include "loop.h"
#include "stream.h"
#include "resolve.h"
#include "tcp.h"

#define PORT_MT "spindle.Port"
#define CONNECTOR_MT "spindle.Connector"
#define DEFAULT_BACKLOG 50
#define DEFAULT_TIMEOUT 30.0

/* ------------------------------------------------------------ helpers */

/* Raise unless the value at idx is a factory (has buildProtocol). */
static void check_factory(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  if (t != LUA_TTABLE && t != LUA_TUSERDATA) luaL_typeerror(L, idx, "factory");
  if (lua_getfield(L, idx, "buildProtocol") == LUA_TNIL)
    luaL_argerror(L, idx, "factory expected (no buildProtocol method)");
  lua_pop(L, 1);
}

/* [-0, +0, e] The port number at idx: an integer in 0..65535, or a
** string holding one ("8080"), which Lua's own functions convert as
** luaL_checkinteger does. */
static int check_portnum(lua_State *L, int idx) {
  lua_Integer p;
  int isnum;
  int t = lua_type(L, idx);
  if (t != LUA_TNUMBER && t != LUA_TSTRING)
    luaL_typeerror(L, idx, "port number");
  p = lua_tointegerx(L, idx, &isnum);
  if (!isnum && t == LUA_TSTRING && !lua_isnumber(L, idx))
    luaL_typeerror(L, idx, "port number");
  if (!isnum || p < 0 || p > 65535)
    luaL_argerror(L, idx, "port number must be an integer in 0..65535");
  return (int)p;
}

/* ------------------------------------------------------------- Port */

typedef struct listener listener;

typedef struct port_ud {
  int kind; /* SP_STREAM_TCP or SP_STREAM_UNIX */
  int backlog;
  int mode;     /* Unix: permission bits of the socket file */
  int ref;      /* registry ref while listening or closing */
  listener *ls; /* the listening handle, NULL when not listening */
  struct sockaddr_storage want;  /* TCP: the address asked for */
  struct sockaddr_storage bound; /* TCP: the address bound */
  sp_tcp_setup_fn setup;         /* per-connection hook (TLS), or NULL */
  int reuseport;                 /* TCP: SO_REUSEPORT before bind */
  int fd;      /* adoptStreamPort's descriptor until it listens, or -1 */
  int adopted; /* the socket was handed to us: no bind, chmod, unlink */
} port_ud;

/* The hooks of a process under a supervisor (tcp.h). */
static sp_tcp_listen_fn listen_hook = NULL;
static sp_tcp_listening_fn listening_hook = NULL;

void sp_tcp_set_listen_hooks(sp_tcp_listen_fn listen,
                             sp_tcp_listening_fn listening) {
  listen_hook = listen;
  listening_hook = listening;
}

int sp_tcp_open_accepted(void) {
  return sp_stream_accepted_open();
}

/* User values of a Port: the factory, the Deferreds of stopListening,
** the socket path (Unix), the setup hook's value. */
enum { PV_FACTORY = 1, PV_WAITERS, PV_PATH, PV_SETUP, PV_N };

/* [-0, +0, -] Run a setup hook on the just-opened stream s whose
** transport's owner (Port or Connector) is at oidx and whose hook value is
** its user value uvn. Returns 0, or nonzero after losing the connection. */
static int run_setup(lua_State *L, sp_tcp_setup_fn setup, sp_stream *s,
                     int oidx, int uvn) {
  int top = lua_gettop(L), r;
  if (setup == NULL) return 0;
  lua_getiuservalue(L, oidx, uvn);
  r = setup(L, s, lua_gettop(L));
  if (r != 0) {
    if (lua_gettop(L) == top + 1) lua_pushliteral(L, "connection setup failed");
    sp_stream_lose(L, s, -1, 0);
  }
  lua_settop(L, top);
  return r;
}

struct listener {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  port_ud *port;
  sp_live live;
};

/* What on_connection hands its Lua half. */
typedef struct accepting {
  port_ud *pu;
  sp_stream *s; /* the accepted stream, or NULL (status < 0) */
  int status;
  int opened; /* s has its transport: lost, not discarded, on error */
} accepting;

/* (accepting) -> (): the Lua half of on_connection, protected. */
static int accept_tramp(lua_State *L) {
  accepting *a = lua_touserdata(L, 1);
  int top = lua_gettop(L);
  if (a->status < 0) {
    lua_pushfstring(L, "Could not accept new connection: %s (%s)",
                    uv_strerror(a->status), uv_err_name(a->status));
    sp_log_failure(L, -1, "Unhandled Error");
    return 0;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->pu->ref);
  lua_getiuservalue(L, -1, PV_FACTORY);
  /* The stock buildProtocol does not use its address: make none for it,
  ** as it would be garbage at once (core.h). */
  lua_getfield(L, -1, "buildProtocol");
  if (lua_tocfunction(L, -1) == sp_factory_buildProtocol) {
    lua_pushnil(L);
    lua_replace(L, -2);
  } else {
    lua_pop(L, 1);
    sp_stream_pushaddr(L, a->s, 1);
  }
  if (sp_callmethod(L, -2, "buildProtocol", 1) != SP_CALL_OK ||
      lua_isnil(L, -1))
    return 0; /* on_connection discards it */
  /* No owner: the accepting side (TLS reads its role from that). */
  sp_stream_open(L, a->s);
  lua_pop(L, 1);
  a->opened = 1;
  if (run_setup(L, a->pu->setup, a->s, top + 1, PV_SETUP) == 0)
    sp_stream_connect_protocol(L, a->s);
  return 0;
}

/* A client connected to a listening port: accept it, build its protocol
** (twisted tcp.Port.doRead). The Lua half runs protected: on an error
** (logged) a stream without a transport is discarded, one with a
** transport lost, each through its one release path. */
static void on_connection(uv_stream_t *server, int status) {
  listener *ls = server->data;
  lua_State *L = sp_loop_state();
  accepting a = {ls->port, NULL, status, 0};
  int err;
  if (a.pu == NULL) return;
  if (status >= 0) {
    a.s = sp_stream_accept(server, a.pu->kind, &err);
    if (a.s == NULL) return;
  }
  if (sp_run_protected(L, accept_tramp, &a) != LUA_OK && a.opened)
    sp_stream_lose_protected(L, a.s);
  if (a.s != NULL && !a.opened) sp_stream_discard(a.s);
}

static void port_closed(lua_State *L, port_ud *pu);

/* Close callback of every listener: out of the live registry, freed; a
** listener still attached to its Port (ls->port) tells it. */
static void listener_closed_cb(uv_handle_t *h) {
  listener *ls = h->data;
  port_ud *pu = ls->port;
  sp_live_remove(&ls->live);
  free(ls);
  if (pu != NULL) port_closed(sp_loop_state(), pu);
}

/* The one release path of a listener whose handle is initialized:
** close it (once); listener_closed_cb frees it. */
static void listener_close(listener *ls) {
  if (!uv_is_closing(&ls->h.handle))
    uv_close(&ls->h.handle, listener_closed_cb);
}

/* At exit the listening socket closes as by stopListening. */
static void listener_shutdown(lua_State *L, sp_live *n) {
  listener *ls = (listener *)((char *)n - offsetof(listener, live));
  (void)L;
  if (ls->port != NULL) ls->port->ls = NULL;
  listener_close(ls);
}

/* A listener for pu with its handle initialized, in the live registry,
** not yet attached to pu. Returns NULL with *err set to a libuv error;
** nothing to release then. */
static listener *listener_new(port_ud *pu, int adopt, int *err) {
  listener *ls = calloc(1, sizeof *ls);
  int r;
  if (ls == NULL) {
    *err = UV_ENOMEM;
    return NULL;
  }
  if (pu->kind == SP_STREAM_TCP && pu->reuseport && !adopt)
    /* uv_tcp_init_ex makes the socket now, so the option can precede
    ** bind (libuv 1.44 has no UV_TCP_REUSEPORT flag). */
    r = uv_tcp_init_ex(sp_loop(), &ls->h.tcp, pu->want.ss_family);
  else if (pu->kind == SP_STREAM_TCP)
    r = uv_tcp_init(sp_loop(), &ls->h.tcp);
  else
    r = uv_pipe_init(sp_loop(), &ls->h.pipe, 0);
  if (r < 0) {
    free(ls);
    *err = r;
    return NULL;
  }
  ls->h.handle.data = ls;
  ls->live.shutdown = listener_shutdown;
  sp_live_add(&ls->live);
  return ls;
}

/* What listener_bind failed at, for the error message. */
enum { LS_INIT, LS_REUSEPORT, LS_BIND };

/* Set SO_REUSEPORT if asked, bind to pu's address or path, listen.
** Returns 0, or a libuv error with *stage set. */
/* uv_pipe_bind(p, path), but ENOENT when path's directory is missing:
** libuv reports bind()'s ENOENT as EACCES (for Windows), where Python and
** Twisted say ENOENT. A real EACCES (a directory we may not write) keeps
** its code, as the directory is then there. Returns 0 or a libuv error. */
static int pipe_bind(uv_pipe_t *p, const char *path) {
  char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
  const char *slash = strrchr(path, '/');
  struct stat st;
  int r = uv_pipe_bind(p, path);
  if (r != UV_EACCES || slash == NULL || slash == path) return r;
  snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  if (stat(dir, &st) != 0 && errno == ENOENT) return UV_ENOENT;
  return r;
}

static int listener_bind(listener *ls, port_ud *pu, const char *path,
                         int *stage) {
  int r = 0;
  *stage = LS_REUSEPORT;
  if (pu->kind == SP_STREAM_TCP && pu->reuseport) {
    uv_os_fd_t fd;
    int one = 1;
    uv_fileno(&ls->h.handle, &fd);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
      return uv_translate_sys_error(errno);
  }
  *stage = LS_BIND;
  if (pu->kind == SP_STREAM_TCP)
    r = uv_tcp_bind(&ls->h.tcp, (struct sockaddr *)&pu->want, 0);
  else if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
    r = UV_ENAMETOOLONG;
  else
    r = pipe_bind(&ls->h.pipe, path);
  if (r == 0) r = uv_listen(&ls->h.stream, pu->backlog, on_connection);
  return r;
}

/* Listen on the listening socket fd handed to us (adoptStreamPort, a
** supervisor); ls owns fd from here, even on failure. Returns 0 or a
** libuv error. */
static int listener_adopt(listener *ls, port_ud *pu, int fd) {
  int r = pu->kind == SP_STREAM_TCP ? uv_tcp_open(&ls->h.tcp, fd)
                                    : uv_pipe_open(&ls->h.pipe, fd);
  if (r != 0) {
    close(fd);
    return r;
  }
  return uv_listen(&ls->h.stream, pu->backlog, on_connection);
}

/* [-0, +0, e] Raise CannotListenError for libuv error r at `stage`. */
static void raise_listen(lua_State *L, port_ud *pu, const char *path, int r,
                         int stage) {
  char host[SP_ADDR_HOSTLEN];
  int portnum;
  if (stage == LS_INIT)
    sp_errortype_raise(L, "reactor.CannotListenError", uv_err_name(r),
                       "Couldn't listen: %s (%s).", uv_strerror(r),
                       uv_err_name(r));
  if (stage == LS_REUSEPORT)
    sp_errortype_raise(L, "reactor.CannotListenError", uv_err_name(r),
                       "Couldn't set SO_REUSEPORT: %s (%s).", uv_strerror(r),
                       uv_err_name(r));
  if (pu->kind == SP_STREAM_UNIX)
    sp_errortype_raise(L, "reactor.CannotListenError", uv_err_name(r),
                       "Couldn't listen on %s: %s (%s).", path, uv_strerror(r),
                       uv_err_name(r));
  portnum = sp_addr_format((struct sockaddr *)&pu->want, host);
  sp_errortype_raise(L, "reactor.CannotListenError", uv_err_name(r),
                     "Couldn't listen on %s:%d: %s (%s).",
                     host[0] ? host : "any", portnum, uv_strerror(r),
                     uv_err_name(r));
}

/* (port, factory) -> (): the Lua half of port_started, protected: pin
** the Port (its registry ref), the listening hook, factory:doStart(). */
static int port_start_tramp(lua_State *L) {
  port_ud *pu = lua_touserdata(L, 1);
  lua_pushvalue(L, 1);
  pu->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (listening_hook != NULL) listening_hook(L, 1);
  if (lua_getfield(L, 2, "doStart") == LUA_TNIL) return 0;
  lua_pushvalue(L, 2);
  lua_call(L, 1, 0);
  return 0;
}

/* [-0, +0, e] The Port at idx listens on ls: attach them, pin the Port,
** factory:doStart() (twisted Port.startListening). If any of it raises
** (doStart, or a memory error), the listener is detached and closed
** (Twisted's socket is a local of startListening, freed with the error)
** and the original error value is raised, as it propagates in Twisted. */
static void port_started(lua_State *L, int idx, listener *ls,
                         const char *path) {
  port_ud *pu = lua_touserdata(L, idx);
  if (pu->kind == SP_STREAM_TCP) {
    int len = sizeof pu->bound;
    uv_tcp_getsockname(&ls->h.tcp, (struct sockaddr *)&pu->bound, &len);
  } else if (!pu->adopted) {
    chmod(path, (mode_t)pu->mode);
  }
  ls->port = pu;
  pu->ls = ls;
  lua_pushcfunction(L, port_start_tramp);
  lua_pushvalue(L, idx);
  lua_getiuservalue(L, idx, PV_FACTORY);
  if (sp_pcall(L, 2, 0) == LUA_OK) return;
  ls->port = NULL;
  pu->ls = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, pu->ref);
  pu->ref = LUA_NOREF;
  if (path != NULL && !pu->adopted) unlink(path);
  listener_close(ls);
  /* A memory error reaches us bare (the handler could not make a
  ** Failure): raise it as it is. */
  if (sp_failure_is(L, -1)) lua_getfield(L, -1, "value");
  lua_error(L);
}

/* [-0, +0, e] Open the listening socket of the Port at idx; raises
** CannotListenError, or what factory:doStart() raises. */
static void port_listen(lua_State *L, int idx) {
  port_ud *pu = lua_touserdata(L, idx);
  const char *path = NULL;
  listener *ls;
  int r, stage = LS_BIND, fd = pu->fd;
  if (pu->kind == SP_STREAM_UNIX) {
    lua_getiuservalue(L, idx, PV_PATH);
    path = lua_tostring(L, -1);
    lua_pop(L, 1); /* the user value keeps it */
  }
  pu->fd = -1;
  if (fd < 0 && listen_hook != NULL) {
    fd = listen_hook(pu->kind, (struct sockaddr *)&pu->want, path, pu->backlog,
                     pu->mode);
    if (fd < 0 && fd != SP_TCP_BIND) raise_listen(L, pu, path, fd, LS_BIND);
  }
  pu->adopted = fd >= 0;
  ls = listener_new(pu, fd >= 0, &r);
  if (ls == NULL) {
    if (fd >= 0) close(fd);
    raise_listen(L, pu, path, r, LS_INIT);
  }
  if (fd >= 0)
    r = listener_adopt(ls, pu, fd);
  else
    r = listener_bind(ls, pu, path, &stage);
  if (r < 0) {
    listener_close(ls);
    raise_listen(L, pu, path, r, stage);
  }
  port_started(L, idx, ls, path);
}

/* The listening socket is closed: the factory stops, then the Deferreds
** of stopListening fire (twisted tcp.Port.connectionLost). */
static void port_closed(lua_State *L, port_ud *pu) {
  int top = lua_gettop(L), pidx, n, i;
  lua_rawgeti(L, LUA_REGISTRYINDEX, pu->ref);
  pidx = lua_gettop(L);
  luaL_unref(L, LUA_REGISTRYINDEX, pu->ref);
  pu->ref = LUA_NOREF;
  if (pu->kind == SP_STREAM_UNIX && !pu->adopted) {
    lua_getiuservalue(L, pidx, PV_PATH);
    unlink(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_getiuservalue(L, pidx, PV_FACTORY);
  sp_callmethod(L, -1, "doStop", 0);
  lua_settop(L, pidx);
  lua_getiuservalue(L, pidx, PV_WAITERS);
  lua_pushnil(L);
  lua_setiuservalue(L, pidx, PV_WAITERS);
  n = lua_istable(L, -1) ? (int)lua_rawlen(L, -1) : 0;
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, pidx + 1, i);
    lua_pushnil(L);
    sp_deferred_callback(L, -2, -1);
    lua_pop(L, 2);
  }
  lua_settop(L, top);
}

static port_ud *check_port(lua_State *L) {
  return sp_class_check(L, 1, PORT_MT);
}

int sp_tcp_port_fd(lua_State *L, int idx, int *adopted) {
  port_ud *pu = luaL_testudata(L, idx, PORT_MT);
  uv_os_fd_t fd;
  if (pu == NULL || pu->ls == NULL || uv_fileno(&pu->ls->h.handle, &fd) != 0)
    return -1;
  *adopted = pu->adopted;
  return fd;
}

/* port:stopListening() -> Deferred: close the listening socket; the
** Deferred fires (with nil) once it is closed and factory:doStop() has
** run. Connections already accepted stay open. On a port that is not
** listening it returns a fired Deferred. twisted tcp.Port.stopListening. */
static int port_stopListening(lua_State *L) {
  port_ud *pu = check_port(L);
  if (pu->ls == NULL && pu->ref == LUA_NOREF) {
    sp_deferred_new(L);
    lua_pushnil(L);
    sp_deferred_callback(L, -2, -1);
    lua_pop(L, 1);
    return 1;
  }
  if (lua_getiuservalue(L, 1, PV_WAITERS) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, PV_WAITERS);
  }
  sp_deferred_new(L);
  lua_pushvalue(L, -1);
  lua_rawseti(L, -3, (lua_Integer)lua_rawlen(L, -3) + 1);
  if (pu->ls != NULL) {
    listener *ls = pu->ls;
    pu->ls = NULL;
    listener_close(ls);
  }
  return 1;
}

/* port:startListening(): listen again after stopListening (on the port
** number first asked for). Raises CannotListenError, or an error if the
** port is still listening or closing. twisted tcp.Port.startListening. */
static int port_startListening(lua_State *L) {
  port_ud *pu = check_port(L);
  if (pu->ls != NULL || pu->ref != LUA_NOREF)
    return luaL_error(L, "startListening: port is already listening");
  port_listen(L, 1);
  return 0;
}

/* port:getHost() -> an address (addr.h): {type = "TCP", host =
** "127.0.0.1", port = 8080} (the real port when 0 was asked for) or
** {type = "UNIX", name = path}.
** twisted tcp.Port.getHost. */
static int port_getHost(lua_State *L) {
  port_ud *pu = check_port(L);
  if (pu->kind == SP_STREAM_TCP) {
    sp_addr_push(L, "TCP", (struct sockaddr *)&pu->bound);
  } else {
    lua_getiuservalue(L, 1, PV_PATH);
    sp_addr_push_unix(L, lua_tostring(L, -1));
  }
  return 1;
}

static int port_tostring(lua_State *L) {
  port_ud *pu = check_port(L);
  const char *state = pu->ls != NULL ? "" : " (not listening)";
  if (pu->kind == SP_STREAM_TCP) {
    char host[SP_ADDR_HOSTLEN];
    int portnum = sp_addr_format((struct sockaddr *)&pu->bound, host);
    lua_pushfstring(L, "<TCP Port %s:%d%s>", host, portnum, state);
  } else {
    lua_getiuservalue(L, 1, PV_PATH);
    lua_pushfstring(L, "<UNIX Port %s%s>", lua_tostring(L, -1), state);
  }
  return 1;
}

static const luaL_Reg port_methods[] = {{"stopListening", port_stopListening},
                                        {"loseConnection", port_stopListening},
                                        {"startListening", port_startListening},
                                        {"getHost", port_getHost},
                                        {NULL, NULL}};

static const luaL_Reg port_meta[] = {{"__tostring", port_tostring},
                                     {NULL, NULL}};

/* [-0, +1, m] A new Port userdata of kind with factory at fidx. */
static port_ud *port_new(lua_State *L, int kind, int fidx, int backlog) {
  port_ud *pu = lua_newuserdatauv(L, sizeof *pu, PV_N - 1);
  memset(pu, 0, sizeof *pu);
  pu->kind = kind;
  pu->backlog = backlog;
  pu->ref = LUA_NOREF;
  pu->fd = -1;
  luaL_setmetatable(L, PORT_MT);
  lua_pushvalue(L, fidx);
  lua_setiuservalue(L, -2, PV_FACTORY);
  return pu;
}

static int check_backlog(lua_State *L, int idx) {
  lua_Integer b = luaL_optinteger(L, idx, DEFAULT_BACKLOG);
  luaL_argcheck(L, b > 0 && b <= 65535, idx, "backlog must be positive");
  return (int)b;
}

/* reactor.listenTCP(port, factory[, backlog][, interface][, options])
**   -> Port
** Listen on TCP `port` (0 picks a free one; port:getHost() tells which)
** of `interface` (an IPv4 or IPv6 literal; default "" = every IPv4
** address, "::" every address); backlog defaults to 50. The last argument
** may be an options table {backlog = n, interface = ip, reusePort = true}
** (reusePort: SO_REUSEPORT, so that several processes share the port; see
** DESIGN.md). Each connection gets factory:buildProtocol(addr). Raises
** CannotListenError (with the libuv error name in `code`: "EADDRINUSE",
** "EACCES") and argument errors. twisted IReactorTCP.listenTCP. */
static int tcp_listenTCP(lua_State *L) {
  return sp_tcp_listen(L, NULL, 0);
}

int sp_tcp_listen(lua_State *L, sp_tcp_setup_fn setup, int arg) {
  int portnum = check_portnum(L, 1);
  int backlog, opts = 0, reuse = 0, i;
  const char *iface;
  port_ud *pu;
  check_factory(L, 2);
  if (setup != NULL) arg = lua_absindex(L, arg);
  for (i = 3; i <= 5 && opts == 0; i++)
    if (lua_type(L, i) == LUA_TTABLE) opts = i;
  if (opts == 3) {
    lua_Integer b = DEFAULT_BACKLOG;
    int isint = 1;
    if (lua_getfield(L, opts, "backlog") != LUA_TNIL)
      b = lua_tointegerx(L, -1, &isint);
    luaL_argcheck(L, isint && b > 0 && b <= 65535, opts,
                  "backlog must be a positive integer");
    backlog = (int)b;
  } else {
    backlog = check_backlog(L, 3);
  }
  if (opts == 3 || opts == 4) {
    int t = lua_getfield(L, opts, "interface");
    luaL_argcheck(L, t == LUA_TNIL || t == LUA_TSTRING, opts,
                  "interface must be a string");
    iface = t == LUA_TNIL ? "" : lua_tostring(L, -1);
  } else {
    /* A string or nil only: luaL_optstring would take the number 5 as
    ** "5", then fail as CannotListenError. listenSSL's interface is its
    ** argument 5 (tls.c removed its contextFactory, argument 3). */
    if (!lua_isnoneornil(L, 4) && lua_type(L, 4) != LUA_TSTRING)
      sp_fnargerror(
          L, setup != NULL ? 5 : 4,
          lua_pushfstring(L, "string expected, got %s", luaL_typename(L, 4)),
          setup != NULL ? "listenSSL" : "listenTCP");
    iface = luaL_optstring(L, 4, "");
  }
  if (opts != 0) {
    lua_getfield(L, opts, "reusePort");
    reuse = lua_toboolean(L, -1);
  }
  pu = port_new(L, SP_STREAM_TCP, 2, backlog);
  pu->reuseport = reuse;
  if (sp_addr_parse(iface[0] ? iface : "0.0.0.0", portnum, &pu->want) != 0)
    return sp_errortype_raise(L, "reactor.CannotListenError", "EINVAL",
                              "Couldn't listen on %s:%d: the interface "
                              "must be an IP address (EINVAL).",
                              iface, (int)portnum);
  if (setup != NULL) {
    pu->setup = setup;
    lua_pushvalue(L, arg);
    lua_setiuservalue(L, -2, PV_SETUP);
  }
  port_listen(L, lua_gettop(L));
  return 1;
}

/* reactor.listenUNIX(path, factory[, backlog][, mode]) -> Port
** Listen on a Unix socket at path, whose file gets permission bits mode
** (default 0666 = 438, as Twisted) and is removed by stopListening.
** Raises CannotListenError ("EADDRINUSE" if the path exists, "ENOENT" if
** its directory does not). twisted IReactorUNIX.listenUNIX. */
static int tcp_listenUNIX(lua_State *L) {
  int backlog;
  lua_Integer mode;
  luaL_checkstring(L, 1);
  check_factory(L, 2);
  backlog = check_backlog(L, 3);
  mode = luaL_optinteger(L, 4, 0666);
  luaL_argcheck(L, mode >= 0 && mode <= 07777, 4, "mode must be in 0..4095");
  port_new(L, SP_STREAM_UNIX, 2, backlog)->mode = (int)mode;
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, PV_PATH);
  port_listen(L, lua_gettop(L));
  return 1;
}

/* reactor.adoptStreamPort(fileDescriptor, addressFamily, factory) -> Port
** Accept connections on a socket that is already bound and listening
** (systemd's socket activation hands them over: endpoints' "systemd:"
** strings). fileDescriptor is its number, addressFamily "INET", "INET6"
** or "UNIX". As in Twisted, the Port listens on a duplicate: the caller
** keeps fileDescriptor; stopListening closes the duplicate only (and
** leaves a Unix socket's file in place). Raises CannotListenError if the
** descriptor is not a listening socket of that kind.
** twisted IReactorSocket.adoptStreamPort. */
static int tcp_adoptStreamPort(lua_State *L) {
  static const char *const families[] = {"INET", "INET6", "UNIX", NULL};
  lua_Integer fd = luaL_checkinteger(L, 1);
  int family = luaL_checkoption(L, 2, NULL, families), dup;
  port_ud *pu;
  check_factory(L, 3);
  luaL_argcheck(L, fd >= 0 && fd <= 65535, 1, "not a file descriptor");
  pu = port_new(L, family == 2 ? SP_STREAM_UNIX : SP_STREAM_TCP, 3, SOMAXCONN);
  if (family == 2) {
    struct sockaddr_un sun;
    socklen_t len = sizeof sun;
    memset(&sun, 0, sizeof sun);
    getsockname((int)fd, (struct sockaddr *)&sun, &len);
    lua_pushlstring(L, sun.sun_path,
                    strnlen(sun.sun_path, sizeof sun.sun_path));
    lua_setiuservalue(L, -2, PV_PATH);
  }
  dup = fcntl((int)fd, F_DUPFD_CLOEXEC, 3);
  if (dup < 0) {
    int r = uv_translate_sys_error(errno);
    return sp_errortype_raise(L, "reactor.CannotListenError", uv_err_name(r),
                              "Couldn't adopt descriptor %d: %s (%s).", (int)fd,
                              uv_strerror(r), uv_err_name(r));
  }
  pu->fd = dup;
  port_listen(L, lua_gettop(L));
  return 1;
}

/* -------------------------------------------------------- Connector */

enum { C_DISCONNECTED, C_CONNECTING, C_CONNECTED };

typedef struct connector connector;

/* A libuv request or timer working for a connector; detached (c = NULL)
** when the attempt is abandoned, then it frees itself when it completes. */
typedef struct conn_op {
  union {
    uv_getaddrinfo_t gai;
    uv_timer_t timer;
  } u;
  connector *c;
  int code;
} conn_op;

struct connector {
  sp_live live; /* on the live list while connecting */
  int kind;
  int state;
  int ref; /* registry ref while connecting */
  int factory_started;
  int port;
  double timeout; /* seconds; <= 0 for none */
  int has_bind;
  struct sockaddr_storage bind;
  conn_op *gai;       /* name resolution in flight */
  conn_op *timer;     /* connect timeout */
  conn_op *failop;    /* a failure reported on the next loop turn */
  sp_stream *attempt; /* connect in flight */
  sp_stream *stream;  /* connected stream */
  struct addrinfo *ai, *ai_next;
  sp_tcp_setup_fn setup; /* per-connection hook (TLS), or NULL */
};

/* User values of a Connector: factory, transport, host or path, the
** setup hook's value. */
enum { CV_FACTORY = 1, CV_TRANSPORT, CV_HOST, CV_SETUP, CV_N };

static void op_timer_free(uv_handle_t *h) {
  free(h->data);
}

/* Abandon every request of the current attempt. */
static void conn_cleanup(connector *c) {
  if (c->gai != NULL) {
    c->gai->c = NULL;
    uv_cancel((uv_req_t *)&c->gai->u.gai);
    c->gai = NULL;
  }
  if (c->timer != NULL) {
    uv_close((uv_handle_t *)&c->timer->u.timer, op_timer_free);
    c->timer = NULL;
  }
  if (c->failop != NULL) {
    uv_close((uv_handle_t *)&c->failop->u.timer, op_timer_free);
    c->failop = NULL;
  }
  if (c->attempt != NULL) {
    sp_stream_set_owner(c->attempt, NULL, NULL);
    sp_stream_discard(c->attempt);
    c->attempt = NULL;
  }
  if (c->ai != NULL) {
    uv_freeaddrinfo(c->ai);
    c->ai = c->ai_next = NULL;
  }
}

/* [-0, +1, m] Push "host:port" or the path the connector aims at. */
static void push_dest(lua_State *L, connector *c, int cidx) {
  lua_getiuservalue(L, cidx, CV_HOST);
  if (c->kind == SP_STREAM_TCP) {
    lua_pushfstring(L, "%s:%d", lua_tostring(L, -1), c->port);
    lua_remove(L, -2);
  }
}

/* [-0, +1, m] Push the error value for a failed connect with libuv code. */
static void push_connect_error(lua_State *L, connector *c, int cidx, int code) {
  const char *key = "reactor.ConnectError", *what =
                                                "An error occurred while "
                                                "connecting";
  push_dest(L, c, cidx);
  switch (code) {
    case UV_ECONNREFUSED:
      key = "reactor.ConnectionRefusedError";
      what = "Connection was refused by other side";
      break;
    case UV_ETIMEDOUT:
      key = "reactor.TimeoutError";
      what = "User timeout caused connection failure";
      break;
    default:
      if (code <= UV_EAI_ADDRFAMILY && code >= UV_EAI_SOCKTYPE) {
        key = "reactor.DNSLookupError";
        what = "DNS lookup failed";
      }
  }
  lua_pushfstring(L, "%s: connecting to %s: %s (%s).", what,
                  lua_tostring(L, -1), uv_strerror(code), uv_err_name(code));
  sp_errortype_make(L, key, lua_tostring(L, -1));
  lua_pushstring(L, uv_err_name(code));
  lua_setfield(L, -2, "code");
  lua_replace(L, -3);
  lua_pop(L, 1);
}

/* [-1, +0, -] The attempt failed with the error value on top: tell the
** factory (twisted BaseConnector.connectionFailed). */
static void conn_failed(lua_State *L, connector *c) {
  int top = lua_gettop(L) - 1, cidx, fidx;
  conn_cleanup(c);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
  cidx = lua_gettop(L);
  luaL_unref(L, LUA_REGISTRYINDEX, c->ref);
  c->ref = LUA_NOREF;
  c->state = C_DISCONNECTED;
  sp_live_remove(&c->live);
  sp_failure_new(L, top + 1, NULL, 0);
  lua_getiuservalue(L, cidx, CV_FACTORY);
  fidx = lua_gettop(L);
  lua_pushvalue(L, cidx);
  lua_pushvalue(L, cidx + 1);
  sp_callmethod(L, fidx, "clientConnectionFailed", 2);
  lua_settop(L, fidx);
  if (c->state == C_DISCONNECTED && c->factory_started) {
    c->factory_started = 0;
    sp_callmethod(L, fidx, "doStop", 0);
  }
  lua_settop(L, top);
}

static void conn_fail_code(lua_State *L, connector *c, int code) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
  push_connect_error(L, c, lua_gettop(L), code);
  lua_remove(L, -2);
  conn_failed(L, c);
}

/* What the connector's libuv callbacks hand their Lua half
** (sp_run_protected). */
typedef struct connecting {
  connector *c;
  sp_stream *s;
  int code;   /* conn_next's error when no address is left */
  int opened; /* connected_tramp made the transport */
} connecting;

/* (connecting) -> (): conn_fail_code, protected (sp_run_protected). */
static int fail_tramp(lua_State *L) {
  connecting *a = lua_touserdata(L, 1);
  conn_fail_code(L, a->c, a->code);
  return 0;
}

static void failop_cb(uv_timer_t *t) {
  conn_op *op = t->data;
  connecting a = {op->c, NULL, op->code, 0};
  a.c->failop = NULL;
  uv_close((uv_handle_t *)t, op_timer_free);
  sp_run_protected(sp_loop_state(), fail_tramp, &a);
}

/* Report a failure found synchronously on the next loop turn, so that the
** factory hears about it after startedConnecting, as in Twisted. */
static void conn_fail_later(connector *c, int code) {
  conn_op *op = calloc(1, sizeof *op);
  if (op == NULL || c->failop != NULL) {
    free(op);
    return;
  }
  op->c = c;
  op->code = code;
  op->u.timer.data = op;
  uv_timer_init(sp_loop(), &op->u.timer);
  sp_timer_start(&op->u.timer, failop_cb, 0);
  c->failop = op;
}

/* The stream of a connected connector was lost: clientConnectionLost,
** then doStop unless the factory reconnected (twisted
** BaseConnector.connectionLost). The reason is on top of the stack. */
static void conn_lost(sp_stream *s, lua_State *L) {
  connector *c = sp_stream_owner(s);
  int reason = lua_gettop(L), cidx, fidx;
  if (c == NULL) return;
  c->stream = NULL;
  c->state = C_DISCONNECTED;
  sp_stream_push_owner_value(L, s);
  cidx = lua_gettop(L);
  lua_pushnil(L);
  lua_setiuservalue(L, cidx, CV_TRANSPORT);
  lua_getiuservalue(L, cidx, CV_FACTORY);
  fidx = lua_gettop(L);
  lua_pushvalue(L, cidx);
  lua_pushvalue(L, reason);
  sp_callmethod(L, fidx, "clientConnectionLost", 2);
  lua_settop(L, fidx);
  if (c->state == C_DISCONNECTED && c->factory_started) {
    c->factory_started = 0;
    sp_callmethod(L, fidx, "doStop", 0);
  }
  lua_settop(L, reason);
}

/* (connecting) -> (): the connect succeeded: make the transport and the
** protocol (twisted tcp.BaseClient._connectDone). Protected; the
** transport is made first, so that a memory error there leaves the
** connector as it was (conn_done then drops the attempt). */
static int connected_tramp(lua_State *L) {
  connecting *a = lua_touserdata(L, 1);
  connector *c = a->c;
  sp_stream *s = a->s;
  int cidx;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
  cidx = lua_gettop(L);
  sp_stream_open(L, s);
  a->opened = 1;
  /* The transport anchors the connector from here on: set before the
  ** registry lets go of it (setting it can raise a memory error). */
  lua_pushvalue(L, cidx);
  sp_stream_set_owner_value(L, s);
  conn_cleanup(c);
  c->state = C_CONNECTED;
  c->stream = s;
  luaL_unref(L, LUA_REGISTRYINDEX, c->ref);
  c->ref = LUA_NOREF;
  sp_live_remove(&c->live);
  sp_stream_set_owner(s, c, conn_lost);
  lua_setiuservalue(L, cidx, CV_TRANSPORT);
  if (run_setup(L, c->setup, s, cidx, CV_SETUP) != 0) return 0;
  lua_getiuservalue(L, cidx, CV_FACTORY);
  sp_stream_pushaddr(L, s, 1);
  if (sp_callmethod(L, -2, "buildProtocol", 1) == SP_CALL_OK) {
    sp_stream_connect_protocol(L, s);
  } else {
    if (lua_isnil(L, -1))
      sp_errortype_make(L, "reactor.ConnectError",
                        "the factory has no buildProtocol method");
    sp_stream_lose(L, s, -1, 0);
  }
  return 0;
}

static void conn_done(sp_stream *s, int status);

/* Start connecting to sa; 0 or a libuv error. */
static int conn_attempt(connector *c, const struct sockaddr *sa) {
  int err = 0;
  const struct sockaddr *bind =
      c->has_bind ? (const struct sockaddr *)&c->bind : NULL;
  c->attempt = sp_stream_connect_tcp(bind, sa, c, conn_done, &err);
  return c->attempt != NULL ? 0 : err;
}

/* Try the next resolved address; on none left, fail with `code`. */
static void conn_next(lua_State *L, connector *c, int code) {
  while (c->ai_next != NULL) {
    struct addrinfo *ai = c->ai_next;
    c->ai_next = ai->ai_next;
    code = conn_attempt(c, ai->ai_addr);
    if (code == 0) return;
  }
  conn_fail_code(L, c, code);
}

/* (connecting) -> (): conn_next, protected. */
static int next_tramp(lua_State *L) {
  connecting *a = lua_touserdata(L, 1);
  conn_next(L, a->c, a->code);
  return 0;
}

/* The connect of an attempt ended (sp_stream_connected_fn). A memory
** error before the stream is connected (c->stream) drops the attempt as
** a failed connect (ENOMEM), its transport, if made, closed with it;
** after, the connection is lost. */
static void conn_done(sp_stream *s, int status) {
  lua_State *L = sp_loop_state();
  connecting a = {sp_stream_owner(s), s, status, 0};
  a.c->attempt = NULL;
  if (status == 0) {
    if (sp_run_protected(L, connected_tramp, &a) == LUA_OK) return;
    if (a.c->stream == s) {
      sp_stream_lose_protected(L, s);
      return;
    }
    a.code = UV_ENOMEM;
  }
  sp_stream_set_owner(s, NULL, NULL);
  if (a.opened) /* its transport goes with it (closed_cb) */
    sp_stream_lose_protected(L, s);
  else
    sp_stream_discard(s);
  sp_run_protected(L, next_tramp, &a);
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  conn_op *op = req->data;
  connector *c = op->c;
  free(op);
  if (c == NULL) {
    uv_freeaddrinfo(res);
    return;
  }
  c->gai = NULL;
  if (status < 0) {
    connecting a = {c, NULL, status, 0};
    sp_run_protected(sp_loop_state(), fail_tramp, &a);
    return;
  }
  c->ai = c->ai_next = res;
  connecting a = {c, NULL, UV_EAI_NONAME, 0};
  sp_run_protected(sp_loop_state(), next_tramp, &a);
}

/* (connector) -> (): the connect took too long: fail it with a
** TimeoutError. Protected (sp_run_protected). */
static int timeout_tramp(lua_State *L) {
  connector *c = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
  push_dest(L, c, lua_gettop(L));
  lua_pushfstring(L,
                  "User timeout caused connection failure: connecting "
                  "to %s took longer than %f seconds.",
                  lua_tostring(L, -1), (LUAI_UACNUMBER)c->timeout);
  sp_errortype_make(L, "reactor.TimeoutError", lua_tostring(L, -1));
  lua_replace(L, -4);
  lua_pop(L, 2);
  conn_failed(L, c);
  return 0;
}

static void timeout_cb(uv_timer_t *t) {
  conn_op *op = t->data;
  sp_run_protected(sp_loop_state(), timeout_tramp, op->c);
}

/* At exit a connecting connector drops its attempt; the factory is not
** told (the process is ending). */
static void conn_shutdown(lua_State *L, sp_live *n) {
  connector *c = (connector *)((char *)n - offsetof(connector, live));
  conn_cleanup(c);
  c->state = C_DISCONNECTED;
  luaL_unref(L, LUA_REGISTRYINDEX, c->ref);
  c->ref = LUA_NOREF;
  sp_live_remove(&c->live);
}

/* [-0, +0, e] factory:doStart() the first time the Connector at cidx
** connects (twisted BaseConnector.connect). Nothing of the attempt exists
** yet, so an error propagates to the caller (as in Twisted) with nothing
** to release; the factory counts as started only once doStart returned,
** and the connector stays disconnected (Twisted leaves it "connecting"). */
static void conn_start_factory(lua_State *L, connector *c, int cidx) {
  if (c->factory_started) return;
  lua_getiuservalue(L, cidx, CV_FACTORY);
  if (lua_getfield(L, -1, "doStart") == LUA_TNIL) {
    lua_pop(L, 2);
  } else {
    lua_insert(L, -2);
    lua_call(L, 1, 0);
  }
  c->factory_started = 1;
}

/* Start resolving c's host (a name) to try each address in turn; 0 or a
** libuv error. */
static int conn_resolve(connector *c, const char *host) {
  conn_op *op = calloc(1, sizeof *op);
  struct addrinfo hints;
  char portstr[16];
  int r;
  if (op == NULL) return UV_ENOMEM;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(portstr, sizeof portstr, "%d", c->port);
  op->c = c;
  op->u.gai.data = op;
  r = uv_getaddrinfo(sp_loop(), &op->u.gai, gai_cb, host, portstr, &hints);
  if (r < 0)
    free(op);
  else
    c->gai = op;
  return r;
}

/* Arm the connect timeout of c, if it has one. */
static void conn_arm_timeout(connector *c) {
  conn_op *op;
  if (c->timeout <= 0) return;
  op = calloc(1, sizeof *op);
  if (op == NULL) return;
  op->c = c;
  op->u.timer.data = op;
  uv_timer_init(sp_loop(), &op->u.timer);
  sp_timer_start(&op->u.timer, timeout_cb,
                 (uint64_t)(c->timeout * 1000.0 + 0.5));
  c->timer = op;
}

/* Begin the attempt proper (twisted _makeTransport): a Unix connect, a
** TCP connect to an IP literal, or name resolution first. A failure found
** now is reported on the next loop turn, after startedConnecting. */
static void conn_begin(lua_State *L, connector *c, int cidx) {
  const char *host;
  int r = 0;
  lua_getiuservalue(L, cidx, CV_HOST);
  host = lua_tostring(L, -1);
  if (c->kind == SP_STREAM_UNIX) {
    c->attempt = sp_stream_connect_unix(host, c, conn_done, &r);
  } else {
    struct sockaddr_storage sa;
    if (sp_addr_parse(host, c->port, &sa) == 0)
      r = conn_attempt(c, (struct sockaddr *)&sa);
    else
      r = conn_resolve(c, host);
  }
  lua_pop(L, 1);
  if (r < 0)
    conn_fail_later(c, r);
  else
    conn_arm_timeout(c);
}

/* [-0, +0, e] Begin an attempt for the Connector at cidx (twisted
** BaseConnector.connect): doStart (see conn_start_factory), then the
** attempt, which pins the Connector (registry ref, live registry) until
** it connects or fails, then factory:startedConnecting(connector). As in
** Twisted that last call is not protected: what it raises reaches the
** caller of connectTCP (or connector:connect()) while the attempt goes on
** and ends as usual. */
static void conn_start(lua_State *L, connector *c, int cidx) {
  conn_start_factory(L, c, cidx);
  c->state = C_CONNECTING;
  lua_pushvalue(L, cidx);
  c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  c->live.shutdown = conn_shutdown;
  sp_live_add(&c->live);
  conn_begin(L, c, cidx);
  lua_getiuservalue(L, cidx, CV_FACTORY);
  if (lua_getfield(L, -1, "startedConnecting") != LUA_TNIL) {
    lua_pushvalue(L, -2);
    lua_pushvalue(L, cidx);
    lua_call(L, 2, 0);
  } else {
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static connector *check_connector(lua_State *L) {
  return sp_class_check(L, 1, CONNECTOR_MT);
}

/* connector:connect(): start a new attempt (from clientConnectionLost or
** clientConnectionFailed to reconnect). Raises unless disconnected.
** twisted BaseConnector.connect. */
static int connector_connect(lua_State *L) {
  connector *c = check_connector(L);
  if (c->state != C_DISCONNECTED)
    return luaL_error(L, "can't connect in this state");
  conn_start(L, c, 1);
  return 0;
}

/* connector:stopConnecting(): abandon the attempt in progress; the factory
** gets clientConnectionFailed with UserError. Raises NotConnectingError
** unless connecting. twisted BaseConnector.stopConnecting. */
static int connector_stopConnecting(lua_State *L) {
  connector *c = check_connector(L);
  if (c->state != C_CONNECTING)
    return sp_errortype_raise(L, "reactor.NotConnectingError", NULL,
                              "we're not trying to connect");
  sp_errortype_make(L, "reactor.UserError", "User aborted connection.");
  conn_failed(L, c);
  return 0;
}

/* connector:disconnect(): stop connecting, or lose the connection.
** twisted BaseConnector.disconnect. */
static int connector_disconnect(lua_State *L) {
  connector *c = check_connector(L);
  if (c->state == C_CONNECTING) return connector_stopConnecting(L);
  if (c->state == C_CONNECTED) {
    lua_getiuservalue(L, 1, CV_TRANSPORT);
    lua_getfield(L, -1, "loseConnection");
    lua_insert(L, -2);
    lua_call(L, 1, 0);
  }
  return 0;
}

/* connector:getDestination() -> an address (addr.h) of host and port as
** given to connectTCP (host may be a name), or {type = "UNIX", name =
** path}. twisted BaseConnector.getDestination. */
static int connector_getDestination(lua_State *L) {
  connector *c = check_connector(L);
  lua_getiuservalue(L, 1, CV_HOST);
  if (c->kind == SP_STREAM_TCP)
    sp_addr_push_hostport(L, "TCP", lua_tostring(L, -1), c->port);
  else
    sp_addr_push_unix(L, lua_tostring(L, -1));
  return 1;
}

/* connector.state -> "disconnected", "connecting" or "connected", as
** Twisted's BaseConnector.state. */
static int connector_getstate(lua_State *L) {
  static const char *const states[] = {"disconnected", "connecting",
                                       "connected"};
  lua_pushstring(L, states[check_connector(L)->state]);
  return 1;
}

/* connector.factory: the ClientFactory given to connectTCP. */
static int connector_getfactory(lua_State *L) {
  check_connector(L);
  lua_getiuservalue(L, 1, CV_FACTORY);
  return 1;
}

/* connector.transport: the transport of the current connection, or nil. */
static int connector_gettransport(lua_State *L) {
  check_connector(L);
  lua_getiuservalue(L, 1, CV_TRANSPORT);
  return 1;
}

static const luaL_Reg connector_getters[] = {
    {"state", connector_getstate},
    {"factory", connector_getfactory},
    {"transport", connector_gettransport},
    {NULL, NULL}};

static int connector_gc(lua_State *L) {
  connector *c = check_connector(L);
  conn_cleanup(c);
  sp_live_remove(&c->live);
  return 0;
}

static int connector_tostring(lua_State *L) {
  connector *c = check_connector(L);
  push_dest(L, c, 1);
  lua_pushfstring(L, "<Connector %s>", lua_tostring(L, -1));
  return 1;
}

static const luaL_Reg connector_methods[] = {
    {"connect", connector_connect},
    {"disconnect", connector_disconnect},
    {"stopConnecting", connector_stopConnecting},
    {"getDestination", connector_getDestination},
    {NULL, NULL}};

static const luaL_Reg connector_meta[] = {
    {"__gc", connector_gc}, {"__tostring", connector_tostring}, {NULL, NULL}};

/* [-0, +1, m] A new Connector with factory at fidx, target at hidx. */
static connector *connector_new(lua_State *L, int kind, int hidx, int fidx,
                                double timeout) {
  connector *c = lua_newuserdatauv(L, sizeof *c, CV_N - 1);
  memset(c, 0, sizeof *c);
  c->kind = kind;
  c->ref = LUA_NOREF;
  c->timeout = timeout;
  luaL_setmetatable(L, CONNECTOR_MT);
  lua_pushvalue(L, fidx);
  lua_setiuservalue(L, -2, CV_FACTORY);
  lua_pushvalue(L, hidx);
  lua_setiuservalue(L, -2, CV_HOST);
  return c;
}

static double check_timeout(lua_State *L, int idx) {
  lua_Number t = luaL_optnumber(L, idx, DEFAULT_TIMEOUT);
  luaL_argcheck(L, t > 0, idx, "timeout must be a positive number of seconds");
  return t;
}

/* Read bindAddress {host, port} or {host = h, port = p} at idx into c. */
static void check_bind(lua_State *L, int idx, connector *c) {
  const char *host;
  lua_Integer port;
  luaL_argexpected(L, lua_istable(L, idx), idx, "table {host, port}");
  sp_addr_pushfields(L, idx);
  host = lua_tostring(L, -2);
  port = lua_isnil(L, -1) ? 0 : lua_tointeger(L, -1);
  if (host == NULL || port < 0 || port > 65535 ||
      sp_addr_parse(host, (int)port, &c->bind) != 0)
    luaL_argerror(L, idx, "bindAddress must be {IP address, port}");
  c->has_bind = 1;
  lua_pop(L, 2);
}

/* reactor.connectTCP(host, port, factory[, timeout][, bindAddress])
**   -> Connector
** Connect to host (a name, resolved with getaddrinfo off the loop thread,
** or an IPv4/IPv6 literal) at port, trying each resolved address in turn.
** timeout: seconds (default 30), after which the factory gets
** clientConnectionFailed with reactor.TimeoutError. bindAddress: local
** {host, port}. Failures reach clientConnectionFailed as
** ConnectionRefusedError, DNSLookupError, TimeoutError or ConnectError,
** whose messages name the address. twisted IReactorTCP.connectTCP. */
static int tcp_connectTCP(lua_State *L) {
  lua_settop(L, 5);
  return sp_tcp_connect(L, NULL, 0);
}

int sp_tcp_connect(lua_State *L, sp_tcp_setup_fn setup, int arg) {
  connector *c;
  int port;
  double timeout;
  if (setup != NULL) arg = lua_absindex(L, arg);
  luaL_checkstring(L, 1);
  luaL_argcheck(L, lua_rawlen(L, 1) > 0, 1, "host must not be empty");
  port = check_portnum(L, 2);
  /* Port 0 means "any port" to listen on; to connect it names no port
  ** (the kernel refuses it): say so at the call. */
  luaL_argcheck(L, port != 0, 2,
                "port 0 cannot be connected to (0 means any port only "
                "when listening)");
  check_factory(L, 3);
  timeout = check_timeout(L, 4);
  c = connector_new(L, SP_STREAM_TCP, 1, 3, timeout);
  c->port = port;
  if (!lua_isnoneornil(L, 5)) check_bind(L, 5, c);
  if (setup != NULL) {
    c->setup = setup;
    lua_pushvalue(L, arg);
    lua_setiuservalue(L, -2, CV_SETUP);
  }
  conn_start(L, c, lua_gettop(L));
  return 1;
}

/* reactor.connectUNIX(path, factory[, timeout]) -> Connector
** Connect to the Unix socket at path; as connectTCP otherwise (a missing
** path fails with ConnectError code "ENOENT"). twisted
** IReactorUNIX.connectUNIX. */
static int tcp_connectUNIX(lua_State *L) {
  connector *c;
  double timeout;
  luaL_checkstring(L, 1);
  check_factory(L, 2);
  timeout = check_timeout(L, 3);
  c = connector_new(L, SP_STREAM_UNIX, 1, 2, timeout);
  conn_start(L, c, lua_gettop(L));
  return 1;
}

/* [-0, +1, m] The first address of a lookup, as a string. */
static void push_first_address(lua_State *L, const struct addrinfo *res) {
  char buf[SP_ADDR_HOSTLEN];
  sp_addr_format(res->ai_addr, buf);
  lua_pushstring(L, buf);
}

/* reactor.resolve(name) -> Deferred of an IPv4 address string, as
** twisted's reactor.resolve (gethostbyname: IPv4 only); an IP literal
** (IPv6 too) fires at once. Resolution runs on libuv's thread pool
** (uv_getaddrinfo), never blocking the loop. Fails with DNSLookupError
** naming the name. */
static int tcp_resolve(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  struct sockaddr_storage sa;
  if (sp_addr_parse(name, 0, &sa) == 0) {
    sp_deferred_new(L);
    sp_deferred_callback(L, -1, 1);
    return 1;
  }
  sp_resolve_start(L, 1, NULL, AF_INET, push_first_address);
  return 1;
}

/* ------------------------------------------- TCP options of transports */

/* The open TCP stream behind the transport at 1, or raise. */
static sp_stream *check_tcp(lua_State *L) {
  sp_stream *s = sp_stream_check(L, 1);
  if (s == NULL) /* the method is named, as for a bad argument */
    sp_argerror(L, 1, "attempt to use a closed transport", SP_TRANSPORT_MT);
  if (sp_stream_kind(s) != SP_STREAM_TCP)
    luaL_error(L, "not a TCP transport (Unix sockets have no TCP options)");
  return s;
}

/* Set (set != 0, to the truth of argument 2) or get the boolean socket
** option level/name of the TCP transport at 1. */
static int sockopt(lua_State *L, int level, int name, int set) {
  sp_stream *s = check_tcp(L);
  uv_os_fd_t fd;
  int v = lua_toboolean(L, 2);
  socklen_t len = sizeof v;
  if (sp_stream_fileno(s, &fd) != 0)
    return sp_argerror(L, 1, "attempt to use a closed transport",
                       SP_TRANSPORT_MT);
  if (set) {
    if (setsockopt(fd, level, name, &v, len) != 0)
      return luaL_error(L, "setsockopt: %s", strerror(errno));
    return 0;
  }
  if (getsockopt(fd, level, name, &v, &len) != 0)
    return luaL_error(L, "getsockopt: %s", strerror(errno));
  lua_pushboolean(L, v != 0);
  return 1;
}

/* t:setTcpNoDelay(enabled): TCP_NODELAY (Nagle off). Raises on a closed
** or non-TCP transport. twisted tcp.Connection.setTcpNoDelay. */
static int transport_setTcpNoDelay(lua_State *L) {
  return sockopt(L, IPPROTO_TCP, TCP_NODELAY, 1);
}

/* t:setTcpKeepAlive(enabled): SO_KEEPALIVE with the system's timings,
** as twisted tcp.Connection.setTcpKeepAlive. */
static int transport_setTcpKeepAlive(lua_State *L) {
  return sockopt(L, SOL_SOCKET, SO_KEEPALIVE, 1);
}

/* t:getTcpNoDelay(), t:getTcpKeepAlive() -> boolean. */
static int transport_getTcpNoDelay(lua_State *L) {
  return sockopt(L, IPPROTO_TCP, TCP_NODELAY, 0);
}

/* t:getTcpKeepAlive() -> boolean: SO_KEEPALIVE is on. Raises on a closed
** or non-TCP transport. twisted tcp.Connection.getTcpKeepAlive. */
static int transport_getTcpKeepAlive(lua_State *L) {
  return sockopt(L, SOL_SOCKET, SO_KEEPALIVE, 0);
}

static const luaL_Reg transport_tcp_methods[] = {
    {"setTcpNoDelay", transport_setTcpNoDelay},
    {"setTcpKeepAlive", transport_setTcpKeepAlive},
    {"getTcpNoDelay", transport_getTcpNoDelay},
    {"getTcpKeepAlive", transport_getTcpKeepAlive},
    {NULL, NULL}};

static const luaL_Reg tcp_funcs[] = {{"resolve", tcp_resolve},
                                     {"listenTCP", tcp_listenTCP},
                                     {"connectTCP", tcp_connectTCP},
                                     {"listenUNIX", tcp_listenUNIX},
                                     {"adoptStreamPort", tcp_adoptStreamPort},
                                     {"connectUNIX", tcp_connectUNIX},
                                     {NULL, NULL}};

/* [-0, +0, e] The inspector's row (inspect.h) for a listening port:
** its address (port:getHost()) and its factory's class. */
typedef struct rows_arg {
  lua_State *L;
  int t;
} rows_arg;

static void listener_row(sp_live *n, void *arg) {
  lua_State *L = ((rows_arg *)arg)->L;
  int t = ((rows_arg *)arg)->t;
  listener *ls = (listener *)((char *)n - offsetof(listener, live));
  int top = lua_gettop(L);
  if (n->shutdown != listener_shutdown || ls->port == NULL ||
      ls->port->ref == LUA_NOREF)
    return;
  luaL_checkstack(L, 8, NULL);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, ls->port->kind == SP_STREAM_TCP ? "tcp" : "unix");
  lua_setfield(L, -2, "transport");
  lua_pushliteral(L, "port");
  lua_setfield(L, -2, "kind");
  lua_rawgeti(L, LUA_REGISTRYINDEX, ls->port->ref);
  if (lua_getiuservalue(L, -1, PV_FACTORY) != LUA_TNIL &&
      lua_getmetatable(L, -1) && lua_getfield(L, -1, "__name") == LUA_TSTRING)
    lua_setfield(L, top + 1, "protocol");
  lua_settop(L, top + 2);
  lua_getfield(L, -1, "getHost");
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  lua_setfield(L, -2, "host");
  lua_rawseti(L, t, (lua_Integer)lua_rawlen(L, t) + 1);
}

/* The provider of the listening ports' rows. */
static void port_rows(lua_State *L, int t) {
  rows_arg a = {L, t};
  sp_live_each(listener_row, &a);
}

int luaopen_spindle__tcp(lua_State *L) {
  sp_stream_init(L);
  sp_inspect_register("port", port_rows);
  sp_stream_add_methods(L, transport_tcp_methods);
  sp_class_new(L, PORT_MT, port_methods, port_meta);
  sp_class_newx(L, CONNECTOR_MT, connector_methods, connector_meta,
                connector_getters);
  luaL_newlib(L, tcp_funcs);
  sp_errortype_push(L, "reactor.NotConnectingError");
  lua_setfield(L, -2, "NotConnectingError");
  sp_errortype_push(L, "reactor.ConnectionAborted");
  lua_setfield(L, -2, "ConnectionAborted");
  return 1;
}
