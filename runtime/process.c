/*
** process.c: spindle._process, the mechanism under reactor.spawnProcess
** (its policy, the Process transport and the ProcessProtocol calls, is
** lua/spindle/process.lua). Follows twisted.internet.process.Process and
** PTYProcess on uv_spawn.
**
** Each child descriptor the parent talks to ("r" or "w" in childFDs) is a
** socketpair, as libuv's own UV_CREATE_PIPE makes: the parent's end is a
** stream.c stream of kind SP_STREAM_PIPE, so writes, producers,
** backpressure and loseConnection are the TCP transport's, and a child
** that closes its end (or exits) shows as EOF on every pipe, stdin
** included (Twisted's ProcessWriter watches its write end for the same).
** With usePTY the child gets a pseudo-terminal (openpty) on 0, 1 and 2 and
** a session of its own (UV_PROCESS_DETACHED, setsid); the parent's master
** is one SP_STREAM_PIPE stream.
**
** Lifetime: the Lua object is a userdata box pointing at a proc in C
** memory that holds the uv_process_t. While the handle is open it holds a
** registry reference to the box, whose user value is the exit function;
** the exit callback calls it (exit code, signal) and closes the handle;
** the close callback drops the reference and frees. libuv reaps the child
** (its SIGCHLD handler), so no zombie is left. At process exit an open
** handle is closed without killing the child, as Twisted leaves children.
*/
#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "core.h"
#include "failure.h"
#include "loop.h"
#include "signals.h"
#include "stream.h"

#define PROC_MT "spindle.ProcessHandle"

/* Highest child descriptor childFDs may name, plus one. */
#define MAX_CHILD_FDS 256

typedef struct proc {
  uv_process_t h; /* h.data points back here */
  sp_live live;   /* in loop.c's registry while open */
  int ref;        /* registry ref to the box while open */
} proc;

typedef struct proc_box {
  proc *p; /* NULL once the handle is closed */
  int pid;
} proc_box;

/* ------------------------------------------------------------ handle */

static void proc_closed_cb(uv_handle_t *h) {
  proc *p = h->data;
  lua_State *L = sp_loop_state();
  sp_live_remove(&p->live);
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref);
  ((proc_box *)lua_touserdata(L, -1))->p = NULL;
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, p->ref);
  free(p);
}

static void proc_free_cb(uv_handle_t *h) {
  free(h->data);
}

/* The child ended: call the box's exit function (exit code, signal
** number or nil), protected, then close the handle. */
static void proc_exit_cb(uv_process_t *h, int64_t status, int signo) {
  proc *p = h->data;
  lua_State *L = sp_loop_state();
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref);
  lua_getiuservalue(L, -1, 1);
  lua_pushinteger(L, (lua_Integer)status);
  if (signo != 0)
    lua_pushinteger(L, signo);
  else
    lua_pushnil(L);
  if (sp_pcall(L, 2, 0) != LUA_OK) sp_log_failure(L, -1, "Unhandled Error");
  lua_settop(L, top);
  if (!uv_is_closing((uv_handle_t *)h))
    uv_close((uv_handle_t *)h, proc_closed_cb);
}

/* At exit: stop watching the child; it keeps running. */
static void proc_shutdown(lua_State *L, sp_live *n) {
  proc *p = (proc *)((char *)n - offsetof(proc, live));
  (void)L;
  if (!uv_is_closing((uv_handle_t *)&p->h))
    uv_close((uv_handle_t *)&p->h, proc_closed_cb);
}

/* ------------------------------------------------------------ spawn */

/* What spawn builds before uv_spawn: the options, and the descriptors
** and streams it acquired (released by spawn_release on every path). */
typedef struct spawn_state {
  uv_process_options_t o;
  uv_stdio_container_t stdio[MAX_CHILD_FDS];
  int child[MAX_CHILD_FDS];         /* child ends to close after spawn */
  sp_stream *stream[MAX_CHILD_FDS]; /* parent ends, by child fd */
  int nfds;
  int pty;
} spawn_state;

