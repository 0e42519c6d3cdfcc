/*
 * Parsers for the value syntaxes of the config files: durations, sizes,
 * rates and listen addresses.  Pure: a string in, a value or a static error
 * message out.
 */
#ifndef WSG_UNITS_H
#define WSG_UNITS_H

#include <sys/socket.h>
#include <stdint.h>

struct wsg_rate {
	uint64_t	 r_amount;	/* events or bytes ... */
	uint64_t	 r_per_ms;	/* ... per this many milliseconds */
};

/*
 * "250ms", "10s", "5m", "1h" or a bare number of seconds, into
 * milliseconds.  Returns 0, or -1 with *err set.
 */
int	units_parse_duration(const char *, uint64_t *, const char **);

/* "512", "64KiB", "1MiB", "1GiB" into bytes. */
int	units_parse_size(const char *, uint64_t *, const char **);

/* "10/s", "600/m", "100/h", "1MiB/s": an amount (a size) per unit. */
int	units_parse_rate(const char *, struct wsg_rate *, const char **);

/*
 * "host:port" or "[v6]:port" with a numeric address (or "localhost"),
 * port 1..65535.
 */
int	units_parse_hostport(const char *, struct sockaddr_storage *,
	    socklen_t *, const char **);

/* Format an address as "1.2.3.4:5" or "[::1]:5". */
void	units_format_addr(const struct sockaddr *, char *, size_t);

/* The value of a hex digit ('0'-'9', 'a'-'f', 'A'-'F'), or -1. */
int	units_hexval(int);

#endif /* WSG_UNITS_H */
