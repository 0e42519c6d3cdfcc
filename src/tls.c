/*
 * TLS server contexts: one per TLS listener, built when a configuration
 * generation loads so that a bad certificate or key is a config error.
 */
#include "autoconf.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "tls.h"
#include "tls13.h"

/*
 * Session ticket keys: one ring for the process, not one key per SSL_CTX
 * as OpenSSL makes by itself, so that a ticket stays good across a reload
 * (every reload builds new contexts; with their own keys each returning
 * client would make a full handshake).  A key is made when its period of
 * TLS_TKEY_PERIOD seconds starts and seals the tickets of that period;
 * it opens tickets for TLS_TKEY_N periods, so a ticket sealed at the end
 * of one still opens for its whole lifetime (TLS_TICKET_LIFETIME), and a
 * key that leaks exposes at most three hours of resumed sessions.  Keys
 * live only in memory: a restart starts a new ring.  Which listener's
 * sessions a ticket may resume is the session ID context's business
 * (tls_ctx_sid()).
 *
 * With a shared secret (tls_ticket_secret) the keys are not random but
 * derived from the secret and the period of the wall clock, so that every
 * gateway holding the secret seals and opens the same tickets, across
 * restarts too, with no exchange between them: the key of period P is
 * HMAC-SHA256(secret, "wsgate ticket key 1" || P as 8 bytes big-endian
 * || 'n', 'a' or 'h') for its name (the first 16 bytes), its AES key and
 * its HMAC key.  That ring also opens the tickets of the next period, for
 * a gateway whose clock runs behind another's.
 */
#define TLS_TKEY_PERIOD		3600
#define TLS_TKEY_N		3
#define TLS_TICKET_LIFETIME	(TLS_TKEY_PERIOD * (TLS_TKEY_N - 1))

struct tls_tkey {
	unsigned char	tk_name[TLS_TKEY_NAME];
	unsigned char	tk_aes[TLS_TKEY_AES];
	unsigned char	tk_hmac[TLS_TKEY_HMAC];
	int64_t		tk_period;	/* now / TLS_TKEY_PERIOD when made */
	int		tk_set;
};

static pthread_rwlock_t	 tls_tkey_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct tls_tkey	 tls_tkeys[TLS_TKEY_N];	/* [0] the newest */
static EVP_CIPHER	*tls_tkey_cipher;	/* AES-256-CBC, fetched once */

/* Copy a key out, for use outside the lock. */
static void
tls_tkey_copy(const struct tls_tkey *k, unsigned char *name,
    unsigned char *aes, unsigned char *hmac)
{
	if (name != NULL)
		memcpy(name, k->tk_name, sizeof(k->tk_name));
	memcpy(aes, k->tk_aes, sizeof(k->tk_aes));
	memcpy(hmac, k->tk_hmac, sizeof(k->tk_hmac));
}

/*
 * The shared secret (0 bytes: random keys), and the keys derived from it
 * for period tls_skeys_period: [0] the next period's, [1] the current one.
 */
static unsigned char	 tls_tkey_secret[TLS_TKEY_SECRET_MAX];
static size_t		 tls_tkey_secret_len;
/* Whether a secret is set, read without the lock on every ticket. */
static int		 tls_tkey_shared;
static struct tls_tkey	 tls_skeys[TLS_TKEY_N + 1];
static int64_t		 tls_skeys_period;
static int		 tls_skeys_ok;

int
tls_tkey_set_secret(const void *secret, size_t len)
{
	if (len > sizeof(tls_tkey_secret) || (len > 0 &&
	    len < TLS_TKEY_SECRET_MIN))
		return (-1);
	pthread_rwlock_wrlock(&tls_tkey_lock);
	if (len != tls_tkey_secret_len ||
	    CRYPTO_memcmp(secret, tls_tkey_secret, len) != 0) {
		/* Another secret: no key of the old one opens anything. */
		OPENSSL_cleanse(tls_tkey_secret, sizeof(tls_tkey_secret));
		if (len > 0)
			memcpy(tls_tkey_secret, secret, len);
		tls_tkey_secret_len = len;
		__atomic_store_n(&tls_tkey_shared, len > 0, __ATOMIC_RELEASE);
		OPENSSL_cleanse(tls_tkeys, sizeof(tls_tkeys));
		OPENSSL_cleanse(tls_skeys, sizeof(tls_skeys));
		tls_skeys_ok = 0;
	}
	pthread_rwlock_unlock(&tls_tkey_lock);
	return (0);
}

