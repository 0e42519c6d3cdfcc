/*
 * Handshake policy checks.  They run after the request parsed and its
 * route was found, in the order of SPEC.md's first table, and a refusal
 * here means no upstream connection is ever opened.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cidr.h"
#include "config.h"
#include "geoip.h"
#include "http.h"
#include "jwt.h"
#include "origin.h"
#include "policy.h"
#include "session.h"
#include "units.h"

/* Fill a refusal and return -1. */
static int
policy_refuse(struct wsg_verdict *v, int status, const char *reason,
    const char *header, const char *detail)
{
	v->v_status = status;
	v->v_reason = reason;
	v->v_header = header;
	v->v_detail = detail;
	return (-1);
}

/* Is a two-letter code in a list? */
static int
policy_country_listed(char (*list)[3], size_t n, const char *cc)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (strcmp(list[i], cc) == 0)
			return (1);
	return (0);
}

/*
 * A decoded query parameter name byte as the upstream's parser files it:
 * PHP's $_GET turns ' ', '.' and a '[' without its ']' into '_', and
 * ASP.NET looks names up without case (SignalR reads access_token there).
 */
static int
policy_param_fold(int c)
{
	if (c == ' ' || c == '.' || c == '[')
		return ('_');
	if (c >= 'A' && c <= 'Z')
		return (c - 'A' + 'a');
	return (c);
}

/*
 * Is the query parameter name p[0..n) this name once decoded, as the
 * upstream's query parser will read it?  "access%5Ftoken" is
 * "access_token" there, so it must be here too; '+' is a space, PHP
 * also drops leading spaces, ends the name at a NUL ("access_token%00x")
 * and reads "access.token" as "access_token", and ASP.NET reads
 * "ACCESS_TOKEN" as it.
 */
static int
policy_param_is(const char *p, size_t n, const char *name)
{
	size_t	i = 0, k = 0;
	int	c, hi, lo;

	while (i < n) {
		c = (unsigned char)p[i++];
		if (c == '+')
			c = ' ';
		else if (c == '%' && i + 2 <= n &&
		    (hi = units_hexval((unsigned char)p[i])) != -1 &&
		    (lo = units_hexval((unsigned char)p[i + 1])) != -1) {
			c = hi << 4 | lo;
			i += 2;
		}
		/* PHP reads the decoded name as a C string. */
		if (c == '\0')
			break;
		if (k == 0 && c == ' ')
			continue;
		if (name[k] == '\0' || policy_param_fold(
		    (unsigned char)name[k]) != policy_param_fold(c))
			return (0);
		k++;
	}
	return (name[k] == '\0');
}

/*
 * The end of the query parameter at p: the next '&' or ';', else end.
 * Both separate parameters, as many back ends (and HTML 4) take ';' too,
 * so that a token hidden behind a ';' is neither unchecked nor forwarded.
 */
static const char *
policy_query_next(const char *p, const char *end)
{
	while (p < end && *p != '&' && *p != ';')
		p++;
	return (p);
}

/*
 * Find the value of a query parameter (first occurrence).  Returns 1 and
 * the value, or 0 when absent.
 */
static int
policy_query_param(struct wsg_str q, const char *name, struct wsg_str *val)
{
	const char	*p = q.p, *end = q.p + q.len, *amp, *eq;

	while (p != NULL && p < end) {
		amp = policy_query_next(p, end);
		eq = memchr(p, '=', amp - p);
		if (eq != NULL && policy_param_is(p, (size_t)(eq - p), name)) {
			val->p = eq + 1;
			val->len = amp - (eq + 1);
			return (1);
		}
		p = amp + 1;
	}
	return (0);
}

/*
 * Percent-decode a query value into buf, as the form-encoded query is
 * read (RFC 6750 2.3): "a%2Eb" is "a.b".  A '%' not followed by two hex
 * digits stays as it is.  -1 when it does not fit in len bytes.
 */
static int
policy_query_value(struct wsg_str v, char *buf, size_t len,
    struct wsg_str *out)
{
	size_t	i = 0, n = 0;
	int	c, hi, lo;

	while (i < v.len) {
		c = (unsigned char)v.p[i++];
		if (c == '%' && i + 2 <= v.len &&
		    (hi = units_hexval((unsigned char)v.p[i])) != -1 &&
		    (lo = units_hexval((unsigned char)v.p[i + 1])) != -1) {
			c = hi << 4 | lo;
			i += 2;
		}
		if (n == len)
			return (-1);
		buf[n++] = (char)c;
	}
	out->p = buf;
	out->len = n;
	return (0);
}

/*
 * Is v an Authorization credential of a scheme other than Bearer, well
 * formed (RFC 9110 11.4: a token for the scheme, then nothing or spaces
 * and a non-empty rest without control characters)?  A browser sends the
 * Basic or Digest credentials it holds for the site on a WebSocket
 * handshake too; such a field is no token, but the site's own business.
 */
