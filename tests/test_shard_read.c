/* SPDX-License-Identifier: MIT */
/* The shard reader's parallel decoding of a region (ckpt_shard__read_region, as ckpt_load uses it
 * on the shared tier): round trips of many chunks with odd sizes (a region that is not a multiple
 * of the chunk size, one shorter than a chunk, one byte), with and without chunk transforms; a
 * damaged chunk among many detected and named (the lowest one when several are damaged, as the
 * serial reader did); the region checksum still checked after parallel decoding. */
#include <glob.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"
#include "harness.h"
#include "shard.h"

#define CHUNK (64u << 10) /* the smallest chunk_size: many chunks from little data */

static struct th_env E;
static ckpt_ctx *CTX;

static void teardown_ctx(void)
{
	if (CTX)
		ckpt_close(CTX);
	CTX = NULL;
}

/* Also after a fatal assertion: close the context, remove the directories. */
static int suite_clean(void)
{
	teardown_ctx();
	th_env_teardown();
	return 0;
}

/* Regions of awkward sizes: 23 chunks and 13 bytes, exactly 9 chunks, less than one chunk, one
 * byte. Real weights where available (so that the transform groups them), else pseudo-random. */
static const size_t SIZES[] = { 23 * CHUNK + 13, 9 * CHUNK, CHUNK - 7, 1 };
static const char *const NAMES[] = { "odd", "whole", "short", "byte" };
#define NREG (sizeof(SIZES) / sizeof(SIZES[0]))

static uint8_t *DATA[NREG];

static int make_data(void)
{
	for (size_t i = 0; i < NREG; i++) {
		if (!(DATA[i] = malloc(SIZES[i])))
			return -1;
		th_make_data(DATA[i], SIZES[i], i + 1);
	}
	return 0;
}

/* Save step 1 with chunk_transform `mode` and wait for its drain; the shared shard's path. */
static int save_drained(const char *mode, char *path, size_t len)
{
	const char *kv[] = { "chunk_size", "64K", "chunk_transform", mode, "log_level", "0", NULL };
	ckpt_region regs[NREG];
	char pat[4200];
	glob_t g;
	int ok;

	if (th_env_new(&E, "shard_read") < 0 || !(CTX = th_open(&E, kv)))
		return -1;
	for (size_t i = 0; i < NREG; i++)
		regs[i] = (ckpt_region){ NAMES[i], DATA[i], SIZES[i] };
	if (ckpt_save(CTX, 1, regs, NREG) != CKPT_OK || ckpt_wait(CTX, 1) != CKPT_OK)
		return -1;
	snprintf(pat, sizeof(pat), "%s/job/step-*/rank-*.ckz", E.shared);
	if (glob(pat, 0, NULL, &g) != 0)
		return -1;
	ok = g.gl_pathc == 1;
	if (ok)
		snprintf(path, len, "%s", g.gl_pathv[0]);
	globfree(&g);
	return ok ? 0 : -1;
}

static void done_env(void)
{
	teardown_ctx();
	th_env_free(&E);
}

/* Every region read back through the reader, and through ckpt_load from the shared tier alone. */
static void roundtrip(const char *mode)
{
	char path[4200];
	struct ckpt_shard *s = NULL;
	struct ckpt_codec *c = NULL;
	struct ckpt_err err = { "" };

	CU_ASSERT_EQUAL_FATAL(save_drained(mode, path, sizeof(path)), 0);
	CU_ASSERT_EQUAL_FATAL(ckpt_shard__open(&s, path, &err), CKPT_OK);
	CU_ASSERT_EQUAL_FATAL(ckpt_codec__new(&c, 1), CKPT_OK);
	CU_ASSERT_EQUAL(s->idx.nregions, NREG);
	for (uint32_t i = 0; i < s->idx.nregions; i++) {
		const struct ckpt_region_meta *r = &s->idx.regions[i];
		uint8_t *back = malloc(r->raw_size + 1);
		size_t k;

		CU_ASSERT_FATAL(back != NULL);
		for (k = 0; k < NREG && strcmp(NAMES[k], r->name); k++)
			;
		CU_ASSERT_FATAL(k < NREG);
		CU_ASSERT_EQUAL(r->raw_size, SIZES[k]);
		CU_ASSERT_EQUAL(r->nchunks, (SIZES[k] + CHUNK - 1) / CHUNK);
		memset(back, 0xa5, r->raw_size + 1);
		CU_ASSERT_EQUAL(ckpt_shard__read_region(s, r, back, c, &err), CKPT_OK);
		CU_ASSERT(memcmp(back, DATA[k], SIZES[k]) == 0);
		CU_ASSERT_EQUAL(back[r->raw_size], 0xa5); /* nothing written past the buffer */
		free(back);
	}
	ckpt_codec__free(c);
	ckpt_shard__close(s);
	/* ckpt_load from the shared copy: the local one is gone */
	CU_ASSERT_EQUAL(ckpt_close(CTX), CKPT_OK);
	CTX = NULL;
	CU_ASSERT_EQUAL(th_sh("rm -rf '%s/job'", E.local), 0);
	{
		const char *kv[] = { "chunk_size", "64K", "log_level", "0", NULL };

		CU_ASSERT_FATAL((CTX = th_open(&E, kv)) != NULL);
	}
	for (size_t k = 0; k < NREG; k++)
		CU_ASSERT(th_load_eq(CTX, 1, NAMES[k], DATA[k], SIZES[k]));
	done_env();
}

