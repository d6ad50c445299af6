/* SPDX-License-Identifier: MIT */
/* `ckpt gc`: remove what is safe to remove for one job: abandoned incomplete steps, temporary
 * files of dead processes and retired copies, and by hand the retention the library applies
 * (--keep-shared, --keep-local), never the newest committed step nor the only copy of a save. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "step.h"
#include "tool.h"

/* Record one removal (done, planned, or failed with msg). -1 when out of memory. */
static int action(struct tool_ctx *t, struct tool_gc *g, const char *tier, uint64_t step,
		  int64_t rank, const char *reason, int rc, const char *msg)
{
	struct tool_gc_action *a = realloc(g->acts, (g->n + 1) * sizeof(*a));

	if (rc < 0)
		tool_say(t, "%s %s step %" PRIu64 ": %s",
			 t->o.dry_run ? "would remove" : "FAILED to remove", tier, step, msg);
	else
		g->removed++;
	if (!a)
		return -1;
	g->acts = a;
	a = &g->acts[g->n++];
	*a = (struct tool_gc_action){ tier, step, rank, reason, rc, "" };
	if (rc < 0)
		snprintf(a->err, sizeof(a->err), "%s", msg);
	return 0;
}

static double age(const struct stat *st, double now)
{
	return now - ((double)st->st_mtim.tv_sec + (double)st->st_mtim.tv_nsec / 1e9);
}

/* May a step directory without MANIFEST be an abandoned one? Not while a live process of this
 * host has a temporary file in it, nor while anything in it changed in the last min_age
 * seconds (a writer on another host: its process cannot be checked from here). */
static int dir_busy(const char *dir, double min_age)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	struct stat st;
	const char *host = ckpt_store__hostname();
	size_t hl = strlen(host);
	double now = (double)ckpt_store__now_ns() / 1e9;
	int busy = 0;

	if (!d)
		return 0;
	if (fstat(dirfd(d), &st) == 0 && age(&st, now) < min_age)
		busy = 1;
	while (!busy && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    age(&st, now) < min_age)
			busy = 1;
		if (!strncmp(e->d_name, ".tmp.", 5) && !strncmp(e->d_name + 5, host, hl) &&
		    e->d_name[5 + hl] == '.') {
			long pid = strtol(e->d_name + 6 + hl, NULL, 10);

			if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
				busy = 1;
		}
	}
	closedir(d);
	return busy;
}

static int dir_empty(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int empty = 1;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			empty = 0;
	closedir(d);
	return empty;
}

/* Shared tier: committed means a MANIFEST that decodes (the library's retention counts the
 * same); the newest of them, and the newest whose shards all check out, are never removed.
 * Returns 0, or -1 when out of memory. */
static int gc_shared(struct tool_ctx *t, struct tool_gc *g, const uint64_t *steps, size_t n)
{
	const struct tool_opts *o = &t->o;
	struct ckpt_err e = { "" };
	int have_intact = 0, oom = 0;
	uint64_t intact = 0;
	size_t kept = 0;
	char dir[CKPT_PATH_MAX];
	unsigned char *committed = calloc(n ? n : 1, 1);

	if (!committed)
		return -1;
	for (size_t i = n; i-- > 0;) {
		struct ckpt_manifest m;
		int rc = ckpt_step__manifest(o->shared_job, steps[i], &m, 0, NULL);

		if (rc == CKPT_OK) {
			ckpt_fmt__manifest_free(&m);
			committed[i] = 1;
			if (!g->have_newest) {
				g->have_newest = 1;
				g->newest = steps[i];
			}
			if (!have_intact &&
			    ckpt_step__manifest(o->shared_job, steps[i], &m, 1, NULL) == CKPT_OK) {
				ckpt_fmt__manifest_free(&m);
				have_intact = 1;
				intact = steps[i];
			}
		} else if (rc != CKPT_ENOENT) {
			committed[i] = 2; /* damaged MANIFEST: left for the operator (ckpt verify) */
		}
	}
	for (size_t i = n; i-- > 0 && !oom;) {
		int rc = CKPT_OK;

		tool_step_path(dir, sizeof(dir), o->shared_job, steps[i]);
		if (committed[i] == 0) {
			/* Incomplete. Only older than the newest committed step is it abandoned: a
			 * newer one may be draining, or be re-drained by the next ckpt_open. */
			if (!g->have_newest || steps[i] > g->newest || dir_busy(dir, o->min_age))
				continue;
			if (!o->dry_run)
				rc = ckpt_store__remove_step(dir, &e);
			oom = action(t, g, "shared", steps[i], -1, "incomplete, abandoned", rc, e.msg);
		} else if (committed[i] == 1) {
			if (kept++ < o->keep_shared || !o->have_keep_shared || o->keep_shared == 0 ||
			    steps[i] == g->newest || (have_intact && steps[i] == intact))
				continue;
			/* remove_step uncommits first: a crash midway leaves an incomplete step */
			if (!o->dry_run)
				rc = ckpt_store__remove_step(dir, &e);
			oom = action(t, g, "shared", steps[i], -1, "retention: --keep-shared", rc,
				     e.msg);
		}
	}
	free(committed);
	return oom;
}

