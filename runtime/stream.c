/*
** stream.c: the transport over a connected uv_stream_t (see stream.h).
**
** Follows twisted.internet.abstract.FileDescriptor and tcp.Connection:
** write() buffers, loseConnection() closes once the buffer is written,
** producers are paused past a high-water mark and resumed when the buffer
** drains, half-close goes to readConnectionLost/writeConnectionLost and
** the connection closes (ConnectionDone) once both halves are down. A
** close or half-close waits for the DelayedCalls already due in the loop
** turn (loop.h's sp_loop_after_due), as Twisted's doWrite comes after
** runUntilCurrent.
**
** Reads: libuv asks alloc_cb for a buffer, which comes from a small pool of
** 64 KiB buffers reused across reads and connections; the read callback
** makes one protected call of protocol:dataReceived(string) and gives the
** buffer back.
**
** Writes: while nothing is queued, uv_try_write hands the bytes to the
** kernel with no copy. What the kernel refuses is either sent by a
** uv_write that points into the Lua string (kept alive in the transport's
** user value until the write completes) or, if a write is already in
** flight, copied to the pending buffer, which goes out as one uv_write
** when the in-flight one completes (small writes coalesce).
**
** Lifetime: the sp_stream is freed in the handle's close callback, which
** also calls producer:stopProducing(), protocol:connectionLost(reason) and
** the owner's hook; the transport userdata then answers as closed.**
** Length: this file is over 1000 lines on purpose. Reading, the write
** queue, closing and the transport's Lua methods all work on the private
** struct sp_stream and its flags; splitting them into files would publish
** the struct again (what stream.h is closed to prevent).
*/
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <lauxlib.h>

#include "addr.h"
#include "core.h"
#include "failure.h"
#include "loop.h"
#include "inspect.h"
#include "stream.h"

/* What only some streams need, in a block made on first use
** (stream_x), so that an idle connection carries none of it: the write
** queue (a connection that has read or written), the close waiting for
** the due calls, the filter (TLS), the owner (a client's connector, a
** StandardIO relay), Unix paths, an IPv6 peer, the inspector's counters.
** Freed with the stream. */
typedef struct stream_x {
  sp_loop_later later; /* a close waiting for the due calls (stream_later) */
  sp_stream *s;
  /* The write queue: one uv_write in flight (either a Lua string kept in
  ** the transport's user values, or inflight.base), then pending bytes.
  ** The request is allocated by the first write that has to wait and kept
  ** until the stream is freed; connect and shutdown requests are
  ** allocated for their call and freed in their callbacks (libuv runs
  ** those before the close callback). */
  uv_write_t *wreq;
  uv_buf_t inflight; /* what the in-flight uv_write sends */
  char *ibuf;        /* owned buffer behind inflight, or NULL */
  size_t icap;
  char *pbuf; /* pending bytes, not yet handed to libuv */
  size_t plen, pcap;
  /* Filter (TLS) and its state. */
  const sp_stream_filter *filter;
  void *filter_data;
  /* Owner hooks (client connector, StandardIO relay). */
  sp_stream_connected_fn on_connect;
  sp_stream_lost_fn on_lost;
  void *owner;
  char *peerpath, *hostpath; /* Unix socket paths (malloc'd), or NULL */
  struct sockaddr_in6 peer6; /* an IPv6 peer (SF_PEER6) */
  /* For the inspector (inspect.h): bytes read and handed to the kernel. */
  uint64_t nin, nout;
} stream_x;

/* A stream: the few fields every connection needs, then the libuv handle,
** allocated at the size of its kind (a TCP stream is 16 bytes more than
** its uv_tcp_t). The handle's data field points to the side block
** (stream_x, or NULL); the stream is found from its handle by address
** (stream_of). The open stream is found by the loop through its
** transport's registry reference (stream_shutdown, stream_rows walk the
** registry), so it needs no list of its own. The host address is asked
** of the socket while it is open and kept in the transport's user values
** once it closes; the peer's is kept here (an IPv4 one) or in x, since a
** reset socket no longer knows it. */
struct sp_stream {
  int ref;        /* registry ref to the transport userdata */
  unsigned flags; /* SF_* */
  uint32_t peer4; /* an IPv4 peer (SF_PEER4): address, network order */
  uint16_t port4; /* ... and port, network order */
  uint8_t kind;   /* SP_STREAM_TCP .. SP_STREAM_TTY */
  uint8_t state;  /* ST_CONNECTING .. ST_CLOSED */
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_tty_t tty;
  } h; /* last: allocated at the size of its kind */
};

/* The side block of s (stream_x_get makes it), or NULL. */
#define SX(s) ((stream_x *)(s)->h.handle.data)

/* The stream whose handle is h. */
static sp_stream *stream_of(const void *h) {
  return (sp_stream *)((char *)h - offsetof(sp_stream, h));
}

/* Stream states. */
enum { ST_CONNECTING, ST_OPEN, ST_CLOSING, ST_CLOSED };

/* Flags. */
#define SF_PAUSED 0x001         /* pauseProducing(): not reading */
#define SF_READ_EOF 0x002       /* the peer half-closed; not reading */
#define SF_DISCONNECTING 0x004  /* loseConnection(): close once drained */
#define SF_WDISCONNECTING 0x008 /* loseWriteConnection() pending */
#define SF_WDISCONNECTED 0x010  /* our write half is shut down */
#define SF_PRODUCER 0x020       /* a producer is registered */
#define SF_STREAMING 0x040      /* ... and it is a streaming one */
#define SF_PPAUSED 0x080        /* ... and we paused it */
#define SF_INFLIGHT 0x100       /* a uv_write is in flight */
#define SF_ANCHOR 0x200         /* ... pointing into an anchored string */
#define SF_FINISHED 0x400       /* filter->finish was called */
#define SF_READING 0x800        /* uv_read_start is in effect */
#define SF_THROTTLED 0x1000     /* not reading: the write queue is too long */

/* Past this many queued bytes the transport stops reading from the peer
** until its queue drains: a peer that sends without ever reading (to an
** echo-like protocol) cannot grow our memory without bound. Twisted has no
** such limit; it is far above what any producer-driven writer queues. */
#define READ_THROTTLE (64 * 1024 * 1024)
#define SF_CORKED 0x2000    /* inside dataReceived: writes are batched */
#define SF_FWAIT 0x4000     /* filter->finish said SP_FILTER_WAIT */
#define SF_NODIRECT 0x8000  /* last read: dataReceived was not direct_fn's */
#define SF_LAST 0x10000     /* sp_stream_write_last: any close is clean */
#define SF_WSHUT 0x20000    /* our write half's shutdown completed */
#define SF_FHOLD 0x40000    /* the filter holds writes: producer stays paused */
#define SF_ACCEPTED 0x80000 /* made by sp_stream_accept */
#define SF_PEER4 0x100000   /* the peer is peer4:port4 */
#define SF_PEER6 0x200000   /* the peer is x->peer6 */
#define SF_EXTRA 0x400000   /* the transport's values are in its table */

/* Lua values a transport userdata keeps. It has one user value: the
** protocol, until any other value is kept; from then on a table made for
** that (transport_ud.extra says which) holding them all at these indexes,
** so that an idle connection's userdata carries one slot: the anchored
** string of a write in flight, the producer, the close reason, the owner
** (Connector), and the addresses, kept there once the connection closes. */
enum {
  UV_PROTO = 1,
  UV_ANCHOR,
  UV_PRODUCER,
  UV_REASON,
  UV_OWNER,
  UV_PEER,
  UV_HOST /* the last */
};

typedef struct transport_ud {
  sp_stream *s;
  uint32_t born; /* uv_now() in ms at sp_stream_open, modulo 2^32 */
  uint8_t kind;
  uint8_t extra; /* the user value is the table of UV_* values */
} transport_ud;

/* [-0, +1, -] Push value n of the transport userdata at idx; returns its
** type. */
static int ud_get(lua_State *L, int idx, int n) {
  const transport_ud *t = lua_touserdata(L, idx);
  if (!t->extra) {
    if (n == UV_PROTO) return lua_getiuservalue(L, idx, 1);
    lua_pushnil(L);
    return LUA_TNIL;
  }
  lua_getiuservalue(L, idx, 1);
  n = lua_rawgeti(L, -1, n);
  lua_remove(L, -2);
  return n;
}

/* [-1, +0, m] Pop the top value into value n of the transport userdata
** at idx. */
static void ud_set(lua_State *L, int idx, int n) {
  transport_ud *t;
  idx = lua_absindex(L, idx);
  t = lua_touserdata(L, idx);
  if (t->extra) {
    lua_getiuservalue(L, idx, 1);
  } else if (n == UV_PROTO) {
    lua_setiuservalue(L, idx, 1);
    return;
  } else if (lua_isnil(L, -1)) { /* nothing to forget */
    lua_pop(L, 1);
    return;
  } else {
    lua_createtable(L, UV_HOST, 0);
    lua_getiuservalue(L, idx, 1);
    lua_rawseti(L, -2, UV_PROTO);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, idx, 1);
    t->extra = 1;
    if (t->s != NULL) t->s->flags |= SF_EXTRA; /* push_uv's hint */
  }
  lua_insert(L, -2);
  lua_rawseti(L, -2, n);
  lua_pop(L, 1);
}

/* The transport metatable (set by sp_stream_init), to recognise
** transports without a registry lookup on hot paths. */
static const void *transport_mt = NULL;

