/*
 * Unit tests of the config loader: good files load with the values and
 * defaults they should have; each bad file gives exactly the errors, with
 * file, line and column, that an operator would read; every option is in
 * its man page.
 */
#include "autoconf.h"

#include <sys/stat.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <unistd.h>

#include "cidr.h"
#include "config.h"
#include "geoip.h"
#include "jwt.h"
#include "origin.h"
#include "ratelimit.h"
#include "regex.h"
#include "store.h"
#include "unit.h"

static const char	*top;
static char		 cfgdir[1024];	/* as given to the loader */
static char		 absdir[1024];	/* as the loader makes it */

/* Fill the fixture folder names, relative and absolute. */
static void
secret_only(const char *name)
{
	char	path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", cfgdir, name);
	if (chmod(path, 0600) == -1) {
		fprintf(stderr, "chmod %s: %s\n", path, strerror(errno));
		exit(2);
	}
}

static void
setup_dirs(void)
{
	char		 cwd[512];
	const char	*t;

	if ((top = getenv("top_srcdir")) == NULL || *top == '\0')
		top = ".";
	snprintf(cfgdir, sizeof(cfgdir), "%s/tests/unit/configs", top);
	if (top[0] == '/')
		snprintf(absdir, sizeof(absdir), "%s", cfgdir);
	else {
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			exit(2);
		for (t = top; t[0] == '.' && t[1] == '/'; t += 2)
			;
		if (strcmp(t, ".") == 0 || *t == '\0')
			snprintf(absdir, sizeof(absdir),
			    "%s/tests/unit/configs", cwd);
		else
			snprintf(absdir, sizeof(absdir),
			    "%s/%s/tests/unit/configs", cwd, t);
	}
	/*
	 * A checkout's files have the mode its umask gives, and a secret
	 * every user can read draws a warning: the fixture secrets are the
	 * owner's alone, so that the warnings counted below are the same
	 * in every checkout.
	 */
	secret_only("server.key");
	secret_only("policies/keys/hmac.key");
}

/* A fixture's path as given to the loader. */
static const char *
fixture(const char *name)
{
	static char	buf[4][PATH_MAX];
	static int	i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", cfgdir, name);
	return buf[i];
}

/* Replace each "{dir}" of a pattern by the absolute fixture folder. */
static void
expand(const char *pat, char *out, size_t len)
{
	const char	*p;
	size_t		 used = 0;

	out[0] = '\0';
	while ((p = strstr(pat, "{dir}")) != NULL && used < len) {
		used += (size_t)snprintf(out + used, len - used, "%.*s%s",
		    (int)(p - pat), pat, absdir);
		pat = p + 5;
	}
	if (used < len)
		snprintf(out + used, len - used, "%s", pat);
}

/*
 * Load a bad file and compare every error with the expected list: each
 * expected string is "LINE:COL: message" after the file name, or starts
 * with '/' to be a whole message of another file.
 */
static void
check_bad(const char *name, const char *const *want)
{
	struct wsg_errors	 e;
	struct wsg_config	*cf;
	const char		*file = fixture(name);
	char			 full[2 * PATH_MAX];
	size_t			 i, n;

	memset(&e, 0, sizeof(e));
	cf = config_load(file, &e);
	CHECK(cf == NULL);
	config_unref(cf);
	for (n = 0; want[n] != NULL; n++)
		;
	CHECK_INT(e.e_n, n);
	for (i = 0; i < n && i < e.e_n; i++) {
		if (want[i][0] == '/')
			snprintf(full, sizeof(full), "%s%s", absdir, want[i]);
		else
			snprintf(full, sizeof(full), "%s:%s", file, want[i]);
		CHECK_STR(e.e_msgs[i], full);
	}
	for (; i < e.e_n; i++)
		fprintf(stderr, "  unexpected: %s\n", e.e_msgs[i]);
	errors_free(&e);
}

/*
 * Load a lone policy of the fixture folder and compare its errors and its
 * warnings with the lists ("LINE:COL: message", "{dir}" standing for the
 * absolute fixture folder).  want NULL: the policy must load.
 */
static void
check_policy(const char *name, const char *const *want,
    const char *const *warns)
{
	struct wsg_errors	 e;
	struct wsg_policy	*pol;
	char			 file[PATH_MAX], msg[2 * PATH_MAX];
	char			 full[3 * PATH_MAX];
	size_t			 i, n = 0, nw = 0;

	snprintf(file, sizeof(file), "%s/policies/%s", cfgdir, name);
	memset(&e, 0, sizeof(e));
	pol = config_load_policy(NULL, file, &e);
	if (want != NULL)
		for (n = 0; want[n] != NULL; n++)
			;
	if (warns != NULL)
		for (nw = 0; warns[nw] != NULL; nw++)
			;
	CHECK(want == NULL ? pol != NULL : pol == NULL);
	CHECK_INT(e.e_n, n);
	for (i = 0; i < n && i < e.e_n; i++) {
		expand(want[i], msg, sizeof(msg));
		snprintf(full, sizeof(full), "%s:%s", file, msg);
		CHECK_STR(e.e_msgs[i], full);
	}
	for (; i < e.e_n; i++)
		fprintf(stderr, "  unexpected: %s\n", e.e_msgs[i]);
	CHECK_INT(e.e_nwarnings, nw);
	for (i = 0; i < nw && i < e.e_nwarnings; i++) {
		expand(warns[i], msg, sizeof(msg));
		snprintf(full, sizeof(full), "%s:%s", file, msg);
		CHECK_STR(e.e_warnings[i], full);
	}
	for (; i < e.e_nwarnings; i++)
		fprintf(stderr, "  unexpected: %s\n", e.e_warnings[i]);
	config_free_policy(pol);
	errors_free(&e);
}

