/*
** loadgen.c: the load generator of bench/echo (epoll, one thread).
**
**   loadgen -p PORT [-m echo|lines|idle] [-c CONNS] [-k DEPTH] [-s BYTES]
**           [-w WARMUP_S] [-d DURATION_S] [-P SERVER_PID[,PID...]]
**
** Opens CONNS connections to 127.0.0.1:PORT. Each keeps DEPTH messages in
** flight and sends a new one for each answered one:
**   echo   a message is BYTES bytes (default 64, DEPTH 1: ping-pong);
**   lines  a message is a line of BYTES bytes plus "\r\n" (default 32,
**          DEPTH 16: pipelined), answered by the server with the same line.
** Every byte received is checked against what was sent. After WARMUP_S
** seconds (default 1) it counts answered messages for DURATION_S seconds
** (default 5) and reads the server's user+system CPU time from
** /proc/SERVER_PID/stat at both ends of that window; SERVER_PID may be a
** comma-separated list (a supervisor and its workers), whose CPU times are
** summed. Prints one line:
**   msgs=N secs=S rate=MSGS_PER_S srv_cpu=CPU_S srv_usr=CPU_S srv_sys=CPU_S
**   lg_cpu=CPU_S
** (srv_cpu = srv_usr + srv_sys, the server's user and system time)
** and, when DEPTH is 1, the round-trip times' median and 99th percentile
** over the window: p50_us=US p99_us=US.
**   idle   opens CONNS connections and sends nothing; after WARMUP_S
**          seconds prints the server's resident memory growth (VmRSS in
**          /proc/SERVER_PID/status, after minus before connecting):
**          conns=N rss_before=BYTES rss_after=BYTES per_conn=BYTES
** It exits 0; on a wrong byte, a closed connection or no progress for
** 3 s it prints "error: ..." on stderr and exits 1.
*/
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define RBUF 65536

typedef struct conn {
  int fd;
  int want_out; /* EPOLLOUT registered */
  size_t unit;  /* bytes per message, delimiter included */
  size_t owed;  /* bytes not yet written */
  size_t sent;  /* total bytes written */
  size_t got;   /* total bytes received */
  size_t done;  /* messages answered */
  double asked; /* when the message in flight was asked for (DEPTH 1) */
} conn_t;

static char rbuf[RBUF];
/* Round-trip times in the window (DEPTH 1), in seconds. */
static double *rtts;
static size_t nrtt, caprtt;
static int record;
static char *pattern; /* the message repeated; long enough for any read */
static int epfd;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "error: %s%s%s\n", what, errno ? ": " : "",
          errno ? strerror(errno) : "");
  exit(1);
}

/* Server user and system CPU seconds from /proc/pid/stat fields 14, 15. */
static void proc_cpu_one(int pid, double *user, double *sys) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) die("cannot read server /proc stat");
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  unsigned long ut = 0, st = 0;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                   &ut, &st) != 2)
    die("cannot parse server /proc stat");
  *user = (double) ut / (double) sysconf(_SC_CLK_TCK);
  *sys = (double) st / (double) sysconf(_SC_CLK_TCK);
}

/* The same summed over the processes of -P (at most MAXPIDS). */
#define MAXPIDS 64
static int pids[MAXPIDS], npids;

static void proc_cpu(double *user, double *sys) {
  *user = *sys = 0;
  for (int i = 0; i < npids; i++) {
    double u, s;
    proc_cpu_one(pids[i], &u, &s);
    *user += u;
    *sys += s;
  }
}

static double self_cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double) ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
         (double) ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void set_out(conn_t *c, int on) {
  if (c->want_out == on) return;
  struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0),
                           .data.ptr = c};
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
  c->want_out = on;
}

/* Write what is owed, from the pattern at the stream's current offset. */
static void flush(conn_t *c) {
  while (c->owed) {
    ssize_t n = write(c->fd, pattern + c->sent % c->unit, c->owed);
    if (n < 0) {
      if (errno == EAGAIN) {
        set_out(c, 1);
        return;
      }
      die("write");
    }
    c->owed -= (size_t) n;
    c->sent += (size_t) n;
  }
  set_out(c, 0);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

static void rtt_add(double v) {
  if (nrtt == caprtt) {
    caprtt = caprtt ? 2 * caprtt : 65536;
    rtts = realloc(rtts, caprtt * sizeof *rtts);
    if (!rtts) die("malloc");
  }
  rtts[nrtt++] = v;
}

/* Resident bytes of process pid (VmRSS). */
static long proc_rss(int pid) {
  char path[64], line[256];
  long kb = -1;
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) die("cannot read server /proc status");
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
  fclose(f);
  return kb * 1024;
}

static void on_readable(conn_t *c) {
  for (;;) {
    ssize_t n = read(c->fd, rbuf, RBUF);
    if (n < 0) {
      if (errno == EAGAIN) break;
      die("read");
    }
    if (n == 0) {
      errno = 0;
      die("server closed a connection");
    }
    if (c->got + (size_t) n > c->sent ||
        memcmp(rbuf, pattern + c->got % c->unit, (size_t) n) != 0) {
      errno = 0;
      die("server sent bytes that were not sent to it");
    }
    c->got += (size_t) n;
    size_t done = c->got / c->unit;
    if (done > c->done && c->asked > 0) {
      double t = now();
      if (record) rtt_add(t - c->asked);
      c->asked = t;
    }
    c->owed += (done - c->done) * c->unit;
    c->done = done;
    if (n < RBUF) break;
  }
  flush(c);
}