/* ---------------------------------------------------------------- pool */

#define READBUF_SIZE (64 * 1024)
#define POOL_MAX 8

static char *pool[POOL_MAX];
static int npool = 0;

static void pool_free_all(lua_State *L) {
  (void)L;
  while (npool > 0) free(pool[--npool]);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  char *b = npool > 0 ? pool[--npool] : malloc(READBUF_SIZE);
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(b, b != NULL ? READBUF_SIZE : 0);
}

static void pool_put(char *b) {
  if (b == NULL) return;
  if (npool < POOL_MAX)
    pool[npool++] = b;
  else
    free(b);
}

/* The read buffers are freed at exit through the live registry, in its
** last phase (SP_LIVE_MEMORY): after every stream's shutdown, once
** nothing reads any more. */
static void pool_shutdown(lua_State *L, sp_live *n) {
  (void)n;
  pool_free_all(L);
}

static sp_live pool_live = {NULL, NULL, pool_shutdown, SP_LIVE_MEMORY};

/* ------------------------------------------------------- alloc, free */

static void stream_later(lua_State *L, sp_loop_later *n);

/* Bytes of a stream of `kind`: the fields, then its handle. */
static size_t stream_size(int kind) {
  size_t h = kind == SP_STREAM_TCP   ? sizeof(uv_tcp_t)
             : kind == SP_STREAM_TTY ? sizeof(uv_tty_t)
                                     : sizeof(uv_pipe_t);
  return offsetof(sp_stream, h) + h;
}

/* Allocate a stream of `kind` and init its handle on sp_loop() (a TTY
** stream on descriptor fd; other kinds ignore fd). Returns NULL (with
** *err set to a libuv error) on failure; nothing to release then. */
static sp_stream *stream_alloc(int kind, int fd, int *err) {
  sp_stream *s = calloc(1, stream_size(kind));
  int r;
  if (s == NULL) {
    *err = UV_ENOMEM;
    return NULL;
  }
  s->kind = (uint8_t)kind;
  s->ref = LUA_NOREF;
  s->state = ST_CONNECTING;
  if (kind == SP_STREAM_TCP)
    r = uv_tcp_init(sp_loop(), &s->h.tcp);
  else if (kind == SP_STREAM_TTY)
    r = uv_tty_init(sp_loop(), &s->h.tty, fd, fd == 0);
  else
    r = uv_pipe_init(sp_loop(), &s->h.pipe, 0);
  if (r < 0) { /* libuv fails before the handle joins the loop */
    free(s);
    *err = r;
    return NULL;
  }
  s->h.handle.data = NULL; /* no side block yet */
  return s;
}

/* The side block of s, made now if it has none; NULL when out of memory
** (the caller then loses the connection, or fails its call, with
** UV_ENOMEM). */
static stream_x *stream_x_make(sp_stream *s) {
  stream_x *x = calloc(1, sizeof *x);
  if (x != NULL) {
    x->s = s;
    x->later.run = stream_later;
    s->h.handle.data = x;
  }
  return x;
}

static inline stream_x *stream_x_get(sp_stream *s) {
  return SX(s) != NULL ? SX(s) : stream_x_make(s);
}

static void stream_free(sp_stream *s) {
  stream_x *x = SX(s);
  if (x != NULL) {
    sp_loop_after_due_cancel(&x->later);
    if (x->filter != NULL && x->filter->free != NULL)
      x->filter->free(x->filter_data);
    free(x->wreq);
    free(x->ibuf);
    free(x->pbuf);
    free(x->peerpath);
    free(x->hostpath);
    free(x);
  }
  free(s);
}

static void discarded_cb(uv_handle_t *h) {
  stream_free(stream_of(h));
}

sp_stream *sp_stream_open_fd(int fd, int kind, int *err) {
  sp_stream *s = stream_alloc(kind, fd, err);
  int r;
  if (s == NULL) return NULL;
  /* Its side block now: these few streams get an owner (stdio.c). */
  r = stream_x_get(s) == NULL ? UV_ENOMEM : 0;
  if (r == 0 && kind != SP_STREAM_TTY) r = uv_pipe_open(&s->h.pipe, fd);
  if (r < 0) {
    sp_stream_discard(s);
    *err = r;
    return NULL;
  }
  return s;
}

void sp_stream_discard(sp_stream *s) {
  if (uv_is_closing(&s->h.handle)) return;
  s->state = ST_CLOSING;
  uv_close(&s->h.handle, discarded_cb);
}

static void connect_cb(uv_connect_t *req, int status) {
  sp_stream *s = stream_of(req->handle);
  free(req);
  /* An abandoned attempt (no owner) only waits for its close. */
  if (SX(s)->owner == NULL || status == UV_ECANCELED) return;
  SX(s)->on_connect(s, status);
}

sp_stream *sp_stream_accept(uv_stream_t *server, int kind, int *err) {
  sp_stream *s = stream_alloc(kind, -1, err);
  int r;
  if (s == NULL) return NULL;
  s->flags |= SF_ACCEPTED;
  r = uv_accept(server, &s->h.stream);
  if (r != 0) {
    sp_stream_discard(s);
    *err = r;
    return NULL;
  }
  return s;
}

sp_stream *sp_stream_connect_tcp(const struct sockaddr *bind,
                                 const struct sockaddr *to, void *owner,
                                 sp_stream_connected_fn done, int *err) {
  sp_stream *s = stream_alloc(SP_STREAM_TCP, -1, err);
  uv_connect_t *req;
  int r = 0;
  if (s == NULL) return NULL;
  req = malloc(sizeof *req);
  if (req == NULL || stream_x_get(s) == NULL) r = UV_ENOMEM;
  if (r == 0 && bind != NULL) r = uv_tcp_bind(&s->h.tcp, bind, 0);
  if (r == 0) r = uv_tcp_connect(req, &s->h.tcp, to, connect_cb);
  if (r < 0) {
    free(req); /* its callback never runs */
    sp_stream_discard(s);
    *err = r;
    return NULL;
  }
  SX(s)->owner = owner;
  SX(s)->on_connect = done;
  return s;
}

sp_stream *sp_stream_connect_unix(const char *path, void *owner,
                                  sp_stream_connected_fn done, int *err) {
  sp_stream *s;
  uv_connect_t *req;
  if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    *err = UV_ENAMETOOLONG;
    return NULL;
  }
  req = malloc(sizeof *req);
  if (req == NULL) {
    *err = UV_ENOMEM;
    return NULL;
  }
  s = stream_alloc(SP_STREAM_UNIX, -1, err);
  if (s == NULL || stream_x_get(s) == NULL) {
    if (s != NULL) {
      sp_stream_discard(s);
      *err = UV_ENOMEM;
    }
    free(req);
    return NULL;
  }
  SX(s)->owner = owner;
  SX(s)->on_connect = done;
  uv_pipe_connect(req, &s->h.pipe, path, connect_cb); /* always calls back */
  return s;
}

void sp_stream_set_owner(sp_stream *s, void *owner, sp_stream_lost_fn lost) {
  /* Streams that may have an owner were made with their side block
  ** (stream.h); for the others this only detaches. */
  if (SX(s) == NULL) return;
  SX(s)->owner = owner;
  SX(s)->on_lost = lost;
}

void *sp_stream_owner(const sp_stream *s) {
  return SX(s) != NULL ? SX(s)->owner : NULL;
}

int sp_stream_set_filter(sp_stream *s, const sp_stream_filter *f, void *data) {
  if (stream_x_get(s) == NULL) {
    if (f->free != NULL) f->free(data);
    return UV_ENOMEM;
  }
  SX(s)->filter = f;
  SX(s)->filter_data = data;
  return 0;
}

void *sp_stream_filter_data(const sp_stream *s, const sp_stream_filter *f) {
  if (s == NULL || SX(s) == NULL || SX(s)->filter == NULL) return NULL;
  return f == NULL || SX(s)->filter == f ? SX(s)->filter_data : NULL;
}

int sp_stream_kind(const sp_stream *s) {
  return s->kind;
}

int sp_stream_fileno(const sp_stream *s, uv_os_fd_t *fd) {
  return uv_fileno(&s->h.handle, fd);
}

/* Pending bytes not yet handed to libuv. */
static size_t pending_len(const sp_stream *s) {
  return SX(s) != NULL ? SX(s)->plen : 0;
}

/* The filter of s, or NULL. */
static const sp_stream_filter *stream_filter(const sp_stream *s) {
  return SX(s) != NULL ? SX(s)->filter : NULL;
}

size_t sp_stream_queued(const sp_stream *s) {
  return s->h.stream.write_queue_size + pending_len(s);
}

/* [-0, +1, m] The transports of the open streams, in a new array at the
** top: the inspector finds them through their registry references
** (nothing else lists them; registry_next_open, which streams_shutdown
** shares), in the registry's order. */
static void push_open_streams(lua_State *L);

/* ------------------------------------------------------ Lua helpers */

void sp_stream_push_transport(lua_State *L, sp_stream *s) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref);
}

/* [-0, +1, -] Push user value n of the stream's transport. */
static int push_uv(lua_State *L, sp_stream *s, int n) {
  int t;
  sp_stream_push_transport(L, s);
  if (n == UV_PROTO && !(s->flags & SF_EXTRA)) /* each read: no ud_get */
    t = lua_getiuservalue(L, -1, 1);
  else
    t = ud_get(L, -1, n);
  lua_replace(L, -2); /* over the transport (cheaper than lua_remove) */
  return t;
}

