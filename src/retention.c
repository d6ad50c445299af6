/* SPDX-License-Identifier: MIT */
/* The step records of a context (what it knows of each step it saved), retention and the trash:
 * after a commit, which local copies and which committed shared steps go (keep_local,
 * keep_shared), moved out of sight at once and removed later by a drain thread. Below the commit
 * layer and the drain, which both call it; it calls neither (whether the drain is working on a
 * step is the record's `draining`, that drain.c keeps under ctx->mu). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "retention.h"
#include "step.h"

struct ckpt_step_rec *ckpt_retention__rec(struct ckpt_ctx *ctx, uint64_t step, int create)
{
	struct ckpt_step_rec *r;

	for (size_t i = 0; i < ctx->nrecs; i++)
		if (ctx->recs[i]->step == step)
			return ctx->recs[i];
	if (!create)
		return NULL;
	if (ctx->nrecs == ctx->caprecs) {
		size_t cap = ctx->caprecs ? 2 * ctx->caprecs : 16;
		struct ckpt_step_rec **nr = realloc(ctx->recs, cap * sizeof(*nr));

		if (!nr)
			return NULL;
		ctx->recs = nr;
		ctx->caprecs = cap;
	}
	if (!(r = calloc(1, sizeof(*r))))
		return NULL;
	r->step = step;
	ctx->recs[ctx->nrecs++] = r;
	return r;
}

/* Is the local copy of `step` (this rank's) committed on shared with the same save id? */
static int local_is_committed(struct ckpt_ctx *ctx, uint64_t step, uint64_t local_save)
{
	struct ckpt_manifest m;
	int ok;

	if (ckpt_step__manifest(ctx->shared_job, step, &m, 0, NULL) < 0)
		return 0;
	ok = m.save_id == local_save;
	ckpt_fmt__manifest_free(&m);
	return ok;
}

struct kept {
	uint64_t step, created, save_id;
	int keep;
	int64_t mtime_ns;       /* shared: its MANIFEST's mtime (the commit, by the fs clock), read
				 * only when left_long_ago needs it; 0 unknown */
};

static int by_step_desc(const void *a, const void *b)
{
	const struct kept *x = a, *y = b;

	return x->step < y->step ? 1 : x->step > y->step ? -1 : 0;
}

static int by_created_desc(const void *a, const void *b)
{
	const struct kept *x = a, *y = b;

	return x->created < y->created ? 1 : x->created > y->created ? -1 : 0;
}

/* Mark the `keep` highest-numbered and the `keep` most recently created entries. Both count:
 * after a job rolls back to an earlier step number, its new steps are the most recent ones and
 * must not be deleted as "old", while the higher-numbered ones stay until the user removes them. */
static void mark_kept(struct kept *v, size_t n, unsigned keep)
{
	qsort(v, n, sizeof(*v), by_step_desc);
	for (size_t i = 0; i < n; i++)
		v[i].keep = i < keep;
	qsort(v, n, sizeof(*v), by_created_desc);
	for (size_t i = 0; i < n && i < keep; i++)
		v[i].keep = 1;
}

/* The local copies of this rank (complete ones only), or the committed steps on shared. */
static size_t list_kept(struct ckpt_ctx *ctx, int shared, struct kept **out)
{
	struct ckpt_manifest m;
	struct ckpt_shard *s;
	uint64_t *steps;
	size_t n, nv = 0;

	*out = NULL;
	if (ckpt_store__list_steps(shared ? ctx->shared_job : ctx->local_job, &steps, &n, NULL) < 0)
		return 0;
	if (n && (*out = calloc(n, sizeof(**out))))
		for (size_t i = 0; i < n; i++) {
			if (shared) {
				if (ckpt_step__manifest(ctx->shared_job, steps[i], &m, 0, NULL) < 0)
					continue; /* uncommitted: maybe in progress; `ckpt gc` cleans */
				(*out)[nv++] = (struct kept){ steps[i], m.created_ns, m.save_id, 0, 0 };
				ckpt_fmt__manifest_free(&m);
			} else {
				if (ckpt_step__open_local(&s, ctx->local_job, steps[i], ctx->rank,
							  NULL) < 0)
					continue;
				(*out)[nv++] = (struct kept){ steps[i], s->hdr.created_ns,
							      s->hdr.save_id, 0, 0 };
				ckpt_shard__close(s);
			}
		}
	free(steps);
	return nv;
}

