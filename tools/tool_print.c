/* SPDX-License-Identifier: MIT */
/* The one printer of the ckpt tool: every command's result (tool.h) rendered as text or as one
 * JSON object on stdout, the usage texts, and the release of results. The commands print
 * nothing on stdout themselves: what a command found is written down once, in its result, and
 * both renderings of it sit side by side here. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

const char *tool_status_name(int code)
{
	switch (code) {
	case TOOL_EXIT_OK: return "ok";
	case TOOL_EXIT_NOTHING: return "nothing";
	case TOOL_EXIT_DAMAGED: return "damaged";
	case TOOL_EXIT_IO: return "io_error";
	default: return "usage";
	}
}

/* Lines of text separated by '\n', each after `indent` (the first after nothing). */
static void lines(FILE *f, const char *text, const char *indent)
{
	for (const char *p = text; *p;) {
		size_t n = strcspn(p, "\n");

		fprintf(f, "%s%.*s\n", p == text ? "" : indent, (int)n, p);
		p += n + (p[n] == '\n');
	}
}

void tool_print_usage(FILE *f, const char *prog, const struct tool_cmd *cmd,
		      const struct tool_cmd *const *cmds)
{
	if (cmd) {
		/* ckpt-restore is `ckpt restore` under its own name */
		int own = !strcmp(prog, "ckpt-restore");

		fprintf(f, "usage: %s%s%s ", prog, own ? "" : " ", own ? "" : cmd->name);
		lines(f, cmd->synopsis, "       ");
		fputs(cmd->help, f);
		fputs("Directories and name default to CKPT_SHARED_DIR, CKPT_LOCAL_DIR, CKPT_NAME\n"
		      "(the name, else \"default\").\n", f);
		fputs(cmd->exits, f);
		return;
	}
	fputs("usage: ckpt COMMAND [OPTIONS]\n", f);
	for (size_t i = 0; cmds[i]; i++) {
		fprintf(f, "  %-8s ", cmds[i]->name);
		lines(f, cmds[i]->synopsis, "           ");
		fputs("           ", f);
		lines(f, cmds[i]->summary, "           ");
	}
	fputs("  help     [COMMAND]\n"
	      "           this text, or the usage of COMMAND (also: ckpt COMMAND --help)\n"
	      "--rank auto means this process's rank, from the launcher's environment\n"
	      "(OMPI_COMM_WORLD_RANK, PMI_RANK, MV2_COMM_WORLD_RANK, PMIX_RANK, SLURM_PROCID).\n"
	      "Directories and name default to CKPT_SHARED_DIR, CKPT_LOCAL_DIR, CKPT_NAME\n"
	      "(the name, else \"default\").\n"
	      "Exit status: 0 success; 1 nothing to restore or verify (no committed step);\n"
	      "2 damaged (the requested step, or every step); 3 I/O error; 64 bad usage.\n"
	      "See ckpt(1) and ckpt-restore(1).\n", f);
}

/* ---------------------------------------------------------------------------------------------
 * ls
 */

/* "0-3,5" */
static void rank_list(char *buf, size_t len, const uint32_t *r, size_t n)
{
	size_t pos = 0;

	buf[0] = '\0';
	if (!n) {
		snprintf(buf, len, "-");
		return;
	}
	for (size_t i = 0; i < n && pos < len;) {
		size_t j = i;

		while (j + 1 < n && r[j + 1] == r[j] + 1)
			j++;
		pos += (size_t)snprintf(buf + pos, len - pos, "%s%" PRIu32, i ? "," : "", r[i]);
		if (j > i && pos < len)
			pos += (size_t)snprintf(buf + pos, len - pos, "-%" PRIu32, r[j]);
		i = j + 1;
	}
}

/* The compression ratio in at most 6 characters, the width of its column: 1.60, 245.3, 12122,
 * 845k, 12M. */
static void ratio_text(char *buf, size_t len, double r)
{
	if (r < 100)
		snprintf(buf, len, "%.2f", r);
	else if (r < 1000)
		snprintf(buf, len, "%.1f", r);
	else if (r < 1e5)
		snprintf(buf, len, "%.0f", r);
	else if (r < 1e8)
		snprintf(buf, len, "%.0fk", r / 1e3);
	else if (r < 1e11)
		snprintf(buf, len, "%.0fM", r / 1e6);
	else
		snprintf(buf, len, "%.0e", r);
}

static int has_ratio(const struct tool_ls_row *w)
{
	return w->stored && w->raw && !strcmp(w->state, "committed");
}

/* ---------------------------------------------------------------------------------------------
 * chunk transforms (ls and verify)
 */

