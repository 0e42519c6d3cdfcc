/*
 * tls.c's session ticket key ring, at chosen times: one key per hour
 * seals, each opens for three hours, names pick keys, old ones retire.
 * With a shared secret: keys derived as documented, the same in a fresh
 * ring (another gateway, a restart), the next hour's opening too, and a
 * new secret retiring every key.
 * And which first bytes of a client OpenSSL's handshake takes for
 * plaintext HTTP: those the gateway answers with a plaintext 400.
 */
#include "autoconf.h"

#include <stdint.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>

#include "tls.h"
#include "unit.h"

#define H	3600

struct key {
	unsigned char	name[TLS_TKEY_NAME];
	unsigned char	aes[TLS_TKEY_AES];
	unsigned char	hmac[TLS_TKEY_HMAC];
};

/* The key sealing at now. */
static struct key
sealing(int64_t now)
{
	struct key	k;

	memset(&k, 0, sizeof(k));
	CHECK_INT(tls_tkey_seal(now, k.name, k.aes, k.hmac), 1);
	return (k);
}

/* Whether k opens at now: -1 no, 1 as the current key, 0 as an older. */
static int
opens(const struct key *k, int64_t now)
{
	unsigned char	aes[TLS_TKEY_AES], hmac[TLS_TKEY_HMAC];
	int		current = -1;

	if (!tls_tkey_open(now, k->name, aes, hmac, &current))
		return (-1);
	/* the secrets that open are the ones that sealed */
	CHECK(memcmp(aes, k->aes, sizeof(aes)) == 0);
	CHECK(memcmp(hmac, k->hmac, sizeof(hmac)) == 0);
	return (current);
}

static int
same(const struct key *a, const struct key *b)
{
	return (memcmp(a, b, sizeof(*a)) == 0);
}

/*
 * The key of hour period from secret, computed here as wsgate.yaml(5)
 * states it: HMAC-SHA256(secret, "wsgate ticket key 1" || period as 8
 * bytes big-endian || 'n', 'a', 'h'), cut to each part's length.
 */
static struct key
derived(const unsigned char *secret, size_t len, int64_t period)
{
	static const char	 label[] = "wsgate ticket key 1";
	unsigned char		 msg[sizeof(label) - 1 + 9], md[32];
	unsigned char		*out[3];
	size_t			 n[3], i;
	unsigned int		 mdlen;
	struct key		 k;

	out[0] = k.name;
	n[0] = sizeof(k.name);
	out[1] = k.aes;
	n[1] = sizeof(k.aes);
	out[2] = k.hmac;
	n[2] = sizeof(k.hmac);
	memcpy(msg, label, sizeof(label) - 1);
	for (i = 0; i < 8; i++)
		msg[sizeof(label) - 1 + i] =
		    (unsigned char)((uint64_t)period >> (56 - 8 * i));
	for (i = 0; i < 3; i++) {
		msg[sizeof(msg) - 1] = (unsigned char)"nah"[i];
		CHECK(HMAC(EVP_sha256(), secret, (int)len, msg, sizeof(msg),
		    md, &mdlen) != NULL);
		memcpy(out[i], md, n[i]);
	}
	return (k);
}

