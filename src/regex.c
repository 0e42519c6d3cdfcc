/*
 * PCRE2 wrapper: compile with JIT when available, match under limits.
 * See regex.h for the thread-safety contract.
 */
#include "autoconf.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "regex.h"

struct wsg_regex {
	pcre2_code		*re_code;
	pcre2_match_context	*re_mctx;	/* read-only once built */
	char			*re_pattern;
	int			 re_jit;	/* JIT compile succeeded */
	int			 re_anchored;	/* one start position */
};

/* Write a PCRE2 error code as text, prefixed, into err. */
static void
regex_error(char *err, size_t errlen, const char *prefix, int code,
    size_t offset)
{
	PCRE2_UCHAR	msg[WSG_REGEX_ERR_MAX];

	if (err == NULL || errlen == 0)
		return;
	if (prefix != NULL)
		snprintf(err, errlen, "%s", prefix);
	else if (pcre2_get_error_message(code, msg, sizeof(msg)) < 0)
		snprintf(err, errlen, "offset %zu: error %d", offset, code);
	else
		snprintf(err, errlen, "offset %zu: %s", offset, (char *)msg);
}

/* Compile pattern; the match context carries every limit. */
struct wsg_regex *
regex_compile(const char *pattern, char *err, size_t errlen)
{
	struct wsg_regex	*re;
	size_t			 plen, eoff = 0;
	uint32_t		 opts = 0;
	int			 ecode = 0;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (pattern == NULL) {
		regex_error(err, errlen, "no pattern", 0, 0);
		return NULL;
	}
	plen = strnlen(pattern, WSG_REGEX_MAX_PATTERN + 1);
	if (plen > WSG_REGEX_MAX_PATTERN) {
		regex_error(err, errlen, "pattern too long", 0, 0);
		return NULL;
	}
	if ((re = calloc(1, sizeof(*re))) == NULL) {
		regex_error(err, errlen, "out of memory", 0, 0);
		return NULL;
	}
	if ((re->re_pattern = strdup(pattern)) == NULL)
		goto nomem;
	/* \C can split a UTF-8 character: never useful, sometimes unsafe. */
	re->re_code = pcre2_compile((PCRE2_SPTR)pattern, plen,
	    PCRE2_UTF | PCRE2_NEVER_BACKSLASH_C | PCRE2_USE_OFFSET_LIMIT,
	    &ecode, &eoff, NULL);
	if (re->re_code == NULL) {
		regex_error(err, errlen, NULL, ecode, eoff);
		regex_free(re);
		return NULL;
	}
	if (pcre2_pattern_info(re->re_code, PCRE2_INFO_ALLOPTIONS, &opts) ==
	    0 && (opts & PCRE2_ANCHORED))
		re->re_anchored = 1;
	/* JIT is an optimisation: without it the interpreter does the work. */
	re->re_jit = pcre2_jit_compile(re->re_code, PCRE2_JIT_COMPLETE) == 0;

	if ((re->re_mctx = pcre2_match_context_create(NULL)) == NULL)
		goto nomem;
	pcre2_set_match_limit(re->re_mctx, WSG_REGEX_MATCH_LIMIT);
	pcre2_set_depth_limit(re->re_mctx, WSG_REGEX_DEPTH_LIMIT);
	pcre2_set_heap_limit(re->re_mctx, WSG_REGEX_HEAP_LIMIT);
	/*
	 * No JIT stack is assigned: JIT then uses 32 KiB of the calling
	 * thread's own stack, which is both the JIT stack limit and what
	 * keeps concurrent matches from sharing a stack.
	 */
	return re;

nomem:
	regex_error(err, errlen, "out of memory", 0, 0);
	regex_free(re);
	return NULL;
}

/* CPU time this thread has used, in microseconds. */
static uint64_t
regex_cpu_us(void)
{
	struct timespec	ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == -1)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Monotonic time, in microseconds: a vDSO call, unlike regex_cpu_us(). */
