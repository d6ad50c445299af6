/* SPDX-License-Identifier: MIT */
/* The MPI vote engine (commit_mpi.c), private: the commit protocol between ranks. Used by
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
/* Stop the engine's thread, let every rank finish its exchanges (a barrier bounded by
 * mpi_timeout), free the engine and the communicator; ctx->mpi becomes NULL. CKPT_ETIMEDOUT
 * when the ranks did not all meet: the barrier is then left to MPI_Finalize. */
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
