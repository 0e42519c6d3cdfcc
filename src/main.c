/*
 * wsgate: command line, configuration check, start-up.
 */
#include "autoconf.h"

#ifdef HAVE_MALLOPT
#include <malloc.h>
#endif
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "config.h"
#include "errors.h"
#include "failalloc.h"
#include "log.h"
#include "metrics.h"
#include "server.h"
#include "tls13.h"

#ifndef WSG_SYSCONFDIR
#define WSG_SYSCONFDIR	"/etc"
#endif
#define WSG_DEFAULT_CONFIG	WSG_SYSCONFDIR "/wsgate/wsgate.yaml"

/*
 * Keep the heap a relay works in.  Every relayed record allocates and frees
 * OpenSSL's read and write buffers (SSL_MODE_RELEASE_BUFFERS, which keeps
 * idle connections small) and evbuffer chains of the same size.  glibc
 * gives the free top of a worker's arena back to the kernel once it passes
 * its trim threshold (128 KiB, raised only when a large mmap()ed block is
 * freed), and the next records fault the same pages in again: with 16 KiB
 * messages that madvise(2) and page-fault churn took about 30% of a
 * worker's CPU.  A fixed threshold keeps up to 8 MiB free per arena; blocks
 * up to 1 MiB (a default max_message_size) come from the arena, not from
 * mmap(2) each time.  An operator who sets glibc.malloc tunables in
 * GLIBC_TUNABLES keeps them.
 */
static void
heap_tune(void)
{
#ifdef HAVE_MALLOPT
	const char	*t = getenv("GLIBC_TUNABLES");

	if (t != NULL && strstr(t, "glibc.malloc.") != NULL)
		return;
	(void)mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
	(void)mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);
#endif
}

/*
 * Test builds only (--enable-failalloc): WSGATE_TLS13_REKEY="BYTES" or
 * "BYTES:RECORDS" lowers the plaintext and record counts after which
 * a TLS 1.3 session's write key is updated (tls13.c).
 */
static void
rekey_env(void)
{
#ifdef WSG_FAILALLOC
	const char		*env = getenv("WSGATE_TLS13_REKEY");
	unsigned long long	 bytes = 0, records = 0;

	if (env != NULL && sscanf(env, "%llu:%llu", &bytes, &records) >= 1)
		tls13_set_rekey(bytes, records);
#endif
}

/*
 * Started with stdin, stdout or stderr closed, the process's own first
 * descriptors would take their numbers, and a log line for "stderr" would
 * go into a socket or a file.  They are /dev/null instead.
 */
static void
std_fds(void)
{
	int	fd;

	while ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) != -1 &&
	    fd <= STDERR_FILENO)
		(void)fcntl(fd, F_SETFD, 0);	/* kept across exec */
	if (fd > STDERR_FILENO)
		close(fd);
}

/*
 * Fetch, once at start-up, what workers compute with later: SHA-1 for
 * Sec-WebSocket-Accept and the HMACs of JWTs.  OpenSSL 3 fills its name
 * tables at a fetch's first use; a first use that found no memory (on a
 * worker, under memory pressure) leaked, and in the failure-injection
 * tests left every later Accept failing with 500.
 */
static void
crypto_warm(void)
{
	unsigned char	md[EVP_MAX_MD_SIZE];
	unsigned int	len;

	(void)EVP_Digest("", 0, md, &len, EVP_sha1(), NULL);
	(void)HMAC(EVP_sha256(), "k", 1, md, 1, md, &len);
	(void)HMAC(EVP_sha384(), "k", 1, md, 1, md, &len);
	(void)HMAC(EVP_sha512(), "k", 1, md, 1, md, &len);
	ERR_clear_error();
}

/*
 * wsgate -t, run as root with user: set.  The daemon drops to that user
 * once started, and as the user it opens its logs again (SIGUSR1 after a
 * rotation, a reload) and reads the whole configuration again at every
 * reload: the file, policies, certificates and keys, the GeoIP database,
 * the secrets.  A child becomes the user as server.c does and tries both.
 * A log it could not open again fails the check (-1); a file it could not
 * read is a warning, since the daemon starts, and only each reload fails.
 */
