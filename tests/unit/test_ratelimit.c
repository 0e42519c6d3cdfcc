/*
 * Unit tests of the rate limits: token-bucket arithmetic (burst, refill,
 * Retry-After), address keys (IPv6 by prefix, IPv4-mapped as IPv4), and
 * the shared table: exact limits, expiry, its memory cap under a flood of
 * addresses, and exactness across threads.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <pthread.h>
#include <stdint.h>

#include "ratelimit.h"
#include "unit.h"

/* A limit of amount per period with a burst. */
static struct wsg_rl_limit
limit(uint64_t amount, uint64_t per_ms, uint64_t burst)
{
	struct wsg_rl_limit	l;

	l.rl_rate.r_amount = amount;
	l.rl_rate.r_per_ms = per_ms;
	l.rl_burst = burst;
	return l;
}

/* An IPv4 or IPv6 socket address from text. */
static struct sockaddr_storage
addr(const char *s)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, s, &sin->sin_addr) == 1)
		sin->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, s, &sin6->sin6_addr) == 1)
		sin6->sin6_family = AF_INET6;
	else
		exit(2);
	return ss;
}

/* Burst, refill and waiting times of one bucket. */
static void
test_bucket(void)
{
	struct wsg_bucket	b;
	struct wsg_rl_limit	l = limit(10, 1000, 20), off, bytes;
	int			i, n;

	memset(&b, 0, sizeof(b));
	CHECK(bucket_full(&b, &l, 5000));
	/* A full bucket: exactly the burst, then nothing. */
	for (n = 0, i = 0; i < 30; i++)
		n += bucket_take(&b, &l, 1, 5000);
	CHECK_INT(n, 20);
	CHECK(!bucket_full(&b, &l, 5000));
	/* 10/s: one token per 100 ms. */
	CHECK_INT(bucket_wait_ms(&b, &l, 1, 5000), 100);
	CHECK_INT(bucket_wait_ms(&b, &l, 1, 5040), 60);
	CHECK_INT(bucket_take(&b, &l, 1, 5099), 0);
	CHECK_INT(bucket_take(&b, &l, 1, 5100), 1);
	CHECK_INT(bucket_take(&b, &l, 1, 5100), 0);
	CHECK_INT(bucket_wait_ms(&b, &l, 5, 5100), 500);
	/* After 2 s everything is back, never more than the burst. */
	CHECK(bucket_full(&b, &l, 7100));
	for (n = 0, i = 0; i < 30; i++)
		n += bucket_take(&b, &l, 1, 60000);
	CHECK_INT(n, 20);
	/* Time going backwards refills nothing. */
	CHECK_INT(bucket_take(&b, &l, 1, 1000), 0);
	/* More than the burst at once: never. */
	memset(&b, 0, sizeof(b));
	CHECK_INT(bucket_take(&b, &l, 21, 0), 0);
	CHECK(bucket_wait_ms(&b, &l, 21, 0) == UINT64_MAX);
	/* Even when n times the period wraps round to nothing. */
	CHECK_INT(bucket_take(&b, &l, UINT64_C(1) << 63, 0), 0);
	CHECK(bucket_wait_ms(&b, &l, UINT64_C(1) << 63, 0) == UINT64_MAX);
	CHECK_INT(bucket_take(&b, &l, 20, 0), 1);
	/* Off: always. */
	memset(&off, 0, sizeof(off));
	for (n = 0, i = 0; i < 1000; i++)
		n += bucket_take(&b, &off, 1000000, 0);
	CHECK_INT(n, 1000);
	/* Slow rates are exact too: 1/h. */
	l = limit(1, 3600000, 1);
	memset(&b, 0, sizeof(b));
	CHECK_INT(bucket_take(&b, &l, 1, 10), 1);
	CHECK_INT(bucket_take(&b, &l, 1, 3600009), 0);
	CHECK_INT(bucket_wait_ms(&b, &l, 1, 10), 3600000);
	CHECK_INT(bucket_take(&b, &l, 1, 3600010), 1);
	/* Bytes: 1MiB/s, burst 4MiB, and the largest numbers allowed. */
	bytes = limit(1 << 20, 1000, 4 << 20);
	memset(&b, 0, sizeof(b));
	CHECK_INT(bucket_take(&b, &bytes, 3 << 20, 0), 1);
	CHECK_INT(bucket_take(&b, &bytes, 2 << 20, 0), 0);
	CHECK_INT(bucket_wait_ms(&b, &bytes, 2 << 20, 0), 1000);
	CHECK_INT(bucket_take(&b, &bytes, 2 << 20, 1000), 1);
	bytes = limit(WSG_RL_MAX_BYTES, 3600000, WSG_RL_MAX_BYTES);
	memset(&b, 0, sizeof(b));
	CHECK_INT(bucket_take(&b, &bytes, WSG_RL_MAX_BYTES, 1), 1);
	CHECK_INT(bucket_take(&b, &bytes, 1, 1), 0);
	CHECK_INT(bucket_take(&b, &bytes, 298, 2), 1);
	CHECK_INT(bucket_take(&b, &bytes, 298, 2), 0);
	CHECK(bucket_full(&b, &bytes, UINT64_MAX / 2));
	/* Retry-After: whole seconds, rounded up, at least one. */
	CHECK_INT(ratelimit_retry_after(0), 1);
	CHECK_INT(ratelimit_retry_after(1), 1);
	CHECK_INT(ratelimit_retry_after(1000), 1);
	CHECK_INT(ratelimit_retry_after(1001), 2);
	CHECK_INT(ratelimit_retry_after(UINT64_MAX), UINT32_MAX);
}

