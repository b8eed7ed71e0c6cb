/*
** bench/threads/raw.c [seconds]: the raw C (libuv) peer of
** threads/spindle.lua: uv_queue_work of a tiny function (x + 1), its
** result read in the after-work callback on the loop, which queues the
** next; WINDOW calls in flight. Prints "raw <round trips/second> <calls>".
*/
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#define WINDOW 64

typedef struct job {
  uv_work_t req;
  long x, y;
} job;

static long done;
static uint64_t t0, limit;

static void work(uv_work_t *r) {
  job *j = (job *) r;
  j->y = j->x + 1;
}

static void after(uv_work_t *r, int status) {
  job *j = (job *) r;
  (void) status;
  done++;
  if (uv_hrtime() - t0 >= limit) {
    free(j);
    return;
  }
  j->x = j->y;
  uv_queue_work(uv_default_loop(), &j->req, work, after);
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 2;
  limit = (uint64_t) (secs * 1e9);
  t0 = uv_hrtime();
  for (int i = 0; i < WINDOW; i++) {
    job *j = calloc(1, sizeof *j);
    if (!j) return 1;
    uv_queue_work(uv_default_loop(), &j->req, work, after);
  }
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
  printf("raw %.0f %ld\n", (double) done / ((double) (uv_hrtime() - t0) / 1e9),
         done);
  return 0;
}