/* [-0, +1, m] A NULL-terminated array of the strings of the list at idx
** (argv), kept alive by the table; raises on a non-string. */
static char **check_argv(lua_State *L, int idx) {
  lua_Integer n = luaL_len(L, idx), i;
  char **v;
  luaL_argcheck(L, n < 65536, idx, "too many arguments");
  v = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  for (i = 1; i <= n; i++) {
    if (lua_rawgeti(L, idx, i) != LUA_TSTRING)
      luaL_argerror(
          L, idx,
          lua_pushfstring(L, "string expected at index %I", (LUAI_UACINT)i));
    v[i - 1] = (char *)lua_tostring(L, -1); /* anchored by the table */
    lua_pop(L, 1);
  }
  v[n] = NULL;
  return v;
}

/* [-0, +2, m] The environment array ("K=V", NULL-terminated) of the table
** at idx (nil: an empty environment, as Twisted's env=None on POSIX).
** Pushes the array's userdata and a table anchoring the strings. */
static char **check_env(lua_State *L, int idx) {
  size_t n = 0, i = 0;
  char **v;
  if (!lua_isnil(L, idx)) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
        luaL_argerror(L, idx, "string keys and string values expected");
      n++;
      lua_pop(L, 1);
    }
  }
  v = lua_newuserdatauv(L, sizeof(char *) * (n + 1), 0);
  lua_createtable(L, (int)n, 0);
  if (n > 0) {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
      v[i] = (char *)lua_tostring(L, -1);
      lua_rawseti(L, -4, (lua_Integer)++i);
      lua_pop(L, 1);
    }
  }
  v[n] = NULL;
  return v;
}

/* Whether path names a directory this process may enter (the test a
** child's chdir would pass). */
static int is_directory(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) && access(path, X_OK) == 0;
}

/* Close what spawn acquired and did not hand over: the child ends always;
** the parent streams too when `all` (spawn failed). */
static void spawn_release(spawn_state *st, int all) {
  for (int i = 0; i < st->nfds; i++) {
    if (st->child[i] >= 0 &&
        (i == 0 || st->child[i] != st->child[0] || !st->pty))
      close(st->child[i]);
    st->child[i] = -1;
    if (all && st->stream[i] != NULL) sp_stream_discard(st->stream[i]);
    if (all) st->stream[i] = NULL;
  }
}

/* A parent stream over fd (closed here on failure). Returns 0 or a libuv
** error. */
static int pipe_stream(spawn_state *st, int childfd, int fd) {
  int err = 0;
  st->stream[childfd] = sp_stream_open_fd(fd, SP_STREAM_PIPE, &err);
  if (st->stream[childfd] == NULL) close(fd);
  return err;
}

/* One socketpair for child descriptor i: returns 0 or a libuv error. */
static int make_pipe(spawn_state *st, int i) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    return uv_translate_sys_error(errno);
  st->child[i] = sv[1];
  st->stdio[i].flags = UV_INHERIT_FD;
  st->stdio[i].data.fd = sv[1];
  return pipe_stream(st, i, sv[0]);
}

/* A pseudo-terminal on the child's 0, 1 and 2; the master is stream 1
** (Twisted's PTYProcess reads it as child fd 1). */
static int make_pty(spawn_state *st) {
  int m, s;
  if (openpty(&m, &s, NULL, NULL, NULL) < 0)
    return uv_translate_sys_error(errno);
  fcntl(m, F_SETFD, FD_CLOEXEC);
  fcntl(s, F_SETFD, FD_CLOEXEC);
  st->pty = 1;
  st->nfds = 3;
  for (int i = 0; i < 3; i++) {
    st->child[i] = s;
    st->stdio[i].flags = UV_INHERIT_FD;
    st->stdio[i].data.fd = s;
  }
  return pipe_stream(st, 1, m);
}

/* Fill st->stdio from the childFDs table at idx ({[fd] = "r" | "w" |
** parent fd}). Raises on a bad entry before acquiring anything; returns 0
** or a libuv error (what was acquired is in st, for spawn_release). */
static int check_fds(lua_State *L, int idx, spawn_state *st, int acquire) {
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_Integer fd = lua_isinteger(L, -2) ? lua_tointeger(L, -2) : -1;
    int r = 0;
    if (fd < 0 || fd >= MAX_CHILD_FDS)
      luaL_argerror(L, idx, "child descriptors are integers 0..255");
    if (fd >= st->nfds) st->nfds = (int)fd + 1;
    if (lua_isinteger(L, -1)) {
      st->stdio[fd].flags = UV_INHERIT_FD;
      st->stdio[fd].data.fd = (int)lua_tointeger(L, -1);
    } else if (lua_type(L, -1) == LUA_TSTRING &&
               (strcmp(lua_tostring(L, -1), "r") == 0 ||
                strcmp(lua_tostring(L, -1), "w") == 0)) {
      if (acquire) r = make_pipe(st, (int)fd);
    } else {
      luaL_argerror(L, idx, "childFDs values are \"r\", \"w\" or a descriptor");
    }
    lua_pop(L, 1);
    if (r < 0) {
      lua_pop(L, 1);
      return r;
    }
  }
  return 0;
}

