/* SPDX-License-Identifier: MIT */
/* Hostile and bad input: every public function and tool option fed NULLs, zero and huge sizes,
 * path-like, NUL-adjacent and over-long names, missing, unwritable and nested directories, steps
 * going backwards, two processes writing one job; and a shared volume that is not trusted
 * (symlinks, FIFOs and directories planted where files go, forged sizes, file modes).
 *
 * A promise that a known library bug breaks is reported as "XFAIL (bug Bn)" and does not fail
 * the suite, unless CKPT_TEST_STRICT=1; docs/RELIABILITY.md lists the bugs and their fixes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <xxhash.h>

#include "ckpt.h"
#include "fmt.h"
#include "harness.h"

/* The memory the tools may use when forged sizes ask for terabytes. AddressSanitizer and
 * ThreadSanitizer reserve terabytes of address space when a process starts, so a sanitized tool
 * cannot even start under ulimit -v: there the system's own refusal (mmap, malloc) stands in. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MEM_LIMIT ""
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define MEM_LIMIT ""
#endif
#endif
#ifndef MEM_LIMIT
#define MEM_LIMIT "ulimit -v 4000000; "
#endif

static char *B;          /* this test's directory, removed by the tear-down */
static char L[4200], S[4200];
static const char *TOOL; /* tools/ckpt, when built */
static int xfails;

static void teardown(void)
{
	if (B) {
		th_sh("umount '%s/ro' 2>/dev/null", B);
		th_rmtree(B);
		free(B);
		B = NULL;
	}
}

static int setup_dirs(const char *tag)
{
	teardown();
	if (!(B = th_mkdtemp(tag)))
		return -1;
	snprintf(L, sizeof(L), "%s/local", B);
	snprintf(S, sizeof(S), "%s/shared", B);
	return mkdir(L, 0755) || mkdir(S, 0755) ? -1 : 0;
}

/* A promise that once failed (bug Bn, now fixed): a failure again is a failure, unless
 * CKPT_TEST_STRICT=0 asks to list regressions without failing. */
static void known_bug(int ok, const char *bug, const char *what)
{
	const char *env = getenv("CKPT_TEST_STRICT");
	const char *strict = env ? env : "1";

	if (ok) {
		CU_ASSERT(ok);
		return;
	}
	if (strict && !strcmp(strict, "1")) {
		fprintf(stderr, "\n  FAIL (bug %s): %s\n", bug, what);
		CU_ASSERT(ok);
	} else {
		printf("\n  XFAIL (bug %s): %s ", bug, what);
		xfails++;
	}
}

static ckpt_ctx *open_kv(const char *local, const char *shared, const char *name,
			 const char *const *kv)
{
	ckpt_config *cfg;
	ckpt_ctx *ctx = NULL;

	if (ckpt_config_new(&cfg) != CKPT_OK)
		return NULL;
	ckpt_config_set(cfg, "local_dir", local);
	ckpt_config_set(cfg, "shared_dir", shared);
	ckpt_config_set(cfg, "name", name ? name : "job");
	ckpt_config_set(cfg, "log_level", "0");
	for (size_t i = 0; kv && kv[i]; i += 2)
		ckpt_config_set(cfg, kv[i], kv[i + 1]);
	if (ckpt_open(&ctx, cfg) != CKPT_OK)
		ctx = NULL;
	ckpt_config_free(cfg);
	return ctx;
}

static ckpt_ctx *open_job(void)
{
	return open_kv(L, S, "job", (const char *const[]){ "keep_shared", "0", NULL });
}

/* Files anywhere below dir (regular files and symlinks). */
static int nfiles(const char *dir)
{
	return th_count_files(dir, "*");
}

static int exists(const char *p)
{
	struct stat st;

	return lstat(p, &st) == 0;
}

/* ---- every public function: NULLs, zero and huge sizes ---- */

