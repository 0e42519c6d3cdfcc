/*
 * libFuzzer harness for streaming UTF-8 validation as the relay does it: a
 * text message cut into fragments at arbitrary points (a code point split
 * across frames at any byte), masked or not, each fragment's payload fed
 * in arbitrary pieces at arbitrary mask offsets.  The verdict is checked
 * against an independent reference (RFC 3629 code point ranges) and
 * against frame_msg_end()'s 1007 at the FIN frame.
 *
 * Input: 4 bytes of masking key, 1 byte seeding the cut points, then the
 * message payload.
 */
#include "autoconf.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "utf8.h"

#define FUZZ_ASSERT(c)	do { if (!(c)) abort(); } while (0)
#define FUZZ_MAX_IN	(256 * 1024)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* The reference's verdicts. */
#define REF_VALID	0	/* whole characters only */
#define REF_TRUNCATED	1	/* valid, but ends inside a character */
#define REF_INVALID	2	/* *bad: the first byte no text can have */

/*
 * Can a sequence that starts with lead and has k of its n continuation
 * bytes (cont) still become a character?  The code points it can still
 * become form one interval: the known bits, the rest all 0 or all 1.
 */
static int
ref_possible(uint8_t lead, const uint8_t *cont, size_t k, size_t n)
{
	static const uint32_t	lo[4] = { 0, 0x80, 0x800, 0x10000 };
	static const uint32_t	hi[4] = { 0x7f, 0x7ff, 0xffff, 0x10ffff };
	uint32_t		min, max;
	size_t			i;

	min = lead & (0x7f >> (n + 1));
	for (i = 0; i < k; i++) {
		if ((cont[i] & 0xc0) != 0x80)
			return 0;
		min = (min << 6) | (cont[i] & 0x3f);
	}
	max = min;
	for (; i < n; i++) {
		min <<= 6;
		max = (max << 6) | 0x3f;
	}
	if (max < lo[n] || min > hi[n])
		return 0;
	/* Entirely inside the surrogates D800..DFFF: nothing left. */
	if (min >= 0xd800 && max <= 0xdfff)
		return 0;
	return 1;
}

/* Classify p by code points, not by a state machine. */
static int
ref_check(const uint8_t *p, size_t len, size_t *bad)
{
	size_t	i = 0, n, k, avail;

	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if ((p[i] & 0xe0) == 0xc0)
			n = 1;
		else if ((p[i] & 0xf0) == 0xe0)
			n = 2;
		else if ((p[i] & 0xf8) == 0xf0)
			n = 3;
		else {
			*bad = i;
			return REF_INVALID;
		}
		/* Each prefix must still be able to become a character. */
		avail = len - i - 1 < n ? len - i - 1 : n;
		for (k = 0; k <= avail; k++) {
			if (!ref_possible(p[i], p + i + 1, k, n)) {
				*bad = i + k;
				return REF_INVALID;
			}
		}
		if (avail < n)
			return REF_TRUNCATED;
		i += n + 1;
	}
	return REF_VALID;
}

/* A small generator for the cut points, seeded from the input. */
static uint32_t
fuzz_next(uint32_t *s)
{
	*s = *s * 1103515245U + 12345U;
	return *s >> 16;
}

/* The length of the next piece: mostly tiny, sometimes long. */
static size_t
fuzz_piece(uint32_t *s, size_t left)
{
	size_t	n;

	switch (fuzz_next(s) & 3) {
	case 0:
		n = fuzz_next(s) % 4;
		break;
	case 1:
		n = fuzz_next(s) % 17;
		break;
	case 2:
		n = fuzz_next(s) % 300;
		break;
	default:
		n = left;
		break;
	}
	return n < left ? n : left;
}

/* Mask src into dst as a client frame's payload would be on the wire. */
static void
fuzz_mask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4])
{
	size_t	i;

	for (i = 0; i < n; i++)
		dst[i] = src[i] ^ key[i & 3];
}

/*
 * Send the message as frames of the given cuts, checking each header,
 * validating each payload in pieces, and ending it at the FIN frame.
 * Returns the frame result the relay would act on.
 */
