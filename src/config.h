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
};

struct wsg_server {
	char			*srv_name;	/* as written, "127.0.0.1:9001" */
	struct sockaddr_storage	 srv_addr;
	socklen_t		 srv_addrlen;
	int			 srv_active;	/* runtime, atomic: sessions */
};

struct wsg_upstream {
	char		 *up_name;
	struct wsg_server *up_servers;
	size_t		  up_nservers;
	enum wsg_balance  up_balance;
	uint64_t	  up_connect_timeout_ms;
	unsigned int	  up_rr;	/* runtime, atomic: next server */
};

struct wsg_route {
	char		 *rt_path;	/* without the trailing "*" */
	size_t		  rt_path_len;
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
	struct wsg_route	*lc_routes;
	size_t			 lc_nroutes;
};

struct wsg_config {
	int			  c_refcnt;	/* atomic */
	char			 *c_file;
	int			  c_workers;	/* 0 = auto */
	uint64_t		  c_shutdown_timeout_ms;
	enum wsg_log_level	  c_log_level;
	char			 *c_error_log;	/* "stderr", "syslog" or a path */
	char			 *c_access_log;	/* "stdout", "off" or a path */
	char			 *c_policies_dir;	/* absolute */
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
	WSG_OPT_ADDR
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
