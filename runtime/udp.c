/*
** udp.c: UDP ports (module spindle._udp, part of spindle.reactor):
** reactor.listenUDP / reactor.listenMulticast and the Port they return,
** the transport of a DatagramProtocol.
**
** Follows twisted.internet.udp.Port and MulticastPort on uv_udp_t.
**
** Lifetime: the Lua object is a small userdata (a "box") pointing at a
** udpport in C memory that holds the uv_udp_t. While the handle is open it
** holds a registry reference to the box (so the box and, through its user
** values, the protocol stay alive); the close callback drops that
** reference, calls protocol:doStop(), fires the stopListening Deferred and
** frees the C memory. A box whose port is gone answers methods with
** "calling 'getHost' on bad self (attempt to use a closed transport)".
**
** Hot path: one receive buffer of maxPacketSize bytes per port, allocated
** at listen time and reused for every datagram (libuv reads into it, the
** datagram is copied once into the Lua string handed to datagramReceived).
** Writes try uv_udp_try_send first; only when the socket buffer is full is
** the datagram copied and queued (and dropped past SEND_QUEUE_MAX, as a
** full kernel buffer would drop it).
*/
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <uv.h>

#include "addr.h"
#include "core.h"
#include "defer.h"
#include "failure.h"
#include "inspect.h"
#include "loop.h"

#define PORT_MT "spindle.UDPPort"

/* Datagrams queued behind a full socket buffer past this many bytes are
** dropped. */
#define SEND_QUEUE_MAX (4 * 1024 * 1024)

/* Largest maxPacketSize accepted (bytes). */
#define MAX_PACKET_LIMIT (16 * 1024 * 1024)

/* User values of a port box. */
enum { UV_PROTOCOL = 1, UV_STOPPED = 2, PORT_NUV = 2 };

typedef struct udpport {
  uv_udp_t handle;      /* handle.data points back here */
  int ref;              /* registry ref to the box; LUA_NOREF if none */
  int closing;          /* uv_close was called */
  int connected;        /* connect() was called */
  int family;           /* AF_INET or AF_INET6 */
  size_t maxPacketSize; /* bytes */
  char *rbuf;           /* the reused receive buffer, maxPacketSize */
  sp_live live;         /* in loop.c's live registry while open */
} udpport;

typedef struct portbox {
  udpport *p; /* NULL once the port is closed */
} portbox;

typedef struct sendreq {
  uv_udp_send_t req;
  char data[];
} sendreq;

/* ---- addresses ------------------------------------------------------- */

/* Parse an IP literal (or "<broadcast>", Twisted's name for the IPv4
** broadcast address) and port into ss (addr.h). Returns 0 or a libuv
** error. */
static int addr_parse(const char *host, int port, struct sockaddr_storage *ss) {
  if (strcmp(host, "<broadcast>") == 0) host = "255.255.255.255";
  return sp_addr_parse(host, port, ss);
}

/* [-0, +0, v] An argument error: of a port method (cls = PORT_MT, named
** and counted as `port:name(...)` even through pcall: sp_argerror), or
** of a plain function (cls = NULL: luaL_argerror). Never returns. */
static int arg_error(lua_State *L, int idx, const char *msg, const char *cls) {
  if (cls != NULL) return sp_argerror(L, idx, msg, cls);
  return luaL_argerror(L, idx, msg);
}

/* [-0, +0, v] luaL_typeerror through arg_error. */
static int type_error(lua_State *L, int idx, const char *tname,
                      const char *cls) {
  if (cls != NULL) return sp_typeerror(L, idx, tname, cls);
  return luaL_typeerror(L, idx, tname);
}

/* [-0, +0, e] luaL_checkinteger for argument idx of a port method. */
static lua_Integer method_integer(lua_State *L, int idx) {
  int isnum;
  lua_Integer n = lua_tointegerx(L, idx, &isnum);
  if (!isnum) {
    if (lua_isnumber(L, idx))
      arg_error(L, idx, "number has no integer representation", PORT_MT);
    type_error(L, idx, "number", PORT_MT);
  }
  return n;
}

/* [-0, +0, e] luaL_checkstring for argument idx of a port method. */
static const char *method_string(lua_State *L, int idx) {
  const char *str = lua_tostring(L, idx);
  if (str == NULL) type_error(L, idx, "string", PORT_MT);
  return str;
}

/* [-0, +0, e] Check that the value at idx is a port number (0..65535):
** an integer, or a string holding one, as luaL_checkinteger takes it.
** cls: PORT_MT in a port method, NULL in a plain function. */
static int check_portnum(lua_State *L, int idx, const char *cls) {
  lua_Integer n;
  int isnum;
  n = lua_tointegerx(L, idx, &isnum);
  if (!isnum) {
    if (lua_isnumber(L, idx))
      arg_error(L, idx, "number has no integer representation", cls);
    type_error(L, idx, "integer", cls);
  }
  if (n < 0 || n > 65535) arg_error(L, idx, "port out of range", cls);
  return (int)n;
}