static void test_api_args(void)
{
	ckpt_region_info info[2];
	ckpt_region r[2] = { { "a", "xyz", 3 }, { "z", NULL, 0 } };
	ckpt_ctx *ctx;
	uint32_t rank = 7, nranks = 7;
	size_t sz = 1, count = 9;
	char buf[4];
	int st;

	CU_ASSERT_FATAL(setup_dirs("hostile-args") == 0);
	/* functions test_api.c does not feed NULLs */
	CU_ASSERT(ckpt_load_rank(NULL, 1, 0, "a", buf, 3) == CKPT_EINVAL);
	CU_ASSERT(ckpt_region_size_rank(NULL, 1, 0, "a", &sz) == CKPT_EINVAL);
	CU_ASSERT(ckpt_step_nranks(NULL, 1, &nranks) == CKPT_EINVAL);
	CU_ASSERT(ckpt_rank(NULL, &rank, &nranks) == CKPT_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(ckpt_config_errmsg(NULL));
	CU_ASSERT_PTR_NOT_NULL(ckpt_strerror(INT32_MIN));
	CU_ASSERT_PTR_NOT_NULL(ckpt_strerror(INT32_MAX));
	CU_ASSERT_PTR_NOT_NULL(ckpt_errmsg(NULL));

	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx = open_job());
	CU_ASSERT(ckpt_rank(ctx, NULL, &nranks) == CKPT_EINVAL);
	CU_ASSERT(ckpt_rank(ctx, &rank, NULL) == CKPT_EINVAL);
	CU_ASSERT(ckpt_rank(ctx, &rank, &nranks) == CKPT_OK && rank == 0 && nranks == 1);
	/* huge counts are refused before anything is read from the array */
	CU_ASSERT(ckpt_save(ctx, 1, r, SIZE_MAX) == CKPT_EINVAL);
	CU_ASSERT(ckpt_save(ctx, 1, r, (size_t)CKPT_MAX_REGIONS + 1) == CKPT_EINVAL);
	CU_ASSERT(strlen(ckpt_errmsg(ctx)) > 0);
	/* a zero-sized region may have NULL data; a step may have no regions at all */
	CU_ASSERT(ckpt_save(ctx, 1, r, 2) == CKPT_OK);
	CU_ASSERT(ckpt_save(ctx, 2, NULL, 0) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(ckpt_list_regions(ctx, 2, NULL, 0, &count) == CKPT_OK && count == 0);
	CU_ASSERT(ckpt_list_regions(ctx, 1, NULL, 0, &count) == CKPT_OK && count == 2);
	CU_ASSERT(ckpt_list_regions(ctx, 1, info, 1, &count) == CKPT_OK && count == 2 &&
		  !strcmp(info[0].name, "a"));
	CU_ASSERT(ckpt_load(ctx, 1, "z", NULL, 0) == CKPT_OK);
	/* sizes that do not match are refused without allocating them */
	CU_ASSERT(ckpt_load(ctx, 1, "a", buf, SIZE_MAX) == CKPT_EINVAL);
	CU_ASSERT(ckpt_load(ctx, 1, "a", buf, 0) == CKPT_EINVAL);
	CU_ASSERT(ckpt_load(ctx, 1, "z", buf, 1) == CKPT_EINVAL);
	CU_ASSERT(ckpt_load_rank(ctx, 1, 0, NULL, buf, 3) == CKPT_EINVAL);
	CU_ASSERT(ckpt_load_rank(ctx, 1, 0, "a", NULL, 3) == CKPT_EINVAL);
	CU_ASSERT(ckpt_region_size_rank(ctx, 1, 0, "a", NULL) == CKPT_EINVAL);
	CU_ASSERT(ckpt_region_size_rank(ctx, 1, 0, NULL, &sz) == CKPT_EINVAL);
	CU_ASSERT(ckpt_step_nranks(ctx, 1, NULL) == CKPT_EINVAL);
	/* ranks and steps that do not exist */
	CU_ASSERT(ckpt_load_rank(ctx, 1, 1, "a", buf, 3) == CKPT_ENOENT);
	CU_ASSERT(ckpt_load_rank(ctx, 1, UINT32_MAX, "a", buf, 3) == CKPT_ENOENT);
	CU_ASSERT(ckpt_region_size_rank(ctx, 1, 5, "a", &sz) == CKPT_ENOENT);
	CU_ASSERT(ckpt_step_nranks(ctx, 99, &nranks) == CKPT_ENOENT);
	CU_ASSERT(ckpt_step_nranks(ctx, 1, &nranks) == CKPT_OK && nranks == 1);
	CU_ASSERT(ckpt_wait(ctx, 99) == CKPT_ENOENT);
	CU_ASSERT(ckpt_poll(ctx, CKPT_STEP_ALL, &st) == CKPT_OK && st == CKPT_STATE_NONE);
	CU_ASSERT(ckpt_load(ctx, CKPT_STEP_ALL, "a", buf, 3) == CKPT_ENOENT);
	/* and the context is still fine */
	CU_ASSERT(th_load_eq(ctx, 1, "a", "xyz", 3));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
#ifndef HAVE_MPI
	CU_ASSERT(ckpt_open_mpi_f(&ctx, NULL, 0) != CKPT_OK);
#endif
}

/* ---- names: labels, never paths ---- */

static void test_region_names(void)
{
	static const char *const names[] = {
		"a/b", "../../../../etc/passwd", "..", ".", "/", "/abs/path", "with\nnewline",
		"\xff\xfe\x01", "tab\there", " ", "MANIFEST", "rank-000000.ckl", ".tmp.x.1.2.MANIFEST",
	};
	enum { N = sizeof(names) / sizeof(names[0]) };
	ckpt_region r[N + 1];
	char longname[CKPT_NAME_MAX + 1], data[N + 1][8] = { { 0 } }; /* all 8 bytes are saved */
	ckpt_ctx *ctx;
	int before;

	CU_ASSERT_FATAL(setup_dirs("hostile-names") == 0);
	memset(longname, '/', CKPT_NAME_MAX);
	longname[CKPT_NAME_MAX] = '\0';
	for (int i = 0; i <= N; i++) {
		snprintf(data[i], sizeof(data[i]), "v%d", i);
		r[i] = (ckpt_region){ i < N ? names[i] : longname, data[i], sizeof(data[i]) };
	}
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx = open_job());
	before = nfiles(B);
	CU_ASSERT(ckpt_save(ctx, 1, r, N + 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 1) == CKPT_OK);
	/* three files: the local shard, the compressed shard, the MANIFEST; nothing else, nowhere */
	CU_ASSERT(nfiles(B) == before + 3);
	CU_ASSERT(nfiles(L) + nfiles(S) == before + 3);
	th_sh("rm -rf '%s'/job", L);
	for (int i = 0; i <= N; i++)
		CU_ASSERT(th_load_eq(ctx, 1, r[i].name, data[i], sizeof(data[i])));
	/* NUL-adjacent: "a\0b" is "a"; two of them are a duplicate */
	{
		ckpt_region d[2] = { { "a\0b", "1", 1 }, { "a\0c", "2", 1 } };
		ckpt_region e[2] = { { "a", "1", 1 }, { "a\0", "2", 1 } };

		CU_ASSERT(ckpt_save(ctx, 2, d, 2) == CKPT_EINVAL);
		CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(ctx), "twice"));
		CU_ASSERT(ckpt_save(ctx, 2, e, 2) == CKPT_EINVAL);
	}
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
}

