/*
** marshal.c: copying Lua values between Lua states by value, for the
** thread pool (pool.c), and spindle._marshal, its test hook.
**
** A message is one flat buffer: a tag byte per value, followed by its
** payload. Tables and Lua functions get ids in the order they are first
** met; meeting one again writes a reference, so shared references and
** cycles come out as they went in. A Lua function travels as its bytecode
** (lua_dump, debug information kept for tracebacks) followed by its
** upvalues: `_ENV` is bound to the receiver's globals, others are copied
** as values, or as a reference to an upvalue
** already sent when two closures share it (lua_upvalueid), joined again
** on arrival (lua_upvaluejoin).
**
** Some values travel by name, not by value, since each state has its
** own: the sender's globals table (so an `_ENV` upvalue is bound to the
** receiver's globals), tables in package.loaded (modules: `local reactor
** = require("spindle.reactor")` arrives as the receiver's spindle.reactor),
** the functions and tables that are fields of a module (`string.format`,
** `reactor.callFromThread`: C functions travel only this way) and error
** types (built-in ones by their key, others by name: a state maps a name
** to the last type of that name it sent, or the first it received). A
** Failure keeps its metatable; other tables take a copy of theirs. A
** module the receiver cannot require arrives as an absent module, which
** raises when used and goes by name again when sent on.
**
** Anything else (userdata, coroutines, C functions that are no module's
** field) raises threads.TransferError naming the argument and the path
** inside it. Packing writes into a buffer on the C stack, then a
** collected userdata (no finalizer), so an error frees it. Unpacking
** checks the buffer's structure (a message not written by pack raises
** "corrupt message", fuzz/marshal_bytes.c) but trusts the bytecode in
** it, as lua_load does: only pack writes it.
**
** What repeats is cached, for the thread pool's round trips: a state
** keeps each Lua function's dump (a weak table keyed by the function; a
** function packed before is not looked up among module fields again),
** and a dump carries a hash of its bytecode by which a worker's state
** finds the function it loaded before (sp_marshal_unpack_call) and only
** sets its upvalues. Tables and functions met are remembered in a small C
** array before a Lua table is needed, and the unpacker keeps its table of
** ids only for a message that refers back (sp_packed.refs).
**
** Length: about 1400 lines, on purpose: pack and unpack mirror each other
** tag by tag and stay side by side so that a change to one is seen in the
** other, and the caches belong to them.
*/
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "core.h"
#include "failure.h"
#include "marshal.h"

#define BOX_MT "spindle.MarshalBuffer"
#define FAILURE_MT SP_FAILURE_MT
#define ERRORTYPE_MT SP_ERRORTYPE_MT
#define ABSENT_MT "spindle.AbsentModule"

/* How deep tables and functions may nest; each level costs C stack. */
#define MAX_DEPTH 200

enum {
  T_NIL,
  T_FALSE,
  T_TRUE,
  T_INT,
  T_FLT,
  T_STR,
  T_TABLE,
  T_FAILURE,
  T_FUNC,
  T_REF,
  T_UPREF,
  T_GLOBALS,
  T_MODULE,
  T_ERRKEY,
  T_ERRNAME,
  T_END
};

/* Registry keys: addresses of these variables. */
static const char index_key = 'I';   /* {index table, package.loaded count} */
static const char builtin_key = 'B'; /* built-in error type -> key */
static const char named_key = 'N';   /* name -> error type */

typedef struct box {
  char *data;
  size_t len, cap;
} box;

/* How many tables, functions and upvalues a pack remembers in C before
** it needs a Lua table for them. */
#define SEEN_FAST 16

/* A message being written: first in `inl` on the C stack (most messages
** fit, and nothing is allocated), then in a plain userdata (no finalizer:
** the collector frees it, on an error too) kept at stack index `slot`
** and replaced by a bigger one as it grows; copied out at the end. */
#define BUF_INLINE 512

typedef struct buf {
  char *data;
  size_t len, cap;
  int slot;
  char inl[BUF_INLINE];
} buf;

/* Where a pack is, for its error messages: one segment per level
** entered, made into text only when an error is raised (path_text), so
** that a pack formats nothing while it succeeds. */
enum { SEG_KEY, SEG_VALUE, SEG_METATABLE, SEG_UPVALUE };
#define PATH_SEGS 64 /* more would not fit the message's 200 bytes */
typedef struct pathseg {
  int kind;
  int idx;          /* SEG_VALUE: stack index of the key */
  const char *name; /* SEG_UPVALUE: the upvalue's name, held by its function */
} pathseg;

typedef struct enc {
  lua_State *L;
  buf b[1];
  int seen;  /* stack index: address -> id, 0 while `fast` suffices */
  int nfast; /* entries in fast */
  struct {
    const void *p;
    lua_Integer id;
  } fast[SEEN_FAST];
  int backrefs; /* T_REF or T_UPREF written */
  int index;    /* stack index of the module index's slot (pack's) */
  int indexed;  /* the slot holds the index */
  int nextid;
  int depth;
  int rebuilt; /* the index was rebuilt during this pack */
  const char *what;
  int argn;
  int nsegs; /* may pass PATH_SEGS: those past it are not kept */
  pathseg seg[PATH_SEGS];
  size_t pathlen; /* of path, made by path_text */
  char path[200];
} enc;

/* ---------------------------------------------------------------- */
/* The buffer                                                          */

static int box_gc(lua_State *L) {
  box *b = lua_touserdata(L, 1);
  free(b->data);
  b->data = NULL;
  return 0;
}

