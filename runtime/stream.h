/*
** stream.h: the transport over a connected uv_stream_t (TCP or Unix
** socket), a closed module: struct sp_stream is defined in stream.c only,
** and its users (tcp.c for ports and connectors, tls.c as a filter, the
** framers of basic.c on their hot path) go through the functions here.
**
** An sp_stream is C memory owning one libuv stream handle; it is freed in
** the handle's close callback, never by the garbage collector. Once
** connected it has a Lua transport userdata ("spindle.Transport") whose
** user values hold the protocol, the producer, the owner and the close
** reason; the open handle holds one registry reference to that userdata.
** One entry in loop.c's live registry (loop.h) stands for the open
** streams, found through those references: at exit each is lost
** (connectionLost); a connecting one is dropped by its connector.
**
** Memory: an idle connection holds its libuv handle and a few fields; the
** write queue, the filter, the owner, Unix paths and the inspector's
** counters live in a side block made on first use (the first read or
** write), so an idle TCP connection costs 16 bytes beyond
** its uv_tcp_t in C.
**
** Bytes flow through two hooks so that a filter (TLS over memory BIOs) can
** sit between the socket and the protocol:
**   socket -> read callback -> filter->read (or sp_stream_deliver) ->
**     protocol:dataReceived
**   transport:write -> filter->write (or sp_stream_write_raw) -> socket
** With no filter, reads go straight to dataReceived and writes straight to
** the socket: uv_try_write first, a queue only for what the kernel refused.
*/
#ifndef SP_STREAM_H
#define SP_STREAM_H

#include <stddef.h>
#include <uv.h>
#include <lua.h>
#include <lauxlib.h>

#define SP_TRANSPORT_MT "spindle.Transport"

/* Default high-water mark of the write queue, in bytes (Twisted's
** FileDescriptor.bufferSize): past it a streaming producer is paused. */
#define SP_STREAM_HIGHWATER (64 * 1024)

typedef struct sp_stream sp_stream;

/* Kinds of stream: TCP and Unix sockets; PIPE, any descriptor libuv can
** read and write without blocking (a pipe, a socketpair, a pty master:
** process.c's child pipes, stdio.c's piped standard I/O); TTY, a terminal
** (uv_tty_t: stdio.c's standard I/O on a terminal). PIPE and TTY streams
** have no addresses (getPeer/getHost answer UNIXAddress(None)). */
enum {
  SP_STREAM_TCP = 1,
  SP_STREAM_UNIX = 2,
  SP_STREAM_PIPE = 3,
  SP_STREAM_TTY = 4
};

/* ------------------------------------------------------------ making */

/* Called when a connect started by sp_stream_connect_* ends, with 0 or a
** libuv error, unless the attempt was abandoned (sp_stream_set_owner to
** NULL, then sp_stream_discard) before. On success the stream is still
** without a transport: the owner calls sp_stream_open; on failure it
** calls sp_stream_discard. Runs in a libuv callback: must not raise. */
typedef void (*sp_stream_connected_fn)(sp_stream *s, int status);

/* Accept a connection of `kind` from the listening stream `server`.
** Returns the new stream (no transport yet), or NULL with *err set to a
** libuv error; nothing to release then. */
sp_stream *sp_stream_accept(uv_stream_t *server, int kind, int *err);

/* Start a TCP connect to `to`, bound first to `bind` unless it is NULL;
** `owner` (the connector) is what sp_stream_owner answers and `done` is
** called when the connect ends. Returns the stream, or NULL with *err set
** to a libuv error; nothing to release then. */
sp_stream *sp_stream_connect_tcp(const struct sockaddr *bind,
                                 const struct sockaddr *to, void *owner,
                                 sp_stream_connected_fn done, int *err);

/* The same for a Unix socket at `path` (shorter than sun_path: checked,
** UV_ENAMETOOLONG otherwise). */
sp_stream *sp_stream_connect_unix(const char *path, void *owner,
                                  sp_stream_connected_fn done, int *err);