static void xstats_json(struct tool_json *j, const struct tool_xstats *x)
{
	tool_json_u64(j, "chunks", x->chunks);
	tool_json_u64(j, "plain", x->plain);
	tool_json_u64(j, "w2", x->w2);
	tool_json_u64(j, "w4", x->w4);
	tool_json_u64(j, "w8", x->w8);
	tool_json_u64(j, "raw", x->raw);
	tool_json_u64(j, "zstd", x->zstd);
	tool_json_u64(j, "raw_bytes", x->raw_bytes);
	tool_json_u64(j, "stored_bytes", x->stored_bytes);
	if (x->stored_bytes && x->raw_bytes)
		tool_json_num(j, "ratio", (double)x->raw_bytes / (double)x->stored_bytes);
	else
		tool_json_null(j, "ratio");
}

/* "transforms": {chunks, plain, w2, w4, w8, raw, zstd, bytes, ratio, regions: [...]}, or null */
static void xform_json(struct tool_json *j, const struct tool_xform *x, int have)
{
	if (!have) {
		tool_json_null(j, "transforms");
		return;
	}
	tool_json_obj(j, "transforms");
	xstats_json(j, &x->all);
	tool_json_arr(j, "regions");
	for (size_t i = 0; i < x->nregs; i++) {
		tool_json_obj(j, NULL);
		tool_json_str(j, "name", x->regs[i].name);
		xstats_json(j, &x->regs[i].x);
		tool_json_end(j, '}');
	}
	tool_json_end(j, ']');
	tool_json_end(j, '}');
}

/* "12 chunks: w4 10, plain 1, raw 1; data 1.21x" (the kinds that occur, most first) */
static void xstats_text(char *buf, size_t len, const struct tool_xstats *x)
{
	struct { const char *name; uint64_t n; } k[] = {
		{ "plain", x->plain }, { "w2", x->w2 }, { "w4", x->w4 }, { "w8", x->w8 },
		{ "raw", x->raw }, { "zstd", x->zstd },
	};
	enum { NK = sizeof(k) / sizeof(k[0]) };
	int done[NK] = { 0 };
	size_t l;
	char ratio[16];

	snprintf(buf, len, "%" PRIu64 " chunk%s", x->chunks, x->chunks == 1 ? "" : "s");
	for (int sep = ':', left = NK; left > 0; left--) {
		int b = -1;

		for (int i = 0; i < NK; i++)
			if (!done[i] && k[i].n && (b < 0 || k[i].n > k[b].n))
				b = i;
		if (b < 0)
			break;
		done[b] = 1;
		l = strlen(buf);
		snprintf(buf + l, len - l, "%c %s %" PRIu64, sep, k[b].name, k[b].n);
		sep = ',';
	}
	if (x->stored_bytes && x->raw_bytes) {
		ratio_text(ratio, sizeof(ratio), (double)x->raw_bytes / (double)x->stored_bytes);
		l = strlen(buf);
		snprintf(buf + l, len - l, "; data %sx", ratio);
	}
}

static void ls_json(const struct tool_ctx *t, const struct tool_result *res)
{
	const struct tool_ls *ls = &res->u.ls;
	struct tool_json j;
	char when[32];

	tool_json_init(&j, stdout);
	tool_json_obj(&j, NULL);
	tool_json_str(&j, "command", "ls");
	tool_json_str(&j, "shared_dir", t->o.shared_dir);
	tool_json_str(&j, "local_dir", t->o.local_dir);
	tool_json_arr(&j, "jobs");
	for (size_t i = 0; i < ls->njobs; i++) {
		tool_json_obj(&j, NULL);
		tool_json_str(&j, "name", ls->jobs[i].name);
		tool_json_arr(&j, "steps");
		for (size_t k = 0; k < ls->jobs[i].nrows; k++) {
			const struct tool_ls_row *w = &ls->jobs[i].rows[k];

			tool_json_obj(&j, NULL);
			tool_json_u64(&j, "step", w->step);
			tool_json_str(&j, "state", w->state);
			if (w->nranks)
				tool_json_u64(&j, "nranks", w->nranks);
			else
				tool_json_null(&j, "nranks");
			tool_json_u64(&j, "raw_bytes", w->raw);
			tool_json_u64(&j, "stored_bytes", w->stored);
			if (has_ratio(w))
				tool_json_num(&j, "ratio", (double)w->raw / (double)w->stored);
			else
				tool_json_null(&j, "ratio");
			tool_time_iso(when, sizeof(when), w->committed_ns);
			tool_json_str(&j, "committed", w->committed_ns ? when : NULL);
			tool_time_iso(when, sizeof(when), w->saved_ns);
			tool_json_str(&j, "saved", w->saved_ns ? when : NULL);
			tool_json_arr(&j, "local_ranks");
			for (size_t r = 0; r < w->nl; r++)
				tool_json_u64(&j, NULL, w->lranks[r]);
			tool_json_end(&j, ']');
			tool_json_arr(&j, "local_damaged");
			for (size_t r = 0; r < w->nbad; r++)
				tool_json_u64(&j, NULL, w->lbad[r]);
			tool_json_end(&j, ']');
			tool_json_str(&j, "error", w->err[0] ? w->err : NULL);
			xform_json(&j, &w->xf, w->have_xf);
			tool_json_end(&j, '}');
		}
		tool_json_end(&j, ']');
		tool_json_end(&j, '}');
	}
	tool_json_end(&j, ']');
	tool_json_u64(&j, "exit_code", (uint64_t)res->code);
	tool_json_end(&j, '}');
}

