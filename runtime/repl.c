/*
** repl.c: the interactive prompt, running on the reactor. Lines come in
** without blocking the loop: from a terminal through libedit's callback
** interface, fed one character at a time by a uv_poll on standard input;
** from a pipe by the same poll; from a file by reads in idle turns.
** lua/spindle/repl.lua decides what a line does (compile, run in a
** coroutine so `await(d)` works at top level, print); this file moves
** the bytes and owns the terminal. History lives in ~/.spindle_history.
**
** The reactor runs for the whole session: reactor.stop(), Ctrl-D or
** SIGTERM ends it; Ctrl-C clears the line, or stops waiting for an entry
** that awaits a Deferred.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <editline/readline.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "core.h"
#include "loop.h"
#include "repl.h"
#include "ssl.h"
#include "stream.h"

#define PROMPT "> "
#define PROMPT_MORE ">> "

static struct {
  lua_State *L;
  int tty;             /* standard input is a terminal: libedit */
  int eof;             /* no more input */
  int waiting;         /* an entry awaits a Deferred: input is held */
  int done;            /* the session has ended */
  int prompting;       /* a prompt and the line being typed are on screen */
  int typed;           /* a key was read since the prompt was drawn */
  uv_poll_t *poll;     /* standard input, if pollable (tty, pipe) */
  uv_idle_t *idle;     /* reads of a regular file, one chunk a turn */
  uv_timer_t *starter; /* shows the first prompt once the reactor runs */
  char buf[4096];      /* pipe/file input not yet split into lines */
  size_t len;
  int skipping; /* dropping the rest of a line longer than buf */
  char history[4096];
} repl;

static const char repl_key = 'R';      /* registry: the spindle.repl module */
static const char *attach_path = NULL; /* spindle --attach PATH */

/* The last key libedit read from the terminal, and lines handed over. */
static int last_key = -1;
static unsigned long lines_taken = 0;

static void input_start(void);
static void tty_line(char *line);
static void input_stop(void);
static void session_end(void);

static void handle_free(uv_handle_t *h) {
  free(h);
}

enum { R_ERROR, R_READY, R_MORE, R_WAITING, R_RESUME, R_CLEAR, R_IGNORE };

/* [-0, +0, -] Call repl.<fname>([arg[, resume]]) and classify the string
** it returns. An error in it is logged, never raised. */
static int repl_call(const char *fname, const char *arg) {
  static const char *const names[] = {"?",      "ready", "more",   "waiting",
                                      "resume", "clear", "ignore", NULL};
  lua_State *L = repl.L;
  int nargs = 0, r = R_ERROR;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &repl_key);
  lua_getfield(L, -1, fname);
  lua_remove(L, -2);
  if (arg != NULL) {
    lua_pushstring(L, arg);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &repl); /* the resume function */
    nargs = 2;
  }
  if (sp_pcall(L, nargs, 1) != LUA_OK) {
    sp_log_failure(L, -1, "spindle REPL:");
  } else if (lua_type(L, -1) == LUA_TSTRING) {
    for (int i = 1; names[i] != NULL; i++)
      if (strcmp(lua_tostring(L, -1), names[i]) == 0) r = i;
  }
  lua_pop(L, 1);
  return r;
}

/* After each line: hold input while an entry waits, change the prompt
** for an unfinished statement. */
static void line_done(int status) {
  if (sp_loop_stopping()) { /* reactor.stop() was typed */
    repl.done = 1;
    input_stop();
    return;
  }
  if (status == R_WAITING) {
    repl.waiting = 1;
    input_stop();
    return;
  }
  if (repl.tty && !repl.done) {
    /* Reinstalling puts libedit back in raw mode with a fresh prompt. */
    rl_callback_handler_remove();
    repl.typed = 0;
    rl_callback_handler_install(status == R_MORE ? PROMPT_MORE : PROMPT,
                                tty_line);
    repl.prompting = 1;
  }
}

