/* SPDX-License-Identifier: MIT */
/* The commit layer (commit.c; the MPI vote engine is commit_mpi.h), private: the writer lease,
 * the commit point, and the entry points of a drain thread that ends a job. */
#ifndef CKPT_COMMIT_H
#define CKPT_COMMIT_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* commit.c: the writer lease (docs/CONCURRENCY.md, FORMAT.md) */
/* Take the writer lease of the job's shared directory: 1 taken (and its heartbeat started), 0
 * held by another live writer (err says who: host, pid, heartbeat age), or a CKPT_E* error.
 * Rank 0 only; at open, and by the commit point of a context that does not hold it. */
int ckpt_commit__lease_take(struct ckpt_ctx *ctx, struct ckpt_err *err);
/* Does this context hold the writer lease (as far as it knows)? */
int ckpt_commit__lease_held(const struct ckpt_ctx *ctx);
/* Stop the heartbeat and remove the lease file if it is still this context's; free it. */
void ckpt_commit__lease_release(struct ckpt_ctx *ctx);
/* ckpt_close gave up on drain threads stuck on the volume (they commit nothing more): let the
 * next context of this process take the lease at once, without waiting for them. No I/O, no
 * lock but the process's lease list; ckpt_commit__lease_release still runs when they leave. */
void ckpt_commit__lease_abandon(struct ckpt_ctx *ctx);

/* commit.c */
/* The commit point, the one place a MANIFEST is written: encode m, check that shared_dir is still
 * the directory opened, write it durably (write, fsync, rename, fsync dir), then remove the shards
 * of other saves of the step. Single-process and MPI (rank 0) commits both end here. Any thread,
 * without ctx->mu. */
int ckpt_commit__point(struct ckpt_ctx *ctx, const struct ckpt_manifest *m, struct ckpt_err *err);
/* A single-process context's commit: a one-rank manifest through the commit point. */
int ckpt_commit__single(struct ckpt_ctx *ctx, const struct ckpt_drained *d, struct ckpt_err *err);

/* A drain thread's commit of its durable shard, without ctx->mu: single process, the commit point
 * (ckpt_commit__single); opened with MPI, a vote to the engine (commit_mpi.c), which returns
 * CKPT_COMMIT_PENDING. */
int ckpt_commit__drained(struct ckpt_ctx *ctx, const struct ckpt_drained *d, struct ckpt_err *err);
/* A drain that failed on this rank, without ctx->mu: with MPI, vote the failure so that rank 0
 * ends the round (the outcome settles the step); nothing for a single process. Returns
 * CKPT_COMMIT_PENDING when the failure went to the engine, else rc. */
int ckpt_commit__vote_failed(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id, int rc,
			     const char *msg);

#endif