static enum wsg_frame_result
fuzz_message(const uint8_t *msg, size_t len, const uint8_t key[4],
    int masked, uint32_t seed, uint32_t *final)
{
	struct wsg_frame_limits	lim;
	struct wsg_msg_state	st;
	struct wsg_frame	f;
	enum wsg_frame_result	r;
	uint8_t			hdr[WSG_FRAME_MAX_HEADER], *wire;
	size_t			off = 0, flen, h, p, n;
	int			first = 1, fin;

	memset(&st, 0, sizeof(st));
	lim.fl_max_frame = FUZZ_MAX_IN;
	lim.fl_max_message = FUZZ_MAX_IN;
	lim.fl_allow_binary = 1;
	lim.fl_expect_masked = masked;
	wire = malloc(len ? len : 1);
	if (wire == NULL)
		abort();
	do {
		flen = fuzz_piece(&seed, len - off);
		fin = off + flen == len;
		h = frame_build_header(hdr, fin, first ? WSG_OP_TEXT :
		    WSG_OP_CONT, flen, masked ? key : NULL);
		FUZZ_ASSERT(frame_parse_header(hdr, h, &f) == WSG_FRAME_OK);
		r = frame_check_header(&f, &lim, &st);
		FUZZ_ASSERT(r == WSG_FRAME_OK);
		FUZZ_ASSERT(st.ms_opcode == WSG_OP_TEXT && st.ms_len == off +
		    flen);
		if (masked)
			fuzz_mask(wire, msg + off, flen, f.f_mask);
		else
			memcpy(wire, msg + off, flen);
		/* The payload as the reads deliver it: pieces of any size. */
		for (p = 0; p < flen; p += n) {
			n = fuzz_piece(&seed, flen - p);
			if (n == 0)
				n = 1;
			if (masked)
				st.ms_utf8 = utf8_validate_masked(st.ms_utf8,
				    wire + p, n, f.f_mask, p);
			else
				st.ms_utf8 = utf8_validate(st.ms_utf8,
				    wire + p, n);
		}
		if (st.ms_utf8 == WSG_UTF8_REJECT) {
			*final = st.ms_utf8;
			free(wire);
			return WSG_FRAME_INVALID_UTF8;
		}
		*final = st.ms_utf8;
		r = frame_msg_end(&f, &st, 1);
		if (!fin)
			FUZZ_ASSERT(r == WSG_FRAME_OK);
		off += flen;
		first = 0;
	} while (!fin);
	FUZZ_ASSERT(st.ms_opcode == 0 && st.ms_len == 0);
	free(wire);
	return r;
}

/* One message, checked every way against the reference. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum wsg_frame_result	r;
	const uint8_t		*key, *msg;
	uint32_t		seed, whole, st;
	size_t			len, bad = 0, i;
	int			ref, masked;

	if (size < 5 || size - 5 > FUZZ_MAX_IN)
		return 0;
	key = data;
	seed = data[4];
	msg = data + 5;
	len = size - 5;

	ref = ref_check(msg, len, &bad);
	whole = utf8_validate(WSG_UTF8_ACCEPT, msg, len);
	FUZZ_ASSERT((ref == REF_VALID) == (whole == WSG_UTF8_ACCEPT));
	FUZZ_ASSERT((ref == REF_INVALID) == (whole == WSG_UTF8_REJECT));
	if (ref == REF_INVALID) {
		/* Fail fast: the bytes before the bad one are still text. */
		FUZZ_ASSERT(bad < len);
		FUZZ_ASSERT(utf8_validate(WSG_UTF8_ACCEPT, msg, bad) !=
		    WSG_UTF8_REJECT);
		FUZZ_ASSERT(utf8_validate(WSG_UTF8_ACCEPT, msg, bad + 1) ==
		    WSG_UTF8_REJECT);
	}
	/* A byte at a time gives the same state as all at once. */
	st = WSG_UTF8_ACCEPT;
	for (i = 0; i < len && st != WSG_UTF8_REJECT; i++)
		st = utf8_validate(st, msg + i, 1);
	FUZZ_ASSERT(st == whole);

	for (masked = 0; masked <= 1; masked++) {
		r = fuzz_message(msg, len, key, masked, seed + (uint32_t)masked,
		    &st);
		if (ref == REF_VALID)
			FUZZ_ASSERT(r == WSG_FRAME_OK);
		else {
			FUZZ_ASSERT(r == WSG_FRAME_INVALID_UTF8);
			FUZZ_ASSERT(frame_result_close_code(r) == 1007);
		}
		FUZZ_ASSERT(st == whole || (ref == REF_INVALID &&
		    st == WSG_UTF8_REJECT));
	}
	return 0;
}