/* What waits read_grace seconds before it is retired (docs/CONCURRENCY.md): a superseded shard
 * (is_step 0, path) or a committed shared step beyond keep_shared (is_step 1, step). The
 * deadline is this node's monotonic clock: the writer measures its own elapsed time. */
struct ckpt_deferred {
	char *path;
	uint64_t step;
	int is_step;
	int seen;               /* retention's mark: the step is still one to retire */
	uint64_t due_ns;
};

/* Whether step v[i], beyond keep_shared, left the kept set read_grace seconds ago or more, by the
 * shared filesystem's clock: `keep` committed saves both higher-numbered and more recently
 * created than it, every one of them committed (its MANIFEST written) at least read_grace ago.
 * Then it has been out of the kept set at least that long whoever was watching: a writer that
 * started since (a restarted job) need not start its grace again. Without this, a job restarted
 * more often than every read_grace seconds retired nothing on the shared tier. now_ns: the
 * shared filesystem's time, 0 when unknown (then never). */
static int left_long_ago(const struct ckpt_ctx *ctx, const struct kept *v, size_t n, size_t i,
			 uint64_t now_ns)
{
	uint64_t grace = (uint64_t)(ctx->cfg->read_grace * 1e9);
	unsigned older = 0;

	if (!now_ns)
		return 0;
	for (size_t k = 0; k < n && older < ctx->cfg->keep_shared; k++)
		if (v[k].step > v[i].step && v[k].created > v[i].created && v[k].mtime_ns > 0 &&
		    (uint64_t)v[k].mtime_ns + grace <= now_ns)
			older++;
	return older >= ctx->cfg->keep_shared;
}

/* The MANIFESTs' mtimes of v (shared tier I/O: without ctx->mu), for left_long_ago. */
static void manifest_mtimes(const struct ckpt_ctx *ctx, struct kept *v, size_t n)
{
	char mp[CKPT_PATH_MAX + 16];
	struct stat st;

	for (size_t i = 0; i < n; i++) {
		ckpt_store__step_dir(mp, sizeof(mp), ctx->shared_job, v[i].step);
		strncat(mp, "/" CKPT_MANIFEST_NAME, sizeof(mp) - strlen(mp) - 1);
		v[i].mtime_ns = lstat(mp, &st) == 0 ? (int64_t)st.st_mtim.tv_sec * 1000000000 +
							      st.st_mtim.tv_nsec
						    : 0;
	}
}

/* Whether a step beyond keep_shared is not deferred yet (ctx->mu held): only then are the shared
 * filesystem's time and the MANIFESTs' mtimes needed (left_long_ago). */
static int any_new_beyond(const struct ckpt_ctx *ctx, const struct kept *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;

		if (v[i].keep)
			continue;
		while (k < ctx->ndeferred &&
		       !(ctx->deferred[k].is_step && ctx->deferred[k].step == v[i].step))
			k++;
		if (k == ctx->ndeferred)
			return 1;
	}
	return 0;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t grace_ns(const struct ckpt_ctx *ctx)
{
	return (uint64_t)(ctx->cfg->read_grace * 1e9);
}

/* Add an entry (ctx->mu held); the path is taken over. 0, or -1 when out of memory. */
static int defer(struct ckpt_ctx *ctx, char *path, uint64_t step, int is_step)
{
	if (ctx->ndeferred == ctx->capdeferred) {
		size_t cap = ctx->capdeferred ? 2 * ctx->capdeferred : 16;
		struct ckpt_deferred *d = realloc(ctx->deferred, cap * sizeof(*d));

		if (!d)
			return -1;
		ctx->deferred = d;
		ctx->capdeferred = cap;
	}
	ctx->deferred[ctx->ndeferred++] =
		(struct ckpt_deferred){ path, step, is_step, 1, mono_ns() + grace_ns(ctx) };
	return 0;
}

