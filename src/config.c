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
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <yaml.h>

#include "cidr.h"
#include "config.h"
#include "errors.h"
#include "geoip.h"
#include "http.h"
#include "jwt.h"
#include "origin.h"
#include "ratelimit.h"
#include "regex.h"
#include "store.h"
#include "tls.h"
#include "units.h"
#include "wsgate.h"

#define MAN_MAIN	"wsgate.yaml.5"
#define MAN_POLICY	"wsgate-policy.5"

#define CONFIG_MAX_LISTENERS	64
#define CONFIG_MAX_ROUTES	256	/* per listener */
#define CONFIG_MAX_UPSTREAMS	256
#define CONFIG_MAX_SERVERS	64	/* per upstream */
_Static_assert(CONFIG_MAX_SERVERS <= 64, "s_server_tried: a bit a server");
#define CONFIG_MAX_POLICY_NAME	64
#define CONFIG_MAX_CONNECTIONS	1000000	/* cap of max_connections */
#define CONFIG_MAX_TRUSTED	64	/* trusted_proxies per listener */
#define CONFIG_MAX_ORIGINS	256	/* origin.allow */
#define CONFIG_MAX_REGEXES	64	/* allow_regex, deny_regex */
#define CONFIG_MAX_CLAIMS	32	/* required_claims */
#define CONFIG_MAX_FORWARD	16	/* forward_claims */
#define CONFIG_MAX_CLAIM_NAME	64	/* bytes of a claim name */
#define CONFIG_MAX_QUERY_PARAM	64	/* bytes of auth.query_param */
#define CONFIG_MAX_CIDRS	1024	/* ip.allow, ip.deny */
#define CONFIG_MAX_COUNTRIES	256	/* allow_countries, deny_countries */
#define CONFIG_MIN_RL_ENTRIES	1000	/* rate_limit_table.max_entries */
#define CONFIG_MAX_RL_ENTRIES	10000000
#define CONFIG_MAX_DEPTH	64	/* nested lists and mappings in a file */

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
	SC_TIMEOUTS,
	SC_ADMIN,
	SC_ORIGIN,
	SC_AUTH,
	SC_JWT,
	SC_IP,
	SC_GEOIP,
	SC_MESSAGES,
	SC_RLTABLE,
	SC_STORE,
	SC_RATE,
	SC_RL_CONN,
	SC_RL_MSG,
	SC_RL_BYTES
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
#define SCOPE_NAME_ADMIN	"admin"
#define SCOPE_NAME_ORIGIN	"policy.origin"
#define SCOPE_NAME_AUTH		"policy.auth"
#define SCOPE_NAME_JWT		"policy.auth.jwt"
#define SCOPE_NAME_IP		"policy.ip"
#define SCOPE_NAME_GEOIP	"policy.geoip"
#define SCOPE_NAME_MESSAGES	"policy.messages"
#define SCOPE_NAME_RLTABLE	"rate_limit_table"
#define SCOPE_NAME_STORE	"rate_limit_store"
#define SCOPE_NAME_RATE		"policy.rate_limit"
#define SCOPE_NAME_RL_CONN	"policy.rate_limit.connections_per_ip"
#define SCOPE_NAME_RL_MSG	"policy.rate_limit.messages_per_connection"
#define SCOPE_NAME_RL_BYTES	"policy.rate_limit.bytes_per_connection"

#define SCOPE_MAN_MAIN		MAN_MAIN
#define SCOPE_MAN_LOG		MAN_MAIN
#define SCOPE_MAN_LISTENER	MAN_MAIN
#define SCOPE_MAN_TLS		MAN_MAIN
#define SCOPE_MAN_ROUTE		MAN_MAIN
#define SCOPE_MAN_UPSTREAM	MAN_MAIN
#define SCOPE_MAN_POLICY	MAN_POLICY
#define SCOPE_MAN_FRAMES	MAN_POLICY
#define SCOPE_MAN_TIMEOUTS	MAN_POLICY
#define SCOPE_MAN_ADMIN		MAN_MAIN
#define SCOPE_MAN_ORIGIN	MAN_POLICY
#define SCOPE_MAN_AUTH		MAN_POLICY
#define SCOPE_MAN_JWT		MAN_POLICY
#define SCOPE_MAN_IP		MAN_POLICY
#define SCOPE_MAN_GEOIP		MAN_POLICY
#define SCOPE_MAN_MESSAGES	MAN_POLICY
#define SCOPE_MAN_RLTABLE	MAN_MAIN
#define SCOPE_MAN_STORE		MAN_MAIN
#define SCOPE_MAN_RATE		MAN_POLICY
#define SCOPE_MAN_RL_CONN	MAN_POLICY
#define SCOPE_MAN_RL_MSG	MAN_POLICY
#define SCOPE_MAN_RL_BYTES	MAN_POLICY

/* A route as written, before its upstream and policy are looked up. */
struct config_route_src {
	char		*rs_path;
	char		*rs_upstream;
	char		*rs_policy;
};

/* The admin mapping as written, before it is checked and kept. */
struct config_admin_src {
	char			*as_listen;
	struct sockaddr_storage	 as_addr;
	socklen_t		 as_addrlen;
	int			 as_allow_public;
};

