/*
 * Sessions: accepting a client, reading and judging its upgrade request,
 * refusing it or handing it to the upstream half, and the one way out,
 * session_close().
 */
#include "autoconf.h"

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>	/* ev_read, ev_write */
#include <event2/event.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "cidr.h"
#include "config.h"
#include "frame.h"
#include "http.h"
#include "jwt.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "proxy.h"
#include "relay.h"
#include "server.h"
#include "session.h"
#include "store.h"
#include "tls.h"
#include "tls13.h"
#include "units.h"
#include "upstream.h"
#include "wsgate.h"

/* How long a closed session waits for its peers to take their last bytes. */
#define WSG_LINGER_MS		2000
/* ... and how much it reads from them once they have all it sent. */
#define WSG_LINGER_MAX_DISCARD	(64 * 1024)
/*
 * How long a side may take to answer a relayed close frame, from when the
 * frame has been written out (a slow reader may still be taking what was
 * queued before it), and how often that is looked at meanwhile.
 */
#define WSG_CLOSE_WAIT_MS	5000
#define WSG_CLOSE_POLL_MS	250
/* Re-parse a growing request head only after this many new bytes. */
#define WSG_REPARSE_STEP	256
/* What is read (and counted) of a plaintext request to a TLS listener. */
#define WSG_PLAIN_HTTP_READ	4096

static void	session_client_read_cb(struct bufferevent *, void *);
static void	session_peer_flushed(struct wsg_peer *);
static void	session_linger_read_cb(struct bufferevent *, void *);
static void	session_free_cb(evutil_socket_t, short, void *);
static void	session_admit_rest(struct wsg_session *,
		    struct wsg_http_request *);
static void	session_timer_cb(evutil_socket_t, short, void *);
static void	session_wait_hello(struct wsg_session *, int);
static void	session_refuse_plain_http(struct wsg_session *,
		    struct wsg_peer *);
static void	session_refuse_answer(struct wsg_session *, int,
		    const char *, const char *, const char *, int);

/* Sessions past their handshake checks, for max_connections. */
static uint64_t	session_admitted;

/* Arm the session's timer for ms milliseconds from now. */
static void
session_timer_set(struct wsg_session *s, uint64_t ms)
{
	struct timeval	tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(s->s_timer, &tv);
}

/* Seconds since the connection was accepted. */
static double
session_elapsed(const struct wsg_session *s)
{
	struct timespec	now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return ((now.tv_sec - s->s_start.tv_sec) +
	    (now.tv_nsec - s->s_start.tv_nsec) / 1e9);
}

/*
 * The monotonic clock: a step of the wall clock (NTP, an operator) must
 * neither close a busy session as idle nor keep a quiet one open.  libevent's
 * cached time is the wall clock.
 */
uint64_t
session_now_ms(struct wsg_session *s)
{
	struct timespec	ts;

	(void)s;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

/* Set up one half of a session around its bufferevent. */
static void
session_peer_init(struct wsg_session *s, struct wsg_peer *p, int is_client)
{
	p->p_session = s;
	p->p_is_client = is_client;
	p->p_name = is_client ? "client" : "upstream";
	p->p_other = is_client ? &s->s_upstream : &s->s_client;
	p->p_fd = -1;
}

/*
 * Record the client's address (the peer, or what PROXY/XFF said).  An
 * IPv4-mapped IPv6 address, as a dual-stack load balancer's PROXY header
 * gives, is stored as the IPv4 address it holds, so the log and the
 * upstream's X-Forwarded-For name the client as X-Forwarded-For does.
 */
static void
session_set_addr(struct wsg_session *s, const struct sockaddr *sa,
    socklen_t salen, int keep_port)
{
	const struct sockaddr_in6	*m6;
	struct sockaddr_in		 v4;

	if (sa->sa_family == AF_INET6) {
		m6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&m6->sin6_addr)) {
			memset(&v4, 0, sizeof(v4));
			v4.sin_family = AF_INET;
			v4.sin_port = m6->sin6_port;
			memcpy(&v4.sin_addr, m6->sin6_addr.s6_addr + 12, 4);
			sa = (const struct sockaddr *)&v4;
			salen = sizeof(v4);
		}
	}
	memset(&s->s_addr, 0, sizeof(s->s_addr));
	memcpy(&s->s_addr, sa, salen < sizeof(s->s_addr) ? salen :
	    sizeof(s->s_addr));
	s->s_client_ip[0] = '\0';
	s->s_client_port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, s->s_client_ip,
		    sizeof(s->s_client_ip));
		if (keep_port)
			s->s_client_port = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 =
		    (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, s->s_client_ip,
		    sizeof(s->s_client_ip));
		if (keep_port)
			s->s_client_port = ntohs(sin6->sin6_port);
	}
}

/* Put the client's socket under a (TLS) bufferevent and start reading. */
static void
session_start_client(struct wsg_session *s, int fd)
{
	const struct wsg_listener_conf	*lc = s->s_listener;
	struct event_base		*base = s->s_worker->w_base;
	SSL				*ssl = NULL;

	s->s_fd = -1;
	if (lc->lc_tls) {
		/*
		 * Without CLOSE_ON_FREE: when this fails, libevent may or may
		 * not have freed the SSL and closed the socket, depending on
		 * where; this way neither is touched and both are ours.  They
		 * are released in session_free(), after libevent is done.
		 */
		if ((ssl = SSL_new(lc->lc_ssl_ctx)) != NULL)
			s->s_client.p_bev = bufferevent_openssl_socket_new(
			    base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, 0);
		if (s->s_client.p_bev != NULL) {
			s->s_client.p_ssl = ssl;
			s->s_client.p_fd = fd;
		}
	} else
		s->s_client.p_bev = bufferevent_socket_new(base, fd,
		    BEV_OPT_CLOSE_ON_FREE);
	if (s->s_client.p_bev == NULL) {
		if (ssl != NULL)
			SSL_free(ssl);
		close(fd);
		log_warnx("conn %llu: internal_error: cannot set up the "
		    "client connection", (unsigned long long)s->s_id);
		session_close(s, "internal_error");
		return;
	}
	/* Never buffer more than one head (plus a little) before judging it. */
	bufferevent_setwatermark(s->s_client.p_bev, EV_READ, 0,
	    lc->lc_max_header_bytes + 1);
	bufferevent_setcb(s->s_client.p_bev, session_client_read_cb, NULL,
	    session_event_cb, &s->s_client);
	bufferevent_enable(s->s_client.p_bev, EV_READ | EV_WRITE);
}

/*
 * max_pending_per_ip: a connection counts for its listener and the
 * client's address from accept until its request head has been read, in
 * the per-address table that the policies' concurrent_per_ip uses, under
 * a name no policy can have ("/" and the listen address).  Behind
 * proxy_protocol it counts from its header on, for the address the
 * header gives: before it the peer is the load balancer, whose every
 * client would share its count.  A trusted proxy's connections do not
 * count either, for the same reason: their clients are known by
 * X-Forwarded-For, once the head is read.  An address the full table
 * cannot hold is let through uncounted.  Returns 0 to go on, -1 when the
 * connection was refused: closed, or on a plaintext listener answered 429.
 */
static int
session_pending_admit(struct wsg_session *s, int fd)
{
	const struct wsg_listener_conf	*lc = s->s_listener;
	struct wsg_ratelimit_conf	 rc;
	char				 name[WSG_RL_MAX_POLICY + 1];
	uint32_t			 retry;

	if (lc->lc_max_pending_per_ip == 0)
		return (0);
	if (lc->lc_ntrusted_proxies > 0 && cidr_list_match(
	    lc->lc_trusted_proxies, lc->lc_ntrusted_proxies,
	    (struct sockaddr *)&s->s_addr))
		return (0);
	name[0] = '/';
	units_format_addr((const struct sockaddr *)&lc->lc_addr, name + 1,
	    sizeof(name) - 1);
	if (rlkey_make(&s->s_pending_key, name,
	    (struct sockaddr *)&s->s_addr, WSG_RL_DEFAULT_PREFIX) == -1)
		return (0);
	memset(&rc, 0, sizeof(rc));
	rc.rc_concurrent = lc->lc_max_pending_per_ip;
	rc.rc_ipv6_prefix = WSG_RL_DEFAULT_PREFIX;
	if (rltable_admit(server_rltable(), &s->s_pending_key, &rc,
	    ratelimit_now_ms(), &retry) != WSG_RL_CONCURRENT)
		return (0);
	log_info("conn %llu: refused: rate_concurrent: %s has %llu "
	    "connections without a request head on %s",
	    (unsigned long long)s->s_id, s->s_client_ip,
	    (unsigned long long)lc->lc_max_pending_per_ip, lc->lc_name);
	if (lc->lc_tls) {
		session_close(s, "rate_concurrent");
		return (-1);
	}
	/* Plaintext: a client that sends its request reads why. */
	session_start_client(s, fd);
	session_refuse(s, 429, "rate_concurrent", "Retry-After: 1\r\n");
	return (-1);
}

