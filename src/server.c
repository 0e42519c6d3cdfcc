/*
 * The process: the worker event loop, its listeners and admin endpoint,
 * signals, reloads as transactions, privilege drop, systemd readiness, and
 * the drain on SIGTERM/SIGINT.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "admin.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "server.h"
#include "session.h"

/* The longest the drain spreads its close frames over. */
#define WSG_DRAIN_SPREAD_MS	2000

static uint64_t	server_ids;

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

/* shutdown_timeout passed: stop waiting for sessions. */
static void
server_drain_timeout_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct wsg_worker	*w = arg;

	log_warnx("shutdown timeout: %zu sessions still open", w->w_nsessions);
	event_base_loopbreak(w->w_base);
}

/*
 * Stop accepting and close every session with 1001.  The close frames of
 * open sessions are spread over a short random window so that a large
 * fleet of clients does not reconnect all at once.
 */
static void
server_drain(struct wsg_worker *w)
{
	struct wsg_session	*s, *next;
	struct timeval		 tv;
	uint64_t		 spread;
	size_t			 i;

	if (w->w_draining)
		return;
	w->w_draining = 1;
	server_notify("STOPPING=1");
	log_info("draining %zu sessions", w->w_nsessions);
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
	tv.tv_sec = w->w_conf->c_shutdown_timeout_ms / 1000;
	tv.tv_usec = (w->w_conf->c_shutdown_timeout_ms % 1000) * 1000;
	w->w_drain_timer = evtimer_new(w->w_base, server_drain_timeout_cb, w);
	if (w->w_drain_timer == NULL)
		event_base_loopbreak(w->w_base);
	else
		evtimer_add(w->w_drain_timer, &tv);
}

void
server_session_gone(struct wsg_worker *w)
{
	if (w->w_draining && w->w_nsessions == 0)
		event_base_loopexit(w->w_base, NULL);
}

/* Are two listen addresses the same socket? */
static int
server_same_addr(const struct wsg_listener_conf *a,
    const struct wsg_listener_conf *b)
{
	return (a->lc_addrlen == b->lc_addrlen &&
	    memcmp(&a->lc_addr, &b->lc_addr, a->lc_addrlen) == 0);
}

/* (Re)start the admin endpoint for a configuration, if it has one. */
static void
server_admin(struct wsg_worker *w, struct wsg_config *conf)
{
	if (w->w_admin != NULL && conf->c_has_admin && w->w_conf->c_has_admin &&
	    w->w_conf != conf && w->w_conf->c_admin_addrlen ==
	    conf->c_admin_addrlen && memcmp(&w->w_conf->c_admin_addr,
	    &conf->c_admin_addr, conf->c_admin_addrlen) == 0)
		return;
	admin_stop(w->w_admin);
	w->w_admin = NULL;
	if (conf->c_has_admin)
		w->w_admin = admin_start(w->w_base,
		    (struct sockaddr *)&conf->c_admin_addr,
		    conf->c_admin_addrlen, conf->c_admin_listen,
		    &w->w_draining);
}

/*
 * SIGHUP: load and validate a whole new generation; only if all of it is
 * good (and its new listeners bind) does it replace the current one for
 * new connections.  Established sessions keep the generation they started
 * with, so a reload never drops one.
 */
