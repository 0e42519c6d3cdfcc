/*
 * Unit tests for wsgate's TLS 1.3 record layer (tls13.c) against OpenSSL
 * as the client, over a socket pair: the server side does its handshake
 * with OpenSSL in a context made by tls_ctx_new(), is taken over, and
 * must then read what the client's OpenSSL sealed, and seal what the
 * client's OpenSSL can open, in every suite, across key updates asked
 * for by the client and our own, and answer bad records with the right
 * alert.
 */
#include "autoconf.h"

#include <sys/socket.h>

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/err.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "errors.h"
#include "gcm.h"
#include "tls.h"
#include "tls13.h"
#include "unit.h"

#include "../tls13_client.h"

#define STEPS	2000	/* bound on every loop: 2000 x 5 ms at most */

static char	 certpath[64], keypath[64];

static int
make_cert(void)
{
	EVP_PKEY	*pk;
	X509		*x;
	X509_NAME	*n;
	FILE		*f;
	int		 fd, ok = 0;

	strcpy(certpath, "/tmp/wsg-t13-cert.XXXXXX");
	strcpy(keypath, "/tmp/wsg-t13-key.XXXXXX");
	if ((fd = mkstemp(certpath)) == -1)
		return (-1);
	close(fd);
	if ((fd = mkstemp(keypath)) == -1)
		return (-1);
	close(fd);
	if ((pk = EVP_EC_gen("P-256")) == NULL || (x = X509_new()) == NULL)
		return (-1);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pk);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(x, n);
	if (X509_sign(x, pk, EVP_sha256()) > 0 &&
	    (f = fopen(certpath, "w")) != NULL) {
		ok = PEM_write_X509(f, x);
		fclose(f);
		if (ok && (f = fopen(keypath, "w")) != NULL) {
			ok = PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL,
			    NULL);
			fclose(f);
		}
	}
	X509_free(x);
	EVP_PKEY_free(pk);
	return (ok ? 0 : -1);
}

struct pair {
	int		 cfd, sfd;
	SSL		*c, *s;
};

static void
wait_fd(int fd, short events)
{
	struct pollfd	pfd = { fd, events, 0 };

	(void)poll(&pfd, 1, 5);
}

/*
 * A handshaken pair, the request and a response already through; the
 * client offers sess to resume when it is not NULL.
 */
static int
pair_open_session(struct pair *p, SSL_CTX *sctx, SSL_CTX *cctx,
    SSL_SESSION *sess)
{
	int	sv[2], i, rc, rs, done = 0;
	char	buf[256];

	memset(p, 0, sizeof(*p));
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		return (-1);
	p->cfd = sv[0];
	p->sfd = sv[1];
	fcntl(p->cfd, F_SETFL, O_NONBLOCK);
	fcntl(p->sfd, F_SETFL, O_NONBLOCK);
	p->c = SSL_new(cctx);
	p->s = SSL_new(sctx);
	SSL_set_fd(p->c, p->cfd);
	SSL_set_fd(p->s, p->sfd);
	SSL_set_connect_state(p->c);
	SSL_set_accept_state(p->s);
	if (sess != NULL)
		SSL_set_session(p->c, sess);
	for (i = 0, rc = rs = 0; i < STEPS && (rc != 1 || rs != 1); i++) {
		if (rc != 1)
			rc = SSL_do_handshake(p->c);
		if (rs != 1)
			rs = SSL_do_handshake(p->s);
		wait_fd(p->sfd, POLLIN);
	}
	if (rc != 1 || rs != 1)
		return (-1);
	/* The request head, as two records, then the 101. */
	if (SSL_write(p->c, "GET / HTTP/1.1\r\n", 16) != 16 ||
	    SSL_write(p->c, "Host: x\r\n\r\n", 11) != 11)
		return (-1);
	for (i = 0; i < STEPS && done < 27; i++) {
		if ((rs = SSL_read(p->s, buf, sizeof(buf))) > 0)
			done += rs;
		else
			wait_fd(p->sfd, POLLIN);
	}
	if (done != 27 || SSL_write(p->s, "HTTP/1.1 101 OK\r\n\r\n", 19) != 19)
		return (-1);
	for (i = 0, done = 0; i < STEPS && done < 19; i++) {
		if ((rc = SSL_read(p->c, buf, sizeof(buf))) > 0)
			done += rc;
		else
			wait_fd(p->cfd, POLLIN);
	}
	return (done == 19 ? 0 : -1);
}

static int
pair_open(struct pair *p, SSL_CTX *sctx, SSL_CTX *cctx)
{
	return (pair_open_session(p, sctx, cctx, NULL));
}

static void
pair_close(struct pair *p)
{
	SSL_free(p->c);
	SSL_free(p->s);
	close(p->cfd);
	close(p->sfd);
}

/* Read with the record layer until want bytes or a result besides 0. */
static int
t13_read_n(struct wsg_tls13 *t, int fd, struct evbuffer *dst, size_t want,
    unsigned long *err)
{
	size_t	got = 0;
	int	i, rc = 0;

	for (i = 0; i < STEPS && evbuffer_get_length(dst) < want; i++) {
		if ((rc = tls13_read(t, fd, dst, 0, &got, err)) != 0)
			return (rc);
		wait_fd(fd, POLLIN);
	}
	return (rc);
}

/* The client reads n bytes (its OpenSSL handles key updates too). */
static int
client_read_n(struct pair *p, struct wsg_tls13 *t, unsigned char *buf,
    size_t n)
{
	struct evbuffer	*none = evbuffer_new();
	size_t		 done = 0, sent = 0;
	unsigned long	 err;
	int		 i, r;

	for (i = 0; i < STEPS && done < n; i++) {
		/* Keep the server's queued records going out. */
		if (t != NULL)
			(void)tls13_write(t, p->sfd, none, SIZE_MAX, &sent,
			    &err);
		r = SSL_read(p->c, buf + done, (int)(n - done));
		if (r > 0)
			done += (size_t)r;
		else if (SSL_get_error(p->c, r) == SSL_ERROR_WANT_READ)
			wait_fd(p->cfd, POLLIN);
		else
			break;
	}
	evbuffer_free(none);
	return (done == n ? 0 : -1);
}

/*
 * One record of len bytes each way: the client's OpenSSL seals data for
 * the record layer to open, and the record layer seals it back.
 */
static void
both_ways(struct pair *p, struct wsg_tls13 *t, const unsigned char *data,
    size_t len)
{
	struct evbuffer	*in = evbuffer_new(), *out = evbuffer_new();
	unsigned char	*back = malloc(len);
	unsigned long	 err = 0;
	size_t		 sent = 0;

	CHECK_INT(SSL_write(p->c, data, (int)len), (int)len);
	CHECK_INT(t13_read_n(t, p->sfd, in, len, &err), 0);
	CHECK(evbuffer_get_length(in) == len &&
	    memcmp(evbuffer_pullup(in, -1), data, len) == 0);
	evbuffer_add(out, data, len);
	CHECK_INT(tls13_write(t, p->sfd, out, SIZE_MAX, &sent, &err), 0);
	CHECK(back != NULL && client_read_n(p, t, back, len) == 0 &&
	    memcmp(back, data, len) == 0);
	free(back);
	evbuffer_free(in);
	evbuffer_free(out);
}

/* The alerts the client read: how many, and the last one's two bytes. */
static int		 al_n;
static unsigned char	 al_last[2];