static void test_job_names(void)
{
	static const char *const bad[] = {
		"", ".", "..", "../x", "a/b", "/abs", ".hidden", "-opt", "a b", "a\nb", "a\\b",
		"x*", "\xc3\xa9t\xc3\xa9", "a:b",
	};
	char longname[130];
	ckpt_config *cfg;
	ckpt_ctx *ctx;

	CU_ASSERT_FATAL(setup_dirs("hostile-jobs") == 0);
	CU_ASSERT_FATAL(ckpt_config_new(&cfg) == CKPT_OK);
	CU_ASSERT(ckpt_config_set(cfg, "name", "ok-name_1.2") == CKPT_OK);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT(ckpt_config_set(cfg, "name", bad[i]) == CKPT_EINVAL);
		CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "name"), "ok-name_1.2");
	}
	memset(longname, 'n', 129);
	longname[129] = '\0';
	CU_ASSERT(ckpt_config_set(cfg, "name", longname) == CKPT_EINVAL);
	longname[128] = '\0';
	CU_ASSERT(ckpt_config_set(cfg, "name", longname) == CKPT_OK);
	ckpt_config_free(cfg);
	/* through the environment: the open fails and names the variable; nothing is created */
	setenv("CKPT_NAME", "../../escape", 1);
	ctx = open_kv(L, S, NULL, NULL); /* open_kv sets name "job": overrides the variable */
	CU_ASSERT_PTR_NOT_NULL(ctx);
	ckpt_close(ctx);
	CU_ASSERT_FATAL(ckpt_config_new(&cfg) == CKPT_OK);
	ckpt_config_set(cfg, "local_dir", L);
	ckpt_config_set(cfg, "shared_dir", S);
	CU_ASSERT(ckpt_open(&ctx, cfg) == CKPT_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(NULL), "CKPT_NAME"));
	ckpt_config_free(cfg);
	unsetenv("CKPT_NAME");
	CU_ASSERT(!exists("escape"));
	{
		char p[4400];

		snprintf(p, sizeof(p), "%s/escape", B);
		CU_ASSERT(!exists(p));
	}
}

/* ---- directories ---- */

static int try_open(const char *local, const char *shared, ckpt_ctx **ctx)
{
	ckpt_config *cfg;
	int rc;

	*ctx = NULL;
	if (ckpt_config_new(&cfg) != CKPT_OK)
		return CKPT_ENOMEM;
	if (local && ckpt_config_set(cfg, "local_dir", local) != CKPT_OK) {
		ckpt_config_free(cfg);
		return CKPT_EINVAL;
	}
	if (shared && ckpt_config_set(cfg, "shared_dir", shared) != CKPT_OK) {
		ckpt_config_free(cfg);
		return CKPT_EINVAL;
	}
	ckpt_config_set(cfg, "log_level", "0");
	rc = ckpt_open(ctx, cfg);
	ckpt_config_free(cfg);
	return rc;
}

static void test_directories(void)
{
	char p[4400], q[4400], *longp;
	ckpt_ctx *ctx;
	int rc;

	CU_ASSERT_FATAL(setup_dirs("hostile-dirs") == 0);
	/* a missing local_dir is created (the local tier is ephemeral: a recreated node is empty) */
	snprintf(p, sizeof(p), "%s/no-such-local", B);
	CU_ASSERT(try_open(p, S, &ctx) == CKPT_OK && ctx && exists(p));
	ckpt_close(ctx);
	/* ... but not through a regular file where a parent should be */
	snprintf(p, sizeof(p), "%s/a-file", B);
	CU_ASSERT_FATAL(close(open(p, O_CREAT | O_WRONLY, 0644)) == 0);
	snprintf(p, sizeof(p), "%s/a-file/local", B);
	CU_ASSERT(try_open(p, S, &ctx) < 0 && !ctx && !exists(p));
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(NULL), "a-file"));
	/* shared_dir reaching into local_dir through a symlink */
	snprintf(p, sizeof(p), "%s/sub", L);
	snprintf(q, sizeof(q), "%s/link-to-local-sub", B);
	CU_ASSERT_FATAL(mkdir(p, 0755) == 0 && symlink(p, q) == 0);
	CU_ASSERT(try_open(L, q, &ctx) == CKPT_EINVAL && !ctx);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(NULL), "inside"));
	snprintf(q, sizeof(q), "%s/link-to-local", B);
	CU_ASSERT_FATAL(symlink(L, q) == 0);
	CU_ASSERT(try_open(q, L, &ctx) == CKPT_EINVAL && !ctx);
	/* paths that are too long, empty, or hold a newline are refused by the configuration */
	longp = malloc(5000);
	CU_ASSERT_FATAL(longp != NULL);
	memset(longp, 'd', 4999);
	longp[0] = '/';
	longp[4999] = '\0';
	CU_ASSERT(try_open(longp, S, &ctx) == CKPT_EINVAL && !ctx);
	free(longp);
	CU_ASSERT(try_open("", S, &ctx) == CKPT_EINVAL && !ctx);
	CU_ASSERT(try_open("/tmp\n/x", S, &ctx) == CKPT_EINVAL && !ctx);
	/* an unwritable shared_dir (a read-only mount: root ignores permission bits) */
	snprintf(p, sizeof(p), "%s/ro", B);
	CU_ASSERT_FATAL(mkdir(p, 0755) == 0);
	if (th_sh("mount --bind '%s' '%s' 2>/dev/null && mount -o remount,bind,ro '%s'", S, p,
		  p) == 0) {
		rc = try_open(L, p, &ctx);
		CU_ASSERT(rc == CKPT_EPERM && !ctx);
		CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(NULL), "not writable"));
		th_sh("umount '%s'", p);
	} else {
		printf("(no bind mounts: read-only case skipped) ");
	}
	/* non-root: permission bits */
	if (geteuid() != 0) {
		snprintf(p, sizeof(p), "%s/no-write", B);
		CU_ASSERT_FATAL(mkdir(p, 0555) == 0);
		CU_ASSERT(try_open(L, p, &ctx) == CKPT_EPERM && !ctx);
	}
	/* spelled with extra slashes and dots: the same directories, works */
	snprintf(p, sizeof(p), "%s//./", L);
	snprintf(q, sizeof(q), "%s/../shared//", L);
	CU_ASSERT(try_open(p, q, &ctx) == CKPT_OK);
	ckpt_close(ctx);
}

