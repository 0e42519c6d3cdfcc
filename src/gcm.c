/*
 * AES-GCM with AES-NI and PCLMULQDQ, for short records.
 *
 * GHASH works on blocks with their 16 bytes reversed, so that bit i of the
 * 128-bit integer is the coefficient of x^(127 - i) in GCM's bit-reflected
 * field: multiplying by x is then a right shift, and the carry-less product
 * of two such values, shifted left by one, holds the coefficients of
 * x^255..x^128 in its low half and those of x^127..x^0 in its high half.
 * The low half q is folded in with x^128 = x^7 + x^2 + x + 1: its bits that
 * would pass x^127 when multiplied by x, x^2 and x^7 are taken first (they
 * land at x^0..x^6 and need no further folding), then q and those bits are
 * multiplied by 1 + x + x^2 + x^7 with right shifts.
 *
 * Every step is branch-free on secret data and uses no tables: the AES
 * rounds and the multiplications run in constant time on the CPU.
 */
#include "autoconf.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>

#include "gcm.h"

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#define GCM_TARGET	__attribute__((target("aes,pclmul,ssse3")))
#define GCM_LANES	4	/* counter blocks encrypted side by side */

/* Byte reversal of a block, between memory order and GHASH order. */
#define GCM_BSWAP	_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,	\
			    12, 13, 14, 15)

/* A 128-bit logical right shift by s, 0 < s < 64. */
#define GCM_SHR(x, s)	_mm_or_si128(_mm_srli_epi64((x), (s)),		\
			    _mm_slli_epi64(_mm_srli_si128((x), 8), 64 - (s)))

int
gcm_available(void)
{
	__builtin_cpu_init();
	return (__builtin_cpu_supports("aes") &&
	    __builtin_cpu_supports("pclmul") &&
	    __builtin_cpu_supports("ssse3"));
}

/* One step of the key schedule: fold the previous key's words, add t. */
GCM_TARGET static inline __m128i
gcm_expand(__m128i k, __m128i t)
{
	k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
	k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
	k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
	return (_mm_xor_si128(k, t));
}

/*
 * The AES key schedule (FIPS 197, 5.2) through AESKEYGENASSIST, whose
 * round constant must be an immediate, hence macros.  AES-128 derives each
 * round key from the one before with RotWord, SubWord and the constant;
 * AES-256 alternates that step with one of SubWord alone.
 */
#define GCM_K128(i, rcon)	(rk[i] = gcm_expand(rk[(i) - 1],		\
	_mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[(i) - 1], rcon), 0xff)))
#define GCM_K256(i, rcon) do {						\
	rk[i] = gcm_expand(rk[(i) - 2], _mm_shuffle_epi32(			\
	    _mm_aeskeygenassist_si128(rk[(i) - 1], rcon), 0xff));		\
	if ((i) + 1 < 15)						\
		rk[(i) + 1] = gcm_expand(rk[(i) - 1], _mm_shuffle_epi32(	\
		    _mm_aeskeygenassist_si128(rk[i], 0), 0xaa));		\
} while (0)

GCM_TARGET static inline __m128i
gcm_block(const __m128i *rk, int rounds, __m128i x)
{
	int	i;

	x = _mm_xor_si128(x, rk[0]);
	for (i = 1; i < rounds; i++)
		x = _mm_aesenc_si128(x, rk[i]);
	return (_mm_aesenclast_si128(x, rk[rounds]));
}

/*
 * The carry-less product of a and b, added into the 256-bit sum lo, hi:
 * products for several blocks are summed before one reduction.
 */
GCM_TARGET static inline void
gcm_clmul(__m128i a, __m128i b, __m128i *lo, __m128i *hi)
{
	__m128i	mid;

	mid = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x01),
	    _mm_clmulepi64_si128(a, b, 0x10));
	*lo = _mm_xor_si128(*lo, _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x00),
	    _mm_slli_si128(mid, 8)));
	*hi = _mm_xor_si128(*hi, _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x11),
	    _mm_srli_si128(mid, 8)));
}

