/*
 * CIDR blocks for the ip: allow/deny lists and trusted_proxies.  Pure:
 * a string in, a block out; an address in, a yes or no out.
 *
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are IPv4 everywhere: a
 * block written as ::ffff:0:0/96 or narrower is stored as the IPv4 block it
 * covers, and a mapped peer matches IPv4 blocks.  An IPv4 peer never
 * matches a pure IPv6 block, not even ::/0.
 */
#ifndef WSG_CIDR_H
#define WSG_CIDR_H

#include <sys/socket.h>
#include <stddef.h>
#include <stdint.h>

#define WSG_CIDR_MAX_LEN	50	/* "v6-with-v4-tail/128": 45 + 4 */

struct wsg_cidr {
	int		 c_family;	/* AF_INET or AF_INET6 */
	uint8_t		 c_addr[16];	/* network order, host bits zero */
	int		 c_prefix;	/* 0..32 or 0..128 */
};

/*
 * "10.0.0.0/8", "2001:db8::/32", or a bare address (/32 or /128).
 * Numeric addresses only, no spaces, no zone, prefix digits without
 * leading zeros.  Host bits below the prefix are accepted and cleared.
 * Returns 0; 1 when host bits were cleared, with *err set to a warning the
 * config loader may print; or -1 with *err set.
 */
int	cidr_parse(const char *, struct wsg_cidr *, const char **);

/* Does the address (AF_INET or AF_INET6) fall inside the block? */
int	cidr_match(const struct wsg_cidr *, const struct sockaddr *);

/* Does it fall inside any of the n blocks? */
int	cidr_list_match(const struct wsg_cidr *, size_t,
	    const struct sockaddr *);

#endif /* WSG_CIDR_H */
