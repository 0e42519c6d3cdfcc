/*
 * The shared rate-limit store in Redis, on hiredis' asynchronous API and
 * the worker's libevent base.
 *
 * A request lives in st_reqs until its callback has been called; each has
 * its own timer, which bounds the wait for Redis and also delivers the
 * answers decided without Redis, so a callback never runs inside
 * store_admit().  A request whose command is in hiredis' hands (r_inflight)
 * is freed only when hiredis calls back, which it always does: with the
 * reply, or with NULL when the connection goes away.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <openssl/sha.h>

#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "store.h"
#include "units.h"

#define STORE_DEFAULT_PORT	6379
#define STORE_BACKOFF_MIN_MS	100
#define STORE_BACKOFF_MAX_MS	5000
#define STORE_CONNECT_TIMEOUT_MS 1000	/* connect, SELECT, SCRIPT LOAD */
#define STORE_MAX_PENDING	65536	/* requests waiting, per store */
#define STORE_LEASE_CHAINS	4096	/* hash chains of live leases */
#define STORE_MAX_KEY		(WSG_STORE_MAX_PREFIX + 8 + \
				    WSG_RL_MAX_POLICY + WSG_RL_ADDRKEY_MAX)
#define STORE_MEMBER_LEN	48	/* "instance:lease_id" */
#define STORE_ERR_LEN		128
#define STORE_MAX_ELEMENTS	16	/* of an array in a reply */
#define STORE_MAX_BUFFERED	65536	/* bytes of replies not yet whole */

/*
 * The admission, atomic in Redis, on Redis' clock.  KEYS: the bucket hash,
 * the lease set.  ARGV: rate amount, its period in ms, burst, concurrent
 * limit (0: off), lease TTL in ms, lease member.  The bucket keeps its
 * debt scaled by the period, as bucket_take() does, and that period: a
 * gateway whose policy writes the rate with another one (a reload, a fleet
 * half way through a rollout) rescales it, so the tokens spent carry over.
 * A token is spent only when the connection is admitted.  Returns {0, 0}
 * admitted, {1, ms until a token} over the rate, {2, 1000} over the
 * concurrency.
 */
static const char store_admit_lua[] =
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + "
	    "math.floor(tonumber(t[2]) / 1000)\n"
	"local amount = tonumber(ARGV[1])\n"
	"local per = tonumber(ARGV[2])\n"
	"local burst = tonumber(ARGV[3])\n"
	"local limit = tonumber(ARGV[4])\n"
	"local ttl = tonumber(ARGV[5])\n"
	"local debt = 0\n"
	"if amount > 0 then\n"
	"  local h = redis.call('HMGET', KEYS[1], 'debt', 'last', 'per')\n"
	"  debt = tonumber(h[1]) or 0\n"
	"  local last = tonumber(h[2]) or now\n"
	"  local was = tonumber(h[3]) or per\n"
	"  if was ~= per and was > 0 then\n"
	"    debt = math.ceil(debt / was * per)\n"
	"  end\n"
	"  if now > last then\n"
	"    debt = math.max(0, debt - (now - last) * amount)\n"
	"  end\n"
	"  local over = debt + per - burst * per\n"
	"  if over > 0 then\n"
	"    return {1, math.ceil(over / amount)}\n"
	"  end\n"
	"end\n"
	"if limit > 0 then\n"
	"  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', "
	    "string.format('%d', now))\n"
	"  if redis.call('ZCARD', KEYS[2]) >= limit then\n"
	"    return {2, 1000}\n"
	"  end\n"
	"  redis.call('ZADD', KEYS[2], string.format('%d', now + ttl), "
	    "ARGV[6])\n"
	"  redis.call('PEXPIRE', KEYS[2], ttl + 1000)\n"
	"end\n"
	"if amount > 0 then\n"
	"  debt = debt + per\n"
	"  redis.call('HSET', KEYS[1], 'debt', string.format('%d', debt), "
	    "'last', string.format('%d', now), 'per', "
	    "string.format('%d', per))\n"
	"  redis.call('PEXPIRE', KEYS[1], math.ceil(debt / amount) + 1000)\n"
	"end\n"
	"return {0, 0}\n";

/* A live lease: push its expiry to now + TTL.  KEYS: set; ARGV: member, TTL. */
static const char store_refresh_lua[] =
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + "
	    "math.floor(tonumber(t[2]) / 1000)\n"
	"local ttl = tonumber(ARGV[2])\n"
	"redis.call('ZADD', KEYS[1], string.format('%d', now + ttl), "
	    "ARGV[1])\n"
	"redis.call('PEXPIRE', KEYS[1], ttl + 1000)\n"
	"return 1\n";

enum store_state {
	STORE_DISCONNECTED = 0,		/* waiting to retry */
	STORE_CONNECTING,		/* commands are queued */
	STORE_UP
};

struct store_req;
TAILQ_HEAD(store_reqs, store_req);

/* A lease of a live connection, refreshed until store_release(). */
struct store_lease {
	TAILQ_ENTRY(store_lease)  l_entry;
	struct store_lease	 *l_next;	/* hash chain */
	uint64_t		  l_id;
	char			 *l_key;
	char			  l_member[STORE_MEMBER_LEN];
};
TAILQ_HEAD(store_leases, store_lease);

/*
 * A lease Redis may hold that nobody refreshes or releases any more: its
 * admission was given up unanswered, or its connection closed while Redis
 * was unreachable.  Removed once connected again, or it would count for
 * up to lease_ttl against an address that has no such connection.
 */
struct store_orphan {
	TAILQ_ENTRY(store_orphan) o_entry;
	char			 *o_key;
	char			  o_member[STORE_MEMBER_LEN];
};
TAILQ_HEAD(store_orphans, store_orphan);

