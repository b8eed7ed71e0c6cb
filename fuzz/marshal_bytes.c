/*
** fuzz/marshal_bytes.c: random bytes into the unmarshaller
** (sp_marshal_unpack, runtime/marshal.c): it must push values or raise a
** Lua error, never crash, whatever the message. Input: one byte, the
** number of values (low 4 bits), then the message.
**
** What it cannot check: the bytecode a message carries. lua_load trusts
** binary chunks (a crafted one can crash the interpreter when it runs),
** and so does the unmarshaller, which only ever reads what
** sp_marshal_pack wrote in the same process; even lua_load itself
** crashes on some crafted chunks (this harness found one: a write
** through NULL in Lua 5.4's undump). So lua_load is wrapped
** (-Wl,--wrap=lua_load): a binary chunk is read but not loaded, and a
** harmless closure with four upvalues stands for it, so the upvalue
** paths after it still run. The state has only
** harmless modules (string, table, math, utf8, coroutine,
** spindle.failure), since a message can name any module function as a
** table's __gc, which then runs.
*/
#include <string.h>

#include "failure.h"
#include "harness.h"
#include "marshal.h"

int __real_lua_load(lua_State *L, lua_Reader reader, void *data,
                    const char *chunkname, const char *mode);
int __wrap_lua_load(lua_State *L, lua_Reader reader, void *data,
                    const char *chunkname, const char *mode);

static lua_State *S;
static int harmless; /* registry ref: the closure factory */

int __wrap_lua_load(lua_State *L, lua_Reader reader, void *data,
                    const char *chunkname, const char *mode) {
  size_t n;
  if (mode == NULL || strcmp(mode, "b") != 0)
    return __real_lua_load(L, reader, data, chunkname, mode);
  /* Lua's own loader crashes on some crafted binary chunks (found here:
  ** a write through NULL inside lua_load), so the bytes are only read. */
  while (reader(L, data, &n) != NULL && n > 0) continue;
  lua_rawgeti(L, LUA_REGISTRYINDEX, harmless);
  lua_call(L, 0, 1);
  return LUA_OK;
}

static const char factory[] =
    "local a, b, c\n"
    "return function() return a, b, c, _ENV end\n";

/* Keep only harmless modules loaded, and no searcher but preload's. */
static const char restrict_code[] =
    "local keep = {string = true, table = true, math = true, utf8 = true,\n"
    "  coroutine = true, ['spindle.failure'] = true}\n"
    "local loaded = debug.getregistry()._LOADED\n"
    "for k in pairs(loaded) do if not keep[k] then loaded[k] = nil end end\n"
    "local searchers = package.searchers\n"
    "for i = #searchers, 2, -1 do searchers[i] = nil end\n"
    "for k in pairs(package.preload) do package.preload[k] = nil end\n";

static void init(void) {
  S = fz_newstate(0);
  luaL_requiref(S, "spindle.failure", luaopen_spindle_failure, 0);
  lua_pop(S, 1);
  if (luaL_loadbuffer(S, factory, sizeof factory - 1, "=harmless") != LUA_OK)
    fz_fail("%s", lua_tostring(S, -1));
  harmless = luaL_ref(S, LUA_REGISTRYINDEX);
  fz_dostring(S, restrict_code, "=restrict");
}

/* [-0, +n, e] Unpack the message (lightuserdata at 1). */
static int unpack_cf(lua_State *L) {
  sp_packed *p = lua_touserdata(L, 1);
  lua_settop(L, 0);
  return sp_marshal_unpack(L, p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sp_packed p;
  if (S == NULL) init();
  if (size < 1) return 0;
  p.data = (char *)data + 1;
  p.len = size - 1;
  p.n = data[0] & 15;
  p.refs = !(data[0] & 16); /* bit 4: no back-references (marshal.h) */
  lua_pushcfunction(S, unpack_cf);
  lua_pushlightuserdata(S, &p);
  (void)lua_pcall(S, 1, 0, 0);
  lua_settop(S, 0);
  return 0;
}
