/*
 * The frame relay.  Each frame read from one half is parsed in place and
 * checked against RFC 6455 and the policy before any of it moves.  Frames
 * whose payload needs no inspection are streamed: the header is checked,
 * then payload chains move to the other half's output without a copy.
 * Text frames under UTF-8 validation and control frames are buffered whole
 * (bounded by max_frame_size and 125 bytes), checked, then moved, so that
 * a refused frame never reaches the other side, not even in part.
 */
#include "autoconf.h"

#include <sys/ioctl.h>
#include <linux/sockios.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>	/* ev_read, ev_write */
#include <event2/event.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "config.h"
#include "frame.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "regex.h"
#include "relay.h"
#include "session.h"
#include "tls.h"
#include "tls13.h"
#include "utf8.h"
#include "wsgate.h"

/* How often a paused side is checked for having gone away. */
#define WSG_PAUSED_CHECK_MS	500
/* What relay_plain_read_cb() takes from a socket at once, at most. */
#define WSG_READ_MORE	(128 * 1024)
/*
 * libevent rounds a new chain, with its header, up to a power of two: ask
 * for a little under 16 KiB so that a chunk costs 16 KiB, not 32.
 */
#define WSG_READ_CHUNK	(16 * 1024 - 256)
/*
 * After a small read, the next one starts with a chain that malloc serves
 * from its per-thread cache (1 KiB with libevent's chain header).
 */
#define WSG_READ_SMALL	(1024 - 128)
/* A TLS read goes on in the chain's rest when at least this much is left. */
#define WSG_READ_MIN	256
/*
 * Up to this much of a TLS side's output is made one piece before it is
 * written (relay_kick()): just under a full record, for the same reason.
 */
#define WSG_TLS_COALESCE	(16 * 1024 - 256)
/* Frames up to this size move whole; larger ones stream. */
#define WSG_STREAM_MIN	(256 * 1024)
/* Fewer bytes than this are copied to the far side, not moved. */
#define WSG_MOVE_MIN	4096

static void	relay_read_cb(struct bufferevent *, void *);
static void	relay_event_cb(struct bufferevent *, short, void *);
static void	relay_end(struct wsg_peer *, short, int, int);
static void	relay_flush(struct evbuffer *, struct evbuffer *, size_t *);
static void	relay_plain_read_cb(evutil_socket_t, short, void *);
static void	relay_tls_read_cb(evutil_socket_t, short, void *);
static void	relay_tls_write_cb(evutil_socket_t, short, void *);
static void	relay_tls13_takeover(struct wsg_peer *);
static void	relay_kick(struct wsg_peer *);
static void	relay_write_now(struct wsg_peer *);
static void	relay_match_cb(evutil_socket_t, short, void *);

__thread unsigned long	relay_reads;

/* A TLS half: OpenSSL's record layer, or ours (tls13.c). */
#define RELAY_TLS(p)	((p)->p_ssl != NULL || (p)->p_tls13 != NULL)

void
relay_send_close(struct wsg_peer *p, uint16_t code, const char *reason)
{
	uint8_t		 buf[WSG_CLOSE_FRAME_MAX], mask[4];
	size_t		 n;

	if (p->p_bev == NULL || p->p_close_sent)
		return;
	/*
	 * A frame streamed half-way to this side cannot be interrupted: the
	 * close follows it, if the side sending it is still there.
	 */
	if (p->p_other->p_fwd_left > 0) {
		if (p->p_other->p_bev != NULL) {
			p->p_close_due = code;
			p->p_close_why = reason;
		}
		return;
	}
	frame_mask_key(mask);
	n = frame_build_close(buf, code, reason, p->p_is_client ? NULL : mask);
	evbuffer_add(bufferevent_get_output(p->p_bev), buf, n);
	p->p_close_sent = 1;
}

void
relay_start(struct wsg_peer *client, struct wsg_peer *upstream)
{
	const struct wsg_policy	*pol = client->p_session->s_route->rt_policy;
	struct wsg_peer		*p;
	int			 i;

	for (i = 0; i < 2; i++) {
		p = i == 0 ? client : upstream;
		p->p_limits.fl_max_frame = pol->pol_max_frame_size;
		p->p_limits.fl_max_message = pol->pol_max_message_size;
		p->p_limits.fl_allow_binary = pol->pol_allow_binary;
		p->p_limits.fl_expect_masked = p->p_is_client;
		/*
		 * No read high-water mark: libevent would re-arm the read
		 * event each time the input drains below it, on every
		 * message.  The input stays bounded without it: frames are
		 * consumed as they come, a frame is at most max_frame_size,
		 * and reading stops while the far side is full (relay_pause).
		 */
		bufferevent_setwatermark(p->p_bev, EV_READ, 0, 0);
		/* libevent writes 16 KiB at most per turn by default. */
		if (!p->p_is_client)
			bufferevent_set_max_single_write(p->p_bev,
			    WSG_HIGH_WATER);
		if (p->p_ssl != NULL)
			relay_tls13_takeover(p);
		bufferevent_setcb(p->p_bev, relay_read_cb, NULL,
		    relay_event_cb, p);
		/* Same events, same descriptor, our reader (and writer). */
		event_del(&p->p_bev->ev_read);
		event_assign(&p->p_bev->ev_read, bufferevent_get_base(p->p_bev),
		    bufferevent_getfd(p->p_bev),
		    EV_READ | EV_PERSIST | EV_FINALIZE, RELAY_TLS(p) ?
		    relay_tls_read_cb : relay_plain_read_cb, p->p_bev);
		if (RELAY_TLS(p)) {
			event_del(&p->p_bev->ev_write);
			event_assign(&p->p_bev->ev_write,
			    bufferevent_get_base(p->p_bev),
			    bufferevent_getfd(p->p_bev),
			    EV_WRITE | EV_PERSIST | EV_FINALIZE,
			    relay_tls_write_cb, p->p_bev);
		}
		bufferevent_enable(p->p_bev, EV_READ | EV_WRITE);
	}
	/* Frames the upstream sent right behind its 101. */
	relay_process(upstream);
	if (client->p_session->s_state != WSG_S_OPEN)
		return;
	/* The 101 leaves in this turn, not after epoll says writable. */
	relay_write_now(client);
	relay_write_now(upstream);
	session_tls_kick(client);
}

