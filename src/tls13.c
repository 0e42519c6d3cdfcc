/*
 * TLS 1.3 record protection for open sessions (RFC 8446 section 5), the
 * key update (4.6.3, 7.2) and the alerts a relay needs (6).
 *
 * Capture.  The key log callback hands over the client and server
 * application traffic secrets as the handshake derives them.  The
 * message callback counts the records each side protected with them:
 * counting starts at that side's Finished message (the last record under
 * the handshake keys; the callback for a handshake message comes after
 * its record's header, written or read) and goes up by one per record
 * header after it, which is the next record's sequence number.  A key
 * update before the takeover spoils the capture, and the session stays
 * with OpenSSL.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "gcm.h"
#include "tls13.h"
#include "units.h"

#define T13_HDR		5
#define T13_TAG		16
#define T13_IVLEN	12
#define T13_MAX_PLAIN	16384			/* 2^14 */
#define T13_MAX_CIPHER	(T13_MAX_PLAIN + 256)	/* 2^14 + 256 */
#define T13_RECORD_MAX	(T13_HDR + T13_MAX_CIPHER)
#define T13_OVERHEAD	(T13_HDR + 1 + T13_TAG)	/* header, type, tag */
#define T13_SECRET_MAX	48
/* Records sealed for one send(2) at most. */
#define T13_BATCH	4
/* Queued output up to this size leaves in the send of the next records. */
#define T13_JOIN	1024
/* A KeyUpdate's record: the message is 4 + 1 bytes. */
#define T13_KU_REC	(4 + 1 + T13_OVERHEAD)
/* Each record of a batch may follow a key update of ours. */
#define T13_OBUF	(T13_JOIN + T13_BATCH * (T13_MAX_PLAIN + T13_OVERHEAD + \
			    T13_KU_REC))
#define T13_RBUF	(64 * 1024 + T13_RECORD_MAX)
#define T13_IOV		16
/*
 * Records with up to this many bytes of ciphertext (before the tag) are
 * sealed and opened with gcm.c where the CPU allows: below it OpenSSL's
 * set-up per record costs more than the AES-NI code's slower blocks
 * (sealing 37 bytes: 112 ns against 211; level at 768-1024 bytes).
 */
#define T13_GCM_MAX	1024
/*
 * What a client may ask for at no cost of its own, bounded: empty
 * records or warnings in a row (OpenSSL allows 32), and key updates
 * (each costs us six HKDF derivations).  Each update owes T13_UPDATE_GAP
 * records and every record read pays one back: a client may update as
 * often as once per T13_UPDATE_GAP records for ever, and in a burst
 * T13_MAX_RAPID_UPDATES times, but not faster for long.
 */
#define T13_MAX_EMPTY		32
#define T13_UPDATE_GAP		64
#define T13_MAX_RAPID_UPDATES	16
/*
 * Our own key update, whichever comes first: 2^34 bytes of plaintext
 * (16 GiB) or 2^24 records sealed under one write key.  RFC 8446 5.5
 * allows AES-GCM 2^24.5 full-size records, about 2^38.5 bytes, for a
 * margin of 2^-57; at 2^34 bytes we stay 2^4.5 (22 times) under it, and
 * the record count bounds the records too short for the bytes to count.
 * One rule for every suite, ChaCha20-Poly1305 included.
 */
#define T13_REKEY_BYTES		(1ULL << 34)
#define T13_REKEY_RECORDS	(1ULL << 24)

/* Content types and the alerts sent. */
#define T13_CT_ALERT		21
#define T13_CT_HANDSHAKE	22
#define T13_CT_APPDATA		23
#define T13_AD_CLOSE_NOTIFY	0
#define T13_AD_UNEXPECTED	10
#define T13_AD_BAD_MAC		20
#define T13_AD_OVERFLOW		22
#define T13_AD_ILLEGAL		47
#define T13_AD_DECODE		50
#define T13_AD_PROTO_VERSION	70
#define T13_AD_INTERNAL		80
#define T13_AD_USER_CANCELED	90

enum { T13_AES128GCM, T13_AES256GCM, T13_CHACHA, T13_NSUITES };

struct t13_dir {
	uint8_t		d_secret[T13_SECRET_MAX];
	uint8_t		d_key[32];
	uint8_t		d_iv[T13_IVLEN];
	uint64_t	d_seq;
	uint64_t	d_keyid;	/* tells the thread's contexts apart */
	uint64_t	d_bytes;	/* plaintext sealed under the key */
};

struct wsg_tls13 {
	struct t13_dir	 t_rd;		/* client to us */
	struct t13_dir	 t_wr;		/* us to client */
	int		 t_suite;
	size_t		 t_hashlen;
	size_t		 t_keylen;
	int		 t_update_due;	/* the client asked for our update */
	int		 t_eof;		/* close_notify read, or the end */
	int		 t_notified;	/* close_notify read */
	int		 t_done;	/* fatal alert or close_notify sent */
	unsigned int	 t_empty;	/* empty records in a row */
	uint8_t		 t_hs[4 + 1];	/* a KeyUpdate read in part */
	size_t		 t_hslen;
	uint64_t	 t_update_debt;	/* records key updates still owe */
	uint8_t		*t_in;		/* the start of a record */
	size_t		 t_inlen;
	uint8_t		*t_out;		/* sealed, not yet written */
	size_t		 t_outoff;
	size_t		 t_outlen;
};

struct t13_capture {
	uint8_t		 c_secret[2][T13_SECRET_MAX];	/* client, server */
	size_t		 c_secretlen[2];
	uint64_t	 c_count[2];			/* read, written */
	int		 c_counting[2];
	int		 c_spoiled;
};

static pthread_once_t	 t13_once = PTHREAD_ONCE_INIT;
static int		 t13_index = -1;
static EVP_MAC		*t13_hmac;
static EVP_CIPHER	*t13_ciphers[T13_NSUITES];
static uint64_t		 t13_keyids;
static int		 t13_gcm_ok;	/* the CPU runs gcm.c */
static uint64_t		 t13_rekey_bytes = T13_REKEY_BYTES;
static uint64_t		 t13_rekey_records = T13_REKEY_RECORDS;

