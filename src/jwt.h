/*
 * JWT (JWS compact serialisation) verification for the auth: policy.
 * The algorithm is never trusted from the token alone: it must be in the
 * policy's allow-list and match the type of the configured key, so an RSA
 * public key can never be used as an HMAC secret.  Pure apart from
 * jwt_key_load() reading the key file: no sockets, no globals, no logging.
 */
#ifndef WSG_JWT_H
#define WSG_JWT_H

#include <stddef.h>
#include <stdint.h>

#define WSG_JWT_MAX_TOKEN	8192	/* bytes of the compact token */
#define WSG_JWT_MAX_DEPTH	16	/* JSON nesting in header and payload */
#define WSG_JWT_MAX_KEY_FILE	65536	/* bytes of a key file */
#define WSG_JWT_MIN_SECRET	32	/* bytes of an HMAC secret */
#define WSG_JWT_MIN_RSA_BITS	2048

enum wsg_jwt_alg {
	WSG_JWT_HS256 = 0,
	WSG_JWT_HS384,
	WSG_JWT_HS512,
	WSG_JWT_RS256,
	WSG_JWT_RS384,
	WSG_JWT_RS512,
	WSG_JWT_PS256,
	WSG_JWT_ES256,
	WSG_JWT_ES384,
	WSG_JWT_EDDSA,
	WSG_JWT_NALGS			/* count, not an algorithm */
};

/* Bit of an algorithm in wsg_jwt_policy.jp_algs. */
#define WSG_JWT_ALG_BIT(a)	(1u << (a))

/*
 * Verification outcomes.  The caller maps WSG_JWT_EXPIRED to auth_expired,
 * WSG_JWT_NOMEM (the token could not be checked) to internal_error and
 * every other failure to auth_invalid (SPEC.md, 401 row).
 */
enum wsg_jwt_result {
	WSG_JWT_OK = 0,
	WSG_JWT_MALFORMED,
	WSG_JWT_BAD_ALG,
	WSG_JWT_BAD_SIGNATURE,
	WSG_JWT_EXPIRED,
	WSG_JWT_NOT_YET_VALID,
	WSG_JWT_BAD_ISSUER,
	WSG_JWT_BAD_AUDIENCE,
	WSG_JWT_MISSING_CLAIM,
	WSG_JWT_CLAIM_TYPE,	/* exp, nbf or iat not a number, sub not a string */
	WSG_JWT_NOMEM
};

/* A verification key: an HMAC secret or an RSA, EC or Ed25519 public key. */
struct wsg_jwt_key;

/* Decoded, verified payload. */
struct wsg_jwt_claims;

struct wsg_jwt_policy {
	unsigned int			 jp_algs;	/* WSG_JWT_ALG_BIT()s */
	const struct wsg_jwt_key	*jp_key;
	const char			*jp_issuer;	/* NULL: not checked */
	const char			*jp_audience;	/* NULL: not checked */
	int64_t				 jp_leeway;	/* seconds, >= 0 */
	const char *const		*jp_required;	/* claim names */
	size_t				 jp_nrequired;
};

/*
 * JWS "alg" name (case-sensitive, as RFC 7515 has it) to enum wsg_jwt_alg;
 * -1 for unknown names and for "none" in any case.
 */
int			 jwt_alg_parse(const char *);

/* The JWS name of an algorithm, or NULL. */
const char		*jwt_alg_name(enum wsg_jwt_alg);

/*
 * Load a key file.  PEM ("-----BEGIN" anywhere in it): one public key or
 * one X.509 certificate's key (its chain may follow), RSA of at least 2048
 * bits, EC P-256 or P-384, or Ed25519; a PEM file that does not load, or
 * holds a second key, is an error, never a secret.
 * Anything else: the bytes are an HMAC secret, one trailing "\n" or "\r\n"
 * removed, at least 32 bytes.  NULL with a message in err on failure.
 */
struct wsg_jwt_key	*jwt_key_load(const char *, char *, size_t);

/* The same from bytes in memory (the file's contents). */
struct wsg_jwt_key	*jwt_key_load_mem(const void *, size_t, char *, size_t);

void			 jwt_key_free(struct wsg_jwt_key *);

/*
 * May this key verify this algorithm?  HS* only with HMAC secrets, RS* and
 * PS256 only with RSA, ES256 only with P-256, ES384 only with P-384, EdDSA
 * only with Ed25519.
 */
int			 jwt_key_allows(const struct wsg_jwt_key *,
			    enum wsg_jwt_alg);

/*
 * The fewest bytes of HMAC secret an algorithm should have, its hash's
 * output size (RFC 7518 3.2); 0 for an algorithm that is not HS*.
 */
size_t			 jwt_alg_min_secret(enum wsg_jwt_alg);

/* The length of an HMAC secret, 0 for a public key. */
size_t			 jwt_key_secret_len(const struct wsg_jwt_key *);

/*
 * Verify a compact JWS of len bytes against the policy at time now (Unix
 * seconds).  On WSG_JWT_OK and out not NULL, *out holds the claims (free
 * with jwt_claims_free()); otherwise *out is NULL.
 */
enum wsg_jwt_result	 jwt_verify(const char *, size_t,
			    const struct wsg_jwt_policy *, int64_t,
			    struct wsg_jwt_claims **);

/* Short log detail for a result ("signature does not verify"). */
const char		*jwt_result_str(enum wsg_jwt_result);

/* The "sub" claim, or NULL when absent. */
const char		*jwt_claims_sub(const struct wsg_jwt_claims *);

/* The "exp" claim rounded up to whole seconds, or 0 when absent. */
int64_t			 jwt_claims_exp(const struct wsg_jwt_claims *);

/*
 * Render a top-level string, integer, real, true or false claim as text
 * for a forwarded header.  -1 when absent, null, an object or array, when
 * it holds a control character (CR, LF, NUL, ...), when a string starts or
 * ends with a space (HTTP would strip it), or when it does not fit in len
 * bytes with its NUL.
 */
int			 jwt_claims_get(const struct wsg_jwt_claims *,
			    const char *, char *, size_t);

void			 jwt_claims_free(struct wsg_jwt_claims *);

/*
 * Strict base64url (RFC 4648 section 5) without padding: no '=', no
 * whitespace, no impossible length (len % 4 == 1), no stray low bits in
 * the last character.  0 and the decoded length in *outlen, or -1.
 */
int			 jwt_b64url_decode(const char *, size_t, uint8_t *,
			    size_t, size_t *);

#endif /* WSG_JWT_H */
