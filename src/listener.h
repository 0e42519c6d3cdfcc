/*
 * Listening sockets: bind each configured listener and hand accepted
 * connections to new sessions.
 */
#ifndef WSG_LISTENER_H
#define WSG_LISTENER_H

struct wsg_worker;
struct wsg_listener_conf;
struct wsg_listener;

/*
 * Is the address free?  SO_REUSEPORT would let a second gateway (or any
 * process of the same user) share a port silently; a plain bind first
 * makes that the error it should be.  -1 (logged) if it is taken.
 */
int			 listener_probe(const struct wsg_listener_conf *);
/*
 * Make a listening socket for a listener (SO_REUSEPORT: each worker has
 * its own); -1 (logged) on failure.
 */
int			 listener_bind(const struct wsg_listener_conf *);
/* Accept on a bound socket in a worker's loop; NULL (logged) on failure. */
struct wsg_listener	*listener_start(struct wsg_worker *,
			    const struct wsg_listener_conf *, int);
/* The configuration a listener uses for new connections. */
const struct wsg_listener_conf	*listener_conf(const struct wsg_listener *);
/* After a reload: new connections use this listener configuration. */
void			 listener_set_conf(struct wsg_listener *,
			    const struct wsg_listener_conf *);
/*
 * Before a reload closes a listener's socket: take the connections that
 * wait in its backlog, which the close would reset, as sessions of the
 * listener's own configuration.
 */
void			 listener_flush(struct wsg_listener *);
/* Stop accepting and close the socket. */
void			 listener_stop(struct wsg_listener *);

#endif /* WSG_LISTENER_H */
