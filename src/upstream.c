/*
 * The upstream half: choose a server, connect, send a fresh upgrade
 * request, and accept only an exact, valid 101 before a single frame is
 * relayed.  Anything else is answered to the client and never tunnelled.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "config.h"
#include "http.h"
#include "jwt.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "server.h"
#include "session.h"
#include "upstream.h"
#include "wsgate.h"

static void	upstream_read_cb(struct bufferevent *, void *);
static void	upstream_event_cb(struct bufferevent *, short, void *);
static void	upstream_refused(struct wsg_session *,
		    const struct wsg_http_response *, const char *, size_t);

int
upstream_build_request(struct wsg_session *s,
    const struct wsg_http_request *req)
{
	const struct wsg_policy	*pol = s->s_route->rt_policy;
	struct evbuffer		*b;
	char			 target[WSG_MAX_HEADER_BYTES_LIMIT], val[1024];
	size_t			 i;
	int			 tls = s->s_listener->lc_tls, tlen, bad = 0;

	tlen = policy_upstream_target(s, req, target, sizeof(target));
	if (tlen == -1 || (b = evbuffer_new()) == NULL)
		return (-1);
	if (http_new_key(s->s_upstream_key) == -1) {
		evbuffer_free(b);
		return (-1);
	}
	/*
	 * Every write is checked: a buffer that could not grow lost a line
	 * or part of one, and the upstream must never get such a request.
	 */
	bad |= evbuffer_add_printf(b, "GET %.*s HTTP/1.1\r\n"
	    "Host: %.*s\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\n"
	    "Sec-WebSocket-Version: 13\r\n",
	    tlen, target, (int)req->host.len, req->host.p,
	    s->s_upstream_key) == -1;
	for (i = 0; i < s->s_nprotocols; i++)
		bad |= evbuffer_add_printf(b, "%s%s", i == 0 ?
		    "Sec-WebSocket-Protocol: " : ", ", s->s_protocols[i]) == -1;
	if (s->s_nprotocols > 0)
		bad |= evbuffer_add(b, "\r\n", 2) == -1;
	/* End-to-end headers, as the client sent them. */
	for (i = 0; i < req->nheaders; i++) {
		const struct wsg_http_header *h = &req->headers[i];

		if (http_header_is_dropped(req, h->name) ||
		    policy_is_forwarded_header(s, h->name.p, h->name.len))
			continue;
		bad |= evbuffer_add(b, h->name.p, h->name.len) == -1;
		bad |= evbuffer_add(b, ": ", 2) == -1;
		bad |= evbuffer_add(b, h->value.p, h->value.len) == -1;
		bad |= evbuffer_add(b, "\r\n", 2) == -1;
	}
	/* Claims of the verified token, in place of any client copies. */
	for (i = 0; s->s_claims != NULL && i < pol->pol_nforward_claims; i++)
		if (jwt_claims_get(s->s_claims,
		    pol->pol_forward_claims[i].fc_claim, val, sizeof(val)) == 0)
			bad |= evbuffer_add_printf(b, "%s: %s\r\n",
			    pol->pol_forward_claims[i].fc_header, val) == -1;
	/* Set by the gateway only; client copies were dropped above. */
	bad |= evbuffer_add_printf(b, "X-Forwarded-For: %s\r\n"
	    "X-Forwarded-Proto: %s\r\n"
	    "X-Forwarded-Host: %.*s\r\n"
	    "X-Real-IP: %s\r\n\r\n", s->s_client_ip,
	    tls ? "https" : "http", (int)req->host.len, req->host.p,
	    s->s_client_ip) == -1;
	if (bad) {
		evbuffer_free(b);
		return (-1);
	}
	s->s_upreq = b;
	return (0);
}

/* Milliseconds on the monotonic clock, comparable across workers. */
static uint64_t
upstream_clock_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

/* Whether a recent failed connection has this server skipped now. */
static int
upstream_server_down(const struct wsg_server *srv, uint64_t now)
{
	return (__atomic_load_n(&srv->srv_down_until, __ATOMIC_RELAXED) >
	    now);
}

/*
 * Choose the server for the next try.  The first try balances over the
 * servers that are not down (over all of them when every one is); a
 * retry takes the next untried server after the last one, passing over
 * those that are down while any untried one is not.
 */