/*
 * Each thread keeps up to T13_CACHE keyed contexts per direction, slot by
 * key id: a busy connection finds its key set up (a key schedule and the
 * GHASH tables cost more than sealing a small record), and the memory is
 * the thread's, whatever the number of idle connections.
 */
#define T13_CACHE	256
struct t13_slot {
	EVP_CIPHER_CTX	*s_ctx;
	uint64_t	 s_keyid;	/* 0: not keyed */
	int		 s_suite;
	struct wsg_gcm	 s_gcm;		/* AES-GCM suites, short records */
	uint64_t	 s_gcmid;	/* 0: not keyed */
};
static __thread struct t13_slot	*t13_cache[2];
/* HMAC contexts with their digest set: SHA-256, SHA-384. */
static __thread EVP_MAC_CTX	*t13_mac[2];
static __thread uint8_t		*t13_obuf;
static __thread uint64_t	 t13_fast_count;
static __thread uint8_t		*t13_rbuf;

static ssize_t	t13_send(int, const uint8_t *, size_t);
static void	t13_forget(const struct t13_dir *, int);

static void
t13_capture_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
    long argl, void *argp)
{
	if (ptr != NULL) {
		OPENSSL_cleanse(ptr, sizeof(struct t13_capture));
		free(ptr);
	}
}

