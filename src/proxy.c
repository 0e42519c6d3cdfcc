/*
 * PROXY protocol v1/v2 parsing and the X-Forwarded-For walk.  Pure: no
 * sockets, no globals, no logging.
 *
 * proxy_parse() answers INCOMPLETE only while the bytes so far can still
 * become a header, so a peer that is not speaking the protocol is refused
 * at its first wrong byte rather than after a timeout.  The v1 prefix
 * checks on addresses accept every prefix of an address inet_pton()
 * accepts and refuse as soon as no completion can be valid for the
 * common cases (characters, group sizes, octets, "::" and ':' counts).
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdint.h>
#include <string.h>

#include "cidr.h"
#include "proxy.h"

#define PROXY_V1_TOKEN_MAX	45	/* INET6_ADDRSTRLEN - 1 */
#define PROXY_V2_SIG_LEN	12
#define PROXY_V2_CMD_LOCAL	0x0
#define PROXY_V2_CMD_PROXY	0x1
#define PROXY_V2_AF_INET	0x1
#define PROXY_V2_AF_INET6	0x2
#define PROXY_V2_AF_UNIX	0x3
#define PROXY_V2_STREAM		0x1
#define PROXY_V2_DGRAM		0x2
#define PROXY_V2_ADDR_INET	12	/* 4 + 4 + 2 + 2 */
#define PROXY_V2_ADDR_INET6	36	/* 16 + 16 + 2 + 2 */
#define PROXY_V2_TLV_HEADER	3	/* type, 16-bit length */

enum proxy_kind {
	PROXY_KIND_V4,
	PROXY_KIND_V6,
	PROXY_KIND_PORT
};

static const uint8_t	proxy_v2_sig[PROXY_V2_SIG_LEN] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

static const char	*const proxy_v1_protos[] = {
	"TCP4", "TCP6", "UNKNOWN"
};

/* Is s[0..n) a prefix of a dotted quad; if complete, a whole one? */
static int
proxy_v4_ok(const char *s, size_t n, int complete)
{
	size_t		i, dots = 0, glen = 0;
	unsigned int	v = 0;

	for (i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (glen == 0 || ++dots > 3)
				return 0;
			glen = 0;
			v = 0;
		} else if (s[i] >= '0' && s[i] <= '9') {
			if (glen == 1 && v == 0)
				return 0;	/* leading zero */
			if (++glen > 3)
				return 0;
			v = v * 10 + (unsigned int)(s[i] - '0');
			if (v > 255)
				return 0;
		} else
			return 0;
	}
	return complete ? dots == 3 && glen > 0 : 1;
}

/*
 * Can s[0..n) still become an IPv6 address?  At most one "::", groups of
 * at most 4 hex digits, at most 8 groups (7 with "::"; a dotted tail counts
 * 2), at most 7 colons (8 with "::"), and a dotted tail only last.
 */