/* The local shards of one step beyond --keep-local, but only those whose save the shared tier
 * has committed: never the only copy. Returns 0, or -1 when out of memory. */
static int gc_local_step(struct tool_ctx *t, struct tool_gc *g, uint64_t step, const char *dir)
{
	const struct tool_opts *o = &t->o;
	struct ckpt_err e = { "" };
	struct ckpt_manifest m;
	uint32_t *files = NULL;
	long nf = 0;
	int oom = 0, have_m;

	have_m = ckpt_step__manifest(o->shared_job, step, &m, 0, NULL) == CKPT_OK;
	if (have_m && (nf = tool_local_files(dir, &files)) < 0)
		oom = 1;
	for (long k = 0; k < nf && !oom; k++) {
		struct ckpt_shard *s;
		char base[64], path[CKPT_PATH_MAX + 64];
		int same, rc = 0;

		if (ckpt_step__open_local(&s, o->local_job, step, files[k], NULL) < 0)
			continue;
		same = s->hdr.save_id == m.save_id;
		ckpt_shard__close(s);
		if (!same)
			continue;
		ckpt_store__local_name(base, sizeof(base), files[k]);
		snprintf(path, sizeof(path), "%s/%s", dir, base);
		if (!o->dry_run && unlink(path) < 0)
			rc = ckpt_err__errno(&e, errno, "unlink %s", path);
		oom = action(t, g, "local", step, files[k],
			     "retention: --keep-local, committed on shared", rc, e.msg);
	}
	if (have_m)
		ckpt_fmt__manifest_free(&m);
	if (!o->dry_run)
		rmdir(dir); /* when empty: other ranks or uncommitted saves keep it */
	free(files);
	return oom;
}

/* docs/CONCURRENCY.md: while a writer's lease is live the shared tier is its own, and gc removes
 * nothing there. Live: the lease parses or not, unless its holder is a dead process of this
 * host, or its heartbeat (mtime) is older than --min-age and 60 s (the default writer_lease; a
 * job with a longer writer_lease needs a --min-age at least as long), in the filesystem's time. */
static int writer_alive(const struct tool_opts *o, char *who, size_t len)
{
	struct ckpt_store_lease l;
	double age = 0, limit = o->min_age > 60 ? o->min_age : 60;
	int parsed = ckpt_store__lease_read(o->shared_job, &l, NULL, &age);

	if (parsed == 1)
		return 0;
	if (parsed == 0 && !strcmp(l.host, ckpt_store__hostname()) && kill((pid_t)l.pid, 0) < 0 &&
	    errno == ESRCH)
		return 0;
	if (age > limit)
		return 0;
	if (parsed == 0)
		snprintf(who, len, "host %s pid %ld, heartbeat %.0f s ago", l.host, l.pid, age);
	else
		snprintf(who, len, "an unreadable lease written %.0f s ago", age);
	return 1;
}

/* Rule S of docs/CONCURRENCY.md with --min-age as the readers' grace: the shards of superseded
 * saves that a killed writer left behind. Returns 0, or -1 when out of memory. */
static int gc_superseded(struct tool_ctx *t, struct tool_gc *g, const uint64_t *steps, size_t n)
{
	const struct tool_opts *o = &t->o;
	char dir[CKPT_PATH_MAX], mpath[CKPT_PATH_MAX + 16];
	struct ckpt_manifest m;
	struct stat st;
	uint64_t now;

	if (o->dry_run || ckpt_store__fs_now(o->shared_job, &now, NULL) < 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		int removed;

		tool_step_path(dir, sizeof(dir), o->shared_job, steps[i]);
		snprintf(mpath, sizeof(mpath), "%s/%s", dir, CKPT_MANIFEST_NAME);
		if (lstat(mpath, &st) < 0 ||
		    ckpt_step__manifest(o->shared_job, steps[i], &m, 0, NULL) < 0)
			continue;
		removed = ckpt_store__sweep_superseded(dir, m.save_id, &st, now, o->min_age);
		ckpt_fmt__manifest_free(&m);
		if (removed > 0 && action(t, g, "shared", steps[i], -1, "superseded save", 0, "") < 0)
			return -1;
	}
	return 0;
}

