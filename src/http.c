/*
 * HTTP/1.1 upgrade handshake parsing (RFC 9112, RFC 6455 4.2.1).  Strict,
 * because the gateway sits in front of backends that may parse differently.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "http.h"
#include "units.h"

#define HTTP_WS_GUID		"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define HTTP_WS_GUID_LEN	(sizeof(HTTP_WS_GUID) - 1)
#define HTTP_KEY_LEN		24	/* base64 of 16 bytes */
#define HTTP_ACCEPT_KEY_MAX	64	/* longest key we hash */
#define HTTP_MAX_CONTENT_LENGTH	(1ULL << 53)

/* Fields the request parser tracks for duplicates. */
#define SEEN_UPGRADE		0x01
#define SEEN_KEY		0x02
#define SEEN_VERSION		0x04
#define SEEN_ORIGIN		0x08
#define SEEN_HOST		0x10
#define SEEN_LENGTH		0x20	/* Content-Length */
#define SEEN_CHUNKED		0x40	/* Transfer-Encoding */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/*
 * Fields the gateway never forwards from the client, whatever they say.
 * X-Real-IP (set by the gateway), True-Client-IP, X-Client-IP and
 * Client-IP name the client to code that reads them before
 * X-Forwarded-For (Go's chi RealIP, Node's request-ip, PHP's common
 * HTTP_CLIENT_IP test): a client's own copy would let it choose the
 * address the backend believes.
 */
static const char *const http_dropped_names[] = {
	"Connection", "Keep-Alive", "TE", "Trailer", "Transfer-Encoding",
	"Upgrade", "Host", "Forwarded", "Content-Length", "X-Real-IP",
	"True-Client-IP", "X-Client-IP", "Client-IP"
};

/*
 * Fields of the upstream's 101 the client never gets: hop-by-hop ones
 * (RFC 9110 7.6.1, 11.7), those the gateway writes itself or that would
 * describe the upstream's message, not the client's, and the upstream's
 * Server banner, which names its software to anyone (nginx hides it too).
 */
static const char *const http_101_dropped_names[] = {
	"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
	"Transfer-Encoding", "Upgrade", "Proxy-Authenticate",
	"Proxy-Authentication-Info", "Content-Length", "Server"
};

/* Name prefixes the gateway owns (Proxy-*, Sec-WebSocket-*, X-Forwarded-*). */
static const char *const http_dropped_prefixes[] = {
	"Proxy-", "Sec-WebSocket-", "X-Forwarded-"
};

static const struct {
	int		 code;
	const char	*text;
} http_status_texts[] = {
	{ 100, "Continue" },
	{ 101, "Switching Protocols" },
	{ 200, "OK" },
	{ 201, "Created" },
	{ 202, "Accepted" },
	{ 204, "No Content" },
	{ 301, "Moved Permanently" },
	{ 302, "Found" },
	{ 303, "See Other" },
	{ 304, "Not Modified" },
	{ 307, "Temporary Redirect" },
	{ 308, "Permanent Redirect" },
	{ 400, "Bad Request" },
	{ 401, "Unauthorized" },
	{ 403, "Forbidden" },
	{ 404, "Not Found" },
	{ 405, "Method Not Allowed" },
	{ 406, "Not Acceptable" },
	{ 408, "Request Timeout" },
	{ 409, "Conflict" },
	{ 410, "Gone" },
	{ 411, "Length Required" },
	{ 413, "Content Too Large" },
	{ 414, "URI Too Long" },
	{ 415, "Unsupported Media Type" },
	{ 421, "Misdirected Request" },
	{ 426, "Upgrade Required" },
	{ 428, "Precondition Required" },
	{ 429, "Too Many Requests" },
	{ 431, "Request Header Fields Too Large" },
	{ 500, "Internal Server Error" },
	{ 501, "Not Implemented" },
	{ 502, "Bad Gateway" },
	{ 503, "Service Unavailable" },
	{ 504, "Gateway Timeout" },
	{ 505, "HTTP Version Not Supported" }
};

/* Is c a tchar, the characters of an RFC 9110 token? */
static int
http_is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* May c appear in a field value (VCHAR, obs-text, SP, HTAB)? */
static int
http_is_value_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Is c one of the characters a Host value may hold (RFC 3986 authority)? */
static int
http_is_host_char(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("-._~%!$&'()*+,;=:[]", c) != NULL;
}

/*
 * Is a Host value (of host characters) uri-host [":" port]: an IPv6 or
 * IPvFuture literal in brackets, or a name or IPv4 address without them,
 * and a port of digits only (RFC 7230 5.4, RFC 3986 3.2.2)?  "[::1",
 * "::1:80" or "a]b" would reach the upstream as Host and X-Forwarded-Host.
 */
