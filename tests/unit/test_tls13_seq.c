/*
 * White-box tests of tls13.c's record numbers and key schedule, which a
 * socket pair cannot reach: sequence numbers above 2^32 (a client that
 * never updates its key gets there), the last one before the number
 * would wrap, and the derivations against RFC 8448's known answers.
 * The file includes tls13.c itself for its static functions.
 */
#include "tls13.c"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "unit.h"

/* RFC 8448 section 3: server_application_traffic_secret_0, key and IV. */
static const uint8_t	rfc_secret[32] = {
	0xa1, 0x1a, 0xf9, 0xf0, 0x55, 0x31, 0xf8, 0x56, 0xad, 0x47, 0x11,
	0x6b, 0x45, 0xa9, 0x50, 0x32, 0x82, 0x04, 0xb4, 0xf4, 0x4b, 0xfb,
	0x6b, 0x3a, 0x4b, 0x4f, 0x1f, 0x3f, 0xcb, 0x63, 0x16, 0x43 };
static const uint8_t	rfc_key[16] = {
	0x9f, 0x02, 0x28, 0x3b, 0x6c, 0x9c, 0x07, 0xef, 0xc2, 0x6b, 0xb9,
	0xf2, 0xac, 0x92, 0xe3, 0x56 };
static const uint8_t	rfc_iv[12] = {
	0xcf, 0x78, 0x2b, 0x88, 0xdd, 0x83, 0x54, 0x9a, 0xad, 0xf1, 0xe9,
	0x84 };
/*
 * HKDF-Expand-Label(secret, "traffic upd", "", 32) and the key and IV
 * from that, computed with Python's hmac module (RFC 8446 7.1, 7.2).
 */
static const uint8_t	upd_secret[32] = {
	0x51, 0x92, 0x1b, 0x8a, 0xa3, 0x00, 0x19, 0x76, 0xeb, 0x40, 0x1d,
	0x0a, 0x43, 0x19, 0xa8, 0x51, 0x64, 0x16, 0xa6, 0xc5, 0x60, 0x01,
	0xa3, 0x57, 0xe5, 0xd1, 0x62, 0x03, 0x1e, 0x84, 0xf9, 0x16 };
static const uint8_t	upd_key[16] = {
	0x2e, 0x63, 0xbe, 0x99, 0xd6, 0x7b, 0x39, 0x09, 0x7f, 0xeb, 0x97,
	0x86, 0xcf, 0x7a, 0x15, 0xa0 };
static const uint8_t	upd_iv[12] = {
	0x62, 0x8a, 0x0a, 0x82, 0x98, 0xac, 0x95, 0x3b, 0xae, 0xf4, 0x25,
	0x5a };

static const uint64_t	seqs[] = { 0, 1, 0xff, 0x100, 0xffffffffULL,
	0x100000000ULL, 0x0102030405060708ULL, 0x8000000000000000ULL,
	UINT64_MAX - 1 };

/* The per-record nonce as RFC 8446 5.3 builds it, byte by byte. */
static void
want_nonce(const uint8_t *iv, uint64_t seq, uint8_t *out)
{
	uint8_t	s[12] = { 0 };
	int	i;

	/* The number, big-endian, padded on the left to the IV's length. */
	for (i = 0; i < 8; i++)
		s[4 + i] = (uint8_t)(seq >> (56 - 8 * i));
	for (i = 0; i < 12; i++)
		out[i] = iv[i] ^ s[i];
}

static void
new_session(struct wsg_tls13 *t)
{
	memset(t, 0, sizeof(*t));
	t->t_suite = T13_AES128GCM;
	t->t_hashlen = 32;
	t->t_keylen = 16;
	CHECK_INT(t13_dir_set(t, &t->t_wr, rfc_secret, 0), 0);
	CHECK_INT(t13_dir_set(t, &t->t_rd, rfc_secret, 0), 0);
}

static void
check_schedule(void)
{
	struct wsg_tls13	t;

	new_session(&t);
	CHECK(memcmp(t.t_wr.d_key, rfc_key, 16) == 0);
	CHECK(memcmp(t.t_wr.d_iv, rfc_iv, 12) == 0);
	/* An update takes the next secret and starts again at record 0. */
	t.t_wr.d_seq = 77;
	t.t_wr.d_bytes = 1000;
	CHECK_INT(t13_dir_update(&t, &t.t_wr), 0);
	CHECK(memcmp(t.t_wr.d_secret, upd_secret, 32) == 0);
	CHECK(memcmp(t.t_wr.d_key, upd_key, 16) == 0);
	CHECK(memcmp(t.t_wr.d_iv, upd_iv, 12) == 0);
	CHECK_INT(t.t_wr.d_seq, 0);
	CHECK_INT(t.t_wr.d_bytes, 0);
	/* The other direction is left alone. */
	CHECK(memcmp(t.t_rd.d_key, rfc_key, 16) == 0);
	t13_forget(&t.t_rd, 0);
	t13_forget(&t.t_wr, 1);
}