/* [-1, +0, -] Pop the top value into user value n of the transport. */
static void set_uv(lua_State *L, sp_stream *s, int n) {
  sp_stream_push_transport(L, s);
  lua_insert(L, -2);
  ud_set(L, -2, n);
  lua_pop(L, 1);
}

void sp_stream_set_owner_value(lua_State *L, sp_stream *s) {
  set_uv(L, s, UV_OWNER);
}

void sp_stream_push_owner_value(lua_State *L, sp_stream *s) {
  push_uv(L, s, UV_OWNER);
}

/* [-nargs, +(0|1), -] sp_callmethod, keeping only a Failure: returns
** 1 with the Failure on top after an error, else 0 with nothing pushed. */
static int call_method(lua_State *L, int objidx, const char *method,
                       int nargs) {
  if (sp_callmethod(L, objidx, method, nargs) == SP_CALL_ERROR) return 1;
  lua_pop(L, 1);
  return 0;
}

void sp_stream_pusherror(lua_State *L, int why, const char *detail, int code) {
  static const char *const keys[] = {"reactor.ConnectionDone",
                                     "reactor.ConnectionLost",
                                     "reactor.ConnectionAborted"};
  static const char *const texts[] = {
      "Connection was closed cleanly",
      "Connection to the other side was lost in a non-clean fashion",
      "Connection was aborted locally using abortConnection"};
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, texts[why]);
  if (detail != NULL) {
    luaL_addstring(&b, ": ");
    luaL_addstring(&b, detail);
  }
  if (code != 0) {
    lua_pushfstring(L, ": %s (%s)", uv_strerror(code), uv_err_name(code));
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '.');
  luaL_pushresult(&b);
  sp_errortype_make(L, keys[why], lua_tostring(L, -1));
  lua_remove(L, -2);
  if (code != 0) {
    lua_pushstring(L, uv_err_name(code));
    lua_setfield(L, -2, "code");
  }
}

/* ---------------------------------------------------------- closing */

static void closed_cb(uv_handle_t *h);

/* (stream) -> (): keep the addresses in the transport of the stream being
** closed, so that getPeer/getHost answer from then on. Run protected: a
** memory error only loses them. */
static int keep_addrs(lua_State *L) {
  sp_stream *s = lua_touserdata(L, 1);
  sp_stream_push_transport(L, s);
  sp_stream_pushaddr(L, s, 1);
  ud_set(L, 2, UV_PEER);
  sp_stream_pushaddr(L, s, 0);
  ud_set(L, 2, UV_HOST);
  return 0;
}

/* [-1, +0, -] Close the stream with the reason on top of the stack (any
** error value; it becomes a Failure). Later calls are ignored. */
static void stream_close(lua_State *L, sp_stream *s) {
  if (s->state != ST_OPEN) {
    lua_pop(L, 1);
    return;
  }
  /* The socket answers for its addresses until uv_close closes it. */
  if (s->ref != LUA_NOREF) sp_run_protected(L, keep_addrs, s);
  sp_failure_new(L, -1, NULL, 0);
  lua_remove(L, -2);
  set_uv(L, s, UV_REASON);
  s->state = ST_CLOSING;
  uv_close(&s->h.handle, closed_cb);
}

void sp_stream_lose(lua_State *L, sp_stream *s, int idx, int code) {
  if (s->flags & SF_LAST) /* after write_last, every close is clean */
    sp_stream_pusherror(L, SP_LOST_DONE, NULL, 0);
  else if (idx != 0)
    lua_pushvalue(L, idx);
  else
    sp_stream_pusherror(L, SP_LOST_NONCLEAN, NULL, code);
  stream_close(L, s);
}

static void stream_done(lua_State *L, sp_stream *s) {
  sp_stream_pusherror(L, SP_LOST_DONE, NULL, 0);
  stream_close(L, s);
}

/* What a libuv callback hands its Lua half (stream_run). */
typedef struct cb_args {
  sp_stream *s;
  ssize_t n;           /* read_cb: nread; write_cb, shutdown_cb: status */
  const uv_buf_t *buf; /* read_cb: the bytes read */
} cb_args;

/* (stream) -> (): lose the connection (ConnectionLost). */
static int lose_tramp(lua_State *L) {
  sp_stream_lose(L, lua_touserdata(L, 1), 0, 0);
  return 0;
}

void sp_stream_lose_protected(lua_State *L, sp_stream *s) {
  sp_run_protected(L, lose_tramp, s);
}

/* [-0, +0, -] The Lua half of a libuv callback on a->s, fn(a), protected
** (libuv callbacks must never raise): an error (a memory error, as the
** rest is protected already) is logged and loses the connection if it
** is still open; the stream is freed by its close callback as ever. */
static void stream_run(lua_State *L, lua_CFunction fn, cb_args *a) {
  if (sp_run_protected(L, fn, a) != LUA_OK && a->s->state == ST_OPEN)
    sp_stream_lose_protected(L, a->s);
}

/* (cb_args) -> (): producer:stopProducing(),
** protocol:connectionLost(reason), the owner's hook. */
static int closed_tell(lua_State *L) {
  sp_stream *s = ((cb_args *)lua_touserdata(L, 1))->s;
  int reason;
  sp_stream_push_transport(L, s);
  ud_get(L, 2, UV_REASON);
  reason = lua_gettop(L);
  if (ud_get(L, 2, UV_PRODUCER) != LUA_TNIL) {
    lua_pushnil(L);
    ud_set(L, 2, UV_PRODUCER);
    call_method(L, -1, "stopProducing", 0);
  }
  lua_settop(L, reason);
  if (ud_get(L, 2, UV_PROTO) != LUA_TNIL) {
    lua_pushvalue(L, reason);
    call_method(L, -2, "connectionLost", 1);
  }
  lua_settop(L, reason);
  if (SX(s) != NULL && SX(s)->on_lost != NULL) SX(s)->on_lost(s, L);
  return 0;
}

/* Accepted streams with a transport whose connectionLost has not run. */
static int accepted_open = 0;

int sp_stream_accepted_open(void) {
  return accepted_open;
}

/* The handle is closed: tell the producer, the protocol and the owner,
** then free. The Lua half runs protected; the stream is freed whatever it
** raised. */
static void closed_cb(uv_handle_t *h) {
  sp_stream *s = stream_of(h);
  lua_State *L = sp_loop_state();
  cb_args a = {s, 0, NULL};
  transport_ud *t;
  sp_stream_push_transport(L, s);
  t = lua_touserdata(L, -1);
  t->s = NULL;
  lua_pop(L, 1);
  s->state = ST_CLOSED;
  stream_run(L, closed_tell, &a);
  if (s->flags & SF_ACCEPTED) accepted_open--;
  luaL_unref(L, LUA_REGISTRYINDEX, s->ref);
  stream_free(s);
}

/* [-1, +(2|0), -] lua_next over the registry from the key on top,
** stepping over everything but the transports of open streams: pushes
** the next one's key and transport and returns its stream, or returns
** NULL with nothing pushed at the end. Allocates nothing (streams_shutdown
** runs unprotected); the caller pops the transport before the next step. */
static sp_stream *registry_next_open(lua_State *L) {
  while (lua_next(L, LUA_REGISTRYINDEX)) {
    const transport_ud *t = sp_transport_test(L, -1);
    if (t != NULL && t->s != NULL && t->s->state == ST_OPEN &&
        lua_type(L, -2) == LUA_TNUMBER)
      return t->s;
    lua_pop(L, 1);
  }
  return NULL;
}

static void push_open_streams(lua_State *L) {
  lua_Integer n = 0;
  lua_newtable(L);
  lua_pushnil(L);
  while (registry_next_open(L) != NULL) lua_rawseti(L, -3, ++n);
}

/* At exit every open connection is lost (twisted's reactor
** disconnectAll); an attempt still connecting is dropped by its
** connector. One entry in loop.c's live registry stands for every
** stream, moved to the newest place each time one opens (sp_stream_open),
** so that streams close before the ports and connectors made earlier.
** Runs unprotected (sp_shutdown), so it allocates nothing itself: the
** registry is walked with lua_next (a loss adds no key: the reference
** goes in closed_cb, later), each loss runs protected, and a stream whose
** loss hit a memory error is closed with no reason for connectionLost. */
static void streams_shutdown(lua_State *L, sp_live *n) {
  sp_stream *s;
  (void)n;
  lua_pushnil(L);
  while ((s = registry_next_open(L)) != NULL) {
    sp_stream_lose_protected(L, s);
    if (s->state == ST_OPEN) {
      s->state = ST_CLOSING;
      uv_close(&s->h.handle, closed_cb);
    }
    lua_pop(L, 1);
  }
}

static sp_live streams_live = {NULL, NULL, streams_shutdown, SP_LIVE_HANDLE};

/* ---------------------------------------------------------- reading */

static void read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf);

static void reading_update(sp_stream *s) {
  /* A closing stream stops reading, unless its filter still needs the
  ** peer's bytes to finish (a TLS handshake under way). */
  int want = s->state == ST_OPEN &&
             !(s->flags & (SF_PAUSED | SF_READ_EOF | SF_THROTTLED)) &&
             (!(s->flags & SF_DISCONNECTING) || (s->flags & SF_FWAIT));
  if (want && !(s->flags & SF_READING)) {
    if (uv_read_start(&s->h.stream, alloc_cb, read_cb) == 0)
      s->flags |= SF_READING;
  } else if (!want && (s->flags & SF_READING)) {
    uv_read_stop(&s->h.stream);
    s->flags &= ~SF_READING;
  }
}