/* libedit's line handler: line is malloc'd, NULL at end of input. */
static void tty_line(char *line) {
  repl.prompting = 0;
  lines_taken++;
  if (line == NULL) {
    int status;
    fputc('\n', stdout);
    status = repl_call("eof", "");
    if (status == R_READY || status == R_WAITING) { /* .editor's Ctrl-D */
      line_done(status);
      return;
    }
    repl.eof = 1;
    session_end();
    return;
  }
  if (line[0] != '\0') add_history(line);
  line_done(repl_call("line", line));
  free(line);
}

/* Split buffered pipe/file input into lines and run them, stopping when
** an entry starts waiting. */
static void buffer_lines(void) {
  char *nl;
  if (repl.skipping) { /* the tail of a line too long: up to its newline */
    nl = memchr(repl.buf, '\n', repl.len);
    if (nl == NULL) {
      repl.len = 0;
    } else {
      repl.skipping = 0;
      repl.len -= (size_t)(nl + 1 - repl.buf);
      memmove(repl.buf, nl + 1, repl.len);
    }
  }
  while (!repl.waiting && !repl.done &&
         (nl = memchr(repl.buf, '\n', repl.len)) != NULL) {
    size_t n = (size_t)(nl - repl.buf);
    *nl = '\0';
    line_done(repl_call("line", repl.buf));
    memmove(repl.buf, nl + 1, repl.len - n - 1);
    repl.len -= n + 1;
  }
  if (repl.eof && !repl.waiting && !repl.done) {
    if (repl.len > 0 && repl.len < sizeof repl.buf) {
      repl.buf[repl.len] = '\0';
      repl.len = 0;
      line_done(repl_call("line", repl.buf));
      if (repl.waiting) return;
    }
    session_end();
  }
}

/* Read what standard input has (a pipe or a file) into the buffer. */
static void buffer_read(void) {
  ssize_t n;
  if (repl.len == sizeof repl.buf) { /* a line longer than the buffer */
    fprintf(stderr, "spindle: input line too long (over %zu bytes)\n",
            sizeof repl.buf);
    repl.len = 0;
    repl.skipping = 1;
  }
  n = read(0, repl.buf + repl.len, sizeof repl.buf - repl.len);
  if (n > 0) {
    repl.len += (size_t)n;
  } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
    repl.eof = 1;
    input_stop();
  }
  buffer_lines();
}

/* libedit's reads from the terminal (rl_getc_function): one byte, waiting
** for it (the terminal is blocking), retried after a signal. */
static int tty_getc(FILE *f) {
  unsigned char c;
  ssize_t n;
  do {
    n = read(fileno(f), &c, 1);
  } while (n < 0 && errno == EINTR);
  last_key = n == 1 ? c : -1;
  return n == 1 ? c : EOF;
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  (void)h;
  (void)events;
  if (status < 0) {
    repl.eof = 1;
    input_stop();
    buffer_lines();
    return;
  }
  if (repl.tty) {
    unsigned long taken = lines_taken;
    last_key = -1;
    repl.typed = 1;
    rl_callback_read_char();
    /* Enter that ends a Ctrl-R search is pushed back by libedit and
    ** would wait for the next key: take it now. */
    if ((last_key == '\r' || last_key == '\n') && lines_taken == taken &&
        repl.prompting)
      rl_callback_read_char();
  } else {
    buffer_read();
  }
}

static void idle_cb(uv_idle_t *h) {
  (void)h;
  buffer_read();
}

static void input_start(void) {
  if (repl.done || repl.eof) return;
  repl.typed = 0;
  if (repl.tty) rl_callback_handler_install(PROMPT, tty_line);
  repl.prompting = repl.tty;
  if (repl.poll != NULL) uv_poll_start(repl.poll, UV_READABLE, poll_cb);
  if (repl.idle != NULL) uv_idle_start(repl.idle, idle_cb);
}

