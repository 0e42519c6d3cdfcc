/*
 * TLS server contexts: one per TLS listener, built when a configuration
 * generation loads so that a bad certificate or key is a config error.
 */
#include "autoconf.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls.h"

/* Offer and accept only http/1.1 in ALPN: WebSocket upgrades need it. */
static int
tls_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char	 h11[] = "\x08http/1.1";
	unsigned char			*sel;

	if (SSL_select_next_proto(&sel, outlen, h11, sizeof(h11) - 1, in,
	    inlen) != OPENSSL_NPN_NEGOTIATED)
		return (SSL_TLSEXT_ERR_ALERT_FATAL);
	*out = sel;
	return (SSL_TLSEXT_ERR_OK);
}

/* The first OpenSSL error as text, for a config error message. */
static const char *
tls_errstr(char *buf, size_t len)
{
	unsigned long	e;

	e = ERR_peek_last_error();
	if (e == 0)
		return ("unknown error");
	ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return (buf);
}

SSL_CTX *
tls_ctx_new(const char *cert, const char *key, int min_version,
    const char *client_ca, struct wsg_errors *errs, const char *file,
    size_t line, size_t col)
{
	SSL_CTX	*ctx;
	char	 ebuf[256];

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		errors_add(errs, file, line, col, "cannot create TLS context: %s",
		    tls_errstr(ebuf, sizeof(ebuf)));
		return (NULL);
	}
	SSL_CTX_set_min_proto_version(ctx, min_version);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* TLS 1.2: forward secrecy and AEAD only (no CBC: Lucky13). */
	if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:"
	    "DHE+AESGCM:DHE+CHACHA20:!aNULL") != 1) {
		errors_add(errs, file, line, col, "cannot set ciphers: %s",
		    tls_errstr(ebuf, sizeof(ebuf)));
		SSL_CTX_free(ctx);
		return (NULL);
	}
	/* Release the read/write buffers of idle connections. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_cb, NULL);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		errors_add(errs, file, line, col, "certificate %s: %s", cert,
		    tls_errstr(ebuf, sizeof(ebuf)));
		SSL_CTX_free(ctx);
		return (NULL);
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		errors_add(errs, file, line, col, "key %s: %s", key,
		    tls_errstr(ebuf, sizeof(ebuf)));
		SSL_CTX_free(ctx);
		return (NULL);
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		errors_add(errs, file, line, col,
		    "key %s does not match certificate %s", key, cert);
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return (NULL);
	}
	if (client_ca != NULL) {
		STACK_OF(X509_NAME)	*names;

		if (SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1) {
			errors_add(errs, file, line, col, "client_ca %s: %s",
			    client_ca, tls_errstr(ebuf, sizeof(ebuf)));
			SSL_CTX_free(ctx);
			return (NULL);
		}
		if ((names = SSL_load_client_CA_file(client_ca)) != NULL)
			SSL_CTX_set_client_CA_list(ctx, names);
		ERR_clear_error();
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
		    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
		SSL_CTX_set_verify_depth(ctx, 8);
	}
	return (ctx);
}
