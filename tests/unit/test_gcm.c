/*
 * Unit tests for gcm.c against OpenSSL's EVP AES-GCM: the same key, nonce,
 * associated data and plaintext must give the same ciphertext and tag for
 * both key sizes and every length a short record can have, what one seals
 * the other must open, and a change to any byte of the associated data,
 * the ciphertext or the tag must be refused without touching the output.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "gcm.h"
#include "unit.h"

#define MAXLEN	1200	/* every length up to this, and some beyond */

/* OpenSSL's sealing: ciphertext into ct, tag into tag; 0 on success. */
static int
evp_seal(const uint8_t *key, size_t keylen, const uint8_t *nonce,
    const uint8_t *aad, size_t aadlen, const uint8_t *pt, size_t len,
    uint8_t *ct, uint8_t *tag)
{
	EVP_CIPHER_CTX	*ctx;
	int		 ol, fl, ok;

	if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
		return (-1);
	ok = EVP_EncryptInit_ex(ctx, keylen == 16 ? EVP_aes_128_gcm() :
	    EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
	    (aadlen == 0 || EVP_EncryptUpdate(ctx, NULL, &ol, aad,
	    (int)aadlen) == 1) &&
	    EVP_EncryptUpdate(ctx, ct, &ol, pt, (int)len) == 1 &&
	    EVP_EncryptFinal_ex(ctx, ct + ol, &fl) == 1 &&
	    (size_t)(ol + fl) == len &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, WSG_GCM_TAG,
	    tag) == 1;
	EVP_CIPHER_CTX_free(ctx);
	return (ok ? 0 : -1);
}

/* OpenSSL's opening: 0 if the tag is right. */
static int
evp_open(const uint8_t *key, size_t keylen, const uint8_t *nonce,
    const uint8_t *aad, size_t aadlen, const uint8_t *ct, size_t len,
    const uint8_t *tag, uint8_t *pt)
{
	EVP_CIPHER_CTX	*ctx;
	int		 ol, fl, ok;

	if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
		return (-1);
	ok = EVP_DecryptInit_ex(ctx, keylen == 16 ? EVP_aes_128_gcm() :
	    EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
	    (aadlen == 0 || EVP_DecryptUpdate(ctx, NULL, &ol, aad,
	    (int)aadlen) == 1) &&
	    EVP_DecryptUpdate(ctx, pt, &ol, ct, (int)len) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, WSG_GCM_TAG,
	    (void *)tag) == 1 &&
	    EVP_DecryptFinal_ex(ctx, pt + ol, &fl) == 1;
	EVP_CIPHER_CTX_free(ctx);
	return (ok ? 0 : -1);
}

/* Every length 0..MAXLEN and a few long ones, both ways. */
static void
check_lengths(size_t keylen)
{
	static uint8_t		 pt[20000], ct[20000], buf[20000], back[20000];
	static const size_t	 longer[] = { 4096, 16385, 16401 };
	struct wsg_gcm		 g;
	uint8_t			 key[32], nonce[WSG_GCM_NONCE], aad[40];
	uint8_t			 tag[WSG_GCM_TAG], etag[WSG_GCM_TAG];
	size_t			 len, aadlen, i;
	int			 seal_bad = 0, open_bad = 0, evp_bad = 0;

	for (i = 0; i < MAXLEN + 1 + sizeof(longer) / sizeof(longer[0]);
	    i++) {
		len = i <= MAXLEN ? i : longer[i - MAXLEN - 1];
		aadlen = i % 3 == 0 ? 5 : i % sizeof(aad);
		if (RAND_bytes(key, sizeof(key)) != 1 ||
		    RAND_bytes(nonce, sizeof(nonce)) != 1 ||
		    RAND_bytes(aad, sizeof(aad)) != 1 ||
		    RAND_bytes(pt, (int)len + 1) != 1 ||
		    gcm_setkey(&g, key, keylen) != 0 ||
		    evp_seal(key, keylen, nonce, aad, aadlen, pt, len, ct,
		    etag) != 0) {
			CHECK(!"set-up");
			return;
		}
		memcpy(buf, pt, len);
		gcm_seal(&g, nonce, aad, aadlen, buf, len, tag);
		if (memcmp(buf, ct, len) != 0 || memcmp(tag, etag,
		    sizeof(tag)) != 0) {
			if (seal_bad++ == 0)
				fprintf(stderr, "keylen %zu len %zu aad %zu:"
				    " sealed differently\n", keylen, len,
				    aadlen);
		}
		memset(back, 0xa5, len);
		if (gcm_open(&g, nonce, aad, aadlen, ct, len, back,
		    etag) != 0 || memcmp(back, pt, len) != 0)
			open_bad++;
		if (evp_open(key, keylen, nonce, aad, aadlen, buf, len, tag,
		    back) != 0 || memcmp(back, pt, len) != 0)
			evp_bad++;
		/* In place, as the record layer opens. */
		memcpy(back, ct, len);
		if (gcm_open(&g, nonce, aad, aadlen, back, len, back,
		    etag) != 0 || memcmp(back, pt, len) != 0)
			open_bad++;
	}
	CHECK_INT(seal_bad, 0);
	CHECK_INT(open_bad, 0);
	CHECK_INT(evp_bad, 0);
	gcm_clear(&g);
	CHECK_INT(g.g_rounds, 0);
}

