/*
 * RFC 6455 frame codec: header parsing and checking, masking, close frames.
 */
#include "autoconf.h"

#include <sys/random.h>

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "frame.h"
#include "utf8.h"

#define FRAME_FIN		0x80
#define FRAME_RSV_SHIFT		4
#define FRAME_OPCODE_MASK	0x0f
#define FRAME_MASK_BIT		0x80
#define FRAME_LEN7_MASK		0x7f
#define FRAME_LEN16		126
#define FRAME_LEN64		127
#define FRAME_MAX_CONTROL	125
#define FRAME_CLOSE_MAX_REASON	(FRAME_MAX_CONTROL - 2)
/*
 * Masking keys are drawn from a pool per thread, refilled by one
 * getrandom(2) for 64 keys: glibc 2.36's arc4random() is a system call
 * each time, and every client frame needs a key.
 */
#define FRAME_KEY_POOL		256

static __thread uint8_t	frame_key_pool[FRAME_KEY_POOL];
static __thread size_t	frame_key_left;

/* Is this opcode one that RFC 6455 defines? */
static int
frame_opcode_known(int op)
{
	switch (op) {
	case WSG_OP_CONT:
	case WSG_OP_TEXT:
	case WSG_OP_BINARY:
	case WSG_OP_CLOSE:
	case WSG_OP_PING:
	case WSG_OP_PONG:
		return 1;
	default:
		return 0;
	}
}

/* Decode one header, refusing non-minimal and 64-bit-overflowing lengths. */
enum wsg_frame_result
frame_parse_header(const uint8_t *buf, size_t len, struct wsg_frame *f)
{
	uint64_t	plen;
	size_t		need, i;
	int		len7;

	memset(f, 0, sizeof(*f));
	if (len < 2)
		return WSG_FRAME_INCOMPLETE;
	len7 = buf[1] & FRAME_LEN7_MASK;
	need = 2;
	if (len7 == FRAME_LEN16)
		need += 2;
	else if (len7 == FRAME_LEN64)
		need += 8;
	if (buf[1] & FRAME_MASK_BIT)
		need += 4;
	if (len < need)
		return WSG_FRAME_INCOMPLETE;

	f->f_fin = (buf[0] & FRAME_FIN) != 0;
	f->f_rsv = (buf[0] >> FRAME_RSV_SHIFT) & 0x07;
	f->f_opcode = buf[0] & FRAME_OPCODE_MASK;
	f->f_masked = (buf[1] & FRAME_MASK_BIT) != 0;
	i = 2;
	if (len7 == FRAME_LEN16) {
		plen = ((uint64_t)buf[2] << 8) | buf[3];
		if (plen < FRAME_LEN16)
			return WSG_FRAME_PROTOCOL;
		i = 4;
	} else if (len7 == FRAME_LEN64) {
		if (buf[2] & 0x80)
			return WSG_FRAME_PROTOCOL;
		plen = 0;
		for (i = 2; i < 10; i++)
			plen = (plen << 8) | buf[i];
		if (plen <= 0xffff)
			return WSG_FRAME_PROTOCOL;
	} else
		plen = (uint64_t)len7;
	if (f->f_masked) {
		memcpy(f->f_mask, buf + i, 4);
		i += 4;
	}
	f->f_len = plen;
	f->f_hdr_len = i;
	return WSG_FRAME_OK;
}

/*
 * Check a header against the protocol and the limits, and advance the
 * message state.  max_frame applies to data frames only: control frames
 * are capped at 125 bytes by the RFC and must always get through, or a
 * tiny limit would make close and ping impossible.
 */