static void input_stop(void) {
  repl.prompting = 0;
  if (repl.tty) rl_callback_handler_remove();
  if (repl.poll != NULL) uv_poll_stop(repl.poll);
  if (repl.idle != NULL) uv_idle_stop(repl.idle);
}

/* [-0, +0, e] require("spindle.reactor").stop(), for session_end. */
static int reactor_stop(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "spindle.reactor");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "stop");
  lua_call(L, 0, 0);
  return 0;
}

/* End of input: let go of standard input and stop the reactor. Runs in
** input callbacks, so the Lua it calls is protected. */
static void session_end(void) {
  lua_State *L = repl.L;
  if (repl.done) return;
  repl.done = 1;
  input_stop();
  if (repl.tty && !repl.eof) fputc('\n', stdout);
  fflush(stdout);
  if (sp_loop_running()) {
    lua_pushcfunction(L, reactor_stop);
    if (sp_pcall(L, 0, 0) != LUA_OK) lua_pop(L, 1);
  }
}

/* resume(): called by repl.lua when a waiting entry has finished. */
static int repl_resume(lua_State *L) {
  (void)L;
  if (!repl.waiting) return 0;
  repl.waiting = 0;
  if (repl.tty) {
    input_start();
  } else {
    buffer_lines();
    if (!repl.waiting) input_start();
  }
  return 0;
}

/* SIGINT while the REPL runs: stop waiting, or clear the line. What the
** Lua side writes meanwhile (the hint on an empty line) goes after the
** "^C" the terminal echoed, not over a cleared and redrawn prompt. */
static int repl_interrupt(lua_State *L) {
  int status, prompting = repl.prompting;
  (void)L;
  if (repl.done) return 0;
  repl.prompting = 0;
  /* libedit keeps the last line in rl_line_buffer until a key is read. */
  status = repl_call("interrupt", repl.tty && repl.typed ? rl_line_buffer : "");
  repl.prompting = prompting;
  if (status == R_RESUME) {
    repl_resume(repl.L);
  } else if (status != R_IGNORE && repl.tty) {
    fputc('\n', stdout);
    rl_callback_handler_remove();
    repl.typed = 0;
    rl_callback_handler_install(PROMPT, tty_line);
  }
  return 1;
}

/* libedit completion: candidates come from repl.complete(word). */
static int completion_end = 0; /* where the word ends in rl_line_buffer */

static char *repl_generator(const char *text, int state) {
  lua_State *L = repl.L;
  char *r = NULL;
  if (state == 0) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &repl_key);
    lua_getfield(L, -1, "complete");
    lua_remove(L, -2);
    lua_pushstring(L, text);
    lua_pushlstring(L, rl_line_buffer, (size_t)completion_end);
    if (sp_pcall(L, 2, 1) != LUA_OK) {
      lua_pop(L, 1);
      lua_newtable(L);
    }
    lua_setfield(L, LUA_REGISTRYINDEX, "spindle.repl.completions");
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "spindle.repl.completions");
  if (lua_rawgeti(L, -1, state + 1) == LUA_TSTRING)
    r = strdup(lua_tostring(L, -1));
  lua_pop(L, 2);
  return r;
}

static char **repl_completion(const char *text, int start, int end) {
  (void)start;
  completion_end = end;
  return rl_completion_matches(text, repl_generator);
}

static char word_breaks[] = " \t\n\"\\'`@$><=;|&{}()[],+-*/%^#~";

