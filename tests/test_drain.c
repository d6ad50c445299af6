/* SPDX-License-Identifier: MIT */
/* Drain failures: full or broken shared tier, full local tier, backpressure, close deadlines,
 * skipping superseded steps; chunk transforms through the real drain (every width, odd tails,
 * chunks that mix choices). */
#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "drain.h"
#include "harness.h"
#include "shard.h"

#define MIB (1024u * 1024u)

/*
 * Each test works in E (removed by the tear-down) and keeps its open context in CTX, so that a
 * fatal assertion still closes the context and unmounts every tmpfs before the directories go.
 */
static struct th_env E;
static ckpt_ctx *CTX;
static char mounts[4][4096];
static int nmounts;

static int env_new(const char *tag)
{
	if (!(E.base = th_mkdtemp(tag)))
		return -1;
	snprintf(E.local, sizeof(E.local), "%s/local", E.base);
	snprintf(E.shared, sizeof(E.shared), "%s/shared", E.base);
	if (mkdir(E.local, 0755) < 0 || mkdir(E.shared, 0755) < 0)
		return -1;
	return 0;
}

/* Mount a tmpfs of `size` on dir (we run as root in the test containers); 0 on success. */
static int mount_tmpfs(const char *dir, const char *size)
{
	if (nmounts == (int)(sizeof(mounts) / sizeof(mounts[0])))
		return -1;
	if (th_sh("mount -t tmpfs -o size=%s,mode=0755 tmpfs '%s' 2>/dev/null", size, dir) != 0)
		return -1;
	snprintf(mounts[nmounts++], sizeof(mounts[0]), "%s", dir);
	return 0;
}

static void umount_all(void)
{
	while (nmounts > 0) {
		const char *m = mounts[--nmounts];

		if (th_sh("umount '%s' 2>/dev/null", m) != 0 && th_sh("umount -l '%s'", m) != 0)
			fprintf(stderr, "could not unmount %s\n", m);
	}
}

/* Dying of a signal skips atexit: unmount anyway (not async-signal-safe, but we are dying). */
static void on_fatal_signal(int sig)
{
	umount_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void teardown(void)
{
	if (CTX) {
		ckpt_close(CTX);
		CTX = NULL;
	}
	umount_all();
	if (E.base) {
		th_rmtree(E.base);
		free(E.base);
		E.base = NULL;
	}
}

static ckpt_ctx *open_kv(const char *const *kv)
{
	return th_open(&E, kv);
}

static int close_ctx(void)
{
	int rc = ckpt_close(CTX);

	CTX = NULL;
	return rc;
}

static void step_dir(char *buf, size_t len, const char *tier, uint64_t step)
{
	snprintf(buf, len, "%s/job/step-%020llu", tier, (unsigned long long)step);
}

static int committed(uint64_t step)
{
	char dir[4200];

	step_dir(dir, sizeof(dir), E.shared, step);
	return th_count_files(dir, "MANIFEST") == 1 && th_count_files(dir, "rank-*.ckz") == 1;
}

static int state_of(uint64_t step)
{
	int state = -1;

	return ckpt_poll(CTX, step, &state) == CKPT_OK ? state : -1;
}

/* Load step `step` (one region "w" of n bytes) and compare with data version `seed`. */
static int load_eq(uint64_t step, size_t n, uint64_t seed)
{
	unsigned char *want = malloc(n), *got = malloc(n);
	int rc = CKPT_ENOMEM, ok;

	if (want && got) {
		th_make_data(want, n, seed);
		memset(got, 0xee, n);
		if ((rc = ckpt_load(CTX, step, "w", got, n)) != CKPT_OK)
			fprintf(stderr, "load step %llu: %s: %s\n", (unsigned long long)step,
				ckpt_strerror(rc), ckpt_errmsg(CTX));
	}
	ok = rc == CKPT_OK && memcmp(want, got, n) == 0;
	free(want);
	free(got);
	return ok;
}

/* Load step from the shared tier: its local directory is moved aside meanwhile. */
static int load_shared_eq(uint64_t step, size_t n, uint64_t seed)
{
	char dir[4200], aside[4300];
	int ok, had;

	step_dir(dir, sizeof(dir), E.local, step);
	snprintf(aside, sizeof(aside), "%s.aside", dir);
	had = rename(dir, aside) == 0;
	ok = load_eq(step, n, seed);
	if (had && rename(aside, dir) != 0)
		ok = 0;
	return ok;
}

static int save(uint64_t step, size_t n, uint64_t seed)
{
	unsigned char *d = malloc(n);
	ckpt_region r = { "w", d, n };
	int rc;

	if (!d)
		return CKPT_ENOMEM;
	th_make_data(d, n, seed);
	rc = ckpt_save(CTX, step, &r, 1);
	if (rc != CKPT_OK)
		fprintf(stderr, "(save step %llu: %s: %s) ", (unsigned long long)step,
			ckpt_strerror(rc), ckpt_errmsg(CTX));
	free(d);
	return rc;
}

/* ---- the shared tier fails ---- */

/* The shared volume fills up: the drain fails with CKPT_ENOSPC naming the path, nothing partial
 * stays on shared, the local copy is kept; once space is back the next save retries. */
static void test_shared_full(void)
{
	char dir[4200];
	int rc;

	CU_ASSERT_FATAL(env_new("drain-sfull") == 0);
	if (mount_tmpfs(E.shared, "4m") != 0) {
		printf("\n  skipped: cannot mount a tmpfs on %s (needs root)\n", E.shared);
		return;
	}
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv(NULL));
	CU_ASSERT(save(1, 1 * MIB, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(CTX, 1) == CKPT_OK);
	CU_ASSERT(save(2, 8 * MIB, 2) == CKPT_OK); /* does not fit in the 3 MiB left */
	rc = ckpt_wait(CTX, 2);
	CU_ASSERT(rc == CKPT_ENOSPC);
	printf("(%s) ", ckpt_errmsg(CTX));
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(CTX), E.shared));
	CU_ASSERT(state_of(2) == CKPT_STATE_FAILED);
	CU_ASSERT(state_of(1) == CKPT_STATE_COMMITTED);
	CU_ASSERT(ckpt_wait(CTX, CKPT_STEP_ALL) == CKPT_ENOSPC);
	step_dir(dir, sizeof(dir), E.shared, 2);
	CU_ASSERT(th_count_files(dir, "*") == 0); /* no partial shard, no temporary file */
	CU_ASSERT(load_eq(2, 8 * MIB, 2));         /* the local copy */
	CU_ASSERT(committed(1));
	CU_ASSERT(load_shared_eq(1, 1 * MIB, 1));

	/* space again: the next save retries step 2 */
	CU_ASSERT_FATAL(th_sh("mount -o remount,size=64m '%s'", E.shared) == 0);
	CU_ASSERT(save(3, 256 * 1024, 3) == CKPT_OK);
	CU_ASSERT(ckpt_wait(CTX, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(ckpt_wait(CTX, 2) == CKPT_OK);
	for (uint64_t s = 1; s <= 3; s++) {
		CU_ASSERT(state_of(s) == CKPT_STATE_COMMITTED);
		CU_ASSERT(committed(s));
	}
	CU_ASSERT(close_ctx() == CKPT_OK);
	th_sh("rm -rf '%s'/job", E.local);
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv(NULL));
	CU_ASSERT(load_eq(1, 1 * MIB, 1));
	CU_ASSERT(load_eq(2, 8 * MIB, 2));
	CU_ASSERT(load_eq(3, 256 * 1024, 3));
	CU_ASSERT(close_ctx() == CKPT_OK);
	CU_ASSERT(th_count_files(E.shared, ".tmp.*") == 0);
}

