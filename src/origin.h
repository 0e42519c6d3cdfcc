/*
 * The Origin check of a policy: RFC 6454 origin serialisations compared
 * after normalisation against an exact allow list, then against regexes.
 * Pure: no sockets, no globals, no logging.
 */
#ifndef WSG_ORIGIN_H
#define WSG_ORIGIN_H

#include <stddef.h>

#define WSG_ORIGIN_MAX_HOST	253	/* DNS name, RFC 1035 */
#define WSG_ORIGIN_MAX_LABEL	63
#define WSG_ORIGIN_MAX_LEN	300	/* whole input, "https://" host :port */
#define WSG_ORIGIN_BUFSZ	(WSG_ORIGIN_MAX_LEN + 1)	/* for out */

struct wsg_regex;

struct wsg_origin_policy {
	char			**op_allow;	/* from origin_allow_entry() */
	size_t			  op_nallow;
	struct wsg_regex	**op_regex;	/* matched on the normal form */
	size_t			  op_nregex;
	int			  op_allow_missing;
};

enum wsg_origin_result {
	WSG_ORIGIN_OK,
	WSG_ORIGIN_DENIED,	/* 403 origin_denied */
	WSG_ORIGIN_MISSING,	/* no Origin and allow_missing is false */
	WSG_ORIGIN_ERROR	/* a regex hit its limits: refuse */
};

/*
 * Normalise "scheme://host[:port]" (len bytes, no NUL needed) into out:
 * scheme http, https, ws or wss and host lowercased, the scheme's default
 * port dropped.  The host is a DNS name (letters, digits, '-' and '.',
 * labels of 1..63 bytes, no leading or trailing '-', no trailing '.'), a
 * dotted-quad IPv4 address or a bracketed IPv6 address (rewritten in
 * RFC 5952 form).  The port is 1..65535 without leading zeros.  Nothing
 * may follow the authority: no '/', query, fragment, userinfo or spaces.
 * Returns 0, or -1 if the input is not such an origin or out is too small
 * (WSG_ORIGIN_BUFSZ always suffices).  "null" is not an origin here.
 */
int	origin_normalise(const char *, size_t, char *, size_t);

/*
 * An allow: entry from a policy file (NUL-terminated): the literal "null",
 * copied as is, or an origin normalised as above.  Returns 0 or -1.
 */
int	origin_allow_entry(const char *, char *, size_t);

/*
 * Check a request's Origin value (NULL when the header is absent).
 * Absent: OK if op_allow_missing, else MISSING.  "null": OK only if the
 * allow list holds "null".  Anything else is normalised (failure: DENIED)
 * and compared exactly with op_allow, then matched by each regex: any
 * match is OK; if none matched and a regex failed on its limits, ERROR;
 * otherwise DENIED.
 */
enum wsg_origin_result	origin_check(const struct wsg_origin_policy *,
			    const char *, size_t);

#endif /* WSG_ORIGIN_H */