/* [-0, +0, e] Read an address table ({host = h, port = n} or {h, n}) at
** idx into ss, raising errors that name argument idx. Returns the host. */
static const char *check_addr(lua_State *L, int idx,
                              struct sockaddr_storage *ss) {
  const char *host;
  int port, rc;
  if (lua_type(L, idx) != LUA_TTABLE)
    type_error(L, idx, "address table", PORT_MT);
  sp_addr_pushfields(L, idx);
  host = lua_tostring(L, -2);
  if (host == NULL || lua_type(L, -2) != LUA_TSTRING)
    arg_error(L, idx, "address host must be a string", PORT_MT);
  if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 ||
      lua_tointeger(L, -1) > 65535)
    arg_error(L, idx, "address port must be an integer in 0..65535", PORT_MT);
  port = (int)lua_tointeger(L, -1);
  lua_pop(L, 2); /* host stays alive: it is in the table at idx */
  rc = addr_parse(host, port, ss);
  if (rc != 0)
    sp_errortype_raise(L, "reactor.InvalidAddressError", "EINVAL",
                       "Invalid address %s: not an IPv4 or IPv6 address", host);
  return host;
}

/* ---- port lifetime ----------------------------------------------------- */

static void port_free(udpport *p) {
  free(p->rbuf);
  free(p);
}

/* [-0, +0, -] Take p out of the live registry. */
static void port_unlink(udpport *p) {
  sp_live_remove(&p->live);
}

/* Protected part of the close callback: [box] -> doStop, fire Deferred.
** Errors of doStop are logged; the Deferred fires regardless. */
static int port_closed_lua(lua_State *L) {
  lua_getiuservalue(L, 1, UV_PROTOCOL);
  lua_getfield(L, -1, "doStop");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 2);
  } else {
    lua_insert(L, -2);
    if (sp_pcall(L, 1, 0) != LUA_OK) {
      sp_log_failure(L, -1, NULL);
      lua_pop(L, 1);
    }
  }
  if (lua_getiuservalue(L, 1, UV_STOPPED) != LUA_TNIL &&
      sp_deferred_is(L, -1)) {
    lua_pushnil(L);
    sp_deferred_callback(L, -2, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

/* uv_close callback: the port is gone. Tell Lua (doStop, the
** stopListening Deferred) unless the process is shutting down, then free.
** Follows twisted udp.Port.connectionLost. */
static void port_closed(uv_handle_t *h) {
  udpport *p = h->data;
  lua_State *L = sp_loop_state();
  port_unlink(p);
  if (p->ref != LUA_NOREF && L != NULL) {
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref);
    luaL_unref(L, LUA_REGISTRYINDEX, p->ref);
    p->ref = LUA_NOREF;
    ((portbox *)lua_touserdata(L, -1))->p = NULL;
    lua_pushcfunction(L, port_closed_lua);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      sp_log_failure(L, -1, "Error while closing a UDP port:");
    }
    lua_settop(L, top);
  }
  port_free(p);
}

/* Start closing p (idempotent). */
static void port_close(udpport *p) {
  if (p->closing) return;
  p->closing = 1;
  port_unlink(p);
  uv_close((uv_handle_t *)&p->handle, port_closed);
}

/* Live-registry shutdown (loop.h): close the port without calling Lua
** (the process is ending); the loop's final run calls port_closed, which
** frees it. */
static void port_shutdown(lua_State *L, sp_live *n) {
  udpport *p = (udpport *)((char *)n - offsetof(udpport, live));
  if (p->ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref);
    ((portbox *)lua_touserdata(L, -1))->p = NULL;
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, p->ref);
    p->ref = LUA_NOREF;
  }
  port_close(p);
}

/* [-0, +0, e] The open port behind the box at index 1, or raise. */
static udpport *port_check(lua_State *L) {
  portbox *b = sp_class_check(L, 1, PORT_MT);
  if (b->p == NULL || b->p->closing)
    sp_argerror(L, 1, "attempt to use a closed transport", PORT_MT);
  return b->p;
}

/* ---- receiving --------------------------------------------------------- */

static void port_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  udpport *p = h->data;
  (void)suggested;
  buf->base = p->rbuf;
  buf->len = p->maxPacketSize;
}

