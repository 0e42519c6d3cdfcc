/*
 * Unit tests for the JWT verifier.  Keys are generated here, public halves
 * written to temporary PEM files for jwt_key_load(), and tokens signed here
 * with EVP, so the program needs nothing from outside.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "jwt.h"
#include "unit.h"

#define NOW		INT64_C(1700000000)
#define TOK_SLOTS	8
#define TOK_SIZE	(2 * WSG_JWT_MAX_TOKEN)
#define SIG_MAX		1024
#define ALL_ALGS	((1u << WSG_JWT_NALGS) - 1)

/* A signing key: a private key or an HMAC secret. */
struct tkey {
	EVP_PKEY	*pkey;
	const uint8_t	*secret;
	size_t		 secretlen;
};

static const char	 test_secret[] =
			    "0123456789abcdef0123456789abcdef-wsgate";
static char		 tok_buf[TOK_SLOTS][TOK_SIZE];
static int		 tok_next;
static char		 tmp_paths[48][64];
static int		 tmp_n;

static const char *const alg_names[WSG_JWT_NALGS] = {
	"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256",
	"ES256", "ES384", "EdDSA"
};

/* Unpadded base64url of n bytes, appended to dst at *off. */
static void
b64url_put(char *dst, size_t *off, const uint8_t *p, size_t n)
{
	static const char	 a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "abcdefghijklmnopqrstuvwxyz0123456789-_";
	uint32_t		 v;
	size_t			 i;

	for (i = 0; i + 2 < n; i += 3) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		dst[(*off)++] = a[v >> 18];
		dst[(*off)++] = a[(v >> 12) & 63];
		dst[(*off)++] = a[(v >> 6) & 63];
		dst[(*off)++] = a[v & 63];
	}
	if (n - i == 1) {
		v = (uint32_t)p[i] << 16;
		dst[(*off)++] = a[v >> 18];
		dst[(*off)++] = a[(v >> 12) & 63];
	} else if (n - i == 2) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		dst[(*off)++] = a[v >> 18];
		dst[(*off)++] = a[(v >> 12) & 63];
		dst[(*off)++] = a[(v >> 6) & 63];
	}
	dst[*off] = '\0';
}

/* Digest of a JWS algorithm; NULL for EdDSA. */
static const EVP_MD *
alg_md(int alg)
{
	switch (alg) {
	case WSG_JWT_HS256:
	case WSG_JWT_RS256:
	case WSG_JWT_PS256:
	case WSG_JWT_ES256:
		return EVP_sha256();
	case WSG_JWT_HS384:
	case WSG_JWT_RS384:
	case WSG_JWT_ES384:
		return EVP_sha384();
	case WSG_JWT_HS512:
	case WSG_JWT_RS512:
		return EVP_sha512();
	default:
		return NULL;
	}
}

/* Sign msg as a JWS of this algorithm; the signature's length or 0. */
static size_t
sign(int alg, const struct tkey *k, const uint8_t *msg, size_t len,
    uint8_t *sig, int pss_salt)
{
	EVP_MD_CTX	*ctx;
	EVP_PKEY_CTX	*pctx = NULL;
	ECDSA_SIG	*es;
	const BIGNUM	*r, *s;
	const uint8_t	*dp;
	uint8_t		 der[SIG_MAX];
	unsigned int	 hlen = 0;
	size_t		 n = SIG_MAX, coord;

	if (alg <= WSG_JWT_HS512) {
		HMAC(alg_md(alg), k->secret, (int)k->secretlen, msg, len, sig,
		    &hlen);
		return hlen;
	}
	ctx = EVP_MD_CTX_new();
	if (EVP_DigestSignInit(ctx, &pctx, alg_md(alg), NULL, k->pkey) != 1)
		abort();
	if (alg == WSG_JWT_PS256) {
		EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
		EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, pss_salt);
		EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256());
	}
	if (EVP_DigestSign(ctx, alg == WSG_JWT_ES256 || alg == WSG_JWT_ES384 ?
	    der : sig, &n, msg, len) != 1)
		abort();
	EVP_MD_CTX_free(ctx);
	if (alg != WSG_JWT_ES256 && alg != WSG_JWT_ES384)
		return n;
	coord = alg == WSG_JWT_ES256 ? 32 : 48;
	dp = der;
	es = d2i_ECDSA_SIG(NULL, &dp, (long)n);
	ECDSA_SIG_get0(es, &r, &s);
	BN_bn2binpad(r, sig, (int)coord);
	BN_bn2binpad(s, sig + coord, (int)coord);
	ECDSA_SIG_free(es);
	return 2 * coord;
}

/*
 * Build "b64(hdr).b64(pay).b64(sig)" in a rotating static slot, signed
 * with alg whatever the header says; alg < 0: "b64(hdr).b64(pay)" only.
 */
static const char *
tok_full(const char *hdr, const char *pay, int alg, const struct tkey *k,
    int pss_salt)
{
	uint8_t	 sig[SIG_MAX];
	char	*t = tok_buf[tok_next++ % TOK_SLOTS];
	size_t	 off = 0, n;

	b64url_put(t, &off, (const uint8_t *)hdr, strlen(hdr));
	t[off++] = '.';
	b64url_put(t, &off, (const uint8_t *)pay, strlen(pay));
	if (alg < 0)
		return t;
	n = sign(alg, k, (const uint8_t *)t, off, sig, pss_salt);
	t[off++] = '.';
	b64url_put(t, &off, sig, n);
	return t;
}

/* A token with the usual header for alg, signed with alg. */
static const char *
tok(int alg, const struct tkey *k, const char *pay)
{
	char	hdr[64];

	snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\"}",
	    alg_names[alg]);
	return tok_full(hdr, pay, alg, k, RSA_PSS_SALTLEN_DIGEST);
}

/* A policy with no claim checks. */
static struct wsg_jwt_policy
pol(unsigned int algs, const struct wsg_jwt_key *key)
{
	struct wsg_jwt_policy	p;

	memset(&p, 0, sizeof(p));
	p.jp_algs = algs;
	p.jp_key = key;
	return p;
}

/* Verify at NOW without keeping claims. */
static enum wsg_jwt_result
vf(const char *t, const struct wsg_jwt_policy *p)
{
	return jwt_verify(t, strlen(t), p, NOW, NULL);
}

/* Write bytes to a new temporary file; its path. */
static const char *
tmp_write(const void *p, size_t n)
{
	char	*path = tmp_paths[tmp_n++];
	int	 fd;

	snprintf(path, sizeof(tmp_paths[0]), "/tmp/test_jwt.XXXXXX");
	if ((fd = mkstemp(path)) == -1 || write(fd, p, n) != (ssize_t)n)
		abort();
	close(fd);
	return path;
}

/* Write a key's public half as PEM to a temporary file. */
static const char *
tmp_pubkey(EVP_PKEY *pkey)
{
	BIO		*b = BIO_new(BIO_s_mem());
	const char	*path;
	char		*data;
	long		 n;

	PEM_write_bio_PUBKEY(b, pkey);
	n = BIO_get_mem_data(b, &data);
	path = tmp_write(data, (size_t)n);
	BIO_free(b);
	return path;
}

/* Write a self-signed certificate for a key to a temporary file. */
static const char *
tmp_cert(EVP_PKEY *pkey)
{
	X509		*x = X509_new();
	BIO		*b = BIO_new(BIO_s_mem());
	const char	*path;
	char		*data;
	long		 n;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pkey);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN",
	    MBSTRING_ASC, (const unsigned char *)"test", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	if (X509_sign(x, pkey, EVP_sha256()) == 0)
		abort();
	PEM_write_bio_X509(b, x);
	n = BIO_get_mem_data(b, &data);
	path = tmp_write(data, (size_t)n);
	BIO_free(b);
	X509_free(x);
	return path;
}

