/* SPDX-License-Identifier: MIT */
/* The MPI commit protocol, private: the vote engine (commit_mpi.c) and the bounded agreement
 * rounds of the collective calls (commit_mpi_agree.c: ckpt_mpi__agree, ckpt_mpi__close). Used by
 * api_mpi.c (open, collectives) and by context.c (waiting, closing). */
#ifndef CKPT_COMMIT_MPI_H
#define CKPT_COMMIT_MPI_H

#include "internal.h"

#ifdef HAVE_MPI
#include <mpi.h>

struct ckpt_mpi;

/* An engine on our own duplicate of comm (our messages never match the caller's receives);
 * *rank and *size are this process's place in it. Free it with ckpt_mpi__free until a context
 * holds it (ckpt_ctx__open), then ckpt_mpi__close ends it. */
int ckpt_mpi__new(struct ckpt_mpi **out, MPI_Comm comm, int *rank, int *size,
		  struct ckpt_err *err);
void ckpt_mpi__free(struct ckpt_mpi *mp);
/* The engine's communicator, for the collectives of api_mpi.c. */
MPI_Comm ckpt_mpi__comm(const struct ckpt_mpi *mp);
/* ckpt_commit__drained with MPI: the shard is durable on shared, vote (CKPT_COMMIT_PENDING). */
int ckpt_mpi__commit(struct ckpt_ctx *ctx, const struct ckpt_drained *d, struct ckpt_err *err);
/* ckpt_commit__vote_failed with MPI: a failed drain votes a failure and awaits the outcome. */
void ckpt_mpi__vote_failure(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id, int rc,
			    const char *msg);
/* A failed local save votes a failure so that rank 0 ends the round at once; ckpt_save reports
 * it, so no outcome is awaited. */
void ckpt_mpi__vote_save_failure(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id, int rc,
				 const char *msg);
/* One pass of the engine: post votes, take messages, commit finished rounds (rank 0), apply
 * outcomes, check deadlines. Any thread, never with ctx->mu held. */
void ckpt_mpi__progress(struct ckpt_ctx *ctx);
/* With MPI_THREAD_MULTIPLE, run the engine on a thread of its own (else the API calls drive it). */
void ckpt_mpi__start_thread(struct ckpt_ctx *ctx);
/* Wait for the nonblocking collective req (mrc: what starting it returned), driving the engine
 * meanwhile: a rank blocked in a collective must still forward its drains' votes. deadline: an
 * MPI_Wtime() or 0 for none (CKPT_ETIMEDOUT past it). */
int ckpt_mpi__wait(struct ckpt_ctx *ctx, MPI_Request *req, int mrc, const char *what,
		   double deadline, struct ckpt_err *err);
/* Bounded collective rounds, for the collective API (api_mpi.c): every rank calls
 * ckpt_mpi__agree with the same `call` ("ckpt_save", ...) in the same order. Each gives its rc
 * and n (<= CKPT_MPI_NV) values; when every rank has, each gets out[j] = the reduction ops[j] of
 * the values in[j], *minrc = the lowest rc and *who = the first rank that gave it, and CKPT_OK.
 * The round ends within mpi_timeout (plus 1 s when rank 0 is the one silent) on every rank:
 * CKPT_ETIMEDOUT with "call: rank 3 did not answer within mpi_timeout=3 s" in err when a rank
 * took no part in time, CKPT_EMPI when ranks made different calls. A rank that comes late to a
 * round that failed gets the same failure at once, and one that never made a call (another
 * call, or another key: ckpt_save's step) skips that call's round; so every rank's next round
 * is the same again: a context stays usable after a timeout. No MPI request is left pending (the rounds are
 * point-to-point messages through rank 0, which MPI_Finalize needs no help with). */
#define CKPT_MPI_NV 12
enum { CKPT_MPI_MIN, CKPT_MPI_MAX, CKPT_MPI_ROOT };
int ckpt_mpi__agree(struct ckpt_ctx *ctx, const char *call, uint64_t key, int rc,
		    const uint64_t *in, const uint8_t *ops, size_t n, uint64_t *out, int *minrc,
		    int *who, struct ckpt_err *err);
/* Rank 0 (a no-op elsewhere): the save (step, save_id) must not be committed (ckpt_save failed on
 * some rank): its round ends now with rc and msg, and its later votes are answered so at once. */
void ckpt_mpi__abandon(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id, int rc,
		       const char *msg);
/* This rank skipped the queued save (step, save_id) (superseded, not drained): rank 0 ends its
 * round as skipped, and every rank that drained it reports it skipped too. */
void ckpt_mpi__vote_skipped(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id,
			    const char *msg);
/* CKPT_EMPI with "what: MPI's words" in err. */
int ckpt_mpi__error(struct ckpt_err *err, int mrc, const char *what);
/* ckpt_open_mpi failed on this rank: not every rank has a context, so ckpt_mpi__close must not
 * wait in a collective. */
void ckpt_mpi__open_failed(struct ckpt_ctx *ctx);
/* Tests only (tests/mpi_vote_race.c): when set, called at named points of the engine to widen a
 * race window ("vote.posted": a vote has just entered the outbox). The library never sets it. */
extern void (*ckpt_mpi__test_hook)(const char *point);

/* Called from the layers that run with and without MPI, for a context with ctx->mpi set: */
/* One pass of the engine unless its thread runs (ckpt_poll). */
void ckpt_mpi__poll(struct ckpt_ctx *ctx);
/* ctx->mu held: drive the engine, then wait up to 2 ms for a change of drain state. */
void ckpt_mpi__wait_progress(struct ckpt_ctx *ctx);
/* Wait up to timeout seconds for this rank's pending commits, driving the engine. */
void ckpt_mpi__drain_before_close(struct ckpt_ctx *ctx, double timeout);
/* Stop the engine's thread, let every rank finish its exchanges (a round of ckpt_mpi__agree,
 * bounded by mpi_timeout), free the engine and the communicator; ctx->mpi becomes NULL.
 * CKPT_ETIMEDOUT when the ranks did not all meet, with a warning (log_level 1) that names the
 * silent ranks; nothing is left pending for MPI_Finalize. */
int ckpt_mpi__close(struct ckpt_ctx *ctx);
#else
/* Built without MPI there is no ckpt_open_mpi: ctx->mpi is always NULL and the callers (which test
 * it) never reach these. */
static inline int ckpt_mpi__commit(struct ckpt_ctx *ctx, const struct ckpt_drained *d,
				   struct ckpt_err *err)
{
	(void)ctx, (void)d;
	return ckpt_err__set(err, CKPT_EINVAL, "built without MPI");
}

static inline void ckpt_mpi__vote_failure(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id,
					  int rc, const char *msg)
{
	(void)ctx, (void)step, (void)save_id, (void)rc, (void)msg;
}

static inline void ckpt_mpi__poll(struct ckpt_ctx *ctx)
{
	(void)ctx;
}

static inline void ckpt_mpi__wait_progress(struct ckpt_ctx *ctx)
{
	(void)ctx;
}

static inline void ckpt_mpi__drain_before_close(struct ckpt_ctx *ctx, double timeout)
{
	(void)ctx, (void)timeout;
}

static inline int ckpt_mpi__close(struct ckpt_ctx *ctx)
{
	(void)ctx;
	return 0;
}
#endif

#endif
