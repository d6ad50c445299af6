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
 * CKPT_ESTALE (check_shards): a shard vanished because the step was re-saved or retired
 * meanwhile; read the MANIFEST again.
 */
int ckpt_step__manifest(const char *shared_job, uint64_t step, struct ckpt_manifest *m,
			int check_shards, struct ckpt_err *err);
/* How often a reader re-reads a MANIFEST whose shards vanished under it (re-saves, retention)
 * before it reports CKPT_ESTALE. */
#define CKPT_STEP_RETRIES 16

/* ckpt_step__manifest with check_shards, re-read while shards vanish under it (CKPT_ESTALE):
 * the save committed now, checked. CKPT_ENOENT when the step is not committed (or was retired
 * meanwhile); CKPT_ECORRUPT only for real damage. */
int ckpt_step__committed(const char *shared_job, uint64_t step, struct ckpt_manifest *m,
			 struct ckpt_err *err);
/* Open the local shard of `rank` for `step` (structure verified). CKPT_ENOENT when absent. */
int ckpt_step__open_local(struct ckpt_shard **out, const char *local_job, uint64_t step,
			  uint32_t rank, struct ckpt_err *err);
/* Open the committed shared shard of `rank` named by manifest m, checked against it.
 * CKPT_ESTALE when the shard is gone because the MANIFEST now names another save of the step or
 * the step was retired (a reader re-reads the MANIFEST and retries); CKPT_ECORRUPT when the
 * MANIFEST still names m's save and its shard is missing, or the shard does not match m. */
int ckpt_step__open_shared(struct ckpt_shard **out, const char *shared_job,
			   const struct ckpt_manifest *m, uint32_t rank, struct ckpt_err *err);

#endif
