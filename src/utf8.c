/*
 * Incremental UTF-8 validation with a small hand-written state machine.
 */
#include "autoconf.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "frame.h"
#include "utf8.h"

/*
 * A mid-sequence state packs the continuation bytes still expected and the
 * range allowed for the next one: (remaining << 16) | (lo << 8) | hi.  It is
 * never 0 (remaining >= 1) and never REJECT (remaining <= 3).
 */
#define UTF8_STATE(rem, lo, hi)	(((uint32_t)(rem) << 16) |		\
				    ((uint32_t)(lo) << 8) | (uint32_t)(hi))
#define UTF8_REM(st)		((st) >> 16)
#define UTF8_LO(st)		(((st) >> 8) & 0xff)
#define UTF8_HI(st)		((st) & 0xff)

#define UTF8_ASCII_MASK		0x8080808080808080ULL
#define UTF8_MASKED_CHUNK	256

/* Advance the state by one byte. */
static inline uint32_t
utf8_step(uint32_t st, uint8_t b)
{
	uint32_t	rem;

	if (st == WSG_UTF8_ACCEPT) {
		if (b < 0x80)
			return WSG_UTF8_ACCEPT;
		if (b < 0xc2)		/* continuation, or overlong C0/C1 */
			return WSG_UTF8_REJECT;
		if (b < 0xe0)
			return UTF8_STATE(1, 0x80, 0xbf);
		if (b == 0xe0)		/* no overlong 3-byte forms */
			return UTF8_STATE(2, 0xa0, 0xbf);
		if (b == 0xed)		/* no surrogates D800..DFFF */
			return UTF8_STATE(2, 0x80, 0x9f);
		if (b < 0xf0)
			return UTF8_STATE(2, 0x80, 0xbf);
		if (b == 0xf0)		/* no overlong 4-byte forms */
			return UTF8_STATE(3, 0x90, 0xbf);
		if (b < 0xf4)
			return UTF8_STATE(3, 0x80, 0xbf);
		if (b == 0xf4)		/* nothing above U+10FFFF */
			return UTF8_STATE(3, 0x80, 0x8f);
		return WSG_UTF8_REJECT;
	}
	if (b < UTF8_LO(st) || b > UTF8_HI(st))
		return WSG_UTF8_REJECT;
	rem = UTF8_REM(st) - 1;
	if (rem == 0)
		return WSG_UTF8_ACCEPT;
	return UTF8_STATE(rem, 0x80, 0xbf);
}

/*
 * The length of the run of ASCII at p, rounded down to whole 8-byte words,
 * after each word is XORed with m (0 for plain payload, the mask repeated
 * for masked payload: it lines up again every 8 bytes, so every word takes
 * the same m).  Text is mostly ASCII, so blocks of 64 bytes go first, with
 * SSE2 where the compiler has it (every x86-64); the word loop then finds
 * where the run ends.
 */
static inline size_t
utf8_ascii_run(const uint8_t *p, size_t len, uint64_t m)
{
	uint64_t	w;
	size_t		i = 0;
#ifdef __SSE2__
	__m128i		vm, a, b, c, d;

	vm = _mm_set1_epi64x((long long)m);
	for (; len - i >= 64; i += 64) {
		a = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(p + i)),
		    vm);
		b = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(p + i +
		    16)), vm);
		c = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(p + i +
		    32)), vm);
		d = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(p + i +
		    48)), vm);
		if (_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a, b),
		    _mm_or_si128(c, d))) != 0)
			break;
	}
#else
	uint64_t	x[4];

	for (; len - i >= 32; i += 32) {
		memcpy(x, p + i, sizeof(x));
		if (((x[0] ^ m) | (x[1] ^ m) | (x[2] ^ m) | (x[3] ^ m)) &
		    UTF8_ASCII_MASK)
			break;
	}
#endif
	for (; len - i >= 8; i += 8) {
		memcpy(&w, p + i, sizeof(w));
		if ((w ^ m) & UTF8_ASCII_MASK)
			break;
	}
	return i;
}

/* Validate len bytes, skipping runs of ASCII between characters. */
uint32_t
utf8_validate(uint32_t st, const uint8_t *p, size_t len)
{
	size_t		i = 0;

	if (st == WSG_UTF8_REJECT)
		return st;
	while (i < len) {
		if (st == WSG_UTF8_ACCEPT) {
			i += utf8_ascii_run(p + i, len - i, 0);
			if (i == len)
				break;
		}
		st = utf8_step(st, p[i++]);
		if (st == WSG_UTF8_REJECT)
			break;
	}
	return st;
}

/*
 * Validate masked payload.  Runs of ASCII are checked on the masked words
 * themselves (a word is ASCII when its unmasked high bits are clear, and
 * the mask lines up again every 8 bytes); the rest is unmasked in small
 * chunks onto the stack and stepped through.
 */
uint32_t
utf8_validate_masked(uint32_t st, const uint8_t *p, size_t len,
    const uint8_t mask[4], uint64_t off)
{
	uint8_t		buf[UTF8_MASKED_CHUNK], m8[8];
	uint64_t	m;
	size_t		i, n, k;

	while (len > 0 && st != WSG_UTF8_REJECT) {
		if (st == WSG_UTF8_ACCEPT && len >= 8) {
			for (k = 0; k < sizeof(m8); k++)
				m8[k] = mask[(off + k) & 3];
			memcpy(&m, m8, sizeof(m));
			i = utf8_ascii_run(p, len, m);
			p += i;
			len -= i;
			off += i;
			if (len == 0)
				break;
		}
		n = len < sizeof(buf) ? len : sizeof(buf);
		frame_unmask(buf, p, n, mask, off);
		st = utf8_validate(st, buf, n);
		p += n;
		len -= n;
		off += n;
	}
	return st;
}
