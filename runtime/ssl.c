/*
** ssl.c: the OpenSSL objects of spindle.ssl (module spindle._ssl; the
** public face is lua/spindle/ssl.lua): Context, X509 (with X509Name
** tables), Connection, the VERIFY_/OP_/method constants and the one
** translation of OpenSSL errors into ssl.Error values (see ssl.h).
**
** Names and behaviour follow pyOpenSSL's OpenSSL.SSL.Context and
** OpenSSL.crypto.X509, which Twisted users call directly. Deviation: the
** insecure methods (SSLv3, TLS 1.0, TLS 1.1) are refused, and every
** Context has TLS 1.2 as its lowest version.
**
** What OpenSSL calls back for lives with the SSL_CTX: its ex_data slot
** (ctx_index) holds a ctx_extra, made on first use and freed by OpenSSL
** with the SSL_CTX (ctx_extra_free), holding the server's ALPN list and a
** registry reference to the verify callback. A Context userdata can be
** collected while its SSL_CTX lives on (a connection or an ssl.Connection
** holds it), and Connection:get_context() then makes a new one: both
** still work, because neither lives in the userdata.
**
** Verify callbacks: Context:set_verify(mode, f). During a handshake (on
** the loop thread, inside an SSL call made by tls.c) the C callback takes
** the Lua state from the SSL's sp_ssl_app (app_index) and calls
** f(connection, x509, errnum, errdepth, ok) protected, building every
** argument inside the protected call; an error in f is logged and
** refuses the certificate.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core.h"
#include "failure.h"
#include "ssl.h"

/* Method numbers (pyOpenSSL's, where it has them). */
enum {
  M_SSLv3 = 2,
  M_TLSv1 = 4,
  M_TLSv1_1 = 5,
  M_TLSv1_2 = 6,
  M_TLS = 7,
  M_TLSv1_3 = 8
};

/* The TLS 1.2 suites of a new Context: Mozilla's "intermediate" profile
** without its DHE suites: forward secrecy (ECDHE) and AEAD (AES-GCM,
** ChaCha20-Poly1305) only, no CBC (LUCKY13), no RSA key exchange. TLS 1.3
** suites (OpenSSL's defaults) are all AEAD with forward secrecy. A user
** widens them with ctx:set_cipher_list (CertificateOptions'
** acceptableCiphers). */
#define SP_DEFAULT_CIPHERS                                     \
  "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* Key exchange groups, the same profile's. */
#define SP_DEFAULT_GROUPS "X25519:P-256:P-384"

/* Registry: SSL_CTX address -> its Context userdata (weak values). */
static const char contexts_key = 'C';

typedef struct context_ud {
  SSL_CTX *ctx;
} context_ud;

typedef struct x509_ud {
  X509 *x;
} x509_ud;

typedef struct connection_ud {
  SSL *ssl;
} connection_ud;

/* What a SSL_CTX carries for its callbacks (its ex_data at ctx_index). */
typedef struct ctx_extra {
  unsigned char *alpn; /* the server's ALPN list, wire format, or NULL */
  unsigned alpn_len;
  int verify; /* registry reference to the verify callback, or LUA_NOREF */
} ctx_extra;

static int ctx_index = -1; /* SSL_CTX ex_data: its ctx_extra */
static int app_index = -1; /* SSL ex_data: its sp_ssl_app */

/* OpenSSL's free callback for ctx_index, run as the SSL_CTX is freed
** (wherever its last reference goes: a Context's __gc, an SSL_free in a
** stream's close callback). The verify callback's reference is dropped
** in the main state, unless it is already closed. */
static void ctx_extra_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                           long argl, void *argp) {
  ctx_extra *e = ptr;
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  if (e == NULL) return;
  if (sp_mainstate != NULL)
    luaL_unref(sp_mainstate, LUA_REGISTRYINDEX, e->verify);
  free(e->alpn);
  free(e);
}

/* [-0, +0, m] The ctx_extra of ctx, made on first use. */
static ctx_extra *ctx_extra_of(lua_State *L, SSL_CTX *ctx) {
  ctx_extra *e = SSL_CTX_get_ex_data(ctx, ctx_index);
  if (e != NULL) return e;
  e = calloc(1, sizeof *e);
  if (e == NULL) luaL_error(L, "not enough memory");
  e->verify = LUA_NOREF;
  if (!SSL_CTX_set_ex_data(ctx, ctx_index, e)) {
    free(e);
    sp_ssl_raise(L, "Context");
  }
  return e;
}

void sp_ssl_set_app(SSL *ssl, sp_ssl_app *app) {
  SSL_set_ex_data(ssl, app_index, app);
}

/* ------------------------------------------------------------ errors */

/* Append the printf-style text to buf (size cap) at *n, truncating. */
static void buf_add(char *buf, size_t cap, size_t *n, const char *fmt,
                    const char *a, const char *b) {
  int w;
  if (*n >= cap - 1) return;
  w = snprintf(buf + *n, cap - *n, fmt, a, b);
  if (w > 0) *n += (size_t)w < cap - *n ? (size_t)w : cap - *n - 1;
}

