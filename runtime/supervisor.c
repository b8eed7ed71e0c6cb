/*
** supervisor.c: spindle --workers N, both halves of it.
**
** The supervisor (sp_supervisor_main) is a small libuv program that runs
** no Lua: it starts N workers (this binary, running the script, with
** SPINDLE_WORKER_ID, SPINDLE_WORKER_COUNT and SPINDLE_SUPERVISOR_FD in
** their environment), restarts one that dies (with exponential backoff;
** it gives up when workers keep dying before they are ready), drains them
** all on SIGTERM/SIGINT and replaces them on SIGHUP. It prints one line
** per event on stderr. As Node's cluster and gunicorn do.
**
** Listening sockets belong to the supervisor. A worker's listenTCP,
** listenSSL or listenUNIX (tcp.c's listen hook) asks it, over a
** SOCK_SEQPACKET socketpair (the worker's fd SPINDLE_SUPERVISOR_FD), for
** a socket and gets a listening descriptor back (SCM_RIGHTS). A TCP
** address gets one SO_REUSEPORT socket per worker slot, so the kernel
** spreads connections across the workers; a Unix path one socket, which
** every worker accepts on. The supervisor keeps its copy, so the socket
** outlives the worker: a restarted worker, or the worker of the same slot
** in a reloaded generation, gets the very same socket. That is what makes
** a reload lose nothing: the old worker closes its copy while the new one
** accepts on the same socket, so no queued connection is reset (closing
** the last copy of a SO_REUSEPORT socket resets the connections queued on
** it). Sockets that no worker of the serving generation asked for are
** closed once the reload is over.
**
** A worker says "ready" (lifecycle.lua, once the reactor has started);
** a reload stops the old generation only when the whole new one is ready.
**
** The worker half is the Lua module spindle._supervisor, which
** lifecycle.lua uses: the worker's identity, the listen hook, the Ports
** registry and open-connection count that draining needs, and "ready".
*/
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <lauxlib.h>
#include <uv.h>

#include "core.h"
#include "loop.h"
#include "stream.h"
#include "supervisor.h"
#include "tcp.h"

extern char **environ;

#define PATHMAX sizeof(((struct sockaddr_un *)0)->sun_path)
#define GIVE_UP_AFTER 5    /* start-up failures in a row */
#define BACKOFF_FIRST 0.1  /* seconds before the first restart */
#define BACKOFF_MAX 10.0   /* seconds, the longest wait */
#define HEALTHY_AFTER 10.0 /* seconds alive that reset the backoff */
#define LISTEN_WAIT 10000  /* ms a worker waits for the supervisor's answer */
#define KILL_GRACE 5.0     /* seconds past the drain before SIGKILL */

/* A request from a worker (op 'L': listen; 'R': ready). Both ends are
** this binary, so the struct travels as it is. */
typedef struct sv_msg {
  int op;
  int kind; /* SP_STREAM_TCP or SP_STREAM_UNIX */
  int backlog, mode;
  struct sockaddr_storage addr;
  char path[PATHMAX];
} sv_msg;

static double drain_period = 10.0;

/* Make the listening socket fd take no new connection while those in its
** accept queue stay acceptable: a socket filter that drops every packet
** drops new SYNs (the peer retries its SYN a second later and, the socket
** closed by then, is refused), while connections already queued are
** sockets of their own, untouched. Closing a listening socket resets the
** connections in its queue; draining with this first, then accepting what
** is queued, then closing, resets none. Returns 0 or -1 (errno). */
static int refuse_new(int fd) {
  struct sock_filter drop = BPF_STMT(BPF_RET | BPF_K, 0);
  struct sock_fprog prog = {1, &drop};
  return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
}

void sp_supervisor_set_drain(double seconds) {
  drain_period = seconds;
}

/* ------------------------------------------------------ supervisor */

typedef struct worker worker;
struct worker {
  uv_process_t proc;
  uv_poll_t poll;
  worker *next;
  int chan; /* our end of the socketpair, -1 once closed */
  int slot, gen, pid;
  int ready, stopping, exited;
  int open; /* handles not yet closed; freed at 0 */
  double started, ready_at;
};

typedef struct held held;
struct held {
  held *next;
  int slot; /* TCP: the worker slot; Unix: 0, shared */
  int gen;  /* the newest generation that asked for it */
  int fd;
  sv_msg key;
};

