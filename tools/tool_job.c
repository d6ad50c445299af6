/* SPDX-License-Identifier: MIT */
/* The job directories as the ckpt commands see them: which directories must exist, where the
 * tiers may be, which ranks have a local shard, what looks like a job (docs/FORMAT.md section 2). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tool.h"

int tool_need_dir(struct tool_ctx *t, const char *key, const char *dir)
{
	int shared = !strcmp(key, "shared_dir");
	struct stat st;

	if (!dir)
		return tool_usage_error(t, "%s is not set (--%s or CKPT_%s)", key,
					shared ? "shared-dir" : "local-dir",
					shared ? "SHARED_DIR" : "LOCAL_DIR");
	if (stat(dir, &st) < 0) {
		tool_say(t, "%s %s: %s%s", key, dir, strerror(errno),
			 errno == ENOENT ? " (is the volume mounted?)" : "");
		return TOOL_EXIT_IO;
	}
	if (!S_ISDIR(st.st_mode)) {
		tool_say(t, "%s %s is not a directory", key, dir);
		return TOOL_EXIT_IO;
	}
	return -1;
}

int tool_check_tiers(struct tool_ctx *t)
{
	const struct tool_opts *o = &t->o;
	char s[PATH_MAX], l[PATH_MAX];
	size_t n;

	if (!o->shared_dir || !o->local_dir || !realpath(o->shared_dir, s) ||
	    !realpath(o->local_dir, l))
		return -1;
	n = strlen(l);
	if ((n == 1 && l[0] == '/') || (!strncmp(s, l, n) && (s[n] == '\0' || s[n] == '/')))
		return tool_usage_error(t, "shared_dir %s is %s local_dir %s", s,
					strcmp(s, l) ? "inside" : "the same directory as", l);
	return -1;
}

int tool_rank_selected(const struct tool_opts *o, uint32_t r)
{
	if (!o->ranks)
		return 1;
	for (size_t i = 0; i < o->nranges; i++)
		if (r >= o->ranks[i].lo && r <= o->ranks[i].hi)
			return 1;
	return 0;
}

uint32_t tool_rank_max(const struct tool_opts *o)
{
	uint32_t m = 0;

	for (size_t i = 0; i < o->nranges; i++)
		if (o->ranks[i].hi > m)
			m = o->ranks[i].hi;
	return m;
}

void tool_step_path(char *buf, size_t len, const char *job, uint64_t step)
{
	ckpt_store__step_dir(buf, len, job, step);
}

/* rank-NNNNNN.ckl */
static int parse_local_name(const char *name, uint32_t *rank)
{
	uint64_t v = 0;
	size_t n = strlen(name), i;

	if (n < 5 + 6 + 4 || strncmp(name, "rank-", 5) || strcmp(name + n - 4, ".ckl"))
		return -1;
	for (i = 5; i < n - 4; i++) {
		if (name[i] < '0' || name[i] > '9' || v >= CKPT_MAX_RANKS)
			return -1;
		v = v * 10 + (uint64_t)(name[i] - '0');
	}
	*rank = (uint32_t)v;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

long tool_local_files(const char *stepdir, uint32_t **out)
{
	DIR *d = opendir(stepdir);
	struct dirent *e;
	size_t n = 0, cap = 0;
	uint32_t r, *v = NULL, *nv;

	*out = NULL;
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		if (parse_local_name(e->d_name, &r))
			continue;
		if (n == cap) {
			if (!(nv = realloc(v, (cap = cap ? 2 * cap : 8) * sizeof(*v)))) {
				free(v);
				closedir(d);
				return -1;
			}
			v = nv;
		}
		v[n++] = r;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), cmp_u32);
	*out = v;
	return (long)n;
}

int tool_is_job_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	struct stat st;
	uint64_t step;
	int job = 0;

	if (!d)
		return 0;
	while (!job && (e = readdir(d))) {
		/* the rank lock ckpt_open takes in the local job directory */
		if (!strncmp(e->d_name, ".lock-rank-", 11))
			job = 1;
		/* a step directory, named as readers take it: a real directory, not a symlink */
		else if (!ckpt_store__parse_step(e->d_name, &step) &&
			 fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			 S_ISDIR(st.st_mode))
			job = 1;
	}
	closedir(d);
	return job;
}
