/*
 * Unit tests of the GeoIP module against small databases written at test
 * time by tests/geoip/make-mmdb.pl (Debian's libmaxmind-db-writer-perl):
 * IPv4, IPv6 and IPv4-mapped clients get the country an operator put in
 * the database, the registered country when there is no other, "unknown"
 * when there is none, and bad or wrong database files are refused at open
 * with a message that names them.  No Perl or no writer module is a
 * failure, not a skip.
 *
 * WSG_TEST_MMDB may name a prebuilt database instead; it must hold exactly
 * the networks of test_networks[] below.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "geoip.h"
#include "unit.h"

#define TEST_THREADS	4
#define TEST_ROUNDS	20000

/* The networks of the main test database, as make-mmdb.pl arguments. */
static const char *const test_networks[] = {
	"127.0.0.0/24=DE",
	"10.0.0.0/8=KP",
	"::1/128=FR",
	"2001:db8::/32=US",
	"2001:db8:1::/48=registered:CH",
	"127.0.1.0/24=registered:JP",
	"127.0.2.0/24=none",
	"127.0.3.0/24=de",
	"127.0.4.0/24=DEU",
	"127.0.5.0/24=D1",
	NULL
};

static char	 tmpdir[256];
static char	 script[1024];

/*
 * Run make-mmdb.pl with perl (an IPv4-only tree if v4); exit the test
 * loudly if it fails.
 */
static void
make_mmdb(int v4, const char *type, const char *out, const char *const *nets)
{
	const char	*argv[32];
	pid_t		 pid;
	int		 argc = 0, status;

	argv[argc++] = "perl";
	argv[argc++] = script;
	if (v4)
		argv[argc++] = "-4";
	if (type != NULL) {
		argv[argc++] = "-t";
		argv[argc++] = type;
	}
	argv[argc++] = out;
	while (*nets != NULL && argc < 31)
		argv[argc++] = *nets++;
	argv[argc] = NULL;

	fflush(NULL);
	if ((pid = fork()) == -1) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "test_geoip: perl: %s\n", strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR) {
			perror("waitpid");
			exit(2);
		}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "test_geoip: FAILED to build a test database "
		    "with %s (%s %d): it needs perl and Debian's "
		    "libmaxmind-db-writer-perl\n", script,
		    WIFEXITED(status) ? "exit" : "signal",
		    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		printf("test_geoip: 0 passed, 1 failed\n");
		exit(1);
	}
}

/* A sockaddr for a numeric v4 or v6 address (or a test bug). */
static void
addr(const char *s, struct sockaddr_storage *ss)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, s, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(40000);
	} else if (inet_pton(AF_INET6, s, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(40000);
	} else {
		fprintf(stderr, "test_geoip: bad test address %s\n", s);
		exit(2);
	}
}

/* geoip_country() of a numeric address; cc gets the code. */
static int
lookup(const struct wsg_geoip *g, const char *s, char cc[3])
{
	struct sockaddr_storage	ss;

	addr(s, &ss);
	memcpy(cc, "??", 3);
	return geoip_country(g, (struct sockaddr *)&ss, cc);
}

/* Check one lookup: the return value and, when found, the code. */
static void
check_lookup(const struct wsg_geoip *g, const char *s, int want,
    const char *wantcc)
{
	char	cc[3];
	int	rv;

	rv = lookup(g, s, cc);
	if (rv != want)
		fprintf(stderr, "  lookup %s returned %d, cc \"%s\"\n", s, rv,
		    rv == 1 ? cc : "");
	CHECK_INT(rv, want);
	CHECK_STR(cc, wantcc != NULL ? wantcc : "");
}

