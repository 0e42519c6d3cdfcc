/*
 * Logging.  Error-log lines are single write(2)s of at most 2 KiB, within
 * PIPE_BUF, so that lines from several threads never interleave, not even
 * on a pipe.  Access-log lines can be longer (a long path, an Origin), and
 * a pipe takes those in pieces when it is full: they are written one at a
 * time, under a lock.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "config.h"
#include "log.h"

/*
 * Worker threads write while the main thread reopens or retargets the logs
 * (SIGUSR1, reload).  So the two descriptors are fixed slots, made once and
 * never closed: a new target is dup2()ed onto its slot, which is atomic,
 * and a write never lands on a closed or reused descriptor.
 */
static int	 log_level = WSG_LOG_INFO;	/* atomic */
static int	 log_verbose;
static int	 log_error_fd = STDERR_FILENO;
static int	 log_syslog;			/* atomic */
static int	 log_access_fd = STDOUT_FILENO;
static int	 log_access_off;		/* atomic */
static int	 log_access_torn;		/* atomic: ends mid-line */
/* One access-log line at a time: see the top of the file. */
static pthread_mutex_t log_access_lock = PTHREAD_MUTEX_INITIALIZER;
static int	 log_slots;			/* slots made */
static char	*log_error_path;		/* main thread only */
static char	*log_access_path;
static pthread_t log_main;			/* the thread of log_open() */
static int	 log_main_set;

/*
 * The longest the main thread waits for the error log to take a line: it
 * takes the signals, and a log nobody reads (a stuck log shipper, a full
 * journald stream) must not keep it from draining and exiting.
 */
#define WSG_LOG_MAIN_WAIT_MS	500

static const char *const log_level_names[] = { "error", "warn", "info",
    "debug" };

/*
 * Open a log file for appending; -1 with errno on failure.  Once started
 * (log_open() done) it is the main thread that opens, on SIGUSR1 and at a
 * reload, and a FIFO whose reader has gone (a log shipper that is down)
 * would keep it waiting in open(2), deaf to every signal, until one came:
 * that fails at once then (ENXIO).  The descriptor itself blocks, as the
 * workers' writes want.
 */
static int
log_open_file(const char *path)
{
	int	fd, fl;

	if (!log_main_set)
		return (open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
		    0640));
	if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
	    O_NONBLOCK, 0640)) == -1)
		return (-1);
	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == -1) {
		fl = errno;
		close(fd);
		errno = fl;
		return (-1);
	}
	return (fd);
}

/* Point a slot at a new descriptor (closed here) or at a standard one. */
static void
log_retarget(int slot, int fd)
{
	struct stat	was, now;

	/* A line cut short in the old file leaves another file whole. */
	if (slot == log_access_fd && (fstat(slot, &was) == -1 ||
	    fstat(fd, &now) == -1 || was.st_dev != now.st_dev ||
	    was.st_ino != now.st_ino))
		__atomic_store_n(&log_access_torn, 0, __ATOMIC_RELAXED);
	dup2(fd, slot);
	if (fd > STDERR_FILENO)
		close(fd);
}

int
log_prepare(struct wsg_log_files *f, const char *error_log,
    const char *access_log)
{
	memset(f, 0, sizeof(*f));
	f->lf_efd = STDERR_FILENO;
	f->lf_afd = STDOUT_FILENO;
	if (strcmp(error_log, "syslog") == 0)
		f->lf_syslog = 1;
	else if (strcmp(error_log, "stderr") != 0 &&
	    (f->lf_efd = log_open_file(error_log)) == -1) {
		log_warn("cannot open error log %s", error_log);
		return (-1);
	}
	if (strcmp(access_log, "off") == 0)
		f->lf_off = 1;
	else if (strcmp(access_log, "stdout") != 0 &&
	    (f->lf_afd = log_open_file(access_log)) == -1) {
		log_warn("cannot open access log %s", access_log);
		log_discard(f);
		return (-1);
	}
	if (!log_slots) {
		int e = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
		int a = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);

		if (e == -1 || a == -1) {
			log_warn("cannot make log descriptors");
			if (e != -1)
				close(e);
			if (a != -1)
				close(a);
			log_discard(f);
			return (-1);
		}
		log_error_fd = e;
		log_access_fd = a;
		log_slots = 1;
	}
	f->lf_error_log = error_log;
	f->lf_access_log = access_log;
	return (0);
}

