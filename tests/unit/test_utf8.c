/*
 * Unit tests for the incremental UTF-8 validator, checked against an
 * oracle built from an encoder of every Unicode scalar value.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "unit.h"

#define ORACLE_ACCEPT	0
#define ORACLE_REJECT	1
#define ORACLE_PARTIAL	2

/* Prefixes of valid encodings, by length; full 4-byte ones sorted. */
static uint8_t	 oracle_lead[256];	/* encoded length for a lead byte */
static uint8_t	 oracle_v2[65536];
static uint8_t	*oracle_v3;		/* bit per 3-byte prefix */
static uint32_t	*oracle_v4;
static size_t	 oracle_n4;

static const uint8_t	interesting[] = { 0x00, 0x41, 0x7f, 0x80, 0x8f,
			    0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf,
			    0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1,
			    0xf3, 0xf4, 0xf5, 0xf7, 0xf8, 0xfe, 0xff };

/* A small deterministic generator so failures reproduce. */
static uint32_t
test_rand(void)
{
	static uint64_t	s = 0x2545f4914f6cdd1dULL;

	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return (uint32_t)(s >> 16);
}

/* Encode a scalar value the textbook way; returns its length. */
static size_t
test_encode(uint32_t cp, uint8_t *e)
{
	if (cp < 0x80) {
		e[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		e[0] = (uint8_t)(0xc0 | (cp >> 6));
		e[1] = (uint8_t)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		e[0] = (uint8_t)(0xe0 | (cp >> 12));
		e[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		e[2] = (uint8_t)(0x80 | (cp & 0x3f));
		return 3;
	}
	e[0] = (uint8_t)(0xf0 | (cp >> 18));
	e[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
	e[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
	e[3] = (uint8_t)(0x80 | (cp & 0x3f));
	return 4;
}

/* Record every prefix of every valid encoding. */
static void
oracle_init(void)
{
	uint8_t		e[4];
	uint32_t	cp, k3;
	size_t		n;

	oracle_v3 = calloc(1 << 21, 1);
	oracle_v4 = calloc(0x110000, sizeof(*oracle_v4));
	if (oracle_v3 == NULL || oracle_v4 == NULL)
		abort();
	for (cp = 0; cp <= 0x10ffff; cp++) {
		if (cp >= 0xd800 && cp <= 0xdfff)
			continue;
		n = test_encode(cp, e);
		oracle_lead[e[0]] = (uint8_t)n;
		if (n >= 2)
			oracle_v2[(e[0] << 8) | e[1]] = 1;
		if (n >= 3) {
			k3 = ((uint32_t)e[0] << 16) | (e[1] << 8) | e[2];
			oracle_v3[k3 >> 3] |= (uint8_t)(1 << (k3 & 7));
		}
		if (n == 4)	/* ascending, as UTF-8 keeps code point order */
			oracle_v4[oracle_n4++] = ((uint32_t)e[0] << 24) |
			    ((uint32_t)e[1] << 16) | (e[2] << 8) | e[3];
	}
}

/* Compare two 4-byte keys for bsearch. */
static int
oracle_cmp(const void *a, const void *b)
{
	uint32_t	x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Could the k bytes at p begin (or be) a valid encoding? */
static int
oracle_viable(const uint8_t *p, size_t k)
{
	uint32_t	key;

	switch (k) {
	case 1:
		return oracle_lead[p[0]] != 0;
	case 2:
		return oracle_v2[(p[0] << 8) | p[1]];
	case 3:
		key = ((uint32_t)p[0] << 16) | (p[1] << 8) | p[2];
		return (oracle_v3[key >> 3] >> (key & 7)) & 1;
	default:
		key = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
		    (p[2] << 8) | p[3];
		return bsearch(&key, oracle_v4, oracle_n4, sizeof(key),
		    oracle_cmp) != NULL;
	}
}

/* Classify a buffer; *bad gets the index of the first impossible byte. */
static int
oracle_check(const uint8_t *p, size_t n, size_t *bad)
{
	size_t	i, start = 0, k = 0;

	for (i = 0; i < n; i++) {
		k++;
		if (!oracle_viable(p + start, k)) {
			*bad = i;
			return ORACLE_REJECT;
		}
		if (k == oracle_lead[p[start]]) {
			k = 0;
			start = i + 1;
		}
	}
	*bad = n;
	return k == 0 ? ORACLE_ACCEPT : ORACLE_PARTIAL;
}

/* The oracle's class of a validator state. */
static int
test_class(uint32_t st)
{
	if (st == WSG_UTF8_ACCEPT)
		return ORACLE_ACCEPT;
	if (st == WSG_UTF8_REJECT)
		return ORACLE_REJECT;
	return ORACLE_PARTIAL;
}

/* Validate a string literal of known length from ACCEPT. */
static uint32_t
test_v(const char *s, size_t n)
{
	return utf8_validate(WSG_UTF8_ACCEPT, (const uint8_t *)s, n);
}

/* The classic valid and invalid sequences, one by one. */
static void
test_classic(void)
{
	uint32_t	st;

	CHECK_INT(test_v("", 0), WSG_UTF8_ACCEPT);
	CHECK_INT(utf8_validate(WSG_UTF8_ACCEPT, NULL, 0), WSG_UTF8_ACCEPT);
	CHECK_INT(test_v("Hello, world", 12), WSG_UTF8_ACCEPT);
	CHECK_INT(test_v("\x00\x7f", 2), WSG_UTF8_ACCEPT);
	CHECK_INT(test_v("\xc2\x80", 2), WSG_UTF8_ACCEPT);	/* U+0080 */
	CHECK_INT(test_v("\xdf\xbf", 2), WSG_UTF8_ACCEPT);	/* U+07FF */
	CHECK_INT(test_v("\xe0\xa0\x80", 3), WSG_UTF8_ACCEPT);	/* U+0800 */
	CHECK_INT(test_v("\xed\x9f\xbf", 3), WSG_UTF8_ACCEPT);	/* U+D7FF */
	CHECK_INT(test_v("\xee\x80\x80", 3), WSG_UTF8_ACCEPT);	/* U+E000 */
	CHECK_INT(test_v("\xef\xbf\xbf", 3), WSG_UTF8_ACCEPT);	/* U+FFFF */
	CHECK_INT(test_v("\xf0\x90\x80\x80", 4), WSG_UTF8_ACCEPT);
	CHECK_INT(test_v("\xf4\x8f\xbf\xbf", 4), WSG_UTF8_ACCEPT);
	CHECK_INT(test_v("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11),
	    WSG_UTF8_ACCEPT);

	/* Overlong forms. */
	CHECK_INT(test_v("\xc0\x80", 2), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xc1\xbf", 2), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xe0\x80\x80", 3), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xe0\x9f\xbf", 3), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xf0\x80\x80\x80", 4), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xf0\x8f\xbf\xbf", 4), WSG_UTF8_REJECT);
	/* Surrogates. */
	CHECK_INT(test_v("\xed\xa0\x80", 3), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xed\xbf\xbf", 3), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xed\xa0\x80\xed\xb0\x80", 6), WSG_UTF8_REJECT);
	/* Above U+10FFFF, and bytes that never appear. */
	CHECK_INT(test_v("\xf4\x90\x80\x80", 4), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xf5\x80\x80\x80", 4), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xf7\xbf\xbf\xbf", 4), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xf8\x88\x80\x80\x80", 5), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xfc\x84\x80\x80\x80\x80", 6), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xfe", 1), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xff", 1), WSG_UTF8_REJECT);
	/* Lone and misplaced continuation bytes. */
	CHECK_INT(test_v("\x80", 1), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xbf", 1), WSG_UTF8_REJECT);
	CHECK_INT(test_v("a\x80" "b", 3), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xc2\x80\x80", 3), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xc2\x41", 2), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xe1\x80\x41", 3), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xf1\x80\x80\xc0", 4), WSG_UTF8_REJECT);
	CHECK_INT(test_v("\xe1\xc2\x80", 3), WSG_UTF8_REJECT);

	/* Truncated sequences are neither accepted nor rejected. */
	st = test_v("\xc2", 1);
	CHECK(st != WSG_UTF8_ACCEPT && st != WSG_UTF8_REJECT);
	st = test_v("ab\xe1\x80", 4);
	CHECK(st != WSG_UTF8_ACCEPT && st != WSG_UTF8_REJECT);
	st = test_v("\xf0\x90\x80", 3);
	CHECK(st != WSG_UTF8_ACCEPT && st != WSG_UTF8_REJECT);
	st = test_v("\xf4", 1);
	CHECK(st != WSG_UTF8_ACCEPT && st != WSG_UTF8_REJECT);
	/* ... and resume correctly, including the restricted ranges. */
	CHECK_INT(utf8_validate(test_v("\xf4", 1),
	    (const uint8_t *)"\x8f\xbf\xbf", 3), WSG_UTF8_ACCEPT);
	CHECK_INT(utf8_validate(test_v("\xf4", 1),
	    (const uint8_t *)"\x90", 1), WSG_UTF8_REJECT);
	CHECK_INT(utf8_validate(test_v("\xed", 1),
	    (const uint8_t *)"\xa0", 1), WSG_UTF8_REJECT);
	CHECK_INT(utf8_validate(test_v("\xe0", 1),
	    (const uint8_t *)"\x9f", 1), WSG_UTF8_REJECT);
	CHECK_INT(utf8_validate(test_v("\xf0", 1),
	    (const uint8_t *)"\x8f", 1), WSG_UTF8_REJECT);
	CHECK_INT(utf8_validate(test_v("\xc2", 1),
	    (const uint8_t *)"a", 1), WSG_UTF8_REJECT);

	/* REJECT is sticky. */
	CHECK_INT(utf8_validate(WSG_UTF8_REJECT, (const uint8_t *)"abc", 3),
	    WSG_UTF8_REJECT);
	CHECK_INT(utf8_validate(WSG_UTF8_REJECT, NULL, 0), WSG_UTF8_REJECT);
	CHECK_INT(utf8_validate(WSG_UTF8_REJECT,
	    (const uint8_t *)"aaaaaaaaaaaaaaaa", 16), WSG_UTF8_REJECT);
}

