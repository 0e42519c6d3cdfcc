/*
 * Unit tests of the PROXY protocol parser (v1 and v2) and of the
 * X-Forwarded-For walk: good headers, every truncation, every wrong byte
 * we could think of, caps, TLVs, and spoofed forwarding lists.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdint.h>
#include <string.h>

#include "cidr.h"
#include "proxy.h"
#include "unit.h"

/* Parse a byte string of known length. */
static enum wsg_proxy_result
parse(const void *buf, size_t len, struct wsg_proxy_info *pi)
{
	return proxy_parse(buf, len, pi);
}

/* A text header (NUL-terminated) must give r. */
static void
v1(const char *s, enum wsg_proxy_result r)
{
	struct wsg_proxy_info	pi;

	CHECK_INT(parse(s, strlen(s), &pi), r);
	if (parse(s, strlen(s), &pi) != r)
		fprintf(stderr, "  for \"%s\"\n", s);
}

/* Every proper prefix of buf[0..n) must be INCOMPLETE. */
static void
prefixes_incomplete(const uint8_t *buf, size_t n)
{
	struct wsg_proxy_info	pi;
	size_t			i, bad = 0;

	for (i = 0; i < n; i++) {
		if (proxy_parse(buf, i, &pi) != WSG_PROXY_INCOMPLETE)
			bad++;
	}
	CHECK_INT(bad, 0);
}

/* The text form of a sockaddr, with its port. */
static const char *
fmt(const struct sockaddr_storage *ss)
{
	static char	 out[INET6_ADDRSTRLEN + 16];
	char		 a[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;

		inet_ntop(AF_INET, &sin->sin_addr, a, sizeof(a));
		snprintf(out, sizeof(out), "%s:%u", a, ntohs(sin->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a));
		snprintf(out, sizeof(out), "[%s]:%u", a,
		    ntohs(sin6->sin6_port));
	} else
		snprintf(out, sizeof(out), "family %d", ss->ss_family);
	return out;
}

/* Good v1 headers, and what follows them is left alone. */
static void
test_v1_good(void)
{
	static const char	 tcp4[] =
	    "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1";
	static const char	 tcp6[] =
	    "PROXY TCP6 2001:db8::1 2001:db8::2 0 65535\r\n";
	static const char	 unk[] = "PROXY UNKNOWN\r\n";
	static const char	 unk2[] =
	    "PROXY UNKNOWN ffff:f...f:ffff 65535 65535\r\n";
	struct wsg_proxy_info	 pi;
	size_t			 n;

	CHECK_INT(parse(tcp4, sizeof(tcp4) - 1, &pi), WSG_PROXY_OK);
	n = strlen("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n");
	CHECK_INT(pi.pi_len, n);
	CHECK_INT(pi.pi_local, 0);
	CHECK_STR(fmt(&pi.pi_src), "192.0.2.1:56324");
	CHECK_STR(fmt(&pi.pi_dst), "198.51.100.2:443");
	CHECK_INT(pi.pi_srclen, sizeof(struct sockaddr_in));
	CHECK_INT(pi.pi_dstlen, sizeof(struct sockaddr_in));
	prefixes_incomplete((const uint8_t *)tcp4, n);
	CHECK_INT(parse(tcp4, n, &pi), WSG_PROXY_OK);

	CHECK_INT(parse(tcp6, sizeof(tcp6) - 1, &pi), WSG_PROXY_OK);
	CHECK_INT(pi.pi_len, sizeof(tcp6) - 1);
	CHECK_STR(fmt(&pi.pi_src), "[2001:db8::1]:0");
	CHECK_STR(fmt(&pi.pi_dst), "[2001:db8::2]:65535");
	CHECK_INT(pi.pi_srclen, sizeof(struct sockaddr_in6));
	prefixes_incomplete((const uint8_t *)tcp6, sizeof(tcp6) - 1);

	CHECK_INT(parse(unk, sizeof(unk) - 1, &pi), WSG_PROXY_OK);
	CHECK_INT(pi.pi_local, 1);
	CHECK_INT(pi.pi_len, 15);
	prefixes_incomplete((const uint8_t *)unk, sizeof(unk) - 1);
	CHECK_INT(parse(unk2, sizeof(unk2) - 1, &pi), WSG_PROXY_OK);
	CHECK_INT(pi.pi_local, 1);
	CHECK_INT(pi.pi_len, sizeof(unk2) - 1);

	v1("PROXY TCP4 0.0.0.0 255.255.255.255 0 0\r\n", WSG_PROXY_OK);
	v1("PROXY TCP6 ::ffff:192.0.2.1 :: 1 2\r\n", WSG_PROXY_OK);
	v1("PROXY TCP6 FFFF:: 1:2:3:4:5:6:7:8 1 2\r\n", WSG_PROXY_OK);
}

