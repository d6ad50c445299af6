/* SPDX-License-Identifier: MIT */
/* The retention module (retention.c), private: the step records of a context, retention
 * (keep_local, keep_shared, read_grace) and the trash. Used by the commit layer, the drain and the
 * layers above; it uses only the context struct (internal.h) and the modules below. */
#ifndef CKPT_RETENTION_H
#define CKPT_RETENTION_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* retention.c: step records, retention and the trash */
/* Find or create the record of `step` (ctx->mu held). NULL when out of memory. */
struct ckpt_step_rec *ckpt_retention__rec(struct ckpt_ctx *ctx, uint64_t step, int create);
/* Apply keep_local / keep_shared (ctx->mu held: a save cannot rename into a step meanwhile).
 * All of it runs under the lock: the listing of both job directories, the header, trailer and
 * index of each local copy, the MANIFEST of each step (small reads, mostly cached) and the
 * renames into the trash. What takes long, removing the retired files (tens of ms for a large
 * one, that a save must not wait for), happens later without the lock: the drain threads empty
 * the trash (retention.c). */
void ckpt_retention__apply(struct ckpt_ctx *ctx);
/* Wait until the trash is empty (ctx->mu held): what retention removed is then gone. */
void ckpt_retention__wait_trash(struct ckpt_ctx *ctx);
/* Remove what retention retired (ctx->mu held; dropped while removing). One thread at a time, so
 * that ckpt_retention__wait_trash knows when all is gone. For drain threads and ckpt_drain__stop. */
void ckpt_retention__empty_trash(struct ckpt_ctx *ctx);

/* Keep this rank's local copies within keep_local + max_pending steps when drains fail (a soft
 * mount's EIO, a full volume) (ctx->mu held): while there are more, the oldest failed drain that a
 * newer step supersedes (durable locally, or committed) gives up its local copy: the step becomes
 * CKPT_STATE_NONE with CKPT_ENOENT ("skipped"), like a queued step that skip_superseded dropped,
 * and its copy goes into the trash. Within the bound every failed drain keeps its copy and is
 * retried. Never the newest local step (nothing supersedes it: it is kept and retried), never a
 * queued or running drain, never a committed step, nothing on the shared tier. Single process
 * only (0 with MPI: the ranks agree, below). Local I/O only (a readdir and a stat per step).
 * Returns how many were released. For the save path and the drain, after a failure. */
size_t ckpt_retention__release_failed(struct ckpt_ctx *ctx);
/* The same bound with MPI, where a step is released on every rank or on none (api_mpi.c: in
 * ckpt_save's second round the ranks agree on the steps and how many). All with ctx->mu held;
 * `newest`: the step this ckpt_save has just written on every rank, which supersedes the older
 * ones once durable locally. failed_candidates: this rank's failed steps that a newer one
 * supersedes and nothing works on, oldest first, at most max into steps; their number.
 * local_excess: how many local steps beyond keep_local + max_pending this rank holds (a readdir
 * and a stat per step). release_agreed: release `step` (agreed by every rank); 1 when released,
 * 0 when it is no longer a candidate here. */
size_t ckpt_retention__failed_candidates(struct ckpt_ctx *ctx, uint64_t newest, uint64_t *steps,
					 size_t max);
size_t ckpt_retention__local_excess(struct ckpt_ctx *ctx);
int ckpt_retention__release_agreed(struct ckpt_ctx *ctx, uint64_t step, uint64_t newest);

/* Superseded shards of stepdir (other saves than keep_id), just made unreachable by a commit:
 * retired once read_grace seconds have passed (at once when read_grace is 0). Takes ctx->mu. */
void ckpt_retention__defer_superseded(struct ckpt_ctx *ctx, const char *stepdir, uint64_t keep_id);
/* Free what is still deferred (ctx->mu not needed: no thread runs). Left on disk: the next
 * writer's open (rule S) or retention removes it once its grace is over. */
void ckpt_retention__free_deferred(struct ckpt_ctx *ctx);

/* ckpt_open's work on the shared tier, which a drain thread runs (drain.c) so that ckpt_open
 * never waits for a volume that stops answering right after its probes (issue 13). Both run
 * without ctx->mu and read ctx's fixed fields only. */
/* The writer's open sweep of superseded shards left by a kill after a commit (rule S of
 * docs/CONCURRENCY.md). Only for the holder of the writer lease. */
void ckpt_retention__sweep(struct ckpt_ctx *ctx);
/* A local step to drain again: complete locally, not committed on shared (the process died
 * mid-drain, or the shared tier failed), or committed by an older save. */
struct ckpt_redrain {
	uint64_t step, save_id, created_ns;
};
/* The local steps of this rank to drain again (*out: malloc'd, the caller frees it). CKPT_OK, or
 * the failure to list the local job directory or CKPT_ENOMEM. */
int ckpt_retention__recover_scan(struct ckpt_ctx *ctx, struct ckpt_redrain **out, size_t *n,
				 struct ckpt_err *err);

#endif
