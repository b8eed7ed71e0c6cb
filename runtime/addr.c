/*
** addr.c: socket addresses for Lua (see addr.h). Follows
** twisted.internet.address (IPv4Address, IPv6Address, UNIXAddress).
*/
#include <string.h>
#include <netinet/in.h>

#include <lauxlib.h>
#include <uv.h>

#include "addr.h"

#define ADDR_MT "spindle.Address"

int sp_addr_parse(const char *host, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 0;
  memset(ss, 0, sizeof *ss);
  return UV_EINVAL;
}

int sp_addr_format(const struct sockaddr *sa, char *host) {
  host[0] = '\0';
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    uv_ip4_name(in, host, SP_ADDR_HOSTLEN);
    return ntohs(in->sin_port);
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(in6, host, SP_ADDR_HOSTLEN);
    return ntohs(in6->sin6_port);
  }
  return 0;
}

/* __tostring: Twisted's repr of the address. */
static int addr_tostring(lua_State *L) {
  const char *type, *host;
  lua_Integer port;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "type");
  type = lua_tostring(L, -1);
  if (type != NULL && strcmp(type, "UNIX") == 0) {
    if (lua_getfield(L, 1, "name") == LUA_TSTRING)
      lua_pushfstring(L, "UNIXAddress('%s')", lua_tostring(L, -1));
    else
      lua_pushliteral(L, "UNIXAddress(None)");
    return 1;
  }
  lua_getfield(L, 1, "host");
  host = lua_tostring(L, -1);
  lua_getfield(L, 1, "port");
  port = lua_tointeger(L, -1);
  if (lua_getfield(L, 1, "flowInfo") != LUA_TNIL) {
    lua_getfield(L, 1, "scopeID");
    lua_pushfstring(L,
                    "IPv6Address(type='%s', host='%s', port=%I, flowInfo=%I, "
                    "scopeID=%I)",
                    type ? type : "?", host ? host : "", (LUAI_UACINT)port,
                    (LUAI_UACINT)lua_tointeger(L, -2),
                    (LUAI_UACINT)lua_tointeger(L, -1));
    return 1;
  }
  lua_pushfstring(L, "IPv4Address(type='%s', host='%s', port=%I)",
                  type ? type : "?", host ? host : "", (LUAI_UACINT)port);
  return 1;
}

/* spindle._addr: {Address = the metatable of addresses}. Addresses are
** plain tables; their metatable is a field of this module so that an
** address sent to a pool thread (marshal.c) takes the receiver's
** metatable by name instead of failing on the C __tostring. */
int luaopen_spindle__addr(lua_State *L) {
  lua_createtable(L, 0, 1);
  if (luaL_newmetatable(L, ADDR_MT)) {
    lua_pushcfunction(L, addr_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "Address");
    lua_setfield(L, -2, "__name");
  }
  lua_setfield(L, -2, "Address");
  return 1;
}

/* [-0, +0, m] Give the table on top the address metatable, from
** spindle._addr (loaded again if it was unloaded, as busted does between
** spec files: the metatable must stay a loaded module's field). */
static void set_meta(lua_State *L) {
  luaL_requiref(L, "spindle._addr", luaopen_spindle__addr, 0);
  lua_getfield(L, -1, "Address");
  lua_remove(L, -2);
  lua_setmetatable(L, -2);
}

/* [-0, +1, m] The IP shape; flow and scope are set for IPv6 (v6 != 0). */
static void push_ip(lua_State *L, const char *type, const char *host, int port,
                    int v6, unsigned flow, unsigned scope) {
  lua_createtable(L, 2, v6 ? 5 : 3);
  lua_pushstring(L, type);
  lua_setfield(L, -2, "type");
  lua_pushstring(L, host);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "host");
  lua_rawseti(L, -2, 1);
  lua_pushinteger(L, port);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "port");
  lua_rawseti(L, -2, 2);
  if (v6) {
    lua_pushinteger(L, (lua_Integer)flow);
    lua_setfield(L, -2, "flowInfo");
    lua_pushinteger(L, (lua_Integer)scope);
    lua_setfield(L, -2, "scopeID");
  }
  set_meta(L);
}

void sp_addr_push(lua_State *L, const char *type, const struct sockaddr *sa) {
  char host[SP_ADDR_HOSTLEN];
  int port = sp_addr_format(sa, host);
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    push_ip(L, type, host, port, 1, ntohl(in6->sin6_flowinfo),
            in6->sin6_scope_id);
  } else {
    push_ip(L, type, host, port, 0, 0, 0);
  }
}

void sp_addr_push_hostport(lua_State *L, const char *type, const char *host,
                           int port) {
  push_ip(L, type, host, port, strchr(host, ':') != NULL, 0, 0);
}

void sp_addr_push_unix(lua_State *L, const char *path) {
  lua_createtable(L, 0, 3);
  lua_pushliteral(L, "UNIX");
  lua_setfield(L, -2, "type");
  if (path != NULL) {
    lua_pushstring(L, path);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "name");
    lua_setfield(L, -2, "host");
  }
  set_meta(L);
}

void sp_addr_pushfields(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_getfield(L, idx, "host") == LUA_TNIL) {
    lua_pop(L, 1);
    lua_rawgeti(L, idx, 1);
  }
  if (lua_getfield(L, idx, "port") == LUA_TNIL) {
    lua_pop(L, 1);
    lua_rawgeti(L, idx, 2);
  }
}
