/*
 * Country lookups in a MaxMind DB with libmaxminddb.  geoip_open() maps
 * the file and swaps the mapping for a private copy of it; lookups only
 * read that copy and the MMDB_s that MMDB_open() filled in, so they need
 * no locking.  IPv4-mapped IPv6 addresses are turned back into IPv4 before
 * the lookup, which makes them work in IPv4-only databases and in IPv6
 * databases without IPv4 aliases.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <maxminddb.h>

#include "geoip.h"

#define WSG_GEOIP_CC_LEN	2	/* ISO 3166-1 alpha-2 */

struct wsg_geoip {
	MMDB_s		 g_mmdb;
};

/*
 * Database types whose records carry country.iso_code: MaxMind's and
 * DB-IP's "...-Country", "...-City" and "...-Enterprise" files.  Anything
 * else (an ASN or ISP database, say) would make every client "unknown", so
 * it is refused when the config is loaded rather than discovered later.
 */
static const char *const geoip_types[] = {
	"country",
	"city",
	"enterprise",
};

static int	geoip_ascii_lower(int);
static int	geoip_type_ok(const char *);
static int	geoip_entry_code(MMDB_entry_s *, const char *, char[3]);
static int	geoip_privatize(MMDB_s *);

/* tolower() for ASCII only, whatever the locale. */
static int
geoip_ascii_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Whether a metadata database_type names a database with country data. */
static int
geoip_type_ok(const char *type)
{
	const char	*p, *t;
	size_t		 i, n;

	if (type == NULL)
		return 0;
	for (i = 0; i < sizeof(geoip_types) / sizeof(geoip_types[0]); i++) {
		t = geoip_types[i];
		for (p = type; *p != '\0'; p++) {
			for (n = 0; t[n] != '\0' &&
			    geoip_ascii_lower((unsigned char)p[n]) == t[n]; n++)
				;
			if (t[n] == '\0')
				return 1;
		}
	}
	return 0;
}

/*
 * Walk the whole search tree: every record must lead to a node, to
 * nothing, or into the data section.  libmaxminddb 1.7 keeps its own
 * verifier to itself.  A country database of a million nodes takes tens
 * of milliseconds.  A damaged data section still shows only at lookup
 * time, where policy_check() refuses the client.
 */
static int
geoip_verify(const MMDB_s *mmdb)
{
	MMDB_search_node_s	node;
	uint32_t		i;
	int			rc;

	for (i = 0; i < mmdb->metadata.node_count; i++) {
		if ((rc = MMDB_read_node(mmdb, i, &node)) != MMDB_SUCCESS)
			return (rc);
		if (node.left_record_type == MMDB_RECORD_TYPE_INVALID ||
		    node.right_record_type == MMDB_RECORD_TYPE_INVALID)
			return (MMDB_CORRUPT_SEARCH_TREE_ERROR);
	}
	return (MMDB_SUCCESS);
}

/*
 * Put a private copy of the file where MMDB_open() mapped it.  Through a
 * shared mapping, a file written in place (cp, curl -o) would change under
 * running lookups, and one truncated would kill the process with SIGBUS at
 * the next lookup.  The copy takes the mapping's address, so the pointers
 * libmaxminddb keeps into it stay valid and MMDB_close() unmaps it as it
 * would the file.  On failure the handle must be closed, unused.
 */
