#!/bin/sh
# tools/busted.sh BINARY [busted args...]: run the busted suite under BINARY,
# then print busted's counts as one closing line "N passed, N failed".
bin=$1; shift
out=$(mktemp)
busted --lua="$bin" "$@" 2>&1 | tee "$out"
line=$(grep -E '^[0-9]+ success' "$out" | tail -n 1)
rm -f "$out"
ok=$(echo "$line" | sed -n 's/^\([0-9]*\) success.*/\1/p')
failed=$(echo "$line" | sed -n 's/.* \([0-9]*\) failures\{0,1\} .*/\1/p')
errors=$(echo "$line" | sed -n 's/.* \([0-9]*\) errors\{0,1\} .*/\1/p')
pending=$(echo "$line" | sed -n 's/.* \([0-9]*\) pending.*/\1/p')
if [ -z "$ok" ]; then
  echo "spec: busted printed no summary (crashed?)"
  exit 1
fi
echo "spec: $ok passed, $((failed + errors)) failed, ${pending:-0} skipped"
[ "$((failed + errors))" -eq 0 ]