static void ls_text(const struct tool_ls *ls)
{
	printf("%-16s %10s  %-10s %5s %9s %9s %6s  %-19s  %s\n", "JOB", "STEP", "STATE", "RANKS",
	       "RAW", "STORED", "RATIO", "COMMITTED", "LOCAL");
	for (size_t i = 0; i < ls->njobs; i++) {
		for (size_t k = 0; k < ls->jobs[i].nrows; k++) {
			const struct tool_ls_row *w = &ls->jobs[i].rows[k];
			char lr[256], raw[16], st[16], ratio[16], when[32], nr[16];
			size_t l;

			rank_list(lr, sizeof(lr), w->lranks, w->nl);
			if (w->nbad) {
				l = strlen(lr);
				snprintf(lr + l, sizeof(lr) - l, " (damaged: ");
				l = strlen(lr);
				rank_list(lr + l, sizeof(lr) - l, w->lbad, w->nbad);
				l = strlen(lr);
				snprintf(lr + l, sizeof(lr) - l, ")");
			}
			if (w->raw || w->stored) {
				tool_size(raw, sizeof(raw), w->raw, 1);
				tool_size(st, sizeof(st), w->stored, 1);
			} else {
				snprintf(raw, sizeof(raw), "-");
				snprintf(st, sizeof(st), "-");
			}
			if (has_ratio(w))
				ratio_text(ratio, sizeof(ratio), (double)w->raw / (double)w->stored);
			else
				snprintf(ratio, sizeof(ratio), "-");
			if (w->nranks)
				snprintf(nr, sizeof(nr), "%" PRIu32, w->nranks);
			else
				snprintf(nr, sizeof(nr), "-");
			tool_time(when, sizeof(when), w->committed_ns);
			printf("%-16s %10" PRIu64 "  %-10s %5s %9s %9s %6s  %-19s  %s\n",
			       ls->jobs[i].name, w->step, w->state, nr, raw, st, ratio, when, lr);
			if (w->err[0])
				printf("%-16s %10s  ^ %s\n", "", "", w->err);
			if (w->have_xf && w->xf.all.chunks) {
				char xs[256];

				xstats_text(xs, sizeof(xs), &w->xf.all);
				printf("%-16s %10s  stored as %s\n", "", "", xs);
			}
		}
	}
}

/* ---------------------------------------------------------------------------------------------
 * verify
 */

static void check_json(struct tool_json *j, const struct tool_check *c)
{
	tool_json_obj(j, NULL);
	tool_json_str(j, "tier", c->tier);
	if (c->rank < 0)
		tool_json_str(j, "file", CKPT_MANIFEST_NAME);
	else
		tool_json_u64(j, "rank", (uint64_t)c->rank);
	tool_json_str(j, "status", c->rc == CKPT_OK ? "ok" : c->rc == CKPT_ECORRUPT ? "damaged" :
		      "error");
	tool_json_str(j, "error", c->rc == CKPT_OK ? NULL : c->err);
	tool_json_end(j, '}');
}

static void verify_json(const struct tool_ctx *t, const struct tool_result *res)
{
	const struct tool_verify *v = &res->u.verify;
	struct tool_json j;

	tool_json_init(&j, stdout);
	tool_json_obj(&j, NULL);
	tool_json_str(&j, "command", "verify");
	tool_json_str(&j, "job", t->o.name);
	tool_json_arr(&j, "steps");
	for (size_t i = 0; i < v->n; i++) {
		tool_json_obj(&j, NULL);
		tool_json_u64(&j, "step", v->steps[i].step);
		tool_json_arr(&j, "shards");
		for (size_t k = 0; k < v->steps[i].n; k++)
			check_json(&j, &v->steps[i].checks[k]);
		tool_json_end(&j, ']');
		tool_json_str(&j, "status", v->steps[i].bad ? "damaged" : "ok");
		xform_json(&j, &v->steps[i].xf, v->steps[i].xf.all.chunks || v->steps[i].xf.nregs);
		tool_json_end(&j, '}');
	}
	tool_json_end(&j, ']');
	tool_json_str(&j, "status", tool_status_name(res->code));
	tool_json_u64(&j, "exit_code", (uint64_t)res->code);
	tool_json_end(&j, '}');
}

