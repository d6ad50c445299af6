/* SPDX-License-Identifier: MIT */
/* Publishing protocol: a step becomes visible on the shared tier when its MANIFEST is renamed
 * into place. This file holds the commit point itself (ckpt_commit__point, the one function that
 * writes a MANIFEST) and the single-process commit; commit_mpi.c's vote engine calls the same
 * commit point once every rank's shard is in. */
#include <stdlib.h>

#include "internal.h"

int ckpt_commit__point(struct ckpt_ctx *ctx, const struct ckpt_manifest *m, struct ckpt_err *err)
{
	char dir[CKPT_PATH_MAX];
	uint8_t *buf;
	size_t len = ckpt_fmt__manifest_size(m->nranks);
	int rc;

	if ((rc = ckpt_store__step_dir(dir, sizeof(dir), ctx->shared_job, m->step)) < 0)
		return ckpt_err__set(err, rc, "path too long: %s", ctx->shared_job);
	if (!(buf = malloc(len)))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for a manifest");
	ckpt_fmt__encode_manifest(buf, m);
	/* The shared directory must still be the one this context opened (not a volume mounted
	 * over it since): a MANIFEST written elsewhere would commit shards it cannot see. */
	if ((rc = ckpt_store__same_dir(ctx->shared_root, ctx->shared_dev, ctx->shared_ino,
				       err)) < 0) {
		free(buf);
		return rc;
	}
	ckpt_config__fault(ctx->cfg->fault_kill_at, "commit.before");
	/* The commit point: write, fsync, rename over any older MANIFEST of this step, fsync the
	 * directory. Before the rename readers see the previous state (the older save of this step,
	 * or no step); after it, the new one. */
	rc = ckpt_store__write_durable(dir, CKPT_MANIFEST_NAME, buf, len, err);
	free(buf);
	if (rc < 0)
		return rc;
	ckpt_config__fault(ctx->cfg->fault_kill_at, "commit.done");
	/* Shards of earlier saves of this step are unreachable now. A kill before this line leaves
	 * them behind; ckpt_open's sweep (single process) removes them. */
	ckpt_store__remove_other_saves(dir, m->save_id);
	return CKPT_OK;
}

int ckpt_commit__single(struct ckpt_ctx *ctx, const struct ckpt_drained *d, struct ckpt_err *err)
{
	struct ckpt_manifest_rank r = d->shard;
	struct ckpt_manifest m = { CKPT_FMT_VERSION, 1, d->step, d->save_id, d->created_ns, &r };

	return ckpt_commit__point(ctx, &m, err);
}