struct wsg_store {
	struct event_base	*st_base;
	struct wsg_store_conf	 st_conf;	/* strings owned */
	uint64_t		 st_timeout_ms;
	redisAsyncContext	*st_ac;
	enum store_state	 st_state;
	int			 st_reported;	/* -1 unknown, 0 down, 1 up */
	int			 st_setup_left;	/* setup replies awaited */
	uint64_t		 st_backoff_ms;
	uint64_t		 st_up_ms;	/* when set up; 0: not up */
	struct event		*st_retry_ev;	/* reconnect; connect timeout */
	struct event		*st_refresh_ev;
	uint64_t		 st_instance;
	char			 st_admit_sha[41];
	char			 st_refresh_sha[41];
	char			 st_last_err[STORE_ERR_LEN];
	struct store_reqs	 st_reqs;	/* callbacks not yet called */
	size_t			 st_npending;
	struct store_leases	 st_leases;
	struct store_orphans	 st_orphans;	/* ZREM once connected */
	size_t			 st_norphans;
	struct store_lease	*st_chains[STORE_LEASE_CHAINS];
	struct wsg_store_stats	 st_stats;
	int			 st_freeing;
	int			 st_reloaded;	/* scripts re-sent this period */
	const char		*st_bad_reply;	/* why its reply was refused */
	uint64_t		 st_refresh_sent; /* on this connection */
	uint64_t		 st_refresh_done; /* of those, answered */
	uint64_t		 st_refresh_due;  /* sent by the last period */
};

struct store_req {
	TAILQ_ENTRY(store_req)	 r_entry;
	struct wsg_store	*r_store;
	struct event		*r_timer;
	wsg_store_cb		 r_cb;		/* NULL once called/cancelled */
	void			*r_arg;
	int			 r_pending;	/* in st_reqs */
	int			 r_inflight;	/* hiredis holds it */
	int			 r_evalled;	/* NOSCRIPT: sent with EVAL */
	int			 r_lease;	/* concurrent_per_ip is set */
	uint64_t		 r_lease_id;
	char			 r_connkey[STORE_MAX_KEY];
	char			 r_leasekey[STORE_MAX_KEY];
	char			 r_member[STORE_MEMBER_LEN];
	char			 r_args[5][24];
};

static void	store_connect(struct wsg_store *);
static void	store_conn_lost(struct wsg_store *, const char *);

/* Parse a decimal number of at most max; the whole string. */
static int
store_parse_num(const char *s, size_t len, long max, long *out)
{
	long	n = 0;
	size_t	i;

	if (len == 0 || len > 10 || (len > 1 && s[0] == '0'))
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		n = n * 10 + (s[i] - '0');
	}
	if (n > max)
		return -1;
	*out = n;
	return 0;
}

/* redis://HOST[:PORT][/DB] or unix:///path[?db=N]. */
int
store_parse_url(const char *url, struct wsg_store_conf *sc,
    const char **err)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	char			 hp[WSG_STORE_MAX_URL], a[INET6_ADDRSTRLEN];
	const char		*p, *slash, *q, *e;
	long			 db = 0;
	size_t			 len;
	struct sockaddr_un	 un;

	if (strlen(url) >= WSG_STORE_MAX_URL) {
		*err = "too long";
		return -1;
	}
	if (strncmp(url, "unix://", 7) == 0) {
		p = url + 7;
		if (*p != '/') {
			*err = "expected unix:///absolute/path[?db=N]";
			return -1;
		}
		q = strchr(p, '?');
		len = q != NULL ? (size_t)(q - p) : strlen(p);
		if (len >= sizeof(un.sun_path)) {
			*err = "the socket path is too long";
			return -1;
		}
		if (q != NULL && (strncmp(q, "?db=", 4) != 0 ||
		    store_parse_num(q + 4, strlen(q + 4), WSG_STORE_MAX_DB,
		    &db) == -1)) {
			*err = "after the path only ?db=N may follow, N from 0 "
			    "to 65535";
			return -1;
		}
		if (len == 1 || memchr(p, '#', len) != NULL) {
			*err = "expected unix:///absolute/path[?db=N]";
			return -1;
		}
		free(sc->sc_host);
		free(sc->sc_path);
		sc->sc_host = NULL;
		if ((sc->sc_path = strndup(p, len)) == NULL) {
			*err = "out of memory";
			return -1;
		}
		sc->sc_port = 0;
		sc->sc_db = (int)db;
		return 0;
	}
	if (strncmp(url, "redis://", 8) != 0) {
		*err = "expected redis://HOST:PORT/DB or unix:///path?db=N";
		return -1;
	}
	p = url + 8;
	if (strchr(p, '@') != NULL) {
		*err = "credentials in the URL are not supported";
		return -1;
	}
	if (strchr(p, '?') != NULL || strchr(p, '#') != NULL) {
		*err = "no query or fragment is allowed";
		return -1;
	}
	slash = strchr(p, '/');
	len = slash != NULL ? (size_t)(slash - p) : strlen(p);
	if (len == 0) {
		*err = "missing host";
		return -1;
	}
	if (slash != NULL && store_parse_num(slash + 1, strlen(slash + 1),
	    WSG_STORE_MAX_DB, &db) == -1) {
		*err = "the database must be a number from 0 to 65535";
		return -1;
	}
	/* Without a port, add the default one for units_parse_hostport(). */
	e = p + len;
	if ((p[0] == '[' && e[-1] == ']') ||
	    (p[0] != '[' && memchr(p, ':', len) == NULL))
		snprintf(hp, sizeof(hp), "%.*s:%d", (int)len, p,
		    STORE_DEFAULT_PORT);
	else
		snprintf(hp, sizeof(hp), "%.*s", (int)len, p);
	if (units_parse_hostport(hp, &ss, &sslen, err) == -1)
		return -1;
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, a,
		    sizeof(a));
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr,
		    a, sizeof(a));
	free(sc->sc_host);
	free(sc->sc_path);
	sc->sc_path = NULL;
	if ((sc->sc_host = strdup(a)) == NULL) {
		*err = "out of memory";
		return -1;
	}
	sc->sc_port = ntohs(ss.ss_family == AF_INET ?
	    ((struct sockaddr_in *)&ss)->sin_port :
	    ((struct sockaddr_in6 *)&ss)->sin6_port);
	sc->sc_db = (int)db;
	return 0;
}

