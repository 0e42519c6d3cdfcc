/*
 * Unit tests for the HTTP upgrade parser: valid and hostile request heads,
 * upstream responses, the accept key and the hop-by-hop decisions.
 */
#include "autoconf.h"

#include <stdio.h>
#include <string.h>

#include "http.h"
#include "unit.h"

#define MAX_HEAD	8192

#define REQ_LINE	"GET /chat?room=1&x=y HTTP/1.1\r\n"
#define REQ_HOST	"Host: example.com:8443\r\n"
#define REQ_UPGRADE	"Upgrade: websocket\r\n"
#define REQ_CONN	"Connection: Upgrade\r\n"
#define REQ_KEY		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define REQ_VERSION	"Sec-WebSocket-Version: 13\r\n"
#define REQ_ORIGIN	"Origin: https://app.example.com\r\n"
#define REQ_WS		REQ_UPGRADE REQ_CONN REQ_KEY REQ_VERSION

#define GOOD_REQ	REQ_LINE REQ_HOST REQ_WS REQ_ORIGIN		\
			"Sec-WebSocket-Protocol: chat.v2, superchat\r\n" \
			"Sec-WebSocket-Protocol: ,, v3 ,\r\n"		\
			"User-Agent: test/1.0\r\n"			\
			"\r\n"

#define ACCEPT		"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#define SENT_KEY	"dGhlIHNhbXBsZSBub25jZQ=="
#define RESP_101	"HTTP/1.1 101 Switching Protocols\r\n"	\
			"Upgrade: websocket\r\n"			\
			"Connection: Upgrade\r\n"			\
			"Sec-WebSocket-Accept: " ACCEPT "\r\n"

static struct wsg_http_request	req;
static struct wsg_http_response	resp;

/* Parse a NUL-terminated request with the default head limit. */
static enum wsg_http_result
parse(const char *s)
{
	return http_request_parse(s, strlen(s), MAX_HEAD, &req);
}

/* Parse a NUL-terminated response with the default head limit. */
static enum wsg_http_result
parse_resp(const char *s)
{
	return http_response_parse(s, strlen(s), MAX_HEAD, &resp);
}

/* Is a wsg_str exactly this C string (case-sensitive)? */
static int
str_is(struct wsg_str s, const char *lit)
{
	return s.p != NULL && s.len == strlen(lit) &&
	    memcmp(s.p, lit, s.len) == 0;
}

/* Refused with this result and some static detail. */
#define REFUSED(s, r) do {						\
	CHECK_INT(parse(s), (r));					\
	CHECK(req.error != NULL);					\
} while (0)

/* A good request parses completely and locates everything. */
static void
test_good(void)
{
	const char	*s = GOOD_REQ "trailing frame bytes";

	CHECK_INT(parse(s), WSG_HTTP_OK);
	CHECK_INT(req.head_len, strlen(GOOD_REQ));
	CHECK(req.error == NULL);
	CHECK(str_is(req.method, "GET"));
	CHECK(str_is(req.target, "/chat?room=1&x=y"));
	CHECK(str_is(req.path, "/chat"));
	CHECK(str_is(req.query, "room=1&x=y"));
	CHECK_INT(req.has_query, 1);
	CHECK(str_is(req.host, "example.com:8443"));
	CHECK(str_is(req.key, SENT_KEY));
	CHECK(str_is(req.origin, "https://app.example.com"));
	CHECK_INT(req.nheaders, 9);
	CHECK(str_is(req.headers[0].name, "Host"));
	CHECK(str_is(req.headers[8].name, "User-Agent"));
	CHECK(str_is(req.headers[8].value, "test/1.0"));
	CHECK_INT(req.nprotocols, 3);
	CHECK(str_is(req.protocols[0], "chat.v2"));
	CHECK(str_is(req.protocols[1], "superchat"));
	CHECK(str_is(req.protocols[2], "v3"));
	CHECK_INT(http_result_status(WSG_HTTP_OK), 0);
	CHECK_STR(http_result_reason(WSG_HTTP_OK), "ok");

	/* Empty lines before the request line are skipped, and counted. */
	CHECK_INT(parse("\r\n\r\n" GOOD_REQ), WSG_HTTP_OK);
	CHECK_INT(req.head_len, strlen(GOOD_REQ) + 4);
	CHECK(str_is(req.method, "GET"));
	CHECK(str_is(req.path, "/chat"));
	CHECK_INT(req.nheaders, 9);
	CHECK_INT(http_request_parse("\r\n" GOOD_REQ, strlen(GOOD_REQ) + 2,
	    strlen(GOOD_REQ) + 1, &req), WSG_HTTP_TOO_LARGE);
}

/* Query splitting, OWS stripping, absent fields, odd but valid forms. */
static void
test_shapes(void)
{
	CHECK_INT(parse("GET / HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n"),
	    WSG_HTTP_OK);
	CHECK(str_is(req.path, "/"));
	CHECK_INT(req.has_query, 0);
	CHECK_INT(req.query.len, 0);
	CHECK(req.origin.p == NULL);
	CHECK_INT(req.nprotocols, 0);

	CHECK_INT(parse("GET /a? HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n"),
	    WSG_HTTP_OK);
	CHECK(str_is(req.path, "/a"));
	CHECK_INT(req.has_query, 1);
	CHECK_INT(req.query.len, 0);

	CHECK_INT(parse("GET /a?b?c=/d HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n"),
	    WSG_HTTP_OK);
	CHECK(str_is(req.path, "/a"));
	CHECK(str_is(req.query, "b?c=/d"));

	/* OWS around values, case-insensitive names and tokens. */
	CHECK_INT(parse("GET / HTTP/1.1\r\nhOsT:\t x \t\r\n"
	    "upgrade:   WebSocket  \r\nCONNECTION: keep-alive ,\tUPGRADE\r\n"
	    "sec-websocket-key:" SENT_KEY "\r\n"
	    "Sec-Websocket-Version: 13 \r\n\r\n"), WSG_HTTP_OK);
	CHECK(str_is(req.host, "x"));
	CHECK(str_is(req.key, SENT_KEY));

	/* Connection listing upgrade in a second Connection field. */
	CHECK_INT(parse("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE
	    "Connection: keep-alive\r\nConnection: Upgrade\r\n"
	    REQ_KEY REQ_VERSION "\r\n"), WSG_HTTP_OK);

	/* Empty values are fine for ordinary fields. */
	CHECK_INT(parse("GET / HTTP/1.1\r\n" REQ_HOST REQ_WS "X-Empty:\r\n"
	    "X-Obs: caf\xc3\xa9\r\n\r\n"), WSG_HTTP_OK);
	CHECK_INT(req.headers[req.nheaders - 2].value.len, 0);
	CHECK(req.headers[req.nheaders - 2].value.p != NULL);

	/* An empty protocol field offers nothing. */
	CHECK_INT(parse("GET / HTTP/1.1\r\n" REQ_HOST REQ_WS
	    "Sec-WebSocket-Protocol:\r\n\r\n"), WSG_HTTP_OK);
	CHECK_INT(req.nprotocols, 0);

	/* Bracketed IPv6 Host. */
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: [::1]:80\r\n" REQ_WS "\r\n"),
	    WSG_HTTP_OK);
	CHECK(str_is(req.host, "[::1]:80"));
}