/* Lookups of every kind of client address. */
static void
test_lookups(const struct wsg_geoip *g)
{
	struct sockaddr_un	sun;
	char			cc[3];

	/* IPv4 */
	check_lookup(g, "127.0.0.1", 1, "DE");
	check_lookup(g, "127.0.0.255", 1, "DE");
	check_lookup(g, "10.1.2.3", 1, "KP");
	check_lookup(g, "10.255.255.255", 1, "KP");
	check_lookup(g, "192.0.2.1", 0, NULL);
	check_lookup(g, "127.0.6.1", 0, NULL);
	check_lookup(g, "11.0.0.0", 0, NULL);

	/* IPv6 */
	check_lookup(g, "::1", 1, "FR");
	check_lookup(g, "2001:db8::5", 1, "US");
	check_lookup(g, "2001:db8:ffff:ffff::1", 1, "US");
	check_lookup(g, "2001:db9::1", 0, NULL);
	check_lookup(g, "fe80::1", 0, NULL);

	/* IPv4-mapped IPv6, as a dual-stack listener sees v4 clients */
	check_lookup(g, "::ffff:127.0.0.1", 1, "DE");
	check_lookup(g, "::ffff:10.1.2.3", 1, "KP");
	check_lookup(g, "::ffff:192.0.2.1", 0, NULL);
	/* 6to4 is aliased to IPv4 by the database itself */
	check_lookup(g, "2002:7f00:1::", 1, "DE");

	/* registered_country when there is no country */
	check_lookup(g, "127.0.1.9", 1, "JP");
	check_lookup(g, "2001:db8:1::1", 1, "CH");
	/* in the database, but no country at all */
	check_lookup(g, "127.0.2.9", 0, NULL);
	/* a lowercase code is handed out uppercase */
	check_lookup(g, "127.0.3.9", 1, "DE");
	/* malformed codes are a database error, not a country */
	check_lookup(g, "127.0.4.9", -1, NULL);
	check_lookup(g, "127.0.5.9", -1, NULL);

	/* not an IP address: no country */
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(cc, "??", 3);
	CHECK_INT(geoip_country(g, (struct sockaddr *)&sun, cc), 0);
	CHECK_STR(cc, "");
}

/* One of several threads looking up the same handle at once. */
static void *
thread_main(void *arg)
{
	const struct wsg_geoip	*g = arg;
	static const char *const addrs[] = {
		"127.0.0.1", "10.9.8.7", "::1", "::ffff:127.0.0.2",
		"192.0.2.1", "2001:db8::1",
	};
	static const char *const want[] = {
		"DE", "KP", "FR", "DE", "", "US",
	};
	struct sockaddr_storage	 ss[6];
	char			 cc[3];
	intptr_t		 bad = 0;
	int			 i, n;

	for (i = 0; i < 6; i++)
		addr(addrs[i], &ss[i]);
	for (n = 0; n < TEST_ROUNDS; n++) {
		i = n % 6;
		if (geoip_country(g, (struct sockaddr *)&ss[i], cc) !=
		    (*want[i] != '\0') || strcmp(cc, want[i]) != 0)
			bad++;
	}
	return (void *)bad;
}

/* Concurrent lookups on one handle all get the right answers. */
static void
test_threads(const struct wsg_geoip *g)
{
	pthread_t	 t[TEST_THREADS];
	void		*ret;
	intptr_t	 bad = 0;
	int		 i;

	for (i = 0; i < TEST_THREADS; i++)
		CHECK_INT(pthread_create(&t[i], NULL, thread_main,
		    (void *)g), 0);
	for (i = 0; i < TEST_THREADS; i++) {
		CHECK_INT(pthread_join(t[i], &ret), 0);
		bad += (intptr_t)ret;
	}
	CHECK_INT(bad, 0);
}

/* geoip_open() on a file that should be refused: NULL and err has want. */
static void
check_open_fails(const char *path, const char *want)
{
	struct wsg_geoip	*g;
	char			 err[512];

	memset(err, 'x', sizeof(err));
	g = geoip_open(path, err, sizeof(err));
	CHECK(g == NULL);
	geoip_close(g);
	CHECK(memchr(err, '\0', sizeof(err)) != NULL);
	CHECK(strstr(err, path) != NULL);
	if (strstr(err, want) == NULL)
		fprintf(stderr, "  open %s: \"%s\", want \"%s\"\n", path, err,
		    want);
	CHECK(strstr(err, want) != NULL);
}

