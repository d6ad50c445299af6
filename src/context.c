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
#include <time.h>
#include <unistd.h>

#include "commit.h"
#include "commit_mpi.h"
#include "context.h"
#include "drain.h"
#include "internal.h"
#include "retention.h"
#include "stage.h"
#include "step.h"
#include "storage.h"

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ckpt_open failures have no context to carry their message: ckpt_errmsg(NULL) reads this. */
static __thread struct ckpt_err open_err;

struct ckpt_err *ckpt_ctx__open_err(void)
{
	return &open_err;
}

/* shared_dir must exist: creating a missing one would put checkpoints on whatever filesystem
 * holds the mount point when the volume is not mounted. local_dir is created (with its parents)
 * when missing: the local tier is ephemeral by definition, and a recreated node starts empty. */
static int check_dir(const char *key, const char *dir, int create, char *real,
		     struct ckpt_err *err)
{
	struct stat st;
	int rc;

	if (!dir)
		return ckpt_err__set(err, CKPT_EINVAL, "%s is not set (config key %s or CKPT_%s)",
				     key, key, !strcmp(key, "local_dir") ? "LOCAL_DIR" : "SHARED_DIR");
	if (create && stat(dir, &st) < 0 && errno == ENOENT &&
	    (rc = ckpt_store__mkdirs(dir, err)) < 0) /* durable: each new entry's parent fsync'd */
		return rc;
	if (stat(dir, &st) < 0)
		return ckpt_err__errno(err, errno, "%s %s%s", key, dir, errno == ENOENT ?
				       " does not exist (is the volume mounted? libckpt never "
				       "creates shared_dir)" : "");
	if (!S_ISDIR(st.st_mode))
		return ckpt_err__set(err, CKPT_EINVAL, "%s %s is not a directory", key, dir);
	if (access(dir, W_OK | X_OK) < 0)
		return ckpt_err__errno(err, errno, "%s %s is not writable", key, dir);
	if (!realpath(dir, real))
		return ckpt_err__errno(err, errno, "realpath %s", dir);
	return CKPT_OK;
}

/* The shallowest missing directory on the way to dir ("" when dir exists or is unset): the first
 * one that creating dir makes. */
static void first_missing(const char *dir, char *top, size_t len)
{
	char parent[PATH_MAX];
	struct stat st;
	char *slash;

	top[0] = '\0';
	if (!dir || !*dir || len > sizeof(parent) || stat(dir, &st) == 0 || errno != ENOENT ||
	    snprintf(top, len, "%s", dir) >= (int)len) {
		top[0] = '\0';
		return;
	}
	for (;;) {
		size_t n = strlen(top);

		while (n > 1 && top[n - 1] == '/')
			top[--n] = '\0';
		memcpy(parent, top, n + 1);
		if (!(slash = strrchr(parent, '/')) || slash == parent)
			return; /* top is "x" or "/x": its parent, "." or "/", exists */
		*slash = '\0';
		if (stat(parent, &st) == 0)
			return; /* the parent exists: top is the first directory to make */
		memcpy(top, parent, strlen(parent) + 1);
	}
}

/* Remove the empty directories from dir up to top (both included), as made by an open that then
 * failed. Not durable, and need not be: an empty directory left by a crash here is harmless. */