static struct {
  uv_loop_t *loop;
  char **argv; /* the workers' command line */
  char drainarg[32];
  int n;
  int gen;       /* newest generation started */
  int serving;   /* the generation that serves */
  int reloading; /* generation gen is starting, not yet serving */
  int shutting;  /* stopping every worker, then exit */
  int status;    /* exit status */
  int startfails, laststatus;
  int *fails;           /* per slot: deaths in a row, for the backoff */
  uv_timer_t *restarts; /* per slot */
  uv_timer_t deadline;
  uv_signal_t sigs[3];
  worker *workers;
  held *held;
} sv;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr per event, prefixed with who says it. */
static void say(const char *fmt, ...) {
  va_list ap;
  char line[512];
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "spindle supervisor[%d]: %s\n", (int)getpid(), line);
  fflush(stderr);
}

static double now(void) {
  return (double)uv_hrtime() / 1e9;
}

static void spawn(int slot, int gen);
static void maybe_done(void);

static void worker_closed(uv_handle_t *h) {
  worker *w = h->data;
  if (--w->open == 0) free(w);
}

static void worker_unlink(worker *w) {
  worker **p = &sv.workers;
  while (*p != w) p = &(*p)->next;
  *p = w->next;
}

/* Close our end of w's channel (it is gone, or exiting). */
static void chan_close(worker *w) {
  if (w->chan < 0) return;
  uv_poll_stop(&w->poll);
  uv_close((uv_handle_t *)&w->poll, worker_closed);
  close(w->chan);
  w->chan = -1;
}

static void worker_signal(worker *w, int signum) {
  if (!w->exited) uv_process_kill(&w->proc, signum);
}

static void worker_stop(worker *w) {
  if (w->stopping || w->exited) return;
  w->stopping = 1;
  worker_signal(w, SIGTERM);
}

static int same_key(const sv_msg *a, const sv_msg *b) {
  if (a->kind != b->kind) return 0;
  if (a->kind == SP_STREAM_UNIX) return strcmp(a->path, b->path) == 0;
  if (a->addr.ss_family != b->addr.ss_family) return 0;
  if (a->addr.ss_family == AF_INET) {
    const struct sockaddr_in *x = (const void *)&a->addr;
    const struct sockaddr_in *y = (const void *)&b->addr;
    return x->sin_port != 0 && x->sin_port == y->sin_port &&
           x->sin_addr.s_addr == y->sin_addr.s_addr;
  } else {
    const struct sockaddr_in6 *x = (const void *)&a->addr;
    const struct sockaddr_in6 *y = (const void *)&b->addr;
    return x->sin6_port != 0 && x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
  }
}

/* A new listening socket for m: SO_REUSEPORT for TCP (one per slot), the
** file's mode for Unix. Returns the descriptor or a libuv error. */
static int held_open(const sv_msg *m) {
  int one = 1, fd, r = 0;
  socklen_t len;
  if (m->kind == SP_STREAM_UNIX) {
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, m->path, sizeof sun.sun_path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return uv_translate_sys_error(errno);
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 ||
        chmod(m->path, (mode_t)m->mode) != 0 || listen(fd, m->backlog) != 0)
      r = uv_translate_sys_error(errno);
  } else {
    len = m->addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                        : sizeof(struct sockaddr_in);
    fd = socket(m->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return uv_translate_sys_error(errno);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, (const struct sockaddr *)&m->addr, len) != 0 ||
        listen(fd, m->backlog) != 0)
      r = uv_translate_sys_error(errno);
  }
  if (r != 0) {
    close(fd);
    return r;
  }
  return fd;
}

static void held_free(held *h) {
  close(h->fd);
  if (h->key.kind == SP_STREAM_UNIX) unlink(h->key.path);
  free(h);
}

