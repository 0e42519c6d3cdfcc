/*
 * libFuzzer harness for the PROXY protocol parser.  Over every prefix of
 * the input the results must read INCOMPLETE* then either OK (with the
 * same header, however many bytes follow) or INVALID for good, and never
 * INCOMPLETE once a header's cap is reached.  The input also seeds
 * addresses for headers built here, which must parse back exactly.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

#define FUZZ_ASSERT(c)	do { if (!(c)) abort(); } while (0)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* The same header, whatever the input length. */
static int
fuzz_same(const struct wsg_proxy_info *a, const struct wsg_proxy_info *b)
{
	return a->pi_local == b->pi_local && a->pi_len == b->pi_len &&
	    a->pi_srclen == b->pi_srclen && a->pi_dstlen == b->pi_dstlen &&
	    memcmp(&a->pi_src, &b->pi_src, sizeof(a->pi_src)) == 0 &&
	    memcmp(&a->pi_dst, &b->pi_dst, sizeof(a->pi_dst)) == 0;
}

/* The prefix-consistency property over the raw input. */
static void
fuzz_prefixes(const uint8_t *data, size_t size)
{
	struct wsg_proxy_info	pi, first;
	enum wsg_proxy_result	r, settled = WSG_PROXY_INCOMPLETE;
	size_t			i, top;

	top = size < WSG_PROXY_MAX_HEADER + 1 ? size : WSG_PROXY_MAX_HEADER + 1;
	for (i = 0; i <= top; i++) {
		r = proxy_parse(data, i, &pi);
		FUZZ_ASSERT(r == WSG_PROXY_OK || r == WSG_PROXY_INCOMPLETE ||
		    r == WSG_PROXY_INVALID);
		if (settled == WSG_PROXY_INCOMPLETE) {
			if (r == WSG_PROXY_OK)
				first = pi;
			settled = r;
		} else
			FUZZ_ASSERT(r == settled);
		if (r == WSG_PROXY_OK) {
			FUZZ_ASSERT(pi.pi_len > 0 && pi.pi_len <= i);
			FUZZ_ASSERT(pi.pi_len <= WSG_PROXY_MAX_HEADER);
			FUZZ_ASSERT(fuzz_same(&pi, &first));
			if (!pi.pi_local) {
				FUZZ_ASSERT(pi.pi_src.ss_family ==
				    pi.pi_dst.ss_family);
				FUZZ_ASSERT(pi.pi_srclen == (pi.pi_src.ss_family
				    == AF_INET ? sizeof(struct sockaddr_in) :
				    sizeof(struct sockaddr_in6)));
			}
		}
		if (i >= WSG_PROXY_MAX_HEADER)
			FUZZ_ASSERT(r != WSG_PROXY_INCOMPLETE);
	}
	if (size > top) {
		r = proxy_parse(data, size, &pi);
		FUZZ_ASSERT(r == settled);
		if (r == WSG_PROXY_OK)
			FUZZ_ASSERT(fuzz_same(&pi, &first));
	}
}

/* A header built here must parse back to exactly what went in. */
static void
fuzz_roundtrip(const uint8_t *hdr, size_t n, int family, const uint8_t *a,
    const uint8_t *b, uint16_t pa, uint16_t pb)
{
	struct wsg_proxy_info		 pi;
	const struct sockaddr_in	*s4 = (const void *)&pi.pi_src;
	const struct sockaddr_in	*d4 = (const void *)&pi.pi_dst;
	const struct sockaddr_in6	*s6 = (const void *)&pi.pi_src;
	const struct sockaddr_in6	*d6 = (const void *)&pi.pi_dst;
	size_t				 i;

	FUZZ_ASSERT(proxy_parse(hdr, n, &pi) == WSG_PROXY_OK);
	FUZZ_ASSERT(pi.pi_len == n && !pi.pi_local);
	FUZZ_ASSERT(pi.pi_src.ss_family == family);
	if (family == AF_INET) {
		FUZZ_ASSERT(memcmp(&s4->sin_addr, a, 4) == 0);
		FUZZ_ASSERT(memcmp(&d4->sin_addr, b, 4) == 0);
		FUZZ_ASSERT(ntohs(s4->sin_port) == pa);
		FUZZ_ASSERT(ntohs(d4->sin_port) == pb);
	} else {
		FUZZ_ASSERT(memcmp(&s6->sin6_addr, a, 16) == 0);
		FUZZ_ASSERT(memcmp(&d6->sin6_addr, b, 16) == 0);
		FUZZ_ASSERT(ntohs(s6->sin6_port) == pa);
		FUZZ_ASSERT(ntohs(d6->sin6_port) == pb);
	}
	for (i = 0; i < n; i++)
		FUZZ_ASSERT(proxy_parse(hdr, i, &pi) == WSG_PROXY_INCOMPLETE);
}

