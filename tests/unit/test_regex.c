/*
 * Unit tests of the PCRE2 wrapper: compile errors, matching, UTF-8
 * handling, and that catastrophic backtracking ends in a refusal rather
 * than a stall or a false match.
 */
#include "autoconf.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "regex.h"
#include "unit.h"

#define TEST_THREADS	4
#define TEST_ROUNDS	2000

/* Compile a pattern that must compile. */
static struct wsg_regex *
must_compile(const char *pattern)
{
	struct wsg_regex	*re;
	char			 err[WSG_REGEX_ERR_MAX];

	re = regex_compile(pattern, err, sizeof(err));
	CHECK(re != NULL);
	if (re == NULL) {
		fprintf(stderr, "compile %s: %s\n", pattern, err);
		exit(1);
	}
	CHECK_STR(regex_pattern(re), pattern);
	return re;
}

/* Match a NUL-terminated subject. */
static int
match(const struct wsg_regex *re, const char *s)
{
	return regex_match(re, s, strlen(s));
}

/* Patterns that must not compile, with a message naming the offset. */
static void
test_compile_errors(void)
{
	static const char	*bad[] = { "(", "a{2,1}", "[z-a]", "\\", "(?<",
	    "a\\C", "\xff", NULL };
	char			 err[WSG_REGEX_ERR_MAX], *big;
	size_t			 i;

	for (i = 0; bad[i] != NULL; i++) {
		err[0] = '\0';
		CHECK(regex_compile(bad[i], err, sizeof(err)) == NULL);
		CHECK(strncmp(err, "offset ", 7) == 0);
	}
	CHECK(regex_compile(NULL, err, sizeof(err)) == NULL);
	CHECK_STR(err, "no pattern");

	big = malloc(WSG_REGEX_MAX_PATTERN + 2);
	CHECK(big != NULL);
	if (big == NULL)
		return;
	memset(big, 'a', WSG_REGEX_MAX_PATTERN + 1);
	big[WSG_REGEX_MAX_PATTERN + 1] = '\0';
	CHECK(regex_compile(big, err, sizeof(err)) == NULL);
	CHECK_STR(err, "pattern too long");
	big[WSG_REGEX_MAX_PATTERN] = '\0';
	regex_free(must_compile(big));
	free(big);

	/* A short error buffer truncates, never overflows. */
	CHECK(regex_compile("(", err, 4) == NULL);
	CHECK_INT(strlen(err), 3);
	CHECK(regex_compile("(", NULL, 0) == NULL);
}

/* Ordinary matching, anchoring and embedded NULs. */
static void
test_match(void)
{
	struct wsg_regex	*re;

	re = must_compile("^https://[a-z0-9-]+\\.example\\.com$");
	CHECK_INT(match(re, "https://app.example.com"), 1);
	CHECK_INT(match(re, "https://app.example.com.evil.example"), 0);
	CHECK_INT(match(re, "https://app.example.com\n"), 1);	/* PCRE $ */
	CHECK_INT(match(re, "http://app.example.com"), 0);
	CHECK_INT(match(re, ""), 0);
	CHECK_INT(regex_match(re, NULL, 0), 0);
	CHECK_INT(regex_match(re, NULL, 3), -1);
	CHECK_INT(regex_match(NULL, "x", 1), -1);
	/* The length counts, not a NUL. */
	CHECK_INT(regex_match(re, "https://app.example.com/x", 23), 1);
	CHECK_INT(regex_match(re, "https://a\0.example.com", 22), 0);
	regex_free(re);

	re = must_compile("(?i)bad\\s*word");
	CHECK_INT(match(re, "this is a BAD   Word here"), 1);
	CHECK_INT(match(re, "this is fine"), 0);
	regex_free(re);

	re = must_compile("a\\x00b");
	CHECK_INT(regex_match(re, "xa\0b", 4), 1);
	regex_free(re);

	regex_free(NULL);
}

/* UTF mode: characters, not bytes; invalid subjects are refused. */
static void
test_utf8(void)
{
	struct wsg_regex	*re;

	re = must_compile("^.$");
	CHECK_INT(match(re, "\xc3\xa9"), 1);		/* e-acute, one char */
	CHECK_INT(match(re, "\xf0\x9f\x98\x80"), 1);	/* U+1F600 */
	CHECK_INT(match(re, "ab"), 0);
	CHECK_INT(match(re, "\xc3"), -1);		/* truncated */
	CHECK_INT(match(re, "\xc0\xaf"), -1);		/* overlong */
	CHECK_INT(match(re, "\xed\xa0\x80"), -1);	/* surrogate */
	CHECK_INT(regex_match_flags(re, "\xc3\xa9", 2, WSG_REGEX_VALID_UTF8),
	    1);
	regex_free(re);

	/* Invalid bytes cannot hide a denied word: the match is refused. */
	re = must_compile("secret");
	CHECK_INT(match(re, "sec\xffret"), -1);
	CHECK_INT(match(re, "\xff secret"), -1);
	regex_free(re);

	re = must_compile("caf\xc3\xa9");
	CHECK_INT(match(re, "un caf\xc3\xa9"), 1);
	regex_free(re);
}

