/*
 * libFuzzer harness for the TLS 1.3 record layer that reads clients'
 * records once a session is taken over (tls13.c).  Each input gets a
 * fresh handshake with OpenSSL as the client over a socket pair, then a
 * stream of records: sealed with the client's key (any inner content
 * type, content and padding) or raw bytes (headers and lengths of any
 * kind), and the end of the stream.  tls13_read() must deliver a prefix
 * of the application data sealed, in order, and all of it when every
 * record was plain application data; it must end in EOF (close_notify)
 * or an error with a reason, never hang.
 *
 * Input, repeated: an op byte; op & 0x80: raw, a length byte and that
 * many bytes; else sealed: inner type (op & 7 picks one), a padding byte,
 * a length byte and that many bytes of content.
 */
#include "autoconf.h"

#include <sys/socket.h>

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "errors.h"
#include "tls.h"
#include "tls13.h"

#include "../tls13_client.h"

#define FUZZ_ASSERT(c)	do { if (!(c)) abort(); } while (0)
#define FUZZ_STEPS	2000		/* bound on every loop */
#define FUZZ_MAX_WIRE	(96 * 1024)	/* fits in a socket pair */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static SSL_CTX		*fuzz_sctx, *fuzz_cctx;
static char		 fuzz_cert[64], fuzz_key[64];

/* Inner content types: application data most, the rest, none. */
static const int	 fuzz_types[8] = { 0x17, 0x17, 0x17, 0x15, 0x16,
			    0x14, 0x00, -1 };

static void
fuzz_cleanup(void)
{
	unlink(fuzz_cert);
	unlink(fuzz_key);
}

/* A self-signed P-256 certificate and key in two temporary files. */
static void
fuzz_make_cert(void)
{
	EVP_PKEY	*pk;
	X509		*x;
	X509_NAME	*n;
	FILE		*f;
	int		 fd;

	strcpy(fuzz_cert, "/tmp/wsg-fuzz-cert.XXXXXX");
	strcpy(fuzz_key, "/tmp/wsg-fuzz-key.XXXXXX");
	FUZZ_ASSERT((fd = mkstemp(fuzz_cert)) != -1);
	close(fd);
	FUZZ_ASSERT((fd = mkstemp(fuzz_key)) != -1);
	close(fd);
	atexit(fuzz_cleanup);
	FUZZ_ASSERT((pk = EVP_EC_gen("P-256")) != NULL);
	FUZZ_ASSERT((x = X509_new()) != NULL);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, pk);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(x, n);
	FUZZ_ASSERT(X509_sign(x, pk, EVP_sha256()) > 0);
	FUZZ_ASSERT((f = fopen(fuzz_cert, "w")) != NULL);
	FUZZ_ASSERT(PEM_write_X509(f, x) == 1);
	fclose(f);
	FUZZ_ASSERT((f = fopen(fuzz_key, "w")) != NULL);
	FUZZ_ASSERT(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) ==
	    1);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(pk);
}

/* Handshake a client and a server SSL over sv; 0 when both are done. */
static int
fuzz_handshake(SSL *c, SSL *s, int sfd)
{
	struct pollfd	pfd = { sfd, POLLIN, 0 };
	int		i, rc = 0, rs = 0;

	for (i = 0; i < FUZZ_STEPS && (rc != 1 || rs != 1); i++) {
		if (rc != 1)
			rc = SSL_do_handshake(c);
		if (rs != 1)
			rs = SSL_do_handshake(s);
		(void)poll(&pfd, 1, 5);
	}
	return rc == 1 && rs == 1 ? 0 : -1;
}

/* Make the contexts once per process. */
static void
fuzz_init(void)
{
	struct wsg_errors	errs;

	memset(&errs, 0, sizeof(errs));
	fuzz_make_cert();
	fuzz_sctx = tls_ctx_new(fuzz_cert, fuzz_key, TLS1_3_VERSION, NULL,
	    &errs, "fuzz", 0, 0);
	FUZZ_ASSERT(fuzz_sctx != NULL);
	errors_free(&errs);
	FUZZ_ASSERT((fuzz_cctx = SSL_CTX_new(TLS_client_method())) != NULL);
	SSL_CTX_set_min_proto_version(fuzz_cctx, TLS1_3_VERSION);
	SSL_CTX_set_ciphersuites(fuzz_cctx, "TLS_AES_128_GCM_SHA256");
	SSL_CTX_set_keylog_callback(fuzz_cctx, tc_keylog);
}

/* Build the wire bytes from the input; *plain gets the sealed app data. */
static size_t
fuzz_wire(const uint8_t *data, size_t size, uint8_t *wire,
    struct evbuffer *plain, int *clean)
{
	unsigned char	 key[16], iv[12], inner[256 + 1 + 255];
	size_t		 pos = 0, w = 0, n, pad, k, len;
	uint64_t	 seq = 0;
	int		 type;

