#!/bin/sh
# bench/deferred_provenance.sh BASE [seconds]: bench/deferred.lua (chains
# per second) under build/spindle, whose Deferreds record where they were
# made, and under BASE, a spindle built without that (say, from the
# commit before), side by side with the ratio. Three alternating rounds,
# each binary's best kept, as bench/deferred.sh does.
# Usage: sh bench/deferred_provenance.sh /tmp/base/build/spindle [1]
set -e
base=${1:?usage: deferred_provenance.sh BASE_BINARY [seconds]}
secs=${2:-1}
bin=${SPINDLE:-build/spindle}
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }'; }
now=0; before=0
for round in 1 2 3; do
  now=$(best "$now" "$($bin bench/deferred.lua "$secs" | awk '{print $2}')")
  before=$(best "$before" \
    "$($base bench/deferred.lua "$secs" | awk '{print $2}')")
done
echo "== Deferred chains/second, with and without provenance"
printf '%-34s %12s\n' "without (BASE)" "$before"
printf '%-34s %12s\n' "with provenance (file:line, age)" "$now"
awk -v a="$now" -v b="$before" \
  'BEGIN { printf "%-34s %11.1f%%\n", "change", (a / b - 1) * 100 }'
