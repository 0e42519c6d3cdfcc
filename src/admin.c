/*
 * The admin listener: GET /metrics (Prometheus text) and GET /healthz.
 * One request per connection, answered with "Connection: close": with
 * its own accept loop it can cap its connections and give each request a
 * deadline for arriving whole, as the client listeners have, so that its
 * clients never hold more than a few descriptors for long.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "admin.h"
#include "log.h"
#include "metrics.h"
#include "server.h"

/* How long the admin listener stops accepting after accept(2) failed. */
#define WSG_ADMIN_PAUSE_MS	100
/* Connections held at once; more wait in the listen backlog. */
#define WSG_ADMIN_MAX_CONNS	16
/* The request head, request line included. */
#define WSG_ADMIN_MAX_HEAD	8192
/* From accept to the whole request head, and to write the answer. */
#define WSG_ADMIN_TIMEOUT_S	10
/* After the answer, how long unread input is drained before close. */
#define WSG_ADMIN_LINGER_S	2

enum admin_state {
	ADMIN_READING,		/* the request head */
	ADMIN_WRITING,		/* the answer */
	ADMIN_LINGERING		/* answered, FIN sent, input drained */
};

struct admin_conn {
	struct bufferevent	*ac_bev;
	struct event		*ac_timer;
	struct wsg_admin	*ac_admin;
	enum admin_state	 ac_state;
	size_t			 ac_head;	/* head bytes consumed */
	int			 ac_lines;	/* head lines consumed */
	int			 ac_head_only;	/* HEAD: no body */
	char			*ac_method;
	char			*ac_path;
	TAILQ_ENTRY(admin_conn)	 ac_entry;
};

TAILQ_HEAD(admin_conns, admin_conn);

struct wsg_admin {
	struct evconnlistener	*a_lev;
	struct event		*a_resume;
	const int		*a_draining;
	struct admin_conns	 a_conns;
	size_t			 a_nconns;
};

/* Accept again if neither the cap nor an accept error pause forbids it. */
static void
admin_maybe_resume(struct wsg_admin *a)
{
	if (a->a_nconns < WSG_ADMIN_MAX_CONNS &&
	    !evtimer_pending(a->a_resume, NULL))
		evconnlistener_enable(a->a_lev);
}

/* Close and free one admin connection. */
static void
admin_conn_free(struct admin_conn *ac)
{
	struct wsg_admin	*a = ac->ac_admin;

	TAILQ_REMOVE(&a->a_conns, ac, ac_entry);
	a->a_nconns--;
	bufferevent_free(ac->ac_bev);
	event_free(ac->ac_timer);
	free(ac->ac_method);
	free(ac->ac_path);
	free(ac);
	admin_maybe_resume(a);
}

/* Queue the answer; the connection closes once it is written. */
static void
admin_reply(struct admin_conn *ac, int code, const char *status,
    const char *type, const char *extra, struct evbuffer *body)
{
	struct evbuffer	*out = bufferevent_get_output(ac->ac_bev);
	struct timeval	 tv = { WSG_ADMIN_TIMEOUT_S, 0 };

	/* Out of memory: no answer rather than a head without its body. */
	if (evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n"
	    "Content-Type: %s\r\n"
	    "Content-Length: %zu\r\n"
	    "%s"
	    "Connection: close\r\n\r\n", code, status, type,
	    evbuffer_get_length(body), extra != NULL ? extra : "") == -1 ||
	    (!ac->ac_head_only && evbuffer_add_buffer(out, body) == -1)) {
		log_warnx("admin: out of memory answering a request");
		admin_conn_free(ac);
		return;
	}
	ac->ac_state = ADMIN_WRITING;
	bufferevent_disable(ac->ac_bev, EV_READ);
	bufferevent_enable(ac->ac_bev, EV_WRITE);
	evtimer_add(ac->ac_timer, &tv);
}

/* Answer a request that could not be read, with a short text. */
static void
admin_error(struct admin_conn *ac, int code, const char *status,
    const char *text)
{
	struct evbuffer	*b;

	ac->ac_head_only = 0;
	if ((b = evbuffer_new()) == NULL) {
		admin_conn_free(ac);
		return;
	}
	evbuffer_add_printf(b, "%s\n", text);
	admin_reply(ac, code, status, "text/plain", NULL, b);
	evbuffer_free(b);
}

