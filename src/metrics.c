/*
 * Metrics.  Reason codes are a closed set (SPEC.md's tables plus the few
 * this implementation adds), so their counters are fixed arrays indexed by
 * the code's position; anything unknown counts as "other".
 */
#include "autoconf.h"

#include <sys/resource.h>
#include <sys/time.h>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "config.h"
#include "metrics.h"

static const char *const metrics_reasons[] = {
	"bad_request", "bad_method", "bad_version", "headers_too_large",
	"no_route", "ip_denied", "geo_denied", "origin_denied",
	"auth_missing", "auth_invalid", "auth_expired", "subprotocol_denied",
	"rate_connections", "rate_concurrent", "upstream_unavailable",
	"upstream_bad_handshake", "upstream_refused", "handshake_timeout",
	"overloaded", "store_unavailable", "frame_too_large",
	"message_too_large", "protocol_error", "invalid_utf8",
	"binary_denied", "rate_messages", "rate_bytes", "content_denied",
	"token_expired", "idle_timeout", "shutdown", "upstream_error",
	"client_closed", "upstream_closed", "client_dropped",
	"handshake_failed", "bad_proxy_header", "internal_error", "other"
};
#define METRICS_NREASONS	(sizeof(metrics_reasons) / sizeof(char *))

static const double metrics_buckets[] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};
#define METRICS_NBUCKETS	(sizeof(metrics_buckets) / sizeof(double))

#define METRICS_MAX_UPSTREAMS	256

static uint64_t	metrics_accepted;
static uint64_t	metrics_rejected[METRICS_NREASONS];
static uint64_t	metrics_closed[METRICS_NREASONS];
static int64_t	metrics_active_now;
/*
 * Frame and byte counters move on every read, from every worker: each
 * thread counts in its own block (no shared cache line), and a scrape
 * sums the blocks.
 */
struct metrics_thread {
	uint64_t	mt_frames[2];
	uint64_t	mt_bytes[2];
};
#define METRICS_MAX_THREADS	512
static __thread struct metrics_thread	*metrics_mine;
static struct metrics_thread		*metrics_threads[METRICS_MAX_THREADS];
static size_t				 metrics_nthreads;
static struct metrics_thread		 metrics_spill;	/* past the cap */
static uint64_t	metrics_reloads[2];
static int	metrics_reload_ok = 1;		/* atomic: the last one's */
static int	metrics_restart = 0;		/* atomic: a restart is due */
static int64_t	metrics_config_time;		/* atomic: when it changed */
static double	metrics_start_time;		/* set once, at start-up */
/*
 * /proc/self/fd and /proc/self/statm, opened at start-up and read again
 * by each scrape: a scrape that opened them itself failed with EMFILE
 * when every descriptor was taken, and left out the very series that
 * show it.  NULL and -1 where they could not be: a scrape opens its own.
 */
static DIR	*metrics_fd_dir;
static int	 metrics_statm_fd = -1;
/*
 * A line of the scrape being rendered could not be added (no memory): the
 * scrape must not go out with series missing.  Main thread only.
 */
static int	metrics_short;
static uint64_t	metrics_store[2];
static uint64_t	metrics_tls[2];	/* full, resumed */
#define METRICS_MAX_WORKERS	256	/* config.c's maximum */
static int64_t	metrics_worker_conns[METRICS_MAX_WORKERS];
static int	metrics_nworkers;
/* No separate count: _count is the +Inf bucket, read in the same pass. */
static uint64_t	metrics_hist[METRICS_NBUCKETS + 1];
static uint64_t	metrics_hist_sum_us;

static pthread_mutex_t	 metrics_up_lock = PTHREAD_MUTEX_INITIALIZER;
static char		*metrics_up_names[METRICS_MAX_UPSTREAMS];
static uint64_t		 metrics_up_failures[METRICS_MAX_UPSTREAMS];
static size_t		 metrics_nup;

/* Index of a reason code in the fixed table. */
static size_t
metrics_reason_index(const char *reason)
{
	size_t	i;

	for (i = 0; i < METRICS_NREASONS - 1; i++)
		if (strcmp(metrics_reasons[i], reason) == 0)
			return (i);
	return (METRICS_NREASONS - 1);
}