/* ---- steps: backwards, the extremes ---- */

static void test_steps(void)
{
	uint64_t steps[] = { 10, 9, 8, 9, 0, UINT64_MAX - 1, 5 };
	char d[8][16] = { { 0 } }, p[4400]; /* all 16 bytes are saved */
	ckpt_ctx *ctx;
	uint64_t latest = 0;

	CU_ASSERT_FATAL(setup_dirs("hostile-steps") == 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx = open_kv(L, S, "job", (const char *const[]){
		"keep_shared", "3", "keep_local", "2", NULL }));
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		ckpt_region r = { "w", d[i], sizeof(d[i]) };

		snprintf(d[i], sizeof(d[i]), "save %zu", i);
		CU_ASSERT(ckpt_save(ctx, steps[i], &r, 1) == CKPT_OK);
		CU_ASSERT(ckpt_wait(ctx, steps[i]) == CKPT_OK);
	}
	CU_ASSERT(ckpt_save(ctx, CKPT_STEP_ALL, NULL, 0) == CKPT_EINVAL);
	CU_ASSERT(ckpt_latest(ctx, &latest) == CKPT_OK && latest == UINT64_MAX - 1);
	CU_ASSERT(th_load_eq(ctx, UINT64_MAX - 1, "w", d[5], sizeof(d[5])));
	snprintf(p, sizeof(p), "%s/job/step-18446744073709551614/MANIFEST", S);
	CU_ASSERT(exists(p));
	/* retention keeps the most recent saves too: 0 and 5, saved after higher steps */
	CU_ASSERT(th_load_eq(ctx, 5, "w", d[6], sizeof(d[6])));
	CU_ASSERT(th_load_eq(ctx, 0, "w", d[4], sizeof(d[4])));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	th_sh("rm -rf '%s'/job", L);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx = open_job());
	CU_ASSERT(th_load_eq(ctx, 5, "w", d[6], sizeof(d[6])));
	CU_ASSERT(th_load_eq(ctx, 0, "w", d[4], sizeof(d[4])));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
}

/* ---- two processes of one job write the same steps ---- */

#define TWO_N 300000u

static void two_fill(unsigned char *p, int who, uint64_t step)
{
	th_fill(p, TWO_N, (uint64_t)who * 100000 + step);
}

static void two_child(int who, int steps)
{
	unsigned char *d = malloc(TWO_N);
	ckpt_ctx *ctx;

	alarm(20); /* a hang is a failure: the parent sees SIGALRM */
	if (!d)
		_exit(10);
	if (!(ctx = open_kv(L, S, "job", (const char *const[]){ "keep_shared", "0", "keep_local",
								 "100", NULL }))) {
		/* refused, and said why: the other process holds the job */
		int code = strstr(ckpt_errmsg(NULL), "already open") ? 20 : 10;

		free(d); /* valgrind checks the children's leaks too */
		_exit(code);
	}
	for (int s = 1; s <= steps; s++) {
		ckpt_region r = { "w", d, TWO_N };
		int rc;

		two_fill(d, who, (uint64_t)s);
		rc = ckpt_save(ctx, (uint64_t)s, &r, 1);
		if (rc != CKPT_OK && !*ckpt_errmsg(ctx))
			_exit(11); /* an error without a message */
		if (rc == CKPT_OK && (rc = ckpt_wait(ctx, (uint64_t)s)) != CKPT_OK &&
		    !*ckpt_errmsg(ctx))
			_exit(12);
	}
	ckpt_close(ctx);
	free(d);
	_exit(0);
}

/* One of the two saves of step s, bit-exact: 1; an error: 0; anything else: -1. */
static int two_check(ckpt_ctx *ctx, uint64_t s)
{
	unsigned char *got = malloc(TWO_N), *a = malloc(TWO_N), *b = malloc(TWO_N);
	int rc, res;

	two_fill(a, 1, s);
	two_fill(b, 2, s);
	rc = ckpt_load(ctx, s, "w", got, TWO_N);
	res = rc != CKPT_OK ? 0 : (!memcmp(got, a, TWO_N) || !memcmp(got, b, TWO_N)) ? 1 : -1;
	free(got);
	free(a);
	free(b);
	return res;
}

