/*
** fuzz/marshal_copy.c: random Lua values copied across states by
** runtime/marshal.c and compared. fuzz/marshal_copy.lua's gen() turns
** the input into values in state A (nested, shared and cyclic tables,
** metatables, closures with shared upvalues, Failures, error types,
** module functions); they are packed, unpacked in state B, packed again
** there and unpacked back in A. canon() of the values (below, in C; the
** reference canon in fuzz/marshal_copy.lua writes the same string) must
** be the same string in all three places; a difference aborts. Pack may
** refuse only with its nesting limit. Runs from the repository's top folder (it
** reads fuzz/marshal_copy.lua). With FZ_DUMP set to a folder, each
** message is also written there as a fuzz/marshal_bytes.c input (the
** seeds of fuzz/corpus/marshal_bytes).
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "marshal.h"

static lua_State *A, *B;

static lua_State *copy_state(void) {
  lua_State *L = fz_newstate(1);
  if (luaL_dofile(L, "fuzz/marshal_copy.lua") != LUA_OK)
    fz_fail("fuzz/marshal_copy.lua: %s", lua_tostring(L, -1));
  return L;
}

/* canon(): values written as a string that two states agree on exactly
** when the values have the same shape. Objects (tables, functions, other
** non-primitive values) are numbered in a depth-first traversal with keys
** sorted (booleans false < true, then numbers by value, then strings by
** bytes), so shared references and cycles show as @id; functions are
** their stripped bytecode and upvalues, shared upvalues numbered too
** (^id), _ENV as G or ?; tables end with their metatable (Failure or mt
** and the metatable); module values by name (M:name, from
** fuzz/marshal_copy.lua's canon_names()) and error types by tostring
** (E:name); integers as i%lld, floats as f%a, NaN as nan, strings as
** s<length>:<bytes>. The same string fuzz/marshal_copy.lua's canon()
** writes (FZ_CANON_CHECK=1 compares the two on every input), in C
** because canon runs three times per input and was most of its cost. */

/* canon is the oracle, not code under test: without coverage
** instrumentation (clang), so its branches neither cost a callback each
** nor count as new features for libFuzzer. */
#ifdef __clang__
#define NO_COV __attribute__((no_sanitize("coverage")))
#else
#define NO_COV
#endif

/* Output and key buffers, reused by every call (one harness, one
** thread). */
static char *cbuf, *dbuf;
static size_t clen, ccap, dlen, dcap;

typedef struct {
  int type; /* LUA_TBOOLEAN, LUA_TNUMBER or LUA_TSTRING */
  int isint;
  lua_Integer i; /* boolean value, or integer */
  lua_Number n;
  const char *s; /* string keys: held by their table */
  size_t len;
} ckey;
static ckey *ckeys;
static size_t nckeys, ckeycap;

typedef struct {
  lua_State *L;
  int names, failmt, errmt, g; /* stack indices */
  lua_Integer nid, nup;
  int depth;
} canon_ctx;

NO_COV static void grow(char **b, size_t *cap, size_t need) {
  size_t c = *cap ? *cap : 4096;
  char *nb;
  if (need <= *cap) return;
  while (c < need) c *= 2;
  nb = realloc(*b, c);
  if (nb == NULL) fz_fail("canon: out of memory");
  *b = nb;
  *cap = c;
}

NO_COV static void put(const char *s, size_t n) {
  if (n == 0) return;
  if (clen + n > ccap) grow(&cbuf, &ccap, clen + n);
  memcpy(cbuf + clen, s, n);
  clen += n;
}

NO_COV static void puts_(const char *s) {
  put(s, strlen(s));
}

/* As LUA_INTEGER_FMT (%lld) writes it. */
NO_COV static void putint(lua_Integer i) {
  char b[24], *e = b + sizeof b, *p = e;
  lua_Unsigned u = i < 0 ? 0u - (lua_Unsigned)i : (lua_Unsigned)i;
  do *--p = (char)('0' + u % 10);
  while ((u /= 10) != 0);
  if (i < 0) *--p = '-';
  put(p, (size_t)(e - p));
}