/*
 * Host is uri-host [":" port] (RFC 7230 5.4, RFC 3986 3.2.2): an IPv6
 * literal in brackets, or a name or IPv4 address without them.
 */
static void
test_host_forms(void)
{
	static const char *const good[] = {
		"[::1]:80", "[::1]", "[::1]:", "[2001:DB8::1]:8443",
		"[::ffff:192.0.2.1]:80", "[v1.fe:x]:80", "example.com:",
		"[VaF0.a-._~!$&'()*+,;=:]", "[v1.x]",
		"192.0.2.1:8080", "a", "xn--bcher-kva.example:443", "%41:1",
	};
	static const char *const bad[] = {
		"[::1", "::1", "::1:80", "[::1]x", "[::1]:8a", "[::1]::80",
		"[::g]:80", "[192.0.2.1]:80", "[]:80", "[fe80::1%25eth0]:80",
		"[v]:80", "[::1]]:80", "[[::1]]:80", "a]b", "a[b", "a:b",
		"a:80:80", ":80", "example.com:80]",
		/* IPvFuture: "v" 1*HEXDIG "." 1*(unreserved / sub-delims / ":") */
		"[v1.]:80", "[v.1]:80", "[vg.1]:80", "[v1g.x]", "[v1.a%41]",
		"[V.ab]",
	};
	char	buf[256];
	size_t	i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: %s\r\n"
		    REQ_WS "\r\n", good[i]);
		CHECK_INT(parse(buf), WSG_HTTP_OK);
		CHECK(str_is(req.host, good[i]));
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: %s\r\n"
		    REQ_WS "\r\n", bad[i]);
		REFUSED(buf, WSG_HTTP_BAD_REQUEST);
		CHECK_STR(req.error, "malformed Host");
	}
}

