#!/bin/sh
# bench/echo/run.sh: TCP echo and pipelined-line throughput of spindle,
# a raw libuv C server and luv (Lua 5.4), measured side by side in one run.
#
#   sh bench/echo/run.sh          (or: make bench-net)
#
# The servers run pinned to core 0, the load generator to core 1. Modes:
#   echo   50 connections, each sends 64 bytes and waits for the echo;
#   lines  50 connections, each keeps 16 lines (32 bytes + "\r\n") in
#          flight; the server answers every line (LineReceiver.sendLine).
# All servers are started first; then ROUNDS rounds each load every server
# in every mode in turn (a fresh set of connections, WARMUP seconds, then
# DURATION measured seconds), so that what other processes take from the
# cores falls on all of them alike. Reported per server and mode, as the
# median over the rounds: answered messages per second, the server's CPU
# (utime+stime from /proc/<pid>/stat over the measured window) and
# messages per CPU-second (its spread over the rounds in thousands), the
# server's user and system CPU nanoseconds per message; then msgs/s and
# msgs/CPU-s as ratios of the raw C server's.
# Environment: ROUNDS (default 3), WARMUP (s, 0.5), DURATION (s, 2),
# CONNS (50), SPINDLE (binary, default build/spindle), LUA (lua5.4),
# PERF (a server name: raw, spindle or luv; records `perf record -g` of that
# server in the first round into build/bench-echo/NAME.MODE.perf.data; read
# it with `perf report -i build/bench-echo/NAME.MODE.perf.data`).
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$root/build/bench-echo
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-0.5}
DURATION=${DURATION:-2}
CONNS=${CONNS:-50}
SPINDLE=${SPINDLE:-$root/build/spindle}
LUA=${LUA:-lua5.4}
results=$out/results.txt
servers="raw spindle luv"
# Seconds one load run may take before `timeout` ends it.
limit=$(awk -v w="$WARMUP" -v d="$DURATION" 'BEGIN { print int(w + d + 15) }')
# Seconds the servers may live: every load run of every round, and slack.
life=$(awk -v w="$WARMUP" -v d="$DURATION" -v r="$ROUNDS" \
  'BEGIN { print int(r * 6 * (w + d + 1) + 30) }')

mkdir -p "$out" || exit 1
: > "$results"

# Pin only where there are two cores to pin to.
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  pin_server="taskset -c 0"; pin_load="taskset -c 1"
else
  pin_server=""; pin_load=""
fi

uvflags=$(pkg-config --cflags --libs libuv) || {
  echo "bench/echo: libuv not found by pkg-config"; exit 1; }
cc -O2 -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -o "$out/loadgen" \
  "$here/loadgen.c" || exit 1
# shellcheck disable=SC2086
cc -O2 -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -o "$out/raw_server" \
  "$here/raw_server.c" $uvflags || exit 1

# Per server NAME: wrapper_NAME is the pid of the `timeout` around it,
# pid_NAME the server's own pid, down_NAME why it is not available.
wrappers=""

stop_servers() {
  [ -n "$wrappers" ] || return 0
  # shellcheck disable=SC2086
  kill -TERM $wrappers 2>/dev/null
  i=0
  while [ $i -lt 20 ]; do
    alive=""
    for w in $wrappers; do kill -0 "$w" 2>/dev/null && alive="$alive $w"; done
    [ -n "$alive" ] || break
    sleep 0.1; i=$((i + 1))
  done
  for name in $servers; do
    eval "p=\${pid_$name:-}"
    [ -n "$p" ] && kill -KILL "$p" 2>/dev/null
  done
  # shellcheck disable=SC2086
  kill -KILL $wrappers 2>/dev/null
  for w in $wrappers; do wait "$w" 2>/dev/null; done
  wrappers=""
}
trap 'stop_servers' EXIT
trap 'stop_servers; exit 130' INT TERM

# start_server NAME CMD...: run CMD (bounded to $life seconds by `timeout`);
# wait up to 5 s for a port (or UNAVAILABLE) line per mode in NAME.ports.
start_server() {
  name=$1; shift
  : > "$out/$name.ports"
  # shellcheck disable=SC2086
  timeout -s TERM "$life" $pin_server "$@" > "$out/$name.ports" \
    2> "$out/$name.err" &
  w=$!
  wrappers="$wrappers $w"
  eval "wrapper_$name=$w"
  i=0
  while [ $i -lt 50 ]; do
    if [ "$(grep -c -E '^(ECHO|LINES|UNAVAILABLE) ' \
         "$out/$name.ports")" -ge 2 ]; then
      # The server is the wrapper's child (taskset has exec'd it).
      p=$(cat "/proc/$w/task/$w/children" 2>/dev/null | awk '{print $1}')
      [ -n "$p" ] || p=$(pgrep -P "$w" | head -n 1)
      eval "pid_$name=\$p"
      return 0
    fi
    kill -0 "$w" 2>/dev/null || break
    sleep 0.1; i=$((i + 1))
  done
  why=$(head -c 200 "$out/$name.err" | tr '\n' ' ')
  eval "down_$name=\"not available (\${why:-server did not start})\""
  return 1
}

