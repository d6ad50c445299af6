/* SPDX-License-Identifier: MIT */
/* Public API: argument checks, open errors, save/load round trips on both tiers, retention. */
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "harness.h"

#define MIB (1024u * 1024u)

/* ---- helpers ---- */

static void step_dir(char *buf, size_t len, const char *tier, uint64_t step)
{
	snprintf(buf, len, "%s/job/step-%020llu", tier, (unsigned long long)step);
}

static void local_file(char *buf, size_t len, const struct th_env *e, uint64_t step)
{
	snprintf(buf, len, "%s/job/step-%020llu/rank-000000.ckl", e->local,
		 (unsigned long long)step);
}

static int exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Number of step-* directories directly under dir (-1 when dir cannot be read). */
static int count_step_dirs(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	struct stat st;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, "step-", 5) &&
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(st.st_mode))
			n++;
	closedir(d);
	return n;
}

/* Path of the first file in dir whose name matches pattern; 0 when found. */
static int find_file(const char *dir, const char *pattern, char *buf, size_t len)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int rc = -1;

	if (!d)
		return -1;
	while (rc && (e = readdir(d)))
		if (!fnmatch(pattern, e->d_name, 0) &&
		    (size_t)snprintf(buf, len, "%s/%s", dir, e->d_name) < len)
			rc = 0;
	closedir(d);
	return rc;
}

/* XOR one byte of a file at offset off (negative: from the end). */
static int flip_byte(const char *path, long long off)
{
	int fd = open(path, O_RDWR);
	unsigned char b;
	struct stat st;
	int ok = -1;

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) == 0) {
		if (off < 0)
			off += st.st_size;
		if (off >= 0 && off < st.st_size && pread(fd, &b, 1, off) == 1) {
			b ^= 0x5a;
			if (pwrite(fd, &b, 1, off) == 1 && fsync(fd) == 0)
				ok = 0;
		}
	}
	close(fd);
	return ok;
}

static long long file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static void wipe_local(const struct th_env *e)
{
	th_sh("rm -rf '%s'/job", e->local);
}

/* ---- argument checks ---- */

static void test_null_args(void)
{
	struct th_env e;
	ckpt_config *cfg;
	ckpt_ctx *ctx;
	ckpt_region_info info[1];
	ckpt_region reg = { "a", "x", 1 };
	uint64_t step;
	size_t sz, count;
	int state;
	char buf[4];

	CU_ASSERT_FATAL(th_env_new(&e, "api-null") == 0);
	CU_ASSERT(ckpt_config_new(NULL) == CKPT_EINVAL);
	CU_ASSERT(ckpt_config_set(NULL, "name", "x") == CKPT_EINVAL);
	CU_ASSERT(ckpt_config_get(NULL, "name") == NULL);
	CU_ASSERT_PTR_NOT_NULL(ckpt_config_errmsg(NULL));
	ckpt_config_free(NULL);

	CU_ASSERT_FATAL(ckpt_config_new(&cfg) == CKPT_OK);
	CU_ASSERT(ckpt_config_set(cfg, NULL, "x") == CKPT_EINVAL);
	CU_ASSERT(ckpt_config_set(cfg, "name", NULL) == CKPT_EINVAL);
	CU_ASSERT(strlen(ckpt_config_errmsg(cfg)) > 0);
	CU_ASSERT(ckpt_config_set(cfg, "no_such_key", "1") == CKPT_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_config_errmsg(cfg), "no_such_key"));
	CU_ASSERT(ckpt_config_get(cfg, NULL) == NULL);
	CU_ASSERT(ckpt_config_get(cfg, "no_such_key") == NULL);

	ctx = NULL;
	CU_ASSERT(ckpt_open(NULL, cfg) == CKPT_EINVAL);
	CU_ASSERT(strlen(ckpt_errmsg(NULL)) > 0);
	CU_ASSERT(ckpt_open(&ctx, NULL) == CKPT_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(ckpt_errmsg(NULL));
	CU_ASSERT(strlen(ckpt_errmsg(NULL)) > 0);
	{
		int rc = ckpt_open_mpi_f(NULL, cfg, 0);

		CU_ASSERT(rc == CKPT_EINVAL || rc == CKPT_ENOTSUP);
		rc = ckpt_open_mpi_f(&ctx, NULL, 0);
		CU_ASSERT(rc == CKPT_EINVAL || rc == CKPT_ENOTSUP);
	}
	ckpt_config_free(cfg);

	CU_ASSERT(ckpt_save(NULL, 1, &reg, 1) == CKPT_EINVAL);
	CU_ASSERT(ckpt_wait(NULL, 1) == CKPT_EINVAL);
	CU_ASSERT(ckpt_wait(NULL, CKPT_STEP_ALL) == CKPT_EINVAL);
	CU_ASSERT(ckpt_poll(NULL, 1, &state) == CKPT_EINVAL);
	CU_ASSERT(ckpt_latest(NULL, &step) == CKPT_EINVAL);
	CU_ASSERT(ckpt_region_size(NULL, 1, "a", &sz) == CKPT_EINVAL);
	CU_ASSERT(ckpt_list_regions(NULL, 1, info, 1, &count) == CKPT_EINVAL);
	CU_ASSERT(ckpt_load(NULL, 1, "a", buf, 1) == CKPT_EINVAL);
	CU_ASSERT(ckpt_close(NULL) == CKPT_OK);
	CU_ASSERT_PTR_NOT_NULL(ckpt_errmsg(NULL));

	/* NULLs past a valid context */
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT_STRING_EQUAL(ckpt_errmsg(ctx), "");
	CU_ASSERT(ckpt_save(ctx, 1, NULL, 1) == CKPT_EINVAL);
	CU_ASSERT(strlen(ckpt_errmsg(ctx)) > 0);
	CU_ASSERT(ckpt_save(ctx, 1, &reg, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 1) == CKPT_OK);
	CU_ASSERT(ckpt_poll(ctx, 1, NULL) == CKPT_EINVAL);
	CU_ASSERT(ckpt_latest(ctx, NULL) == CKPT_EINVAL);
	CU_ASSERT(ckpt_region_size(ctx, 1, NULL, &sz) == CKPT_EINVAL);
	CU_ASSERT(ckpt_region_size(ctx, 1, "a", NULL) == CKPT_EINVAL);
	CU_ASSERT(ckpt_list_regions(ctx, 1, info, 1, NULL) == CKPT_EINVAL);
	CU_ASSERT(ckpt_list_regions(ctx, 1, NULL, 1, &count) == CKPT_EINVAL);
	CU_ASSERT(ckpt_load(ctx, 1, NULL, buf, 1) == CKPT_EINVAL);
	CU_ASSERT(ckpt_load(ctx, 1, "a", NULL, 1) == CKPT_EINVAL);
	CU_ASSERT(strlen(ckpt_errmsg(ctx)) > 0);
	/* and still usable */
	CU_ASSERT(th_load_eq(ctx, 1, "a", "x", 1));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	th_env_free(&e);
}

static void test_strerror_version(void)
{
	const char *v = ckpt_version();
	int a, b, c;

	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	CU_ASSERT(sscanf(v, "%d.%d.%d", &a, &b, &c) == 3);
	for (int rc = 0; rc >= CKPT_ESTALE; rc--) {
		CU_ASSERT_PTR_NOT_NULL(ckpt_strerror(rc));
		CU_ASSERT(strlen(ckpt_strerror(rc)) > 0);
		for (int o = rc + 1; o <= 0; o++)
			CU_ASSERT(strcmp(ckpt_strerror(rc), ckpt_strerror(o)) != 0);
	}
	CU_ASSERT_PTR_NOT_NULL(ckpt_strerror(-12345));
	CU_ASSERT_PTR_NOT_NULL(ckpt_strerror(42));
}

/* ---- ckpt_open errors ---- */

static int try_open(const char *local, const char *shared, ckpt_ctx **ctx)
{
	ckpt_config *cfg;
	int rc;

	*ctx = NULL;
	if (ckpt_config_new(&cfg) != CKPT_OK)
		return 1;
	if (local)
		ckpt_config_set(cfg, "local_dir", local);
	if (shared)
		ckpt_config_set(cfg, "shared_dir", shared);
	ckpt_config_set(cfg, "name", "job");
	rc = ckpt_open(ctx, cfg);
	ckpt_config_free(cfg);
	return rc;
}

