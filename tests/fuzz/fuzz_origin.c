/*
 * libFuzzer harness for Origin normalisation and the Origin check against
 * a fixed policy.  A normal form must be printable lowercase ASCII of the
 * documented shape and normalise to itself; the check may only grant
 * what the policy names.
 */
#include "autoconf.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "origin.h"
#include "regex.h"

#define FUZZ_ASSERT(c)	do { if (!(c)) abort(); } while (0)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct wsg_regex		*fuzz_re;
static char			 fuzz_allow0[] = "https://app.example.com";
static char			 fuzz_allow1[] = "null";
static char			 fuzz_allow2[] = "http://[::1]:8080";
static char			*fuzz_allow[] = { fuzz_allow0, fuzz_allow1,
				    fuzz_allow2 };

/* Is s "https://" LABEL ".example.com" with LABEL of [a-z0-9-]+? */
static int
fuzz_regex_shape(const char *s)
{
	const char	*p, *end;
	size_t		 n = strlen(s);

	if (n < 8 + 1 + 12 || strncmp(s, "https://", 8) != 0 ||
	    strcmp(s + n - 12, ".example.com") != 0)
		return 0;
	end = s + n - 12;
	for (p = s + 8; p < end; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '-'))
			return 0;
	}
	return 1;
}

/* How many times c occurs in s[0..n). */
static size_t
fuzz_count(const char *s, size_t n, char c)
{
	size_t	i, k = 0;

	for (i = 0; i < n; i++)
		k += s[i] == c;
	return k;
}

/* The characters and shape every normal form has. */
static void
fuzz_check_normal(const char *out)
{
	const char	*p, *sep;
	size_t		 n = strlen(out);

	FUZZ_ASSERT(n > 0 && n <= WSG_ORIGIN_MAX_LEN);
	sep = strstr(out, "://");
	FUZZ_ASSERT(sep != NULL && strstr(sep + 1, "://") == NULL);
	FUZZ_ASSERT((sep - out == 4 && strncmp(out, "http", 4) == 0) ||
	    (sep - out == 5 && strncmp(out, "https", 5) == 0) ||
	    (sep - out == 2 && strncmp(out, "ws", 2) == 0) ||
	    (sep - out == 3 && strncmp(out, "wss", 3) == 0));
	for (p = sep + 3; *p != '\0'; p++) {
		FUZZ_ASSERT((*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
		    *p == ':' || *p == '[' || *p == ']');
	}
	FUZZ_ASSERT(out[n - 1] != '.' && out[n - 1] != ':');
	/* No default port survives. */
	FUZZ_ASSERT(n < 3 || strcmp(out + n - 3, ":80") != 0 ||
	    strncmp(out, "https", 5) == 0 || strncmp(out, "wss", 3) == 0);
	FUZZ_ASSERT(n < 4 || strcmp(out + n - 4, ":443") != 0 ||
	    strncmp(out, "http:", 5) == 0 || strncmp(out, "ws:", 3) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wsg_origin_policy	 op;
	enum wsg_origin_result		 r;
	char				 out[WSG_ORIGIN_BUFSZ];
	char				 again[WSG_ORIGIN_BUFSZ];
	char				 err[WSG_REGEX_ERR_MAX];
	const char			*in = (const char *)data;
	char				*one[1];
	int				 n;

	if (fuzz_re == NULL) {
		fuzz_re = regex_compile("^https://[a-z0-9-]+\\.example\\.com$",
		    err, sizeof(err));
		FUZZ_ASSERT(fuzz_re != NULL);
	}

	n = origin_normalise(in, size, out, sizeof(out));
	FUZZ_ASSERT(n == 0 || n == -1);
	if (n == 0) {
		fuzz_check_normal(out);
		FUZZ_ASSERT(origin_normalise(out, strlen(out), again,
		    sizeof(again)) == 0);
		FUZZ_ASSERT(strcmp(out, again) == 0);
		FUZZ_ASSERT(origin_allow_entry(out, again,
		    sizeof(again)) == 0);
		FUZZ_ASSERT(strcmp(out, again) == 0);
		/* Bytes no origin may carry. */
		FUZZ_ASSERT(memchr(in, '\0', size) == NULL &&
		    memchr(in, '\r', size) == NULL &&
		    memchr(in, '\n', size) == NULL &&
		    memchr(in, ' ', size) == NULL);
		FUZZ_ASSERT(fuzz_count(in, size, '/') == 2 &&
		    fuzz_count(in, size, '@') == 0);
		/* A policy naming exactly this origin grants it. */
		memset(&op, 0, sizeof(op));
		one[0] = out;
		op.op_allow = one;
		op.op_nallow = 1;
		FUZZ_ASSERT(origin_check(&op, in, size) == WSG_ORIGIN_OK);
	}

	memset(&op, 0, sizeof(op));
	op.op_allow = fuzz_allow;
	op.op_nallow = 3;
	op.op_regex = &fuzz_re;
	op.op_nregex = 1;
	r = origin_check(&op, in, size);
	FUZZ_ASSERT(r == WSG_ORIGIN_OK || r == WSG_ORIGIN_DENIED);
	if (r == WSG_ORIGIN_OK) {
		if (size == 4 && memcmp(in, "null", 4) == 0)
			return 0;
		FUZZ_ASSERT(n == 0);
		FUZZ_ASSERT(strcmp(out, fuzz_allow0) == 0 ||
		    strcmp(out, fuzz_allow2) == 0 || fuzz_regex_shape(out));
	} else if (n == 0)
		FUZZ_ASSERT(strcmp(out, fuzz_allow0) != 0 &&
		    strcmp(out, fuzz_allow2) != 0 && !fuzz_regex_shape(out));
	return 0;
}
