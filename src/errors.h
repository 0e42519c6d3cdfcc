/*
 * A list of configuration errors, each "FILE:LINE:COL: message".  Loaders
 * collect every error they find and the caller prints them all.
 */
#ifndef WSG_ERRORS_H
#define WSG_ERRORS_H

#include <stddef.h>

struct wsg_errors {
	char		**e_msgs;
	size_t		  e_n;
	size_t		  e_cap;
	char		**e_warnings;
	size_t		  e_nwarnings;
	size_t		  e_capwarnings;
};

/* line and col are 1-based; 0 means unknown and prints as FILE:1:1. */
void	errors_add(struct wsg_errors *, const char *, size_t, size_t,
	    const char *, ...) __attribute__((format(printf, 5, 6)));
void	errors_warn(struct wsg_errors *, const char *, size_t, size_t,
	    const char *, ...) __attribute__((format(printf, 5, 6)));
void	errors_free(struct wsg_errors *);

#endif /* WSG_ERRORS_H */
