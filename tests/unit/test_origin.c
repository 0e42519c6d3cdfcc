/*
 * Unit tests of Origin normalisation and the policy's Origin check:
 * look-alike hosts, scheme and port confusion, junk bytes, and regexes
 * that run into their limits.
 */
#include "autoconf.h"

#include <string.h>

#include "origin.h"
#include "regex.h"
#include "unit.h"

/* An origin that must normalise to want. */
static void
norm_ok(const char *in, const char *want)
{
	char	out[WSG_ORIGIN_BUFSZ], again[WSG_ORIGIN_BUFSZ];

	memset(out, 'X', sizeof(out));
	CHECK_INT(origin_normalise(in, strlen(in), out, sizeof(out)), 0);
	CHECK_STR(out, want);
	/* The normal form is a fixed point. */
	CHECK_INT(origin_normalise(out, strlen(out), again, sizeof(again)), 0);
	CHECK_STR(again, out);
}

/* An origin that must be refused. */
static void
norm_bad(const char *in, size_t len)
{
	char	out[WSG_ORIGIN_BUFSZ];

	int	r;

	r = origin_normalise(in, len, out, sizeof(out));
	CHECK_INT(r, -1);
	if (r != -1)
		fprintf(stderr, "  accepted as %s\n", out);
}

#define NORM_BAD(s)	norm_bad((s), sizeof(s) - 1)

/* A 63-byte DNS label, the longest allowed. */
#define L63	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" \
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

/* Schemes, hosts and ports that normalise. */
static void
test_normalise_good(void)
{
	norm_ok("https://app.example.com", "https://app.example.com");
	norm_ok("HTTPS://APP.Example.COM", "https://app.example.com");
	norm_ok("https://app.example.com:443", "https://app.example.com");
	norm_ok("http://app.example.com:80", "http://app.example.com");
	norm_ok("ws://app.example.com:80", "ws://app.example.com");
	norm_ok("wss://app.example.com:443", "wss://app.example.com");
	norm_ok("WsS://h", "wss://h");
	/* A default port of the other scheme is kept. */
	norm_ok("http://app.example.com:443", "http://app.example.com:443");
	norm_ok("https://app.example.com:80", "https://app.example.com:80");
	norm_ok("https://app.example.com:444", "https://app.example.com:444");
	norm_ok("https://app.example.com:1", "https://app.example.com:1");
	norm_ok("https://app.example.com:65535",
	    "https://app.example.com:65535");
	norm_ok("http://localhost:8080", "http://localhost:8080");
	norm_ok("https://xn--bcher-kva.example",
	    "https://xn--bcher-kva.example");
	norm_ok("https://a-b.c-d.example", "https://a-b.c-d.example");
	norm_ok("https://123.example.com", "https://123.example.com");
	norm_ok("http://127.0.0.1:8080", "http://127.0.0.1:8080");
	norm_ok("http://192.168.1.1", "http://192.168.1.1");
	norm_ok("http://[::1]:8080", "http://[::1]:8080");
	norm_ok("https://[2001:DB8:0:0::1]", "https://[2001:db8::1]");
	norm_ok("https://[2001:db8::1]:443", "https://[2001:db8::1]");
	norm_ok("https://[::ffff:1.2.3.4]", "https://[::ffff:1.2.3.4]");
	/* 63-byte label, 253-byte name. */
	norm_ok("https://" L63 ".x", "https://" L63 ".x");
}

