/*
 * libFuzzer harness for the JWT verifier.  The first input byte picks a
 * mode and a policy; the rest is either a whole compact token, checked
 * against a fixed HMAC secret or a fixed RSA, P-256, P-384 or Ed25519
 * public key, or raw header and payload JSON (split at the first NUL) that
 * the harness encodes and signs with the HMAC secret, so that the claim
 * checks are reached too.
 *
 * Config byte: bits 0-2 mode (FUZZ_MODE_*); bit 3 issuer; bit 4 audience;
 * bit 5 required claims; bit 6 leeway; bit 7 do not ask for the claims.
 */
#include "autoconf.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "jwt.h"

#define FUZZ_ASSERT(c)	do { if (!(c)) abort(); } while (0)
#define FUZZ_NOW	INT64_C(1700000000)
#define FUZZ_MAX_IN	(WSG_JWT_MAX_TOKEN + 64)
#define FUZZ_ALL_ALGS	((1u << WSG_JWT_NALGS) - 1)
#define FUZZ_HS_ALGS	((1u << WSG_JWT_HS256) | (1u << WSG_JWT_HS384) | \
			    (1u << WSG_JWT_HS512))
#define FUZZ_RSA_ALGS	((1u << WSG_JWT_RS256) | (1u << WSG_JWT_RS384) | \
			    (1u << WSG_JWT_RS512) | (1u << WSG_JWT_PS256))

enum fuzz_mode {
	FUZZ_MODE_HMAC,		/* token against the HMAC secret */
	FUZZ_MODE_RSA,		/* token against the RSA key */
	FUZZ_MODE_P256,
	FUZZ_MODE_ED25519,
	FUZZ_MODE_JSON256,	/* JSON, encoded and signed HS256 */
	FUZZ_MODE_JSON512,	/* the same, HS512 */
	FUZZ_MODE_P384,
	FUZZ_MODE_HMAC_HS,	/* token, HMAC secret, only HS* allowed */
	FUZZ_NMODES
};

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const char	fuzz_secret[] = "wsgate-fuzz-secret-0123456789abcdef";

static const char	fuzz_rsa_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAlJyP+thZulIDAcp+y2MT\n"
    "eSKtKLVx8uha3icDjGGTMY4ZQKjekzbimEi7qSjRnC/rEaExvw8ajAk1aqPFjllM\n"
    "AEDg5EzYuoEDLTWDFtlHR6np7m7vI0R09KKO+hk6WtMASCoyL0mpvryhIp0FUBCf\n"
    "2j2cfdg8+hBLjGn6t7ECr8onihIV1INzGH0PhzHM08TPpdYvFeBlDd1KWLQEPEZc\n"
    "fP+pD9R136lVz32kxsAnfq5r900cpppPMdqDXGRwMi6PeLEvDUsGpFI3OPmFNHF/\n"
    "AsYfEBO/mRbO5ubr1q7MF5FU6JrfrcQwgK3woJjPUoL+7C74tIh1b8V9gmOsH47N\n"
    "EQIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

static const char	fuzz_p256_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFBTcm5/cCGau4xigV/B0E1X9IKqH\n"
    "u3hK98SNzU1DfmnecvmWcGwD8Q7m5dRyZK42qZayF/mk1heMuB4mJxAkwQ==\n"
    "-----END PUBLIC KEY-----\n";

static const char	fuzz_p384_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEAjUtBMZNd0cOZHkJk4ZEwyDeCQ9N25UG\n"
    "b0crDLjo1PbQl9SZFWfGwaqAgI2BXkiZYqkIsYH1V8PAyJ2dsPLA+4pblTF6B90I\n"
    "7f3gS/X3escYJI5RRGBvw2BimjgWAerB\n"
    "-----END PUBLIC KEY-----\n";

static const char	fuzz_ed25519_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEAijCPFCOg7SjQPNIfgB7lrsMUxUEcgSNbdf9TBNrDHgE=\n"
    "-----END PUBLIC KEY-----\n";

/* Per mode: the key's file contents and the algorithms it may verify. */
static const struct {
	const char	*fm_key;
	unsigned int	 fm_algs;
} fuzz_modes[FUZZ_NMODES] = {
	{ fuzz_secret, FUZZ_HS_ALGS },
	{ fuzz_rsa_pem, FUZZ_RSA_ALGS },
	{ fuzz_p256_pem, 1u << WSG_JWT_ES256 },
	{ fuzz_ed25519_pem, 1u << WSG_JWT_EDDSA },
	{ fuzz_secret, FUZZ_HS_ALGS },
	{ fuzz_secret, FUZZ_HS_ALGS },
	{ fuzz_p384_pem, 1u << WSG_JWT_ES384 },
	{ fuzz_secret, FUZZ_HS_ALGS }
};

static const char *const fuzz_required[] = { "sub", "tenant" };

static const char *const fuzz_names[] = {
	"sub", "iss", "aud", "exp", "nbf", "iat", "jti", "tenant", "role",
	"name", "email", "x", ""
};

static struct wsg_jwt_key	*fuzz_keys[FUZZ_NMODES];

/* Load the fixed keys once. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char	err[256];
	int	i;

	(void)argc;
	(void)argv;
	for (i = 0; i < FUZZ_NMODES; i++) {
		fuzz_keys[i] = jwt_key_load_mem(fuzz_modes[i].fm_key,
		    strlen(fuzz_modes[i].fm_key), err, sizeof(err));
		FUZZ_ASSERT(fuzz_keys[i] != NULL);
	}
	return 0;
}

/* Unpadded base64url of n bytes, appended at *off. */
static void
fuzz_b64url(char *dst, size_t *off, const uint8_t *p, size_t n)
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
}

