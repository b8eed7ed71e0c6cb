/*
** core.c: helpers shared by every runtime file (see core.h), the module
** searcher for Lua files compiled into the binary, and spindle._core.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>

#include "core.h"
#include "embed.h"

lua_State *sp_mainstate = NULL;

#define SP_MAX_HOOKS 16
static void (*shutdown_hooks[SP_MAX_HOOKS])(lua_State *L);
static int nshutdown_hooks = 0;

void sp_on_shutdown(void (*fn)(lua_State *L)) {
  for (int i = 0; i < nshutdown_hooks; i++)
    if (shutdown_hooks[i] == fn) return;
  if (nshutdown_hooks < SP_MAX_HOOKS) shutdown_hooks[nshutdown_hooks++] = fn;
}

void sp_shutdown(lua_State *L) {
  while (nshutdown_hooks > 0) shutdown_hooks[--nshutdown_hooks](L);
}

void sp_class_new(lua_State *L, const char *name, const luaL_Reg *methods,
                  const luaL_Reg *meta) {
  sp_class_newx(L, name, methods, meta, NULL);
}

/* __index of a class with getters: upvalue 1 the methods, upvalue 2 the
** getters (field name -> getter(self)). Lua calls it with (self, key);
** no lua_settop, as it is on the path of every method call. */
static int class_index(lua_State *L) {
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(2)) == LUA_TNIL) return 1;
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

void sp_class_newx(lua_State *L, const char *name, const luaL_Reg *methods,
                   const luaL_Reg *meta, const luaL_Reg *getters) {
  luaL_newmetatable(L, name);
  if (meta != NULL) luaL_setfuncs(L, meta, 0);
  if (methods != NULL || getters != NULL) {
    lua_newtable(L);
    if (methods != NULL) luaL_setfuncs(L, methods, 0);
    if (getters != NULL) {
      lua_newtable(L);
      luaL_setfuncs(L, getters, 0);
      lua_pushcclosure(L, class_index, 2);
    }
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

/* [-0, +0, -] The name under which the running C function is a method
** of class cls (a key of its methods table, found by value), or NULL.
** The methods table is __index itself or upvalue 1 of an __index
** function (sp_class_newx's, the transport's). */
static const char *method_name(lua_State *L, const char *cls) {
  lua_Debug ar;
  const char *name = NULL;
  int top = lua_gettop(L);
  if (!lua_getstack(L, 0, &ar) || !lua_getinfo(L, "f", &ar)) return NULL;
  if (luaL_getmetatable(L, cls) == LUA_TTABLE) {
    if (lua_getfield(L, -1, "__index") == LUA_TFUNCTION)
      lua_getupvalue(L, -1, 1);
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushnil(L);
      while (name == NULL && lua_next(L, -2)) {
        if (lua_rawequal(L, -1, top + 1) && lua_type(L, -2) == LUA_TSTRING)
          name = lua_tostring(L, -2); /* kept alive by the class */
        lua_pop(L, 1);
      }
      if (name != NULL) lua_pop(L, 1); /* the key */
    }
  }
  lua_settop(L, top);
  return name;
}

int sp_argerror(lua_State *L, int arg, const char *extramsg, const char *cls) {
  lua_Debug ar;
  const char *name;
  if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.name != NULL)
    return luaL_argerror(L, arg, extramsg); /* Lua knows how it was called */
  name = method_name(L, cls);
  if (name == NULL) return luaL_argerror(L, arg, extramsg);
  if (arg == 1)
    return luaL_error(L, "calling '%s' on bad self (%s)", name, extramsg);
  return luaL_error(L, "bad argument #%d to '%s' (%s)", arg - 1, name,
                    extramsg);
}

/* [-0, +1 or +2, m] Push "<tname> expected, got <type>" (and the __name
** it read), as luaL_typeerror words it; returns the message. */
static const char *typemsg(lua_State *L, int arg, const char *tname) {
  const char *got;
  if (luaL_getmetafield(L, arg, "__name") == LUA_TSTRING)
    got = lua_tostring(L, -1);
  else if (lua_type(L, arg) == LUA_TLIGHTUSERDATA)
    got = "light userdata";
  else
    got = luaL_typename(L, arg);
  return lua_pushfstring(L, "%s expected, got %s", tname, got);
}

