/*
 * The admin listener, on libevent's evhttp: a small, well-kept HTTP server
 * is the right tool for two plaintext GET endpoints on loopback.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "admin.h"
#include "log.h"
#include "metrics.h"
#include "server.h"

/* How long the admin listener stops accepting after accept(2) failed. */
#define WSG_ADMIN_PAUSE_MS	100

struct wsg_admin {
	struct evhttp		*a_http;
	struct evconnlistener	*a_lev;		/* owned by a_http */
	struct event		*a_resume;
	const int		*a_draining;
	struct wsg_admin	*a_next;
};

/*
 * The endpoints running now (two while one moves), on the main thread
 * only.  evhttp keeps its listener's callback argument for itself, so the
 * error callback finds its endpoint here.
 */
static struct wsg_admin	*admin_all;

/* Answer one admin request. */
static void
admin_request_cb(struct evhttp_request *req, void *arg)
{
	struct wsg_admin	*a = arg;
	struct evbuffer		*b;
	const struct evhttp_uri	*eu = evhttp_request_get_evhttp_uri(req);
	const char		*path = eu ? evhttp_uri_get_path(eu) : NULL;
	struct evkeyvalq	*h = evhttp_request_get_output_headers(req);

	if ((b = evbuffer_new()) == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	if (path == NULL)		/* no path: not one of ours, 404 */
		path = "";
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		evhttp_add_header(h, "Allow", "GET");
		evbuffer_add_printf(b, "method not allowed\n");
		evhttp_send_reply(req, 405, "Method Not Allowed", b);
	} else if (strcmp(path, "/metrics") == 0) {	/* any query ignored */
		metrics_render(b, *a->a_draining);
		server_metrics(b);
		evhttp_add_header(h, "Content-Type",
		    "text/plain; version=0.0.4; charset=utf-8");
		evhttp_send_reply(req, 200, "OK", b);
	} else if (strcmp(path, "/healthz") == 0) {
		evhttp_add_header(h, "Content-Type", "text/plain");
		if (*a->a_draining) {
			evbuffer_add_printf(b, "draining\n");
			evhttp_send_reply(req, 503, "Service Unavailable", b);
		} else {
			evbuffer_add_printf(b, "ok\n");
			evhttp_send_reply(req, 200, "OK", b);
		}
	} else {
		evhttp_add_header(h, "Content-Type", "text/plain");
		evbuffer_add_printf(b, "not found\n");
		evhttp_send_reply(req, 404, "Not Found", b);
	}
	evbuffer_free(b);
}

/* The pause after an accept error is over. */
static void
admin_resume_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct wsg_admin	*a = arg;

	evconnlistener_enable(a->a_lev);
}

/*
 * accept(2) failed, e.g. EMFILE with every descriptor taken by sessions:
 * the connection stays queued and the socket readable, so without a pause
 * the main thread would spin on it.
 */
static void
admin_error_cb(struct evconnlistener *lev, void *arg)
{
	struct wsg_admin	*a;
	struct timeval		 tv = { 0, WSG_ADMIN_PAUSE_MS * 1000 };

	for (a = admin_all; a != NULL && a->a_lev != lev; a = a->a_next)
		;
	if (a == NULL)
		return;
	log_warnx("admin: accept: %s", strerror(EVUTIL_SOCKET_ERROR()));
	evconnlistener_disable(lev);
	evtimer_add(a->a_resume, &tv);
}

struct wsg_admin *
admin_start(struct event_base *base, const struct sockaddr *sa, int salen,
    const char *name, const int *draining)
{
	struct wsg_admin	*a;
	struct evconnlistener	*lev;

	if ((a = calloc(1, sizeof(*a))) == NULL)
		return (NULL);
	a->a_draining = draining;
	if ((a->a_resume = evtimer_new(base, admin_resume_cb, a)) == NULL) {
		free(a);
		return (NULL);
	}
	if ((a->a_http = evhttp_new(base)) == NULL) {
		event_free(a->a_resume);
		free(a);
		return (NULL);
	}
	/* Every method reaches the handler, which answers 405 to all but GET. */
	evhttp_set_allowed_methods(a->a_http, EVHTTP_REQ_GET |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
	    EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
	    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_max_headers_size(a->a_http, 8192);
	evhttp_set_max_body_size(a->a_http, 0);
	evhttp_set_timeout(a->a_http, 10);
	evhttp_set_gencb(a->a_http, admin_request_cb, a);
	lev = evconnlistener_new_bind(base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE |
	    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 128, sa, salen);
	if (lev == NULL || evhttp_bind_listener(a->a_http, lev) == NULL) {
		log_warn("admin: cannot listen on %s", name);
		if (lev != NULL)
			evconnlistener_free(lev);
		evhttp_free(a->a_http);
		event_free(a->a_resume);
		free(a);
		return (NULL);
	}
	a->a_lev = lev;
	evconnlistener_set_error_cb(lev, admin_error_cb);
	a->a_next = admin_all;
	admin_all = a;
	log_info("admin: listening on %s", name);
	return (a);
}

void
admin_stop(struct wsg_admin *a)
{
	struct wsg_admin	**pp;

	if (a == NULL)
		return;
	for (pp = &admin_all; *pp != NULL; pp = &(*pp)->a_next)
		if (*pp == a) {
			*pp = a->a_next;
			break;
		}
	event_free(a->a_resume);
	evhttp_free(a->a_http);
	free(a);
}