void sp_ssl_pusherror(lua_State *L, SSL *ssl, int sslerr, const char *what,
                      const char *hostname) {
  char msg[1024], first[256] = "";
  size_t n = 0;
  unsigned long e;
  int verify = 0, count = 0;
  long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
  buf_add(msg, sizeof msg, &n, "%s%s", what, "");
  while ((e = ERR_get_error()) != 0) {
    const char *r = ERR_SYSTEM_ERROR(e) ? strerror(ERR_GET_REASON(e))
                                        : ERR_reason_error_string(e);
    char tmp[32];
    if (r == NULL) {
      snprintf(tmp, sizeof tmp, "error %lu", (unsigned long)ERR_GET_REASON(e));
      r = tmp;
    }
    if (count > 0 && (strcmp(r, first) == 0 || strcmp(r, "system lib") == 0))
      continue;
    if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
        ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED)
      verify = 1;
    if (count++ == 0) snprintf(first, sizeof first, "%s", r);
    if (count <= 4)
      buf_add(msg, sizeof msg, &n, count == 1 ? ": %s" : "; %s", r, "");
  }
  if (count == 0) {
    const char *r = sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_SSL
                        ? "unexpected eof while reading"
                    : sslerr == SSL_ERROR_ZERO_RETURN
                        ? "the peer closed the TLS session"
                        : "unknown error";
    snprintf(first, sizeof first, "%s", r);
    buf_add(msg, sizeof msg, &n, ": %s", r, "");
  }
  if (verify && vr != X509_V_OK) {
    if ((vr == X509_V_ERR_HOSTNAME_MISMATCH ||
         vr == X509_V_ERR_IP_ADDRESS_MISMATCH) &&
        hostname != NULL)
      buf_add(msg, sizeof msg, &n,
              " (%s: the certificate is not valid for '%s')",
              X509_verify_cert_error_string(vr), hostname);
    else
      buf_add(msg, sizeof msg, &n, " (%s)", X509_verify_cert_error_string(vr),
              "");
  }
  buf_add(msg, sizeof msg, &n, ".", "", "");
  sp_errortype_make(L, verify ? "ssl.VerifyError" : "ssl.Error", msg);
  lua_pushstring(L, first);
  lua_setfield(L, -2, "reason");
  if (verify && vr != X509_V_OK) {
    lua_pushinteger(L, vr);
    lua_setfield(L, -2, "verifyCode");
    lua_pushstring(L, X509_verify_cert_error_string(vr));
    lua_setfield(L, -2, "verifyReason");
  }
}

int sp_ssl_raise(lua_State *L, const char *what) {
  sp_ssl_pusherror(L, NULL, 0, what, NULL);
  return lua_error(L);
}

/* ------------------------------------------------------------- X509 */

/* [-0, +1, m] Push an empty X509 userdata (x NULL) to fill. */
static x509_ud *new_x509(lua_State *L) {
  x509_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->x = NULL;
  luaL_setmetatable(L, SP_X509_MT);
  return u;
}

X509 **sp_ssl_newx509(lua_State *L) {
  return &new_x509(L)->x;
}

void sp_ssl_pushx509(lua_State *L, X509 *x) {
  x509_ud *u;
  if (x == NULL) {
    lua_pushnil(L);
    return;
  }
  u = new_x509(L);
  if (X509_up_ref(x)) u->x = x;
}

static X509 *check_x509(lua_State *L, int idx) {
  x509_ud *u = luaL_checkudata(L, idx, SP_X509_MT);
  if (u->x == NULL) luaL_argerror(L, idx, "empty X509");
  return u->x;
}

static int x509_gc(lua_State *L) {
  x509_ud *u = luaL_checkudata(L, 1, SP_X509_MT);
  X509_free(u->x);
  u->x = NULL;
  return 0;
}

/* __tostring of X509Name tables: "/C=US/O=Org/CN=name" (OpenSSL's
** one-line form, as pyOpenSSL's X509Name shows it). */
static int name_tostring(lua_State *L) {
  luaL_Buffer b;
  lua_Integer i, n;
  lua_getfield(L, 1, "_components");
  n = luaL_len(L, -1);
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    lua_geti(L, 2, i);
    luaL_addchar(&b, '/');
    lua_geti(L, -1, 1);
    luaL_addvalue(&b);
    luaL_addchar(&b, '=');
    lua_geti(L, -1, 2);
    luaL_addvalue(&b);
    lua_pop(L, 1);
  }
  luaL_pushresult(&b);
  return 1;
}

/* t:get_components() -> {{"C", "US"}, {"CN", "name"}, ...} in order. */
static int name_get_components(lua_State *L) {
  lua_getfield(L, 1, "_components");
  return 1;
}

/* [-0, +1, m] Push an X509Name table for nm: a field per short name (the
** first entry wins: CN, O, OU, C, ST, L, emailAddress, ...). */
static void push_name(lua_State *L, const X509_NAME *nm) {
  int i, n = X509_NAME_entry_count(nm);
  lua_createtable(L, 0, n + 1);
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    const X509_NAME_ENTRY *ent = X509_NAME_get_entry(nm, i);
    int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(ent));
    const ASN1_STRING *v = X509_NAME_ENTRY_get_data(ent);
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, v);
    const char *sn = nid != NID_undef ? OBJ_nid2sn(nid) : "UNDEF";
    lua_createtable(L, 2, 0);
    lua_pushstring(L, sn);
    lua_rawseti(L, -2, 1);
    if (len >= 0)
      lua_pushlstring(L, (const char *)utf8, (size_t)len);
    else
      lua_pushliteral(L, "");
    OPENSSL_free(utf8);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, i + 1);
    if (lua_getfield(L, -2, sn) == LUA_TNIL) {
      lua_rawgeti(L, -2, i + 1);
      lua_rawgeti(L, -1, 2);
      lua_setfield(L, -5, sn);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_setfield(L, -2, "_components");
  luaL_setmetatable(L, "spindle.ssl.X509Name");
}

/* x:get_subject() / x:get_issuer() -> X509Name table. pyOpenSSL
** X509.get_subject. */
static int x509_get_subject(lua_State *L) {
  push_name(L, X509_get_subject_name(check_x509(L, 1)));
  return 1;
}

/* x:get_issuer() -> X509Name table of the issuer (fields CN, O, ...;
** tostring like "/C=../CN=.."). pyOpenSSL X509.get_issuer. */
static int x509_get_issuer(lua_State *L) {
  push_name(L, X509_get_issuer_name(check_x509(L, 1)));
  return 1;
}