/* The C dataReceived methods that take reads without a Lua string, and
** how (one pair per module: basic.c's LineReceiver, http.c's channel). */
#define DIRECT_MAX 4
static struct {
  lua_CFunction method;
  sp_direct_fn fn;
} directs[DIRECT_MAX];
static int ndirect = 0;

/* The direct function for dataReceived method m, or NULL. */
static sp_direct_fn direct_find(lua_CFunction m) {
  for (int i = 0; i < ndirect; i++)
    if (directs[i].method == m) return directs[i].fn;
  return NULL;
}

/* (protocol, data) or (protocol, bytes, length) with bytes a light
** userdata (a read buffer, see deliver) -> direct: calls
** protocol:dataReceived(data), looked up on each read (inside the
** protected call) so that replacing the method works. When it is the
** registered C method, bytes go to direct_fn without a Lua string.
** Returns whether the method was that one (deliver's hint for the next
** read). */
static int deliver_tramp(lua_State *L) {
  sp_direct_fn direct_fn;
  int direct;
  lua_getfield(L, 1, "dataReceived");
  direct_fn = ndirect > 0 ? direct_find(lua_tocfunction(L, -1)) : NULL;
  direct = direct_fn != NULL;
  if (lua_type(L, 2) == LUA_TLIGHTUSERDATA) {
    const char *data = lua_touserdata(L, 2);
    size_t len = (size_t)lua_tointeger(L, 3);
    if (direct) {
      lua_settop(L, 1);
      direct_fn(L, data, len);
      lua_pushboolean(L, 1);
      return 1;
    }
    lua_pushlstring(L, data, len);
    lua_replace(L, 2);
    lua_replace(L, 3);
  }
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 0);
  lua_pushboolean(L, direct);
  return 1;
}

static int flush_pending(lua_State *L, sp_stream *s);
static int pull_producer(const sp_stream *s);
static void stream_drained(lua_State *L, sp_stream *s);

/* After a corked dataReceived: hand the batch to the kernel with
** uv_try_write (no write request, no completion callback, as a raw libuv
** server does) and queue only what it refuses. */
static void flush_corked(lua_State *L, sp_stream *s) {
  stream_x *x = SX(s); /* there are pending bytes */
  uv_buf_t b = uv_buf_init(x->pbuf, (unsigned)x->plen);
  int w = pull_producer(s) || x->plen > UINT32_MAX
              ? 0
              : uv_try_write(&s->h.stream, &b, 1);
  if (w == UV_EAGAIN || w == UV_ENOSYS) w = 0;
  if (w < 0) {
    sp_stream_lose(L, s, 0, w);
    return;
  }
  x->nout += (uint64_t)w;
  if ((size_t)w < x->plen) {
    memmove(x->pbuf, x->pbuf + w, x->plen - (size_t)w);
    x->plen -= (size_t)w;
    flush_pending(L, s);
    return;
  }
  x->plen = 0;
  if (s->flags & SF_PPAUSED) stream_drained(L, s);
}

void sp_stream_set_direct(lua_CFunction method, sp_direct_fn direct) {
  for (int i = 0; i < ndirect; i++) {
    if (directs[i].method == method) {
      directs[i].fn = direct;
      return;
    }
  }
  if (ndirect < DIRECT_MAX) {
    directs[ndirect].method = method;
    directs[ndirect].fn = direct;
    ndirect++;
  }
}

/* sp_stream_deliver; with `direct`, data stays valid until this returns
** (a read buffer, not a filter's), so a registered C dataReceived may
** take it without a Lua string being made. */
static int deliver(lua_State *L, sp_stream *s, const char *data, size_t len,
                   int direct) {
  int r, eh, nargs = 2;
  if (s->state != ST_OPEN) return -1;
  /* sp_pcall, with the handler pushed first rather than rotated in. */
  lua_pushcfunction(L, sp_errhandler);
  eh = lua_gettop(L);
  lua_pushcfunction(L, deliver_tramp);
  push_uv(L, s, UV_PROTO);
  if (direct && ndirect > 0 && !(s->flags & SF_NODIRECT) &&
      len <= LUA_MAXINTEGER) {
    lua_pushlightuserdata(L, (void *)data);
    lua_pushinteger(L, (lua_Integer)len);
    nargs = 3;
  } else {
    lua_pushlstring(L, data, len);
  }
  /* Writes made by dataReceived (a LineReceiver's sendLine per line) are
  ** copied to the pending buffer and go out as one write after it
  ** returns, as Twisted's transport writes on the next reactor turn. */
  s->flags |= SF_CORKED;
  r = lua_pcall(L, nargs, 1, eh);
  s->flags &= ~SF_CORKED;
  if (r != LUA_OK) {
    sp_log_failure(L, -1, "Unhandled Error");
    stream_close(L, s);
    lua_pop(L, 1); /* the handler */
    return -1;
  }
  if (lua_toboolean(L, -1))
    s->flags &= ~SF_NODIRECT;
  else
    s->flags |= SF_NODIRECT;
  lua_pop(L, 2); /* the hint, the handler */
  if (s->state == ST_OPEN && pending_len(s) > 0 && !(s->flags & SF_INFLIGHT))
    flush_corked(L, s);
  return s->state == ST_OPEN ? 0 : -1;
}

int sp_stream_deliver(lua_State *L, sp_stream *s, const char *data,
                      size_t len) {
  return deliver(L, s, data, len, 0);
}

static void check_both_halves(lua_State *L, sp_stream *s);

/* The peer shut down its write half: a protocol with readConnectionLost
** keeps the connection half open (twisted IHalfCloseableProtocol). */
static void stream_eof(lua_State *L, sp_stream *s) {
  int top = lua_gettop(L);
  s->flags |= SF_READ_EOF;
  reading_update(s);
  const sp_stream_filter *f = stream_filter(s);
  if (f != NULL && f->eof != NULL && f->eof(L, s)) return;
  push_uv(L, s, UV_PROTO);
  switch (sp_callmethod(L, -1, "readConnectionLost", 0)) {
    case SP_CALL_ERROR:
      stream_close(L, s);
      break;
    case SP_CALL_MISSING:
      stream_done(L, s);
      break;
  }
  lua_settop(L, top);
  check_both_halves(L, s);
}

/* (cb_args) -> (): the Lua half of read_cb. */
static int read_tramp(lua_State *L) {
  cb_args *a = lua_touserdata(L, 1);
  sp_stream *s = a->s;
  ssize_t nread = a->n;
  const uv_buf_t *buf = a->buf;
  if (nread > 0) {
    /* A connection that reads gets its side block (the counters). */
    stream_x *x = stream_x_get(s);
    if (x == NULL) {
      sp_stream_lose(L, s, 0, UV_ENOMEM);
      return 0;
    }
    x->nin += (uint64_t)nread;
    if (x->filter != NULL && x->filter->read != NULL) {
      int r = x->filter->read(L, s, buf->base, (size_t)nread);
      if (r < 0) sp_stream_lose(L, s, 0, r);
    } else {
      deliver(L, s, buf->base, (size_t)nread, 1);
    }
  } else if (nread == UV_EOF) {
    stream_eof(L, s);
  } else if (nread < 0) {
    sp_stream_lose(L, s, 0, (int)nread);
  }
  return 0;
}

static void read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  cb_args a = {stream_of(h), nread, buf};
  stream_run(sp_loop_state(), read_tramp, &a);
  pool_put(buf->base);
}

/* ---------------------------------------------------------- writing */

/* uv_buf_init takes an unsigned int length; strings may be longer. */
static uv_buf_t mkbuf(char *base, size_t len) {
  uv_buf_t b;
  b.base = base;
  b.len = len;
  return b;
}

static void write_cb(uv_write_t *req, int status);
static void stream_drained(lua_State *L, sp_stream *s);

/* Call the producer's method `name` (pauseProducing, resumeProducing),
** protected: an error is logged and loses the connection. */
static void producer_call(lua_State *L, sp_stream *s, const char *name) {
  int top = lua_gettop(L);
  push_uv(L, s, UV_PRODUCER);
  if (lua_type(L, -1) != LUA_TNIL && call_method(L, -1, name, 0))
    stream_close(L, s);
  lua_settop(L, top);
}

static void check_highwater(lua_State *L, sp_stream *s) {
  if (!(s->flags & SF_THROTTLED) && sp_stream_queued(s) > READ_THROTTLE) {
    s->flags |= SF_THROTTLED;
    reading_update(s);
  }
  if ((s->flags & (SF_PRODUCER | SF_STREAMING | SF_PPAUSED)) ==
          (SF_PRODUCER | SF_STREAMING) &&
      sp_stream_queued(s) > SP_STREAM_HIGHWATER) {
    s->flags |= SF_PPAUSED;
    producer_call(L, s, "pauseProducing");
  }
}

/* A pull producer must hear about every drain, so its writes always go
** through uv_write (whose callback reports the drain). */
static int pull_producer(const sp_stream *s) {
  return (s->flags & (SF_PRODUCER | SF_STREAMING)) == SF_PRODUCER;
}

