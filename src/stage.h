/* SPDX-License-Identifier: MIT */
/* Snapshot saves (stage.c), part of the context layer: the staging pool (at most stage_bytes of
 * library-owned memory), the copy threads that fill it, and the writer thread that makes a staged
 * step durable locally and then queues its drain. Private, never installed. */
#ifndef CKPT_STAGE_H
#define CKPT_STAGE_H

#include "internal.h"

/* ckpt_stage__save's answer when it did not stage the step: write it directly (the staged steps
 * before it are durable by then). Never returned to users. */
#define CKPT_STAGE_DIRECT 1

/* Stage a step (api_mu held, snapshot mode): backpressure (max_pending), room in the pool, the
 * copy (several threads, XXH3 of the caller's bytes as they are copied), then hand it to the
 * writer thread. The step's record is LOCAL at once (retention keeps away from it) and counts in
 * ctx->pending until its drain is queued. After ckpt_stage__claim, the regions are the claimed
 * buffers and are staged without a copy. CKPT_STAGE_DIRECT when the pool cannot hold the step. */
int ckpt_stage__save(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id,
		     const ckpt_region *regs, size_t n);

/* ckpt_stage_alloc / ckpt_stage_free (api_mu held). */
int ckpt_stage__alloc(struct ckpt_ctx *ctx, size_t size, void **out);
int ckpt_stage__free_buf(struct ckpt_ctx *ctx, void *buf);
/* ckpt_save_staged, before the save (api_mu held): take ownership of every region's buffer that
 * the caller holds from ckpt_stage__alloc. CKPT_OK when every region is such a buffer (distinct,
 * large enough): the next ckpt_stage__save stages them as they are. Otherwise the error, in
 * ctx->err (args_rc < 0: the caller's own). ckpt_stage__unclaim after the save frees what it did
 * not take (a failed save). */
int ckpt_stage__claim(struct ckpt_ctx *ctx, const ckpt_region *regs, size_t n);
void ckpt_stage__unclaim(struct ckpt_ctx *ctx);

/* Is a save of `step` staged, not yet durable locally? (ctx->mu held) */
int ckpt_stage__staged(const struct ckpt_ctx *ctx, uint64_t step);
/* Wait (ctx->mu held) until no save of `step` (CKPT_STEP_ALL: of any step) is staged. */
void ckpt_stage__wait(struct ckpt_ctx *ctx, uint64_t step);
/* Write every staged step, then stop the threads (before the drain stops: ckpt_ctx__shutdown). */
void ckpt_stage__stop(struct ckpt_ctx *ctx);
/* Free the pool (after ckpt_stage__stop; NULL-safe on ctx->stage). */
void ckpt_stage__free(struct ckpt_ctx *ctx);

#endif
