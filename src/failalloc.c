/*
 * Allocation-failure injection.  OpenSSL and libevent both let a program
 * replace their allocator; in a --enable-failalloc build these hooks fail
 * a pseudo-random share of the allocations made on worker threads during
 * a window, so tests can check that a failed allocation on a connection's
 * path costs that connection only.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "failalloc.h"

#ifdef WSG_FAILALLOC

#include <event2/event.h>
#include <openssl/crypto.h>

static uint64_t		 failalloc_one_in;
static size_t		 failalloc_ev_min;	/* smaller ones never fail */
static uint64_t		 failalloc_start_ns, failalloc_end_ns;
static __thread int	 failalloc_armed;
static __thread uint64_t failalloc_rng;

/* Monotonic nanoseconds. */
static uint64_t
failalloc_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec);
}

/* Should this allocation fail? */
static int
failalloc_fail(void)
{
	uint64_t	now;

	if (!failalloc_armed || failalloc_one_in == 0)
		return (0);
	now = failalloc_now();
	if (now < failalloc_start_ns || now >= failalloc_end_ns)
		return (0);
	failalloc_rng ^= failalloc_rng << 13;
	failalloc_rng ^= failalloc_rng >> 7;
	failalloc_rng ^= failalloc_rng << 17;
	if (failalloc_rng % failalloc_one_in != 0)
		return (0);
	/* As malloc(3) says why: callers that look at errno see ENOMEM. */
	errno = ENOMEM;
	return (1);
}

static void *
failalloc_ev_malloc(size_t n)
{
	return (n >= failalloc_ev_min && failalloc_fail() ? NULL : malloc(n));
}

static void *
failalloc_ev_realloc(void *p, size_t n)
{
	return (n >= failalloc_ev_min && failalloc_fail() ? NULL :
	    realloc(p, n));
}

static void
failalloc_ev_free(void *p)
{
	free(p);
}

static void *
failalloc_ssl_malloc(size_t n, const char *file, int line)
{
	return (failalloc_fail() ? NULL : malloc(n));
}

static void *
failalloc_ssl_realloc(void *p, size_t n, const char *file, int line)
{
	return (failalloc_fail() ? NULL : realloc(p, n));
}

static void
failalloc_ssl_free(void *p, const char *file, int line)
{
	free(p);
}

void
failalloc_init(void)
{
	const char		*env = getenv("WSGATE_FAILALLOC");
	unsigned long long	 one_in = 0, start = 0, dur = 0;
	uint64_t		 now;

	if (env == NULL || sscanf(env, "%llu:%llu:%llu", &one_in, &start,
	    &dur) != 3 || one_in == 0)
		return;
	now = failalloc_now();
	failalloc_one_in = one_in;
	failalloc_start_ns = now + start * 1000000ULL;
	failalloc_end_ns = failalloc_start_ns + dur * 1000000ULL;
	/*
	 * With "evbuf" OpenSSL's allocations do not fail: OpenSSL 3.0 leaks
	 * on some of its own failure paths (its name tables), which would
	 * hide what these runs look at, wsgate's handling of its buffers.
	 */
	if (strstr(env, ":evbuf") == NULL)
		CRYPTO_set_mem_functions(failalloc_ssl_malloc,
		    failalloc_ssl_realloc, failalloc_ssl_free);
	/*
	 * libevent's allocations are injected only when asked for ("ev" as
	 * a fourth field): libevent 2.1.12 itself crashes on some of its own
	 * failures (bufferevent_openssl_new_impl frees a half-made
	 * bufferevent), which no caller can prevent.  With "evbuf" only
	 * allocations of a buffer chain's size or more fail: evbuffer data,
	 * which wsgate's own code must cope with, and not libevent's small
	 * structures (a watermark callback it does not check).
	 */
	if (strstr(env, ":evbuf") != NULL)
		failalloc_ev_min = 1024;
	if (strstr(env, ":ev") != NULL)
		event_set_mem_functions(failalloc_ev_malloc,
		    failalloc_ev_realloc, failalloc_ev_free);
	/*
	 * The main thread (reloads, the admin listener) only when asked for
	 * with "main": its window must open after start-up.
	 */
	if (strstr(env, ":main") != NULL)
		failalloc_arm_thread();
}

void
failalloc_arm_thread(void)
{
	failalloc_armed = 1;
	failalloc_rng = (uint64_t)(uintptr_t)&failalloc_armed ^
	    failalloc_now() ^ 0x9e3779b97f4a7c15ULL;
	if (failalloc_rng == 0)
		failalloc_rng = 1;
}

int
failalloc_available(void)
{
	return (1);
}

#else /* !WSG_FAILALLOC */

void
failalloc_init(void)
{
}

void
failalloc_arm_thread(void)
{
}

int
failalloc_available(void)
{
	return (0);
}

#endif /* WSG_FAILALLOC */