/* Syntax refusals: all BAD_REQUEST, whatever the method. */
static void
test_syntax(void)
{
	REFUSED("GET / HTTP/1.1\n", WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "bare LF in header");
	REFUSED("GET /\n", WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST "X: a\nb\r\n" REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_WS "\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST "X: a\rb\r\n" REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "bare CR in header");
	REFUSED("GET / HTTP/1.1\r\r\n", WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\r\n",
	    WSG_HTTP_BAD_REQUEST);
	CHECK_INT(http_request_parse("GET / HTTP/1.1\r\n" REQ_HOST
	    "X: a\0b\r\n" REQ_WS "\r\n", sizeof("GET / HTTP/1.1\r\n" REQ_HOST
	    "X: a\0b\r\n" REQ_WS "\r\n") - 1, MAX_HEAD, &req),
	    WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "NUL in header value");
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST "X: a\x01\r\n" REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST "X: a\x7f\r\n" REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST "X: a\r\n b\r\n" REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "obs-fold in header");
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST "X: a\r\n\tb\r\n" REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n Host: x\r\n" REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\nHost : x\r\n" REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "whitespace before colon");
	REFUSED("GET / HTTP/1.1\r\nHost\t: x\r\n" REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST ": x\r\n" REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST "X(y): x\r\n" REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST "NoColon\r\n" REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);

	/* Request line. */
	REFUSED("GET http://evil/ HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "target not in origin-form");
	REFUSED("GET evil.com:443 HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET * HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET /a#frag HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "fragment in target");
	REFUSED("GET /a\x80 HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET /a\tb HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.0\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "unsupported HTTP version");
	REFUSED("GET / HTTP/2.0\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / http/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.11\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	/* A version cut short is no version, nor is a missing one. */
	REFUSED("GET / HTTP/1.\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "unsupported HTTP version");
	REFUSED("GET / HTTP/1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / \r\n" REQ_HOST REQ_WS "\r\n", WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "unsupported HTTP version");
	REFUSED("GET / HTTP/1.1 \r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET  / HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET /  HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET\t/ HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED(" GET / HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	/* Empty lines before the request line are skipped, not spaces. */
	REFUSED("\r\n GET / HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET /\r\n" REQ_HOST REQ_WS "\r\n", WSG_HTTP_BAD_REQUEST);
	REFUSED("G(T / HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	/* Syntax before method: a malformed POST is a 400, not a 405. */
	REFUSED("POST / HTTP/1.0\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	/* A body is refused after the method: a POST with one is a 405. */
	REFUSED("POST / HTTP/1.1\r\n" REQ_HOST REQ_WS "Content-Length: 5\r\n"
	    "\r\nhello", WSG_HTTP_BAD_METHOD);
	CHECK_STR(req.error, "method not GET");
	REFUSED("PUT / HTTP/1.1\r\n" REQ_HOST REQ_WS
	    "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	    WSG_HTTP_BAD_METHOD);
	REFUSED("POST / HTTP/1.1\r\n" REQ_WS "Content-Length: 5\r\n"
	    "\r\nhello", WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "missing Host");

	/* Framing fields are refused outright. */
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_WS "Content-Length: 0\r\n"
	    "\r\n", WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "Content-Length in upgrade request");
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_WS
	    "Transfer-Encoding: chunked\r\n\r\n", WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "Transfer-Encoding in upgrade request");
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_WS
	    "transfer-encoding: identity\r\n\r\n", WSG_HTTP_BAD_REQUEST);

	/* Host: exactly one, non-empty, sane. */
	REFUSED("GET / HTTP/1.1\r\n" REQ_WS "\r\n", WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "missing Host");
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "duplicate Host");
	REFUSED("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n" REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\nHost:  \r\n" REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\nHost: a b\r\n" REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\nHost: a/b\r\n" REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\nHost: u@evil\r\n" REQ_WS "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	test_host_forms();

	/* Duplicates of the single-valued upgrade fields. */
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_WS REQ_UPGRADE "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "duplicate Upgrade");
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_WS REQ_KEY "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "duplicate Sec-WebSocket-Key");
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_WS REQ_VERSION "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "duplicate Sec-WebSocket-Version");
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_WS REQ_ORIGIN REQ_ORIGIN
	    "\r\n", WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "duplicate Origin");
	/* Even a differing duplicate version is a 400, not a 426. */
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_WS
	    "Sec-WebSocket-Version: 8\r\n\r\n", WSG_HTTP_BAD_REQUEST);
}

/* Upgrade semantics, in their order. */
static void
test_semantics(void)
{
	REFUSED("POST / HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_METHOD);
	CHECK_STR(req.error, "method not GET");
	REFUSED("get / HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_METHOD);
	REFUSED("HEAD / HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_METHOD);
	/* The method is GET exactly, not a longer token starting so. */
	REFUSED("GETX / HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_METHOD);
	REFUSED("GET_ / HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_METHOD);
	/* Method comes before the upgrade checks. */
	REFUSED("PUT / HTTP/1.1\r\n" REQ_HOST "\r\n", WSG_HTTP_BAD_METHOD);
	/* Any target form: the method is what is wrong (RFC 9112 3.2). */
	REFUSED("OPTIONS * HTTP/1.1\r\n" REQ_HOST "\r\n", WSG_HTTP_BAD_METHOD);
	REFUSED("CONNECT evil.com:443 HTTP/1.1\r\n" REQ_HOST "\r\n",
	    WSG_HTTP_BAD_METHOD);
	REFUSED("POST http://evil/a/../b HTTP/1.1\r\n" REQ_HOST REQ_WS "\r\n",
	    WSG_HTTP_BAD_METHOD);
	REFUSED("OPTIONS  * HTTP/1.1\r\n" REQ_HOST "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("OPTIONS \x80 HTTP/1.1\r\n" REQ_HOST "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", WSG_HTTP_BAD_REQUEST);

	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_CONN REQ_KEY REQ_VERSION
	    "\r\n", WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "missing Upgrade");
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST "Upgrade: websocket, h2c\r\n"
	    REQ_CONN REQ_KEY REQ_VERSION "\r\n", WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "Upgrade not websocket");
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST "Upgrade: h2c\r\n"
	    REQ_CONN REQ_KEY REQ_VERSION "\r\n", WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST "Upgrade: websocket/13\r\n"
	    REQ_CONN REQ_KEY REQ_VERSION "\r\n", WSG_HTTP_BAD_REQUEST);

	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_KEY REQ_VERSION
	    "\r\n", WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "Connection lacks upgrade");
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE
	    "Connection: keep-alive\r\n" REQ_KEY REQ_VERSION "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE
	    "Connection: upgrades\r\n" REQ_KEY REQ_VERSION "\r\n",
	    WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE
	    "Connection: keep-alive, Upgrade\r\n" REQ_KEY REQ_VERSION "\r\n"),
	    WSG_HTTP_OK);

	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_CONN REQ_KEY
	    "Sec-WebSocket-Version: 8\r\n\r\n", WSG_HTTP_BAD_VERSION);
	CHECK_STR(req.error, "unsupported Sec-WebSocket-Version");
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_CONN REQ_KEY
	    "Sec-WebSocket-Version: 013\r\n\r\n", WSG_HTTP_BAD_VERSION);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_CONN REQ_KEY
	    "Sec-WebSocket-Version: 13, 8\r\n\r\n", WSG_HTTP_BAD_VERSION);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_CONN REQ_KEY
	    "\r\n", WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "missing Sec-WebSocket-Version");
	/* Version is checked before the key. */
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_CONN
	    "Sec-WebSocket-Version: 7\r\n\r\n", WSG_HTTP_BAD_VERSION);

	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_CONN
	    REQ_VERSION "\r\n", WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "missing Sec-WebSocket-Key");
	/* 15 bytes: "AAECAwQFBgcICQoLDA0O" is 20 chars, one '='. */
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_CONN REQ_VERSION
	    "Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0O\r\n\r\n",
	    WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "bad Sec-WebSocket-Key");
	/* 17 bytes: 24 chars but only one '='. */
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_CONN REQ_VERSION
	    "Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODxA=\r\n\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_CONN REQ_VERSION
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_CONN REQ_VERSION
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ===\r\n\r\n",
	    WSG_HTTP_BAD_REQUEST);
	/* 24 chars, the 23rd '=', but the last not the second '='. */
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_CONN REQ_VERSION
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=A\r\n\r\n",
	    WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "bad Sec-WebSocket-Key");
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_CONN REQ_VERSION
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\n\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_CONN REQ_VERSION
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j-Q==\r\n\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_CONN REQ_VERSION
	    "Sec-WebSocket-Key: dGhlIHNhbXBs ZSBub25jQ==\r\n\r\n",
	    WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_CONN REQ_VERSION
	    "Sec-WebSocket-Key:\r\n\r\n", WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_CONN
	    REQ_VERSION "Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODw==\r\n\r\n"),
	    WSG_HTTP_OK);
	CHECK_INT(parse("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_CONN
	    REQ_VERSION "Sec-WebSocket-Key: +/+/+/+/+/+/+/+/+/+/+w==\r\n\r\n"),
	    WSG_HTTP_OK);
}

