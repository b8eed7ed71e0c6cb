/*
** stream.h: the transport over a connected uv_stream_t (TCP or Unix
** socket), shared by tcp.c and, later, tls.c.
**
** An sp_stream is C memory owning one libuv stream handle; it is freed in
** the handle's close callback, never by the garbage collector. Once
** connected it has a Lua transport userdata ("spindle.Transport") whose
** user values hold the protocol, the producer and the close reason; the
** open handle holds one registry reference to that userdata.
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

/* The transport's user value that holds its owner (the client Connector),
** set with lua_setiuservalue by the owner. */
#define SP_TRANSPORT_UV_OWNER 5

typedef struct sp_stream sp_stream;

/* Every handle this module family owns is on one list, so that the
** shutdown hook can close each with its own callback (and tell its Lua
** side) before the loop closes what is left. */
typedef struct sp_live sp_live;
struct sp_live {
  sp_live *prev, *next;
  /* Close the handle(s) behind n for process exit; must not free n
  ** synchronously (close callbacks free it, and unlink it). */
  void (*shutdown)(lua_State *L, sp_live *n);
};

/* Link n into / out of the list (loop thread only). */
void sp_live_add(sp_live *n);
void sp_live_remove(sp_live *n);

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
  /* The write queue drained during loseConnection: the filter may queue a
  ** last record (close_notify). Returns 1 if it queued something (the
  ** stream then waits for that to drain as well), else 0; or
  ** SP_FILTER_WAIT when it cannot finish yet (a TLS handshake still
  ** running, with writes held until it ends): the stream then keeps
  ** reading and the filter calls sp_stream_finish_ready when it can. */
  int (*finish)(lua_State *L, sp_stream *s);
  /* The peer closed its write half (EOF). Returns 1 if the filter dealt
  ** with it (it lost the connection with its own reason, as TLS does for
  ** an EOF in the middle of a handshake), 0 for the usual handling. */
  int (*eof)(lua_State *L, sp_stream *s);
  /* The stream is being freed: release the filter's state. */
  void (*free)(sp_stream *s);
} sp_stream_filter;

/* filter->finish: not ready to finish, see above. */
#define SP_FILTER_WAIT 2

/* Kinds of stream, for getPeer/getHost. */
enum { SP_STREAM_TCP = 1, SP_STREAM_UNIX = 2 };

/* Called once after the protocol's connectionLost, with the reason (a
** Failure) at the top of L's stack; the client connector uses it to call
** clientConnectionLost. Every function here takes the Lua state to call
** into: the caller's in a Lua method, sp_loop_state() in a libuv
** callback (the reactor may run inside a coroutine). */
typedef void (*sp_stream_lost_fn)(sp_stream *s, lua_State *L);

/* A libuv stream handle of either kind, seen as any of its types; the
** connections here and tcp.c's listening sockets are one of these. */
typedef union sp_stream_handle {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
} sp_stream_handle;

struct sp_stream {
  sp_stream_handle h;
  sp_live live;
  int kind;       /* SP_STREAM_TCP or SP_STREAM_UNIX */
  int state;      /* see stream.c: CONNECTING .. CLOSED */
  unsigned flags; /* see stream.c: SF_* */
  int ref;        /* registry ref to the transport userdata */
  /* The write queue: one uv_write in flight (either a Lua string kept in
  ** the transport's user value, or inflight.base), then pending bytes. */
  uv_write_t wreq;
  uv_shutdown_t sreq;
  uv_connect_t creq; /* the connect request of a client stream */
  uv_buf_t inflight; /* what the in-flight uv_write sends */
  char *ibuf;        /* owned buffer behind inflight, or NULL */
  size_t icap;
  char *pbuf; /* pending bytes, not yet handed to libuv */
  size_t plen, pcap;
  size_t highwater;
  /* Addresses, kept so getPeer/getHost answer after close. */
  struct sockaddr_storage peer, host;
  char *peerpath, *hostpath; /* Unix socket paths (malloc'd), or NULL */
  /* Filter (TLS) and its state. */
  const sp_stream_filter *filter;
  void *filter_data;
  /* Owner hooks (client connector). */
  sp_stream_lost_fn on_lost;
  void *owner;
};

/* Allocate a stream of `kind` and init its handle on sp_loop(). Returns
** NULL (with *err set to a libuv error) on failure; nothing to release. */
sp_stream *sp_stream_alloc(int kind, int *err);

/* Close a stream that has no transport yet (a failed connect, a refused
** accept): the handle is closed and the memory freed in its callback. */
void sp_stream_discard(sp_stream *s);

/* [-0, +1, m] Make the transport userdata for a connected stream, take a
** registry reference to it, record the addresses and start reading.
** Pushes the transport. */
void sp_stream_open(lua_State *L, sp_stream *s);

/* [-0, +1, m] Push the address table of the peer (peer != 0) or of the
** local end, as getPeer/getHost return it. */
void sp_stream_pushaddr(lua_State *L, sp_stream *s, int peer);