static void test_two_writers(void)
{
	const int steps = 12;
	pid_t p1, p2;
	int st1 = 0, st2 = 0, hung, wrong = 0, unread = 0;
	ckpt_ctx *ctx;

	CU_ASSERT_FATAL(setup_dirs("hostile-two") == 0);
	fflush(NULL);
	if ((p1 = fork()) == 0)
		two_child(1, steps);
	if ((p2 = fork()) == 0)
		two_child(2, steps);
	CU_ASSERT_FATAL(p1 > 0 && p2 > 0);
	waitpid(p1, &st1, 0);
	waitpid(p2, &st2, 0);
	hung = (WIFSIGNALED(st1) && WTERMSIG(st1) == SIGALRM) ||
	       (WIFSIGNALED(st2) && WTERMSIG(st2) == SIGALRM);
	known_bug(!hung, "B3", "a process sharing its job with another hangs in ckpt_wait");
	CU_ASSERT(!WIFSIGNALED(st1) || WTERMSIG(st1) == SIGALRM); /* no crash */
	CU_ASSERT(!WIFSIGNALED(st2) || WTERMSIG(st2) == SIGALRM);
	/* every error had a message; a refused open (20) names the reason */
	CU_ASSERT(!WIFEXITED(st1) || WEXITSTATUS(st1) == 0 || WEXITSTATUS(st1) == 20);
	CU_ASSERT(!WIFEXITED(st2) || WEXITSTATUS(st2) == 0 || WEXITSTATUS(st2) == 20);
	if (WIFEXITED(st1) && WIFEXITED(st2) && (WEXITSTATUS(st1) == 20 || WEXITSTATUS(st2) == 20))
		printf("(the second process was refused: the job is open) ");
	/* whatever won, each step is exactly one of the two saves, never a mix */
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx = open_job());
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);
	for (int s = 1; s <= steps; s++) {
		int r = two_check(ctx, (uint64_t)s);

		wrong += r < 0;
		unread += r == 0;
	}
	CU_ASSERT(wrong == 0);
	CU_ASSERT(unread == 0);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	/* and the shared tier alone */
	th_sh("rm -rf '%s'/job", L);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx = open_job());
	wrong = unread = 0;
	for (int s = 1; s <= steps; s++) {
		int r = two_check(ctx, (uint64_t)s);

		wrong += r < 0;
		unread += r == 0;
	}
	CU_ASSERT(wrong == 0);
	known_bug(unread == 0, "B3", "a step written by two processes is unreadable from the "
		  "shared tier");
	if (unread)
		printf("(%d of %d steps unreadable from shared) ", unread, steps);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
}

/* ---- the shared volume is not trusted ---- */

/* Step 1 saved and committed, with content "one". */
static void commit_step(ckpt_ctx *ctx, uint64_t step, const char *content)
{
	ckpt_region r = { "w", content, strlen(content) };

	CU_ASSERT(ckpt_save(ctx, step, &r, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, step) == CKPT_OK);
}