static void test_roundtrip_auto(void)
{
	roundtrip("auto");
}

static void test_roundtrip_none(void)
{
	roundtrip("none");
}

/* Flip one byte in the middle of chunk `chunk` of region `name` in the file at path. */
static int damage(const char *path, const char *name, uint32_t chunk)
{
	struct ckpt_shard *s = NULL;
	struct ckpt_err err = { "" };
	const struct ckpt_region_meta *r;
	uint64_t off;
	uint8_t b;
	int fd, rc = -1;

	if (ckpt_shard__open(&s, path, &err) < 0)
		return -1;
	if ((r = ckpt_fmt__find_region(&s->idx, name)) && chunk < r->nchunks) {
		off = r->chunks[chunk].offset + r->chunks[chunk].stored_size / 2;
		if ((fd = open(path, O_RDWR | O_CLOEXEC)) >= 0) {
			if (pread(fd, &b, 1, (off_t)off) == 1) {
				b ^= 0x10;
				rc = pwrite(fd, &b, 1, (off_t)off) == 1 ? 0 : -1;
			}
			close(fd);
		}
	}
	ckpt_shard__close(s);
	return rc;
}

/* Read region `name`: CKPT_ECORRUPT expected, with `want` in the message. */
static void expect_corrupt(const char *path, const char *name, const char *want)
{
	struct ckpt_shard *s = NULL;
	struct ckpt_codec *c = NULL;
	struct ckpt_err err = { "" };
	const struct ckpt_region_meta *r;
	uint8_t *back;

	CU_ASSERT_EQUAL_FATAL(ckpt_shard__open(&s, path, &err), CKPT_OK);
	CU_ASSERT_EQUAL_FATAL(ckpt_codec__new(&c, 1), CKPT_OK);
	r = ckpt_fmt__find_region(&s->idx, name);
	CU_ASSERT_FATAL(r != NULL);
	back = malloc(r->raw_size);
	CU_ASSERT_FATAL(back != NULL);
	CU_ASSERT_EQUAL(ckpt_shard__read_region(s, r, back, c, &err), CKPT_ECORRUPT);
	if (!strstr(err.msg, want) || !strstr(err.msg, path))
		fprintf(stderr, "message '%s' lacks '%s' or the path\n", err.msg, want);
	CU_ASSERT(strstr(err.msg, want) != NULL);
	CU_ASSERT(strstr(err.msg, path) != NULL);
	free(back);
	ckpt_codec__free(c);
	ckpt_shard__close(s);
}

/* One damaged chunk among 24, then a second, earlier one: the reader names the lowest, every
 * time (the threads race; the answer must not). ckpt_load refuses the region too. */
