/*
** tcp.h: TCP ports and connectors (tcp.c) for the files that build on
** them: tls.c makes listenSSL and connectSSL from these, installing its
** filter (stream.h) on each connection before the protocol sees it.
*/
#ifndef SP_TCP_H
#define SP_TCP_H

#include <lua.h>

#include "stream.h"

/* A hook run for each new connection of a port or connector, once its
** transport exists and before protocol:makeConnection: it may install a
** filter on s (s->filter, s->filter_data). The value given as `arg` when
** the port or connector was made is at argidx. Runs in a libuv callback:
** it must not raise. Returns 0, or pushes an error value and returns
** nonzero to drop the connection with that error. */
typedef int (*sp_tcp_setup_fn)(lua_State *L, sp_stream *s, int argidx);

/* [-0, +1, e] reactor.listenTCP(port, factory[, backlog][, interface])
** with those arguments at 1..4 of L; when setup is not NULL, every
** accepted connection goes through setup with the value at index arg
** (kept by the Port). Pushes the Port; raises as listenTCP. */
int sp_tcp_listen(lua_State *L, sp_tcp_setup_fn setup, int arg);

/* [-0, +1, e] reactor.connectTCP(host, port, factory[, timeout]
** [, bindAddress]) with those arguments at 1..5 of L; when setup is not
** NULL, the connection goes through setup with the value at index arg
** (kept by the Connector, also for reconnects). Pushes the Connector. */
int sp_tcp_connect(lua_State *L, sp_tcp_setup_fn setup, int arg);

/* A process under spindle --workers (supervisor.c) takes its listening
** sockets from the supervisor. Before a Port binds, the listen hook gets
** its kind (SP_STREAM_TCP with the address asked for, or SP_STREAM_UNIX
** with the path), backlog and mode, and returns a listening descriptor
** for the Port to own, a negative libuv error to fail the listen with,
** or SP_TCP_BIND to bind as usual. The listening hook is called with the
** new Port at idx once it listens ([-0, +0, -]; it must not raise).
** Loop thread only; NULL removes a hook. */
#define SP_TCP_BIND (-100000)
typedef int (*sp_tcp_listen_fn)(int kind, const struct sockaddr *want,
                                const char *path, int backlog, int mode);
typedef void (*sp_tcp_listening_fn)(lua_State *L, int idx);
void sp_tcp_set_listen_hooks(sp_tcp_listen_fn listen,
                             sp_tcp_listening_fn listening);

/* The listening descriptor of the Port at idx, or -1 if that is not a
** listening Port; *adopted tells whether the socket was handed to it
** (adoptStreamPort, a supervisor), so that others hold it too. Loop
** thread only; the descriptor stays the Port's. */
int sp_tcp_port_fd(lua_State *L, int idx, int *adopted);

/* How many connections accepted by any Port (TCP, TLS, Unix) are still
** open: what a draining reactor waits on. Loop thread only. */
int sp_tcp_open_accepted(void);

#endif
