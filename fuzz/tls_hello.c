/*
** fuzz/tls_hello.c: random and mutated ClientHello bytes (and whatever
** records follow) into a TLS server connection over memory BIOs, as
** tls.c runs one. The SSL_CTX is spindle's own: a Context made by
** spindle.ssl's DefaultOpenSSLContextFactory (runtime/ssl.c), the one
** listenSSL servers use, with a key and certificate made at start-up.
** The server must answer (records, an alert, an error) and never crash.
** Seeds in fuzz/corpus/tls_hello are ClientHellos of openssl s_client
** (TLS 1.2 and 1.3, SNI, ALPN, several groups).
*/
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "harness.h"
#include "ssl.h"

static SSL_CTX *ctx;
static lua_State *L; /* kept open: it holds the Context */

/* Write a new P-256 key and a self-signed certificate for localhost to
** keyfile and certfile. */
static void make_cert(const char *keyfile, const char *certfile) {
  EVP_PKEY *key = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  X509_NAME *name;
  FILE *f;
  if (key == NULL || x == NULL) fz_fail("cannot make a key");
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             (const unsigned char *)"localhost", -1, -1, 0);
  X509_set_issuer_name(x, name);
  if (!X509_sign(x, key, EVP_sha256())) fz_fail("cannot sign");
  f = fopen(keyfile, "w");
  if (f == NULL || !PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL))
    fz_fail("cannot write %s", keyfile);
  fclose(f);
  f = fopen(certfile, "w");
  if (f == NULL || !PEM_write_X509(f, x)) fz_fail("cannot write %s", certfile);
  fclose(f);
  X509_free(x);
  EVP_PKEY_free(key);
}

/* spindle's server SSL_CTX, through the Lua API. */
static void init(void) {
  char dir[] = "/tmp/spindle-fuzz-XXXXXX", key[64], cert[64];
  L = fz_newstate(1);
  if (mkdtemp(dir) == NULL) fz_fail("mkdtemp");
  snprintf(key, sizeof key, "%s/key.pem", dir);
  snprintf(cert, sizeof cert, "%s/cert.pem", dir);
  make_cert(key, cert);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "spindle.ssl");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) fz_fail("%s", lua_tostring(L, -1));
  lua_getfield(L, -1, "DefaultOpenSSLContextFactory");
  lua_pushstring(L, key);
  lua_pushstring(L, cert);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) fz_fail("%s", lua_tostring(L, -1));
  lua_getfield(L, -1, "getContext");
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) fz_fail("%s", lua_tostring(L, -1));
  ctx = sp_ssl_tocontext(L, -1);
  if (ctx == NULL || !SSL_CTX_up_ref(ctx)) fz_fail("no SSL_CTX");
  /* The Context loaded the files: they can go. The state stays open
  ** (closing it would run spindle's shutdown-time code for nothing). */
  unlink(key);
  unlink(cert);
  rmdir(dir);
}

/* Run the handshake as far as it goes, reading what the server writes. */
static void step(SSL *ssl, BIO *wbio) {
  char out[16384];
  ERR_clear_error();
  (void)SSL_do_handshake(ssl);
  while (BIO_read(wbio, out, sizeof out) > 0) continue;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  SSL *ssl;
  BIO *rbio, *wbio;
  if (ctx == NULL) init();
  ssl = SSL_new(ctx);
  rbio = BIO_new(BIO_s_mem());
  wbio = BIO_new(BIO_s_mem());
  if (ssl == NULL || rbio == NULL || wbio == NULL) fz_fail("SSL_new");
  SSL_set_bio(ssl, rbio, wbio);
  SSL_set_accept_state(ssl);
  /* As tls.c does: whatever arrived goes into the read BIO at once. The
  ** bytes come in two reads (split at the first byte's value) so both the
  ** first flight and what follows it are parsed. */
  if (size > 0) {
    size_t cut = size > 1 ? 1 + data[0] % (size - 1) : 1;
    BIO_write(rbio, data + 1, (int)(cut - 1));
    step(ssl, wbio);
    BIO_write(rbio, data + cut, (int)(size - cut));
  }
  step(ssl, wbio);
  SSL_free(ssl);
  ERR_clear_error();
  return 0;
}