static void verify_text(const struct tool_verify *v)
{
	char sz[32];

	for (size_t i = 0; i < v->n; i++) {
		const struct tool_verify_step *s = &v->steps[i];

		/* damaged files were named on stderr as they were found */
		for (size_t k = 0; k < s->n; k++)
			if (!strcmp(s->checks[k].tier, "local") && s->checks[k].rc == CKPT_OK)
				printf("step %" PRIu64 " rank %" PRId64 " local: %s\n", s->step,
				       s->checks[k].rank, s->checks[k].note);
		tool_size(sz, sizeof(sz), s->raw, 0);
		if (s->bad)
			printf("step %" PRIu64 ": DAMAGED\n", s->step);
		else
			printf("step %" PRIu64 ": ok, %" PRIu32 " rank%s, %s, every checksum matches\n",
			       s->step, s->nranks, s->nranks == 1 ? "" : "s", sz);
		/* how the shared shards store their chunks, region by region */
		for (size_t r = 0; r < s->xf.nregs; r++) {
			char xs[256];

			if (!s->xf.regs[r].x.chunks)
				continue;
			xstats_text(xs, sizeof(xs), &s->xf.regs[r].x);
			printf("  region '%s': %s\n", s->xf.regs[r].name, xs);
		}
	}
}

/* ---------------------------------------------------------------------------------------------
 * gc
 */

static void gc_json(const struct tool_ctx *t, const struct tool_result *res)
{
	const struct tool_gc *g = &res->u.gc;
	struct tool_json j;

	tool_json_init(&j, stdout);
	tool_json_obj(&j, NULL);
	tool_json_str(&j, "command", "gc");
	tool_json_str(&j, "job", t->o.name);
	tool_json_bool(&j, "dry_run", t->o.dry_run);
	tool_json_arr(&j, "actions");
	for (size_t i = 0; i < g->n; i++) {
		const struct tool_gc_action *a = &g->acts[i];

		tool_json_obj(&j, NULL);
		tool_json_str(&j, "tier", a->tier);
		tool_json_u64(&j, "step", a->step);
		if (a->rank >= 0)
			tool_json_u64(&j, "rank", (uint64_t)a->rank);
		else
			tool_json_null(&j, "rank");
		tool_json_str(&j, "reason", a->reason);
		tool_json_bool(&j, "done", !t->o.dry_run && a->rc >= 0);
		tool_json_str(&j, "error", a->rc < 0 ? a->err : NULL);
		tool_json_end(&j, '}');
	}
	tool_json_end(&j, ']');
	if (g->have_newest)
		tool_json_u64(&j, "newest_committed", g->newest);
	else
		tool_json_null(&j, "newest_committed");
	tool_json_u64(&j, "exit_code", (uint64_t)res->code);
	tool_json_end(&j, '}');
}

static void gc_text(const struct tool_ctx *t, const struct tool_gc *g)
{
	const char *verb = t->o.dry_run ? "would remove" : "removed";

	/* failures were named on stderr as they happened */
	for (size_t i = 0; i < g->n; i++) {
		const struct tool_gc_action *a = &g->acts[i];

		if (a->rc < 0)
			continue;
		if (a->rank >= 0)
			printf("%s %s step %" PRIu64 " rank %" PRId64 " (%s)\n", verb, a->tier,
			       a->step, a->rank, a->reason);
		else
			printf("%s %s step %" PRIu64 " (%s)\n", verb, a->tier, a->step, a->reason);
	}
	printf("gc: %s %zu item%s of job '%s'\n", verb, g->removed, g->removed == 1 ? "" : "s",
	       t->o.name);
}

/* ---------------------------------------------------------------------------------------------
 * restore
 */

