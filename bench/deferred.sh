#!/bin/sh
# bench/deferred.sh: chains per second (make a Deferred, add ten callbacks,
# fire it) for spindle's C Deferred, a plain-Lua Deferred of the same
# semantics on the same binary, and Twisted's Deferred on python3, side by
# side in one run, with the ratios. Then the cost of failing Deferreds
# (bench/deferred_fail.lua): 1000 failures with 1,000,000 newer live
# objects beside the same with none (target: at most 2x), and n Deferreds
# failed newest first (linear in n), beside Twisted.
# Usage: sh bench/deferred.sh [seconds per run] (from the repository root)
set -e
secs=${1:-1}
bin=${SPINDLE:-build/spindle}
py=/usr/bin/python3
# The machine may be shared: run the three in turn, three rounds, and keep
# each one's best.
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }'; }
c=0; plain=0; tw=""
havetw=no
$py -c 'import twisted' 2>/dev/null && havetw=yes && tw=0
for round in 1 2 3; do
  c=$(best "$c" "$($bin bench/deferred.lua "$secs" | awk '{print $2}')")
  plain=$(best "$plain" \
    "$($bin bench/deferred_plain.lua "$secs" | awk '{print $2}')")
  if [ $havetw = yes ]; then
    tw=$(best "$tw" \
      "$($py bench/deferred_twisted.py "$secs" | awk '{print $2}')")
  fi
done
echo "== Deferred chains/second (a Deferred, ten callbacks, fired)"
printf '%-26s %12s\n' "spindle (C Deferred)" "$c"
printf '%-26s %12s\n' "plain Lua Deferred" "$plain"
if [ -n "$tw" ]; then
  twv=$($py -c 'import twisted; print(twisted.__version__)')
  printf '%-26s %12s\n' "Twisted $twv" "$tw"
else
  printf '%-26s %12s\n' "Twisted" "(python3-twisted missing)"
fi
awk -v c="$c" -v p="$plain" -v t="$tw" 'BEGIN {
  printf "ratio spindle / plain Lua: %.2fx\n", c / p
  if (t != "") printf "ratio spindle / Twisted:   %.2fx\n", c / t
}'

# Failing Deferreds: seconds, the best of three runs, each in its own
# process.
fastest() {
  awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }'
}
failtime() {
  t=""
  for round in 1 2 3; do
    t=$(fastest "$t" "$("$@" | awk '{print $3}')")
  done
  echo "$t"
}
echo "== Failing Deferreds (seconds; errback on each, newest first)"
none=$(failtime $bin bench/deferred_fail.lua heap 0)
many=$(failtime $bin bench/deferred_fail.lua heap 1000000)
printf '%-52s %10s\n' "1000 failures, no newer objects" "$none"
printf '%-52s %10s\n' "1000 failures, 1,000,000 newer live objects" "$many"
awk -v a="$none" -v b="$many" 'BEGIN {
  printf "ratio with / without newer objects: %.2fx", b / a
  print " (target: at most 2x)"
}'
printf '%-30s %10s %10s\n' "Deferreds failed" "spindle" \
  "$([ -n "$tw" ] && echo Twisted)"
for n in 16000 100000; do
  s=$(failtime $bin bench/deferred_fail.lua reverse $n)
  t=""
  if [ -n "$tw" ]; then
    t=$(failtime $py bench/deferred_fail_twisted.py reverse $n)
  fi
  printf '%-30s %10s %10s\n' "$n" "$s" "$t"
done
