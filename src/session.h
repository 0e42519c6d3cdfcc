/*
 * A session: one client connection and, once its upgrade is accepted, one
 * upstream connection.  The session owns both halves; each half's
 * bufferevent owns its socket and SSL, and nothing else closes them.
 */
#ifndef WSG_SESSION_H
#define WSG_SESSION_H

#include <sys/queue.h>
#include <sys/socket.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "frame.h"
#include "ratelimit.h"
#include "regex.h"

/* OpenSSL errors kept for a TLS half, at most. */
#define WSG_TLS_ERRORS	4

struct bufferevent;
struct event;
struct evbuffer;
struct wsg_config;
struct wsg_jwt_claims;
struct wsg_listener_conf;
struct wsg_route;
struct wsg_server;
struct wsg_worker;

enum wsg_session_state {
	WSG_S_HANDSHAKE,	/* TLS and the client's request head */
	WSG_S_ADMITTING,	/* waiting for the shared rate-limit store */
	WSG_S_UPSTREAM,		/* connecting, waiting for the upstream's 101 */
	WSG_S_OPEN,		/* relaying frames */
	WSG_S_CLOSED		/* flushing and lingering, then freed */
};

/* One half of a session; the same struct for both sides. */
struct wsg_peer {
	struct wsg_session	*p_session;
	struct wsg_peer		*p_other;
	struct bufferevent	*p_bev;
	SSL			*p_ssl;		/* owned: freed with the session */
	struct wsg_tls13	*p_tls13;	/* owned likewise: in place of it */
	int			 p_fd;		/* owned likewise, or -1 */
	int			 p_is_client;
	const char		*p_name;	/* "client" or "upstream" */

	/* Frame relay state, for frames read from this side. */
	struct wsg_frame_limits	 p_limits;
	struct wsg_msg_state	 p_msg;
	struct wsg_frame	 p_frame;	/* current frame */
	int			 p_have_frame;	/* p_frame parsed and checked */
	uint64_t		 p_fwd_left;	/* payload still to stream */
	uint8_t			 p_remask[4];	/* client's key ^ ours, see relay */
	int			 p_paused;	/* reading stopped: far side full */
	struct event		*p_gone_ev;	/* EV_CLOSED while paused */
	size_t			 p_pause_owed;	/* far side's backlog, last seen */
	short			 p_end_what;	/* its end, read while paused */
	int			 p_end_errno;	/* and its errno */
	size_t			 p_linger_owed;	/* its backlog, closed, last seen */
	/* deny_regex: a text message is held whole until it is judged. */
	struct evbuffer		*p_text;	/* its unmasked payload */

	int			 p_close_rcvd;	/* this side sent a close */
	int			 p_close_sent;	/* we sent a close to this side */
	uint16_t		 p_close_code;	/* code of the close it sent */
	uint16_t		 p_close_due;	/* to send once a frame ends */
	const char		*p_close_why;	/* its reason */
	int			 p_rd_ended;	/* its end read after its close */

	uint64_t		 p_frames;	/* frames read from this side */
	uint64_t		 p_bytes;	/* bytes read from this side */
	struct wsg_bucket	 p_msg_bucket;	/* messages_per_connection */
	struct wsg_bucket	 p_byte_bucket;	/* bytes_per_connection */
	size_t			 p_discarded;	/* thrown away while lingering */
	size_t			 p_last_read;	/* what the relay last read */
	/* The relay's TLS reader and writer (relay.c). */
	size_t			 p_tls_retry;	/* a write to repeat, its size */
	int			 p_tls_rbow;	/* a read waits to write */
	int			 p_tls_wbor;	/* a write waits to read */
	int			 p_tls_nerr;
	unsigned long		 p_tls_err[WSG_TLS_ERRORS];
	/*
	 * deny_regex: a held message whose match took more than a slice
	 * goes on from an event of its own (relay.c), reading stopped.
	 * Its state is allocated the first time, so that the sessions
	 * that never need it (nearly all) stay small.
	 */
	int			 p_matching;	/* its match is not done */
	struct wsg_match	*p_match;	/* made the first time */
};

/* A held message's match going on in slices (relay.c). */
struct wsg_match {
	struct event		*m_ev;
	struct wsg_regex_budget	 m_rb;		/* its time so far */
	size_t			 m_re;		/* the pattern it is at */
	size_t			 m_start;	/* and the start position */
	short			 m_what;	/* EOF or error meanwhile */
	int			 m_errno;	/* and its errno */
};

struct wsg_session {
	TAILQ_ENTRY(wsg_session)	 s_entry;
	uint64_t			 s_id;
	struct wsg_worker		*s_worker;
	struct wsg_config		*s_conf;	/* held reference */
	const struct wsg_listener_conf	*s_listener;
	const struct wsg_route		*s_route;
	struct wsg_server		*s_server;	/* chosen upstream server */
	size_t				 s_server_tries;
	uint64_t			 s_server_tried;	/* bit per index */
	uint64_t			 s_up_deadline;	/* monotonic ms */
	uint64_t			 s_try_until;	/* its share ends */

