/* SPDX-License-Identifier: MIT */
/* Resume a data-sharded job with another number of ranks: train on 4 ranks, resume on 2, then
 * on 4 again, and end bit-exact with a run that never stopped (examples/reshard/run.sh).
 *
 *   mpirun -np N reshard DIR STEPS [RESUME]
 *
 * The model is one array of NPARAM floats, split into N equal slices, rank r holding the r-th
 * ("w"); one training step updates each element from its own value only, so a run that stops
 * and resumes with any number of ranks must reach exactly the floats of a run that never
 * stopped. At start: ckpt_latest names the newest committed step whatever number of ranks saved
 * it. ckpt_step_nranks tells how many did; when that is this job's size, ckpt_load reads this
 * rank's slice; otherwise ckpt_load would fail with CKPT_ENRANKS, and the slice is rebuilt from
 * the saved ranks' shards that overlap it, read with ckpt_load_rank. Then the job trains up to
 * step STEPS, saving every step, and checks its final slice against a run from scratch (and, with
 * RESUME, that it resumed from that step: a job that silently started over would also end
 * bit-exact). */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "ckpt_mpi.h"

#define NPARAM 48000u /* divisible by 1, 2, 3, 4, 5, 6, 8 */

static int rank, size;

static void die(const char *what, int rc, ckpt_ctx *ctx)
{
	fprintf(stderr, "rank %d: %s: %s: %s\n", rank, what, ckpt_strerror(rc),
		ckpt_errmsg(ctx));
	MPI_Abort(MPI_COMM_WORLD, 1);
}

/* Element i of the model before step 1, and one training step of it. */
static float initial(size_t i)
{
	return (float)((i * 2654435761u) % 1000u) / 1000.0f - 0.5f;
}

static float train(float w, uint64_t step)
{
	return w * 0.999f + 0.001f * (float)(step % 7u) - 0.0005f * w * w;
}

/* This rank's slice [lo, lo+n) at `step` (0: the initial one), this rank's part of the model of
 * a step saved by `saved_by` ranks: the shards of the saved ranks that overlap the slice. */
static void reshard(ckpt_ctx *ctx, uint64_t step, uint32_t saved_by, float *out, size_t lo,
		    size_t n)
{
	size_t theirs = NPARAM / saved_by;
	float *tmp = malloc(theirs * sizeof(*tmp));
	int rc;

	if (!tmp)
		die("malloc", CKPT_ENOMEM, NULL);
	for (uint32_t q = 0; q < saved_by; q++) {
		size_t qlo = (size_t)q * theirs, a = qlo > lo ? qlo : lo;
		size_t b = qlo + theirs < lo + n ? qlo + theirs : lo + n;

		if (a >= b)
			continue; /* rank q's shard holds nothing of this rank's slice */
		if ((rc = ckpt_load_rank(ctx, step, q, "w", tmp, theirs * sizeof(*tmp))) != CKPT_OK)
			die("ckpt_load_rank", rc, ctx);
		memcpy(out + (a - lo), tmp + (a - qlo), (b - a) * sizeof(*out));
	}
	free(tmp);
}

int main(int argc, char **argv)
{
	ckpt_config *cfg = NULL;
	ckpt_ctx *ctx = NULL;
	char local[4096], shared[4096];
	uint64_t steps, start = 0, s;
	uint32_t saved_by = 0;
	size_t n, lo;
	float *w;
	int rc, bad = 0, all_bad;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	if ((argc != 3 && argc != 4) || NPARAM % (unsigned)size) {
		if (rank == 0)
			fprintf(stderr, "usage: mpirun -np N %s DIR STEPS [RESUME] (N divides %u)\n",
				argv[0], NPARAM);
		MPI_Finalize();
		return 64;
	}
	steps = strtoull(argv[2], NULL, 10);
	n = NPARAM / (size_t)size;
	lo = (size_t)rank * n;
	if (!(w = malloc(n * sizeof(*w))))
		die("malloc", CKPT_ENOMEM, NULL);
	/* each pair of ranks shares a node (a local directory): a node keeps local copies of
	 * another world size's shards under the same rank numbers */
	snprintf(local, sizeof(local), "%s/node%d", argv[1], rank / 2);
	snprintf(shared, sizeof(shared), "%s/shared", argv[1]);
	if ((rc = ckpt_config_new(&cfg)) != CKPT_OK ||
	    (rc = ckpt_config_set(cfg, "local_dir", local)) != CKPT_OK ||
	    (rc = ckpt_config_set(cfg, "shared_dir", shared)) != CKPT_OK ||
	    (rc = ckpt_config_set(cfg, "name", "reshard")) != CKPT_OK ||
	    (rc = ckpt_config_set(cfg, "log_level", "0")) != CKPT_OK ||
	    (rc = ckpt_open_mpi(&ctx, cfg, MPI_COMM_WORLD)) != CKPT_OK)
		die("ckpt_open_mpi", rc, NULL);
	ckpt_config_free(cfg);

	rc = ckpt_latest(ctx, &start); /* collective: every rank gets the same step */
	if (rc == CKPT_ENOENT) {
		start = 0;
		for (size_t i = 0; i < n; i++)
			w[i] = initial(lo + i);
	} else if (rc != CKPT_OK) {
		die("ckpt_latest", rc, ctx);
	} else if ((rc = ckpt_step_nranks(ctx, start, &saved_by)) != CKPT_OK) {
		die("ckpt_step_nranks", rc, ctx);
	} else if (saved_by == (uint32_t)size) {
		if ((rc = ckpt_load(ctx, start, "w", w, n * sizeof(*w))) != CKPT_OK)
			die("ckpt_load", rc, ctx);
	} else {
		/* another world size: this rank's own shard is another part of the model */
		rc = ckpt_load(ctx, start, "w", w, n * sizeof(*w));
		if (rc != CKPT_ENRANKS)
			die("ckpt_load of another world size's step did not say CKPT_ENRANKS", rc, ctx);
		reshard(ctx, start, saved_by, w, lo, n);
	}
	if (rank == 0)
		printf("%d ranks: resumed from step %llu (saved by %u ranks), training to step %llu\n",
		       size, (unsigned long long)start, saved_by, (unsigned long long)steps);
	if (argc == 4 && start != strtoull(argv[3], NULL, 10)) {
		if (rank == 0)
			fprintf(stderr, "expected to resume from step %s\n", argv[3]);
		bad = 1;
	}

	for (s = start + 1; s <= steps; s++) {
		ckpt_region r = { "w", w, n * sizeof(*w) };

		for (size_t i = 0; i < n; i++)
			w[i] = train(w[i], s);
		if ((rc = ckpt_save(ctx, s, &r, 1)) != CKPT_OK)
			die("ckpt_save", rc, ctx);
	}
	if ((rc = ckpt_close(ctx)) != CKPT_OK) /* every step committed */
		die("ckpt_close", rc, NULL);

	/* the same slice from scratch, never stopped: bit-exact or the example failed */
	for (size_t i = 0; i < n; i++) {
		float x = initial(lo + i);

		for (s = 1; s <= steps; s++)
			x = train(x, s);
		bad |= memcmp(&x, &w[i], sizeof(x)) != 0;
	}
	MPI_Allreduce(&bad, &all_bad, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
	if (rank == 0)
		printf("%d ranks: step %llu %s a run that never stopped\n", size,
		       (unsigned long long)steps, all_bad ? "DIFFERS from" : "is bit-exact with");
	free(w);
	MPI_Finalize();
	return all_bad ? 1 : 0;
}