static void drop_deferred(struct ckpt_ctx *ctx, size_t i)
{
	free(ctx->deferred[i].path);
	ctx->deferred[i] = ctx->deferred[--ctx->ndeferred];
}

void ckpt_retention__free_deferred(struct ckpt_ctx *ctx)
{
	for (size_t i = 0; i < ctx->ndeferred; i++)
		free(ctx->deferred[i].path);
	free(ctx->deferred);
	ctx->deferred = NULL;
	ctx->ndeferred = ctx->capdeferred = 0;
}

static void retire(struct ckpt_ctx *ctx, const char *path, const char *jobdir, int is_step);

void ckpt_retention__defer_superseded(struct ckpt_ctx *ctx, const char *stepdir, uint64_t keep_id)
{
	char **paths;
	size_t n, i;

	if (ctx->cfg->read_grace <= 0) {
		ckpt_store__remove_other_saves(stepdir, keep_id);
		return;
	}
	/* Names carry the save id, which is never reused: these names never become current
	 * again, so removing exactly them later cannot touch a newer save. */
	if (ckpt_store__list_other_saves(stepdir, keep_id, &paths, &n) < 0)
		return; /* out of memory: left for the next writer's open (rule S) */
	pthread_mutex_lock(&ctx->mu);
	for (i = 0; i < n; i++) {
		int dup = 0;

		for (size_t k = 0; k < ctx->ndeferred && !dup; k++)
			dup = !ctx->deferred[k].is_step && !strcmp(ctx->deferred[k].path, paths[i]);
		if (dup || defer(ctx, paths[i], 0, 0) < 0)
			free(paths[i]);
	}
	pthread_mutex_unlock(&ctx->mu);
	free(paths);
}

/* Retire the superseded shards whose grace is over (ctx->mu held). */
static void retire_due_shards(struct ckpt_ctx *ctx)
{
	uint64_t now = mono_ns();

	for (size_t i = 0; i < ctx->ndeferred;) {
		if (!ctx->deferred[i].is_step && ctx->deferred[i].due_ns <= now) {
			retire(ctx, ctx->deferred[i].path, ctx->shared_job, 0);
			drop_deferred(ctx, i);
			continue;
		}
		i++;
	}
}

/* Retire path (a local shard, or a shared step directory) into jobdir's trash: a rename under
 * ctx->mu, the removal later by a drain thread without it (ckpt_retention__empty_trash). Where the
 * rename fails, or the trash cannot grow, the removal happens here. On the shared tier
 * (is_step), the rename runs with ctx->mu dropped: the volume may not answer, and a save must
 * never wait for it (issue 13). */
static void retire(struct ckpt_ctx *ctx, const char *path, const char *jobdir, int is_step)
{
	char trash[CKPT_PATH_MAX], *copy = NULL;
	int moved;

	if (is_step)
		pthread_mutex_unlock(&ctx->mu);
	moved = ckpt_store__retire(path, jobdir, trash, sizeof(trash)) == 0;
	if (is_step)
		pthread_mutex_lock(&ctx->mu);
	if (moved && ctx->ntrash == ctx->captrash) {
		size_t cap = ctx->captrash ? 2 * ctx->captrash : 8;
		char **t = realloc(ctx->trash, cap * sizeof(*t));

		if (t) {
			ctx->trash = t;
			ctx->captrash = cap;
		}
	}
	if (moved && ctx->ntrash < ctx->captrash) {
		if ((copy = strdup(trash))) {
			ctx->trash[ctx->ntrash++] = copy;
			pthread_cond_broadcast(&ctx->cv); /* wake a drain thread to remove it */
			return;
		}
	}
	if (moved) {
		ckpt_store__remove_retired(trash);
		return;
	}
	if (is_step)
		ckpt_store__remove_step(path, NULL);
	else
		unlink(path);
}