	enum wsg_session_state		 s_state;
	struct wsg_peer			 s_client;
	struct wsg_peer			 s_upstream;
	struct event			*s_timer;	/* per-state timeout */
	struct event			*s_free_ev;	/* the deferred free */
	struct event			*s_expiry;	/* token exp, or NULL */
	struct event			*s_proxy_ev;	/* PROXY, TLS hello */
	int				 s_fd;		/* until the bev owns it */
	uint8_t				 s_first_byte;	/* TLS: first byte */
	uint64_t			 s_last_active;	/* ms, for idle */
	size_t				 s_parsed_len;	/* head bytes parsed */

	/* What the access log says. */
	struct sockaddr_storage		 s_addr;
	char				 s_client_ip[64];
	int				 s_client_port;
	char				*s_origin;
	char				*s_path;
	char				*s_host;
	char				*s_subprotocol;
	char				*s_user;	/* JWT sub */
	char				 s_country[3];	/* "" when unknown */
	char				*s_tls_subject;	/* client certificate */
	struct wsg_jwt_claims		*s_claims;
	struct timespec			 s_start;
	int				 s_status;	/* HTTP status sent, or 0 */
	const char			*s_reason;	/* first reason, static */
	int				 s_close_code;	/* 0: none */
	struct wsg_peer			*s_close_first;	/* side that closed first */
	uint64_t			 s_close_out;	/* close went out, ms */
	uint64_t			 s_closed_at;	/* session_close(), ms */
	int				 s_logged;
	int				 s_freeing;	/* free scheduled */
	int				 s_server_held;	/* counted in srv_active */
	int				 s_up_connected;
	int				 s_up_answered;	/* sent a byte */
	int				 s_draining;	/* shutdown is queued */
	int				 s_admitted;	/* counted in admitted */
	struct wsg_rlkey		 s_rlkey;	/* k_tracked: release */
	struct wsg_rlkey		 s_pending_key;	/* max_pending_per_ip,
							   likewise */
	int				 s_store_pending;
	int				 s_store_leased;

	/* Upgrade in progress. */
	char				 s_client_accept[29];
	char				 s_upstream_key[25];
	struct evbuffer			*s_upreq;	/* request for upstream */
	int				 s_interim;	/* 1xx answers skipped */
	char				**s_protocols;	/* offered, allowed */
	size_t				 s_nprotocols;
};

/* Take a new client connection from a listener. */
void	session_accept(struct wsg_worker *, const struct wsg_listener_conf *,
	    int, struct sockaddr *, int);

/*
 * End a session for a reason (a reason code of SPEC.md): the one way out.
 * Idempotent; the first reason wins.  Writes the access-log line, flushes
 * and closes both halves, and frees the session later.
 */
void	session_close(struct wsg_session *, const char *);

/*
 * Write a closed session's access-log line unless a streamed frame is
 * still being finished toward one side; relay_finish() calls it again.
 */
void	session_finished(struct wsg_session *);

/*
 * Send close frames (code 0: none) to the client and the upstream, record
 * close_code for the log, then session_close().
 */
void	session_fail(struct wsg_session *, const char *, int, int, int);

/* Refuse an upgrade with an HTTP status and reason, then close. */
void	session_refuse(struct wsg_session *, int, const char *,
	    const char *);

/* Refuse with 500 internal_error, logging why (a resource ran out). */
void	session_refuse_internal(struct wsg_session *, const char *);

/*
 * The upstream's 101 was checked: send ours, the gateway's own fields
 * followed by those in the buffer (the upstream's end-to-end fields,
 * whole lines; moved out of it, NULL for none), and start relaying.
 */
void	session_open(struct wsg_session *, const char *,
	    struct evbuffer *);

/*
 * Free one half (its socket is gone or done); when both are gone the
 * session is freed from the event loop.
 */
void	session_peer_free(struct wsg_peer *);

/*
 * Empty the OpenSSL errors kept for a TLS half after an error event (0 for
 * none or a plaintext half).  Returns the one to report: the first failure
 * of the gateway itself (OpenSSL could not allocate, or an internal error,
 * *local set to 1) or else the first of the TLS library, else the first
 * one (*local 0).
 */
unsigned long	session_tls_error(struct wsg_peer *, int *);

/*
 * The client's TLS failed in the gateway itself (error e from
 * session_tls_error, its half already freed): log it and end the session
 * with internal_error, 1011 to the upstream once the session is open.
 */
void	session_tls_failed(struct wsg_session *, unsigned long);
/*
 * Read on, in a coming turn of the loop, what OpenSSL has already taken
 * from a peer's socket (read-ahead) but not yet handed out: call after
 * reading from a TLS peer, and wherever its reading is enabled again.
 */
void	session_tls_kick(struct wsg_peer *);
/*
 * A TLS half whose peer ended TLS cleanly (its close_notify read) gets our
 * close_notify in answer; call before freeing it.  Nothing otherwise.
 */
void	session_tls_answer_close(struct wsg_peer *);

/* The event callback of a closing session's halves and of the client
 * before the upgrade. */
void	session_event_cb(struct bufferevent *, short, void *);

/*
 * A close frame was relayed to the other side of the one that closed
 * first: bound the wait for its answer.
 */
void	session_close_relayed(struct wsg_session *);

/* Drain: close a session for shutdown now. */
void	session_shutdown(struct wsg_session *);
/* Drain: close an open session for shutdown in ms milliseconds. */
void	session_drain(struct wsg_session *, uint64_t);

/* Milliseconds on the monotonic clock (CLOCK_MONOTONIC_COARSE). */
uint64_t	session_now_ms(struct wsg_session *);

#endif /* WSG_SESSION_H */