/* (protocol, name, args...): protocol[name](protocol, args...), so that
** the method lookup (a protocol's __index may raise) is inside
** port_callback's protected call as well. A missing method is called as
** nil, and that error is logged like any other. */
static int callback_tramp(lua_State *L) {
  int n = lua_gettop(L);
  lua_getfield(L, 1, lua_tostring(L, 2));
  lua_replace(L, 2);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 1);
  lua_replace(L, 2);
  lua_replace(L, 1); /* fn, protocol, args... */
  lua_call(L, n - 1, 0);
  return 0;
}

/* [-nargs, +0, -] Call protocol:name(...) with the nargs values on top of
** the stack, under sp_pcall; an error is logged with its traceback. The
** box is at index `box`. */
static void port_callback(lua_State *L, int box, const char *name, int nargs) {
  lua_pushcfunction(L, callback_tramp);
  lua_getiuservalue(L, box, UV_PROTOCOL);
  lua_pushstring(L, name);
  lua_rotate(L, -nargs - 3, 3);
  if (sp_pcall(L, nargs + 2, 0) != LUA_OK) {
    sp_log_failure(L, -1, NULL);
    lua_pop(L, 1);
  }
}

/* uv_udp_recv_cb: a datagram (truncated to maxPacketSize, as recvfrom
** truncates in Twisted) goes to protocol:datagramReceived(data, addr).
** ECONNREFUSED (the ICMP error of a connected port) goes to
** protocol:connectionRefused(); other receive errors are transient for
** UDP and ignored, as Twisted's doRead does. */
/* What port_recv hands its Lua half. */
typedef struct recv_args {
  udpport *p;
  ssize_t nread;
  const uv_buf_t *buf;
  const struct sockaddr *addr;
} recv_args;

/* (recv_args) -> (): port_recv's Lua half, protected there (the string
** and the address table may raise a memory error). */
static int recv_tramp(lua_State *L) {
  recv_args *a = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->p->ref);
  if (a->nread < 0) {
    port_callback(L, 2, "connectionRefused", 0);
  } else {
    lua_pushlstring(L, a->buf->base, (size_t)a->nread);
    sp_addr_push(L, "UDP", a->addr);
    port_callback(L, 2, "datagramReceived", 2);
  }
  return 0;
}

static void port_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                      const struct sockaddr *addr, unsigned flags) {
  recv_args a = {h->data, nread, buf, addr};
  lua_State *L = sp_loop_state();
  (void)flags;
  if (a.p->ref == LUA_NOREF || a.p->closing) return;
  if (nread == 0 && addr == NULL) return; /* nothing more to read */
  if (nread < 0 && !(nread == UV_ECONNREFUSED && a.p->connected)) return;
  sp_run_protected(L, recv_tramp, &a);
}

/* ---- listenUDP ---------------------------------------------------------- */

/* [-0, +0, e] Raise CannotListenError for libuv error rc. */
static int raise_cannot_listen(lua_State *L, const char *iface, int port,
                               int rc) {
  return sp_errortype_raise(L, "reactor.CannotListenError", uv_err_name(rc),
                            "Couldn't listen on %s:%d: %s (%s).",
                            *iface ? iface : "any", port, uv_strerror(rc),
                            uv_err_name(rc));
}

/* Bind the box's new port and start reading. Returns 0 or a libuv error;
** on error the handle is closed (and freed by its close callback). */
static int port_open(udpport *p, const struct sockaddr *sa, unsigned flags) {
  int rc = uv_udp_init_ex(sp_loop(), &p->handle, (unsigned)p->family);
  if (rc != 0) {
    port_free(p);
    return rc;
  }
  p->handle.data = p;
  rc = uv_udp_bind(&p->handle, sa, flags);
  if (rc == 0) rc = uv_udp_recv_start(&p->handle, port_alloc, port_recv);
  if (rc != 0) port_close(p);
  return rc;
}

/* [-0, +0, e] Check listenUDP's arguments (listenMulticast's when
** multicast is set) into ss, *maxp and *reuse; the stack is left as
** (port, protocol, interface, maxPacketSize, listenMultiple). Returns the
** interface (kept alive at index 3). */
static const char *listen_args(lua_State *L, int multicast,
                               struct sockaddr_storage *ss, lua_Integer *maxp,
                               int *reuse) {
  int portnum = check_portnum(L, 1, NULL);
  const char *iface;
  /* listenUDP(port, protocol, maxPacketSize): each optional argument may
  ** be left out on its own, as API.md's "[, interface][, maxPacketSize]". */
  if (lua_type(L, 3) == LUA_TNUMBER && lua_isnoneornil(L, 4)) {
    lua_pushnil(L);
    lua_insert(L, 3);
  }
  iface = luaL_optstring(L, 3, "");
  *maxp = luaL_optinteger(L, 4, 8192);
  *reuse = multicast && lua_toboolean(L, 5);
  luaL_argexpected(
      L, lua_type(L, 2) == LUA_TTABLE || lua_type(L, 2) == LUA_TUSERDATA, 2,
      "protocol");
  if (lua_getfield(L, 2, "makeConnection") == LUA_TNIL)
    luaL_argerror(L, 2, "DatagramProtocol expected (no makeConnection)");
  lua_pop(L, 1);
  luaL_argcheck(L, *maxp > 0 && *maxp <= MAX_PACKET_LIMIT, 4,
                "maxPacketSize out of range");
  if (addr_parse(*iface ? iface : "0.0.0.0", portnum, ss) != 0)
    sp_errortype_raise(L, "reactor.InvalidAddressError", "EINVAL",
                       "Invalid address %s: not an IPv4 or IPv6 address",
                       iface);
  lua_settop(L, 5); /* keep `iface` (index 3) alive */
  return iface;
}

