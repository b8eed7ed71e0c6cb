/*
** main.c: the spindle binary. Its command line is the standalone `lua`
** command's (lua.c): spindle [options] [script [args]], with -e, -l, -i,
** -v, -E, -W, - and --, and the same `arg` table, so tools written for
** `lua` (busted --lua) run under it. The spindle modules are preloaded;
** their Lua parts are compiled into the binary.
*/
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <uv.h>

#include "alloc.h"
#include "core.h"
#include "embed.h"
#include "failure.h"
#include "repl.h"
#include "supervisor.h"

#define SPINDLE_VERSION "0.1.0"

static const char *progname = "spindle";

/* The option list, for --help (on stdout) and after a bad option (on
** stderr); doc/spindle.1 says the same at length. */
static void print_options(FILE *out) {
  fprintf(out,
          "usage: %s [options] [script [args]]\n"
          "Available options are:\n"
          "  -e stat   execute string 'stat'\n"
          "  -i        enter interactive mode after executing 'script'\n"
          "  -l mod    require library 'mod' into global 'mod'\n"
          "  -l g=mod  require library 'mod' into global 'g'\n"
          "  -v        show version information\n"
          "  -E        ignore environment variables\n"
          "  -W        turn warnings on\n"
          "  --workers N|auto  run N copies of script under a supervisor\n"
          "            (SIGHUP reloads them, SIGTERM/SIGINT drains them)\n"
          "  --drain S seconds SIGTERM/SIGINT waits for open connections\n"
          "            (default 10); these two come before the script\n"
          "  --attach PATH        a REPL inside the running program that\n"
          "                       listens at PATH (reactor.listenREPL)\n"
          "  --attach tls:host=H:port=P:certificate=C:privateKey=K:\n"
          "           trustRoots=CA  the same over TLS, with a client\n"
          "                       certificate (the server's checked on CA)\n"
          "  --stall-warning S    log a warning with a traceback when one\n"
          "                       callback keeps the reactor busy > S s\n"
          "  --help    show this help and exit\n"
          "  --version show version information and exit\n"
          "  --        stop handling options\n"
          "  -         stop handling options and execute stdin\n"
          "Environment: LUA_INIT_5_4, LUA_INIT, LUA_PATH, LUA_CPATH,\n"
          "  SPINDLE_LUA_PATH (load spindle's Lua modules from a tree),\n"
          "  SPINDLE_REPL=rich (the rich REPL on any standard input).\n"
          "See spindle(1).\n",
          progname);
}

static void print_usage(const char *badoption) {
  if (strcmp(badoption, "--stall-warning") == 0)
    fprintf(stderr, "%s: '%s' needs a number of seconds (> 0)\n", progname,
            badoption);
  else if (badoption[1] == 'e' || badoption[1] == 'l' ||
           strcmp(badoption, "--attach") == 0)
    fprintf(stderr, "%s: '%s' needs argument\n", progname, badoption);
  else
    fprintf(stderr, "%s: unrecognized option '%s'\n", progname, badoption);
  print_options(stderr);
}

/* One line a tool can parse: spindle's version, the libraries it runs
** on, then Lua's own banner (LUA_COPYRIGHT), which scripts written for
** `lua -v` look for at the end of the line. */
static void print_version(void) {
  printf("spindle %s (libuv %s, %s) %s\n", SPINDLE_VERSION, uv_version_string(),
         OpenSSL_version(OPENSSL_VERSION), LUA_COPYRIGHT);
  fflush(stdout);
}

/* Print msg on stderr, after "progname: " unless progname is NULL (the
** line-mode REPL prints errors bare, as lua.c's l_message). */
static void message(const char *msg) {
  if (progname != NULL) fprintf(stderr, "%s: ", progname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

/* Print an error message (no traceback is added here: the message
** handler already put one in). */
static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    message(msg ? msg : "(error)");
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

/* SIGINT while a chunk runs outside the reactor: as lua.c's laction, set
** a hook that raises "interrupted!" in the running code (lua_sethook is
** safe in a signal handler), and let a second SIGINT kill the process.
** While the reactor runs, loop.c's own handler is in front (it stops the
** reactor first) and puts this one back when run() returns. */
static lua_State *volatile interrupt_L = NULL;

static void interrupt_lstop(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

static void interrupt_action(int signum) {
  int mask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  signal(signum, SIG_DFL);
  if (interrupt_L != NULL) lua_sethook(interrupt_L, interrupt_lstop, mask, 1);
}

/* Install handler for SIGINT with sigaction; the previous action goes to
** *old when old is not NULL. */
static void set_sigint(void (*handler)(int), struct sigaction *old) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, old);
}

/* Protected call with main.c's message handler (a traceback string), with
** SIGINT raising "interrupted!" in the chunk as `lua` does, even when the
** shell started us with SIGINT ignored. lua.c's docall; the REPL gets
** it as its docall. */
static int docall(lua_State *L, int narg, int nres) {
  struct sigaction old;
  lua_State *prevL = interrupt_L;
  int status;
  interrupt_L = L;
  set_sigint(interrupt_action, &old);
  status = sp_pcall_with(L, narg, nres, msghandler);
  sigaction(SIGINT, &old, NULL);
  interrupt_L = prevL;
  return status;
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = docall(L, 0, 0);
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
  status = docall(L, 1, 1);
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
    status = docall(L, n, LUA_MULTRET);
  }
  return report(L, status);
}

