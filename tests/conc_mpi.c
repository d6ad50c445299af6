/* SPDX-License-Identifier: MIT */
/* Issue 12 (e), one rank of a job whose world size changes 4 -> 2 -> 4 (tests/test_conc.sh).
 *
 *   mpirun -np 4 conc_mpi BASE save4     steps 1 and 2, 4 ranks
 *   mpirun -np 2 conc_mpi BASE resume2   latest must be 2; own shard refused; reshard; step 3
 *   mpirun -np 4 conc_mpi BASE resume4   latest must be 3; own shard refused; reshard
 *
 * The model state of step s is one global array G_s (real training data, CONC_MPI_BYTES bytes);
 * a job of n ranks saves it as n equal slices, rank r the r-th, as region "w". Ranks 2k and 2k+1
 * share a "node" (local_dir BASE/node<k>), so a node keeps local copies of another world size's
 * shards under the same rank numbers. Every rank prints "ok - ..." or "FAIL - ..." per promise;
 * rank 0 prints the figures; the exit status is non-zero when any rank saw a broken promise. */
#include <mpi.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "ckpt_mpi.h"
#include "harness.h"

static int rank, size, failures;
static size_t total;

static void check(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int cond, const char *fmt, ...)
{
	va_list ap;
	char line[1024];

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	printf("  rank %d/%d: %s - %s\n", rank, size, cond ? "ok" : "FAIL", line);
	fflush(stdout);
	failures += !cond;
}

/* G_s, freshly allocated. */
static uint8_t *global(uint64_t s)
{
	uint8_t *g = malloc(total);

	if (!g)
		MPI_Abort(MPI_COMM_WORLD, 2);
	th_make_data(g, total, 1000 + s);
	return g;
}

