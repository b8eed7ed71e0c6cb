/*
** bench/timers/raw.c N: the raw C (libuv) peer of timers/spindle.lua: one
** malloc'd uv_timer_t per timer, freed in its close callback.
*/
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

static int fired, n;

static void on_close(uv_handle_t *h) {
  free(h);
}

static void on_timer(uv_timer_t *t) {
  fired++;
  uv_close((uv_handle_t *) t, on_close);
}

int main(int argc, char **argv) {
  uv_loop_t *loop = uv_default_loop();
  n = argc > 1 ? atoi(argv[1]) : 200000;
  uint64_t t0 = uv_hrtime();
  for (int i = 1; i <= n; i++) {
    uv_timer_t *t = malloc(sizeof *t);
    if (!t) return 1;
    uv_timer_init(loop, t);
    uv_timer_start(t, on_timer, (uint64_t) (i % 100), 0);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  printf("raw %.3f\n", (double) (uv_hrtime() - t0) / 1e9);
  return fired == n ? 0 : 1;
}
