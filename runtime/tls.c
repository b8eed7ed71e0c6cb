/*
** tls.c: TLS over the stream transport (module spindle._tls, a part of
** spindle.reactor): reactor.listenSSL, reactor.connectSSL and the
** transport methods startTLS and getPeerCertificate.
**
** Follows twisted.protocols.tls.TLSMemoryBIOProtocol: OpenSSL talks to two
** memory BIOs, never to the socket. The stream filter (stream.h) feeds
** bytes from the peer into the read BIO and runs the handshake or
** SSL_read, handing plaintext to protocol:dataReceived; transport:write
** goes through SSL_write, and whatever OpenSSL put in the write BIO
** (records, handshake messages, alerts) is drained to the socket after
** every SSL call. The OpenSSL error queue is cleared before each SSL call;
** failures become ssl.Error values through sp_ssl_pusherror (ssl.h).
**
** Order of events: connectionMade comes when TCP connects; writes made
** before the handshake ends are held and go out encrypted once it ends,
** when protocol:handshakeCompleted() (if any) is called; a streaming
** producer is paused while such writes are held. loseConnection waits
** for the handshake (if running) and the queue, then sends close_notify
** and closes; loseWriteConnection sends close_notify too, then shuts down
** the socket's write half (a TLS half-close: reading goes on until the
** peer's close_notify, which closes with ConnectionDone); a close_notify from
*the peer closes cleanly
** (ConnectionDone). A failed handshake, a refused certificate or a broken
** record loses the connection with the ssl.Error (VerifyError for
** verification), which reaches connectionLost and clientConnectionLost.
**
** Lifetime: a tls_conn is C memory owned by its stream (filter_data),
** freed by the filter's free hook when the stream is freed. It holds the
** one reference to its SSL (which owns both BIOs) and a registry
** reference to a table anchoring the Context and the context factory.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core.h"
#include "failure.h"
#include "loop.h"
#include "ssl.h"
#include "stream.h"
#include "tcp.h"

/* tls_conn flags. */
#define TF_CLIENT 0x01   /* we are the TLS client */
#define TF_DONE 0x02     /* the handshake completed */
#define TF_FAILED 0x04   /* a fatal error: nothing more goes through SSL */
#define TF_FINWAIT 0x08  /* loseConnection waits for the handshake */
#define TF_SHUTDOWN 0x10 /* close_notify sent */

/* Seconds a server-side handshake may take (listenSSL's handshakeTimeout
** default). Twisted has no such limit; Node's tls.Server has
** handshakeTimeout (120 s). */
#define HANDSHAKE_TIMEOUT 30.0

/* Bytes written into SSL_write per call, and the size of the buffers used
** to drain the write BIO and to collect plaintext for dataReceived. */
#define CHUNK (64 * 1024)

typedef struct tls_conn {
  sp_ssl_app app; /* first: ssl.c's view (app.L: the state to call Lua in) */
  SSL *ssl;
  BIO *rbio, *wbio; /* owned by ssl */
  sp_stream *s;
  int anchor; /* registry ref: {context, factory} */
  unsigned flags;
  char *held; /* plaintext written before the handshake ended */
  size_t hlen, hcap;
  char *hostname;    /* the name verified (client), or NULL */
  uv_timer_t *timer; /* server: the handshake timeout, or NULL */
  sp_live tlive;     /* the timer's entry in loop.c's live registry */
  double timeout;    /* its length, seconds */
} tls_conn;

static const sp_stream_filter tls_filter;

/* One buffer for SSL_read output and one for draining the write BIO: their
** contents are handed on (copied to a Lua string or to the stream's queue)
** before any Lua code can run, so connections can share them. */
static char readbuf[CHUNK];
static char drainbuf[CHUNK];

static tls_conn *conn_of(sp_stream *s) {
  return sp_stream_filter_data(s, &tls_filter);
}

