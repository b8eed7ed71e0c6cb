/*
** sslkeys.c: spindle._sslkeys, making keys and certificates for
** spindle.ssl's KeyPair (twisted.internet._sslverify.KeyPair.generate,
** selfSignedCert, signCertificateRequest). ssl.c holds the OpenSSL
** objects that TLS uses (Context, X509); this file only creates new ones,
** so it is kept apart from the TLS code.
**
** Keys cross to Lua as PEM text (PKCS#8 for private keys), which every
** other spindle.ssl function already accepts; certificates as X509
** userdata (ssl.h's sp_ssl_newx509, made before the X509). Each function
** reads all of its Lua arguments first, then works on OpenSSL objects
** released on one path at the end, and raises (if it must) only after
** releasing them.
*/
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ssl.h"

/* [-0, +1, m] Push the contents of memory BIO b as a string. */
static void push_bio(lua_State *L, BIO *b) {
  char *data;
  long n = BIO_get_mem_data(b, &data);
  lua_pushlstring(L, data, n > 0 ? (size_t)n : 0);
}

/* _sslkeys.generate(kind, bits) -> PEM text of a new private key.
** kind "RSA" (bits: 2048 when 0) or "EC" (the P-256 curve; bits
** ignored). Raises ssl.Error if OpenSSL fails. */
static int keys_generate(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1);
  lua_Integer bits = luaL_optinteger(L, 2, 2048);
  EVP_PKEY *k = NULL;
  BIO *b = NULL;
  int ok = 0;
  luaL_argcheck(L, bits >= 0 && bits <= 16384, 2, "bits out of range");
  if (strcmp(kind, "RSA") != 0 && strcmp(kind, "EC") != 0)
    return luaL_argerror(L, 1, "\"RSA\" or \"EC\" expected");
  ERR_clear_error();
  if (strcmp(kind, "RSA") == 0)
    k = EVP_RSA_gen(bits == 0 ? 2048 : (unsigned int)bits);
  else
    k = EVP_EC_gen("P-256");
  b = BIO_new(BIO_s_mem());
  if (k != NULL && b != NULL &&
      PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)) {
    push_bio(L, b);
    ok = 1;
  }
  BIO_free(b);
  EVP_PKEY_free(k);
  if (!ok) return sp_ssl_raise(L, "generate key");
  return 1;
}

/* Read a private key (or, failing that, a public key) from PEM text. */
static EVP_PKEY *read_key(const char *pem, size_t len, int private) {
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  EVP_PKEY *k = NULL;
  if (b == NULL) return NULL;
  if (private)
    k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
  else
    k = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
  BIO_free(b);
  return k;
}

/* _sslkeys.public(pem) -> PEM text of the public half of a private key
** (or of a public key). Raises ssl.Error on unreadable text. */
static int keys_public(lua_State *L) {
  size_t len;
  const char *pem = luaL_checklstring(L, 1, &len);
  EVP_PKEY *k;
  BIO *b = NULL;
  int ok = 0;
  ERR_clear_error();
  k = read_key(pem, len, 1);
  if (k == NULL) {
    ERR_clear_error();
    k = read_key(pem, len, 0);
  }
  b = BIO_new(BIO_s_mem());
  if (k != NULL && b != NULL && PEM_write_bio_PUBKEY(b, k)) {
    push_bio(L, b);
    ok = 1;
  }
  BIO_free(b);
  EVP_PKEY_free(k);
  if (!ok) return sp_ssl_raise(L, "load key");
  return 1;
}

/* Raise unless the value at idx is a list of {string, string} pairs, so
** that fill_name, which runs while OpenSSL objects are held, never
** converts (allocates) or raises. */
static void check_name(lua_State *L, int idx) {
  lua_Integer i, n;
  luaL_checktype(L, idx, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, idx);
  for (i = 1; i <= n; i++) {
    int ok = lua_rawgeti(L, idx, i) == LUA_TTABLE &&
             lua_rawgeti(L, -1, 1) == LUA_TSTRING &&
             lua_rawgeti(L, -2, 2) == LUA_TSTRING;
    luaL_argcheck(L, ok, idx, "list of {name, value} string pairs expected");
    lua_pop(L, 3);
  }
}

/* Fill name from the Lua list at idx of {shortName, value} pairs
** ({{"C", "US"}, {"CN", "example.com"}}); 0 on an unknown name. The
** values are Lua strings on the caller's stack, alive during the call. */
static int fill_name(lua_State *L, int idx, X509_NAME *name) {
  lua_Integer i, n = (lua_Integer)lua_rawlen(L, idx);
  int ok = 1;
  for (i = 1; i <= n && ok; i++) {
    const char *field, *value;
    lua_rawgeti(L, idx, i);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    field = lua_tostring(L, -2);
    value = lua_tostring(L, -1);
    ok = field != NULL && value != NULL &&
         X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                    (const unsigned char *)value, -1, -1, 0);
    lua_pop(L, 3);
  }
  return ok;
}

/* Add extension nid with value text (the openssl.cnf syntax), made in
** the context of issuer and subject certificates. */
static int add_ext(X509 *issuer, X509 *x, int nid, const char *text) {
  X509V3_CTX ctx;
  X509_EXTENSION *e;
  int ok;
  X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
  e = X509V3_EXT_conf_nid(NULL, &ctx, nid, text);
  ok = e != NULL && X509_add_ext(x, e, -1);
  X509_EXTENSION_free(e);
  return ok;
}

