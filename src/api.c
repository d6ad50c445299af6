/* SPDX-License-Identifier: MIT */
/* Public ckpt_* entry points (all but ckpt_open_mpi): check arguments, take the context's lock,
 * call inward. For an MPI context ckpt_save and ckpt_latest take the collective path of
 * api_mpi.c (declared in api.h); ckpt_wait, ckpt_poll and ckpt_close drive the vote engine
 * through context.c and commit_mpi.h.
 *
 * Layering: api.c -> api_mpi.c -> context.c -> commit_mpi.c -> commit.c -> drain.c; none of them
 * calls back into this file. */
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "commit_mpi.h"
#include "context.h"
#include "drain.h"
#include "internal.h"
#include "retention.h"
#include "stage.h"
#include "step.h"

const char *ckpt_errmsg(const ckpt_ctx *ctx)
{
	return ctx ? ctx->err.msg : ckpt_ctx__open_err()->msg;
}

int ckpt_open(ckpt_ctx **out, const ckpt_config *cfg)
{
	struct ckpt_err *open_err = ckpt_ctx__open_err();
	struct ckpt_ctx *ctx;
	int rc;

	ckpt_err__clear(open_err);
	if (out)
		*out = NULL;
	if (!out || !cfg)
		return ckpt_err__set(open_err, CKPT_EINVAL, "ckpt_open: NULL %s",
				     out ? "config" : "out");
	if ((rc = ckpt_ctx__open(&ctx, cfg, 0, 1, NULL, open_err)) < 0)
		return rc;
	/* the drain threads, the first of which takes the writer lease, sweeps the shared tier and
	 * queues the local steps left to drain; ckpt_open waits for that until probe_timeout */
	if ((rc = ckpt_ctx__start(ctx, open_err)) < 0) {
		ckpt_ctx__free(ctx);
		return rc;
	}
	ckpt_ctx__wait_open(ctx);
	*out = ctx;
	return CKPT_OK;
}

#ifndef HAVE_MPI
/* The Fortran open is part of the ABI with or without MPI (ckpt_open_mpi is not: it needs
 * MPI_Comm); without MPI it says so. */
