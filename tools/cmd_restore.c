/* SPDX-License-Identifier: MIT */
/* `ckpt restore` (also installed as ckpt-restore): bring a committed step back from the shared
 * tier to the local tier, in the library's local format. Local shards are written by the
 * library's own writer (ckpt_shard__write_local_stream, fed chunk by chunk while it decodes), so
 * a restored file is byte for byte what ckpt_save wrote. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "step.h"
#include "tool.h"

enum local_state { L_NONE, L_SAME, L_NEWER, L_REPLACE };

/* What the local copy of rank r of the committed step m is, and whether it must be rewritten. */
static enum local_state local_state(struct tool_ctx *t, const struct ckpt_manifest *m,
				    uint32_t r, struct ckpt_codec *codec)
{
	struct ckpt_shard *s;
	struct ckpt_err e = { "" };
	enum local_state st = L_REPLACE;
	int rc = ckpt_step__open_local(&s, t->o.local_job, m->step, r, &e);

	if (rc < 0) {
		if (rc == CKPT_ENOENT)
			return L_NONE;
		tool_say(t, "local copy of step %" PRIu64 " rank %" PRIu32 " is unusable, replacing "
			 "it: %s", m->step, r, e.msg);
		return L_REPLACE;
	}
	if (s->hdr.save_id == m->save_id && s->hdr.nranks == m->nranks)
		st = L_SAME;
	else if (s->hdr.created_ns > m->created_ns)
		st = L_NEWER; /* saved again after the commit and not drained yet: the only copy */
	if (st != L_REPLACE && ckpt_shard__verify(s, codec, &e) < 0) {
		tool_say(t, "local copy of step %" PRIu64 " rank %" PRIu32 " is damaged, replacing "
			 "it: %s", m->step, r, e.msg);
		st = L_REPLACE;
	}
	ckpt_shard__close(s);
	return st;
}

/* --durable and a verified local copy kept as it is: it may be a cache copy an earlier restore
 * left to the kernel's writeback, so make it durable as a restored one: fdatasync the file, fsync
 * its directory (the name). */
static int make_durable(const char *dir, uint32_t r, struct ckpt_err *err)
{
	char base[64], path[CKPT_PATH_MAX + 64];
	int fd, rc = CKPT_OK;

	ckpt_store__local_name(base, sizeof(base), r);
	snprintf(path, sizeof(path), "%s/%s", dir, base);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return ckpt_err__errno(err, errno, "open %s", path);
	if (fdatasync(fd) < 0)
		rc = ckpt_err__errno(err, errno, "fdatasync %s", path);
	close(fd);
	return rc < 0 ? rc : ckpt_store__fsync_dir(dir, err);
}

/* Restore (or verify, or plan) the selected ranks of the committed step m. On CKPT_ECORRUPT the
 * step is damaged, and the shards this call published are removed again so that the local tier
 * does not hold part of a step that will not be restored. *write_failed tells a failure of the
 * local tier (always an I/O error) from one of the shared tier. */