static struct wsg_server *
upstream_pick(struct wsg_session *s)
{
	struct wsg_upstream	*up = s->s_route->rt_upstream;
	size_t			 i, j, best, fallback, n = up->up_nservers;
	uint64_t		 now = upstream_clock_ms();
	int			 a, besta, live;
	unsigned int		 rr;

	if (s->s_server_tries > 0) {
		fallback = n;
		for (i = 1; i < n; i++) {
			j = ((size_t)(s->s_server - up->up_servers) + i) % n;
			if (s->s_server_tried & (UINT64_C(1) << j))
				continue;
			if (!upstream_server_down(&up->up_servers[j], now))
				return (&up->up_servers[j]);
			if (fallback == n)
				fallback = j;
		}
		return (&up->up_servers[fallback]);
	}
	for (live = 0, i = 0; i < n && !live; i++)
		live = !upstream_server_down(&up->up_servers[i], now);
	/*
	 * Whose turn it is: the turn moves past each server passed over, so
	 * that the others share its turns, not the one after it alone.
	 */
	for (i = 0;; i++) {
		rr = __atomic_fetch_add(&up->up_rr, 1, __ATOMIC_RELAXED) % n;
		if (!live || i + 1 == n ||
		    !upstream_server_down(&up->up_servers[rr], now))
			break;
	}
	if (up->up_balance != WSG_BALANCE_LEAST_CONN)
		return (&up->up_servers[rr]);
	best = n;
	besta = 0;
	for (i = 0; i < n; i++) {
		j = (rr + i) % n;
		if (live && upstream_server_down(&up->up_servers[j], now))
			continue;
		/* Fewest sessions wins; ties go round robin. */
		a = __atomic_load_n(&up->up_servers[j].srv_active,
		    __ATOMIC_RELAXED);
		if (best == n || a < besta) {
			best = j;
			besta = a;
		}
	}
	return (&up->up_servers[best]);
}

/* A connection to this server failed: skip it for fail_timeout. */
static void
upstream_server_failed(const struct wsg_upstream *up, struct wsg_server *srv)
{
	uint64_t	now, old;

	if (up->up_fail_timeout_ms == 0)
		return;
	now = upstream_clock_ms();
	old = __atomic_exchange_n(&srv->srv_down_until,
	    now + up->up_fail_timeout_ms, __ATOMIC_RELAXED);
	if (old <= now)
		log_warnx("upstream %s server %s: down, skipped for %llu ms",
		    up->up_name, srv->srv_name,
		    (unsigned long long)up->up_fail_timeout_ms);
}

/*
 * This server answered: clear a mark, expired or not.  Accepting is not
 * enough, as one going down may accept and then hang up.
 */
static void
upstream_server_ok(const struct wsg_upstream *up, struct wsg_server *srv)
{
	if (__atomic_load_n(&srv->srv_down_until, __ATOMIC_RELAXED) == 0)
		return;
	if (__atomic_exchange_n(&srv->srv_down_until, 0, __ATOMIC_RELAXED) !=
	    0)
		log_warnx("upstream %s server %s: up again", up->up_name,
		    srv->srv_name);
}

void
upstream_metrics(struct evbuffer *b, const struct wsg_config *conf)
{
	const struct wsg_upstream	*up;
	uint64_t			 now = upstream_clock_ms();
	size_t				 i, j;

	metrics_printf(b,
	    "# HELP wsgate_upstream_server_up 0 while a failed connection "
	    "has the server passed over (fail_timeout), else 1.\n"
	    "# TYPE wsgate_upstream_server_up gauge\n");
	for (i = 0; i < conf->c_nupstreams; i++) {
		up = conf->c_upstreams[i];
		for (j = 0; j < up->up_nservers; j++) {
			metrics_printf(b,
			    "wsgate_upstream_server_up{upstream=");
			metrics_label(b, up->up_name);
			metrics_printf(b, ",server=");
			metrics_label(b, up->up_servers[j].srv_name);
			metrics_printf(b, "} %d\n",
			    !upstream_server_down(&up->up_servers[j], now));
		}
	}
}

