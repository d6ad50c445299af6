/* SPDX-License-Identifier: MIT */
/* The collective public API: ckpt_open_mpi (with the collective recovery of uncommitted steps)
 * and the MPI variants of ckpt_save and ckpt_latest that api.c calls for an MPI context.
 *
 * ckpt_save and ckpt_latest agree through bounded rounds (ckpt_mpi__agree): point-to-point
 * messages through rank 0 with a deadline of mpi_timeout, which drive the vote engine
 * (commit_mpi.c) while they wait (a rank waiting for the others must still forward its drains'
 * votes when no progress thread runs). A silent rank fails the call on every rank within
 * mpi_timeout, with a message that names it; no MPI request is left pending. Only
 * ckpt_open_mpi uses MPI collectives (MPI_Comm_dup, the open and recovery exchanges): it
 * returns when every rank has called it.
 *
 * Layering: api.c -> api_mpi.c -> context.c -> commit_mpi.c (engine) -> commit.c -> drain.c.
 * Nothing here calls api.c; the engine never calls this file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "ckpt_mpi.h"
#include "commit_mpi.h"
#include "context.h"
#include "drain.h"
#include "internal.h"
#include "retention.h"
#include "step.h"

#define MAX_RECOVER 64 /* newest local steps considered for re-drain at open */


/* Backpressure with MPI, before the ranks agree (ctx->mu not held): give a busy drain
 * stall_wait seconds to make room, driving the engine; 1 when max_pending drains are still
 * behind. Once a save found them behind (ctx->behind), the next ones do not wait. */
static int wait_room(struct ckpt_ctx *ctx)
{
	double end = MPI_Wtime() + ctx->cfg->stall_wait;
	int behind;

	pthread_mutex_lock(&ctx->mu);
	while (!ctx->behind && ctx->pending >= ctx->cfg->max_pending && MPI_Wtime() < end)
		ckpt_ctx__wait_progress(ctx);
	behind = ctx->pending >= ctx->cfg->max_pending;
	pthread_mutex_unlock(&ctx->mu);
	return behind;
}

/* The ranks agreed that the drain is behind and every rank's `step` is durable locally: skip
 * this rank's queued saves of older steps (superseded, not drained: drain.c takes them out of
 * its queue, as in a single process), remove their local copies, and vote each one skipped so
 * that rank 0 ends its round at once: a rank that drained it already reports it skipped too,
 * and no step is committed with some ranks' shards only. */
static void skip_agreed(struct ckpt_ctx *ctx, uint64_t step)
{
	uint64_t skip[64], *ids = NULL, *steps = NULL;
	size_t n, k, total = 0;

	do {
		pthread_mutex_lock(&ctx->mu);
		/* their save ids, which the skip forgets: drain.c's criterion (queued, no failed
		 * drain to retry, older) */
		ids = calloc(ctx->nrecs + 1, sizeof(*ids));
		steps = calloc(ctx->nrecs + 1, sizeof(*steps));
		k = 0;
		for (size_t i = 0; ids && steps && i < ctx->nrecs; i++) {
			struct ckpt_step_rec *r = ctx->recs[i];

			if (r->queued && r->step < step && r->rc == CKPT_OK) {
				steps[k] = r->step;
				ids[k++] = r->save_id;
			}
		}
		n = ids && steps ? ckpt_drain__skip_superseded(ctx, step, skip, 64) : 0;
		pthread_mutex_unlock(&ctx->mu);
		for (size_t i = 0; i < n; i++) {
			char m[256];

			snprintf(m, sizeof(m), "step %llu was skipped: superseded by step %llu "
				 "before every rank could drain it (the shared volume fell behind)",
				 (unsigned long long)skip[i], (unsigned long long)step);
			for (size_t j = 0; j < k; j++)
				if (steps[j] == skip[i])
					ckpt_mpi__vote_skipped(ctx, skip[i], ids[j], m);
		}
		ckpt_ctx__remove_skipped(ctx, skip, n);
		if (n)
			ckpt_config__log(ctx->cfg, 2, "rank %u: step %llu saved while the drain is "
					 "behind on some rank: %zu older undrained step(s) skipped, as "
					 "on every rank (newest: %llu)", ctx->rank,
					 (unsigned long long)step, n, (unsigned long long)skip[n - 1]);
		total += n;
		free(ids);
		free(steps);
	} while (n == 64 && total < 65536);
	ckpt_mpi__poll(ctx); /* the votes go out now, not at the next call */
}

