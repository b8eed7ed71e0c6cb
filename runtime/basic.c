/*
** basic.c: the framing engine of spindle.basic (module spindle._basic).
**
** One C "framer" per protocol instance holds the bytes received but not yet
** delivered, and the scanners that cut them into lines (LineReceiver),
** netstrings (NetstringReceiver) and length-prefixed strings
** (Int8/16/32StringReceiver). basic.lua installs the functions here as the
** classes' methods, so a chunk goes from the transport to lineReceived
** without a Lua frame in between.
**
** Cost model (this is the benchmark's hot path): a chunk that arrives while
** nothing is pending is scanned in place (the "external" chunk); only its
** unfinished tail is copied into the framer's buffer. Per line the only
** allocation is the line string itself. A search for the delimiter never
** rescans bytes already known not to start one, so a long line fed one
** byte at a time costs linear time.
**
** Bounds: in line mode the pending bytes never exceed MAX_LENGTH plus the
** delimiter plus one chunk before lineLengthExceeded takes them; length
** prefixes are checked against MAX_LENGTH before any payload is kept.
**
** Reentrancy follows twisted.protocols.basic.LineReceiver: a dataReceived
** call made while a chunk is being processed (from lineReceived, or through
** setLineMode(extra)) only appends; the outer loop then processes it. Every
** callback runs under lua_pcall, so the framer's state is made consistent
** before an error is passed on to the caller (the transport logs it and
** drops the connection, as Twisted's reactor does).
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "failure.h"
#include "stream.h"

#define FRAMER_MT "spindle.Framer"

/* Buffers larger than this are given back once they drain. */
#define FRAMER_KEEP (64 * 1024)

/* Netstring parser states. */
enum { NS_LENGTH, NS_PAYLOAD };

typedef struct framer {
  char *buf; /* owned storage; pending bytes are [start, end) */
  size_t cap, start, end;
  const char *ext;       /* while busy: the chunk scanned in place */
  size_t extlen, extpos; /* pending bytes are ext[extpos, extlen) */
  size_t nodelim;        /* leading pending bytes where no delimiter starts */
  size_t expected;       /* netstring: payload length being waited for */
  const char *delim;     /* last delimiter, anchored in the user value */
  int busy;              /* inside a processing loop: new data only appends */
  int raw;               /* LineReceiver raw mode */
  int paused;            /* pauseProducing() was called */
  int broken;            /* netstring parse error: further data ignored */
  int nsstate;           /* netstring: NS_LENGTH or NS_PAYLOAD */
  /* LineReceiver caches (see line_loop). Valid for one chunk: what the
  ** instance inherits for MAX_LENGTH, delimiter and lineReceived (the
  ** INH_ bits say which were looked up). */
  unsigned inherited;
  /* Which of them the instance may have as its own fields (INH_ bits):
  ** those it had when the chunk began, and any assigned since, as
  ** line_newindex reports; all three when its class has another
  ** __newindex (line_owned). Only these are read on every line. */
  unsigned owned;
  size_t inh_maxlen;
  const char *inh_delim; /* anchored in user value FUV_INHDELIM */
  size_t inh_dlen;
  /* Valid while the framer lives: the stream transport last found in the
  ** instance's own `transport` field (anchored in FUV_TRANSPORT), or NULL. */
  void *tud;
  /* While line_loop runs: the instance, and the framer running before. */
  const void *self;
  struct framer *outer;
} framer;

/* User values of a framer. */
enum { FUV_DELIM = 1, FUV_INHDELIM, FUV_TRANSPORT, FUV_N = FUV_TRANSPORT };

/* Bits of framer.inherited. */
enum { INH_MAXLEN = 1, INH_DELIM = 2, INH_LINERECEIVED = 4 };

/* The framer of the innermost line_loop running on this thread, so that
** sendLine, called from lineReceived, finds the caches without a lookup. */
static _Thread_local framer *running_line;

/* Registry-free key for the framer inside a protocol instance. */
static const char framer_key = 0;

/* The framer metatable, recognised by its address on the hot path
** (luaL_checkudata would look its name up in the registry each call). */
static const void *framer_mt;

/* Field names every module function has as upvalues, so the hot path
** indexes with ready Lua strings (lua_getfield would hash and look up its
** C string each time). */
enum {
  K_TRANSPORT = 1,
  K_DISCONNECTING,
  K_MAX_LENGTH,
  K_DELIMITER,
  K_LINERECEIVED,
  K_RAWDATARECEIVED,
  K_LINELENGTHEXCEEDED,
  K_STRINGRECEIVED,
  K_LENGTHLIMITEXCEEDED,
  K_WRITE,
  K_ISCLOSED,
  K_NEWINDEX,
  K_NKEYS = K_NEWINDEX,
  K_LINELOOP /* not a key: the line_loop closure */
};

static const char *const key_names[K_NKEYS] = {"transport",
                                               "disconnecting",
                                               "MAX_LENGTH",
                                               "delimiter",
                                               "lineReceived",
                                               "rawDataReceived",
                                               "lineLengthExceeded",
                                               "stringReceived",
                                               "lengthLimitExceeded",
                                               "write",
                                               "isClosed",
                                               "__newindex"};

