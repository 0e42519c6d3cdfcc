/*
 * The upstream half of a session: choosing a server, connecting, sending
 * the upgrade request and checking the 101.
 */
#ifndef WSG_UPSTREAM_H
#define WSG_UPSTREAM_H

struct evbuffer;
struct wsg_config;
struct wsg_session;
struct wsg_http_request;

/*
 * Build the upstream request for an accepted client request: a fresh key,
 * the path and query, Host, Origin, allowed subprotocols, end-to-end
 * headers, and X-Forwarded-*.  Returns -1 on allocation failure.
 */
int	upstream_build_request(struct wsg_session *,
	    const struct wsg_http_request *);

/* Pick a server and connect; on failure the session is refused. */
void	upstream_connect(struct wsg_session *);

/* Append wsgate_upstream_server_up for every server of conf. */
void	upstream_metrics(struct evbuffer *, const struct wsg_config *);

/* The connect_timeout passed before the 101: refuse with 504. */
void	upstream_timed_out(struct wsg_session *);

/* A session using a server ended: release it for least_conn. */
void	upstream_release(struct wsg_session *);

#endif /* WSG_UPSTREAM_H */