void
upstream_release(struct wsg_session *s)
{
	if (s->s_server_held) {
		__atomic_fetch_sub(&s->s_server->srv_active, 1,
		    __ATOMIC_RELAXED);
		s->s_server_held = 0;
	}
}

/*
 * This try failed through the server: count it, pass the server over for
 * fail_timeout, and try the next one.  0 when no server is left.
 */
static int
upstream_try_next(struct wsg_session *s)
{
	struct wsg_upstream	*up = s->s_route->rt_upstream;

	metrics_upstream_failure(up->up_name);
	upstream_server_failed(up, s->s_server);
	upstream_release(s);
	if (s->s_upstream.p_bev != NULL) {
		bufferevent_free(s->s_upstream.p_bev);
		s->s_upstream.p_bev = NULL;
	}
	if (++s->s_server_tries >= up->up_nservers)
		return (0);
	upstream_connect(s);
	return (1);
}

/*
 * A connect failed: try the next server, or refuse with 502.  When this
 * process is out of descriptors or memory the server is not to blame: it
 * is not marked down nor counted, no other server is tried, and the client
 * gets 503 overloaded, as over max_connections.
 */
static void
upstream_connect_failed(struct wsg_session *s, int err)
{
	struct wsg_upstream	*up = s->s_route->rt_upstream;

	if (err == EMFILE || err == ENFILE || err == ENOBUFS ||
	    err == ENOMEM) {
		log_warnx("conn %llu: refused: overloaded: upstream %s: "
		    "cannot open a connection here: %s",
		    (unsigned long long)s->s_id, up->up_name, strerror(err));
		upstream_release(s);
		if (s->s_upstream.p_bev != NULL) {
			bufferevent_free(s->s_upstream.p_bev);
			s->s_upstream.p_bev = NULL;
		}
		session_refuse(s, 503, "overloaded", "Retry-After: 1\r\n");
		return;
	}
	log_warnx("conn %llu: upstream %s server %s: connect failed: %s",
	    (unsigned long long)s->s_id, up->up_name, s->s_server->srv_name,
	    strerror(err));
	if (upstream_try_next(s))
		return;
	log_warnx("conn %llu: refused: upstream_unavailable: upstream %s: "
	    "%s", (unsigned long long)s->s_id, up->up_name,
	    up->up_nservers > 1 ? "no server left to try" :
	    "its server did not accept the connection");
	session_refuse(s, 502, "upstream_unavailable", NULL);
}

/*
 * The server accepted the connection, then closed or reset it before a
 * byte of its answer: it is going down or restarting, and has done
 * nothing another server could not do.  As after a failed connect, the
 * next server is tried within the same deadline, or the client refused.
 */
static void
upstream_closed_early(struct wsg_session *s, short what, int err)
{
	struct wsg_upstream	*up = s->s_route->rt_upstream;
	const char		*name = s->s_server->srv_name;
	int			 reset = (what & BEV_EVENT_ERROR) && err != 0;

	if (s->s_server_tries + 1 < up->up_nservers)
		log_warnx("conn %llu: upstream %s server %s: closed before "
		    "its 101 without answering%s%s",
		    (unsigned long long)s->s_id, up->up_name, name,
		    reset ? ": " : "", reset ? strerror(err) : "");
	else
		log_warnx("conn %llu: refused: upstream_unavailable: "
		    "upstream %s closed before its 101",
		    (unsigned long long)s->s_id, name);
	if (upstream_try_next(s))
		return;
	session_refuse(s, 502, "upstream_unavailable", NULL);
}

/*
 * The server accepted the connection and has sent nothing within its
 * share of connect_timeout: stuck, as one whose kernel accepts while the
 * application hangs.  It costs a try, as a server that never accepted
 * does.  Only a try with other servers left has a share of its own.
 */
static void
upstream_silent(struct wsg_session *s)
{
	struct wsg_upstream	*up = s->s_route->rt_upstream;

	log_warnx("conn %llu: upstream %s server %s: accepted, but no answer "
	    "within its share of connect_timeout",
	    (unsigned long long)s->s_id, up->up_name, s->s_server->srv_name);
	if (upstream_try_next(s))
		return;
	log_warnx("conn %llu: refused: upstream_unavailable: no server of "
	    "upstream %s answered", (unsigned long long)s->s_id, up->up_name);
	session_refuse(s, 504, "upstream_unavailable", NULL);
}

