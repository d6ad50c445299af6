/* SPDX-License-Identifier: MIT */
/* Step-level views of both tiers: which copy of a step exists and is intact. */
#ifndef CKPT_STEP_H
#define CKPT_STEP_H

#include <stdint.h>

#include "fmt.h"
#include "shard.h"
#include "store.h"

/*
 * Read the MANIFEST of `step` under shared_job. With check_shards, also check that every shard it
 * lists exists with the listed size and index checksum (reads each shard's trailer only).
 * CKPT_ENOENT: not committed (no manifest). CKPT_ECORRUPT: a manifest or shard does not match.
 */
int ckpt_step__manifest(const char *shared_job, uint64_t step, struct ckpt_manifest *m,
			int check_shards, struct ckpt_err *err);
/* Open the local shard of `rank` for `step` (structure verified). CKPT_ENOENT when absent. */
int ckpt_step__open_local(struct ckpt_shard **out, const char *local_job, uint64_t step,
			  uint32_t rank, struct ckpt_err *err);
/* Open the committed shared shard of `rank` named by manifest m, checked against it. */
int ckpt_step__open_shared(struct ckpt_shard **out, const char *shared_job,
			   const struct ckpt_manifest *m, uint32_t rank, struct ckpt_err *err);

#endif