/* Subprotocol offers across fields, their limits and bad tokens. */
static void
test_protocols(void)
{
	char	 buf[4096];
	size_t	 i;
	int	 n;

	CHECK_INT(parse("GET / HTTP/1.1\r\n" REQ_HOST REQ_WS
	    "Sec-WebSocket-Protocol: a\r\nX: y\r\n"
	    "Sec-WebSocket-Protocol: b,c\r\n\r\n"), WSG_HTTP_OK);
	CHECK_INT(req.nprotocols, 3);
	CHECK(str_is(req.protocols[0], "a"));
	CHECK(str_is(req.protocols[2], "c"));

	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_WS
	    "Sec-WebSocket-Protocol: a b\r\n\r\n", WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "bad subprotocol");
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_WS
	    "Sec-WebSocket-Protocol: chat;v=2\r\n\r\n", WSG_HTTP_BAD_REQUEST);
	REFUSED("GET / HTTP/1.1\r\n" REQ_HOST REQ_WS
	    "Sec-WebSocket-Protocol: \"chat\"\r\n\r\n", WSG_HTTP_BAD_REQUEST);

	/* A token of exactly WSG_MAX_TOKEN_LEN, then one longer. */
	n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n" REQ_HOST REQ_WS
	    "Sec-WebSocket-Protocol: ");
	memset(buf + n, 'p', WSG_MAX_TOKEN_LEN);
	snprintf(buf + n + WSG_MAX_TOKEN_LEN, sizeof(buf) - n -
	    WSG_MAX_TOKEN_LEN, "\r\n\r\n");
	CHECK_INT(parse(buf), WSG_HTTP_OK);
	CHECK_INT(req.protocols[0].len, WSG_MAX_TOKEN_LEN);
	memset(buf + n, 'p', WSG_MAX_TOKEN_LEN + 1);
	snprintf(buf + n + WSG_MAX_TOKEN_LEN + 1, sizeof(buf) - n -
	    WSG_MAX_TOKEN_LEN - 1, "\r\n\r\n");
	REFUSED(buf, WSG_HTTP_BAD_REQUEST);

	/* WSG_MAX_SUBPROTOCOLS split over two fields, then one more. */
	n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n" REQ_HOST REQ_WS
	    "Sec-WebSocket-Protocol: p0");
	for (i = 1; i < WSG_MAX_SUBPROTOCOLS; i++)
		n += snprintf(buf + n, sizeof(buf) - n, "%sp%zu",
		    i == WSG_MAX_SUBPROTOCOLS / 2 ?
		    "\r\nSec-WebSocket-Protocol: " : ", ", i);
	snprintf(buf + n, sizeof(buf) - n, "\r\n\r\n");
	CHECK_INT(parse(buf), WSG_HTTP_OK);
	CHECK_INT(req.nprotocols, WSG_MAX_SUBPROTOCOLS);
	CHECK(str_is(req.protocols[WSG_MAX_SUBPROTOCOLS - 1], "p15"));
	snprintf(buf + n, sizeof(buf) - n, ",extra\r\n\r\n");
	REFUSED(buf, WSG_HTTP_BAD_REQUEST);
	CHECK_STR(req.error, "too many subprotocols");
	/* Empty elements do not count. */
	snprintf(buf + n, sizeof(buf) - n, ",, ,\r\n\r\n");
	CHECK_INT(parse(buf), WSG_HTTP_OK);
}

/* Field count limit and head size limit, at and just over each. */
static void
test_limits(void)
{
	char	 buf[8192];
	size_t	 i, n, good_len = strlen(GOOD_REQ);
	size_t	 base;

	/* WSG_MAX_HEADERS fields exactly, then one more. */
	n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n" REQ_HOST REQ_WS);
	base = 5;
	for (i = base; i < WSG_MAX_HEADERS; i++)
		n += snprintf(buf + n, sizeof(buf) - n, "X-%zu: v\r\n", i);
	snprintf(buf + n, sizeof(buf) - n, "\r\n");
	CHECK_INT(parse(buf), WSG_HTTP_OK);
	CHECK_INT(req.nheaders, WSG_MAX_HEADERS);
	snprintf(buf + n, sizeof(buf) - n, "X-more: v\r\n\r\n");
	REFUSED(buf, WSG_HTTP_TOO_LARGE);
	CHECK_STR(req.error, "too many headers");
	/* Refused as soon as the extra field starts. */
	buf[n + 1] = '\0';
	REFUSED(buf, WSG_HTTP_TOO_LARGE);

	/* Head exactly max_head bytes, then one byte short of room. */
	CHECK_INT(http_request_parse(GOOD_REQ, good_len, good_len, &req),
	    WSG_HTTP_OK);
	CHECK_INT(http_request_parse(GOOD_REQ "x", good_len + 1, good_len,
	    &req), WSG_HTTP_OK);
	CHECK_INT(http_request_parse(GOOD_REQ, good_len, good_len - 1, &req),
	    WSG_HTTP_TOO_LARGE);
	CHECK_STR(req.error, "request head too large");
	CHECK_INT(http_request_parse(GOOD_REQ, good_len - 1, good_len - 1,
	    &req), WSG_HTTP_INCOMPLETE);
	CHECK_INT(http_request_parse(GOOD_REQ, good_len, 0, &req),
	    WSG_HTTP_TOO_LARGE);
	CHECK_INT(http_result_status(WSG_HTTP_TOO_LARGE), 431);
	CHECK_STR(http_result_reason(WSG_HTTP_TOO_LARGE),
	    "headers_too_large");

	/* A long unterminated head: INCOMPLETE up to max_head, then 431. */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "GET / HTTP/1.1\r\nX: ", 19);
	CHECK_INT(http_request_parse(buf, 1024, 1024, &req),
	    WSG_HTTP_INCOMPLETE);
	CHECK_INT(http_request_parse(buf, 1025, 1024, &req),
	    WSG_HTTP_TOO_LARGE);
	CHECK_INT(http_request_parse(buf, sizeof(buf), 1024, &req),
	    WSG_HTTP_TOO_LARGE);
	/* A syntax error inside the window is still a 400. */
	buf[100] = '\n';
	CHECK_INT(http_request_parse(buf, sizeof(buf), 1024, &req),
	    WSG_HTTP_BAD_REQUEST);
}

