/*
** addr.h: socket addresses (addr.c), the one place that parses IP
** literals, formats sockaddrs and gives them to Lua, for TCP, UDP and Unix
** sockets alike.
**
** The Lua shape, one for every transport (Twisted's IPv4Address,
** IPv6Address and UNIXAddress): a table with the fields
**   type  "TCP", "UDP" or "UNIX"
**   host  the IP address as text ("127.0.0.1", "::1"); for Unix the path
**   port  the port number (IP only)
**   name  the path (Unix only; absent for an unnamed socket)
** plus, for IP addresses, host and port at positions 1 and 2 (Twisted's
** (host, port) tuples) and, for IPv6, flowInfo and scopeID. Its
** tostring prints as Twisted's repr: IPv4Address(type='TCP',
** host='127.0.0.1', port=8000), IPv6Address(type='UDP', host='::1',
** port=53, flowInfo=0, scopeID=0), UNIXAddress('/tmp/sock') or
** UNIXAddress(None).
*/
#ifndef SP_ADDR_H
#define SP_ADDR_H

#include <sys/socket.h>

#include <lua.h>

/* Bytes a formatted IP address needs (INET6_ADDRSTRLEN and more). */
#define SP_ADDR_HOSTLEN 64

/* Parse an IPv4 or IPv6 literal and a port (0..65535) into ss. Returns 0,
** or UV_EINVAL when host is not an IP literal (ss is zeroed then). */
int sp_addr_parse(const char *host, int port, struct sockaddr_storage *ss);

/* Format the IP address of sa into host (SP_ADDR_HOSTLEN bytes) and
** return its port; a family other than IPv4/IPv6 gives "" and 0. */
int sp_addr_format(const struct sockaddr *sa, char *host);

/* [-0, +1, m] Push the address sa (IPv4 or IPv6) of a `type` ("TCP",
** "UDP") socket, in the shape above. */
void sp_addr_push(lua_State *L, const char *type, const struct sockaddr *sa);

/* [-0, +1, m] Push an IP-shaped address from a host given as text (an IP
** literal, or a name as given to connectTCP) and a port. */
void sp_addr_push_hostport(lua_State *L, const char *type, const char *host,
                           int port);

/* [-0, +1, m] Push a Unix socket address; path may be NULL (an unnamed
** socket). */
void sp_addr_push_unix(lua_State *L, const char *path);

/* [-0, +2, e] Push the host and port of the address table at idx, from
** its named fields {host = h, port = p} or else its positions {h, p} (the
** shape of Twisted's (host, port) tuples). Either may be nil. */
void sp_addr_pushfields(lua_State *L, int idx);

/* [-0, +1, m] The module spindle._addr: {Address = the metatable}. */
int luaopen_spindle__addr(lua_State *L);

#endif