static void test_open_errors(void)
{
	struct th_env e;
	ckpt_ctx *ctx;
	char path[4200], file[4200];
	int rc;

	unsetenv("CKPT_LOCAL_DIR");
	unsetenv("CKPT_SHARED_DIR");
	CU_ASSERT_FATAL(th_env_new(&e, "api-open") == 0);

	rc = try_open(NULL, e.shared, &ctx);
	CU_ASSERT(rc == CKPT_EINVAL);
	CU_ASSERT_PTR_NULL(ctx);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(NULL), "local_dir"));

	rc = try_open(e.local, NULL, &ctx);
	CU_ASSERT(rc == CKPT_EINVAL);
	CU_ASSERT_PTR_NULL(ctx);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(NULL), "shared_dir"));

	/* a missing shared_dir is never created: it may be an unmounted volume */
	snprintf(path, sizeof(path), "%s/not-mounted", e.base);
	rc = try_open(e.local, path, &ctx);
	CU_ASSERT(rc < 0 && rc != CKPT_OK);
	CU_ASSERT_PTR_NULL(ctx);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(NULL), "does not exist"));
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(NULL), path));
	CU_ASSERT(!exists(path));
	snprintf(file, sizeof(file), "%s/job", e.local);
	CU_ASSERT(!exists(file)); /* nothing created on the local tier either */

	/* a file instead of a directory, for either key */
	snprintf(file, sizeof(file), "%s/plain-file", e.base);
	CU_ASSERT(th_sh("echo x > '%s'", file) == 0);
	rc = try_open(e.local, file, &ctx);
	CU_ASSERT(rc == CKPT_EINVAL);
	CU_ASSERT_PTR_NULL(ctx);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(NULL), "not a directory"));
	rc = try_open(file, e.shared, &ctx);
	CU_ASSERT(rc == CKPT_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(NULL), "not a directory"));

	/* shared_dir equal to local_dir, spelled differently, or inside it */
	rc = try_open(e.local, e.local, &ctx);
	CU_ASSERT(rc == CKPT_EINVAL);
	CU_ASSERT_PTR_NULL(ctx);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(NULL), "same directory"));
	snprintf(path, sizeof(path), "%s/../local/", e.local);
	rc = try_open(e.local, path, &ctx);
	CU_ASSERT(rc == CKPT_EINVAL);
	snprintf(path, sizeof(path), "%s/sub", e.local);
	CU_ASSERT(mkdir(path, 0755) == 0);
	rc = try_open(e.local, path, &ctx);
	CU_ASSERT(rc == CKPT_EINVAL);
	CU_ASSERT_PTR_NULL(ctx);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(NULL), "inside"));
	/* a sibling whose name starts like local_dir is not inside it */
	snprintf(path, sizeof(path), "%s2", e.local);
	CU_ASSERT(mkdir(path, 0755) == 0);
	rc = try_open(e.local, path, &ctx);
	CU_ASSERT(rc == CKPT_OK);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	/* local_dir inside shared_dir is allowed (odd, but not dangerous) */
	snprintf(path, sizeof(path), "%s/loc", e.shared);
	CU_ASSERT(mkdir(path, 0755) == 0);
	rc = try_open(path, e.shared, &ctx);
	CU_ASSERT(rc == CKPT_OK);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	th_env_free(&e);
}

static void test_env_vars(void)
{
	struct th_env e;
	ckpt_config *cfg;
	ckpt_ctx *ctx = NULL;
	ckpt_region r = { "w", NULL, 3 * MIB + 5 };
	void *data = malloc(r.size);
	char job[4200];

	CU_ASSERT_FATAL(th_env_new(&e, "api-env") == 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(data);
	th_make_data(data, r.size, 11);
	r.data = data;
	setenv("CKPT_LOCAL_DIR", e.local, 1);
	setenv("CKPT_SHARED_DIR", e.shared, 1);
	setenv("CKPT_NAME", "envjob", 1);
	CU_ASSERT_FATAL(ckpt_config_new(&cfg) == CKPT_OK);
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "local_dir"), e.local);
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "shared_dir"), e.shared);
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "name"), "envjob");
	CU_ASSERT(ckpt_open(&ctx, cfg) == CKPT_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_save(ctx, 3, &r, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 3) == CKPT_OK);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	snprintf(job, sizeof(job), "%s/envjob/step-%020d", e.shared, 3);
	CU_ASSERT(th_count_files(job, "MANIFEST") == 1);
	snprintf(job, sizeof(job), "%s/envjob/step-%020d", e.local, 3);
	CU_ASSERT(th_count_files(job, "rank-000000.ckl") == 1);
	ckpt_config_free(cfg);

	/* A bad variable fails ckpt_open naming it, unless the program sets the key. */
	setenv("CKPT_COMPRESS_LEVEL", "fast", 1);
	CU_ASSERT_FATAL(ckpt_config_new(&cfg) == CKPT_OK);
	ctx = NULL;
	CU_ASSERT(ckpt_open(&ctx, cfg) == CKPT_EINVAL);
	CU_ASSERT_PTR_NULL(ctx);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(NULL), "CKPT_COMPRESS_LEVEL"));
	unsetenv("CKPT_COMPRESS_LEVEL");
	CU_ASSERT(ckpt_config_set(cfg, "compress_level", "2") == CKPT_OK);
	CU_ASSERT(ckpt_open(&ctx, cfg) == CKPT_OK);
	if (ctx) {
		uint64_t step = 0;

		CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
		CU_ASSERT(step == 3);
		CU_ASSERT(th_load_eq(ctx, 3, "w", data, r.size));
		CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	}
	ckpt_config_free(cfg);
	unsetenv("CKPT_LOCAL_DIR");
	unsetenv("CKPT_SHARED_DIR");
	unsetenv("CKPT_NAME");
	free(data);
	th_env_free(&e);
}

/* ---- round trips ---- */

/* Several regions of awkward sizes and addresses, with a context configured by kv: checks
 * save/poll/wait/latest/region_size/list_regions/load on the local tier, then on the shared tier
 * with the local directory wiped, then again after close and reopen. */
static void roundtrip(const char *tag, const char *const *kv)
{
	enum { NR = 7 };
	static const size_t sizes[NR] = { 0, 1, 4095, 4097, 3 * MIB + 123, 0, 65536 };
	const char *names[NR] = { "empty", "one", "just-under-page", "just-over-page",
				  "unaligned-big", "empty-with-ptr", "aligned" };
	ckpt_region regs[NR];
	ckpt_region_info info[NR + 2];
	unsigned char *mem[NR], *raw[NR];
	struct th_env e;
	ckpt_ctx *ctx;
	uint64_t step = 0;
	size_t count = 99, sz;
	int state = -1;

	CU_ASSERT_FATAL(th_env_new(&e, tag) == 0);
	for (int i = 0; i < NR; i++) {
		/* one byte in front of each buffer: regions start at odd addresses */
		raw[i] = malloc(sizes[i] + 2);
		CU_ASSERT_PTR_NOT_NULL_FATAL(raw[i]);
		mem[i] = raw[i] + 1;
		th_make_data(mem[i], sizes[i], 100 + (uint64_t)i);
		regs[i] = (ckpt_region){ names[i], mem[i], sizes[i] };
	}
	regs[0].data = NULL; /* NULL data is fine for size 0 */

	ctx = th_open(&e, kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_ENOENT);
	CU_ASSERT(ckpt_save(ctx, 42, regs, NR) == CKPT_OK);
	CU_ASSERT(ckpt_poll(ctx, 42, &state) == CKPT_OK);
	CU_ASSERT(state == CKPT_STATE_LOCAL || state == CKPT_STATE_COMMITTED);
	/* the buffers may be reused as soon as ckpt_save returns */
	for (int i = 0; i < NR; i++)
		memset(mem[i], 0, sizes[i]);
	for (int i = 0; i < NR; i++)
		th_make_data(mem[i], sizes[i], 100 + (uint64_t)i);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
	CU_ASSERT(step == 42);
	CU_ASSERT(ckpt_wait(ctx, 42) == CKPT_OK);
	CU_ASSERT(ckpt_poll(ctx, 42, &state) == CKPT_OK);
	CU_ASSERT(state == CKPT_STATE_COMMITTED);
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);

	CU_ASSERT(ckpt_list_regions(ctx, 42, NULL, 0, &count) == CKPT_OK);
	CU_ASSERT(count == NR);
	CU_ASSERT(ckpt_list_regions(ctx, 42, info, 2, &count) == CKPT_OK);
	CU_ASSERT(count == NR);
	CU_ASSERT_STRING_EQUAL(info[1].name, "one");
	memset(info, 0, sizeof(info));
	CU_ASSERT(ckpt_list_regions(ctx, 42, info, NR + 2, &count) == CKPT_OK);
	CU_ASSERT(count == NR);
	for (int i = 0; i < NR; i++) {
		CU_ASSERT_STRING_EQUAL(info[i].name, names[i]);
		CU_ASSERT(info[i].size == sizes[i]);
		CU_ASSERT(ckpt_region_size(ctx, 42, names[i], &sz) == CKPT_OK);
		CU_ASSERT(sz == sizes[i]);
		CU_ASSERT(th_load_eq(ctx, 42, names[i], mem[i], sizes[i]));
	}
	CU_ASSERT(ckpt_load(ctx, 42, "empty", NULL, 0) == CKPT_OK);

	/* the shared tier alone */
	wipe_local(&e);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
	CU_ASSERT(step == 42);
	CU_ASSERT(ckpt_list_regions(ctx, 42, info, NR, &count) == CKPT_OK);
	CU_ASSERT(count == NR);
	for (int i = 0; i < NR; i++) {
		CU_ASSERT_STRING_EQUAL(info[i].name, names[i]);
		CU_ASSERT(ckpt_region_size(ctx, 42, names[i], &sz) == CKPT_OK);
		CU_ASSERT(sz == sizes[i]);
		CU_ASSERT(th_load_eq(ctx, 42, names[i], mem[i], sizes[i]));
	}
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);

	ctx = th_open(&e, kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
	CU_ASSERT(step == 42);
	for (int i = 0; i < NR; i++)
		CU_ASSERT(th_load_eq(ctx, 42, names[i], mem[i], sizes[i]));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	CU_ASSERT(th_count_files(e.base, ".tmp.*") == 0);
	for (int i = 0; i < NR; i++)
		free(raw[i]);
	th_env_free(&e);
}