/* [-1, +0, -] Give the stream its protocol (the value on top of the stack;
** nil for none) and call protocol:makeConnection(transport). An error in
** it is logged and drops the connection. */
void sp_stream_connect_protocol(lua_State *L, sp_stream *s);

/* Hand decoded bytes to the protocol's dataReceived. Returns 0, or -1 if
** the stream closed meanwhile (the caller must stop using it). */
int sp_stream_deliver(lua_State *L, sp_stream *s, const char *data, size_t len);

/* A C implementation of dataReceived that can take the bytes of a read
** without a Lua string: direct(L, data, len) is called inside the
** protected call that delivers the read, with the protocol at index 1 and
** nothing above it; data is valid only during the call. It returns like
** a lua_CFunction (its results are dropped) and may raise. */
typedef int (*sp_direct_fn)(lua_State *L, const char *data, size_t len);

/* When a protocol's dataReceived is the C function `method` (as
** lua_tocfunction sees it), reads from the socket go to `direct` instead
** (filters, i.e. TLS, still deliver a string). One pair is kept: the last
** registered. spindle.basic registers LineReceiver's. Not thread-safe:
** call from luaopen on the loop thread. */
void sp_stream_set_direct(lua_CFunction method, sp_direct_fn direct);

/* Queue raw bytes for the socket, after everything queued before:
** uv_try_write when nothing is queued, a copy into the queue for the rest.
** Returns 0 or a negative libuv error (the stream is then closing). */
int sp_stream_write_raw(lua_State *L, sp_stream *s, const uv_buf_t *bufs,
                        unsigned nbufs);

/* A filter whose finish returned SP_FILTER_WAIT is ready: finish the
** pending loseConnection once the queue drains (finish is called again). */
void sp_stream_finish_ready(lua_State *L, sp_stream *s);

/* [-0, +0, m] Add methods to every stream transport (TLS adds startTLS
** and getPeerCertificate); call after sp_stream_init. */
void sp_stream_add_methods(lua_State *L, const luaL_Reg *methods);

/* Bytes queued and not yet taken by the kernel. */
size_t sp_stream_queued(const sp_stream *s);

/* [-0, +0, -] Lose the connection now with the error value at idx (a
** Failure or error value; idx 0 means ConnectionLost with `code`). */
void sp_stream_lose(lua_State *L, sp_stream *s, int idx, int code);

/* The stream behind the transport at idx, or NULL if it is closed; raises
** if idx is not a transport. */
sp_stream *sp_stream_check(lua_State *L, int idx);

/* [-0, +0, -] For the value at idx: 1 if it is a stream transport that is
** closed or closing (loseConnection() was called: Twisted's
** transport.disconnecting), 0 if it is an open one, -1 if it is not a
** stream transport. No registry lookup: spindle.basic asks it after
** every line. */
int sp_stream_disconnecting(lua_State *L, int idx);

/* [-0, +0, -] transport:write(b1 .. b2 ...) for the value at idx without
** building the string, when it is a stream transport with no filter (TLS
** keeps the Lua call): returns 1 when done (nothing is written once the
** transport is closed or half-closed, as transport:write), 0 when the
** caller must call transport:write itself. */
int sp_stream_write_fast(lua_State *L, int idx, const uv_buf_t *bufs,
                         unsigned nbufs);

/* [-0, +0, -] The stream transport userdata at idx, as an opaque handle
** for the two functions below, or NULL if the value is something else.
** The handle is valid while the userdata lives (the caller anchors it),
** also after the connection closes. For per-line hot paths that keep the
** handle instead of checking the metatable each time. */
void *sp_transport_test(lua_State *L, int idx);

/* sp_stream_disconnecting for a handle from sp_transport_test: 1 if the
** transport is closed or closing, else 0. */
int sp_transport_disconnecting(const void *tud);

/* [-0, +0, -] sp_stream_write_fast for a handle from sp_transport_test:
** 1 when done (or nothing to do on a closed transport), 0 when the caller
** must call transport:write itself (a filter such as TLS). */
int sp_transport_write(lua_State *L, void *tud, const uv_buf_t *bufs,
                       unsigned nbufs);

/* Format a sockaddr as "host" and *port; buf must hold 64 bytes. */
const char *sp_stream_addrstr(const struct sockaddr *sa, char *buf, int *port);

/* Results of sp_stream_callmethod. */
enum { SP_CALL_OK, SP_CALL_MISSING, SP_CALL_ERROR };

/* [-nargs, +1, -] obj:name(args...) for obj at objidx and the nargs
** arguments on top, protected, the method lookup included (an object's
** __index may raise). Pushes the method's first result (SP_CALL_OK), nil
** when obj has no such method (SP_CALL_MISSING), or the Failure of an
** error, which is logged (SP_CALL_ERROR). For libuv callbacks, which must
** never raise. */
int sp_stream_callmethod(lua_State *L, int objidx, const char *name, int nargs);

/* [-0, +0, m] Register the transport metatable (done by luaopen). */
void sp_stream_init(lua_State *L);

#endif