/* The socket for w's request m: the one held for it, or a new one.
** Returns the descriptor (still ours) or a libuv error. */
static int held_get(worker *w, const sv_msg *m) {
  int slot = m->kind == SP_STREAM_UNIX ? 0 : w->slot, fd;
  held *h;
  for (h = sv.held; h != NULL; h = h->next)
    if (h->slot == slot && same_key(&h->key, m)) break;
  if (h == NULL) {
    if ((fd = held_open(m)) < 0) return fd;
    if ((h = calloc(1, sizeof *h)) == NULL) {
      close(fd);
      return UV_ENOMEM;
    }
    h->slot = slot;
    h->fd = fd;
    h->key = *m;
    h->next = sv.held;
    sv.held = h;
  }
  if (w->gen > h->gen) h->gen = w->gen;
  return h->fd;
}

/* Close the sockets no worker of the serving generation asked for, once
** no older worker can still use them. */
static void held_sweep(void) {
  held **p = &sv.held;
  for (worker *w = sv.workers; w != NULL; w = w->next)
    if (w->gen < sv.serving) return;
  while (*p != NULL) {
    held *h = *p;
    if (h->gen < sv.serving) {
      *p = h->next;
      held_free(h);
    } else {
      p = &h->next;
    }
  }
}

/* Answer a listen request: the error code, and the descriptor with it. */
static void reply(worker *w, int r) {
  char cbuf[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {&r, sizeof r};
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (r >= 0) {
    struct cmsghdr *c;
    memset(cbuf, 0, sizeof cbuf);
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &r, sizeof r);
  }
  sendmsg(w->chan, &mh, MSG_NOSIGNAL);
}

static void reload_check(void) {
  int old = sv.serving;
  if (!sv.reloading) return;
  for (worker *w = sv.workers; w != NULL; w = w->next)
    if (w->gen == sv.gen && !w->ready) return;
  sv.reloading = 0;
  sv.serving = sv.gen;
  /* The new generation fills every slot: no restart of an old one. */
  for (int i = 1; i <= sv.n; i++) uv_timer_stop(&sv.restarts[i]);
  say("reload: generation %d ready; draining generation %d", sv.gen, old);
  for (worker *w = sv.workers; w != NULL; w = w->next)
    if (w->gen < sv.serving) worker_stop(w);
}

static void chan_cb(uv_poll_t *p, int status, int events) {
  worker *w = p->data;
  sv_msg m;
  ssize_t n;
  (void)events;
  if (status < 0) return chan_close(w);
  do n = recv(w->chan, &m, sizeof m, MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n != (ssize_t)sizeof m) return chan_close(w);
  if (m.op == 'R' && !w->ready) {
    w->ready = 1;
    w->ready_at = now();
    sv.startfails = 0;
    say("worker %d ready (pid %d, generation %d)", w->slot, w->pid, w->gen);
    reload_check();
  } else if (m.op == 'L') {
    m.path[PATHMAX - 1] = '\0';
    reply(w, held_get(w, &m));
  }
}

static double backoff(int fails) {
  double d = BACKOFF_FIRST * pow(2.0, fails - 1);
  return d > BACKOFF_MAX ? BACKOFF_MAX : d;
}

static void shutdown_all(void);

static void restart_cb(uv_timer_t *t) {
  int slot = (int)(t - sv.restarts);
  if (!sv.shutting) spawn(slot, sv.serving);
}

/* A worker of the serving generation died on its own: restart it after
** the backoff, or give up if workers keep dying at start-up. */
static void worker_died(worker *w, const char *how) {
  double delay;
  if (!w->ready && ++sv.startfails >= GIVE_UP_AFTER) {
    say("worker %d (pid %d) %s before it was ready; %d workers in a row "
        "died at start-up: giving up",
        w->slot, w->pid, how, sv.startfails);
    sv.status = 1;
    shutdown_all();
    return;
  }
  if (w->ready && now() - w->ready_at >= HEALTHY_AFTER) sv.fails[w->slot] = 0;
  delay = backoff(++sv.fails[w->slot]);
  say("worker %d (pid %d) %s; restarting in %.1f s", w->slot, w->pid, how,
      delay);
  sp_timer_start(&sv.restarts[w->slot], restart_cb, (uint64_t)(delay * 1000));
}