static void
t13_init(void)
{
	static const char	*names[T13_NSUITES] = { "AES-128-GCM",
				    "AES-256-GCM", "ChaCha20-Poly1305" };
	int			 i;

	t13_gcm_ok = gcm_available();
	if ((t13_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
		return;
	for (i = 0; i < T13_NSUITES; i++)
		if ((t13_ciphers[i] = EVP_CIPHER_fetch(NULL, names[i],
		    NULL)) == NULL)
			return;
	t13_index = SSL_get_ex_new_index(0, NULL, NULL, NULL,
	    t13_capture_free);
}

static struct t13_capture *
t13_capture_get(const SSL *ssl)
{
	struct t13_capture	*c;

	if ((c = SSL_get_ex_data(ssl, t13_index)) != NULL)
		return (c);
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return (NULL);
	if (SSL_set_ex_data((SSL *)ssl, t13_index, c) != 1) {
		free(c);
		return (NULL);
	}
	return (c);
}

/* "LABEL <client random> <secret>", both in hex. */
static void
t13_keylog_cb(const SSL *ssl, const char *line)
{
	static const char	*labels[2] = { "CLIENT_TRAFFIC_SECRET_0 ",
				    "SERVER_TRAFFIC_SECRET_0 " };
	struct t13_capture	*c;
	const char		*h;
	size_t			 i, n;
	int			 hi, lo;

	for (i = 0; i < 2; i++)
		if (strncmp(line, labels[i], strlen(labels[i])) == 0)
			break;
	if (i == 2 || (c = t13_capture_get(ssl)) == NULL)
		return;
	if ((h = strrchr(line, ' ')) == NULL) {
		c->c_spoiled = 1;
		return;
	}
	h++;
	for (n = 0; h[0] != '\0'; h += 2) {
		if (n == T13_SECRET_MAX || (hi = units_hexval(h[0])) == -1 ||
		    (lo = units_hexval(h[1])) == -1) {
			c->c_spoiled = 1;
			return;
		}
		c->c_secret[i][n++] = (uint8_t)(hi << 4 | lo);
	}
	c->c_secretlen[i] = n;
}

static void
t13_msg_cb(int write_p, int version, int type, const void *buf, size_t len,
    SSL *ssl, void *arg)
{
	struct t13_capture	*c;
	const uint8_t		*b = buf;
	int			 dir = write_p ? 1 : 0;

	if (type != SSL3_RT_HEADER && type != SSL3_RT_HANDSHAKE)
		return;
	if ((c = t13_capture_get(ssl)) == NULL)
		return;
	if (type == SSL3_RT_HEADER) {
		if (c->c_counting[dir])
			c->c_count[dir]++;
		return;
	}
	if (len < 1)
		return;
	if (b[0] == SSL3_MT_FINISHED) {
		c->c_counting[dir] = 1;
		c->c_count[dir] = 0;
	} else if (b[0] == SSL3_MT_KEY_UPDATE)
		c->c_spoiled = 1;
}

int
tls13_ctx_setup(SSL_CTX *ctx)
{
	(void)pthread_once(&t13_once, t13_init);
	if (t13_index == -1)
		return (-1);
	SSL_CTX_set_keylog_callback(ctx, t13_keylog_cb);
	SSL_CTX_set_msg_callback(ctx, t13_msg_cb);
	/*
	 * No tickets at the end of the handshake: tls13_takeover() sends
	 * one with the 101, in the same write, instead of two (OpenSSL's
	 * default) each written as the handshake ends.
	 */
	SSL_CTX_set_num_tickets(ctx, 0);
	return (0);
}

/*
 * The session's ticket, held back at the handshake (tls13_ctx_setup()),
 * sealed by OpenSSL into memory: the message callback counts its record
 * as it does any other.  Returns the bytes (*len of them), or NULL with
 * *len 0 when OpenSSL made none; with *len -1 it made some that could
 * not be kept, and the client's record numbers no longer match ours.
 */
static uint8_t *
t13_ticket(SSL *ssl, size_t *len)
{
	BIO	*sock = SSL_get_wbio(ssl), *mem;
	char	*p;
	long	 n;
	uint8_t	*out = NULL;

	*len = 0;
	if (sock == NULL || (mem = BIO_new(BIO_s_mem())) == NULL)
		return (NULL);
	if (BIO_up_ref(sock) != 1) {
		BIO_free(mem);
		return (NULL);
	}
	SSL_set0_wbio(ssl, mem);
	if (SSL_new_session_ticket(ssl) == 1 && SSL_do_handshake(ssl) != 1)
		ERR_clear_error();
	if ((n = BIO_get_mem_data(mem, &p)) > 0) {
		if ((out = malloc((size_t)n)) != NULL) {
			memcpy(out, p, (size_t)n);
			*len = (size_t)n;
		} else
			*len = (size_t)-1;
	}
	SSL_set0_wbio(ssl, sock);	/* frees mem, takes our reference */
	return (out);
}

/*
 * HKDF-Expand-Label(secret, label, "", outlen), RFC 8446 7.1.  Every
 * output here is at most the hash's length, so HKDF-Expand is one HMAC:
 * T(1) = HMAC(secret, HkdfLabel | 0x01).  The thread's HMAC context keeps
 * its digest; EVP_KDF would fetch and set it up on every call, about
 * three times the cost.
 */
static int
t13_expand(const struct wsg_tls13 *t, const uint8_t *secret,
    const char *label, uint8_t *out, size_t outlen)
{
	EVP_MAC_CTX	**mp = &t13_mac[t->t_hashlen == 48];
	OSSL_PARAM	 params[2];
	uint8_t		 info[2 + 1 + 6 + 32 + 1 + 1], md[EVP_MAX_MD_SIZE];
	size_t		 ll = strlen(label), n = 0, mdlen;

	if (outlen > t->t_hashlen || ll > 32)
		return (-1);
	if (*mp == NULL) {
		if ((*mp = EVP_MAC_CTX_new(t13_hmac)) == NULL)
			return (-1);
		params[0] = OSSL_PARAM_construct_utf8_string(
		    OSSL_MAC_PARAM_DIGEST, t->t_hashlen == 48 ? "SHA384" :
		    "SHA256", 0);
		params[1] = OSSL_PARAM_construct_end();
		if (EVP_MAC_CTX_set_params(*mp, params) != 1) {
			EVP_MAC_CTX_free(*mp);
			*mp = NULL;
			return (-1);
		}
	}
	info[n++] = (uint8_t)(outlen >> 8);
	info[n++] = (uint8_t)outlen;
	info[n++] = (uint8_t)(6 + ll);
	memcpy(info + n, "tls13 ", 6);
	n += 6;
	memcpy(info + n, label, ll);
	n += ll;
	info[n++] = 0;		/* empty context */
	info[n++] = 1;		/* the block counter of T(1) */
	if (EVP_MAC_init(*mp, secret, t->t_hashlen, NULL) != 1 ||
	    EVP_MAC_update(*mp, info, n) != 1 ||
	    EVP_MAC_final(*mp, md, &mdlen, sizeof(md)) != 1 ||
	    mdlen != t->t_hashlen)
		return (-1);
	memcpy(out, md, outlen);
	OPENSSL_cleanse(md, sizeof(md));
	return (0);
}

static int
t13_dir_set(struct wsg_tls13 *t, struct t13_dir *d, const uint8_t *secret,
    uint64_t seq)
{
	if (secret != d->d_secret)
		memcpy(d->d_secret, secret, t->t_hashlen);
	if (t13_expand(t, d->d_secret, "key", d->d_key, t->t_keylen) == -1 ||
	    t13_expand(t, d->d_secret, "iv", d->d_iv, T13_IVLEN) == -1)
		return (-1);
	d->d_seq = seq;
	d->d_bytes = 0;
	d->d_keyid = __atomic_add_fetch(&t13_keyids, 1, __ATOMIC_RELAXED);
	return (0);
}

/*
 * The thread's HMAC context, keyed last with a traffic secret (which its
 * state is as good as), keyed with zeros instead when a session ends.
 */
static void
t13_mac_forget(const struct wsg_tls13 *t)
{
	static const uint8_t	 zero[T13_SECRET_MAX];
	EVP_MAC_CTX		**mp = &t13_mac[t->t_hashlen == 48];

	if (*mp != NULL && t->t_hashlen > 0 &&
	    EVP_MAC_init(*mp, zero, t->t_hashlen, NULL) != 1) {
		EVP_MAC_CTX_free(*mp);
		*mp = NULL;
	}
}

/* application_traffic_secret_N+1, RFC 8446 7.2. */
static int
t13_dir_update(struct wsg_tls13 *t, struct t13_dir *d)
{
	uint8_t	next[T13_SECRET_MAX];
	int	rc;

	if (t13_expand(t, d->d_secret, "traffic upd", next, t->t_hashlen) ==
	    -1)
		return (-1);
	/* The old key is deleted, the thread's copies too (RFC 8446 7.2). */
	t13_forget(d, d == &t->t_wr);
	memcpy(d->d_secret, next, t->t_hashlen);
	OPENSSL_cleanse(next, sizeof(next));
	rc = t13_dir_set(t, d, d->d_secret, 0);
	return (rc);
}

struct wsg_tls13 *
tls13_takeover(SSL *ssl)
{
	struct t13_capture	*c = NULL;
	struct wsg_tls13	*t = NULL;
	const SSL_CIPHER	*cipher;
	uint8_t			*ticket = NULL;
	size_t			 tlen = 0;
	int			 suite;

	if (t13_index == -1)
		return (NULL);
	c = SSL_get_ex_data(ssl, t13_index);
	if (SSL_version(ssl) != TLS1_3_VERSION ||
	    !SSL_is_init_finished(ssl) || SSL_get_shutdown(ssl) != 0)
		goto fail;
	/*
	 * A session whose client negotiated max_fragment_length (RFC 6066)
	 * stays with OpenSSL too: its records must be that short, as
	 * OpenSSL keeps them, and those sealed here go up to 2^14 bytes.
	 */
	if (c == NULL || c->c_spoiled || !c->c_counting[0] ||
	    !c->c_counting[1] || SSL_has_pending(ssl) ||
	    SSL_SESSION_get_max_fragment_length(SSL_get_session(ssl)) !=
	    TLSEXT_max_fragment_length_DISABLED) {
		/* OpenSSL goes on: its next write sends the ticket first. */
		(void)SSL_new_session_ticket(ssl);
		goto fail;
	}
	ticket = t13_ticket(ssl, &tlen);
	if (tlen == (size_t)-1)
		goto broken;
	/* Making it failed if OpenSSL sent an alert instead (it is sent). */
	if (c->c_spoiled || SSL_get_shutdown(ssl) != 0 ||
	    !SSL_is_init_finished(ssl) || SSL_free_buffers(ssl) != 1 ||
	    (cipher = SSL_get_current_cipher(ssl)) == NULL)
		goto fail;
	switch (SSL_CIPHER_get_protocol_id(cipher)) {
	case 0x1301:
		suite = T13_AES128GCM;
		break;
	case 0x1302:
		suite = T13_AES256GCM;
		break;
	case 0x1303:
		suite = T13_CHACHA;
		break;
	default:
		goto fail;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL)
		goto fail;
	t->t_suite = suite;
	t->t_hashlen = suite == T13_AES256GCM ? 48 : 32;
	t->t_keylen = suite == T13_AES128GCM ? 16 : 32;
	if (c->c_secretlen[0] != t->t_hashlen ||
	    c->c_secretlen[1] != t->t_hashlen ||
	    t13_dir_set(t, &t->t_rd, c->c_secret[0], c->c_count[0]) == -1 ||
	    t13_dir_set(t, &t->t_wr, c->c_secret[1], c->c_count[1]) == -1)
		goto fail;
	/* The ticket leaves with the first records we seal. */
	t->t_out = ticket;
	t->t_outlen = tlen;
	SSL_set_msg_callback(ssl, NULL);
	(void)SSL_set_ex_data(ssl, t13_index, NULL);
	t13_capture_free(NULL, c, NULL, 0, 0, NULL);
	return (t);
fail:
	/* OpenSSL's record layer goes on, after the ticket made for us. */
	if (tlen > 0 && t13_send(SSL_get_fd(ssl), ticket, tlen) ==
	    (ssize_t)tlen)
		tlen = 0;
broken:
	if (tlen > 0 || tlen == (size_t)-1) {
		/*
		 * Records the client never got: it cannot read what follows.
		 * Ending the connection now is the clear answer.
		 */
		(void)shutdown(SSL_get_fd(ssl), SHUT_RDWR);
	}
	free(ticket);
	SSL_set_msg_callback(ssl, NULL);
	if (c != NULL) {
		(void)SSL_set_ex_data(ssl, t13_index, NULL);
		t13_capture_free(NULL, c, NULL, 0, 0, NULL);
	}
	tls13_free(t);
	return (NULL);
}

void
tls13_abandon(struct wsg_tls13 *t, int fd)
{
	if (t == NULL)
		return;
	/* What we took over sealed (the ticket) is OpenSSL's record too. */
	if (t->t_outlen > 0 && t13_send(fd, t->t_out, t->t_outlen) !=
	    (ssize_t)t->t_outlen)
		(void)shutdown(fd, SHUT_RDWR);
	tls13_free(t);
}

void
tls13_free(struct wsg_tls13 *t)
{
	if (t == NULL)
		return;
	t13_forget(&t->t_rd, 0);
	t13_forget(&t->t_wr, 1);
	t13_mac_forget(t);
	free(t->t_in);
	free(t->t_out);
	OPENSSL_cleanse(t, sizeof(*t));
	free(t);
}

void
tls13_thread_done(void)
{
	int	i, j;

	for (j = 0; j < 2; j++) {
		if (t13_cache[j] == NULL)
			continue;
		for (i = 0; i < T13_CACHE; i++) {
			EVP_CIPHER_CTX_free(t13_cache[j][i].s_ctx);
			gcm_clear(&t13_cache[j][i].s_gcm);
		}
		free(t13_cache[j]);
		t13_cache[j] = NULL;
	}
	for (j = 0; j < 2; j++) {
		EVP_MAC_CTX_free(t13_mac[j]);
		t13_mac[j] = NULL;
	}
	free(t13_obuf);
	free(t13_rbuf);
	t13_obuf = t13_rbuf = NULL;
}

/* This thread's context for the direction, keyed for d. */
static EVP_CIPHER_CTX *
t13_cipher(const struct wsg_tls13 *t, const struct t13_dir *d, int enc)
{
	struct t13_slot	*sl;

	if (t13_cache[enc] == NULL &&
	    (t13_cache[enc] = calloc(T13_CACHE, sizeof(*sl))) == NULL)
		return (NULL);
	sl = &t13_cache[enc][d->d_keyid % T13_CACHE];
	if (sl->s_keyid == d->d_keyid && sl->s_suite == t->t_suite)
		return (sl->s_ctx);
	sl->s_keyid = 0;
	if (sl->s_ctx != NULL && sl->s_suite != t->t_suite) {
		EVP_CIPHER_CTX_free(sl->s_ctx);
		sl->s_ctx = NULL;
	}
	if (sl->s_ctx == NULL) {
		if ((sl->s_ctx = EVP_CIPHER_CTX_new()) == NULL)
			return (NULL);
		if (EVP_CipherInit_ex(sl->s_ctx, t13_ciphers[t->t_suite], NULL,
		    NULL, NULL, enc) != 1) {
			EVP_CIPHER_CTX_free(sl->s_ctx);
			sl->s_ctx = NULL;
			return (NULL);
		}
		sl->s_suite = t->t_suite;
	}
	if (EVP_CipherInit_ex(sl->s_ctx, NULL, NULL, d->d_key, NULL, enc) != 1)
		return (NULL);
	sl->s_keyid = d->d_keyid;
	return (sl->s_ctx);
}

/* This thread's AES-NI key for d, or NULL when OpenSSL must do it. */
static const struct wsg_gcm *
t13_fast(const struct wsg_tls13 *t, const struct t13_dir *d, int enc)
{
	struct t13_slot	*sl;

	if (!t13_gcm_ok || t->t_suite == T13_CHACHA)
		return (NULL);
	if (t13_cache[enc] == NULL &&
	    (t13_cache[enc] = calloc(T13_CACHE, sizeof(*sl))) == NULL)
		return (NULL);
	sl = &t13_cache[enc][d->d_keyid % T13_CACHE];
	if (sl->s_gcmid == d->d_keyid)
		return (&sl->s_gcm);
	sl->s_gcmid = 0;
	if (gcm_setkey(&sl->s_gcm, d->d_key, t->t_keylen) == -1)
		return (NULL);
	sl->s_gcmid = d->d_keyid;
	return (&sl->s_gcm);
}

uint64_t
tls13_fast_records(void)
{
	return (t13_fast_count);
}

/* A context that failed mid-record is made anew before its next use. */
static void
t13_cipher_spoil(const struct t13_dir *d, int enc)
{
	struct t13_slot	*sl;

	if (t13_cache[enc] == NULL)
		return;
	sl = &t13_cache[enc][d->d_keyid % T13_CACHE];
	EVP_CIPHER_CTX_free(sl->s_ctx);		/* erases its key */
	sl->s_ctx = NULL;
	sl->s_keyid = 0;
}

/*
 * Erase the thread's copies of d's key, which the contexts would keep
 * until another key takes their slot: the session ends or the key
 * changes.  Key ids are never reused, so another thread's call is a
 * no-op here.
 */
static void
t13_forget(const struct t13_dir *d, int enc)
{
	static const uint8_t	 zero[32];
	struct t13_slot		*sl;

	if (t13_cache[enc] == NULL || d->d_keyid == 0)
		return;
	sl = &t13_cache[enc][d->d_keyid % T13_CACHE];
	if (sl->s_gcmid == d->d_keyid) {
		gcm_clear(&sl->s_gcm);
		sl->s_gcmid = 0;
	}
	if (sl->s_keyid == d->d_keyid) {
		sl->s_keyid = 0;
		/* Keyed with zeros over the old schedule, or freed. */
		if (EVP_CipherInit_ex(sl->s_ctx, NULL, NULL, zero, NULL,
		    enc) != 1) {
			EVP_CIPHER_CTX_free(sl->s_ctx);
			sl->s_ctx = NULL;
		}
	}
}

static void
t13_nonce(const struct t13_dir *d, uint8_t *nonce)
{
	int	i;

	memcpy(nonce, d->d_iv, T13_IVLEN);
	for (i = 0; i < 8; i++)
		nonce[T13_IVLEN - 1 - i] ^= (uint8_t)(d->d_seq >> (8 * i));
}

/*
 * Seal n bytes, from src (not drained) or else from plain, and the inner
 * content type into out: T13_HDR + n + 1 + T13_TAG bytes.
 */
static int
t13_seal(struct wsg_tls13 *t, uint8_t type, struct evbuffer *src,
    const uint8_t *plain, size_t n, uint8_t *out)
{
	struct t13_dir		*d = &t->t_wr;
	const struct wsg_gcm	*g;
	EVP_CIPHER_CTX		*ctx;
	struct evbuffer_iovec	 vec[T13_IOV];
	struct evbuffer_ptr	 pos;
	uint8_t			 nonce[T13_IVLEN];
	size_t			 clen = n + 1 + T13_TAG, off = 0, left, l;
	int			 ol, nv, i;

	if (d->d_seq == UINT64_MAX)
		return (-1);
	t13_nonce(d, nonce);
	out[0] = T13_CT_APPDATA;
	out[1] = 3;
	out[2] = 3;
	out[3] = (uint8_t)(clen >> 8);
	out[4] = (uint8_t)clen;
	if (n + 1 <= T13_GCM_MAX && (g = t13_fast(t, d, 1)) != NULL) {
		if (src != NULL) {
			if (evbuffer_copyout(src, out + T13_HDR, n) !=
			    (ssize_t)n)
				return (-1);
		} else if (n > 0)
			memcpy(out + T13_HDR, plain, n);
		out[T13_HDR + n] = type;
		gcm_seal(g, nonce, out, T13_HDR, out + T13_HDR, n + 1,
		    out + T13_HDR + n + 1);
		t13_fast_count++;
		d->d_seq++;
		d->d_bytes += n + 1;
		return (0);
	}
	if ((ctx = t13_cipher(t, d, 1)) == NULL)
		return (-1);
	if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, 1) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &ol, out, T13_HDR) != 1)
		goto fail;
	out += T13_HDR;
	if (src == NULL) {
		if (n > 0 && EVP_EncryptUpdate(ctx, out, &ol, plain,
		    (int)n) != 1)
			goto fail;
		off = n > 0 ? (size_t)ol : 0;
	} else {
		if (evbuffer_ptr_set(src, &pos, 0, EVBUFFER_PTR_SET) == -1)
			goto fail;
		for (left = n; left > 0; ) {
			nv = evbuffer_peek(src, (ssize_t)left, &pos, vec,
			    T13_IOV);
			if (nv <= 0)
				goto fail;
			for (i = 0; i < nv && i < T13_IOV && left > 0; i++) {
				l = vec[i].iov_len < left ? vec[i].iov_len :
				    left;
				if (EVP_EncryptUpdate(ctx, out + off, &ol,
				    vec[i].iov_base, (int)l) != 1)
					goto fail;
				off += (size_t)ol;
				left -= l;
				if (evbuffer_ptr_set(src, &pos, l,
				    EVBUFFER_PTR_ADD) == -1 && left > 0)
					goto fail;
			}
		}
	}
	if (EVP_EncryptUpdate(ctx, out + off, &ol, &type, 1) != 1)
		goto fail;
	off += (size_t)ol;
	if (EVP_EncryptFinal_ex(ctx, out + off, &ol) != 1)
		goto fail;
	off += (size_t)ol;
	if (off != n + 1 || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG,
	    T13_TAG, out + off) != 1)
		goto fail;
	d->d_seq++;
	d->d_bytes += n + 1;
	return (0);