/* Its request head has been read, or it closed: no longer pending. */
static void
session_pending_release(struct wsg_session *s)
{
	if (s->s_pending_key.k_tracked)
		rltable_release(server_rltable(), &s->s_pending_key,
		    ratelimit_now_ms());
}

/*
 * A PROXY protocol header comes before anything else, TLS included.  It is
 * peeked at (edge-triggered, so an unfinished header does not spin) and
 * only its own bytes are consumed, so the TLS layer starts exactly after.
 * A peek never shows the peer's FIN behind bytes left unread, so EV_CLOSED
 * tells when the peer went away with only part of a header sent.
 */
static void
session_proxy_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct wsg_session	*s = arg;
	struct wsg_proxy_info	 pi;
	uint8_t			 buf[WSG_PROXY_MAX_HEADER];
	enum wsg_proxy_result	 r;
	ssize_t			 n;

	n = recv(fd, buf, sizeof(buf), MSG_PEEK);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		log_info("conn %llu: handshake_failed: closed before a PROXY "
		    "header: %s", (unsigned long long)s->s_id, n == 0 ?
		    "end of file" : strerror(errno));
		session_close(s, "handshake_failed");
		return;
	}
	r = proxy_parse(buf, (size_t)n, &pi);
	if (r == WSG_PROXY_INCOMPLETE && (ev & EV_CLOSED)) {
		log_info("conn %llu: handshake_failed: closed within its PROXY "
		    "header", (unsigned long long)s->s_id);
		session_close(s, "handshake_failed");
		return;
	}
	if (r == WSG_PROXY_INCOMPLETE && (size_t)n < sizeof(buf))
		return;
	if (r != WSG_PROXY_OK) {
		log_info("conn %llu: bad_proxy_header: bad PROXY protocol "
		    "header", (unsigned long long)s->s_id);
		session_close(s, "bad_proxy_header");
		return;
	}
	if (recv(fd, buf, pi.pi_len, 0) != (ssize_t)pi.pi_len) {
		log_info("conn %llu: handshake_failed: cannot read its PROXY "
		    "header", (unsigned long long)s->s_id);
		session_close(s, "handshake_failed");
		return;
	}
	event_free(s->s_proxy_ev);
	s->s_proxy_ev = NULL;
	if (!pi.pi_local)
		session_set_addr(s, (struct sockaddr *)&pi.pi_src,
		    pi.pi_srclen, 1);
	log_debug("conn %llu: PROXY header: client %s port %d",
	    (unsigned long long)s->s_id, s->s_client_ip, s->s_client_port);
	if (session_pending_admit(s, fd) == -1)
		return;
	session_wait_hello(s, fd);
}

/*
 * The first bytes of a client on a TLS listener have come (or its EOF):
 * only now is its TLS state made.  OpenSSL allocates some 50 KiB for a
 * handshake it has started, even with nothing read, and a connection that
 * sends nothing costs its client nothing at all.  A plaintext HTTP
 * request line is answered without any (session_refuse_plain_http()).
 * Edge-triggered, so that bytes too few to tell by are waited on without
 * spinning; but never for more than a record header's worth, which
 * OpenSSL would wait for too, and the handshake timeout bounds the wait.
 */
static void
session_hello_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct wsg_session	*s = arg;
	uint8_t			 b[TLS_MAX_METHOD + sizeof(" https://")];
	ssize_t			 n;
	int			 plain = 0;

	n = recv(fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0 && (plain = tls_plain_request_line(b, n)) == -1 &&
	    !(ev & EV_CLOSED))
		return;
	event_free(s->s_proxy_ev);
	s->s_proxy_ev = NULL;
	/* Gone before a byte: no TLS state is made only to read its EOF. */
	if (n <= 0) {
		log_info("conn %llu: handshake_failed: TLS handshake failed: "
		    "%s", (unsigned long long)s->s_id, n == 0 ?
		    "closed before sending anything" : strerror(errno));
		session_close(s, "handshake_failed");
		return;
	}
	/* Enough to tell a HEAD by (session_refuse_plain_http()). */
	s->s_first_byte = b[0];
	if (plain == 1)
		session_refuse_plain_http(s, &s->s_client);
	else
		session_start_client(s, fd);
}

/*
 * Start the client half now, or on a TLS listener once the client has
 * sent something (a load balancer's PROXY header comes as it connects,
 * its client's ClientHello only when that client speaks).
 */
static void
session_wait_hello(struct wsg_session *s, int fd)
{
	if (!s->s_listener->lc_tls) {
		session_start_client(s, fd);
		return;
	}
	s->s_proxy_ev = event_new(s->s_worker->w_base, fd,
	    EV_READ | EV_CLOSED | EV_PERSIST | EV_ET, session_hello_cb, s);
	if (s->s_proxy_ev == NULL || event_add(s->s_proxy_ev, NULL) == -1) {
		log_warnx("conn %llu: internal_error: cannot wait for the TLS "
		    "hello", (unsigned long long)s->s_id);
		session_close(s, "internal_error");
	}
}

void
session_accept(struct wsg_worker *w, const struct wsg_listener_conf *lc,
    int fd, struct sockaddr *sa, int salen)
{
	struct wsg_session	*s;

	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->s_timer = evtimer_new(w->w_base, session_timer_cb, s)) ==
	    NULL || (s->s_free_ev = event_new(w->w_base, -1, 0,
	    session_free_cb, s)) == NULL) {
		log_warn("accept: session");
		if (s != NULL && s->s_timer != NULL)
			event_free(s->s_timer);
		free(s);
		close(fd);
		return;
	}
	s->s_id = server_next_id();
	s->s_worker = w;
	s->s_conf = config_ref(w->w_conf);
	s->s_listener = lc;
	s->s_state = WSG_S_HANDSHAKE;
	s->s_fd = fd;
	clock_gettime(CLOCK_MONOTONIC, &s->s_start);
	session_set_addr(s, sa, salen, 1);
	session_peer_init(s, &s->s_client, 1);
	session_peer_init(s, &s->s_upstream, 0);
	TAILQ_INSERT_TAIL(&w->w_sessions, s, s_entry);
	w->w_nsessions++;
	metrics_worker_conn(w->w_index, 1);

	session_timer_set(s, lc->lc_handshake_timeout_ms);
	log_debug("conn %llu: accepted from %s port %d on %s",
	    (unsigned long long)s->s_id, s->s_client_ip, s->s_client_port,
	    lc->lc_name);
	if (lc->lc_proxy_protocol) {
		s->s_proxy_ev = event_new(w->w_base, fd,
		    EV_READ | EV_CLOSED | EV_PERSIST | EV_ET, session_proxy_cb,
		    s);
		if (s->s_proxy_ev == NULL || event_add(s->s_proxy_ev, NULL) ==
		    -1) {
			log_warnx("conn %llu: internal_error: cannot wait for "
			    "the PROXY header", (unsigned long long)s->s_id);
			session_close(s, "internal_error");
			return;
		}
		return;
	}
	if (session_pending_admit(s, fd) == -1)
		return;
	session_wait_hello(s, fd);
}

/* Copy a header value into a NUL-terminated string; NULL if absent. */
static char *
session_strdup(struct wsg_str v)
{
	char	*p;

	if (v.p == NULL)
		return (NULL);
	if ((p = malloc(v.len + 1)) == NULL)
		return (NULL);
	memcpy(p, v.p, v.len);
	p[v.len] = '\0';
	return (p);
}

/*
 * Filter the offered subprotocols through the policy.  Returns -1 when
 * some were offered and none is allowed, -2 on allocation failure.
 */
static int
session_filter_protocols(struct wsg_session *s,
    const struct wsg_http_request *req)
{
	const struct wsg_policy	*pol = s->s_route->rt_policy;
	size_t			 i, j;
	int			 ok;

	if (req->nprotocols == 0)
		return (0);
	if ((s->s_protocols = calloc(req->nprotocols, sizeof(char *))) == NULL)
		return (-2);
	for (i = 0; i < req->nprotocols; i++) {
		ok = !pol->pol_has_subprotocols;
		for (j = 0; !ok && j < pol->pol_nsubprotocols; j++)
			if (req->protocols[i].len ==
			    strlen(pol->pol_subprotocols[j]) &&
			    memcmp(req->protocols[i].p,
			    pol->pol_subprotocols[j],
			    req->protocols[i].len) == 0)
				ok = 1;
		if (!ok)
			continue;
		if ((s->s_protocols[s->s_nprotocols] =
		    session_strdup(req->protocols[i])) == NULL)
			return (-2);
		s->s_nprotocols++;
	}
	return (s->s_nprotocols == 0 ? -1 : 0);
}