static void
al_msg_cb(int write_p, int version, int type, const void *buf, size_t len,
    SSL *ssl, void *arg)
{
	(void)version;
	(void)ssl;
	(void)arg;
	if (!write_p && type == SSL3_RT_ALERT && len == 2) {
		al_n++;
		memcpy(al_last, buf, 2);
	}
}

/*
 * The client reads until its OpenSSL stops on our alert: the alert's
 * description, its level in *level; -1 unless exactly one came.  Nothing
 * may follow it on the socket.
 */
static int
client_alert(struct pair *p, int *level)
{
	unsigned char	b;
	int		i, r = 0;

	for (i = 0; i < STEPS; i++) {
		r = SSL_read(p->c, &b, 1);
		if (r > 0 || SSL_get_error(p->c, r) != SSL_ERROR_WANT_READ)
			break;
		wait_fd(p->cfd, POLLIN);
	}
	ERR_clear_error();
	CHECK_INT(recv(p->cfd, &b, 1, MSG_DONTWAIT), -1);
	*level = al_last[0];
	return (r <= 0 && al_n == 1 ? al_last[1] : -1);
}

/* Every suite: read, write, big messages, key updates, close_notify. */
static void
check_suite(SSL_CTX *sctx, const char *suite)
{
	SSL_CTX			*cctx;
	struct pair		 p;
	struct wsg_tls13	*t;
	struct evbuffer		*in, *out;
	unsigned char		*big, *back;
	unsigned long		 err = 0;
	size_t			 sent = 0, i, n = 40000;
	uint64_t		 fast;
	static const size_t	 mixed[] = { 1022, 1023, 1024, 1025, 1, 4000,
				    1023, 16384, 17, 1024, 1025, 1024 };
	int			 k;

	cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION);
	CHECK(SSL_CTX_set_ciphersuites(cctx, suite) == 1);
	SSL_CTX_set_msg_callback(cctx, al_msg_cb);
	in = evbuffer_new();
	out = evbuffer_new();
	big = malloc(n);
	back = malloc(n);
	for (i = 0; i < n; i++)
		big[i] = (unsigned char)(i * 7 + 3);
	if (pair_open(&p, sctx, cctx) == -1) {
		CHECK(!"handshake");
		goto done;
	}
	CHECK_STR(SSL_CIPHER_get_name(SSL_get_current_cipher(p.s)), suite);
	t = tls13_takeover(p.s);
	CHECK(t != NULL);
	if (t == NULL)
		goto closed;

	/* Client to server: small records, then one over 16 KiB. */
	CHECK_INT(SSL_write(p.c, "hello ", 6), 6);
	CHECK_INT(SSL_write(p.c, "world", 5), 5);
	CHECK_INT(t13_read_n(t, p.sfd, in, 11, &err), 0);
	CHECK_INT(evbuffer_get_length(in), 11);
	CHECK(memcmp(evbuffer_pullup(in, -1), "hello world", 11) == 0);
	evbuffer_drain(in, 11);
	for (i = 0; i < n; ) {
		int r = SSL_write(p.c, big + i, (int)(n - i));

		if (r > 0)
			i += (size_t)r;
		(void)t13_read_n(t, p.sfd, in, i, &err);
	}
	CHECK_INT(evbuffer_get_length(in), n);
	CHECK(evbuffer_get_length(in) == n &&
	    memcmp(evbuffer_pullup(in, -1), big, n) == 0);
	evbuffer_drain(in, evbuffer_get_length(in));

	/* Server to client: three records in one write. */
	evbuffer_add(out, big, n);
	CHECK_INT(tls13_write(t, p.sfd, out, SIZE_MAX, &sent, &err), 0);
	CHECK(client_read_n(&p, t, back, n) == 0);
	CHECK(memcmp(back, big, n) == 0);
	CHECK_INT(evbuffer_get_length(out), 0);
	CHECK(!tls13_write_pending(t));

	/*
	 * Record sizes on both sides of the AES-NI path's limit, one after
	 * the other under the same keys, both ways.
	 */
	for (k = 0; k < (int)(sizeof(mixed) / sizeof(mixed[0])); k++)
		both_ways(&p, t, big + k, mixed[k]);

	/*
	 * Which records took the AES-NI path: one short record each way on
	 * an AES-GCM suite (when the CPU has the instructions), none on
	 * ChaCha20-Poly1305, and none for records over T13_GCM_MAX.
	 */
	fast = tls13_fast_records();
	both_ways(&p, t, big, 100);
	CHECK_INT(tls13_fast_records() - fast,
	    gcm_available() && strstr(suite, "CHACHA") == NULL ? 2 : 0);
	/* 1023 bytes and the type: the longest record on that path. */
	fast = tls13_fast_records();
	both_ways(&p, t, big, 1023);
	CHECK_INT(tls13_fast_records() - fast,
	    gcm_available() && strstr(suite, "CHACHA") == NULL ? 2 : 0);
	fast = tls13_fast_records();
	both_ways(&p, t, big, 1024);
	CHECK_INT(tls13_fast_records() - fast, 0);

	/* The client updates its keys and asks for ours, twice. */
	for (k = 0; k < 2; k++) {
		CHECK(SSL_key_update(p.c, SSL_KEY_UPDATE_REQUESTED) == 1);
		CHECK_INT(SSL_write(p.c, "after", 5), 5);
		CHECK_INT(t13_read_n(t, p.sfd, in, 5, &err), 0);
		CHECK(evbuffer_get_length(in) == 5 &&
		    memcmp(evbuffer_pullup(in, -1), "after", 5) == 0);
		evbuffer_drain(in, 5);
		CHECK(tls13_write_pending(t));
		evbuffer_add(out, "reply", 5);
		CHECK_INT(tls13_write(t, p.sfd, out, SIZE_MAX, &sent, &err), 0);
		CHECK(client_read_n(&p, t, back, 5) == 0);
		CHECK(memcmp(back, "reply", 5) == 0);
	}
	/* One it does not ask us to answer. */
	CHECK(SSL_key_update(p.c, SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
	CHECK_INT(SSL_write(p.c, "quiet", 5), 5);
	CHECK_INT(t13_read_n(t, p.sfd, in, 5, &err), 0);
	CHECK_INT(evbuffer_get_length(in), 5);
	CHECK(!tls13_write_pending(t));
	evbuffer_drain(in, evbuffer_get_length(in));

	/* close_notify both ways. */
	(void)SSL_shutdown(p.c);
	CHECK_INT(t13_read_n(t, p.sfd, in, 1, &err), TLS13_EOF);
	tls13_close_notify(t, p.sfd);
	/* Nothing is sealed after it: data to send is refused. */
	evbuffer_drain(out, evbuffer_get_length(out));
	evbuffer_add(out, "late", 4);
	sent = 0;
	CHECK_INT(tls13_write(t, p.sfd, out, SIZE_MAX, &sent, &err),
	    TLS13_ERROR);
	CHECK_INT(ERR_GET_REASON(err), SSL_R_PROTOCOL_IS_SHUTDOWN);
	CHECK_INT(sent, 0);
	al_n = 0;
	CHECK_INT(SSL_read(p.c, back, 1), 0);
	CHECK_INT(SSL_get_error(p.c, 0), SSL_ERROR_ZERO_RETURN);
	/* A warning: close_notify is the one alert that is not fatal. */
	CHECK_INT(al_n, 1);
	CHECK(al_last[0] == 1 && al_last[1] == 0);
	tls13_free(t);
closed:
	pair_close(&p);
done:
	free(big);
	free(back);
	evbuffer_free(in);
	evbuffer_free(out);
	SSL_CTX_free(cctx);
}

/* A record that does not open, one too long: the alert and the reason. */
static void
check_bad(SSL_CTX *sctx, const unsigned char *rec, size_t len, int reason,
    int alert)
{
	SSL_CTX			*cctx = SSL_CTX_new(TLS_client_method());
	struct pair		 p;
	struct wsg_tls13	*t = NULL;
	struct evbuffer		*in = evbuffer_new();
	unsigned char		 b;
	unsigned long		 err = 0, e;
	int			 r = 0, i;

	SSL_CTX_set_msg_callback(cctx, al_msg_cb);
	if (pair_open(&p, sctx, cctx) == -1 ||
	    (t = tls13_takeover(p.s)) == NULL) {
		CHECK(!"set-up");
		goto done;
	}
	al_n = 0;
	CHECK_INT(send(p.cfd, rec, len, 0), len);
	CHECK_INT(t13_read_n(t, p.sfd, in, 1, &err), TLS13_ERROR);
	CHECK_INT(ERR_GET_REASON(err), reason);
	CHECK_INT(evbuffer_get_length(in), 0);
	/* After our fatal alert no close_notify follows. */
	tls13_close_notify(t, p.sfd);
	/* The client's OpenSSL got our alert, as a fatal one. */
	ERR_clear_error();
	for (i = 0; i < STEPS; i++) {
		r = SSL_read(p.c, &b, 1);
		if (r > 0 || SSL_get_error(p.c, r) != SSL_ERROR_WANT_READ)
			break;
		wait_fd(p.cfd, POLLIN);
	}
	CHECK_INT(SSL_get_error(p.c, r), SSL_ERROR_SSL);
	e = ERR_peek_last_error();
	CHECK_INT(ERR_GET_REASON(e), SSL_AD_REASON_OFFSET + alert);
	ERR_clear_error();
	CHECK_INT(al_n, 1);
	CHECK(al_last[0] == 2 && al_last[1] == alert);
	CHECK_INT(recv(p.cfd, &b, 1, MSG_DONTWAIT), -1);
done:
	tls13_free(t);
	pair_close(&p);
	evbuffer_free(in);
	SSL_CTX_free(cctx);
}

/* Key updates one after another: the seventeenth ends the connection. */
static void
check_update_flood(SSL_CTX *sctx)
{
	SSL_CTX			*cctx = SSL_CTX_new(TLS_client_method());
	struct pair		 p;
	struct wsg_tls13	*t = NULL;
	struct evbuffer		*in = evbuffer_new();
	unsigned long		 err = 0;
	int			 k, rc = 0;

	if (pair_open(&p, sctx, cctx) == -1 ||
	    (t = tls13_takeover(p.s)) == NULL) {
		CHECK(!"set-up");
		goto done;
	}
	for (k = 0; k < 17 && rc == 0; k++) {
		CHECK(SSL_key_update(p.c, SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
		CHECK_INT(SSL_write(p.c, "a", 1), 1);
		rc = t13_read_n(t, p.sfd, in, (size_t)k + 1, &err);
	}
	CHECK_INT(k, 17);
	CHECK_INT(rc, TLS13_ERROR);
	CHECK_INT(ERR_GET_REASON(err), SSL_R_TOO_MANY_KEY_UPDATES);
	/* What came before was read. */
	CHECK_INT(evbuffer_get_length(in), 16);
done:
	tls13_free(t);
	pair_close(&p);
	evbuffer_free(in);
	SSL_CTX_free(cctx);
}

/*
 * Key updates owe records, and records pay them back: sixteen updates in
 * a burst, then enough data, then sixteen more are fine; one update every
 * 32 records is not, for long.
 */
static void
check_update_bursts(SSL_CTX *sctx)
{
	SSL_CTX			*cctx = SSL_CTX_new(TLS_client_method());
	struct pair		 p;
	struct wsg_tls13	*t = NULL;
	struct evbuffer		*in = evbuffer_new();
	unsigned long		 err = 0;
	size_t			 want = 0;
	int			 burst, k, i, rc = 0;

	if (pair_open(&p, sctx, cctx) == -1 ||
	    (t = tls13_takeover(p.s)) == NULL) {
		CHECK(!"set-up");
		goto done;
	}
	for (burst = 0; burst < 3 && rc == 0; burst++) {
		for (k = 0; k < 16 && rc == 0; k++) {
			CHECK(SSL_key_update(p.c,
			    SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
			CHECK_INT(SSL_write(p.c, "a", 1), 1);
			rc = t13_read_n(t, p.sfd, in, ++want, &err);
		}
		/* 16 updates owe 1024 records: pay them back. */
		for (i = 0; i < 1100 && rc == 0; i++) {
			CHECK_INT(SSL_write(p.c, "b", 1), 1);
			if (i % 100 == 99 || i == 1099) {
				want += i % 100 + 1;
				rc = t13_read_n(t, p.sfd, in, want, &err);
			}
		}
	}
	CHECK_INT(rc, 0);
	CHECK_INT(evbuffer_get_length(in), want);
	/* One update every 32 records runs up a debt and is stopped. */
	for (k = 0; k < 100 && rc == 0; k++) {
		CHECK(SSL_key_update(p.c, SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
		for (i = 0; i < 31; i++)
			CHECK_INT(SSL_write(p.c, "c", 1), 1);
		want += 31;
		rc = t13_read_n(t, p.sfd, in, want, &err);
	}
	CHECK_INT(rc, TLS13_ERROR);
	CHECK_INT(ERR_GET_REASON(err), SSL_R_TOO_MANY_KEY_UPDATES);
	CHECK(k > 16 && k < 100);
done:
	tls13_free(t);
	pair_close(&p);
	evbuffer_free(in);
	SSL_CTX_free(cctx);
}

/*
 * The budget to the record: an update paid back in full leaves no debt,
 * and then 17 updates with 3 records after each of the first 16 owe
 * 64 + 16 * (64 - 1 - 3) = 1024 records, the most allowed; with one
 * record fewer after the first, the 17th is one too many.
 */
static void
check_update_exact(SSL_CTX *sctx, int fewer)
{
	SSL_CTX			*cctx = SSL_CTX_new(TLS_client_method());
	struct pair		 p;
	struct wsg_tls13	*t = NULL;
	struct evbuffer		*in = evbuffer_new();
	unsigned long		 err = 0;
	size_t			 want = 0;
	int			 k, i, rc = 0;

	if (pair_open(&p, sctx, cctx) == -1 ||
	    (t = tls13_takeover(p.s)) == NULL) {
		CHECK(!"set-up");
		goto done;
	}
	CHECK(SSL_key_update(p.c, SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
	for (i = 0; i < 64; i++)
		CHECK_INT(SSL_write(p.c, "a", 1), 1);
	want += 64;
	rc = t13_read_n(t, p.sfd, in, want, &err);
	for (k = 0; k < 17 && rc == 0; k++) {
		CHECK(SSL_key_update(p.c, SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
		for (i = 0; i < (k == 0 && fewer ? 2 : 3); i++)
			CHECK_INT(SSL_write(p.c, "b", 1), 1);
		want += (size_t)i;
		rc = t13_read_n(t, p.sfd, in, want, &err);
	}
	if (fewer) {
		CHECK_INT(rc, TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_R_TOO_MANY_KEY_UPDATES);
		/* The 17th update's record came first in its read. */
		CHECK_INT(evbuffer_get_length(in), want - 3);
		goto done;
	}
	CHECK_INT(rc, 0);
	CHECK_INT(evbuffer_get_length(in), want);
	/* One more, with nothing between, is one too many. */
	CHECK(SSL_key_update(p.c, SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
	CHECK_INT(SSL_write(p.c, "c", 1), 1);
	CHECK_INT(t13_read_n(t, p.sfd, in, want + 1, &err), TLS13_ERROR);
	CHECK_INT(ERR_GET_REASON(err), SSL_R_TOO_MANY_KEY_UPDATES);
done:
	tls13_free(t);
	pair_close(&p);
	evbuffer_free(in);
	SSL_CTX_free(cctx);
}

/*
 * Records OpenSSL's client would not send (empty, padded, typeless), made
 * by the test with the client's key from its own key log and derived
 * here through EVP_KDF's HKDF, apart from tls13.c's derivation.
 */
/*
 * Seal inner (content, type, pad zeros) as the client's record seq into
 * rec (5 + len + 1 + pad + 16 bytes at most); returns the record's length.
 */
static size_t
cli_seal(unsigned char *rec, uint64_t seq, const void *content, size_t len,
    int type, size_t pad)
{
	static unsigned char	 inner[17000];
	unsigned char		 key[16], iv[12];
	size_t			 n;

	if (tc_expand("key", key, 16) == -1 || tc_expand("iv", iv, 12) == -1)
		CHECK(!"client keys");
	n = tc_seal(rec, inner, seq, content, len, type, pad, key, iv);
	CHECK(n > 0);
	return (n);
}

static void
cli_send(int fd, uint64_t seq, const void *content, size_t len, int type,
    size_t pad)
{
	static unsigned char	 rec[5 + 17000 + 16];
	size_t			 n;

	n = cli_seal(rec, seq, content, len, type, pad);
	CHECK_INT(send(fd, rec, n, 0), n);
}

/* One connection per case; the client wrote two records so far. */
static void
check_crafted(SSL_CTX *sctx, int kase)
{
	SSL_CTX			*cctx = SSL_CTX_new(TLS_client_method());
	struct pair		 p;
	struct wsg_tls13	*t = NULL;
	struct evbuffer		*in = evbuffer_new();
	static unsigned char	 recs[2 * (5 + 1500 + 4 + 16)];
	static unsigned char	 big[16385];
	unsigned long		 err = 0;
	uint64_t		 seq = 2;
	size_t			 n, j, got = 0, sent;
	unsigned char		 next[32];
	int			 i, level;

	for (j = 0; j < sizeof(big); j++)
		big[j] = (unsigned char)(j * 13 + 1);

	SSL_CTX_set_ciphersuites(cctx, "TLS_AES_128_GCM_SHA256");
	SSL_CTX_set_keylog_callback(cctx, tc_keylog);
	SSL_CTX_set_msg_callback(cctx, al_msg_cb);
	tc_secretlen = 0;
	if (pair_open(&p, sctx, cctx) == -1 || tc_secretlen != 32 ||
	    (t = tls13_takeover(p.s)) == NULL) {
		CHECK(!"set-up");
		goto done;
	}
	al_n = 0;
	switch (kase) {
	case 0:
		/* Padding is stripped; 32 empty records in a row pass. */
		cli_send(p.cfd, seq++, "padded", 6, 0x17, 200);
		for (i = 0; i < 32; i++)
			cli_send(p.cfd, seq++, "", 0, 0x17, i);
		cli_send(p.cfd, seq++, "ok", 2, 0x17, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 8, &err), 0);
		CHECK(evbuffer_get_length(in) == 8 &&
		    memcmp(evbuffer_pullup(in, -1), "paddedok", 8) == 0);
		/* The 33rd costs the connection. */
		for (i = 0; i < 33; i++)
			cli_send(p.cfd, seq++, "", 0, 0x17, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 9, &err), TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_R_RECORD_TOO_SMALL);
		break;
	case 1:
		cli_send(p.cfd, seq++, "", 0, 0x16, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 1, &err), TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_R_UNEXPECTED_MESSAGE);
		break;
	case 2:
		/* Zeros only: no content type. */
		cli_send(p.cfd, seq++, "", 0, -1, 7);
		CHECK_INT(t13_read_n(t, p.sfd, in, 1, &err), TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_R_BAD_RECORD_TYPE);
		break;
	case 3:
		/* A change_cipher_spec after the handshake. */
		cli_send(p.cfd, seq++, "\x01", 1, 0x14, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 1, &err), TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_R_UNEXPECTED_RECORD);
		break;
	case 4:
		/* Two records cut at every byte, a read after each. */
		n = cli_seal(recs, seq++, "split", 5, 0x17, 3);
		n += cli_seal(recs + n, seq++, big, 1500, 0x17, 0);
		for (j = 0; j < n; j++) {
			CHECK_INT(send(p.cfd, recs + j, 1, 0), 1);
			CHECK_INT(tls13_read(t, p.sfd, in, 0, &got, &err), 0);
		}
		CHECK_INT(got, 1505);
		CHECK(evbuffer_get_length(in) == 1505 &&
		    memcmp(evbuffer_pullup(in, -1), "split", 5) == 0 &&
		    memcmp(evbuffer_pullup(in, -1) + 5, big, 1500) == 0);
		break;
	case 5:
		/* 2^14 bytes of content pass, one more does not. */
		cli_send(p.cfd, seq++, big, 16384, 0x17, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 16384, &err), 0);
		CHECK_INT(evbuffer_get_length(in), 16384);
		cli_send(p.cfd, seq++, big, 16385, 0x17, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 16385 + 16384, &err),
		    TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_R_DATA_LENGTH_TOO_LONG);
		CHECK_INT(evbuffer_get_length(in), 16384);
		break;
	case 6:
		/* A NewSessionTicket from the client. */
		cli_send(p.cfd, seq++, "\x04\x00\x00\x01\x00", 5, 0x16, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 1, &err), TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_R_UNEXPECTED_MESSAGE);
		break;
	case 7:
		/* A KeyUpdate with data after it in its record. */
		cli_send(p.cfd, seq++, "\x18\x00\x00\x01\x00\x18", 6, 0x16,
		    0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 1, &err), TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_R_NOT_ON_RECORD_BOUNDARY);
		break;
	case 8:
		/* A fatal alert: what came before it is kept. */
		cli_send(p.cfd, seq++, "before", 6, 0x17, 0);
		cli_send(p.cfd, seq++, "\x02\x28", 2, 0x15, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 7, &err), TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_AD_REASON_OFFSET + 40);
		CHECK_INT(evbuffer_get_length(in), 6);
		break;
	case 9:
		/* close_notify, and nothing read after it. */
		cli_send(p.cfd, seq++, "last", 4, 0x17, 0);
		cli_send(p.cfd, seq++, "\x01\x00", 2, 0x15, 0);
		cli_send(p.cfd, seq++, "after", 5, 0x17, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 9, &err), TLS13_EOF);
		CHECK_INT(evbuffer_get_length(in), 4);
		CHECK_INT(tls13_read(t, p.sfd, in, 0, &got, &err), TLS13_EOF);
		break;
	case 10:
		/* TLSInnerPlaintext over 2^14 + 1 bytes, by its padding. */
		cli_send(p.cfd, seq++, big, 16384, 0x17, 1);
		CHECK_INT(t13_read_n(t, p.sfd, in, 16384, &err), TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_R_DATA_LENGTH_TOO_LONG);
		CHECK_INT(evbuffer_get_length(in), 0);
		break;
	case 11:
		/* A KeyUpdate whose request_update is neither 0 nor 1. */
		cli_send(p.cfd, seq++, "\x18\x00\x00\x01\x02", 5, 0x16, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 1, &err), TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_R_BAD_KEY_UPDATE);
		break;
	case 12:
		/* user_canceled is a warning: what follows it still counts. */
		cli_send(p.cfd, seq++, "\x01\x5a", 2, 0x15, 0);
		cli_send(p.cfd, seq++, "still", 5, 0x17, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 5, &err), 0);
		CHECK(evbuffer_get_length(in) == 5 &&
		    memcmp(evbuffer_pullup(in, -1), "still", 5) == 0);
		break;
	case 13:
		/* A KeyUpdate without its request_update byte. */
		cli_send(p.cfd, seq++, "\x18\x00\x00\x00", 4, 0x16, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 1, &err), TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_R_BAD_KEY_UPDATE);
		CHECK_INT(client_alert(&p, &level), 50);
		CHECK_INT(level, 2);
		break;
	case 14:
		/* An alert of three bytes, one of one. */
		cli_send(p.cfd, seq++, "\x01\x00\x00", 3, 0x15, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 1, &err), TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_R_BAD_LENGTH);
		CHECK_INT(client_alert(&p, &level), 50);
		break;
	case 15:
		cli_send(p.cfd, seq++, "\x01", 1, 0x15, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 1, &err), TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_R_BAD_LENGTH);
		CHECK_INT(client_alert(&p, &level), 50);
		break;
	case 16:
		/*
		 * Warnings count as empty records: 32 user_canceled in a
		 * row pass, data starts the count again, the 33rd ends it.
		 */
		for (i = 0; i < 32; i++)
			cli_send(p.cfd, seq++, "\x01\x5a", 2, 0x15, 0);
		cli_send(p.cfd, seq++, "ok", 2, 0x17, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 2, &err), 0);
		CHECK_INT(evbuffer_get_length(in), 2);
		for (i = 0; i < 33; i++)
			cli_send(p.cfd, seq++, "\x01\x5a", 2, 0x15, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 3, &err), TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_R_RECORD_TOO_SMALL);
		CHECK_INT(client_alert(&p, &level), 10);
		break;
	case 17:
		/*
		 * The client asks for our key update, then gives up with a
		 * fatal alert: nothing is due from us any more, data is
		 * refused, and no alert of ours follows the client's.
		 */
		sent = 0;
		evbuffer_add(in, "hi", 2);
		CHECK_INT(tls13_write(t, p.sfd, in, SIZE_MAX, &sent, &err), 0);
		CHECK(client_read_n(&p, t, (unsigned char *)recs, 2) == 0);
		CHECK(!tls13_write_pending(t));
		cli_send(p.cfd, seq++, "\x18\x00\x00\x01\x01", 5, 0x16, 0);
		CHECK(tc_expand("traffic upd", next, 32) == 0);
		memcpy(tc_secret, next, 32);
		seq = 0;
		cli_send(p.cfd, seq++, "\x02\x28", 2, 0x15, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 1, &err), TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_AD_REASON_OFFSET + 40);
		CHECK(!tls13_write_pending(t));
		evbuffer_add(in, "late", 4);
		sent = 0;
		CHECK_INT(tls13_write(t, p.sfd, in, SIZE_MAX, &sent, &err),
		    TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_R_PROTOCOL_IS_SHUTDOWN);
		CHECK_INT(sent, 0);
		tls13_close_notify(t, p.sfd);
		CHECK_INT(recv(p.cfd, recs, 1, MSG_DONTWAIT), -1);
		break;
	case 18:
		/* The first byte of another message is enough to refuse. */
		cli_send(p.cfd, seq++, "\x04", 1, 0x16, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 1, &err), TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_R_UNEXPECTED_MESSAGE);
		break;
	case 19:
		/* Not even a warning alert between a KeyUpdate's pieces. */
		cli_send(p.cfd, seq++, "\x18\x00", 2, 0x16, 0);
		cli_send(p.cfd, seq++, "\x01\x5a", 2, 0x15, 0);
		CHECK_INT(t13_read_n(t, p.sfd, in, 1, &err), TLS13_ERROR);
		CHECK_INT(ERR_GET_REASON(err), SSL_R_UNEXPECTED_RECORD);
		CHECK_INT(client_alert(&p, &level), 10);
		break;
	}