static int
http_host_ok(const char *p, size_t len)
{
	char		 lit[INET6_ADDRSTRLEN];
	struct in6_addr	 in6;
	const char	*close, *end = p + len;
	size_t		 i, n;

	if (len > 0 && p[0] == '[') {
		if ((close = memchr(p, ']', len)) == NULL)
			return 0;
		n = (size_t)(close - p - 1);
		if (n > 0 && (p[1] == 'v' || p[1] == 'V')) {
			/* IPvFuture: "v" 1*HEXDIG "." 1*(unreserved / ...) */
			for (i = 2; i <= n && units_hexval(
			    (unsigned char)p[i]) != -1; i++)
				;
			if (i == 2 || i >= n || p[i] != '.')
				return 0;
			for (i++; i <= n; i++)
				if (p[i] == '[' || p[i] == '%')
					return 0;
		} else {
			if (n == 0 || n >= sizeof(lit))
				return 0;
			memcpy(lit, p + 1, n);
			lit[n] = '\0';
			if (inet_pton(AF_INET6, lit, &in6) != 1)
				return 0;
		}
		p = close + 1;
	} else {
		for (n = 0; n < len && p[n] != ':'; n++)
			if (p[n] == '[' || p[n] == ']')
				return 0;
		if (n == 0)
			return 0;
		p += n;
	}
	if (p == end)
		return 1;
	if (*p++ != ':')
		return 0;
	for (; p < end; p++)
		if (*p < '0' || *p > '9')
			return 0;
	return 1;
}

/* Lowercase an ASCII letter; other bytes are returned unchanged. */
static unsigned char
http_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

/* Case-insensitive comparison of two byte strings of length n. */
static int
http_mem_ieq(const char *a, const char *b, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (http_lower(a[i]) != http_lower(b[i]))
			return 0;
	return 1;
}

/*
 * A field-name byte as servers that map names to variables read it (CGI,
 * WSGI, PHP: "X_Token" and "X-Token" both become HTTP_X_TOKEN): case
 * folded, '_' taken for '-'.
 */
static unsigned char
http_name_fold(unsigned char c)
{
	return c == '_' ? '-' : http_lower(c);
}

/* Do the n bytes at a and b name the same field to such a server? */
static int
http_name_ieq(const char *a, const char *b, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (http_name_fold(a[i]) != http_name_fold(b[i]))
			return 0;
	return 1;
}

/* Case-insensitive equality of two wsg_str. */
static int
http_str_ieq(struct wsg_str a, struct wsg_str b)
{
	return a.len == b.len && http_mem_ieq(a.p, b.p, a.len);
}

/* Is every byte of s a tchar, and s not empty? */
static int
http_is_token(struct wsg_str s)
{
	size_t	i;

	if (s.len == 0)
		return 0;
	for (i = 0; i < s.len; i++)
		if (!http_is_tchar(s.p[i]))
			return 0;
	return 1;
}

/* Remove leading and trailing OWS (SP, HTAB). */
static struct wsg_str
http_trim(struct wsg_str s)
{
	while (s.len > 0 && (s.p[0] == ' ' || s.p[0] == '\t')) {
		s.p++;
		s.len--;
	}
	while (s.len > 0 && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
		s.len--;
	return s;
}

/*
 * Take the next element of a comma-separated list, OWS trimmed; empty
 * elements are returned too (callers skip them, RFC 9110 5.6.1).  Returns 0
 * once the list is used up.
 */
static int
http_list_next(struct wsg_str *list, struct wsg_str *elem)
{
	const char	*comma;

	if (list->p == NULL)
		return 0;
	comma = memchr(list->p, ',', list->len);
	elem->p = list->p;
	if (comma == NULL) {
		elem->len = list->len;
		list->p = NULL;
		list->len = 0;
	} else {
		elem->len = comma - list->p;
		list->len -= elem->len + 1;
		list->p = comma + 1;
	}
	*elem = http_trim(*elem);
	return 1;
}

/* Does a comma-separated list contain this token (case-insensitive)? */
static int
http_list_has(struct wsg_str list, struct wsg_str token)
{
	struct wsg_str	 elem;

	while (http_list_next(&list, &elem))
		if (elem.len > 0 && http_str_ieq(elem, token))
			return 1;
	return 0;
}

/* Wrap a C string in a wsg_str. */
static struct wsg_str
http_cstr(const char *s)
{
	struct wsg_str	 r;

	r.p = s;
	r.len = strlen(s);
	return r;
}

/* Standard base64 with padding; out gets 4 * ceil(n / 3) chars and a NUL. */
static void
http_base64(const unsigned char *in, size_t n, char *out)
{
	uint32_t	v;
	size_t		i;

	for (i = 0; i + 2 < n; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
		    in[i + 2];
		*out++ = b64_alphabet[v >> 18];
		*out++ = b64_alphabet[(v >> 12) & 0x3f];
		*out++ = b64_alphabet[(v >> 6) & 0x3f];
		*out++ = b64_alphabet[v & 0x3f];
	}
	if (n - i == 1) {
		v = (uint32_t)in[i] << 16;
		*out++ = b64_alphabet[v >> 18];
		*out++ = b64_alphabet[(v >> 12) & 0x3f];
		*out++ = '=';
		*out++ = '=';
	} else if (n - i == 2) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		*out++ = b64_alphabet[v >> 18];
		*out++ = b64_alphabet[(v >> 12) & 0x3f];
		*out++ = b64_alphabet[(v >> 6) & 0x3f];
		*out++ = '=';
	}
	*out = '\0';
}

/*
 * Is s a Sec-WebSocket-Key: base64 of exactly 16 bytes, so 22 alphabet
 * characters then "==".  Non-zero trailing bits in the 22nd character are
 * accepted, as common base64 decoders do.
 */
static int
http_key_is_valid(struct wsg_str s)
{
	size_t	i;

	if (s.len != HTTP_KEY_LEN || s.p[22] != '=' || s.p[23] != '=')
		return 0;
	for (i = 0; i < 22; i++)
		if (s.p[i] == '\0' || strchr(b64_alphabet, s.p[i]) == NULL)
			return 0;
	return 1;
}