/* Every split of multi-byte characters across two calls. */
static void
test_splits(void)
{
	static const char	*chars[] = { "\xf0\x9f\x98\x80",
				    "\xf4\x8f\xbf\xbf", "\xf0\x90\x80\x80",
				    "\xe2\x82\xac", "\xed\x9f\xbf",
				    "\xc3\xa9" };
	uint8_t			 buf[64];
	uint32_t		 st;
	size_t			 c, n, k, pad;

	for (c = 0; c < sizeof(chars) / sizeof(chars[0]); c++) {
		n = strlen(chars[c]);
		for (pad = 0; pad <= 17; pad += 17) {
			memset(buf, 'x', sizeof(buf));
			memcpy(buf + pad, chars[c], n);
			for (k = 0; k <= pad + n; k++) {
				st = utf8_validate(WSG_UTF8_ACCEPT, buf, k);
				if (k > pad && k < pad + n)
					CHECK(st != WSG_UTF8_ACCEPT &&
					    st != WSG_UTF8_REJECT);
				else
					CHECK_INT(st, WSG_UTF8_ACCEPT);
				st = utf8_validate(st, buf + k,
				    pad + n + 20 - k);
				CHECK_INT(st, WSG_UTF8_ACCEPT);
			}
		}
	}
	/* Byte by byte through a long mixed string. */
	st = WSG_UTF8_ACCEPT;
	for (k = 0; k < 4; k++)
		st = utf8_validate(st, (const uint8_t *)chars[0] + k, 1);
	CHECK_INT(st, WSG_UTF8_ACCEPT);
}

