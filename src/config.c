/*
 * Configuration loading.  The main file and every policy file are read with
 * libyaml's document API, so every node keeps its line and column, and are
 * walked with one option table: for each scope the walker checks node
 * types, rejects unknown and duplicate keys, parses each value with the
 * parsers of units.c, checks it against the table's range, stores it, and
 * fills in the table's defaults.  Every error is collected; nothing stops at
 * the first one.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <yaml.h>

#include "config.h"
#include "errors.h"
#include "tls.h"
#include "units.h"
#include "wsgate.h"

#define MAN_MAIN	"wsgate.yaml.5"
#define MAN_POLICY	"wsgate-policy.5"

#define CONFIG_MAX_LISTENERS	64
#define CONFIG_MAX_ROUTES	256	/* per listener */
#define CONFIG_MAX_UPSTREAMS	256
#define CONFIG_MAX_SERVERS	64	/* per upstream */
#define CONFIG_MAX_POLICY_NAME	64

/* Scopes: where a key may appear, and which man page documents it. */
enum config_scope {
	SC_NONE = 0,
	SC_MAIN,
	SC_LOG,
	SC_LISTENER,
	SC_TLS,
	SC_ROUTE,
	SC_UPSTREAM,
	SC_POLICY,
	SC_FRAMES,
	SC_TIMEOUTS
};

#define SCOPE_NAME_MAIN		"main"
#define SCOPE_NAME_LOG		"log"
#define SCOPE_NAME_LISTENER	"listener"
#define SCOPE_NAME_TLS		"listener.tls"
#define SCOPE_NAME_ROUTE	"route"
#define SCOPE_NAME_UPSTREAM	"upstream"
#define SCOPE_NAME_POLICY	"policy"
#define SCOPE_NAME_FRAMES	"policy.frames"
#define SCOPE_NAME_TIMEOUTS	"policy.timeouts"

#define SCOPE_MAN_MAIN		MAN_MAIN
#define SCOPE_MAN_LOG		MAN_MAIN
#define SCOPE_MAN_LISTENER	MAN_MAIN
#define SCOPE_MAN_TLS		MAN_MAIN
#define SCOPE_MAN_ROUTE		MAN_MAIN
#define SCOPE_MAN_UPSTREAM	MAN_MAIN
#define SCOPE_MAN_POLICY	MAN_POLICY
#define SCOPE_MAN_FRAMES	MAN_POLICY
#define SCOPE_MAN_TIMEOUTS	MAN_POLICY

/* A route as written, before its upstream and policy are looked up. */
struct config_route_src {
	char		*rs_path;
	char		*rs_upstream;
	char		*rs_policy;
};

/* A route whose upstream and policy are looked up after the walk. */
struct config_pending {
	struct wsg_route	*pd_route;	/* NULL if its path was bad */
	char			*pd_path;
	char			*pd_upstream;
	char			*pd_policy;
	yaml_node_t		*pd_upstream_node;
	yaml_node_t		*pd_policy_node;
};

/* What one load is working on. */
struct config_ctx {
	struct config_pending	*x_pending;
	size_t			 x_npending;
	struct wsg_errors	*x_errs;
	const char		*x_file;	/* file being walked */
	char			*x_dir;		/* its absolute folder */
	yaml_document_t		*x_doc;
	struct wsg_config	*x_cf;		/* NULL for a lone policy */
};

struct config_slot;
typedef void	(*config_fn)(struct config_ctx *, const struct config_slot *,
		    void *, yaml_node_t *);

/* The half of a table row that only the loader needs. */
struct config_slot {
	enum config_scope	 s_scope;
	enum config_scope	 s_sub;		/* MAP: the nested scope */
	size_t			 s_off;		/* into the scope's struct */
	config_fn		 s_fn;		/* own handler, or NULL */
	int			 s_flags;
};

#define F_REQ		0x1	/* required */
#define F_PATH		0x2	/* a path, unless one of o_enum */
#define NOFF		((size_t)-1)

#define CF(f)		offsetof(struct wsg_config, f)
#define LC(f)		offsetof(struct wsg_listener_conf, f)
#define RS(f)		offsetof(struct config_route_src, f)
#define UP(f)		offsetof(struct wsg_upstream, f)
#define PO(f)		offsetof(struct wsg_policy, f)

#define MS_S		1000ULL
#define MS_M		(60 * MS_S)
#define MS_H		(60 * MS_M)
#define KIB		1024ULL
#define MIB		(1024 * KIB)
#define GIB		(1024 * MIB)

static void	config_listeners(struct config_ctx *,
		    const struct config_slot *, void *, yaml_node_t *);
static void	config_upstreams(struct config_ctx *,
		    const struct config_slot *, void *, yaml_node_t *);
static void	config_listen(struct config_ctx *, const struct config_slot *,
		    void *, yaml_node_t *);
static void	config_tls(struct config_ctx *, const struct config_slot *,
		    void *, yaml_node_t *);
static void	config_routes(struct config_ctx *, const struct config_slot *,
		    void *, yaml_node_t *);
static void	config_servers(struct config_ctx *, const struct config_slot *,
		    void *, yaml_node_t *);
static void	config_frames(struct config_ctx *, const struct config_slot *,
		    void *, yaml_node_t *);
static void	config_subprotocols(struct config_ctx *,
		    const struct config_slot *, void *, yaml_node_t *);

static const char *const config_levels[] = {
	"error", "warn", "info", "debug", NULL
};
static const char *const config_error_logs[] = { "stderr", "syslog", NULL };
static const char *const config_access_logs[] = { "stdout", "off", NULL };
static const char *const config_tls_versions[] = { "1.2", "1.3", NULL };
static const char *const config_balances[] = {
	"round_robin", "least_conn", NULL
};
static const char *const config_compressions[] = { "strip", NULL };

/*
 * THE option table.  One row per key:
 *	scope, key, type, default (as the man page shows it), min, max,
 *	o_enum (ENUM: the choices; STRING paths: the special words),
 *	sub-scope (MAP rows walked generically), offset, handler, flags.
 * Minimums and maximums are milliseconds for durations, bytes for sizes,
 * entries for lists.  The walker visits a scope's rows in table order, so
 * upstreams and policies_dir come before the listeners that use them.
 * Adding a key is one row here plus a field in its struct.
 */