/* Set up standard input for the session; returns 0 if it cannot be
** read at all. */
static int input_open(void) {
  uv_loop_t *loop = sp_loop();
  repl.tty = isatty(0);
  repl.poll = malloc(sizeof *repl.poll);
  if (repl.poll != NULL && uv_poll_init(loop, repl.poll, 0) != 0) {
    free(repl.poll);
    repl.poll = NULL;
  }
  if (repl.poll != NULL && repl.tty) {
    /* uv_poll_init made the terminal non-blocking, but libedit's own
    ** nested reads (Ctrl-R's incremental search, the rest of an escape
    ** sequence) must wait for the next key, not take EAGAIN for the end
    ** of input. The poll still says when a key is there. */
    int fl = fcntl(0, F_GETFL);
    if (fl != -1) fcntl(0, F_SETFL, fl & ~O_NONBLOCK);
  }
  if (repl.poll == NULL && !repl.tty) {
    repl.idle = malloc(sizeof *repl.idle);
    if (repl.idle == NULL) return 0;
    uv_idle_init(loop, repl.idle);
  }
  if (repl.poll == NULL && repl.idle == NULL) return 0;
  if (repl.tty) {
    const char *home = getenv("HOME");
    rl_catch_signals = 0;
    rl_readline_name = "spindle";
    rl_attempted_completion_function = repl_completion;
    rl_completer_word_break_characters = word_breaks;
    rl_getc_function = tty_getc;
    /* libedit splits words on the basic set, not the completer's. */
    rl_basic_word_break_characters = word_breaks;
    rl_completion_append_character = '\0';
    using_history();
    if (home != NULL) {
      snprintf(repl.history, sizeof repl.history, "%s/.spindle_history", home);
      read_history(repl.history);
    }
  }
  return 1;
}

static void input_close(void) {
  input_stop();
  if (repl.starter != NULL) uv_close((uv_handle_t *)repl.starter, handle_free);
  repl.starter = NULL;
  if (repl.poll != NULL) uv_close((uv_handle_t *)repl.poll, handle_free);
  if (repl.idle != NULL) uv_close((uv_handle_t *)repl.idle, handle_free);
  repl.poll = NULL;
  repl.idle = NULL;
  if (repl.tty && repl.history[0] != '\0') write_history(repl.history);
}

/* [-0, +0, e] Load spindle.repl, keep it in the registry, bind the
** resume callback and set the global `await`. */
static int repl_load(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "spindle.repl");
  lua_call(L, 1, 1);
  if (attach_path != NULL) { /* entries go to the process at the path */
    lua_getfield(L, -1, "client");
    lua_pushstring(L, attach_path);
    lua_call(L, 1, 1);
    lua_remove(L, -2);
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &repl_key);
  lua_pushcfunction(L, repl_resume);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &repl);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "spindle.defer");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "await");
  lua_setglobal(L, "await");
  lua_pop(L, 1);
  if (isatty(0)) { /* print from timers redraws the prompt after */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "spindle.repl");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "wrapPrint");
    lua_call(L, 0, 0);
    lua_pop(L, 1);
  }
  return 0;
}

/* The first turn of the reactor: its SIGINT handler is in place now, so
** a Ctrl-C typed at the first prompt reaches the REPL instead of killing
** the process (before, the prompt showed before reactor.run() began). */
static void starter_cb(uv_timer_t *t) {
  uv_close((uv_handle_t *)t, handle_free);
  repl.starter = NULL;
  input_start();
}

/* Start input on the reactor's first turn, or now if no timer can be had
** (a Ctrl-C before the reactor runs then ends the process, as before). */
static void input_start_later(void) {
  repl.starter = malloc(sizeof *repl.starter);
  if (repl.starter == NULL) {
    input_start();
    return;
  }
  uv_timer_init(sp_loop(), repl.starter);
  sp_timer_start(repl.starter, starter_cb, 0);
}

void sp_repl_attach(const char *path) {
  attach_path = path;
}