/* The shared job directory disappears behind a regular file (a broken volume): the drain fails
 * with a message naming the path; after repair the next save retries. */
static void test_shared_broken(void)
{
	char job[4200], moved[4200];
	int rc;

	CU_ASSERT_FATAL(env_new("drain-sbroken") == 0);
	snprintf(job, sizeof(job), "%s/job", E.shared);
	snprintf(moved, sizeof(moved), "%s/job.moved", E.shared);
	/* keep_local 1: retention must still keep every local copy that is not committed, within
	 * keep_local + max_pending steps (4 here; beyond, a superseded failed step goes:
	 * tests/test_retention) */
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv((const char *const[]){ "keep_local", "1",
									"max_pending", "3",
									NULL }));
	CU_ASSERT(save(1, 2 * MIB, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(CTX, 1) == CKPT_OK);
	CU_ASSERT_FATAL(rename(job, moved) == 0);
	CU_ASSERT_FATAL(th_sh("echo broken > '%s'", job) == 0);
	CU_ASSERT(save(2, 2 * MIB, 2) == CKPT_OK);
	CU_ASSERT(save(3, 2 * MIB, 3) == CKPT_OK);
	rc = ckpt_wait(CTX, 2);
	CU_ASSERT(rc < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(CTX), job));
	CU_ASSERT(ckpt_wait(CTX, 3) < 0);
	CU_ASSERT(state_of(2) == CKPT_STATE_FAILED);
	CU_ASSERT(state_of(3) == CKPT_STATE_FAILED);
	CU_ASSERT(load_eq(2, 2 * MIB, 2));
	CU_ASSERT(load_eq(3, 2 * MIB, 3));

	/* repaired: a save retries both failed steps */
	CU_ASSERT_FATAL(unlink(job) == 0 && rename(moved, job) == 0);
	CU_ASSERT(committed(1));
	CU_ASSERT(load_shared_eq(1, 2 * MIB, 1));
	CU_ASSERT(save(4, 64 * 1024, 4) == CKPT_OK);
	CU_ASSERT(ckpt_wait(CTX, CKPT_STEP_ALL) == CKPT_OK);
	for (uint64_t s = 1; s <= 4; s++)
		CU_ASSERT(state_of(s) == CKPT_STATE_COMMITTED);
	CU_ASSERT(load_shared_eq(2, 2 * MIB, 2));
	CU_ASSERT(load_shared_eq(3, 2 * MIB, 3));
	CU_ASSERT(close_ctx() == CKPT_OK);
}

/* When ckpt_wait reports a failed drain, the drain has cleaned up: no partial temporary file is
 * left on the (full) shared tier to take the space a retry needs. Repeated, as a late cleanup
 * would show only sometimes. */
static void test_failed_drain_cleans_before_wait(void)
{
	char dir[4200];
	int late = 0;

	CU_ASSERT_FATAL(env_new("drain-late") == 0);
	if (mount_tmpfs(E.shared, "1m") != 0) {
		printf("\n  skipped: cannot mount a tmpfs on %s (needs root)\n", E.shared);
		return;
	}
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv((const char *const[]){ "chunk_size", "64K",
									NULL }));
	for (uint64_t s = 1; s <= 10; s++) {
		CU_ASSERT(save(s, 2 * MIB, s) == CKPT_OK);
		CU_ASSERT(ckpt_wait(CTX, CKPT_STEP_ALL) == CKPT_ENOSPC);
		late += th_count_files(E.shared, ".tmp.*") != 0;
		step_dir(dir, sizeof(dir), E.shared, s);
		CU_ASSERT(th_count_files(dir, "rank-*") == 0);
	}
	if (late)
		fprintf(stderr, "\n%d of 10 times a temporary file was still on shared after "
			"ckpt_wait returned\n", late);
	CU_ASSERT(late == 0);
	CU_ASSERT(close_ctx() == CKPT_ENOSPC);
	CU_ASSERT(th_count_files(E.shared, ".tmp.*") == 0);
}