/* [-0, +1, m] A new empty buffer, freed by the collector unless taken. */
static box *box_new(lua_State *L) {
  box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->data = NULL;
  b->len = b->cap = 0;
  if (luaL_newmetatable(L, BOX_MT)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return b;
}

/* Clear what a pack reads before writing (not the arrays, most of
** which a small message never touches). */
static void enc_init(enc *e, lua_State *L) {
  e->L = L;
  e->seen = e->nfast = e->backrefs = 0;
  e->index = e->indexed = e->nextid = e->depth = e->rebuilt = 0;
  e->what = NULL;
  e->argn = 0;
  e->nsegs = 0;
  e->pathlen = 0;
}

/* [-0, +1, -] Start e's buffer; its stack slot (nil until it outgrows
** the inline part) stays pushed. */
static void buf_init(enc *e) {
  e->b->cap = BUF_INLINE;
  e->b->len = 0;
  e->b->data = e->b->inl;
  lua_pushnil(e->L);
  e->b->slot = lua_gettop(e->L);
}

static void put(enc *e, const void *p, size_t n) {
  buf *b = e->b;
  if (b->cap - b->len < n) {
    size_t cap = b->cap;
    char *d;
    while (cap - b->len < n) cap *= 2;
    d = lua_newuserdatauv(e->L, cap, 0);
    memcpy(d, b->data, b->len);
    lua_replace(e->L, b->slot);
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

static void put_tag(enc *e, int tag) {
  unsigned char c = (unsigned char)tag;
  put(e, &c, 1);
}

static void put_int(enc *e, lua_Integer i) {
  put(e, &i, sizeof i);
}

static void put_str(enc *e, const char *s, size_t n) {
  put(e, &n, sizeof n);
  put(e, s, n);
}

/* ---------------------------------------------------------------- */
/* Paths and errors                                                    */

static void path_add(enc *e, const char *fmt, const char *s) {
  size_t room = sizeof e->path - e->pathlen;
  int n;
  if (room <= 4) {
    memcpy(e->path + sizeof e->path - 4, "...", 4);
    e->pathlen = sizeof e->path - 1;
    return;
  }
  n = snprintf(e->path + e->pathlen, room, fmt, s);
  if (n < 0 || (size_t)n >= room) {
    memcpy(e->path + sizeof e->path - 4, "...", 4);
    e->pathlen = sizeof e->path - 1;
  } else {
    e->pathlen += (size_t)n;
  }
}

static int is_name(const char *s, size_t n) {
  if (n == 0 || n > 40 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9')))
      return 0;
  }
  return 1;
}

/* [-0, +0, -] Add the table key at idx to the path. */
static void path_key(enc *e, int idx) {
  lua_State *L = e->L;
  size_t n;
  char num[48];
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
      const char *s = lua_tolstring(L, idx, &n);
      if (is_name(s, n))
        path_add(e, ".%s", s);
      else if (n <= 40 && strlen(s) == n)
        path_add(e, "[\"%s\"]", s);
      else
        path_add(e, "%s", "[<string>]");
      break;
    }
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx))
        snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, idx));
      else
        snprintf(num, sizeof num, "%.14g", lua_tonumber(L, idx));
      path_add(e, "[%s]", num);
      break;
    case LUA_TBOOLEAN:
      path_add(e, "[%s]", lua_toboolean(L, idx) ? "true" : "false");
      break;
    default:
      path_add(e, "[<%s>]", luaL_typename(L, idx));
  }
}

/* Enter a level of the value being packed (a SEG_ kind); the caller
** puts e->nsegs back when it leaves. */
static void seg_push(enc *e, int kind, int idx, const char *name) {
  if (e->nsegs < PATH_SEGS) {
    e->seg[e->nsegs].kind = kind;
    e->seg[e->nsegs].idx = idx;
    e->seg[e->nsegs].name = name;
  }
  e->nsegs++;
}

/* [-0, +0, -] Write e's segments as text into e->path (the keys are
** still on the stack where the segments say). */
static void path_text(enc *e) {
  int n = e->nsegs < PATH_SEGS ? e->nsegs : PATH_SEGS;
  e->pathlen = 0;
  for (int i = 0; i < n; i++) {
    const pathseg *g = &e->seg[i];
    switch (g->kind) {
      case SEG_KEY:
        path_add(e, "%s", "<key>");
        break;
      case SEG_VALUE:
        path_key(e, g->idx);
        break;
      case SEG_METATABLE:
        path_add(e, "%s", " <metatable>");
        break;
      default:
        path_add(e, " upvalue '%s'", *g->name ? g->name : "?");
    }
  }
  if (e->nsegs > PATH_SEGS) path_add(e, "%s", "...");
  e->path[e->pathlen] = '\0';
}

/* [-0, +0, e] Raise TransferError for the value at idx. */
static void transfer_error(enc *e, int idx, const char *why) {
  lua_State *L = e->L;
  const char *t = luaL_typename(L, idx);
  char tname[80];
  if (lua_iscfunction(L, idx)) {
    t = "C function";
  } else if (lua_type(L, idx) == LUA_TUSERDATA &&
             luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) {
    snprintf(tname, sizeof tname, "userdata (%s)", lua_tostring(L, -1));
    t = tname;
    lua_pop(L, 1);
  }
  path_text(e);
  sp_errortype_raise(L, "threads.TransferError", NULL,
                     "cannot copy %s to another thread%s: %s #%d%s%s", t, why,
                     e->what, e->argn,
                     e->pathlen && e->path[0] != ' ' ? " " : "", e->path);
}

/* ---------------------------------------------------------------- */
/* Values that travel by name                                          */

/* [-0, +0, m] index[value at v] = name at n, unless already indexed. */
static void index_add(lua_State *L, int index, int v, int n) {
  lua_pushvalue(L, v);
  if (lua_rawget(L, index) == LUA_TNIL) {
    lua_pushvalue(L, v);
    lua_pushvalue(L, n);
    lua_rawset(L, index);
  }
  lua_pop(L, 1);
}