/* sp_ssl_app's push: the transport of c (app is c's first member). */
static void app_push(lua_State *L, sp_ssl_app *app) {
  tls_conn *c = (tls_conn *)app;
  sp_stream_push_transport(L, c->s);
}

/* -------------------------------------------------------- plumbing */

/* Hand whatever OpenSSL wrote to the write BIO to the socket. Returns 0,
** or a negative error once the stream is closing. */
static int drain(lua_State *L, tls_conn *c) {
  int n;
  while ((n = BIO_read(c->wbio, drainbuf, sizeof drainbuf)) > 0) {
    uv_buf_t b = uv_buf_init(drainbuf, (unsigned)n);
    int r = sp_stream_write_raw(L, c->s, &b, 1);
    if (r < 0) return r;
  }
  return 0;
}

/* The connection failed: drain what OpenSSL has to say (an alert), then
** lose the connection with an ssl.Error for r/err. */
static void conn_fail(lua_State *L, tls_conn *c, int err, const char *what) {
  int top = lua_gettop(L);
  c->flags |= TF_FAILED;
  sp_ssl_pusherror(L, c->ssl, err, what, c->hostname);
  drain(L, c);
  ERR_clear_error();
  sp_stream_lose(L, c->s, -1, 0);
  lua_settop(L, top);
}

/* [-0, +1, -] Push the protocol of c's transport. */
static void push_protocol(lua_State *L, tls_conn *c) {
  sp_stream_push_transport(L, c->s);
  lua_getfield(L, -1, "protocol");
  lua_remove(L, -2);
}

static int write_plain(lua_State *L, tls_conn *c, const char *p, size_t len);

/* The handshake just completed: tell the protocol, send what was held,
** finish a pending loseConnection. Returns 0, or -1 if the stream is no
** longer open. */
static void timer_stop(tls_conn *c);

static int handshake_done(lua_State *L, tls_conn *c) {
  int top = lua_gettop(L);
  c->flags |= TF_DONE;
  timer_stop(c);
  push_protocol(L, c);
  if (!lua_isnil(L, -1) &&
      sp_callmethod(L, -1, "handshakeCompleted", 0) == SP_CALL_ERROR) {
    sp_stream_lose(L, c->s, -1, 0);
    lua_settop(L, top);
    return -1;
  }
  lua_settop(L, top);
  if (c->hlen > 0) {
    char *h = c->held;
    size_t n = c->hlen;
    int r;
    c->held = NULL;
    c->hlen = c->hcap = 0;
    r = write_plain(L, c, h, n);
    free(h);
    if (r < 0) return -1;
    sp_stream_filter_hold(L, c->s, 0);
  }
  if (c->flags & TF_FINWAIT) {
    c->flags &= ~TF_FINWAIT;
    sp_stream_finish_ready(L, c->s);
  }
  return c->flags & TF_FAILED ? -1 : 0;
}

/* Run the handshake as far as the bytes at hand allow. Returns 1 when it
** is complete, 0 when it needs more bytes, -1 after a failure. */
static int handshake(lua_State *L, tls_conn *c) {
  int r, err;
  c->app.L = L;
  ERR_clear_error();
  r = SSL_do_handshake(c->ssl);
  err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
  if (err == SSL_ERROR_NONE || err == SSL_ERROR_WANT_READ ||
      err == SSL_ERROR_WANT_WRITE) {
    if (drain(L, c) < 0) return -1;
    if (r != 1) return 0;
    return handshake_done(L, c) < 0 ? -1 : 1;
  }
  conn_fail(L, c, err, "TLS handshake failed");
  return -1;
}