/* [-0, +0, e] A new port bound to ss and reading; raises "not enough
** memory" or CannotListenError (nothing to release then). */
static udpport *port_make(lua_State *L, const struct sockaddr_storage *ss,
                          lua_Integer maxp, int reuse, const char *iface) {
  udpport *p = calloc(1, sizeof(*p));
  int rc;
  if (p != NULL) p->rbuf = malloc((size_t)maxp);
  if (p == NULL || p->rbuf == NULL) {
    free(p);
    luaL_error(L, "not enough memory");
  }
  p->ref = LUA_NOREF;
  p->family = ss->ss_family;
  p->maxPacketSize = (size_t)maxp;
  rc = port_open(p, (const struct sockaddr *)ss, reuse ? UV_UDP_REUSEADDR : 0);
  if (rc != 0) raise_cannot_listen(L, iface, (int)lua_tointeger(L, 1), rc);
  return p;
}

/* Shared body of listenUDP and listenMulticast: the port's box (index 6)
** owns p from here; protocol:makeConnection(port) runs (startProtocol),
** and what it raises closes the port and propagates. */
static int listen_common(lua_State *L, int multicast) {
  struct sockaddr_storage ss;
  lua_Integer maxp;
  int reuse;
  const char *iface = listen_args(L, multicast, &ss, &maxp, &reuse);
  portbox *b = lua_newuserdatauv(L, sizeof(portbox), PORT_NUV);
  udpport *p;
  b->p = NULL;
  luaL_setmetatable(L, PORT_MT);
  p = port_make(L, &ss, maxp, reuse, iface);
  b->p = p;
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 6, UV_PROTOCOL);
  lua_pushvalue(L, 6);
  p->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  p->live.shutdown = port_shutdown;
  sp_live_add(&p->live);
  lua_getfield(L, 2, "makeConnection");
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 6);
  if (sp_pcall(L, 2, 0) != LUA_OK) {
    port_close(p);
    return lua_error(L);
  }
  lua_settop(L, 6);
  return 1;
}

/* reactor.listenUDP(port, protocol[, interface][, maxPacketSize]) -> Port
** Bind a UDP socket on `port` (0..65535; 0 picks a free one) of
** `interface` (an IPv4 or IPv6 literal; default "" = every IPv4 address,
** "::" for every IPv6 one), then call protocol:makeConnection(port), which
** calls protocol:startProtocol(). Datagrams longer than maxPacketSize
** (bytes, default 8192; may be the third argument when interface is left
** out) are truncated to it. Raises CannotListenError
** (with `code`, e.g. "EADDRINUSE") when the bind fails,
** InvalidAddressError for an interface that is not an IP address, and
** bad-argument errors. Loop thread only.
** Follows twisted.internet.interfaces.IReactorUDP.listenUDP; uv_udp_bind. */
static int udp_listenUDP(lua_State *L) {
  return listen_common(L, 0);
}

/* reactor.listenMulticast(port, protocol[, interface][, maxPacketSize]
**                         [, listenMultiple]) -> Port
** listenUDP whose port may also be shared (SO_REUSEADDR) when
** listenMultiple is true, for several listeners of one group.
** Follows twisted IReactorMulticast.listenMulticast. */
static int udp_listenMulticast(lua_State *L) {
  return listen_common(L, 1);
}

/* ---- Port methods -------------------------------------------------------- */

static void port_sent(uv_udp_send_t *req, int status) {
  (void)status; /* UDP: a failed datagram is a lost datagram */
  free(req);
}