/* x:get_serial_number() -> integer, or a decimal string when it does not
** fit in a Lua integer (serials have up to 20 bytes). */
static int x509_get_serial_number(lua_State *L) {
  const ASN1_INTEGER *a = X509_get0_serialNumber(check_x509(L, 1));
  BIGNUM *bn = ASN1_INTEGER_to_BN(a, NULL);
  char *dec;
  if (bn == NULL) return sp_ssl_raise(L, "get_serial_number");
  if (BN_num_bits(bn) < 63) {
    lua_pushinteger(
        L, (lua_Integer)BN_get_word(bn) * (BN_is_negative(bn) ? -1 : 1));
    BN_free(bn);
    return 1;
  }
  dec = BN_bn2dec(bn);
  BN_free(bn);
  if (dec == NULL) return sp_ssl_raise(L, "get_serial_number");
  lua_pushstring(L, dec);
  OPENSSL_free(dec);
  return 1;
}

/* x:digest(name) -> "AB:CD:..." (upper-case hex pairs), name a digest
** such as "sha256" or "sha1". Raises ssl.Error for an unknown digest.
** pyOpenSSL X509.digest. */
static int x509_digest(lua_State *L) {
  X509 *x = check_x509(L, 1);
  const char *name = luaL_checkstring(L, 2);
  const EVP_MD *md = EVP_get_digestbyname(name);
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0, i;
  char out[EVP_MAX_MD_SIZE * 3 + 1];
  if (md == NULL) {
    ERR_clear_error();
    return sp_errortype_raise(L, "ssl.Error", NULL,
                              "digest: unknown digest '%s'.", name);
  }
  if (!X509_digest(x, md, d, &n)) return sp_ssl_raise(L, "digest");
  for (i = 0; i < n; i++)
    snprintf(out + i * 3, 4, i + 1 < n ? "%02X:" : "%02X", d[i]);
  lua_pushstring(L, n > 0 ? out : "");
  return 1;
}

/* [-0, +1, m] Push t as "YYYYMMDDhhmmssZ" (ASN.1 GeneralizedTime, as
** pyOpenSSL's get_notBefore returns it). */
static int push_time(lua_State *L, const ASN1_TIME *t) {
  ASN1_GENERALIZEDTIME *g = ASN1_TIME_to_generalizedtime(t, NULL);
  if (g == NULL) return sp_ssl_raise(L, "time");
  lua_pushlstring(L, (const char *)ASN1_STRING_get0_data(g),
                  (size_t)ASN1_STRING_length(g));
  ASN1_GENERALIZEDTIME_free(g);
  return 1;
}

/* x:get_notBefore(), x:get_notAfter() -> "YYYYMMDDhhmmssZ". */
static int x509_get_notBefore(lua_State *L) {
  return push_time(L, X509_get0_notBefore(check_x509(L, 1)));
}

/* x:get_notAfter() -> the end of validity, "YYYYMMDDhhmmssZ" (UTC).
** pyOpenSSL X509.get_notAfter. */
static int x509_get_notAfter(lua_State *L) {
  return push_time(L, X509_get0_notAfter(check_x509(L, 1)));
}

/* x:has_expired() -> boolean: notAfter is in the past. */
static int x509_has_expired(lua_State *L) {
  lua_pushboolean(
      L, X509_cmp_current_time(X509_get0_notAfter(check_x509(L, 1))) < 0);
  return 1;
}

/* x:get_version() -> 0-based version (2 for X.509 v3). */
static int x509_get_version(lua_State *L) {
  lua_pushinteger(L, X509_get_version(check_x509(L, 1)));
  return 1;
}

/* x:to_pem() -> the certificate in PEM form; also tostring(x). */
static int x509_to_pem(lua_State *L) {
  BIO *b = BIO_new(BIO_s_mem());
  char *p;
  long n;
  if (b == NULL || !PEM_write_bio_X509(b, check_x509(L, 1))) {
    BIO_free(b);
    return sp_ssl_raise(L, "to_pem");
  }
  n = BIO_get_mem_data(b, &p);
  lua_pushlstring(L, p, (size_t)n);
  BIO_free(b);
  return 1;
}

static int x509_tostring(lua_State *L) {
  char buf[256];
  X509_NAME_oneline(X509_get_subject_name(check_x509(L, 1)), buf, sizeof buf);
  lua_pushfstring(L, "<X509 %s>", buf);
  return 1;
}

/* ssl.load_certificate(pem) / ssl.load_certificate_file(path) -> X509.
** Raises ssl.Error naming the reason. pyOpenSSL crypto.load_certificate
** (PEM only). */
static int ssl_load_certificate(lua_State *L) {
  size_t len;
  const char *pem = luaL_checklstring(L, 1, &len);
  x509_ud *u = new_x509(L);
  BIO *b;
  ERR_clear_error();
  b = BIO_new_mem_buf(pem, (int)len);
  u->x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  if (u->x == NULL) return sp_ssl_raise(L, "load_certificate");
  return 1;
}

/* ssl.load_certificate_file(path) -> X509 of the first PEM certificate
** in the file at path. Raises ssl.Error naming the path and the OpenSSL
** reason. */
static int ssl_load_certificate_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  x509_ud *u = new_x509(L);
  BIO *b;
  ERR_clear_error();
  b = BIO_new_file(path, "r");
  u->x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  if (u->x == NULL) {
    lua_pushfstring(L, "load_certificate_file('%s')", path);
    return sp_ssl_raise(L, lua_tostring(L, -1));
  }
  return 1;
}

/* ------------------------------------------------------- Connection */

void sp_ssl_pushconnection(lua_State *L, SSL *ssl) {
  connection_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->ssl = NULL;
  luaL_setmetatable(L, SP_CONNECTION_MT);
  if (SSL_up_ref(ssl)) u->ssl = ssl;
}

