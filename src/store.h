/*
 * The shared rate-limit store: connections_per_ip and concurrent_per_ip
 * kept in Redis, so that they hold across every gateway pointing at it.
 *
 * One struct wsg_store per event base (worker thread), on hiredis'
 * asynchronous API: nothing here ever blocks the event loop.  An admission
 * is one EVALSHA of a Lua script that, atomically and with Redis' own
 * clock, checks and spends the connection-rate bucket
 * ("<prefix>conn:<policy>:<addr>", a hash with a PEXPIRE) and counts the
 * open connections of the address as leases in a sorted set scored by
 * expiry time ("<prefix>lease:<policy>:<addr>").  A live gateway refreshes
 * its leases every lease_ttl / 3; a crashed one stops, and its
 * connections stop counting once lease_ttl has passed.
 *
 * When Redis cannot be reached (connect failure, lost connection, or no
 * reply within the reply timeout) a request ends in WSG_STORE_DOWN and the
 * caller applies on_failure.  The store then reconnects with exponential
 * backoff (100 ms doubling to 5 s) and logs each up/down transition once.
 */
#ifndef WSG_STORE_H
#define WSG_STORE_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct wsg_ratelimit_conf;

#define WSG_STORE_MAX_URL	256	/* bytes of rate_limit_store.redis */
#define WSG_STORE_MAX_PREFIX	64	/* bytes of key_prefix */
#define WSG_STORE_MAX_DB	65535	/* highest database number */
#define WSG_STORE_TIMEOUT_MS	500	/* default reply timeout */

enum wsg_store_failure {
	WSG_STORE_FAIL_LOCAL = 0,	/* fall back to the in-process table */
	WSG_STORE_FAIL_ALLOW,		/* admit */
	WSG_STORE_FAIL_DENY		/* refuse: 503 store_unavailable */
};

/* main rate_limit_store (c_store; NULL when the section is absent). */
struct wsg_store_conf {
	char		*sc_url;	/* as written */
	char		*sc_host;	/* numeric address; NULL: unix socket */
	int		 sc_port;
	char		*sc_path;	/* unix socket; NULL: TCP */
	int		 sc_db;
	int		 sc_on_failure;	/* enum wsg_store_failure */
	uint64_t	 sc_lease_ttl_ms;
	char		*sc_key_prefix;
	uint64_t	 sc_timeout_ms;	/* reply timeout; 0: the default.  Not
					   a config key: tests set it */
};

/*
 * Parse "redis://HOST[:PORT][/DB]" (HOST a numeric IPv4 address,
 * "[IPv6]" or localhost; port 6379 and db 0 by default) or
 * "unix:///absolute/path[?db=N]" into sc_host, sc_port, sc_path, sc_db
 * (freeing what they held).  Pure.  Returns 0, or -1 with *err set to a
 * static message.
 */
int	store_parse_url(const char *, struct wsg_store_conf *,
	    const char **);

/* Free a conf's strings and the conf. */
void	store_conf_free(struct wsg_store_conf *);

enum wsg_store_result {
	WSG_STORE_OK = 0,
	WSG_STORE_RATE,		/* 429 rate_connections */
	WSG_STORE_CONCURRENT,	/* 429 rate_concurrent */
	WSG_STORE_DOWN		/* apply on_failure */
};

typedef void	(*wsg_store_cb)(void *, enum wsg_store_result, uint32_t);

struct wsg_store_stats {
	uint64_t	 ss_up;		/* transitions to connected */
	uint64_t	 ss_down;	/* transitions to unavailable */
	uint64_t	 ss_requests;	/* store_admit() calls */
	uint64_t	 ss_failed;	/* of those, ended in WSG_STORE_DOWN */
	uint64_t	 ss_timeouts;	/* replies not in time */
	uint64_t	 ss_leases;	/* live leases now */
	int		 ss_connected;	/* 1 while connected */
};

struct wsg_store;

/*
 * A store on an event base; it connects at once, in the background.  conf
 * is copied.  Returns NULL when out of memory.
 */
struct wsg_store	*store_new(struct event_base *,
			    const struct wsg_store_conf *);

/*
 * Free a store: every pending callback is called first, with
 * WSG_STORE_DOWN.  Leases are not released (they expire).  Not from
 * within a store callback.
 */
void			 store_free(struct wsg_store *);

/*
 * A connection of (policy, addr) admitted while the store was unavailable
 * (WSG_STORE_DOWN) with concurrent_per_ip set: it takes a lease, without
 * a limit, once Redis is available.  Call store_release() when it closes.
 * Returns 0, or -1 when out of memory.
 */
int			 store_adopt(struct wsg_store *, const char *,
			    const char *, uint64_t);

/*
 * Ask to admit a connection of (policy, addr) under conf's
 * connections_per_ip and concurrent_per_ip.  addr is rlkey_addr()'s text.
 * lease_id names the connection for store_release() and store_cancel();
 * it must be unique among this store's connections (a session counter
 * will do; the store adds its own random instance id).  Returns 0, and
 * then cb(arg, result, retry_after_s) is called exactly once, later, never
 * from within store_admit(): WSG_STORE_OK (the connection holds a lease
 * when concurrent_per_ip is set: call store_release() when it closes),
 * WSG_STORE_RATE (retry_after_s from the bucket, at least 1),
 * WSG_STORE_CONCURRENT (retry_after_s 1), or WSG_STORE_DOWN.  Returns -1
 * when out of memory or given bad arguments; cb is then never called.
 */
int	store_admit(struct wsg_store *, const char *, const char *,
	    const struct wsg_ratelimit_conf *, uint64_t, wsg_store_cb,
	    void *);

/*
 * Withdraw a pending store_admit() (the client went away): its callback is
 * not called, and a lease it is granted is given back at once.  Returns 1
 * if one was pending, 0 if not.
 */
int	store_cancel(struct wsg_store *, uint64_t);

/* A connection admitted with WSG_STORE_OK has closed: drop its lease. */
void	store_release(struct wsg_store *, uint64_t);

void	store_stats(const struct wsg_store *, struct wsg_store_stats *);

#endif /* WSG_STORE_H */
