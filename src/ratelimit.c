/*
 * Token buckets and the process-wide per-address table of the rate_limit
 * policy section.  The bucket functions are pure; the table is shared by
 * the worker threads and locks one stripe per call.  Addresses are hashed
 * with SipHash-2-4 under a random key, so a client cannot pick addresses
 * that all land in one hash chain.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ratelimit.h"

#define RL_STRIPES		64	/* mutexes; a power of two */
#define RL_MIN_BUCKETS		16	/* hash chains of a stripe at first */
#define RL_MAX_LOAD		2	/* entries per chain before growing */
#define RL_EXPIRE_SCAN		4	/* idle entries looked at per admit */
#define RL_EVICT_SCAN		32	/* entries looked at for an eviction */

/* Bring a bucket's debt up to date at now_ms. */
static uint64_t
bucket_debt_at(const struct wsg_bucket *b, const struct wsg_rl_limit *l,
    uint64_t now_ms)
{
	uint64_t	dt;

	if (b->b_debt == 0 || now_ms <= b->b_last_ms)
		return b->b_debt;
	dt = now_ms - b->b_last_ms;
	/* Refilled completely: also keeps dt * amount from overflowing. */
	if (dt >= b->b_debt / l->rl_rate.r_amount + 1)
		return 0;
	return b->b_debt - dt * l->rl_rate.r_amount;
}

/*
 * A bucket's debt counts tokens times the period of the limit it was spent
 * under.  When a reload writes the rate with another period, turn it into
 * the same number of tokens under the new one, rounded up, so that what a
 * client has spent neither grows nor shrinks.  A limit that was off has
 * counted nothing: its bucket starts full.
 */
static void
bucket_rescale(struct wsg_bucket *b, const struct wsg_rl_limit *from,
    const struct wsg_rl_limit *to, uint64_t now_ms)
{
	uint64_t	debt, f = from->rl_rate.r_per_ms, t = to->rl_rate.r_per_ms;

	if (f == t && from->rl_rate.r_amount != 0)
		return;
	if (from->rl_rate.r_amount == 0 || to->rl_rate.r_amount == 0) {
		b->b_debt = 0;
		b->b_last_ms = now_ms;
		return;
	}
	debt = bucket_debt_at(b, from, now_ms);
	/* At most a million tokens: neither product can overflow. */
	b->b_debt = debt / f * t + (debt % f * t + f - 1) / f;
	if (now_ms > b->b_last_ms || debt == 0)
		b->b_last_ms = now_ms;
}

/* Take n tokens if they are there. */
int
bucket_take(struct wsg_bucket *b, const struct wsg_rl_limit *l, uint64_t n,
    uint64_t now_ms)
{
	uint64_t	debt, cap, cost;

	if (l->rl_rate.r_amount == 0)
		return 1;
	if (n > l->rl_burst)
		return 0;
	debt = bucket_debt_at(b, l, now_ms);
	cap = l->rl_burst * l->rl_rate.r_per_ms;
	cost = n * l->rl_rate.r_per_ms;
	if (debt > cap || cost > cap - debt)
		return 0;
	b->b_debt = debt + cost;
	if (now_ms > b->b_last_ms || debt == 0)
		b->b_last_ms = now_ms;
	return 1;
}

/* Milliseconds until n tokens are there. */
uint64_t
bucket_wait_ms(const struct wsg_bucket *b, const struct wsg_rl_limit *l,
    uint64_t n, uint64_t now_ms)
{
	uint64_t	debt, cap, cost, over;

	if (l->rl_rate.r_amount == 0)
		return 0;
	if (n > l->rl_burst)
		return UINT64_MAX;
	debt = bucket_debt_at(b, l, now_ms);
	cap = l->rl_burst * l->rl_rate.r_per_ms;
	cost = n * l->rl_rate.r_per_ms;
	if (debt <= cap && cost <= cap - debt)
		return 0;
	over = debt + cost - cap;
	return (over + l->rl_rate.r_amount - 1) / l->rl_rate.r_amount;
}

/* Is nothing spent that has not been refilled? */
int
bucket_full(const struct wsg_bucket *b, const struct wsg_rl_limit *l,
    uint64_t now_ms)
{
	if (l->rl_rate.r_amount == 0)
		return 1;
	return bucket_debt_at(b, l, now_ms) == 0;
}

