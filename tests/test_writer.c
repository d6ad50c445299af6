/* SPDX-License-Identifier: MIT */
/* The writer side of docs/CONCURRENCY.md: the job-rank lock and fork, the writer lease (a second
 * writer on another "node" is a non-writer that deletes nothing and whose commits are refused;
 * takeover of an expired lease; a taken-over writer commits nothing), and read_grace (superseded
 * shards and retired steps stay readable, then go). Each "node" is a local_dir of its own. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "harness.h"

#define SZ 65536

static uint8_t data[4][SZ];

/* A fresh environment with a second node's local_dir, <base>/local2. */
static int env2(struct th_env *e, char *local2, size_t len, const char *tag)
{
	if (th_env_new(e, tag) < 0)
		return -1;
	snprintf(local2, len, "%s/local2", e->base);
	return mkdir(local2, 0750);
}

static int save(ckpt_ctx *ctx, uint64_t step, int version)
{
	ckpt_region r = { "w", data[version], SZ };

	return ckpt_save(ctx, step, &r, 1);
}

static void path_of(char *buf, size_t len, const struct th_env *e, const char *rel)
{
	snprintf(buf, len, "%s/job/%s", e->shared, rel);
}

static int exists(const char *p)
{
	struct stat st;

	return lstat(p, &st) == 0;
}

/* Move a file's mtime `ago` seconds into the past. */
static int age_file(const char *p, time_t ago)
{
	struct timespec ts[2] = { { 0, UTIME_OMIT }, { time(NULL) - ago, 0 } };

	return utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW);
}

static void nap(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The child's copy of the parent's context: a forked child never frees it (it _exits, like a
 * data-loader worker), so it is kept reachable here for valgrind, which checks the child for
 * leaks at its exit and called the copy "definitely lost" when only a register pointed at it. */
static ckpt_ctx *volatile inherited;

/* A fork()ed child (a data-loader worker) must not keep the job-rank lock: once the parent closes
 * its context, the rank opens again while the child still lives. */
static void test_fork_child_drops_lock(void)
{
	struct th_env e;
	ckpt_ctx *a, *b;
	int p[2], q[2];
	pid_t pid;
	char c;

	CU_ASSERT_FATAL(th_env_new(&e, "writer-fork") == 0);
	CU_ASSERT_FATAL(pipe(p) == 0 && pipe(q) == 0);
	a = th_open(&e, (const char *const[]){ "log_level", "0", NULL });
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		inherited = a;
		/* fork() has returned here, so the atfork child handler has run: say so */
		close(p[1]);
		close(q[0]);
		if (write(q[1], "r", 1) != 1)
			_exit(2);
		_exit(read(p[0], &c, 1) < 0); /* alive until the parent closes the pipe */
	}
	close(p[0]);
	close(q[1]);
	/* Until the child has run its atfork handler it still shares the lock's open file
	 * description (a reopen in that instant would be refused): wait for it, not a sleep. */
	CU_ASSERT(read(q[0], &c, 1) == 1);
	close(q[0]);
	CU_ASSERT(ckpt_close(a) == CKPT_OK);
	b = th_open(&e, (const char *const[]){ "log_level", "0", NULL });
	CU_ASSERT_PTR_NOT_NULL(b); /* without the atfork handler: CKPT_EBUSY (the child's OFD) */
	ckpt_close(b);
	close(p[1]);
	waitpid(pid, NULL, 0);
	th_env_free(&e);
}

/* Another node opening a job whose writer is alive: a non-writer. It loads committed steps,
 * deletes nothing on the shared tier (not even what rule S or the temporary-file sweep would
 * remove for the writer), its commits fail with CKPT_EBUSY naming the writer; once the writer
 * closed, its next save commits, and the failed drain is retried. */