NO_COV static void putnum(lua_Number n) {
  char b[64];
  if (n != n) {
    puts_("nan");
    return;
  }
  put("f", 1);
  put(b, (size_t)snprintf(b, sizeof b, "%a", (double)n));
}

NO_COV static void putstr(const char *s, size_t len) {
  put("s", 1);
  putint((lua_Integer)len);
  put(":", 1);
  put(s, len);
}

NO_COV static int dump_writer(lua_State *L, const void *p, size_t sz,
                              void *ud) {
  (void)L;
  (void)ud;
  if (sz == 0) return 0;
  if (dlen + sz > dcap) grow(&dbuf, &dcap, dlen + sz);
  memcpy(dbuf + dlen, p, sz);
  dlen += sz;
  return 0;
}

NO_COV static int rank(const ckey *k) {
  return k->type == LUA_TBOOLEAN ? 1 : k->type == LUA_TNUMBER ? 2 : 3;
}

/* Integer i against float f (not NaN) as Lua's < orders them. */
NO_COV static int cmp_if(lua_Integer i, lua_Number f) {
  lua_Number fl;
  lua_Integer fi;
  if (f >= -(lua_Number)LUA_MININTEGER) return -1; /* f >= 2^63 */
  if (f < (lua_Number)LUA_MININTEGER) return 1;
  fl = floor(f);
  fi = (lua_Integer)fl;
  if (i != fi) return i < fi ? -1 : 1;
  return f > fl ? -1 : 0;
}

NO_COV static int key_cmp(const void *pa, const void *pb) {
  const ckey *a = pa, *b = pb;
  int ra = rank(a), rb = rank(b), c;
  size_t m;
  if (ra != rb) return ra - rb;
  if (a->type == LUA_TBOOLEAN) return (int)(a->i - b->i);
  if (a->type == LUA_TNUMBER) {
    if (a->isint && b->isint) return a->i < b->i ? -1 : a->i > b->i;
    if (!a->isint && !b->isint) return a->n < b->n ? -1 : a->n > b->n;
    if (a->isint) return cmp_if(a->i, b->n);
    return -cmp_if(b->i, a->n);
  }
  m = a->len < b->len ? a->len : b->len;
  c = memcmp(a->s, b->s, m);
  if (c != 0) return c;
  return a->len < b->len ? -1 : a->len > b->len;
}

/* Object and upvalue ids of one canon call: an open-addressing map from
** (address, type) to id, reused by every call (a slot counts only with
** the call's gen). The objects are all reachable from canon's arguments
** while it runs, so their addresses are theirs alone; the type keeps a
** light userdata apart from a full one at the same address. */
typedef struct {
  const void *p;
  int type;
  unsigned gen;
  lua_Integer id;
} idslot;
typedef struct {
  idslot *slot;
  size_t cap, used; /* cap a power of 2; used counts this gen's slots */
  unsigned gen, usedgen;
} idmap_t;
static idmap_t idmap, upmap;

/* The slot of (p, type), or the free slot where it would go (m->cap > 0). */
NO_COV static idslot *map_find(idmap_t *m, const void *p, int type) {
  uint64_t h = (uint64_t)(uintptr_t)p;
  size_t i;
  h = (h ^ (h >> 17)) * 0x9E3779B97F4A7C15u;
  i = (size_t)(h ^ (h >> 29)) & (m->cap - 1);
  while (m->slot[i].gen == m->gen &&
         (m->slot[i].p != p || m->slot[i].type != type))
    i = (i + 1) & (m->cap - 1);
  return &m->slot[i];
}

/* Put (p, type) -> id in e (from map_find), growing the map to keep it at
** most half full. */
NO_COV static void map_add(idmap_t *m, idslot *e, const void *p, int type,
                           lua_Integer id) {
  if (m->usedgen != m->gen) m->used = 0, m->usedgen = m->gen;
  if (2 * (m->used + 1) > m->cap) {
    idmap_t old = *m;
    m->cap = old.cap ? old.cap * 2 : 256;
    m->slot = calloc(m->cap, sizeof *m->slot);
    if (m->slot == NULL) fz_fail("canon: out of memory");
    m->used = 0;
    for (size_t i = 0; i < old.cap; i++)
      if (old.slot[i].gen == m->gen) {
        idslot *n = map_find(m, old.slot[i].p, old.slot[i].type);
        *n = old.slot[i];
        m->used++;
      }
    free(old.slot);
    e = map_find(m, p, type);
  }
  e->p = p;
  e->type = type;
  e->gen = m->gen;
  e->id = id;
  m->used++;
}