/* [-0, +1, m] Build the module index: each module table in
** package.loaded -> "name", and each function or table field of one ->
** "name\0key" (for _G, C functions only: other globals are the user's
** own data, not a library's). */
static void index_build(lua_State *L, int loaded) {
  int index;
  lua_newtable(L);
  index = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, loaded) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE)
      index_add(L, index, lua_gettop(L), lua_gettop(L) - 1);
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  while (lua_next(L, loaded) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE) {
      const char *mod = lua_tostring(L, -2);
      int isG = strcmp(mod, "_G") == 0, m = lua_gettop(L);
      lua_pushnil(L);
      while (lua_next(L, m) != 0) {
        int t = lua_type(L, -1);
        if (lua_type(L, -2) == LUA_TSTRING &&
            (isG ? lua_iscfunction(L, -1)
                 : (t == LUA_TFUNCTION || t == LUA_TTABLE))) {
          lua_pushstring(L, mod);
          lua_pushlstring(L, "", 1);
          lua_pushvalue(L, -4);
          lua_concat(L, 3);
          index_add(L, index, lua_gettop(L) - 1, lua_gettop(L));
          lua_pop(L, 1);
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
}

/* [-0, +0, -] Does the snapshot at snap ({name = module}) still match
** package.loaded at loaded, entry for entry? (busted unloads and
** reloads modules between spec files, so counting is not enough.) */
static int snapshot_matches(lua_State *L, int snap, int loaded) {
  lua_Integer n = 0, m = 0;
  lua_pushnil(L);
  while (lua_next(L, loaded) != 0) {
    n++;
    lua_pushvalue(L, -2);
    lua_rawget(L, snap);
    if (!lua_rawequal(L, -1, -2)) {
      lua_pop(L, 3);
      return 0;
    }
    lua_pop(L, 2);
  }
  lua_pushnil(L);
  while (lua_next(L, snap) != 0) {
    m++;
    lua_pop(L, 1);
  }
  return n == m;
}

/* [-0, +0, m] Make e->index the module index, cached in the registry
** with a snapshot of package.loaded, and rebuilt when that changed (or
** when `force`). */
static void index_get(enc *e, int force) {
  lua_State *L = e->L;
  int loaded, cache;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  loaded = lua_gettop(L);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &index_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &index_key);
  }
  cache = lua_gettop(L);
  lua_rawgeti(L, cache, 2);
  if (force || !lua_istable(L, -1) ||
      !snapshot_matches(L, lua_gettop(L), loaded)) {
    lua_pop(L, 1);
    lua_newtable(L); /* the new snapshot */
    lua_pushnil(L);
    while (lua_next(L, loaded) != 0) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    }
    lua_rawseti(L, cache, 2);
    index_build(L, loaded);
    lua_rawseti(L, cache, 1);
  } else {
    lua_pop(L, 1);
  }
  lua_rawgeti(L, cache, 1);
  lua_replace(L, loaded);
  lua_settop(L, loaded);
  lua_replace(L, e->index);
  e->indexed = 1;
}

/* [-0, +0, e] Write the value at idx as a module reference if it is one;
** returns 0 otherwise. */
static int put_module(enc *e, int idx) {
  lua_State *L = e->L;
  size_t n;
  const char *name;
  if (!e->indexed) index_get(e, 0);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, e->index) != LUA_TSTRING) {
    lua_pop(L, 1);
    return 0;
  }
  name = lua_tolstring(L, -1, &n);
  put_tag(e, T_MODULE);
  put_str(e, name, n);
  lua_pop(L, 1);
  return 1;
}

/* [-0, +1, m] The table of built-in error types -> key, made once. */
static void builtin_push(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &builtin_key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  sp_errortype_pushkeys(L);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &builtin_key);
}

/* [-0, +0, -] Is the table at idx's metatable the one registered as
** `mt`? */
static int has_registered_mt(lua_State *L, int idx, const char *mt) {
  int r;
  if (!lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, mt);
  r = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return r;
}

/* [-0, +1, m] The table of error types by name, made once. */
static void named_push(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &named_key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &named_key);
}

static void put_value(enc *e, int idx);

/* [-0, +0, e] Write the error type at idx: by key if built in, else by
** its name and parent. */
static void put_errortype(enc *e, int idx, lua_Integer id) {
  lua_State *L = e->L;
  size_t n;
  const char *s;
  builtin_push(L);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TSTRING) {
    s = lua_tolstring(L, -1, &n);
    put_tag(e, T_ERRKEY);
    put_str(e, s, n);
    put_int(e, id);
    lua_pop(L, 2);
    return;
  }
  lua_pop(L, 2);
  lua_getfield(L, idx, "__name");
  s = luaL_tolstring(L, -1, &n);
  put_tag(e, T_ERRNAME);
  put_str(e, s, n);
  /* The sender keeps this type under its name, so that values of it
  ** that come back are of this same type (the last one sent wins). */
  named_push(L);
  lua_pushvalue(L, -2);
  lua_pushvalue(L, idx);
  lua_rawset(L, -3);
  lua_pop(L, 3);
  lua_getfield(L, idx, "__parent");
  put_value(e, lua_gettop(L));
  lua_pop(L, 1);
  put_int(e, id);
}

/* ---------------------------------------------------------------- */
/* Packing                                                             */

/* [-0, +0, m] The id remembered for address p, or 0. */
static lua_Integer seen_get(enc *e, const void *p) {
  lua_Integer id;
  for (int i = 0; i < e->nfast; i++)
    if (e->fast[i].p == p) return e->fast[i].id;
  if (e->nfast < SEEN_FAST) return 0;
  lua_pushlightuserdata(e->L, (void *)p);
  id = lua_rawget(e->L, e->seen) == LUA_TNUMBER ? lua_tointeger(e->L, -1) : 0;
  lua_pop(e->L, 1);
  return id;
}