/*
 * Find the end of the line starting at pos in buf[0..limit).  OK with *end
 * at its CR when a CRLF ends it.  Otherwise INCOMPLETE with *end past the
 * bytes that are surely content (a CR at the very end may start a CRLF),
 * and *bare set when a bare CR or LF stops the line: the caller checks the
 * content before it first, so errors come out in byte order.
 */
static enum wsg_http_result
http_line_end(const char *buf, size_t limit, size_t pos, size_t *end,
    const char **bare)
{
	size_t	i;

	*bare = NULL;
	for (i = pos; i < limit; i++) {
		if (buf[i] == '\n') {
			*bare = "bare LF in header";
			break;
		}
		if (buf[i] != '\r')
			continue;
		if (i + 1 == limit)
			break;
		if (buf[i + 1] != '\n') {
			*bare = "bare CR in header";
			break;
		}
		*end = i;
		return WSG_HTTP_OK;
	}
	*end = i;
	return WSG_HTTP_INCOMPLETE;
}

/*
 * Check a field line, or the prefix of one when !complete, and on a
 * complete line fill *h.  Returns OK or BAD_REQUEST.
 */
static enum wsg_http_result
http_field_parse(const char *p, size_t n, int complete,
    struct wsg_http_header *h, const char **error)
{
	size_t	i, colon;

	if (n == 0)
		return WSG_HTTP_OK;
	if (p[0] == ' ' || p[0] == '\t') {
		*error = "obs-fold in header";
		return WSG_HTTP_BAD_REQUEST;
	}
	for (i = 0; i < n && http_is_tchar(p[i]); i++)
		;
	if (i == n) {
		if (!complete)
			return WSG_HTTP_OK;
		*error = "header without colon";
		return WSG_HTTP_BAD_REQUEST;
	}
	if (p[i] != ':') {
		if (p[i] == ' ' || p[i] == '\t')
			*error = "whitespace before colon";
		else
			*error = "bad character in header name";
		return WSG_HTTP_BAD_REQUEST;
	}
	if (i == 0) {
		*error = "empty header name";
		return WSG_HTTP_BAD_REQUEST;
	}
	colon = i;
	for (i = colon + 1; i < n; i++) {
		if (!http_is_value_char(p[i])) {
			if (p[i] == '\0')
				*error = "NUL in header value";
			else
				*error = "control character in header value";
			return WSG_HTTP_BAD_REQUEST;
		}
	}
	if (!complete)
		return WSG_HTTP_OK;
	h->name.p = p;
	h->name.len = colon;
	h->value.p = p + colon + 1;
	h->value.len = n - colon - 1;
	h->value = http_trim(h->value);
	return WSG_HTTP_OK;
}

/*
 * Check that p[0..n) is a prefix of lit (all of it when complete).
 */
static int
http_is_prefix_of(const char *p, size_t n, int complete, const char *lit)
{
	size_t	litlen = strlen(lit);

	if (n > litlen || memcmp(p, lit, n) != 0)
		return 0;
	return !complete || n == litlen;
}

/*
 * Would a backend read this path differently from the route match?  Dot
 * segments ("/./", "/../", also percent-encoded, also with a parameter as
 * in "/..;/", which Tomcat and Jetty take for "/../"), encoded slashes and
 * backslashes let "/pub/../admin" pass a "/pub/" prefix route and land
 * elsewhere; an encoded unreserved character ("/api/%61dmin") is the
 * same path as the plain one to the backend (RFC 3986 6.2.2.2) but not to
 * the route match, nor is an empty segment ("/api//admin") to nginx's
 * merge_slashes and to Tomcat, nor a segment with a parameter
 * ("/api/admin;x"), which Tomcat and Jetty read without it, nor an
 * encoded NUL ("/api/admin%00x"), where a C backend stops.  A '%' not
 * followed by two hex digits is no URI at all, and each backend reads it
 * its own way.  They are refused rather than normalised.
 */