/*
 * A client certificate gives a subject for the log, known as soon as the
 * TLS handshake ends: a client refused before or without a request head
 * (431, handshake_timeout) is logged with it too.  The whole subject, as
 * its CA signed it: into a fixed buffer X509_NAME_oneline() would leave
 * out the RDNs that do not fit, the CN (the last one) first.
 */
static void
session_tls_subject(struct wsg_session *s)
{
	SSL	*ssl;
	X509	*cert;
	char	*subj;

	if (s->s_tls_subject != NULL || s->s_listener->lc_client_ca == NULL ||
	    s->s_client.p_bev == NULL ||
	    (ssl = bufferevent_openssl_get_ssl(s->s_client.p_bev)) == NULL ||
	    (cert = SSL_get0_peer_certificate(ssl)) == NULL)
		return;
	if ((subj = X509_NAME_oneline(X509_get_subject_name(cert), NULL,
	    0)) == NULL) {
		ERR_clear_error();
		return;
	}
	s->s_tls_subject = strdup(subj);
	OPENSSL_free(subj);
}

/*
 * Who the client is: a trusted proxy's X-Forwarded-For moves the address
 * (the right-most entry not itself a trusted proxy); a client certificate
 * gives a subject for the log.
 */
static void
session_identify(struct wsg_session *s, const struct wsg_http_request *req)
{
	const struct wsg_listener_conf	*lc = s->s_listener;
	const char			*vals[WSG_MAX_HEADERS];
	size_t				 lens[WSG_MAX_HEADERS], i, n = 0;
	struct sockaddr_storage		 ss;
	socklen_t			 sslen;

	if (lc->lc_ntrusted_proxies > 0 && cidr_list_match(
	    lc->lc_trusted_proxies, lc->lc_ntrusted_proxies,
	    (struct sockaddr *)&s->s_addr)) {
		for (i = 0; i < req->nheaders; i++)
			if (http_str_eq(req->headers[i].name,
			    "X-Forwarded-For")) {
				vals[n] = req->headers[i].value.p;
				lens[n++] = req->headers[i].value.len;
			}
		if (n > 0 && proxy_xff_client(vals, lens, n,
		    lc->lc_trusted_proxies, lc->lc_ntrusted_proxies, &ss,
		    &sslen) == 0) {
			/* An entry without a port gives 0: logged as null. */
			session_set_addr(s, (struct sockaddr *)&ss, sslen, 1);
			log_debug("conn %llu: X-Forwarded-For: client %s",
			    (unsigned long long)s->s_id, s->s_client_ip);
		}
	}
	session_tls_subject(s);
}

/* Refuse for a per-address limit: 429 with Retry-After. */
static void
session_refuse_rate(struct wsg_session *s, const char *reason,
    uint32_t retry)
{
	char	hdr[64];

	snprintf(hdr, sizeof(hdr), "Retry-After: %u\r\n", retry ? retry : 1);
	log_info("conn %llu: refused: %s", (unsigned long long)s->s_id,
	    reason);
	session_refuse(s, 429, reason, hdr);
}

/*
 * connections_per_ip and concurrent_per_ip in this process, exact across
 * worker threads.  Returns 0 to go on, -1 when the session was refused.
 */
static int
session_rate_local(struct wsg_session *s)
{
	const struct wsg_ratelimit_conf *rc = s->s_route->rt_policy->pol_rate;
	uint32_t			 retry = 1;

	switch (rltable_admit(server_rltable(), &s->s_rlkey, rc,
	    ratelimit_now_ms(), &retry)) {
	case WSG_RL_OK:
		return (0);
	case WSG_RL_RATE:
		session_refuse_rate(s, "rate_connections", retry);
		return (-1);
	case WSG_RL_FULL:
		log_warnx("conn %llu: refused: overloaded: the rate-limit "
		    "table is full "
		    "of addresses with open connections",
		    (unsigned long long)s->s_id);
		session_refuse(s, 503, "overloaded", "Retry-After: 1\r\n");
		return (-1);
	default:
		session_refuse_rate(s, "rate_concurrent", retry);
		return (-1);
	}
}

/*
 * Admitted without the shared store: the connection counts against
 * concurrent_per_ip in Redis once it is back, as the others do.
 */
static void
session_store_adopt(struct wsg_session *s)
{
	const struct wsg_policy	*pol = s->s_route->rt_policy;
	char			 addr[WSG_RL_ADDRKEY_MAX];

	if (pol->pol_rate == NULL || pol->pol_rate->rc_concurrent == 0 ||
	    s->s_worker->w_store == NULL || s->s_store_leased ||
	    rlkey_addr(&s->s_rlkey, addr, sizeof(addr)) == -1)
		return;
	if (store_adopt(s->s_worker->w_store, pol->pol_name, addr,
	    s->s_id) == 0)
		s->s_store_leased = 1;
}

/* The shared store answered (or could not): go on, or refuse. */
static void
session_store_cb(void *arg, enum wsg_store_result r, uint32_t retry)
{
	struct wsg_session		*s = arg;
	const struct wsg_store_conf	*sc = s->s_conf->c_store;
	struct wsg_http_request		 req;
	struct evbuffer			*in;
	const char			*buf;
	size_t				 len;

	s->s_store_pending = 0;
	if (s->s_state != WSG_S_ADMITTING)
		return;
	switch (r) {
	case WSG_STORE_OK:
		s->s_store_leased = 1;
		break;
	case WSG_STORE_RATE:
		session_refuse_rate(s, "rate_connections", retry);
		return;
	case WSG_STORE_CONCURRENT:
		session_refuse_rate(s, "rate_concurrent", retry);
		return;
	default:
		/* A reload may have dropped the store this worker still uses. */
		if (sc != NULL && sc->sc_on_failure == WSG_STORE_FAIL_DENY) {
			log_info("conn %llu: refused: store_unavailable: the "
			    "rate-limit store did not answer (on_failure: "
			    "deny)", (unsigned long long)s->s_id);
			session_refuse(s, 503, "store_unavailable",
			    "Retry-After: 1\r\n");
			return;
		}
		if ((sc == NULL || sc->sc_on_failure == WSG_STORE_FAIL_LOCAL) &&
		    session_rate_local(s) == -1)
			return;
		if (sc != NULL)
			session_store_adopt(s);
		break;
	}
	/* The head is still buffered, untouched: judge the rest of it. */
	in = bufferevent_get_input(s->s_client.p_bev);
	len = evbuffer_get_length(in);
	if ((buf = (const char *)evbuffer_pullup(in, len)) == NULL ||
	    http_request_parse(buf, len, s->s_listener->lc_max_header_bytes,
	    &req) != WSG_HTTP_OK) {
		session_refuse_internal(s, "cannot read the request head "
		    "again");
		return;
	}
	session_admit_rest(s, &req);
}

/*
 * connections_per_ip and concurrent_per_ip: in the shared store when one
 * is configured (asynchronously: 1, the session waits in ADMITTING), else
 * in this process.  Returns 0 to go on now, 1 when the store will call
 * back, -1 when the session was refused.
 */
static int
session_rate_admit(struct wsg_session *s)
{
	const struct wsg_policy	*pol = s->s_route->rt_policy;
	const struct wsg_ratelimit_conf *rc = pol->pol_rate;
	char			 addr[WSG_RL_ADDRKEY_MAX];

	if (rc == NULL || (rc->rc_connections.rl_rate.r_amount == 0 &&
	    rc->rc_concurrent == 0))
		return (0);
	if (rlkey_make(&s->s_rlkey, pol->pol_name,
	    (struct sockaddr *)&s->s_addr, rc->rc_ipv6_prefix) == -1)
		return (0);
	if (s->s_worker->w_store == NULL || s->s_conf->c_store == NULL)
		return (session_rate_local(s));
	if (rlkey_addr(&s->s_rlkey, addr, sizeof(addr)) == -1 ||
	    store_admit(s->s_worker->w_store, pol->pol_name, addr, rc,
	    s->s_id, session_store_cb, s) == -1) {
		/* No request made: apply on_failure now, as the store would. */
		s->s_state = WSG_S_ADMITTING;
		session_store_cb(s, WSG_STORE_DOWN, 0);
		return (1);
	}
	s->s_store_pending = 1;
	s->s_state = WSG_S_ADMITTING;
	return (1);
}

