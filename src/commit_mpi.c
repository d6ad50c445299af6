/* SPDX-License-Identifier: MIT */
/* The MPI vote engine: how ranks agree that a step is committed. The only file that talks MPI for
 * the commit protocol (api_mpi.c holds the collective API above it).
 *
 * Protocol. ckpt_save is collective: ranks agree on the step and on a save id chosen by rank 0,
 * write their shard locally, and learn together whether every local write succeeded. Each rank's
 * drain thread then publishes its compressed shard on the shared tier and posts a vote (its
 * shard's size and index checksum, or its error) to an outbox; drain threads never call MPI.
 * A progress engine moves votes to rank 0. When rank 0 holds a vote from every rank for the same
 * (step, save id) and all succeeded, it writes the MANIFEST through the commit point
 * (ckpt_commit__point) and sends the outcome to every rank; any failed vote, or a rank silent for
 * mpi_timeout seconds, makes the outcome a failure that every rank reports. The engine runs on a
 * library thread when MPI gives MPI_THREAD_MULTIPLE, otherwise inside ckpt_save, ckpt_wait,
 * ckpt_poll, ckpt_latest, ckpt_close and every collective wait.
 *
 * Below: commit.c (the commit point) and the drain's step records. Above: api_mpi.c (open,
 * collectives) and context.c (waiting, closing); this file calls neither.
 */
#include <assert.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commit.h"
#include "commit_mpi.h"
#include "internal.h"
#include "retention.h"

#define TAG_VOTE 7401
#define TAG_OUTCOME 7402
#define TAG_COLL 7403     /* a rank's part of a collective round, to rank 0 */
#define TAG_COLL_RES 7404 /* rank 0's result of a round, to each rank */
#define MSG_LEN 256
#define CALL_LEN 24
#define NDEAD 64          /* (step, save id) pairs rank 0 remembers as not to be committed */
/* How long a rank that gave up on a round (withdrew) still waits for rank 0's verdict: rank 0
 * may have decided just as the deadline passed. Bounds the wait past mpi_timeout. */
#define GRACE 1.0

struct vote {
	uint64_t step, save_id, created_ns;
	uint64_t file_size, index_xxh3, raw_bytes;
	int32_t rc;
	uint32_t rank, nregions;
	uint32_t awaits; /* the voting rank waits for the outcome (its step is pending) */
	uint32_t skipped; /* the rank skipped the step (superseded, not drained): end the round */
	char msg[MSG_LEN];
};

struct outcome {
	uint64_t step, save_id;
	int32_t rc;
	uint32_t failed_rank;
	uint32_t skipped; /* the ranks skipped the step: not a failure */
	char msg[MSG_LEN];
};

/* Bounded collective rounds (ckpt_mpi__agree): point-to-point messages through rank 0 rather
 * than MPI collectives, which can be neither cancelled nor left pending safely (a late rank's
 * next collective would match the abandoned one). Rounds are numbered per context; every rank
 * makes the same collective calls in the same order, so round n is the same call everywhere. */
struct coll {
	uint64_t seq;
	uint64_t key; /* with call, names the call (ckpt_save: its step) */
	uint64_t v[CKPT_MPI_NV];
	int32_t rc;
	uint32_t rank;
	uint32_t withdraw; /* the rank gave up waiting (its deadline passed): fail the round */
	char call[CALL_LEN];
};

struct coll_res {
	uint64_t seq;
	uint64_t key;
	uint64_t v[CKPT_MPI_NV];
	int32_t rc;     /* CKPT_OK: every rank took part; else why the round failed */
	int32_t minrc;  /* the lowest rc contributed, and the first rank that gave it */
	uint32_t who;
	uint32_t missed; /* the recipient took no part (late, or in another call): resynchronizes */
	char call[CALL_LEN];
	char msg[MSG_LEN];
};

struct sendbuf {
	MPI_Request req;
	union {
		struct vote v;
		struct outcome o;
		struct coll c;
		struct coll_res r;
	} u;
	struct sendbuf *next;
};