int sp_typeerror(lua_State *L, int arg, const char *tname, const char *cls) {
  return sp_argerror(L, arg, typemsg(L, arg, tname), cls);
}

int sp_fnargerror(lua_State *L, int arg, const char *extramsg,
                  const char *fname) {
  lua_Debug ar;
  if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.name != NULL)
    return luaL_argerror(L, arg, extramsg); /* Lua knows how it was called */
  return luaL_error(L, "bad argument #%d to '%s' (%s)", arg, fname, extramsg);
}

int sp_fntypeerror(lua_State *L, int arg, const char *tname,
                   const char *fname) {
  return sp_fnargerror(L, arg, typemsg(L, arg, tname), fname);
}

void *sp_class_check(lua_State *L, int idx, const char *name) {
  void *p = luaL_testudata(L, idx, name);
  if (p == NULL) sp_typeerror(L, idx, name, name);
  return p;
}

/* The message handler of sp_pcall, set once by the binary before any
** state exists (failure.c's, which makes Failures: core sits below
** failure.c and must not call it). Until then errors pass unchanged. */
static lua_CFunction pcall_handler = NULL;

void sp_pcall_set_handler(lua_CFunction handler) {
  pcall_handler = handler;
}

/* The message handler used before sp_pcall_set_handler: the error as it
** is. */
static int plain_handler(lua_State *L) {
  (void)L;
  return 1;
}

int sp_pcall(lua_State *L, int nargs, int nresults) {
  return sp_pcall_with(L, nargs, nresults,
                       pcall_handler ? pcall_handler : plain_handler);
}

int sp_pcall_with(lua_State *L, int nargs, int nresults,
                  lua_CFunction handler) {
  int base = lua_gettop(L) - nargs;
  int status;
  lua_pushcfunction(L, handler);
  lua_insert(L, base);
  status = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  return status;
}

int sp_run_protected(lua_State *L, lua_CFunction fn, void *p) {
  int top = lua_gettop(L), status;
  /* sp_pcall's handler pushed first rather than rotated in: this runs
  ** for every libuv callback of a stream. */
  lua_pushcfunction(L, pcall_handler ? pcall_handler : plain_handler);
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, p);
  status = lua_pcall(L, 1, 0, top + 1);
  if (status != LUA_OK) sp_log_failure(L, -1, "Unhandled Error");
  lua_settop(L, top);
  return status;
}

/* Trampoline of sp_callmethod: (obj, name, args...) -> found, result. */
static int method_tramp(lua_State *L) {
  int n = lua_gettop(L);
  lua_pushvalue(L, 2);
  if (lua_gettable(L, 1) == LUA_TNIL) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_replace(L, 2);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 1);
  lua_replace(L, 2);
  lua_replace(L, 1); /* fn, obj, args... */
  lua_call(L, n - 1, 1);
  lua_pushboolean(L, 1);
  lua_insert(L, -2);
  return 2;
}

int sp_callmethod(lua_State *L, int objidx, const char *name, int nargs) {
  int found;
  objidx = lua_absindex(L, objidx);
  lua_pushcfunction(L, method_tramp);
  lua_pushvalue(L, objidx);
  lua_pushstring(L, name);
  lua_rotate(L, -nargs - 3, 3);
  if (sp_pcall(L, nargs + 2, 2) != LUA_OK) {
    sp_log_failure(L, -1, "Unhandled Error");
    return SP_CALL_ERROR;
  }
  found = lua_toboolean(L, -2);
  lua_remove(L, -2);
  return found ? SP_CALL_OK : SP_CALL_MISSING;
}