static void
shared_secret(void)
{
	unsigned char	 s1[48], s2[48], big[TLS_TKEY_SECRET_MAX + 1];
	struct key	 r, k, k2, next, x;
	size_t		 i;

	for (i = 0; i < sizeof(s1); i++) {
		s1[i] = (unsigned char)(i * 7 + 1);
		s2[i] = (unsigned char)(i * 7 + 2);
	}
	memset(big, 0x5a, sizeof(big));
	CHECK_INT(tls_tkey_set_secret(s1, TLS_TKEY_SECRET_MIN - 1), -1);
	CHECK_INT(tls_tkey_set_secret(big, sizeof(big)), -1);

	/* A key of the random ring stops opening once a secret is set. */
	r = sealing(100 * H + 1);
	CHECK_INT(opens(&r, 100 * H + 2), 1);
	CHECK_INT(tls_tkey_set_secret(s1, sizeof(s1)), 0);
	CHECK_INT(opens(&r, 100 * H + 3), -1);

	/* The sealing key is the documented derivation of this hour. */
	k = sealing(100 * H + 5);
	x = derived(s1, sizeof(s1), 100);
	CHECK(same(&k, &x));
	CHECK_INT(opens(&k, 100 * H + 6), 1);
	k2 = sealing(101 * H - 1);
	CHECK(same(&k, &k2));

	/*
	 * Another gateway with the same secret (here: the ring made afresh
	 * after another secret) seals with the same key and opens this one.
	 */
	CHECK_INT(tls_tkey_set_secret(s2, sizeof(s2)), 0);
	CHECK_INT(opens(&k, 100 * H + 7), -1);
	x = sealing(100 * H + 7);
	CHECK(memcmp(x.name, k.name, sizeof(k.name)) != 0);
	CHECK(memcmp(x.aes, k.aes, sizeof(k.aes)) != 0);
	CHECK_INT(tls_tkey_set_secret(s1, sizeof(s1)), 0);
	CHECK_INT(opens(&k, 100 * H + 8), 1);
	k2 = sealing(100 * H + 8);
	CHECK(same(&k, &k2));

	/*
	 * A gateway whose clock is behind opens the next hour's tickets,
	 * as current, but seals with its own hour's key.
	 */
	next = derived(s1, sizeof(s1), 101);
	CHECK_INT(opens(&next, 101 * H - 20), 1);
	k2 = sealing(101 * H - 20);
	CHECK(same(&k, &k2));
	/* Two hours ahead is too far. */
	x = derived(s1, sizeof(s1), 102);
	CHECK_INT(opens(&x, 101 * H - 20), -1);

	/* A key opens for three hours from the start of its own, then not. */
	CHECK_INT(opens(&k, 101 * H), 0);
	CHECK_INT(opens(&k, 103 * H - 1), 0);
	CHECK_INT(opens(&k, 103 * H), -1);
	/* Even when nothing was sealed in between. */
	CHECK_INT(opens(&k, 140 * H), -1);
	x = derived(s1, sizeof(s1), 140);
	CHECK_INT(opens(&x, 140 * H + 1), 1);

	/* Without the secret again: random keys; derived ones retire. */
	CHECK_INT(tls_tkey_set_secret(NULL, 0), 0);
	CHECK_INT(opens(&x, 140 * H + 2), -1);
	r = sealing(140 * H + 2);
	CHECK(!same(&r, &x));
	CHECK_INT(opens(&r, 140 * H + 3), 1);

	/*
	 * A secret set and taken away again within the hour: the random
	 * key of before opens nothing, as none of an old secret's does.
	 */
	CHECK_INT(tls_tkey_set_secret(s1, sizeof(s1)), 0);
	CHECK_INT(tls_tkey_set_secret(NULL, 0), 0);
	CHECK_INT(opens(&r, 140 * H + 4), -1);
	k = sealing(140 * H + 5);
	CHECK(!same(&k, &r));
}

/*
 * A server handshake fed these first bytes: 1 when it failed for
 * plaintext HTTP, having sent nothing back; 0 otherwise.
 */
static int
first_bytes(const char *bytes)
{
	SSL_CTX	*ctx;
	SSL	*ssl;
	BIO	*in, *out;
	int	 r;

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_server_method());
	ssl = ctx != NULL ? SSL_new(ctx) : NULL;
	in = BIO_new(BIO_s_mem());
	out = BIO_new(BIO_s_mem());
	if (ssl == NULL || in == NULL || out == NULL) {
		CHECK(!"cannot set up a server handshake");
		return (-1);
	}
	BIO_write(in, bytes, strlen(bytes));
	SSL_set_bio(ssl, in, out);
	CHECK(SSL_accept(ssl) <= 0);
	r = tls_plain_http(ERR_peek_error());
	if (r)
		CHECK_INT(BIO_pending(out), 0);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return (r);
}