/* [-0, +1, e] Push t[key] for the table (or object) at idx; key is one of
** the K_ names. Only in functions registered by luaopen_spindle__basic. */
static int getk(lua_State *L, int idx, int key) {
  idx = lua_absindex(L, idx);
  lua_pushvalue(L, lua_upvalueindex(key));
  return lua_gettable(L, idx);
}

/* ---- buffer ---------------------------------------------------------- */

static size_t pending_len(const framer *f) {
  return f->ext != NULL ? f->extlen - f->extpos : f->end - f->start;
}

static const char *pending_ptr(const framer *f) {
  return f->ext != NULL ? f->ext + f->extpos : f->buf + f->start;
}

/* Drop n pending bytes from the front. */
static void pending_consume(framer *f, size_t n) {
  f->nodelim = 0;
  if (f->ext != NULL) {
    f->extpos += n;
    return;
  }
  f->start += n;
  if (f->start == f->end) f->start = f->end = 0;
}

/* Make room for n more bytes at the end of buf; 0 on allocation failure.
** Compacts first, so the buffer only grows when the pending bytes need it. */
static int buf_reserve(framer *f, size_t n) {
  size_t used = f->end - f->start, want;
  char *nb;
  if (f->cap - f->end >= n) return 1;
  if (f->start > 0) {
    memmove(f->buf, f->buf + f->start, used);
    f->start = 0;
    f->end = used;
    if (f->cap - f->end >= n) return 1;
  }
  want = f->cap < 4096 ? 4096 : f->cap;
  while (want - used < n) {
    if (want > ((size_t)-1) / 2) return 0;
    want *= 2;
  }
  nb = realloc(f->buf, want);
  if (nb == NULL) return 0;
  f->buf = nb;
  f->cap = want;
  return 1;
}

/* [-0, +0, m] Append bytes after the pending ones. An external chunk still
** being scanned is copied into buf first, keeping the order. */
static void pending_append(lua_State *L, framer *f, const char *s, size_t n) {
  if (f->ext != NULL) {
    const char *e = f->ext + f->extpos;
    size_t elen = f->extlen - f->extpos;
    f->ext = NULL;
    if (elen > 0 && !buf_reserve(f, elen)) luaL_error(L, "not enough memory");
    memcpy(f->buf + f->end, e, elen);
    f->end += elen;
  }
  if (n == 0) return;
  if (!buf_reserve(f, n)) luaL_error(L, "not enough memory");
  memcpy(f->buf + f->end, s, n);
  f->end += n;
}

/* Forget every pending byte. */
static void pending_clear(framer *f) {
  f->ext = NULL;
  f->extpos = f->extlen = 0;
  f->start = f->end = 0;
  f->nodelim = 0;
}

/* [-0, +1, m] Push the pending bytes as a string and forget them. */
static void pending_take(lua_State *L, framer *f) {
  lua_pushlstring(L, pending_ptr(f), pending_len(f));
  pending_clear(f);
}

/* End of a processing loop: copy the unscanned tail of the external chunk
** (it dies with the caller's stack) and give back an oversized buffer. */
static void framer_finish(framer *f) {
  f->busy = 0;
  if (f->ext != NULL) {
    size_t elen = f->extlen - f->extpos;
    const char *e = f->ext + f->extpos;
    size_t keep = f->nodelim;
    f->ext = NULL;
    if (elen > 0 && buf_reserve(f, elen)) {
      memcpy(f->buf + f->end, e, elen);
      f->end += elen;
      f->nodelim = keep;
    } else if (elen > 0) {
      /* Out of memory: the tail is lost rather than the process. */
      f->nodelim = 0;
    }
  }
  if (f->start == f->end && f->cap > FRAMER_KEEP) {
    free(f->buf);
    f->buf = NULL;
    f->cap = f->start = f->end = 0;
  }
}

/* [-0, +0, -] The framer at idx, or NULL if it is something else. */
static framer *framer_test(lua_State *L, int idx) {
  const void *mt;
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx))
    return NULL;
  mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  return mt == framer_mt ? lua_touserdata(L, idx) : NULL;
}

/* __gc of framers: free the buffer. */
static int framer_gc(lua_State *L) {
  framer *f = framer_test(L, 1);
  if (f == NULL) return luaL_typeerror(L, 1, FRAMER_MT);
  free(f->buf);
  f->buf = NULL;
  f->cap = f->start = f->end = 0;
  return 0;
}

/* [-0, +0, e] The framer of the protocol instance at index 1 (a table),
** made on first use. Raises if the framer's field holds something else
** (the key can be met with pairs(self) and overwritten). */
static framer *framer_get(lua_State *L) {
  framer *f;
  luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_rawgetp(L, 1, &framer_key) != LUA_TNIL) {
    f = framer_test(L, -1);
    if (f == NULL) luaL_error(L, "protocol's framer field was overwritten");
    lua_pop(L, 1);
    return f;
  }
  lua_pop(L, 1);
  f = lua_newuserdatauv(L, sizeof(framer), FUV_N);
  memset(f, 0, sizeof(*f));
  luaL_setmetatable(L, FRAMER_MT);
  lua_rawsetp(L, 1, &framer_key);
  return f;
}