void
log_discard(struct wsg_log_files *f)
{
	if (f->lf_efd > STDERR_FILENO)
		close(f->lf_efd);
	if (f->lf_afd > STDERR_FILENO)
		close(f->lf_afd);
	f->lf_efd = STDERR_FILENO;
	f->lf_afd = STDOUT_FILENO;
}

void
log_commit(struct wsg_log_files *f, int level)
{
	int	efd = f->lf_efd, afd = f->lf_afd;

	log_retarget(log_error_fd, efd);
	log_retarget(log_access_fd, afd);
	if (f->lf_syslog && !__atomic_load_n(&log_syslog, __ATOMIC_RELAXED))
		openlog("wsgate", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	__atomic_store_n(&log_syslog, f->lf_syslog, __ATOMIC_RELAXED);
	__atomic_store_n(&log_access_off, f->lf_off, __ATOMIC_RELAXED);
	__atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
	free(log_error_path);
	free(log_access_path);
	log_error_path = efd > STDERR_FILENO ? strdup(f->lf_error_log) : NULL;
	log_access_path = afd > STDERR_FILENO ? strdup(f->lf_access_log) :
	    NULL;
	f->lf_efd = STDERR_FILENO;
	f->lf_afd = STDOUT_FILENO;
}

int
log_open(const char *error_log, const char *access_log, int level)
{
	struct wsg_log_files	f;

	if (log_prepare(&f, error_log, access_log) == -1)
		return (-1);
	log_commit(&f, level);
	log_main = pthread_self();
	log_main_set = 1;
	return (0);
}

/*
 * For wsgate -t: could a file be made at path, which is not there?  0 or
 * why not.  open(2) with O_CREAT follows a link that points nowhere yet
 * and makes the file it names, so the folder that counts is the one at
 * the end of the links.
 */
static int
log_check_new(const char *path)
{
	struct stat	 st;
	char		 cur[PATH_MAX], to[PATH_MAX], *slash;
	size_t		 len;
	ssize_t		 n;
	int		 hops = 0;

	if ((size_t)snprintf(cur, sizeof(cur), "%s", path) >= sizeof(cur))
		return (ENAMETOOLONG);
	while (lstat(cur, &st) == 0 && S_ISLNK(st.st_mode)) {
		if (++hops > 40)
			return (ELOOP);
		if ((n = readlink(cur, to, sizeof(to) - 1)) == -1)
			return (errno);
		to[n] = '\0';
		/* Paths are absolute: a relative link is from its folder. */
		if (to[0] == '/')
			cur[0] = '\0';
		else
			strrchr(cur, '/')[1] = '\0';
		len = strlen(cur);
		if ((size_t)snprintf(cur + len, sizeof(cur) - len, "%s", to) >=
		    sizeof(cur) - len)
			return (ENAMETOOLONG);
	}
	/* The folder ends at the last / ("/"). */
	slash = strrchr(cur, '/');
	slash[slash == cur] = '\0';
	return (access(cur, W_OK | X_OK) == 0 ? 0 : errno);
}

/*
 * For wsgate -t: could the log file at path be opened as start-up opens
 * it?  An existing one must open for appending (a FIFO, which would block
 * that open until its reader comes, must be writable); a new one needs a
 * folder it can be made in.  Nothing is made.  A failure is printed to
 * stderr as "FILE: cannot open WHAT PATH: reason"; -1 then.
 */
static int
log_check_file(const char *file, const char *what, const char *path)
{
	struct stat	 st;
	int		 fd, err;

	if (stat(path, &st) == 0 && S_ISFIFO(st.st_mode)) {
		if (access(path, W_OK) == 0)
			return (0);
		err = errno;
	} else if ((fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC |
	    O_NOCTTY)) != -1) {
		close(fd);
		return (0);
	} else if ((err = errno) == ENOENT &&
	    (err = log_check_new(path)) == 0)
		return (0);
	fprintf(stderr, "%s: cannot open %s %s: %s\n", file, what, path,
	    strerror(err));
	return (-1);
}