/* auth.jwt as written, before the key is loaded and pol_jwt is built. */
struct config_jwt_src {
	struct wsg_policy	*js_pol;	/* claims go straight here */
	unsigned int		 js_algs;	/* WSG_JWT_ALG_BIT()s */
	yaml_node_t		*js_alg_node[WSG_JWT_NALGS];
	char			*js_key_file;
	char			*js_issuer;
	char			*js_audience;
	uint64_t		 js_leeway_ms;
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
	yaml_node_t		*x_admin_node;	/* admin.listen, if valid */
	yaml_node_t		*x_bytes_node;	/* bytes_per_connection */
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
#define F_U64		0x4	/* INT stored as uint64_t, not int */
#define NOFF		((size_t)-1)

#define CF(f)		offsetof(struct wsg_config, f)
#define LC(f)		offsetof(struct wsg_listener_conf, f)
#define RS(f)		offsetof(struct config_route_src, f)
#define UP(f)		offsetof(struct wsg_upstream, f)
#define PO(f)		offsetof(struct wsg_policy, f)
#define AD(f)		offsetof(struct config_admin_src, f)
#define OR(f)		offsetof(struct wsg_origin_policy, f)
#define JS(f)		offsetof(struct config_jwt_src, f)
#define RC(f)		offsetof(struct wsg_ratelimit_conf, f)
#define RL(f)		offsetof(struct wsg_rl_limit, f)
#define ST(f)		offsetof(struct wsg_store_conf, f)

/*
 * The list handlers (config_cidrs, config_regexes, config_countries) are
 * given the offset of an array pointer and keep the count in the size_t
 * that follows it; these fields must stay paired.
 */
#define CONFIG_PAIRED(t, arr, cnt)					\
	_Static_assert(offsetof(t, cnt) == offsetof(t, arr) +		\
	    sizeof(void *), #arr " must be followed by " #cnt)
CONFIG_PAIRED(struct wsg_listener_conf, lc_trusted_proxies,
    lc_ntrusted_proxies);
CONFIG_PAIRED(struct wsg_policy, pol_ip_allow, pol_nip_allow);
CONFIG_PAIRED(struct wsg_policy, pol_ip_deny, pol_nip_deny);
CONFIG_PAIRED(struct wsg_policy, pol_geo_allow, pol_ngeo_allow);
CONFIG_PAIRED(struct wsg_policy, pol_geo_deny, pol_ngeo_deny);
CONFIG_PAIRED(struct wsg_policy, pol_deny_regex, pol_ndeny_regex);
CONFIG_PAIRED(struct wsg_origin_policy, op_regex, op_nregex);

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
static void	config_unmap(const struct sockaddr_storage *,
		    struct sockaddr_storage *);
static void	config_frames(struct config_ctx *, const struct config_slot *,
		    void *, yaml_node_t *);
static void	config_subprotocols(struct config_ctx *,
		    const struct config_slot *, void *, yaml_node_t *);
static void	config_admin(struct config_ctx *, const struct config_slot *,
		    void *, yaml_node_t *);
static void	config_admin_listen(struct config_ctx *,
		    const struct config_slot *, void *, yaml_node_t *);
static void	config_user(struct config_ctx *, const struct config_slot *,
		    void *, yaml_node_t *);
static void	config_ticket_secret(struct config_ctx *,
		    const struct config_slot *, void *, yaml_node_t *);
static void	config_cidrs(struct config_ctx *, const struct config_slot *,
		    void *, yaml_node_t *);
static void	config_regexes(struct config_ctx *,
		    const struct config_slot *, void *, yaml_node_t *);
static void	config_origin(struct config_ctx *, const struct config_slot *,
		    void *, yaml_node_t *);
static void	config_origins(struct config_ctx *,
		    const struct config_slot *, void *, yaml_node_t *);
static void	config_auth(struct config_ctx *, const struct config_slot *,
		    void *, yaml_node_t *);
static void	config_jwt(struct config_ctx *, const struct config_slot *,
		    void *, yaml_node_t *);
static void	config_jwt_algs(struct config_ctx *,
		    const struct config_slot *, void *, yaml_node_t *);
static void	config_required_claims(struct config_ctx *,
		    const struct config_slot *, void *, yaml_node_t *);
static void	config_forward_claims(struct config_ctx *,
		    const struct config_slot *, void *, yaml_node_t *);
static void	config_geoip_db(struct config_ctx *,
		    const struct config_slot *, void *, yaml_node_t *);
static void	config_countries(struct config_ctx *,
		    const struct config_slot *, void *, yaml_node_t *);
static void	config_rate_limit(struct config_ctx *,
		    const struct config_slot *, void *, yaml_node_t *);
static void	config_rl_limit(struct config_ctx *,
		    const struct config_slot *, void *, yaml_node_t *);
static void	config_rl_rate(struct config_ctx *,
		    const struct config_slot *, void *, yaml_node_t *);
static void	config_rl_store(struct config_ctx *,
		    const struct config_slot *, void *, yaml_node_t *);
static void	config_redis(struct config_ctx *,
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
/* Ordered so that the index is the flag: close = 1, allow = 1. */
static const char *const config_expiries[] = { "ignore", "close", NULL };
static const char *const config_unknowns[] = { "deny", "allow", NULL };
/* Ordered as enum wsg_store_failure. */
static const char *const config_failures[] = {
	"local", "allow", "deny", NULL
};

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
	X(MAIN, "busy_poll", DURATION, "0", 0, MS_S, NULL,		\
	    NONE, CF(c_busy_poll_ms), NULL, 0)				\
	X(MAIN, "log", MAP, NULL, 0, 0, NULL,				\
	    LOG, NOFF, NULL, 0)				\
	X(MAIN, "policies_dir", STRING, "../policies", 0, 0, NULL,	\
	    NONE, CF(c_policies_dir), NULL, F_PATH)			\
	X(MAIN, "upstreams", MAP, NULL, 1, CONFIG_MAX_UPSTREAMS, NULL,	\
	    UPSTREAM, NOFF, config_upstreams, F_REQ)			\
	X(MAIN, "listeners", LIST, NULL, 1, CONFIG_MAX_LISTENERS, NULL,	\
	    LISTENER, NOFF, config_listeners, F_REQ)			\
	X(MAIN, "user", STRING, NULL, 0, 0, NULL,			\
	    NONE, NOFF, config_user, 0)					\
	X(MAIN, "tls_ticket_secret", STRING, NULL, 0, 0, NULL,		\
	    NONE, NOFF, config_ticket_secret, 0)			\
	X(MAIN, "max_connections", INT, "0", 0, CONFIG_MAX_CONNECTIONS,	\
	    NULL, NONE, CF(c_max_connections), NULL, F_U64)		\
	X(MAIN, "admin", MAP, NULL, 0, 0, NULL,				\
	    ADMIN, NOFF, config_admin, 0)				\
	X(MAIN, "rate_limit_table", MAP, NULL, 0, 0, NULL,		\
	    RLTABLE, NOFF, NULL, 0)					\
	X(MAIN, "rate_limit_store", MAP, NULL, 0, 0, NULL,		\
	    STORE, NOFF, config_rl_store, 0)				\
	/* rate_limit_table */						\
	X(RLTABLE, "max_entries", INT, "100000", CONFIG_MIN_RL_ENTRIES,	\
	    CONFIG_MAX_RL_ENTRIES, NULL,				\
	    NONE, CF(c_rl_max_entries), NULL, F_U64)			\
	X(RLTABLE, "idle_expiry", DURATION, "10m", MS_S, 24 * MS_H,	\
	    NULL, NONE, CF(c_rl_idle_ms), NULL, 0)			\
	/* rate_limit_store */						\
	X(STORE, "redis", STRING, NULL, 0, 0, NULL,			\
	    NONE, NOFF, config_redis, F_REQ)				\
	X(STORE, "on_failure", ENUM, "local", 0, 0, config_failures,	\
	    NONE, ST(sc_on_failure), NULL, 0)				\
	X(STORE, "lease_ttl", DURATION, "30s", 5 * MS_S, 10 * MS_M,	\
	    NULL, NONE, ST(sc_lease_ttl_ms), NULL, 0)			\
	X(STORE, "key_prefix", STRING, "wsgate:", 1,			\
	    WSG_STORE_MAX_PREFIX, NULL,					\
	    NONE, ST(sc_key_prefix), NULL, 0)				\
	/* admin */							\
	X(ADMIN, "listen", ADDR, NULL, 0, 0, NULL,			\
	    NONE, NOFF, config_admin_listen, F_REQ)			\
	X(ADMIN, "allow_public", BOOL, "false", 0, 0, NULL,		\
	    NONE, AD(as_allow_public), NULL, 0)				\
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
	X(LISTENER, "proxy_protocol", BOOL, "false", 0, 0, NULL,	\
	    NONE, LC(lc_proxy_protocol), NULL, 0)			\
	X(LISTENER, "max_pending_per_ip", INT, "0", 0,			\
	    WSG_RL_MAX_CONCURRENT, NULL,				\
	    NONE, LC(lc_max_pending_per_ip), NULL, F_U64)		\
	X(LISTENER, "trusted_proxies", LIST, NULL, 0,			\
	    CONFIG_MAX_TRUSTED, NULL,					\
	    NONE, LC(lc_trusted_proxies), config_cidrs, 0)		\
	X(LISTENER, "routes", LIST, NULL, 1, CONFIG_MAX_ROUTES, NULL,	\
	    ROUTE, NOFF, config_routes, F_REQ)				\
	/* listener.tls */						\
	X(TLS, "certificate", STRING, NULL, 0, 0, NULL,			\
	    NONE, LC(lc_cert_file), NULL, F_REQ | F_PATH)		\
	X(TLS, "key", STRING, NULL, 0, 0, NULL,				\
	    NONE, LC(lc_key_file), NULL, F_REQ | F_PATH)		\
	X(TLS, "min_version", ENUM, "1.2", 0, 0, config_tls_versions,	\
	    NONE, LC(lc_tls_min_version), NULL, 0)			\
	X(TLS, "client_ca", STRING, NULL, 0, 0, NULL,			\
	    NONE, LC(lc_client_ca), NULL, F_PATH)			\
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
	X(UPSTREAM, "fail_timeout", DURATION, "10s", 0, MS_H, NULL,	\
	    NONE, UP(up_fail_timeout_ms), NULL, 0)			\
	/* policy file: top level */					\
	X(POLICY, "frames", MAP, NULL, 0, 0, NULL,			\
	    FRAMES, NOFF, config_frames, 0)				\
	X(POLICY, "subprotocols", LIST, NULL, 0, WSG_MAX_SUBPROTOCOLS,	\
	    NULL, NONE, NOFF, config_subprotocols, 0)			\
	X(POLICY, "timeouts", MAP, NULL, 0, 0, NULL,			\
	    TIMEOUTS, NOFF, NULL, 0)					\
	X(POLICY, "origin", MAP, NULL, 0, 0, NULL,			\
	    ORIGIN, NOFF, config_origin, 0)				\
	X(POLICY, "auth", MAP, NULL, 0, 0, NULL,			\
	    AUTH, NOFF, config_auth, 0)					\
	X(POLICY, "ip", MAP, NULL, 0, 0, NULL,				\
	    IP, NOFF, NULL, 0)						\
	X(POLICY, "geoip", MAP, NULL, 0, 0, NULL,			\
	    GEOIP, NOFF, NULL, 0)					\
	X(POLICY, "messages", MAP, NULL, 0, 0, NULL,			\
	    MESSAGES, NOFF, NULL, 0)					\
	X(POLICY, "rate_limit", MAP, NULL, 0, 0, NULL,			\
	    RATE, NOFF, config_rate_limit, 0)				\
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
	    NONE, PO(pol_idle_timeout_ms), NULL, 0)			\
	/* policy: origin */						\
	X(ORIGIN, "allow", LIST, NULL, 0, CONFIG_MAX_ORIGINS, NULL,	\
	    NONE, OR(op_allow), config_origins, 0)			\
	X(ORIGIN, "allow_regex", LIST, NULL, 0, CONFIG_MAX_REGEXES,	\
	    NULL, NONE, OR(op_regex), config_regexes, 0)		\
	X(ORIGIN, "allow_missing", BOOL, "false", 0, 0, NULL,		\
	    NONE, OR(op_allow_missing), NULL, 0)			\
	/* policy: auth */						\
	X(AUTH, "header", STRING, "Authorization", 0, 0, NULL,		\
	    NONE, PO(pol_auth_header), NULL, 0)				\
	X(AUTH, "query_param", STRING, NULL, 0, 0, NULL,		\
	    NONE, PO(pol_auth_query_param), NULL, 0)			\
	X(AUTH, "jwt", MAP, NULL, 0, 0, NULL,				\
	    JWT, NOFF, config_jwt, F_REQ)				\
	X(AUTH, "on_expiry", ENUM, "close", 0, 0, config_expiries,	\
	    NONE, PO(pol_expiry_close), NULL, 0)			\
	/* policy: auth.jwt */						\
	X(JWT, "algorithms", LIST, NULL, 1, WSG_JWT_NALGS, NULL,	\
	    NONE, NOFF, config_jwt_algs, F_REQ)				\
	X(JWT, "key_file", STRING, NULL, 0, 0, NULL,			\
	    NONE, JS(js_key_file), NULL, F_REQ | F_PATH)		\
	X(JWT, "issuer", STRING, NULL, 0, 0, NULL,			\
	    NONE, JS(js_issuer), NULL, 0)				\
	X(JWT, "audience", STRING, NULL, 0, 0, NULL,			\
	    NONE, JS(js_audience), NULL, 0)				\
	X(JWT, "leeway", DURATION, "0s", 0, MS_H, NULL,			\
	    NONE, JS(js_leeway_ms), NULL, 0)				\
	X(JWT, "required_claims", LIST, NULL, 0, CONFIG_MAX_CLAIMS,	\
	    NULL, NONE, NOFF, config_required_claims, 0)		\
	X(JWT, "forward_claims", MAP, NULL, 0, CONFIG_MAX_FORWARD,	\
	    NULL, NONE, NOFF, config_forward_claims, 0)			\
	/* policy: ip */						\
	X(IP, "allow", LIST, NULL, 0, CONFIG_MAX_CIDRS, NULL,		\
	    NONE, PO(pol_ip_allow), config_cidrs, 0)			\
	X(IP, "deny", LIST, NULL, 0, CONFIG_MAX_CIDRS, NULL,		\
	    NONE, PO(pol_ip_deny), config_cidrs, 0)			\
	/* policy: geoip */						\
	X(GEOIP, "database", STRING, NULL, 0, 0, NULL,			\
	    NONE, NOFF, config_geoip_db, F_REQ | F_PATH)		\
	X(GEOIP, "allow_countries", LIST, NULL, 0,			\
	    CONFIG_MAX_COUNTRIES, NULL,					\
	    NONE, PO(pol_geo_allow), config_countries, 0)		\
	X(GEOIP, "deny_countries", LIST, NULL, 0,			\
	    CONFIG_MAX_COUNTRIES, NULL,					\
	    NONE, PO(pol_geo_deny), config_countries, 0)		\
	X(GEOIP, "unknown", ENUM, "allow", 0, 0, config_unknowns,	\
	    NONE, PO(pol_geo_unknown_allow), NULL, 0)			\
	/* policy: messages */						\
	X(MESSAGES, "deny_regex", LIST, NULL, 0, CONFIG_MAX_REGEXES,	\
	    NULL, NONE, PO(pol_deny_regex), config_regexes, 0)		\
	/* policy: rate_limit */					\
	X(RATE, "connections_per_ip", MAP, NULL, 0, 0, NULL,		\
	    RL_CONN, RC(rc_connections), config_rl_limit, 0)		\
	X(RATE, "concurrent_per_ip", INT, NULL, 1,			\
	    WSG_RL_MAX_CONCURRENT, NULL,				\
	    NONE, RC(rc_concurrent), NULL, F_U64)			\
	X(RATE, "messages_per_connection", MAP, NULL, 0, 0, NULL,	\
	    RL_MSG, RC(rc_messages), config_rl_limit, 0)		\
	X(RATE, "bytes_per_connection", MAP, NULL, 0, 0, NULL,		\
	    RL_BYTES, RC(rc_bytes), config_rl_limit, 0)			\
	X(RATE, "ipv6_prefix", INT, "64", 1, 128, NULL,			\
	    NONE, RC(rc_ipv6_prefix), NULL, 0)				\
	/* policy: rate_limit, each {rate, burst} */			\
	X(RL_CONN, "rate", RATE, NULL, 1, WSG_RL_MAX_AMOUNT, NULL,	\
	    NONE, RL(rl_rate), config_rl_rate, F_REQ)			\
	X(RL_CONN, "burst", INT, NULL, 1, WSG_RL_MAX_AMOUNT, NULL,	\
	    NONE, RL(rl_burst), NULL, F_U64)				\
	X(RL_MSG, "rate", RATE, NULL, 1, WSG_RL_MAX_AMOUNT, NULL,	\
	    NONE, RL(rl_rate), config_rl_rate, F_REQ)			\
	X(RL_MSG, "burst", INT, NULL, 1, WSG_RL_MAX_AMOUNT, NULL,	\
	    NONE, RL(rl_burst), NULL, F_U64)				\
	X(RL_BYTES, "rate", RATE, NULL, 1, WSG_RL_MAX_BYTES, NULL,	\
	    NONE, RL(rl_rate), config_rl_rate, F_REQ)			\
	X(RL_BYTES, "burst", SIZE, NULL, 1, WSG_RL_MAX_BYTES, NULL,	\
	    NONE, RL(rl_burst), NULL, 0)

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
	case SC_ADMIN:
		return "admin";
	case SC_ORIGIN:
		return "origin";
	case SC_AUTH:
		return "auth";
	case SC_JWT:
		return "jwt";
	case SC_IP:
		return "ip";
	case SC_GEOIP:
		return "geoip";
	case SC_MESSAGES:
		return "messages";
	case SC_RLTABLE:
		return "rate_limit_table";
	case SC_STORE:
		return "rate_limit_store";
	case SC_RATE:
		return "rate_limit";
	case SC_RL_CONN:
		return "connections_per_ip";
	case SC_RL_MSG:
		return "messages_per_connection";
	case SC_RL_BYTES:
		return "bytes_per_connection";
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
 * An unquoted YAML 1.1 boolean where a path is expected, as in
 * "access_log: false": meant as a switch, it would name a file.
 */
static int
config_plain_bool(const yaml_node_t *n, const char *v)
{
	static const char *const words[] = { "true", "false", "yes", "no",
	    "on", "off", "y", "n", NULL };
	size_t			   i;

	if (n == NULL || n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	for (i = 0; words[i] != NULL; i++)
		if (strcasecmp(v, words[i]) == 0)
			return 1;
	return 0;
}

/*
 * An unquoted word of the other log where a log path is expected, as in
 * "access_log: stderr": meant as the stream, it would name a file.
 */
static int
config_plain_log_word(const struct wsg_option *o, const yaml_node_t *n,
    const char *v)
{
	const char *const	*other;

	if (o->o_enum == config_error_logs)
		other = config_access_logs;
	else if (o->o_enum == config_access_logs)
		other = config_error_logs;
	else
		return 0;
	return (n != NULL && n->type == YAML_SCALAR_NODE &&
	    n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	    config_enum_index(o->o_enum, v) == -1 &&
	    config_enum_index(other, v) != -1);
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
		    config_enum_index(o->o_enum, v) == -1) &&
		    config_plain_bool(n, v)) {
			if (o->o_enum != NULL)
				config_fmt_choices(o->o_enum, choices,
				    sizeof(choices));
			errors_add(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "%s: unquoted '%s' reads as a "
			    "boolean, not a path%s%s; quote it if it is a "
			    "file name", key, v,
			    o->o_enum != NULL ? "; the words are " : "",
			    o->o_enum != NULL ? choices : "");
			return;
		}
		if ((s->s_flags & F_PATH) && config_plain_log_word(o, n, v)) {
			config_fmt_choices(o->o_enum, choices, sizeof(choices));
			errors_add(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "%s: unquoted '%s' would name a file, "
			    "not a stream; the words are %s; quote it if it is "
			    "a file name", key, v, choices);
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
	if (o->o_type == WSG_OPT_DURATION || o->o_type == WSG_OPT_SIZE ||
	    (s->s_flags & F_U64))
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

/* The value node a walk saw for a row, found by its offset in scope sc. */
static yaml_node_t *
config_seen_off(yaml_node_t *const *seen, enum config_scope sc, size_t off)
{
	size_t	i;

	for (i = 0; i < CONFIG_NOPT; i++)
		if (config_slots[i].s_scope == sc &&
		    config_slots[i].s_off == off)
			return seen[i];
	return NULL;
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
	struct sockaddr_storage	 v4;
	const char		*err;
	size_t			 i;

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
		memset(srv, 0, sizeof(*srv));
		if (units_parse_hostport(config_str(v), &srv->srv_addr,
		    &srv->srv_addrlen, &err) == -1) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "servers: invalid address '%s': %s",
			    config_str(v), err);
			continue;
		}
		/* [::ffff:a.b.c.d]:port is a.b.c.d:port, as in listen. */
		config_unmap(&srv->srv_addr, &v4);
		if (v4.ss_family != srv->srv_addr.ss_family) {
			memcpy(&srv->srv_addr, &v4, sizeof(v4));
			srv->srv_addrlen = sizeof(struct sockaddr_in);
		}
		/*
		 * The same server twice would have two series of the same
		 * labels in /metrics, which a scrape refuses whole.
		 */
		for (i = 0; i < up->up_nservers; i++)
			if (up->up_servers[i].srv_addrlen == srv->srv_addrlen &&
			    memcmp(&up->up_servers[i].srv_addr, &srv->srv_addr,
			    srv->srv_addrlen) == 0)
				break;
		if (i < up->up_nservers) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "servers: '%s' is listed twice",
			    config_str(v));
			continue;
		}
		if ((srv->srv_name = strdup(config_str(v))) == NULL) {
			config_nomem(x, v);
			continue;
		}
		up->up_nservers++;
	}
}