/* The longest names and the smallest output buffers. */
static void
test_normalise_sizes(void)
{
	char	in[WSG_ORIGIN_BUFSZ + 16], out[WSG_ORIGIN_BUFSZ];
	size_t	i, n;

	/* 253 bytes: 63.63.63.61 */
	n = (size_t)snprintf(in, sizeof(in), "https://");
	for (i = 0; i < 253; i++)
		in[n + i] = (i % 64 == 63) ? '.' : 'a';
	in[n + 253] = '\0';
	strcat(in, ":65535");
	CHECK_INT(origin_normalise(in, strlen(in), out, sizeof(out)), 0);
	CHECK_INT(strlen(out), 8 + 253 + 6);
	/* Exactly big enough, then one byte short. */
	CHECK_INT(origin_normalise(in, strlen(in), out, 8 + 253 + 6 + 1), 0);
	CHECK_INT(origin_normalise(in, strlen(in), out, 8 + 253 + 6), -1);
	CHECK_INT(origin_normalise(in, strlen(in), out, 0), -1);
	CHECK_INT(origin_normalise("https://a", 9, out, 9), -1);
	CHECK_INT(origin_normalise("https://a", 9, out, 10), 0);
	/* 254 bytes: too long a name (its first label is too long, too). */
	n = (size_t)snprintf(in, sizeof(in), "https://b");
	for (i = 0; i < 253; i++)
		in[n + i] = (i % 64 == 63) ? '.' : 'a';
	in[n + 253] = '\0';
	CHECK_INT(origin_normalise(in, strlen(in), out, sizeof(out)), -1);
	/* 254 bytes of labels no longer than 63: 63.63.63.62 */
	n = (size_t)snprintf(in, sizeof(in), "https://");
	for (i = 0; i < 254; i++)
		in[n + i] = (i % 64 == 63) ? '.' : 'a';
	in[n + 254] = '\0';
	CHECK_INT(origin_normalise(in, strlen(in), out, sizeof(out)), -1);
	/* ... the same with a port */
	strcat(in, ":8443");
	CHECK_INT(origin_normalise(in, strlen(in), out, sizeof(out)), -1);
	/* 64-byte label. */
	NORM_BAD("https://a" L63 ".x");
	/* Input over the cap. */
	memset(in, 'a', sizeof(in));
	memcpy(in, "https://", 8);
	norm_bad(in, WSG_ORIGIN_MAX_LEN + 1);
	CHECK_INT(origin_normalise(NULL, 0, out, sizeof(out)), -1);
	CHECK_INT(origin_normalise("https://a", 9, NULL, 10), -1);
}

/* Everything that is not a serialised origin. */
static void
test_normalise_bad(void)
{
	NORM_BAD("");
	NORM_BAD("null");
	NORM_BAD("https://");
	NORM_BAD("https:/app.example.com");
	NORM_BAD("https//app.example.com");
	NORM_BAD("https:app.example.com");
	NORM_BAD("//app.example.com");
	NORM_BAD("app.example.com");
	NORM_BAD("ftp://app.example.com");
	NORM_BAD("file://app.example.com");
	NORM_BAD("httpss://app.example.com");
	NORM_BAD("htt://app.example.com");
	NORM_BAD("javascript://app.example.com");
	/* Nothing after the authority. */
	NORM_BAD("https://app.example.com/");
	NORM_BAD("https://app.example.com/path");
	NORM_BAD("https://app.example.com?q");
	NORM_BAD("https://app.example.com#f");
	NORM_BAD("https://user@app.example.com");
	NORM_BAD("https://app.example.com@evil.example");
	NORM_BAD("https://user:pw@app.example.com");
	NORM_BAD("https://app.example.com\\evil.example");
	/* Ports. */
	NORM_BAD("https://app.example.com:");
	NORM_BAD("https://app.example.com:0");
	NORM_BAD("https://app.example.com:0443");
	NORM_BAD("https://app.example.com:00");
	NORM_BAD("https://app.example.com:65536");
	NORM_BAD("https://app.example.com:99999");
	NORM_BAD("https://app.example.com:100000");
	NORM_BAD("https://app.example.com:-1");
	NORM_BAD("https://app.example.com:+443");
	NORM_BAD("https://app.example.com: 443");
	NORM_BAD("https://app.example.com:443 ");
	NORM_BAD("https://app.example.com:44a");
	NORM_BAD("https://app.example.com:443:443");
	NORM_BAD("https://app.example.com::443");
	/* Hosts. */
	NORM_BAD("https://.example.com");
	NORM_BAD("https://app..example.com");
	NORM_BAD("https://app.example.com.");
	NORM_BAD("https://-app.example.com");
	NORM_BAD("https://app-.example.com");
	NORM_BAD("https://app.-example.com");
	NORM_BAD("https://app.example.com-");
	NORM_BAD("https://app-");
	NORM_BAD("https://app-:8443");
	NORM_BAD("https://app_1.example.com");
	NORM_BAD("https://app example.com");
	NORM_BAD(" https://app.example.com");
	NORM_BAD("https://app.example.com ");
	NORM_BAD("https://app.example.com\t");
	NORM_BAD("https://%61pp.example.com");
	NORM_BAD("https://b\xc3\xbc" "cher.example");	/* raw UTF-8 */
	/* Ideographic and fullwidth full stops. */
	NORM_BAD("https://app\xe3\x80\x82" "example.com");
	NORM_BAD("https://app.example.com\xef\xbc\x8e");
	NORM_BAD("https://\xff");
	/* Numeric hosts must be real dotted quads. */
	NORM_BAD("http://127.1");
	NORM_BAD("http://0x7f.0.0.1");
	NORM_BAD("http://0177.0.0.1");
	NORM_BAD("http://2130706433");
	NORM_BAD("http://256.0.0.1");
	NORM_BAD("http://1.2.3.4.5");
	NORM_BAD("http://app.123");
	/* Every digit makes a label numeric, 9 as much as 0. */
	NORM_BAD("http://app.99");
	NORM_BAD("http://10.0.0.09");
	/* IPv6. */
	NORM_BAD("http://[::1");
	NORM_BAD("http://::1]");
	NORM_BAD("http://::1");
	NORM_BAD("http://[]");
	NORM_BAD("http://[::1]x");
	/* After the ']' only a ':' may start the port. */
	NORM_BAD("http://[::1]x80");
	NORM_BAD("https://[::1]/443");
	NORM_BAD("http://[::1]:");
	NORM_BAD("http://[fe80::1%25eth0]");
	NORM_BAD("http://[fe80::1%eth0]");
	NORM_BAD("http://[1.2.3.4]");
	NORM_BAD("http://[::g]");
	/* CR, LF and NUL anywhere. */
	NORM_BAD("https://app.example.com\r\n");
	NORM_BAD("https://app.example.com\nX-Evil: 1");
	NORM_BAD("https://app\r.example.com");
	NORM_BAD("https://app.example.com\0.evil.example");
	NORM_BAD("https://app.example.com:443\0");
	NORM_BAD("https\0://app.example.com");
	NORM_BAD("http://[19::1\0\0\0\0\0\0\0\1]:8080");	/* NUL in [] */
	NORM_BAD("http://[::1\0]");
	norm_bad("https://app.example.com", 8);	/* cut after "//" */
	norm_bad("https://app.example.com", 7);
	CHECK_INT(origin_normalise("https://app.example.com", 22, NULL, 0), -1);
}