/* [-0, +0, e] Start processing the bytes (s, n), which stay valid until
** framer_finish: scan them in place when nothing is pending, else append
** them. Returns 0 when the framer is busy (the bytes were appended for
** the running loop to see). */
static int framer_begin_bytes(lua_State *L, framer *f, const char *s,
                              size_t n) {
  if (f->busy) {
    pending_append(L, f, s, n);
    return 0;
  }
  if (f->start == f->end) {
    f->ext = s;
    f->extlen = n;
    f->extpos = 0;
  } else {
    pending_append(L, f, s, n);
  }
  f->busy = 1;
  return 1;
}

/* [-0, +0, e] framer_begin_bytes for the string `data` at index 2. */
static int framer_begin(lua_State *L, framer *f) {
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  return framer_begin_bytes(L, f, s, n);
}

/* [-0, +0, e] Is self.transport.disconnecting true? (Twisted checks it
** after each line.) A stream transport (TCP, Unix, TLS) is asked through
** stream.h; another without that field, transport:isClosed(). */
static int transport_disconnecting(lua_State *L) {
  int yes = 0, t = getk(L, 1, K_TRANSPORT);
  const void *tud = t == LUA_TUSERDATA ? sp_transport_test(L, -1) : NULL;
  if (tud != NULL) {
    yes = sp_transport_disconnecting(tud);
    /* a TCP, Unix or TLS transport: asked directly */
  } else if (t == LUA_TTABLE || t == LUA_TUSERDATA) {
    yes = 0;
    if (getk(L, -1, K_DISCONNECTING) != LUA_TNIL) {
      yes = lua_toboolean(L, -1);
    } else if (getk(L, -2, K_ISCLOSED) == LUA_TFUNCTION) {
      lua_pushvalue(L, -3);
      lua_call(L, 1, 1);
      yes = lua_toboolean(L, -1);
      lua_pop(L, 1);
    } else {
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return yes;
}

/* [-(nargs+1), +1, e] Call the method below its arguments under pcall with
** the error handler at index `eh`. On error, finish the framer and raise
** the Failure again (the caller's handler lets a Failure pass through). */
static void framer_call(lua_State *L, framer *f, int nargs, int eh) {
  if (lua_pcall(L, nargs, 1, eh) != LUA_OK) {
    framer_finish(f);
    lua_error(L);
  }
}

/* [-0, +2, e] Push self's method `key` and self, ready for arguments. */
static void push_method(lua_State *L, int key) {
  getk(L, 1, key);
  lua_pushvalue(L, 1);
}

/* ---- LineReceiver ---------------------------------------------------- */

/* How line_loop reads self's fields (self at index 1, the framer at
** FRAMER_IDX). Twisted reads self.MAX_LENGTH, self.delimiter,
** self.lineReceived and self.transport for every line, so a lineReceived
** that assigns any of them changes how the next line is handled. Here the
** instance's own field is read for every line (one raw lookup in a small
** table); only when it has none is the value it inherits (from its class
** and ancestors, a walk up the __index chain) used, and that is looked up
** once per chunk and kept in the framer (a class changed in the middle of
** a chunk is seen from the next chunk on). The line_ helpers below leave
** what they look up on the stack; line_step drops it all at once. */
enum { FRAMER_IDX = 3, SLOT_LINERECEIVED, SLOT_TOP };

/* [-0, +1, e] Push self's own field `key` (raw), returning its type. */
static int rawgetk(lua_State *L, int key) {
  lua_pushvalue(L, lua_upvalueindex(key));
  return lua_rawget(L, 1);
}

/* [-0, +0, e] The value at idx as a MAX_LENGTH (a size). */
static size_t to_maxlen(lua_State *L, int idx) {
  int isnum;
  lua_Integer m = lua_tointegerx(L, idx, &isnum);
  if (!isnum || m < 0)
    luaL_error(L, "MAX_LENGTH must be a non-negative integer");
  return (size_t)m;
}

/* [-0, +0, e] self.MAX_LENGTH as a size, for self at index 1. */
static size_t get_maxlen(lua_State *L) {
  size_t m;
  getk(L, 1, K_MAX_LENGTH);
  m = to_maxlen(L, -1);
  lua_pop(L, 1);
  return m;
}

/* [-0, +1, e] self.MAX_LENGTH as a size (see FRAMER_IDX). */
static size_t line_maxlen(lua_State *L, framer *f) {
  if ((f->owned & INH_MAXLEN) && rawgetk(L, K_MAX_LENGTH) != LUA_TNIL)
    return to_maxlen(L, -1);
  if (!(f->inherited & INH_MAXLEN)) {
    f->inh_maxlen = get_maxlen(L);
    f->inherited |= INH_MAXLEN;
  }
  return f->inh_maxlen;
}

/* [-0, +0, e] The delimiter at the top of the stack, checked. */
static const char *check_delimiter(lua_State *L, size_t *dlen) {
  const char *d =
      lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, dlen) : NULL;
  if (d == NULL || *dlen == 0)
    luaL_error(L, "delimiter must be a non-empty string");
  return d;
}

/* [-0, +1, e] self.delimiter (see FRAMER_IDX). The one last used is
** anchored in the framer's user value FUV_DELIM, so that its address
** identifies it: a new delimiter voids `nodelim`. */
static const char *line_delimiter(lua_State *L, framer *f, size_t *dlen) {
  const char *d;
  if ((f->owned & INH_DELIM) && rawgetk(L, K_DELIMITER) != LUA_TNIL) {
    d = check_delimiter(L, dlen);
    if (d == f->delim) return d;
    lua_pushvalue(L, -1);
  } else {
    if (!(f->inherited & INH_DELIM)) {
      getk(L, 1, K_DELIMITER);
      f->inh_delim = check_delimiter(L, &f->inh_dlen);
      lua_setiuservalue(L, FRAMER_IDX, FUV_INHDELIM);
      f->inherited |= INH_DELIM;
    }
    *dlen = f->inh_dlen;
    d = f->inh_delim;
    if (d == f->delim) return d;
    lua_getiuservalue(L, FRAMER_IDX, FUV_INHDELIM);
  }
  f->nodelim = 0;
  f->delim = d;
  lua_setiuservalue(L, FRAMER_IDX, FUV_DELIM);
  return d;
}

/* [-0, +2, e] Push self.lineReceived (see FRAMER_IDX) on top of what its
** raw lookup left. */
static void line_push_callback(lua_State *L, framer *f) {
  if ((f->owned & INH_LINERECEIVED) && rawgetk(L, K_LINERECEIVED) != LUA_TNIL) {
    lua_pushvalue(L, -1);
    return;
  }
  if (!(f->inherited & INH_LINERECEIVED)) {
    getk(L, 1, K_LINERECEIVED);
    lua_replace(L, SLOT_LINERECEIVED);
    f->inherited |= INH_LINERECEIVED;
  }
  lua_pushvalue(L, SLOT_LINERECEIVED);
}

/* [-0, +1, e] transport_disconnecting inside line_loop: a stream
** transport in self's own field, the one met before, is asked from its C
** flags without a metatable check; a new one is checked and kept. */
static int line_disconnecting(lua_State *L, framer *f) {
  if (rawgetk(L, K_TRANSPORT) == LUA_TUSERDATA) {
    void *tud = lua_touserdata(L, -1);
    if (tud == f->tud) return sp_transport_disconnecting(tud);
    if (sp_transport_test(L, -1) != NULL) {
      f->tud = tud;
      lua_pushvalue(L, -1);
      lua_setiuservalue(L, FRAMER_IDX, FUV_TRANSPORT);
      return sp_transport_disconnecting(tud);
    }
  }
  return transport_disconnecting(L);
}

/* Find the delimiter in the pending bytes from `nodelim` on. */
static const char *find_delimiter(const framer *f, const char *d, size_t dlen) {
  const char *p = pending_ptr(f);
  size_t n = pending_len(f);
  const char *q, *end = p + n;
  if (f->nodelim >= n) return NULL;
  /* memchr for the first byte, then compare the rest: faster than memmem
  ** for the short delimiters and short lines of line protocols. */
  for (q = p + f->nodelim; (size_t)(end - q) >= dlen; q++) {
    q = memchr(q, d[0], (size_t)(end - q) - dlen + 1);
    if (q == NULL) return NULL;
    if (dlen == 1 ||
        (q[1] == d[1] && (dlen == 2 || memcmp(q + 2, d + 2, dlen - 2) == 0)))
      return q;
  }
  return NULL;
}

/* One step in line mode, inside line_loop. Returns 1 to go on (the stack
** back to its SLOT_TOP - 1 values), 0 to stop with the value to return on
** top of the stack. */
static int line_step(lua_State *L, framer *f) {
  size_t dlen, len, maxlen = line_maxlen(L, f);
  const char *d = line_delimiter(L, f, &dlen);
  const char *p = pending_ptr(f);
  const char *hit = find_delimiter(f, d, dlen);
  if (hit == NULL) {
    len = pending_len(f);
    if (len >= maxlen + dlen) {
      push_method(L, K_LINELENGTHEXCEEDED);
      pending_take(L, f);
      lua_call(L, 2, 1);
      return 0;
    }
    f->nodelim = len >= dlen ? len - dlen + 1 : 0;
    lua_pushnil(L);
    return 0;
  }
  len = (size_t)(hit - p);
  if (len > maxlen) {
    /* Twisted passes the line, the delimiter and everything after it. */
    push_method(L, K_LINELENGTHEXCEEDED);
    pending_take(L, f);
    lua_call(L, 2, 1);
    return 0;
  }
  line_push_callback(L, f);
  lua_pushvalue(L, 1);
  lua_pushlstring(L, p, len);
  pending_consume(f, len + dlen);
  lua_call(L, 2, 1);
  if (lua_toboolean(L, -1)) return 0;
  if (line_disconnecting(L, f)) {
    lua_pushvalue(L, -2); /* lineReceived's (false) result */
    return 0;
  }
  lua_settop(L, SLOT_TOP - 1);
  return 1;
}

/* One step in raw mode: everything pending goes to rawDataReceived. */
static int raw_step(lua_State *L, framer *f) {
  push_method(L, K_RAWDATARECEIVED);
  if (f->ext != NULL && f->extpos == 0 && lua_type(L, 2) == LUA_TSTRING)
    lua_pushvalue(L, 2); /* the whole chunk: no copy */
  else
    lua_pushlstring(L, pending_ptr(f), pending_len(f));
  pending_clear(f);
  lua_call(L, 2, 1);
  if (lua_toboolean(L, -1)) return 0;
  lua_pop(L, 1);
  return 1;
}

/* lr.__newindex(self, key, value): what assigning a field the instance
** does not have yet does (rawset), telling the framer when the field is
** MAX_LENGTH, delimiter or lineReceived, so that line_loop reads those
** own fields on every line only once the instance has them. Inherited by
** every subclass (spindle.class copies __newindex); a subclass with its
** own __newindex gets every field read on every line instead. */
static int line_newindex(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 3);
  if (lua_type(L, 2) == LUA_TSTRING) {
    unsigned bit =
        lua_rawequal(L, 2, lua_upvalueindex(K_MAX_LENGTH))  ? INH_MAXLEN
        : lua_rawequal(L, 2, lua_upvalueindex(K_DELIMITER)) ? INH_DELIM
        : lua_rawequal(L, 2, lua_upvalueindex(K_LINERECEIVED))
            ? INH_LINERECEIVED
            : 0;
    if (bit != 0 && lua_rawgetp(L, 1, &framer_key) != LUA_TNIL) {
      framer *f = framer_test(L, -1);
      if (f != NULL) f->owned |= bit;
    }
    lua_settop(L, 3);
  }
  lua_rawset(L, 1);
  return 0;
}