/* Queue a copy of the datagram behind a full socket buffer. */
static int port_queue(udpport *p, const char *data, size_t n,
                      const struct sockaddr *sa) {
  sendreq *r;
  uv_buf_t buf;
  int rc;
  if (uv_udp_get_send_queue_size(&p->handle) + n > SEND_QUEUE_MAX) return 0;
  r = malloc(sizeof(*r) + (n ? n : 1));
  if (r == NULL) return 0;
  memcpy(r->data, data, n);
  buf = uv_buf_init(r->data, (unsigned)n);
  rc = uv_udp_send(&r->req, &p->handle, &buf, 1, sa, port_sent);
  if (rc != 0) free(r);
  return rc;
}

/* [-0, +0, e] Family check of Twisted's write(): an IPv4 port writes to
** IPv4 addresses, an IPv6 port to IPv6 ones. */
static void check_family(lua_State *L, udpport *p, const char *host,
                         const struct sockaddr_storage *ss) {
  if (ss->ss_family == p->family) return;
  sp_errortype_raise(L, "reactor.InvalidAddressError", "EINVAL",
                     "Invalid address %s: %s port write() called with %s "
                     "address",
                     host, p->family == AF_INET ? "IPv4" : "IPv6",
                     ss->ss_family == AF_INET ? "an IPv4" : "an IPv6");
}

/* [-0, +0, e] On a connected port, an address given to write() must be
** the connected one (Twisted asserts it). */
static void check_connected_addr(lua_State *L, udpport *p,
                                 struct sockaddr_storage *ss) {
  struct sockaddr_storage peer;
  int len = sizeof(peer), same;
  check_addr(L, 3, ss);
  if (uv_udp_getpeername(&p->handle, (struct sockaddr *)&peer, &len) != 0)
    return;
  if (peer.ss_family != ss->ss_family) {
    same = 0;
  } else if (peer.ss_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&peer;
    struct sockaddr_in *b = (struct sockaddr_in *)ss;
    same =
        a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&peer;
    struct sockaddr_in6 *b = (struct sockaddr_in6 *)ss;
    same = a->sin6_port == b->sin6_port &&
           memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
  }
  if (!same) arg_error(L, 3, "not the connected address", PORT_MT);
}

/* port:write(data[, addr]) -> bytes sent (nil when queued or dropped)
** Send one datagram. addr ({host = ip, port = n} as received, or
** {ip, n}) is required unless connect() was called, and must then be
** absent or the connected address. Raises MessageLengthError when the
** datagram is too long for the socket (EMSGSIZE), InvalidAddressError
** for a host that is not an IP literal of the port's family. On a
** connected port, a refusal (ECONNREFUSED) calls
** protocol:connectionRefused(). Loop thread only.
** Follows twisted udp.Port.write; uv_udp_try_send, then uv_udp_send. */
static int port_write(lua_State *L) {
  udpport *p = port_check(L);
  size_t n;
  const char *data;
  struct sockaddr_storage ss;
  const struct sockaddr *sa = NULL;
  if (lua_type(L, 2) != LUA_TSTRING) /* no number coercion: Twisted raises */
    type_error(L, 2, "string", PORT_MT);
  data = lua_tolstring(L, 2, &n);
  uv_buf_t buf = uv_buf_init((char *)data, (unsigned)n);
  int rc;
  if (!p->connected) {
    const char *host;
    if (lua_isnoneornil(L, 3))
      return arg_error(L, 3,
                       "address table expected, got no value "
                       "(the port is not connected)",
                       PORT_MT);
    host = check_addr(L, 3, &ss);
    check_family(L, p, host, &ss);
    sa = (const struct sockaddr *)&ss;
  } else if (!lua_isnoneornil(L, 3)) {
    check_connected_addr(L, p, &ss);
  }
  if (n > 0xffffffffu)
    rc = UV_EMSGSIZE;
  else
    rc = uv_udp_try_send(&p->handle, &buf, 1, sa);
  if (rc >= 0) {
    lua_pushinteger(L, rc);
    return 1;
  }
  if (rc == UV_EAGAIN || rc == UV_ENOBUFS) rc = port_queue(p, data, n, sa);
  if (rc == 0) return 0;
  if (rc == UV_EMSGSIZE)
    return sp_errortype_raise(L, "reactor.MessageLengthError", "EMSGSIZE",
                              "message too long (%I bytes)", (lua_Integer)n);
  if (rc == UV_ECONNREFUSED) {
    if (p->connected) {
      lua_settop(L, 1);
      port_callback(L, 1, "connectionRefused", 0);
    }
    return 0;
  }
  return luaL_error(L, "write: %s (%s)", uv_strerror(rc), uv_err_name(rc));
}

