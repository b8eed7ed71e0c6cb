/*
** main.c: the spindle binary. Its command line is the standalone `lua`
** command's (lua.c): spindle [options] [script [args]], with -e, -l, -i,
** -v, -E, -W, - and --, and the same `arg` table, so tools written for
** `lua` (busted --lua) run under it. The spindle modules are preloaded;
** their Lua parts are compiled into the binary.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <uv.h>

#include "core.h"
#include "failure.h"
#include "repl.h"

#define SPINDLE_VERSION "0.1.0"

static const char *progname = "spindle";

static void print_usage(const char *badoption) {
  if (badoption[1] == 'e' || badoption[1] == 'l')
    fprintf(stderr, "%s: '%s' needs argument\n", progname, badoption);
  else
    fprintf(stderr, "%s: unrecognized option '%s'\n", progname, badoption);
  fprintf(stderr,
          "usage: %s [options] [script [args]]\n"
          "Available options are:\n"
          "  -e stat   execute string 'stat'\n"
          "  -i        enter interactive mode after executing 'script'\n"
          "  -l mod    require library 'mod' into global 'mod'\n"
          "  -l g=mod  require library 'mod' into global 'g'\n"
          "  -v        show version information\n"
          "  -E        ignore environment variables\n"
          "  -W        turn warnings on\n"
          "  --        stop handling options\n"
          "  -         stop handling options and execute stdin\n",
          progname);
}

static void print_version(void) {
  printf("spindle %s (%s, libuv %s, %s)\n", SPINDLE_VERSION, LUA_RELEASE,
         uv_version_string(), OpenSSL_version(OPENSSL_VERSION));
}

/* Print an error message (no traceback is added here: the message
** handler already put one in). */
static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "%s: %s\n", progname, msg ? msg : "(error)");
    fflush(stderr);
    lua_pop(L, 1);
  }
  return status;
}

/* Message handler for the script and -e chunks: a Failure prints as its
** getTraceback(), anything else as lua.c does. */
static int msghandler(lua_State *L) {
  if (sp_failure_is(L, 1)) {
    lua_getfield(L, 1, "getTraceback");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    return 1;
  }
  if (lua_type(L, 1) != LUA_TSTRING) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      ;
    else
      lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  } else {
    lua_pushvalue(L, 1);
  }
  luaL_traceback(L, L, lua_tostring(L, -1), 1);
  return 1;
}

int sp_main_docall(lua_State *L, int narg, int nres) {
  return sp_pcall_with(L, narg, nres, msghandler);
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = sp_main_docall(L, 0, 0);
  return report(L, status);
}

