/*
** stdio.c: spindle._stdio, the mechanism under spindle.stdio.StandardIO:
** a stream.c transport over one of this process's standard descriptors,
** whatever it is, without ever blocking the loop. Follows
** twisted.internet._posixstdio.StandardIO.
**
**   a terminal   SP_STREAM_TTY (uv_tty_init reopens it, so its
**                non-blocking mode is ours alone)
**   a pipe or    SP_STREAM_PIPE (uv_pipe_open); the descriptor's flags
**   a socket     are put back when the transport closes, since the
**                non-blocking mode is shared with whoever else holds it
**   a file       (or a character device: libuv cannot poll those) a
**                relay thread copies between it and a pipe whose other
**                end is the SP_STREAM_PIPE transport: blocking read()s of
**                the file for standard input, blocking write()s for
**                output. The transport's close joins the thread, after
**                the output relay has written everything to the file.
**
** Lifetime: the relay record is the stream's owner (stream.h); the
** stream's lost hook, run once after connectionLost, joins the thread,
** restores the flags and frees the record.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <lauxlib.h>

#include "core.h"
#include "stream.h"

typedef struct relay {
  uv_thread_t thread;
  int has_thread;
  int from, to;   /* the thread copies from -> to, then closes ours */
  int ours;       /* which of from/to the thread closes (its pipe end) */
  int fd, oflags; /* put fd's flags back to oflags; fd -1: nothing */
} relay;

#define RELAY_BUF (64 * 1024)

/* The relay thread: copy until EOF or an error on either side (the loop
** closing its pipe end gives EPIPE or EOF), then close the thread's pipe
** end so the other side sees EOF. SIGPIPE is ignored process-wide. */
static void relay_run(void *arg) {
  relay *r = arg;
  char *buf = malloc(RELAY_BUF);
  ssize_t n;
  if (buf != NULL) {
    while ((n = read(r->from, buf, RELAY_BUF)) != 0) {
      ssize_t off = 0;
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      while (off < n) {
        ssize_t w = write(r->to, buf + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += w;
      }
      if (off < n) break;
    }
    free(buf);
  }
  close(r->ours);
}

/* The stream's lost hook: after connectionLost. */
static void relay_lost(sp_stream *s, lua_State *L) {
  relay *r = sp_stream_owner(s);
  (void)L;
  sp_stream_set_owner(s, NULL, NULL);
  if (r == NULL) return;
  if (r->has_thread) uv_thread_join(&r->thread);
  if (r->fd >= 0) fcntl(r->fd, F_SETFL, r->oflags);
  free(r);
}

/* Start a relay thread between fd and a new pipe; *ours gets the loop's
** end. Returns 0 or a libuv error (nothing left acquired then). */
static int relay_start(relay *r, int fd, int reading, int *ours) {
  int p[2], e;
  if (pipe2(p, O_CLOEXEC) < 0) return uv_translate_sys_error(errno);
  if (reading) { /* file -> p[1]; the loop reads p[0] */
    r->from = fd;
    r->to = r->ours = p[1];
    *ours = p[0];
  } else { /* the loop writes p[1]; p[0] -> file */
    r->from = r->ours = p[0];
    r->to = fd;
    *ours = p[1];
  }
  e = uv_thread_create(&r->thread, relay_run, r);
  if (e < 0) {
    close(p[0]);
    close(p[1]);
    return e;
  }
  r->has_thread = 1;
  return 0;
}

/* _stdio.open(fd, reading) -> transport, kind
** A transport over descriptor fd (0 for reading, 1 for writing, or any
** other), open and not yet reading (give it a protocol with attach). kind
** is "tty", "pipe" or "file" (a relay thread, see above). Raises
** reactor.ConnectionLost-free plain errors naming the libuv reason when
** fd is closed or of a kind libuv cannot use. Loop thread only. */
static int stdio_open(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1), reading = lua_toboolean(L, 2);
  uv_handle_type t = uv_guess_handle(fd);
  relay *r;
  sp_stream *s = NULL;
  int err = 0, sfd = fd, kind = SP_STREAM_PIPE;
  const char *kname = "pipe";
  if (t == UV_UNKNOWN_HANDLE)
    return luaL_error(L, "StandardIO: descriptor %d is not open or not usable",
                      fd);
  r = calloc(1, sizeof *r);
  if (r == NULL) return luaL_error(L, "not enough memory");
  r->fd = -1;
  if (t == UV_TTY) {
    kind = SP_STREAM_TTY;
    kname = "tty";
  } else if (t == UV_FILE) {
    kname = "file";
    err = relay_start(r, fd, reading, &sfd);
  } else {
    r->fd = fd;
    r->oflags = fcntl(fd, F_GETFL);
  }
  if (err == 0) {
    s = sp_stream_open_fd(sfd, kind, &err);
    if (s == NULL && r->has_thread) close(sfd); /* the thread then ends */
  }
  if (err < 0) {
    if (r->has_thread) uv_thread_join(&r->thread);
    free(r);
    return luaL_error(L, "StandardIO: descriptor %d: %s (%s)", fd,
                      uv_strerror(err), uv_err_name(err));
  }
  sp_stream_set_owner(s, r, relay_lost);
  sp_stream_open(L, s);
  lua_pushstring(L, kname);
  return 2;
}

/* _stdio.attach(transport, protocol): give the transport its protocol
** (protocol:makeConnection(transport)) and start reading. */
static int stdio_attach(lua_State *L) {
  sp_stream *s = sp_stream_check(L, 1);
  lua_settop(L, 2);
  if (s != NULL) sp_stream_connect_protocol(L, s);
  return 0;
}

static const luaL_Reg stdio_funcs[] = {
    {"open", stdio_open}, {"attach", stdio_attach}, {NULL, NULL}};

int luaopen_spindle__stdio(lua_State *L) {
  luaL_newlib(L, stdio_funcs);
  return 1;
}