/* Two temporary files one after the other in a new one; its path. */
static const char *
tmp_cat(const char *a, const char *b)
{
	char	 buf[16384];
	size_t	 n = 0, r;
	FILE	*f;
	int	 i;

	for (i = 0; i < 2; i++) {
		if ((f = fopen(i == 0 ? a : b, "r")) == NULL)
			abort();
		r = fread(buf + n, 1, sizeof(buf) - n, f);
		fclose(f);
		n += r;
	}
	return tmp_write(buf, n);
}

/* Load a key file, expecting success. */
static struct wsg_jwt_key *
load_ok(const char *path)
{
	struct wsg_jwt_key	*k;
	char			 err[256] = "";

	k = jwt_key_load(path, err, sizeof(err));
	CHECK(k != NULL);
	if (k == NULL) {
		fprintf(stderr, "jwt_key_load: %s\n", err);
		exit(1);
	}
	return k;
}

/* Load a key file, expecting a failure whose message holds want. */
static void
load_fails(const char *path, const char *want)
{
	struct wsg_jwt_key	*k;
	char			 err[256] = "";

	k = jwt_key_load(path, err, sizeof(err));
	CHECK(k == NULL);
	CHECK(strstr(err, want) != NULL);
	if (strstr(err, want) == NULL)
		fprintf(stderr, "  error was \"%s\", wanted \"%s\"\n", err,
		    want);
	jwt_key_free(k);
}

/* Algorithm names both ways, "none" never, and result strings. */
static void
test_alg_names(void)
{
	int	i;

	for (i = 0; i < WSG_JWT_NALGS; i++) {
		CHECK_INT(jwt_alg_parse(alg_names[i]), i);
		CHECK_STR(jwt_alg_name((enum wsg_jwt_alg)i), alg_names[i]);
	}
	CHECK_INT(jwt_alg_parse("none"), -1);
	CHECK_INT(jwt_alg_parse("None"), -1);
	CHECK_INT(jwt_alg_parse("NONE"), -1);
	CHECK_INT(jwt_alg_parse("nOnE"), -1);
	CHECK_INT(jwt_alg_parse("rs256"), -1);
	CHECK_INT(jwt_alg_parse("RS256 "), -1);
	CHECK_INT(jwt_alg_parse("PS384"), -1);
	CHECK_INT(jwt_alg_parse("ES512"), -1);
	CHECK_INT(jwt_alg_parse(""), -1);
	CHECK_INT(jwt_alg_parse(NULL), -1);
	CHECK(jwt_alg_name(WSG_JWT_NALGS) == NULL);
	CHECK_STR(jwt_result_str(WSG_JWT_BAD_SIGNATURE),
	    "signature does not verify");
	CHECK_STR(jwt_result_str(WSG_JWT_EXPIRED), "token expired");
	for (i = WSG_JWT_OK; i <= WSG_JWT_NOMEM; i++)
		CHECK(strcmp(jwt_result_str((enum wsg_jwt_result)i),
		    "unknown result") != 0);
	CHECK_STR(jwt_result_str((enum wsg_jwt_result)99), "unknown result");
}

/* The strict base64url decoder. */
static void
test_b64url(void)
{
	uint8_t	out[16];
	size_t	n;

	CHECK_INT(jwt_b64url_decode("", 0, out, sizeof(out), &n), 0);
	CHECK_INT(n, 0);
	CHECK_INT(jwt_b64url_decode("QUJD", 4, out, sizeof(out), &n), 0);
	CHECK_INT(n, 3);
	CHECK(memcmp(out, "ABC", 3) == 0);
	CHECK_INT(jwt_b64url_decode("QQ", 2, out, sizeof(out), &n), 0);
	CHECK_INT(n, 1);
	CHECK_INT(out[0], 'A');
	CHECK_INT(jwt_b64url_decode("QUI", 3, out, sizeof(out), &n), 0);
	CHECK_INT(n, 2);
	CHECK_INT(jwt_b64url_decode("-_8", 3, out, sizeof(out), &n), 0);
	CHECK_INT(n, 2);
	CHECK_INT(out[0], 0xfb);
	CHECK_INT(out[1], 0xff);
	/* Standard alphabet, padding, whitespace, impossible length. */
	CHECK_INT(jwt_b64url_decode("+/8", 3, out, sizeof(out), &n), -1);
	CHECK_INT(jwt_b64url_decode("QQ==", 4, out, sizeof(out), &n), -1);
	CHECK_INT(jwt_b64url_decode("QQ=", 3, out, sizeof(out), &n), -1);
	CHECK_INT(jwt_b64url_decode("QU JD", 5, out, sizeof(out), &n), -1);
	CHECK_INT(jwt_b64url_decode("QUJD\n", 5, out, sizeof(out), &n), -1);
	CHECK_INT(jwt_b64url_decode("Q", 1, out, sizeof(out), &n), -1);
	CHECK_INT(jwt_b64url_decode("QUJDQ", 5, out, sizeof(out), &n), -1);
	/* Six spare bits of zero: no byte, yet still an impossible length. */
	CHECK_INT(jwt_b64url_decode("A", 1, out, sizeof(out), &n), -1);
	CHECK_INT(jwt_b64url_decode("QUJDA", 5, out, sizeof(out), &n), -1);
	CHECK_INT(jwt_b64url_decode("QU\0D", 4, out, sizeof(out), &n), -1);
	/* Non-zero leftover bits: a second spelling of the same bytes. */
	CHECK_INT(jwt_b64url_decode("QR", 2, out, sizeof(out), &n), -1);
	CHECK_INT(jwt_b64url_decode("QUJ", 3, out, sizeof(out), &n), -1);
	/* Output too small. */
	CHECK_INT(jwt_b64url_decode("QUJD", 4, out, 2, &n), -1);
	CHECK_INT(jwt_b64url_decode("QUJDQQ", 6, out, 3, &n), -1);
	CHECK_INT(jwt_b64url_decode("QUJDQQ", 6, out, 4, &n), 0);
	CHECK_INT(n, 4);
}