enum wsg_frame_result
frame_check_header(const struct wsg_frame *f,
    const struct wsg_frame_limits *lim, struct wsg_msg_state *st)
{
	uint64_t	sofar;

	if (f->f_rsv != 0)
		return WSG_FRAME_PROTOCOL;
	if (!frame_opcode_known(f->f_opcode))
		return WSG_FRAME_PROTOCOL;
	if (!f->f_masked != !lim->fl_expect_masked)
		return WSG_FRAME_PROTOCOL;
	if (f->f_opcode >= WSG_OP_CLOSE) {
		if (!f->f_fin || f->f_len > FRAME_MAX_CONTROL)
			return WSG_FRAME_PROTOCOL;
		return WSG_FRAME_OK;
	}

	if (f->f_opcode == WSG_OP_CONT) {
		if (st->ms_opcode == 0)
			return WSG_FRAME_PROTOCOL;
		sofar = st->ms_len;
	} else {
		if (st->ms_opcode != 0)
			return WSG_FRAME_PROTOCOL;
		sofar = 0;
	}
	if (f->f_len > lim->fl_max_frame)
		return WSG_FRAME_TOO_LARGE;
	if (f->f_len > lim->fl_max_message ||
	    sofar > lim->fl_max_message - f->f_len)
		return WSG_FRAME_MESSAGE_TOO_LARGE;
	if (f->f_opcode == WSG_OP_BINARY && !lim->fl_allow_binary)
		return WSG_FRAME_BINARY_DENIED;

	if (f->f_opcode == WSG_OP_CONT)
		st->ms_len = sofar + f->f_len;
	else {
		st->ms_opcode = f->f_opcode;
		st->ms_len = f->f_len;
		st->ms_utf8 = WSG_UTF8_ACCEPT;
	}
	return WSG_FRAME_OK;
}

/* End the message after a FIN data frame, checking its UTF-8 is complete. */
enum wsg_frame_result
frame_msg_end(const struct wsg_frame *f, struct wsg_msg_state *st,
    int validate_utf8)
{
	enum wsg_frame_result	r = WSG_FRAME_OK;

	if (f->f_opcode >= WSG_OP_CLOSE || !f->f_fin)
		return WSG_FRAME_OK;
	if (st->ms_opcode == WSG_OP_TEXT && validate_utf8 &&
	    st->ms_utf8 != WSG_UTF8_ACCEPT)
		r = WSG_FRAME_INVALID_UTF8;
	st->ms_opcode = 0;
	st->ms_len = 0;
	st->ms_utf8 = WSG_UTF8_ACCEPT;
	return r;
}

/*
 * XOR with the mask: 64 bytes at a time with SSE2 where the compiler has
 * it (every x86-64), then 64-bit words, then bytes.  dst may be src.
 */
void
frame_unmask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4],
    uint64_t off)
{
	uint8_t		m8[8];
	uint64_t	m, w;
	size_t		i = 0, k;
	unsigned int	rot = (unsigned int)(off & 3);
#ifdef __SSE2__
	__m128i		vm, a, b, c, d;
#endif

	for (k = 0; k < sizeof(m8); k++)
		m8[k] = mask[(rot + k) & 3];
	memcpy(&m, m8, sizeof(m));
#ifdef __SSE2__
	vm = _mm_set1_epi64x((long long)m);
	for (; n - i >= 64; i += 64) {
		a = _mm_loadu_si128((const __m128i *)(src + i));
		b = _mm_loadu_si128((const __m128i *)(src + i + 16));
		c = _mm_loadu_si128((const __m128i *)(src + i + 32));
		d = _mm_loadu_si128((const __m128i *)(src + i + 48));
		_mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, vm));
		_mm_storeu_si128((__m128i *)(dst + i + 16),
		    _mm_xor_si128(b, vm));
		_mm_storeu_si128((__m128i *)(dst + i + 32),
		    _mm_xor_si128(c, vm));
		_mm_storeu_si128((__m128i *)(dst + i + 48),
		    _mm_xor_si128(d, vm));
	}
#endif
	for (; n - i >= 8; i += 8) {
		memcpy(&w, src + i, sizeof(w));
		w ^= m;
		memcpy(dst + i, &w, sizeof(w));
	}
	for (; i < n; i++)
		dst[i] = src[i] ^ m8[i & 7];
}

/* Is this a close code a peer may send (RFC 6455 7.4)? */
static int
frame_close_code_valid(uint16_t code)
{
	if (code >= 1000 && code <= 1003)
		return 1;
	if (code >= 1007 && code <= 1014)
		return 1;
	if (code >= 3000 && code <= 4999)
		return 1;
	return 0;
}

/* Validate a close payload: its code and, optionally, its UTF-8 reason. */
enum wsg_frame_result
frame_check_close(const uint8_t *p, size_t len, int validate_utf8,
    uint16_t *code)
{
	*code = 1005;
	if (len == 0)
		return WSG_FRAME_OK;
	*code = 0;
	if (len == 1 || len > FRAME_MAX_CONTROL)
		return WSG_FRAME_PROTOCOL;
	*code = (uint16_t)((p[0] << 8) | p[1]);
	if (!frame_close_code_valid(*code))
		return WSG_FRAME_PROTOCOL;
	if (validate_utf8 &&
	    utf8_validate(WSG_UTF8_ACCEPT, p + 2, len - 2) != WSG_UTF8_ACCEPT)
		return WSG_FRAME_INVALID_UTF8;
	return WSG_FRAME_OK;
}