/* SSL_write p in CHUNK pieces, draining after each. Returns 0 or -1. */
static int write_plain(lua_State *L, tls_conn *c, const char *p, size_t len) {
  while (len > 0) {
    int n = len > CHUNK ? CHUNK : (int)len, w, err;
    c->app.L = L;
    ERR_clear_error();
    w = SSL_write(c->ssl, p, n);
    if (w <= 0) {
      err = SSL_get_error(c->ssl, w);
      conn_fail(L, c, err, "TLS write failed");
      return -1;
    }
    if (drain(L, c) < 0) return -1;
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

/* Keep plaintext written before the handshake ended; a streaming
** producer is paused until it is sent (twisted TLSMemoryBIOProtocol). */
static int hold(lua_State *L, tls_conn *c, const uv_buf_t *bufs,
                unsigned nbufs) {
  unsigned i;
  sp_stream_filter_hold(L, c->s, 1);
  for (i = 0; i < nbufs; i++) {
    size_t need = c->hlen + bufs[i].len;
    if (need > c->hcap) {
      size_t cap = c->hcap ? c->hcap : 4096;
      char *nb;
      while (cap < need) cap *= 2;
      nb = realloc(c->held, cap);
      if (nb == NULL) {
        sp_stream_lose(L, c->s, 0, UV_ENOMEM);
        return UV_ENOMEM;
      }
      c->held = nb;
      c->hcap = cap;
    }
    memcpy(c->held + c->hlen, bufs[i].base, bufs[i].len);
    c->hlen += bufs[i].len;
  }
  return 0;
}

/* The peer sent close_notify (twisted TLSMemoryBIOProtocol on
** ZeroReturnError). With data still queued, close as loseConnection does
** (the queue, then our close_notify). Otherwise answer with our
** close_notify as the stream's last write, which closes cleanly with
** ConnectionDone once written, and also when the write fails (the peer
** often has closed its socket already: that is not an error). */
static void peer_closed(lua_State *L, tls_conn *c) {
  int top = lua_gettop(L), n;
  uv_buf_t b = uv_buf_init(drainbuf, 0);
  if (sp_stream_queued(c->s) > 0) {
    sp_stream_push_transport(L, c->s);
    sp_callmethod(L, -1, "loseConnection", 0);
    lua_settop(L, top);
    return;
  }
  c->flags |= TF_SHUTDOWN;
  ERR_clear_error();
  SSL_shutdown(c->ssl);
  ERR_clear_error();
  n = BIO_read(c->wbio, drainbuf, sizeof drainbuf);
  if (n > 0) b.len = (size_t)n;
  sp_stream_write_last(L, c->s, &b, n > 0 ? 1 : 0);
}

/* Decrypt what is in the read BIO and deliver it, in pieces of up to
** CHUNK bytes. */
static void read_records(lua_State *L, tls_conn *c) {
  for (;;) {
    size_t got = 0;
    int n = 0, err = SSL_ERROR_NONE;
    c->app.L = L;
    while (got < sizeof readbuf) {
      ERR_clear_error();
      n = SSL_read(c->ssl, readbuf + got, (int)(sizeof readbuf - got));
      if (n <= 0) {
        err = SSL_get_error(c->ssl, n);
        break;
      }
      got += (size_t)n;
    }
    /* Key updates and session tickets may want an answer. */
    if (err != SSL_ERROR_SSL && err != SSL_ERROR_SYSCALL && drain(L, c) < 0)
      return;
    if (got > 0 && sp_stream_deliver(L, c->s, readbuf, got) < 0) return;
    if (n > 0) continue; /* the buffer was full */
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return;
    if (err == SSL_ERROR_ZERO_RETURN) {
      peer_closed(L, c);
      return;
    }
    conn_fail(L, c, err, "TLS connection failed");
    return;
  }
}

/* ---------------------------------------------------- filter hooks */

static int filter_read(lua_State *L, sp_stream *s, const char *data,
                       size_t len) {
  tls_conn *c = conn_of(s);
  if (c->flags & TF_FAILED) return 0;
  while (len > 0) {
    int n = len > INT32_MAX ? INT32_MAX : (int)len;
    int w = BIO_write(c->rbio, data, n);
    if (w <= 0) return UV_ENOMEM;
    data += w;
    len -= (size_t)w;
  }
  if (!(c->flags & TF_DONE) && handshake(L, c) <= 0) return 0;
  read_records(L, c);
  return 0;
}

static int filter_write(lua_State *L, sp_stream *s, const uv_buf_t *bufs,
                        unsigned nbufs) {
  tls_conn *c = conn_of(s);
  unsigned i;
  if (c->flags & (TF_FAILED | TF_SHUTDOWN)) return 0;
  if (!(c->flags & TF_DONE)) return hold(L, c, bufs, nbufs);
  for (i = 0; i < nbufs; i++)
    if (write_plain(L, c, bufs[i].base, bufs[i].len) < 0) return UV_EPIPE;
  return 0;
}

static int filter_finish(lua_State *L, sp_stream *s) {
  tls_conn *c = conn_of(s);
  if (c->flags & (TF_FAILED | TF_SHUTDOWN)) return 0;
  if (!(c->flags & TF_DONE)) {
    c->flags |= TF_FINWAIT;
    return SP_FILTER_WAIT;
  }
  c->flags |= TF_SHUTDOWN;
  c->app.L = L;
  ERR_clear_error();
  SSL_shutdown(c->ssl);
  ERR_clear_error();
  drain(L, c);
  return 1;
}

/* An EOF before the handshake ended is a TLS failure (OpenSSL's
** "unexpected eof while reading"), not a clean close; after it, an EOF
** without the peer's close_notify may be a truncation, so it is
** ConnectionLost rather than ConnectionDone (Twisted reports an SSL error
** there; many clients never send close_notify, so spindle keeps ssl.Error
** for real TLS failures). */
static int filter_eof(lua_State *L, sp_stream *s) {
  tls_conn *c = conn_of(s);
  int top = lua_gettop(L);
  if (c->flags & TF_FAILED) return 0;
  ERR_clear_error();
  if (!(c->flags & TF_DONE)) {
    conn_fail(L, c, SSL_ERROR_SYSCALL, "TLS handshake failed");
    return 1;
  }
  sp_stream_pusherror(L, SP_LOST_NONCLEAN,
                      "the peer closed without a TLS close_notify", 0);
  sp_stream_lose(L, s, -1, 0);
  lua_settop(L, top);
  return 1;
}

/* ------------------------------------------------ handshake timeout */

static void timer_closed(uv_handle_t *h) {
  free(h);
}

/* The one release path of the timer: closed, freed in its callback. */
static void timer_stop(tls_conn *c) {
  sp_live_remove(&c->tlive);
  if (c->timer == NULL) return;
  c->timer->data = NULL;
  uv_close((uv_handle_t *)c->timer, timer_closed);
  c->timer = NULL;
}

/* (conn) -> (): lose c's connection with an ssl.Error "TLS handshake
** timed out", made here, protected (it allocates). */
static int timeout_tramp(lua_State *L) {
  tls_conn *c = lua_touserdata(L, 1);
  lua_pushfstring(L, "TLS handshake timed out after %f seconds.",
                  (LUAI_UACNUMBER)c->timeout);
  sp_errortype_make(L, "ssl.Error", lua_tostring(L, -1));
  lua_pushliteral(L, "handshake timeout");
  lua_setfield(L, -2, "reason");
  sp_stream_lose(L, c->s, -1, 0);
  return 0;
}

/* The handshake took too long: lose the connection with an ssl.Error; a
** memory error in making it is logged and loses it as ConnectionLost. */
static void timer_fired(uv_timer_t *t) {
  tls_conn *c = t->data;
  lua_State *L = sp_loop_state();
  if (c == NULL) return;
  timer_stop(c);
  c->flags |= TF_FAILED;
  if (sp_run_protected(L, timeout_tramp, c) != LUA_OK)
    sp_stream_lose_protected(L, c->s);
}

/* At exit the timer closes through timer_stop, before loop.c closes what
** is left (with no callback to free it) and before the stream's close
** callback frees c (a newer entry than the stream's: it runs first). */
static void timer_shutdown(lua_State *L, sp_live *n) {
  (void)L;
  timer_stop((tls_conn *)((char *)n - offsetof(tls_conn, tlive)));
}

/* Start c's handshake timeout of `secs` (none when not finite). Returns 0
** or UV_ENOMEM. */
static int timer_start(tls_conn *c, double secs) {
  if (!(secs < HUGE_VAL)) return 0;
  c->timer = malloc(sizeof *c->timer);
  if (c->timer == NULL) return UV_ENOMEM;
  uv_timer_init(sp_loop(), c->timer);
  c->timer->data = c;
  c->timeout = secs;
  c->tlive.shutdown = timer_shutdown;
  sp_live_add(&c->tlive);
  sp_timer_start(c->timer, timer_fired, (uint64_t)(secs * 1000 + 0.5));
  return 0;
}

/* The one release path of a tls_conn: the filter's free hook once it is
** installed, tls_attach's failure path before. */
static void conn_free(tls_conn *c) {
  if (c == NULL) return;
  if (c->ssl != NULL) {
    sp_ssl_set_app(c->ssl, NULL);
    SSL_free(c->ssl);
  }
  timer_stop(c);
  free(c->held);
  free(c->hostname);
  if (sp_mainstate != NULL)
    luaL_unref(sp_mainstate, LUA_REGISTRYINDEX, c->anchor);
  free(c);
}

static void filter_free(void *data) {
  conn_free(data);
}

static const sp_stream_filter tls_filter = {
    filter_read, filter_write, filter_finish, filter_eof, filter_free};

/* ------------------------------------------------------- attaching */

/* (factory) -> context, hostname, handshakeTimeout: factory:getContext()
** and, for a table, factory._hostname (set by ssl.optionsForClientTLS)
** and factory.handshakeTimeout. */
static int getcontext_tramp(lua_State *L) {
  lua_getfield(L, 1, "getContext");
  if (lua_isnil(L, -1))
    return luaL_error(L, "the context factory has no getContext method");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  if (sp_ssl_tocontext(L, -1) == NULL)
    return luaL_error(L, "getContext() returned %s, not an ssl Context",
                      luaL_typename(L, -1));
  if (lua_type(L, 1) != LUA_TTABLE) return 1;
  lua_getfield(L, 1, "_hostname");
  lua_getfield(L, 1, "handshakeTimeout");
  return 3;
}

/* The handshake timeout at idx: nil (0: not given) or seconds > 0;
** anything else raises naming argument arg of fname (listenSSL,
** connectSSL), through pcall too. */
static double check_timeout(lua_State *L, int idx, int arg, const char *fname) {
  double t;
  if (lua_isnil(L, idx)) return 0;
  t = lua_tonumber(L, idx);
  if (lua_type(L, idx) != LUA_TNUMBER || !(t > 0))
    sp_fnargerror(
        L, arg, "handshakeTimeout must be a number of seconds above 0", fname);
  return t;
}

/* Is host an IP address literal? */
static int is_ip(const char *host) {
  unsigned char buf[16];
  return uv_inet_pton(AF_INET, host, buf) == 0 ||
         uv_inet_pton(AF_INET6, host, buf) == 0;
}

/* Make the SSL of c from ctx, for hostname (client; may be NULL).
** Returns 0, or -1 with OpenSSL's error queue saying why (c->ssl, if
** made, is conn_free's to release). Touches no Lua state. */
static int conn_make_ssl(tls_conn *c, SSL_CTX *ctx, const char *hostname) {
  ERR_clear_error();
  c->ssl = SSL_new(ctx);
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
    BIO_free(c->rbio);
    BIO_free(c->wbio);
    return -1;
  }
  BIO_set_mem_eof_return(c->rbio, -1);
  SSL_set_bio(c->ssl, c->rbio, c->wbio);
  sp_ssl_set_app(c->ssl, &c->app);
  if (!(c->flags & TF_CLIENT)) {
    SSL_set_accept_state(c->ssl);
    return 0;
  }
  SSL_set_connect_state(c->ssl);
  if (hostname == NULL) return 0;
  c->hostname = strdup(hostname);
  if (is_ip(hostname)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), hostname);
  } else {
    SSL_set_tlsext_host_name(c->ssl, hostname);
    SSL_set1_host(c->ssl, hostname);
  }
  return 0;
}

