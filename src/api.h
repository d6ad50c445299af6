/* SPDX-License-Identifier: MIT */
/* Helpers shared by api.c and api_mpi.c (private). */
#ifndef CKPT_API_H
#define CKPT_API_H

#include "internal.h"

/* Check the config, make the directories, build the context; no drain thread yet. */
int ckpt_api__open(struct ckpt_ctx **out, const ckpt_config *cfg, uint32_t rank, uint32_t nranks,
		   ckpt_commit_fn commit, void *mpi, struct ckpt_err *err);
/* Start the drain threads (after recovery has queued what it found). */
int ckpt_api__start(struct ckpt_ctx *ctx, struct ckpt_err *err);
/* The thread-local message buffer of failed opens (ckpt_errmsg(NULL)). */
struct ckpt_err *ckpt_api__open_err(void);
/* Backpressure, local write with the given save id, enqueue (api_mu held). */
int ckpt_api__save_local(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id,
			 const ckpt_region *regs, size_t n);
void ckpt_api__retry_failed(struct ckpt_ctx *ctx);
int ckpt_api__step_usable(struct ckpt_ctx *ctx, uint64_t step);
int ckpt_api__candidates(struct ckpt_ctx *ctx, uint64_t **out, size_t *n);
int ckpt_api__open_step(struct ckpt_ctx *ctx, uint64_t step, uint32_t rank,
			struct ckpt_shard **out, int *shared);
int ckpt_api__load(struct ckpt_ctx *ctx, uint64_t step, uint32_t rank, const char *name,
		   void *buf, size_t size);
/* Wait for a change of drain state (ctx->mu held); with MPI, also drive the commit protocol. */
void ckpt_api__wait_progress(struct ckpt_ctx *ctx);

/* commit_mpi.c (stubs in api.c when built without MPI; never called then: ctx->mpi stays NULL) */
/* Collective save; args_rc is this rank's argument check (every rank joins even when it failed). */
int ckpt_api__save_mpi(struct ckpt_ctx *ctx, uint64_t step, const ckpt_region *regs, size_t n,
		       int args_rc);
int ckpt_api__latest_mpi(struct ckpt_ctx *ctx, uint64_t *step);
void ckpt_api__progress_mpi(struct ckpt_ctx *ctx);
void ckpt_api__wait_progress_mpi(struct ckpt_ctx *ctx);
void ckpt_api__close_mpi(struct ckpt_ctx *ctx);
void ckpt_mpi__drain_before_close(struct ckpt_ctx *ctx, double timeout);
void ckpt_mpi__vote_failure(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id, int rc,
			    const char *msg);

#endif