static void
check_nonces(void)
{
	struct t13_dir	d;
	uint8_t		got[12], want[12];
	size_t		i;

	memset(&d, 0, sizeof(d));
	memcpy(d.d_iv, rfc_iv, sizeof(rfc_iv));
	for (i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
		d.d_seq = seqs[i];
		t13_nonce(&d, got);
		want_nonce(rfc_iv, seqs[i], want);
		if (memcmp(got, want, 12) != 0)
			fprintf(stderr, "nonce for %llx differs\n",
			    (unsigned long long)seqs[i]);
		CHECK(memcmp(got, want, 12) == 0);
	}
}

/* Open a record of ours with OpenSSL, for sequence number seq. */
static int
evp_open_rec(const uint8_t *rec, size_t clen, uint64_t seq, uint8_t *out)
{
	EVP_CIPHER_CTX	*ctx = EVP_CIPHER_CTX_new();
	uint8_t		 nonce[12];
	int		 ol, fl, ok;

	want_nonce(rfc_iv, seq, nonce);
	ok = ctx != NULL && EVP_DecryptInit_ex(ctx, EVP_aes_128_gcm(), NULL,
	    rfc_key, nonce) == 1 &&
	    EVP_DecryptUpdate(ctx, NULL, &ol, rec, T13_HDR) == 1 &&
	    EVP_DecryptUpdate(ctx, out, &ol, rec + T13_HDR,
	    (int)(clen - T13_TAG)) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, T13_TAG,
	    (void *)(rec + T13_HDR + clen - T13_TAG)) == 1 &&
	    EVP_DecryptFinal_ex(ctx, out + ol, &fl) == 1;
	EVP_CIPHER_CTX_free(ctx);
	return (ok ? 0 : -1);
}

/*
 * Seal a record as the client would, for sequence number seq, its header
 * (the additional data) saying outer.
 */
static void
evp_seal_outer(const uint8_t *plain, size_t n, uint64_t seq, uint8_t outer,
    uint8_t *rec)
{
	EVP_CIPHER_CTX	*ctx = EVP_CIPHER_CTX_new();
	uint8_t		 nonce[12];
	size_t		 clen = n + T13_TAG;
	int		 ol, fl;

	want_nonce(rfc_iv, seq, nonce);
	rec[0] = outer;
	rec[1] = rec[2] = 3;
	rec[3] = (uint8_t)(clen >> 8);
	rec[4] = (uint8_t)clen;
	CHECK(ctx != NULL && EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), NULL,
	    rfc_key, nonce) == 1 &&
	    EVP_EncryptUpdate(ctx, NULL, &ol, rec, T13_HDR) == 1 &&
	    EVP_EncryptUpdate(ctx, rec + T13_HDR, &ol, plain, (int)n) == 1 &&
	    EVP_EncryptFinal_ex(ctx, rec + T13_HDR + ol, &fl) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, T13_TAG,
	    rec + T13_HDR + n) == 1);
	EVP_CIPHER_CTX_free(ctx);
}

static void
evp_seal_rec(const uint8_t *plain, size_t n, uint64_t seq, uint8_t *rec)
{
	evp_seal_outer(plain, n, seq, T13_CT_APPDATA, rec);
}

/*
 * Records sealed and opened at every sequence number of seqs, short
 * (gcm.c where the CPU has it) and long (OpenSSL), agree with OpenSSL
 * given the nonce of RFC 8446 5.3; each direction counts its own.
 */
static void
check_records(void)
{
	static uint8_t		 plain[2001], rec[2100], out[2100];
	static const size_t	 lens[] = { 5, 2000 };
	struct wsg_tls13	 t;
	size_t			 i, j, n, clen;

	for (i = 0; i < sizeof(plain); i++)
		plain[i] = (uint8_t)(i * 7 + 1);
	new_session(&t);
	for (i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
		for (j = 0; j < 2; j++) {
			n = lens[j];
			clen = n + 1 + T13_TAG;
			t.t_wr.d_seq = seqs[i];
			t.t_rd.d_seq = 5;
			CHECK_INT(t13_seal(&t, T13_CT_APPDATA, NULL, plain, n,
			    rec), 0);
			CHECK_INT(t.t_wr.d_seq, seqs[i] + 1);
			CHECK_INT(t.t_rd.d_seq, 5);
			CHECK(rec[0] == 23 && rec[1] == 3 && rec[2] == 3 &&
			    rec[3] == (uint8_t)(clen >> 8) &&
			    rec[4] == (uint8_t)clen);
			memset(out, 0, sizeof(out));
			if (evp_open_rec(rec, clen, seqs[i], out) != 0)
				fprintf(stderr, "seq %llx len %zu: sealed "
				    "wrong\n", (unsigned long long)seqs[i], n);
			CHECK(memcmp(out, plain, n) == 0 &&
			    out[n] == T13_CT_APPDATA);

			plain[n] = T13_CT_APPDATA;
			evp_seal_rec(plain, n + 1, seqs[i], rec);
			plain[n] = (uint8_t)(n * 7 + 1);
			t.t_rd.d_seq = seqs[i];
			t.t_wr.d_seq = 9;
			memset(out, 0, sizeof(out));
			if (t13_open(&t, rec, clen, out) != 0)
				fprintf(stderr, "seq %llx len %zu: not "
				    "opened\n", (unsigned long long)seqs[i], n);
			CHECK(memcmp(out, plain, n) == 0 &&
			    out[n] == T13_CT_APPDATA);
			CHECK_INT(t.t_rd.d_seq, seqs[i] + 1);
			CHECK_INT(t.t_wr.d_seq, 9);
		}
	}
	/* Record 2^64 - 1 is never used: the number would wrap after it. */
	t.t_wr.d_seq = t.t_rd.d_seq = UINT64_MAX;
	CHECK_INT(t13_seal(&t, T13_CT_APPDATA, NULL, plain, 5, rec), -1);
	evp_seal_rec(plain, 6, UINT64_MAX, rec);
	CHECK_INT(t13_open(&t, rec, 6 + T13_TAG, out), -1);
	CHECK(t.t_wr.d_seq == UINT64_MAX && t.t_rd.d_seq == UINT64_MAX);
	t13_forget(&t.t_rd, 0);
	t13_forget(&t.t_wr, 1);
}