/* [-0, +0, m] Remember id for address p: in the C array while it has
** room (most messages hold a few tables and functions), then in a Lua
** table in the slot pack reserved, which takes the array's entries. */
static void seen_set(enc *e, const void *p, lua_Integer id) {
  lua_State *L = e->L;
  if (e->nfast < SEEN_FAST) {
    e->fast[e->nfast].p = p;
    e->fast[e->nfast++].id = id;
    if (e->nfast < SEEN_FAST) return;
    lua_createtable(L, 0, 2 * SEEN_FAST);
    for (int i = 0; i < SEEN_FAST; i++) {
      lua_pushlightuserdata(L, (void *)e->fast[i].p);
      lua_pushinteger(L, e->fast[i].id);
      lua_rawset(L, -3);
    }
    lua_replace(L, e->seen);
    return;
  }
  lua_pushlightuserdata(L, (void *)p);
  lua_pushinteger(L, id);
  lua_rawset(L, e->seen);
}

/* [-0, +0, e] If the table or function at idx was met before, write a
** reference and return 1; else give it the next id, write `tag` and it.
** Values are told apart by address: every one met is reachable from the
** values being packed, so none is collected (and its address reused)
** before the pack ends. */
static int put_ref(enc *e, int idx, int tag) {
  const void *p = lua_topointer(e->L, idx);
  lua_Integer id = seen_get(e, p);
  if (id != 0) {
    put_tag(e, T_REF);
    put_int(e, id);
    e->backrefs = 1;
    return 1;
  }
  seen_set(e, p, ++e->nextid);
  put_tag(e, tag);
  put_int(e, e->nextid);
  return 0;
}

static void put_table(enc *e, int idx) {
  lua_State *L = e->L;
  int isfailure = has_registered_mt(L, idx, FAILURE_MT);
  int saved = e->nsegs;
  if (put_ref(e, idx, isfailure ? T_FAILURE : T_TABLE)) return;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int k = lua_gettop(L) - 1;
    seg_push(e, SEG_KEY, k, NULL);
    put_value(e, k);
    e->nsegs = saved;
    seg_push(e, SEG_VALUE, k, NULL);
    put_value(e, k + 1);
    e->nsegs = saved;
    lua_pop(L, 1);
  }
  put_tag(e, T_END);
  if (isfailure) return;
  if (lua_getmetatable(L, idx)) {
    seg_push(e, SEG_METATABLE, 0, NULL);
    put_value(e, lua_gettop(L));
    e->nsegs = saved;
    lua_pop(L, 1);
  } else {
    put_tag(e, T_NIL);
  }
}

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  put(ud, p, n);
  return 0;
}

/* Registry key: a weak-keyed table, Lua function -> its dump string (an
** 8-byte FNV-1a hash of the bytecode, then the bytecode), so a function
** sent again is not dumped again and a worker finds its copy by hash. */
static const char dumps_key = 'D';

static uint64_t fnv1a(const char *p, size_t n) {
  uint64_t h = 14695981039346656037u;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211u;
  return h;
}

/* [-0, +1, e] The dump string of the Lua function at idx, from the cache
** or made now (lua_dump, debug information kept for tracebacks). */
static void dump_push(enc *e, int idx) {
  lua_State *L = e->L;
  enc tmp;
  uint64_t h;
  sp_registry_weak(L, &dumps_key, "k");
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TSTRING) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  enc_init(&tmp, L);
  buf_init(&tmp);
  h = 0;
  put(&tmp, &h, sizeof h);
  lua_pushvalue(L, idx);
  lua_dump(L, dump_writer, &tmp, 0);
  lua_pop(L, 1);
  h = fnv1a(tmp.b->data + sizeof h, tmp.b->len - sizeof h);
  memcpy(tmp.b->data, &h, sizeof h);
  lua_pushlstring(L, tmp.b->data, tmp.b->len);
  lua_remove(L, -2);
  lua_pushvalue(L, idx);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  lua_remove(L, -2);
}

/* [-(0|1), +0, e] A Lua function: its dump string (at the top of the
** stack when `dumped`, popped), then its upvalues. */
static void put_function(enc *e, int idx, int dumped) {
  lua_State *L = e->L;
  size_t n;
  int saved = e->nsegs;
  const char *s;
  lua_Integer myid;
  int i;
  if (put_ref(e, idx, T_FUNC)) {
    if (dumped) lua_pop(L, 1);
    return;
  }
  myid = e->nextid;
  if (!dumped) dump_push(e, idx);
  s = lua_tolstring(L, -1, &n);
  put_str(e, s, n);
  lua_pop(L, 1);
  for (i = 1; lua_getupvalue(L, idx, i) != NULL; i++) lua_pop(L, 1);
  put_tag(e, i - 1);
  for (i = 1; i < 256; i++) {
    const char *name = lua_getupvalue(L, idx, i);
    void *upid;
    lua_Integer code;
    if (name == NULL) break;
    if (strcmp(name, "_ENV") == 0) {
      /* Whatever the sender's environment was (busted gives spec files
      ** their own), the function runs in the receiver's globals. */
      put_tag(e, T_GLOBALS);
      lua_pop(L, 1);
      continue;
    }
    upid = lua_upvalueid(L, idx, i);
    if ((code = seen_get(e, upid)) != 0) {
      put_tag(e, T_UPREF);
      put_int(e, code);
      e->backrefs = 1;
    } else {
      seen_set(e, upid, myid * 256 + i);
      seg_push(e, SEG_UPVALUE, 0, name);
      put_value(e, lua_gettop(L));
      e->nsegs = saved;
    }
    lua_pop(L, 1);
  }
}

