/*
 * Shared by the config and policy loader harnesses: a private scratch tree
 * under /tmp that the loaders read (the fuzz input is rewritten into one
 * file of it per run, so relative paths in the input resolve inside it),
 * and the check that every message a loader reports is
 * "FILE:LINE:COL: message" or "FILE: message".
 *
 * The tree, made once per process and removed at exit:
 *
 *	DIR/etc/wsgate.yaml	the input of fuzz_config
 *	DIR/etc/input.yaml	the input of fuzz_policy
 *	DIR/etc/policies/	the small policies below: "policies_dir:
 *	DIR/policies/		policies" and the default "../policies" find them
 *	DIR/etc/keys/		keys that policies in DIR/etc may name
 *	DIR/etc/server.pem	a certificate and its key for TLS listeners,
 *	DIR/etc/server.key	also as tls/server.pem and tls/server.key
 */
#ifndef WSG_FUZZ_LOADER_H
#define WSG_FUZZ_LOADER_H

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"

#define FUZZ_ASSERT(c)	do { if (!(c)) fuzz_fail(#c, __LINE__); } \
			    while (0)
#define FUZZ_MAX_IN	(64 * 1024)	/* longer inputs are skipped */

#define FUZZ_RSA_PEM \
    "-----BEGIN PUBLIC KEY-----\n" \
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAlJyP+thZulIDAcp+y2MT\n" \
    "eSKtKLVx8uha3icDjGGTMY4ZQKjekzbimEi7qSjRnC/rEaExvw8ajAk1aqPFjllM\n" \
    "AEDg5EzYuoEDLTWDFtlHR6np7m7vI0R09KKO+hk6WtMASCoyL0mpvryhIp0FUBCf\n" \
    "2j2cfdg8+hBLjGn6t7ECr8onihIV1INzGH0PhzHM08TPpdYvFeBlDd1KWLQEPEZc\n" \
    "fP+pD9R136lVz32kxsAnfq5r900cpppPMdqDXGRwMi6PeLEvDUsGpFI3OPmFNHF/\n" \
    "AsYfEBO/mRbO5ubr1q7MF5FU6JrfrcQwgK3woJjPUoL+7C74tIh1b8V9gmOsH47N\n" \
    "EQIDAQAB\n" \
    "-----END PUBLIC KEY-----\n"
/* Self-signed, P-256, CN localhost, valid until 2126. */
#define FUZZ_CERT_PEM \
    "-----BEGIN CERTIFICATE-----\n" \
    "MIIBfzCCASWgAwIBAgIUaMjmG71WoHmlOf3RCXE/WQAr6owwCgYIKoZIzj0EAwIw\n" \
    "FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwNzEzNDIxN1oYDzIxMjYxMTEz\n" \
    "MTM0MjE3WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO\n" \
    "PQMBBwNCAASX/0SeNsHCel3/T/Y03qQ9Cdjip9enYLzGxng0psLw+h107Szb+736\n" \
    "vxLSMxHDXVQCg8VBaegZAwyNonJ2DLSNo1MwUTAdBgNVHQ4EFgQUgws4qdYPmUUt\n" \
    "62LrqoyRUXQj4d4wHwYDVR0jBBgwFoAUgws4qdYPmUUt62LrqoyRUXQj4d4wDwYD\n" \
    "VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAyIDNQxRagIZnfa8pj/9/\n" \
    "99J43iY0vO/8AngP2Xyj4rICIGNpmYKq4XFsUT+qPbGs9E8IFdPThn2VjOasNFRU\n" \
    "DvFF\n" \
    "-----END CERTIFICATE-----\n"
#define FUZZ_KEY_PEM \
    "-----BEGIN PRIVATE KEY-----\n" \
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgJrgRRYnJSOIrgZk7\n" \
    "K4UgTzuemTBG8p9+w4kOafc37zahRANCAASX/0SeNsHCel3/T/Y03qQ9Cdjip9en\n" \
    "YLzGxng0psLw+h107Szb+736vxLSMxHDXVQCg8VBaegZAwyNonJ2DLSN\n" \
    "-----END PRIVATE KEY-----\n"