int
http_path_ambiguous(const char *p, size_t len)
{
	size_t	i, seg, dots, j;
	int	hi, lo, c;

	for (i = 0; i < len; i++) {
		if (p[i] == '\\' || p[i] == ';' || (p[i] == '/' &&
		    i + 1 < len && p[i + 1] == '/'))
			return 1;
		if (p[i] != '%')
			continue;
		/* Not RFC 3986 pct-encoded: IIS reads "%u002e" as '.'. */
		if (i + 2 >= len ||
		    (hi = units_hexval((unsigned char)p[i + 1])) == -1 ||
		    (lo = units_hexval((unsigned char)p[i + 2])) == -1)
			return 1;
		c = hi << 4 | lo;
		/* A NUL ends the path early in a C backend (nginx: 400). */
		if (c == '\0' || c == '/' || c == '\\' ||
		    (c >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~')
			return 1;
	}
	for (seg = 1; seg <= len; seg = j + 1) {
		/* A segment of only "." or "%2e", one or two of them. */
		dots = 0;
		for (j = seg; j < len && p[j] != '/'; ) {
			if (p[j] == '.') {
				j++;
			} else if (p[j] == '%' && j + 2 < len &&
			    p[j + 1] == '2' && (p[j + 2] == 'e' ||
			    p[j + 2] == 'E')) {
				j += 3;
			} else
				break;
			dots++;
		}
		if ((j == len || p[j] == '/' || p[j] == ';') &&
		    (dots == 1 || dots == 2))
			return 1;
		while (j < len && p[j] != '/')
			j++;
	}
	return 0;
}

/*
 * Check the request line, or the prefix of one when !complete:
 * method SP request-target SP "HTTP/1.1".  A GET must use origin-form;
 * another method may use any form (asterisk, authority, absolute), so
 * that it gets its 405.  Fills req when complete.
 */
static enum wsg_http_result
http_request_line(const char *p, size_t n, int complete,
    struct wsg_http_request *req)
{
	const char	*q;
	size_t		 i, m, t;
	int		 origin_form;

	for (i = 0; i < n && http_is_tchar(p[i]); i++)
		;
	if (i == n)
		goto short_line;
	if (i == 0 || p[i] != ' ') {
		req->error = "bad method";
		return WSG_HTTP_BAD_REQUEST;
	}
	/*
	 * The method is known from here on, whatever is wrong further on:
	 * the refusal of a HEAD has no body (RFC 9110 9.3.2).
	 */
	req->method.p = p;
	req->method.len = m = i++;
	if (i == n)
		goto short_line;
	origin_form = p[i] == '/';
	if (!origin_form && (p[i] == ' ' ||
	    (m == 3 && memcmp(p, "GET", 3) == 0))) {
		req->error = "target not in origin-form";
		return WSG_HTTP_BAD_REQUEST;
	}
	for (t = i; i < n && p[i] >= 0x21 && p[i] <= 0x7e; i++) {
		if (p[i] == '#') {
			req->error = "fragment in target";
			return WSG_HTTP_BAD_REQUEST;
		}
	}
	if (i == n)
		goto short_line;
	if (p[i] != ' ') {
		req->error = "bad character in target";
		return WSG_HTTP_BAD_REQUEST;
	}
	if (!http_is_prefix_of(p + i + 1, n - i - 1, complete, "HTTP/1.1")) {
		req->error = "unsupported HTTP version";
		return WSG_HTTP_BAD_REQUEST;
	}
	if (!complete)
		return WSG_HTTP_OK;
	req->target.p = p + t;
	req->target.len = i - t;
	req->path = req->target;
	/* Any form: the logged path never carries a query (and its token). */
	q = memchr(req->target.p, '?', req->target.len);
	if (q != NULL) {
		req->path.len = q - req->target.p;
		req->query.p = q + 1;
		req->query.len = req->target.len - req->path.len - 1;
		req->has_query = 1;
	}
	if (!origin_form)
		return WSG_HTTP_OK;	/* not a GET: refused with 405 */
	if (http_path_ambiguous(req->path.p, req->path.len)) {
		req->error = "ambiguous path";
		return WSG_HTTP_BAD_REQUEST;
	}
	return WSG_HTTP_OK;

short_line:
	if (!complete)
		return WSG_HTTP_OK;
	req->error = "malformed request line";
	return WSG_HTTP_BAD_REQUEST;
}

/* Add the offered subprotocols of one Sec-WebSocket-Protocol value. */
static enum wsg_http_result
http_request_protocols(struct wsg_http_request *req, struct wsg_str value)
{
	struct wsg_str	 elem;

	while (http_list_next(&value, &elem)) {
		if (elem.len == 0)
			continue;
		if (!http_is_token(elem) || elem.len > WSG_MAX_TOKEN_LEN) {
			req->error = "bad subprotocol";
			return WSG_HTTP_BAD_REQUEST;
		}
		if (req->nprotocols == WSG_MAX_SUBPROTOCOLS) {
			req->error = "too many subprotocols";
			return WSG_HTTP_BAD_REQUEST;
		}
		req->protocols[req->nprotocols++] = elem;
	}
	return WSG_HTTP_OK;
}

/*
 * Apply the per-field request rules to the field just parsed: refused
 * fields, duplicates, and the fields the parser locates.
 */
static enum wsg_http_result
http_request_field(struct wsg_http_request *req,
    const struct wsg_http_header *h, int *seen)
{
	size_t	i;

	/*
	 * A body is refused, but after the method: a POST with a body is a
	 * well-formed request for a method this gateway does not serve.
	 */
	if (http_str_eq(h->name, "Content-Length")) {
		*seen |= SEEN_LENGTH;
		return WSG_HTTP_OK;
	}
	if (http_str_eq(h->name, "Transfer-Encoding")) {
		*seen |= SEEN_CHUNKED;
		return WSG_HTTP_OK;
	}
	if (http_str_eq(h->name, "Host")) {
		if (*seen & SEEN_HOST) {
			req->error = "duplicate Host";
			return WSG_HTTP_BAD_REQUEST;
		}
		*seen |= SEEN_HOST;
		if (h->value.len == 0) {
			req->error = "empty Host";
			return WSG_HTTP_BAD_REQUEST;
		}
		for (i = 0; i < h->value.len; i++) {
			if (!http_is_host_char(h->value.p[i])) {
				req->error = "bad character in Host";
				return WSG_HTTP_BAD_REQUEST;
			}
		}
		if (!http_host_ok(h->value.p, h->value.len)) {
			req->error = "malformed Host";
			return WSG_HTTP_BAD_REQUEST;
		}
		req->host = h->value;
	} else if (http_str_eq(h->name, "Upgrade")) {
		if (*seen & SEEN_UPGRADE) {
			req->error = "duplicate Upgrade";
			return WSG_HTTP_BAD_REQUEST;
		}
		*seen |= SEEN_UPGRADE;
	} else if (http_str_eq(h->name, "Sec-WebSocket-Key")) {
		if (*seen & SEEN_KEY) {
			req->error = "duplicate Sec-WebSocket-Key";
			return WSG_HTTP_BAD_REQUEST;
		}
		*seen |= SEEN_KEY;
		req->key = h->value;
	} else if (http_str_eq(h->name, "Sec-WebSocket-Version")) {
		if (*seen & SEEN_VERSION) {
			req->error = "duplicate Sec-WebSocket-Version";
			return WSG_HTTP_BAD_REQUEST;
		}
		*seen |= SEEN_VERSION;
	} else if (http_str_eq(h->name, "Origin")) {
		if (*seen & SEEN_ORIGIN) {
			req->error = "duplicate Origin";
			return WSG_HTTP_BAD_REQUEST;
		}
		*seen |= SEEN_ORIGIN;
		req->origin = h->value;
	} else if (http_str_eq(h->name, "Sec-WebSocket-Protocol"))
		return http_request_protocols(req, h->value);
	return WSG_HTTP_OK;
}

/* Check the upgrade semantics of a complete, well-formed request head. */
static enum wsg_http_result
http_request_semantics(struct wsg_http_request *req, int seen)
{
	const struct wsg_http_header	*h;
	struct wsg_str			 upgrade = http_cstr("upgrade");
	size_t				 i;
	int				 found = 0;

	if (req->host.p == NULL) {
		req->error = "missing Host";
		return WSG_HTTP_BAD_REQUEST;
	}
	if (req->method.len != 3 || memcmp(req->method.p, "GET", 3) != 0) {
		req->error = "method not GET";
		return WSG_HTTP_BAD_METHOD;
	}
	if (seen & SEEN_LENGTH) {
		req->error = "Content-Length in upgrade request";
		return WSG_HTTP_BAD_REQUEST;
	}
	if (seen & SEEN_CHUNKED) {
		req->error = "Transfer-Encoding in upgrade request";
		return WSG_HTTP_BAD_REQUEST;
	}
	h = http_header_find(req->headers, req->nheaders, "Upgrade");
	if (h == NULL) {
		req->error = "missing Upgrade";
		return WSG_HTTP_BAD_REQUEST;
	}
	if (!http_str_eq(h->value, "websocket")) {
		req->error = "Upgrade not websocket";
		return WSG_HTTP_BAD_REQUEST;
	}
	for (i = 0; i < req->nheaders && !found; i++)
		if (http_str_eq(req->headers[i].name, "Connection") &&
		    http_list_has(req->headers[i].value, upgrade))
			found = 1;
	if (!found) {
		req->error = "Connection lacks upgrade";
		return WSG_HTTP_BAD_REQUEST;
	}
	h = http_header_find(req->headers, req->nheaders,
	    "Sec-WebSocket-Version");
	if (h == NULL) {
		req->error = "missing Sec-WebSocket-Version";
		return WSG_HTTP_BAD_REQUEST;
	}
	if (h->value.len != 2 || memcmp(h->value.p, "13", 2) != 0) {
		req->error = "unsupported Sec-WebSocket-Version";
		return WSG_HTTP_BAD_VERSION;
	}
	if (req->key.p == NULL) {
		req->error = "missing Sec-WebSocket-Key";
		return WSG_HTTP_BAD_REQUEST;
	}
	if (!http_key_is_valid(req->key)) {
		req->error = "bad Sec-WebSocket-Key";
		return WSG_HTTP_BAD_REQUEST;
	}
	return WSG_HTTP_OK;
}

/*
 * The head is scanned only within its first max_head bytes, so a syntax
 * error there is reported (BAD_REQUEST) before the size (TOO_LARGE), and
 * a growing buffer always gives the same answer once it is not INCOMPLETE:
 * errors come out in byte order, so the first bad byte decides.
 * More than WSG_MAX_HEADERS fields is TOO_LARGE (431): the head is too big
 * for us rather than malformed.
 */
enum wsg_http_result
http_request_parse(const char *buf, size_t len, size_t max_head,
    struct wsg_http_request *req)
{
	struct wsg_http_header	 h;
	enum wsg_http_result	 r;
	const char		*bare;
	size_t			 limit, start = 0, pos, end;
	int			 complete, seen = 0;

	memset(req, 0, sizeof(*req));
	limit = len < max_head ? len : max_head;
	/*
	 * Empty lines before the request line are skipped (RFC 9112 2.2);
	 * they count towards max_head and head_len.
	 */
	while (start + 1 < limit && buf[start] == '\r' &&
	    buf[start + 1] == '\n')
		start += 2;
	pos = start;
	for (;;) {
		complete = http_line_end(buf, limit, pos, &end, &bare) ==
		    WSG_HTTP_OK;
		if (pos == start) {
			r = http_request_line(buf + start, end - start,
			    complete, req);
			if (r != WSG_HTTP_OK)
				return r;
		} else if (end > pos) {
			if (req->nheaders == WSG_MAX_HEADERS) {
				req->error = "too many headers";
				return WSG_HTTP_TOO_LARGE;
			}
			r = http_field_parse(buf + pos, end - pos, complete, &h,
			    &req->error);
			if (r != WSG_HTTP_OK)
				return r;
			if (complete) {
				req->headers[req->nheaders++] = h;
				r = http_request_field(req, &h, &seen);
				if (r != WSG_HTTP_OK)
					return r;
			}
		} else if (complete) {
			req->head_len = end + 2;
			return http_request_semantics(req, seen);
		}
		if (bare != NULL) {
			req->error = bare;
			return WSG_HTTP_BAD_REQUEST;
		}
		if (!complete)
			break;
		pos = end + 2;
	}
	if (len > max_head) {
		req->error = "request head too large";
		return WSG_HTTP_TOO_LARGE;
	}
	return WSG_HTTP_INCOMPLETE;
}

/*
 * Check the status line, or the prefix of one when !complete:
 * "HTTP/1.1" SP 3DIGIT [SP reason], or "HTTP/1.0" (a refusal from a
 * server that answers in 1.0 is still passed through; a 101 in 1.0 is
 * refused by http_response_check_upgrade()).  The SP and reason may be
 * left out (a lenient reading of RFC 9112 4: the reason is never used),
 * the status must be 100-599.  Fills resp when complete.
 */
static enum wsg_http_result
http_status_line(const char *p, size_t n, int complete,
    struct wsg_http_response *resp)
{
	size_t	i;

	if (n > 0 && memcmp(p, "HTTP/1.1 ", n < 9 ? n : 9) != 0 &&
	    memcmp(p, "HTTP/1.0 ", n < 9 ? n : 9) != 0) {
		resp->error = "bad status line";
		return WSG_HTTP_BAD_REQUEST;
	}
	resp->http10 = n >= 8 && p[7] == '0';
	for (i = 9; i < n && i < 12; i++) {
		if (p[i] < '0' || p[i] > '9' || (i == 9 && (p[i] < '1' ||
		    p[i] > '5'))) {
			resp->error = "bad status code";
			return WSG_HTTP_BAD_REQUEST;
		}
	}
	if (n < 12) {
		if (!complete)
			return WSG_HTTP_OK;
		resp->error = "bad status line";
		return WSG_HTTP_BAD_REQUEST;
	}
	if (n > 12 && p[12] != ' ') {
		resp->error = "bad status code";
		return WSG_HTTP_BAD_REQUEST;
	}
	for (i = 13; i < n; i++) {
		if (!http_is_value_char(p[i])) {
			resp->error = "bad character in reason";
			return WSG_HTTP_BAD_REQUEST;
		}
	}
	if (!complete)
		return WSG_HTTP_OK;
	resp->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	resp->reason.p = p + (n > 12 ? 13 : 12);
	resp->reason.len = n > 12 ? n - 13 : 0;
	return WSG_HTTP_OK;
}

/*
 * Apply the per-field response rules: one Content-Length value (repeats
 * must agree), digits only, at most 2^53; not alongside Transfer-Encoding.
 */
static enum wsg_http_result
http_response_field(struct wsg_http_response *resp,
    const struct wsg_http_header *h, int *seen_te)
{
	unsigned long long	v = 0;
	size_t			i;

	if (http_str_eq(h->name, "Transfer-Encoding")) {
		*seen_te = 1;
		if (resp->content_length != -1)
			goto both;
		return WSG_HTTP_OK;
	}
	if (!http_str_eq(h->name, "Content-Length"))
		return WSG_HTTP_OK;
	if (*seen_te)
		goto both;
	if (h->value.len == 0) {
		resp->error = "empty Content-Length";
		return WSG_HTTP_BAD_REQUEST;
	}
	for (i = 0; i < h->value.len; i++) {
		if (h->value.p[i] < '0' || h->value.p[i] > '9') {
			resp->error = "bad Content-Length";
			return WSG_HTTP_BAD_REQUEST;
		}
		v = v * 10 + (h->value.p[i] - '0');
		if (v > HTTP_MAX_CONTENT_LENGTH) {
			resp->error = "Content-Length too large";
			return WSG_HTTP_BAD_REQUEST;
		}
	}
	if (resp->content_length != -1 &&
	    (unsigned long long)resp->content_length != v) {
		resp->error = "conflicting Content-Length";
		return WSG_HTTP_BAD_REQUEST;
	}
	resp->content_length = (long long)v;
	return WSG_HTTP_OK;

both:
	resp->error = "both Content-Length and Transfer-Encoding";
	return WSG_HTTP_BAD_REQUEST;
}

/* Parse the upstream's response head; same scanning rules as requests. */
enum wsg_http_result
http_response_parse(const char *buf, size_t len, size_t max_head,
    struct wsg_http_response *resp)
{
	struct wsg_http_header	 h;
	enum wsg_http_result	 r;
	const char		*bare;
	size_t			 limit, pos = 0, end;
	int			 complete, seen_te = 0;

	memset(resp, 0, sizeof(*resp));
	resp->content_length = -1;
	limit = len < max_head ? len : max_head;
	for (;;) {
		complete = http_line_end(buf, limit, pos, &end, &bare) ==
		    WSG_HTTP_OK;
		if (pos == 0) {
			r = http_status_line(buf, end, complete, resp);
			if (r != WSG_HTTP_OK)
				return r;
		} else if (end > pos) {
			if (resp->nheaders == WSG_MAX_HEADERS) {
				resp->error = "too many headers";
				return WSG_HTTP_TOO_LARGE;
			}
			r = http_field_parse(buf + pos, end - pos, complete, &h,
			    &resp->error);
			if (r != WSG_HTTP_OK)
				return r;
			if (complete) {
				resp->headers[resp->nheaders++] = h;
				r = http_response_field(resp, &h, &seen_te);
				if (r != WSG_HTTP_OK)
					return r;
			}
		} else if (complete) {
			resp->head_len = end + 2;
			return WSG_HTTP_OK;
		}
		if (bare != NULL) {
			resp->error = bare;
			return WSG_HTTP_BAD_REQUEST;
		}
		if (!complete)
			break;
		pos = end + 2;
	}
	if (len > max_head) {
		resp->error = "response head too large";
		return WSG_HTTP_TOO_LARGE;
	}
	return WSG_HTTP_INCOMPLETE;
}

/* Count the fields of this name and return the first (NULL if none). */
static const struct wsg_http_header *
http_header_count(const struct wsg_http_header *hdrs, size_t n,
    const char *name, size_t *count)
{
	const struct wsg_http_header	*first = NULL;
	size_t				 i;

	*count = 0;
	for (i = 0; i < n; i++) {
		if (http_str_eq(hdrs[i].name, name)) {
			if (first == NULL)
				first = &hdrs[i];
			(*count)++;
		}
	}
	return first;
}

/*
 * Validate the upstream's 101 against what we sent.  The chosen protocol
 * is returned as the offered element, so it lives as long as the offer.
 */
int
http_response_check_upgrade(const struct wsg_http_response *resp,
    const char *key, const struct wsg_str *offered, size_t noffered,
    struct wsg_str *proto, const char **why)
{
	const struct wsg_http_header	*h;
	struct wsg_str			 upgrade = http_cstr("upgrade");
	const char			*dummy;
	char				 accept[29];
	size_t				 i, n;
	int				 found = 0;

	if (why == NULL)
		why = &dummy;
	if (proto != NULL) {
		proto->p = NULL;
		proto->len = 0;
	}
	if (resp->status != 101) {
		*why = "status not 101";
		return -1;
	}
	if (resp->http10) {
		*why = "101 in HTTP/1.0";
		return -1;
	}
	h = http_header_count(resp->headers, resp->nheaders, "Upgrade", &n);
	if (n != 1) {
		*why = n == 0 ? "missing Upgrade" : "duplicate Upgrade";
		return -1;
	}
	if (!http_str_eq(h->value, "websocket")) {
		*why = "Upgrade not websocket";
		return -1;
	}
	for (i = 0; i < resp->nheaders && !found; i++)
		if (http_str_eq(resp->headers[i].name, "Connection") &&
		    http_list_has(resp->headers[i].value, upgrade))
			found = 1;
	if (!found) {
		*why = "Connection lacks upgrade";
		return -1;
	}
	h = http_header_count(resp->headers, resp->nheaders,
	    "Sec-WebSocket-Accept", &n);
	if (n != 1) {
		*why = n == 0 ? "missing Sec-WebSocket-Accept" :
		    "duplicate Sec-WebSocket-Accept";
		return -1;
	}
	if (http_accept_key(key, strlen(key), accept) == -1) {
		*why = "cannot compute Sec-WebSocket-Accept";
		return -2;
	}
	if (h->value.len != strlen(accept) ||
	    memcmp(h->value.p, accept, h->value.len) != 0) {
		*why = "wrong Sec-WebSocket-Accept";
		return -1;
	}
	if (http_header_find(resp->headers, resp->nheaders,
	    "Sec-WebSocket-Extensions") != NULL) {
		*why = "unexpected Sec-WebSocket-Extensions";
		return -1;
	}
	h = http_header_count(resp->headers, resp->nheaders,
	    "Sec-WebSocket-Protocol", &n);
	if (n > 1) {
		*why = "duplicate Sec-WebSocket-Protocol";
		return -1;
	}
	if (n == 0)
		return 0;
	for (i = 0; i < noffered; i++) {
		if (offered[i].len == h->value.len && h->value.len > 0 &&
		    memcmp(offered[i].p, h->value.p, h->value.len) == 0) {
			if (proto != NULL)
				*proto = offered[i];
			return 0;
		}
	}
	*why = "subprotocol not offered";
	return -1;
}

/*
 * Sec-WebSocket-Accept for a key.  A key longer than HTTP_ACCEPT_KEY_MAX
 * (never a valid one) or a digest failure gives -1 and "", which matches
 * nothing.
 */
int
http_accept_key(const char *key, size_t len, char out[29])
{
	unsigned char	buf[HTTP_ACCEPT_KEY_MAX + HTTP_WS_GUID_LEN];
	unsigned char	md[EVP_MAX_MD_SIZE];
	unsigned int	mdlen = 0;

	out[0] = '\0';
	if (len > HTTP_ACCEPT_KEY_MAX)
		return (-1);
	memcpy(buf, key, len);
	memcpy(buf + len, HTTP_WS_GUID, HTTP_WS_GUID_LEN);
	if (EVP_Digest(buf, len + HTTP_WS_GUID_LEN, md, &mdlen, EVP_sha1(),
	    NULL) != 1 || mdlen != 20)
		return (-1);
	http_base64(md, 20, out);
	return (0);
}

/* A fresh random Sec-WebSocket-Key for the upstream request. */
int
http_new_key(char out[25])
{
	unsigned char	raw[16];

	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		out[0] = '\0';
		return -1;
	}
	http_base64(raw, sizeof(raw), out);
	return 0;
}

/* Case-insensitive equality of a parsed string and a literal. */
int
http_str_eq(struct wsg_str s, const char *lit)
{
	size_t	n = strlen(lit);

	return s.len == n && (n == 0 || http_mem_ieq(s.p, lit, n));
}

/* First header of this name, case-insensitive. */
const struct wsg_http_header *
http_header_find(const struct wsg_http_header *hdrs, size_t n,
    const char *name)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (http_str_eq(hdrs[i].name, name))
			return &hdrs[i];
	return NULL;
}