#define CONFIG_TABLE(X)							\
	/* main */							\
	X(MAIN, "workers", INT, "auto", 1, 256, NULL,			\
	    NONE, CF(c_workers), NULL, 0)				\
	X(MAIN, "shutdown_timeout", DURATION, "30s", 0, MS_H, NULL,	\
	    NONE, CF(c_shutdown_timeout_ms), NULL, 0)			\
	X(MAIN, "log", MAP, NULL, 0, 0, NULL,				\
	    LOG, NOFF, NULL, 0)				\
	X(MAIN, "policies_dir", STRING, "../policies", 0, 0, NULL,	\
	    NONE, CF(c_policies_dir), NULL, F_PATH)			\
	X(MAIN, "upstreams", MAP, NULL, 1, CONFIG_MAX_UPSTREAMS, NULL,	\
	    UPSTREAM, NOFF, config_upstreams, F_REQ)			\
	X(MAIN, "listeners", LIST, NULL, 1, CONFIG_MAX_LISTENERS, NULL,	\
	    LISTENER, NOFF, config_listeners, F_REQ)			\
	/* log */							\
	X(LOG, "level", ENUM, "info", 0, 0, config_levels,		\
	    NONE, CF(c_log_level), NULL, 0)				\
	X(LOG, "error_log", STRING, "stderr", 0, 0, config_error_logs,	\
	    NONE, CF(c_error_log), NULL, F_PATH)			\
	X(LOG, "access_log", STRING, "stdout", 0, 0, config_access_logs,\
	    NONE, CF(c_access_log), NULL, F_PATH)			\
	/* listener */							\
	X(LISTENER, "name", STRING, NULL, 0, 0, NULL,			\
	    NONE, LC(lc_name), NULL, F_REQ)				\
	X(LISTENER, "listen", ADDR, NULL, 0, 0, NULL,			\
	    NONE, NOFF, config_listen, F_REQ)				\
	X(LISTENER, "tls", MAP, NULL, 0, 0, NULL,			\
	    TLS, NOFF, config_tls, 0)					\
	X(LISTENER, "handshake_timeout", DURATION, "10s", 100, 5 * MS_M,\
	    NULL, NONE, LC(lc_handshake_timeout_ms), NULL, 0)		\
	X(LISTENER, "max_header_bytes", SIZE, "8KiB", KIB,		\
	    WSG_MAX_HEADER_BYTES_LIMIT, NULL,				\
	    NONE, LC(lc_max_header_bytes), NULL, 0)			\
	X(LISTENER, "routes", LIST, NULL, 1, CONFIG_MAX_ROUTES, NULL,	\
	    ROUTE, NOFF, config_routes, F_REQ)				\
	/* listener.tls */						\
	X(TLS, "certificate", STRING, NULL, 0, 0, NULL,			\
	    NONE, LC(lc_cert_file), NULL, F_REQ | F_PATH)		\
	X(TLS, "key", STRING, NULL, 0, 0, NULL,				\
	    NONE, LC(lc_key_file), NULL, F_REQ | F_PATH)		\
	X(TLS, "min_version", ENUM, "1.2", 0, 0, config_tls_versions,	\
	    NONE, LC(lc_tls_min_version), NULL, 0)			\
	/* route */							\
	X(ROUTE, "path", STRING, NULL, 0, 0, NULL,			\
	    NONE, RS(rs_path), NULL, F_REQ)				\
	X(ROUTE, "upstream", STRING, NULL, 0, 0, NULL,			\
	    NONE, RS(rs_upstream), NULL, F_REQ)				\
	X(ROUTE, "policy", STRING, "default", 0, 0, NULL,		\
	    NONE, RS(rs_policy), NULL, 0)				\
	/* upstream */							\
	X(UPSTREAM, "servers", LIST, NULL, 1, CONFIG_MAX_SERVERS, NULL,	\
	    NONE, NOFF, config_servers, F_REQ)				\
	X(UPSTREAM, "balance", ENUM, "round_robin", 0, 0,		\
	    config_balances, NONE, UP(up_balance), NULL, 0)		\
	X(UPSTREAM, "connect_timeout", DURATION, "5s", 100, 5 * MS_M,	\
	    NULL, NONE, UP(up_connect_timeout_ms), NULL, 0)		\
	/* policy file: top level */					\
	X(POLICY, "frames", MAP, NULL, 0, 0, NULL,			\
	    FRAMES, NOFF, config_frames, 0)				\
	X(POLICY, "subprotocols", LIST, NULL, 0, WSG_MAX_SUBPROTOCOLS,	\
	    NULL, NONE, NOFF, config_subprotocols, 0)			\
	X(POLICY, "timeouts", MAP, NULL, 0, 0, NULL,			\
	    TIMEOUTS, NOFF, NULL, 0)					\
	/* policy: frames */						\
	X(FRAMES, "max_frame_size", SIZE, "64KiB", 1,			\
	    WSG_MAX_FRAME_SIZE_LIMIT, NULL,				\
	    NONE, PO(pol_max_frame_size), NULL, 0)			\
	X(FRAMES, "max_message_size", SIZE, "1MiB", 1,			\
	    WSG_MAX_MESSAGE_SIZE_LIMIT, NULL,				\
	    NONE, PO(pol_max_message_size), NULL, 0)			\
	X(FRAMES, "validate_utf8", BOOL, "true", 0, 0, NULL,		\
	    NONE, PO(pol_validate_utf8), NULL, 0)			\
	X(FRAMES, "allow_binary", BOOL, "true", 0, 0, NULL,		\
	    NONE, PO(pol_allow_binary), NULL, 0)			\
	X(FRAMES, "compression", ENUM, "strip", 0, 0,			\
	    config_compressions, NONE, NOFF, NULL, 0)			\
	/* policy: timeouts */						\
	X(TIMEOUTS, "idle", DURATION, "300s", MS_S, 24 * MS_H, NULL,	\
	    NONE, PO(pol_idle_timeout_ms), NULL, 0)

#define CONFIG_OPTION_ROW(sc, key, type, def, min, max, en, sub, off,	\
	    fn, flags)							\
	{ SCOPE_NAME_##sc, key, WSG_OPT_##type, def, min, max, en,	\
	    SCOPE_MAN_##sc },
#define CONFIG_SLOT_ROW(sc, key, type, def, min, max, en, sub, off,	\
	    fn, flags)							\
	{ SC_##sc, SC_##sub, off, fn, flags },

const struct wsg_option config_options[] = {
	CONFIG_TABLE(CONFIG_OPTION_ROW)
};
const size_t config_noptions =
    sizeof(config_options) / sizeof(config_options[0]);

static const struct config_slot config_slots[] = {
	CONFIG_TABLE(CONFIG_SLOT_ROW)
};
#define CONFIG_NOPT	(sizeof(config_slots) / sizeof(config_slots[0]))

/* The option row of a slot. */
static const struct wsg_option *
config_opt(const struct config_slot *s)
{
	return &config_options[s - config_slots];
}

/* How a scope is named in messages: "unknown key 'x' in listener". */
static const char *
config_scope_label(enum config_scope sc)
{
	switch (sc) {
	case SC_LOG:
		return "log";
	case SC_LISTENER:
		return "listener";
	case SC_TLS:
		return "tls";
	case SC_ROUTE:
		return "route";
	case SC_UPSTREAM:
		return "upstream";
	case SC_FRAMES:
		return "frames";
	case SC_TIMEOUTS:
		return "timeouts";
	default:
		return NULL;
	}
}

/* Line of a node, 1-based. */
static size_t
config_line(const yaml_node_t *n)
{
	return n != NULL ? n->start_mark.line + 1 : 0;
}

/* Column of a node, 1-based. */
static size_t
config_col(const yaml_node_t *n)
{
	return n != NULL ? n->start_mark.column + 1 : 0;
}

/* A scalar's text (NUL-terminated by libyaml). */
static const char *
config_str(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* How a node's kind reads in "expected a mapping, got a scalar". */
static const char *
config_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return "scalar";
	case YAML_SEQUENCE_NODE:
		return "list";
	case YAML_MAPPING_NODE:
		return "mapping";
	default:
		return "nothing";
	}
}

/* A plain null scalar ("", "~", "null") means the key is not set. */
static int
config_is_null(const yaml_node_t *n)
{
	const char	*v;

	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	v = config_str(n);
	return (*v == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	    strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0);
}

