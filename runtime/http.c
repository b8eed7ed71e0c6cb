/*
** http.c: HTTP/1.1 message parsing and response heads for spindle.web
** (module spindle._http), on llhttp (Node's parser, compiled from Debian's
** node-llhttp package).
**
** One parser per connection. llhttp reports spans that point into the
** bytes being parsed; the request target, header names (lowercased) and
** values are copied into the parser's `head` buffer, bounded by the
** limits given at creation, and the body into `body`. Lua is never called
** from inside llhttp: a callback that has something for Lua (headers
** complete, message complete) records the event and returns HPE_PAUSED;
** the parse loop then calls Lua with llhttp stopped at a message boundary
** and resumes it after.
**
** The server side (a channel, spindle.web's HTTPChannel) takes reads
** through stream.h's direct hook, so a read is parsed where libuv put it,
** with no Lua string made for it. Per request Lua gets one call,
** channel:_onRequest(method, uri, headers, body, minor, keepAlive), with
** the method string from a table of interned names, the headers in one
** table. A request whose response is not finished when _onRequest returns
** blocks the parser (pipelining in order, as Twisted's HTTPChannel): the
** rest of the read waits in `pend` until _http.resume(channel), and past
** PEND_THROTTLE bytes the transport stops reading. With streamed bodies
** (Site{streamRequestBody = true}) a request with a body goes instead to
** _onRequestHead at its head (llhttp paused there: the body still needs
** bytes, so the pause can always be resumed), _onRequestBody once per
** parse pass and _onRequestEnd, whose false result blocks as above.
**
** The client side (spindle.web's HTTP11ClientProtocol) feeds strings to a
** parser object and gets _onHead (at the end of the message or of the
** feed, whichever comes first: llhttp cannot resume a pause at the head
** of a body-less message without more bytes), _onBody (once per feed) and
** _onDone.
**
** Loop thread only: the reused response buffer and the method table are
** the module's, not a connection's.
**
** Responses: _http.writeHead formats the status line, Date, the user's
** headers and the framing headers into one reused buffer and hands it, and
** the body, to sp_transport_write as one write.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <llhttp.h>

#include "core.h"
#include "failure.h"
#include "loop.h"
#include "stream.h"

#define PARSER_MT "spindle.HTTPParser"

/* Bytes of pipelined input kept while a request is being answered before
** the transport stops reading. */
#define PEND_THROTTLE (64 * 1024)

/* Buffers larger than this are given back when they empty. */
#define BUF_KEEP (64 * 1024)

/* Bodies up to this size are copied after the head (one buffer); larger
** ones go out as a second buffer of the same write. */
#define BODY_COPY (16 * 1024)

/* What the callbacks left for the parse loop (bits). */
enum { EV_NONE = 0, EV_HEADERS = 1, EV_MESSAGE = 2 };

/* Sides. */
enum { SIDE_SERVER, SIDE_CLIENT };

typedef struct buf {
  char *p;
  size_t len, cap;
} buf;

/* One header field: offsets into head. */
typedef struct field {
  uint32_t noff, nlen, voff, vlen;
} field;

typedef struct hparser {
  llhttp_t p;
  int side;
  buf head; /* target (server) or reason (client), then fields */
  buf body; /* body bytes not yet given to Lua */
  buf pend; /* server: input not parsed yet; [pstart, len) */
  size_t pstart;
  field *fields;
  size_t nfields, fcap;
  size_t nhead;    /* fields of the head (then trailer fields) */
  uint32_t tlen;   /* target/reason: head[0, tlen) */
  int in_value;    /* the last field callback was a value */
  size_t max_head; /* bytes of target, names and values */
  size_t max_fields;
  size_t max_url;
  size_t max_body;
  size_t headbytes; /* counted against max_head */
  int event;        /* EV_ bits set by the callbacks */
  int errstatus;    /* 400 or 413 for a limit error */
  int keepalive;    /* of the message just completed */
  int expect;       /* Expect: 100-continue seen */
  int blocked;      /* server: waiting for _http.resume */
  int busy;         /* inside the parse loop */
  int stopped;      /* no more parsing (error, close, upgrade) */
  int throttled;    /* server: the transport was paused by us */
  int nobody;       /* client: the response has no body (HEAD) */
  int stream;       /* server: bodies go to Lua as they come */
  int streaming;    /* server: the current request's body is streamed */
  size_t bodytotal; /* server: body bytes of the current request */
  uint64_t last_ms; /* uv_now at the last read */
  uint64_t msg_ms;  /* uv_now at the first byte of the message; 0: idle */
  uint64_t hdr_ms;  /* uv_now when its headers completed; 0: not yet */

  /* The reason of a limit error: llhttp replaces the one limit_error sets
  ** when on_headers_complete returns it. */
  const char *errwhy;
} hparser;

static llhttp_settings_t settings;

/* Registry-free key of the parser inside a channel table. */
static const char parser_key = 0;

/* Registry key of the table of method names by llhttp method number. */
static const char methods_key = 0;

/* ---- buffers ---------------------------------------------------------- */

/* Make room for n more bytes; 0 when memory is short. */
static int buf_reserve(buf *b, size_t n) {
  size_t want;
  char *np;
  if (b->cap - b->len >= n) return 1;
  want = b->cap < 1024 ? 1024 : b->cap;
  while (want - b->len < n) {
    if (want > ((size_t)-1) / 2) return 0;
    want *= 2;
  }
  np = realloc(b->p, want);
  if (np == NULL) return 0;
  b->p = np;
  b->cap = want;
  return 1;
}

/* Append n bytes; 0 when memory is short. n may be 0 with b still
** unallocated (llhttp gives empty spans): nothing is copied then. */
static int buf_add(buf *b, const char *s, size_t n) {
  if (n == 0) return 1;
  if (!buf_reserve(b, n)) return 0;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  return 1;
}

/* Empty b, giving back an oversized allocation. */
static void buf_clear(buf *b) {
  b->len = 0;
  if (b->cap > BUF_KEEP) {
    free(b->p);
    b->p = NULL;
    b->cap = 0;
  }
}