int ckpt_open_mpi_f(ckpt_ctx **out, const ckpt_config *cfg, int fortran_comm)
{
	(void)cfg;
	(void)fortran_comm;
	if (out)
		*out = NULL;
	return ckpt_err__set(ckpt_ctx__open_err(), CKPT_ENOTSUP,
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

/* Retry failed drains: the fault (full or unmounted volume) may be gone. */
static void retry_failed(struct ckpt_ctx *ctx)
{
	pthread_mutex_lock(&ctx->mu);
	for (size_t i = 0; i < ctx->nrecs; i++)
		if (ctx->recs[i]->state == CKPT_STATE_FAILED && ctx->recs[i]->save_id)
			ckpt_drain__enqueue(ctx, ctx->recs[i]);
	pthread_mutex_unlock(&ctx->mu);
}

/* ckpt_save and ckpt_save_staged: one path. `staged`: the regions' buffers are the library's
 * staging memory, owned by the library from the call on, whatever it returns. */
static int save_step(struct ckpt_ctx *ctx, uint64_t step, const ckpt_region *regions,
		     size_t nregions, int staged)
{
	int rc;

	pthread_mutex_lock(&ctx->api_mu);
	if (step == CKPT_STEP_ALL)
		rc = ckpt_err__set(&ctx->err, CKPT_EINVAL,
				   "%s: step %llu is reserved (CKPT_STEP_ALL)",
				   staged ? "ckpt_save_staged" : "ckpt_save", (unsigned long long)step);
	else
		rc = check_regions(regions, nregions, &ctx->err);
	if (staged && regions) {
		int crc = ckpt_stage__claim(ctx, regions, nregions);

		if (rc == CKPT_OK)
			rc = crc;
	}
	/* With MPI even bad arguments go through the collective, so that every rank returns. */
	if (ctx->mpi)
		rc = ckpt_api_mpi__save(ctx, step, regions, nregions, rc);
	else if (rc == CKPT_OK)
		rc = ckpt_ctx__save_local(ctx, step, ckpt_store__random64(), regions, nregions);
	if (staged)
		ckpt_stage__unclaim(ctx); /* frees what a failed save did not take */
	/* With MPI a retry must be collective: failed steps are drained again by the next
	 * ckpt_open_mpi, which agrees on them across ranks. */
	if (rc == CKPT_OK && !ctx->mpi)
		retry_failed(ctx);
	/* This context's own new save of the step is what it reads from now on. */
	if (rc == CKPT_OK)
		ckpt_ctx__unpin(ctx, step);
	pthread_mutex_unlock(&ctx->api_mu);
	return rc;
}

int ckpt_save(ckpt_ctx *ctx, uint64_t step, const ckpt_region *regions, size_t nregions)
{
	return ctx ? save_step(ctx, step, regions, nregions, 0) : CKPT_EINVAL;
}

/* Monotonic seconds, for the deadline of ckpt_wait_timeout. */
static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wait for progress until `deadline` (mono_s; negative: none). ctx->mu held. 0 at the deadline. */
static int wait_until(struct ckpt_ctx *ctx, double deadline)
{
	struct timespec dl;
	double left;

	if (deadline < 0 || ctx->mpi) {
		ckpt_ctx__wait_progress(ctx); /* with MPI a bounded wait of a few ms */
		return deadline < 0 || mono_s() < deadline;
	}
	if ((left = deadline - mono_s()) <= 0)
		return 0;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += (time_t)left;
	dl.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&ctx->cv, &ctx->mu, &dl);
	return mono_s() < deadline;
}

static int wait_step(struct ckpt_ctx *ctx, uint64_t step, double seconds)
{
	struct ckpt_step_rec *rec;
	double deadline = seconds < 0 ? -1 : mono_s() + seconds;
	int rc = CKPT_OK, in_time = 1;

	pthread_mutex_lock(&ctx->api_mu);
	pthread_mutex_lock(&ctx->mu);
	if (step == CKPT_STEP_ALL) {
		while (ctx->pending && (in_time = wait_until(ctx, deadline)))
			;
		for (size_t i = 0; in_time && !ctx->pending && i < ctx->nrecs; i++)
			if (ctx->recs[i]->state == CKPT_STATE_FAILED) {
				rc = ctx->recs[i]->rc;
				ckpt_err__copy(&ctx->err, &ctx->recs[i]->err);
				break;
			}
	} else if (!(rec = ckpt_retention__rec(ctx, step, 0)) || rec->state == CKPT_STATE_NONE) {
		if (rec && rec->rc < 0) /* skipped: superseded before it was drained */
			rc = rec->rc, ckpt_err__copy(&ctx->err, &rec->err);
		else
			rc = ckpt_err__set(&ctx->err, CKPT_ENOENT,
					   "ckpt_wait: step %llu was not saved by this context",
					   (unsigned long long)step);
	} else {
		while (rec->state == CKPT_STATE_LOCAL && (in_time = wait_until(ctx, deadline)))
			;
		if (rec->state == CKPT_STATE_FAILED || (rec->state == CKPT_STATE_NONE && rec->rc < 0)) {
			rc = rec->rc;
			ckpt_err__copy(&ctx->err, &rec->err);
		}
	}
	/* and what retention took away on the way is removed: disk space is free again */
	while (in_time && (ctx->ntrash || ctx->emptying || ctx->retaining) && ctx->nthreads)
		in_time = wait_until(ctx, deadline);
	if (!in_time && rc == CKPT_OK) {
		double stuck = ckpt_drain__stalled(ctx);

		rc = ckpt_err__set(&ctx->err, CKPT_ETIMEDOUT, "ckpt_wait_timeout: step %s%llu not "
				   "committed within %g s%s%s%s", step == CKPT_STEP_ALL ? "(all) " : "",
				   step == CKPT_STEP_ALL ? 0ULL : (unsigned long long)step, seconds,
				   stuck > 0 ? " (shared_dir " : "", stuck > 0 ? ctx->shared_root : "",
				   stuck > 0 ? " is not responding)" : "");
	}
	pthread_mutex_unlock(&ctx->mu);
	pthread_mutex_unlock(&ctx->api_mu);
	return rc;
}

int ckpt_wait(ckpt_ctx *ctx, uint64_t step)
{
	if (!ctx)
		return CKPT_EINVAL;
	return wait_step(ctx, step, -1);
}

int ckpt_wait_timeout(ckpt_ctx *ctx, uint64_t step, double seconds)
{
	if (!ctx)
		return CKPT_EINVAL;
	if (!(seconds >= 0))
		return ckpt_err__set(&ctx->err, CKPT_EINVAL, "ckpt_wait_timeout: seconds must be "
				     ">= 0 (ckpt_wait waits without a bound)");
	return wait_step(ctx, step, seconds);
}

int ckpt_region_hint(ckpt_ctx *ctx, const char *name, unsigned elem_width)
{
	size_t len;
	int rc;

	if (!ctx || !name)
		return CKPT_EINVAL;
	len = strnlen(name, CKPT_NAME_MAX + 1);
	pthread_mutex_lock(&ctx->api_mu);
	if (len == 0 || len > CKPT_NAME_MAX) {
		rc = ckpt_err__set(&ctx->err, CKPT_EINVAL, "ckpt_region_hint: a region name has "
				   "1..%d bytes", CKPT_NAME_MAX);
	} else if (elem_width > 8 || (elem_width & (elem_width - 1))) {
		rc = ckpt_err__set(&ctx->err, CKPT_EINVAL, "ckpt_region_hint: element width %u for "
				   "region '%s' (0, 1, 2, 4 or 8)", elem_width, name);
	} else {
		/* ctx->mu: the drain threads read the table when a job starts */
		pthread_mutex_lock(&ctx->mu);
		rc = ckpt_config__hint_set(&ctx->hints, name, len, elem_width, &ctx->err);
		pthread_mutex_unlock(&ctx->mu);
	}
	pthread_mutex_unlock(&ctx->api_mu);
	return rc;
}

int ckpt_drain_lag(ckpt_ctx *ctx, ckpt_lag_info *out)
{
	uint64_t oldest_ns = 0;

	if (!ctx || !out)
		return CKPT_EINVAL;
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&ctx->api_mu);
	if (ctx->mpi)
		ckpt_mpi__poll(ctx);
	pthread_mutex_lock(&ctx->mu);
	for (size_t i = 0; i < ctx->nrecs; i++) {
		const struct ckpt_step_rec *r = ctx->recs[i];

		if (r->state == CKPT_STATE_LOCAL || r->state == CKPT_STATE_COMMITTED ||
		    r->state == CKPT_STATE_FAILED) {
			if (!out->has_local || r->step > out->newest_local)
				out->newest_local = r->step;
			out->has_local = 1;
		}
		if (r->state == CKPT_STATE_COMMITTED &&
		    (!out->has_committed || r->step > out->newest_committed)) {
			out->newest_committed = r->step;
			out->has_committed = 1;
		}
	}
	/* behind: since the oldest save that still waits for its drain */
	for (size_t i = 0; i < ctx->nrecs; i++) {
		const struct ckpt_step_rec *r = ctx->recs[i];

		if (r->state == CKPT_STATE_LOCAL && r->saved_ns && (!oldest_ns || r->saved_ns < oldest_ns))
			oldest_ns = r->saved_ns;
	}
	if (oldest_ns) {
		uint64_t now = ckpt_store__now_ns();

		out->seconds_behind = now > oldest_ns ? (double)(now - oldest_ns) / 1e9 : 0;
	}
	out->pending = ctx->pending;
	out->skipped = ctx->skipped;
	out->stalled_seconds = ckpt_drain__stalled(ctx);
	out->stalled = out->stalled_seconds > 0;
	pthread_mutex_unlock(&ctx->mu);
	pthread_mutex_unlock(&ctx->api_mu);
	return CKPT_OK;
}

