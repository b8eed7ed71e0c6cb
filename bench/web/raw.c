/*
** bench/web/raw.c: the raw C baseline for bench/web: an HTTP/1.1 hello
** world on libuv, parsing with llhttp (the parser spindle uses, from
** Debian's node-llhttp), answering every request with a fixed response
** (Date updated once a second) and writing all the answers to one read
** with one uv_try_write (uv_write for what the kernel refuses).
**
**   raw PORT
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <llhttp.h>
#include <uv.h>

static llhttp_settings_t settings;
static char resp[256];
static size_t resplen;
static time_t respat;

typedef struct conn {
  uv_tcp_t tcp;
  llhttp_t parser;
  size_t answers;
} conn;

static void make_response(void) {
  char date[64];
  time_t now = time(NULL);
  struct tm tm;
  if (now == respat) return;
  respat = now;
  gmtime_r(&now, &tm);
  strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  resplen = (size_t)snprintf(resp, sizeof(resp),
                             "HTTP/1.1 200 OK\r\nDate: %s\r\n"
                             "Content-Type: text/html\r\n"
                             "Content-Length: 11\r\n\r\nhello world",
                             date);
}

static int on_message_complete(llhttp_t *p) {
  ((conn *)p->data)->answers++;
  return 0;
}

static void alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  static char slab[65536];
  (void)h;
  (void)size;
  *buf = uv_buf_init(slab, sizeof(slab));
}

static void close_cb(uv_handle_t *h) { free(h->data); }

static void write_cb(uv_write_t *req, int status) {
  (void)status;
  free(req->data);
  free(req);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  conn *c = s->data;
  if (n < 0) {
    uv_close((uv_handle_t *)s, close_cb);
    return;
  }
  if (n == 0) return;
  c->answers = 0;
  if (llhttp_execute(&c->parser, buf->base, (size_t)n) != HPE_OK) {
    uv_close((uv_handle_t *)s, close_cb);
    return;
  }
  if (c->answers > 0) {
    size_t total = c->answers * resplen, off = 0;
    char stackbuf[16384], *out = total <= sizeof(stackbuf) ? stackbuf
                                                           : malloc(total);
    uv_buf_t b;
    int w;
    make_response();
    for (size_t i = 0; i < c->answers; i++, off += resplen)
      memcpy(out + off, resp, resplen);
    b = uv_buf_init(out, (unsigned)total);
    w = uv_try_write(s, &b, 1);
    if (w < 0) w = 0;
    if ((size_t)w < total) {
      uv_write_t *req = malloc(sizeof(*req));
      char *rest = malloc(total - (size_t)w);
      memcpy(rest, out + w, total - (size_t)w);
      req->data = rest;
      b = uv_buf_init(rest, (unsigned)(total - (size_t)w));
      uv_write(req, s, &b, 1, write_cb);
    }
    if (out != stackbuf) free(out);
  }
}

static void on_connection(uv_stream_t *server, int status) {
  conn *c;
  if (status < 0) return;
  c = calloc(1, sizeof(*c));
  uv_tcp_init(uv_default_loop(), &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, close_cb);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_REQUEST, &settings);
  c->parser.data = c;
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

int main(int argc, char **argv) {
  uv_tcp_t server;
  struct sockaddr_in addr;
  llhttp_settings_init(&settings);
  settings.on_message_complete = on_message_complete;
  make_response();
  uv_tcp_init(uv_default_loop(), &server);
  uv_ip4_addr("127.0.0.1", argc > 1 ? atoi(argv[1]) : 8080, &addr);
  if (uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0) != 0 ||
      uv_listen((uv_stream_t *)&server, 1024, on_connection) != 0) {
    fprintf(stderr, "raw: cannot listen\n");
    return 1;
  }
  printf("listening\n");
  fflush(stdout);
  return uv_run(uv_default_loop(), UV_RUN_DEFAULT);
}