/* A "listen" value: host:port, parsed into addr and kept as written. */
static void
config_hostport(struct config_ctx *x, yaml_node_t *n,
    struct sockaddr_storage *addr, socklen_t *addrlen, char **written)
{
	const char	*err;

	if (config_expect(x, n, YAML_SCALAR_NODE, "listen") == -1)
		return;
	if (units_parse_hostport(config_str(n), addr, addrlen, &err) == -1) {
		errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "listen: invalid address '%s': %s", config_str(n), err);
		return;
	}
	if ((*written = strdup(config_str(n))) == NULL)
		config_nomem(x, n);
}

/*
 * The IPv4 address an IPv4-mapped IPv6 one ([::ffff:a.b.c.d]) binds on a
 * dual-stack socket; any other address as it is.
 */
static void
config_unmap(const struct sockaddr_storage *ss, struct sockaddr_storage *out)
{
	const struct sockaddr_in6	*sin6;
	struct sockaddr_in		*sin;

	memcpy(out, ss, sizeof(*out));
	sin6 = (const struct sockaddr_in6 *)(const void *)ss;
	if (ss->ss_family != AF_INET6 ||
	    !IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
		return;
	memset(out, 0, sizeof(*out));
	sin = (struct sockaddr_in *)(void *)out;
	sin->sin_family = AF_INET;
	sin->sin_port = sin6->sin6_port;
	memcpy(&sin->sin_addr, &sin6->sin6_addr.s6_addr[12], 4);
}

/*
 * listener.listen: host:port, kept as written and parsed.  An IPv4-mapped
 * [::ffff:a.b.c.d]:port is the IPv4 address it holds, as in CIDR rules
 * and PROXY headers: the listener's IPv6 socket is IPv6-only (so that
 * [::]:port and 0.0.0.0:port can both be listeners) and could not bind it.
 */
static void
config_listen(struct config_ctx *x, const struct config_slot *s, void *obj,
    yaml_node_t *n)
{
	struct wsg_listener_conf	*lc = obj;
	struct sockaddr_storage		 v4;

	config_hostport(x, n, &lc->lc_addr, &lc->lc_addrlen, &lc->lc_listen);
	config_unmap(&lc->lc_addr, &v4);
	if (v4.ss_family == lc->lc_addr.ss_family)
		return;
	memcpy(&lc->lc_addr, &v4, sizeof(v4));
	lc->lc_addrlen = sizeof(struct sockaddr_in);
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

/*
 * Can every local user get to a file: may others search each folder on
 * the way to where it really is?  A key 0644 in a folder 0700 (an ACME
 * client's archive) or 0710 (Debian's /etc/ssl/private) is safe.
 */
static int
config_reachable(const char *path)
{
	struct stat	 st;
	char		*real, *slash;
	int		 ok = 1;

	if ((real = realpath(path, NULL)) == NULL)
		return 0;
	while (ok && (slash = strrchr(real, '/')) != NULL) {
		slash[slash == real] = '\0';
		if (stat(real, &st) == -1 || (st.st_mode & S_IXOTH) == 0)
			ok = 0;
		if (slash == real)
			break;
	}
	free(real);
	return ok;
}

/*
 * Warn when every local user may read a secret file.  Its group may: keys
 * are often 0640 for a group such as Debian's ssl-cert.
 */
static void
config_private(struct config_ctx *x, const yaml_node_t *n, const char *key,
    const char *path, const char *why)
{
	struct stat	st;

	if (stat(path, &st) == 0 && (st.st_mode & S_IROTH) != 0 &&
	    config_reachable(path))
		errors_warn(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "%s: %s can be read by every user (mode %03o): whoever "
		    "reads it %s", key, path, (unsigned)(st.st_mode & 0777),
		    why);
}

/* listener.tls: certificate and key, then the SSL_CTX. */
static void
config_tls(struct config_ctx *x, const struct config_slot *s, void *obj,
    yaml_node_t *n)
{
	struct wsg_listener_conf *lc = obj;
	yaml_node_t		*seen[CONFIG_NOPT];
	size_t			 n0 = x->x_errs->e_n;
	int			 ok = 1;

	if (n == NULL)
		return;
	lc->lc_tls = 1;
	config_walk(x, SC_TLS, lc, n, "tls", seen);
	if (lc->lc_cert_file != NULL && config_readable(x,
	    config_seen_off(seen, SC_TLS, LC(lc_cert_file)), "certificate",
	    lc->lc_cert_file) == -1)
		ok = 0;
	if (lc->lc_key_file != NULL && config_readable(x,
	    config_seen_off(seen, SC_TLS, LC(lc_key_file)), "key",
	    lc->lc_key_file) == -1)
		ok = 0;
	else if (lc->lc_key_file != NULL)
		config_private(x, config_seen_off(seen, SC_TLS,
		    LC(lc_key_file)), "key", lc->lc_key_file,
		    "can pose as this server");
	if (lc->lc_client_ca != NULL && config_readable(x,
	    config_seen_off(seen, SC_TLS, LC(lc_client_ca)), "client_ca",
	    lc->lc_client_ca) == -1)
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
	if (pol->pol_origin != NULL) {
		for (i = 0; i < pol->pol_origin->op_nallow; i++)
			free(pol->pol_origin->op_allow[i]);
		free(pol->pol_origin->op_allow);
		for (i = 0; i < pol->pol_origin->op_nregex; i++)
			regex_free(pol->pol_origin->op_regex[i]);
		free(pol->pol_origin->op_regex);
		free(pol->pol_origin);
	}
	if (pol->pol_jwt != NULL) {
		/* Owned here; const only for the verifier. */
		free((char *)(uintptr_t)pol->pol_jwt->jp_issuer);
		free((char *)(uintptr_t)pol->pol_jwt->jp_audience);
		free(pol->pol_jwt);
	}
	jwt_key_free(pol->pol_jwt_key);
	free(pol->pol_auth_header);
	free(pol->pol_auth_query_param);
	for (i = 0; i < pol->pol_nrequired_claims; i++)
		free(pol->pol_required_claims[i]);
	free(pol->pol_required_claims);
	for (i = 0; i < pol->pol_nforward_claims; i++) {
		free(pol->pol_forward_claims[i].fc_claim);
		free(pol->pol_forward_claims[i].fc_header);
	}
	free(pol->pol_forward_claims);
	free(pol->pol_ip_allow);
	free(pol->pol_ip_deny);
	geoip_close(pol->pol_geoip);
	free(pol->pol_geo_allow);
	free(pol->pol_geo_deny);
	for (i = 0; i < pol->pol_ndeny_regex; i++)
		regex_free(pol->pol_deny_regex[i]);
	free(pol->pol_deny_regex);
	free(pol->pol_rate);
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
	yaml_node_t		*seen[CONFIG_NOPT], *v, *utf;
	char			 b1[32], b2[32];
	size_t			 nerr = x->x_errs->e_n;

	if (n == NULL) {
		config_defaults(x, SC_FRAMES, pol);
		return;
	}
	config_walk(x, SC_FRAMES, pol, n, "frames", seen);
	v = config_seen_off(seen, SC_FRAMES, PO(pol_max_message_size));
	utf = config_seen_off(seen, SC_FRAMES, PO(pol_validate_utf8));
	if (v == NULL)
		v = n;
	config_fmt_size(pol->pol_max_message_size, b1, sizeof(b1));
	config_fmt_size(pol->pol_max_frame_size, b2, sizeof(b2));
	/* A size refused is not in pol: only compare the ones taken. */
	if (x->x_errs->e_n == nerr && pol->pol_max_message_size > 64 * MIB)
		errors_warn(x->x_errs, x->x_file, config_line(v),
		    config_col(v), "max_message_size: %s is over 64MiB; each "
		    "connection may buffer that much", b1);
	if (x->x_errs->e_n == nerr &&
	    pol->pol_max_message_size < pol->pol_max_frame_size)
		errors_warn(x->x_errs, x->x_file, config_line(v),
		    config_col(v), "max_message_size %s is below "
		    "max_frame_size %s, so frames are capped at %s", b1, b2,
		    b1);
	if (utf != NULL && utf->type == YAML_SCALAR_NODE &&
	    strcmp(config_str(utf), "false") == 0)
		errors_warn(x->x_errs, x->x_file, config_line(utf),
		    config_col(utf), "validate_utf8: false lets invalid text "
		    "through to the upstream");
}

/* Is c an RFC 7230 token character? */
static int
config_tchar(unsigned char c)
{
	return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (c != '\0' &&
	    strchr("!#$%&'*+-.^_`|~", c) != NULL));
}

/*
 * Append a copy of str to a list of n strings (room is there), unless it
 * is listed already: "KEY: 'str' is listed twice".
 */
static void
config_add_unique(struct config_ctx *x, yaml_node_t *v, const char *key,
    char **list, size_t *n, const char *str)
{
	size_t	i;

	for (i = 0; i < *n; i++)
		if (strcmp(list[i], str) == 0) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "%s: '%s' is listed twice", key,
			    str);
			return;
		}
	if ((list[*n] = strdup(str)) == NULL) {
		config_nomem(x, v);
		return;
	}
	(*n)++;
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
		config_add_unique(x, v, "subprotocols", pol->pol_subprotocols,
		    &pol->pol_nsubprotocols, t);
	}
}

