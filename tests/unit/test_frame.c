/*
 * Unit tests for the RFC 6455 frame codec, with hostile headers.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "utf8.h"
#include "unit.h"

static const uint8_t	test_mask[4] = { 0x37, 0xfa, 0x21, 0x3d };

/* A small deterministic generator so failures reproduce. */
static uint32_t
test_rand(void)
{
	static uint64_t	s = 0x9e3779b97f4a7c15ULL;

	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return (uint32_t)(s >> 16);
}

/* Parse from an exact-size heap copy so ASan catches any overread. */
static enum wsg_frame_result
test_parse(const uint8_t *buf, size_t len, struct wsg_frame *f)
{
	enum wsg_frame_result	 r;
	uint8_t			*copy;

	copy = malloc(len ? len : 1);
	if (copy == NULL)
		abort();
	if (len)
		memcpy(copy, buf, len);
	r = frame_parse_header(copy, len, f);
	free(copy);
	return r;
}

/* Limits for traffic from clients (masked) or servers. */
static struct wsg_frame_limits
test_limits(int from_client)
{
	struct wsg_frame_limits	l;

	l.fl_max_frame = 65536;
	l.fl_max_message = 1048576;
	l.fl_allow_binary = 1;
	l.fl_expect_masked = from_client;
	return l;
}

/* A parsed header as the checker sees it. */
static struct wsg_frame
test_frame(int fin, int rsv, int opcode, int masked, uint64_t len)
{
	struct wsg_frame	f;

	memset(&f, 0, sizeof(f));
	f.f_fin = fin;
	f.f_rsv = rsv;
	f.f_opcode = opcode;
	f.f_masked = masked;
	if (masked)
		memcpy(f.f_mask, test_mask, 4);
	f.f_len = len;
	f.f_hdr_len = 2;
	return f;
}

/* Decoding of each length form, and refusal of non-minimal ones. */
static void
test_parse_lengths(void)
{
	struct wsg_frame	f;
	static const uint8_t	l0[] = { 0x81, 0x00 };
	static const uint8_t	l125[] = { 0x82, 0x7d };
	static const uint8_t	l126[] = { 0x82, 0x7e, 0x00, 0x7e };
	static const uint8_t	l127[] = { 0x82, 0x7e, 0x00, 0x7f };
	static const uint8_t	l65535[] = { 0x02, 0x7e, 0xff, 0xff };
	static const uint8_t	l65536[] = { 0x82, 0x7f, 0, 0, 0, 0, 0, 1,
				    0, 0 };
	static const uint8_t	lmax[] = { 0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff,
				    0xff, 0xff, 0xff, 0xff };
	static const uint8_t	l2_63[] = { 0x82, 0x7f, 0x80, 0, 0, 0, 0, 0,
				    0, 0 };
	static const uint8_t	lall[] = { 0x82, 0x7f, 0xff, 0xff, 0xff, 0xff,
				    0xff, 0xff, 0xff, 0xff };
	static const uint8_t	nm16_0[] = { 0x82, 0x7e, 0x00, 0x00 };
	static const uint8_t	nm16_125[] = { 0x82, 0x7e, 0x00, 0x7d };
	static const uint8_t	nm64_0[] = { 0x82, 0x7f, 0, 0, 0, 0, 0, 0,
				    0, 0 };
	static const uint8_t	nm64_125[] = { 0x82, 0x7f, 0, 0, 0, 0, 0, 0,
				    0, 0x7d };
	static const uint8_t	nm64_126[] = { 0x82, 0x7f, 0, 0, 0, 0, 0, 0,
				    0, 0x7e };
	static const uint8_t	nm64_65535[] = { 0x82, 0x7f, 0, 0, 0, 0, 0, 0,
				    0xff, 0xff };
	static const uint8_t	nm64_masked[] = { 0x82, 0xff, 0, 0, 0, 0, 0,
				    0, 0x01, 0x00, 1, 2, 3, 4 };

	CHECK_INT(test_parse(l0, sizeof(l0), &f), WSG_FRAME_OK);
	CHECK_INT(f.f_len, 0);
	CHECK_INT(f.f_hdr_len, 2);
	CHECK_INT(f.f_fin, 1);
	CHECK_INT(f.f_opcode, WSG_OP_TEXT);
	CHECK_INT(f.f_masked, 0);

	CHECK_INT(test_parse(l125, sizeof(l125), &f), WSG_FRAME_OK);
	CHECK_INT(f.f_len, 125);
	CHECK_INT(f.f_hdr_len, 2);

	CHECK_INT(test_parse(l126, sizeof(l126), &f), WSG_FRAME_OK);
	CHECK_INT(f.f_len, 126);
	CHECK_INT(f.f_hdr_len, 4);
	CHECK_INT(test_parse(l127, sizeof(l127), &f), WSG_FRAME_OK);
	CHECK_INT(f.f_len, 127);
	CHECK_INT(f.f_hdr_len, 4);

	CHECK_INT(test_parse(l65535, sizeof(l65535), &f), WSG_FRAME_OK);
	CHECK_INT(f.f_len, 65535);
	CHECK_INT(f.f_hdr_len, 4);
	CHECK_INT(f.f_fin, 0);
	CHECK_INT(f.f_opcode, WSG_OP_BINARY);

	CHECK_INT(test_parse(l65536, sizeof(l65536), &f), WSG_FRAME_OK);
	CHECK_INT(f.f_len, 65536);
	CHECK_INT(f.f_hdr_len, 10);

	CHECK_INT(test_parse(lmax, sizeof(lmax), &f), WSG_FRAME_OK);
	CHECK(f.f_len == 0x7fffffffffffffffULL);
	CHECK_INT(f.f_hdr_len, 10);

	/* 2^63 and beyond: the most significant bit must be 0. */
	CHECK_INT(test_parse(l2_63, sizeof(l2_63), &f), WSG_FRAME_PROTOCOL);
	CHECK_INT(test_parse(lall, sizeof(lall), &f), WSG_FRAME_PROTOCOL);

	/* Lengths not in their shortest form. */
	CHECK_INT(test_parse(nm16_0, sizeof(nm16_0), &f), WSG_FRAME_PROTOCOL);
	CHECK_INT(test_parse(nm16_125, sizeof(nm16_125), &f),
	    WSG_FRAME_PROTOCOL);
	CHECK_INT(test_parse(nm64_0, sizeof(nm64_0), &f), WSG_FRAME_PROTOCOL);
	CHECK_INT(test_parse(nm64_125, sizeof(nm64_125), &f),
	    WSG_FRAME_PROTOCOL);
	CHECK_INT(test_parse(nm64_126, sizeof(nm64_126), &f),
	    WSG_FRAME_PROTOCOL);
	CHECK_INT(test_parse(nm64_65535, sizeof(nm64_65535), &f),
	    WSG_FRAME_PROTOCOL);
	CHECK_INT(test_parse(nm64_masked, sizeof(nm64_masked), &f),
	    WSG_FRAME_PROTOCOL);
}