/* The ASCII fast path at every alignment, and failing at the first byte. */
static void
test_fast_path(void)
{
	uint8_t		buf[48];
	uint32_t	st;
	size_t		i;
	int		bad = 0;

	memset(buf, 'a', sizeof(buf));
	CHECK_INT(utf8_validate(WSG_UTF8_ACCEPT, buf, sizeof(buf)),
	    WSG_UTF8_ACCEPT);
	for (i = 0; i < sizeof(buf) - 1; i++) {
		memset(buf, 'a', sizeof(buf));
		buf[i] = 0xc3;
		buf[i + 1] = 0xa9;
		if (utf8_validate(WSG_UTF8_ACCEPT, buf, sizeof(buf)) !=
		    WSG_UTF8_ACCEPT)
			bad++;
		/* The character cut by the end of the buffer. */
		st = utf8_validate(WSG_UTF8_ACCEPT, buf, i + 1);
		if (st == WSG_UTF8_ACCEPT || st == WSG_UTF8_REJECT)
			bad++;
	}
	for (i = 0; i < sizeof(buf); i++) {
		memset(buf, 'a', sizeof(buf));
		buf[i] = 0x80;
		if (utf8_validate(WSG_UTF8_ACCEPT, buf, sizeof(buf)) !=
		    WSG_UTF8_REJECT)
			bad++;
		/* Fail fast: REJECT right after the bad byte, not before. */
		if (utf8_validate(WSG_UTF8_ACCEPT, buf, i) != WSG_UTF8_ACCEPT)
			bad++;
		if (utf8_validate(WSG_UTF8_ACCEPT, buf, i + 1) !=
		    WSG_UTF8_REJECT)
			bad++;
		buf[i] = 0xff;
		if (utf8_validate(WSG_UTF8_ACCEPT, buf, i + 1) !=
		    WSG_UTF8_REJECT)
			bad++;
		/* A high bit in the middle of a run of ASCII. */
		buf[i] = 0x7f;
		if (utf8_validate(WSG_UTF8_ACCEPT, buf, sizeof(buf)) !=
		    WSG_UTF8_ACCEPT)
			bad++;
	}
	CHECK_INT(bad, 0);

	/* Mid-sequence state does not skip ASCII that breaks it. */
	memset(buf, 'a', sizeof(buf));
	CHECK_INT(utf8_validate(test_v("\xe2", 1), buf, sizeof(buf)),
	    WSG_UTF8_REJECT);
	/* Fail fast within a multi-byte character followed by more data. */
	memcpy(buf, "abc\xe0\x80zzzzzzzzzzzzzzzzzzz", 24);
	st = utf8_validate(WSG_UTF8_ACCEPT, buf, 4);
	CHECK(st != WSG_UTF8_ACCEPT && st != WSG_UTF8_REJECT);
	CHECK_INT(utf8_validate(WSG_UTF8_ACCEPT, buf, 5), WSG_UTF8_REJECT);
	CHECK_INT(utf8_validate(WSG_UTF8_ACCEPT, buf, 24), WSG_UTF8_REJECT);
}