/*
 * Under the write lock: derive the keys of period + 1 down to
 * period - TLS_TKEY_N + 1 from the secret.
 */
static void
tls_skeys_fill(int64_t period)
{
	static const char	 label[] = "wsgate ticket key 1";
	unsigned char		 msg[sizeof(label) - 1 + 8 + 1];
	unsigned char		 md[EVP_MAX_MD_SIZE], *out[3];
	size_t			 i, j, len[3];
	unsigned int		 mdlen;
	uint64_t		 p;

	tls_skeys_ok = 0;
	memcpy(msg, label, sizeof(label) - 1);
	for (i = 0; i <= TLS_TKEY_N; i++) {
		p = (uint64_t)(period + 1 - (int64_t)i);
		for (j = 0; j < 8; j++)
			msg[sizeof(label) - 1 + j] =
			    (unsigned char)(p >> (56 - 8 * j));
		out[0] = tls_skeys[i].tk_name;
		len[0] = sizeof(tls_skeys[i].tk_name);
		out[1] = tls_skeys[i].tk_aes;
		len[1] = sizeof(tls_skeys[i].tk_aes);
		out[2] = tls_skeys[i].tk_hmac;
		len[2] = sizeof(tls_skeys[i].tk_hmac);
		for (j = 0; j < 3; j++) {
			msg[sizeof(msg) - 1] = (unsigned char)"nah"[j];
			if (HMAC(EVP_sha256(), tls_tkey_secret,
			    (int)tls_tkey_secret_len, msg, sizeof(msg), md,
			    &mdlen) == NULL || mdlen < len[j]) {
				OPENSSL_cleanse(md, sizeof(md));
				ERR_clear_error();
				return;
			}
			memcpy(out[j], md, len[j]);
		}
		tls_skeys[i].tk_period = period + 1 - (int64_t)i;
		tls_skeys[i].tk_set = 1;
	}
	OPENSSL_cleanse(md, sizeof(md));
	tls_skeys_period = period;
	tls_skeys_ok = 1;
}

/*
 * The derived key that seals now (want NULL) or the one named want:
 * 1 found, 0 not, -1 with no secret set (the random ring then answers).
 */
static int
tls_skey(int64_t now, const unsigned char *want, unsigned char *name,
    unsigned char *aes, unsigned char *hmac, int *current)
{
	int64_t	 period = now / TLS_TKEY_PERIOD;
	size_t	 i;
	int	 pass, rc;

	if (!__atomic_load_n(&tls_tkey_shared, __ATOMIC_ACQUIRE))
		return (-1);
	for (pass = 0; pass < 2; pass++) {
		if (pass == 0)
			pthread_rwlock_rdlock(&tls_tkey_lock);
		else
			pthread_rwlock_wrlock(&tls_tkey_lock);
		if (tls_tkey_secret_len == 0) {
			pthread_rwlock_unlock(&tls_tkey_lock);
			return (-1);
		}
		if (pass == 1 && (!tls_skeys_ok || tls_skeys_period != period))
			tls_skeys_fill(period);
		rc = -1;		/* stale: derive them first */
		i = 1;			/* the sealing key */
		if (tls_skeys_ok && tls_skeys_period == period) {
			rc = 1;
			if (want != NULL) {
				for (i = 0; i <= TLS_TKEY_N; i++)
					if (memcmp(tls_skeys[i].tk_name, want,
					    sizeof(tls_skeys[i].tk_name)) == 0)
						break;
				if (i > TLS_TKEY_N)
					rc = 0;
			}
		}
		if (rc == 1) {
			tls_tkey_copy(&tls_skeys[i], name, aes, hmac);
			if (current != NULL)
				*current = i <= 1;
		}
		pthread_rwlock_unlock(&tls_tkey_lock);
		if (rc != -1)
			return (rc);
	}
	return (0);
}

