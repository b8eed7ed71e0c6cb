#!/bin/sh
# tools/test/busted_sh_test.sh: tools/busted.sh must fail when busted
# exits non-zero after a green summary (as when LeakSanitizer reports at
# exit), and pass when busted exits 0 with the same summary. A fake
# `busted` on PATH plays both parts. Run by `make test-tools`.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fake() {
  cat > "$dir/busted" <<FAKE
#!/bin/sh
echo "1 success / 0 failures / 0 errors / 0 pending : 0.01 seconds"
exit $1
FAKE
  chmod +x "$dir/busted"
}
fails=0
fake 1
if PATH="$dir:$PATH" sh "$here/tools/busted.sh" true >/dev/null 2>&1; then
  echo "FAIL: busted.sh exited 0 though busted exited 1 after a green summary"
  fails=1
fi
fake 0
if ! PATH="$dir:$PATH" sh "$here/tools/busted.sh" true >/dev/null 2>&1; then
  echo "FAIL: busted.sh failed though busted exited 0 with a green summary"
  fails=1
fi
[ "$fails" -eq 0 ] && echo "tools: busted.sh passes on a green run, fails" \
  "on busted's non-zero exit"
exit "$fails"