/* Has a paused side hung up or been reset?  Then it is EOF for it. */
static void
relay_gone_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct wsg_peer	*p = arg;
	struct pollfd	 pfd;
	int		 n = 0;

	if (p->p_bev == NULL)
		return;
	pfd.fd = bufferevent_getfd(p->p_bev);
	pfd.events = POLLRDHUP;
	pfd.revents = 0;
	if (pfd.fd == -1 || poll(&pfd, 1, 0) != 1 ||
	    !(pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
		return;
	/*
	 * A FIN alone (no reset) follows what the side sent before it: its
	 * last frames, its close frame.  Those are relayed when reading
	 * resumes, and the end of file is read after them.
	 */
	if (!(pfd.revents & (POLLHUP | POLLERR)) &&
	    (evbuffer_get_length(bufferevent_get_input(p->p_bev)) > 0 ||
	    (p->p_ssl != NULL && SSL_has_pending(p->p_ssl)) ||
	    (ioctl(pfd.fd, FIONREAD, &n) == 0 && n > 0)))
		return;
	log_debug("conn %llu: %s went away while paused",
	    (unsigned long long)p->p_session->s_id, p->p_name);
	relay_end(p, BEV_EVENT_EOF, errno, 0);
}

/* The far side's output drained: resume reading the side we paused. */
static void
relay_drained_cb(struct bufferevent *bev, void *arg)
{
	struct wsg_peer	*p = arg, *o = p->p_other;

	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_setcb(bev, relay_read_cb, NULL, relay_event_cb, p);
	if (o->p_paused && o->p_bev != NULL) {
		o->p_paused = 0;
		if (o->p_gone_ev != NULL)
			event_del(o->p_gone_ev);
		/* Reading resumes once its held message is judged. */
		if (o->p_matching)
			return;
		if (o->p_end_what != 0) {
			/* Its end was read: the rest of it, then the end. */
			relay_end(o, o->p_end_what, o->p_end_errno, 1);
			return;
		}
		bufferevent_enable(o->p_bev, EV_READ);
		relay_process(o);
		session_tls_kick(o);
	}
}

/*
 * What a side still has to take: its output here and the kernel's send
 * queue (not yet acknowledged).  The kernel wakes a writer only once a
 * third of its buffer is free, which a slow reader may take seconds to
 * make, so the output alone can stand still while the reader takes bytes.
 */
size_t
relay_backlog(struct wsg_peer *o)
{
	size_t	len;
	int	fd, n = 0;

	if (o->p_bev == NULL)
		return (0);
	len = evbuffer_get_length(bufferevent_get_output(o->p_bev));
	if ((fd = bufferevent_getfd(o->p_bev)) != -1 &&
	    ioctl(fd, SIOCOUTQ, &n) == 0 && n > 0)
		len += (size_t)n;
	return (len);
}

/* Did a paused side's far side take bytes since the last look? */
int
relay_paused_moving(struct wsg_session *s)
{
	struct wsg_peer	*p;
	size_t		 left;
	int		 i, moving = 0;

	for (i = 0; i < 2; i++) {
		p = i == 0 ? &s->s_client : &s->s_upstream;
		if (!p->p_paused || p->p_bev == NULL)
			continue;
		left = relay_backlog(p->p_other);
		if (left < p->p_pause_owed)
			moving = 1;
		p->p_pause_owed = left;
	}
	return (moving);
}

/* The far side is not taking data: stop reading this side until it does. */
static void
relay_pause(struct wsg_peer *p)
{
	struct wsg_peer	*o = p->p_other;
	struct timeval	 tv = { 0, WSG_PAUSED_CHECK_MS * 1000 };

	if (p->p_paused)
		return;
	p->p_paused = 1;
	p->p_pause_owed = relay_backlog(o);
	bufferevent_disable(p->p_bev, EV_READ);
	/*
	 * With reading off, libevent does not notice this side hanging up.
	 * A level-triggered EV_CLOSED would spin on a reset socket, and an
	 * edge-triggered one cannot share the descriptor with the
	 * bufferevent's events, so look now and then until reading resumes.
	 */
	if (p->p_gone_ev == NULL)
		p->p_gone_ev = event_new(bufferevent_get_base(p->p_bev), -1,
		    EV_PERSIST, relay_gone_cb, p);
	if (p->p_gone_ev != NULL)
		event_add(p->p_gone_ev, &tv);
	bufferevent_setwatermark(o->p_bev, EV_WRITE, WSG_LOW_WATER, 0);
	bufferevent_setcb(o->p_bev, relay_read_cb, relay_drained_cb,
	    relay_event_cb, o);
}

/*
 * A frame counted in p_frames and not yet moved, at the front of the
 * input, will not be: it broke a rule, or the session ended before all of
 * it came.  What arrived of it counts in p_bytes, so that a frame counted
 * in frames_in or frames_out has its bytes counted too (wsgate(8)); what
 * follows it is thrown away uncounted.  Returns the bytes counted.
 */
static size_t
relay_count_rest(struct wsg_peer *p)
{
	const struct wsg_frame	*f = &p->p_frame;
	size_t			 n;

	p->p_have_frame = 0;
	n = evbuffer_get_length(bufferevent_get_input(p->p_bev));
	if (n > f->f_hdr_len + f->f_len)
		n = f->f_hdr_len + f->f_len;
	p->p_bytes += n;
	return (n);
}

/* Within relay_process(), which counts the bytes in the metrics. */
static void
relay_count_refused(struct wsg_peer *p)
{
	(void)relay_count_rest(p);
}

void
relay_count_cut(struct wsg_peer *p)
{
	size_t	n;

	if (p->p_bev == NULL || !p->p_have_frame || p->p_fwd_left > 0)
		return;
	n = relay_count_rest(p);
	metrics_frames(p->p_is_client ? WSG_DIR_C2U : WSG_DIR_U2C, 0, n);
}

/*
 * messages_per_connection (data messages and pings/pongs) and
 * bytes_per_connection (every frame but the close), on what the client
 * sends.  The run of checked frames before this one (pend bytes at the
 * front of in) stays batched, and goes out first only if this frame is
 * refused.  Returns -1 once the session was closed for it.
 */
static int
relay_rate(struct wsg_peer *p, struct evbuffer *in, struct evbuffer *out,
    size_t *pend)
{
	const struct wsg_ratelimit_conf	*rc = p->p_session->s_route->rt_policy->
					    pol_rate;
	const struct wsg_frame		*f = &p->p_frame;
	uint64_t			 now = ratelimit_now_ms();

	if (f->f_opcode != WSG_OP_CONT && f->f_opcode != WSG_OP_CLOSE &&
	    !bucket_take(&p->p_msg_bucket, &rc->rc_messages, 1, now)) {
		relay_flush(in, out, pend);
		log_info("conn %llu: rate_messages: message rate exceeded",
		    (unsigned long long)p->p_session->s_id);
		relay_count_refused(p);
		session_fail(p->p_session, "rate_messages", 1008, 1008, 1001);
		return (-1);
	}
	/*
	 * An empty frame costs a byte, or empty continuations were free.  A
	 * close frame costs nothing: a client sends one, and one that spent
	 * its bytes may still end the session with its own code.
	 */
	if (f->f_opcode != WSG_OP_CLOSE && !bucket_take(&p->p_byte_bucket,
	    &rc->rc_bytes, f->f_len > 0 ? f->f_len : 1, now)) {
		relay_flush(in, out, pend);
		log_info("conn %llu: rate_bytes: byte rate exceeded",
		    (unsigned long long)p->p_session->s_id);
		relay_count_refused(p);
		session_fail(p->p_session, "rate_bytes", 1008, 1008, 1001);
		return (-1);
	}
	return (0);
}

/* A frame broke a rule: close toward the side that broke it, cleanly
 * toward the other. */
static void
relay_violation(struct wsg_peer *p, enum wsg_frame_result r)
{
	struct wsg_session	*s = p->p_session;
	uint16_t		 code = frame_result_close_code(r);
	const char		*reason = frame_result_reason(r);

	log_info("conn %llu: %s frame refused: %s",
	    (unsigned long long)s->s_id, p->p_name, reason);
	if (p->p_is_client)
		session_fail(s, reason, code, code, 1001);
	else
		session_fail(s, reason, code, 1014, code);
}

/* Validate the UTF-8 of a whole buffered text frame's payload. */
static enum wsg_frame_result
relay_check_utf8(struct wsg_peer *p, struct evbuffer *in, size_t at)
{
	const struct wsg_frame	*f = &p->p_frame;
	struct evbuffer_ptr	 pos;
	struct evbuffer_iovec	 v[8];
	uint64_t		 off = 0;
	uint32_t		 st = p->p_msg.ms_utf8;
	int			 i, nv;

	if (evbuffer_ptr_set(in, &pos, at + f->f_hdr_len, EVBUFFER_PTR_SET) ==
	    -1)
		return (WSG_FRAME_PROTOCOL);
	while (off < f->f_len) {
		nv = evbuffer_peek(in, f->f_len - off, &pos, v, 8);
		if (nv <= 0)
			return (WSG_FRAME_PROTOCOL);
		if (nv > 8)
			nv = 8;
		for (i = 0; i < nv && off < f->f_len; i++) {
			size_t n = v[i].iov_len;

			if (n > f->f_len - off)
				n = f->f_len - off;
			if (f->f_masked)
				st = utf8_validate_masked(st, v[i].iov_base, n,
				    f->f_mask, off);
			else
				st = utf8_validate(st, v[i].iov_base, n);
			if (st == WSG_UTF8_REJECT)
				return (WSG_FRAME_INVALID_UTF8);
			off += n;
		}
		if (off < f->f_len && evbuffer_ptr_set(in, &pos,
		    at + f->f_hdr_len + off, EVBUFFER_PTR_SET) == -1)
			return (WSG_FRAME_PROTOCOL);
	}
	p->p_msg.ms_utf8 = st;
	return (WSG_FRAME_OK);
}

/*
 * XOR n bytes of in, from offset at, with the mask x from payload offset
 * off, where they lie: the chains are the relay's own, read into.
 */
static void
relay_xor(struct evbuffer *in, size_t at, size_t n, const uint8_t x[4],
    uint64_t off)
{
	struct evbuffer_ptr	 pos;
	struct evbuffer_iovec	 v[8];
	uint8_t			*b;
	size_t			 k;
	int			 i, nv;

	/* Most frames lie in the first chain: no walk, no copy. */
	if (at + n <= evbuffer_get_contiguous_space(in)) {
		if ((b = evbuffer_pullup(in, (ssize_t)(at + n))) != NULL)
			frame_unmask(b + at, b + at, n, x, off);
		return;
	}
	while (n > 0) {
		if (evbuffer_ptr_set(in, &pos, at, EVBUFFER_PTR_SET) == -1 ||
		    (nv = evbuffer_peek(in, n, &pos, v, 8)) <= 0)
			return;
		if (nv > 8)
			nv = 8;
		for (i = 0; i < nv && n > 0; i++) {
			k = v[i].iov_len < n ? v[i].iov_len : n;
			frame_unmask(v[i].iov_base, v[i].iov_base, k, x, off);
			at += k;
			off += k;
			n -= k;
		}
	}
}

/*
 * The gateway is the WebSocket client of the upstream connection, and RFC
 * 6455 5.3 and 10.3 want that client's masking keys unpredictable: a key
 * the client chose (all zeros, say) would put bytes of its choosing on
 * the upstream's wire, for an intermediary there to take for HTTP.  The
 * key of the client frame whose header is at offset at of in is replaced
 * by a fresh one, and the first n bytes of its payload remasked with it
 * in the same pass (the key is four bytes: the payload starts again at
 * mask offset 0).  p_remask keeps the old key XOR the new one for the
 * rest of a streamed payload (relay_remask_payload()).
 */
static void
relay_remask(struct wsg_peer *p, struct evbuffer *in, size_t at, size_t n)
{
	const struct wsg_frame	*f = &p->p_frame;
	uint8_t			 nk[4];
	int			 k;

	if (!p->p_is_client || !f->f_masked)
		return;
	frame_mask_key(nk);
	for (k = 0; k < 4; k++)
		p->p_remask[k] = f->f_mask[k] ^ nk[k];
	relay_xor(in, at + f->f_hdr_len - 4, 4 + n, p->p_remask, 0);
}

/* Remask n payload bytes at offset at of in, from payload offset off. */
static void
relay_remask_payload(struct wsg_peer *p, struct evbuffer *in, size_t at,
    size_t n, uint64_t off)
{
	if (!p->p_is_client || !p->p_frame.f_masked)
		return;
	relay_xor(in, at, n, p->p_remask, off);
}

/*
 * Move n bytes from the front of in to the end of out.  Chains move
 * without a copy, but a chain holds what one read brought, in a buffer of
 * a kilobyte or more, and the high-water mark counts bytes: a peer
 * sending a byte per TCP segment toward a side that does not read had
 * each byte cost a chain, and a session hundreds of megabytes.  So a few
 * bytes bound for an output that still holds some (its side is not
 * keeping up) are copied into the space at its end instead; into an
 * empty one, what a relay that keeps up always sees, they move.
 */
static void
relay_move_bytes(struct evbuffer *in, struct evbuffer *out, size_t n)
{
	struct evbuffer_iovec	v;

	if (n == 0)
		return;
	if (n < WSG_MOVE_MIN && evbuffer_get_length(out) > 0 &&
	    evbuffer_reserve_space(out, n, &v, 1) == 1) {
		v.iov_len = n;
		if (evbuffer_copyout(in, v.iov_base, n) == (ev_ssize_t)n &&
		    evbuffer_commit_space(out, &v, 1) == 0) {
			evbuffer_drain(in, n);
			return;
		}
	}
	/* Larger runs move, as does one with no memory for a copy. */
	evbuffer_remove_buffer(in, out, n);
}

/*
 * The session closed while a frame streamed from p to the other side,
 * which is owed a close frame after it: the rest of the frame still goes
 * there (up to the high-water mark at a time), then the close.  The
 * linger timer bounds the wait for a side that stops sending.
 */
int
relay_finish(struct wsg_peer *p)
{
	struct wsg_peer	*o = p->p_other;
	struct evbuffer	*in, *out;
	size_t		 n;
	uint16_t	 code = o->p_close_due;

	if (code == 0 || p->p_bev == NULL || o->p_bev == NULL)
		return (0);
	in = bufferevent_get_input(p->p_bev);
	out = bufferevent_get_output(o->p_bev);
	if (evbuffer_get_length(out) >= WSG_HIGH_WATER) {
		/* Read on once it has drained (session_linger_write_cb()). */
		bufferevent_disable(p->p_bev, EV_READ);
		return (1);
	}
	n = evbuffer_get_length(in);
	if (n > p->p_fwd_left)
		n = p->p_fwd_left;
	relay_remask_payload(p, in, 0, n, p->p_frame.f_len - p->p_fwd_left);
	relay_move_bytes(in, out, n);
	p->p_fwd_left -= n;
	p->p_bytes += n;
	/* Relayed bytes, as relay_process() counts them. */
	metrics_frames(p->p_is_client ? WSG_DIR_C2U : WSG_DIR_U2C, 0, n);
	if (p->p_fwd_left > 0)
		return (1);
	o->p_close_due = 0;
	relay_send_close(o, code, o->p_close_why);
	session_finished(p->p_session);
	return (0);
}

/* A whole control frame is buffered: check it and pass it on. */
static void
relay_control(struct wsg_peer *p, struct evbuffer *in, struct evbuffer *out)
{
	struct wsg_session	*s = p->p_session;
	struct wsg_peer		*o = p->p_other;
	const struct wsg_frame	*f = &p->p_frame;
	uint8_t			 buf[WSG_FRAME_MAX_HEADER + 125];
	enum wsg_frame_result	 r;
	size_t			 total = f->f_hdr_len + f->f_len;
	uint16_t		 code;

	p->p_have_frame = 0;
	if (f->f_opcode != WSG_OP_CLOSE) {
		relay_remask(p, in, 0, p->p_frame.f_len);
		relay_move_bytes(in, out, total);
		p->p_bytes += total;
		return;
	}
	evbuffer_copyout(in, buf, total);
	if (f->f_masked)
		frame_unmask(buf + f->f_hdr_len, buf + f->f_hdr_len, f->f_len,
		    f->f_mask, 0);
	r = frame_check_close(buf + f->f_hdr_len, f->f_len,
	    s->s_route->rt_policy->pol_validate_utf8, &code);
	if (r != WSG_FRAME_OK) {
		relay_count_refused(p);
		relay_violation(p, r);
		return;
	}
	p->p_close_rcvd = 1;
	p->p_close_code = code;
	if (s->s_close_first == NULL)
		s->s_close_first = p;
	if (!o->p_close_sent) {
		relay_remask(p, in, 0, p->p_frame.f_len);
		relay_move_bytes(in, out, total);
		o->p_close_sent = 1;
		session_close_relayed(s);
	} else
		evbuffer_drain(in, total);
	p->p_bytes += total;
	if (o->p_close_rcvd) {
		/* Both sides have closed: the close handshake is complete. */
		s->s_close_code = s->s_close_first->p_close_code;
		session_close(s, s->s_close_first->p_is_client ?
		    "client_closed" : "upstream_closed");
	}
}

/*
 * Forward a held text message of len bytes, all of text: in frames of at
 * most max bytes, masked afresh as the client's side must be.  They are
 * built apart and moved to out at once, so that a failure leaves no half
 * message there.
 */
static int
relay_send_held(struct evbuffer *text, size_t len, uint64_t max,
    struct evbuffer *out)
{
	struct evbuffer	*msg;
	uint8_t		 hdr[WSG_FRAME_MAX_HEADER], mask[4], *b;
	size_t		 off = 0, n, h;

	if ((msg = evbuffer_new()) == NULL)
		return (-1);
	do {
		n = len - off < max ? len - off : (size_t)max;
		frame_mask_key(mask);
		h = frame_build_header(hdr, off + n == len, off == 0 ?
		    WSG_OP_TEXT : WSG_OP_CONT, n, mask);
		if (n > 0) {
			if ((b = evbuffer_pullup(text, (ssize_t)n)) == NULL)
				goto fail;
			frame_unmask(b, b, n, mask, 0);
		}
		if (evbuffer_add(msg, hdr, h) == -1 ||
		    evbuffer_remove_buffer(text, msg, n) != (int)n)
			goto fail;
		off += n;
	} while (off < len);
	/* Copied when small, or each message cost out two chains. */
	relay_move_bytes(msg, out, evbuffer_get_length(msg));
	evbuffer_free(msg);
	return (0);
fail:
	evbuffer_free(msg);
	return (-1);
}

/*
 * Go on with a held message's match in a later turn of the loop.  A
 * timer that is due at once, not event_active(): an event made active
 * runs in the same turn, before the loop asks the kernel again, and the
 * other sessions' new input would wait for the whole match all the same.
 * Reading from p stops until the message is judged.  Returns -1 if
 * there is no event for it.
 */
static int
relay_match_later(struct wsg_peer *p, const struct wsg_regex_budget *rb,
    size_t i, size_t start)
{
	struct wsg_match	*m = p->p_match;
	struct timeval		 tv = { 0, 0 };

	if (m == NULL) {
		if ((m = calloc(1, sizeof(*m))) == NULL)
			return (-1);
		if ((m->m_ev = evtimer_new(bufferevent_get_base(p->p_bev),
		    relay_match_cb, p)) == NULL) {
			free(m);
			return (-1);
		}
		p->p_match = m;
	}
	if (evtimer_add(m->m_ev, &tv) == -1)
		return (-1);
	m->m_rb = *rb;
	m->m_re = i;
	m->m_start = start;
	p->p_matching = 1;
	bufferevent_disable(p->p_bev, EV_READ);
	return (0);
}

/*
 * Match the held message, len bytes of text, against deny_regex from
 * pattern i and start position start, under the budget rb, then forward
 * it to out or refuse it.  A match that has taken a slice of CPU time
 * (WSG_REGEX_SLICE_US) and is not done goes on from relay_match_cb(),
 * so that the worker's other sessions are not held up for the whole
 * budget; the budget and the verdict are those of one pass.  Returns 0
 * once forwarded, 1 while the match goes on, -1 once the session was
 * closed.
 */
static int
relay_judge_held(struct wsg_peer *p, struct evbuffer *out, const char *text,
    size_t len, struct wsg_regex_budget *rb, size_t i, size_t start)
{
	struct wsg_session	*s = p->p_session;
	const struct wsg_policy	*pol = s->s_route->rt_policy;
	int			 m, flags = WSG_REGEX_SLICE;

	if (pol->pol_validate_utf8)
		flags |= WSG_REGEX_VALID_UTF8;
	while (i < pol->pol_ndeny_regex) {
		m = regex_match_from(pol->pol_deny_regex[i], text ? text : "",
		    len, flags, rb, &start);
		if (m == WSG_REGEX_AGAIN) {
			if (relay_match_later(p, rb, i, start) == 0)
				return (1);
			/* No event to go on from: the rest in this turn. */
			flags &= ~WSG_REGEX_SLICE;
			regex_budget_resume(rb);
			continue;
		}
		if (m != 0) {
			/* A match, or a limit hit: either way, refused. */
			log_info("conn %llu: content_denied: message refused "
			    "by deny_regex '%s'%s", (unsigned long long)s->s_id,
			    regex_pattern(pol->pol_deny_regex[i]),
			    m == -1 ? " (match limit)" : "");
			session_fail(s, "content_denied", 1008, 1008, 1001);
			return (-1);
		}
		i++;
		start = 0;
	}
	if (relay_send_held(p->p_text, len, pol->pol_max_frame_size,
	    out) == -1) {
		log_warnx("conn %llu: internal_error: out of memory holding a "
		    "message", (unsigned long long)s->s_id);
		session_fail(s, "internal_error", 1011, 1011, 1011);
		return (-1);
	}
	return (0);
}

/*
 * messages.deny_regex: a client's text message is held, frame by frame,
 * until its last fragment, then matched whole (at most max_message_size)
 * and either forwarded or refused.  Control frames between its fragments
 * go on meanwhile.  Only the payload is held, and the message leaves in
 * frames of up to max_frame_size (RFC 6455 5.4 lets an intermediary
 * refragment a message without extensions): held as received, a client's
 * empty or one-byte fragments would cost their headers, which neither
 * max_message_size nor a rate limit counts, and memory would grow without
 * bound.  Returns 0, 1 while its match goes on (relay_judge_held()), or
 * -1 once the session was closed.
 */
static int
relay_hold_text(struct wsg_peer *p, struct evbuffer *in, struct evbuffer *out)
{
	struct wsg_session	*s = p->p_session;
	const struct wsg_policy	*pol = s->s_route->rt_policy;
	const struct wsg_frame	*f = &p->p_frame;
	struct evbuffer_iovec	 v;
	struct evbuffer_ptr	 pos;
	struct wsg_regex_budget	 rb;
	enum wsg_frame_result	 r = WSG_FRAME_OK;
	size_t			 len;
	const char		*text;
	int			 m;

	if (pol->pol_validate_utf8)
		r = relay_check_utf8(p, in, 0);
	if (r == WSG_FRAME_OK)
		r = frame_msg_end(f, &p->p_msg, pol->pol_validate_utf8);
	if (r != WSG_FRAME_OK) {
		relay_count_refused(p);
		relay_violation(p, r);
		return (-1);
	}
	if (p->p_text == NULL && (p->p_text = evbuffer_new()) == NULL)
		goto fail;
	if (f->f_len > 0) {
		if (evbuffer_reserve_space(p->p_text, f->f_len, &v, 1) != 1 ||
		    evbuffer_ptr_set(in, &pos, f->f_hdr_len,
		    EVBUFFER_PTR_SET) == -1 ||
		    evbuffer_copyout_from(in, &pos, v.iov_base, f->f_len) !=
		    (ssize_t)f->f_len)
			goto fail;
		if (f->f_masked)
			frame_unmask(v.iov_base, v.iov_base, f->f_len,
			    f->f_mask, 0);
		v.iov_len = f->f_len;
		if (evbuffer_commit_space(p->p_text, &v, 1) == -1)
			goto fail;
	}
	evbuffer_drain(in, f->f_hdr_len + f->f_len);
	p->p_bytes += f->f_hdr_len + f->f_len;
	p->p_have_frame = 0;
	if (!f->f_fin)
		return (0);
	len = evbuffer_get_length(p->p_text);
	text = (const char *)evbuffer_pullup(p->p_text, -1);
	if (len > 0 && text == NULL)
		goto fail;
	/*
	 * Patterns are in UTF-8 mode and cannot match text that is not
	 * UTF-8 (validate_utf8 off): passing it unmatched would let one bad
	 * byte carry anything past them, so it is refused, and said so.
	 */
	if (!pol->pol_validate_utf8 && len > 0 && utf8_validate(
	    WSG_UTF8_ACCEPT, (const uint8_t *)text, len) != WSG_UTF8_ACCEPT) {
		log_info("conn %llu: content_denied: message refused by "
		    "deny_regex: not valid UTF-8, so no pattern can be matched",
		    (unsigned long long)s->s_id);
		session_fail(s, "content_denied", 1008, 1008, 1001);
		return (-1);
	}
	regex_budget_init(&rb, len, pol->pol_ndeny_regex);
	if ((m = relay_judge_held(p, out, text, len, &rb, 0, 0)) == 1)
		log_debug("conn %llu: deny_regex: a long match, done in slices",
		    (unsigned long long)s->s_id);
	return (m);
fail:
	if (p->p_have_frame)
		relay_count_refused(p);
	log_warnx("conn %llu: internal_error: out of memory holding a message",
	    (unsigned long long)s->s_id);
	session_fail(s, "internal_error", 1011, 1011, 1011);
	return (-1);
}

/* A data frame's payload has gone through: end the message on FIN. */
static void
relay_frame_done(struct wsg_peer *p)
{
	p->p_have_frame = 0;
	(void)frame_msg_end(&p->p_frame, &p->p_msg, 0);
}

/* Move n checked bytes from the front of in to out. */
static void
relay_flush(struct evbuffer *in, struct evbuffer *out, size_t *pend)
{
	relay_move_bytes(in, out, *pend);
	*pend = 0;
}

/*
 * Parse, check and move what is buffered from one half.  Whole frames
 * that need nothing but the checks are moved together, once a run of them
 * ends (pend bytes at the front of in): one evbuffer_remove_buffer() hands
 * over the whole chains between them instead of copying each frame's tail
 * into a small chain of its own, and a TLS side then writes fewer, fuller
 * records.  Anything that acts on the session or needs the frame at the
 * front of in moves the run first, so the order on the wire and what the
 * far side got before a close are as before.
 */
static void
relay_move(struct wsg_peer *p)
{
	struct wsg_session	*s = p->p_session;
	struct wsg_peer		*o = p->p_other;
	const struct wsg_policy	*pol = s->s_route->rt_policy;
	struct evbuffer		*in, *out;
	struct evbuffer_ptr	 pos;
	struct wsg_frame	*f = &p->p_frame;
	enum wsg_frame_result	 r;
	uint8_t			 hdr[WSG_FRAME_MAX_HEADER];
	size_t			 avail, n, pend = 0;
	uint64_t		 total;

	if (s->s_state != WSG_S_OPEN || p->p_bev == NULL || o->p_bev == NULL ||
	    p->p_matching)
		return;
	in = bufferevent_get_input(p->p_bev);
	out = bufferevent_get_output(o->p_bev);
	/*
	 * Bytes of a frame are activity, not only its header: a large frame
	 * streamed, or a frame that arrives slowly, is not idle.  What
	 * follows a side's close frame is thrown away, and is not.
	 */
	if (evbuffer_get_length(in) > 0 && !p->p_close_rcvd)
		s->s_last_active = session_now_ms(s);
	while (s->s_state == WSG_S_OPEN) {
		if ((avail = evbuffer_get_length(in) - pend) == 0)
			break;
		if (p->p_close_rcvd) {
			/* Nothing may follow a close frame. */
			relay_flush(in, out, &pend);
			evbuffer_drain(in, avail);
			return;
		}
		if (evbuffer_get_length(out) + pend >= WSG_HIGH_WATER) {
			relay_flush(in, out, &pend);
			relay_pause(p);
			return;
		}
		if (p->p_fwd_left > 0) {
			relay_flush(in, out, &pend);
			n = avail < p->p_fwd_left ? avail : p->p_fwd_left;
			relay_remask_payload(p, in, 0, n,
			    f->f_len - p->p_fwd_left);
			relay_move_bytes(in, out, n);
			p->p_bytes += n;
			p->p_fwd_left -= n;
			if (p->p_fwd_left == 0)
				relay_frame_done(p);
			continue;
		}
		if (!p->p_have_frame) {
			n = avail < sizeof(hdr) ? avail : sizeof(hdr);
			if (pend == 0)
				n = evbuffer_copyout(in, hdr, n);
			else if (evbuffer_ptr_set(in, &pos, pend,
			    EVBUFFER_PTR_SET) == -1 ||
			    evbuffer_copyout_from(in, &pos, hdr, n) == -1)
				n = 0;
			r = frame_parse_header(hdr, n, f);
			if (r == WSG_FRAME_INCOMPLETE)
				break;
			if (r == WSG_FRAME_OK)
				r = frame_check_header(f, &p->p_limits,
				    &p->p_msg);
			if (r != WSG_FRAME_OK) {
				relay_flush(in, out, &pend);
				relay_violation(p, r);
				return;
			}
			p->p_have_frame = 1;
			p->p_frames++;
			if (p->p_is_client && pol->pol_rate != NULL &&
			    relay_rate(p, in, out, &pend) == -1)
				return;
		}
		total = f->f_hdr_len + f->f_len;
		if (f->f_opcode >= WSG_OP_CLOSE) {
			if (avail < total)
				break;
			relay_flush(in, out, &pend);
			relay_control(p, in, out);
			continue;
		}
		if (p->p_is_client && pol->pol_ndeny_regex > 0 &&
		    p->p_msg.ms_opcode == WSG_OP_TEXT) {
			if (avail < total)
				break;
			relay_flush(in, out, &pend);
			if (relay_hold_text(p, in, out) != 0)
				return;
			continue;
		}
		if (pol->pol_validate_utf8 && p->p_msg.ms_opcode ==
		    WSG_OP_TEXT) {
			if (avail < total)
				break;		/* the read watermark allows it */
			r = relay_check_utf8(p, in, pend);
			if (r == WSG_FRAME_OK)
				r = frame_msg_end(f, &p->p_msg, 1);
			if (r != WSG_FRAME_OK) {
				relay_flush(in, out, &pend);
				relay_count_refused(p);
				relay_violation(p, r);
				return;
			}
			relay_remask(p, in, pend, f->f_len);
			pend += total;
			p->p_bytes += total;
			p->p_have_frame = 0;
			continue;
		}
		/*
		 * No inspection.  A frame up to WSG_STREAM_MIN moves whole,
		 * once all of it is here, so that a peer lost mid-frame never
		 * leaves half a frame on the other side, which can then still
		 * get a clean close.  Larger ones stream: header, then payload
		 * as it comes, and memory stays bounded.
		 */
		if (total <= WSG_STREAM_MIN) {
			if (avail < total)
				break;
			relay_remask(p, in, pend, f->f_len);
			pend += total;
			p->p_bytes += total;
			relay_frame_done(p);
			continue;
		}
		relay_flush(in, out, &pend);
		relay_remask(p, in, 0, 0);
		relay_move_bytes(in, out, f->f_hdr_len);
		p->p_bytes += f->f_hdr_len;
		p->p_fwd_left = f->f_len;
		if (f->f_len == 0)
			relay_frame_done(p);
	}
	/* The session is still open here, or pend is 0. */
	relay_flush(in, out, &pend);
}

void
relay_process(struct wsg_peer *p)
{
	uint64_t	frames = p->p_frames, bytes = p->p_bytes;

	relay_move(p);
	/* One counter update per read, not per frame. */
	metrics_frames(p->p_is_client ? WSG_DIR_C2U : WSG_DIR_U2C,
	    p->p_frames - frames, p->p_bytes - bytes);
}

/*
 * Write what the relay just queued for o in this turn of the event loop.
 * Left alone, libevent registers the write event (epoll_ctl), sleeps in
 * epoll_wait until the socket says it is writable, writes, and removes the
 * event again (epoll_ctl): per relayed message two system calls and a
 * loop turn more than the write itself.  Activating the bufferevent's own
 * write event runs its normal write path now; once the output is empty it
 * removes the event, and the worker's event base (EPOLL_USE_CHANGELIST)
 * folds that removal into the addition, so epoll hears of neither.  A
 * write that would block leaves the event registered, as before.
 */
static void
relay_kick(struct wsg_peer *o)
{
	struct bufferevent	*bev = o->p_bev;
	struct evbuffer		*out;
	size_t			 len, want;

	if (bev == NULL)
		return;
	out = bufferevent_get_output(bev);
	if ((len = evbuffer_get_length(out)) == 0)
		return;
	/*
	 * libevent's TLS bufferevent calls SSL_write once per chain, and
	 * every call is a record and a write(2) of its own.  Moving frames
	 * leaves several chains (copied head frames, then the tail chain
	 * moved whole), so a batch of small messages went out as two or
	 * more records.  Joining the head costs a copy of at most
	 * WSG_TLS_COALESCE bytes and saves a system call and a record.
	 */
	if (o->p_ssl != NULL) {
		want = len < WSG_TLS_COALESCE ? len : WSG_TLS_COALESCE;
		if (evbuffer_get_contiguous_space(out) < want)
			(void)evbuffer_pullup(out, (ssize_t)want);
	}
	if (event_pending(&bev->ev_write, EV_WRITE, NULL))
		event_active(&bev->ev_write, EV_WRITE, 1);
}

/*
 * Enabling EV_WRITE on a bufferevent registers its write event whether or
 * not there is anything to write, and epoll would wake the loop for a
 * writable socket only to have the event removed again.  Write what is
 * queued now (relay_kick()); with nothing queued, remove the event in this
 * turn, which the change list folds into its addition.  Queuing output
 * later adds it again, as for any write that starts from an empty buffer.
 */
static void
relay_write_now(struct wsg_peer *p)
{
	struct bufferevent	*bev = p->p_bev;

	if (bev == NULL)
		return;
	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		relay_kick(p);
	else if (p->p_tls13 == NULL || !tls13_write_pending(p->p_tls13))
		event_del(&bev->ev_write);
}

/*
 * The reader of a plaintext socket (the upstream; the client on a listener
 * without TLS) once a session is open.  libevent 2.1's own asks the kernel
 * how much is there (ioctl FIONREAD) before every read and reads 4096
 * bytes at most, so a 16 KiB message took four turns of the loop, one
 * ioctl and one readv each, and went out as four TLS records.  This one
 * reads in chunks of WSG_READ_CHUNK (big chains would be split and copied
 * at frame boundaries, and a blocked session would hold twice its data)
 * until a short read, WSG_READ_MORE in all, or the far side's high-water
 * mark, then runs the bufferevent's read callback as libevent's would.
 * It is assigned to the bufferevent's own read event, so enabling,
 * disabling and freeing the bufferevent work on it unchanged, and it
 * keeps the bufferevent's conventions: the event's argument is the
 * bufferevent (libevent finalizes it through that), a reference is held
 * across the callbacks, the input's end stays frozen between reads, and
 * end of file or an error disables reading and runs the event callback.
 * The peer is the argument of the bufferevent's callbacks, in the relay
 * and while lingering alike.
 */
static void
relay_plain_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bufferevent	*bev = arg;
	struct wsg_peer		*p = NULL;
	struct evbuffer		*in;
	struct evbuffer_iovec	 v;
	ssize_t			 r;
	size_t			 queued = 0, total = 0, want;
	short			 ev = 0;
	int			 err = 0, short_read;

	relay_reads++;
	bufferevent_getcb(bev, NULL, NULL, NULL, (void **)&p);
	if (p == NULL)
		return;
	bufferevent_incref(bev);
	in = bufferevent_get_input(bev);
	if (what & EV_TIMEOUT)
		ev = BEV_EVENT_TIMEOUT;
	else {
		if (p->p_other->p_bev != NULL)
			queued = evbuffer_get_length(bufferevent_get_output(
			    p->p_other->p_bev));
		queued += evbuffer_get_length(in);
		evbuffer_unfreeze(in, 0);
		want = p->p_last_read < WSG_READ_SMALL ? WSG_READ_SMALL :
		    WSG_READ_CHUNK;
		do {
			if (evbuffer_reserve_space(in, want, &v, 1) != 1) {
				err = ENOMEM;
				ev = BEV_EVENT_ERROR;
				break;
			}
			if (v.iov_len > want)
				v.iov_len = want;
			r = read(fd, v.iov_base, v.iov_len);
			if (r <= 0) {
				err = errno;
				evbuffer_commit_space(in, &v, 0);
				if (r == 0)
					ev = BEV_EVENT_EOF;
				else if (err != EAGAIN && err != EWOULDBLOCK &&
				    err != EINTR)
					ev = BEV_EVENT_ERROR;
				break;
			}
			short_read = (size_t)r < v.iov_len;
			v.iov_len = (size_t)r;
			evbuffer_commit_space(in, &v, 1);
			total += (size_t)r;
			if (short_read)
				break;		/* drained, most likely */
			want = WSG_READ_CHUNK;
		} while (total < WSG_READ_MORE &&
		    queued + total + WSG_READ_CHUNK <= WSG_HIGH_WATER);
		evbuffer_freeze(in, 0);
		p->p_last_read = total;
		if (total > 0)
			bufferevent_trigger(bev, EV_READ, 0);
	}
	if (ev != 0) {
		bufferevent_disable(bev, EV_READ);
		errno = err;
		bufferevent_trigger_event(bev, ev | BEV_EVENT_READING, 0);
	}
	bufferevent_decref(bev);
}

