/*
 * Process-wide counters, exported in the Prometheus text format on the
 * admin listener.  Counters are relaxed atomics: cheap on the hot path and
 * summed only when scraped.
 */
#ifndef WSG_METRICS_H
#define WSG_METRICS_H

#include <stdint.h>

struct evbuffer;
struct wsg_config;

enum wsg_metric_dir {
	WSG_DIR_C2U = 0,	/* client_to_upstream */
	WSG_DIR_U2C		/* upstream_to_client */
};

/* A handshake was judged: 101 sent, or refused with this reason. */
void	metrics_handshake(int, const char *, double);
/* An upgraded session ended for this reason. */
void	metrics_close(const char *);
void	metrics_active(int);
void	metrics_frames(enum wsg_metric_dir, uint64_t, uint64_t);
void	metrics_upstream_failure(const char *);
/* Every upstream of a configuration gets its failure series, at 0. */
void	metrics_upstreams(const struct wsg_config *);
/* Start-up: the start time, and when the configuration came in. */
void	metrics_start(void);
/* A reload succeeded (1) or failed (0). */
void	metrics_reload(int);
/* Whether the running configuration waits for a restart (server.c). */
void	metrics_restart_pending(int);
/* The shared rate-limit store went up (1) or down (0). */
void	metrics_store_transition(int);
/* A client's TLS handshake completed, resuming a session (1) or not. */
void	metrics_tls_handshake(int);
/*
 * The number of workers, once at start-up, and a client connection taken
 * on (1) or let go (-1) by worker i, from accept to close.
 */
void	metrics_workers(int);
void	metrics_worker_conn(int, int);
/* Counters of anything else worth graphing ("store_transitions", ...). */

/*
 * Append the whole exposition; draining tells /healthz's state.  The main
 * thread only: what the other modules add to the scrape goes through
 * metrics_printf() and metrics_label(), and metrics_complete() says
 * whether every line since metrics_render() made it in.
 */
void	metrics_render(struct evbuffer *, int);
void	metrics_printf(struct evbuffer *, const char *, ...)
	    __attribute__((__format__(__printf__, 2, 3)));
/* Append a label value, quoted and escaped as the text format wants. */
void	metrics_label(struct evbuffer *, const char *);
int	metrics_complete(void);

#endif /* WSG_METRICS_H */