/*
 * For wsgate -t with user: the daemon opens its log files again as that
 * user, after dropping root: on SIGUSR1, once a rotation has taken a file
 * away, and at a reload.  Run as the user, in a child: could it?  A FIFO
 * or a device is tried as it is.  A regular file is tried as start-up
 * leaves it, given to the user (log_chown()), so its owner's bits count;
 * it, or one not there yet, must also be one the user could make anew in
 * its folder after a rotation.  A failure is printed as log_check_file()
 * prints it, with the user; -1 then.
 */
static int
log_check_as(const char *file, const char *what, const char *path,
    const struct passwd *pw)
{
	struct stat	 st;
	const char	*when = "";
	int		 fd, err;

	if (stat(path, &st) == -1) {
		if ((err = errno) == ENOENT)
			err = log_check_new(path);
	} else if (S_ISFIFO(st.st_mode))
		err = access(path, W_OK) == 0 ? 0 : errno;
	else if (S_ISREG(st.st_mode) && st.st_uid != pw->pw_uid)
		err = (st.st_mode & S_IWUSR) ? 0 : EACCES;
	else if ((fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC |
	    O_NOCTTY | O_NONBLOCK)) != -1) {
		close(fd);
		err = 0;
	} else
		err = errno;
	if (err == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
		err = log_check_new(path);
		when = ", to make it anew after a rotation";
	}
	if (err == 0)
		return (0);
	fprintf(stderr, "%s: cannot open %s %s: %s (as user %s%s)\n", file,
	    what, path, strerror(err), pw->pw_name, when);
	return (-1);
}

/* In a child that has become the user: see log.h. */
int
log_check_user(const char *file, const char *error_log,
    const char *access_log, const struct passwd *pw)
{
	int	rc = 0;

	if (error_log != NULL &&
	    log_check_as(file, "error log", error_log, pw) == -1)
		rc = -1;
	if (access_log != NULL &&
	    log_check_as(file, "access log", access_log, pw) == -1)
		rc = -1;
	return (rc);
}

int
log_check(const char *file, const char *error_log, const char *access_log,
    const char **ue, const char **ua)
{
	int	rc = 0;

	*ue = *ua = NULL;
	if (strcmp(error_log, "syslog") != 0 &&
	    strcmp(error_log, "stderr") != 0) {
		if (log_check_file(file, "error log", error_log) == -1)
			rc = -1;
		else
			*ue = error_log;
	}
	if (strcmp(access_log, "off") != 0 &&
	    strcmp(access_log, "stdout") != 0) {
		if (log_check_file(file, "access log", access_log) == -1)
			rc = -1;
		else
			*ua = access_log;
	}
	return (rc);
}

/*
 * Reopen the log files at their paths after rotation (SIGUSR1); -1 when
 * one cannot be, which then keeps writing to its old file.
 */
int
log_reopen(void)
{
	int	fd, rc = 0;

	if (log_error_path != NULL) {
		if ((fd = log_open_file(log_error_path)) != -1)
			log_retarget(log_error_fd, fd);
		else {
			log_warn("cannot reopen error log %s", log_error_path);
			rc = -1;
		}
	}
	if (log_access_path != NULL) {
		if ((fd = log_open_file(log_access_path)) != -1)
			log_retarget(log_access_fd, fd);
		else {
			log_warn("cannot reopen access log %s",
			    log_access_path);
			rc = -1;
		}
	}
	return (rc);
}