/* Any changed byte or bit is refused, and the output is left alone. */
static void
check_tamper(size_t keylen)
{
	struct wsg_gcm	g;
	uint8_t		key[32], nonce[WSG_GCM_NONCE], aad[5];
	uint8_t		pt[64], ct[64], out[64], tag[WSG_GCM_TAG];
	uint8_t		t2[WSG_GCM_TAG], n2[WSG_GCM_NONCE];
	size_t		i, len = sizeof(pt);
	int		accepted = 0, touched = 0, bit;

	RAND_bytes(key, sizeof(key));
	RAND_bytes(nonce, sizeof(nonce));
	RAND_bytes(aad, sizeof(aad));
	RAND_bytes(pt, sizeof(pt));
	CHECK_INT(gcm_setkey(&g, key, keylen), 0);
	memcpy(ct, pt, len);
	gcm_seal(&g, nonce, aad, sizeof(aad), ct, len, tag);
	CHECK_INT(gcm_open(&g, nonce, aad, sizeof(aad), ct, len, out, tag), 0);
	CHECK(memcmp(out, pt, len) == 0);

	for (bit = 0; bit < 8; bit++) {
		for (i = 0; i < len; i++) {
			ct[i] ^= 1 << bit;
			memset(out, 0x5a, len);
			if (gcm_open(&g, nonce, aad, sizeof(aad), ct, len, out,
			    tag) == 0)
				accepted++;
			for (size_t k = 0; k < len; k++)
				touched += out[k] != 0x5a;
			ct[i] ^= 1 << bit;
		}
		for (i = 0; i < sizeof(aad); i++) {
			aad[i] ^= 1 << bit;
			if (gcm_open(&g, nonce, aad, sizeof(aad), ct, len, out,
			    tag) == 0)
				accepted++;
			aad[i] ^= 1 << bit;
		}
		for (i = 0; i < WSG_GCM_TAG; i++) {
			memcpy(t2, tag, sizeof(t2));
			t2[i] ^= 1 << bit;
			if (gcm_open(&g, nonce, aad, sizeof(aad), ct, len, out,
			    t2) == 0)
				accepted++;
		}
		for (i = 0; i < WSG_GCM_NONCE; i++) {
			memcpy(n2, nonce, sizeof(n2));
			n2[i] ^= 1 << bit;
			if (gcm_open(&g, n2, aad, sizeof(aad), ct, len, out,
			    tag) == 0)
				accepted++;
		}
	}
	CHECK_INT(accepted, 0);
	CHECK_INT(touched, 0);
	/* A shorter record with the same tag is not the same record. */
	CHECK(gcm_open(&g, nonce, aad, sizeof(aad), ct, len - 1, out,
	    tag) != 0);
	CHECK(gcm_open(&g, nonce, aad, sizeof(aad) - 1, ct, len, out,
	    tag) != 0);
}

/*
 * The known answer of the GCM specification's AES-128 test case 2 (zero
 * key, zero nonce, one zero block), computed here with OpenSSL too so
 * that a wrong constant in this file cannot pass unnoticed.
 */
static void
check_zero(void)
{
	struct wsg_gcm	g;
	uint8_t		key[16] = { 0 }, nonce[WSG_GCM_NONCE] = { 0 };
	uint8_t		buf[16] = { 0 }, ct[16], tag[16], etag[16];
	static const uint8_t want_ct[16] = { 0x03, 0x88, 0xda, 0xce, 0x60,
	    0xb6, 0xa3, 0x92, 0xf3, 0x28, 0xc2, 0xb9, 0x71, 0xb2, 0xfe, 0x78 };
	static const uint8_t want_tag[16] = { 0xab, 0x6e, 0x47, 0xd4, 0x2c,
	    0xec, 0x13, 0xbd, 0xf5, 0x3a, 0x67, 0xb2, 0x12, 0x57, 0xbd, 0xdf };

	CHECK_INT(gcm_setkey(&g, key, 16), 0);
	gcm_seal(&g, nonce, NULL, 0, buf, sizeof(buf), tag);
	CHECK(memcmp(buf, want_ct, 16) == 0);
	CHECK(memcmp(tag, want_tag, 16) == 0);
	memset(buf, 0, sizeof(buf));
	CHECK_INT(evp_seal(key, 16, nonce, NULL, 0, buf, 16, ct, etag), 0);
	CHECK(memcmp(ct, want_ct, 16) == 0);
	CHECK(memcmp(etag, want_tag, 16) == 0);
}

