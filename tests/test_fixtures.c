/* SPDX-License-Identifier: MIT */
/* Golden files: version-1 checkpoints written once by libckpt 0.1.0 still read bit-exact, and
 * damaged copies of them are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "harness.h"
#include "step.h"

static const char *fixtures(void)
{
	static char path[4096];
	const char *srcdir = getenv("srcdir");

	snprintf(path, sizeof(path), "%s/tests/fixtures", srcdir && *srcdir ? srcdir : ".");
	return path;
}

static void expected(unsigned char *alpha, unsigned char *beta)
{
	for (size_t i = 0; i < 150000; i++)
		alpha[i] = (unsigned char)((i * 31 + i / 1000) % 251);
	for (size_t i = 0; i < 100; i++)
		beta[i] = (unsigned char)(255 - i);
}

/* Copy a fixture into a temporary place (the source tree may be read-only) and open it. */
static ckpt_ctx *open_copy(const char *which, char **tmp)
{
	char local[4300], shared[4300];
	ckpt_config *cfg;
	ckpt_ctx *ctx = NULL;

	*tmp = th_mkdtemp("fixture");
	if (!*tmp)
		return NULL;
	snprintf(local, sizeof(local), "%s/local", *tmp);
	snprintf(shared, sizeof(shared), "%s/shared", *tmp);
	if (th_sh("mkdir -p '%s' && cp -r '%s/%s/.' '%s/' && chmod -R u+w '%s'", local, fixtures(),
		  which, *tmp, *tmp) != 0)
		return NULL;
	ckpt_config_new(&cfg);
	ckpt_config_set(cfg, "local_dir", local);
	ckpt_config_set(cfg, "shared_dir", shared);
	ckpt_config_set(cfg, "name", "fixture");
	if (ckpt_open(&ctx, cfg) != CKPT_OK)
		fprintf(stderr, "open %s: %s\n", which, ckpt_errmsg(NULL));
	ckpt_config_free(cfg);
	return ctx;
}

static void test_v1_reads(void)
{
	unsigned char *alpha = malloc(150000), *ea = malloc(150000), beta[100], eb[100];
	ckpt_region_info info[3];
	struct ckpt_shard *s;
	size_t n = 0;
	uint64_t step = 0;
	char *tmp, job[4300];
	ckpt_ctx *ctx = open_copy("v1", &tmp);

	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	expected(ea, eb);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK && step == 7);
	CU_ASSERT(ckpt_list_regions(ctx, 7, info, 3, &n) == CKPT_OK && n == 2);
	CU_ASSERT(!strcmp(info[0].name, "alpha") && info[0].size == 150000);
	CU_ASSERT(!strcmp(info[1].name, "beta") && info[1].size == 100);
	/* the local (raw) copy */
	CU_ASSERT(ckpt_load(ctx, 7, "alpha", alpha, 150000) == CKPT_OK && !memcmp(alpha, ea, 150000));
	CU_ASSERT(ckpt_load(ctx, 7, "beta", beta, 100) == CKPT_OK && !memcmp(beta, eb, 100));
	/* header fields as written */
	snprintf(job, sizeof(job), "%s/local/fixture", tmp);
	CU_ASSERT_FATAL(ckpt_step__open_local(&s, job, 7, 0, NULL) == CKPT_OK);
	CU_ASSERT(s->hdr.version == 1 && s->hdr.step == 7 && s->hdr.rank == 0 &&
		  s->hdr.nranks == 1 && s->hdr.nregions == 2 && s->hdr.data_offset == 4096);
	CU_ASSERT(s->file_size == 163840 && s->trl.raw_total == 150100);
	ckpt_shard__close(s);
	/* the shared (compressed) copy, once the node is gone */
	CU_ASSERT(th_sh("rm -rf '%s'", job) == 0);
	memset(alpha, 0, 150000);
	memset(beta, 0, 100);
	CU_ASSERT(ckpt_load(ctx, 7, "alpha", alpha, 150000) == CKPT_OK && !memcmp(alpha, ea, 150000));
	CU_ASSERT(ckpt_load(ctx, 7, "beta", beta, 100) == CKPT_OK && !memcmp(beta, eb, 100));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	th_rmtree(tmp);
	free(tmp);
	free(alpha);
	free(ea);
}

/* kind, expected ckpt_latest result, expected load result */
static void broken(const char *kind, int latest_rc, int load_rc)
{
	unsigned char *alpha = malloc(150000);
	char which[256], *tmp;
	uint64_t step = 0;
	ckpt_ctx *ctx;
	int rc;

	snprintf(which, sizeof(which), "v1-broken/%s", kind);
	ctx = open_copy(which, &tmp);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	rc = ckpt_latest(ctx, &step);
	CU_ASSERT_EQUAL(rc, latest_rc);
	rc = ckpt_load(ctx, 7, "alpha", alpha, 150000);
	CU_ASSERT_EQUAL(rc, load_rc);
	if (rc != load_rc)
		fprintf(stderr, "%s: load gave %d: %s\n", kind, rc, ckpt_errmsg(ctx));
	CU_ASSERT(strlen(ckpt_errmsg(ctx)) > 0);
	ckpt_close(ctx);
	th_rmtree(tmp);
	free(tmp);
	free(alpha);
}

static void test_flipped_chunk(void)
{
	broken("flipped-chunk", CKPT_OK, CKPT_ECORRUPT); /* structure intact, data is not */
}

static void test_truncated_shard(void)
{
	broken("truncated-shard", CKPT_ENOENT, CKPT_ECORRUPT);
}

static void test_bad_manifest(void)
{
	broken("bad-manifest", CKPT_ENOENT, CKPT_ECORRUPT);
}

static void test_missing_shard(void)
{
	broken("missing-shard", CKPT_ENOENT, CKPT_ECORRUPT);
}

int main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("fixtures", NULL, NULL);
	if (!s || !CU_add_test(s, "v1 golden files read bit-exact", test_v1_reads) ||
	    !CU_add_test(s, "v1 flipped chunk bit is refused", test_flipped_chunk) ||
	    !CU_add_test(s, "v1 truncated shard is not committed", test_truncated_shard) ||
	    !CU_add_test(s, "v1 damaged MANIFEST is not committed", test_bad_manifest) ||
	    !CU_add_test(s, "v1 missing shard is not committed", test_missing_shard))
		return 1;
	return th_run();
}