/* Write len bytes of data to dir/name and return the path. */
static const char *
write_file(const char *name, const void *data, size_t len)
{
	static char	 path[512];
	FILE		*f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	if ((f = fopen(path, "wb")) == NULL ||
	    fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		exit(2);
	}
	return path;
}

/* Missing, empty, foreign, truncated and wrong-type databases. */
static void
test_open_errors(const char *good, int have_script)
{
	static const char	 text[] = "this is not a MaxMind DB\n";
	struct wsg_geoip	*g;
	char			 path[512], err[512], buf[4096], small[16];
	const char		*asn_nets[] = { "127.0.0.0/24=DE", NULL };
	FILE			*f;
	size_t			 n;

	snprintf(path, sizeof(path), "%s/missing.mmdb", tmpdir);
	check_open_fails(path, "No such file or directory");
	check_open_fails(write_file("text.mmdb", text, sizeof(text) - 1),
	    "not a usable MaxMind DB file");
	check_open_fails(write_file("empty.mmdb", "", 0), "empty file");
	check_open_fails(tmpdir, "not a regular file");

	/* the first 4 KiB of a good database: the metadata is missing */
	if ((f = fopen(good, "rb")) == NULL) {
		perror(good);
		exit(2);
	}
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	CHECK(n > 64);
	check_open_fails(write_file("cut.mmdb", buf, n / 2),
	    "not a usable MaxMind DB file");

	/* a tiny err buffer is still terminated */
	memset(small, 'x', sizeof(small));
	CHECK(geoip_open(path, small, sizeof(small)) == NULL);
	CHECK_INT(strlen(small), sizeof(small) - 1);

	geoip_close(NULL);

	if (!have_script) {
		printf("test_geoip: database type checks not run "
		    "(WSG_TEST_MMDB is set)\n");
		return;
	}
	/* a database without countries (ASN, ISP) is refused ... */
	snprintf(path, sizeof(path), "%s/asn.mmdb", tmpdir);
	make_mmdb(0, "GeoLite2-ASN", path, asn_nets);
	check_open_fails(path, "database type \"GeoLite2-ASN\" has no "
	    "country data");
	/* ... as is one whose type only starts like "country" */
	snprintf(path, sizeof(path), "%s/count.mmdb", tmpdir);
	make_mmdb(0, "GeoIP2-User-Count", path, asn_nets);
	check_open_fails(path, "database type \"GeoIP2-User-Count\" has no "
	    "country data");
	/* ... a City one is fine */
	snprintf(path, sizeof(path), "%s/city.mmdb", tmpdir);
	make_mmdb(0, "GeoIP2-City", path, asn_nets);
	g = geoip_open(path, err, sizeof(err));
	CHECK(g != NULL);
	if (g != NULL) {
		check_lookup(g, "127.0.0.7", 1, "DE");
		geoip_close(g);
	}
}

/* The values allow_countries and deny_countries accept. */
static void
test_code_valid(void)
{
	CHECK_INT(geoip_country_code_valid("DE"), 1);
	CHECK_INT(geoip_country_code_valid("KP"), 1);
	CHECK_INT(geoip_country_code_valid("AZ"), 1);
	CHECK_INT(geoip_country_code_valid("de"), 0);
	CHECK_INT(geoip_country_code_valid("De"), 0);
	CHECK_INT(geoip_country_code_valid("D"), 0);
	CHECK_INT(geoip_country_code_valid("DEU"), 0);
	CHECK_INT(geoip_country_code_valid(""), 0);
	CHECK_INT(geoip_country_code_valid(NULL), 0);
	CHECK_INT(geoip_country_code_valid("D1"), 0);
	CHECK_INT(geoip_country_code_valid("D "), 0);
	CHECK_INT(geoip_country_code_valid(" D"), 0);
	CHECK_INT(geoip_country_code_valid("@["), 0);
	CHECK_INT(geoip_country_code_valid("\xc3\x84"), 0);
}