void ckpt_retention__empty_trash(struct ckpt_ctx *ctx)
{
	char **t = ctx->trash;
	size_t n = ctx->ntrash;

	ctx->trash = NULL;
	ctx->ntrash = ctx->captrash = 0;
	ctx->emptying = 1;
	pthread_mutex_unlock(&ctx->mu);
	ckpt_config__fault(ctx->cfg->fault_kill_at, "retention.retired");
	for (size_t i = 0; i < n; i++) {
		ckpt_store__remove_retired(t[i]);
		free(t[i]);
	}
	free(t);
	pthread_mutex_lock(&ctx->mu);
	ctx->emptying = 0;
	pthread_cond_broadcast(&ctx->cv);
}

void ckpt_retention__wait_trash(struct ckpt_ctx *ctx)
{
	while ((ctx->ntrash || ctx->emptying || ctx->retaining) && ctx->nthreads)
		pthread_cond_wait(&ctx->cv, &ctx->mu);
}

/* Is the local copy of this step kept whatever the shared tier says? (ctx->mu held) */
static int local_pinned(struct ckpt_ctx *ctx, const struct kept *k)
{
	struct ckpt_step_rec *rec = ckpt_retention__rec(ctx, k->step, 0);

	/* a step whose last drain failed keeps its local copy even when a MANIFEST exists:
	 * the commit may have been reported failed after its rename (directory fsync) */
	return k->keep ||
	       (rec && (rec->state == CKPT_STATE_LOCAL || rec->state == CKPT_STATE_FAILED ||
			rec->queued)) ||
	       (rec && rec->draining); /* the drain's job in progress */
}

/* Is a newer step than `x` durable locally (or committed), so that x's local copy is no longer
 * the newest checkpoint of this rank? (ctx->mu held) A queued or draining save was enqueued only
 * once durable (ckpt_ctx__save_local, the staging writer, the open's re-drain scan); a failed
 * one keeps its copy; a committed one is on the shared tier. A step saved later under a lower number (a job
 * that rolled back) supersedes nothing: the higher one stays and is retried. */
static const struct ckpt_step_rec *superseded_by(struct ckpt_ctx *ctx,
						 const struct ckpt_step_rec *x)
{
	for (size_t i = 0; i < ctx->nrecs; i++) {
		const struct ckpt_step_rec *r = ctx->recs[i];

		if (r->step <= x->step || !r->save_id ||
		    (r->saved_ns && x->saved_ns && r->saved_ns < x->saved_ns))
			continue;
		if (r->state == CKPT_STATE_COMMITTED || r->state == CKPT_STATE_FAILED ||
		    (r->state == CKPT_STATE_LOCAL && (r->queued || r->draining)))
			return r;
	}
	return NULL;
}

/* This rank's local copies (complete or being replaced: each step directory that holds its
 * file). One readdir and a stat per step, all on the local tier. */
static size_t count_local(struct ckpt_ctx *ctx)
{
	char dir[CKPT_PATH_MAX], path[CKPT_PATH_MAX + 64], base[64];
	struct stat st;
	uint64_t *steps;
	size_t n, k = 0;

	if (ckpt_store__list_steps(ctx->local_job, &steps, &n, NULL) < 0)
		return 0;
	ckpt_store__local_name(base, sizeof(base), ctx->rank);
	for (size_t i = 0; i < n; i++) {
		if (ckpt_store__step_dir(dir, sizeof(dir), ctx->local_job, steps[i]) < 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, base);
		k += stat(path, &st) == 0;
	}
	free(steps);
	return k;
}

/* Skip the failed step x and retire its local copy (ctx->mu held): x becomes CKPT_STATE_NONE with
 * CKPT_ENOENT, like a queued step that skip_superseded dropped. `by`: the newer step that
 * supersedes it, named in the message (with MPI: on every rank). */