/* Catastrophic backtracking returns promptly and never as a match. */
static void
test_limits(void)
{
	static const char	*evil[] = { "^(a+)+$", "^(a|a)*$", "^(a*)*b$",
	    "(x+x+)+y", "^(\\w+\\s?)*$", NULL };
	struct wsg_regex	*re;
	char			 subj[64];
	char			*big;
	size_t			 i, n;
	int			 r;

	for (i = 0; evil[i] != NULL; i++) {
		re = must_compile(evil[i]);
		for (n = 30; n <= 40; n += 5) {
			memset(subj, strchr(evil[i], 'x') ? 'x' : 'a', n);
			subj[n] = '!';
			subj[n + 1] = '\0';
			r = match(re, subj);
			CHECK(r == -1 || r == 0);
		}
		regex_free(re);
	}

	/* The classic one must actually hit the limit, not just be lucky. */
	re = must_compile("^(a+)+$");
	memset(subj, 'a', 35);
	memcpy(subj + 35, "!", 2);
	CHECK_INT(match(re, subj), -1);
	CHECK_INT(match(re, "aaaa"), 1);
	regex_free(re);

	/* A simple pattern over a 1 MiB message stays within the limits. */
	n = 1024 * 1024;
	big = malloc(n + 1);
	CHECK(big != NULL);
	if (big == NULL)
		return;
	memset(big, 'x', n);
	big[n] = '\0';
	re = must_compile("(?i)[b]ad\\s*word");
	CHECK_INT(regex_match(re, big, n), 0);
	memcpy(big + n - 8, "bad word", 8);
	CHECK_INT(regex_match(re, big, n), 1);
	regex_free(re);
	re = must_compile("\\bbad\\b");
	CHECK_INT(regex_match(re, big, n), 0);	/* "xbad" has no \b */
	big[n - 9] = ' ';
	CHECK_INT(regex_match(re, big, n), 1);
	regex_free(re);
	free(big);
}

/*
 * A long subject is searched a window of start positions at a time:
 * matches straddling a window's end, starting in the last window, at the
 * very end or behind a multibyte character are found as in one search, and
 * a pattern that stays under the match limit at each of a million start
 * positions is refused instead of stalling for seconds.
 */
static void
test_long_subject(void)
{
	struct wsg_regex	*re;
	char			*big;
	size_t			 n = 1024 * 1024, at;
	size_t			 w = WSG_REGEX_WINDOW;

	big = malloc(n);
	CHECK(big != NULL);
	if (big == NULL)
		return;
	memset(big, 'x', n);
	re = must_compile("needle");
	for (at = w - 3; at <= w + 1; at++) {
		memset(big, 'x', n);
		memcpy(big + at, "needle", 6);
		CHECK_INT(regex_match(re, big, n), 1);
	}
	memset(big, 'x', n);
	memcpy(big + n - 6, "needle", 6);
	CHECK_INT(regex_match(re, big, n), 1);
	memcpy(big + n - 6, "needl!", 6);
	CHECK_INT(regex_match(re, big, n), 0);
	regex_free(re);

	/* A window that would start inside a character moves past it. */
	re = must_compile("\\x{20ac}y");
	memset(big, 'x', n);
	memcpy(big + w - 1, "\xe2\x82\xacy", 4);
	CHECK_INT(regex_match(re, big, n), 1);
	CHECK_INT(regex_match_flags(re, big, n, WSG_REGEX_VALID_UTF8), 1);
	regex_free(re);
	re = must_compile("y");
	CHECK_INT(regex_match(re, big, n), 1);
	CHECK_INT(regex_match_flags(re, big, n, WSG_REGEX_VALID_UTF8), 1);
	big[n - 1] = '\xe2';	/* invalid at the end: an error, not 0 */
	CHECK_INT(regex_match(re, big, n), -1);
	regex_free(re);

	/* A window that starts on a character's first byte keeps it. */
	re = must_compile("\\x{e9}");
	memset(big, 'x', n);
	memcpy(big + w, "\xc3\xa9", 2);
	CHECK_INT(regex_match(re, big, n), 1);
	CHECK_INT(regex_match_flags(re, big, n, WSG_REGEX_VALID_UTF8), 1);
	regex_free(re);

	/* An anchored pattern is tried at the start only, not per window. */
	re = must_compile("\\Gy");
	memset(big, 'x', n);
	big[w] = 'y';
	CHECK_INT(regex_match(re, big, n), 0);
	big[0] = 'y';
	CHECK_INT(regex_match(re, big, n), 1);
	regex_free(re);

	memset(big, 'x', n);
	re = must_compile("x$");
	CHECK_INT(regex_match(re, big, n), 1);
	regex_free(re);
	re = must_compile("^y|z$");
	CHECK_INT(regex_match(re, big, n), 0);
	regex_free(re);

	memset(big, 'a', n);
	re = must_compile("a{1,20}a{1,20}a{1,20}[bc]");
	CHECK_INT(regex_match(re, big, 100), 0);
	CHECK_INT(regex_match(re, big, n), -1);
	regex_free(re);
	free(big);

	/*
	 * Long is not hostile: 16 MiB of text against a plain pattern takes
	 * tens of milliseconds, under the budget that grows with the length.
	 */
	n = 16 * 1024 * 1024;
	big = malloc(n);
	CHECK(big != NULL);
	if (big == NULL)
		return;
	for (at = 0; at < n; at++)
		big[at] = "lorem ipsum dolor sit amet, "[at % 28];
	re = must_compile("(?i)forbidden|secret");
	CHECK_INT(regex_match(re, big, n), 0);
	regex_free(re);
	free(big);
}

