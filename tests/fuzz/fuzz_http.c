/*
 * libFuzzer harness for the HTTP upgrade parser.  Besides not crashing, it
 * checks that the answer is stable as bytes arrive: INCOMPLETE until some
 * prefix gives a final answer, then that same answer for every longer
 * prefix; that an OK head never reaches past the bytes given; and that
 * every parsed string points inside the input.
 */
#include "autoconf.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define FUZZ_KEY	"dGhlIHNhbXBsZSBub25jZQ=="
#define FUZZ_ALL_PREFIXES	512	/* shorter inputs: every prefix */
#define FUZZ_SAMPLES		256	/* longer ones: this many */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const size_t fuzz_max_heads[] = { 0, 1, 64, 512, 8192, SIZE_MAX };

/* Abort unless s is absent or lies within buf[0..len). */
static void
fuzz_inside(struct wsg_str s, const char *buf, size_t len)
{
	if (s.p == NULL) {
		if (s.len != 0)
			abort();
		return;
	}
	if (s.p < buf || s.p > buf + len || s.len > (size_t)(buf + len - s.p))
		abort();
}

/* Check every string of a request result, and the OK invariants. */
static void
fuzz_check_request(enum wsg_http_result r, const struct wsg_http_request *req,
    const char *buf, size_t len, size_t max_head)
{
	size_t	i;

	fuzz_inside(req->method, buf, len);
	fuzz_inside(req->target, buf, len);
	fuzz_inside(req->path, buf, len);
	fuzz_inside(req->query, buf, len);
	fuzz_inside(req->host, buf, len);
	fuzz_inside(req->key, buf, len);
	fuzz_inside(req->origin, buf, len);
	if (req->nheaders > WSG_MAX_HEADERS ||
	    req->nprotocols > WSG_MAX_SUBPROTOCOLS)
		abort();
	for (i = 0; i < req->nheaders; i++) {
		fuzz_inside(req->headers[i].name, buf, len);
		fuzz_inside(req->headers[i].value, buf, len);
	}
	for (i = 0; i < req->nprotocols; i++) {
		fuzz_inside(req->protocols[i], buf, len);
		if (req->protocols[i].len == 0 ||
		    req->protocols[i].len > WSG_MAX_TOKEN_LEN)
			abort();
	}
	if ((r == WSG_HTTP_OK || r == WSG_HTTP_INCOMPLETE) !=
	    (req->error == NULL))
		abort();
	if (r != WSG_HTTP_OK)
		return;
	if (req->head_len > len || req->head_len > max_head ||
	    req->head_len < 4 ||
	    memcmp(buf + req->head_len - 4, "\r\n\r\n", 4) != 0)
		abort();
	if (req->host.p == NULL || req->key.len != 24 ||
	    req->method.len != 3 || memcmp(req->method.p, "GET", 3) != 0 ||
	    req->target.len == 0 || req->target.p[0] != '/')
		abort();
	for (i = 0; i < req->nheaders; i++)
		(void)http_header_is_dropped(req, req->headers[i].name);
}

/* Check every string of a response result, and the OK invariants. */
static void
fuzz_check_response(enum wsg_http_result r,
    const struct wsg_http_response *resp, const char *buf, size_t len,
    size_t max_head)
{
	size_t	i;

	fuzz_inside(resp->reason, buf, len);
	if (resp->nheaders > WSG_MAX_HEADERS)
		abort();
	for (i = 0; i < resp->nheaders; i++) {
		fuzz_inside(resp->headers[i].name, buf, len);
		fuzz_inside(resp->headers[i].value, buf, len);
	}
	if ((r == WSG_HTTP_OK || r == WSG_HTTP_INCOMPLETE) !=
	    (resp->error == NULL))
		abort();
	if (r != WSG_HTTP_OK)
		return;
	if (resp->head_len > len || resp->head_len > max_head ||
	    resp->head_len < 4 ||
	    memcmp(buf + resp->head_len - 4, "\r\n\r\n", 4) != 0 ||
	    resp->status < 100 || resp->status > 599 ||
	    resp->content_length < -1 ||
	    resp->content_length > (1LL << 53))
		abort();
}

/* Run the upgrade check on a parsed response with a few offers. */
static void
fuzz_check_upgrade(const struct wsg_http_response *resp)
{
	static const struct wsg_str offers[2] = {
		{ "chat", 4 }, { "superchat", 9 }
	};
	struct wsg_str	 proto;
	const char	*why;
	int		 rc;

	rc = http_response_check_upgrade(resp, FUZZ_KEY, offers, 2, &proto,
	    &why);
	if (rc == 0) {
		if (resp->status != 101 || (proto.p != NULL &&
		    proto.p != offers[0].p && proto.p != offers[1].p))
			abort();
	} else if (rc != -1 || why == NULL || proto.p != NULL)
		abort();
	rc = http_response_check_upgrade(resp, FUZZ_KEY, NULL, 0, &proto,
	    &why);
	if (rc == 0 && proto.p != NULL)
		abort();
}

/*
 * Parse growing prefixes of the input: once an answer is final it must not
 * change, and the whole input must give that same answer.
 */
static void
fuzz_prefixes(const char *buf, size_t len, size_t max_head)
{
	static struct wsg_http_request	 req;
	static struct wsg_http_response	 resp;
	enum wsg_http_result		 r, rfinal = WSG_HTTP_INCOMPLETE;
	enum wsg_http_result		 s, sfinal = WSG_HTTP_INCOMPLETE;
	const char			*rerr = NULL, *serr = NULL;
	size_t				 k, step, rhead = 0, shead = 0;

	step = len <= FUZZ_ALL_PREFIXES ? 1 : len / FUZZ_SAMPLES;
	for (k = 0; k <= len; k += step) {
		if (k + step > len)
			k = len;
		r = http_request_parse(buf, k, max_head, &req);
		fuzz_check_request(r, &req, buf, k, max_head);
		if (rfinal != WSG_HTTP_INCOMPLETE) {
			if (r != rfinal || req.error != rerr ||
			    req.head_len != rhead)
				abort();
		} else if (r != WSG_HTTP_INCOMPLETE) {
			rfinal = r;
			rerr = req.error;
			rhead = req.head_len;
		}

		s = http_response_parse(buf, k, max_head, &resp);
		fuzz_check_response(s, &resp, buf, k, max_head);
		if (sfinal != WSG_HTTP_INCOMPLETE) {
			if (s != sfinal || resp.error != serr ||
			    resp.head_len != shead)
				abort();
		} else if (s != WSG_HTTP_INCOMPLETE) {
			sfinal = s;
			serr = resp.error;
			shead = resp.head_len;
		}
		if (s == WSG_HTTP_OK && k == len)
			fuzz_check_upgrade(&resp);
		if (k == len)
			break;
	}
}

/* Entry point: every parser, at several head limits. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char	*buf = (const char *)data;
	struct wsg_str	 s;
	size_t		 i;

	for (i = 0; i < sizeof(fuzz_max_heads) / sizeof(fuzz_max_heads[0]);
	    i++)
		fuzz_prefixes(buf, size, fuzz_max_heads[i]);

	s.p = buf;
	s.len = size;
	(void)http_list_has_token(s, "upgrade");
	return 0;
}