static void release(struct ckpt_ctx *ctx, struct ckpt_step_rec *x, uint64_t by, const char *where)
{
	char dir[CKPT_PATH_MAX], path[CKPT_PATH_MAX + 64], base[64], why[sizeof(ctx->err.msg)];

	snprintf(why, sizeof(why), "%s", x->err.msg);
	x->state = CKPT_STATE_NONE;
	x->rc = CKPT_ENOENT;
	x->save_id = 0;
	ckpt_err__set(&x->err, CKPT_ENOENT, "step %llu was skipped: its drain failed (%s) and "
		      "step %llu, durable locally%s, superseded it; its local copy was removed "
		      "(keep_local + max_pending bound the local disk)",
		      (unsigned long long)x->step, why, (unsigned long long)by, where);
	ctx->skipped++;
	/* The local copy: renamed into the trash now (a local rename, cheap under ctx->mu),
	 * removed by a drain thread. Nothing to make durable: a crash that brings it back
	 * leaves a superseded local step that the next open drains or retention removes. */
	if (ckpt_store__step_dir(dir, sizeof(dir), ctx->local_job, x->step) < 0)
		return;
	ckpt_store__local_name(base, sizeof(base), ctx->rank);
	snprintf(path, sizeof(path), "%s/%s", dir, base);
	retire(ctx, path, ctx->local_job, 0);
	rmdir(dir); /* fails while other ranks of this node have files there: fine */
}

/* May x's local copy go? A failed drain that nothing is working on (a queued retry or a running
 * drain still reads the local copy) and that a newer step supersedes; *by: that step. */
static int releasable(struct ckpt_ctx *ctx, const struct ckpt_step_rec *x,
		      const struct ckpt_step_rec **by)
{
	return x->state == CKPT_STATE_FAILED && !x->queued && !x->draining && x->save_id &&
	       (*by = superseded_by(ctx, x)) != NULL;
}

size_t ckpt_retention__release_failed(struct ckpt_ctx *ctx)
{
	size_t n = 0, have, bound = (size_t)ctx->cfg->keep_local + ctx->cfg->max_pending;

	/* With MPI a step is dropped on every rank or on none: ckpt_save's rounds agree on it
	 * (ckpt_retention__failed_candidates and the functions after it, api_mpi.c). */
	if (ctx->with_mpi)
		return 0;
	/* Within the bound every failed drain keeps its copy and is retried (a short fault loses
	 * nothing); beyond it the oldest superseded ones go, one at a time. */
	if ((have = count_local(ctx)) <= bound)
		return 0;
	while (have > bound) {
		struct ckpt_step_rec *x = NULL;
		const struct ckpt_step_rec *by = NULL, *b;

		for (size_t i = 0; i < ctx->nrecs; i++) {
			struct ckpt_step_rec *r = ctx->recs[i];

			if ((x && r->step > x->step) || !releasable(ctx, r, &b))
				continue;
			x = r;
			by = b;
		}
		if (!x)
			break;
		release(ctx, x, by->step, "");
		n++;
		have--;
	}
	if (n)
		pthread_cond_broadcast(&ctx->cv);
	return n;
}

/* ---- the same bound with MPI: the ranks agree on the steps to release (api_mpi.c) ---- */

static int by_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* With MPI: may x go, `newest` being the step that this ckpt_save has just written on every rank?
 * As releasable, and also while the drain of `newest` is being set up (neither queued nor
 * draining yet, which superseded_by does not count): its local copy is durable all the same
 * (state LOCAL; a staged save is not, CKPT_STATE_STAGED). */
static int releasable_mpi(struct ckpt_ctx *ctx, const struct ckpt_step_rec *x, uint64_t newest)
{
	const struct ckpt_step_rec *by, *n = ckpt_retention__rec(ctx, newest, 0);

	if (releasable(ctx, x, &by))
		return 1;
	return x->state == CKPT_STATE_FAILED && !x->queued && !x->draining && x->save_id && n &&
	       n->step > x->step && n->save_id && n->state == CKPT_STATE_LOCAL &&
	       !(n->saved_ns && x->saved_ns && n->saved_ns < x->saved_ns);
}

