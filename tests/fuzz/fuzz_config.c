/*
 * libFuzzer harness for the main configuration loader.  The input becomes
 * a private wsgate.yaml (see loader.h for the tree around it) and
 * config_load() reads it with every policy it names.  Besides not crashing
 * or leaking, the loader must return a generation exactly when it reported
 * no error, word every message "FILE:LINE:COL: " or "FILE: ", and hand
 * back only generations the daemon can run: every route resolved to an
 * upstream and a policy.
 */
#include "autoconf.h"

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "loader.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const char *const fuzz_paths[] = {
	"/", "/echo", "/chat", "/chat/", "/chat/room?x=1", "/x/y/z", "?"
};

/*
 * A TLS listener on the tree's certificate: it must load, or no input
 * could reach the TLS context or the checks made on it below.
 */
static const char	fuzz_tls_conf[] =
    "listeners:\n"
    "  - name: tls\n"
    "    listen: 127.0.0.1:8443\n"
    "    tls: { certificate: tls/server.pem, key: tls/server.key,\n"
    "           client_ca: server.pem }\n"
    "    routes: [{ path: /ws, upstream: up }]\n"
    "upstreams: { up: { servers: [127.0.0.1:9001] } }\n";

/* Make the scratch tree once, and check that it serves a TLS listener. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct wsg_errors	 errs;
	struct wsg_config	*cf;
	size_t			 i;

	(void)argc;
	(void)argv;
	fuzz_setup("wsgate.yaml");
	fuzz_write(fuzz_path, fuzz_tls_conf, strlen(fuzz_tls_conf));
	memset(&errs, 0, sizeof(errs));
	cf = config_load(fuzz_path, &errs);
	for (i = 0; i < errs.e_n; i++)
		fprintf(stderr, "fuzz: %s\n", errs.e_msgs[i]);
	FUZZ_ASSERT(cf != NULL && cf->c_listeners[0].lc_tls &&
	    cf->c_listeners[0].lc_ssl_ctx != NULL);
	config_unref(cf);
	errors_free(&errs);
	return 0;
}

/* What a loaded generation promises the rest of the daemon. */
static void
fuzz_check_config(struct wsg_config *cf)
{
	const struct wsg_listener_conf	*lc;
	const struct wsg_route		*rt;
	size_t				 i, j;

	FUZZ_ASSERT(cf->c_refcnt == 1);
	FUZZ_ASSERT(cf->c_nlisteners >= 1 && cf->c_nupstreams >= 1);
	FUZZ_ASSERT(cf->c_policies_dir != NULL &&
	    cf->c_policies_dir[0] == '/');
	for (i = 0; i < cf->c_nupstreams; i++)
		FUZZ_ASSERT(cf->c_upstreams[i]->up_nservers >= 1);
	for (i = 0; i < cf->c_nlisteners; i++) {
		lc = &cf->c_listeners[i];
		FUZZ_ASSERT(lc->lc_name != NULL && lc->lc_nroutes >= 1);
		FUZZ_ASSERT(!lc->lc_tls || lc->lc_ssl_ctx != NULL);
		for (j = 0; j < lc->lc_nroutes; j++) {
			rt = &lc->lc_routes[j];
			FUZZ_ASSERT(rt->rt_path != NULL &&
			    rt->rt_path_len + (rt->rt_prefix ? 1 : 0) ==
			    strlen(rt->rt_path));
			FUZZ_ASSERT(rt->rt_upstream != NULL);
			FUZZ_ASSERT(rt->rt_policy != NULL);
		}
		for (j = 0; j < sizeof(fuzz_paths) / sizeof(fuzz_paths[0]);
		    j++) {
			rt = config_route_match(lc, fuzz_paths[j],
			    strlen(fuzz_paths[j]));
			FUZZ_ASSERT(rt == NULL || (rt >= lc->lc_routes &&
			    rt < lc->lc_routes + lc->lc_nroutes));
		}
	}
	/* A session's reference outlives a reload's unref. */
	FUZZ_ASSERT(config_ref(cf) == cf);
	config_unref(cf);
	FUZZ_ASSERT(cf->c_refcnt == 1);
}

/* One load per input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wsg_errors	 errs;
	struct wsg_config	*cf;

	if (size > FUZZ_MAX_IN)
		return 0;
	fuzz_write(fuzz_path, data, size);
	memset(&errs, 0, sizeof(errs));
	cf = config_load(fuzz_path, &errs);
	FUZZ_ASSERT((cf == NULL) == (errs.e_n > 0));
	fuzz_check_errors(&errs, fuzz_path);
	if (cf != NULL) {
		fuzz_check_config(cf);
		config_unref(cf);
	}
	errors_free(&errs);
	return 0;
}