static int
policy_other_scheme(struct wsg_str v)
{
	static const char	 tspecial[] = "!#$%&'*+-.^_`|~";
	size_t			 i, n;
	unsigned char		 c;

	for (n = 0; n < v.len; n++) {
		c = (unsigned char)v.p[n];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr(tspecial, c) != NULL) ||
		    c == '\0')
			break;
	}
	if (n == 0 || (n == 6 && strncasecmp(v.p, "Bearer", 6) == 0))
		return (0);
	if (n == v.len)
		return (1);
	if (v.p[n] != ' ')
		return (0);
	for (i = n; i < v.len && v.p[i] == ' '; i++)
		;
	if (i == v.len)
		return (0);
	for (; i < v.len; i++) {
		c = (unsigned char)v.p[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return (0);
	}
	return (1);
}

/*
 * The bearer token of a request: from the configured header ("Bearer"
 * scheme for Authorization, the raw value for any other header), else from
 * the query parameter, percent-decoded into buf.  An Authorization field
 * of another scheme carries no token: it is passed over, and the token is
 * looked for in the query; with none there, it is what the request offered
 * for one, refused as before.  Returns 1 found, 0 missing, -1 present but
 * not a usable token, with why.
 */
static int
policy_token(const struct wsg_policy *pol, const struct wsg_http_request *req,
    char *buf, size_t len, struct wsg_str *tok, const char **why)
{
	const struct wsg_http_header	*h;
	struct wsg_str			 v;
	size_t				 i, copies = 0;
	int				 authz, other = 0;

	/*
	 * One copy only.  All of them would go upstream, which may read
	 * another than the one checked here; so would a name that a CGI-style
	 * server takes for the same one ("X_Token" for "X-Token").
	 */
	for (i = 0; i < req->nheaders; i++)
		if (http_name_alias(req->headers[i].name, pol->pol_auth_header))
			copies++;
	if (copies > 1) {
		*why = "more than one token header";
		return (-1);
	}
	h = http_header_find(req->headers, req->nheaders,
	    pol->pol_auth_header);
	/*
	 * A lone twin ("X_Token") is never read here, yet it too would go
	 * upstream beside a token taken from the query.
	 */
	if (copies == 1 && h == NULL) {
		*why = "token header under another name";
		return (-1);
	}
	*why = "not a bearer token";
	authz = strcasecmp(pol->pol_auth_header, "Authorization") == 0;
	if (h != NULL && authz && policy_other_scheme(h->value)) {
		other = 1;
		h = NULL;
	}
	if (h != NULL) {
		v = h->value;
		if (authz) {
			if (v.len < 7 || strncasecmp(v.p, "Bearer ", 7) != 0)
				return (-1);
			v.p += 7;
			v.len -= 7;
			while (v.len > 0 && *v.p == ' ') {
				v.p++;
				v.len--;
			}
		}
		if (v.len == 0)
			return (-1);
		*tok = v;
		return (1);
	}
	if (pol->pol_auth_query_param != NULL && req->has_query &&
	    policy_query_param(req->query, pol->pol_auth_query_param, &v)) {
		if (v.len == 0)
			return (-1);
		if (policy_query_value(v, buf, len, tok) == -1) {
			*why = "token too long";
			return (-1);
		}
		return (1);
	}
	/* Another scheme and no token beside it: not a bearer token. */
	return (other ? -1 : 0);
}

int
policy_check(struct wsg_session *s, const struct wsg_http_request *req,
    struct wsg_verdict *v)
{
	const struct wsg_policy	*pol = s->s_route->rt_policy;
	const struct sockaddr	*sa = (const struct sockaddr *)&s->s_addr;
	struct wsg_jwt_claims	*claims = NULL;
	enum wsg_jwt_result	 jr;
	struct wsg_str		 tok;
	const char		*why;
	char			 cc[3], tokbuf[WSG_JWT_MAX_TOKEN];
	int			 r;

	/* Addresses: deny wins over allow. */
	if (pol->pol_nip_deny > 0 && cidr_list_match(pol->pol_ip_deny,
	    pol->pol_nip_deny, sa))
		return (policy_refuse(v, 403, "ip_denied", NULL,
		    "address in ip.deny"));
	if (pol->pol_nip_allow > 0 && !cidr_list_match(pol->pol_ip_allow,
	    pol->pol_nip_allow, sa))
		return (policy_refuse(v, 403, "ip_denied", NULL,
		    "address not in ip.allow"));