/*
 * Hand the request to a new connection.  While other servers are left
 * to try, it is added by reference, not copied, so that it can go to the
 * next one should this one close without answering; the last try moves
 * it.  -1 if the connection's buffer could not take all of it.
 */
static int
upstream_send_request(struct wsg_session *s, struct bufferevent *bev)
{
	struct evbuffer	*out = bufferevent_get_output(bev);
	size_t		 before, len = evbuffer_get_length(s->s_upreq);

	if (s->s_server_tries + 1 >= s->s_route->rt_upstream->up_nservers)
		return (evbuffer_add_buffer(out, s->s_upreq));
	before = evbuffer_get_length(out);
	/* It can stop short for want of memory and still return 0. */
	if (evbuffer_add_buffer_reference(out, s->s_upreq) == -1 ||
	    evbuffer_get_length(out) - before != len)
		return (-1);
	return (0);
}

void
upstream_timed_out(struct wsg_session *s)
{
	struct wsg_upstream	*up = s->s_route->rt_upstream;

	log_warnx("conn %llu: refused: upstream_unavailable: upstream %s "
	    "server %s: %s within connect_timeout",
	    (unsigned long long)s->s_id, up->up_name, s->s_server ?
	    s->s_server->srv_name : "?", !s->s_up_connected ?
	    "not connected" : !s->s_up_answered ? "no answer" :
	    "answer not finished");
	metrics_upstream_failure(up->up_name);
	/*
	 * A server that answers slowly is up; one that never accepted, or
	 * accepted and said nothing, is not.
	 */
	if (s->s_server != NULL && !s->s_up_answered)
		upstream_server_failed(up, s->s_server);
	session_refuse(s, 504, "upstream_unavailable", NULL);
}

void
upstream_connect(struct wsg_session *s)
{
	struct wsg_upstream	*up = s->s_route->rt_upstream;
	struct wsg_server	*srv;
	struct bufferevent	*bev;
	struct timeval		 tv;
	uint64_t		 now, left, per;

	srv = upstream_pick(s);
	s->s_server = srv;
	s->s_server_tried |= UINT64_C(1) << (srv - up->up_servers);
	s->s_up_connected = 0;
	s->s_up_answered = 0;
	s->s_try_until = 0;
	bev = bufferevent_socket_new(s->s_worker->w_base, -1,
	    BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		session_refuse_internal(s, "cannot set up the upstream "
		    "connection");
		return;
	}
	s->s_upstream.p_bev = bev;
	__atomic_fetch_add(&srv->srv_active, 1, __ATOMIC_RELAXED);
	s->s_server_held = 1;
	bufferevent_setwatermark(bev, EV_READ, 0, WSG_MAX_UPSTREAM_HEAD +
	    WSG_MAX_UPSTREAM_BODY);
	bufferevent_setcb(bev, upstream_read_cb, NULL, upstream_event_cb,
	    &s->s_upstream);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	now = upstream_clock_ms();
	if (s->s_server_tries == 0) {
		/* One deadline for connecting and for the 101, all tries. */
		tv.tv_sec = up->up_connect_timeout_ms / 1000;
		tv.tv_usec = (up->up_connect_timeout_ms % 1000) * 1000;
		evtimer_add(s->s_timer, &tv);
		s->s_up_deadline = now + up->up_connect_timeout_ms;
	}
	/*
	 * While other servers are left to try, this one gets its share of
	 * what is left of the deadline to accept the TCP connection and to
	 * send a first byte of its answer, so that a server that drops SYNs,
	 * or accepts and hangs, costs a try, not the whole deadline.  The
	 * connect is bounded here, the answer once connected.
	 */
	if ((left = up->up_nservers - s->s_server_tries) > 1) {
		per = s->s_up_deadline > now ? (s->s_up_deadline - now) / left :
		    0;
		if (per == 0)
			per = 1;
		s->s_try_until = now + per;
		tv.tv_sec = per / 1000;
		tv.tv_usec = (per % 1000) * 1000;
		bufferevent_set_timeouts(bev, NULL, &tv);
	}
	log_debug("conn %llu: connecting to %s", (unsigned long long)s->s_id,
	    srv->srv_name);
	if (bufferevent_socket_connect(bev, (struct sockaddr *)&srv->srv_addr,
	    srv->srv_addrlen) == -1)
		upstream_connect_failed(s, errno ? errno : ECONNREFUSED);
}