static void buf_free(buf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ---- llhttp callbacks ---------------------------------------------------- */

static hparser *hp_of(llhttp_t *p) {
  return (hparser *)p;
}

/* A limit was passed: llhttp stops with HPE_USER and this reason. */
static int limit_error(hparser *h, int status, const char *why) {
  h->errstatus = status;
  h->errwhy = why;
  llhttp_set_error_reason(&h->p, why);
  return HPE_USER;
}

static int on_message_begin(llhttp_t *p) {
  hparser *h = hp_of(p);
  h->head.len = 0;
  h->body.len = 0;
  h->nfields = 0;
  h->nhead = 0;
  h->tlen = 0;
  h->in_value = 0;
  h->headbytes = 0;
  h->expect = 0;
  h->errstatus = 0;
  h->errwhy = NULL;
  h->streaming = 0;
  h->bodytotal = 0;
  h->msg_ms = uv_now(sp_loop());
  if (h->msg_ms == 0) h->msg_ms = 1;
  h->hdr_ms = 0;
  return 0;
}

/* Count n bytes of head against max_head. */
static int head_count(hparser *h, size_t n) {
  h->headbytes += n;
  if (h->headbytes > h->max_head) return limit_error(h, 400, "Header overflow");
  return 0;
}

static int on_target(llhttp_t *p, const char *at, size_t n) {
  hparser *h = hp_of(p);
  if (h->side == SIDE_SERVER && h->tlen + n > h->max_url)
    return limit_error(h, 400, "Request-target too long");
  if (head_count(h, n)) return HPE_USER;
  if (!buf_add(&h->head, at, n)) return limit_error(h, 500, "out of memory");
  h->tlen += (uint32_t)n;
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  hparser *h = hp_of(p);
  field *f;
  if (head_count(h, n)) return HPE_USER;
  if (h->nfields == 0 || h->in_value) {
    if (h->nfields >= h->max_fields)
      return limit_error(h, 400, "Too many header fields");
    if (h->nfields == h->fcap) {
      size_t nc = h->fcap ? h->fcap * 2 : 16;
      field *nf = realloc(h->fields, nc * sizeof(field));
      if (nf == NULL) return limit_error(h, 500, "out of memory");
      h->fields = nf;
      h->fcap = nc;
    }
    f = &h->fields[h->nfields++];
    f->noff = (uint32_t)h->head.len;
    f->nlen = f->voff = f->vlen = 0;
    h->in_value = 0;
  }
  f = &h->fields[h->nfields - 1];
  if (!buf_reserve(&h->head, n)) return limit_error(h, 500, "out of memory");
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)at[i];
    h->head.p[h->head.len++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
  f->nlen += (uint32_t)n;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  hparser *h = hp_of(p);
  field *f = &h->fields[h->nfields - 1];
  if (head_count(h, n)) return HPE_USER;
  if (!h->in_value) {
    f->voff = (uint32_t)h->head.len;
    h->in_value = 1;
  }
  if (!buf_add(&h->head, at, n)) return limit_error(h, 500, "out of memory");
  f->vlen += (uint32_t)n;
  return 0;
}

/* A field with an empty value never calls on_header_value. */
static int on_header_value_complete(llhttp_t *p) {
  hparser *h = hp_of(p);
  field *f = &h->fields[h->nfields - 1];
  const char *v;
  /* llhttp 8.1 takes ": value" as a field with an empty name (found by
  ** fuzz/http.c); a name is a token, one character at least (RFC 9110
  ** 5.1): a bad request, as Twisted answers it. */
  if (f->nlen == 0) return limit_error(h, 400, "Empty header name");
  if (!h->in_value) {
    f->voff = (uint32_t)h->head.len;
    h->in_value = 1;
  }
  /* Trailing whitespace is not part of the value (RFC 9110 5.5). The
  ** name's bytes are in head, so head.p is not NULL. */
  v = h->head.p + f->voff;
  while (f->vlen > 0 && (v[f->vlen - 1] == ' ' || v[f->vlen - 1] == '\t'))
    f->vlen--;
  if (f->nlen == 6 && memcmp(h->head.p + f->noff, "expect", 6) == 0 &&
      f->vlen == 12 && strncasecmp(v, "100-continue", 12) == 0)
    h->expect = 1;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  hparser *h = hp_of(p);
  h->hdr_ms = uv_now(sp_loop());
  h->nhead = h->nfields;
  if (h->side == SIDE_CLIENT) {
    /* llhttp 8.1 takes a status line without its code ("HTTP/1.1 \r\n")
    ** as code 0 (found by fuzz/http.c): not a response. */
    if (p->status_code < 100) return limit_error(h, 400, "Invalid status code");
    /* No pause here: with no body to come, llhttp completes the message
    ** only on its next execute, which may have no bytes to run on. The
    ** head goes to Lua at the message's end or the feed's, whichever is
    ** first. 1 means "no body" (the answer to HEAD). */
    h->event |= EV_HEADERS;
    return h->nobody ? 1 : 0;
  }
  int body = (p->flags & F_CHUNKED) || p->content_length > 0;
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > h->max_body)
    return limit_error(h, 413, "Request body too large");
  /* Pause only when a body is to come: it needs bytes, so llhttp will
  ** have some to finish the message with after the pause. */
  if (h->stream && body) h->streaming = 1;
  if ((h->expect && p->http_minor >= 1 && body) || h->streaming) {
    h->event |= EV_HEADERS;
    return HPE_PAUSED;
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  hparser *h = hp_of(p);
  h->bodytotal += n;
  if (h->side == SIDE_SERVER && h->bodytotal > h->max_body)
    return limit_error(h, 413, "Request body too large");
  if (!buf_add(&h->body, at, n)) return limit_error(h, 500, "out of memory");
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  hparser *h = hp_of(p);
  h->keepalive = llhttp_should_keep_alive(p);
  h->event |= EV_MESSAGE;
  h->msg_ms = 0;
  /* An upgrade makes llhttp return HPE_PAUSED_UPGRADE by itself. */
  return p->upgrade ? 0 : HPE_PAUSED;
}

/* ---- parser objects -------------------------------------------------- */

/* The parser metatable, recognised by its address on the hot path
** (luaL_testudata looks its name up in the registry each call). */
static const void *parser_mt;

/* [-0, +0, -] The parser at idx, or NULL if it is something else. */
static hparser *parser_test(lua_State *L, int idx) {
  const void *mt;
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx))
    return NULL;
  mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  return mt == parser_mt ? lua_touserdata(L, idx) : NULL;
}