/* Does a comma-separated list value contain this token? */
int
http_list_has_token(struct wsg_str list, const char *token)
{
	return http_list_has(list, http_cstr(token));
}

/* Is name the field lit, or one a CGI-style server takes for it? */
int
http_name_alias(struct wsg_str name, const char *lit)
{
	size_t	n = strlen(lit);

	return name.len == n && http_name_ieq(name.p, lit, n);
}

/* Does any Connection field of a head name this field (hop-by-hop)? */
static int
http_connection_names(const struct wsg_http_header *hdrs, size_t n,
    struct wsg_str name)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (http_str_eq(hdrs[i].name, "Connection") &&
		    http_list_has(hdrs[i].value, name))
			return 1;
	return 0;
}

/*
 * Should the client's field be kept from the upstream request?  Origin is
 * always kept, even if Connection names it: the gateway vetted it and the
 * backend relies on it.  The names and prefixes the gateway owns are
 * matched as http_name_alias() does, so that "X_Forwarded_For" cannot
 * stand in for the X-Forwarded-For the gateway writes.
 */
int
http_header_is_dropped(const struct wsg_http_request *req, struct wsg_str name)
{
	size_t	i, n;

	if (http_str_eq(name, "Origin"))
		return 0;
	for (i = 0; i < sizeof(http_dropped_names) /
	    sizeof(http_dropped_names[0]); i++)
		if (http_name_alias(name, http_dropped_names[i]))
			return 1;
	for (i = 0; i < sizeof(http_dropped_prefixes) /
	    sizeof(http_dropped_prefixes[0]); i++) {
		n = strlen(http_dropped_prefixes[i]);
		if (name.len >= n &&
		    http_name_ieq(name.p, http_dropped_prefixes[i], n))
			return 1;
	}
	return http_connection_names(req->headers, req->nheaders, name);
}

