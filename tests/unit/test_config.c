/*
 * Unit tests of the config loader: good files load with the values and
 * defaults they should have; each bad file gives exactly the errors, with
 * file, line and column, that an operator would read; every option is in
 * its man page.
 */
#include "autoconf.h"

#include <sys/stat.h>
#include <sys/socket.h>

#include <dirent.h>
#include <limits.h>
#include <stdint.h>
#include <unistd.h>

#include "config.h"
#include "unit.h"

static const char	*top;
static char		 cfgdir[1024];	/* as given to the loader */
static char		 absdir[1024];	/* as the loader makes it */

/* Fill the fixture folder names, relative and absolute. */
static void
setup_dirs(void)
{
	char		 cwd[512];
	const char	*t;

	if ((top = getenv("top_srcdir")) == NULL || *top == '\0')
		top = ".";
	snprintf(cfgdir, sizeof(cfgdir), "%s/tests/unit/configs", top);
	if (top[0] == '/') {
		snprintf(absdir, sizeof(absdir), "%s", cfgdir);
		return;
	}
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		exit(2);
	for (t = top; t[0] == '.' && t[1] == '/'; t += 2)
		;
	if (strcmp(t, ".") == 0 || *t == '\0')
		snprintf(absdir, sizeof(absdir), "%s/tests/unit/configs", cwd);
	else
		snprintf(absdir, sizeof(absdir), "%s/%s/tests/unit/configs",
		    cwd, t);
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
	CHECK_INT(e.e_nwarnings, 0);
	errors_free(&e);
	if (cf == NULL)
		return;
	CHECK_INT(cf->c_refcnt, 1);
	CHECK_INT(cf->c_workers, 4);
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
	CHECK_STR(cf->c_upstreams[1]->up_name, "echo");
	CHECK_INT(cf->c_upstreams[1]->up_nservers, 1);
	CHECK_INT(cf->c_upstreams[1]->up_balance, WSG_BALANCE_ROUND_ROBIN);
	CHECK_INT(cf->c_upstreams[1]->up_connect_timeout_ms, 5000);

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
	CHECK(lc->lc_ssl_ctx != NULL);
	CHECK_INT(lc->lc_handshake_timeout_ms, 5000);
	CHECK_INT(lc->lc_max_header_bytes, 16384);
	CHECK_INT(lc->lc_nroutes, 3);
	CHECK_STR(lc->lc_routes[0].rt_path, "/chat/");
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
	CHECK_INT(lc->lc_handshake_timeout_ms, 10000);
	CHECK_INT(lc->lc_max_header_bytes, 8192);
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
	CHECK_INT(cf->c_log_level, WSG_LOG_INFO);
	CHECK_STR(cf->c_error_log, "stderr");
	CHECK_STR(cf->c_access_log, "stdout");
	CHECK_INT(cf->c_listeners[0].lc_handshake_timeout_ms, 10000);
	CHECK_INT(cf->c_listeners[0].lc_max_header_bytes, 8192);
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
	snprintf(buf, sizeof(buf), "%s: cannot open: No such file or "
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
	char			 buf[2 * PATH_MAX];

	check_bad("bad-unknown-key.yaml", (const char *const[]){
	    "1:1: unknown key 'admin'",
	    "6:5: unknown key 'proxy_protocol' in listener",
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
	check_bad("bad-policy-content.yaml", (const char *const[]){
	    "/policies/broken.yaml:2:19: max_frame_size: 0 is below the "
	    "minimum 1",
	    "/policies/broken.yaml:3:18: validate_utf8: expected true or "
	    "false, got 'yes'",
	    "/policies/broken.yaml:5:9: idle: invalid duration '2d': "
	    "unknown unit (use ms, s, m, h, or a bare number of seconds)",
	    "/policies/broken.yaml:6:1: unknown key 'origin'",
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
	check_bad("bad-tls-missing-key.yaml", (const char *const[]){
	    "6:20: min_version: '1.1' is not one of 1.2 or 1.3",
	    "5:7: tls is missing 'key'",
	    NULL });
	check_bad("bad-two-docs.yaml", (const char *const[]){
	    "2:1: only one YAML document is allowed",
	    NULL });

	/* No line: the whole file is concerned. */
	memset(&e, 0, sizeof(e));
	CHECK(config_load(fixture("empty.yaml"), &e) == NULL);
	CHECK_INT(e.e_n, 2);
	snprintf(buf, sizeof(buf), "%s: config is missing 'upstreams'",
	    fixture("empty.yaml"));
	if (e.e_n == 2)
		CHECK_STR(e.e_msgs[0], buf);
	errors_free(&e);
	CHECK(config_load(fixture("nonexistent.yaml"), &e) == NULL);
	CHECK_INT(e.e_n, 1);
	snprintf(buf, sizeof(buf), "%s: cannot open: No such file or "
	    "directory", fixture("nonexistent.yaml"));
	if (e.e_n == 1)
		CHECK_STR(e.e_msgs[0], buf);
	errors_free(&e);
}

/* The table itself: sane rows, defaults within their own bounds. */
static void
test_table(void)
{
	size_t	i, j;

	CHECK(config_noptions >= 29);
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
	test_man();
	return unit_done("test_config");
}