/* [-0, +0, e] Write the value at idx if it is a scalar (nil, boolean,
** number, string) or an absent module; raise TransferError for other
** userdata, threads and light userdata. Returns 0 for a table or a
** function, left to put_object. */
static int put_scalar(enc *e, int idx) {
  lua_State *L = e->L;
  size_t n;
  const char *s;
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      put_tag(e, T_NIL);
      return 1;
    case LUA_TBOOLEAN:
      put_tag(e, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
      return 1;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        put_tag(e, T_INT);
        put_int(e, lua_tointeger(L, idx));
      } else {
        lua_Number d = lua_tonumber(L, idx);
        put_tag(e, T_FLT);
        put(e, &d, sizeof d);
      }
      return 1;
    case LUA_TSTRING:
      s = lua_tolstring(L, idx, &n);
      put_tag(e, T_STR);
      put_str(e, s, n);
      return 1;
    case LUA_TTABLE:
    case LUA_TFUNCTION:
      return 0;
    case LUA_TUSERDATA:
      if (!has_registered_mt(L, idx, ABSENT_MT)) break;
      lua_getiuservalue(L, idx, 1);
      s = lua_tolstring(L, -1, &n);
      put_tag(e, T_MODULE);
      put_str(e, s, n);
      lua_pop(L, 1);
      return 1;
    default:
      break;
  }
  transfer_error(e, idx, "");
  return 1;
}

/* [-0, +0, e] Write the table or function at idx if it travels by name:
** the globals, an error type, a module or a module's field. Returns 0
** if it must be copied; raises for a C function that is no module's. */
static int put_byname(enc *e, int idx) {
  lua_State *L = e->L;
  if (lua_type(L, idx) == LUA_TTABLE) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    if (lua_rawequal(L, -1, idx)) {
      lua_pop(L, 1);
      put_tag(e, T_GLOBALS);
      return 1;
    }
    lua_pop(L, 1);
    if (has_registered_mt(L, idx, ERRORTYPE_MT)) {
      if (!put_ref(e, idx, T_ERRNAME)) {
        lua_Integer id = e->nextid;
        e->b->len -= 1 + sizeof(lua_Integer); /* put_errortype's tag */
        put_errortype(e, idx, id);
      }
      return 1;
    }
  }
  if (put_module(e, idx)) return 1;
  if (lua_iscfunction(L, idx)) {
    /* Maybe a module changed since the index was built: look again. */
    if (!e->rebuilt) {
      e->rebuilt = 1;
      index_get(e, 1);
      if (put_module(e, idx)) return 1;
    }
    transfer_error(e, idx, " (only the functions of modules can)");
  }
  return 0;
}

/* [-0, +(0|1), m] If the value at idx is a Lua function packed before,
** push its dump string and return 1. It was then found to be no module's
** field, and is taken not to have become one since (looking again costs
** a walk of package.loaded per message). */
static int dump_find(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TFUNCTION || lua_iscfunction(L, idx)) return 0;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &dumps_key) == LUA_TTABLE) {
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) == LUA_TSTRING) {
      lua_remove(L, -2);
      return 1;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

static void put_value(enc *e, int idx) {
  lua_State *L = e->L;
  int dumped;
  if (put_scalar(e, idx)) return;
  dumped = dump_find(L, idx);
  if (!dumped && put_byname(e, idx)) return;
  if (e->depth >= MAX_DEPTH) {
    char why[64];
    snprintf(why, sizeof why, " (nested more than %d levels deep)", MAX_DEPTH);
    transfer_error(e, idx, why);
  }
  luaL_checkstack(L, 16, "value nested too deeply to copy");
  e->depth++;
  if (lua_type(L, idx) == LUA_TFUNCTION)
    put_function(e, idx, dumped);
  else
    put_table(e, idx);
  e->depth--;
}

void sp_marshal_pack(lua_State *L, int idx, int n, const char *what, int first,
                     sp_packed *out) {
  sp_marshal_pack_room(L, idx, n, what, first, out, 0, NULL, NULL);
}

void *sp_marshal_pack_room(lua_State *L, int idx, int n, const char *what,
                           int first, sp_packed *out, size_t room, void *reuse,
                           size_t *cap) {
  enc e;
  int top;
  size_t need;
  char *block;
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 24, NULL);
  enc_init(&e, L);
  e.what = what;
  buf_init(&e);
  top = lua_gettop(L);
  lua_pushnil(L); /* the seen table's slot, filled when needed */
  e.seen = lua_gettop(L);
  lua_pushnil(L); /* the module index's slot, likewise */
  e.index = lua_gettop(L);
  for (int i = 0; i < n; i++) {
    e.argn = first + i;
    e.nsegs = 0;
    put_value(&e, idx + i);
  }
  need = room + (e.b->len ? e.b->len : 1);
  if (reuse != NULL && *cap >= need) {
    block = reuse;
  } else {
    block = malloc(need);
    if (block == NULL) luaL_error(L, "not enough memory");
    if (cap != NULL) *cap = need;
  }
  memset(block, 0, room);
  out->data = block + room;
  memcpy(out->data, e.b->data, e.b->len);
  out->len = e.b->len;
  out->n = n;
  out->refs = e.backrefs;
  lua_settop(L, top - 1);
  return block;
}

size_t sp_marshal_scalar(lua_State *L, int idx, char *buf) {
  unsigned char *m = (unsigned char *)buf;
  size_t len = 1;
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      m[0] = T_NIL;
      break;
    case LUA_TBOOLEAN:
      m[0] = lua_toboolean(L, idx) ? T_TRUE : T_FALSE;
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        m[0] = T_INT;
        memcpy(m + 1, &i, sizeof i);
        len += sizeof i;
      } else {
        lua_Number x = lua_tonumber(L, idx);
        m[0] = T_FLT;
        memcpy(m + 1, &x, sizeof x);
        len += sizeof x;
      }
      break;
    default:
      return 0;
  }
  return len;
}

int sp_marshal_pack_scalar(lua_State *L, int idx, sp_packed *out) {
  char m[SP_MARSHAL_SCALAR];
  size_t len = sp_marshal_scalar(L, idx, m);
  if (len == 0) return 0;
  out->data = malloc(len);
  if (out->data == NULL) return 0;
  memcpy(out->data, m, len);
  out->len = len;
  out->n = 1;
  out->refs = 0;
  return 1;
}

void sp_marshal_free(sp_packed *p) {
  free(p->data);
  p->data = NULL;
  p->len = 0;
}

/* ---------------------------------------------------------------- */
/* Unpacking                                                           */