/* Every field of the first two bytes, and the mask key. */
static void
test_parse_fields(void)
{
	struct wsg_frame	f;
	static const uint8_t	h1[] = { 0xf9, 0x85, 0xde, 0xad, 0xbe, 0xef,
				    'x' };
	static const uint8_t	h2[] = { 0x50, 0xfe, 0x01, 0x00, 1, 2, 3, 4 };
	int			 b0;

	CHECK_INT(test_parse(h1, sizeof(h1), &f), WSG_FRAME_OK);
	CHECK_INT(f.f_fin, 1);
	CHECK_INT(f.f_rsv, 7);
	CHECK_INT(f.f_opcode, 9);
	CHECK_INT(f.f_masked, 1);
	CHECK_INT(f.f_len, 5);
	CHECK_INT(f.f_hdr_len, 6);
	CHECK(memcmp(f.f_mask, "\xde\xad\xbe\xef", 4) == 0);

	CHECK_INT(test_parse(h2, sizeof(h2), &f), WSG_FRAME_OK);
	CHECK_INT(f.f_fin, 0);
	CHECK_INT(f.f_rsv, 5);
	CHECK_INT(f.f_opcode, 0);
	CHECK_INT(f.f_masked, 1);
	CHECK_INT(f.f_len, 256);
	CHECK_INT(f.f_hdr_len, 8);
	CHECK(memcmp(f.f_mask, "\x01\x02\x03\x04", 4) == 0);

	/* The parser reports RSV and opcode; the checker judges them. */
	for (b0 = 0; b0 < 256; b0++) {
		uint8_t	h[2];

		h[0] = (uint8_t)b0;
		h[1] = 0x03;
		CHECK_INT(test_parse(h, 2, &f), WSG_FRAME_OK);
		CHECK_INT(f.f_fin, b0 >> 7);
		CHECK_INT(f.f_rsv, (b0 >> 4) & 7);
		CHECK_INT(f.f_opcode, b0 & 0x0f);
	}
}

/* Every truncated header is INCOMPLETE, never read past its length. */
static void
test_parse_truncated(void)
{
	struct wsg_frame	f;
	static const uint8_t	hdrs[][14] = {
		{ 0x81, 0x05 },
		{ 0x81, 0x85, 1, 2, 3, 4 },
		{ 0x82, 0x7e, 0x01, 0x00 },
		{ 0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4 },
		{ 0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0 },
		{ 0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4 },
		{ 0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0 },
		{ 0x82, 0x7e, 0x00, 0x05 },
	};
	static const size_t	hlen[] = { 2, 6, 4, 8, 10, 14, 10, 4 };
	static const int	full[] = { WSG_FRAME_OK, WSG_FRAME_OK,
				    WSG_FRAME_OK, WSG_FRAME_OK, WSG_FRAME_OK,
				    WSG_FRAME_OK, WSG_FRAME_PROTOCOL,
				    WSG_FRAME_PROTOCOL };
	size_t			 i, n;

	CHECK_INT(frame_parse_header(NULL, 0, &f), WSG_FRAME_INCOMPLETE);
	for (i = 0; i < sizeof(hlen) / sizeof(hlen[0]); i++) {
		for (n = 0; n < hlen[i]; n++)
			CHECK_INT(test_parse(hdrs[i], n, &f),
			    WSG_FRAME_INCOMPLETE);
		CHECK_INT(test_parse(hdrs[i], hlen[i], &f), full[i]);
		if (full[i] == WSG_FRAME_OK)
			CHECK_INT(f.f_hdr_len, hlen[i]);
		CHECK_INT(test_parse(hdrs[i], 14, &f), full[i]);
		if (full[i] == WSG_FRAME_OK)
			CHECK_INT(f.f_hdr_len, hlen[i]);
	}
}

