/* SPDX-License-Identifier: MIT */
/* A silent MPI rank (issue 13), driven by tests/test_mpi_silent.sh:
 *
 *   mpi_silent BASE save|latest|close|never
 *
 * Every rank opens the job (mpi_timeout = SILENT_TIMEOUT, default 3 s) and commits step 1. Then
 * the last rank (or SILENT_RANK) goes silent for SILENT_SECONDS (default 12) before it calls ckpt_save (mode save),
 * ckpt_latest (latest) or ckpt_close (close), or never calls ckpt_save at all and closes after
 * its silence (never); the other ranks make that call at once. Each rank prints what its calls
 * returned and how long they took ("figure:" lines) and checks the targets of the issue: every
 * rank returns within mpi_timeout + SILENT_MARGIN (default 2 s), the others with an error that
 * names the silent rank (ckpt_close: in its warning, which the driver checks). Then, but for
 * mode close, the context must still work: every rank saves step 3, which must commit, and
 * closes (CKPT_OK). Then MPI_Finalize, which must be clean (the driver checks the exit).
 * A missed target is a "target: ... FAIL" line, not the exit status: a rank that exits non-zero
 * makes mpirun kill the others, which would hide whether their MPI_Finalize was clean. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"
#include "ckpt_mpi.h"
#include "harness.h"

#define BIG (1u << 20)

static int rank, size, victim, failures;
static double mpi_timeout, margin;
static const char *mode, *thr;

static double env_d(const char *name, double def)
{
	const char *v = getenv(name);

	return v && *v ? atof(v) : def;
}

static ckpt_ctx *open_ctx(const char *base)
{
	char local[4096], shared[4096], v[32];
	ckpt_config *cfg;
	ckpt_ctx *ctx = NULL;
	int rc;

	snprintf(local, sizeof(local), "%s/node%d", base, rank);
	snprintf(shared, sizeof(shared), "%s/shared", base);
	th_sh("mkdir -p '%s' '%s'", local, shared);
	ckpt_config_new(&cfg);
	ckpt_config_set(cfg, "local_dir", local);
	ckpt_config_set(cfg, "shared_dir", shared);
	ckpt_config_set(cfg, "name", "silent");
	ckpt_config_set(cfg, "chunk_size", "256K");
	snprintf(v, sizeof(v), "%g", mpi_timeout);
	ckpt_config_set(cfg, "mpi_timeout", v);
	ckpt_config_set(cfg, "close_timeout", v);
	rc = ckpt_open_mpi(&ctx, cfg, MPI_COMM_WORLD);
	ckpt_config_free(cfg);
	if (rc != CKPT_OK) {
		fprintf(stderr, "rank %d: ckpt_open_mpi: %s\n", rank, ckpt_errmsg(NULL));
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	return ctx;
}

static int save_step(ckpt_ctx *ctx, uint64_t s)
{
	unsigned char *buf = malloc(BIG);
	ckpt_region r = { "weights", buf, BIG };
	int rc;

	th_make_data(buf, BIG, s * 100 + (uint64_t)rank);
	rc = ckpt_save(ctx, s, &r, 1);
	free(buf);
	return rc;
}

/* Print what a call did and check it against the targets. `rc`, `t` and `msg` are its result,
 * duration and ckpt_errmsg (NULL after ckpt_close, which frees the context with its message). */