/*
 * Test cases 1, 3, 4, 13, 15 and 16 of the GCM specification (McGrew and
 * Viega, "The Galois/Counter Mode of Operation", appendix B): both key
 * sizes, no data, whole blocks, and a partial last block with associated
 * data of a block and a bit.  Each is checked against OpenSSL too, so
 * that a mistyped constant shows as such.
 */
struct kat {
	const char	*key, *iv, *pt, *aad, *ct, *tag;
};

static const char	kat_p[] =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
static const char	kat_a[] = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
static const char	kat_c4[] =
    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
    "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985";
static const char	kat_c16[] =
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";

static const struct kat	kats[] = {
	/* 1 */
	{ "00000000000000000000000000000000", "000000000000000000000000",
	  "", "", "", "58e2fccefa7e3061367f1d57a4e7455a" },
	/* 3 */
	{ "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
	  kat_p, "", kat_c4, "4d5c2af327cd64a62cf35abd2ba6fab4" },
	/* 4: 60 bytes of the same text, 20 of associated data */
	{ "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
	  NULL, kat_a, NULL, "5bc94fbc3221a5db94fae95ae7121a47" },
	/* 13 */
	{ "0000000000000000000000000000000000000000000000000000000000000000",
	  "000000000000000000000000", "", "", "",
	  "530f8afbc74536b9a963b4f1c4cb738b" },
	/* 15 */
	{ "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
	  "cafebabefacedbaddecaf888", kat_p, "", kat_c16,
	  "b094dac5d93471bdec1a502270e3cc6c" },
	/* 16 */
	{ "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
	  "cafebabefacedbaddecaf888", NULL, kat_a, NULL,
	  "76fc6ece0f4e1768cddf8853bb2d551b" },
};

static size_t
unhex(const char *h, uint8_t *out, size_t max)
{
	size_t		n;
	unsigned int	b;

	for (n = 0; n < max && h[0] != '\0' && sscanf(h, "%2x", &b) == 1;
	    h += 2)
		out[n++] = (uint8_t)b;
	return (n);
}

static void
check_kats(void)
{
	struct wsg_gcm	 g;
	const struct kat *k;
	uint8_t		 key[32], iv[12], pt[64], aad[20], ct[64];
	uint8_t		 tag[16];
	uint8_t		 buf[64], out[64], t[16], et[16];
	size_t		 i, keylen, len, aadlen;

	for (i = 0; i < sizeof(kats) / sizeof(kats[0]); i++) {
		k = &kats[i];
		keylen = unhex(k->key, key, sizeof(key));
		CHECK_INT(unhex(k->iv, iv, sizeof(iv)), 12);
		/* Cases 4 and 16: the first 60 bytes of 3's and 15's. */
		len = unhex(k->pt != NULL ? k->pt : kat_p, pt, sizeof(pt));
		CHECK_INT(unhex(k->ct != NULL ? k->ct : keylen == 16 ? kat_c4 :
		    kat_c16, ct, sizeof(ct)), len);
		if (k->pt == NULL)
			len = 60;
		aadlen = unhex(k->aad, aad, sizeof(aad));
		CHECK_INT(unhex(k->tag, tag, sizeof(tag)), 16);

		CHECK_INT(gcm_setkey(&g, key, keylen), 0);
		memcpy(buf, pt, len);
		gcm_seal(&g, iv, aad, aadlen, buf, len, t);
		if (memcmp(buf, ct, len) != 0 || memcmp(t, tag, 16) != 0)
			fprintf(stderr, "test vector %zu: sealed wrong\n", i);
		CHECK(memcmp(buf, ct, len) == 0);
		CHECK(memcmp(t, tag, 16) == 0);
		memset(out, 0, sizeof(out));
		CHECK_INT(gcm_open(&g, iv, aad, aadlen, ct, len, out, tag), 0);
		CHECK(memcmp(out, pt, len) == 0);
		/* The constants typed here, against OpenSSL. */
		CHECK_INT(evp_seal(key, keylen, iv, aad, aadlen, pt, len, buf,
		    et), 0);
		CHECK(memcmp(buf, ct, len) == 0);
		CHECK(memcmp(et, tag, 16) == 0);
		gcm_clear(&g);
	}
}

int
main(void)
{
	struct wsg_gcm	g;
	uint8_t		key[32] = { 0 };

	if (!gcm_available()) {
		/* Nothing to compare: the record layer uses OpenSSL only. */
		CHECK_INT(gcm_setkey(&g, key, 16), -1);
		return (unit_done("test_gcm (no AES-NI)"));
	}
	CHECK_INT(gcm_setkey(&g, key, 24), -1);
	CHECK_INT(gcm_setkey(&g, key, 0), -1);
	check_zero();
	check_kats();
	check_lengths(16);
	check_lengths(32);
	check_tamper(16);
	check_tamper(32);
	return (unit_done("test_gcm"));
}