/* The count that follows a list handler's array pointer (CONFIG_PAIRED). */
static size_t *
config_paired_count(void *obj, const struct config_slot *s)
{
	return (size_t *)(void *)((char *)obj + s->s_off + sizeof(void *));
}

/* The scalar items of a list, each reported if it is not a scalar. */
static yaml_node_t *
config_item(struct config_ctx *x, yaml_node_item_t *it, const char *key)
{
	yaml_node_t	*v;

	if ((v = yaml_document_get_node(x->x_doc, *it)) == NULL ||
	    config_expect(x, v, YAML_SCALAR_NODE, key) == -1)
		return NULL;
	return v;
}

/* Is an address on the loopback interface: 127.0.0.0/8, ::1, ::ffff:127/104? */
static int
config_is_loopback(const struct sockaddr_storage *ss)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	const uint8_t			*a;
	static const uint8_t		 mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};

	if (ss->ss_family == AF_INET) {
		sin = (const struct sockaddr_in *)(const void *)ss;
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family != AF_INET6)
		return 0;
	sin6 = (const struct sockaddr_in6 *)(const void *)ss;
	a = sin6->sin6_addr.s6_addr;
	if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
		return 1;
	return memcmp(a, mapped, sizeof(mapped)) == 0 && a[12] == 127;
}

/* admin.listen: host:port of the plaintext metrics and health listener. */
static void
config_admin_listen(struct config_ctx *x, const struct config_slot *s,
    void *obj, yaml_node_t *n)
{
	struct config_admin_src	*as = obj;

	config_hostport(x, n, &as->as_addr, &as->as_addrlen, &as->as_listen);
}

/*
 * main.admin: the admin listener serves metrics without authentication,
 * so it stays on loopback unless allow_public says otherwise.
 */
static void
config_admin(struct config_ctx *x, const struct config_slot *s, void *obj,
    yaml_node_t *n)
{
	struct wsg_config	*cf = obj;
	struct config_admin_src	 as;
	yaml_node_t		*seen[CONFIG_NOPT], *v;
	size_t			 i, ilisten = 0;

	if (n == NULL)
		return;
	memset(&as, 0, sizeof(as));
	config_walk(x, SC_ADMIN, &as, n, "admin", seen);
	if (as.as_listen == NULL)
		return;
	for (i = 0; i < CONFIG_NOPT; i++)
		if (config_slots[i].s_fn == config_admin_listen)
			ilisten = i;
	v = seen[ilisten];
	if (!config_is_loopback(&as.as_addr)) {
		if (!as.as_allow_public)
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "listen: %s is not a loopback "
			    "address; the admin listener is plaintext and "
			    "unauthenticated (set allow_public: true to allow "
			    "it)", as.as_listen);
		else
			errors_warn(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "admin listener on a public address "
			    "(%s): metrics are served without authentication",
			    as.as_listen);
	}
	cf->c_has_admin = 1;
	free(cf->c_admin_listen);
	cf->c_admin_listen = as.as_listen;
	memcpy(&cf->c_admin_addr, &as.as_addr, sizeof(as.as_addr));
	cf->c_admin_addrlen = as.as_addrlen;
	x->x_admin_node = v;
}

/* main.user: the account to switch to after binding; it must exist. */
static void
config_user(struct config_ctx *x, const struct config_slot *s, void *obj,
    yaml_node_t *n)
{
	struct wsg_config	*cf = obj;
	struct passwd		 pw, *res = NULL;
	char			 buf[16384];
	const char		*name;
	int			 r;

	if (n == NULL || config_expect(x, n, YAML_SCALAR_NODE, "user") == -1)
		return;
	name = config_str(n);
	if (*name == '\0') {
		errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "user: must not be empty");
		return;
	}
	r = getpwnam_r(name, &pw, buf, sizeof(buf), &res);
	if (res == NULL) {
		if (r != 0 && r != ENOENT && r != ESRCH && r != EBADF &&
		    r != EPERM)
			errors_add(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "user: cannot look up '%s': %s",
			    name, strerror(r));
		else
			errors_add(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "user '%s' does not exist", name);
		return;
	}
	free(cf->c_user);
	if ((cf->c_user = strdup(name)) == NULL)
		config_nomem(x, n);
}

/*
 * A key naming a file: a non-empty scalar, relative to the folder of the
 * file it is in.  The path to free, or NULL once the error is reported.
 */
static char *
config_file_path(struct config_ctx *x, yaml_node_t *n, const char *key)
{
	char	*path;

	if (config_expect(x, n, YAML_SCALAR_NODE, key) == -1)
		return NULL;
	if (*config_str(n) == '\0') {
		errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "%s: must not be empty", key);
		return NULL;
	}
	if ((path = config_join(x->x_dir, config_str(n))) == NULL)
		config_nomem(x, n);
	return path;
}

/*
 * tls_ticket_secret: a file of TLS_TKEY_SECRET_MIN to _MAX bytes from
 * which every gateway that holds it derives the same ticket keys.  Read
 * here, so that a missing or short file is an error of this generation.
 */