/* RSV bits, reserved opcodes and masking direction, in precedence order. */
static void
test_check_reserved(void)
{
	struct wsg_frame_limits	cl = test_limits(1), sl = test_limits(0);
	struct wsg_msg_state	st;
	struct wsg_frame	f;
	static const int	reserved[] = { 3, 4, 5, 6, 7, 0xb, 0xc, 0xd,
				    0xe, 0xf };
	int			rsv;
	size_t			i;

	memset(&st, 0, sizeof(st));
	for (rsv = 1; rsv <= 7; rsv++) {
		f = test_frame(1, rsv, WSG_OP_TEXT, 1, 3);
		CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_PROTOCOL);
		f = test_frame(1, rsv, WSG_OP_PING, 0, 3);
		CHECK_INT(frame_check_header(&f, &sl, &st), WSG_FRAME_PROTOCOL);
		/* RSV wins over everything else that is wrong. */
		f = test_frame(1, rsv, WSG_OP_BINARY, 1, 1ULL << 40);
		cl.fl_allow_binary = 0;
		CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_PROTOCOL);
		cl.fl_allow_binary = 1;
	}
	/* RSV1, RSV2, RSV3 each alone, via the parser. */
	for (i = 0; i < 3; i++) {
		uint8_t	h[6] = { 0x81, 0x80, 1, 2, 3, 4 };

		h[0] |= (uint8_t)(0x40 >> i);
		CHECK_INT(test_parse(h, sizeof(h), &f), WSG_FRAME_OK);
		CHECK_INT(f.f_rsv, 4 >> i);
		CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_PROTOCOL);
	}
	for (i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		f = test_frame(1, 0, reserved[i], 1, 0);
		CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_PROTOCOL);
		f = test_frame(1, 0, reserved[i], 0, 0);
		CHECK_INT(frame_check_header(&f, &sl, &st), WSG_FRAME_PROTOCOL);
	}
	CHECK_INT(st.ms_opcode, 0);
	CHECK_INT(st.ms_len, 0);

	/* Unmasked client frames and masked server frames. */
	f = test_frame(1, 0, WSG_OP_TEXT, 0, 3);
	CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_PROTOCOL);
	f = test_frame(1, 0, WSG_OP_CLOSE, 0, 2);
	CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_PROTOCOL);
	f = test_frame(1, 0, WSG_OP_TEXT, 1, 3);
	CHECK_INT(frame_check_header(&f, &sl, &st), WSG_FRAME_PROTOCOL);
	f = test_frame(1, 0, WSG_OP_PONG, 1, 0);
	CHECK_INT(frame_check_header(&f, &sl, &st), WSG_FRAME_PROTOCOL);
	/* Masking is judged before control-frame rules. */
	f = test_frame(0, 0, WSG_OP_PING, 0, 200);
	CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_PROTOCOL);
	CHECK_INT(st.ms_opcode, 0);

	/* fl_expect_masked is a boolean, whatever its value. */
	cl.fl_expect_masked = 2;
	f = test_frame(1, 0, WSG_OP_TEXT, 1, 3);
	CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_OK);
	CHECK_INT(st.ms_opcode, WSG_OP_TEXT);
}

/* Control frames: FIN, 125 bytes, and no effect on the message. */
static void
test_check_control(void)
{
	struct wsg_frame_limits	cl = test_limits(1), sl = test_limits(0);
	struct wsg_msg_state	st;
	struct wsg_frame	f;
	static const int	ops[] = { WSG_OP_CLOSE, WSG_OP_PING,
				    WSG_OP_PONG };
	size_t			i;

	for (i = 0; i < 3; i++) {
		memset(&st, 0, sizeof(st));
		f = test_frame(1, 0, ops[i], 1, 0);
		CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_OK);
		f = test_frame(1, 0, ops[i], 1, 125);
		CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_OK);
		f = test_frame(1, 0, ops[i], 0, 125);
		CHECK_INT(frame_check_header(&f, &sl, &st), WSG_FRAME_OK);
		f = test_frame(1, 0, ops[i], 1, 126);
		CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_PROTOCOL);
		f = test_frame(1, 0, ops[i], 0, 65536);
		CHECK_INT(frame_check_header(&f, &sl, &st), WSG_FRAME_PROTOCOL);
		/* Fragmented control frame. */
		f = test_frame(0, 0, ops[i], 1, 0);
		CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_PROTOCOL);
		f = test_frame(0, 0, ops[i], 0, 5);
		CHECK_INT(frame_check_header(&f, &sl, &st), WSG_FRAME_PROTOCOL);
		CHECK_INT(st.ms_opcode, 0);
		CHECK_INT(st.ms_len, 0);
	}

	/* Interleaved in a fragmented message, leaving its state alone. */
	memset(&st, 0, sizeof(st));
	f = test_frame(0, 0, WSG_OP_TEXT, 1, 10);
	CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_OK);
	st.ms_utf8 = 0x12345;
	for (i = 0; i < 3; i++) {
		f = test_frame(1, 0, ops[i], 1, 100);
		CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_OK);
		CHECK_INT(frame_msg_end(&f, &st, 1), WSG_FRAME_OK);
		CHECK_INT(st.ms_opcode, WSG_OP_TEXT);
		CHECK_INT(st.ms_len, 10);
		CHECK_INT(st.ms_utf8, 0x12345);
	}

	/* max_frame_size does not apply to control frames (<= 125). */
	cl.fl_max_frame = 10;
	cl.fl_max_message = 10;
	cl.fl_allow_binary = 0;
	f = test_frame(1, 0, WSG_OP_CLOSE, 1, 125);
	CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_OK);
	f = test_frame(1, 0, WSG_OP_PING, 1, 11);
	CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_OK);
	CHECK_INT(st.ms_len, 10);
}

