/* SPDX-License-Identifier: MIT */
/* Demo: a training loop that checkpoints every N steps with libckpt, loses its node (the local
 * directory is wiped), restores the newest committed step from the shared volume bit-exactly and
 * finishes training with exactly the parameters of an uninterrupted run. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <ckpt.h>

/* A small linear model y = w.x trained with Adam on a fixed synthetic problem: real floating-point
 * state (weights and two moment vectors) that changes every step, like a real optimizer's. */
struct model {
	size_t n;
	float *w, *m, *v;
	uint64_t step;
	uint64_t rng;
};

static float frand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (float)((*s >> 11) * (1.0 / 9007199254740992.0)) - 0.5f;
}

static void model_init(struct model *md, size_t n)
{
	md->n = n;
	md->w = calloc(n, sizeof(float));
	md->m = calloc(n, sizeof(float));
	md->v = calloc(n, sizeof(float));
	md->step = 0;
	md->rng = 42;
	if (!md->w || !md->m || !md->v) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		md->w[i] = 0.01f * frand(&md->rng);
}

static void model_free(struct model *md)
{
	free(md->w);
	free(md->m);
	free(md->v);
}

/* One step: a random sparse sample, gradient of the squared error, Adam update. */
static void train_step(struct model *md)
{
	const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
	float x[64], pred = 0, target = 0, err;
	size_t idx[64];

	md->step++;
	for (int k = 0; k < 64; k++) {
		idx[k] = (size_t)((frand(&md->rng) + 0.5f) * (float)(md->n - 1));
		x[k] = frand(&md->rng);
		pred += md->w[idx[k]] * x[k];
		target += (float)sin((double)idx[k]) * x[k];
	}
	err = pred - target;
	for (int k = 0; k < 64; k++) {
		size_t i = idx[k];
		float g = 2 * err * x[k];

		md->m[i] = b1 * md->m[i] + (1 - b1) * g;
		md->v[i] = b2 * md->v[i] + (1 - b2) * g * g;
		md->w[i] -= lr * md->m[i] / (sqrtf(md->v[i]) + eps);
	}
	/* every parameter decays a little, so every byte of the state changes every step */
	for (size_t i = 0; i < md->n; i++)
		md->w[i] *= 0.99999f;
}

static void die(const char *what, int rc, ckpt_ctx *ctx)
{
	fprintf(stderr, "train_demo: %s: %s (%s)\n", what, ckpt_strerror(rc),
		ctx ? ckpt_errmsg(ctx) : ckpt_errmsg(NULL));
	exit(1);
}

static ckpt_ctx *open_ckpt(const char *local, const char *shared)
{
	ckpt_config *cfg;
	ckpt_ctx *ctx;
	int rc;

	if ((rc = ckpt_config_new(&cfg)) || (rc = ckpt_config_set(cfg, "local_dir", local)) ||
	    (rc = ckpt_config_set(cfg, "shared_dir", shared)) ||
	    (rc = ckpt_config_set(cfg, "name", "demo")))
		die("config", rc, NULL);
	if ((rc = ckpt_open(&ctx, cfg)))
		die("ckpt_open", rc, NULL);
	ckpt_config_free(cfg);
	return ctx;
}

static void save(ckpt_ctx *ctx, struct model *md)
{
	ckpt_region r[4] = {
		{ "weights", md->w, md->n * sizeof(float) },
		{ "adam.m", md->m, md->n * sizeof(float) },
		{ "adam.v", md->v, md->n * sizeof(float) },
		{ "rng", &md->rng, sizeof(md->rng) },
	};
	struct timespec a, b;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &a);
	if ((rc = ckpt_save(ctx, md->step, r, 4)))
		die("ckpt_save", rc, ctx);
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("  step %4llu: saved %.1f MiB, ckpt_save blocked %.1f ms\n",
	       (unsigned long long)md->step, 3.0 * (double)(md->n * sizeof(float)) / 1048576.0,
	       (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6);
}