/* Check a node's kind; report "KEY: expected a K, got a K2" if wrong. */
static int
config_expect(struct config_ctx *x, const yaml_node_t *n, yaml_node_type_t t,
    const char *key)
{
	const char	*want;

	if (n->type == t)
		return 0;
	want = t == YAML_MAPPING_NODE ? "mapping" :
	    t == YAML_SEQUENCE_NODE ? "list" : "scalar";
	errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
	    "%s: expected a %s, got a %s", key, want, config_kind(n));
	return -1;
}

/* Format milliseconds the way the man page writes durations. */
static void
config_fmt_duration(uint64_t ms, char *buf, size_t len)
{
	if (ms == 0)
		snprintf(buf, len, "0s");
	else if (ms % MS_H == 0)
		snprintf(buf, len, "%lluh", (unsigned long long)(ms / MS_H));
	else if (ms % MS_M == 0)
		snprintf(buf, len, "%llum", (unsigned long long)(ms / MS_M));
	else if (ms % MS_S == 0)
		snprintf(buf, len, "%llus", (unsigned long long)(ms / MS_S));
	else
		snprintf(buf, len, "%llums", (unsigned long long)ms);
}

/* Format bytes the way the man page writes sizes. */
static void
config_fmt_size(uint64_t b, char *buf, size_t len)
{
	if (b != 0 && b % GIB == 0)
		snprintf(buf, len, "%lluGiB", (unsigned long long)(b / GIB));
	else if (b != 0 && b % MIB == 0)
		snprintf(buf, len, "%lluMiB", (unsigned long long)(b / MIB));
	else if (b != 0 && b % KIB == 0)
		snprintf(buf, len, "%lluKiB", (unsigned long long)(b / KIB));
	else
		snprintf(buf, len, "%llu", (unsigned long long)b);
}

/* Format a bound of an option in its own unit. */
static void
config_fmt_value(const struct wsg_option *o, uint64_t v, char *buf,
    size_t len)
{
	if (o->o_type == WSG_OPT_DURATION)
		config_fmt_duration(v, buf, len);
	else if (o->o_type == WSG_OPT_SIZE)
		config_fmt_size(v, buf, len);
	else
		snprintf(buf, len, "%llu", (unsigned long long)v);
}

/* Join a path to a folder unless it is absolute. */
static char *
config_join(const char *dir, const char *path)
{
	char	*out;

	if (path[0] == '/')
		return strdup(path);
	while (path[0] == '.' && path[1] == '/')
		path += 2;
	if (strcmp(path, ".") == 0 || path[0] == '\0')
		return strdup(dir);
	if (asprintf(&out, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/",
	    path) == -1)
		return NULL;
	return out;
}

/* The absolute folder of a file, without resolving links. */
static char *
config_dirname(const char *file)
{
	char	 cwd[PATH_MAX], *abs, *slash;

	if (file[0] == '/')
		abs = strdup(file);
	else if (getcwd(cwd, sizeof(cwd)) == NULL)
		return NULL;
	else
		abs = config_join(cwd, file);
	if (abs == NULL)
		return NULL;
	slash = strrchr(abs, '/');
	if (slash == abs)
		slash[1] = '\0';
	else
		*slash = '\0';
	return abs;
}

/* Report an allocation failure; the load then fails. */
static void
config_nomem(struct config_ctx *x, const yaml_node_t *n)
{
	errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
	    "out of memory");
}

/* Index of a choice in a NULL-terminated list, or -1. */
static int
config_enum_index(const char *const *e, const char *v)
{
	int	i;

	for (i = 0; e[i] != NULL; i++)
		if (strcmp(e[i], v) == 0)
			return i;
	return -1;
}

/* "a, b or c" for messages listing the choices. */
static void
config_fmt_choices(const char *const *e, char *buf, size_t len)
{
	size_t	i, n, used = 0;
	int	r;

	buf[0] = '\0';
	for (n = 0; e[n] != NULL; n++)
		;
	for (i = 0; i < n && used < len; i++) {
		r = snprintf(buf + used, len - used, "%s%s",
		    i == 0 ? "" : i + 1 == n ? " or " : ", ", e[i]);
		if (r < 0)
			break;
		used += (size_t)r;
	}
}

/* Parse an unsigned decimal integer with nothing after it. */
static int
config_parse_uint(const char *v, uint64_t *out)
{
	uint64_t	n = 0;

	if (*v == '\0')
		return -1;
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9')
			return -1;
		if (n > (UINT64_MAX - (uint64_t)(*v - '0')) / 10)
			return -1;
		n = n * 10 + (uint64_t)(*v - '0');
	}
	*out = n;
	return 0;
}

/*
 * Parse a scalar value of a leaf row and store it in obj.  n is NULL when
 * the table's default is being applied; then v is that default.
 */
static void
config_store(struct config_ctx *x, const struct config_slot *s, void *obj,
    const char *v, const yaml_node_t *n)
{
	const struct wsg_option	*o = config_opt(s);
	const char		*key = o->o_key, *err = NULL;
	char			 b1[64], b2[64], choices[256], *str;
	uint64_t		 u = 0;
	int			 i = 0, isint = 0;
	char			*base = obj;

	switch (o->o_type) {
	case WSG_OPT_STRING:
		if (*v == '\0') {
			errors_add(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "%s: must not be empty", key);
			return;
		}
		if ((s->s_flags & F_PATH) && (o->o_enum == NULL ||
		    config_enum_index(o->o_enum, v) == -1))
			str = config_join(x->x_dir, v);
		else
			str = strdup(v);
		if (str == NULL) {
			config_nomem(x, n);
			return;
		}
		if (s->s_off == NOFF) {
			free(str);
			return;
		}
		free(*(char **)(base + s->s_off));
		*(char **)(base + s->s_off) = str;
		return;
	case WSG_OPT_BOOL:
		if (strcmp(v, "true") == 0)
			i = 1;
		else if (strcmp(v, "false") == 0)
			i = 0;
		else {
			errors_add(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "%s: expected true or false, "
			    "got '%s'", key, v);
			return;
		}
		isint = 1;
		break;
	case WSG_OPT_ENUM:
		if ((i = config_enum_index(o->o_enum, v)) == -1) {
			config_fmt_choices(o->o_enum, choices,
			    sizeof(choices));
			errors_add(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "%s: '%s' is not one of %s", key, v,
			    choices);
			return;
		}
		isint = 1;
		break;
	case WSG_OPT_INT:
		if (o->o_default != NULL && strcmp(o->o_default, "auto") == 0 &&
		    strcmp(v, "auto") == 0) {
			i = 0;
			isint = 1;
			break;
		}
		if (config_parse_uint(v, &u) == -1) {
			errors_add(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "%s: expected %sa number from %llu "
			    "to %llu, got '%s'", key,
			    o->o_default != NULL &&
			    strcmp(o->o_default, "auto") == 0 ? "auto or " : "",
			    (unsigned long long)o->o_min,
			    (unsigned long long)o->o_max, v);
			return;
		}
		break;
	case WSG_OPT_DURATION:
		if (units_parse_duration(v, &u, &err) == -1) {
			errors_add(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "%s: invalid duration '%s': %s",
			    key, v, err);
			return;
		}
		break;
	case WSG_OPT_SIZE:
		if (units_parse_size(v, &u, &err) == -1) {
			errors_add(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "%s: invalid size '%s': %s",
			    key, v, err);
			return;
		}
		break;
	default:
		return;
	}
	if (!isint) {
		if (u < o->o_min) {
			config_fmt_value(o, o->o_min, b1, sizeof(b1));
			errors_add(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "%s: %s is below the minimum %s",
			    key, v, b1);
			return;
		}
		if (u > o->o_max) {
			config_fmt_value(o, o->o_max, b2, sizeof(b2));
			errors_add(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "%s: %s is above the maximum %s",
			    key, v, b2);
			return;
		}
		i = (int)u;
	}
	if (s->s_off == NOFF)
		return;
	if (o->o_type == WSG_OPT_DURATION || o->o_type == WSG_OPT_SIZE)
		memcpy(base + s->s_off, &u, sizeof(u));
	else
		memcpy(base + s->s_off, &i, sizeof(i));
}