/* Allow entries: normal forms or "null". */
static void
test_allow_entry(void)
{
	char	out[WSG_ORIGIN_BUFSZ];

	CHECK_INT(origin_allow_entry("null", out, sizeof(out)), 0);
	CHECK_STR(out, "null");
	CHECK_INT(origin_allow_entry("null", out, 4), -1);
	CHECK_INT(origin_allow_entry("NULL", out, sizeof(out)), -1);
	CHECK_INT(origin_allow_entry("nullx", out, sizeof(out)), -1);
	CHECK_INT(origin_allow_entry("null ", out, sizeof(out)), -1);
	CHECK_INT(origin_allow_entry("HTTPS://App.Example.com:443", out,
	    sizeof(out)), 0);
	CHECK_STR(out, "https://app.example.com");
	CHECK_INT(origin_allow_entry("https://app.example.com/", out,
	    sizeof(out)), -1);
	CHECK_INT(origin_allow_entry("*", out, sizeof(out)), -1);
	CHECK_INT(origin_allow_entry("", out, sizeof(out)), -1);
	CHECK_INT(origin_allow_entry(NULL, out, sizeof(out)), -1);
}

#define CHECK_ORIGIN(op, s, want)					\
	CHECK_INT(origin_check((op), (s), sizeof(s) - 1), (want))