int
tls_tkey_seal(int64_t now, unsigned char *name, unsigned char *aes,
    unsigned char *hmac)
{
	struct tls_tkey	 fresh;
	int64_t		 period = now / TLS_TKEY_PERIOD;
	int		 rc;

	if ((rc = tls_skey(now, NULL, name, aes, hmac, NULL)) != -1)
		return (rc);
	rc = 0;
	pthread_rwlock_rdlock(&tls_tkey_lock);
	if (tls_tkeys[0].tk_set && tls_tkeys[0].tk_period == period) {
		tls_tkey_copy(&tls_tkeys[0], name, aes, hmac);
		rc = 1;
	}
	pthread_rwlock_unlock(&tls_tkey_lock);
	if (rc)
		return (1);

	/* A new period: make its key (another thread may have done so). */
	pthread_rwlock_wrlock(&tls_tkey_lock);
	if (!tls_tkeys[0].tk_set || tls_tkeys[0].tk_period != period) {
		if (RAND_bytes(fresh.tk_name, sizeof(fresh.tk_name)) == 1 &&
		    RAND_priv_bytes(fresh.tk_aes, sizeof(fresh.tk_aes)) == 1 &&
		    RAND_priv_bytes(fresh.tk_hmac,
		    sizeof(fresh.tk_hmac)) == 1) {
			fresh.tk_period = period;
			fresh.tk_set = 1;
			OPENSSL_cleanse(&tls_tkeys[TLS_TKEY_N - 1],
			    sizeof(tls_tkeys[0]));
			memmove(&tls_tkeys[1], &tls_tkeys[0],
			    (TLS_TKEY_N - 1) * sizeof(tls_tkeys[0]));
			tls_tkeys[0] = fresh;
		}
		OPENSSL_cleanse(&fresh, sizeof(fresh));
		ERR_clear_error();
	}
	if (tls_tkeys[0].tk_set && tls_tkeys[0].tk_period == period) {
		tls_tkey_copy(&tls_tkeys[0], name, aes, hmac);
		rc = 1;
	}
	pthread_rwlock_unlock(&tls_tkey_lock);
	return (rc);
}

int
tls_tkey_open(int64_t now, const unsigned char *name, unsigned char *aes,
    unsigned char *hmac, int *current)
{
	int64_t	 period = now / TLS_TKEY_PERIOD;
	size_t	 i;
	int	 rc;

	if ((rc = tls_skey(now, name, NULL, aes, hmac, current)) != -1)
		return (rc);
	rc = 0;
	pthread_rwlock_rdlock(&tls_tkey_lock);
	for (i = 0; i < TLS_TKEY_N; i++) {
		if (!tls_tkeys[i].tk_set || memcmp(tls_tkeys[i].tk_name, name,
		    sizeof(tls_tkeys[i].tk_name)) != 0)
			continue;
		if (period - tls_tkeys[i].tk_period < TLS_TKEY_N) {
			tls_tkey_copy(&tls_tkeys[i], NULL, aes, hmac);
			*current = tls_tkeys[i].tk_period == period;
			rc = 1;
		}
		break;
	}
	pthread_rwlock_unlock(&tls_tkey_lock);
	return (rc);
}

/*
 * Seconds on a clock that does not jump, for random keys; with a shared
 * secret, on the wall clock every gateway shares.
 */
static int64_t
tls_now(void)
{
	struct timespec	ts;

	clock_gettime(__atomic_load_n(&tls_tkey_shared, __ATOMIC_ACQUIRE) ?
	    CLOCK_REALTIME : CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec);
}

/*
 * OpenSSL's ticket callback.  Sealing: the current key, a random IV.
 * Opening: 0 for a key that is unknown or retired (a full handshake
 * follows), 2 for one that is no longer current (OpenSSL then sends a
 * fresh ticket).  Any failure is 0: that client resumes nothing (or, in
 * TLS 1.3, gets no ticket) and its handshake goes on.
 */
