/*
** repl.c: the interactive prompt, on libedit's readline interface, as
** lua.c's: expressions print their values, unfinished statements continue
** on the next line, history is kept in ~/.spindle_history.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <editline/readline.h>

#include "core.h"
#include "repl.h"

#define EOFMARK "<eof>"
#define EOFMARK_LEN (sizeof(EOFMARK) - 1)

static char history_path[4096];

/* [-0, +1, m] Read one line with the prompt; 0 at end of input. */
static int repl_readline(lua_State *L, int firstline) {
  const char *prompt = firstline ? "> " : ">> ";
  char *line = readline(prompt);
  size_t len;
  if (line == NULL) return 0;
  len = strlen(line);
  lua_pushlstring(L, line, len);
  free(line);
  return 1;
}

/* Is the status a syntax error at end of input (an unfinished chunk)? */
static int repl_incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    if (lmsg >= EOFMARK_LEN &&
        strcmp(msg + lmsg - EOFMARK_LEN, EOFMARK) == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

/* [-1, +1, m] Try the line as "return <line>". */
static int repl_addreturn(lua_State *L) {
  const char *line = lua_tostring(L, -1);
  const char *retline = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
  if (status == LUA_OK) {
    lua_remove(L, -2);
    if (line[0] != '\0') add_history(line);
  } else {
    lua_pop(L, 2);
  }
  return status;
}

/* [-1, +1, m] Keep reading lines while the chunk is incomplete. */
static int repl_multiline(lua_State *L) {
  for (;;) {
    size_t len;
    const char *line = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, line, len, "=stdin");
    if (!repl_incomplete(L, status) || !repl_readline(L, 0)) {
      if (line[0] != '\0') add_history(line);
      return status;
    }
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

/* [-0, +1, m] Read and compile one statement; -1 at end of input. */
static int repl_loadline(lua_State *L) {
  int status;
  lua_settop(L, 0);
  if (!repl_readline(L, 1)) return -1;
  if ((status = repl_addreturn(L)) != LUA_OK) status = repl_multiline(L);
  lua_remove(L, 1);
  return status;
}

static void repl_print(lua_State *L) {
  int n = lua_gettop(L);
  if (n > 0) {
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    lua_getglobal(L, "print");
    lua_insert(L, 1);
    if (lua_pcall(L, n, 0, 0) != LUA_OK)
      fprintf(stderr, "error calling 'print' (%s)\n", lua_tostring(L, -1));
  }
}

void sp_repl_run(lua_State *L) {
  int status;
  const char *home = getenv("HOME");
  if (home != NULL) {
    snprintf(history_path, sizeof history_path, "%s/.spindle_history", home);
    read_history(history_path);
  }
  while ((status = repl_loadline(L)) != -1) {
    if (status == LUA_OK) status = sp_main_docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK) {
      repl_print(L);
    } else {
      fprintf(stderr, "%s\n", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  lua_settop(L, 0);
  fputc('\n', stdout);
  fflush(stdout);
  if (home != NULL) write_history(history_path);
}