static void spawn_init(spawn_state *st) {
  memset(&st->o, 0, sizeof st->o);
  for (int i = 0; i < MAX_CHILD_FDS; i++) {
    st->stdio[i].flags = UV_IGNORE;
    st->child[i] = -1;
    st->stream[i] = NULL;
  }
  st->nfds = 0;
  st->pty = 0;
}

/* [-0, +1, m] The box of a spawned child, its handle registered. */
static proc *proc_push(lua_State *L, spawn_state *st, int onexit) {
  proc_box *b = lua_newuserdatauv(L, sizeof *b, 1);
  proc *p;
  b->p = NULL;
  b->pid = 0;
  luaL_setmetatable(L, PROC_MT);
  lua_pushvalue(L, onexit);
  lua_setiuservalue(L, -2, 1);
  p = calloc(1, sizeof *p);
  if (p == NULL) luaL_error(L, "not enough memory");
  p->ref = LUA_NOREF;
  p->h.data = p;
  st->o.exit_cb = proc_exit_cb;
  b->p = p;
  return p;
}

/* _process.spawn(file, argv, env, cwd, uid, gid, usePTY, childFDs, onexit)
**   -> handle, pid, pipes   or   nil, code, message
** Start `file` (searched in the child's PATH, as execvp; argv[1] is the
** child's argv[0]) with the environment env (a table; nil: empty), in
** folder cwd (nil: ours), as uid/gid (nil: ours), on a pty or with the
** descriptors of childFDs ({[childfd] = "r" | "w" | parent fd}; fds not
** named are closed, 0-2 on /dev/null). pipes maps each child fd the
** parent talks to ("r", "w"; with a pty: 1) to its transport, open and
** not yet reading (give it a protocol with _process.attach). onexit(code,
** signal) runs on the loop thread when the child ends. A failure to start
** (no such file, permission) returns nil, the libuv error name and its
** message; bad arguments raise. uv_spawn; twisted Process.__init__. */
static int process_spawn(lua_State *L) {
  const char *file = luaL_checkstring(L, 1);
  spawn_state *st;
  proc *p;
  int r, spawned = 0;
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 8, LUA_TTABLE);
  sp_checkcallable(L, 9);
  lua_settop(L, 9);
  st = lua_newuserdatauv(L, sizeof *st, 0); /* 10: scratch */
  spawn_init(st);
  st->o.file = file;
  st->o.args = check_argv(L, 2); /* 11 */
  st->o.env = check_env(L, 3);   /* 12, 13 */
  st->o.cwd = lua_isnil(L, 4) ? NULL : luaL_checkstring(L, 4);
  if (!lua_isnil(L, 5)) {
    st->o.uid = (uv_uid_t)luaL_checkinteger(L, 5);
    st->o.flags |= UV_PROCESS_SETUID;
  }
  if (!lua_isnil(L, 6)) {
    st->o.gid = (uv_gid_t)luaL_checkinteger(L, 6);
    st->o.flags |= UV_PROCESS_SETGID;
  }
  if (!lua_toboolean(L, 7)) check_fds(L, 8, st, 0); /* raises, if it must */
  p = proc_push(L, st, 9);                          /* 14 */
  if (lua_toboolean(L, 7)) {
    r = make_pty(st);
    st->o.flags |= UV_PROCESS_DETACHED;
  } else {
    r = check_fds(L, 8, st, 1);
  }
  st->o.stdio = st->stdio;
  st->o.stdio_count = st->nfds;
  if (r == 0) {
    r = uv_spawn(sp_loop(), &p->h, &st->o);
    spawned = 1;
  }
  spawn_release(st, r < 0);
  if (r < 0) {
    /* A handle uv_spawn failed on is initialized: it must be closed. */
    if (spawned)
      uv_close((uv_handle_t *)&p->h, proc_free_cb);
    else
      free(p);
    ((proc_box *)lua_touserdata(L, 14))->p = NULL;
    lua_pushnil(L);
    lua_pushstring(L, uv_err_name(r));
    if (st->o.cwd != NULL && !is_directory(st->o.cwd))
      /* The child's chdir and its exec fail alike with ENOENT: say which
      ** (the program exists; the working directory does not). */
      lua_pushfstring(L, "working directory '%s': %s", st->o.cwd,
                      uv_strerror(r));
    else
      lua_pushstring(L, uv_strerror(r));
    return 3;
  }
  ((proc_box *)lua_touserdata(L, 14))->pid = p->h.pid;
  lua_pushvalue(L, 14);
  p->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  p->live.shutdown = proc_shutdown;
  sp_live_add(&p->live);
  lua_pushinteger(L, p->h.pid);
  lua_createtable(L, 0, 3);
  for (int i = 0; i < st->nfds; i++) {
    if (st->stream[i] == NULL) continue;
    sp_stream_open(L, st->stream[i]);
    lua_rawseti(L, -2, i);
    st->stream[i] = NULL;
  }
  return 3;
}