static int connect_one(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *) &a, sizeof a) < 0)
    die("connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

int main(int argc, char **argv) {
  int port = 0, nconn = 50, pid = 0, lines = 0, idle = 0, opt;
  long depth = -1, size = -1;
  double warm = 1, dur = 5;
  while ((opt = getopt(argc, argv, "p:m:c:k:s:w:d:P:")) != -1) {
    switch (opt) {
      case 'p':
        port = atoi(optarg);
        break;
      case 'm':
        lines = strcmp(optarg, "lines") == 0;
        idle = strcmp(optarg, "idle") == 0;
        break;
      case 'c':
        nconn = atoi(optarg);
        break;
      case 'k':
        depth = atol(optarg);
        break;
      case 's':
        size = atol(optarg);
        break;
      case 'w':
        warm = atof(optarg);
        break;
      case 'd':
        dur = atof(optarg);
        break;
      case 'P': {
        char *p = optarg, *end;
        while (npids < MAXPIDS) {
          long v = strtol(p, &end, 10);
          if (end == p || v <= 0) break;
          pids[npids++] = (int) v;
          if (*end != ',') break;
          p = end + 1;
        }
        pid = npids ? pids[0] : 0;
        break;
      }
      default:
        fprintf(stderr,
                "usage: loadgen -p PORT [-m echo|lines] [-c CONNS] "
                "[-k DEPTH] [-s BYTES] [-w S] [-d S] [-P PID[,PID...]]\n");
        return 2;
    }
  }
  if (depth < 1) depth = lines ? 16 : 1;
  if (size < 1) size = lines ? 32 : 64;
  if (port <= 0 || nconn < 1) {
    fprintf(stderr, "loadgen: need -p PORT and CONNS >= 1\n");
    return 2;
  }

  /* The message: printable bytes, then "\r\n" for lines. */
  size_t unit = (size_t) size + (lines ? 2 : 0);
  size_t plen = RBUF + (size_t) depth * unit + unit;
  pattern = malloc(plen);
  if (!pattern) die("malloc");
  for (size_t i = 0; i < plen; i++) {
    size_t j = i % unit;
    pattern[i] = lines && j == unit - 2   ? '\r'
                 : lines && j == unit - 1 ? '\n'
                                          : (char) ('a' + j % 26);
  }

  if (idle) {
    long before, after;
    int *fds = calloc((size_t) nconn, sizeof *fds);
    if (!fds || !pid) die("idle needs -P");
    before = proc_rss(pid);
    for (int i = 0; i < nconn; i++) fds[i] = connect_one(port);
    struct timespec ts = {(time_t) warm,
                          (long) ((warm - (double) (time_t) warm) * 1e9)};
    nanosleep(&ts, NULL);
    after = proc_rss(pid);
    printf("conns=%d rss_before=%ld rss_after=%ld per_conn=%.0f\n", nconn,
           before, after, (double) (after - before) / nconn);
    return 0;
  }

  epfd = epoll_create1(0);
  conn_t *conns = calloc((size_t) nconn, sizeof *conns);
  if (epfd < 0 || !conns) die("setup");
  for (int i = 0; i < nconn; i++) {
    conn_t *c = &conns[i];
    c->fd = connect_one(port);
    c->unit = unit;
    c->owed = (size_t) depth * unit;
    c->asked = depth == 1 ? now() : 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
  }
  for (int i = 0; i < nconn; i++) flush(&conns[i]);

  struct epoll_event evs[256];
  double t0 = now(), start = t0 + warm, end = start + dur, t = t0;
  double last_progress = t0, usr0 = 0, sys0 = 0, lg0 = 0, tstart = 0;
  size_t total = 0, at_start = 0, last_total = 0;
  int measuring = 0;
  while (t < end) {
    int n = epoll_wait(epfd, evs, 256, 10);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      size_t before = c->done;
      if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(c);
      else if (evs[i].events & EPOLLOUT)
        flush(c);
      total += c->done - before;
    }
    t = now();
    if (!measuring && t >= start) {
      measuring = 1;
      tstart = t;
      at_start = total;
      record = 1;
      if (pid) proc_cpu(&usr0, &sys0);
      lg0 = self_cpu();
    }
    if (total != last_total) {
      last_total = total;
      last_progress = t;
    } else if (t - last_progress > 3) {
      errno = 0;
      die("no answer for 3 s");
    }
  }
  double usr1 = usr0, sys1 = sys0, lg = self_cpu() - lg0;
  if (pid) proc_cpu(&usr1, &sys1);
  double secs = t - tstart;
  size_t msgs = total - at_start;
  printf(
      "msgs=%zu secs=%.3f rate=%.0f srv_cpu=%.2f srv_usr=%.2f "
      "srv_sys=%.2f lg_cpu=%.2f",
      msgs, secs, (double) msgs / secs, usr1 - usr0 + sys1 - sys0, usr1 - usr0,
      sys1 - sys0, lg);
  if (nrtt > 0) {
    qsort(rtts, nrtt, sizeof *rtts, cmp_double);
    printf(" p50_us=%.1f p99_us=%.1f", rtts[nrtt / 2] * 1e6,
           rtts[(size_t) ((double) nrtt * 0.99)] * 1e6);
  }
  printf("\n");
  return 0;
}