fail:
	t13_cipher_spoil(d, 1);
	return (-1);
}

/* Open the record rec (header and clen bytes) into out (clen - tag). */
static int
t13_open(struct wsg_tls13 *t, const uint8_t *rec, size_t clen, uint8_t *out)
{
	struct t13_dir		*d = &t->t_rd;
	const struct wsg_gcm	*g;
	EVP_CIPHER_CTX		*ctx;
	uint8_t			 nonce[T13_IVLEN];
	size_t			 plen = clen - T13_TAG;
	int			 ol, fl;

	if (d->d_seq == UINT64_MAX)
		return (-1);
	t13_nonce(d, nonce);
	if (plen <= T13_GCM_MAX && (g = t13_fast(t, d, 0)) != NULL) {
		if (gcm_open(g, nonce, rec, T13_HDR, rec + T13_HDR, plen, out,
		    rec + T13_HDR + plen) == -1)
			return (-1);
		t13_fast_count++;
		d->d_seq++;
		return (0);
	}
	if ((ctx = t13_cipher(t, d, 0)) == NULL)
		return (-1);
	if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, 0) != 1 ||
	    EVP_DecryptUpdate(ctx, NULL, &ol, rec, T13_HDR) != 1 ||
	    EVP_DecryptUpdate(ctx, out, &ol, rec + T13_HDR, (int)plen) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, T13_TAG,
	    (void *)(rec + T13_HDR + plen)) != 1 ||
	    EVP_DecryptFinal_ex(ctx, out + ol, &fl) != 1 ||
	    (size_t)ol + (size_t)fl != plen) {
		t13_cipher_spoil(d, 0);
		return (-1);
	}
	d->d_seq++;
	return (0);
}

