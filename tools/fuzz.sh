#!/bin/sh
# tools/fuzz.sh run OUT SECONDS BIN...: run each libFuzzer harness BIN
#   (named by its file name, NAME) for SECONDS, from its seeds in
#   fuzz/corpus/NAME (new inputs go to OUT/corpus/NAME, a crash to
#   OUT/crash/NAME-*), and print its executions. Exit status 1 if any
#   harness crashed: the input that did then belongs in fuzz/corpus/NAME/
#   (make test replays it) with the fix.
#   FUZZ_JOBS=N (default: the machine's cores) runs N fuzzing processes
#   at once (libFuzzer's -fork=N: jobs of a few seconds each from the
#   shared corpus, stopped by the first crash); 1 runs the harness in
#   this process. FUZZ_RUNS=N stops a harness after N executions, in one
#   process (SECONDS still bounds it).
#   Inputs are at most 1 KiB (256 bytes for framers; 128 for http, fed
#   three times through a web.Site and a ResponseParser, the third byte
#   by byte; 64 for marshal_copy, whose cost is per object made, packed
#   and unpacked twice: 64 bytes are 30-60 of gen's ops, enough for
#   sharing, cycles, shared upvalues, metatables and nesting). Longer
#   corpus inputs are cut to that while fuzzing, and replayed whole by
#   make test-replay. Leak checks
#   are off (the harnesses keep their Lua states for the whole run; the
#   ASan suite checks leaks).
# tools/fuzz.sh replay BIN...: run each BIN (linked with fuzz/replay.c)
#   once on each file of fuzz/corpus/NAME.
set -u
mode=$1; shift
status=0
case "$mode" in
run)
  dir=$1; secs=$2; shift 2
  jobs=${FUZZ_JOBS:-$(nproc)}
  [ -n "${FUZZ_RUNS:-}" ] && jobs=1
  mkdir -p "$dir/crash"
  for bin in "$@"; do
    n=$(basename "$bin")
    mkdir -p "$dir/corpus/$n" "fuzz/corpus/$n"
    log="$dir/fuzz-$n.log"
    # The Lua-level harnesses do work in proportion to the input: smaller
    # (marshal_copy: ~14,000 inputs/s of a core at 64 bytes, ~3,900 at
    # 256).
    case "$n" in
      marshal_copy) max=64 ;; framers) max=256 ;; http) max=128 ;;
      *) max=1024 ;;
    esac
    fork=
    [ "$jobs" -gt 1 ] && fork=-fork=$jobs
    start=$(date +%s)
    "$bin" $fork -max_total_time="$secs" -print_final_stats=1 \
      -artifact_prefix="$dir/crash/$n-" -timeout=10 -rss_limit_mb=4096 \
      -detect_leaks=0 -max_len=$max ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} \
      "$dir/corpus/$n" "fuzz/corpus/$n" >"$log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    [ "$took" -gt 0 ] || took=1
    if [ -n "$fork" ]; then
      # The parent's progress lines: "#EXECS: cov: ... job: N ...".
      execs=$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p' "$log" | tail -1)
    else
      execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" |
        head -1)
    fi
    execs=${execs:-0}
    rate=$((execs / took))
    if [ $rc -eq 0 ]; then
      echo "fuzz: $n: $execs executions in ${took}s ($rate/s, $jobs" \
        "process$([ "$jobs" -gt 1 ] && echo es)), $(ls "$dir/corpus/$n" |
        wc -l) new corpus inputs, no crash"
    else
      echo "fuzz: $n: FAILED after $execs executions (log: $log):"
      grep -E -A12 'ERROR|harness:|Test unit written' "$log" | head -40
      status=1
    fi
  done
  ;;
replay)
  for bin in "$@"; do
    n=$(basename "$bin")
    "$bin" "fuzz/corpus/$n" || { echo "replay: $n FAILED"; status=1; }
  done
  ;;
*)
  echo "usage: tools/fuzz.sh run OUT SECONDS BIN... | replay BIN..."
  exit 2
  ;;
esac
exit $status
