/*
 * Unit tests of the shared rate-limit store against a real redis-server,
 * which the test starts on a free port and stops by its PID: URL parsing,
 * limits up to the edge, two stores (two event bases, as two gateways)
 * sharing one limit, release, cancel, lease expiry when a gateway stops
 * refreshing, Redis stopped, killed and restarted, NOSCRIPT, databases
 * and unix sockets.  Every wait is bounded.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "log.h"
#include "ratelimit.h"
#include "store.h"
#include "unit.h"

static pid_t	redis_pid = -1;
static int	redis_port;
static char	tmpdir[] = "/tmp/wsgate-store.XXXXXX";

/* One store_admit() answer. */
struct answer {
	int			 a_calls;
	enum wsg_store_result	 a_res;
	uint32_t		 a_ra;
	uint64_t		 a_at_ms;
};

/* Record an answer. */
static void
answer_cb(void *arg, enum wsg_store_result res, uint32_t ra)
{
	struct answer	*a = arg;

	a->a_calls++;
	a->a_res = res;
	a->a_ra = ra;
	a->a_at_ms = ratelimit_now_ms();
}

/* A port nobody listens on now. */
static int
free_port(void)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof(sin);
	int			fd, port;

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		return -1;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) == -1) {
		close(fd);
		return -1;
	}
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* A synchronous client for checks, or NULL. */
static redisContext *
sync_client(int port, const char *sock)
{
	struct timeval	 tv = { 1, 0 };
	redisContext	*c;

	c = sock != NULL ? redisConnectUnixWithTimeout(sock, tv) :
	    redisConnectWithTimeout("127.0.0.1", port, tv);
	if (c != NULL && c->err) {
		redisFree(c);
		return NULL;
	}
	return c;
}

/*
 * Start redis-server on port (and a unix socket if sock), wait until it
 * answers PING (at most 5 s).  Returns its PID or -1.
 */