/* Continuation order: no CONT without a start, no start mid-message. */
static void
test_check_order(void)
{
	struct wsg_frame_limits	cl = test_limits(1);
	struct wsg_msg_state	st;
	struct wsg_frame	f;

	memset(&st, 0, sizeof(st));
	f = test_frame(1, 0, WSG_OP_CONT, 1, 1);
	CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_PROTOCOL);
	f = test_frame(0, 0, WSG_OP_CONT, 1, 0);
	CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_PROTOCOL);
	CHECK_INT(st.ms_opcode, 0);

	st.ms_utf8 = WSG_UTF8_REJECT;
	f = test_frame(0, 0, WSG_OP_BINARY, 1, 7);
	CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_OK);
	CHECK_INT(st.ms_opcode, WSG_OP_BINARY);
	CHECK_INT(st.ms_len, 7);
	CHECK_INT(st.ms_utf8, WSG_UTF8_ACCEPT);
	CHECK_INT(frame_msg_end(&f, &st, 1), WSG_FRAME_OK);
	CHECK_INT(st.ms_opcode, WSG_OP_BINARY);

	/* A new start while a message is in progress. */
	f = test_frame(1, 0, WSG_OP_TEXT, 1, 1);
	CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_PROTOCOL);
	f = test_frame(0, 0, WSG_OP_BINARY, 1, 1);
	CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_PROTOCOL);
	/* Even when binary is denied, the order error comes first. */
	cl.fl_allow_binary = 0;
	CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_PROTOCOL);
	cl.fl_allow_binary = 1;
	CHECK_INT(st.ms_opcode, WSG_OP_BINARY);
	CHECK_INT(st.ms_len, 7);

	f = test_frame(0, 0, WSG_OP_CONT, 1, 3);
	CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_OK);
	CHECK_INT(st.ms_len, 10);
	CHECK_INT(frame_msg_end(&f, &st, 1), WSG_FRAME_OK);
	f = test_frame(1, 0, WSG_OP_CONT, 1, 5);
	CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_OK);
	CHECK_INT(st.ms_len, 15);
	CHECK_INT(frame_msg_end(&f, &st, 1), WSG_FRAME_OK);
	CHECK_INT(st.ms_opcode, 0);
	CHECK_INT(st.ms_len, 0);

	/* After the end, CONT is out of order again, and a start is fine. */
	f = test_frame(1, 0, WSG_OP_CONT, 1, 5);
	CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_PROTOCOL);
	f = test_frame(1, 0, WSG_OP_TEXT, 1, 5);
	CHECK_INT(frame_check_header(&f, &cl, &st), WSG_FRAME_OK);
	CHECK_INT(st.ms_opcode, WSG_OP_TEXT);
	CHECK_INT(frame_msg_end(&f, &st, 1), WSG_FRAME_OK);
	CHECK_INT(st.ms_opcode, 0);
}

/* Frame and message limits exactly at, and one over; overflow. */
static void
test_check_limits(void)
{
	struct wsg_frame_limits	l = test_limits(0);
	struct wsg_msg_state	st;
	struct wsg_frame	f;

	l.fl_max_frame = 1000;
	l.fl_max_message = 2500;
	memset(&st, 0, sizeof(st));
	f = test_frame(1, 0, WSG_OP_TEXT, 0, 1001);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_TOO_LARGE);
	f = test_frame(1, 0, WSG_OP_BINARY, 0, 1ULL << 62);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_TOO_LARGE);
	CHECK_INT(st.ms_opcode, 0);

	f = test_frame(0, 0, WSG_OP_TEXT, 0, 1000);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
	f = test_frame(0, 0, WSG_OP_CONT, 0, 1000);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
	CHECK_INT(st.ms_len, 2000);
	f = test_frame(1, 0, WSG_OP_CONT, 0, 1001);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_TOO_LARGE);
	f = test_frame(1, 0, WSG_OP_CONT, 0, 501);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_MESSAGE_TOO_LARGE);
	CHECK_INT(st.ms_len, 2000);
	f = test_frame(0, 0, WSG_OP_CONT, 0, 500);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
	CHECK_INT(st.ms_len, 2500);
	f = test_frame(0, 0, WSG_OP_CONT, 0, 0);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
	f = test_frame(1, 0, WSG_OP_CONT, 0, 1);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_MESSAGE_TOO_LARGE);
	CHECK_INT(st.ms_len, 2500);

	/* A single frame over the message cap but under the frame cap. */
	memset(&st, 0, sizeof(st));
	l.fl_max_frame = 5000;
	f = test_frame(1, 0, WSG_OP_TEXT, 0, 2500);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
	CHECK_INT(frame_msg_end(&f, &st, 1), WSG_FRAME_OK);
	f = test_frame(1, 0, WSG_OP_TEXT, 0, 2501);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_MESSAGE_TOO_LARGE);
	CHECK_INT(st.ms_opcode, 0);

	/* ms_len + len wrapping around 2^64 must not pass. */
	l.fl_max_frame = UINT64_MAX;
	l.fl_max_message = UINT64_MAX - 1;
	st.ms_opcode = WSG_OP_BINARY;
	st.ms_len = UINT64_MAX - 5;
	f = test_frame(0, 0, WSG_OP_CONT, 0, 10);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_MESSAGE_TOO_LARGE);
	f = test_frame(0, 0, WSG_OP_CONT, 0, 0x7fffffffffffffffULL);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_MESSAGE_TOO_LARGE);
	f = test_frame(0, 0, WSG_OP_CONT, 0, 5);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_MESSAGE_TOO_LARGE);
	f = test_frame(0, 0, WSG_OP_CONT, 0, 4);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
	CHECK(st.ms_len == UINT64_MAX - 1);
	l.fl_max_message = 100;
	st.ms_len = 50;
	f = test_frame(0, 0, WSG_OP_CONT, 0, UINT64_MAX - 20);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_MESSAGE_TOO_LARGE);
	CHECK_INT(st.ms_len, 50);
}