/* Free the strings of a conf. */
static void
store_conf_clear(struct wsg_store_conf *sc)
{
	free(sc->sc_url);
	free(sc->sc_host);
	free(sc->sc_path);
	free(sc->sc_key_prefix);
}

/* Free a conf and its strings. */
void
store_conf_free(struct wsg_store_conf *sc)
{
	if (sc == NULL)
		return;
	store_conf_clear(sc);
	free(sc);
}

/* Lower-case hex SHA-1 of a script, as EVALSHA wants it. */
static void
store_sha(const char *script, char out[41])
{
	unsigned char	md[SHA_DIGEST_LENGTH];
	size_t		i;

	SHA1((const unsigned char *)script, strlen(script), md);
	for (i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Log a transition once and count it. */
static void
store_report(struct wsg_store *st, int up, const char *why)
{
	if (st->st_reported == up || st->st_freeing)
		return;
	st->st_reported = up;
	st->st_stats.ss_connected = up;
	metrics_store_transition(up);
	if (up) {
		st->st_stats.ss_up++;
		log_info("rate_limit_store: connected to %s",
		    st->st_conf.sc_url);
	} else {
		st->st_stats.ss_down++;
		log_warnx("rate_limit_store: %s is unavailable (%s); "
		    "on_failure applies until it is back",
		    st->st_conf.sc_url, why);
	}
}

/*
 * hiredis' reply objects, wrapped: a reply when no command waits for one
 * (other than an error, which hiredis handles) would make hiredis abort
 * the process on an assertion, and the header of an array of 2^31 - 1
 * elements makes it allocate 16 GiB, then walk them all when it frees
 * the reply, seconds during which the worker serves nothing.  Such a
 * reply fails as an allocation would, which makes hiredis drop the
 * connection instead.
 */
static pthread_once_t			 store_fn_once = PTHREAD_ONCE_INIT;
static redisReplyObjectFunctions	*store_hiredis_fn;
static redisReplyObjectFunctions	 store_fn;

/* Is a reply about to be made one that no command asked for? */
static int
store_unasked(const redisReadTask *t)
{
	redisAsyncContext	*ac = t->privdata;
	struct wsg_store	*st;

	if (t->parent != NULL || ac == NULL || ac->replies.head != NULL)
		return 0;
	if ((st = ac->data) != NULL)
		st->st_bad_reply = "it sent a reply to no command";
	return 1;
}

/* A status, bulk or error reply, unless no command asked for it. */
static void *
store_create_string(const redisReadTask *t, char *s, size_t len)
{
	if (t->type != REDIS_REPLY_ERROR && store_unasked(t))
		return NULL;
	return store_hiredis_fn->createString(t, s, len);
}

/* An array reply, unless no command asked for it or it is too large. */
static void *
store_create_array(const redisReadTask *t, int n)
{
	redisAsyncContext	*ac = t->privdata;
	struct wsg_store	*st;

	if (store_unasked(t))
		return NULL;
	/* No reply the gateway asks for has more than 2 elements. */
	if (n > STORE_MAX_ELEMENTS) {
		if (ac != NULL && (st = ac->data) != NULL)
			st->st_bad_reply = "it sent a reply larger than asked "
			    "for";
		return NULL;
	}
	return store_hiredis_fn->createArray(t, n);
}

/* An integer reply, unless no command asked for it. */
static void *
store_create_integer(const redisReadTask *t, long long v)
{
	if (store_unasked(t))
		return NULL;
	return store_hiredis_fn->createInteger(t, v);
}

/* A nil reply, unless no command asked for it. */
static void *
store_create_nil(const redisReadTask *t)
{
	if (store_unasked(t))
		return NULL;
	return store_hiredis_fn->createNil(t);
}

/* Take hiredis' own functions from a reader of its making. */
static void
store_fn_init(void)
{
	redisReader	*r;

	if ((r = redisReaderCreate()) == NULL)
		return;
	store_hiredis_fn = r->fn;
	redisReaderFree(r);
	store_fn = *store_hiredis_fn;
	store_fn.createString = store_create_string;
	store_fn.createArray = store_create_array;
	store_fn.createInteger = store_create_integer;
	store_fn.createNil = store_create_nil;
}

/*
 * hiredis on the worker's event base: its read and write events.  Before
 * each read, the bytes read of replies not yet whole are looked at:
 * hiredis keeps a bulk string until its last byte, however long it says
 * it is, and no reply the gateway asks for is more than a few hundred
 * bytes.  A store that sends more is given up, rather than buffered
 * until the reply timeout (or, for a renewal, the next renewal).
 */
struct store_ev {
	redisAsyncContext	*e_ac;
	struct event		*e_rd;
	struct event		*e_wr;
};

/* Readable: hand over to hiredis, unless it holds too much already. */
static void
store_ev_read(evutil_socket_t fd, short ev, void *arg)
{
	struct store_ev		*e = arg;
	redisAsyncContext	*ac = e->e_ac;
	redisReader		*rd = ac->c.reader;
	struct wsg_store	*st = ac->data;

	if (st != NULL && st->st_ac == ac && rd != NULL &&
	    rd->len - rd->pos > STORE_MAX_BUFFERED) {
		st->st_bad_reply = "it sent a reply larger than asked for";
		store_conn_lost(st, st->st_bad_reply);	/* frees e */
		return;
	}
	redisAsyncHandleRead(ac);
}

/* Writable: hiredis sends what it has queued, or ends its connect. */
static void
store_ev_write(evutil_socket_t fd, short ev, void *arg)
{
	struct store_ev	*e = arg;

	redisAsyncHandleWrite(e->e_ac);
}

/* hiredis' hook: watch for replies. */
static void
store_ev_add_read(void *arg)
{
	struct store_ev	*e = arg;

	event_add(e->e_rd, NULL);
}

/* hiredis' hook: stop watching for replies. */
static void
store_ev_del_read(void *arg)
{
	struct store_ev	*e = arg;

	event_del(e->e_rd);
}

/* hiredis' hook: it has something to send. */
static void
store_ev_add_write(void *arg)
{
	struct store_ev	*e = arg;

	event_add(e->e_wr, NULL);
}

/* hiredis' hook: it has sent everything. */
static void
store_ev_del_write(void *arg)
{
	struct store_ev	*e = arg;

	event_del(e->e_wr);
}

/* hiredis' hook: the context is going away. */
static void
store_ev_cleanup(void *arg)
{
	struct store_ev	*e = arg;

	event_free(e->e_rd);
	event_free(e->e_wr);
	free(e);
}

/* Attach a new hiredis context to a base.  Returns 0, or -1. */
static int
store_ev_attach(redisAsyncContext *ac, struct event_base *base)
{
	struct store_ev	*e;

	if (ac->ev.data != NULL || (e = calloc(1, sizeof(*e))) == NULL)
		return -1;
	e->e_ac = ac;
	e->e_rd = event_new(base, ac->c.fd, EV_READ, store_ev_read, e);
	e->e_wr = event_new(base, ac->c.fd, EV_WRITE, store_ev_write, e);
	if (e->e_rd == NULL || e->e_wr == NULL) {
		if (e->e_rd != NULL)
			event_free(e->e_rd);
		if (e->e_wr != NULL)
			event_free(e->e_wr);
		free(e);
		return -1;
	}
	ac->ev.addRead = store_ev_add_read;
	ac->ev.delRead = store_ev_del_read;
	ac->ev.addWrite = store_ev_add_write;
	ac->ev.delWrite = store_ev_del_write;
	ac->ev.cleanup = store_ev_cleanup;
	ac->ev.data = e;
	return 0;
}

/* Free a request whose callback has run and that hiredis no longer holds. */
static void
store_req_free(struct store_req *r)
{
	event_free(r->r_timer);
	free(r);
}

/* Take a request out of the pending list; its callback will not run. */
static void
store_req_unlink(struct store_req *r)
{
	if (!r->r_pending)
		return;
	TAILQ_REMOVE(&r->r_store->st_reqs, r, r_entry);
	r->r_store->st_npending--;
	r->r_pending = 0;
}

/* Call a request's callback, once. */
static void
store_deliver(struct store_req *r, enum wsg_store_result res, uint32_t ra)
{
	wsg_store_cb	 cb = r->r_cb;
	void		*arg = r->r_arg;

	if (cb == NULL)
		return;
	r->r_cb = NULL;
	store_req_unlink(r);
	evtimer_del(r->r_timer);
	if (res == WSG_STORE_DOWN)
		r->r_store->st_stats.ss_failed++;
	cb(arg, res, ra);
}

/* The chain of a lease id. */
static struct store_lease **
store_chain(struct wsg_store *st, uint64_t id)
{
	return &st->st_chains[(id ^ (id >> 17)) % STORE_LEASE_CHAINS];
}

static void	store_refresh_one(struct wsg_store *,
		    const struct store_lease *);
static void	store_log_error(struct wsg_store *, const char *,
		    const char *);

/*
 * A refresh's reply.  NOSCRIPT means Redis lost its script cache while
 * connected (SCRIPT FLUSH): load the scripts again and refresh every lease
 * behind them, at most once per refresh period, or the leases of open
 * connections would silently expire.
 */
static void
store_refresh_reply_cb(redisAsyncContext *ac, void *rp, void *privdata)
{
	struct wsg_store	*st = privdata;
	redisReply		*reply = rp;
	struct store_lease	*l;

	if (reply == NULL || st == NULL || ac != st->st_ac || st->st_freeing)
		return;
	st->st_refresh_done++;
	if (reply->type != REDIS_REPLY_ERROR)
		return;
	if (strncmp(reply->str, "NOSCRIPT", 8) != 0) {
		store_log_error(st, "lease refresh failed", reply->str);
		return;
	}
	if (st->st_reloaded)
		return;
	st->st_reloaded = 1;
	redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %s", store_admit_lua);
	redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %s", store_refresh_lua);
	TAILQ_FOREACH(l, &st->st_leases, l_entry)
		store_refresh_one(st, l);
}

/* Send a lease's refresh. */
static void
store_refresh_one(struct wsg_store *st, const struct store_lease *l)
{
	char		 ttl[24];
	const char	*argv[6];
	size_t		 argvlen[6];
	int		 i;

	snprintf(ttl, sizeof(ttl), "%" PRIu64, st->st_conf.sc_lease_ttl_ms);
	argv[0] = "EVALSHA";
	argv[1] = st->st_refresh_sha;
	argv[2] = "1";
	argv[3] = l->l_key;
	argv[4] = l->l_member;
	argv[5] = ttl;
	for (i = 0; i < 6; i++)
		argvlen[i] = strlen(argv[i]);
	if (redisAsyncCommandArgv(st->st_ac, store_refresh_reply_cb, st, 6,
	    argv, argvlen) == REDIS_OK)
		st->st_refresh_sent++;
}

/* Send ZREM for a lease member (fire and forget). */
static void
store_zrem(struct wsg_store *st, const char *key, const char *member)
{
	if (st->st_ac == NULL || st->st_freeing)
		return;
	(void)redisAsyncCommand(st->st_ac, NULL, NULL, "ZREM %s %s", key,
	    member);
}

/* Remember a lease to remove once connected again (see store_orphan). */
static void
store_orphan_add(struct wsg_store *st, const char *key, const char *member)
{
	struct store_orphan	*o;

	if (st->st_freeing || st->st_norphans >= STORE_MAX_PENDING)
		return;		/* it expires after lease_ttl */
	if ((o = calloc(1, sizeof(*o))) == NULL ||
	    (o->o_key = strdup(key)) == NULL) {
		free(o);
		return;
	}
	snprintf(o->o_member, sizeof(o->o_member), "%s", member);
	TAILQ_INSERT_TAIL(&st->st_orphans, o, o_entry);
	st->st_norphans++;
}

/* Connected: remove the orphaned leases (or forget them, when freeing). */
static void
store_orphans_flush(struct wsg_store *st)
{
	struct store_orphan	*o;

	while ((o = TAILQ_FIRST(&st->st_orphans)) != NULL) {
		TAILQ_REMOVE(&st->st_orphans, o, o_entry);
		st->st_norphans--;
		store_zrem(st, o->o_key, o->o_member);
		free(o->o_key);
		free(o);
	}
}

/* Keep a lease alive until store_release(); NULL: out of memory. */
static struct store_lease *
store_lease_new(struct wsg_store *st, uint64_t id, const char *key,
    const char *member)
{
	struct store_lease	*l, **chain;

	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (l->l_key = strdup(key)) == NULL) {
		free(l);
		return NULL;
	}
	l->l_id = id;
	snprintf(l->l_member, sizeof(l->l_member), "%s", member);
	chain = store_chain(st, l->l_id);
	l->l_next = *chain;
	*chain = l;
	TAILQ_INSERT_TAIL(&st->st_leases, l, l_entry);
	st->st_stats.ss_leases++;
	return l;
}

/* Keep a granted lease alive until store_release(). */
static void
store_lease_add(struct wsg_store *st, const struct store_req *r)
{
	/* Out of memory, not refreshed: it stops counting after lease_ttl. */
	(void)store_lease_new(st, r->r_lease_id, r->r_leasekey, r->r_member);
}

/* Log a Redis error reply when it differs from the last one logged. */
static void
store_log_error(struct wsg_store *st, const char *what, const char *msg)
{
	char	buf[STORE_ERR_LEN];

	snprintf(buf, sizeof(buf), "%s", msg);
	if (strcmp(buf, st->st_last_err) == 0)
		return;
	memcpy(st->st_last_err, buf, sizeof(buf));
	log_warnx("rate_limit_store: %s: %s", what, buf);
}

static int	store_send(struct wsg_store *, struct store_req *);

/* hiredis' answer to an admission (reply NULL: the connection is gone). */
static void
store_reply_cb(redisAsyncContext *ac, void *rp, void *privdata)
{
	struct store_req	*r = privdata;
	struct wsg_store	*st = r->r_store;
	redisReply		*reply = rp;
	long long		 code, ms;

	r->r_inflight = 0;
	if (reply == NULL) {
		/* Redis may still run it, or may have: a lease nobody holds. */
		if (r->r_lease)
			store_orphan_add(st, r->r_leasekey, r->r_member);
		store_deliver(r, WSG_STORE_DOWN, 0);
		store_req_free(r);
		return;
	}
	if (reply->type == REDIS_REPLY_ERROR && !r->r_evalled &&
	    strncmp(reply->str, "NOSCRIPT", 8) == 0 && r->r_cb != NULL) {
		r->r_evalled = 1;
		if (store_send(st, r) == 0)
			return;
		store_deliver(r, WSG_STORE_DOWN, 0);
		store_req_free(r);
		return;
	}
	/* Only {0, 0}, {1, ms} and {2, 1000} come from the script. */
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[0]->type != REDIS_REPLY_INTEGER ||
	    reply->element[1]->type != REDIS_REPLY_INTEGER ||
	    reply->element[0]->integer < 0 ||
	    reply->element[0]->integer > 2) {
		store_log_error(st, "admission script failed",
		    reply->type == REDIS_REPLY_ERROR ? reply->str :
		    "unexpected reply");
		store_deliver(r, WSG_STORE_DOWN, 0);
		store_req_free(r);
		return;
	}
	code = reply->element[0]->integer;
	ms = reply->element[1]->integer;
	if (code == 0 && r->r_lease) {
		/* Granted to a request nobody waits for: give it back. */
		if (r->r_cb == NULL)
			store_zrem(st, r->r_leasekey, r->r_member);
		else
			store_lease_add(st, r);
	}
	if (code == 0)
		store_deliver(r, WSG_STORE_OK, 0);
	else if (code == 1)
		store_deliver(r, WSG_STORE_RATE,
		    ratelimit_retry_after(ms < 0 ? 0 : (uint64_t)ms));
	else
		store_deliver(r, WSG_STORE_CONCURRENT, 1);
	store_req_free(r);
}