/*
 * Encode "header\0payload" (or a payload alone under a fixed header) and
 * sign it with the HMAC secret.  The token's length, or 0 if too long.
 */
static size_t
fuzz_build(char *t, size_t tlen, const uint8_t *p, size_t n, int hs512)
{
	static const char	 hdr256[] =
				    "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	static const char	 hdr512[] = "{\"alg\":\"HS512\"}";
	const uint8_t		*hdr, *pay, *nul;
	uint8_t			 mac[EVP_MAX_MD_SIZE];
	unsigned int		 maclen = 0;
	size_t			 hlen, plen, off = 0;

	if ((nul = memchr(p, '\0', n)) != NULL) {
		hdr = p;
		hlen = (size_t)(nul - p);
		pay = nul + 1;
		plen = n - hlen - 1;
	} else {
		hdr = (const uint8_t *)(hs512 ? hdr512 : hdr256);
		hlen = strlen((const char *)hdr);
		pay = p;
		plen = n;
	}
	if ((hlen + plen) / 3 * 4 + 8 + 2 * EVP_MAX_MD_SIZE >= tlen)
		return 0;
	fuzz_b64url(t, &off, hdr, hlen);
	t[off++] = '.';
	fuzz_b64url(t, &off, pay, plen);
	if (HMAC(hs512 ? EVP_sha512() : EVP_sha256(), fuzz_secret,
	    (int)strlen(fuzz_secret), (const uint8_t *)t, off, mac,
	    &maclen) == NULL)
		return 0;
	t[off++] = '.';
	fuzz_b64url(t, &off, mac, maclen);
	return off;
}

/* What a verified token lets out must be safe to put in a header. */
static void
fuzz_check_claims(const struct wsg_jwt_claims *c)
{
	char	buf[128];
	size_t	i, j, n;

	for (i = 0; i < sizeof(fuzz_names) / sizeof(fuzz_names[0]); i++) {
		if (jwt_claims_get(c, fuzz_names[i], buf, sizeof(buf)) != 0) {
			FUZZ_ASSERT(buf[0] == '\0');
			continue;
		}
		n = strlen(buf);
		FUZZ_ASSERT(n < sizeof(buf));
		for (j = 0; j < n; j++)
			FUZZ_ASSERT((unsigned char)buf[j] >= 0x20 &&
			    (unsigned char)buf[j] != 0x7f);
	}
	(void)jwt_claims_sub(c);
}

/* One verification per input, with invariants on the outcome. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char		 tok[2 * FUZZ_MAX_IN];
	struct wsg_jwt_policy	 pol;
	struct wsg_jwt_claims	*c = NULL, **out;
	enum wsg_jwt_result	 r, r2;
	const char		*t;
	size_t			 len;
	int64_t			 exp;
	uint8_t			 cfg;
	int			 mode;

	if (size < 1 || size > FUZZ_MAX_IN)
		return 0;
	cfg = data[0];
	data++;
	size--;
	mode = cfg & 7;

	memset(&pol, 0, sizeof(pol));
	pol.jp_key = fuzz_keys[mode];
	pol.jp_algs = mode == FUZZ_MODE_HMAC_HS ? FUZZ_HS_ALGS : FUZZ_ALL_ALGS;
	if (cfg & 0x08)
		pol.jp_issuer = "https://auth.example.com";
	if (cfg & 0x10)
		pol.jp_audience = "chat";
	if (cfg & 0x20) {
		pol.jp_required = fuzz_required;
		pol.jp_nrequired = 2;
	}
	if (cfg & 0x40)
		pol.jp_leeway = 30;
	out = (cfg & 0x80) ? NULL : &c;

	if (mode == FUZZ_MODE_JSON256 || mode == FUZZ_MODE_JSON512) {
		if ((len = fuzz_build(tok, sizeof(tok), data, size,
		    mode == FUZZ_MODE_JSON512)) == 0)
			return 0;
		t = tok;
	} else {
		t = (const char *)data;
		len = size;
	}

	r = jwt_verify(t, len, &pol, FUZZ_NOW, out);
	FUZZ_ASSERT(r >= WSG_JWT_OK && r <= WSG_JWT_CLAIM_TYPE);
	FUZZ_ASSERT(jwt_result_str(r) != NULL);
	FUZZ_ASSERT(out == NULL || (r == WSG_JWT_OK) == (c != NULL));
	FUZZ_ASSERT(r != WSG_JWT_OK || len <= WSG_JWT_MAX_TOKEN);

	/* Same bytes, same answer. */
	r2 = jwt_verify(t, len, &pol, FUZZ_NOW, NULL);
	FUZZ_ASSERT(r2 == r);
	if (r != WSG_JWT_OK)
		return 0;

	/* The key's type, not the token, chose the algorithm. */
	pol.jp_algs &= fuzz_modes[mode].fm_algs;
	FUZZ_ASSERT(jwt_verify(t, len, &pol, FUZZ_NOW, NULL) == WSG_JWT_OK);
	pol.jp_algs = ~fuzz_modes[mode].fm_algs;
	FUZZ_ASSERT(jwt_verify(t, len, &pol, FUZZ_NOW, NULL) ==
	    WSG_JWT_BAD_ALG);
	pol.jp_algs = FUZZ_ALL_ALGS;

	if (c != NULL) {
		fuzz_check_claims(c);
		/* At exp plus leeway the token has expired. */
		if ((exp = jwt_claims_exp(c)) != 0 &&
		    exp <= INT64_MAX / 4 && exp >= INT64_MIN / 4)
			FUZZ_ASSERT(jwt_verify(t, len, &pol,
			    exp + pol.jp_leeway, NULL) == WSG_JWT_EXPIRED);
		jwt_claims_free(c);
	}
	return 0;
}