void sp_repl_run(lua_State *L, sp_repl_docall docall) {
  int status;
  memset(&repl, 0, sizeof repl);
  repl.L = L;
  lua_pushcfunction(L, repl_load);
  status = docall(L, 0, 0);
  if (status == LUA_OK && !input_open()) {
    fprintf(stderr, "spindle: cannot read standard input\n");
    return;
  }
  if (status != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return;
  }
  sp_loop_set_interrupt_hook(repl_interrupt);
  input_start_later();
  while (!repl.done) {
    /* reactor.run() until the session ends: a reactor.stop() typed at the
    ** prompt ends it too. */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "spindle.reactor");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "run");
    lua_remove(L, -2);
    status = docall(L, 0, 0);
    if (status != LUA_OK) {
      fprintf(stderr, "%s\n", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    repl.done = 1;
  }
  sp_loop_set_interrupt_hook(NULL);
  input_close();
  fflush(stdout);
}

/* _repl.umask(mask) -> old mask: umask(2), so that repl.listen makes its
** socket file 0600 from the start (no moment where others may connect).
** Main thread; the process's mask is shared by every thread. */
static int repl_umask(lua_State *L) {
  mode_t mask = (mode_t)luaL_checkinteger(L, 1);
  lua_pushinteger(L, (lua_Integer)umask(mask & 0777));
  return 1;
}

/* The reply _repl.request reads at most: the completions of one word. */
#define REQUEST_MAX (128 * 1024)

/* One connection of _repl.request: a blocking socket with 2 s timeouts
** on each read and write, and over TLS its SSL. */
typedef struct {
  int fd;
  SSL *ssl;
  char why[256]; /* what failed, for the caller */
} request_conn;

static void request_timeouts(int fd) {
  struct timeval tv = {2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* Connect c->fd to the Unix socket at path; 0 or -1 (c->why says). */
static int request_unix(request_conn *c, const char *path) {
  struct sockaddr_un sa;
  if (strlen(path) >= sizeof sa.sun_path) {
    snprintf(c->why, sizeof c->why, "path too long");
    return -1;
  }
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path));
  c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd >= 0) request_timeouts(c->fd);
  if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    snprintf(c->why, sizeof c->why, "%s", strerror(errno));
    return -1;
  }
  return 0;
}

/* Connect c->fd to host:port over TCP, trying each address; 0 or -1. */
static int request_tcp(request_conn *c, const char *host, const char *port) {
  struct addrinfo hints, *res = NULL, *ai;
  int rc;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    snprintf(c->why, sizeof c->why, "%s", gai_strerror(rc));
    return -1;
  }
  for (ai = res; ai != NULL; ai = ai->ai_next) {
    c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
    if (c->fd < 0) continue;
    request_timeouts(c->fd);
    if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    snprintf(c->why, sizeof c->why, "%s", strerror(errno));
    close(c->fd);
    c->fd = -1;
  }
  freeaddrinfo(res);
  return c->fd >= 0 ? 0 : -1;
}

/* Say in c->why what OpenSSL's error queue says (or what), emptying it. */
static void request_sslwhy(request_conn *c, const char *what) {
  unsigned long e = ERR_get_error();
  if (e != 0)
    ERR_error_string_n(e, c->why, sizeof c->why);
  else
    snprintf(c->why, sizeof c->why, "%s", what);
  ERR_clear_error();
}

/* TLS over c->fd as a client with ctx, verifying the server's name
** against hostname (as tls.c does for a client); 0 or -1. Runs no Lua:
** no sp_ssl_app is attached, so a verify callback keeps OpenSSL's
** verdict. */
static int request_tls(request_conn *c, SSL_CTX *ctx, const char *hostname) {
  unsigned char ip[16];
  ERR_clear_error();
  c->ssl = SSL_new(ctx);
  if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd)) {
    request_sslwhy(c, "cannot make a TLS connection");
    return -1;
  }
  if (hostname != NULL) {
    if (uv_inet_pton(AF_INET, hostname, ip) == 0 ||
        uv_inet_pton(AF_INET6, hostname, ip) == 0) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), hostname);
    } else {
      SSL_set_tlsext_host_name(c->ssl, hostname);
      SSL_set1_host(c->ssl, hostname);
    }
  }
  if (SSL_connect(c->ssl) != 1) {
    request_sslwhy(c, "TLS handshake failed");
    return -1;
  }
  return 0;
}