/* Send without blocking: bytes written, 0 when full, -1 on error. */
static ssize_t
t13_send(int fd, const uint8_t *buf, size_t len)
{
	ssize_t	n;

	do
		n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n == -1 && errno == EINTR);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return (0);
	return (n);
}

/* A fatal alert, if nothing is queued ahead of it; no more writes. */
static void
t13_alert_out(struct wsg_tls13 *t, int fd, uint8_t level, uint8_t desc)
{
	uint8_t	rec[T13_HDR + 2 + 1 + T13_TAG], al[2];
	ssize_t	n;

	if (t->t_done)
		return;
	t->t_done = 1;
	if (t->t_outlen > 0) {
		/* What is queued goes first, or the alert cannot. */
		n = t13_send(fd, t->t_out + t->t_outoff,
		    t->t_outlen - t->t_outoff);
		if (n < 0 || (size_t)n < t->t_outlen - t->t_outoff) {
			if (n > 0)
				t->t_outoff += (size_t)n;
			return;
		}
		free(t->t_out);
		t->t_out = NULL;
		t->t_outoff = t->t_outlen = 0;
	}
	al[0] = level;
	al[1] = desc;
	if (t13_seal(t, T13_CT_ALERT, NULL, al, 2, rec) == 0)
		(void)t13_send(fd, rec, sizeof(rec));
}