static void
config_ticket_secret(struct config_ctx *x, const struct config_slot *s,
    void *obj, yaml_node_t *n)
{
	struct wsg_config	*cf = obj;
	unsigned char		 buf[TLS_TKEY_SECRET_MAX + 1];
	struct stat		 st;
	char			*path;
	FILE			*fp;
	size_t			 len;

	if (n == NULL || (path = config_file_path(x, n,
	    "tls_ticket_secret")) == NULL)
		return;
	if ((fp = fopen(path, "rb")) == NULL) {
		errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "tls_ticket_secret: cannot open %s: %s", path,
		    strerror(errno));
		free(path);
		return;
	}
	len = fread(buf, 1, sizeof(buf), fp);
	if (ferror(fp))
		errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "tls_ticket_secret: cannot read %s: %s", path,
		    strerror(errno));
	else if (len < TLS_TKEY_SECRET_MIN || len > TLS_TKEY_SECRET_MAX)
		errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "tls_ticket_secret: %s holds %s%zu bytes, needs %d to %d "
		    "(openssl rand 48 > %s)", path,
		    len > TLS_TKEY_SECRET_MAX ? "more than " : "",
		    len > TLS_TKEY_SECRET_MAX ? (size_t)TLS_TKEY_SECRET_MAX :
		    len, TLS_TKEY_SECRET_MIN, TLS_TKEY_SECRET_MAX, path);
	else if ((cf->c_ticket_secret = malloc(len)) == NULL)
		config_nomem(x, n);
	else {
		memcpy(cf->c_ticket_secret, buf, len);
		cf->c_ticket_secret_len = len;
		if (fstat(fileno(fp), &st) == 0 && (st.st_mode & 077) != 0)
			errors_warn(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "tls_ticket_secret: %s can be read "
			    "by other users (mode %03o): whoever reads it can "
			    "open every session ticket", path,
			    (unsigned)(st.st_mode & 0777));
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	fclose(fp);
	free(path);
}

/* A list of CIDRs (trusted_proxies, ip.allow, ip.deny). */
static void
config_cidrs(struct config_ctx *x, const struct config_slot *s, void *obj,
    yaml_node_t *n)
{
	const char		*key = config_opt(s)->o_key, *err;
	struct wsg_cidr		**arr = (struct wsg_cidr **)(void *)
				    ((char *)obj + s->s_off);
	size_t			*cnt = config_paired_count(obj, s);
	yaml_node_item_t	*it;
	yaml_node_t		*v;
	int			 r;

	if (n == NULL || config_list_count(x, s, n, config_seq_len(n)) == -1 ||
	    config_seq_len(n) == 0)
		return;
	if ((*arr = calloc(config_seq_len(n), sizeof(**arr))) == NULL) {
		config_nomem(x, n);
		return;
	}
	for (it = n->data.sequence.items.start;
	    it < n->data.sequence.items.top; it++) {
		if ((v = config_item(x, it, key)) == NULL)
			continue;
		err = NULL;
		r = cidr_parse(config_str(v), &(*arr)[*cnt], &err);
		if (r == -1) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "%s: invalid CIDR '%s': %s", key,
			    config_str(v), err != NULL ? err : "malformed");
			continue;
		}
		if (r == 1)
			errors_warn(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "%s: '%s': %s", key, config_str(v),
			    err != NULL ? err : "host bits cleared");
		(*cnt)++;
	}
}

/* A list of PCRE2 patterns (origin.allow_regex, messages.deny_regex). */
static void
config_regexes(struct config_ctx *x, const struct config_slot *s,
    void *obj, yaml_node_t *n)
{
	const char		*key = config_opt(s)->o_key;
	struct wsg_regex	***arr = (struct wsg_regex ***)(void *)
				    ((char *)obj + s->s_off);
	size_t			*cnt = config_paired_count(obj, s);
	yaml_node_item_t	*it;
	yaml_node_t		*v;
	char			 err[WSG_REGEX_ERR_MAX];

	if (n == NULL || config_list_count(x, s, n, config_seq_len(n)) == -1 ||
	    config_seq_len(n) == 0)
		return;
	if ((*arr = calloc(config_seq_len(n), sizeof(**arr))) == NULL) {
		config_nomem(x, n);
		return;
	}
	for (it = n->data.sequence.items.start;
	    it < n->data.sequence.items.top; it++) {
		if ((v = config_item(x, it, key)) == NULL)
			continue;
		if (*config_str(v) == '\0') {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "%s: a pattern must not be empty",
			    key);
			continue;
		}
		/* Not quoted: that long, it would crowd out the reason. */
		if (strlen(config_str(v)) > WSG_REGEX_MAX_PATTERN) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "%s: a pattern is at most %d bytes, "
			    "got %zu", key, WSG_REGEX_MAX_PATTERN,
			    strlen(config_str(v)));
			continue;
		}
		err[0] = '\0';
		if (((*arr)[*cnt] = regex_compile(config_str(v), err,
		    sizeof(err))) == NULL) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "%s: invalid regex '%s': %s", key,
			    config_str(v), err);
			continue;
		}
		(*cnt)++;
	}
}

/* policy.origin: the section turns the Origin check on. */
static void
config_origin(struct config_ctx *x, const struct config_slot *s, void *obj,
    yaml_node_t *n)
{
	struct wsg_policy	*pol = obj;
	struct wsg_origin_policy *op;
	size_t			 nerr = x->x_errs->e_n;

	if (n == NULL)
		return;
	if ((op = pol->pol_origin = calloc(1, sizeof(*op))) == NULL) {
		config_nomem(x, n);
		return;
	}
	config_walk(x, SC_ORIGIN, op, n, "origin", NULL);
	/* An entry in error is not an empty list: no warning on top. */
	if (x->x_errs->e_n == nerr && op->op_nallow == 0 &&
	    op->op_nregex == 0 && !op->op_allow_missing)
		errors_warn(x->x_errs, x->x_file, config_line(n),
		    config_col(n), "origin: nothing is allowed, so every "
		    "client is refused");
}

/* origin.allow: origins, normalised as they will be compared. */
static void
config_origins(struct config_ctx *x, const struct config_slot *s, void *obj,
    yaml_node_t *n)
{
	struct wsg_origin_policy *op = obj;
	yaml_node_item_t	*it;
	yaml_node_t		*v;
	char			 norm[WSG_ORIGIN_BUFSZ];
	size_t			 i;

	if (n == NULL || config_list_count(x, s, n, config_seq_len(n)) == -1 ||
	    config_seq_len(n) == 0)
		return;
	if ((op->op_allow = calloc(config_seq_len(n),
	    sizeof(*op->op_allow))) == NULL) {
		config_nomem(x, n);
		return;
	}
	for (it = n->data.sequence.items.start;
	    it < n->data.sequence.items.top; it++) {
		if ((v = config_item(x, it, "allow")) == NULL)
			continue;
		if (origin_allow_entry(config_str(v), norm,
		    sizeof(norm)) == -1) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "origin: '%s' is not a "
			    "scheme://host[:port] origin", config_str(v));
			continue;
		}
		for (i = 0; i < op->op_nallow; i++)
			if (strcmp(op->op_allow[i], norm) == 0)
				break;
		if (i < op->op_nallow) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "origin: '%s' is listed twice",
			    config_str(v));
			continue;
		}
		if ((op->op_allow[op->op_nallow] = strdup(norm)) == NULL) {
			config_nomem(x, v);
			continue;
		}
		op->op_nallow++;
	}
}

/* Is a string an HTTP token (a header name) of 1 to max characters? */
static int
config_is_token(const char *t, size_t max)
{
	size_t	i, len = strlen(t);

	if (len == 0 || len > max)
		return 0;
	for (i = 0; i < len; i++)
		if (!config_tchar((unsigned char)t[i]))
			return 0;
	return 1;
}

/* policy.auth: the token's place, its JWT checks, what expiry does. */
static void
config_auth(struct config_ctx *x, const struct config_slot *s, void *obj,
    yaml_node_t *n)
{
	struct wsg_policy	*pol = obj;
	yaml_node_t		*seen[CONFIG_NOPT], *v;
	const char		*q;
	size_t			 i;

	if (n == NULL)
		return;
	config_walk(x, SC_AUTH, pol, n, "auth", seen);
	v = config_seen_off(seen, SC_AUTH, PO(pol_auth_header));
	if (v != NULL && pol->pol_auth_header != NULL &&
	    !config_is_token(pol->pol_auth_header, WSG_MAX_TOKEN_LEN))
		errors_add(x->x_errs, x->x_file, config_line(v), config_col(v),
		    "header: '%s' is not an HTTP header name of 1 to %d "
		    "characters", pol->pol_auth_header, WSG_MAX_TOKEN_LEN);
	v = config_seen_off(seen, SC_AUTH, PO(pol_auth_query_param));
	if (v == NULL || (q = pol->pol_auth_query_param) == NULL)
		return;
	for (i = 0; q[i] != '\0'; i++)
		if (!((q[i] >= 'a' && q[i] <= 'z') ||
		    (q[i] >= 'A' && q[i] <= 'Z') ||
		    (q[i] >= '0' && q[i] <= '9') || q[i] == '-' ||
		    q[i] == '.' || q[i] == '_' || q[i] == '~'))
			break;
	if (q[i] != '\0' || i > CONFIG_MAX_QUERY_PARAM)
		errors_add(x->x_errs, x->x_file, config_line(v), config_col(v),
		    "query_param: '%s' must be 1 to %d letters, digits, '-', "
		    "'.', '_' or '~'", q, CONFIG_MAX_QUERY_PARAM);
}

/* How a key reads in "algorithm HS256 cannot be used with an RSA key". */
static const char *
config_key_kind(const struct wsg_jwt_key *key)
{
	if (jwt_key_allows(key, WSG_JWT_RS256))
		return "an RSA public key";
	if (jwt_key_allows(key, WSG_JWT_ES256))
		return "a P-256 public key";
	if (jwt_key_allows(key, WSG_JWT_ES384))
		return "a P-384 public key";
	if (jwt_key_allows(key, WSG_JWT_EDDSA))
		return "an Ed25519 public key";
	if (jwt_key_allows(key, WSG_JWT_HS256))
		return "an HMAC secret";
	return "this key";
}

/*
 * auth.jwt: the algorithms, then the key, which must suit every one of
 * them (an RSA public key must never serve as an HMAC secret), then the
 * verification policy the handshake uses.
 */