#define FUZZ_POLICY_DEFAULT \
    "frames:\n  max_frame_size: 64KiB\n  max_message_size: 1MiB\n" \
    "  validate_utf8: true\n  allow_binary: true\n" \
    "  compression: strip\ntimeouts:\n  idle: 300s\n"
#define FUZZ_POLICY_CHAT \
    "origin:\n  allow: [https://chat.example.com]\n" \
    "  allow_regex: ['^https://[a-z0-9-]+\\.chat\\.example\\.com$']\n" \
    "subprotocols: [chat.v2, chat.v1]\n" \
    "messages:\n  deny_regex: ['(?i)<script']\n" \
    "rate_limit:\n  connections_per_ip: { rate: 10/s, burst: 20 }\n" \
    "  concurrent_per_ip: 100\n"
#define FUZZ_POLICY_FULL \
    "ip:\n  allow: [10.0.0.0/8, \"2001:db8::/32\"]\n" \
    "  deny: [10.66.0.0/16]\n" \
    "frames:\n  max_frame_size: 16KiB\n  allow_binary: false\n" \
    "auth:\n  jwt:\n    algorithms: [RS256]\n    key_file: keys/rsa.pub\n"

/* Folders of the tree, parents first. */
static const char *const fuzz_dirs[] = {
	"etc", "etc/policies", "etc/policies/keys", "etc/keys", "etc/tls",
	"policies", "policies/keys"
};

/*
 * Its files: policies, keys and certificates the seeds name, so that loads
 * can succeed and reach the checks after parsing.  No GeoIP database.
 */
static const struct {
	const char	*ff_path;
	const char	*ff_body;
} fuzz_files[] = {
	{ "etc/policies/default.yaml", FUZZ_POLICY_DEFAULT },
	{ "etc/policies/chat.yaml", FUZZ_POLICY_CHAT },
	{ "etc/policies/full.yaml", FUZZ_POLICY_FULL },
	{ "etc/policies/broken.yaml", "frames: [\n" },
	{ "policies/default.yaml", FUZZ_POLICY_DEFAULT },
	{ "policies/chat.yaml", FUZZ_POLICY_CHAT },
	{ "policies/full.yaml", FUZZ_POLICY_FULL },
	{ "policies/broken.yaml", "frames: [\n" },
	{ "etc/keys/rsa.pub", FUZZ_RSA_PEM },
	{ "etc/keys/demo-jwt.pub", FUZZ_RSA_PEM },
	{ "etc/keys/hmac.key", "wsgate-fuzz-secret-0123456789abcdef\n" },
	{ "etc/keys/short.key", "short\n" },
	{ "etc/policies/keys/rsa.pub", FUZZ_RSA_PEM },
	{ "policies/keys/rsa.pub", FUZZ_RSA_PEM },
	{ "policies/keys/demo-jwt.pub", FUZZ_RSA_PEM },
	{ "etc/server.pem", FUZZ_CERT_PEM },
	{ "etc/server.key", FUZZ_KEY_PEM },
	{ "etc/tls/server.pem", FUZZ_CERT_PEM },
	{ "etc/tls/server.key", FUZZ_KEY_PEM }
};

#define FUZZ_NDIRS	(sizeof(fuzz_dirs) / sizeof(fuzz_dirs[0]))
#define FUZZ_NFILES	(sizeof(fuzz_files) / sizeof(fuzz_files[0]))

static char	fuzz_dir[64];
static char	fuzz_path[128];

static void
fuzz_fail(const char *what, int line)
{
	fprintf(stderr, "fuzz: check failed at line %d: %s\n", line,
	    what);
	abort();
}

/* Write len bytes to path, replacing it. */
static void
fuzz_write(const char *path, const void *p, size_t len)
{
	FILE	*fp;

	FUZZ_ASSERT((fp = fopen(path, "w")) != NULL);
	FUZZ_ASSERT(len == 0 || fwrite(p, 1, len, fp) == len);
	FUZZ_ASSERT(fclose(fp) == 0);
}

