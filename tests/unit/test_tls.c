/*
 * tls.c's session ticket key ring, at chosen times: one key per hour
 * seals, each opens for three hours, names pick keys, old ones retire.
 */
#include "autoconf.h"

#include <stdint.h>
#include <string.h>

#include "tls.h"
#include "unit.h"

#define H	3600

struct key {
	unsigned char	name[TLS_TKEY_NAME];
	unsigned char	aes[TLS_TKEY_AES];
	unsigned char	hmac[TLS_TKEY_HMAC];
};

/* The key sealing at now. */
static struct key
sealing(int64_t now)
{
	struct key	k;

	memset(&k, 0, sizeof(k));
	CHECK_INT(tls_tkey_seal(now, k.name, k.aes, k.hmac), 1);
	return (k);
}

/* Whether k opens at now: -1 no, 1 as the current key, 0 as an older. */
static int
opens(const struct key *k, int64_t now)
{
	unsigned char	aes[TLS_TKEY_AES], hmac[TLS_TKEY_HMAC];
	int		current = -1;

	if (!tls_tkey_open(now, k->name, aes, hmac, &current))
		return (-1);
	/* the secrets that open are the ones that sealed */
	CHECK(memcmp(aes, k->aes, sizeof(aes)) == 0);
	CHECK(memcmp(hmac, k->hmac, sizeof(hmac)) == 0);
	return (current);
}

static int
same(const struct key *a, const struct key *b)
{
	return (memcmp(a, b, sizeof(*a)) == 0);
}

int
main(void)
{
	struct key	a, a2, b, c, d, e, none;

	/* One key for the whole hour; it opens what it seals. */
	a = sealing(10 * H + 5);
	a2 = sealing(11 * H - 1);
	CHECK(same(&a, &a2));
	CHECK(memcmp(a.aes, a.hmac, sizeof(a.aes)) != 0);
	CHECK_INT(opens(&a, 10 * H + 6), 1);

	/* The next hour: a new key seals, the old one still opens. */
	b = sealing(11 * H);
	CHECK(memcmp(a.name, b.name, sizeof(a.name)) != 0);
	CHECK(memcmp(a.aes, b.aes, sizeof(a.aes)) != 0);
	CHECK(memcmp(a.hmac, b.hmac, sizeof(a.hmac)) != 0);
	CHECK_INT(opens(&b, 11 * H), 1);
	CHECK_INT(opens(&a, 11 * H), 0);
	c = sealing(12 * H + 30);
	CHECK_INT(opens(&a, 12 * H + 30), 0);
	CHECK_INT(opens(&b, 12 * H + 30), 0);
	CHECK_INT(opens(&c, 12 * H + 30), 1);

	/*
	 * Three hours after its own began, a key opens nothing, whether or
	 * not a new one has been made yet: a ticket sealed at 10:59 lived
	 * until 12:59 at most.
	 */
	CHECK_INT(opens(&a, 13 * H), -1);
	CHECK_INT(opens(&b, 13 * H), 0);
	d = sealing(13 * H);
	CHECK_INT(opens(&a, 13 * H), -1);
	CHECK_INT(opens(&b, 13 * H + 1), 0);
	CHECK_INT(opens(&c, 13 * H + 1), 0);
	CHECK_INT(opens(&d, 13 * H + 1), 1);

	/* After a long quiet spell, every older key has retired. */
	e = sealing(40 * H);
	CHECK_INT(opens(&e, 40 * H), 1);
	CHECK_INT(opens(&d, 40 * H), -1);
	CHECK_INT(opens(&c, 40 * H), -1);
	CHECK_INT(opens(&b, 40 * H), -1);

	/* A name never made opens nothing. */
	memset(&none, 0, sizeof(none));
	CHECK_INT(opens(&none, 40 * H), -1);
	return (unit_done("test_tls"));
}
