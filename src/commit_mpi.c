/* SPDX-License-Identifier: MIT */
/* The MPI vote engine: how ranks agree that a step is committed. With commit_mpi_agree.c (the
 * bounded agreement rounds of the collective calls, above this file) the only code that talks MPI
 * for the commit protocol; api_mpi.c holds the collective API above both.
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
 * The engine also carries the agreement rounds' messages: rank 0 files each part it receives in
 * its round (ckpt_mpi__cround_get), every other rank keeps rank 0's results (mp->cresults), and
 * commit_mpi_agree.c takes them from there; this file calls nothing of it (commit_mpi_priv.h).
 *
 * Below: commit.c (the commit point) and the drain's step records. Above: commit_mpi_agree.c,
 * api_mpi.c (open, collectives) and context.c (waiting, closing); this file calls none of them.
 */
#include <assert.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commit.h"
#include "commit_mpi.h"
#include "commit_mpi_priv.h"
#include "internal.h"
#include "retention.h"

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

void (*ckpt_mpi__test_hook)(const char *point);

int ckpt_mpi__error(struct ckpt_err *err, int mrc, const char *what)
{
	char s[MPI_MAX_ERROR_STRING];
	int len = 0;

	MPI_Error_string(mrc, s, &len);
	return ckpt_err__set(err, CKPT_EMPI, "%s: %s", what, s);
}

/* ---- the progress engine ---- */

void ckpt_mpi__send(struct ckpt_mpi *mp, int dest, int tag, const void *msg, size_t len)
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
		ckpt_mpi__send(mp, i, TAG_OUTCOME, &o, sizeof(o));
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
			ckpt_mpi__send(mp, (int)v->rank, TAG_OUTCOME, &o, sizeof(o));
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

/* ---- the agreement rounds' mailbox on rank 0 (the rounds: commit_mpi_agree.c) ---- */

struct cround *ckpt_mpi__cround_get(struct ckpt_mpi *mp, uint64_t seq)
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

void ckpt_mpi__cround_drop(struct ckpt_mpi *mp, struct cround *r)
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

	if (c->seq < mp->decided || c->rank >= (uint32_t)mp->size ||
	    !(r = ckpt_mpi__cround_get(mp, c->seq)))
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
			ckpt_mpi__send(mp, 0, TAG_VOTE, &out[i], sizeof(out[i]));
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
		ckpt_mpi__cround_drop(mp, mp->crounds);
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

void ckpt_mpi__stop(struct ckpt_ctx *ctx)
{
	struct ckpt_mpi *mp = M(ctx);

	if (mp->thread_on) {
		pthread_mutex_lock(&mp->mu);
		mp->thread_stop = 1;
		pthread_mutex_unlock(&mp->mu);
		pthread_join(mp->thread, NULL);
		mp->thread_on = 0; /* from here on this thread drives the engine */
	}
	/* Let every rank finish its exchanges before the communicator goes away. */
	ckpt_mpi__progress(ctx);
}

void ckpt_mpi__end(struct ckpt_ctx *ctx)
{
	struct ckpt_mpi *mp = M(ctx);

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