static pid_t
redis_start(int port, const char *sock)
{
	char		 portbuf[16];
	pid_t		 pid;
	int		 i, fd;
	redisContext	*c;
	redisReply	*r;

	snprintf(portbuf, sizeof(portbuf), "%d", port);
	if ((pid = fork()) == -1)
		return -1;
	if (pid == 0) {
		if ((fd = open("/dev/null", O_RDWR)) != -1) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if (chdir(tmpdir) == -1)
			_exit(127);
		if (sock != NULL)
			execlp("redis-server", "redis-server", "--port",
			    portbuf, "--bind", "127.0.0.1", "--save", "",
			    "--appendonly", "no", "--unixsocket", sock, NULL);
		else
			execlp("redis-server", "redis-server", "--port",
			    portbuf, "--bind", "127.0.0.1", "--save", "",
			    "--appendonly", "no", NULL);
		_exit(127);
	}
	for (i = 0; i < 500; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -1;
		if ((c = sync_client(port, NULL)) != NULL) {
			r = redisCommand(c, "PING");
			redisFree(c);
			if (r != NULL) {
				freeReplyObject(r);
				return pid;
			}
		}
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

/* Stop a redis-server by its PID and reap it. */
static void
redis_stop(pid_t pid, int sig)
{
	if (pid <= 0)
		return;
	kill(pid, SIGCONT);
	kill(pid, sig);
	waitpid(pid, NULL, 0);
}

/* Run one command on a synchronous client; returns its integer reply. */
static long long
redis_int(redisContext *c, const char *fmt, const char *arg)
{
	redisReply	*r;
	long long	 v = -1;

	if (c == NULL || (r = redisCommand(c, fmt, arg)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_INTEGER)
		v = r->integer;
	freeReplyObject(r);
	return v;
}

/* Run an event base, and another if given, until *done or ms pass. */
static int
pump(struct event_base *b1, struct event_base *b2, const int *done,
    uint64_t ms)
{
	uint64_t	end = ratelimit_now_ms() + ms;

	while (ratelimit_now_ms() < end) {
		event_base_loop(b1, EVLOOP_NONBLOCK);
		if (b2 != NULL)
			event_base_loop(b2, EVLOOP_NONBLOCK);
		if (done != NULL && *done)
			return 1;
		usleep(500);
	}
	return done == NULL;
}

/* Wait until a store is connected (at most ms). */
static int
wait_up(struct event_base *b, struct wsg_store *st, uint64_t ms)
{
	struct wsg_store_stats	s;
	uint64_t		end = ratelimit_now_ms() + ms;

	while (ratelimit_now_ms() < end) {
		event_base_loop(b, EVLOOP_NONBLOCK);
		store_stats(st, &s);
		if (s.ss_connected)
			return 1;
		usleep(1000);
	}
	return 0;
}

/* Admit and wait for the answer (at most 3 s); returns the result. */
static enum wsg_store_result
admit(struct event_base *b, struct wsg_store *st, const char *pol,
    const char *addr, const struct wsg_ratelimit_conf *rc, uint64_t id,
    uint32_t *ra)
{
	struct answer	a;

	memset(&a, 0, sizeof(a));
	if (store_admit(st, pol, addr, rc, id, answer_cb, &a) == -1)
		return (enum wsg_store_result)-1;
	CHECK_INT(a.a_calls, 0);	/* never from within store_admit() */
	pump(b, NULL, &a.a_calls, 3000);
	CHECK_INT(a.a_calls, 1);
	if (ra != NULL)
		*ra = a.a_ra;
	return a.a_calls == 1 ? a.a_res : (enum wsg_store_result)-2;
}

/* A conf for the two limits the store keeps. */
static struct wsg_ratelimit_conf
conf(uint64_t amount, uint64_t per_ms, uint64_t burst, uint64_t concurrent)
{
	struct wsg_ratelimit_conf	rc;

	memset(&rc, 0, sizeof(rc));
	rc.rc_connections.rl_rate.r_amount = amount;
	rc.rc_connections.rl_rate.r_per_ms = per_ms;
	rc.rc_connections.rl_burst = burst;
	rc.rc_concurrent = concurrent;
	rc.rc_ipv6_prefix = 64;
	return rc;
}

/* A store conf for the test's redis. */
static struct wsg_store_conf
sconf(const char *url, uint64_t ttl_ms)
{
	struct wsg_store_conf	sc;
	const char		*err;

	memset(&sc, 0, sizeof(sc));
	sc.sc_url = (char *)(uintptr_t)url;
	if (store_parse_url(url, &sc, &err) == -1) {
		fprintf(stderr, "%s: %s\n", url, err);
		exit(2);
	}
	sc.sc_lease_ttl_ms = ttl_ms;
	sc.sc_key_prefix = (char *)(uintptr_t)"t:";
	return sc;
}

/* Free what store_parse_url() allocated in a test conf. */
static void
sconf_clear(struct wsg_store_conf *sc)
{
	free(sc->sc_host);
	free(sc->sc_path);
	sc->sc_host = sc->sc_path = NULL;
}

/* Good and bad URLs, with the exact messages. */
static void
test_url(void)
{
	struct wsg_store_conf	 sc;
	const char		*err;
	size_t			 i;
	static const struct {
		const char	*u;
		const char	*err;	/* NULL: parses */
		const char	*host;
		const char	*path;
		int		 port, db;
	} t[] = {
		{ "redis://127.0.0.1:6379/0", NULL, "127.0.0.1", NULL, 6379,
		    0 },
		{ "redis://10.0.0.5:7000/15", NULL, "10.0.0.5", NULL, 7000,
		    15 },
		{ "redis://127.0.0.1", NULL, "127.0.0.1", NULL, 6379, 0 },
		{ "redis://[::1]:6380/2", NULL, "::1", NULL, 6380, 2 },
		{ "redis://[::1]", NULL, "::1", NULL, 6379, 0 },
		{ "redis://localhost:6379", NULL, "127.0.0.1", NULL, 6379, 0 },
		{ "unix:///run/redis/redis.sock", NULL, NULL,
		    "/run/redis/redis.sock", 0, 0 },
		{ "unix:///run/redis.sock?db=3", NULL, NULL, "/run/redis.sock",
		    0, 3 },
		{ "http://127.0.0.1:6379", "expected redis://HOST:PORT/DB or "
		    "unix:///path?db=N", NULL, NULL, 0, 0 },
		{ "rediss://127.0.0.1:6379", "expected redis://HOST:PORT/DB "
		    "or unix:///path?db=N", NULL, NULL, 0, 0 },
		{ "redis://", "missing host", NULL, NULL, 0, 0 },
		{ "redis://:6379/0", "missing host before ':'", NULL, NULL,
		    0, 0 },
		{ "redis://user:pw@127.0.0.1:6379/0", "credentials in the URL "
		    "are not supported", NULL, NULL, 0, 0 },
		{ "redis://127.0.0.1:6379/0?timeout=1", "no query or fragment "
		    "is allowed", NULL, NULL, 0, 0 },
		{ "redis://127.0.0.1:6379/", "the database must be a number "
		    "from 0 to 65535", NULL, NULL, 0, 0 },
		{ "redis://127.0.0.1:6379/x", "the database must be a number "
		    "from 0 to 65535", NULL, NULL, 0, 0 },
		{ "redis://127.0.0.1:6379/65536", "the database must be a "
		    "number from 0 to 65535", NULL, NULL, 0, 0 },
		{ "redis://127.0.0.1:6379/01", "the database must be a number "
		    "from 0 to 65535", NULL, NULL, 0, 0 },
		{ "redis://127.0.0.1:0/0", "the port must be a number from 1 "
		    "to 65535", NULL, NULL, 0, 0 },
		{ "redis://127.0.0.1:99999/0", "the port must be a number "
		    "from 1 to 65535", NULL, NULL, 0, 0 },
		{ "redis://::1:6379/0", "an IPv6 address needs brackets, e.g. "
		    "[::1]:8443", NULL, NULL, 0, 0 },
		{ "unix://relative.sock", "expected unix:///absolute/path"
		    "[?db=N]", NULL, NULL, 0, 0 },
		{ "unix:///", "expected unix:///absolute/path[?db=N]", NULL,
		    NULL, 0, 0 },
		{ "unix:///s.sock?db=", "after the path only ?db=N may "
		    "follow, N from 0 to 65535", NULL, NULL, 0, 0 },
		{ "unix:///s.sock?database=1", "after the path only ?db=N may "
		    "follow, N from 0 to 65535", NULL, NULL, 0, 0 },
	};

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		memset(&sc, 0, sizeof(sc));
		err = NULL;
		if (t[i].err == NULL) {
			CHECK_INT(store_parse_url(t[i].u, &sc, &err), 0);
			if (t[i].host != NULL)
				CHECK_STR(sc.sc_host, t[i].host);
			else
				CHECK(sc.sc_host == NULL);
			if (t[i].path != NULL)
				CHECK_STR(sc.sc_path, t[i].path);
			else
				CHECK(sc.sc_path == NULL);
			CHECK_INT(sc.sc_port, t[i].port);
			CHECK_INT(sc.sc_db, t[i].db);
		} else {
			CHECK_INT(store_parse_url(t[i].u, &sc, &err), -1);
			CHECK_STR(err, t[i].err);
		}
		sconf_clear(&sc);
	}
}

/* Limits up to the edge, shared by two stores on two bases. */
static void
test_limits(void)
{
	struct event_base		*b1, *b2;
	struct wsg_store		*s1, *s2;
	struct wsg_store_conf		 sc;
	struct wsg_ratelimit_conf	 rate = conf(1, 2000, 3, 0);
	struct wsg_ratelimit_conf	 conc = conf(0, 0, 0, 3), both;
	struct wsg_store_stats		 ss;
	struct answer			 a, many[4];
	redisContext			*c;
	char				 url[64];
	uint32_t			 ra;
	int				 i;

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", redis_port);
	sc = sconf(url, 30000);
	b1 = event_base_new();
	b2 = event_base_new();
	s1 = store_new(b1, &sc);
	s2 = store_new(b2, &sc);
	CHECK(s1 != NULL && s2 != NULL);
	if (s1 == NULL || s2 == NULL)
		exit(1);
	CHECK(wait_up(b1, s1, 3000));
	CHECK(wait_up(b2, s2, 3000));

	/* The rate: a burst of 3 over both gateways, 2 s a token. */
	CHECK_INT(admit(b1, s1, "p", "192.0.2.1", &rate, 1, NULL),
	    WSG_STORE_OK);
	CHECK_INT(admit(b2, s2, "p", "192.0.2.1", &rate, 1, NULL),
	    WSG_STORE_OK);
	CHECK_INT(admit(b1, s1, "p", "192.0.2.1", &rate, 2, NULL),
	    WSG_STORE_OK);
	CHECK_INT(admit(b2, s2, "p", "192.0.2.1", &rate, 2, &ra),
	    WSG_STORE_RATE);
	CHECK(ra >= 1 && ra <= 2);
	CHECK_INT(admit(b1, s1, "p", "192.0.2.1", &rate, 3, &ra),
	    WSG_STORE_RATE);
	/* Another address and another policy are apart. */
	CHECK_INT(admit(b1, s1, "p", "192.0.2.2", &rate, 4, NULL),
	    WSG_STORE_OK);
	CHECK_INT(admit(b1, s1, "q", "192.0.2.1", &rate, 5, NULL),
	    WSG_STORE_OK);

	/* Concurrency: 3 over both; release frees a slot. */
	CHECK_INT(admit(b1, s1, "p", "2001:db8::/64", &conc, 10, NULL),
	    WSG_STORE_OK);
	CHECK_INT(admit(b2, s2, "p", "2001:db8::/64", &conc, 10, NULL),
	    WSG_STORE_OK);
	CHECK_INT(admit(b1, s1, "p", "2001:db8::/64", &conc, 11, NULL),
	    WSG_STORE_OK);
	CHECK_INT(admit(b2, s2, "p", "2001:db8::/64", &conc, 11, &ra),
	    WSG_STORE_CONCURRENT);
	CHECK_INT(ra, 1);
	CHECK_INT(admit(b1, s1, "p", "2001:db8::/64", &conc, 12, NULL),
	    WSG_STORE_CONCURRENT);
	store_stats(s1, &ss);
	CHECK_INT(ss.ss_leases, 2);
	c = sync_client(redis_port, NULL);
	CHECK_INT(redis_int(c, "ZCARD %s", "t:lease:p:2001:db8::/64"), 3);
	store_release(s2, 10);
	store_release(s2, 10);		/* once only */
	pump(b2, NULL, NULL, 50);
	CHECK_INT(redis_int(c, "ZCARD %s", "t:lease:p:2001:db8::/64"), 2);
	CHECK_INT(admit(b1, s1, "p", "2001:db8::/64", &conc, 13, NULL),
	    WSG_STORE_OK);
	CHECK_INT(admit(b2, s2, "p", "2001:db8::/64", &conc, 14, NULL),
	    WSG_STORE_CONCURRENT);
	/* The rate bucket has a TTL, so idle keys go away. */
	CHECK(redis_int(c, "PTTL %s", "t:conn:p:192.0.2.1") > 0);
	CHECK(redis_int(c, "PTTL %s", "t:lease:p:2001:db8::/64") > 0);

	/* Both limits: refused for concurrency spends no token. */
	both = conf(1, 60000, 2, 1);
	CHECK_INT(admit(b1, s1, "b", "192.0.2.9", &both, 20, NULL),
	    WSG_STORE_OK);
	CHECK_INT(admit(b2, s2, "b", "192.0.2.9", &both, 20, NULL),
	    WSG_STORE_CONCURRENT);
	store_release(s1, 20);
	pump(b1, NULL, NULL, 50);
	CHECK_INT(admit(b2, s2, "b", "192.0.2.9", &both, 21, NULL),
	    WSG_STORE_OK);
	store_release(s2, 21);
	pump(b2, NULL, NULL, 50);
	CHECK_INT(admit(b1, s1, "b", "192.0.2.9", &both, 22, &ra),
	    WSG_STORE_RATE);
	CHECK(ra >= 59 && ra <= 60);

	/* Several at once from both gateways: exactly the limit. */
	conc = conf(0, 0, 0, 2);
	memset(many, 0, sizeof(many));
	for (i = 0; i < 4; i++)
		CHECK_INT(store_admit(i % 2 ? s2 : s1, "m", "198.51.100.1",
		    &conc, 100 + (uint64_t)i, answer_cb, &many[i]), 0);
	for (i = 0; i < 4; i++) {
		pump(b1, b2, &many[i].a_calls, 3000);
		CHECK_INT(many[i].a_calls, 1);
	}
	CHECK_INT((many[0].a_res == WSG_STORE_OK) +
	    (many[1].a_res == WSG_STORE_OK) +
	    (many[2].a_res == WSG_STORE_OK) +
	    (many[3].a_res == WSG_STORE_OK), 2);

	/* Cancelled before the answer: no callback, no lease left. */
	memset(&a, 0, sizeof(a));
	conc = conf(0, 0, 0, 5);
	CHECK_INT(store_admit(s1, "x", "203.0.113.1", &conc, 200, answer_cb,
	    &a), 0);
	CHECK_INT(store_cancel(s1, 200), 1);
	CHECK_INT(store_cancel(s1, 200), 0);
	pump(b1, NULL, NULL, 200);
	CHECK_INT(a.a_calls, 0);
	CHECK_INT(redis_int(c, "ZCARD %s", "t:lease:x:203.0.113.1"), 0);

	/* The script flushed from Redis: EVAL takes over. */
	redisFree(c);
	c = sync_client(redis_port, NULL);
	if (c != NULL)
		freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
	CHECK_INT(admit(b1, s1, "y", "203.0.113.2", &conc, 300, NULL),
	    WSG_STORE_OK);
	CHECK_INT(admit(b1, s1, "y", "203.0.113.2", &conc, 301, NULL),
	    WSG_STORE_OK);

	/* No limit the store keeps: admitted. */
	both = conf(0, 0, 0, 0);
	CHECK_INT(admit(b1, s1, "z", "203.0.113.3", &both, 400, NULL),
	    WSG_STORE_OK);

	/* Freed with requests pending: each called once, DOWN. */
	memset(many, 0, sizeof(many));
	for (i = 0; i < 3; i++)
		CHECK_INT(store_admit(s2, "f", "203.0.113.4", &conc,
		    500 + (uint64_t)i, answer_cb, &many[i]), 0);
	store_free(s2);
	for (i = 0; i < 3; i++) {
		CHECK_INT(many[i].a_calls, 1);
		CHECK_INT(many[i].a_res, WSG_STORE_DOWN);
	}
	pump(b1, b2, NULL, 50);
	for (i = 0; i < 3; i++)
		CHECK_INT(many[i].a_calls, 1);
	store_stats(s1, &ss);
	CHECK_INT(ss.ss_up, 1);
	CHECK_INT(ss.ss_down, 0);
	CHECK_INT(ss.ss_failed, 0);
	store_free(s1);
	redisFree(c);
	event_base_free(b1);
	event_base_free(b2);
	sconf_clear(&sc);
}

/* A gateway that stops refreshing stops counting after lease_ttl. */
static void
test_lease_expiry(void)
{
	struct event_base		*b1, *b2;
	struct wsg_store		*s1, *s2;
	struct wsg_store_conf		 sc;
	struct wsg_ratelimit_conf	 conc = conf(0, 0, 0, 1);
	redisContext			*c;
	redisReply			*r, *t;
	char				 url[64];
	uint64_t			 t0;
	long long			 until, now;
	int				 ok = 0;

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", redis_port);
	sc = sconf(url, 1000);		/* below the config minimum: a test */
	b1 = event_base_new();
	b2 = event_base_new();
	s1 = store_new(b1, &sc);
	s2 = store_new(b2, &sc);
	CHECK(wait_up(b1, s1, 3000) && wait_up(b2, s2, 3000));
	CHECK_INT(admit(b1, s1, "e", "192.0.2.50", &conc, 1, NULL),
	    WSG_STORE_OK);
	/* Refreshed every 333 ms: still counted after 2.5 TTLs. */
	pump(b1, b2, NULL, 2500);
	CHECK_INT(admit(b2, s2, "e", "192.0.2.50", &conc, 1, NULL),
	    WSG_STORE_CONCURRENT);
	/* The gateway "crashes": no release, no refresh. */
	store_free(s1);
	/*
	 * Its lease ends within one TTL of now, on Redis' own clock: a
	 * test that cannot fail on a slow machine, as a refresh is never
	 * later than now.
	 */
	c = sync_client(redis_port, NULL);
	CHECK(c != NULL);
	r = c != NULL ? redisCommand(c, "ZRANGE t:lease:e:192.0.2.50 -1 -1 "
	    "WITHSCORES") : NULL;
	t = c != NULL ? redisCommand(c, "TIME") : NULL;
	CHECK(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
	CHECK(t != NULL && t->type == REDIS_REPLY_ARRAY && t->elements == 2);
	if (r != NULL && r->elements == 2 && t != NULL && t->elements == 2) {
		until = strtoll(r->element[1]->str, NULL, 10);
		now = strtoll(t->element[0]->str, NULL, 10) * 1000 +
		    strtoll(t->element[1]->str, NULL, 10) / 1000;
		CHECK(until - now <= 1000);
	}
	if (r != NULL)
		freeReplyObject(r);
	if (t != NULL)
		freeReplyObject(t);
	if (c != NULL)
		redisFree(c);
	CHECK_INT(admit(b2, s2, "e", "192.0.2.50", &conc, 2, NULL),
	    WSG_STORE_CONCURRENT);
	t0 = ratelimit_now_ms();
	while (ratelimit_now_ms() - t0 < 10000) {
		if (admit(b2, s2, "e", "192.0.2.50", &conc, 3, NULL) ==
		    WSG_STORE_OK) {
			ok = 1;
			break;
		}
		pump(b2, NULL, NULL, 100);
	}
	CHECK(ok);
	store_free(s2);
	event_base_free(b1);
	event_base_free(b2);
	sconf_clear(&sc);
}

static int	ticks;

/* A 20 ms ticker: proves the loop keeps running while Redis is away. */
static void
tick_cb(evutil_socket_t fd, short ev, void *arg)
{
	ticks++;
}

/* Redis stopped, killed, restarted: DOWN promptly, then back. */
static void
test_failures(void)
{
	struct event_base		*b;
	struct wsg_store		*s;
	struct wsg_store_conf		 sc;
	struct wsg_store_stats		 ss;
	struct wsg_ratelimit_conf	 conc = conf(0, 0, 0, 5);
	struct event			*tick;
	struct timeval			 tv = { 0, 20000 };
	struct answer			 a;
	redisContext			*c;
	char				 url[64];
	uint64_t			 t0;

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", redis_port);
	sc = sconf(url, 30000);
	b = event_base_new();
	s = store_new(b, &sc);
	CHECK(wait_up(b, s, 3000));
	tick = event_new(b, -1, EV_PERSIST, tick_cb, NULL);
	event_add(tick, &tv);
	CHECK_INT(admit(b, s, "k", "192.0.2.60", &conc, 1, NULL),
	    WSG_STORE_OK);

	/* Stopped: no reply within 500 ms, the loop keeps running. */
	kill(redis_pid, SIGSTOP);
	memset(&a, 0, sizeof(a));
	ticks = 0;
	t0 = ratelimit_now_ms();
	CHECK_INT(store_admit(s, "k", "192.0.2.60", &conc, 2, answer_cb, &a),
	    0);
	pump(b, NULL, &a.a_calls, 3000);
	CHECK_INT(a.a_calls, 1);
	CHECK_INT(a.a_res, WSG_STORE_DOWN);
	CHECK(a.a_at_ms - t0 >= 450 && a.a_at_ms - t0 < 1000);
	CHECK(ticks >= 10);
	store_stats(s, &ss);
	CHECK_INT(ss.ss_timeouts, 1);
	CHECK_INT(ss.ss_down, 1);
	CHECK_INT(ss.ss_connected, 0);
	kill(redis_pid, SIGCONT);
	CHECK(wait_up(b, s, 3000));
	store_stats(s, &ss);
	CHECK_INT(ss.ss_up, 2);

	/* Killed: DOWN at once, and at once again while it stays away. */
	redis_stop(redis_pid, SIGKILL);
	redis_pid = -1;
	memset(&a, 0, sizeof(a));
	t0 = ratelimit_now_ms();
	CHECK_INT(store_admit(s, "k", "192.0.2.60", &conc, 3, answer_cb, &a),
	    0);
	pump(b, NULL, &a.a_calls, 3000);
	CHECK_INT(a.a_calls, 1);
	CHECK_INT(a.a_res, WSG_STORE_DOWN);
	CHECK(a.a_at_ms - t0 < 1000);
	pump(b, NULL, NULL, 300);
	ticks = 0;
	t0 = ratelimit_now_ms();
	CHECK_INT(admit(b, s, "k", "192.0.2.60", &conc, 4, NULL),
	    WSG_STORE_DOWN);
	CHECK(ratelimit_now_ms() - t0 < 200);
	pump(b, NULL, NULL, 1000);
	CHECK(ticks >= 25);
	store_stats(s, &ss);
	CHECK_INT(ss.ss_down, 2);	/* logged and counted once */
	CHECK(ss.ss_failed >= 3);

	/* Restarted: reconnects within the backoff, admits again. */
	redis_pid = redis_start(redis_port, NULL);
	CHECK(redis_pid > 0);
	CHECK(wait_up(b, s, 7000));
	CHECK_INT(admit(b, s, "k", "192.0.2.61", &conc, 5, NULL),
	    WSG_STORE_OK);
	/* The lease held from before the restart is back in Redis. */
	c = sync_client(redis_port, NULL);
	CHECK_INT(redis_int(c, "ZCARD %s", "t:lease:k:192.0.2.60"), 1);
	store_stats(s, &ss);
	CHECK_INT(ss.ss_up, 3);
	CHECK_INT(ss.ss_down, 2);
	CHECK_INT(ss.ss_leases, 2);
	redisFree(c);
	event_free(tick);
	store_free(s);
	event_base_free(b);
	sconf_clear(&sc);
}

/* Nothing listens: DOWN promptly, from the first request. */
static void
test_never_up(void)
{
	struct event_base		*b;
	struct wsg_store		*s;
	struct wsg_store_conf		 sc;
	struct wsg_store_stats		 ss;
	struct wsg_ratelimit_conf	 conc = conf(0, 0, 0, 5);
	char				 url[64];
	uint64_t			 t0;

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", free_port());
	sc = sconf(url, 30000);
	b = event_base_new();
	s = store_new(b, &sc);
	t0 = ratelimit_now_ms();
	CHECK_INT(admit(b, s, "n", "192.0.2.70", &conc, 1, NULL),
	    WSG_STORE_DOWN);
	CHECK(ratelimit_now_ms() - t0 < 1000);
	pump(b, NULL, NULL, 500);
	store_stats(s, &ss);
	CHECK_INT(ss.ss_down, 1);
	CHECK_INT(ss.ss_up, 0);
	store_free(s);
	event_base_free(b);
	sconf_clear(&sc);
}

/* A database number and a unix socket. */
static void
test_db_unix(void)
{
	struct event_base		*b;
	struct wsg_store		*s;
	struct wsg_store_conf		 sc;
	struct wsg_ratelimit_conf	 conc = conf(0, 0, 0, 5);
	redisContext			*c;
	redisReply			*r;
	char				 url[PATH_MAX + 16], sock[PATH_MAX];
	pid_t				 pid;
	int				 port = free_port();

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/3", redis_port);
	sc = sconf(url, 30000);
	b = event_base_new();
	s = store_new(b, &sc);
	CHECK(wait_up(b, s, 3000));
	CHECK_INT(admit(b, s, "d", "192.0.2.80", &conc, 1, NULL),
	    WSG_STORE_OK);
	c = sync_client(redis_port, NULL);
	CHECK_INT(redis_int(c, "EXISTS %s", "t:lease:d:192.0.2.80"), 0);
	if (c != NULL && (r = redisCommand(c, "SELECT 3")) != NULL)
		freeReplyObject(r);
	CHECK_INT(redis_int(c, "EXISTS %s", "t:lease:d:192.0.2.80"), 1);
	if (c != NULL)
		redisFree(c);
	store_free(s);
	sconf_clear(&sc);

	snprintf(sock, sizeof(sock), "%s/redis.sock", tmpdir);
	pid = redis_start(port, sock);
	CHECK(pid > 0);
	snprintf(url, sizeof(url), "unix://%s?db=1", sock);
	sc = sconf(url, 30000);
	s = store_new(b, &sc);
	CHECK(wait_up(b, s, 3000));
	CHECK_INT(admit(b, s, "u", "192.0.2.81", &conc, 1, NULL),
	    WSG_STORE_OK);
	c = sync_client(0, sock);
	if (c != NULL && (r = redisCommand(c, "SELECT 1")) != NULL)
		freeReplyObject(r);
	CHECK_INT(redis_int(c, "ZCARD %s", "t:lease:u:192.0.2.81"), 1);
	if (c != NULL)
		redisFree(c);
	store_free(s);
	sconf_clear(&sc);
	redis_stop(pid, SIGTERM);
	unlink(sock);
	event_base_free(b);
}

/* Run every group against a private redis-server; exit 1 on failure. */
int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	log_open("stderr", "off", 2);
	test_url();
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	redis_port = free_port();
	redis_pid = redis_start(redis_port, NULL);
	if (redis_pid <= 0) {
		fprintf(stderr, "test_store: cannot start redis-server (is "
		    "it installed? contrib/install-deps.sh installs it)\n");
		CHECK(redis_pid > 0);
		rmdir(tmpdir);
		return unit_done("test_store");
	}
	test_limits();
	test_lease_expiry();
	test_never_up();
	test_failures();
	test_db_unix();
	redis_stop(redis_pid, SIGTERM);
	rmdir(tmpdir);
	return unit_done("test_store");
}