/* [-0, +0, e] framer.owned for a new chunk of self (index 1): the own
** fields it has now when its class's __newindex is line_newindex (which
** reports those assigned later; a rawset is seen from the next chunk),
** else all three. */
static unsigned line_owned(lua_State *L) {
  unsigned owned = INH_MAXLEN | INH_DELIM | INH_LINERECEIVED;
  int top = lua_gettop(L);
  if (lua_getmetatable(L, 1)) {
    lua_pushvalue(L, lua_upvalueindex(K_NEWINDEX));
    if (lua_rawget(L, -2) == LUA_TFUNCTION &&
        lua_tocfunction(L, -1) == line_newindex) {
      owned = 0;
      if (rawgetk(L, K_MAX_LENGTH) != LUA_TNIL) owned |= INH_MAXLEN;
      if (rawgetk(L, K_DELIMITER) != LUA_TNIL) owned |= INH_DELIM;
      if (rawgetk(L, K_LINERECEIVED) != LUA_TNIL) owned |= INH_LINERECEIVED;
    }
  }
  lua_settop(L, top);
  return owned;
}

/* line_loop(self, data, framer) -> why: the body of line_dataReceived,
** run under one lua_pcall per chunk (not one per line); callbacks are
** plain calls whose errors unwind to it. */
static int line_loop(lua_State *L) {
  framer *f = framer_test(L, FRAMER_IDX);
  if (f == NULL) return luaL_typeerror(L, FRAMER_IDX, "framer");
  lua_settop(L, SLOT_TOP - 1);
  f->inherited = 0; /* a new chunk: look inherited fields up again */
  f->owned = line_owned(L);
  for (;;) {
    if (pending_len(f) == 0 || f->paused) {
      lua_pushnil(L);
      return 1;
    }
    if (!(f->raw ? raw_step(L, f) : line_step(L, f))) return 1;
  }
}

