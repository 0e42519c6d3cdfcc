/*
 * libFuzzer harness for the frame codec and UTF-8 validator: the input is
 * one configuration byte followed by a stream of frames, replayed as a
 * client stream and as a server stream while invariants are asserted.
 */
#include "autoconf.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "utf8.h"

#define FUZZ_ASSERT(c)	do { if (!(c)) abort(); } while (0)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const uint64_t	fuzz_sizes[8] = { 0, 1, 125, 126, 65535, 65536,
			    1048576, UINT64_MAX };

/* Is this a close code a peer may send? */
static int
fuzz_code_valid(uint16_t c)
{
	return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
	    (c >= 3000 && c <= 4999);
}

/* A rebuilt header must match the parsed bytes exactly, RSV aside. */
static void
fuzz_check_rebuild(const uint8_t *buf, const struct wsg_frame *f)
{
	uint8_t	out[WSG_FRAME_MAX_HEADER];
	size_t	n;

	n = frame_build_header(out, f->f_fin, f->f_opcode, f->f_len,
	    f->f_masked ? f->f_mask : NULL);
	FUZZ_ASSERT(n == f->f_hdr_len);
	FUZZ_ASSERT(out[0] == (buf[0] & 0x8f));
	FUZZ_ASSERT(memcmp(out + 1, buf + 1, n - 1) == 0);
}

/* Unmasking in two pieces at an odd offset equals unmasking at once. */
static void
fuzz_check_unmask(const uint8_t *plain, const uint8_t *wire, size_t n,
    const struct wsg_frame *f)
{
	uint8_t	*two;
	size_t	 k, i;

	if (!f->f_masked || n == 0)
		return;
	two = malloc(n);
	if (two == NULL)
		return;
	k = wire[0] % (n + 1);
	frame_unmask(two, wire, k, f->f_mask, 0);
	frame_unmask(two + k, wire + k, n - k, f->f_mask, k);
	FUZZ_ASSERT(memcmp(two, plain, n) == 0);
	for (i = 0; i < n; i++)
		FUZZ_ASSERT(plain[i] == (wire[i] ^ f->f_mask[i % 4]));
	free(two);
}

/* UTF-8 validation three ways (whole, masked, bytewise) must agree. */
static uint32_t
fuzz_utf8(uint32_t st, const uint8_t *plain, const uint8_t *wire, size_t n,
    const struct wsg_frame *f)
{
	uint32_t	a, b, c;
	size_t		i, k;

	a = utf8_validate(st, plain, n);
	if (f->f_masked) {
		b = utf8_validate_masked(st, wire, n, f->f_mask, 0);
		FUZZ_ASSERT(a == b);
		k = n ? wire[n - 1] % (n + 1) : 0;
		b = utf8_validate_masked(st, wire, k, f->f_mask, 0);
		b = utf8_validate_masked(b, wire + k, n - k, f->f_mask, k);
		FUZZ_ASSERT(a == b);
	}
	c = st;
	for (i = 0; i < n && c != WSG_UTF8_REJECT; i++) {
		c = utf8_validate(c, plain + i, 1);
		/* Fail fast: REJECT exactly at the first hopeless byte. */
		if (c == WSG_UTF8_REJECT)
			FUZZ_ASSERT(utf8_validate(st, plain, i) !=
			    WSG_UTF8_REJECT);
	}
	FUZZ_ASSERT(a == c);
	return a;
}

