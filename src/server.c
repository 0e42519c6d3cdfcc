/*
 * The process.  The main thread owns signals, the admin endpoint, loading
 * configurations and binding sockets; each worker thread runs its own
 * event loop with its own SO_REUSEPORT listening sockets and its own
 * sessions, which never move between threads.  The main thread talks to a
 * worker only by posting it a message (a new generation with the sockets
 * it needs, or "drain") and waking its loop.
 */
#include "autoconf.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <openssl/crypto.h>

#include "admin.h"
#include "config.h"
#include "failalloc.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "relay.h"
#include "server.h"
#include "session.h"
#include "store.h"
#include "tls.h"
#include "tls13.h"
#include "upstream.h"

/* The longest the drain spreads its close frames over. */
#define WSG_DRAIN_SPREAD_MS	2000
/* How often the main thread looks whether draining workers are done. */
#define WSG_DRAIN_POLL_MS	50
/*
 * How long past shutdown_timeout (or a second signal) the main thread
 * waits for a worker that has not finished, such as one blocked writing a
 * log line nobody reads, before it exits without it.
 */
#define WSG_DRAIN_GRACE_MS	5000
#define WSG_MAX_WORKERS		256

enum wsg_msg_type {
	WSG_MSG_NONE = 0,
	WSG_MSG_RECONF,
	WSG_MSG_DRAIN,
	WSG_MSG_STOP
};

static uint64_t			 server_ids;
static struct event_base	*server_base;
static struct wsg_worker	*server_workers;
static size_t			 server_nworkers;
static struct wsg_config	*server_conf;
static struct wsg_admin		*server_admin_ep;
static int			 server_draining;
static int			 server_stop_sig;	/* second signal, if any */
static struct event		*server_drain_poll;
/*
 * In server_now_ms() time: when a drain cuts off what is still open (set
 * before the drain is posted), and when the main thread gives up on a
 * worker that has not finished.
 */
static uint64_t			 server_drain_end;
static uint64_t			 server_give_up;
static struct wsg_rltable	*server_rl;

/*
 * What a reload cannot change, as the process started with it: a reload
 * warns when its file differs from these, not from the file before it.
 */
static struct {
	uint64_t		 busy_poll_ms;
	char			*user;
	uint64_t		 rl_max_entries;
	uint64_t		 rl_idle_ms;
	struct wsg_store_conf	 store;	/* its url, key prefix, lease ttl */
	int			 has_store;
} server_boot;

static size_t	server_worker_count(const struct wsg_config *);

struct wsg_rltable *
server_rltable(void)
{
	return (server_rl);
}

/* When the certificate of each TLS listener runs out. */
static void
server_cert_metrics(struct evbuffer *b, const struct wsg_config *conf)
{
	const struct wsg_listener_conf	*lc;
	int64_t				 t;
	size_t				 i;

	metrics_printf(b,
	    "# HELP wsgate_tls_certificate_expiry_timestamp_seconds The "
	    "notAfter of the certificate each TLS listener serves.\n"
	    "# TYPE wsgate_tls_certificate_expiry_timestamp_seconds gauge\n");
	for (i = 0; i < conf->c_nlisteners; i++) {
		lc = &conf->c_listeners[i];
		if (!lc->lc_tls || (t = tls_ctx_not_after(lc->lc_ssl_ctx)) == -1)
			continue;
		metrics_printf(b,
		    "wsgate_tls_certificate_expiry_timestamp_seconds"
		    "{listener=");
		metrics_label(b, lc->lc_name);
		metrics_printf(b, "} %lld\n", (long long)t);
	}
}

void
server_metrics(struct evbuffer *b)
{
	struct wsg_rl_stats	st;

	if (server_conf != NULL) {
		upstream_metrics(b, server_conf);
		server_cert_metrics(b, server_conf);
	}
	if (server_rl == NULL)
		return;
	rltable_stats(server_rl, &st);
	metrics_printf(b,
	    "# HELP wsgate_ratelimit_table_entries Addresses tracked now.\n"
	    "# TYPE wsgate_ratelimit_table_entries gauge\n"
	    "wsgate_ratelimit_table_entries %llu\n"
	    "# HELP wsgate_ratelimit_table_max_entries The table's cap.\n"
	    "# TYPE wsgate_ratelimit_table_max_entries gauge\n"
	    "wsgate_ratelimit_table_max_entries %llu\n"
	    "# HELP wsgate_ratelimit_table_evictions_total Idle addresses "
	    "dropped at the cap.\n"
	    "# TYPE wsgate_ratelimit_table_evictions_total counter\n"
	    "wsgate_ratelimit_table_evictions_total %llu\n"
	    "# HELP wsgate_ratelimit_table_expired_total Addresses dropped "
	    "after idle_expiry.\n"
	    "# TYPE wsgate_ratelimit_table_expired_total counter\n"
	    "wsgate_ratelimit_table_expired_total %llu\n"
	    "# HELP wsgate_ratelimit_table_full_total Connections refused: "
	    "the table was full of addresses with open connections.\n"
	    "# TYPE wsgate_ratelimit_table_full_total counter\n"
	    "wsgate_ratelimit_table_full_total %llu\n",
	    (unsigned long long)st.rs_entries,
	    (unsigned long long)st.rs_max_entries,
	    (unsigned long long)st.rs_evictions,
	    (unsigned long long)st.rs_expired,
	    (unsigned long long)st.rs_table_full);
}

/* The monotonic clock in milliseconds. */
static uint64_t
server_now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

/* The monotonic clock in microseconds, as sd_notify's MONOTONIC_USEC. */
static uint64_t
server_now_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000);
}