/*
 * Should this field of the upstream's valid 101 go on to the client?
 * Not the hop-by-hop fields nor those any Connection field names, not
 * Content-Length or Server, and no Sec-WebSocket-* field: the gateway
 * writes its own.  Names are matched as http_name_alias() does.  The parser already
 * refused CR, LF, NUL and obs-fold; a value holding one is kept back all
 * the same, as the client's head must never be split.
 */
int
http_response_field_passed(const struct wsg_http_response *resp,
    const struct wsg_http_header *h)
{
	static const char	 prefix[] = "Sec-WebSocket-";
	size_t			 i;

	if (h->name.len == 0)
		return 0;
	for (i = 0; i < h->name.len; i++)
		if (!http_is_tchar(h->name.p[i]))
			return 0;
	for (i = 0; i < h->value.len; i++)
		if (!http_is_value_char(h->value.p[i]))
			return 0;
	for (i = 0; i < sizeof(http_101_dropped_names) /
	    sizeof(http_101_dropped_names[0]); i++)
		if (http_name_alias(h->name, http_101_dropped_names[i]))
			return 0;
	if (h->name.len >= sizeof(prefix) - 1 &&
	    http_name_ieq(h->name.p, prefix, sizeof(prefix) - 1))
		return 0;
	return !http_connection_names(resp->headers, resp->nheaders, h->name);
}