static void test_planted_symlinks(void)
{
	char victim[4400], p[4400], q[4400], other[4400];
	ckpt_ctx *ctx;
	uint64_t latest = 0;
	int before;

	CU_ASSERT_FATAL(setup_dirs("hostile-links") == 0);
	/* a directory outside the checkpoint tree, with files someone cares about */
	snprintf(victim, sizeof(victim), "%s/victim", B);
	CU_ASSERT_FATAL(mkdir(victim, 0755) == 0);
	CU_ASSERT(th_sh("for i in 1 2 3; do echo keep > '%s'/file$i; done", victim) == 0);
	before = nfiles(victim);

	/* 1. step directories planted as symlinks, on both tiers, before the job saves them */
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx = open_kv(L, S, "job", (const char *const[]){
		"keep_shared", "1", "keep_local", "1", NULL }));
	snprintf(p, sizeof(p), "%s/job/step-%020d", S, 2);
	CU_ASSERT_FATAL(symlink(victim, p) == 0);
	snprintf(p, sizeof(p), "%s/job/step-%020d", L, 3);
	CU_ASSERT_FATAL(symlink(victim, p) == 0);
	{
		ckpt_region r = { "w", "data", 4 };
		int save3 = 0, wait2 = 0, others = 1, said = 0;

		for (uint64_t s = 1; s <= 5; s++) {
			int rc = ckpt_save(ctx, s, &r, 1), wrc = rc ? rc : ckpt_wait(ctx, s);

			if (s == 3)
				save3 = rc;
			else if (s == 2)
				wait2 = wrc;
			else
				others &= rc == CKPT_OK && wrc == CKPT_OK;
			if (rc || wrc)
				said += strstr(ckpt_errmsg(ctx), "not followed") != NULL;
		}
		CU_ASSERT(others); /* the job goes on around the planted links */
		known_bug(save3 < 0 && wait2 < 0 && said == 2, "B1",
			  "a step whose directory is a planted symlink is refused with a clear error");
	}
	ckpt_close(ctx); /* reports the step that could not drain */
	known_bug(nfiles(victim) == before, "B1", "files were written into (or deleted from) a "
		  "directory a planted step symlink points to");

	/* 2. a symlinked step directory pointing at another job's valid step is not read */
	CU_ASSERT_FATAL(setup_dirs("hostile-links2") == 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx = open_kv(L, S, "other", NULL));
	commit_step(ctx, 7, "other job");
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx = open_job());
	commit_step(ctx, 1, "mine");
	snprintf(other, sizeof(other), "%s/other/step-%020d", S, 7);
	snprintf(p, sizeof(p), "%s/job/step-%020d", S, 7);
	CU_ASSERT_FATAL(symlink(other, p) == 0);
	th_sh("rm -rf '%s'/job", L);
	CU_ASSERT(ckpt_latest(ctx, &latest) == CKPT_OK);
	known_bug(latest == 1, "B1", "ckpt_latest follows a symlinked step directory");
	known_bug(!th_load_eq(ctx, 7, "w", "other job", 9), "B1",
		  "ckpt_load reads through a symlinked step directory");
	CU_ASSERT(unlink(p) == 0);

	/* 3. files planted as symlinks, FIFOs and directories are never followed or read */
	snprintf(p, sizeof(p), "%s/job/step-%020d/MANIFEST", S, 1);
	snprintf(q, sizeof(q), "%s/stolen-MANIFEST", B);
	CU_ASSERT_FATAL(rename(p, q) == 0);
	CU_ASSERT_FATAL(symlink(q, p) == 0); /* the real MANIFEST, behind a symlink */
	CU_ASSERT(ckpt_latest(ctx, &latest) == CKPT_ENOENT);
	CU_ASSERT(unlink(p) == 0 && mkfifo(p, 0644) == 0); /* a FIFO: must not hang */
	CU_ASSERT(ckpt_latest(ctx, &latest) == CKPT_ENOENT);
	CU_ASSERT(unlink(p) == 0 && mkdir(p, 0755) == 0);
	CU_ASSERT(ckpt_latest(ctx, &latest) == CKPT_ENOENT);
	CU_ASSERT(rmdir(p) == 0 && rename(q, p) == 0);
	CU_ASSERT(ckpt_latest(ctx, &latest) == CKPT_OK && latest == 1);
	{
		char ckz[4400], cmd[9000];
		FILE *f;

		snprintf(cmd, sizeof(cmd), "ls %s/job/step-%020d/rank-*.ckz", S, 1);
		CU_ASSERT_FATAL((f = popen(cmd, "r")) != NULL);
		CU_ASSERT_FATAL(fgets(ckz, sizeof(ckz), f) != NULL);
		pclose(f);
		ckz[strcspn(ckz, "\n")] = '\0';
		snprintf(q, sizeof(q), "%s/stolen-shard", B);
		CU_ASSERT_FATAL(rename(ckz, q) == 0 && symlink(q, ckz) == 0);
		CU_ASSERT(ckpt_latest(ctx, &latest) == CKPT_ENOENT);
		CU_ASSERT(!th_load_eq(ctx, 1, "w", "mine", 4));
		CU_ASSERT(unlink(ckz) == 0 && symlink("/dev/zero", ckz) == 0);
		CU_ASSERT(ckpt_latest(ctx, &latest) == CKPT_ENOENT);
		CU_ASSERT(unlink(ckz) == 0 && rename(q, ckz) == 0);
	}
	/* a local shard behind a symlink is not read either; the shared copy is */
	commit_step(ctx, 2, "two!");
	snprintf(p, sizeof(p), "%s/job/step-%020d/rank-000000.ckl", L, 2);
	snprintf(q, sizeof(q), "%s/stolen-local", B);
	CU_ASSERT_FATAL(rename(p, q) == 0 && symlink(q, p) == 0);
	CU_ASSERT(th_load_eq(ctx, 2, "w", "two!", 4)); /* from the shared copy */
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
}

/* A MANIFEST and a shard forged to be self-consistent but to claim absurd sizes: nothing is
 * allocated from the claims, and the tools refuse cleanly. */
