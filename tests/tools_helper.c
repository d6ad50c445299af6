/* SPDX-License-Identifier: MIT */
/* A training program in miniature for tests/test_tools.sh: saves steps of known data, loads a
 * step back and compares it bit for bit. Uses only the public API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"

#define META_SIZE 4099u /* odd: the local writer's tail path */

/* Deterministic bytes for (step, region): half of them zero, so zstd has work to do; all of
 * them zero with TOOLS_ZERO=1 (a compression ratio in the thousands); none of them with
 * TOOLS_RANDOM=1 (incompressible: the drain stores such chunks raw). */
static void gen(unsigned char *p, size_t n, unsigned long long seed)
{
	unsigned long long x = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
	const char *zero = getenv("TOOLS_ZERO"), *rnd = getenv("TOOLS_RANDOM");
	unsigned long long mask = rnd && !strcmp(rnd, "1") ? ~0ull : 0x00ff00ff00ff00ffull;

	if (zero && !strcmp(zero, "1")) {
		memset(p, 0, n);
		return;
	}
	for (size_t i = 0; i < n; i += 8) {
		unsigned long long v;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		v = x & mask;
		memcpy(p + i, &v, n - i < 8 ? n - i : 8);
	}
}

static ckpt_ctx *open_ctx(const char *shared, const char *local, const char *name)
{
	ckpt_config *cfg;
	ckpt_ctx *ctx = NULL;
	const char *chunk = getenv("TOOLS_CHUNK");

	if (ckpt_config_new(&cfg) != CKPT_OK)
		return NULL;
	ckpt_config_set(cfg, "shared_dir", shared);
	ckpt_config_set(cfg, "local_dir", local);
	ckpt_config_set(cfg, "name", name);
	ckpt_config_set(cfg, "keep_shared", "0");
	ckpt_config_set(cfg, "keep_local", "100");
	ckpt_config_set(cfg, "chunk_size", chunk ? chunk : "256K");
	if (ckpt_open(&ctx, cfg) != CKPT_OK)
		fprintf(stderr, "tools_helper: ckpt_open: %s\n", ckpt_errmsg(NULL));
	ckpt_config_free(cfg);
	return ctx;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	ckpt_ctx *ctx;
	size_t size;
	unsigned char *w, *m, *got;
	int rc = 0;

	if (argc < 5 || (strcmp(mode, "save") && strcmp(mode, "check") && strcmp(mode, "latest")) ||
	    (!strcmp(mode, "save") && argc != 8) || (!strcmp(mode, "check") && argc != 7)) {
		fprintf(stderr, "usage: tools_helper save SHARED LOCAL NAME FIRST LAST SIZE\n"
				"       tools_helper check SHARED LOCAL NAME STEP SIZE\n"
				"       tools_helper latest SHARED LOCAL NAME\n");
		return 2;
	}
	if (!(ctx = open_ctx(argv[2], argv[3], argv[4])))
		return 2;
	if (!strcmp(mode, "latest")) {
		unsigned long long s = 0;
		uint64_t st;

		if ((rc = ckpt_latest(ctx, &st)) == CKPT_OK) {
			s = st;
			printf("%llu\n", s);
		} else {
			fprintf(stderr, "tools_helper: latest: %s\n", ckpt_errmsg(ctx));
		}
		ckpt_close(ctx);
		return rc ? 2 : 0;
	}
	size = strtoull(argv[!strcmp(mode, "save") ? 7 : 6], NULL, 0);
	w = malloc(size + 1);
	got = malloc(size + 1);
	m = malloc(META_SIZE);
	if (!w || !got || !m)
		return 2;
	if (!strcmp(mode, "save")) {
		unsigned long long first = strtoull(argv[5], NULL, 10), last = strtoull(argv[6], NULL, 10);

		for (unsigned long long s = first; s <= last && !rc; s++) {
			ckpt_region r[3] = { { "weights", w, size }, { "meta", m, META_SIZE },
					     { "empty", m, 0 } };

			gen(w, size, s * 2);
			gen(m, META_SIZE, s * 2 + 1);
			if ((rc = ckpt_save(ctx, s, r, 3)) != CKPT_OK ||
			    (rc = ckpt_wait(ctx, s)) != CKPT_OK)
				fprintf(stderr, "tools_helper: step %llu: %s\n", s, ckpt_errmsg(ctx));
		}
		if (ckpt_close(ctx) != CKPT_OK)
			rc = 1;
		rc = rc ? 2 : 0;
	} else {
		unsigned long long s = strtoull(argv[5], NULL, 10);
		size_t sz = 1;

		gen(w, size, s * 2);
		gen(m, META_SIZE, s * 2 + 1);
		if ((rc = ckpt_load(ctx, s, "weights", got, size)) != CKPT_OK) {
			fprintf(stderr, "tools_helper: load weights of step %llu: %s\n", s,
				ckpt_errmsg(ctx));
			rc = 2;
		} else if (memcmp(got, w, size)) {
			fprintf(stderr, "tools_helper: weights of step %llu differ\n", s);
			rc = 1;
		} else if ((rc = ckpt_load(ctx, s, "meta", got, META_SIZE)) != CKPT_OK ||
			   ckpt_region_size(ctx, s, "empty", &sz) != CKPT_OK || sz != 0) {
			fprintf(stderr, "tools_helper: load meta/empty of step %llu: %s\n", s,
				ckpt_errmsg(ctx));
			rc = 2;
		} else if (memcmp(got, m, META_SIZE)) {
			fprintf(stderr, "tools_helper: meta of step %llu differs\n", s);
			rc = 1;
		}
		ckpt_close(ctx);
	}
	free(w);
	free(got);
	free(m);
	return rc;
}
