/* SPDX-License-Identifier: MIT */
/* `ckpt ls`: the jobs under the given directories and, for each, every step on either tier with
 * its state, ranks, sizes and local copies. It reads MANIFESTs, headers, trailers and indexes,
 * never the data (that is `ckpt verify`). */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "step.h"
#include "tool.h"

static uint64_t mtime_ns(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return 0;
	return (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
}

/* One step: sjob / ljob are the job's directories on the tiers that were given (NULL: not given).
 * -1 when out of memory, 1 when the step is gone from both tiers (retired since the listing). */
static int fill_row(const char *sjob, const char *ljob, struct tool_ls_row *w)
{
	char sdir[CKPT_PATH_MAX], ldir[CKPT_PATH_MAX], path[CKPT_PATH_MAX + 16];
	struct ckpt_manifest m;
	struct ckpt_err e = { "" };
	struct stat st;
	uint32_t *files = NULL;
	long nf;
	int rc = CKPT_ENOENT;
	uint64_t lraw = 0, lstored = 0;

	if (sjob) {
		tool_step_path(sdir, sizeof(sdir), sjob, w->step);
		/* The MANIFEST and the structure of every shard it lists (trailers and indexes; the
		 * data is `ckpt verify`'s), read again while a writer re-saves the step under us:
		 * a shard that vanished with its save is no damage (ckpt_step__committed). */
		rc = ckpt_step__committed(sjob, w->step, &m, &e);
	}
	if (rc == CKPT_OK) {
		w->nranks = m.nranks;
		w->saved_ns = m.created_ns;
		for (uint32_t r = 0; r < m.nranks; r++) {
			w->raw += m.ranks[r].raw_bytes;
			w->stored += m.ranks[r].file_size;
		}
		snprintf(path, sizeof(path), "%s/%s", sdir, CKPT_MANIFEST_NAME);
		w->committed_ns = mtime_ns(path);
		/* The chunk transforms, from each shard's index (no data read). A shard re-saved or
		 * retired since the MANIFEST was read leaves them out (have_xf 0). */
		w->have_xf = 1;
		for (uint32_t r = 0; r < m.nranks && w->have_xf; r++) {
			struct ckpt_shard *sh;

			if (ckpt_step__open_shared(&sh, sjob, &m, r, NULL) < 0) {
				w->have_xf = 0;
				break;
			}
			rc = tool_xform_add(&w->xf, sh);
			ckpt_shard__close(sh);
			if (rc < 0) {
				ckpt_fmt__manifest_free(&m);
				return -1;
			}
		}
		rc = CKPT_OK;
		if (!w->have_xf)
			tool_xform_free(&w->xf);
		ckpt_fmt__manifest_free(&m);
		w->state = "committed";
	} else if (rc != CKPT_ENOENT && rc != CKPT_ESTALE) {
		w->state = "damaged";
	}
	if (rc != CKPT_OK && rc != CKPT_ENOENT && rc != CKPT_ESTALE)
		snprintf(w->err, sizeof(w->err), "%s", e.msg);

	if (ljob) {
		tool_step_path(ldir, sizeof(ldir), ljob, w->step);
		if ((nf = tool_local_files(ldir, &files)) < 0 ||
		    !(w->lranks = calloc(nf ? (size_t)nf : 1, sizeof(uint32_t))) ||
		    !(w->lbad = calloc(nf ? (size_t)nf : 1, sizeof(uint32_t)))) {
			free(files);
			return -1;
		}
		for (long i = 0; i < nf; i++) {
			struct ckpt_shard *s;

			if (ckpt_step__open_local(&s, ljob, w->step, files[i], NULL) < 0) {
				w->lbad[w->nbad++] = files[i];
				continue;
			}
			w->lranks[w->nl++] = files[i];
			lraw += s->trl.raw_total;
			lstored += s->file_size;
			if (!w->nranks || !w->state)
				w->nranks = s->hdr.nranks;
			if (!w->saved_ns)
				w->saved_ns = s->hdr.created_ns;
			ckpt_shard__close(s);
		}
		free(files);
	}
	if (!w->state && !w->nl && !w->nbad && (!sjob || stat(sdir, &st) < 0) &&
	    (!ljob || stat(ldir, &st) < 0))
		return 1; /* listed, then retired on every tier given: not a row */
	if (!w->state) {
		if (w->nl) {
			/* Without the shared tier nothing tells whether the step is committed. */
			w->state = sjob ? "local only" : "local";
			w->raw = lraw;
			w->stored = lstored;
		} else {
			w->state = "incomplete";
		}
	}
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int valid_job_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 128 || s[0] == '.' || s[0] == '-')
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
			return 0;
	return 1;
}

/* Job directories under dir, added to *names (duplicates are skipped later). A directory is a
 * job only when it holds what libckpt writes there: `ls --shared-dir /tmp` lists no strangers. */
