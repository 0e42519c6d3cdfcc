/*
 * Incremental UTF-8 validation with a small hand-written state machine.
 */
#include "autoconf.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

/* Validate len bytes, skipping ASCII eight bytes at a time between chars. */
uint32_t
utf8_validate(uint32_t st, const uint8_t *p, size_t len)
{
	uint64_t	w;
	size_t		i = 0;

	if (st == WSG_UTF8_REJECT)
		return st;
	while (i < len) {
		if (st == WSG_UTF8_ACCEPT) {
			while (len - i >= 8) {
				memcpy(&w, p + i, sizeof(w));
				if (w & UTF8_ASCII_MASK)
					break;
				i += 8;
			}
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
	uint64_t	m, w;
	size_t		i, n, k;

	while (len > 0 && st != WSG_UTF8_REJECT) {
		if (st == WSG_UTF8_ACCEPT && len >= 8) {
			for (k = 0; k < sizeof(m8); k++)
				m8[k] = mask[(off + k) & 3];
			memcpy(&m, m8, sizeof(m));
			for (i = 0; len - i >= 8; i += 8) {
				memcpy(&w, p + i, sizeof(w));
				if ((w ^ m) & UTF8_ASCII_MASK)
					break;
			}
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
