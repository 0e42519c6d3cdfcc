/*
 * The process: workers with their event loops, listeners, signals, the
 * current configuration generation, and draining on shutdown.
 */
#ifndef WSG_SERVER_H
#define WSG_SERVER_H

#include <sys/queue.h>
#include <pthread.h>
#include <stdint.h>

struct event_base;
struct event;
struct evbuffer;
struct wsg_config;
struct wsg_session;
struct wsg_listener;
struct wsg_store;

TAILQ_HEAD(wsg_session_list, wsg_session);

struct wsg_worker {
	int			 w_index;
	pthread_t		 w_thread;
	struct event_base	*w_base;
	struct wsg_config	*w_conf;	/* for new sessions; set under w_lock */
	struct wsg_session_list	 w_sessions;
	size_t			 w_nsessions;
	struct wsg_listener	**w_listeners;
	size_t			 w_nlisteners;
	int			 w_draining;
	struct event		*w_drain_timer;
	struct wsg_store	*w_store;	/* shared limits, or NULL */
	int			 w_done;	/* atomic: loop has ended */
	size_t			 w_cut;		/* sessions cut off at the end */
	/* Messages from the main thread, under w_lock. */
	pthread_mutex_t		 w_lock;
	int			 w_msg_fd;	/* eventfd: wake up */
	struct event		*w_msg_ev;
	struct wsg_config	*w_msg_conf;	/* a new generation ... */
	int			*w_msg_fds;	/* ... and its new sockets */
	int			 w_msg_drain;
	int			 w_msg_stop;	/* second signal: stop now */
};

/*
 * Run the gateway on a loaded configuration until it has drained; takes
 * over the caller's reference.
 */
int	server_run(struct wsg_config *);

/* A session ended and was freed: maybe finish draining. */
void	server_session_gone(struct wsg_worker *);

/* Append the process's own metrics (the rate-limit table). */
void	server_metrics(struct evbuffer *);

/* The process-wide per-address rate-limit table. */
struct wsg_rltable	*server_rltable(void);

/* A connection id unique in this process. */
uint64_t	server_next_id(void);

#endif /* WSG_SERVER_H */