/* Make a stream of kind SP_STREAM_PIPE (uv_pipe_open) or SP_STREAM_TTY
** (uv_tty_init, readable when fd is 0) over the open descriptor fd.
** Returns the stream (no transport yet: sp_stream_open it), or NULL with
** *err set to a libuv error. On success the stream owns fd (closed with
** the handle; libuv never closes 0, 1 and 2); on failure fd is the
** caller's to close. Loop thread only. Follows uv_pipe_open, uv_tty_init
** (which reopens a terminal so that its non-blocking mode stays ours). */
sp_stream *sp_stream_open_fd(int fd, int kind, int *err);

/* Close a stream that has no transport yet (a failed connect, a refused
** accept, an abandoned attempt): the handle is closed and the memory
** freed in its callback. */
void sp_stream_discard(sp_stream *s);

/* [-0, +1, m] Make the transport userdata for a connected stream, take a
** registry reference to it, record the addresses. Pushes the transport;
** reading starts with sp_stream_connect_protocol. */
void sp_stream_open(lua_State *L, sp_stream *s);

/* [-1, +0, -] Give the stream its protocol (the value on top of the stack;
** nil for none) and call protocol:makeConnection(transport). An error in
** it is logged and drops the connection. */
void sp_stream_connect_protocol(lua_State *L, sp_stream *s);

/* ------------------------------------------------------------- owner */

/* Called once after the protocol's connectionLost, with the reason (a
** Failure) at the top of L's stack; the client connector uses it to call
** clientConnectionLost. Every function here takes the Lua state to call
** into: the caller's in a Lua method, sp_loop_state() in a libuv
** callback (the reactor may run inside a coroutine). */
typedef void (*sp_stream_lost_fn)(sp_stream *s, lua_State *L);

/* Set the C owner of s (a client stream's connector; NULL detaches an
** attempt being abandoned) and the hook run after connectionLost. Only a
** stream made by sp_stream_connect_* or sp_stream_open_fd can have them
** (it is made with the block they live in); on others this does nothing. */
void sp_stream_set_owner(sp_stream *s, void *owner, sp_stream_lost_fn lost);

/* The C owner of s, or NULL. A stream with an owner is the side that made
** the connection (TLS takes the client role from it). */
void *sp_stream_owner(const sp_stream *s);

/* [-1, +0, -] Keep the value on top (the owner's Lua object, the
** Connector) in the transport of the open stream s, so that the owner
** lives as long as its connection does. */
void sp_stream_set_owner_value(lua_State *L, sp_stream *s);

/* [-0, +1, -] Push the owner value kept by sp_stream_set_owner_value (nil
** if none). */
void sp_stream_push_owner_value(lua_State *L, sp_stream *s);

/* ------------------------------------------------------------ filter */

/* A filter between the socket and the protocol (TLS). Every hook may be
** NULL, meaning "pass through". */
typedef struct sp_stream_filter {
  /* Bytes arrived from the peer. The filter hands decoded bytes to
  ** sp_stream_deliver and may write to the peer with sp_stream_write_raw.
  ** Returns 0, or a libuv-style negative error that loses the connection. */
  int (*read)(lua_State *L, sp_stream *s, const char *data, size_t len);
  /* The protocol wrote bufs; the filter encodes them and passes the result
  ** to sp_stream_write_raw. Returns 0 or a negative error. */
  int (*write)(lua_State *L, sp_stream *s, const uv_buf_t *bufs,
               unsigned nbufs);
  /* The write queue drained during loseConnection or loseWriteConnection
  ** (called once for both): the filter may queue a last record
  ** (close_notify) before the close or the write half's shutdown. Returns 1 if
  *it queued something (the
  ** stream then waits for that to drain as well), else 0; or
  ** SP_FILTER_WAIT when it cannot finish yet (a TLS handshake still
  ** running, with writes held until it ends): the stream then keeps
  ** reading and the filter calls sp_stream_finish_ready when it can. */
  int (*finish)(lua_State *L, sp_stream *s);
  /* The peer closed its write half (EOF). Returns 1 if the filter dealt
  ** with it (it lost the connection with its own reason, as TLS does for
  ** an EOF in the middle of a handshake), 0 for the usual handling. */
  int (*eof)(lua_State *L, sp_stream *s);
  /* The stream is being freed: release the filter's state (data is what
  ** sp_stream_set_filter was given). */
  void (*free)(void *data);
} sp_stream_filter;

