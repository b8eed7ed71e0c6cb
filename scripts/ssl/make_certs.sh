#!/bin/sh
# scripts/ssl/make_certs.sh [DIR]: make the keys and certificates the TLS
# scripts (and spec/tls_spec.lua) use, with the openssl command, into DIR
# (default: this folder, scripts/ssl). Keys and certificates never go into
# git (.gitignore); run this once before the scripts:
#
#   sh scripts/ssl/make_certs.sh
#
# Makes (EC P-256 keys, certificates valid for 30 days):
#   ca.key ca.crt           a test CA ("spindle test CA")
#   server.key server.crt   CN=localhost, for DNS localhost and IP
#                           127.0.0.1, signed by the CA
#   client.key client.crt   CN=spindle client, signed by the CA (client
#                           authentication)
#   evil-ca.key evil-ca.crt another CA, trusted by nobody
#   bad.key bad.crt         CN=localhost, signed by the untrusted CA
set -eu
dir=${1:-$(dirname "$0")}
mkdir -p "$dir"
cd "$dir"

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
  -out "$1" 2>/dev/null; }

# ca NAME SUBJECT: a self-signed CA certificate.
ca() {
  newkey "$1.key"
  openssl req -x509 -new -key "$1.key" -days 30 -subj "$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1.crt"
}

# leaf NAME SUBJECT CA EXTENSIONS: a certificate signed by CA.
leaf() {
  newkey "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  printf '%s\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.key" \
    -CAcreateserial -days 30 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

server_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1'
client_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth'

ca ca "/C=CN/O=spindle/OU=tests/CN=spindle test CA"
leaf server "/C=CN/O=spindle/CN=localhost" ca "$server_ext"
leaf client "/C=CN/O=spindle/OU=clients/CN=spindle client" ca "$client_ext"
ca evil-ca "/C=XX/O=nobody/CN=untrusted CA"
leaf bad "/C=XX/O=nobody/CN=localhost" evil-ca "$server_ext"
rm -f ca.srl evil-ca.srl
echo "certificates in $(pwd): ca server client evil-ca bad (.key, .crt)"