/*
 * Refill at every millisecond after the burst is spent, for rates whose
 * refill per millisecond does not divide a token (3/s, 7/m): one token is
 * back exactly when dt * amount reaches per_ms, the wait is rounded up,
 * never down to 0 while a take would fail, and the bucket is full, not
 * wrapped round, from the millisecond the whole debt is paid.
 */
static void
test_bucket_refill_edges(void)
{
	static const uint64_t	lims[][3] = {
		{ 3, 1000, 1 }, { 3, 1000, 2 }, { 7, 60000, 3 }, { 10, 1000, 2 }
	};
	struct wsg_bucket	b, c;
	struct wsg_rl_limit	l;
	uint64_t		amount, per, burst, dt, want, t0 = 1000;
	size_t			i;
	int			bad_take, bad_wait, bad_full;

	for (i = 0; i < sizeof(lims) / sizeof(lims[0]); i++) {
		amount = lims[i][0];
		per = lims[i][1];
		burst = lims[i][2];
		l = limit(amount, per, burst);
		memset(&b, 0, sizeof(b));
		CHECK_INT(bucket_take(&b, &l, burst, t0), 1);
		bad_take = bad_wait = bad_full = 0;
		for (dt = 0; dt * amount <= (burst + 1) * per; dt++) {
			want = dt * amount >= per ? 0 :
			    (per - dt * amount + amount - 1) / amount;
			if (bucket_wait_ms(&b, &l, 1, t0 + dt) != want)
				bad_wait++;
			if (bucket_full(&b, &l, t0 + dt) !=
			    (dt * amount >= burst * per))
				bad_full++;
			c = b;
			if (bucket_take(&c, &l, 1, t0 + dt) != (want == 0))
				bad_take++;
		}
		CHECK_INT(bad_wait, 0);
		CHECK_INT(bad_full, 0);
		CHECK_INT(bad_take, 0);
	}
}