/*
 * OpenSSL wants its thread's error queue empty before an I/O call, for
 * SSL_get_error() to tell the right thing.  libevent clears it before
 * each call, which walks every slot of the queue; it is nearly always
 * empty already, and looking costs a tenth as much.
 */
static void
relay_tls_errclear(void)
{
	if (ERR_peek_error() != 0)
		ERR_clear_error();
}

/* Keep what OpenSSL said for session_tls_error(), then empty its queue. */
static void
relay_tls_keep_errors(struct wsg_peer *p)
{
	unsigned long	e;

	while ((e = ERR_get_error()) != 0)
		if (p->p_tls_nerr < WSG_TLS_ERRORS)
			p->p_tls_err[p->p_tls_nerr++] = e;
}

/*
 * Write what the TLS half's output holds: one SSL_write() per chain
 * (relay_kick() made the first one up to a record long), until it is
 * empty or the socket is full.  A write that would block is retried with
 * the same length, as OpenSSL requires (libevent's TLS bufferevent allows
 * the buffer to move).  Returns the events for the bufferevent's event
 * callback, 0 if none; the bytes written are added to *done.
 */
static short
relay_tls_write(struct bufferevent *bev, struct wsg_peer *p, size_t *done)
{
	struct evbuffer		*out = bufferevent_get_output(bev);
	struct evbuffer_iovec	 v;
	size_t			 len;
	int			 r;

	while (evbuffer_get_length(out) > 0 && *done < WSG_READ_MORE) {
		len = p->p_tls_retry;
		if (len > 0 && evbuffer_get_contiguous_space(out) < len)
			(void)evbuffer_pullup(out, (ssize_t)len);
		if (evbuffer_peek(out, -1, NULL, &v, 1) < 1)
			break;
		if (len == 0 || len > v.iov_len)
			len = v.iov_len;
		if (len > INT_MAX)
			len = INT_MAX;
		relay_tls_errclear();
		r = SSL_write(p->p_ssl, v.iov_base, (int)len);
		if (r > 0) {
			evbuffer_drain(out, (size_t)r);
			*done += (size_t)r;
			p->p_tls_retry = 0;
			continue;
		}
		switch (SSL_get_error(p->p_ssl, r)) {
		case SSL_ERROR_WANT_WRITE:
			p->p_tls_retry = len;
			return (0);
		case SSL_ERROR_WANT_READ:
			/* It needs the client's bytes first: wait to read. */
			p->p_tls_retry = len;
			p->p_tls_wbor = 1;
			event_del(&bev->ev_write);
			if (!event_pending(&bev->ev_read, EV_READ, NULL))
				event_add(&bev->ev_read, NULL);
			return (0);
		default:
			relay_tls_keep_errors(p);
			return (BEV_EVENT_ERROR | BEV_EVENT_WRITING);
		}
	}
	if (evbuffer_get_length(out) == 0)
		event_del(&bev->ev_write);
	return (0);
}

