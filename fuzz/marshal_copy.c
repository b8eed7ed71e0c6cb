/*
** fuzz/marshal_copy.c: random Lua values copied across states by
** runtime/marshal.c and compared. fuzz/marshal_copy.lua's gen() turns
** the input into values in state A (nested, shared and cyclic tables,
** metatables, closures with shared upvalues, Failures, error types,
** module functions); they are packed, unpacked in state B, packed again
** there and unpacked back in A. canon() of the values must be the same
** string in all three places; a difference aborts. Pack may refuse only
** with its nesting limit. Runs from the repository's top folder (it
** reads fuzz/marshal_copy.lua). With FZ_DUMP set to a folder, each
** message is also written there as a fuzz/marshal_bytes.c input (the
** seeds of fuzz/corpus/marshal_bytes).
*/
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

/* [-n, +1, e] canon() of the n values at the top, replacing them. */
static int canon_cf(lua_State *L) {
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

/* Push canon() of L's whole stack (kept there). */
static void push_canon(lua_State *L, const char *where) {
  int n = lua_gettop(L);
  lua_pushcfunction(L, canon_cf);
  for (int i = 1; i <= n; i++) lua_pushvalue(L, i);
  if (lua_pcall(L, n, 1, 0) != LUA_OK)
    fz_fail("canon in %s: %s", where, lua_tostring(L, -1));
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