static int parser_gc(lua_State *L) {
  hparser *h = parser_test(L, 1);
  if (h != NULL) {
    buf_free(&h->head);
    buf_free(&h->body);
    buf_free(&h->pend);
    free(h->fields);
    h->fields = NULL;
    h->nfields = h->fcap = 0;
  }
  return 0;
}

/* [-0, +1, m] A new parser userdata for `side` with the given limits. */
static hparser *parser_push(lua_State *L, int side, size_t max_head,
                            size_t max_fields, size_t max_url,
                            size_t max_body) {
  hparser *h = lua_newuserdatauv(L, sizeof(hparser), 0);
  memset(h, 0, sizeof(*h));
  luaL_setmetatable(L, PARSER_MT);
  llhttp_init(&h->p, side == SIDE_SERVER ? HTTP_REQUEST : HTTP_RESPONSE,
              &settings);
  h->side = side;
  h->max_head = max_head;
  h->max_fields = max_fields;
  h->max_url = max_url;
  h->max_body = max_body;
  h->last_ms = uv_now(sp_loop());
  return h;
}

/* [-0, +0, e] An optional size argument. */
static size_t opt_size(lua_State *L, int idx, size_t def) {
  lua_Integer v = luaL_optinteger(L, idx, (lua_Integer)def);
  luaL_argcheck(L, v >= 0, idx, "size must be >= 0");
  return (size_t)v;
}

/* ---- pushing a message to Lua ------------------------------------------- */

/* [-0, +1, m] The header fields as a table: lowercase name -> value, or a
** list of values when a name came more than once (in order). The trailer
** fields of a chunked body are parsed (within the limits) and left out,
** as Twisted's _ChunkedTransferDecoder drops them: the head is the same
** whether it goes to Lua before the body or at the message's end. */
static void push_headers(lua_State *L, hparser *h) {
  lua_createtable(L, 0, (int)h->nhead);
  for (size_t i = 0; i < h->nhead; i++) {
    const field *f = &h->fields[i];
    lua_pushlstring(L, h->head.p + f->noff, f->nlen);
    lua_pushvalue(L, -1);
    switch (lua_rawget(L, -3)) {
      case LUA_TNIL:
        lua_pop(L, 1);
        lua_pushlstring(L, h->head.p + f->voff, f->vlen);
        lua_rawset(L, -3);
        break;
      case LUA_TSTRING:
        lua_createtable(L, 2, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1);
        lua_pushlstring(L, h->head.p + f->voff, f->vlen);
        lua_rawseti(L, -2, 2);
        lua_rawset(L, -3);
        break;
      default: {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        lua_pushlstring(L, h->head.p + f->voff, f->vlen);
        lua_rawseti(L, -2, n + 1);
        lua_pop(L, 2);
      }
    }
  }
}

/* [-0, +1, -] The method name of the current request (interned strings
** kept in a table by number). */
static void push_method(lua_State *L, hparser *h) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &methods_key);
  lua_rawgeti(L, -1, llhttp_get_method(&h->p));
  lua_remove(L, -2);
}

/* ---- writing --------------------------------------------------------- */

/* [-0, +0, e] Write bufs to the transport at idx: straight to its stream
** when it is a plain one, else (TLS) through transport:write(string). */
static void transport_send(lua_State *L, int idx, const uv_buf_t *b,
                           unsigned n) {
  void *tud = sp_transport_test(L, idx);
  luaL_Buffer lb;
  if (tud != NULL && sp_transport_write(L, tud, b, n)) return;
  idx = lua_absindex(L, idx);
  lua_getfield(L, idx, "write");
  lua_pushvalue(L, idx);
  luaL_buffinit(L, &lb);
  for (unsigned i = 0; i < n; i++) luaL_addlstring(&lb, b[i].base, b[i].len);
  luaL_pushresult(&lb);
  lua_call(L, 2, 0);
}

/* ---- the parse loop ----------------------------------------------------- */

/* [-0, +0, e] Server: headers complete with Expect: 100-continue and a
** body to come: tell the client to send it (Twisted's HTTPChannel does
** this in allHeadersReceived). self at index 1. */
static void server_continue(lua_State *L) {
  static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
  uv_buf_t b = uv_buf_init((char *)msg, sizeof(msg) - 1);
  lua_getfield(L, 1, "transport");
  if (!lua_isnil(L, -1)) transport_send(L, -1, &b, 1);
  lua_pop(L, 1);
}

/* [-0, +0, e] Server: one complete request for self (index 1):
** self:_onRequest(method, target, headers, body, minor, keepAlive); a
** false result blocks the parser. */
static void server_message(lua_State *L, hparser *h, int upgrade) {
  lua_getfield(L, 1, "_onRequest");
  lua_pushvalue(L, 1);
  push_method(L, h);
  lua_pushlstring(L, h->head.p, h->tlen);
  push_headers(L, h);
  if (h->body.len > 0)
    lua_pushlstring(L, h->body.p, h->body.len);
  else
    lua_pushnil(L);
  lua_pushinteger(L, h->p.http_minor);
  lua_pushboolean(L, h->keepalive && !upgrade);
  /* No tunnels: answer, then close; nothing is parsed after a message
  ** that ends the connection (its answer comes first). */
  if (upgrade || !h->keepalive) h->stopped = 1;
  buf_clear(&h->body);
  lua_call(L, 7, 1);
  if (!lua_toboolean(L, -1)) h->blocked = 1;
  lua_pop(L, 1);
}

