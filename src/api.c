/* SPDX-License-Identifier: MIT */
/* Public ckpt_* entry points: check arguments, take the context's lock, call inward. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "internal.h"
#include "step.h"
#include "storage.h"

/* ckpt_open failures have no context to carry their message: ckpt_errmsg(NULL) reads this. */
static __thread struct ckpt_err open_err;

const char *ckpt_version(void)
{
	return PACKAGE_VERSION;
}

struct ckpt_err *ckpt_api__open_err(void)
{
	return &open_err;
}

const char *ckpt_errmsg(const ckpt_ctx *ctx)
{
	return ctx ? ctx->err.msg : open_err.msg;
}

/* A directory the user named must exist: creating a missing shared_dir would put checkpoints on
 * whatever filesystem holds the mount point when the volume is not mounted. */
static int check_dir(const char *key, const char *dir, char *real, struct ckpt_err *err)
{
	struct stat st;

	if (!dir)
		return ckpt_err__set(err, CKPT_EINVAL, "%s is not set (config key %s or CKPT_%s)",
				     key, key, !strcmp(key, "local_dir") ? "LOCAL_DIR" : "SHARED_DIR");
	if (stat(dir, &st) < 0)
		return ckpt_err__errno(err, errno, "%s %s%s", key, dir,
				       errno == ENOENT ? " does not exist (is the volume mounted?)" :
				       "");
	if (!S_ISDIR(st.st_mode))
		return ckpt_err__set(err, CKPT_EINVAL, "%s %s is not a directory", key, dir);
	if (access(dir, W_OK | X_OK) < 0)
		return ckpt_err__errno(err, errno, "%s %s is not writable", key, dir);
	if (!realpath(dir, real))
		return ckpt_err__errno(err, errno, "realpath %s", dir);
	return CKPT_OK;
}

/* Is path equal to base or below it? Both are canonical (realpath). */
static int is_within(const char *path, const char *base)
{
	size_t n = strlen(base);

	if (n == 1 && base[0] == '/')
		return 1;
	return !strncmp(path, base, n) && (path[n] == '\0' || path[n] == '/');
}

/* Queue every step that is complete locally but not committed on shared (the process died
 * mid-drain, or the shared tier failed): its local copy is the only one. */
static int recover_local(struct ckpt_ctx *ctx, struct ckpt_err *err)
{
	uint64_t *steps;
	size_t n;
	int rc;

	if ((rc = ckpt_store__list_steps(ctx->local_job, &steps, &n, err)) < 0)
		return rc;
	pthread_mutex_lock(&ctx->mu);
	for (size_t i = 0; i < n; i++) {
		struct ckpt_shard *s;
		struct ckpt_manifest m;
		struct ckpt_step_rec *rec;
		int redrain;

		if (ckpt_step__open_local(&s, ctx->local_job, steps[i], ctx->rank, NULL) < 0)
			continue;
		if (s->hdr.nranks != ctx->nranks) {
			ckpt_shard__close(s);
			continue;
		}
		if (ckpt_step__manifest(ctx->shared_job, steps[i], &m, 0, NULL) < 0) {
			redrain = 1;
		} else {
			/* A newer local save of a committed step still needs its drain; an older
			 * one (the step was saved again elsewhere) does not. */
			redrain = m.save_id != s->hdr.save_id && s->hdr.created_ns > m.created_ns;
			ckpt_fmt__manifest_free(&m);
		}
		if (redrain && (rec = ckpt_drain__rec(ctx, steps[i], 1))) {
			rec->save_id = s->hdr.save_id;
			ckpt_drain__enqueue(ctx, rec);
		}
		ckpt_shard__close(s);
	}
	pthread_mutex_unlock(&ctx->mu);
	free(steps);
	return CKPT_OK;
}

/* A kill between a re-save's MANIFEST rename and the removal of the older save's shards
 * (commit.done) leaves those shards behind; no MANIFEST names them any more. Single process
 * only: with MPI another rank may be re-draining a shard that is not committed yet. */
static void sweep_superseded(struct ckpt_ctx *ctx)
{
	char dir[CKPT_PATH_MAX];
	struct ckpt_manifest m;
	uint64_t *steps;
	size_t n;

	if (ckpt_store__list_steps(ctx->shared_job, &steps, &n, NULL) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (ckpt_step__manifest(ctx->shared_job, steps[i], &m, 0, NULL) < 0)
			continue;
		if (ckpt_store__step_dir(dir, sizeof(dir), ctx->shared_job, steps[i]) == CKPT_OK)
			ckpt_store__remove_other_saves(dir, m.save_id);
		ckpt_fmt__manifest_free(&m);
	}
	free(steps);
}

