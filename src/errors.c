/*
 * Configuration error collection.
 */
#include "autoconf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

/* Append one formatted entry to a growable string list. */
static void __attribute__((format(printf, 8, 0)))
errors_push(char ***list, size_t *n, size_t *cap, const char *file,
    size_t line, size_t col, const char *prefix, const char *fmt,
    va_list ap)
{
	char	*msg, *full, **nl;
	int	 r;

	/* As long as it takes: a value quoted whole must not cut it off. */
	if (vasprintf(&msg, fmt, ap) == -1)
		return;
	/*
	 * No position (a file that cannot be read, an empty document): the
	 * whole file is concerned, and its start stands for it, so that
	 * every line keeps the one FILE:LINE:COL form that tools parse.
	 */
	if (line == 0) {
		line = 1;
		col = 1;
	}
	r = asprintf(&full, "%s:%zu:%zu: %s%s", file, line, col, prefix, msg);
	free(msg);
	if (r == -1)
		return;
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 8;
		nl = realloc(*list, ncap * sizeof(*nl));
		if (nl == NULL) {
			free(full);
			return;
		}
		*list = nl;
		*cap = ncap;
	}
	(*list)[(*n)++] = full;
}

void
errors_add(struct wsg_errors *e, const char *file, size_t line, size_t col,
    const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	errors_push(&e->e_msgs, &e->e_n, &e->e_cap, file, line, col, "", fmt,
	    ap);
	va_end(ap);
}

void
errors_warn(struct wsg_errors *e, const char *file, size_t line, size_t col,
    const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	errors_push(&e->e_warnings, &e->e_nwarnings, &e->e_capwarnings, file,
	    line, col, "warning: ", fmt, ap);
	va_end(ap);
}

void
errors_free(struct wsg_errors *e)
{
	size_t	i;

	for (i = 0; i < e->e_n; i++)
		free(e->e_msgs[i]);
	for (i = 0; i < e->e_nwarnings; i++)
		free(e->e_warnings[i]);
	free(e->e_msgs);
	free(e->e_warnings);
	memset(e, 0, sizeof(*e));
}