typedef struct dec {
  lua_State *L;
  const char *p, *end;
  int refs;    /* stack index: id -> value; 0 if the message has no refs */
  int cache;   /* stack index of the prototype cache, 0 if not used */
  int cacheok; /* the next function may come from the cache */
  int depth;   /* tables and functions being read, as pack's MAX_DEPTH */
  lua_Integer serial; /* this unpack's number, for the cache */
} dec;

/* [-0, +1, v] Refuse the message. Pack only writes what unpack reads, so
** only a message that did not come from sp_marshal_pack gets here. */
static void corrupt(dec *d) {
  luaL_error(d->L, "corrupt message");
}

static void get(dec *d, void *out, size_t n) {
  if ((size_t)(d->end - d->p) < n) corrupt(d);
  memcpy(out, d->p, n);
  d->p += n;
}

static int get_tag(dec *d) {
  unsigned char c;
  get(d, &c, 1);
  return c;
}

static lua_Integer get_int(dec *d) {
  lua_Integer i;
  get(d, &i, sizeof i);
  return i;
}

static const char *get_str(dec *d, size_t *n) {
  const char *s;
  get(d, n, sizeof *n);
  if ((size_t)(d->end - d->p) < *n) corrupt(d);
  s = d->p;
  d->p += *n;
  return s;
}

static void get_value(dec *d, int tag);

static void set_ref(dec *d, lua_Integer id) {
  if (d->refs == 0) return; /* nothing refers back to it */
  lua_pushvalue(d->L, -1);
  lua_rawseti(d->L, d->refs, id);
}

static void get_table(dec *d, int isfailure) {
  lua_State *L = d->L;
  int t, tag;
  lua_newtable(L);
  t = lua_gettop(L);
  set_ref(d, get_int(d));
  while ((tag = get_tag(d)) != T_END) {
    get_value(d, tag);
    get_value(d, get_tag(d));
    lua_rawset(L, t);
  }
  if (isfailure) {
    luaL_setmetatable(L, FAILURE_MT);
    return;
  }
  get_value(d, get_tag(d));
  if (lua_isnil(L, -1))
    lua_pop(L, 1);
  else if (lua_istable(L, -1))
    lua_setmetatable(L, t);
  else if (luaL_testudata(L, -1, ABSENT_MT) != NULL)
    lua_pop(L, 1); /* a module's metatable this state lacks: none here */
  else
    corrupt(d);
}

typedef struct chunk {
  const char *p;
  size_t n;
} chunk;

static const char *chunk_reader(lua_State *L, void *ud, size_t *size) {
  chunk *c = ud;
  (void)L;
  *size = c->n;
  c->n = 0;
  return *size ? c->p : NULL;
}

/* The prototype cache of a worker's state (sp_marshal_unpack_call): a
** table the caller keeps, hash -> {function, dump string, serial}, with
** "n" (entries). A function found there is reused, its upvalues set
** afresh from the message, unless this unpack already used it (two
** closures of one prototype: each unpack has its own serial) or it was
** joined to another's upvalue (it is then dropped from the cache). */
#define PROTOS_MAX 256
static atomic_llong unpack_serial;

/* [-0, +1, e] Load the function whose dump string (hash, bytecode) is
** c; push it. */
static void function_load(lua_State *L, const char *s, size_t n) {
  chunk c;
  c.p = s + sizeof(uint64_t);
  c.n = n - sizeof(uint64_t);
  if (lua_load(L, chunk_reader, &c, "=(copied function)", "b") != LUA_OK)
    lua_error(L);
}

/* [-0, +1, e] The function for dump string s from the cache (returns 1)
** or loaded, and cached unless an entry for it is in use (0). */
static int function_cached(dec *d, const char *s, size_t n) {
  lua_State *L = d->L;
  uint64_t h;
  size_t m;
  const char *t;
  memcpy(&h, s, sizeof h);
  if (lua_rawgeti(L, d->cache, (lua_Integer)h) == LUA_TTABLE) {
    lua_rawgeti(L, -1, 2);
    t = lua_tolstring(L, -1, &m);
    lua_pop(L, 1);
    if (m == n && memcmp(s, t, n) == 0) {
      if (lua_rawgeti(L, -1, 3) == LUA_TNUMBER &&
          lua_tointeger(L, -1) != d->serial) {
        lua_pop(L, 1);
        lua_pushinteger(L, d->serial);
        lua_rawseti(L, -2, 3);
        lua_rawgeti(L, -1, 1);
        lua_remove(L, -2);
        return 1;
      }
      lua_pop(L, 2);
      function_load(L, s, n); /* in use in this message: a fresh one */
      return 0;
    }
  }
  lua_pop(L, 1);
  function_load(L, s, n);
  lua_getfield(L, d->cache, "n");
  if (lua_tointeger(L, -1) >= PROTOS_MAX) { /* full: start again */
    lua_pushnil(L);
    while (lua_next(L, d->cache) != 0) {
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_pushnil(L);
      lua_rawset(L, d->cache); /* clearing a field while traversing */
    }
    lua_pushinteger(L, 0);
    lua_replace(L, -2);
  }
  lua_pushinteger(L, lua_tointeger(L, -1) + 1);
  lua_setfield(L, d->cache, "n");
  lua_pop(L, 1);
  lua_createtable(L, 3, 0);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 1);
  lua_pushlstring(L, s, n);
  lua_rawseti(L, -2, 2);
  lua_pushinteger(L, d->serial);
  lua_rawseti(L, -2, 3);
  lua_rawseti(L, d->cache, (lua_Integer)h);
  return 0;
}

