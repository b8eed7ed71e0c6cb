#!/bin/sh
# tools/allocfail.sh BINARY SCRIPT...: run each script once to count its
# allocations (SPINDLE_FAIL_ALLOC=0), then once per allocation with that
# one failing (SPINDLE_FAIL_ALLOC=N, runtime/alloc.c). Every run must end
# in success or a Lua memory error ("not enough memory" on its output),
# within ALLOCFAIL_TIMEOUT seconds (default 20), with no sanitizer report
# and no death by a signal. Scripts get a certificate folder as arg[1]
# (scripts/ssl/make_certs.sh). ALLOCFAIL_STEP=K tries every Kth only;
# ALLOCFAIL_JOBS runs that many at once (default 2). Prints one line per
# script and a total; the output of a bad run is kept in $ALLOCFAIL_DIR
# (default build-asan/allocfail). Exit status 1 if any run was bad.
set -u
# Internal: tools/allocfail.sh --one BINARY N SCRIPT (environment set).
if [ "$1" = --one ]; then
  bin=$2; log="$ALLOCFAIL_DIR/$(basename "$4" .lua).$3.log"
  SPINDLE_FAIL_ALLOC=$3 timeout -k 5 "$ALLOCFAIL_TIMEOUT" "$bin" "$4" \
    "$ALLOCFAIL_CERTS" >"$log" 2>&1
  rc=$?
  if grep -q -e Sanitizer -e 'runtime error:' "$log"; then echo bad
  elif [ $rc -eq 0 ] && grep -q '^done$' "$log"; then echo ok; rm -f "$log"
  elif [ $rc -le 1 ] && grep -q 'not enough memory' "$log"; then
    echo mem; rm -f "$log"
  else echo bad; echo "exit status $rc" >>"$log"; fi
  exit 0
fi
bin=$1; shift
step=${ALLOCFAIL_STEP:-1}
jobs=${ALLOCFAIL_JOBS:-2}
tmo=${ALLOCFAIL_TIMEOUT:-20}
out=${ALLOCFAIL_DIR:-build-asan/allocfail}
rm -rf "$out"; mkdir -p "$out"
certs=$(mktemp -d)
trap 'rm -rf "$certs"' EXIT
sh scripts/ssl/make_certs.sh "$certs" >/dev/null 2>&1 || {
  echo "allocfail: make_certs.sh failed"; exit 1; }
export ALLOCFAIL_DIR=$out ALLOCFAIL_TIMEOUT=$tmo ALLOCFAIL_CERTS=$certs
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=87


total=0; bad=0
for s in "$@"; do
  n=$(SPINDLE_FAIL_ALLOC=0 "$bin" "$s" "$certs" 2>&1 >/dev/null |
    sed -n 's/^spindle: \([0-9]*\) allocations$/\1/p')
  [ -n "$n" ] || { echo "allocfail: $s: no allocation count"; exit 1; }
  res=$(seq "$step" "$step" "$n" |
    xargs -P "$jobs" -I{} sh "$0" --one "$bin" {} "$s")
  ok=$(echo "$res" | grep -c '^ok$'); mem=$(echo "$res" | grep -c '^mem$')
  b=$(echo "$res" | grep -c '^bad$')
  tried=$((ok + mem + b))
  echo "allocfail: $s: $n allocations, $tried runs: $ok succeeded," \
    "$mem memory errors, $b bad"
  total=$((total + tried)); bad=$((bad + b))
done
echo "allocfail: $total runs, $bad bad"
[ "$bad" -eq 0 ]