int ckpt_poll(ckpt_ctx *ctx, uint64_t step, int *state)
{
	struct ckpt_step_rec *rec;

	if (!ctx || !state)
		return CKPT_EINVAL;
	pthread_mutex_lock(&ctx->api_mu);
	if (ctx->mpi)
		ckpt_mpi__poll(ctx);
	pthread_mutex_lock(&ctx->mu);
	rec = ckpt_retention__rec(ctx, step, 0);
	*state = rec ? rec->state : CKPT_STATE_NONE;
	/* snapshot mode: LOCAL for the drain and retention, but not durable yet */
	if (*state == CKPT_STATE_LOCAL && ckpt_stage__staged(ctx, step))
		*state = CKPT_STATE_STAGED;
	pthread_mutex_unlock(&ctx->mu);
	pthread_mutex_unlock(&ctx->api_mu);
	return CKPT_OK;
}

int ckpt_wait_local(ckpt_ctx *ctx, uint64_t step)
{
	struct ckpt_step_rec *rec;
	int rc = CKPT_OK;

	if (!ctx)
		return CKPT_EINVAL;
	pthread_mutex_lock(&ctx->api_mu);
	pthread_mutex_lock(&ctx->mu);
	if (step == CKPT_STEP_ALL) {
		ckpt_stage__wait(ctx, step);
		for (size_t i = 0; i < ctx->nrecs; i++)
			if (ctx->recs[i]->local_rc < 0) {
				rc = ctx->recs[i]->local_rc;
				ckpt_err__copy(&ctx->err, &ctx->recs[i]->err);
				break;
			}
	} else if (!(rec = ckpt_retention__rec(ctx, step, 0)) || rec->state == CKPT_STATE_NONE) {
		rc = ckpt_err__set(&ctx->err, CKPT_ENOENT,
				   "ckpt_wait_local: step %llu was not saved by this context",
				   (unsigned long long)step);
	} else {
		ckpt_stage__wait(ctx, step);
		if ((rc = rec->local_rc) < 0)
			ckpt_err__copy(&ctx->err, &rec->err);
	}
	pthread_mutex_unlock(&ctx->mu);
	pthread_mutex_unlock(&ctx->api_mu);
	return rc;
}

