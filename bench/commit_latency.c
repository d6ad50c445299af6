/* SPDX-License-Identifier: MIT */
/* MPI commit latency: from the moment the last rank's shard is published on the shared tier (its
 * drain finished) to the moment the step's MANIFEST is visible. Run under mpirun at several rank
 * counts (bench/commit_latency.sh does 2, 4, 8, 16). A benchmark, not a test.
 *
 * Every rank runs a poller thread that timestamps (MPI_Wtime, one clock on one node) the first
 * appearance of its own rank-R-*.ckz in the step directory; rank 0's poller also timestamps the
 * MANIFEST. The main threads call ckpt_save and ckpt_wait, which drive the commit when MPI gives
 * no progress thread. */
#include <dirent.h>
#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ckpt.h>
#include <ckpt_mpi.h>

struct poll_arg {
	char dir[4096];
	char prefix[32];
	int want_manifest;
	double t_shard, t_manifest;
	volatile int stop;
};

static int has_file(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int found = 0;

	if (!d)
		return 0;
	while (!found && (e = readdir(d)))
		found = !strncmp(e->d_name, prefix, strlen(prefix));
	closedir(d);
	return found;
}

static void *poller(void *p)
{
	struct poll_arg *a = p;
	struct timespec ts = { 0, 100000 }; /* 0.1 ms */
	char manifest[4200];

	snprintf(manifest, sizeof(manifest), "%s/MANIFEST", a->dir);
	while (!a->stop) {
		struct stat st;

		if (a->t_shard == 0 && has_file(a->dir, a->prefix))
			a->t_shard = MPI_Wtime();
		if (a->want_manifest && a->t_manifest == 0 && stat(manifest, &st) == 0)
			a->t_manifest = MPI_Wtime();
		if (a->t_shard && (!a->want_manifest || a->t_manifest))
			break;
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: commit_latency DIR [REPS] (DIR: a new directory of this run, "
			"on the filesystem to measure; bench/commit_latency.sh makes one)\n");
		return 64;
	}
	const char *base = argv[1];
	if (strlen(base) > 2000) {
		fprintf(stderr, "directory name too long\n");
		return 64;
	}
	int reps = argc > 2 ? atoi(argv[2]) : 5, provided, rank, size;
	size_t bytes = argc > 3 ? (size_t)strtoull(argv[3], NULL, 10) : (size_t)1 << 20;
	char local[3000], shared[3000];
	double *lat = calloc((size_t)reps, sizeof(double));
	unsigned char *data = malloc(bytes);
	ckpt_config *cfg;
	ckpt_ctx *ctx;
	int rc, multiple;

	const char *lvl = getenv("COMMIT_BENCH_THREAD");

	/* COMMIT_BENCH_THREAD=single: no progress thread, commits advance inside ckpt_wait */
	MPI_Init_thread(&argc, &argv, lvl && !strcmp(lvl, "single") ? MPI_THREAD_SINGLE :
				      MPI_THREAD_MULTIPLE, &provided);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	multiple = provided == MPI_THREAD_MULTIPLE;
	for (size_t i = 0; i < bytes; i++)
		data[i] = (unsigned char)(i * 7 + (size_t)rank);
	snprintf(local, sizeof(local), "%s/local-%d", base, rank);
	snprintf(shared, sizeof(shared), "%s/shared", base);
	if (rank == 0) {
		mkdir(base, 0755);
		mkdir(shared, 0755);
	}
	MPI_Barrier(MPI_COMM_WORLD);
	mkdir(local, 0755);
	ckpt_config_new(&cfg);
	ckpt_config_set(cfg, "local_dir", local);
	ckpt_config_set(cfg, "shared_dir", shared);
	ckpt_config_set(cfg, "name", "bench");
	ckpt_config_set(cfg, "drain_threads", "1");
	ckpt_config_set(cfg, "log_level", "0");
	if ((rc = ckpt_open_mpi(&ctx, cfg, MPI_COMM_WORLD)) != CKPT_OK) {
		fprintf(stderr, "rank %d: ckpt_open_mpi: %s\n", rank, ckpt_errmsg(NULL));
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	ckpt_config_free(cfg);
	for (int r = 0; r < reps; r++) {
		uint64_t step = (uint64_t)r + 1;
		struct poll_arg a;
		ckpt_region reg = { "shard", data, bytes };
		pthread_t th;
		double t_last;

		memset(&a, 0, sizeof(a));
		snprintf(a.dir, sizeof(a.dir), "%s/bench/step-%020llu", shared,
			 (unsigned long long)step);
		snprintf(a.prefix, sizeof(a.prefix), "rank-%06d-", rank);
		a.want_manifest = rank == 0;
		pthread_create(&th, NULL, poller, &a);
		if ((rc = ckpt_save(ctx, step, &reg, 1)) != CKPT_OK ||
		    (rc = ckpt_wait(ctx, step)) != CKPT_OK) {
			fprintf(stderr, "rank %d: %s\n", rank, ckpt_errmsg(ctx));
			MPI_Abort(MPI_COMM_WORLD, 1);
		}
		/* the MANIFEST exists once ckpt_wait returned on rank 0; let the poller see it */
		pthread_join(th, NULL);
		MPI_Reduce(&a.t_shard, &t_last, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
		if (rank == 0)
			lat[r] = a.t_manifest - t_last;
	}
	if (rank == 0) {
		qsort(lat, (size_t)reps, sizeof(double), cmp_d);
		printf("ranks %3d  progress %-18s  commit latency  median %7.2f ms  min %7.2f ms  "
		       "max %7.2f ms  (%d steps of %zu KiB per rank)\n",
		       size, multiple ? "background thread" : "in library calls",
		       lat[reps / 2] * 1e3, lat[0] * 1e3, lat[reps - 1] * 1e3, reps, bytes >> 10);
	}
	ckpt_close(ctx);
	MPI_Barrier(MPI_COMM_WORLD);
	if (rank == 0) {
		char cmd[4200];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", base);
	}
	free(lat);
	free(data);
	MPI_Finalize();
	return 0;
}
