/*
 * libFuzzer harness for the upstream's 101 on its own, as upstream.c reads
 * it: http_response_parse() with the daemon's head cap, then
 * http_response_check_upgrade() for a fixed key and offered protocols.
 * An accepted 101 must carry exactly one Sec-WebSocket-Accept equal to
 * http_accept_key(key), one Upgrade "websocket", no extensions, and at most
 * one Sec-WebSocket-Protocol naming one of the offered protocols (the
 * chosen one); the same response must fail for any other key and, when it
 * names a protocol, when none was offered.  Conversely a response meeting
 * all of that must be accepted.
 */
#include "autoconf.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "wsgate.h"

#define FUZZ_ASSERT(c)	do { if (!(c)) abort(); } while (0)
#define FUZZ_KEY	"dGhlIHNhbXBsZSBub25jZQ=="
#define FUZZ_KEY2	"x3JJHMbDL1EzLkh9GBhXDw=="

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const struct wsg_str fuzz_offers[] = {
	{ "chat", 4 }, { "superchat", 9 }, { "chat.v2", 7 },
	{ "mqtt", 4 }, { "Chat", 4 }
};
#define FUZZ_NOFFERS	(sizeof(fuzz_offers) / sizeof(fuzz_offers[0]))

/* The headers of this name (case-insensitive); the last one found. */
static const struct wsg_http_header *
fuzz_headers(const struct wsg_http_response *r, const char *name, size_t *n)
{
	const struct wsg_http_header	*h = NULL;
	size_t				 i;

	*n = 0;
	for (i = 0; i < r->nheaders; i++)
		if (http_str_eq(r->headers[i].name, name)) {
			h = &r->headers[i];
			(*n)++;
		}
	return h;
}

/* The response's version, read from the bytes: a 101 must be HTTP/1.1. */
static int	fuzz_http11;

/* The expected verdict, worked out independently of the checker. */
static int
fuzz_expect_ok(const struct wsg_http_response *r, const char *accept,
    size_t noffers)
{
	const struct wsg_http_header	*h;
	size_t				 i, n, found = 0;

	if (r->status != 101 || !fuzz_http11)
		return 0;
	if ((h = fuzz_headers(r, "Upgrade", &n)) == NULL || n != 1 ||
	    !http_str_eq(h->value, "websocket"))
		return 0;
	for (i = 0; i < r->nheaders; i++)
		if (http_str_eq(r->headers[i].name, "Connection") &&
		    http_list_has_token(r->headers[i].value, "upgrade"))
			found = 1;
	if (!found)
		return 0;
	if ((h = fuzz_headers(r, "Sec-WebSocket-Accept", &n)) == NULL ||
	    n != 1 || h->value.len != strlen(accept) ||
	    memcmp(h->value.p, accept, h->value.len) != 0)
		return 0;
	(void)fuzz_headers(r, "Sec-WebSocket-Extensions", &n);
	if (n != 0)
		return 0;
	if ((h = fuzz_headers(r, "Sec-WebSocket-Protocol", &n)) == NULL)
		return 1;
	if (n != 1)
		return 0;
	for (i = 0; i < noffers; i++)
		if (fuzz_offers[i].len == h->value.len &&
		    memcmp(fuzz_offers[i].p, h->value.p, h->value.len) == 0)
			return 1;
	return 0;
}

/* Check one response against the key with the first noffers offers. */
static void
fuzz_check(const struct wsg_http_response *r, size_t noffers)
{
	const struct wsg_http_header	*h;
	struct wsg_str			 proto;
	const char			*why = NULL;
	char				 accept[29];
	size_t				 n;
	int				 rc;

	http_accept_key(FUZZ_KEY, strlen(FUZZ_KEY), accept);
	FUZZ_ASSERT(strlen(accept) == 28);
	rc = http_response_check_upgrade(r, FUZZ_KEY, fuzz_offers, noffers,
	    &proto, &why);
	FUZZ_ASSERT(rc == 0 || rc == -1);
	FUZZ_ASSERT((rc == 0) == fuzz_expect_ok(r, accept, noffers));
	if (rc == -1) {
		FUZZ_ASSERT(why != NULL && proto.p == NULL && proto.len == 0);
		return;
	}

	FUZZ_ASSERT(r->status == 101);
	h = fuzz_headers(r, "Sec-WebSocket-Accept", &n);
	FUZZ_ASSERT(n == 1 && h->value.len == 28 &&
	    memcmp(h->value.p, accept, 28) == 0);
	h = fuzz_headers(r, "Sec-WebSocket-Protocol", &n);
	if (n == 0)
		FUZZ_ASSERT(proto.p == NULL && proto.len == 0);
	else {
		/* One of ours, pointer and all, equal to what was sent. */
		FUZZ_ASSERT(noffers > 0 && proto.p != NULL);
		for (n = 0; n < noffers; n++)
			if (proto.p == fuzz_offers[n].p &&
			    proto.len == fuzz_offers[n].len)
				break;
		FUZZ_ASSERT(n < noffers);
		FUZZ_ASSERT(h->value.len == proto.len &&
		    memcmp(h->value.p, proto.p, proto.len) == 0);
	}

	/* Accepted for one key, refused for any other. */
	FUZZ_ASSERT(http_response_check_upgrade(r, FUZZ_KEY2, fuzz_offers,
	    noffers, NULL, NULL) == -1);
	/* A protocol we did not offer is refused. */
	if (proto.p != NULL)
		FUZZ_ASSERT(http_response_check_upgrade(r, FUZZ_KEY, NULL, 0,
		    NULL, NULL) == -1);
	/* The same answer without the optional out-parameters. */
	FUZZ_ASSERT(http_response_check_upgrade(r, FUZZ_KEY, fuzz_offers,
	    noffers, NULL, NULL) == 0);
}

/*
 * The first byte picks how many protocols were offered (0 to 5); the rest
 * is what the upstream sent.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct wsg_http_response	 r;
	enum wsg_http_result		 res;
	size_t				 noffers;

	if (size < 1)
		return 0;
	noffers = data[0] % (FUZZ_NOFFERS + 1);
	res = http_response_parse((const char *)data + 1, size - 1,
	    WSG_MAX_UPSTREAM_HEAD, &r);
	FUZZ_ASSERT(res == WSG_HTTP_OK || res == WSG_HTTP_INCOMPLETE ||
	    r.error != NULL);
	if (res != WSG_HTTP_OK)
		return 0;
	FUZZ_ASSERT(r.head_len <= size - 1 && r.nheaders <= WSG_MAX_HEADERS);
	/* Only HTTP/1.1 and 1.0 status lines parse. */
	FUZZ_ASSERT(size - 1 >= 8 && (memcmp(data + 1, "HTTP/1.1", 8) == 0 ||
	    memcmp(data + 1, "HTTP/1.0", 8) == 0));
	fuzz_http11 = memcmp(data + 1, "HTTP/1.1", 8) == 0;
	fuzz_check(&r, noffers);
	return 0;
}