static int
tls_ticket_cb(SSL *ssl, unsigned char *name, unsigned char *iv,
    EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	unsigned char	 aes[TLS_TKEY_AES], hmac[TLS_TKEY_HMAC];
	OSSL_PARAM	 params[3];
	int		 rc, current = 1;

	(void)ssl;
	if (enc) {
		rc = tls_tkey_seal(tls_now(), name, aes, hmac) == 1 &&
		    RAND_bytes(iv, EVP_CIPHER_get_iv_length(tls_tkey_cipher)) ==
		    1 && EVP_EncryptInit_ex(cctx, tls_tkey_cipher, NULL, aes,
		    iv) == 1;
	} else {
		rc = tls_tkey_open(tls_now(), name, aes, hmac, &current) &&
		    EVP_DecryptInit_ex(cctx, tls_tkey_cipher, NULL, aes, iv) ==
		    1;
	}
	if (rc) {
		params[0] = OSSL_PARAM_construct_octet_string(
		    OSSL_MAC_PARAM_KEY, hmac, sizeof(hmac));
		params[1] = OSSL_PARAM_construct_utf8_string(
		    OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
		params[2] = OSSL_PARAM_construct_end();
		rc = EVP_MAC_CTX_set_params(hctx, params) == 1;
	}
	OPENSSL_cleanse(aes, sizeof(aes));
	OPENSSL_cleanse(hmac, sizeof(hmac));
	if (!rc) {
		ERR_clear_error();
		return (0);
	}
	return (current ? 1 : 2);
}

/*
 * A session carries its client certificate, whose chain was verified at
 * the full handshake only: a ticket lives for hours, and the certificate,
 * or an authority above it, may expire (or, the clock set back, not be
 * valid yet) before then.  The ticket holds the window in which the whole
 * verified chain is valid, the latest notBefore and the earliest
 * notAfter as 8-byte big-endian Unix times; a resumed session keeps the
 * window of the handshake that verified it.
 */
#define TLS_TAPP_LEN	16

static void
tls_put64(unsigned char *p, int64_t v)
{
	int	i;

	for (i = 0; i < 8; i++)
		p[i] = (unsigned char)((uint64_t)v >> (56 - 8 * i));
}

static int64_t
tls_get64(const unsigned char *p)
{
	uint64_t	v = 0;
	int		i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return ((int64_t)v);
}

static int64_t	tls_time(const ASN1_TIME *);

/* OpenSSL's call as it makes a ticket: 0 would fail the handshake. */
static int
tls_ticket_gen_cb(SSL *ssl, void *arg)
{
	STACK_OF(X509)	*chain;
	SSL_SESSION	*sess;
	X509		*x;
	unsigned char	 app[TLS_TAPP_LEN];
	int64_t		 nb = INT64_MIN, na = INT64_MAX, t;
	int		 i;

	(void)arg;
	if (SSL_session_reused(ssl) || (sess = SSL_get_session(ssl)) == NULL ||
	    (chain = SSL_get0_verified_chain(ssl)) == NULL)
		return (1);
	for (i = 0; i < sk_X509_num(chain); i++) {
		x = sk_X509_value(chain, i);
		/* A time that does not convert: the leaf check alone. */
		if ((t = tls_time(X509_get0_notBefore(x))) == -1)
			return (1);
		if (t > nb)
			nb = t;
		if ((t = tls_time(X509_get0_notAfter(x))) == -1)
			return (1);
		if (t < na)
			na = t;
	}
	if (i == 0)
		return (1);
	tls_put64(app, nb);
	tls_put64(app + 8, na);
	/* Without it (no memory) the leaf is still checked. */
	if (SSL_SESSION_set1_ticket_appdata(sess, app, sizeof(app)) != 1)
		ERR_clear_error();
	return (1);
}

/*
 * OpenSSL's call once a ticket is opened, in TLS 1.2 and 1.3 alike.  A
 * session whose chain is out of its window now, or whose client
 * certificate is (a ticket without the window), is not resumed: the
 * client makes a full handshake, where its chain is verified, and
 * refused, as any other.  Otherwise what OpenSSL decided stands (and a
 * new ticket with a full handshake, as without this call).
 */
static SSL_TICKET_RETURN
tls_ticket_dec_cb(SSL *ssl, SSL_SESSION *sess, const unsigned char *name,
    size_t namelen, SSL_TICKET_STATUS status, void *arg)
{
	X509		*x;
	void		*app;
	size_t		 len;
	int64_t		 now = (int64_t)time(NULL);

	(void)ssl;
	(void)name;
	(void)namelen;
	(void)arg;
	if (status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW)
		return (SSL_TICKET_RETURN_IGNORE_RENEW);
	/* From notBefore on, until notAfter, as OpenSSL verifies. */
	if (SSL_SESSION_get0_ticket_appdata(sess, &app, &len) == 1 &&
	    len == TLS_TAPP_LEN && (now < tls_get64(app) ||
	    now >= tls_get64((unsigned char *)app + 8)))
		return (SSL_TICKET_RETURN_IGNORE_RENEW);
	if ((x = SSL_SESSION_get0_peer(sess)) != NULL &&
	    (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0 ||
	    X509_cmp_current_time(X509_get0_notBefore(x)) >= 0)) {
		ERR_clear_error();
		return (SSL_TICKET_RETURN_IGNORE_RENEW);
	}
	return (status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE :
	    SSL_TICKET_RETURN_USE_RENEW);
}

/*
 * The session ID context: which sessions this context may resume.  With
 * one ticket key ring for every listener, a ticket from one listener
 * would otherwise resume on another, past a client_ca that one requires
 * and the other does not.  A digest of what a session was authenticated
 * with (the certificate chain, the client CAs and whether a client
 * certificate is required), as nginx does: listeners that share all of it
 * share sessions, and a new certificate at a reload starts afresh.
 * OpenSSL also refuses to resume, with a failed handshake, on a context
 * that asks for client certificates and has no such context.
 */
/* Add a DER encoding of length n (<= 0: none, a failure) and free it. */
static int
tls_sid_add(EVP_MD_CTX *md, int n, unsigned char **der)
{
	int	ok = n > 0 && EVP_DigestUpdate(md, *der, n) == 1;

	OPENSSL_free(*der);
	*der = NULL;
	return (ok);
}

static int
tls_ctx_sid(SSL_CTX *ctx)
{
	EVP_MD_CTX		*md;
	STACK_OF(X509)		*chain = NULL;
	STACK_OF(X509_NAME)	*cas;
	STACK_OF(X509_OBJECT)	*objs;
	X509_STORE		*store;
	X509			*leaf;
	unsigned char		 sid[EVP_MAX_MD_SIZE], *der = NULL;
	unsigned int		 sidlen = 0;
	unsigned char		 verify;
	int			 i, ok;

	if ((md = EVP_MD_CTX_new()) == NULL)
		return (-1);
	ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
	verify = (SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER) != 0;
	ok = ok && EVP_DigestUpdate(md, &verify, 1) == 1;
	if ((leaf = SSL_CTX_get0_certificate(ctx)) != NULL)
		ok = tls_sid_add(md, i2d_X509(leaf, &der), &der) && ok;
	(void)SSL_CTX_get0_chain_certs(ctx, &chain);
	for (i = 0; chain != NULL && i < sk_X509_num(chain); i++)
		ok = tls_sid_add(md, i2d_X509(sk_X509_value(chain, i), &der),
		    &der) && ok;
	cas = SSL_CTX_get_client_CA_list(ctx);
	for (i = 0; cas != NULL && i < sk_X509_NAME_num(cas); i++)
		ok = tls_sid_add(md, i2d_X509_NAME(sk_X509_NAME_value(cas, i),
		    &der), &der) && ok;
	/*
	 * The authorities themselves, not only their names: a CA made anew
	 * under the same name (a new key), or one in a file whose names
	 * SSL_load_client_CA_file() cannot read (TRUSTED CERTIFICATE PEM),
	 * must not let the sessions of the old one resume.
	 */
	if ((store = SSL_CTX_get_cert_store(ctx)) != NULL &&
	    (objs = X509_STORE_get0_objects(store)) != NULL)
		for (i = 0; i < sk_X509_OBJECT_num(objs); i++) {
			X509	*ca;

			ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs,
			    i));
			if (ca != NULL)
				ok = tls_sid_add(md, i2d_X509(ca, &der),
				    &der) && ok;
		}
	ok = ok && EVP_DigestFinal_ex(md, sid, &sidlen) == 1;
	EVP_MD_CTX_free(md);
	if (sidlen > SSL_MAX_SID_CTX_LENGTH)
		sidlen = SSL_MAX_SID_CTX_LENGTH;
	if (!ok || SSL_CTX_set_session_id_context(ctx, sid, sidlen) != 1)
		return (-1);
	return (0);
}

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