static void exit_cb(uv_process_t *p, int64_t status, int signum) {
  worker *w = p->data;
  char how[64];
  w->exited = 1;
  if (signum != 0)
    snprintf(how, sizeof how, "was killed by signal %d", signum);
  else
    snprintf(how, sizeof how, "exited with status %d", (int)status);
  worker_unlink(w);
  chan_close(w);
  uv_close((uv_handle_t *)p, worker_closed);
  if (sv.shutting || w->stopping) {
    say("worker %d (pid %d, generation %d) %s", w->slot, w->pid, w->gen, how);
  } else if (w->gen > sv.serving) {
    say("worker %d (pid %d) %s before it was ready: reload failed, "
        "generation %d keeps serving",
        w->slot, w->pid, how, sv.serving);
    sv.reloading = 0;
    for (worker *o = sv.workers; o != NULL; o = o->next)
      if (o->gen > sv.serving) worker_stop(o);
  } else {
    worker_died(w, how);
  }
  held_sweep();
  maybe_done();
}

/* The workers' environment: ours without SPINDLE_WORKER_* and
** SPINDLE_SUPERVISOR_FD, then those for this worker. Freed by env_free. */
static char **env_new(int slot, int fd) {
  size_t n = 0, i, k = 0;
  char **env;
  while (environ[n] != NULL) n++;
  if ((env = calloc(n + 4, sizeof *env)) == NULL) return NULL;
  for (i = 0; i < n; i++)
    if (strncmp(environ[i], "SPINDLE_WORKER_", 15) != 0 &&
        strncmp(environ[i], "SPINDLE_SUPERVISOR_FD=", 22) != 0)
      env[k++] = environ[i];
  env[n + 3] = NULL;
  env[k] = malloc(96);
  if (env[k] == NULL) {
    free(env);
    return NULL;
  }
  /* One allocation for the three variables. */
  snprintf(env[k], 32, "SPINDLE_WORKER_ID=%d", slot);
  env[k + 1] = env[k] + 32;
  snprintf(env[k + 1], 32, "SPINDLE_WORKER_COUNT=%d", sv.n);
  env[k + 2] = env[k] + 64;
  snprintf(env[k + 2], 32, "SPINDLE_SUPERVISOR_FD=%d", fd);
  env[k + 3] = NULL;
  return env;
}

static void env_free(char **env) {
  size_t k = 0;
  while (strncmp(env[k], "SPINDLE_WORKER_ID=", 18) != 0) k++;
  free(env[k]);
  free(env);
}

/* Start the worker of `slot` in generation `gen`. A failure to start is
** a death at start-up (it counts towards giving up). */
static void spawn(int slot, int gen) {
  uv_process_options_t o;
  uv_stdio_container_t stdio[4];
  int pair[2], r;
  worker *w = calloc(1, sizeof *w);
  char **env = NULL;
  if (w == NULL ||
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    say("cannot start worker %d: %s", slot, strerror(errno));
    free(w);
    sv.status = 1;
    shutdown_all();
    return;
  }
  w->slot = slot;
  w->gen = gen;
  w->chan = pair[0];
  env = env_new(slot, 3);
  memset(&o, 0, sizeof o);
  memset(stdio, 0, sizeof stdio);
  for (int i = 0; i < 3; i++) {
    stdio[i].flags = UV_INHERIT_FD;
    stdio[i].data.fd = i;
  }
  stdio[3].flags = UV_INHERIT_FD;
  stdio[3].data.fd = pair[1];
  o.exit_cb = exit_cb;
  o.file = sv.argv[0];
  o.args = sv.argv;
  o.env = env;
  o.stdio = stdio;
  o.stdio_count = 4;
  /* A session of its own: a terminal's Ctrl-C reaches the supervisor
  ** only, which then drains the workers once (a second signal would
  ** force their exit). */
  o.flags = UV_PROCESS_DETACHED;
  w->proc.data = w;
  r = env != NULL ? uv_spawn(sv.loop, &w->proc, &o) : UV_ENOMEM;
  if (env != NULL) env_free(env);
  close(pair[1]);
  if (r != 0) {
    say("cannot start worker %d: %s", slot, uv_strerror(r));
    close(pair[0]);
    if (env != NULL) {
      w->open = 1;
      uv_close((uv_handle_t *)&w->proc, worker_closed);
    } else {
      free(w);
    }
    sv.status = 1;
    shutdown_all();
    return;
  }
  w->open = 2;
  w->pid = w->proc.pid;
  w->started = now();
  w->poll.data = w;
  uv_poll_init(sv.loop, &w->poll, w->chan);
  uv_poll_start(&w->poll, UV_READABLE | UV_DISCONNECT, chan_cb);
  w->next = sv.workers;
  sv.workers = w;
  say("worker %d started (pid %d, generation %d)", slot, w->pid, gen);
}