/* The 107-byte cap, at and over it. */
static void
test_v1_cap(void)
{
	char			 line[WSG_PROXY_V1_MAX + 8];
	struct wsg_proxy_info	 pi;
	size_t			 n;

	/* "PROXY UNKNOWN " + padding + CRLF == 107 bytes. */
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	memcpy(line + WSG_PROXY_V1_MAX - 2, "\r\n", 2);
	CHECK_INT(parse(line, WSG_PROXY_V1_MAX, &pi), WSG_PROXY_OK);
	CHECK_INT(pi.pi_len, WSG_PROXY_V1_MAX);
	CHECK_INT(parse(line, WSG_PROXY_V1_MAX + 8, &pi), WSG_PROXY_OK);
	prefixes_incomplete((uint8_t *)line, WSG_PROXY_V1_MAX);

	/* 108: the CR is the 107th byte; never a header. */
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	memcpy(line + WSG_PROXY_V1_MAX - 1, "\r\n", 2);
	CHECK_INT(parse(line, WSG_PROXY_V1_MAX - 1, &pi),
	    WSG_PROXY_INCOMPLETE);
	CHECK_INT(parse(line, WSG_PROXY_V1_MAX, &pi), WSG_PROXY_INVALID);
	CHECK_INT(parse(line, WSG_PROXY_V1_MAX + 1, &pi), WSG_PROXY_INVALID);
	/* No CRLF at all. */
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	CHECK_INT(parse(line, sizeof(line), &pi), WSG_PROXY_INVALID);

	/* Legal 45-byte v6 addresses still cannot exceed the cap. */
	n = (size_t)snprintf(line, sizeof(line), "PROXY TCP6 %s %s 1 2\r\n",
	    "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
	    "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255");
	CHECK(n > WSG_PROXY_V1_MAX);
	CHECK_INT(parse(line, n, &pi), WSG_PROXY_INVALID);
	v1("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 ::1 1 2"
	    "\r\n", WSG_PROXY_OK);
}

