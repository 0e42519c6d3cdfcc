/*
 * The error log (stderr, syslog or a file, with a level) and the access
 * log (JSON lines on stdout, a file, or off).
 */
#ifndef WSG_LOG_H
#define WSG_LOG_H

#include <sys/types.h>

#include <stddef.h>

struct evbuffer;

/*
 * Log targets opened but not yet in use: a reload opens the new ones
 * before it commits (log_prepare(), which logs why it failed), then puts
 * them in place (log_commit()) or closes them (log_discard()).
 */
struct wsg_log_files {
	const char	*lf_error_log;		/* the config's strings */
	const char	*lf_access_log;
	int		 lf_efd;
	int		 lf_afd;
	int		 lf_syslog;
	int		 lf_off;
};

int	log_prepare(struct wsg_log_files *, const char *, const char *);
void	log_commit(struct wsg_log_files *, int);
void	log_discard(struct wsg_log_files *);
/* Open the targets; on failure returns -1 and keeps the previous ones. */
int	log_open(const char *, const char *, int);
/*
 * wsgate -t: could CONFIG's two logs be opened?  -1, printed, if not.
 * The last two are set to the files among them to try again as user:
 * (NULL for none).
 */
int	log_check(const char *, const char *, const char *, const char **,
	    const char **);
/*
 * The same files (NULL: skip) in a child that has become the user
 * (struct passwd): could the daemon open them again after dropping root,
 * on SIGUSR1 once rotated, or at a reload?  -1, printed, if not.
 */
struct passwd;
int	log_check_user(const char *, const char *, const char *,
	    const struct passwd *);
/* Reopen file targets, e.g. after log rotation (SIGUSR1). */
int	log_reopen(void);
/* Give the open log files to the user privileges are dropped to. */
void	log_chown(uid_t);
/* -v on the command line raises the level this much above the config. */
void	log_set_verbose(int);

void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
int	log_debug_enabled(void);
/* A last warning that never waits long, to stderr if the log is stuck. */
void	log_last(const char *, ...) __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void
	fatal(const char *, ...) __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void
	fatalx(const char *, ...) __attribute__((format(printf, 1, 2)));

/* Write one access-log line (the evbuffer is drained). */
void	log_access(struct evbuffer *);
/*
 * Append a JSON string (quoted, escaped) or null when s is NULL; -1 when
 * an allocation failed and part of it may be missing.
 */
int	log_json_str(struct evbuffer *, const char *, size_t);

#endif /* WSG_LOG_H */
