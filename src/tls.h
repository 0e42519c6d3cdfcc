/*
 * TLS server contexts for listeners.
 */
#ifndef WSG_TLS_H
#define WSG_TLS_H

#include <stdint.h>

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
/* The notAfter of the certificate it serves, a Unix time; -1 if none. */
int64_t	 tls_ctx_not_after(const SSL_CTX *);

/*
 * The session ticket key ring (tls.c explains it), at monotonic second
 * now.  tls_tkey_seal() copies out the key that seals tickets now, made
 * if its period has just begun: 1, or 0 if none could be made.
 * tls_tkey_open() copies out the key of that name if it still opens
 * tickets, setting *current to whether it is also the sealing one: 1, or
 * 0 if there is none.
 */
#define TLS_TKEY_NAME	16
#define TLS_TKEY_AES	32
#define TLS_TKEY_HMAC	32
int	 tls_tkey_seal(int64_t, unsigned char *, unsigned char *,
	    unsigned char *);
int	 tls_tkey_open(int64_t, const unsigned char *, unsigned char *,
	    unsigned char *, int *);

/*
 * Derive ticket keys from this secret from now on (tls.c explains how),
 * or, with 0 bytes, make random ones.  A secret other than the one set
 * before retires every key.  0, or -1 if the length is out of bounds.
 */
#define TLS_TKEY_SECRET_MIN	32
#define TLS_TKEY_SECRET_MAX	1024
int	 tls_tkey_set_secret(const void *, size_t);

/*
 * An OpenSSL error's reason for a log line: OpenSSL's text, or, where it
 * has none (an alert it does not know), the number, written into buf.
 */
const char *tls_reason(unsigned long, char *, size_t);

/*
 * Did a handshake fail because the client spoke plaintext HTTP (a request
 * line, or a proxy's CONNECT, where its first TLS record should be)?
 */
int	 tls_plain_http(unsigned long);

#define TLS_RECORD_HEADER	5	/* a TLS record's header, bytes */
#define TLS_MAX_METHOD		16	/* longest method a request line has */

/*
 * Do a TLS listener's first bytes start a plaintext HTTP request line?
 * 1 if so, 0 if not, -1 while too few have come to tell.
 */
int	 tls_plain_request_line(const unsigned char *, size_t);

#endif /* WSG_TLS_H */