/* Send a request's script to Redis.  Returns 0, or -1 if it could not. */
static int
store_send(struct wsg_store *st, struct store_req *r)
{
	const char	*argv[11];
	size_t		 argvlen[11];
	int		 i;

	if (st->st_ac == NULL || st->st_state == STORE_DISCONNECTED)
		return -1;
	argv[0] = r->r_evalled ? "EVAL" : "EVALSHA";
	argv[1] = r->r_evalled ? store_admit_lua : st->st_admit_sha;
	argv[2] = "2";
	argv[3] = r->r_connkey;
	argv[4] = r->r_leasekey;
	for (i = 0; i < 5; i++)
		argv[5 + i] = r->r_args[i];
	argv[10] = r->r_member;
	for (i = 0; i < 11; i++)
		argvlen[i] = strlen(argv[i]);
	if (redisAsyncCommandArgv(st->st_ac, store_reply_cb, r, 11, argv,
	    argvlen) != REDIS_OK)
		return -1;
	r->r_inflight = 1;
	return 0;
}

/*
 * A request's timer: either the answer decided without Redis is due, or
 * Redis did not reply in time, and the connection is given up.  Not one
 * still being set up: STORE_CONNECT_TIMEOUT_MS bounds that, and a Redis
 * far enough away to need longer than a reply timeout for it would
 * otherwise never come back while handshakes keep coming.  hiredis keeps
 * the request and calls back once connected or given up.
 */