/* A new tls_conn on s holding `anchor` (its registry ref), with its SSL
** made from ctx and, for a server, its handshake timer started. Returns
** it, or NULL with *err set (UV_ENOMEM, or -1: OpenSSL's error queue
** says why) after releasing everything, anchor included. No Lua call. */
static tls_conn *conn_new(sp_stream *s, lua_State *L, int anchor, int client,
                          SSL_CTX *ctx, const char *host, double timeout,
                          int *err) {
  tls_conn *c = calloc(1, sizeof *c);
  if (c == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, anchor);
    *err = UV_ENOMEM;
    return NULL;
  }
  c->s = s;
  c->app.L = L;
  c->app.push = app_push;
  c->anchor = anchor;
  c->flags = client ? TF_CLIENT : 0;
  *err = conn_make_ssl(c, ctx, host);
  if (*err == 0 && !client) *err = timer_start(c, timeout);
  if (*err == 0) return c;
  conn_free(c);
  return NULL;
}

/* [-0, +(0|1), e] Put TLS on stream s with the context factory at fidx:
** getContext() (protected), a new SSL in client or server mode, the
** filter; a client starts its handshake, a server starts its handshake
** timeout: `timeout` seconds if above 0, else the factory's
** handshakeTimeout, else HANDSHAKE_TIMEOUT. Returns 0, or pushes the
** error and returns -1 (nothing installed). Raises only a memory error,
** and only while nothing is installed or once the stream owns the
** filter's state (so no C memory is lost with it). */
static int tls_attach(lua_State *L, sp_stream *s, int fidx, int client,
                      double timeout) {
  tls_conn *c;
  SSL_CTX *ctx;
  const char *host;
  int anchor, err;
  fidx = lua_absindex(L, fidx);
  lua_pushcfunction(L, getcontext_tramp);
  lua_pushvalue(L, fidx);
  if (sp_pcall(L, 1, 3) != LUA_OK) return -1;
  ctx = sp_ssl_tocontext(L, -3);
  host = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
  if (!(timeout > 0))
    timeout = lua_tonumber(L, -1) > 0 ? lua_tonumber(L, -1) : HANDSHAKE_TIMEOUT;
  /* The Lua half first, while no C memory is held: {context, factory}
  ** lives as long as the connection. */
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, -4);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, fidx);
  lua_rawseti(L, -2, 2);
  anchor = luaL_ref(L, LUA_REGISTRYINDEX);
  c = conn_new(s, L, anchor, client, ctx, host, timeout, &err);
  lua_pop(L, 3);
  if (c == NULL) {
    if (err == UV_ENOMEM)
      lua_pushliteral(L, "not enough memory");
    else
      sp_ssl_pusherror(L, NULL, 0, "TLS setup failed", NULL);
    return -1;
  }
  if (sp_stream_set_filter(s, &tls_filter, c) != 0) { /* c is freed */
    lua_pushliteral(L, "not enough memory");
    return -1;
  }
  if (client && handshake(L, c) < 0) {
    lua_pushliteral(L, "TLS handshake failed");
    return -1;
  }
  return 0;
}