static int restore_step(struct tool_ctx *t, const struct ckpt_manifest *m,
			struct tool_restore *res, struct ckpt_codec *codec,
			int *write_failed, struct ckpt_err *err)
{
	const struct tool_opts *o = &t->o;
	struct tool_progress *pg = &t->pg;
	char dir[CKPT_PATH_MAX], base[64], path[CKPT_PATH_MAX + 64];
	uint32_t *published = NULL;
	size_t npub = 0;
	uint64_t total = 0;
	int rc = CKPT_OK, writing = !o->verify_only && !o->dry_run, made_dir = 0;
	double t0 = tool_now();
	struct stat st;

	*write_failed = 0;
	tool_step_path(dir, sizeof(dir), o->local_job, m->step);
	free(res->ranks);
	res->nr = 0;
	res->raw = res->written = 0;
	if (!(res->ranks = calloc(m->nranks, sizeof(*res->ranks))) ||
	    !(published = calloc(m->nranks, sizeof(*published))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory");
	/* Progress counts each byte twice when it is written: once decompressed, once written. */
	for (uint32_t r = 0; r < m->nranks; r++)
		if (tool_rank_selected(o, r))
			total += m->ranks[r].raw_bytes * (writing ? 2 : 1);
	tool_progress_begin(pg, total, writing ? 2 : 1);
	for (uint32_t r = 0; r < m->nranks; r++) {
		struct tool_restore_rank *rr;
		struct ckpt_shard *sh = NULL;
		ckpt_region *regs = NULL;
		uint64_t *xxh3 = NULL;
		struct tool_reader *rd;
		struct ckpt_err werr = { "" };
		struct ckpt_header h;
		int wrc;
		enum local_state ls = L_NONE;

		if (!tool_rank_selected(o, r))
			continue;
		rr = &res->ranks[res->nr++];
		*rr = (struct tool_restore_rank){ r, "failed", 0, m->ranks[r].raw_bytes,
						  m->ranks[r].file_size };
		res->raw += rr->raw;
		if ((rc = ckpt_step__open_shared(&sh, o->shared_job, m, r, err)) < 0)
			break;
		if (!o->verify_only) {
			ls = local_state(t, m, r, codec);
			if (ls == L_SAME || ls == L_NEWER) {
				rr->action = ls == L_SAME ? "present" : "kept_newer";
				if (ls == L_NEWER)
					tool_say(t, "step %" PRIu64 " rank %" PRIu32 ": the local copy "
						 "is a newer save, not yet committed; it is kept",
						 m->step, r);
				atomic_fetch_add(&pg->done, rr->raw * (writing ? 2 : 1));
				ckpt_shard__close(sh);
				if (writing && o->durable && (rc = make_durable(dir, r, err)) < 0) {
					rr->action = "failed";
					*write_failed = 1;
					break;
				}
				continue;
			}
			rr->replaced = ls == L_REPLACE;
		}
		if (o->dry_run && !o->verify_only) {
			rr->action = "would_restore";
			atomic_fetch_add(&pg->done, rr->raw);
			ckpt_shard__close(sh);
			continue;
		}
		if (!writing) {
			tool_progress_label(pg, "step %" PRIu64 " rank %" PRIu32 " verifying",
					    m->step, r);
			rc = tool_read_shard(NULL, sh, o->threads, &pg->done, err);
			ckpt_shard__close(sh);
			if (rc < 0)
				break;
			rr->action = "verified";
			continue;
		}
		/* The local header is the one ckpt_save wrote for this save: same step, save id,
		 * rank, rank count and creation time, so the library sees the committed save. */
		h = (struct ckpt_header){ CKPT_FMT_VERSION, 0, m->step, m->save_id, r, m->nranks,
					  sh->idx.nregions, CKPT_ALIGN, sh->hdr.created_ns };
		ckpt_store__local_name(base, sizeof(base), r);
		tool_progress_label(pg, "step %" PRIu64 " rank %" PRIu32 " restoring", m->step, r);
		if (!made_dir && stat(dir, &st) < 0 && errno == ENOENT)
			made_dir = 1; /* ours to remove again if the step turns out damaged */
		if ((rc = ckpt_store__mkdirs(dir, err)) < 0) {
			ckpt_shard__close(sh);
			*write_failed = 1;
			break;
		}
		/* Decoding (background threads) and writing (this thread) overlap: each chunk goes
		 * to the file as soon as it is decoded and hashed, in order; the file is renamed
		 * only after every region's checksum matched. write_local_stream: temporary name,
		 * buffered writes, rename. The copy of a committed step is a cache of the shared
		 * tier's, which stays the durable copy: it is left to the kernel's writeback, so
		 * that the job waiting for this restore waits for the decoder, not for the device
		 * (with --durable: fdatasync, rename, fsync of the directory, as ckpt_save). A copy
		 * a power loss left short or zeroed is found by its checksums (here by local_state,
		 * in the library as it loads) and replaced, or read from the shared tier. On damage
		 * (or any failure) the temporary file is removed, so nothing of this rank is left
		 * under its final name. A kill before the rename leaves only a .tmp file of a dead
		 * process, which nothing reads and the next run (or ckpt_open) removes. */
		if (!(regs = calloc(h.nregions ? h.nregions : 1, sizeof(*regs))) ||
		    !(xxh3 = calloc(h.nregions ? h.nregions : 1, sizeof(*xxh3)))) {
			free(regs);
			ckpt_shard__close(sh);
			rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory");
			break;
		}
		for (uint32_t i = 0; i < h.nregions; i++) {
			regs[i] = (ckpt_region){ sh->idx.regions[i].name, NULL,
						 (size_t)sh->idx.regions[i].raw_size };
			xxh3[i] = sh->idx.regions[i].raw_xxh3;
		}
		if ((rc = tool_read_start(&rd, sh, o->threads, &pg->done, err)) < 0) {
			free(regs);
			free(xxh3);
			ckpt_shard__close(sh);
			break;
		}
		tool_progress_track_writes(pg, rr->raw);
		wrc = ckpt_shard__write_local_stream(dir, base, &h, regs, h.nregions, xxh3,
						     tool_read_next, rd, o->durable,
						     o->cfg->fault_kill_at, &werr);
		tool_progress_untrack(pg);
		if (wrc < 0)
			tool_read_cancel(rd); /* the write is over: stop decoding */
		/* Damage found while decoding wins over the writer's failure (the writer only
		 * stopped because of it, or the step is damaged anyway): the step is what failed.
		 * Otherwise the local tier failed. */
		rc = tool_read_finish(rd, err);
		if (rc == CKPT_OK && wrc < 0) {
			rc = wrc;
			ckpt_err__copy(err, &werr);
			*write_failed = 1;
		}
		atomic_fetch_add(&pg->done, rr->raw);
		free(regs);
		free(xxh3);
		ckpt_shard__close(sh);
		if (rc < 0)
			break;
		published[npub++] = r;
		rr->action = "restored";
		res->written += rr->raw;
	}
	tool_progress_end(pg);
	/* Damaged, or re-saved or retired under us (CKPT_ESTALE: the caller reads the step again):
	 * either way what this call published is not the step to restore. */
	if ((rc == CKPT_ECORRUPT || rc == CKPT_ESTALE) && !*write_failed) {
		for (size_t i = 0; i < npub; i++) {
			ckpt_store__local_name(base, sizeof(base), published[i]);
			snprintf(path, sizeof(path), "%s/%s", dir, base);
			unlink(path);
		}
		/* the step directory is created before the first rank is decoded (the writes
		 * overlap the decoding): remove it again, only when empty (other ranks' files stay) */
		if (npub || made_dir)
			rmdir(dir);
	} else if (rc < 0 && made_dir && !npub) {
		rmdir(dir); /* created for a rank that then failed: nothing in it */
	}
	res->secs = tool_now() - t0;
	res->durable = writing && o->durable;
	free(published);
	return rc;
}

/* The local tier, before anything is read: it must be a directory apart from shared_dir.
 * A missing local_dir is created (when this run writes): the local tier is ephemeral by
 * definition (a recreated node's NVMe, a new container's emptyDir), and restoring onto a fresh
 * node is what this command is for. Each directory ckpt_store__mkdirs creates is made durable by
 * an fsync of its parent, as the job and step directories below it are. shared_dir is never
 * created: a missing one is an unmounted volume (tool_need_dir says so). */
static int prepare_local(struct tool_ctx *t, struct tool_restore *res)
{
	const struct tool_opts *o = &t->o;
	struct ckpt_err err = { "" };
	struct stat st;
	int code;

	if (stat(o->local_dir, &st) < 0 && errno == ENOENT) {
		if (o->dry_run)
			return -1; /* nothing to check there: every rank would be restored */
		if (ckpt_store__mkdirs(o->local_dir, &err) < 0) {
			snprintf(res->error, sizeof(res->error), "local_dir: %s", err.msg);
			return TOOL_EXIT_IO;
		}
	}
	if ((code = tool_need_dir(t, "local_dir", o->local_dir)) >= 0)
		return code;
	return tool_check_tiers(t);
}

/* Newest first: the first committed step that restores intact wins. Returns the exit status,
 * or -1 when no committed step was found. */
static int restore_newest(struct tool_ctx *t, const uint64_t *steps, size_t nsteps,
			  struct tool_restore *res, struct ckpt_codec *codec)
{
	const struct tool_opts *o = &t->o;
	struct ckpt_err err = { "" };
	int rc, wf = 0, retries = 0;

	for (size_t i = nsteps; i-- > 0;) {
		struct ckpt_manifest m;
		uint64_t step = steps[i];
		struct tool_restore_damaged *nd;

		/* The committed save, re-read while a writer re-saves the step under us. */
		rc = ckpt_step__committed(o->shared_job, step, &m, &err);
		if (rc == CKPT_ENOENT)
			continue; /* not committed (in progress, abandoned), or retired meanwhile */
		if (rc == CKPT_OK) {
			if (o->ranks && tool_rank_max(o) >= m.nranks) {
				ckpt_fmt__manifest_free(&m);
				return tool_usage_error(t, "step %" PRIu64 " has %" PRIu32 " ranks: "
							"no rank %" PRIu32, step, m.nranks,
							tool_rank_max(o));
			}
			res->have_step = 1;
			res->step = step;
			res->save_id = m.save_id;
			res->nranks = m.nranks;
			rc = restore_step(t, &m, res, codec, &wf, &err);
			ckpt_fmt__manifest_free(&m);
			if (rc == CKPT_OK)
				return TOOL_EXIT_OK;
			if (rc == CKPT_ESTALE && !wf && ++retries < CKPT_STEP_RETRIES) {
				/* re-saved or retired while we restored it: read it again */
				res->have_step = 0;
				i++;
				continue;
			}
		}
		if (rc != CKPT_ECORRUPT || wf) {
			/* Not damage: the volume, the local disk or memory failed. An older step
			 * would most likely fail the same way; stop and say so. */
			snprintf(res->error, sizeof(res->error), "%s", err.msg);
			return TOOL_EXIT_IO;
		}
		res->have_step = 0;
		if (!(nd = realloc(res->dmg, (res->nd + 1) * sizeof(*nd)))) {
			snprintf(res->error, sizeof(res->error), "out of memory");
			return TOOL_EXIT_IO;
		}
		res->dmg = nd;
		res->dmg[res->nd].step = step;
		snprintf(res->dmg[res->nd].msg, sizeof(res->dmg[res->nd].msg), "%s", err.msg);
		res->nd++;
		tool_say(t, "step %" PRIu64 " is damaged: %s", step, err.msg);
		if (o->have_step) {
			snprintf(res->error, sizeof(res->error), "step %" PRIu64 " is damaged: %s",
				 step, err.msg);
			return TOOL_EXIT_DAMAGED;
		}
		res->fallback = 1;
	}
	return -1;
}

static int run(struct tool_ctx *t, struct tool_result *out)
{
	const struct tool_opts *o = &t->o;
	struct tool_restore *res = &out->u.restore;
	struct ckpt_codec *codec = NULL;
	struct ckpt_err err = { "" };
	uint64_t *steps = NULL;
	size_t nsteps = 0;
	int code;

	out->kind = TOOL_RESTORE;
	if (!o->shared_dir)
		return tool_need_dir(t, "shared_dir", NULL);
	if (!o->local_dir && !o->verify_only)
		return tool_need_dir(t, "local_dir", NULL);
	/* From here on --json reports whatever happens, but bad usage. */
	out->report = 1;
	/* --verify-only reads the shared tier alone: a CKPT_LOCAL_DIR of another node is no error */
	if ((code = tool_need_dir(t, "shared_dir", o->shared_dir)) >= 0 ||
	    (!o->verify_only && (code = prepare_local(t, res)) >= 0))
		goto out;
	if (ckpt_codec__new(&codec, 1) < 0) {
		code = TOOL_EXIT_IO;
		snprintf(res->error, sizeof(res->error), "out of memory");
		goto out;
	}
	if (o->have_step) {
		char d[CKPT_PATH_MAX];
		struct stat st;

		tool_step_path(d, sizeof(d), o->shared_job, o->step);
		if (stat(d, &st) == 0 && S_ISDIR(st.st_mode)) {
			if (!(steps = malloc(sizeof(*steps)))) {
				code = TOOL_EXIT_IO;
				snprintf(res->error, sizeof(res->error), "out of memory");
				goto out;
			}
			steps[nsteps++] = o->step;
		}
	} else if (ckpt_store__list_steps(o->shared_job, &steps, &nsteps, &err) < 0) {
		code = TOOL_EXIT_IO;
		snprintf(res->error, sizeof(res->error), "%s", err.msg);
		goto out;
	}
	if (!o->verify_only && !o->dry_run) {
		if (ckpt_store__mkdirs(o->local_job, &err) < 0) {
			code = TOOL_EXIT_IO;
			snprintf(res->error, sizeof(res->error), "%s", err.msg);
			goto out;
		}
		/* What restores (or saves) killed on this host left behind. */
		ckpt_store__cleanup_tmp(o->local_job);
	}
	code = restore_newest(t, steps, nsteps, res, codec);
	/* Nothing committed found, while a writer committed step N+1 after we passed it and retired
	 * step N before we reached it: a committed step existed throughout. When the listing
	 * changed meanwhile, look again (bounded), so that "no committed step" (exit 1, which an
	 * init container takes as "start from scratch") is only said when it is true. */
	for (int round = 0; code < 0 && !res->nd && !o->have_step && round < CKPT_STEP_RETRIES;
	     round++) {
		uint64_t *again = NULL;
		size_t nagain = 0;
		int same;

		if (ckpt_store__list_steps(o->shared_job, &again, &nagain, &err) < 0) {
			code = TOOL_EXIT_IO;
			snprintf(res->error, sizeof(res->error), "%s", err.msg);
			goto out;
		}
		same = nagain == nsteps &&
		       (!nsteps || !memcmp(again, steps, nsteps * sizeof(*steps)));
		free(steps);
		steps = again;
		nsteps = nagain;
		if (same)
			break;
		code = restore_newest(t, steps, nsteps, res, codec);
	}
	if (code < 0 && res->nd) {
		code = TOOL_EXIT_DAMAGED;
		snprintf(res->error, sizeof(res->error),
			 "every committed step of job '%s' is damaged", o->name);
	} else if (code < 0) {
		code = TOOL_EXIT_NOTHING;
		if (o->have_step)
			snprintf(res->error, sizeof(res->error),
				 "step %" PRIu64 " of job '%s' is not committed under %s", o->step,
				 o->name, o->shared_dir);
		else
			snprintf(res->error, sizeof(res->error),
				 "no committed step of job '%s' under %s", o->name, o->shared_dir);
	}
	if (code == TOOL_EXIT_OK && res->fallback)
		tool_say(t, "%s step %" PRIu64 ", the newest intact step, instead",
			 o->verify_only ? "verified" : o->dry_run ? "planned" : "restored", res->step);
out:
	if (code == TOOL_EXIT_USAGE)
		out->report = 0;
	else if (code != TOOL_EXIT_OK && res->error[0])
		tool_say(t, "%s", res->error);
	ckpt_codec__free(codec);
	free(steps);
	return code;
}

const struct tool_cmd tool_cmd_restore = {
	.name = "restore",
	.run = run,
	.opts = TOOL_OPT(SHARED_DIR) | TOOL_OPT(LOCAL_DIR) | TOOL_OPT(NAME) | TOOL_OPT(STEP) |
		TOOL_OPT(RANK) | TOOL_OPT(THREADS) | TOOL_OPT(VERIFY_ONLY) | TOOL_OPT(DRY_RUN) |
		TOOL_OPT(DURABLE),
	.synopsis = "--shared-dir DIR --local-dir DIR [--name NAME] [--step N]\n"
		    "[--rank R[,R-R...]|auto] [--threads N] [--durable] [--verify-only] [--dry-run]\n"
		    "[--json] [--quiet]",
	.summary = "bring a committed step back to the local directory (also: ckpt-restore)",
	.help = "Brings the newest committed step (or step N) of job NAME from the shared volume\n"
		"back to the local directory in the library's local format, verifying every\n"
		"checksum; falls back to the newest intact step when the newest is damaged.\n"
		"local_dir and its parents are created when missing; shared_dir must exist.\n"
		"--rank auto means this process's rank, from the launcher's environment\n"
		"(OMPI_COMM_WORLD_RANK, PMI_RANK, MV2_COMM_WORLD_RANK, PMIX_RANK, SLURM_PROCID).\n"
		"The local copy is written through the page cache and left to the kernel's\n"
		"writeback (the shared copy stays the durable one; a copy a power loss damaged\n"
		"is found by its checksums); --durable waits until it is on the device\n"
		"(fdatasync, directory fsync; also of a copy already present), as ckpt_save\n"
		"does.\n"
		"--verify-only checks and writes nothing; --dry-run says what it would do.\n",
	.exits = "Exit status: 0 success; 1 nothing to restore; 2 damaged; 3 I/O error;\n"
		"64 bad usage. See ckpt-restore(1).\n",
};