static void
store_req_timer_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct store_req	*r = arg;
	struct wsg_store	*st = r->r_store;

	if (!r->r_inflight) {
		store_deliver(r, WSG_STORE_DOWN, 0);
		store_req_free(r);
		return;
	}
	st->st_stats.ss_timeouts++;
	store_deliver(r, WSG_STORE_DOWN, 0);
	if (st->st_state != STORE_CONNECTING)
		store_conn_lost(st, "no reply in time");
}

/* Ask Redis to admit a connection. */
int
store_admit(struct wsg_store *st, const char *policy, const char *addr,
    const struct wsg_ratelimit_conf *rc, uint64_t lease_id, wsg_store_cb cb,
    void *arg)
{
	struct store_req	*r;
	struct timeval		 tv;
	const char		*pfx = st->st_conf.sc_key_prefix;
	int			 n1, n2, down;

	if (cb == NULL || rc == NULL || st->st_freeing ||
	    st->st_npending >= STORE_MAX_PENDING)
		return -1;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return -1;
	r->r_timer = evtimer_new(st->st_base, store_req_timer_cb, r);
	n1 = snprintf(r->r_connkey, sizeof(r->r_connkey), "%sconn:%s:%s",
	    pfx, policy, addr);
	n2 = snprintf(r->r_leasekey, sizeof(r->r_leasekey), "%slease:%s:%s",
	    pfx, policy, addr);
	if (r->r_timer == NULL || n1 < 0 || (size_t)n1 >= STORE_MAX_KEY ||
	    n2 < 0 || (size_t)n2 >= STORE_MAX_KEY) {
		if (r->r_timer != NULL)
			event_free(r->r_timer);
		free(r);
		return -1;
	}
	r->r_store = st;
	r->r_cb = cb;
	r->r_arg = arg;
	r->r_lease_id = lease_id;
	r->r_lease = rc->rc_concurrent != 0;
	snprintf(r->r_member, sizeof(r->r_member), "%016" PRIx64 ":%" PRIu64,
	    st->st_instance, lease_id);
	snprintf(r->r_args[0], sizeof(r->r_args[0]), "%" PRIu64,
	    rc->rc_connections.rl_rate.r_amount);
	snprintf(r->r_args[1], sizeof(r->r_args[1]), "%" PRIu64,
	    rc->rc_connections.rl_rate.r_per_ms);
	snprintf(r->r_args[2], sizeof(r->r_args[2]), "%" PRIu64,
	    rc->rc_connections.rl_burst);
	snprintf(r->r_args[3], sizeof(r->r_args[3]), "%" PRIu64,
	    rc->rc_concurrent);
	snprintf(r->r_args[4], sizeof(r->r_args[4]), "%" PRIu64,
	    st->st_conf.sc_lease_ttl_ms);
	TAILQ_INSERT_TAIL(&st->st_reqs, r, r_entry);
	r->r_pending = 1;
	st->st_npending++;
	st->st_stats.ss_requests++;
	down = store_send(st, r) == -1;
	tv.tv_sec = down ? 0 : (time_t)(st->st_timeout_ms / 1000);
	tv.tv_usec = down ? 0 : (suseconds_t)(st->st_timeout_ms % 1000) * 1000;
	evtimer_add(r->r_timer, &tv);
	return 0;
}

