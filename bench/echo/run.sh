#!/bin/sh
# bench/echo/run.sh: TCP echo and pipelined-line throughput of spindle,
# a raw libuv C server and luv (Lua 5.4), measured back to back in one run.
#
#   sh bench/echo/run.sh          (or: make bench-net)
#
# Each server runs pinned to core 0, the load generator to core 1. Modes:
#   echo   50 connections, each sends 64 bytes and waits for the echo;
#   lines  50 connections, each keeps 16 lines (32 bytes + "\r\n") in
#          flight; the server answers every line (LineReceiver.sendLine).
# Reported per server and mode: answered messages per second, the server's
# CPU (utime+stime from /proc/<pid>/stat over the measured window) and
# messages per CPU-second, and both as ratios of the raw C server's.
# Environment: WARMUP (s, default 1), DURATION (s, default 5), CONNS (50),
# SPINDLE (binary, default build/spindle), LUA (default lua5.4),
# PERF (a server name: raw, spindle or luv; records `perf record -g` of that
# server into build/bench-echo/NAME.MODE.perf.data; read it with
# `perf report -i build/bench-echo/NAME.MODE.perf.data --no-children`).
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$root/build/bench-echo
WARMUP=${WARMUP:-1}
DURATION=${DURATION:-5}
CONNS=${CONNS:-50}
SPINDLE=${SPINDLE:-$root/build/spindle}
LUA=${LUA:-lua5.4}
results=$out/results.txt
# Seconds one load run may take before `timeout` ends it.
limit=$(awk -v w="$WARMUP" -v d="$DURATION" 'BEGIN { print int(w + d + 15) }')

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

wrapper=""   # pid of the `timeout` process around the running server
server=""    # pid of the server itself

stop_server() {
  [ -n "$wrapper" ] || return 0
  kill -TERM "$wrapper" 2>/dev/null
  i=0
  while kill -0 "$wrapper" 2>/dev/null && [ $i -lt 20 ]; do
    sleep 0.1; i=$((i + 1)); done
  kill -KILL "$wrapper" 2>/dev/null
  [ -n "$server" ] && kill -KILL "$server" 2>/dev/null
  wait "$wrapper" 2>/dev/null
  wrapper=""; server=""
}
trap 'stop_server' EXIT
trap 'stop_server; exit 130' INT TERM

# start_server NAME CMD...: run CMD (bounded to 2 minutes by `timeout`),
# wait up to 5 s for its port lines in $out/NAME.ports.
start_server() {
  name=$1; shift
  : > "$out/$name.ports"
  # shellcheck disable=SC2086
  timeout -s TERM 120 $pin_server "$@" > "$out/$name.ports" \
    2> "$out/$name.err" &
  wrapper=$!
  i=0
  while [ $i -lt 50 ]; do
    # Two lines: a port or UNAVAILABLE for each mode; the server is then
    # the wrapper's child (taskset has exec'd it).
    if [ "$(grep -c -E '^(ECHO|LINES|UNAVAILABLE) ' \
         "$out/$name.ports")" -ge 2 ]; then
      server=$(cat "/proc/$wrapper/task/$wrapper/children" 2>/dev/null |
        awk '{print $1}')
      [ -n "$server" ] || server=$(pgrep -P "$wrapper" | head -n 1)
      return 0
    fi
    kill -0 "$wrapper" 2>/dev/null || break
    sleep 0.1; i=$((i + 1))
  done
  return 1
}

# measure NAME MODE: run the load on the port the server printed for MODE.
measure() {
  name=$1; mode=$2
  key=$(echo "$mode" | tr a-z A-Z)
  port=$(awk -v k="$key" '$1 == k { print $2 }' "$out/$name.ports")
  if [ -z "$port" ]; then
    why=$(awk -v k="$key" '$1 == "UNAVAILABLE" && $2 == k {
      $1 = ""; $2 = ""; sub(/^ +/, ""); print }' "$out/$name.ports")
    echo "$name $mode NA not available (${why:-server did not start})" \
      >> "$results"
    return
  fi
  perf=""
  if [ "${PERF:-}" = "$name" ] && [ -n "$server" ]; then
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
    echo "$name $mode NA failed: $(head -c 200 "$out/$name.$mode.err")" \
      >> "$results"
  fi
}

# run_server NAME CMD...: start, measure both modes, stop.
run_server() {
  name=$1; shift
  if start_server "$name" "$@"; then
    measure "$name" echo
    measure "$name" lines
  else
    why=$(head -c 200 "$out/$name.err" | tr '\n' ' ')
    for mode in echo lines; do
      echo "$name $mode NA not available (${why:-server did not start})" \
        >> "$results"
    done
  fi
  stop_server
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date +%s)

run_server raw "$out/raw_server"
if [ -x "$SPINDLE" ]; then
  run_server spindle "$SPINDLE" "$here/spindle_server.lua"
else
  for mode in echo lines; do
    echo "spindle $mode NA not available ($SPINDLE not built)" >> "$results"
  done
fi
if $LUA -e 'require "luv"' 2>/dev/null; then
  run_server luv "$LUA" "$here/luv_server.lua"
else
  for mode in echo lines; do
    echo "luv $mode NA not available ($LUA cannot require luv)" >> "$results"
  done
fi

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo
echo "bench/echo: $CONNS connections over 127.0.0.1, ${DURATION} s measured" \
  "after ${WARMUP} s warm-up; server ${pin_server:-unpinned}," \
  "load generator ${pin_load:-unpinned}"
echo "  echo: 64-byte ping-pong; lines: 16 lines of 32 B + CRLF in flight" \
  "per connection"
echo "  load average before: $load_before  after: $load_after" \
  "(other processes share the cores)"
awk '
  { key = $1 " " $2; name[key] = $1; mode[key] = $2 }
  $3 == "NA" { $1 = ""; $2 = ""; $3 = ""; sub(/^ +/, ""); na[key] = $0; next }
  {
    for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    rate[key] = v["rate"]; secs = v["secs"]
    cpu[key] = v["srv_cpu"]; lg[key] = v["lg_cpu"]
    percpu[key] = cpu[key] > 0 ? v["msgs"] / cpu[key] : 0
    cpupct[key] = secs > 0 ? 100 * cpu[key] / secs : 0
    lgpct[key] = secs > 0 ? 100 * lg[key] / secs : 0
  }
  END {
    label["raw"] = "raw C (libuv)"; label["spindle"] = "spindle"
    label["luv"] = "luv (Lua 5.4)"
    printf "%-14s %-6s %10s %8s %11s %9s %11s %8s\n", "server", "mode",
      "msgs/s", "srv CPU", "msgs/CPU-s", "x raw", "x raw/CPU", "lg CPU"
    split("echo lines", modes, " "); split("raw spindle luv", names, " ")
    for (m = 1; m <= 2; m++) for (s = 1; s <= 3; s++) {
      k = names[s] " " modes[m]; r = "raw " modes[m]
      if (!(k in name)) continue
      if (k in na) {
        printf "%-14s %-6s %s\n", label[name[k]], mode[k], na[k]; continue }
      xr = (r in rate && rate[r] > 0) ? sprintf("%.2fx", rate[k] / rate[r]) : "-"
      xc = (r in percpu && percpu[r] > 0) ? \
        sprintf("%.2fx", percpu[k] / percpu[r]) : "-"
      printf "%-14s %-6s %10d %7.0f%% %11d %9s %11s %7.0f%%\n",
        label[name[k]], mode[k], rate[k], cpupct[k], percpu[k], xr, xc,
        lgpct[k]
    }
  }' "$results"
echo "  (whole run: $(( $(date +%s) - started )) s)"