static void visit(canon_ctx *c, int idx);

/* [-0, +0, e] The keys and values of the table at idx (sorted keys). */
NO_COV static void visit_table(canon_ctx *c, int idx) {
  lua_State *L = c->L;
  size_t base = nckeys, nk;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    ckey *k;
    lua_pop(L, 1);
    if (nckeys == ckeycap) {
      size_t cap = ckeycap ? ckeycap * 2 : 256;
      ckey *nb = realloc(ckeys, cap * sizeof *nb);
      if (nb == NULL) fz_fail("canon: out of memory");
      ckeys = nb;
      ckeycap = cap;
    }
    k = &ckeys[nckeys++];
    k->type = lua_type(L, -1);
    switch (k->type) {
      case LUA_TBOOLEAN:
        k->i = lua_toboolean(L, -1);
        break;
      case LUA_TNUMBER:
        k->isint = lua_isinteger(L, -1);
        if (k->isint)
          k->i = lua_tointeger(L, -1);
        else
          k->n = lua_tonumber(L, -1);
        break;
      case LUA_TSTRING:
        k->s = lua_tolstring(L, -1, &k->len);
        break;
      default:
        nckeys = base;
        luaL_error(L, "canon: a %s key", luaL_typename(L, -1));
    }
  }
  nk = nckeys - base;
  if (nk > 1) qsort(ckeys + base, nk, sizeof *ckeys, key_cmp);
  for (size_t i = 0; i < nk; i++) {
    ckey k = ckeys[base + i]; /* a copy: visit may move ckeys */
    switch (k.type) {
      case LUA_TBOOLEAN:
        puts_(k.i ? "true" : "false");
        lua_pushboolean(L, (int)k.i);
        break;
      case LUA_TNUMBER:
        if (k.isint) {
          put("i", 1);
          putint(k.i);
          lua_pushinteger(L, k.i);
        } else {
          putnum(k.n);
          lua_pushnumber(L, k.n);
        }
        break;
      default:
        putstr(k.s, k.len);
        lua_pushlstring(L, k.s, k.len);
    }
    put("=", 1);
    lua_rawget(L, idx);
    visit(c, lua_gettop(L));
    lua_pop(L, 1);
    put(",", 1);
  }
  nckeys = base;
}

/* [-0, +0, e] Bytecode and upvalues of the function at idx. */
NO_COV static void visit_function(canon_ctx *c, int idx) {
  lua_State *L = c->L;
  const char *name;
  if (lua_iscfunction(L, idx))
    luaL_error(L, "canon: a C function that is no module value");
  dlen = 0;
  lua_pushvalue(L, idx);
  lua_dump(L, dump_writer, NULL, 1);
  lua_pop(L, 1);
  putint((lua_Integer)dlen);
  put(":", 1);
  put(dbuf, dlen);
  for (int i = 1; i <= 255 && (name = lua_getupvalue(L, idx, i)) != NULL; i++) {
    void *id = lua_upvalueid(L, idx, i);
    idslot *e;
    /* _ENV is bound to the receiver's globals, not joined (marshal.c). */
    if (strcmp(name, "_ENV") == 0) {
      put(lua_rawequal(L, -1, c->g) ? "G" : "?", 1);
    } else if ((e = map_find(&upmap, id, 0))->gen == upmap.gen) {
      put("^", 1);
      putint(e->id);
    } else {
      map_add(&upmap, e, id, 0, ++c->nup);
      put("U", 1);
      putint(c->nup);
      visit(c, lua_gettop(L));
    }
    lua_pop(L, 1);
  }
}

/* [-0, +1, -] Push t[v] (raw) for the table t and value v (indices). */
NO_COV static int lookup(lua_State *L, int t, int v) {
  lua_pushvalue(L, v);
  return lua_rawget(L, t);
}