/* Judge a complete request head: refuse it or start the upstream half. */
static void
session_handle_request(struct wsg_session *s, struct wsg_http_request *req,
    size_t buffered)
{
	const struct wsg_listener_conf	*lc = s->s_listener;
	struct wsg_verdict		 v;
	int				 r;

	/* The head is read: the route's policy limits the address now. */
	session_pending_release(s);
	/* Every refusal from here on is logged with the client's address. */
	session_identify(s, req);
	s->s_path = session_strdup(req->path);
	s->s_origin = session_strdup(req->origin);
	s->s_host = session_strdup(req->host);
	if (s->s_path == NULL || (req->origin.p && s->s_origin == NULL) ||
	    s->s_host == NULL) {
		session_refuse_internal(s, "out of memory copying the request");
		return;
	}
	if (buffered > req->head_len) {
		/* A client must wait for the 101 before sending anything. */
		log_info("conn %llu: refused: bad_request: %zu bytes after "
		    "the request head", (unsigned long long)s->s_id,
		    buffered - req->head_len);
		session_refuse(s, 400, "bad_request", NULL);
		return;
	}
	s->s_route = config_route_match(lc, req->path.p, req->path.len);
	if (s->s_route == NULL) {
		log_info("conn %llu: refused: no_route: no route for %.256s",
		    (unsigned long long)s->s_id, s->s_path);
		session_refuse(s, 404, "no_route", NULL);
		return;
	}
	if (policy_check(s, req, &v) == -1) {
		if (v.v_status == 500) {	/* out of memory, not policy */
			session_refuse_internal(s, v.v_detail);
			return;
		}
		log_info("conn %llu: refused: %s: %s",
		    (unsigned long long)s->s_id, v.v_reason, v.v_detail);
		session_refuse(s, v.v_status, v.v_reason, v.v_header);
		return;
	}
	r = session_filter_protocols(s, req);
	if (r == -1) {
		log_info("conn %llu: refused: subprotocol_denied: no offered "
		    "subprotocol is allowed", (unsigned long long)s->s_id);
		session_refuse(s, 400, "subprotocol_denied", NULL);
		return;
	} else if (r == -2) {
		session_refuse_internal(s, "out of memory copying the "
		    "subprotocols");
		return;
	}
	if (session_rate_admit(s) != 0)
		return;
	session_admit_rest(s, req);
}

/* Past the policy and rate checks: the process-wide cap, then upstream. */
static void
session_admit_rest(struct wsg_session *s, struct wsg_http_request *req)
{
	/* Take a slot first, then look: two workers never share the last. */
	if (__atomic_add_fetch(&session_admitted, 1, __ATOMIC_RELAXED) >
	    s->s_conf->c_max_connections && s->s_conf->c_max_connections > 0) {
		__atomic_sub_fetch(&session_admitted, 1, __ATOMIC_RELAXED);
		log_warnx("conn %llu: refused: overloaded: max_connections "
		    "(%llu) reached",
		    (unsigned long long)s->s_id,
		    (unsigned long long)s->s_conf->c_max_connections);
		session_refuse(s, 503, "overloaded", "Retry-After: 1\r\n");
		return;
	}
	s->s_admitted = 1;
	if (http_accept_key(req->key.p, req->key.len,
	    s->s_client_accept) == -1) {
		session_refuse_internal(s, "cannot compute "
		    "Sec-WebSocket-Accept");
		return;
	}
	if (upstream_build_request(s, req) == -1) {
		session_refuse_internal(s, "cannot build the upstream request");
		return;
	}
	evbuffer_drain(bufferevent_get_input(s->s_client.p_bev),
	    req->head_len);
	s->s_client.p_bytes += req->head_len;
	s->s_state = WSG_S_UPSTREAM;
	upstream_connect(s);
}

/* Client bytes before the session is open: the request head, or refusal. */
static void
session_client_read(struct wsg_peer *p, struct bufferevent *bev)
{
	struct wsg_session		*s = p->p_session;
	struct evbuffer			*in = bufferevent_get_input(bev);
	struct wsg_http_request		 req;
	enum wsg_http_result		 r;
	size_t				 len, max, n;
	const char			*buf;

	len = evbuffer_get_length(in);
	if (s->s_state == WSG_S_CLOSED) {
		/* Lingering: discard whatever the client still sends. */
		evbuffer_drain(in, len);
		return;
	}
	if (s->s_state == WSG_S_UPSTREAM || s->s_state == WSG_S_ADMITTING) {
		log_info("conn %llu: refused: bad_request: client sent data "
		    "before the 101",
		    (unsigned long long)s->s_id);
		session_refuse(s, 400, "bad_request", NULL);
		return;
	}
	/*
	 * Parse again once an empty line may have come: CRLF CRLF, or one
	 * with a bare LF (typed lines), which the parser refuses at once
	 * rather than the head waiting for its timeout.
	 */
	max = s->s_listener->lc_max_header_bytes;
	if (len < max && len < s->s_parsed_len + WSG_REPARSE_STEP &&
	    evbuffer_search(in, "\n\r\n", 3, NULL).pos == -1 &&
	    evbuffer_search(in, "\n\n", 2, NULL).pos == -1)
		return;
	s->s_parsed_len = len;
	n = len > max + 1 ? max + 1 : len;
	if ((buf = (const char *)evbuffer_pullup(in, n)) == NULL) {
		session_refuse_internal(s, "out of memory reading the request "
		    "head");
		return;
	}
	r = http_request_parse(buf, n, max, &req);
	if (r == WSG_HTTP_INCOMPLETE) {
		/* max bytes and no end: the end would be past max. */
		if (len >= max) {
			log_info("conn %llu: refused: headers_too_large: no "
			    "end of the head in max_header_bytes (%zu)",
			    (unsigned long long)s->s_id, max);
			session_refuse(s, 431, "headers_too_large", NULL);
		}
		return;
	}
	if (r != WSG_HTTP_OK) {
		log_info("conn %llu: refused: %s%s%s",
		    (unsigned long long)s->s_id, http_result_reason(r),
		    req.error ? ": " : "", req.error ? req.error : "");
		if (r != WSG_HTTP_TOO_LARGE) {
			s->s_path = session_strdup(req.path);
			s->s_origin = session_strdup(req.origin);
		}
		/* A whole head, wrong in meaning: its X-Forwarded-For counts. */
		if (req.head_len != 0)
			session_identify(s, &req);
		/* A 405 names the methods there are (RFC 9110 15.5.6). */
		session_refuse_answer(s, http_result_status(r),
		    http_result_reason(r),
		    r == WSG_HTTP_BAD_VERSION ? "Sec-WebSocket-Version: 13\r\n" :
		    r == WSG_HTTP_BAD_METHOD ? "Allow: GET\r\n" : NULL, NULL,
		    req.method.len == 4 && memcmp(req.method.p, "HEAD", 4) == 0);
		return;
	}
	session_handle_request(s, &req, len);
}

static void
session_client_read_cb(struct bufferevent *bev, void *arg)
{
	struct wsg_peer	*p = arg;

	session_client_read(p, bev);
	/* The session (and p within it) is freed in a later turn only. */
	session_tls_kick(p);
}

/*
 * A refusal's bytes: the body is the reason code, and after it what the
 * client should do, if there is more to say than the code does.  The
 * answer to a HEAD has the same head and no body (RFC 9110 9.3.2).  One
 * write, all or nothing: -1 when there was no memory for it.
 */
static int
session_refusal_add(struct evbuffer *out, int status, const char *reason,
    const char *extra, const char *detail, int head_only)
{
	size_t	len;

	len = strlen(reason) + (detail ? 2 + strlen(detail) : 0) + 1;
	return (evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n"
	    "Connection: close\r\n"
	    "Content-Type: text/plain\r\n"
	    "Content-Length: %zu\r\n"
	    "%s\r\n%s%s%s%s", status, http_status_text(status), len,
	    extra ? extra : "", head_only ? "" : reason,
	    head_only || detail == NULL ? "" : ": ",
	    head_only || detail == NULL ? "" : detail,
	    head_only ? "" : "\n") == -1 ? -1 : 0);
}

/* Answer the client with a refusal and close. */
static void
session_refuse_answer(struct wsg_session *s, int status, const char *reason,
    const char *extra, const char *detail, int head_only)
{
	if (s->s_state == WSG_S_CLOSED)
		return;
	/* session_close() counts what the client sent. */
	if (s->s_client.p_bev != NULL && session_refusal_add(
	    bufferevent_get_output(s->s_client.p_bev), status, reason, extra,
	    detail, head_only) == 0)
		s->s_status = status;	/* no memory, no answer logged */
	session_close(s, reason);
}

void
session_refuse(struct wsg_session *s, int status, const char *reason,
    const char *extra)
{
	session_refuse_answer(s, status, reason, extra, NULL, 0);
}

