/*
 * Listeners.  Accept errors such as running out of descriptors pause
 * accepting briefly instead of spinning or exiting.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	unsigned long			 l_errors;	/* since the last accept */
	int				 l_errno;	/* the last one logged */
};

/* A new connection: it becomes a session. */
static void
listener_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct wsg_listener	*l = arg;

	if (l->l_errors > 0) {
		log_info("listener %s: accepting again after %lu failed "
		    "accepts", l->l_conf->lc_name, l->l_errors);
		l->l_errors = 0;
	}
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
	int			 e = EVUTIL_SOCKET_ERROR();

	/* Once per spell of the same error, not ten times a second. */
	if (l->l_errors++ == 0 || e != l->l_errno)
		log_warnx("listener %s: accept: %s; retrying every %d ms, "
		    "logged again when it accepts", l->l_conf->lc_name,
		    strerror(e), WSG_ACCEPT_PAUSE_MS);
	l->l_errno = e;
	evconnlistener_disable(lev);
	evtimer_add(l->l_resume, &tv);
}

int
listener_probe(const struct wsg_listener_conf *lc)
{
	int	fd, one = 1, rc = 0;

	fd = socket(lc->lc_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return (-1);
	if (lc->lc_addr.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
		    sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&lc->lc_addr,
	    lc->lc_addrlen) == -1) {
		/* "In use" only when it is: not for EACCES or EADDRNOTAVAIL. */
		if (errno == EADDRINUSE)
			log_warn("listener %s: %s is in use", lc->lc_name,
			    lc->lc_listen);
		else
			log_warn("listener %s: cannot bind %s", lc->lc_name,
			    lc->lc_listen);
		rc = -1;
	}
	close(fd);
	return (rc);
}

int
listener_bind(const struct wsg_listener_conf *lc)
{
	int	fd, one = 1;

	fd = socket(lc->lc_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("listener %s: socket", lc->lc_name);
		return (-1);
	}
	/* Every worker binds its own socket; the kernel spreads accepts. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ==
	    -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
	    sizeof(one)) == -1 || (lc->lc_addr.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) ==
	    -1) ||
	    /* Accepted sockets inherit it: no setsockopt per connection. */
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ==
	    -1) {
		log_warn("listener %s: setsockopt", lc->lc_name);
		close(fd);
		return (-1);
	}
	if (bind(fd, (const struct sockaddr *)&lc->lc_addr,
	    lc->lc_addrlen) == -1 || listen(fd, WSG_ACCEPT_BACKLOG) == -1) {
		log_warn("listener %s: cannot listen on %s", lc->lc_name,
		    lc->lc_listen);
		close(fd);
		return (-1);
	}
	return (fd);
}

struct wsg_listener *
listener_start(struct wsg_worker *w, const struct wsg_listener_conf *lc,
    int fd)
{
	struct wsg_listener	*l;

	if ((l = calloc(1, sizeof(*l))) == NULL) {
		close(fd);
		return (NULL);
	}
	l->l_worker = w;
	l->l_conf = lc;
	if ((l->l_resume = evtimer_new(w->w_base, listener_resume_cb, l)) ==
	    NULL) {
		close(fd);
		free(l);
		return (NULL);
	}
	l->l_lev = evconnlistener_new(w->w_base, listener_accept_cb, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (l->l_lev == NULL) {
		log_warn("listener %s: cannot accept on %s", lc->lc_name,
		    lc->lc_listen);
		close(fd);
		event_free(l->l_resume);
		free(l);
		return (NULL);
	}
	evconnlistener_set_error_cb(l->l_lev, listener_error_cb);
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
listener_flush(struct wsg_listener *l)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len;
	int			 fd, lfd, n;

	if (l == NULL)
		return;
	lfd = evconnlistener_get_fd(l->l_lev);
	/* At most a full backlog: what came before the call. */
	for (n = 0; n < WSG_ACCEPT_BACKLOG; n++) {
		len = sizeof(ss);
		if ((fd = accept4(lfd, (struct sockaddr *)&ss, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC)) == -1)
			break;
		session_accept(l->l_worker, l->l_conf, fd,
		    (struct sockaddr *)&ss, (int)len);
	}
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
