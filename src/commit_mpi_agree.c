/* SPDX-License-Identifier: MIT */
/* The bounded agreement rounds of the collective calls (ckpt_mpi__agree), and ckpt_mpi__close,
 * whose last exchange is such a round.
 *
 * Point-to-point messages through rank 0 rather than MPI collectives, which can be neither
 * cancelled nor left pending safely (a late rank's next collective would match the abandoned
 * one). Rounds are numbered per context; every rank makes the same collective calls in the same
 * order, so round n is the same call everywhere. Each rank sends its part (TAG_COLL) to rank 0,
 * which decides the round when every part is in, a rank withdrew or mpi_timeout passed, and sends
 * the result (TAG_COLL_RES) to every other rank. A rank whose deadline passes withdraws, and
 * gives rank 0 GRACE more to answer.
 *
 * Below: the vote engine (commit_mpi.c), which moves the messages and files them where these
 * rounds look (commit_mpi_priv.h). Above: api_mpi.c (the collectives) and context.c (closing).
 */
#include <assert.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commit_mpi.h"
#include "commit_mpi_priv.h"
#include "internal.h"

/* How long a rank that gave up on a round (withdrew) still waits for rank 0's verdict: rank 0
 * may have decided just as the deadline passed. Bounds the wait past mpi_timeout. */
#define GRACE 1.0

/* "ranks 2, 3" from the ranks whose have[] is 0 (rank 0 included). */
static void list_missing(char *buf, size_t len, const uint8_t *have, int size)
{
	int k = 0, shown = 0;
	size_t o;

	for (int i = 0; i < size; i++)
		k += !have[i];
	if (!k) { /* every part came just as the deadline passed */
		snprintf(buf, len, "a rank");
		return;
	}
	o = (size_t)snprintf(buf, len, "rank%s ", k > 1 ? "s" : "");
	for (int i = 0; i < size && o < len; i++) {
		if (have[i])
			continue;
		if (shown == 8) {
			snprintf(buf + o, len - o, " and %d more", k - shown);
			return;
		}
		o += (size_t)snprintf(buf + o, len - o, "%s%d", shown ? ", " : "", i);
		shown++;
	}
}

/* Rank 0 (mp->mu held): decide round r for `call` and send the result to every other rank. */
static void decide(struct ckpt_ctx *ctx, struct cround *r, const char *call, uint64_t key,
		   const uint8_t *ops, size_t n, struct coll_res *res)
{
	struct ckpt_mpi *mp = M(ctx);
	char who[160];
	int odd = -1;

	memset(res, 0, sizeof(*res));
	res->seq = r->seq;
	res->key = key;
	snprintf(res->call, sizeof(res->call), "%s", call);
	res->minrc = 0;
	for (int i = 0; i < mp->size; i++)
		if (r->have[i] && strcmp(r->part[i].call, call)) {
			odd = i;
			break;
		}
	if (r->n < (uint32_t)mp->size || r->withdrawn) {
		/* A withdrawal fails the round even when every part is in by now: the rank that
		 * withdrew has returned, or returns within GRACE, with a failure. */
		list_missing(who, sizeof(who), r->withdrawn ? r->have + mp->size : r->have, mp->size);
		res->rc = CKPT_ETIMEDOUT;
		snprintf(res->msg, sizeof(res->msg), "%s did not answer within mpi_timeout=%g s", who,
			 ctx->cfg->mpi_timeout);
	} else if (odd >= 0) {
		res->rc = CKPT_EMPI;
		snprintf(res->msg, sizeof(res->msg), "rank %d called %s while rank 0 called %s: the "
			 "ranks are out of step (every collective call must be made by every rank)",
			 odd, r->part[odd].call, call);
	} else {
		for (size_t j = 0; j < n; j++) {
			res->v[j] = r->part[0].v[j];
			for (int i = 1; i < mp->size; i++) {
				uint64_t x = r->part[i].v[j];

				if (ops[j] == CKPT_MPI_MIN && x < res->v[j])
					res->v[j] = x;
				else if (ops[j] == CKPT_MPI_MAX && x > res->v[j])
					res->v[j] = x;
			}
		}
		res->minrc = r->part[0].rc;
		for (int i = 1; i < mp->size; i++)
			if (r->part[i].rc < res->minrc) {
				res->minrc = r->part[i].rc;
				res->who = (uint32_t)i;
			}
	}
	for (int i = 1; i < mp->size; i++) {
		/* a rank that took no part, or took part in another call, learns it: it catches up */
		res->missed = !r->have[i] || strcmp(r->part[i].call, call) != 0;
		ckpt_mpi__send(mp, i, TAG_COLL_RES, res, sizeof(*res));
	}
	res->missed = 0;
	mp->decided = r->seq + 1;
	ckpt_mpi__cround_drop(mp, r);
}