/* Add to a counter from any thread. */
static void
metrics_add(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

/* Read a counter from any thread. */
static uint64_t
metrics_get(const uint64_t *c)
{
	return (__atomic_load_n(c, __ATOMIC_RELAXED));
}

void
metrics_handshake(int accepted, const char *reason, double seconds)
{
	size_t	i;

	if (accepted)
		metrics_add(&metrics_accepted, 1);
	else
		metrics_add(&metrics_rejected[metrics_reason_index(reason)], 1);
	for (i = 0; i < METRICS_NBUCKETS; i++)
		if (seconds <= metrics_buckets[i])
			break;
	metrics_add(&metrics_hist[i], 1);
	metrics_add(&metrics_hist_sum_us, (uint64_t)(seconds * 1e6));
}

void
metrics_close(const char *reason)
{
	metrics_add(&metrics_closed[metrics_reason_index(reason)], 1);
}

void
metrics_active(int delta)
{
	__atomic_fetch_add(&metrics_active_now, delta, __ATOMIC_RELAXED);
}

void
metrics_workers(int n)
{
	metrics_nworkers = n < METRICS_MAX_WORKERS ? n : METRICS_MAX_WORKERS;
}

void
metrics_worker_conn(int worker, int delta)
{
	if (worker >= 0 && worker < METRICS_MAX_WORKERS)
		__atomic_fetch_add(&metrics_worker_conns[worker], delta,
		    __ATOMIC_RELAXED);
}

/* This thread's counter block, registered on first use. */
static struct metrics_thread *
metrics_thread_block(void)
{
	struct metrics_thread	*mt;

	if (metrics_mine != NULL)
		return (metrics_mine);
	mt = calloc(1, sizeof(*mt));
	pthread_mutex_lock(&metrics_up_lock);
	if (mt != NULL && metrics_nthreads < METRICS_MAX_THREADS)
		metrics_threads[metrics_nthreads++] = mt;
	else {
		free(mt);
		mt = &metrics_spill;
	}
	pthread_mutex_unlock(&metrics_up_lock);
	metrics_mine = mt;
	return (mt);
}

void
metrics_frames(enum wsg_metric_dir dir, uint64_t frames, uint64_t bytes)
{
	struct metrics_thread	*mt = metrics_thread_block();

	if (frames)
		metrics_add(&mt->mt_frames[dir], frames);
	if (bytes)
		metrics_add(&mt->mt_bytes[dir], bytes);
}

/* Sum one frame or byte counter over every thread's block. */
static uint64_t
metrics_sum(int bytes, int dir)
{
	uint64_t	sum;
	size_t		i;

	pthread_mutex_lock(&metrics_up_lock);
	sum = bytes ? metrics_get(&metrics_spill.mt_bytes[dir]) :
	    metrics_get(&metrics_spill.mt_frames[dir]);
	for (i = 0; i < metrics_nthreads; i++)
		sum += bytes ? metrics_get(&metrics_threads[i]->mt_bytes[dir]) :
		    metrics_get(&metrics_threads[i]->mt_frames[dir]);
	pthread_mutex_unlock(&metrics_up_lock);
	return (sum);
}

/* Count failures of an upstream; 0 shows its series at 0 from now on. */
static void
metrics_upstream_add(const char *name, uint64_t n)
{
	size_t	i;

	pthread_mutex_lock(&metrics_up_lock);
	for (i = 0; i < metrics_nup; i++)
		if (strcmp(metrics_up_names[i], name) == 0)
			break;
	if (i == metrics_nup && metrics_nup < METRICS_MAX_UPSTREAMS &&
	    (metrics_up_names[i] = strdup(name)) != NULL)
		metrics_nup++;
	if (i < metrics_nup)
		metrics_up_failures[i] += n;
	pthread_mutex_unlock(&metrics_up_lock);
}

void
metrics_upstream_failure(const char *name)
{
	metrics_upstream_add(name, 1);
}

/*
 * The series are the configured upstreams: a name a reload removed goes
 * (a session of the old generation that fails later may bring it back
 * until the next reload), so that names renamed over many reloads never
 * fill the table and leave a new upstream without its series.
 */
void
metrics_upstreams(const struct wsg_config *conf)
{
	size_t	i, j, n;

	pthread_mutex_lock(&metrics_up_lock);
	for (i = n = 0; i < metrics_nup; i++) {
		for (j = 0; j < conf->c_nupstreams; j++)
			if (strcmp(metrics_up_names[i],
			    conf->c_upstreams[j]->up_name) == 0)
				break;
		if (j == conf->c_nupstreams) {
			free(metrics_up_names[i]);
			continue;
		}
		metrics_up_names[n] = metrics_up_names[i];
		metrics_up_failures[n++] = metrics_up_failures[i];
	}
	metrics_nup = n;
	pthread_mutex_unlock(&metrics_up_lock);
	for (i = 0; i < conf->c_nupstreams; i++)
		metrics_upstream_add(conf->c_upstreams[i]->up_name, 0);
}

void
metrics_start(void)
{
	struct timespec	ts;
	int		fd;

	clock_gettime(CLOCK_REALTIME, &ts);
	metrics_start_time = ts.tv_sec + ts.tv_nsec / 1e9;
	__atomic_store_n(&metrics_config_time, (int64_t)ts.tv_sec,
	    __ATOMIC_RELAXED);
	if ((fd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) != -1 && (metrics_fd_dir = fdopendir(fd)) == NULL)
		close(fd);
	metrics_statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
}

void
metrics_restart_pending(int pending)
{
	__atomic_store_n(&metrics_restart, pending ? 1 : 0, __ATOMIC_RELAXED);
}

void
metrics_reload(int ok)
{
	metrics_add(&metrics_reloads[ok ? 0 : 1], 1);
	__atomic_store_n(&metrics_reload_ok, ok ? 1 : 0, __ATOMIC_RELAXED);
	if (ok)
		__atomic_store_n(&metrics_config_time, (int64_t)time(NULL),
		    __ATOMIC_RELAXED);
}

void
metrics_store_transition(int up)
{
	metrics_add(&metrics_store[up ? 0 : 1], 1);
}

void
metrics_tls_handshake(int resumed)
{
	metrics_add(&metrics_tls[resumed ? 1 : 0], 1);
}

void
metrics_printf(struct evbuffer *b, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	if (evbuffer_add_vprintf(b, fmt, ap) == -1)
		metrics_short = 1;
	va_end(ap);
}

void
metrics_label(struct evbuffer *b, const char *v)
{
	if (evbuffer_add(b, "\"", 1) == -1)
		metrics_short = 1;
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			metrics_printf(b, "\\%c", *v);
		else if (*v == '\n') {
			if (evbuffer_add(b, "\\n", 2) == -1)
				metrics_short = 1;
		} else if (evbuffer_add(b, v, 1) == -1)
			metrics_short = 1;
	}
	if (evbuffer_add(b, "\"", 1) == -1)
		metrics_short = 1;
}