/* ckpt_close reports a drain that failed; the next ckpt_open drains the kept local copy. */
static void test_close_reports_failure(void)
{
	char job[4200], moved[4200];

	CU_ASSERT_FATAL(env_new("drain-closefail") == 0);
	snprintf(job, sizeof(job), "%s/job", E.shared);
	snprintf(moved, sizeof(moved), "%s/job.moved", E.shared);
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv(NULL));
	CU_ASSERT_FATAL(rename(job, moved) == 0);
	CU_ASSERT_FATAL(th_sh("echo broken > '%s'", job) == 0);
	CU_ASSERT(save(1, 3 * MIB, 1) == CKPT_OK);
	CU_ASSERT(close_ctx() < 0);

	/* while the volume is broken, ckpt_open refuses it */
	CU_ASSERT(open_kv(NULL) == NULL);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(NULL), job));

	CU_ASSERT_FATAL(unlink(job) == 0 && rename(moved, job) == 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv(NULL));
	CU_ASSERT(ckpt_wait(CTX, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(committed(1));
	CU_ASSERT(close_ctx() == CKPT_OK);
	th_sh("rm -rf '%s'/job", E.local);
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv(NULL));
	CU_ASSERT(load_eq(1, 3 * MIB, 1));
	CU_ASSERT(close_ctx() == CKPT_OK);
}

/* A local copy damaged after ckpt_save is never published as good data. */
static void test_corrupt_local_not_drained(void)
{
	char job[4200], moved[4200], path[4300];
	int fd;
	unsigned char b = 0;

	CU_ASSERT_FATAL(env_new("drain-corrupt") == 0);
	snprintf(job, sizeof(job), "%s/job", E.shared);
	snprintf(moved, sizeof(moved), "%s/job.moved", E.shared);
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv((const char *const[]){ "chunk_size", "64K",
									NULL }));
	/* hold the drain back with a broken shared tier, damage the local file, then repair */
	CU_ASSERT_FATAL(rename(job, moved) == 0);
	CU_ASSERT_FATAL(th_sh("echo broken > '%s'", job) == 0);
	CU_ASSERT(save(1, 1 * MIB, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(CTX, 1) < 0);
	step_dir(path, sizeof(path) - 32, E.local, 1);
	strcat(path, "/rank-000000.ckl");
	CU_ASSERT_FATAL((fd = open(path, O_RDWR)) >= 0);
	CU_ASSERT(pread(fd, &b, 1, 4096 + 300000) == 1);
	b ^= 1;
	CU_ASSERT(pwrite(fd, &b, 1, 4096 + 300000) == 1);
	close(fd);
	CU_ASSERT_FATAL(unlink(job) == 0 && rename(moved, job) == 0);

	CU_ASSERT(save(2, 1 * MIB, 2) == CKPT_OK); /* retries step 1 */
	CU_ASSERT(ckpt_wait(CTX, 2) == CKPT_OK);
	CU_ASSERT(ckpt_wait(CTX, 1) == CKPT_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(CTX), "checksum"));
	CU_ASSERT(state_of(1) == CKPT_STATE_FAILED);
	step_dir(path, sizeof(path), E.shared, 1);
	CU_ASSERT(th_count_files(path, "*") == 0); /* not even the partial temporary file */
	CU_ASSERT(ckpt_wait(CTX, CKPT_STEP_ALL) == CKPT_ECORRUPT);
	{
		unsigned char *buf = malloc(1 * MIB);

		CU_ASSERT(buf && ckpt_load(CTX, 1, "w", buf, 1 * MIB) == CKPT_ECORRUPT);
		free(buf);
	}
	CU_ASSERT(load_eq(2, 1 * MIB, 2));
	CU_ASSERT(close_ctx() == CKPT_ECORRUPT);
}

/* ---- the local tier fails ---- */

static void test_local_full(void)
{
	char dir[4200];
	uint64_t step = 0;
	int rc;

	CU_ASSERT_FATAL(env_new("drain-lfull") == 0);
	if (mount_tmpfs(E.local, "8m") != 0) {
		printf("\n  skipped: cannot mount a tmpfs on %s (needs root)\n", E.local);
		return;
	}
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv(NULL));
	CU_ASSERT(save(1, 1 * MIB, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(CTX, 1) == CKPT_OK);
	rc = save(2, 16 * MIB, 2);
	CU_ASSERT(rc == CKPT_ENOSPC);
	printf("(%s) ", ckpt_errmsg(CTX));
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(CTX), E.local)); /* names the file */
	CU_ASSERT(th_count_files(E.local, ".tmp.*") == 0);
	step_dir(dir, sizeof(dir), E.local, 2);
	CU_ASSERT(th_count_files(dir, "*") == 0);
	CU_ASSERT(ckpt_wait(CTX, 2) != CKPT_OK); /* step 2 was not saved */
	CU_ASSERT(ckpt_latest(CTX, &step) == CKPT_OK);
	CU_ASSERT(step == 1);
	CU_ASSERT(load_eq(1, 1 * MIB, 1));
	CU_ASSERT(load_shared_eq(1, 1 * MIB, 1));

	/* the space is free again: saving goes on, and the failed save is no drain failure */
	CU_ASSERT(save(3, 1 * MIB, 3) == CKPT_OK);
	CU_ASSERT(ckpt_wait(CTX, 3) == CKPT_OK);
	rc = ckpt_wait(CTX, CKPT_STEP_ALL);
	if (rc != CKPT_OK)
		fprintf(stderr, "\nckpt_wait(ALL) after a failed save, all saved steps committed: "
			"%s: %s\n", ckpt_strerror(rc), ckpt_errmsg(CTX));
	CU_ASSERT(rc == CKPT_OK);
	CU_ASSERT(ckpt_latest(CTX, &step) == CKPT_OK);
	CU_ASSERT(step == 3);
	CU_ASSERT(load_eq(3, 1 * MIB, 3));
	rc = close_ctx();
	if (rc != CKPT_OK)
		fprintf(stderr, "ckpt_close after a failed save, all saved steps committed: %s\n",
			ckpt_strerror(rc));
	CU_ASSERT(rc == CKPT_OK);
}