/* Every worker is gone after shutdown_all: end the loop. */
static void maybe_done(void) {
  if (!sv.shutting || sv.workers != NULL) return;
  uv_stop(sv.loop);
}

static void deadline_cb(uv_timer_t *t) {
  (void)t;
  say("drain period over: killing the workers left");
  for (worker *w = sv.workers; w != NULL; w = w->next)
    worker_signal(w, SIGKILL);
}

/* Close every socket we hold: on shutdown, once the workers have closed
** theirs too, new connections are refused (a balancer tries elsewhere)
** instead of waiting in a queue that nobody will accept from. */
static void held_close_all(void) {
  while (sv.held != NULL) {
    held *h = sv.held;
    sv.held = h->next;
    held_free(h);
  }
}

static void shutdown_all(void) {
  if (sv.shutting) return;
  sv.shutting = 1;
  /* The workers accept what is queued while they stop listening. */
  for (held *h = sv.held; h != NULL; h = h->next) refuse_new(h->fd);
  held_close_all();
  for (int i = 1; i <= sv.n; i++) uv_timer_stop(&sv.restarts[i]);
  for (worker *w = sv.workers; w != NULL; w = w->next) worker_stop(w);
  sp_timer_start(&sv.deadline, deadline_cb,
                 (uint64_t)((drain_period + KILL_GRACE) * 1000));
  maybe_done();
}

static const char *signame(int signum) {
  return signum == SIGINT ? "SIGINT" : signum == SIGTERM ? "SIGTERM" : "SIGHUP";
}

