/*
 * A thin wrapper around PCRE2 (8-bit, UTF mode) for the policy regexes:
 * compiled once at load time, JIT-compiled when the platform allows, and
 * matched under fixed match, depth and heap limits so that a hostile
 * subject against a backtracking pattern fails promptly instead of
 * stalling a worker.
 *
 * Thread safety: a compiled struct wsg_regex is immutable after
 * regex_compile() and may be shared by any number of threads.  Each
 * regex_match() call creates its own match data; JIT matching uses the
 * default 32 KiB block on the calling thread's machine stack (no JIT stack
 * object is shared), so no state is shared between concurrent matches.
 */
#ifndef WSG_REGEX_H
#define WSG_REGEX_H

#include <stddef.h>
#include <stdint.h>

#define WSG_REGEX_MAX_PATTERN	4096	/* bytes in one pattern */
#define WSG_REGEX_MATCH_LIMIT	10000	/* pcre2_set_match_limit() */
#define WSG_REGEX_DEPTH_LIMIT	1000	/* pcre2_set_depth_limit() */
#define WSG_REGEX_HEAP_LIMIT	1024	/* KiB, pcre2_set_heap_limit() */
#define WSG_REGEX_WINDOW	4096	/* start positions per pcre2_match() */
#define WSG_REGEX_TIME_LIMIT_MS	100	/* CPU ms, long subjects, plus: */
#define WSG_REGEX_BYTES_PER_MS	20000	/* a ms more per this many bytes */
#define WSG_REGEX_SLICE_US	1000	/* CPU us per slice of a match */
#define WSG_REGEX_ERR_MAX	128	/* enough for regex_compile()'s err */

/*
 * regex_match_flags() flag: the caller has already validated the subject
 * as UTF-8 (utf8_validate() returned WSG_UTF8_ACCEPT), so PCRE2 may skip
 * its own check.  Passing an invalid subject with this flag is undefined
 * behaviour in PCRE2; without it an invalid subject is an error (-1).
 */
#define WSG_REGEX_VALID_UTF8	0x01

/*
 * regex_match_from() flag: stop once the subject has taken a slice of
 * CPU time (rb_slice, WSG_REGEX_SLICE_US) since regex_budget_init() or
 * regex_budget_resume(), and return WSG_REGEX_AGAIN.  A slice does at
 * least one pattern or window of start positions, however short it is.
 */
#define WSG_REGEX_SLICE		0x02

/* regex_match_from(): a slice is used up, the match is not done. */
#define WSG_REGEX_AGAIN		2

struct wsg_regex;

/*
 * The CPU time one subject may take against a list of patterns, all of
 * them together: WSG_REGEX_TIME_LIMIT_MS, and a millisecond more per
 * WSG_REGEX_BYTES_PER_MS bytes per pattern.  See regex_budget_init().
 */
struct wsg_regex_budget {
	uint64_t	rb_start;	/* thread CPU us when the slice began */
	uint64_t	rb_wall;	/* monotonic us then */
	uint64_t	rb_used;	/* CPU us of the slices before it */
	uint64_t	rb_limit;	/* ms it may take in all */
	uint64_t	rb_slice;	/* CPU us of a slice */
	int		rb_timed;	/* rb_start is set */
	int		rb_fresh;	/* nothing matched in this slice yet */
};

/*
 * Compile a NUL-terminated pattern in UTF mode.  Returns NULL with a
 * message ("offset N: ...") in err on failure.
 */
struct wsg_regex	*regex_compile(const char *, char *, size_t);

/*
 * Match len bytes of subject (no NUL needed).  Returns 1 on a match, 0 on
 * none, -1 on an error: a match, depth, heap or JIT stack limit hit, more
 * than WSG_REGEX_TIME_LIMIT_MS of CPU time (and a millisecond more per
 * WSG_REGEX_BYTES_PER_MS bytes) on a subject longer than WSG_REGEX_WINDOW,
 * an invalid UTF-8 subject, or an allocation failure.
 * Callers treat -1 as a refusal.
 */
int			 regex_match(const struct wsg_regex *, const char *,
			    size_t);

/* The same with WSG_REGEX_* flags. */
int			 regex_match_flags(const struct wsg_regex *,
			    const char *, size_t, int);

/*
 * Start the budget of a subject of len bytes to be matched against
 * npatterns patterns with regex_match_budget().  With more than one
 * pattern, or a subject longer than WSG_REGEX_WINDOW, the thread's CPU
 * time is read now.
 */
void			 regex_budget_init(struct wsg_regex_budget *, size_t,
			    size_t);

/*
 * regex_match_flags() under a budget shared with the other patterns
 * matched against the same subject: -1 once the time spent on the
 * subject since regex_budget_init() is over its limit, before this
 * pattern is tried or between its windows of start positions.
 */
int			 regex_match_budget(const struct wsg_regex *,
			    const char *, size_t, int,
			    struct wsg_regex_budget *);

/*
 * regex_match_budget() from start position *start (0, or where an
 * earlier call returned WSG_REGEX_AGAIN).  With WSG_REGEX_SLICE in the
 * flags, it may return WSG_REGEX_AGAIN once the current slice is used
 * up, before the pattern or between windows of start positions, with
 * *start set to where to go on: call regex_budget_resume(), then this
 * again with the same pattern, subject and budget.  The windows are the
 * same as in one call, so is the result.
 */
int			 regex_match_from(const struct wsg_regex *,
			    const char *, size_t, int,
			    struct wsg_regex_budget *, size_t *);

/*
 * Start a new slice of a budget whose match returned WSG_REGEX_AGAIN:
 * the time between slices is not the subject's.
 */
void			 regex_budget_resume(struct wsg_regex_budget *);

/* The source pattern, for messages and logs. */
const char		*regex_pattern(const struct wsg_regex *);

/* Free a compiled regex; NULL is allowed. */
void			 regex_free(struct wsg_regex *);

#endif /* WSG_REGEX_H */