/* Key files: what loads, what is refused and with which message. */
static void
test_key_load(EVP_PKEY *rsa, EVP_PKEY *rsa1024, EVP_PKEY *p256)
{
	static const char	 badpem[] = "-----BEGIN PUBLIC KEY-----\n"
				    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
				    "-----END PUBLIC KEY-----\n";
	static const char	 jwk[] = "{\"kty\":\"RSA\",\"n\":\"AQAB0123456"
				    "789abcdef\",\"e\":\"AQAB\"}\n";
	struct wsg_jwt_key	*k;
	EVP_PKEY		*p521, *ed448;
	BIO			*b;
	char			*data, err[256];
	char			 secret[64];
	long			 n;

	load_fails(tmp_pubkey(rsa1024), "at least 2048");

	k = load_ok(tmp_cert(rsa));
	CHECK(jwt_key_allows(k, WSG_JWT_RS256));
	CHECK(!jwt_key_allows(k, WSG_JWT_HS256));
	jwt_key_free(k);

	/*
	 * One key: a second one would never be used (no kid selection), so
	 * tokens signed with it would all fail.  A certificate's chain may
	 * follow it: the first certificate's key is the key.
	 */
	load_fails(tmp_cat(tmp_pubkey(rsa), tmp_pubkey(p256)),
	    "more than one key");
	load_fails(tmp_cat(tmp_pubkey(rsa), tmp_cert(p256)),
	    "more than one key");
	load_fails(tmp_cat(tmp_cert(p256), tmp_pubkey(rsa)),
	    "more than one key");
	/* a second certificate that did not sign the first is a second key */
	load_fails(tmp_cat(tmp_cert(rsa), tmp_cert(p256)),
	    "more than one key");
	/* one whose key signed the first is its chain */
	k = load_ok(tmp_cat(tmp_cert(rsa), tmp_cert(rsa)));
	CHECK(jwt_key_allows(k, WSG_JWT_RS256));
	jwt_key_free(k);

	/* A private key is refused rather than quietly used. */
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(b, p256, NULL, NULL, 0, NULL, NULL);
	n = BIO_get_mem_data(b, &data);
	load_fails(tmp_write(data, (size_t)n), "private key");
	BIO_free(b);

	/* Broken PEM is an error, never an HMAC secret. */
	load_fails(tmp_write(badpem, strlen(badpem)), "no PEM public key");

	p521 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
	load_fails(tmp_pubkey(p521), "not supported");
	EVP_PKEY_free(p521);
	ed448 = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
	load_fails(tmp_pubkey(ed448), "unsupported key type");
	EVP_PKEY_free(ed448);

	/* Secrets: one trailing newline stripped, 32 bytes at least. */
	memset(secret, 'k', sizeof(secret));
	memcpy(secret + 31, "\r\n", 2);
	load_fails(tmp_write(secret, 33), "at least 32");
	memcpy(secret + 31, "\n", 1);
	load_fails(tmp_write(secret, 32), "at least 32");
	load_fails(tmp_write("", 0), "at least 32");
	load_fails(tmp_write(secret, 31), "HMAC secret is 31 bytes");
	load_fails(tmp_write(jwk, strlen(jwk)), "JWK");
	load_fails("/nonexistent/jwt.key", "/nonexistent/jwt.key");
	load_fails("/tmp", "not a regular file");

	k = jwt_key_load_mem(NULL, WSG_JWT_MAX_KEY_FILE + 1, err,
	    sizeof(err));
	CHECK(k == NULL);
	secret[31] = 'k';
	k = jwt_key_load_mem(secret, 32, err, sizeof(err));
	CHECK(k != NULL);
	CHECK_INT(jwt_key_secret_len(k), 32);
	jwt_key_free(k);
	jwt_key_free(NULL);
	CHECK_INT(jwt_key_secret_len(NULL), 0);

	/* RFC 7518 3.2: as long as the hash output; none for others. */
	CHECK_INT(jwt_alg_min_secret(WSG_JWT_HS256), 32);
	CHECK_INT(jwt_alg_min_secret(WSG_JWT_HS384), 48);
	CHECK_INT(jwt_alg_min_secret(WSG_JWT_HS512), 64);
	CHECK_INT(jwt_alg_min_secret(WSG_JWT_RS512), 0);
	CHECK_INT(jwt_alg_min_secret(WSG_JWT_EDDSA), 0);
	CHECK_INT(jwt_alg_min_secret(WSG_JWT_NALGS), 0);
}

/* Which algorithms each kind of key allows. */
static void
test_key_allows(struct wsg_jwt_key *const keys[5])
{
	static const unsigned int	want[5] = {
		(1u << WSG_JWT_HS256) | (1u << WSG_JWT_HS384) |
		    (1u << WSG_JWT_HS512),
		(1u << WSG_JWT_RS256) | (1u << WSG_JWT_RS384) |
		    (1u << WSG_JWT_RS512) | (1u << WSG_JWT_PS256),
		1u << WSG_JWT_ES256,
		1u << WSG_JWT_ES384,
		1u << WSG_JWT_EDDSA
	};
	unsigned int			got;
	int				i, a;

	for (i = 0; i < 5; i++) {
		got = 0;
		for (a = 0; a < WSG_JWT_NALGS; a++) {
			if (jwt_key_allows(keys[i], (enum wsg_jwt_alg)a))
				got |= 1u << a;
		}
		CHECK_INT(got, want[i]);
		CHECK(!jwt_key_allows(keys[i], WSG_JWT_NALGS));
		/* Public keys have no secret length. */
		if (i > 0)
			CHECK_INT(jwt_key_secret_len(keys[i]), 0);
	}
	CHECK(!jwt_key_allows(NULL, WSG_JWT_HS256));
}

/* A valid token of every algorithm, with its claims. */
static void
test_valid(struct wsg_jwt_key *const vkeys[WSG_JWT_NALGS],
    const struct tkey skeys[WSG_JWT_NALGS])
{
	struct wsg_jwt_policy	 p;
	struct wsg_jwt_claims	*c;
	const char		*t;
	int			 a;

	for (a = 0; a < WSG_JWT_NALGS; a++) {
		p = pol(ALL_ALGS, vkeys[a]);
		t = tok(a, &skeys[a], "{\"sub\":\"alice\",\"exp\":1700000100,"
		    "\"iat\":1699999990}");
		c = (struct wsg_jwt_claims *)1;
		CHECK_INT(jwt_verify(t, strlen(t), &p, NOW, &c), WSG_JWT_OK);
		if (c == NULL || c == (struct wsg_jwt_claims *)1) {
			fprintf(stderr, "  algorithm %s\n", alg_names[a]);
			continue;
		}
		CHECK_STR(jwt_claims_sub(c), "alice");
		CHECK_INT(jwt_claims_exp(c), 1700000100);
		jwt_claims_free(c);

		/* Only the token's own algorithm allowed. */
		p.jp_algs = 1u << a;
		CHECK_INT(vf(t, &p), WSG_JWT_OK);
		/* Everything but it. */
		p.jp_algs = ALL_ALGS & ~(1u << a);
		CHECK_INT(vf(t, &p), WSG_JWT_BAD_ALG);
	}
}

/* One flipped signature byte, or a changed payload, never verifies. */
static void
test_bad_signature(struct wsg_jwt_key *const vkeys[WSG_JWT_NALGS],
    const struct tkey skeys[WSG_JWT_NALGS])
{
	struct wsg_jwt_policy	 p;
	struct wsg_jwt_claims	*c;
	uint8_t			 raw[SIG_MAX];
	char			 t[TOK_SIZE], *sig, *pay, orig;
	size_t			 n, off;
	int			 a;

	for (a = 0; a < WSG_JWT_NALGS; a++) {
		p = pol(ALL_ALGS, vkeys[a]);
		snprintf(t, sizeof(t), "%s", tok(a, &skeys[a],
		    "{\"sub\":\"alice\"}"));
		sig = strrchr(t, '.') + 1;
		/* First character: changes the first byte, stays canonical. */
		orig = sig[0];
		sig[0] = orig == 'A' ? 'B' : 'A';
		c = (struct wsg_jwt_claims *)1;
		CHECK_INT(jwt_verify(t, strlen(t), &p, NOW, &c),
		    WSG_JWT_BAD_SIGNATURE);
		CHECK(c == NULL);
		sig[0] = orig;
		CHECK_INT(vf(t, &p), WSG_JWT_OK);

		/* Signature one byte short, one byte long, or empty. */
		CHECK_INT(jwt_b64url_decode(sig, strlen(sig), raw,
		    sizeof(raw) - 1, &n), 0);
		off = (size_t)(sig - t);
		b64url_put(t, &off, raw, n - 1);
		CHECK_INT(vf(t, &p), WSG_JWT_BAD_SIGNATURE);
		raw[n] = 0;
		off = (size_t)(sig - t);
		b64url_put(t, &off, raw, n + 1);
		CHECK_INT(vf(t, &p), WSG_JWT_BAD_SIGNATURE);
		*sig = '\0';
		CHECK_INT(vf(t, &p), WSG_JWT_BAD_SIGNATURE);

		/* Payload changed under the old signature. */
		snprintf(t, sizeof(t), "%s", tok(a, &skeys[a],
		    "{\"sub\":\"alice\"}"));
		pay = strchr(t, '.') + 1;
		/* "sub":"alice" -> "sub":"alicf" ... any change will do. */
		pay[4] = pay[4] == 'A' ? 'B' : 'A';
		CHECK_INT(vf(t, &p), WSG_JWT_BAD_SIGNATURE);
	}
}