/* Every prefix of a good request is INCOMPLETE; errors show up at once. */
static void
test_incremental(void)
{
	size_t	 i, len = strlen(GOOD_REQ), bad = 0, badlen;
	const char	*hostile = "GET /\nxxxxxxxxxxxxxxxxxxxxxxxx";

	for (i = 0; i < len; i++)
		if (http_request_parse(GOOD_REQ, i, MAX_HEAD, &req) !=
		    WSG_HTTP_INCOMPLETE)
			bad++;
	CHECK_INT(bad, 0);
	CHECK_INT(http_request_parse(GOOD_REQ, len, MAX_HEAD, &req),
	    WSG_HTTP_OK);

	/* A bare LF within the first bytes is refused right away. */
	CHECK_INT(http_request_parse(hostile, 5, MAX_HEAD, &req),
	    WSG_HTTP_INCOMPLETE);
	CHECK_INT(http_request_parse(hostile, 6, MAX_HEAD, &req),
	    WSG_HTTP_BAD_REQUEST);
	CHECK_INT(http_request_parse("\n", 1, MAX_HEAD, &req),
	    WSG_HTTP_BAD_REQUEST);
	/* Empty lines alone: no request line yet. */
	CHECK_INT(http_request_parse("\r", 1, MAX_HEAD, &req),
	    WSG_HTTP_INCOMPLETE);
	CHECK_INT(http_request_parse("\r\n\r\n\r", 5, MAX_HEAD, &req),
	    WSG_HTTP_INCOMPLETE);
	CHECK_INT(http_request_parse("\r\n\r\n", 4, 4, &req),
	    WSG_HTTP_INCOMPLETE);
	CHECK_INT(http_request_parse("\r\n\r\n\r\n", 6, 4, &req),
	    WSG_HTTP_TOO_LARGE);
	CHECK_INT(http_request_parse("\r\n\n", 3, MAX_HEAD, &req),
	    WSG_HTTP_BAD_REQUEST);
	CHECK_INT(http_request_parse("\r\n\rX", 4, MAX_HEAD, &req),
	    WSG_HTTP_BAD_REQUEST);
	/* Bad bytes in an unfinished line are refused too. */
	CHECK_INT(http_request_parse("GET http:", 9, MAX_HEAD, &req),
	    WSG_HTTP_BAD_REQUEST);
	CHECK_INT(http_request_parse("GET / HTTP/1.0", 14, MAX_HEAD, &req),
	    WSG_HTTP_BAD_REQUEST);
	CHECK_INT(http_request_parse("GET / HTTP/1.", 13, MAX_HEAD, &req),
	    WSG_HTTP_INCOMPLETE);
	CHECK_INT(http_request_parse("GET / HTTP/1.1\r\nHost x", 22,
	    MAX_HEAD, &req), WSG_HTTP_BAD_REQUEST);
	CHECK_INT(http_request_parse("GET / HTTP/1.1\r\nX: \x01", 20,
	    MAX_HEAD, &req), WSG_HTTP_BAD_REQUEST);
	CHECK_INT(http_request_parse("GET / HTTP/1.1\r\n ", 17,
	    MAX_HEAD, &req), WSG_HTTP_BAD_REQUEST);
	CHECK_INT(http_request_parse("GET / HTTP/1.1\r", 15,
	    MAX_HEAD, &req), WSG_HTTP_INCOMPLETE);
	CHECK_INT(http_request_parse("GET / HTTP/1.1\rX", 16,
	    MAX_HEAD, &req), WSG_HTTP_BAD_REQUEST);

	/* Once refused, more bytes never change the answer. */
	badlen = strlen(hostile);
	for (i = 6; i <= badlen; i++)
		if (http_request_parse(hostile, i, MAX_HEAD, &req) !=
		    WSG_HTTP_BAD_REQUEST)
			bad++;
	CHECK_INT(bad, 0);
}

/* Response heads from the upstream. */
static void
test_response(void)
{
	const char	*s;

	s = RESP_101 "\r\n\x81\x02hi";
	CHECK_INT(parse_resp(s), WSG_HTTP_OK);
	CHECK_INT(resp.status, 101);
	CHECK(str_is(resp.reason, "Switching Protocols"));
	CHECK_INT(resp.head_len, strlen(RESP_101) + 2);
	CHECK_INT(resp.nheaders, 3);
	CHECK_INT(resp.content_length, -1);

	CHECK_INT(parse_resp("HTTP/1.1 101 \r\n\r\n"), WSG_HTTP_OK);
	CHECK_INT(resp.reason.len, 0);
	CHECK_INT(parse_resp("HTTP/1.1 101\r\n\r\n"), WSG_HTTP_OK);
	CHECK_INT(resp.reason.len, 0);
	CHECK_INT(parse_resp("HTTP/1.1 403 Forbidden\r\n"
	    "Content-Length: 12\r\n\r\nnot allowed\n"), WSG_HTTP_OK);
	CHECK_INT(resp.status, 403);
	CHECK_INT(resp.content_length, 12);
	CHECK_INT(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
	    "content-length: 0\r\n\r\n"), WSG_HTTP_OK);
	CHECK_INT(resp.content_length, 0);
	CHECK_INT(parse_resp("HTTP/1.1 200 OK\r\n"
	    "Content-Length: 9007199254740992\r\n\r\n"), WSG_HTTP_OK);
	CHECK_INT(resp.content_length, 9007199254740992LL);

	CHECK_INT(parse_resp("HTTP/1.1 200 OK\r\n"
	    "Content-Length: 9007199254740993\r\n\r\n"), WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTP/1.1 200 OK\r\n"
	    "Content-Length: 99999999999999999999999999\r\n\r\n"),
	    WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
	    "Content-Length: 2\r\n\r\n"), WSG_HTTP_BAD_REQUEST);
	CHECK_STR(resp.error, "conflicting Content-Length");
	CHECK_INT(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n"
	    "\r\n"), WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
	    WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n"),
	    WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n"),
	    WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n"), WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"
	    "\r\nContent-Length: 3\r\n\r\n"), WSG_HTTP_BAD_REQUEST);

	/* A refusal in HTTP/1.0 parses, to be passed through. */
	CHECK_INT(parse_resp("HTTP/1.0 403 Forbidden\r\nServer: x\r\n\r\n"),
	    WSG_HTTP_OK);
	CHECK_INT(resp.status, 403);
	CHECK_INT(resp.http10, 1);
	CHECK_INT(parse_resp("HTTP/1.1 403 Forbidden\r\n\r\n"), WSG_HTTP_OK);
	CHECK_INT(resp.http10, 0);
	CHECK_INT(parse_resp("HTTP/1.2 403 Forbidden\r\n\r\n"),
	    WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTP/2.0 403 Forbidden\r\n\r\n"),
	    WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTP/1.1 1010 OK\r\n\r\n"),
	    WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTP/1.1 10 OK\r\n\r\n"), WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTP/1.1 099 OK\r\n\r\n"), WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTP/1.1 600 OK\r\n\r\n"), WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTP/1.1  101 OK\r\n\r\n"),
	    WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTP/1.1 101 OK\r\nUpgrade: websocket\n\r\n"),
	    WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTP/1.1 101 OK\r\nUpgrade: a\r\n b\r\n\r\n"),
	    WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTP/1.1 101 OK\r\nUpgrade : a\r\n\r\n"),
	    WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTP/1.1 101 O\x01K\r\n\r\n"),
	    WSG_HTTP_BAD_REQUEST);
	CHECK(resp.error != NULL);

	CHECK_INT(parse_resp("HTTP/1.1 10"), WSG_HTTP_INCOMPLETE);
	CHECK_INT(parse_resp("HTTP/1.1 1x"), WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp("HTTPS"), WSG_HTTP_BAD_REQUEST);
	CHECK_INT(parse_resp(RESP_101), WSG_HTTP_INCOMPLETE);
	CHECK_INT(http_response_parse(RESP_101 "\r\n", strlen(RESP_101) + 2,
	    strlen(RESP_101) + 1, &resp), WSG_HTTP_TOO_LARGE);
	CHECK_INT(http_response_parse(RESP_101 "\r\n", strlen(RESP_101) + 2,
	    strlen(RESP_101) + 2, &resp), WSG_HTTP_OK);
}