static void test_roundtrip_default(void)
{
	roundtrip("api-rt", NULL);
}

static void test_roundtrip_posix(void)
{
	static const char *const kv[] = { "io_backend", "posix", NULL };

	roundtrip("api-posix", kv);
}

static void test_roundtrip_uring(void)
{
#ifdef HAVE_LIBURING
	static const char *const kv[] = { "io_backend", "uring", NULL };
	struct th_env e;
	ckpt_config *cfg;
	ckpt_ctx *ctx = NULL;
	int rc;

	/* io_uring may be forbidden by a seccomp profile: then ckpt_open says so (ENOTSUP). */
	CU_ASSERT_FATAL(th_env_new(&e, "api-uring-probe") == 0);
	CU_ASSERT_FATAL(ckpt_config_new(&cfg) == CKPT_OK);
	ckpt_config_set(cfg, "local_dir", e.local);
	ckpt_config_set(cfg, "shared_dir", e.shared);
	ckpt_config_set(cfg, "io_backend", "uring");
	rc = ckpt_open(&ctx, cfg);
	ckpt_config_free(cfg);
	ckpt_close(ctx);
	th_env_free(&e);
	if (rc == CKPT_ENOTSUP) {
		printf("\n  skipped: io_uring unavailable here: %s\n", ckpt_errmsg(NULL));
		return;
	}
	CU_ASSERT(rc == CKPT_OK);
	roundtrip("api-uring", kv);
#else
	printf("\n  skipped: built without liburing\n");
#endif
}

static void test_roundtrip_threads1(void)
{
	static const char *const kv[] = { "drain_threads", "1", "chunk_size", "64K", NULL };

	roundtrip("api-t1", kv);
}

static void test_roundtrip_threads4(void)
{
	static const char *const kv[] = { "drain_threads", "4", "chunk_size", "64K", NULL };

	roundtrip("api-t4", kv);
}

static void test_roundtrip_level3(void)
{
	static const char *const kv[] = { "compress_level", "3", "io_depth", "1", NULL };

	roundtrip("api-l3", kv);
}

/* Regions larger than the 8 MiB bounce buffer, aligned (written in place) and not. */
static void test_large_regions(void)
{
	const size_t big = 20 * MIB, odd = 20 * MIB - 3;
	unsigned char *a = NULL, *braw = malloc(odd + 1);
	ckpt_region regs[2];
	struct th_env e;
	ckpt_ctx *ctx;

	CU_ASSERT_FATAL(th_env_new(&e, "api-big") == 0);
	CU_ASSERT_FATAL(posix_memalign((void **)&a, 4096, big) == 0 && braw);
	th_make_data(a, big, 1);
	th_make_data(braw + 1, odd, 2);
	regs[0] = (ckpt_region){ "aligned-20M", a, big };
	regs[1] = (ckpt_region){ "unaligned-20M", braw + 1, odd };
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_save(ctx, 1, regs, 2) == CKPT_OK);
	CU_ASSERT(th_load_eq(ctx, 1, "aligned-20M", a, big));
	CU_ASSERT(th_load_eq(ctx, 1, "unaligned-20M", braw + 1, odd));
	CU_ASSERT(ckpt_wait(ctx, 1) == CKPT_OK);
	wipe_local(&e);
	CU_ASSERT(th_load_eq(ctx, 1, "aligned-20M", a, big));
	CU_ASSERT(th_load_eq(ctx, 1, "unaligned-20M", braw + 1, odd));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free(a);
	free(braw);
	th_env_free(&e);
}

static void test_many_regions(void)
{
	enum { N = 1000 };
	ckpt_region *regs = calloc(N, sizeof(*regs));
	ckpt_region_info *info = calloc(N, sizeof(*info));
	char (*names)[16] = calloc(N, sizeof(*names));
	unsigned char *data;
	size_t total = 0, off = 0, count = 0;
	struct th_env e;
	ckpt_ctx *ctx;
	int bad = 0;

	CU_ASSERT_FATAL(regs && info && names);
	for (int i = 0; i < N; i++)
		total += (size_t)(i * 37 % 3001);
	CU_ASSERT_PTR_NOT_NULL_FATAL(data = malloc(total));
	th_make_data(data, total, 5);
	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "r%04d", N - 1 - i); /* not sorted by name */
		regs[i] = (ckpt_region){ names[i], data + off, (size_t)(i * 37 % 3001) };
		off += regs[i].size;
	}
	CU_ASSERT_FATAL(th_env_new(&e, "api-many") == 0);
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_save(ctx, 9, regs, N) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 9) == CKPT_OK);
	for (int pass = 0; pass < 2; pass++) {
		CU_ASSERT(ckpt_list_regions(ctx, 9, info, N, &count) == CKPT_OK);
		CU_ASSERT(count == N);
		for (int i = 0; i < N; i++) {
			if (strcmp(info[i].name, names[i]) || info[i].size != regs[i].size)
				bad++;
			if (!th_load_eq(ctx, 9, names[i], regs[i].data, regs[i].size))
				bad++;
		}
		CU_ASSERT(bad == 0);
		wipe_local(&e); /* second pass: from the shared tier */
	}
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free(data);
	free(regs);
	free(info);
	free(names);
	th_env_free(&e);
}

/* A step without regions is a valid (empty) checkpoint. */
static void test_zero_regions(void)
{
	struct th_env e;
	ckpt_ctx *ctx;
	size_t count = 99;
	uint64_t step = 0;

	CU_ASSERT_FATAL(th_env_new(&e, "api-zero") == 0);
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_save(ctx, 5, NULL, 0) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 5) == CKPT_OK);
	CU_ASSERT(ckpt_list_regions(ctx, 5, NULL, 0, &count) == CKPT_OK);
	CU_ASSERT(count == 0);
	wipe_local(&e);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
	CU_ASSERT(step == 5);
	count = 99;
	CU_ASSERT(ckpt_list_regions(ctx, 5, NULL, 0, &count) == CKPT_OK);
	CU_ASSERT(count == 0);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	th_env_free(&e);
}

/* ---- invalid saves and loads ---- */