static void restore_json(const struct tool_ctx *t, const struct tool_result *r)
{
	const struct tool_opts *o = &t->o;
	const struct tool_restore *res = &r->u.restore;
	struct tool_json j;

	tool_json_init(&j, stdout);
	tool_json_obj(&j, NULL);
	tool_json_str(&j, "command", "restore");
	tool_json_str(&j, "status", tool_status_name(r->code));
	tool_json_u64(&j, "exit_code", (uint64_t)r->code);
	tool_json_str(&j, "job", o->name);
	tool_json_str(&j, "shared_dir", o->shared_dir);
	tool_json_str(&j, "local_dir", o->local_dir);
	if (o->have_step)
		tool_json_u64(&j, "requested_step", o->step);
	else
		tool_json_null(&j, "requested_step");
	if (res->have_step) {
		char id[24];

		tool_json_u64(&j, "step", res->step);
		snprintf(id, sizeof(id), "%016" PRIx64, res->save_id);
		tool_json_str(&j, "save_id", id);
		tool_json_u64(&j, "nranks", res->nranks);
	} else {
		tool_json_null(&j, "step");
	}
	tool_json_bool(&j, "fallback", res->fallback);
	tool_json_bool(&j, "verify_only", o->verify_only);
	tool_json_bool(&j, "dry_run", o->dry_run);
	tool_json_arr(&j, "ranks");
	for (size_t i = 0; i < res->nr; i++) {
		tool_json_obj(&j, NULL);
		tool_json_u64(&j, "rank", res->ranks[i].rank);
		tool_json_str(&j, "action", res->ranks[i].action);
		tool_json_bool(&j, "replaced", res->ranks[i].replaced);
		tool_json_u64(&j, "raw_bytes", res->ranks[i].raw);
		tool_json_u64(&j, "stored_bytes", res->ranks[i].stored);
		tool_json_end(&j, '}');
	}
	tool_json_end(&j, ']');
	tool_json_u64(&j, "raw_bytes", res->raw);
	tool_json_u64(&j, "written_bytes", res->written);
	tool_json_bool(&j, "durable", res->durable);
	tool_json_num(&j, "seconds", res->secs);
	tool_json_arr(&j, "damaged");
	for (size_t i = 0; i < res->nd; i++) {
		tool_json_obj(&j, NULL);
		tool_json_u64(&j, "step", res->dmg[i].step);
		tool_json_str(&j, "error", res->dmg[i].msg);
		tool_json_end(&j, '}');
	}
	tool_json_end(&j, ']');
	tool_json_str(&j, "error", res->error[0] ? res->error : NULL);
	tool_json_end(&j, '}');
}

static void restore_text(const struct tool_ctx *t, const struct tool_restore *res)
{
	const struct tool_opts *o = &t->o;
	char raw[32], rate[32];
	size_t written = 0, present = 0, kept = 0;

	for (size_t i = 0; i < res->nr; i++) {
		const char *a = res->ranks[i].action;

		written += !strcmp(a, "restored");
		present += !strcmp(a, "present");
		kept += !strcmp(a, "kept_newer");
	}
	tool_size(raw, sizeof(raw), res->raw, 0);
	if (o->verify_only) {
		printf("step %" PRIu64 " of job '%s' verified: %zu rank%s, %s, every checksum "
		       "matches\n", res->step, o->name, res->nr, res->nr == 1 ? "" : "s", raw);
		return;
	}
	if (o->dry_run) {
		printf("would restore step %" PRIu64 " of job '%s' to %s:\n", res->step, o->name,
		       o->local_job);
		for (size_t i = 0; i < res->nr; i++) {
			const char *a = res->ranks[i].action;

			tool_size(raw, sizeof(raw), res->ranks[i].raw, 0);
			printf("  rank %" PRIu32 ": %s (%s)\n", res->ranks[i].rank,
			       !strcmp(a, "present") ? "already present and verified, kept" :
			       !strcmp(a, "kept_newer") ?
			       "local copy is a newer uncommitted save, kept" :
			       res->ranks[i].replaced ? "would replace the local copy" :
			       "would restore", raw);
		}
		return;
	}
	printf("restored step %" PRIu64 " of job '%s' to %s: %zu rank%s (%zu written, %zu already "
	       "present%s), %s", res->step, o->name, o->local_job, res->nr, res->nr == 1 ? "" : "s",
	       written, present, kept ? ", some newer local saves kept" : "", raw);
	if (res->written) {
		tool_size(rate, sizeof(rate), res->secs > 0 ? (uint64_t)(res->written / res->secs) :
			  0, 0);
		printf(" in %.2f s (%s/s)\n", res->secs, rate);
	} else {
		/* a rate of nothing written says nothing: every local copy was already in place */
		printf(", nothing to write (checked in %.2f s)\n", res->secs);
	}
}

/* ---------------------------------------------------------------------------------------------
 * doctor
 */

static double mb_per_s(uint64_t bytes, double secs)
{
	return secs > 0 ? (double)bytes / secs / 1e6 : 0;
}

static const char *origin_name(enum ckpt_origin o)
{
	switch (o) {
	case CKPT_FROM_ENV: return "environment";
	case CKPT_FROM_SET: return "config";
	case CKPT_FROM_BAD_ENV: return "bad-environment";
	case CKPT_FROM_DEFAULT: break;
	}
	return "default";
}