/*
 * A connection admitted without Redis (on_failure local or allow): from
 * when Redis is available again, it holds a lease as if Redis had
 * granted it, whatever the limit, so that it counts as the others do.
 */
int
store_adopt(struct wsg_store *st, const char *policy, const char *addr,
    uint64_t lease_id)
{
	struct store_lease	*l;
	char			 key[STORE_MAX_KEY];
	char			 member[STORE_MEMBER_LEN];
	int			 n;

	if (st->st_freeing)
		return -1;
	n = snprintf(key, sizeof(key), "%slease:%s:%s",
	    st->st_conf.sc_key_prefix, policy, addr);
	if (n < 0 || (size_t)n >= sizeof(key))
		return -1;
	snprintf(member, sizeof(member), "%016" PRIx64 ":%" PRIu64,
	    st->st_instance, lease_id);
	if ((l = store_lease_new(st, lease_id, key, member)) == NULL)
		return -1;
	/* Else the connection's setup refreshes every lease. */
	if (st->st_state == STORE_UP)
		store_refresh_one(st, l);
	return 0;
}

/* Withdraw a pending admission. */
int
store_cancel(struct wsg_store *st, uint64_t lease_id)
{
	struct store_req	*r;

	TAILQ_FOREACH(r, &st->st_reqs, r_entry)
		if (r->r_lease_id == lease_id)
			break;
	if (r == NULL)
		return 0;
	r->r_cb = NULL;
	store_req_unlink(r);
	/*
	 * One in flight keeps its timer: Redis may have stopped answering,
	 * and if every client gives up first, only these timers notice.
	 */
	if (!r->r_inflight)
		store_req_free(r);
	return 1;
}

/* A connection has closed: forget and remove its lease. */
void
store_release(struct wsg_store *st, uint64_t lease_id)
{
	struct store_lease	**pp, *l;

	for (pp = store_chain(st, lease_id); *pp != NULL;
	    pp = &(*pp)->l_next)
		if ((*pp)->l_id == lease_id)
			break;
	if ((l = *pp) == NULL)
		return;
	*pp = l->l_next;
	TAILQ_REMOVE(&st->st_leases, l, l_entry);
	st->st_stats.ss_leases--;
	if (st->st_state == STORE_UP)
		store_zrem(st, l->l_key, l->l_member);
	else
		store_orphan_add(st, l->l_key, l->l_member);
	free(l->l_key);
	free(l);
}