/* Registry key of the line_loop closure, for line_direct. */
static const char line_loop_key = 0;

/* [-?, +1, e] The body of lr:dataReceived: self at index 1, the bytes
** (s, n) also at index 2 as a string, or nil there when they are a read
** buffer (line_direct); the line_loop closure at index 3. */
static int line_run(lua_State *L, framer *f, const char *s, size_t n) {
  int status;
  if (!framer_begin_bytes(L, f, s, n)) return 0;
  lua_settop(L, 3);
  lua_pushcfunction(L, sp_errhandler);
  lua_insert(L, 3);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_rawgetp(L, 1, &framer_key);
  f->self = lua_topointer(L, 1);
  f->outer = running_line;
  running_line = f;
  status = lua_pcall(L, 3, 1, 3);
  running_line = f->outer;
  f->self = NULL;
  framer_finish(f);
  if (status != LUA_OK) return lua_error(L);
  return 1;
}

/* lr:dataReceived(data) -> why
** Cut data into lines and call self:lineReceived(line) for each (or
** self:rawDataReceived(data) in raw mode), stopping when a callback returns
** a true value (returned), when self.transport.disconnecting becomes true,
** or while paused. A line longer than MAX_LENGTH, or MAX_LENGTH +
** #delimiter bytes without a delimiter, go to self:lineLengthExceeded(rest)
** with all pending bytes. Raises what a callback raises (as a Failure with
** the traceback of the raise), and "delimiter must be a non-empty
** string". Loop thread only.
** Follows twisted.protocols.basic.LineReceiver.dataReceived. */
static int line_dataReceived(lua_State *L) {
  framer *f = framer_get(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(K_LINELOOP));
  return line_run(L, f, s, n);
}