/* Failed drains with MPI (a soft mount's EIO, a full volume): retries are collective (the next
 * ckpt_open_mpi), so every failed step keeps its local copy until then, and a job whose drains all
 * fail would fill local_dir. The bound of a single process holds here too, agreed in ckpt_save's
 * second round (once the new step is durable locally, so that it supersedes the older ones): each
 * rank offers its NREL oldest failed steps that a newer one supersedes, and how many local steps
 * beyond keep_local + max_pending it holds; a slot whose step is the same on every rank (MIN ==
 * MAX) is agreed, and every rank releases the agreed ones, oldest first, as many as the rank
 * furthest over the bound needs. The commit protocol fails a step on every rank alike (rank 0's
 * outcome), so the offers match once the outcome has reached every rank; until then the slot
 * differs (a rank offers nothing there) and the next save releases the step. */
#define NREL 5 /* failed steps offered per save: more than a save adds, so a backlog shrinks */

/* Round 2's values (ctx->mu not held): [0] this rank's steps beyond the bound, then per slot j
 * its j-th oldest releasable failed step + 1 twice, [1 + j] for the MIN and [1 + NREL + j] for
 * the MAX (0: none, so that a slot empty on some rank is agreed nowhere). skip: the ranks agreed to skip the queued older steps, whose copies go as well: they do not count. */
static void release_offer(struct ckpt_ctx *ctx, uint64_t step, int skip, uint64_t *v)
{
	uint64_t c[NREL];
	size_t excess, queued = 0, k;

	pthread_mutex_lock(&ctx->mu);
	excess = ckpt_retention__local_excess(ctx);
	for (size_t i = 0; skip && i < ctx->nrecs; i++)
		queued += ctx->recs[i]->queued && ctx->recs[i]->step < step &&
			  ctx->recs[i]->rc == CKPT_OK; /* drain.c's skip_superseded criterion */
	k = ckpt_retention__failed_candidates(ctx, step, c, NREL);
	pthread_mutex_unlock(&ctx->mu);
	v[0] = excess > queued ? excess - queued : 0;
	for (size_t j = 0; j < NREL; j++) {
		v[1 + j] = j < k && c[j] < step ? c[j] + 1 : 0;
		v[1 + NREL + j] = v[1 + j];
	}
}

/* Every rank alike: release the agreed failed steps, oldest first, r[0] of them at most. */
static void release_agreed(struct ckpt_ctx *ctx, uint64_t step, const uint64_t *r)
{
	size_t n = 0;
	uint64_t newest = 0;

	pthread_mutex_lock(&ctx->mu);
	for (size_t j = 0; j < NREL && n < r[0]; j++)
		if (r[1 + j] && r[1 + j] == r[1 + NREL + j] &&
		    ckpt_retention__release_agreed(ctx, r[1 + j] - 1, step)) {
			n++;
			newest = r[1 + j] - 1;
		}
	pthread_mutex_unlock(&ctx->mu);
	if (n)
		ckpt_config__log(ctx->cfg, 2, "rank %u: step %llu saved while drains fail: %zu older "
				 "failed step(s) released, as on every rank (newest: %llu; "
				 "keep_local + max_pending bound the local disk)", ctx->rank,
				 (unsigned long long)step, n, (unsigned long long)newest);
}

