/* SPDX-License-Identifier: MIT */
/* The MPI side of tests/torture: one rank of a saving job that torture kills (run), and the
 * checker that reads the job back afterwards (check).
 *
 *   torture_mpi DIR run SIZE GEN    save steps forever: rank 0 journals S/W/C lines (torture.h)
 *                                   and every rank writes its pid to DIR/pids/rank-R
 *   torture_mpi DIR check SIZE GEN  three views, one line each on rank 0's stdout:
 *     VIEW alone|both|after RC LATEST STATUS SEED [why]   ckpt_latest and the step it names
 *     COMMITTED alone|after STEP STATUS SEED [why]        every step with a MANIFEST
 *     NEWER alone|after STEP                              a committed step above ckpt_latest
 *     FAIL what                                           a call that must succeed failed
 *   "alone" and "after" open with empty local directories (the nodes were recreated): the
 *   shared tier alone, before and after "both", which opens with the nodes' local directories
 *   and so re-drains what the kill left uncommitted. STATUS is OK, ERR, WRONG or TORN (ranks
 *   holding different saves of one step is TORN). torture judges SEED against the journal. */
#include <dirent.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "ckpt_mpi.h"
#include "torture.h"

#define WHY 256

static int rank, nranks;
static const char *dir;
static size_t base;
static uint64_t gen;

static const char *const status_name[] = { "OK", "ERR", "WRONG", "TORN" };

static ckpt_ctx *open_ctx(const char *local)
{
	char shared[4096], chunk[16];
	ckpt_config *cfg;
	ckpt_ctx *ctx = NULL;
	int rc;

	snprintf(shared, sizeof(shared), "%s/shared", dir);
	snprintf(chunk, sizeof(chunk), "%s", (const char *[]){ "64K", "256K" }[(gen >> 4) % 2]);
	if (rank == 0)
		mkdir(shared, 0755);
	mkdir(local, 0755);
	MPI_Barrier(MPI_COMM_WORLD);
	ckpt_config_new(&cfg);
	ckpt_config_set(cfg, "local_dir", local);
	ckpt_config_set(cfg, "shared_dir", shared);
	ckpt_config_set(cfg, "name", "mpijob");
	ckpt_config_set(cfg, "chunk_size", chunk);
	ckpt_config_set(cfg, "keep_local", "2");
	ckpt_config_set(cfg, "keep_shared", "3");
	ckpt_config_set(cfg, "mpi_timeout", "60");
	ckpt_config_set(cfg, "log_level", "0");
	if ((rc = ckpt_open_mpi(&ctx, cfg, MPI_COMM_WORLD)) != CKPT_OK)
		fprintf(stderr, "torture_mpi: rank %d: ckpt_open_mpi: %s: %s\n", rank,
			ckpt_strerror(rc), ckpt_errmsg(NULL));
	ckpt_config_free(cfg);
	return ctx;
}

static void node_dir(char *buf, size_t len, const char *sub)
{
	snprintf(buf, len, "%s/%s%d", dir, sub, rank / 2); /* two ranks per "node" */
}

