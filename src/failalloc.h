/*
 * Allocation-failure injection for tests (configure --enable-failalloc).
 * With WSGATE_FAILALLOC="ONE_IN:START_MS:DURATION_MS" in the environment,
 * one allocation in ONE_IN made by OpenSSL on a worker thread fails,
 * during DURATION_MS starting START_MS after start-up (libevent's too with
 * a field ":ev", only libevent's buffers and not OpenSSL's with ":evbuf",
 * the main thread's too with ":main"; see failalloc.c).
 * Start-up and other builds are never affected.
 */
#ifndef WSG_FAILALLOC_H
#define WSG_FAILALLOC_H

/* Install the hooks; must run before any OpenSSL or libevent call. */
void	failalloc_init(void);
/* This thread serves connections: failures may be injected here. */
void	failalloc_arm_thread(void);
/* Was the build made with injection support? */
int	failalloc_available(void);

#endif /* WSG_FAILALLOC_H */
