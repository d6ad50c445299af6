/* SPDX-License-Identifier: MIT */
/* libckpt MPI entry point, for C and C++ callers that have <mpi.h>. */
#ifndef CKPT_MPI_H
#define CKPT_MPI_H

#include <mpi.h>

#include "ckpt.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Open a checkpointer whose steps commit atomically across all ranks of `comm`. Collective: every
 * rank of comm calls it with an equivalent config (same shared_dir volume and name; local_dir may
 * differ per node, and ranks of one node may share it). The library duplicates comm and never
 * touches the caller's traffic. MPI must be initialized; the thread level decides progress:
 * with MPI_THREAD_MULTIPLE a library thread completes commits in the background, otherwise
 * commits progress inside ckpt_save, ckpt_wait, ckpt_poll, ckpt_latest and ckpt_close.
 * On any rank's failure every rank gets an error (CKPT_EMPI on the ranks that succeeded).
 * Returns CKPT_ENOTSUP from a libckpt built without MPI.
 */
int ckpt_open_mpi(ckpt_ctx **out, const ckpt_config *cfg, MPI_Comm comm);

#ifdef __cplusplus
}
#endif
#endif /* CKPT_MPI_H */