/* Every lease_ttl / 3: tell Redis this gateway's leases are alive. */
static void
store_refresh_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct wsg_store	*st = arg;
	struct store_lease	*l;

	st->st_reloaded = 0;
	if (st->st_state != STORE_UP)
		return;
	/*
	 * A refresh sent by the last period still unanswered (they are
	 * answered in order) has had a whole period: Redis has stopped
	 * reading or answering.  Without an admission there is no request
	 * timer to notice, and refreshes would pile up in hiredis's output
	 * buffer period after period.  Drop the connection, as a request
	 * timeout does.  Those sent since (at connect, say) get their own
	 * whole period.
	 */
	if (st->st_refresh_done < st->st_refresh_due) {
		st->st_stats.ss_timeouts++;
		store_conn_lost(st, "no reply to lease refreshes in time");
		return;
	}
	TAILQ_FOREACH(l, &st->st_leases, l_entry)
		store_refresh_one(st, l);
	st->st_refresh_due = st->st_refresh_sent;
}

/* Schedule the next connection attempt, backing off. */
static void
store_retry_later(struct wsg_store *st)
{
	struct timeval	tv;

	/*
	 * Only a connection that lasted starts the backoff afresh: a store
	 * that drops each one as soon as it is set up is not tried (and
	 * logged) again and again at the shortest wait.
	 */
	if (st->st_up_ms != 0 &&
	    ratelimit_now_ms() - st->st_up_ms >= STORE_BACKOFF_MAX_MS)
		st->st_backoff_ms = STORE_BACKOFF_MIN_MS;
	st->st_up_ms = 0;
	st->st_state = STORE_DISCONNECTED;
	tv.tv_sec = (time_t)(st->st_backoff_ms / 1000);
	tv.tv_usec = (suseconds_t)(st->st_backoff_ms % 1000) * 1000;
	evtimer_add(st->st_retry_ev, &tv);
	st->st_backoff_ms *= 2;
	if (st->st_backoff_ms > STORE_BACKOFF_MAX_MS)
		st->st_backoff_ms = STORE_BACKOFF_MAX_MS;
}

/*
 * Give up the connection: hiredis calls back every command in flight with
 * NULL, which ends those requests in WSG_STORE_DOWN.
 */
static void
store_conn_lost(struct wsg_store *st, const char *why)
{
	redisAsyncContext	*ac = st->st_ac;

	st->st_ac = NULL;
	/*
	 * Before hiredis calls back the commands in flight: their callers
	 * adopt or release leases, which must wait for the next connection
	 * (there is none to send on now).
	 */
	st->st_state = STORE_DISCONNECTED;
	evtimer_del(st->st_retry_ev);
	if (ac != NULL) {
		ac->data = NULL;	/* its disconnect callback: not ours */
		redisAsyncFree(ac);
	}
	store_report(st, 0, why);
	if (!st->st_freeing)
		store_retry_later(st);
}

/* hiredis: the TCP or unix connection is made, or failed. */
static void
store_connect_cb(const redisAsyncContext *ac, int status)
{
	struct wsg_store	*st = ac->data;

	if (st == NULL || status == REDIS_OK)
		return;
	/* hiredis frees the context itself after this. */
	st->st_ac = NULL;
	evtimer_del(st->st_retry_ev);
	store_report(st, 0, ac->errstr[0] != '\0' ? ac->errstr :
	    "cannot connect");
	store_retry_later(st);
}

/* hiredis: an established connection is gone. */
static void
store_disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct wsg_store	*st = ac->data;

	if (st == NULL || st->st_freeing)
		return;
	st->st_ac = NULL;
	evtimer_del(st->st_retry_ev);
	store_report(st, 0, st->st_bad_reply != NULL ? st->st_bad_reply :
	    ac->errstr[0] != '\0' ? ac->errstr : "connection closed");
	store_retry_later(st);
}

/* hiredis: a reply of SELECT or SCRIPT LOAD at connect. */
static void
store_setup_cb(redisAsyncContext *ac, void *rp, void *privdata)
{
	struct wsg_store	*st = privdata;
	redisReply		*reply = rp;
	struct store_lease	*l;

	if (reply == NULL || ac != st->st_ac)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		store_log_error(st, "setting up the connection", reply->str);
		store_conn_lost(st, "setting up the connection failed");
		return;
	}
	if (--st->st_setup_left > 0)
		return;
	st->st_state = STORE_UP;
	st->st_up_ms = ratelimit_now_ms();
	st->st_last_err[0] = '\0';
	evtimer_del(st->st_retry_ev);
	store_report(st, 1, NULL);
	store_orphans_flush(st);
	/* Leases may have expired or been lost while Redis was away. */
	TAILQ_FOREACH(l, &st->st_leases, l_entry)
		store_refresh_one(st, l);
}