/*
 * The passphrase callback: there is none to give.  OpenSSL's own would
 * ask on the terminal, stalling wsgate -t or, worse, a reload.  Records
 * that a key asked, for the error message.
 */
static int
tls_nopass_cb(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	if (arg != NULL)
		*(int *)arg = 1;
	return (0);
}

const char *
tls_reason(unsigned long e, char *buf, size_t len)
{
	const char	*s;
	int		 r = ERR_GET_REASON(e);

	if ((s = ERR_reason_error_string(e)) != NULL)
		return (s);
	if (ERR_GET_LIB(e) == ERR_LIB_SSL && r >= SSL_AD_REASON_OFFSET &&
	    r < SSL_AD_REASON_OFFSET + 256)
		(void)snprintf(buf, len, "alert number %d",
		    r - SSL_AD_REASON_OFFSET);
	else
		(void)snprintf(buf, len, "error %d", r);
	return (buf);
}

/*
 * OpenSSL tells these apart from other garbage by the first five bytes of
 * the first record, and sends no alert for them: the client has been sent
 * nothing yet.
 */
int
tls_plain_http(unsigned long e)
{
	return (ERR_GET_LIB(e) == ERR_LIB_SSL &&
	    (ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST ||
	    ERR_GET_REASON(e) == SSL_R_HTTPS_PROXY_REQUEST));
}

