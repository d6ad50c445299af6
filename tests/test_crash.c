/* SPDX-License-Identifier: MIT */
/* Crash safety: SIGKILL at every fault point and at random moments, then recover bit-exact. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "harness.h"

#define MIB (1024u * 1024u)
#define BIG (16 * MIB)   /* the random-kill test's region */
#define FSIZE (4 * MIB)  /* the fault-point test's main region: 64 chunks of 64 KiB */
#define SMALL 1000

static void step_dir(char *buf, size_t len, const char *tier, uint64_t step)
{
	snprintf(buf, len, "%s/job/step-%020llu", tier, (unsigned long long)step);
}

/* Both regions of version `v` (0 or 1) of the fault test's step `step`. */
static void step_data(unsigned char *big, unsigned char *small, uint64_t step, int v)
{
	th_make_data(big, FSIZE, 4 * step + 2 * (uint64_t)v);
	th_make_data(small, SMALL, 4 * step + 2 * (uint64_t)v + 1);
}

static int step_eq(ckpt_ctx *ctx, uint64_t step, int v, unsigned char *big, unsigned char *small)
{
	step_data(big, small, step, v);
	return th_load_eq(ctx, step, "weights", big, FSIZE) &&
	       th_load_eq(ctx, step, "small", small, SMALL);
}

static int save_step(ckpt_ctx *ctx, uint64_t step, int v, unsigned char *big, unsigned char *small)
{
	ckpt_region r[2] = { { "weights", big, FSIZE }, { "small", small, SMALL } };

	step_data(big, small, step, v);
	return ckpt_save(ctx, step, r, 2);
}

/* ---- a kill at each fault point ---- */

/* read_grace 0: these tests check what is removed at once (the grace period: test_api.c
 * test_read_grace, test_store.c's rule S) */
static const char *const fault_kv[] = { "chunk_size", "64K", "read_grace", "0", NULL };

/* The child: step 1 saved and committed without faults; then step 2 with the fault armed, through
 * the configuration key or (use_env) the CKPT_FAULT_KILL_AT environment variable. */
static void crash_child(const struct th_env *e, const char *point, int use_env)
{
	const char *kv[] = { "chunk_size", "64K", "fault_kill_at", point, NULL };
	unsigned char *big = malloc(FSIZE), *small = malloc(SMALL);
	ckpt_ctx *ctx;

	if (!big || !small)
		_exit(10);
	if (!(ctx = th_open(e, fault_kv)))
		_exit(11);
	if (save_step(ctx, 1, 0, big, small) != CKPT_OK || ckpt_wait(ctx, 1) != CKPT_OK)
		_exit(12);
	if (ckpt_close(ctx) != CKPT_OK)
		_exit(13);
	if (use_env) {
		setenv("CKPT_FAULT_KILL_AT", point, 1);
		kv[2] = NULL;
	}
	if (!(ctx = th_open(e, kv)))
		_exit(14);
	if (save_step(ctx, 2, 0, big, small) != CKPT_OK)
		_exit(15);
	ckpt_wait(ctx, 2);
	ckpt_close(ctx);
	_exit(0); /* not killed: the fault point never fired */
}

