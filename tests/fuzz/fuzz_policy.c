/*
 * libFuzzer harness for the policy loader.  The input becomes a private
 * policy file (see loader.h for the tree around it, with a few keys it
 * may name) and config_load_policy() reads it.  Besides not crashing or
 * leaking, the loader must return a policy exactly when it reported no
 * error, word every message "FILE:LINE:COL: " or "FILE: ", and hand back
 * only policies the session code can use as they are: limits inside
 * their documented ranges, an auth section with its key and header, an
 * origin check that answers.
 */
#include "autoconf.h"

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "loader.h"
#include "jwt.h"
#include "origin.h"
#include "ratelimit.h"
#include "wsgate.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const char *const fuzz_origins[] = {
	"https://chat.example.com", "https://a.chat.example.com",
	"https://chat.example.com.evil.example", "null", "http://127.0.0.1:8080"
};

/* Make the scratch tree once. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_setup("input.yaml");
	return 0;
}

/* What a loaded policy promises the session code. */
static void
fuzz_check_policy(const struct wsg_policy *pol)
{
	enum wsg_origin_result	r;
	size_t			i;

	FUZZ_ASSERT(strcmp(pol->pol_name, "input") == 0);
	FUZZ_ASSERT(pol->pol_max_frame_size >= 1 &&
	    pol->pol_max_frame_size <= WSG_MAX_FRAME_SIZE_LIMIT);
	FUZZ_ASSERT(pol->pol_max_message_size >= 1 &&
	    pol->pol_max_message_size <= WSG_MAX_MESSAGE_SIZE_LIMIT);
	FUZZ_ASSERT(pol->pol_idle_timeout_ms >= 1000);
	FUZZ_ASSERT(pol->pol_nsubprotocols <= WSG_MAX_SUBPROTOCOLS);
	FUZZ_ASSERT(pol->pol_has_subprotocols || pol->pol_nsubprotocols == 0);
	for (i = 0; i < pol->pol_nsubprotocols; i++)
		FUZZ_ASSERT(pol->pol_subprotocols[i] != NULL &&
		    pol->pol_subprotocols[i][0] != '\0');
	if (pol->pol_jwt != NULL) {
		FUZZ_ASSERT(pol->pol_jwt_key != NULL &&
		    pol->pol_jwt->jp_key == pol->pol_jwt_key);
		FUZZ_ASSERT(pol->pol_jwt->jp_algs != 0);
		FUZZ_ASSERT(pol->pol_jwt->jp_leeway >= 0);
		FUZZ_ASSERT(pol->pol_auth_header != NULL &&
		    pol->pol_auth_header[0] != '\0');
		FUZZ_ASSERT(pol->pol_jwt->jp_nrequired ==
		    pol->pol_nrequired_claims);
		/* A garbage token is refused, never accepted. */
		FUZZ_ASSERT(jwt_verify("x.y.z", 5, pol->pol_jwt,
		    INT64_C(1700000000), NULL) != WSG_JWT_OK);
	}
	for (i = 0; i < pol->pol_nforward_claims; i++)
		FUZZ_ASSERT(pol->pol_forward_claims[i].fc_claim != NULL &&
		    pol->pol_forward_claims[i].fc_header != NULL);
	if (pol->pol_origin != NULL) {
		for (i = 0; i < sizeof(fuzz_origins) / sizeof(fuzz_origins[0]);
		    i++) {
			r = origin_check(pol->pol_origin, fuzz_origins[i],
			    strlen(fuzz_origins[i]));
			FUZZ_ASSERT(r == WSG_ORIGIN_OK ||
			    r == WSG_ORIGIN_DENIED || r == WSG_ORIGIN_ERROR);
		}
		r = origin_check(pol->pol_origin, NULL, 0);
		FUZZ_ASSERT(r == (pol->pol_origin->op_allow_missing ?
		    WSG_ORIGIN_OK : WSG_ORIGIN_MISSING));
	}
	if (pol->pol_rate != NULL)
		FUZZ_ASSERT(pol->pol_rate->rc_ipv6_prefix >= 1 &&
		    pol->pol_rate->rc_ipv6_prefix <= 128);
	FUZZ_ASSERT(pol->pol_ngeo_allow == 0 || pol->pol_geoip != NULL);
	FUZZ_ASSERT(pol->pol_ngeo_deny == 0 || pol->pol_geoip != NULL);
}

/* One load per input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wsg_errors	 errs;
	struct wsg_policy	*pol;

	if (size > FUZZ_MAX_IN)
		return 0;
	fuzz_write(fuzz_path, data, size);
	memset(&errs, 0, sizeof(errs));
	pol = config_load_policy(NULL, fuzz_path, &errs);
	FUZZ_ASSERT((pol == NULL) == (errs.e_n > 0));
	fuzz_check_errors(&errs, fuzz_path);
	if (pol != NULL) {
		fuzz_check_policy(pol);
		config_free_policy(pol);
	}
	errors_free(&errs);
	return 0;
}