/* sp_tcp_setup_fn of listenSSL (its value is {contextFactory,
** handshakeTimeout or nil}) and connectSSL (the context factory). */
static int setup_server(lua_State *L, sp_stream *s, int argidx) {
  double timeout;
  int r;
  lua_rawgeti(L, argidx, 2);
  timeout = lua_tonumber(L, -1);
  lua_rawgeti(L, argidx, 1);
  r = tls_attach(L, s, -1, 0, timeout);
  if (r == 0) {
    lua_pop(L, 2);
    return 0;
  }
  lua_replace(L, -3);
  lua_pop(L, 1);
  /* No protocol hears about this connection: say why in the log. */
  sp_log_failure(L, -1, "Could not start TLS on an accepted connection:");
  return 1;
}

static int setup_client(lua_State *L, sp_stream *s, int argidx) {
  return tls_attach(L, s, argidx, 1, 0) != 0;
}

/* [-0, +0, e] Check the context factory at idx: it must have getContext,
** and getContext() must give a Context now (Twisted asks it once when
** listening or connecting, so a bad key file fails at the call); its
** handshakeTimeout, if any, must be a number above 0. fname names the
** function (listenSSL, connectSSL) in argument errors. */
static void check_factory(lua_State *L, int idx, const char *fname) {
  if (!lua_istable(L, idx) && !lua_isuserdata(L, idx))
    sp_fntypeerror(L, idx, "context factory", fname);
  lua_pushcfunction(L, getcontext_tramp);
  lua_pushvalue(L, idx);
  lua_call(L, 1, 3);
  check_timeout(L, -1, idx, fname);
  lua_pop(L, 3);
}