/* line_dataReceived for a read that has no Lua string (sp_direct_fn):
** self at index 1, the bytes valid during the call. */
static int line_direct(lua_State *L, const char *s, size_t n) {
  framer *f = framer_get(L);
  lua_settop(L, 2);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &line_loop_key);
  return line_run(L, f, s, n);
}

/* lr:setRawMode(): further data goes to rawDataReceived.
** Follows twisted LineReceiver.setRawMode. */
static int line_setRawMode(lua_State *L) {
  framer *f = framer_get(L);
  f->raw = 1;
  lua_pushinteger(L, 0);
  lua_setfield(L, 1, "line_mode");
  return 0;
}

/* lr:setLineMode([extra]) -> why: back to lines; extra (a string) is
** handed to self:dataReceived, whose result is returned.
** Follows twisted LineReceiver.setLineMode. */
static int line_setLineMode(lua_State *L) {
  framer *f = framer_get(L);
  size_t n = 0;
  if (!lua_isnoneornil(L, 2)) luaL_checklstring(L, 2, &n);
  f->raw = 0;
  lua_pushinteger(L, 1);
  lua_setfield(L, 1, "line_mode");
  if (n == 0) return 0;
  lua_settop(L, 2);
  lua_getfield(L, 1, "dataReceived");
  lua_insert(L, 1);
  lua_call(L, 2, 1);
  return 1;
}

/* lr:clearLineBuffer() -> string: forget and return the pending bytes.
** Follows twisted LineReceiver.clearLineBuffer. */
static int line_clearLineBuffer(lua_State *L) {
  framer *f = framer_get(L);
  pending_take(L, f);
  return 1;
}

/* [-0, +(0|1|2), e] sendLine(self, line) at indices 1 and 2, called
** while self's chunk is being processed (from lineReceived): self's own
** transport and delimiter fields are read (raw) as on every call, the
** inherited delimiter is the chunk's (see FRAMER_IDX) and the stream
** transport met before is written to without a metatable check. Returns
** 1 when done, 0 when the caller must take the general way (nothing was
** written). */
static int send_fast(lua_State *L, const char *line, size_t n) {
  const framer *f = running_line;
  uv_buf_t b[2];
  const char *d;
  size_t dlen;
  int t;
  if (f == NULL || f->tud == NULL || f->self != lua_topointer(L, 1) ||
      n > UINT32_MAX)
    return 0;
  if (rawgetk(L, K_TRANSPORT) != LUA_TUSERDATA ||
      lua_touserdata(L, -1) != f->tud)
    return 0;
  t = (f->owned & INH_DELIM) ? rawgetk(L, K_DELIMITER) : LUA_TNIL;
  if (t == LUA_TSTRING) {
    d = lua_tolstring(L, -1, &dlen);
  } else if (t == LUA_TNIL && (f->inherited & INH_DELIM)) {
    d = f->inh_delim;
    dlen = f->inh_dlen;
  } else {
    return 0;
  }
  b[0] = uv_buf_init((char *)line, (unsigned)n);
  b[1] = uv_buf_init((char *)d, (unsigned)dlen);
  return sp_transport_write(L, f->tud, b, 2);
}

/* lr:sendLine(line): write line and the delimiter, as one write. Raises
** for a non-string line. On a TCP or Unix transport the two go straight
** to its buffer without building their concatenation.
** Follows twisted LineReceiver.sendLine. */
static int line_sendLine(lua_State *L) {
  size_t n, dlen;
  const char *line, *d;
  /* lua_type first: luaL_checktype's call only to raise (once per line). */
  if (lua_type(L, 1) != LUA_TTABLE) luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_type(L, 2) != LUA_TSTRING) /* no number coercion, as Twisted */
    luaL_checktype(L, 2, LUA_TSTRING);
  line = lua_tolstring(L, 2, &n);
  if (send_fast(L, line, n)) return 0;
  lua_settop(L, 2);
  getk(L, 1, K_TRANSPORT);
  getk(L, 1, K_DELIMITER);
  luaL_argcheck(L, lua_type(L, 4) == LUA_TSTRING, 1,
                "delimiter must be a string");
  d = lua_tolstring(L, 4, &dlen);
  if (lua_type(L, 3) == LUA_TUSERDATA) {
    uv_buf_t b[2];
    b[0] = uv_buf_init((char *)line, (unsigned)n);
    b[1] = uv_buf_init((char *)d, (unsigned)dlen);
    void *tud = sp_transport_test(L, 3);
    if (tud != NULL && n <= UINT32_MAX && sp_transport_write(L, tud, b, 2))
      return 0;
  }
  getk(L, 3, K_WRITE);
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 4);
  lua_concat(L, 2);
  lua_call(L, 2, 1);
  return 1;
}

