/*
 * Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF), resumable across fragment boundaries and failing
 * at the first byte that cannot start or continue a valid sequence.
 */
#ifndef WSG_UTF8_H
#define WSG_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define WSG_UTF8_ACCEPT	0	/* between characters */
#define WSG_UTF8_REJECT	0xffffffffU	/* sticky failure */

/* Feed len bytes; returns the new state (ACCEPT, REJECT or mid-sequence). */
uint32_t	utf8_validate(uint32_t, const uint8_t *, size_t);

/*
 * The same over masked client payload: bytes are XORed with mask starting
 * at offset before validation, without writing them anywhere.
 */
uint32_t	utf8_validate_masked(uint32_t, const uint8_t *, size_t,
		    const uint8_t[4], uint64_t);

#endif /* WSG_UTF8_H */