/* [-0, +0, e] Server, streamed body: the bytes gathered so far go to
** self:_onRequestBody(bytes) (self at index 1). */
static void server_body(lua_State *L, hparser *h) {
  if (!h->streaming || h->body.len == 0) return;
  lua_getfield(L, 1, "_onRequestBody");
  lua_pushvalue(L, 1);
  lua_pushlstring(L, h->body.p, h->body.len);
  buf_clear(&h->body);
  lua_call(L, 2, 0);
}

/* [-0, +0, e] Server, streamed body: the head of a request whose body is
** to come: self:_onRequestHead(method, target, headers, minor,
** keepAlive). */
static void server_head(lua_State *L, hparser *h) {
  lua_getfield(L, 1, "_onRequestHead");
  lua_pushvalue(L, 1);
  push_method(L, h);
  lua_pushlstring(L, h->head.p, h->tlen);
  push_headers(L, h);
  lua_pushinteger(L, h->p.http_minor);
  lua_pushboolean(L, llhttp_should_keep_alive(&h->p));
  lua_call(L, 6, 0);
}

/* [-0, +0, e] Server, streamed body: its end: self:_onRequestEnd(); a
** false result blocks the parser, as _onRequest's. */
static void server_end(lua_State *L, hparser *h, int upgrade) {
  server_body(L, h);
  if (upgrade || !h->keepalive) h->stopped = 1;
  h->streaming = 0;
  lua_getfield(L, 1, "_onRequestEnd");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  if (!lua_toboolean(L, -1)) h->blocked = 1;
  lua_pop(L, 1);
}

/* [-0, +0, e] Client: flush the body bytes gathered to obj:_onBody. */
static void client_body(lua_State *L, hparser *h, int obj) {
  if (h->body.len == 0) return;
  lua_getfield(L, obj, "_onBody");
  lua_pushvalue(L, obj);
  lua_pushlstring(L, h->body.p, h->body.len);
  buf_clear(&h->body);
  lua_call(L, 2, 0);
}

/* [-0, +0, e] Client events for obj: _onHead(code, reason, minor,
** headers), then _onDone(keepAlive). */
static void client_event(lua_State *L, hparser *h, int obj, int ev) {
  if (ev & EV_HEADERS) {
    lua_getfield(L, obj, "_onHead");
    lua_pushvalue(L, obj);
    lua_pushinteger(L, h->p.status_code);
    lua_pushlstring(L, h->head.p, h->tlen);
    lua_pushinteger(L, h->p.http_minor);
    push_headers(L, h);
    lua_call(L, 5, 0);
  }
  client_body(L, h, obj);
  if (ev & EV_MESSAGE) {
    lua_getfield(L, obj, "_onDone");
    lua_pushvalue(L, obj);
    lua_pushboolean(L, h->keepalive);
    lua_call(L, 2, 0);
  }
}

/* [-0, +0, e] A parse error: obj:_onParseError(status, name, reason);
** parsing stops for good. A client gets the head and body bytes parsed
** before the error first (the head is given at the end of a feed, and the
** error may come in the same feed). */
static void parse_error(lua_State *L, hparser *h, int obj, int err) {
  const char *reason = llhttp_get_error_reason(&h->p);
  if (h->errwhy != NULL) { /* ours, from any callback */
    reason = h->errwhy;
    err = HPE_USER;
  }
  h->stopped = 1;
  if (h->side == SIDE_CLIENT) {
    int ev = h->event & EV_HEADERS;
    h->event = EV_NONE;
    client_event(L, h, obj, ev);
  }
  lua_getfield(L, obj, "_onParseError");
  lua_pushvalue(L, obj);
  lua_pushinteger(L, h->errstatus ? h->errstatus : 400);
  lua_pushstring(L, llhttp_errno_name((llhttp_errno_t)err));
  lua_pushstring(L, reason != NULL ? reason : "");
  lua_call(L, 4, 0);
}

/* [-0, +0, e] Parse (data, len) for obj (at index 1 for a server channel)
** until it is all parsed, the parser blocks or stops. Returns the bytes
** consumed. Lua is called between llhttp_execute calls only. */
static size_t parse_some(lua_State *L, hparser *h, int obj, const char *data,
                         size_t len) {
  const char *start = data;
  while (len > 0 && !h->stopped && !h->blocked) {
    llhttp_errno_t e = llhttp_execute(&h->p, data, len);
    size_t used;
    int ev;
    if (e == HPE_OK) {
      if (h->side == SIDE_CLIENT && (h->event & EV_HEADERS)) {
        h->event = EV_NONE;
        client_event(L, h, obj, EV_HEADERS);
      }
      if (h->side == SIDE_SERVER) server_body(L, h);
      return (size_t)(data - start) + len;
    }
    if (e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE) {
      parse_error(L, h, obj, e);
      return (size_t)(data - start);
    }
    used = (size_t)(llhttp_get_error_pos(&h->p) - data);
    if (e == HPE_PAUSED)
      llhttp_resume(&h->p);
    else
      llhttp_resume_after_upgrade(&h->p);
    data += used;
    len -= used;
    ev = h->event;
    h->event = EV_NONE;
    if (h->side == SIDE_CLIENT) {
      if (ev != EV_NONE) client_event(L, h, obj, ev);
      if ((ev & EV_MESSAGE) && e == HPE_PAUSED_UPGRADE) h->stopped = 1;
    } else {
      if ((ev & EV_HEADERS) && h->expect) server_continue(L);
      if ((ev & EV_HEADERS) && h->streaming) server_head(L, h);
      if ((ev & EV_MESSAGE) && h->streaming)
        server_end(L, h, e == HPE_PAUSED_UPGRADE);
      else if (ev & EV_MESSAGE)
        server_message(L, h, e == HPE_PAUSED_UPGRADE);
    }
  }
  return (size_t)(data - start);
}