/* Algorithm confusion and "none". */
static void
test_bad_alg(struct wsg_jwt_key *const vkeys[WSG_JWT_NALGS],
    const struct tkey skeys[WSG_JWT_NALGS], EVP_PKEY *rsa)
{
	struct wsg_jwt_policy	 p;
	struct tkey		 pemsecret;
	BIO			*b;
	const char		*t;
	char			*data, hs[TOK_SIZE];
	long			 n;

	/* HS256 signed with the RSA public key's PEM as the secret. */
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_PUBKEY(b, rsa);
	n = BIO_get_mem_data(b, &data);
	pemsecret.pkey = NULL;
	pemsecret.secret = (const uint8_t *)data;
	pemsecret.secretlen = (size_t)n;
	snprintf(hs, sizeof(hs), "%s", tok(WSG_JWT_HS256, &pemsecret,
	    "{\"sub\":\"mallory\"}"));
	p = pol(ALL_ALGS, vkeys[WSG_JWT_RS256]);
	CHECK_INT(vf(hs, &p), WSG_JWT_BAD_ALG);
	p.jp_algs = (1u << WSG_JWT_HS256) | (1u << WSG_JWT_RS256);
	CHECK_INT(vf(hs, &p), WSG_JWT_BAD_ALG);
	/* Without the trailing newline too. */
	pemsecret.secretlen--;
	snprintf(hs, sizeof(hs), "%s", tok(WSG_JWT_HS256, &pemsecret,
	    "{\"sub\":\"mallory\"}"));
	CHECK_INT(vf(hs, &p), WSG_JWT_BAD_ALG);
	BIO_free(b);

	/* ES256 token against a P-384 key, and the reverse. */
	p = pol((1u << WSG_JWT_ES256) | (1u << WSG_JWT_ES384),
	    vkeys[WSG_JWT_ES384]);
	t = tok(WSG_JWT_ES256, &skeys[WSG_JWT_ES256], "{}");
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_ALG);
	p.jp_key = vkeys[WSG_JWT_ES256];
	CHECK_INT(vf(t, &p), WSG_JWT_OK);
	t = tok(WSG_JWT_ES384, &skeys[WSG_JWT_ES384], "{}");
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_ALG);

	/* An EdDSA or ES256 token against an RSA key. */
	p = pol(ALL_ALGS, vkeys[WSG_JWT_RS256]);
	CHECK_INT(vf(tok(WSG_JWT_EDDSA, &skeys[WSG_JWT_EDDSA], "{}"), &p),
	    WSG_JWT_BAD_ALG);
	CHECK_INT(vf(tok(WSG_JWT_ES256, &skeys[WSG_JWT_ES256], "{}"), &p),
	    WSG_JWT_BAD_ALG);

	/* Not in the allow-list. */
	p = pol(1u << WSG_JWT_RS256, vkeys[WSG_JWT_RS256]);
	CHECK_INT(vf(tok(WSG_JWT_RS384, &skeys[WSG_JWT_RS384], "{}"), &p),
	    WSG_JWT_BAD_ALG);
	CHECK_INT(vf(tok(WSG_JWT_PS256, &skeys[WSG_JWT_PS256], "{}"), &p),
	    WSG_JWT_BAD_ALG);
	p.jp_algs = 0;
	CHECK_INT(vf(tok(WSG_JWT_RS256, &skeys[WSG_JWT_RS256], "{}"), &p),
	    WSG_JWT_BAD_ALG);

	/* PKCS#1 v1.5 signature under a PS256 header, and the reverse. */
	p = pol(ALL_ALGS, vkeys[WSG_JWT_RS256]);
	t = tok_full("{\"alg\":\"PS256\"}", "{}", WSG_JWT_RS256,
	    &skeys[WSG_JWT_RS256], 0);
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_SIGNATURE);
	t = tok_full("{\"alg\":\"RS256\"}", "{}", WSG_JWT_PS256,
	    &skeys[WSG_JWT_PS256], RSA_PSS_SALTLEN_DIGEST);
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_SIGNATURE);
	/* PSS with a salt other than the digest length. */
	t = tok_full("{\"alg\":\"PS256\"}", "{}", WSG_JWT_PS256,
	    &skeys[WSG_JWT_PS256], RSA_PSS_SALTLEN_MAX);
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_SIGNATURE);
	t = tok_full("{\"alg\":\"PS256\"}", "{}", WSG_JWT_PS256,
	    &skeys[WSG_JWT_PS256], 0);
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_SIGNATURE);
	t = tok_full("{\"alg\":\"PS256\"}", "{}", WSG_JWT_PS256,
	    &skeys[WSG_JWT_PS256], 32);
	CHECK_INT(vf(t, &p), WSG_JWT_OK);

	/* "none", however spelled, with or without a signature. */
	p = pol(ALL_ALGS, vkeys[WSG_JWT_HS256]);
	t = tok_full("{\"alg\":\"none\"}", "{\"sub\":\"x\"}", -1, NULL, 0);
	CHECK_INT(vf(t, &p), WSG_JWT_MALFORMED);	/* two parts */
	snprintf(hs, sizeof(hs), "%s.", t);
	CHECK_INT(vf(hs, &p), WSG_JWT_BAD_ALG);
	t = tok_full("{\"alg\":\"None\",\"typ\":\"JWT\"}", "{}", -1, NULL, 0);
	snprintf(hs, sizeof(hs), "%s.", t);
	CHECK_INT(vf(hs, &p), WSG_JWT_BAD_ALG);
	t = tok_full("{\"alg\":\"NONE\"}", "{}", -1, NULL, 0);
	snprintf(hs, sizeof(hs), "%s.AAAA", t);
	CHECK_INT(vf(hs, &p), WSG_JWT_BAD_ALG);
	t = tok_full("{\"alg\":\"none\"}", "{}", WSG_JWT_HS256,
	    &skeys[WSG_JWT_HS256], 0);
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_ALG);
	t = tok_full("{\"alg\":\"\"}", "{}", WSG_JWT_HS256,
	    &skeys[WSG_JWT_HS256], 0);
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_ALG);
	t = tok_full("{\"alg\":\"hs256\"}", "{}", WSG_JWT_HS256,
	    &skeys[WSG_JWT_HS256], 0);
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_ALG);
}