size_t ckpt_retention__failed_candidates(struct ckpt_ctx *ctx, uint64_t newest, uint64_t *steps,
					 size_t max)
{
	uint64_t *all;
	size_t k = 0;

	if (!max || !(all = malloc((ctx->nrecs + 1) * sizeof(*all))))
		return 0;
	for (size_t i = 0; i < ctx->nrecs; i++)
		if (releasable_mpi(ctx, ctx->recs[i], newest))
			all[k++] = ctx->recs[i]->step;
	qsort(all, k, sizeof(*all), by_u64);
	if (k > max)
		k = max;
	memcpy(steps, all, k * sizeof(*steps));
	free(all);
	return k;
}

size_t ckpt_retention__local_excess(struct ckpt_ctx *ctx)
{
	size_t have = count_local(ctx), bound = (size_t)ctx->cfg->keep_local + ctx->cfg->max_pending;

	return have > bound ? have - bound : 0;
}

int ckpt_retention__release_agreed(struct ckpt_ctx *ctx, uint64_t step, uint64_t newest)
{
	struct ckpt_step_rec *x = ckpt_retention__rec(ctx, step, 0);

	/* Agreed in the round, and nothing re-queues a failed step with MPI until then (retries are
	 * collective: the next ckpt_open_mpi); checked again all the same. */
	if (!x || !releasable_mpi(ctx, x, newest))
		return 0;
	release(ctx, x, newest, " on every rank");
	pthread_cond_broadcast(&ctx->cv);
	return 1;
}

static void retention_once(struct ckpt_ctx *ctx)
{
	char dir[CKPT_PATH_MAX], path[CKPT_PATH_MAX + 64], base[64];
	struct kept *v;
	uint64_t fs_now;
	size_t n;

	/* Local tier: beyond the kept copies, one goes only once its shared copy is committed
	 * (same save id) and no drain of it is queued or running. The MANIFEST reads happen with
	 * ctx->mu dropped (issue 13: on a stalled volume they block, and ckpt_save takes ctx->mu);
	 * `keep` then holds whether the step is committed, and its state is checked again after. */
	n = list_kept(ctx, 0, &v);
	mark_kept(v, n, ctx->cfg->keep_local);
	for (size_t i = 0; i < n; i++) {
		int committed;

		/* pinned now: kept in this pass whatever happens while the lock is dropped below */
		if (local_pinned(ctx, &v[i])) {
			v[i].keep = 1;
			continue;
		}
		pthread_mutex_unlock(&ctx->mu);
		committed = local_is_committed(ctx, v[i].step, v[i].save_id);
		pthread_mutex_lock(&ctx->mu);
		v[i].keep = !committed;
	}
	for (size_t i = 0; i < n; i++) {
		if (local_pinned(ctx, &v[i]))
			continue;
		ckpt_store__step_dir(dir, sizeof(dir), ctx->local_job, v[i].step);
		ckpt_store__local_name(base, sizeof(base), ctx->rank);
		snprintf(path, sizeof(path), "%s/%s", dir, base);
		retire(ctx, path, ctx->local_job, 0);
		rmdir(dir); /* fails while other ranks of this node still have files there: fine */
	}
	free(v);
	/* Shared tier (rank 0 only): superseded shards whose grace is over, and the kept
	 * committed steps. */
	if (ctx->rank != 0)
		return;
	retire_due_shards(ctx);
	if (ctx->cfg->keep_shared == 0)
		return;
	pthread_mutex_unlock(&ctx->mu);
	n = list_kept(ctx, 1, &v); /* reads the shared tier: without ctx->mu */
	pthread_mutex_lock(&ctx->mu);
	mark_kept(v, n, ctx->cfg->keep_shared);
	fs_now = 0;
	if (ctx->cfg->read_grace > 0 && any_new_beyond(ctx, v, n)) {
		pthread_mutex_unlock(&ctx->mu); /* the shared tier: without ctx->mu */
		if (ckpt_store__fs_now(ctx->shared_job, &fs_now, NULL) < 0)
			fs_now = 0;
		else
			manifest_mtimes(ctx, v, n);
		pthread_mutex_lock(&ctx->mu);
	}
	for (size_t k = 0; k < ctx->ndeferred; k++)
		ctx->deferred[k].seen = 0;
	for (size_t i = 0; i < n; i++) {
		size_t k;

		if (v[i].keep)
			continue;
		for (k = 0; k < ctx->ndeferred; k++)
			if (ctx->deferred[k].is_step && ctx->deferred[k].step == v[i].step)
				break;
		/* A step beyond keep_shared stays in place, committed and readable, for read_grace
		 * seconds after retention first chose it (readers on other nodes may be loading
		 * it), or after it left the kept set by the shared filesystem's clock
		 * (left_long_ago: a writer started since); then the rename takes the whole step
		 * away at once. */
		if (ctx->cfg->read_grace > 0 && k == ctx->ndeferred &&
		    !left_long_ago(ctx, v, n, i, fs_now)) {
			if (defer(ctx, NULL, v[i].step, 1) == 0)
				continue;
		} else if (k < ctx->ndeferred) {
			ctx->deferred[k].seen = 1;
			if (ctx->deferred[k].due_ns > mono_ns())
				continue;
			drop_deferred(ctx, k);
		}
		ckpt_store__step_dir(dir, sizeof(dir), ctx->shared_job, v[i].step);
		retire(ctx, dir, ctx->shared_job, 1);
	}
	/* A deferred step that is kept again (re-saved: the most recent now) or gone stays. */
	for (size_t k = 0; k < ctx->ndeferred;) {
		if (ctx->deferred[k].is_step && !ctx->deferred[k].seen) {
			drop_deferred(ctx, k);
			continue;
		}
		k++;
	}
	free(v);
}