void
tls13_close_notify(struct wsg_tls13 *t, int fd)
{
	t13_alert_out(t, fd, 1, T13_AD_CLOSE_NOTIFY);
}

void
tls13_answer_close(struct wsg_tls13 *t, int fd)
{
	if (t->t_notified)
		t13_alert_out(t, fd, 1, T13_AD_CLOSE_NOTIFY);
}

int
tls13_notified(const struct wsg_tls13 *t)
{
	return (t->t_notified);
}

int
tls13_write_pending(const struct wsg_tls13 *t)
{
	return (t->t_outlen > 0 || (t->t_update_due && !t->t_done));
}

/* Fail with an alert to the client and an OpenSSL-style reason. */
static int
t13_fail(struct wsg_tls13 *t, int fd, uint8_t desc, int reason,
    unsigned long *err)
{
	t13_alert_out(t, fd, 2, desc);
	*err = ERR_PACK(ERR_LIB_SSL, 0, reason);
	return (TLS13_ERROR);
}

/*
 * Post-handshake messages: only KeyUpdate, which must end its record.
 * It may come in pieces over several records in a row (RFC 8446 5.1):
 * the first bytes wait in t_hs, a KeyUpdate's 5 at most.
 */
static int
t13_handshake_in(struct wsg_tls13 *t, int fd, const uint8_t *p, size_t n,
    unsigned long *err)
{
	size_t	k;

	while (n > 0) {
		k = sizeof(t->t_hs) - t->t_hslen;
		if (k > n)
			k = n;
		memcpy(t->t_hs + t->t_hslen, p, k);
		t->t_hslen += k;
		p += k;
		n -= k;
		if (t->t_hs[0] != SSL3_MT_KEY_UPDATE)
			return (t13_fail(t, fd, T13_AD_UNEXPECTED,
			    SSL_R_UNEXPECTED_MESSAGE, err));
		if (t->t_hslen >= 4 && (t->t_hs[1] != 0 || t->t_hs[2] != 0 ||
		    t->t_hs[3] != 1))
			return (t13_fail(t, fd, T13_AD_DECODE,
			    SSL_R_BAD_KEY_UPDATE, err));
		if (t->t_hslen < sizeof(t->t_hs))
			return (0);
		if (t->t_hs[4] > 1)
			return (t13_fail(t, fd, T13_AD_ILLEGAL,
			    SSL_R_BAD_KEY_UPDATE, err));
		/* A key change must end its record (RFC 8446 5.1). */
		if (n != 0)
			return (t13_fail(t, fd, T13_AD_UNEXPECTED,
			    SSL_R_NOT_ON_RECORD_BOUNDARY, err));
		t->t_hslen = 0;
		t->t_update_debt += T13_UPDATE_GAP;
		if (t->t_update_debt > (uint64_t)T13_UPDATE_GAP *
		    T13_MAX_RAPID_UPDATES)
			return (t13_fail(t, fd, T13_AD_UNEXPECTED,
			    SSL_R_TOO_MANY_KEY_UPDATES, err));
		if (t13_dir_update(t, &t->t_rd) == -1)
			return (t13_fail(t, fd, T13_AD_INTERNAL,
			    ERR_R_INTERNAL_ERROR, err));
		if (t->t_hs[4] == 1)
			t->t_update_due = 1;
	}
	return (0);
}