static int
proxy_v6_prefix(const char *s, size_t n)
{
	size_t	i, colons = 0, glen = 0, groups = 0, tail = 0;
	int	dot = 0, dcolon = 0;

	for (i = 0; i < n; i++) {
		if (s[i] == ':') {
			if (dot)
				return 0;
			colons++;
			if (i > 0 && s[i - 1] == ':') {
				if (dcolon++)
					return 0;	/* a second "::" */
				if (i > 1 && s[i - 2] == ':')
					return 0;	/* ":::" */
			}
			glen = 0;
			tail = i + 1;
		} else if (s[i] == '.') {
			if (!dot)
				groups++;	/* a.b.c.d is two groups */
			dot = 1;
		} else if ((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f') ||
		    (s[i] >= 'A' && s[i] <= 'F')) {
			if (!dot && glen++ == 0)
				groups++;
			if (glen > 4)
				return 0;
		} else
			return 0;
		if (colons > (dcolon ? 8U : 7U) ||
		    groups > (dcolon ? 7U : 8U))
			return 0;
	}
	if (dot)
		return tail > 0 && proxy_v4_ok(s + tail, n - tail, 0);
	return 1;
}

/* Can s[0..n) still become a port: 0..65535, no leading zero? */
static int
proxy_port_prefix(const char *s, size_t n)
{
	unsigned long	v = 0;
	size_t		i;

	if (n > 5 || (n > 1 && s[0] == '0'))
		return 0;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	return v <= 65535;
}

/* Can this partial token of the given kind still become valid? */
static int
proxy_v1_prefix(enum proxy_kind kind, const char *s, size_t n)
{
	switch (kind) {
	case PROXY_KIND_V4:
		return proxy_v4_ok(s, n, 0);
	case PROXY_KIND_V6:
		return proxy_v6_prefix(s, n);
	case PROXY_KIND_PORT:
		return proxy_port_prefix(s, n);
	}
	return 0;
}

/* Is the whole token s (NUL-ended, n bytes) valid for its kind? */
static int
proxy_v1_complete(enum proxy_kind kind, const char *s, size_t n)
{
	struct in6_addr	in6;
	struct in_addr	in;

	switch (kind) {
	case PROXY_KIND_V4:
		return proxy_v4_ok(s, n, 1) && inet_pton(AF_INET, s, &in) == 1;
	case PROXY_KIND_V6:
		return inet_pton(AF_INET6, s, &in6) == 1;
	case PROXY_KIND_PORT:
		return n > 0 && proxy_port_prefix(s, n);
	}
	return 0;
}

/*
 * Take the token at *pos up to the separator sep into tok (NUL-ended),
 * checking it as a prefix if the bytes end first, else as a whole.  more
 * is what running out of bytes means: INCOMPLETE, or INVALID once the
 * line's cap is reached.
 */
static enum wsg_proxy_result
proxy_v1_token(const uint8_t *buf, size_t avail, enum wsg_proxy_result more,
    size_t *pos, enum proxy_kind kind, uint8_t sep, char *tok)
{
	size_t	n = 0;

	while (*pos < avail && buf[*pos] != sep) {
		if (n >= PROXY_V1_TOKEN_MAX)
			return WSG_PROXY_INVALID;
		tok[n++] = (char)buf[(*pos)++];
	}
	tok[n] = '\0';
	/* The prefix checks are monotone: checking the last one suffices. */
	if (*pos >= avail)
		return proxy_v1_prefix(kind, tok, n) ? more : WSG_PROXY_INVALID;
	(*pos)++;
	/* The prefix check also keeps NULs away from inet_pton(). */
	if (!proxy_v1_prefix(kind, tok, n) || !proxy_v1_complete(kind, tok, n))
		return WSG_PROXY_INVALID;
	return WSG_PROXY_OK;
}

/* Store a v1 address and port (validated text) into a sockaddr. */
static int
proxy_v1_addr(int family, const char *addr, const char *port,
    struct sockaddr_storage *ss, socklen_t *sslen)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	unsigned int		 p = 0;

	for (; *port != '\0'; port++)
		p = p * 10 + (unsigned int)(*port - '0');
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)p);
		*sslen = sizeof(*sin);
	} else {
		if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) != 1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)p);
		*sslen = sizeof(*sin6);
	}
	return 0;
}

/* "PROXY UNKNOWN" and anything printable up to CRLF: use the real peer. */
static enum wsg_proxy_result
proxy_v1_unknown(const uint8_t *buf, size_t avail, enum wsg_proxy_result more,
    size_t pos, struct wsg_proxy_info *pi)
{
	size_t	first = pos;

	for (; pos < avail && buf[pos] != '\r'; pos++) {
		if (pos == first && buf[pos] != ' ')
			return WSG_PROXY_INVALID;
		if (buf[pos] < 0x20 || buf[pos] > 0x7e)
			return WSG_PROXY_INVALID;
	}
	if (pos + 1 >= avail)
		return more;
	if (buf[pos + 1] != '\n')
		return WSG_PROXY_INVALID;
	pi->pi_local = 1;
	pi->pi_len = pos + 2;
	return WSG_PROXY_OK;
}