static void
server_reload(struct wsg_worker *w)
{
	struct wsg_errors	  errs;
	struct wsg_config	 *conf, *old = w->w_conf;
	struct wsg_listener	**nl;
	size_t			  i, j;
	int			 *kept;

	server_notify("RELOADING=1");
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
	nl = calloc(conf->c_nlisteners, sizeof(*nl));
	kept = calloc(w->w_nlisteners ? w->w_nlisteners : 1, sizeof(int));
	if (nl == NULL || kept == NULL) {
		free(nl);
		free(kept);
		config_unref(conf);
		goto fail;
	}
	/* Bind what is new first: a bind failure leaves all as it was. */
	for (i = 0; i < conf->c_nlisteners; i++) {
		for (j = 0; j < w->w_nlisteners; j++)
			if (!kept[j] && server_same_addr(&conf->c_listeners[i],
			    listener_conf(w->w_listeners[j])))
				break;
		if (j < w->w_nlisteners) {
			kept[j] = 1;
			continue;
		}
		if ((nl[i] = listener_start(w, &conf->c_listeners[i])) ==
		    NULL) {
			for (j = 0; j < i; j++)
				listener_stop(nl[j]);
			free(nl);
			free(kept);
			config_unref(conf);
			goto fail;
		}
	}
	/* Commit: keep, retarget or stop each old listener. */
	memset(kept, 0, w->w_nlisteners * sizeof(int));
	for (i = 0; i < conf->c_nlisteners; i++) {
		if (nl[i] != NULL)
			continue;
		for (j = 0; j < w->w_nlisteners; j++)
			if (!kept[j] && server_same_addr(&conf->c_listeners[i],
			    listener_conf(w->w_listeners[j])))
				break;
		kept[j] = 1;
		nl[i] = w->w_listeners[j];
		listener_set_conf(nl[i], &conf->c_listeners[i]);
	}
	for (j = 0; j < w->w_nlisteners; j++)
		if (!kept[j]) {
			log_info("listener %s: removed",
			    listener_conf(w->w_listeners[j])->lc_name);
			listener_stop(w->w_listeners[j]);
		}
	free(kept);
	free(w->w_listeners);
	w->w_listeners = nl;
	w->w_nlisteners = conf->c_nlisteners;
	server_admin(w, conf);
	if (log_open(conf->c_error_log, conf->c_access_log,
	    conf->c_log_level) == -1)
		log_warnx("reload: keeping the previous log files");
	w->w_conf = conf;
	config_unref(old);
	metrics_reload(1);
	log_info("reload done");
	server_notify("READY=1");
	return;
fail:
	metrics_reload(0);
	log_warnx("reload failed: the running configuration stays");
	server_notify("READY=1");
}

/* SIGTERM, SIGINT, SIGHUP, SIGUSR1. */
static void
server_signal_cb(evutil_socket_t sig, short ev, void *arg)
{
	struct wsg_worker	*w = arg;

	switch (sig) {
	case SIGTERM:
	case SIGINT:
		log_info("signal %d: shutting down", (int)sig);
		server_drain(w);
		break;
	case SIGUSR1:
		log_reopen();
		log_info("log files reopened");
		break;
	case SIGHUP:
		if (!w->w_draining)
			server_reload(w);
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

/* Takes over the caller's reference to conf. */
int
server_run(struct wsg_config *conf)
{
	static const int	 sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
	struct wsg_worker	 w;
	struct event		*sigev[4];
	struct wsg_session	*s;
	size_t			 i;

	memset(&w, 0, sizeof(w));
	TAILQ_INIT(&w.w_sessions);
	signal(SIGPIPE, SIG_IGN);
	if ((w.w_base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	w.w_conf = conf;
	w.w_nlisteners = conf->c_nlisteners;
	if ((w.w_listeners = calloc(w.w_nlisteners, sizeof(void *))) == NULL)
		fatal("listeners");
	for (i = 0; i < conf->c_nlisteners; i++)
		if ((w.w_listeners[i] = listener_start(&w,
		    &conf->c_listeners[i])) == NULL)
			fatalx("cannot start listener %s",
			    conf->c_listeners[i].lc_name);
	server_admin(&w, conf);
	if (conf->c_has_admin && w.w_admin == NULL)
		fatalx("cannot start the admin listener");
	if (conf->c_user != NULL)
		server_drop_privileges(conf->c_user);
	for (i = 0; i < 4; i++) {
		sigev[i] = evsignal_new(w.w_base, sigs[i], server_signal_cb,
		    &w);
		if (sigev[i] == NULL || evsignal_add(sigev[i], NULL) == -1)
			fatalx("cannot set up signal %d", sigs[i]);
	}
	log_info("wsgate %s started", PACKAGE_VERSION);
	server_notify("READY=1");
	event_base_dispatch(w.w_base);
	/* Whatever is still open at the deadline is cut off. */
	while ((s = TAILQ_FIRST(&w.w_sessions)) != NULL) {
		session_close(s, "shutdown");
		session_peer_free(&s->s_client);
		session_peer_free(&s->s_upstream);
		event_base_loop(w.w_base, EVLOOP_NONBLOCK);
	}
	for (i = 0; i < 4; i++)
		event_free(sigev[i]);
	for (i = 0; i < w.w_nlisteners; i++)
		listener_stop(w.w_listeners[i]);
	free(w.w_listeners);
	admin_stop(w.w_admin);
	if (w.w_drain_timer != NULL)
		event_free(w.w_drain_timer);
	event_base_free(w.w_base);
	config_unref(w.w_conf);
	log_info("exiting");
	return (0);
}