/* A valid close payload rebuilds into a frame that parses back the same. */
static void
fuzz_check_close(const uint8_t *p, size_t n, uint16_t code, int validate,
    const uint8_t *mask)
{
	uint8_t			out[WSG_CLOSE_FRAME_MAX], pay[125];
	char			reason[126];
	struct wsg_frame	f;
	uint16_t		code2;
	size_t			rl, olen;

	if (n < 2)
		return;
	FUZZ_ASSERT(fuzz_code_valid(code));
	rl = n - 2;
	memcpy(reason, p + 2, rl);
	reason[rl] = '\0';
	olen = frame_build_close(out, code, reason, mask);
	FUZZ_ASSERT(olen <= WSG_CLOSE_FRAME_MAX);
	FUZZ_ASSERT(frame_parse_header(out, olen, &f) == WSG_FRAME_OK);
	FUZZ_ASSERT(f.f_hdr_len + f.f_len == olen);
	FUZZ_ASSERT(f.f_opcode == WSG_OP_CLOSE && f.f_fin && f.f_len <= 125);
	FUZZ_ASSERT(f.f_masked == (mask != NULL));
	if (f.f_masked)
		frame_unmask(pay, out + f.f_hdr_len, f.f_len, f.f_mask, 0);
	else
		memcpy(pay, out + f.f_hdr_len, f.f_len);
	FUZZ_ASSERT(frame_check_close(pay, f.f_len, validate, &code2) ==
	    WSG_FRAME_OK);
	FUZZ_ASSERT(code2 == code);
	FUZZ_ASSERT(memcmp(pay + 2, reason, f.f_len - 2) == 0);
	if (strlen(reason) == rl && rl <= 123)
		FUZZ_ASSERT(f.f_len == n);
}

/* Replay the stream in one direction; stop where a gateway would close. */
static void
fuzz_stream(const uint8_t *data, size_t size,
    const struct wsg_frame_limits *lim, int validate)
{
	struct wsg_msg_state	 st, before;
	struct wsg_frame	 f;
	enum wsg_frame_result	 r;
	uint8_t			*plain;
	uint16_t		 code;
	size_t			 pos = 0, avail;

	memset(&st, 0, sizeof(st));
	while (pos < size) {
		r = frame_parse_header(data + pos, size - pos, &f);
		if (r == WSG_FRAME_INCOMPLETE) {
			FUZZ_ASSERT(size - pos < WSG_FRAME_MAX_HEADER);
			return;
		}
		if (r != WSG_FRAME_OK) {
			FUZZ_ASSERT(r == WSG_FRAME_PROTOCOL);
			return;
		}
		FUZZ_ASSERT(f.f_hdr_len >= 2 && f.f_hdr_len <= 14);
		FUZZ_ASSERT(f.f_hdr_len <= size - pos);
		FUZZ_ASSERT(f.f_len < (1ULL << 63));
		fuzz_check_rebuild(data + pos, &f);

		before = st;
		r = frame_check_header(&f, lim, &st);
		FUZZ_ASSERT(frame_result_reason(r) != NULL);
		if (r != WSG_FRAME_OK) {
			FUZZ_ASSERT(r >= WSG_FRAME_PROTOCOL &&
			    r <= WSG_FRAME_BINARY_DENIED &&
			    r != WSG_FRAME_INVALID_UTF8);
			FUZZ_ASSERT(frame_result_close_code(r) != 1011);
			FUZZ_ASSERT(memcmp(&st, &before, sizeof(st)) == 0);
			return;
		}
		FUZZ_ASSERT(f.f_rsv == 0);
		FUZZ_ASSERT(f.f_masked == (lim->fl_expect_masked != 0));
		if (f.f_opcode >= WSG_OP_CLOSE) {
			FUZZ_ASSERT(f.f_fin && f.f_len <= 125);
			FUZZ_ASSERT(memcmp(&st, &before, sizeof(st)) == 0);
		} else {
			FUZZ_ASSERT(f.f_len <= lim->fl_max_frame);
			FUZZ_ASSERT(st.ms_len <= lim->fl_max_message);
			FUZZ_ASSERT(st.ms_opcode == WSG_OP_TEXT ||
			    st.ms_opcode == WSG_OP_BINARY);
			FUZZ_ASSERT(lim->fl_allow_binary ||
			    st.ms_opcode == WSG_OP_TEXT);
		}
		pos += f.f_hdr_len;

		avail = size - pos;
		if (f.f_len < avail)
			avail = (size_t)f.f_len;
		plain = malloc(avail ? avail : 1);
		if (plain == NULL)
			return;
		if (f.f_masked)
			frame_unmask(plain, data + pos, avail, f.f_mask, 0);
		else
			memcpy(plain, data + pos, avail);
		fuzz_check_unmask(plain, data + pos, avail, &f);

		if (f.f_opcode == WSG_OP_CLOSE && avail == f.f_len) {
			r = frame_check_close(plain, avail, validate, &code);
			FUZZ_ASSERT(r == WSG_FRAME_OK ||
			    r == WSG_FRAME_PROTOCOL ||
			    r == WSG_FRAME_INVALID_UTF8);
			if (r == WSG_FRAME_OK)
				fuzz_check_close(plain, avail, code, validate,
				    f.f_masked ? f.f_mask : NULL);
		} else if (f.f_opcode < WSG_OP_CLOSE &&
		    st.ms_opcode == WSG_OP_TEXT)
			st.ms_utf8 = fuzz_utf8(st.ms_utf8, plain, data + pos,
			    avail, &f);
		else
			(void)fuzz_utf8(WSG_UTF8_ACCEPT, plain, data + pos,
			    avail, &f);
		free(plain);
		pos += avail;
		if (avail < f.f_len)
			return;
		if (validate && st.ms_utf8 == WSG_UTF8_REJECT)
			return;

		before = st;
		r = frame_msg_end(&f, &st, validate);
		if (f.f_opcode >= WSG_OP_CLOSE || !f.f_fin) {
			FUZZ_ASSERT(r == WSG_FRAME_OK);
			FUZZ_ASSERT(memcmp(&st, &before, sizeof(st)) == 0);
		} else {
			FUZZ_ASSERT(r == WSG_FRAME_OK ||
			    (r == WSG_FRAME_INVALID_UTF8 && validate &&
			    before.ms_opcode == WSG_OP_TEXT));
			FUZZ_ASSERT(st.ms_opcode == 0 && st.ms_len == 0);
			if (r != WSG_FRAME_OK)
				return;
		}
		if (f.f_opcode == WSG_OP_CLOSE)
			return;
	}
}