void
session_refuse_internal(struct wsg_session *s, const char *why)
{
	if (s->s_state == WSG_S_CLOSED)
		return;
	log_warnx("conn %llu: refused: internal_error: %s",
	    (unsigned long long)s->s_id, why);
	session_refuse(s, 500, "internal_error", NULL);
}

/* The token's exp passed while the session was open. */
static void
session_expiry_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct wsg_session	*s = arg;

	log_info("conn %llu: token_expired: token expired",
	    (unsigned long long)s->s_id);
	session_fail(s, "token_expired", 1008, 1008, 1001);
}

/*
 * With on_expiry: close, close the session when its token expires.
 * -1 when the timer cannot be made: the session must not open without it.
 */
static int
session_expiry_arm(struct wsg_session *s)
{
	const struct wsg_policy	*pol = s->s_route->rt_policy;
	struct timeval		 tv;
	struct timespec		 ts;
	int64_t			 exp;
	long			 us;

	if (s->s_claims == NULL || !pol->pol_expiry_close ||
	    (exp = jwt_claims_exp(s->s_claims)) == 0)
		return (0);
	exp += pol->pol_jwt->jp_leeway;
	/*
	 * To the microsecond: the handshake check refuses the token from
	 * the first instant of second exp, so the session ends right then,
	 * not up to a second later.
	 */
	clock_gettime(CLOCK_REALTIME, &ts);
	if ((s->s_expiry = evtimer_new(s->s_worker->w_base, session_expiry_cb,
	    s)) == NULL)
		return (-1);
	tv.tv_sec = 0;
	tv.tv_usec = 0;
	if (exp > (int64_t)ts.tv_sec) {
		tv.tv_sec = exp - (int64_t)ts.tv_sec;
		if ((us = ts.tv_nsec / 1000) > 0) {
			tv.tv_sec--;
			tv.tv_usec = 1000000 - us;
		}
	}
	evtimer_add(s->s_expiry, &tv);
	return (0);
}

void
session_open(struct wsg_session *s, const char *protocol,
    struct evbuffer *fields)
{
	struct evbuffer	*msg;
	int		 bad = 0;

	/* Armed first: a session whose token could outlive it is refused. */
	if (session_expiry_arm(s) == -1) {
		session_refuse_internal(s, "no memory for the expiry timer");
		return;
	}
	/*
	 * Made aside and moved whole: a buffer that cannot grow leaves the
	 * client all of the 101 or none of it.  The gateway's own fields
	 * come first, then the upstream's end-to-end ones.
	 */
	if ((msg = evbuffer_new()) == NULL) {
		session_refuse_internal(s, "out of memory writing the 101");
		return;
	}
	bad |= evbuffer_add_printf(msg, "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n%s%s%s", s->s_client_accept,
	    protocol != NULL ? "Sec-WebSocket-Protocol: " : "",
	    protocol != NULL ? protocol : "",
	    protocol != NULL ? "\r\n" : "") == -1;
	if (fields != NULL)
		bad |= evbuffer_add_buffer(msg, fields) == -1;
	bad |= evbuffer_add(msg, "\r\n", 2) == -1;
	if (bad || evbuffer_add_buffer(bufferevent_get_output(
	    s->s_client.p_bev), msg) == -1) {
		evbuffer_free(msg);
		session_refuse_internal(s, "out of memory writing the 101");
		return;
	}
	evbuffer_free(msg);
	s->s_status = 101;
	s->s_state = WSG_S_OPEN;
	metrics_handshake(1, NULL, session_elapsed(s));
	metrics_active(1);
	evbuffer_free(s->s_upreq);
	s->s_upreq = NULL;
	s->s_last_active = session_now_ms(s);
	evtimer_del(s->s_timer);
	session_timer_set(s, s->s_route->rt_policy->pol_idle_timeout_ms);
	log_debug("conn %llu: upgraded to %s", (unsigned long long)s->s_id,
	    s->s_server->srv_name);
	relay_start(&s->s_client, &s->s_upstream);
}

void
session_fail(struct wsg_session *s, const char *reason, int log_code,
    int to_client, int to_upstream)
{
	if (s->s_state == WSG_S_CLOSED)
		return;
	if (s->s_state == WSG_S_OPEN) {
		if (to_client)
			relay_send_close(&s->s_client, to_client, reason);
		if (to_upstream)
			relay_send_close(&s->s_upstream, to_upstream, reason);
	}
	if (s->s_close_code == 0)
		s->s_close_code = log_code;
	session_close(s, reason);
}

void
session_shutdown(struct wsg_session *s)
{
	if (s->s_state == WSG_S_CLOSED)
		return;
	/* Debug only: a drain would log every open session. */
	log_debug("conn %llu: shutdown: the gateway is shutting down",
	    (unsigned long long)s->s_id);
	if (s->s_state == WSG_S_OPEN)
		session_fail(s, "shutdown", 1001, 1001, 1001);
	else
		session_refuse(s, 503, "shutdown", NULL);
}

void
session_close_relayed(struct wsg_session *s)
{
	/* A drain closes the session soon anyway; its timer stays. */
	if (s->s_state != WSG_S_OPEN || s->s_draining)
		return;
	evtimer_del(s->s_timer);
	session_timer_set(s, WSG_CLOSE_POLL_MS);
}

/*
 * A close frame was relayed and not answered: once it has left the
 * gateway, the other side may go WSG_CLOSE_WAIT_MS without sending
 * anything, then the session ends as the first side asked (HAProxy's
 * timeout client-fin).  A side still finishing a message before its
 * answer (RFC 6455 5.5.1) is not cut off.  Returns 1 when the session was
 * closed.
 */
static int
session_close_waited(struct wsg_session *s, uint64_t now)
{
	struct wsg_peer	*p = s->s_close_first, *o;

	if (p == NULL)
		return (0);
	o = p->p_other;
	if (s->s_close_out == 0) {
		if (o->p_bev == NULL || evbuffer_get_length(
		    bufferevent_get_output(o->p_bev)) > 0 ||
		    (o->p_tls13 != NULL && tls13_write_pending(o->p_tls13)))
			return (0);
		s->s_close_out = now > 0 ? now : 1;
	}
	/* Only the other side can be active now: see relay_move(). */
	if (now - (s->s_last_active > s->s_close_out ? s->s_last_active :
	    s->s_close_out) < WSG_CLOSE_WAIT_MS)
		return (0);
	log_info("conn %llu: %s did not answer the close frame",
	    (unsigned long long)s->s_id, o->p_name);
	s->s_close_code = p->p_close_code;
	/*
	 * As when the other side hangs up on it (relay_event_cb()): the
	 * side that closed first gets the answer it is owed, its own code.
	 */
	relay_send_close(p, p->p_close_code == 1005 ? 1000 : p->p_close_code,
	    NULL);
	session_close(s, p->p_is_client ? "client_closed" : "upstream_closed");
	return (1);
}

void
session_drain(struct wsg_session *s, uint64_t ms)
{
	if (s->s_state != WSG_S_OPEN || ms == 0) {
		session_shutdown(s);
		return;
	}
	s->s_draining = 1;
	evtimer_del(s->s_timer);
	session_timer_set(s, ms);
}