static int
geoip_privatize(MMDB_s *mmdb)
{
	void	*copy;
	size_t	 len = (size_t)mmdb->file_size;
	int	 saved;

	copy = mmap(NULL, len, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (copy == MAP_FAILED)
		return (-1);
	memcpy(copy, mmdb->file_content, len);
	if (mprotect(copy, len, PROT_READ) == -1 ||
	    mremap(copy, len, len, MREMAP_MAYMOVE | MREMAP_FIXED,
	    (void *)(uintptr_t)mmdb->file_content) == MAP_FAILED) {
		saved = errno;
		(void)munmap(copy, len);
		errno = saved;
		return (-1);
	}
	return (0);
}

/*
 * Open path, copy it into memory and check that it is a country database.
 */
struct wsg_geoip *
geoip_open(const char *path, char *err, size_t errlen)
{
	struct stat		 sb;
	struct wsg_geoip	*g;
	const char		*type;
	int			 rc, saved;

	/* MMDB_open() would say "Invalid argument" or "No such device". */
	if (stat(path, &sb) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (!S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		return NULL;
	}
	if (sb.st_size == 0) {
		snprintf(err, errlen, "%s: empty file, not a MaxMind DB",
		    path);
		return NULL;
	}

	if ((g = calloc(1, sizeof(*g))) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	errno = 0;
	rc = MMDB_open(path, MMDB_MODE_MMAP, &g->g_mmdb);
	if (rc != MMDB_SUCCESS) {
		saved = errno;
		if ((rc == MMDB_FILE_OPEN_ERROR || rc == MMDB_IO_ERROR) &&
		    saved != 0)
			snprintf(err, errlen, "%s: %s", path,
			    strerror(saved));
		else
			snprintf(err, errlen, "%s: not a usable MaxMind DB "
			    "file: %s", path, MMDB_strerror(rc));
		free(g);
		return NULL;
	}
	if (geoip_privatize(&g->g_mmdb) == -1) {
		snprintf(err, errlen, "%s: cannot copy into memory: %s", path,
		    strerror(errno));
		geoip_close(g);
		return NULL;
	}
	/*
	 * A damaged search tree or data section opens fine and fails only
	 * at lookup time, where it would look like an unknown address; -t
	 * and a reload must say so instead.
	 */
	if ((rc = geoip_verify(&g->g_mmdb)) != MMDB_SUCCESS) {
		snprintf(err, errlen, "%s: corrupt MaxMind DB file: %s", path,
		    MMDB_strerror(rc));
		geoip_close(g);
		return NULL;
	}
	type = g->g_mmdb.metadata.database_type;
	if (!geoip_type_ok(type)) {
		snprintf(err, errlen, "%s: database type \"%s\" has no "
		    "country data (want a Country or City database)", path,
		    type != NULL ? type : "");
		geoip_close(g);
		return NULL;
	}
	return g;
}

/* Unmap the database and free the handle. */
void
geoip_close(struct wsg_geoip *g)
{
	if (g == NULL)
		return;
	MMDB_close(&g->g_mmdb);
	free(g);
}

/*
 * Read <key>.iso_code from a record into cc, uppercased.  Returns 1, 0 if
 * the record has no such code, or -1 if it is not two ASCII letters or the
 * data section is corrupt.
 */
static int
geoip_entry_code(MMDB_entry_s *entry, const char *key, char cc[3])
{
	MMDB_entry_data_s	 data;
	const char		*s;
	int			 i, rc;

	/*
	 * libmaxminddb reports a missing key (and a path through a value
	 * that is not a map) as "does not match data", not as an error.
	 */
	rc = MMDB_get_value(entry, &data, key, "iso_code", NULL);
	if (rc == MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR)
		return 0;
	if (rc != MMDB_SUCCESS)
		return -1;
	if (!data.has_data)
		return 0;
	if (data.type != MMDB_DATA_TYPE_UTF8_STRING ||
	    data.data_size != WSG_GEOIP_CC_LEN)
		return -1;
	s = data.utf8_string;
	for (i = 0; i < WSG_GEOIP_CC_LEN; i++) {
		if (s[i] >= 'a' && s[i] <= 'z')
			cc[i] = s[i] - 'a' + 'A';
		else if (s[i] >= 'A' && s[i] <= 'Z')
			cc[i] = s[i];
		else
			return -1;
	}
	cc[WSG_GEOIP_CC_LEN] = '\0';
	return 1;
}

/* The country of an address: 1 found, 0 unknown, -1 database error. */
int
geoip_country(const struct wsg_geoip *g, const struct sockaddr *sa,
    char cc[3])
{
	struct sockaddr_in		 sin;
	const struct sockaddr_in6	*sin6;
	MMDB_lookup_result_s		 res;
	int				 mmerr, rv;

	cc[0] = '\0';
	switch (sa->sa_family) {
	case AF_INET:
		break;
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			memset(&sin, 0, sizeof(sin));
			sin.sin_family = AF_INET;
			sin.sin_port = sin6->sin6_port;
			memcpy(&sin.sin_addr, &sin6->sin6_addr.s6_addr[12],
			    sizeof(sin.sin_addr));
			sa = (const struct sockaddr *)&sin;
		}
		break;
	default:
		return 0;	/* AF_UNIX and the like have no country */
	}

	res = MMDB_lookup_sockaddr(&g->g_mmdb, sa, &mmerr);
	if (mmerr == MMDB_IPV6_LOOKUP_IN_IPV4_DATABASE_ERROR)
		return 0;
	if (mmerr != MMDB_SUCCESS)
		return -1;
	if (!res.found_entry)
		return 0;

	rv = geoip_entry_code(&res.entry, "country", cc);
	if (rv == 0)
		rv = geoip_entry_code(&res.entry, "registered_country", cc);
	if (rv != 1)
		cc[0] = '\0';
	return rv;
}

/*
 * The codes ISO 3166-1 assigns (as tzdata's iso3166.tab lists them) and
 * XK, which the country databases give Kosovo; sorted, two letters each.
 */
static const char geoip_assigned[] =
    "ADAEAFAGAIALAMAOAQARASATAUAWAXAZBABBBDBEBFBGBHBIBJBLBMBNBOBQBRBSBTBV"
    "BWBYBZCACCCDCFCGCHCICKCLCMCNCOCRCUCVCWCXCYCZDEDJDKDMDODZECEEEGEHERES"
    "ETFIFJFKFMFOFRGAGBGDGEGFGGGHGIGLGMGNGPGQGRGSGTGUGWGYHKHMHNHRHTHUIDIE"
    "ILIMINIOIQIRISITJEJMJOJPKEKGKHKIKMKNKPKRKWKYKZLALBLCLILKLRLSLTLULVLY"
    "MAMCMDMEMFMGMHMKMLMMMNMOMPMQMRMSMTMUMVMWMXMYMZNANCNENFNGNINLNONPNRNU"
    "NZOMPAPEPFPGPHPKPLPMPNPRPSPTPWPYQARERORSRURWSASBSCSDSESGSHSISJSKSLSM"
    "SNSOSRSSSTSVSXSYSZTCTDTFTGTHTJTKTLTMTNTOTRTTTVTWTZUAUGUMUSUYUZVAVCVE"
    "VGVIVNVUWFWSXKYEYTZAZMZW";

int
geoip_country_code_assigned(const char *s)
{
	size_t	i;

	for (i = 0; i + 1 < sizeof(geoip_assigned); i += 2)
		if (geoip_assigned[i] == s[0] && geoip_assigned[i + 1] == s[1])
			return (1);
	return (0);
}

/* A config value for allow_countries/deny_countries: "DE", not "de". */
int
geoip_ipv4_only(const struct wsg_geoip *g)
{
	return (g->g_mmdb.metadata.ip_version == 4);
}

int
geoip_country_code_valid(const char *s)
{
	if (s == NULL)
		return 0;
	return s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' &&
	    s[2] == '\0';
}
