/*
 * The admin listener: GET /metrics (Prometheus text) and GET /healthz.
 */
#ifndef WSG_ADMIN_H
#define WSG_ADMIN_H

struct event_base;
struct sockaddr;
struct wsg_admin;

/* Listen on addr; NULL (logged) on failure.  draining points at the
 * worker's flag, read by /healthz. */
struct wsg_admin	*admin_start(struct event_base *, const struct sockaddr *,
			    int, const char *, const int *);
void			 admin_stop(struct wsg_admin *);

#endif /* WSG_ADMIN_H */
