/* SPDX-License-Identifier: MIT */
/* Retention when drains fail (issue 13): while every drain fails (here: each step's directory on
 * the shared tier is a regular file, so its mkdir fails at once, as a soft mount's EIO does),
 * local disk stays within keep_local + max_pending steps; the newest local step is kept and
 * drained once the volume is back; the newest committed step is never deleted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "harness.h"

#define KEEP_LOCAL 2
#define MAX_PENDING 2
#define SIZE (256u * 1024u)

static const char *const kv[] = { "keep_local", "2", "max_pending", "2", "chunk_size", "64K",
				  "stall_wait", "0.2", NULL };

static int save(ckpt_ctx *ctx, uint64_t step, unsigned char *buf)
{
	ckpt_region r = { "state", buf, SIZE };

	th_make_data(buf, SIZE, step);
	return ckpt_save(ctx, step, &r, 1);
}

static int local_steps(const struct th_env *e)
{
	char dir[4200];

	snprintf(dir, sizeof(dir), "%s/job", e->local);
	return th_count_files(dir, "rank-*.ckl");
}

static int has_local(const struct th_env *e, uint64_t step)
{
	char p[4300];
	struct stat st;

	snprintf(p, sizeof(p), "%s/job/step-%020llu/rank-000000.ckl", e->local,
		 (unsigned long long)step);
	return stat(p, &st) == 0;
}

/* Make the drain of `step` fail at once: its directory on the shared tier is a regular file. */
static void break_step(const struct th_env *e, uint64_t step, int broken)
{
	char p[4300];
	FILE *f;

	snprintf(p, sizeof(p), "%s/job/step-%020llu", e->shared, (unsigned long long)step);
	if (broken) {
		CU_ASSERT_FATAL((f = fopen(p, "w")) != NULL);
		fclose(f);
	} else {
		CU_ASSERT(unlink(p) == 0);
	}
}

static int loads(ckpt_ctx *ctx, uint64_t step, unsigned char *want)
{
	th_make_data(want, SIZE, step);
	return th_load_eq(ctx, step, "state", want, SIZE);
}

static void test_failed_drains_bounded(void)
{
	struct th_env e;
	unsigned char *buf = malloc(SIZE);
	ckpt_ctx *ctx, *fresh;
	ckpt_lag_info lag;
	char other[4200];
	uint64_t step, last = 24, latest = 0;
	int max_local = 0, newest_gone = 0, k, rc;

	CU_ASSERT_FATAL(buf != NULL);
	CU_ASSERT_FATAL(th_env_new(&e, "retention-failed") == 0);
	CU_ASSERT_FATAL((ctx = th_open(&e, kv)) != NULL);
	/* step 1 commits: the newest committed step of the whole test */
	CU_ASSERT_FATAL(save(ctx, 1, buf) == CKPT_OK);
	CU_ASSERT_FATAL(ckpt_wait(ctx, 1) == CKPT_OK);
	for (step = 2; step <= last; step++)
		break_step(&e, step, 1);
	/* Half the saves wait for the failure first (the save path releases the older step),
	 * half follow each other at once (the failing drain releases it, or the next save). */
	for (step = 2; step <= last; step++) {
		CU_ASSERT_FATAL(save(ctx, step, buf) == CKPT_OK);
		if (step <= last / 2)
			CU_ASSERT(ckpt_wait(ctx, step) < 0); /* the drain failed */
		if ((k = local_steps(&e)) > max_local)
			max_local = k;
		newest_gone += !has_local(&e, step);
	}
	/* the last drain's failure, and its release of the step before */
	rc = ckpt_wait(ctx, CKPT_STEP_ALL);
	CU_ASSERT(rc < 0);
	if ((k = local_steps(&e)) > max_local)
		max_local = k;
	printf("\n    at most %d local steps while every drain failed (bound %d); %d at the end\n",
	       max_local, KEEP_LOCAL + MAX_PENDING, local_steps(&e));
	CU_ASSERT(max_local <= KEEP_LOCAL + MAX_PENDING);
	CU_ASSERT(newest_gone == 0);
	CU_ASSERT(has_local(&e, last));
	CU_ASSERT(!has_local(&e, 2));
	/* a superseded failed step says why it is gone */
	CU_ASSERT(ckpt_wait(ctx, 2) == CKPT_ENOENT);
	CU_ASSERT(strstr(ckpt_errmsg(ctx), "superseded") != NULL);
	CU_ASSERT(ckpt_drain_lag(ctx, &lag) == CKPT_OK);
	CU_ASSERT(lag.skipped >= last - 1 - (KEEP_LOCAL + MAX_PENDING));
	/* the newest committed step is untouched: still there, locally and on shared */
	CU_ASSERT(has_local(&e, 1));
	CU_ASSERT(loads(ctx, 1, buf));
	CU_ASSERT(ckpt_close(ctx) < 0); /* the newest step's drain failed: close says so */

	/* The volume is back: the next open drains the local steps kept, the newest among them. */
	for (step = 2; step <= last; step++)
		break_step(&e, step, 0);
	CU_ASSERT_FATAL((ctx = th_open(&e, kv)) != NULL);
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	/* the shared tier alone (an empty local_dir): the newest step, bit-exact */
	snprintf(other, sizeof(other), "%s/other-local", e.base);
	CU_ASSERT_FATAL((fresh = th_open_dirs(other, e.shared, NULL, NULL)) != NULL);
	CU_ASSERT(ckpt_latest(fresh, &latest) == CKPT_OK);
	CU_ASSERT(latest == last);
	CU_ASSERT(loads(fresh, last, buf));
	CU_ASSERT(loads(fresh, 1, buf));
	ckpt_close(fresh);
	free(buf);
	th_env_free(&e);
}