static SSL *check_conn(lua_State *L) {
  connection_ud *u = luaL_checkudata(L, 1, SP_CONNECTION_MT);
  if (u->ssl == NULL) luaL_error(L, "attempt to use a freed Connection");
  return u->ssl;
}

static int connection_gc(lua_State *L) {
  connection_ud *u = luaL_checkudata(L, 1, SP_CONNECTION_MT);
  SSL_free(u->ssl);
  u->ssl = NULL;
  return 0;
}

/* c:get_app_data() -> the transport of this TLS connection (nil once it
** is closed). pyOpenSSL Connection.get_app_data (Twisted puts its TLS
** protocol there). */
static int connection_get_app_data(lua_State *L) {
  sp_ssl_app *app = SSL_get_ex_data(check_conn(L), app_index);
  if (app != NULL && app->push != NULL)
    app->push(L, app);
  else
    lua_pushnil(L);
  return 1;
}

/* c:get_peer_certificate() -> X509 or nil. */
static int connection_get_peer_certificate(lua_State *L) {
  sp_ssl_pushx509(L, SSL_get0_peer_certificate(check_conn(L)));
  return 1;
}

static void push_context(lua_State *L, SSL_CTX *ctx);

/* c:get_context() -> its Context. */
static int connection_get_context(lua_State *L) {
  push_context(L, SSL_get_SSL_CTX(check_conn(L)));
  return 1;
}

/* c:get_servername() -> the SNI name the client sent, or nil. */
static int connection_get_servername(lua_State *L) {
  const char *n = SSL_get_servername(check_conn(L), TLSEXT_NAMETYPE_host_name);
  if (n != NULL)
    lua_pushstring(L, n);
  else
    lua_pushnil(L);
  return 1;
}

/* c:get_protocol_version_name() -> "TLSv1.3", ...; c:get_cipher_name(). */
static int connection_get_protocol_version_name(lua_State *L) {
  lua_pushstring(L, SSL_get_version(check_conn(L)));
  return 1;
}

/* c:get_cipher_name() -> the negotiated cipher suite's OpenSSL name
** ("TLS_AES_256_GCM_SHA384"), or nil before the handshake. pyOpenSSL
** Connection.get_cipher_name; SSL_get_cipher_name. */
static int connection_get_cipher_name(lua_State *L) {
  const char *n = SSL_get_cipher_name(check_conn(L));
  if (n != NULL)
    lua_pushstring(L, n);
  else
    lua_pushnil(L);
  return 1;
}

/* c:get_alpn_proto_negotiated() -> the ALPN protocol or nil. */
static int connection_get_alpn_proto_negotiated(lua_State *L) {
  const unsigned char *p = NULL;
  unsigned int len = 0;
  SSL_get0_alpn_selected(check_conn(L), &p, &len);
  if (len > 0)
    lua_pushlstring(L, (const char *)p, len);
  else
    lua_pushnil(L);
  return 1;
}

/* ---------------------------------------------------------- Context */

static context_ud *check_ctx_ud(lua_State *L) {
  context_ud *u = luaL_checkudata(L, 1, SP_CONTEXT_MT);
  if (u->ctx == NULL) luaL_error(L, "attempt to use a freed Context");
  return u;
}

static SSL_CTX *check_ctx(lua_State *L) {
  return check_ctx_ud(L)->ctx;
}

SSL_CTX *sp_ssl_tocontext(lua_State *L, int idx) {
  context_ud *u = luaL_testudata(L, idx, SP_CONTEXT_MT);
  return u != NULL ? u->ctx : NULL;
}

/* [-0, +1, m] Push the weak registry table SSL_CTX -> Context. */
static void push_contexts(lua_State *L) {
  sp_registry_weak(L, &contexts_key, "v");
}

/* [-0, +1, m] Push the Context of ctx: the userdata that owns it, or a new
** one sharing it (SSL_CTX_up_ref). */
static void push_context(lua_State *L, SSL_CTX *ctx) {
  context_ud *u;
  push_contexts(L);
  if (lua_rawgetp(L, -1, ctx) != LUA_TNIL) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  u = lua_newuserdatauv(L, sizeof *u, 0);
  u->ctx = NULL;
  luaL_setmetatable(L, SP_CONTEXT_MT);
  if (SSL_CTX_up_ref(ctx)) u->ctx = ctx;
  lua_pushvalue(L, -1);
  lua_rawsetp(L, -3, ctx);
  lua_remove(L, -2);
}