/* Answer one whole request. */
static void
admin_answer(struct admin_conn *ac)
{
	struct evbuffer	*b;
	const int	*draining = ac->ac_admin->a_draining;
	const char	*path = ac->ac_path;

	if ((b = evbuffer_new()) == NULL) {
		admin_conn_free(ac);
		return;
	}
	ac->ac_head_only = strcmp(ac->ac_method, "HEAD") == 0;
	if (strcmp(ac->ac_method, "GET") != 0) {
		evbuffer_add_printf(b, "method not allowed\n");
		admin_reply(ac, 405, "Method Not Allowed", "text/plain",
		    "Allow: GET\r\n", b);
	} else if (strcmp(path, "/metrics") == 0) {
		metrics_render(b, *draining);
		server_metrics(b);
		if (metrics_complete())
			admin_reply(ac, 200, "OK",
			    "text/plain; version=0.0.4; charset=utf-8", NULL,
			    b);
		else {
			/* Series missing would read as counter resets. */
			log_warnx("admin: out of memory rendering /metrics");
			evbuffer_free(b);
			admin_error(ac, 503, "Service Unavailable",
			    "out of memory");
			return;
		}
	} else if (strcmp(path, "/healthz") == 0) {
		if (*draining) {
			evbuffer_add_printf(b, "draining\n");
			admin_reply(ac, 503, "Service Unavailable",
			    "text/plain", NULL, b);
		} else {
			evbuffer_add_printf(b, "ok\n");
			admin_reply(ac, 200, "OK", "text/plain", NULL, b);
		}
	} else {
		evbuffer_add_printf(b, "not found\n");
		admin_reply(ac, 404, "Not Found", "text/plain", NULL, b);
	}
	evbuffer_free(b);
}

/*
 * The request line: a method token, the target, HTTP/1.0 or HTTP/1.1.
 * Keeps the method and the target's path (an absolute-form target's
 * scheme and authority, and any query or fragment, dropped).
 */
static int
admin_request_line(struct admin_conn *ac, char *line)
{
	char	*method, *target, *version, *p;

	method = line;
	if ((target = strchr(method, ' ')) == NULL)
		return (-1);
	*target++ = '\0';
	if ((version = strchr(target, ' ')) == NULL)
		return (-1);
	*version++ = '\0';
	if (*method == '\0' || *target == '\0' ||
	    (strcmp(version, "HTTP/1.1") != 0 &&
	    strcmp(version, "HTTP/1.0") != 0))
		return (-1);
	for (p = method; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) &&
		    strchr("!#$%&'*+-.^_`|~", *p) == NULL)
			return (-1);
	if (strncasecmp(target, "http://", 7) == 0 ||
	    strncasecmp(target, "https://", 8) == 0) {
		target = strstr(target, "//") + 2;
		if ((target = strchr(target, '/')) == NULL)
			target = "/";
	}
	if ((ac->ac_method = strdup(method)) == NULL ||
	    (ac->ac_path = strndup(target, strcspn(target, "?#"))) == NULL)
		return (-2);
	return (0);
}

/* More of the request head arrived, or input to drain after the answer. */
static void
admin_read_cb(struct bufferevent *bev, void *arg)
{
	struct admin_conn	*ac = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	char			*line;
	size_t			 n, len;
	int			 r;

	if (ac->ac_state == ADMIN_LINGERING) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	if (ac->ac_state != ADMIN_READING)
		return;
	for (;;) {
		if (ac->ac_head + evbuffer_get_length(in) >
		    WSG_ADMIN_MAX_HEAD && evbuffer_search_eol(in, NULL, NULL,
		    EVBUFFER_EOL_CRLF).pos == -1) {
			admin_error(ac, 431, "Request Header Fields Too Large",
			    "request header fields too large");
			return;
		}
		len = evbuffer_get_length(in);
		line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
		if (line == NULL)
			return;
		/* Every byte taken, line ends included, counts. */
		ac->ac_head += len - evbuffer_get_length(in);
		if (ac->ac_head > WSG_ADMIN_MAX_HEAD) {
			free(line);
			admin_error(ac, 431, "Request Header Fields Too Large",
			    "request header fields too large");
			return;
		}
		if (memchr(line, '\0', n) != NULL) {
			free(line);
			admin_error(ac, 400, "Bad Request", "bad request");
			return;
		}
		/* RFC 9112 2.2: empty lines before the request line. */
		if (ac->ac_lines == 0 && n == 0) {
			free(line);
			continue;
		}
		if (ac->ac_lines++ == 0) {
			r = admin_request_line(ac, line);
			free(line);
			if (r == -2) {
				admin_conn_free(ac);
				return;
			}
			if (r == -1) {
				admin_error(ac, 400, "Bad Request",
				    "bad request");
				return;
			}
			continue;
		}
		if (n == 0) {
			free(line);
			admin_answer(ac);
			return;
		}
		r = strchr(line, ':') == NULL || line[0] == ' ' ||
		    line[0] == '\t';
		free(line);
		if (r) {
			admin_error(ac, 400, "Bad Request", "bad request");
			return;
		}
	}
}

