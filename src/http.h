/*
 * HTTP/1.1 upgrade handshake parsing (RFC 9112, RFC 6455 4.2.1): the
 * client's request head, the upstream's response head, and the helpers to
 * build the upstream request.  Pure: bytes in, results out.  Parsed
 * strings point into the caller's buffer and are not NUL-terminated.
 */
#ifndef WSG_HTTP_H
#define WSG_HTTP_H

#include <stddef.h>

#include "wsgate.h"

struct wsg_str {
	const char	*p;
	size_t		 len;
};

struct wsg_http_header {
	struct wsg_str	 name;
	struct wsg_str	 value;	/* leading and trailing OWS removed */
};

/*
 * Outcomes.  Each refusal maps to one HTTP status and reason code of
 * SPEC.md's first table: http_result_status(), http_result_reason().
 */
enum wsg_http_result {
	WSG_HTTP_OK = 0,
	WSG_HTTP_INCOMPLETE,		/* no end of head yet, nothing wrong */
	WSG_HTTP_BAD_REQUEST,		/* 400 bad_request */
	WSG_HTTP_BAD_METHOD,		/* 405 bad_method */
	WSG_HTTP_BAD_VERSION,		/* 426 bad_version */
	WSG_HTTP_TOO_LARGE		/* 431 headers_too_large */
};

struct wsg_http_request {
	struct wsg_str		 method;
	struct wsg_str		 target;	/* as sent */
	struct wsg_str		 path;		/* target up to '?' (origin-form) */
	struct wsg_str		 query;		/* after '?', len 0 if none */
	int			 has_query;
	struct wsg_http_header	 headers[WSG_MAX_HEADERS];
	size_t			 nheaders;
	/* Located once by the parser; p == NULL when absent. */
	struct wsg_str		 host;
	struct wsg_str		 key;		/* Sec-WebSocket-Key */
	struct wsg_str		 origin;
	struct wsg_str		 protocols[WSG_MAX_SUBPROTOCOLS]; /* offered */
	size_t			 nprotocols;
	size_t			 head_len;	/* bytes up to and incl. CRLFCRLF */
	const char		*error;		/* static detail for the log */
};

/*
 * Parse the client's upgrade request in buf[0..len).  max_head bounds the
 * head (request line, fields, final CRLF): past it without an end, TOO_LARGE.
 * Syntax is strict: CRLF line ends only (bare CR or LF, NUL and obs-fold
 * are BAD_REQUEST; empty lines before the request line are skipped, and
 * count in head_len), no whitespace before a colon, tchar field names,
 * HTTP/1.1 only, a target without '#' (origin-form for a GET, any
 * form for another method, which gets BAD_METHOD), exactly one Host, at
 * most one Upgrade, Sec-WebSocket-Key and Sec-WebSocket-Version.  Then the
 * upgrade semantics, in this order: method GET (BAD_METHOD), no
 * Content-Length or Transfer-Encoding (BAD_REQUEST), Upgrade exactly
 * "websocket" and Connection listing "upgrade" (BAD_REQUEST),
 * Sec-WebSocket-Version 13 (BAD_VERSION), a key that is base64 of 16
 * bytes (BAD_REQUEST).
 * Offered subprotocols (comma lists over all Sec-WebSocket-Protocol fields,
 * each a token) go to protocols[]; more than WSG_MAX_SUBPROTOCOLS or a bad
 * token is BAD_REQUEST.  Returns INCOMPLETE while the head is unfinished
 * and nothing seen so far is wrong.
 */
enum wsg_http_result	http_request_parse(const char *, size_t, size_t,
			    struct wsg_http_request *);

struct wsg_http_response {
	int			 status;
	struct wsg_str		 reason;
	struct wsg_http_header	 headers[WSG_MAX_HEADERS];
	size_t			 nheaders;
	size_t			 head_len;
	long long		 content_length;	/* -1 when absent */
	int			 http10;	/* "HTTP/1.0", not 1.1 */
	const char		*error;
};

/*
 * Parse the upstream's response head (same strictness: CRLF, no obs-fold,
 * HTTP/1.1 or 1.0, a 3-digit status).  OK, INCOMPLETE, TOO_LARGE past max_head, or
 * BAD_REQUEST for anything malformed.
 */
enum wsg_http_result	http_response_parse(const char *, size_t, size_t,
			    struct wsg_http_response *);

/*
 * Is this a valid 101 for our request: status 101, exactly one Upgrade
 * "websocket", Connection listing "upgrade", Sec-WebSocket-Accept equal to
 * the accept value of key, no Sec-WebSocket-Extensions, and at most one
 * Sec-WebSocket-Protocol naming one of the offered protocols (none if none
 * offered).  On success *proto is the chosen one (p == NULL if none).
 * Returns 0, or -1 with *why set to a static message; -2 (with *why) when
 * the expected Sec-WebSocket-Accept could not be computed (a local
 * failure, not the upstream's).
 */
int	http_response_check_upgrade(const struct wsg_http_response *,
	    const char *, const struct wsg_str *, size_t, struct wsg_str *,
	    const char **);

/*
 * The Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)), NUL-ended.
 * Returns 0, or -1 (out is "") for an over-long key or a digest failure
 * (OpenSSL could not allocate).
 */
int	http_accept_key(const char *, size_t, char[29]);

/* Make a fresh random Sec-WebSocket-Key (24 chars + NUL); -1 on failure. */
int	http_new_key(char[25]);

/* Case-insensitive equality of a wsg_str and a C string. */
int	http_str_eq(struct wsg_str, const char *);

/* Find the first header with this name (case-insensitive); NULL if none. */
const struct wsg_http_header *http_header_find(const struct wsg_http_header *,
	    size_t, const char *);

/* Does a comma-separated list value contain this token (case-insensitive)? */
int	http_list_has_token(struct wsg_str, const char *);

/*
 * Should a client header be left out of the upstream request?  True for
 * hop-by-hop fields (Connection, Keep-Alive, Proxy-*, TE, Trailer,
 * Transfer-Encoding, Upgrade), for fields the Connection value names, for
 * the fields the gateway sets itself (Host, Sec-WebSocket-*, X-Forwarded-*,
 * Forwarded, Content-Length), looking at every Connection field of req.
 */
int	http_header_is_dropped(const struct wsg_http_request *, struct wsg_str);
int	http_name_alias(struct wsg_str, const char *);

/*
 * Is this request path one a backend may read otherwise than the route
 * match does (dot segments, '//', ';', '\\', encoded '/' or unreserved
 * characters, a '%' not followed by two hex digits)?  Such requests are
 * refused with 400.
 */
int	http_path_ambiguous(const char *, size_t);

/*
 * Does this field of the upstream's valid 101 go on to the client's 101?
 * Not the hop-by-hop fields (Connection, Keep-Alive, Proxy-Connection,
 * TE, Trailer, Transfer-Encoding, Upgrade, Proxy-Authenticate,
 * Proxy-Authentication-Info), nor fields named in any Connection field,
 * nor Content-Length, Server or any Sec-WebSocket-* field, nor a field whose
 * name is not a token or whose value holds CR, LF, NUL or another
 * control character.
 */
int	http_response_field_passed(const struct wsg_http_response *,
	    const struct wsg_http_header *);

/* Status code, status text and reason code of a refusal. */
int		 http_result_status(enum wsg_http_result);
const char	*http_result_reason(enum wsg_http_result);
const char	*http_status_text(int);

#endif /* WSG_HTTP_H */