/* Wrong v1 headers, complete or not. */
static void
test_v1_bad(void)
{
	struct wsg_proxy_info	pi;

	v1("", WSG_PROXY_INCOMPLETE);
	v1("P", WSG_PROXY_INCOMPLETE);
	v1("PRO", WSG_PROXY_INCOMPLETE);
	v1("PROXY", WSG_PROXY_INCOMPLETE);
	v1("PROXY TCP", WSG_PROXY_INCOMPLETE);
	v1("PROXY UNKNOWN", WSG_PROXY_INCOMPLETE);
	v1("PROXY UNKNOWN\r", WSG_PROXY_INCOMPLETE);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", WSG_PROXY_INCOMPLETE);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 0", WSG_PROXY_INCOMPLETE);
	v1("PROXY TCP6 ::", WSG_PROXY_INCOMPLETE);
	v1("PROXY TCP6 ::ffff:1.2.3.", WSG_PROXY_INCOMPLETE);

	v1("GET / HTTP/1.1\r\n", WSG_PROXY_INVALID);
	v1("X", WSG_PROXY_INVALID);
	v1("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", WSG_PROXY_INVALID);
	v1("PROXYTCP4", WSG_PROXY_INVALID);
	v1("PROXY  TCP4", WSG_PROXY_INVALID);
	v1("PROXY\tTCP4", WSG_PROXY_INVALID);
	v1("PROXY TCP5", WSG_PROXY_INVALID);
	v1("PROXY tcp4", WSG_PROXY_INVALID);
	v1("PROXY TCP ", WSG_PROXY_INVALID);
	v1("PROXY TCP4\r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP44", WSG_PROXY_INVALID);
	v1("PROXY UNKNOWNX", WSG_PROXY_INVALID);
	v1("PROXY UNKNOWN\n", WSG_PROXY_INVALID);
	v1("PROXY UNKNOWN\rX", WSG_PROXY_INVALID);
	v1("PROXY UNKNOWN \x01\r\n", WSG_PROXY_INVALID);
	v1("PROXY \r\n", WSG_PROXY_INVALID);
	/* Separators and line ends. */
	v1("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8\r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", WSG_PROXY_INVALID);
	/* Addresses of the wrong family or not addresses at all. */
	v1("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3 ", WSG_PROXY_INVALID);	/* early */
	v1("PROXY TCP4 256", WSG_PROXY_INVALID);	/* early */
	v1("PROXY TCP4 01.2.3.4", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4.", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1..", WSG_PROXY_INVALID);
	v1("PROXY TCP4 localhost", WSG_PROXY_INVALID);
	v1("PROXY TCP6 :::", WSG_PROXY_INVALID);
	v1("PROXY TCP6 1::2::", WSG_PROXY_INVALID);
	v1("PROXY TCP6 12345:", WSG_PROXY_INVALID);
	v1("PROXY TCP6 fe80::1%", WSG_PROXY_INVALID);
	v1("PROXY TCP6 [::1]", WSG_PROXY_INVALID);
	v1("PROXY TCP6 ::1.2:", WSG_PROXY_INVALID);
	v1("PROXY TCP6 1:2:3:4:5:6:7:8:9", WSG_PROXY_INVALID);
	v1("PROXY TCP6 1:2:3:4:5:6:7:8:", WSG_PROXY_INVALID);
	v1("PROXY TCP6 1::3:4:5:6:7:8:9", WSG_PROXY_INVALID);
	v1("PROXY TCP6 1:2:3:4:5:6:1.2.3.4:", WSG_PROXY_INVALID);
	v1("PROXY TCP6 1:2:3:4:5:6:7:1.", WSG_PROXY_INVALID);
	v1("PROXY TCP6 1:2:3:4:5:6:7::", WSG_PROXY_INCOMPLETE);
	v1("PROXY TCP6 ::1:2:3:4:5:6:7", WSG_PROXY_INCOMPLETE);
	v1("PROXY TCP6 1:2:3:4:5:6:1.2.3.4", WSG_PROXY_INCOMPLETE);
	v1("PROXY TCP6 ::1:2:3:4:5:1.2.3.4", WSG_PROXY_INCOMPLETE);
	v1("PROXY TCP6 1:2:3:4:5:6:7:8 ::1 1 2\r\n", WSG_PROXY_OK);
	v1("PROXY TCP6 1:2:3:4:5:6:7:8:: ::1 1 2\r\n", WSG_PROXY_INVALID);
	CHECK_INT(parse("PROXY TCP4 1.2.3.4 5.6.7.8\0 1 2\r\n", 33, &pi),
	    WSG_PROXY_INVALID);
	CHECK_INT(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\n", 32, &pi),
	    WSG_PROXY_INVALID);
	CHECK_INT(parse("PROXY UNKNOWN \0\r\n", 17, &pi),
	    WSG_PROXY_INVALID);
	CHECK_INT(parse("PROXY TCP6 ::1\0x ::1 1 2\r\n", 26, &pi),
	    WSG_PROXY_INVALID);
	CHECK_INT(parse("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", 33, &pi),
	    WSG_PROXY_INVALID);
	CHECK_INT(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1\0 2\r\n", 33, &pi),
	    WSG_PROXY_INVALID);
	/* Ports. */
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 00", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 0x50 2\r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 123456", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 99999", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2a\r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 65535 65535\r\n", WSG_PROXY_OK);
	/*
	 * A token of 46 bytes, one more than its buffer holds with its NUL,
	 * then its separator: refused at its 46th byte, not stored (ASan).
	 */
	v1("PROXY TCP6 1111111111111111111111111111111111111111111111 ::1 "
	    "1 2\r\n", WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 "
	    "1111111111111111111111111111111111111111111111 2\r\n",
	    WSG_PROXY_INVALID);
	v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 "
	    "1111111111111111111111111111111111111111111111\r\n",
	    WSG_PROXY_INVALID);
}