/* The line-mode REPL: `-i` when standard input is not a terminal reads
** it as lua.c's doREPL does (no line editing, no reactor), so programs
** that drive `lua -i` through a pipe get the same output: _PROMPT and
** _PROMPT2 (default "> " and ">> "), "=expr" as "return expr" on a first
** line, continuation of unfinished statements, each line echoed after
** its prompt, results printed through the global print. A terminal gets
** the rich REPL (repl.c). */
#define LINE_MAX_INPUT 512
#define EOFMARK "<eof>"

/* [-0, +1, m] Push the prompt: tostring(_PROMPT or _PROMPT2) or the
** default. */
static const char *line_prompt(lua_State *L, int firstline) {
  if (lua_getglobal(L, firstline ? "_PROMPT" : "_PROMPT2") == LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushstring(L, firstline ? "> " : ">> ");
    return lua_tostring(L, -1);
  }
  luaL_tolstring(L, -1, NULL);
  lua_remove(L, -2);
  return lua_tostring(L, -1);
}

/* Is status a syntax error that ends at <eof> (an unfinished statement)?
** Pops the message if so. */
static int line_incomplete(lua_State *L, int status) {
  size_t len;
  const char *msg;
  if (status != LUA_ERRSYNTAX) return 0;
  msg = lua_tolstring(L, -1, &len);
  if (len < sizeof EOFMARK - 1 ||
      strcmp(msg + len - (sizeof EOFMARK - 1), EOFMARK) != 0)
    return 0;
  lua_pop(L, 1);
  return 1;
}

/* [-0, +(0|1), m] Prompt, read a line from stdin and push it (without its
** newline; "=x" on a first line becomes "return x"). A line of any length
** is read whole, as readline does. Returns 0 at end of input, with nothing
** pushed. */
static int line_push(lua_State *L, int firstline) {
  char chunk[LINE_MAX_INPUT];
  luaL_Buffer b;
  const char *line;
  size_t len;
  int got = 0;
  fputs(line_prompt(L, firstline), stdout);
  fflush(stdout);
  lua_pop(L, 1);
  luaL_buffinit(L, &b);
  while (fgets(chunk, sizeof chunk, stdin) != NULL) {
    size_t n = strlen(chunk);
    got = 1;
    if (n > 0 && chunk[n - 1] == '\n') {
      luaL_addlstring(&b, chunk, n - 1);
      break;
    }
    luaL_addlstring(&b, chunk, n);
  }
  luaL_pushresult(&b);
  if (!got) {
    lua_pop(L, 1);
    return 0;
  }
  line = lua_tolstring(L, -1, &len);
  /* Echo the line, as readline does for input that is not a terminal:
  ** Debian's lua5.4 (built with readline) does, and Lua's own tests of
  ** `lua -i` expect the echo. */
  fwrite(line, 1, len, stdout);
  fputc('\n', stdout);
  if (firstline && line[0] == '=') {
    lua_pushfstring(L, "return %s", line + 1);
    lua_remove(L, -2);
  }
  return 1;
}

/* [-1, +(1|2), m] Compile the line on top as "return <line>;": on success
** replace it with the chunk, else leave the line alone. */
static int line_addreturn(lua_State *L) {
  const char *line = lua_tostring(L, -1);
  const char *ret = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, ret, strlen(ret), "=stdin");
  if (status == LUA_OK)
    lua_remove(L, -2);
  else
    lua_pop(L, 2);
  return status;
}