/* Rank 0: the parts received for one round. */
struct cround {
	uint64_t seq;
	struct coll *part; /* [size] */
	uint8_t *have;     /* [size] parts received, then [size] those received at the first
			    * withdrawal: who the withdrawing rank waited for */
	uint32_t n, withdrawn;
	struct cround *next;
};

/* Every rank but 0: results received from rank 0. */
struct cres {
	struct coll_res r;
	struct cres *next;
};

struct dead {
	uint64_t step, save_id;
	int32_t rc;
	uint32_t skipped;
	char msg[MSG_LEN];
};

/* Rank 0: votes gathered for one (step, save id). */
struct round {
	uint64_t step, save_id, created_ns;
	uint32_t nvotes;
	uint8_t *voted;
	struct ckpt_manifest_rank *ranks;
	int32_t rc;
	uint32_t failed_rank, skipped;
	char msg[MSG_LEN];
	double first;
	struct round *next;
};


/* Awaited outcome on every rank: a record whose shard is durable and voted. */
struct await {
	uint64_t step, save_id;
	double since;
	struct await *next;
};

struct ckpt_mpi {
	MPI_Comm comm;
	int rank, size, thread_level;
	pthread_mutex_t mu;      /* serializes the engine and guards the lists below */
	struct vote *outbox;
	size_t nout, capout;
	struct round *rounds;    /* rank 0 */
	struct sendbuf *sends;
	struct await *awaits;
	pthread_t thread;
	int thread_on, thread_stop;
	int broken;
	uint64_t seq;            /* the next collective round of this rank */
	uint64_t decided;        /* rank 0: rounds below it are decided (late parts are dropped) */
	struct cround *crounds;  /* rank 0 */
	struct cres *cresults;   /* other ranks */
	struct dead dead[NDEAD]; /* rank 0: saves that must not commit (skipped, failed ckpt_save) */
	unsigned ndead;
};

void (*ckpt_mpi__test_hook)(const char *point);

static struct ckpt_mpi *M(struct ckpt_ctx *ctx)
{
	return ctx->mpi;
}

int ckpt_mpi__error(struct ckpt_err *err, int mrc, const char *what)
{
	char s[MPI_MAX_ERROR_STRING];
	int len = 0;

	MPI_Error_string(mrc, s, &len);
	return ckpt_err__set(err, CKPT_EMPI, "%s: %s", what, s);
}

/* ---- the progress engine ---- */

static void send_to(struct ckpt_mpi *mp, int dest, int tag, const void *msg, size_t len)
{
	struct sendbuf *b = calloc(1, sizeof(*b));

	assert(len <= sizeof(b->u));
	if (!b)
		return; /* the receiver times out and reports the failure */
	memcpy(&b->u, msg, len);
	if (MPI_Isend(&b->u, (int)len, MPI_BYTE, dest, tag, mp->comm, &b->req) != MPI_SUCCESS) {
		free(b);
		return;
	}
	b->next = mp->sends;
	mp->sends = b;
}

/* Every rank: apply the outcome of a round to the matching record. */
static void apply_outcome(struct ckpt_ctx *ctx, const struct outcome *o)
{
	struct ckpt_mpi *mp = M(ctx);
	struct await **pa, *a;
	struct ckpt_step_rec *rec;

	for (pa = &mp->awaits; (a = *pa); pa = &a->next)
		if (a->step == o->step && a->save_id == o->save_id)
			break;
	if (!a)
		return; /* a vote that failed in ckpt_save itself: that call reported it */
	*pa = a->next;
	free(a);
	pthread_mutex_lock(&ctx->mu);
	rec = ckpt_retention__rec(ctx, o->step, 0);
	if (rec && rec->save_id == o->save_id && !rec->queued && o->skipped) {
		/* Drained here, skipped by another rank: as if skipped here (drain.c does the same
		 * to the steps it takes out of its queue), so that every rank reports it alike. */
		rec->state = CKPT_STATE_NONE;
		rec->rc = CKPT_ENOENT;
		rec->save_id = 0;
		ckpt_err__set(&rec->err, CKPT_ENOENT, "%s", o->msg);
		ctx->skipped++;
	} else if (rec && rec->save_id == o->save_id && !rec->queued) {
		rec->state = o->rc < 0 ? CKPT_STATE_FAILED : CKPT_STATE_COMMITTED;
		rec->rc = o->rc;
		if (o->rc < 0)
			ckpt_err__set(&rec->err, o->rc, "step %llu not committed: rank %u: %s",
				      (unsigned long long)o->step, o->failed_rank, o->msg);
		else
			ckpt_err__clear(&rec->err);
	}
	if (o->rc == CKPT_OK)
		ckpt_retention__apply(ctx);
	ctx->pending--;
	pthread_cond_broadcast(&ctx->cv);
	pthread_mutex_unlock(&ctx->mu);
}