/* What the files must look like right after the kill, before anyone recovers. */
static void check_leftovers(const struct th_env *e, const char *point)
{
	char ldir[4200], sdir[4200], lfile[4300];
	struct stat st;
	int ltmp, stmp, ckz, man, lfile_ok, ok = 0;

	step_dir(ldir, sizeof(ldir), e->local, 2);
	step_dir(sdir, sizeof(sdir), e->shared, 2);
	snprintf(lfile, sizeof(lfile), "%s/rank-000000.ckl", ldir);
	lfile_ok = stat(lfile, &st) == 0;
	ltmp = th_count_files(ldir, ".tmp.*");
	stmp = th_count_files(sdir, ".tmp.*");
	ckz = th_count_files(sdir, "rank-*.ckz");
	man = th_count_files(sdir, "MANIFEST");
	if (!strcmp(point, "save.written") || !strcmp(point, "save.synced"))
		ok = ltmp == 1 && !lfile_ok && stmp + ckz + man == 0;
	else if (!strcmp(point, "save.published"))
		ok = ltmp == 0 && lfile_ok && stmp + ckz + man == 0;
	else if (!strcmp(point, "drain.midway") || !strcmp(point, "drain.written"))
		ok = ltmp == 0 && lfile_ok && stmp == 1 && ckz == 0 && man == 0;
	else if (!strcmp(point, "drain.published") || !strcmp(point, "commit.before"))
		ok = ltmp == 0 && lfile_ok && stmp == 0 && ckz == 1 && man == 0;
	else if (!strcmp(point, "commit.done"))
		ok = ltmp == 0 && lfile_ok && stmp == 0 && ckz == 1 && man == 1;
	if (!ok)
		fprintf(stderr, "after a kill at %s: local tmp %d, local shard %d, shared tmp %d, "
			"shards %d, MANIFEST %d\n", point, ltmp, lfile_ok, stmp, ckz, man);
	CU_ASSERT(ok);
	if (!strcmp(point, "drain.midway") || !strcmp(point, "drain.written")) {
		/* at drain.midway half the chunks are in the temporary file, at drain.written all
		 * (the data compresses by less than 25%) */
		long long sz = -1;
		struct dirent *de;
		DIR *d = opendir(sdir);

		while (d && (de = readdir(d)))
			if (!strncmp(de->d_name, ".tmp.", 5) &&
			    fstatat(dirfd(d), de->d_name, &st, 0) == 0)
				sz = (long long)st.st_size;
		if (d)
			closedir(d);
		if (!strcmp(point, "drain.midway")) {
			CU_ASSERT(sz > 0 && sz < (long long)FSIZE * 3 / 4);
		} else {
			CU_ASSERT(sz >= (long long)FSIZE * 3 / 4);
		}
	}
}