void sp_log_failure(lua_State *L, int idx, const char *why) {
  int top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "spindle.log");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
    lua_getfield(L, -1, "err");
    lua_pushvalue(L, idx);
    if (why != NULL)
      lua_pushstring(L, why);
    else
      lua_pushnil(L);
    if (lua_pcall(L, 2, 0, 0) == LUA_OK) {
      lua_pop(L, 1);
      return;
    }
  }
  /* Logging itself failed (out of memory, most often): say both things
  ** on stderr without allocating (no luaL_tolstring, which may raise
  ** where nothing protects us), raise nothing. */
  fprintf(stderr, "spindle: logging failed (%s) while logging: %s %s\n",
          lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?",
          why ? why : "",
          lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx)
                                          : luaL_typename(L, idx));
  lua_settop(L, top);
}

void sp_log_msg(lua_State *L, const char *text) {
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 4)) return;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "spindle.log");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK &&
      lua_getfield(L, -1, "msg") == LUA_TFUNCTION) {
    lua_pushstring(L, text);
    lua_pcall(L, 1, 0, 0);
  }
  lua_settop(L, top);
}

/* Is idx a function or a value whose metatable has __call? */
static int iscallable(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TFUNCTION) return 1;
  if (luaL_getmetafield(L, idx, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

void sp_checkcallable(lua_State *L, int idx) {
  if (!iscallable(L, idx)) luaL_typeerror(L, idx, "callable");
}

void sp_fncheckcallable(lua_State *L, int idx, const char *fname) {
  if (!iscallable(L, idx)) sp_fntypeerror(L, idx, "callable", fname);
}

/* Edit distance between a and b, ignoring case, capped at 8. */
static int name_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b), i, j;
  int row[64], prev, tmp;
  if (la >= 63 || lb >= 63) return 8;
  for (j = 0; j <= lb; j++) row[j] = (int)j;
  for (i = 1; i <= la; i++) {
    prev = row[0];
    row[0] = (int)i;
    for (j = 1; j <= lb; j++) {
      int cost =
          tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
      int best = prev + cost;
      if (row[j] + 1 < best) best = row[j] + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      tmp = row[j];
      row[j] = best;
      prev = tmp;
    }
  }
  return row[lb] > 8 ? 8 : row[lb];
}

/* __index of a strict module: upvalue 1 is the module's name, upvalue 2 a
** table of getters for dynamic fields (reactor.running). */
static int strict_index(lua_State *L) {
  const char *key, *best = NULL;
  int bestd = 8;
  if (lua_type(L, 2) == LUA_TSTRING &&
      lua_getfield(L, lua_upvalueindex(2), lua_tostring(L, 2)) != LUA_TNIL) {
    lua_call(L, 0, 1);
    return 1;
  }
  if (lua_type(L, 2) != LUA_TSTRING)
    return luaL_error(L, "%s has no field '%s'",
                      lua_tostring(L, lua_upvalueindex(1)),
                      luaL_tolstring(L, 2, NULL));
  key = lua_tostring(L, 2);
  lua_pushnil(L);
  while (lua_next(L, 1) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      int d = name_distance(key, lua_tostring(L, -2));
      if (d < bestd) {
        bestd = d;
        best = lua_tostring(L, -2);
      }
    }
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  while (lua_next(L, lua_upvalueindex(2)) != 0) {
    int d = name_distance(key, lua_tostring(L, -2));
    if (d < bestd) {
      bestd = d;
      best = lua_tostring(L, -2);
    }
    lua_pop(L, 1);
  }
  if (best != NULL && (bestd <= 2 || (size_t)bestd * 3 <= strlen(key)))
    return luaL_error(L, "%s has no field '%s' (did you mean '%s'?)",
                      lua_tostring(L, lua_upvalueindex(1)), key, best);
  return luaL_error(L, "%s has no field '%s'",
                    lua_tostring(L, lua_upvalueindex(1)), key);
}

/* __newindex of a strict module: dynamic (getter) fields are read-only;
** other fields are set as usual, so users may still add their own. */
static int strict_newindex(lua_State *L) {
  if (lua_type(L, 2) == LUA_TSTRING &&
      lua_getfield(L, lua_upvalueindex(2), lua_tostring(L, 2)) != LUA_TNIL)
    return luaL_error(L, "%s.%s is read-only",
                      lua_tostring(L, lua_upvalueindex(1)), lua_tostring(L, 2));
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 0;
}

