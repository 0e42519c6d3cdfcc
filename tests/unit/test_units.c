/*
 * Unit tests of the value parsers: durations, sizes, rates and addresses,
 * at every unit and boundary, and with hostile input.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdint.h>

#include "units.h"
#include "unit.h"

/* A duration that must parse to ms. */
static void
dur_ok(const char *s, uint64_t ms)
{
	uint64_t	 v = 12345;
	const char	*err = NULL;

	CHECK_INT(units_parse_duration(s, &v, &err), 0);
	CHECK_INT(v, ms);
}

/* A duration that must fail with this message. */
static void
dur_bad(const char *s, const char *msg)
{
	uint64_t	 v = 12345;
	const char	*err = NULL;

	CHECK_INT(units_parse_duration(s, &v, &err), -1);
	CHECK_STR(err, msg);
	CHECK_INT(v, 12345);
}

/* A size that must parse to bytes. */
static void
size_ok(const char *s, uint64_t b)
{
	uint64_t	 v = 12345;
	const char	*err = NULL;

	CHECK_INT(units_parse_size(s, &v, &err), 0);
	CHECK_INT(v, b);
}

/* A size that must fail with this message. */
static void
size_bad(const char *s, const char *msg)
{
	uint64_t	 v = 12345;
	const char	*err = NULL;

	CHECK_INT(units_parse_size(s, &v, &err), -1);
	CHECK_STR(err, msg);
}

/* A rate that must parse. */
static void
rate_ok(const char *s, uint64_t amount, uint64_t per_ms)
{
	struct wsg_rate	 r = { 0, 0 };
	const char	*err = NULL;

	CHECK_INT(units_parse_rate(s, &r, &err), 0);
	CHECK_INT(r.r_amount, amount);
	CHECK_INT(r.r_per_ms, per_ms);
}

/* A rate that must fail with this message. */
static void
rate_bad(const char *s, const char *msg)
{
	struct wsg_rate	 r;
	const char	*err = NULL;

	CHECK_INT(units_parse_rate(s, &r, &err), -1);
	CHECK_STR(err, msg);
}

/* An address that must parse and format back as fmt. */
static void
addr_ok(const char *s, int family, const char *fmt)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len = 0;
	const char		*err = NULL;
	char			 buf[64];

	CHECK_INT(units_parse_hostport(s, &ss, &len, &err), 0);
	CHECK_INT(ss.ss_family, family);
	CHECK_INT(len, family == AF_INET ? sizeof(struct sockaddr_in) :
	    sizeof(struct sockaddr_in6));
	units_format_addr((struct sockaddr *)&ss, buf, sizeof(buf));
	CHECK_STR(buf, fmt);
}

/* An address that must fail with this message. */
static void
addr_bad(const char *s, const char *msg)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len = 0;
	const char		*err = NULL;

	CHECK_INT(units_parse_hostport(s, &ss, &len, &err), -1);
	CHECK_STR(err, msg);
}

#define DUR_UNIT "unknown unit (use ms, s, m, h, or a bare number of seconds)"
#define SIZE_UNIT "unknown unit (use KiB, MiB, GiB, or a bare number of bytes)"
#define PORT "the port must be a number from 1 to 65535"
#define HOST "the host must be a numeric address or localhost"