static void crash_at(const char *point, int use_env)
{
	/* the local file of step 2 is durable from save.published on: then step 2 must survive */
	uint64_t expect = (!strcmp(point, "save.written") || !strcmp(point, "save.synced")) ? 1 : 2;
	unsigned char *big = malloc(FSIZE), *small = malloc(SMALL);
	char sdir[4200];
	struct th_env e;
	ckpt_ctx *ctx;
	uint64_t step = 0;
	pid_t pid;
	int st = 0;

	printf("[%s%s] ", point, use_env ? ", env" : "");
	fflush(stdout);
	CU_ASSERT_FATAL(big && small);
	CU_ASSERT_FATAL(th_env_new(&e, "crash") == 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0)
		crash_child(&e, point, use_env);
	CU_ASSERT(waitpid(pid, &st, 0) == pid);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
		fprintf(stderr, "child at %s: %s %d\n", point,
			WIFEXITED(st) ? "exit status" : "signal",
			WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	CU_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	check_leftovers(&e, point);

	/* recover: the open cleans the dead process's temporary files and re-drains */
	ctx = th_open(&e, fault_kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
	CU_ASSERT(step == expect);
	CU_ASSERT(step_eq(ctx, expect, 0, big, small));
	CU_ASSERT(step_eq(ctx, 1, 0, big, small));
	CU_ASSERT(th_count_files(e.base, ".tmp.*") == 0);
	step_dir(sdir, sizeof(sdir), e.shared, 2);
	CU_ASSERT(th_count_files(sdir, "MANIFEST") == (expect == 2));
	CU_ASSERT(th_count_files(sdir, "rank-*.ckz") == (expect == 2));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);

	/* the shared tier alone: the newest committed step */
	th_sh("rm -rf '%s'/job", e.local);
	ctx = th_open(&e, fault_kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
	CU_ASSERT(step == expect);
	CU_ASSERT(step_eq(ctx, expect, 0, big, small));
	CU_ASSERT(step_eq(ctx, 1, 0, big, small));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free(big);
	free(small);
	th_env_free(&e);
}

static void test_save_written(void) { crash_at("save.written", 0); }
static void test_save_synced(void) { crash_at("save.synced", 1); }
static void test_save_published(void) { crash_at("save.published", 0); }
static void test_drain_midway(void) { crash_at("drain.midway", 0); }
static void test_drain_written(void) { crash_at("drain.written", 1); }
static void test_drain_published(void) { crash_at("drain.published", 0); }
static void test_commit_before(void) { crash_at("commit.before", 0); }
static void test_commit_done(void) { crash_at("commit.done", 1); }

/* ---- a kill while a committed step is saved again ---- */

/* The child commits version 0 of steps 1 and 2, then saves version 1 of step 2 with the fault
 * armed. Until version 1 is committed, version 0 must stay readable. */
static void resave_child(const struct th_env *e, const char *point)
{
	const char *kv[] = { "chunk_size", "64K", "fault_kill_at", point, NULL };
	unsigned char *big = malloc(FSIZE), *small = malloc(SMALL);
	ckpt_ctx *ctx;

	if (!big || !small)
		_exit(10);
	if (!(ctx = th_open(e, fault_kv)))
		_exit(11);
	if (save_step(ctx, 1, 0, big, small) != CKPT_OK || save_step(ctx, 2, 0, big, small) ||
	    ckpt_wait(ctx, CKPT_STEP_ALL) != CKPT_OK || ckpt_close(ctx) != CKPT_OK)
		_exit(12);
	if (!(ctx = th_open(e, kv)))
		_exit(14);
	if (save_step(ctx, 2, 1, big, small) != CKPT_OK)
		_exit(15);
	ckpt_wait(ctx, 2);
	ckpt_close(ctx);
	_exit(0);
}

static void resave_crash_at(const char *point)
{
	/* which version of step 2 must win: the new one once its local file is published */
	int v = (!strcmp(point, "save.written") || !strcmp(point, "save.synced")) ? 0 : 1;
	unsigned char *big, *small;
	char sdir[4200];
	struct th_env e;
	ckpt_ctx *ctx;
	uint64_t step = 0;
	pid_t pid;
	int st = 0;

	printf("[%s] ", point);
	fflush(stdout);
	CU_ASSERT_FATAL(th_env_new(&e, "crash-resave") == 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0)
		resave_child(&e, point);
	CU_ASSERT(waitpid(pid, &st, 0) == pid);
	CU_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	/* allocated after the fork: the child, killed on purpose, must not hold heap blocks it
	 * cannot free (valgrind checks the leaks of a process that raise()s SIGKILL) */
	big = malloc(FSIZE);
	small = malloc(SMALL);
	CU_ASSERT_FATAL(big && small);
	step_dir(sdir, sizeof(sdir), e.shared, 2);

	/* before recovery, the shared tier still commits version 0, unless the kill came after the
	 * new MANIFEST was in place */
	ctx = th_open(&e, fault_kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
	CU_ASSERT(step == 2);
	CU_ASSERT(step_eq(ctx, 2, v, big, small));
	CU_ASSERT(step_eq(ctx, 1, 0, big, small));
	CU_ASSERT(th_count_files(e.base, ".tmp.*") == 0);
	CU_ASSERT(th_count_files(sdir, "MANIFEST") == 1);
	/* the superseded save's shard is gone once the new one is committed */
	if (th_count_files(sdir, "rank-*.ckz") != 1)
		fprintf(stderr, "%s: %d shards left in %s\n", point,
			th_count_files(sdir, "rank-*.ckz"), sdir);
	CU_ASSERT(th_count_files(sdir, "rank-*.ckz") == 1);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);

	th_sh("rm -rf '%s'/job", e.local);
	ctx = th_open(&e, fault_kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(step_eq(ctx, 2, v, big, small));
	CU_ASSERT(step_eq(ctx, 1, 0, big, small));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free(big);
	free(small);
	th_env_free(&e);
}

static void test_resave_save_synced(void) { resave_crash_at("save.synced"); }
static void test_resave_drain_midway(void) { resave_crash_at("drain.midway"); }
static void test_resave_commit_before(void) { resave_crash_at("commit.before"); }
static void test_resave_commit_done(void) { resave_crash_at("commit.done"); }

/* ---- a kill while retention removes a step ---- */

/* Keeping one step on each tier, the commit of step 2 retires step 1: its local shard and its
 * shared step directory are renamed into the job directories at once, and a drain thread removes
 * them later. Killed in between, they stay behind under .tmp.*.retired names: invisible to
 * readers, removed by the next ckpt_open. */
static void test_retention_killed(void)
{
	const char *keep[] = { "chunk_size", "64K", "keep_local", "1", "keep_shared", "1",
			       "read_grace", "0", NULL };
	const char *kv[] = { "chunk_size", "64K", "keep_local", "1", "keep_shared", "1",
			     "read_grace", "0", "fault_kill_at", "retention.retired", NULL };
	unsigned char *big = malloc(FSIZE), *small = malloc(SMALL);
	char ljob[4200], sjob[4200], sdir[4200];
	struct th_env e;
	ckpt_ctx *ctx;
	uint64_t step = 0;
	pid_t pid;
	int st = 0;

	CU_ASSERT_FATAL(big && small);
	CU_ASSERT_FATAL(th_env_new(&e, "crash") == 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		if (!(ctx = th_open(&e, keep)))
			_exit(11);
		if (save_step(ctx, 1, 0, big, small) != CKPT_OK || ckpt_wait(ctx, 1) != CKPT_OK ||
		    ckpt_close(ctx) != CKPT_OK)
			_exit(12);
		if (!(ctx = th_open(&e, kv)) || save_step(ctx, 2, 0, big, small) != CKPT_OK)
			_exit(13);
		ckpt_wait(ctx, 2);
		_exit(0); /* not killed: nothing was retired */
	}
	CU_ASSERT(waitpid(pid, &st, 0) == pid);
	CU_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	if (!WIFSIGNALED(st))
		fprintf(stderr, "child: exit status %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	snprintf(ljob, sizeof(ljob), "%s/job", e.local);
	snprintf(sjob, sizeof(sjob), "%s/job", e.shared);
	/* step 1 is gone from both tiers' step directories; its copies wait in the trash */
	step_dir(sdir, sizeof(sdir), e.shared, 1);
	CU_ASSERT(access(sdir, F_OK) != 0);
	CU_ASSERT(th_count_files(ljob, ".tmp.*.retired") == 1);
	CU_ASSERT(th_sh("test $(ls -a '%s' | grep -c '^\\.tmp\\..*\\.retired$') = 1", sjob) == 0);
	CU_ASSERT(th_count_files(sjob, "rank-*.ckz") == 2); /* step 1's in the trash, step 2's */

	ctx = th_open(&e, keep); /* removes the trash */
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(th_count_files(e.base, ".tmp.*") == 0);
	CU_ASSERT(th_count_files(sjob, "rank-*.ckz") == 1);
	/* step 2 and the open context's writer lease */
	CU_ASSERT(th_sh("test -z \"$(ls -A '%s' | grep -v -e '^step-0*2$' -e '^\\.writer$')\"", sjob)
		  == 0);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK && step == 2);
	CU_ASSERT(step_eq(ctx, 2, 0, big, small));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free(big);
	free(small);
	th_env_free(&e);
}

/* ---- a kill at a random moment ---- */

/* Saves steps latest+1, latest+2, ... of one 16 MiB region until killed. */
static void loop_child(const struct th_env *e)
{
	unsigned char *d = malloc(BIG);
	ckpt_region r = { "state", d, BIG };
	ckpt_ctx *ctx;
	uint64_t step = 0;

	if (!d || !(ctx = th_open(e, NULL)))
		_exit(10);
	if (ckpt_latest(ctx, &step) != CKPT_OK)
		step = 0;
	for (int i = 0; i < 500; i++) {
		step++;
		th_make_data(d, BIG, step);
		if (ckpt_save(ctx, step, &r, 1) != CKPT_OK)
			_exit(11);
	}
	_exit(12); /* the parent should have killed us long before */
}

static void test_random_kills(void)
{
	unsigned char *want = malloc(BIG);
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid() << 8;
	uint64_t prev = 0;
	struct th_env e;

	CU_ASSERT_FATAL(want != NULL);
	CU_ASSERT_FATAL(th_env_new(&e, "crash-rand") == 0);
	srand(seed);
	printf("(seed %u; delays ms:", seed);
	for (int it = 0; it < 10; it++) {
		/* spread over the open, the first saves and the steady state of the loop */
		unsigned delay_us = (unsigned)(it * 60000) + (unsigned)(rand() % 60000);
		uint64_t step = 0, committed = 0;
		ckpt_ctx *ctx;
		pid_t pid;
		int st = 0, rc;

		printf(" %u", delay_us / 1000);
		fflush(stdout);
		pid = fork();
		CU_ASSERT_FATAL(pid >= 0);
		if (pid == 0)
			loop_child(&e);
		usleep(delay_us);
		kill(pid, SIGKILL);
		CU_ASSERT(waitpid(pid, &st, 0) == pid);
		CU_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

		ctx = th_open(&e, NULL);
		CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
		CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);
		CU_ASSERT(th_count_files(e.base, ".tmp.*") == 0);
		rc = ckpt_latest(ctx, &step);
		if (prev) {
			CU_ASSERT(rc == CKPT_OK); /* a step once complete never vanishes */
		} else {
			CU_ASSERT(rc == CKPT_OK || rc == CKPT_ENOENT);
		}
		if (rc == CKPT_OK) {
			CU_ASSERT(step >= prev);
			th_make_data(want, BIG, step);
			CU_ASSERT(th_load_eq(ctx, step, "state", want, BIG));
			prev = step;
		}
		CU_ASSERT(ckpt_close(ctx) == CKPT_OK);

		/* everything complete was committed by the recovery: shared alone has it */
		th_sh("rm -rf '%s'/job", e.local);
		ctx = th_open(&e, NULL);
		CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
		rc = ckpt_latest(ctx, &committed);
		CU_ASSERT(rc == (prev ? CKPT_OK : CKPT_ENOENT));
		if (rc == CKPT_OK) {
			CU_ASSERT(committed == prev);
			/* every committed step is one saved version, intact */
			for (uint64_t s = committed; s > 0 && s + 3 > committed; s--) {
				char dir[4200];

				step_dir(dir, sizeof(dir), e.shared, s);
				if (th_count_files(dir, "MANIFEST") != 1)
					continue;
				th_make_data(want, BIG, s);
				CU_ASSERT(th_load_eq(ctx, s, "state", want, BIG));
			}
		}
		CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	}
	printf("; newest step %llu) ", (unsigned long long)prev);
	free(want);
	th_env_free(&e);
}

int main(void)
{
	CU_pSuite s;

	th_clean_environment();
	th_make_data(&(unsigned char){ 0 }, 1, 0); /* reads the real data: before any fork or thread */
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite_with_setup_and_teardown("crash", NULL, NULL, NULL, th_env_teardown);
	if (!s || !CU_add_test(s, "kill at save.written", test_save_written) ||
	    !CU_add_test(s, "kill at save.synced", test_save_synced) ||
	    !CU_add_test(s, "kill at save.published", test_save_published) ||
	    !CU_add_test(s, "kill at drain.midway", test_drain_midway) ||
	    !CU_add_test(s, "kill at drain.written", test_drain_written) ||
	    !CU_add_test(s, "kill at drain.published", test_drain_published) ||
	    !CU_add_test(s, "kill at commit.before", test_commit_before) ||
	    !CU_add_test(s, "kill at commit.done", test_commit_done) ||
	    !CU_add_test(s, "re-save killed at save.synced", test_resave_save_synced) ||
	    !CU_add_test(s, "re-save killed at drain.midway", test_resave_drain_midway) ||
	    !CU_add_test(s, "re-save killed at commit.before", test_resave_commit_before) ||
	    !CU_add_test(s, "re-save killed at commit.done", test_resave_commit_done) ||
	    !CU_add_test(s, "kill at retention.retired", test_retention_killed) ||
	    !CU_add_test(s, "kill at random moments", test_random_kills)) {
		CU_cleanup_registry();
		return 1;
	}
	return th_run();
}