/* HTTP status sent for a parse result; 0 when it is not a refusal. */
int
http_result_status(enum wsg_http_result r)
{
	switch (r) {
	case WSG_HTTP_BAD_REQUEST:
		return 400;
	case WSG_HTTP_BAD_METHOD:
		return 405;
	case WSG_HTTP_BAD_VERSION:
		return 426;
	case WSG_HTTP_TOO_LARGE:
		return 431;
	default:
		return 0;
	}
}

/* Reason code (SPEC.md) for a parse result. */
const char *
http_result_reason(enum wsg_http_result r)
{
	switch (r) {
	case WSG_HTTP_OK:
		return "ok";
	case WSG_HTTP_INCOMPLETE:
		return "incomplete";
	case WSG_HTTP_BAD_REQUEST:
		return "bad_request";
	case WSG_HTTP_BAD_METHOD:
		return "bad_method";
	case WSG_HTTP_BAD_VERSION:
		return "bad_version";
	case WSG_HTTP_TOO_LARGE:
		return "headers_too_large";
	}
	return "bad_request";
}

/* Standard reason phrase of a status code, "Unknown" if we have none. */
const char *
http_status_text(int code)
{
	size_t	i;

	for (i = 0; i < sizeof(http_status_texts) /
	    sizeof(http_status_texts[0]); i++)
		if (http_status_texts[i].code == code)
			return http_status_texts[i].text;
	return "Unknown";
}
