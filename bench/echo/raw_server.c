/*
** raw_server.c: the baseline for bench/echo, a plain libuv server doing the
** least work per event that a careful C programmer would do.
**
**   raw_server
**
** Listens on three ports of 127.0.0.1, picked by the kernel, and prints
** them on stdout as "ECHO <port>", "LINES <port>" and "HTTP <port>":
**   echo   every byte read is written back (uv_try_write from the read
**          buffer; a copy is queued only when the socket is full); reads
**          land in one loop-wide buffer, so an idle connection holds only
**          its handle;
**   lines  the stream is split on "\r\n" and each line is answered with
**          the line plus "\r\n", like a LineReceiver calling sendLine; the
**          answers to one read go out in one uv_try_write;
**   http   HTTP-shaped: each request (anything up to "\r\n\r\n") is
**          answered with a fixed 200 response of 13 bytes of body,
**          keep-alive, the answers to one read in one uv_try_write.
** Line buffers are reused (one per connection), nothing is allocated per
** read unless the kernel's send buffer is full. A line longer than MAX_LINE
** drops the connection, as LineReceiver.lineLengthExceeded does. Runs until
** SIGTERM or SIGINT.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define READ_SIZE 65536
#define MAX_LINE 16384

enum { K_ECHO, K_LINES, K_HTTP };

typedef struct conn {
  uv_tcp_t tcp;
  int kind;
  int match;   /* HTTP: bytes of "\r\n\r\n" matched so far */
  size_t have; /* LINES: bytes of an unfinished line kept at buf[0] */
  char *buf;   /* LINES: READ_SIZE + MAX_LINE bytes */
} conn_t;

static const char response[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
    "Content-Length: 13\r\n\r\nHello, world!";
static char shared[READ_SIZE];

typedef struct pending {
  uv_write_t req;
  char data[];
} pending_t;

static uv_loop_t *loop;
static uv_tcp_t listeners[3];
static uv_signal_t sigs[2];
static char out[2 * (READ_SIZE + MAX_LINE)];

static void on_close(uv_handle_t *h) {
  free(((conn_t *) h)->buf);
  free(h);
}

static void on_written(uv_write_t *req, int status) {
  (void) status;
  free(req);
}

/* Write len bytes, directly when the socket takes them, else queue a copy
 * of the rest (libuv keeps order: try_write fails while a write is queued).
 */
static void send_bytes(conn_t *c, const char *p, size_t len) {
  int n = uv_try_write((uv_stream_t *) &c->tcp,
                       &(uv_buf_t){.base = (char *) p, .len = len}, 1);
  if (n == UV_EAGAIN) n = 0;
  if (n < 0) {
    if (!uv_is_closing((uv_handle_t *) &c->tcp))
      uv_close((uv_handle_t *) &c->tcp, on_close);
    return;
  }
  if ((size_t) n == len) return;
  size_t rest = len - (size_t) n;
  pending_t *w = malloc(sizeof *w + rest);
  if (!w) abort();
  memcpy(w->data, p + n, rest);
  uv_buf_t b = uv_buf_init(w->data, (unsigned) rest);
  if (uv_write(&w->req, (uv_stream_t *) &c->tcp, &b, 1, on_written) < 0)
    free(w);
}

/* The read lands after any unfinished line so the buffer is contiguous. */
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void) hint;
  conn_t *c = (conn_t *) h;
  if (c->kind != K_LINES) {
    *b = uv_buf_init(shared, READ_SIZE);
    return;
  }
  if (!c->buf && !(c->buf = malloc(READ_SIZE + MAX_LINE))) abort();
  *b = uv_buf_init(c->buf + c->have, READ_SIZE);
}

