/*
 * The HAProxy PROXY protocol, versions 1 (text) and 2 (binary), read at
 * the start of a connection on listeners with proxy_protocol: true, and
 * the X-Forwarded-For walk for trusted_proxies.  Pure: bytes in, results
 * out.
 */
#ifndef WSG_PROXY_H
#define WSG_PROXY_H

#include <sys/socket.h>
#include <stddef.h>
#include <stdint.h>

struct wsg_cidr;

#define WSG_PROXY_V1_MAX	107	/* whole v1 line, CRLF included */
#define WSG_PROXY_V2_HEADER	16	/* signature, ver/cmd, fam, len */
#define WSG_PROXY_V2_MAX_LEN	512	/* v2 length field: addresses + TLVs */
#define WSG_PROXY_MAX_HEADER	(WSG_PROXY_V2_HEADER + WSG_PROXY_V2_MAX_LEN)
#define WSG_PROXY_XFF_MAX	64	/* X-Forwarded-For entries walked */

enum wsg_proxy_result {
	WSG_PROXY_OK,
	WSG_PROXY_INCOMPLETE,	/* a valid prefix of a header: read more */
	WSG_PROXY_INVALID	/* not a PROXY header: close the connection */
};

struct wsg_proxy_info {
	int			 pi_local;	/* use the real endpoints */
	struct sockaddr_storage	 pi_src, pi_dst;	/* unless pi_local */
	socklen_t		 pi_srclen, pi_dstlen;
	size_t			 pi_len;	/* bytes consumed */
};

/*
 * Parse a PROXY header at the start of buf.  OK: *pi is filled and
 * pi_len bytes (<= len, <= WSG_PROXY_MAX_HEADER) are the header; what
 * follows is the client's stream.  INCOMPLETE: every byte so far is a
 * valid prefix of some header (including len 0).  INVALID as soon as one
 * is not, and whenever the header would pass its cap.
 *
 * v1: "PROXY TCP4|TCP6 src dst sport dport\r\n" with single spaces,
 * addresses of the family (glibc inet_pton strictness), ports 0..65535
 * without leading zeros; "PROXY UNKNOWN[ printable...]\r\n" gives
 * pi_local.  v2: version 2; LOCAL with any defined family, its block
 * skipped, gives pi_local; PROXY needs TCP over IPv4 or IPv6 and a block
 * of at least 12 or 36 bytes; the TLVs after the addresses are skipped
 * but must exactly fill the block.
 */
enum wsg_proxy_result	proxy_parse(const uint8_t *, size_t,
			    struct wsg_proxy_info *);

/*
 * The client address from X-Forwarded-For, for a peer that is itself a
 * trusted proxy (the caller checks that).  values[0..nvalues) are the
 * field values in order, lens their lengths; together one comma list.
 * Walking from the right, entries inside the trusted blocks are skipped
 * and the first other one is the client (0).  If every entry is trusted,
 * the left-most is (0).  An entry that is not an IPv4 or IPv6 address
 * (IPv6 optionally as "[v6]"; either optionally with ":port", RFC 3986;
 * no zones), more than WSG_PROXY_XFF_MAX entries, or no entry at all:
 * -1, and the caller keeps the peer address.  Empty list elements are
 * skipped (RFC 9110 5.6.1).  An IPv4-mapped IPv6 entry is returned as
 * AF_INET; the port is the entry's, or 0 when it names none.
 */
int	proxy_xff_client(const char *const *, const size_t *, size_t,
	    const struct wsg_cidr *, size_t, struct sockaddr_storage *,
	    socklen_t *);

#endif /* WSG_PROXY_H */