static void
config_jwt(struct config_ctx *x, const struct config_slot *s, void *obj,
    yaml_node_t *n)
{
	struct wsg_policy	*pol = obj;
	struct wsg_jwt_policy	*jp;
	struct config_jwt_src	 js;
	yaml_node_t		*seen[CONFIG_NOPT], *v;
	char			 err[256];
	size_t			 min;
	int			 a;

	if (n == NULL)
		return;
	memset(&js, 0, sizeof(js));
	js.js_pol = pol;
	config_walk(x, SC_JWT, &js, n, "jwt", seen);
	v = config_seen_off(seen, SC_JWT, JS(js_key_file));
	if (js.js_key_file != NULL && v != NULL &&
	    config_readable(x, v, "key_file", js.js_key_file) == 0) {
		err[0] = '\0';
		pol->pol_jwt_key = jwt_key_load(js.js_key_file, err,
		    sizeof(err));
		/* Some of jwt_key_load()'s messages name the file. */
		if (pol->pol_jwt_key == NULL &&
		    strncmp(err, js.js_key_file, strlen(js.js_key_file)) == 0)
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "key_file: %s", err);
		else if (pol->pol_jwt_key == NULL)
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "key_file: %s: %s", js.js_key_file,
			    err);
		else if (jwt_key_allows(pol->pol_jwt_key, WSG_JWT_HS256))
			config_private(x, v, "key_file", js.js_key_file,
			    "can sign tokens");
	}
	for (a = 0; a < WSG_JWT_NALGS && pol->pol_jwt_key != NULL; a++) {
		if (!(js.js_algs & WSG_JWT_ALG_BIT(a)))
			continue;
		v = js.js_alg_node[a];
		if (jwt_key_allows(pol->pol_jwt_key, (enum wsg_jwt_alg)a)) {
			/* A shorter secret weakens HS384 and HS512. */
			min = jwt_alg_min_secret((enum wsg_jwt_alg)a);
			if (jwt_key_secret_len(pol->pol_jwt_key) < min)
				errors_warn(x->x_errs, x->x_file,
				    config_line(v), config_col(v),
				    "algorithms: %s wants an HMAC secret of at "
				    "least %zu bytes (RFC 7518 3.2); key_file "
				    "has %zu", jwt_alg_name((enum wsg_jwt_alg)a),
				    min, jwt_key_secret_len(pol->pol_jwt_key));
			continue;
		}
		errors_add(x->x_errs, x->x_file, config_line(v), config_col(v),
		    "algorithm %s cannot be used with %s",
		    jwt_alg_name((enum wsg_jwt_alg)a),
		    config_key_kind(pol->pol_jwt_key));
	}
	free(js.js_key_file);
	if ((jp = pol->pol_jwt = calloc(1, sizeof(*jp))) == NULL) {
		free(js.js_issuer);
		free(js.js_audience);
		config_nomem(x, n);
		return;
	}
	jp->jp_algs = js.js_algs;
	jp->jp_key = pol->pol_jwt_key;
	jp->jp_issuer = js.js_issuer;
	jp->jp_audience = js.js_audience;
	jp->jp_leeway = (int64_t)(js.js_leeway_ms / MS_S);
	jp->jp_required = (const char *const *)pol->pol_required_claims;
	jp->jp_nrequired = pol->pol_nrequired_claims;
}

/* jwt.algorithms: an allow-list of JWS names; "none" never. */
static void
config_jwt_algs(struct config_ctx *x, const struct config_slot *s,
    void *obj, yaml_node_t *n)
{
	struct config_jwt_src	*js = obj;
	yaml_node_item_t	*it;
	yaml_node_t		*v;
	const char		*name;
	char			 all[256];
	size_t			 used = 0;
	int			 a, r;

	if (n == NULL || config_list_count(x, s, n, config_seq_len(n)) == -1)
		return;
	all[0] = '\0';
	for (a = 0; a < WSG_JWT_NALGS && used < sizeof(all); a++) {
		r = snprintf(all + used, sizeof(all) - used, "%s%s",
		    a == 0 ? "" : a + 1 == WSG_JWT_NALGS ? " or " : ", ",
		    jwt_alg_name((enum wsg_jwt_alg)a));
		if (r < 0)
			break;
		used += (size_t)r;
	}
	for (it = n->data.sequence.items.start;
	    it < n->data.sequence.items.top; it++) {
		if ((v = config_item(x, it, "algorithms")) == NULL)
			continue;
		name = config_str(v);
		if (strcasecmp(name, "none") == 0) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "algorithm 'none' is never "
			    "accepted");
			continue;
		}
		if ((a = jwt_alg_parse(name)) < 0 || a >= WSG_JWT_NALGS) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "algorithms: unknown algorithm "
			    "'%s' (use %s)", name, all);
			continue;
		}
		if (js->js_algs & WSG_JWT_ALG_BIT(a)) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "algorithms: '%s' is listed twice",
			    name);
			continue;
		}
		js->js_algs |= WSG_JWT_ALG_BIT(a);
		js->js_alg_node[a] = v;
	}
}

/* Is a claim name usable: 1 to CONFIG_MAX_CLAIM_NAME printable bytes? */
static int
config_claim_ok(const char *c)
{
	size_t	i, len = strlen(c);

	if (len == 0 || len > CONFIG_MAX_CLAIM_NAME)
		return 0;
	for (i = 0; i < len; i++)
		if ((unsigned char)c[i] <= ' ' || (unsigned char)c[i] == 0x7f)
			return 0;
	return 1;
}

/* jwt.required_claims: names that every token must carry. */
static void
config_required_claims(struct config_ctx *x, const struct config_slot *s,
    void *obj, yaml_node_t *n)
{
	struct wsg_policy	*pol = ((struct config_jwt_src *)obj)->js_pol;
	yaml_node_item_t	*it;
	yaml_node_t		*v;
	const char		*c;

	if (n == NULL || config_list_count(x, s, n, config_seq_len(n)) == -1 ||
	    config_seq_len(n) == 0)
		return;
	if ((pol->pol_required_claims = calloc(config_seq_len(n),
	    sizeof(*pol->pol_required_claims))) == NULL) {
		config_nomem(x, n);
		return;
	}
	for (it = n->data.sequence.items.start;
	    it < n->data.sequence.items.top; it++) {
		if ((v = config_item(x, it, "required_claims")) == NULL)
			continue;
		c = config_str(v);
		if (!config_claim_ok(c)) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "required_claims: '%s' is not a "
			    "claim name of 1 to %d printable characters", c,
			    CONFIG_MAX_CLAIM_NAME);
			continue;
		}
		config_add_unique(x, v, "required_claims",
		    pol->pol_required_claims, &pol->pol_nrequired_claims, c);
	}
}

/*
 * Headers the gateway owns on the upstream request: framing, the
 * handshake itself, and the forwarding headers it sets.  A claim may
 * not be copied into them, nor into a name that a CGI-style server reads
 * as one of them ("X_Forwarded_For"), as http_header_is_dropped() keeps
 * such names of the client's from the upstream.
 */
static int
config_header_reserved(const char *h)
{
	static const char *const names[] = {
		"Host", "Connection", "Upgrade", "Content-Length",
		"Transfer-Encoding", "Keep-Alive", "TE", "Trailer",
		"Proxy-Connection", "Forwarded", "X-Real-IP", NULL
	};
	static const char *const prefixes[] = {
		"Sec-WebSocket-", "X-Forwarded-", NULL
	};
	struct wsg_str	name = { h, strlen(h) };
	size_t		i;

	for (i = 0; names[i] != NULL; i++)
		if (http_name_alias(name, names[i]))
			return 1;
	for (i = 0; prefixes[i] != NULL; i++) {
		name.len = strlen(prefixes[i]);
		if (strlen(h) >= name.len && http_name_alias(name, prefixes[i]))
			return 1;
	}
	return 0;
}

/*
 * A claim name of RFC 7519 4.1: as a forward_claims header it is most
 * likely a mapping written the wrong way round ("X-User: sub").
 */
static int
config_claim_registered(const char *h)
{
	static const char *const names[] = {
		"iss", "sub", "aud", "exp", "nbf", "iat", "jti", NULL
	};
	size_t	i;

	for (i = 0; names[i] != NULL; i++)
		if (strcasecmp(h, names[i]) == 0)
			return 1;
	return 0;
}

/* jwt.forward_claims: claim name to upstream request header. */
static void
config_forward_claims(struct config_ctx *x, const struct config_slot *s,
    void *obj, yaml_node_t *n)
{
	struct wsg_policy	*pol = ((struct config_jwt_src *)obj)->js_pol;
	struct wsg_forward_claim *fc;
	yaml_node_pair_t	*p;
	yaml_node_t		*k, *v;
	const char		*c, *h;
	size_t			 i;

	if (n == NULL || config_list_count(x, s, n, config_map_len(n)) == -1 ||
	    config_map_len(n) == 0)
		return;
	if ((pol->pol_forward_claims = calloc(config_map_len(n),
	    sizeof(*pol->pol_forward_claims))) == NULL) {
		config_nomem(x, n);
		return;
	}
	for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	    p++) {
		k = yaml_document_get_node(x->x_doc, p->key);
		v = yaml_document_get_node(x->x_doc, p->value);
		if (k == NULL || v == NULL ||
		    config_expect(x, k, YAML_SCALAR_NODE,
		    "forward_claims") == -1 ||
		    config_expect(x, v, YAML_SCALAR_NODE,
		    "forward_claims") == -1)
			continue;
		c = config_str(k);
		h = config_str(v);
		if (!config_claim_ok(c)) {
			errors_add(x->x_errs, x->x_file, config_line(k),
			    config_col(k), "forward_claims: '%s' is not a "
			    "claim name of 1 to %d printable characters", c,
			    CONFIG_MAX_CLAIM_NAME);
			continue;
		}
		if (!config_is_token(h, WSG_MAX_TOKEN_LEN)) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "forward_claims: '%s' is not an "
			    "HTTP header name of 1 to %d characters", h,
			    WSG_MAX_TOKEN_LEN);
			continue;
		}
		if (config_header_reserved(h)) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "forward_claims: header '%s' is "
			    "set by the gateway and cannot carry a claim", h);
			continue;
		}
		if (config_claim_registered(h))
			errors_warn(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "forward_claims: header '%s' is "
			    "named as a JWT claim: the mapping is claim to "
			    "header, as in 'sub: X-User', so this copies "
			    "claim '%s' into header '%s'", h, c, h);
		/* X-User and X_User are one header to a CGI-style server. */
		for (i = 0; i < pol->pol_nforward_claims; i++) {
			fc = &pol->pol_forward_claims[i];
			if (strcmp(fc->fc_claim, c) == 0 ||
			    http_name_alias((struct wsg_str){ h, strlen(h) },
			    fc->fc_header))
				break;
		}
		if (i < pol->pol_nforward_claims) {
			errors_add(x->x_errs, x->x_file, config_line(k),
			    config_col(k), "forward_claims: claim '%s' or "
			    "header '%s' is used twice", c, h);
			continue;
		}
		fc = &pol->pol_forward_claims[pol->pol_nforward_claims];
		fc->fc_claim = strdup(c);
		fc->fc_header = strdup(h);
		if (fc->fc_claim == NULL || fc->fc_header == NULL) {
			free(fc->fc_claim);
			free(fc->fc_header);
			fc->fc_claim = fc->fc_header = NULL;
			config_nomem(x, k);
			continue;
		}
		pol->pol_nforward_claims++;
	}
}

