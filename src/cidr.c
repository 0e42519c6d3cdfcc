/*
 * CIDR parsing and matching.  Pure functions; errors are static strings.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdint.h>
#include <string.h>

#include "cidr.h"

static const uint8_t	cidr_v4mapped[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

/* Clear the bits below prefix; returns 1 if any were set. */
static int
cidr_mask(uint8_t *addr, size_t alen, int prefix)
{
	size_t	i, full = (size_t)prefix / 8;
	uint8_t	keep;
	int	dirty = 0;

	if (full < alen) {
		keep = (uint8_t)(0xff << (8 - prefix % 8));
		if (addr[full] & (uint8_t)~keep)
			dirty = 1;
		addr[full] &= keep;
		for (i = full + 1; i < alen; i++) {
			if (addr[i] != 0)
				dirty = 1;
			addr[i] = 0;
		}
	}
	return dirty;
}

/* The prefix after '/': 1..3 digits, no leading zero, at most max. */
static int
cidr_parse_prefix(const char *p, int max, int *out, const char **err)
{
	int	n = 0;
	size_t	i;

	if (*p == '\0') {
		*err = "missing prefix length after '/'";
		return -1;
	}
	for (i = 0; p[i] != '\0'; i++) {
		if (p[i] < '0' || p[i] > '9' || i >= 3) {
			*err = "invalid prefix length";
			return -1;
		}
		n = n * 10 + (p[i] - '0');
	}
	if (i > 1 && p[0] == '0') {
		*err = "invalid prefix length";
		return -1;
	}
	if (n > max) {
		*err = max == 32 ? "IPv4 prefix length over 32" :
		    "IPv6 prefix length over 128";
		return -1;
	}
	*out = n;
	return 0;
}

/* Parse a block; see cidr.h. */
int
cidr_parse(const char *s, struct wsg_cidr *c, const char **err)
{
	char		 host[WSG_CIDR_MAX_LEN + 1];
	const char	*slash;
	size_t		 slen, hlen;
	int		 prefix, max;

	slen = strnlen(s, WSG_CIDR_MAX_LEN + 1);
	if (slen == 0) {
		*err = "empty address";
		return -1;
	}
	if (slen > WSG_CIDR_MAX_LEN) {
		*err = "address too long";
		return -1;
	}
	slash = memchr(s, '/', slen);
	hlen = slash != NULL ? (size_t)(slash - s) : slen;
	memcpy(host, s, hlen);
	host[hlen] = '\0';

	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, host, c->c_addr) == 1) {
		c->c_family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, c->c_addr) == 1) {
		c->c_family = AF_INET6;
		max = 128;
	} else {
		*err = "not a numeric IPv4 or IPv6 address";
		return -1;
	}
	prefix = max;
	if (slash != NULL &&
	    cidr_parse_prefix(slash + 1, max, &prefix, err) == -1)
		return -1;

	/* ::ffff:a.b.c.d/96+ is an IPv4 block. */
	if (c->c_family == AF_INET6 && prefix >= 96 &&
	    memcmp(c->c_addr, cidr_v4mapped, sizeof(cidr_v4mapped)) == 0) {
		memmove(c->c_addr, c->c_addr + 12, 4);
		memset(c->c_addr + 4, 0, 12);
		c->c_family = AF_INET;
		prefix -= 96;
	}
	c->c_prefix = prefix;
	if (cidr_mask(c->c_addr, c->c_family == AF_INET ? 4 : 16, prefix)) {
		*err = "host bits set; cleared to the network address";
		return 1;
	}
	return 0;
}

/* Compare the first prefix bits of two addresses. */
static int
cidr_prefix_equal(const uint8_t *a, const uint8_t *b, int prefix)
{
	size_t	full = (size_t)prefix / 8;
	uint8_t	keep;

	if (memcmp(a, b, full) != 0)
		return 0;
	if (prefix % 8 == 0)
		return 1;
	keep = (uint8_t)(0xff << (8 - prefix % 8));
	return (a[full] & keep) == (b[full] & keep);
}

/* Match an address against a block; see cidr.h. */
int
cidr_match(const struct wsg_cidr *c, const struct sockaddr *sa)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	const uint8_t			*addr;
	int				 family;

	if (sa == NULL)
		return 0;
	switch (sa->sa_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)sa;
		addr = (const uint8_t *)&sin->sin_addr;
		family = AF_INET;
		break;
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)sa;
		addr = (const uint8_t *)&sin6->sin6_addr;
		family = AF_INET6;
		if (memcmp(addr, cidr_v4mapped, sizeof(cidr_v4mapped)) == 0) {
			addr += 12;
			family = AF_INET;
		}
		break;
	default:
		return 0;
	}
	if (family != c->c_family)
		return 0;
	return cidr_prefix_equal(addr, c->c_addr, c->c_prefix);
}

/* Match an address against a list of blocks. */
int
cidr_list_match(const struct wsg_cidr *list, size_t n,
    const struct sockaddr *sa)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		if (cidr_match(&list[i], sa))
			return 1;
	}
	return 0;
}
