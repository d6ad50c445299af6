/* SPDX-License-Identifier: MIT */
/* Publishing protocol: a step becomes visible on the shared tier when its MANIFEST is renamed
 * into place. This file holds the commit point itself (ckpt_commit__point, the one function that
 * writes a MANIFEST) and the single-process commit; commit_mpi.c's vote engine calls the same
 * commit point once every rank's shard is in. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "commit.h"
#include "commit_mpi.h"
#include "internal.h"
#include "retention.h"

/* ---- The writer lease: <shared_dir>/<name>/.writer (docs/CONCURRENCY.md, FORMAT.md) ---- */

struct ckpt_lease {
	uint64_t id;            /* this writer's random id, written in the file */
	int held;               /* this context took it and has not seen it taken over */
	int fd;                 /* the lease file this context wrote, for the heartbeat */
	double period;          /* heartbeat every writer_lease / 3 seconds */
	pthread_t hb;
	int hb_running, stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

/* The ids of the leases the contexts of this process hold: a lease naming this host and this
 * pid with another id was left by a context of this process that could not remove it (its
 * shared directory was moved away at close): its writer is provably gone. */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t *live_ids;
static size_t nlive, caplive;

static void live_add(uint64_t id)
{
	pthread_mutex_lock(&live_mu);
	if (nlive == caplive) {
		size_t cap = caplive ? 2 * caplive : 8;
		uint64_t *v = realloc(live_ids, cap * sizeof(*v));

		if (v) {
			live_ids = v;
			caplive = cap;
		}
	}
	if (nlive < caplive)
		live_ids[nlive++] = id;
	pthread_mutex_unlock(&live_mu);
}

static void live_remove(uint64_t id)
{
	pthread_mutex_lock(&live_mu);
	for (size_t i = 0; i < nlive; i++)
		if (live_ids[i] == id) {
			live_ids[i] = live_ids[--nlive];
			break;
		}
	pthread_mutex_unlock(&live_mu);
}

/* Is the holder of lease li provably gone? Only from this host: its pid is dead, or it is this
 * process and no context of it holds that id. */
static int holder_gone(const struct ckpt_store_lease *li)
{
	int live = 0;

	if (strcmp(li->host, ckpt_store__hostname()))
		return 0;
	if (li->pid != (long)getpid())
		return kill((pid_t)li->pid, 0) < 0 && errno == ESRCH;
	pthread_mutex_lock(&live_mu);
	for (size_t i = 0; i < nlive && !live; i++)
		live = live_ids[i] == li->id;
	pthread_mutex_unlock(&live_mu);
	return !live;
}

static void *heartbeat(void *arg)
{
	struct ckpt_lease *l = arg;
	struct timespec ts;

	/* its own name: started by whichever thread took the lease (a drain thread, at open) */
	pthread_setname_np(pthread_self(), "ckpt-lease");
	pthread_mutex_lock(&l->mu);
	while (!l->stop) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)l->period;
		ts.tv_nsec += (long)((l->period - (double)(time_t)l->period) * 1e9);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (pthread_cond_timedwait(&l->cv, &l->mu, &ts) == ETIMEDOUT && !l->stop)
			/* The filesystem stamps its own time (NULL: "now" of the server on NFS).
			 * Through the descriptor of the file this writer created: once another writer
			 * took over (renamed its own file over the name), this touches the orphaned
			 * old file, never the new holder's. */
			futimens(l->fd, NULL);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

static int lease_new(struct ckpt_ctx *ctx)
{
	struct ckpt_lease *l;
	pthread_condattr_t ca;

	if (ctx->lease)
		return CKPT_OK;
	if (!(l = calloc(1, sizeof(*l))))
		return CKPT_ENOMEM;
	l->fd = -1;
	l->id = ckpt_store__random64();
	l->period = ctx->cfg->writer_lease / 3;
	pthread_mutex_init(&l->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cv, &ca);
	pthread_condattr_destroy(&ca);
	ctx->lease = l;
	return CKPT_OK;
}

static void describe(char *buf, size_t len, const struct ckpt_store_lease *li, int parsed,
		     double age)
{
	if (parsed == 0)
		snprintf(buf, len, "host %s pid %ld (writer id %016" PRIx64 ", heartbeat %.0f s ago)",
			 li->host, li->pid, li->id, age);
	else
		snprintf(buf, len, "an unreadable lease (last written %.0f s ago)", age);
}

int ckpt_commit__lease_take(struct ckpt_ctx *ctx, struct ckpt_err *err)
{
	char text[CKPT_LEASE_MAX], path[CKPT_PATH_MAX + 16], who[400];
	struct ckpt_store_lease me = { 0, (long)getpid(), "" };
	struct ckpt_lease *l;
	int rc, len;

	if ((rc = lease_new(ctx)) < 0)
		return ckpt_err__set(err, rc, "out of memory for the writer lease");
	l = ctx->lease;
	if (l->held)
		return 1;
	me.id = l->id;
	snprintf(me.host, sizeof(me.host), "%s", ckpt_store__hostname());
	len = ckpt_store__lease_format(text, &me);
	snprintf(path, sizeof(path), "%s/%s", ctx->shared_job, CKPT_LEASE_NAME);
	for (int attempt = 0; attempt < 3; attempt++) {
		struct ckpt_store_lease li;
		double age = 0;
		int parsed = ckpt_store__lease_read(ctx->shared_job, &li, NULL, &age);

		if (parsed == 1) {
			/* No lease: create it; of two writers racing here one link wins. */
			rc = ckpt_store__create_durable(ctx->shared_job, CKPT_LEASE_NAME, text,
							(size_t)len, err);
			if (rc < 0)
				return rc;
			if (rc == 1)
				continue; /* the other one won: judge its lease */
			/* read back: without hard links the creation is a rename, not exclusive */
			if (ckpt_store__lease_read(ctx->shared_job, &li, NULL, NULL) == 0 &&
			    li.id == l->id)
				goto taken;
			continue;
		}
		if (parsed == 0 && li.id == l->id)
			goto taken;
		describe(who, sizeof(who), &li, parsed, age);
		/* Provably gone: same host and its pid dead, or no heartbeat for writer_lease
		 * seconds of the filesystem's clock. */
		if (!(parsed == 0 && holder_gone(&li)) && age <= ctx->cfg->writer_lease) {
			ckpt_err__set(err, CKPT_EBUSY,
				      "job '%s' is written by %s: this context is not its writer "
				      "(docs/CONCURRENCY.md)", ctx->cfg->name, who);
			return 0;
		}
		ckpt_config__log(ctx->cfg, 1, "job '%s': taking over the writer lease of %s",
				 ctx->cfg->name, who);
		/* Replace the stale lease (write, fsync, rename, directory fsync); then read it back:
		 * of two writers taking over at once, the last rename wins, and the other sees it. */
		if ((rc = ckpt_store__write_durable(ctx->shared_job, CKPT_LEASE_NAME, text,
						    (size_t)len, err)) < 0)
			return rc;
		if (ckpt_store__lease_read(ctx->shared_job, &li, NULL, NULL) == 0 && li.id == l->id)
			goto taken;
	}
	ckpt_err__set(err, CKPT_EBUSY, "job '%s': another writer took the writer lease at the same "
		      "time as this one", ctx->cfg->name);
	return 0;
taken:
	pthread_mutex_lock(&l->mu); /* the heartbeat thread uses l->fd */
	if (l->fd >= 0)
		close(l->fd);
	l->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	pthread_mutex_unlock(&l->mu);
	if (!l->held)
		live_add(l->id);
	l->held = 1;
	if (l->fd >= 0 && !l->hb_running) {
		l->stop = 0;
		l->hb_running = pthread_create(&l->hb, NULL, heartbeat, l) == 0;
		/* named here too, at once: until the new thread runs it bears its creator's name
		 * ("ckpt-drain" at open), and ckpt_open may return before it has run */
		if (l->hb_running)
			pthread_setname_np(l->hb, "ckpt-lease");
	}
	return 1;
}

int ckpt_commit__lease_held(const struct ckpt_ctx *ctx)
{
	return ctx->lease && ctx->lease->held;
}

/* Before a MANIFEST is renamed into place: is the lease still this context's? Takes it when this
 * context did not hold it (another writer was alive at open and may be gone now). */
static int lease_check(struct ckpt_ctx *ctx, uint64_t step, struct ckpt_err *err)
{
	struct ckpt_store_lease li;
	char who[400];
	struct ckpt_err why = { "" };
	int parsed, rc;

	if (!ckpt_commit__lease_held(ctx)) {
		struct timespec t0, t;
	take:
		/* A job restarted while the old writer still finishes (its drains, or an orphaned
		 * rank the launcher has not killed yet): wait up to writer_lease seconds for that
		 * lease to be released or to expire, then say who holds it. A drain thread waits
		 * here, never the caller of ckpt_save. */
		clock_gettime(CLOCK_MONOTONIC, &t0);
		while ((rc = ckpt_commit__lease_take(ctx, &why)) == 0) {
			struct timespec nap = { 0, 200000000 };

			clock_gettime(CLOCK_MONOTONIC, &t);
			if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 >=
			    ctx->cfg->writer_lease)
				break;
			nanosleep(&nap, NULL);
		}
		if (rc < 0) {
			ckpt_err__copy(err, &why);
			return rc;
		}
		if (rc == 0)
			return ckpt_err__set(err, CKPT_EBUSY,
					     "step %" PRIu64 " not committed: %s; the local copy stays "
					     "and the next save retries its drain", step, why.msg);
		return CKPT_OK;
	}
	parsed = ckpt_store__lease_read(ctx->shared_job, &li, NULL, NULL);
	if (parsed == 0 && li.id == ctx->lease->id)
		return CKPT_OK;
	if (parsed == 1) { /* removed (by hand?): nobody else holds it, take it again */
		ctx->lease->held = 0;
		live_remove(ctx->lease->id);
		goto take;
	}
	ctx->lease->held = 0;
	live_remove(ctx->lease->id);
	describe(who, sizeof(who), &li, parsed, 0);
	return ckpt_err__set(err, CKPT_EBUSY,
			     "step %" PRIu64 " not committed: the writer lease of job '%s' was taken "
			     "over by %s (this process stalled longer than writer_lease?): it is no "
			     "longer the job's writer", step, ctx->cfg->name, parsed == 0 ? who :
			     "another writer");
}