/* Binary denied, but only binary, and only after the size checks. */
static void
test_check_binary(void)
{
	struct wsg_frame_limits	l = test_limits(1);
	struct wsg_msg_state	st;
	struct wsg_frame	f;

	l.fl_allow_binary = 0;
	memset(&st, 0, sizeof(st));
	f = test_frame(1, 0, WSG_OP_BINARY, 1, 10);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_BINARY_DENIED);
	f = test_frame(0, 0, WSG_OP_BINARY, 1, 0);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_BINARY_DENIED);
	CHECK_INT(st.ms_opcode, 0);
	f = test_frame(1, 0, WSG_OP_BINARY, 1, 65537);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_TOO_LARGE);
	l.fl_max_message = 20;
	f = test_frame(1, 0, WSG_OP_BINARY, 1, 21);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_MESSAGE_TOO_LARGE);

	f = test_frame(0, 0, WSG_OP_TEXT, 1, 10);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
	f = test_frame(1, 0, WSG_OP_CONT, 1, 10);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
	CHECK_INT(st.ms_len, 20);
	f = test_frame(1, 0, WSG_OP_PING, 1, 4);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
}

/* Ending a message: FIN only, UTF-8 completeness for text. */
static void
test_msg_end(void)
{
	struct wsg_frame_limits	l = test_limits(1);
	struct wsg_msg_state	st;
	struct wsg_frame	f;
	static const uint8_t	euro[] = { 0xe2, 0x82, 0xac };

	memset(&st, 0, sizeof(st));
	f = test_frame(0, 0, WSG_OP_TEXT, 1, 2);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
	st.ms_utf8 = utf8_validate(st.ms_utf8, euro, 2);
	CHECK_INT(frame_msg_end(&f, &st, 1), WSG_FRAME_OK);
	CHECK_INT(st.ms_opcode, WSG_OP_TEXT);
	CHECK_INT(st.ms_len, 2);
	CHECK(st.ms_utf8 != WSG_UTF8_ACCEPT);

	/* Ends mid-character: invalid, and the state is reset. */
	f = test_frame(1, 0, WSG_OP_CONT, 1, 0);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
	CHECK_INT(frame_msg_end(&f, &st, 1), WSG_FRAME_INVALID_UTF8);
	CHECK_INT(st.ms_opcode, 0);
	CHECK_INT(st.ms_len, 0);
	CHECK_INT(st.ms_utf8, WSG_UTF8_ACCEPT);

	/* Completed in the last fragment. */
	f = test_frame(0, 0, WSG_OP_TEXT, 1, 2);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
	st.ms_utf8 = utf8_validate(st.ms_utf8, euro, 2);
	CHECK_INT(frame_msg_end(&f, &st, 1), WSG_FRAME_OK);
	f = test_frame(1, 0, WSG_OP_CONT, 1, 1);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
	st.ms_utf8 = utf8_validate(st.ms_utf8, euro + 2, 1);
	CHECK_INT(frame_msg_end(&f, &st, 1), WSG_FRAME_OK);
	CHECK_INT(st.ms_opcode, 0);

	/* REJECT is invalid too; without validation nothing is judged. */
	f = test_frame(1, 0, WSG_OP_TEXT, 1, 1);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
	st.ms_utf8 = WSG_UTF8_REJECT;
	CHECK_INT(frame_msg_end(&f, &st, 1), WSG_FRAME_INVALID_UTF8);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
	st.ms_utf8 = WSG_UTF8_REJECT;
	CHECK_INT(frame_msg_end(&f, &st, 0), WSG_FRAME_OK);
	CHECK_INT(st.ms_opcode, 0);
	CHECK_INT(st.ms_utf8, WSG_UTF8_ACCEPT);

	/* Binary messages are never judged as UTF-8. */
	f = test_frame(1, 0, WSG_OP_BINARY, 1, 1);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
	st.ms_utf8 = WSG_UTF8_REJECT;
	CHECK_INT(frame_msg_end(&f, &st, 1), WSG_FRAME_OK);
	CHECK_INT(st.ms_opcode, 0);

	/* Control frames do not end anything. */
	f = test_frame(0, 0, WSG_OP_TEXT, 1, 1);
	CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
	st.ms_utf8 = 0x777;
	f = test_frame(1, 0, WSG_OP_CLOSE, 1, 2);
	CHECK_INT(frame_msg_end(&f, &st, 1), WSG_FRAME_OK);
	CHECK_INT(st.ms_opcode, WSG_OP_TEXT);
	CHECK_INT(st.ms_len, 1);
	CHECK_INT(st.ms_utf8, 0x777);
}