/* ssl.Context([method]) -> Context: a new SSL_CTX for method (TLS_METHOD
** by default; TLSv1_2_METHOD and TLSv1_3_METHOD pin that version). TLS 1.2
** is the lowest version any Context speaks; the insecure methods raise
** ssl.Error saying what to use. Its TLS 1.2 suites are
** ssl.DEFAULT_CIPHERS (Mozilla "intermediate": ECDHE with AES-GCM or
** ChaCha20-Poly1305; no CBC), its groups X25519, P-256, P-384, and a
** server picks the suite (OP_CIPHER_SERVER_PREFERENCE).
** pyOpenSSL SSL.Context (whose defaults are OpenSSL's wider ones). */
static int ssl_Context(lua_State *L) {
  lua_Integer m = luaL_optinteger(L, 1, M_TLS);
  context_ud *u;
  int lo = TLS1_2_VERSION, hi = 0;
  switch (m) {
    case M_TLS:
    case 3:
      break; /* 3: pyOpenSSL's SSLv23_METHOD */
    case M_TLSv1_2:
      hi = TLS1_2_VERSION;
      break;
    case M_TLSv1_3:
      lo = hi = TLS1_3_VERSION;
      break;
    case M_SSLv3:
    case M_TLSv1:
    case M_TLSv1_1:
      return sp_errortype_raise(
          L, "ssl.Error", NULL,
          "%s is insecure and not supported (SSL 3.0, TLS 1.0 and TLS 1.1 "
          "are broken and disabled); use ssl.TLS_METHOD, which speaks TLS "
          "1.2 and 1.3.",
          m == M_SSLv3   ? "SSLv3_METHOD"
          : m == M_TLSv1 ? "TLSv1_METHOD"
                         : "TLSv1_1_METHOD");
    default:
      return luaL_argerror(L, 1, "unknown TLS method");
  }
  u = lua_newuserdatauv(L, sizeof *u, 0);
  u->ctx = NULL;
  luaL_setmetatable(L, SP_CONTEXT_MT);
  ERR_clear_error();
  u->ctx = SSL_CTX_new(TLS_method());
  if (u->ctx == NULL) return sp_ssl_raise(L, "Context");
  SSL_CTX_set_min_proto_version(u->ctx, lo);
  if (hi) SSL_CTX_set_max_proto_version(u->ctx, hi);
  /* Large writes go in pieces; the send buffer may move between them. */
  SSL_CTX_set_mode(u->ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  /* No TLS 1.2 renegotiation: a peer cannot make us redo handshakes, and
  ** SSL_write never has to wait for a read. */
  SSL_CTX_set_options(u->ctx, SSL_OP_NO_RENEGOTIATION);
  /* The server picks, in ssl.DEFAULT_CIPHERS' order, except that a client
  ** preferring ChaCha20 (no AES hardware) gets it. Mozilla lets the client
  ** choose, since every suite is strong; testssl.sh flags a server without
  ** an order, and the order costs nothing. */
  SSL_CTX_set_options(
      u->ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
  if (!SSL_CTX_set_cipher_list(u->ctx, SP_DEFAULT_CIPHERS) ||
      !SSL_CTX_set1_groups_list(u->ctx, SP_DEFAULT_GROUPS))
    return sp_ssl_raise(L, "Context");
  push_contexts(L);
  lua_pushvalue(L, -2);
  lua_rawsetp(L, -2, u->ctx);
  lua_pop(L, 1);
  return 1;
}

static int context_gc(lua_State *L) {
  context_ud *u = luaL_checkudata(L, 1, SP_CONTEXT_MT);
  SSL_CTX_free(u->ctx);
  u->ctx = NULL;
  return 0;
}

/* [-0, +0, e] Raise ssl.Error "method('path'): reasons" when ok is 0. */
static void path_check(lua_State *L, int ok, const char *method,
                       const char *path) {
  if (ok) return;
  lua_pushfstring(L, "%s('%s')", method, path);
  sp_ssl_raise(L, lua_tostring(L, -1));
}

/* ctx:use_certificate_file(path[, filetype]) -> nil; filetype is
** FILETYPE_PEM (default) or FILETYPE_ASN1. Raises ssl.Error with the
** OpenSSL reason (a missing file: "No such file or directory"). */
static int filetype(lua_State *L, int idx) {
  lua_Integer t = luaL_optinteger(L, idx, SSL_FILETYPE_PEM);
  luaL_argcheck(L, t == SSL_FILETYPE_PEM || t == SSL_FILETYPE_ASN1, idx,
                "FILETYPE_PEM or FILETYPE_ASN1 expected");
  return (int)t;
}

/* ctx:use_certificate_file(path[, filetype=FILETYPE_PEM]): the
** certificate this side presents, read from the file at path (filetype
** FILETYPE_PEM or FILETYPE_ASN1). Raises ssl.Error with the OpenSSL
** reason (a missing file: "No such file or directory"). pyOpenSSL
** Context.use_certificate_file. */
static int context_use_certificate_file(lua_State *L) {
  SSL_CTX *ctx = check_ctx(L);
  const char *path = luaL_checkstring(L, 2);
  ERR_clear_error();
  path_check(L, SSL_CTX_use_certificate_file(ctx, path, filetype(L, 3)),
             "use_certificate_file", path);
  return 0;
}

/* ctx:use_certificate_chain_file(path): the certificate and the
** intermediates after it (PEM). */
static int context_use_certificate_chain_file(lua_State *L) {
  SSL_CTX *ctx = check_ctx(L);
  const char *path = luaL_checkstring(L, 2);
  ERR_clear_error();
  path_check(L, SSL_CTX_use_certificate_chain_file(ctx, path),
             "use_certificate_chain_file", path);
  return 0;
}

/* ctx:use_privatekey_file(path[, filetype]). */
static int context_use_privatekey_file(lua_State *L) {
  SSL_CTX *ctx = check_ctx(L);
  const char *path = luaL_checkstring(L, 2);
  ERR_clear_error();
  path_check(L, SSL_CTX_use_PrivateKey_file(ctx, path, filetype(L, 3)),
             "use_privatekey_file", path);
  return 0;
}

/* ctx:use_certificate(x509): an X509 object as the certificate. */
static int context_use_certificate(lua_State *L) {
  SSL_CTX *ctx = check_ctx(L);
  X509 *x = check_x509(L, 2);
  ERR_clear_error();
  if (!SSL_CTX_use_certificate(ctx, x)) sp_ssl_raise(L, "use_certificate");
  return 0;
}

/* ctx:use_privatekey(pem): a private key given as a PEM string
** (unencrypted). Raises ssl.Error naming the reason. */
static int context_use_privatekey(lua_State *L) {
  SSL_CTX *ctx = check_ctx(L);
  size_t len;
  const char *pem = luaL_checklstring(L, 2, &len);
  BIO *b;
  EVP_PKEY *k;
  int ok;
  ERR_clear_error();
  b = BIO_new_mem_buf(pem, (int)len);
  k = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  ok = k != NULL && SSL_CTX_use_PrivateKey(ctx, k);
  EVP_PKEY_free(k);
  if (!ok) sp_ssl_raise(L, "use_privatekey");
  return 0;
}

/* ctx:check_privatekey(): raises ssl.Error unless the private key matches
** the certificate. */
static int context_check_privatekey(lua_State *L) {
  SSL_CTX *ctx = check_ctx(L);
  ERR_clear_error();
  if (!SSL_CTX_check_private_key(ctx)) sp_ssl_raise(L, "check_privatekey");
  return 0;
}

/* ctx:load_verify_locations(cafile[, capath]): trust the CA certificates
** in cafile (PEM; may be nil) and/or the hashed folder capath. */
static int context_load_verify_locations(lua_State *L) {
  SSL_CTX *ctx = check_ctx(L);
  const char *file = luaL_optstring(L, 2, NULL);
  const char *path = luaL_optstring(L, 3, NULL);
  luaL_argcheck(L, file != NULL || path != NULL, 2,
                "cafile or capath expected");
  ERR_clear_error();
  path_check(L, SSL_CTX_load_verify_locations(ctx, file, path),
             "load_verify_locations", file != NULL ? file : path);
  return 0;
}

/* ctx:set_default_verify_paths(): trust the system's CA certificates. */
static int context_set_default_verify_paths(lua_State *L) {
  SSL_CTX *ctx = check_ctx(L);
  ERR_clear_error();
  if (!SSL_CTX_set_default_verify_paths(ctx))
    sp_ssl_raise(L, "set_default_verify_paths");
  return 0;
}

/* ctx:add_ca(x509): trust one more CA certificate (an X509 object). */
static int context_add_ca(lua_State *L) {
  SSL_CTX *ctx = check_ctx(L);
  X509 *x = check_x509(L, 2);
  ERR_clear_error();
  if (!X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x))
    sp_ssl_raise(L, "add_ca");
  return 0;
}

/* (store, ok) -> accept: the body of verify_cb, run protected so that
** every allocation (the Connection and X509 userdata) and the callback's
** errors are caught. store is a light userdata. */
static int verify_call(lua_State *L) {
  X509_STORE_CTX *store = lua_touserdata(L, 1);
  int ok = lua_toboolean(L, 2);
  SSL *ssl =
      X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
  ctx_extra *e = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index);
  if (e == NULL || e->verify == LUA_NOREF) {
    lua_pushboolean(L, ok);
    return 1;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->verify);
  sp_ssl_pushconnection(L, ssl);
  sp_ssl_pushx509(L, X509_STORE_CTX_get_current_cert(store));
  lua_pushinteger(L, X509_STORE_CTX_get_error(store));
  lua_pushinteger(L, X509_STORE_CTX_get_error_depth(store));
  lua_pushboolean(L, ok);
  lua_call(L, 5, 1);
  return 1;
}