static void env_var(char *buf, size_t len, const char *key)
{
	size_t i;

	snprintf(buf, len, "CKPT_");
	for (i = 0; key[i] && 5 + i + 1 < len; i++)
		buf[5 + i] = (char)(key[i] >= 'a' && key[i] <= 'z' ? key[i] - 32 : key[i]);
	buf[5 + i] = '\0';
}

static const char *node_local_word(int v)
{
	return v > 0 ? "node-local" : v == 0 ? "shared" : "unknown";
}

static const char *doctor_status(int code)
{
	return code == TOOL_EXIT_OK ? "ok" : code == TOOL_DOC_WARN ? "warning" :
	       code == TOOL_DOC_FAIL ? "error" : "io_error";
}

static void tier_json(struct tool_json *j, const struct tool_doctor *r, int i)
{
	const struct tool_tier *t = &r->t[i];
	char magic[24];

	tool_json_obj(j, t->key);
	tool_json_str(j, "path", t->dir);
	tool_json_str(j, "realpath", t->usable ? t->real : NULL);
	tool_json_bool(j, "usable", t->usable);
	tool_json_str(j, "error", t->usable ? NULL : t->error);
	if (t->usable) {
		snprintf(magic, sizeof(magic), "0x%llx", (unsigned long long)t->fs.magic);
		tool_json_str(j, "fstype", t->fs.fstype);
		tool_json_str(j, "magic", magic);
		tool_json_str(j, "class", ckpt_storage__class_name(t->fs.cls));
		if (t->fs.node_local < 0)
			tool_json_null(j, "node_local");
		else
			tool_json_bool(j, "node_local", t->fs.node_local);
		tool_json_str(j, "mount_point", t->fs.have_mount ? t->fs.mount.point : NULL);
		tool_json_str(j, "mount_source", t->fs.have_mount ? t->fs.mount.source : NULL);
		tool_json_str(j, "mount_root", t->fs.have_mount ? t->fs.mount.root : NULL);
		tool_json_u64(j, "free_bytes", t->fs.free_bytes);
		tool_json_u64(j, "total_bytes", t->fs.total_bytes);
		tool_json_str(j, "caveat", t->fs.caveat);
	}
	if (i == 1 && r->have_verdict) {
		tool_json_str(j, "verdict", ckpt_storage__verdict_name(r->verdict));
		tool_json_str(j, "reason", r->reason);
	}
	tool_json_obj(j, "bandwidth");
	tool_json_bool(j, "measured", t->bw.ran);
	tool_json_u64(j, "bytes", t->bw.bytes);
	tool_json_bool(j, "direct", t->bw.direct);
	if (t->bw.ran) {
		tool_json_num(j, "write_mb_per_s", mb_per_s(t->bw.bytes, t->bw.wsec));
		tool_json_num(j, "read_mb_per_s", mb_per_s(t->bw.bytes, t->bw.rsec));
		tool_json_num(j, "write_seconds", t->bw.wsec);
		tool_json_num(j, "read_seconds", t->bw.rsec);
	} else {
		tool_json_null(j, "write_mb_per_s");
		tool_json_null(j, "read_mb_per_s");
	}
	tool_json_str(j, "skipped", t->bw.skipped[0] ? t->bw.skipped : NULL);
	tool_json_str(j, "error", t->bw.error[0] ? t->bw.error : NULL);
	tool_json_end(j, '}');
	tool_json_end(j, '}');
}