/*
 * Long runs of ASCII go 64 bytes at a time: one non-ASCII byte anywhere in
 * a block, at any alignment of the buffer and any mask offset, must still
 * be seen, plain and masked.
 */
static void
test_blocks(void)
{
	static const uint8_t	mask[4] = { 0x80, 0x7f, 0xff, 0x01 };
	uint8_t			buf[300], m[300];
	size_t			i, a, k, n;
	int			bad = 0, runs = 0;

	for (a = 0; a < 8; a++) {
		n = sizeof(buf) - a;
		for (i = 0; i < n; i++) {
			memset(buf, 'z', sizeof(buf));
			buf[a + i] = 0xbf;	/* a lone continuation */
			for (k = 0; k < n; k++)
				m[a + k] = buf[a + k] ^ mask[(a + k) % 4];
			if (utf8_validate(WSG_UTF8_ACCEPT, buf + a, n) !=
			    WSG_UTF8_REJECT ||
			    utf8_validate(WSG_UTF8_ACCEPT, buf + a, i) !=
			    WSG_UTF8_ACCEPT)
				bad++;
			if (utf8_validate_masked(WSG_UTF8_ACCEPT, m + a, n,
			    mask, a) != WSG_UTF8_REJECT ||
			    utf8_validate_masked(WSG_UTF8_ACCEPT, m + a, i,
			    mask, a) != WSG_UTF8_ACCEPT)
				bad++;
			if (i + 1 < n) {
				buf[a + i] = 0xc3;
				buf[a + i + 1] = 0xa9;
				for (k = 0; k < n; k++)
					m[a + k] = buf[a + k] ^
					    mask[(a + k) % 4];
				if (utf8_validate(WSG_UTF8_ACCEPT, buf + a,
				    n) != WSG_UTF8_ACCEPT ||
				    utf8_validate_masked(WSG_UTF8_ACCEPT,
				    m + a, n, mask, a) != WSG_UTF8_ACCEPT)
					bad++;
			}
			runs++;
		}
	}
	CHECK_INT(bad, 0);
	CHECK(runs > 2000);
}