/* filter->finish: not ready to finish, see above. */
#define SP_FILTER_WAIT 2

/* Install filter f with its state `data` on s (which has none: check
** with sp_stream_filter_data). From then on the stream owns data: f->free
** releases it when the stream is freed. Returns 0, or UV_ENOMEM when the
** stream's side block could not be made: f->free(data) has run then. */
int sp_stream_set_filter(sp_stream *s, const sp_stream_filter *f, void *data);

/* The state of filter f on s, or NULL when s is NULL or has another
** filter or none; f NULL asks whether s has any filter (its state, or
** NULL). */
void *sp_stream_filter_data(const sp_stream *s, const sp_stream_filter *f);

/* Hand decoded bytes to the protocol's dataReceived. Returns 0, or -1 if
** the stream closed meanwhile (the caller must stop using it). */
int sp_stream_deliver(lua_State *L, sp_stream *s, const char *data, size_t len);

/* Queue raw bytes for the socket, after everything queued before, past
** any filter: uv_try_write when nothing is queued, a copy into the queue
** for the rest. Returns 0 or a negative libuv error (the stream is then
** closing). */
int sp_stream_write_raw(lua_State *L, sp_stream *s, const uv_buf_t *bufs,
                        unsigned nbufs);

/* The last bytes of the connection (TLS's answer to the peer's
** close_notify): queue bufs as sp_stream_write_raw does, then close
** cleanly (ConnectionDone) once the queue is written; a write error from
** then on (the peer has often closed its socket already) still closes
** cleanly. Does nothing on a stream that is not open. */
void sp_stream_write_last(lua_State *L, sp_stream *s, const uv_buf_t *bufs,
                          unsigned nbufs);

/* The filter keeps (hold != 0) plaintext the protocol wrote that it
** cannot encode yet (TLS before its handshake ends), or has just sent it
** on (hold == 0). While held, a registered streaming producer is paused
** (as past the high-water mark) and not resumed by a drain; once
** released it is resumed when the queue is empty, now or when it drains.
** twisted TLSMemoryBIOProtocol._bufferedWrite/_unbufferPendingWrites. */
void sp_stream_filter_hold(lua_State *L, sp_stream *s, int hold);

/* A filter whose finish returned SP_FILTER_WAIT is ready: finish the
** pending loseConnection once the queue drains (finish is called again). */
void sp_stream_finish_ready(lua_State *L, sp_stream *s);

/* Bytes queued and not yet taken by the kernel. */
size_t sp_stream_queued(const sp_stream *s);

/* How many streams made by sp_stream_accept have a transport and have not
** finished closing (their connectionLost has not returned): what a
** draining reactor waits on (tcp.h's sp_tcp_open_accepted). */
int sp_stream_accepted_open(void);

/* ------------------------------------------------------- Lua side */

/* [-0, +1, -] Push the transport userdata of a stream made into one by
** sp_stream_open (open or closing). */
void sp_stream_push_transport(lua_State *L, sp_stream *s);

/* [-0, +1, m] Push the address of the peer (peer != 0) or of the local
** end (addr.h's shape), as getPeer/getHost return it, of a stream whose
** socket is open (the peer's is kept from the first call or
** sp_stream_open on; the local end's is asked of the socket). */
void sp_stream_pushaddr(lua_State *L, sp_stream *s, int peer);

/* Why a connection ended, for sp_stream_pusherror. */
enum { SP_LOST_DONE, SP_LOST_NONCLEAN, SP_LOST_ABORTED };