static void
plain_http(void)
{
	CHECK_INT(first_bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 1);
	CHECK_INT(first_bytes("POST /x HTTP/1.1\r\n"), 1);
	CHECK_INT(first_bytes("HEAD / HTTP/1.0\r\n\r\n"), 1);
	CHECK_INT(first_bytes("PUT /x HTTP/1.1\r\n"), 1);
	CHECK_INT(first_bytes("CONNECT a.example:443 HTTP/1.1\r\n"), 1);
	/* Other bytes, a method in lower case, half a method: not HTTP. */
	CHECK_INT(first_bytes("get / HTTP/1.1\r\n\r\n"), 0);
	CHECK_INT(first_bytes("HELLO THERE\r\n"), 0);
	CHECK_INT(first_bytes("OPTIONS * HTTP/1.1\r\n"), 0);
	CHECK_INT(first_bytes("GET"), 0);
	CHECK_INT(first_bytes("\x16\x03\x01\x00\x05hello"), 0);
	CHECK_INT(tls_plain_http(0), 0);
}

static int
line(const char *s)
{
	return (tls_plain_request_line((const unsigned char *)s, strlen(s)));
}

static void
plain_request_line(void)
{
	/* Any method in capitals, a space and a target. */
	CHECK_INT(line("OPTIONS * HTTP/1.1\r\n"), 1);
	CHECK_INT(line("OPTIONS /echo HTTP/1.1\r\n"), 1);
	CHECK_INT(line("DELETE /x HTTP/1.1\r\n"), 1);
	CHECK_INT(line("PATCH /"), 1);
	CHECK_INT(line("GET /"), 1);
	CHECK_INT(line("M-SEARCH * HTTP/1.1\r\n"), 1);
	CHECK_INT(line("PROPFIND http://a/ HTTP/1.1\r\n"), 1);
	CHECK_INT(line("GET HTTPS://a/ HTTP/1.1\r\n"), 1);
	/* Fewer bytes than a record header, so far a request line: wait. */
	CHECK_INT(line("O"), -1);
	CHECK_INT(line("GET"), -1);
	CHECK_INT(line("GET "), -1);
	/* As many as a record header, and still undecided: not HTTP. */
	CHECK_INT(line("OPTIO"), 0);
	CHECK_INT(line("OPTIONS"), 0);
	CHECK_INT(line("OPTIONS "), 0);
	CHECK_INT(line("GET http"), 0);
	/* Garbage, a TLS record, lower case, no space, no target. */
	CHECK_INT(line(""), 0);
	CHECK_INT(line("\x16\x03\x01\x00\x05hello"), 0);
	CHECK_INT(line("\x16"), 0);
	CHECK_INT(line("get / HTTP/1.1\r\n"), 0);
	CHECK_INT(line("-GET /"), 0);
	CHECK_INT(line("OPTIONS/ HTTP/1.1\r\n"), 0);
	CHECK_INT(line("HELLO THERE\r\n"), 0);
	CHECK_INT(line("GET  / HTTP/1.1\r\n"), 0);
	CHECK_INT(line("GET ftp://a/ HTTP/1.1\r\n"), 0);
	CHECK_INT(line("ABCDEFGHIJKLMNOPQRSTUVWXYZ /"), 0);
	CHECK_INT(line("OPT\x01\x02"), 0);
	CHECK_INT(line("GET http\x1a//a/ HTTP/1.1\r\n"), 0);
	CHECK_INT(line("GET hTtP://a/ HTTP/1.1\r\n"), 1);
}

/*
 * The reasons the access log gives for TLS errors: OpenSSL's words where
 * it has some, else the number of an alert the client sent (the reason
 * of tls13.c's fatal alerts read) or of the error itself.
 */