/* Build a v2 header: ver_cmd, fam, block of n bytes (may be NULL). */
static size_t
v2_build(uint8_t *out, uint8_t vc, uint8_t fam, const uint8_t *blk,
    size_t n, uint16_t lenfield)
{
	static const uint8_t	sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00,
	    0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

	memcpy(out, sig, 12);
	out[12] = vc;
	out[13] = fam;
	out[14] = (uint8_t)(lenfield >> 8);
	out[15] = (uint8_t)lenfield;
	if (n > 0)
		memcpy(out + 16, blk, n);
	return 16 + n;
}

/* A v2 header of exactly n bytes (then garbage) must give r. */
static void
v2(uint8_t vc, uint8_t fam, const uint8_t *blk, size_t n,
    enum wsg_proxy_result r)
{
	uint8_t			buf[WSG_PROXY_MAX_HEADER + 64];
	struct wsg_proxy_info	pi;
	size_t			len;

	len = v2_build(buf, vc, fam, blk, n, (uint16_t)n);
	memset(buf + len, 'G', 8);
	CHECK_INT(proxy_parse(buf, len + 8, &pi), r);
	if (r == WSG_PROXY_OK) {
		CHECK_INT(pi.pi_len, len);
		prefixes_incomplete(buf, len);
	}
}

/* Good v2 headers: IPv4, IPv6, LOCAL, TLVs. */
static void
test_v2_good(void)
{
	static const uint8_t	a4[12] = { 192, 0, 2, 1, 198, 51, 100, 2,
	    0xdc, 0x04, 0x01, 0xbb };
	uint8_t			a6[36], blk[WSG_PROXY_V2_MAX_LEN];
	uint8_t			buf[WSG_PROXY_MAX_HEADER + 8];
	struct wsg_proxy_info	pi;
	size_t			len, i;

	len = v2_build(buf, 0x21, 0x11, a4, 12, 12);
	CHECK_INT(proxy_parse(buf, len, &pi), WSG_PROXY_OK);
	CHECK_INT(pi.pi_len, 28);
	CHECK_INT(pi.pi_local, 0);
	CHECK_STR(fmt(&pi.pi_src), "192.0.2.1:56324");
	CHECK_STR(fmt(&pi.pi_dst), "198.51.100.2:443");
	CHECK_INT(pi.pi_srclen, sizeof(struct sockaddr_in));
	prefixes_incomplete(buf, len);

	memset(a6, 0, sizeof(a6));
	a6[0] = 0x20;
	a6[1] = 0x01;
	a6[2] = 0x0d;
	a6[3] = 0xb8;
	a6[15] = 1;
	a6[16] = 0x20;
	a6[17] = 0x01;
	a6[18] = 0x0d;
	a6[19] = 0xb8;
	a6[31] = 2;
	a6[33] = 80;
	a6[34] = 0xff;
	a6[35] = 0xff;
	len = v2_build(buf, 0x21, 0x21, a6, 36, 36);
	CHECK_INT(proxy_parse(buf, len, &pi), WSG_PROXY_OK);
	CHECK_STR(fmt(&pi.pi_src), "[2001:db8::1]:80");
	CHECK_STR(fmt(&pi.pi_dst), "[2001:db8::2]:65535");
	CHECK_INT(pi.pi_srclen, sizeof(struct sockaddr_in6));
	CHECK_INT(pi.pi_len, 52);

	/* LOCAL: health checks; the block, whatever it is, is skipped. */
	v2(0x20, 0x00, NULL, 0, WSG_PROXY_OK);
	len = v2_build(buf, 0x20, 0x00, NULL, 0, 0);
	CHECK_INT(proxy_parse(buf, len, &pi), WSG_PROXY_OK);
	CHECK_INT(pi.pi_local, 1);
	CHECK_INT(pi.pi_len, 16);
	v2(0x20, 0x11, a4, 12, WSG_PROXY_OK);
	v2(0x20, 0x00, a4, 5, WSG_PROXY_OK);
	v2(0x20, 0x31, a6, 36, WSG_PROXY_OK);
	v2(0x20, 0x12, a4, 12, WSG_PROXY_OK);

	/* TLVs: ALPN, authority, an empty NOOP, then a CRC32C. */
	memcpy(blk, a4, 12);
	len = 12;
	memcpy(blk + len, "\x01\x00\x02h2", 5);
	len += 5;
	memcpy(blk + len, "\x02\x00\x0b" "example.com", 14);
	len += 14;
	memcpy(blk + len, "\x04\x00\x00", 3);
	len += 3;
	memcpy(blk + len, "\x03\x00\x04\x01\x02\x03\x04", 7);
	len += 7;
	v2(0x21, 0x11, blk, len, WSG_PROXY_OK);

	/* One TLV filling the block up to the cap. */
	memset(blk, 0, sizeof(blk));
	memcpy(blk, a4, 12);
	i = WSG_PROXY_V2_MAX_LEN - 12 - 3;
	blk[12] = 0xee;
	blk[13] = (uint8_t)(i >> 8);
	blk[14] = (uint8_t)i;
	v2(0x21, 0x11, blk, WSG_PROXY_V2_MAX_LEN, WSG_PROXY_OK);
}

