/* SPDX-License-Identifier: MIT */
/* One rank of the MPI tests (driven by tests/test_mpi.sh): save, verify, mismatch, fail-one, kill. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"
#include "ckpt_mpi.h"
#include "harness.h"

static int rank, size, failures;

#define BIG (3u << 20)
#define SMALL 12345u

/* The bytes rank r saves at step s: real weights shifted by (s, r), so every shard differs. */
static void make_data(uint64_t s, int r, unsigned char *big, unsigned char *small)
{
	static unsigned char *real;
	static size_t nreal;

	if (!real) {
		real = malloc(BIG + 4096);
		nreal = th_real_data("weights-fp32.bin", real, BIG + 4096);
		if (nreal < BIG + 4096) {
			th_fill(real, BIG + 4096, 7);
			nreal = BIG + 4096;
		}
	}
	memcpy(big, real + (s * 131 + (uint64_t)r * 17) % 4096, BIG);
	big[0] = (unsigned char)s;
	big[1] = (unsigned char)r;
	th_fill(small, SMALL, s * 1000 + (uint64_t)r);
}

static ckpt_ctx *open_ctx(const char *base, const char *fault)
{
	const char *ro = getenv("TEST_SHARED_RANK1");
	ckpt_config *cfg;
	ckpt_ctx *ctx = NULL;
	char node[32];
	int rc;

	/* Two ranks per "node": ranks of one node share a local directory. */
	snprintf(node, sizeof(node), "node%d", rank / 2);
	cfg = th_node_config(base, node, (const char *const[]){
		"name", "mpijob", "chunk_size", "256K", "keep_shared", "0", "keep_local", "10",
		"mpi_timeout", "20", NULL });
	if (!cfg)
		MPI_Abort(MPI_COMM_WORLD, 2);
	if (rank == 1 && ro)
		ckpt_config_set(cfg, "shared_dir", ro);
	if (fault)
		ckpt_config_set(cfg, "fault_kill_at", fault);
	if (getenv("TEST_MAX_PENDING"))
		ckpt_config_set(cfg, "max_pending", getenv("TEST_MAX_PENDING"));
	if (getenv("TEST_STAGE_BYTES")) /* snapshot mode */
		ckpt_config_set(cfg, "stage_bytes", getenv("TEST_STAGE_BYTES"));
	rc = ckpt_open_mpi(&ctx, cfg, MPI_COMM_WORLD);
	TH_EXPECT(rc == CKPT_OK, "ckpt_open_mpi: %s: %s", ckpt_strerror(rc), ckpt_errmsg(NULL));
	ckpt_config_free(cfg);
	if (rc)
		MPI_Abort(MPI_COMM_WORLD, 2);
	return ctx;
}

static int save_step(ckpt_ctx *ctx, uint64_t s)
{
	unsigned char *big = malloc(BIG + 1), *small = malloc(SMALL);
	ckpt_region r[2];
	int rc;

	/* +1: an unaligned buffer takes the bounce path */
	make_data(s, rank, big + 1, small);
	r[0] = (ckpt_region){ "weights", big + 1, BIG };
	r[1] = (ckpt_region){ "rng", small, SMALL };
	if (getenv("TEST_SAVE_STAGED")) {
		/* snapshot mode's copy-free API: the data is written into staging memory */
		void *a = NULL, *b = NULL;

		rc = ckpt_stage_alloc(ctx, BIG, &a);
		if (rc == 0 && (rc = ckpt_stage_alloc(ctx, SMALL, &b)) < 0)
			ckpt_stage_free(ctx, a);
		if (rc == 0) {
			memcpy(a, big + 1, BIG);
			memcpy(b, small, SMALL);
			r[0].data = a;
			r[1].data = b;
			rc = ckpt_save_staged(ctx, s, r, 2); /* a and b are the library's now */
		}
	} else {
		rc = ckpt_save(ctx, s, r, 2);
	}
	/* in snapshot mode the buffers are freed while the step is still staged */
	free(big);
	free(small);
	return rc;
}