/* The C verify callback: call the SSL_CTX's Lua callback with
** (connection, x509, errnum, errdepth, ok) in the Lua state of the SSL's
** sp_ssl_app. Without one (no Lua may run) OpenSSL's verdict stands. */
static int verify_cb(int ok, X509_STORE_CTX *store) {
  SSL *ssl =
      X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
  sp_ssl_app *app = ssl != NULL ? SSL_get_ex_data(ssl, app_index) : NULL;
  lua_State *L = app != NULL ? app->L : NULL;
  int top, accept = 0;
  if (L == NULL) return ok;
  if (!lua_checkstack(L, 4)) return 0;
  top = lua_gettop(L);
  lua_pushcfunction(L, verify_call);
  lua_pushlightuserdata(L, store);
  lua_pushboolean(L, ok);
  if (sp_pcall(L, 2, 1) != LUA_OK)
    sp_log_failure(L, -1, "Error in TLS verify callback:");
  else
    accept = lua_toboolean(L, -1);
  lua_settop(L, top);
  if (!accept && X509_STORE_CTX_get_error(store) == X509_V_OK)
    X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
  if (accept) X509_STORE_CTX_set_error(store, X509_V_OK);
  return accept;
}

/* ctx:set_verify(mode[, callback]): mode is VERIFY_NONE or VERIFY_PEER
** with VERIFY_FAIL_IF_NO_PEER_CERT / VERIFY_CLIENT_ONCE; callback(conn,
** x509, errnum, errdepth, ok) is called for each certificate of the
** peer's chain (deepest first) on the loop thread inside the handshake,
** with ok OpenSSL's own verdict (a boolean); it returns true to accept.
** Without a callback OpenSSL's verdict stands. The callback lives with
** the SSL_CTX (not the Context userdata) until a later set_verify or the
** SSL_CTX's end; a callback that keeps its own Context as an upvalue
** therefore keeps it forever (use conn:get_context() instead). pyOpenSSL
** Context.set_verify. */
static int context_set_verify(lua_State *L) {
  SSL_CTX *ctx = check_ctx(L);
  lua_Integer mode = luaL_checkinteger(L, 2);
  ctx_extra *e;
  luaL_argcheck(L, (mode & ~(lua_Integer)15) == 0, 2, "VERIFY_* bits expected");
  if (!lua_isnoneornil(L, 3)) sp_checkcallable(L, 3);
  lua_settop(L, 3);
  e = ctx_extra_of(L, ctx);
  luaL_unref(L, LUA_REGISTRYINDEX, e->verify);
  e->verify = lua_isnil(L, 3) ? LUA_NOREF : luaL_ref(L, LUA_REGISTRYINDEX);
  SSL_CTX_set_verify(ctx, (int)mode, e->verify == LUA_NOREF ? NULL : verify_cb);
  return 0;
}

/* ctx:get_verify_mode() -> the VERIFY_* bits. */
static int context_get_verify_mode(lua_State *L) {
  lua_pushinteger(L, SSL_CTX_get_verify_mode(check_ctx(L)));
  return 1;
}

