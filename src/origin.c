/*
 * Origin normalisation and the policy's Origin check.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "origin.h"
#include "regex.h"

struct origin_scheme {
	const char	*os_name;
	size_t		 os_len;
	unsigned int	 os_port;	/* default, dropped when given */
};

static const struct origin_scheme origin_schemes[] = {
	{ "http", 4, 80 },
	{ "https", 5, 443 },
	{ "ws", 2, 80 },
	{ "wss", 3, 443 },
	{ NULL, 0, 0 }
};

/* ASCII lowercase, independent of the locale. */
static char
origin_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Is c allowed in a DNS label? */
static int
origin_ldh(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-';
}

/*
 * Check a DNS name or dotted-quad host (no brackets) and write it in
 * lowercase into out (outlen > len).  A host whose last label is all
 * digits must be a valid IPv4 address, as in the WHATWG URL parser, so
 * "0x7f.1" or "app.123" cannot pass as names.
 */
static int
origin_host_name(const char *h, size_t len, char *out)
{
	struct in_addr	 in;
	size_t		 i, label = 0;
	int		 digits = 1;

	if (len == 0 || len > WSG_ORIGIN_MAX_HOST)
		return -1;
	for (i = 0; i < len; i++) {
		if (h[i] == '.') {
			if (label == 0 || h[i - 1] == '-')
				return -1;
			label = 0;
			digits = 1;
		} else if (origin_ldh(h[i])) {
			if (label == 0 && h[i] == '-')
				return -1;
			if (++label > WSG_ORIGIN_MAX_LABEL)
				return -1;
			if (h[i] < '0' || h[i] > '9')
				digits = 0;
		} else
			return -1;
		out[i] = origin_lower(h[i]);
	}
	out[len] = '\0';
	if (label == 0 || h[len - 1] == '-')
		return -1;	/* empty or hyphenated last label */
	if (digits) {
		/* inet_pton() refuses octal, hex and short forms. */
		if (inet_pton(AF_INET, out, &in) != 1)
			return -1;
	}
	return 0;
}

/* A bracketed IPv6 literal's inside, rewritten by inet_ntop(). */
static int
origin_host_v6(const char *h, size_t len, char *out, size_t outlen)
{
	char		buf[INET6_ADDRSTRLEN];
	struct in6_addr	in6;

	if (len == 0 || len >= sizeof(buf) || memchr(h, '\0', len) != NULL)
		return -1;	/* a NUL would end inet_pton()'s string early */
	memcpy(buf, h, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET6, buf, &in6) != 1)
		return -1;
	if (inet_ntop(AF_INET6, &in6, buf, sizeof(buf)) == NULL)
		return -1;
	if (snprintf(out, outlen, "[%s]", buf) >= (int)outlen)
		return -1;
	return 0;
}

/* Normalise an origin; see origin.h. */
int
origin_normalise(const char *in, size_t len, char *out, size_t outlen)
{
	const struct origin_scheme	*sc;
	char				 host[WSG_ORIGIN_MAX_HOST + 3];
	const char			*p, *end, *hend;
	unsigned int			 port = 0;
	size_t				 i, n;
	int				 w;

	if (in == NULL || out == NULL || outlen == 0)
		return -1;
	if (len == 0 || len > WSG_ORIGIN_MAX_LEN)
		return -1;
	end = in + len;

	for (sc = origin_schemes; sc->os_name != NULL; sc++) {
		if (len < sc->os_len + 3)
			continue;
		for (i = 0; i < sc->os_len; i++) {
			if (origin_lower(in[i]) != sc->os_name[i])
				break;
		}
		if (i == sc->os_len && memcmp(in + i, "://", 3) == 0)
			break;
	}
	if (sc->os_name == NULL)
		return -1;
	p = in + sc->os_len + 3;

	/* The host ends at the port's ':' or at the end of the input. */
	if (p < end && *p == '[') {
		if ((hend = memchr(p, ']', (size_t)(end - p))) == NULL)
			return -1;
		if (origin_host_v6(p + 1, (size_t)(hend - p - 1), host,
		    sizeof(host)) == -1)
			return -1;
		hend++;
	} else {
		for (hend = p; hend < end && *hend != ':'; hend++)
			;
		if ((size_t)(hend - p) >= sizeof(host))
			return -1;
		if (origin_host_name(p, (size_t)(hend - p), host) == -1)
			return -1;
	}

	if (hend < end) {
		if (*hend != ':')
			return -1;
		p = hend + 1;
		n = (size_t)(end - p);
		if (n == 0 || n > 5 || *p == '0')
			return -1;
		for (i = 0; i < n; i++) {
			if (p[i] < '0' || p[i] > '9')
				return -1;
			port = port * 10 + (unsigned int)(p[i] - '0');
		}
		if (port > 65535)
			return -1;
		if (port == sc->os_port)
			port = 0;
	}

	if (port != 0)
		w = snprintf(out, outlen, "%s://%s:%u", sc->os_name, host,
		    port);
	else
		w = snprintf(out, outlen, "%s://%s", sc->os_name, host);
	if (w < 0 || (size_t)w >= outlen)
		return -1;
	return 0;
}

/* Normalise a policy file's allow: entry; see origin.h. */
int
origin_allow_entry(const char *s, char *out, size_t outlen)
{
	if (s == NULL || out == NULL)
		return -1;
	if (strcmp(s, "null") == 0) {
		if (outlen < sizeof("null"))
			return -1;
		memcpy(out, "null", sizeof("null"));
		return 0;
	}
	return origin_normalise(s, strlen(s), out, outlen);
}

/* The policy's verdict on a request's Origin; see origin.h. */
enum wsg_origin_result
origin_check(const struct wsg_origin_policy *op, const char *origin,
    size_t len)
{
	char	norm[WSG_ORIGIN_BUFSZ];
	size_t	i;
	int	failed = 0;

	if (origin == NULL)
		return op->op_allow_missing ? WSG_ORIGIN_OK :
		    WSG_ORIGIN_MISSING;
	if (len == 4 && memcmp(origin, "null", 4) == 0) {
		for (i = 0; i < op->op_nallow; i++) {
			if (strcmp(op->op_allow[i], "null") == 0)
				return WSG_ORIGIN_OK;
		}
		return WSG_ORIGIN_DENIED;
	}
	if (origin_normalise(origin, len, norm, sizeof(norm)) == -1)
		return WSG_ORIGIN_DENIED;
	for (i = 0; i < op->op_nallow; i++) {
		if (strcmp(op->op_allow[i], norm) == 0)
			return WSG_ORIGIN_OK;
	}
	/* The normal form is ASCII, so PCRE2 need not check it. */
	for (i = 0; i < op->op_nregex; i++) {
		switch (regex_match_flags(op->op_regex[i], norm, strlen(norm),
		    WSG_REGEX_VALID_UTF8)) {
		case 1:
			return WSG_ORIGIN_OK;
		case 0:
			break;
		default:
			failed = 1;
			break;
		}
	}
	return failed ? WSG_ORIGIN_ERROR : WSG_ORIGIN_DENIED;
}