/*
 * Do the first bytes a client sent to a TLS listener start an HTTP request
 * line: a method in capitals, a space and a target ("/", "*", or an
 * absolute http:// or https:// URI)?  No TLS record starts with a capital
 * letter.  1 if so, 0 if not, -1 while what came, shorter than a record
 * header, could still be one.  What OpenSSL tells by itself (GET, POST,
 * HEAD, PUT, CONNECT) is told here too, more is not: a request line come
 * in pieces longer than that is left to OpenSSL.
 */
int
tls_plain_request_line(const unsigned char *b, size_t len)
{
	static const char *const abs[] = { "http://", "https://" };
	size_t	i = 0, j, k;

	while (i < len && i < TLS_MAX_METHOD && ((b[i] >= 'A' &&
	    b[i] <= 'Z') || (i > 0 && (b[i] == '-' || b[i] == '_'))))
		i++;
	if (i == 0)
		return (0);
	if (i < len && b[i++] != ' ')
		return (0);
	if (i < len) {
		if (b[i] == '/' || b[i] == '*')
			return (1);
		for (k = 0; k < 2; k++) {
			for (j = 0; i + j < len && abs[k][j] != '\0' &&
			    (b[i + j] == abs[k][j] || (abs[k][j] >= 'a' &&
			    b[i + j] == abs[k][j] - 'a' + 'A')); j++)
				;
			if (abs[k][j] == '\0')
				return (1);
			if (i + j == len)
				break;		/* so far, so good */
		}
		if (k == 2)
			return (0);
	}
	return (len < TLS_RECORD_HEADER ? -1 : 0);
}

/* A certificate time as a Unix time; -1 if it does not convert. */
static int64_t
tls_time(const ASN1_TIME *t)
{
	struct tm	tm;

	memset(&tm, 0, sizeof(tm));
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return (-1);
	return ((int64_t)timegm(&tm));
}

int64_t
tls_ctx_not_after(const SSL_CTX *ctx)
{
	X509	*x;

	if (ctx == NULL || (x = SSL_CTX_get0_certificate(ctx)) == NULL)
		return (-1);
	return (tls_time(X509_get0_notAfter(x)));
}

/*
 * Warn when the certificate a context serves is out of its validity
 * period now: clients that check it refuse every handshake.
 */
