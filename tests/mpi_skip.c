/* SPDX-License-Identifier: MIT */
/* MPI ranks skip the same superseded steps when the drain falls behind (issue 13), driven by
 * tests/test_mpi_skip.sh:
 *
 *   mpi_skip BASE
 *
 * Every rank saves steps 1..SKIP_STEPS (default 8) back to back, the last rank with a drain that
 * cannot keep up (compress_level 19 on text-like data, drain_threads 1, max_pending 2, stall_wait
 * 0.05), the others with a fast one (incompressible data, stored raw): they have drained and
 * voted the steps that the last rank skips, and must report them skipped too. Each rank waits for
 * its drains, classifies every step (committed, skipped, or failed: a failure is a bug here),
 * and rank 0 compares the ranks' lists. Checked: no ckpt_save waited for a drain (each returns
 * within SKIP_SAVE_LIMIT, default 2 s, on every rank), at least one step was skipped, every rank
 * reports the same committed and skipped steps (and the same `skipped` count of
 * ckpt_drain_lag), no step failed, the newest step is committed, and ckpt_latest finds it on
 * every rank and it loads bit-exact. One line per miss: "target: ... FAIL"; exit 1 on rank 0
 * after a clean MPI_Finalize when any was missed. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "ckpt_mpi.h"
#include "harness.h"

#define MAXSTEPS 64

static int rank, size, failures;

static void target(int ok, const char *fmt, const char *what)
{
	if (!ok) {
		printf("target: rank %d: ", rank);
		printf(fmt, what);
		printf(" FAIL\n");
		failures++;
	}
}

/* Text-like bytes (random words of a 512-word vocabulary): zstd level 19 compresses them well
 * and slowly (many matches to weigh), so the drain falls behind the saves; unique per step and
 * rank. */
static void fill(unsigned char *buf, size_t n, uint64_t seed)
{
	if (rank != size - 1) {
		th_fill(buf, n, seed); /* incompressible: stored raw at once, a fast drain */
		return;
	}
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1, v = 0x12345;
	size_t i = 0;

	while (i < n) {
		unsigned w, len;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w = (unsigned)(x % 512);
		v = w * 0x2545F4914F6CDD1Dull; /* the word's letters, from its number */
		len = 3 + w % 8;
		for (unsigned k = 0; k < len && i < n; k++)
			buf[i++] = (unsigned char)('a' + (v >> (5 * k)) % 26);
		if (i < n)
			buf[i++] = ' ';
	}
}

static double env_d(const char *name, double def)
{
	const char *v = getenv(name);

	return v && *v ? atof(v) : def;
}