/* Every input of one, two and three bytes against the oracle. */
static void
test_exhaustive(void)
{
	uint8_t		p[4];
	uint32_t	x, st;
	size_t		bad, i, j, k;
	int		cls, wrong = 0;

	for (x = 0; x < 256; x++) {
		p[0] = (uint8_t)x;
		if (test_class(utf8_validate(WSG_UTF8_ACCEPT, p, 1)) !=
		    oracle_check(p, 1, &bad))
			wrong++;
	}
	for (x = 0; x < 65536; x++) {
		p[0] = (uint8_t)(x >> 8);
		p[1] = (uint8_t)x;
		cls = oracle_check(p, 2, &bad);
		if (test_class(utf8_validate(WSG_UTF8_ACCEPT, p, 2)) != cls)
			wrong++;
		st = utf8_validate(WSG_UTF8_ACCEPT, p, 1);
		if (test_class(utf8_validate(st, p + 1, 1)) != cls)
			wrong++;
	}
	CHECK_INT(wrong, 0);
	for (x = 0; x < (1U << 24); x++) {
		p[0] = (uint8_t)(x >> 16);
		p[1] = (uint8_t)(x >> 8);
		p[2] = (uint8_t)x;
		cls = oracle_check(p, 3, &bad);
		if (test_class(utf8_validate(WSG_UTF8_ACCEPT, p, 3)) != cls)
			wrong++;
		st = utf8_validate(WSG_UTF8_ACCEPT, p, 2);
		if (test_class(utf8_validate(st, p + 2, 1)) != cls)
			wrong++;
	}
	CHECK_INT(wrong, 0);
	/* Four bytes: every lead with the interesting followers. */
	for (x = 0; x < 256; x++) {
		p[0] = (uint8_t)x;
		for (i = 0; i < sizeof(interesting); i++) {
			p[1] = interesting[i];
			for (j = 0; j < sizeof(interesting); j++) {
				p[2] = interesting[j];
				for (k = 0; k < sizeof(interesting); k++) {
					p[3] = interesting[k];
					cls = oracle_check(p, 4, &bad);
					st = utf8_validate(WSG_UTF8_ACCEPT,
					    p, 4);
					if (test_class(st) != cls)
						wrong++;
				}
			}
		}
	}
	CHECK_INT(wrong, 0);
}

/* Fill p with a random mix of ASCII, valid characters and bad bytes. */
static void
test_fill(uint8_t *p, size_t n)
{
	uint8_t		e[4];
	uint32_t	cp;
	size_t		i = 0, k, run;

	while (i < n) {
		switch (test_rand() % 8) {
		case 0:
		case 1:
			run = test_rand() % 40;
			for (k = 0; k < run && i < n; k++)
				p[i++] = 0x20 + test_rand() % 0x5f;
			break;
		case 2:
		case 3:
		case 4:
			do {
				cp = test_rand() % 0x110000;
			} while (cp >= 0xd800 && cp <= 0xdfff);
			run = test_encode(cp, e);
			for (k = 0; k < run && i < n; k++)
				p[i++] = e[k];
			break;
		case 5:
			if (test_rand() % 16 == 0)
				p[i++] = interesting[test_rand() %
				    sizeof(interesting)];
			break;
		case 6:
			if (test_rand() % 64 == 0)
				p[i++] = (uint8_t)test_rand();
			break;
		default:
			run = test_encode(0x80 + test_rand() % 0x780, e);
			for (k = 0; k < run && i < n; k++)
				p[i++] = e[k];
			break;
		}
	}
}

