/* SPDX-License-Identifier: MIT */
/* Which copy of a step exists, and whether it is intact, on either tier. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "step.h"

int ckpt_step__open_local(struct ckpt_shard **out, const char *local_job, uint64_t step,
			  uint32_t rank, struct ckpt_err *err)
{
	char dir[CKPT_PATH_MAX], base[64], path[CKPT_PATH_MAX + 64];
	int rc;

	*out = NULL;
	if ((rc = ckpt_store__step_dir(dir, sizeof(dir), local_job, step)) < 0)
		return ckpt_err__set(err, rc, "path too long: %s", local_job);
	if ((rc = ckpt_store__check_step_dir(dir, err)) < 0)
		return rc;
	ckpt_store__local_name(base, sizeof(base), rank);
	snprintf(path, sizeof(path), "%s/%s", dir, base);
	if ((rc = ckpt_shard__open(out, path, err)) < 0)
		return rc;
	if ((*out)->hdr.step != step || (*out)->hdr.rank != rank ||
	    ((*out)->hdr.flags & CKPT_FLAG_COMPRESSED)) {
		ckpt_shard__close(*out);
		*out = NULL;
		return ckpt_err__set(err, CKPT_ECORRUPT,
				     "%s: header names another step, rank or tier (swapped file?)",
				     path);
	}
	return CKPT_OK;
}

static int shared_path(char *path, size_t len, const char *shared_job, uint64_t step,
		       uint32_t rank, uint64_t save_id)
{
	char dir[CKPT_PATH_MAX], base[64];
	int rc;

	if ((rc = ckpt_store__step_dir(dir, sizeof(dir), shared_job, step)) < 0)
		return rc;
	ckpt_store__shared_name(base, sizeof(base), rank, save_id);
	return snprintf(path, len, "%s/%s", dir, base) >= (int)len ? CKPT_EINVAL : CKPT_OK;
}

/* A shard that m lists is not there. Between a reader's MANIFEST read and its open, a writer may
 * commit another save of the step and remove this one's shards, or retention may retire the
 * step: both are normal, and neither is damage. Only a MANIFEST that still names this save while
 * its shard is missing is damage. Which one it is, the MANIFEST on disk now says. */
static int missing_shard(const char *shared_job, const struct ckpt_manifest *m, const char *path,
			 struct ckpt_err *err)
{
	struct ckpt_manifest now;
	int rc = ckpt_step__manifest(shared_job, m->step, &now, 0, NULL);

	if (rc == CKPT_OK) {
		int same = now.save_id == m->save_id;

		ckpt_fmt__manifest_free(&now);
		if (same)
			return ckpt_err__set(err, CKPT_ECORRUPT, "%s: listed in MANIFEST but missing",
					     path);
		return ckpt_err__set(err, CKPT_ESTALE, "step %llu: save %016llx was replaced by "
				     "another save of the step and removed (%s)",
				     (unsigned long long)m->step, (unsigned long long)m->save_id,
				     path);
	}
	if (rc == CKPT_ENOENT)
		return ckpt_err__set(err, CKPT_ESTALE, "step %llu: save %016llx was retired "
				     "(removed by retention) meanwhile (%s)",
				     (unsigned long long)m->step, (unsigned long long)m->save_id,
				     path);
	/* the MANIFEST cannot be read now: report the shard as the MANIFEST last listed it */
	return ckpt_err__set(err, CKPT_ECORRUPT, "%s: listed in MANIFEST but missing", path);
}

int ckpt_step__open_shared(struct ckpt_shard **out, const char *shared_job,
			   const struct ckpt_manifest *m, uint32_t rank, struct ckpt_err *err)
{
	char path[CKPT_PATH_MAX + 64];
	struct ckpt_shard *s = NULL;
	int rc;

	*out = NULL;
	if (rank >= m->nranks)
		return ckpt_err__set(err, CKPT_ENOENT, "step %llu has %u ranks, no rank %u",
				     (unsigned long long)m->step, m->nranks, rank);
	if ((rc = shared_path(path, sizeof(path), shared_job, m->step, rank, m->save_id)) < 0)
		return ckpt_err__set(err, rc, "path too long: %s", shared_job);
	if ((rc = ckpt_shard__open(&s, path, err)) == CKPT_ENOENT)
		return missing_shard(shared_job, m, path, err);
	if (rc < 0)
		return rc;
	/* The shard must be exactly the one the manifest committed. */
	if (s->hdr.step != m->step || s->hdr.rank != rank || s->hdr.nranks != m->nranks ||
	    s->hdr.save_id != m->save_id || !(s->hdr.flags & CKPT_FLAG_COMPRESSED) ||
	    s->file_size != m->ranks[rank].file_size ||
	    s->trl.index_xxh3 != m->ranks[rank].index_xxh3) {
		ckpt_shard__close(s);
		return ckpt_err__set(err, CKPT_ECORRUPT, "%s does not match its MANIFEST", path);
	}
	*out = s;
	return CKPT_OK;
}

int ckpt_step__manifest(const char *shared_job, uint64_t step, struct ckpt_manifest *m,
			int check_shards, struct ckpt_err *err)
{
	char dir[CKPT_PATH_MAX], path[CKPT_PATH_MAX + 16];
	uint8_t *buf = NULL;
	size_t len;
	int rc;

	memset(m, 0, sizeof(*m));
	if ((rc = ckpt_store__step_dir(dir, sizeof(dir), shared_job, step)) < 0)
		return ckpt_err__set(err, rc, "path too long: %s", shared_job);
	if ((rc = ckpt_store__check_step_dir(dir, err)) < 0)
		return rc;
	snprintf(path, sizeof(path), "%s/%s", dir, CKPT_MANIFEST_NAME);
	if ((rc = ckpt_store__read_file(path, &buf, &len, ckpt_fmt__manifest_size(CKPT_MAX_RANKS),
					err)) < 0)
		return rc;
	if ((rc = ckpt_fmt__decode_manifest(m, buf, len, err)) < 0) {
		char msg[CKPT_ERRMSG_MAX];

		snprintf(msg, sizeof(msg), "%s", err ? err->msg : "");
		ckpt_err__set(err, rc, "%s: %s", path, msg);
		goto out;
	}
	if (m->step != step) {
		rc = ckpt_err__set(err, CKPT_ECORRUPT, "%s names step %llu (swapped file?)", path,
				   (unsigned long long)m->step);
		goto out;
	}
	for (uint32_t r = 0; check_shards && r < m->nranks; r++) {
		struct ckpt_shard *s;

		if ((rc = ckpt_step__open_shared(&s, shared_job, m, r, err)) < 0)
			goto out;
		ckpt_shard__close(s);
	}
out:
	free(buf);
	if (rc < 0)
		ckpt_fmt__manifest_free(m);
	return rc;
}

int ckpt_step__committed(const char *shared_job, uint64_t step, struct ckpt_manifest *m,
			 struct ckpt_err *err)
{
	int rc = CKPT_ESTALE;

	/* Each CKPT_ESTALE means a writer committed another save of the step, or retention
	 * retired it, between our MANIFEST read and a shard's open: read the MANIFEST again. A
	 * writer that re-commits faster than we can open a step's shards every time for
	 * CKPT_STEP_RETRIES rounds is reported as it is (CKPT_ESTALE), never as damage. */
	for (int i = 0; i < CKPT_STEP_RETRIES && rc == CKPT_ESTALE; i++)
		rc = ckpt_step__manifest(shared_job, step, m, 1, err);
	return rc;
}