/* ctx:set_verify_depth(n): the longest chain accepted. */
static int context_set_verify_depth(lua_State *L) {
  SSL_CTX *ctx = check_ctx(L);
  SSL_CTX_set_verify_depth(ctx, (int)luaL_checkinteger(L, 2));
  return 0;
}

/* ctx:set_cipher_list(s): the TLS 1.2 cipher list (OpenSSL syntax),
** replacing ssl.DEFAULT_CIPHERS: the way to widen it (say to CBC suites
** for an old peer). Raises ssl.Error when no cipher matches. pyOpenSSL
** Context.set_cipher_list. */
static int context_set_cipher_list(lua_State *L) {
  SSL_CTX *ctx = check_ctx(L);
  const char *s = luaL_checkstring(L, 2);
  ERR_clear_error();
  path_check(L, SSL_CTX_set_cipher_list(ctx, s), "set_cipher_list", s);
  return 0;
}

/* ctx:set_options(bits) -> all options now set (OP_* constants). */
static int context_set_options(lua_State *L) {
  SSL_CTX *ctx = check_ctx(L);
  lua_Integer bits = luaL_checkinteger(L, 2);
  lua_pushinteger(L, (lua_Integer)SSL_CTX_set_options(ctx, (uint64_t)bits));
  return 1;
}

/* ctx:set_min_proto_version(v), ctx:set_max_proto_version(v): v is
** TLS1_2_VERSION or TLS1_3_VERSION; the minimum never goes below 1.2. */
static int context_set_min_proto_version(lua_State *L) {
  SSL_CTX *ctx = check_ctx(L);
  lua_Integer v = luaL_checkinteger(L, 2);
  luaL_argcheck(L, v == TLS1_2_VERSION || v == TLS1_3_VERSION, 2,
                "TLS1_2_VERSION or TLS1_3_VERSION expected (TLS 1.2 is "
                "the floor)");
  SSL_CTX_set_min_proto_version(ctx, (int)v);
  return 0;
}

/* ctx:set_max_proto_version(v): the highest TLS version to negotiate; v
** is TLS1_2_VERSION or TLS1_3_VERSION, anything else a bad-argument
** error. pyOpenSSL Context.set_max_proto_version;
** SSL_CTX_set_max_proto_version. */
static int context_set_max_proto_version(lua_State *L) {
  SSL_CTX *ctx = check_ctx(L);
  lua_Integer v = luaL_checkinteger(L, 2);
  luaL_argcheck(L, v == TLS1_2_VERSION || v == TLS1_3_VERSION, 2,
                "TLS1_2_VERSION or TLS1_3_VERSION expected");
  SSL_CTX_set_max_proto_version(ctx, (int)v);
  return 0;
}

/* ALPN on the server: pick the first of our protocols the client offers
** (the list, in wire format, is in the SSL_CTX's ctx_extra). */
static int alpn_select_cb(SSL *ssl, const unsigned char **out,
                          unsigned char *outlen, const unsigned char *in,
                          unsigned int inlen, void *arg) {
  const ctx_extra *e = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index);
  unsigned char *o = NULL;
  (void)arg;
  if (e == NULL || e->alpn == NULL) return SSL_TLSEXT_ERR_NOACK;
  if (SSL_select_next_proto(&o, outlen, e->alpn, e->alpn_len, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = o;
  return SSL_TLSEXT_ERR_OK;
}

/* ctx:set_alpn_protos({"h2", "http/1.1"}): the protocols offered
** (client) or accepted in preference order (server). pyOpenSSL
** Context.set_alpn_protos (the server part is its select callback). */
static int context_set_alpn_protos(lua_State *L) {
  SSL_CTX *ctx = check_ctx(L);
  ctx_extra *e = ctx_extra_of(L, ctx);
  luaL_Buffer b;
  lua_Integer i, n;
  unsigned char *keep;
  size_t len;
  const char *wire;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = luaL_len(L, 2);
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    size_t l;
    const char *p;
    lua_geti(L, 2, i);
    p = lua_tolstring(L, -1, &l);
    if (p == NULL || l == 0 || l > 255)
      return luaL_argerror(L, 2,
                           "non-empty strings of up to 255 bytes "
                           "expected");
    lua_pop(L, 1);
    luaL_addchar(&b, (char)l);
    luaL_addlstring(&b, p, l);
  }
  luaL_pushresult(&b);
  wire = lua_tolstring(L, -1, &len);
  luaL_argcheck(L, len > 0 && len < 65536, 2, "protocols expected");
  if (SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)wire,
                              (unsigned)len) != 0)
    return sp_ssl_raise(L, "set_alpn_protos");
  /* The server's list, for the select callback, goes with the SSL_CTX. */
  keep = malloc(len);
  if (keep == NULL) return luaL_error(L, "not enough memory");
  memcpy(keep, wire, len);
  free(e->alpn);
  e->alpn = keep;
  e->alpn_len = (unsigned)len;
  SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
  return 0;
}

static int context_tostring(lua_State *L) {
  lua_pushfstring(L, "<Context %p>", lua_touserdata(L, 1));
  return 1;
}

/* ------------------------------------------------------------ module */

static const luaL_Reg context_methods[] = {
    {"use_certificate_file", context_use_certificate_file},
    {"use_certificate_chain_file", context_use_certificate_chain_file},
    {"use_privatekey_file", context_use_privatekey_file},
    {"use_certificate", context_use_certificate},
    {"use_privatekey", context_use_privatekey},
    {"check_privatekey", context_check_privatekey},
    {"load_verify_locations", context_load_verify_locations},
    {"set_default_verify_paths", context_set_default_verify_paths},
    {"add_ca", context_add_ca},
    {"set_verify", context_set_verify},
    {"get_verify_mode", context_get_verify_mode},
    {"set_verify_depth", context_set_verify_depth},
    {"set_cipher_list", context_set_cipher_list},
    {"set_options", context_set_options},
    {"set_min_proto_version", context_set_min_proto_version},
    {"set_max_proto_version", context_set_max_proto_version},
    {"set_alpn_protos", context_set_alpn_protos},
    {NULL, NULL}};