static void signal_cb(uv_signal_t *h, int signum) {
  (void)h;
  if (signum == SIGHUP) {
    if (sv.shutting || sv.reloading) {
      say("SIGHUP ignored: %s", sv.shutting ? "stopping" : "reload under way");
      return;
    }
    sv.gen++;
    sv.reloading = 1;
    say("SIGHUP: reloading: starting generation %d", sv.gen);
    for (int i = 1; i <= sv.n; i++) spawn(i, sv.gen);
    return;
  }
  if (sv.shutting) {
    say("%s while stopping: exiting now (status %d)", signame(signum),
        128 + signum);
    for (worker *w = sv.workers; w != NULL; w = w->next)
      worker_signal(w, SIGKILL);
    _exit(128 + signum);
  }
  say("%s: stopping the workers (drain period %g s)", signame(signum),
      drain_period);
  shutdown_all();
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

int sp_supervisor_main(int argc, char **argv, int workers) {
  static const int signums[3] = {SIGTERM, SIGINT, SIGHUP};
  char exe[4096];
  size_t len = sizeof exe;
  int i;
  memset(&sv, 0, sizeof sv);
  sv.loop = uv_default_loop();
  sv.n = workers;
  sv.gen = sv.serving = 1;
  if (uv_exepath(exe, &len) != 0) snprintf(exe, sizeof exe, "%s", argv[0]);
  snprintf(sv.drainarg, sizeof sv.drainarg, "%g", drain_period);
  sv.argv = calloc((size_t)argc + 3, sizeof *sv.argv);
  sv.fails = calloc((size_t)workers + 1, sizeof *sv.fails);
  sv.restarts = calloc((size_t)workers + 1, sizeof *sv.restarts);
  if (sv.argv == NULL || sv.fails == NULL || sv.restarts == NULL) {
    say("out of memory");
    return 1;
  }
  sv.argv[0] = exe;
  sv.argv[1] = "--drain";
  sv.argv[2] = sv.drainarg;
  for (i = 1; i < argc; i++) sv.argv[i + 2] = argv[i];
  for (i = 1; i <= workers; i++) uv_timer_init(sv.loop, &sv.restarts[i]);
  uv_timer_init(sv.loop, &sv.deadline);
  for (i = 0; i < 3; i++) {
    uv_signal_init(sv.loop, &sv.sigs[i]);
    uv_signal_start(&sv.sigs[i], signal_cb, signums[i]);
  }
  {
    char cmd[256] = "";
    size_t used = 0;
    for (i = 1; i < argc && used < sizeof cmd; i++)
      used += (size_t)snprintf(cmd + used, sizeof cmd - used, "%s%s",
                               i > 1 ? " " : "", argv[i]);
    say("starting %d workers: %s", workers, cmd);
  }
  for (i = 1; i <= workers && !sv.shutting; i++) spawn(i, 1);
  uv_run(sv.loop, UV_RUN_DEFAULT);
  say("all workers stopped; exiting with status %d", sv.status);
  held_close_all();
  uv_walk(sv.loop, close_walk, NULL);
  uv_run(sv.loop, UV_RUN_DEFAULT);
  uv_loop_close(sv.loop);
  free(sv.argv);
  free(sv.fails);
  free(sv.restarts);
  return sv.status;
}

/* ------------------------------------------------ the worker's half */

static int chan = -1;
static int worker_id = 0, worker_count = 0;
static const char ports_key = 'P'; /* weak set of Ports that listened */

/* tcp.c's listen hook in a worker: ask the supervisor for the socket.
** The channel is blocking: the supervisor answers at once. */
static int worker_listen(int kind, const struct sockaddr *want,
                         const char *path, int backlog, int mode) {
  char cbuf[CMSG_SPACE(sizeof(int))];
  sv_msg m;
  int r = UV_EPIPE, fd = -1;
  struct iovec iov = {&r, sizeof r};
  struct msghdr mh;
  struct cmsghdr *c;
  ssize_t n;
  memset(&m, 0, sizeof m);
  m.op = 'L';
  m.kind = kind;
  m.backlog = backlog;
  m.mode = mode;
  if (kind == SP_STREAM_UNIX) {
    if (strlen(path) >= PATHMAX) return UV_ENAMETOOLONG;
    strcpy(m.path, path);
  } else {
    memcpy(&m.addr, want, sizeof m.addr);
  }
  if (send(chan, &m, sizeof m, MSG_NOSIGNAL) != (ssize_t)sizeof m)
    return uv_translate_sys_error(errno);
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  /* The channel is non-blocking once the orphan watch polls it. */
  for (;;) {
    struct pollfd pfd = {chan, POLLIN, 0};
    n = recvmsg(chan, &mh, MSG_CMSG_CLOEXEC);
    if (n >= 0 || (errno != EINTR && errno != EAGAIN)) break;
    if (errno == EAGAIN && poll(&pfd, 1, LISTEN_WAIT) == 0) break;
  }
  if (n != (ssize_t)sizeof r) return UV_EPIPE;
  c = CMSG_FIRSTHDR(&mh);
  if (c != NULL && c->cmsg_type == SCM_RIGHTS)
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
  if (r < 0) return r;
  return fd >= 0 ? fd : UV_EPIPE;
}

/* tcp.c's listening hook: remember the Port (weakly) so that a draining
** reactor can stop accepting on every port. [-0, +0, m] */
static void port_listening(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ports_key);
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* _supervisor.ports() -> list of the Ports that listened (some may have
** stopped since); for draining. */
static int supervisor_ports(lua_State *L) {
  int n = 0;
  lua_newtable(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ports_key);
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -4, ++n);
  }
  lua_pop(L, 1);
  return 1;
}

/* _supervisor.refuseNew(port) -> boolean: the first step of draining a
** listening Port: it takes no new connection, while those queued may
** still be accepted (refuse_new), unless its socket was handed to us
** (then others hold it: a supervisor's next worker, systemd), when
** nothing changes. False if port is not a listening Port. */
static int supervisor_refuseNew(lua_State *L) {
  int adopted = 0, fd = sp_tcp_port_fd(L, 1, &adopted);
  if (fd >= 0 && !adopted) refuse_new(fd);
  lua_pushboolean(L, fd >= 0);
  return 1;
}

/* _supervisor.openConnections() -> n: accepted connections still open. */
static int supervisor_openConnections(lua_State *L) {
  lua_pushinteger(L, sp_tcp_open_accepted());
  return 1;
}

/* _supervisor.drainPeriod() -> seconds (--drain). */
static int supervisor_drainPeriod(lua_State *L) {
  lua_pushnumber(L, drain_period);
  return 1;
}