	/* Countries. */
	if (pol->pol_geoip != NULL) {
		r = geoip_country(pol->pol_geoip, sa, cc);
		if (r == 1) {
			memcpy(s->s_country, cc, sizeof(s->s_country));
			if (policy_country_listed(pol->pol_geo_deny,
			    pol->pol_ngeo_deny, cc))
				return (policy_refuse(v, 403, "geo_denied",
				    NULL, "country in deny_countries"));
			if (pol->pol_ngeo_allow > 0 &&
			    !policy_country_listed(pol->pol_geo_allow,
			    pol->pol_ngeo_allow, cc))
				return (policy_refuse(v, 403, "geo_denied",
				    NULL, "country not in allow_countries"));
		} else if (r == -1)
			/* Not an unknown address: a database that fails. */
			return (policy_refuse(v, 403, "geo_denied", NULL,
			    "country lookup failed: corrupt database"));
		else if (!pol->pol_geo_unknown_allow)
			return (policy_refuse(v, 403, "geo_denied", NULL,
			    "country unknown"));
	}

	/* Origin. */
	if (pol->pol_origin != NULL) {
		switch (origin_check(pol->pol_origin, req->origin.p,
		    req->origin.len)) {
		case WSG_ORIGIN_OK:
			break;
		case WSG_ORIGIN_MISSING:
			return (policy_refuse(v, 403, "origin_denied", NULL,
			    "no Origin"));
		case WSG_ORIGIN_ERROR:
			return (policy_refuse(v, 403, "origin_denied", NULL,
			    "origin regex match limit"));
		default:
			return (policy_refuse(v, 403, "origin_denied", NULL,
			    "Origin not allowed"));
		}
	}

	/* Token. */
	if (pol->pol_jwt != NULL) {
		r = policy_token(pol, req, tokbuf, sizeof(tokbuf), &tok,
		    &why);
		if (r == 0)
			return (policy_refuse(v, 401, "auth_missing",
			    "WWW-Authenticate: Bearer realm=\"wsgate\"\r\n",
			    "no token"));
		if (r == -1)
			return (policy_refuse(v, 401, "auth_invalid",
			    "WWW-Authenticate: Bearer realm=\"wsgate\", "
			    "error=\"invalid_request\"\r\n", why));
		jr = jwt_verify(tok.p, tok.len, pol->pol_jwt,
		    (int64_t)time(NULL), &claims);
		if (jr == WSG_JWT_NOMEM)
			return (policy_refuse(v, 500, "internal_error", NULL,
			    jwt_result_str(jr)));
		if (jr == WSG_JWT_EXPIRED)
			return (policy_refuse(v, 401, "auth_expired",
			    "WWW-Authenticate: Bearer realm=\"wsgate\", "
			    "error=\"invalid_token\"\r\n", jwt_result_str(jr)));
		if (jr != WSG_JWT_OK)
			return (policy_refuse(v, 401, "auth_invalid",
			    "WWW-Authenticate: Bearer realm=\"wsgate\", "
			    "error=\"invalid_token\"\r\n", jwt_result_str(jr)));
		s->s_claims = claims;
		if (jwt_claims_sub(claims) != NULL)
			s->s_user = strdup(jwt_claims_sub(claims));
	}
	return (0);
}

int
policy_upstream_target(const struct wsg_session *s,
    const struct wsg_http_request *req, char *buf, size_t len)
{
	const struct wsg_policy	*pol = s->s_route->rt_policy;
	const char		*name = pol->pol_auth_query_param;
	const char		*p, *end, *amp, *eq;
	size_t			 n = 0, seg;
	int			 first = 1;
	char			 sep;

	if (req->path.len + 1 > len)
		return (-1);
	memcpy(buf, req->path.p, req->path.len);
	n = req->path.len;
	if (!req->has_query)
		goto done;
	if (pol->pol_jwt == NULL || name == NULL) {
		if (n + 1 + req->query.len + 1 > len)
			return (-1);
		buf[n++] = '?';
		memcpy(buf + n, req->query.p, req->query.len);
		n += req->query.len;
		goto done;
	}
	p = req->query.p;
	end = req->query.p + req->query.len;
	sep = '&';
	while (p <= end) {
		amp = policy_query_next(p, end);
		seg = amp - p;
		if ((eq = memchr(p, '=', seg)) == NULL)
			eq = amp;
		/*
		 * Drop "name=..." and a bare "name", however encoded; keep
		 * the rest, each after the separator that came before it.
		 */
		if (!policy_param_is(p, (size_t)(eq - p), name) && seg > 0) {
			if (n + 1 + seg + 1 > len)
				return (-1);
			buf[n++] = first ? '?' : sep;
			memcpy(buf + n, p, seg);
			n += seg;
			first = 0;
		}
		if (amp < end)
			sep = *amp;
		p = amp + 1;
	}
done:
	buf[n] = '\0';
	return ((int)n);
}

int
policy_is_forwarded_header(const struct wsg_session *s, const char *name,
    size_t len)
{
	const struct wsg_policy	*pol = s->s_route->rt_policy;
	struct wsg_str		 n = { name, len };
	size_t			 i;

	for (i = 0; i < pol->pol_nforward_claims; i++)
		if (http_name_alias(n, pol->pol_forward_claims[i].fc_header))
			return (1);
	return (0);
}
