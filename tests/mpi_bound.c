/* SPDX-License-Identifier: MIT */
/* MPI: local disk stays bounded while every drain fails, and every rank releases the same failed
 * steps (issue 13), driven by tests/test_mpi_bound.sh:
 *
 *   mpi_bound BASE
 *
 * Every rank saves step 1 (committed: the newest committed step of the run), then steps
 * 2..BOUND_STEPS (default 16) whose directories on the shared tier rank 0 has made regular files,
 * so that every rank's drain fails at its mkdir at once (as on a soft mount that answers EIO)
 * and the commit protocol fails each step on every rank. keep_local 1 and max_pending 2: the bound
 * is 3 local steps per rank. With BOUND_WAIT=1 each save waits for its step's failure before the
 * next one (the outcome has reached every rank: the bound holds exactly); with BOUND_WAIT=0 the
 * saves follow each other at once. After every save and at the end, each rank counts its own
 * local step files. Checked: at most 3 local steps on every rank at every count (BOUND_SLACK
 * more allowed, default 0), the newest local step and step 1's copy never removed, every rank
 * classifies the steps alike (committed / released as "superseded" / failed) and counts the
 * same skipped steps (ckpt_drain_lag), some step was released; then the volume is repaired (the
 * files removed), and a new ckpt_open_mpi drains the kept steps: the newest step commits, and
 * ckpt_latest finds it and it loads bit-exact on every rank. One line per miss: "target: ...
 * FAIL"; exit 1 on rank 0 after a clean MPI_Finalize when any was missed. */
#include <dirent.h>
#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "ckpt_mpi.h"
#include "harness.h"

#define MAXSTEPS 64
#define BOUND 3 /* keep_local 1 + max_pending 2 */
#define SIZE (256u * 1024u)

static int rank, size, failures;
static char local[4096], shared[4096];

static void target(int ok, const char *what)
{
	if (!ok) {
		printf("target: rank %d: %s FAIL\n", rank, what);
		failures++;
	}
}

static double env_d(const char *name, double def)
{
	const char *v = getenv(name);

	return v && *v ? atof(v) : def;
}

/* This rank's local copy of step s (its own file in the step directory). */
static int has_local(uint64_t s)
{
	char p[4400];
	struct stat st;

	snprintf(p, sizeof(p), "%s/bound/step-%020llu/rank-%06d.ckl", local, (unsigned long long)s,
		 rank);
	return stat(p, &st) == 0;
}

/* This rank's local steps: step directories holding its file (the trash is not one). */
static int local_steps(void)
{
	char dir[4200];
	struct dirent *e;
	DIR *d;
	int k = 0;

	snprintf(dir, sizeof(dir), "%s/bound", local);
	if (!(d = opendir(dir)))
		return -1;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, "step-", 5))
			k += has_local(strtoull(e->d_name + 5, NULL, 10));
	closedir(d);
	return k;
}

/* Rank 0: the shared directory of step s a regular file (its drain fails), or not. */
static void break_step(uint64_t s, int broken)
{
	char p[4400];
	FILE *f;

	snprintf(p, sizeof(p), "%s/bound/step-%020llu", shared, (unsigned long long)s);
	if (broken && (f = fopen(p, "w")))
		fclose(f);
	else if (broken || unlink(p) < 0)
		printf("target: rank 0: %s %s: %s FAIL\n", broken ? "create" : "unlink", p,
		       strerror(errno)), failures++;
}