void ckpt_commit__lease_abandon(struct ckpt_ctx *ctx)
{
	/* Off the list of this process's live leases: a lease naming this host, this pid and an id
	 * no live context holds is provably gone (holder_gone), so the next open takes it over by
	 * rename; this context's own commit check then sees another id and commits nothing. */
	if (ctx->lease)
		live_remove(ctx->lease->id);
}

void ckpt_commit__lease_release(struct ckpt_ctx *ctx)
{
	struct ckpt_lease *l = ctx->lease;
	struct ckpt_store_lease li;
	char path[CKPT_PATH_MAX + 16];

	if (!l)
		return;
	if (l->hb_running) {
		pthread_mutex_lock(&l->mu);
		l->stop = 1;
		pthread_cond_broadcast(&l->cv);
		pthread_mutex_unlock(&l->mu);
		pthread_join(l->hb, NULL);
	}
	/* Released: the next writer takes it at once. Only when it is still this one's (a writer
	 * that was taken over leaves the new holder's lease alone); the removal is made durable so
	 * that a crash does not bring back a lease of a process that closed cleanly. */
	if (l->held && ckpt_store__lease_read(ctx->shared_job, &li, NULL, NULL) == 0 &&
	    li.id == l->id) {
		snprintf(path, sizeof(path), "%s/%s", ctx->shared_job, CKPT_LEASE_NAME);
		if (unlink(path) == 0)
			ckpt_store__fsync_dir(ctx->shared_job, NULL);
	}
	if (l->held)
		live_remove(l->id);
	if (l->fd >= 0)
		close(l->fd);
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->cv);
	free(l);
	ctx->lease = NULL;
}