/* Build a close frame from arbitrary bytes as a reason. */
static void
fuzz_build_close(const uint8_t *data, size_t size)
{
	uint8_t			out[WSG_CLOSE_FRAME_MAX];
	static const uint8_t	mask[4] = { 0x12, 0x34, 0x56, 0x78 };
	char			reason[200];
	struct wsg_frame	f;
	size_t			n, rl;

	rl = size < sizeof(reason) - 1 ? size : sizeof(reason) - 1;
	memcpy(reason, data, rl);
	reason[rl] = '\0';
	n = frame_build_close(out, 1000, reason, size % 2 ? mask : NULL);
	FUZZ_ASSERT(n <= WSG_CLOSE_FRAME_MAX);
	FUZZ_ASSERT(frame_parse_header(out, n, &f) == WSG_FRAME_OK);
	FUZZ_ASSERT(f.f_hdr_len + f.f_len == n && f.f_len >= 2 &&
	    f.f_len <= 125);
	/* A cut reason never ends on a continuation byte it split. */
	if (strlen(reason) > 123 && f.f_len - 2 < strlen(reason))
		FUZZ_ASSERT(((uint8_t)reason[f.f_len - 2] & 0xc0) != 0x80 ||
		    f.f_len == 2);
}

/* Replay one input under both directions' limits. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wsg_frame_limits	lim;
	uint8_t			cfg;
	int			validate;

	if (size < 1)
		return 0;
	cfg = data[0];
	lim.fl_max_frame = fuzz_sizes[cfg & 7];
	lim.fl_max_message = fuzz_sizes[(cfg >> 3) & 7];
	lim.fl_allow_binary = (cfg >> 6) & 1;
	validate = !((cfg >> 7) & 1);

	lim.fl_expect_masked = 1;
	fuzz_stream(data + 1, size - 1, &lim, validate);
	lim.fl_expect_masked = 0;
	fuzz_stream(data + 1, size - 1, &lim, validate);
	fuzz_build_close(data + 1, size - 1);
	return 0;
}