/* Answer every request that ends in this read. */
static void answer_http(conn_t *c, const char *p, size_t n) {
  static const char end[] = "\r\n\r\n";
  char *o = out;
  for (size_t i = 0; i < n; i++) {
    c->match = p[i] == end[c->match] ? c->match + 1 : p[i] == '\r';
    if (c->match == 4) {
      c->match = 0;
      if ((size_t) (o - out) + sizeof response > sizeof out) {
        send_bytes(c, out, (size_t) (o - out));
        o = out;
      }
      memcpy(o, response, sizeof response - 1);
      o += sizeof response - 1;
    }
  }
  if (o > out) send_bytes(c, out, (size_t) (o - out));
}

/* Answer every complete line in c->buf[0, end); keep the unfinished tail. */
static void answer_lines(conn_t *c, size_t end) {
  char *p = c->buf, *q = c->buf, *stop = c->buf + end, *o = out;
  char *nl;
  /* A bare "\n" is part of the line, as with LineReceiver's "\r\n". */
  while (q < stop && (nl = memchr(q, '\n', (size_t) (stop - q)))) {
    q = nl + 1;
    if (nl == c->buf || nl[-1] != '\r') continue;
    size_t n = (size_t) (q - p);
    memcpy(o, p, n);
    o += n;
    p = q;
  }
  if (o > out) send_bytes(c, out, (size_t) (o - out));
  c->have = (size_t) (stop - p);
  if (c->have > MAX_LINE) {
    uv_close((uv_handle_t *) &c->tcp, on_close);
    return;
  }
  if (c->have && p != c->buf) memmove(c->buf, p, c->have);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  conn_t *c = (conn_t *) s;
  if (nread < 0) {
    if (!uv_is_closing((uv_handle_t *) s))
      uv_close((uv_handle_t *) s, on_close);
    return;
  }
  if (nread == 0) return;
  if (c->kind == K_LINES)
    answer_lines(c, c->have + (size_t) nread);
  else if (c->kind == K_HTTP)
    answer_http(c, b->base, (size_t) nread);
  else
    send_bytes(c, b->base, (size_t) nread);
}

static void on_connection(uv_stream_t *server, int status) {
  if (status < 0) return;
  conn_t *c = malloc(sizeof *c);
  if (!c) abort();
  c->kind = server == (uv_stream_t *) &listeners[1]   ? K_LINES
            : server == (uv_stream_t *) &listeners[2] ? K_HTTP
                                                      : K_ECHO;
  c->have = 0;
  c->match = 0;
  c->buf = NULL;
  uv_tcp_init(loop, &c->tcp);
  if (uv_accept(server, (uv_stream_t *) &c->tcp) < 0) {
    uv_close((uv_handle_t *) &c->tcp, on_close);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *) &c->tcp, on_alloc, on_read);
}

static void on_signal(uv_signal_t *h, int sig) {
  (void) h;
  (void) sig;
  uv_stop(loop);
}

static int listen_on(uv_tcp_t *t) {
  struct sockaddr_in a;
  struct sockaddr_storage got;
  int len = sizeof got;
  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_tcp_init(loop, t);
  int r = uv_tcp_bind(t, (const struct sockaddr *) &a, 0);
  if (r == 0) r = uv_listen((uv_stream_t *) t, 1024, on_connection);
  if (r == 0) r = uv_tcp_getsockname(t, (struct sockaddr *) &got, &len);
  if (r < 0) {
    fprintf(stderr, "raw_server: listen: %s\n", uv_strerror(r));
    exit(1);
  }
  return ntohs(((struct sockaddr_in *) &got)->sin_port);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  int echo = listen_on(&listeners[0]);
  int lines = listen_on(&listeners[1]);
  int http = listen_on(&listeners[2]);
  uv_signal_init(loop, &sigs[0]);
  uv_signal_start(&sigs[0], on_signal, SIGTERM);
  uv_signal_init(loop, &sigs[1]);
  uv_signal_start(&sigs[1], on_signal, SIGINT);
  printf("ECHO %d\nLINES %d\nHTTP %d\n", echo, lines, http);
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
