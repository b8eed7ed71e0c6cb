#!/bin/sh
# bench/web/run.sh: HTTP/1.1 hello world, spindle.web beside raw C on
# libuv (with llhttp), Node's http and Twisted web, measured in one run
# with wrk (Debian's package).
#
#   sh bench/web/run.sh            (or: make bench-web; not part of make test)
#
# Each server runs pinned to core 0, wrk to core 1 (one thread, CONNS
# connections). Modes: keepalive (one request in flight per connection)
# and pipelined (16 in flight, bench/web/pipeline.lua). For each server
# and mode, ROUNDS runs of DURATION seconds after a WARMUP run; reported:
# requests per second (wrk), the server's CPU seconds over the run
# (utime+stime of every thread, /proc/<pid>/stat) and requests per
# CPU-second, the best round; then spindle's requests per CPU-second as a
# ratio of raw C's and of Node's. The machine's other load falls on every
# server alike only roughly: read the numbers as such.
# Environment: ROUNDS (3), WARMUP (s, 1), DURATION (s, 3), CONNS (50),
# SPINDLE (build/spindle), NODE (node), TWISTED_PY (/usr/bin/python3),
# SERVERS ("raw spindle node twisted").
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$root/build/bench-web
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
DURATION=${DURATION:-3}
CONNS=${CONNS:-50}
SPINDLE=${SPINDLE:-$root/build/spindle}
NODE=${NODE:-node}
TWISTED_PY=${TWISTED_PY:-/usr/bin/python3}
SERVERS=${SERVERS:-"raw spindle node twisted"}
PORT=${PORT:-18931}
mkdir -p "$out" || exit 1
results=$out/results.txt
: > "$results"

command -v wrk >/dev/null || { echo "bench/web: wrk is not installed" \
  "(apt-get install wrk)"; exit 1; }
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  pin_server="taskset -c 0"; pin_load="taskset -c 1"
else
  pin_server=""; pin_load=""
fi

# llhttp from Debian's node-llhttp, as the spindle build does (its
# generated C is not ours to warn about).
for f in api http llhttp; do
  cc -O2 -std=c11 -w -I/usr/share/include/llhttp -c \
    -o "$out/llhttp_$f.o" "/usr/share/llhttp/$f.c" || exit 1
done
# shellcheck disable=SC2046
cc -O2 -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE \
  -I/usr/share/include/llhttp -o "$out/raw" "$here/raw.c" \
  "$out/llhttp_api.o" "$out/llhttp_http.o" "$out/llhttp_llhttp.o" \
  $(pkg-config --cflags --libs libuv) || exit 1

ticks=$(getconf CLK_TCK)

# CPU ticks (user + system) used so far by process $1.
cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

start_server() {
  case $1 in
    raw) $pin_server "$out/raw" "$PORT" ;;
    spindle) $pin_server "$SPINDLE" "$here/hello.lua" "$PORT" ;;
    node) $pin_server "$NODE" "$here/hello_node.js" "$PORT" ;;
    twisted) $pin_server "$TWISTED_PY" "$here/hello_twisted.py" "$PORT" ;;
  esac > "$out/$1.log" 2>&1 &
  pid=$!
  i=0
  while ! grep -q listening "$out/$1.log" 2>/dev/null; do
    i=$((i + 1))
    [ $i -gt 100 ] && { echo "bench/web: $1 did not start"; \
      cat "$out/$1.log"; kill "$pid"; return 1; }
    sleep 0.1
  done
}

# One wrk run: prints "requests/s cpu-seconds".
load() { # mode seconds
  script=""
  [ "$1" = pipelined ] && script="-s $here/pipeline.lua"
  before=$(cpu_ticks "$pid")
  # shellcheck disable=SC2086
  rps=$($pin_load wrk -t1 -c"$CONNS" -d"${2}s" $script \
    "http://127.0.0.1:$PORT/" | awk '/^Requests\/sec/ { print $2 }')
  after=$(cpu_ticks "$pid")
  awk -v r="$rps" -v a="$after" -v b="$before" -v t="$ticks" \
    'BEGIN { printf "%s %.2f\n", r, (a - b) / t }'
}

printf "%-8s %-10s %12s %8s %14s\n" server mode "req/s" "cpu-s" \
  "req/cpu-s"
for s in $SERVERS; do
  start_server "$s" || continue
  for mode in keepalive pipelined; do
    load "$mode" "$WARMUP" > /dev/null
    best=""
    r=0
    while [ $r -lt "$ROUNDS" ]; do
      line=$(load "$mode" "$DURATION")
      best=$(printf "%s\n%s\n" "$best" "$line" | awk 'NF == 2 && $2 > 0 {
        e = $1 * '"$DURATION"' / $2; if (e > m) { m = e; l = $0 } }
        END { print l }')
      r=$((r + 1))
    done
    set -- $best
    eff=$(awk -v r="$1" -v c="$2" -v d="$DURATION" \
      'BEGIN { printf "%.0f", r * d / c }')
    printf "%-8s %-10s %12.0f %8s %14s\n" "$s" "$mode" "$1" "$2" "$eff"
    echo "$s $mode $1 $2 $eff" >> "$results"
  done
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
done

echo
for mode in keepalive pipelined; do
  awk -v m="$mode" '$2 == m { e[$1] = $5 } END {
    if (e["spindle"] && e["raw"])
      printf "%s: spindle/raw C = %.2fx per CPU-second", m,
        e["spindle"] / e["raw"];
    if (e["spindle"] && e["node"])
      printf ", spindle/Node = %.2fx", e["spindle"] / e["node"];
    if (e["spindle"] && e["twisted"])
      printf ", spindle/Twisted = %.2fx", e["spindle"] / e["twisted"];
    printf "\n" }' "$results"
done