static void test_forged_sizes(void)
{
	const uint64_t step = 3, save = 0x1122334455667788ull;
	const uint32_t nchunks = 1024;
	struct ckpt_region_meta m;
	struct ckpt_chunk *ch = calloc(nchunks, sizeof(*ch));
	struct ckpt_header h = { CKPT_FMT_VERSION, CKPT_FLAG_COMPRESSED, step, save, 0, 1, 1,
				 CKPT_HEADER_SIZE, 1 };
	struct ckpt_trailer t;
	struct ckpt_manifest man;
	struct ckpt_manifest_rank mr;
	uint8_t hdr[CKPT_HEADER_SIZE], trl[CKPT_TRAILER_SIZE], mbuf[88], data[64], *idx;
	size_t isz;
	char dir[4400], p[4600];
	ckpt_ctx *ctx;
	uint64_t latest = 0;
	size_t sz = 0;
	FILE *f;
	int rc;

	CU_ASSERT_FATAL(setup_dirs("hostile-forged") == 0 && ch);
	/* one region claiming 2^40 bytes in 1024 chunks of 1 GiB, every chunk the same 64 bytes */
	memset(&m, 0, sizeof(m));
	strcpy(m.name, "huge");
	m.name_len = 4;
	m.codec = CKPT_CODEC_ZSTD;
	m.nchunks = nchunks;
	m.raw_size = 1ull << 40;
	m.chunk_raw = 1ull << 30;
	m.raw_xxh3 = 42;
	memset(data, 0xab, sizeof(data));
	for (uint32_t c = 0; c < nchunks; c++)
		ch[c] = (struct ckpt_chunk){ CKPT_HEADER_SIZE, sizeof(data),
					     XXH3_64bits(data, sizeof(data)), 0, 0 };
	m.chunks = ch;
	isz = ckpt_fmt__index_size(&m, 1);
	CU_ASSERT_FATAL((idx = malloc(isz)) != NULL);
	ckpt_fmt__encode_index(idx, &m, 1);
	ckpt_fmt__encode_header(hdr, &h);
	t = (struct ckpt_trailer){ CKPT_HEADER_SIZE + sizeof(data), isz, XXH3_64bits(idx, isz),
				   m.raw_size, CKPT_HEADER_SIZE + sizeof(data) + isz +
				   CKPT_TRAILER_SIZE, save };
	ckpt_fmt__encode_trailer(trl, &t);
	mr = (struct ckpt_manifest_rank){ t.file_size, t.index_xxh3, t.raw_total, 1 };
	man = (struct ckpt_manifest){ CKPT_FMT_VERSION, 1, step, save, 1, &mr };
	ckpt_fmt__encode_manifest(mbuf, &man);
	snprintf(dir, sizeof(dir), "%s/job/step-%020llu", S, (unsigned long long)step);
	CU_ASSERT_FATAL(th_sh("mkdir -p '%s'", dir) == 0);
	snprintf(p, sizeof(p), "%s/rank-000000-%016llx.ckz", dir, (unsigned long long)save);
	CU_ASSERT_FATAL((f = fopen(p, "wb")) != NULL);
	fwrite(hdr, 1, sizeof(hdr), f);
	fwrite(data, 1, sizeof(data), f);
	fwrite(idx, 1, isz, f);
	fwrite(trl, 1, sizeof(trl), f);
	fclose(f);
	snprintf(p, sizeof(p), "%s/MANIFEST", dir);
	CU_ASSERT_FATAL((f = fopen(p, "wb")) != NULL);
	fwrite(mbuf, 1, sizeof(mbuf), f);
	fclose(f);
	free(idx);
	free(ch);

	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx = open_job());
	CU_ASSERT(ckpt_latest(ctx, &latest) == CKPT_OK && latest == step); /* structurally fine */
	rc = ckpt_region_size(ctx, step, "huge", &sz);
	CU_ASSERT(rc == CKPT_OK && sz == (size_t)1 << 40); /* the claim, reported, not allocated */
	{
		char small[16];

		CU_ASSERT(ckpt_load(ctx, step, "huge", small, sizeof(small)) == CKPT_EINVAL);
	}
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	if (TOOL) {
		/* the tools refuse the data (2: damaged) or the memory (3), and never crash */
		rc = th_sh(MEM_LIMIT "'%s' verify --shared-dir '%s' --name job --step 3 "
			   ">/dev/null 2>&1", TOOL, S);
		CU_ASSERT(rc == 2 || rc == 3);
		rc = th_sh(MEM_LIMIT "'%s' restore --shared-dir '%s' --local-dir '%s' "
			   "--name job >/dev/null 2>&1", TOOL, S, L);
		CU_ASSERT(rc == 2 || rc == 3);
		CU_ASSERT(th_count_files(L, "*.ckl") == 0);
	}
	/* a MANIFEST claiming 2^24 ranks is refused by its size before anything is allocated */
	{
		uint8_t forged[88];

		memcpy(forged, mbuf, sizeof(forged));
		ckpt_fmt__put32(forged + 12, 1u << 24);
		ckpt_fmt__put64(forged + 80, XXH3_64bits(forged, 80));
		CU_ASSERT_FATAL((f = fopen(p, "wb")) != NULL);
		fwrite(forged, 1, sizeof(forged), f);
		fclose(f);
		CU_ASSERT_PTR_NOT_NULL_FATAL(ctx = open_job());
		CU_ASSERT(ckpt_latest(ctx, &latest) == CKPT_ENOENT);
		CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	}
}

/* ---- file modes: owner-only or group-readable, as the umask allows; never world ---- */