uint64_t
server_next_id(void)
{
	return (__atomic_add_fetch(&server_ids, 1, __ATOMIC_RELAXED));
}

/* Tell systemd (Type=notify) about a state change, if it is listening. */
static void
server_notify(const char *state)
{
	struct sockaddr_un	 sun;
	const char		*path = getenv("NOTIFY_SOCKET");
	socklen_t		 len;
	int			 fd;

	if (path == NULL || (path[0] != '/' && path[0] != '@') ||
	    strlen(path) >= sizeof(sun.sun_path))
		return;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strncpy(sun.sun_path, path, sizeof(sun.sun_path) - 1);
	if (path[0] == '@')
		sun.sun_path[0] = '\0';
	len = offsetof(struct sockaddr_un, sun_path) + strlen(path);
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL,
	    (struct sockaddr *)&sun, len) == -1)
		log_warn("sd_notify %s", state);
	close(fd);
}

/* Are two listen addresses the same socket? */
static int
server_same_addr(const struct wsg_listener_conf *a,
    const struct wsg_listener_conf *b)
{
	return (a->lc_addrlen == b->lc_addrlen &&
	    memcmp(&a->lc_addr, &b->lc_addr, a->lc_addrlen) == 0);
}

/* The listener of the old generation at the same address, if any. */
static const struct wsg_listener_conf *
server_old_listener(const struct wsg_config *old,
    const struct wsg_listener_conf *lc)
{
	size_t	i;

	for (i = 0; old != NULL && i < old->c_nlisteners; i++)
		if (server_same_addr(&old->c_listeners[i], lc))
			return (&old->c_listeners[i]);
	return (NULL);
}

/* Is a listen address the wildcard of its family (0.0.0.0 or ::)? */
static int
server_any_addr(const struct wsg_listener_conf *lc)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;

	if (lc->lc_addr.ss_family == AF_INET) {
		sin = (const struct sockaddr_in *)(const void *)&lc->lc_addr;
		return (sin->sin_addr.s_addr == htonl(INADDR_ANY));
	}
	sin6 = (const struct sockaddr_in6 *)(const void *)&lc->lc_addr;
	return (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
}

/* The port of a listen address. */
static in_port_t
server_addr_port(const struct wsg_listener_conf *lc)
{
	if (lc->lc_addr.ss_family == AF_INET6)
		return (((const struct sockaddr_in6 *)(const void *)
		    &lc->lc_addr)->sin6_port);
	return (((const struct sockaddr_in *)(const void *)
	    &lc->lc_addr)->sin_port);
}

/*
 * Does a listener of the old generation hold lc's port with a wildcard on
 * either side ([::]:P and [::1]:P, 0.0.0.0:P and 127.0.0.1:P)?  Then a
 * bind without SO_REUSEPORT, as listener_probe() makes, fails although
 * the new socket, made with it beside our own, binds: the port is ours.
 */
static int
server_old_overlap(const struct wsg_config *old,
    const struct wsg_listener_conf *lc)
{
	const struct wsg_listener_conf	*o;
	size_t				 i;

	for (i = 0; old != NULL && i < old->c_nlisteners; i++) {
		o = &old->c_listeners[i];
		if (o->lc_addr.ss_family == lc->lc_addr.ss_family &&
		    server_addr_port(o) == server_addr_port(lc) &&
		    (server_any_addr(o) || server_any_addr(lc)))
			return (1);
	}
	return (0);
}

/*
 * Does a worker still listen at lc's address, or on its port with a
 * wildcard on either side?  It does until it takes the newest generation:
 * a reload that puts back a listener the one before removed finds the
 * address still held by the gateway itself, not by another process.
 */
static int
server_held(const struct wsg_listener_conf *lc)
{
	struct wsg_worker	*w;
	size_t			 i;
	int			 held = 0;

	for (i = 0; i < server_nworkers && !held; i++) {
		w = &server_workers[i];
		pthread_mutex_lock(&w->w_lock);
		held = server_old_listener(w->w_conf, lc) != NULL ||
		    server_old_overlap(w->w_conf, lc);
		pthread_mutex_unlock(&w->w_lock);
	}
	return (held);
}

/* Drop a generation that was never taken, closing the sockets bound for it. */
static void
server_discard(struct wsg_config *conf, int *fds)
{
	size_t	i;

	for (i = 0; i < conf->c_nlisteners; i++)
		if (fds[i] != -1)
			close(fds[i]);
	free(fds);
	config_unref(conf);
}

/*
 * A newer generation replaces one a worker has not taken yet.  The newer
 * one was bound against the pending one, so it has no socket of its own
 * for an address the pending one added: that socket moves across, or the
 * worker would never listen there.
 */
static void
server_merge(struct wsg_config *conf, int *fds,
    const struct wsg_config *pend, int *pfds)
{
	size_t	i, j;

	for (i = 0; i < conf->c_nlisteners; i++) {
		if (fds[i] != -1)
			continue;
		for (j = 0; j < pend->c_nlisteners; j++)
			if (pfds[j] != -1 && server_same_addr(
			    &conf->c_listeners[i], &pend->c_listeners[j])) {
				fds[i] = pfds[j];
				pfds[j] = -1;
				break;
			}
	}
}