static int run(void)
{
	char local[4096], pf[4096], tmp[4200], jpath[4096];
	uint64_t latest = 0, start, counter = 0;
	int jfd = -1, wait_every = (int)(gen % 2) + 1;
	ckpt_ctx *ctx;
	FILE *f;

	node_dir(local, sizeof(local), "node");
	if (!(ctx = open_ctx(local)))
		return 1;
	snprintf(jpath, sizeof(jpath), "%s/journal", dir);
	if (rank == 0 && (jfd = open(jpath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0)
		return 1;
	if (ckpt_latest(ctx, &latest) != CKPT_OK)
		latest = 0;
	start = latest + 1;
	if ((gen >> 8) % 5 == 0 && latest > 1)
		start = latest - 1; /* save an existing step again */
	/* Tell torture who we are only now: a kill from here on hits the saving loop. */
	snprintf(pf, sizeof(pf), "%s/pids/rank-%d", dir, rank);
	snprintf(tmp, sizeof(tmp), "%s.tmp", pf);
	if (!(f = fopen(tmp, "w")) || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) ||
	    rename(tmp, pf))
		return 1;
	for (uint64_t s = start;; s++) {
		uint64_t seed = tt_mix(gen + ++counter);
		struct tt_save sv;
		int rc;

		if (tt_build(&sv, base, s, seed, (uint32_t)rank) < 0)
			return 1;
		if (rank == 0)
			tt_journal(jfd, 'S', s, seed);
		if ((rc = ckpt_save(ctx, s, sv.r, TT_NREG)) != CKPT_OK) {
			fprintf(stderr, "torture_mpi: rank %d: save %" PRIu64 ": %s\n", rank, s,
				ckpt_errmsg(ctx));
			return 1;
		}
		/* collective: when it returns OK on rank 0, every rank's copy is durable */
		if (rank == 0)
			tt_journal(jfd, 'W', s, seed);
		tt_free(&sv);
		if (counter % (uint64_t)wait_every == 0) {
			if ((rc = ckpt_wait(ctx, s)) != CKPT_OK) {
				fprintf(stderr, "torture_mpi: rank %d: wait %" PRIu64 ": %s\n", rank, s,
					ckpt_errmsg(ctx));
				return 1;
			}
			if (rank == 0)
				tt_journal(jfd, 'C', s, seed);
		}
	}
}

/* Check every rank's shard of `step`; rank 0 learns the worst status and whether the seeds
 * agree. */
static int check_all(ckpt_ctx *ctx, uint64_t step, uint64_t *seed, char *why)
{
	struct { int st; uint64_t seed; char why[WHY]; } mine, *all = NULL;
	int st = TT_OK;

	memset(&mine, 0, sizeof(mine));
	mine.st = tt_check(ctx, step, (uint32_t)rank, base, &mine.seed, mine.why, WHY);
	if (rank == 0 && !(all = calloc((size_t)nranks, sizeof(*all))))
		MPI_Abort(MPI_COMM_WORLD, 3);
	MPI_Gather(&mine, sizeof(mine), MPI_BYTE, all, sizeof(mine), MPI_BYTE, 0, MPI_COMM_WORLD);
	if (rank != 0)
		return TT_OK;
	*seed = all[0].seed;
	why[0] = '\0';
	for (int r = 0; r < nranks; r++)
		if (all[r].st > st) {
			st = all[r].st;
			snprintf(why, WHY + 16, "rank %d: %s", r, all[r].why);
		}
	for (int r = 1; r < nranks && st == TT_OK; r++)
		if (all[r].seed != all[0].seed) {
			st = TT_TORN;
			snprintf(why, WHY + 16, "rank %d holds save %016" PRIx64 ", rank 0 %016" PRIx64,
				 r, all[r].seed, all[0].seed);
		}
	free(all);
	return st;
}

/* Steps with a MANIFEST, as rank 0 sees the shared job directory; every rank gets the list. */
static int committed(uint64_t *v, int cap)
{
	char jd[4096], p[4400];
	int n = 0;

	if (rank == 0) {
		DIR *d;
		struct dirent *e;

		snprintf(jd, sizeof(jd), "%s/shared/mpijob", dir);
		if ((d = opendir(jd))) {
			while ((e = readdir(d)) && n < cap) {
				struct stat st;
				uint64_t s;

				if (strlen(e->d_name) != 25 ||
				    sscanf(e->d_name, "step-%" SCNu64, &s) != 1)
					continue;
				snprintf(p, sizeof(p), "%s/%s/MANIFEST", jd, e->d_name);
				if (stat(p, &st) == 0)
					v[n++] = s;
			}
			closedir(d);
		}
	}
	MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
	MPI_Bcast(v, n, MPI_UINT64_T, 0, MPI_COMM_WORLD);
	return n;
}

static int view(const char *name, int fresh)
{
	char local[4096], why[WHY + 16] = "";
	uint64_t latest = 0, seed = 0, v[256];
	int rc, st = TT_OK, failed = 0;
	ckpt_ctx *ctx;

	if (fresh) {
		char d[4096];

		snprintf(d, sizeof(d), "%s/fresh", dir);
		if (rank == 0) {
			char cmd[8300];

			snprintf(cmd, sizeof(cmd), "rm -rf '%s'; mkdir -p '%s'", d, d);
			if (system(cmd) != 0)
				return 1;
		}
		MPI_Barrier(MPI_COMM_WORLD);
		node_dir(local, sizeof(local), "fresh/node");
	} else {
		node_dir(local, sizeof(local), "node");
	}
	if (!(ctx = open_ctx(local))) {
		if (rank == 0)
			printf("FAIL %s: ckpt_open_mpi\n", name);
		return 1;
	}
	rc = ckpt_latest(ctx, &latest);
	if (rc == CKPT_OK)
		st = check_all(ctx, latest, &seed, why);
	else if (rank == 0)
		snprintf(why, sizeof(why), "%s", ckpt_errmsg(ctx));
	if (rank == 0)
		printf("VIEW %s %d %" PRIu64 " %s %016" PRIx64 " %s\n", name, rc, latest,
		       status_name[st], seed, why);
	if (fresh) {
		int n = committed(v, 256);

		for (int i = 0; i < n; i++) {
			if (rc == CKPT_OK && v[i] > latest) {
				if (rank == 0)
					printf("NEWER %s %" PRIu64 "\n", name, v[i]);
				continue;
			}
			if (rc == CKPT_OK && v[i] == latest)
				continue;
			st = check_all(ctx, v[i], &seed, why);
			if (rank == 0)
				printf("COMMITTED %s %" PRIu64 " %s %016" PRIx64 " %s\n", name, v[i],
				       status_name[st], seed, why);
		}
	} else {
		int w = ckpt_wait(ctx, CKPT_STEP_ALL), worst;

		MPI_Allreduce(&w, &worst, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
		if (worst != CKPT_OK && rank == 0)
			printf("FAIL recovery: ckpt_wait(ALL) returned %s on some rank\n",
			       ckpt_strerror(worst));
		failed |= worst != CKPT_OK;
	}
	rc = ckpt_close(ctx);
	if (rc != CKPT_OK) {
		printf("FAIL %s: ckpt_close on rank %d: %s\n", name, rank, ckpt_strerror(rc));
		failed = 1;
	}
	fflush(stdout);
	return failed;
}

int main(int argc, char **argv)
{
	const char *mode;
	int provided, fails = 0;

	if (argc != 5) {
		fprintf(stderr, "usage: torture_mpi DIR run|check SIZE GEN\n");
		return 64;
	}
	dir = argv[1];
	mode = argv[2];
	base = strtoull(argv[3], NULL, 10);
	gen = strtoull(argv[4], NULL, 10);
	/* both progress modes: a library thread (MULTIPLE) or progress inside the calls */
	MPI_Init_thread(&argc, &argv, gen & 1 ? MPI_THREAD_MULTIPLE : MPI_THREAD_SINGLE, &provided);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nranks);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(mode, "run")) {
		fails = run(); /* returns only on an error */
		fprintf(stderr, "torture_mpi: rank %d: the workload stopped\n", rank);
		MPI_Abort(MPI_COMM_WORLD, 2);
	} else if (!strcmp(mode, "check")) {
		fails |= view("alone", 1);
		fails |= view("both", 0);
		fails |= view("after", 1);
	} else {
		fails = 1;
	}
	MPI_Allreduce(MPI_IN_PLACE, &fails, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	MPI_Finalize();
	return fails ? 1 : 0;
}
