#!/bin/sh
# tools/fuzz.sh run DIR SECONDS NAME...: run each libFuzzer harness
#   DIR/fuzz/NAME for SECONDS, from its seeds in fuzz/corpus/NAME (new
#   inputs go to DIR/corpus/NAME, a crash to DIR/crash/NAME-*), and print
#   its executions. Exit status 1 if any harness crashed: the input that
#   did then belongs in fuzz/corpus/NAME/ (make test replays it) with the
#   fix. FUZZ_RUNS=N stops a harness after N executions (SECONDS still
#   bounds it); inputs are at most 1 KiB (256 bytes for framers; 64 for
#   marshal_copy, whose cost is per object made, packed and unpacked twice:
#   64 bytes are 30-60 of gen's ops, enough for sharing, cycles, shared
#   upvalues, metatables and nesting, and its corpus's longer inputs are
#   still replayed whole by make test-replay). Leak checks are off (the harnesses keep their Lua states for
#   the whole run; the ASan suite checks leaks).
# tools/fuzz.sh replay DIR NAME...: run DIR/fuzz/NAME (linked with
#   fuzz/replay.c) once on each file of fuzz/corpus/NAME.
set -u
mode=$1; dir=$2; shift 2
status=0
case "$mode" in
run)
  secs=$1; shift
  mkdir -p "$dir/crash"
  for n in "$@"; do
    mkdir -p "$dir/corpus/$n" "fuzz/corpus/$n"
    log="$dir/fuzz-$n.log"
    # The Lua-level harnesses do work in proportion to the input: smaller
    # (marshal_copy: ~11,000 inputs/s of CPU at 64 bytes, ~3,900 at 256).
    case "$n" in marshal_copy) max=64 ;; framers) max=256 ;; *) max=1024 ;; esac
    "$dir/fuzz/$n" -max_total_time="$secs" -print_final_stats=1 \
      -artifact_prefix="$dir/crash/$n-" -timeout=10 -rss_limit_mb=4096 \
      -detect_leaks=0 -max_len=$max ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} \
      "$dir/corpus/$n" "fuzz/corpus/$n" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | head -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | head -1)
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log")
    if [ $rc -eq 0 ]; then
      echo "fuzz: $n: ${execs:-?} executions in ${took:-$secs}s (${rate:-?}/s)," \
        "corpus $(ls "$dir/corpus/$n" | wc -l), no crash"
    else
      echo "fuzz: $n: FAILED after ${execs:-?} executions (log: $log):"
      grep -E -A12 'ERROR|harness:|Test unit written' "$log" | head -40
      status=1
    fi
  done
  ;;
replay)
  for n in "$@"; do
    "$dir/fuzz/$n" "fuzz/corpus/$n" || { echo "replay: $n FAILED"; status=1; }
  done
  ;;
*)
  echo "usage: tools/fuzz.sh run DIR SECONDS NAME... | replay DIR NAME..."
  exit 2
  ;;
esac
exit $status
