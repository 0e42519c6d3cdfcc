/*
 * The frame relay: parse and check every frame read from one half of a
 * session and move it to the other half, without copying payloads that
 * need no inspection.
 */
#ifndef WSG_RELAY_H
#define WSG_RELAY_H

#include <stddef.h>
#include <stdint.h>

struct bufferevent;
struct wsg_peer;
struct wsg_session;

/*
 * Read events the relay has handled on this thread: a worker with
 * busy_poll keeps polling while it moves.
 */
extern __thread unsigned long relay_reads;

/* Set up the relay state and callbacks of both halves of an open session. */
void	relay_start(struct wsg_peer *, struct wsg_peer *);

/* Process whatever is buffered from this half. */
void	relay_process(struct wsg_peer *);

/*
 * Queue a close frame with code and reason to this half, unless one was
 * sent already.  While a streamed frame is on its way there, the close
 * is due after it instead (relay_finish()).
 */
void	relay_send_close(struct wsg_peer *, uint16_t, const char *);

/*
 * Once the session is closed, move the rest of a frame streamed from this
 * half to the other, then the close due there.  Returns 1 while more of
 * the frame is awaited, 0 when what this half sends is to be discarded.
 */
int	relay_finish(struct wsg_peer *);

/*
 * As the session closes: a frame of this half counted but not moved, not
 * all of it there yet, counts what arrived of it in the bytes (the access
 * log's and the metrics').
 */
void	relay_count_cut(struct wsg_peer *);

/*
 * What a half still has to take: its output here and the kernel's send
 * queue.
 */
size_t	relay_backlog(struct wsg_peer *);

/*
 * Has a side whose reading is paused seen the far side take some of what
 * it owes since the last look?  Then that side is held back, not idle.
 */
int	relay_paused_moving(struct wsg_session *);

#endif /* WSG_RELAY_H */
