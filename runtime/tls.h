/*
** tls.h: what the two halves of TLS share. ssl.c (spindle._ssl) holds the
** OpenSSL objects users touch: Context, X509, Connection, the constants
** and the one function that turns OpenSSL errors into ssl.Error values.
** tls.c (spindle._tls, a part of spindle.reactor) runs TLS over memory
** BIOs as a filter on the stream transport (stream.h): listenSSL,
** connectSSL, transport:startTLS and transport:getPeerCertificate.
**
** Ownership: each userdata (Context, X509, Connection) owns one reference
** to its SSL_CTX / X509 / SSL, taken with *_up_ref when shared and dropped
** by __gc. Everything here runs on the loop thread.
*/
#ifndef SP_TLS_H
#define SP_TLS_H

#include <lua.h>
#include <openssl/ssl.h>

#define SP_CONTEXT_MT "spindle.ssl.Context"
#define SP_X509_MT "spindle.ssl.X509"
#define SP_CONNECTION_MT "spindle.ssl.Connection"

/* The SSL_CTX behind the Context userdata at idx, or NULL if the value is
** not a Context. */
SSL_CTX *sp_ssl_tocontext(lua_State *L, int idx);

/* [-0, +1, m] Push an X509 userdata owning x (the caller's reference
** passes to it: up_ref first to share). x == NULL pushes nil. */
void sp_ssl_pushx509(lua_State *L, X509 *x);

/* [-0, +1, m] Push a Connection userdata for ssl (takes its own
** reference with SSL_up_ref). */
void sp_ssl_pushconnection(lua_State *L, SSL *ssl);

/* [-0, +1, m] Push an ssl.Error (or ssl.VerifyError when the peer's
** certificate was refused) describing what went wrong: `what` (a phrase:
** "TLS handshake failed") then the OpenSSL reasons of the error queue,
** which is emptied, and, when ssl is not NULL, its verification result.
** sslerr is SSL_get_error's answer (0 if none); hostname, if not NULL,
** is named by a hostname mismatch. Fields: message, reason (the first
** OpenSSL reason string), and for verification failures verifyCode and
** verifyReason. This is the one place OpenSSL errors are translated. */
void sp_ssl_pusherror(lua_State *L, SSL *ssl, int sslerr, const char *what,
                      const char *hostname);

/* [-0, +0, e] Raise sp_ssl_pusherror's error (no SSL object). */
int sp_ssl_raise(lua_State *L, const char *what);

/* Implemented by tls.c for ssl.c: push the transport whose TLS connection
** is ssl (nil if none); and the Lua state a verify callback must use. */
void sp_tls_pushtransport(lua_State *L, SSL *ssl);
lua_State *sp_tls_state(SSL *ssl);

#endif
