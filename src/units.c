/*
 * Value syntaxes of the config files: durations, sizes, rates and listen
 * addresses.  Pure functions; errors are static strings.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "units.h"

struct units_suffix {
	const char	*us_name;
	uint64_t	 us_mult;
};

static const struct units_suffix units_durations[] = {
	{ "", 1000 },
	{ "ms", 1 },
	{ "s", 1000 },
	{ "m", 60 * 1000 },
	{ "h", 60 * 60 * 1000 },
	{ NULL, 0 }
};

static const struct units_suffix units_sizes[] = {
	{ "", 1 },
	{ "KiB", 1024ULL },
	{ "MiB", 1024ULL * 1024 },
	{ "GiB", 1024ULL * 1024 * 1024 },
	{ NULL, 0 }
};

static const struct units_suffix units_periods[] = {
	{ "s", 1000 },
	{ "m", 60 * 1000 },
	{ "h", 60 * 60 * 1000 },
	{ NULL, 0 }
};

/*
 * A whole number followed by one of the suffixes, multiplied out.  The
 * string ends at end (exclusive).
 */
static int
units_parse_number(const char *s, const char *end,
    const struct units_suffix *sfx, uint64_t *out, const char **err,
    const char *badunit)
{
	uint64_t	 n = 0;
	const char	*p;
	size_t		 ulen;

	if (s == end) {
		*err = "empty value";
		return -1;
	}
	for (p = s; p < end; p++) {
		if (*p == ' ' || *p == '\t') {
			*err = "spaces are not allowed";
			return -1;
		}
	}
	if (*s == '-') {
		*err = "negative values are not allowed";
		return -1;
	}
	if (*s < '0' || *s > '9') {
		*err = "expected a whole number";
		return -1;
	}
	for (p = s; p < end && *p >= '0' && *p <= '9'; p++) {
		if (n > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) {
			*err = "number too large";
			return -1;
		}
		n = n * 10 + (uint64_t)(*p - '0');
	}
	if (p < end && (*p == '.' || *p == ',')) {
		*err = "expected a whole number";
		return -1;
	}
	ulen = (size_t)(end - p);
	for (; sfx->us_name != NULL; sfx++) {
		if (strlen(sfx->us_name) != ulen ||
		    memcmp(sfx->us_name, p, ulen) != 0)
			continue;
		if (n != 0 && sfx->us_mult > UINT64_MAX / n) {
			*err = "number too large";
			return -1;
		}
		*out = n * sfx->us_mult;
		return 0;
	}
	*err = badunit;
	return -1;
}

/* A duration into milliseconds; a bare number is seconds. */
int
units_parse_duration(const char *s, uint64_t *ms, const char **err)
{
	return units_parse_number(s, s + strlen(s), units_durations, ms, err,
	    "unknown unit (use ms, s, m, h, or a bare number of seconds)");
}

/* A size into bytes: a bare number or KiB, MiB, GiB. */
int
units_parse_size(const char *s, uint64_t *bytes, const char **err)
{
	return units_parse_number(s, s + strlen(s), units_sizes, bytes, err,
	    "unknown unit (use KiB, MiB, GiB, or a bare number of bytes)");
}

/* AMOUNT/PERIOD, the amount being a size. */
int
units_parse_rate(const char *s, struct wsg_rate *r, const char **err)
{
	const char		*slash;
	const struct units_suffix *p;
	uint64_t		 amount;

	if ((slash = strchr(s, '/')) == NULL) {
		*err = "expected AMOUNT/UNIT, e.g. 10/s or 1MiB/s";
		return -1;
	}
	if (units_parse_number(s, slash, units_sizes, &amount, err,
	    "unknown unit (use KiB, MiB, GiB, or a bare number)") == -1)
		return -1;
	if (amount == 0) {
		*err = "the amount must be at least 1";
		return -1;
	}
	for (p = units_periods; p->us_name != NULL; p++) {
		if (strcmp(slash + 1, p->us_name) == 0) {
			r->r_amount = amount;
			r->r_per_ms = p->us_mult;
			return 0;
		}
	}
	*err = "unknown period (use /s, /m or /h)";
	return -1;
}

/* Parse a port: digits only, 1..65535. */
static int
units_parse_port(const char *s, uint16_t *port, const char **err)
{
	unsigned long	n = 0;

	if (*s == '\0') {
		*err = "missing port after ':'";
		return -1;
	}
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || n > 65535) {
			*err = "the port must be a number from 1 to 65535";
			return -1;
		}
		n = n * 10 + (unsigned long)(*s - '0');
	}
	if (n == 0 || n > 65535) {
		*err = "the port must be a number from 1 to 65535";
		return -1;
	}
	*port = (uint16_t)n;
	return 0;
}

/* A listen or server address: numeric or localhost, port required. */
int
units_parse_hostport(const char *s, struct sockaddr_storage *ss,
    socklen_t *len, const char **err)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	char			 host[INET6_ADDRSTRLEN + 1];
	const char		*colon, *close;
	size_t			 hlen;
	uint16_t		 port;

	memset(ss, 0, sizeof(*ss));
	if (*s == '[') {
		if ((close = strchr(s, ']')) == NULL) {
			*err = "unterminated '[' in an IPv6 address";
			return -1;
		}
		if (close[1] != ':') {
			*err = "expected ':' and a port after ']'";
			return -1;
		}
		hlen = (size_t)(close - s - 1);
		if (hlen == 0 || hlen >= sizeof(host)) {
			*err = "invalid IPv6 address";
			return -1;
		}
		memcpy(host, s + 1, hlen);
		host[hlen] = '\0';
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
			*err = "invalid IPv6 address";
			return -1;
		}
		if (units_parse_port(close + 2, &port, err) == -1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof(*sin6);
		return 0;
	}
	if ((colon = strrchr(s, ':')) == NULL) {
		*err = "missing ':port' (use host:port or [v6]:port)";
		return -1;
	}
	if (memchr(s, ':', (size_t)(colon - s)) != NULL) {
		*err = "an IPv6 address needs brackets, e.g. [::1]:8443";
		return -1;
	}
	hlen = (size_t)(colon - s);
	if (hlen == 0) {
		*err = "missing host before ':'";
		return -1;
	}
	if (hlen >= sizeof(host)) {
		*err = "the host must be a numeric address or localhost";
		return -1;
	}
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (strcmp(host, "localhost") == 0)
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
		*err = "the host must be a numeric address or localhost";
		return -1;
	}
	if (units_parse_port(colon + 1, &port, err) == -1)
		return -1;
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	*len = sizeof(*sin);
	return 0;
}

/* An address as it would be written in the config. */
void
units_format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	const struct sockaddr_in	*sin = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6	*sin6 = (const struct sockaddr_in6 *)sa;
	char				 h[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET &&
	    inet_ntop(AF_INET, &sin->sin_addr, h, sizeof(h)) != NULL)
		snprintf(buf, len, "%s:%u", h, ntohs(sin->sin_port));
	else if (sa->sa_family == AF_INET6 &&
	    inet_ntop(AF_INET6, &sin6->sin6_addr, h, sizeof(h)) != NULL)
		snprintf(buf, len, "[%s]:%u", h, ntohs(sin6->sin6_port));
	else
		snprintf(buf, len, "unknown");
}

int
units_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}
