/* SPDX-License-Identifier: MIT */
/* Golden files: version-1 checkpoints written once by libckpt 0.1.0 still read bit-exact, and
 * damaged copies of them are refused; the same for chunk transforms (v1-xform, written once by
 * `tests/test_fixtures --make-v1-xform DIR`, the first libckpt with chunk transforms). */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "harness.h"
#include "shard.h"
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

/* ---- v1-xform: chunk transforms (docs/FORMAT.md 3.8) ---- */

/* Step 9 of job `fixture`, chunk_size 64K, level 1: regions whose chunks take every transform. */
#define XF_N 5
static const char *const xf_names[XF_N] = { "fp32", "bf16", "noise", "zeros", "mixed" };
static const size_t xf_sizes[XF_N] = { 70000, 40002, 5000, 70000, 65536 + 30001 };

static uint32_t lcg(uint32_t *x)
{
	*x = *x * 1103515245u + 12345u;
	return *x >> 16;
}

/* Exactly representable floats (no libm): a slow ramp with a few bits of noise. */
static float xf_float(size_t i, uint32_t *x)
{
	return (float)((int)(i % 2000) - 1000) / 4096.0f + (float)(lcg(x) % 64) / 1048576.0f;
}

static void xf_expected(int r, unsigned char *p)
{
	uint32_t x = 12345u + (uint32_t)r;
	size_t n = xf_sizes[r];

	for (size_t i = 0; i < n; i++) {
		float f;
		unsigned char b[4];

		switch (r) {
		case 0: /* fp32 (the last 2 bytes: a partial element) */
		case 4: /* mixed: fp32, then from 65536 on noise and text */
			if (r == 4 && i >= 65536) {
				p[i] = i < 65536 + 20000 ? (unsigned char)lcg(&x) :
				       (unsigned char)"checkpoint "[i % 11];
				break;
			}
			f = xf_float(i / 4, &x);
			memcpy(b, &f, 4);
			p[i] = b[i % 4]; /* little-endian on every machine that runs the tests */
			break;
		case 1: /* bf16: the high half of each float */
			f = xf_float(i / 2, &x);
			memcpy(b, &f, 4);
			p[i] = b[2 + i % 2];
			break;
		case 2: p[i] = (unsigned char)lcg(&x); break;
		default: p[i] = 0; break;
		}
	}
}

/* Write the fixture under dir/shared (once; the files are then kept forever). */
static int make_v1_xform(const char *dir)
{
	char local[4300], shared[4300];
	unsigned char *data[XF_N];
	ckpt_region reg[XF_N];
	ckpt_config *cfg;
	ckpt_ctx *ctx = NULL;
	int rc;

	snprintf(local, sizeof(local), "%s/local", dir);
	snprintf(shared, sizeof(shared), "%s/shared", dir);
	if (th_sh("mkdir -p '%s' '%s'", local, shared) != 0)
		return 1;
	for (int r = 0; r < XF_N; r++) {
		data[r] = malloc(xf_sizes[r]);
		xf_expected(r, data[r]);
		reg[r] = (ckpt_region){ xf_names[r], data[r], xf_sizes[r] };
	}
	ckpt_config_new(&cfg);
	ckpt_config_set(cfg, "local_dir", local);
	ckpt_config_set(cfg, "shared_dir", shared);
	ckpt_config_set(cfg, "name", "fixture");
	ckpt_config_set(cfg, "chunk_size", "64K");
	ckpt_config_set(cfg, "compress_level", "1");
	if ((rc = ckpt_open(&ctx, cfg)) == CKPT_OK && (rc = ckpt_save(ctx, 9, reg, XF_N)) == CKPT_OK)
		rc = ckpt_wait(ctx, 9);
	if (rc != CKPT_OK)
		fprintf(stderr, "make v1-xform: %s\n", ckpt_errmsg(ctx));
	ckpt_close(ctx);
	ckpt_config_free(cfg);
	for (int r = 0; r < XF_N; r++)
		free(data[r]);
	return rc != CKPT_OK || th_sh("rm -rf '%s'", local) != 0;
}

/* The chunk transforms the fixture's index records, as "xform/width" per chunk. */
static const char *const xf_chunks[XF_N] = { "2/8 2/8", "2/2", "1/1", "1/1 1/1", "2/8 1/1" };

