/* SPDX-License-Identifier: MIT */
/* MPI training example: every rank trains its shard of a model, checkpoints with libckpt, resumes
 * from the newest step after a crash, and prints a checksum equal to an uninterrupted run's. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <mpi.h>

#include <ckpt.h>
#include <ckpt_mpi.h>

/*
 * The model: a linear model y = w.x over nranks * n parameters trained with Adam, sharded the way
 * tensor/ZeRO parallelism shards one: rank r owns parameters [r*n, (r+1)*n) and their two Adam
 * moments. A step draws a sparse sample from a random stream that every rank replicates, each
 * rank computes the partial prediction of the parameters it owns, the partials are exchanged
 * (MPI_Allgather) and summed in rank order (bit-identical on every rank and in every run), and
 * each rank updates its own shard. Checkpoint: each rank saves its shard and the stream state.
 */
struct shard {
	size_t n;        /* parameters on this rank */
	size_t first;    /* global index of the first one */
	size_t total;    /* parameters on all ranks */
	float *w, *m, *v;
	uint64_t rng;    /* the sample stream, the same on every rank */
	uint64_t step;
	double *partial; /* one partial prediction per rank */
};

static int rank, nranks;

#define SAMPLE 64

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what, int rc, const ckpt_ctx *ctx)
{
	fprintf(stderr, "mpi_train: rank %d: %s: %s (%s)\n", rank, what, ckpt_strerror(rc),
		ckpt_errmsg(ctx));
	MPI_Abort(MPI_COMM_WORLD, 1);
}

static float frand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (float)((*s >> 11) * (1.0 / 9007199254740992.0)) - 0.5f;
}

static void shard_init(struct shard *sh, size_t n)
{
	uint64_t init = 1000003u * (uint64_t)(rank + 1);

	sh->n = n;
	sh->first = (size_t)rank * n;
	sh->total = (size_t)nranks * n;
	sh->w = calloc(n, sizeof(float));
	sh->m = calloc(n, sizeof(float));
	sh->v = calloc(n, sizeof(float));
	sh->partial = calloc((size_t)nranks, sizeof(double));
	sh->rng = 42;
	sh->step = 0;
	if (!sh->w || !sh->m || !sh->v || !sh->partial) {
		fprintf(stderr, "mpi_train: rank %d: out of memory\n", rank);
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	for (size_t i = 0; i < n; i++)
		sh->w[i] = 0.01f * frand(&init);
}

static void train_step(struct shard *sh)
{
	const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
	size_t idx[SAMPLE];
	float x[SAMPLE];
	double partial = 0, target = 0, pred = 0;
	float err;

	sh->step++;
	for (int k = 0; k < SAMPLE; k++) {
		idx[k] = (size_t)((frand(&sh->rng) + 0.5f) * (float)(sh->total - 1));
		x[k] = frand(&sh->rng);
		target += sin((double)idx[k]) * x[k];
		if (idx[k] >= sh->first && idx[k] < sh->first + sh->n)
			partial += (double)sh->w[idx[k] - sh->first] * x[k];
	}
	/* gather, then sum in rank order: a reduction whose result does not depend on the MPI
	 * library's choice of algorithm, so every run computes exactly the same bits */
	MPI_Allgather(&partial, 1, MPI_DOUBLE, sh->partial, 1, MPI_DOUBLE, MPI_COMM_WORLD);
	for (int r = 0; r < nranks; r++)
		pred += sh->partial[r];
	err = (float)(pred - target);
	for (int k = 0; k < SAMPLE; k++) {
		size_t i;
		float g = 2 * err * x[k];

		if (idx[k] < sh->first || idx[k] >= sh->first + sh->n)
			continue;
		i = idx[k] - sh->first;
		sh->m[i] = b1 * sh->m[i] + (1 - b1) * g;
		sh->v[i] = b2 * sh->v[i] + (1 - b2) * g * g;
		sh->w[i] -= lr * sh->m[i] / (sqrtf(sh->v[i]) + eps);
	}
	/* weight decay: every byte of the shard changes every step, as in real training */
	for (size_t i = 0; i < sh->n; i++)
		sh->w[i] *= 0.99999f;
}

/* FNV-1a over the shard, so that a checksum of all shards names the whole model state. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211u;
	return h;
}

static uint64_t checksum(const struct shard *sh)
{
	uint64_t h = 14695981039346656037u, mine, *all = NULL;

	mine = fnv(h, sh->w, sh->n * sizeof(float));
	mine = fnv(mine, sh->m, sh->n * sizeof(float));
	mine = fnv(mine, sh->v, sh->n * sizeof(float));
	mine = fnv(mine, &sh->rng, sizeof(sh->rng));
	if (rank == 0 && !(all = malloc((size_t)nranks * sizeof(*all))))
		MPI_Abort(MPI_COMM_WORLD, 1);
	MPI_Gather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
	if (rank == 0)
		h = fnv(h, all, (size_t)nranks * sizeof(*all)); /* in rank order */
	free(all);
	return h;
}