/* Write the session's one access-log line. */
static void
session_log_access(struct wsg_session *s)
{
	struct evbuffer		*b;
	struct timespec		 now;
	struct timeval		 tv;
	struct tm		 tm;
	char			 ts[40];
	uint64_t		 ms;
	const char		*str;
	int			 bad = 0;

	if (s->s_logged || (b = evbuffer_new()) == NULL)
		return;
	s->s_logged = 1;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (uint64_t)(now.tv_sec - s->s_start.tv_sec) * 1000 +
	    (now.tv_nsec - s->s_start.tv_nsec) / 1000000;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	bad |= evbuffer_add_printf(b, "{\"time\":\"%s.%03ldZ\",\"id\":%llu,"
	    "\"client\":", ts, (long)tv.tv_usec / 1000,
	    (unsigned long long)s->s_id) == -1;
	bad |= log_json_str(b, s->s_client_ip, strlen(s->s_client_ip)) == -1;
	if (s->s_client_port)
		bad |= evbuffer_add_printf(b,
		    ",\"client_port\":%d,\"listener\":",
		    s->s_client_port) == -1;
	else
		bad |= evbuffer_add_printf(b,
		    ",\"client_port\":null,\"listener\":") == -1;
	str = s->s_listener->lc_name;
	bad |= log_json_str(b, str, strlen(str)) == -1;
	bad |= evbuffer_add_printf(b, ",\"route\":") == -1;
	str = s->s_route ? s->s_route->rt_path : NULL;
	bad |= log_json_str(b, str, str ? strlen(str) : 0) == -1;
	bad |= evbuffer_add_printf(b, ",\"path\":") == -1;
	bad |= log_json_str(b, s->s_path,
	    s->s_path ? strlen(s->s_path) : 0) == -1;
	bad |= evbuffer_add_printf(b, ",\"upstream\":") == -1;
	str = s->s_route ? s->s_route->rt_upstream->up_name : NULL;
	bad |= log_json_str(b, str, str ? strlen(str) : 0) == -1;
	bad |= evbuffer_add_printf(b, ",\"upstream_server\":") == -1;
	str = s->s_server ? s->s_server->srv_name : NULL;
	bad |= log_json_str(b, str, str ? strlen(str) : 0) == -1;
	bad |= evbuffer_add_printf(b, ",\"origin\":") == -1;
	bad |= log_json_str(b, s->s_origin,
	    s->s_origin ? strlen(s->s_origin) : 0) == -1;
	bad |= evbuffer_add_printf(b, ",\"user\":") == -1;
	bad |= log_json_str(b, s->s_user,
	    s->s_user ? strlen(s->s_user) : 0) == -1;
	bad |= evbuffer_add_printf(b, ",\"country\":") == -1;
	bad |= log_json_str(b, s->s_country[0] ? s->s_country : NULL,
	    strlen(s->s_country)) == -1;
	bad |= evbuffer_add_printf(b, ",\"tls_subject\":") == -1;
	bad |= log_json_str(b, s->s_tls_subject, s->s_tls_subject ?
	    strlen(s->s_tls_subject) : 0) == -1;
	bad |= evbuffer_add_printf(b, ",\"status\":") == -1;
	if (s->s_status)
		bad |= evbuffer_add_printf(b, "%d", s->s_status) == -1;
	else
		bad |= evbuffer_add(b, "null", 4) == -1;
	bad |= evbuffer_add_printf(b, ",\"reason\":\"%s\",\"close_code\":",
	    s->s_reason) == -1;
	if (s->s_close_code)
		bad |= evbuffer_add_printf(b, "%d", s->s_close_code) == -1;
	else
		bad |= evbuffer_add(b, "null", 4) == -1;
	bad |= evbuffer_add_printf(b, ",\"subprotocol\":") == -1;
	bad |= log_json_str(b, s->s_subprotocol, s->s_subprotocol ?
	    strlen(s->s_subprotocol) : 0) == -1;
	bad |= evbuffer_add_printf(b, ",\"duration_ms\":%llu,"
	    "\"frames_in\":%llu,\"frames_out\":%llu,\"bytes_in\":%llu,"
	    "\"bytes_out\":%llu}\n",
	    (unsigned long long)ms, (unsigned long long)s->s_client.p_frames,
	    (unsigned long long)s->s_upstream.p_frames,
	    (unsigned long long)s->s_client.p_bytes,
	    (unsigned long long)s->s_upstream.p_bytes) == -1;
	/* A line an allocation failed to complete would be torn JSON. */
	if (bad)
		log_warnx("conn %llu: access-log line lost: out of memory",
		    (unsigned long long)s->s_id);
	else
		log_access(b);
	evbuffer_free(b);
}

/* Free the session itself, once both halves are gone. */
static void
session_free(struct wsg_session *s)
{
	struct wsg_worker	*w = s->s_worker;
	size_t			 i;

	upstream_release(s);
	/* A streamed frame's end was still awaited (session_finished()). */
	if (s->s_state == WSG_S_CLOSED)
		session_log_access(s);
	for (i = 0; i < 2; i++) {
		struct wsg_peer *p = i == 0 ? &s->s_client : &s->s_upstream;

		if (p->p_ssl != NULL)
			SSL_free(p->p_ssl);
		tls13_free(p->p_tls13);
		if (p->p_fd != -1)
			close(p->p_fd);
	}
	if (s->s_free_ev != NULL)
		event_free(s->s_free_ev);
	if (s->s_rlkey.k_tracked)
		rltable_release(server_rltable(), &s->s_rlkey,
		    ratelimit_now_ms());
	session_pending_release(s);
	if (s->s_store_leased && s->s_worker->w_store != NULL)
		store_release(s->s_worker->w_store, s->s_id);
	if (s->s_admitted)
		__atomic_sub_fetch(&session_admitted, 1, __ATOMIC_RELAXED);
	if (s->s_timer != NULL)
		event_free(s->s_timer);
	if (s->s_expiry != NULL)
		event_free(s->s_expiry);
	if (s->s_claims != NULL)
		jwt_claims_free(s->s_claims);
	free(s->s_user);
	free(s->s_tls_subject);
	if (s->s_upreq != NULL)
		evbuffer_free(s->s_upreq);
	for (i = 0; i < s->s_nprotocols; i++)
		free(s->s_protocols[i]);
	free(s->s_protocols);
	free(s->s_origin);
	free(s->s_path);
	free(s->s_host);
	free(s->s_subprotocol);
	TAILQ_REMOVE(&w->w_sessions, s, s_entry);
	w->w_nsessions--;
	metrics_worker_conn(w->w_index, -1);
	config_unref(s->s_conf);
	free(s);
	server_session_gone(w);
}

/* Deferred free: runs from the event loop, after every queued callback. */
static void
session_free_cb(evutil_socket_t fd, short ev, void *arg)
{
	session_free(arg);
}

void
session_peer_free(struct wsg_peer *p)
{
	struct wsg_session	*s = p->p_session;

	if (p->p_gone_ev != NULL) {
		event_free(p->p_gone_ev);
		p->p_gone_ev = NULL;
	}
	/* A held message's match still going on ends here. */
	if (p->p_match != NULL) {
		event_free(p->p_match->m_ev);
		free(p->p_match);
		p->p_match = NULL;
	}
	p->p_matching = 0;
	if (p->p_bev != NULL) {
		bufferevent_free(p->p_bev);
		p->p_bev = NULL;
	}
	if (p->p_text != NULL) {
		evbuffer_free(p->p_text);
		p->p_text = NULL;
	}
	/* The rest of a frame it streamed will not come: no close after it. */
	if (p->p_other->p_close_due) {
		p->p_other->p_close_due = 0;
		session_peer_flushed(p->p_other);
	}
	p->p_close_due = 0;
	session_finished(s);
	if (s->s_client.p_bev == NULL && s->s_upstream.p_bev == NULL &&
	    !s->s_freeing) {
		s->s_freeing = 1;
		evtimer_del(s->s_timer);
		/* Made at accept, so freeing never needs an allocation. */
		event_active(s->s_free_ev, EV_TIMEOUT, 0);
	}
}

/* Output flushed: say goodbye cleanly (TLS close_notify, FIN), linger. */
static void
session_peer_flushed(struct wsg_peer *p)
{
	SSL	*ssl;
	int	 fd;

	/* Not while a frame streamed to it has still to end (relay_finish). */
	if (p->p_bev == NULL || p->p_close_due)
		return;
	if (evbuffer_get_length(bufferevent_get_output(p->p_bev)) > 0)
		return;
	fd = bufferevent_getfd(p->p_bev);
	if (p->p_tls13 != NULL) {
		/* Our record layer's writer has not sent it all yet. */
		if (tls13_write_pending(p->p_tls13))
			return;
		tls13_close_notify(p->p_tls13, fd);
	} else if ((ssl = bufferevent_openssl_get_ssl(p->p_bev)) != NULL &&
	    SSL_is_init_finished(ssl))
		SSL_shutdown(ssl);
	if (fd != -1)
		shutdown(fd, SHUT_WR);
	bufferevent_disable(p->p_bev, EV_WRITE);
	/* Unless that was read before (relay_half_closed()). */
	if (p->p_rd_ended) {
		session_peer_free(p);
		return;
	}
	/* The peer's EOF (or the linger timer) frees it. */
	if (!(bufferevent_get_enabled(p->p_bev) & EV_READ)) {
		bufferevent_enable(p->p_bev, EV_READ);
		session_tls_kick(p);
	}
}

/*
 * A closed session's half may now write its last bytes; or, drained with
 * a streamed frame still to end, take more of it (relay_finish()).
 */
static void
session_linger_write_cb(struct bufferevent *bev, void *arg)
{
	struct wsg_peer	*p = arg, *o = p->p_other;

	if (p->p_close_due && o->p_bev != NULL) {
		bufferevent_enable(o->p_bev, EV_READ);
		session_linger_read_cb(o->p_bev, o);
	}
	session_peer_flushed(p);
}