static void expect_bad_save(ckpt_ctx *ctx, const struct th_env *e, uint64_t step,
			    const ckpt_region *regs, size_t n, const char *what)
{
	char dir[4200];
	int rc = ckpt_save(ctx, step, regs, n);

	CU_ASSERT(rc == CKPT_EINVAL);
	if (!strstr(ckpt_errmsg(ctx), what)) {
		fprintf(stderr, "errmsg '%s' does not mention '%s'\n", ckpt_errmsg(ctx), what);
		CU_FAIL("error message does not name the problem");
	}
	step_dir(dir, sizeof(dir), e->local, step);
	CU_ASSERT(!exists(dir));
	step_dir(dir, sizeof(dir), e->shared, step);
	CU_ASSERT(!exists(dir));
}

static void test_bad_regions(void)
{
	char longname[CKPT_NAME_MAX + 2], maxname[CKPT_NAME_MAX + 1];
	ckpt_region r[3];
	struct th_env e;
	ckpt_ctx *ctx;
	uint64_t step = 0;
	int state = -1;

	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0'; /* 256 bytes */
	memset(maxname, 'm', sizeof(maxname) - 1);
	maxname[sizeof(maxname) - 1] = '\0'; /* 255 bytes: the longest allowed */
	CU_ASSERT_FATAL(th_env_new(&e, "api-bad") == 0);
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);

	r[0] = (ckpt_region){ "a", "1234", 4 };
	r[1] = (ckpt_region){ "b", "5678", 4 };
	r[2] = (ckpt_region){ "a", "9abc", 4 };
	expect_bad_save(ctx, &e, 1, r, 3, "twice");
	r[2].name = "";
	expect_bad_save(ctx, &e, 2, r, 3, "empty");
	r[2].name = longname;
	expect_bad_save(ctx, &e, 3, r, 3, "too long");
	r[2].name = NULL;
	expect_bad_save(ctx, &e, 4, r, 3, "no name");
	r[2] = (ckpt_region){ "c", NULL, 10 };
	expect_bad_save(ctx, &e, 5, r, 3, "NULL data");
	expect_bad_save(ctx, &e, 6, NULL, 2, "NULL");
	r[2] = (ckpt_region){ "c", "x", 1 };
	CU_ASSERT(ckpt_save(ctx, CKPT_STEP_ALL, r, 3) == CKPT_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(ctx), "reserved"));
	for (uint64_t s = 1; s <= 6; s++) {
		CU_ASSERT(ckpt_poll(ctx, s, &state) == CKPT_OK);
		CU_ASSERT(state == CKPT_STATE_NONE);
	}
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_ENOENT);
	/* nothing but the job's lock file and the writer lease (ckpt_open takes both) */
	CU_ASSERT(th_count_files(e.base, "*") - th_count_files(e.base, ".lock-rank-*") -
		  th_count_files(e.base, ".writer") == 0);
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);

	/* the longest name is fine */
	r[2].name = maxname;
	CU_ASSERT(ckpt_save(ctx, 7, r, 3) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 7) == CKPT_OK);
	CU_ASSERT(th_load_eq(ctx, 7, maxname, "x", 1));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	th_env_free(&e);
}

static void test_load_errors(void)
{
	ckpt_region r = { "w", NULL, 10000 };
	struct th_env e;
	ckpt_ctx *ctx;
	unsigned char *data = malloc(20000);
	size_t sz = 0, count = 0;
	int state;

	CU_ASSERT_FATAL(th_env_new(&e, "api-lerr") == 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(data);
	th_make_data(data, 20000, 3);
	r.data = data;
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_wait(ctx, 1) == CKPT_ENOENT);
	CU_ASSERT(strlen(ckpt_errmsg(ctx)) > 0);
	CU_ASSERT(ckpt_poll(ctx, 1, &state) == CKPT_OK);
	CU_ASSERT(state == CKPT_STATE_NONE);
	CU_ASSERT(ckpt_save(ctx, 1, &r, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 2) == CKPT_ENOENT);
	for (int pass = 0; pass < 2; pass++) { /* local tier, then shared tier */
		CU_ASSERT(ckpt_load(ctx, 1, "w", data + 10000, 9999) == CKPT_EINVAL);
		CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(ctx), "9999"));
		CU_ASSERT(ckpt_load(ctx, 1, "w", data + 10000, 10001) == CKPT_EINVAL);
		CU_ASSERT(ckpt_load(ctx, 1, "nope", data + 10000, 10000) == CKPT_ENOENT);
		CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(ctx), "nope"));
		CU_ASSERT(ckpt_load(ctx, 2, "w", data + 10000, 10000) == CKPT_ENOENT);
		CU_ASSERT(ckpt_region_size(ctx, 1, "nope", &sz) == CKPT_ENOENT);
		CU_ASSERT(ckpt_region_size(ctx, 2, "w", &sz) == CKPT_ENOENT);
		CU_ASSERT(ckpt_list_regions(ctx, 2, NULL, 0, &count) == CKPT_ENOENT);
		CU_ASSERT(th_load_eq(ctx, 1, "w", data, 10000));
		CU_ASSERT(ckpt_wait(ctx, 1) == CKPT_OK);
		wipe_local(&e);
	}
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free(data);
	th_env_free(&e);
}

/* ---- drain states ---- */

/* The local tier is ephemeral: a missing local_dir (a recreated node) is created with its parents,
 * durably; a missing shared_dir is an error that says so and creates nothing. */
static void test_open_creates_local_dir(void)
{
	struct th_env e;
	ckpt_ctx *ctx;
	char path[4200], step[4300];
	unsigned char d[4096] = { 1, 2, 3 }, back[4096];
	ckpt_region r = { "w", d, sizeof(d) };
	struct stat st;
	int rc;

	CU_ASSERT_FATAL(th_env_new(&e, "api-mklocal") == 0);
	snprintf(path, sizeof(path), "%s/fresh/node/nvme", e.base);
	rc = try_open(path, e.shared, &ctx);
	CU_ASSERT_EQUAL(rc, CKPT_OK);
	CU_ASSERT_PTR_NOT_NULL(ctx);
	CU_ASSERT(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
	if (ctx) {
		CU_ASSERT_EQUAL(ckpt_save(ctx, 1, &r, 1), CKPT_OK);
		snprintf(step, sizeof(step), "%s/job/step-%020d/rank-000000.ckl", path, 1);
		CU_ASSERT(exists(step));
		CU_ASSERT_EQUAL(ckpt_load(ctx, 1, "w", back, sizeof(back)), CKPT_OK);
		CU_ASSERT(!memcmp(d, back, sizeof(d)));
		CU_ASSERT_EQUAL(ckpt_close(ctx), CKPT_OK);
	}
	/* a missing shared_dir: CKPT_ENOENT (ckpt.h), named as a volume that may not be mounted;
	 * nothing is created, local_dir included */
	snprintf(path, sizeof(path), "%s/other/nvme", e.base);
	snprintf(step, sizeof(step), "%s/unmounted", e.base);
	rc = try_open(path, step, &ctx);
	CU_ASSERT_EQUAL(rc, CKPT_ENOENT);
	CU_ASSERT_PTR_NULL(ctx);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(NULL), "does not exist (is the volume mounted?"));
	CU_ASSERT(!exists(path) && !exists(step));
	th_env_free(&e);
}

/* ckpt_errmsg says what the last failure was: a run of calls that all succeeded leaves it empty
 * (it used to hold "not a regular file of shard size" after every successful load, and "no
 * complete step" after a ckpt_latest that found one). */