static void test_corrupt_chunk(void)
{
	char path[4200];

	CU_ASSERT_EQUAL_FATAL(save_drained("auto", path, sizeof(path)), 0);
	CU_ASSERT_EQUAL_FATAL(damage(path, "odd", 17), 0);
	for (int rep = 0; rep < 5; rep++)
		expect_corrupt(path, "odd", "region 'odd' chunk 17 checksum mismatch");
	CU_ASSERT_EQUAL_FATAL(damage(path, "odd", 5), 0);
	for (int rep = 0; rep < 5; rep++)
		expect_corrupt(path, "odd", "region 'odd' chunk 5 checksum mismatch");
	/* and its neighbour, which another thread decodes at the same time */
	CU_ASSERT_EQUAL_FATAL(damage(path, "odd", 6), 0);
	for (int rep = 0; rep < 20; rep++)
		expect_corrupt(path, "odd", "region 'odd' chunk 5 checksum mismatch");
	/* the last chunk, the short one, alone in its region */
	CU_ASSERT_EQUAL_FATAL(damage(path, "whole", 8), 0);
	expect_corrupt(path, "whole", "region 'whole' chunk 8 checksum mismatch");
	/* the untouched regions still read */
	{
		uint8_t *back = malloc(SIZES[2]);
		struct ckpt_shard *s = NULL;
		struct ckpt_codec *c = NULL;
		struct ckpt_err err = { "" };

		CU_ASSERT_FATAL(back != NULL);
		CU_ASSERT_EQUAL_FATAL(ckpt_shard__open(&s, path, &err), CKPT_OK);
		CU_ASSERT_EQUAL_FATAL(ckpt_codec__new(&c, 1), CKPT_OK);
		CU_ASSERT_EQUAL(ckpt_shard__read_region(s, ckpt_fmt__find_region(&s->idx, "short"),
							back, c, &err), CKPT_OK);
		CU_ASSERT(memcmp(back, DATA[2], SIZES[2]) == 0);
		ckpt_codec__free(c);
		ckpt_shard__close(s);
		free(back);
	}
	/* ckpt_load of the damaged region from the shared tier alone */
	CU_ASSERT_EQUAL(ckpt_close(CTX), CKPT_OK);
	CTX = NULL;
	CU_ASSERT_EQUAL(th_sh("rm -rf '%s/job'", E.local), 0);
	{
		const char *kv[] = { "log_level", "0", NULL };
		uint8_t *back = malloc(SIZES[0]);

		CU_ASSERT_FATAL(back != NULL);
		CU_ASSERT_FATAL((CTX = th_open(&E, kv)) != NULL);
		CU_ASSERT_EQUAL(ckpt_load(CTX, 1, "odd", back, SIZES[0]), CKPT_ECORRUPT);
		CU_ASSERT(strstr(ckpt_errmsg(CTX), "chunk 5 checksum mismatch") != NULL);
		free(back);
	}
	done_env();
}

/* Every chunk intact but the region's checksum other than the raw bytes': the parallel hash must
 * still catch it (the index is changed in memory: on disk its own checksum would say so first). */
static void test_region_checksum(void)
{
	char path[4200];
	struct ckpt_shard *s = NULL;
	struct ckpt_codec *c = NULL;
	struct ckpt_err err = { "" };
	struct ckpt_region_meta *r;
	uint8_t *back = malloc(SIZES[0]);

	CU_ASSERT_FATAL(back != NULL);
	CU_ASSERT_EQUAL_FATAL(save_drained("auto", path, sizeof(path)), 0);
	CU_ASSERT_EQUAL_FATAL(ckpt_shard__open(&s, path, &err), CKPT_OK);
	CU_ASSERT_EQUAL_FATAL(ckpt_codec__new(&c, 1), CKPT_OK);
	r = (struct ckpt_region_meta *)ckpt_fmt__find_region(&s->idx, "odd");
	CU_ASSERT_FATAL(r != NULL);
	CU_ASSERT_EQUAL(ckpt_shard__read_region(s, r, back, c, &err), CKPT_OK);
	r->raw_xxh3 ^= 1;
	CU_ASSERT_EQUAL(ckpt_shard__read_region(s, r, back, c, &err), CKPT_ECORRUPT);
	CU_ASSERT(strstr(err.msg, "region 'odd' checksum mismatch") != NULL);
	ckpt_codec__free(c);
	ckpt_shard__close(s);
	free(back);
	done_env();
}