static const luaL_Reg context_meta[] = {
    {"__gc", context_gc}, {"__tostring", context_tostring}, {NULL, NULL}};

static const luaL_Reg x509_methods[] = {
    {"get_subject", x509_get_subject},
    {"get_issuer", x509_get_issuer},
    {"get_serial_number", x509_get_serial_number},
    {"digest", x509_digest},
    {"get_notBefore", x509_get_notBefore},
    {"get_notAfter", x509_get_notAfter},
    {"has_expired", x509_has_expired},
    {"get_version", x509_get_version},
    {"to_pem", x509_to_pem},
    {NULL, NULL}};

static const luaL_Reg x509_meta[] = {
    {"__gc", x509_gc}, {"__tostring", x509_tostring}, {NULL, NULL}};

static const luaL_Reg name_methods[] = {{"get_components", name_get_components},
                                        {NULL, NULL}};

static const luaL_Reg name_meta[] = {{"__tostring", name_tostring},
                                     {NULL, NULL}};

static const luaL_Reg connection_methods[] = {
    {"get_app_data", connection_get_app_data},
    {"get_peer_certificate", connection_get_peer_certificate},
    {"get_context", connection_get_context},
    {"get_servername", connection_get_servername},
    {"get_protocol_version_name", connection_get_protocol_version_name},
    {"get_cipher_name", connection_get_cipher_name},
    {"get_alpn_proto_negotiated", connection_get_alpn_proto_negotiated},
    {NULL, NULL}};

static const luaL_Reg connection_meta[] = {{"__gc", connection_gc},
                                           {NULL, NULL}};

static const luaL_Reg ssl_funcs[] = {
    {"Context", ssl_Context},
    {"load_certificate", ssl_load_certificate},
    {"load_certificate_file", ssl_load_certificate_file},
    {NULL, NULL}};

static const struct {
  const char *name;
  lua_Integer value;
} constants[] = {
    {"VERIFY_NONE", SSL_VERIFY_NONE},
    {"VERIFY_PEER", SSL_VERIFY_PEER},
    {"VERIFY_FAIL_IF_NO_PEER_CERT", SSL_VERIFY_FAIL_IF_NO_PEER_CERT},
    {"VERIFY_CLIENT_ONCE", SSL_VERIFY_CLIENT_ONCE},
    {"TLS_METHOD", M_TLS},
    {"SSLv23_METHOD", M_TLS},
    {"TLSv1_2_METHOD", M_TLSv1_2},
    {"TLSv1_3_METHOD", M_TLSv1_3},
    {"FILETYPE_PEM", SSL_FILETYPE_PEM},
    {"FILETYPE_ASN1", SSL_FILETYPE_ASN1},
    {"TLS1_2_VERSION", TLS1_2_VERSION},
    {"TLS1_3_VERSION", TLS1_3_VERSION},
    {"OP_ALL", (lua_Integer)SSL_OP_ALL},
    {"OP_NO_SSLv2", 0}, /* gone from OpenSSL 3: nothing to switch off */
    {"OP_NO_SSLv3", (lua_Integer)SSL_OP_NO_SSLv3},
    {"OP_NO_TLSv1", (lua_Integer)SSL_OP_NO_TLSv1},
    {"OP_NO_TLSv1_1", (lua_Integer)SSL_OP_NO_TLSv1_1},
    {"OP_NO_TLSv1_2", (lua_Integer)SSL_OP_NO_TLSv1_2},
    {"OP_NO_TLSv1_3", (lua_Integer)SSL_OP_NO_TLSv1_3},
    {"OP_NO_COMPRESSION", (lua_Integer)SSL_OP_NO_COMPRESSION},
    {"OP_NO_TICKET", (lua_Integer)SSL_OP_NO_TICKET},
    {"OP_CIPHER_SERVER_PREFERENCE",
     (lua_Integer)SSL_OP_CIPHER_SERVER_PREFERENCE},
    {"OP_SINGLE_DH_USE", (lua_Integer)SSL_OP_SINGLE_DH_USE},
    {"OP_SINGLE_ECDH_USE", (lua_Integer)SSL_OP_SINGLE_ECDH_USE},
    /* The insecure methods' numbers, for ssl.lua's refusing getters. */
    {"_SSLv3_METHOD", M_SSLv3},
    {"_TLSv1_METHOD", M_TLSv1},
    {"_TLSv1_1_METHOD", M_TLSv1_1},
    {NULL, 0}};

/* spindle._ssl: the C half of spindle.ssl. */
int luaopen_spindle__ssl(lua_State *L) {
  int i;
  if (ctx_index < 0)
    ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ctx_extra_free);
  if (app_index < 0)
    app_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  if (ctx_index < 0 || app_index < 0) return sp_ssl_raise(L, "spindle._ssl");
  sp_class_new(L, SP_CONTEXT_MT, context_methods, context_meta);
  sp_class_new(L, SP_X509_MT, x509_methods, x509_meta);
  sp_class_new(L, "spindle.ssl.X509Name", name_methods, name_meta);
  sp_class_new(L, SP_CONNECTION_MT, connection_methods, connection_meta);
  luaL_newlib(L, ssl_funcs);
  for (i = 0; constants[i].name != NULL; i++) {
    lua_pushinteger(L, constants[i].value);
    lua_setfield(L, -2, constants[i].name);
  }
  lua_pushliteral(L, SP_DEFAULT_CIPHERS);
  lua_setfield(L, -2, "DEFAULT_CIPHERS");
  lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
  lua_setfield(L, -2, "OPENSSL_VERSION");
  return 1;
}