/* Rank 0: all votes in (or timed out): commit or fail, and tell everyone. */
static void finish_round(struct ckpt_ctx *ctx, struct round *r)
{
	struct ckpt_mpi *mp = M(ctx);
	struct outcome o;
	struct ckpt_err err = { "" };

	memset(&o, 0, sizeof(o));
	o.step = r->step;
	o.save_id = r->save_id;
	o.rc = r->rc;
	o.failed_rank = r->failed_rank;
	o.skipped = r->skipped;
	snprintf(o.msg, sizeof(o.msg), "%s", r->msg);
	if (o.rc == CKPT_OK) {
		struct ckpt_manifest m = { CKPT_FMT_VERSION, (uint32_t)mp->size, r->step, r->save_id,
					   r->created_ns, r->ranks };

		/* The commit point for every rank at once. */
		if ((o.rc = ckpt_commit__point(ctx, &m, &err)) < 0)
			snprintf(o.msg, sizeof(o.msg), "%s", err.msg);
	}
	for (int i = 1; i < mp->size; i++)
		send_to(mp, i, TAG_OUTCOME, &o, sizeof(o));
	apply_outcome(ctx, &o);
}

static void round_free(struct round *r)
{
	if (r) {
		free(r->voted);
		free(r->ranks);
		free(r);
	}
}

static const struct dead *find_dead(const struct ckpt_mpi *mp, uint64_t step, uint64_t save_id)
{
	for (unsigned i = 0; i < mp->ndead && i < NDEAD; i++)
		if (mp->dead[i].step == step && mp->dead[i].save_id == save_id)
			return &mp->dead[i];
	return NULL;
}

/* Rank 0: the save (step, save_id) must not be committed (a rank skipped it, or ckpt_save failed
 * on some rank): end its round now with that outcome, and answer its later votes at once. */
static void abandon(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id, int rc, int skipped,
		    uint32_t rank, const char *msg)
{
	struct ckpt_mpi *mp = M(ctx);
	struct round **pr, *r;
	struct dead *d;

	if (find_dead(mp, step, save_id))
		return;
	d = &mp->dead[mp->ndead++ % NDEAD];
	*d = (struct dead){ step, save_id, rc, (uint32_t)skipped, "" };
	snprintf(d->msg, sizeof(d->msg), "%s", msg);
	for (pr = &mp->rounds; (r = *pr); pr = &r->next)
		if (r->step == step && r->save_id == save_id) {
			*pr = r->next;
			r->rc = rc;
			r->failed_rank = rank;
			r->skipped = (uint32_t)skipped;
			snprintf(r->msg, sizeof(r->msg), "%s", msg);
			finish_round(ctx, r);
			round_free(r);
			break;
		}
}