/* The channel's end closed: the supervisor is gone (killed), so nobody
** would restart or stop this worker; drain and exit as on SIGTERM. The
** supervisor never writes to the channel unasked (listen replies are
** read at once by worker_listen), so readable means end of file. */
static uv_poll_t orphan_poll;

static void orphan_cb(uv_poll_t *p, int status, int events) {
  char c;
  (void)events;
  if (status == 0 && recv(chan, &c, 1, MSG_PEEK | MSG_DONTWAIT) < 0) return;
  uv_poll_stop(p);
  raise(SIGTERM);
}

/* _supervisor.ready(): tell the supervisor this worker serves (once the
** reactor has started), and from then on watch for its end; nothing
** outside a supervisor. */
static int supervisor_ready(lua_State *L) {
  static int watching = 0;
  sv_msg m;
  (void)L;
  if (chan < 0) return 0;
  memset(&m, 0, sizeof m);
  m.op = 'R';
  send(chan, &m, sizeof m, MSG_NOSIGNAL);
  if (!watching && uv_poll_init(sp_loop(), &orphan_poll, chan) == 0) {
    /* Closed at exit with every handle left on the loop (loop.c). */
    watching = 1;
    uv_poll_start(&orphan_poll, UV_READABLE | UV_DISCONNECT, orphan_cb);
    uv_unref((uv_handle_t *)&orphan_poll);
  }
  return 0;
}

/* _supervisor.workerId() / workerCount() -> integer, or nil outside a
** supervisor: reactor.workerId and reactor.workerCount. */
static int supervisor_workerId(lua_State *L) {
  if (worker_id > 0)
    lua_pushinteger(L, worker_id);
  else
    lua_pushnil(L);
  return 1;
}

static int supervisor_workerCount(lua_State *L) {
  if (worker_count > 0)
    lua_pushinteger(L, worker_count);
  else
    lua_pushnil(L);
  return 1;
}

/* _supervisor.listenFds() -> list of descriptor numbers that systemd's
** socket activation passed (LISTEN_FDS from 3 on, when LISTEN_PID is this
** process), possibly empty. sd_listen_fds(3); twisted's _ListenFDs. */
static int supervisor_listenFds(lua_State *L) {
  const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
  long n = fds != NULL ? strtol(fds, NULL, 10) : 0;
  lua_newtable(L);
  if (pid == NULL || strtol(pid, NULL, 10) != (long)getpid()) return 1;
  for (long i = 0; i < n && i < 1024; i++) {
    lua_pushinteger(L, 3 + i);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* Read (once) what the supervisor put in our environment, and take it
** out, so that processes this worker starts are not workers. */
static void worker_init(void) {
  static int done = 0;
  const char *fd = getenv("SPINDLE_SUPERVISOR_FD");
  const char *id = getenv("SPINDLE_WORKER_ID");
  const char *count = getenv("SPINDLE_WORKER_COUNT");
  if (done) return;
  done = 1;
  if (fd == NULL || id == NULL || count == NULL) return;
  chan = atoi(fd);
  worker_id = atoi(id);
  worker_count = atoi(count);
  if (chan < 3 || fcntl(chan, F_SETFD, FD_CLOEXEC) != 0) {
    chan = -1;
    worker_id = worker_count = 0;
  }
  unsetenv("SPINDLE_SUPERVISOR_FD");
  unsetenv("SPINDLE_WORKER_ID");
  unsetenv("SPINDLE_WORKER_COUNT");
}

static const luaL_Reg supervisor_funcs[] = {
    {"ports", supervisor_ports},
    {"refuseNew", supervisor_refuseNew},
    {"openConnections", supervisor_openConnections},
    {"drainPeriod", supervisor_drainPeriod},
    {"ready", supervisor_ready},
    {"workerId", supervisor_workerId},
    {"workerCount", supervisor_workerCount},
    {"listenFds", supervisor_listenFds},
    {NULL, NULL}};

/* spindle._supervisor: the worker's half (see the top of this file);
** opening it installs tcp.c's hooks. Loop thread only. */
int luaopen_spindle__supervisor(lua_State *L) {
  worker_init();
  sp_registry_weak(L, &ports_key, "k");
  lua_pop(L, 1);
  sp_tcp_set_listen_hooks(chan >= 0 ? worker_listen : NULL, port_listening);
  luaL_newlib(L, supervisor_funcs);
  return 1;
}