/* Parse s as a response and run the upgrade check with these offers. */
static int
check(const char *s, const struct wsg_str *offered, size_t n,
    struct wsg_str *proto, const char **why)
{
	*why = NULL;
	if (parse_resp(s) != WSG_HTTP_OK)
		return -2;
	return http_response_check_upgrade(&resp, SENT_KEY, offered, n, proto,
	    why);
}

/* Validation of the upstream's 101. */
static void
test_check_upgrade(void)
{
	struct wsg_str	 offers[2] = {
		{ "chat.v2", 7 }, { "superchat", 9 }
	};
	struct wsg_str	 proto;
	const char	*why;

	CHECK_INT(check(RESP_101 "\r\n", NULL, 0, &proto, &why), 0);
	CHECK(proto.p == NULL);
	CHECK(why == NULL);
	CHECK_INT(check(RESP_101 "\r\n", offers, 2, &proto, &why), 0);
	CHECK(proto.p == NULL);
	CHECK_INT(check(RESP_101 "Sec-WebSocket-Protocol: superchat\r\n\r\n",
	    offers, 2, &proto, &why), 0);
	CHECK(proto.p == offers[1].p);
	CHECK_INT(proto.len, 9);
	CHECK_INT(check("HTTP/1.1 101 Switching Protocols\r\n"
	    "upgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\n"
	    "sec-websocket-accept: " ACCEPT "\r\n\r\n", NULL, 0, &proto,
	    &why), 0);

	CHECK_INT(check("HTTP/1.1 200 OK\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
	    NULL, 0, &proto, &why), -1);
	CHECK_STR(why, "status not 101");
	/* Upgrade is HTTP/1.1 (RFC 6455 4.1): a 101 in 1.0 is refused. */
	CHECK_INT(check("HTTP/1.0 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n", NULL, 0, &proto,
	    &why), -1);
	CHECK_STR(why, "101 in HTTP/1.0");
	CHECK_INT(check("HTTP/1.1 101 Switching Protocols\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
	    NULL, 0, &proto, &why), -1);
	CHECK_STR(why, "missing Upgrade");
	CHECK_INT(check(RESP_101 "Upgrade: websocket\r\n\r\n", NULL, 0,
	    &proto, &why), -1);
	CHECK_STR(why, "duplicate Upgrade");
	CHECK_INT(check("HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: h2c\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n", NULL, 0, &proto,
	    &why), -1);
	CHECK_STR(why, "Upgrade not websocket");
	CHECK_INT(check("HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: close\r\n"
	    "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n", NULL, 0, &proto,
	    &why), -1);
	CHECK_STR(why, "Connection lacks upgrade");
	CHECK_INT(check("HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n", NULL, 0,
	    &proto, &why), -1);
	CHECK_STR(why, "missing Sec-WebSocket-Accept");
	CHECK_INT(check("HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOA=\r\n\r\n",
	    NULL, 0, &proto, &why), -1);
	CHECK_STR(why, "wrong Sec-WebSocket-Accept");
	CHECK_INT(check("HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: S3PPLMBITXAQ9KYGZZHZRBK+XOO=\r\n\r\n",
	    NULL, 0, &proto, &why), -1);
	CHECK_STR(why, "wrong Sec-WebSocket-Accept");
	CHECK_INT(check(RESP_101 "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
	    NULL, 0, &proto, &why), -1);
	CHECK_STR(why, "duplicate Sec-WebSocket-Accept");
	CHECK_INT(check(RESP_101
	    "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n", NULL, 0,
	    &proto, &why), -1);
	CHECK_STR(why, "unexpected Sec-WebSocket-Extensions");
	CHECK_INT(check(RESP_101 "Sec-WebSocket-Protocol: chat.v3\r\n\r\n",
	    offers, 2, &proto, &why), -1);
	CHECK_STR(why, "subprotocol not offered");
	CHECK(proto.p == NULL);
	CHECK_INT(check(RESP_101 "Sec-WebSocket-Protocol: CHAT.V2\r\n\r\n",
	    offers, 2, &proto, &why), -1);
	CHECK_INT(check(RESP_101 "Sec-WebSocket-Protocol: chat.v2\r\n\r\n",
	    NULL, 0, &proto, &why), -1);
	CHECK_STR(why, "subprotocol not offered");
	CHECK_INT(check(RESP_101 "Sec-WebSocket-Protocol: chat.v2, superchat"
	    "\r\n\r\n", offers, 2, &proto, &why), -1);
	CHECK_INT(check(RESP_101 "Sec-WebSocket-Protocol:\r\n\r\n",
	    offers, 2, &proto, &why), -1);
	CHECK_INT(check(RESP_101 "Sec-WebSocket-Protocol: chat.v2\r\n"
	    "Sec-WebSocket-Protocol: chat.v2\r\n\r\n", offers, 2, &proto,
	    &why), -1);
	CHECK_STR(why, "duplicate Sec-WebSocket-Protocol");
}