/* Remove the scratch tree (only what fuzz_setup made). */
static void
fuzz_cleanup(void)
{
	char	path[256];
	size_t	i;

	if (fuzz_dir[0] == '\0')
		return;
	unlink(fuzz_path);
	for (i = 0; i < FUZZ_NFILES; i++) {
		snprintf(path, sizeof(path), "%s/%s", fuzz_dir,
		    fuzz_files[i].ff_path);
		unlink(path);
	}
	for (i = FUZZ_NDIRS; i > 0; i--) {
		snprintf(path, sizeof(path), "%s/%s", fuzz_dir,
		    fuzz_dirs[i - 1]);
		rmdir(path);
	}
	rmdir(fuzz_dir);
}

/* Make the scratch tree; the input file is DIR/etc/NAME. */
static void
fuzz_setup(const char *name)
{
	char	path[256];
	size_t	i;

	snprintf(fuzz_dir, sizeof(fuzz_dir), "/tmp/wsgate-fuzz.XXXXXX");
	FUZZ_ASSERT(mkdtemp(fuzz_dir) != NULL);
	atexit(fuzz_cleanup);
	for (i = 0; i < FUZZ_NDIRS; i++) {
		snprintf(path, sizeof(path), "%s/%s", fuzz_dir, fuzz_dirs[i]);
		FUZZ_ASSERT(mkdir(path, 0700) == 0);
	}
	for (i = 0; i < FUZZ_NFILES; i++) {
		snprintf(path, sizeof(path), "%s/%s", fuzz_dir,
		    fuzz_files[i].ff_path);
		fuzz_write(path, fuzz_files[i].ff_body,
		    strlen(fuzz_files[i].ff_body));
	}
	snprintf(fuzz_path, sizeof(fuzz_path), "%s/etc/%s", fuzz_dir, name);
}

/*
 * Is rest ":LINE:COL: " (line and col at least 1) or ": " followed by a
 * message?  Returns the message or NULL.
 */
static const char *
fuzz_after_file(const char *rest)
{
	const char	*p = rest;
	size_t		 i;

	if (p[0] != ':')
		return NULL;
	if (p[1] == ' ')
		return p + 2;
	for (i = 0, p++; i < 2; i++) {
		if (*p < '1' || *p > '9')
			return NULL;
		while (*p >= '0' && *p <= '9')
			p++;
		if (*p != ':')
			return NULL;
		p++;
	}
	return *p == ' ' ? p + 1 : NULL;
}

/*
 * A message of file itself, or of a policy file the input names
 * (an absolute "DIR/NAME.yaml", which may have any folder).
 */
static void
fuzz_check_msg(const char *m, const char *file, int warning)
{
	const char	*msg = NULL, *y;
	size_t		 flen = strlen(file);

	if (strncmp(m, file, flen) == 0)
		msg = fuzz_after_file(m + flen);
	for (y = m; msg == NULL && (y = strstr(y, ".yaml:")) != NULL; y++) {
		if (m[0] == '/' && memchr(m, '/', (size_t)(y - m)) != NULL)
			msg = fuzz_after_file(y + 5);
	}
	if (msg == NULL) {
		fprintf(stderr, "fuzz: badly formed message: %s\n", m);
		abort();
	}
	FUZZ_ASSERT(!warning || strncmp(msg, "warning: ", 9) == 0);
}

/* Every error and warning is well formed. */
static void
fuzz_check_errors(const struct wsg_errors *e, const char *file)
{
	size_t	i;

	FUZZ_ASSERT(e->e_n <= e->e_cap && e->e_nwarnings <= e->e_capwarnings);
	for (i = 0; i < e->e_n; i++)
		fuzz_check_msg(e->e_msgs[i], file, 0);
	for (i = 0; i < e->e_nwarnings; i++)
		fuzz_check_msg(e->e_warnings[i], file, 1);
}

#endif /* WSG_FUZZ_LOADER_H */
