/*
 * TLS server contexts for listeners.
 */
#ifndef WSG_TLS_H
#define WSG_TLS_H

#include <openssl/ssl.h>

#include "errors.h"

/*
 * Build a server SSL_CTX from a PEM chain and key, with the minimum
 * version (TLS1_2_VERSION or TLS1_3_VERSION), ALPN restricted to
 * http/1.1, no renegotiation and no compression.  With a client CA file
 * (else NULL), clients must present a certificate chaining to it.  On
 * failure adds an error at file:line:col and returns NULL.
 */
SSL_CTX	*tls_ctx_new(const char *, const char *, int, const char *,
	    struct wsg_errors *, const char *, size_t, size_t);

#endif /* WSG_TLS_H */