/*
 * Read what the client sent on a TLS half: every record OpenSSL has read
 * ahead, then from the socket once more only if a record is still
 * incomplete, WSG_READ_MORE in all, or up to the far side's high-water
 * mark.  The
 * relay then sees a batch of records at once and writes them upstream
 * with one system call, where libevent's bufferevent hands over one record
 * per turn of the event loop.  Returns the events for the bufferevent's
 * event callback, 0 if none; the bytes read are added to *got.
 */
static short
relay_tls_read(struct bufferevent *bev, struct wsg_peer *p, size_t *got)
{
	struct evbuffer		*in = bufferevent_get_input(bev);
	struct evbuffer_iovec	 v;
	size_t			 queued, want;
	short			 ev = 0;
	int			 r;

	queued = evbuffer_get_length(in);
	if (p->p_other->p_bev != NULL)
		queued += evbuffer_get_length(bufferevent_get_output(
		    p->p_other->p_bev));
	want = p->p_last_read < WSG_READ_SMALL ? WSG_READ_SMALL :
	    WSG_READ_CHUNK;
	evbuffer_unfreeze(in, 0);
	for (;;) {
		if (evbuffer_reserve_space(in, want, &v, 1) != 1) {
			/* As OpenSSL failing to allocate would be. */
			p->p_tls_err[0] = ERR_PACK(ERR_LIB_SSL, 0,
			    ERR_R_MALLOC_FAILURE);
			p->p_tls_nerr = 1;
			ev = BEV_EVENT_ERROR | BEV_EVENT_READING;
			break;
		}
		if (v.iov_len > WSG_READ_CHUNK)
			v.iov_len = WSG_READ_CHUNK;
		relay_tls_errclear();
		r = SSL_read(p->p_ssl, v.iov_base, (int)v.iov_len);
		if (r > 0) {
			v.iov_len = (size_t)r;
			evbuffer_commit_space(in, &v, 1);
			*got += (size_t)r;
			/*
			 * Nothing held back: stop rather than have the socket
			 * say EAGAIN; if it has more, it is still readable.
			 */
			if (!SSL_has_pending(p->p_ssl) ||
			    *got >= WSG_READ_MORE ||
			    queued + *got + WSG_READ_CHUNK > WSG_HIGH_WATER)
				break;
			/*
			 * The rest of a record goes in a chain its size; the
			 * next one starts in what is left of this chain.
			 */
			want = (size_t)SSL_pending(p->p_ssl);
			if (want < WSG_READ_MIN)
				want = WSG_READ_MIN;
			continue;
		}
		evbuffer_commit_space(in, &v, 0);
		switch (SSL_get_error(p->p_ssl, r)) {
		case SSL_ERROR_WANT_READ:
			break;
		case SSL_ERROR_WANT_WRITE:
			/* It must send first and the socket is full. */
			p->p_tls_rbow = 1;
			event_del(&bev->ev_read);
			if (!event_pending(&bev->ev_write, EV_WRITE, NULL))
				event_add(&bev->ev_write, NULL);
			break;
		case SSL_ERROR_ZERO_RETURN:
			ev = BEV_EVENT_EOF | BEV_EVENT_READING;
			break;
		default:
			/* A reset, EOF without close_notify, bad records. */
			relay_tls_keep_errors(p);
			ev = BEV_EVENT_ERROR | BEV_EVENT_READING;
			break;
		}
		break;
	}
	evbuffer_freeze(in, 0);
	p->p_last_read = *got;
	return (ev);
}