/* _basic.bufferInfo(p) -> pending, capacity: bytes buffered and the
** size of the C buffer behind them (for tests of the memory bound). */
static int framer_bufferInfo(lua_State *L) {
  framer *f = framer_get(L);
  lua_pushinteger(L, (lua_Integer)pending_len(f));
  lua_pushinteger(L, (lua_Integer)f->cap);
  return 2;
}

/* _basic.setPaused(p, flag): the receiving loop stops while paused.
** (pauseProducing/resumeProducing/stopProducing in basic.lua.) */
static int framer_setPaused(lua_State *L) {
  framer *f = framer_get(L);
  f->paused = lua_toboolean(L, 2);
  lua_pushboolean(L, f->paused);
  lua_setfield(L, 1, "paused");
  return 0;
}

/* ---- NetstringReceiver ----------------------------------------------- */

/* Digits allowed in a length prefix: those of MAX_LENGTH plus one, as
** twisted's _maxLengthSize, capped so the value cannot overflow. */
static size_t max_digits(size_t maxlen) {
  size_t digits = 1;
  while (maxlen >= 10) {
    maxlen /= 10;
    digits++;
  }
  return digits + 1 > 18 ? 18 : digits + 1;
}

/* Parse a netstring length prefix. Returns 1 when complete (the prefix
** and colon consumed, f->expected set), 0 when more bytes are needed, -1
** on a parse error. Matches twisted's _LENGTH / _LENGTH_PREFIX rules:
** no leading zeros, at most max_digits, at most MAX_LENGTH. */
static int netstring_length(framer *f, size_t maxlen) {
  const char *p = pending_ptr(f);
  size_t n = pending_len(f), i = 0, value = 0, limit = max_digits(maxlen);
  while (i < n && p[i] >= '0' && p[i] <= '9') {
    if (i == limit) return -1;
    value = value * 10 + (size_t)(p[i] - '0');
    i++;
  }
  if (i == 0) return -1;               /* no length */
  if (p[0] == '0' && i > 1) return -1; /* leading zero */
  if (value > maxlen) return -1;       /* too long */
  if (i == n) return 0;                /* a valid partial prefix */
  if (p[i] != ':') return -1;
  f->expected = value;
  pending_consume(f, i + 1);
  f->nsstate = NS_PAYLOAD;
  return 1;
}

/* ns:dataReceived(data)
** Parse netstrings ("5:hello,") and call self:stringReceived(s) for each.
** A bad length prefix, a length over MAX_LENGTH or a missing comma call
** self.transport:loseConnection() and set self.brokenPeer = 1; later data
** is ignored. Raises what stringReceived raises. Loop thread only.
** Follows twisted.protocols.basic.NetstringReceiver.dataReceived. */
static int netstring_dataReceived(lua_State *L) {
  framer *f = framer_get(L);
  int eh;
  size_t maxlen;
  if (f->broken) return 0;
  if (!framer_begin(L, f)) return 0;
  lua_settop(L, 2);
  lua_pushcfunction(L, sp_errhandler);
  eh = 3;
  maxlen = get_maxlen(L);
  while (pending_len(f) > 0 && !f->broken) {
    if (f->nsstate == NS_LENGTH) {
      int r = netstring_length(f, maxlen);
      if (r == 0) break;
      if (r < 0) f->broken = 1;
    } else {
      const char *p = pending_ptr(f);
      if (pending_len(f) < f->expected + 1) break;
      if (p[f->expected] != ',') {
        f->broken = 1;
        break;
      }
      push_method(L, K_STRINGRECEIVED);
      lua_pushlstring(L, p, f->expected);
      pending_consume(f, f->expected + 1);
      f->nsstate = NS_LENGTH;
      framer_call(L, f, 2, eh);
      lua_pop(L, 1);
    }
  }
  if (f->broken) {
    /* twisted _handleParseError; the bytes are dropped (bounded memory). */
    pending_clear(f);
    framer_finish(f);
    lua_pushinteger(L, 1);
    lua_setfield(L, 1, "brokenPeer");
    lua_getfield(L, 1, "transport");
    lua_getfield(L, -1, "loseConnection");
    lua_insert(L, -2);
    lua_call(L, 1, 0);
    return 0;
  }
  framer_finish(f);
  return 0;
}

/* ns:sendString(s): write "<#s>:<s>," as one write.
** Follows twisted NetstringReceiver.sendString. */
static int netstring_sendString(lua_State *L) {
  size_t n;
  const char *s;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TSTRING); /* no number coercion, as Twisted */
  s = lua_tolstring(L, 2, &n);
  getk(L, 1, K_TRANSPORT);
  getk(L, -1, K_WRITE);
  lua_insert(L, -2);
  lua_pushfstring(L, "%I:", (lua_Integer)n);
  lua_pushvalue(L, 2);
  lua_pushliteral(L, ",");
  lua_concat(L, 3);
  (void)s;
  lua_call(L, 2, 0);
  return 0;
}

/* ---- Int8/16/32StringReceiver ----------------------------------------- */