/* [-0, +1, m] With the line at index 1, read continuation lines until the
** statement is complete; leaves the chunk or the error message on top. */
static int line_multiline(lua_State *L) {
  for (;;) {
    size_t len;
    const char *line = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, line, len, "=stdin");
    if (!line_incomplete(L, status) || !line_push(L, 0)) return status;
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

/* Read one statement: -1 at end of input, else the load status with the
** chunk (or error message) alone on the stack. */
static int line_load(lua_State *L) {
  int status;
  lua_settop(L, 0);
  if (!line_push(L, 1)) return -1;
  if ((status = line_addreturn(L)) != LUA_OK) status = line_multiline(L);
  lua_remove(L, 1);
  return status;
}

/* Print the values on the stack through the global print, as lua.c's
** l_print: a broken print is reported, never fatal. */
static void line_print(lua_State *L) {
  int n = lua_gettop(L);
  if (n == 0) return;
  luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
  lua_getglobal(L, "print");
  lua_insert(L, 1);
  if (lua_pcall(L, n, 0, 0) != LUA_OK)
    message(
        lua_pushfstring(L, "error calling 'print' (%s)", lua_tostring(L, -1)));
}

/* lua.c's doREPL over standard input that is not a terminal. */
static void line_repl(lua_State *L) {
  const char *oldprogname = progname;
  int status;
  progname = NULL;
  while ((status = line_load(L)) != -1) {
    if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK)
      line_print(L);
    else
      report(L, status);
  }
  lua_settop(L, 0);
  fputs("\n", stdout);
  fflush(stdout);
  progname = oldprogname;
}

#define has_error 1
#define has_i 2
#define has_v 4
#define has_e 8
#define has_E 16
#define has_help 32
#define has_version 64

static const char *attach_path = NULL; /* --attach PATH */
static double stall_warning = 0;       /* --stall-warning S */

/* --attach PATH, --stall-warning S: 1 if argv[*i] is one of them (its
** value taken, *i moved past it), 0 if not, -1 if its value is bad. */
static int collect_long(char **argv, int *i) {
  char *end;
  int attach = strcmp(argv[*i], "--attach") == 0;
  if (!attach && strcmp(argv[*i], "--stall-warning") != 0) return 0;
  if (argv[*i + 1] == NULL) return -1;
  (*i)++;
  if (attach) {
    attach_path = argv[*i];
    return 1;
  }
  stall_warning = strtod(argv[*i], &end);
  if (*end != '\0' || !(stall_warning > 0)) {
    (*i)--;
    return -1;
  }
  return 1;
}

/* The rich REPL (repl.c) for a terminal, or whatever standard input is
** when SPINDLE_REPL=rich (for programs and tests that drive it through a
** pipe); lua.c's line mode otherwise. */
static int want_rich_repl(int args) {
  const char *env = (args & has_E) ? NULL : getenv("SPINDLE_REPL");
  return isatty(0) || (env != NULL && strcmp(env, "rich") == 0);
}

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
        switch (collect_long(argv, &i)) {
          case 1:
            continue;
          case -1:
            return has_error;
        }
        if (strcmp(argv[i], "--help") == 0) return args | has_help;
        if (strcmp(argv[i], "--version") == 0) return args | has_version;
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
    if (strcmp(argv[i], "--attach") == 0 ||
        strcmp(argv[i], "--stall-warning") == 0) {
      i++; /* its value is not an option ("tls:..." is no -l) */
      continue;
    }
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

/* --workers N|auto and --drain SECONDS, among the options before the
** script (in either form, "--workers 2" or "--workers=2"): parse them and
** take them out of argv, so the rest is lua.c's command line. Returns 0
** after printing a message when one is bad. */
static int take_option(int *argc, char **argv, int i, const char *name,
                       const char **value) {
  size_t len = strlen(name);
  int n = 1;
  if (strncmp(argv[i], name, len) != 0) return 0;
  if (argv[i][len] == '=') {
    *value = argv[i] + len + 1;
  } else if (argv[i][len] == '\0' && argv[i + 1] != NULL) {
    *value = argv[i + 1];
    n = 2;
  } else {
    *value = NULL;
    return 1;
  }
  memmove(argv + i, argv + i + n, (size_t)(*argc - i - n + 1) * sizeof *argv);
  *argc -= n;
  return 1;
}