void sp_registry_weak(lua_State *L, const void *key, const char *mode) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, mode);
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

void sp_strict(lua_State *L, int idx, const char *name) {
  idx = lua_absindex(L, idx);
  if (!lua_getmetatable(L, idx)) lua_newtable(L);
  lua_pushstring(L, name);
  if (lua_getfield(L, -2, "__getters") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, strict_newindex, 2);
  lua_setfield(L, -4, "__newindex");
  lua_pushcclosure(L, strict_index, 2);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, idx);
}

/* spindle._core.strict(name, t [, getters]) -> t
** Make module table t strict (see sp_strict); getters maps field names to
** functions called for dynamic read-only fields. */
static int core_strict(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    if (!lua_getmetatable(L, 2)) lua_newtable(L);
    lua_pushvalue(L, 3);
    lua_setfield(L, -2, "__getters");
    lua_setmetatable(L, 2);
  }
  sp_strict(L, 2, name);
  lua_settop(L, 2);
  return 1;
}

int sp_factory_buildProtocol(lua_State *L) {
  if (lua_getfield(L, 1, "protocol") == LUA_TNIL)
    return luaL_error(L,
                      "Factory.buildProtocol: factory has no 'protocol' set");
  lua_call(L, 0, 1);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "factory");
  return 1;
}

static const luaL_Reg core_funcs[] = {
    {"strict", core_strict},
    {"buildProtocol", sp_factory_buildProtocol},
    {NULL, NULL}};

int luaopen_spindle__core(lua_State *L) {
  luaL_newlib(L, core_funcs);
  return 1;
}

/* The Lua file compiled into the binary for module `name`, or NULL. */
static const sp_luafile *luafile_find(const char *name) {
  const sp_luafile *f;
  for (f = sp_luafiles; f->name != NULL; f++)
    if (strcmp(f->name, name) == 0) return f;
  return NULL;
}

/* Searcher for modules compiled into the binary; SPINDLE_LUA_PATH (a
** package.path-style template) is tried first so that developers can edit
** lua/ without rebuilding (for names under "spindle.", so that a module
** new in lua/ loads before it is compiled in). For any other name it
** returns nothing, so a failed require lists the
** same places `lua` lists (a Lua 5.4 searcher that returns no string adds
** no line to the message). */
static int embedded_searcher(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *devpath = getenv("SPINDLE_LUA_PATH");
  const sp_luafile *f = luafile_find(name);
  if (f == NULL && strncmp(name, "spindle.", 8) != 0) return 0;
  if (devpath != NULL && *devpath != '\0') {
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_pushvalue(L, 1);
    lua_pushstring(L, devpath);
    lua_call(L, 2, 1);
    if (lua_isstring(L, -1)) {
      const char *path = lua_tostring(L, -1);
      if (luaL_loadfile(L, path) != LUA_OK)
        return luaL_error(L, "error loading module '%s' from '%s':\n\t%s", name,
                          path, lua_tostring(L, -1));
      lua_pushstring(L, path);
      return 2;
    }
    lua_settop(L, 1);
  }
  if (f == NULL) return 0;
  if (luaL_loadbuffer(L, f->source, f->size, f->chunk) != LUA_OK)
    return luaL_error(L, "error loading embedded module '%s':\n\t%s", name,
                      lua_tostring(L, -1));
  lua_pushstring(L, f->chunk + 1);
  return 2;
}

void sp_openlibs(lua_State *L, const luaL_Reg *cmodules) {
  const luaL_Reg *m;
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (m = cmodules; m->name != NULL; m++) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 1);
  sp_add_searcher(L, embedded_searcher);
}

void sp_add_searcher(lua_State *L, lua_CFunction searcher) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchers");
  lua_pushcfunction(L, searcher);
  for (int i = (int)luaL_len(L, -2); i >= 2; i--) {
    lua_geti(L, -2, i);
    lua_seti(L, -3, i + 1);
  }
  lua_seti(L, -2, 2);
  lua_pop(L, 2);
}
