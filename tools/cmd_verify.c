/* SPDX-License-Identifier: MIT */
/* `ckpt verify`: every checksum of a step (the newest committed one, step N, or all): the
 * MANIFEST, each shared shard's chunks and regions, and the local shards present on this node. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec.h"
#include "step.h"
#include "tool.h"

struct counts {
	int damaged, io;
};

/* Record one file's outcome in s (and count it). -1 when out of memory. */
static int add_check(struct tool_verify_step *s, struct counts *c, const char *tier,
		     int64_t rank, int rc, const char *note, const char *msg)
{
	struct tool_check *n = realloc(s->checks, (s->n + 1) * sizeof(*n));

	if (!n)
		return -1;
	s->checks = n;
	n = &s->checks[s->n++];
	n->tier = tier;
	n->rank = rank;
	n->rc = rc;
	n->note = note;
	snprintf(n->err, sizeof(n->err), "%s", rc == CKPT_OK ? "" : msg);
	if (rc < 0) {
		s->bad = 1;
		/* a MANIFEST that vanished under us is as gone as a damaged one */
		if (rc == CKPT_ECORRUPT || (rank < 0 && rc == CKPT_ENOENT))
			c->damaged++;
		else
			c->io++;
	}
	return 0;
}

/* The steps to check, newest first: --step N; --all: each with a MANIFEST; else the newest with
 * one. -1 when out of memory. */
static long pick_steps(const struct tool_opts *o, const uint64_t *steps, size_t nsteps,
		       uint64_t **todo)
{
	long n = 0;

	if (!(*todo = calloc(nsteps + 1, sizeof(**todo))))
		return -1;
	for (size_t i = nsteps; i-- > 0;) {
		char path[CKPT_PATH_MAX + 16], d[CKPT_PATH_MAX];
		struct stat st;

		tool_step_path(d, sizeof(d), o->shared_job, steps[i]);
		snprintf(path, sizeof(path), "%s/%s", d, CKPT_MANIFEST_NAME);
		if (o->have_step ? steps[i] != o->step : lstat(path, &st) < 0)
			continue;
		(*todo)[n++] = steps[i];
		if (!o->all)
			break;
	}
	return n;
}

/* Every file of one step, into s. Returns 1 when the step is not committed and --step asked
 * for it (nothing to verify), 2 when the step changed under us (a writer committed another save
 * of it, or retention retired it, between the listing and the reads: the caller looks again),
 * -1 when out of memory, else 0. */
static int verify_step(struct tool_ctx *t, struct tool_verify_step *s, struct counts *c,
		       struct ckpt_codec *codec)
{
	const struct tool_opts *o = &t->o;
	struct ckpt_manifest m;
	struct ckpt_err e = { "" };
	char ldir[CKPT_PATH_MAX];
	uint32_t *files = NULL;
	long nf = 0;
	int rc, oom = 0;

	rc = ckpt_step__manifest(o->shared_job, s->step, &m, 0, &e);
	if (rc == CKPT_ENOENT && o->have_step)
		return 1;
	if (rc == CKPT_ENOENT)
		return 2; /* listed with its MANIFEST a moment ago: retired meanwhile */
	if (rc < 0) {
		tool_say(t, "step %" PRIu64 ": MANIFEST: %s", s->step, e.msg);
		oom |= add_check(s, c, "shared", -1, rc, NULL, e.msg);
		m.nranks = 0;
	}
	s->nranks = m.nranks;
	for (uint32_t r = 0; r < m.nranks; r++)
		if (tool_rank_selected(o, r))
			s->raw += m.ranks[r].raw_bytes;
	tool_progress_begin(&t->pg, s->raw, 1);
	for (uint32_t r = 0; r < m.nranks && !oom; r++) {
		struct ckpt_shard *sh;

		if (!tool_rank_selected(o, r))
			continue;
		tool_progress_label(&t->pg, "step %" PRIu64 " rank %" PRIu32, s->step, r);
		rc = ckpt_step__open_shared(&sh, o->shared_job, &m, r, &e);
		if (rc == CKPT_OK) {
			oom |= tool_xform_add(&s->xf, sh) < 0; /* what the index says */
			rc = tool_read_shard(NULL, sh, o->threads, &t->pg.done, &e);
			ckpt_shard__close(sh);
		}
		if (rc == CKPT_ESTALE) { /* re-saved or retired since the MANIFEST was read */
			tool_progress_end(&t->pg);
			ckpt_fmt__manifest_free(&m);
			return 2;
		}
		if (rc < 0)
			tool_say(t, "step %" PRIu64 " rank %" PRIu32 " (shared): %s", s->step, r,
				 e.msg);
		oom |= add_check(s, c, "shared", r, rc, "ok", e.msg);
	}
	tool_progress_end(&t->pg);
	/* Local copies present on this node, of any save. */
	if (o->local_dir) {
		tool_step_path(ldir, sizeof(ldir), o->local_job, s->step);
		if ((nf = tool_local_files(ldir, &files)) < 0)
			oom = 1;
	}
	for (long k = 0; k < nf && !oom; k++) {
		struct ckpt_shard *sh;
		const char *what = "ok";

		if (!tool_rank_selected(o, files[k]))
			continue;
		rc = ckpt_step__open_local(&sh, o->local_job, s->step, files[k], &e);
		if (rc == CKPT_OK) {
			if (m.nranks && sh->hdr.save_id != m.save_id)
				what = "ok (another save than the committed one)";
			rc = ckpt_shard__verify(sh, codec, &e);
			ckpt_shard__close(sh);
		}
		if (rc < 0)
			tool_say(t, "step %" PRIu64 " rank %" PRIu32 " (local): %s", s->step,
				 files[k], e.msg);
		oom |= add_check(s, c, "local", files[k], rc, what, e.msg);
	}
	free(files);
	ckpt_fmt__manifest_free(&m);
	return oom ? -1 : 0;
}

