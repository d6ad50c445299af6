/* SPDX-License-Identifier: MIT */
/* The context layer (context.c), private: what api.c and api_mpi.c both build on. */
#ifndef CKPT_CONTEXT_H
#define CKPT_CONTEXT_H

#include "internal.h"

/* Check the config and the directories, make the job directories, take the rank's lock, build the
 * context; no drain thread yet. mpi is the MPI engine (NULL when single): it decides how the
 * drain commits (commit.c: ckpt_commit__drained). On success the context holds
 * mpi (ckpt_ctx__shutdown ends it); on failure *out is NULL and mpi is still the caller's. */
int ckpt_ctx__open(struct ckpt_ctx **out, const ckpt_config *cfg, uint32_t rank, uint32_t nranks,
		   void *mpi, struct ckpt_err *err);
/* Start the drain threads; stops them again when that fails. Single process, the first of them
 * then does the open's work on the shared tier (the writer lease, the sweep of temporary and
 * superseded files, the scan for local steps to drain again: drain.c). */
int ckpt_ctx__start(struct ckpt_ctx *ctx, struct ckpt_err *err);
/* Single process, after ckpt_ctx__start: wait for that work until probe_timeout seconds after
 * ckpt_ctx__open began; past that, warn that shared_dir is not responding and return (the work
 * goes on in the drain thread; it counts as one pending drain for ckpt_wait and ckpt_close). */
void ckpt_ctx__wait_open(struct ckpt_ctx *ctx);
/* Finish a context: wait for its drains (and with MPI its pending commits) up to close_timeout,
 * stop the threads, end the MPI engine. Returns the first failure of a step that never committed,
 * or CKPT_ETIMEDOUT. Call ckpt_ctx__free afterwards (api_mu may be released in between). */
int ckpt_ctx__shutdown(struct ckpt_ctx *ctx);
/* Free a context (NULL-safe); no thread may run any more. */
void ckpt_ctx__free(struct ckpt_ctx *ctx);
/* The thread-local message buffer of failed opens (ckpt_errmsg(NULL)). */
struct ckpt_err *ckpt_ctx__open_err(void);

/* Backpressure, local write of the shard with the given save id, enqueue for draining. Called with
 * api_mu held; the failure is described in ctx->err. */
int ckpt_ctx__save_local(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id,
			 const ckpt_region *regs, size_t n);
/* Wait for a change of drain state (ctx->mu held); with MPI, also drive the commit protocol. */
void ckpt_ctx__wait_progress(struct ckpt_ctx *ctx);
/* Remove this rank's local copies of the skipped steps skip[n] (ctx->mu not held). */
void ckpt_ctx__remove_skipped(struct ckpt_ctx *ctx, const uint64_t *skip, size_t n);

/* Which save of a step this context reads. */
struct ckpt_pin {
	uint64_t step;
	uint64_t save_id;
	uint64_t created_ns;    /* when that save was made */
	uint32_t nranks;        /* how many ranks saved it */
	int local;              /* found as this rank's intact local copy */
	int committed;          /* a committed save of the step (this one or another) exists */
	int agreed;             /* MPI: every rank's ckpt_latest agreed on this save */
	unsigned reads;         /* shards opened for reading through this pin */
	struct ckpt_manifest m; /* the committed MANIFEST of that save; m.ranks NULL when the save
				 * is not (known to be) committed */
};

/* The save of `step` this rank would read now (structure only): its intact local copy when that
 * was saved by as many ranks as this context has, or is the committed save; else the committed
 * save, its shards checked (re-read while they vanish under it). Whatever number of ranks saved a
 * committed step, it is usable: reading one's own shard of it is refused later (CKPT_ENRANKS).
 * CKPT_ENOENT when neither exists; out->m is the caller's (ckpt_fmt__manifest_free). */
int ckpt_ctx__step_save(struct ckpt_ctx *ctx, uint64_t step, struct ckpt_pin *out,
			struct ckpt_err *err);
/* Is `step` usable by this context (ckpt_ctx__step_save finds a save)? */
int ckpt_ctx__step_usable(struct ckpt_ctx *ctx, uint64_t step);
/* Pins (api_mu held). The pin of `step`, or NULL. */
struct ckpt_pin *ckpt_ctx__pinned(struct ckpt_ctx *ctx, uint64_t step);
/* Pin `step` to p's save (replacing any pin of it); takes p->m. CKPT_ENOMEM. */
int ckpt_ctx__pin(struct ckpt_ctx *ctx, const struct ckpt_pin *p);
/* Pin `step` to the save `save_id` that the ranks agreed on (MPI ckpt_latest). CKPT_ENOMEM. */
int ckpt_ctx__pin_save(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id);
/* Drop the pin of `step` (this context saved it again), or every pin (step CKPT_STEP_ALL). */
void ckpt_ctx__unpin(struct ckpt_ctx *ctx, uint64_t step);
/* Steps present on either tier, newest first, without duplicates; *out is the caller's. */
int ckpt_ctx__candidates(struct ckpt_ctx *ctx, uint64_t **out, size_t *n);

#endif