/* Two processes saving the same rank of one job would replace each other's local copies under
 * their drains. An exclusive fcntl record lock per rank (released when the process dies) refuses
 * the second at open. fcntl, not flock: a flock would be inherited by fork()ed children (data
 * loader workers) and refuse the parent's own later reopen. It guards one node's local tier,
 * where the race is; the ranks of one job lock their own files. */
static int lock_job(struct ckpt_ctx *ctx, struct ckpt_err *err)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
	char path[CKPT_PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/.lock-rank-%06u", ctx->local_job, ctx->rank);
	ctx->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (ctx->lock_fd < 0)
		return ckpt_err__errno(err, errno, "open lock file %s", path);

	if (fcntl(ctx->lock_fd, F_SETLK, &fl) < 0) {
		int e = errno;

		close(ctx->lock_fd);
		ctx->lock_fd = -1;
		if (e == EACCES || e == EAGAIN)
			return ckpt_err__set(err, CKPT_EBUSY,
					     "job '%s' rank %u is already open in another process on this node "
					     "(lock %s): one process per rank and job",
					     ctx->cfg->name, ctx->rank, path);
		return ckpt_err__errno(err, e, "lock %s", path);
	}
	return CKPT_OK;
}

static void ctx_free(struct ckpt_ctx *ctx)
{
	if (!ctx)
		return;
	for (size_t i = 0; i < ctx->nrecs; i++)
		free(ctx->recs[i]);
	free(ctx->recs);
	for (size_t i = 0; i < ctx->ntrash; i++)
		free(ctx->trash[i]);
	free(ctx->trash);
	ckpt_shard__writer_free(ctx->writer);
	ckpt_codec__free(ctx->codec);
	ckpt_config_free(ctx->cfg);
	if (ctx->lock_fd >= 0)
		close(ctx->lock_fd); /* releases the job lock */
	pthread_mutex_destroy(&ctx->api_mu);
	pthread_mutex_destroy(&ctx->mu);
	pthread_cond_destroy(&ctx->cv);
	free(ctx);
}