/* port:connect(host, port)
** Connect the port to one peer: later writes take no address, datagrams
** from other addresses are filtered by the kernel, and an ICMP refusal
** reaches protocol:connectionRefused() (the port stays open). host must
** be an IP literal of the port's family. Raises "already connected" on a
** second call, InvalidAddressError for a bad host.
** Follows twisted udp.Port.connect; uv_udp_connect. */
static int port_connect(lua_State *L) {
  udpport *p = port_check(L);
  const char *host = method_string(L, 2);
  int portnum = check_portnum(L, 3, PORT_MT), rc;
  struct sockaddr_storage ss;
  if (p->connected)
    return luaL_error(L,
                      "already connected, reconnecting is not currently "
                      "supported");
  if (addr_parse(host, portnum, &ss) != 0)
    return sp_errortype_raise(L, "reactor.InvalidAddressError", "EINVAL",
                              "Invalid address %s: not an IPv4 or IPv6 "
                              "address",
                              host);
  check_family(L, p, host, &ss);
  rc = uv_udp_connect(&p->handle, (const struct sockaddr *)&ss);
  if (rc != 0)
    return luaL_error(L, "connect: %s (%s)", uv_strerror(rc), uv_err_name(rc));
  p->connected = 1;
  return 0;
}

/* port:getHost() -> an address (addr.h): {type = "UDP", host = ip, port = n}
** The bound address. Follows twisted udp.Port.getHost; uv_udp_getsockname. */
static int port_getHost(lua_State *L) {
  udpport *p = port_check(L);
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  int rc = uv_udp_getsockname(&p->handle, (struct sockaddr *)&ss, &len);
  if (rc != 0)
    return luaL_error(L, "getHost: %s (%s)", uv_strerror(rc), uv_err_name(rc));
  sp_addr_push(L, "UDP", (const struct sockaddr *)&ss);
  return 1;
}

/* port:stopListening() -> Deferred or nil
** Stop receiving and close the socket. Returns a Deferred fired with nil
** once it is closed and protocol:doStop() (so stopProtocol()) has run; nil
** when the port was already closed or closing. Never raises.
** Follows twisted udp.Port.stopListening; uv_close. */
static int port_stopListening(lua_State *L) {
  portbox *b = sp_class_check(L, 1, PORT_MT);
  if (b->p == NULL || b->p->closing) return 0;
  sp_deferred_new(L);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 1, UV_STOPPED);
  port_close(b->p);
  return 1;
}

/* [-0, +0, e] Raise an error for a failed socket option call. */
static int option_error(lua_State *L, const char *what, int rc) {
  return luaL_error(L, "%s: %s (%s)", what, uv_strerror(rc), uv_err_name(rc));
}

