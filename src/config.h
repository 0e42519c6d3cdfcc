/*
 * Configuration generations.  config_load() reads the main YAML file and
 * every policy, certificate and key it names, validates all of it, and
 * returns an immutable, reference-counted generation.  Sessions hold a
 * reference to the generation they started with.
 */
#ifndef WSG_CONFIG_H
#define WSG_CONFIG_H

#include <sys/socket.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "errors.h"
#include "units.h"

struct wsg_cidr;
struct wsg_geoip;
struct wsg_jwt_key;
struct wsg_jwt_policy;
struct wsg_origin_policy;
struct wsg_ratelimit_conf;
struct wsg_regex;
struct wsg_store_conf;

/* forward_claims: a JWT claim copied into an upstream request header. */
struct wsg_forward_claim {
	char		*fc_claim;
	char		*fc_header;
};

enum wsg_log_level {
	WSG_LOG_ERROR = 0,
	WSG_LOG_WARN,
	WSG_LOG_INFO,
	WSG_LOG_DEBUG
};

enum wsg_balance {
	WSG_BALANCE_ROUND_ROBIN = 0,
	WSG_BALANCE_LEAST_CONN
};

/* One policies/NAME.yaml. */
struct wsg_policy {
	char		 *pol_name;
	char		 *pol_file;
	/* frames */
	uint64_t	  pol_max_frame_size;
	uint64_t	  pol_max_message_size;
	int		  pol_validate_utf8;
	int		  pol_allow_binary;
	/* subprotocols: has_ is 0 when the section is absent (no filter) */
	int		  pol_has_subprotocols;
	char		**pol_subprotocols;
	size_t		  pol_nsubprotocols;
	/* timeouts */
	uint64_t	  pol_idle_timeout_ms;
	/* origin: NULL when the section is absent (no check) */
	struct wsg_origin_policy *pol_origin;
	/* auth: NULL when the section is absent */
	struct wsg_jwt_policy *pol_jwt;		/* jp_key = pol_jwt_key */
	struct wsg_jwt_key *pol_jwt_key;
	char		 *pol_auth_header;	/* default "Authorization" */
	char		 *pol_auth_query_param;	/* NULL: none */
	char		**pol_required_claims;	/* jp_required points here */
	size_t		  pol_nrequired_claims;
	struct wsg_forward_claim *pol_forward_claims;
	size_t		  pol_nforward_claims;
	int		  pol_expiry_close;	/* on_expiry: close (1) */
	/* ip */
	struct wsg_cidr	 *pol_ip_allow;
	size_t		  pol_nip_allow;
	struct wsg_cidr	 *pol_ip_deny;
	size_t		  pol_nip_deny;
	/* geoip: pol_geoip NULL when the section is absent */
	struct wsg_geoip *pol_geoip;
	char		(*pol_geo_allow)[3];	/* "DE", ... */
	size_t		  pol_ngeo_allow;
	char		(*pol_geo_deny)[3];
	size_t		  pol_ngeo_deny;
	int		  pol_geo_unknown_allow;	/* unknown: allow (1) */
	/* messages */
	struct wsg_regex **pol_deny_regex;
	size_t		  pol_ndeny_regex;
	/* rate_limit: NULL when the section is absent (no limits) */
	struct wsg_ratelimit_conf *pol_rate;
};

struct wsg_server {
	char			*srv_name;	/* as written, "127.0.0.1:9001" */
	struct sockaddr_storage	 srv_addr;
	socklen_t		 srv_addrlen;
	int			 srv_active;	/* runtime, atomic: sessions */
	/* runtime, atomic: CLOCK_MONOTONIC ms it is skipped until */
	uint64_t		 srv_down_until;
};

struct wsg_upstream {
	char		 *up_name;
	struct wsg_server *up_servers;
	size_t		  up_nservers;
	enum wsg_balance  up_balance;
	uint64_t	  up_connect_timeout_ms;
	uint64_t	  up_fail_timeout_ms;	/* 0: never skip a server */
	unsigned int	  up_rr;	/* runtime, atomic: next server */
};

struct wsg_route {
	char		 *rt_path;	/* as written, with its final "*" */
	size_t		  rt_path_len;	/* what is matched: without the "*" */
	int		  rt_prefix;	/* written as "/x/" then "*" */
	struct wsg_upstream *rt_upstream;
	struct wsg_policy *rt_policy;
};