/* A failed step that nothing newer supersedes is kept and retried: the newest local step. */
static void test_newest_failed_kept(void)
{
	struct th_env e;
	unsigned char *buf = malloc(SIZE);
	ckpt_ctx *ctx;

	CU_ASSERT_FATAL(buf != NULL);
	CU_ASSERT_FATAL(th_env_new(&e, "retention-newest") == 0);
	CU_ASSERT_FATAL((ctx = th_open(&e, kv)) != NULL);
	break_step(&e, 5, 1);
	CU_ASSERT_FATAL(save(ctx, 5, buf) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 5) < 0);
	CU_ASSERT(has_local(&e, 5));
	/* a step saved later under a lower number (a rollback) supersedes nothing */
	CU_ASSERT_FATAL(save(ctx, 3, buf) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 3) == CKPT_OK);
	CU_ASSERT(has_local(&e, 5));
	/* the volume answers again: the next save retries the failed drain, which commits */
	break_step(&e, 5, 0);
	CU_ASSERT_FATAL(save(ctx, 4, buf) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, 5) == CKPT_OK);
	CU_ASSERT(loads(ctx, 5, buf));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free(buf);
	th_env_free(&e);
}

static int committed(const struct th_env *e, uint64_t step)
{
	char p[4300];
	struct stat st;

	snprintf(p, sizeof(p), "%s/job/step-%020llu/MANIFEST", e->shared, (unsigned long long)step);
	return stat(p, &st) == 0;
}

/* Steps beyond keep_shared wait read_grace before they go (readers on other nodes may be
 * loading them). That wait was counted in the writer's memory only: a job restarted more often
 * than every read_grace seconds (a crash loop, a torture run) retired nothing on the shared tier
 * and filled it. A writer started later retires at once what left the kept set read_grace ago by
 * the shared filesystem's clock, and still waits for the rest. */
static void test_restarted_writer_retires(void)
{
	static const char *const g[] = { "keep_shared", "3", "read_grace", "1", "chunk_size", "64K",
					 NULL };
	struct th_env e;
	unsigned char *buf = malloc(SIZE);
	ckpt_ctx *ctx;

	CU_ASSERT_FATAL(buf != NULL);
	CU_ASSERT_FATAL(th_env_new(&e, "retention-restart") == 0);
	CU_ASSERT_FATAL((ctx = th_open(&e, g)) != NULL);
	for (uint64_t s = 1; s <= 6; s++) {
		CU_ASSERT_FATAL(save(ctx, s, buf) == CKPT_OK);
		CU_ASSERT_FATAL(ckpt_wait(ctx, s) == CKPT_OK);
	}
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	/* within read_grace of their leaving: steps 1-3 are all still there */
	for (uint64_t s = 1; s <= 6; s++)
		CU_ASSERT(committed(&e, s));
	usleep(1500 * 1000);
	CU_ASSERT_FATAL((ctx = th_open(&e, g)) != NULL);
	CU_ASSERT_FATAL(save(ctx, 7, buf) == CKPT_OK);
	CU_ASSERT_FATAL(ckpt_wait(ctx, 7) == CKPT_OK);
	/* 1-3 left the kept set (pushed out by 4-6) over read_grace ago: gone; 4 was pushed out
	 * by 7 just now: it waits; 5-7 are kept */
	for (uint64_t s = 1; s <= 3; s++)
		CU_ASSERT(!committed(&e, s));
	for (uint64_t s = 4; s <= 7; s++)
		CU_ASSERT(committed(&e, s));
	CU_ASSERT(loads(ctx, 4, buf));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free(buf);
	th_env_free(&e);
}

int main(void)
{
	CU_pSuite s;

	th_clean_environment();
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite_with_setup_and_teardown("retention", NULL, NULL, NULL, th_env_teardown);
	if (!s || !CU_add_test(s, "failed drains: local disk bounded", test_failed_drains_bounded) ||
	    !CU_add_test(s, "the newest failed step is kept", test_newest_failed_kept) ||
	    !CU_add_test(s, "a restarted writer retires what left read_grace ago",
			 test_restarted_writer_retires)) {
		CU_cleanup_registry();
		return 1;
	}
	return th_run();
}
