/* SPDX-License-Identifier: MIT */
/* Snapshot saves (stage_bytes): the staged copy is the caller's bytes at the call, states and
 * waits, pool exhaustion, the staging-memory API, and what a SIGKILL right after ckpt_save loses. */
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define MIB (1024 * 1024)
#define NREG 6

static const size_t reg_size[NREG] = { 3 * MIB, 1 * MIB + 123, 4096, 7, 2 * MIB, 0 };
static const char *const reg_name[NREG] = { "w0", "w1", "bias", "tiny", "opt", "empty" };

/* Region i of version v. */
static void fill(unsigned char *b, size_t i, uint64_t v)
{
	th_make_data(b, reg_size[i], v * 16 + i);
}

static void make_regions(ckpt_region *r, unsigned char **bufs, uint64_t v)
{
	for (size_t i = 0; i < NREG; i++) {
		if (!bufs[i])
			bufs[i] = malloc(reg_size[i] ? reg_size[i] : 1);
		fill(bufs[i], i, v);
		r[i] = (ckpt_region){ reg_name[i], bufs[i], reg_size[i] };
	}
}

/* Every region of `step` equals version v. */
static int step_is(ckpt_ctx *ctx, uint64_t step, uint64_t v)
{
	int ok = 1;

	for (size_t i = 0; i < NREG; i++) {
		unsigned char *b = malloc(reg_size[i] ? reg_size[i] : 1);

		fill(b, i, v);
		ok &= th_load_eq(ctx, step, reg_name[i], b, reg_size[i]);
		free(b);
	}
	return ok;
}

static void free_bufs(unsigned char **bufs)
{
	for (size_t i = 0; i < NREG; i++)
		free(bufs[i]);
}

