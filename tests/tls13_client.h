/*
 * The client's half of a TLS 1.3 connection, for the tests that write
 * records OpenSSL's client would not send (empty, padded, typeless, of any
 * inner type): the client's traffic secret from OpenSSL's key log, its key
 * and IV through EVP_KDF's HKDF (apart from tls13.c's own derivation), and
 * records sealed with AES-128-GCM.  Included by tests/unit/test_tls13.c
 * and tests/fuzz/fuzz_tls13.c; everything is static.
 */
#ifndef WSG_TESTS_TLS13_CLIENT_H
#define WSG_TESTS_TLS13_CLIENT_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>

static unsigned char	 tc_secret[32];
static size_t		 tc_secretlen;	/* 32 once the handshake is done */

/* SSL_CTX_set_keylog_callback(): keep CLIENT_TRAFFIC_SECRET_0. */
static void
tc_keylog(const SSL *ssl, const char *line)
{
	const char	*h;
	unsigned int	 b;

	(void)ssl;
	if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) != 0 ||
	    (h = strrchr(line, ' ')) == NULL)
		return;
	for (tc_secretlen = 0, h++; tc_secretlen < sizeof(tc_secret) &&
	    sscanf(h, "%2x", &b) == 1; h += 2)
		tc_secret[tc_secretlen++] = (unsigned char)b;
}

/* HKDF-Expand-Label(secret, label, "", outlen) with SHA-256; 0 or -1. */
static int
tc_expand(const char *label, unsigned char *out, size_t outlen)
{
	EVP_KDF		*kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX	*k = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM	 params[5];
	unsigned char	 info[64];
	size_t		 n = 0, ll = strlen(label);
	int		 mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY, rc = -1;

	info[n++] = 0;
	info[n++] = (unsigned char)outlen;
	info[n++] = (unsigned char)(6 + ll);
	memcpy(info + n, "tls13 ", 6);
	memcpy(info + n + 6, label, ll);
	n += 6 + ll;
	info[n++] = 0;
	params[0] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
	    "SHA256", 0);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
	    tc_secret, tc_secretlen);
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
	    info, n);
	params[4] = OSSL_PARAM_construct_end();
	if (k != NULL && EVP_KDF_derive(k, out, outlen, params) == 1)
		rc = 0;
	EVP_KDF_CTX_free(k);
	EVP_KDF_free(kdf);
	return (rc);
}

/*
 * Seal content, type (when >= 0) and pad zeros as the client's record seq
 * into rec (5 + len + 1 + pad + 16 bytes at most), with inner as scratch
 * (len + 1 + pad bytes).  Returns the record's length, 0 on an error.
 */
static size_t
tc_seal(unsigned char *rec, unsigned char *inner, uint64_t seq,
    const void *content, size_t len, int type, size_t pad,
    const unsigned char key[16], const unsigned char iv0[12])
{
	EVP_CIPHER_CTX	*ctx;
	unsigned char	 iv[12];
	size_t		 n, clen;
	int		 ol, i, ok;

	memcpy(inner, content, len);
	n = len;
	if (type >= 0)
		inner[n++] = (unsigned char)type;
	memset(inner + n, 0, pad);
	n += pad;
	clen = n + 16;
	memcpy(iv, iv0, sizeof(iv));
	for (i = 0; i < 8; i++)
		iv[11 - i] ^= (unsigned char)(seq >> (8 * i));
	rec[0] = 0x17;
	rec[1] = rec[2] = 0x03;
	rec[3] = (unsigned char)(clen >> 8);
	rec[4] = (unsigned char)clen;
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
		return (0);
	ok = EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), NULL, key, iv) == 1 &&
	    EVP_EncryptUpdate(ctx, NULL, &ol, rec, 5) == 1 &&
	    (n == 0 || EVP_EncryptUpdate(ctx, rec + 5, &ol, inner,
	    (int)n) == 1) &&
	    EVP_EncryptFinal_ex(ctx, rec + 5 + n, &ol) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16,
	    rec + 5 + n) == 1;
	EVP_CIPHER_CTX_free(ctx);
	return (ok ? 5 + clen : 0);
}

#endif /* WSG_TESTS_TLS13_CLIENT_H */