int
metrics_complete(void)
{
	return (!metrics_short);
}

/* Open descriptors, from /proc; -1 where there is none. */
static long
metrics_open_fds(void)
{
	DIR		*d = metrics_fd_dir;
	struct dirent	*e;
	long		 n = 0;

	if (d != NULL)
		rewinddir(d);
	else if ((d = opendir("/proc/self/fd")) == NULL)
		return (-1);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	if (d != metrics_fd_dir) {
		closedir(d);
		n--;		/* not the one reading the folder */
	}
	return (n);
}

/* Virtual and resident size in pages, from /proc; -1 where there is none. */
static int
metrics_statm(unsigned long *vsz, unsigned long *rss)
{
	char	buf[256];
	ssize_t	n;
	int	fd = metrics_statm_fd;

	if (fd == -1 && (fd = open("/proc/self/statm", O_RDONLY |
	    O_CLOEXEC)) == -1)
		return (-1);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (fd != metrics_statm_fd)
		close(fd);
	if (n <= 0)
		return (-1);
	buf[n] = '\0';
	return (sscanf(buf, "%lu %lu", vsz, rss) == 2 ? 0 : -1);
}

/*
 * The process series Prometheus clients export under these names: CPU
 * time, memory, descriptors and the start time.
 */
static void
metrics_process(struct evbuffer *b)
{
	struct rusage	ru;
	struct rlimit	rl;
	unsigned long	vsz, rss;
	long		page = sysconf(_SC_PAGESIZE), fds;

	if (getrusage(RUSAGE_SELF, &ru) == 0)
		metrics_printf(b,
		    "# HELP process_cpu_seconds_total User and system CPU "
		    "time spent.\n"
		    "# TYPE process_cpu_seconds_total counter\n"
		    "process_cpu_seconds_total %.6f\n",
		    ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
		    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	if (metrics_statm(&vsz, &rss) == 0 && page > 0)
		metrics_printf(b,
		    "# HELP process_resident_memory_bytes Resident memory "
		    "size.\n"
		    "# TYPE process_resident_memory_bytes gauge\n"
		    "process_resident_memory_bytes %llu\n"
		    "# HELP process_virtual_memory_bytes Virtual memory "
		    "size.\n"
		    "# TYPE process_virtual_memory_bytes gauge\n"
		    "process_virtual_memory_bytes %llu\n",
		    (unsigned long long)rss * (unsigned long long)page,
		    (unsigned long long)vsz * (unsigned long long)page);
	if ((fds = metrics_open_fds()) >= 0)
		metrics_printf(b,
		    "# HELP process_open_fds Open file descriptors.\n"
		    "# TYPE process_open_fds gauge\n"
		    "process_open_fds %ld\n", fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		metrics_printf(b,
		    "# HELP process_max_fds The soft limit of open file "
		    "descriptors.\n"
		    "# TYPE process_max_fds gauge\n"
		    "process_max_fds %llu\n", rl.rlim_cur == RLIM_INFINITY ?
		    (unsigned long long)-1 : (unsigned long long)rl.rlim_cur);
	metrics_printf(b,
	    "# HELP process_start_time_seconds Start time since the Unix "
	    "epoch.\n"
	    "# TYPE process_start_time_seconds gauge\n"
	    "process_start_time_seconds %.3f\n", metrics_start_time);
}

void
metrics_render(struct evbuffer *b, int draining)
{
	static const char *const dirs[] = { "client_to_upstream",
	    "upstream_to_client" };
	uint64_t	cum = 0, rej = 0;
	size_t		i;

	metrics_short = 0;
	for (i = 0; i < METRICS_NREASONS; i++)
		rej += metrics_get(&metrics_rejected[i]);
	metrics_printf(b,
	    "# HELP wsgate_handshakes_total Upgrade requests judged.\n"
	    "# TYPE wsgate_handshakes_total counter\n"
	    "wsgate_handshakes_total{result=\"accepted\"} %llu\n"
	    "wsgate_handshakes_total{result=\"rejected\"} %llu\n",
	    (unsigned long long)metrics_get(&metrics_accepted),
	    (unsigned long long)rej);
	metrics_printf(b,
	    "# HELP wsgate_rejections_total Refused handshakes by reason.\n"
	    "# TYPE wsgate_rejections_total counter\n");
	for (i = 0; i < METRICS_NREASONS; i++)
		metrics_printf(b,
		    "wsgate_rejections_total{reason=\"%s\"} %llu\n",
		    metrics_reasons[i],
		    (unsigned long long)metrics_get(&metrics_rejected[i]));
	metrics_printf(b,
	    "# HELP wsgate_closes_total Upgraded sessions ended, by reason.\n"
	    "# TYPE wsgate_closes_total counter\n");
	for (i = 0; i < METRICS_NREASONS; i++)
		metrics_printf(b,
		    "wsgate_closes_total{reason=\"%s\"} %llu\n",
		    metrics_reasons[i],
		    (unsigned long long)metrics_get(&metrics_closed[i]));
	metrics_printf(b,
	    "# HELP wsgate_active_connections Upgraded sessions open now.\n"
	    "# TYPE wsgate_active_connections gauge\n"
	    "wsgate_active_connections %lld\n",
	    (long long)__atomic_load_n(&metrics_active_now, __ATOMIC_RELAXED));
	metrics_printf(b,
	    "# HELP wsgate_worker_connections Client connections each worker "
	    "holds now, from accept to close.\n"
	    "# TYPE wsgate_worker_connections gauge\n");
	for (i = 0; i < (size_t)metrics_nworkers; i++)
		metrics_printf(b,
		    "wsgate_worker_connections{worker=\"%zu\"} %lld\n", i,
		    (long long)__atomic_load_n(&metrics_worker_conns[i],
		    __ATOMIC_RELAXED));
	metrics_printf(b,
	    "# HELP wsgate_frames_total Frames relayed.\n"
	    "# TYPE wsgate_frames_total counter\n");
	for (i = 0; i < 2; i++)
		metrics_printf(b,
		    "wsgate_frames_total{direction=\"%s\"} %llu\n", dirs[i],
		    (unsigned long long)metrics_sum(0, (int)i));
	metrics_printf(b,
	    "# HELP wsgate_bytes_total Frame bytes relayed.\n"
	    "# TYPE wsgate_bytes_total counter\n");
	for (i = 0; i < 2; i++)
		metrics_printf(b,
		    "wsgate_bytes_total{direction=\"%s\"} %llu\n", dirs[i],
		    (unsigned long long)metrics_sum(1, (int)i));
	metrics_printf(b,
	    "# HELP wsgate_upstream_connect_failures_total Failed connects.\n"
	    "# TYPE wsgate_upstream_connect_failures_total counter\n");
	pthread_mutex_lock(&metrics_up_lock);
	for (i = 0; i < metrics_nup; i++) {
		metrics_printf(b, "wsgate_upstream_connect_failures_total"
		    "{upstream=");
		metrics_label(b, metrics_up_names[i]);
		metrics_printf(b, "} %llu\n",
		    (unsigned long long)metrics_up_failures[i]);
	}
	pthread_mutex_unlock(&metrics_up_lock);
	metrics_printf(b,
	    "# HELP wsgate_config_reloads_total Configuration reloads.\n"
	    "# TYPE wsgate_config_reloads_total counter\n"
	    "wsgate_config_reloads_total{result=\"ok\"} %llu\n"
	    "wsgate_config_reloads_total{result=\"failed\"} %llu\n",
	    (unsigned long long)metrics_get(&metrics_reloads[0]),
	    (unsigned long long)metrics_get(&metrics_reloads[1]));
	metrics_printf(b,
	    "# HELP wsgate_config_last_reload_successful 1 when the last "
	    "reload (or the start) succeeded.\n"
	    "# TYPE wsgate_config_last_reload_successful gauge\n"
	    "wsgate_config_last_reload_successful %d\n"
	    "# HELP wsgate_config_last_reload_success_timestamp_seconds "
	    "When the running configuration was put in place.\n"
	    "# TYPE wsgate_config_last_reload_success_timestamp_seconds "
	    "gauge\n"
	    "wsgate_config_last_reload_success_timestamp_seconds %lld\n",
	    __atomic_load_n(&metrics_reload_ok, __ATOMIC_RELAXED),
	    (long long)__atomic_load_n(&metrics_config_time,
	    __ATOMIC_RELAXED));
	metrics_printf(b,
	    "# HELP wsgate_config_restart_pending 1 when the running "
	    "configuration sets a key that only a restart applies.\n"
	    "# TYPE wsgate_config_restart_pending gauge\n"
	    "wsgate_config_restart_pending %d\n",
	    __atomic_load_n(&metrics_restart, __ATOMIC_RELAXED));
	metrics_printf(b,
	    "# HELP wsgate_handshake_duration_seconds From accept to the "
	    "101 or the refusal.\n"
	    "# TYPE wsgate_handshake_duration_seconds histogram\n");
	for (i = 0; i < METRICS_NBUCKETS; i++) {
		cum += metrics_get(&metrics_hist[i]);
		metrics_printf(b, "wsgate_handshake_duration_seconds_bucket"
		    "{le=\"%g\"} %llu\n", metrics_buckets[i],
		    (unsigned long long)cum);
	}
	cum += metrics_get(&metrics_hist[METRICS_NBUCKETS]);
	metrics_printf(b,
	    "wsgate_handshake_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
	    "wsgate_handshake_duration_seconds_sum %.6f\n"
	    "wsgate_handshake_duration_seconds_count %llu\n",
	    (unsigned long long)cum,
	    metrics_get(&metrics_hist_sum_us) / 1e6,
	    (unsigned long long)cum);
	metrics_printf(b,
	    "# HELP wsgate_store_transitions_total The shared rate-limit "
	    "store coming up or going down (per worker connection).\n"
	    "# TYPE wsgate_store_transitions_total counter\n"
	    "wsgate_store_transitions_total{to=\"up\"} %llu\n"
	    "wsgate_store_transitions_total{to=\"down\"} %llu\n",
	    (unsigned long long)metrics_get(&metrics_store[0]),
	    (unsigned long long)metrics_get(&metrics_store[1]));
	metrics_printf(b,
	    "# HELP wsgate_tls_handshakes_total TLS handshakes completed, "
	    "by whether they resumed a session.\n"
	    "# TYPE wsgate_tls_handshakes_total counter\n"
	    "wsgate_tls_handshakes_total{resumed=\"no\"} %llu\n"
	    "wsgate_tls_handshakes_total{resumed=\"yes\"} %llu\n",
	    (unsigned long long)metrics_get(&metrics_tls[0]),
	    (unsigned long long)metrics_get(&metrics_tls[1]));
	metrics_printf(b,
	    "# HELP wsgate_draining 1 while the gateway drains.\n"
	    "# TYPE wsgate_draining gauge\n"
	    "wsgate_draining %d\n", draining ? 1 : 0);
	metrics_printf(b,
	    "# HELP wsgate_build_info The version running.\n"
	    "# TYPE wsgate_build_info gauge\n"
	    "wsgate_build_info{version=");
	metrics_label(b, PACKAGE_VERSION);
	metrics_printf(b, "} 1\n");
	metrics_process(b);
}
