/*
 * Rate limits and connection caps of a policy's rate_limit section.
 *
 * Two pieces:
 *  - a token bucket (struct wsg_bucket) that a session keeps for its
 *    messages_per_connection and bytes_per_connection limits; it has no
 *    lock, as one session lives on one thread;
 *  - a process-wide per-address table (struct wsg_rltable) that every
 *    worker thread shares, holding the connections_per_ip bucket and the
 *    concurrent count of each (policy, client address) pair.  Its memory
 *    is bounded by max_entries; see rltable_new().
 *
 * Clients are keyed by their address: IPv4 (and IPv4-mapped IPv6) by the
 * whole address, IPv6 by the first ipv6_prefix bits (default 64), since
 * one IPv6 host usually owns a whole /64.
 */
#ifndef WSG_RATELIMIT_H
#define WSG_RATELIMIT_H

#include <sys/socket.h>
#include <stddef.h>
#include <stdint.h>

#include "units.h"

#define WSG_RL_MAX_POLICY	64	/* bytes of a policy name in a key */
#define WSG_RL_MAX_AMOUNT	1000000	/* events in a rate or a burst */
#define WSG_RL_MAX_BYTES	(1024ULL * 1024 * 1024)	/* bytes likewise */
#define WSG_RL_MAX_CONCURRENT	1000000	/* cap of concurrent_per_ip */
#define WSG_RL_DEFAULT_PREFIX	64	/* ipv6_prefix */
#define WSG_RL_ADDRKEY_MAX	48	/* "ffff:...:ffff/128" and a NUL */

/* One limit: a rate and a burst.  r_amount 0: the limit is off. */
struct wsg_rl_limit {
	struct wsg_rate	 rl_rate;
	uint64_t	 rl_burst;	/* events or bytes, >= 1 when on */
};

/* A policy's rate_limit section (pol_rate; NULL when it is absent). */
struct wsg_ratelimit_conf {
	struct wsg_rl_limit	 rc_connections;	/* connections_per_ip */
	uint64_t		 rc_concurrent;		/* 0: off */
	struct wsg_rl_limit	 rc_messages;	/* messages_per_connection */
	struct wsg_rl_limit	 rc_bytes;	/* bytes_per_connection */
	int			 rc_ipv6_prefix;	/* 1..128 */
};

/*
 * A token bucket.  All zeroes is a full bucket, so a calloc'ed session
 * needs no set-up.  Tokens are kept scaled by the rate's period, so the
 * refill is exact integer arithmetic.
 */
struct wsg_bucket {
	uint64_t	 b_debt;	/* tokens spent and not yet refilled,
					   times rl_rate.r_per_ms */
	uint64_t	 b_last_ms;	/* when b_debt was last brought up
					   to date */
};

/*
 * Take n tokens (1 per message, or a message's bytes) at now_ms, a
 * monotonic clock in milliseconds.  Returns 1 when they were there (and
 * are now spent), 0 when the limit is exceeded (nothing is spent).  A
 * limit that is off always admits.  n larger than the burst is never
 * admitted, so a byte burst should be at least the largest frame.
 */
int		 bucket_take(struct wsg_bucket *, const struct wsg_rl_limit *,
		    uint64_t, uint64_t);

/* Milliseconds until n tokens will be there (0: now; UINT64_MAX: never). */
uint64_t	 bucket_wait_ms(const struct wsg_bucket *,
		    const struct wsg_rl_limit *, uint64_t, uint64_t);

/* Is the bucket full at now_ms (nothing spent that is not refilled)? */
int		 bucket_full(const struct wsg_bucket *,
		    const struct wsg_rl_limit *, uint64_t);

/* Whole seconds for a Retry-After header: ceil(ms / 1000), at least 1. */
uint32_t	 ratelimit_retry_after(uint64_t);

/* The monotonic clock the callers pass as now_ms. */
uint64_t	 ratelimit_now_ms(void);