/* [-0, +1, m] Push the error value of a connection that ended, with
** Twisted's texts (the one place they are written): SP_LOST_DONE
** reactor.ConnectionDone "Connection was closed cleanly.",
** SP_LOST_NONCLEAN reactor.ConnectionLost "Connection to the other side
** was lost in a non-clean fashion", SP_LOST_ABORTED
** reactor.ConnectionAborted; then ": detail" unless detail is NULL, then
** ": <libuv message> (<NAME>)" unless code is 0 (NAME also goes in the
** error's `code` field), then ".". */
void sp_stream_pusherror(lua_State *L, int why, const char *detail, int code);

/* [-0, +0, -] Lose the connection now with the error value at idx (a
** Failure or error value; idx 0 means ConnectionLost with `code`). */
void sp_stream_lose(lua_State *L, sp_stream *s, int idx, int code);

/* [-0, +0, -] sp_stream_lose(L, s, 0, 0) protected (a memory error is
** logged): for a libuv callback whose Lua half failed after the stream
** got its transport. */
void sp_stream_lose_protected(lua_State *L, sp_stream *s);

/* The stream behind the transport at idx, or NULL if it is closed; raises
** if idx is not a transport. */
sp_stream *sp_stream_check(lua_State *L, int idx);

/* SP_STREAM_TCP, SP_STREAM_UNIX, SP_STREAM_PIPE or SP_STREAM_TTY. */
int sp_stream_kind(const sp_stream *s);

/* The socket of an open stream, for socket options (tcp.c's
** setTcpNoDelay and friends). Returns 0 or a libuv error. */
int sp_stream_fileno(const sp_stream *s, uv_os_fd_t *fd);

/* [-0, +0, m] Add methods to every stream transport (TLS adds startTLS
** and getPeerCertificate, tcp.c the TCP socket options); call after
** sp_stream_init. */
void sp_stream_add_methods(lua_State *L, const luaL_Reg *methods);

/* [-0, +0, m] Register the transport metatable (done by luaopen). */
void sp_stream_init(lua_State *L);

/* ------------------------------------- the framers' hot path (basic.c) */

/* A C implementation of dataReceived that can take the bytes of a read
** without a Lua string: direct(L, data, len) is called inside the
** protected call that delivers the read, with the protocol at index 1 and
** nothing above it; data is valid only during the call. It returns like
** a lua_CFunction (its results are dropped) and may raise. */
typedef int (*sp_direct_fn)(lua_State *L, const char *data, size_t len);

/* When a protocol's dataReceived is the C function `method` (as
** lua_tocfunction sees it), reads from the socket go to `direct` instead
** (filters, i.e. TLS, still deliver a string). Up to four pairs are kept,
** one per method (registering a method again replaces its function):
** spindle.basic registers LineReceiver's, spindle.web its channel's. Not
** thread-safe: call from luaopen on the loop thread. */
void sp_stream_set_direct(lua_CFunction method, sp_direct_fn direct);

/* [-0, +0, -] The stream transport userdata at idx, as an opaque handle
** for the two functions below, or NULL if the value is something else
** (no registry lookup). The handle is valid while the userdata lives
** (the caller anchors it), also after the connection closes. */
void *sp_transport_test(lua_State *L, int idx);

/* For a handle from sp_transport_test: 1 if the transport is closed or
** closing (loseConnection() was called: Twisted's
** transport.disconnecting), else 0. */
int sp_transport_disconnecting(const void *tud);

/* [-0, +0, -] transport:write(b1 .. b2 ...) for a handle from
** sp_transport_test without building the string: returns 1 when done
** (nothing is written once the transport is closed or half-closed, as
** transport:write), 0 when the caller must call transport:write itself
** (a filter such as TLS keeps the Lua call). */
int sp_transport_write(lua_State *L, void *tud, const uv_buf_t *bufs,
                       unsigned nbufs);

#endif