/* Rank 0: count a vote. */
static void take_vote(struct ckpt_ctx *ctx, const struct vote *v)
{
	struct ckpt_mpi *mp = M(ctx);
	struct round *r, **pr;
	const struct dead *d;

	if (v->rank >= (uint32_t)mp->size)
		return;
	if (v->skipped) {
		abandon(ctx, v->step, v->save_id, CKPT_ENOENT, 1, v->rank, v->msg);
		return;
	}
	if ((d = find_dead(mp, v->step, v->save_id))) {
		/* its round is over: the voter alone still waits for the outcome */
		struct outcome o = { v->step, v->save_id, d->rc, v->rank, d->skipped, "" };

		snprintf(o.msg, sizeof(o.msg), "%s", d->msg);
		if (!v->awaits)
			return;
		if (v->rank == 0)
			apply_outcome(ctx, &o);
		else
			send_to(mp, (int)v->rank, TAG_OUTCOME, &o, sizeof(o));
		return;
	}
	for (r = mp->rounds; r; r = r->next)
		if (r->step == v->step && r->save_id == v->save_id)
			break;
	if (!r) {
		if (!(r = calloc(1, sizeof(*r))) ||
		    !(r->voted = calloc((size_t)mp->size, 1)) ||
		    !(r->ranks = calloc((size_t)mp->size, sizeof(*r->ranks)))) {
			round_free(r);
			return;
		}
		r->step = v->step;
		r->save_id = v->save_id;
		r->first = MPI_Wtime();
		r->next = mp->rounds;
		mp->rounds = r;
	}
	if (r->voted[v->rank])
		return;
	r->voted[v->rank] = 1;
	r->nvotes++;
	r->ranks[v->rank] = (struct ckpt_manifest_rank){ v->file_size, v->index_xxh3, v->raw_bytes,
							 v->nregions };
	if (v->rank == 0 || !r->created_ns)
		r->created_ns = v->created_ns;
	if (v->rc < 0 && r->rc == CKPT_OK) {
		r->rc = v->rc;
		r->failed_rank = v->rank;
		snprintf(r->msg, sizeof(r->msg), "%s", v->msg);
	}
	if (r->nvotes == (uint32_t)mp->size) {
		for (pr = &mp->rounds; *pr != r; pr = &(*pr)->next)
			;
		*pr = r->next;
		finish_round(ctx, r);
		round_free(r);
	}
}

/* ---- bounded collective rounds (ckpt_mpi__agree) ---- */

static struct cround *cround_get(struct ckpt_mpi *mp, uint64_t seq)
{
	struct cround *r;

	for (r = mp->crounds; r; r = r->next)
		if (r->seq == seq)
			return r;
	if (!(r = calloc(1, sizeof(*r))) ||
	    !(r->part = calloc((size_t)mp->size, sizeof(*r->part))) ||
	    !(r->have = calloc(2 * (size_t)mp->size, 1))) {
		if (r)
			free(r->part);
		free(r);
		return NULL;
	}
	r->seq = seq;
	r->next = mp->crounds;
	mp->crounds = r;
	return r;
}

static void cround_drop(struct ckpt_mpi *mp, struct cround *r)
{
	for (struct cround **pr = &mp->crounds; *pr; pr = &(*pr)->next)
		if (*pr == r) {
			*pr = r->next;
			break;
		}
	free(r->part);
	free(r->have);
	free(r);
}

/* Rank 0 (mp->mu held): a rank's part of a round, or its withdrawal. */
static void take_part(struct ckpt_mpi *mp, const struct coll *c)
{
	struct cround *r;

	if (c->seq < mp->decided || c->rank >= (uint32_t)mp->size || !(r = cround_get(mp, c->seq)))
		return; /* decided: the late rank finds the result already sent to it */
	if (c->withdraw) {
		if (!r->withdrawn++)
			memcpy(r->have + mp->size, r->have, (size_t)mp->size);
	} else if (!r->have[c->rank]) {
		r->have[c->rank] = 1;
		r->part[c->rank] = *c;
		r->n++;
	}
}

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
		send_to(mp, i, TAG_COLL_RES, res, sizeof(*res));
	}
	res->missed = 0;
	mp->decided = r->seq + 1;
	cround_drop(mp, r);
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