static void	config_walk(struct config_ctx *, enum config_scope, void *,
		    yaml_node_t *, const char *, yaml_node_t **);

/* Apply the defaults of every leaf row of a scope. */
static void
config_defaults(struct config_ctx *x, enum config_scope sc, void *obj)
{
	size_t	i;

	for (i = 0; i < CONFIG_NOPT; i++) {
		if (config_slots[i].s_scope != sc)
			continue;
		if (config_slots[i].s_sub != SC_NONE &&
		    config_slots[i].s_fn == NULL)
			config_defaults(x, config_slots[i].s_sub, obj);
		else if (config_options[i].o_default != NULL &&
		    config_slots[i].s_fn == NULL)
			config_store(x, &config_slots[i], obj,
			    config_options[i].o_default, NULL);
	}
}

/* Parse the value of one row that is present. */
static void
config_value(struct config_ctx *x, const struct config_slot *s, void *obj,
    yaml_node_t *v)
{
	const struct wsg_option	*o = config_opt(s);

	if (s->s_fn != NULL) {
		if (o->o_type == WSG_OPT_MAP &&
		    config_expect(x, v, YAML_MAPPING_NODE, o->o_key) == -1)
			return;
		if (o->o_type == WSG_OPT_LIST &&
		    config_expect(x, v, YAML_SEQUENCE_NODE, o->o_key) == -1)
			return;
		s->s_fn(x, s, obj, v);
	} else if (s->s_sub != SC_NONE) {
		config_defaults(x, s->s_sub, obj);
		if (config_expect(x, v, YAML_MAPPING_NODE, o->o_key) == 0)
			config_walk(x, s->s_sub, obj, v, o->o_key, NULL);
	} else if (config_expect(x, v, YAML_SCALAR_NODE, o->o_key) == 0)
		config_store(x, s, obj, config_str(v), v);
}

/* Handle a row whose key is absent: required, default, or handler. */
static void
config_absent(struct config_ctx *x, const struct config_slot *s, void *obj,
    yaml_node_t *map, const char *what)
{
	const struct wsg_option	*o = config_opt(s);

	if (s->s_flags & F_REQ)
		errors_add(x->x_errs, x->x_file, config_line(map),
		    config_col(map), "%s is missing '%s'", what, o->o_key);
	else if (s->s_fn != NULL)
		s->s_fn(x, s, obj, NULL);
	else if (s->s_sub != SC_NONE)
		config_defaults(x, s->s_sub, obj);
	else if (o->o_default != NULL)
		config_store(x, s, obj, o->o_default, NULL);
}

/*
 * Walk one mapping with the rows of a scope, in file order, then handle
 * the keys left out.  what names the mapping in "listener is missing
 * 'listen'".  seen (CONFIG_NOPT entries, or NULL) gets the value node of
 * each key present, for later checks.
 */
static void
config_walk(struct config_ctx *x, enum config_scope sc, void *obj,
    yaml_node_t *map, const char *what, yaml_node_t **seen)
{
	yaml_node_t		*own[CONFIG_NOPT], *k, *v;
	yaml_node_pair_t	*p;
	const char		*label = config_scope_label(sc);
	size_t			 i;

	if (seen == NULL)
		seen = own;
	memset(seen, 0, sizeof(own));
	for (p = map != NULL ? map->data.mapping.pairs.start : NULL;
	    p != NULL && p < map->data.mapping.pairs.top; p++) {
		k = yaml_document_get_node(x->x_doc, p->key);
		v = yaml_document_get_node(x->x_doc, p->value);
		if (k == NULL || v == NULL)
			continue;
		if (k->type != YAML_SCALAR_NODE) {
			errors_add(x->x_errs, x->x_file, config_line(k),
			    config_col(k), "expected a key, got a %s",
			    config_kind(k));
			continue;
		}
		for (i = 0; i < CONFIG_NOPT; i++)
			if (config_slots[i].s_scope == sc &&
			    strcmp(config_options[i].o_key,
			    config_str(k)) == 0)
				break;
		if (i == CONFIG_NOPT) {
			if (label != NULL)
				errors_add(x->x_errs, x->x_file,
				    config_line(k), config_col(k),
				    "unknown key '%s' in %s", config_str(k),
				    label);
			else
				errors_add(x->x_errs, x->x_file,
				    config_line(k), config_col(k),
				    "unknown key '%s'", config_str(k));
			continue;
		}
		if (seen[i] != NULL) {
			errors_add(x->x_errs, x->x_file, config_line(k),
			    config_col(k), "duplicate key '%s' (first at "
			    "line %zu)", config_str(k), config_line(seen[i]));
			continue;
		}
		seen[i] = v;
		if (!config_is_null(v))
			config_value(x, &config_slots[i], obj, v);
	}
	for (i = 0; i < CONFIG_NOPT; i++) {
		if (config_slots[i].s_scope != sc)
			continue;
		if (seen[i] != NULL && config_is_null(seen[i]))
			seen[i] = NULL;
		if (seen[i] == NULL)
			config_absent(x, &config_slots[i], obj, map, what);
	}
}

/* Check a list's length against its row's bounds. */
static int
config_list_count(struct config_ctx *x, const struct config_slot *s,
    const yaml_node_t *n, size_t count)
{
	const struct wsg_option	*o = config_opt(s);

	if (count < o->o_min) {
		errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "%s: needs at least %llu %s", o->o_key,
		    (unsigned long long)o->o_min,
		    o->o_min == 1 ? "entry" : "entries");
		return -1;
	}
	if (count > o->o_max) {
		errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "%s: at most %llu entries are allowed, got %zu", o->o_key,
		    (unsigned long long)o->o_max, count);
		return -1;
	}
	return 0;
}

/* Number of items of a list node. */
static size_t
config_seq_len(const yaml_node_t *n)
{
	return (size_t)(n->data.sequence.items.top -
	    n->data.sequence.items.start);
}

/* Number of pairs of a mapping node. */
static size_t
config_map_len(const yaml_node_t *n)
{
	return (size_t)(n->data.mapping.pairs.top -
	    n->data.mapping.pairs.start);
}

/* Free one upstream. */
static void
config_free_upstream(struct wsg_upstream *up)
{
	size_t	i;

	if (up == NULL)
		return;
	for (i = 0; i < up->up_nservers; i++)
		free(up->up_servers[i].srv_name);
	free(up->up_servers);
	free(up->up_name);
	free(up);
}

