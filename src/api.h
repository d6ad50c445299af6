/* SPDX-License-Identifier: MIT */
/* What api_mpi.c offers api.c (private): the collective variants of ckpt_save and ckpt_latest,
 * which api.c calls for a context opened with ckpt_open_mpi. api_mpi.c never calls api.c. */
#ifndef CKPT_API_H
#define CKPT_API_H

#include "internal.h"

#ifdef HAVE_MPI
/* Collective save; args_rc is this rank's argument check (every rank joins even when it failed,
 * so that none is left waiting in a collective). api_mu held. */
int ckpt_api_mpi__save(struct ckpt_ctx *ctx, uint64_t step, const ckpt_region *regs, size_t n,
		       int args_rc);
/* Collective ckpt_latest: the newest step readable on every rank, from one save; it is then the
 * step (and save) that ckpt_load reads. api_mu held. */
int ckpt_api_mpi__latest(struct ckpt_ctx *ctx, uint64_t *step);
#else
/* Built without MPI no context is an MPI one (ctx->mpi is NULL): api.c never reaches these. */
static inline int ckpt_api_mpi__save(struct ckpt_ctx *ctx, uint64_t step, const ckpt_region *regs,
				     size_t n, int args_rc)
{
	(void)step, (void)regs, (void)n, (void)args_rc;
	return ckpt_err__set(&ctx->err, CKPT_ENOTSUP, "built without MPI");
}

static inline int ckpt_api_mpi__latest(struct ckpt_ctx *ctx, uint64_t *step)
{
	(void)step;
	return ckpt_err__set(&ctx->err, CKPT_ENOTSUP, "built without MPI");
}
#endif

#endif