/* ---- ckpt_open's work on the shared tier, run by a drain thread (issue 13) ---- */

void ckpt_retention__sweep(struct ckpt_ctx *ctx)
{
	char dir[CKPT_PATH_MAX], mpath[CKPT_PATH_MAX + 16];
	struct ckpt_manifest m;
	struct stat st;
	uint64_t *steps, now;
	size_t n;

	/* Only the writer deletes on the shared tier (the caller holds the lease), and only by
	 * rule S (store.h): never a live writer's in-flight shard, never a save readers may still
	 * read. */
	if (ckpt_store__fs_now(ctx->shared_job, &now, NULL) < 0 ||
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

int ckpt_retention__recover_scan(struct ckpt_ctx *ctx, struct ckpt_redrain **out, size_t *nout,
				 struct ckpt_err *err)
{
	struct ckpt_redrain *v = NULL;
	uint64_t *steps;
	size_t n, k = 0;
	int rc;

	*out = NULL;
	*nout = 0;
	if ((rc = ckpt_store__list_steps(ctx->local_job, &steps, &n, err)) < 0)
		return rc;
	if (n && !(v = calloc(n, sizeof(*v)))) {
		free(steps);
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for recovery");
	}
	for (size_t i = 0; i < n; i++) {
		struct ckpt_shard *s;
		struct ckpt_manifest m;
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
		if (redrain)
			v[k++] = (struct ckpt_redrain){ steps[i], s->hdr.save_id, s->hdr.created_ns };
		ckpt_shard__close(s);
	}
	free(steps);
	*out = v;
	*nout = k;
	return CKPT_OK;
}

void ckpt_retention__apply(struct ckpt_ctx *ctx)
{
	/* One pass at a time (ctx->mu is dropped inside); a commit meanwhile asks for another. */
	if (ctx->retaining) {
		ctx->retain_again = 1;
		return;
	}
	ctx->retaining = 1;
	do {
		ctx->retain_again = 0;
		retention_once(ctx);
	} while (ctx->retain_again);
	ctx->retaining = 0;
	pthread_cond_broadcast(&ctx->cv);
}
