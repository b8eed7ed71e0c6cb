/*
** ssl.h: the OpenSSL objects of spindle.ssl (ssl.c, module spindle._ssl):
** Context, X509, Connection, and the one function that turns OpenSSL
** errors into ssl.Error values. tls.c (spindle._tls), which runs TLS
** connections over the stream transport, sits above: it includes this
** header, never the other way round. What ssl.c needs from a running
** connection (the Lua state to call a verify callback in, the transport
** for Connection:get_app_data) it asks through the sp_ssl_app hook that
** tls.c attaches to each SSL.
**
** Ownership: each userdata (Context, X509, Connection) owns one reference
** to its SSL_CTX / X509 / SSL, taken with *_up_ref when shared and dropped
** by __gc. What a Context sets on its SSL_CTX that OpenSSL calls back for
** (the ALPN list, the verify callback) is kept in the SSL_CTX's ex_data,
** owned by ssl.c and freed with the SSL_CTX, so it outlives a collected
** Context userdata. Everything here runs on the loop thread.
*/
#ifndef SP_SSL_H
#define SP_SSL_H

#include <lua.h>
#include <openssl/ssl.h>

#define SP_CONTEXT_MT "spindle.ssl.Context"
#define SP_X509_MT "spindle.ssl.X509"
#define SP_CONNECTION_MT "spindle.ssl.Connection"

/* The layer running an SSL (tls.c) as ssl.c sees it: embedded in that
** layer's connection state and attached with sp_ssl_set_app. */
typedef struct sp_ssl_app {
  /* The Lua state to call into during the SSL calls the layer makes (set
  ** before each: the reactor may run inside a coroutine); NULL: no Lua
  ** code may run (a verify callback then keeps OpenSSL's verdict). */
  lua_State *L;
  /* [-0, +1, m] Push the connection's transport, or nil once it is gone
  ** (pyOpenSSL's Connection.get_app_data). */
  void (*push)(lua_State *L, struct sp_ssl_app *app);
} sp_ssl_app;

/* Attach app to ssl (NULL detaches: do so before app's memory goes; the
** SSL may outlive it, held by a Connection userdata). */
void sp_ssl_set_app(SSL *ssl, sp_ssl_app *app);

/* The SSL_CTX behind the Context userdata at idx, or NULL if the value is
** not a Context. */
SSL_CTX *sp_ssl_tocontext(lua_State *L, int idx);

/* [-0, +1, m] Push an X509 userdata for x, which the caller keeps owning
** (a borrowed pointer, SSL_get0_peer_certificate's): the userdata is made
** first and then takes its own reference, so a memory error leaks
** nothing. x == NULL pushes nil. */
void sp_ssl_pushx509(lua_State *L, X509 *x);

/* [-0, +1, m] Push an empty X509 userdata and return its slot: an X509
** the caller stores there belongs to the userdata (its __gc frees it).
** Make it before acquiring the X509, so that a memory error leaks
** nothing (STYLE.md: userdata before resource). */
X509 **sp_ssl_newx509(lua_State *L);

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

#endif