/* RFC 6455's accept vector and fresh keys. */
static void
test_keys(void)
{
	char	 accept[29], key[25], key2[25], buf[512];

	CHECK_INT(http_accept_key(SENT_KEY, strlen(SENT_KEY), accept), 0);
	CHECK_STR(accept, ACCEPT);
	CHECK_INT(http_accept_key("x", 1, accept), 0);
	CHECK_INT(strlen(accept), 28);
	CHECK_INT(http_accept_key("", 0, accept), 0);
	CHECK_INT(strlen(accept), 28);
	memset(buf, 'k', sizeof(buf));
	CHECK_INT(http_accept_key(buf, sizeof(buf), accept), -1);
	CHECK_STR(accept, "");

	CHECK_INT(http_new_key(key), 0);
	CHECK_INT(http_new_key(key2), 0);
	CHECK_INT(strlen(key), 24);
	CHECK(strcmp(key, key2) != 0);
	/* A fresh key is itself a valid client key. */
	snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE
	    REQ_CONN REQ_VERSION "Sec-WebSocket-Key: %s\r\n\r\n", key);
	CHECK_INT(parse(buf), WSG_HTTP_OK);
	CHECK(str_is(req.key, key));
}

/* Which client fields stay behind. */
static void
test_dropped(void)
{
	static const char *const dropped[] = {
		"Connection", "keep-alive", "Proxy-Authorization",
		"proxy-connection", "TE", "Trailer", "Transfer-Encoding",
		"Upgrade", "HOST", "Sec-WebSocket-Key",
		"Sec-WebSocket-Version", "Sec-WebSocket-Accept",
		"sec-websocket-extensions", "Sec-WebSocket-Protocol",
		"X-Forwarded-For", "x-forwarded-proto",
		"X-Forwarded-Host", "Forwarded", "Content-Length",
		"X-Secret", "x-other",
		/* what CGI-style servers take for the names above */
		"X_Forwarded_For", "x-forwarded_proto", "X_Forwarded-Host",
		"Sec_WebSocket_Key", "Proxy_Authorization", "Keep_Alive",
		"Transfer_Encoding", "Content_Length",
		/* client addresses that libraries read before X-Forwarded-For */
		"X-Real-IP", "x-real-ip", "X_Real_IP", "True-Client-IP",
		"true_client_ip", "X-Client-IP", "X_CLIENT_IP", "Client-IP",
		"client_ip"
	};
	static const char *const kept[] = {
		"Origin", "User-Agent", "Cookie", "Authorization",
		"X-Forwarded", "Sec-WebSocket", "Hostname", "X-Secrets",
		"Accept", "X_Forwarded", "User_Agent", "X_Secrets",
		"X-Real-IPs", "X-Real", "Client-IPs", "X-Client-IP-Hash"
	};
	size_t	 i;

	CHECK_INT(parse("GET / HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE
	    "Connection: Upgrade, X-Secret\r\nConnection: ,x-OTHER,origin\r\n"
	    REQ_KEY REQ_VERSION REQ_ORIGIN "\r\n"), WSG_HTTP_OK);
	for (i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++) {
		struct wsg_str	 s = { dropped[i], strlen(dropped[i]) };

		if (!http_header_is_dropped(&req, s))
			fprintf(stderr, "not dropped: %s\n", dropped[i]);
		CHECK(http_header_is_dropped(&req, s));
	}
	for (i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
		struct wsg_str	 s = { kept[i], strlen(kept[i]) };

		if (http_header_is_dropped(&req, s))
			fprintf(stderr, "dropped: %s\n", kept[i]);
		CHECK(!http_header_is_dropped(&req, s));
	}
}

static struct wsg_str
str(const char *p)
{
	struct wsg_str	s = { p, strlen(p) };

	return s;
}

/* Names a CGI-style server maps to the same variable. */
static void
test_name_alias(void)
{
	CHECK(http_name_alias(str("X-Token"), "X-Token"));
	CHECK(http_name_alias(str("x_token"), "X-Token"));
	CHECK(http_name_alias(str("X-TOKEN"), "x_token"));
	CHECK(!http_name_alias(str("X-Tokens"), "X-Token"));
	CHECK(!http_name_alias(str("X-Toke"), "X-Token"));
	CHECK(!http_name_alias(str("X.Token"), "X-Token"));
	CHECK(!http_name_alias(str(""), "X-Token"));
}

/* Small helpers and the status tables. */
static void
test_helpers(void)
{
	struct wsg_str	 s = { "Upgrade, , Keep-Alive\t", 22 };
	struct wsg_str	 e = { "", 0 };
	struct wsg_http_header	 h[2] = {
		{ { "A", 1 }, { "1", 1 } }, { { "b", 1 }, { "2", 1 } }
	};

	CHECK(http_list_has_token(s, "upgrade"));
	CHECK(http_list_has_token(s, "keep-alive"));
	CHECK(!http_list_has_token(s, "keep"));
	CHECK(!http_list_has_token(s, ""));
	CHECK(!http_list_has_token(e, "upgrade"));
	CHECK(http_str_eq(e, ""));
	CHECK(http_str_eq(h[0].name, "a"));
	CHECK(!http_str_eq(h[0].name, "ab"));
	CHECK(http_header_find(h, 2, "B") == &h[1]);
	CHECK(http_header_find(h, 2, "c") == NULL);
	CHECK(http_header_find(h, 0, "a") == NULL);

	CHECK_INT(http_result_status(WSG_HTTP_BAD_REQUEST), 400);
	CHECK_INT(http_result_status(WSG_HTTP_BAD_METHOD), 405);
	CHECK_INT(http_result_status(WSG_HTTP_BAD_VERSION), 426);
	CHECK_INT(http_result_status(WSG_HTTP_INCOMPLETE), 0);
	CHECK_STR(http_result_reason(WSG_HTTP_BAD_REQUEST), "bad_request");
	CHECK_STR(http_result_reason(WSG_HTTP_BAD_METHOD), "bad_method");
	CHECK_STR(http_result_reason(WSG_HTTP_BAD_VERSION), "bad_version");
	CHECK_STR(http_status_text(101), "Switching Protocols");
	CHECK_STR(http_status_text(200), "OK");
	CHECK_STR(http_status_text(400), "Bad Request");
	CHECK_STR(http_status_text(401), "Unauthorized");
	CHECK_STR(http_status_text(403), "Forbidden");
	CHECK_STR(http_status_text(404), "Not Found");
	CHECK_STR(http_status_text(405), "Method Not Allowed");
	CHECK_STR(http_status_text(426), "Upgrade Required");
	CHECK_STR(http_status_text(429), "Too Many Requests");
	CHECK_STR(http_status_text(431), "Request Header Fields Too Large");
	CHECK_STR(http_status_text(500), "Internal Server Error");
	CHECK_STR(http_status_text(502), "Bad Gateway");
	CHECK_STR(http_status_text(503), "Service Unavailable");
	CHECK_STR(http_status_text(504), "Gateway Timeout");
	CHECK_STR(http_status_text(299), "Unknown");
	CHECK_STR(http_status_text(-1), "Unknown");
}