/*
 * Move a TLS 1.3 client half to wsgate's own record layer (tls13.c): a
 * plain socket bufferevent on the same descriptor takes over the
 * buffered bytes, and the SSL is freed.  When OpenSSL still holds
 * something, or any step fails, the half stays with OpenSSL.
 */
static void
relay_tls13_takeover(struct wsg_peer *p)
{
	struct bufferevent	*old = p->p_bev, *nb;
	struct evbuffer		*oin, *oout, *nin, *nout;
	struct wsg_tls13	*t;
	int			 rc;

	if ((t = tls13_takeover(p->p_ssl)) == NULL)
		return;
	if ((nb = bufferevent_socket_new(bufferevent_get_base(old), p->p_fd,
	    0)) == NULL) {
		tls13_abandon(t, p->p_fd);
		/* Its keys are gone with the capture: OpenSSL goes on. */
		return;
	}
	oin = bufferevent_get_input(old);
	oout = bufferevent_get_output(old);
	nin = bufferevent_get_input(nb);
	nout = bufferevent_get_output(nb);
	evbuffer_unfreeze(nin, 0);
	evbuffer_unfreeze(oout, 1);
	rc = evbuffer_add_buffer(nin, oin);
	if (rc == 0)
		rc = evbuffer_add_buffer(nout, oout);
	evbuffer_freeze(oout, 1);
	evbuffer_freeze(nin, 0);
	if (rc != 0) {
		/* Moving chains allocates nothing; put back what moved. */
		evbuffer_unfreeze(nin, 0);
		(void)evbuffer_prepend_buffer(oin, nin);
		evbuffer_freeze(nin, 0);
		bufferevent_free(nb);
		tls13_abandon(t, p->p_fd);
		return;
	}
	bufferevent_free(old);
	SSL_free(p->p_ssl);
	p->p_ssl = NULL;
	p->p_tls13 = t;
	p->p_bev = nb;
	log_debug("conn %llu: TLS records now sealed and opened by wsgate",
	    (unsigned long long)p->p_session->s_id);
}