/* Connected, refused, reset or closed before the 101. */
static void
upstream_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct wsg_peer			*p = arg;
	struct wsg_session		*s = p->p_session;
	struct evbuffer			*in = bufferevent_get_input(bev);
	struct wsg_http_response	 r;
	struct timeval			 tv;
	const char			*buf;
	const char			*reason;
	uint64_t			 now, ms;
	size_t				 len;
	int				 one = 1, err;

	if (s->s_state == WSG_S_CLOSED) {
		session_event_cb(bev, what, arg);
		return;
	}
	if (what & BEV_EVENT_CONNECTED) {
		s->s_up_connected = 1;
		/* What is left of the share, if any, is for the answer. */
		if (s->s_try_until != 0) {
			now = upstream_clock_ms();
			ms = s->s_try_until > now ? s->s_try_until - now : 1;
			tv.tv_sec = ms / 1000;
			tv.tv_usec = (ms % 1000) * 1000;
			bufferevent_set_timeouts(bev, &tv, NULL);
		} else
			bufferevent_set_timeouts(bev, NULL, NULL);
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY,
		    &one, sizeof(one));
		if (upstream_send_request(s, bev) == -1) {
			/*
			 * Never part of a request: dropped, not flushed.  This
			 * runs inside libevent's write callback, which goes on
			 * to write what the output holds, freed or not.
			 */
			evbuffer_drain(bufferevent_get_output(bev),
			    evbuffer_get_length(bufferevent_get_output(bev)));
			session_peer_free(p);
			session_refuse_internal(s, "cannot send the upstream "
			    "request");
		}
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && !s->s_up_connected) {
		upstream_connect_failed(s, ETIMEDOUT);
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) &&
	    !s->s_up_answered) {
		upstream_silent(s);
		return;
	}
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	err = EVUTIL_SOCKET_ERROR();
	if (!s->s_up_connected) {
		upstream_connect_failed(s, err ? err : ECONNREFUSED);
		return;
	}
	if ((what & BEV_EVENT_ERROR) && err == ENOMEM) {
		/* Our input could not grow: the upstream is not to blame. */
		session_refuse_internal(s, "out of memory reading the "
		    "upstream's answer");
		return;
	}
	/* Not a byte of answer, not even an interim one. */
	if ((len = evbuffer_get_length(in)) == 0 && s->s_interim == 0) {
		upstream_closed_early(s, what, err);
		return;
	}
	/*
	 * A whole refusal head whose body the close cut short: the status
	 * stands, passed through without the body, as one too long to relay.
	 */
	if (len > 0 &&
	    (buf = (const char *)evbuffer_pullup(in, len)) != NULL &&
	    http_response_parse(buf, len, WSG_MAX_UPSTREAM_HEAD, &r) ==
	    WSG_HTTP_OK && r.status >= 200) {
		log_warnx("conn %llu: upstream %s closed before its 101",
		    (unsigned long long)s->s_id, s->s_server->srv_name);
		upstream_refused(s, &r, NULL, 0);
		session_peer_free(p);
		return;
	}
	reason = len == 0 ? "upstream_unavailable" : "upstream_bad_handshake";
	log_warnx("conn %llu: refused: %s: upstream %s closed before its 101",
	    (unsigned long long)s->s_id, reason, s->s_server->srv_name);
	/* Only interim answers, then a close: failed, but not retried. */
	if (len == 0)
		metrics_upstream_failure(s->s_route->rt_upstream->up_name);
	session_peer_free(p);
	session_refuse(s, 502, reason, NULL);
}

/*
 * Pass a non-101 answer through: its status, the fields that give it its
 * meaning (a 401's challenge, a redirect's target), a bounded body, then
 * close.  Content-Type goes only with the upstream's own body.
 */