static int mode_of(const char *p)
{
	struct stat st;

	return lstat(p, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

static void test_modes(void)
{
	static const struct { mode_t umask; int file, dir; } cases[] = {
		{ 022, 0640, 0750 }, { 027, 0640, 0750 }, { 077, 0600, 0700 }, { 0, 0640, 0750 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char p[4600], ckz[4600], cmd[9500], r[4400];
		mode_t old;
		ckpt_ctx *ctx;
		FILE *f;

		CU_ASSERT_FATAL(setup_dirs("hostile-modes") == 0);
		old = umask(cases[i].umask);
		CU_ASSERT_PTR_NOT_NULL_FATAL(ctx = open_job());
		commit_step(ctx, 1, "modes");
		CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
		umask(old);
		snprintf(p, sizeof(p), "%s/job/step-%020d/rank-000000.ckl", L, 1);
		CU_ASSERT(mode_of(p) == cases[i].file);
		snprintf(p, sizeof(p), "%s/job/step-%020d/MANIFEST", S, 1);
		CU_ASSERT(mode_of(p) == cases[i].file);
		snprintf(cmd, sizeof(cmd), "ls %s/job/step-%020d/rank-*.ckz", S, 1);
		if ((f = popen(cmd, "r")) && fgets(ckz, sizeof(ckz), f)) {
			ckz[strcspn(ckz, "\n")] = '\0';
			CU_ASSERT(mode_of(ckz) == cases[i].file);
		}
		if (f)
			pclose(f);
		snprintf(p, sizeof(p), "%s/job/step-%020d", S, 1);
		CU_ASSERT(mode_of(p) == cases[i].dir);
		snprintf(p, sizeof(p), "%s/job", L);
		CU_ASSERT(mode_of(p) == cases[i].dir);
		if (TOOL) {
			snprintf(r, sizeof(r), "%s/restored", B);
			CU_ASSERT(th_sh("mkdir -p '%s' && umask %03o && '%s' restore --shared-dir '%s' "
					"--local-dir '%s' --name job --quiet", r, (unsigned)cases[i].umask,
					TOOL, S, r) == 0);
			snprintf(p, sizeof(p), "%s/job/step-%020d/rank-000000.ckl", r, 1);
			CU_ASSERT(mode_of(p) == cases[i].file);
			snprintf(p, sizeof(p), "%s/job/step-%020d", r, 1);
			CU_ASSERT(mode_of(p) == cases[i].dir);
		}
	}
}

/* ---- every tool option, with bad values ---- */

static void test_tool_options(void)
{
	static const char *const usage64[] = {
		"", "frobnicate", "restore --step", "restore --step -1", "restore --step abc",
		"restore --step 18446744073709551615", "restore --step 99999999999999999999",
		"restore --rank 3-1", "restore --rank ,", "restore --rank 99999999999",
		"restore --rank -1", "restore --threads 0", "restore --threads 100000",
		"restore --threads x", "restore --name ''", "restore --name ../x",
		"restore --name 'a/b'", "restore --shared-dir ''", "restore --keep-shared 1",
		"restore --all", "verify --step 1 --all", "gc --min-age -1", "gc --min-age nan",
		"gc --min-age 1e99", "gc --keep-shared -5", "gc --keep-local x", "gc --step 1",
		"ls --threads 2", "ls --dry-run", "restore --json extra-argument",
		"restore --bogus", "restore -x",
	};
	char cmd[12000], *longp;
	int rc;

	if (!TOOL) {
		printf("(no tools/ckpt: skipped) ");
		return;
	}
	CU_ASSERT_FATAL(setup_dirs("hostile-tool") == 0);
	for (size_t i = 0; i < sizeof(usage64) / sizeof(usage64[0]); i++) {
		rc = th_sh("cd '%s' && '%s' %s --shared-dir '%s' --local-dir '%s' >/dev/null 2>&1",
			   B, TOOL, usage64[i], S, L);
		if (rc != 64)
			fprintf(stderr, "\n  ckpt %s: exit %d, expected 64\n", usage64[i], rc);
		CU_ASSERT(rc == 64);
	}
	/* paths: too long (usage), missing (I/O, with the mount hint), equal or nested */
	longp = malloc(5000);
	CU_ASSERT_FATAL(longp != NULL);
	memset(longp, 'p', 4999);
	longp[0] = '/';
	longp[4999] = '\0';
	snprintf(cmd, sizeof(cmd), "'%s' restore --shared-dir '%s' --local-dir '%s' >/dev/null "
		 "2>&1", TOOL, longp, L);
	rc = th_sh("%s", cmd);
	CU_ASSERT(rc == 64 || rc == 3);
	free(longp);
	CU_ASSERT(th_sh("'%s' restore --shared-dir '%s' --local-dir '%s' >/dev/null 2>&1", TOOL, S,
			S) == 64);
	CU_ASSERT(th_sh("'%s' restore --shared-dir '%s/x' --local-dir '%s' >/dev/null 2>&1", TOOL,
			B, L) == 3);
	CU_ASSERT(th_sh("'%s' ls --shared-dir '%s/x' >/dev/null 2>&1", TOOL, B) == 3);
	CU_ASSERT(th_sh("'%s' gc --shared-dir '%s/x' >/dev/null 2>&1", TOOL, B) == 3);
	/* a bad CKPT_* variable is a usage error; a good one is used */
	CU_ASSERT(th_sh("CKPT_NAME=../x '%s' ls --shared-dir '%s' >/dev/null 2>&1", TOOL, S) == 64);
	CU_ASSERT(th_sh("CKPT_IO_DEPTH=0 '%s' restore --shared-dir '%s' --local-dir '%s' "
			">/dev/null 2>&1", TOOL, S, L) == 64);
	/* nothing was created by any of it */
	CU_ASSERT(nfiles(L) == 0 && nfiles(S) == 0);
}

static void clean_environment(void)
{
	extern char **environ;
	char name[256];

	for (size_t i = 0; environ[i];) {
		size_t n = strcspn(environ[i], "=");

		if (strncmp(environ[i], "CKPT_", 5) || n >= sizeof(name) ||
		    !strncmp(environ[i], "CKPT_TEST_", 10)) {
			i++;
			continue;
		}
		memcpy(name, environ[i], n);
		name[n] = '\0';
		unsetenv(name);
	}
}

int main(void)
{
	CU_pSuite s;
	const char *t = getenv("TOOLS");
	int rc;

	clean_environment();
	TOOL = t ? t : "./tools/ckpt";
	if (access(TOOL, X_OK) != 0)
		TOOL = NULL;
	else {
		static char abs_tool[PATH_MAX];

		if (realpath(TOOL, abs_tool))
			TOOL = abs_tool;
	}
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite_with_setup_and_teardown("hostile", NULL, NULL, NULL, teardown);
	if (!s || !CU_add_test(s, "every function: NULLs, zero and huge sizes", test_api_args) ||
	    !CU_add_test(s, "region names are labels, never paths", test_region_names) ||
	    !CU_add_test(s, "job names", test_job_names) ||
	    !CU_add_test(s, "missing, unwritable, nested and odd directories", test_directories) ||
	    !CU_add_test(s, "steps backwards and at the extremes", test_steps) ||
	    !CU_add_test(s, "two processes write the same steps", test_two_writers) ||
	    !CU_add_test(s, "planted symlinks, FIFOs, directories", test_planted_symlinks) ||
	    !CU_add_test(s, "forged sizes and counts", test_forged_sizes) ||
	    !CU_add_test(s, "file modes honour the umask", test_modes) ||
	    !CU_add_test(s, "every tool option, bad values", test_tool_options)) {
		CU_cleanup_registry();
		return 1;
	}
	rc = th_run();
	teardown();
	if (xfails)
		printf("hostile: %d known bugs (XFAIL; CKPT_TEST_STRICT=1 makes them fail)\n", xfails);
	return rc;
}