static int
check_as_user(const char *file, const char *user, const char *error_log,
    const char *access_log)
{
	struct wsg_errors	 errs;
	struct wsg_config	*conf;
	struct passwd		*pw;
	size_t			 i;
	pid_t			 pid;
	int			 status, rc;

	if (user == NULL || geteuid() != 0 ||
	    (pw = getpwnam(user)) == NULL || pw->pw_uid == 0)
		return (0);
	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) == -1) {
		fprintf(stderr, "%s: cannot check as user %s: %s\n", file,
		    user, strerror(errno));
		return (-1);
	}
	if (pid == 0) {
		if (initgroups(pw->pw_name, pw->pw_gid) == -1 ||
		    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1 ||
		    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1) {
			fprintf(stderr, "%s: cannot check as user %s: %s\n",
			    file, user, strerror(errno));
			_exit(1);
		}
		rc = log_check_user(file, error_log, access_log, pw);
		memset(&errs, 0, sizeof(errs));
		if ((conf = config_load(file, &errs)) != NULL)
			config_unref(conf);
		for (i = 0; i < errs.e_n; i++)
			fprintf(stderr, "%s: warning: as user %s, which it runs "
			    "as, a reload would fail: %s\n", file, user,
			    errs.e_msgs[i]);
		errors_free(&errs);
		fflush(stderr);
		_exit(rc == 0 ? 0 : 1);
	}
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			return (-1);
	return (WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1);
}

/* Print the usage line and exit 1. */
static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: wsgate [-tVv] [-c config]\n");
	exit(1);
}

int
main(int argc, char *argv[])
{
	const char		*file = WSG_DEFAULT_CONFIG, *ue, *ua;
	struct wsg_errors	 errs;
	struct wsg_config	*conf;
	sigset_t		 set;
	size_t			 i;
	int			 ch, check = 0, verbose = 0, rc;

	/* Before OpenSSL or libevent allocate anything. */
	std_fds();
	heap_tune();
	metrics_start();
	failalloc_init();
	rekey_env();

	while ((ch = getopt(argc, argv, "c:tvV")) != -1) {
		switch (ch) {
		case 'c':
			file = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'v':
			verbose++;
			break;
		case 'V':
			printf("wsgate %s%s\n", PACKAGE_VERSION,
			    failalloc_available() ? " (failalloc)" : "");
			return (0);
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	/*
	 * A reload or a log reopen asked for while starting (systemctl
	 * reload, logrotate) would otherwise kill the process: they wait,
	 * and server_run() takes them once its handlers are in place.  A
	 * check (-t, the unit's ExecStartPre) is no target of theirs and
	 * exits with them still pending.
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	memset(&errs, 0, sizeof(errs));
	conf = config_load(file, &errs);
	for (i = 0; i < errs.e_n; i++)
		fprintf(stderr, "%s\n", errs.e_msgs[i]);
	for (i = 0; i < errs.e_nwarnings; i++)
		fprintf(stderr, "%s\n", errs.e_warnings[i]);
	if (conf == NULL) {
		errors_free(&errs);
		return (1);
	}
	errors_free(&errs);
	if (check) {
		rc = log_check(file, conf->c_error_log, conf->c_access_log,
		    &ue, &ua);
		if (check_as_user(file, conf->c_user, ue, ua) == -1)
			rc = -1;
		if (rc == 0)
			printf("%s: ok\n", file);
		config_unref(conf);
		return (rc == 0 ? 0 : 1);
	}

	crypto_warm();
	log_set_verbose(verbose);
	if (log_open(conf->c_error_log, conf->c_access_log,
	    conf->c_log_level) == -1)
		return (1);
	rc = server_run(conf);
	return (rc);
}