/* Random long buffers: class, first bad byte, splits, masked variant. */
static void
test_random(void)
{
	uint8_t		p[1200], m[1200], copy[1200], mask[4];
	uint32_t	st, want;
	uint64_t	off;
	size_t		n, bad, i, k;
	int		round, cls, wrong = 0, rejects = 0, accepts = 0;

	for (round = 0; round < 20000; round++) {
		n = test_rand() % (round < 10000 ? 64 : sizeof(p));
		test_fill(p, n);
		cls = oracle_check(p, n, &bad);
		rejects += cls == ORACLE_REJECT;
		accepts += cls == ORACLE_ACCEPT;
		want = utf8_validate(WSG_UTF8_ACCEPT, p, n);
		if (test_class(want) != cls)
			wrong++;
		if (cls == ORACLE_REJECT) {
			if (utf8_validate(WSG_UTF8_ACCEPT, p, bad) ==
			    WSG_UTF8_REJECT)
				wrong++;
			if (utf8_validate(WSG_UTF8_ACCEPT, p, bad + 1) !=
			    WSG_UTF8_REJECT)
				wrong++;
		}
		k = n ? test_rand() % (n + 1) : 0;
		st = utf8_validate(WSG_UTF8_ACCEPT, p, k);
		if (utf8_validate(st, p + k, n - k) != want)
			wrong++;

		for (i = 0; i < 4; i++)
			mask[i] = (uint8_t)test_rand();
		off = test_rand() % 2 ? test_rand() % 8 :
		    ((uint64_t)test_rand() << 20);
		for (i = 0; i < n; i++)
			m[i] = p[i] ^ mask[(off + i) % 4];
		memcpy(copy, m, n);
		if (utf8_validate_masked(WSG_UTF8_ACCEPT, m, n, mask, off) !=
		    want)
			wrong++;
		st = utf8_validate_masked(WSG_UTF8_ACCEPT, m, k, mask, off);
		if (utf8_validate_masked(st, m + k, n - k, mask, off + k) !=
		    want)
			wrong++;
		if (memcmp(copy, m, n) != 0)
			wrong++;
		if (cls == ORACLE_REJECT && utf8_validate_masked(
		    WSG_UTF8_ACCEPT, m, bad + 1, mask, off) != WSG_UTF8_REJECT)
			wrong++;
	}
	CHECK_INT(wrong, 0);
	/* The generator must exercise all three outcomes. */
	CHECK(rejects > 1000);
	CHECK(accepts > 1000);
	CHECK(rejects + accepts < 20000);
}

/* The masked variant on fixed cases, across its internal chunking. */
static void
test_masked(void)
{
	static const uint8_t	mask[4] = { 0xa1, 0x00, 0x5c, 0xff };
	static const uint8_t	zero[4] = { 0, 0, 0, 0 };
	uint8_t			p[1000], m[1000];
	size_t			i, pos;
	uint64_t		off = 3;

	CHECK_INT(utf8_validate_masked(WSG_UTF8_ACCEPT, NULL, 0, mask, 0),
	    WSG_UTF8_ACCEPT);
	CHECK_INT(utf8_validate_masked(WSG_UTF8_REJECT, NULL, 0, mask, 0),
	    WSG_UTF8_REJECT);
	CHECK_INT(utf8_validate_masked(WSG_UTF8_ACCEPT,
	    (const uint8_t *)"\xc0\x80", 2, zero, 0), WSG_UTF8_REJECT);
	/* A 4-byte character straddling each chunk boundary region. */
	for (pos = 250; pos < 262; pos++) {
		memset(p, 'q', sizeof(p));
		memcpy(p + pos, "\xf0\x9f\x98\x80", 4);
		memcpy(p + pos + 256, "\xe2\x82\xac", 3);
		for (i = 0; i < sizeof(p); i++)
			m[i] = p[i] ^ mask[(off + i) % 4];
		CHECK_INT(utf8_validate_masked(WSG_UTF8_ACCEPT, m, sizeof(p),
		    mask, off), WSG_UTF8_ACCEPT);
		p[pos + 256 + 1] = 'x';
		m[pos + 256 + 1] = 'x' ^ mask[(off + pos + 256 + 1) % 4];
		CHECK_INT(utf8_validate_masked(WSG_UTF8_ACCEPT, m, sizeof(p),
		    mask, off), WSG_UTF8_REJECT);
		CHECK(utf8_validate_masked(WSG_UTF8_ACCEPT, m, pos + 2,
		    mask, off) != WSG_UTF8_ACCEPT);
	}
}

/* Run every UTF-8 test and report the counts. */
int
main(void)
{
	oracle_init();
	CHECK_INT(oracle_n4, 0x100000);
	test_classic();
	test_splits();
	test_fast_path();
	test_blocks();
	test_exhaustive();
	test_random();
	test_masked();
	free(oracle_v3);
	free(oracle_v4);
	return unit_done("test_utf8");
}
