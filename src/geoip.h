/*
 * Country lookups in a MaxMind DB (GeoLite2/GeoIP2 Country or City, or any
 * database with the same "country" record layout).  The database is copied
 * into memory when opened and never changes afterwards, even if the file
 * does, so one handle may be shared by any number of threads; a reload
 * opens a new handle.  No logging: errors come back as text for the caller
 * to report.
 */
#ifndef WSG_GEOIP_H
#define WSG_GEOIP_H

#include <stddef.h>

struct sockaddr;
struct wsg_geoip;

/*
 * Open and check the database at path.  Returns NULL with a message naming
 * the file in err (errlen bytes, always terminated) when it cannot be
 * opened, is not a MaxMind DB, or is of a type without country data.
 */
struct wsg_geoip	*geoip_open(const char *, char *, size_t);

/* Unmap and free; NULL is a no-op. */
void			 geoip_close(struct wsg_geoip *);

/* Whether the database holds IPv4 networks only (its ip_version is 4). */
int			 geoip_ipv4_only(const struct wsg_geoip *);

/*
 * The ISO 3166-1 alpha-2 country of an AF_INET or AF_INET6 address
 * (IPv4-mapped IPv6 included), from country.iso_code or else
 * registered_country.iso_code, uppercase and NUL-terminated in cc.
 * Returns 1 when found, 0 when the address is not in the database, has no
 * country, or is not an IP address, and -1 when the database is corrupt or
 * holds a malformed code.  Safe to call from several threads at once.
 */
int			 geoip_country(const struct wsg_geoip *,
			    const struct sockaddr *, char[3]);

/* 1 if s is exactly two ASCII uppercase letters ("DE", "KP"), else 0. */
int			 geoip_country_code_valid(const char *);
/* Does ISO 3166-1 assign this valid code (or is it XK)? */
int			 geoip_country_code_assigned(const char *);

#endif /* WSG_GEOIP_H */
