/*
 * The process: one worker event loop, its listeners, signals, and the
 * drain on SIGTERM/SIGINT.
 */
#include "autoconf.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "server.h"
#include "session.h"

static uint64_t	server_ids;

uint64_t
server_next_id(void)
{
	return (__atomic_add_fetch(&server_ids, 1, __ATOMIC_RELAXED));
}

/* shutdown_timeout passed: stop waiting for sessions. */
static void
server_drain_timeout_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct wsg_worker	*w = arg;

	log_warnx("shutdown timeout: %zu sessions still open", w->w_nsessions);
	event_base_loopbreak(w->w_base);
}

/* Stop accepting, send every client close 1001, exit when all are gone. */
static void
server_drain(struct wsg_worker *w)
{
	struct wsg_session	*s;
	struct timeval		 tv;
	size_t			 i;

	if (w->w_draining)
		return;
	w->w_draining = 1;
	log_info("draining %zu sessions", w->w_nsessions);
	for (i = 0; i < w->w_nlisteners; i++) {
		listener_stop(w->w_listeners[i]);
		w->w_listeners[i] = NULL;
	}
	TAILQ_FOREACH(s, &w->w_sessions, s_entry)
		session_shutdown(s);
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
		log_warnx("SIGHUP: configuration reload is not supported yet; "
		    "the running configuration stays");
		break;
	}
}

int
server_run(struct wsg_config *conf)
{
	static const int	 sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
	struct wsg_worker	 w;
	struct event		*sigev[4];
	struct wsg_session	*s;
	size_t			 i;
	int			 rc = 0;

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
	for (i = 0; i < 4; i++) {
		sigev[i] = evsignal_new(w.w_base, sigs[i], server_signal_cb,
		    &w);
		if (sigev[i] == NULL || evsignal_add(sigev[i], NULL) == -1)
			fatalx("cannot set up signal %d", sigs[i]);
	}
	log_info("wsgate %s started", PACKAGE_VERSION);
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
	if (w.w_drain_timer != NULL)
		event_free(w.w_drain_timer);
	event_base_free(w.w_base);
	log_info("exiting");
	return (rc);
}
