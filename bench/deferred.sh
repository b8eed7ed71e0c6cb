#!/bin/sh
# bench/deferred.sh: chains per second (make a Deferred, add ten callbacks,
# fire it) for spindle's C Deferred, a plain-Lua Deferred of the same
# semantics on the same binary, and Twisted's Deferred on python3, side by
# side in one run, with the ratios.
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