/* ---- backpressure and deadlines ---- */

/* Issue 13: the drain threads are named "ckpt-drain" and run drain_nice below the thread that
 * opened the context (here: this thread at nice 5, drain_nice 3: the drains at 8). */
static void test_thread_names_nice(void)
{
	int named, nice_ok = 0, base;

	CU_ASSERT_FATAL(env_new("drain-names") == 0);
	base = getpriority(PRIO_PROCESS, 0);
	if (base < 5)
		setpriority(PRIO_PROCESS, 0, 5); /* this thread only (Linux) */
	base = getpriority(PRIO_PROCESS, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv((const char *const[]){
		"drain_threads", "2", "drain_nice", "3", NULL }));
	named = th_threads_named("ckpt-drain", base + 3 > 19 ? 19 : base + 3, &nice_ok);
	if (named != 2 || nice_ok != 2)
		fprintf(stderr, "(%d ckpt-drain threads, %d at nice %d + 3) ", named, nice_ok, base);
	CU_ASSERT(named == 2);
	CU_ASSERT(nice_ok == 2);
	CU_ASSERT(close_ctx() == CKPT_OK);
}

/* The drain held at the set-up of its first step (ckpt_drain__test_hook): the test says when
 * it may go on, and knows when the drain got there. */
static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cv = PTHREAD_COND_INITIALIZER;
static int hold_entered, hold_released;

static void hold_drain(const char *point)
{
	if (strcmp(point, "job.setup"))
		return;
	pthread_mutex_lock(&hold_mu);
	hold_entered++;
	pthread_cond_broadcast(&hold_cv);
	while (!hold_released)
		pthread_cond_wait(&hold_cv, &hold_mu);
	pthread_mutex_unlock(&hold_mu);
}

/* Issue 13: once the drain is behind by max_pending steps and stall_wait passed, ckpt_save does
 * not wait: the queued older steps are skipped (their local copies go), the newest is drained. */
static void test_skip_superseded(void)
{
	const size_t n = 4 * MIB;
	ckpt_lag_info lag;
	char dir[4200];
	int local = 0;

	CU_ASSERT_FATAL(env_new("drain-skip") == 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv((const char *const[]){
		"max_pending", "2", "drain_threads", "1", "keep_local", "1", "stall_wait", "0",
		"log_level", "0", NULL }));
	hold_entered = hold_released = 0;
	ckpt_drain__test_hook = hold_drain;
	CU_ASSERT(save(1, n, 1) == CKPT_OK);
	/* the drain took step 1 and is held there: the volume "fell behind" */
	pthread_mutex_lock(&hold_mu);
	while (!hold_entered)
		pthread_cond_wait(&hold_cv, &hold_mu);
	pthread_mutex_unlock(&hold_mu);
	for (uint64_t s = 2; s <= 5; s++)
		CU_ASSERT(save(s, n, s) == CKPT_OK);
	/* step 1 drains, 5 is queued, 2..4 were superseded while waiting: each later save skips
	 * the queued ones older than itself, none waits (stall_wait 0) */
	CU_ASSERT(ckpt_drain_lag(CTX, &lag) == CKPT_OK);
	CU_ASSERT(lag.skipped == 3);
	CU_ASSERT(lag.has_local && lag.newest_local == 5);
	CU_ASSERT(lag.pending == 2);
	CU_ASSERT(!lag.has_committed);
	for (uint64_t s = 1; s <= 5; s++) {
		step_dir(dir, sizeof(dir), E.local, s);
		local += th_count_files(dir, "rank-*") > 0;
	}
	CU_ASSERT(local <= 1 + 2); /* keep_local + max_pending */
	CU_ASSERT(state_of(3) == CKPT_STATE_NONE); /* skipped: never drained */
	CU_ASSERT(ckpt_wait(CTX, 3) == CKPT_ENOENT);
	pthread_mutex_lock(&hold_mu);
	hold_released = 1;
	pthread_cond_broadcast(&hold_cv);
	pthread_mutex_unlock(&hold_mu);
	CU_ASSERT(ckpt_wait(CTX, CKPT_STEP_ALL) == CKPT_OK);
	ckpt_drain__test_hook = NULL;
	CU_ASSERT(state_of(5) == CKPT_STATE_COMMITTED);
	CU_ASSERT(state_of(1) == CKPT_STATE_COMMITTED || state_of(1) == CKPT_STATE_NONE);
	CU_ASSERT(load_shared_eq(5, n, 5));
	CU_ASSERT(ckpt_wait(CTX, 3) == CKPT_ENOENT);
	CU_ASSERT(ckpt_wait_timeout(CTX, 5, 0) == CKPT_OK);
	CU_ASSERT(ckpt_drain_lag(CTX, &lag) == CKPT_OK);
	CU_ASSERT(lag.has_committed && lag.newest_committed == 5 && lag.seconds_behind == 0);
	CU_ASSERT(!lag.stalled);
	CU_ASSERT(close_ctx() == CKPT_OK);
}

/* With max_pending steps waiting for the (slow) drain, ckpt_save first waits for the oldest, up
 * to stall_wait seconds (long here: a loaded machine compresses slowly at level 19). */