/* Forget what an attempt recorded (the steps changed under it). */
static void reset(struct tool_verify *v, struct counts *c)
{
	for (size_t i = 0; i < v->n; i++) {
		free(v->steps[i].checks);
		tool_xform_free(&v->steps[i].xf);
	}
	free(v->steps);
	v->steps = NULL;
	v->n = 0;
	c->damaged = c->io = 0;
}

static int run(struct tool_ctx *t, struct tool_result *out)
{
	const struct tool_opts *o = &t->o;
	struct tool_verify *v = &out->u.verify;
	uint64_t *steps = NULL, *todo = NULL;
	size_t nsteps = 0;
	long ntodo = 0;
	struct ckpt_codec *codec = NULL;
	struct ckpt_err e = { "" };
	struct counts c = { 0, 0 };
	int code, changed = 1, retries = 0;

	out->kind = TOOL_VERIFY;
	if ((code = tool_need_dir(t, "shared_dir", o->shared_dir)) >= 0 ||
	    (o->local_dir && (code = tool_need_dir(t, "local_dir", o->local_dir)) >= 0))
		return code;
	if (ckpt_codec__new(&codec, 1) < 0) {
		tool_say(t, "out of memory");
		code = TOOL_EXIT_IO;
		goto out;
	}
	out->report = 1;
	/* A writer may commit, re-save and retire steps while we read: a step that changes under
	 * us is neither damaged nor "not committed". List and verify again (bounded), so that the
	 * verdict is about steps as they are, never a false "damaged" or "no committed step". */
	for (int attempt = 0; changed && attempt < CKPT_STEP_RETRIES; attempt++) {
		changed = 0;
		reset(v, &c);
		free(steps);
		free(todo);
		steps = todo = NULL;
		if (ckpt_store__list_steps(o->shared_job, &steps, &nsteps, &e) < 0 ||
		    (ntodo = pick_steps(o, steps, nsteps, &todo)) < 0 ||
		    (ntodo && !(v->steps = calloc((size_t)ntodo, sizeof(*v->steps))))) {
			tool_say(t, "%s", e.msg[0] ? e.msg : "out of memory");
			code = TOOL_EXIT_IO;
			goto out;
		}
		for (long i = 0; i < ntodo; i++) {
			struct tool_verify_step *s = &v->steps[v->n++];
			int rc;

			s->step = todo[i];
			if ((rc = verify_step(t, s, &c, codec)) == 1) {
				v->n--; /* "not committed": nothing to verify */
				break;
			}
			if (rc == 2 && o->all) {
				/* --all: a retired step is simply gone; a re-saved one is verified
				 * again, as committed now (bounded by retries) */
				struct ckpt_manifest m;

				free(s->checks);
				memset(s, 0, sizeof(*s));
				v->n--;
				if (ckpt_step__manifest(o->shared_job, todo[i], &m, 0, NULL) == 0) {
					ckpt_fmt__manifest_free(&m);
					if (++retries < CKPT_STEP_RETRIES)
						i--;
					else
						changed = 1;
				}
				continue;
			}
			if (rc == 2) { /* the newest step, or --step N: look again */
				changed = 1;
				break;
			}
			if (rc < 0) {
				tool_say(t, "out of memory");
				c.io++;
				break;
			}
		}
	}
	if (changed) {
		tool_say(t, "the steps of job '%s' changed under every one of %d attempts (a writer "
			 "re-saves or retires them faster than they can be read)", o->name,
			 CKPT_STEP_RETRIES);
		c.io++;
	}
	code = c.io ? TOOL_EXIT_IO : c.damaged ? TOOL_EXIT_DAMAGED :
	       v->n ? TOOL_EXIT_OK : TOOL_EXIT_NOTHING;
	if (code == TOOL_EXIT_NOTHING) {
		if (o->have_step)
			tool_say(t, "step %" PRIu64 " of job '%s' is not committed under %s", o->step,
				 o->name, o->shared_dir);
		else
			tool_say(t, "no committed step of job '%s' under %s", o->name, o->shared_dir);
	}
out:
	ckpt_codec__free(codec);
	free(steps);
	free(todo);
	return code;
}

const struct tool_cmd tool_cmd_verify = {
	.name = "verify",
	.run = run,
	.opts = TOOL_OPT(SHARED_DIR) | TOOL_OPT(LOCAL_DIR) | TOOL_OPT(NAME) | TOOL_OPT(STEP) |
		TOOL_OPT(ALL) | TOOL_OPT(RANK) | TOOL_OPT(THREADS),
	.synopsis = "--shared-dir DIR [--local-dir DIR] [--name NAME] [--step N | --all]\n"
		    "[--rank LIST] [--threads N] [--json] [--quiet]",
	.summary = "verify every checksum of a step (default: the newest committed one)",
	.help = "Checks the MANIFEST, every compressed chunk and every region of each shared\n"
		"shard, and with --local-dir every local shard of the step on this node. Says\n"
		"per region how its chunks are stored (plain, grouped w2/w4/w8, raw, zstd).\n",
	.exits = "Exit status: 0 every checksum matches; 1 nothing to verify (no committed step,\n"
		"or step N is not committed); 2 damaged; 3 I/O error; 64 bad usage. See ckpt(1).\n",
};