/* The assigned codes are read in pairs, never across two of them. */
static void
test_code_assigned(void)
{
	CHECK_INT(geoip_country_code_assigned("AD"), 1);	/* first */
	CHECK_INT(geoip_country_code_assigned("ZW"), 1);	/* last */
	CHECK_INT(geoip_country_code_assigned("DE"), 1);
	CHECK_INT(geoip_country_code_assigned("XK"), 1);
	CHECK_INT(geoip_country_code_assigned("UK"), 0);
	CHECK_INT(geoip_country_code_assigned("ZZ"), 0);
	/* Straddling two codes: "AD" "AE", "TZ" "UA", "AE" "AF". */
	CHECK_INT(geoip_country_code_assigned("DA"), 0);
	CHECK_INT(geoip_country_code_assigned("ZU"), 0);
	CHECK_INT(geoip_country_code_assigned("EA"), 0);
}

/* Remove the temporary folder and what the tests put in it. */
static void
cleanup(void)
{
	static const char *const names[] = {
		"test.mmdb", "text.mmdb", "empty.mmdb", "cut.mmdb",
		"asn.mmdb", "city.mmdb", "v4.mmdb",
	};
	char	path[512];
	size_t	i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
		unlink(path);
	}
	rmdir(tmpdir);
}

/*
 * An IPv4-only database (ip_version 4, as some vendors ship): an IPv4
 * client that a dual-stack listener sees as ::ffff:a.b.c.d still gets its
 * country; a real IPv6 address is unknown, not an error.
 */
static void
test_ipv4_only(void)
{
	static const char *const nets[] = { "127.0.0.0/24=DE", NULL };
	struct wsg_geoip	*g;
	char			 path[512], err[512];

	snprintf(path, sizeof(path), "%s/v4.mmdb", tmpdir);
	make_mmdb(1, NULL, path, nets);
	if ((g = geoip_open(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "test_geoip: %s\n", err);
		CHECK(!"open the IPv4-only database");
		return;
	}
	check_lookup(g, "127.0.0.1", 1, "DE");
	check_lookup(g, "::ffff:127.0.0.1", 1, "DE");
	check_lookup(g, "::ffff:192.0.2.1", 0, NULL);
	check_lookup(g, "::1", 0, NULL);
	geoip_close(g);
}

int
main(void)
{
	struct wsg_geoip	*g;
	const char		*top, *env, *tmp;
	char			 db[512], err[512];
	int			 have_script;

	if ((top = getenv("top_srcdir")) == NULL || *top == '\0')
		top = ".";
	snprintf(script, sizeof(script), "%s/tests/geoip/make-mmdb.pl", top);
	if ((tmp = getenv("TMPDIR")) == NULL || *tmp == '\0')
		tmp = "/tmp";
	snprintf(tmpdir, sizeof(tmpdir), "%s/test_geoip.XXXXXX", tmp);
	if (mkdtemp(tmpdir) == NULL) {
		perror(tmpdir);
		return 2;
	}
	atexit(cleanup);

	if ((env = getenv("WSG_TEST_MMDB")) != NULL && *env != '\0') {
		snprintf(db, sizeof(db), "%s", env);
		have_script = 0;
	} else {
		snprintf(db, sizeof(db), "%s/test.mmdb", tmpdir);
		make_mmdb(0, NULL, db, test_networks);
		have_script = 1;
	}

	g = geoip_open(db, err, sizeof(err));
	if (g == NULL)
		fprintf(stderr, "test_geoip: %s\n", err);
	CHECK(g != NULL);
	if (g != NULL) {
		test_lookups(g);
		test_threads(g);
		geoip_close(g);
	}
	test_open_errors(db, have_script);
	if (have_script)
		test_ipv4_only();
	test_code_valid();
	test_code_assigned();
	return unit_done("test_geoip");
}