	FUZZ_ASSERT(tc_expand("key", key, sizeof(key)) == 0 &&
	    tc_expand("iv", iv, sizeof(iv)) == 0);
	*clean = 1;
	while (pos < size && w + 5 + 256 + 255 + 16 <= FUZZ_MAX_WIRE) {
		if (data[pos] & 0x80) {
			if (size - pos < 2)
				break;
			n = data[pos + 1];
			if (n > size - pos - 2)
				n = size - pos - 2;
			memcpy(wire + w, data + pos + 2, n);
			w += n;
			pos += 2 + n;
			*clean = 0;
			continue;
		}
		if (size - pos < 3)
			break;
		type = fuzz_types[data[pos] & 7];
		pad = data[pos + 1] & 0x3f;
		n = data[pos + 2];
		if (n > size - pos - 3)
			n = size - pos - 3;
		FUZZ_ASSERT((k = tc_seal(wire + w, inner, seq++, data + pos + 3,
		    n, type, pad, key, iv)) > 0);
		w += k;
		/*
		 * With no type byte, or a zero one, the last non-zero byte
		 * of the content is the record's type (RFC 8446 5.4) and
		 * what comes before it the content.
		 */
		len = n;
		if (type <= 0) {
			while (len > 0 && data[pos + 3 + len - 1] == 0)
				len--;
			if (len > 0)
				type = data[pos + 3 + --len];
		}
		if (type == 0x17)
			evbuffer_add(plain, data + pos + 3, len);
		if (type != 0x17 || len == 0 || len != n)
			*clean = 0;
		pos += 3 + n;
	}
	return w;
}

/* One session: the input's records, then EOF. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t		 wire[FUZZ_MAX_WIRE];
	struct wsg_tls13	*t;
	struct evbuffer		*in, *plain;
	struct pollfd		 pfd;
	unsigned long		 err;
	SSL			*c, *s;
	size_t			 n, got = 0, off;
	ssize_t			 k;
	int			 sv[2], rc = 0, i, clean;

	if (fuzz_sctx == NULL)
		fuzz_init();
	FUZZ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	FUZZ_ASSERT((c = SSL_new(fuzz_cctx)) != NULL);
	FUZZ_ASSERT((s = SSL_new(fuzz_sctx)) != NULL);
	SSL_set_fd(c, sv[0]);
	SSL_set_fd(s, sv[1]);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	tc_secretlen = 0;
	FUZZ_ASSERT(fuzz_handshake(c, s, sv[1]) == 0);
	FUZZ_ASSERT(tc_secretlen == 32);
	FUZZ_ASSERT((t = tls13_takeover(s)) != NULL);
	FUZZ_ASSERT((in = evbuffer_new()) != NULL);
	FUZZ_ASSERT((plain = evbuffer_new()) != NULL);

	n = fuzz_wire(data, size, wire, plain, &clean);
	for (off = 0, i = 0; off < n && i < FUZZ_STEPS; i++) {
		k = send(sv[0], wire + off, n - off, MSG_NOSIGNAL);
		if (k > 0)
			off += (size_t)k;
		else {
			/* Full: let the record layer take some. */
			err = 0;
			rc = tls13_read(t, sv[1], in, 0, &got, &err);
			if (rc != 0)
				break;
		}
	}
	shutdown(sv[0], SHUT_WR);
	pfd.fd = sv[1];
	pfd.events = POLLIN;
	for (i = 0; rc == 0 && i < FUZZ_STEPS; i++) {
		err = 0;
		rc = tls13_read(t, sv[1], in, 0, &got, &err);
		if (rc == 0)
			(void)poll(&pfd, 1, 5);
	}
	/* It ends, and says why when it is an error. */
	FUZZ_ASSERT(rc == TLS13_EOF || rc == TLS13_ERROR);
	FUZZ_ASSERT(rc != TLS13_ERROR || err != 0);
	FUZZ_ASSERT(got == evbuffer_get_length(in));
	/* What came out was sealed as application data, in order. */
	FUZZ_ASSERT(evbuffer_get_length(in) <= evbuffer_get_length(plain));
	FUZZ_ASSERT(evbuffer_get_length(in) == 0 ||
	    memcmp(evbuffer_pullup(in, -1), evbuffer_pullup(plain, -1),
	    evbuffer_get_length(in)) == 0);
	if (clean && off == n) {
		/* The socket's end, without close_notify, is an error. */
		FUZZ_ASSERT(rc == TLS13_ERROR && ERR_GET_REASON(err) ==
		    SSL_R_UNEXPECTED_EOF_WHILE_READING);
		FUZZ_ASSERT(evbuffer_get_length(in) ==
		    evbuffer_get_length(plain));
	}

	evbuffer_free(in);
	evbuffer_free(plain);
	tls13_free(t);
	SSL_free(c);
	SSL_free(s);
	close(sv[0]);
	close(sv[1]);
	ERR_clear_error();
	return 0;
}