/* Does a string end with a suffix? */
static int
ends_with(const char *s, const char *suffix)
{
	size_t	ls, lx;

	if (s == NULL)
		return 0;
	ls = strlen(s);
	lx = strlen(suffix);
	return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

/* Find a policy of a generation by name. */
static const struct wsg_policy *
find_policy(const struct wsg_config *cf, const char *name)
{
	size_t	i;

	for (i = 0; i < cf->c_npolicies; i++)
		if (strcmp(cf->c_policies[i]->pol_name, name) == 0)
			return cf->c_policies[i];
	return NULL;
}

/* The index of a route a path matches, or -1. */
static int
route_index(const struct wsg_listener_conf *lc, const char *path)
{
	const struct wsg_route	*rt;

	rt = config_route_match(lc, path, strlen(path));
	return rt == NULL ? -1 : (int)(rt - lc->lc_routes);
}

/* The complete fixture: every value read and every path resolved. */
static void
test_good(void)
{
	struct wsg_errors	 e;
	struct wsg_config	*cf;
	struct wsg_listener_conf *lc;
	const struct wsg_policy	*pol;
	char			 buf[PATH_MAX];

	memset(&e, 0, sizeof(e));
	cf = config_load(fixture("good.yaml"), &e);
	CHECK(cf != NULL);
	CHECK_INT(e.e_n, 0);
	/*
	 * /chat/admin comes after the /chat prefix, which takes it first;
	 * its TLS listener's routes have no origin check: warned, not
	 * refused.
	 */
	CHECK_INT(e.e_nwarnings, 4);
	if (e.e_nwarnings == 4) {
		CHECK(strstr(e.e_warnings[0], ":41:15: warning: path: "
		    "'/chat/admin' never matches: '/chat/*' above takes it "
		    "first") != NULL);
		CHECK(strstr(e.e_warnings[1], ": warning: route ") != NULL &&
		    strstr(e.e_warnings[1], "has no origin check, so any web "
		    "page can open it") != NULL);
	}
	errors_free(&e);
	if (cf == NULL)
		return;
	CHECK_INT(cf->c_refcnt, 1);
	CHECK_INT(cf->c_workers, 4);
	CHECK_STR(cf->c_user, "root");
	CHECK_INT(cf->c_max_connections, 5000);
	CHECK_INT(cf->c_has_admin, 1);
	CHECK_STR(cf->c_admin_listen, "127.0.0.1:9180");
	CHECK_INT(cf->c_admin_addr.ss_family, AF_INET);
	CHECK_INT(ntohs(((struct sockaddr_in *)&cf->c_admin_addr)->sin_port),
	    9180);
	CHECK_INT(cf->c_admin_addrlen, sizeof(struct sockaddr_in));
	CHECK_INT(cf->c_shutdown_timeout_ms, 60000);
	CHECK_INT(cf->c_log_level, WSG_LOG_DEBUG);
	snprintf(buf, sizeof(buf), "%s/logs/error.log", absdir);
	CHECK_STR(cf->c_error_log, buf);
	CHECK_STR(cf->c_access_log, "off");
	snprintf(buf, sizeof(buf), "%s/policies", absdir);
	CHECK_STR(cf->c_policies_dir, buf);

	CHECK_INT(cf->c_nupstreams, 2);
	CHECK_STR(cf->c_upstreams[0]->up_name, "chat");
	CHECK_INT(cf->c_upstreams[0]->up_nservers, 3);
	CHECK_STR(cf->c_upstreams[0]->up_servers[1].srv_name, "[::1]:9002");
	CHECK_INT(cf->c_upstreams[0]->up_servers[1].srv_addr.ss_family,
	    AF_INET6);
	CHECK_INT(cf->c_upstreams[0]->up_servers[2].srv_addr.ss_family,
	    AF_INET);
	CHECK_INT(cf->c_upstreams[0]->up_balance, WSG_BALANCE_LEAST_CONN);
	CHECK_INT(cf->c_upstreams[0]->up_connect_timeout_ms, 250);
	CHECK_INT(cf->c_upstreams[0]->up_fail_timeout_ms, 0);
	CHECK_STR(cf->c_upstreams[1]->up_name, "echo");
	CHECK_INT(cf->c_upstreams[1]->up_nservers, 1);
	CHECK_INT(cf->c_upstreams[1]->up_balance, WSG_BALANCE_ROUND_ROBIN);
	CHECK_INT(cf->c_upstreams[1]->up_connect_timeout_ms, 5000);
	CHECK_INT(cf->c_upstreams[1]->up_fail_timeout_ms, 10000);

	CHECK_INT(cf->c_nlisteners, 2);
	lc = &cf->c_listeners[0];
	CHECK_STR(lc->lc_name, "public");
	CHECK_STR(lc->lc_listen, "127.0.0.1:8443");
	CHECK_INT(lc->lc_addr.ss_family, AF_INET);
	CHECK_INT(lc->lc_tls, 1);
	snprintf(buf, sizeof(buf), "%s/server.pem", absdir);
	CHECK_STR(lc->lc_cert_file, buf);
	snprintf(buf, sizeof(buf), "%s/server.key", absdir);
	CHECK_STR(lc->lc_key_file, buf);
	CHECK_INT(lc->lc_tls_min_version, TLS1_3_VERSION);
	snprintf(buf, sizeof(buf), "%s/server.pem", absdir);
	CHECK_STR(lc->lc_client_ca, buf);
	CHECK(lc->lc_ssl_ctx != NULL);
	CHECK_INT(lc->lc_proxy_protocol, 1);
	CHECK_INT(lc->lc_ntrusted_proxies, 3);
	if (lc->lc_ntrusted_proxies == 3) {
		CHECK_INT(lc->lc_trusted_proxies[0].c_family, AF_INET);
		CHECK_INT(lc->lc_trusted_proxies[0].c_prefix, 8);
		CHECK_INT(lc->lc_trusted_proxies[0].c_addr[0], 10);
		CHECK_INT(lc->lc_trusted_proxies[1].c_family, AF_INET6);
		CHECK_INT(lc->lc_trusted_proxies[1].c_prefix, 128);
		CHECK_INT(lc->lc_trusted_proxies[2].c_prefix, 24);
	}
	CHECK_INT(lc->lc_handshake_timeout_ms, 5000);
	CHECK_INT(lc->lc_max_header_bytes, 16384);
	CHECK_INT(lc->lc_max_pending_per_ip, 32);
	CHECK_INT(lc->lc_nroutes, 3);
	CHECK_STR(lc->lc_routes[0].rt_path, "/chat/*");
	CHECK_INT(lc->lc_routes[0].rt_path_len, 6);
	CHECK_INT(lc->lc_routes[0].rt_prefix, 1);
	CHECK(lc->lc_routes[0].rt_upstream == cf->c_upstreams[0]);
	CHECK(lc->lc_routes[0].rt_policy == find_policy(cf, "chat"));
	CHECK_STR(lc->lc_routes[1].rt_path, "/echo");
	CHECK_INT(lc->lc_routes[1].rt_prefix, 0);
	CHECK(lc->lc_routes[1].rt_upstream == cf->c_upstreams[1]);
	CHECK(lc->lc_routes[1].rt_policy == find_policy(cf, "default"));
	CHECK(lc->lc_routes[2].rt_policy == lc->lc_routes[0].rt_policy);

	/* First match wins; a prefix route also matches its bare folder. */
	CHECK_INT(route_index(lc, "/chat"), 0);
	CHECK_INT(route_index(lc, "/chat/"), 0);
	CHECK_INT(route_index(lc, "/chat/room/1"), 0);
	CHECK_INT(route_index(lc, "/chat/admin"), 0);
	CHECK_INT(route_index(lc, "/chatty"), -1);
	CHECK_INT(route_index(lc, "/cha"), -1);
	CHECK_INT(route_index(lc, "/echo"), 1);
	CHECK_INT(route_index(lc, "/echo?x=1"), 1);
	CHECK_INT(route_index(lc, "/echo/"), -1);
	CHECK_INT(route_index(lc, "/ECHO"), -1);
	CHECK_INT(route_index(lc, ""), -1);
	CHECK_INT(route_index(lc, "/"), -1);
	CHECK(config_route_match(lc, "/echoXYZ", 5) == &lc->lc_routes[1]);

	lc = &cf->c_listeners[1];
	CHECK_STR(lc->lc_name, "plain");
	CHECK_INT(lc->lc_addr.ss_family, AF_INET6);
	CHECK_INT(lc->lc_tls, 0);
	CHECK(lc->lc_ssl_ctx == NULL);
	CHECK(lc->lc_client_ca == NULL);
	CHECK_INT(lc->lc_proxy_protocol, 0);
	CHECK_INT(lc->lc_ntrusted_proxies, 0);
	CHECK_INT(lc->lc_handshake_timeout_ms, 10000);
	CHECK_INT(lc->lc_max_header_bytes, 8192);
	CHECK_INT(lc->lc_max_pending_per_ip, 0);
	CHECK_INT(route_index(lc, "/"), 0);
	CHECK_INT(route_index(lc, "/anything/at/all"), 0);

	CHECK_INT(cf->c_npolicies, 2);
	pol = find_policy(cf, "chat");
	CHECK(pol != NULL);
	if (pol != NULL) {
		snprintf(buf, sizeof(buf), "%s/policies/chat.yaml", absdir);
		CHECK_STR(pol->pol_file, buf);
		CHECK_INT(pol->pol_max_frame_size, 16384);
		CHECK_INT(pol->pol_max_message_size, 262144);
		CHECK_INT(pol->pol_validate_utf8, 1);
		CHECK_INT(pol->pol_allow_binary, 0);
		CHECK_INT(pol->pol_has_subprotocols, 1);
		CHECK_INT(pol->pol_nsubprotocols, 2);
		CHECK_STR(pol->pol_subprotocols[0], "chat.v2");
		CHECK_STR(pol->pol_subprotocols[1], "chat.v1");
		CHECK_INT(pol->pol_idle_timeout_ms, 90000);
		CHECK(pol->pol_origin == NULL);
		CHECK(pol->pol_jwt == NULL);
	}

	/* Sessions hold references; the last unref frees. */
	CHECK(config_ref(cf) == cf);
	CHECK_INT(cf->c_refcnt, 2);
	config_unref(cf);
	CHECK_INT(cf->c_refcnt, 1);
	config_unref(cf);
}

/* The smallest valid file gets every default from the table. */
static void
test_defaults(void)
{
	struct wsg_errors	 e;
	struct wsg_config	*cf;
	const struct wsg_policy	*pol;

	memset(&e, 0, sizeof(e));
	cf = config_load(fixture("minimal.yaml"), &e);
	CHECK(cf != NULL);
	CHECK_INT(e.e_n, 0);
	errors_free(&e);
	if (cf == NULL)
		return;
	CHECK_INT(cf->c_workers, 0);
	CHECK_INT(cf->c_shutdown_timeout_ms, 30000);
	CHECK_INT(cf->c_busy_poll_ms, 0);
	CHECK_INT(cf->c_log_level, WSG_LOG_INFO);
	CHECK_STR(cf->c_error_log, "stderr");
	CHECK_STR(cf->c_access_log, "stdout");
	CHECK(cf->c_user == NULL);
	CHECK_INT(cf->c_max_connections, 0);
	CHECK_INT(cf->c_has_admin, 0);
	CHECK(cf->c_admin_listen == NULL);
	CHECK_INT(cf->c_listeners[0].lc_proxy_protocol, 0);
	CHECK_INT(cf->c_listeners[0].lc_ntrusted_proxies, 0);
	CHECK(cf->c_listeners[0].lc_trusted_proxies == NULL);
	CHECK(cf->c_listeners[0].lc_client_ca == NULL);
	CHECK_INT(cf->c_listeners[0].lc_handshake_timeout_ms, 10000);
	CHECK_INT(cf->c_listeners[0].lc_max_header_bytes, 8192);
	CHECK_INT(cf->c_listeners[0].lc_max_pending_per_ip, 0);
	CHECK_INT(cf->c_upstreams[0]->up_balance, WSG_BALANCE_ROUND_ROBIN);
	CHECK_INT(cf->c_upstreams[0]->up_connect_timeout_ms, 5000);
	CHECK_INT(cf->c_npolicies, 1);
	pol = cf->c_listeners[0].lc_routes[0].rt_policy;
	CHECK(pol != NULL);
	if (pol != NULL) {
		CHECK_STR(pol->pol_name, "default");
		CHECK_INT(pol->pol_max_frame_size, 65536);
		CHECK_INT(pol->pol_max_message_size, 1048576);
		CHECK_INT(pol->pol_validate_utf8, 1);
		CHECK_INT(pol->pol_allow_binary, 1);
		CHECK_INT(pol->pol_has_subprotocols, 0);
		CHECK_INT(pol->pol_idle_timeout_ms, 300000);
		/* Sections left out: their checks are off. */
		CHECK(pol->pol_origin == NULL);
		CHECK(pol->pol_jwt == NULL);
		CHECK(pol->pol_jwt_key == NULL);
		CHECK(pol->pol_auth_header == NULL);
		CHECK_INT(pol->pol_nip_allow, 0);
		CHECK_INT(pol->pol_nip_deny, 0);
		CHECK(pol->pol_geoip == NULL);
		CHECK_INT(pol->pol_ngeo_allow, 0);
		CHECK_INT(pol->pol_ndeny_regex, 0);
	}
	config_unref(cf);
}

/* Copy a file; 0 on success. */
static int
copy_file(const char *from, const char *to)
{
	FILE	*in, *out;
	char	 buf[4096];
	size_t	 n;
	int	 rv = 0;

	if ((in = fopen(from, "r")) == NULL)
		return -1;
	if ((out = fopen(to, "w")) == NULL) {
		fclose(in);
		return -1;
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		if (fwrite(buf, 1, n, out) != n)
			rv = -1;
	fclose(in);
	if (fclose(out) != 0)
		rv = -1;
	return rv;
}

/*
 * The shipped etc/wsgate.yaml and policies/default.yaml, laid out as
 * installed in a temporary folder with the fixture certificate.
 */
static void
test_shipped(void)
{
	struct wsg_errors	 e;
	struct wsg_config	*cf;
	char			 tmp[] = "/tmp/wsgate-test.XXXXXX";
	char			 a[PATH_MAX + 64], b[PATH_MAX + 64];

	if (mkdtemp(tmp) == NULL) {
		CHECK(0);
		return;
	}
	snprintf(a, sizeof(a), "%s/etc", tmp);
	mkdir(a, 0700);
	snprintf(a, sizeof(a), "%s/etc/tls", tmp);
	mkdir(a, 0700);
	snprintf(a, sizeof(a), "%s/policies", tmp);
	mkdir(a, 0700);
	snprintf(a, sizeof(a), "%s/etc/wsgate.yaml", top);
	snprintf(b, sizeof(b), "%s/etc/wsgate.yaml", tmp);
	CHECK_INT(copy_file(a, b), 0);
	snprintf(a, sizeof(a), "%s/policies/default.yaml", top);
	snprintf(b, sizeof(b), "%s/policies/default.yaml", tmp);
	CHECK_INT(copy_file(a, b), 0);
	snprintf(b, sizeof(b), "%s/etc/tls/server.pem", tmp);
	CHECK_INT(copy_file(fixture("server.pem"), b), 0);
	snprintf(b, sizeof(b), "%s/etc/tls/server.key", tmp);
	CHECK_INT(copy_file(fixture("server.key"), b), 0);
	CHECK_INT(chmod(b, 0600), 0);

	memset(&e, 0, sizeof(e));
	snprintf(a, sizeof(a), "%s/etc/wsgate.yaml", tmp);
	cf = config_load(a, &e);
	CHECK(cf != NULL);
	CHECK_INT(e.e_n, 0);
	CHECK_INT(e.e_nwarnings, 0);
	if (e.e_n > 0)
		fprintf(stderr, "  %s\n", e.e_msgs[0]);
	errors_free(&e);
	if (cf != NULL) {
		CHECK_INT(cf->c_workers, 0);
		CHECK_INT(cf->c_shutdown_timeout_ms, 30000);
		CHECK_INT(cf->c_log_level, WSG_LOG_INFO);
		CHECK_STR(cf->c_error_log, "stderr");
		CHECK_STR(cf->c_access_log, "stdout");
		snprintf(b, sizeof(b), "%s/etc/../policies", tmp);
		CHECK_STR(cf->c_policies_dir, b);
		CHECK_INT(cf->c_nlisteners, 1);
		CHECK_STR(cf->c_listeners[0].lc_name, "public");
		CHECK_STR(cf->c_listeners[0].lc_listen, "127.0.0.1:8443");
		CHECK_INT(cf->c_listeners[0].lc_tls, 1);
		CHECK(cf->c_listeners[0].lc_ssl_ctx != NULL);
		snprintf(b, sizeof(b), "%s/etc/tls/server.pem", tmp);
		CHECK_STR(cf->c_listeners[0].lc_cert_file, b);
		CHECK_INT(route_index(&cf->c_listeners[0], "/echo"), 0);
		CHECK_INT(route_index(&cf->c_listeners[0], "/chat/lobby"), 1);
		CHECK_INT(route_index(&cf->c_listeners[0], "/other"), -1);
		CHECK_INT(cf->c_nupstreams, 1);
		CHECK_STR(cf->c_upstreams[0]->up_name, "demo");
		CHECK_STR(cf->c_upstreams[0]->up_servers[0].srv_name,
		    "127.0.0.1:9001");
		CHECK_INT(cf->c_npolicies, 1);
		CHECK_INT(cf->c_policies[0]->pol_max_frame_size, 65536);
		CHECK_INT(cf->c_policies[0]->pol_idle_timeout_ms, 300000);
	}
	config_unref(cf);
	snprintf(a, sizeof(a), "%s/etc/tls/server.pem", tmp);
	unlink(a);
	snprintf(a, sizeof(a), "%s/etc/tls/server.key", tmp);
	unlink(a);
	snprintf(a, sizeof(a), "%s/etc/wsgate.yaml", tmp);
	unlink(a);
	snprintf(a, sizeof(a), "%s/policies/default.yaml", tmp);
	unlink(a);
	snprintf(a, sizeof(a), "%s/etc/tls", tmp);
	rmdir(a);
	snprintf(a, sizeof(a), "%s/etc", tmp);
	rmdir(a);
	snprintf(a, sizeof(a), "%s/policies", tmp);
	rmdir(a);
	rmdir(tmp);
}

/* Every shipped policy file loads on its own without error. */
static void
test_shipped_policies(void)
{
	struct wsg_errors	 e;
	struct wsg_policy	*pol;
	struct dirent		*de;
	DIR			*d;
	char			 dir[PATH_MAX], path[2 * PATH_MAX];
	int			 n = 0;

	snprintf(dir, sizeof(dir), "%s/policies", top);
	if ((d = opendir(dir)) == NULL) {
		CHECK(0);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (!ends_with(de->d_name, ".yaml"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		memset(&e, 0, sizeof(e));
		pol = config_load_policy(NULL, path, &e);
		CHECK(pol != NULL);
		CHECK_INT(e.e_n, 0);
		if (e.e_n > 0)
			fprintf(stderr, "  %s\n", e.e_msgs[0]);
		config_free_policy(pol);
		errors_free(&e);
		n++;
	}
	closedir(d);
	CHECK(n >= 1);
}

/* Lone policy files: defaults, warnings and errors. */
static void
test_policies(void)
{
	struct wsg_errors	 e;
	struct wsg_policy	*pol;
	const char		*f;
	char			 buf[2 * PATH_MAX];

	memset(&e, 0, sizeof(e));
	pol = config_load_policy("empty", fixture("policies/empty.yaml"), &e);
	CHECK(pol != NULL);
	CHECK_INT(e.e_n, 0);
	if (pol != NULL) {
		CHECK_STR(pol->pol_name, "empty");
		CHECK_INT(pol->pol_max_frame_size, 65536);
		CHECK_INT(pol->pol_max_message_size, 1048576);
		CHECK_INT(pol->pol_validate_utf8, 1);
		CHECK_INT(pol->pol_allow_binary, 1);
		CHECK_INT(pol->pol_has_subprotocols, 0);
		CHECK_INT(pol->pol_idle_timeout_ms, 300000);
	}
	config_free_policy(pol);
	errors_free(&e);

	/* Risky but legal: loads, with warnings at the values. */
	f = fixture("policies/risky.yaml");
	pol = config_load_policy(NULL, f, &e);
	CHECK(pol != NULL);
	CHECK_INT(e.e_n, 0);
	CHECK_INT(e.e_nwarnings, 2);
	if (pol != NULL) {
		CHECK_STR(pol->pol_name, "risky");
		CHECK_INT(pol->pol_max_message_size, 128ULL << 20);
		CHECK_INT(pol->pol_validate_utf8, 0);
	}
	if (e.e_nwarnings == 2) {
		snprintf(buf, sizeof(buf), "%s:3:21: warning: "
		    "max_message_size: 128MiB is over 64MiB; each connection "
		    "may buffer that much", f);
		CHECK_STR(e.e_warnings[0], buf);
		snprintf(buf, sizeof(buf), "%s:4:18: warning: validate_utf8: "
		    "false lets invalid text through to the upstream", f);
		CHECK_STR(e.e_warnings[1], buf);
	}
	config_free_policy(pol);
	errors_free(&e);

	f = fixture("policies/capped.yaml");
	pol = config_load_policy(NULL, f, &e);
	CHECK(pol != NULL);
	CHECK_INT(e.e_nwarnings, 1);
	if (e.e_nwarnings == 1) {
		snprintf(buf, sizeof(buf), "%s:3:21: warning: "
		    "max_message_size 64KiB is below max_frame_size 1MiB, so "
		    "frames are capped at 64KiB", f);
		CHECK_STR(e.e_warnings[0], buf);
	}
	config_free_policy(pol);
	errors_free(&e);

	f = fixture("policies/badsub.yaml");
	pol = config_load_policy(NULL, f, &e);
	CHECK(pol == NULL);
	CHECK_INT(e.e_n, 4);
	if (e.e_n == 4) {
		snprintf(buf, sizeof(buf), "%s:1:16: subprotocols: 'chat v2' "
		    "is not a token of 1 to 128 characters", f);
		CHECK_STR(e.e_msgs[0], buf);
		snprintf(buf, sizeof(buf), "%s:1:31: subprotocols: 'ok' is "
		    "listed twice", f);
		CHECK_STR(e.e_msgs[1], buf);
		snprintf(buf, sizeof(buf), "%s:1:35: subprotocols: expected a "
		    "scalar, got a mapping", f);
		CHECK_STR(e.e_msgs[2], buf);
		snprintf(buf, sizeof(buf), "%s:2:9: frames: expected a "
		    "mapping, got a list", f);
		CHECK_STR(e.e_msgs[3], buf);
	}
	errors_free(&e);

	f = fixture("policies/none.yaml");
	pol = config_load_policy("none", f, &e);
	CHECK(pol == NULL);
	CHECK_INT(e.e_n, 1);
	snprintf(buf, sizeof(buf), "%s:1:1: cannot open: No such file or "
	    "directory", f);
	if (e.e_n == 1)
		CHECK_STR(e.e_msgs[0], buf);
	errors_free(&e);
}

/* Each bad file: exactly these errors, in file order. */
static void
test_bad(void)
{
	struct wsg_errors	 e;
	struct wsg_config	*cf;
	char			 buf[2 * PATH_MAX];
	size_t			 i;

	check_bad("bad-unknown-key.yaml", (const char *const[]){
	    "1:1: unknown key 'rate_limit_stor'",
	    "6:5: unknown key 'proxy_protocl' in listener",
	    NULL });
	check_bad("bad-type.yaml", (const char *const[]){
	    "1:12: listeners: expected a list, got a scalar",
	    "4:14: servers: expected a list, got a scalar",
	    "5:6: log: expected a mapping, got a list",
	    NULL });
	check_bad("bad-range.yaml", (const char *const[]){
	    "1:10: workers: 0 is below the minimum 1",
	    "2:19: shutdown_timeout: 2h is above the maximum 1h",
	    "6:24: handshake_timeout: 0s is below the minimum 100ms",
	    "7:23: max_header_bytes: 1MiB is above the maximum 64KiB",
	    "14:22: connect_timeout: 99ms is below the minimum 100ms",
	    "15:19: fail_timeout: 61m is above the maximum 1h",
	    NULL });
	check_bad("bad-values.yaml", (const char *const[]){
	    "1:10: workers: expected auto or a number from 1 to 256, "
	    "got 'many'",
	    "3:10: level: 'loud' is not one of error, warn, info or debug",
	    "6:13: listen: invalid address '127.0.0.1:80800': the port "
	    "must be a number from 1 to 65535",
	    "7:24: handshake_timeout: invalid duration '10x': unknown unit "
	    "(use ms, s, m, h, or a bare number of seconds)",
	    "8:23: max_header_bytes: invalid size '1.5KiB': expected a "
	    "whole number",
	    "10:15: path: 'x' must start with '/'",
	    "14:15: servers: invalid address '::1:9001': an IPv6 address "
	    "needs brackets, e.g. [::1]:8443",
	    "14:27: servers: invalid address '127.0.0.1': missing ':port' "
	    "(use host:port or [v6]:port)",
	    "15:14: balance: 'random' is not one of round_robin or "
	    "least_conn",
	    NULL });
	snprintf(buf, sizeof(buf), "5:20: certificate: cannot open "
	    "%s/missing.pem: No such file or directory", absdir);
	check_bad("bad-missing-file.yaml", (const char *const[]){
	    buf, NULL });
	check_bad("bad-upstream.yaml", (const char *const[]){
	    "6:19: route /x: unknown upstream 'nope'",
	    NULL });
	snprintf(buf, sizeof(buf), "7:17: policy 'strict': cannot open "
	    "%s/policies/strict.yaml: No such file or directory", absdir);
	check_bad("bad-policy.yaml", (const char *const[]){
	    buf,
	    "13:17: policy '../etc/passwd': a name is 1 to 64 letters, "
	    "digits, '-', '_' or '.', not starting with '.'",
	    NULL });
	check_bad("bad-names.yaml", (const char *const[]){
	    "5:15: path: '/a b' may contain '*' only as a final '/*', and "
	    "no '?', '#', spaces or control characters",
	    "9:17: policy '.hidden': a name is 1 to 64 letters, digits, "
	    "'-', '_' or '.', not starting with '.'",
	    NULL });
	check_bad("bad-policy-content.yaml", (const char *const[]){
	    "/policies/broken.yaml:2:19: max_frame_size: 0 is below the "
	    "minimum 1",
	    "/policies/broken.yaml:3:18: validate_utf8: expected true or "
	    "false, got 'yes'",
	    "/policies/broken.yaml:5:9: idle: invalid duration '2d': "
	    "unknown unit (use ms, s, m, h, or a bare number of seconds)",
	    "/policies/broken.yaml:7:22: concurrent_per_ip: 0 is below the "
	    "minimum 1",
	    NULL });
	check_bad("bad-syntax.yaml", (const char *const[]){
	    "4:4: syntax error: did not find expected '-' indicator",
	    NULL });
	check_bad("bad-dup-key.yaml", (const char *const[]){
	    "4:5: duplicate key 'name' (first at line 2)",
	    "11:3: duplicate upstream 'up'",
	    NULL });
	check_bad("bad-three.yaml", (const char *const[]){
	    "1:10: workers: 1000 is above the maximum 256",
	    "9:5: unknown key 'colour' in listener",
	    "13:14: balance: 'random' is not one of round_robin or "
	    "least_conn",
	    NULL });
	check_bad("bad-missing-key.yaml", (const char *const[]){
	    "4:9: route is missing 'path'",
	    "2:5: listener is missing 'listen'",
	    "6:13: routes: needs at least 1 entry",
	    "5:5: listener is missing 'name'",
	    "1:1: config is missing 'upstreams'",
	    "4:19: route: unknown upstream 'up'",
	    NULL });
	check_bad("bad-dup-listener.yaml", (const char *const[]){
	    "5:11: duplicate listener name 'a'",
	    "6:13: listen: 127.0.0.1:8080 is already used by listener 'a'",
	    NULL });
	/* Each server once: its metric series and its down state are its. */
	check_bad("bad-dup-server.yaml", (const char *const[]){
	    "7:45: servers: '127.0.0.1:9001' is listed twice",
	    "7:61: servers: '[::1]:9002' is listed twice",
	    NULL });
	/* First match wins: a route that never matches is refused or named. */
	check_bad("bad-dup-route.yaml", (const char *const[]){
	    "7:16: path: '/x' is routed twice in listener 'a'",
	    "10:16: path: '/chat/*' is routed twice in listener 'a'",
	    NULL });
	memset(&e, 0, sizeof(e));
	CHECK(config_load(fixture("bad-dup-route.yaml"), &e) == NULL);
	CHECK_INT(e.e_nwarnings, 2);
	snprintf(buf, sizeof(buf), "%s:8:16: warning: path: '/chat/room' "
	    "never matches: '/chat/*' above takes it first",
	    fixture("bad-dup-route.yaml"));
	if (e.e_nwarnings == 2)
		CHECK_STR(e.e_warnings[0], buf);
	snprintf(buf, sizeof(buf), "%s:9:16: warning: path: '/chat' never "
	    "matches: '/chat/*' above takes it first",
	    fixture("bad-dup-route.yaml"));
	if (e.e_nwarnings == 2)
		CHECK_STR(e.e_warnings[1], buf);
	errors_free(&e);
	/*
	 * A route path a request may not have (it gets 400 first) is named;
	 * "%20" is no ambiguity, and neither is "/" nor a prefix.
	 */
	memset(&e, 0, sizeof(e));
	cf = config_load(fixture("warn-route-paths.yaml"), &e);
	CHECK(cf != NULL);
	CHECK_INT(e.e_n, 0);
	CHECK_INT(e.e_nwarnings, 5);
	for (i = 0; i < 5 && i < e.e_nwarnings; i++) {
		snprintf(buf, sizeof(buf), "%s:%d:16: warning: path: '%s' "
		    "never matches: a request path with '//', ';', '\\', a "
		    "dot segment or an encoded '/' or unreserved character is "
		    "refused with 400", fixture("warn-route-paths.yaml"),
		    (int)i + 5, (const char *[]){ "/api//admin",
		    "/api/admin;v=1", "/pub/../admin/*", "/%61pi/*",
		    "/a%2Fb" }[i]);
		CHECK_STR(e.e_warnings[i], buf);
	}
	errors_free(&e);
	if (cf != NULL)
		config_unref(cf);
	check_bad("bad-tls-missing-key.yaml", (const char *const[]){
	    "6:20: min_version: '1.1' is not one of 1.2 or 1.3",
	    "5:7: tls is missing 'key'",
	    NULL });
	check_bad("bad-two-docs.yaml", (const char *const[]){
	    "2:1: only one YAML document is allowed",
	    NULL });
	/* fuzz_config found NULL + 0 here (UBSan); the one error remains. */
	check_bad("bad-listener-noroutes.yaml", (const char *const[]){
	    "5:5: listener is missing 'routes'",
	    NULL });

	/* A byte that is not UTF-8 has a line and column too. */
	check_bad("bad-utf8.yaml", (const char *const[]){
	    "2:8: syntax error: invalid leading UTF-8 octet at byte 18",
	    NULL });
	/* The column of a bad byte counts characters, not bytes. */
	check_bad("bad-utf8-col.yaml", (const char *const[]){
	    "2:9: syntax error: invalid leading UTF-8 octet at byte 20",
	    NULL });
	/* A required key given as null is missing. */
	check_bad("bad-null-required.yaml", (const char *const[]){
	    "2:5: listener is missing 'name'",
	    NULL });
	/* "a\0b" is not read as "a". */
	check_bad("bad-nul.yaml", (const char *const[]){
	    "1:1: a value or key must not contain a NUL byte",
	    "4:15: a value or key must not contain a NUL byte",
	    NULL });

	/* No line: the whole file is concerned, given as its start. */
	memset(&e, 0, sizeof(e));
	CHECK(config_load(fixture("empty.yaml"), &e) == NULL);
	CHECK_INT(e.e_n, 2);
	snprintf(buf, sizeof(buf), "%s:1:1: config is missing 'upstreams'",
	    fixture("empty.yaml"));
	if (e.e_n == 2)
		CHECK_STR(e.e_msgs[0], buf);
	errors_free(&e);
	CHECK(config_load(fixture("nonexistent.yaml"), &e) == NULL);
	CHECK_INT(e.e_n, 1);
	snprintf(buf, sizeof(buf), "%s:1:1: cannot open: No such file or "
	    "directory", fixture("nonexistent.yaml"));
	if (e.e_n == 1)
		CHECK_STR(e.e_msgs[0], buf);
	errors_free(&e);
}

/* The main-file keys of the access-control release: errors and warnings. */
static void
test_main_keys(void)
{
	struct wsg_errors	 e;
	struct wsg_config	*cf;
	const struct wsg_policy	*pol;
	char			 buf[2 * PATH_MAX];
	size_t			 i;

	snprintf(buf, sizeof(buf), "11:18: client_ca: cannot open "
	    "%s/missing-ca.pem: No such file or directory", absdir);
	check_bad("bad-main-keys.yaml", (const char *const[]){
	    "1:7: user 'wsgate-no-such-user' does not exist",
	    "2:18: max_connections: 2000000 is above the maximum 1000000",
	    "4:11: listen: 0.0.0.0:9180 is not a loopback address; the "
	    "admin listener is plaintext and unauthenticated (set "
	    "allow_public: true to allow it)",
	    buf,
	    "12:21: proxy_protocol: expected true or false, got 'maybe'",
	    "13:35: trusted_proxies: invalid CIDR '10.0.0.0/33': IPv4 "
	    "prefix length over 32",
	    "13:55: trusted_proxies: invalid CIDR 'fe80::1%eth0': not a "
	    "numeric IPv4 or IPv6 address",
	    NULL });
	check_bad("bad-admin.yaml", (const char *const[]){
	    "2:17: allow_public: expected true or false, got 'sure'",
	    "2:3: admin is missing 'listen'",
	    NULL });
	check_bad("bad-admin-clash.yaml", (const char *const[]){
	    "3:3: unknown key 'port' in admin",
	    "2:11: listen: 127.0.0.1:8080 is already used by listener 'l'",
	    NULL });

	/* A dual-stack [::] admin socket takes the IPv4 port as well. */
	check_bad("bad-admin-clash6.yaml", (const char *const[]){
	    "2:11: listen: [::]:8080 is already used by listener 'l'",
	    NULL });

	/* The whole loopback network is loopback, IPv4-mapped too. */
	for (i = 0; i < 2; i++) {
		memset(&e, 0, sizeof(e));
		cf = config_load(fixture(i == 0 ? "admin-loopback.yaml" :
		    "admin-loopback-mapped.yaml"), &e);
		CHECK(cf != NULL);
		CHECK_INT(e.e_n, 0);
		CHECK_INT(e.e_nwarnings, 0);
		errors_free(&e);
		config_unref(cf);
	}

	/* allow_public: loads, with a warning at the address. */
	memset(&e, 0, sizeof(e));
	cf = config_load(fixture("admin-public.yaml"), &e);
	CHECK(cf != NULL);
	CHECK_INT(e.e_n, 0);
	CHECK_INT(e.e_nwarnings, 1);
	snprintf(buf, sizeof(buf), "%s:3:11: warning: admin listener on a "
	    "public address ([::]:9180): metrics are served without "
	    "authentication", fixture("admin-public.yaml"));
	if (e.e_nwarnings == 1)
		CHECK_STR(e.e_warnings[0], buf);
	errors_free(&e);
	if (cf == NULL)
		return;
	CHECK_INT(cf->c_has_admin, 1);
	CHECK_INT(cf->c_admin_addr.ss_family, AF_INET6);
	/* A policy with every section, loaded through a route. */
	pol = cf->c_listeners[0].lc_routes[0].rt_policy;
	CHECK(pol != NULL && pol->pol_jwt != NULL &&
	    pol->pol_jwt->jp_key != NULL);
	config_unref(cf);
}

/* policies/full.yaml: every section but geoip, every value kept. */
static void
test_policy_full(void)
{
	struct wsg_errors	 e;
	struct wsg_policy	*pol;
	const struct wsg_origin_policy *op;
	const struct wsg_jwt_policy *jp;
	struct sockaddr_in	 sin;

	memset(&e, 0, sizeof(e));
	pol = config_load_policy(NULL, fixture("policies/full.yaml"), &e);
	CHECK(pol != NULL);
	CHECK_INT(e.e_n, 0);
	CHECK_INT(e.e_nwarnings, 0);
	errors_free(&e);
	if (pol == NULL)
		return;
	CHECK_STR(pol->pol_name, "full");
	op = pol->pol_origin;
	CHECK(op != NULL);
	if (op != NULL) {
		CHECK_INT(op->op_nallow, 4);
		if (op->op_nallow == 4) {
			CHECK_STR(op->op_allow[0], "https://chat.example.com");
			/* Normalised: lowercase, default port dropped. */
			CHECK_STR(op->op_allow[1], "https://app.example.com");
			CHECK_STR(op->op_allow[2], "http://127.0.0.1:8080");
			CHECK_STR(op->op_allow[3], "null");
		}
		CHECK_INT(op->op_nregex, 1);
		CHECK_INT(op->op_allow_missing, 1);
		CHECK_INT(origin_check(op, "https://eu.chat.example.com",
		    27), WSG_ORIGIN_OK);
		CHECK_INT(origin_check(op, "https://evil.example", 20),
		    WSG_ORIGIN_DENIED);
	}
	CHECK_STR(pol->pol_auth_header, "X-Token");
	CHECK_STR(pol->pol_auth_query_param, "access_token");
	CHECK_INT(pol->pol_expiry_close, 0);
	jp = pol->pol_jwt;
	CHECK(jp != NULL);
	if (jp != NULL) {
		CHECK_INT(jp->jp_algs, WSG_JWT_ALG_BIT(WSG_JWT_RS256) |
		    WSG_JWT_ALG_BIT(WSG_JWT_PS256));
		CHECK(jp->jp_key == pol->pol_jwt_key);
		CHECK(jp->jp_key != NULL &&
		    jwt_key_allows(jp->jp_key, WSG_JWT_RS256));
		CHECK_STR(jp->jp_issuer, "https://auth.example.com");
		CHECK_STR(jp->jp_audience, "chat");
		CHECK_INT(jp->jp_leeway, 30);
		CHECK_INT(jp->jp_nrequired, 2);
		CHECK(jp->jp_required ==
		    (const char *const *)pol->pol_required_claims);
		if (jp->jp_nrequired == 2) {
			CHECK_STR(jp->jp_required[0], "sub");
			CHECK_STR(jp->jp_required[1], "tenant");
		}
	}
	CHECK_INT(pol->pol_nforward_claims, 2);
	if (pol->pol_nforward_claims == 2) {
		CHECK_STR(pol->pol_forward_claims[0].fc_claim, "sub");
		CHECK_STR(pol->pol_forward_claims[0].fc_header,
		    "X-Wsgate-User");
		CHECK_STR(pol->pol_forward_claims[1].fc_claim, "tenant");
		CHECK_STR(pol->pol_forward_claims[1].fc_header,
		    "x-wsgate-tenant");
	}
	CHECK_INT(pol->pol_nip_allow, 2);
	CHECK_INT(pol->pol_nip_deny, 2);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, "10.66.1.2", &sin.sin_addr);
	CHECK(cidr_list_match(pol->pol_ip_allow, pol->pol_nip_allow,
	    (struct sockaddr *)&sin));
	CHECK(cidr_list_match(pol->pol_ip_deny, pol->pol_nip_deny,
	    (struct sockaddr *)&sin));
	inet_pton(AF_INET, "203.0.113.8", &sin.sin_addr);
	CHECK(!cidr_list_match(pol->pol_ip_deny, pol->pol_nip_deny,
	    (struct sockaddr *)&sin));
	CHECK(pol->pol_geoip == NULL);
	CHECK_INT(pol->pol_ndeny_regex, 2);
	if (pol->pol_ndeny_regex == 2) {
		CHECK_INT(regex_match(pol->pol_deny_regex[0],
		    "hi <SCRIPT>", 11), 1);
		CHECK_INT(regex_match(pol->pol_deny_regex[1],
		    "1 UNION  Select x", 17), 1);
		CHECK_INT(regex_match(pol->pol_deny_regex[1],
		    "reunion selected", 16), 0);
	}
	config_free_policy(pol);

	/* An HMAC secret with HS*; auth defaults. */
	memset(&e, 0, sizeof(e));
	pol = config_load_policy(NULL, fixture("policies/hmac.yaml"), &e);
	CHECK(pol != NULL);
	CHECK_INT(e.e_n, 0);
	errors_free(&e);
	if (pol == NULL)
		return;
	CHECK_STR(pol->pol_auth_header, "Authorization");
	CHECK(pol->pol_auth_query_param == NULL);
	CHECK_INT(pol->pol_expiry_close, 1);
	CHECK(pol->pol_origin == NULL);
	if (pol->pol_jwt != NULL) {
		CHECK_INT(pol->pol_jwt->jp_algs,
		    WSG_JWT_ALG_BIT(WSG_JWT_HS256) |
		    WSG_JWT_ALG_BIT(WSG_JWT_HS512));
		CHECK(pol->pol_jwt->jp_issuer == NULL);
		CHECK(pol->pol_jwt->jp_audience == NULL);
		CHECK_INT(pol->pol_jwt->jp_leeway, 0);
		CHECK_INT(pol->pol_jwt->jp_nrequired, 0);
	} else
		CHECK(0);
	CHECK_INT(pol->pol_nforward_claims, 0);
	config_free_policy(pol);
}

/* Each bad policy section: exactly these errors, at these places. */
static void
test_policy_bad(void)
{
	check_policy("bad-origin.yaml", (const char *const[]){
	    "2:37: origin: 'https://x.example.com/path' is not a "
	    "scheme://host[:port] origin",
	    "2:67: origin: 'HTTPS://Chat.Example.com:443' is listed twice",
	    "2:99: origin: 'ftp://example.com' is not a scheme://host[:port] "
	    "origin",
	    "3:51: allow_regex: invalid regex '(unclosed': offset 9: missing "
	    "closing parenthesis",
	    "3:64: allow_regex: a pattern must not be empty",
	    "4:18: allow_missing: expected true or false, got 'perhaps'",
	    "5:3: unknown key 'extra' in origin",
	    NULL }, NULL);
	check_policy("bad-origin-empty.yaml", NULL, (const char *const[]){
	    "2:3: warning: origin: nothing is allowed, so every client is "
	    "refused",
	    NULL });
	check_policy("bad-auth.yaml", (const char *const[]){
	    "5:25: algorithm 'none' is never accepted",
	    "5:38: algorithms: unknown algorithm 'XX512' (use HS256, HS384, "
	    "HS512, RS256, RS384, RS512, PS256, ES256, ES384 or EdDSA)",
	    "5:45: algorithms: 'RS256' is listed twice",
	    "7:13: leeway: 2h is above the maximum 1h",
	    "8:28: required_claims: 'sub' is listed twice",
	    "9:28: forward_claims: header 'Host' is set by the gateway and "
	    "cannot carry a claim",
	    "9:56: forward_claims: header 'X-Forwarded-For' is set by the "
	    "gateway and cannot carry a claim",
	    "9:79: forward_claims: 'Bad Header' is not an HTTP header name "
	    "of 1 to 128 characters",
	    "9:98: forward_claims: header 'sec-websocket-protocol' is set by "
	    "the gateway and cannot carry a claim",
	    "9:122: forward_claims: claim 'grp' or header 'x-role' is used "
	    "twice",
	    "5:31: algorithm HS256 cannot be used with an RSA public key",
	    "10:14: on_expiry: 'later' is not one of ignore or close",
	    "2:11: header: 'X Token' is not an HTTP header name of 1 to 128 "
	    "characters",
	    "3:16: query_param: 'a&b' must be 1 to 64 letters, digits, '-', "
	    "'.', '_' or '~'",
	    NULL }, NULL);
	check_policy("bad-auth-nojwt.yaml", (const char *const[]){
	    "2:3: auth is missing 'jwt'",
	    NULL }, NULL);
	check_policy("bad-jwt-empty.yaml", (const char *const[]){
	    "3:17: algorithms: needs at least 1 entry",
	    "4:15: audience: must not be empty",
	    "3:5: jwt is missing 'key_file'",
	    NULL }, NULL);
	check_policy("bad-jwt-key.yaml", (const char *const[]){
	    "3:25: algorithm RS256 cannot be used with a P-256 public key",
	    "3:32: algorithm EdDSA cannot be used with a P-256 public key",
	    NULL }, NULL);
	check_policy("bad-jwt-short.yaml", (const char *const[]){
	    "4:15: key_file: {dir}/policies/keys/short.key: HMAC secret is 8 "
	    "bytes; at least 32 are required",
	    NULL }, NULL);
	check_policy("bad-jwt-nokey.yaml", (const char *const[]){
	    "4:15: key_file: cannot open {dir}/policies/keys/none.key: No "
	    "such file or directory",
	    NULL }, NULL);
	check_policy("bad-ip.yaml", (const char *const[]){
	    "2:23: allow: invalid CIDR '300.1.1.1/8': not a numeric IPv4 or "
	    "IPv6 address",
	    "2:48: allow: invalid CIDR '::1/129': IPv6 prefix length over 128",
	    "3:9: deny: expected a list, got a scalar",
	    NULL }, (const char *const[]){
	    "2:36: warning: allow: '10.1.2.3/8': host bits set; cleared to "
	    "the network address",
	    NULL });
	check_policy("bad-geoip.yaml", (const char *const[]){
	    "2:13: database: cannot open {dir}/policies/missing.mmdb: No such "
	    "file or directory",
	    "3:29: allow_countries: 'DEU' is not a two-letter country code "
	    "(ISO 3166-1 alpha-2)",
	    "3:34: allow_countries: '1A' is not a two-letter country code "
	    "(ISO 3166-1 alpha-2)",
	    "3:40: allow_countries: 'DE' is listed twice",
	    "5:12: unknown: 'maybe' is not one of deny or allow",
	    NULL }, (const char *const[]){
	    "4:20: warning: deny_countries: 'XX' is not an ISO 3166-1 country "
	    "code: no address is ever in it",
	    NULL });
	check_policy("bad-geoip-nodb.yaml", (const char *const[]){
	    "2:3: geoip is missing 'database'",
	    NULL }, NULL);
	check_policy("bad-geoip-notdb.yaml", (const char *const[]){
	    "2:13: database: {dir}/policies/keys/hmac.key: not a usable "
	    "MaxMind DB file: The MaxMind DB file contains invalid metadata",
	    NULL }, NULL);
	check_policy("bad-messages.yaml", (const char *const[]){
	    "2:31: deny_regex: invalid regex '[z-a]': offset 3: range out of "
	    "order in character class",
	    "2:40: deny_regex: a pattern must not be empty",
	    "3:3: unknown key 'allow_regex' in messages",
	    NULL }, NULL);
}

/*
 * geoip with a real database, built by tests/geoip/make-mmdb.pl into a
 * temporary folder next to a policy that names it by a relative path.
 */
static void
test_geoip(void)
{
	struct wsg_errors	 e;
	struct wsg_policy	*pol;
	struct sockaddr_in	 sin;
	char			 tmp[] = "/tmp/wsgate-geoip.XXXXXX";
	char			 cmd[3 * PATH_MAX], pfile[PATH_MAX + 32];
	char			 db[PATH_MAX + 32], cc[3];
	FILE			*fp;

	snprintf(cmd, sizeof(cmd), "%s/tests/geoip/make-mmdb.pl", top);
	if (access(cmd, R_OK) != 0 ||
	    system("perl -MMaxMind::DB::Writer::Tree -e 1 2>/dev/null") != 0) {
		fprintf(stderr, "  skipped: no make-mmdb.pl or "
		    "MaxMind::DB::Writer\n");
		return;
	}
	if (mkdtemp(tmp) == NULL) {
		CHECK(0);
		return;
	}
	snprintf(db, sizeof(db), "%s/country.mmdb", tmp);
	snprintf(cmd, sizeof(cmd), "perl '%s/tests/geoip/make-mmdb.pl' '%s' "
	    "127.0.0.0/24=DE 10.0.0.0/8=KP", top, db);
	CHECK_INT(system(cmd), 0);
	snprintf(pfile, sizeof(pfile), "%s/geo.yaml", tmp);
	if ((fp = fopen(pfile, "w")) == NULL) {
		CHECK(0);
		rmdir(tmp);
		return;
	}
	fputs("geoip:\n"
	    "  database: country.mmdb\n"
	    "  allow_countries: [de, FR]\n"
	    "  deny_countries: [KP]\n"
	    "  unknown: deny\n", fp);
	fclose(fp);

	memset(&e, 0, sizeof(e));
	pol = config_load_policy(NULL, pfile, &e);
	CHECK(pol != NULL);
	CHECK_INT(e.e_n, 0);
	if (e.e_n > 0)
		fprintf(stderr, "  %s\n", e.e_msgs[0]);
	errors_free(&e);
	if (pol != NULL) {
		CHECK(pol->pol_geoip != NULL);
		CHECK_INT(pol->pol_ngeo_allow, 2);
		if (pol->pol_ngeo_allow == 2) {
			CHECK_STR(pol->pol_geo_allow[0], "DE");
			CHECK_STR(pol->pol_geo_allow[1], "FR");
		}
		CHECK_INT(pol->pol_ngeo_deny, 1);
		if (pol->pol_ngeo_deny == 1)
			CHECK_STR(pol->pol_geo_deny[0], "KP");
		CHECK_INT(pol->pol_geo_unknown_allow, 0);
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		inet_pton(AF_INET, "127.0.0.9", &sin.sin_addr);
		memset(cc, 0, sizeof(cc));
		if (pol->pol_geoip != NULL) {
			CHECK_INT(geoip_country(pol->pol_geoip,
			    (struct sockaddr *)&sin, cc), 1);
			CHECK_STR(cc, "DE");
		}
	}
	config_free_policy(pol);

	/* The default of unknown is allow. */
	if ((fp = fopen(pfile, "w")) != NULL) {
		fputs("geoip: { database: country.mmdb }\n", fp);
		fclose(fp);
	}
	memset(&e, 0, sizeof(e));
	pol = config_load_policy(NULL, pfile, &e);
	CHECK(pol != NULL);
	CHECK_INT(e.e_n, 0);
	if (pol != NULL) {
		CHECK_INT(pol->pol_geo_unknown_allow, 1);
		CHECK_INT(pol->pol_ngeo_allow, 0);
	}
	config_free_policy(pol);
	errors_free(&e);
	unlink(pfile);
	unlink(db);
	rmdir(tmp);
}

/* The shipped example policies say what their comments promise. */
static void
test_examples(void)
{
	struct wsg_errors	 e;
	struct wsg_policy	*pol;
	char			 path[PATH_MAX];

	memset(&e, 0, sizeof(e));
	snprintf(path, sizeof(path), "%s/policies/public-chat.yaml", top);
	pol = config_load_policy(NULL, path, &e);
	CHECK(pol != NULL);
	if (pol != NULL) {
		CHECK(pol->pol_origin != NULL &&
		    pol->pol_origin->op_nallow == 1 &&
		    pol->pol_origin->op_nregex == 1 &&
		    !pol->pol_origin->op_allow_missing);
		CHECK(pol->pol_jwt != NULL && pol->pol_jwt->jp_algs ==
		    WSG_JWT_ALG_BIT(WSG_JWT_RS256));
		CHECK(pol->pol_jwt != NULL && pol->pol_jwt->jp_leeway == 30);
		CHECK_INT(pol->pol_nrequired_claims, 1);
		CHECK_INT(pol->pol_nforward_claims, 1);
		CHECK_INT(pol->pol_expiry_close, 1);
		CHECK_INT(pol->pol_max_message_size, 65536);
		CHECK_INT(pol->pol_idle_timeout_ms, 120000);
		CHECK_INT(pol->pol_nsubprotocols, 1);
		if (pol->pol_origin != NULL) {
			CHECK_INT(origin_check(pol->pol_origin,
			    "https://acme.chat.example.com", 29),
			    WSG_ORIGIN_OK);
			CHECK_INT(origin_check(pol->pol_origin,
			    "https://acme.chat.example.com.evil.io", 37),
			    WSG_ORIGIN_DENIED);
		}
	}
	config_free_policy(pol);
	errors_free(&e);

	snprintf(path, sizeof(path), "%s/policies/internal-service.yaml",
	    top);
	pol = config_load_policy(NULL, path, &e);
	CHECK(pol != NULL);
	if (pol != NULL) {
		CHECK(pol->pol_origin == NULL);
		CHECK_INT(pol->pol_nip_allow, 4);
		CHECK_INT(pol->pol_nip_deny, 1);
		CHECK_INT(pol->pol_allow_binary, 1);
	}
	config_free_policy(pol);
	errors_free(&e);

	snprintf(path, sizeof(path), "%s/policies/strict.yaml", top);
	pol = config_load_policy(NULL, path, &e);
	CHECK(pol != NULL);
	if (pol != NULL) {
		CHECK_INT(pol->pol_max_frame_size, 4096);
		CHECK_INT(pol->pol_max_message_size, 16384);
		CHECK_INT(pol->pol_allow_binary, 0);
		CHECK(pol->pol_origin != NULL);
		CHECK_INT(pol->pol_ndeny_regex, 2);
		CHECK_INT(pol->pol_idle_timeout_ms, 30000);
	}
	config_free_policy(pol);
	errors_free(&e);
}

/* The table itself: sane rows, defaults within their own bounds. */
static void
test_table(void)
{
	size_t	i, j;

	CHECK(config_noptions >= 60);
	for (i = 0; i < config_noptions; i++) {
		CHECK(config_options[i].o_scope != NULL);
		CHECK(config_options[i].o_key != NULL);
		CHECK(config_options[i].o_man != NULL);
		if (config_options[i].o_type == WSG_OPT_ENUM)
			CHECK(config_options[i].o_enum != NULL);
		if (config_options[i].o_type == WSG_OPT_DURATION ||
		    config_options[i].o_type == WSG_OPT_SIZE ||
		    config_options[i].o_type == WSG_OPT_INT)
			CHECK(config_options[i].o_min <=
			    config_options[i].o_max);
		for (j = 0; j < i; j++)
			if (strcmp(config_options[i].o_scope,
			    config_options[j].o_scope) == 0 &&
			    strcmp(config_options[i].o_key,
			    config_options[j].o_key) == 0)
				CHECK(0);
	}
}

/* Does an .It line of a man page name the key? */
static int
man_has_key(const char *page, const char *key)
{
	const char	*p, *line, *nl;
	size_t		 klen = strlen(key);

	for (line = page; line != NULL && *line != '\0';
	    line = nl != NULL ? nl + 1 : NULL) {
		nl = strchr(line, '\n');
		if (strncmp(line, ".It", 3) != 0)
			continue;
		for (p = line + 3; p != NULL && (nl == NULL || p < nl);
		    p += klen) {
			p = strstr(p, key);
			if (p == NULL || (nl != NULL && p >= nl))
				break;
			if (p[-1] == ' ' && (p[klen] == ' ' ||
			    p[klen] == '\n' || p[klen] == '\0'))
				return 1;
		}
	}
	return 0;
}

/* Every option is documented as an item of the man page named by o_man. */
static void
test_man(void)
{
	char	 path[PATH_MAX], *page;
	FILE	*fp;
	long	 len;
	size_t	 i;

	for (i = 0; i < config_noptions; i++) {
		snprintf(path, sizeof(path), "%s/man/%s", top,
		    config_options[i].o_man);
		if ((fp = fopen(path, "r")) == NULL) {
			fprintf(stderr, "  %s: cannot open\n", path);
			CHECK(0);
			continue;
		}
		fseek(fp, 0, SEEK_END);
		len = ftell(fp);
		rewind(fp);
		page = calloc(1, (size_t)len + 1);
		if (page != NULL &&
		    fread(page, 1, (size_t)len, fp) == (size_t)len) {
			if (!man_has_key(page, config_options[i].o_key))
				fprintf(stderr, "  %s: no .It for %s '%s'\n",
				    path, config_options[i].o_scope,
				    config_options[i].o_key);
			CHECK(man_has_key(page, config_options[i].o_key));
		} else
			CHECK(0);
		free(page);
		fclose(fp);
	}
}

/* A limit's rate and burst. */
static int
limit_is(const struct wsg_rl_limit *l, uint64_t amount, uint64_t per_ms,
    uint64_t burst)
{
	return l->rl_rate.r_amount == amount && l->rl_rate.r_per_ms == per_ms &&
	    l->rl_burst == burst;
}

/*
 * rate_limit in policies, rate_limit_table and rate_limit_store in the
 * main file: values, defaults, and the exact errors.
 */
static void
test_rate_limit(void)
{
	struct wsg_errors		 e;
	struct wsg_config		*cf;
	struct wsg_policy		*pol;
	const struct wsg_ratelimit_conf	*rc;
	const struct wsg_store_conf	*sc;

	memset(&e, 0, sizeof(e));
	cf = config_load(fixture("good.yaml"), &e);
	CHECK(cf != NULL);
	CHECK_INT(e.e_n, 0);
	errors_free(&e);
	if (cf != NULL) {
		CHECK_INT(cf->c_rl_max_entries, 50000);
		CHECK_INT(cf->c_rl_idle_ms, 300000);
		CHECK((sc = cf->c_store) != NULL);
		if (sc != NULL) {
			CHECK_STR(sc->sc_url, "redis://127.0.0.1:6379/2");
			CHECK_STR(sc->sc_host, "127.0.0.1");
			CHECK(sc->sc_path == NULL);
			CHECK_INT(sc->sc_port, 6379);
			CHECK_INT(sc->sc_db, 2);
			CHECK_INT(sc->sc_on_failure, WSG_STORE_FAIL_DENY);
			CHECK_INT(sc->sc_lease_ttl_ms, 60000);
			CHECK_STR(sc->sc_key_prefix, "gw1:");
		}
		/* The chat policy has no rate_limit section. */
		CHECK(cf->c_listeners[0].lc_routes[0].rt_policy != NULL &&
		    cf->c_listeners[0].lc_routes[0].rt_policy->pol_rate ==
		    NULL);
	}
	config_unref(cf);

	cf = config_load(fixture("minimal.yaml"), &e);
	CHECK(cf != NULL);
	errors_free(&e);
	if (cf != NULL) {
		CHECK_INT(cf->c_rl_max_entries, 100000);
		CHECK_INT(cf->c_rl_idle_ms, 600000);
		CHECK(cf->c_store == NULL);
	}
	config_unref(cf);

	/* A store with its one required key: the other keys' defaults. */
	cf = config_load(fixture("store-min.yaml"), &e);
	CHECK(cf != NULL);
	CHECK_INT(e.e_n, 0);
	errors_free(&e);
	if (cf != NULL && cf->c_store != NULL) {
		CHECK_INT(cf->c_store->sc_on_failure, WSG_STORE_FAIL_LOCAL);
		CHECK_INT(cf->c_store->sc_lease_ttl_ms, 30000);
		CHECK_STR(cf->c_store->sc_key_prefix, "wsgate:");
	} else
		CHECK(0);
	config_unref(cf);

	pol = config_load_policy(NULL, fixture("policies/full.yaml"), &e);
	CHECK(pol != NULL);
	CHECK_INT(e.e_n, 0);
	errors_free(&e);
	if (pol != NULL && (rc = pol->pol_rate) != NULL) {
		CHECK(limit_is(&rc->rc_connections, 10, 1000, 20));
		CHECK_INT(rc->rc_concurrent, 100);
		CHECK(limit_is(&rc->rc_messages, 50, 1000, 100));
		CHECK(limit_is(&rc->rc_bytes, 1 << 20, 1000, 4 << 20));
		CHECK_INT(rc->rc_ipv6_prefix, 56);
	} else
		CHECK(0);
	config_free_policy(pol);

	pol = config_load_policy(NULL, fixture("policies/ratelimit-min.yaml"),
	    &e);
	CHECK(pol != NULL);
	CHECK_INT(e.e_n, 0);
	errors_free(&e);
	if (pol != NULL && (rc = pol->pol_rate) != NULL) {
		CHECK(limit_is(&rc->rc_connections, 600, 60000, 600));
		CHECK_INT(rc->rc_concurrent, 0);
		CHECK(limit_is(&rc->rc_messages, 0, 0, 0));
		CHECK(limit_is(&rc->rc_bytes, 0, 0, 0));
		CHECK_INT(rc->rc_ipv6_prefix, 64);
	} else
		CHECK(0);
	config_free_policy(pol);

	/* Every frame over 1KiB of the default 64KiB would close 1008. */
	check_policy("bytes-burst.yaml", NULL, (const char *const[]){
	    "2:25: warning: bytes_per_connection: the burst 1KiB is below "
	    "the largest frame allowed, 64KiB; a frame larger than the burst "
	    "always closes its connection with rate_bytes",
	    NULL });
	check_policy("bad-ratelimit.yaml", (const char *const[]){
	    "2:31: rate: invalid rate '10/x': unknown period (use /s, /m or "
	    "/h)",
	    "2:44: burst: 0 is below the minimum 1",
	    "3:22: concurrent_per_ip: expected a number from 1 to 1000000, "
	    "got 'many'",
	    "4:28: messages_per_connection is missing 'rate'",
	    "5:33: rate: 2GiB/s is above the maximum 1GiB/s",
	    "5:48: burst: invalid size '1.5MiB': expected a whole number",
	    "6:16: ipv6_prefix: 129 is above the maximum 128",
	    "7:3: unknown key 'per_user' in rate_limit",
	    NULL }, NULL);
	check_policy("bad-ratelimit2.yaml", (const char *const[]){
	    "2:23: connections_per_ip: expected a mapping, got a scalar",
	    "3:36: rate: 2000000/s is above the maximum 1000000/s",
	    "3:47: unknown key 'extra' in messages_per_connection",
	    "4:22: concurrent_per_ip: 0 is below the minimum 1",
	    "5:33: rate: expected a scalar, got a list",
	    "5:50: burst: 2GiB is above the maximum 1GiB",
	    NULL }, NULL);
	/* A refused value is not warned about as if it had been taken. */
	check_policy("bad-frames-range.yaml", (const char *const[]){
	    "2:21: max_message_size: 0 is below the minimum 1",
	    NULL }, NULL);
	check_policy("bad-burst-range.yaml", (const char *const[]){
	    "2:48: burst: 0 is below the minimum 1",
	    NULL }, NULL);
	check_bad("bad-store.yaml", (const char *const[]){
	    "2:16: max_entries: 999 is below the minimum 1000",
	    "3:16: idle_expiry: invalid duration '2d': unknown unit (use ms, "
	    "s, m, h, or a bare number of seconds)",
	    "5:10: redis: invalid URL 'redis://user:pw@127.0.0.1:6379/0': "
	    "credentials in the URL are not supported",
	    "6:15: on_failure: 'maybe' is not one of local, allow or deny",
	    "7:14: lease_ttl: 1s is below the minimum 5s",
	    "9:3: unknown key 'db' in rate_limit_store",
	    "8:15: key_prefix: 'has space' must be 1 to 64 printable "
	    "characters without spaces",
	    NULL });
	check_bad("bad-store2.yaml", (const char *const[]){
	    "1:34: max_entries: 20000000 is above the maximum 10000000",
	    "1:57: idle_expiry: 0s is below the minimum 1s",
	    "1:61: unknown key 'size' in rate_limit_table",
	    "2:51: lease_ttl: 11m is above the maximum 10m",
	    "2:19: rate_limit_store is missing 'redis'",
	    NULL });
	check_bad("bad-store3.yaml", (const char *const[]){
	    "2:10: redis: invalid URL 'unix:///run/redis/redis.sock?db=x': "
	    "after the path only ?db=N may follow, N from 0 to 65535",
	    NULL });
}

/* Run every group; exit 1 if any check failed. */
int
main(void)
{
	setup_dirs();
	test_table();
	test_good();
	test_defaults();
	test_shipped();
	test_shipped_policies();
	test_policies();
	test_bad();
	test_main_keys();
	test_policy_full();
	test_policy_bad();
	test_geoip();
	test_rate_limit();
	test_examples();
	test_man();
	return unit_done("test_config");
}
