/*
** alloc.c: the allocator of spindle's Lua states and its failing test
** mode (alloc.h). The blocks are realloc's, like lauxlib's l_alloc, so a
** state made by luaL_newstate can switch to sp_alloc with lua_setallocf.
*/
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>

#include "alloc.h"

/* Counted requests so far, and the one to fail (0: none). The count is
** shared by every thread's states, so with pool threads at work the Nth
** request is whichever thread makes it. */
static atomic_ulong count;
static atomic_ulong fail_at;

/* The request failed last on this thread: Lua answers a failed request
** with an emergency collection and the same request again (lmem.c's
** tryagain), which must fail too, or no memory error would be raised. */
static _Thread_local struct {
  void *ptr;
  size_t nsize;
  int set;
} failed;

void *sp_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  /* osize is a type tag, not a size, when ptr is NULL. */
  if (ptr == NULL || nsize > osize) {
    unsigned long n;
    if (failed.set && failed.ptr == ptr && failed.nsize == nsize) {
      failed.set = 0;
      return NULL;
    }
    failed.set = 0;
    n = atomic_fetch_add(&count, 1) + 1;
    if (n == atomic_load(&fail_at)) {
      failed.ptr = ptr;
      failed.nsize = nsize;
      failed.set = 1;
      return NULL;
    }
  }
  return realloc(ptr, nsize);
}

lua_State *sp_alloc_newstate(void) {
  lua_State *L = luaL_newstate();
  if (L != NULL) lua_setallocf(L, sp_alloc, NULL);
  return L;
}

static void print_count(void) {
  fprintf(stderr, "spindle: %lu allocations\n", atomic_load(&count));
}

void sp_alloc_setup(void) {
  const char *s = getenv("SPINDLE_FAIL_ALLOC");
  if (s == NULL || *s == '\0') return;
  atomic_store(&fail_at, strtoul(s, NULL, 10));
  if (atomic_load(&fail_at) == 0) atexit(print_count);
}

unsigned long sp_alloc_failat(unsigned long n) {
  unsigned long before = atomic_exchange(&count, 0);
  atomic_store(&fail_at, n);
  return before;
}

/* _alloc.failAt(n) -> count: fail the nth counted allocation from now
** (0 or nil: none) and restart the count; returns how many were counted
** since the last call. Every thread's states count. For the specs, which
** prove memory-error paths with it (spec/alloc_spec.lua); Lua's ltests
** T.alloccount. */
static int alloc_failAt(lua_State *L) {
  lua_Integer n = luaL_optinteger(L, 1, 0);
  luaL_argcheck(L, n >= 0, 1, "must be >= 0");
  lua_pushinteger(L, (lua_Integer)sp_alloc_failat((unsigned long)n));
  return 1;
}

int luaopen_spindle__alloc(lua_State *L) {
  static const luaL_Reg funcs[] = {{"failAt", alloc_failAt}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
