/* SPDX-License-Identifier: MIT */
/* The drain module (drain.c), private: the threads and the queue that take each saved step from
 * the local tier to the shared tier, then hand it to the commit layer (commit.h). Used by the
 * context and the api. */
#ifndef CKPT_DRAIN_H
#define CKPT_DRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* drain.c: the pipeline */
int ckpt_drain__start(struct ckpt_ctx *ctx, struct ckpt_err *err);
/* Wait up to `timeout` seconds for the queue to empty, then stop the threads (returning within
 * `timeout` even when a thread is stuck in a call on the shared volume: ckpt_drain__release).
 * CKPT_ETIMEDOUT when drains were abandoned. */
int ckpt_drain__stop(struct ckpt_ctx *ctx, double timeout);
/* Queue rec for draining (ctx->mu held). */
void ckpt_drain__enqueue(struct ckpt_ctx *ctx, struct ckpt_step_rec *rec);
/* The drain has fallen behind (ctx->mu held): take out of the queue the queued steps older than
 * `step` (superseded: the newest complete step is what matters after a node loss) and store
 * their steps in skip[] (at most cap). Returns how many. Their records go back to state NONE
 * with rc CKPT_ENOENT; the caller removes their local copies without ctx->mu. */
size_t ckpt_drain__skip_superseded(struct ckpt_ctx *ctx, uint64_t step, uint64_t *skip,
				   size_t cap);
/* Is the drain busy and without progress on the shared tier for stall_after seconds? (ctx->mu
 * held). Returns the seconds it has been stuck, 0 when it is not. */
double ckpt_drain__stalled(const struct ckpt_ctx *ctx);
/* The end of ckpt_ctx__free, after ckpt_drain__stop (ctx->mu not held, nothing else touches ctx;
 * the context has freed its own part: stage, writer, codec, job lock): join the threads, then
 * free the rest of ctx (the drain's part, the writer lease, what retention deferred, the step
 * records, the trash, the config, the locks, ctx itself) and return 0; or, with may_detach while
 * threads are still stuck in the kernel, detach them and return 1: the last one to leave frees
 * the same rest (no call back up to the context), and the caller must not touch ctx again. */
int ckpt_drain__release(struct ckpt_ctx *ctx, int may_detach);
/* Is a drain of rec in progress? (ctx->mu held) */
int ckpt_drain__running(const struct ckpt_ctx *ctx, const struct ckpt_step_rec *rec);
/* Lowers the calling thread's priority by drain_nice below the nice value it inherited (capped
 * at 19): the background threads (drain, snapshot writer) never outrank training. */
void ckpt_drain__lower_priority(int drain_nice);
/* Tests only (white-box suites link the internal library; the shared library does not export
 * it): when set, a drain thread calls it with "job.setup" just before it sets up the drain of a
 * step, with ctx->mu not held. A test holds the drain there to make "the drain is behind" exact
 * instead of a race between compression and local saves. */
extern void (*ckpt_drain__test_hook)(const char *point);

#endif