static void judge(const char *op, int rc, double t, const char *msg)
{
	char who[32];
	int bounded = t <= mpi_timeout + margin, named, errs;

	snprintf(who, sizeof(who), "rank %d", victim);
	named = !msg || strstr(msg, who) != NULL; /* NULL: no message to read (ckpt_close) */
	msg = msg ? msg : "";
	errs = rc != CKPT_OK;
	printf("figure: silent_%s%s_np%d_%s rank %d%s: %s %s in %.2f s%s%s\n", mode,
	       victim ? "" : "_rank0", size, thr, rank,
	       rank == victim ? " (silent)" : "", op, ckpt_strerror(rc), t, *msg ? ": " : "", msg);
	if (!bounded) {
		printf("target: rank %d %s bounded FAIL (%.2f s > mpi_timeout %g + %g)\n", rank, op, t,
		       mpi_timeout, margin);
		failures++;
	}
	if (rank != victim && (!errs || !named)) {
		printf("target: rank %d %s names the silent rank FAIL (%s: \"%s\")\n", rank, op,
		       ckpt_strerror(rc), msg);
		failures++;
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const char *base = argc > 2 ? argv[1] : "/nonexistent";
	double silence, t;
	ckpt_ctx *ctx;
	uint64_t latest = 0;
	int provided, rc, closed = 0;

	mode = argc > 2 ? argv[2] : "";
	thr = getenv("TEST_MPI_THREAD") ? getenv("TEST_MPI_THREAD") : "single";
	MPI_Init_thread(&argc, &argv, !strcmp(thr, "multiple") ? MPI_THREAD_MULTIPLE :
				      MPI_THREAD_SINGLE, &provided);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	th_clean_environment();
	victim = getenv("SILENT_RANK") ? atoi(getenv("SILENT_RANK")) : size - 1;
	if (victim < 0 || victim >= size)
		victim = size - 1;
	mpi_timeout = env_d("SILENT_TIMEOUT", 3);
	margin = env_d("SILENT_MARGIN", 2);
	silence = env_d("SILENT_SECONDS", 12);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(mode, "save") && strcmp(mode, "latest") && strcmp(mode, "close") &&
	    strcmp(mode, "never")) {
		fprintf(stderr, "usage: mpi_silent BASE save|latest|close|never\n");
		MPI_Finalize();
		return 2;
	}

	/* warm-up: step 1 committed on every rank */
	ctx = open_ctx(base);
	if ((rc = save_step(ctx, 1)) != CKPT_OK || (rc = ckpt_wait(ctx, 1)) != CKPT_OK) {
		fprintf(stderr, "rank %d: step 1: %s\n", rank, ckpt_errmsg(ctx));
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	MPI_Barrier(MPI_COMM_WORLD);

	if (rank == victim) {
		printf("rank %d: silent for %g s (mpi_timeout %g)\n", rank, silence, mpi_timeout);
		usleep((useconds_t)(silence * 1e6));
	}
	t = MPI_Wtime();
	if (!strcmp(mode, "save") || (!strcmp(mode, "never") && rank != victim)) {
		rc = save_step(ctx, 2);
		judge("ckpt_save", rc, MPI_Wtime() - t, ckpt_errmsg(ctx));
	} else if (!strcmp(mode, "latest")) {
		rc = ckpt_latest(ctx, &latest);
		judge("ckpt_latest", rc, MPI_Wtime() - t, ckpt_errmsg(ctx));
	} else if (!strcmp(mode, "close")) {
		/* ckpt_close frees ctx: its message is gone with it; the rc must tell */
		rc = ckpt_close(ctx);
		closed = 1;
		judge("ckpt_close", rc, MPI_Wtime() - t, NULL);
	}
	if (!closed) {
		/* The context stays usable: once every rank is back (the test's own barrier), the
		 * next collective save commits on every rank, also on a rank that skipped a call
		 * (never) or came late to one that failed (save, latest). */
		MPI_Barrier(MPI_COMM_WORLD);
		t = MPI_Wtime();
		if ((rc = save_step(ctx, 3)) == CKPT_OK)
			rc = ckpt_wait(ctx, 3);
		printf("figure: silent_%s_np%d_%s rank %d%s: then ckpt_save+ckpt_wait step 3 %s in "
		       "%.2f s%s%s\n", mode, size, thr, rank, rank == victim ? " (silent)" : "",
		       ckpt_strerror(rc), MPI_Wtime() - t, rc ? ": " : "", rc ? ckpt_errmsg(ctx) : "");
		if (rc != CKPT_OK) {
			printf("target: rank %d the context stays usable (step 3 commits) FAIL\n", rank);
			failures++;
		}
		t = MPI_Wtime();
		rc = ckpt_close(ctx);
		printf("figure: silent_%s_np%d_%s rank %d%s: then ckpt_close %s in %.2f s\n", mode, size,
		       thr, rank, rank == victim ? " (silent)" : "", ckpt_strerror(rc), MPI_Wtime() - t);
		if (MPI_Wtime() - t > mpi_timeout + margin || rc != CKPT_OK) {
			printf("target: rank %d ckpt_close (every rank there) returns CKPT_OK FAIL\n",
			       rank);
			failures++;
		}
	}
	printf("rank %d: MPI_Finalize\n", rank);
	MPI_Finalize();
	printf("rank %d: finalized, %d target(s) missed\n", rank, failures);
	return 0;
}