/* The TLS 1.3 half's reader (ours): see relay_tls_read(). */
static short
relay_tls13_read(struct bufferevent *bev, struct wsg_peer *p, size_t *got)
{
	struct evbuffer	*in = bufferevent_get_input(bev);
	size_t		 queued, want = WSG_READ_MORE;
	unsigned long	 e = 0;
	int		 rc;

	queued = evbuffer_get_length(in);
	if (p->p_other->p_bev != NULL)
		queued += evbuffer_get_length(bufferevent_get_output(
		    p->p_other->p_bev));
	if (queued + want > WSG_HIGH_WATER)
		want = queued < WSG_HIGH_WATER - WSG_READ_CHUNK ?
		    WSG_HIGH_WATER - queued : WSG_READ_CHUNK;
	evbuffer_unfreeze(in, 0);
	rc = tls13_read(p->p_tls13, bufferevent_getfd(bev), in, want, got,
	    &e);
	evbuffer_freeze(in, 0);
	p->p_last_read = *got;
	if (tls13_write_pending(p->p_tls13) &&
	    (bufferevent_get_enabled(bev) & EV_WRITE))
		event_add(&bev->ev_write, NULL);
	if (rc == TLS13_EOF)
		return (BEV_EVENT_EOF | BEV_EVENT_READING);
	if (rc == TLS13_ERROR) {
		if (p->p_tls_nerr < WSG_TLS_ERRORS)
			p->p_tls_err[p->p_tls_nerr++] = e;
		return (BEV_EVENT_ERROR | BEV_EVENT_READING);
	}
	return (0);
}