/* Post a message to a worker and wake its loop. */
static void
server_post(struct wsg_worker *w, int type, struct wsg_config *conf,
    int *fds)
{
	pthread_mutex_lock(&w->w_lock);
	/*
	 * An older reconfiguration it has not taken yet is replaced by a
	 * newer one.  A drain leaves it in place: the worker takes it first,
	 * so that it drains with the shutdown_timeout of the last reload.
	 */
	if (type == WSG_MSG_RECONF && w->w_msg_conf != NULL) {
		server_merge(conf, fds, w->w_msg_conf, w->w_msg_fds);
		server_discard(w->w_msg_conf, w->w_msg_fds);
	}
	if (type == WSG_MSG_RECONF) {
		w->w_msg_conf = conf;
		w->w_msg_fds = fds;
	} else if (type == WSG_MSG_DRAIN)
		w->w_msg_drain = 1;
	else
		w->w_msg_stop = 1;
	pthread_mutex_unlock(&w->w_lock);
	/* Wake the worker's loop: its only cross-thread entry point. */
	(void)eventfd_write(w->w_msg_fd, 1);
}

/* shutdown_timeout passed in a worker: stop waiting for its sessions. */
static void
server_drain_timeout_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct wsg_worker	*w = arg;

	log_warnx("shutdown timeout: %zu sessions still open", w->w_nsessions);
	event_base_loopbreak(w->w_base);
}

/*
 * Drain one worker: stop accepting and close every session with 1001.  The
 * close frames of open sessions are spread over a short random window so
 * that a large fleet of clients does not reconnect all at once.
 */
static void
server_worker_drain(struct wsg_worker *w)
{
	struct wsg_session	*s, *next;
	struct timeval		 tv;
	uint64_t		 spread, now, left;
	size_t			 i;

	if (w->w_draining)
		return;
	w->w_draining = 1;
	for (i = 0; i < w->w_nlisteners; i++) {
		listener_stop(w->w_listeners[i]);
		w->w_listeners[i] = NULL;
	}
	spread = w->w_conf->c_shutdown_timeout_ms / 4;
	if (spread > WSG_DRAIN_SPREAD_MS)
		spread = WSG_DRAIN_SPREAD_MS;
	for (s = TAILQ_FIRST(&w->w_sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, s_entry);
		session_drain(s, spread ? arc4random_uniform(spread + 1) : 0);
	}
	if (w->w_nsessions == 0) {
		event_base_loopexit(w->w_base, NULL);
		return;
	}
	/*
	 * The deadline is shutdown_timeout after the signal, not after this
	 * worker got to its message: one that was busy (blocked on a log)
	 * meanwhile must not outlast the main thread's patience.
	 */
	now = server_now_ms();
	left = server_drain_end > now ? server_drain_end - now : 0;
	tv.tv_sec = left / 1000;
	tv.tv_usec = (left % 1000) * 1000;
	w->w_drain_timer = evtimer_new(w->w_base, server_drain_timeout_cb, w);
	if (w->w_drain_timer == NULL)
		event_base_loopbreak(w->w_base);
	else
		evtimer_add(w->w_drain_timer, &tv);
}

/*
 * Stop a draining worker now, as its shutdown_timeout would: a session
 * whose close frame is still waiting in the spread is sent it at once,
 * and the end of server_worker_main() cuts off every one left.
 */
static void
server_worker_stop(struct wsg_worker *w)
{
	struct wsg_session	*s, *next;

	for (s = TAILQ_FIRST(&w->w_sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, s_entry);
		session_shutdown(s);
	}
	event_base_loopbreak(w->w_base);
}

/*
 * A worker takes a new generation: listeners at addresses it already has
 * are retargeted (new certificates and routes for new connections), new
 * ones start on the sockets the main thread bound, old ones stop.
 * Sessions keep the generation they hold a reference to.
 */
static void
server_worker_reconf(struct wsg_worker *w, struct wsg_config *conf, int *fds)
{
	struct wsg_config	 *was;
	struct wsg_listener	**nl;
	size_t			  i, j;
	int			 *kept;

	nl = calloc(conf->c_nlisteners, sizeof(*nl));
	kept = calloc(w->w_nlisteners + 1, sizeof(int));
	if (nl == NULL || kept == NULL) {
		log_warnx("worker %d: out of memory taking the new "
		    "configuration", w->w_index);
		for (i = 0; i < conf->c_nlisteners; i++)
			if (fds[i] != -1)
				close(fds[i]);
		free(nl);
		free(kept);
		config_unref(conf);
		return;
	}
	for (i = 0; i < conf->c_nlisteners; i++) {
		if (fds[i] != -1) {
			nl[i] = listener_start(w, &conf->c_listeners[i],
			    fds[i]);
			continue;
		}
		for (j = 0; j < w->w_nlisteners; j++)
			if (!kept[j] && w->w_listeners[j] != NULL &&
			    server_same_addr(&conf->c_listeners[i],
			    listener_conf(w->w_listeners[j])))
				break;
		if (j == w->w_nlisteners)
			continue;
		kept[j] = 1;
		nl[i] = w->w_listeners[j];
		listener_set_conf(nl[i], &conf->c_listeners[i]);
	}
	/*
	 * A listener that goes away first takes what waits in its backlog,
	 * under the generation it belongs to (w_conf is still that one):
	 * those connections came before the reload, and closing the socket
	 * would reset them.
	 */
	for (j = 0; j < w->w_nlisteners; j++)
		if (!kept[j] && w->w_listeners[j] != NULL) {
			listener_flush(w->w_listeners[j]);
			listener_stop(w->w_listeners[j]);
		}
	free(kept);
	free(w->w_listeners);
	w->w_listeners = nl;
	w->w_nlisteners = conf->c_nlisteners;
	/* Under the lock: the main thread looks at it (server_held()). */
	pthread_mutex_lock(&w->w_lock);
	was = w->w_conf;
	w->w_conf = conf;
	pthread_mutex_unlock(&w->w_lock);
	if (was != NULL)
		config_unref(was);
}