int main(int argc, char **argv)
{
	char node[32], cls[MAXSTEPS + 1], *all = NULL;
	size_t big = (size_t)env_d("SKIP_BYTES", 3 << 20);
	int nsteps = (int)env_d("SKIP_STEPS", 8), provided, rc, nskipped = 0, nfailed = 0;
	double limit = env_d("SKIP_SAVE_LIMIT", 2), slowest = 0;
	const char *thr = getenv("TEST_MPI_THREAD") ? getenv("TEST_MPI_THREAD") : "single";
	unsigned char *buf, *back;
	ckpt_config *cfg;
	ckpt_ctx *ctx = NULL;
	ckpt_lag_info lag;
	uint64_t latest = 0;
	unsigned sk[2], skmin = 0, skmax = 0;

	MPI_Init_thread(&argc, &argv, !strcmp(thr, "multiple") ? MPI_THREAD_MULTIPLE :
				      MPI_THREAD_SINGLE, &provided);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	th_clean_environment();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2 || nsteps < 3 || nsteps > MAXSTEPS) {
		fprintf(stderr, "usage: mpi_skip BASE (SKIP_STEPS 3..%d)\n", MAXSTEPS);
		MPI_Finalize();
		return 2;
	}
	snprintf(node, sizeof(node), "node%d", rank);
	/* keep_local 100: every step stays readable for the checks */
	cfg = th_node_config(argv[1], node, (const char *const[]){
		"name", "skip", "compress_level", "19", "drain_threads", "1", "max_pending", "2",
		"stall_wait", "0.05", "keep_local", "100", "mpi_timeout", "30", "log_level", "2",
		NULL });
	if (!cfg || ckpt_open_mpi(&ctx, cfg, MPI_COMM_WORLD) != CKPT_OK) {
		fprintf(stderr, "rank %d: ckpt_open_mpi: %s\n", rank, ckpt_errmsg(NULL));
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	ckpt_config_free(cfg);
	buf = malloc(big);
	back = malloc(big);

	for (int s = 1; s <= nsteps; s++) {
		ckpt_region r = { "weights", buf, big };
		double t;

		fill(buf, big, (uint64_t)s * 1000 + (uint64_t)rank);
		t = MPI_Wtime();
		rc = ckpt_save(ctx, (uint64_t)s, &r, 1);
		t = MPI_Wtime() - t;
		slowest = t > slowest ? t : slowest;
		if (getenv("SKIP_VERBOSE")) {
			ckpt_drain_lag(ctx, &lag);
			printf("rank %d: step %d saved in %.2f s, %u pending, %u skipped\n", rank, s,
			       t, lag.pending, lag.skipped);
		}
		if (rc != CKPT_OK) {
			fprintf(stderr, "rank %d: ckpt_save %d: %s\n", rank, s, ckpt_errmsg(ctx));
			MPI_Abort(MPI_COMM_WORLD, 2);
		}
	}
	printf("figure: skip_np%d_%s rank %d: slowest of %d ckpt_save calls %.2f s\n", size, thr,
	       rank, nsteps, slowest);
	{
		char what[64];

		snprintf(what, sizeof(what), "%.2f s", slowest);
		target(slowest <= limit, "no ckpt_save waited for a drain (slowest %s)", what);
	}
	rc = ckpt_wait(ctx, CKPT_STEP_ALL);
	printf("rank %d: ckpt_wait(all): %s%s%s\n", rank, ckpt_strerror(rc), rc ? ": " : "",
	       rc ? ckpt_errmsg(ctx) : "");
	/* c committed, s skipped, f failed */
	for (int s = 1; s <= nsteps; s++) {
		rc = ckpt_wait(ctx, (uint64_t)s);
		cls[s - 1] = rc == CKPT_OK ? 'c' :
			     rc == CKPT_ENOENT && strstr(ckpt_errmsg(ctx), "skipped") ? 's' : 'f';
		nskipped += cls[s - 1] == 's';
		if (cls[s - 1] == 'f') {
			nfailed++;
			printf("rank %d: step %d: %s: %s\n", rank, s, ckpt_strerror(rc),
			       ckpt_errmsg(ctx));
		}
	}
	cls[nsteps] = '\0';
	ckpt_drain_lag(ctx, &lag);
	printf("figure: skip_np%d_%s rank %d: steps %s (c committed, s skipped), "
	       "ckpt_drain_lag skipped %u\n", size, thr, rank, cls, lag.skipped);
	target(nfailed == 0, "%s", "no step failed");
	target(cls[nsteps - 1] == 'c', "%s", "the newest step is committed");

	/* every rank: the same lists and counts */
	if (rank == 0)
		all = calloc((size_t)size, MAXSTEPS + 1);
	MPI_Gather(cls, MAXSTEPS + 1, MPI_CHAR, all, MAXSTEPS + 1, MPI_CHAR, 0, MPI_COMM_WORLD);
	sk[0] = lag.skipped;
	sk[1] = ~lag.skipped;
	MPI_Allreduce(MPI_IN_PLACE, sk, 2, MPI_UNSIGNED, MPI_MAX, MPI_COMM_WORLD);
	skmax = sk[0];
	skmin = ~sk[1];
	target(skmin == skmax, "%s", "every rank's ckpt_drain_lag counts the same skipped steps");
	target(nskipped > 0, "%s", "the drain fell behind: some step was skipped");
	if (rank == 0)
		for (int r = 1; r < size; r++)
			if (strcmp(all + (size_t)r * (MAXSTEPS + 1), cls)) {
				printf("target: rank %d reports %s, rank 0 %s: the same steps on every "
				       "rank FAIL\n", r, all + (size_t)r * (MAXSTEPS + 1), cls);
				failures++;
			}

	rc = ckpt_latest(ctx, &latest);
	target(rc == CKPT_OK && latest == (uint64_t)nsteps, "%s",
	       "ckpt_latest finds the newest step");
	fill(buf, big, (uint64_t)nsteps * 1000 + (uint64_t)rank);
	if (rc == CKPT_OK) {
		rc = ckpt_load(ctx, latest, "weights", back, big);
		target(rc == CKPT_OK && !memcmp(buf, back, big), "%s",
		       "the newest step loads bit-exact");
	}
	rc = ckpt_close(ctx);
	target(rc == CKPT_OK, "%s", "ckpt_close");
	MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	free(buf);
	free(back);
	free(all);
	MPI_Finalize();
	printf("rank %d: finalized, %d target(s) missed on all ranks\n", rank, failures);
	return rank == 0 && failures ? 1 : 0;
}