/* [-0, +0, e] Call transport:pauseProducing() or resumeProducing() of
** the channel at index 1. */
static void transport_throttle(lua_State *L, hparser *h, int on) {
  h->throttled = on;
  lua_getfield(L, 1, "transport");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  lua_getfield(L, -1, on ? "pauseProducing" : "resumeProducing");
  lua_insert(L, -2);
  lua_call(L, 1, 0);
}

/* [-0, +0, e] Keep (data, len) for later in pend. */
static void pend_add(lua_State *L, hparser *h, const char *data, size_t len) {
  if (h->pstart > 0 && h->pstart == h->pend.len) h->pstart = h->pend.len = 0;
  if (h->pstart > 0 && h->pend.cap - h->pend.len < len) {
    memmove(h->pend.p, h->pend.p + h->pstart, h->pend.len - h->pstart);
    h->pend.len -= h->pstart;
    h->pstart = 0;
  }
  if (!buf_add(&h->pend, data, len)) luaL_error(L, "not enough memory");
  if (!h->throttled && h->pend.len - h->pstart > PEND_THROTTLE)
    transport_throttle(L, h, 1);
}

/* [-0, +0, e] Run the parse loop over the channel's pending input, then
** (when data is not NULL) over data, keeping what is not parsed. The
** channel is at index 1. Errors leave the parser consistent (stopped)
** and are raised again. */
static void server_feed(lua_State *L, hparser *h, const char *data,
                        size_t len) {
  if (h->busy) luaL_error(L, "HTTP channel fed while parsing");
  if (data != NULL) h->last_ms = uv_now(sp_loop());
  if (h->stopped) return;
  if (h->blocked) {
    if (data != NULL) pend_add(L, h, data, len);
    return;
  }
  h->busy = 1;
  while (h->pstart < h->pend.len && !h->blocked && !h->stopped) {
    size_t n = h->pend.len - h->pstart;
    h->pstart += parse_some(L, h, 1, h->pend.p + h->pstart, n);
  }
  if (h->pstart == h->pend.len) {
    h->pstart = 0;
    buf_clear(&h->pend);
  }
  if (data != NULL && len > 0) {
    size_t used = 0;
    if (h->pend.len == 0 && !h->blocked && !h->stopped)
      used = parse_some(L, h, 1, data, len);
    if (used < len && !h->stopped) pend_add(L, h, data + used, len - used);
  }
  h->busy = 0;
  if (h->throttled && !h->blocked && !h->stopped &&
      h->pend.len - h->pstart <= PEND_THROTTLE)
    transport_throttle(L, h, 0);
}

/* The body of feed under a protected call: (channel, data, len, h). */
static int server_feed_k(lua_State *L) {
  hparser *h = lua_touserdata(L, 4);
  const char *data = lua_touserdata(L, 2);
  size_t len = (size_t)lua_tointeger(L, 3);
  lua_settop(L, 1);
  server_feed(L, h, data, len);
  return 0;
}

/* [-0, +0, e] server_feed protected so that the parser is left
** consistent (not busy, stopped) when Lua raises, then raise again. The
** channel is at index 1; data stays valid (anchored by the caller). */
static void server_feed_safe(lua_State *L, hparser *h, const char *data,
                             size_t len) {
  int top = lua_gettop(L), status;
  if (h->busy) luaL_error(L, "HTTP channel fed while parsing");
  lua_pushcfunction(L, sp_errhandler);
  lua_pushcfunction(L, server_feed_k);
  lua_pushvalue(L, 1);
  lua_pushlightuserdata(L, (void *)data);
  lua_pushinteger(L, (lua_Integer)len);
  lua_pushlightuserdata(L, h);
  status = lua_pcall(L, 4, 0, top + 1);
  if (status != LUA_OK) {
    h->busy = 0;
    h->stopped = 1;
    lua_error(L);
  }
  lua_settop(L, top);
}

/* [-0, +0, e] The server parser of the channel at index 1. */
static hparser *channel_parser(lua_State *L) {
  hparser *h;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_rawgetp(L, 1, &parser_key);
  h = parser_test(L, -1);
  lua_pop(L, 1);
  if (h == NULL) luaL_error(L, "HTTP channel has no parser (attach first)");
  return h;
}

