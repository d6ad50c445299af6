/* SPDX-License-Identifier: MIT */
/* A failed save's vote under the progress thread (MPI_THREAD_MULTIPLE), run by tests/test_mpi.sh.
 *
 * Rank 1's local save of step 2 fails; its failure vote must reach rank 0 as a failure, whole.
 * The engine's test hook sleeps on rank 1 right after a vote enters the outbox, which gives the
 * progress thread all the time it needs to take the outbox there: a vote that is posted in two
 * pieces (a zeroed vote, then its rc and message patched in under a second lock) is then sent as
 * a success with file_size 0 and the patch hits an empty outbox. Expected: both ranks' saves of
 * step 2 fail, step 2 has no MANIFEST, and the job goes on (step 3 commits). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ckpt.h"
#include "ckpt_mpi.h"
#include "commit_mpi.h"
#include "harness.h"

static int rank, failures;

static void slow_after_post(const char *point)
{
	struct timespec ts = { 0, 200000000 }; /* 100 passes of the 2 ms progress thread */

	if (!strcmp(point, "vote.posted"))
		nanosleep(&ts, NULL);
}

static int save(ckpt_ctx *ctx, uint64_t step)
{
	static unsigned char buf[1 << 16];
	ckpt_region r = { "w", buf, sizeof(buf) };

	th_fill(buf, sizeof(buf), step * 10 + (uint64_t)rank);
	return ckpt_save(ctx, step, &r, 1);
}

int main(int argc, char **argv)
{
	char node[32], local[4096], shared[4096], step2[4200];
	ckpt_config *cfg;
	ckpt_ctx *ctx = NULL;
	uint64_t latest = 0;
	int provided, size, rc;

	MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	if (argc < 2 || size != 2) {
		fprintf(stderr, "usage: mpirun -np 2 mpi_vote_race BASE\n");
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	if (provided < MPI_THREAD_MULTIPLE) {
		/* no progress thread, no race to test */
		if (rank == 0)
			printf("SKIP: MPI gives no MPI_THREAD_MULTIPLE\n");
		MPI_Finalize();
		return 0;
	}
	/* Each rank its own node (local directory), one shared directory. */
	snprintf(node, sizeof(node), "node%d", rank);
	snprintf(local, sizeof(local), "%s/%s", argv[1], node);
	snprintf(shared, sizeof(shared), "%s/shared", argv[1]);
	cfg = th_node_config(argv[1], node, (const char *const[]){
		"name", "racejob", "mpi_timeout", "20", "log_level", "0", NULL });
	rc = cfg ? ckpt_open_mpi(&ctx, cfg, MPI_COMM_WORLD) : CKPT_EINVAL;
	ckpt_config_free(cfg);
	if (rc != CKPT_OK) {
		fprintf(stderr, "rank %d: ckpt_open_mpi: %s\n", rank, ckpt_errmsg(NULL));
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	if (rank == 1)
		ckpt_mpi__test_hook = slow_after_post;

	TH_EXPECT(save(ctx, 1) == CKPT_OK && ckpt_wait(ctx, 1) == CKPT_OK, "step 1: %s",
	       ckpt_errmsg(ctx));
	/* A regular file where rank 1's step directory goes: its local save of step 2 fails. */
	snprintf(step2, sizeof(step2), "%s/racejob/step-00000000000000000002", local);
	if (rank == 1)
		TH_EXPECT(th_sh("touch '%s'", step2) == 0, "create %s", step2);
	MPI_Barrier(MPI_COMM_WORLD);
	rc = save(ctx, 2);
	TH_EXPECT(rc < 0, "the save of step 2 returned %d although rank 1's local save failed", rc);
	rc = ckpt_wait(ctx, 2);
	TH_EXPECT(rc < 0, "step 2 committed although rank 1 voted a failure (%d)", rc);
	MPI_Barrier(MPI_COMM_WORLD);
	TH_EXPECT(th_sh("test -e '%s/racejob/step-00000000000000000002/MANIFEST'", shared) != 0,
	       "step 2 has a MANIFEST: rank 1's failure was counted as a success");
	if (rank == 1)
		TH_EXPECT(th_sh("rm -f '%s'", step2) == 0, "remove %s", step2);
	MPI_Barrier(MPI_COMM_WORLD);
	/* The engine is sane afterwards: the next step commits everywhere. */
	TH_EXPECT(save(ctx, 3) == CKPT_OK && ckpt_wait(ctx, 3) == CKPT_OK, "step 3: %s",
	       ckpt_errmsg(ctx));
	TH_EXPECT(ckpt_latest(ctx, &latest) == CKPT_OK && latest == 3, "latest %llu",
	       (unsigned long long)latest);
	ckpt_close(ctx); /* rank 0 reports its failed step 2 here: that is expected */
	ckpt_mpi__test_hook = NULL;
	MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	if (rank == 0)
		printf("vote race: %s\n", failures ? "FAILED" : "a failed save stays a failure");
	MPI_Finalize();
	return failures ? 1 : 0;
}