/* The call that most parts of round r name (ties: rank 0's, `mine`): the others are out of step.
 * The string lives in r. */
static const char *majority_call(const struct ckpt_mpi *mp, const struct cround *r,
				 const char *mine)
{
	const char *best = mine;
	int nbest = 0;

	for (int i = 0; i < mp->size; i++) {
		int k = 0;

		if (!r->have[i])
			continue;
		for (int j = 0; j < mp->size; j++)
			k += r->have[j] && !strcmp(r->part[j].call, r->part[i].call);
		if (k > nbest || (k == nbest && !strcmp(r->part[i].call, mine))) {
			best = r->part[i].call;
			nbest = k;
		}
	}
	return best;
}

/* The end of each turn of the waits below (mp->mu held): let go of the lock, drive the engine
 * unless its thread does, and sleep 0.1 ms before looking again. */
static void wait_unlocked(struct ckpt_ctx *ctx)
{
	struct ckpt_mpi *mp = M(ctx);
	struct timespec ts = { 0, 100000 };

	pthread_mutex_unlock(&mp->mu);
	if (!mp->thread_on)
		ckpt_mpi__progress(ctx);
	nanosleep(&ts, NULL);
}

static int agree_root(struct ckpt_ctx *ctx, const struct coll *mine, const uint8_t *ops, size_t n,
		      double deadline, struct coll_res *res)
{
	struct ckpt_mpi *mp = M(ctx);
	struct cround *r;
	int other;

	/* what the others sent while this rank was away comes first: a withdrawal names who was
	 * missing when it was made, this rank included */
	if (!mp->thread_on)
		ckpt_mpi__progress(ctx);
	for (;;) {
		pthread_mutex_lock(&mp->mu);
		if (!(r = ckpt_mpi__cround_get(mp, mp->seq))) {
			pthread_mutex_unlock(&mp->mu);
			return CKPT_ENOMEM;
		}
		if (!r->have[0]) {
			r->have[0] = 1;
			r->part[0] = *mine;
			r->part[0].seq = r->seq;
			r->n++;
		}
		/* The others gave up on this round, and none of them made this call: it was an
		 * earlier call that this rank never made (or made too late). Fail it for them, and
		 * take part in the next round. */
		other = 0;
		for (int i = 1; i < mp->size; i++)
			other |= r->have[i] && !strcmp(r->part[i].call, mine->call) &&
				 r->part[i].key == mine->key;
		if (r->withdrawn && !other && r->n > 1) {
			r->have[0] = 0;
			r->n--;
			for (int i = 1; i < mp->size; i++)
				if (r->have[i]) {
					decide(ctx, r, r->part[i].call, r->part[i].key, ops,
					       0, res);
					break;
				}
			mp->seq++;
			pthread_mutex_unlock(&mp->mu);
			continue;
		}
		if (r->n == (uint32_t)mp->size || r->withdrawn || MPI_Wtime() >= deadline) {
			char call[CALL_LEN];
			uint64_t key = mine->key;

			snprintf(call, sizeof(call), "%s", majority_call(mp, r, mine->call));
			for (int i = 1; strcmp(call, mine->call) && i < mp->size; i++)
				if (r->have[i] && !strcmp(r->part[i].call, call)) {
					key = r->part[i].key;
					break;
				}
			decide(ctx, r, call, key, ops, n, res);
			mp->seq++;
			if (strcmp(call, mine->call)) {
				/* rank 0 alone made another call: it is the one out of step */
				pthread_mutex_unlock(&mp->mu);
				continue;
			}
			pthread_mutex_unlock(&mp->mu);
			return CKPT_OK;
		}
		wait_unlocked(ctx);
	}
}

static int agree_other(struct ckpt_ctx *ctx, struct coll *mine, double deadline,
		       struct coll_res *res)
{
	struct ckpt_mpi *mp = M(ctx);
	int sent = 0, withdrawn = 0;