/* Paths a backend could read past a prefix route are refused. */
static void
test_ambiguous_paths(void)
{
	static const char *const bad[] = { "/pub/../x", "/pub/./x",
	    "/pub/%2e%2E/x", "/pub/.%2e/x", "/a/..", "/a/.", "/..", "/a/%2e",
	    "/a%2fb", "/a%2Fb", "/a%5cb", "/a\\b",
	    /* encoded unreserved characters: the same path to a backend */
	    "/api/%61dmin", "/api/%41dmin", "/a%2Db", "/a/%7e", "/a%5Fb",
	    "/a%30", "/a%2eb",
	    /* dot segments with a parameter, "/../" to Tomcat and Jetty */
	    "/pub/..;/admin", "/pub/.;/x", "/pub/..;x=1/admin", "/a/..;",
	    "/pub/%2e%2e;/admin",
	    /* not pct-encoded: "%u002e" is '.' to IIS */
	    "/a/%2", "/a%zzb", "/a%", "/a/%u002e%u002e/b", "/a%%32e",
	    /* an encoded NUL: the end of the path to a C backend */
	    "/a%00", "/a/b%00.png",
	    /* empty segments, merged by nginx and Tomcat */
	    "/a//b", "//a", "/a//", "/a///b",
	    /* parameters, dropped by Tomcat and Jetty: "/a;x/b" is "/a/b" */
	    "/a;/b", "/a;x", "/a/...;/b", "/a/.b;/c", "/a/b;", NULL };
	static const char *const good[] = { "/a/...", "/a/.b", "/a/b.c/",
	    "/.well-known/x", "/a/b?x=//", "/a/b?x=/../", "/a%20b",
	    "/a%3Fb", "/a%25b", "/a/b?%zz=%", "/a/b?x=%00", "/a/b?%61=1", "/a/b?x=1;y=2",
	    NULL };
	char	buf[512];
	size_t	i;

	for (i = 0; bad[i] != NULL; i++) {
		snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: x\r\n"
		    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		    "Sec-WebSocket-Version: 13\r\n\r\n", bad[i]);
		REFUSED(buf, WSG_HTTP_BAD_REQUEST);
	}
	for (i = 0; good[i] != NULL; i++) {
		snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: x\r\n"
		    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		    "Sec-WebSocket-Version: 13\r\n\r\n", good[i]);
		CHECK_INT(parse(buf), WSG_HTTP_OK);
	}
}

/* Which fields of the upstream's 101 go on to the client, in order. */
static void
test_101_passed(void)
{
	static const char *const want[] = {
		"Set-Cookie", "X-Request-Id", "set-cookie", "Date",
		"Cache-Control", "X_Request_Id"
	};
	struct wsg_http_header	 h;
	size_t			 i, n = 0;

	CHECK_INT(parse_resp(RESP_101 "Set-Cookie: a=1\r\n"
	    "Keep-Alive: timeout=5\r\nX-Request-Id: r1\r\n"
	    "Connection: X-Hop, x-other\r\nX-Hop: 1\r\nX-Other: 2\r\n"
	    "Proxy-Connection: close\r\nTE: trailers\r\nTrailer: X-Sum\r\n"
	    "Transfer-Encoding: chunked\r\nProxy-Authenticate: Basic\r\n"
	    "Proxy-Authentication-Info: x\r\nUpgrade: h2c\r\n"
	    "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Version: 13\r\n"
	    "Sec-WebSocket-Extensions: x\r\nSec_WebSocket_Accept: x\r\n"
	    "Keep_Alive: 1\r\nset-cookie: b=2\r\nDate: today\r\n"
	    "Server: be\r\nCache-Control: no-store\r\nX_Request_Id: r2\r\n"
	    "\r\n"), WSG_HTTP_OK);
	for (i = 0; i < resp.nheaders; i++) {
		if (!http_response_field_passed(&resp, &resp.headers[i]))
			continue;
		CHECK(n < sizeof(want) / sizeof(want[0]));
		if (n < sizeof(want) / sizeof(want[0]))
			CHECK(str_is(resp.headers[i].name, want[n]));
		n++;
	}
	CHECK_INT(n, sizeof(want) / sizeof(want[0]));

	/* Never a line break nor a control byte, whoever filled h. */
	h.name.p = "X-A";
	h.name.len = 3;
	h.value.p = "a\r\nX-B: b";
	h.value.len = 10;
	CHECK(!http_response_field_passed(&resp, &h));
	h.value.p = "a\0b";
	h.value.len = 3;
	CHECK(!http_response_field_passed(&resp, &h));
	h.value.p = "a\tb";
	CHECK(http_response_field_passed(&resp, &h));
	h.name.p = "X A";
	CHECK(!http_response_field_passed(&resp, &h));
	h.name.len = 0;
	CHECK(!http_response_field_passed(&resp, &h));

	/* The Connection field naming one may be the last of the head. */
	CHECK_INT(parse_resp(RESP_101 "X-Hop: 1\r\nConnection: x-hop\r\n"
	    "\r\n"), WSG_HTTP_OK);
	CHECK_INT(resp.nheaders, 5);
	CHECK(str_is(resp.headers[3].name, "X-Hop"));
	CHECK(!http_response_field_passed(&resp, &resp.headers[3]));
}

/* Run every group; the exit status says whether all checks passed. */
int
main(void)
{
	test_good();
	test_shapes();
	test_syntax();
	test_semantics();
	test_protocols();
	test_limits();
	test_incremental();
	test_response();
	test_check_upgrade();
	test_keys();
	test_dropped();
	test_101_passed();
	test_name_alias();
	test_helpers();
	test_ambiguous_paths();
	return unit_done("test_http");
}