/* [-0, +0, -] Whether the metatable of the value at idx is the value at
** mt (raw: as debug.getmetatable). */
NO_COV static int has_mt(lua_State *L, int idx, int mt) {
  int same;
  if (!lua_getmetatable(L, idx)) return 0;
  same = lua_rawequal(L, -1, mt);
  lua_pop(L, 1);
  return same;
}

/* [-0, +0, e] Write the value at idx (an absolute index). */
NO_COV static void visit(canon_ctx *c, int idx) {
  lua_State *L = c->L;
  int t = lua_type(L, idx);
  switch (t) {
    case LUA_TNIL:
      puts_("nil");
      return;
    case LUA_TBOOLEAN:
      puts_(lua_toboolean(L, idx) ? "true" : "false");
      return;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        put("i", 1);
        putint(lua_tointeger(L, idx));
      } else {
        putnum(lua_tonumber(L, idx));
      }
      return;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      putstr(s, len);
      return;
    }
  }
  idslot *e;
  if (++c->depth > 10000) luaL_error(L, "canon: over 10000 levels deep");
  luaL_checkstack(L, 8, "canon");
  if (lookup(L, c->names, idx) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    put("M:", 2);
    put(s, len);
    lua_pop(L, 1);
  } else if (lua_pop(L, 1),
             (e = map_find(&idmap, lua_topointer(L, idx), t))->gen ==
                 idmap.gen) {
    put("@", 1);
    putint(e->id);
  } else if (t == LUA_TTABLE && has_mt(L, idx, c->errmt)) {
    size_t len;
    const char *s = luaL_tolstring(L, idx, &len);
    put("E:", 2);
    put(s, len);
    lua_pop(L, 1);
  } else {
    lua_Integer id = ++c->nid;
    map_add(&idmap, e, lua_topointer(L, idx), t, id);
    if (t == LUA_TFUNCTION) {
      put("F", 1);
      putint(id);
      put(":", 1);
      visit_function(c, idx);
    } else if (t == LUA_TTABLE) {
      put("T", 1);
      putint(id);
      put("{", 1);
      visit_table(c, idx);
      put("}", 1);
      if (has_mt(L, idx, c->failmt)) {
        puts_("Failure");
      } else if (lua_getmetatable(L, idx)) {
        put("mt", 2);
        visit(c, lua_gettop(L));
        lua_pop(L, 1);
      }
    } else {
      put("?", 1);
      puts_(lua_typename(L, t));
    }
  }
  c->depth--;
}

/* [-n, +1, e] canon() of the n values at the top, replacing them. */
NO_COV static int canon_cf(lua_State *L) {
  int n = lua_gettop(L);
  canon_ctx c = {L, n + 1, n + 2, n + 3, n + 4, 0, 0, 0};
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &cbuf) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_getglobal(L, "canon_names");
    lua_call(L, 0, 1);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &cbuf);
  }
  luaL_getmetatable(L, "spindle.Failure");
  luaL_getmetatable(L, "spindle.ErrorType");
  lua_getglobal(L, "_G");
  clen = 0;
  nckeys = 0;
  for (idmap_t *m = &idmap; m != NULL; m = m == &idmap ? &upmap : NULL) {
    m->gen++; /* every slot of the last call is free */
    if (m->cap == 0) {
      m->cap = 256;
      m->slot = calloc(m->cap, sizeof *m->slot);
      if (m->slot == NULL) fz_fail("canon: out of memory");
    }
  }
  for (int i = 1; i <= n; i++) {
    visit(&c, i);
    put(";", 1);
  }
  lua_pushlstring(L, cbuf, clen);
  return 1;
}