/* The TLS 1.3 half's writer (ours): see relay_tls_write(). */
static short
relay_tls13_write(struct bufferevent *bev, struct wsg_peer *p, size_t *done)
{
	struct evbuffer	*out = bufferevent_get_output(bev);
	unsigned long	 e = 0;
	int		 rc;

	evbuffer_unfreeze(out, 1);
	rc = tls13_write(p->p_tls13, bufferevent_getfd(bev), out,
	    WSG_READ_MORE, done, &e);
	evbuffer_freeze(out, 1);
	if (rc == TLS13_ERROR) {
		if (p->p_tls_nerr < WSG_TLS_ERRORS)
			p->p_tls_err[p->p_tls_nerr++] = e;
		return (BEV_EVENT_ERROR | BEV_EVENT_WRITING);
	}
	if (evbuffer_get_length(out) == 0 && !tls13_write_pending(p->p_tls13))
		event_del(&bev->ev_write);
	return (0);
}

/*
 * The reader and the writer of a TLS half (the client on a TLS listener)
 * once a session is open, in place of libevent's.  They are assigned to
 * the bufferevent's own events and keep its conventions, as
 * relay_plain_read_cb() does; each can run the other's half when OpenSSL
 * needs the socket the other way first.  Errors are kept in the peer for
 * session_tls_error().
 */
static void
relay_tls_io(struct bufferevent *bev, short what)
{
	struct wsg_peer	*p = NULL;
	size_t		 got = 0, done = 0;
	short		 ev = 0;

	bufferevent_getcb(bev, NULL, NULL, NULL, (void **)&p);
	if (p == NULL || !RELAY_TLS(p))
		return;
	/* Its end was read: it is only written to (relay_half_closed()). */
	if (p->p_rd_ended && (what & EV_READ)) {
		bufferevent_disable(bev, EV_READ);
		return;
	}
	bufferevent_incref(bev);
	if (what & EV_TIMEOUT)
		ev = BEV_EVENT_TIMEOUT | (what & EV_READ ? BEV_EVENT_READING :
		    BEV_EVENT_WRITING);
	else if (p->p_tls13 != NULL) {
		/* Ours needs no crossing over: its key updates queue. */
		if (!(what & EV_READ))
			ev = relay_tls13_write(bev, p, &done);
		else if (bufferevent_get_enabled(bev) & EV_READ)
			ev = relay_tls13_read(bev, p, &got);
	} else if (what & EV_READ) {
		if (p->p_tls_wbor) {
			p->p_tls_wbor = 0;
			if (!(bufferevent_get_enabled(bev) & EV_READ))
				event_del(&bev->ev_read);
			if (bufferevent_get_enabled(bev) & EV_WRITE)
				event_add(&bev->ev_write, NULL);
			ev = relay_tls_write(bev, p, &done);
		}
		if (ev == 0 && (bufferevent_get_enabled(bev) & EV_READ))
			ev = relay_tls_read(bev, p, &got);
	} else {
		if (p->p_tls_rbow) {
			p->p_tls_rbow = 0;
			if (bufferevent_get_enabled(bev) & EV_READ)
				event_add(&bev->ev_read, NULL);
			ev = relay_tls_read(bev, p, &got);
		}
		if (ev == 0)
			ev = relay_tls_write(bev, p, &done);
	}
	if (ev & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		bufferevent_disable(bev, EV_READ | EV_WRITE);
	if (got > 0)
		bufferevent_trigger(bev, EV_READ, 0);
	if (done > 0)
		bufferevent_trigger(bev, EV_WRITE, 0);
	if (ev != 0)
		bufferevent_trigger_event(bev, ev, 0);
	bufferevent_decref(bev);
}

static void
relay_tls_read_cb(evutil_socket_t fd, short what, void *arg)
{
	relay_reads++;
	relay_tls_io(arg, what | EV_READ);
}

static void
relay_tls_write_cb(evutil_socket_t fd, short what, void *arg)
{
	relay_tls_io(arg, what & ~EV_READ);
}

/*
 * The next slice of a held message's match (relay_match_later()), in a
 * turn of the loop of its own.  Once it is judged, reading goes on, and
 * an end of the side seen meanwhile is handled as it would have been
 * then: after the message and what followed it.
 */
static void
relay_match_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct wsg_peer		*p = arg;
	struct wsg_session	*s = p->p_session;
	struct wsg_match	*m = p->p_match;
	struct wsg_regex_budget	 rb = m->m_rb;
	size_t			 re = m->m_re, start = m->m_start, len;
	short			 what = m->m_what;
	const char		*text;
	int			 r = -1, err = m->m_errno;

	(void)fd;
	(void)ev;
	/* m is not looked at again: closing the session may free it. */
	p->p_matching = 0;
	m->m_what = 0;
	if (s->s_state == WSG_S_OPEN && p->p_other->p_bev != NULL) {
		regex_budget_resume(&rb);
		len = evbuffer_get_length(p->p_text);
		/* Already in one piece: nothing is copied. */
		text = (const char *)evbuffer_pullup(p->p_text, -1);
		r = relay_judge_held(p, bufferevent_get_output(
		    p->p_other->p_bev), text, len, &rb, re, start);
		if (r == 1) {
			/* An end seen before still waits for the verdict. */
			p->p_match->m_what = what;
			p->p_match->m_errno = err;
			return;
		}
	}
	if (r == -1) {
		/* The session ended: the end goes where it would now. */
		if (what != 0 && s->s_state == WSG_S_CLOSED &&
		    p->p_bev != NULL) {
			errno = err;
			session_event_cb(p->p_bev, what, p);
		}
		return;
	}
	relay_kick(p->p_other);
	if (what != 0) {
		relay_end(p, what, err, 1);
		return;
	}
	if (!p->p_paused)
		bufferevent_enable(p->p_bev, EV_READ);
	relay_process(p);
	relay_kick(p->p_other);
	session_tls_kick(p);
}

