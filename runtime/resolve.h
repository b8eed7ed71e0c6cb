/*
** resolve.h: name resolution on libuv's thread pool (resolve.c), the one
** uv_getaddrinfo wrapper: reactor.resolve (tcp.c) and HostnameEndpoint's
** spindle._resolve.getaddrinfo both use it.
*/
#ifndef SP_RESOLVE_H
#define SP_RESOLVE_H

#include <netdb.h>

#include <lua.h>

/* [-0, +1, m] Push the result of a successful lookup from its address
** list (never empty). Called on the loop thread, unprotected as the
** rest of the callback is. */
typedef void (*sp_resolve_push_fn)(lua_State *L, const struct addrinfo *res);

/* [-0, +1, m] Push a Deferred fired with push(res) once the host name at
** nameidx resolves (getaddrinfo, stream sockets, `family` AF_UNSPEC,
** AF_INET or AF_INET6; `service` a port string or NULL), or failed with
** reactor.DNSLookupError naming the host (field code: "EAI_NONAME", ...).
** Never blocks the loop (uv_getaddrinfo). Raises a memory error.
** Loop thread only. Follows twisted GAIResolver.resolveHostName. */
void sp_resolve_start(lua_State *L, int nameidx, const char *service,
                      int family, sp_resolve_push_fn push);

#endif