/* Encode a header with the shortest length form. */
size_t
frame_build_header(uint8_t *out, int fin, int opcode, uint64_t len,
    const uint8_t *mask)
{
	size_t	i, k;

	out[0] = (uint8_t)(opcode & FRAME_OPCODE_MASK);
	if (fin)
		out[0] |= FRAME_FIN;
	out[1] = mask != NULL ? FRAME_MASK_BIT : 0;
	if (len < FRAME_LEN16) {
		out[1] |= (uint8_t)len;
		i = 2;
	} else if (len <= 0xffff) {
		out[1] |= FRAME_LEN16;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		i = 4;
	} else {
		out[1] |= FRAME_LEN64;
		for (k = 0; k < 8; k++)
			out[2 + k] = (uint8_t)(len >> (56 - 8 * k));
		i = 10;
	}
	if (mask != NULL) {
		memcpy(out + i, mask, 4);
		i += 4;
	}
	return i;
}

/* Build a whole close frame, cutting the reason on a character boundary. */
size_t
frame_build_close(uint8_t *out, uint16_t code, const char *reason,
    const uint8_t *mask)
{
	const uint8_t	*r = (const uint8_t *)reason;
	uint8_t		*p;
	size_t		 rlen = 0, hlen;

	if (reason != NULL)
		rlen = strnlen(reason, FRAME_CLOSE_MAX_REASON + 1);
	if (rlen > FRAME_CLOSE_MAX_REASON) {
		rlen = FRAME_CLOSE_MAX_REASON;
		while (rlen > 0 && (r[rlen] & 0xc0) == 0x80)
			rlen--;
	}
	hlen = frame_build_header(out, 1, WSG_OP_CLOSE, rlen + 2, mask);
	p = out + hlen;
	p[0] = (uint8_t)(code >> 8);
	p[1] = (uint8_t)code;
	if (rlen > 0)
		memcpy(p + 2, r, rlen);
	if (mask != NULL)
		frame_unmask(p, p, rlen + 2, mask, 0);
	return hlen + rlen + 2;
}

/* The close code a failure is reported with. */
uint16_t
frame_result_close_code(enum wsg_frame_result r)
{
	switch (r) {
	case WSG_FRAME_PROTOCOL:
		return 1002;
	case WSG_FRAME_TOO_LARGE:
	case WSG_FRAME_MESSAGE_TOO_LARGE:
		return 1009;
	case WSG_FRAME_INVALID_UTF8:
		return 1007;
	case WSG_FRAME_BINARY_DENIED:
		return 1003;
	default:
		return 1011;
	}
}

/* The reason code a failure is logged and counted under. */
const char *
frame_result_reason(enum wsg_frame_result r)
{
	switch (r) {
	case WSG_FRAME_OK:
		return "ok";
	case WSG_FRAME_INCOMPLETE:
		return "incomplete";
	case WSG_FRAME_PROTOCOL:
		return "protocol_error";
	case WSG_FRAME_TOO_LARGE:
		return "frame_too_large";
	case WSG_FRAME_MESSAGE_TOO_LARGE:
		return "message_too_large";
	case WSG_FRAME_INVALID_UTF8:
		return "invalid_utf8";
	case WSG_FRAME_BINARY_DENIED:
		return "binary_denied";
	}
	return "internal_error";
}

void
frame_mask_key(uint8_t key[4])
{
	uint32_t	m;

	if (frame_key_left < 4) {
		if (getrandom(frame_key_pool, sizeof(frame_key_pool), 0) !=
		    (ssize_t)sizeof(frame_key_pool)) {
			/* Never short for 256 bytes; arc4random() blocks. */
			m = arc4random();
			memcpy(key, &m, 4);
			return;
		}
		frame_key_left = sizeof(frame_key_pool);
	}
	frame_key_left -= 4;
	memcpy(key, frame_key_pool + frame_key_left, 4);
	/* A key once used is not kept where a later read could find it. */
	memset(frame_key_pool + frame_key_left, 0, 4);
}