int ckpt_api_mpi__save(struct ckpt_ctx *ctx, uint64_t step, const ckpt_region *regs, size_t n,
			int args_rc)
{
	static const uint8_t ops_a[4] = { CKPT_MPI_MAX, CKPT_MPI_MAX, CKPT_MPI_ROOT, CKPT_MPI_MAX };
	uint8_t ops_b[1 + 2 * NREL] = { CKPT_MPI_MAX };
	uint64_t in[4], out[4], rin[1 + 2 * NREL], rout[1 + 2 * NREL], save_id;
	struct ckpt_err e;
	int rc, arc, minrc, who, skip;

	for (size_t j = 0; j < NREL; j++) {
		ops_b[1 + j] = CKPT_MPI_MIN;
		ops_b[1 + NREL + j] = CKPT_MPI_MAX;
	}
	ckpt_mpi__progress(ctx);
	/* 1. one round: the arguments (a rank that rejected its own must not leave the others
	 * waiting), the step (min and max over ranks: the max of ~step is ~min), the save id
	 * (rank 0's), and whether some rank's drain is behind */
	in[0] = step;
	in[1] = ~step;
	in[2] = ctx->rank == 0 ? ckpt_store__random64() : 0;
	in[3] = args_rc == CKPT_OK ? (uint64_t)wait_room(ctx) : 0;
	if ((arc = ckpt_mpi__agree(ctx, "ckpt_save", step, args_rc, in, ops_a, 4, out, &minrc, &who,
				   &e)) < 0) {
		if (args_rc < 0)
			return args_rc; /* its own message stays */
		return ckpt_err__set(&ctx->err, arc, "%s; nothing saved on any rank (step %llu)",
				     e.msg, (unsigned long long)step);
	}
	if (args_rc < 0)
		return args_rc; /* its own message stays */
	if (minrc < 0)
		return ckpt_err__set(&ctx->err, CKPT_EINVAL,
				     "ckpt_save: rank %d rejected its arguments for step %llu: nothing "
				     "written", who, (unsigned long long)step);
	if (out[0] != step || ~out[1] != step)
		return ckpt_err__set(&ctx->err, CKPT_EINVAL,
				     "ckpt_save: ranks disagree on the step (%llu to %llu; this rank "
				     "%llu): nothing written", (unsigned long long)~out[1],
				     (unsigned long long)out[0], (unsigned long long)step);
	save_id = out[2];
	skip = out[3] != 0;
	pthread_mutex_lock(&ctx->mu);
	ctx->behind = skip; /* every rank alike: the next save does not wait stall_wait */
	pthread_mutex_unlock(&ctx->mu);
	/* 2. the local write, 3. did every rank's succeed, and which failed steps can go? */
	rc = ckpt_ctx__save_local(ctx, step, save_id, regs, n);
	if (rc < 0)
		ckpt_mpi__vote_save_failure(ctx, step, save_id, rc, ctx->err.msg);
	release_offer(ctx, step, skip, rin);
	if ((arc = ckpt_mpi__agree(ctx, "ckpt_save", step, rc, rin, ops_b, 1 + 2 * NREL, rout,
				   &minrc, &who, &e)) < 0) {
		/* a rank silent between the rounds: the step must not commit anywhere */
		ckpt_mpi__abandon(ctx, step, save_id, arc, e.msg);
		if (rc < 0)
			return rc; /* its own message stays */
		return ckpt_err__set(&ctx->err, arc, "%s; step %llu will not be committed",
				     e.msg, (unsigned long long)step);
	}
	if (minrc < 0) {
		ckpt_mpi__abandon(ctx, step, save_id, minrc, "ckpt_save failed on a rank");
		if (rc == CKPT_OK)
			rc = ckpt_err__set(&ctx->err, minrc,
					   "ckpt_save: step %llu failed on rank %d; it will not be "
					   "committed", (unsigned long long)step, who);
	} else {
		if (skip)
			skip_agreed(ctx, step);
		/* the new step is durable locally on every rank: it supersedes them everywhere */
		release_agreed(ctx, step, rout);
	}
	ckpt_mpi__progress(ctx);
	return rc;
}

/* My newest usable step <= bound, as step+1 (0 when none), and the save id I would read. */
static uint64_t newest_usable(struct ckpt_ctx *ctx, uint64_t *v, size_t n, uint64_t bound)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] <= bound && ckpt_ctx__step_usable(ctx, v[i]))
			return v[i] + 1;
	return 0;
}

/* The save id this rank would read for `step` (its intact local copy's, else the committed
 * one's; whatever the number of ranks that saved it), and in *committed the committed save's id
 * (0 when none): ranks that would read different saves fall back to the committed one. */
static uint64_t readable_save(struct ckpt_ctx *ctx, uint64_t step, uint64_t *committed)
{
	struct ckpt_manifest m;
	struct ckpt_pin p;
	uint64_t id = 0;

	*committed = 0;
	if (ckpt_ctx__step_save(ctx, step, &p, NULL) == CKPT_OK) {
		id = p.save_id;
		if (p.m.ranks)
			*committed = p.m.save_id;
		ckpt_fmt__manifest_free(&p.m);
	}
	if (!*committed && id && ckpt_step__committed(ctx->shared_job, step, &m, NULL) == CKPT_OK) {
		*committed = m.save_id;
		ckpt_fmt__manifest_free(&m);
	}
	return id;
}