/* main.upstreams: a mapping of name to upstream. */
static void
config_upstreams(struct config_ctx *x, const struct config_slot *s,
    void *obj, yaml_node_t *n)
{
	struct wsg_config	*cf = obj;
	struct wsg_upstream	*up;
	yaml_node_pair_t	*p;
	yaml_node_t		*k, *v;
	size_t			 i;
	char			 what[128];

	if (config_list_count(x, s, n, config_map_len(n)) == -1)
		return;
	cf->c_upstreams = calloc(config_map_len(n), sizeof(*cf->c_upstreams));
	if (cf->c_upstreams == NULL) {
		config_nomem(x, n);
		return;
	}
	for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	    p++) {
		k = yaml_document_get_node(x->x_doc, p->key);
		v = yaml_document_get_node(x->x_doc, p->value);
		if (k == NULL || v == NULL)
			continue;
		if (config_expect(x, k, YAML_SCALAR_NODE, "upstreams") == -1)
			continue;
		if (*config_str(k) == '\0') {
			errors_add(x->x_errs, x->x_file, config_line(k),
			    config_col(k), "upstreams: a name must not be "
			    "empty");
			continue;
		}
		for (i = 0; i < cf->c_nupstreams; i++)
			if (strcmp(cf->c_upstreams[i]->up_name,
			    config_str(k)) == 0)
				break;
		if (i < cf->c_nupstreams) {
			errors_add(x->x_errs, x->x_file, config_line(k),
			    config_col(k), "duplicate upstream '%s'",
			    config_str(k));
			continue;
		}
		if (config_expect(x, v, YAML_MAPPING_NODE, config_str(k)) == -1)
			continue;
		if ((up = calloc(1, sizeof(*up))) == NULL ||
		    (up->up_name = strdup(config_str(k))) == NULL) {
			free(up);
			config_nomem(x, k);
			continue;
		}
		cf->c_upstreams[cf->c_nupstreams++] = up;
		snprintf(what, sizeof(what), "upstream '%s'", up->up_name);
		config_walk(x, SC_UPSTREAM, up, v, what, NULL);
	}
}

/* upstream.servers: a list of host:port. */
static void
config_servers(struct config_ctx *x, const struct config_slot *s,
    void *obj, yaml_node_t *n)
{
	struct wsg_upstream	*up = obj;
	struct wsg_server	*srv;
	yaml_node_item_t	*it;
	yaml_node_t		*v;
	const char		*err;

	if (config_list_count(x, s, n, config_seq_len(n)) == -1)
		return;
	up->up_servers = calloc(config_seq_len(n), sizeof(*up->up_servers));
	if (up->up_servers == NULL) {
		config_nomem(x, n);
		return;
	}
	for (it = n->data.sequence.items.start;
	    it < n->data.sequence.items.top; it++) {
		if ((v = yaml_document_get_node(x->x_doc, *it)) == NULL ||
		    config_expect(x, v, YAML_SCALAR_NODE, "servers") == -1)
			continue;
		srv = &up->up_servers[up->up_nservers];
		if (units_parse_hostport(config_str(v), &srv->srv_addr,
		    &srv->srv_addrlen, &err) == -1) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "servers: invalid address '%s': %s",
			    config_str(v), err);
			continue;
		}
		if ((srv->srv_name = strdup(config_str(v))) == NULL) {
			config_nomem(x, v);
			continue;
		}
		up->up_nservers++;
	}
}

/* listener.listen: host:port, kept as written and parsed. */
static void
config_listen(struct config_ctx *x, const struct config_slot *s, void *obj,
    yaml_node_t *n)
{
	struct wsg_listener_conf *lc = obj;
	const char		*err;

	if (config_expect(x, n, YAML_SCALAR_NODE, "listen") == -1)
		return;
	if (units_parse_hostport(config_str(n), &lc->lc_addr,
	    &lc->lc_addrlen, &err) == -1) {
		errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "listen: invalid address '%s': %s", config_str(n), err);
		return;
	}
	if ((lc->lc_listen = strdup(config_str(n))) == NULL)
		config_nomem(x, n);
}

/* Check that a certificate or key file can be read. */
static int
config_readable(struct config_ctx *x, const yaml_node_t *n, const char *key,
    const char *path)
{
	FILE	*fp;

	if ((fp = fopen(path, "r")) == NULL) {
		errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "%s: cannot open %s: %s", key, path, strerror(errno));
		return -1;
	}
	fclose(fp);
	return 0;
}

/* listener.tls: certificate and key, then the SSL_CTX. */
static void
config_tls(struct config_ctx *x, const struct config_slot *s, void *obj,
    yaml_node_t *n)
{
	struct wsg_listener_conf *lc = obj;
	yaml_node_t		*seen[CONFIG_NOPT];
	size_t			 i, icert = 0, ikey = 0;
	size_t			 n0 = x->x_errs->e_n;
	int			 ok = 1;

	if (n == NULL)
		return;
	lc->lc_tls = 1;
	config_walk(x, SC_TLS, lc, n, "tls", seen);
	for (i = 0; i < CONFIG_NOPT; i++) {
		if (config_slots[i].s_off == LC(lc_cert_file))
			icert = i;
		else if (config_slots[i].s_off == LC(lc_key_file))
			ikey = i;
	}
	if (lc->lc_cert_file != NULL && config_readable(x, seen[icert],
	    "certificate", lc->lc_cert_file) == -1)
		ok = 0;
	if (lc->lc_key_file != NULL && config_readable(x, seen[ikey],
	    "key", lc->lc_key_file) == -1)
		ok = 0;
	lc->lc_tls_min_version = lc->lc_tls_min_version == 1 ?
	    TLS1_3_VERSION : TLS1_2_VERSION;
	if (!ok || x->x_errs->e_n != n0 || lc->lc_cert_file == NULL ||
	    lc->lc_key_file == NULL)
		return;
	lc->lc_ssl_ctx = tls_ctx_new(lc->lc_cert_file, lc->lc_key_file,
	    lc->lc_tls_min_version, lc->lc_client_ca, x->x_errs, x->x_file,
	    config_line(n),
	    config_col(n));
}

/* Free one policy. */
void
config_free_policy(struct wsg_policy *pol)
{
	size_t	i;

	if (pol == NULL)
		return;
	for (i = 0; i < pol->pol_nsubprotocols; i++)
		free(pol->pol_subprotocols[i]);
	free(pol->pol_subprotocols);
	free(pol->pol_name);
	free(pol->pol_file);
	free(pol);
}

/* policy.frames: the section, then cross-checks and warnings. */
static void
config_frames(struct config_ctx *x, const struct config_slot *s, void *obj,
    yaml_node_t *n)
{
	struct wsg_policy	*pol = obj;
	yaml_node_t		*seen[CONFIG_NOPT], *v;
	size_t			 i, imsg = 0, iutf = 0;
	char			 b1[32], b2[32];

	if (n == NULL) {
		config_defaults(x, SC_FRAMES, pol);
		return;
	}
	config_walk(x, SC_FRAMES, pol, n, "frames", seen);
	for (i = 0; i < CONFIG_NOPT; i++) {
		if (config_slots[i].s_off == PO(pol_max_message_size))
			imsg = i;
		else if (config_slots[i].s_off == PO(pol_validate_utf8))
			iutf = i;
	}
	v = seen[imsg] != NULL ? seen[imsg] : n;
	config_fmt_size(pol->pol_max_message_size, b1, sizeof(b1));
	config_fmt_size(pol->pol_max_frame_size, b2, sizeof(b2));
	if (pol->pol_max_message_size > 64 * MIB)
		errors_warn(x->x_errs, x->x_file, config_line(v),
		    config_col(v), "max_message_size: %s is over 64MiB; each "
		    "connection may buffer that much", b1);
	if (pol->pol_max_message_size < pol->pol_max_frame_size)
		errors_warn(x->x_errs, x->x_file, config_line(v),
		    config_col(v), "max_message_size %s is below "
		    "max_frame_size %s, so frames are capped at %s", b1, b2,
		    b1);
	if (seen[iutf] != NULL && seen[iutf]->type == YAML_SCALAR_NODE &&
	    strcmp(config_str(seen[iutf]), "false") == 0)
		errors_warn(x->x_errs, x->x_file, config_line(seen[iutf]),
		    config_col(seen[iutf]), "validate_utf8: false lets "
		    "invalid text through to the upstream");
}