static void get_function(dec *d) {
  lua_State *L = d->L;
  lua_Integer id = get_int(d);
  const char *s;
  size_t n;
  int f, nup, cached = 0, cacheok = d->cacheok;
  d->cacheok = 0;
  s = get_str(d, &n);
  if (n < sizeof(uint64_t)) corrupt(d);
  if (cacheok && d->cache)
    cached = function_cached(d, s, n);
  else
    function_load(L, s, n);
  f = lua_gettop(L);
  set_ref(d, id);
  nup = get_tag(d);
  for (int i = 1; i <= nup; i++) {
    int tag = get_tag(d);
    if (tag == T_UPREF) {
      lua_Integer code = get_int(d);
      /* A message without back-references has no table to index. */
      if (code < 0 || d->refs == 0) corrupt(d);
      lua_rawgeti(L, d->refs, code / 256);
      /* lua_upvaluejoin checks nothing: both upvalues must exist. */
      if (lua_type(L, -1) != LUA_TFUNCTION || lua_iscfunction(L, -1) ||
          lua_getupvalue(L, -1, (int)(code % 256)) == NULL ||
          lua_getupvalue(L, f, i) == NULL)
        corrupt(d);
      lua_pop(L, 2);
      lua_upvaluejoin(L, f, i, -1, (int)(code % 256));
      lua_pop(L, 1);
      if (cached) { /* joined for good: no longer reusable */
        uint64_t h;
        memcpy(&h, s, sizeof h);
        lua_pushnil(L);
        lua_rawseti(L, d->cache, (lua_Integer)h);
        cached = 0;
      }
    } else {
      d->cacheok = cacheok; /* what a reused function closes over */
      get_value(d, tag);
      d->cacheok = 0;
      if (lua_setupvalue(L, f, i) == NULL) lua_pop(L, 1);
    }
  }
}

/* An absent module: what a module (or a module's field) that cannot be
** required here arrives as. Using it raises; sent on, it goes by its name
** again, so a function can carry another thread's function through a
** thread that lacks its modules (a pool thread carrying a callback that
** uses spindle.defer back to the main thread). A userdata whose user
** value is the name, "mod" or "mod\0key". */

/* [-0, +1, m] The name of absent module idx as "mod" or "mod.key". */
static void absent_pushname(lua_State *L, int idx) {
  size_t n, ml;
  const char *s;
  lua_getiuservalue(L, idx, 1);
  s = lua_tolstring(L, -1, &n);
  ml = strnlen(s, n);
  if (ml < n) {
    lua_pushlstring(L, s, ml);
    lua_pushliteral(L, ".");
    lua_pushlstring(L, s + ml + 1, n - ml - 1);
    lua_concat(L, 3);
    lua_remove(L, -2);
  }
}

static int absent_use(lua_State *L) {
  absent_pushname(L, 1);
  return luaL_error(L,
                    "'%s' is not available in this thread (it came "
                    "from another thread, where it is a module)",
                    lua_tostring(L, -1));
}

static int absent_tostring(lua_State *L) {
  absent_pushname(L, 1);
  lua_pushfstring(L, "<%s, absent in this thread>", lua_tostring(L, -1));
  return 1;
}

/* [-1, +1, m] Wrap the name at -1 in an absent module. */
static void absent_new(lua_State *L) {
  lua_newuserdatauv(L, 0, 1);
  lua_insert(L, -2);
  lua_setiuservalue(L, -2, 1);
  if (luaL_newmetatable(L, ABSENT_MT)) {
    lua_pushcfunction(L, absent_use);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, absent_use);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, absent_use);
    lua_setfield(L, -2, "__call");
    lua_pushcfunction(L, absent_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_setmetatable(L, -2);
}

/* [-0, +1, e] require(mod)[key] for a "mod\0key" or "mod" name, or an
** absent module if that cannot be required here. */
static void get_module(dec *d) {
  lua_State *L = d->L;
  size_t n, ml;
  const char *s = get_str(d, &n);
  ml = strnlen(s, n);
  lua_getglobal(L, "require");
  lua_pushlstring(L, s, ml);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    lua_pushlstring(L, s, n);
    absent_new(L);
    return;
  }
  if (ml < n) {
    lua_pushlstring(L, s + ml + 1, n - ml - 1);
    lua_gettable(L, -2);
    lua_remove(L, -2);
  }
}

/* [-0, +1, e] An error type by name: this state's type of that name, or
** a new one (its parent follows in the message). */
static void get_errname(dec *d) {
  lua_State *L = d->L;
  size_t n;
  const char *s = get_str(d, &n);
  int named;
  named_push(L);
  named = lua_gettop(L);
  lua_pushlstring(L, s, n);
  get_value(d, get_tag(d)); /* the parent */
  lua_pushvalue(L, -2);
  if (lua_rawget(L, named) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "spindle.failure");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "errorType");
    lua_remove(L, -2);
    lua_pushvalue(L, -3);
    lua_pushvalue(L, -3);
    lua_call(L, 2, 1);
    lua_pushvalue(L, -3);
    lua_pushvalue(L, -2);
    lua_rawset(L, named);
  }
  lua_replace(L, named);
  lua_settop(L, named);
  set_ref(d, get_int(d));
}

static void get_value(dec *d, int tag) {
  lua_State *L = d->L;
  size_t n;
  const char *s;
  int cacheok = d->cacheok;
  d->cacheok = 0;
  luaL_checkstack(L, 16, "value nested too deeply to copy");
  if (d->depth > 2 * MAX_DEPTH) corrupt(d); /* keys and leaves count too */
  d->depth++;
  switch (tag) {
    case T_NIL:
      lua_pushnil(L);
      break;
    case T_FALSE:
      lua_pushboolean(L, 0);
      break;
    case T_TRUE:
      lua_pushboolean(L, 1);
      break;
    case T_INT:
      lua_pushinteger(L, get_int(d));
      break;
    case T_FLT: {
      lua_Number x;
      get(d, &x, sizeof x);
      lua_pushnumber(L, x);
      break;
    }
    case T_STR:
      s = get_str(d, &n);
      lua_pushlstring(L, s, n);
      break;
    case T_TABLE:
      get_table(d, 0);
      break;
    case T_FAILURE:
      get_table(d, 1);
      break;
    case T_FUNC:
      d->cacheok = cacheok;
      get_function(d);
      break;
    case T_REF:
      if (d->refs == 0) corrupt(d); /* the message said it has none */
      lua_rawgeti(L, d->refs, get_int(d));
      break;
    case T_GLOBALS:
      lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
      break;
    case T_MODULE:
      get_module(d);
      break;
    case T_ERRKEY:
      s = get_str(d, &n);
      lua_pushlstring(L, s, n);
      sp_errortype_push(L, lua_tostring(L, -1));
      lua_remove(L, -2);
      set_ref(d, get_int(d));
      break;
    case T_ERRNAME:
      get_errname(d);
      break;
    default:
      corrupt(d);
  }
  d->depth--;
}