int ckpt_commit__point(struct ckpt_ctx *ctx, const struct ckpt_manifest *m, struct ckpt_err *err)
{
	char dir[CKPT_PATH_MAX];
	uint8_t *buf;
	size_t len = ckpt_fmt__manifest_size(m->nranks);
	int rc;

	if ((rc = ckpt_store__step_dir(dir, sizeof(dir), ctx->shared_job, m->step)) < 0)
		return ckpt_err__set(err, rc, "path too long: %s", ctx->shared_job);
	if (!(buf = malloc(len)))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for a manifest");
	ckpt_fmt__encode_manifest(buf, m);
	/* The shared directory must still be the one this context opened (not a volume mounted
	 * over it since): a MANIFEST written elsewhere would commit shards it cannot see. */
	if ((rc = ckpt_store__same_dir(ctx->shared_root, ctx->shared_dev, ctx->shared_ino,
				       err)) < 0) {
		free(buf);
		return rc;
	}
	/* One writer per job: the lease must still be this context's (docs/CONCURRENCY.md). */
	if (ctx->rank == 0 && (rc = lease_check(ctx, m->step, err)) < 0) {
		free(buf);
		return rc;
	}
	ckpt_config__fault(ctx->cfg->fault_kill_at, "commit.before");
	/* The commit point: write, fsync, rename over any older MANIFEST of this step, fsync the
	 * directory. Before the rename readers see the previous state (the older save of this step,
	 * or no step); after it, the new one. */
	rc = ckpt_store__write_durable(dir, CKPT_MANIFEST_NAME, buf, len, err);
	free(buf);
	if (rc < 0)
		return rc;
	ckpt_config__fault(ctx->cfg->fault_kill_at, "commit.done");
	/* Shards of earlier saves of this step are unreachable now, but a reader on another node
	 * may be reading one it found in the MANIFEST this one replaced: they stay readable for
	 * read_grace seconds, then retention retires them. A kill before they go leaves them
	 * behind; the next writer's open removes them (rule S of docs/CONCURRENCY.md). */
	ckpt_retention__defer_superseded(ctx, dir, m->save_id);
	return CKPT_OK;
}

int ckpt_commit__single(struct ckpt_ctx *ctx, const struct ckpt_drained *d, struct ckpt_err *err)
{
	struct ckpt_manifest_rank r = d->shard;
	struct ckpt_manifest m = { CKPT_FMT_VERSION, 1, d->step, d->save_id, d->created_ns, &r };

	return ckpt_commit__point(ctx, &m, err);
}

int ckpt_commit__drained(struct ckpt_ctx *ctx, const struct ckpt_drained *d, struct ckpt_err *err)
{
	if (ctx->with_mpi)
		return ckpt_mpi__commit(ctx, d, err);
	return ckpt_commit__single(ctx, d, err);
}

int ckpt_commit__vote_failed(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id, int rc,
			     const char *msg)
{
	if (!ctx->with_mpi)
		return rc;
	ckpt_mpi__vote_failure(ctx, step, save_id, rc, msg);
	return CKPT_COMMIT_PENDING;
}