/*
 * What a client's record or hang-up costs, read from a socket: the error,
 * its reason, the application data delivered, and the alert the client
 * gets, sealed as our record 0 (none when want_alert is 0).
 */
static void
read_fails(const uint8_t *rec, size_t len, int hangup, int reason,
    int want_alert)
{
	struct wsg_tls13	 t;
	struct evbuffer		*in = evbuffer_new();
	unsigned long		 err = 0;
	uint8_t			 back[64], out[64];
	size_t			 got = 0;
	ssize_t			 n;
	int			 sv[2], i, rc;

	new_session(&t);
	if (in == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1) {
		CHECK(!"set-up");
		return;
	}
	/* Never blocks: a record let through must not hang the test. */
	CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);
	if (len > 0)
		CHECK_INT(write(sv[1], rec, len), len);
	if (hangup)
		CHECK_INT(shutdown(sv[1], SHUT_WR), 0);
	/* A record cut short waits for the rest, then meets the end. */
	for (i = 0, rc = 0; i < 4 && rc == 0; i++)
		rc = tls13_read(&t, sv[0], in, 0, &got, &err);
	CHECK_INT(rc, TLS13_ERROR);
	CHECK_INT(ERR_GET_REASON(err), reason);
	CHECK_INT(got, 0);
	CHECK_INT(evbuffer_get_length(in), 0);
	(void)shutdown(sv[0], SHUT_WR);
	n = read(sv[1], back, sizeof(back));
	if (want_alert) {
		/* Level 2, the description, the inner type 21. */
		CHECK_INT(n, T13_HDR + 3 + T13_TAG);
		CHECK(n == T13_HDR + 3 + T13_TAG &&
		    evp_open_rec(back, 3 + T13_TAG, 0, out) == 0 &&
		    out[0] == 2 && out[1] == want_alert &&
		    out[2] == T13_CT_ALERT);
	} else
		CHECK_INT(n, 0);
	close(sv[0]);
	close(sv[1]);
	evbuffer_free(in);
	free(t.t_in);
	t13_forget(&t.t_rd, 0);
	t13_forget(&t.t_wr, 1);
}

/*
 * After the handshake every record says application_data outside (RFC
 * 8446 5.2): one that says handshake, alert or change_cipher_spec is
 * refused with unexpected_message, though its tag (over that header) is
 * right.  A hang-up without close_notify is an error, not an end (6.1),
 * and the client, gone, is sent nothing.
 */
static void
check_refused(void)
{
	static const uint8_t	 outer[] = { T13_CT_HANDSHAKE, T13_CT_ALERT,
				    20 };
	uint8_t			 plain[6] = "hello", rec[64];
	size_t			 i;

	plain[5] = T13_CT_APPDATA;
	for (i = 0; i < sizeof(outer); i++) {
		evp_seal_outer(plain, sizeof(plain), 0, outer[i], rec);
		read_fails(rec, T13_HDR + sizeof(plain) + T13_TAG, 0,
		    SSL_R_UNEXPECTED_RECORD, T13_AD_UNEXPECTED);
	}
	read_fails(NULL, 0, 1, SSL_R_UNEXPECTED_EOF_WHILE_READING, 0);
	/* Cut off within a record. */
	evp_seal_rec(plain, sizeof(plain), 0, rec);
	read_fails(rec, 9, 1, SSL_R_UNEXPECTED_EOF_WHILE_READING, 0);
}

int
main(void)
{
	(void)pthread_once(&t13_once, t13_init);
	CHECK(t13_index != -1);
	check_schedule();
	check_nonces();
	check_records();
	check_refused();
	tls13_thread_done();
	return (unit_done("test_tls13_seq"));
}