/* Close payloads: every boundary of the code table, and the reason. */
static void
test_check_close(void)
{
	static const struct {
		int	code;
		int	want;
	} codes[] = {
		{ 0, WSG_FRAME_PROTOCOL },
		{ 999, WSG_FRAME_PROTOCOL },
		{ 1000, WSG_FRAME_OK },
		{ 1001, WSG_FRAME_OK },
		{ 1002, WSG_FRAME_OK },
		{ 1003, WSG_FRAME_OK },
		{ 1004, WSG_FRAME_PROTOCOL },
		{ 1005, WSG_FRAME_PROTOCOL },
		{ 1006, WSG_FRAME_PROTOCOL },
		{ 1007, WSG_FRAME_OK },
		{ 1008, WSG_FRAME_OK },
		{ 1011, WSG_FRAME_OK },
		{ 1014, WSG_FRAME_OK },
		{ 1015, WSG_FRAME_PROTOCOL },
		{ 1016, WSG_FRAME_PROTOCOL },
		{ 2000, WSG_FRAME_PROTOCOL },
		{ 2999, WSG_FRAME_PROTOCOL },
		{ 3000, WSG_FRAME_OK },
		{ 3999, WSG_FRAME_OK },
		{ 4000, WSG_FRAME_OK },
		{ 4999, WSG_FRAME_OK },
		{ 5000, WSG_FRAME_PROTOCOL },
		{ 65535, WSG_FRAME_PROTOCOL },
	};
	uint8_t		p[130];
	uint16_t	code;
	size_t		i;
	int		c, valid;

	code = 0;
	CHECK_INT(frame_check_close(NULL, 0, 1, &code), WSG_FRAME_OK);
	CHECK_INT(code, 1005);
	/* One byte is no code, even when a byte past it would make one. */
	p[0] = 0x03;
	p[1] = 0xe8;
	CHECK_INT(frame_check_close(p, 1, 1, &code), WSG_FRAME_PROTOCOL);
	CHECK_INT(frame_check_close(p, 1, 0, &code), WSG_FRAME_PROTOCOL);
	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		p[0] = (uint8_t)(codes[i].code >> 8);
		p[1] = (uint8_t)codes[i].code;
		CHECK_INT(frame_check_close(p, 2, 1, &code), codes[i].want);
		CHECK_INT(code, codes[i].code);
		memcpy(p + 2, "bye", 3);
		CHECK_INT(frame_check_close(p, 5, 0, &code), codes[i].want);
	}
	/* The whole code space against the RFC's ranges. */
	for (c = 0; c < 65536; c++) {
		p[0] = (uint8_t)(c >> 8);
		p[1] = (uint8_t)c;
		valid = (c >= 1000 && c <= 1003) ||
		    (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
		if (frame_check_close(p, 2, 1, &code) !=
		    (valid ? WSG_FRAME_OK : WSG_FRAME_PROTOCOL))
			break;
	}
	CHECK_INT(c, 65536);

	/* Reasons: valid, invalid, truncated, each with and without checks. */
	p[0] = 0x03;
	p[1] = 0xe8;
	memcpy(p + 2, "caf\xc3\xa9", 5);
	CHECK_INT(frame_check_close(p, 7, 1, &code), WSG_FRAME_OK);
	CHECK_INT(code, 1000);
	CHECK_INT(frame_check_close(p, 6, 1, &code), WSG_FRAME_INVALID_UTF8);
	CHECK_INT(frame_check_close(p, 6, 0, &code), WSG_FRAME_OK);
	memcpy(p + 2, "\xed\xa0\x80", 3);
	CHECK_INT(frame_check_close(p, 5, 1, &code), WSG_FRAME_INVALID_UTF8);
	CHECK_INT(frame_check_close(p, 5, 0, &code), WSG_FRAME_OK);
	memcpy(p + 2, "\xff", 1);
	CHECK_INT(frame_check_close(p, 3, 1, &code), WSG_FRAME_INVALID_UTF8);
	/* A bad code is reported before a bad reason. */
	p[1] = 0xec;
	CHECK_INT(frame_check_close(p, 3, 1, &code), WSG_FRAME_PROTOCOL);
	CHECK_INT(code, 1004);

	/* 125 bytes is the most a control payload can hold. */
	p[1] = 0xe8;
	memset(p + 2, 'a', sizeof(p) - 2);
	CHECK_INT(frame_check_close(p, 125, 1, &code), WSG_FRAME_OK);
	CHECK_INT(frame_check_close(p, 126, 1, &code), WSG_FRAME_PROTOCOL);
}

/* Headers built for each length form re-parse to the same values. */
static void
test_build_header(void)
{
	static const uint64_t	lens[] = { 0, 1, 125, 126, 127, 65535, 65536,
				    0xffffffffULL, 0x7fffffffffffffffULL };
	static const size_t	hl[] = { 2, 2, 2, 4, 4, 4, 10, 10, 10 };
	static const uint8_t	want126m[] = { 0x82, 0xfe, 0x00, 0x7e,
				    0x37, 0xfa, 0x21, 0x3d };
	static const uint8_t	want65536[] = { 0x01, 0x7f, 0, 0, 0, 0, 0,
				    1, 0, 0 };
	struct wsg_frame	f;
	uint8_t			out[WSG_FRAME_MAX_HEADER + 2];
	size_t			i, n;
	int			m, fin, op;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (m = 0; m < 2; m++) {
			for (fin = 0; fin < 2; fin++) {
				op = fin ? WSG_OP_BINARY : WSG_OP_CONT;
				memset(out, 0xaa, sizeof(out));
				n = frame_build_header(out, fin, op, lens[i],
				    m ? test_mask : NULL);
				CHECK_INT(n, hl[i] + (m ? 4 : 0));
				CHECK_INT(out[n], 0xaa);
				CHECK_INT(test_parse(out, n, &f), WSG_FRAME_OK);
				CHECK_INT(f.f_hdr_len, n);
				CHECK(f.f_len == lens[i]);
				CHECK_INT(f.f_fin, fin);
				CHECK_INT(f.f_rsv, 0);
				CHECK_INT(f.f_opcode, op);
				CHECK_INT(f.f_masked, m);
				if (m)
					CHECK(memcmp(f.f_mask, test_mask,
					    4) == 0);
				CHECK_INT(test_parse(out, n - 1, &f),
				    WSG_FRAME_INCOMPLETE);
			}
		}
	}
	n = frame_build_header(out, 1, WSG_OP_BINARY, 126, test_mask);
	CHECK_INT(n, sizeof(want126m));
	CHECK(memcmp(out, want126m, sizeof(want126m)) == 0);
	n = frame_build_header(out, 0, WSG_OP_TEXT, 65536, NULL);
	CHECK_INT(n, sizeof(want65536));
	CHECK(memcmp(out, want65536, sizeof(want65536)) == 0);
	n = frame_build_header(out, 1, WSG_OP_PONG, 0, NULL);
	CHECK_INT(n, 2);
	CHECK_INT(out[0], 0x8a);
	CHECK_INT(out[1], 0x00);
}