/* Wrong v2 headers, refused at the first wrong byte. */
static void
test_v2_bad(void)
{
	static const uint8_t	a4[12] = { 192, 0, 2, 1, 198, 51, 100, 2,
	    0, 1, 0, 2 };
	uint8_t			blk[WSG_PROXY_V2_MAX_LEN + 16];
	uint8_t			buf[WSG_PROXY_MAX_HEADER + 64];
	struct wsg_proxy_info	pi;
	size_t			len, i;

	/* Every byte of the signature, wrong. */
	for (i = 0; i < 12; i++) {
		len = v2_build(buf, 0x21, 0x11, a4, 12, 12);
		buf[i] ^= 0x20;
		CHECK_INT(proxy_parse(buf, i + 1, &pi), i == 0 ?
		    WSG_PROXY_INVALID : WSG_PROXY_INVALID);
		CHECK_INT(proxy_parse(buf, len, &pi), WSG_PROXY_INVALID);
		if (i > 0)
			CHECK_INT(proxy_parse(buf, i, &pi),
			    WSG_PROXY_INCOMPLETE);
	}
	/* Version and command. */
	v2(0x11, 0x11, a4, 12, WSG_PROXY_INVALID);
	v2(0x31, 0x11, a4, 12, WSG_PROXY_INVALID);
	v2(0x01, 0x11, a4, 12, WSG_PROXY_INVALID);
	v2(0x22, 0x11, a4, 12, WSG_PROXY_INVALID);
	v2(0x2f, 0x11, a4, 12, WSG_PROXY_INVALID);
	len = v2_build(buf, 0x22, 0x11, a4, 12, 12);
	CHECK_INT(proxy_parse(buf, 13, &pi), WSG_PROXY_INVALID);
	/* Families and transports. */
	v2(0x21, 0x00, a4, 12, WSG_PROXY_INVALID);	/* PROXY + UNSPEC */
	v2(0x21, 0x12, a4, 12, WSG_PROXY_INVALID);	/* UDP */
	v2(0x21, 0x10, a4, 12, WSG_PROXY_INVALID);
	v2(0x21, 0x31, blk, 216, WSG_PROXY_INVALID);	/* AF_UNIX */
	v2(0x21, 0x41, a4, 12, WSG_PROXY_INVALID);
	v2(0x21, 0x13, a4, 12, WSG_PROXY_INVALID);
	v2(0x20, 0x41, a4, 12, WSG_PROXY_INVALID);	/* undefined fam */
	v2(0x20, 0x03, a4, 12, WSG_PROXY_INVALID);
	len = v2_build(buf, 0x21, 0x12, a4, 12, 12);
	CHECK_INT(proxy_parse(buf, 14, &pi), WSG_PROXY_INVALID);
	/* Block too short for the addresses. */
	v2(0x21, 0x11, a4, 11, WSG_PROXY_INVALID);
	v2(0x21, 0x11, a4, 0, WSG_PROXY_INVALID);
	v2(0x21, 0x21, blk, 35, WSG_PROXY_INVALID);
	/* Over the cap: refused from the length field alone. */
	memset(blk, 0, sizeof(blk));
	len = v2_build(buf, 0x21, 0x11, a4, 12, WSG_PROXY_V2_MAX_LEN + 1);
	CHECK_INT(proxy_parse(buf, 16, &pi), WSG_PROXY_INVALID);
	CHECK_INT(proxy_parse(buf, 15, &pi), WSG_PROXY_INCOMPLETE);
	len = v2_build(buf, 0x20, 0x00, NULL, 0, 0xffff);
	CHECK_INT(proxy_parse(buf, 16, &pi), WSG_PROXY_INVALID);
	len = v2_build(buf, 0x20, 0x00, NULL, 0, WSG_PROXY_V2_MAX_LEN);
	CHECK_INT(proxy_parse(buf, 16, &pi), WSG_PROXY_INCOMPLETE);

	/* TLVs that do not tile the block. */
	memcpy(blk, a4, 12);
	memcpy(blk + 12, "\x01\x00\x05h2", 5);	/* says 5, has 2 */
	v2(0x21, 0x11, blk, 17, WSG_PROXY_INVALID);
	memcpy(blk + 12, "\x01\x00", 2);	/* half a TLV header */
	v2(0x21, 0x11, blk, 14, WSG_PROXY_INVALID);
	memcpy(blk + 12, "\x01", 1);
	v2(0x21, 0x11, blk, 13, WSG_PROXY_INVALID);
	memcpy(blk + 12, "\x04\x00\x00\x04\xff\xff", 6);
	v2(0x21, 0x11, blk, 18, WSG_PROXY_INVALID);
	/* ... refused as soon as the bad TLV header is in, not at the end. */
	memcpy(blk + 12, "\x01\x01\x00", 3);	/* 256 > 20 - 12 - 3 */
	len = v2_build(buf, 0x21, 0x11, blk, 20, 20);
	CHECK_INT(proxy_parse(buf, 16 + 14, &pi), WSG_PROXY_INCOMPLETE);
	CHECK_INT(proxy_parse(buf, 16 + 15, &pi), WSG_PROXY_INVALID);
	/* A good TLV after which the data stops: still INCOMPLETE. */
	memcpy(blk + 12, "\x01\x00\x05hello", 8);
	len = v2_build(buf, 0x21, 0x11, blk, 20, 20);
	CHECK_INT(proxy_parse(buf, len, &pi), WSG_PROXY_OK);
	CHECK_INT(proxy_parse(buf, len - 1, &pi), WSG_PROXY_INCOMPLETE);

	/* Neither version. */
	CHECK_INT(proxy_parse((const uint8_t *)"\x16\x03\x01", 3, &pi),
	    WSG_PROXY_INVALID);
	CHECK_INT(proxy_parse((const uint8_t *)"\0", 1, &pi),
	    WSG_PROXY_INVALID);
	CHECK_INT(proxy_parse((const uint8_t *)"\r\n\r\nX", 5, &pi),
	    WSG_PROXY_INVALID);
	CHECK_INT(proxy_parse((const uint8_t *)"\r\n\r\n\0", 5, &pi),
	    WSG_PROXY_INCOMPLETE);
	CHECK_INT(proxy_parse((const uint8_t *)"", 0, &pi),
	    WSG_PROXY_INCOMPLETE);
}