/* ------------------------------------------------------ Lua functions */

/* reactor.listenSSL(port, factory, contextFactory[, backlog][, interface]
**   [, options]) -> Port
** listenTCP over TLS: each accepted connection gets a server-side TLS
** session whose Context is contextFactory:getContext() (an
** ssl.DefaultOpenSSLContextFactory, ssl.CertificateOptions, or any table
** with getContext). A handshake not complete after handshakeTimeout
** seconds (options.handshakeTimeout, else contextFactory.handshakeTimeout,
** else 30; math.huge: none) loses the connection with an ssl.Error
** "TLS handshake timed out after ... seconds." (reason "handshake
** timeout"), which reaches connectionLost: spindle's own, since Twisted
** has none (Node's tls.Server handshakeTimeout, 120 s there). Raises as
** listenTCP, whatever getContext raises (checked once here), and for a
** handshakeTimeout that is not a number above 0. twisted
** IReactorSSL.listenSSL. */
static int tls_listenSSL(lua_State *L) {
  double timeout = 0;
  lua_settop(L, 6);
  check_factory(L, 3, "listenSSL");
  if (!lua_isnil(L, 6)) {
    if (!lua_istable(L, 6)) sp_fntypeerror(L, 6, "table", "listenSSL");
    lua_getfield(L, 6, "handshakeTimeout");
    timeout = check_timeout(L, -1, 6, "listenSSL");
    lua_pop(L, 1);
  }
  lua_createtable(L, 2, 0); /* {contextFactory, timeout} for setup_server */
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, 1);
  if (timeout > 0) {
    lua_pushnumber(L, timeout);
    lua_rawseti(L, -2, 2);
  }
  lua_remove(L, 3);
  lua_pushnil(L);
  lua_replace(L, 5); /* port, factory, backlog, interface, nil, {cf, t} */
  return sp_tcp_listen(L, setup_server, 6);
}