/* channel:dataReceived(data): parse request bytes; complete requests go
** to channel:_onRequest (see the top of the file). Raises what that
** raises. Loop thread only. Installed as HTTPChannel.dataReceived by
** spindle.web. Follows twisted.web.http.HTTPChannel.dataReceived. */
static int channel_dataReceived(lua_State *L) {
  hparser *h = channel_parser(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  lua_settop(L, 2); /* the string at index 2 anchors s */
  server_feed_safe(L, h, s, n);
  return 0;
}

/* channel_dataReceived for a read without a Lua string (stream.h's direct
** hook): the channel at index 1, the bytes valid during the call. No
** protected call of its own: the stream's delivery is one, and an error
** there closes the connection, so a parser left busy is never fed again. */
static int channel_direct(lua_State *L, const char *s, size_t n) {
  hparser *h = channel_parser(L);
  server_feed(L, h, s, n);
  return 0;
}

/* _http.attach(channel, maxHeaderBytes, maxHeaders, maxUrl, maxBody,
** stream): give a channel table its request parser with those limits
** (bytes, count, bytes, bytes). With stream true, a request with a body
** goes to _onRequestHead, _onRequestBody (per read) and _onRequestEnd
** instead of one _onRequest. */
static int http_attach(lua_State *L) {
  size_t mh, mf, mu, mb;
  int stream = lua_toboolean(L, 6); /* before the parser is pushed */
  hparser *h;
  luaL_checktype(L, 1, LUA_TTABLE);
  mh = opt_size(L, 2, 16384);
  mf = opt_size(L, 3, 500);
  mu = opt_size(L, 4, 8192);
  mb = opt_size(L, 5, 10 * 1024 * 1024);
  h = parser_push(L, SIDE_SERVER, mh, mf, mu, mb);
  h->stream = stream;
  lua_rawsetp(L, 1, &parser_key);
  return 0;
}

/* _http.resume(channel): the request that blocked the parser is answered;
** parse what waited. Raises what _onRequest raises. */
static int http_resume(lua_State *L) {
  hparser *h = channel_parser(L);
  lua_settop(L, 1);
  if (!h->blocked) return 0;
  h->blocked = 0;
  if (h->busy) return 0; /* answered from inside the loop: it goes on */
  server_feed_safe(L, h, NULL, 0);
  return 0;
}

/* _http.stop(channel): parse nothing more (the connection closes). */
static int http_stop(lua_State *L) {
  hparser *h = channel_parser(L);
  h->stopped = 1;
  return 0;
}

/* _http.state(channel) -> idle, reading, blocked, pending: seconds since
** the last read (float), seconds since the first byte of a request whose
** headers are not complete yet (nil when none), seconds since the first
** byte of a request not complete yet (nil when none), whether a request
** is being answered, and the bytes waiting. For the timeouts. */
static int http_state(lua_State *L) {
  hparser *h = channel_parser(L);
  uint64_t now = uv_now(sp_loop());
  lua_pushnumber(L, (double)(now - h->last_ms) / 1000.0);
  if (h->msg_ms != 0 && h->hdr_ms == 0)
    lua_pushnumber(L, (double)(now - h->msg_ms) / 1000.0);
  else
    lua_pushnil(L);
  if (h->msg_ms != 0)
    lua_pushnumber(L, (double)(now - h->msg_ms) / 1000.0);
  else
    lua_pushnil(L);
  lua_pushboolean(L, h->blocked);
  lua_pushinteger(L, (lua_Integer)(h->pend.len - h->pstart));
  return 5;
}

/* _http.memory(channel) -> bytes: what the parser holds (buffers'
** capacity), for the specs of the memory bound. */
static int http_memory(lua_State *L) {
  hparser *h = channel_parser(L);
  lua_pushinteger(L, (lua_Integer)(h->head.cap + h->body.cap + h->pend.cap +
                                   h->fcap * sizeof(field)));
  return 1;
}

/* ---- the client parser object ----------------------------------------- */

/* _http.ResponseParser([maxHeaderBytes[, maxHeaders]]) -> parser: a
** response parser for the client side (spindle.web's Agent). */
static int http_ResponseParser(lua_State *L) {
  size_t mh = opt_size(L, 1, 64 * 1024), mf = opt_size(L, 2, 500);
  parser_push(L, SIDE_CLIENT, mh, mf, (size_t)-1, (size_t)-1);
  return 1;
}

/* The body of feed under a protected call: (parser, obj, data). */
static int parser_feed_k(lua_State *L) {
  hparser *h = lua_touserdata(L, 1);
  size_t n;
  const char *s = lua_tolstring(L, 3, &n);
  parse_some(L, h, 2, s, n);
  if (!h->stopped) client_body(L, h, 2);
  return 0;
}

/* parser:feed(obj, data): parse response bytes, calling obj:_onHead(code,
** reason, minor, headers), obj:_onBody(bytes) and obj:_onDone(keepAlive),
** or obj:_onParseError(status, name, reason). Raises what they raise
** (the parser then parses nothing more). */
static int parser_feed(lua_State *L) {
  hparser *h = luaL_checkudata(L, 1, PARSER_MT);
  int status;
  luaL_checkany(L, 2);
  luaL_checktype(L, 3, LUA_TSTRING);
  if (h->busy) return luaL_error(L, "HTTP parser fed while parsing");
  if (h->stopped) return 0;
  h->busy = 1;
  h->last_ms = uv_now(sp_loop());
  lua_settop(L, 3);
  lua_pushcfunction(L, sp_errhandler);
  lua_pushcfunction(L, parser_feed_k);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  status = lua_pcall(L, 3, 0, 4);
  h->busy = 0;
  if (status != LUA_OK) {
    h->stopped = 1;
    return lua_error(L);
  }
  return 0;
}

/* parser:finish(obj): the connection ended; a response delimited by the
** end of the connection is complete now (obj:_onDone(false)); one cut
** short gives obj:_onParseError. Returns whether a message was under
** way and not complete. */
static int parser_finish(lua_State *L) {
  hparser *h = luaL_checkudata(L, 1, PARSER_MT);
  llhttp_errno_t e;
  int midway;
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  if (h->stopped || h->busy) {
    lua_pushboolean(L, 0);
    return 1;
  }
  midway = h->msg_ms != 0;
  e = llhttp_finish(&h->p);
  h->stopped = 1;
  if ((e == HPE_OK || e == HPE_PAUSED) && (h->event & EV_MESSAGE)) {
    int ev = h->event;
    h->event = EV_NONE;
    h->keepalive = 0;
    client_event(L, h, 2, ev);
    midway = 0;
  }
  lua_pushboolean(L, midway);
  return 1;
}

/* parser:setNoBody(flag): the next response has no body (the answer to
** a HEAD request). */
static int parser_setNoBody(lua_State *L) {
  hparser *h = luaL_checkudata(L, 1, PARSER_MT);
  h->nobody = lua_toboolean(L, 2);
  return 0;
}

/* parser:midway() -> boolean: a response has begun and is not complete. */
static int parser_midway(lua_State *L) {
  hparser *h = luaL_checkudata(L, 1, PARSER_MT);
  lua_pushboolean(L, h->msg_ms != 0);
  return 1;
}

/* ---- response heads ---------------------------------------------------- */

static buf out; /* the reused response buffer (loop thread only) */

static const char *reason_for(int code) {
  switch (code) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Request Entity Too Large";
    case 414:
      return "Request-URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Requested Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown Status";
  }
}

/* The Date header's value for now, remade once a second. */
static const char *http_date(time_t t, char *dst, size_t n) {
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                  "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  struct tm tm;
  gmtime_r(&t, &tm);
  snprintf(dst, n, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday],
           tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
           tm.tm_min, tm.tm_sec);
  return dst;
}