/* A v1 header; see proxy.h. */
static enum wsg_proxy_result
proxy_parse_v1(const uint8_t *buf, size_t len, struct wsg_proxy_info *pi)
{
	static const char	 magic[] = "PROXY ";
	enum wsg_proxy_result	 more, r;
	enum proxy_kind		 kind;
	char			 src[PROXY_V1_TOKEN_MAX + 1];
	char			 dst[PROXY_V1_TOKEN_MAX + 1];
	char			 sport[PROXY_V1_TOKEN_MAX + 1];
	char			 dport[PROXY_V1_TOKEN_MAX + 1];
	size_t			 avail, pos, start, n, i;
	int			 family, proto = -1;

	/* Bytes past the cap can never be part of a v1 line. */
	avail = len < WSG_PROXY_V1_MAX ? len : WSG_PROXY_V1_MAX;
	more = len >= WSG_PROXY_V1_MAX ? WSG_PROXY_INVALID :
	    WSG_PROXY_INCOMPLETE;

	for (pos = 0; pos < sizeof(magic) - 1; pos++) {
		if (pos >= avail)
			return more;
		if (buf[pos] != (uint8_t)magic[pos])
			return WSG_PROXY_INVALID;
	}

	/* The protocol word: a prefix of one of three, then ' ' or CR. */
	start = pos;
	while (pos < avail && pos - start < 7 && buf[pos] != ' ' &&
	    buf[pos] != '\r')
		pos++;
	n = pos - start;
	for (i = 0; i < 3; i++) {
		if (n <= strlen(proxy_v1_protos[i]) &&
		    memcmp(buf + start, proxy_v1_protos[i], n) == 0)
			break;
	}
	if (i == 3)
		return WSG_PROXY_INVALID;
	if (pos >= avail)
		return more;
	if (n == strlen(proxy_v1_protos[i]))
		proto = (int)i;
	if (proto == 2)
		return proxy_v1_unknown(buf, avail, more, pos, pi);
	if (proto == -1 || buf[pos] != ' ')
		return WSG_PROXY_INVALID;
	pos++;

	family = proto == 0 ? AF_INET : AF_INET6;
	kind = proto == 0 ? PROXY_KIND_V4 : PROXY_KIND_V6;
	if ((r = proxy_v1_token(buf, avail, more, &pos, kind, ' ',
	    src)) != WSG_PROXY_OK)
		return r;
	if ((r = proxy_v1_token(buf, avail, more, &pos, kind, ' ',
	    dst)) != WSG_PROXY_OK)
		return r;
	if ((r = proxy_v1_token(buf, avail, more, &pos, PROXY_KIND_PORT, ' ',
	    sport)) != WSG_PROXY_OK)
		return r;
	if ((r = proxy_v1_token(buf, avail, more, &pos, PROXY_KIND_PORT, '\r',
	    dport)) != WSG_PROXY_OK)
		return r;
	if (pos >= avail)
		return more;
	if (buf[pos] != '\n')
		return WSG_PROXY_INVALID;
	if (proxy_v1_addr(family, src, sport, &pi->pi_src,
	    &pi->pi_srclen) == -1 ||
	    proxy_v1_addr(family, dst, dport, &pi->pi_dst,
	    &pi->pi_dstlen) == -1)
		return WSG_PROXY_INVALID;
	pi->pi_len = pos + 1;
	return WSG_PROXY_OK;
}

/* Fill the v2 address block of an INET or INET6 PROXY command. */
static void
proxy_v2_addrs(const uint8_t *b, int fam, struct wsg_proxy_info *pi)
{
	struct sockaddr_in	*s4 = (struct sockaddr_in *)&pi->pi_src;
	struct sockaddr_in	*d4 = (struct sockaddr_in *)&pi->pi_dst;
	struct sockaddr_in6	*s6 = (struct sockaddr_in6 *)&pi->pi_src;
	struct sockaddr_in6	*d6 = (struct sockaddr_in6 *)&pi->pi_dst;

	if (fam == PROXY_V2_AF_INET) {
		s4->sin_family = d4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, b, 4);
		memcpy(&d4->sin_addr, b + 4, 4);
		memcpy(&s4->sin_port, b + 8, 2);
		memcpy(&d4->sin_port, b + 10, 2);
		pi->pi_srclen = pi->pi_dstlen = sizeof(*s4);
	} else {
		s6->sin6_family = d6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, b, 16);
		memcpy(&d6->sin6_addr, b + 16, 16);
		memcpy(&s6->sin6_port, b + 32, 2);
		memcpy(&d6->sin6_port, b + 34, 2);
		pi->pi_srclen = pi->pi_dstlen = sizeof(*s6);
	}
}