/*
 * With read-ahead (tls.c), one read(2) can bring several TLS records, and
 * OpenSSL keeps those it has not yet been asked for.  libevent's TLS
 * bufferevent only reads when the socket is readable, and reads no further
 * than the record it decrypted: what OpenSSL holds would wait for the
 * client's next bytes.  Activating the bufferevent's own read event runs
 * its normal read path in the next turn; if reading is disabled or
 * suspended, that path reads nothing, and this is called again when it is
 * enabled.  Once the session is open, the relay's own TLS reader takes
 * every record held at once, and needs this only when it stopped early
 * (its per-turn limit, or the far side full).
 */
void
session_tls_kick(struct wsg_peer *p)
{
	struct bufferevent	*bev = p->p_bev;

	if (bev != NULL && p->p_ssl != NULL && SSL_has_pending(p->p_ssl) &&
	    (bufferevent_get_enabled(bev) & EV_READ))
		event_active(&bev->ev_read, EV_READ, 1);
}

/*
 * The peer sent close_notify: ours goes back before the connection closes
 * (RFC 5246 7.2.1, RFC 8446 6.1), not a bare FIN a client waiting for it
 * takes for a truncation.  What is still queued for the peer is dropped,
 * as both allow.  Not while OpenSSL has a record half written, which the
 * alert cannot go before (relay_tls_write()).
 */
void
session_tls_answer_close(struct wsg_peer *p)
{
	SSL	*ssl = p->p_ssl;

	if (p->p_bev == NULL)
		return;
	if (p->p_tls13 != NULL)
		tls13_answer_close(p->p_tls13, bufferevent_getfd(p->p_bev));
	else if (ssl != NULL && p->p_tls_retry == 0 &&
	    (SSL_get_shutdown(ssl) & (SSL_RECEIVED_SHUTDOWN |
	    SSL_SENT_SHUTDOWN)) == SSL_RECEIVED_SHUTDOWN) {
		(void)SSL_shutdown(ssl);
		ERR_clear_error();
	}
}

/*
 * Has a closing peer been sent all we owe it?  Not while our buffers hold
 * some of it, nor while the kernel does (the peer has not taken it): a
 * close() with unread input resets the connection, and the kernel throws
 * away what it still had to send, the close frame last of all.
 */
static int
session_peer_sent(struct wsg_peer *p)
{
	int	fd, n = 0;

	if (evbuffer_get_length(bufferevent_get_output(p->p_bev)) > 0 ||
	    (p->p_tls13 != NULL && tls13_write_pending(p->p_tls13)))
		return (0);
	fd = bufferevent_getfd(p->p_bev);
	return (fd == -1 || ioctl(fd, SIOCOUTQ, &n) == -1 || n == 0);
}

/*
 * Lingering: throw away what a closing peer still sends, so that closing
 * does not reset the connection under our last bytes; but only so much
 * once it has all we sent, or a peer that keeps sending would keep us
 * reading.  Until then the linger timer bounds it.
 */
static void
session_linger_read_cb(struct bufferevent *bev, void *arg)
{
	struct wsg_peer	*p = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);

	if (relay_finish(p)) {
		session_tls_kick(p);
		return;
	}
	p->p_discarded += evbuffer_get_length(in);
	evbuffer_drain(in, evbuffer_get_length(in));
	if (p->p_discarded > WSG_LINGER_MAX_DISCARD && !p->p_close_due &&
	    session_peer_sent(p))
		session_peer_free(p);
	else
		session_tls_kick(p);
}

/* Start closing one half: flush what is queued, then shut it down. */
static void
session_peer_close(struct wsg_peer *p)
{
	if (p->p_bev == NULL)
		return;
	if (p->p_gone_ev != NULL)
		event_del(p->p_gone_ev);
	bufferevent_setcb(p->p_bev, session_linger_read_cb,
	    session_linger_write_cb, session_event_cb, p);
	bufferevent_setwatermark(p->p_bev, EV_READ, 0, 0);
	bufferevent_setwatermark(p->p_bev, EV_WRITE, 0, 0);
	/*
	 * A client refused before the upgrade is not read until its answer
	 * is out (session_peer_flushed()): its EOF, close_notify or FIN,
	 * perhaps sent with its request, would end the connection with the
	 * answer still queued.  The linger timer bounds the wait.  A half
	 * whose end was read (relay_half_closed()) is not read again.
	 */
	if (p->p_rd_ended ||
	    (p->p_is_client && p->p_session->s_status != 101)) {
		bufferevent_disable(p->p_bev, EV_READ);
		bufferevent_enable(p->p_bev, EV_WRITE);
	} else
		bufferevent_enable(p->p_bev, EV_READ | EV_WRITE);
	p->p_discarded = 0;
	/* The rest of a frame streamed to the other side still goes there. */
	if (!relay_finish(p)) {
		p->p_discarded = evbuffer_get_length(
		    bufferevent_get_input(p->p_bev));
		evbuffer_drain(bufferevent_get_input(p->p_bev),
		    p->p_discarded);
	}
	session_tls_kick(p);
	session_peer_flushed(p);
}

/*
 * What the client sent before the session opened counts in bytes_in,
 * refused, timed out or dropped: the head (drained only on admission) and
 * anything after it.  Left in place, as a request may still point into
 * it; the closed session discards the rest without counting.  Once open,
 * so does what came of a frame either side had begun (relay_count_cut()).
 */
static void
session_count_unread(struct wsg_session *s)
{
	if (s->s_state == WSG_S_OPEN) {
		relay_count_cut(&s->s_client);
		relay_count_cut(&s->s_upstream);
	} else if (s->s_state != WSG_S_CLOSED &&
	    s->s_client.p_bev != NULL)
		s->s_client.p_bytes += evbuffer_get_length(
		    bufferevent_get_input(s->s_client.p_bev));
}

void
session_close(struct wsg_session *s, const char *reason)
{
	if (s->s_state == WSG_S_CLOSED)
		return;
	session_count_unread(s);
	if (s->s_state == WSG_S_OPEN) {
		metrics_close(reason);
		metrics_active(-1);
	} else
		metrics_handshake(0, reason, session_elapsed(s));
	s->s_state = WSG_S_CLOSED;
	s->s_reason = reason;
	s->s_closed_at = session_now_ms(s);
	session_pending_release(s);
	if (s->s_proxy_ev != NULL) {
		event_free(s->s_proxy_ev);
		s->s_proxy_ev = NULL;
	}
	if (s->s_fd != -1) {
		close(s->s_fd);
		s->s_fd = -1;
	}
	if (s->s_expiry != NULL)
		evtimer_del(s->s_expiry);
	if (s->s_store_pending) {
		store_cancel(s->s_worker->w_store, s->s_id);
		s->s_store_pending = 0;
	}
	/* least_conn counts open sessions, not the linger after them. */
	upstream_release(s);
	log_debug("conn %llu: closed: %s", (unsigned long long)s->s_id,
	    reason);
	evtimer_del(s->s_timer);
	session_timer_set(s, WSG_LINGER_MS);
	session_peer_close(&s->s_client);
	session_peer_close(&s->s_upstream);
	session_finished(s);
	if (s->s_client.p_bev == NULL && s->s_upstream.p_bev == NULL)
		session_peer_free(&s->s_client);
}

/*
 * A closed session's access-log line, once no streamed frame is still
 * being finished toward either side (relay_finish()): its bytes count.
 */
void
session_finished(struct wsg_session *s)
{
	if (s->s_state == WSG_S_CLOSED && !s->s_client.p_close_due &&
	    !s->s_upstream.p_close_due)
		session_log_access(s);
}

/*
 * The client spoke plaintext HTTP to a TLS listener (http:// or ws:// for
 * https:// or wss://): session_hello_cb() saw a request line come, or
 * OpenSSL refused one before sending anything.  As nginx does, the client
 * is told in plaintext, as a 400 bad_request, so that its user sees what
 * went wrong rather than a cut connection.  The TLS bufferevent, if there
 * is one, cannot carry the answer: a plain bufferevent takes the socket
 * over to send it and to close as any refusal does, reading nothing until
 * it is out (session_peer_close()).  The fd and the SSL are the peer's,
 * released in session_free().  What was read of the request counts in
 * bytes_in: what OpenSSL read, or here a bounded read of what has come.
 * Of the methods in use, only HEAD starts with an H.
 */