/*
 * Before dropping root: the log files opened at startup become the user's,
 * so that a reload and SIGUSR1, which open them again by path as that
 * user, can (nginx does the same).  Their group stays.  Only regular
 * files: a log on a device (/dev/null, a terminal) or a FIFO keeps its
 * owner, or the user could change its mode under everyone else.
 */
static void
log_chown_fd(int fd, const char *path, const char *what, uid_t uid)
{
	struct stat	st;

	if (path == NULL || fstat(fd, &st) == -1 || !S_ISREG(st.st_mode))
		return;
	if (fchown(fd, uid, -1) == -1)
		log_warn("cannot give %s %s to uid %u", what, path,
		    (unsigned)uid);
}

void
log_chown(uid_t uid)
{
	log_chown_fd(log_error_fd, log_error_path, "error log", uid);
	log_chown_fd(log_access_fd, log_access_path, "access log", uid);
}

void
log_set_verbose(int v)
{
	log_verbose = v;
}

int
log_debug_enabled(void)
{
	return (__atomic_load_n(&log_level, __ATOMIC_RELAXED) + log_verbose >=
	    WSG_LOG_DEBUG);
}

/*
 * Write a line without waiting more than ms for the file to take it.  The
 * descriptor stays blocking, as the workers, which share its open file,
 * want it: a socket is sent to with MSG_DONTWAIT, a pipe is written
 * through a non-blocking open file of its own (from /proc), anything else
 * once poll(2) says it can be.  -1 if the line did not all go.
 */
static int
log_write_bounded(int fd, const char *buf, size_t len, int ms)
{
	struct stat	 st;
	struct pollfd	 pfd;
	struct timespec	 now, end;
	char		 path[64];
	ssize_t		 n;
	long		 left;
	int		 wfd = -1, sock;

	if (fstat(fd, &st) == -1)
		return (-1);
	if (S_ISREG(st.st_mode))
		return (write(fd, buf, len) == (ssize_t)len ? 0 : -1);
	sock = S_ISSOCK(st.st_mode);
	if (S_ISFIFO(st.st_mode)) {
		(void)snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		wfd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += ms / 1000;
	end.tv_nsec += (long)(ms % 1000) * 1000000;
	if (end.tv_nsec >= 1000000000) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000;
	}
	pfd.fd = fd;
	pfd.events = POLLOUT;
	while (len > 0) {
		if (sock)
			n = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		else if (wfd != -1)
			n = write(wfd, buf, len);
		else if (poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLOUT))
			n = write(fd, buf, len);
		else {
			n = -1;
			errno = EAGAIN;
		}
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR))
			break;
		clock_gettime(CLOCK_MONOTONIC, &now);
		left = (long)(end.tv_sec - now.tv_sec) * 1000 +
		    (end.tv_nsec - now.tv_nsec) / 1000000;
		if (left <= 0)
			break;
		(void)poll(&pfd, 1, (int)left);
	}
	if (wfd != -1)
		close(wfd);
	return (len == 0 ? 0 : -1);
}

/* Format one error-log line at a level into line; its length. */
static size_t __attribute__((format(printf, 4, 0)))
log_format(char *line, size_t size, int level, const char *fmt, va_list ap,
    const char *err)
{
	char		 ts[32];
	struct timespec	 now;
	struct tm	 tm;
	size_t		 n;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, size, "%s.%03ldZ %s: ", ts,
	    now.tv_nsec / 1000000, log_level_names[level]);
	n += vsnprintf(line + n, size - n, fmt, ap);
	if (n < size && err != NULL)
		n += snprintf(line + n, size - n, ": %s", err);
	if (n >= size - 1)
		n = size - 2;
	line[n++] = '\n';
	return (n);
}

/* Is this the main thread, which must not wait on a log for long? */
static int
log_on_main(void)
{
	return (log_main_set && pthread_equal(pthread_self(), log_main));
}