/* Start the uv_write of x->inflight (s has its side block). */
static int start_write(lua_State *L, sp_stream *s) {
  stream_x *x = SX(s);
  int r;
  if (x->wreq == NULL && (x->wreq = malloc(sizeof *x->wreq)) == NULL) {
    r = UV_ENOMEM;
  } else {
    r = uv_write(x->wreq, &s->h.stream, &x->inflight, 1, write_cb);
  }
  if (r < 0) {
    s->flags &= ~(SF_INFLIGHT | SF_ANCHOR);
    sp_stream_lose(L, s, 0, r);
    return r;
  }
  s->flags |= SF_INFLIGHT;
  return 0;
}

/* Send the pending buffer as the next in-flight write. */
static int flush_pending(lua_State *L, sp_stream *s) {
  stream_x *x = SX(s); /* there are pending bytes */
  char *b = x->ibuf;
  size_t c = x->icap;
  x->ibuf = x->pbuf;
  x->icap = x->pcap;
  x->pbuf = b;
  x->pcap = c;
  x->inflight = mkbuf(x->ibuf, x->plen);
  x->plen = 0;
  s->flags &= ~SF_ANCHOR;
  return start_write(L, s);
}

/* Append bufs (skipping the first `skip` bytes) to the pending buffer. */
static int queue_copy(lua_State *L, sp_stream *s, const uv_buf_t *bufs,
                      unsigned n, size_t skip) {
  stream_x *x = stream_x_get(s);
  size_t total = 0;
  unsigned i;
  for (i = 0; i < n; i++) total += bufs[i].len;
  total -= skip;
  if (x == NULL || x->plen + total > x->pcap) {
    size_t cap = x != NULL && x->pcap ? x->pcap : 4096;
    char *nb = NULL;
    if (x != NULL) {
      while (cap < x->plen + total) cap *= 2;
      nb = realloc(x->pbuf, cap);
    }
    if (nb == NULL) {
      sp_stream_lose(L, s, 0, UV_ENOMEM);
      return UV_ENOMEM;
    }
    x->pbuf = nb;
    x->pcap = cap;
  }
  for (i = 0; i < n; i++) {
    size_t len = bufs[i].len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    memcpy(x->pbuf + x->plen, bufs[i].base + skip, len - skip);
    x->plen += len - skip;
    skip = 0;
  }
  if (!(s->flags & (SF_INFLIGHT | SF_CORKED))) return flush_pending(L, s);
  return 0;
}

/* uv_try_write when nothing is queued; returns bytes taken (0..total) or
** a negative error other than EAGAIN. A stream that writes gets its side
** block (the counters, the queue for what the kernel refuses). */
static int try_write(sp_stream *s, const uv_buf_t *bufs, unsigned n) {
  int r;
  if ((s->flags & (SF_INFLIGHT | SF_CORKED)) || pending_len(s) > 0 ||
      pull_producer(s))
    return 0;
  if (stream_x_get(s) == NULL) return UV_ENOMEM;
  r = uv_try_write(&s->h.stream, bufs, n);
  if (r == UV_EAGAIN || r == UV_ENOSYS) return 0;
  if (r > 0) SX(s)->nout += (uint64_t)r;
  return r;
}

int sp_stream_write_raw(lua_State *L, sp_stream *s, const uv_buf_t *bufs,
                        unsigned nbufs) {
  size_t total = 0;
  unsigned i;
  int r;
  if (s->state != ST_OPEN) return UV_EPIPE;
  for (i = 0; i < nbufs; i++) total += bufs[i].len;
  if (total == 0) return 0;
  r = try_write(s, bufs, nbufs);
  if (r < 0) {
    sp_stream_lose(L, s, 0, r);
    return r;
  }
  if ((size_t)r == total) return 0;
  r = queue_copy(L, s, bufs, nbufs, (size_t)r);
  if (r == 0) check_highwater(L, s);
  return r;
}

/* Write the Lua string at idx of L (transport at 1): the bytes the kernel
** refuses go out from the string itself when nothing else is queued. */
static int write_string(lua_State *L, sp_stream *s, int idx) {
  size_t len;
  const char *p = lua_tolstring(L, idx, &len);
  uv_buf_t b = mkbuf((char *)p, len);
  const sp_stream_filter *f = stream_filter(s);
  int r;
  if (f != NULL && f->write != NULL) return f->write(L, s, &b, 1);
  if ((s->flags & (SF_INFLIGHT | SF_CORKED)) || pending_len(s) > 0 ||
      len > UINT32_MAX)
    return sp_stream_write_raw(L, s, &b, 1);
  r = try_write(s, &b, 1);
  if (r < 0) {
    sp_stream_lose(L, s, 0, r);
    return r;
  }
  if ((size_t)r == len) return 0;
  if (stream_x_get(s) == NULL) { /* try_write may have declined at once */
    sp_stream_lose(L, s, 0, UV_ENOMEM);
    return UV_ENOMEM;
  }
  lua_pushvalue(L, idx);
  ud_set(L, 1, UV_ANCHOR);
  SX(s)->inflight = mkbuf((char *)p + r, len - (size_t)r);
  s->flags |= SF_ANCHOR;
  r = start_write(L, s);
  if (r == 0) check_highwater(L, s);
  return r;
}

/* (cb_args) -> (): the Lua half of write_cb. */
static int write_tramp(lua_State *L) {
  cb_args *a = lua_touserdata(L, 1);
  sp_stream *s = a->s;
  int status = (int)a->n;
  if (s->flags & SF_ANCHOR) {
    s->flags &= ~SF_ANCHOR;
    lua_pushnil(L);
    set_uv(L, s, UV_ANCHOR);
  }
  if (s->state != ST_OPEN) return 0;
  if (status < 0) {
    sp_stream_lose(L, s, 0, status);
    return 0;
  }
  /* Do not keep a huge buffer around once a burst is over. */
  if (SX(s)->icap > 1024 * 1024) {
    free(SX(s)->ibuf);
    SX(s)->ibuf = NULL;
    SX(s)->icap = 0;
  }
  if (SX(s)->plen > 0) {
    flush_pending(L, s);
    return 0;
  }
  stream_drained(L, s);
  return 0;
}

static void write_cb(uv_write_t *req, int status) {
  cb_args a = {stream_of(req->handle), status, NULL};
  a.s->flags &= ~SF_INFLIGHT;
  if (status >= 0) SX(a.s)->nout += SX(a.s)->inflight.len;
  stream_run(sp_loop_state(), write_tramp, &a);
}

/* Both halves are down (the peer's EOF read, our shutdown done): the
** connection is over, and closes cleanly as Twisted's does once a
** half-closeable protocol has lost both. */
static void check_both_halves(lua_State *L, sp_stream *s) {
  if (s->state == ST_OPEN && (s->flags & SF_READ_EOF) && (s->flags & SF_WSHUT))
    stream_done(L, s);
}

/* (cb_args) -> (): the Lua half of shutdown_cb. */
static int shutdown_tramp(lua_State *L) {
  cb_args *a = lua_touserdata(L, 1);
  sp_stream *s = a->s;
  int top = lua_gettop(L);
  if (s->state != ST_OPEN) return 0;
  if (a->n < 0) {
    sp_stream_lose(L, s, 0, (int)a->n);
    return 0;
  }
  s->flags |= SF_WSHUT;
  push_uv(L, s, UV_PROTO);
  if (lua_type(L, -1) != LUA_TNIL &&
      call_method(L, -1, "writeConnectionLost", 0))
    stream_close(L, s);
  lua_settop(L, top);
  check_both_halves(L, s);
  return 0;
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  cb_args a = {stream_of(req->handle), status, NULL};
  free(req); /* allocated for this shutdown only */
  stream_run(sp_loop_state(), shutdown_tramp, &a);
}

/* Before the write side ends (loseConnection, loseWriteConnection) the
** filter may queue its last record (TLS close_notify), once. Returns 1
** when the caller must wait: for that record to drain (stream_drained
** comes again), or for the filter to be ready (sp_stream_finish_ready). */
static int filter_last(lua_State *L, sp_stream *s) {
  const sp_stream_filter *f = stream_filter(s);
  int r;
  if (f == NULL || f->finish == NULL || (s->flags & SF_FINISHED)) return 0;
  s->flags |= SF_FINISHED;
  r = f->finish(L, s);
  if (r == SP_FILTER_WAIT) {
    s->flags &= ~SF_FINISHED;
    s->flags |= SF_FWAIT;
    reading_update(s);
    return 1;
  }
  return r && sp_stream_queued(s) > 0;
}

/* Close after loseConnection, once everything (and the filter's last
** record) is written. */
static void stream_finish(lua_State *L, sp_stream *s) {
  if (filter_last(L, s)) return;
  if (s->state == ST_OPEN) stream_done(L, s);
}

/* Nothing is queued: as twisted FileDescriptor.doWrite after the buffer
** empties, resume the producer, or finish a close or half-close, which
** waits for the calls already due (stream_later). */
static void stream_drained(lua_State *L, sp_stream *s) {
  if (s->state != ST_OPEN || (s->flags & SF_INFLIGHT)) return;
  if (s->flags & SF_THROTTLED) {
    s->flags &= ~SF_THROTTLED;
    reading_update(s);
  }
  if ((s->flags & SF_PRODUCER) &&
      (!(s->flags & SF_STREAMING) || (s->flags & SF_PPAUSED))) {
    if (s->flags & SF_FHOLD) return; /* sp_stream_filter_hold resumes */
    s->flags &= ~SF_PPAUSED;
    producer_call(L, s, "resumeProducing");
  } else if (s->flags & (SF_DISCONNECTING | SF_WDISCONNECTING)) {
    if (stream_x_get(s) == NULL)
      sp_stream_lose(L, s, 0, UV_ENOMEM);
    else
      sp_loop_after_due(&SX(s)->later);
  }
}