static void doctor_json(const struct tool_doctor *r, int code)
{
	struct tool_json j;
	char var[80];

	tool_json_init(&j, stdout);
	tool_json_obj(&j, NULL);
	tool_json_str(&j, "command", "doctor");
	tool_json_str(&j, "version", ckpt_version());
	tool_json_obj(&j, "cluster");
	tool_json_str(&j, "type", ckpt_config__cluster_name(r->cluster));
	tool_json_str(&j, "evidence", r->cluster_why);
	tool_json_str(&j, "advice", ckpt_storage__advice(r->cluster));
	tool_json_end(&j, '}');
	if (r->have_rank) {
		tool_json_obj(&j, "launcher");
		tool_json_u64(&j, "rank", r->rank);
		if (r->size)
			tool_json_u64(&j, "size", r->size);
		else
			tool_json_null(&j, "size");
		tool_json_str(&j, "source", r->rank_src);
		tool_json_end(&j, '}');
	} else {
		tool_json_null(&j, "launcher");
	}
	tool_json_obj(&j, "tiers");
	tier_json(&j, r, 0);
	tier_json(&j, r, 1);
	tool_json_end(&j, '}');
	tool_json_obj(&j, "io_uring");
	tool_json_bool(&j, "built", r->uring_built);
	tool_json_bool(&j, "usable", r->uring_ok);
	tool_json_str(&j, "detail", r->uring_msg);
	tool_json_end(&j, '}');
	tool_json_obj(&j, "mpi");
	tool_json_bool(&j, "built", r->mpi_built);
	tool_json_str(&j, "library", r->mpi_lib[0] ? r->mpi_lib : NULL);
	tool_json_end(&j, '}');
	tool_json_arr(&j, "config");
	for (size_t i = 0; ckpt_config__key(i); i++) {
		const char *k = ckpt_config__key(i);
		enum ckpt_origin o = r->cfg->origin[i];

		tool_json_obj(&j, NULL);
		tool_json_str(&j, "key", k);
		tool_json_str(&j, "value", ckpt_config_get(r->cfg, k));
		tool_json_str(&j, "origin", origin_name(o));
		env_var(var, sizeof(var), k);
		tool_json_str(&j, "variable", o == CKPT_FROM_ENV || o == CKPT_FROM_BAD_ENV ? var : NULL);
		tool_json_end(&j, '}');
	}
	tool_json_end(&j, ']');
	tool_json_arr(&j, "errors");
	for (size_t i = 0; i < r->nfail; i++)
		tool_json_str(&j, NULL, r->fail[i]);
	tool_json_end(&j, ']');
	tool_json_arr(&j, "warnings");
	for (size_t i = 0; i < r->nwarn; i++)
		tool_json_str(&j, NULL, r->warn[i]);
	tool_json_end(&j, ']');
	tool_json_arr(&j, "notes");
	for (size_t i = 0; i < r->ninfo; i++)
		tool_json_str(&j, NULL, r->info[i]);
	tool_json_end(&j, ']');
	tool_json_str(&j, "status", doctor_status(code));
	tool_json_u64(&j, "exit_code", (uint64_t)code);
	tool_json_end(&j, '}');
}

static void tier_text(const struct tool_doctor *r, int i)
{
	const struct tool_tier *t = &r->t[i];
	char fr[32], tot[32], sz[32];

	printf("%-10s %s\n", t->key, t->dir ? t->dir : "(not set)");
	if (!t->usable) {
		printf("  problem      %s\n", t->error);
		return;
	}
	if (strcmp(t->dir, t->real))
		printf("  realpath     %s\n", t->real);
	printf("  filesystem   %s", t->fs.fstype);
	if (t->fs.have_mount && t->fs.mount.source[0] && strcmp(t->fs.mount.source, t->fs.fstype))
		printf(" (%s)", t->fs.mount.source);
	if (t->fs.have_mount)
		printf(", mounted at %s", t->fs.mount.point);
	printf("; %s, %s\n", ckpt_storage__class_name(t->fs.cls), node_local_word(t->fs.node_local));
	if (i == 1 && r->have_verdict)
		printf("  verdict      %s: %s\n", ckpt_storage__verdict_name(r->verdict), r->reason);
	if (t->fs.caveat)
		printf("  caveat       %s\n", t->fs.caveat);
	tool_size(fr, sizeof(fr), t->fs.free_bytes, 0);
	tool_size(tot, sizeof(tot), t->fs.total_bytes, 0);
	printf("  free         %s of %s\n", fr, tot);
	tool_size(sz, sizeof(sz), t->bw.bytes, 0);
	if (t->bw.ran) {
		printf("  write        %.1f MB/s (%s, %s, with fsync)\n",
		       mb_per_s(t->bw.bytes, t->bw.wsec), sz, t->bw.direct ? "O_DIRECT" : "buffered");
		printf("  read         %.1f MB/s (%s, %s)\n", mb_per_s(t->bw.bytes, t->bw.rsec), sz,
		       t->bw.direct ? "O_DIRECT" : "buffered, cache dropped");
	} else if (t->bw.error[0]) {
		printf("  bandwidth    FAILED: %s\n", t->bw.error);
	} else if (t->bw.skipped[0]) {
		printf("  bandwidth    not measured: %s\n", t->bw.skipped);
	}
}