done:
	tls13_free(t);
	pair_close(&p);
	evbuffer_free(in);
	SSL_CTX_free(cctx);
}

/* TLS 1.2 stays with OpenSSL. */
static void
check_tls12(SSL_CTX *sctx)
{
	SSL_CTX		*cctx = SSL_CTX_new(TLS_client_method());
	struct pair	 p;

	SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION);
	if (pair_open(&p, sctx, cctx) == -1) {
		CHECK(!"handshake");
	} else {
		CHECK_INT(SSL_version(p.s), TLS1_2_VERSION);
		CHECK(tls13_takeover(p.s) == NULL);
		/* And OpenSSL goes on as before. */
		CHECK_INT(SSL_write(p.s, "x", 1), 1);
	}
	pair_close(&p);
	SSL_CTX_free(cctx);
}

/* Something unread in OpenSSL: no takeover, OpenSSL goes on. */
static void
check_pending(SSL_CTX *sctx)
{
	SSL_CTX		*cctx = SSL_CTX_new(TLS_client_method());
	struct pair	 p;
	char		 buf[4];
	int		 i, r = 0;

	if (pair_open(&p, sctx, cctx) == -1) {
		CHECK(!"handshake");
		goto done;
	}
	CHECK_INT(SSL_write(p.c, "abcdefgh", 8), 8);
	for (i = 0; i < STEPS && (r = SSL_read(p.s, buf, 4)) <= 0; i++)
		wait_fd(p.sfd, POLLIN);
	CHECK_INT(r, 4);
	CHECK(tls13_takeover(p.s) == NULL);
	CHECK_INT(SSL_read(p.s, buf, 4), 4);
	CHECK(memcmp(buf, "efgh", 4) == 0);
done:
	pair_close(&p);
	SSL_CTX_free(cctx);
}