/* A close or half-close, once the DelayedCalls due in this loop turn have
** run (loop.h): Twisted's reactor runs runUntilCurrent before the
** doWrite that closes, so a callLater(0) made right after loseConnection
** still writes. Anything written meanwhile goes out first: the write's
** completion drains again and links the entry again. */
static int later_tramp(lua_State *L) {
  sp_stream *s = ((cb_args *)lua_touserdata(L, 1))->s;
  int r;
  if (s->state != ST_OPEN || (s->flags & SF_INFLIGHT) ||
      sp_stream_queued(s) > 0)
    return 0;
  if (s->flags & SF_DISCONNECTING) {
    stream_finish(L, s);
  } else if (s->flags & SF_WDISCONNECTING) {
    if (filter_last(L, s) || s->state != ST_OPEN) return 0;
    s->flags &= ~SF_WDISCONNECTING;
    s->flags |= SF_WDISCONNECTED;
    uv_shutdown_t *req = malloc(sizeof *req);
    r = req == NULL ? UV_ENOMEM : uv_shutdown(req, &s->h.stream, shutdown_cb);
    if (r < 0) {
      free(req); /* its callback never runs */
      sp_stream_lose(L, s, 0, r);
    }
  }
  return 0;
}

static void stream_later(lua_State *L, sp_loop_later *n) {
  cb_args a = {((stream_x *)((char *)n - offsetof(stream_x, later)))->s, 0,
               NULL};
  stream_run(L, later_tramp, &a);
}

/* Finish a close or half-close once the queue is written: the pending
** bytes go out now, and the drain that follows (write_cb's, or at once
** when nothing is queued) waits for the due calls. */
static void schedule_drain(lua_State *L, sp_stream *s) {
  if (s->flags & SF_INFLIGHT) return; /* its callback drains */
  if (pending_len(s) > 0) {
    flush_pending(L, s);
    return;
  }
  stream_drained(L, s);
}

void sp_stream_write_last(lua_State *L, sp_stream *s, const uv_buf_t *bufs,
                          unsigned nbufs) {
  if (s->state != ST_OPEN) return;
  s->flags |= SF_LAST | SF_DISCONNECTING | SF_FINISHED;
  reading_update(s);
  if (sp_stream_write_raw(L, s, bufs, nbufs) != 0) return; /* closed */
  if (sp_stream_queued(s) == 0)
    stream_done(L, s);
  else
    schedule_drain(L, s);
}

void sp_stream_filter_hold(lua_State *L, sp_stream *s, int hold) {
  if (s->state != ST_OPEN) return;
  if (hold) {
    s->flags |= SF_FHOLD;
    if ((s->flags & (SF_PRODUCER | SF_STREAMING | SF_PPAUSED)) ==
        (SF_PRODUCER | SF_STREAMING)) {
      s->flags |= SF_PPAUSED;
      producer_call(L, s, "pauseProducing");
    }
    return;
  }
  if (!(s->flags & SF_FHOLD)) return;
  s->flags &= ~SF_FHOLD;
  /* With a write in flight its callback resumes the producer (through
  ** stream_drained, once the queue is empty); otherwise nothing will.
  ** Without a producer there is nothing to resume here (a pending close
  ** goes on as before, on its own drain). */
  if ((s->flags & SF_PRODUCER) && !(s->flags & SF_INFLIGHT) &&
      pending_len(s) == 0)
    stream_drained(L, s);
}

void sp_stream_finish_ready(lua_State *L, sp_stream *s) {
  if (s->state != ST_OPEN || !(s->flags & SF_FWAIT)) return;
  s->flags &= ~SF_FWAIT;
  reading_update(s);
  /* A half-close that finished meanwhile (the filter's held writes went
  ** out and drained): nothing is left to finish, and a write now would
  ** fail with EPIPE. */
  if (s->flags & SF_WDISCONNECTED) return;
  schedule_drain(L, s);
}

/* -------------------------------------------------- opening, addresses */

static char *pipe_name(sp_stream *s, int peer) {
  char buf[256];
  size_t len = sizeof buf;
  int r = peer ? uv_pipe_getpeername(&s->h.pipe, buf, &len)
               : uv_pipe_getsockname(&s->h.pipe, buf, &len);
  char *p;
  if (r < 0 || len == 0) return NULL;
  p = malloc(len + 1);
  if (p != NULL) {
    memcpy(p, buf, len);
    p[len] = '\0';
  }
  return p;
}

/* Keep what the socket says about its peer while it is open (a reset
** socket no longer knows it): an IPv4 peer in the stream, an IPv6 one in
** the side block, Unix paths there too. Nothing is kept when the socket
** has no answer (yet) or memory is short; the next call asks again. */
static void fetch_peer(sp_stream *s) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (s->flags & (SF_PEER4 | SF_PEER6) || s->kind == SP_STREAM_PIPE ||
      s->kind == SP_STREAM_TTY)
    return;
  if (s->kind == SP_STREAM_UNIX) {
    if (stream_x_get(s) == NULL) return;
    if (SX(s)->peerpath == NULL) SX(s)->peerpath = pipe_name(s, 1);
    if (SX(s)->hostpath == NULL) SX(s)->hostpath = pipe_name(s, 0);
    return;
  }
  if (uv_tcp_getpeername(&s->h.tcp, (struct sockaddr *)&ss, &len) < 0) return;
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)&ss;
    s->peer4 = in4->sin_addr.s_addr;
    s->port4 = in4->sin_port;
    s->flags |= SF_PEER4;
  } else if (ss.ss_family == AF_INET6 && stream_x_get(s) != NULL) {
    memcpy(&SX(s)->peer6, &ss, sizeof SX(s)->peer6);
    s->flags |= SF_PEER6;
  }
}

/* The address of the peer (peer != 0: as fetch_peer kept it) or of the
** local end (asked of the socket) of a TCP stream into *ss; sa_family 0
** when unknown. */
static void tcp_addr(sp_stream *s, int peer, struct sockaddr_storage *ss) {
  int len = sizeof *ss;
  memset(ss, 0, sizeof *ss);
  if (!peer) {
    uv_tcp_getsockname(&s->h.tcp, (struct sockaddr *)ss, &len);
    return;
  }
  fetch_peer(s);
  if (s->flags & SF_PEER4) {
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    in4->sin_family = AF_INET;
    in4->sin_addr.s_addr = s->peer4;
    in4->sin_port = s->port4;
  } else if (s->flags & SF_PEER6) {
    memcpy(ss, &SX(s)->peer6, sizeof SX(s)->peer6);
  }
}

void sp_stream_pushaddr(lua_State *L, sp_stream *s, int peer) {
  if (s->kind == SP_STREAM_TCP) {
    struct sockaddr_storage ss;
    tcp_addr(s, peer, &ss);
    sp_addr_push(L, "TCP", (struct sockaddr *)&ss);
  } else {
    fetch_peer(s);
    sp_addr_push_unix(L, SX(s) == NULL ? NULL
                         : peer        ? SX(s)->peerpath
                                       : SX(s)->hostpath);
  }
}

void sp_stream_open(lua_State *L, sp_stream *s) {
  transport_ud *t = lua_newuserdatauv(L, sizeof *t, 1);
  t->s = s;
  t->kind = s->kind;
  t->extra = 0;
  t->born = (uint32_t)uv_now(sp_loop());
  luaL_setmetatable(L, SP_TRANSPORT_MT);
  lua_pushvalue(L, -1);
  s->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  s->state = ST_OPEN;
  if (s->flags & SF_ACCEPTED) accepted_open++;
  fetch_peer(s);
  sp_live_remove(&streams_live); /* to the newest place (streams_shutdown) */
  sp_live_add(&streams_live);
}

void sp_stream_connect_protocol(lua_State *L, sp_stream *s) {
  int top = lua_gettop(L);
  int t = lua_type(L, -1);
  if (t != LUA_TNIL && t != LUA_TTABLE && t != LUA_TUSERDATA) {
    /* Say once what is wrong, then close as for a refused connection. */
    lua_pushfstring(L, "buildProtocol returned a %s value, not a protocol",
                    luaL_typename(L, -1));
    sp_log_failure(L, -1, "Unhandled Error");
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_replace(L, top);
  }
  lua_pushvalue(L, -1);
  set_uv(L, s, UV_PROTO);
  if (lua_isnil(L, -1)) {
    /* A client whose factory built no protocol: close cleanly, as
    ** twisted tcp.BaseClient._connectDone does. */
    s->flags |= SF_DISCONNECTING;
    schedule_drain(L, s);
  } else {
    reading_update(s);
    sp_stream_push_transport(L, s);
    if (call_method(L, top, "makeConnection", 1)) stream_close(L, s);
  }
  lua_settop(L, top - 1);
}

/* ---------------------------------------------------- Lua methods */

sp_stream *sp_stream_check(lua_State *L, int idx) {
  transport_ud *t = sp_class_check(L, idx, SP_TRANSPORT_MT);
  if (t->s != NULL && t->s->state == ST_OPEN) return t->s;
  return NULL;
}