/* A trusted list for the XFF tests: 10/8, 2001:db8::/32, 192.0.2.1. */
static struct wsg_cidr	 trusted[3];

/* XFF over several field values: want NULL for -1. */
static void
xff(const char *const *vals, size_t n, const char *want)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sslen = 1234;
	size_t			 lens[8];
	size_t			 i;
	int			 r;

	for (i = 0; i < n; i++)
		lens[i] = strlen(vals[i]);
	memset(&ss, 0xaa, sizeof(ss));
	r = proxy_xff_client(vals, lens, n, trusted, 3, &ss, &sslen);
	if (want == NULL) {
		CHECK_INT(r, -1);
		CHECK_INT(sslen, 1234);	/* untouched */
		CHECK_INT(((uint8_t *)&ss)[0], 0xaa);
		return;
	}
	CHECK_INT(r, 0);
	if (r != 0)
		return;
	CHECK_STR(fmt(&ss), want);
	CHECK_INT(sslen, ss.ss_family == AF_INET ?
	    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
}

/* One XFF value. */
static void
xff1(const char *v, const char *want)
{
	xff(&v, 1, want);
}

/* The right-most untrusted entry, whatever the client prepended. */
static void
test_xff(void)
{
	const char	*err;
	const char	*two[2], *three[3];
	char		 many[64 * 16];
	size_t		 i, n;
	struct sockaddr_storage	 ss;
	socklen_t	 sslen;
	size_t		 len;
	const char	*v;

	CHECK_INT(cidr_parse("10.0.0.0/8", &trusted[0], &err), 0);
	CHECK_INT(cidr_parse("2001:db8::/32", &trusted[1], &err), 0);
	CHECK_INT(cidr_parse("192.0.2.1", &trusted[2], &err), 0);

	xff1("203.0.113.5", "203.0.113.5:0");
	xff1("203.0.113.5, 10.0.0.1", "203.0.113.5:0");
	xff1("203.0.113.5,10.0.0.1,10.9.9.9", "203.0.113.5:0");
	/* Spoofed entries left of the real client are never believed. */
	xff1("1.1.1.1, 203.0.113.5, 10.0.0.2", "203.0.113.5:0");
	xff1("10.0.0.7, 203.0.113.5, 10.0.0.2", "203.0.113.5:0");
	xff1("127.0.0.1, 203.0.113.5", "203.0.113.5:0");
	/* Junk left of the client is never read. */
	xff1("<script>, unknown, 203.0.113.5, 10.0.0.1", "203.0.113.5:0");
	/* All trusted: the left-most. */
	xff1("10.0.0.3, 10.0.0.2", "10.0.0.3:0");
	xff1("10.0.0.3", "10.0.0.3:0");
	/* Junk at or right of the client: unusable. */
	xff1("203.0.113.5, unknown", NULL);
	xff1("unknown", NULL);
	xff1("203.0.113.5, 10.0.0.1, _hidden", NULL);
	/* A port, as RFC 3986 writes one after a host (nginx reads it). */
	xff1("203.0.113.5:1234", "203.0.113.5:1234");
	xff1("203.0.113.5:1234, 10.0.0.1:80", "203.0.113.5:1234");
	xff1("203.0.113.5, 10.0.0.1:80", "203.0.113.5:0");
	xff1("[2001:db9::1]:80", "[2001:db9::1]:80");
	xff1("[2001:db9::1]:65535, [2001:db8::1]:1", "[2001:db9::1]:65535");
	xff1("[::ffff:203.0.113.5]:443", "203.0.113.5:443");
	xff1("203.0.113.5:01", "203.0.113.5:1");
	/* Trusted with a port is trusted all the same. */
	xff1("10.0.0.3:80, 10.0.0.2:81", "10.0.0.3:80");
	xff1("203.0.113.5:0", NULL);
	xff1("203.0.113.5:65536", NULL);
	xff1("203.0.113.5:123456", NULL);
	xff1("203.0.113.5:", NULL);
	xff1("203.0.113.5:8a", NULL);
	xff1("203.0.113.5:+80", NULL);
	xff1("203.0.113.5: 80", NULL);
	xff1(":80", NULL);
	xff1("unknown:80", NULL);
	xff1("[2001:db9::1]:", NULL);
	xff1("[2001:db9::1]80", NULL);
	xff1("[2001:db9::1]x80", NULL);	/* a port follows a colon only */
	xff1("[2001:db9::1]:80]", NULL);
	xff1("[2001:db9::1]:80:80", NULL);
	xff1("[]:80", NULL);
	xff1("[203.0.113.5]:80", NULL);
	xff1("2001:db9::1:80", "[2001:db9::1:80]:0");	/* IPv6, no port */
	xff1("fe80::1%eth0", NULL);
	xff1("203.0.113.5 10.0.0.1", NULL);
	xff1("203.0.113.05", NULL);
	xff1("203.0.113", NULL);
	xff1("[203.0.113.5]", NULL);
	xff1("[2001:db9::1", NULL);
	xff1("\"203.0.113.5\"", NULL);
	xff1("for=203.0.113.5", NULL);
	/* Nothing there. */
	xff1("", NULL);
	xff1(" ,  , \t", NULL);
	xff(NULL, 0, NULL);
	/* Empty elements and OWS are skipped. */
	xff1(" 203.0.113.5 ,, \t,10.0.0.1\t", "203.0.113.5:0");
	xff1(",203.0.113.5,", "203.0.113.5:0");
	/* IPv6, with or without brackets; mapped addresses are IPv4. */
	xff1("2001:db9::1", "[2001:db9::1]:0");
	xff1("2001:db9::1, 2001:db8::1", "[2001:db9::1]:0");
	xff1("[2001:db9::1], [2001:db8::1]", "[2001:db9::1]:0");
	xff1("::ffff:203.0.113.5", "203.0.113.5:0");
	xff1("203.0.113.5, ::ffff:10.0.0.1", "203.0.113.5:0");
	xff1("::ffff:10.0.0.1", "10.0.0.1:0");

	/* Several fields are one list, in order. */
	two[0] = "1.1.1.1, 203.0.113.5";
	two[1] = "10.0.0.1";
	xff(two, 2, "203.0.113.5:0");
	two[0] = "198.51.100.7";
	two[1] = "10.0.0.1, 192.0.2.1";
	xff(two, 2, "198.51.100.7:0");
	two[0] = "198.51.100.7";
	two[1] = "";
	xff(two, 2, "198.51.100.7:0");
	three[0] = "10.0.0.9";
	three[1] = "10.0.0.8";
	three[2] = "10.0.0.7";
	xff(three, 3, "10.0.0.9:0");
	three[0] = "bogus";
	three[1] = "10.0.0.8";
	three[2] = "10.0.0.7";
	xff(three, 3, NULL);

	/* The entry cap. */
	for (n = WSG_PROXY_XFF_MAX; n <= WSG_PROXY_XFF_MAX + 1; n++) {
		many[0] = '\0';
		for (i = 0; i < n; i++)
			strcat(many, i ? ",10.0.0.1" : "10.0.0.2");
		xff1(many, n == WSG_PROXY_XFF_MAX ? "10.0.0.2:0" : NULL);
	}
	/* The length counts: a NUL inside is junk. */
	v = "203.0.113.5\0, 10.0.0.1";
	len = 22;
	CHECK_INT(proxy_xff_client(&v, &len, 1, trusted, 3, &ss, &sslen), -1);
	len = 11;
	CHECK_INT(proxy_xff_client(&v, &len, 1, trusted, 3, &ss, &sslen), 0);
	/* No trusted list: the right-most entry. */
	v = "1.1.1.1, 203.0.113.5";
	len = strlen(v);
	CHECK_INT(proxy_xff_client(&v, &len, 1, NULL, 0, &ss, &sslen), 0);
	CHECK_STR(fmt(&ss), "203.0.113.5:0");
}

int
main(void)
{
	test_v1_good();
	test_v1_cap();
	test_v1_bad();
	test_v2_good();
	test_v2_bad();
	test_xff();
	return unit_done("test_proxy");
}
