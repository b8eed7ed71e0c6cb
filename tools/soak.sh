#!/bin/sh
# tools/soak.sh BINARY SECONDS: make soak. One BINARY process runs
# tools/soak/server.lua (TCP echo, TLS echo, a thread-pool service) while
# another runs tools/soak/client.lua against it for SECONDS (connections
# churning), which checks every byte came back and no descriptor was left
# open, and reports the server's RSS. Then the server gets SIGTERM and
# must exit 0 with nothing but that logged on its standard error.
set -u
bin=$1; secs=$2
dir=$(mktemp -d)
trap 'kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT
sh scripts/ssl/make_certs.sh "$dir" >/dev/null 2>&1 || {
  echo "soak: make_certs.sh failed"; exit 1; }
"$bin" tools/soak/server.lua "$dir" >"$dir/server.out" 2>"$dir/server.err" &
server=$!
for _ in $(seq 1 100); do
  grep -q '^ports ' "$dir/server.out" && break
  sleep 0.1
done
set -- $(sed -n 's/^ports //p' "$dir/server.out")
[ $# -eq 3 ] || { echo "soak: the server did not start"; cat "$dir/server.err"
  exit 1; }
echo "soak: $secs s against $bin (ports $*)"
"$bin" tools/soak/client.lua "$secs" "$1" "$2" "$3" "$dir"
status=$?
kill -TERM "$server"
wait "$server"
rc=$?
# Its log goes to standard error: only the SIGTERM line may be there.
if [ $rc -ne 0 ] || grep -v 'Received SIGTERM, shutting down' \
    "$dir/server.err" | grep -q .; then
  echo "soak: the server exited $rc; its standard error:"
  cat "$dir/server.err"
  status=1
fi
exit $status