/*
 * A key update of the client's that OpenSSL read before the takeover (a
 * client may send one right after its Finished): the secrets captured at
 * the handshake are no longer the client's, so the session stays with
 * OpenSSL, and the client's next records, and ours, still get through.
 */
static void
check_update_before_takeover(SSL_CTX *sctx, int requested)
{
	SSL_CTX		*cctx = SSL_CTX_new(TLS_client_method());
	struct pair	 p;
	char		 buf[5];
	int		 i, r = 0;

	if (pair_open(&p, sctx, cctx) == -1) {
		CHECK(!"handshake");
		goto done;
	}
	CHECK(SSL_key_update(p.c, requested ? SSL_KEY_UPDATE_REQUESTED :
	    SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
	CHECK_INT(SSL_write(p.c, "x", 1), 1);
	for (i = 0; i < STEPS && (r = SSL_read(p.s, buf, 1)) <= 0; i++)
		wait_fd(p.sfd, POLLIN);
	CHECK_INT(r, 1);
	CHECK(tls13_takeover(p.s) == NULL);
	CHECK_INT(SSL_write(p.c, "later", 5), 5);
	for (i = 0; i < STEPS && (r = SSL_read(p.s, buf, 5)) <= 0; i++)
		wait_fd(p.sfd, POLLIN);
	CHECK(r == 5 && memcmp(buf, "later", 5) == 0);
	CHECK_INT(SSL_write(p.s, "reply", 5), 5);
	for (i = 0; i < STEPS && (r = SSL_read(p.c, buf, 5)) <= 0; i++)
		wait_fd(p.cfd, POLLIN);
	CHECK(r == 5 && memcmp(buf, "reply", 5) == 0);
done:
	pair_close(&p);
	SSL_CTX_free(cctx);
}

/*
 * No ticket at the end of the handshake: the one ticket leaves with the
 * first records sealed after the takeover (in the gateway, the 101), and
 * the client resumes with it; a resumed session gets its next ticket the
 * same way.
 */
static void
check_ticket(SSL_CTX *sctx)
{
	SSL_CTX			*cctx = SSL_CTX_new(TLS_client_method());
	SSL_SESSION		*sess = NULL;
	struct wsg_tls13	*t = NULL;
	struct evbuffer		*out = evbuffer_new();
	struct pair		 p;
	unsigned char		 b[2];
	unsigned long		 err = 0;
	size_t			 sent;
	int			 round;

	SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT);
	for (round = 0; round < 2; round++) {
		if (pair_open_session(&p, sctx, cctx, sess) == -1) {
			CHECK(!"handshake");
			pair_close(&p);
			break;
		}
		CHECK_INT(SSL_session_reused(p.c), round);
		/* The client read the response: no ticket came before it. */
		CHECK_INT(SSL_SESSION_is_resumable(SSL_get_session(p.c)), 0);
		if ((t = tls13_takeover(p.s)) == NULL) {
			CHECK(!"takeover");
			pair_close(&p);
			break;
		}
		CHECK(tls13_write_pending(t));
		evbuffer_add(out, "ok", 2);
		sent = 0;
		CHECK_INT(tls13_write(t, p.sfd, out, SIZE_MAX, &sent, &err),
		    0);
		/* The ticket's record and ours, both sent. */
		CHECK(sent > 2 * (5 + 1 + 16) + 2 + 100);
		CHECK(!tls13_write_pending(t));
		CHECK(client_read_n(&p, t, b, 2) == 0);
		CHECK(memcmp(b, "ok", 2) == 0);
		CHECK_INT(SSL_SESSION_is_resumable(SSL_get_session(p.c)), 1);
		SSL_SESSION_free(sess);
		/* A copy: freeing the client unshut marks its own spent. */
		sess = SSL_SESSION_dup(SSL_get_session(p.c));
		tls13_free(t);
		t = NULL;
		pair_close(&p);
	}
	SSL_SESSION_free(sess);
	evbuffer_free(out);
	SSL_CTX_free(cctx);
}

/*
 * The client asks for our key update before anything was sealed after the
 * takeover: the ticket still queued goes out first, then our KeyUpdate,
 * then the data under the new key, and the client reads it all.
 */
static void
check_update_before_ticket(SSL_CTX *sctx)
{
	SSL_CTX			*cctx = SSL_CTX_new(TLS_client_method());
	struct pair		 p;
	struct wsg_tls13	*t = NULL;
	struct evbuffer		*in = evbuffer_new();
	struct evbuffer		*out = evbuffer_new();
	unsigned char		 b[5];
	unsigned long		 err = 0;
	size_t			 sent = 0;

	if (pair_open(&p, sctx, cctx) == -1 ||
	    (t = tls13_takeover(p.s)) == NULL) {
		CHECK(!"set-up");
		goto done;
	}
	CHECK(tls13_write_pending(t));
	CHECK(SSL_key_update(p.c, SSL_KEY_UPDATE_REQUESTED) == 1);
	CHECK_INT(SSL_write(p.c, "x", 1), 1);
	CHECK_INT(t13_read_n(t, p.sfd, in, 1, &err), 0);
	CHECK_INT(evbuffer_get_length(in), 1);
	evbuffer_add(out, "reply", 5);
	CHECK_INT(tls13_write(t, p.sfd, out, SIZE_MAX, &sent, &err), 0);
	CHECK(!tls13_write_pending(t));
	CHECK(client_read_n(&p, t, b, 5) == 0);
	CHECK(memcmp(b, "reply", 5) == 0);
	CHECK_INT(SSL_SESSION_is_resumable(SSL_get_session(p.c)), 1);
	ERR_clear_error();
done:
	tls13_free(t);
	pair_close(&p);
	evbuffer_free(in);
	evbuffer_free(out);
	SSL_CTX_free(cctx);
}

/*
 * A takeover the caller cannot finish: tls13_abandon() sends the ticket
 * sealed for the session, and OpenSSL goes on with the next record
 * number.  Without the ticket sent, the client's record numbers would lag
 * by one and OpenSSL's next record would fail its MAC.
 */
static void
check_abandon(SSL_CTX *sctx)
{
	SSL_CTX			*cctx = SSL_CTX_new(TLS_client_method());
	struct wsg_tls13	*t;
	struct pair		 p;
	unsigned char		 b[4];

	if (pair_open(&p, sctx, cctx) == -1) {
		CHECK(!"handshake");
		goto done;
	}
	if ((t = tls13_takeover(p.s)) == NULL) {
		CHECK(!"takeover");
		goto done;
	}
	CHECK(tls13_write_pending(t));
	tls13_abandon(t, p.sfd);
	CHECK_INT(SSL_write(p.s, "back", 4), 4);
	CHECK(client_read_n(&p, NULL, b, 4) == 0);
	CHECK(memcmp(b, "back", 4) == 0);
	CHECK_INT(SSL_SESSION_is_resumable(SSL_get_session(p.c)), 1);
done:
	pair_close(&p);
	SSL_CTX_free(cctx);
}

/*
 * What the client read from the record layer: each data record's
 * plaintext length (content and type), and a KeyUpdate as 0.
 */
static size_t	 rk_log[1024];
static size_t	 rk_n, rk_clen;
static int	 rk_requests;	/* our KeyUpdates that asked for the client's */

static void
rk_msg_cb(int write_p, int version, int type, const void *buf, size_t len,
    SSL *ssl, void *arg)
{
	const unsigned char	*b = buf;

	(void)version;
	(void)ssl;
	(void)arg;
	if (write_p || len < 1 || rk_n == sizeof(rk_log) / sizeof(rk_log[0]))
		return;
	if (type == SSL3_RT_HEADER && len == 5)
		rk_clen = (size_t)b[3] << 8 | b[4];
	else if (type == SSL3_RT_INNER_CONTENT_TYPE &&
	    b[0] == SSL3_RT_APPLICATION_DATA)
		rk_log[rk_n++] = rk_clen - 16;
	else if (type == SSL3_RT_HANDSHAKE && b[0] == SSL3_MT_KEY_UPDATE) {
		rk_log[rk_n++] = 0;
		if (len != 5 || b[4] != 0)
			rk_requests++;
	}
}

/* The bytes and records under the client's view of our write key. */
struct rk_state {
	uint64_t	bytes, records;
	int		known;		/* records counted from a key update */
	size_t		seen;		/* rk_log entries checked */
	int		updates;
};

/*
 * Check the log since the last call: a KeyUpdate of ours exactly before
 * the first record after the key sealed `bytes` or `records` (but for
 * `asked` updates the client asked for); returns the updates seen.
 */
static int
rk_check(struct rk_state *st, uint64_t bytes, uint64_t records, int asked)
{
	int	n = 0, due;

	for (; st->seen < rk_n; st->seen++) {
		due = st->bytes >= bytes || (st->known &&
		    st->records >= records);
		if (rk_log[st->seen] == 0) {
			if (!due && asked-- <= 0)
				CHECK(!"a key update before it was due");
			st->bytes = st->records = 0;
			st->known = 1;
			n++;
		} else {
			if (due)
				CHECK(!"a record after the key update was due");
			st->bytes += rk_log[st->seen];
			st->records++;
		}
	}
	st->updates += n;
	return (n);
}

/*
 * Seal len bytes through tls13_write(), at most max bytes a call, adding
 * them to its source `step` bytes at a time (a frame streamed in parts)
 * while the client reads; *queued counts the calls that left sealed
 * bytes waiting for the socket.  0 when every byte came back in order.
 */
static int
rk_pump(struct pair *p, struct wsg_tls13 *t, const unsigned char *data,
    size_t len, size_t step, size_t max, int *queued)
{
	struct evbuffer	*out = evbuffer_new();
	unsigned char	*back = malloc(len);
	unsigned long	 err = 0;
	size_t		 added = 0, done = 0, sent, n;
	int		 i, r, rc = -1;

	for (i = 0; i < 20 * STEPS && back != NULL; i++) {
		if (added < len) {
			n = len - added < step ? len - added : step;
			evbuffer_add(out, data + added, n);
			added += n;
		}
		sent = 0;
		if (tls13_write(t, p->sfd, out, max, &sent, &err) != 0)
			break;
		if (tls13_write_pending(t))
			(*queued)++;
		if (done == len) {
			if (added == len && evbuffer_get_length(out) == 0 &&
			    !tls13_write_pending(t))
				rc = memcmp(back, data, len) == 0 ? 0 : -1;
			break;
		}
		r = SSL_read(p->c, back + done, (int)(len - done));
		if (r > 0)
			done += (size_t)r;
		else if (SSL_get_error(p->c, r) != SSL_ERROR_WANT_READ)
			break;
		else if (!tls13_write_pending(t) &&
		    evbuffer_get_length(out) == 0)
			wait_fd(p->cfd, POLLIN);
	}
	free(back);
	evbuffer_free(out);
	return (rc);
}

/*
 * Our own key updates (RFC 8446 5.5), with the limits lowered: after a
 * few KiB sealed under one key a KeyUpdate goes before the next record,
 * for records sealed one by one, for a stream cut in parts with the
 * socket full now and then, and after a few records; one the client
 * asked for starts the count again.  The client's OpenSSL follows them
 * and reads every byte in order.
 */
static void
check_own_updates(SSL_CTX *sctx, const char *suite)
{
	SSL_CTX			*cctx = SSL_CTX_new(TLS_client_method());
	struct pair		 p;
	struct wsg_tls13	*t = NULL;
	struct evbuffer		*in = evbuffer_new();
	struct rk_state		 st;
	unsigned char		*big = malloc(1 << 20);
	unsigned long		 err = 0;
	size_t			 i;
	int			 k, queued = 0, buf = 4096;

	memset(&st, 0, sizeof(st));
	for (i = 0; big != NULL && i < 1 << 20; i++)
		big[i] = (unsigned char)(i * 31 + i / 4099);
	CHECK(SSL_CTX_set_ciphersuites(cctx, suite) == 1);
	SSL_CTX_set_msg_callback(cctx, rk_msg_cb);
	if (big == NULL || pair_open(&p, sctx, cctx) == -1 ||
	    (t = tls13_takeover(p.s)) == NULL) {
		CHECK(!"set-up");
		goto done;
	}
	rk_n = 0;
	rk_requests = 0;

	/* 1000-byte records: five under each key, 5005 bytes >= 4096. */
	tls13_set_rekey(4096, 0);
	for (k = 0; k < 40; k++)
		CHECK(rk_pump(&p, t, big + k, 1000, 1000, SIZE_MAX,
		    &queued) == 0);
	CHECK_INT(rk_check(&st, 4096, UINT64_MAX, 0), 7);
	CHECK_INT(rk_n, 40 + 7);

	/*
	 * The limit reached exactly: three records of 1000 bytes and the
	 * type seal 3003 bytes, and a KeyUpdate goes before the fourth.
	 */
	tls13_set_rekey(3003, 0);
	for (k = 0; k < 12; k++)
		CHECK(rk_pump(&p, t, big + k, 1000, 1000, SIZE_MAX,
		    &queued) == 0);
	CHECK_INT(rk_check(&st, 3003, UINT64_MAX, 0), 4);

	/*
	 * 1 MiB streamed 30000 bytes at a time, faster than the client
	 * reads, into a socket that takes a few KiB, 20000 bytes a call:
	 * one update every 40000 bytes or so.
	 */
	CHECK(setsockopt(p.sfd, SOL_SOCKET, SO_SNDBUF, &buf,
	    sizeof(buf)) == 0);
	tls13_set_rekey(40000, 0);
	queued = 0;
	CHECK(rk_pump(&p, t, big, 1 << 20, 30000, 20000, &queued) == 0);
	CHECK(queued > 0);
	k = rk_check(&st, 40000, UINT64_MAX, 0);
	CHECK(k >= (1 << 20) / (40000 + 16385) && k <= (1 << 20) / 40000);

	/* The client asks for one; then one every 8 records. */
	CHECK(SSL_key_update(p.c, SSL_KEY_UPDATE_REQUESTED) == 1);
	CHECK_INT(SSL_write(p.c, "x", 1), 1);
	CHECK_INT(t13_read_n(t, p.sfd, in, 1, &err), 0);
	tls13_set_rekey(1 << 20, 8);
	for (k = 0; k < 30; k++)
		CHECK(rk_pump(&p, t, big + k, 10, 10, SIZE_MAX,
		    &queued) == 0);
	/* The answer first, then before records 9, 17 and 25. */
	CHECK_INT(rk_check(&st, 1 << 20, 8, 1), 4);
	CHECK_INT(rk_n, st.seen);
	CHECK(rk_n >= 34 && rk_log[rk_n - 34] == 0 && rk_log[rk_n - 25] == 0);
	/* Ours never ask for the client's: update_not_requested. */
	CHECK_INT(rk_requests, 0);
done:
	tls13_set_rekey(0, 0);
	tls13_free(t);
	pair_close(&p);
	free(big);
	evbuffer_free(in);
	SSL_CTX_free(cctx);
}

/* The server's traffic secret too, for check_wiped(). */
static unsigned char	 srv_secret[32];

static void
wipe_keylog(const SSL *ssl, const char *line)
{
	const char	*h;
	unsigned int	 b;
	size_t		 n;

	tc_keylog(ssl, line);
	if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) != 0 ||
	    (h = strrchr(line, ' ')) == NULL)
		return;
	for (n = 0, h++; n < sizeof(srv_secret) && sscanf(h, "%2x", &b) == 1;
	    h += 2)
		srv_secret[n++] = (unsigned char)b;
}