/* Give rank 0 of the MANIFEST beside the shard at path the index checksum `ix`. */
static int reseal_manifest(const char *path, uint64_t ix)
{
	char mp[4200];
	uint8_t buf[4096];
	struct ckpt_manifest m;
	struct ckpt_err err = { "" };
	ssize_t n;
	int fd, rc = -1;

	snprintf(mp, sizeof(mp), "%s", path);
	snprintf(strrchr(mp, '/') + 1, sizeof(mp) - (size_t)(strrchr(mp, '/') + 1 - mp),
		 "MANIFEST");
	if ((fd = open(mp, O_RDWR | O_CLOEXEC)) < 0)
		return -1;
	if ((n = pread(fd, buf, sizeof(buf), 0)) > 0 &&
	    ckpt_fmt__decode_manifest(&m, buf, (size_t)n, &err) == CKPT_OK) {
		m.ranks[0].index_xxh3 = ix;
		if (ckpt_fmt__manifest_size(m.nranks) == (size_t)n) {
			ckpt_fmt__encode_manifest(buf, &m);
			rc = pwrite(fd, buf, (size_t)n, 0) == n ? 0 : -1;
		}
		ckpt_fmt__manifest_free(&m);
	}
	close(fd);
	return rc;
}

/* Change region `name`'s raw_xxh3 in the file at path and seal the index again (its checksum in
 * the trailer and in the MANIFEST): every chunk stays intact, only the region checksum disagrees
 * with the bytes. */
static int rewrite_region_hash(const char *path, const char *name)
{
	struct ckpt_shard *s = NULL;
	struct ckpt_err err = { "" };
	struct ckpt_region_meta *r;
	struct ckpt_trailer t;
	uint8_t *buf = NULL;
	size_t isz;
	int fd = -1, rc = -1;

	if (ckpt_shard__open(&s, path, &err) < 0)
		return -1;
	if (!(r = (struct ckpt_region_meta *)ckpt_fmt__find_region(&s->idx, name)))
		goto out;
	r->raw_xxh3 ^= 0x100;
	isz = ckpt_fmt__index_size(s->idx.regions, s->idx.nregions);
	if (isz != s->trl.index_size || !(buf = malloc(isz + CKPT_TRAILER_SIZE)))
		goto out;
	ckpt_fmt__encode_index(buf, s->idx.regions, s->idx.nregions);
	t = s->trl;
	t.index_xxh3 = ckpt_codec__xxh3(buf, isz);
	ckpt_fmt__encode_trailer(buf + isz, &t);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) >= 0 &&
	    pwrite(fd, buf, isz + CKPT_TRAILER_SIZE, (off_t)t.index_offset) ==
		    (ssize_t)(isz + CKPT_TRAILER_SIZE))
		rc = reseal_manifest(path, t.index_xxh3);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	ckpt_shard__close(s);
	return rc;
}

/* The same on disk: the reader, and the restore tool (tools/ckpt of this build, which decodes on
 * its own threads, tools/tool_read.c), refuse the region. */
static void test_region_checksum_on_disk(void)
{
	char path[4200];

	CU_ASSERT_EQUAL_FATAL(save_drained("auto", path, sizeof(path)), 0);
	CU_ASSERT_EQUAL(ckpt_close(CTX), CKPT_OK);
	CTX = NULL;
	CU_ASSERT_EQUAL_FATAL(rewrite_region_hash(path, "odd"), 0);
	expect_corrupt(path, "odd", "region 'odd' checksum mismatch");
	if (access("tools/ckpt", X_OK) == 0) {
		CU_ASSERT_EQUAL(th_sh("rm -rf '%s/job' && tools/ckpt restore --shared-dir '%s' "
				      "--local-dir '%s' --name job --step 1 --quiet 2>'%s/err'",
				      E.local, E.shared, E.local, E.base), 2); /* 2: damaged */
		CU_ASSERT_EQUAL(th_sh("grep -q \"region 'odd' checksum mismatch\" '%s/err'",
				      E.base), 0);
	} else {
		fprintf(stderr, "tools/ckpt not built here: the restore tool's part not run\n");
	}
	done_env();
}

int main(void)
{
	CU_pSuite s;

	th_clean_environment();
	if (CU_initialize_registry() != CUE_SUCCESS || make_data() < 0)
		return 1;
	s = CU_add_suite("shard_read", NULL, suite_clean);
	if (!s || !CU_add_test(s, "parallel round trip, transform auto", test_roundtrip_auto) ||
	    !CU_add_test(s, "parallel round trip, transform none", test_roundtrip_none) ||
	    !CU_add_test(s, "damaged chunk among many", test_corrupt_chunk) ||
	    !CU_add_test(s, "region checksum after parallel decode", test_region_checksum) ||
	    !CU_add_test(s, "region checksum on disk, reader and restore tool",
			 test_region_checksum_on_disk)) {
		CU_cleanup_registry();
		return 1;
	}
	return th_run();
}