static int dostring(lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* -l [g=]mod: require mod and store it in global g (or mod). */
static int dolibrary(lua_State *L, char *spec) {
  int status;
  char *eq = strchr(spec, '=');
  const char *global = spec, *mod = spec;
  if (eq != NULL) {
    *eq = '\0';
    mod = eq + 1;
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, mod);
  status = sp_main_docall(L, 1, 1);
  if (status == LUA_OK) lua_setglobal(L, global);
  return report(L, status);
}

/* The `arg` table: script at 0, its arguments at 1.., the interpreter and
** options at negative indices, as lua.c does. */
static void create_argtable(lua_State *L, char **argv, int argc, int script) {
  int i, narg;
  if (script == argc) script = 0;
  narg = argc - (script + 1);
  lua_createtable(L, narg, script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int push_args(lua_State *L) {
  int i, n;
  if (lua_getglobal(L, "arg") != LUA_TTABLE)
    luaL_error(L, "'arg' is not a table");
  n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -i);
  return n;
}

static int handle_script(lua_State *L, char **argv) {
  int status;
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL;
  status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = push_args(L);
    status = sp_main_docall(L, n, LUA_MULTRET);
  }
  return report(L, status);
}

#define has_error 1
#define has_i 2
#define has_v 4
#define has_e 8
#define has_E 16

/* Scan options; returns flags and sets *first to the script's index (or
** argc, or -1 on error: *first is then the bad option's index). */
static int collect_args(char **argv, int *first) {
  int args = 0, i;
  if (argv[0] == NULL) {
    *first = 0;
    return 0;
  }
  for (i = 1; argv[i] != NULL; i++) {
    *first = i;
    if (argv[i][0] != '-') return args;
    switch (argv[i][1]) {
      case '-':
        if (argv[i][2] != '\0') return has_error;
        *first = i + 1;
        return args;
      case '\0':
        return args;
      case 'E':
        if (argv[i][2] != '\0') return has_error;
        args |= has_E;
        break;
      case 'W':
        if (argv[i][2] != '\0') return has_error;
        break;
      case 'i':
        args |= has_i; /* -i implies -v */
        /* fall through */
      case 'v':
        if (argv[i][2] != '\0') return has_error;
        args |= has_v;
        break;
      case 'e':
        args |= has_e;
        /* fall through */
      case 'l':
        if (argv[i][2] == '\0') {
          i++;
          if (argv[i] == NULL || argv[i][0] == '-') return has_error;
        }
        break;
      default:
        return has_error;
    }
  }
  *first = i;
  return args;
}

/* Run -e, -l and -W in order. */
static int run_args(lua_State *L, char **argv, int n) {
  int i;
  for (i = 1; i < n; i++) {
    int option = argv[i][1];
    switch (option) {
      case 'e':
      case 'l': {
        int status;
        char *extra = argv[i] + 2;
        if (*extra == '\0') extra = argv[++i];
        status = option == 'e' ? dostring(L, extra, "=(command line)")
                               : dolibrary(L, extra);
        if (status != LUA_OK) return 0;
        break;
      }
      case 'W':
        lua_warning(L, "@on", 0);
        break;
    }
  }
  return 1;
}

static int handle_luainit(lua_State *L) {
  const char *name = "=LUA_INIT_5_4";
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=LUA_INIT";
    init = getenv(name + 1);
  }
  if (init == NULL) return LUA_OK;
  if (init[0] == '@') return dochunk(L, luaL_loadfile(L, init + 1));
  return dostring(L, init, name);
}

struct pmain_args {
  int argc;
  char **argv;
  int ok;
};

static int pmain(lua_State *L) {
  struct pmain_args *a = lua_touserdata(L, 1);
  int argc = a->argc, script;
  char **argv = a->argv;
  int args = collect_args(argv, &script);
  luaL_checkversion(L);
  if (argv[0] && argv[0][0]) progname = argv[0];
  if (args == has_error) {
    print_usage(argv[script]);
    return 0;
  }
  if (args & has_v) print_version();
  if (args & has_E) {
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
    unsetenv("SPINDLE_LUA_PATH");
  }
  sp_openlibs(L);
  create_argtable(L, argv, argc, script);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (!(args & has_E) && handle_luainit(L) != LUA_OK) return 0;
  if (!run_args(L, argv, script)) return 0;
  if (script < argc && handle_script(L, argv + script) != LUA_OK) return 0;
  if (args & has_i) {
    sp_repl_run(L);
  } else if (script == argc && !(args & (has_e | has_v))) {
    if (isatty(0)) {
      print_version();
      sp_repl_run(L);
    } else {
      dochunk(L, luaL_loadfile(L, NULL));
    }
  }
  a->ok = 1;
  return 0;
}

int main(int argc, char **argv) {
  struct pmain_args a = {argc, argv, 0};
  int status;
  lua_State *L;
  /* A peer that vanishes mid-write must give connectionLost, not kill us. */
  signal(SIGPIPE, SIG_IGN);
  L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create state: not enough memory\n", argv[0]);
    return EXIT_FAILURE;
  }
  sp_mainstate = L;
  lua_pushcfunction(L, pmain);
  lua_pushlightuserdata(L, &a);
  status = lua_pcall(L, 1, 0, 0);
  report(L, status);
  sp_shutdown(L);
  lua_close(L);
  return (a.ok && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