static void test_errmsg_after_success(void)
{
	ckpt_region r = { "w", NULL, 256 * 1024 };
	unsigned char *d = malloc(r.size), *back = malloc(r.size);
	ckpt_region_info info[2];
	struct th_env e;
	ckpt_ctx *ctx;
	uint64_t step = 0;
	size_t n = 0, sz = 0;
	int state = -1;

	CU_ASSERT_FATAL(th_env_new(&e, "api-errmsg") == 0 && d && back);
	th_make_data(d, r.size, 7);
	r.data = d;
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	for (uint64_t s = 1; s <= 3; s++)
		CU_ASSERT_EQUAL(ckpt_save(ctx, s, &r, 1), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_wait(ctx, CKPT_STEP_ALL), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_load(ctx, 3, "w", back, r.size), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(ckpt_errmsg(ctx), "");
	CU_ASSERT_EQUAL(ckpt_poll(ctx, 3, &state), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_latest(ctx, &step), CKPT_OK);
	CU_ASSERT_EQUAL(step, 3);
	CU_ASSERT_EQUAL(ckpt_region_size(ctx, step, "w", &sz), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_list_regions(ctx, step, info, 2, &n), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_load(ctx, step, "w", back, r.size), CKPT_OK);
	CU_ASSERT(!memcmp(d, back, r.size));
	if (strcmp(ckpt_errmsg(ctx), ""))
		fprintf(stderr, "errmsg after successful calls: '%s'\n", ckpt_errmsg(ctx));
	CU_ASSERT_STRING_EQUAL(ckpt_errmsg(ctx), "");
	/* from the shared tier alone, too */
	CU_ASSERT_EQUAL(ckpt_close(ctx), CKPT_OK);
	wipe_local(&e);
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT_EQUAL(ckpt_latest(ctx, &step), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_load(ctx, step, "w", back, r.size), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(ckpt_errmsg(ctx), "");
	CU_ASSERT_EQUAL(ckpt_close(ctx), CKPT_OK);
	free(d);
	free(back);
	th_env_free(&e);
}

static void test_poll_states(void)
{
	ckpt_region r = { "w", NULL, 2 * MIB };
	char job[4200], moved[4200];
	unsigned char *d1 = malloc(r.size), *d2 = malloc(r.size);
	struct th_env e;
	ckpt_ctx *ctx;
	int state = -1, rc;

	CU_ASSERT_FATAL(th_env_new(&e, "api-poll") == 0 && d1 && d2);
	th_make_data(d1, r.size, 1);
	th_make_data(d2, r.size, 2);
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_poll(ctx, 1, &state) == CKPT_OK);
	CU_ASSERT(state == CKPT_STATE_NONE);
	r.data = d1;
	CU_ASSERT(ckpt_save(ctx, 1, &r, 1) == CKPT_OK);
	CU_ASSERT(ckpt_poll(ctx, 1, &state) == CKPT_OK);
	CU_ASSERT(state == CKPT_STATE_LOCAL || state == CKPT_STATE_COMMITTED);
	CU_ASSERT(ckpt_wait(ctx, 1) == CKPT_OK);
	CU_ASSERT(ckpt_poll(ctx, 1, &state) == CKPT_OK);
	CU_ASSERT(state == CKPT_STATE_COMMITTED);

	/* Make the shared job directory unusable: the drain of step 2 fails, the local copy
	 * stays. */
	snprintf(job, sizeof(job), "%s/job", e.shared);
	snprintf(moved, sizeof(moved), "%s/job.moved", e.shared);
	CU_ASSERT_FATAL(rename(job, moved) == 0);
	CU_ASSERT_FATAL(th_sh("echo 'not a directory' > '%s'", job) == 0);
	r.data = d2;
	CU_ASSERT(ckpt_save(ctx, 2, &r, 1) == CKPT_OK);
	rc = ckpt_wait(ctx, 2);
	CU_ASSERT(rc < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(ctx), job));
	CU_ASSERT(ckpt_poll(ctx, 2, &state) == CKPT_OK);
	CU_ASSERT(state == CKPT_STATE_FAILED);
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == rc);
	CU_ASSERT(th_load_eq(ctx, 2, "w", d2, r.size));
	CU_ASSERT(ckpt_poll(ctx, 1, &state) == CKPT_OK);
	CU_ASSERT(state == CKPT_STATE_COMMITTED);

	/* Repair: the next save retries the failed drain. */
	CU_ASSERT_FATAL(unlink(job) == 0 && rename(moved, job) == 0);
	r.data = d1;
	CU_ASSERT(ckpt_save(ctx, 3, &r, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);
	for (uint64_t s = 1; s <= 3; s++) {
		CU_ASSERT(ckpt_poll(ctx, s, &state) == CKPT_OK);
		CU_ASSERT(state == CKPT_STATE_COMMITTED);
	}
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	wipe_local(&e);
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(th_load_eq(ctx, 2, "w", d2, r.size));
	CU_ASSERT(th_load_eq(ctx, 3, "w", d1, r.size));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free(d1);
	free(d2);
	th_env_free(&e);
}

/* ckpt_latest: the newest step that is complete on either tier; broken candidates are skipped. */
static void test_latest_across_tiers(void)
{
	ckpt_region r = { "w", NULL, 300000 };
	unsigned char *d = malloc(4 * r.size);
	char dir[4200], path[4400];
	struct th_env e;
	ckpt_ctx *ctx;
	uint64_t step = 0;
	int rc;

	CU_ASSERT_FATAL(th_env_new(&e, "api-latest") == 0 && d);
	for (int i = 0; i < 4; i++)
		th_make_data(d + (size_t)i * r.size, r.size, 20 + (uint64_t)i);
	ctx = th_open(&e, (const char *const[]){ "keep_local", "10", "keep_shared", "10", NULL });
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	for (uint64_t s = 1; s <= 3; s++) {
		r.data = d + (s - 1) * r.size;
		CU_ASSERT(ckpt_save(ctx, s * 10, &r, 1) == CKPT_OK);
	}
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
	CU_ASSERT(step == 30);

	/* local tier empty: the newest committed step */
	wipe_local(&e);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
	CU_ASSERT(step == 30);

	/* a newer step only on the local tier wins... */
	r.data = d + 3 * r.size;
	CU_ASSERT(ckpt_save(ctx, 40, &r, 1) == CKPT_OK);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
	CU_ASSERT(step == 40);
	CU_ASSERT(ckpt_wait(ctx, 40) == CKPT_OK);
	/* ...and the shared copy once the local one is gone */
	wipe_local(&e);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
	CU_ASSERT(step == 40);
	CU_ASSERT(th_load_eq(ctx, 40, "w", r.data, r.size));

	/* broken candidates: a truncated local shard, an uncommitted shared step, a committed step
	 * whose shard is missing, and a local file that is garbage */
	step_dir(dir, sizeof(dir), e.local, 70);
	CU_ASSERT(th_sh("mkdir -p '%s' && head -c 10000 /dev/urandom > '%s/rank-000000.ckl'", dir,
			dir) == 0);
	step_dir(dir, sizeof(dir), e.shared, 60);
	CU_ASSERT(mkdir(dir, 0755) == 0);
	step_dir(path, sizeof(path), e.shared, 40);
	step_dir(dir, sizeof(dir), e.shared, 50);
	CU_ASSERT(th_sh("cp -r '%s' '%s' && rm -f '%s'/*.ckz", path, dir, dir) == 0);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
	CU_ASSERT(step == 40);
	/* a local copy that is complete but truncated at the end is no candidate either */
	r.data = d;
	CU_ASSERT(ckpt_save(ctx, 80, &r, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 80) == CKPT_OK);
	step_dir(dir, sizeof(dir), e.shared, 80);
	CU_ASSERT(th_sh("rm -rf '%s'", dir) == 0);
	local_file(path, sizeof(path), &e, 80);
	CU_ASSERT(truncate(path, file_size(path) - 4096) == 0);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
	CU_ASSERT(step == 40);
	rc = ckpt_load(ctx, 80, "w", d, r.size);
	CU_ASSERT(rc == CKPT_ECORRUPT || rc == CKPT_ENOENT);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free(d);
	th_env_free(&e);
}