/* geoip.database: a MaxMind country database, opened now. */
static void
config_geoip_db(struct config_ctx *x, const struct config_slot *s,
    void *obj, yaml_node_t *n)
{
	struct wsg_policy	*pol = obj;
	char			*path, err[256];

	if ((path = config_file_path(x, n, "database")) == NULL)
		return;
	if (config_readable(x, n, "database", path) == 0) {
		err[0] = '\0';
		geoip_close(pol->pol_geoip);
		if ((pol->pol_geoip = geoip_open(path, err,
		    sizeof(err))) == NULL)
			errors_add(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "database: %s", err);
		else if (geoip_ipv4_only(pol->pol_geoip))
			errors_warn(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "database: %s has IPv4 networks "
			    "only: every IPv6 client is unknown", path);
	}
	free(path);
}

/* geoip.allow_countries, deny_countries: ISO 3166-1 alpha-2 codes. */
static void
config_countries(struct config_ctx *x, const struct config_slot *s,
    void *obj, yaml_node_t *n)
{
	const char		*key = config_opt(s)->o_key, *c;
	char			(**arr)[3] = (char (**)[3])(void *)
				    ((char *)obj + s->s_off);
	size_t			*cnt = config_paired_count(obj, s), i;
	yaml_node_item_t	*it;
	yaml_node_t		*v;
	char			 code[3];

	if (n == NULL || config_list_count(x, s, n, config_seq_len(n)) == -1 ||
	    config_seq_len(n) == 0)
		return;
	if ((*arr = calloc(config_seq_len(n), sizeof(**arr))) == NULL) {
		config_nomem(x, n);
		return;
	}
	for (it = n->data.sequence.items.start;
	    it < n->data.sequence.items.top; it++) {
		if ((v = config_item(x, it, key)) == NULL)
			continue;
		c = config_str(v);
		if (strlen(c) == 2) {
			code[0] = (char)toupper((unsigned char)c[0]);
			code[1] = (char)toupper((unsigned char)c[1]);
			code[2] = '\0';
		} else
			code[0] = '\0';
		if (code[0] == '\0' || !geoip_country_code_valid(code)) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "%s: '%s' is not a two-letter "
			    "country code (ISO 3166-1 alpha-2)", key, c);
			continue;
		}
		if (!geoip_country_code_assigned(code))
			errors_warn(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "%s: '%s' is not an ISO 3166-1 "
			    "country code: no address is ever in it%s", key,
			    code, strcmp(code, "UK") == 0 ?
			    " (the United Kingdom is GB)" : "");
		for (i = 0; i < *cnt; i++)
			if (strcmp((*arr)[i], code) == 0)
				break;
		if (i < *cnt) {
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "%s: '%s' is listed twice", key,
			    code);
			continue;
		}
		memcpy((*arr)[(*cnt)++], code, sizeof(code));
	}
}

/* policy.rate_limit: the section turns the limits it names on. */
static void
config_rate_limit(struct config_ctx *x, const struct config_slot *s,
    void *obj, yaml_node_t *n)
{
	struct wsg_policy	*pol = obj;

	if (n == NULL)
		return;
	if ((pol->pol_rate = calloc(1, sizeof(*pol->pol_rate))) == NULL) {
		config_nomem(x, n);
		return;
	}
	config_walk(x, SC_RATE, pol->pol_rate, n, "rate_limit", NULL);
}

/* A {rate, burst} limit; the burst defaults to the rate's amount. */
static void
config_rl_limit(struct config_ctx *x, const struct config_slot *s,
    void *obj, yaml_node_t *n)
{
	struct wsg_rl_limit	*l = (struct wsg_rl_limit *)(void *)
				    ((char *)obj + s->s_off);
	size_t			 nerr = x->x_errs->e_n;

	if (n == NULL)
		return;
	config_walk(x, s->s_sub, l, n, config_opt(s)->o_key, NULL);
	/* Only a burst as written is compared with max_frame_size. */
	if (s->s_sub == SC_RL_BYTES && x->x_errs->e_n == nerr)
		x->x_bytes_node = n;
	if (l->rl_rate.r_amount != 0 && l->rl_burst == 0)
		l->rl_burst = l->rl_rate.r_amount;
}

/*
 * A frame costs its whole length at once, so one larger than the bytes
 * burst is always over the limit: each such frame closes its connection
 * with rate_bytes although max_frame_size allows it.
 */
static void
config_check_bytes_burst(struct config_ctx *x, const struct wsg_policy *pol)
{
	const struct wsg_rl_limit	*l;
	uint64_t			 frame;
	char				 b1[32], b2[32];

	if (pol->pol_rate == NULL || x->x_bytes_node == NULL)
		return;
	l = &pol->pol_rate->rc_bytes;
	frame = pol->pol_max_frame_size < pol->pol_max_message_size ?
	    pol->pol_max_frame_size : pol->pol_max_message_size;
	if (l->rl_rate.r_amount == 0 || l->rl_burst >= frame)
		return;
	config_fmt_size(l->rl_burst, b1, sizeof(b1));
	config_fmt_size(frame, b2, sizeof(b2));
	errors_warn(x->x_errs, x->x_file, config_line(x->x_bytes_node),
	    config_col(x->x_bytes_node), "bytes_per_connection: the burst %s "
	    "is below the largest frame allowed, %s; a frame larger than the "
	    "burst always closes its connection with rate_bytes", b1, b2);
}

/* rate: "10/s", "600/m", "1MiB/s"; the amount within the row's bounds. */
static void
config_rl_rate(struct config_ctx *x, const struct config_slot *s,
    void *obj, yaml_node_t *n)
{
	const struct wsg_option	*o = config_opt(s);
	struct wsg_rl_limit	*l = obj;
	struct wsg_rate		 r;
	const char		*v, *err = NULL;
	char			 max[32];

	if (n == NULL || config_expect(x, n, YAML_SCALAR_NODE, "rate") == -1)
		return;
	v = config_str(n);
	if (units_parse_rate(v, &r, &err) == -1) {
		errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "rate: invalid rate '%s': %s", v, err);
		return;
	}
	/* Only bytes_per_connection counts a size. */
	if (s->s_scope != SC_RL_BYTES &&
	    v + strspn(v, "0123456789") != strchr(v, '/')) {
		errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "rate: invalid rate '%s': the amount is a number of "
		    "events, without a unit", v);
		return;
	}
	if (r.r_amount > o->o_max) {
		if (s->s_scope == SC_RL_BYTES)
			config_fmt_size(o->o_max, max, sizeof(max));
		else
			snprintf(max, sizeof(max), "%llu",
			    (unsigned long long)o->o_max);
		errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "rate: %s is above the maximum %s%s", v, max,
		    strchr(v, '/'));
		return;
	}
	l->rl_rate = r;
}

/* main.rate_limit_store: Redis shares the per-address limits. */
static void
config_rl_store(struct config_ctx *x, const struct config_slot *s,
    void *obj, yaml_node_t *n)
{
	struct wsg_config	*cf = obj;
	struct wsg_store_conf	*sc;
	yaml_node_t		*seen[CONFIG_NOPT], *v;
	const char		*p;
	size_t			 i;

	if (n == NULL)
		return;
	if ((sc = cf->c_store = calloc(1, sizeof(*sc))) == NULL) {
		config_nomem(x, n);
		return;
	}
	config_walk(x, SC_STORE, sc, n, "rate_limit_store", seen);
	v = config_seen_off(seen, SC_STORE, ST(sc_key_prefix));
	if (v == NULL || (p = sc->sc_key_prefix) == NULL)
		return;
	for (i = 0; p[i] != '\0'; i++)
		if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] >= 0x7f)
			break;
	if (p[i] != '\0' || i > WSG_STORE_MAX_PREFIX)
		errors_add(x->x_errs, x->x_file, config_line(v), config_col(v),
		    "key_prefix: '%s' must be 1 to %d printable characters "
		    "without spaces", p, WSG_STORE_MAX_PREFIX);
}

/* rate_limit_store.redis: redis://HOST:PORT/DB or unix:///path?db=N. */
static void
config_redis(struct config_ctx *x, const struct config_slot *s, void *obj,
    yaml_node_t *n)
{
	struct wsg_store_conf	*sc = obj;
	const char		*err = NULL;

	if (n == NULL || config_expect(x, n, YAML_SCALAR_NODE, "redis") == -1)
		return;
	if (store_parse_url(config_str(n), sc, &err) == -1) {
		errors_add(x->x_errs, x->x_file, config_line(n), config_col(n),
		    "redis: invalid URL '%s': %s", config_str(n), err);
		return;
	}
	if ((sc->sc_url = strdup(config_str(n))) == NULL)
		config_nomem(x, n);
}

/*
 * The line and column of a byte offset of fp, counted as libyaml counts
 * its marks: a column is a character, not a byte.
 */
static void
config_offset_mark(FILE *fp, size_t off, size_t *line, size_t *col)
{
	size_t	i;
	int	c;

	*line = 1;
	*col = 1;
	rewind(fp);
	for (i = 0; i < off && (c = getc(fp)) != EOF; i++) {
		if (c == '\n') {
			(*line)++;
			*col = 1;
		} else if ((c & 0xc0) != 0x80)
			(*col)++;
	}
}

/*
 * The byte at a 0-based line and column (in characters) of fp, or EOF:
 * what a scanner error points at.
 */
static int
config_char_at(FILE *fp, size_t line, size_t col)
{
	int	c;

	rewind(fp);
	while (line > 0 && (c = getc(fp)) != EOF)
		if (c == '\n')
			line--;
	if (line > 0)
		return (EOF);
	while ((c = getc(fp)) != EOF && c != '\n') {
		if ((c & 0xc0) == 0x80)
			continue;
		if (col-- == 0)
			return (c);
	}
	return (EOF);
}

/* Report a libyaml parser error at its mark. */
static void
config_yaml_error(struct wsg_errors *errs, const char *file, FILE *fp,
    const yaml_parser_t *p)
{
	size_t	line, col;
	int	tab;

	if (p->error == YAML_MEMORY_ERROR)
		errors_add(errs, file, 0, 0, "out of memory");
	else if (p->error == YAML_READER_ERROR) {
		/* Bad bytes (not UTF-8) have no mark, only an offset. */
		config_offset_mark(fp, p->problem_offset, &line, &col);
		errors_add(errs, file, line, col, "syntax error: %s at byte "
		    "%zu", p->problem != NULL ? p->problem :
		    "unreadable input", p->problem_offset);
	} else {
		/* libyaml names a tab where a token may start only so. */
		tab = p->error == YAML_SCANNER_ERROR && p->problem != NULL &&
		    strstr(p->problem, "tab") == NULL &&
		    config_char_at(fp, p->problem_mark.line,
		    p->problem_mark.column) == '\t';
		errors_add(errs, file, p->problem_mark.line + 1,
		    p->problem_mark.column + 1, "syntax error: %s%s",
		    p->problem != NULL ? p->problem : "unknown",
		    tab ? " (a tab: YAML indents with spaces only)" : "");
	}
}