/* A message from the main thread. */
static void
server_worker_msg_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct wsg_worker	*w = arg;
	struct wsg_config	*conf;
	eventfd_t		 n;
	int			*fds, drain, stop;

	(void)eventfd_read(w->w_msg_fd, &n);
	pthread_mutex_lock(&w->w_lock);
	conf = w->w_msg_conf;
	fds = w->w_msg_fds;
	drain = w->w_msg_drain;
	stop = w->w_msg_stop;
	w->w_msg_conf = NULL;
	w->w_msg_fds = NULL;
	w->w_msg_drain = 0;
	w->w_msg_stop = 0;
	pthread_mutex_unlock(&w->w_lock);
	if (conf != NULL && w->w_draining)
		server_discard(conf, fds);
	else if (conf != NULL) {
		server_worker_reconf(w, conf, fds);
		free(fds);
	}
	if (drain)
		server_worker_drain(w);
	if (stop && w->w_draining)
		server_worker_stop(w);
}

void
server_session_gone(struct wsg_worker *w)
{
	if (w->w_draining && w->w_nsessions == 0)
		event_base_loopexit(w->w_base, NULL);
}

/*
 * Whether a reload changes what a worker's store was made with: it keeps
 * the store it has (on_failure alone is read from each session's config).
 */
static int
server_store_changed(const struct wsg_store_conf *a,
    const struct wsg_store_conf *b)
{
	if (a == NULL || b == NULL)
		return (a != b);
	/*
	 * The parsed address, not the URL's text: "redis://127.0.0.1" and
	 * "redis://127.0.0.1:6379/0" are the same store.  sc_host is the
	 * address as inet_ntop(3) wrote it, one spelling per address.
	 */
	return (strcmp(a->sc_host != NULL ? a->sc_host : "",
	    b->sc_host != NULL ? b->sc_host : "") != 0 ||
	    strcmp(a->sc_path != NULL ? a->sc_path : "",
	    b->sc_path != NULL ? b->sc_path : "") != 0 ||
	    a->sc_port != b->sc_port || a->sc_db != b->sc_db ||
	    strcmp(a->sc_key_prefix != NULL ? a->sc_key_prefix : "",
	    b->sc_key_prefix != NULL ? b->sc_key_prefix : "") != 0 ||
	    a->sc_lease_ttl_ms != b->sc_lease_ttl_ms);
}

/* Did a callback of the last pass stop the worker's loop? */
static int
server_worker_stopped(struct wsg_worker *w)
{
	return (event_base_got_exit(w->w_base) ||
	    event_base_got_break(w->w_base));
}

/*
 * The loop with busy_poll: once the relay has read, poll without sleeping
 * until it has read nothing for ns nanoseconds.  A virtual machine's core
 * that sleeps takes tens of microseconds to wake, at each hop of every
 * round trip; a busy one takes the next read at once.  Each pass is one
 * call of the loop, so the stop flags are looked at in between; a loop
 * that fails ends it, as it ends the worker's loop without busy_poll.
 */
static void
server_worker_spin(struct wsg_worker *w, uint64_t ns)
{
	struct timespec	 last, now;
	unsigned long	 seen;

	for (;;) {
		seen = relay_reads;
		if (event_base_loop(w->w_base, EVLOOP_ONCE |
		    EVLOOP_NO_EXIT_ON_EMPTY) == -1 || server_worker_stopped(w))
			return;
		if (relay_reads == seen)
			continue;
		clock_gettime(CLOCK_MONOTONIC, &last);
		for (;;) {
			seen = relay_reads;
			if (event_base_loop(w->w_base, EVLOOP_NONBLOCK |
			    EVLOOP_NO_EXIT_ON_EMPTY) == -1 ||
			    server_worker_stopped(w))
				return;
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (relay_reads != seen)
				last = now;
			else if ((uint64_t)(now.tv_sec - last.tv_sec) *
			    1000000000 + (uint64_t)now.tv_nsec -
			    (uint64_t)last.tv_nsec >= ns)
				break;
		}
	}
}

/* A worker thread: run its loop until it has drained, then clean up. */
static void *
server_worker_main(void *arg)
{
	struct wsg_worker	*w = arg;
	struct wsg_session	*s;
	size_t			 i;

	failalloc_arm_thread();
	if (w->w_conf->c_busy_poll_ms != 0)
		server_worker_spin(w, w->w_conf->c_busy_poll_ms * 1000000);
	else
		event_base_loop(w->w_base, EVLOOP_NO_EXIT_ON_EMPTY);
	/*
	 * Whatever is still open at the deadline is cut off, once the close
	 * frames a forced stop queued have had one turn to leave.
	 */
	event_base_loop(w->w_base, EVLOOP_NONBLOCK);
	w->w_cut = w->w_nsessions;
	while ((s = TAILQ_FIRST(&w->w_sessions)) != NULL) {
		log_debug("conn %llu: shutdown: cut off at shutdown_timeout",
		    (unsigned long long)s->s_id);
		session_close(s, "shutdown");
		session_peer_free(&s->s_client);
		session_peer_free(&s->s_upstream);
		event_base_loop(w->w_base, EVLOOP_NONBLOCK);
	}
	if (w->w_store != NULL) {
		store_free(w->w_store);
		w->w_store = NULL;
	}
	for (i = 0; i < w->w_nlisteners; i++)
		listener_stop(w->w_listeners[i]);
	free(w->w_listeners);
	w->w_listeners = NULL;
	tls13_thread_done();
	__atomic_store_n(&w->w_done, 1, __ATOMIC_RELEASE);
	return (NULL);
}