/* Saving a step again replaces it; the shared tier keeps only the newest save's shard. */
static void test_resave_same_step(void)
{
	ckpt_region r = { "w", NULL, 3 * MIB };
	unsigned char *v[4];
	char dir[4200];
	struct th_env e;
	ckpt_ctx *ctx;
	uint64_t step = 0;

	CU_ASSERT_FATAL(th_env_new(&e, "api-resave") == 0);
	for (int i = 0; i < 4; i++) {
		CU_ASSERT_PTR_NOT_NULL_FATAL(v[i] = malloc(r.size));
		th_make_data(v[i], r.size, 40 + (uint64_t)i);
	}
	step_dir(dir, sizeof(dir), e.shared, 7);
	/* read_grace 0: superseded shards go at the commit (test_read_grace: the grace period) */
	ctx = th_open(&e, (const char *const[]){ "max_pending", "4", "read_grace", "0", NULL });
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	r.data = v[0];
	CU_ASSERT(ckpt_save(ctx, 7, &r, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 7) == CKPT_OK);
	r.data = v[1];
	CU_ASSERT(ckpt_save(ctx, 7, &r, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 7) == CKPT_OK);
	CU_ASSERT(th_load_eq(ctx, 7, "w", v[1], r.size));
	CU_ASSERT(th_count_files(dir, "rank-*.ckz") == 1);
	CU_ASSERT(th_count_files(dir, "MANIFEST") == 1);

	/* twice in a row, the second while the first may still be draining */
	r.data = v[2];
	CU_ASSERT(ckpt_save(ctx, 7, &r, 1) == CKPT_OK);
	r.data = v[3];
	CU_ASSERT(ckpt_save(ctx, 7, &r, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 7) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(th_load_eq(ctx, 7, "w", v[3], r.size));
	CU_ASSERT(th_count_files(dir, "rank-*.ckz") == 1);
	wipe_local(&e);
	CU_ASSERT(th_load_eq(ctx, 7, "w", v[3], r.size));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
	CU_ASSERT(step == 7);
	CU_ASSERT(th_load_eq(ctx, 7, "w", v[3], r.size));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	CU_ASSERT(th_count_files(dir, "rank-*.ckz") == 1);
	CU_ASSERT(th_count_files(e.base, ".tmp.*") == 0);
	for (int i = 0; i < 4; i++)
		free(v[i]);
	th_env_free(&e);
}

static void test_retention(void)
{
	ckpt_region r = { "w", NULL, 512 * 1024 };
	unsigned char *d = malloc(r.size);
	char job[4200], dir[4200];
	struct th_env e;
	ckpt_ctx *ctx;

	CU_ASSERT_FATAL(th_env_new(&e, "api-keep") == 0 && d);
	ctx = th_open(&e, (const char *const[]){ "keep_local", "1", "keep_shared", "2",
						  "read_grace", "0", NULL });
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	for (uint64_t s = 1; s <= 6; s++) {
		th_make_data(d, r.size, s);
		r.data = d;
		CU_ASSERT(ckpt_save(ctx, s, &r, 1) == CKPT_OK);
		CU_ASSERT(ckpt_wait(ctx, s) == CKPT_OK);
	}
	snprintf(job, sizeof(job), "%s/job", e.local);
	CU_ASSERT(count_step_dirs(job) == 1);
	CU_ASSERT(th_count_files(job, "rank-*.ckl") == 1);
	local_file(dir, sizeof(dir), &e, 6);
	CU_ASSERT(exists(dir));
	snprintf(job, sizeof(job), "%s/job", e.shared);
	CU_ASSERT(count_step_dirs(job) == 2);
	CU_ASSERT(th_count_files(job, "MANIFEST") == 2);
	CU_ASSERT(th_count_files(job, "rank-*.ckz") == 2);
	step_dir(dir, sizeof(dir), e.shared, 5);
	CU_ASSERT(th_count_files(dir, "MANIFEST") == 1);
	th_make_data(d, r.size, 5);
	CU_ASSERT(th_load_eq(ctx, 5, "w", d, r.size));

	/* back-to-back saves without waiting end in the same counts */
	for (uint64_t s = 7; s <= 12; s++) {
		th_make_data(d, r.size, s);
		CU_ASSERT(ckpt_save(ctx, s, &r, 1) == CKPT_OK);
	}
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	CU_ASSERT(count_step_dirs(job) == 2);
	CU_ASSERT(th_count_files(job, "rank-*.ckz") == 2);
	snprintf(job, sizeof(job), "%s/job", e.local);
	CU_ASSERT(count_step_dirs(job) == 1);
	CU_ASSERT(th_count_files(job, "rank-*.ckl") == 1);
	free(d);
	th_env_free(&e);
}

/* A job that rolls back to earlier step numbers (restart from an older checkpoint) must keep its
 * new steps: retention keeps the keep_shared highest-numbered AND the keep_shared newest. */
static void test_retention_rollback(void)
{
	ckpt_region r = { "w", NULL, 256 * 1024 };
	unsigned char *d = malloc(r.size);
	char job[4200];
	struct th_env e;
	ckpt_ctx *ctx;
	uint64_t steps[] = { 10, 11, 12, 6, 7, 8 };

	CU_ASSERT_FATAL(th_env_new(&e, "api-rollback") == 0 && d);
	ctx = th_open(&e, (const char *const[]){ "keep_local", "1", "keep_shared", "3",
						  "read_grace", "0", NULL });
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	r.data = d;
	for (size_t i = 0; i < 6; i++) {
		th_make_data(d, r.size, steps[i]);
		CU_ASSERT(ckpt_save(ctx, steps[i], &r, 1) == CKPT_OK);
		CU_ASSERT(ckpt_wait(ctx, steps[i]) == CKPT_OK);
	}
	snprintf(job, sizeof(job), "%s/job", e.shared);
	/* 10..12 (highest numbers) and 6..8 (newest) all stay committed */
	CU_ASSERT(th_count_files(job, "MANIFEST") == 6);
	wipe_local(&e);
	for (size_t i = 0; i < 6; i++) {
		th_make_data(d, r.size, steps[i]);
		CU_ASSERT(th_load_eq(ctx, steps[i], "w", d, r.size));
	}
	/* one more step: the oldest of the rollback (6) is neither kept set any more */
	th_make_data(d, r.size, 9);
	CU_ASSERT(ckpt_save(ctx, 9, &r, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 9) == CKPT_OK);
	CU_ASSERT(th_count_files(job, "MANIFEST") == 6);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free(d);
	th_env_free(&e);
}

/* ---- corruption ---- */

static void test_corrupt_local_falls_back(void)
{
	ckpt_region r[2] = { { "a", NULL, 1 * MIB }, { "b", NULL, 5000 } };
	unsigned char *a = malloc(r[0].size), *b = malloc(r[1].size);
	char path[4200];
	struct th_env e;
	ckpt_ctx *ctx;

	CU_ASSERT_FATAL(th_env_new(&e, "api-clocal") == 0 && a && b);
	th_make_data(a, r[0].size, 7);
	th_make_data(b, r[1].size, 8);
	r[0].data = a;
	r[1].data = b;
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_save(ctx, 1, r, 2) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 1) == CKPT_OK);
	/* region "a" starts at the first data block (4096) of the local shard */
	local_file(path, sizeof(path), &e, 1);
	CU_ASSERT_FATAL(flip_byte(path, 4096 + 12345) == 0);
	CU_ASSERT(th_load_eq(ctx, 1, "a", a, r[0].size));
	CU_ASSERT(th_load_eq(ctx, 1, "b", b, r[1].size));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);

	/* corrupt and not committed: no fallback, ECORRUPT naming the file */
	ctx = th_open(&e, (const char *const[]){ "keep_local", "5", NULL });
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_save(ctx, 2, r, 2) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 2) == CKPT_OK);
	step_dir(path, sizeof(path), e.shared, 2);
	CU_ASSERT(th_sh("rm -rf '%s'", path) == 0);
	local_file(path, sizeof(path), &e, 2);
	CU_ASSERT_FATAL(flip_byte(path, 4096 + 999) == 0);
	CU_ASSERT(ckpt_load(ctx, 2, "a", a, r[0].size) == CKPT_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(ctx), path));
	CU_ASSERT(th_load_eq(ctx, 2, "b", b, r[1].size)); /* the other region is intact */
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free(a);
	free(b);
	th_env_free(&e);
}

static void test_corrupt_shared(void)
{
	ckpt_region r = { "w", NULL, 2 * MIB };
	unsigned char *d = malloc(r.size);
	char dir[4200], ckz[4400];
	struct th_env e;
	ckpt_ctx *ctx;
	int rc;

	CU_ASSERT_FATAL(th_env_new(&e, "api-cshared") == 0 && d);
	th_make_data(d, r.size, 9);
	r.data = d;
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_save(ctx, 1, &r, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 1) == CKPT_OK);
	wipe_local(&e);
	CU_ASSERT(th_load_eq(ctx, 1, "w", d, r.size));
	/* the middle of the compressed shard is chunk data (the index is at the end) */
	step_dir(dir, sizeof(dir), e.shared, 1);
	CU_ASSERT_FATAL(find_file(dir, "rank-*.ckz", ckz, sizeof(ckz)) == 0);
	CU_ASSERT_FATAL(flip_byte(ckz, file_size(ckz) / 2) == 0);
	rc = ckpt_load(ctx, 1, "w", d, r.size);
	CU_ASSERT(rc == CKPT_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(ctx), "checksum"));
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(ctx), dir));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free(d);
	th_env_free(&e);
}

/* ---- close ---- */