/* Run every check; exit 1 if any failed. */
int
main(void)
{
	dur_ok("250ms", 250);
	dur_ok("0ms", 0);
	dur_ok("10s", 10000);
	dur_ok("5m", 300000);
	dur_ok("1h", 3600000);
	dur_ok("24h", 86400000);
	dur_ok("30", 30000);
	dur_ok("0", 0);
	dur_ok("007s", 7000);
	dur_ok("18446744073709551615ms", UINT64_MAX);
	dur_bad("", "empty value");
	dur_bad("-5s", "negative values are not allowed");
	dur_bad("-0", "negative values are not allowed");
	dur_bad("s", "expected a whole number");
	dur_bad("+5s", "expected a whole number");
	dur_bad("1.5s", "expected a whole number");
	dur_bad("10 s", "spaces are not allowed");
	dur_bad(" 10s", "spaces are not allowed");
	dur_bad("10s ", "spaces are not allowed");
	dur_bad("10x", DUR_UNIT);
	dur_bad("10S", DUR_UNIT);
	dur_bad("10sec", DUR_UNIT);
	dur_bad("10d", DUR_UNIT);
	dur_bad("1h30m", DUR_UNIT);
	dur_bad("99999999999999999999h", "number too large");
	dur_bad("18446744073709551616ms", "number too large");
	dur_bad("18446744073709551615s", "number too large");
	dur_bad("5124095576031h", "number too large");
	dur_ok("5124095576030h", 5124095576030ULL * 3600000);

	size_ok("512", 512);
	size_ok("0", 0);
	size_ok("1KiB", 1024);
	size_ok("64KiB", 65536);
	size_ok("1MiB", 1048576);
	size_ok("1GiB", 1073741824ULL);
	size_ok("16GiB", 17179869184ULL);
	size_ok("18446744073709551615", UINT64_MAX);
	size_bad("", "empty value");
	size_bad("1.5MiB", "expected a whole number");
	size_bad("1MB", SIZE_UNIT);
	size_bad("1kib", SIZE_UNIT);
	size_bad("1K", SIZE_UNIT);
	size_bad("1TiB", SIZE_UNIT);
	size_bad("-1", "negative values are not allowed");
	size_bad("1 KiB", "spaces are not allowed");
	size_bad("KiB", "expected a whole number");
	size_bad("0x10", SIZE_UNIT);
	size_bad("18446744073709551616", "number too large");
	size_bad("17179869184GiB", "number too large");

	rate_ok("10/s", 10, 1000);
	rate_ok("600/m", 600, 60000);
	rate_ok("100/h", 100, 3600000);
	rate_ok("1MiB/s", 1048576, 1000);
	rate_bad("10", "expected AMOUNT/UNIT, e.g. 10/s or 1MiB/s");
	rate_bad("10/d", "unknown period (use /s, /m or /h)");
	rate_bad("10/", "unknown period (use /s, /m or /h)");
	rate_bad("10/ms", "unknown period (use /s, /m or /h)");
	rate_bad("0/s", "the amount must be at least 1");
	rate_bad("/s", "empty value");
	rate_bad("-1/s", "negative values are not allowed");
	rate_bad("1MB/s", "unknown unit (use KiB, MiB, GiB, or a bare number)");
	rate_bad("99999999999999999999/s", "number too large");

	addr_ok("127.0.0.1:8443", AF_INET, "127.0.0.1:8443");
	addr_ok("0.0.0.0:1", AF_INET, "0.0.0.0:1");
	addr_ok("localhost:80", AF_INET, "127.0.0.1:80");
	addr_ok("1.2.3.4:65535", AF_INET, "1.2.3.4:65535");
	addr_ok("[::1]:9", AF_INET6, "[::1]:9");
	addr_ok("[::]:8443", AF_INET6, "[::]:8443");
	addr_ok("[2001:db8::1]:443", AF_INET6, "[2001:db8::1]:443");
	addr_ok("127.0.0.1:0080", AF_INET, "127.0.0.1:80");
	addr_bad("127.0.0.1:0", PORT);
	addr_bad("127.0.0.1:65536", PORT);
	addr_bad("127.0.0.1:99999999999999999999", PORT);
	/* 2^64 + 8443 and 2^64 + 443: no wrap-around to a valid port. */
	addr_bad("127.0.0.1:18446744073709560059", PORT);
	addr_bad("[::1]:18446744073709552059", PORT);
	addr_bad("127.0.0.1:http", PORT);
	addr_bad("127.0.0.1:-1", PORT);
	addr_bad("127.0.0.1: 80", PORT);
	addr_bad("127.0.0.1:", "missing port after ':'");
	addr_bad("127.0.0.1", "missing ':port' (use host:port or [v6]:port)");
	addr_bad("", "missing ':port' (use host:port or [v6]:port)");
	addr_bad(":80", "missing host before ':'");
	addr_bad("example.com:80", HOST);
	/* localhost is the whole name, not a prefix of one. */
	addr_bad("localhostx:80", HOST);
	addr_bad("localhost.example.com:80", HOST);
	addr_bad("256.0.0.1:80", HOST);
	addr_bad("1.2.3:80", HOST);
	addr_bad("[::1", "unterminated '[' in an IPv6 address");
	addr_bad("[::1]", "expected ':' and a port after ']'");
	addr_bad("[::1]80", "expected ':' and a port after ']'");
	addr_bad("[::1]:", "missing port after ':'");
	addr_bad("[]:80", "invalid IPv6 address");
	addr_bad("[1.2.3.4]:80", "invalid IPv6 address");
	addr_bad("[::g]:80", "invalid IPv6 address");
	addr_bad("::1:80", "an IPv6 address needs brackets, e.g. [::1]:8443");
	addr_bad("::1", "an IPv6 address needs brackets, e.g. [::1]:8443");

	return unit_done("test_units");
}