static void test_backpressure(void)
{
	const size_t n = 4 * MIB;

	CU_ASSERT_FATAL(env_new("drain-bp") == 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv((const char *const[]){
		"max_pending", "1", "compress_level", "19", "drain_threads", "1",
		"stall_wait", "600", NULL }));
	CU_ASSERT(save(1, n, 1) == CKPT_OK);
	CU_ASSERT(save(2, n, 2) == CKPT_OK);
	CU_ASSERT(state_of(1) == CKPT_STATE_COMMITTED);
	CU_ASSERT(committed(1));
	CU_ASSERT(save(3, n, 3) == CKPT_OK);
	CU_ASSERT(state_of(2) == CKPT_STATE_COMMITTED);
	CU_ASSERT(ckpt_wait(CTX, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(close_ctx() == CKPT_OK);

	/* max_pending 2: the third save waits for the first, not for the second */
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv((const char *const[]){
		"max_pending", "2", "compress_level", "19", "drain_threads", "1",
		"stall_wait", "600", NULL }));
	CU_ASSERT(save(4, n, 4) == CKPT_OK);
	CU_ASSERT(save(5, n, 5) == CKPT_OK);
	CU_ASSERT(save(6, n, 6) == CKPT_OK);
	CU_ASSERT(state_of(4) == CKPT_STATE_COMMITTED);
	CU_ASSERT(ckpt_wait(CTX, CKPT_STEP_ALL) == CKPT_OK);
	for (uint64_t s = 4; s <= 6; s++)
		CU_ASSERT(load_shared_eq(s, n, s));
	CU_ASSERT(close_ctx() == CKPT_OK);
}

/* A drain that failed and could not remove its temporary file (the volume had turned read-only:
 * the unlink failed too) leaves it behind; the next drain of the same rank in this process
 * removes it. Another process's temporary file is never touched. */
static void test_own_leftover_removed(void)
{
	char dir[4200], mine[4400], other[4400], keep[4400];

	CU_ASSERT_FATAL(env_new("drain-leftover") == 0);
	snprintf(dir, sizeof(dir), "%s/job/step-%020d", E.shared, 1);
	CU_ASSERT_FATAL(th_sh("mkdir -p '%s'", dir) == 0);
	snprintf(mine, sizeof(mine), "%s/.tmp.%s.%ld.0badf00d.rank-000000-00000000000000aa.ckz", dir,
		 ckpt_store__hostname(), (long)getpid());
	snprintf(other, sizeof(other), "%s/.tmp.%s.%ld.0badf00d.rank-000000-00000000000000bb.ckz",
		 dir, ckpt_store__hostname(), (long)getppid()); /* alive: the open's sweep keeps it */
	snprintf(keep, sizeof(keep), "%s/.tmp.%s.%ld.0badf00d.rank-000001-00000000000000cc.ckz", dir,
		 ckpt_store__hostname(), (long)getpid());
	CU_ASSERT_FATAL(th_sh("touch '%s' '%s' '%s'", mine, other, keep) == 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv(NULL));
	CU_ASSERT(save(1, 1 * MIB, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(CTX, 1) == CKPT_OK);
	CU_ASSERT(committed(1));
	CU_ASSERT(access(mine, F_OK) != 0);  /* this process's, this rank's: removed */
	CU_ASSERT(access(other, F_OK) == 0); /* another live process's: kept */
	CU_ASSERT(access(keep, F_OK) == 0);  /* another rank's: kept */
	CU_ASSERT(close_ctx() == CKPT_OK);
}

/* close_timeout 0 abandons a running drain; the next ckpt_open drains the local copy again. */
static void test_close_timeout(void)
{
	const size_t n = 8 * MIB;
	int rc;

	CU_ASSERT_FATAL(env_new("drain-ctimeout") == 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv((const char *const[]){
		"close_timeout", "0.0", "compress_level", "19", NULL }));
	CU_ASSERT(save(1, n, 1) == CKPT_OK);
	rc = close_ctx();
	printf("(close: %s) ", ckpt_strerror(rc));
	CU_ASSERT(rc == CKPT_ETIMEDOUT || rc == CKPT_OK);
	/* A drain abandoned by ckpt_close is detached, not joined (close stays within its bound):
	 * it notices the abort after its current chunk and removes its temporary file itself.
	 * There is no handle left to wait on, so look for up to 60 s. */
	for (int i = 0; i < 600 && th_count_files(E.base, ".tmp.*") != 0; i++)
		usleep(100 * 1000);
	CU_ASSERT(th_count_files(E.base, ".tmp.*") == 0);
	if (rc == CKPT_ETIMEDOUT)
		CU_ASSERT(!committed(1));

	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv(NULL));
	if (rc == CKPT_ETIMEDOUT)
		CU_ASSERT(state_of(1) == CKPT_STATE_LOCAL || state_of(1) == CKPT_STATE_COMMITTED);
	CU_ASSERT(ckpt_wait(CTX, CKPT_STEP_ALL) == CKPT_OK);
	if (rc == CKPT_ETIMEDOUT)
		CU_ASSERT(ckpt_wait(CTX, 1) == CKPT_OK);
	CU_ASSERT(committed(1));
	CU_ASSERT(close_ctx() == CKPT_OK);
	th_sh("rm -rf '%s'/job", E.local);
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv(NULL));
	CU_ASSERT(load_eq(1, n, 1));
	CU_ASSERT(close_ctx() == CKPT_OK);
}

/* ---- chunk transforms through the real drain ---- */

enum kind { K_FP32, K_BF16, K_FP64, K_RAND, K_ZERO, K_TEXT };