/* Parse a built close frame back, unmasking it; returns payload length. */
static size_t
test_reparse_close(const uint8_t *out, size_t n, uint8_t *payload,
    uint16_t *code)
{
	struct wsg_frame	f;

	if (frame_parse_header(out, n, &f) != WSG_FRAME_OK)
		return (size_t)-1;
	if (f.f_hdr_len + f.f_len != n || f.f_opcode != WSG_OP_CLOSE ||
	    !f.f_fin || f.f_len > 125)
		return (size_t)-1;
	if (f.f_masked)
		frame_unmask(payload, out + f.f_hdr_len, f.f_len, f.f_mask, 0);
	else
		memcpy(payload, out + f.f_hdr_len, f.f_len);
	if (frame_check_close(payload, f.f_len, 1, code) != WSG_FRAME_OK)
		return (size_t)-1;
	return f.f_len;
}

/* Close frames: code, reason, truncation on a character boundary. */
static void
test_build_close(void)
{
	static const struct {
		size_t		 ascii;
		const char	*tail;
		size_t		 want;
	} cut[] = {
		{ 123, "", 123 },
		{ 124, "", 123 },
		{ 300, "", 123 },
		{ 121, "\xc3\xa9", 123 },	/* 2-byte char ends at 123 */
		{ 122, "\xc3\xa9", 122 },	/* would end at 124 */
		{ 120, "\xe2\x82\xac", 123 },
		{ 121, "\xe2\x82\xac", 121 },
		{ 122, "\xe2\x82\xac", 122 },
		{ 119, "\xf0\x9f\x98\x80", 123 },
		{ 120, "\xf0\x9f\x98\x80", 120 },
		{ 122, "\xf0\x9f\x98\x80", 122 },
		{ 0, "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
		    "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
		    "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
		    "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
		    "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
		    "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
		    "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
		    "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
		    "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
		    "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
		    "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 123 },
	};
	uint8_t		out[WSG_CLOSE_FRAME_MAX + 4], payload[256];
	char		reason[512];
	uint16_t	code;
	size_t		i, n, plen, tl;
	int		m;

	n = frame_build_close(out, 1000, NULL, NULL);
	CHECK_INT(n, 4);
	CHECK(memcmp(out, "\x88\x02\x03\xe8", 4) == 0);
	n = frame_build_close(out, 1001, "", NULL);
	CHECK_INT(n, 4);
	CHECK(memcmp(out, "\x88\x02\x03\xe9", 4) == 0);
	n = frame_build_close(out, 1009, "frame_too_large", NULL);
	CHECK_INT(n, 19);
	CHECK(memcmp(out, "\x88\x11\x03\xf1" "frame_too_large", 19) == 0);
	n = frame_build_close(out, 1002, "ab", test_mask);
	CHECK_INT(n, 10);
	CHECK_INT(out[0], 0x88);
	CHECK_INT(out[1], 0x84);
	CHECK(memcmp(out + 2, test_mask, 4) == 0);
	CHECK_INT(out[6], 0x03 ^ test_mask[0]);
	CHECK_INT(out[7], 0xea ^ test_mask[1]);
	CHECK_INT(out[8], 'a' ^ test_mask[2]);
	CHECK_INT(out[9], 'b' ^ test_mask[3]);

	for (i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
		memset(reason, 'r', cut[i].ascii);
		tl = strlen(cut[i].tail);
		memcpy(reason + cut[i].ascii, cut[i].tail, tl + 1);
		for (m = 0; m < 2; m++) {
			code = 0;
			memset(out, 0x55, sizeof(out));
			n = frame_build_close(out, 4000, reason,
			    m ? test_mask : NULL);
			CHECK_INT(n, 2 + (m ? 4 : 0) + 2 + cut[i].want);
			CHECK(n <= WSG_CLOSE_FRAME_MAX);
			CHECK_INT(out[n], 0x55);
			plen = test_reparse_close(out, n, payload, &code);
			CHECK_INT(plen, 2 + cut[i].want);
			CHECK_INT(code, 4000);
			CHECK(plen <= 125 && memcmp(payload + 2, reason,
			    plen - 2) == 0);
		}
	}
}

/* Unmasking equals the bytewise definition at every offset and alignment. */
static void
test_unmask(void)
{
	uint8_t		src[300], dst[300], ref[300], mask[4];
	uint64_t	off;
	size_t		n, a, i, k;
	int		round, bad = 0;

	for (round = 0; round < 2000; round++) {
		for (i = 0; i < sizeof(src); i++)
			src[i] = (uint8_t)test_rand();
		for (k = 0; k < 4; k++)
			mask[k] = (uint8_t)test_rand();
		n = test_rand() % 260;
		a = test_rand() % 8;
		off = test_rand();
		if (round % 3 == 0)
			off = round % 11;
		else if (round % 3 == 1)
			off += 0xfffffff0ULL << 4;
		for (i = 0; i < n; i++)
			ref[i] = src[a + i] ^ mask[(off + i) % 4];
		memset(dst, 0, sizeof(dst));
		frame_unmask(dst + (round % 5), src + a, n, mask, off);
		if (memcmp(dst + (round % 5), ref, n) != 0)
			bad++;
		/* In place, and masking twice is the identity. */
		memcpy(dst, src + a, n);
		frame_unmask(dst, dst, n, mask, off);
		if (memcmp(dst, ref, n) != 0)
			bad++;
		frame_unmask(dst, dst, n, mask, off);
		if (memcmp(dst, src + a, n) != 0)
			bad++;
		/* In two pieces split anywhere. */
		k = n ? test_rand() % n : 0;
		frame_unmask(dst, src + a, k, mask, off);
		frame_unmask(dst + k, src + a + k, n - k, mask, off + k);
		if (memcmp(dst, ref, n) != 0)
			bad++;
	}
	CHECK_INT(bad, 0);

	/* Exact bytes for a known case, offset 3. */
	memcpy(src, "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 10);
	frame_unmask(dst, src, 10, test_mask, 3);
	CHECK(memcmp(dst, "\x3d\x37\xfa\x21\x3d\x37\xfa\x21\x3d\x37",
	    10) == 0);
	dst[0] = 0x99;
	frame_unmask(dst, src, 0, test_mask, 1);
	CHECK_INT(dst[0], 0x99);
}

/* Close codes and reason codes of each result. */
/*
 * Masking keys for the upstream: 1000 in a row (past several refills of
 * the pool) are all but all different, and none is all zeros twice.
 */
static void
test_mask_key(void)
{
	static uint32_t	 keys[1000];
	uint8_t		 k[4];
	size_t		 i, j, same = 0, zero = 0;

	for (i = 0; i < 1000; i++) {
		frame_mask_key(k);
		memcpy(&keys[i], k, 4);
		if (keys[i] == 0)
			zero++;
	}
	for (i = 0; i < 1000; i++)
		for (j = i + 1; j < 1000; j++)
			if (keys[i] == keys[j])
				same++;
	/* 1000 random 32-bit keys: a repeated pair has odds of 1e-4. */
	CHECK(same <= 1);
	CHECK(zero <= 1);
}

static void
test_results(void)
{
	CHECK_INT(frame_result_close_code(WSG_FRAME_PROTOCOL), 1002);
	CHECK_INT(frame_result_close_code(WSG_FRAME_TOO_LARGE), 1009);
	CHECK_INT(frame_result_close_code(WSG_FRAME_MESSAGE_TOO_LARGE), 1009);
	CHECK_INT(frame_result_close_code(WSG_FRAME_INVALID_UTF8), 1007);
	CHECK_INT(frame_result_close_code(WSG_FRAME_BINARY_DENIED), 1003);
	CHECK_INT(frame_result_close_code(WSG_FRAME_OK), 1011);
	CHECK_INT(frame_result_close_code(WSG_FRAME_INCOMPLETE), 1011);
	CHECK_STR(frame_result_reason(WSG_FRAME_OK), "ok");
	CHECK_STR(frame_result_reason(WSG_FRAME_INCOMPLETE), "incomplete");
	CHECK_STR(frame_result_reason(WSG_FRAME_PROTOCOL), "protocol_error");
	CHECK_STR(frame_result_reason(WSG_FRAME_TOO_LARGE), "frame_too_large");
	CHECK_STR(frame_result_reason(WSG_FRAME_MESSAGE_TOO_LARGE),
	    "message_too_large");
	CHECK_STR(frame_result_reason(WSG_FRAME_INVALID_UTF8), "invalid_utf8");
	CHECK_STR(frame_result_reason(WSG_FRAME_BINARY_DENIED),
	    "binary_denied");
}

/* A whole fragmented client exchange fed as one byte stream. */
static void
test_stream(void)
{
	struct wsg_frame_limits	l = test_limits(1);
	struct wsg_msg_state	st;
	struct wsg_frame	f;
	uint8_t			wire[256], pay[64];
	size_t			n = 0, pos = 0, h;
	int			frames = 0, r;
	uint16_t		code;
	static const char	*text = "h\xc3\xa9llo \xf0\x9f\x98\x80!";

	/* "hé" + split 4-byte char across frames, a ping between, a close. */
	h = frame_build_header(wire + n, 0, WSG_OP_TEXT, 10, test_mask);
	memcpy(wire + n + h, text, 10);
	frame_unmask(wire + n + h, wire + n + h, 10, test_mask, 0);
	n += h + 10;
	h = frame_build_header(wire + n, 1, WSG_OP_PING, 3, test_mask);
	memcpy(wire + n + h, "abc", 3);
	n += h + 3;
	h = frame_build_header(wire + n, 1, WSG_OP_CONT, 2, test_mask);
	memcpy(wire + n + h, text + 10, 2);
	frame_unmask(wire + n + h, wire + n + h, 2, test_mask, 0);
	n += h + 2;
	n += frame_build_close(wire + n, 1000, "done", test_mask);

	memset(&st, 0, sizeof(st));
	while (pos < n) {
		r = frame_parse_header(wire + pos, n - pos, &f);
		CHECK_INT(r, WSG_FRAME_OK);
		if (r != WSG_FRAME_OK)
			break;
		CHECK_INT(frame_check_header(&f, &l, &st), WSG_FRAME_OK);
		pos += f.f_hdr_len;
		if (f.f_opcode == WSG_OP_TEXT || f.f_opcode == WSG_OP_CONT)
			st.ms_utf8 = utf8_validate_masked(st.ms_utf8,
			    wire + pos, f.f_len, f.f_mask, 0);
		if (f.f_opcode == WSG_OP_CLOSE) {
			frame_unmask(pay, wire + pos, f.f_len, f.f_mask, 0);
			CHECK_INT(frame_check_close(pay, f.f_len, 1, &code),
			    WSG_FRAME_OK);
			CHECK_INT(code, 1000);
			CHECK(memcmp(pay + 2, "done", 4) == 0);
		}
		if (frames == 0)
			CHECK(st.ms_utf8 != WSG_UTF8_ACCEPT &&
			    st.ms_utf8 != WSG_UTF8_REJECT);
		CHECK_INT(frame_msg_end(&f, &st, 1), WSG_FRAME_OK);
		pos += f.f_len;
		frames++;
	}
	CHECK_INT(frames, 4);
	CHECK_INT(pos, n);
	CHECK_INT(st.ms_opcode, 0);
}

/* Run every frame codec test and report the counts. */
int
main(void)
{
	test_parse_lengths();
	test_parse_fields();
	test_parse_truncated();
	test_check_reserved();
	test_check_control();
	test_check_order();
	test_check_limits();
	test_check_binary();
	test_msg_end();
	test_check_close();
	test_build_header();
	test_build_close();
	test_unmask();
	test_mask_key();
	test_results();
	test_stream();
	return unit_done("test_frame");
}