static int
t13_alert_in(struct wsg_tls13 *t, int fd, const uint8_t *p, size_t n,
    unsigned long *err)
{
	if (n != 2)
		return (t13_fail(t, fd, T13_AD_DECODE, SSL_R_BAD_LENGTH, err));
	if (p[1] == T13_AD_CLOSE_NOTIFY) {
		t->t_eof = 1;
		t->t_notified = 1;
		return (TLS13_EOF);
	}
	if (p[1] == T13_AD_USER_CANCELED)
		return (0);
	/* Fatal: the client gave up on the connection, say why. */
	t->t_eof = 1;
	t->t_done = 1;
	*err = ERR_PACK(ERR_LIB_SSL, 0, SSL_AD_REASON_OFFSET + p[1]);
	return (TLS13_ERROR);
}

int
tls13_read(struct wsg_tls13 *t, int fd, struct evbuffer *dst, size_t want,
    size_t *got, unsigned long *err)
{
	struct evbuffer_iovec	 v;
	const uint8_t		*r;
	uint8_t			*b, *pt, type;
	size_t			 have, off = 0, room, clen, plen, i;
	ssize_t			 n;
	int			 rc;

	if (t->t_eof)
		return (TLS13_EOF);
	if (t13_rbuf == NULL && (t13_rbuf = malloc(T13_RBUF)) == NULL) {
		*err = ERR_PACK(ERR_LIB_SSL, 0, ERR_R_MALLOC_FAILURE);
		return (TLS13_ERROR);
	}
	b = t13_rbuf;
	have = t->t_inlen;
	if (have > 0)
		memcpy(b, t->t_in, have);
	room = T13_RBUF - have;
	if (want > 0 && want < room)
		room = want;
	do
		n = recv(fd, b + have, room, 0);
	while (n == -1 && errno == EINTR);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return (0);
	if (n == -1) {
		*err = ERR_PACK(ERR_LIB_SYS, 0, errno);
		return (TLS13_ERROR);
	}
	if (n == 0) {
		/* Hung up without close_notify. */
		t->t_eof = 1;
		*err = ERR_PACK(ERR_LIB_SSL, 0,
		    SSL_R_UNEXPECTED_EOF_WHILE_READING);
		return (TLS13_ERROR);
	}
	free(t->t_in);
	t->t_in = NULL;
	t->t_inlen = 0;
	have += (size_t)n;

	while (have - off >= T13_HDR) {
		r = b + off;
		clen = (size_t)r[3] << 8 | r[4];
		if (r[0] != T13_CT_APPDATA)
			return (t13_fail(t, fd, T13_AD_UNEXPECTED,
			    SSL_R_UNEXPECTED_RECORD, err));
		if (r[1] != 3 || r[2] != 3)
			return (t13_fail(t, fd, T13_AD_PROTO_VERSION,
			    SSL_R_WRONG_VERSION_NUMBER, err));
		if (clen > T13_MAX_CIPHER)
			return (t13_fail(t, fd, T13_AD_OVERFLOW,
			    SSL_R_ENCRYPTED_LENGTH_TOO_LONG, err));
		if (clen < T13_TAG + 1)
			return (t13_fail(t, fd, T13_AD_DECODE,
			    SSL_R_BAD_LENGTH, err));
		plen = clen - T13_TAG;
		/* TLSInnerPlaintext: at most 2^14 + 1 bytes (RFC 8446 5.4). */
		if (plen > T13_MAX_PLAIN + 1)
			return (t13_fail(t, fd, T13_AD_OVERFLOW,
			    SSL_R_DATA_LENGTH_TOO_LONG, err));
		if (have - off < T13_HDR + clen)
			break;
		if (evbuffer_reserve_space(dst, (ssize_t)plen, &v, 1) != 1) {
			*err = ERR_PACK(ERR_LIB_SSL, 0, ERR_R_MALLOC_FAILURE);
			return (TLS13_ERROR);
		}
		pt = v.iov_base;
		if (t13_open(t, r, clen, pt) == -1)
			return (t13_fail(t, fd, T13_AD_BAD_MAC,
			    SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC, err));
		off += T13_HDR + clen;
		/* TLSInnerPlaintext: content, type, zeros. */
		for (i = plen; i > 0 && pt[i - 1] == 0; i--)
			;
		if (i == 0)
			return (t13_fail(t, fd, T13_AD_UNEXPECTED,
			    SSL_R_BAD_RECORD_TYPE, err));
		type = pt[--i];
		if (t->t_update_debt > 0)
			t->t_update_debt--;
		if (type == T13_CT_APPDATA && i > 0)
			t->t_empty = 0;
		else if (type != T13_CT_HANDSHAKE &&
		    ++t->t_empty > T13_MAX_EMPTY)
			return (t13_fail(t, fd, T13_AD_UNEXPECTED,
			    SSL_R_RECORD_TOO_SMALL, err));
		/* Nothing between the pieces of a message (RFC 8446 5.1). */
		if (t->t_hslen > 0 && type != T13_CT_HANDSHAKE)
			return (t13_fail(t, fd, T13_AD_UNEXPECTED,
			    SSL_R_UNEXPECTED_RECORD, err));
		switch (type) {
		case T13_CT_APPDATA:
			v.iov_len = i;
			evbuffer_commit_space(dst, &v, 1);
			*got += i;
			break;
		case T13_CT_ALERT:
			/* Never empty either (RFC 8446 5.4). */
			if (i == 0)
				return (t13_fail(t, fd, T13_AD_UNEXPECTED,
				    SSL_R_BAD_LENGTH, err));
			if ((rc = t13_alert_in(t, fd, pt, i, err)) != 0)
				return (rc);
			break;
		case T13_CT_HANDSHAKE:
			/* Never empty (RFC 8446 5.1). */
			if (i == 0)
				return (t13_fail(t, fd, T13_AD_UNEXPECTED,
				    SSL_R_UNEXPECTED_MESSAGE, err));
			if ((rc = t13_handshake_in(t, fd, pt, i, err)) != 0)
				return (rc);
			break;
		default:
			return (t13_fail(t, fd, T13_AD_UNEXPECTED,
			    SSL_R_UNEXPECTED_RECORD, err));
		}
	}
	if (off < have) {
		if ((t->t_in = malloc(have - off)) == NULL) {
			*err = ERR_PACK(ERR_LIB_SSL, 0, ERR_R_MALLOC_FAILURE);
			return (TLS13_ERROR);
		}
		memcpy(t->t_in, b + off, have - off);
		t->t_inlen = have - off;
	}
	return (0);
}