/* Local tier: temporary files of dead processes of this host, empty step directories, then
 * keep_local. Returns 0, or -1 when out of memory. */
static int gc_local(struct tool_ctx *t, struct tool_gc *g, const uint64_t *lsteps, size_t nl)
{
	const struct tool_opts *o = &t->o;
	struct ckpt_err e = { "" };
	char dir[CKPT_PATH_MAX];
	size_t kept = 0;

	if (o->local_dir && !o->dry_run)
		ckpt_store__cleanup_tmp(o->local_job);
	for (size_t i = nl; i-- > 0;) {
		tool_step_path(dir, sizeof(dir), o->local_job, lsteps[i]);
		if (dir_empty(dir)) {
			/* left by a killed save or restore */
			if (!dir_busy(dir, o->min_age)) {
				int rc = o->dry_run || rmdir(dir) == 0 ? 0 :
					 ckpt_err__errno(&e, errno, "rmdir %s", dir);

				if (action(t, g, "local", lsteps[i], -1, "empty", rc, e.msg) < 0)
					return -1;
			}
			continue;
		}
		if (!o->have_keep_local || kept++ < o->keep_local)
			continue;
		if (gc_local_step(t, g, lsteps[i], dir) < 0)
			return -1;
	}
	return 0;
}

static int run(struct tool_ctx *t, struct tool_result *out)
{
	const struct tool_opts *o = &t->o;
	struct tool_gc *g = &out->u.gc;
	uint64_t *steps = NULL, *lsteps = NULL;
	size_t n = 0, nl = 0;
	struct ckpt_err e = { "" };
	char who[400];
	int code, shared_busy;

	out->kind = TOOL_GC;
	if ((code = tool_need_dir(t, "shared_dir", o->shared_dir)) >= 0 ||
	    (o->local_dir && (code = tool_need_dir(t, "local_dir", o->local_dir)) >= 0) ||
	    (code = tool_check_tiers(t)) >= 0)
		return code;
	if (ckpt_store__list_steps(o->shared_job, &steps, &n, &e) < 0 ||
	    (o->local_dir && ckpt_store__list_steps(o->local_job, &lsteps, &nl, &e) < 0)) {
		tool_say(t, "%s", e.msg);
		free(steps);
		return TOOL_EXIT_IO;
	}
	out->report = 1;
	code = TOOL_EXIT_OK;
	if ((shared_busy = writer_alive(o, who, sizeof(who))))
		tool_say(t, "the shared tier of job '%s' is left alone: its writer is alive (%s); "
			 "run ckpt gc again once that job closed", o->name, who);
	if ((!shared_busy && (gc_shared(t, g, steps, n) < 0 || gc_superseded(t, g, steps, n) < 0)) ||
	    gc_local(t, g, lsteps, nl) < 0) {
		tool_say(t, "out of memory");
		code = TOOL_EXIT_IO;
	}
	if (!o->dry_run && !shared_busy)
		ckpt_store__cleanup_tmp(o->shared_job);
	for (size_t i = 0; i < g->n; i++)
		if (g->acts[i].rc < 0)
			code = TOOL_EXIT_IO;
	free(steps);
	free(lsteps);
	return code;
}

const struct tool_cmd tool_cmd_gc = {
	.name = "gc",
	.run = run,
	.opts = TOOL_OPT(SHARED_DIR) | TOOL_OPT(LOCAL_DIR) | TOOL_OPT(NAME) | TOOL_OPT(KEEP_SHARED) |
		TOOL_OPT(KEEP_LOCAL) | TOOL_OPT(MIN_AGE) | TOOL_OPT(DRY_RUN),
	.synopsis = "--shared-dir DIR [--local-dir DIR] [--name NAME] [--keep-shared N]\n"
		    "[--keep-local N] [--min-age SECONDS] [--dry-run] [--json] [--quiet]",
	.summary = "remove abandoned incomplete steps, apply retention by hand",
	.help = "Removes abandoned incomplete steps (older than the newest committed step, idle\n"
		"for --min-age seconds, default 60), temporary files of dead processes and\n"
		"retired copies; with --keep-shared N / --keep-local N, committed steps beyond the\n"
		"N newest; shards of superseded saves once their MANIFEST is --min-age old.\n"
		"Never removes the newest committed step, the newest intact one, or a local\n"
		"shard that is the only copy of its save; leaves the shared tier alone while\n"
		"the job's writer lease is live. --dry-run removes nothing.\n",
	.exits = "Exit status: 0 success; 3 I/O error; 64 bad usage. See ckpt(1).\n",
};