static int production_options(int *argc, char **argv, int *workers) {
  const char *v;
  char *end;
  int i = 1;
  while (argv[i] != NULL && argv[i][0] == '-' && argv[i][1] != '\0' &&
         strcmp(argv[i], "--") != 0) {
    if (take_option(argc, argv, i, "--workers", &v)) {
      long n = v == NULL ? 0 : strtol(v, &end, 10);
      if (v != NULL && strcmp(v, "auto") == 0)
        n = (long)uv_available_parallelism();
      else if (v == NULL || *end != '\0' || n < 1 || n > 1024)
        n = 0;
      if (n == 0) {
        fprintf(stderr,
                "%s: --workers needs a number (1..1024) or 'auto'%s%s%s\n",
                progname, v ? ", not '" : "", v ? v : "", v ? "'" : "");
        return 0;
      }
      *workers = (int)n;
    } else if (take_option(argc, argv, i, "--drain", &v)) {
      double d = v == NULL ? -1 : strtod(v, &end);
      if (v == NULL || *end != '\0' || !(d >= 0 && d <= 1e6)) {
        fprintf(stderr, "%s: --drain needs a number of seconds%s%s%s\n",
                progname, v ? ", not '" : "", v ? v : "", v ? "'" : "");
        return 0;
      }
      sp_supervisor_set_drain(d);
    } else {
      if ((argv[i][1] == 'e' || argv[i][1] == 'l') && argv[i][2] == '\0' &&
          argv[i + 1] != NULL)
        i++;
      i++;
    }
  }
  if (*workers > 0 && (argv[i] == NULL || strcmp(argv[i], "-") == 0)) {
    fprintf(stderr, "%s: --workers needs a script file\n", progname);
    return 0;
  }
  return 1;
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
  if (args & (has_help | has_version)) {
    if (args & has_help)
      print_options(stdout);
    else
      print_version();
    a->ok = 1;
    return 0;
  }
  if (args & has_v) print_version();
  if (args & has_E) {
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
    unsetenv("SPINDLE_LUA_PATH");
  }
  sp_openlibs(L, sp_cmodules);
  create_argtable(L, argv, argc, script);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (!(args & has_E) && handle_luainit(L) != LUA_OK) return 0;
  if (stall_warning > 0) {
    char stat[80];
    snprintf(stat, sizeof stat,
             "require('spindle.reactor').setStallWarning(%.17g)",
             stall_warning);
    if (dostring(L, stat, "=(--stall-warning)") != LUA_OK) return 0;
  }
  if (!run_args(L, argv, script)) return 0;
  if (attach_path != NULL) { /* spindle --attach PATH: the client only */
    sp_repl_attach(attach_path);
    sp_repl_run(L, docall);
    /* repl.lua's client marks a connection that never came up. */
    a->ok =
        lua_getfield(L, LUA_REGISTRYINDEX, "spindle.attach.failed") == LUA_TNIL;
    lua_pop(L, 1);
    return 0;
  }
  if (script < argc && handle_script(L, argv + script) != LUA_OK) return 0;
  if (args & has_i) {
    if (want_rich_repl(args))
      sp_repl_run(L, docall);
    else
      line_repl(L);
  } else if (script == argc && !(args & (has_e | has_v))) {
    if (isatty(0)) {
      print_version();
      sp_repl_run(L, docall);
    } else {
      dochunk(L, luaL_loadfile(L, NULL));
    }
  }
  a->ok = 1;
  return 0;
}

/* Started with standard input, output or error closed (`<&-`, a daemon's
** habit), the first descriptors opened would take their numbers: libuv's
** epoll descriptor as 0, which it then refuses to close (it asserts
** fd > STDERR_FILENO), and a socket as 1 that print() would write into.
** So each closed one is opened on /dev/null first, as daemons and
** OpenSSH's sanitise_stdfd do. Returns 0, or -1 if /dev/null could not be
** opened. */
static int stdfds_open(void) {
  for (int fd = 0; fd <= 2; fd++) {
    int nfd;
    if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    nfd = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
    if (nfd < 0) return -1;
    if (nfd != fd) { /* not the lowest free number: cannot happen */
      dup2(nfd, fd);
      close(nfd);
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  struct pmain_args a = {argc, argv, 0};
  int status, workers = 0;
  lua_State *L;
  if (stdfds_open() != 0) return EXIT_FAILURE;
  /* A peer that vanishes mid-write must give connectionLost, not kill us. */
  signal(SIGPIPE, SIG_IGN);
  if (argv[0] != NULL && argv[0][0]) progname = argv[0];
  if (argv[0] != NULL && !production_options(&argc, argv, &workers))
    return EXIT_FAILURE;
  a.argc = argc;
  /* The supervisor runs no Lua at all. */
  if (workers > 0) return sp_supervisor_main(argc, argv, workers);
  sp_alloc_setup();
  L = sp_alloc_newstate();
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create state: not enough memory\n", argv[0]);
    return EXIT_FAILURE;
  }
  sp_mainstate = L;
  sp_pcall_set_handler(sp_errhandler);
  lua_pushcfunction(L, pmain);
  lua_pushlightuserdata(L, &a);
  status = lua_pcall(L, 1, 0, 0);
  report(L, status);
  sp_shutdown(L);
  lua_close(L);
  return (a.ok && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