/* Keys: IPv4, IPv4-mapped, IPv6 by prefix. */
static void
test_keys(void)
{
	struct wsg_rlkey	k1, k2;
	struct sockaddr_storage	a;
	struct sockaddr_un	*un;
	char			buf[WSG_RL_ADDRKEY_MAX], longname[100];

	a = addr("192.0.2.7");
	CHECK_INT(rlkey_make(&k1, "chat", (struct sockaddr *)&a, 64), 0);
	CHECK_INT(rlkey_addr(&k1, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "192.0.2.7");
	a = addr("::ffff:192.0.2.7");
	CHECK_INT(rlkey_make(&k2, "chat", (struct sockaddr *)&a, 64), 0);
	CHECK_INT(rlkey_addr(&k2, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "192.0.2.7");
	CHECK(memcmp(k1.k_addr, k2.k_addr, 16) == 0 &&
	    k1.k_family == k2.k_family);
	a = addr("2001:db8:1:2:aaaa:bbbb:cccc:dddd");
	CHECK_INT(rlkey_make(&k1, "chat", (struct sockaddr *)&a, 64), 0);
	CHECK_INT(rlkey_addr(&k1, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "2001:db8:1:2::/64");
	CHECK_INT(rlkey_make(&k1, "chat", (struct sockaddr *)&a, 56), 0);
	CHECK_INT(rlkey_addr(&k1, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "2001:db8:1::/56");
	CHECK_INT(rlkey_make(&k1, "chat", (struct sockaddr *)&a, 61), 0);
	CHECK_INT(rlkey_addr(&k1, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "2001:db8:1::/61");
	/* The last byte kept is masked to the bit. */
	a = addr("2001:db8:1:7:aaaa:bbbb:cccc:dddd");
	CHECK_INT(rlkey_make(&k1, "chat", (struct sockaddr *)&a, 61), 0);
	CHECK_INT(rlkey_addr(&k1, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "2001:db8:1::/61");
	CHECK_INT(rlkey_make(&k1, "chat", (struct sockaddr *)&a, 63), 0);
	CHECK_INT(rlkey_addr(&k1, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "2001:db8:1:6::/63");
	CHECK_INT(rlkey_make(&k1, "chat", (struct sockaddr *)&a, 65), 0);
	CHECK_INT(rlkey_addr(&k1, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "2001:db8:1:7:8000::/65");
	a = addr("2001:db8:1:2:aaaa:bbbb:cccc:dddd");
	CHECK_INT(rlkey_make(&k1, "chat", (struct sockaddr *)&a, 128), 0);
	CHECK_INT(rlkey_addr(&k1, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "2001:db8:1:2:aaaa:bbbb:cccc:dddd/128");
	CHECK_INT(rlkey_addr(&k1, buf, 10), -1);
	/* Bad input. */
	CHECK_INT(rlkey_make(&k1, "chat", (struct sockaddr *)&a, 0), -1);
	CHECK_INT(rlkey_make(&k1, "chat", (struct sockaddr *)&a, 129), -1);
	memset(longname, 'p', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	CHECK_INT(rlkey_make(&k1, longname, (struct sockaddr *)&a, 64), -1);
	memset(&a, 0, sizeof(a));
	un = (struct sockaddr_un *)&a;
	un->sun_family = AF_UNIX;
	CHECK_INT(rlkey_make(&k1, "chat", (struct sockaddr *)&a, 64), -1);
}

/* A conf with the two per-address limits. */
static struct wsg_ratelimit_conf
conf(uint64_t amount, uint64_t per_ms, uint64_t burst, uint64_t concurrent)
{
	struct wsg_ratelimit_conf	rc;

	memset(&rc, 0, sizeof(rc));
	rc.rc_connections = limit(amount, per_ms, burst);
	rc.rc_concurrent = concurrent;
	rc.rc_ipv6_prefix = 64;
	return rc;
}

/* Admit one connection of an address at now. */
static enum wsg_rl_result
admit(struct wsg_rltable *t, const char *pol, const char *a,
    const struct wsg_ratelimit_conf *rc, uint64_t now, uint32_t *ra,
    struct wsg_rlkey *k)
{
	struct sockaddr_storage	ss = addr(a);

	if (rlkey_make(k, pol, (struct sockaddr *)&ss,
	    rc->rc_ipv6_prefix) == -1)
		exit(2);
	return rltable_admit(t, k, rc, now, ra);
}

/* The connection rate and concurrency of addresses in the table. */
static void
test_table_limits(void)
{
	struct wsg_rltable		*t;
	struct wsg_ratelimit_conf	 rc = conf(10, 1000, 3, 0), cc;
	struct wsg_rlkey		 k, ks[5];
	struct wsg_rl_stats		 s;
	uint32_t			 ra;
	int				 i;

	CHECK((t = rltable_new(1000, 60000)) != NULL);
	for (i = 0; i < 3; i++)
		CHECK_INT(admit(t, "p", "192.0.2.1", &rc, 1000, &ra, &k),
		    WSG_RL_OK);
	CHECK_INT(admit(t, "p", "192.0.2.1", &rc, 1000, &ra, &k),
	    WSG_RL_RATE);
	CHECK_INT(ra, 1);
	/* Another address and another policy have their own buckets. */
	CHECK_INT(admit(t, "p", "192.0.2.2", &rc, 1000, &ra, &k), WSG_RL_OK);
	CHECK_INT(admit(t, "q", "192.0.2.1", &rc, 1000, &ra, &k), WSG_RL_OK);
	/* Recovers after its window: 100 ms per connection. */
	CHECK_INT(admit(t, "p", "192.0.2.1", &rc, 1100, &ra, &k), WSG_RL_OK);
	CHECK_INT(admit(t, "p", "192.0.2.1", &rc, 1100, &ra, &k),
	    WSG_RL_RATE);
	/* A slow rate gives a long Retry-After: 2/m, 30 s a token. */
	rc = conf(2, 60000, 1, 0);
	CHECK_INT(admit(t, "slow", "192.0.2.9", &rc, 0, &ra, &k), WSG_RL_OK);
	CHECK(!k.k_tracked);
	CHECK_INT(admit(t, "slow", "192.0.2.9", &rc, 0, &ra, &k),
	    WSG_RL_RATE);
	CHECK_INT(ra, 30);
	CHECK_INT(admit(t, "slow", "192.0.2.9", &rc, 29001, &ra, &k),
	    WSG_RL_RATE);
	CHECK_INT(ra, 1);

	/* Concurrency: N open, then refused; release frees a slot. */
	cc = conf(0, 0, 0, 3);
	for (i = 0; i < 3; i++) {
		CHECK_INT(admit(t, "c", "198.51.100.1", &cc, 0, &ra, &ks[i]),
		    WSG_RL_OK);
		CHECK(ks[i].k_tracked);
	}
	CHECK_INT(admit(t, "c", "198.51.100.1", &cc, 0, &ra, &ks[3]),
	    WSG_RL_CONCURRENT);
	CHECK_INT(ra, 1);
	CHECK(!ks[3].k_tracked);
	rltable_release(t, &ks[3], 0);		/* not counted: no effect */
	CHECK_INT(admit(t, "c", "198.51.100.1", &cc, 0, &ra, &ks[3]),
	    WSG_RL_CONCURRENT);
	rltable_release(t, &ks[0], 0);
	rltable_release(t, &ks[0], 0);		/* idempotent */
	CHECK_INT(admit(t, "c", "198.51.100.1", &cc, 0, &ra, &ks[0]),
	    WSG_RL_OK);
	CHECK_INT(admit(t, "c", "198.51.100.1", &cc, 0, &ra, &ks[4]),
	    WSG_RL_CONCURRENT);

	/* Both: a refusal for concurrency spends no token. */
	cc = conf(1, 1000, 2, 1);
	CHECK_INT(admit(t, "b", "198.51.100.2", &cc, 0, &ra, &ks[0]),
	    WSG_RL_OK);
	CHECK_INT(admit(t, "b", "198.51.100.2", &cc, 0, &ra, &ks[1]),
	    WSG_RL_CONCURRENT);
	rltable_release(t, &ks[0], 0);
	CHECK_INT(admit(t, "b", "198.51.100.2", &cc, 0, &ra, &ks[0]),
	    WSG_RL_OK);
	rltable_release(t, &ks[0], 0);
	CHECK_INT(admit(t, "b", "198.51.100.2", &cc, 0, &ra, &ks[0]),
	    WSG_RL_RATE);

	/* No limit set: nothing is stored. */
	rltable_stats(t, &s);
	cc = conf(0, 0, 0, 0);
	CHECK_INT(admit(t, "none", "203.0.113.1", &cc, 0, &ra, &k),
	    WSG_RL_OK);
	CHECK(rltable_admit(t, &k, NULL, 0, &ra) == WSG_RL_OK);
	i = (int)s.rs_entries;
	rltable_stats(t, &s);
	CHECK_INT(s.rs_entries, i);
	rltable_free(t);
}

/* IPv6 clients share a bucket per /64 (or the configured prefix). */
static void
test_ipv6(void)
{
	struct wsg_rltable		*t;
	struct wsg_ratelimit_conf	 rc = conf(1, 60000, 2, 0);
	struct wsg_rlkey		 k;
	uint32_t			 ra;

	CHECK((t = rltable_new(1000, 60000)) != NULL);
	CHECK_INT(admit(t, "p", "2001:db8:0:1::1", &rc, 0, &ra, &k),
	    WSG_RL_OK);
	CHECK_INT(admit(t, "p", "2001:db8:0:1:ffff:eeee:dddd:cccc", &rc, 0,
	    &ra, &k), WSG_RL_OK);
	CHECK_INT(admit(t, "p", "2001:db8:0:1::99", &rc, 0, &ra, &k),
	    WSG_RL_RATE);
	/* The next /64 is another client. */
	CHECK_INT(admit(t, "p", "2001:db8:0:2::1", &rc, 0, &ra, &k),
	    WSG_RL_OK);
	/* With ipv6_prefix 128 each address is its own client. */
	rc.rc_ipv6_prefix = 128;
	CHECK_INT(admit(t, "p", "2001:db8:0:1::99", &rc, 0, &ra, &k),
	    WSG_RL_OK);
	/* With 48, the whole /48 is one. */
	rc.rc_ipv6_prefix = 48;
	CHECK_INT(admit(t, "p", "2001:db8:0:7::1", &rc, 0, &ra, &k),
	    WSG_RL_OK);
	CHECK_INT(admit(t, "p", "2001:db8:0:8::1", &rc, 0, &ra, &k),
	    WSG_RL_OK);
	CHECK_INT(admit(t, "p", "2001:db8:0:9::1", &rc, 0, &ra, &k),
	    WSG_RL_RATE);
	/* IPv4-mapped IPv6 and IPv4 are the same client. */
	rc.rc_ipv6_prefix = 64;
	CHECK_INT(admit(t, "p", "192.0.2.5", &rc, 0, &ra, &k), WSG_RL_OK);
	CHECK_INT(admit(t, "p", "::ffff:192.0.2.5", &rc, 0, &ra, &k),
	    WSG_RL_OK);
	CHECK_INT(admit(t, "p", "192.0.2.5", &rc, 0, &ra, &k), WSG_RL_RATE);
	CHECK_INT(admit(t, "p", "192.0.2.6", &rc, 0, &ra, &k), WSG_RL_OK);
	rltable_free(t);
}

/* An address from a number: 10.x.y.z, then 2001:db8:n::/64. */
static void
flood_addr(uint32_t n, char *buf, size_t len)
{
	if (n % 2 == 0)
		snprintf(buf, len, "10.%u.%u.%u", (n >> 16) & 0xff,
		    (n >> 8) & 0xff, n & 0xff);
	else
		snprintf(buf, len, "2001:db8:%x:%x::1", n >> 16, n & 0xffff);
}

/*
 * A flood of ten times the cap in distinct addresses: the table never
 * holds more than its cap, evicts instead, and once the cap is taken by
 * open connections refuses and counts it.
 */
static void
test_flood(void)
{
	struct wsg_rltable		*t;
	struct wsg_ratelimit_conf	 rc = conf(1, 1000, 1, 0), cc;
	struct wsg_rl_stats		 s;
	struct wsg_rlkey		 k, *open;
	uint32_t			 ra, i, over = 0, notok = 0, untracked;
	uint32_t			 full = 0;
	char				 a[64];
	const size_t			 max = 1000;

	CHECK((t = rltable_new(max, 600000)) != NULL);
	for (i = 0; i < 10 * max; i++) {
		flood_addr(i, a, sizeof(a));
		if (admit(t, "p", a, &rc, 0, &ra, &k) != WSG_RL_OK)
			notok++;
		rltable_stats(t, &s);
		if (s.rs_entries > max)
			over++;
	}
	CHECK_INT(over, 0);
	CHECK_INT(notok, 0);
	rltable_stats(t, &s);
	CHECK(s.rs_entries <= max && s.rs_entries >= max / 2);
	CHECK_INT(s.rs_max_entries, max);	/* as configured, not rounded */
	CHECK_INT(s.rs_evictions, 10 * max - s.rs_entries);
	CHECK_INT(s.rs_table_full, 0);
	/* A recent address is still tracked. */
	flood_addr(10 * max - 1, a, sizeof(a));
	CHECK_INT(admit(t, "p", a, &rc, 0, &ra, &k), WSG_RL_RATE);

	/* Open connections are never evicted: fill the table with them. */
	cc = conf(0, 0, 0, 1000);
	if ((open = calloc(10 * max, sizeof(*open))) == NULL)
		exit(2);
	for (i = 0; i < 10 * max; i++) {
		snprintf(a, sizeof(a), "172.16.%u.%u", i >> 8, i & 0xff);
		switch (admit(t, "open", a, &cc, 1, &ra, &open[i])) {
		case WSG_RL_OK:
			break;
		case WSG_RL_FULL:
			CHECK_INT(ra, 1);
			full++;
			break;
		default:
			notok++;
		}
	}
	CHECK_INT(notok, 0);
	rltable_stats(t, &s);
	CHECK(s.rs_entries <= max);
	for (untracked = 0, i = 0; i < 10 * max; i++)
		untracked += !open[i].k_tracked;
	CHECK(untracked > 0);
	CHECK_INT(full, untracked);
	CHECK_INT(s.rs_table_full, untracked);
	CHECK_INT(10 * max - untracked, s.rs_entries);
	for (i = 0; i < 10 * max; i++)
		rltable_release(t, &open[i], 2);
	free(open);
	/* Released, they become evictable again. */
	CHECK_INT(admit(t, "p", "192.0.2.200", &rc, 3, &ra, &k), WSG_RL_OK);
	rltable_stats(t, &s);
	CHECK_INT(s.rs_table_full, untracked);
	CHECK(s.rs_entries <= max);
	rltable_free(t);
}

/* Idle entries expire after idle_expiry; busy or spent ones stay. */
static void
test_expiry(void)
{
	struct wsg_rltable		*t;
	struct wsg_ratelimit_conf	 rc = conf(1, 1000, 1, 0);
	struct wsg_ratelimit_conf	 cc = conf(0, 0, 0, 5);
	struct wsg_rl_stats		 s;
	struct wsg_rlkey		 k, busy;
	uint32_t			 ra, i;
	char				 a[64];

	CHECK((t = rltable_new(100000, 10000)) != NULL);
	for (i = 0; i < 500; i++) {
		snprintf(a, sizeof(a), "10.0.%u.%u", i >> 8, i & 0xff);
		CHECK_INT(admit(t, "p", a, &rc, 0, &ra, &k), WSG_RL_OK);
	}
	CHECK_INT(admit(t, "p", "10.9.9.9", &cc, 0, &ra, &busy), WSG_RL_OK);
	rltable_stats(t, &s);
	CHECK_INT(s.rs_entries, 501);
	/* Feed every stripe well after the idle time. */
	for (i = 0; i < 5000; i++) {
		snprintf(a, sizeof(a), "10.1.%u.%u", i >> 8, i & 0xff);
		(void)admit(t, "q", a, &rc, 20000, &ra, &k);
	}
	rltable_stats(t, &s);
	CHECK_INT(s.rs_expired, 500);
	CHECK_INT(s.rs_evictions, 0);
	/* The one with an open connection is still counted. */
	for (i = 0; i < 4; i++)
		CHECK_INT(admit(t, "p", "10.9.9.9", &cc, 20000, &ra, &k),
		    WSG_RL_OK);
	CHECK_INT(admit(t, "p", "10.9.9.9", &cc, 20000, &ra, &k),
	    WSG_RL_CONCURRENT);
	rltable_free(t);
}

/* Not a millisecond before idle_expiry: an entry is dropped only then. */
static void
test_expiry_not_early(void)
{
	struct wsg_rltable		*t;
	struct wsg_ratelimit_conf	 rc = conf(1, 1000, 1, 0);
	struct wsg_rl_stats		 s;
	struct wsg_rlkey		 k;
	uint32_t			 ra, i;
	char				 a[64];

	CHECK((t = rltable_new(100000, 10000)) != NULL);
	CHECK_INT(admit(t, "p", "192.0.2.1", &rc, 0, &ra, &k), WSG_RL_OK);
	/* Other addresses in every stripe, 1 ms before it is due. */
	for (i = 0; i < 5000; i++) {
		snprintf(a, sizeof(a), "10.1.%u.%u", i >> 8, i & 0xff);
		(void)admit(t, "q", a, &rc, 9999, &ra, &k);
	}
	rltable_stats(t, &s);
	CHECK_INT(s.rs_expired, 0);
	CHECK_INT(s.rs_entries, 5001);
	/* On time: that one goes, those used at 9999 stay. */
	for (i = 0; i < 5000; i++) {
		snprintf(a, sizeof(a), "10.2.%u.%u", i >> 8, i & 0xff);
		(void)admit(t, "r", a, &rc, 10000, &ra, &k);
	}
	rltable_stats(t, &s);
	CHECK_INT(s.rs_expired, 1);
	CHECK_INT(s.rs_entries, 10000);
	rltable_free(t);
}

/*
 * Addresses with open connections at the old end of a full stripe do not
 * hide the idle ones behind them: a new address evicts an idle one and is
 * counted, as long as any entry of its stripe has no open connection.
 */
static void
test_busy_tail(void)
{
	struct wsg_rltable		*t;
	struct wsg_ratelimit_conf	 cc = conf(0, 0, 0, 1);
	struct wsg_rl_stats		 s;
	struct wsg_rlkey		 k, *open;
	uint32_t			 ra, i, untracked = 0;
	char				 a[64];
	const size_t			 max = 64 * 100;

	CHECK((t = rltable_new(max, 600000)) != NULL);
	/* About 50 open connections a stripe, the oldest entries. */
	if ((open = calloc(max / 2, sizeof(*open))) == NULL)
		exit(2);
	for (i = 0; i < max / 2; i++) {
		snprintf(a, sizeof(a), "172.16.%u.%u", i >> 8, i & 0xff);
		CHECK_INT(admit(t, "c", a, &cc, 0, &ra, &open[i]), WSG_RL_OK);
	}
	/* Then addresses that closed theirs, until every stripe is full. */
	for (i = 0; i < 2 * max; i++) {
		snprintf(a, sizeof(a), "10.%u.%u.1", i >> 8, i & 0xff);
		CHECK_INT(admit(t, "c", a, &cc, 1, &ra, &k), WSG_RL_OK);
		rltable_release(t, &k, 1);
	}
	/* New addresses: each is counted, an idle one being evicted. */
	for (i = 0; i < 1000; i++) {
		snprintf(a, sizeof(a), "192.168.%u.%u", i >> 8, i & 0xff);
		CHECK_INT(admit(t, "c", a, &cc, 2, &ra, &k), WSG_RL_OK);
		untracked += !k.k_tracked;
		CHECK_INT(admit(t, "c", a, &cc, 2, &ra, &k),
		    WSG_RL_CONCURRENT);
	}
	CHECK_INT(untracked, 0);
	rltable_stats(t, &s);
	CHECK_INT(s.rs_table_full, 0);
	CHECK(s.rs_entries <= max);
	for (i = 0; i < max / 2; i++)
		rltable_release(t, &open[i], 3);
	free(open);
	rltable_free(t);
}

struct race {
	struct wsg_rltable		*r_t;
	const struct wsg_ratelimit_conf	*r_rc;
	int				 r_admitted;
};

#define RACE_TRIES	20000

/* One thread's share of the race: admit the same address over and over. */
static void *
race_run(void *arg)
{
	struct race	*r = arg;
	struct wsg_rlkey k;
	uint32_t	 ra;
	int		 i;

	for (i = 0; i < RACE_TRIES; i++)
		if (admit(r->r_t, "race", "192.0.2.77", r->r_rc, 0, &ra,
		    &k) == WSG_RL_OK)
			r->r_admitted++;
	return NULL;
}

/* Two threads never both admit the last allowed connection. */
static void
test_threads(void)
{
	struct wsg_ratelimit_conf	 rc = conf(0, 0, 0, 37);
	struct race			 r[2];
	pthread_t			 th[2];
	int				 i, round;

	for (round = 0; round < 20; round++) {
		memset(r, 0, sizeof(r));
		CHECK((r[0].r_t = rltable_new(1000, 60000)) != NULL);
		r[1].r_t = r[0].r_t;
		r[0].r_rc = r[1].r_rc = &rc;
		for (i = 0; i < 2; i++)
			CHECK_INT(pthread_create(&th[i], NULL, race_run,
			    &r[i]), 0);
		for (i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		CHECK_INT(r[0].r_admitted + r[1].r_admitted, 37);
		rltable_free(r[0].r_t);
	}
	/* The rate limit too: a burst of 50 is 50, not 51. */
	rc = conf(1, 3600000, 50, 0);
	memset(r, 0, sizeof(r));
	CHECK((r[0].r_t = rltable_new(1000, 60000)) != NULL);
	r[1].r_t = r[0].r_t;
	r[0].r_rc = r[1].r_rc = &rc;
	for (i = 0; i < 2; i++)
		CHECK_INT(pthread_create(&th[i], NULL, race_run, &r[i]), 0);
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK_INT(r[0].r_admitted + r[1].r_admitted, 50);
	rltable_free(r[0].r_t);
}

/*
 * A reload that writes the connection rate with another period keeps the
 * tokens spent, not the internal debt: "600/m" after "10/s" is the same
 * limit, and "1/h" after "100/s" must not let a client back in sooner
 * than one token an hour allows.
 */
static void
test_table_reload_period(void)
{
	struct wsg_rltable		*t;
	struct wsg_ratelimit_conf	 sec = conf(10, 1000, 10, 0);
	struct wsg_ratelimit_conf	 min = conf(600, 60000, 10, 0);
	struct wsg_ratelimit_conf	 hour = conf(1, 3600000, 1, 0);
	struct wsg_ratelimit_conf	 seven = conf(7, 60000, 1, 0);
	struct wsg_ratelimit_conf	 one = conf(1, 1000, 1, 0);
	struct wsg_rlkey		 k;
	uint32_t			 ra;
	int				 i;

	CHECK((t = rltable_new(1000, 60000)) != NULL);

	/* 10/s, all 10 spent; as 600/m nothing more is there. */
	for (i = 0; i < 10; i++)
		CHECK_INT(admit(t, "p", "192.0.2.1", &sec, 5000, &ra, &k),
		    WSG_RL_OK);
	CHECK_INT(admit(t, "p", "192.0.2.1", &min, 5000, &ra, &k),
	    WSG_RL_RATE);
	CHECK_INT(ra, 1);
	/* 100 ms later one token is back, under either spelling. */
	CHECK_INT(admit(t, "p", "192.0.2.1", &min, 5100, &ra, &k),
	    WSG_RL_OK);
	CHECK_INT(admit(t, "p", "192.0.2.1", &sec, 5100, &ra, &k),
	    WSG_RL_RATE);

	/* 600/m, one spent; as 10/s nine are left. */
	CHECK_INT(admit(t, "p", "192.0.2.2", &min, 5000, &ra, &k), WSG_RL_OK);
	for (i = 0; i < 9; i++)
		CHECK_INT(admit(t, "p", "192.0.2.2", &sec, 5000, &ra, &k),
		    WSG_RL_OK);
	CHECK_INT(admit(t, "p", "192.0.2.2", &sec, 5000, &ra, &k),
	    WSG_RL_RATE);
	CHECK_INT(ra, 1);

	/* Tightened to 1/h: a spent client waits for a whole token. */
	for (i = 0; i < 10; i++)
		CHECK_INT(admit(t, "p", "192.0.2.3", &sec, 5000, &ra, &k),
		    WSG_RL_OK);
	CHECK_INT(admit(t, "p", "192.0.2.3", &hour, 5000, &ra, &k),
	    WSG_RL_RATE);
	CHECK(ra >= 3600);
	CHECK_INT(admit(t, "p", "192.0.2.3", &hour, 5000 + 600000, &ra, &k),
	    WSG_RL_RATE);

	/*
	 * Rescaled debt is rounded up, never down.  7/m, one spent at 0;
	 * as 1/s at 1 ms, 59993/60000 of a token is owed: 999.88 ms of 1/s,
	 * so the token is back at 1001 ms, not a millisecond sooner.
	 */
	CHECK_INT(admit(t, "p", "192.0.2.4", &seven, 0, &ra, &k), WSG_RL_OK);
	CHECK_INT(admit(t, "p", "192.0.2.4", &one, 1, &ra, &k), WSG_RL_RATE);
	CHECK_INT(admit(t, "p", "192.0.2.4", &one, 1000, &ra, &k),
	    WSG_RL_RATE);
	CHECK_INT(admit(t, "p", "192.0.2.4", &one, 1001, &ra, &k), WSG_RL_OK);
	rltable_free(t);
}

/* Run every group; exit 1 if any check failed. */
int
main(void)
{
	test_bucket();
	test_bucket_refill_edges();
	test_keys();
	test_table_limits();
	test_table_reload_period();
	test_ipv6();
	test_flood();
	test_busy_tail();
	test_expiry();
	test_expiry_not_early();
	test_threads();
	return unit_done("test_ratelimit");
}
