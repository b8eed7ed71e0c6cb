/*
** fuzz/harness.c: the shared part of the harnesses (harness.h).
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "core.h"
#include "embed.h"
#include "harness.h"

#define FZ_MAX_BLOCK ((size_t)64 << 20)

/* sp_alloc with a ceiling: fuzzed sizes (a length prefix, a bytecode
** header) must give a Lua memory error, which is an answer, rather than
** a multi-gigabyte malloc, which the fuzzer reports as a crash. */
static void *fz_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  if (nsize > FZ_MAX_BLOCK && (ptr == NULL || nsize > osize)) return NULL;
  return sp_alloc(ud, ptr, osize, nsize);
}

lua_State *fz_newstate(int spindle) {
  lua_State *L = sp_alloc_newstate();
  if (L == NULL) fz_fail("cannot make a Lua state");
  lua_setallocf(L, fz_alloc, NULL);
  if (spindle)
    sp_openlibs(L, sp_cmodules);
  else
    luaL_openlibs(L);
  return L;
}

void fz_dostring(lua_State *L, const char *code, const char *name) {
  if (luaL_loadbuffer(L, code, strlen(code), name) != LUA_OK ||
      lua_pcall(L, 0, 0, 0) != LUA_OK)
    fz_fail("%s: %s", name, lua_tostring(L, -1));
}

void fz_check_lua(const char *path, const uint8_t *data, size_t size) {
  static lua_State *L;
  if (L == NULL) {
    L = fz_newstate(1);
    fz_dostring(L, "package.path = './?.lua;' .. package.path", "=path");
    if (luaL_dofile(L, path) != LUA_OK)
      fz_fail("%s: %s", path, lua_tostring(L, -1));
  }
  lua_getglobal(L, "check");
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) fz_fail("%s", lua_tostring(L, -1));
  lua_settop(L, 0);
}

void fz_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "harness: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}
