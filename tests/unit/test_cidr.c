/*
 * Unit tests of CIDR parsing and matching: boundaries of every prefix
 * length, host bits, junk, and IPv4-mapped IPv6 peers.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <string.h>

#include "cidr.h"
#include "unit.h"

/* A socket address from a numeric string. */
static struct sockaddr *
addr(const char *s)
{
	static struct sockaddr_storage	 ss;
	struct sockaddr_in		*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6		*sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, s, &sin->sin_addr) == 1)
		sin->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, s, &sin6->sin6_addr) == 1)
		sin6->sin6_family = AF_INET6;
	else {
		fprintf(stderr, "bad test address %s\n", s);
		exit(1);
	}
	return (struct sockaddr *)&ss;
}

/* A block that must parse cleanly with this family and prefix. */
static struct wsg_cidr
cidr_ok(const char *s, int family, int prefix)
{
	struct wsg_cidr	 c;
	const char	*err = NULL;

	CHECK_INT(cidr_parse(s, &c, &err), 0);
	CHECK_INT(c.c_family, family);
	CHECK_INT(c.c_prefix, prefix);
	CHECK(err == NULL);
	return c;
}

/* A block that must be refused with this message. */
static void
cidr_bad(const char *s, const char *msg)
{
	struct wsg_cidr	 c;
	const char	*err = NULL;

	CHECK_INT(cidr_parse(s, &c, &err), -1);
	CHECK_STR(err, msg);
}

/* Does block s match address a? */
static int
m(const char *s, const char *a)
{
	struct wsg_cidr	 c;
	const char	*err;

	if (cidr_parse(s, &c, &err) == -1) {
		fprintf(stderr, "bad test block %s: %s\n", s, err);
		exit(1);
	}
	return cidr_match(&c, addr(a));
}

/* What parses, at every boundary. */
static void
test_parse(void)
{
	struct wsg_cidr	 c;
	const char	*err;
	static const uint8_t	 v6[16] = { 0x20, 0x01, 0x0d, 0xb8 };

	cidr_ok("10.0.0.0/8", AF_INET, 8);
	cidr_ok("0.0.0.0/0", AF_INET, 0);
	cidr_ok("192.0.2.1/32", AF_INET, 32);
	cidr_ok("192.0.2.1", AF_INET, 32);
	cidr_ok("::/0", AF_INET6, 0);
	cidr_ok("::1", AF_INET6, 128);
	cidr_ok("::1/128", AF_INET6, 128);
	c = cidr_ok("2001:db8::/32", AF_INET6, 32);
	CHECK(memcmp(c.c_addr, v6, 16) == 0);
	cidr_ok("2001:DB8::/32", AF_INET6, 32);
	/* Mapped blocks are IPv4 blocks. */
	c = cidr_ok("::ffff:10.0.0.0/104", AF_INET, 8);
	CHECK(c.c_addr[0] == 10 && c.c_addr[4] == 0);
	cidr_ok("::ffff:0:0/96", AF_INET, 0);
	cidr_ok("::ffff:192.0.2.1", AF_INET, 32);
	cidr_ok("::fffe:0:0/95", AF_INET6, 95);

	/* Host bits: accepted, cleared, and reported. */
	err = NULL;
	CHECK_INT(cidr_parse("10.1.2.3/8", &c, &err), 1);
	CHECK_STR(err, "host bits set; cleared to the network address");
	CHECK_INT(c.c_family, AF_INET);
	CHECK(c.c_addr[0] == 10 && c.c_addr[1] == 0 && c.c_addr[2] == 0 &&
	    c.c_addr[3] == 0);
	CHECK_INT(cidr_parse("10.0.0.1/31", &c, &err), 1);
	CHECK_INT(c.c_addr[3], 0);
	CHECK_INT(cidr_parse("10.0.0.1/0", &c, &err), 1);
	CHECK_INT(c.c_addr[0], 0);
	CHECK_INT(cidr_parse("2001:db8::1/64", &c, &err), 1);
	CHECK_INT(c.c_addr[15], 0);
	CHECK_INT(cidr_parse("2001:db8:ffff::/33", &c, &err), 1);
	CHECK_INT(c.c_addr[4], 0x80);
	CHECK_INT(c.c_addr[5], 0);
	/* A mapped address under a prefix shorter than 96 is no IPv4 block. */
	CHECK_INT(cidr_parse("::ffff:0:0/80", &c, &err), 1);
	CHECK_INT(c.c_family, AF_INET6);
	CHECK_INT(c.c_prefix, 80);
	CHECK_INT(c.c_addr[10], 0);
	CHECK_INT(cidr_parse("::ffff:10.0.0.0/95", &c, &err), 1);
	CHECK_INT(c.c_family, AF_INET6);
	CHECK_INT(c.c_prefix, 95);

	cidr_bad("", "empty address");
	cidr_bad("/8", "not a numeric IPv4 or IPv6 address");
	cidr_bad("10.0.0.0/", "missing prefix length after '/'");
	cidr_bad("10.0.0.0/33", "IPv4 prefix length over 32");
	cidr_bad("10.0.0.0/99", "IPv4 prefix length over 32");
	cidr_bad("::/129", "IPv6 prefix length over 128");
	cidr_bad("::/1000", "invalid prefix length");
	cidr_bad("10.0.0.0/08", "invalid prefix length");
	cidr_bad("10.0.0.0/00", "invalid prefix length");
	cidr_bad("10.0.0.0/-1", "invalid prefix length");
	cidr_bad("10.0.0.0/+8", "invalid prefix length");
	cidr_bad("10.0.0.0/8 ", "invalid prefix length");
	cidr_bad("10.0.0.0/8/8", "invalid prefix length");
	cidr_bad("10.0.0.0/ 8", "invalid prefix length");
	cidr_bad("10.0.0.0/0x8", "invalid prefix length");
	cidr_bad(" 10.0.0.0/8", "not a numeric IPv4 or IPv6 address");
	cidr_bad("10.0.0/8", "not a numeric IPv4 or IPv6 address");
	cidr_bad("10.0.0.256", "not a numeric IPv4 or IPv6 address");
	cidr_bad("010.0.0.0/8", "not a numeric IPv4 or IPv6 address");
	cidr_bad("0x0a.0.0.0/8", "not a numeric IPv4 or IPv6 address");
	cidr_bad("10", "not a numeric IPv4 or IPv6 address");
	cidr_bad("localhost", "not a numeric IPv4 or IPv6 address");
	cidr_bad("fe80::1%eth0/64", "not a numeric IPv4 or IPv6 address");
	cidr_bad("[::1]/128", "not a numeric IPv4 or IPv6 address");
	cidr_bad(":::/0", "not a numeric IPv4 or IPv6 address");
	cidr_bad("1::2::3", "not a numeric IPv4 or IPv6 address");
	cidr_bad("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/12800",
	    "address too long");
	cidr_bad("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/12x",
	    "invalid prefix length");
}