/* [-0, +n, e] Unpack p; with a prototype cache (cache: its absolute
** stack index, else 0), its first value (the function of a call) and
** the functions it closes over may be reused from it. */
static int unpack(lua_State *L, const sp_packed *p, int cache) {
  dec d;
  luaL_checkstack(L, p->n + 16, "too many values to copy");
  memset(&d, 0, sizeof d);
  d.L = L;
  d.p = p->data;
  /* An empty message may have no buffer at all (NULL + 0 is undefined). */
  d.end = p->len > 0 ? p->data + p->len : p->data;
  if (p->refs) {
    lua_newtable(L);
    d.refs = lua_gettop(L);
  }
  if (cache) {
    d.cache = cache;
    d.serial = (lua_Integer)atomic_fetch_add_explicit(&unpack_serial, 1,
                                                      memory_order_relaxed);
  }
  for (int i = 0; i < p->n; i++) {
    d.cacheok = cache && i == 0;
    get_value(&d, get_tag(&d));
  }
  if (d.refs) lua_remove(L, d.refs);
  return p->n;
}

int sp_marshal_unpack(lua_State *L, const sp_packed *p) {
  return unpack(L, p, 0);
}

int sp_marshal_unpack_scalar(lua_State *L, const sp_packed *p) {
  const unsigned char *s = (const unsigned char *)p->data;
  if (p->n != 1 || p->len == 0) return 0;
  if (p->len == 1) {
    switch (s[0]) {
      case T_NIL:
        lua_pushnil(L);
        return 1;
      case T_FALSE:
      case T_TRUE:
        lua_pushboolean(L, s[0] == T_TRUE);
        return 1;
      default:
        return 0;
    }
  }
  if (p->len == 1 + sizeof(lua_Integer) && s[0] == T_INT) {
    lua_Integer i;
    memcpy(&i, s + 1, sizeof i);
    lua_pushinteger(L, i);
    return 1;
  }
  if (p->len == 1 + sizeof(lua_Number) && s[0] == T_FLT) {
    lua_Number x;
    memcpy(&x, s + 1, sizeof x);
    lua_pushnumber(L, x);
    return 1;
  }
  return 0;
}

int sp_marshal_unpack_call(lua_State *L, const sp_packed *p, int cache) {
  return unpack(L, p, lua_absindex(L, cache));
}

/* ---------------------------------------------------------------- */
/* spindle._marshal: the test hook                                     */

typedef struct scratch {
  sp_packed in, out;
} scratch;

/* In the scratch state: standard libraries, spindle.failure, then
** unpack sc->in, call it if asked, pack the results into sc->out. */
static int scratch_run(lua_State *S) {
  scratch *sc = lua_touserdata(S, 1);
  int m;
  lua_settop(S, 0);
  luaL_openlibs(S);
  luaL_requiref(S, "spindle.failure", luaopen_spindle_failure, 0);
  lua_settop(S, 0);
  m = sp_marshal_unpack(S, &sc->in);
  if (m >= 2 && lua_type(S, 1) == LUA_TSTRING &&
      strcmp(lua_tostring(S, 1), "call") == 0) {
    lua_call(S, m - 2, LUA_MULTRET);
    lua_remove(S, 1);
    m = lua_gettop(S);
  }
  sp_marshal_pack(S, 1, m, "result", 1, &sc->out);
  return 0;
}

/* _marshal.roundtrip(...) -> ...: copy the arguments into a new Lua
** state (standard libraries and spindle.failure only) and back, as a
** pool call does. If the first value is "call", the second is called
** there with the rest and its results come back instead. Raises
** threads.TransferError as a pool call would; an error in the scratch
** state is raised as its message. Main thread; for the specs. */
static int marshal_roundtrip(lua_State *L) {
  scratch sc;
  lua_State *S;
  int m;
  memset(&sc, 0, sizeof sc);
  sp_marshal_pack(L, 1, lua_gettop(L), "arg", 1, &sc.in);
  S = sp_alloc_newstate();
  if (S == NULL) {
    sp_marshal_free(&sc.in);
    return luaL_error(L, "not enough memory");
  }
  lua_pushcfunction(S, scratch_run);
  lua_pushlightuserdata(S, &sc);
  if (lua_pcall(S, 1, 0, 0) != LUA_OK) {
    const char *msg = lua_tostring(S, -1);
    lua_pushstring(L, msg ? msg : "error in the scratch state");
    sp_marshal_free(&sc.in);
    sp_marshal_free(&sc.out);
    lua_close(S);
    return lua_error(L);
  }
  lua_close(S);
  sp_marshal_free(&sc.in);
  lua_settop(L, 0);
  /* Unpacking in L may raise: hand the buffer to a box first. */
  {
    box *b = box_new(L);
    b->data = sc.out.data; /* the box frees it from now on */
    m = sp_marshal_unpack(L, &sc.out);
    lua_remove(L, 1);
  }
  return m;
}

static const luaL_Reg marshal_funcs[] = {{"roundtrip", marshal_roundtrip},
                                         {NULL, NULL}};

int luaopen_spindle__marshal(lua_State *L) {
  luaL_newlib(L, marshal_funcs);
  return 1;
}
