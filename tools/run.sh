#!/bin/sh
# tools/run.sh BINARY: `make run`, the main job: every program of the seed
# tutorial (Deferred, reactor, threads, TLS) as its Lua twin in scripts/,
# each printing what its Twisted original prints.
set -e
bin=${1:-build/spindle}
show() { echo "== $*"; "$bin" "$@"; }

show scripts/defer_basic.lua
show scripts/defer_basic.lua call_error
show scripts/defer_chain.lua
show scripts/defer_addcallback_args.lua
show scripts/defer_chaindeferred.lua
show scripts/reactor_calllater.lua
show scripts/reactor_stop.lua
show scripts/threads_callfromthread.lua
show scripts/threads_pool_size.lua
show scripts/threads_udp_long_operation.lua 0

# TLS: certificates made into a temporary folder, then each server with
# its client.
certs=$(mktemp -d)
trap 'rm -rf "$certs"' EXIT
sh scripts/ssl/make_certs.sh "$certs" >/dev/null 2>&1
for pair in echo client_cert; do
  echo "== scripts/tls_${pair}_server.lua + scripts/tls_${pair}_client.lua"
  out=$(mktemp)
  timeout 20 "$bin" "scripts/tls_${pair}_server.lua" 0 --once --certs "$certs" \
    >"$out" 2>&1 &
  server=$!
  port=""
  for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out")
    [ -n "$port" ] && break
    sleep 0.05
  done
  timeout 20 "$bin" "scripts/tls_${pair}_client.lua" 127.0.0.1 "$port" \
    --certs "$certs"
  wait "$server" || true
  sed 's/^/server: /' "$out"
  rm -f "$out"
done