static int add_jobs(struct tool_ctx *t, const char *dir, char ***names, size_t *n)
{
	DIR *d;
	struct dirent *e;
	char path[CKPT_PATH_MAX + 256];
	int rc = 0;

	if (!dir)
		return 0;
	if (!(d = opendir(dir))) {
		tool_say(t, "cannot list %s: %s", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d))) {
		char **nn;

		if (!valid_job_name(e->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (!tool_is_job_dir(path))
			continue;
		if (!(nn = realloc(*names, (*n + 1) * sizeof(*nn))) || !(nn[*n] = strdup(e->d_name))) {
			if (nn)
				*names = nn;
			tool_say(t, "out of memory listing %s", dir);
			rc = -1;
			break;
		}
		*names = nn;
		(*n)++;
	}
	closedir(d);
	return rc;
}

/* Every step of one job on either tier, merged in ascending order. Returns an exit status. */
static int list_job(struct tool_ctx *t, struct tool_ls_job *job)
{
	const struct tool_opts *o = &t->o;
	char sjob[CKPT_PATH_MAX], ljob[CKPT_PATH_MAX];
	uint64_t *a = NULL, *b = NULL;
	size_t na = 0, nb = 0, ia = 0, ib = 0;
	struct ckpt_err e = { "" };
	int code = TOOL_EXIT_OK, rc;

	snprintf(sjob, sizeof(sjob), "%s/%s", o->shared_dir ? o->shared_dir : "", job->name);
	snprintf(ljob, sizeof(ljob), "%s/%s", o->local_dir ? o->local_dir : "", job->name);
	if ((o->shared_dir && ckpt_store__list_steps(sjob, &a, &na, &e) < 0) ||
	    (o->local_dir && ckpt_store__list_steps(ljob, &b, &nb, &e) < 0)) {
		tool_say(t, "%s", e.msg);
		code = TOOL_EXIT_IO;
	}
	if (na + nb && !(job->rows = calloc(na + nb, sizeof(*job->rows)))) {
		tool_say(t, "out of memory listing job %s", job->name);
		na = nb = 0;
		code = TOOL_EXIT_IO;
	}
	while (ia < na || ib < nb) {
		struct tool_ls_row *w = &job->rows[job->nrows++];

		if (ib >= nb || (ia < na && a[ia] <= b[ib]))
			w->step = a[ia];
		else
			w->step = b[ib];
		if (ia < na && a[ia] == w->step)
			ia++;
		if (ib < nb && b[ib] == w->step)
			ib++;
		if ((rc = fill_row(o->shared_dir ? sjob : NULL, o->local_dir ? ljob : NULL, w)) > 0) {
			job->nrows--; /* gone since the listing */
			free(w->lranks);
			free(w->lbad);
			tool_xform_free(&w->xf);
			memset(w, 0, sizeof(*w));
			continue;
		}
		if (rc < 0) {
			tool_say(t, "out of memory listing job %s", job->name);
			job->nrows--;
			free(w->lranks);
			free(w->lbad);
			tool_xform_free(&w->xf);
			code = TOOL_EXIT_IO;
			break;
		}
	}
	free(a);
	free(b);
	return code;
}

static int run(struct tool_ctx *t, struct tool_result *out)
{
	const struct tool_opts *o = &t->o;
	struct tool_ls *ls = &out->u.ls;
	char **names = NULL;
	size_t nnames = 0;
	int code = TOOL_EXIT_OK, c;

	out->kind = TOOL_LS;
	if (!o->shared_dir && !o->local_dir)
		return tool_usage_error(t, "ls needs --shared-dir or --local-dir (or CKPT_SHARED_DIR, "
					"CKPT_LOCAL_DIR)");
	if ((o->shared_dir && (c = tool_need_dir(t, "shared_dir", o->shared_dir)) >= 0) ||
	    (o->local_dir && (c = tool_need_dir(t, "local_dir", o->local_dir)) >= 0))
		return c;
	out->report = 1;
	if (o->name_given) {
		if ((names = malloc(sizeof(*names))) && (names[0] = strdup(o->name)))
			nnames = 1;
		else
			code = TOOL_EXIT_IO;
	} else if (add_jobs(t, o->shared_dir, &names, &nnames) < 0 ||
		   add_jobs(t, o->local_dir, &names, &nnames) < 0) {
		code = TOOL_EXIT_IO;
	}
	if (nnames)
		qsort(names, nnames, sizeof(*names), cmp_str);
	if (nnames && !(ls->jobs = calloc(nnames, sizeof(*ls->jobs)))) {
		tool_say(t, "out of memory");
		code = TOOL_EXIT_IO;
	}
	for (size_t i = 0; ls->jobs && i < nnames; i++) {
		struct tool_ls_job *job;
		int rc;

		if (ls->njobs && !strcmp(names[i], ls->jobs[ls->njobs - 1].name))
			continue; /* on both tiers */
		job = &ls->jobs[ls->njobs++];
		job->name = names[i];
		names[i] = NULL;
		if ((rc = list_job(t, job)) != TOOL_EXIT_OK)
			code = rc;
	}
	for (size_t i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	return code;
}

const struct tool_cmd tool_cmd_ls = {
	.name = "ls",
	.alias = "list",
	.run = run,
	.opts = TOOL_OPT(SHARED_DIR) | TOOL_OPT(LOCAL_DIR) | TOOL_OPT(NAME),
	.synopsis = "[--shared-dir DIR] [--local-dir DIR] [--name NAME] [--json]",
	.summary = "list jobs and their steps on both tiers",
	.help = "Lists the jobs under the given directories (only job NAME with --name or\n"
		"CKPT_NAME) and every step of each on either tier: state (committed, damaged,\n"
		"local only, incomplete; \"local\" when only --local-dir is given: a step with a\n"
		"local shard whose shared state is unknown), ranks, raw and stored bytes, ratio,\n"
		"commit time, local ranks; under each committed step, how its chunks are stored\n"
		"(plain, grouped w2/w4/w8, raw, zstd) and the ratio of the data alone (--json: per\n"
		"region too). A directory is listed as a job only when it holds step directories\n"
		"or rank locks. Reads structure, not data (see ckpt verify).\n",
	.exits = "Exit status: 0 success; 3 I/O error; 64 bad usage. See ckpt(1).\n",
};