/* local_dir is scratch (node-local NVMe): create it when missing. shared_dir is the persistent
 * volume and must already be there: the library refuses to create a missing mount point. */
static void make_local_dir(const char *dir)
{
	char path[4096];

	if (!dir || snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path))
		return;
	for (char *p = path + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			mkdir(path, 0755);
			*p = '/';
		}
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		fprintf(stderr, "mpi_train: rank %d: mkdir %s: %s\n", rank, path, strerror(errno));
}

static ckpt_ctx *open_ckpt(void)
{
	ckpt_config *cfg = NULL;
	ckpt_ctx *ctx = NULL;
	int rc;

	/* CKPT_LOCAL_DIR, CKPT_SHARED_DIR, CKPT_NAME (and any other key) come from the
	 * environment: the job script sets them once for ckpt-restore and for this program */
	if ((rc = ckpt_config_new(&cfg)))
		die("ckpt_config_new", rc, NULL);
	make_local_dir(ckpt_config_get(cfg, "local_dir"));
	rc = ckpt_open_mpi(&ctx, cfg, MPI_COMM_WORLD);
	ckpt_config_free(cfg);
	if (rc)
		die("ckpt_open_mpi", rc, NULL);
	return ctx;
}

static void save(ckpt_ctx *ctx, struct shard *sh)
{
	const ckpt_region r[4] = {
		{ "weights", sh->w, sh->n * sizeof(float) },
		{ "adam.m", sh->m, sh->n * sizeof(float) },
		{ "adam.v", sh->v, sh->n * sizeof(float) },
		{ "rng", &sh->rng, sizeof(sh->rng) },
	};
	double t = now();
	int rc;

	if ((rc = ckpt_save(ctx, sh->step, r, 4)))
		die("ckpt_save", rc, ctx);
	t = now() - t;
	MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
	if (rank == 0)
		printf("step %" PRIu64 ": saved (%.1f MiB per rank), ckpt_save blocked %.1f ms\n",
		       sh->step, 3.0 * (double)(sh->n * sizeof(float)) / 1048576.0, t * 1e3);
}

/* Resume from the newest complete step, if there is one. Every rank gets the same answer from
 * ckpt_latest and reads its own shard: from local NVMe when this node still holds it, otherwise
 * from the shared volume. */