/* sp_class_check for the hot path: the metatable is recognised by its
** address (luaL_checkudata looks its name up in the registry each call). */
static transport_ud *transport_check_fast(lua_State *L) {
  if (lua_getmetatable(L, 1)) {
    const void *mt = lua_topointer(L, -1);
    lua_pop(L, 1);
    if (mt == transport_mt) return lua_touserdata(L, 1);
  }
  return sp_class_check(L, 1, SP_TRANSPORT_MT);
}

/* t:write(data): send a string to the peer, after everything written
** before. Raises if data is not a string; after the connection is lost
** (or the write half shut down) it does nothing, as in Twisted.
** twisted.internet.abstract.FileDescriptor.write. */
static int transport_write(lua_State *L) {
  transport_ud *t = transport_check_fast(L);
  sp_stream *s = t->s;
  if (lua_type(L, 2) != LUA_TSTRING)
    return sp_typeerror(L, 2, "string", SP_TRANSPORT_MT);
  if (s == NULL || s->state != ST_OPEN || (s->flags & SF_WDISCONNECTED) ||
      lua_rawlen(L, 2) == 0)
    return 0;
  write_string(L, s, 2);
  return 0;
}

/* t:writeSequence(list): write each string of list in order, as one
** write. Raises naming the index of an element that is not a string.
** twisted FileDescriptor.writeSequence. */
static int transport_writeSequence(lua_State *L) {
  transport_ud *t = sp_class_check(L, 1, SP_TRANSPORT_MT);
  sp_stream *s = t->s;
  uv_buf_t bufs[64];
  lua_Integer n, i;
  unsigned nb = 0;
  if (!lua_istable(L, 2)) return sp_typeerror(L, 2, "table", SP_TRANSPORT_MT);
  n = luaL_len(L, 2);
  for (i = 1; i <= n; i++) {
    if (lua_rawgeti(L, 2, i) != LUA_TSTRING)
      return sp_argerror(
          L, 2,
          lua_pushfstring(L, "string expected at index %I, got %s",
                          (LUAI_UACINT)i, luaL_typename(L, -1)),
          SP_TRANSPORT_MT);
    lua_pop(L, 1);
  }
  if (s == NULL || s->state != ST_OPEN || (s->flags & SF_WDISCONNECTED))
    return 0;
  for (i = 1; i <= n && s->state == ST_OPEN; i++) {
    size_t len;
    const char *p;
    lua_rawgeti(L, 2, i);
    p = lua_tolstring(L, -1, &len);
    lua_pop(L, 1); /* the table keeps the string alive */
    if (len == 0) continue;
    bufs[nb++] = mkbuf((char *)p, len);
    if (nb == 64 || i == n) {
      if (stream_filter(s) != NULL && stream_filter(s)->write != NULL)
        stream_filter(s)->write(L, s, bufs, nb);
      else
        sp_stream_write_raw(L, s, bufs, nb);
      nb = 0;
    }
  }
  if (nb > 0 && s->state == ST_OPEN) {
    if (stream_filter(s) != NULL && stream_filter(s)->write != NULL)
      stream_filter(s)->write(L, s, bufs, nb);
    else
      sp_stream_write_raw(L, s, bufs, nb);
  }
  return 0;
}

/* t:loseConnection(): close once every queued byte is written;
** protocol:connectionLost(ConnectionDone) follows. Does nothing on a
** closed transport. twisted FileDescriptor.loseConnection. */
static int transport_loseConnection(lua_State *L) {
  sp_stream *s = sp_stream_check(L, 1);
  if (s == NULL || (s->flags & SF_DISCONNECTING)) return 0;
  if (s->flags & SF_WDISCONNECTED) {
    stream_done(L, s);
    return 0;
  }
  s->flags |= SF_DISCONNECTING;
  reading_update(s);
  schedule_drain(L, s);
  return 0;
}

/* t:loseWriteConnection(): shut down our write half once the queue is
** written (the peer reads EOF); a protocol with writeConnectionLost() is
** then told. If the peer's half is already down (readConnectionLost was
** called), or goes down later, the connection then closes with
** ConnectionDone. twisted FileDescriptor.loseWriteConnection. */
static int transport_loseWriteConnection(lua_State *L) {
  sp_stream *s = sp_stream_check(L, 1);
  if (s == NULL || (s->flags & (SF_WDISCONNECTING | SF_WDISCONNECTED)))
    return 0;
  s->flags |= SF_WDISCONNECTING;
  schedule_drain(L, s);
  return 0;
}

/* t:abortConnection(): close at once, dropping queued data;
** connectionLost gets ConnectionAborted. twisted
** tcp.Connection.abortConnection. */
static int transport_abortConnection(lua_State *L) {
  sp_stream *s = sp_stream_check(L, 1);
  if (s == NULL) return 0;
  sp_stream_pusherror(L, SP_LOST_ABORTED, NULL, 0);
  stream_close(L, s);
  return 0;
}

/* t:getPeer() / t:getHost() -> an address (addr.h: {type = "TCP", host =
** "127.0.0.1", port = 1234}, printing as IPv4Address(...), or {type =
** "UNIX", name = path}); they still answer after the connection is
** closed. twisted ITransport.getPeer/getHost. */
static int transport_addr(lua_State *L, int peer) {
  transport_ud *t = sp_class_check(L, 1, SP_TRANSPORT_MT);
  if (t->s != NULL && t->s->state == ST_OPEN)
    sp_stream_pushaddr(L, t->s, peer);
  else
    ud_get(L, 1, peer ? UV_PEER : UV_HOST);
  return 1;
}

/* t:getPeer() -> the other end's address ({type = "TCP", host =
** "127.0.0.1", port = 1234}, or {type = "UNIX", name = path}); still
** answers after the close. twisted ITransport.getPeer. */
static int transport_getPeer(lua_State *L) {
  return transport_addr(L, 1);
}

/* t:getHost() -> this end's address ({type = "TCP", host = "127.0.0.1",
** port = 1234}, or {type = "UNIX", name = path}); still answers after
** the close. twisted ITransport.getHost. */
static int transport_getHost(lua_State *L) {
  return transport_addr(L, 0);
}

/* t:pauseProducing() / t:resumeProducing(): stop and restart reading
** from the peer (flow control of the incoming side). No-ops once closed.
** twisted FileDescriptor.pauseProducing. */
static int transport_pauseProducing(lua_State *L) {
  sp_stream *s = sp_stream_check(L, 1);
  if (s == NULL) return 0;
  s->flags |= SF_PAUSED;
  reading_update(s);
  return 0;
}

/* t:resumeProducing(): read from the peer again after pauseProducing
** (dataReceived calls resume). A no-op once closed. twisted
** FileDescriptor.resumeProducing. */
static int transport_resumeProducing(lua_State *L) {
  sp_stream *s = sp_stream_check(L, 1);
  if (s == NULL) return 0;
  s->flags &= ~SF_PAUSED;
  reading_update(s);
  return 0;
}

/* t:stopProducing(): the consumer side asked us to stop: lose the
** connection. twisted FileDescriptor.stopProducing. */
static int transport_stopProducing(lua_State *L) {
  return transport_loseConnection(L);
}

/* t:registerProducer(producer, streaming): producer (an object with
** pauseProducing/resumeProducing/stopProducing) feeds this transport. A
** streaming producer is paused when more than 64 KiB wait to be sent and
** resumed when they are; a pull producer (streaming false) gets
** resumeProducing() now and each time the queue drains. Raises if a
** producer is already registered; on a closed transport the producer gets
** stopProducing(). twisted FileDescriptor.registerProducer. */
static int transport_registerProducer(lua_State *L) {
  transport_ud *t = sp_class_check(L, 1, SP_TRANSPORT_MT);
  sp_stream *s = t->s;
  int streaming = lua_toboolean(L, 3);
  if (!lua_istable(L, 2) && !lua_isuserdata(L, 2))
    return sp_typeerror(L, 2, "producer", SP_TRANSPORT_MT);
  if (s == NULL || s->state != ST_OPEN) {
    lua_getfield(L, 2, "stopProducing");
    lua_pushvalue(L, 2);
    lua_call(L, 1, 0);
    return 0;
  }
  if (s->flags & SF_PRODUCER)
    return luaL_error(L,
                      "Cannot register producer %s, because producer %s "
                      "was never unregistered.",
                      luaL_tolstring(L, 2, NULL),
                      (ud_get(L, 1, UV_PRODUCER), luaL_tolstring(L, -1, NULL)));
  lua_pushvalue(L, 2);
  ud_set(L, 1, UV_PRODUCER);
  s->flags |= SF_PRODUCER | (streaming ? SF_STREAMING : 0);
  s->flags &= ~SF_PPAUSED;
  if (!streaming) {
    lua_getfield(L, 2, "resumeProducing");
    lua_pushvalue(L, 2);
    lua_call(L, 1, 0);
  }
  return 0;
}

/* t:unregisterProducer(): forget the producer; a pending loseConnection
** then completes. twisted FileDescriptor.unregisterProducer. */
static int transport_unregisterProducer(lua_State *L) {
  transport_ud *t = sp_class_check(L, 1, SP_TRANSPORT_MT);
  sp_stream *s = t->s;
  lua_pushnil(L);
  ud_set(L, 1, UV_PRODUCER);
  if (s == NULL) return 0;
  s->flags &= ~(SF_PRODUCER | SF_STREAMING | SF_PPAUSED);
  if (s->state == ST_OPEN &&
      (s->flags & (SF_DISCONNECTING | SF_WDISCONNECTING)))
    schedule_drain(L, s);
  return 0;
}