/* [-0, +0, e] self.prefixLength: 1, 2 or 4. */
static int get_prefix(lua_State *L) {
  lua_Integer n;
  lua_getfield(L, 1, "prefixLength");
  n = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (n != 1 && n != 2 && n != 4)
    luaL_error(L, "prefixLength must be 1, 2 or 4");
  return (int)n;
}

static size_t decode_prefix(const unsigned char *p, int plen) {
  size_t v = 0;
  for (int i = 0; i < plen; i++) v = (v << 8) | p[i];
  return v;
}

/* ins:dataReceived(data)
** Cut big-endian length-prefixed strings and call self:stringReceived(s)
** for each, while not paused. A length over MAX_LENGTH calls
** self:lengthLimitExceeded(length) and drops the pending bytes (Twisted
** keeps them; dropping keeps memory bounded when that method does not
** disconnect). Raises what a callback raises. Loop thread only.
** Follows twisted.protocols.basic.IntNStringReceiver.dataReceived. */
static int int_dataReceived(lua_State *L) {
  framer *f = framer_get(L);
  int eh, plen;
  size_t maxlen;
  if (!framer_begin(L, f)) return 0;
  lua_settop(L, 2);
  lua_pushcfunction(L, sp_errhandler);
  eh = 3;
  plen = get_prefix(L);
  maxlen = get_maxlen(L);
  while (pending_len(f) >= (size_t)plen && !f->paused) {
    const unsigned char *p = (const unsigned char *)pending_ptr(f);
    size_t len = decode_prefix(p, plen);
    if (len > maxlen) {
      pending_clear(f);
      push_method(L, K_LENGTHLIMITEXCEEDED);
      lua_pushinteger(L, (lua_Integer)len);
      framer_call(L, f, 2, eh);
      lua_pop(L, 1);
      break;
    }
    if (pending_len(f) < (size_t)plen + len) break;
    push_method(L, K_STRINGRECEIVED);
    lua_pushlstring(L, (const char *)p + plen, len);
    pending_consume(f, (size_t)plen + len);
    framer_call(L, f, 2, eh);
    lua_pop(L, 1);
  }
  framer_finish(f);
  return 0;
}

/* ins:sendString(s): write the length prefix and s as one write. Raises
** basic.StringTooLongError when #s does not fit the prefix.
** Follows twisted IntNStringReceiver.sendString. */
static int int_sendString(lua_State *L) {
  size_t n;
  int plen;
  char prefix[4];
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TSTRING); /* no number coercion, as Twisted */
  lua_tolstring(L, 2, &n);
  plen = get_prefix(L);
  if (plen < 4 ? n >= ((size_t)1 << (8 * plen)) : n > 0xffffffffu)
    return sp_errortype_raise(L, "basic.StringTooLongError", NULL,
                              "Try to send %I bytes whereas maximum is %I",
                              (lua_Integer)n, (lua_Integer)1 << (8 * plen));
  for (int i = 0; i < plen; i++)
    prefix[i] = (char)((n >> (8 * (plen - 1 - i))) & 0xff);
  getk(L, 1, K_TRANSPORT);
  getk(L, -1, K_WRITE);
  lua_insert(L, -2);
  lua_pushlstring(L, prefix, (size_t)plen);
  lua_pushvalue(L, 2);
  lua_concat(L, 2);
  lua_call(L, 2, 0);
  return 0;
}

/* ---- module ----------------------------------------------------------- */

static const luaL_Reg framer_meta[] = {{"__gc", framer_gc}, {NULL, NULL}};

static const luaL_Reg basic_funcs[] = {
    {"lineDataReceived", line_dataReceived},
    {"setRawMode", line_setRawMode},
    {"setLineMode", line_setLineMode},
    {"clearLineBuffer", line_clearLineBuffer},
    {"sendLine", line_sendLine},
    {"lineNewindex", line_newindex},
    {"setPaused", framer_setPaused},
    {"bufferInfo", framer_bufferInfo},
    {"netstringDataReceived", netstring_dataReceived},
    {"netstringSendString", netstring_sendString},
    {"intDataReceived", int_dataReceived},
    {"intSendString", int_sendString},
    {NULL, NULL}};

/* spindle._basic: the C half of spindle.basic (see basic.lua). */
int luaopen_spindle__basic(lua_State *L) {
  sp_class_new(L, FRAMER_MT, NULL, framer_meta);
  luaL_getmetatable(L, FRAMER_MT);
  framer_mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  luaL_newlibtable(L, basic_funcs);
  for (int k = 0; k < K_NKEYS; k++) lua_pushstring(L, key_names[k]);
  for (int k = 0; k < K_NKEYS; k++) lua_pushvalue(L, -K_NKEYS);
  lua_pushcclosure(L, line_loop, K_NKEYS);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &line_loop_key);
  luaL_setfuncs(L, basic_funcs, K_LINELOOP);
  sp_stream_set_direct(line_dataReceived, line_direct);
  sp_errortype_push(L, "basic.StringTooLongError");
  lua_setfield(L, -2, "StringTooLongError");
  return 1;
}