/* exp, nbf, iat, leeway and extreme values. */
static void
test_times(const struct wsg_jwt_key *k, const struct tkey *sk)
{
	struct wsg_jwt_policy	 p = pol(1u << WSG_JWT_HS256, k);
	struct wsg_jwt_claims	*c;
	const char		*t;

	t = tok(WSG_JWT_HS256, sk, "{\"exp\":1699999999}");
	CHECK_INT(vf(t, &p), WSG_JWT_EXPIRED);
	t = tok(WSG_JWT_HS256, sk, "{\"exp\":1700000000}");
	CHECK_INT(vf(t, &p), WSG_JWT_EXPIRED);		/* now == exp */
	t = tok(WSG_JWT_HS256, sk, "{\"exp\":1700000001}");
	CHECK_INT(vf(t, &p), WSG_JWT_OK);
	t = tok(WSG_JWT_HS256, sk, "{\"exp\":1699999980}");
	p.jp_leeway = 30;
	CHECK_INT(vf(t, &p), WSG_JWT_OK);		/* within leeway */
	t = tok(WSG_JWT_HS256, sk, "{\"exp\":1699999970}");
	CHECK_INT(vf(t, &p), WSG_JWT_EXPIRED);		/* exp + leeway */
	p.jp_leeway = 0;

	t = tok(WSG_JWT_HS256, sk, "{\"nbf\":1700000001}");
	CHECK_INT(vf(t, &p), WSG_JWT_NOT_YET_VALID);
	t = tok(WSG_JWT_HS256, sk, "{\"nbf\":1700000000}");
	CHECK_INT(vf(t, &p), WSG_JWT_OK);
	t = tok(WSG_JWT_HS256, sk, "{\"nbf\":1700000030}");
	p.jp_leeway = 30;
	CHECK_INT(vf(t, &p), WSG_JWT_OK);
	t = tok(WSG_JWT_HS256, sk, "{\"nbf\":1700000031}");
	CHECK_INT(vf(t, &p), WSG_JWT_NOT_YET_VALID);
	p.jp_leeway = 0;
	/* Expiry is reported before not-yet-valid. */
	t = tok(WSG_JWT_HS256, sk, "{\"nbf\":1800000000,\"exp\":1}");
	CHECK_INT(vf(t, &p), WSG_JWT_EXPIRED);

	/* Reals, rounded up. */
	t = tok(WSG_JWT_HS256, sk, "{\"exp\":1700000000.5}");
	c = NULL;
	CHECK_INT(jwt_verify(t, strlen(t), &p, NOW, &c), WSG_JWT_OK);
	CHECK_INT(jwt_claims_exp(c), 1700000001);
	jwt_claims_free(c);
	t = tok(WSG_JWT_HS256, sk, "{\"exp\":1.7e9}");
	CHECK_INT(vf(t, &p), WSG_JWT_EXPIRED);
	t = tok(WSG_JWT_HS256, sk, "{\"nbf\":1700000000.25}");
	CHECK_INT(vf(t, &p), WSG_JWT_NOT_YET_VALID);

	/* No exp at all. */
	t = tok(WSG_JWT_HS256, sk, "{\"sub\":\"a\"}");
	c = NULL;
	CHECK_INT(jwt_verify(t, strlen(t), &p, NOW, &c), WSG_JWT_OK);
	CHECK_INT(jwt_claims_exp(c), 0);
	jwt_claims_free(c);

	/* Extremes: no overflow anywhere (UBSan watches). */
	t = tok(WSG_JWT_HS256, sk, "{\"exp\":9223372036854775807}");
	p.jp_leeway = INT64_MAX;
	CHECK_INT(vf(t, &p), WSG_JWT_OK);
	CHECK_INT(jwt_verify(t, strlen(t), &p, INT64_MAX, NULL), WSG_JWT_OK);
	p.jp_leeway = -5;
	CHECK_INT(jwt_verify(t, strlen(t), &p, INT64_MIN, NULL), WSG_JWT_OK);
	p.jp_leeway = 0;
	t = tok(WSG_JWT_HS256, sk, "{\"exp\":-9223372036854775808}");
	CHECK_INT(vf(t, &p), WSG_JWT_EXPIRED);
	t = tok(WSG_JWT_HS256, sk, "{\"exp\":1e300}");
	CHECK_INT(vf(t, &p), WSG_JWT_OK);
	t = tok(WSG_JWT_HS256, sk, "{\"exp\":-1e300}");
	CHECK_INT(vf(t, &p), WSG_JWT_EXPIRED);
	t = tok(WSG_JWT_HS256, sk, "{\"nbf\":1e300}");
	CHECK_INT(vf(t, &p), WSG_JWT_NOT_YET_VALID);
	t = tok(WSG_JWT_HS256, sk, "{\"exp\":99999999999999999999}");
	CHECK_INT(vf(t, &p), WSG_JWT_MALFORMED);	/* jansson: too big */

	/* Wrong types: a result of their own, for the log. */
	t = tok(WSG_JWT_HS256, sk, "{\"exp\":\"1800000000\"}");
	CHECK_INT(vf(t, &p), WSG_JWT_CLAIM_TYPE);
	t = tok(WSG_JWT_HS256, sk, "{\"nbf\":null}");
	CHECK_INT(vf(t, &p), WSG_JWT_CLAIM_TYPE);
	t = tok(WSG_JWT_HS256, sk, "{\"iat\":true}");
	CHECK_INT(vf(t, &p), WSG_JWT_CLAIM_TYPE);
	t = tok(WSG_JWT_HS256, sk, "{\"exp\":[1800000000]}");
	CHECK_INT(vf(t, &p), WSG_JWT_CLAIM_TYPE);
	t = tok(WSG_JWT_HS256, sk, "{\"sub\":42}");
	CHECK_INT(vf(t, &p), WSG_JWT_CLAIM_TYPE);
	CHECK(strstr(jwt_result_str(WSG_JWT_CLAIM_TYPE), "sub: a string") !=
	    NULL);
	t = tok(WSG_JWT_HS256, sk, "{\"iat\":1800000000}");
	CHECK_INT(vf(t, &p), WSG_JWT_OK);	/* iat is not checked */
}

/* iss, aud and required claims. */
static void
test_claim_checks(const struct wsg_jwt_key *k, const struct tkey *sk)
{
	static const char *const	 req[] = { "sub", "tenant" };
	struct wsg_jwt_policy		 p = pol(1u << WSG_JWT_HS256, k);
	const char			*t;

	p.jp_issuer = "https://auth.example.com";
	t = tok(WSG_JWT_HS256, sk, "{\"iss\":\"https://auth.example.com\"}");
	CHECK_INT(vf(t, &p), WSG_JWT_OK);
	t = tok(WSG_JWT_HS256, sk, "{\"iss\":\"https://evil.example.com\"}");
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_ISSUER);
	t = tok(WSG_JWT_HS256, sk, "{\"iss\":\"https://auth.example.com/\"}");
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_ISSUER);
	t = tok(WSG_JWT_HS256, sk, "{\"sub\":\"a\"}");
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_ISSUER);
	t = tok(WSG_JWT_HS256, sk, "{\"iss\":[\"https://auth.example.com\"]}");
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_ISSUER);
	p.jp_issuer = NULL;
	t = tok(WSG_JWT_HS256, sk, "{\"iss\":7}");
	CHECK_INT(vf(t, &p), WSG_JWT_OK);

	p.jp_audience = "chat";
	t = tok(WSG_JWT_HS256, sk, "{\"aud\":\"chat\"}");
	CHECK_INT(vf(t, &p), WSG_JWT_OK);
	t = tok(WSG_JWT_HS256, sk, "{\"aud\":[\"billing\",\"chat\"]}");
	CHECK_INT(vf(t, &p), WSG_JWT_OK);
	t = tok(WSG_JWT_HS256, sk, "{\"aud\":\"billing\"}");
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_AUDIENCE);
	/* A string is compared whole too: neither a prefix nor empty. */
	t = tok(WSG_JWT_HS256, sk, "{\"aud\":\"cha\"}");
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_AUDIENCE);
	t = tok(WSG_JWT_HS256, sk, "{\"aud\":\"\"}");
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_AUDIENCE);
	t = tok(WSG_JWT_HS256, sk, "{\"aud\":\"chat2\"}");
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_AUDIENCE);
	t = tok(WSG_JWT_HS256, sk, "{\"aud\":[\"billing\",\"chat2\"]}");
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_AUDIENCE);
	/* An array entry is compared whole, not as a prefix of ours. */
	t = tok(WSG_JWT_HS256, sk, "{\"aud\":[\"billing\",\"cha\"]}");
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_AUDIENCE);
	t = tok(WSG_JWT_HS256, sk, "{\"aud\":[\"\"]}");
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_AUDIENCE);
	t = tok(WSG_JWT_HS256, sk, "{\"aud\":[]}");
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_AUDIENCE);
	t = tok(WSG_JWT_HS256, sk, "{\"aud\":[[\"chat\"]]}");
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_AUDIENCE);
	t = tok(WSG_JWT_HS256, sk, "{\"aud\":{\"chat\":1}}");
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_AUDIENCE);
	t = tok(WSG_JWT_HS256, sk, "{\"sub\":\"a\"}");
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_AUDIENCE);
	p.jp_audience = NULL;

	p.jp_required = req;
	p.jp_nrequired = 2;
	t = tok(WSG_JWT_HS256, sk, "{\"sub\":\"a\",\"tenant\":\"t1\"}");
	CHECK_INT(vf(t, &p), WSG_JWT_OK);
	t = tok(WSG_JWT_HS256, sk, "{\"sub\":\"a\"}");
	CHECK_INT(vf(t, &p), WSG_JWT_MISSING_CLAIM);
	t = tok(WSG_JWT_HS256, sk, "{\"tenant\":0}");
	CHECK_INT(vf(t, &p), WSG_JWT_MISSING_CLAIM);
	t = tok(WSG_JWT_HS256, sk, "{\"sub\":\"a\",\"tenant\":null}");
	CHECK_INT(vf(t, &p), WSG_JWT_MISSING_CLAIM);
	t = tok(WSG_JWT_HS256, sk, "{\"sub\":\"a\",\"Tenant\":1}");
	CHECK_INT(vf(t, &p), WSG_JWT_MISSING_CLAIM);
}