/*
 * Bind, for each worker, a socket for every listener of conf that old does
 * not already have (all of them when old is NULL).  Returns one array of
 * fds per worker (-1 where the worker keeps its socket), or NULL, with
 * nothing left open, if any bind fails.
 */
static int **
server_bind_all(struct wsg_config *conf, const struct wsg_config *old)
{
	int	**fds;
	size_t	  i, j, k;

	if ((fds = calloc(server_nworkers, sizeof(*fds))) == NULL)
		return (NULL);
	for (i = 0; i < server_nworkers; i++) {
		if ((fds[i] = malloc((conf->c_nlisteners + 1) *
		    sizeof(int))) == NULL)
			goto fail;
		for (j = 0; j < conf->c_nlisteners; j++)
			fds[i][j] = -1;
	}
	for (j = 0; j < conf->c_nlisteners; j++)
		if (server_old_listener(old, &conf->c_listeners[j]) == NULL &&
		    !server_old_overlap(old, &conf->c_listeners[j]) &&
		    (old == NULL || !server_held(&conf->c_listeners[j])) &&
		    listener_probe(&conf->c_listeners[j]) == -1)
			goto fail;
	for (i = 0; i < server_nworkers; i++)
		for (j = 0; j < conf->c_nlisteners; j++) {
			if (server_old_listener(old, &conf->c_listeners[j]) !=
			    NULL)
				continue;
			if ((fds[i][j] = listener_bind(&conf->c_listeners[j])) ==
			    -1)
				goto fail;
		}
	for (j = 0; j < conf->c_nlisteners; j++)
		if (server_old_listener(old, &conf->c_listeners[j]) == NULL)
			log_info("listener %s: listening on %s (%s)",
			    conf->c_listeners[j].lc_name,
			    conf->c_listeners[j].lc_listen,
			    conf->c_listeners[j].lc_tls ? "wss" : "ws");
	return (fds);
fail:
	for (k = 0; k < server_nworkers; k++) {
		if (fds[k] == NULL)
			continue;
		for (j = 0; j < conf->c_nlisteners; j++)
			if (fds[k][j] != -1)
				close(fds[k][j]);
		free(fds[k]);
	}
	free(fds);
	return (NULL);
}

/* The admin port of a configuration that has an admin listener. */
static in_port_t
server_admin_port(const struct wsg_config *conf)
{
	if (conf->c_admin_addr.ss_family == AF_INET6)
		return (((const struct sockaddr_in6 *)(const void *)
		    &conf->c_admin_addr)->sin6_port);
	return (((const struct sockaddr_in *)(const void *)
	    &conf->c_admin_addr)->sin_port);
}

/* Whether conf keeps the admin address of old (both may have none). */
static int
server_admin_same(const struct wsg_config *conf, const struct wsg_config *old)
{
	if (old == NULL || conf->c_has_admin != old->c_has_admin)
		return (0);
	return (!conf->c_has_admin || (old->c_admin_addrlen ==
	    conf->c_admin_addrlen && memcmp(&old->c_admin_addr,
	    &conf->c_admin_addr, conf->c_admin_addrlen) == 0));
}

/*
 * The admin endpoint of a configuration: *ep is left NULL when the running
 * one stays (or there is none).  -1 if the new address cannot be bound.
 */
static int
server_admin_prepare(const struct wsg_config *conf,
    const struct wsg_config *old, struct wsg_admin **ep)
{
	*ep = NULL;
	if (server_admin_same(conf, old) || !conf->c_has_admin)
		return (0);
	*ep = admin_start(server_base, (const struct sockaddr *)
	    &conf->c_admin_addr, conf->c_admin_addrlen, conf->c_admin_listen,
	    &server_draining);
	if (*ep != NULL || server_admin_ep == NULL || old == NULL ||
	    !old->c_has_admin || server_admin_port(old) !=
	    server_admin_port(conf))
		return (*ep == NULL ? -1 : 0);
	/*
	 * The running endpoint may hold the port itself (127.0.0.1:P to
	 * 0.0.0.0:P): let it go and try again, and take it back if that
	 * fails too.
	 */
	log_info("admin: moving from %s to %s on the same port",
	    old->c_admin_listen, conf->c_admin_listen);
	admin_stop(server_admin_ep);
	*ep = admin_start(server_base, (const struct sockaddr *)
	    &conf->c_admin_addr, conf->c_admin_addrlen, conf->c_admin_listen,
	    &server_draining);
	if (*ep != NULL) {
		server_admin_ep = NULL;
		return (0);
	}
	server_admin_ep = admin_start(server_base, (const struct sockaddr *)
	    &old->c_admin_addr, old->c_admin_addrlen, old->c_admin_listen,
	    &server_draining);
	return (-1);
}

/* Switch to the endpoint server_admin_prepare() made, if it changed. */
static void
server_admin_commit(const struct wsg_config *conf,
    const struct wsg_config *old, struct wsg_admin *ep)
{
	if (server_admin_same(conf, old) && server_admin_ep != NULL)
		return;
	admin_stop(server_admin_ep);
	server_admin_ep = ep;
}

/* Close the sockets server_bind_all() made for a reload that fails. */
static void
server_discard_all(struct wsg_config *conf, int **fds)
{
	size_t	i;

	for (i = 0; i < server_nworkers; i++) {
		config_ref(conf);
		server_discard(conf, fds[i]);
	}
	free(fds);
	config_unref(conf);
}

/*
 * The ticket keys of a generation: derived from its tls_ticket_secret or
 * random.  With a new secret (or none where there was one) the tickets
 * already out no longer open, and those clients make a full handshake.
 */