/* A sum of products reduced to a field element in GHASH order. */
GCM_TARGET static inline __m128i
gcm_reduce(__m128i lo, __m128i hi)
{
	__m128i	o, q;

	/* The 255-bit product, shifted left by one across both halves. */
	hi = _mm_or_si128(_mm_slli_epi64(hi, 1),
	    _mm_or_si128(_mm_slli_si128(_mm_srli_epi64(hi, 63), 8),
	    _mm_srli_si128(_mm_srli_epi64(lo, 63), 8)));
	lo = _mm_or_si128(_mm_slli_epi64(lo, 1),
	    _mm_slli_si128(_mm_srli_epi64(lo, 63), 8));

	/* The bits of lo that pass x^127 under x, x^2 and x^7. */
	o = _mm_slli_si128(_mm_xor_si128(_mm_slli_epi64(lo, 63),
	    _mm_xor_si128(_mm_slli_epi64(lo, 62), _mm_slli_epi64(lo, 57))), 8);
	q = _mm_xor_si128(lo, o);
	return (_mm_xor_si128(_mm_xor_si128(hi, q),
	    _mm_xor_si128(GCM_SHR(q, 1),
	    _mm_xor_si128(GCM_SHR(q, 2), GCM_SHR(q, 7)))));
}

/* a * b in GF(2^128), both in GHASH order. */
GCM_TARGET static inline __m128i
gcm_mul(__m128i a, __m128i b)
{
	__m128i	lo = _mm_setzero_si128(), hi = _mm_setzero_si128();

	gcm_clmul(a, b, &lo, &hi);
	return (gcm_reduce(lo, hi));
}

/*
 * Hash len bytes of p into y, the last block padded with zeros; four
 * blocks at a time take one reduction, with H^4..H as their factors.
 */
GCM_TARGET static inline __m128i
gcm_hash(__m128i y, const __m128i *h, const uint8_t *p, size_t len)
{
	const __m128i	bswap = GCM_BSWAP;
	__m128i		lo, hi;
	uint8_t		last[16];

	for (; len >= 64; p += 64, len -= 64) {
		lo = hi = _mm_setzero_si128();
		gcm_clmul(_mm_xor_si128(y, _mm_shuffle_epi8(
		    _mm_loadu_si128((const __m128i *)p), bswap)), h[3],
		    &lo, &hi);
		gcm_clmul(_mm_shuffle_epi8(_mm_loadu_si128(
		    (const __m128i *)(p + 16)), bswap), h[2], &lo, &hi);
		gcm_clmul(_mm_shuffle_epi8(_mm_loadu_si128(
		    (const __m128i *)(p + 32)), bswap), h[1], &lo, &hi);
		gcm_clmul(_mm_shuffle_epi8(_mm_loadu_si128(
		    (const __m128i *)(p + 48)), bswap), h[0], &lo, &hi);
		y = gcm_reduce(lo, hi);
	}
	for (; len >= 16; p += 16, len -= 16)
		y = gcm_mul(_mm_xor_si128(y, _mm_shuffle_epi8(
		    _mm_loadu_si128((const __m128i *)p), bswap)), h[0]);
	if (len > 0) {
		memset(last, 0, sizeof(last));
		memcpy(last, p, len);
		y = gcm_mul(_mm_xor_si128(y, _mm_shuffle_epi8(
		    _mm_loadu_si128((const __m128i *)last), bswap)), h[0]);
	}
	return (y);
}

/*
 * XOR len bytes of in with the key stream that starts at counter block
 * ctr (in GHASH order, so that the 32-bit counter is its low lane).
 */