static void resume(ckpt_ctx *ctx, struct shard *sh)
{
	const char *names[3] = { "weights", "adam.m", "adam.v" };
	float *dst[3] = { sh->w, sh->m, sh->v };
	uint32_t saved_ranks = 0;
	uint64_t step;
	int rc;

	rc = ckpt_latest(ctx, &step);
	if (rc == CKPT_ENOENT) {
		if (rank == 0)
			printf("no checkpoint: starting at step 0\n");
		return;
	}
	if (rc)
		die("ckpt_latest", rc, ctx);
	if ((rc = ckpt_step_nranks(ctx, step, &saved_ranks)))
		die("ckpt_step_nranks", rc, ctx);
	if (saved_ranks != (uint32_t)nranks) {
		if (rank == 0)
			fprintf(stderr, "mpi_train: step %" PRIu64 " was saved by %" PRIu32
				" ranks, this job has %d: run with as many ranks (or reshard "
				"with ckpt_load_rank)\n", step, saved_ranks, nranks);
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	for (int i = 0; i < 3; i++)
		if ((rc = ckpt_load(ctx, step, names[i], dst[i], sh->n * sizeof(float))))
			die("ckpt_load", rc, ctx);
	if ((rc = ckpt_load(ctx, step, "rng", &sh->rng, sizeof(sh->rng))))
		die("ckpt_load", rc, ctx);
	sh->step = step;
	if (rank == 0)
		printf("resumed from step %" PRIu64 "\n", step);
}

static void usage(void)
{
	if (rank == 0)
		fprintf(stderr,
			"usage: mpi_train [--steps N] [--every N] [--params N] [--crash-at STEP]"
			" [--crash-rank R]\n"
			"  Trains --params parameters per rank for --steps steps, checkpointing every"
			" --every steps;\n"
			"  resumes from the newest checkpoint. --crash-at: rank --crash-rank (1) is"
			" killed (SIGKILL)\n"
			"  after training that step, once the checkpoint before it is committed (so"
			" that a\n"
			"  test knows which step must come back). Directories and name come from\n"
			"  CKPT_LOCAL_DIR, CKPT_SHARED_DIR and CKPT_NAME.\n");
	MPI_Finalize();
	exit(64);
}

static uint64_t number(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = s ? strtoull(s, &end, 10) : 0;
	if (!s || errno || end == s || *end)
		usage();
	return v;
}

int main(int argc, char **argv)
{
	uint64_t steps = 200, every = 20, crash_at = 0, crash_rank = 1, committed = 0, last = 0;
	size_t n = (size_t)1 << 20;
	struct shard sh;
	ckpt_ctx *ctx;
	double t0;
	int provided, rc, st;

	/* With MPI_THREAD_MULTIPLE a library thread completes commits in the background; with a
	 * lower level they progress inside the ckpt_* calls (ckpt_poll below each step). */
	MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nranks);
	for (int i = 1; i < argc; i++) {
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(argv[i], "--steps"))
			steps = number(val);
		else if (!strcmp(argv[i], "--every"))
			every = number(val);
		else if (!strcmp(argv[i], "--params"))
			n = (size_t)number(val);
		else if (!strcmp(argv[i], "--crash-at"))
			crash_at = number(val);
		else if (!strcmp(argv[i], "--crash-rank"))
			crash_rank = number(val);
		else
			usage();
		i++;
	}
	if (every == 0 || n < 1 || (size_t)nranks * n < 2)
		usage();

	shard_init(&sh, n);
	t0 = now();
	ctx = open_ckpt();
	if (rank == 0)
		printf("libckpt %s: %d ranks, %zu parameters per rank, %" PRIu64 " steps, "
		       "checkpoint every %" PRIu64 " (MPI thread level %s)\n", ckpt_version(),
		       nranks, n, steps, every,
		       provided == MPI_THREAD_MULTIPLE ? "multiple" : "below multiple");
	resume(ctx, &sh);
	while (sh.step < steps) {
		train_step(&sh);
		if (sh.step == crash_at) {
			/* every rank: the newest checkpoint is committed, then one rank dies */
			if (last && (rc = ckpt_wait(ctx, last)))
				die("ckpt_wait", rc, ctx);
			if ((uint64_t)rank == crash_rank % (uint64_t)nranks) {
				fprintf(stderr, "mpi_train: rank %d killed at step %" PRIu64
					" (--crash-at)\n", rank, sh.step);
				fflush(NULL);
				raise(SIGKILL);
			}
		}
		if (sh.step % every == 0 || sh.step == steps) {
			save(ctx, &sh);
			last = sh.step;
		}
		/* report a commit once; also advances commits at lower thread levels */
		if (last > committed) {
			if ((rc = ckpt_poll(ctx, last, &st)))
				die("ckpt_poll", rc, ctx);
			if (st == CKPT_STATE_FAILED && (rc = ckpt_wait(ctx, last)))
				die("draining to the shared volume", rc, ctx);
			if (st == CKPT_STATE_COMMITTED) {
				committed = last;
				if (rank == 0)
					printf("step %" PRIu64 ": committed on the shared volume\n",
					       last);
			}
		}
	}
	if ((rc = ckpt_wait(ctx, CKPT_STEP_ALL)))
		die("ckpt_wait", rc, ctx);
	if (rank == 0 && last > committed)
		printf("step %" PRIu64 ": committed on the shared volume\n", last);
	if ((rc = ckpt_close(ctx)))
		die("ckpt_close", rc, NULL);
	{
		uint64_t h = checksum(&sh);

		if (rank == 0)
			printf("done: step %" PRIu64 ", %.1f s, checksum %016" PRIx64 "\n", sh.step,
			       now() - t0, h);
	}
	free(sh.w);
	free(sh.m);
	free(sh.v);
	free(sh.partial);
	MPI_Finalize();
	return 0;
}