#ifndef __SANITIZE_ADDRESS__
/*
 * Whether the n bytes at k are in the heap or other anonymous memory
 * (not the stack, where the test keeps its own copies).  Not under
 * AddressSanitizer, whose shadow and freed memory are not to be read.
 */
static int
in_memory(const unsigned char *k, size_t n)
{
	FILE		*f;
	char		 line[512], perm[8], path[256];
	unsigned long	 lo, hi;
	int		 found = 0;

	if ((f = fopen("/proc/self/maps", "r")) == NULL)
		return (-1);
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		path[0] = '\0';
		if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %255s", &lo, &hi,
		    perm, path) < 3 || perm[0] != 'r' || perm[1] != 'w' ||
		    (path[0] != '\0' && strcmp(path, "[heap]") != 0) ||
		    hi - lo > (1UL << 30))
			continue;
		found = memmem((void *)lo, hi - lo, k, n) != NULL;
	}
	fclose(f);
	return (found);
}
#endif

/*
 * HMAC-SHA256's inner state for a key (RFC 2104): what a keyed HMAC
 * context holds, and with the outer one all it takes to compute HMAC,
 * and so HKDF, with that key.
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static void
hmac_istate(const unsigned char *key, unsigned char *out)
{
	SHA256_CTX	c;
	unsigned char	pad[64];
	size_t		i;

	memset(pad, 0x36, sizeof(pad));
	for (i = 0; i < 32; i++)
		pad[i] ^= key[i];
	SHA256_Init(&c);
	SHA256_Update(&c, pad, sizeof(pad));
	memcpy(out, c.h, 32);
	OPENSSL_cleanse(&c, sizeof(c));
	OPENSSL_cleanse(pad, sizeof(pad));
}
#pragma GCC diagnostic pop

/*
 * Keys are wiped when the session ends: its read keys before and after a
 * key update and its write key, each used on both paths (gcm.c for short
 * records, OpenSSL for long ones), are nowhere in memory once the record
 * state is freed, though the thread's cipher contexts live on; nor is the
 * last traffic secret it derived keys from, as the thread's HMAC context
 * keyed with it.
 */
