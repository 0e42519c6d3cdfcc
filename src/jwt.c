/*
 * JWT verification: strict base64url, JSON through jansson, signatures
 * through OpenSSL 3 EVP.  The token's "alg" is only a claim to be checked
 * against the policy's allow-list and the key's type, never a choice.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "jwt.h"

/* Times are clamped to +-2^62 and leeway to 2^61 so sums cannot overflow. */
#define JWT_TIME_LIMIT		(INT64_C(1) << 62)
#define JWT_LEEWAY_LIMIT	(INT64_C(1) << 61)
#define JWT_EC_MAX_COORD	48	/* P-384 */
#define JWT_REAL_MAX_DIGITS	17	/* round-trips any double */

enum jwt_key_type {
	JWT_KEY_HMAC,
	JWT_KEY_RSA,
	JWT_KEY_P256,
	JWT_KEY_P384,
	JWT_KEY_ED25519
};

enum jwt_family {
	JWT_FAM_HMAC,
	JWT_FAM_RSA,		/* RSASSA-PKCS1-v1_5 */
	JWT_FAM_PSS,		/* RSASSA-PSS, MGF1 and salt = digest */
	JWT_FAM_ECDSA,		/* raw r || s in the token */
	JWT_FAM_EDDSA
};

struct wsg_jwt_key {
	enum jwt_key_type	 k_type;
	EVP_PKEY		*k_pkey;	/* public keys */
	uint8_t			*k_secret;	/* HMAC */
	size_t			 k_secretlen;
};

struct wsg_jwt_claims {
	json_t		*c_payload;	/* owns the strings below */
	const char	*c_sub;
	int64_t		 c_exp;
};

struct jwt_alg_info {
	const char		*ai_name;
	enum jwt_family		 ai_family;
	enum jwt_key_type	 ai_key;
	const EVP_MD		*(*ai_md)(void);
	size_t			 ai_coord;	/* ECDSA: bytes of r and of s */
};

/* Indexed by enum wsg_jwt_alg. */
static const struct jwt_alg_info jwt_algs[WSG_JWT_NALGS] = {
	{ "HS256", JWT_FAM_HMAC, JWT_KEY_HMAC, EVP_sha256, 0 },
	{ "HS384", JWT_FAM_HMAC, JWT_KEY_HMAC, EVP_sha384, 0 },
	{ "HS512", JWT_FAM_HMAC, JWT_KEY_HMAC, EVP_sha512, 0 },
	{ "RS256", JWT_FAM_RSA, JWT_KEY_RSA, EVP_sha256, 0 },
	{ "RS384", JWT_FAM_RSA, JWT_KEY_RSA, EVP_sha384, 0 },
	{ "RS512", JWT_FAM_RSA, JWT_KEY_RSA, EVP_sha512, 0 },
	{ "PS256", JWT_FAM_PSS, JWT_KEY_RSA, EVP_sha256, 0 },
	{ "ES256", JWT_FAM_ECDSA, JWT_KEY_P256, EVP_sha256, 32 },
	{ "ES384", JWT_FAM_ECDSA, JWT_KEY_P384, EVP_sha384, 48 },
	{ "EdDSA", JWT_FAM_EDDSA, JWT_KEY_ED25519, NULL, 0 }
};

static const char *const jwt_result_strs[] = {
	"valid",
	"malformed token",
	"algorithm not allowed",
	"signature does not verify",
	"token expired",
	"token not yet valid",
	"issuer does not match",
	"audience does not match",
	"required claim missing",
	"a claim has the wrong type (exp, nbf, iat: numbers; sub: a string)",
	"out of memory checking the token"
};

/* Map a JWS algorithm name to its enum; "none" is never one. */
int
jwt_alg_parse(const char *name)
{
	int	i;

	if (name == NULL)
		return -1;
	for (i = 0; i < WSG_JWT_NALGS; i++) {
		if (strcmp(name, jwt_algs[i].ai_name) == 0)
			return i;
	}
	return -1;
}