static const char *date_now(size_t *len) {
  static char cached[40];
  static size_t cachedlen;
  static time_t at = -1;
  time_t now = time(NULL);
  if (now != at) {
    at = now;
    http_date(now, cached, sizeof(cached));
    cachedlen = strlen(cached);
  }
  *len = cachedlen;
  return cached;
}

static void out_str(const char *s, size_t n) {
  memcpy(out.p + out.len, s, n);
  out.len += n;
}

/* Append the decimal digits of v (room was reserved). */
static void out_uint(unsigned long long v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0);
  while (n > 0) out.p[out.len++] = tmp[--n];
}

#define OUT_LIT(s) out_str(s, sizeof(s) - 1)

/* [-0, +0, m] Append "Name: value\r\n" with the name canonicalised as
** Twisted's Headers does (Content-Type). */
static void out_header(lua_State *L, const char *name, size_t nl, const char *v,
                       size_t vl) {
  int up = 1;
  if (!buf_reserve(&out, nl + vl + 4)) luaL_error(L, "not enough memory");
  for (size_t i = 0; i < nl; i++) {
    char c = name[i];
    if (up && c >= 'a' && c <= 'z') c = (char)(c - 32);
    up = c == '-';
    out.p[out.len++] = c;
  }
  OUT_LIT(": ");
  out_str(v, vl);
  OUT_LIT("\r\n");
}

/* [-0, +0, e] A header value must not break the head: no CR or LF (a
** response-splitting guard, as Twisted's Headers sanitizes them). */
static const char *check_value(lua_State *L, int idx, size_t *n) {
  const char *v = lua_isstring(L, idx) ? lua_tolstring(L, idx, n) : NULL;
  if (v == NULL) luaL_error(L, "header value must be a string");
  if (memchr(v, '\r', *n) != NULL || memchr(v, '\n', *n) != NULL)
    luaL_error(L, "header value contains a line break");
  return v;
}

/* Flags of writeHead. */
enum {
  WH_CLOSE = 1,     /* Connection: close */
  WH_KEEPALIVE = 2, /* Connection: keep-alive (HTTP/1.0) */
  WH_NOBODY = 4,    /* HEAD: the body is not sent */
  WH_DEFTYPE = 8    /* add Content-Type: text/html when none was set */
};

/* _http.writeHead(transport, code, reason, headers, length, flags[, body])
** Write a response head (and body) as one write: "HTTP/1.1 code reason",
** Date, each of headers (a table name -> string or list of strings, or
** nil), then Content-Length: length (length >= 0), Transfer-Encoding:
** chunked (length == -1) or neither (-2), Connection by the flags, and
** body unless the WH_NOBODY flag is set. reason nil means the standard
** phrase. Raises for a header value with a line break. Loop thread only.
** Follows twisted.web.http.Request.write's first-write path. */
static int http_writeHead(lua_State *L) {
  int code = (int)luaL_checkinteger(L, 2);
  const char *reason = luaL_optstring(L, 3, NULL);
  lua_Integer length = luaL_checkinteger(L, 5);
  int flags = (int)luaL_checkinteger(L, 6), hastype = 0;
  size_t blen = 0, dl;
  const char *body = luaL_optlstring(L, 7, NULL, &blen);
  const char *date = date_now(&dl);
  uv_buf_t b[2];
  unsigned nb = 1;
  if (reason == NULL) reason = reason_for(code);
  if (strpbrk(reason, "\r\n") != NULL)
    return luaL_argerror(L, 3, "reason contains a line break");
  if (code < 100 || code > 999) return luaL_argerror(L, 2, "bad status");
  out.len = 0;
  if (!buf_reserve(&out, 256 + strlen(reason)))
    return luaL_error(L, "not enough memory");
  OUT_LIT("HTTP/1.1 ");
  out_uint((unsigned)code);
  out.p[out.len++] = ' ';
  out_str(reason, strlen(reason));
  OUT_LIT("\r\nDate: ");
  out_str(date, dl);
  OUT_LIT("\r\n");
  if (lua_type(L, 4) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, 4)) {
      size_t nl, vl;
      const char *name;
      if (lua_type(L, -2) != LUA_TSTRING) {
        lua_pop(L, 1);
        continue;
      }
      name = lua_tolstring(L, -2, &nl);
      if (nl == 12 && memcmp(name, "content-type", 12) == 0) hastype = 1;
      if (lua_type(L, -1) == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
          const char *v;
          lua_rawgeti(L, -1, i);
          v = check_value(L, -1, &vl);
          out_header(L, name, nl, v, vl);
          lua_pop(L, 1);
        }
      } else {
        const char *v = check_value(L, -1, &vl);
        out_header(L, name, nl, v, vl);
      }
      lua_pop(L, 1);
    }
  }
  if (!buf_reserve(&out, 128)) return luaL_error(L, "not enough memory");
  if ((flags & WH_DEFTYPE) && !hastype) OUT_LIT("Content-Type: text/html\r\n");
  if (length >= 0) {
    OUT_LIT("Content-Length: ");
    out_uint((unsigned long long)length);
    OUT_LIT("\r\n");
  } else if (length == -1) {
    OUT_LIT("Transfer-Encoding: chunked\r\n");
  }
  if (flags & WH_CLOSE)
    OUT_LIT("Connection: close\r\n");
  else if (flags & WH_KEEPALIVE)
    OUT_LIT("Connection: keep-alive\r\n");
  OUT_LIT("\r\n");
  if (body != NULL && blen > 0 && !(flags & WH_NOBODY)) {
    if (blen <= BODY_COPY) {
      if (!buf_add(&out, body, blen)) return luaL_error(L, "not enough memory");
    } else {
      b[1] = uv_buf_init((char *)body, (unsigned)blen);
      nb = 2;
    }
  }
  b[0] = uv_buf_init(out.p, (unsigned)out.len);
  transport_send(L, 1, b, nb);
  if (out.cap > BUF_KEEP) buf_free(&out);
  return 0;
}