static void load(ckpt_ctx *ctx, struct model *md, uint64_t step)
{
	const char *names[3] = { "weights", "adam.m", "adam.v" };
	float *dst[3] = { md->w, md->m, md->v };
	int rc;

	for (int i = 0; i < 3; i++)
		if ((rc = ckpt_load(ctx, step, names[i], dst[i], md->n * sizeof(float))))
			die("ckpt_load", rc, ctx);
	if ((rc = ckpt_load(ctx, step, "rng", &md->rng, sizeof(md->rng))))
		die("ckpt_load rng", rc, ctx);
	md->step = step;
}

int main(int argc, char **argv)
{
	/* Without an argument: a new private directory under $TMPDIR (a fixed path would collide
	 * with another run on the same machine). It is kept, and named, for a look afterwards. */
	char tmpl[4096];
	const char *base = argc > 1 ? argv[1] : NULL;

	if (!base) {
		snprintf(tmpl, sizeof(tmpl), "%s/ckpt-demo.XXXXXX",
			 getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		if (!(base = mkdtemp(tmpl))) {
			perror("mkdtemp");
			return 1;
		}
		printf("demo directory: %s\n", base);
	}
	size_t n = argc > 2 ? (size_t)strtoull(argv[2], NULL, 10) : (size_t)4 << 20;
	uint64_t steps = argc > 3 ? strtoull(argv[3], NULL, 10) : 60, every = 10, latest;
	char local[4096], shared[4096], cmd[8300];
	struct model ref, md;
	ckpt_ctx *ctx;
	int rc, same;

	snprintf(local, sizeof(local), "%s/nvme", base);
	snprintf(shared, sizeof(shared), "%s/pvc", base);
	mkdir(base, 0755);
	mkdir(local, 0755);
	mkdir(shared, 0755);
	printf("libckpt %s demo: %zu parameters (+2 Adam moments), %llu steps, checkpoint every "
	       "%llu\n  local (ephemeral NVMe): %s\n  shared (persistent volume): %s\n",
	       ckpt_version(), n, (unsigned long long)steps, (unsigned long long)every, local,
	       shared);
	printf("  (both are directories of one disk here, so libckpt warns that shared_dir is not "
	       "persistent;\n   on a cluster, shared_dir is a PersistentVolumeClaim or Slurm's /home)\n");

	/* 1. the reference: an uninterrupted run */
	model_init(&ref, n);
	for (uint64_t s = 0; s < steps; s++)
		train_step(&ref);

	/* 2. the same run, checkpointing, interrupted at 75% (after its last checkpoint) */
	printf("training with checkpoints:\n");
	model_init(&md, n);
	ctx = open_ckpt(local, shared);
	while (md.step < steps * 3 / 4 + every / 2) {
		train_step(&md);
		if (md.step % every == 0)
			save(ctx, &md);
	}
	if ((rc = ckpt_wait(ctx, CKPT_STEP_ALL)))
		die("ckpt_wait", rc, ctx);
	if ((rc = ckpt_close(ctx)))
		die("ckpt_close", rc, NULL);
	printf("the node is lost at step %llu: wiping %s\n", (unsigned long long)md.step, local);
	fflush(stdout);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'/* && test -z \"$(ls -A '%s')\"", local, local);
	if (system(cmd) != 0)
		return 1;
	model_free(&md);

	/* 3. a new node: restore the newest committed step from the shared volume and go on */
	model_init(&md, n);
	ctx = open_ckpt(local, shared);
	if ((rc = ckpt_latest(ctx, &latest)))
		die("ckpt_latest", rc, ctx);
	load(ctx, &md, latest);
	printf("restored step %llu from the shared volume (checksums verified)\n",
	       (unsigned long long)latest);
	while (md.step < steps) {
		train_step(&md);
		if (md.step % every == 0)
			save(ctx, &md);
	}
	if ((rc = ckpt_wait(ctx, CKPT_STEP_ALL)) || (rc = ckpt_close(ctx)))
		die("finishing", rc, NULL);

	same = !memcmp(ref.w, md.w, n * sizeof(float)) && !memcmp(ref.m, md.m, n * sizeof(float)) &&
	       !memcmp(ref.v, md.v, n * sizeof(float)) && ref.rng == md.rng;
	printf("after %llu steps the parameters are %s to an uninterrupted run\n",
	       (unsigned long long)steps, same ? "bit-identical" : "DIFFERENT");
	model_free(&ref);
	model_free(&md);
	return same ? 0 : 1;
}