	for (;;) {
		struct cres **pr, *r, *found = NULL;
		double now = MPI_Wtime();

		pthread_mutex_lock(&mp->mu);
		for (pr = &mp->cresults; (r = *pr);) {
			if (r->r.seq < mp->seq) { /* of a round this rank gave up or skipped */
				*pr = r->next;
				free(r);
				continue;
			}
			if (r->r.seq == mp->seq)
				found = r;
			pr = &r->next;
		}
		if (found) {
			if (found->r.missed && (strcmp(found->r.call, mine->call) ||
						found->r.key != mine->key)) {
				/* a round of a call that this rank never made: catch up */
				mp->seq++;
				sent = withdrawn = 0;
				pthread_mutex_unlock(&mp->mu);
				continue;
			}
			*res = found->r;
			mp->seq++;
			pthread_mutex_unlock(&mp->mu);
			return CKPT_OK; /* freed with the next round's stale results, or at close */
		}
		mine->seq = mp->seq;
		if (!sent) {
			ckpt_mpi__send(mp, 0, TAG_COLL, mine, sizeof(*mine));
			sent = 1;
		} else if (!withdrawn && now >= deadline) {
			struct coll w = *mine;

			w.withdraw = 1;
			ckpt_mpi__send(mp, 0, TAG_COLL, &w, sizeof(w));
			withdrawn = 1;
		} else if (withdrawn && now >= deadline + GRACE) {
			memset(res, 0, sizeof(*res));
			res->rc = CKPT_ETIMEDOUT;
			snprintf(res->msg, sizeof(res->msg), "rank 0 did not answer within "
				 "mpi_timeout=%g s", ctx->cfg->mpi_timeout);
			mp->seq++; /* its late verdict on this round is dropped */
			pthread_mutex_unlock(&mp->mu);
			return CKPT_OK;
		}
		wait_unlocked(ctx);
	}
}

int ckpt_mpi__agree(struct ckpt_ctx *ctx, const char *call, uint64_t key, int rc,
		    const uint64_t *in, const uint8_t *ops, size_t n, uint64_t *out, int *minrc,
		    int *who, struct ckpt_err *err)
{
	struct ckpt_mpi *mp = M(ctx);
	struct coll mine;
	struct coll_res res;
	double deadline = MPI_Wtime() + ctx->cfg->mpi_timeout;
	int xrc;

	assert(n <= CKPT_MPI_NV);
	memset(&mine, 0, sizeof(mine));
	if (n)
		memcpy(mine.v, in, n * sizeof(*in));
	mine.rc = rc;
	mine.key = key;
	mine.rank = (uint32_t)mp->rank;
	snprintf(mine.call, sizeof(mine.call), "%s", call);
	if (mp->rank == 0)
		xrc = agree_root(ctx, &mine, ops, n, deadline, &res);
	else
		xrc = agree_other(ctx, &mine, deadline, &res);
	if (xrc < 0)
		return ckpt_err__set(err, xrc, "%s: out of memory for a collective round", call);
	if (res.rc < 0)
		return ckpt_err__set(err, res.rc, "%s: %s", call, res.msg);
	if (n)
		memcpy(out, res.v, n * sizeof(*out));
	*minrc = res.minrc;
	*who = (int)res.who;
	return CKPT_OK;
}

int ckpt_mpi__close(struct ckpt_ctx *ctx)
{
	struct ckpt_mpi *mp = M(ctx);
	int rc = CKPT_OK;

	if (!mp)
		return CKPT_OK;
	ckpt_mpi__stop(ctx);
	if (!mp->broken) {
		struct ckpt_err err = { "" };
		int minrc, who;

		/* Bounded: a silent or dead rank must not hang the others in ckpt_close. A round
		 * of point-to-point messages, not a barrier: nothing stays pending for MPI_Finalize
		 * when a rank does not come (an abandoned MPI_Ibarrier can be neither cancelled
		 * nor freed, and freeing its communicator crashed MPI_Finalize: issue 13). */
		rc = ckpt_mpi__agree(ctx, "ckpt_close", 0, CKPT_OK, NULL, NULL, 0, NULL, &minrc, &who,
				     &err);
		if (rc < 0)
			ckpt_config__log(ctx->cfg, 1, "rank %d: %s: closed without them", mp->rank,
					 err.msg);
	}
	ckpt_mpi__end(ctx);
	return rc;
}