/* _http.writeChunk(transport, data): data as one chunk of a chunked body
** ("<hex length>\r\n<data>\r\n"), one write; empty data writes nothing
** (the last chunk is "0\r\n\r\n", written by finish). */
static int http_writeChunk(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  char pre[24];
  uv_buf_t b[3];
  if (n == 0) return 0;
  b[0] = uv_buf_init(pre, (unsigned)snprintf(pre, sizeof(pre), "%zx\r\n", n));
  b[1] = uv_buf_init((char *)s, (unsigned)n);
  b[2] = uv_buf_init((char *)"\r\n", 2);
  transport_send(L, 1, b, 3);
  return 0;
}

/* _http.write(transport, data): transport:write(data), straight to the
** stream for a plain TCP/Unix transport. */
static int http_write(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  uv_buf_t b = uv_buf_init((char *)s, (unsigned)n);
  if (n > 0) transport_send(L, 1, &b, 1);
  return 0;
}

/* _http.date([t]) -> string: t (seconds since the epoch, default now) in
** the HTTP date format ("Fri, 04 Dec 2026 22:15:06 GMT").
** twisted.web.http.datetimeToString. */
static int http_dateString(lua_State *L) {
  char d[40];
  time_t t =
      lua_isnoneornil(L, 1) ? time(NULL) : (time_t)luaL_checknumber(L, 1);
  lua_pushstring(L, http_date(t, d, sizeof(d)));
  return 1;
}

/* _http.stat(path) -> kind, size, mtime | nil, message: "file",
** "directory" or "other", the size in bytes and the modification time in
** seconds since the epoch (uv_fs_stat, synchronous). */
static int http_stat(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  uv_fs_t req;
  int r = uv_fs_stat(NULL, &req, path, NULL);
  if (r < 0) {
    uv_fs_req_cleanup(&req);
    lua_pushnil(L);
    lua_pushstring(L, uv_strerror(r));
    return 2;
  }
  if (S_ISREG(req.statbuf.st_mode))
    lua_pushliteral(L, "file");
  else if (S_ISDIR(req.statbuf.st_mode))
    lua_pushliteral(L, "directory");
  else
    lua_pushliteral(L, "other");
  lua_pushinteger(L, (lua_Integer)req.statbuf.st_size);
  lua_pushinteger(L, (lua_Integer)req.statbuf.st_mtim.tv_sec);
  uv_fs_req_cleanup(&req);
  return 3;
}

/* _http.listdir(path) -> {names} | nil, message: the entries of a
** directory, sorted by the caller (uv_fs_scandir, synchronous; "." and
** ".." are not listed). For web.DirectoryLister. */
static int http_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  uv_fs_t req;
  uv_dirent_t ent;
  lua_Integer n = 0;
  int r = uv_fs_scandir(NULL, &req, path, 0, NULL);
  if (r < 0) {
    uv_fs_req_cleanup(&req);
    lua_pushnil(L);
    lua_pushstring(L, uv_strerror(r));
    return 2;
  }
  lua_createtable(L, r, 0);
  while (uv_fs_scandir_next(&req, &ent) == 0) {
    lua_pushstring(L, ent.name);
    lua_rawseti(L, -2, ++n);
  }
  uv_fs_req_cleanup(&req);
  return 1;
}

/* ---- module ------------------------------------------------------------ */

static const luaL_Reg parser_methods[] = {{"feed", parser_feed},
                                          {"finish", parser_finish},
                                          {"setNoBody", parser_setNoBody},
                                          {"midway", parser_midway},
                                          {NULL, NULL}};

static const luaL_Reg parser_meta[] = {{"__gc", parser_gc}, {NULL, NULL}};

static const luaL_Reg http_funcs[] = {{"attach", http_attach},
                                      {"dataReceived", channel_dataReceived},
                                      {"resume", http_resume},
                                      {"stop", http_stop},
                                      {"state", http_state},
                                      {"memory", http_memory},
                                      {"ResponseParser", http_ResponseParser},
                                      {"writeHead", http_writeHead},
                                      {"writeChunk", http_writeChunk},
                                      {"write", http_write},
                                      {"date", http_dateString},
                                      {"stat", http_stat},
                                      {"listdir", http_listdir},
                                      {NULL, NULL}};

/* spindle._http: the C half of spindle.web (see web.lua). */
int luaopen_spindle__http(lua_State *L) {
  llhttp_settings_init(&settings);
  settings.on_message_begin = on_message_begin;
  settings.on_url = on_target;
  settings.on_status = on_target;
  settings.on_header_field = on_header_field;
  settings.on_header_value = on_header_value;
  settings.on_header_value_complete = on_header_value_complete;
  settings.on_headers_complete = on_headers_complete;
  settings.on_body = on_body;
  settings.on_message_complete = on_message_complete;
  sp_class_new(L, PARSER_MT, parser_methods, parser_meta);
  luaL_getmetatable(L, PARSER_MT);
  parser_mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  lua_createtable(L, 64, 0);
#define SP_METHOD(num, name, string) \
  lua_pushliteral(L, #string);       \
  lua_rawseti(L, -2, num);
  HTTP_METHOD_MAP(SP_METHOD)
#undef SP_METHOD
  lua_rawsetp(L, LUA_REGISTRYINDEX, &methods_key);
  luaL_newlib(L, http_funcs);
  sp_stream_set_direct(channel_dataReceived, channel_direct);
  lua_pushinteger(L, WH_CLOSE);
  lua_setfield(L, -2, "CLOSE");
  lua_pushinteger(L, WH_KEEPALIVE);
  lua_setfield(L, -2, "KEEPALIVE");
  lua_pushinteger(L, WH_NOBODY);
  lua_setfield(L, -2, "NOBODY");
  lua_pushinteger(L, WH_DEFTYPE);
  lua_setfield(L, -2, "DEFTYPE");
  return 1;
}