/* Shapes and encodings that must be refused before anything else. */
static void
test_malformed(const struct wsg_jwt_key *k, const struct tkey *sk)
{
	struct wsg_jwt_policy	 p = pol(1u << WSG_JWT_HS256, k);
	struct wsg_jwt_claims	*c;
	static char		 big[WSG_JWT_MAX_TOKEN + 64];
	char			 t[TOK_SIZE], pay[WSG_JWT_MAX_TOKEN];
	const char		*v;
	size_t			 n;
	int			 i, d, found = 0;

	v = tok(WSG_JWT_HS256, sk, "{\"sub\":\"a\"}");
	CHECK_INT(vf(v, &p), WSG_JWT_OK);

	/* Two parts, four parts, empty parts. */
	snprintf(t, sizeof(t), "%s", v);
	*strrchr(t, '.') = '\0';
	CHECK_INT(vf(t, &p), WSG_JWT_MALFORMED);
	snprintf(t, sizeof(t), "%s.", v);
	CHECK_INT(vf(t, &p), WSG_JWT_MALFORMED);
	snprintf(t, sizeof(t), "%s.AAAA", v);
	CHECK_INT(vf(t, &p), WSG_JWT_MALFORMED);
	CHECK_INT(vf("..", &p), WSG_JWT_MALFORMED);
	CHECK_INT(vf(".", &p), WSG_JWT_MALFORMED);
	CHECK_INT(vf("", &p), WSG_JWT_MALFORMED);
	CHECK_INT(vf("abc", &p), WSG_JWT_MALFORMED);
	CHECK_INT(jwt_verify(NULL, 0, &p, NOW, NULL), WSG_JWT_MALFORMED);
	CHECK_INT(jwt_verify(v, strlen(v), NULL, NOW, NULL),
	    WSG_JWT_MALFORMED);

	/* Bad base64url in each part: '+', '=' padding, space, NUL. */
	snprintf(t, sizeof(t), "%s", v);
	t[3] = '+';
	CHECK_INT(vf(t, &p), WSG_JWT_MALFORMED);
	snprintf(t, sizeof(t), "%s", v);
	*(strchr(t, '.') + 2) = '/';
	CHECK_INT(vf(t, &p), WSG_JWT_MALFORMED);
	snprintf(t, sizeof(t), "%s=", v);
	CHECK_INT(vf(t, &p), WSG_JWT_MALFORMED);
	snprintf(t, sizeof(t), " %s", v);
	CHECK_INT(vf(t, &p), WSG_JWT_MALFORMED);
	snprintf(t, sizeof(t), "%s", v);
	n = strlen(t);
	t[5] = '\0';
	CHECK_INT(jwt_verify(t, n, &p, NOW, NULL), WSG_JWT_MALFORMED);
	snprintf(t, sizeof(t), "%s", v);
	t[n - 1] = '\0';	/* impossible-length or stray-bit signature */
	CHECK_INT(vf(t, &p) == WSG_JWT_MALFORMED ||
	    vf(t, &p) == WSG_JWT_BAD_SIGNATURE, 1);
	/* The length given counts, not a NUL. */
	snprintf(t, sizeof(t), "%sxyz", v);
	CHECK_INT(jwt_verify(t, strlen(v), &p, NOW, NULL), WSG_JWT_OK);

	/* Headers that are not acceptable JSON objects. */
	CHECK_INT(vf(tok_full("not json", "{}", WSG_JWT_HS256, sk, 0), &p),
	    WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok_full("[\"HS256\"]", "{}", WSG_JWT_HS256, sk, 0), &p),
	    WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok_full("\"HS256\"", "{}", WSG_JWT_HS256, sk, 0), &p),
	    WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok_full("", "{}", WSG_JWT_HS256, sk, 0), &p),
	    WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok_full("{\"typ\":\"JWT\"}", "{}", WSG_JWT_HS256, sk,
	    0), &p), WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok_full("{\"alg\":256}", "{}", WSG_JWT_HS256, sk, 0),
	    &p), WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok_full("{\"alg\":\"HS256\",\"typ\":1}", "{}",
	    WSG_JWT_HS256, sk, 0), &p), WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok_full("{\"alg\":\"HS256\",\"crit\":[\"exp\"],"
	    "\"exp\":1}", "{}", WSG_JWT_HS256, sk, 0), &p),
	    WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok_full("{\"alg\":\"HS256\",\"b64\":false,\"crit\":"
	    "[\"b64\"]}", "{}", WSG_JWT_HS256, sk, 0), &p),
	    WSG_JWT_MALFORMED);
	/* Duplicate "alg": which one would a second parser believe? */
	CHECK_INT(vf(tok_full("{\"alg\":\"HS256\",\"alg\":\"none\"}", "{}",
	    WSG_JWT_HS256, sk, 0), &p), WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok_full("{\"alg\":\"HS256\",\"\\u0061lg\":\"HS256\"}",
	    "{}", WSG_JWT_HS256, sk, 0), &p), WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok_full("{\"alg\":\"HS256\"} {}", "{}", WSG_JWT_HS256,
	    sk, 0), &p), WSG_JWT_MALFORMED);
	/* Unknown header fields are fine; a kid or jwk never picks a key. */
	CHECK_INT(vf(tok_full("{\"alg\":\"HS256\",\"kid\":\"k1\",\"jwk\":{}}",
	    "{}", WSG_JWT_HS256, sk, 0), &p), WSG_JWT_OK);

	/* Payloads, signed properly, that are not acceptable objects. */
	CHECK_INT(vf(tok(WSG_JWT_HS256, sk, "[\"sub\",\"a\"]"), &p),
	    WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok(WSG_JWT_HS256, sk, "\"a\""), &p), WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok(WSG_JWT_HS256, sk, "null"), &p), WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok(WSG_JWT_HS256, sk, ""), &p), WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok(WSG_JWT_HS256, sk, "{\"sub\":\"a\""), &p),
	    WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok(WSG_JWT_HS256, sk, "{\"sub\":\"a\",\"sub\":\"b\"}"),
	    &p), WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok(WSG_JWT_HS256, sk, "{\"sub\":\"a\\u0000b\"}"), &p),
	    WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok(WSG_JWT_HS256, sk, "{\"sub\":\"\xff\"}"), &p),
	    WSG_JWT_MALFORMED);
	CHECK_INT(vf(tok(WSG_JWT_HS256, sk, "{\"sub\":NaN}"), &p),
	    WSG_JWT_MALFORMED);

	/* Nesting: 16 levels pass, 17 do not. */
	n = 0;
	n += (size_t)snprintf(pay + n, sizeof(pay) - n, "{\"x\":");
	for (i = 0; i < 14; i++)
		pay[n++] = '[';
	pay[n++] = '{';
	pay[n++] = '}';
	for (i = 0; i < 14; i++)
		pay[n++] = ']';
	pay[n++] = '}';
	pay[n] = '\0';
	CHECK_INT(vf(tok(WSG_JWT_HS256, sk, pay), &p), WSG_JWT_OK);
	/* Brackets in strings, escaped quotes included, do not count. */
	for (d = 15; d <= 16; d++) {
		n = (size_t)snprintf(pay, sizeof(pay), "{\"x\":\"[[[[[[[[[[[["
		    "[[[[[[\\\"{{{{{{{{{{{{{{{{{{{{\",\"y\":");
		for (i = 0; i < d; i++)
			pay[n++] = '[';
		for (i = 0; i < d; i++)
			pay[n++] = ']';
		pay[n++] = '}';
		pay[n] = '\0';
		CHECK_INT(vf(tok(WSG_JWT_HS256, sk, pay), &p),
		    d == 15 ? WSG_JWT_OK : WSG_JWT_MALFORMED);
	}
	n = 0;
	for (i = 0; i < 2000; i++)
		pay[n++] = '[';
	pay[n] = '\0';
	CHECK_INT(vf(tok(WSG_JWT_HS256, sk, pay), &p), WSG_JWT_MALFORMED);

	/* Size cap: a valid token of exactly 8192 bytes passes, 8193 not. */
	for (n = 6000; n < 6200; n++) {
		memset(pay, 'a', sizeof(pay));
		memcpy(pay, "{\"pad\":\"", 8);
		memcpy(pay + n, "\"}", 3);
		v = tok(WSG_JWT_HS256, sk, pay);
		if (strlen(v) == WSG_JWT_MAX_TOKEN) {
			found = 1;
			c = NULL;
			CHECK_INT(jwt_verify(v, strlen(v), &p, NOW, &c),
			    WSG_JWT_OK);
			CHECK(c != NULL);
			jwt_claims_free(c);
		} else if (strlen(v) > WSG_JWT_MAX_TOKEN) {
			CHECK_INT(vf(v, &p), WSG_JWT_MALFORMED);
			break;
		}
	}
	CHECK(found);
	memset(big, 'A', sizeof(big));
	big[10] = '.';
	big[20] = '.';
	CHECK_INT(jwt_verify(big, sizeof(big), &p, NOW, NULL),
	    WSG_JWT_MALFORMED);
	CHECK_INT(jwt_verify(big, SIZE_MAX, &p, NOW, NULL),
	    WSG_JWT_MALFORMED);
}

