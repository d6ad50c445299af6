/* SPDX-License-Identifier: MIT */
/* The context: open (directories, lock, writer), start and shut down, the local save with its
 * backpressure, and the step listings that ckpt_latest builds on, single process or MPI alike.
 *
 * Layering: api.c and api_mpi.c (public) -> context.c -> commit_mpi.c (MPI engine: waiting,
 * closing) -> commit.c -> drain.c. Nothing here calls the files above. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commit_mpi.h"
#include "context.h"
#include "internal.h"
#include "step.h"
#include "storage.h"

/* ckpt_open failures have no context to carry their message: ckpt_errmsg(NULL) reads this. */
static __thread struct ckpt_err open_err;

struct ckpt_err *ckpt_ctx__open_err(void)
{
	return &open_err;
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

/* The job-rank lock files this process holds: a second context of the same job rank is refused
 * here whatever the kernel's lock flavour, and a fork()ed child drops its copies of the lock
 * descriptors (atfork_child). */
struct held_lock {
	dev_t dev;
	ino_t ino;
	int fd;
};
static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t held_once = PTHREAD_ONCE_INIT;
static struct held_lock *held;
static size_t nheld, capheld;

/* In a fork()ed child (a data-loader worker): an OFD lock lives as long as any descriptor of its
 * open file, so a child that kept the lock descriptor would keep the job rank locked after the
 * parent closed or died. Each lock descriptor is replaced by /dev/null: the number stays taken
 * (a later close of the child's copy of the context closes /dev/null, never a file the child
 * opened since), the lock reference is gone. Only async-signal-safe calls here. */
static void atfork_child(void)
{
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

	for (size_t i = 0; i < nheld; i++) {
		if (null >= 0)
			dup3(null, held[i].fd, O_CLOEXEC);
		else
			close(held[i].fd);
	}
	if (null >= 0)
		close(null);
	nheld = 0; /* the child holds no job lock */
	pthread_mutex_init(&held_mu, NULL); /* a parent thread may have held it at fork */
}

static void held_init(void)
{
	pthread_atfork(NULL, NULL, atfork_child);
}

/* Two processes, or two contexts of one process, saving the same rank of one job would replace
 * each other's local copies under their drains. An exclusive lock per rank refuses the second at
 * open: an open-file-description lock (F_OFD_SETLK), which belongs to this open of the file, so
 * a second open in the same process conflicts too and closing it never drops the first one's
 * lock (a POSIX F_SETLK lock is the process's: any close of the file drops it). Where OFD locks
 * are not supported (EINVAL), F_SETLK, with the registry above refusing the in-process second
 * open. Released when the descriptor closes or the process dies. It guards one node's local
 * tier, where the race is; the ranks of one job lock their own files; across nodes the writer
 * lease (commit.c) decides who writes the shared tier. */
static int lock_job(struct ckpt_ctx *ctx, struct ckpt_err *err)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
	char path[CKPT_PATH_MAX + 32];
	struct stat st;
	int rc = CKPT_OK, e = 0, busy_here = 0;

	pthread_once(&held_once, held_init);
	snprintf(path, sizeof(path), "%s/.lock-rank-%06u", ctx->local_job, ctx->rank);
	ctx->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (ctx->lock_fd < 0)
		return ckpt_err__errno(err, errno, "open lock file %s", path);
	if (fstat(ctx->lock_fd, &st) < 0) {
		rc = ckpt_err__errno(err, errno, "stat lock file %s", path);
		goto fail;
	}
	pthread_mutex_lock(&held_mu);
	for (size_t i = 0; i < nheld; i++)
		if (held[i].dev == st.st_dev && held[i].ino == st.st_ino)
			busy_here = 1;
	if (!busy_here && nheld == capheld) {
		size_t cap = capheld ? 2 * capheld : 8;
		struct held_lock *h = realloc(held, cap * sizeof(*h));

		if (h) {
			held = h;
			capheld = cap;
		}
	}
	if (!busy_here && nheld == capheld)
		e = ENOMEM;
	else if (!busy_here && fcntl(ctx->lock_fd, F_OFD_SETLK, &fl) < 0) {
		e = errno;
		if (e == EINVAL) /* no OFD locks here: the process-wide lock and the registry */
			e = fcntl(ctx->lock_fd, F_SETLK, &fl) < 0 ? errno : 0;
	}
	if (!busy_here && !e)
		held[nheld++] = (struct held_lock){ st.st_dev, st.st_ino, ctx->lock_fd };
	pthread_mutex_unlock(&held_mu);
	if (busy_here || e == EACCES || e == EAGAIN)
		rc = ckpt_err__set(err, CKPT_EBUSY,
				   "job '%s' rank %u is already open in %s (lock %s): one context per "
				   "rank and job; close the other first", ctx->cfg->name, ctx->rank,
				   busy_here ? "this process" : "another process on this node", path);
	else if (e == ENOMEM)
		rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory for the lock registry");
	else if (e)
		rc = ckpt_err__errno(err, e, "lock %s", path);
	if (rc == CKPT_OK)
		return rc;
fail:
	close(ctx->lock_fd);
	ctx->lock_fd = -1;
	return rc;
}