/* A v2 header; see proxy.h. */
static enum wsg_proxy_result
proxy_parse_v2(const uint8_t *buf, size_t len, struct wsg_proxy_info *pi)
{
	size_t	i, blen, end, avail, p, tlen, addrlen = 0;
	int	cmd, fam, tr;

	for (i = 0; i < PROXY_V2_SIG_LEN; i++) {
		if (i >= len)
			return WSG_PROXY_INCOMPLETE;
		if (buf[i] != proxy_v2_sig[i])
			return WSG_PROXY_INVALID;
	}
	if (len <= 12)
		return WSG_PROXY_INCOMPLETE;
	cmd = buf[12] & 0x0f;
	if ((buf[12] >> 4) != 2 || cmd > PROXY_V2_CMD_PROXY)
		return WSG_PROXY_INVALID;
	if (len <= 13)
		return WSG_PROXY_INCOMPLETE;
	fam = buf[13] >> 4;
	tr = buf[13] & 0x0f;
	if (fam > PROXY_V2_AF_UNIX || tr > PROXY_V2_DGRAM)
		return WSG_PROXY_INVALID;
	if (cmd == PROXY_V2_CMD_PROXY) {
		if (tr != PROXY_V2_STREAM)
			return WSG_PROXY_INVALID;
		if (fam == PROXY_V2_AF_INET)
			addrlen = PROXY_V2_ADDR_INET;
		else if (fam == PROXY_V2_AF_INET6)
			addrlen = PROXY_V2_ADDR_INET6;
		else
			return WSG_PROXY_INVALID;
	}
	if (len < WSG_PROXY_V2_HEADER)
		return WSG_PROXY_INCOMPLETE;
	blen = (size_t)buf[14] << 8 | buf[15];
	if (blen > WSG_PROXY_V2_MAX_LEN || blen < addrlen)
		return WSG_PROXY_INVALID;
	end = WSG_PROXY_V2_HEADER + blen;
	avail = len < end ? len : end;

	if (cmd == PROXY_V2_CMD_LOCAL) {
		/* Health checks and the like: the block is not ours to read. */
		if (len < end)
			return WSG_PROXY_INCOMPLETE;
		pi->pi_local = 1;
		pi->pi_len = end;
		return WSG_PROXY_OK;
	}

	/* TLVs must tile the rest of the block exactly. */
	for (p = WSG_PROXY_V2_HEADER + addrlen; p < end; p += tlen) {
		if (end - p < PROXY_V2_TLV_HEADER)
			return WSG_PROXY_INVALID;
		if (p > avail || avail - p < PROXY_V2_TLV_HEADER)
			return WSG_PROXY_INCOMPLETE;
		tlen = (size_t)buf[p + 1] << 8 | buf[p + 2];
		if (tlen > end - p - PROXY_V2_TLV_HEADER)
			return WSG_PROXY_INVALID;
		tlen += PROXY_V2_TLV_HEADER;
	}
	if (len < end)
		return WSG_PROXY_INCOMPLETE;
	proxy_v2_addrs(buf + WSG_PROXY_V2_HEADER, fam, pi);
	pi->pi_len = end;
	return WSG_PROXY_OK;
}

/* Parse a v1 or v2 header; see proxy.h. */
enum wsg_proxy_result
proxy_parse(const uint8_t *buf, size_t len, struct wsg_proxy_info *pi)
{
	memset(pi, 0, sizeof(*pi));
	if (len == 0)
		return WSG_PROXY_INCOMPLETE;
	if (buf[0] == 'P')
		return proxy_parse_v1(buf, len, pi);
	if (buf[0] == proxy_v2_sig[0])
		return proxy_parse_v2(buf, len, pi);
	return WSG_PROXY_INVALID;
}