# measure NAME MODE ROUND: load the port the server printed for MODE.
measure() {
  name=$1; mode=$2; round=$3
  eval "down=\${down_$name:-}; server=\${pid_$name:-}"
  if [ -n "$down" ]; then
    echo "$name $mode NA $down" >> "$results"; return; fi
  key=$(echo "$mode" | tr a-z A-Z)
  port=$(awk -v k="$key" '$1 == k { print $2 }' "$out/$name.ports")
  if [ -z "$port" ]; then
    why=$(awk -v k="$key" '$1 == "UNAVAILABLE" && $2 == k {
      $1 = ""; $2 = ""; sub(/^ +/, ""); print }' "$out/$name.ports")
    echo "$name $mode NA not available (${why:-no port})" >> "$results"
    return
  fi
  perf=""
  if [ "${PERF:-}" = "$name" ] && [ "$round" = 1 ] && [ -n "$server" ]; then
    perf record -q -g -p "$server" -o "$out/$name.$mode.perf.data" \
      2> "$out/$name.$mode.perf.err" &
    perf=$!
  fi
  # shellcheck disable=SC2086
  line=$(timeout "$limit" $pin_load "$out/loadgen" \
    -p "$port" -m "$mode" -c "$CONNS" -w "$WARMUP" -d "$DURATION" \
    -P "$server" 2> "$out/$name.$mode.err")
  if [ -n "$perf" ]; then kill -INT "$perf"; wait "$perf"; fi
  if [ -n "$line" ]; then
    echo "$name $mode $line" >> "$results"
  else
    echo "$name $mode NA failed: $(head -c 200 "$out/$name.$mode.err" |
      tr '\n' ' ')" >> "$results"
  fi
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date +%s)

start_server raw "$out/raw_server"
if [ -x "$SPINDLE" ]; then
  start_server spindle "$SPINDLE" "$here/spindle_server.lua"
else
  down_spindle="not available ($SPINDLE not built)"
fi
if $LUA -e 'require "luv"' 2>/dev/null; then
  start_server luv "$LUA" "$here/luv_server.lua"
else
  down_luv="not available ($LUA cannot require luv)"
fi

r=1
while [ "$r" -le "$ROUNDS" ]; do
  for mode in echo lines; do
    for name in $servers; do measure "$name" "$mode" "$r"; done
  done
  r=$((r + 1))
done
stop_servers

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo
echo "bench/echo: $CONNS connections over 127.0.0.1; median of $ROUNDS" \
  "rounds of ${DURATION} s measured after ${WARMUP} s warm-up;"
echo "  servers ${pin_server:-unpinned}, load generator ${pin_load:-unpinned}"
echo "  echo: 64-byte ping-pong; lines: 16 lines of 32 B + CRLF in flight" \
  "per connection"
echo "  load average before: $load_before  after: $load_after" \
  "(other processes share the cores)"
awk '
  function median(list,    a, k, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++)
      for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) {
        t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function lo(list,    a, n, i, m) {
    n = split(list, a, " "); m = a[1]
    for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]
    return m
  }
  function hi(list,    a, n, i, m) {
    n = split(list, a, " "); m = a[1]
    for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]
    return m
  }
  { key = $1 " " $2; seen[key] = 1 }
  $3 == "NA" {
    $1 = ""; $2 = ""; $3 = ""; sub(/^ +/, ""); na[key] = $0; nfail[key]++
    next
  }
  {
    for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    secs = v["secs"]; cpu = v["srv_cpu"]
    rates[key] = rates[key] " " v["rate"]
    pcs[key] = pcs[key] " " (cpu > 0 ? v["msgs"] / cpu : 0)
    cpus[key] = cpus[key] " " (secs > 0 ? 100 * cpu / secs : 0)
    n = v["msgs"] > 0 ? 1e9 / v["msgs"] : 0
    usrns[key] = usrns[key] " " n * v["srv_usr"]
    sysns[key] = sysns[key] " " n * v["srv_sys"]
    lgs[key] = lgs[key] " " (secs > 0 ? 100 * v["lg_cpu"] / secs : 0)
    nok[key]++
  }
  END {
    label["raw"] = "raw C (libuv)"; label["spindle"] = "spindle"
    label["luv"] = "luv (Lua 5.4)"
    split("echo lines", modes, " "); split("raw spindle luv", names, " ")
    for (k in nok) {
      rate[k] = median(rates[k]); percpu[k] = median(pcs[k])
      spread[k] = sprintf("%d-%d", lo(pcs[k]) / 1000, hi(pcs[k]) / 1000)
    }
    printf "%-14s %-6s %8s %7s %10s %9s %9s %6s %9s %6s\n", "server",
      "mode", "msgs/s", "srv CPU", "msgs/CPU-s", "(k range)", "usr+sys ns",
      "x raw", "x raw/CPU", "lg CPU"
    for (m = 1; m <= 2; m++) for (s = 1; s <= 3; s++) {
      k = names[s] " " modes[m]; r = "raw " modes[m]
      if (!(k in seen)) continue
      if (!(k in nok)) {
        printf "%-14s %-6s %s\n", label[names[s]], modes[m], na[k]; continue }
      xr = (r in nok && rate[r] > 0) ? sprintf("%.2fx", rate[k] / rate[r]) : "-"
      xc = (r in nok && percpu[r] > 0) ? \
        sprintf("%.2fx", percpu[k] / percpu[r]) : "-"
      ns = sprintf("%d+%d", median(usrns[k]), median(sysns[k]))
      printf "%-14s %-6s %8d %6.0f%% %10d %9s %10s %6s %9s %5.0f%%%s\n",
        label[names[s]], modes[m], rate[k], median(cpus[k]), percpu[k],
        spread[k], ns, xr, xc, median(lgs[k]),
        (k in nfail) ? "  (" nfail[k] " failed: " na[k] ")" : ""
    }
  }' "$results"
echo "  (whole run: $(( $(date +%s) - started )) s; raw results in" \
  "build/bench-echo/results.txt)"