int ckpt_stage_alloc(ckpt_ctx *ctx, size_t size, void **out)
{
	int rc;

	if (out)
		*out = NULL;
	if (!ctx)
		return CKPT_EINVAL;
	pthread_mutex_lock(&ctx->api_mu);
	if (!out)
		rc = ckpt_err__set(&ctx->err, CKPT_EINVAL, "ckpt_stage_alloc: NULL out");
	else
		rc = ckpt_stage__alloc(ctx, size, out);
	pthread_mutex_unlock(&ctx->api_mu);
	return rc;
}

int ckpt_stage_free(ckpt_ctx *ctx, void *buf)
{
	int rc;

	if (!ctx)
		return CKPT_EINVAL;
	pthread_mutex_lock(&ctx->api_mu);
	rc = ckpt_stage__free_buf(ctx, buf);
	pthread_mutex_unlock(&ctx->api_mu);
	return rc;
}

int ckpt_save_staged(ckpt_ctx *ctx, uint64_t step, const ckpt_region *regions, size_t nregions)
{
	return ctx ? save_step(ctx, step, regions, nregions, 1) : CKPT_EINVAL;
}

/* A step that ckpt_latest passes over because a copy of it is damaged (not merely absent, in
 * progress, or removed meanwhile): say so, or the caller gets an older step and no reason. */
static void warn_damaged(struct ckpt_ctx *ctx, uint64_t step, int rc, const char *msg)
{
	if (rc != CKPT_OK && rc != CKPT_ENOENT && rc != CKPT_ESTALE)
		ckpt_config__log(ctx->cfg, 1, "step %llu is damaged, skipped: %s",
				 (unsigned long long)step, msg);
}

static int same_steps(const uint64_t *a, size_t na, const uint64_t *b, size_t nb)
{
	return na == nb && (!na || !memcmp(a, b, na * sizeof(*a)));
}

/* The newest usable step, pinned to the save it is read from. A step listed but gone when it is
 * looked at (retired by a writer's retention), or not committed yet when it is looked at, can
 * leave a scan that found nothing although a committed step existed throughout (the writer
 * committed step N+1 after we passed it, then retired step N before we reached it): when the
 * listing changed during the scan, scan again (bounded). */
