/*
 * Listeners.  Accept errors such as running out of descriptors pause
 * accepting briefly instead of spinning or exiting.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "server.h"
#include "session.h"

#define WSG_ACCEPT_BACKLOG	1024
#define WSG_ACCEPT_PAUSE_MS	100

struct wsg_listener {
	struct wsg_worker		*l_worker;
	const struct wsg_listener_conf	*l_conf;
	struct evconnlistener		*l_lev;
	struct event			*l_resume;
};

/* A new connection: it becomes a session. */
static void
listener_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct wsg_listener	*l = arg;

	if (l->l_worker->w_draining) {
		evutil_closesocket(fd);
		return;
	}
	session_accept(l->l_worker, l->l_conf, fd, sa, salen);
}

/* The pause after an accept error is over. */
static void
listener_resume_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct wsg_listener	*l = arg;

	if (!l->l_worker->w_draining)
		evconnlistener_enable(l->l_lev);
}

/* accept(2) failed, e.g. EMFILE: pause this listener for a moment. */
static void
listener_error_cb(struct evconnlistener *lev, void *arg)
{
	struct wsg_listener	*l = arg;
	struct timeval		 tv = { 0, WSG_ACCEPT_PAUSE_MS * 1000 };

	log_warnx("listener %s: accept: %s", l->l_conf->lc_name,
	    strerror(EVUTIL_SOCKET_ERROR()));
	evconnlistener_disable(lev);
	evtimer_add(l->l_resume, &tv);
}

struct wsg_listener *
listener_start(struct wsg_worker *w, const struct wsg_listener_conf *lc)
{
	struct wsg_listener	*l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return (NULL);
	l->l_worker = w;
	l->l_conf = lc;
	if ((l->l_resume = evtimer_new(w->w_base, listener_resume_cb, l)) ==
	    NULL) {
		free(l);
		return (NULL);
	}
	l->l_lev = evconnlistener_new_bind(w->w_base, listener_accept_cb, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	    WSG_ACCEPT_BACKLOG, (struct sockaddr *)&lc->lc_addr,
	    lc->lc_addrlen);
	if (l->l_lev == NULL) {
		log_warn("listener %s: cannot listen on %s", lc->lc_name,
		    lc->lc_listen);
		event_free(l->l_resume);
		free(l);
		return (NULL);
	}
	evconnlistener_set_error_cb(l->l_lev, listener_error_cb);
	log_info("listener %s: listening on %s (%s)", lc->lc_name,
	    lc->lc_listen, lc->lc_tls ? "wss" : "ws");
	return (l);
}

const struct wsg_listener_conf *
listener_conf(const struct wsg_listener *l)
{
	return (l->l_conf);
}

void
listener_set_conf(struct wsg_listener *l, const struct wsg_listener_conf *lc)
{
	l->l_conf = lc;
}

void
listener_stop(struct wsg_listener *l)
{
	if (l == NULL)
		return;
	evconnlistener_free(l->l_lev);
	event_free(l->l_resume);
	free(l);
}