/* reactor.connectSSL(host, port, factory, contextFactory[, timeout]
** [, bindAddress]) -> Connector
** connectTCP over TLS, as the client; contextFactory is an instance of
** ssl.ClientContextFactory (or the class itself), the result of
** ssl.optionsForClientTLS (which also verifies the server's name), or any
** table with getContext. twisted IReactorSSL.connectSSL. */
static int tls_connectSSL(lua_State *L) {
  lua_settop(L, 6);
  check_factory(L, 4, "connectSSL");
  lua_pushvalue(L, 4);
  lua_remove(L, 4); /* host, port, factory, timeout, bind, cf */
  return sp_tcp_connect(L, setup_client, 6);
}

/* t:startTLS(contextFactory[, normal]): switch this TCP (or Unix)
** connection to TLS now: bytes written before go out in the clear, later
** ones encrypted. The side that made the connection (a connector) is the
** TLS client unless normal is false; as the server it has listenSSL's
** handshake timeout (the factory's handshakeTimeout, else 30 s). Raises
** on a closed transport, when TLS is already on, and whatever getContext
** raises.
** twisted ITLSTransport.startTLS. */
static int transport_startTLS(lua_State *L) {
  sp_stream *s = sp_stream_check(L, 1);
  int client;
  if (s == NULL)
    return sp_argerror(L, 1, "attempt to use a closed transport",
                       SP_TRANSPORT_MT);
  if (!lua_istable(L, 2) && !lua_isuserdata(L, 2))
    return sp_typeerror(L, 2, "context factory", SP_TRANSPORT_MT);
  if (sp_stream_filter_data(s, NULL) != NULL)
    return luaL_error(L, "TLS is already started");
  client = sp_stream_owner(s) != NULL;
  if (lua_gettop(L) >= 3 && !lua_isnil(L, 3) && !lua_toboolean(L, 3))
    client = !client;
  if (tls_attach(L, s, 2, client, 0) != 0) return lua_error(L);
  return 0;
}