/* Start a connection attempt. */
static void
store_connect(struct wsg_store *st)
{
	redisAsyncContext	*ac;
	struct timeval		 tv;

	if (st->st_conf.sc_path != NULL)
		ac = redisAsyncConnectUnix(st->st_conf.sc_path);
	else
		ac = redisAsyncConnect(st->st_conf.sc_host,
		    st->st_conf.sc_port);
	if (ac == NULL || ac->err) {
		store_report(st, 0, ac != NULL ? ac->errstr :
		    "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		store_retry_later(st);
		return;
	}
	ac->data = st;
	st->st_bad_reply = NULL;
	if (store_hiredis_fn != NULL && ac->c.reader->fn == store_hiredis_fn) {
		ac->c.reader->fn = &store_fn;
		ac->c.reader->privdata = ac;
	}
	if (store_ev_attach(ac, st->st_base) == -1) {
		redisAsyncFree(ac);
		store_report(st, 0, "cannot attach to the event loop");
		store_retry_later(st);
		return;
	}
	redisAsyncSetConnectCallback(ac, store_connect_cb);
	redisAsyncSetDisconnectCallback(ac, store_disconnect_cb);
	st->st_ac = ac;
	st->st_state = STORE_CONNECTING;
	st->st_setup_left = 2;
	st->st_refresh_sent = 0;
	st->st_refresh_done = 0;
	st->st_refresh_due = 0;
	if (st->st_conf.sc_db != 0) {
		st->st_setup_left++;
		redisAsyncCommand(ac, store_setup_cb, st, "SELECT %d",
		    st->st_conf.sc_db);
	}
	redisAsyncCommand(ac, store_setup_cb, st, "SCRIPT LOAD %s",
	    store_admit_lua);
	redisAsyncCommand(ac, store_setup_cb, st, "SCRIPT LOAD %s",
	    store_refresh_lua);
	tv.tv_sec = STORE_CONNECT_TIMEOUT_MS / 1000;
	tv.tv_usec = (STORE_CONNECT_TIMEOUT_MS % 1000) * 1000;
	evtimer_add(st->st_retry_ev, &tv);
}

/* The retry timer: reconnect, or give up a connection that hangs. */
static void
store_retry_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct wsg_store	*st = arg;

	if (st->st_state == STORE_DISCONNECTED)
		store_connect(st);
	else if (st->st_state == STORE_CONNECTING)
		store_conn_lost(st, "connect timed out");
}

/* A store on a base; connects in the background. */
struct wsg_store *
store_new(struct event_base *base, const struct wsg_store_conf *sc)
{
	struct wsg_store	*st;
	struct timeval		 tv;
	uint64_t		 every;

	(void)pthread_once(&store_fn_once, store_fn_init);
	if ((st = calloc(1, sizeof(*st))) == NULL)
		return NULL;
	st->st_base = base;
	st->st_conf = *sc;
	st->st_conf.sc_url = strdup(sc->sc_url != NULL ? sc->sc_url : "");
	st->st_conf.sc_host = sc->sc_host != NULL ? strdup(sc->sc_host) :
	    NULL;
	st->st_conf.sc_path = sc->sc_path != NULL ? strdup(sc->sc_path) :
	    NULL;
	st->st_conf.sc_key_prefix = strdup(sc->sc_key_prefix != NULL ?
	    sc->sc_key_prefix : "wsgate:");
	st->st_timeout_ms = sc->sc_timeout_ms != 0 ? sc->sc_timeout_ms :
	    WSG_STORE_TIMEOUT_MS;
	st->st_reported = -1;
	st->st_backoff_ms = STORE_BACKOFF_MIN_MS;
	TAILQ_INIT(&st->st_reqs);
	TAILQ_INIT(&st->st_leases);
	TAILQ_INIT(&st->st_orphans);
	st->st_retry_ev = evtimer_new(base, store_retry_cb, st);
	st->st_refresh_ev = event_new(base, -1, EV_PERSIST, store_refresh_cb,
	    st);
	if (st->st_conf.sc_url == NULL || st->st_conf.sc_key_prefix == NULL ||
	    (sc->sc_host != NULL && st->st_conf.sc_host == NULL) ||
	    (sc->sc_path != NULL && st->st_conf.sc_path == NULL) ||
	    (st->st_conf.sc_host == NULL && st->st_conf.sc_path == NULL) ||
	    st->st_retry_ev == NULL || st->st_refresh_ev == NULL) {
		if (st->st_retry_ev != NULL)
			event_free(st->st_retry_ev);
		if (st->st_refresh_ev != NULL)
			event_free(st->st_refresh_ev);
		store_conf_clear(&st->st_conf);
		free(st);
		return NULL;
	}
	if (getrandom(&st->st_instance, sizeof(st->st_instance), 0) !=
	    (ssize_t)sizeof(st->st_instance))
		st->st_instance = (uint64_t)time(NULL) ^ (uintptr_t)st ^
		    ratelimit_now_ms() << 20;
	store_sha(store_admit_lua, st->st_admit_sha);
	store_sha(store_refresh_lua, st->st_refresh_sha);
	every = st->st_conf.sc_lease_ttl_ms / 3;
	if (every == 0)
		every = 1;
	tv.tv_sec = (time_t)(every / 1000);
	tv.tv_usec = (suseconds_t)(every % 1000) * 1000;
	evtimer_add(st->st_refresh_ev, &tv);
	store_connect(st);
	return st;
}

/* Free a store, calling every pending callback with WSG_STORE_DOWN. */
void
store_free(struct wsg_store *st)
{
	struct store_req	*r;
	struct store_lease	*l;
	redisAsyncContext	*ac;

	if (st == NULL)
		return;
	st->st_freeing = 1;
	while ((r = TAILQ_FIRST(&st->st_reqs)) != NULL) {
		store_deliver(r, WSG_STORE_DOWN, 0);
		if (!r->r_inflight)
			store_req_free(r);
	}
	/* Frees the requests still in flight through store_reply_cb(). */
	if ((ac = st->st_ac) != NULL) {
		st->st_ac = NULL;
		ac->data = NULL;
		redisAsyncFree(ac);
	}
	while ((l = TAILQ_FIRST(&st->st_leases)) != NULL) {
		TAILQ_REMOVE(&st->st_leases, l, l_entry);
		free(l->l_key);
		free(l);
	}
	store_orphans_flush(st);	/* st_freeing: no ZREM is sent */
	event_free(st->st_retry_ev);
	event_free(st->st_refresh_ev);
	store_conf_clear(&st->st_conf);
	free(st);
}

/* The counters of a store. */
void
store_stats(const struct wsg_store *st, struct wsg_store_stats *s)
{
	*s = st->st_stats;
}
