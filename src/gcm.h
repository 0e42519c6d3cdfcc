/*
 * AES-GCM (NIST SP 800-38D, 96-bit nonces, 16-byte tags) for short TLS
 * records, on x86-64 CPUs with AES-NI and PCLMULQDQ.
 *
 * OpenSSL 3's EVP layer costs about 3,400 instructions of set-up per
 * record, whatever its length, which is most of the work of relaying a
 * small WebSocket message.  These routines do the same arithmetic with
 * the CPU's AES and carry-less multiply instructions and no per-record
 * set-up; OpenSSL stays in charge of long records, where its stitched
 * assembly is faster, and of every CPU without both instructions.
 */
#ifndef WSG_GCM_H
#define WSG_GCM_H

#include <stddef.h>
#include <stdint.h>

#define WSG_GCM_NONCE	12
#define WSG_GCM_TAG	16

/* An expanded key: round keys and the hash key, 16 bytes each. */
struct wsg_gcm {
	uint8_t		g_rk[15][16];
	uint8_t		g_h[4][16];	/* H = E(K, 0), H^2, H^3, H^4 */
	int		g_rounds;	/* 10 or 14 */
};

/* 1 when this CPU has the instructions the routines below need. */
int	gcm_available(void);

/* Expand a 16- or 32-byte key; -1 for any other length or no CPU support. */
int	gcm_setkey(struct wsg_gcm *, const uint8_t *, size_t);

/*
 * Encrypt len bytes of buf in place and write the tag, authenticating
 * aadlen bytes of aad first.
 */
void	gcm_seal(const struct wsg_gcm *, const uint8_t[WSG_GCM_NONCE],
	    const uint8_t *, size_t, uint8_t *, size_t, uint8_t[WSG_GCM_TAG]);

/*
 * Check the tag over aad and the len bytes of in, then decrypt them into
 * out (which may be in).  Returns -1, with out untouched, on a wrong tag.
 */
int	gcm_open(const struct wsg_gcm *, const uint8_t[WSG_GCM_NONCE],
	    const uint8_t *, size_t, const uint8_t *, size_t, uint8_t *,
	    const uint8_t[WSG_GCM_TAG]);

/* Erase a key. */
void	gcm_clear(struct wsg_gcm *);

#endif /* WSG_GCM_H */