/* The JWS name of an algorithm, for configuration errors and logs. */
const char *
jwt_alg_name(enum wsg_jwt_alg alg)
{
	if ((unsigned int)alg >= WSG_JWT_NALGS)
		return NULL;
	return jwt_algs[alg].ai_name;
}

/* Short detail for the access log. */
const char *
jwt_result_str(enum wsg_jwt_result r)
{
	if ((size_t)r >= sizeof(jwt_result_strs) / sizeof(jwt_result_strs[0]))
		return "unknown result";
	return jwt_result_strs[r];
}

/* Value of one base64url character, or -1. */
static int
jwt_b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Strict unpadded base64url; see jwt.h. */
int
jwt_b64url_decode(const char *src, size_t srclen, uint8_t *dst,
    size_t dstlen, size_t *outlen)
{
	uint32_t	acc = 0;
	size_t		i, n = 0, rem, need;
	int		v, bits = 0;

	*outlen = 0;
	rem = srclen % 4;
	if (rem == 1)
		return -1;
	need = srclen / 4 * 3 + (rem == 0 ? 0 : rem - 1);
	if (need > dstlen)
		return -1;
	for (i = 0; i < srclen; i++) {
		if ((v = jwt_b64url_value((unsigned char)src[i])) == -1)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			dst[n++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* Leftover bits must be zero: one encoding per byte string. */
	if (acc != 0)
		return -1;
	*outlen = n;
	return 0;
}

/*
 * Is the JSON text nested no deeper than WSG_JWT_MAX_DEPTH?  A coarse scan
 * that skips strings; jansson rejects whatever else is wrong with it.
 */
static int
jwt_json_depth_ok(const uint8_t *p, size_t len)
{
	size_t	i;
	int	depth = 0, instr = 0, esc = 0;

	for (i = 0; i < len; i++) {
		if (instr) {
			if (esc)
				esc = 0;
			else if (p[i] == '\\')
				esc = 1;
			else if (p[i] == '"')
				instr = 0;
			continue;
		}
		switch (p[i]) {
		case '"':
			instr = 1;
			break;
		case '{':
		case '[':
			if (++depth > WSG_JWT_MAX_DEPTH)
				return 0;
			break;
		case '}':
		case ']':
			depth--;
			break;
		}
	}
	return 1;
}

/*
 * Parse decoded JSON that must be an object; NULL if it is anything else,
 * with *nomem set when memory ran out.
 */
static json_t *
jwt_json_object(const uint8_t *p, size_t len, int *nomem)
{
	json_error_t	 jerr;
	json_t		*j;

	if (!jwt_json_depth_ok(p, len))
		return NULL;
	j = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &jerr);
	if (j == NULL && json_error_code(&jerr) == json_error_out_of_memory)
		*nomem = 1;
	if (j != NULL && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

/* Never prompt for a passphrase: key files hold public material only. */
static int
jwt_no_pass_cb(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* Read a public key, or a certificate's key, from PEM bytes. */
static EVP_PKEY *
jwt_pem_pubkey(const void *buf, size_t len)
{
	EVP_PKEY	*pkey;
	X509		*x;
	BIO		*bio;

	if ((bio = BIO_new_mem_buf(buf, (int)len)) == NULL)
		return NULL;
	pkey = PEM_read_bio_PUBKEY(bio, NULL, jwt_no_pass_cb, NULL);
	BIO_free(bio);
	if (pkey != NULL)
		return pkey;
	if ((bio = BIO_new_mem_buf(buf, (int)len)) == NULL)
		return NULL;
	x = PEM_read_bio_X509(bio, NULL, jwt_no_pass_cb, NULL);
	BIO_free(bio);
	if (x == NULL)
		return NULL;
	pkey = X509_get_pubkey(x);
	X509_free(x);
	return pkey;
}

/* Classify a public key, refusing types and sizes the policy cannot use. */
static int
jwt_pkey_type(EVP_PKEY *pkey, enum jwt_key_type *type, char *err,
    size_t errlen)
{
	char	group[64];
	size_t	glen;
	int	nid, bits;

	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_RSA:
		bits = EVP_PKEY_get_bits(pkey);
		if (bits < WSG_JWT_MIN_RSA_BITS) {
			snprintf(err, errlen, "RSA key is %d bits; at least %d "
			    "are required", bits, WSG_JWT_MIN_RSA_BITS);
			return -1;
		}
		*type = JWT_KEY_RSA;
		return 0;
	case EVP_PKEY_EC:
		if (!EVP_PKEY_get_group_name(pkey, group, sizeof(group),
		    &glen)) {
			snprintf(err, errlen, "EC key has no named curve");
			return -1;
		}
		if ((nid = OBJ_sn2nid(group)) == NID_undef)
			nid = EC_curve_nist2nid(group);
		if (nid == NID_X9_62_prime256v1)
			*type = JWT_KEY_P256;
		else if (nid == NID_secp384r1)
			*type = JWT_KEY_P384;
		else {
			snprintf(err, errlen, "EC curve %s is not supported "
			    "(P-256 or P-384)", group);
			return -1;
		}
		return 0;
	case EVP_PKEY_ED25519:
		*type = JWT_KEY_ED25519;
		return 0;
	default:
		snprintf(err, errlen, "unsupported key type %s (RSA, EC P-256, "
		    "EC P-384 or Ed25519)", EVP_PKEY_get0_type_name(pkey) ?
		    EVP_PKEY_get0_type_name(pkey) : "unknown");
		return -1;
	}
}

/* How many times does lit occur in buf? */
static size_t
jwt_count(const void *buf, size_t len, const char *lit)
{
	const char	*p = buf, *end = p + len, *q;
	size_t		 n = 0, litlen = strlen(lit);

	while ((q = memmem(p, (size_t)(end - p), lit, litlen)) != NULL) {
		n++;
		p = q + litlen;
	}
	return n;
}

/*
 * Is each certificate after the first the one that signed the certificate
 * before it, as in a chain?  One that did not is another key, as for a
 * rotation, which would never be used.
 */
static int
jwt_pem_is_chain(const void *buf, size_t len)
{
	X509		*prev, *x;
	EVP_PKEY	*pkey;
	BIO		*bio;
	int		 ok = 1;

	if ((bio = BIO_new_mem_buf(buf, (int)len)) == NULL)
		return 0;
	prev = PEM_read_bio_X509(bio, NULL, jwt_no_pass_cb, NULL);
	while (ok && prev != NULL &&
	    (x = PEM_read_bio_X509(bio, NULL, jwt_no_pass_cb, NULL)) != NULL) {
		pkey = X509_get0_pubkey(x);
		ok = pkey != NULL && X509_verify(prev, pkey) == 1;
		X509_free(prev);
		prev = x;
	}
	X509_free(prev);
	BIO_free(bio);
	ERR_clear_error();
	return ok;
}

/* Build a key from PEM bytes. */
static struct wsg_jwt_key *
jwt_key_pem(const void *buf, size_t len, char *err, size_t errlen)
{
	struct wsg_jwt_key	*k;
	enum jwt_key_type	 type;
	EVP_PKEY		*pkey;
	size_t			 npub, ncert;

	if (memmem(buf, len, "PRIVATE KEY-----", 16) != NULL) {
		snprintf(err, errlen, "file holds a private key; give the "
		    "public key or a certificate");
		return NULL;
	}
	/*
	 * One key verifies every token (there is no "kid" to choose by): a
	 * second key, as for a rotation, would be ignored, and the tokens
	 * signed with it all refused.  A certificate's chain may follow it:
	 * each certificate signed by the next.
	 */
	npub = jwt_count(buf, len, "-----BEGIN PUBLIC KEY-----");
	ncert = jwt_count(buf, len, "CERTIFICATE-----");	/* 2 each */
	if (npub > 1 || (npub == 1 && ncert > 0) ||
	    (ncert > 2 && !jwt_pem_is_chain(buf, len))) {
		snprintf(err, errlen, "file holds more than one key; give one "
		    "public key or one certificate");
		return NULL;
	}
	if ((pkey = jwt_pem_pubkey(buf, len)) == NULL) {
		ERR_clear_error();
		snprintf(err, errlen, "no PEM public key or certificate "
		    "could be read");
		return NULL;
	}
	if (jwt_pkey_type(pkey, &type, err, errlen) == -1) {
		EVP_PKEY_free(pkey);
		ERR_clear_error();
		return NULL;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		EVP_PKEY_free(pkey);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	k->k_type = type;
	k->k_pkey = pkey;
	return k;
}

/*
 * Does a would-be secret look like a JWK?  Such a file holds a public key
 * that anyone may know; taking it as an HMAC secret would be a disaster.
 */
static int
jwt_looks_like_jwk(const uint8_t *p, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++) {
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' &&
		    p[i] != '\n')
			break;
	}
	return i < len && p[i] == '{' && memmem(p, len, "\"kty\"", 5) != NULL;
}

/* Build an HMAC key from a secret file's bytes. */
static struct wsg_jwt_key *
jwt_key_secret(const uint8_t *p, size_t len, char *err, size_t errlen)
{
	struct wsg_jwt_key	*k;

	if (len >= 2 && p[len - 2] == '\r' && p[len - 1] == '\n')
		len -= 2;
	else if (len >= 1 && p[len - 1] == '\n')
		len--;
	if (len < WSG_JWT_MIN_SECRET) {
		snprintf(err, errlen, "HMAC secret is %zu bytes; at least %d "
		    "are required", len, WSG_JWT_MIN_SECRET);
		return NULL;
	}
	if (jwt_looks_like_jwk(p, len)) {
		snprintf(err, errlen, "file looks like a JWK; give a PEM "
		    "public key or an HMAC secret");
		return NULL;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL ||
	    (k->k_secret = malloc(len)) == NULL) {
		free(k);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	memcpy(k->k_secret, p, len);
	k->k_secretlen = len;
	k->k_type = JWT_KEY_HMAC;
	return k;
}

/* Build a key from a key file's contents. */
struct wsg_jwt_key *
jwt_key_load_mem(const void *buf, size_t len, char *err, size_t errlen)
{
	if (buf == NULL && len != 0) {
		snprintf(err, errlen, "no key");
		return NULL;
	}
	if (len > WSG_JWT_MAX_KEY_FILE) {
		snprintf(err, errlen, "key file is larger than %d bytes",
		    WSG_JWT_MAX_KEY_FILE);
		return NULL;
	}
	if (len > 0 && memmem(buf, len, "-----BEGIN", 10) != NULL)
		return jwt_key_pem(buf, len, err, errlen);
	return jwt_key_secret(buf, len, err, errlen);
}

/* Load a key file: a PEM public key or certificate, or an HMAC secret. */
struct wsg_jwt_key *
jwt_key_load(const char *path, char *err, size_t errlen)
{
	struct wsg_jwt_key	*k = NULL;
	struct stat		 st;
	uint8_t			*buf;
	size_t			 len = 0;
	ssize_t			 n;
	int			 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	if ((buf = malloc(WSG_JWT_MAX_KEY_FILE + 1)) == NULL) {
		snprintf(err, errlen, "out of memory");
		close(fd);
		return NULL;
	}
	while (len < WSG_JWT_MAX_KEY_FILE + 1) {
		n = read(fd, buf + len, WSG_JWT_MAX_KEY_FILE + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			goto done;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	k = jwt_key_load_mem(buf, len, err, errlen);
 done:
	OPENSSL_cleanse(buf, WSG_JWT_MAX_KEY_FILE + 1);
	free(buf);
	close(fd);
	return k;
}

/* Free a key, wiping a secret. */
void
jwt_key_free(struct wsg_jwt_key *k)
{
	if (k == NULL)
		return;
	if (k->k_secret != NULL) {
		OPENSSL_cleanse(k->k_secret, k->k_secretlen);
		free(k->k_secret);
	}
	EVP_PKEY_free(k->k_pkey);
	free(k);
}

/* May this key verify this algorithm?  The key type decides, always. */
int
jwt_key_allows(const struct wsg_jwt_key *k, enum wsg_jwt_alg alg)
{
	if (k == NULL || (unsigned int)alg >= WSG_JWT_NALGS)
		return 0;
	return jwt_algs[alg].ai_key == k->k_type;
}

/* RFC 7518 3.2: an HS* key is at least as long as the hash output. */
size_t
jwt_alg_min_secret(enum wsg_jwt_alg alg)
{
	if ((unsigned int)alg >= WSG_JWT_NALGS ||
	    jwt_algs[alg].ai_family != JWT_FAM_HMAC)
		return 0;
	return (size_t)EVP_MD_get_size(jwt_algs[alg].ai_md());
}

/* The length of an HMAC secret, 0 for a public key. */
size_t
jwt_key_secret_len(const struct wsg_jwt_key *k)
{
	return k != NULL && k->k_type == JWT_KEY_HMAC ? k->k_secretlen : 0;
}

/*
 * Did OpenSSL fail for want of memory?  Empties its error queue, so no
 * failure is left behind for the TLS code to trip over.
 */
static int
jwt_openssl_nomem(void)
{
	unsigned long	e;
	int		nomem = 0;

	while ((e = ERR_get_error()) != 0)
		if (ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE)
			nomem = 1;
	return nomem;
}

/*
 * HMAC over msg compared in constant time: 1 when it matches, 0 when not,
 * -1 when it could not be computed.
 */
static int
jwt_verify_hmac(const struct jwt_alg_info *ai, const struct wsg_jwt_key *k,
    const uint8_t *msg, size_t msglen, const uint8_t *sig, size_t siglen)
{
	uint8_t		mac[EVP_MAX_MD_SIZE];
	unsigned int	maclen = 0;
	int		ok;

	if (HMAC(ai->ai_md(), k->k_secret, (int)k->k_secretlen, msg, msglen,
	    mac, &maclen) == NULL)
		return -1;
	ok = siglen == maclen && CRYPTO_memcmp(mac, sig, maclen) == 0;
	OPENSSL_cleanse(mac, sizeof(mac));
	return ok;
}

/* Convert a JWS raw r || s ECDSA signature to DER; NULL if impossible. */
static uint8_t *
jwt_ecdsa_der(const uint8_t *sig, size_t siglen, size_t coord, int *derlen)
{
	ECDSA_SIG	*es;
	BIGNUM		*r, *s;
	uint8_t		*der = NULL;

	if (siglen != 2 * coord || coord > JWT_EC_MAX_COORD)
		return NULL;
	r = BN_bin2bn(sig, (int)coord, NULL);
	s = BN_bin2bn(sig + coord, (int)coord, NULL);
	if (r == NULL || s == NULL || (es = ECDSA_SIG_new()) == NULL) {
		BN_free(r);
		BN_free(s);
		return NULL;
	}
	if (!ECDSA_SIG_set0(es, r, s)) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(es);
		return NULL;
	}
	*derlen = i2d_ECDSA_SIG(es, &der);
	ECDSA_SIG_free(es);
	if (*derlen <= 0) {
		OPENSSL_free(der);
		return NULL;
	}
	return der;
}

/*
 * Public-key signature check through EVP_DigestVerify: 1 when it holds, 0
 * when not, -1 when it could not be checked (no memory).
 */
static int
jwt_verify_pkey(const struct jwt_alg_info *ai, const struct wsg_jwt_key *k,
    const uint8_t *msg, size_t msglen, const uint8_t *sig, size_t siglen)
{
	EVP_MD_CTX	*ctx;
	EVP_PKEY_CTX	*pctx = NULL;
	const EVP_MD	*md;
	uint8_t		*der = NULL;
	int		 derlen = 0, ok = -1;

	switch (ai->ai_family) {
	case JWT_FAM_RSA:
	case JWT_FAM_PSS:
		if (siglen != (size_t)EVP_PKEY_get_size(k->k_pkey))
			return 0;
		break;
	case JWT_FAM_ECDSA:
		if (siglen != 2 * ai->ai_coord)
			return 0;
		if ((der = jwt_ecdsa_der(sig, siglen, ai->ai_coord,
		    &derlen)) == NULL)
			return -1;
		sig = der;
		siglen = (size_t)derlen;
		break;
	case JWT_FAM_EDDSA:
		if (siglen != 64)
			return 0;
		break;
	default:
		return 0;
	}
	md = ai->ai_md != NULL ? ai->ai_md() : NULL;
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		goto done;
	if (EVP_DigestVerifyInit(ctx, &pctx, md, NULL, k->k_pkey) != 1)
		goto done;
	if (ai->ai_family == JWT_FAM_PSS &&
	    (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx,
	    RSA_PSS_SALTLEN_DIGEST) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) != 1))
		goto done;
	if ((ok = EVP_DigestVerify(ctx, sig, siglen, msg, msglen)) != 1)
		ok = jwt_openssl_nomem() ? -1 : 0;
 done:
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	return ok;
}

/*
 * Check the signature over "header.payload" with the algorithm's family:
 * 1 when it holds, 0 when not, -1 when it could not be checked.
 */
static int
jwt_verify_sig(const struct jwt_alg_info *ai, const struct wsg_jwt_key *k,
    const uint8_t *msg, size_t msglen, const uint8_t *sig, size_t siglen)
{
	int	ok;

	if (ai->ai_family == JWT_FAM_HMAC)
		ok = jwt_verify_hmac(ai, k, msg, msglen, sig, siglen);
	else
		ok = jwt_verify_pkey(ai, k, msg, msglen, sig, siglen);
	/* Leave no failure behind for the TLS code to trip over. */
	ERR_clear_error();
	return ok;
}

/*
 * Check the JOSE header: "alg" allowed by the policy and the key, no
 * "crit" (we understand no extensions), "typ" a string if there.
 */
static enum wsg_jwt_result
jwt_check_header(const json_t *h, const struct wsg_jwt_policy *pol,
    const struct jwt_alg_info **aip)
{
	const json_t	*alg, *typ;
	int		 a;

	alg = json_object_get(h, "alg");
	if (!json_is_string(alg) || json_object_get(h, "crit") != NULL)
		return WSG_JWT_MALFORMED;
	typ = json_object_get(h, "typ");
	if (typ != NULL && !json_is_string(typ))
		return WSG_JWT_MALFORMED;
	if ((a = jwt_alg_parse(json_string_value(alg))) == -1 ||
	    (pol->jp_algs & WSG_JWT_ALG_BIT(a)) == 0 ||
	    !jwt_key_allows(pol->jp_key, (enum wsg_jwt_alg)a))
		return WSG_JWT_BAD_ALG;
	*aip = &jwt_algs[a];
	return WSG_JWT_OK;
}

/* Clamp a time to +-JWT_TIME_LIMIT. */
static int64_t
jwt_time_clamp(int64_t t)
{
	if (t > JWT_TIME_LIMIT)
		return JWT_TIME_LIMIT;
	if (t < -JWT_TIME_LIMIT)
		return -JWT_TIME_LIMIT;
	return t;
}

/* A NumericDate rounded up to whole seconds and clamped. */
static int64_t
jwt_numeric_date(const json_t *v)
{
	double	d;
	int64_t	t;

	if (json_is_integer(v))
		return jwt_time_clamp((int64_t)json_integer_value(v));
	d = json_real_value(v);
	if (d >= (double)JWT_TIME_LIMIT)
		return JWT_TIME_LIMIT;
	if (d <= -(double)JWT_TIME_LIMIT)
		return -JWT_TIME_LIMIT;
	t = (int64_t)d;
	if ((double)t < d)
		t++;
	return t;
}

/* Is the audience claim, a string or array of strings, naming want? */
static int
jwt_aud_matches(const json_t *aud, const char *want)
{
	const json_t	*v;
	size_t		 i;

	if (json_is_string(aud))
		return strcmp(json_string_value(aud), want) == 0;
	if (!json_is_array(aud))
		return 0;
	json_array_foreach(aud, i, v) {
		if (json_is_string(v) &&
		    strcmp(json_string_value(v), want) == 0)
			return 1;
	}
	return 0;
}

/* Check the registered claims and the policy's required claims. */
static enum wsg_jwt_result
jwt_check_claims(const json_t *p, const struct wsg_jwt_policy *pol,
    int64_t now, int64_t *expp)
{
	const json_t	*exp, *nbf, *iat, *sub, *iss, *aud, *v;
	int64_t		 leeway;
	size_t		 i;

	exp = json_object_get(p, "exp");
	nbf = json_object_get(p, "nbf");
	iat = json_object_get(p, "iat");
	sub = json_object_get(p, "sub");
	if ((exp != NULL && !json_is_number(exp)) ||
	    (nbf != NULL && !json_is_number(nbf)) ||
	    (iat != NULL && !json_is_number(iat)) ||
	    (sub != NULL && !json_is_string(sub)))
		return WSG_JWT_CLAIM_TYPE;

	now = jwt_time_clamp(now);
	leeway = pol->jp_leeway < 0 ? 0 : pol->jp_leeway;
	if (leeway > JWT_LEEWAY_LIMIT)
		leeway = JWT_LEEWAY_LIMIT;
	*expp = 0;
	if (exp != NULL) {
		*expp = jwt_numeric_date(exp);
		if (now >= *expp + leeway)
			return WSG_JWT_EXPIRED;
	}
	if (nbf != NULL && now + leeway < jwt_numeric_date(nbf))
		return WSG_JWT_NOT_YET_VALID;

	if (pol->jp_issuer != NULL) {
		iss = json_object_get(p, "iss");
		if (!json_is_string(iss) ||
		    strcmp(json_string_value(iss), pol->jp_issuer) != 0)
			return WSG_JWT_BAD_ISSUER;
	}
	if (pol->jp_audience != NULL) {
		aud = json_object_get(p, "aud");
		if (aud == NULL || !jwt_aud_matches(aud, pol->jp_audience))
			return WSG_JWT_BAD_AUDIENCE;
	}
	for (i = 0; i < pol->jp_nrequired; i++) {
		v = json_object_get(p, pol->jp_required[i]);
		if (v == NULL || json_is_null(v))
			return WSG_JWT_MISSING_CLAIM;
	}
	return WSG_JWT_OK;
}

/*
 * Verify a compact JWS: shape, header and algorithm first, then the
 * signature, and only then parse and check the payload.
 */
enum wsg_jwt_result
jwt_verify(const char *token, size_t len, const struct wsg_jwt_policy *pol,
    int64_t now, struct wsg_jwt_claims **out)
{
	const struct jwt_alg_info	*ai = NULL;
	struct wsg_jwt_claims		*c;
	enum wsg_jwt_result		 r = WSG_JWT_MALFORMED;
	const char			*d1, *d2;
	uint8_t				*buf, *hdr, *pay, *sig;
	size_t				 hlen, plen, slen, henc, penc, senc;
	json_t				*h = NULL, *p = NULL;
	int64_t				 exp = 0;
	int				 nomem = 0;

	if (out != NULL)
		*out = NULL;
	if (token == NULL || pol == NULL || pol->jp_key == NULL ||
	    len == 0 || len > WSG_JWT_MAX_TOKEN)
		return WSG_JWT_MALFORMED;
	if ((d1 = memchr(token, '.', len)) == NULL ||
	    (d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token))) ==
	    NULL ||
	    memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL)
		return WSG_JWT_MALFORMED;
	henc = (size_t)(d1 - token);
	penc = (size_t)(d2 - d1 - 1);
	senc = len - (size_t)(d2 + 1 - token);

	/* Decoded parts are shorter than encoded ones: len bytes suffice. */
	if ((buf = malloc(len)) == NULL)
		return WSG_JWT_NOMEM;
	hdr = buf;
	if (jwt_b64url_decode(token, henc, hdr, henc, &hlen) == -1)
		goto done;
	pay = hdr + hlen;
	if (jwt_b64url_decode(d1 + 1, penc, pay, penc, &plen) == -1)
		goto done;
	sig = pay + plen;
	if (jwt_b64url_decode(d2 + 1, senc, sig, senc, &slen) == -1)
		goto done;

	if ((h = jwt_json_object(hdr, hlen, &nomem)) == NULL)
		goto done;
	if ((r = jwt_check_header(h, pol, &ai)) != WSG_JWT_OK)
		goto done;
	switch (jwt_verify_sig(ai, pol->jp_key, (const uint8_t *)token,
	    (size_t)(d2 - token), sig, slen)) {
	case 1:
		break;
	case 0:
		r = WSG_JWT_BAD_SIGNATURE;
		goto done;
	default:
		r = WSG_JWT_NOMEM;
		goto done;
	}
	r = WSG_JWT_MALFORMED;
	if ((p = jwt_json_object(pay, plen, &nomem)) == NULL)
		goto done;
	if ((r = jwt_check_claims(p, pol, now, &exp)) != WSG_JWT_OK)
		goto done;
	if (out != NULL) {
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			r = WSG_JWT_NOMEM;
			goto done;
		}
		c->c_payload = p;
		c->c_sub = json_string_value(json_object_get(p, "sub"));
		c->c_exp = exp;
		p = NULL;
		*out = c;
	}
 done:
	if (nomem)
		r = WSG_JWT_NOMEM;
	json_decref(h);
	json_decref(p);
	free(buf);
	return r;
}