/*
 * The port after an X-Forwarded-For address, as RFC 3986 writes a host
 * and port and nginx's realip module reads them: 1 to 5 digits, 1 to
 * 65535.  Returns the port, or -1.
 */
static int
proxy_xff_port(const char *s, size_t n)
{
	size_t	i;
	int	port = 0;

	if (n == 0 || n > 5)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		port = port * 10 + (s[i] - '0');
	}
	return (port == 0 || port > 65535 ? -1 : port);
}

/*
 * One X-Forwarded-For entry: an IPv4 address, optionally with ":port",
 * or an IPv6 address, bare or as "[v6]", optionally "[v6]:port".  Every
 * IPv6 address has two colons at least, so one colon is IPv4's port.
 */
static int
proxy_xff_entry(const char *s, size_t n, struct sockaddr_storage *ss,
    socklen_t *sslen)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	char			 buf[INET6_ADDRSTRLEN];
	struct in6_addr		 in6;
	static const uint8_t	 mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};
	const char		*end, *colon;
	int			 bracket = 0, port = 0;

	if (n >= 2 && s[0] == '[') {
		if ((end = memchr(s, ']', n)) == NULL)
			return -1;
		if ((size_t)(end - s) + 1 < n) {
			if (end[1] != ':' || (port = proxy_xff_port(end + 2,
			    n - (size_t)(end - s) - 2)) == -1)
				return -1;
		}
		n = (size_t)(end - s) - 1;
		s++;
		bracket = 1;
	} else if ((colon = memchr(s, ':', n)) != NULL &&
	    memchr(colon + 1, ':', n - (size_t)(colon - s) - 1) == NULL) {
		if ((port = proxy_xff_port(colon + 1,
		    n - (size_t)(colon - s) - 1)) == -1)
			return -1;
		n = (size_t)(colon - s);
	}
	if (n == 0 || n >= sizeof(buf) || memchr(s, '\0', n) != NULL)
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	memset(ss, 0, sizeof(*ss));
	if (!bracket && inet_pton(AF_INET, buf, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*sslen = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, buf, &in6) != 1)
		return -1;
	if (memcmp(&in6, mapped, sizeof(mapped)) == 0) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, (uint8_t *)&in6 + 12, 4);
		*sslen = sizeof(*sin);
		return 0;
	}
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	sin6->sin6_addr = in6;
	*sslen = sizeof(*sin6);
	return 0;
}

/* The right-most untrusted X-Forwarded-For entry; see proxy.h. */
int
proxy_xff_client(const char *const *values, const size_t *lens,
    size_t nvalues, const struct wsg_cidr *trusted, size_t ntrusted,
    struct sockaddr_storage *out, socklen_t *outlen)
{
	struct sockaddr_storage	 ss, best;
	socklen_t		 sslen, bestlen = 0;
	const char		*s;
	size_t			 v, start, end, a, b, seen = 0;

	for (v = nvalues; v-- > 0; ) {
		s = values[v];
		end = lens[v];
		for (;;) {
			for (start = end; start > 0 && s[start - 1] != ',';
			    start--)
				;
			for (a = start; a < end && (s[a] == ' ' ||
			    s[a] == '\t'); a++)
				;
			for (b = end; b > a && (s[b - 1] == ' ' ||
			    s[b - 1] == '\t'); b--)
				;
			if (b > a) {
				if (++seen > WSG_PROXY_XFF_MAX)
					return -1;
				if (proxy_xff_entry(s + a, b - a, &ss,
				    &sslen) == -1)
					return -1;
				best = ss;
				bestlen = sslen;
				if (!cidr_list_match(trusted, ntrusted,
				    (struct sockaddr *)&ss))
					goto found;
			}
			if (start == 0)
				break;
			end = start - 1;
		}
	}
	if (bestlen == 0)
		return -1;	/* no entry at all */
found:
	*out = best;
	*outlen = bestlen;
	return 0;
}
