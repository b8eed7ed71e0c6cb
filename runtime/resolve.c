/*
** resolve.c: spindle._resolve, every address of a host name, for
** HostnameEndpoint (lua/spindle/endpoints.lua). reactor.resolve (tcp.c)
** gives one IPv4 address, as Twisted's gethostbyname-style resolve does;
** Happy Eyeballs needs all of them, IPv6 and IPv4, in getaddrinfo's
** order, as twisted.internet._resolver.GAIResolver gives them. Both go
** through sp_resolve_start (resolve.h), the one uv_getaddrinfo wrapper.
*/
#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "defer.h"
#include "failure.h"
#include "loop.h"
#include "resolve.h"

/* A lookup in flight: its Deferred and host name are held by registry
** refs, dropped in resolve_done (the one release path: libuv always
** calls it once uv_getaddrinfo has returned 0). */
typedef struct gai_op {
  uv_getaddrinfo_t req;
  int dref;
  int nameref;
  sp_resolve_push_fn push; /* the Deferred's result from the addresses */
} gai_op;

/* [-0, +1, m] Push {type = "TCP", family = "INET"|"INET6", host = ...,
** port = ...} for one resolved socket address. */
static void push_address(lua_State *L, const struct sockaddr *sa) {
  char buf[INET6_ADDRSTRLEN];
  int port;
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &s6->sin6_addr, buf, sizeof buf);
    port = ntohs(s6->sin6_port);
  } else {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &s4->sin_addr, buf, sizeof buf);
    port = ntohs(s4->sin_port);
  }
  lua_createtable(L, 0, 4);
  lua_pushliteral(L, "TCP");
  lua_setfield(L, -2, "type");
  lua_pushstring(L, sa->sa_family == AF_INET6 ? "INET6" : "INET");
  lua_setfield(L, -2, "family");
  lua_pushstring(L, buf);
  lua_setfield(L, -2, "host");
  lua_pushinteger(L, port);
  lua_setfield(L, -2, "port");
}

/* [-0, +1, m] Push the list of addresses in res, one per distinct
** (family, address), in getaddrinfo's order. */
static void push_addresses(lua_State *L, const struct addrinfo *res) {
  int n = 0;
  lua_newtable(L);
  for (; res != NULL; res = res->ai_next) {
    if (res->ai_family != AF_INET && res->ai_family != AF_INET6) continue;
    n++;
    push_address(L, res->ai_addr);
    lua_rawseti(L, -2, n);
  }
}

/* [-0, +1, m] Push a DNSLookupError naming host, with the libuv code. */
static void push_lookup_error(lua_State *L, const char *host, int status) {
  lua_pushfstring(L, "DNS lookup failed: address '%s' not found: %s (%s).",
                  host, uv_strerror(status), uv_err_name(status));
  sp_errortype_make(L, "reactor.DNSLookupError", lua_tostring(L, -1));
  lua_remove(L, -2);
  lua_pushstring(L, uv_err_name(status));
  lua_setfield(L, -2, "code");
}

static void resolve_done(uv_getaddrinfo_t *req, int status,
                         struct addrinfo *res) {
  gai_op *op = req->data;
  sp_resolve_push_fn op_push = op->push;
  lua_State *L = sp_loop_state();
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->dref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->nameref);
  luaL_unref(L, LUA_REGISTRYINDEX, op->dref);
  luaL_unref(L, LUA_REGISTRYINDEX, op->nameref);
  free(op);
  if (status < 0 || res == NULL) {
    push_lookup_error(L, lua_tostring(L, top + 2),
                      status < 0 ? status : UV_EAI_NONAME);
    sp_deferred_errback(L, top + 1, -1);
  } else {
    op_push(L, res);
    sp_deferred_callback(L, top + 1, -1);
  }
  uv_freeaddrinfo(res);
  lua_settop(L, top);
}

void sp_resolve_start(lua_State *L, int nameidx, const char *service,
                      int family, sp_resolve_push_fn push) {
  const char *name = lua_tostring(L, nameidx);
  struct addrinfo hints;
  gai_op *op;
  int r;
  nameidx = lua_absindex(L, nameidx);
  sp_deferred_new(L);
  op = malloc(sizeof *op);
  if (op == NULL) luaL_error(L, "not enough memory");
  memset(&hints, 0, sizeof hints);
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  op->req.data = op;
  op->push = push;
  r = uv_getaddrinfo(sp_loop(), &op->req, resolve_done, name, service, &hints);
  if (r < 0) {
    free(op);
    push_lookup_error(L, name, r);
    sp_deferred_errback(L, -2, -1);
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, -1);
  op->dref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, nameidx);
  op->nameref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* _resolve.getaddrinfo(host, port) -> Deferred of a list of addresses
** {type = "TCP", family = "INET6" | "INET", host = "::1", port = n}, every
** stream address of host (a name or an IP literal) in getaddrinfo's
** order, port (an integer, 0..65535) filled in. Runs on libuv's thread
** pool (uv_getaddrinfo), never blocking the loop. Fails with
** reactor.DNSLookupError naming host (field code: "EAI_NONAME", ...).
** Loop thread only. Follows twisted GAIResolver.resolveHostName. */
static int resolve_getaddrinfo(lua_State *L) {
  lua_Integer port;
  char portstr[16];
  luaL_checkstring(L, 1);
  port = luaL_checkinteger(L, 2);
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  snprintf(portstr, sizeof portstr, "%d", (int)port);
  sp_resolve_start(L, 1, portstr, AF_UNSPEC, push_addresses);
  return 1;
}

static const luaL_Reg resolve_funcs[] = {{"getaddrinfo", resolve_getaddrinfo},
                                         {NULL, NULL}};

int luaopen_spindle__resolve(lua_State *L) {
  luaL_newlib(L, resolve_funcs);
  return 1;
}