int ckpt_api_mpi__latest(struct ckpt_ctx *ctx, uint64_t *step)
{
	static const uint8_t ops_min[1] = { CKPT_MPI_MIN };
	static const uint8_t ops_ids[4] = { CKPT_MPI_MAX, CKPT_MPI_MAX, CKPT_MPI_MAX, CKPT_MPI_MIN };
	uint64_t *v = NULL, bound = UINT64_MAX, mine, c;
	size_t n = 0;
	int rc, mrc, minrc, who;

	ckpt_mpi__progress(ctx);
	rc = ckpt_ctx__candidates(ctx, &v, &n);
	/* Every rank goes through the same rounds, also one whose listing failed (it offers none). */
	for (;;) {
		uint64_t ids[4], r[4], committed;
		int all;

		mine = rc < 0 ? 0 : newest_usable(ctx, v, n, bound);
		if ((mrc = ckpt_mpi__agree(ctx, "ckpt_latest", 0, CKPT_OK, &mine, ops_min, 1, &c, &minrc,
					   &who, &ctx->err)) < 0) {
			rc = mrc;
			break;
		}
		if (c == 0) {
			if (rc == CKPT_OK)
				rc = ckpt_err__set(&ctx->err, CKPT_ENOENT,
						   "no step of job '%s' is committed, or complete "
						   "for all %u ranks", ctx->cfg->name, ctx->nranks);
			break;
		}
		c--;
		/* Is step c readable on every rank, and from one save only? A rank whose local copy
		 * is of another save than the committed one reads the committed one instead. */
		ids[0] = readable_save(ctx, c, &committed);
		ids[1] = ~ids[0];
		ids[2] = committed;
		ids[3] = ids[0] != 0; /* readable here: the MIN over ranks is "everywhere" */
		if ((mrc = ckpt_mpi__agree(ctx, "ckpt_latest", 0, CKPT_OK, ids, ops_ids, 4, r, &minrc,
					   &who, &ctx->err)) < 0) {
			rc = mrc;
			break;
		}
		all = r[3] != 0;
		/* the same save everywhere, or mixed saves but a committed one exists for all */
		if (all && (r[0] == ~r[1] || r[2])) {
			ctx->resolved_step = c;
			ctx->resolved_save = r[0] == ~r[1] ? r[0] : r[2];
			ctx->resolved = 1;
			/* every rank's reads of step c come from this save (ckpt_load) */
			if ((rc = ckpt_ctx__pin_save(ctx, c, ctx->resolved_save)) < 0)
				rc = ckpt_err__set(&ctx->err, rc, "out of memory for a pin");
			else
				*step = c;
			break;
		}
		if (c == 0) {
			rc = ckpt_err__set(&ctx->err, CKPT_ENOENT,
					   "no step of job '%s' is committed, or complete for "
					   "all %u ranks", ctx->cfg->name, ctx->nranks);
			break;
		}
		bound = c - 1;
	}
	free(v);
	return rc;
}

/* At open: re-drain the steps that every rank holds locally, of the same save, uncommitted. */
static int recover_collective(struct ckpt_ctx *ctx, struct ckpt_err *err)
{
	int size = (int)ctx->nranks;
	uint64_t mine[2 * MAX_RECOVER], *all = NULL, *steps;
	size_t n, k = 0;
	int rc = CKPT_OK, mrc;

	memset(mine, 0, sizeof(mine));
	if (ckpt_store__list_steps(ctx->local_job, &steps, &n, NULL) == CKPT_OK) {
		for (size_t i = n; i-- > 0 && k < MAX_RECOVER;) {
			struct ckpt_shard *s;
			struct ckpt_manifest m;
			int committed = 0;

			if (ckpt_step__open_local(&s, ctx->local_job, steps[i], ctx->rank, NULL) < 0)
				continue;
			if (ckpt_step__manifest(ctx->shared_job, steps[i], &m, 0, NULL) == CKPT_OK) {
				committed = m.save_id == s->hdr.save_id ||
					    m.created_ns >= s->hdr.created_ns;
				ckpt_fmt__manifest_free(&m);
			}
			if (!committed && s->hdr.nranks == ctx->nranks) {
				mine[2 * k] = steps[i] + 1;
				mine[2 * k + 1] = s->hdr.save_id;
				k++;
			}
			ckpt_shard__close(s);
		}
		free(steps);
	}
	if (!(all = malloc(sizeof(mine) * (size_t)size)))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for recovery");
	{
		MPI_Request req;

		mrc = MPI_Iallgather(mine, 2 * MAX_RECOVER, MPI_UINT64_T, all, 2 * MAX_RECOVER,
				     MPI_UINT64_T, ckpt_mpi__comm(ctx->mpi), &req);
		if ((mrc = ckpt_mpi__wait(ctx, &req, mrc, "MPI_Iallgather (recovery)", 0, err)) < 0) {
			free(all);
			return mrc;
		}
	}
	pthread_mutex_lock(&ctx->mu);
	for (size_t i = 0; i < k; i++) {
		int everywhere = 1;

		for (int r = 0; r < size && everywhere; r++) {
			int found = 0;

			for (size_t j = 0; j < MAX_RECOVER && !found; j++)
				found = all[(size_t)r * 2 * MAX_RECOVER + 2 * j] == mine[2 * i] &&
					all[(size_t)r * 2 * MAX_RECOVER + 2 * j + 1] == mine[2 * i + 1];
			everywhere = found;
		}
		if (everywhere) {
			struct ckpt_step_rec *rec = ckpt_retention__rec(ctx, mine[2 * i] - 1, 1);

			if (rec) {
				rec->save_id = mine[2 * i + 1];
				ckpt_drain__enqueue(ctx, rec);
			}
		}
	}
	pthread_mutex_unlock(&ctx->mu);
	free(all);
	return rc;
}