static void
server_ticket_secret(const struct wsg_config *conf,
    const struct wsg_config *old)
{
	if (tls_tkey_set_secret(conf->c_ticket_secret,
	    conf->c_ticket_secret_len) == -1)
		fatalx("tls_ticket_secret: bad length");	/* config.c checks */
	if (old == NULL) {
		if (conf->c_ticket_secret_len > 0)
			log_info("TLS ticket keys derive from "
			    "tls_ticket_secret");
		return;
	}
	if (conf->c_ticket_secret_len != old->c_ticket_secret_len ||
	    (conf->c_ticket_secret_len > 0 && CRYPTO_memcmp(
	    conf->c_ticket_secret, old->c_ticket_secret,
	    conf->c_ticket_secret_len) != 0))
		log_info("reload: new TLS ticket keys (tls_ticket_secret %s): "
		    "tickets issued before no longer resume",
		    conf->c_ticket_secret_len == 0 ? "removed" :
		    old->c_ticket_secret_len == 0 ? "set" : "changed");
}

/*
 * SIGHUP: load and validate a whole new generation; only if all of it is
 * good and its new sockets bind does it go to the workers, for new
 * connections.  Established sessions keep the generation they started
 * with, so a reload never drops one.
 */
static void
server_reload(void)
{
	struct wsg_errors	  errs;
	struct wsg_config	 *conf, *old = server_conf;
	struct wsg_admin	 *admin;
	struct wsg_log_files	  logs;
	int			**fds;
	size_t			  i;
	char			  reloading[64];
	int			  restart;

	/*
	 * With the time it began, which systemd's Type=notify-reload needs
	 * to tell this reload from an earlier one: it ignores a RELOADING=1
	 * without MONOTONIC_USEC.
	 */
	(void)snprintf(reloading, sizeof(reloading),
	    "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)server_now_us());
	server_notify(reloading);
	memset(&errs, 0, sizeof(errs));
	log_info("reloading %s", old->c_file);
	conf = config_load(old->c_file, &errs);
	for (i = 0; i < errs.e_n; i++)
		log_warnx("reload: %s", errs.e_msgs[i]);
	for (i = 0; i < errs.e_nwarnings; i++)
		log_warnx("reload: %s", errs.e_warnings[i]);
	errors_free(&errs);
	if (conf == NULL)
		goto fail;
	if ((fds = server_bind_all(conf, old)) == NULL) {
		config_unref(conf);
		goto fail;
	}
	/*
	 * The log files the new configuration names are opened, and a new
	 * admin address is bound, before anything changes, too.
	 */
	if (log_prepare(&logs, conf->c_error_log, conf->c_access_log) == -1) {
		server_discard_all(conf, fds);
		goto fail;
	}
	if (server_admin_prepare(conf, old, &admin) == -1) {
		log_discard(&logs);
		server_discard_all(conf, fds);
		goto fail;
	}
	restart = 0;
	if (server_worker_count(conf) != server_nworkers) {
		log_warnx("reload: a new number of workers needs a restart");
		restart = 1;
	}
	if (conf->c_busy_poll_ms != server_boot.busy_poll_ms) {
		log_warnx("reload: a new busy_poll needs a restart");
		restart = 1;
	}
	if (strcmp(conf->c_user != NULL ? conf->c_user : "",
	    server_boot.user != NULL ? server_boot.user : "") != 0) {
		log_warnx("reload: a new user needs a restart");
		restart = 1;
	}
	if (server_store_changed(conf->c_store, server_boot.has_store ?
	    &server_boot.store : NULL)) {
		log_warnx("reload: a new rate_limit_store needs a restart");
		restart = 1;
	}
	if (conf->c_rl_max_entries != server_boot.rl_max_entries ||
	    conf->c_rl_idle_ms != server_boot.rl_idle_ms) {
		log_warnx("reload: a new rate_limit_table needs a restart");
		restart = 1;
	}
	server_ticket_secret(conf, old);
	for (i = 0; i < server_nworkers; i++)
		server_post(&server_workers[i], WSG_MSG_RECONF,
		    config_ref(conf), fds[i]);
	free(fds);
	server_admin_commit(conf, old, admin);
	log_commit(&logs, conf->c_log_level);
	server_conf = conf;
	config_unref(old);
	metrics_upstreams(conf);
	metrics_restart_pending(restart);
	metrics_reload(1);
	log_info("reload done");
	server_notify("READY=1");
	return;
fail:
	metrics_reload(0);
	log_warnx("reload failed: the running configuration stays");
	server_notify("READY=1");
}

/*
 * A worker is still not done WSG_DRAIN_GRACE_MS after the drain should
 * have ended: it is stuck, most likely in a write(2) to a log nobody
 * reads, and no join would return.  The process ends without it, with
 * _exit(): exit() would run the atexit handlers (OpenSSL's cleanup, under
 * the workers' feet should their write return meanwhile, and
 * LeakSanitizer's report of all they hold), and the logs keep nothing in
 * stdio buffers to flush.
 */
static void __attribute__((noreturn))
server_abandon(void)
{
	size_t	i, n = 0;

	for (i = 0; i < server_nworkers; i++)
		if (!__atomic_load_n(&server_workers[i].w_done,
		    __ATOMIC_ACQUIRE))
			n++;
	if (server_stop_sig != 0)
		log_last("shutdown: %zu worker%s not done %ds after signal "
		    "%d: exiting without %s (blocked writing a log?)", n,
		    n == 1 ? "" : "s", WSG_DRAIN_GRACE_MS / 1000,
		    server_stop_sig, n == 1 ? "it" : "them");
	else
		log_last("shutdown: %zu worker%s not done %ds after "
		    "shutdown_timeout: exiting without %s (blocked writing a "
		    "log?)", n, n == 1 ? "" : "s", WSG_DRAIN_GRACE_MS / 1000,
		    n == 1 ? "it" : "them");
	_exit(2);
}

/*
 * Draining: exit the main loop once every worker has finished, or the
 * process at the end of the grace.
 */
static void
server_drain_poll_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct timeval	tv = { 0, WSG_DRAIN_POLL_MS * 1000 };
	size_t		i;

	for (i = 0; i < server_nworkers; i++)
		if (!__atomic_load_n(&server_workers[i].w_done,
		    __ATOMIC_ACQUIRE)) {
			if (server_now_ms() >= server_give_up)
				server_abandon();
			evtimer_add(server_drain_poll, &tv);
			return;
		}
	event_base_loopexit(server_base, NULL);
}