/* Is c an RFC 7230 token character? */
static int
config_tchar(unsigned char c)
{
	return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (c != '\0' &&
	    strchr("!#$%&'*+-.^_`|~", c) != NULL));
}

/* policy.subprotocols: a list of tokens. */
static void
config_subprotocols(struct config_ctx *x, const struct config_slot *s,
    void *obj, yaml_node_t *n)
{
	struct wsg_policy	*pol = obj;
	yaml_node_item_t	*it;
	yaml_node_t		*v;
	const char		*t;
	size_t			 i, len;

	if (n == NULL)
		return;
	pol->pol_has_subprotocols = 1;
	if (config_list_count(x, s, n, config_seq_len(n)) == -1)
		return;
	if (config_seq_len(n) == 0)
		return;
	pol->pol_subprotocols = calloc(config_seq_len(n),
	    sizeof(*pol->pol_subprotocols));
	if (pol->pol_subprotocols == NULL) {
		config_nomem(x, n);
		return;
	}
	for (it = n->data.sequence.items.start;
	    it < n->data.sequence.items.top; it++) {
		if ((v = yaml_document_get_node(x->x_doc, *it)) == NULL ||
		    config_expect(x, v, YAML_SCALAR_NODE,
		    "subprotocols") == -1)
			continue;
		t = config_str(v);
		len = strlen(t);
		for (i = 0; i < len && config_tchar((unsigned char)t[i]); i++)
			;
		if (len == 0 || i < len || len > WSG_MAX_TOKEN_LEN) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "subprotocols: '%s' is not a token "
			    "of 1 to %d characters", t, WSG_MAX_TOKEN_LEN);
			continue;
		}
		for (i = 0; i < pol->pol_nsubprotocols; i++)
			if (strcmp(pol->pol_subprotocols[i], t) == 0)
				break;
		if (i < pol->pol_nsubprotocols) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "subprotocols: '%s' is listed "
			    "twice", t);
			continue;
		}
		if ((pol->pol_subprotocols[pol->pol_nsubprotocols] =
		    strdup(t)) == NULL) {
			config_nomem(x, v);
			continue;
		}
		pol->pol_nsubprotocols++;
	}
}

/* Report a libyaml parser error at its mark. */
static void
config_yaml_error(struct wsg_errors *errs, const char *file,
    const yaml_parser_t *p)
{
	if (p->error == YAML_MEMORY_ERROR)
		errors_add(errs, file, 0, 0, "out of memory");
	else if (p->error == YAML_READER_ERROR)
		errors_add(errs, file, 0, 0, "syntax error: %s at byte %zu",
		    p->problem != NULL ? p->problem : "unreadable input",
		    p->problem_offset);
	else
		errors_add(errs, file, p->problem_mark.line + 1,
		    p->problem_mark.column + 1, "syntax error: %s",
		    p->problem != NULL ? p->problem : "unknown");
}

/*
 * Read a file as one YAML document.  Returns 0 with doc loaded (root may
 * be NULL for an empty file), -1 with errno set when it cannot be opened
 * and nothing reported, or -2 after reporting an error.
 */
static int
config_read_yaml(const char *file, yaml_document_t *doc,
    struct wsg_errors *errs)
{
	yaml_parser_t	 parser;
	yaml_document_t	 extra;
	FILE		*fp;
	int		 rv = 0;

	if ((fp = fopen(file, "r")) == NULL)
		return -1;
	if (!yaml_parser_initialize(&parser)) {
		fclose(fp);
		errors_add(errs, file, 0, 0, "out of memory");
		return -2;
	}
	yaml_parser_set_input_file(&parser, fp);
	if (!yaml_parser_load(&parser, doc)) {
		config_yaml_error(errs, file, &parser);
		rv = -2;
	} else if (yaml_document_get_root_node(doc) != NULL) {
		if (!yaml_parser_load(&parser, &extra)) {
			config_yaml_error(errs, file, &parser);
			rv = -2;
		} else {
			if (yaml_document_get_root_node(&extra) != NULL) {
				errors_add(errs, file,
				    extra.start_mark.line + 1,
				    extra.start_mark.column + 1,
				    "only one YAML document is allowed");
				rv = -2;
			}
			yaml_document_delete(&extra);
		}
		if (rv != 0)
			yaml_document_delete(doc);
	}
	yaml_parser_delete(&parser);
	fclose(fp);
	return rv;
}

/*
 * Parse a policy file into pol (name and file already set).  Returns -1
 * with errno set if the file cannot be opened; other errors are reported
 * and 0 returned.
 */
static int
config_policy_parse(struct wsg_policy *pol, struct wsg_errors *errs)
{
	struct config_ctx	 x;
	yaml_document_t		 doc;
	yaml_node_t		*root;
	int			 r;

	memset(&x, 0, sizeof(x));
	x.x_errs = errs;
	x.x_file = pol->pol_file;
	x.x_doc = &doc;
	if ((x.x_dir = config_dirname(pol->pol_file)) == NULL) {
		errors_add(errs, pol->pol_file, 0, 0, "out of memory");
		return 0;
	}
	if ((r = config_read_yaml(pol->pol_file, &doc, errs)) != 0) {
		free(x.x_dir);
		if (r == -2)
			config_defaults(&x, SC_POLICY, pol);
		return r == -1 ? -1 : 0;
	}
	root = yaml_document_get_root_node(&doc);
	if (root != NULL && config_is_null(root))
		root = NULL;
	if (root == NULL || config_expect(&x, root, YAML_MAPPING_NODE,
	    "policy") == 0)
		config_walk(&x, SC_POLICY, pol, root, "policy", NULL);
	yaml_document_delete(&doc);
	free(x.x_dir);
	return 0;
}

/* A new policy with its name and file. */
static struct wsg_policy *
config_policy_new(const char *name, const char *file)
{
	struct wsg_policy	*pol;

	if ((pol = calloc(1, sizeof(*pol))) == NULL)
		return NULL;
	pol->pol_name = strdup(name);
	pol->pol_file = strdup(file);
	if (pol->pol_name == NULL || pol->pol_file == NULL) {
		config_free_policy(pol);
		return NULL;
	}
	return pol;
}

/* Load one policy file on its own; its name defaults to the file's. */
struct wsg_policy *
config_load_policy(const char *name, const char *file,
    struct wsg_errors *errs)
{
	struct wsg_policy	*pol;
	const char		*base, *dot;
	char			 buf[256];
	size_t			 n0 = errs->e_n, len;