static void doctor_text(const struct tool_doctor *r, int code)
{
	char var[80];

	printf("ckpt doctor (libckpt %s)\n\n", ckpt_version());
	printf("cluster      %s (%s)\n", ckpt_config__cluster_name(r->cluster), r->cluster_why);
	if (r->have_rank && r->size)
		printf("launcher     rank %" PRIu32 " of %" PRIu32 " (%s)\n", r->rank, r->size,
		       r->rank_src);
	else if (r->have_rank)
		printf("launcher     rank %" PRIu32 " (%s)\n", r->rank, r->rank_src);
	else
		printf("launcher     none (no rank in the environment)\n");
	printf("io_uring     %s: %s\n", r->uring_ok ? "usable" : "NOT usable", r->uring_msg);
	if (r->mpi_built)
		printf("MPI          built with MPI%s%s%s\n", r->mpi_lib[0] ? " (" : "", r->mpi_lib,
		       r->mpi_lib[0] ? ")" : "");
	else
		printf("MPI          built without MPI (ckpt_open_mpi returns CKPT_ENOTSUP)\n");
	printf("\n");
	tier_text(r, 0);
	tier_text(r, 1);
	printf("\nconfiguration (value, origin)\n");
	for (size_t i = 0; ckpt_config__key(i); i++) {
		const char *k = ckpt_config__key(i), *v = ckpt_config_get(r->cfg, k);
		enum ckpt_origin o = r->cfg->origin[i];
		int named = o == CKPT_FROM_ENV || o == CKPT_FROM_BAD_ENV;

		env_var(var, sizeof(var), k);
		printf("  %-20s %-24s %s%s%s%s\n", k, v && *v ? v : "(unset)", origin_name(o),
		       named ? " (" : "", named ? var : "", named ? ")" : "");
	}
	printf("\n");
	for (size_t i = 0; i < r->nfail; i++)
		printf("ERROR: %s\n", r->fail[i]);
	for (size_t i = 0; i < r->nwarn; i++)
		printf("WARNING: %s\n", r->warn[i]);
	for (size_t i = 0; i < r->ninfo; i++)
		printf("note: %s\n", r->info[i]);
	printf("result: %s\n", code == TOOL_EXIT_OK ? "ok" :
	       code == TOOL_DOC_WARN ? "warnings (ckpt_open would warn)" :
	       code == TOOL_DOC_FAIL ? "errors (ckpt_open would fail)" :
	       "I/O error while measuring");
}

/* ---------------------------------------------------------------------------------------------
 * The printer
 */

void tool_print(const struct tool_ctx *t, const struct tool_result *res)
{
	int json = t->o.json, text = !t->o.json && !t->o.quiet;

	if (!res->report)
		return;
	switch (res->kind) {
	case TOOL_NONE:
		break;
	case TOOL_LS:
		if (json)
			ls_json(t, res);
		else if (text)
			ls_text(&res->u.ls);
		break;
	case TOOL_VERIFY:
		if (json)
			verify_json(t, res);
		else if (text)
			verify_text(&res->u.verify);
		break;
	case TOOL_GC:
		if (json)
			gc_json(t, res);
		else if (text)
			gc_text(t, &res->u.gc);
		break;
	case TOOL_RESTORE:
		/* the text is the summary of a success; a failure was said on stderr */
		if (json)
			restore_json(t, res);
		else if (text && res->code == TOOL_EXIT_OK)
			restore_text(t, &res->u.restore);
		break;
	case TOOL_DOCTOR:
		if (json)
			doctor_json(&res->u.doctor, res->code);
		else if (text)
			doctor_text(&res->u.doctor, res->code);
		break;
	}
}

void tool_result_free(struct tool_result *res)
{
	switch (res->kind) {
	case TOOL_NONE:
		break;
	case TOOL_LS:
		for (size_t i = 0; i < res->u.ls.njobs; i++) {
			for (size_t k = 0; k < res->u.ls.jobs[i].nrows; k++) {
				free(res->u.ls.jobs[i].rows[k].lranks);
				free(res->u.ls.jobs[i].rows[k].lbad);
				tool_xform_free(&res->u.ls.jobs[i].rows[k].xf);
			}
			free(res->u.ls.jobs[i].rows);
			free(res->u.ls.jobs[i].name);
		}
		free(res->u.ls.jobs);
		break;
	case TOOL_VERIFY:
		for (size_t i = 0; i < res->u.verify.n; i++) {
			free(res->u.verify.steps[i].checks);
			tool_xform_free(&res->u.verify.steps[i].xf);
		}
		free(res->u.verify.steps);
		break;
	case TOOL_GC:
		free(res->u.gc.acts);
		break;
	case TOOL_RESTORE:
		free(res->u.restore.ranks);
		free(res->u.restore.dmg);
		break;
	case TOOL_DOCTOR:
		for (size_t i = 0; i < res->u.doctor.nwarn; i++)
			free(res->u.doctor.warn[i]);
		for (size_t i = 0; i < res->u.doctor.nfail; i++)
			free(res->u.doctor.fail[i]);
		for (size_t i = 0; i < res->u.doctor.ninfo; i++)
			free(res->u.doctor.info[i]);
		break;
	}
	memset(res, 0, sizeof(*res));
}