/* n bytes of data of a kind: smooth floats with noise in the low mantissa, random, text. */
static void fill(uint8_t *p, size_t n, enum kind k, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		switch (k) {
		case K_FP32: {
			float f = (float)(sin((double)(i / 4) * 0.001) * 0.02 +
					  (double)(x % 1000) * 1e-6);
			uint8_t b[4];

			memcpy(b, &f, 4);
			p[i] = b[i % 4];
			break;
		}
		case K_BF16: {
			float f = (float)(sin((double)(i / 2) * 0.003) * 0.5 + (double)(x % 97) * 1e-4);
			uint8_t b[4];

			memcpy(b, &f, 4);
			p[i] = b[2 + i % 2]; /* the high half of the float: bf16 */
			break;
		}
		case K_FP64: {
			double d = sin((double)(i / 8) * 0.0007) * 3 + (double)(x % 1000) * 1e-9;
			uint8_t b[8];

			memcpy(b, &d, 8);
			p[i] = b[i % 8];
			break;
		}
		case K_RAND: p[i] = (uint8_t)(x >> 24); break;
		case K_ZERO: p[i] = 0; break;
		case K_TEXT: p[i] = (uint8_t)"the quick brown fox jumps over a lazy dog. "[(i * 7 / 5) % 43]; break;
		}
	}
}

struct xregion {
	const char *name;
	size_t size;
	enum kind kinds[8]; /* kind of each 64 KiB piece, */
	unsigned nkinds;    /* for the first nkinds pieces; kinds[0] for the others */
	uint8_t *data;
};

#define K64 (64u * 1024u)

static struct xregion xregions[] = {
	{ "fp32", 3 * K64 + 4099, { K_FP32 }, 1, NULL },  /* odd tail: not a multiple of 4 */
	{ "bf16", 2 * K64 + 1, { K_BF16 }, 1, NULL },     /* odd tail: not a multiple of 2 */
	{ "fp64", 2 * K64 + 13, { K_FP64 }, 1, NULL },    /* not a multiple of 8 */
	{ "fp32-whole", K64, { K_FP32 }, 1, NULL },       /* exactly one chunk */
	{ "tiny", 7, { K_FP32 }, 1, NULL },
	{ "one", 1, { K_RAND }, 1, NULL },
	{ "empty", 0, { K_ZERO }, 1, NULL },
	/* one region whose chunks want different transforms */
	{ "mixed", 6 * K64 + 777, { K_FP32, K_RAND, K_ZERO, K_BF16, K_FP64, K_TEXT, K_FP32 }, 7,
	  NULL },
};
#define NX (sizeof(xregions) / sizeof(xregions[0]))

static void make_xregions(ckpt_region *r)
{
	for (size_t i = 0; i < NX; i++) {
		struct xregion *x = &xregions[i];

		free(x->data);
		x->data = malloc(x->size ? x->size : 1);
		for (size_t off = 0, c = 0; off < x->size; off += K64, c++) {
			size_t n = x->size - off < K64 ? x->size - off : K64;
			enum kind k = x->kinds[c < x->nkinds ? c : 0];

			fill(x->data + off, n, k, 100 * i + c);
		}
		r[i] = (ckpt_region){ x->name, x->data, x->size };
	}
}

/* Every region of step `step` read back from the shared tier only equals what was saved. */
static int xload_shared(uint64_t step)
{
	char dir[4200], aside[4300];
	int ok = 1, had;

	step_dir(dir, sizeof(dir), E.local, step);
	snprintf(aside, sizeof(aside), "%s.aside", dir);
	had = rename(dir, aside) == 0;
	for (size_t i = 0; i < NX; i++) {
		struct xregion *x = &xregions[i];
		uint8_t *got = malloc(x->size ? x->size : 1);
		int rc = ckpt_load(CTX, step, x->name, got, x->size);

		if (rc != CKPT_OK || memcmp(got, x->data, x->size)) {
			fprintf(stderr, "region %s of step %llu: %s %s\n", x->name,
				(unsigned long long)step, ckpt_strerror(rc), ckpt_errmsg(CTX));
			ok = 0;
		}
		free(got);
	}
	if (had && rename(aside, dir) != 0)
		ok = 0;
	return ok;
}

/* Open the compressed shard of step `step`. */
static struct ckpt_shard *open_ckz(uint64_t step)
{
	char dir[4200], pat[4300];
	struct ckpt_shard *sh = NULL;
	glob_t g;

	step_dir(dir, sizeof(dir), E.shared, step);
	snprintf(pat, sizeof(pat), "%s/rank-*.ckz", dir);
	if (glob(pat, 0, NULL, &g) != 0)
		return NULL;
	if (g.gl_pathc == 1 && ckpt_shard__open(&sh, g.gl_pathv[0], NULL) != CKPT_OK)
		sh = NULL;
	globfree(&g);
	return sh;
}

/* The end of the transform tests: with chunk_transform=none (CTX open so), step `step` of the
 * xregions r loads bit-exact from the shared tier and every region of its shard is untransformed
 * (transform 0); then CTX is closed and the xregions' data freed. */
static void save_untransformed(uint64_t step, const ckpt_region *r)
{
	struct ckpt_shard *sh;

	CU_ASSERT_FATAL(ckpt_save(CTX, step, r, NX) == CKPT_OK);
	CU_ASSERT_FATAL(ckpt_wait(CTX, step) == CKPT_OK);
	CU_ASSERT(xload_shared(step));
	CU_ASSERT_PTR_NOT_NULL_FATAL(sh = open_ckz(step));
	for (uint32_t i = 0; i < sh->idx.nregions; i++)
		CU_ASSERT_EQUAL(sh->idx.regions[i].transform, 0);
	ckpt_shard__close(sh);
	CU_ASSERT(close_ctx() == CKPT_OK);
	for (size_t i = 0; i < NX; i++) {
		free(xregions[i].data);
		xregions[i].data = NULL;
	}
}

/* The (xform, width) of chunk c of region `name`, as xform * 16 + width; -1 if absent. */
static int chunk_code(const struct ckpt_shard *sh, const char *name, uint32_t c)
{
	const struct ckpt_region_meta *r = ckpt_fmt__find_region(&sh->idx, name);

	return r && c < r->nchunks ? r->chunks[c].xform * 16 + r->chunks[c].width : -1;
}