/* New bytes from either half of an open session. */
static void
relay_read_cb(struct bufferevent *bev, void *arg)
{
	struct wsg_peer	*p = arg;

	(void)bev;
	relay_process(p);
	relay_kick(p->p_other);
	session_tls_kick(p);
}

/* EOF or error on a half of an open session. */
static void
relay_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	relay_end(arg, what, errno, 1);
}

/*
 * A client that ended its side cleanly right after its close frame, a
 * ws:// one with a FIN (shutdown(2)), a TLS 1.3 one with close_notify
 * (perhaps a FIN too), may still read what we send (TCP and RFC 8446 6.1
 * allow a half-closure) and is owed a close frame in answer (RFC 6455
 * 5.5.1): its half stays, written to and no longer read, while the close
 * goes on as for any client that closed first.  The upstream's answer is
 * relayed to it (relay_control()), or ours goes once the close wait runs
 * out (session_close_waited()) or the upstream hangs up (relay_end());
 * then our close_notify, if TLS, and FIN (session_peer_flushed()).  A
 * client that closed its socket outright resets our first write, which
 * ends the half as any reset does.  TLS 1.2 wants
 * the close_notify answered at once, pending writes dropped (RFC 5246
 * 7.2.1): not there, nor after a truncation (a FIN without close_notify)
 * or an alert.  Returns 1 if the half stays.
 */
static int
relay_half_closed(struct wsg_peer *p, short what)
{
	struct wsg_session	*s = p->p_session;

	if (p->p_rd_ended)
		return (!(what & BEV_EVENT_ERROR));
	if (!p->p_is_client || !p->p_close_rcvd || p->p_close_sent ||
	    (what & BEV_EVENT_ERROR) || !(what & BEV_EVENT_EOF) ||
	    s->s_state != WSG_S_OPEN || p->p_bev == NULL ||
	    p->p_other->p_bev == NULL)
		return (0);
	if (p->p_tls13 != NULL) {
		if (!tls13_notified(p->p_tls13))
			return (0);
	} else if (p->p_ssl != NULL && (
	    SSL_version(p->p_ssl) != TLS1_3_VERSION ||
	    SSL_get_shutdown(p->p_ssl) != SSL_RECEIVED_SHUTDOWN))
		return (0);
	p->p_rd_ended = 1;
	if (p->p_paused) {
		p->p_paused = 0;
		if (p->p_gone_ev != NULL)
			event_del(p->p_gone_ev);
	}
	/* The reader turned both off at the end. */
	bufferevent_disable(p->p_bev, EV_READ);
	bufferevent_enable(p->p_bev, EV_WRITE);
	relay_write_now(p);
	relay_kick(p->p_other);
	return (1);
}

/*
 * The end of a half, read by the relay (wait 1), or found while it was
 * paused (relay_gone_cb(), wait 0).
 */
static void
relay_end(struct wsg_peer *p, short what, int err, int wait)
{
	struct wsg_session	*s = p->p_session;
	unsigned long		 e;
	char			 why[32];
	int			 local;

	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	p->p_end_what = 0;
	/*
	 * What arrived before the end is relayed first, or counted.  A
	 * message whose match goes on (relay_judge_held()) is judged
	 * first, and the end is handled after it (relay_match_cb()).
	 */
	relay_process(p);
	if (p->p_matching) {
		p->p_match->m_what = what;
		p->p_match->m_errno = err;
		return;
	}
	/*
	 * The read that brought a clean end (TLS close_notify) filled the
	 * far side, and frames are left, its close frame perhaps: they go
	 * once the far side has drained (relay_drained_cb()), the end
	 * after them.  relay_gone_cb() still notices a reset meanwhile.
	 */
	if (wait && p->p_paused && !(what & BEV_EVENT_ERROR) &&
	    s->s_state == WSG_S_OPEN && p->p_bev != NULL &&
	    evbuffer_get_length(bufferevent_get_input(p->p_bev)) > 0) {
		p->p_end_what = what;
		p->p_end_errno = err;
		return;
	}
	if (relay_half_closed(p, what))
		return;
	e = session_tls_error(p, &local);
	if (!local && (what & BEV_EVENT_ERROR) && err == ENOMEM &&
	    s->s_state == WSG_S_OPEN) {
		/* Our input could not grow: neither side is to blame. */
		relay_count_cut(p);
		log_warnx("conn %llu: internal_error: out of memory reading "
		    "from the %s", (unsigned long long)s->s_id, p->p_name);
		session_fail(s, "internal_error", 1011, 1011, 1011);
		return;
	}
	/* A hang-up without close_notify is common; a bad record is not. */
	if (e != 0 && !local && ERR_GET_LIB(e) == ERR_LIB_SSL &&
	    ERR_GET_REASON(e) != SSL_R_UNEXPECTED_EOF_WHILE_READING)
		log_info("conn %llu: %s TLS error: %s",
		    (unsigned long long)s->s_id, p->p_name,
		    tls_reason(e, why, sizeof(why)));
	relay_count_cut(p);
	session_tls_answer_close(p);
	session_peer_free(p);
	if (s->s_state != WSG_S_OPEN)
		return;
	if (local) {
		/* Our TLS failed (no memory), not the client. */
		session_tls_failed(s, e);
	} else if (p->p_close_rcvd) {
		/* It closed properly, then hung up: a server does that. */
		s->s_close_code = s->s_close_first->p_close_code;
		session_close(s, s->s_close_first->p_is_client ?
		    "client_closed" : "upstream_closed");
	} else if (p->p_other->p_close_rcvd) {
		/*
		 * It hung up on the close frame relayed to it instead of
		 * answering it: the close the other side asked for is done
		 * all the same, and that side gets the answer it is owed
		 * (RFC 6455 5.5.1), its own code echoed.
		 */
		s->s_close_code = s->s_close_first->p_close_code;
		relay_send_close(p->p_other, s->s_close_code == 1005 ? 1000 :
		    s->s_close_code, NULL);
		session_close(s, s->s_close_first->p_is_client ?
		    "client_closed" : "upstream_closed");
	} else if (p->p_is_client) {
		log_info("conn %llu: client_dropped: client dropped without a "
		    "close frame", (unsigned long long)s->s_id);
		session_fail(s, "client_dropped", 1006, 0, 1001);
	} else {
		log_info("conn %llu: upstream_error: upstream dropped "
		    "without a close frame", (unsigned long long)s->s_id);
		session_fail(s, "upstream_error", 1014, 1014, 0);
	}
}