/*
 * Patterns matched against one subject share its time: a spent budget
 * refuses before the next pattern is tried, short subject or long, and
 * a budget for several patterns of a long, plain subject is not spent.
 */
static void
test_budget(void)
{
	struct wsg_regex_budget	 rb;
	struct wsg_regex	*re;
	char			*big;
	size_t			 n = 4 * 1024 * 1024, i;

	re = must_compile("needle");
	regex_budget_init(&rb, 6, 1);
	CHECK_INT(rb.rb_timed, 0);
	CHECK_INT(regex_match_budget(re, "needle", 6, 0, &rb), 1);
	regex_budget_init(&rb, 6, 2);
	CHECK_INT(rb.rb_timed, 1);
	CHECK_INT(regex_match_budget(re, "needle", 6, 0, &rb), 1);
	rb.rb_limit = 0;			/* as if all of it were spent */
	CHECK_INT(regex_match_budget(re, "needle", 6, 0, &rb), -1);
	regex_free(re);

	big = malloc(n);
	CHECK(big != NULL);
	if (big == NULL)
		return;
	for (i = 0; i < n; i++)
		big[i] = "lorem ipsum dolor sit amet, "[i % 28];
	re = must_compile("(?i)forbidden|secret");
	regex_budget_init(&rb, n, 8);
	for (i = 0; i < 8; i++)
		CHECK_INT(regex_match_budget(re, big, n, 0, &rb), 0);
	regex_free(re);
	free(big);
}

/*
 * Match in slices of one window or pattern each (a slice of no time),
 * as the relay does under load; *slices says how many it took.
 */
static int
match_sliced(const struct wsg_regex *re, const char *s, size_t n,
    size_t *slices)
{
	struct wsg_regex_budget	 rb;
	size_t			 start = 0;
	int			 r;

	regex_budget_init(&rb, n, 1);
	rb.rb_slice = 0;
	for (*slices = 1; *slices <= n; (*slices)++) {
		r = regex_match_from(re, s, n, WSG_REGEX_SLICE, &rb, &start);
		if (r != WSG_REGEX_AGAIN)
			return r;
		regex_budget_resume(&rb);
	}
	return -2;
}