static void
check_wiped(SSL_CTX *sctx)
{
	SSL_CTX			*cctx = SSL_CTX_new(TLS_client_method());
	struct pair		 p;
	struct wsg_tls13	*t = NULL;
	struct evbuffer		*in = evbuffer_new();
	unsigned char		 keys[3][16], next[32], data[4000];
	unsigned char		 istate[32];
	unsigned long		 err = 0;
	int			 i;

	memset(data, 'w', sizeof(data));
	SSL_CTX_set_ciphersuites(cctx, "TLS_AES_128_GCM_SHA256");
	SSL_CTX_set_keylog_callback(cctx, wipe_keylog);
	tc_secretlen = 0;
	if (pair_open(&p, sctx, cctx) == -1 || tc_secretlen != 32 ||
	    (t = tls13_takeover(p.s)) == NULL) {
		CHECK(!"set-up");
		goto done;
	}
	both_ways(&p, t, data, 100);
	both_ways(&p, t, data, sizeof(data));
	CHECK(SSL_key_update(p.c, SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
	CHECK_INT(SSL_write(p.c, "x", 1), 1);
	CHECK_INT(t13_read_n(t, p.sfd, in, 1, &err), 0);
	both_ways(&p, t, data, 100);
	both_ways(&p, t, data, sizeof(data));
	/* The keys, then no secret left outside the stack. */
	CHECK(tc_expand("key", keys[0], 16) == 0);
	CHECK(tc_expand("traffic upd", next, 32) == 0);
	memcpy(tc_secret, next, 32);
	CHECK(tc_expand("key", keys[1], 16) == 0);
	hmac_istate(next, istate);
	memcpy(tc_secret, srv_secret, 32);
	CHECK(tc_expand("key", keys[2], 16) == 0);
	OPENSSL_cleanse(tc_secret, sizeof(tc_secret));
	OPENSSL_cleanse(srv_secret, sizeof(srv_secret));
	OPENSSL_cleanse(next, sizeof(next));
#ifndef __SANITIZE_ADDRESS__
	/* The scan sees a key and a secret in use. */
	CHECK_INT(in_memory(keys[1], 16), 1);
	CHECK_INT(in_memory(istate, 32), 1);
#endif
	tls13_free(t);
	t = NULL;
	pair_close(&p);
#ifndef __SANITIZE_ADDRESS__
	for (i = 0; i < 3; i++)
		CHECK_INT(in_memory(keys[i], 16), 0);
	CHECK_INT(in_memory(istate, 32), 0);
#else
	(void)i;
#endif
	OPENSSL_cleanse(keys, sizeof(keys));
	OPENSSL_cleanse(istate, sizeof(istate));
	SSL_CTX_free(cctx);
	evbuffer_free(in);
	return;
done:
	tls13_free(t);
	pair_close(&p);
	evbuffer_free(in);
	SSL_CTX_free(cctx);
}

int
main(void)
{
	static const unsigned char	 garbage[5 + 32] = { 0x17, 0x03, 0x03,
					    0x00, 0x20 };
	static const unsigned char	 toolong[5] = { 0x17, 0x03, 0x03,
					    0x41, 0x01 };
	static const unsigned char	 plainalert[7] = { 0x15, 0x03, 0x03,
					    0x00, 0x02, 0x02, 0x28 };
	/* A tag and no inner plaintext; a TLS 1.0 record version. */
	static const unsigned char	 tagonly[5 + 16] = { 0x17, 0x03, 0x03,
					    0x00, 0x10 };
	static const unsigned char	 oldvers[5 + 32] = { 0x17, 0x03, 0x01,
					    0x00, 0x20 };
	struct wsg_errors		 errs;
	SSL_CTX				*s13, *s12;
	int				 k;

	memset(&errs, 0, sizeof(errs));
	if (make_cert() == -1) {
		CHECK(!"certificate");
		return (unit_done("test_tls13"));
	}
	s13 = tls_ctx_new(certpath, keypath, TLS1_3_VERSION, NULL, &errs,
	    "test", 0, 0);
	s12 = tls_ctx_new(certpath, keypath, TLS1_2_VERSION, NULL, &errs,
	    "test", 0, 0);
	CHECK(s13 != NULL && s12 != NULL);
	if (s13 != NULL && s12 != NULL) {
		check_suite(s13, "TLS_AES_128_GCM_SHA256");
		check_suite(s13, "TLS_AES_256_GCM_SHA384");
		check_suite(s13, "TLS_CHACHA20_POLY1305_SHA256");
		check_bad(s13, garbage, sizeof(garbage),
		    SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC, 20);
		check_bad(s13, toolong, sizeof(toolong),
		    SSL_R_ENCRYPTED_LENGTH_TOO_LONG, 22);
		check_bad(s13, plainalert, sizeof(plainalert),
		    SSL_R_UNEXPECTED_RECORD, 10);
		check_bad(s13, tagonly, sizeof(tagonly), SSL_R_BAD_LENGTH, 50);
		check_bad(s13, oldvers, sizeof(oldvers),
		    SSL_R_WRONG_VERSION_NUMBER, 70);
		check_update_flood(s13);
		check_update_bursts(s13);
		check_update_exact(s13, 0);
		check_update_exact(s13, 1);
		for (k = 0; k <= 19; k++)
			check_crafted(s13, k);
		check_tls12(s12);
		check_pending(s13);
		check_update_before_takeover(s13, 0);
		check_update_before_takeover(s13, 1);
		check_ticket(s13);
		check_update_before_ticket(s13);
		check_abandon(s13);
		check_wiped(s13);
		check_own_updates(s13, "TLS_AES_128_GCM_SHA256");
		check_own_updates(s13, "TLS_AES_256_GCM_SHA384");
		check_own_updates(s13, "TLS_CHACHA20_POLY1305_SHA256");
	}
	SSL_CTX_free(s13);
	SSL_CTX_free(s12);
	errors_free(&errs);
	unlink(certpath);
	unlink(keypath);
	tls13_thread_done();
	return (unit_done("test_tls13"));
}