/* [-n, +1, e] fuzz/marshal_copy.lua's canon() of the n values at the top
** (the reference canon_cf is checked against with FZ_CANON_CHECK). */
static int lua_canon_cf(lua_State *L) {
  lua_getglobal(L, "canon");
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

/* [-0, +0, e] Pack the values above the first (the output, lightuserdata). */
static int pack_cf(lua_State *L) {
  sp_marshal_pack(L, 2, lua_gettop(L) - 1, "arg", 1, lua_touserdata(L, 1));
  return 0;
}

/* [-0, +n, e] Unpack the message (lightuserdata at 1). */
static int unpack_cf(lua_State *L) {
  const sp_packed *p = lua_touserdata(L, 1);
  lua_settop(L, 0);
  return sp_marshal_unpack(L, p);
}

/* Push canon() of L's whole stack (kept there); with FZ_CANON_CHECK set,
** abort unless the Lua canon() writes the same string. */
static void push_canon(lua_State *L, const char *where) {
  static int check = -1;
  int n = lua_gettop(L);
  if (check < 0) check = getenv("FZ_CANON_CHECK") != NULL;
  lua_pushcfunction(L, canon_cf);
  for (int i = 1; i <= n; i++) lua_pushvalue(L, i);
  if (lua_pcall(L, n, 1, 0) != LUA_OK)
    fz_fail("canon in %s: %s", where, lua_tostring(L, -1));
  if (check) {
    lua_pushcfunction(L, lua_canon_cf);
    for (int i = 1; i <= n; i++) lua_pushvalue(L, i);
    if (lua_pcall(L, n, 1, 0) != LUA_OK)
      fz_fail("Lua canon in %s: %s", where, lua_tostring(L, -1));
    if (!lua_rawequal(L, -1, -2))
      fz_fail("canon in %s: C and Lua differ:\n  C:   %s\n  Lua: %s", where,
              lua_tostring(L, -2), lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

/* Pack L's stack below its top (the canon string) into *out: 0 if pack
** refused with its nesting limit, which is an answer. */
static int pack(lua_State *L, sp_packed *out, const char *where) {
  int n = lua_gettop(L) - 1;
  lua_pushcfunction(L, pack_cf);
  lua_pushlightuserdata(L, out);
  for (int i = 1; i <= n; i++) lua_pushvalue(L, i);
  if (lua_pcall(L, n + 1, 0, 0) == LUA_OK) return 1;
  if (strstr(luaL_tolstring(L, -1, NULL), "levels deep") != NULL) return 0;
  fz_fail("pack in %s: %s", where, lua_tostring(L, -1));
  return 0;
}

/* Unpack p into L (emptied first) and check canon() there against want. */
static void unpack_check(lua_State *L, const sp_packed *p, const char *want,
                         size_t wlen, const char *where) {
  size_t len;
  const char *got;
  lua_settop(L, 0);
  lua_pushcfunction(L, unpack_cf);
  lua_pushlightuserdata(L, (void *)p);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK)
    fz_fail("unpack in %s: %s", where, lua_tostring(L, -1));
  push_canon(L, where);
  got = lua_tolstring(L, -1, &len);
  if (len != wlen || memcmp(got, want, len) != 0)
    fz_fail("the copy in %s differs:\n  sent: %s\n  got:  %s", where, want,
            got);
}

static void dump(const sp_packed *p) {
  static unsigned long count;
  const char *dir = getenv("FZ_DUMP");
  char path[4096];
  FILE *f;
  if (dir == NULL) return;
  snprintf(path, sizeof path, "%s/seed-%lu", dir, ++count);
  f = fopen(path, "wb");
  if (f == NULL) return;
  fputc(p->n, f);
  fwrite(p->data, 1, p->len, f);
  fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sp_packed p = {NULL, 0, 0, 0}, q = {NULL, 0, 0, 0};
  size_t wlen;
  const char *want;
  if (A == NULL) {
    A = copy_state();
    B = copy_state();
  }
  lua_settop(A, 0);
  lua_getglobal(A, "gen");
  lua_pushlstring(A, (const char *)data, size);
  if (lua_pcall(A, 1, LUA_MULTRET, 0) != LUA_OK)
    fz_fail("gen: %s", lua_tostring(A, -1));
  push_canon(A, "A");
  if (pack(A, &p, "A")) {
    dump(&p);
    want = lua_tolstring(A, -1, &wlen);
    lua_pushvalue(A, -1); /* keep want alive while A's stack changes */
    lua_setglobal(A, "want");
    unpack_check(B, &p, want, wlen, "B");
    if (!pack(B, &q, "B")) fz_fail("B refused what A sent");
    unpack_check(A, &q, want, wlen, "A, sent back");
  }
  sp_marshal_free(&p);
  sp_marshal_free(&q);
  lua_settop(A, 0);
  lua_settop(B, 0);
  return 0;
}