static void
tls_check_validity(SSL_CTX *ctx, const char *cert, struct wsg_errors *errs,
    const char *file, size_t line, size_t col)
{
	X509		*x = SSL_CTX_get0_certificate(ctx);
	int64_t		 t, now = (int64_t)time(NULL);
	time_t		 tt;
	struct tm	 tm;
	char		 when[32];

	if (x == NULL)
		return;
	if ((t = tls_time(X509_get0_notAfter(x))) != -1 && t < now) {
		tt = (time_t)t;
		gmtime_r(&tt, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
		errors_warn(errs, file, line, col, "certificate %s expired on "
		    "%s: clients that check it refuse every handshake", cert,
		    when);
	} else if ((t = tls_time(X509_get0_notBefore(x))) != -1 &&
	    t > now) {
		tt = (time_t)t;
		gmtime_r(&tt, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
		errors_warn(errs, file, line, col, "certificate %s is not valid "
		    "before %s: clients that check it refuse every handshake "
		    "until then", cert, when);
	}
}

/*
 * Whether OpenSSL's first error says the file had no PEM block of the kind
 * wanted (an empty file, a DER file, a key given as the certificate or the
 * other way round), for which its last one says only "PEM lib".
 */
static int
tls_no_pem(void)
{
	unsigned long	e;

	e = ERR_peek_error();
	return ((ERR_GET_LIB(e) == ERR_LIB_PEM &&
	    ERR_GET_REASON(e) == PEM_R_NO_START_LINE) ||
	    (ERR_GET_LIB(e) == ERR_LIB_OSSL_DECODER &&
	    ERR_GET_REASON(e) == ERR_R_UNSUPPORTED));
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
	SSL_CTX		*ctx;
	char		 ebuf[256];
	unsigned long	 e;
	int		 asked = 0, rc;

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
	/*
	 * Key exchange groups: the elliptic curves only.  OpenSSL's default
	 * list also has the finite-field groups (ffdhe2048 to ffdhe8192),
	 * which a client picks by its key share alone: a replayed
	 * ClientHello with an ffdhe8192 share costs the gateway about 150 ms
	 * of CPU (X25519: 0.4 ms).
	 */
	if (SSL_CTX_set1_groups_list(ctx, "X25519:P-256:X448:P-521:P-384") !=
	    1) {
		errors_add(errs, file, line, col, "cannot set groups: %s",
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
		if (tls_no_pem()) {
			errors_add(errs, file, line, col, "certificate %s: no "
			    "PEM certificate in it (-----BEGIN CERTIFICATE-----)",
			    cert);
			ERR_clear_error();
		} else
			errors_add(errs, file, line, col, "certificate %s: %s",
			    cert, tls_errstr(ebuf, sizeof(ebuf)));
		SSL_CTX_free(ctx);
		return (NULL);
	}
	tls_check_validity(ctx, cert, errs, file, line, col);
	SSL_CTX_set_default_passwd_cb(ctx, tls_nopass_cb);
	SSL_CTX_set_default_passwd_cb_userdata(ctx, &asked);
	rc = SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM);
	SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
	e = ERR_peek_last_error();
	if (rc != 1 && asked) {
		errors_add(errs, file, line, col, "key %s is encrypted; "
		    "give a key without a passphrase", key);
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return (NULL);
	}
	if (rc != 1 && tls_no_pem()) {
		errors_add(errs, file, line, col, "key %s: no PEM private key "
		    "in it (-----BEGIN PRIVATE KEY-----)", key);
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return (NULL);
	}
	/* A key of the certificate's type is checked against it here. */
	if (rc != 1 && !(ERR_GET_LIB(e) == ERR_LIB_X509 &&
	    ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)) {
		errors_add(errs, file, line, col, "key %s: %s", key,
		    tls_errstr(ebuf, sizeof(ebuf)));
		SSL_CTX_free(ctx);
		return (NULL);
	}
	if (rc != 1 || SSL_CTX_check_private_key(ctx) != 1) {
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
	/* Tickets: the process's key ring, for this context's sessions. */
	if (tls_tkey_cipher == NULL)
		tls_tkey_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
	if (tls_tkey_cipher == NULL || tls_ctx_sid(ctx) == -1 ||
	    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tls_ticket_cb) != 1 ||
	    SSL_CTX_set_session_ticket_cb(ctx, tls_ticket_gen_cb,
	    tls_ticket_dec_cb, NULL) != 1) {
		errors_add(errs, file, line, col,
		    "cannot set up session tickets: %s",
		    tls_errstr(ebuf, sizeof(ebuf)));
		SSL_CTX_free(ctx);
		return (NULL);
	}
	SSL_CTX_set_timeout(ctx, TLS_TICKET_LIFETIME);
	/*
	 * No session cache: tickets resume, in TLS 1.2 as in 1.3.  The cache
	 * would keep every TLS 1.2 session closed cleanly for a client that
	 * refuses tickets, some 1.2 KiB each (more with a client
	 * certificate), up to 20480 per listener and generation, for the
	 * ticket lifetime, and it starts empty at every reload anyway.
	 */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* Open sessions move to tls13.c; without it they stay here. */
	(void)tls13_ctx_setup(ctx);
	tls_warm(ctx);
	return (ctx);
}