int ckpt_api__open(struct ckpt_ctx **out, const ckpt_config *cfg, uint32_t rank, uint32_t nranks,
		   ckpt_commit_fn commit, void *mpi, struct ckpt_err *err)
{
	char local[PATH_MAX], shared[PATH_MAX];
	struct ckpt_ctx *ctx;
	int rc;

	*out = NULL;
	if ((rc = ckpt_config__check(cfg, err)) < 0)
		return rc;
	if ((rc = check_dir("local_dir", cfg->local_dir, local, err)) < 0 ||
	    (rc = check_dir("shared_dir", cfg->shared_dir, shared, err)) < 0)
		return rc;
	if (is_within(shared, local))
		return ckpt_err__set(err, CKPT_EINVAL,
				     "shared_dir %s is %s local_dir %s: the shared copy must live on "
				     "another (persistent) volume", shared,
				     strcmp(shared, local) ? "inside" : "the same directory as", local);
	/* A shared_dir that would not outlive this node (tmpfs, overlay, a node disk, /home on
	 * Kubernetes, local_dir's filesystem) is a warning, or an error with require_persistent. */
	if ((rc = ckpt_storage__check(cfg, local, shared, rank, err)) < 0)
		return rc;
	if (!(ctx = calloc(1, sizeof(*ctx))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for a context");
	ctx->lock_fd = -1;
	pthread_mutex_init(&ctx->api_mu, NULL);
	pthread_mutex_init(&ctx->mu, NULL);
	pthread_cond_init(&ctx->cv, NULL);
	ctx->rank = rank;
	ctx->nranks = nranks;
	ctx->commit = commit;
	ctx->mpi = mpi;
	if ((rc = ckpt_config__dup(&ctx->cfg, cfg)) < 0) {
		ckpt_err__set(err, rc, "out of memory copying the configuration");
		goto fail;
	}
	if (snprintf(ctx->local_job, sizeof(ctx->local_job), "%s/%s", local, cfg->name) >=
		    (int)sizeof(ctx->local_job) ||
	    snprintf(ctx->shared_job, sizeof(ctx->shared_job), "%s/%s", shared, cfg->name) >=
		    (int)sizeof(ctx->shared_job)) {
		rc = ckpt_err__set(err, CKPT_EINVAL, "directory paths too long");
		goto fail;
	}
	if ((rc = ckpt_store__mkdirs(ctx->local_job, err)) < 0 ||
	    (rc = ckpt_store__mkdirs(ctx->shared_job, err)) < 0)
		goto fail;
	{
		struct stat st;

		snprintf(ctx->shared_root, sizeof(ctx->shared_root), "%s", shared);
		if (stat(shared, &st) < 0) {
			rc = ckpt_err__errno(err, errno, "stat %s", shared);
			goto fail;
		}
		ctx->shared_dev = (uint64_t)st.st_dev;
		ctx->shared_ino = (uint64_t)st.st_ino;
	}
	if ((rc = lock_job(ctx, err)) < 0)
		goto fail;
	if ((rc = ckpt_shard__writer_new(&ctx->writer, cfg->io_backend, cfg->io_depth, err)) < 0)
		goto fail;
	if ((rc = ckpt_codec__new(&ctx->codec, cfg->compress_level)) < 0) {
		ckpt_err__set(err, rc, "out of memory for a codec");
		goto fail;
	}
	ckpt_store__cleanup_tmp(ctx->local_job);
	ckpt_store__cleanup_tmp(ctx->shared_job);
	*out = ctx;
	return CKPT_OK;
fail:
	ctx_free(ctx);
	return rc;
}

int ckpt_api__start(struct ckpt_ctx *ctx, struct ckpt_err *err)
{
	int rc = ckpt_drain__start(ctx, err);

	if (rc < 0)
		ckpt_drain__stop(ctx, 0);
	return rc;
}

int ckpt_open(ckpt_ctx **out, const ckpt_config *cfg)
{
	struct ckpt_ctx *ctx;
	int rc;

	ckpt_err__clear(&open_err);
	if (out)
		*out = NULL;
	if (!out || !cfg)
		return ckpt_err__set(&open_err, CKPT_EINVAL, "ckpt_open: NULL %s",
				     out ? "config" : "out");
	if ((rc = ckpt_api__open(&ctx, cfg, 0, 1, ckpt_commit__single, NULL, &open_err)) < 0)
		return rc;
	sweep_superseded(ctx);
	if ((rc = recover_local(ctx, &open_err)) < 0 || (rc = ckpt_api__start(ctx, &open_err)) < 0) {
		ctx_free(ctx);
		return rc;
	}
	*out = ctx;
	return CKPT_OK;
}

void ckpt_api__wait_progress(struct ckpt_ctx *ctx)
{
	if (ctx->mpi)
		ckpt_api__wait_progress_mpi(ctx);
	else
		pthread_cond_wait(&ctx->cv, &ctx->mu);
}

#ifndef HAVE_MPI
int ckpt_api__save_mpi(struct ckpt_ctx *ctx, uint64_t step, const ckpt_region *regs, size_t n,
		       int args_rc)
{
	(void)step, (void)regs, (void)n, (void)args_rc;
	return ckpt_err__set(&ctx->err, CKPT_ENOTSUP, "built without MPI");
}

int ckpt_api__latest_mpi(struct ckpt_ctx *ctx, uint64_t *step)
{
	(void)step;
	return ckpt_err__set(&ctx->err, CKPT_ENOTSUP, "built without MPI");
}

void ckpt_api__progress_mpi(struct ckpt_ctx *ctx)
{
	(void)ctx;
}

void ckpt_api__wait_progress_mpi(struct ckpt_ctx *ctx)
{
	pthread_cond_wait(&ctx->cv, &ctx->mu);
}

void ckpt_api__close_mpi(struct ckpt_ctx *ctx)
{
	(void)ctx;
}

void ckpt_mpi__drain_before_close(struct ckpt_ctx *ctx, double timeout)
{
	(void)ctx, (void)timeout;
}

int ckpt_open_mpi_f(ckpt_ctx **out, const ckpt_config *cfg, int fortran_comm)
{
	(void)cfg;
	(void)fortran_comm;
	if (out)
		*out = NULL;
	return ckpt_err__set(&open_err, CKPT_ENOTSUP,
			     "ckpt_open_mpi_f: this libckpt was built without MPI");
}
#endif

/* Region names are labels stored in the index (never paths): 1..CKPT_NAME_MAX bytes, unique. */
static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int check_regions(const ckpt_region *regs, size_t n, struct ckpt_err *err)
{
	const char **names;
	int rc = CKPT_OK;

	if (n && !regs)
		return ckpt_err__set(err, CKPT_EINVAL, "ckpt_save: regions is NULL but nregions is %zu",
				     n);
	if (n > CKPT_MAX_REGIONS)
		return ckpt_err__set(err, CKPT_EINVAL, "ckpt_save: %zu regions (at most %u)", n,
				     CKPT_MAX_REGIONS);
	for (size_t i = 0; i < n; i++) {
		size_t len;

		if (!regs[i].name)
			return ckpt_err__set(err, CKPT_EINVAL, "ckpt_save: region %zu has no name", i);
		len = strnlen(regs[i].name, CKPT_NAME_MAX + 1);
		if (len == 0 || len > CKPT_NAME_MAX)
			return ckpt_err__set(err, CKPT_EINVAL,
					     "ckpt_save: region %zu name is %s (1 to %d bytes)", i,
					     len ? "too long" : "empty", CKPT_NAME_MAX);
		if (!regs[i].data && regs[i].size)
			return ckpt_err__set(err, CKPT_EINVAL,
					     "ckpt_save: region '%s' has NULL data and size %zu",
					     regs[i].name, regs[i].size);
	}
	if (n < 2)
		return CKPT_OK;
	if (!(names = malloc(n * sizeof(*names))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory checking region names");
	for (size_t i = 0; i < n; i++)
		names[i] = regs[i].name;
	qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 1; i < n; i++)
		if (!strcmp(names[i - 1], names[i])) {
			rc = ckpt_err__set(err, CKPT_EINVAL, "ckpt_save: region name '%s' appears twice",
					   names[i]);
			break;
		}
	free(names);
	return rc;
}

int ckpt_api__save_local(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id,
			 const ckpt_region *regs, size_t n)
{
	struct ckpt_header h = { CKPT_FMT_VERSION, 0, step, save_id, ctx->rank, ctx->nranks,
				 (uint32_t)n, CKPT_ALIGN, ckpt_store__now_ns() };
	struct ckpt_step_rec *rec;
	char dir[CKPT_PATH_MAX], base[64];
	int rc, prev_state, new_dir, published = 0;

	if ((rc = ckpt_store__step_dir(dir, sizeof(dir), ctx->local_job, step)) < 0)
		return ckpt_err__set(&ctx->err, rc, "path too long: %s", ctx->local_job);
	/* Backpressure: bound local disk use by waiting for the oldest drain. */
	pthread_mutex_lock(&ctx->mu);
	while (ctx->pending >= ctx->cfg->max_pending)
		ckpt_api__wait_progress(ctx); /* with MPI, commits settle only through progress */
	if (!(rec = ckpt_drain__rec(ctx, step, 1))) {
		pthread_mutex_unlock(&ctx->mu);
		return ckpt_err__set(&ctx->err, CKPT_ENOMEM, "out of memory for a step record");
	}
	/* LOCAL keeps retention away from this step while its file is being replaced. */
	prev_state = rec->state;
	rec->state = CKPT_STATE_LOCAL;
	pthread_mutex_unlock(&ctx->mu);

	ckpt_store__local_name(base, sizeof(base), ctx->rank);
	/* A new step directory's entry is made durable after the shard is published rather than
	 * before it is written: the step directory's fsync has then already committed the mkdir
	 * with the rename (ext4, xfs), which saves one journal commit per save, a few ms. The
	 * save still returns only once both are durable; a crash before that loses the whole new
	 * step, never part of it. */
	new_dir = mkdir(dir, 0750) == 0;
	if (!new_dir && errno != EEXIST)
		rc = ckpt_store__mkdirs(dir, &ctx->err); /* the job directory went away */
	else
		rc = CKPT_OK;
	if (rc == CKPT_OK)
		rc = ckpt_store__check_step_dir(dir, &ctx->err);
	if (rc == CKPT_OK)
		rc = ckpt_shard__write_local(ctx->writer, dir, base, &h, regs, n,
					     ctx->cfg->fault_kill_at, &ctx->err);
	if (rc == CKPT_OK && new_dir)
		rc = ckpt_store__fsync_dir(ctx->local_job, &ctx->err);
	/* A failure after the rename (a directory fsync) leaves the new save under its final name:
	 * the error is reported, and the copy is drained like any other (single process; with MPI
	 * the ranks agree on the failure and the next ckpt_open_mpi re-drains it). */
	if (rc < 0 && !ctx->mpi) {
		struct ckpt_shard *s;

		if (ckpt_step__open_local(&s, ctx->local_job, step, ctx->rank, NULL) == CKPT_OK) {
			published = s->hdr.save_id == save_id;
			ckpt_shard__close(s);
		}
	}

	pthread_mutex_lock(&ctx->mu);
	if (rc < 0 && !published) {
		/* The save failed and said so: the step is as it was (never saved, or its previous
		 * save). That is no drain failure for ckpt_wait(CKPT_STEP_ALL) or ckpt_close to
		 * report again, and there is no local copy to retry. */
		if (!rec->queued && !ckpt_drain__running(ctx, rec))
			rec->state = prev_state;
	} else {
		rec->save_id = save_id;
		ckpt_drain__enqueue(ctx, rec);
	}
	pthread_mutex_unlock(&ctx->mu);
	return rc;
}

/* Retry failed drains: the fault (full or unmounted volume) may be gone. */
void ckpt_api__retry_failed(struct ckpt_ctx *ctx)
{
	pthread_mutex_lock(&ctx->mu);
	for (size_t i = 0; i < ctx->nrecs; i++)
		if (ctx->recs[i]->state == CKPT_STATE_FAILED && ctx->recs[i]->save_id)
			ckpt_drain__enqueue(ctx, ctx->recs[i]);
	pthread_mutex_unlock(&ctx->mu);
}

int ckpt_save(ckpt_ctx *ctx, uint64_t step, const ckpt_region *regions, size_t nregions)
{
	int rc;

	if (!ctx)
		return CKPT_EINVAL;
	pthread_mutex_lock(&ctx->api_mu);
	if (step == CKPT_STEP_ALL)
		rc = ckpt_err__set(&ctx->err, CKPT_EINVAL,
				   "ckpt_save: step %llu is reserved (CKPT_STEP_ALL)",
				   (unsigned long long)step);
	else
		rc = check_regions(regions, nregions, &ctx->err);
	/* With MPI even bad arguments go through the collective, so that every rank returns. */
	if (ctx->mpi)
		rc = ckpt_api__save_mpi(ctx, step, regions, nregions, rc);
	else if (rc == CKPT_OK)
		rc = ckpt_api__save_local(ctx, step, ckpt_store__random64(), regions, nregions);
	/* With MPI a retry must be collective: failed steps are drained again by the next
	 * ckpt_open_mpi, which agrees on them across ranks. */
	if (rc == CKPT_OK && !ctx->mpi)
		ckpt_api__retry_failed(ctx);
	pthread_mutex_unlock(&ctx->api_mu);
	return rc;
}

int ckpt_wait(ckpt_ctx *ctx, uint64_t step)
{
	struct ckpt_step_rec *rec;
	int rc = CKPT_OK;

	if (!ctx)
		return CKPT_EINVAL;
	pthread_mutex_lock(&ctx->api_mu);
	pthread_mutex_lock(&ctx->mu);
	if (step == CKPT_STEP_ALL) {
		while (ctx->pending)
			ckpt_api__wait_progress(ctx);
		for (size_t i = 0; i < ctx->nrecs; i++)
			if (ctx->recs[i]->state == CKPT_STATE_FAILED) {
				rc = ctx->recs[i]->rc;
				ckpt_err__copy(&ctx->err, &ctx->recs[i]->err);
				break;
			}
	} else if (!(rec = ckpt_drain__rec(ctx, step, 0)) || rec->state == CKPT_STATE_NONE) {
		rc = ckpt_err__set(&ctx->err, CKPT_ENOENT,
				   "ckpt_wait: step %llu was not saved by this context",
				   (unsigned long long)step);
	} else {
		while (rec->state == CKPT_STATE_LOCAL)
			ckpt_api__wait_progress(ctx);
		if (rec->state == CKPT_STATE_FAILED) {
			rc = rec->rc;
			ckpt_err__copy(&ctx->err, &rec->err);
		}
	}
	/* and what retention took away on the way is removed: disk space is free again */
	ckpt_drain__wait_trash(ctx);
	pthread_mutex_unlock(&ctx->mu);
	pthread_mutex_unlock(&ctx->api_mu);
	return rc;
}

int ckpt_poll(ckpt_ctx *ctx, uint64_t step, int *state)
{
	struct ckpt_step_rec *rec;

	if (!ctx || !state)
		return CKPT_EINVAL;
	pthread_mutex_lock(&ctx->api_mu);
	if (ctx->mpi)
		ckpt_api__progress_mpi(ctx);
	pthread_mutex_lock(&ctx->mu);
	rec = ckpt_drain__rec(ctx, step, 0);
	*state = rec ? rec->state : CKPT_STATE_NONE;
	pthread_mutex_unlock(&ctx->mu);
	pthread_mutex_unlock(&ctx->api_mu);
	return CKPT_OK;
}

/* Is `step` complete for this rank locally, or committed on shared? (structure only) */
int ckpt_api__step_usable(struct ckpt_ctx *ctx, uint64_t step)
{
	struct ckpt_shard *s;
	struct ckpt_manifest m;
	int ok = 0;

	if (ckpt_step__open_local(&s, ctx->local_job, step, ctx->rank, NULL) == CKPT_OK) {
		ok = s->hdr.nranks == ctx->nranks;
		ckpt_shard__close(s);
		if (ok)
			return 1;
	}
	if (ckpt_step__manifest(ctx->shared_job, step, &m, 1, NULL) == CKPT_OK) {
		ok = m.nranks == ctx->nranks;
		ckpt_fmt__manifest_free(&m);
	}
	return ok;
}

/* Steps present on either tier, newest first. */
int ckpt_api__candidates(struct ckpt_ctx *ctx, uint64_t **out, size_t *n)
{
	uint64_t *a, *b, *v;
	size_t na, nb, i = na = 0, j = nb = 0, k = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if ((rc = ckpt_store__list_steps(ctx->local_job, &a, &na, &ctx->err)) < 0)
		return rc;
	if ((rc = ckpt_store__list_steps(ctx->shared_job, &b, &nb, &ctx->err)) < 0) {
		free(a);
		return rc;
	}
	if (!(v = malloc((na + nb + 1) * sizeof(*v)))) {
		free(a);
		free(b);
		return ckpt_err__set(&ctx->err, CKPT_ENOMEM, "out of memory listing steps");
	}
	/* merge two ascending lists into one descending list without duplicates */
	i = na;
	j = nb;
	while (i || j) {
		uint64_t x;

		if (i && (!j || a[i - 1] >= b[j - 1]))
			x = a[--i];
		else
			x = b[--j];
		if (j && b[j - 1] == x)
			j--;
		if (i && a[i - 1] == x)
			i--;
		if (!k || v[k - 1] != x)
			v[k++] = x;
	}
	free(a);
	free(b);
	*out = v;
	*n = k;
	return CKPT_OK;
}

/* A step that ckpt_latest passes over because a copy of it is damaged (not merely absent or in
 * progress): say so, or the caller gets an older step and no reason. */
static void warn_damaged(struct ckpt_ctx *ctx, uint64_t step)
{
	struct ckpt_err e = { "" };
	struct ckpt_manifest m;
	struct ckpt_shard *s;
	int rc;

	if ((rc = ckpt_step__open_local(&s, ctx->local_job, step, ctx->rank, &e)) == CKPT_OK)
		ckpt_shard__close(s);
	if (rc == CKPT_OK || rc == CKPT_ENOENT) {
		if ((rc = ckpt_step__manifest(ctx->shared_job, step, &m, 1, &e)) == CKPT_OK)
			ckpt_fmt__manifest_free(&m);
	}
	if (rc != CKPT_OK && rc != CKPT_ENOENT)
		ckpt_config__log(ctx->cfg, 1, "step %llu is damaged, skipped: %s",
				 (unsigned long long)step, e.msg);
}

int ckpt_latest(ckpt_ctx *ctx, uint64_t *step)
{
	uint64_t *v;
	size_t n;
	int rc;

	if (!ctx || !step)
		return CKPT_EINVAL;
	pthread_mutex_lock(&ctx->api_mu);
	if (ctx->mpi) {
		rc = ckpt_api__latest_mpi(ctx, step);
		goto out;
	}
	if ((rc = ckpt_api__candidates(ctx, &v, &n)) < 0)
		goto out;
	rc = ckpt_err__set(&ctx->err, CKPT_ENOENT, "no complete step of job '%s' on either tier",
			   ctx->cfg->name);
	for (size_t i = 0; i < n; i++) {
		if (ckpt_api__step_usable(ctx, v[i])) {
			*step = v[i];
			rc = CKPT_OK;
			break;
		}
		warn_damaged(ctx, v[i]);
	}
	free(v);
out:
	pthread_mutex_unlock(&ctx->api_mu);
	return rc;
}

/* Open rank's copy of `step` to read: the local one when it is intact (structure verified),
 * else the committed shared one; *shared says which. */
int ckpt_api__open_step(struct ckpt_ctx *ctx, uint64_t step, uint32_t rank,
			struct ckpt_shard **out, int *shared)
{
	struct ckpt_err lerr = { "" };
	struct ckpt_manifest m;
	int rc, lrc;

	*out = NULL;
	*shared = 0;
	lrc = ckpt_step__open_local(out, ctx->local_job, step, rank, &lerr);
	if (lrc == CKPT_OK && ctx->resolved && ctx->resolved_step == step &&
	    (*out)->hdr.save_id != ctx->resolved_save) {
		/* MPI: this node holds another save of the step than the ranks agreed to read. */
		ckpt_shard__close(*out);
		*out = NULL;
		lrc = ckpt_err__set(&lerr, CKPT_ENOENT, "local copy is of another save");
	}
	if (lrc == CKPT_OK)
		return CKPT_OK;
	if ((rc = ckpt_step__manifest(ctx->shared_job, step, &m, 0, &ctx->err)) == CKPT_OK) {
		rc = ckpt_step__open_shared(out, ctx->shared_job, &m, rank, &ctx->err);
		ckpt_fmt__manifest_free(&m);
		if (rc == CKPT_OK) {
			*shared = 1;
			if (lrc != CKPT_ENOENT)
				ckpt_config__log(ctx->cfg, 1, "step %llu: local copy unusable (%s); "
						 "using the shared copy", (unsigned long long)step,
						 lerr.msg);
			return CKPT_OK;
		}
	}
	if (lrc == CKPT_ENOENT && rc == CKPT_ENOENT)
		return ckpt_err__set(&ctx->err, CKPT_ENOENT,
				     "step %llu of job '%s' is on neither tier",
				     (unsigned long long)step, ctx->cfg->name);
	if (lrc != CKPT_ENOENT && rc == CKPT_ENOENT)
		ckpt_err__copy(&ctx->err, &lerr);
	return rc == CKPT_ENOENT ? lrc : rc;
}

int ckpt_region_size_rank(ckpt_ctx *ctx, uint64_t step, uint32_t rank, const char *name,
			  size_t *size)
{
	const struct ckpt_region_meta *r;
	struct ckpt_shard *s = NULL;
	int rc, shared;

	if (!ctx)
		return CKPT_EINVAL;
	pthread_mutex_lock(&ctx->api_mu);
	if (!name || !size) {
		rc = ckpt_err__set(&ctx->err, CKPT_EINVAL, "ckpt_region_size: NULL %s",
				   name ? "size" : "name");
		goto out;
	}
	if ((rc = ckpt_api__open_step(ctx, step, rank, &s, &shared)) < 0)
		goto out;
	if (!(r = ckpt_fmt__find_region(&s->idx, name))) {
		rc = ckpt_err__set(&ctx->err, CKPT_ENOENT, "step %llu has no region '%s'",
				   (unsigned long long)step, name);
		goto out;
	}
	if (r->raw_size > SIZE_MAX) {
		rc = ckpt_err__set(&ctx->err, CKPT_ENOMEM, "region '%s' is larger than memory", name);
		goto out;
	}
	*size = (size_t)r->raw_size;
out:
	ckpt_shard__close(s);
	pthread_mutex_unlock(&ctx->api_mu);
	return rc;
}

int ckpt_region_size(ckpt_ctx *ctx, uint64_t step, const char *name, size_t *size)
{
	return ckpt_region_size_rank(ctx, step, ctx ? ctx->rank : 0, name, size);
}

int ckpt_step_nranks(ckpt_ctx *ctx, uint64_t step, uint32_t *nranks)
{
	struct ckpt_shard *s = NULL;
	int rc, shared;

	if (!ctx)
		return CKPT_EINVAL;
	pthread_mutex_lock(&ctx->api_mu);
	if (!nranks)
		rc = ckpt_err__set(&ctx->err, CKPT_EINVAL, "ckpt_step_nranks: NULL nranks");
	else if ((rc = ckpt_api__open_step(ctx, step, 0, &s, &shared)) == CKPT_OK)
		*nranks = s->hdr.nranks;
	ckpt_shard__close(s);
	pthread_mutex_unlock(&ctx->api_mu);
	return rc;
}

int ckpt_rank(const ckpt_ctx *ctx, uint32_t *rank, uint32_t *nranks)
{
	if (!ctx || !rank || !nranks)
		return CKPT_EINVAL;
	*rank = ctx->rank;
	*nranks = ctx->nranks;
	return CKPT_OK;
}

int ckpt_list_regions(ckpt_ctx *ctx, uint64_t step, ckpt_region_info *out, size_t cap,
		      size_t *count)
{
	struct ckpt_shard *s = NULL;
	int rc, shared;

	if (!ctx)
		return CKPT_EINVAL;
	pthread_mutex_lock(&ctx->api_mu);
	if (!count || (cap && !out)) {
		rc = ckpt_err__set(&ctx->err, CKPT_EINVAL, "ckpt_list_regions: NULL %s",
				   count ? "out with cap > 0" : "count");
		goto out;
	}
	if ((rc = ckpt_api__open_step(ctx, step, ctx->rank, &s, &shared)) < 0)
		goto out;
	*count = s->idx.nregions;
	for (size_t i = 0; i < cap && i < s->idx.nregions; i++) {
		memcpy(out[i].name, s->idx.regions[i].name, s->idx.regions[i].name_len + 1u);
		out[i].size = s->idx.regions[i].raw_size;
	}
out:
	ckpt_shard__close(s);
	pthread_mutex_unlock(&ctx->api_mu);
	return rc;
}

int ckpt_api__load(struct ckpt_ctx *ctx, uint64_t step, uint32_t rank, const char *name,
		   void *buf, size_t size)
{
	const struct ckpt_region_meta *r;
	struct ckpt_shard *s = NULL, *sh = NULL;
	struct ckpt_manifest m;
	struct ckpt_err first;
	int rc, shared;
	uint64_t save_id;

	if ((rc = ckpt_api__open_step(ctx, step, rank, &s, &shared)) < 0)
		return rc;
	if (!(r = ckpt_fmt__find_region(&s->idx, name))) {
		rc = ckpt_err__set(&ctx->err, CKPT_ENOENT, "step %llu has no region '%s'",
				   (unsigned long long)step, name);
		goto out;
	}
	if (r->raw_size != size) {
		rc = ckpt_err__set(&ctx->err, CKPT_EINVAL,
				   "ckpt_load: buffer is %zu bytes, region '%s' is %llu", size, name,
				   (unsigned long long)r->raw_size);
		goto out;
	}
	if ((rc = ckpt_shard__read_region(s, r, buf, ctx->codec, &ctx->err)) == CKPT_OK || shared)
		goto out;
	ckpt_config__log(ctx->cfg, 1, "step %llu region '%s': local copy unusable (%s); reading the "
			 "shared copy", (unsigned long long)step, name, ctx->err.msg);
	/* The local copy failed its checksum or could not be read: fall back to the committed
	 * shared copy, but only to the same save, so one step never mixes two saves. */
	first = ctx->err;
	save_id = s->hdr.save_id;
	if (ckpt_step__manifest(ctx->shared_job, step, &m, 0, NULL) < 0) {
		ckpt_err__set(&ctx->err, rc, "%s; no committed shared copy to fall back to",
			      first.msg);
		goto out;
	}
	if (m.save_id != save_id ||
	    ckpt_step__open_shared(&sh, ctx->shared_job, &m, rank, &ctx->err) < 0 ||
	    !(r = ckpt_fmt__find_region(&sh->idx, name)) || r->raw_size != size) {
		ckpt_err__set(&ctx->err, rc, "%s; the shared copy is of another save or unusable",
			      first.msg);
	} else if ((rc = ckpt_shard__read_region(sh, r, buf, ctx->codec, &ctx->err)) < 0) {
		struct ckpt_err second = ctx->err;

		ckpt_err__set(&ctx->err, rc, "local copy: %s; shared copy: %s", first.msg,
			      second.msg);
	}
	ckpt_fmt__manifest_free(&m);
out:
	ckpt_shard__close(sh);
	ckpt_shard__close(s);
	return rc;
}

int ckpt_load_rank(ckpt_ctx *ctx, uint64_t step, uint32_t rank, const char *name, void *buf,
		   size_t size)
{
	int rc;

	if (!ctx)
		return CKPT_EINVAL;
	pthread_mutex_lock(&ctx->api_mu);
	if (!name || (!buf && size))
		rc = ckpt_err__set(&ctx->err, CKPT_EINVAL, "ckpt_load: NULL %s", name ? "buf" : "name");
	else
		rc = ckpt_api__load(ctx, step, rank, name, buf, size);
	pthread_mutex_unlock(&ctx->api_mu);
	return rc;
}

int ckpt_load(ckpt_ctx *ctx, uint64_t step, const char *name, void *buf, size_t size)
{
	return ckpt_load_rank(ctx, step, ctx ? ctx->rank : 0, name, buf, size);
}

int ckpt_close(ckpt_ctx *ctx)
{
	int rc = CKPT_OK, drc;

	if (!ctx)
		return CKPT_OK;
	pthread_mutex_lock(&ctx->api_mu);
	if (ctx->mpi && ctx->nthreads)
		ckpt_mpi__drain_before_close(ctx, ctx->cfg->close_timeout);
	drc = ckpt_drain__stop(ctx, ctx->cfg->close_timeout);
	/* The first drain error of a step that never committed afterwards. */
	for (size_t i = 0; i < ctx->nrecs; i++)
		if (ctx->recs[i]->state == CKPT_STATE_FAILED) {
			rc = ctx->recs[i]->rc;
			break;
		}
	if (drc < 0)
		rc = drc;
	if (ctx->mpi)
		ckpt_api__close_mpi(ctx);
	pthread_mutex_unlock(&ctx->api_mu);
	ctx_free(ctx);
	return rc;
}