struct wsg_listener_conf {
	char			*lc_name;
	char			*lc_listen;	/* as written */
	struct sockaddr_storage	 lc_addr;
	socklen_t		 lc_addrlen;
	int			 lc_tls;
	char			*lc_cert_file;	/* absolute after loading */
	char			*lc_key_file;
	int			 lc_tls_min_version;	/* TLS1_2_VERSION ... */
	SSL_CTX			*lc_ssl_ctx;	/* built by tls_ctx_new() */
	uint64_t		 lc_handshake_timeout_ms;
	uint64_t		 lc_max_header_bytes;
	char			*lc_client_ca;	/* NULL: no mTLS */
	int			 lc_proxy_protocol;
	uint64_t		 lc_max_pending_per_ip;	/* 0: no cap */
	struct wsg_cidr		*lc_trusted_proxies;
	size_t			 lc_ntrusted_proxies;
	struct wsg_route	*lc_routes;
	size_t			 lc_nroutes;
};

struct wsg_config {
	int			  c_refcnt;	/* atomic */
	char			 *c_file;
	int			  c_workers;	/* 0 = auto */
	uint64_t		  c_shutdown_timeout_ms;
	uint64_t		  c_busy_poll_ms;	/* 0 = sleep at once */
	enum wsg_log_level	  c_log_level;
	char			 *c_error_log;	/* "stderr", "syslog" or a path */
	char			 *c_access_log;	/* "stdout", "off" or a path */
	char			 *c_policies_dir;	/* absolute */
	int			  c_has_admin;
	char			 *c_admin_listen;
	struct sockaddr_storage	  c_admin_addr;
	socklen_t		  c_admin_addrlen;
	char			 *c_user;	/* NULL: keep privileges */
	unsigned char		 *c_ticket_secret;	/* NULL: random keys */
	size_t			  c_ticket_secret_len;
	uint64_t		  c_max_connections;	/* 0: no cap */
	uint64_t		  c_rl_max_entries;	/* rate_limit_table */
	uint64_t		  c_rl_idle_ms;
	struct wsg_store_conf	 *c_store;	/* NULL: limits are local */
	struct wsg_listener_conf *c_listeners;
	size_t			  c_nlisteners;
	struct wsg_upstream	**c_upstreams;
	size_t			  c_nupstreams;
	struct wsg_policy	**c_policies;
	size_t			  c_npolicies;
};

/*
 * The option table: every key the loaders know, with its type, default,
 * minimum and maximum.  Exported so the man-page test can check that each
 * one is documented.
 */
enum wsg_opt_type {
	WSG_OPT_STRING,
	WSG_OPT_BOOL,
	WSG_OPT_DURATION,
	WSG_OPT_SIZE,
	WSG_OPT_INT,
	WSG_OPT_ENUM,
	WSG_OPT_LIST,
	WSG_OPT_MAP,
	WSG_OPT_ADDR,
	WSG_OPT_RATE		/* min, max: of the amount */
};

struct wsg_option {
	const char		*o_scope;	/* "main", "log", "listener",
						   "listener.tls", "route",
						   "upstream", "policy.frames",
						   "policy", "policy.timeouts" */
	const char		*o_key;
	enum wsg_opt_type	 o_type;
	const char		*o_default;	/* as the man page shows it; NULL
						   when required or none */
	uint64_t		 o_min;
	uint64_t		 o_max;
	const char *const	*o_enum;	/* NULL-terminated, for ENUM */
	const char		*o_man;		/* "wsgate.yaml.5" or
						   "wsgate-policy.5" */
};

extern const struct wsg_option	config_options[];
extern const size_t		config_noptions;

/*
 * Load and validate a whole generation.  Every problem found is added to
 * errs as "FILE:LINE:COL: message"; returns NULL if there was any.
 * Warnings about risky but legal settings go to errs too (errors_warn).
 */
struct wsg_config	*config_load(const char *, struct wsg_errors *);

/*
 * Load one policy file on its own (the tests load every example this way).
 * Returns NULL and adds to errs on any error.
 */
struct wsg_policy	*config_load_policy(const char *, const char *,
			    struct wsg_errors *);
void			 config_free_policy(struct wsg_policy *);

struct wsg_config	*config_ref(struct wsg_config *);
void			 config_unref(struct wsg_config *);

/*
 * The route of a listener that matches an (undecoded) request path: exact
 * routes by equality, "/x/" + "*" routes by prefix "/x/" (and "/x" itself);
 * first match in file order wins.  NULL: no route.
 */
const struct wsg_route	*config_route_match(const struct wsg_listener_conf *,
			    const char *, size_t);

#endif /* WSG_CONFIG_H */