static int latest_single(struct ckpt_ctx *ctx, uint64_t *step)
{
	uint64_t *v = NULL, *w = NULL;
	size_t n = 0, nw = 0;
	int rc;

	if ((rc = ckpt_ctx__candidates(ctx, &v, &n)) < 0)
		return rc;
	for (int round = 0; round < CKPT_STEP_RETRIES; round++) {
		for (size_t i = 0; i < n; i++) {
			struct ckpt_err e = { "" };
			struct ckpt_pin p;

			if ((rc = ckpt_ctx__step_save(ctx, v[i], &p, &e)) == CKPT_OK) {
				/* ckpt_latest (re)pins: the loads that follow read this save */
				if ((rc = ckpt_ctx__pin(ctx, &p)) < 0) {
					ckpt_fmt__manifest_free(&p.m);
					rc = ckpt_err__set(&ctx->err, rc, "out of memory for a pin");
				} else {
					*step = v[i];
				}
				goto out;
			}
			warn_damaged(ctx, v[i], rc, e.msg);
		}
		if ((rc = ckpt_ctx__candidates(ctx, &w, &nw)) < 0)
			goto out;
		if (same_steps(v, n, w, nw))
			break;
		free(v);
		v = w;
		n = nw;
		w = NULL;
	}
	rc = ckpt_err__set(&ctx->err, CKPT_ENOENT, "no complete step of job '%s' on either tier",
			   ctx->cfg->name);
out:
	free(v);
	free(w);
	return rc;
}

int ckpt_latest(ckpt_ctx *ctx, uint64_t *step)
{
	int rc;

	if (!ctx || !step)
		return CKPT_EINVAL;
	pthread_mutex_lock(&ctx->api_mu);
	if (ctx->mpi)
		rc = ckpt_api_mpi__latest(ctx, step);
	else
		rc = latest_single(ctx, step);
	pthread_mutex_unlock(&ctx->api_mu);
	return rc;
}

int ckpt_list_steps(ckpt_ctx *ctx, ckpt_step_info *out, size_t cap, size_t *count)
{
	uint64_t *v = NULL;
	size_t n = 0, k = 0;
	int rc;

	if (!ctx)
		return CKPT_EINVAL;
	pthread_mutex_lock(&ctx->api_mu);
	if (!count || (cap && !out)) {
		rc = ckpt_err__set(&ctx->err, CKPT_EINVAL, "ckpt_list_steps: NULL %s",
				   count ? "out with cap > 0" : "count");
		goto out;
	}
	if ((rc = ckpt_ctx__candidates(ctx, &v, &n)) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct ckpt_err e = { "" };
		struct ckpt_pin p;
		int src = ckpt_ctx__step_save(ctx, v[i], &p, &e);

		if (src < 0) {
			warn_damaged(ctx, v[i], src, e.msg);
			continue; /* in progress, removed meanwhile, or damaged */
		}
		if (k < cap) {
			memset(&out[k], 0, sizeof(out[k]));
			out[k].step = v[i];
			out[k].save_id = p.save_id;
			out[k].created_ns = p.created_ns;
			out[k].nranks = p.nranks;
			out[k].tiers = (p.local ? CKPT_TIER_LOCAL : 0u) |
				       (p.committed ? CKPT_TIER_SHARED : 0u);
			out[k].committed = p.committed;
		}
		k++;
		ckpt_fmt__manifest_free(&p.m);
	}
	*count = k;
out:
	free(v);
	pthread_mutex_unlock(&ctx->api_mu);
	return rc;
}

/* The shared shard of `rank` of pin p's save: through p's MANIFEST, read now when p was found as
 * a local copy. CKPT_ESTALE when that save is gone from the shared tier (or never got there). */
static int open_pinned_shared(struct ckpt_ctx *ctx, struct ckpt_pin *p, uint32_t rank,
			      struct ckpt_shard **out, struct ckpt_err *err)
{
	struct ckpt_manifest m;
	int rc;

	if (!p->m.ranks) {
		if ((rc = ckpt_step__manifest(ctx->shared_job, p->step, &m, 0, err)) < 0 &&
		    rc != CKPT_ENOENT)
			return rc;
		if (rc == CKPT_ENOENT || m.save_id != p->save_id) {
			if (rc == CKPT_OK)
				ckpt_fmt__manifest_free(&m);
			return ckpt_err__set(err, CKPT_ESTALE, "step %llu: rank %u's shard of save "
					     "%016llx, the save this context reads, is on neither "
					     "tier (the local copy was replaced or removed, and that "
					     "save is not the committed one)",
					     (unsigned long long)p->step, rank,
					     (unsigned long long)p->save_id);
		}
		p->m = m;
		p->committed = 1;
	}
	return ckpt_step__open_shared(out, ctx->shared_job, &p->m, rank, err);
}

/* Open rank's shard of p's save: the local copy when it is of that save and intact (structure
 * verified), else the committed shared one; *shared says which. */