/* Format and write one error-log line at a level. */
static void __attribute__((format(printf, 3, 0)))
log_vwrite(int level, const char *err, const char *fmt, va_list ap)
{
	char		 line[2048];
	size_t		 n;
	int		 prio;

	if (level > __atomic_load_n(&log_level, __ATOMIC_RELAXED) +
	    log_verbose)
		return;
	if (__atomic_load_n(&log_syslog, __ATOMIC_RELAXED)) {
		char msg[1800];

		vsnprintf(msg, sizeof(msg), fmt, ap);
		prio = level == WSG_LOG_ERROR ? LOG_ERR : level ==
		    WSG_LOG_WARN ? LOG_WARNING : level == WSG_LOG_INFO ?
		    LOG_INFO : LOG_DEBUG;
		if (err != NULL)
			syslog(prio, "%s: %s", msg, err);
		else
			syslog(prio, "%s", msg);
		return;
	}
	n = log_format(line, sizeof(line), level, fmt, ap, err);
	if (log_on_main())
		(void)log_write_bounded(log_error_fd, line, n,
		    WSG_LOG_MAIN_WAIT_MS);
	else
		(void)write(log_error_fd, line, n);
}

/*
 * The last line of a process that ends with workers blocked on a log: at
 * level warn to the error log, if it takes it in time, else (and always
 * with syslog, whose lock such a worker may hold) to stderr when that is
 * another file.
 */
void
log_last(const char *fmt, ...)
{
	struct stat	 a, b;
	va_list		 ap;
	char		 line[2048];
	size_t		 n;
	int		 sl;

	va_start(ap, fmt);
	n = log_format(line, sizeof(line), WSG_LOG_WARN, fmt, ap, NULL);
	va_end(ap);
	sl = __atomic_load_n(&log_syslog, __ATOMIC_RELAXED);
	if (!sl && log_write_bounded(log_error_fd, line, n,
	    WSG_LOG_MAIN_WAIT_MS) == 0)
		return;
	if (sl || fstat(log_error_fd, &a) == -1 ||
	    fstat(STDERR_FILENO, &b) == -1 || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino)
		(void)log_write_bounded(STDERR_FILENO, line, n,
		    WSG_LOG_MAIN_WAIT_MS);
}

/*
 * The text of an error number.  The GNU strerror_r(), which
 * AC_USE_SYSTEM_EXTENSIONS selects, returns it and mostly leaves buf as
 * it was; the POSIX one fills buf.
 */
static const char *
log_strerror(int err, char *buf, size_t len)
{
#ifdef STRERROR_R_CHAR_P
	return (strerror_r(err, buf, len));
#else
	if (strerror_r(err, buf, len) != 0)
		(void)snprintf(buf, len, "error %d", err);
	return (buf);
#endif
}