static ckpt_ctx *open_ctx(const char *base)
{
	ckpt_config *cfg;
	ckpt_ctx *ctx = NULL;
	char node[32];

	snprintf(node, sizeof(node), "node%d", rank);
	cfg = th_node_config(base, node, (const char *const[]){
		"name", "bound", "keep_local", "1", "max_pending", "2", "stall_wait", "0.2",
		"chunk_size", "64K", "mpi_timeout", "30",
		"log_level", getenv("BOUND_VERBOSE") ? "2" : "0", NULL });
	if (!cfg || ckpt_open_mpi(&ctx, cfg, MPI_COMM_WORLD) != CKPT_OK) {
		fprintf(stderr, "rank %d: ckpt_open_mpi: %s\n", rank, ckpt_errmsg(NULL));
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	ckpt_config_free(cfg);
	return ctx;
}

static int save(ckpt_ctx *ctx, uint64_t s, unsigned char *buf)
{
	ckpt_region r = { "state", buf, SIZE };

	th_fill(buf, SIZE, s * 1000 + (uint64_t)rank);
	return ckpt_save(ctx, s, &r, 1);
}

static int loads(ckpt_ctx *ctx, uint64_t s, unsigned char *buf, unsigned char *back)
{
	th_fill(buf, SIZE, s * 1000 + (uint64_t)rank);
	return ckpt_load(ctx, s, "state", back, SIZE) == CKPT_OK && !memcmp(buf, back, SIZE);
}

int main(int argc, char **argv)
{
	char cls[MAXSTEPS + 1], *all = NULL, what[160];
	int nsteps = (int)env_d("BOUND_STEPS", 16), wait_each = (int)env_d("BOUND_WAIT", 1);
	int slack = (int)env_d("BOUND_SLACK", 0), provided, rc, k, max_local = 0, newest_gone = 0;
	int nreleased = 0, nfailed = 0, nother = 0;
	const char *thr = getenv("TEST_MPI_THREAD") ? getenv("TEST_MPI_THREAD") : "single";
	unsigned char *buf, *back;
	ckpt_ctx *ctx;
	ckpt_lag_info lag;
	uint64_t latest = 0;
	unsigned sk[2];

	MPI_Init_thread(&argc, &argv, !strcmp(thr, "multiple") ? MPI_THREAD_MULTIPLE :
				      MPI_THREAD_SINGLE, &provided);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	th_clean_environment();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2 || nsteps < BOUND + 3 || nsteps > MAXSTEPS) {
		fprintf(stderr, "usage: mpi_bound BASE (BOUND_STEPS %d..%d)\n", BOUND + 3, MAXSTEPS);
		MPI_Finalize();
		return 2;
	}
	snprintf(local, sizeof(local), "%s/node%d", argv[1], rank);
	snprintf(shared, sizeof(shared), "%s/shared", argv[1]);
	buf = malloc(SIZE);
	back = malloc(SIZE);
	ctx = open_ctx(argv[1]);

	/* step 1 commits */
	target(save(ctx, 1, buf) == CKPT_OK, "ckpt_save 1");
	target(ckpt_wait(ctx, 1) == CKPT_OK, "step 1 commits");
	MPI_Barrier(MPI_COMM_WORLD); /* step 1's MANIFEST is written: its job directory exists */
	if (rank == 0)
		for (int s = 2; s <= nsteps; s++)
			break_step((uint64_t)s, 1);
	MPI_Barrier(MPI_COMM_WORLD);

	for (int s = 2; s <= nsteps; s++) {
		if ((rc = save(ctx, (uint64_t)s, buf)) != CKPT_OK) {
			fprintf(stderr, "rank %d: ckpt_save %d: %s\n", rank, s, ckpt_errmsg(ctx));
			MPI_Abort(MPI_COMM_WORLD, 2);
		}
		if ((k = local_steps()) > max_local)
			max_local = k;
		if (wait_each) {
			rc = ckpt_wait(ctx, (uint64_t)s);
			snprintf(what, sizeof(what), "step %d's drain fails (ckpt_wait: %s)", s,
				 ckpt_strerror(rc));
			target(rc < 0, what);
		}
		if ((k = local_steps()) > max_local)
			max_local = k;
		newest_gone += !has_local((uint64_t)s);
		if (getenv("BOUND_VERBOSE"))
			printf("rank %d: step %d saved, %d local steps\n", rank, s, k);
	}
	rc = ckpt_wait(ctx, CKPT_STEP_ALL);
	target(rc < 0, "ckpt_wait(all) reports the failed drains");
	if ((k = local_steps()) > max_local)
		max_local = k;
	printf("figure: bound_np%d_%s_wait%d rank %d: at most %d local steps while every drain "
	       "failed (bound %d), %d at the end\n", size, thr, wait_each, rank, max_local, BOUND,
	       local_steps());
	snprintf(what, sizeof(what), "at most %d local steps (bound %d + slack %d): %d", BOUND + slack,
		 BOUND, slack, max_local);
	target(max_local <= BOUND + slack, what);
	target(newest_gone == 0, "the newest local step is never removed");
	target(has_local((uint64_t)nsteps), "the newest step's local copy is there");
	target(has_local(1), "the committed step 1 keeps its local copy");
	target(!has_local(2), "the oldest failed step's local copy is gone");

	/* c committed, r released (skipped, superseded), f failed (kept), ? anything else */
	for (int s = 1; s <= nsteps; s++) {
		rc = ckpt_wait(ctx, (uint64_t)s);
		cls[s - 1] = rc == CKPT_OK ? 'c' :
			     rc == CKPT_ENOENT && strstr(ckpt_errmsg(ctx), "superseded") ? 'r' :
			     rc < 0 && rc != CKPT_ENOENT ? 'f' : '?';
		nreleased += cls[s - 1] == 'r';
		nfailed += cls[s - 1] == 'f';
		nother += cls[s - 1] == '?';
		if (s == 2 && getenv("BOUND_VERBOSE"))
			printf("rank %d: step 2: %s\n", rank, ckpt_errmsg(ctx));
		/* a released step has no local copy, a failed one keeps it */
		if ((cls[s - 1] == 'r') == has_local((uint64_t)s)) {
			snprintf(what, sizeof(what), "step %d (%c) %s its local copy", s, cls[s - 1],
				 has_local((uint64_t)s) ? "keeps" : "lost");
			target(0, what);
		}
	}
	cls[nsteps] = '\0';
	ckpt_drain_lag(ctx, &lag);
	printf("figure: bound_np%d_%s_wait%d rank %d: steps %s (c committed, r released, f failed "
	       "and kept), ckpt_drain_lag skipped %u\n", size, thr, wait_each, rank, cls,
	       lag.skipped);
	target(cls[0] == 'c', "step 1 stays committed");
	target(nreleased >= nsteps - 1 - BOUND - slack, "the failed steps beyond the bound were "
	       "released");
	target(nother == 0, "every step is committed, released or failed");
	target(cls[nsteps - 1] == 'f', "the newest step is kept (failed, not released)");
	target(loads(ctx, 1, buf, back), "step 1 loads bit-exact");
	if (rank == 0)
		all = calloc((size_t)size, MAXSTEPS + 1);
	MPI_Gather(cls, MAXSTEPS + 1, MPI_CHAR, all, MAXSTEPS + 1, MPI_CHAR, 0, MPI_COMM_WORLD);
	sk[0] = lag.skipped;
	sk[1] = ~lag.skipped;
	MPI_Allreduce(MPI_IN_PLACE, sk, 2, MPI_UNSIGNED, MPI_MAX, MPI_COMM_WORLD);
	target(sk[0] == ~sk[1], "every rank's ckpt_drain_lag counts the same skipped steps");
	if (rank == 0)
		for (int r = 1; r < size; r++)
			if (strcmp(all + (size_t)r * (MAXSTEPS + 1), cls)) {
				printf("target: rank %d reports %s, rank 0 %s: the same steps on every "
				       "rank FAIL\n", r, all + (size_t)r * (MAXSTEPS + 1), cls);
				failures++;
			}
	rc = ckpt_close(ctx);
	printf("rank %d: ckpt_close with failed drains: %s\n", rank, ckpt_strerror(rc));

	/* The volume is back: a new open drains the steps every rank kept, the newest among them. */
	MPI_Barrier(MPI_COMM_WORLD);
	if (rank == 0)
		for (int s = 2; s <= nsteps; s++)
			break_step((uint64_t)s, 0);
	MPI_Barrier(MPI_COMM_WORLD);
	ctx = open_ctx(argv[1]);
	rc = ckpt_wait(ctx, CKPT_STEP_ALL);
	snprintf(what, sizeof(what), "after the repair the kept steps commit (%s)",
		 rc ? ckpt_errmsg(ctx) : "ok");
	target(rc == CKPT_OK, what);
	rc = ckpt_latest(ctx, &latest);
	target(rc == CKPT_OK && latest == (uint64_t)nsteps, "ckpt_latest finds the newest step");
	if (rc == CKPT_OK)
		target(loads(ctx, latest, buf, back), "the newest step loads bit-exact");
	target(ckpt_close(ctx) == CKPT_OK, "ckpt_close");
	MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	free(buf);
	free(back);
	free(all);
	MPI_Finalize();
	printf("rank %d: finalized, %d target(s) missed on all ranks\n", rank, failures);
	return rank == 0 && failures ? 1 : 0;
}