/* ckpt_close finishes queued drains: nothing but the shared tier is needed afterwards. */
static void test_close_finishes_drains(void)
{
	enum { NS = 4 };
	ckpt_region r = { "w", NULL, 4 * MIB };
	unsigned char *d[NS];
	struct th_env e;
	ckpt_ctx *ctx;
	uint64_t step = 0;

	CU_ASSERT_FATAL(th_env_new(&e, "api-close") == 0);
	ctx = th_open(&e, (const char *const[]){ "max_pending", "8", "compress_level", "3",
						 "keep_shared", "0", NULL });
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	for (int i = 0; i < NS; i++) {
		CU_ASSERT_PTR_NOT_NULL_FATAL(d[i] = malloc(r.size));
		th_make_data(d[i], r.size, 60 + (uint64_t)i);
		r.data = d[i];
		CU_ASSERT(ckpt_save(ctx, (uint64_t)i + 1, &r, 1) == CKPT_OK);
	}
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	wipe_local(&e);
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
	CU_ASSERT(step == NS);
	for (int i = 0; i < NS; i++)
		CU_ASSERT(th_load_eq(ctx, (uint64_t)i + 1, "w", d[i], r.size));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	for (int i = 0; i < NS; i++)
		free(d[i]);
	th_env_free(&e);
}

/* ---- threads ---- */

struct tshared {
	ckpt_ctx *ctx;
	size_t size;
	int nsteps;
	volatile int done;
	int save_errors, poll_errors, load_errors, polls;
};