static void
reasons(void)
{
	char	buf[64];

	(void)OPENSSL_init_ssl(0, NULL);
	CHECK_STR(tls_reason(ERR_PACK(ERR_LIB_SSL, 0,
	    SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC), buf, sizeof(buf)),
	    "decryption failed or bad record mac");
	CHECK_STR(tls_reason(ERR_PACK(ERR_LIB_SSL, 0,
	    SSL_AD_REASON_OFFSET + SSL_AD_HANDSHAKE_FAILURE), buf,
	    sizeof(buf)), "sslv3 alert handshake failure");
	CHECK_STR(tls_reason(ERR_PACK(ERR_LIB_SSL, 0, SSL_AD_REASON_OFFSET),
	    buf, sizeof(buf)), "alert number 0");
	CHECK_STR(tls_reason(ERR_PACK(ERR_LIB_SSL, 0,
	    SSL_AD_REASON_OFFSET + 254), buf, sizeof(buf)), "alert number 254");
	CHECK_STR(tls_reason(ERR_PACK(ERR_LIB_SSL, 0,
	    SSL_AD_REASON_OFFSET + 255), buf, sizeof(buf)), "alert number 255");
	/* Past the alerts' range, or another library's: no alert. */
	CHECK_STR(tls_reason(ERR_PACK(ERR_LIB_SSL, 0,
	    SSL_AD_REASON_OFFSET + 256), buf, sizeof(buf)), "error 1256");
	CHECK_STR(tls_reason(ERR_PACK(ERR_LIB_SYS, 0,
	    SSL_AD_REASON_OFFSET + 20), buf, sizeof(buf)), "error 1020");
	CHECK_STR(tls_reason(ERR_PACK(ERR_LIB_SSL, 0, 4000), buf, sizeof(buf)),
	    "error 4000");
}

int
main(void)
{
	struct key	a, a2, b, c, d, e, none;

	/* One key for the whole hour; it opens what it seals. */
	a = sealing(10 * H + 5);
	a2 = sealing(11 * H - 1);
	CHECK(same(&a, &a2));
	CHECK(memcmp(a.aes, a.hmac, sizeof(a.aes)) != 0);
	CHECK_INT(opens(&a, 10 * H + 6), 1);

	/* The next hour: a new key seals, the old one still opens. */
	b = sealing(11 * H);
	CHECK(memcmp(a.name, b.name, sizeof(a.name)) != 0);
	CHECK(memcmp(a.aes, b.aes, sizeof(a.aes)) != 0);
	CHECK(memcmp(a.hmac, b.hmac, sizeof(a.hmac)) != 0);
	CHECK_INT(opens(&b, 11 * H), 1);
	CHECK_INT(opens(&a, 11 * H), 0);
	c = sealing(12 * H + 30);
	CHECK_INT(opens(&a, 12 * H + 30), 0);
	CHECK_INT(opens(&b, 12 * H + 30), 0);
	CHECK_INT(opens(&c, 12 * H + 30), 1);

	/*
	 * Three hours after its own began, a key opens nothing, whether or
	 * not a new one has been made yet: a ticket sealed at 10:59 lived
	 * until 12:59 at most.
	 */
	CHECK_INT(opens(&a, 13 * H), -1);
	CHECK_INT(opens(&b, 13 * H), 0);
	d = sealing(13 * H);
	CHECK_INT(opens(&a, 13 * H), -1);
	CHECK_INT(opens(&b, 13 * H + 1), 0);
	CHECK_INT(opens(&c, 13 * H + 1), 0);
	CHECK_INT(opens(&d, 13 * H + 1), 1);

	/* After a long quiet spell, every older key has retired. */
	e = sealing(40 * H);
	CHECK_INT(opens(&e, 40 * H), 1);
	CHECK_INT(opens(&d, 40 * H), -1);
	CHECK_INT(opens(&c, 40 * H), -1);
	CHECK_INT(opens(&b, 40 * H), -1);

	/* A name never made opens nothing. */
	memset(&none, 0, sizeof(none));
	CHECK_INT(opens(&none, 40 * H), -1);

	shared_secret();
	plain_http();
	plain_request_line();
	reasons();
	return (unit_done("test_tls"));
}