static ssize_t request_write(request_conn *c, const char *p, size_t n) {
  if (c->ssl == NULL) return write(c->fd, p, n);
  ERR_clear_error();
  return SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
}

static ssize_t request_read(request_conn *c, char *p, size_t n) {
  if (c->ssl == NULL) return read(c->fd, p, n);
  ERR_clear_error();
  return SSL_read(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
}

/* The one release of what request_unix/tcp/tls acquired. */
static void request_close(request_conn *c) {
  if (c->ssl != NULL) {
    SSL_shutdown(c->ssl);
    SSL_free(c->ssl);
    ERR_clear_error();
  }
  if (c->fd >= 0) close(c->fd);
}

/* Does buf hold a whole C frame ("C<len>:<payload>"), after any others
** (the session's S frame comes first)? */
static int request_answered(const char *buf, size_t len) {
  size_t at = 0;
  while (at < len) {
    char kind = buf[at];
    size_t i = at + 1, n = 0;
    while (i < len && buf[i] >= '0' && buf[i] <= '9' && n < REQUEST_MAX)
      n = n * 10 + (size_t)(buf[i++] - '0');
    if (i >= len || buf[i] != ':' || len - i - 1 < n) return 0;
    if (kind == 'C') return 1;
    at = i + 1 + n;
  }
  return 0;
}

/* _repl.request(where, bytes) -> reply or nil, message: connect to where,
** send bytes, and read until the server's C frame is whole, the server
** closes, or a read or write waits 2 seconds. where is a Unix socket
** path, or {host = H, port = P, context = ssl Context, hostname = name
** to verify} for a REPL served over TLS (repl.listen's ssl: form): the
** same certificates as the session's own connection. Blocks the calling
** thread: only for the attach client's completion, which libedit asks
** for synchronously. A reply longer than 128 KiB is cut there. */
static int repl_request(lua_State *L) {
  size_t len, off = 0, got = 0;
  const char *path = NULL, *host = NULL, *hostname = NULL;
  const char *data = luaL_checklstring(L, 2, &len);
  char port[16], *buf;
  SSL_CTX *ctx = NULL;
  request_conn c;
  ssize_t n;
  int ok;
  if (lua_type(L, 1) == LUA_TTABLE) {
    lua_getfield(L, 1, "host");
    lua_getfield(L, 1, "port");
    lua_getfield(L, 1, "hostname");
    lua_getfield(L, 1, "context");
    host = luaL_checkstring(L, 3);
    snprintf(port, sizeof port, "%lld", (long long)luaL_checkinteger(L, 4));
    hostname = luaL_optstring(L, 5, NULL);
    ctx = sp_ssl_tocontext(L, 6);
    luaL_argcheck(L, ctx != NULL, 1, "context must be an ssl Context");
  } else {
    path = luaL_checkstring(L, 1);
  }
  /* The reply's memory before the connection: nothing to leak. */
  buf = lua_newuserdatauv(L, REQUEST_MAX, 0);
  memset(&c, 0, sizeof c);
  c.fd = -1;
  ok = (path != NULL ? request_unix(&c, path) : request_tcp(&c, host, port)) ==
           0 &&
       (ctx == NULL || request_tls(&c, ctx, hostname) == 0);
  while (ok && off < len) {
    n = request_write(&c, data + off, len - off);
    if (n <= 0) {
      snprintf(c.why, sizeof c.why, "cannot send the request");
      ok = 0;
    } else {
      off += (size_t)n;
    }
  }
  while (ok && got < REQUEST_MAX && !request_answered(buf, got) &&
         (n = request_read(&c, buf + got, REQUEST_MAX - got)) > 0)
    got += (size_t)n;
  request_close(&c);
  if (!ok) {
    lua_pushnil(L);
    lua_pushstring(L, c.why);
    return 2;
  }
  lua_pushlstring(L, buf, got);
  return 1;
}

/* _repl.output(f, ...) -> f's results: call f(...), which writes to the
** terminal (print from a timer, say). While a prompt is on screen, its
** line is cleared first and drawn again after, with what was typed, so
** output never lands in the middle of the line being edited
** (libedit's rl_forced_update_display). Errors propagate. */
static int repl_output(lua_State *L) {
  int prompting = repl.prompting, n;
  luaL_checkany(L, 1);
  if (prompting) {
    fputs("\r\033[K", stdout);
    fflush(stdout);
  }
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  n = lua_gettop(L);
  if (prompting && repl.prompting) {
    fflush(stdout);
    rl_forced_update_display();
  }
  return n;
}

/* An attached session's entry is watched while it runs: a count hook on
** its coroutine looks at the session's socket every WATCH_COUNT VM
** instructions (a poll(2) with no wait: well under 1% of the time of
** the Lua code it interrupts) and raises "interrupted!" there when the
** client has hung up, or, on a plain Unix socket, when an interrupt
** frame ("I0:", the client's Ctrl-C) waits unread (seen with MSG_PEEK,
** so the loop still reads it later). Over TLS only the hang-up can be
** seen: the bytes are encrypted. Which socket is kept in the
** coroutine's extra space (LUA_EXTRASPACE, unused elsewhere), so a
** suspended entry needs no table and a dead one leaves nothing behind.
** The hook is the coroutine's own: loop.c's Ctrl-C and watchdog hooks
** go on the thread the reactor resumes; if one of them replaces this
** one while the entry runs, the entry is no longer watched. */
#define WATCH_COUNT 100000

/* Does the peer at fd ask to stop the entry (hang-up, or on a plain
** socket an unread interrupt frame)? */
static int watch_asks(int fd, int tls) {
  struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
  char buf[4096];
  ssize_t n;
  if (poll(&p, 1, 0) <= 0) return 0;
  if (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)) return 1;
  if (tls || !(p.revents & POLLIN)) return 0;
  n = recv(fd, buf, sizeof buf - 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return 1;
  if (n < 0) return 0;
  buf[n] = '\0';
  return memmem(buf, (size_t)n, "I0:", 3) != NULL;
}

static void watch_hook(lua_State *L, lua_Debug *ar) {
  intptr_t w;
  (void)ar;
  memcpy(&w, lua_getextraspace(L), sizeof w);
  if (w <= 0 || !watch_asks((int)((w - 1) >> 1), (int)((w - 1) & 1))) return;
  lua_pushliteral(L, "interrupted!");
  lua_error(L);
}

/* _repl.watch(transport, tls): watch the running coroutine (an attached
** session's entry, from inside it) as said above: transport is the
** session's; tls says its bytes are encrypted (only a hang-up counts).
** A closed transport is not watched. Loop thread. */
static int repl_watch(lua_State *L) {
  sp_stream *s = sp_stream_check(L, 1);
  uv_os_fd_t fd;
  intptr_t w;
  if (s == NULL || sp_stream_fileno(s, &fd) != 0 || fd < 0) return 0;
  w = ((intptr_t)fd << 1 | (lua_toboolean(L, 2) ? 1 : 0)) + 1;
  memcpy(lua_getextraspace(L), &w, sizeof w);
  lua_sethook(L, watch_hook, LUA_MASKCOUNT, WATCH_COUNT);
  return 0;
}

static const luaL_Reg repl_funcs[] = {{"umask", repl_umask},
                                      {"watch", repl_watch},
                                      {"request", repl_request},
                                      {"output", repl_output},
                                      {NULL, NULL}};

/* spindle._repl: the C half of spindle.repl's attach support. */
int luaopen_spindle__repl(lua_State *L) {
  luaL_newlib(L, repl_funcs);
  return 1;
}