static void
upstream_refused(struct wsg_session *s, const struct wsg_http_response *r,
    const char *body, size_t bodylen)
{
	static const char *const pass[] = { "Content-Type", "WWW-Authenticate",
	    "Retry-After", "Location", NULL };
	struct evbuffer		*msg;
	const struct wsg_http_header *h;
	size_t			 i, j, n;
	int			 bad = 0;

	/*
	 * Made aside and moved to the client whole: a buffer that could not
	 * grow must not leave the client part of a head.
	 */
	if ((msg = evbuffer_new()) == NULL) {
		session_refuse_internal(s, "out of memory passing the "
		    "upstream's refusal on");
		return;
	}
	bad |= evbuffer_add_printf(msg, "HTTP/1.1 %d %s\r\n"
	    "Connection: close\r\n", r->status,
	    http_status_text(r->status)) == -1;
	for (i = 0; pass[i] != NULL; i++) {
		if (body == NULL && strcmp(pass[i], "Content-Type") == 0)
			continue;
		/*
		 * The first field of each name; every WWW-Authenticate, as
		 * challenges may come in several (RFC 9110 11.6.1).
		 */
		for (j = 0, n = 0; j < r->nheaders; j++) {
			h = &r->headers[j];
			if (!http_str_eq(h->name, pass[i]) || (n++ > 0 &&
			    strcmp(pass[i], "WWW-Authenticate") != 0))
				continue;
			bad |= evbuffer_add_printf(msg, "%s: %.*s\r\n",
			    pass[i], (int)h->value.len, h->value.p) == -1;
		}
	}
	if (r->status == 204 || r->status == 304) {
		/* No body, no Content-Length (RFC 9110 8.6, 15.3.5). */
		bad |= evbuffer_add(msg, "\r\n", 2) == -1;
	} else {
		if (body == NULL) {
			body = "upstream_refused\n";
			bodylen = strlen(body);
			bad |= evbuffer_add_printf(msg,
			    "Content-Type: text/plain\r\n") == -1;
		}
		bad |= evbuffer_add_printf(msg,
		    "Content-Length: %zu\r\n\r\n", bodylen) == -1;
		bad |= evbuffer_add(msg, body, bodylen) == -1;
	}
	if (bad || evbuffer_add_buffer(bufferevent_get_output(
	    s->s_client.p_bev), msg) == -1) {
		evbuffer_free(msg);
		session_refuse_internal(s, "out of memory passing the "
		    "upstream's refusal on");
		return;
	}
	evbuffer_free(msg);
	log_info("conn %llu: refused: upstream_refused: upstream %s "
	    "answered %d",
	    (unsigned long long)s->s_id, s->s_server->srv_name, r->status);
	s->s_status = r->status;
	session_close(s, "upstream_refused");
}

/*
 * The end-to-end fields of the upstream's valid 101, in its order and
 * repeats kept (several Set-Cookie), for the client's 101; NULL when
 * the buffer could not take them all.  Bounded, as the upstream's head
 * is (WSG_MAX_UPSTREAM_HEAD).
 */
static struct evbuffer *
upstream_101_fields(const struct wsg_http_response *r)
{
	const struct wsg_http_header	*h;
	struct evbuffer			*b;
	size_t				 i;
	int				 bad = 0;

	if ((b = evbuffer_new()) == NULL)
		return (NULL);
	for (i = 0; i < r->nheaders; i++) {
		h = &r->headers[i];
		if (!http_response_field_passed(r, h))
			continue;
		bad |= evbuffer_add(b, h->name.p, h->name.len) == -1;
		bad |= evbuffer_add(b, ": ", 2) == -1;
		bad |= evbuffer_add(b, h->value.p, h->value.len) == -1;
		bad |= evbuffer_add(b, "\r\n", 2) == -1;
	}
	if (bad) {
		evbuffer_free(b);
		return (NULL);
	}
	return (b);
}