/* An IPv6 address in one of several legal spellings. */
static void
fuzz_v6_text(const uint8_t *a, int style, char *out, size_t outlen)
{
	if (style == 0 || inet_ntop(AF_INET6, a, out, (socklen_t)outlen) ==
	    NULL)
		snprintf(out, outlen, "%x:%x:%x:%x:%x:%x:%x:%x",
		    a[0] << 8 | a[1], a[2] << 8 | a[3], a[4] << 8 | a[5],
		    a[6] << 8 | a[7], a[8] << 8 | a[9], a[10] << 8 | a[11],
		    a[12] << 8 | a[13], a[14] << 8 | a[15]);
	if (style == 2)
		snprintf(out, outlen,
		    "%04X:%04X:%04X:%04X:%04X:%04X:%u.%u.%u.%u",
		    a[0] << 8 | a[1], a[2] << 8 | a[3], a[4] << 8 | a[5],
		    a[6] << 8 | a[7], a[8] << 8 | a[9], a[10] << 8 | a[11],
		    a[12], a[13], a[14], a[15]);
}

/* Build v1 and v2 headers from 36 input bytes. */
static void
fuzz_build(const uint8_t *d)
{
	static const uint8_t	sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00,
	    0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };
	uint8_t			hdr[WSG_PROXY_MAX_HEADER];
	char			sa[INET6_ADDRSTRLEN], sb[INET6_ADDRSTRLEN];
	uint16_t		pa = (uint16_t)(d[32] << 8 | d[33]);
	uint16_t		pb = (uint16_t)(d[34] << 8 | d[35]);
	size_t			n;
	int			w;

	inet_ntop(AF_INET, d, sa, sizeof(sa));
	inet_ntop(AF_INET, d + 16, sb, sizeof(sb));
	w = snprintf((char *)hdr, sizeof(hdr), "PROXY TCP4 %s %s %u %u\r\n",
	    sa, sb, pa, pb);
	fuzz_roundtrip(hdr, (size_t)w, AF_INET, d, d + 16, pa, pb);

	fuzz_v6_text(d, d[0] % 3, sa, sizeof(sa));
	fuzz_v6_text(d + 16, d[1] % 3, sb, sizeof(sb));
	w = snprintf((char *)hdr, sizeof(hdr), "PROXY TCP6 %s %s %u %u\r\n",
	    sa, sb, pa, pb);
	if (w <= WSG_PROXY_V1_MAX)
		fuzz_roundtrip(hdr, (size_t)w, AF_INET6, d, d + 16, pa, pb);

	memcpy(hdr, sig, 12);
	hdr[12] = 0x21;
	hdr[13] = 0x11;
	hdr[14] = 0;
	hdr[15] = 12;
	memcpy(hdr + 16, d, 4);
	memcpy(hdr + 20, d + 16, 4);
	memcpy(hdr + 24, d + 32, 4);
	fuzz_roundtrip(hdr, 28, AF_INET, d, d + 16, pa, pb);

	/* IPv6 with a NOOP TLV carrying what bytes are left. */
	n = d[2] % 64;
	hdr[13] = 0x21;
	hdr[14] = 0;
	hdr[15] = (uint8_t)(36 + 3 + n);
	memcpy(hdr + 16, d, 32);
	memcpy(hdr + 48, d + 32, 4);
	hdr[52] = 0x04;
	hdr[53] = 0;
	hdr[54] = (uint8_t)n;
	memset(hdr + 55, 0xa5, n);
	fuzz_roundtrip(hdr, 55 + n, AF_INET6, d, d + 16, pa, pb);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_prefixes(data, size);
	if (size >= 36)
		fuzz_build(data + size - 36);
	return 0;
}
