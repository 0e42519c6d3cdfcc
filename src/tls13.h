/*
 * TLS 1.3 record protection for open sessions, in place of OpenSSL's
 * record layer once the handshake is over (what kernel TLS does, in user
 * space).  OpenSSL does the handshake; its traffic secrets and record
 * counts are captured on the way (tls13_ctx_setup()), and when a session
 * starts relaying, tls13_takeover() derives the keys and the SSL object
 * can be freed: an idle connection then holds a few hundred bytes of
 * record state instead of OpenSSL's 11 KB, and every record costs one
 * AEAD call with no record-layer machinery around it.
 */
#ifndef WSG_TLS13_H
#define WSG_TLS13_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <openssl/ssl.h>

struct wsg_tls13;

/*
 * Install the capture callbacks (key log and message callback) on a
 * server context.  Returns 0, or -1 if the process-wide set-up failed,
 * in which case sessions keep OpenSSL's record layer.
 */
int	 tls13_ctx_setup(SSL_CTX *);

/*
 * Record state for a finished TLS 1.3 handshake whose SSL holds nothing
 * unread and nothing unsent, or NULL (another version, a key update
 * already done, a capture that failed, no memory): the session then goes
 * on with OpenSSL.  Either way the capture callbacks are removed from
 * the SSL, and the session ticket held back at the handshake is made:
 * queued in the record state, to leave with the first records sealed,
 * or left to OpenSSL's next write.  On success the caller stops using
 * the SSL for I/O.
 */
struct wsg_tls13 *tls13_takeover(SSL *);
void	 tls13_free(struct wsg_tls13 *);

/*
 * Give a session taken over back to its SSL (the caller could not set
 * up the rest): the session's ticket, sealed for it, is sent first.
 */
void	 tls13_abandon(struct wsg_tls13 *, int);

/* tls13_read() results besides 0 (read something, or nothing yet). */
/*
 * TLS13_EOF: a close_notify came, or any call after the input ended.  A
 * hang-up without close_notify is first a TLS13_ERROR, *err saying
 * SSL_R_UNEXPECTED_EOF_WHILE_READING, as OpenSSL reports it.
 */
#define TLS13_EOF	1
#define TLS13_ERROR	(-1)	/* *err says what, as an OpenSSL error */

/*
 * Read once from the socket, at most about `want` bytes, and add the
 * plaintext of every whole record to `dst` (*got grows by its length).
 * A record's remainder waits in the state for the next read.  Alerts and
 * key updates are handled here; a key update the peer asks for queues
 * ours (tls13_write() sends it).
 */
int	 tls13_read(struct wsg_tls13 *, int, struct evbuffer *, size_t,
	    size_t *, unsigned long *);

/*
 * Send what is still queued, then seal and send `src` in records of up
 * to 16 KiB until it is empty, the socket is full or about `max` bytes
 * went out.  *sent grows by the bytes written to the socket.  Once 16 GiB
 * of plaintext or 2^24 records were sealed under one key, a key update
 * of ours goes before the next record.  Returns 0 or TLS13_ERROR.
 */
int	 tls13_write(struct wsg_tls13 *, int, struct evbuffer *, size_t,
	    size_t *, unsigned long *);

/*
 * Seal at most `bytes` of plaintext or `records` records under one write
 * key before our key update, for the tests; 0 restores a default.  Set
 * before any worker runs.
 */
void	 tls13_set_rekey(uint64_t, uint64_t);

/* Bytes sealed but not yet written, or a key update to send. */
int	 tls13_write_pending(const struct wsg_tls13 *);

/* Best effort, never blocking: a close_notify alert. */
void	 tls13_close_notify(struct wsg_tls13 *, int);

/* The same, only if the client's close_notify was read: its answer. */
void	 tls13_answer_close(struct wsg_tls13 *, int);

/* Was the client's close_notify read? */
int	 tls13_notified(const struct wsg_tls13 *);

/* Free this thread's cipher contexts (at a worker's end). */
void	 tls13_thread_done(void);

/* Records this thread sealed or opened with gcm.c, for the tests. */
uint64_t tls13_fast_records(void);

#endif /* WSG_TLS13_H */