static void
session_refuse_plain_http(struct wsg_session *s, struct wsg_peer *p)
{
	char	 buf[WSG_PLAIN_HTTP_READ];
	BIO	*rbio;
	ssize_t	 n;

	log_info("conn %llu: refused: bad_request: a plaintext HTTP request "
	    "came to TLS listener %s", (unsigned long long)s->s_id,
	    s->s_listener->lc_name);
	if (p->p_bev != NULL) {
		if (p->p_ssl != NULL &&
		    (rbio = SSL_get_rbio(p->p_ssl)) != NULL)
			p->p_bytes += BIO_number_read(rbio);
		bufferevent_free(p->p_bev);
	} else {
		p->p_fd = s->s_fd;
		s->s_fd = -1;
		if ((n = recv(p->p_fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
			p->p_bytes += n;
	}
	if ((p->p_bev = bufferevent_socket_new(s->s_worker->w_base, p->p_fd,
	    0)) == NULL || session_refusal_add(bufferevent_get_output(
	    p->p_bev), 400, "bad_request", NULL,
	    "this port speaks TLS: use wss:// or https://",
	    s->s_first_byte == 'H') == -1)
		log_warnx("conn %llu: no memory to answer its plaintext "
		    "request", (unsigned long long)s->s_id);
	else
		s->s_status = 400;
	session_close(s, "bad_request");
}

/* EOF and errors: the client before the upgrade, either half once closed. */
void
session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct wsg_peer		*p = arg;
	struct wsg_session	*s = p->p_session;
	unsigned long		 e;
	long			 vr;
	char			 why[32];
	int			 local, err = errno;

	if (s->s_state == WSG_S_CLOSED) {
		if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
			session_tls_answer_close(p);
			session_peer_free(p);
		}
		return;
	}
	if (what & BEV_EVENT_CONNECTED) {
		/*
		 * libevent's TLS bufferevent registers its write event as the
		 * handshake ends, with nothing to write: epoll would wake us
		 * for a writable socket only for libevent to remove the event
		 * again, two epoll_ctl calls and a loop turn per connection.
		 * Removed now, the event base's change list folds both into
		 * nothing; queuing output adds it again, as it does for every
		 * write that starts from an empty buffer.
		 */
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			event_del(&bev->ev_write);
		if (p->p_ssl != NULL)
			metrics_tls_handshake(SSL_session_reused(p->p_ssl));
		if (p == &s->s_client)
			session_tls_subject(s);
		/* The request may have come in the read that ended it. */
		session_tls_kick(p);
	}
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	e = session_tls_error(p, &local);
	if (e == 0 && (what & BEV_EVENT_ERROR) && err == ENOMEM) {
		/*
		 * Our input could not grow: the client is not to blame.  Its
		 * buffer stays, and session_close() counts what is in it.
		 */
		session_refuse_internal(s, "out of memory reading the request");
		return;
	}
	if (p == &s->s_client)
		session_count_unread(s);	/* before its buffer goes */
	if (local) {
		session_peer_free(p);
		session_tls_failed(s, e);
		return;
	}
	if (s->s_state == WSG_S_HANDSHAKE && e != 0 && p == &s->s_client &&
	    p->p_ssl != NULL && !SSL_is_init_finished(p->p_ssl) &&
	    tls_plain_http(e)) {
		session_refuse_plain_http(s, p);
		return;
	}
	if (s->s_state == WSG_S_HANDSHAKE && e != 0) {
		/* A client certificate refused: say why (expired, CA...). */
		vr = p->p_ssl != NULL ? SSL_get_verify_result(p->p_ssl) :
		    X509_V_OK;
		log_info("conn %llu: handshake_failed: TLS handshake failed: "
		    "%s%s%s", (unsigned long long)s->s_id, tls_reason(e, why,
		    sizeof(why)),
		    vr != X509_V_OK ? ": " : "", vr != X509_V_OK ?
		    X509_verify_cert_error_string(vr) : "");
		session_peer_free(p);
		session_close(s, "handshake_failed");
		return;
	}
	session_tls_answer_close(p);
	session_peer_free(p);
	/* Gone before its request was judged, or while we asked upstream. */
	if (s->s_state == WSG_S_HANDSHAKE) {
		log_info("conn %llu: handshake_failed: the client went away "
		    "before a complete request", (unsigned long long)s->s_id);
		session_close(s, "handshake_failed");
	} else {
		log_info("conn %llu: client_dropped: the client went away "
		    "before the upgrade", (unsigned long long)s->s_id);
		session_close(s, "client_dropped");
	}
}

unsigned long
session_tls_error(struct wsg_peer *p, int *local)
{
	unsigned long	e, first = 0, ssl = 0, mine = 0;
	int		r, i = 0;

	for (;;) {
		/* libevent's (handshake, request), then the relay's. */
		if (p->p_bev == NULL ||
		    (e = bufferevent_get_openssl_error(p->p_bev)) == 0) {
			if (i >= p->p_tls_nerr)
				break;
			e = p->p_tls_err[i++];
		}
		if (first == 0)
			first = e;
		/* TLS 1.2's record layer queues the provider's error first. */
		if (ssl == 0 && ERR_GET_LIB(e) == ERR_LIB_SSL)
			ssl = e;
		r = ERR_GET_REASON(e);
		if (mine == 0 && (r == ERR_GET_REASON(ERR_R_MALLOC_FAILURE) ||
		    r == ERR_GET_REASON(ERR_R_INTERNAL_ERROR)))
			mine = e;
	}
	p->p_tls_nerr = 0;
	*local = mine != 0;
	if (mine != 0)
		return (mine);
	return (ssl != 0 ? ssl : first);
}

void
session_tls_failed(struct wsg_session *s, unsigned long e)
{
	char	why[32];

	log_warnx("conn %llu: internal_error: TLS failed in the gateway: %s",
	    (unsigned long long)s->s_id, tls_reason(e, why, sizeof(why)));
	if (s->s_state == WSG_S_OPEN)
		session_fail(s, "internal_error", 1011, 0, 1011);
	else
		session_close(s, "internal_error");
}

/*
 * The linger time of a closed session ran out.  A half of an upgraded
 * session that is still taking what is queued for it, its close frame
 * last, lingers on, for at most the idle timeout after the close: a slow
 * reader gets its close code rather than a cut connection.  Any other
 * half is freed, as is one still owed the rest of a streamed frame.
 * Returns 1 while a half lingers on.
 */
static int
session_linger_on(struct wsg_session *s)
{
	struct wsg_peer	*p;
	uint64_t	 now = session_now_ms(s), ms = WSG_LINGER_MS;
	size_t		 left;
	int		 i, on = 0;

	for (i = 0; i < 2; i++) {
		p = i == 0 ? &s->s_client : &s->s_upstream;
		if (p->p_bev == NULL)
			continue;
		if (s->s_status != 101 || p->p_close_due ||
		    now - s->s_closed_at >=
		    s->s_route->rt_policy->pol_idle_timeout_ms ||
		    (evbuffer_get_length(bufferevent_get_output(p->p_bev)) ==
		    0 && (p->p_tls13 == NULL ||
		    !tls13_write_pending(p->p_tls13))) ||
		    (left = relay_backlog(p)) == 0 ||
		    (p->p_linger_owed != 0 && left >= p->p_linger_owed)) {
			session_peer_free(p);
			continue;
		}
		/* The first look: what it takes in a short while. */
		if (p->p_linger_owed == 0)
			ms = WSG_CLOSE_POLL_MS;
		p->p_linger_owed = left;
		on = 1;
	}
	if (on)
		session_timer_set(s, ms);
	return (on);
}

/* Handshake, upstream and idle timeouts, and the end of lingering. */
static void
session_timer_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct wsg_session	*s = arg;
	uint64_t		 idle, now, next;

	switch (s->s_state) {
	case WSG_S_HANDSHAKE:
	case WSG_S_ADMITTING:
		log_info("conn %llu: handshake_timeout: handshake timeout",
		    (unsigned long long)s->s_id);
		session_close(s, "handshake_timeout");
		break;
	case WSG_S_UPSTREAM:
		upstream_timed_out(s);
		break;
	case WSG_S_OPEN:
		if (s->s_draining) {
			session_shutdown(s);
			break;
		}
		idle = s->s_route->rt_policy->pol_idle_timeout_ms;
		now = session_now_ms(s);
		/*
		 * A side held back for a slow reader that reads is neither
		 * idle nor silent after a close frame.
		 */
		if (relay_paused_moving(s))
			s->s_last_active = now;
		if (session_close_waited(s, now))
			break;
		if (now - s->s_last_active >= idle) {
			log_info("conn %llu: idle_timeout: no frame either "
			    "way for %llu ms", (unsigned long long)s->s_id,
			    (unsigned long long)idle);
			session_fail(s, "idle_timeout", 1001, 1001, 1001);
			break;
		}
		next = idle - (now - s->s_last_active);
		if (s->s_close_first != NULL && next > WSG_CLOSE_POLL_MS)
			next = WSG_CLOSE_POLL_MS;
		session_timer_set(s, next);
		break;
	case WSG_S_CLOSED:
		if (session_linger_on(s))
			break;
		session_peer_free(&s->s_client);
		session_peer_free(&s->s_upstream);
		break;
	}
}