/* Matching at every edge. */
static void
test_match(void)
{
	struct wsg_cidr		 list[3];
	struct sockaddr		 un;
	const char		*err;

	CHECK_INT(m("10.0.0.0/8", "10.0.0.0"), 1);
	CHECK_INT(m("10.0.0.0/8", "10.255.255.255"), 1);
	CHECK_INT(m("10.0.0.0/8", "11.0.0.0"), 0);
	CHECK_INT(m("10.0.0.0/8", "9.255.255.255"), 0);
	CHECK_INT(m("192.168.0.0/23", "192.168.1.200"), 1);
	CHECK_INT(m("192.168.0.0/23", "192.168.2.0"), 0);
	CHECK_INT(m("192.0.2.7/32", "192.0.2.7"), 1);
	CHECK_INT(m("192.0.2.7/32", "192.0.2.6"), 0);
	CHECK_INT(m("192.0.2.7/32", "192.0.2.8"), 0);
	CHECK_INT(m("192.0.2.7/31", "192.0.2.6"), 1);
	CHECK_INT(m("0.0.0.0/0", "255.255.255.255"), 1);
	CHECK_INT(m("0.0.0.0/0", "0.0.0.0"), 1);
	CHECK_INT(m("128.0.0.0/1", "127.255.255.255"), 0);
	CHECK_INT(m("128.0.0.0/1", "128.0.0.0"), 1);

	CHECK_INT(m("2001:db8::/32", "2001:db8:ffff::1"), 1);
	CHECK_INT(m("2001:db8::/32", "2001:db9::"), 0);
	CHECK_INT(m("2001:db8::/33", "2001:db8:7fff::"), 1);
	CHECK_INT(m("2001:db8::/33", "2001:db8:8000::"), 0);
	CHECK_INT(m("::1/128", "::1"), 1);
	CHECK_INT(m("::1/128", "::2"), 0);
	CHECK_INT(m("::/0", "ffff::"), 1);
	CHECK_INT(m("2001:db8::1/127", "2001:db8::1"), 1);

	/* Families never cross, except through mapping. */
	CHECK_INT(m("0.0.0.0/0", "::1"), 0);
	CHECK_INT(m("::/0", "10.0.0.1"), 0);
	CHECK_INT(m("::/0", "::ffff:10.0.0.1"), 0);
	CHECK_INT(m("10.0.0.0/8", "::ffff:10.1.2.3"), 1);
	CHECK_INT(m("10.0.0.0/8", "::ffff:11.1.2.3"), 0);
	CHECK_INT(m("10.0.0.0/8", "::10.1.2.3"), 0);	/* compat, not mapped */
	CHECK_INT(m("10.0.0.0/8", "64:ff9b::10.1.2.3"), 0);
	CHECK_INT(m("::ffff:10.0.0.0/104", "10.9.9.9"), 1);
	CHECK_INT(m("::ffff:10.0.0.0/104", "::ffff:10.9.9.9"), 1);
	CHECK_INT(m("0.0.0.0/0", "::ffff:0.0.0.0"), 1);

	/* Lists, and addresses that are neither family. */
	CHECK_INT(cidr_parse("10.0.0.0/8", &list[0], &err), 0);
	CHECK_INT(cidr_parse("2001:db8::/32", &list[1], &err), 0);
	CHECK_INT(cidr_parse("192.0.2.1", &list[2], &err), 0);
	CHECK_INT(cidr_list_match(list, 3, addr("10.2.3.4")), 1);
	CHECK_INT(cidr_list_match(list, 3, addr("2001:db8::5")), 1);
	CHECK_INT(cidr_list_match(list, 3, addr("192.0.2.1")), 1);
	CHECK_INT(cidr_list_match(list, 3, addr("192.0.2.2")), 0);
	CHECK_INT(cidr_list_match(list, 0, addr("10.2.3.4")), 0);
	CHECK_INT(cidr_list_match(NULL, 0, addr("10.2.3.4")), 0);
	memset(&un, 0, sizeof(un));
	un.sa_family = AF_UNIX;
	CHECK_INT(cidr_list_match(list, 3, &un), 0);
	CHECK_INT(cidr_match(&list[0], NULL), 0);
}

int
main(void)
{
	test_parse();
	test_match();
	return unit_done("test_cidr");
}
