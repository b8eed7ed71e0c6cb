/*
** fuzz/framers.c: spindle.basic's framers (LineReceiver with both
** delimiters and raw/line switches mid-chunk, NetstringReceiver,
** Int8/16/32StringReceiver) fed the same bytes in different chunkings
** through their Lua API, so whichever file holds their C scanner is
** fuzzed; fuzz/framers.lua's check() compares the events and raises on a
** difference, which aborts. Runs from the repository's top folder (it
** reads fuzz/framers.lua and spec/support/string_transport.lua).
*/
#include "harness.h"

static lua_State *L;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (L == NULL) {
    L = fz_newstate(1);
    fz_dostring(L, "package.path = './?.lua;' .. package.path", "=path");
    if (luaL_dofile(L, "fuzz/framers.lua") != LUA_OK)
      fz_fail("fuzz/framers.lua: %s", lua_tostring(L, -1));
  }
  lua_getglobal(L, "check");
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) fz_fail("%s", lua_tostring(L, -1));
  lua_settop(L, 0);
  return 0;
}