GCM_TARGET static void
gcm_ctr(const __m128i *rk, int rounds, __m128i ctr, const uint8_t *in,
    uint8_t *out, size_t len)
{
	const __m128i	one = _mm_set_epi32(0, 0, 0, 1);
	const __m128i	bswap = GCM_BSWAP;
	__m128i		x0, x1, x2, x3;
	uint8_t		last[16];
	int		r;

	for (; len >= 16 * GCM_LANES; in += 16 * GCM_LANES,
	    out += 16 * GCM_LANES, len -= 16 * GCM_LANES) {
		x0 = _mm_xor_si128(_mm_shuffle_epi8(ctr, bswap), rk[0]);
		ctr = _mm_add_epi32(ctr, one);
		x1 = _mm_xor_si128(_mm_shuffle_epi8(ctr, bswap), rk[0]);
		ctr = _mm_add_epi32(ctr, one);
		x2 = _mm_xor_si128(_mm_shuffle_epi8(ctr, bswap), rk[0]);
		ctr = _mm_add_epi32(ctr, one);
		x3 = _mm_xor_si128(_mm_shuffle_epi8(ctr, bswap), rk[0]);
		ctr = _mm_add_epi32(ctr, one);
		for (r = 1; r < rounds; r++) {
			x0 = _mm_aesenc_si128(x0, rk[r]);
			x1 = _mm_aesenc_si128(x1, rk[r]);
			x2 = _mm_aesenc_si128(x2, rk[r]);
			x3 = _mm_aesenc_si128(x3, rk[r]);
		}
		x0 = _mm_aesenclast_si128(x0, rk[rounds]);
		x1 = _mm_aesenclast_si128(x1, rk[rounds]);
		x2 = _mm_aesenclast_si128(x2, rk[rounds]);
		x3 = _mm_aesenclast_si128(x3, rk[rounds]);
		_mm_storeu_si128((__m128i *)out, _mm_xor_si128(x0,
		    _mm_loadu_si128((const __m128i *)in)));
		_mm_storeu_si128((__m128i *)(out + 16), _mm_xor_si128(x1,
		    _mm_loadu_si128((const __m128i *)(in + 16))));
		_mm_storeu_si128((__m128i *)(out + 32), _mm_xor_si128(x2,
		    _mm_loadu_si128((const __m128i *)(in + 32))));
		_mm_storeu_si128((__m128i *)(out + 48), _mm_xor_si128(x3,
		    _mm_loadu_si128((const __m128i *)(in + 48))));
	}
	for (; len >= 16; in += 16, out += 16, len -= 16) {
		x0 = gcm_block(rk, rounds, _mm_shuffle_epi8(ctr, bswap));
		ctr = _mm_add_epi32(ctr, one);
		_mm_storeu_si128((__m128i *)out, _mm_xor_si128(x0,
		    _mm_loadu_si128((const __m128i *)in)));
	}
	if (len > 0) {
		/* The stack copy holds text, never bare key stream. */
		memcpy(last, in, len);
		x0 = gcm_block(rk, rounds, _mm_shuffle_epi8(ctr, bswap));
		_mm_storeu_si128((__m128i *)last, _mm_xor_si128(x0,
		    _mm_loadu_si128((const __m128i *)last)));
		memcpy(out, last, len);
	}
}

GCM_TARGET static int
gcm_setkey_ni(struct wsg_gcm *g, const uint8_t *key, size_t keylen)
{
	__m128i	rk[15], h[4];
	int	i;

	rk[0] = _mm_loadu_si128((const __m128i *)key);
	if (keylen == 16) {
		GCM_K128(1, 0x01); GCM_K128(2, 0x02); GCM_K128(3, 0x04);
		GCM_K128(4, 0x08); GCM_K128(5, 0x10); GCM_K128(6, 0x20);
		GCM_K128(7, 0x40); GCM_K128(8, 0x80); GCM_K128(9, 0x1b);
		GCM_K128(10, 0x36);
		g->g_rounds = 10;
	} else {
		rk[1] = _mm_loadu_si128((const __m128i *)(key + 16));
		GCM_K256(2, 0x01); GCM_K256(4, 0x02); GCM_K256(6, 0x04);
		GCM_K256(8, 0x08); GCM_K256(10, 0x10); GCM_K256(12, 0x20);
		GCM_K256(14, 0x40);
		g->g_rounds = 14;
	}
	for (i = 0; i <= g->g_rounds; i++)
		_mm_storeu_si128((__m128i *)g->g_rk[i], rk[i]);
	h[0] = _mm_shuffle_epi8(gcm_block(rk, g->g_rounds,
	    _mm_setzero_si128()), GCM_BSWAP);
	for (i = 1; i < 4; i++)
		h[i] = gcm_mul(h[i - 1], h[0]);
	for (i = 0; i < 4; i++)
		_mm_storeu_si128((__m128i *)g->g_h[i], h[i]);
	OPENSSL_cleanse(rk, sizeof(rk));
	OPENSSL_cleanse(h, sizeof(h));
	return (0);
}

int
gcm_setkey(struct wsg_gcm *g, const uint8_t *key, size_t keylen)
{
	if ((keylen != 16 && keylen != 32) || !gcm_available())
		return (-1);
	return (gcm_setkey_ni(g, key, keylen));
}