/* Load rank r's shard of step s and compare with what it saved. */
static void check_step(ckpt_ctx *ctx, uint64_t s, int r)
{
	unsigned char *big = malloc(BIG), *small = malloc(SMALL);
	unsigned char *want = malloc(BIG), *wsmall = malloc(SMALL);
	size_t sz = 0;
	int rc;

	make_data(s, r, want, wsmall);
	rc = ckpt_region_size_rank(ctx, s, (uint32_t)r, "weights", &sz);
	TH_EXPECT(rc == 0 && sz == BIG, "region size of rank %d step %llu: %d %s", r,
	       (unsigned long long)s, rc, ckpt_errmsg(ctx));
	rc = ckpt_load_rank(ctx, s, (uint32_t)r, "weights", big, BIG);
	TH_EXPECT(rc == 0, "load weights of rank %d step %llu: %s", r, (unsigned long long)s,
	       ckpt_errmsg(ctx));
	TH_EXPECT(rc || !memcmp(big, want, BIG), "weights of rank %d step %llu differ", r,
	       (unsigned long long)s);
	rc = ckpt_load_rank(ctx, s, (uint32_t)r, "rng", small, SMALL);
	TH_EXPECT(rc == 0 && !memcmp(small, wsmall, SMALL), "rng of rank %d step %llu: %s", r,
	       (unsigned long long)s, ckpt_errmsg(ctx));
	free(big);
	free(small);
	free(want);
	free(wsmall);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 2 ? argv[2] : "", *base = argc > 1 ? argv[1] : "/tmp";
	const char *lvl = getenv("TEST_MPI_THREAD");
	int provided, rc;
	ckpt_ctx *ctx;
	uint64_t latest = 0;

	MPI_Init_thread(&argc, &argv, lvl && !strcmp(lvl, "multiple") ? MPI_THREAD_MULTIPLE :
				      MPI_THREAD_SINGLE, &provided);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);

	if (!strcmp(mode, "save")) {
		/* save steps 1..N, each committed on every rank, then read every rank's shard */
		uint64_t n = strtoull(argv[3], NULL, 10);
		int st;

		ctx = open_ctx(base, NULL);
		for (uint64_t s = 1; s <= n; s++) {
			rc = save_step(ctx, s);
			TH_EXPECT(rc == 0, "save %llu: %s", (unsigned long long)s, ckpt_errmsg(ctx));
			rc = ckpt_wait(ctx, s);
			TH_EXPECT(rc == 0, "wait %llu: %s", (unsigned long long)s, ckpt_errmsg(ctx));
			TH_EXPECT(ckpt_poll(ctx, s, &st) == 0 && st == CKPT_STATE_COMMITTED, "state %d",
			       st);
		}
		rc = ckpt_latest(ctx, &latest);
		TH_EXPECT(rc == 0 && latest == n, "latest %llu rc %d", (unsigned long long)latest, rc);
		check_step(ctx, n, rank);
		check_step(ctx, n, (rank + 1) % size);
		TH_EXPECT(ckpt_close(ctx) == 0, "close");
	} else if (!strcmp(mode, "burst")) {
		/* save N steps back to back (backpressure and progress without ckpt_wait) */
		uint64_t n = strtoull(argv[3], NULL, 10);

		ctx = open_ctx(base, NULL);
		for (uint64_t s = 1; s <= n; s++) {
			rc = save_step(ctx, s);
			TH_EXPECT(rc == 0, "save %llu: %s", (unsigned long long)s, ckpt_errmsg(ctx));
		}
		rc = ckpt_wait(ctx, CKPT_STEP_ALL);
		TH_EXPECT(rc == 0, "wait: %s", ckpt_errmsg(ctx));
		rc = ckpt_latest(ctx, &latest);
		TH_EXPECT(rc == 0 && latest == n, "latest %llu rc %d", (unsigned long long)latest, rc);
		check_step(ctx, n, rank);
		TH_EXPECT(ckpt_close(ctx) == 0, "close");
	} else if (!strcmp(mode, "verify")) {
		/* a new job: the newest step complete on all ranks is in [lo, hi] and bit-exact */
		uint64_t lo = strtoull(argv[3], NULL, 10), hi = strtoull(argv[4], NULL, 10);
		uint32_t nr = 0;

		ctx = open_ctx(base, NULL);
		TH_EXPECT(ckpt_wait(ctx, CKPT_STEP_ALL) == 0, "re-drain: %s", ckpt_errmsg(ctx));
		rc = ckpt_latest(ctx, &latest);
		TH_EXPECT(rc == 0 && latest >= lo && latest <= hi, "latest %llu (rc %d) not in [%llu,%llu]",
		       (unsigned long long)latest, rc, (unsigned long long)lo, (unsigned long long)hi);
		if (rc == 0) {
			check_step(ctx, latest, rank);
			check_step(ctx, latest, (rank + 1) % size);
			TH_EXPECT(ckpt_step_nranks(ctx, latest, &nr) == 0 && nr == (uint32_t)size,
			       "nranks %u", nr);
		}
		if (rank == 0)
			printf("verify: latest step %llu\n", (unsigned long long)latest);
		TH_EXPECT(ckpt_close(ctx) == 0, "close");
	} else if (!strcmp(mode, "mismatch")) {
		/* ranks pass different steps: an error everywhere and nothing on disk */
		ctx = open_ctx(base, NULL);
		rc = save_step(ctx, 100 + (uint64_t)(rank % 2));
		TH_EXPECT(rc == CKPT_EINVAL, "mismatched save returned %d", rc);
		TH_EXPECT(strstr(ckpt_errmsg(ctx), "disagree") != NULL, "message: %s", ckpt_errmsg(ctx));
		MPI_Barrier(MPI_COMM_WORLD);
		TH_EXPECT(th_sh("ls -d '%s'/shared/mpijob/step-*0010[01] '%s'/node*/mpijob/step-*0010[01] "
			     ">/dev/null 2>&1", base, base) != 0, "a step directory was written");
		/* one rank passes bad arguments: every rank returns an error, none hangs */
		{
			ckpt_region dup[2] = { { "a", "x", 1 }, { rank == 1 ? "a" : "b", "y", 1 } };

			rc = ckpt_save(ctx, 200, dup, 2);
			TH_EXPECT(rc == CKPT_EINVAL, "save with a duplicate name on rank 1 returned %d", rc);
			TH_EXPECT(rank == 1 || strstr(ckpt_errmsg(ctx), "rank 1") != NULL,
			       "message does not name rank 1: %s", ckpt_errmsg(ctx));
		}
		/* and the job goes on: the next save works everywhere */
		TH_EXPECT(save_step(ctx, 300) == 0 && ckpt_wait(ctx, 300) == 0, "save after: %s",
		       ckpt_errmsg(ctx));
		TH_EXPECT(ckpt_close(ctx) == 0, "close");
	} else if (!strcmp(mode, "failone")) {
		/* rank 1's view of the shared volume turns read-only: step 2 fails on every rank */
		const char *ro = getenv("TEST_SHARED_RANK1");

		ctx = open_ctx(base, NULL);
		TH_EXPECT(save_step(ctx, 1) == 0 && ckpt_wait(ctx, 1) == 0, "step 1: %s",
		       ckpt_errmsg(ctx));
		MPI_Barrier(MPI_COMM_WORLD);
		if (rank == 1)
			TH_EXPECT(th_sh("mount -o remount,bind,ro '%s'", ro) == 0, "remount ro");
		MPI_Barrier(MPI_COMM_WORLD);
		rc = save_step(ctx, 2);
		TH_EXPECT(rc == 0, "local save of step 2: %s", ckpt_errmsg(ctx));
		rc = ckpt_wait(ctx, 2);
		TH_EXPECT(rc < 0, "step 2 committed although rank 1 could not drain");
		TH_EXPECT(strstr(ckpt_errmsg(ctx), "rank 1") != NULL, "message does not name rank 1: %s",
		       ckpt_errmsg(ctx));
		if (rank == 0)
			printf("failone: every rank got: %s\n", ckpt_errmsg(ctx));
		rc = ckpt_latest(ctx, &latest);
		/* step 2 is complete locally on every rank: latest may name it (local copies) */
		TH_EXPECT(rc == 0 && (latest == 1 || latest == 2), "latest %llu", (unsigned long long)latest);
		TH_EXPECT(th_sh("test -f '%s'/shared/mpijob/step-00000000000000000002/MANIFEST", base) != 0,
		       "step 2 has a MANIFEST");
		check_step(ctx, 1, rank);
		MPI_Barrier(MPI_COMM_WORLD);
		if (rank == 1)
			TH_EXPECT(th_sh("mount -o remount,bind,rw '%s'", ro) == 0, "remount rw");
		MPI_Barrier(MPI_COMM_WORLD);
		rc = ckpt_close(ctx);
		TH_EXPECT(rc < 0, "close reports the failed step (%d)", rc);
	} else if (!strcmp(mode, "kill")) {
		/* rank K dies at POINT while step S drains or commits (mpirun then ends the job) */
		const char *point = argv[3];
		int k = atoi(argv[4]);
		uint64_t s = strtoull(argv[5], NULL, 10);

		ctx = open_ctx(base, rank == k ? point : NULL);
		rc = save_step(ctx, s);
		TH_EXPECT(rc == 0, "save %llu: %s", (unsigned long long)s, ckpt_errmsg(ctx));
		ckpt_wait(ctx, s);
		/* the killed rank never gets here; the others may, before mpirun stops them */
		ckpt_close(ctx);
	} else {
		fprintf(stderr, "usage: mpi_worker BASE save N|burst N|verify LO HI|mismatch|failone|"
				"kill POINT RANK STEP\n");
		failures++;
	}
	MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	MPI_Finalize();
	return failures ? 1 : 0;
}