/* Seconds for Retry-After, rounded up, at least 1. */
uint32_t
ratelimit_retry_after(uint64_t ms)
{
	uint64_t	s = ms / 1000 + (ms % 1000 != 0);

	if (s < 1)
		return 1;
	if (s > UINT32_MAX)
		return UINT32_MAX;
	return (uint32_t)s;
}

/* Milliseconds of the monotonic clock. */
uint64_t
ratelimit_now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Fill a key: the policy and the masked address. */
int
rlkey_make(struct wsg_rlkey *k, const char *policy,
    const struct sockaddr *sa, int ipv6_prefix)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	size_t				 len = strlen(policy), i;
	static const uint8_t		 mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};

	if (len > WSG_RL_MAX_POLICY || ipv6_prefix < 1 || ipv6_prefix > 128)
		return -1;
	memset(k, 0, sizeof(*k));
	memcpy(k->k_policy, policy, len);
	if (sa->sa_family == AF_INET) {
		sin = (const struct sockaddr_in *)(const void *)sa;
		memcpy(k->k_addr, mapped, sizeof(mapped));
		memcpy(k->k_addr + 12, &sin->sin_addr, 4);
		k->k_family = 4;
		k->k_prefix = 32;
		return 0;
	}
	if (sa->sa_family != AF_INET6)
		return -1;
	sin6 = (const struct sockaddr_in6 *)(const void *)sa;
	memcpy(k->k_addr, sin6->sin6_addr.s6_addr, 16);
	if (memcmp(k->k_addr, mapped, sizeof(mapped)) == 0) {
		k->k_family = 4;
		k->k_prefix = 32;
		return 0;
	}
	k->k_family = 6;
	k->k_prefix = (uint8_t)ipv6_prefix;
	for (i = 0; i < 16; i++) {
		if ((int)(i * 8) >= ipv6_prefix)
			k->k_addr[i] = 0;
		else if ((int)(i * 8) + 8 > ipv6_prefix)
			k->k_addr[i] &= (uint8_t)(0xff <<
			    (8 - ipv6_prefix % 8));
	}
	return 0;
}

/* "192.0.2.1" or "2001:db8::/64". */
int
rlkey_addr(const struct wsg_rlkey *k, char *buf, size_t len)
{
	char	a[INET6_ADDRSTRLEN];
	int	r;

	if (k->k_family == 4) {
		if (inet_ntop(AF_INET, k->k_addr + 12, a, sizeof(a)) == NULL)
			return -1;
		r = snprintf(buf, len, "%s", a);
	} else {
		if (inet_ntop(AF_INET6, k->k_addr, a, sizeof(a)) == NULL)
			return -1;
		r = snprintf(buf, len, "%s/%u", a, k->k_prefix);
	}
	return r < 0 || (size_t)r >= len ? -1 : 0;
}

/* One address of the table. */
struct rl_entry {
	struct rl_entry		*e_next;	/* hash chain */
	TAILQ_ENTRY(rl_entry)	 e_lru;		/* st_lru or st_busy */
	struct wsg_rlkey	 e_key;
	struct wsg_bucket	 e_conn;	/* connections_per_ip */
	struct wsg_rl_limit	 e_limit;	/* the one last spent under */
	uint64_t		 e_concurrent;
	uint64_t		 e_used_ms;
};

TAILQ_HEAD(rl_lru, rl_entry);

struct rl_stripe {
	pthread_mutex_t		 st_mtx;
	struct rl_entry		**st_chains;
	size_t			 st_nchains;	/* a power of two */
	size_t			 st_n;
	size_t			 st_max;
	struct rl_lru		 st_lru;		/* no open connection */
	struct rl_lru		 st_busy;	/* open connections */
	uint64_t		 st_evictions;
	uint64_t		 st_expired;
	uint64_t		 st_full;
};

struct wsg_rltable {
	uint64_t		 t_sipkey[2];
	uint64_t		 t_idle_ms;
	size_t			 t_max;
	struct rl_stripe	 t_stripes[RL_STRIPES];
};

#define ROTL(x, b)	(uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND do {							\
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);	\
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;				\
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;				\
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);	\
} while (0)