/*
 * Refuse lists and mappings nested deeper than CONFIG_MAX_DEPTH before
 * libyaml builds the document: its scanner spends time in proportion to
 * the nesting depth on every token, so "[[[[..." of a few hundred KiB
 * would hold -t, or a reload, for minutes.  Walking the events stops at
 * the first level too deep.  A syntax error is left to the loader.
 */
static int
config_check_depth(FILE *fp, const char *file, struct wsg_errors *errs)
{
	yaml_parser_t	 parser;
	yaml_event_t	 ev;
	size_t		 depth = 0;
	int		 rv = 0, done = 0;

	if (!yaml_parser_initialize(&parser)) {
		errors_add(errs, file, 0, 0, "out of memory");
		return -2;
	}
	yaml_parser_set_input_file(&parser, fp);
	while (!done && yaml_parser_parse(&parser, &ev)) {
		switch (ev.type) {
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (++depth > CONFIG_MAX_DEPTH) {
				errors_add(errs, file, ev.start_mark.line + 1,
				    ev.start_mark.column + 1, "lists and "
				    "mappings are nested more than %d deep",
				    CONFIG_MAX_DEPTH);
				rv = -2;
				done = 1;
			}
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			depth--;
			break;
		case YAML_STREAM_END_EVENT:
			done = 1;
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	rewind(fp);
	return rv;
}

/*
 * A scalar with a NUL byte ("a\0b" in double quotes) would be read as
 * the text before it, so "10.0.0.0/8\0 junk" or a key "workers\0x"
 * would pass for something else.  Report each one.
 */
static int
config_check_nul(yaml_document_t *doc, const char *file,
    struct wsg_errors *errs)
{
	yaml_node_t	*n;
	int		 rv = 0;

	for (n = doc->nodes.start; n < doc->nodes.top; n++) {
		if (n->type != YAML_SCALAR_NODE ||
		    strlen((const char *)n->data.scalar.value) ==
		    n->data.scalar.length)
			continue;
		errors_add(errs, file, n->start_mark.line + 1,
		    n->start_mark.column + 1, "a value or key must not "
		    "contain a NUL byte");
		rv = -2;
	}
	return rv;
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
	struct stat	 st;
	FILE		*fp;
	int		 rv = 0;

	if ((fp = fopen(file, "r")) == NULL)
		return -1;
	/* fopen() takes a directory; reading it would be a YAML error. */
	if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(fp);
		errno = EISDIR;
		return -1;
	}
	if (config_check_depth(fp, file, errs) == -2) {
		fclose(fp);
		return -2;
	}
	if (!yaml_parser_initialize(&parser)) {
		fclose(fp);
		errors_add(errs, file, 0, 0, "out of memory");
		return -2;
	}
	yaml_parser_set_input_file(&parser, fp);
	if (!yaml_parser_load(&parser, doc)) {
		config_yaml_error(errs, file, fp, &parser);
		rv = -2;
	} else if (yaml_document_get_root_node(doc) != NULL) {
		if (!yaml_parser_load(&parser, &extra)) {
			config_yaml_error(errs, file, fp, &parser);
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
		if (rv == 0)
			rv = config_check_nul(doc, file, errs);
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
	config_check_bytes_burst(&x, pol);
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
	/* Requests with such a path get 400 before routing. */
	if (http_path_ambiguous(path, len))
		errors_warn(x->x_errs, x->x_file, config_line(n),
		    config_col(n), "path: '%s' never matches: a request path "
		    "with '//', ';', '\\', a dot segment or an encoded '/' or "
		    "unreserved character is refused with 400", path);
	if ((rt->rt_path = strdup(path)) == NULL) {
		config_nomem(x, n);
		return -1;
	}
	rt->rt_path_len = len;
	return 0;
}

/*
 * First match wins, so a route that an earlier one of its listener
 * already takes is never used: the same path twice is an error, a path
 * under an earlier prefix a warning.
 */
static int
config_route_shadowed(struct config_ctx *x,
    const struct wsg_listener_conf *lc, const struct wsg_route *rt,
    const yaml_node_t *n)
{
	const struct wsg_route	*o;
	size_t			 i;

	for (i = 0; i < lc->lc_nroutes; i++) {
		o = &lc->lc_routes[i];
		if (o->rt_prefix == rt->rt_prefix &&
		    strcmp(o->rt_path, rt->rt_path) == 0) {
			errors_add(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "path: '%s' is routed twice in "
			    "listener '%s'", rt->rt_path, lc->lc_name != NULL ?
			    lc->lc_name : "");
			return -1;
		}
		if (!o->rt_prefix)
			continue;
		if ((rt->rt_path_len >= o->rt_path_len &&
		    memcmp(rt->rt_path, o->rt_path, o->rt_path_len) == 0) ||
		    (!rt->rt_prefix && rt->rt_path_len + 1 == o->rt_path_len &&
		    memcmp(rt->rt_path, o->rt_path, rt->rt_path_len) == 0)) {
			errors_warn(x->x_errs, x->x_file, config_line(n),
			    config_col(n), "path: '%s' never matches: '%s' "
			    "above takes it first", rt->rt_path, o->rt_path);
			return 0;
		}
	}
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
			if (config_route_shadowed(x, lc, rt,
			    seen[ipath]) == -1) {
				free(rt->rt_path);
				memset(rt, 0, sizeof(*rt));
			} else {
				lc->lc_nroutes++;
				pd->pd_route = rt;
			}
		}
		pd->pd_path = src.rs_path;
		pd->pd_upstream = src.rs_upstream;
		pd->pd_policy = src.rs_policy;
		pd->pd_upstream_node = seen[iup];
		pd->pd_policy_node = seen[ipol] != NULL ? seen[ipol] : v;
	}
}

/*
 * A browser-facing (TLS) route without an origin check lets any web page
 * open it with the user's cookies: cross-site WebSocket hijacking.  Legal
 * for non-browser clients, so a warning.  Not for a route that asks for a
 * JWT: a page of another site holds no token of the user's, and a browser
 * sends none by itself.
 */
static void
config_warn_origin(struct config_ctx *x, const struct config_pending *pd,
    const struct wsg_policy *pol)
{
	const struct wsg_listener_conf	*lc;
	const yaml_node_t		*n;
	size_t				 i;

	/* A token in a cookie is one the browser sends by itself, though. */
	if (pol == NULL || pol->pol_origin != NULL || (pol->pol_jwt != NULL &&
	    !http_name_alias((struct wsg_str){ "Cookie", 6 },
	    pol->pol_auth_header)))
		return;
	for (i = 0; i < x->x_cf->c_nlisteners; i++) {
		lc = &x->x_cf->c_listeners[i];
		/* A listener without routes has lc_routes NULL: no NULL + 0. */
		if (lc->lc_nroutes == 0 || pd->pd_route < lc->lc_routes ||
		    pd->pd_route >= lc->lc_routes + lc->lc_nroutes)
			continue;
		if (!lc->lc_tls)
			return;
		n = pd->pd_policy_node != NULL ? pd->pd_policy_node :
		    pd->pd_upstream_node;
		errors_warn(x->x_errs, x->x_file, config_line(n),
		    config_col(n), "route %s on TLS listener '%s': policy "
		    "'%s' has no origin check, so any web page can open it",
		    pd->pd_path != NULL ? pd->pd_path : "?", lc->lc_name,
		    pol->pol_name);
		return;
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
			config_warn_origin(x, pd, pol);
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
		free(lc->lc_client_ca);
		free(lc->lc_trusted_proxies);
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
	if (cf->c_ticket_secret != NULL) {
		OPENSSL_cleanse(cf->c_ticket_secret, cf->c_ticket_secret_len);
		free(cf->c_ticket_secret);
	}
	free(cf->c_error_log);
	free(cf->c_access_log);
	free(cf->c_policies_dir);
	free(cf->c_admin_listen);
	free(cf->c_user);
	store_conf_free(cf->c_store);
	free(cf);
}

/* Is an address the wildcard of its family (0.0.0.0 or ::)? */
static int
config_is_any(const struct sockaddr_storage *ss)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;

	if (ss->ss_family == AF_INET) {
		sin = (const struct sockaddr_in *)(const void *)ss;
		return sin->sin_addr.s_addr == htonl(INADDR_ANY);
	}
	sin6 = (const struct sockaddr_in6 *)(const void *)ss;
	return ss->ss_family == AF_INET6 &&
	    IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
}

/* The port of an AF_INET or AF_INET6 address. */
static uint16_t
config_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)(const void *)ss)->sin_port;
	return ((const struct sockaddr_in6 *)(const void *)ss)->sin6_port;
}

/*
 * Would the admin socket (SO_REUSEADDR, dual-stack when IPv6) fail to bind
 * beside a listener's (SO_REUSEPORT, IPV6_V6ONLY)?  Same port and the same
 * address, or a wildcard on either side that covers the other.
 */
static int
config_admin_clash(const struct sockaddr_storage *admin,
    const struct sockaddr_storage *ls)
{
	struct sockaddr_storage	 mapped;
	const struct sockaddr_storage *ad = &mapped;
	char			 a1[64], a2[64];

	config_unmap(admin, &mapped);
	if (config_port(ad) != config_port(ls))
		return 0;
	if (ad->ss_family == ls->ss_family) {
		if (config_is_any(ad) || config_is_any(ls))
			return 1;
		units_format_addr((const struct sockaddr *)ad, a1, sizeof(a1));
		units_format_addr((const struct sockaddr *)ls, a2, sizeof(a2));
		return strcmp(a1, a2) == 0;
	}
	/* A dual-stack [::] admin socket takes the IPv4 port as well. */
	return ad->ss_family == AF_INET6 && config_is_any(ad);
}

/* The admin listener may not take the address of a listener. */
static void
config_check_admin(struct config_ctx *x)
{
	struct wsg_config	*cf = x->x_cf;
	const struct wsg_listener_conf *lc;
	yaml_node_t		*v = x->x_admin_node;
	char			 a1[64];
	size_t			 i;

	if (!cf->c_has_admin)
		return;
	units_format_addr((struct sockaddr *)&cf->c_admin_addr, a1,
	    sizeof(a1));
	for (i = 0; i < cf->c_nlisteners; i++) {
		lc = &cf->c_listeners[i];
		if (lc->lc_listen == NULL)
			continue;
		if (config_admin_clash(&cf->c_admin_addr, &lc->lc_addr))
			errors_add(x->x_errs, x->x_file, config_line(v),
			    config_col(v), "listen: %s is already used by "
			    "listener '%s'", a1, lc->lc_name != NULL ?
			    lc->lc_name : "");
	}
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
	config_check_admin(&x);
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
