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

void *sp_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  /* osize is a type tag, not a size, when ptr is NULL. */
  if (ptr == NULL || nsize > osize) {
    unsigned long n = atomic_fetch_add(&count, 1) + 1;
    if (n == atomic_load(&fail_at)) return NULL;
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