/* Drop the job-rank lock: out of the registry, then close (which releases it). */
static void unlock_job(struct ckpt_ctx *ctx)
{
	if (ctx->lock_fd < 0)
		return;
	pthread_mutex_lock(&held_mu);
	for (size_t i = 0; i < nheld; i++)
		if (held[i].fd == ctx->lock_fd) {
			held[i] = held[--nheld];
			break;
		}
	pthread_mutex_unlock(&held_mu);
	close(ctx->lock_fd);
	ctx->lock_fd = -1;
}

void ckpt_ctx__free(struct ckpt_ctx *ctx)
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
	ckpt_commit__lease_release(ctx); /* after the drains: it was held through them */
	ckpt_drain__free_deferred(ctx);
	unlock_job(ctx); /* releases the job lock */
	pthread_mutex_destroy(&ctx->api_mu);
	pthread_mutex_destroy(&ctx->mu);
	pthread_cond_destroy(&ctx->cv);
	free(ctx);
}

int ckpt_ctx__open(struct ckpt_ctx **out, const ckpt_config *cfg, uint32_t rank, uint32_t nranks,
		   ckpt_commit_fn commit, ckpt_vote_fail_fn vote_fail, void *mpi,
		   struct ckpt_err *err)
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
	ctx->vote_fail = vote_fail;
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
	/* One writer per job (docs/CONCURRENCY.md): rank 0 takes the writer lease. While another
	 * live writer holds it this context opens as a non-writer: it reads, deletes nothing on the
	 * shared tier, and its commits are refused until the lease is free. */
	if (rank == 0) {
		struct ckpt_err why = { "" };

		if ((rc = ckpt_commit__lease_take(ctx, &why)) < 0) {
			ckpt_err__copy(err, &why);
			goto fail;
		}
		if (rc == 0)
			ckpt_config__log(cfg, 1, "%s; it opens as a reader: its saves stay local, "
					 "their drains fail with CKPT_EBUSY until that writer is gone",
					 why.msg);
	}
	ckpt_store__cleanup_tmp(ctx->local_job);
	if (ckpt_commit__lease_held(ctx))
		ckpt_store__cleanup_tmp(ctx->shared_job);
	*out = ctx;
	return CKPT_OK;
fail:
	ckpt_ctx__free(ctx);
	return rc;
}

void ckpt_ctx__sweep(struct ckpt_ctx *ctx)
{
	char dir[CKPT_PATH_MAX], mpath[CKPT_PATH_MAX + 16];
	struct ckpt_manifest m;
	struct stat st;
	uint64_t *steps, now;
	size_t n;

	/* Only the writer deletes on the shared tier, and only by rule S (store.h): never a live
	 * writer's in-flight shard, never a save readers may still read. */
	if (!ckpt_commit__lease_held(ctx) ||
	    ckpt_store__fs_now(ctx->shared_job, &now, NULL) < 0 ||
	    ckpt_store__list_steps(ctx->shared_job, &steps, &n, NULL) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (ckpt_store__step_dir(dir, sizeof(dir), ctx->shared_job, steps[i]) < 0)
			continue;
		snprintf(mpath, sizeof(mpath), "%s/%s", dir, CKPT_MANIFEST_NAME);
		/* the MANIFEST's identity before it is read: rule S (1) compares it afterwards */
		if (lstat(mpath, &st) < 0 ||
		    ckpt_step__manifest(ctx->shared_job, steps[i], &m, 0, NULL) < 0)
			continue;
		ckpt_store__sweep_superseded(dir, m.save_id, &st, now, ctx->cfg->read_grace);
		ckpt_fmt__manifest_free(&m);
	}
	free(steps);
}

int ckpt_ctx__start(struct ckpt_ctx *ctx, struct ckpt_err *err)
{
	int rc = ckpt_drain__start(ctx, err);

	if (rc < 0)
		ckpt_drain__stop(ctx, 0);
	return rc;
}

void ckpt_ctx__wait_progress(struct ckpt_ctx *ctx)
{
	if (ctx->mpi)
		ckpt_mpi__wait_progress(ctx);
	else
		pthread_cond_wait(&ctx->cv, &ctx->mu);
}

int ckpt_ctx__save_local(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id,
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
		ckpt_ctx__wait_progress(ctx); /* with MPI, commits settle only through progress */
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

int ckpt_ctx__step_usable(struct ckpt_ctx *ctx, uint64_t step)
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

int ckpt_ctx__candidates(struct ckpt_ctx *ctx, uint64_t **out, size_t *n)
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

int ckpt_ctx__shutdown(struct ckpt_ctx *ctx)
{
	int rc = CKPT_OK, drc;

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
		ckpt_mpi__close(ctx);
	return rc;
}