/* SIGTERM/SIGINT: every worker drains; /healthz says so meanwhile. */
static void
server_drain(void)
{
	struct timeval	tv = { 0, 0 };
	size_t		i;

	if (server_draining)
		return;
	server_draining = 1;
	server_drain_end = server_now_ms() + server_conf->c_shutdown_timeout_ms;
	server_give_up = server_drain_end + WSG_DRAIN_GRACE_MS;
	server_notify("STOPPING=1");
	log_info("draining");
	for (i = 0; i < server_nworkers; i++)
		server_post(&server_workers[i], WSG_MSG_DRAIN, NULL, NULL);
	if ((server_drain_poll = evtimer_new(server_base,
	    server_drain_poll_cb, NULL)) == NULL)
		event_base_loopexit(server_base, NULL);
	else
		evtimer_add(server_drain_poll, &tv);
}

/*
 * SIGTERM/SIGINT again while draining: the operator wants it to end now.
 * Every worker stops waiting for its sessions, as at shutdown_timeout.
 */
static void
server_stop(int sig)
{
	size_t	i;

	if (server_stop_sig != 0)
		return;
	server_stop_sig = sig;
	if (server_give_up > server_now_ms() + WSG_DRAIN_GRACE_MS)
		server_give_up = server_now_ms() + WSG_DRAIN_GRACE_MS;
	log_info("signal %d while draining: stopping now", sig);
	for (i = 0; i < server_nworkers; i++)
		server_post(&server_workers[i], WSG_MSG_STOP, NULL, NULL);
}

/* SIGTERM, SIGINT, SIGHUP, SIGUSR1 (on the main thread only). */
static void
server_signal_cb(evutil_socket_t sig, short ev, void *arg)
{
	switch (sig) {
	case SIGTERM:
	case SIGINT:
		if (server_draining) {
			server_stop((int)sig);
			break;
		}
		log_info("signal %d: shutting down", (int)sig);
		server_drain();
		break;
	case SIGUSR1:
		if (log_reopen() == 0)
			log_info("log files reopened");
		else
			log_warnx("log files not all reopened: the old "
			    "files stay in use");
		break;
	case SIGHUP:
		if (server_draining)
			log_warnx("SIGHUP while draining: no reload");
		else
			server_reload();
		break;
	}
}

/*
 * Drop root after binding: supplementary groups, then gid, then uid, each
 * checked, and a check that root cannot be regained.
 */
static void
server_drop_privileges(const char *user)
{
	struct passwd	*pw;

	if ((pw = getpwnam(user)) == NULL)
		fatalx("user %s does not exist", user);
	if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid &&
	    pw->pw_uid != 0) {
		log_info("already running as %s", user);
		return;
	}
	log_chown(pw->pw_uid);
	if (initgroups(pw->pw_name, pw->pw_gid) == -1)
		fatal("initgroups %s", user);
	if (setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1)
		fatal("setresgid %u", (unsigned)pw->pw_gid);
	if (setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1)
		fatal("setresuid %u", (unsigned)pw->pw_uid);
	if (pw->pw_uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))
		fatalx("could regain root after dropping to %s", user);
	log_info("running as %s (uid %u, gid %u)", user, (unsigned)pw->pw_uid,
	    (unsigned)pw->pw_gid);
}

/*
 * How many workers a configuration asks for; 0 means one per CPU this
 * process may run on: under taskset(1) or a container's cpuset that is
 * fewer than the machine has online, and more threads would only take
 * turns on them.
 */
static size_t
server_worker_count(const struct wsg_config *conf)
{
	cpu_set_t	set;
	long		n = conf->c_workers;

	if (n <= 0 && sched_getaffinity(0, sizeof(set), &set) == 0)
		n = CPU_COUNT(&set);
	if (n <= 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > WSG_MAX_WORKERS)
		n = WSG_MAX_WORKERS;
	return ((size_t)n);
}

/*
 * A worker's event base.  With the epoll change list, adding and removing
 * an event in the same loop turn costs no epoll_ctl(2) at all; the relay
 * relies on it to write in the turn it read (relay_kick).  libevent warns
 * that the change list misbehaves with descriptors cloned by dup(2): the
 * workers' sockets never are.
 */
static struct event_base *
server_worker_base(void)
{
	struct event_config	*cfg;
	struct event_base	*base;

	if ((cfg = event_config_new()) == NULL)
		return (NULL);
	event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return (base);
}