static void test_transform_roundtrip(void)
{
	ckpt_region r[NX];
	struct ckpt_shard *sh;
	const struct ckpt_region_meta *m;
	int seen[256] = { 0 }, distinct = 0;

	CU_ASSERT_FATAL(env_new("drain-xform") == 0);
	make_xregions(r);
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv((const char *const[]){
		"chunk_size", "64K", "drain_threads", "3", NULL }));
	CU_ASSERT_FATAL(ckpt_save(CTX, 1, r, NX) == CKPT_OK);
	CU_ASSERT_FATAL(ckpt_wait(CTX, 1) == CKPT_OK);
	CU_ASSERT(xload_shared(1));
	CU_ASSERT_PTR_NOT_NULL_FATAL(sh = open_ckz(1));
	for (size_t i = 0; i < NX; i++) {
		CU_ASSERT_PTR_NOT_NULL_FATAL(m = ckpt_fmt__find_region(&sh->idx, xregions[i].name));
		/* every region with data is transform 1; an empty one has no chunk to transform */
		CU_ASSERT_EQUAL(m->transform, xregions[i].size ? 1 : 0);
	}
	/* what the detector chose, from the data alone */
	CU_ASSERT_EQUAL(chunk_code(sh, "fp32", 0), 2 * 16 + 4);
	/* the 4099-byte tail chunk (a partial last element): whatever the detector chose from
	 * its few bytes, it read back (xload_shared) */
	printf("(fp32 tail chunk: transform %d width %d) ", chunk_code(sh, "fp32", 3) / 16,
	       chunk_code(sh, "fp32", 3) % 16);
	CU_ASSERT(chunk_code(sh, "fp32", 3) / 16 == 1 || chunk_code(sh, "fp32", 3) / 16 == 2);
	CU_ASSERT_EQUAL(chunk_code(sh, "bf16", 0), 2 * 16 + 2);
	CU_ASSERT_EQUAL(chunk_code(sh, "mixed", 0), 2 * 16 + 4);
	CU_ASSERT_EQUAL(chunk_code(sh, "mixed", 1), 1 * 16 + 1); /* random bytes: plain (raw) */
	CU_ASSERT_EQUAL(chunk_code(sh, "mixed", 3), 2 * 16 + 2);
	CU_ASSERT_EQUAL(chunk_code(sh, "tiny", 0), 1 * 16 + 1);
	m = ckpt_fmt__find_region(&sh->idx, "mixed");
	for (uint32_t c = 0; m && c < m->nchunks; c++) {
		int code = chunk_code(sh, "mixed", c);

		if (code >= 0 && !seen[code]++)
			distinct++;
	}
	printf("(mixed region: %d distinct chunk transforms) ", distinct);
	CU_ASSERT(distinct >= 3);
	ckpt_shard__close(sh);
	CU_ASSERT(close_ctx() == CKPT_OK);

	/* a width hint imposes the width; none writes version 1 regions; both read back */
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv((const char *const[]){
		"chunk_size", "64K", "elem_width", "2", NULL }));
	CU_ASSERT_FATAL(ckpt_save(CTX, 2, r, NX) == CKPT_OK);
	CU_ASSERT_FATAL(ckpt_wait(CTX, 2) == CKPT_OK);
	CU_ASSERT(xload_shared(2));
	CU_ASSERT_PTR_NOT_NULL_FATAL(sh = open_ckz(2));
	CU_ASSERT_EQUAL(chunk_code(sh, "fp32", 0), 2 * 16 + 2);
	ckpt_shard__close(sh);
	CU_ASSERT(close_ctx() == CKPT_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv((const char *const[]){
		"chunk_size", "64K", "chunk_transform", "none", "drain_threads", "1", NULL }));
	save_untransformed(3, r);
}

/* ckpt_region_hint: a region's hint decides the width of its chunks (over detection and over the
 * elem_width key), a wrong one still reads back bit-exact, 0 removes it, bad calls are refused. */