/* t:getPeerCertificate() -> X509 or nil: the peer's certificate, once the
** handshake has completed (nil before, on a plain TCP transport, and for
** a client that sent none). twisted ISSLTransport.getPeerCertificate. */
static int transport_getPeerCertificate(lua_State *L) {
  tls_conn *c = conn_of(sp_stream_check(L, 1));
  if (c == NULL || !(c->flags & TF_DONE))
    lua_pushnil(L);
  else
    sp_ssl_pushx509(L, SSL_get0_peer_certificate(c->ssl));
  return 1;
}

/* t:getHandle() -> the ssl.Connection of a TLS transport (pyOpenSSL's
** Connection methods: get_peer_certificate, get_alpn_proto_negotiated,
** get_protocol_version_name, ...), nil on a plain one. */
static int transport_getHandle(lua_State *L) {
  tls_conn *c = conn_of(sp_stream_check(L, 1));
  if (c == NULL)
    lua_pushnil(L);
  else
    sp_ssl_pushconnection(L, c->ssl);
  return 1;
}

/* t:getNegotiatedProtocol() -> the ALPN protocol agreed, or nil (twisted's
** transport.negotiatedProtocol). */
static int transport_getNegotiatedProtocol(lua_State *L) {
  tls_conn *c = conn_of(sp_stream_check(L, 1));
  const unsigned char *p = NULL;
  unsigned int len = 0;
  if (c != NULL && (c->flags & TF_DONE))
    SSL_get0_alpn_selected(c->ssl, &p, &len);
  if (len > 0)
    lua_pushlstring(L, (const char *)p, len);
  else
    lua_pushnil(L);
  return 1;
}

static const luaL_Reg transport_methods[] = {
    {"startTLS", transport_startTLS},
    {"getPeerCertificate", transport_getPeerCertificate},
    {"getHandle", transport_getHandle},
    {"getNegotiatedProtocol", transport_getNegotiatedProtocol},
    {NULL, NULL}};

static const luaL_Reg tls_funcs[] = {
    {"listenSSL", tls_listenSSL}, {"connectSSL", tls_connectSSL}, {NULL, NULL}};

/* spindle._tls: listenSSL and connectSSL for spindle.reactor; also adds
** the TLS methods to every stream transport. */
int luaopen_spindle__tls(lua_State *L) {
  /* The transport metatable is made by spindle._tcp; the Context and
  ** X509 ones by spindle._ssl. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "spindle._tcp");
  lua_call(L, 1, 0);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "spindle._ssl");
  lua_call(L, 1, 0);
  sp_stream_add_methods(L, transport_methods);
  luaL_newlib(L, tls_funcs);
  return 1;
}