	if (name == NULL) {
		base = strrchr(file, '/') != NULL ? strrchr(file, '/') + 1 :
		    file;
		dot = strrchr(base, '.');
		len = dot != NULL ? (size_t)(dot - base) : strlen(base);
		snprintf(buf, sizeof(buf), "%.*s", (int)len, base);
		name = buf;
	}
	if ((pol = config_policy_new(name, file)) == NULL) {
		errors_add(errs, file, 0, 0, "out of memory");
		return NULL;
	}
	if (config_policy_parse(pol, errs) == -1)
		errors_add(errs, file, 0, 0, "cannot open: %s",
		    strerror(errno));
	if (errs->e_n != n0) {
		config_free_policy(pol);
		return NULL;
	}
	return pol;
}

/* Is a policy name safe to turn into a file name? */
static int
config_policy_name_ok(const char *name)
{
	size_t	i, len = strlen(name);

	if (len == 0 || len > CONFIG_MAX_POLICY_NAME || name[0] == '.')
		return 0;
	for (i = 0; i < len; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') ||
		    (name[i] >= 'A' && name[i] <= 'Z') ||
		    (name[i] >= '0' && name[i] <= '9') ||
		    name[i] == '-' || name[i] == '_' || name[i] == '.'))
			return 0;
	return 1;
}

/*
 * The policy of a route, loaded once per name.  A policy that fails is
 * still kept, so each problem is reported once.
 */
static struct wsg_policy *
config_route_policy(struct config_ctx *x, const char *name,
    const yaml_node_t *n)
{
	struct wsg_config	*cf = x->x_cf;
	struct wsg_policy	*pol, **np;
	char			*file;
	size_t			 i;
	int			 r;

	for (i = 0; i < cf->c_npolicies; i++)
		if (strcmp(cf->c_policies[i]->pol_name, name) == 0)
			return cf->c_policies[i];
	if (!config_policy_name_ok(name)) {
		errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "policy '%s': a name is 1 to %d letters, digits, '-', "
		    "'_' or '.', not starting with '.'", name,
		    CONFIG_MAX_POLICY_NAME);
		return NULL;
	}
	if (cf->c_policies_dir == NULL)
		return NULL;
	if (asprintf(&file, "%s/%s.yaml", cf->c_policies_dir, name) == -1) {
		config_nomem(x, n);
		return NULL;
	}
	pol = config_policy_new(name, file);
	free(file);
	np = reallocarray(cf->c_policies, cf->c_npolicies + 1, sizeof(*np));
	if (pol == NULL || np == NULL) {
		config_free_policy(pol);
		if (np != NULL)
			cf->c_policies = np;
		config_nomem(x, n);
		return NULL;
	}
	cf->c_policies = np;
	cf->c_policies[cf->c_npolicies++] = pol;
	r = config_policy_parse(pol, x->x_errs);
	if (r == -1)
		errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "policy '%s': cannot open %s: %s", name, pol->pol_file,
		    strerror(errno));
	return pol;
}

/* Check a route's path and fill in rt_path and rt_prefix. */
static int
config_route_path(struct config_ctx *x, struct wsg_route *rt,
    const char *path, const yaml_node_t *n)
{
	size_t	len = strlen(path), i;

	if (path[0] != '/') {
		errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "path: '%s' must start with '/'", path);
		return -1;
	}
	rt->rt_prefix = len >= 2 && strcmp(path + len - 2, "/*") == 0;
	if (rt->rt_prefix)
		len--;
	for (i = 0; i < len; i++) {
		if (path[i] == '*' || path[i] == '?' || path[i] == '#' ||
		    (unsigned char)path[i] <= ' ' ||
		    (unsigned char)path[i] >= 0x7f) {
			errors_add(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "path: '%s' may contain '*' only "
			    "as a final '/*', and no '?', '#', spaces or "
			    "control characters", path);
			return -1;
		}
	}
	if ((rt->rt_path = strndup(path, len)) == NULL) {
		config_nomem(x, n);
		return -1;
	}
	rt->rt_path_len = len;
	return 0;
}

/* listener.routes: checked now, resolved once upstreams are known. */
static void
config_routes(struct config_ctx *x, const struct config_slot *s, void *obj,
    yaml_node_t *n)
{
	struct wsg_listener_conf *lc = obj;
	struct config_route_src	 src;
	struct config_pending	*pd, *np;
	struct wsg_route	*rt;
	yaml_node_t		*seen[CONFIG_NOPT], *v;
	yaml_node_item_t	*it;
	size_t			 i, ipath = 0, iup = 0, ipol = 0;

	if (config_list_count(x, s, n, config_seq_len(n)) == -1)
		return;
	lc->lc_routes = calloc(config_seq_len(n), sizeof(*lc->lc_routes));
	np = reallocarray(x->x_pending, x->x_npending + config_seq_len(n),
	    sizeof(*np));
	if (np != NULL)
		x->x_pending = np;
	if (lc->lc_routes == NULL || np == NULL) {
		config_nomem(x, n);
		return;
	}
	for (i = 0; i < CONFIG_NOPT; i++) {
		if (config_slots[i].s_scope != SC_ROUTE)
			continue;
		if (config_slots[i].s_off == RS(rs_path))
			ipath = i;
		else if (config_slots[i].s_off == RS(rs_upstream))
			iup = i;
		else if (config_slots[i].s_off == RS(rs_policy))
			ipol = i;
	}
	for (it = n->data.sequence.items.start;
	    it < n->data.sequence.items.top; it++) {
		if ((v = yaml_document_get_node(x->x_doc, *it)) == NULL ||
		    config_expect(x, v, YAML_MAPPING_NODE, "routes") == -1)
			continue;
		memset(&src, 0, sizeof(src));
		config_walk(x, SC_ROUTE, &src, v, "route", seen);
		pd = &x->x_pending[x->x_npending++];
		memset(pd, 0, sizeof(*pd));
		rt = &lc->lc_routes[lc->lc_nroutes];
		if (src.rs_path != NULL &&
		    config_route_path(x, rt, src.rs_path, seen[ipath]) == 0) {
			lc->lc_nroutes++;
			pd->pd_route = rt;
		}
		pd->pd_path = src.rs_path;
		pd->pd_upstream = src.rs_upstream;
		pd->pd_policy = src.rs_policy;
		pd->pd_upstream_node = seen[iup];
		pd->pd_policy_node = seen[ipol] != NULL ? seen[ipol] : v;
	}
}

/* Look up the upstream and load the policy of every route. */
static void
config_resolve_routes(struct config_ctx *x)
{
	struct wsg_config	*cf = x->x_cf;
	struct config_pending	*pd;
	struct wsg_upstream	*up;
	struct wsg_policy	*pol;
	size_t			 i, j;

	for (i = 0; i < x->x_npending; i++) {
		pd = &x->x_pending[i];
		up = NULL;
		pol = NULL;
		if (pd->pd_upstream != NULL) {
			for (j = 0; j < cf->c_nupstreams; j++)
				if (strcmp(cf->c_upstreams[j]->up_name,
				    pd->pd_upstream) == 0)
					up = cf->c_upstreams[j];
			if (up == NULL)
				errors_add(x->x_errs, x->x_file,
				    config_line(pd->pd_upstream_node),
				    config_col(pd->pd_upstream_node),
				    "route%s%s: unknown upstream '%s'",
				    pd->pd_path != NULL ? " " : "",
				    pd->pd_path != NULL ? pd->pd_path : "",
				    pd->pd_upstream);
		}
		if (pd->pd_policy != NULL)
			pol = config_route_policy(x, pd->pd_policy,
			    pd->pd_policy_node);
		if (pd->pd_route != NULL) {
			pd->pd_route->rt_upstream = up;
			pd->pd_route->rt_policy = pol;
		}
	}
}