static int open_pinned(struct ckpt_ctx *ctx, struct ckpt_pin *p, uint32_t rank,
		       struct ckpt_shard **out, int *shared)
{
	struct ckpt_err lerr = { "" };
	int rc, lrc;

	*out = NULL;
	*shared = 0;
	if (rank >= p->nranks)
		return ckpt_err__set(&ctx->err, CKPT_ENOENT, "step %llu has %u ranks, no rank %u",
				     (unsigned long long)p->step, p->nranks, rank);
	lrc = ckpt_step__open_local(out, ctx->local_job, p->step, rank, &lerr);
	if (lrc == CKPT_OK && (*out)->hdr.save_id == p->save_id)
		return CKPT_OK;
	if (lrc == CKPT_OK) {
		/* this node holds another save of the step than the one this context reads */
		ckpt_shard__close(*out);
		*out = NULL;
		lrc = CKPT_ENOENT;
	}
	if ((rc = open_pinned_shared(ctx, p, rank, out, &ctx->err)) < 0)
		return rc;
	*shared = 1;
	if (lrc != CKPT_ENOENT)
		ckpt_config__log(ctx->cfg, 1, "step %llu: local copy unusable (%s); using the shared "
				 "copy", (unsigned long long)p->step, lerr.msg);
	return CKPT_OK;
}

/* Reading one's own shard of a step that another number of ranks saved would hand over a slice
 * of another partition of the model: refuse, and say how to reshard. */
static int enranks(struct ckpt_ctx *ctx, const struct ckpt_pin *p)
{
	return ckpt_err__set(&ctx->err, CKPT_ENRANKS,
			     "step %llu of job '%s' was saved by %u ranks, this context has %u: its "
			     "own shard is not this rank's part of the model; read the %u shards "
			     "with ckpt_load_rank (ckpt_step_nranks tells how many) and reshard",
			     (unsigned long long)p->step, ctx->cfg->name, p->nranks, ctx->nranks,
			     p->nranks);
}

/*
 * Open rank's shard of `step` to read, from the save this context reads for the step: the pinned
 * one (pinned by ckpt_latest, or by the first read of the step), else the save found now, which
 * this read pins. So every read of a step by one context comes from one save; when that save is
 * removed (re-saved or retired on the shared tier, past any grace period) the read fails with
 * CKPT_ESTALE rather than reading another save. A save pinned but not read yet is chosen again
 * instead (nothing was read from it, so nothing can mix), except when the MPI ranks agreed on it.
 * `own`: the caller reads its own rank's shard as its own (ckpt_load, not ckpt_load_rank): a step
 * of another world size is CKPT_ENRANKS.
 */
static int open_step(struct ckpt_ctx *ctx, uint64_t step, uint32_t rank, int own,
		     struct ckpt_shard **out, int *shared)
{
	struct ckpt_pin *p = ckpt_ctx__pinned(ctx, step), np;
	struct ckpt_err stale = { "" };
	int rc, had_stale = 0;

	*out = NULL;
	*shared = 0;
	for (int i = 0; i < CKPT_STEP_RETRIES; i++) {
		if (!p) {
			rc = ckpt_ctx__step_save(ctx, step, &np, &ctx->err);
			if (rc == CKPT_ENOENT && had_stale) {
				ckpt_err__copy(&ctx->err, &stale);
				return CKPT_ESTALE;
			}
			if (rc == CKPT_ENOENT)
				return ckpt_err__set(&ctx->err, CKPT_ENOENT,
						     "step %llu of job '%s' is on neither tier",
						     (unsigned long long)step, ctx->cfg->name);
			if (rc < 0)
				return rc;
			if ((rc = ckpt_ctx__pin(ctx, &np)) < 0) {
				ckpt_fmt__manifest_free(&np.m);
				return ckpt_err__set(&ctx->err, rc, "out of memory for a pin");
			}
			p = ckpt_ctx__pinned(ctx, step);
		}
		if (own && p->nranks != ctx->nranks)
			return enranks(ctx, p);
		rc = open_pinned(ctx, p, rank, out, shared);
		if (rc == CKPT_OK)
			p->reads++;
		if (rc != CKPT_ESTALE || p->reads || p->agreed)
			break;
		/* nothing was read from this save yet: choose again (a vanished first choice) */
		ckpt_err__copy(&stale, &ctx->err);
		had_stale = 1;
		ckpt_ctx__unpin(ctx, step);
		p = NULL;
	}
	if (rc == CKPT_ESTALE) {
		char why[CKPT_ERRMSG_MAX];

		snprintf(why, sizeof(why), "%s", ctx->err.msg);
		ckpt_err__set(&ctx->err, CKPT_ESTALE, "%s. This context read step %llu from that save "
			      "and reads no other save of it, so that its loads never mix two saves: "
			      "call ckpt_latest to read the newest step (or its newest save) again "
			      "from the start", why, (unsigned long long)step);
	}
	return rc;
}