/* The subject, or NULL. */
const char *
jwt_claims_sub(const struct wsg_jwt_claims *c)
{
	return c != NULL ? c->c_sub : NULL;
}

/* The expiry, or 0 when the token has none. */
int64_t
jwt_claims_exp(const struct wsg_jwt_claims *c)
{
	return c != NULL ? c->c_exp : 0;
}

/* Shortest "%.*g" form of a double that reads back to the same value. */
static int
jwt_render_real(double d, char *buf, size_t len)
{
	char	tmp[64];
	int	prec, n = -1;

	for (prec = 1; prec <= JWT_REAL_MAX_DIGITS; prec++) {
		n = snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
		if (n < 0 || (size_t)n >= sizeof(tmp))
			return -1;
		if (strtod(tmp, NULL) == d)
			break;
	}
	if ((size_t)n >= len)
		return -1;
	memcpy(buf, tmp, (size_t)n + 1);
	return 0;
}

/*
 * Render a scalar claim for a header; no control character gets through,
 * nor a string the upstream would read otherwise (outer spaces).
 */
int
jwt_claims_get(const struct wsg_jwt_claims *c, const char *name, char *buf,
    size_t len)
{
	const json_t	*v;
	const char	*s;
	size_t		 i, n;
	int		 w;

	if (buf == NULL || len == 0)
		return -1;
	buf[0] = '\0';
	if (c == NULL || name == NULL)
		return -1;
	if ((v = json_object_get(c->c_payload, name)) == NULL)
		return -1;
	switch (json_typeof(v)) {
	case JSON_STRING:
		s = json_string_value(v);
		n = json_string_length(v);
		if (n >= len)
			return -1;
		/* HTTP drops outer spaces: " admin" would arrive as "admin". */
		if (n > 0 && (s[0] == ' ' || s[n - 1] == ' '))
			return -1;
		for (i = 0; i < n; i++) {
			if ((unsigned char)s[i] < 0x20 ||
			    (unsigned char)s[i] == 0x7f)
				return -1;
		}
		memcpy(buf, s, n);
		buf[n] = '\0';
		return 0;
	case JSON_INTEGER:
		w = snprintf(buf, len, "%lld",
		    (long long)json_integer_value(v));
		break;
	case JSON_REAL:
		return jwt_render_real(json_real_value(v), buf, len);
	case JSON_TRUE:
	case JSON_FALSE:
		w = snprintf(buf, len, "%s", json_is_true(v) ? "true" :
		    "false");
		break;
	default:
		return -1;
	}
	if (w < 0 || (size_t)w >= len) {
		buf[0] = '\0';
		return -1;
	}
	return 0;
}

/* Free verified claims. */
void
jwt_claims_free(struct wsg_jwt_claims *c)
{
	if (c == NULL)
		return;
	json_decref(c->c_payload);
	free(c);
}