static void test_region_hint(void)
{
	ckpt_region r[NX];
	struct ckpt_shard *sh;
	char longname[CKPT_NAME_MAX + 2];
	char many[32];

	CU_ASSERT_FATAL(env_new("drain-hint") == 0);
	make_xregions(r);
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv((const char *const[]){
		"chunk_size", "64K", "drain_threads", "2", NULL }));
	/* wrong widths on purpose (the data is fp32, bf16, fp32 + random + ...) */
	CU_ASSERT(ckpt_region_hint(CTX, "fp32", 2) == CKPT_OK);
	CU_ASSERT(ckpt_region_hint(CTX, "bf16", 4) == CKPT_OK);
	CU_ASSERT(ckpt_region_hint(CTX, "mixed", 8) == CKPT_OK);
	CU_ASSERT(ckpt_region_hint(CTX, "fp32-whole", 1) == CKPT_OK);
	CU_ASSERT(ckpt_region_hint(CTX, "never-saved", 4) == CKPT_OK);
	/* many more names than the table's first size: it grows, the hints above stay */
	for (int i = 0; i < 3000; i++) {
		snprintf(many, sizeof(many), "layer.%d.weight", i);
		CU_ASSERT(ckpt_region_hint(CTX, many, 1u << (i % 4)) == CKPT_OK);
	}
	CU_ASSERT_FATAL(ckpt_save(CTX, 1, r, NX) == CKPT_OK);
	CU_ASSERT_FATAL(ckpt_wait(CTX, 1) == CKPT_OK);
	CU_ASSERT(xload_shared(1));
	CU_ASSERT_PTR_NOT_NULL_FATAL(sh = open_ckz(1));
	CU_ASSERT_EQUAL(chunk_code(sh, "fp32", 0), 2 * 16 + 2);
	CU_ASSERT_EQUAL(chunk_code(sh, "fp32", 2), 2 * 16 + 2);
	CU_ASSERT_EQUAL(chunk_code(sh, "bf16", 0), 2 * 16 + 4);
	CU_ASSERT_EQUAL(chunk_code(sh, "mixed", 0), 2 * 16 + 8);
	CU_ASSERT_EQUAL(chunk_code(sh, "mixed", 3), 2 * 16 + 8); /* bf16 data, width 8 imposed */
	CU_ASSERT_EQUAL(chunk_code(sh, "fp32-whole", 0), 1 * 16 + 1);
	CU_ASSERT_EQUAL(chunk_code(sh, "fp64", 0), 2 * 16 + 8); /* no hint: detected */
	ckpt_shard__close(sh);

	/* 0 removes a hint: detection again */
	CU_ASSERT(ckpt_region_hint(CTX, "fp32", 0) == CKPT_OK);
	CU_ASSERT(ckpt_region_hint(CTX, "not-hinted", 0) == CKPT_OK);
	CU_ASSERT_FATAL(ckpt_save(CTX, 2, r, NX) == CKPT_OK);
	CU_ASSERT_FATAL(ckpt_wait(CTX, 2) == CKPT_OK);
	CU_ASSERT(xload_shared(2));
	CU_ASSERT_PTR_NOT_NULL_FATAL(sh = open_ckz(2));
	CU_ASSERT_EQUAL(chunk_code(sh, "fp32", 0), 2 * 16 + 4);
	CU_ASSERT_EQUAL(chunk_code(sh, "bf16", 0), 2 * 16 + 4);
	ckpt_shard__close(sh);

	/* refused: the context's message says why, the table is unchanged */
	CU_ASSERT(ckpt_region_hint(NULL, "fp32", 4) == CKPT_EINVAL);
	CU_ASSERT(ckpt_region_hint(CTX, NULL, 4) == CKPT_EINVAL);
	CU_ASSERT(ckpt_region_hint(CTX, "", 4) == CKPT_EINVAL);
	memset(longname, 'n', CKPT_NAME_MAX + 1);
	longname[CKPT_NAME_MAX + 1] = 0;
	CU_ASSERT(ckpt_region_hint(CTX, longname, 4) == CKPT_EINVAL);
	longname[CKPT_NAME_MAX] = 0; /* 255 bytes: accepted */
	CU_ASSERT(ckpt_region_hint(CTX, longname, 4) == CKPT_OK);
	CU_ASSERT(ckpt_region_hint(CTX, "bf16", 3) == CKPT_EINVAL);
	CU_ASSERT(strstr(ckpt_errmsg(CTX), "element width 3") != NULL);
	CU_ASSERT(ckpt_region_hint(CTX, "bf16", 16) == CKPT_EINVAL);
	CU_ASSERT(close_ctx() == CKPT_OK);

	/* a hint outranks the elem_width key; regions without one follow the key */
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv((const char *const[]){
		"chunk_size", "64K", "elem_width", "2", NULL }));
	CU_ASSERT(ckpt_region_hint(CTX, "fp32", 4) == CKPT_OK);
	CU_ASSERT_FATAL(ckpt_save(CTX, 3, r, NX) == CKPT_OK);
	CU_ASSERT_FATAL(ckpt_wait(CTX, 3) == CKPT_OK);
	CU_ASSERT(xload_shared(3));
	CU_ASSERT_PTR_NOT_NULL_FATAL(sh = open_ckz(3));
	CU_ASSERT_EQUAL(chunk_code(sh, "fp32", 0), 2 * 16 + 4);
	CU_ASSERT_EQUAL(chunk_code(sh, "fp64", 0), 2 * 16 + 2);
	ckpt_shard__close(sh);
	CU_ASSERT(close_ctx() == CKPT_OK);

	/* without chunk transforms a hint changes nothing: version 1 regions */
	CU_ASSERT_PTR_NOT_NULL_FATAL(CTX = open_kv((const char *const[]){
		"chunk_size", "64K", "chunk_transform", "none", NULL }));
	CU_ASSERT(ckpt_region_hint(CTX, "fp32", 4) == CKPT_OK);
	save_untransformed(4, r);
}

int main(void)
{
	CU_pSuite s;
	unsigned char warm[8];

	th_clean_environment();
	th_make_data(warm, sizeof(warm), 0);
	atexit(umount_all); /* also on an early exit */
	signal(SIGSEGV, on_fatal_signal);
	signal(SIGABRT, on_fatal_signal);
	signal(SIGBUS, on_fatal_signal);
	signal(SIGINT, on_fatal_signal);
	signal(SIGTERM, on_fatal_signal);
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite_with_setup_and_teardown("drain", NULL, NULL, NULL, teardown);
	if (!s || !CU_add_test(s, "shared tier full", test_shared_full) ||
	    !CU_add_test(s, "shared tier broken", test_shared_broken) ||
	    !CU_add_test(s, "failed drain cleans up before ckpt_wait returns",
			 test_failed_drain_cleans_before_wait) ||
	    !CU_add_test(s, "close reports a failed drain", test_close_reports_failure) ||
	    !CU_add_test(s, "damaged local copy not drained", test_corrupt_local_not_drained) ||
	    !CU_add_test(s, "local tier full", test_local_full) ||
	    !CU_add_test(s, "backpressure", test_backpressure) ||
	    !CU_add_test(s, "skip superseded steps when behind", test_skip_superseded) ||
	    !CU_add_test(s, "drain threads: names and relative nice", test_thread_names_nice) ||
	    !CU_add_test(s, "a failed drain's leftover is removed by the next", test_own_leftover_removed) ||
	    !CU_add_test(s, "close_timeout 0", test_close_timeout) ||
	    !CU_add_test(s, "chunk transforms round trip", test_transform_roundtrip) ||
	    !CU_add_test(s, "per-region width hints", test_region_hint)) {
		CU_cleanup_registry();
		return 1;
	}
	return th_run();
}