static uint64_t
regex_wall_us(void)
{
	struct timespec	ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/*
 * Has the subject of rb taken all its time (-1), or, with slice, the
 * current slice of it (1, and the slice counts as used)?  A thread uses
 * no more CPU time than passes, so the thread's CPU clock, a system
 * call, is read only once the monotonic one says a limit may have been
 * reached: a message checked against several patterns pays one such
 * call, not one more per pattern.
 */
static int
regex_budget_check(struct wsg_regex_budget *rb, int slice)
{
	uint64_t	limit, wait, cpu;

	if (!rb->rb_timed)
		return 0;
	limit = rb->rb_limit * 1000;
	wait = rb->rb_used < limit ? limit - rb->rb_used : 0;
	slice = slice && !rb->rb_fresh;
	if (slice && wait > rb->rb_slice)
		wait = rb->rb_slice;
	if (regex_wall_us() - rb->rb_wall < wait)
		return 0;
	cpu = regex_cpu_us() - rb->rb_start;
	if (rb->rb_used + cpu >= limit)
		return -1;
	if (slice && cpu >= rb->rb_slice) {
		rb->rb_used += cpu;
		return 1;
	}
	return 0;
}

/*
 * A millisecond per WSG_REGEX_BYTES_PER_MS bytes and pattern (50 ns a
 * byte, ten times what a plain pattern costs), so that a long message
 * that is only long is not refused on a slow CPU, and the fixed part
 * once: per pattern, a message that cost each of 64 patterns a little
 * under it would have passed them all after seconds of the worker.
 */
void
regex_budget_init(struct wsg_regex_budget *rb, size_t len, size_t npatterns)
{
	rb->rb_limit = WSG_REGEX_TIME_LIMIT_MS +
	    (uint64_t)len * npatterns / WSG_REGEX_BYTES_PER_MS;
	rb->rb_timed = npatterns > 1 || len > WSG_REGEX_WINDOW;
	rb->rb_used = 0;
	rb->rb_slice = WSG_REGEX_SLICE_US;
	rb->rb_fresh = 1;
	rb->rb_start = rb->rb_timed ? regex_cpu_us() : 0;
	rb->rb_wall = rb->rb_timed ? regex_wall_us() : 0;
}

/* The next slice starts now; see regex.h. */
void
regex_budget_resume(struct wsg_regex_budget *rb)
{
	rb->rb_fresh = 1;
	if (!rb->rb_timed)
		return;
	rb->rb_start = regex_cpu_us();
	rb->rb_wall = regex_wall_us();
}

/* regex_match_long(): the slice is used up, go on from *startp. */
#define REGEX_RC_AGAIN	INT_MIN

/*
 * Search a long subject WSG_REGEX_WINDOW start positions at a time (an
 * offset limit per call), from *startp.  The match limit counts afresh
 * at each start position, so one call over the whole subject could cost
 * its length times the limit: seconds of a worker for a 1 MiB message.
 * Between calls the thread's CPU time is held to the subject's budget,
 * and, with slice, to a slice: then *startp is where the next window
 * starts, and REGEX_RC_AGAIN is returned.  The first call checks the
 * UTF-8 of the whole subject if asked to; the windows after it start on
 * character boundaries.
 */
static int
regex_match_long(const struct wsg_regex *re, PCRE2_SPTR subject, size_t len,
    uint32_t opts, pcre2_match_data *md, struct wsg_regex_budget *rb,
    size_t *startp, int slice)
{
	pcre2_match_context	*mctx;
	size_t			 start = *startp;
	int			 rc, spent;

	if ((mctx = pcre2_match_context_copy(re->re_mctx)) == NULL)
		return PCRE2_ERROR_NOMEMORY;
	for (;;) {
		pcre2_set_offset_limit(mctx, len - start <= WSG_REGEX_WINDOW ?
		    PCRE2_UNSET : start + WSG_REGEX_WINDOW - 1);
		rc = pcre2_match(re->re_code, subject, len, start, opts, md,
		    mctx);
		rb->rb_fresh = 0;
		if (rc != PCRE2_ERROR_NOMATCH ||
		    len - start <= WSG_REGEX_WINDOW)
			break;
		if ((spent = regex_budget_check(rb, slice)) == -1) {
			rc = PCRE2_ERROR_MATCHLIMIT;
			break;
		}
		opts |= PCRE2_NO_UTF_CHECK;
		start += WSG_REGEX_WINDOW;
		while (start < len && (subject[start] & 0xc0) == 0x80)
			start++;
		if (spent) {
			*startp = start;
			rc = REGEX_RC_AGAIN;
			break;
		}
	}
	pcre2_match_context_free(mctx);
	return rc;
}

/* Match with flags; see regex.h for the results. */
int
regex_match_flags(const struct wsg_regex *re, const char *subject,
    size_t len, int flags)
{
	struct wsg_regex_budget	rb;

	if (re == NULL || (subject == NULL && len > 0))
		return -1;
	regex_budget_init(&rb, len, 1);
	return regex_match_budget(re, subject, len, flags, &rb);
}

/* Match under a budget shared by several patterns; see regex.h. */
int
regex_match_budget(const struct wsg_regex *re, const char *subject,
    size_t len, int flags, struct wsg_regex_budget *rb)
{
	size_t	start = 0;

	return regex_match_from(re, subject, len, flags & ~WSG_REGEX_SLICE,
	    rb, &start);
}

/* The same from a start position, perhaps in slices; see regex.h. */
int
regex_match_from(const struct wsg_regex *re, const char *subject,
    size_t len, int flags, struct wsg_regex_budget *rb, size_t *start)
{
	pcre2_match_data	*md;
	uint32_t		 opts = 0;
	int			 rc, slice = (flags & WSG_REGEX_SLICE) != 0;

	if (re == NULL || (subject == NULL && len > 0))
		return -1;
	if ((rc = regex_budget_check(rb, slice)) != 0)
		return rc == 1 ? WSG_REGEX_AGAIN : -1;
	if (subject == NULL)
		subject = "";
	/* Past the first window, the whole subject was checked. */
	if ((flags & WSG_REGEX_VALID_UTF8) || *start > 0)
		opts |= PCRE2_NO_UTF_CHECK;
	/* Per call, so threads sharing re never share match data. */
	if ((md = pcre2_match_data_create_from_pattern(re->re_code,
	    NULL)) == NULL)
		return -1;
	if (len <= WSG_REGEX_WINDOW || re->re_anchored)
		rc = pcre2_match(re->re_code, (PCRE2_SPTR)subject, len, 0, opts,
		    md, re->re_mctx);
	else
		rc = regex_match_long(re, (PCRE2_SPTR)subject, len, opts, md,
		    rb, start, slice);
	rb->rb_fresh = 0;
	pcre2_match_data_free(md);
	if (rc == REGEX_RC_AGAIN)
		return WSG_REGEX_AGAIN;
	if (rc >= 0)
		return 1;	/* 0 means a match with a short ovector */
	if (rc == PCRE2_ERROR_NOMATCH || rc == PCRE2_ERROR_PARTIAL)
		return 0;
	return -1;
}

/* Match a subject PCRE2 must itself check for valid UTF-8. */
int
regex_match(const struct wsg_regex *re, const char *subject, size_t len)
{
	return regex_match_flags(re, subject, len, 0);
}

/* The source pattern. */
const char *
regex_pattern(const struct wsg_regex *re)
{
	return re->re_pattern;
}

/* Free everything regex_compile() allocated. */
void
regex_free(struct wsg_regex *re)
{
	if (re == NULL)
		return;
	pcre2_match_context_free(re->re_mctx);
	pcre2_code_free(re->re_code);
	free(re->re_pattern);
	free(re);
}