/* The answer is written: send FIN, drain what the client still sends. */
static void
admin_write_cb(struct bufferevent *bev, void *arg)
{
	struct admin_conn	*ac = arg;
	struct timeval		 tv = { WSG_ADMIN_LINGER_S, 0 };

	if (ac->ac_state != ADMIN_WRITING)
		return;
	/*
	 * Closing with unread input would send a reset, which may destroy
	 * the answer before the client reads it.
	 */
	shutdown(bufferevent_getfd(bev), SHUT_WR);
	ac->ac_state = ADMIN_LINGERING;
	bufferevent_disable(bev, EV_WRITE);
	bufferevent_enable(bev, EV_READ);
	evtimer_add(ac->ac_timer, &tv);
}

/* EOF or an error on the connection. */
static void
admin_event_cb(struct bufferevent *bev, short what, void *arg)
{
	admin_conn_free(arg);
}

/* The request did not arrive, or the answer not leave, in time. */
static void
admin_timeout_cb(evutil_socket_t fd, short ev, void *arg)
{
	admin_conn_free(arg);
}

/* A new admin connection. */
static void
admin_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct wsg_admin	*a = arg;
	struct admin_conn	*ac;
	struct event_base	*base = evconnlistener_get_base(lev);
	struct timeval		 tv = { WSG_ADMIN_TIMEOUT_S, 0 };

	if ((ac = calloc(1, sizeof(*ac))) == NULL ||
	    (ac->ac_timer = evtimer_new(base, admin_timeout_cb, ac)) ==
	    NULL || (ac->ac_bev = bufferevent_socket_new(base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		if (ac != NULL && ac->ac_timer != NULL)
			event_free(ac->ac_timer);
		free(ac);
		close(fd);
		return;
	}
	ac->ac_admin = a;
	TAILQ_INSERT_TAIL(&a->a_conns, ac, ac_entry);
	if (++a->a_nconns >= WSG_ADMIN_MAX_CONNS)
		evconnlistener_disable(lev);
	bufferevent_setcb(ac->ac_bev, admin_read_cb, admin_write_cb,
	    admin_event_cb, ac);
	bufferevent_enable(ac->ac_bev, EV_READ);
	evtimer_add(ac->ac_timer, &tv);
}

/* The pause after an accept error is over. */
static void
admin_resume_cb(evutil_socket_t fd, short ev, void *arg)
{
	admin_maybe_resume(arg);
}

/*
 * accept(2) failed, e.g. EMFILE with every descriptor taken by sessions:
 * the connection stays queued and the socket readable, so without a pause
 * the main thread would spin on it.
 */
static void
admin_error_cb(struct evconnlistener *lev, void *arg)
{
	struct wsg_admin	*a = arg;
	struct timeval		 tv = { 0, WSG_ADMIN_PAUSE_MS * 1000 };

	log_warnx("admin: accept: %s", strerror(EVUTIL_SOCKET_ERROR()));
	evconnlistener_disable(lev);
	evtimer_add(a->a_resume, &tv);
}

struct wsg_admin *
admin_start(struct event_base *base, const struct sockaddr *sa, int salen,
    const char *name, const int *draining)
{
	struct wsg_admin	*a;

	if ((a = calloc(1, sizeof(*a))) == NULL)
		return (NULL);
	a->a_draining = draining;
	TAILQ_INIT(&a->a_conns);
	if ((a->a_resume = evtimer_new(base, admin_resume_cb, a)) == NULL) {
		free(a);
		return (NULL);
	}
	a->a_lev = evconnlistener_new_bind(base, admin_accept_cb, a,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	    128, sa, salen);
	if (a->a_lev == NULL) {
		log_warn("admin: cannot listen on %s", name);
		event_free(a->a_resume);
		free(a);
		return (NULL);
	}
	evconnlistener_set_error_cb(a->a_lev, admin_error_cb);
	log_info("admin: listening on %s", name);
	return (a);
}

void
admin_stop(struct wsg_admin *a)
{
	if (a == NULL)
		return;
	while (!TAILQ_EMPTY(&a->a_conns))
		admin_conn_free(TAILQ_FIRST(&a->a_conns));
	event_free(a->a_resume);
	evconnlistener_free(a->a_lev);
	free(a);
}