/* The upstream's answer to our upgrade request. */
static void
upstream_read_cb(struct bufferevent *bev, void *arg)
{
	struct wsg_peer			*p = arg;
	struct wsg_session		*s = p->p_session;
	struct evbuffer			*in = bufferevent_get_input(bev);
	struct wsg_http_response	 r;
	struct wsg_str			 offered[WSG_MAX_SUBPROTOCOLS], chosen;
	struct evbuffer			*fields;
	enum wsg_http_result		 res;
	const char			*buf, *why;
	size_t				 len, n, i;
	int				 rc;

	if (s->s_state != WSG_S_UPSTREAM)
		return;
	/* It answers: it is not stuck, and no longer bounded by its share. */
	if (!s->s_up_answered) {
		s->s_up_answered = 1;
		if (s->s_try_until != 0)
			bufferevent_set_timeouts(bev, NULL, NULL);
	}
	upstream_server_ok(s->s_route->rt_upstream, s->s_server);
	len = evbuffer_get_length(in);
	n = len > WSG_MAX_UPSTREAM_HEAD + WSG_MAX_UPSTREAM_BODY ?
	    WSG_MAX_UPSTREAM_HEAD + WSG_MAX_UPSTREAM_BODY : len;
	if ((buf = (const char *)evbuffer_pullup(in, n)) == NULL) {
		session_refuse_internal(s, "out of memory reading the "
		    "upstream's answer");
		return;
	}
	res = http_response_parse(buf, n, WSG_MAX_UPSTREAM_HEAD, &r);
	if (res == WSG_HTTP_INCOMPLETE)
		return;
	if (res != WSG_HTTP_OK) {
		log_warnx("conn %llu: refused: upstream_bad_handshake: "
		    "upstream %s: bad response: %s",
		    (unsigned long long)s->s_id, s->s_server->srv_name,
		    r.error ? r.error : "malformed");
		session_refuse(s, 502, "upstream_bad_handshake", NULL);
		return;
	}
	if (r.status == 101) {
		for (i = 0; i < s->s_nprotocols; i++) {
			offered[i].p = s->s_protocols[i];
			offered[i].len = strlen(s->s_protocols[i]);
		}
		rc = http_response_check_upgrade(&r, s->s_upstream_key,
		    offered, s->s_nprotocols, &chosen, &why);
		if (rc == -2) {
			session_refuse_internal(s, why);
			return;
		}
		if (rc == -1) {
			log_warnx("conn %llu: refused: "
			    "upstream_bad_handshake: upstream %s: bad 101: %s",
			    (unsigned long long)s->s_id,
			    s->s_server->srv_name, why);
			session_refuse(s, 502, "upstream_bad_handshake", NULL);
			return;
		}
		if (chosen.p != NULL && (s->s_subprotocol = strndup(chosen.p,
		    chosen.len)) == NULL) {
			session_refuse_internal(s, "out of memory copying the "
			    "subprotocol");
			return;
		}
		/* Made before the drain: the fields point into the input. */
		if ((fields = upstream_101_fields(&r)) == NULL) {
			session_refuse_internal(s, "out of memory writing the "
			    "101");
			return;
		}
		evbuffer_drain(in, r.head_len);
		session_open(s, s->s_subprotocol, fields);
		evbuffer_free(fields);
		return;
	}
	if (r.status < 200) {
		/*
		 * An interim answer (100 Continue, 103 Early Hints): RFC 9110
		 * 15.2 lets a client ignore those it did not ask for.  The
		 * 101 or the refusal follows; a few are enough.
		 */
		if (++s->s_interim > WSG_MAX_INTERIM) {
			log_warnx("conn %llu: refused: "
			    "upstream_bad_handshake: upstream %s: more than "
			    "%d interim answers", (unsigned long long)s->s_id,
			    s->s_server->srv_name, WSG_MAX_INTERIM);
			session_refuse(s, 502, "upstream_bad_handshake", NULL);
			return;
		}
		log_debug("conn %llu: upstream %s: interim %d skipped",
		    (unsigned long long)s->s_id, s->s_server->srv_name,
		    r.status);
		evbuffer_drain(in, r.head_len);
		if (evbuffer_get_length(in) > 0)
			upstream_read_cb(bev, arg);
		return;
	}
	/*
	 * A 204 or 304 ends at its empty line whatever its Content-Length
	 * says (RFC 9112 6.3): a 304 may give the length of what it stands
	 * for, and no such body is coming.
	 */
	if (r.status != 204 && r.status != 304 && r.content_length >= 0 &&
	    r.content_length <= WSG_MAX_UPSTREAM_BODY) {
		if (n < r.head_len + (size_t)r.content_length)
			return;		/* wait for the body (bounded) */
		upstream_refused(s, &r, buf + r.head_len,
		    (size_t)r.content_length);
		return;
	}
	upstream_refused(s, &r, NULL, 0);
}