/* SipHash-2-4 of len bytes under a 128-bit key. */
static uint64_t
rl_siphash(const uint64_t key[2], const uint8_t *in, size_t len)
{
	uint64_t	v0 = 0x736f6d6570736575ULL ^ key[0];
	uint64_t	v1 = 0x646f72616e646f6dULL ^ key[1];
	uint64_t	v2 = 0x6c7967656e657261ULL ^ key[0];
	uint64_t	v3 = 0x7465646279746573ULL ^ key[1];
	uint64_t	m, b = (uint64_t)len << 56;
	size_t		i, j, left = len & 7;

	for (i = 0; i + 8 <= len; i += 8) {
		for (m = 0, j = 0; j < 8; j++)
			m |= (uint64_t)in[i + j] << (8 * j);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	for (j = 0; j < left; j++)
		b |= (uint64_t)in[i + j] << (8 * j);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* The hash of a key: its address, prefix and policy name. */
static uint64_t
rl_hash(const struct wsg_rltable *t, const struct wsg_rlkey *k)
{
	uint8_t	buf[18 + WSG_RL_MAX_POLICY];
	size_t	len = strlen(k->k_policy);

	memcpy(buf, k->k_addr, 16);
	buf[16] = k->k_family;
	buf[17] = k->k_prefix;
	memcpy(buf + 18, k->k_policy, len);
	return rl_siphash(t->t_sipkey, buf, 18 + len);
}

/* Do two keys name the same client of the same policy? */
static int
rl_key_eq(const struct wsg_rlkey *a, const struct wsg_rlkey *b)
{
	return a->k_hash == b->k_hash && a->k_family == b->k_family &&
	    a->k_prefix == b->k_prefix &&
	    memcmp(a->k_addr, b->k_addr, 16) == 0 &&
	    strcmp(a->k_policy, b->k_policy) == 0;
}

/* A table of at most max_entries addresses, idle ones dropped. */
struct wsg_rltable *
rltable_new(size_t max_entries, uint64_t idle_ms)
{
	struct wsg_rltable	*t;
	struct rl_stripe	*st;
	size_t			 i;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	if (getrandom(t->t_sipkey, sizeof(t->t_sipkey), 0) !=
	    (ssize_t)sizeof(t->t_sipkey)) {
		/* Still a working table; only less resistant to floods. */
		t->t_sipkey[0] = (uint64_t)time(NULL) ^ (uintptr_t)t;
		t->t_sipkey[1] = ratelimit_now_ms() * 0x9e3779b97f4a7c15ULL;
	}
	t->t_idle_ms = idle_ms;
	t->t_max = max_entries;
	for (i = 0; i < RL_STRIPES; i++) {
		st = &t->t_stripes[i];
		/* The remainder goes to the first stripes: caps add up. */
		st->st_max = max_entries / RL_STRIPES +
		    (i < max_entries % RL_STRIPES ? 1 : 0);
		st->st_nchains = RL_MIN_BUCKETS;
		st->st_chains = calloc(st->st_nchains, sizeof(*st->st_chains));
		TAILQ_INIT(&st->st_lru);
		TAILQ_INIT(&st->st_busy);
		if (st->st_chains == NULL ||
		    pthread_mutex_init(&st->st_mtx, NULL) != 0) {
			free(st->st_chains);
			st->st_chains = NULL;
			for (; i > 0; i--) {
				free(t->t_stripes[i - 1].st_chains);
				pthread_mutex_destroy(
				    &t->t_stripes[i - 1].st_mtx);
			}
			free(t);
			return NULL;
		}
	}
	return t;
}

/* Free a table and its entries. */
void
rltable_free(struct wsg_rltable *t)
{
	struct rl_stripe	*st;
	struct rl_entry		*e;
	size_t			 i;

	if (t == NULL)
		return;
	for (i = 0; i < RL_STRIPES; i++) {
		st = &t->t_stripes[i];
		while ((e = TAILQ_FIRST(&st->st_lru)) != NULL) {
			TAILQ_REMOVE(&st->st_lru, e, e_lru);
			free(e);
		}
		while ((e = TAILQ_FIRST(&st->st_busy)) != NULL) {
			TAILQ_REMOVE(&st->st_busy, e, e_lru);
			free(e);
		}
		free(st->st_chains);
		pthread_mutex_destroy(&st->st_mtx);
	}
	free(t);
}

/* The stripe of a hash: its top bits, so chains use the low ones. */
static struct rl_stripe *
rl_stripe(struct wsg_rltable *t, uint64_t hash)
{
	return &t->t_stripes[hash >> 58 & (RL_STRIPES - 1)];
}

/* Find a key's entry in its stripe. */
static struct rl_entry *
rl_find(struct rl_stripe *st, const struct wsg_rlkey *k)
{
	struct rl_entry	*e;

	for (e = st->st_chains[k->k_hash & (st->st_nchains - 1)]; e != NULL;
	    e = e->e_next)
		if (rl_key_eq(&e->e_key, k))
			return e;
	return NULL;
}

/* Unlink and free one entry of st_lru. */
static void
rl_remove(struct rl_stripe *st, struct rl_entry *e)
{
	struct rl_entry	**pp;

	for (pp = &st->st_chains[e->e_key.k_hash & (st->st_nchains - 1)];
	    *pp != NULL; pp = &(*pp)->e_next) {
		if (*pp == e) {
			*pp = e->e_next;
			break;
		}
	}
	TAILQ_REMOVE(&st->st_lru, e, e_lru);
	st->st_n--;
	free(e);
}

/* Double the chains when they grow long; on failure keep the old ones. */
static void
rl_grow(struct rl_stripe *st)
{
	struct rl_entry	**nc, *e, *next;
	size_t		  n = st->st_nchains * 2, i;

	if (st->st_n <= st->st_nchains * RL_MAX_LOAD ||
	    (nc = calloc(n, sizeof(*nc))) == NULL)
		return;
	for (i = 0; i < st->st_nchains; i++) {
		for (e = st->st_chains[i]; e != NULL; e = next) {
			next = e->e_next;
			e->e_next = nc[e->e_key.k_hash & (n - 1)];
			nc[e->e_key.k_hash & (n - 1)] = e;
		}
	}
	free(st->st_chains);
	st->st_chains = nc;
	st->st_nchains = n;
}

/* Can an entry be dropped without losing anything that matters? */
static int
rl_idle(const struct rl_entry *e, uint64_t now_ms)
{
	return e->e_concurrent == 0 &&
	    bucket_full(&e->e_conn, &e->e_limit, now_ms);
}

/*
 * Drop the least recently used entries that have been idle for idle_ms.
 * Entries whose bucket is not full yet go back to the head, so they do
 * not hide idle ones behind them.
 */
static void
rl_expire(struct wsg_rltable *t, struct rl_stripe *st, uint64_t now_ms)
{
	struct rl_entry	*e;
	int		 i;

	for (i = 0; i < RL_EXPIRE_SCAN; i++) {
		if ((e = TAILQ_LAST(&st->st_lru, rl_lru)) == NULL ||
		    e->e_used_ms + t->t_idle_ms > now_ms)
			return;
		if (rl_idle(e, now_ms)) {
			rl_remove(st, e);
			st->st_expired++;
		} else {
			TAILQ_REMOVE(&st->st_lru, e, e_lru);
			TAILQ_INSERT_HEAD(&st->st_lru, e, e_lru);
			e->e_used_ms = now_ms;
		}
	}
}

/*
 * Make room in a full stripe: drop an entry with no open connection
 * (entries with one are on st_busy, not st_lru).  Of the least recently
 * used, one whose bucket is full, which loses nothing; else the least
 * recently used, whose connection rate starts afresh.  Returns 0, or -1
 * when every entry has an open connection.
 */
static int
rl_evict(struct rl_stripe *st, uint64_t now_ms)
{
	struct rl_entry	*e, *last;
	int		 i;

	if ((last = TAILQ_LAST(&st->st_lru, rl_lru)) == NULL)
		return -1;
	for (e = last, i = 0; e != NULL && i < RL_EVICT_SCAN;
	    e = TAILQ_PREV(e, rl_lru, e_lru), i++)
		if (rl_idle(e, now_ms))
			break;
	if (e == NULL || i == RL_EVICT_SCAN)
		e = last;
	rl_remove(st, e);
	st->st_evictions++;
	return 0;
}

/* A new entry for a key, evicting if the stripe is full; NULL: none. */
static struct rl_entry *
rl_insert(struct rl_stripe *st, const struct wsg_rlkey *k, uint64_t now_ms)
{
	struct rl_entry	*e;
	size_t		 c;

	if (st->st_n >= st->st_max && rl_evict(st, now_ms) == -1)
		return NULL;
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	e->e_key = *k;
	e->e_key.k_tracked = 0;
	c = k->k_hash & (st->st_nchains - 1);
	e->e_next = st->st_chains[c];
	st->st_chains[c] = e;
	TAILQ_INSERT_HEAD(&st->st_lru, e, e_lru);
	st->st_n++;
	rl_grow(st);
	return e;
}

/* Admit a connection: rate, then concurrency, under the stripe's lock. */
enum wsg_rl_result
rltable_admit(struct wsg_rltable *t, struct wsg_rlkey *k,
    const struct wsg_ratelimit_conf *rc, uint64_t now_ms,
    uint32_t *retry_after_s)
{
	struct rl_stripe	*st;
	struct rl_entry		*e;
	enum wsg_rl_result	 res = WSG_RL_OK;

	k->k_tracked = 0;
	*retry_after_s = 0;
	if (rc == NULL || (rc->rc_connections.rl_rate.r_amount == 0 &&
	    rc->rc_concurrent == 0))
		return WSG_RL_OK;
	k->k_hash = rl_hash(t, k);
	st = rl_stripe(t, k->k_hash);
	pthread_mutex_lock(&st->st_mtx);
	rl_expire(t, st, now_ms);
	if ((e = rl_find(st, k)) == NULL &&
	    (e = rl_insert(st, k, now_ms)) == NULL) {
		/* Admitted uncounted, no limit would hold for it. */
		st->st_full++;
		pthread_mutex_unlock(&st->st_mtx);
		*retry_after_s = 1;
		return WSG_RL_FULL;
	}
	if (e->e_concurrent == 0) {
		TAILQ_REMOVE(&st->st_lru, e, e_lru);
		TAILQ_INSERT_HEAD(&st->st_lru, e, e_lru);
	}
	e->e_used_ms = now_ms;
	/* A reload may change the limit; the tokens spent carry over. */
	bucket_rescale(&e->e_conn, &e->e_limit, &rc->rc_connections, now_ms);
	e->e_limit = rc->rc_connections;
	if (e->e_limit.rl_rate.r_amount != 0 &&
	    bucket_wait_ms(&e->e_conn, &e->e_limit, 1, now_ms) != 0) {
		res = WSG_RL_RATE;
		*retry_after_s = ratelimit_retry_after(bucket_wait_ms(
		    &e->e_conn, &e->e_limit, 1, now_ms));
	} else if (rc->rc_concurrent != 0 &&
	    e->e_concurrent >= rc->rc_concurrent) {
		res = WSG_RL_CONCURRENT;
		*retry_after_s = 1;
	} else {
		(void)bucket_take(&e->e_conn, &e->e_limit, 1, now_ms);
		if (rc->rc_concurrent != 0) {
			if (e->e_concurrent++ == 0) {
				TAILQ_REMOVE(&st->st_lru, e, e_lru);
				TAILQ_INSERT_HEAD(&st->st_busy, e, e_lru);
			}
			k->k_tracked = 1;
		}
	}
	pthread_mutex_unlock(&st->st_mtx);
	return res;
}

/* Give back a counted connection. */
void
rltable_release(struct wsg_rltable *t, struct wsg_rlkey *k, uint64_t now_ms)
{
	struct rl_stripe	*st;
	struct rl_entry		*e;

	if (!k->k_tracked)
		return;
	k->k_tracked = 0;
	st = rl_stripe(t, k->k_hash);
	pthread_mutex_lock(&st->st_mtx);
	if ((e = rl_find(st, k)) != NULL && e->e_concurrent > 0) {
		e->e_used_ms = now_ms;
		if (--e->e_concurrent == 0) {
			TAILQ_REMOVE(&st->st_busy, e, e_lru);
			TAILQ_INSERT_HEAD(&st->st_lru, e, e_lru);
		}
	}
	pthread_mutex_unlock(&st->st_mtx);
}

/* Sum the counters of every stripe. */
void
rltable_stats(struct wsg_rltable *t, struct wsg_rl_stats *s)
{
	struct rl_stripe	*st;
	size_t			 i;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < RL_STRIPES; i++) {
		st = &t->t_stripes[i];
		pthread_mutex_lock(&st->st_mtx);
		s->rs_entries += st->st_n;
		s->rs_max_entries += st->st_max;
		s->rs_evictions += st->st_evictions;
		s->rs_expired += st->st_expired;
		s->rs_table_full += st->st_full;
		pthread_mutex_unlock(&st->st_mtx);
	}
}