/*
 * The key of a client in the table and in the shared store: the policy
 * name and the client address, masked.  k_tracked is set by
 * rltable_admit() when the connection was counted in the table, and
 * tells rltable_release() whether there is anything to give back.
 */
struct wsg_rlkey {
	uint64_t	 k_hash;		/* set by rltable_admit() */
	uint8_t		 k_addr[16];		/* IPv4: ::ffff:a.b.c.d */
	uint8_t		 k_family;		/* 4 or 6 */
	uint8_t		 k_prefix;		/* bits kept: 32 for IPv4 */
	uint8_t		 k_tracked;
	char		 k_policy[WSG_RL_MAX_POLICY + 1];
};

/*
 * Fill a key from a policy name and a client address (AF_INET or
 * AF_INET6; IPv4-mapped counts as IPv4), keeping ipv6_prefix bits of an
 * IPv6 address.  Returns 0, or -1 for another family, a prefix outside
 * 1..128 or a name over WSG_RL_MAX_POLICY bytes.
 */
int		 rlkey_make(struct wsg_rlkey *, const char *,
		    const struct sockaddr *, int);

/*
 * The address part of a key as text, for the shared store's keys and for
 * logs: "192.0.2.1" or "2001:db8:1:2::/64".  Returns 0, or -1 if it does
 * not fit.
 */
int		 rlkey_addr(const struct wsg_rlkey *, char *, size_t);

enum wsg_rl_result {
	WSG_RL_OK = 0,
	WSG_RL_RATE,		/* 429, reason rate_connections */
	WSG_RL_CONCURRENT,	/* 429, reason rate_concurrent */
	WSG_RL_FULL		/* 503, reason overloaded: not countable */
};

/* Counters of a table, for metrics and the memory-cap test. */
struct wsg_rl_stats {
	uint64_t	 rs_entries;	/* entries held now */
	uint64_t	 rs_max_entries;	/* the cap they never exceed */
	uint64_t	 rs_evictions;	/* idle-enough entries dropped at
					   the cap, least recently used */
	uint64_t	 rs_expired;	/* dropped after idle_expiry */
	uint64_t	 rs_table_full;	/* refused: at the cap with nothing
					   evictable, or out of memory */
};

struct wsg_rltable;

/*
 * A table of at most max_entries addresses.  It is split into stripes,
 * each with its own mutex, hash and least-recently-used list, and each
 * holding max_entries / stripes entries at most.  An entry whose
 * concurrent count is 0 and whose bucket is full is dropped once it has
 * not been used for idle_ms (lazily, by later calls).  When a stripe is
 * full, a new address evicts an entry with no open connection: of the
 * least recently used, one whose bucket is full, else the least recently
 * used (its connection rate starts afresh); counted as an eviction.  If
 * there is none, the connection is refused (WSG_RL_FULL, counted as
 * table_full).  Returns NULL when out of memory.
 */
struct wsg_rltable	*rltable_new(size_t, uint64_t);
void			 rltable_free(struct wsg_rltable *);

/*
 * Admit a new connection of key under conf at now_ms: atomically checks
 * connections_per_ip, then concurrent_per_ip, and on WSG_RL_OK spends a
 * token and counts the connection.  On WSG_RL_RATE *retry_after_s is the
 * seconds until a token is back (at least 1); on WSG_RL_CONCURRENT it is
 * 1, and on WSG_RL_FULL (the address cannot be counted: the table is
 * full of open connections, or out of memory) too.  Sets key->k_tracked
 * when the connection was counted; the caller must then call
 * rltable_release() once when it closes.
 */
enum wsg_rl_result	 rltable_admit(struct wsg_rltable *, struct wsg_rlkey *,
			    const struct wsg_ratelimit_conf *, uint64_t,
			    uint32_t *);

/* A connection admitted with this key has closed; idempotent. */
void			 rltable_release(struct wsg_rltable *,
			    struct wsg_rlkey *, uint64_t);

void			 rltable_stats(struct wsg_rltable *,
			    struct wsg_rl_stats *);

#endif /* WSG_RATELIMIT_H */