/* t:getBufferSize() -> bytes queued and not yet taken by the kernel. */
static int transport_getBufferSize(lua_State *L) {
  transport_ud *t = sp_class_check(L, 1, SP_TRANSPORT_MT);
  lua_pushinteger(L, t->s != NULL ? (lua_Integer)sp_stream_queued(t->s) : 0);
  return 1;
}

/* t:isClosed() -> boolean: the connection is lost or being closed. */
static int transport_isClosed(lua_State *L) {
  sp_stream *s = sp_stream_check(L, 1);
  lua_pushboolean(L, s == NULL || (s->flags & SF_DISCONNECTING));
  return 1;
}

static int transport_tostring(lua_State *L) {
  transport_ud *t = sp_class_check(L, 1, SP_TRANSPORT_MT);
  static const char *const kinds[] = {"?", "TCP", "UNIX", "PIPE", "TTY"};
  const char *kind = kinds[t->kind];
  if (t->s == NULL) {
    lua_pushfstring(L, "<%s transport (closed)>", kind);
  } else if (t->kind == SP_STREAM_TCP) {
    char a[SP_ADDR_HOSTLEN], b[SP_ADDR_HOSTLEN];
    struct sockaddr_storage host, peer;
    int pa, pb;
    tcp_addr(t->s, 0, &host);
    tcp_addr(t->s, 1, &peer);
    pa = sp_addr_format((struct sockaddr *)&host, a);
    pb = sp_addr_format((struct sockaddr *)&peer, b);
    lua_pushfstring(L, "<TCP transport %s:%d -> %s:%d>", a, pa, b, pb);
  } else {
    const stream_x *x = SX(t->s);
    lua_pushfstring(L, "<UNIX transport %s>",
                    x != NULL && x->peerpath   ? x->peerpath
                    : x != NULL && x->hostpath ? x->hostpath
                                               : "?");
  }
  return 1;
}

static const luaL_Reg transport_methods[] = {
    {"write", transport_write},
    {"writeSequence", transport_writeSequence},
    {"loseConnection", transport_loseConnection},
    {"loseWriteConnection", transport_loseWriteConnection},
    {"abortConnection", transport_abortConnection},
    {"getPeer", transport_getPeer},
    {"getHost", transport_getHost},
    {"pauseProducing", transport_pauseProducing},
    {"resumeProducing", transport_resumeProducing},
    {"stopProducing", transport_stopProducing},
    {"registerProducer", transport_registerProducer},
    {"unregisterProducer", transport_unregisterProducer},
    {"getBufferSize", transport_getBufferSize},
    {"isClosed", transport_isClosed},
    {NULL, NULL}};

/* The state fields Twisted's transports have (sp_class_newx getters;
** methods are found first, without a look at the transport):
** `disconnecting` (loseConnection was called, or the connection is lost;
** spindle.basic stops delivering lines then), `connected` (open),
** `disconnected`, and `protocol`. */
static int transport_getdisconnecting(lua_State *L) {
  transport_ud *t = transport_check_fast(L);
  lua_pushboolean(L, t->s == NULL || t->s->state != ST_OPEN ||
                         (t->s->flags & SF_DISCONNECTING));
  return 1;
}

static int transport_getconnected(lua_State *L) {
  transport_ud *t = transport_check_fast(L);
  lua_pushboolean(L, t->s != NULL && t->s->state == ST_OPEN);
  return 1;
}

static int transport_getdisconnected(lua_State *L) {
  lua_pushboolean(L, transport_check_fast(L)->s == NULL);
  return 1;
}

static int transport_getprotocol(lua_State *L) {
  transport_check_fast(L);
  ud_get(L, 1, UV_PROTO);
  return 1;
}

static const luaL_Reg transport_getters[] = {
    {"disconnecting", transport_getdisconnecting},
    {"connected", transport_getconnected},
    {"disconnected", transport_getdisconnected},
    {"protocol", transport_getprotocol},
    {NULL, NULL}};

static const luaL_Reg transport_meta[] = {{"__tostring", transport_tostring},
                                          {NULL, NULL}};

void *sp_transport_test(lua_State *L, int idx) {
  const void *mt;
  if (transport_mt == NULL || !lua_getmetatable(L, idx)) return NULL;
  mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  return mt == transport_mt ? lua_touserdata(L, idx) : NULL;
}

int sp_transport_disconnecting(const void *tud) {
  const transport_ud *t = tud;
  return t->s == NULL || t->s->state != ST_OPEN ||
         (t->s->flags & SF_DISCONNECTING) != 0;
}

int sp_transport_write(lua_State *L, void *tud, const uv_buf_t *bufs,
                       unsigned nbufs) {
  sp_stream *s = ((transport_ud *)tud)->s;
  stream_x *x;
  size_t total = 0;
  unsigned i;
  if (s != NULL && stream_filter(s) != NULL) return 0;
  if (s == NULL || s->state != ST_OPEN || (s->flags & SF_WDISCONNECTED))
    return 1;
  for (i = 0; i < nbufs; i++) total += bufs[i].len;
  if (total == 0) return 1;
  x = SX(s);
  if ((s->flags & SF_CORKED) && x != NULL && x->pcap - x->plen >= total) {
    /* Inside dataReceived, with room in the pending buffer (a
    ** LineReceiver's sendLine, once per line): what write_raw would do
    ** (try_write declines while corked), without its generality. */
    for (i = 0; i < nbufs; i++) {
      memcpy(x->pbuf + x->plen, bufs[i].base, bufs[i].len);
      x->plen += bufs[i].len;
    }
    if ((s->flags & SF_PRODUCER) || sp_stream_queued(s) > READ_THROTTLE)
      check_highwater(L, s);
    return 1;
  }
  sp_stream_write_raw(L, s, bufs, nbufs);
  return 1;
}

void sp_stream_add_methods(lua_State *L, const luaL_Reg *methods) {
  luaL_getmetatable(L, SP_TRANSPORT_MT);
  lua_getfield(L, -1, "__index");
  lua_getupvalue(L, -1, 1);
  luaL_setfuncs(L, methods, 0);
  lua_pop(L, 3);
}

/* [-0, +0, e] One inspector row (inspect.h) for the open stream s,
** appended to the array at t. */
static void stream_row(lua_State *L, const transport_ud *u, int t) {
  sp_stream *s = u->s;
  int top = lua_gettop(L);
  lua_createtable(L, 0, 12);
  lua_pushstring(L, stream_filter(s) != NULL   ? "tls"
                    : s->kind == SP_STREAM_TCP ? "tcp"
                                               : "unix");
  lua_setfield(L, -2, "transport");
  lua_pushliteral(L, "connection");
  lua_setfield(L, -2, "kind");
  sp_stream_push_transport(L, s);
  if (lua_getiuservalue(L, -1, UV_PROTO) != LUA_TNIL &&
      lua_getmetatable(L, -1) && lua_getfield(L, -1, "__name") == LUA_TSTRING)
    lua_setfield(L, top + 1, "protocol");
  lua_settop(L, top + 1);
  sp_stream_pushaddr(L, s, 0);
  lua_setfield(L, -2, "host");
  sp_stream_pushaddr(L, s, 1);
  lua_setfield(L, -2, "peer");
  lua_pushnumber(
      L, (double)(uint32_t)((uint32_t)uv_now(sp_loop()) - u->born) / 1e3);
  lua_setfield(L, -2, "age");
  lua_pushinteger(L, (lua_Integer)(SX(s) != NULL ? SX(s)->nin : 0));
  lua_setfield(L, -2, "bytesIn");
  lua_pushinteger(L, (lua_Integer)(SX(s) != NULL ? SX(s)->nout : 0));
  lua_setfield(L, -2, "bytesOut");
  lua_pushinteger(L, (lua_Integer)sp_stream_queued(s));
  lua_setfield(L, -2, "queued");
  if (s->flags & SF_PRODUCER) {
    lua_pushstring(L, (s->flags & SF_STREAMING) ? "streaming" : "pull");
    lua_setfield(L, -2, "producer");
  }
  lua_pushboolean(L, (s->flags & SF_PAUSED) != 0);
  lua_setfield(L, -2, "paused");
  lua_rawseti(L, t, (lua_Integer)lua_rawlen(L, t) + 1);
}

/* The inspector's provider: a row per open connection. */
static void stream_rows(lua_State *L, int t) {
  int top = lua_gettop(L);
  push_open_streams(L);
  for (lua_Integer i = 1; lua_rawgeti(L, top + 1, i) != LUA_TNIL; i++) {
    const transport_ud *u = lua_touserdata(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, 8, NULL);
    stream_row(L, u, t);
  }
  lua_settop(L, top);
}

void sp_stream_init(lua_State *L) {
  if (pool_live.next == NULL) sp_live_add(&pool_live);
  sp_inspect_register("stream", stream_rows);
  sp_class_newx(L, SP_TRANSPORT_MT, transport_methods, transport_meta,
                transport_getters);
  luaL_getmetatable(L, SP_TRANSPORT_MT);
  transport_mt = lua_topointer(L, -1);
  lua_pop(L, 1);
}