static void test_v1_xform_reads(void)
{
	struct ckpt_shard *sh = NULL;
	char *tmp, pat[4400], got[64];
	ckpt_ctx *ctx = open_copy("v1-xform", &tmp);
	uint64_t step = 0;
	glob_t g;

	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK && step == 9);
	for (int r = 0; r < XF_N; r++) {
		unsigned char *want = malloc(xf_sizes[r]), *buf = malloc(xf_sizes[r]);
		int rc = ckpt_load(ctx, 9, xf_names[r], buf, xf_sizes[r]);

		xf_expected(r, want);
		CU_ASSERT(rc == CKPT_OK && !memcmp(buf, want, xf_sizes[r]));
		if (rc != CKPT_OK)
			fprintf(stderr, "load %s: %s\n", xf_names[r], ckpt_errmsg(ctx));
		free(want);
		free(buf);
	}
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	/* the index as written: transform 1 regions, the chunk transforms above */
	snprintf(pat, sizeof(pat), "%s/shared/fixture/step-00000000000000000009/rank-*.ckz", tmp);
	CU_ASSERT_FATAL(glob(pat, 0, NULL, &g) == 0 && g.gl_pathc == 1);
	CU_ASSERT_FATAL(ckpt_shard__open(&sh, g.gl_pathv[0], NULL) == CKPT_OK);
	globfree(&g);
	for (int r = 0; r < XF_N; r++) {
		const struct ckpt_region_meta *m = ckpt_fmt__find_region(&sh->idx, xf_names[r]);
		size_t len = 0;

		CU_ASSERT_PTR_NOT_NULL_FATAL(m);
		CU_ASSERT_EQUAL(m->transform, 1);
		got[0] = '\0';
		for (uint32_t c = 0; c < m->nchunks && len < sizeof(got) - 8; c++)
			len += (size_t)snprintf(got + len, sizeof(got) - len, "%s%u/%u", c ? " " : "",
						m->chunks[c].xform, m->chunks[c].width);
		if (strcmp(got, xf_chunks[r]))
			fprintf(stderr, "%s: chunks %s\n", xf_names[r], got);
		CU_ASSERT_STRING_EQUAL(got, xf_chunks[r]);
	}
	CU_ASSERT(sh->hdr.version == 1 && sh->hdr.step == 9);
	ckpt_shard__close(sh);
	th_rmtree(tmp);
	free(tmp);
}

/* A bit flipped inside a byte-grouped chunk's planes: its stored hash refuses it. */
static void test_v1_xform_flipped(void)
{
	char *tmp, pat[4400];
	ckpt_ctx *ctx = open_copy("v1-xform", &tmp);
	unsigned char *buf = malloc(70000);
	struct ckpt_shard *sh = NULL;
	const struct ckpt_region_meta *m;
	uint64_t off = 0;
	glob_t g;

	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	snprintf(pat, sizeof(pat), "%s/shared/fixture/step-00000000000000000009/rank-*.ckz", tmp);
	CU_ASSERT_FATAL(glob(pat, 0, NULL, &g) == 0 && g.gl_pathc == 1);
	CU_ASSERT_FATAL(ckpt_shard__open(&sh, g.gl_pathv[0], NULL) == CKPT_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(m = ckpt_fmt__find_region(&sh->idx, "fp32"));
	off = m->chunks[0].offset + m->chunks[0].stored_size / 2; /* inside the planes */
	ckpt_shard__close(sh);
	CU_ASSERT(th_sh("printf '\\377' | dd of='%s' bs=1 seek=%llu conv=notrunc status=none",
			g.gl_pathv[0], (unsigned long long)off) == 0);
	globfree(&g);
	CU_ASSERT_EQUAL(ckpt_load(ctx, 9, "fp32", buf, 70000), CKPT_ECORRUPT);
	printf("(%s) ", ckpt_errmsg(ctx));
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(ctx), "fp32"));
	/* the other regions are intact */
	CU_ASSERT_EQUAL(ckpt_load(ctx, 9, "bf16", buf, 40002), CKPT_OK);
	ckpt_close(ctx);
	th_rmtree(tmp);
	free(tmp);
	free(buf);
}

int main(int argc, char **argv)
{
	CU_pSuite s;

	if (argc == 3 && !strcmp(argv[1], "--make-v1-xform"))
		return make_v1_xform(argv[2]);

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("fixtures", NULL, NULL);
	if (!s || !CU_add_test(s, "v1 golden files read bit-exact", test_v1_reads) ||
	    !CU_add_test(s, "v1 flipped chunk bit is refused", test_flipped_chunk) ||
	    !CU_add_test(s, "v1 truncated shard is not committed", test_truncated_shard) ||
	    !CU_add_test(s, "v1 damaged MANIFEST is not committed", test_bad_manifest) ||
	    !CU_add_test(s, "v1 missing shard is not committed", test_missing_shard) ||
	    !CU_add_test(s, "v1-xform golden files read bit-exact", test_v1_xform_reads) ||
	    !CU_add_test(s, "v1-xform flipped grouped chunk is refused", test_v1_xform_flipped))
		return 1;
	return th_run();
}