static void undo_mkdirs(const char *dir, const char *top)
{
	char buf[PATH_MAX];
	char *slash;

	if (!top[0] || snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
		return;
	for (size_t n = strlen(buf); n > 1 && buf[n - 1] == '/'; n--)
		buf[n - 1] = '\0';
	while (rmdir(buf) == 0 && strcmp(buf, top) && (slash = strrchr(buf, '/')) && slash != buf)
		*slash = '\0';
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

/* ---- the probes of shared_dir at open, in a thread with a deadline (issue 13) ----
 * On a hard NFS mount whose server is away every call on the volume blocks in the kernel, for as
 * long as the outage lasts. ckpt_open waits probe_timeout seconds for the probes, then fails with
 * CKPT_ETIMEDOUT and a message that says the volume is not responding; the probe thread, which
 * cannot be stopped, owns its memory (a reference count with the opener) and frees it when its
 * call returns. */
struct probe {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refs, done, rc;
	const char *stage;            /* what the thread is doing: for the message */
	struct ckpt_config *cfg;
	char local[PATH_MAX], shared[PATH_MAX], job[CKPT_PATH_MAX];
	uint32_t rank;
	uint64_t dev, ino;
	struct ckpt_err err;
};

static void probe_unref(struct probe *p)
{
	int last;

	pthread_mutex_lock(&p->mu);
	last = --p->refs == 0;
	pthread_mutex_unlock(&p->mu);
	if (!last)
		return;
	ckpt_config_free(p->cfg);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
}

static void probe_stage(struct probe *p, const char *stage)
{
	pthread_mutex_lock(&p->mu);
	p->stage = stage;
	pthread_mutex_unlock(&p->mu);
}

static int probe_run(struct probe *p)
{
	const struct ckpt_config *cfg = p->cfg;
	struct stat st;
	int rc;

	probe_stage(p, "stat, access and realpath of shared_dir");
	if ((rc = check_dir("shared_dir", cfg->shared_dir, 0, p->shared, &p->err)) < 0)
		return rc;
	if (is_within(p->shared, p->local))
		return ckpt_err__set(&p->err, CKPT_EINVAL,
				     "shared_dir %s is %s local_dir %s: the shared copy must live on "
				     "another (persistent) volume", p->shared,
				     strcmp(p->shared, p->local) ? "inside" : "the same directory as",
				     p->local);
	/* A shared_dir that would not outlive this node (tmpfs, overlay, a node disk, /home on
	 * Kubernetes, local_dir's filesystem) is a warning, or an error with require_persistent. */
	probe_stage(p, "the storage check of shared_dir (statfs, mountinfo)");
	if ((rc = ckpt_storage__check(cfg, p->local, p->shared, p->rank, &p->err)) < 0)
		return rc;
	if (snprintf(p->job, sizeof(p->job), "%s/%s", p->shared, cfg->name) >= (int)sizeof(p->job))
		return ckpt_err__set(&p->err, CKPT_EINVAL, "directory paths too long");
	probe_stage(p, "creating the job directory on shared_dir");
	if ((rc = ckpt_store__mkdirs(p->job, &p->err)) < 0)
		return rc;
	if (stat(p->shared, &st) < 0)
		return ckpt_err__errno(&p->err, errno, "stat %s", p->shared);
	p->dev = (uint64_t)st.st_dev;
	p->ino = (uint64_t)st.st_ino;
	/* (temporary files on shared_dir: only the writer-lease holder removes them, after the
	 * lease is taken: ckpt_ctx__open) */
	return CKPT_OK;
}

static void *probe_main(void *arg)
{
	struct probe *p = arg;
	int rc;

	pthread_setname_np(pthread_self(), "ckpt-probe");
	rc = probe_run(p);
	pthread_mutex_lock(&p->mu);
	p->rc = rc;
	p->done = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	probe_unref(p);
	return NULL;
}

static int probe_shared(const struct ckpt_config *cfg, const char *local, char *shared,
			uint32_t rank, uint64_t *dev, uint64_t *ino, struct ckpt_err *err)
{
	struct probe *p = calloc(1, sizeof(*p));
	struct timespec dl;
	double t = cfg->probe_timeout;
	pthread_t th;
	int rc;

	if (!p || ckpt_config__dup(&p->cfg, cfg) < 0) {
		free(p);
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for the probes of shared_dir");
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->refs = 2;
	p->rank = rank;
	snprintf(p->local, sizeof(p->local), "%s", local);
	if ((rc = pthread_create(&th, NULL, probe_main, p)) != 0) {
		p->refs = 1; /* no thread: probe here, without a bound */
		rc = probe_run(p);
		p->done = 1;
	} else {
		pthread_detach(th);
	}
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += (time_t)t;
	dl.tv_nsec += (long)((t - (double)(time_t)t) * 1e9);
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&p->mu);
	while (!p->done && pthread_cond_timedwait(&p->cv, &p->mu, &dl) != ETIMEDOUT)
		;
	if (!p->done) {
		rc = ckpt_err__set(err, CKPT_ETIMEDOUT, "shared_dir %s is not responding: no answer "
				   "within probe_timeout (%g s) to %s; nothing was written (is its "
				   "server down? a hard NFS mount waits for it)", cfg->shared_dir, t,
				   p->stage ? p->stage : "the first probe");
	} else if ((rc = p->rc) < 0) {
		ckpt_err__copy(err, &p->err);
	} else {
		memcpy(shared, p->shared, sizeof(p->shared));
		*dev = p->dev;
		*ino = p->ino;
	}
	pthread_mutex_unlock(&p->mu);
	probe_unref(p);
	return rc;
}

void ckpt_ctx__free(struct ckpt_ctx *ctx)
{
	if (!ctx)
		return;
	/* The context's own part first; the rest (records, trash, lease, config, locks, ctx) is
	 * freed by the drain module, at once or by the last drain thread stuck in the kernel: the
	 * drain never calls back up into the context. */
	ckpt_stage__free(ctx); /* its threads were stopped by ckpt_ctx__shutdown (if it ran) */
	ckpt_shard__writer_free(ctx->writer);
	ctx->writer = NULL;
	ckpt_codec__free(ctx->codec);
	ctx->codec = NULL;
	if (ctx->threads) {
		/* The job lock goes now, whatever the drain threads do: the next ckpt_open (this
		 * process or another) takes over the local copies. A stuck thread must not close
		 * it later: in this process that would drop the next context's lock. */
		unlock_job(ctx);
	} else {
		ckpt_commit__lease_release(ctx);
		unlock_job(ctx); /* releases the job lock */
	}
	if (ckpt_drain__release(ctx, 1))
		return; /* a drain thread stuck in the kernel frees ctx when it leaves */
}

int ckpt_ctx__open(struct ckpt_ctx **out, const ckpt_config *cfg, uint32_t rank, uint32_t nranks,
		   void *mpi, struct ckpt_err *err)
{
	char local[PATH_MAX], shared[PATH_MAX], top[PATH_MAX];
	struct ckpt_ctx *ctx;
	uint64_t dev = 0, ino = 0, t0 = mono_ns();
	int rc;

	*out = NULL;
	if ((rc = ckpt_config__check(cfg, err)) < 0)
		return rc;
	/* A missing local_dir is created (check_dir); if shared_dir then fails its probes, the
	 * directories this open made are removed again, so that a failed open leaves nothing. */
	first_missing(cfg->local_dir, top, sizeof(top));
	if ((rc = check_dir("local_dir", cfg->local_dir, 1, local, err)) < 0 ||
	    (rc = probe_shared(cfg, local, shared, rank, &dev, &ino, err)) < 0) {
		undo_mkdirs(cfg->local_dir, top);
		return rc;
	}
	if (!(ctx = calloc(1, sizeof(*ctx))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for a context");
	ctx->lock_fd = -1;
	pthread_mutex_init(&ctx->api_mu, NULL);
	pthread_mutex_init(&ctx->mu, NULL);
	pthread_cond_init(&ctx->cv, NULL);
	ctx->rank = rank;
	ctx->nranks = nranks;
	ctx->mpi = mpi;
	ctx->with_mpi = mpi != NULL;
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
	if ((rc = ckpt_store__mkdirs(ctx->local_job, err)) < 0)
		goto fail;
	snprintf(ctx->shared_root, sizeof(ctx->shared_root), "%s", shared);
	ctx->shared_dev = dev;
	ctx->shared_ino = ino;
	if ((rc = lock_job(ctx, err)) < 0)
		goto fail;
	if ((rc = ckpt_shard__writer_new(&ctx->writer, cfg->io_backend, cfg->io_depth, err)) < 0)
		goto fail;
	if ((rc = ckpt_codec__new(&ctx->codec, cfg->compress_level)) < 0) {
		ckpt_err__set(err, rc, "out of memory for a codec");
		goto fail;
	}
	ckpt_store__cleanup_tmp(ctx->local_job);
	if (!mpi) {
		/* Single process: the rest is work on the shared tier (the writer lease, the sweep,
		 * the scan for steps to drain again), which a drain thread does while ckpt_open
		 * waits for it, until probe_timeout seconds after the open began
		 * (ckpt_ctx__wait_open; drain.c: open_work). */
		ctx->open_work = 1;
		ctx->pending = 1;
		ctx->open_deadline_ns = t0 + (uint64_t)(cfg->probe_timeout * 1e9);
		*out = ctx;
		return CKPT_OK;
	}
	/* With MPI, here (the collective recovery follows; its bound is mpi_timeout's and the
	 * volume's). One writer per job (docs/CONCURRENCY.md): rank 0 takes the writer lease.
	 * While another live writer holds it this context opens as a non-writer: it reads, deletes
	 * nothing on the shared tier, and its commits are refused until the lease is free. */
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
	if (ckpt_commit__lease_held(ctx))
		ckpt_store__cleanup_tmp(ctx->shared_job);
	*out = ctx;
	return CKPT_OK;
fail:
	ckpt_ctx__free(ctx);
	return rc;
}

int ckpt_ctx__start(struct ckpt_ctx *ctx, struct ckpt_err *err)
{
	int rc = ckpt_drain__start(ctx, err);

	if (rc < 0)
		ckpt_drain__stop(ctx, 0); /* the caller's ckpt_ctx__free joins the threads */
	return rc;
}

void ckpt_ctx__wait_open(struct ckpt_ctx *ctx)
{
	struct timespec dl;
	uint64_t now = mono_ns(), left;
	int late;

	pthread_mutex_lock(&ctx->mu);
	left = ctx->open_deadline_ns > now ? ctx->open_deadline_ns - now : 0;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += (time_t)(left / 1000000000u);
	dl.tv_nsec += (long)(left % 1000000000u);
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	while (ctx->open_work && ctx->alive &&
	       pthread_cond_timedwait(&ctx->cv, &ctx->mu, &dl) != ETIMEDOUT)
		;
	late = ctx->open_work != 0;
	pthread_mutex_unlock(&ctx->mu);
	if (late)
		ckpt_config__log(ctx->cfg, 1, "shared_dir %s is not responding: it answered the probes "
				 "of ckpt_open but not the work after them (the writer lease, the "
				 "sweep, the scan for steps to drain again) within probe_timeout "
				 "(%g s); ckpt_open returns and saves go on at local speed, that work "
				 "and the drains follow when the volume answers", ctx->shared_root,
				 ctx->cfg->probe_timeout);
}

void ckpt_ctx__wait_progress(struct ckpt_ctx *ctx)
{
	if (ctx->mpi)
		ckpt_mpi__wait_progress(ctx);
	else
		pthread_cond_wait(&ctx->cv, &ctx->mu);
}

/* The save path's look at the drain (ctx->mu held): once per stall, a warning that names the
 * volume and how long it has been stuck (drain.c says when it answers again). */
static void warn_if_stalled(struct ckpt_ctx *ctx)
{
	double stuck = ckpt_drain__stalled(ctx);

	if (stuck > 0 && !ctx->stall_warned_ns) {
		ctx->stall_warned_ns = ckpt_store__now_ns();
		ckpt_config__log(ctx->cfg, 1, "shared_dir %s is not responding: the drain has made no "
				 "progress for %.0f s; ckpt_save goes on at local speed and skips "
				 "superseded steps until it answers", ctx->shared_root, stuck);
	}
}

/* Remove the local copies of steps that the drain skipped (superseded before it reached them).
 * Without ctx->mu: an unlink of a large file takes a while. The newer step is durable locally. */
void ckpt_ctx__remove_skipped(struct ckpt_ctx *ctx, const uint64_t *skip, size_t n)
{
	char dir[CKPT_PATH_MAX], path[CKPT_PATH_MAX + 64], base[64];

	ckpt_store__local_name(base, sizeof(base), ctx->rank);
	for (size_t i = 0; i < n; i++) {
		if (ckpt_store__step_dir(dir, sizeof(dir), ctx->local_job, skip[i]) < 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, base);
		unlink(path);
		rmdir(dir); /* fails while other ranks of this node have files there: fine */
	}
}

int ckpt_ctx__save_local(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id,
			 const ckpt_region *regs, size_t n)
{
	uint64_t skip[64];
	size_t nskip = 0;
	struct ckpt_header h = { CKPT_FMT_VERSION, 0, step, save_id, ctx->rank, ctx->nranks,
				 (uint32_t)n, CKPT_ALIGN, ckpt_store__now_ns() };
	struct ckpt_step_rec *rec;
	char dir[CKPT_PATH_MAX], base[64];
	int rc, prev_state, new_dir, published = 0;

	/* Snapshot mode: stage the step and return; a step the pool cannot hold is written here. */
	if (ctx->cfg->stage_bytes && (rc = ckpt_stage__save(ctx, step, save_id, regs, n)) !=
	    CKPT_STAGE_DIRECT)
		return rc;
	if ((rc = ckpt_store__step_dir(dir, sizeof(dir), ctx->local_job, step)) < 0)
		return ckpt_err__set(&ctx->err, rc, "path too long: %s", ctx->local_job);
	/* Backpressure. Training never waits for the shared volume (issue 13); when max_pending
	 * drains are behind, the queued older steps are skipped below, once this one is durable
	 * locally. With MPI every rank must skip the same steps: api_mpi.c waits stall_wait before
	 * the ranks agree, and skips once every rank's step is durable locally. */
	pthread_mutex_lock(&ctx->mu);
	if (!ctx->mpi && ctx->pending >= ctx->cfg->max_pending && !ctx->behind) {
		/* A healthy drain that is merely busy gets stall_wait seconds to make room, so
		 * that every step is drained; once that failed, the next saves skip at once. */
		struct timespec dl;
		double w = ctx->cfg->stall_wait;

		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += (time_t)w;
		dl.tv_nsec += (long)((w - (double)(time_t)w) * 1e9);
		if (dl.tv_nsec >= 1000000000L) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000L;
		}
		while (ctx->pending >= ctx->cfg->max_pending &&
		       pthread_cond_timedwait(&ctx->cv, &ctx->mu, &dl) != ETIMEDOUT)
			;
		ctx->behind = ctx->pending >= ctx->cfg->max_pending;
	}
	if (ctx->pending < ctx->cfg->max_pending)
		ctx->behind = 0;
	warn_if_stalled(ctx);
	if (!(rec = ckpt_retention__rec(ctx, step, 1))) {
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
		rec->saved_ns = h.created_ns;
		if (prev_state == CKPT_STATE_NONE)
			rec->rc = CKPT_OK; /* a step skipped before is saved anew */
		/* This step is durable locally: the older ones still waiting for the drain are
		 * superseded. Local disk stays within keep_local + max_pending steps. */
		if (!ctx->mpi && ctx->pending >= ctx->cfg->max_pending)
			nskip = ckpt_drain__skip_superseded(ctx, step, skip, 64);
		ckpt_drain__enqueue(ctx, rec);
		/* and the older steps whose drains failed (a soft mount's EIO, a full volume): not
		 * retried, their local copies go (issue 13: local disk stays bounded) */
		ckpt_retention__release_failed(ctx);
	}
	pthread_mutex_unlock(&ctx->mu);
	if (nskip) {
		ckpt_ctx__remove_skipped(ctx, skip, nskip);
		ckpt_config__log(ctx->cfg, 2, "step %llu saved while the drain is behind: %zu older "
				 "undrained step(s) skipped (newest first: %llu)",
				 (unsigned long long)step, nskip, (unsigned long long)skip[nskip - 1]);
	}
	return rc;
}

int ckpt_ctx__step_save(struct ckpt_ctx *ctx, uint64_t step, struct ckpt_pin *out,
			struct ckpt_err *err)
{
	struct ckpt_err lerr = { "" };
	struct ckpt_shard *s = NULL;
	uint32_t lnr;
	int lrc, mrc;

	memset(out, 0, sizeof(*out));
	out->step = step;
	lrc = ckpt_step__open_local(&s, ctx->local_job, step, ctx->rank, &lerr);
	mrc = ckpt_step__committed(ctx->shared_job, step, &out->m, err);
	if (lrc == CKPT_OK && (s->hdr.nranks == ctx->nranks ||
			       (mrc == CKPT_OK && out->m.save_id == s->hdr.save_id))) {
		/* A local copy of another world size is only one piece of a step saved elsewhere:
		 * usable when it is the committed save (the rest is on the shared tier). */
		out->save_id = s->hdr.save_id;
		out->nranks = s->hdr.nranks;
		out->created_ns = s->hdr.created_ns;
		out->local = 1;
		out->committed = mrc == CKPT_OK;
		if (mrc == CKPT_OK && out->m.save_id != out->save_id)
			ckpt_fmt__manifest_free(&out->m); /* a newer local save, not committed */
		ckpt_shard__close(s);
		return CKPT_OK;
	}
	lnr = s ? s->hdr.nranks : 0;
	ckpt_shard__close(s);
	if (mrc == CKPT_OK) {
		out->save_id = out->m.save_id;
		out->nranks = out->m.nranks;
		out->created_ns = out->m.created_ns;
		out->committed = 1;
		return CKPT_OK;
	}
	if (mrc == CKPT_ENOENT && lrc != CKPT_OK && lrc != CKPT_ENOENT) {
		ckpt_err__copy(err, &lerr);
		return lrc;
	}
	if (mrc == CKPT_ENOENT && lrc == CKPT_OK)
		return ckpt_err__set(err, CKPT_ENOENT, "step %llu: the local copy was saved by %u "
				     "ranks (this context has %u) and is not committed",
				     (unsigned long long)step, lnr, ctx->nranks);
	return mrc;
}

int ckpt_ctx__step_usable(struct ckpt_ctx *ctx, uint64_t step)
{
	struct ckpt_pin p;

	if (ckpt_ctx__step_save(ctx, step, &p, NULL) < 0)
		return 0;
	ckpt_fmt__manifest_free(&p.m);
	return 1;
}

struct ckpt_pin *ckpt_ctx__pinned(struct ckpt_ctx *ctx, uint64_t step)
{
	for (size_t i = 0; i < ctx->npins; i++)
		if (ctx->pins[i].step == step)
			return &ctx->pins[i];
	return NULL;
}

int ckpt_ctx__pin(struct ckpt_ctx *ctx, const struct ckpt_pin *p)
{
	struct ckpt_pin *q = ckpt_ctx__pinned(ctx, p->step);

	if (!q) {
		if (ctx->npins == ctx->cappins) {
			size_t cap = ctx->cappins ? 2 * ctx->cappins : 4;

			if (!(q = realloc(ctx->pins, cap * sizeof(*q))))
				return CKPT_ENOMEM;
			ctx->pins = q;
			ctx->cappins = cap;
		}
		q = &ctx->pins[ctx->npins++];
	} else {
		ckpt_fmt__manifest_free(&q->m);
	}
	*q = *p;
	return CKPT_OK;
}

int ckpt_ctx__pin_save(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id)
{
	struct ckpt_pin p = { .step = step, .save_id = save_id, .nranks = ctx->nranks, .agreed = 1 };
	struct ckpt_shard *s;
	struct ckpt_manifest m;
	int rc;

	if (ckpt_step__open_local(&s, ctx->local_job, step, ctx->rank, NULL) == CKPT_OK) {
		if (s->hdr.save_id == save_id) {
			p.local = 1;
			p.nranks = s->hdr.nranks;
			p.created_ns = s->hdr.created_ns;
		}
		ckpt_shard__close(s);
	}
	if (ckpt_step__manifest(ctx->shared_job, step, &m, 0, NULL) == CKPT_OK) {
		p.committed = 1;
		if (m.save_id == save_id) {
			p.nranks = m.nranks;
			p.created_ns = m.created_ns;
			p.m = m;
		} else {
			ckpt_fmt__manifest_free(&m);
		}
	}
	if ((rc = ckpt_ctx__pin(ctx, &p)) < 0)
		ckpt_fmt__manifest_free(&p.m);
	return rc;
}

void ckpt_ctx__unpin(struct ckpt_ctx *ctx, uint64_t step)
{
	for (size_t i = ctx->npins; i-- > 0;)
		if (step == CKPT_STEP_ALL || ctx->pins[i].step == step) {
			ckpt_fmt__manifest_free(&ctx->pins[i].m);
			ctx->pins[i] = ctx->pins[--ctx->npins];
		}
	if (!ctx->npins) {
		free(ctx->pins);
		ctx->pins = NULL;
		ctx->cappins = 0;
	}
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

	ckpt_stage__stop(ctx); /* staged steps are written locally, then drained like the others */
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
	if (ctx->mpi && (drc = ckpt_mpi__close(ctx)) < 0 && rc == CKPT_OK)
		rc = drc;
	return rc;
}