int ckpt_open_mpi(ckpt_ctx **out, const ckpt_config *cfg, MPI_Comm comm)
{
	struct ckpt_err *err = ckpt_ctx__open_err();
	struct ckpt_mpi *mp = NULL;
	struct ckpt_ctx *ctx = NULL;
	int rc, who, mrc, init = 0, rank, size;

	ckpt_err__clear(err);
	if (out)
		*out = NULL;
	if (!out || !cfg)
		return ckpt_err__set(err, CKPT_EINVAL, "ckpt_open_mpi: NULL %s",
				     out ? "config" : "out");
	if (MPI_Initialized(&init) != MPI_SUCCESS || !init)
		return ckpt_err__set(err, CKPT_EMPI, "ckpt_open_mpi: MPI is not initialized");
	if ((rc = ckpt_mpi__new(&mp, comm, &rank, &size, err)) < 0)
		return rc;
	rc = ckpt_ctx__open(&ctx, cfg, (uint32_t)rank, (uint32_t)size, mp, err);
	/* No drain runs yet (no votes can be pending): a blocking collective is safe here. */
	{
		struct { int v, r; } in = { rc, rank }, res = { rc, rank };

		if ((mrc = MPI_Allreduce(&in, &res, 1, MPI_2INT, MPI_MINLOC,
					 ckpt_mpi__comm(mp))) != MPI_SUCCESS)
			res.v = ckpt_mpi__error(err, mrc, "MPI_Allreduce (open)");
		mrc = res.v;
		who = res.r;
	}
	if (mrc < 0 && rc == CKPT_OK)
		rc = ckpt_err__set(err, CKPT_EMPI, "ckpt_open_mpi: rank %d failed to open", who);
	if (rc == CKPT_OK)
		rc = recover_collective(ctx, err);
	if (rc == CKPT_OK)
		ckpt_mpi__start_thread(ctx);
	if (rc == CKPT_OK)
		rc = ckpt_ctx__start(ctx, err);
	if (rc < 0) {
		if (ctx) {
			ckpt_mpi__open_failed(ctx); /* no collective teardown */
			ckpt_ctx__shutdown(ctx);    /* also frees mp and the communicator */
			ckpt_ctx__free(ctx);
		} else {
			ckpt_mpi__free(mp);
		}
		return rc;
	}
	*out = ctx;
	return CKPT_OK;
}

int ckpt_open_mpi_f(ckpt_ctx **out, const ckpt_config *cfg, int fortran_comm)
{
	int init = 0;

	if (!out || !cfg)
		return ckpt_open_mpi(out, cfg, MPI_COMM_NULL); /* CKPT_EINVAL, without touching MPI */
	/* MPI_Comm_f2c before MPI_Init aborts the whole process: say so instead. */
	if (MPI_Initialized(&init) != MPI_SUCCESS || !init) {
		if (out)
			*out = NULL;
		return ckpt_err__set(ckpt_ctx__open_err(), CKPT_EMPI,
				     "ckpt_open_mpi_f: MPI is not initialized");
	}
	return ckpt_open_mpi(out, cfg, MPI_Comm_f2c((MPI_Fint)fortran_comm));
}