/* Use ms of this thread's CPU time. */
static void
burn_cpu(long ms)
{
	struct timespec	t0, t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
	do
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	while ((t.tv_sec - t0.tv_sec) * 1000 +
	    (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
}

/*
 * A match done in slices (the relay's, so that other sessions run in
 * between) stops only between windows of start positions and goes on
 * where it stopped, over the whole subject: matches straddling a
 * window's end, behind a multibyte character or at the very end are
 * found as in one pass.  The budget counts only the slices' time, and
 * a hostile subject is refused as in one pass.
 */
static void
test_slices(void)
{
	struct wsg_regex_budget	 rb;
	struct wsg_regex	*re;
	char			*big;
	size_t			 n = 1024 * 1024, w = WSG_REGEX_WINDOW, at;
	size_t			 start, k;
	int			 r;

	big = malloc(n);
	CHECK(big != NULL);
	if (big == NULL)
		return;
	memset(big, 'x', n);
	re = must_compile("needle");
	CHECK_INT(match_sliced(re, big, n, &k), 0);
	CHECK_INT(k, n / w);			/* one per window */
	for (at = 5 * w - 3; at <= 5 * w + 1; at++) {
		memset(big, 'x', n);
		memcpy(big + at, "needle", 6);
		CHECK_INT(match_sliced(re, big, n, &k), 1);
		CHECK_INT(k, at / w + 1);
	}
	memset(big, 'x', n);
	memcpy(big + n - 6, "needle", 6);
	CHECK_INT(match_sliced(re, big, n, &k), 1);
	CHECK_INT(k, n / w);
	regex_free(re);

	/* The next slice starts behind a character, as the next window. */
	re = must_compile("\\x{20ac}y|z");
	memset(big, 'x', n);
	memcpy(big + w - 1, "\xe2\x82\xac", 3);
	regex_budget_init(&rb, n, 1);
	rb.rb_slice = 0;
	start = 0;
	CHECK_INT(regex_match_from(re, big, n, WSG_REGEX_SLICE, &rb, &start),
	    WSG_REGEX_AGAIN);
	CHECK_INT(start, w + 2);
	big[w + 2] = 'y';
	regex_budget_resume(&rb);
	CHECK_INT(match_sliced(re, big, n, &k), 1);
	CHECK_INT(k, 1);
	big[w + 2] = 'x';
	big[n - 1] = 'z';
	CHECK_INT(match_sliced(re, big, n, &k), 1);
	regex_free(re);

	/* Several patterns: a slice may end between two of them. */
	memset(big, 'x', 100);
	re = must_compile("needle");
	regex_budget_init(&rb, 100, 2);
	rb.rb_slice = 0;
	start = 0;
	CHECK_INT(regex_match_from(re, big, 100, WSG_REGEX_SLICE, &rb,
	    &start), 0);
	CHECK_INT(regex_match_from(re, big, 100, WSG_REGEX_SLICE, &rb,
	    &start), WSG_REGEX_AGAIN);
	CHECK_INT(start, 0);
	regex_budget_resume(&rb);
	CHECK_INT(regex_match_from(re, big, 100, WSG_REGEX_SLICE, &rb,
	    &start), 0);
	/* Without the flag nothing is sliced. */
	rb.rb_fresh = 0;
	CHECK_INT(regex_match_from(re, big, 100, 0, &rb, &start), 0);
	regex_free(re);

	/*
	 * Time between slices is not the subject's: 256 slices with a
	 * millisecond of other work after each stay within 152 ms.
	 */
	memset(big, 'x', n);
	re = must_compile("needle");
	regex_budget_init(&rb, n, 1);
	rb.rb_slice = 0;
	start = 0;
	while ((r = regex_match_from(re, big, n, WSG_REGEX_SLICE, &rb,
	    &start)) == WSG_REGEX_AGAIN) {
		burn_cpu(1);
		regex_budget_resume(&rb);
	}
	CHECK_INT(r, 0);
	regex_free(re);

	/* A hostile subject is refused in slices as in one pass. */
	memset(big, 'a', n);
	re = must_compile("a{1,20}a{1,20}a{1,20}[bc]");
	regex_budget_init(&rb, n, 1);
	start = 0;
	k = 0;
	while ((r = regex_match_from(re, big, n, WSG_REGEX_SLICE, &rb,
	    &start)) == WSG_REGEX_AGAIN && k++ < n)
		regex_budget_resume(&rb);
	CHECK_INT(r, -1);
	CHECK(k > 1);
	CHECK(rb.rb_used < (rb.rb_limit + 50) * 1000);
	regex_free(re);
	free(big);
}

struct test_shared {
	struct wsg_regex	*ts_re;
	int			 ts_bad;
};

/* One worker: matches and non-matches on the shared regex. */
static void *
test_worker(void *arg)
{
	struct test_shared	*ts = arg;
	int			 i;

	for (i = 0; i < TEST_ROUNDS; i++) {
		if (regex_match(ts->ts_re, "https://a1.example.com", 22) != 1 ||
		    regex_match(ts->ts_re, "https://a1.example.org", 22) != 0)
			__atomic_store_n(&ts->ts_bad, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

/* Several threads share one compiled regex. */
static void
test_threads(void)
{
	struct test_shared	 ts;
	pthread_t		 t[TEST_THREADS];
	int			 i;

	ts.ts_re = must_compile("^https://([a-z0-9]+)\\.example\\.com$");
	ts.ts_bad = 0;
	for (i = 0; i < TEST_THREADS; i++)
		CHECK_INT(pthread_create(&t[i], NULL, test_worker, &ts), 0);
	for (i = 0; i < TEST_THREADS; i++)
		pthread_join(t[i], NULL);
	CHECK_INT(ts.ts_bad, 0);
	regex_free(ts.ts_re);
}

int
main(void)
{
	test_compile_errors();
	test_match();
	test_utf8();
	test_limits();
	test_long_subject();
	test_budget();
	test_slices();
	test_threads();
	return unit_done("test_regex");
}