void
log_warn(const char *fmt, ...)
{
	va_list	 ap;
	char	 ebuf[128];
	const char	*e;
	int	 saved = errno;

	e = log_strerror(saved, ebuf, sizeof(ebuf));
	va_start(ap, fmt);
	log_vwrite(WSG_LOG_WARN, e, fmt, ap);
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vwrite(WSG_LOG_WARN, NULL, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vwrite(WSG_LOG_INFO, NULL, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vwrite(WSG_LOG_DEBUG, NULL, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list	 ap;
	char	 ebuf[128];
	const char	*e;

	e = log_strerror(errno, ebuf, sizeof(ebuf));
	va_start(ap, fmt);
	log_vwrite(WSG_LOG_ERROR, e, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vwrite(WSG_LOG_ERROR, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}

/*
 * One line, in one write.  A write cut short (a full disk, the file size
 * limit) leaves part of a line: the next line that can be written first
 * ends it, so that only the line cut short is lost, not the next one too.
 */
void
log_access(struct evbuffer *line)
{
	struct iovec	 iov[2];
	size_t		 len;
	ssize_t		 n;
	int		 torn;

	len = evbuffer_get_length(line);
	if (!__atomic_load_n(&log_access_off, __ATOMIC_RELAXED) && len > 0 &&
	    (iov[1].iov_base = evbuffer_pullup(line, len)) != NULL) {
		pthread_mutex_lock(&log_access_lock);
		torn = __atomic_exchange_n(&log_access_torn, 0,
		    __ATOMIC_RELAXED);
		iov[0].iov_base = "\n";
		iov[0].iov_len = torn ? 1 : 0;
		iov[1].iov_len = len;
		n = writev(log_access_fd, iov, 2);
		/* The file now ends mid-line: in this one, or the last. */
		if (n == -1 ? torn : (size_t)n != (size_t)torn &&
		    (size_t)n < len + torn)
			__atomic_store_n(&log_access_torn, 1,
			    __ATOMIC_RELAXED);
		pthread_mutex_unlock(&log_access_lock);
	}
	evbuffer_drain(line, len);
}

/*
 * Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, nothing past U+10FFFF) and its code point, or 0.
 */
static size_t
log_utf8_char(const unsigned char *s, size_t len, uint32_t *cp)
{
	unsigned char	lo = 0x80, hi = 0xbf;
	size_t		n, i;
	uint32_t	c;

	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		c = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		c = s[0] & 0x0f;
		if (s[0] == 0xe0)
			lo = 0xa0;
		else if (s[0] == 0xed)
			hi = 0x9f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		c = s[0] & 0x07;
		if (s[0] == 0xf0)
			lo = 0x90;
		else if (s[0] == 0xf4)
			hi = 0x8f;
	} else
		return (0);
	if (len < n || s[1] < lo || s[1] > hi)
		return (0);
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return (0);
		c = (c << 6) | (s[i] & 0x3f);
	}
	*cp = c;
	return (n);
}

/* Append \uXXXX for one UTF-16 unit; -1 if it could not be added. */
static int
log_json_unit(struct evbuffer *b, uint32_t u)
{
	static const char	hex[] = "0123456789abcdef";
	char			esc[6];

	esc[0] = '\\';
	esc[1] = 'u';
	esc[2] = hex[(u >> 12) & 0xf];
	esc[3] = hex[(u >> 8) & 0xf];
	esc[4] = hex[(u >> 4) & 0xf];
	esc[5] = hex[u & 0xf];
	return (evbuffer_add(b, esc, 6));
}

/*
 * The log stays ASCII: controls and every non-ASCII character are escaped,
 * a character as its code point (a surrogate pair above U+FFFF), so that
 * a JSON reader gets the text that was sent; a byte that is not part of
 * well-formed UTF-8 becomes U+FFFD.
 */
int
log_json_str(struct evbuffer *b, const char *s, size_t len)
{
	const unsigned char	*u = (const unsigned char *)s;
	size_t			 i, n, start = 0;
	uint32_t		 cp;
	unsigned char		 c;
	char			 esc[2];
	int			 rv = 0;

	if (s == NULL)
		return (evbuffer_add(b, "null", 4));
	rv |= evbuffer_add(b, "\"", 1);
	for (i = 0; i < len; i += n) {
		c = u[i];
		n = 1;
		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x7f)
			continue;
		rv |= evbuffer_add(b, s + start, i - start);
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			rv |= evbuffer_add(b, esc, 2);
		} else if (c < 0x80)
			rv |= log_json_unit(b, c);
		else if ((n = log_utf8_char(u + i, len - i, &cp)) == 0) {
			n = 1;
			rv |= log_json_unit(b, 0xfffd);
		} else if (cp > 0xffff) {
			cp -= 0x10000;
			rv |= log_json_unit(b, 0xd800 | (cp >> 10));
			rv |= log_json_unit(b, 0xdc00 | (cp & 0x3ff));
		} else
			rv |= log_json_unit(b, cp);
		start = i + n;
	}
	rv |= evbuffer_add(b, s + start, len - start);
	rv |= evbuffer_add(b, "\"", 1);
	return (rv ? -1 : 0);
}