/* ECDSA and EdDSA signatures in the wrong form. */
static void
test_sig_forms(struct wsg_jwt_key *const vkeys[WSG_JWT_NALGS],
    const struct tkey skeys[WSG_JWT_NALGS])
{
	struct wsg_jwt_policy	 p;
	EVP_MD_CTX		*ctx;
	uint8_t			 der[SIG_MAX];
	char			 t[TOK_SIZE];
	size_t			 off, sigoff, n = sizeof(der);
	const char		*v;
	int			 tries;

	/* ES256 with a DER signature, as some libraries wrongly emit. */
	p = pol(ALL_ALGS, vkeys[WSG_JWT_ES256]);
	v = tok(WSG_JWT_ES256, &skeys[WSG_JWT_ES256], "{}");
	off = (size_t)(strrchr(v, '.') - v);
	memcpy(t, v, off);
	ctx = EVP_MD_CTX_new();
	EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL,
	    skeys[WSG_JWT_ES256].pkey);
	EVP_DigestSign(ctx, der, &n, (const uint8_t *)t, off);
	EVP_MD_CTX_free(ctx);
	t[off++] = '.';
	b64url_put(t, &off, der, n);
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_SIGNATURE);

	/* All zero r || s. */
	memset(der, 0, 64);
	off = (size_t)(strrchr(v, '.') - v) + 1;
	memcpy(t, v, off);
	b64url_put(t, &off, der, 64);
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_SIGNATURE);
	/* r || s of all ones: larger than the group order. */
	memset(der, 0xff, 64);
	off = (size_t)(strrchr(v, '.') - v) + 1;
	b64url_put(t, &off, der, 64);
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_SIGNATURE);

	/* ES384 given a 64-byte signature. */
	p = pol(ALL_ALGS, vkeys[WSG_JWT_ES384]);
	v = tok(WSG_JWT_ES384, &skeys[WSG_JWT_ES384], "{}");
	off = (size_t)(strrchr(v, '.') - v) + 1;
	memcpy(t, v, off);
	b64url_put(t, &off, der, 64);
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_SIGNATURE);

	/* EdDSA with 63 and 65 bytes. */
	p = pol(ALL_ALGS, vkeys[WSG_JWT_EDDSA]);
	v = tok(WSG_JWT_EDDSA, &skeys[WSG_JWT_EDDSA], "{}");
	off = (size_t)(strrchr(v, '.') - v) + 1;
	memcpy(t, v, off);
	b64url_put(t, &off, der, 63);
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_SIGNATURE);
	off = (size_t)(strrchr(v, '.') - v) + 1;
	b64url_put(t, &off, der, 65);
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_SIGNATURE);

	/* RSA signature one byte short. */
	memset(der, 1, 255);
	p = pol(ALL_ALGS, vkeys[WSG_JWT_RS256]);
	v = tok(WSG_JWT_RS256, &skeys[WSG_JWT_RS256], "{}");
	off = (size_t)(strrchr(v, '.') - v) + 1;
	memcpy(t, v, off);
	b64url_put(t, &off, der, 255);
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_SIGNATURE);

	/*
	 * A PS256 signature whose first byte is zero, sent without it: the
	 * same number, a second spelling of the token.  OpenSSL's PSS check
	 * takes it, so only the length check refuses it.  PSS signatures are
	 * salted: sign until one starts with zero (1 in 256).
	 */
	p = pol(ALL_ALGS, vkeys[WSG_JWT_PS256]);
	v = tok(WSG_JWT_PS256, &skeys[WSG_JWT_PS256], "{}");
	off = (size_t)(strrchr(v, '.') - v);
	memcpy(t, v, off);
	for (tries = 0; tries < 8192; tries++) {
		n = sign(WSG_JWT_PS256, &skeys[WSG_JWT_PS256],
		    (const uint8_t *)t, off, der, RSA_PSS_SALTLEN_DIGEST);
		if (n == 256 && der[0] == 0)
			break;
	}
	CHECK(tries < 8192);
	t[off++] = '.';
	sigoff = off;
	b64url_put(t, &off, der, n);
	CHECK_INT(vf(t, &p), WSG_JWT_OK);
	off = sigoff;
	b64url_put(t, &off, der + 1, n - 1);
	CHECK_INT(vf(t, &p), WSG_JWT_BAD_SIGNATURE);
}

