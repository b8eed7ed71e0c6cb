#!/bin/sh
# tools/busted.sh BINARY [busted args...]: run the busted suite under BINARY,
# then print busted's counts as one closing line "N passed, N failed".
# Exits non-zero when a spec failed, when busted printed no summary, or when
# busted itself exited non-zero: a sanitizer report (LeakSanitizer runs at
# exit, after the summary) or a crash after the summary fails the run too.
bin=$1; shift
out=$(mktemp)
rcfile=$(mktemp)
{ busted --lua="$bin" "$@" 2>&1; echo $? > "$rcfile"; } | tee "$out"
rc=$(cat "$rcfile")
line=$(grep -E '^[0-9]+ success' "$out" | tail -n 1)
rm -f "$out" "$rcfile"
ok=$(echo "$line" | sed -n 's/^\([0-9]*\) success.*/\1/p')
failed=$(echo "$line" | sed -n 's/.* \([0-9]*\) failures\{0,1\} .*/\1/p')
errors=$(echo "$line" | sed -n 's/.* \([0-9]*\) errors\{0,1\} .*/\1/p')
pending=$(echo "$line" | sed -n 's/.* \([0-9]*\) pending.*/\1/p')
if [ -z "$ok" ]; then
  echo "spec: busted printed no summary (crashed?), exit status ${rc:-unknown}"
  exit 1
fi
echo "spec: $ok passed, $((failed + errors)) failed, ${pending:-0} skipped"
if [ "$((failed + errors))" -eq 0 ] && [ "${rc:-1}" -ne 0 ]; then
  echo "spec: busted exited with status ${rc:-unknown} (sanitizer report or" \
    "crash after the summary?)"
  exit 1
fi
[ "$((failed + errors))" -eq 0 ]
