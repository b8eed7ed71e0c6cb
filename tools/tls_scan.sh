#!/bin/sh
# tools/tls_scan.sh SPINDLE: testssl.sh against a default listenSSL server
# (scripts/tls_echo_server.lua, ssl.DefaultOpenSSLContextFactory, no
# options) on 127.0.0.1, with certificates made for the run. Fails on any
# finding testssl.sh rates LOW or worse, except those about the test
# certificate itself (cert_*: a 30-day certificate from a private CA with
# no CRL or OCSP URI) and DNS (DNS_CAArecord), which say nothing about
# spindle. Prints the offered protocols and suites. `make test-tls-scan`.
set -eu
spindle=${1:-build/spindle}
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT INT TERM
sh scripts/ssl/make_certs.sh "$dir" >/dev/null
"$spindle" scripts/tls_echo_server.lua 0 --certs "$dir" --timeout 600 \
  >"$dir/server.out" 2>&1 &
pid=$!
# The server prints its port once it listens.
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' \
    "$dir/server.out")
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/server.out"; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "tls_scan: the server did not start"; exit 1; }
testssl --quiet --color 0 --warnings off --add-ca "$dir/ca.crt" \
  --jsonfile "$dir/scan.json" "127.0.0.1:$port" >"$dir/scan.txt" 2>&1 || true
grep -E '^ (SSLv|TLS 1)|^ x[0-9a-f]+ ' "$dir/scan.txt" || true
python3 - "$dir/scan.json" <<'PY'
import json, sys
bad = [f for f in json.load(open(sys.argv[1]))
       if f["severity"] in ("LOW", "MEDIUM", "HIGH", "CRITICAL")
       and not f["id"].startswith("cert_") and f["id"] != "DNS_CAArecord"]
for f in bad:
    print("flagged: %s %s %s" % (f["id"], f["severity"], f["finding"]))
print("tls_scan: %d finding(s) flagged" % len(bad))
sys.exit(1 if bad else 0)
PY
