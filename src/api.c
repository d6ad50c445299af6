/* SPDX-License-Identifier: MIT */
/* Public ckpt_* entry points (all but ckpt_open_mpi): check arguments, take the context's lock,
 * call inward. For an MPI context ckpt_save and ckpt_latest take the collective path of
 * api_mpi.c (declared in api.h); ckpt_wait, ckpt_poll and ckpt_close drive the vote engine
 * through context.c and commit_mpi.h.
 *
 * Layering: api.c -> api_mpi.c -> context.c -> commit_mpi.c -> commit.c -> drain.c; none of them
 * calls back into this file. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "commit_mpi.h"
#include "context.h"
#include "internal.h"
#include "step.h"

const char *ckpt_version(void)
{
	return PACKAGE_VERSION;
}

const char *ckpt_errmsg(const ckpt_ctx *ctx)
{
	return ctx ? ctx->err.msg : ckpt_ctx__open_err()->msg;
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
	if ((rc = ckpt_ctx__open(&ctx, cfg, 0, 1, ckpt_commit__single, NULL, NULL, open_err)) < 0)
		return rc;
	ckpt_ctx__sweep(ctx); /* single process: with MPI another rank may be re-draining */
	if ((rc = recover_local(ctx, open_err)) < 0 || (rc = ckpt_ctx__start(ctx, open_err)) < 0) {
		ckpt_ctx__free(ctx);
		return rc;
	}
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
		rc = ckpt_api_mpi__save(ctx, step, regions, nregions, rc);
	else if (rc == CKPT_OK)
		rc = ckpt_ctx__save_local(ctx, step, ckpt_store__random64(), regions, nregions);
	/* With MPI a retry must be collective: failed steps are drained again by the next
	 * ckpt_open_mpi, which agrees on them across ranks. */
	if (rc == CKPT_OK && !ctx->mpi)
		retry_failed(ctx);
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
			ckpt_ctx__wait_progress(ctx);
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
			ckpt_ctx__wait_progress(ctx);
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
		ckpt_mpi__poll(ctx);
	pthread_mutex_lock(&ctx->mu);
	rec = ckpt_drain__rec(ctx, step, 0);
	*state = rec ? rec->state : CKPT_STATE_NONE;
	pthread_mutex_unlock(&ctx->mu);
	pthread_mutex_unlock(&ctx->api_mu);
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
		rc = ckpt_api_mpi__latest(ctx, step);
		goto out;
	}
	if ((rc = ckpt_ctx__candidates(ctx, &v, &n)) < 0)
		goto out;
	rc = ckpt_err__set(&ctx->err, CKPT_ENOENT, "no complete step of job '%s' on either tier",
			   ctx->cfg->name);
	for (size_t i = 0; i < n; i++) {
		if (ckpt_ctx__step_usable(ctx, v[i])) {
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
static int open_step(struct ckpt_ctx *ctx, uint64_t step, uint32_t rank, struct ckpt_shard **out,
		     int *shared)
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
	if ((rc = open_step(ctx, step, rank, &s, &shared)) < 0)
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
	else if ((rc = open_step(ctx, step, 0, &s, &shared)) == CKPT_OK)
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
	if ((rc = open_step(ctx, step, ctx->rank, &s, &shared)) < 0)
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

static int load(struct ckpt_ctx *ctx, uint64_t step, uint32_t rank, const char *name, void *buf,
		size_t size)
{
	const struct ckpt_region_meta *r;
	struct ckpt_shard *s = NULL, *sh = NULL;
	struct ckpt_manifest m;
	struct ckpt_err first;
	int rc, shared;
	uint64_t save_id;

	if ((rc = open_step(ctx, step, rank, &s, &shared)) < 0)
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
		rc = load(ctx, step, rank, name, buf, size);
	pthread_mutex_unlock(&ctx->api_mu);
	return rc;
}

int ckpt_load(ckpt_ctx *ctx, uint64_t step, const char *name, void *buf, size_t size)
{
	return ckpt_load_rank(ctx, step, ctx ? ctx->rank : 0, name, buf, size);
}

int ckpt_close(ckpt_ctx *ctx)
{
	int rc;

	if (!ctx)
		return CKPT_OK;
	pthread_mutex_lock(&ctx->api_mu);
	rc = ckpt_ctx__shutdown(ctx);
	pthread_mutex_unlock(&ctx->api_mu);
	ckpt_ctx__free(ctx);
	return rc;
}