static void *saver(void *arg)
{
	struct tshared *t = arg;
	unsigned char *d = malloc(t->size);
	ckpt_region r = { "w", d, t->size };

	for (int s = 1; d && s <= t->nsteps; s++) {
		th_make_data(d, t->size, (uint64_t)s);
		if (ckpt_save(t->ctx, (uint64_t)s, &r, 1) != CKPT_OK)
			t->save_errors++;
		if (s % 4 == 0 && ckpt_wait(t->ctx, (uint64_t)s) != CKPT_OK)
			t->save_errors++;
	}
	if (!d)
		t->save_errors++;
	free(d);
	__atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *poller(void *arg)
{
	struct tshared *t = arg;
	unsigned char *buf = malloc(t->size), *want = malloc(t->size);

	while (buf && want && !__atomic_load_n(&t->done, __ATOMIC_ACQUIRE)) {
		uint64_t step = 0;
		size_t sz = 0;
		int state, rc;

		for (int s = 0; s <= t->nsteps + 1; s++)
			if (ckpt_poll(t->ctx, (uint64_t)s, &state) != CKPT_OK ||
			    state < CKPT_STATE_NONE || state > CKPT_STATE_COMMITTED)
				t->poll_errors++;
		rc = ckpt_latest(t->ctx, &step);
		if (rc == CKPT_ENOENT)
			continue;
		if (rc != CKPT_OK || step < 1 || step > (uint64_t)t->nsteps) {
			t->poll_errors++;
			continue;
		}
		if (ckpt_region_size(t->ctx, step, "w", &sz) != CKPT_OK || sz != t->size) {
			t->load_errors++;
			continue;
		}
		th_make_data(want, t->size, step);
		if (ckpt_load(t->ctx, step, "w", buf, t->size) != CKPT_OK ||
		    memcmp(buf, want, t->size)) {
			fprintf(stderr, "poller: step %llu: %s\n", (unsigned long long)step,
				ckpt_errmsg(t->ctx));
			t->load_errors++;
		}
		t->polls++;
	}
	free(buf);
	free(want);
	return NULL;
}

static void test_threads(void)
{
	struct tshared t = { NULL, 1 * MIB + 17, 24, 0, 0, 0, 0, 0 };
	pthread_t a, b;
	struct th_env e;
	uint64_t step = 0;

	CU_ASSERT_FATAL(th_env_new(&e, "api-thr") == 0);
	/* keep_shared 0: a step the poller found stays loadable while the saver moves on */
	t.ctx = th_open(&e, (const char *const[]){ "keep_shared", "0", "max_pending", "3", NULL });
	CU_ASSERT_PTR_NOT_NULL_FATAL(t.ctx);
	CU_ASSERT_FATAL(pthread_create(&b, NULL, poller, &t) == 0);
	CU_ASSERT_FATAL(pthread_create(&a, NULL, saver, &t) == 0);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	CU_ASSERT(t.save_errors == 0);
	CU_ASSERT(t.poll_errors == 0);
	CU_ASSERT(t.load_errors == 0);
	CU_ASSERT(ckpt_wait(t.ctx, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(ckpt_latest(t.ctx, &step) == CKPT_OK);
	CU_ASSERT(step == (uint64_t)t.nsteps);
	CU_ASSERT(ckpt_close(t.ctx) == CKPT_OK);
	printf("(%d poller rounds) ", t.polls);
	th_env_free(&e);
}

/* ---- readers (issue 12): one save per step and context, vanished shards, ckpt_list_steps ---- */

/* Remove the shared shards of `step` whose names are in `names` (a '\n'-joined list of
 * shard_names): what the writer's removal of a superseded save does once any grace period is
 * over. Returns how many were removed. */
static int remove_shards(const struct th_env *e, uint64_t step, const char *names)
{
	char dir[4200], path[4500];
	DIR *d;
	struct dirent *de;
	int n = 0;

	step_dir(dir, sizeof(dir), e->shared, step);
	if (!(d = opendir(dir)))
		return -1;
	while ((de = readdir(d)))
		if (!fnmatch("rank-*.ckz", de->d_name, 0) && strstr(names, de->d_name)) {
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			n += unlink(path) == 0;
		}
	closedir(d);
	return n;
}

/* The names of the shared shards of `step` now, '\n'-joined into buf. */
static void shard_names(const struct th_env *e, uint64_t step, char *buf, size_t len)
{
	char dir[4200];
	DIR *d;
	struct dirent *de;

	buf[0] = '\0';
	step_dir(dir, sizeof(dir), e->shared, step);
	if (!(d = opendir(dir)))
		return;
	while ((de = readdir(d)))
		if (!fnmatch("rank-*.ckz", de->d_name, 0) && strlen(buf) + strlen(de->d_name) + 2 < len) {
			strcat(buf, de->d_name);
			strcat(buf, "\n");
		}
	closedir(d);
}

static int save2(ckpt_ctx *ctx, uint64_t step, unsigned char *a, unsigned char *b, size_t n)
{
	ckpt_region r[2] = { { "a", a, n }, { "b", b, n } };
	int rc = ckpt_save(ctx, step, r, 2);

	return rc ? rc : ckpt_wait(ctx, step);
}

static void test_reader_pins_one_save(void)
{
	const size_t n = 256 * 1024;
	unsigned char *v[4], *got = malloc(n);
	char rlocal[4200], old[1024];
	struct th_env e;
	ckpt_ctx *w, *r;
	uint64_t step = 0;
	int rc;

	CU_ASSERT_FATAL(th_env_new(&e, "api-pin") == 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(got);
	for (int i = 0; i < 4; i++) {
		CU_ASSERT_PTR_NOT_NULL_FATAL(v[i] = malloc(n));
		th_make_data(v[i], n, 70 + (uint64_t)i);
	}
	snprintf(rlocal, sizeof(rlocal), "%s/reader", e.base);
	CU_ASSERT_FATAL(mkdir(rlocal, 0750) == 0);
	w = th_open(&e, (const char *const[]){ "log_level", "0", NULL });
	r = th_open_dirs(rlocal, e.shared, NULL, (const char *const[]){ "log_level", "0", NULL });
	CU_ASSERT_PTR_NOT_NULL_FATAL(w);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);

	/* save A; the reader pins it with ckpt_latest and reads "a" */
	CU_ASSERT(save2(w, 1, v[0], v[1], n) == CKPT_OK);
	CU_ASSERT(ckpt_latest(r, &step) == CKPT_OK && step == 1);
	CU_ASSERT(th_load_eq(r, 1, "a", v[0], n));
	/* save B replaces A on the shared tier */
	shard_names(&e, 1, old, sizeof(old));
	CU_ASSERT(save2(w, 1, v[2], v[3], n) == CKPT_OK);
	/* the reader's "b" is A's (A kept for a grace period) or a distinct error: never B's */
	rc = ckpt_load(r, 1, "b", got, n);
	CU_ASSERT(rc == CKPT_OK || rc == CKPT_ESTALE);
	if (rc == CKPT_OK)
		CU_ASSERT(memcmp(got, v[1], n) == 0);
	/* once A's shard is gone: CKPT_ESTALE, saying what to do, and never CKPT_ECORRUPT */
	CU_ASSERT(remove_shards(&e, 1, old) >= 0); /* 0: already removed (no grace) */
	rc = ckpt_load(r, 1, "b", got, n);
	CU_ASSERT(rc == CKPT_ESTALE);
	CU_ASSERT(strstr(ckpt_errmsg(r), "step 1") && strstr(ckpt_errmsg(r), "ckpt_latest"));
	CU_ASSERT(strcmp(ckpt_strerror(CKPT_ESTALE), ckpt_strerror(CKPT_ECORRUPT)) != 0);
	/* ckpt_latest re-pins: B, whole */
	CU_ASSERT(ckpt_latest(r, &step) == CKPT_OK && step == 1);
	CU_ASSERT(th_load_eq(r, 1, "a", v[2], n));
	CU_ASSERT(th_load_eq(r, 1, "b", v[3], n));

	/* a pin nothing was read through yet is chosen again: ckpt_latest pins B, then save C
	 * replaces it and B's shard is removed before the first load */
	CU_ASSERT(ckpt_latest(r, &step) == CKPT_OK && step == 1);
	shard_names(&e, 1, old, sizeof(old));
	CU_ASSERT(save2(w, 1, v[1], v[0], n) == CKPT_OK);
	CU_ASSERT(remove_shards(&e, 1, old) >= 0); /* 0: already removed (no grace) */
	CU_ASSERT(th_load_eq(r, 1, "a", v[1], n));
	CU_ASSERT(th_load_eq(r, 1, "b", v[0], n));

	/* the writer's own reads follow its own saves (ckpt_save drops its pin) */
	CU_ASSERT(th_load_eq(w, 1, "a", v[1], n));
	CU_ASSERT(save2(w, 1, v[3], v[2], n) == CKPT_OK);
	CU_ASSERT(th_load_eq(w, 1, "a", v[3], n));
	CU_ASSERT(ckpt_close(r) == CKPT_OK);
	CU_ASSERT(ckpt_close(w) == CKPT_OK);
	for (int i = 0; i < 4; i++)
		free(v[i]);
	free(got);
	th_env_free(&e);
}

/* A shard that the MANIFEST still lists but is gone is damage (CKPT_ECORRUPT), not "re-saved". */
static void test_missing_shard_is_corrupt(void)
{
	const size_t n = 4096;
	char names[1024];
	unsigned char *a = malloc(n), *b = malloc(n);
	struct th_env e;
	ckpt_ctx *ctx;
	uint64_t step = 0;

	CU_ASSERT_FATAL(th_env_new(&e, "api-missing") == 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a && b);
	th_make_data(a, n, 1);
	th_make_data(b, n, 2);
	ctx = th_open(&e, (const char *const[]){ "log_level", "0", NULL });
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(save2(ctx, 3, a, b, n) == CKPT_OK);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	wipe_local(&e);
	shard_names(&e, 3, names, sizeof(names));
	CU_ASSERT(remove_shards(&e, 3, names) == 1);
	ctx = th_open(&e, (const char *const[]){ "log_level", "0", NULL });
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_ENOENT);
	CU_ASSERT(ckpt_load(ctx, 3, "a", a, n) == CKPT_ECORRUPT);
	CU_ASSERT(strstr(ckpt_errmsg(ctx), "listed in MANIFEST but missing") != NULL);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free(a);
	free(b);
	th_env_free(&e);
}

static void test_list_steps(void)
{
	const size_t n = 4096;
	unsigned char *a = malloc(n);
	ckpt_step_info info[4];
	char other[4200];
	struct th_env e;
	ckpt_ctx *ctx;
	size_t count = 99;
	ckpt_region r = { "a", NULL, n };

	CU_ASSERT_FATAL(th_env_new(&e, "api-steps") == 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	r.data = a;
	th_make_data(a, n, 5);
	ctx = th_open(&e, (const char *const[]){ "keep_local", "5", NULL });
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_list_steps(ctx, NULL, 0, &count) == CKPT_OK && count == 0);
	CU_ASSERT(ckpt_list_steps(ctx, NULL, 0, NULL) == CKPT_EINVAL);
	CU_ASSERT(ckpt_list_steps(ctx, NULL, 1, &count) == CKPT_EINVAL);
	CU_ASSERT(ckpt_list_steps(NULL, info, 4, &count) == CKPT_EINVAL);
	for (uint64_t s = 1; s <= 3; s++)
		CU_ASSERT(ckpt_save(ctx, s, &r, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(ckpt_list_steps(ctx, NULL, 0, &count) == CKPT_OK && count == 3);
	CU_ASSERT(ckpt_list_steps(ctx, info, 2, &count) == CKPT_OK && count == 3);
	CU_ASSERT(info[0].step == 3 && info[1].step == 2);
	for (int i = 0; i < 2; i++) {
		CU_ASSERT(info[i].nranks == 1 && info[i].committed == 1);
		CU_ASSERT(info[i].tiers == (CKPT_TIER_LOCAL | CKPT_TIER_SHARED));
		CU_ASSERT(info[i].save_id != 0 && info[i].created_ns != 0);
	}
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	/* another node sees the committed steps, on the shared tier only */
	snprintf(other, sizeof(other), "%s/other", e.base);
	CU_ASSERT_FATAL(mkdir(other, 0750) == 0);
	ctx = th_open_dirs(other, e.shared, NULL, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_list_steps(ctx, info, 4, &count) == CKPT_OK && count == 3);
	CU_ASSERT(info[2].step == 1 && info[2].tiers == CKPT_TIER_SHARED && info[2].committed);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free(a);
	th_env_free(&e);
}

int main(void)
{
	CU_pSuite s;
	unsigned char warm[8];

	th_clean_environment();
	th_make_data(warm, sizeof(warm), 0); /* load the real data once, before any thread runs */
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite_with_setup_and_teardown("api", NULL, NULL, NULL, th_env_teardown);
	if (!s || !CU_add_test(s, "NULL arguments", test_null_args) ||
	    !CU_add_test(s, "strerror and version", test_strerror_version) ||
	    !CU_add_test(s, "ckpt_open errors", test_open_errors) ||
	    !CU_add_test(s, "CKPT_* environment", test_env_vars) ||
	    !CU_add_test(s, "round trip, defaults", test_roundtrip_default) ||
	    !CU_add_test(s, "round trip, io_backend=posix", test_roundtrip_posix) ||
	    !CU_add_test(s, "round trip, io_backend=uring", test_roundtrip_uring) ||
	    !CU_add_test(s, "round trip, drain_threads=1", test_roundtrip_threads1) ||
	    !CU_add_test(s, "round trip, drain_threads=4", test_roundtrip_threads4) ||
	    !CU_add_test(s, "round trip, compress_level=3", test_roundtrip_level3) ||
	    !CU_add_test(s, "regions over the bounce buffer", test_large_regions) ||
	    !CU_add_test(s, "1000 regions", test_many_regions) ||
	    !CU_add_test(s, "step without regions", test_zero_regions) ||
	    !CU_add_test(s, "invalid regions and steps", test_bad_regions) ||
	    !CU_add_test(s, "load errors", test_load_errors) ||
	    !CU_add_test(s, "retention after a rollback", test_retention_rollback) ||
	    !CU_add_test(s, "poll states", test_poll_states) ||
	    !CU_add_test(s, "ckpt_open creates local_dir", test_open_creates_local_dir) ||
	    !CU_add_test(s, "errmsg empty after successful calls", test_errmsg_after_success) ||
	    !CU_add_test(s, "latest across tiers", test_latest_across_tiers) ||
	    !CU_add_test(s, "same step saved again", test_resave_same_step) ||
	    !CU_add_test(s, "retention", test_retention) ||
	    !CU_add_test(s, "corrupt local copy", test_corrupt_local_falls_back) ||
	    !CU_add_test(s, "corrupt shared copy", test_corrupt_shared) ||
	    !CU_add_test(s, "close finishes drains", test_close_finishes_drains) ||
	    !CU_add_test(s, "two threads on one context", test_threads) ||
	    !CU_add_test(s, "a reader reads one save per step", test_reader_pins_one_save) ||
	    !CU_add_test(s, "a listed shard missing is damage", test_missing_shard_is_corrupt) ||
	    !CU_add_test(s, "ckpt_list_steps", test_list_steps)) {
		CU_cleanup_registry();
		return 1;
	}
	return th_run();
}