/* Rendering claims for forwarded headers. */
static void
test_claims_get(const struct wsg_jwt_key *k, const struct tkey *sk)
{
	struct wsg_jwt_policy	 p = pol(1u << WSG_JWT_HS256, k);
	struct wsg_jwt_claims	*c = NULL;
	const char		*t;
	char			 buf[64];

	t = tok(WSG_JWT_HS256, sk, "{\"sub\":\"alice\",\"n\":-42,"
	    "\"big\":9223372036854775807,\"r\":1.5,\"tenth\":0.1,"
	    "\"e\":1e20,\"yes\":true,\"no\":false,\"nul\":null,"
	    "\"obj\":{\"a\":1},\"arr\":[1],\"crlf\":\"a\\r\\nX-Evil: 1\","
	    "\"lf\":\"a\\nb\",\"cr\":\"a\\r\",\"tab\":\"a\\tb\","
	    "\"del\":\"a\\u007fb\",\"esc\":\"\\u001b[0m\",\"empty\":\"\","
	    "\"utf8\":\"caf\\u00e9\",\"eight\":\"12345678\","
	    "\"lsp\":\" admin\",\"tsp\":\"admin \",\"isp\":\"a b\","
	    "\"us\":\"a\\u001fb\"}");
	CHECK_INT(jwt_verify(t, strlen(t), &p, NOW, &c), WSG_JWT_OK);
	if (c == NULL)
		return;
	CHECK_INT(jwt_claims_get(c, "sub", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "alice");
	CHECK_INT(jwt_claims_get(c, "n", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "-42");
	CHECK_INT(jwt_claims_get(c, "big", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "9223372036854775807");
	CHECK_INT(jwt_claims_get(c, "r", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "1.5");
	CHECK_INT(jwt_claims_get(c, "tenth", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "0.1");
	CHECK_INT(jwt_claims_get(c, "e", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "1e+20");
	CHECK_INT(jwt_claims_get(c, "yes", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "true");
	CHECK_INT(jwt_claims_get(c, "no", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "false");
	CHECK_INT(jwt_claims_get(c, "empty", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "");
	CHECK_INT(jwt_claims_get(c, "utf8", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "caf\xc3\xa9");

	/* Not scalars, absent, or unsafe in a header: refused, buf empty. */
	CHECK_INT(jwt_claims_get(c, "nul", buf, sizeof(buf)), -1);
	CHECK_INT(jwt_claims_get(c, "obj", buf, sizeof(buf)), -1);
	CHECK_INT(jwt_claims_get(c, "arr", buf, sizeof(buf)), -1);
	CHECK_INT(jwt_claims_get(c, "absent", buf, sizeof(buf)), -1);
	CHECK_INT(jwt_claims_get(c, "crlf", buf, sizeof(buf)), -1);
	CHECK_STR(buf, "");
	CHECK_INT(jwt_claims_get(c, "lf", buf, sizeof(buf)), -1);
	CHECK_INT(jwt_claims_get(c, "cr", buf, sizeof(buf)), -1);
	CHECK_INT(jwt_claims_get(c, "tab", buf, sizeof(buf)), -1);
	CHECK_INT(jwt_claims_get(c, "del", buf, sizeof(buf)), -1);
	CHECK_INT(jwt_claims_get(c, "esc", buf, sizeof(buf)), -1);
	CHECK_INT(jwt_claims_get(c, "us", buf, sizeof(buf)), -1);
	/* HTTP strips outer spaces: the upstream would read "admin". */
	CHECK_INT(jwt_claims_get(c, "lsp", buf, sizeof(buf)), -1);
	CHECK_STR(buf, "");
	CHECK_INT(jwt_claims_get(c, "tsp", buf, sizeof(buf)), -1);
	CHECK_INT(jwt_claims_get(c, "isp", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "a b");

	/* Exact fit and one short. */
	CHECK_INT(jwt_claims_get(c, "eight", buf, 9), 0);
	CHECK_STR(buf, "12345678");
	CHECK_INT(jwt_claims_get(c, "eight", buf, 8), -1);
	CHECK_STR(buf, "");
	CHECK_INT(jwt_claims_get(c, "n", buf, 3), -1);
	CHECK_STR(buf, "");
	CHECK_INT(jwt_claims_get(c, "yes", buf, 4), -1);
	CHECK_INT(jwt_claims_get(c, "r", buf, 3), -1);
	CHECK_INT(jwt_claims_get(c, "r", buf, 4), 0);
	CHECK_INT(jwt_claims_get(c, "sub", buf, 0), -1);
	CHECK_INT(jwt_claims_get(NULL, "sub", buf, sizeof(buf)), -1);
	CHECK(jwt_claims_sub(NULL) == NULL);
	CHECK_INT(jwt_claims_exp(NULL), 0);
	jwt_claims_free(c);
	jwt_claims_free(NULL);

	/* No sub: NULL. */
	t = tok(WSG_JWT_HS256, sk, "{}");
	c = NULL;
	CHECK_INT(jwt_verify(t, strlen(t), &p, NOW, &c), WSG_JWT_OK);
	CHECK(c != NULL && jwt_claims_sub(c) == NULL);
	jwt_claims_free(c);
}

/* Generate the keys, load their public halves, run every group. */
int
main(void)
{
	EVP_PKEY		*rsa, *rsa1024, *p256, *p384, *ed;
	struct wsg_jwt_key	*kh, *kr, *k256, *k384, *ked, *byalg[5];
	struct wsg_jwt_key	*vkeys[WSG_JWT_NALGS];
	struct tkey		 skeys[WSG_JWT_NALGS];
	char			 secretfile[128];
	int			 a, i;

	rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (rsa == NULL || rsa1024 == NULL || p256 == NULL || p384 == NULL ||
	    ed == NULL)
		abort();

	/* The secret file ends in "\r\n", which is not part of the key. */
	snprintf(secretfile, sizeof(secretfile), "%s\r\n", test_secret);
	kh = load_ok(tmp_write(secretfile, strlen(secretfile)));
	kr = load_ok(tmp_pubkey(rsa));
	k256 = load_ok(tmp_pubkey(p256));
	k384 = load_ok(tmp_pubkey(p384));
	ked = load_ok(tmp_pubkey(ed));
	byalg[0] = kh;
	byalg[1] = kr;
	byalg[2] = k256;
	byalg[3] = k384;
	byalg[4] = ked;

	for (a = 0; a < WSG_JWT_NALGS; a++) {
		memset(&skeys[a], 0, sizeof(skeys[a]));
		if (a <= WSG_JWT_HS512) {
			vkeys[a] = kh;
			skeys[a].secret = (const uint8_t *)test_secret;
			skeys[a].secretlen = strlen(test_secret);
		} else if (a <= WSG_JWT_PS256) {
			vkeys[a] = kr;
			skeys[a].pkey = rsa;
		} else if (a == WSG_JWT_ES256) {
			vkeys[a] = k256;
			skeys[a].pkey = p256;
		} else if (a == WSG_JWT_ES384) {
			vkeys[a] = k384;
			skeys[a].pkey = p384;
		} else {
			vkeys[a] = ked;
			skeys[a].pkey = ed;
		}
	}

	test_alg_names();
	test_b64url();
	test_key_load(rsa, rsa1024, p256);
	test_key_allows(byalg);
	test_valid(vkeys, skeys);
	test_bad_signature(vkeys, skeys);
	test_bad_alg(vkeys, skeys, rsa);
	test_times(kh, &skeys[WSG_JWT_HS256]);
	test_claim_checks(kh, &skeys[WSG_JWT_HS256]);
	test_malformed(kh, &skeys[WSG_JWT_HS256]);
	test_sig_forms(vkeys, skeys);
	test_claims_get(kh, &skeys[WSG_JWT_HS256]);

	for (i = 0; i < 5; i++)
		jwt_key_free(byalg[i]);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(rsa1024);
	EVP_PKEY_free(p256);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(ed);
	for (i = 0; i < tmp_n; i++)
		unlink(tmp_paths[i]);
	return unit_done("test_jwt");
}