/* Shared body of joinGroup / leaveGroup: returns a Deferred fired with nil,
** or failed with MulticastJoinError naming the group and the reason. */
static int group_change(lua_State *L, uv_membership how) {
  udpport *p = port_check(L);
  const char *group = method_string(L, 2);
  const char *iface = lua_isnoneornil(L, 3) ? "" : method_string(L, 3);
  int rc = uv_udp_set_membership(&p->handle, group, *iface ? iface : NULL, how);
  sp_deferred_new(L);
  if (rc == 0) {
    lua_pushnil(L);
    sp_deferred_callback(L, -2, -1);
  } else {
    lua_pushfstring(L, "%s %s on %s: %s (%s)",
                    how == UV_JOIN_GROUP ? "joinGroup" : "leaveGroup", group,
                    *iface ? iface : "any", uv_strerror(rc), uv_err_name(rc));
    sp_errortype_make(L, "reactor.MulticastJoinError", lua_tostring(L, -1));
    lua_pushstring(L, uv_err_name(rc));
    lua_setfield(L, -2, "code");
    sp_deferred_errback(L, -3, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 1;
}

/* port:joinGroup(group[, interface]) -> Deferred
** Join multicast group `group` (an IP literal) on `interface` (an IP
** literal of a local interface; default: chosen by the kernel). The
** Deferred fires with nil, or fails with MulticastJoinError.
** Follows twisted MulticastMixin.joinGroup; uv_udp_set_membership. */
static int port_joinGroup(lua_State *L) {
  return group_change(L, UV_JOIN_GROUP);
}

/* port:leaveGroup(group[, interface]) -> Deferred: the reverse of
** joinGroup. Follows twisted MulticastMixin.leaveGroup. */
static int port_leaveGroup(lua_State *L) {
  return group_change(L, UV_LEAVE_GROUP);
}

/* Read an integer socket option of the port. */
static int get_sockopt(lua_State *L, udpport *p, int level4, int opt4,
                       int level6, int opt6) {
  uv_os_fd_t fd;
  int v = 0, rc;
  socklen_t len = sizeof(v);
  unsigned char small = 0;
  rc = uv_fileno((uv_handle_t *)&p->handle, &fd);
  if (rc != 0) return option_error(L, "getsockopt", rc);
  if (p->family == AF_INET6)
    rc = getsockopt(fd, level6, opt6, &v, &len);
  else
    rc = getsockopt(fd, level4, opt4, &v, &len);
  if (rc != 0)
    return option_error(L, "getsockopt", uv_translate_sys_error(errno));
  if (len == 1) {
    memcpy(&small, &v, 1);
    v = small;
  }
  return v;
}

/* port:setTTL(ttl): the multicast time-to-live (hops, 1..255).
** Follows twisted MulticastMixin.setTTL; uv_udp_set_multicast_ttl. */
static int port_setTTL(lua_State *L) {
  udpport *p = port_check(L);
  lua_Integer ttl = method_integer(L, 2);
  int rc;
  if (ttl < 1 || ttl > 255) arg_error(L, 2, "ttl must be in 1..255", PORT_MT);
  rc = uv_udp_set_multicast_ttl(&p->handle, (int)ttl);
  if (rc != 0) return option_error(L, "setTTL", rc);
  return 0;
}

/* port:getTTL() -> integer: the multicast time-to-live. */
static int port_getTTL(lua_State *L) {
  udpport *p = port_check(L);
  lua_pushinteger(L, get_sockopt(L, p, IPPROTO_IP, IP_MULTICAST_TTL,
                                 IPPROTO_IPV6, IPV6_MULTICAST_HOPS));
  return 1;
}

/* port:setLoopbackMode(mode): whether multicast sent from this host is
** looped back to it (a boolean or 0/1).
** Follows twisted MulticastMixin.setLoopbackMode; uv_udp_set_multicast_loop. */
static int port_setLoopbackMode(lua_State *L) {
  udpport *p = port_check(L);
  int on = lua_isinteger(L, 2) ? lua_tointeger(L, 2) != 0 : lua_toboolean(L, 2);
  int rc;
  if (lua_isnone(L, 2)) arg_error(L, 2, "value expected", PORT_MT);
  rc = uv_udp_set_multicast_loop(&p->handle, on);
  if (rc != 0) return option_error(L, "setLoopbackMode", rc);
  return 0;
}

/* port:getLoopbackMode() -> 0 or 1. */
static int port_getLoopbackMode(lua_State *L) {
  udpport *p = port_check(L);
  lua_pushinteger(L, get_sockopt(L, p, IPPROTO_IP, IP_MULTICAST_LOOP,
                                 IPPROTO_IPV6, IPV6_MULTICAST_LOOP) != 0);
  return 1;
}

/* port:setBroadcastAllowed(enabled): allow writes to broadcast addresses.
** Follows twisted udp.Port.setBroadcastAllowed; uv_udp_set_broadcast. */
static int port_setBroadcastAllowed(lua_State *L) {
  udpport *p = port_check(L);
  int rc;
  if (lua_isnone(L, 2)) arg_error(L, 2, "value expected", PORT_MT);
  rc = uv_udp_set_broadcast(&p->handle, lua_toboolean(L, 2));
  if (rc != 0) return option_error(L, "setBroadcastAllowed", rc);
  return 0;
}

/* port:getBroadcastAllowed() -> boolean. */
static int port_getBroadcastAllowed(lua_State *L) {
  udpport *p = port_check(L);
  lua_pushboolean(L, get_sockopt(L, p, SOL_SOCKET, SO_BROADCAST, SOL_SOCKET,
                                 SO_BROADCAST) != 0);
  return 1;
}

/* port:setOutgoingInterface(addr): the local interface (an IP literal)
** multicast is sent from. Returns a Deferred fired with nil, as Twisted.
** Follows twisted MulticastMixin.setOutgoingInterface;
** uv_udp_set_multicast_interface. */
static int port_setOutgoingInterface(lua_State *L) {
  udpport *p = port_check(L);
  const char *iface = method_string(L, 2);
  int rc = uv_udp_set_multicast_interface(&p->handle, iface);
  if (rc != 0) return option_error(L, "setOutgoingInterface", rc);
  sp_deferred_new(L);
  lua_pushnil(L);
  sp_deferred_callback(L, -2, -1);
  lua_pop(L, 1);
  return 1;
}

static int port_tostring(lua_State *L) {
  portbox *b = sp_class_check(L, 1, PORT_MT);
  struct sockaddr_storage ss;
  char host[SP_ADDR_HOSTLEN];
  int len = sizeof(ss);
  if (b->p == NULL || b->p->closing ||
      uv_udp_getsockname(&b->p->handle, (struct sockaddr *)&ss, &len) != 0) {
    lua_pushliteral(L, "<UDP port (closed)>");
    return 1;
  }
  lua_pushfstring(L, "<UDP port %d>",
                  sp_addr_format((const struct sockaddr *)&ss, host));
  return 1;
}

/* The port's read-only fields (sp_class_newx getters): maxPacketSize
** (bytes; nil once closed), protocol, connected (boolean: listening) and
** disconnecting. */
static int port_getmaxPacketSize(lua_State *L) {
  portbox *b = sp_class_check(L, 1, PORT_MT);
  if (b->p == NULL) return 0;
  lua_pushinteger(L, (lua_Integer)b->p->maxPacketSize);
  return 1;
}

static int port_getprotocol(lua_State *L) {
  sp_class_check(L, 1, PORT_MT);
  lua_getiuservalue(L, 1, UV_PROTOCOL);
  return 1;
}

static int port_getconnected(lua_State *L) {
  portbox *b = sp_class_check(L, 1, PORT_MT);
  lua_pushboolean(L, b->p != NULL && !b->p->closing);
  return 1;
}

static int port_getdisconnecting(lua_State *L) {
  portbox *b = sp_class_check(L, 1, PORT_MT);
  lua_pushboolean(L, b->p == NULL || b->p->closing);
  return 1;
}

static const luaL_Reg port_getters[] = {
    {"maxPacketSize", port_getmaxPacketSize},
    {"protocol", port_getprotocol},
    {"connected", port_getconnected},
    {"disconnecting", port_getdisconnecting},
    {NULL, NULL}};

static const luaL_Reg port_methods[] = {
    {"write", port_write},
    {"connect", port_connect},
    {"getHost", port_getHost},
    {"stopListening", port_stopListening},
    {"loseConnection", port_stopListening},
    {"joinGroup", port_joinGroup},
    {"leaveGroup", port_leaveGroup},
    {"setTTL", port_setTTL},
    {"getTTL", port_getTTL},
    {"setLoopbackMode", port_setLoopbackMode},
    {"getLoopbackMode", port_getLoopbackMode},
    {"setBroadcastAllowed", port_setBroadcastAllowed},
    {"getBroadcastAllowed", port_getBroadcastAllowed},
    {"setOutgoingInterface", port_setOutgoingInterface},
    {NULL, NULL}};

static const luaL_Reg port_meta[] = {{"__tostring", port_tostring},
                                     {NULL, NULL}};

static const luaL_Reg udp_funcs[] = {{"listenUDP", udp_listenUDP},
                                     {"listenMulticast", udp_listenMulticast},
                                     {NULL, NULL}};

/* spindle._udp: the UDP part of spindle.reactor. */
typedef struct rows_arg {
  lua_State *L;
  int t;
} rows_arg;

/* [-0, +0, e] The inspector's row (inspect.h) for an open UDP port: its
** protocol's class, its address, and the bytes waiting to be sent. */
static void port_row(sp_live *n, void *arg) {
  lua_State *L = ((rows_arg *)arg)->L;
  int t = ((rows_arg *)arg)->t, top = lua_gettop(L);
  udpport *p = (udpport *)((char *)n - offsetof(udpport, live));
  if (n->shutdown != port_shutdown || p->closing || p->ref == LUA_NOREF) return;
  luaL_checkstack(L, 8, NULL);
  lua_createtable(L, 0, 5);
  lua_pushliteral(L, "udp");
  lua_setfield(L, -2, "transport");
  lua_pushliteral(L, "port");
  lua_setfield(L, -2, "kind");
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref);
  if (lua_getiuservalue(L, -1, UV_PROTOCOL) != LUA_TNIL &&
      lua_getmetatable(L, -1) && lua_getfield(L, -1, "__name") == LUA_TSTRING)
    lua_setfield(L, top + 1, "protocol");
  lua_settop(L, top + 2);
  lua_pushcfunction(L, port_getHost);
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  lua_setfield(L, -2, "host");
  lua_pushinteger(L, (lua_Integer)uv_udp_get_send_queue_size(&p->handle));
  lua_setfield(L, -2, "queued");
  lua_rawseti(L, t, (lua_Integer)lua_rawlen(L, t) + 1);
}

/* The provider of UDP ports' rows. */
static void port_rows(lua_State *L, int t) {
  rows_arg a = {L, t};
  sp_live_each(port_row, &a);
}

int luaopen_spindle__udp(lua_State *L) {
  sp_inspect_register("udp", port_rows);
  sp_class_newx(L, PORT_MT, port_methods, port_meta, port_getters);
  luaL_newlib(L, udp_funcs);
  sp_errortype_push(L, "reactor.InvalidAddressError");
  lua_setfield(L, -2, "InvalidAddressError");
  sp_errortype_push(L, "reactor.MulticastJoinError");
  lua_setfield(L, -2, "MulticastJoinError");
  return 1;
}