/* The exact allow list, and what must not pass for it. */
static void
test_check_exact(void)
{
	char				 a[3][WSG_ORIGIN_BUFSZ];
	char				*allow[3] = { a[0], a[1], a[2] };
	struct wsg_origin_policy	 op;

	CHECK_INT(origin_allow_entry("https://app.example.com", a[0],
	    sizeof(a[0])), 0);
	CHECK_INT(origin_allow_entry("http://localhost:8080", a[1],
	    sizeof(a[1])), 0);
	CHECK_INT(origin_allow_entry("https://[::1]", a[2], sizeof(a[2])), 0);
	memset(&op, 0, sizeof(op));
	op.op_allow = allow;
	op.op_nallow = 3;

	CHECK_INT(origin_check(&op, NULL, 0), WSG_ORIGIN_MISSING);
	op.op_allow_missing = 1;
	CHECK_INT(origin_check(&op, NULL, 0), WSG_ORIGIN_OK);
	op.op_allow_missing = 0;

	CHECK_ORIGIN(&op, "https://app.example.com", WSG_ORIGIN_OK);
	CHECK_ORIGIN(&op, "https://APP.EXAMPLE.COM", WSG_ORIGIN_OK);
	CHECK_ORIGIN(&op, "HTTPS://app.example.com:443", WSG_ORIGIN_OK);
	CHECK_ORIGIN(&op, "http://localhost:8080", WSG_ORIGIN_OK);
	CHECK_ORIGIN(&op, "http://LocalHost:8080", WSG_ORIGIN_OK);
	CHECK_ORIGIN(&op, "https://[0:0::1]:443", WSG_ORIGIN_OK);

	/* Look-alikes. */
	CHECK_ORIGIN(&op, "https://app.example.com.evil.example",
	    WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "https://evilapp.example.com", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "https://app.example.co", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "https://app.example.com.", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "https://xapp.example.com", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "https://app-example.com", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "http://app.example.com", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "wss://app.example.com", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "https://app.example.com:444", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "https://app.example.com:80", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "https://app.example.com:8443", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "http://localhost", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "http://localhost:80", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "https://app.example.com/", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "https://app.example.com@evil.example",
	    WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "https://evil.example#app.example.com",
	    WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "https://app.example.com\r\n", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "https://app.example.com\0", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "https://app.example.com\0.evil",
	    WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "https://\xd0\xb0pp.example.com",	/* Cyrillic a */
	    WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "*", WSG_ORIGIN_DENIED);
	/* The length given counts, not a NUL. */
	CHECK_INT(origin_check(&op, "https://app.example.com.evil", 23),
	    WSG_ORIGIN_OK);
	CHECK_INT(origin_check(&op, "https://app.example.com", 22),
	    WSG_ORIGIN_DENIED);

	/* "null" only when listed, and only spelt exactly so. */
	CHECK_ORIGIN(&op, "null", WSG_ORIGIN_DENIED);
	CHECK_INT(origin_allow_entry("null", a[2], sizeof(a[2])), 0);
	CHECK_ORIGIN(&op, "null", WSG_ORIGIN_OK);
	CHECK_ORIGIN(&op, "NULL", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "null ", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "nul", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "null\0", WSG_ORIGIN_DENIED);

	/* An empty policy denies every origin. */
	op.op_nallow = 0;
	CHECK_ORIGIN(&op, "https://app.example.com", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "null", WSG_ORIGIN_DENIED);
}

/* Regexes see the normal form; their failures are refusals. */
static void
test_check_regex(void)
{
	struct wsg_regex		*re[2];
	struct wsg_origin_policy	 op;
	char				 err[WSG_REGEX_ERR_MAX];
	char				 big[WSG_ORIGIN_BUFSZ];
	size_t				 n;

	re[0] = regex_compile("^https://[a-z0-9-]+\\.example\\.com$", err,
	    sizeof(err));
	CHECK(re[0] != NULL);
	re[1] = regex_compile("^https://(a+)+$", err, sizeof(err));
	CHECK(re[1] != NULL);
	if (re[0] == NULL || re[1] == NULL)
		return;
	memset(&op, 0, sizeof(op));
	op.op_regex = re;
	op.op_nregex = 1;

	CHECK_ORIGIN(&op, "https://chat.example.com", WSG_ORIGIN_OK);
	CHECK_ORIGIN(&op, "HTTPS://Chat.EXAMPLE.com:443", WSG_ORIGIN_OK);
	CHECK_ORIGIN(&op, "https://chat.example.com:8443", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "https://a.b.example.com", WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "https://chat.example.com.evil.example",
	    WSG_ORIGIN_DENIED);
	CHECK_ORIGIN(&op, "http://chat.example.com", WSG_ORIGIN_DENIED);
	/* '$' would allow a trailing newline, but it never normalises. */
	CHECK_ORIGIN(&op, "https://chat.example.com\n", WSG_ORIGIN_DENIED);

	/* A pattern that blows its limits on a long host: ERROR. */
	op.op_regex = &re[1];
	n = (size_t)snprintf(big, sizeof(big), "https://");
	memset(big + n, 'a', 40);
	memcpy(big + n + 40, ".b", 3);
	CHECK_INT(origin_check(&op, big, strlen(big)), WSG_ORIGIN_ERROR);
	CHECK_ORIGIN(&op, "https://aaaa", WSG_ORIGIN_OK);
	/* ... unless another regex grants it. */
	op.op_regex = re;
	op.op_nregex = 2;
	CHECK_INT(origin_check(&op, big, strlen(big)), WSG_ORIGIN_ERROR);
	n = (size_t)snprintf(big, sizeof(big), "https://");
	memset(big + n, 'a', 40);
	memcpy(big + n + 40, ".example.com", 13);
	CHECK_INT(origin_check(&op, big, strlen(big)), WSG_ORIGIN_OK);

	regex_free(re[0]);
	regex_free(re[1]);
}

int
main(void)
{
	test_normalise_good();
	test_normalise_sizes();
	test_normalise_bad();
	test_allow_entry();
	test_check_exact();
	test_check_regex();
	return unit_done("test_origin");
}