static int agree_root(struct ckpt_ctx *ctx, const struct coll *mine, const uint8_t *ops, size_t n,
		      double deadline, struct coll_res *res)
{
	struct ckpt_mpi *mp = M(ctx);
	struct timespec ts = { 0, 100000 };
	struct cround *r;
	int other;

	/* what the others sent while this rank was away comes first: a withdrawal names who was
	 * missing when it was made, this rank included */
	if (!mp->thread_on)
		ckpt_mpi__progress(ctx);
	for (;;) {
		pthread_mutex_lock(&mp->mu);
		if (!(r = cround_get(mp, mp->seq))) {
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
		pthread_mutex_unlock(&mp->mu);
		if (!mp->thread_on)
			ckpt_mpi__progress(ctx);
		nanosleep(&ts, NULL);
	}
}

static int agree_other(struct ckpt_ctx *ctx, struct coll *mine, double deadline,
		       struct coll_res *res)
{
	struct ckpt_mpi *mp = M(ctx);
	struct timespec ts = { 0, 100000 };
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
			send_to(mp, 0, TAG_COLL, mine, sizeof(*mine));
			sent = 1;
		} else if (!withdrawn && now >= deadline) {
			struct coll w = *mine;

			w.withdraw = 1;
			send_to(mp, 0, TAG_COLL, &w, sizeof(w));
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
		pthread_mutex_unlock(&mp->mu);
		if (!mp->thread_on)
			ckpt_mpi__progress(ctx);
		nanosleep(&ts, NULL);
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

void ckpt_mpi__abandon(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id, int rc,
		       const char *msg)
{
	struct ckpt_mpi *mp = M(ctx);

	if (mp->rank != 0)
		return;
	pthread_mutex_lock(&mp->mu);
	abandon(ctx, step, save_id, rc, 0, 0, msg);
	pthread_mutex_unlock(&mp->mu);
}

static void check_timeouts(struct ckpt_ctx *ctx)
{
	struct ckpt_mpi *mp = M(ctx);
	double now = MPI_Wtime(), lim = ctx->cfg->mpi_timeout;

	if (mp->rank == 0) {
		struct round **pr = &mp->rounds, *r;

		while ((r = *pr)) {
			if (now - r->first < lim) {
				pr = &r->next;
				continue;
			}
			*pr = r->next;
			for (uint32_t i = 0; i < (uint32_t)mp->size; i++)
				if (!r->voted[i]) {
					r->rc = CKPT_ETIMEDOUT;
					r->failed_rank = i;
					snprintf(r->msg, sizeof(r->msg),
						 "no word from rank %u within %g s (rank lost?)", i, lim);
					break;
				}
			finish_round(ctx, r);
			round_free(r);
		}
	} else {
		/* Rank 0 gets mpi_timeout for the votes; allow it as long again to answer. */
		for (struct await *a = mp->awaits; a; a = a->next)
			if (now - a->since > 2 * lim) {
				struct outcome o = { a->step, a->save_id, CKPT_ETIMEDOUT, 0, 0, "" };

				snprintf(o.msg, sizeof(o.msg), "no commit outcome within %g s (rank 0 lost?)",
					 2 * lim);
				apply_outcome(ctx, &o);
				break; /* the list changed */
			}
	}
}

void ckpt_mpi__progress(struct ckpt_ctx *ctx)
{
	struct ckpt_mpi *mp = M(ctx);
	struct vote *out;
	size_t nout;
	int flag;
	MPI_Status st;

	pthread_mutex_lock(&mp->mu);
	/* 1. votes posted by drain threads */
	out = mp->outbox;
	nout = mp->nout;
	mp->outbox = NULL;
	mp->nout = mp->capout = 0;
	for (size_t i = 0; i < nout; i++) {
		struct await *a;

		if (out[i].awaits && (a = calloc(1, sizeof(*a)))) {
			*a = (struct await){ out[i].step, out[i].save_id, MPI_Wtime(), mp->awaits };
			mp->awaits = a;
		}
		if (mp->rank == 0)
			take_vote(ctx, &out[i]);
		else
			send_to(mp, 0, TAG_VOTE, &out[i], sizeof(out[i]));
	}
	free(out);
	/* 2. messages from other ranks */
	for (;;) {
		if (MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, mp->comm, &flag, &st) != MPI_SUCCESS ||
		    !flag)
			break;
		if (st.MPI_TAG == TAG_VOTE) {
			struct vote v;

			MPI_Recv(&v, sizeof(v), MPI_BYTE, st.MPI_SOURCE, TAG_VOTE, mp->comm,
				 MPI_STATUS_IGNORE);
			v.msg[MSG_LEN - 1] = '\0';
			if (mp->rank == 0)
				take_vote(ctx, &v);
		} else if (st.MPI_TAG == TAG_OUTCOME) {
			struct outcome o;

			MPI_Recv(&o, sizeof(o), MPI_BYTE, st.MPI_SOURCE, TAG_OUTCOME, mp->comm,
				 MPI_STATUS_IGNORE);
			o.msg[MSG_LEN - 1] = '\0';
			apply_outcome(ctx, &o);
		} else if (st.MPI_TAG == TAG_COLL) {
			struct coll c;

			MPI_Recv(&c, sizeof(c), MPI_BYTE, st.MPI_SOURCE, TAG_COLL, mp->comm,
				 MPI_STATUS_IGNORE);
			c.call[CALL_LEN - 1] = '\0';
			c.rank = (uint32_t)st.MPI_SOURCE;
			if (mp->rank == 0)
				take_part(mp, &c);
		} else if (st.MPI_TAG == TAG_COLL_RES) {
			struct cres *r = calloc(1, sizeof(*r));
			struct coll_res junk;

			MPI_Recv(r ? &r->r : &junk, sizeof(junk), MPI_BYTE, st.MPI_SOURCE,
				 TAG_COLL_RES, mp->comm, MPI_STATUS_IGNORE);
			if (r) { /* else the round times out here: rank 0 did not answer */
				r->r.call[CALL_LEN - 1] = r->r.msg[MSG_LEN - 1] = '\0';
				r->next = mp->cresults;
				mp->cresults = r;
			}
		} else {
			char junk[16];

			MPI_Recv(junk, 0, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, mp->comm,
				 MPI_STATUS_IGNORE);
		}
	}
	/* 3. deadlines, 4. finished sends */
	check_timeouts(ctx);
	for (struct sendbuf **pb = &mp->sends, *b; (b = *pb);) {
		MPI_Test(&b->req, &flag, MPI_STATUS_IGNORE);
		if (flag) {
			*pb = b->next;
			free(b);
		} else {
			pb = &b->next;
		}
	}
	pthread_mutex_unlock(&mp->mu);
}

static void *progress_main(void *arg)
{
	struct ckpt_ctx *ctx = arg;
	struct ckpt_mpi *mp = M(ctx);
	struct timespec ts = { 0, 2000000 }; /* 2 ms: commit latency vs an idle core */

	pthread_setname_np(pthread_self(), "ckpt-mpi"); /* for top -H, ps -L, gdb */
	for (;;) {
		pthread_mutex_lock(&mp->mu);
		int stop = mp->thread_stop;
		pthread_mutex_unlock(&mp->mu);
		if (stop)
			break;
		ckpt_mpi__progress(ctx);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* ---- hooks called by the rest of the library ---- */

/* Append a whole vote to the outbox in one critical section: the engine takes the outbox under the
 * same lock, so it sees the vote either not at all or complete (rc and message included). */
static int post_vote(struct ckpt_mpi *mp, const struct vote *v, struct ckpt_err *err)
{
	pthread_mutex_lock(&mp->mu);
	if (mp->nout == mp->capout) {
		size_t cap = mp->capout ? 2 * mp->capout : 8;
		struct vote *nv = realloc(mp->outbox, cap * sizeof(*nv));

		if (!nv) {
			pthread_mutex_unlock(&mp->mu);
			return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for a commit vote");
		}
		mp->outbox = nv;
		mp->capout = cap;
	}
	mp->outbox[mp->nout++] = *v;
	pthread_mutex_unlock(&mp->mu);
	if (ckpt_mpi__test_hook)
		ckpt_mpi__test_hook("vote.posted");
	return CKPT_OK;
}

/* Drain thread: the shard is durable on shared; vote and let the engine finish the commit. */
int ckpt_mpi__commit(struct ckpt_ctx *ctx, const struct ckpt_drained *d, struct ckpt_err *err)
{
	struct ckpt_mpi *mp = M(ctx);
	struct vote v;
	int rc;

	memset(&v, 0, sizeof(v));
	v.step = d->step;
	v.save_id = d->save_id;
	v.created_ns = d->created_ns;
	v.file_size = d->shard.file_size;
	v.index_xxh3 = d->shard.index_xxh3;
	v.raw_bytes = d->shard.raw_bytes;
	v.nregions = d->shard.nregions;
	v.rank = (uint32_t)mp->rank;
	v.awaits = 1;
	if ((rc = post_vote(mp, &v, err)) < 0)
		return rc;
	return CKPT_COMMIT_PENDING;
}

/* A failed drain or local save still votes, so that rank 0 can end the round at once. A failed
 * drain awaits the outcome like a successful one; a failed local save (reported by ckpt_save
 * itself) does not. */
static void vote_failure(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id, int rc,
			 const char *msg, int awaits)
{
	struct ckpt_mpi *mp = M(ctx);
	struct ckpt_err err;
	struct vote v;

	if (!mp)
		return;
	memset(&v, 0, sizeof(v));
	v.step = step;
	v.save_id = save_id;
	v.rc = rc;
	v.rank = (uint32_t)mp->rank;
	v.awaits = (uint32_t)awaits;
	snprintf(v.msg, sizeof(v.msg), "%s", msg);
	/* Out of memory: no vote, and rank 0 ends the round when mpi_timeout passes. */
	post_vote(mp, &v, &err);
}

void ckpt_mpi__vote_failure(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id, int rc,
			    const char *msg)
{
	vote_failure(ctx, step, save_id, rc, msg, 1);
}

void ckpt_mpi__vote_save_failure(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id, int rc,
				 const char *msg)
{
	vote_failure(ctx, step, save_id, rc, msg, 0);
}

void ckpt_mpi__vote_skipped(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id,
			    const char *msg)
{
	struct ckpt_mpi *mp = M(ctx);
	struct ckpt_err err;
	struct vote v;

	memset(&v, 0, sizeof(v));
	v.step = step;
	v.save_id = save_id;
	v.rc = CKPT_ENOENT;
	v.rank = (uint32_t)mp->rank;
	v.skipped = 1;
	snprintf(v.msg, sizeof(v.msg), "%s", msg);
	/* Out of memory: no vote; the round fails when mpi_timeout passes (not committed either). */
	post_vote(mp, &v, &err);
}

void ckpt_mpi__poll(struct ckpt_ctx *ctx)
{
	if (M(ctx) && !M(ctx)->thread_on)
		ckpt_mpi__progress(ctx);
}

void ckpt_mpi__wait_progress(struct ckpt_ctx *ctx)
{
	struct timespec dl;

	pthread_mutex_unlock(&ctx->mu);
	ckpt_mpi__poll(ctx);
	pthread_mutex_lock(&ctx->mu);
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_nsec += 2000000;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&ctx->cv, &ctx->mu, &dl);
}

/* ---- collective waits and the engine's life ---- */

int ckpt_mpi__wait(struct ckpt_ctx *ctx, MPI_Request *req, int mrc, const char *what,
		   double deadline, struct ckpt_err *err)
{
	struct timespec ts = { 0, 100000 };
	int done = 0;

	if (mrc != MPI_SUCCESS)
		return ckpt_mpi__error(err, mrc, what);
	for (;;) {
		if (deadline > 0 && MPI_Wtime() > deadline)
			return ckpt_err__set(err, CKPT_ETIMEDOUT, "%s: other ranks did not join", what);
		if ((mrc = MPI_Test(req, &done, MPI_STATUS_IGNORE)) != MPI_SUCCESS)
			return ckpt_mpi__error(err, mrc, what);
		if (done)
			return CKPT_OK;
		if (!M(ctx)->thread_on)
			ckpt_mpi__progress(ctx);
		nanosleep(&ts, NULL);
	}
}

int ckpt_mpi__new(struct ckpt_mpi **out, MPI_Comm comm, int *rank, int *size,
		  struct ckpt_err *err)
{
	struct ckpt_mpi *mp;
	int mrc;

	*out = NULL;
	if (!(mp = calloc(1, sizeof(*mp))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory");
	pthread_mutex_init(&mp->mu, NULL);
	/* Our own communicator: our messages never match the caller's receives. */
	if ((mrc = MPI_Comm_dup(comm, &mp->comm)) != MPI_SUCCESS) {
		pthread_mutex_destroy(&mp->mu);
		free(mp);
		return ckpt_mpi__error(err, mrc, "MPI_Comm_dup");
	}
	MPI_Comm_rank(mp->comm, &mp->rank);
	MPI_Comm_size(mp->comm, &mp->size);
	MPI_Query_thread(&mp->thread_level);
	*rank = mp->rank;
	*size = mp->size;
	*out = mp;
	return CKPT_OK;
}

void ckpt_mpi__free(struct ckpt_mpi *mp)
{
	if (!mp)
		return;
	free(mp->outbox);
	while (mp->crounds)
		cround_drop(mp, mp->crounds);
	for (struct cres *r = mp->cresults, *nr; r; r = nr) {
		nr = r->next;
		free(r);
	}
	if (mp->comm != MPI_COMM_NULL)
		MPI_Comm_free(&mp->comm);
	pthread_mutex_destroy(&mp->mu);
	free(mp);
}

MPI_Comm ckpt_mpi__comm(const struct ckpt_mpi *mp)
{
	return mp->comm;
}

void ckpt_mpi__start_thread(struct ckpt_ctx *ctx)
{
	struct ckpt_mpi *mp = M(ctx);

	/* Without the thread (no MPI_THREAD_MULTIPLE, or pthread_create failed) the API calls and
	 * every collective wait drive the engine: slower commits, same outcome. */
	if (mp->thread_level == MPI_THREAD_MULTIPLE &&
	    pthread_create(&mp->thread, NULL, progress_main, ctx) == 0)
		mp->thread_on = 1;
}

void ckpt_mpi__open_failed(struct ckpt_ctx *ctx)
{
	M(ctx)->broken = 1;
}

int ckpt_mpi__close(struct ckpt_ctx *ctx)
{
	struct ckpt_mpi *mp = M(ctx);
	int rc = CKPT_OK;

	if (!mp)
		return CKPT_OK;
	if (mp->thread_on) {
		pthread_mutex_lock(&mp->mu);
		mp->thread_stop = 1;
		pthread_mutex_unlock(&mp->mu);
		pthread_join(mp->thread, NULL);
		mp->thread_on = 0; /* from here on this thread drives the engine */
	}
	/* Let every rank finish its exchanges before the communicator goes away. */
	ckpt_mpi__progress(ctx);
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
	ckpt_mpi__progress(ctx);
	for (struct sendbuf *b = mp->sends, *nb; b; b = nb) {
		int done = 0;

		nb = b->next;
		/* Small messages complete at once (eager); one to a rank that is gone may not. */
		MPI_Test(&b->req, &done, MPI_STATUS_IGNORE);
		if (!done) {
			MPI_Cancel(&b->req);
			MPI_Request_free(&b->req);
		}
		free(b);
	}
	mp->sends = NULL;
	for (struct round *r = mp->rounds, *nr; r; r = nr) {
		nr = r->next;
		round_free(r);
	}
	for (struct await *a = mp->awaits, *na; a; a = na) {
		na = a->next;
		free(a);
	}
	ckpt_mpi__free(mp); /* the outbox, the rounds of agree, the communicator */
	ctx->mpi = NULL;
	return rc;
}

/* Wait for this rank's pending commits before close, driving the engine. */
void ckpt_mpi__drain_before_close(struct ckpt_ctx *ctx, double timeout)
{
	double end = MPI_Wtime() + timeout;

	pthread_mutex_lock(&ctx->mu);
	while (ctx->pending && MPI_Wtime() < end)
		ckpt_mpi__wait_progress(ctx);
	pthread_mutex_unlock(&ctx->mu);
}