/* _process.attach(transport, protocol): give a pipe from spawn its
** protocol and start reading (protocol:makeConnection(transport)). */
static int process_attach(lua_State *L) {
  sp_stream *s = sp_stream_check(L, 1);
  lua_settop(L, 2);
  if (s == NULL) return 0;
  sp_stream_connect_protocol(L, s);
  return 0;
}

/* _process.kill(handle, signal) -> true; false when the child has ended
** (Twisted's ProcessExitedAlready, raised by the policy); nil, message
** for an unknown name or a number the system refuses (the policy raises
** it as an argument error at the caller). signal is a number or a name
** ("TERM", "SIGTERM"). uv_process_kill; twisted Process.signalProcess. */
static int process_kill(lua_State *L) {
  proc_box *b = luaL_checkudata(L, 1, PROC_MT);
  int signo, r;
  if (lua_type(L, 2) == LUA_TSTRING) {
    signo = sp_signal_number(lua_tostring(L, 2));
    if (signo == 0) {
      lua_pushnil(L);
      lua_pushfstring(L, "unknown signal '%s'", lua_tostring(L, 2));
      return 2;
    }
  } else {
    signo = (int)luaL_checkinteger(L, 2);
  }
  if (b->p == NULL || uv_is_closing((uv_handle_t *)&b->p->h)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  r = uv_process_kill(&b->p->h, signo);
  if (r == UV_ESRCH) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (r < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "signal %d: %s (%s)", signo, uv_strerror(r),
                    uv_err_name(r));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* _process.environ() -> {NAME = value, ...}: a copy of this process's
** environment, to pass (or extend) as spawnProcess's env. uv_os_environ;
** twisted users pass os.environ. */
static int process_environ(lua_State *L) {
  uv_env_item_t *items;
  int n, r = uv_os_environ(&items, &n);
  if (r < 0) return luaL_error(L, "environ: %s", uv_strerror(r));
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, items[i].value);
    lua_setfield(L, -2, items[i].name);
  }
  uv_os_free_environ(items, n);
  return 1;
}

/* handle.pid: the child's process id (kept after it ended). */
static int proc_index(lua_State *L) {
  proc_box *b = luaL_checkudata(L, 1, PROC_MT);
  const char *k = lua_tostring(L, 2);
  if (k != NULL && strcmp(k, "pid") == 0)
    lua_pushinteger(L, b->pid);
  else
    lua_pushnil(L);
  return 1;
}

static const luaL_Reg proc_meta[] = {{"__index", proc_index}, {NULL, NULL}};

static const luaL_Reg process_funcs[] = {{"spawn", process_spawn},
                                         {"attach", process_attach},
                                         {"kill", process_kill},
                                         {"environ", process_environ},
                                         {NULL, NULL}};

int luaopen_spindle__process(lua_State *L) {
  sp_class_new(L, PROC_MT, NULL, proc_meta);
  luaL_newlib(L, process_funcs);
  return 1;
}