/* _sslkeys.issue(subjectKey, subjectDN, issuerKey, issuerDN, serial,
** seconds, isCA[, subjectAltName]) -> X509: a version 3 certificate for
** subjectKey (PEM text, public or private), named subjectDN (a list of
** {shortName, value}), valid from now for `seconds` seconds, signed with
** SHA-256 by issuerKey (private PEM) as issuerDN; isCA adds
** basicConstraints CA:TRUE, otherwise CA:FALSE; subjectAltName (a string
** in openssl.cnf syntax, "DNS:localhost,IP:127.0.0.1") is added when
** given. Raises ssl.Error naming OpenSSL's reason. Follows the X509
** that twisted's KeyPair.signCertificateRequest builds. */
static int keys_issue(lua_State *L) {
  size_t slen, ilen;
  const char *spem = luaL_checklstring(L, 1, &slen);
  const char *ipem = luaL_checklstring(L, 3, &ilen);
  lua_Integer serial = luaL_checkinteger(L, 5);
  lua_Integer seconds = luaL_checkinteger(L, 6);
  int isCA = lua_toboolean(L, 7);
  const char *san = luaL_optstring(L, 8, NULL);
  EVP_PKEY *skey = NULL, *ikey = NULL;
  X509 *x = NULL, **slot;
  int ok, ud;
  check_name(L, 2);
  check_name(L, 4);
  slot = sp_ssl_newx509(L); /* before the X509: a memory error leaks none */
  ud = lua_gettop(L);
  ERR_clear_error();
  skey = read_key(spem, slen, 1);
  if (skey == NULL) {
    ERR_clear_error();
    skey = read_key(spem, slen, 0);
  }
  ikey = read_key(ipem, ilen, 1);
  x = X509_new();
  ok = skey != NULL && ikey != NULL && x != NULL && X509_set_version(x, 2) &&
       ASN1_INTEGER_set_int64(X509_get_serialNumber(x), serial) &&
       X509_gmtime_adj(X509_getm_notBefore(x), 0) &&
       X509_gmtime_adj(X509_getm_notAfter(x), (long)seconds) &&
       X509_set_pubkey(x, skey) && fill_name(L, 2, X509_get_subject_name(x)) &&
       fill_name(L, 4, X509_get_issuer_name(x)) &&
       add_ext(x, x, NID_basic_constraints,
               isCA ? "critical,CA:TRUE" : "CA:FALSE") &&
       add_ext(x, x, NID_subject_key_identifier, "hash") &&
       (san == NULL || add_ext(x, x, NID_subject_alt_name, san)) &&
       X509_sign(x, ikey, EVP_sha256()) > 0;
  EVP_PKEY_free(skey);
  EVP_PKEY_free(ikey);
  if (!ok) {
    X509_free(x);
    return sp_ssl_raise(L, "issue certificate");
  }
  *slot = x;
  lua_pushvalue(L, ud);
  return 1;
}

/* _sslkeys.matches(x509, keyPEM) -> boolean: is keyPEM (public or
** private) the key certified by x509? */
static int keys_matches(lua_State *L) {
  X509 *x = *(X509 **)luaL_checkudata(L, 1, SP_X509_MT);
  size_t len;
  const char *pem = luaL_checklstring(L, 2, &len);
  EVP_PKEY *k;
  int r;
  ERR_clear_error();
  k = read_key(pem, len, 1);
  if (k == NULL) {
    ERR_clear_error();
    k = read_key(pem, len, 0);
  }
  r = k != NULL && x != NULL && X509_check_private_key(x, k) == 1;
  if (k != NULL && !r) {
    EVP_PKEY *pub = X509_get0_pubkey(x);
    r = pub != NULL && EVP_PKEY_eq(pub, k) == 1;
  }
  EVP_PKEY_free(k);
  ERR_clear_error();
  lua_pushboolean(L, r);
  return 1;
}

/* _sslkeys.dump_der(x509) -> the certificate's DER bytes. */
static int keys_dump_der(lua_State *L) {
  X509 *x = *(X509 **)luaL_checkudata(L, 1, SP_X509_MT);
  unsigned char *der = NULL;
  int n;
  ERR_clear_error();
  n = x != NULL ? i2d_X509(x, &der) : -1;
  if (n < 0) return sp_ssl_raise(L, "dump certificate");
  lua_pushlstring(L, (const char *)der, (size_t)n);
  OPENSSL_free(der);
  return 1;
}

/* _sslkeys.pubkey_of(x509) -> PEM text of the certified public key. */
static int keys_pubkey_of(lua_State *L) {
  X509 *x = *(X509 **)luaL_checkudata(L, 1, SP_X509_MT);
  EVP_PKEY *k = x != NULL ? X509_get0_pubkey(x) : NULL;
  BIO *b = BIO_new(BIO_s_mem());
  int ok = 0;
  ERR_clear_error();
  if (k != NULL && b != NULL && PEM_write_bio_PUBKEY(b, k)) {
    push_bio(L, b);
    ok = 1;
  }
  BIO_free(b);
  if (!ok) return sp_ssl_raise(L, "certificate key");
  return 1;
}

/* _sslkeys.x509_methods() -> the method table of X509 objects, so that
** spindle.ssl can add Certificate's methods to it (spindle._ssl must be
** loaded first: it makes the metatable). */
static int keys_x509_methods(lua_State *L) {
  luaL_getmetatable(L, SP_X509_MT);
  if (!lua_istable(L, -1)) return luaL_error(L, "spindle._ssl not loaded");
  lua_getfield(L, -1, "__index");
  return 1;
}

static const luaL_Reg keys_funcs[] = {
    {"pubkey_of", keys_pubkey_of}, {"x509_methods", keys_x509_methods},
    {"generate", keys_generate},   {"public", keys_public},
    {"issue", keys_issue},         {"matches", keys_matches},
    {"dump_der", keys_dump_der},   {NULL, NULL}};

int luaopen_spindle__sslkeys(lua_State *L) {
  luaL_newlib(L, keys_funcs);
  return 1;
}