static void test_second_writer_is_refused(void)
{
	/* writer_lease 3: a non-writer's commit waits that long for the lease, then fails */
	const char *const kv[] = { "log_level", "0", "read_grace", "0", "writer_lease", "3", NULL };
	char local2[4200], sdir[4300], old[4400], tmp[4400], man[4400], lease[4300];
	struct th_env e;
	ckpt_ctx *a, *b;
	uint64_t step = 0;
	FILE *f;

	CU_ASSERT_FATAL(env2(&e, local2, sizeof(local2), "writer-second") == 0);
	a = th_open(&e, kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT(save(a, 1, 0) == CKPT_OK && ckpt_wait(a, 1) == CKPT_OK);
	path_of(lease, sizeof(lease), &e, ".writer");
	CU_ASSERT(exists(lease));
	/* what a writer's open would remove: a superseded shard older than an old MANIFEST, and a
	 * temporary file of a dead process of this host (pid 2^22+1 is beyond pid_max) */
	path_of(sdir, sizeof(sdir), &e, "step-00000000000000000001");
	snprintf(old, sizeof(old), "%s/rank-000000-00000000000000ab.ckz", sdir);
	snprintf(man, sizeof(man), "%s/MANIFEST", sdir);
	CU_ASSERT_FATAL((f = fopen(old, "w")) != NULL);
	fclose(f);
	CU_ASSERT(age_file(old, 7200) == 0 && age_file(man, 3600) == 0);
	{
		char host[256];
		int n = 0;

		gethostname(host, sizeof(host));
		host[sizeof(host) - 1] = '\0';
		for (char *q = host; *q; q++)
			if (*q == '/' || *q == '.' || (unsigned char)*q < 33)
				*q = '_';
		snprintf(tmp, sizeof(tmp), "%s/.tmp.%.64s.4194305.00000001.MANIFEST%n", sdir, host, &n);
	}
	CU_ASSERT_FATAL((f = fopen(tmp, "w")) != NULL);
	fclose(f);

	b = th_open_dirs(local2, e.shared, NULL, kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT(exists(old) && exists(tmp)); /* a non-writer deleted nothing */
	CU_ASSERT(ckpt_latest(b, &step) == CKPT_OK && step == 1);
	CU_ASSERT(th_load_eq(b, 1, "w", data[0], SZ));
	CU_ASSERT(save(b, 5, 1) == CKPT_OK);
	CU_ASSERT(ckpt_wait(b, 5) == CKPT_EBUSY);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(b), "is written by host"));
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(b), "not committed"));
	path_of(sdir, sizeof(sdir), &e, "step-00000000000000000005/MANIFEST");
	CU_ASSERT(!exists(sdir));
	/* the writer goes on, unaffected */
	CU_ASSERT(save(a, 2, 2) == CKPT_OK && ckpt_wait(a, 2) == CKPT_OK);
	CU_ASSERT(ckpt_close(a) == CKPT_OK);
	CU_ASSERT(!exists(lease)); /* released at close */
	/* the writer is gone: the next save of b takes the lease, and the failed drain is retried */
	CU_ASSERT(save(b, 6, 3) == CKPT_OK && ckpt_wait(b, 6) == CKPT_OK);
	CU_ASSERT(ckpt_wait(b, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(exists(sdir));
	CU_ASSERT(exists(lease));
	CU_ASSERT(th_load_eq(b, 5, "w", data[1], SZ));
	CU_ASSERT(ckpt_close(b) == CKPT_OK);
	CU_ASSERT(!exists(lease));
	th_env_free(&e);
}

/* A lease without heartbeat for writer_lease seconds (its mtime moved back) is taken over by
 * another node's open; the old writer's next commit fails with CKPT_EBUSY ("taken over") and
 * writes no MANIFEST; its close leaves the new holder's lease alone. */
static void test_takeover_of_expired_lease(void)
{
	const char *const kv[] = { "log_level", "0", "read_grace", "0", NULL };
	char local2[4200], lease[4300], man[4400];
	struct th_env e;
	ckpt_ctx *a, *b;

	CU_ASSERT_FATAL(env2(&e, local2, sizeof(local2), "writer-takeover") == 0);
	a = th_open(&e, kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT(save(a, 1, 0) == CKPT_OK && ckpt_wait(a, 1) == CKPT_OK);
	path_of(lease, sizeof(lease), &e, ".writer");
	CU_ASSERT(age_file(lease, 3600) == 0); /* as if a's node had stalled for an hour */
	b = th_open_dirs(local2, e.shared, NULL, kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT(save(b, 2, 1) == CKPT_OK && ckpt_wait(b, 2) == CKPT_OK); /* b is the writer */
	CU_ASSERT(save(a, 3, 2) == CKPT_OK);
	CU_ASSERT(ckpt_wait(a, 3) == CKPT_EBUSY);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(a), "taken over"));
	path_of(man, sizeof(man), &e, "step-00000000000000000003/MANIFEST");
	CU_ASSERT(!exists(man));
	ckpt_close(a); /* reports the failed step 3 */
	CU_ASSERT(exists(lease)); /* b's, untouched */
	CU_ASSERT(save(b, 4, 3) == CKPT_OK && ckpt_wait(b, 4) == CKPT_OK);
	CU_ASSERT(ckpt_close(b) == CKPT_OK);
	CU_ASSERT(!exists(lease));
	th_env_free(&e);
}

/* The heartbeat: an idle writer's lease mtime is refreshed every writer_lease / 3 seconds (here
 * 1 s), so another node never takes over a live but idle writer. */
static void test_heartbeat(void)
{
	const char *const kv[] = { "log_level", "0", "writer_lease", "3", NULL };
	char local2[4200], lease[4300];
	struct th_env e;
	struct stat st;
	ckpt_ctx *a, *b;

	CU_ASSERT_FATAL(env2(&e, local2, sizeof(local2), "writer-beat") == 0);
	a = th_open(&e, kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	path_of(lease, sizeof(lease), &e, ".writer");
	CU_ASSERT(age_file(lease, 3600) == 0);
	nap(1.5); /* the property is time: one heartbeat period and a half */
	CU_ASSERT(lstat(lease, &st) == 0 && st.st_mtime > time(NULL) - 60);
	b = th_open_dirs(local2, e.shared, NULL, kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT(save(b, 1, 0) == CKPT_OK && ckpt_wait(b, 1) == CKPT_EBUSY); /* not taken over */
	CU_ASSERT(save(a, 2, 1) == CKPT_OK && ckpt_wait(a, 2) == CKPT_OK);
	ckpt_close(b);
	CU_ASSERT(ckpt_close(a) == CKPT_OK);
	th_env_free(&e);
}

/* `ckpt gc` leaves the shared tier alone while the writer's lease is live, and applies
 * --keep-shared once the writer closed. */
static void test_gc_respects_lease(void)
{
	const char *const kv[] = { "log_level", "0", "keep_shared", "0", NULL };
	char job[4200];
	struct th_env e;
	ckpt_ctx *a;

	CU_ASSERT_FATAL(th_env_new(&e, "writer-gc") == 0);
	snprintf(job, sizeof(job), "%s/job", e.shared);
	a = th_open(&e, kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	for (uint64_t s = 1; s <= 3; s++)
		CU_ASSERT(save(a, s, 0) == CKPT_OK && ckpt_wait(a, s) == CKPT_OK);
	CU_ASSERT(th_sh("./tools/ckpt gc --shared-dir '%s' --name job --keep-shared 1 2>'%s/gc.err' "
			">/dev/null && grep -q 'left alone' '%s/gc.err'", e.shared, e.base, e.base) == 0);
	CU_ASSERT(th_count_files(job, "MANIFEST") == 3);
	CU_ASSERT(ckpt_close(a) == CKPT_OK);
	CU_ASSERT(th_sh("./tools/ckpt gc --shared-dir '%s' --name job --keep-shared 1 >/dev/null",
			e.shared) == 0);
	CU_ASSERT(th_count_files(job, "MANIFEST") == 1);
	th_env_free(&e);
}

/* read_grace: the shards of a superseded save, and a committed step beyond keep_shared, stay in
 * place (readable from another node) until read_grace has passed; the first retention pass after
 * that removes them. */
static void test_read_grace(void)
{
	const char *const kv[] = { "log_level", "0", "keep_shared", "1", "keep_local", "1",
				   "read_grace", "0.5", NULL };
	char local2[4200], sdir[4300], s1[4300];
	struct th_env e;
	ckpt_ctx *a, *r;
	struct timespec t0, t1;

	CU_ASSERT_FATAL(env2(&e, local2, sizeof(local2), "writer-grace") == 0);
	a = th_open(&e, kv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	path_of(sdir, sizeof(sdir), &e, "step-00000000000000000002");
	path_of(s1, sizeof(s1), &e, "step-00000000000000000001");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CU_ASSERT(save(a, 1, 0) == CKPT_OK && ckpt_wait(a, 1) == CKPT_OK);
	CU_ASSERT(save(a, 2, 1) == CKPT_OK && ckpt_wait(a, 2) == CKPT_OK);
	CU_ASSERT(save(a, 2, 2) == CKPT_OK && ckpt_wait(a, 2) == CKPT_OK);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if ((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9 < 0.4) {
		/* within the grace: step 1 (beyond keep_shared) and step 2's first save are there,
		 * and a reader on another node loads step 1 */
		CU_ASSERT(th_count_files(sdir, "rank-*.ckz") == 2);
		CU_ASSERT(exists(s1));
		r = th_open_dirs(local2, e.shared, NULL, kv);
		CU_ASSERT_PTR_NOT_NULL(r);
		if (r) {
			CU_ASSERT(th_load_eq(r, 1, "w", data[0], SZ));
			ckpt_close(r);
		}
	} else {
		fprintf(stderr, "(slow machine: the within-grace checks skipped) ");
	}
	/* past the grace: the next commit's retention retires both */
	nap(0.6);
	CU_ASSERT(save(a, 3, 3) == CKPT_OK && ckpt_wait(a, 3) == CKPT_OK);
	CU_ASSERT(ckpt_wait(a, CKPT_STEP_ALL) == CKPT_OK);
	CU_ASSERT(th_count_files(sdir, "rank-*.ckz") == 1);
	CU_ASSERT(!exists(s1));
	CU_ASSERT(th_load_eq(a, 2, "w", data[2], SZ));
	CU_ASSERT(ckpt_close(a) == CKPT_OK);
	th_env_free(&e);
}

int main(void)
{
	CU_pSuite s;

	th_clean_environment();
	for (int i = 0; i < 4; i++)
		th_make_data(data[i], SZ, 70 + (uint64_t)i);
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite_with_setup_and_teardown("writer", NULL, NULL, NULL, th_env_teardown);
	if (!s || !CU_add_test(s, "fork child drops the lock", test_fork_child_drops_lock) ||
	    !CU_add_test(s, "second writer on another node", test_second_writer_is_refused) ||
	    !CU_add_test(s, "takeover of an expired lease", test_takeover_of_expired_lease) ||
	    !CU_add_test(s, "heartbeat keeps an idle writer's lease", test_heartbeat) ||
	    !CU_add_test(s, "ckpt gc respects the lease", test_gc_respects_lease) ||
	    !CU_add_test(s, "read_grace", test_read_grace)) {
		CU_cleanup_registry();
		return 1;
	}
	return th_run();
}