static ckpt_ctx *open_job(const char *base)
{
	char node[32];
	ckpt_config *cfg;
	ckpt_ctx *ctx = NULL;
	int rc;

	snprintf(node, sizeof(node), "node%d", rank / 2);
	cfg = th_node_config(base, node, (const char *const[]){
		"name", "job", "keep_local", "10", "keep_shared", "0", "mpi_timeout", "60",
		"log_level", "0", NULL });
	rc = cfg ? ckpt_open_mpi(&ctx, cfg, MPI_COMM_WORLD) : CKPT_EINVAL;
	ckpt_config_free(cfg);
	if (rc != CKPT_OK) {
		fprintf(stderr, "rank %d: ckpt_open_mpi: %s: %s\n", rank, ckpt_strerror(rc),
			ckpt_errmsg(NULL));
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	return ctx;
}

/* Save this rank's slice of G_s as step s. */
static int save_slice(ckpt_ctx *ctx, uint64_t s)
{
	uint8_t *g = global(s);
	size_t n = total / (size_t)size;
	ckpt_region r = { "w", g + (size_t)rank * n, n };
	int rc = ckpt_save(ctx, s, &r, 1);

	free(g);
	return rc;
}

/* ckpt_latest, checked against `expect`; returns what it said (expect when it failed). */
static uint64_t check_latest(ckpt_ctx *ctx, uint64_t expect, int *rc_out)
{
	uint64_t step = 0;
	int rc = ckpt_latest(ctx, &step);

	check(rc == CKPT_OK && step == expect, "ckpt_latest of a %d-rank job names step %" PRIu64
	      ", the newest committed one (got %s, step %" PRIu64 "%s%s)", size, expect,
	      ckpt_strerror(rc), rc ? 0 : step, rc ? ": " : "", rc ? ckpt_errmsg(ctx) : "");
	*rc_out = rc;
	return rc == CKPT_OK ? step : expect;
}

/* Reading one's own shard of step s (saved by `saved_by` ranks) as if nothing changed: the size
 * the library reports, then a load of that size. Must fail, loudly. Returns the code. */
static int check_own_shard_refused(ckpt_ctx *ctx, uint64_t s, int saved_by)
{
	size_t n = total / (size_t)size, sz = n;
	uint8_t *buf;
	int rc, src;

	src = ckpt_region_size(ctx, s, "w", &sz);
	if (src == CKPT_OK && sz != n)
		n = sz; /* a user sizes the buffer from what the library says */
	if (!(buf = malloc(n ? n : 1)))
		MPI_Abort(MPI_COMM_WORLD, 2);
	rc = ckpt_load(ctx, s, "w", buf, n);
	printf("  rank %d/%d: own shard of %d-rank step %" PRIu64 ": ckpt_region_size -> %d (%s), "
	       "ckpt_load -> %d (%s): %s\n", rank, size, saved_by, s, src, ckpt_strerror(src), rc,
	       ckpt_strerror(rc), rc ? ckpt_errmsg(ctx) : "(silently read a shard of another "
	       "world size)");
	check(rc != CKPT_OK, "reading its own shard of step %" PRIu64 " (saved by %d ranks) fails "
	      "(a new pinned code after CKPT_EBUSY is wanted; got %d)", s, saved_by, rc);
	check(src != CKPT_OK || sz == total / (size_t)size, "ckpt_region_size does not hand out "
	      "the size of another world size's shard as its own (got %s, %zu bytes)",
	      ckpt_strerror(src), sz);
	free(buf);
	return rc;
}

/* This rank's slice of G_s rebuilt from the shards of a step saved by `saved_by` ranks, through
 * ckpt_step_nranks and ckpt_load_rank; bit-exact against G_s. */
static void check_reshard(ckpt_ctx *ctx, uint64_t s, uint32_t saved_by)
{
	size_t mine = total / (size_t)size, theirs = total / saved_by;
	size_t lo = (size_t)rank * mine, hi = lo + mine;
	uint8_t *g = global(s), *out = calloc(1, mine), *tmp = malloc(theirs);
	uint32_t nr = 0;
	int rc = ckpt_step_nranks(ctx, s, &nr), bad = 0;

	check(rc == CKPT_OK && nr == saved_by, "ckpt_step_nranks(step %" PRIu64 ") = %u (got %s, "
	      "%u)", s, saved_by, ckpt_strerror(rc), nr);
	for (uint32_t q = 0; q < saved_by && out && tmp; q++) {
		size_t qlo = (size_t)q * theirs, qhi = qlo + theirs;
		size_t a = qlo > lo ? qlo : lo, b = qhi < hi ? qhi : hi;

		if (a >= b)
			continue; /* rank q's shard holds nothing of mine */
		if ((rc = ckpt_load_rank(ctx, s, q, "w", tmp, theirs)) != CKPT_OK) {
			printf("  rank %d/%d: ckpt_load_rank(step %" PRIu64 ", rank %u): %s: %s\n",
			       rank, size, s, q, ckpt_strerror(rc), ckpt_errmsg(ctx));
			bad = 1;
			continue;
		}
		memcpy(out + (a - lo), tmp + (a - qlo), b - a);
	}
	check(!bad && out && !memcmp(out, g + lo, mine), "ckpt_load_rank reshards step %" PRIu64
	      " from %u ranks to %d, bit-exact", s, saved_by, size);
	free(g);
	free(out);
	free(tmp);
}

int main(int argc, char **argv)
{
	const char *base = argc > 1 ? argv[1] : NULL, *mode = argc > 2 ? argv[2] : "";
	int provided, rc = CKPT_OK, latest_rc = CKPT_OK, own_rc = CKPT_OK, all;
	uint64_t latest = 0;
	ckpt_ctx *ctx;

	MPI_Init_thread(&argc, &argv, MPI_THREAD_SINGLE, &provided);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	setvbuf(stdout, NULL, _IOLBF, 0);
	th_clean_environment();
	total = (size_t)strtoull(getenv("CONC_MPI_BYTES") ? getenv("CONC_MPI_BYTES") : "1048576",
				 NULL, 10) / 4 * 4;
	if (!base || total == 0) {
		if (rank == 0)
			fprintf(stderr, "usage: conc_mpi BASE save4|resume2|resume4\n");
		MPI_Finalize();
		return 64;
	}
	ctx = open_job(base);
	if (!strcmp(mode, "save4") && size == 4) {
		for (uint64_t s = 1; s <= 2; s++) {
			rc = save_slice(ctx, s);
			check(rc == CKPT_OK, "4 ranks save step %" PRIu64 " (%s)", s,
			      ckpt_strerror(rc));
		}
		rc = ckpt_wait(ctx, CKPT_STEP_ALL);
		check(rc == CKPT_OK, "steps 1 and 2 committed (%s)", ckpt_strerror(rc));
		latest = check_latest(ctx, 2, &latest_rc);
	} else if (!strcmp(mode, "resume2") && size == 2) {
		latest = check_latest(ctx, 2, &latest_rc);
		own_rc = check_own_shard_refused(ctx, latest, 4);
		check_reshard(ctx, latest, 4);
		rc = save_slice(ctx, 3);
		if (rc == CKPT_OK)
			rc = ckpt_wait(ctx, 3);
		check(rc == CKPT_OK, "2 ranks save and commit step 3 (%s)", ckpt_strerror(rc));
	} else if (!strcmp(mode, "resume4") && size == 4) {
		latest = check_latest(ctx, 3, &latest_rc);
		own_rc = check_own_shard_refused(ctx, 3, 2);
		check_reshard(ctx, 3, 2);
		/* control: a step of this job's own world size reads as it always did */
		{
			uint8_t *g = global(2), *buf = malloc(total / 4);

			rc = buf ? ckpt_load(ctx, 2, "w", buf, total / 4) : CKPT_ENOMEM;
			check(rc == CKPT_OK && !memcmp(buf, g + (size_t)rank * (total / 4), total / 4),
			      "its own shard of 4-rank step 2 loads bit-exact (%s)",
			      ckpt_strerror(rc));
			free(g);
			free(buf);
		}
	} else {
		if (rank == 0)
			fprintf(stderr, "conc_mpi: mode %s needs %s ranks\n", mode,
				!strcmp(mode, "resume2") ? "2" : "4");
		failures++;
	}
	rc = ckpt_close(ctx);
	check(rc == CKPT_OK, "ckpt_close (%s)", ckpt_strerror(rc));
	MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	if (rank == 0)
		printf("figures: worldsize %s ranks=%d latest_rc=%d latest=%" PRIu64
		       " own_shard_rc=%d broken_promises=%d\n", mode, size, latest_rc,
		       latest_rc ? 0 : latest, own_rc, all);
	MPI_Finalize();
	return all ? 1 : 0;
}