void
tls13_set_rekey(uint64_t bytes, uint64_t records)
{
	t13_rekey_bytes = bytes > 0 ? bytes : T13_REKEY_BYTES;
	t13_rekey_records = records > 0 ? records : T13_REKEY_RECORDS;
}

/*
 * Our KeyUpdate, update_not_requested, sealed under the write key at out,
 * then the next key (RFC 8446 4.6.3): the record's length, or 0 on an
 * error.  It answers a request of the client's as well.
 */
static size_t
t13_update_out(struct wsg_tls13 *t, uint8_t *out)
{
	static const uint8_t	 ku[5] = { SSL3_MT_KEY_UPDATE, 0, 0, 1, 0 };

	if (t13_seal(t, T13_CT_HANDSHAKE, NULL, ku, sizeof(ku), out) == -1 ||
	    t13_dir_update(t, &t->t_wr) == -1)
		return (0);
	t->t_update_due = 0;
	return (T13_KU_REC);
}

/* Write the sealed bytes kept back; 1 when all are out, 0, or -1. */
static int
t13_flush(struct wsg_tls13 *t, int fd, size_t *sent, unsigned long *err)
{
	ssize_t	n;

	while (t->t_outoff < t->t_outlen) {
		n = t13_send(fd, t->t_out + t->t_outoff,
		    t->t_outlen - t->t_outoff);
		if (n == -1) {
			*err = ERR_PACK(ERR_LIB_SYS, 0, errno);
			return (-1);
		}
		if (n == 0)
			return (0);
		t->t_outoff += (size_t)n;
		*sent += (size_t)n;
	}
	free(t->t_out);
	t->t_out = NULL;
	t->t_outoff = t->t_outlen = 0;
	return (1);
}

int
tls13_write(struct wsg_tls13 *t, int fd, struct evbuffer *src, size_t max,
    size_t *sent, unsigned long *err)
{
	struct t13_dir		*d = &t->t_wr;
	size_t			 len, avail, n;
	ssize_t			 w;
	int			 k, rc;

	for (;;) {
		if (t->t_outlen > 0 && (t->t_done || t->t_outlen - t->t_outoff >
		    T13_JOIN || evbuffer_get_length(src) == 0) &&
		    (rc = t13_flush(t, fd, sent, err)) != 1)
			return (rc == -1 ? TLS13_ERROR : 0);
		if (*sent >= max)
			return (0);
		if (t->t_done) {
			/* After our alert nothing more goes out. */
			if (evbuffer_get_length(src) == 0)
				return (0);
			*err = ERR_PACK(ERR_LIB_SSL, 0,
			    SSL_R_PROTOCOL_IS_SHUTDOWN);
			return (TLS13_ERROR);
		}
		if (t13_obuf == NULL &&
		    (t13_obuf = malloc(T13_OBUF)) == NULL)
			goto nomem;
		len = 0;
		if (t->t_outlen > 0) {
			/*
			 * A short queue (the session ticket ahead of the 101)
			 * goes in the same send as the records sealed now.
			 */
			len = t->t_outlen - t->t_outoff;
			memcpy(t13_obuf, t->t_out + t->t_outoff, len);
			free(t->t_out);
			t->t_out = NULL;
			t->t_outoff = t->t_outlen = 0;
		}
		/*
		 * Key updates go in line with the records, after those sealed
		 * under the old key and queued or written before them.
		 */
		if (t->t_update_due) {
			if ((n = t13_update_out(t, t13_obuf + len)) == 0)
				goto internal;
			len += n;
		}
		for (k = 0; k < T13_BATCH &&
		    (avail = evbuffer_get_length(src)) > 0; k++) {
			/* Ours when the key sealed enough (RFC 8446 5.5). */
			if (d->d_bytes >= t13_rekey_bytes ||
			    d->d_seq >= t13_rekey_records) {
				if ((n = t13_update_out(t, t13_obuf + len)) ==
				    0)
					goto internal;
				len += n;
			}
			n = avail < T13_MAX_PLAIN ? avail : T13_MAX_PLAIN;
			if (t13_seal(t, T13_CT_APPDATA, src, NULL, n,
			    t13_obuf + len) == -1)
				goto internal;
			evbuffer_drain(src, n);
			len += n + T13_OVERHEAD;
		}
		if (len == 0)
			return (0);
		if ((w = t13_send(fd, t13_obuf, len)) == -1) {
			*err = ERR_PACK(ERR_LIB_SYS, 0, errno);
			return (TLS13_ERROR);
		}
		*sent += (size_t)w;
		if ((size_t)w < len) {
			if ((t->t_out = malloc(len - (size_t)w)) == NULL)
				goto nomem;
			memcpy(t->t_out, t13_obuf + w, len - (size_t)w);
			t->t_outoff = 0;
			t->t_outlen = len - (size_t)w;
			return (0);
		}
	}
nomem:
	*err = ERR_PACK(ERR_LIB_SSL, 0, ERR_R_MALLOC_FAILURE);
	return (TLS13_ERROR);
internal:
	*err = ERR_PACK(ERR_LIB_SSL, 0, ERR_R_INTERNAL_ERROR);
	return (TLS13_ERROR);
}