/* The tag over aad and the ciphertext ct, for the key and nonce. */
GCM_TARGET static __m128i
gcm_tag(const __m128i *rk, int rounds, const __m128i *h, __m128i j0,
    const uint8_t *aad, size_t aadlen, const uint8_t *ct, size_t len)
{
	__m128i	y = _mm_setzero_si128();

	y = gcm_hash(y, h, aad, aadlen);
	y = gcm_hash(y, h, ct, len);
	y = gcm_mul(_mm_xor_si128(y, _mm_set_epi64x((long long)aadlen * 8,
	    (long long)len * 8)), h[0]);
	return (_mm_xor_si128(_mm_shuffle_epi8(y, GCM_BSWAP),
	    gcm_block(rk, rounds, _mm_shuffle_epi8(j0, GCM_BSWAP))));
}

/*
 * The key's round keys and hash keys, and the first counter block.  The
 * copies on the stack are not erased: the key itself stays in g.
 */
GCM_TARGET static inline __m128i
gcm_load(const struct wsg_gcm *g, const uint8_t *nonce, __m128i *rk,
    __m128i *h)
{
	uint64_t	n0;
	uint32_t	n1;
	int		i;

	for (i = 0; i <= g->g_rounds; i++)
		rk[i] = _mm_loadu_si128((const __m128i *)g->g_rk[i]);
	for (i = 0; i < 4; i++)
		h[i] = _mm_loadu_si128((const __m128i *)g->g_h[i]);
	memcpy(&n0, nonce, sizeof(n0));
	memcpy(&n1, nonce + 8, sizeof(n1));
	return (_mm_shuffle_epi8(_mm_set_epi32(0x01000000, (int)n1,
	    (int)(n0 >> 32), (int)n0), GCM_BSWAP));
}

GCM_TARGET void
gcm_seal(const struct wsg_gcm *g, const uint8_t nonce[WSG_GCM_NONCE],
    const uint8_t *aad, size_t aadlen, uint8_t *buf, size_t len,
    uint8_t tag[WSG_GCM_TAG])
{
	__m128i	rk[15], h[4], j0;

	j0 = gcm_load(g, nonce, rk, h);
	gcm_ctr(rk, g->g_rounds, _mm_add_epi32(j0, _mm_set_epi32(0, 0, 0, 1)),
	    buf, buf, len);
	_mm_storeu_si128((__m128i *)tag, gcm_tag(rk, g->g_rounds, h, j0, aad,
	    aadlen, buf, len));
}

GCM_TARGET int
gcm_open(const struct wsg_gcm *g, const uint8_t nonce[WSG_GCM_NONCE],
    const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t len,
    uint8_t *out, const uint8_t tag[WSG_GCM_TAG])
{
	__m128i	rk[15], h[4], j0, t;

	j0 = gcm_load(g, nonce, rk, h);
	t = gcm_tag(rk, g->g_rounds, h, j0, aad, aadlen, in, len);
	/* All 16 bytes are compared, whichever differ. */
	if (_mm_movemask_epi8(_mm_cmpeq_epi8(t,
	    _mm_loadu_si128((const __m128i *)tag))) != 0xffff)
		return (-1);
	gcm_ctr(rk, g->g_rounds, _mm_add_epi32(j0, _mm_set_epi32(0, 0, 0, 1)),
	    in, out, len);
	return (0);
}

#else /* no AES-NI path for this target: OpenSSL does every record */

int
gcm_available(void)
{
	return (0);
}

int
gcm_setkey(struct wsg_gcm *g, const uint8_t *key, size_t keylen)
{
	return (-1);
}

void
gcm_seal(const struct wsg_gcm *g, const uint8_t nonce[WSG_GCM_NONCE],
    const uint8_t *aad, size_t aadlen, uint8_t *buf, size_t len,
    uint8_t tag[WSG_GCM_TAG])
{
	memset(tag, 0, WSG_GCM_TAG);
}

int
gcm_open(const struct wsg_gcm *g, const uint8_t nonce[WSG_GCM_NONCE],
    const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t len,
    uint8_t *out, const uint8_t tag[WSG_GCM_TAG])
{
	return (-1);
}

#endif

void
gcm_clear(struct wsg_gcm *g)
{
	OPENSSL_cleanse(g, sizeof(*g));
}