/* The buffers are overwritten right after ckpt_save returns: the saved step is what was passed. */
static void test_modify_after_return(void)
{
	const char *kv[] = { "stage_bytes", "64M", "keep_local", "8", NULL };
	unsigned char *bufs[NREG] = { 0 };
	ckpt_region r[NREG];
	struct th_env e;
	ckpt_ctx *ctx;
	int state = -1;

	CU_ASSERT_FATAL(th_env_new(&e, "stage") == 0);
	ctx = th_open(&e, kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	for (uint64_t s = 1; s <= 4; s++) {
		make_regions(r, bufs, s);
		CU_ASSERT(ckpt_save(ctx, s, r, NREG) == CKPT_OK);
		for (size_t i = 0; i < NREG; i++) /* the caller reuses its buffers at once */
			memset(bufs[i], 0xA5, reg_size[i]);
		CU_ASSERT(ckpt_poll(ctx, s, &state) == CKPT_OK);
		CU_ASSERT(state == CKPT_STATE_STAGED || state == CKPT_STATE_LOCAL ||
			  state == CKPT_STATE_COMMITTED);
	}
	CU_ASSERT(ckpt_wait_local(ctx, 4) == CKPT_OK);
	CU_ASSERT(ckpt_poll(ctx, 4, &state) == CKPT_OK);
	CU_ASSERT(state == CKPT_STATE_LOCAL || state == CKPT_STATE_COMMITTED);
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(ckpt_poll(ctx, 2, &state) == CKPT_OK && state == CKPT_STATE_COMMITTED);
	for (uint64_t s = 1; s <= 4; s++)
		CU_ASSERT(step_is(ctx, s, s));
	CU_ASSERT(ckpt_wait_local(ctx, 99) == CKPT_ENOENT);
	CU_ASSERT(ckpt_wait_local(ctx, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);

	/* reopened: both tiers hold the same steps, the local copies verified */
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(step_is(ctx, 4, 4));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	CU_ASSERT(th_sh("rm -rf '%s'/job", e.local) == 0);
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(step_is(ctx, 3, 3));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free_bufs(bufs);
	th_env_free(&e);
}

/* A re-save of a step while its earlier save is still staged or draining: the newest wins. */
static void test_resave_same_step(void)
{
	const char *kv[] = { "stage_bytes", "32M", "max_pending", "4", NULL };
	unsigned char *bufs[NREG] = { 0 };
	ckpt_region r[NREG];
	struct th_env e;
	ckpt_ctx *ctx;

	CU_ASSERT_FATAL(th_env_new(&e, "stage") == 0);
	ctx = th_open(&e, kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	for (uint64_t v = 1; v <= 3; v++) {
		make_regions(r, bufs, v);
		CU_ASSERT(ckpt_save(ctx, 7, r, NREG) == CKPT_OK);
	}
	CU_ASSERT(ckpt_wait(ctx, 7) == CKPT_OK);
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(step_is(ctx, 7, 3));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	CU_ASSERT(th_sh("rm -rf '%s'/job", e.local) == 0);
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(step_is(ctx, 7, 3));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free_bufs(bufs);
	th_env_free(&e);
}

/* A pool smaller than a step: written directly. A pool of one and a half steps, several saves in
 * a row: each waits for room. Every step is whole either way. */
static void pool_rounds(const char *stage_bytes)
{
	const char *kv[] = { "stage_bytes", stage_bytes, "max_pending", "16", "keep_local", "16",
			     "keep_shared", "0", NULL };
	unsigned char *bufs[NREG] = { 0 };
	ckpt_region r[NREG];
	struct th_env e;
	ckpt_ctx *ctx;

	CU_ASSERT_FATAL(th_env_new(&e, "pool") == 0);
	ctx = th_open(&e, kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	for (uint64_t s = 1; s <= 6; s++) {
		make_regions(r, bufs, s);
		CU_ASSERT(ckpt_save(ctx, s, r, NREG) == CKPT_OK);
		for (size_t i = 0; i < NREG; i++)
			memset(bufs[i], 0x5A, reg_size[i]);
	}
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);
	for (uint64_t s = 1; s <= 6; s++)
		CU_ASSERT(step_is(ctx, s, s));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free_bufs(bufs);
	th_env_free(&e);
}

/* The snapshot writer is background work like the drain: named "ckpt-stage", at drain_nice
 * below the thread that opened the context; the copiers ("ckpt-copy") stay at its nice value
 * (ckpt_save waits for them). */
static void test_thread_names_nice(void)
{
	const char *kv[] = { "stage_bytes", "8M", "drain_nice", "4", NULL };
	int base, writers, w_ok = 0, copiers, c_ok = 0;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned char buf[4096] = { 1 };
	const ckpt_region r = { "w", buf, sizeof(buf) };
	struct th_env e;
	ckpt_ctx *ctx;

	CU_ASSERT_FATAL(th_env_new(&e, "stage-names") == 0);
	if (getpriority(PRIO_PROCESS, 0) < 3)
		setpriority(PRIO_PROCESS, 0, 3); /* this thread only (Linux) */
	base = getpriority(PRIO_PROCESS, 0);
	ctx = th_open(&e, kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_save(ctx, 1, &r, 1) == CKPT_OK); /* the pool starts at the first save */
	/* the threads name themselves once they run: look until they have (10 s at most) */
	for (int i = 0; i < 1000; i++) {
		writers = th_threads_named("ckpt-stage", base + 4 > 19 ? 19 : base + 4, &w_ok);
		copiers = th_threads_named("ckpt-copy", base, &c_ok);
		if (writers == 1 && w_ok == 1 && (copiers >= 1 || ncpu < 2) && c_ok == copiers)
			break;
		usleep(10000);
	}
	if (writers != 1 || w_ok != 1 || (copiers < 1 && ncpu >= 2) || c_ok != copiers)
		fprintf(stderr, "(writer %d at nice %d+4: %d; copiers %d at %d: %d) ", writers, base,
			w_ok, copiers, base, c_ok);
	CU_ASSERT(writers == 1 && w_ok == 1);
	CU_ASSERT((copiers >= 1 || ncpu < 2) && c_ok == copiers); /* one core: no copier */
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	th_env_free(&e);
}

static void test_pool_smaller_than_step(void) { pool_rounds("1M"); }
static void test_pool_one_and_a_half(void) { pool_rounds("10M"); }

/* The staging-memory API: fill library memory, hand it over; its errors and ownership. */
static void test_stage_api(void)
{
	const char *kv[] = { "stage_bytes", "8M", NULL };
	const char *off[] = { "stage_bytes", "0", NULL };
	unsigned char *expect;
	void *a = NULL, *b = NULL, *c = NULL, *big = NULL;
	ckpt_region r[2];
	struct th_env e;
	ckpt_ctx *ctx;
	size_t got = 0;
	int state;

	CU_ASSERT_FATAL(th_env_new(&e, "stageapi") == 0);
	ctx = th_open(&e, off);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_stage_alloc(ctx, 4096, &a) == CKPT_EINVAL && a == NULL);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);

	ctx = th_open(&e, kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	expect = malloc(3 * MIB);
	CU_ASSERT_FATAL(expect != NULL);
	th_make_data(expect, 3 * MIB, 42);
	CU_ASSERT(ckpt_stage_alloc(ctx, 0, &a) == CKPT_EINVAL);
	CU_ASSERT(ckpt_stage_alloc(ctx, 9 * MIB, &a) == CKPT_ENOMEM);
	CU_ASSERT(ckpt_stage_alloc(ctx, 3 * MIB, &a) == CKPT_OK);
	CU_ASSERT(ckpt_stage_alloc(ctx, 1000, &b) == CKPT_OK);
	CU_ASSERT_FATAL(a && b);
	CU_ASSERT(((uintptr_t)a & 4095) == 0 && ((uintptr_t)b & 4095) == 0);
	/* the caller holds 3 MiB + 4 KiB of 8: a 5 MiB request can never be met, no waiting */
	CU_ASSERT(ckpt_stage_alloc(ctx, 5 * MIB, &c) == CKPT_ENOMEM);
	CU_ASSERT(ckpt_stage_free(ctx, expect) == CKPT_EINVAL);
	memcpy(a, expect, 3 * MIB);
	memcpy(b, expect, 1000);
	r[0] = (ckpt_region){ "weights", a, 3 * MIB };
	r[1] = (ckpt_region){ "head", b, 1000 };
	CU_ASSERT(ckpt_save_staged(ctx, 1, r, 2) == CKPT_OK);
	CU_ASSERT(ckpt_poll(ctx, 1, &state) == CKPT_OK && state != CKPT_STATE_NONE);
	CU_ASSERT(ckpt_wait_local(ctx, 1) == CKPT_OK);
	CU_ASSERT(th_load_eq(ctx, 1, "weights", expect, 3 * MIB));
	CU_ASSERT(th_load_eq(ctx, 1, "head", expect, 1000));
	/* handed over and freed after the local write: the whole pool is free again */
	CU_ASSERT(ckpt_stage_alloc(ctx, 8 * MIB, &big) == CKPT_OK);
	CU_ASSERT(ckpt_stage_free(ctx, big) == CKPT_OK);
	CU_ASSERT(ckpt_stage_free(ctx, big) == CKPT_EINVAL); /* twice */
	CU_ASSERT(ckpt_stage_free(ctx, NULL) == CKPT_OK);

	/* a bad hand-over: a region not from the pool. The pool buffer is taken and freed too. */
	CU_ASSERT(ckpt_stage_alloc(ctx, 2 * MIB, &a) == CKPT_OK);
	r[0] = (ckpt_region){ "weights", a, 2 * MIB };
	r[1] = (ckpt_region){ "head", expect, 1000 };
	CU_ASSERT(ckpt_save_staged(ctx, 2, r, 2) == CKPT_EINVAL);
	CU_ASSERT(strstr(ckpt_errmsg(ctx), "ckpt_stage_alloc") != NULL);
	CU_ASSERT(ckpt_stage_free(ctx, a) == CKPT_EINVAL); /* no longer the caller's */
	/* larger than its buffer; the same buffer twice */
	CU_ASSERT(ckpt_stage_alloc(ctx, 4096, &a) == CKPT_OK);
	r[0] = (ckpt_region){ "weights", a, 8192 };
	CU_ASSERT(ckpt_save_staged(ctx, 2, r, 1) == CKPT_EINVAL);
	CU_ASSERT(ckpt_stage_alloc(ctx, 4096, &a) == CKPT_OK);
	r[0] = (ckpt_region){ "x", a, 10 };
	r[1] = (ckpt_region){ "y", a, 10 };
	CU_ASSERT(ckpt_save_staged(ctx, 2, r, 2) == CKPT_EINVAL);
	CU_ASSERT(ckpt_stage_alloc(ctx, 8 * MIB, &big) == CKPT_OK); /* all of it came back */
	CU_ASSERT(ckpt_stage_free(ctx, big) == CKPT_OK);
	CU_ASSERT(ckpt_region_size(ctx, 2, "x", &got) == CKPT_ENOENT);
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);
	/* a buffer the caller still holds at close is freed with the context */
	CU_ASSERT(ckpt_stage_alloc(ctx, MIB, &a) == CKPT_OK);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free(expect);
	th_env_free(&e);
}

/* Without snapshot mode ckpt_save was durable already: ckpt_wait_local returns at once. */
static void test_wait_local_durable_mode(void)
{
	unsigned char *bufs[NREG] = { 0 };
	ckpt_region r[NREG];
	struct th_env e;
	ckpt_ctx *ctx;
	int state;

	CU_ASSERT_FATAL(th_env_new(&e, "nostage") == 0);
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	make_regions(r, bufs, 1);
	CU_ASSERT(ckpt_save(ctx, 1, r, NREG) == CKPT_OK);
	CU_ASSERT(ckpt_poll(ctx, 1, &state) == CKPT_OK && state != CKPT_STATE_STAGED);
	CU_ASSERT(ckpt_wait_local(ctx, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait_local(ctx, 2) == CKPT_ENOENT);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	free_bufs(bufs);
	th_env_free(&e);
}

/* ---- SIGKILL right after a snapshot ckpt_save returned ---- */

/* The child makes step 1 durable (snapshot mode too), then saves step 2 in snapshot mode and is
 * killed: at once after the call returns, or at a crash point of the background write. */
static void kill_child(const struct th_env *e, const char *point)
{
	const char *kv1[] = { "stage_bytes", "32M", NULL };
	const char *kv2[] = { "stage_bytes", "32M", "fault_kill_at", point, NULL };
	unsigned char *bufs[NREG] = { 0 };
	ckpt_region r[NREG];
	ckpt_ctx *ctx;

	if (!(ctx = th_open(e, kv1)))
		_exit(2);
	make_regions(r, bufs, 1);
	if (ckpt_save(ctx, 1, r, NREG) || ckpt_wait_local(ctx, 1) || ckpt_close(ctx))
		_exit(3);
	if (!(ctx = th_open(e, *point ? kv2 : kv1)))
		_exit(4);
	make_regions(r, bufs, 2);
	if (ckpt_save(ctx, 2, r, NREG))
		_exit(5);
	if (!*point)
		kill(getpid(), SIGKILL);
	ckpt_wait(ctx, CKPT_STEP_ALL);
	_exit(6); /* the crash point was not reached */
}

static void kill_after_save(const char *point, int lost)
{
	struct th_env e;
	ckpt_ctx *ctx;
	uint64_t step = 0;
	pid_t pid;
	int st = 0;

	printf("[%s] ", *point ? point : "return");
	fflush(stdout);
	CU_ASSERT_FATAL(th_env_new(&e, "stagekill") == 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0)
		kill_child(&e, point);
	CU_ASSERT(waitpid(pid, &st, 0) == pid);
	if (!WIFSIGNALED(st))
		fprintf(stderr, "child: exit status %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	CU_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
	/* the staged step may or may not have become durable before the kill; whichever latest
	 * names is whole, and the step before it is intact */
	if (lost)
		CU_ASSERT(step == 1);
	CU_ASSERT(step == 1 || step == 2);
	CU_ASSERT(step_is(ctx, step, step));
	CU_ASSERT(step_is(ctx, 1, 1));
	CU_ASSERT(ckpt_wait(ctx, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(th_count_files(e.base, ".tmp.*") == 0);
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	/* and from the shared tier alone */
	CU_ASSERT(th_sh("rm -rf '%s'/job", e.local) == 0);
	ctx = th_open(&e, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT(ckpt_latest(ctx, &step) == CKPT_OK);
	CU_ASSERT(step == 1 || (step == 2 && !lost));
	CU_ASSERT(step_is(ctx, step, step));
	CU_ASSERT(step_is(ctx, 1, 1));
	CU_ASSERT(ckpt_close(ctx) == CKPT_OK);
	th_env_free(&e);
}

static void test_kill_after_return(void)
{
	for (int i = 0; i < 5; i++)
		kill_after_save("", 0);
}
static void test_kill_staged(void) { kill_after_save("stage.copied", 1); }
static void test_kill_written(void) { kill_after_save("save.written", 1); }
static void test_kill_synced(void) { kill_after_save("save.synced", 1); }
static void test_kill_published(void) { kill_after_save("save.published", 0); }

int main(void)
{
	CU_pSuite s;

	th_clean_environment();
	th_make_data(&(unsigned char){ 0 }, 1, 0); /* reads the real data before any fork */
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite_with_setup_and_teardown("stage", NULL, NULL, NULL, th_env_teardown);
	if (!s || !CU_add_test(s, "buffers modified after return", test_modify_after_return) ||
	    !CU_add_test(s, "re-save of a staged step", test_resave_same_step) ||
	    !CU_add_test(s, "pool smaller than a step", test_pool_smaller_than_step) ||
	    !CU_add_test(s, "pool of 1.5 steps", test_pool_one_and_a_half) ||
	    !CU_add_test(s, "staging memory API", test_stage_api) ||
	    !CU_add_test(s, "thread names and priorities", test_thread_names_nice) ||
	    !CU_add_test(s, "ckpt_wait_local without snapshot", test_wait_local_durable_mode) ||
	    !CU_add_test(s, "SIGKILL after return", test_kill_after_return) ||
	    !CU_add_test(s, "SIGKILL at stage.copied", test_kill_staged) ||
	    !CU_add_test(s, "SIGKILL at save.written", test_kill_written) ||
	    !CU_add_test(s, "SIGKILL at save.synced", test_kill_synced) ||
	    !CU_add_test(s, "SIGKILL at save.published", test_kill_published)) {
		CU_cleanup_registry();
		return 1;
	}
	return th_run();
}
