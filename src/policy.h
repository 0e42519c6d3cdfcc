/*
 * Handshake policy: the checks a route's policy makes on an upgrade
 * request before any upstream connection is opened, in the order of
 * SPEC.md's first table: client address, country, Origin, token.
 */
#ifndef WSG_POLICY_H
#define WSG_POLICY_H

#include <stddef.h>

struct wsg_http_request;
struct wsg_session;

/* A refusal: HTTP status, reason code, an extra header line or NULL. */
struct wsg_verdict {
	int		 v_status;
	const char	*v_reason;
	const char	*v_header;
	const char	*v_detail;	/* for the error log, never a token */
};

/*
 * Run the route policy's handshake checks.  Returns 0 when the request may
 * go upstream (the session then holds the user, country and token claims),
 * or -1 with the refusal in *v.
 */
int	policy_check(struct wsg_session *, const struct wsg_http_request *,
	    struct wsg_verdict *);

/*
 * The request target to send upstream: the client's, minus every
 * occurrence of the policy's auth query parameter.  Writes into buf and
 * returns its length, or -1 if it does not fit.
 */
int	policy_upstream_target(const struct wsg_session *,
	    const struct wsg_http_request *, char *, size_t);

/*
 * Is this client header name one that forward_claims sets, or one that a
 * CGI-style server takes for it (http_name_alias())?
 */
int	policy_is_forwarded_header(const struct wsg_session *, const char *,
	    size_t);

#endif /* WSG_POLICY_H */