int
server_run(struct wsg_config *conf)
{
	static const int	 sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
	struct event		*sigev[4];
	struct wsg_worker	*w;
	int			**fds;
	sigset_t		 set, oset;
	size_t			 i, cut;

	signal(SIGPIPE, SIG_IGN);
	/* A log past the file size limit loses lines, as a full disk does. */
	signal(SIGXFSZ, SIG_IGN);
	/*
	 * Held from here until their handlers are in place: a SIGTERM sent
	 * once the listeners take connections is a shutdown, not a death by
	 * the signal.  Workers, made meanwhile, never see them at all: the
	 * main thread takes them.
	 */
	sigemptyset(&set);
	for (i = 0; i < 4; i++)
		sigaddset(&set, sigs[i]);
	pthread_sigmask(SIG_BLOCK, &set, &oset);
	if ((server_base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	server_conf = conf;
	server_boot.busy_poll_ms = conf->c_busy_poll_ms;
	server_boot.rl_max_entries = conf->c_rl_max_entries;
	server_boot.rl_idle_ms = conf->c_rl_idle_ms;
	if (conf->c_user != NULL &&
	    (server_boot.user = strdup(conf->c_user)) == NULL)
		fatal("user");
	if (conf->c_store != NULL) {
		server_boot.has_store = 1;
		server_boot.store.sc_lease_ttl_ms =
		    conf->c_store->sc_lease_ttl_ms;
		server_boot.store.sc_port = conf->c_store->sc_port;
		server_boot.store.sc_db = conf->c_store->sc_db;
		if ((conf->c_store->sc_host != NULL &&
		    (server_boot.store.sc_host =
		    strdup(conf->c_store->sc_host)) == NULL) ||
		    (conf->c_store->sc_path != NULL &&
		    (server_boot.store.sc_path =
		    strdup(conf->c_store->sc_path)) == NULL) ||
		    (conf->c_store->sc_key_prefix != NULL &&
		    (server_boot.store.sc_key_prefix =
		    strdup(conf->c_store->sc_key_prefix)) == NULL))
			fatal("rate_limit_store");
	}
	metrics_upstreams(conf);
	server_ticket_secret(conf, NULL);
	if ((server_rl = rltable_new(conf->c_rl_max_entries,
	    conf->c_rl_idle_ms)) == NULL)
		fatalx("cannot create the rate-limit table");
	server_nworkers = server_worker_count(conf);
	metrics_workers((int)server_nworkers);
	if ((server_workers = calloc(server_nworkers,
	    sizeof(*server_workers))) == NULL)
		fatal("workers");
	if ((fds = server_bind_all(conf, NULL)) == NULL)
		fatalx("cannot start the listeners");
	if (server_admin_prepare(conf, NULL, &server_admin_ep) == -1)
		fatalx("cannot start the admin listener");
	if (conf->c_user != NULL)
		server_drop_privileges(conf->c_user);

	for (i = 0; i < server_nworkers; i++) {
		w = &server_workers[i];
		w->w_index = (int)i;
		TAILQ_INIT(&w->w_sessions);
		pthread_mutex_init(&w->w_lock, NULL);
		/*
		 * A base belongs to its worker alone, so libevent needs no
		 * locks; the main thread only writes to the worker's eventfd.
		 */
		if ((w->w_msg_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) ==
		    -1 || (w->w_base = server_worker_base()) == NULL ||
		    (w->w_msg_ev = event_new(w->w_base, w->w_msg_fd,
		    EV_READ | EV_PERSIST,
		    server_worker_msg_cb, w)) == NULL ||
		    event_add(w->w_msg_ev, NULL) == -1)
			fatalx("cannot create worker %zu", i);
		server_worker_reconf(w, config_ref(conf), fds[i]);
		free(fds[i]);
		if (conf->c_store != NULL && (w->w_store = store_new(w->w_base,
		    conf->c_store)) == NULL)
			fatalx("cannot set up the rate-limit store");
		if (pthread_create(&w->w_thread, NULL, server_worker_main, w) !=
		    0)
			fatalx("cannot start worker %zu", i);
	}
	free(fds);
	for (i = 0; i < 4; i++) {
		sigev[i] = evsignal_new(server_base, sigs[i],
		    server_signal_cb, NULL);
		if (sigev[i] == NULL || evsignal_add(sigev[i], NULL) == -1)
			fatalx("cannot set up signal %d", sigs[i]);
	}
	/* A SIGTERM or SIGINT held meanwhile runs now. */
	pthread_sigmask(SIG_SETMASK, &oset, NULL);
	/* main() held these back while starting; a pending one runs now. */
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	log_info("wsgate %s started with %zu worker%s", PACKAGE_VERSION,
	    server_nworkers, server_nworkers == 1 ? "" : "s");
	server_notify("READY=1");
	event_base_loop(server_base, EVLOOP_NO_EXIT_ON_EMPTY);

	cut = 0;
	for (i = 0; i < server_nworkers; i++) {
		w = &server_workers[i];
		pthread_join(w->w_thread, NULL);
		cut += w->w_cut;
		if (w->w_drain_timer != NULL)
			event_free(w->w_drain_timer);
		event_free(w->w_msg_ev);
		close(w->w_msg_fd);
		if (w->w_msg_conf != NULL)
			server_discard(w->w_msg_conf, w->w_msg_fds);
		config_unref(w->w_conf);
		event_base_free(w->w_base);
		pthread_mutex_destroy(&w->w_lock);
	}
	if (server_stop_sig != 0)
		log_warnx("signal %d during the drain forced the stop: "
		    "%zu session%s cut", server_stop_sig, cut,
		    cut == 1 ? "" : "s");
	free(server_workers);
	for (i = 0; i < 4; i++)
		event_free(sigev[i]);
	if (server_drain_poll != NULL)
		event_free(server_drain_poll);
	admin_stop(server_admin_ep);
	event_base_free(server_base);
	rltable_free(server_rl);
	config_unref(server_conf);
	free(server_boot.user);
	free(server_boot.store.sc_host);
	free(server_boot.store.sc_path);
	free(server_boot.store.sc_key_prefix);
	log_info("exiting");
	return (0);
}