/* Free the routes waiting for resolution. */
static void
config_free_pending(struct config_ctx *x)
{
	size_t	i;

	for (i = 0; i < x->x_npending; i++) {
		free(x->x_pending[i].pd_path);
		free(x->x_pending[i].pd_upstream);
		free(x->x_pending[i].pd_policy);
	}
	free(x->x_pending);
	x->x_pending = NULL;
	x->x_npending = 0;
}

/* main.listeners: a list of listeners; names and addresses are unique. */
static void
config_listeners(struct config_ctx *x, const struct config_slot *s,
    void *obj, yaml_node_t *n)
{
	struct wsg_config	*cf = obj;
	struct wsg_listener_conf *lc, *o;
	yaml_node_t		*seen[CONFIG_NOPT], *v;
	yaml_node_item_t	*it;
	size_t			 i, iname = 0, ilisten = 0;
	char			 a1[64], a2[64];

	if (config_list_count(x, s, n, config_seq_len(n)) == -1)
		return;
	cf->c_listeners = calloc(config_seq_len(n), sizeof(*cf->c_listeners));
	if (cf->c_listeners == NULL) {
		config_nomem(x, n);
		return;
	}
	for (i = 0; i < CONFIG_NOPT; i++) {
		if (config_slots[i].s_scope != SC_LISTENER)
			continue;
		if (config_slots[i].s_off == LC(lc_name))
			iname = i;
		else if (config_slots[i].s_fn == config_listen)
			ilisten = i;
	}
	for (it = n->data.sequence.items.start;
	    it < n->data.sequence.items.top; it++) {
		if ((v = yaml_document_get_node(x->x_doc, *it)) == NULL ||
		    config_expect(x, v, YAML_MAPPING_NODE, "listeners") == -1)
			continue;
		lc = &cf->c_listeners[cf->c_nlisteners++];
		config_walk(x, SC_LISTENER, lc, v, "listener", seen);
		for (i = 0; i + 1 < cf->c_nlisteners; i++) {
			o = &cf->c_listeners[i];
			if (lc->lc_name != NULL && o->lc_name != NULL &&
			    strcmp(lc->lc_name, o->lc_name) == 0)
				errors_add(x->x_errs, x->x_file,
				    config_line(seen[iname]),
				    config_col(seen[iname]),
				    "duplicate listener name '%s'",
				    lc->lc_name);
			if (lc->lc_listen == NULL || o->lc_listen == NULL)
				continue;
			units_format_addr((struct sockaddr *)&lc->lc_addr, a1,
			    sizeof(a1));
			units_format_addr((struct sockaddr *)&o->lc_addr, a2,
			    sizeof(a2));
			if (strcmp(a1, a2) == 0)
				errors_add(x->x_errs, x->x_file,
				    config_line(seen[ilisten]),
				    config_col(seen[ilisten]),
				    "listen: %s is already used by listener "
				    "'%s'", a1, o->lc_name != NULL ?
				    o->lc_name : "");
		}
	}
}

/* Free a generation and everything it owns. */
static void
config_free(struct wsg_config *cf)
{
	struct wsg_listener_conf *lc;
	size_t			 i, j;

	if (cf == NULL)
		return;
	for (i = 0; i < cf->c_nlisteners; i++) {
		lc = &cf->c_listeners[i];
		free(lc->lc_name);
		free(lc->lc_listen);
		free(lc->lc_cert_file);
		free(lc->lc_key_file);
		SSL_CTX_free(lc->lc_ssl_ctx);
		for (j = 0; j < lc->lc_nroutes; j++)
			free(lc->lc_routes[j].rt_path);
		free(lc->lc_routes);
	}
	free(cf->c_listeners);
	for (i = 0; i < cf->c_nupstreams; i++)
		config_free_upstream(cf->c_upstreams[i]);
	free(cf->c_upstreams);
	for (i = 0; i < cf->c_npolicies; i++)
		config_free_policy(cf->c_policies[i]);
	free(cf->c_policies);
	free(cf->c_file);
	free(cf->c_error_log);
	free(cf->c_access_log);
	free(cf->c_policies_dir);
	free(cf);
}

/* Load, check and build a whole generation. */
struct wsg_config *
config_load(const char *file, struct wsg_errors *errs)
{
	struct config_ctx	 x;
	struct wsg_config	*cf;
	yaml_document_t		 doc;
	yaml_node_t		*root;
	size_t			 n0 = errs->e_n;
	int			 r;

	memset(&x, 0, sizeof(x));
	x.x_errs = errs;
	x.x_file = file;
	x.x_doc = &doc;
	if ((cf = calloc(1, sizeof(*cf))) == NULL ||
	    (cf->c_file = strdup(file)) == NULL ||
	    (x.x_dir = config_dirname(file)) == NULL) {
		config_free(cf);
		errors_add(errs, file, 0, 0, "out of memory");
		return NULL;
	}
	cf->c_refcnt = 1;
	x.x_cf = cf;
	if ((r = config_read_yaml(file, &doc, errs)) != 0) {
		if (r == -1)
			errors_add(errs, file, 0, 0, "cannot open: %s",
			    strerror(errno));
		free(x.x_dir);
		config_free(cf);
		return NULL;
	}
	root = yaml_document_get_root_node(&doc);
	if (root != NULL && config_is_null(root))
		root = NULL;
	if (root == NULL || config_expect(&x, root, YAML_MAPPING_NODE,
	    "config") == 0)
		config_walk(&x, SC_MAIN, cf, root, "config", NULL);
	config_resolve_routes(&x);
	config_free_pending(&x);
	yaml_document_delete(&doc);
	free(x.x_dir);
	if (errs->e_n != n0) {
		config_free(cf);
		return NULL;
	}
	return cf;
}

/* Take a reference for a session or a thread. */
struct wsg_config *
config_ref(struct wsg_config *cf)
{
	__atomic_add_fetch(&cf->c_refcnt, 1, __ATOMIC_RELAXED);
	return cf;
}

/* Drop a reference; the last one frees the generation. */
void
config_unref(struct wsg_config *cf)
{
	if (cf == NULL)
		return;
	if (__atomic_sub_fetch(&cf->c_refcnt, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(cf);
}

/* The first route of a listener that a request path matches. */
const struct wsg_route *
config_route_match(const struct wsg_listener_conf *lc, const char *path,
    size_t len)
{
	const struct wsg_route	*rt;
	const char		*q;
	size_t			 i;

	if ((q = memchr(path, '?', len)) != NULL)
		len = (size_t)(q - path);
	for (i = 0; i < lc->lc_nroutes; i++) {
		rt = &lc->lc_routes[i];
		if (!rt->rt_prefix) {
			if (len == rt->rt_path_len &&
			    memcmp(path, rt->rt_path, len) == 0)
				return rt;
			continue;
		}
		if (len >= rt->rt_path_len &&
		    memcmp(path, rt->rt_path, rt->rt_path_len) == 0)
			return rt;
		if (rt->rt_path_len > 1 && len == rt->rt_path_len - 1 &&
		    memcmp(path, rt->rt_path, len) == 0)
			return rt;
	}
	return NULL;
}