static int region_size(struct ckpt_ctx *ctx, uint64_t step, uint32_t rank, int own,
		       const char *name, size_t *size)
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
	if ((rc = open_step(ctx, step, rank, own, &s, &shared)) < 0)
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

int ckpt_region_size_rank(ckpt_ctx *ctx, uint64_t step, uint32_t rank, const char *name,
			  size_t *size)
{
	return region_size(ctx, step, rank, 0, name, size);
}

int ckpt_region_size(ckpt_ctx *ctx, uint64_t step, const char *name, size_t *size)
{
	return region_size(ctx, step, ctx ? ctx->rank : 0, 1, name, size);
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
	else if ((rc = open_step(ctx, step, 0, 0, &s, &shared)) == CKPT_OK)
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
	if ((rc = open_step(ctx, step, ctx->rank, 1, &s, &shared)) < 0)
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

static int load(struct ckpt_ctx *ctx, uint64_t step, uint32_t rank, int own, const char *name,
		void *buf, size_t size)
{
	const struct ckpt_region_meta *r;
	struct ckpt_shard *s = NULL, *sh = NULL;
	struct ckpt_pin *p;
	struct ckpt_err first;
	int rc, shared;

	if ((rc = open_step(ctx, step, rank, own, &s, &shared)) < 0)
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
	 * shared copy, but only of the same save (the pinned one), so a step never mixes saves. */
	first = ctx->err;
	p = ckpt_ctx__pinned(ctx, step);
	if (!p || open_pinned_shared(ctx, p, rank, &sh, &ctx->err) < 0 ||
	    !(r = ckpt_fmt__find_region(&sh->idx, name)) || r->raw_size != size) {
		ckpt_err__set(&ctx->err, rc, "%s; no committed shared copy of the same save to fall "
			      "back to", first.msg);
	} else if ((rc = ckpt_shard__read_region(sh, r, buf, ctx->codec, &ctx->err)) < 0) {
		struct ckpt_err second = ctx->err;

		ckpt_err__set(&ctx->err, rc, "local copy: %s; shared copy: %s", first.msg,
			      second.msg);
	}
out:
	ckpt_shard__close(sh);
	ckpt_shard__close(s);
	return rc;
}

static int load_api(struct ckpt_ctx *ctx, uint64_t step, uint32_t rank, int own,
		    const char *name, void *buf, size_t size)
{
	int rc;

	if (!ctx)
		return CKPT_EINVAL;
	pthread_mutex_lock(&ctx->api_mu);
	if (!name || (!buf && size))
		rc = ckpt_err__set(&ctx->err, CKPT_EINVAL, "ckpt_load: NULL %s", name ? "buf" : "name");
	else
		rc = load(ctx, step, rank, own, name, buf, size);
	pthread_mutex_unlock(&ctx->api_mu);
	return rc;
}

int ckpt_load_rank(ckpt_ctx *ctx, uint64_t step, uint32_t rank, const char *name, void *buf,
		   size_t size)
{
	return load_api(ctx, step, rank, 0, name, buf, size);
}

int ckpt_load(ckpt_ctx *ctx, uint64_t step, const char *name, void *buf, size_t size)
{
	return load_api(ctx, step, ctx ? ctx->rank : 0, 1, name, buf, size);
}

int ckpt_close(ckpt_ctx *ctx)
{
	int rc;

	if (!ctx)
		return CKPT_OK;
	pthread_mutex_lock(&ctx->api_mu);
	rc = ckpt_ctx__shutdown(ctx);
	ckpt_ctx__unpin(ctx, CKPT_STEP_ALL);
	pthread_mutex_unlock(&ctx->api_mu);
	ckpt_ctx__free(ctx);
	return rc;
}
