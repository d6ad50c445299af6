/* SPDX-License-Identifier: MIT */
/* Scans of a job directory and what they remove: the steps present, temporary files of dead
 * processes, superseded shards, and retired copies (moved out of sight first, removed after). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "store.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int ckpt_store__list_steps(const char *jobdir, uint64_t **steps, size_t *n, struct ckpt_err *err)
{
	DIR *d;
	struct dirent *e;
	uint64_t *v = NULL, step;
	size_t cnt = 0, cap = 0;

	*steps = NULL;
	*n = 0;
	if (!(d = opendir(jobdir))) {
		if (errno == ENOENT)
			return CKPT_OK;
		return ckpt_err__errno(err, errno, "open directory %s", jobdir);
	}
	while ((e = readdir(d))) {
		struct stat st;

		if (ckpt_store__parse_step(e->d_name, &step))
			continue;
		/* only real directories: a planted symlink is not a step of this job */
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
			continue;
		if (cnt == cap) {
			uint64_t *nv = realloc(v, (cap = cap ? 2 * cap : 16) * sizeof(*v));

			if (!nv) {
				free(v);
				closedir(d);
				return ckpt_err__set(err, CKPT_ENOMEM, "out of memory listing %s",
						     jobdir);
			}
			v = nv;
		}
		v[cnt++] = step;
	}
	closedir(d);
	if (cnt)
		qsort(v, cnt, sizeof(*v), cmp_u64);
	*steps = v;
	*n = cnt;
	return CKPT_OK;
}

/* ".tmp.<host>.<pid>.<rand>.<final>": does it belong to a dead process of this host? */
static int tmp_is_abandoned(const char *name)
{
	const char *host = ckpt_store__hostname();
	size_t hl = strlen(host);
	char *end;
	long pid;

	if (strncmp(name, ".tmp.", 5) || strncmp(name + 5, host, hl) || name[5 + hl] != '.')
		return 0;
	pid = strtol(name + 6 + hl, &end, 10);
	if (*end != '.' || pid <= 0)
		return 0;
	return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

int ckpt_store__cleanup_tmp(const char *jobdir)
{
	char path[CKPT_PATH_MAX];
	uint64_t *steps;
	size_t n;
	int removed = 0;
	DIR *jd;

	/* Retired copies are garbage whoever retired them: a process that died before removing
	 * them, or one of another host (a shared tier); they were retired after their read_grace.
	 * Removing one that its owner is removing too is harmless. */
	if ((jd = opendir(jobdir))) {
		struct dirent *e;

		while ((e = readdir(jd))) {
			size_t l = strlen(e->d_name);

			if (strncmp(e->d_name, ".tmp.", 5) || l < 13 ||
			    snprintf(path, sizeof(path), "%s/%s", jobdir, e->d_name) >= (int)sizeof(path))
				continue;
			if (!strcmp(e->d_name + l - 8, ".retired")) {
				ckpt_store__remove_retired(path);
				removed++;
			} else if (tmp_is_abandoned(e->d_name) && unlinkat(dirfd(jd), e->d_name, 0) == 0) {
				removed++; /* a probe or a lease being written by a dead process */
			}
		}
		closedir(jd);
	}
	if (ckpt_store__list_steps(jobdir, &steps, &n, NULL) < 0)
		return removed;
	for (size_t i = 0; i < n; i++) {
		DIR *d;
		struct dirent *e;

		if (ckpt_store__step_dir(path, sizeof(path), jobdir, steps[i]) < 0 ||
		    !(d = opendir(path)))
			continue;
		while ((e = readdir(d))) {
			if (tmp_is_abandoned(e->d_name) && unlinkat(dirfd(d), e->d_name, 0) == 0)
				removed++;
		}
		closedir(d);
	}
	free(steps);
	return removed;
}

/* Remove every entry of a step directory (it holds files only), then the directory. A directory
 * that is already gone is no error. */
static int remove_dir_files(const char *dir, struct ckpt_err *err)
{
	DIR *d;
	struct dirent *e;

	if (!(d = opendir(dir)))
		return errno == ENOENT ? CKPT_OK :
		       ckpt_err__errno(err, errno, "open directory %s", dir);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	if (rmdir(dir) < 0 && errno != ENOENT)
		return ckpt_err__errno(err, errno, "remove directory %s", dir);
	return CKPT_OK;
}

int ckpt_store__remove_step(const char *stepdir, struct ckpt_err *err)
{
	char path[CKPT_PATH_MAX];
	int rc;

	/* 1. uncommit: remove the MANIFEST and make that durable before touching any shard */
	snprintf(path, sizeof(path), "%s/%s", stepdir, CKPT_MANIFEST_NAME);
	if (unlink(path) == 0 && (rc = ckpt_store__fsync_dir(stepdir, err)) < 0)
		return rc;
	/* 2. the shards and anything else in the directory, then the directory itself */
	return remove_dir_files(stepdir, err);
}

int ckpt_store__retire(const char *path, const char *jobdir, char *trash, size_t len)
{
	if (ckpt_store__tmp_path(trash, len, jobdir, "retired") < 0) {
		errno = ENAMETOOLONG;
		return -1;
	}
	/* No fsync: what is retired is garbage either way. After a crash it is found under its old
	 * name (removed again by retention or ckpt gc) or under the new one (removed at open). */
	return rename(path, trash);
}

void ckpt_store__remove_retired(const char *trash)
{
	char parent[CKPT_PATH_MAX + 4];
	struct stat st;

	if (lstat(trash, &st) < 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlink(trash);
		return;
	}
	/* A retired step directory. Its rename must be durable before any of its files goes: a
	 * crash may otherwise bring back the step under its old name, committed but with holes.
	 * The job directory it was renamed into is its parent, "..". */
	snprintf(parent, sizeof(parent), "%s/..", trash);
	if (ckpt_store__fsync_dir(parent, NULL) < 0)
		return; /* left for ckpt_store__cleanup_tmp */
	remove_dir_files(trash, NULL);
}

void ckpt_store__remove_other_saves(const char *stepdir, uint64_t keep_id)
{
	char keep[32];
	DIR *d;
	struct dirent *e;
	size_t kl;

	snprintf(keep, sizeof(keep), "-%016" PRIx64 ".ckz", keep_id);
	kl = strlen(keep);
	if (!(d = opendir(stepdir)))
		return;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);

		if (strncmp(e->d_name, "rank-", 5) || l < kl + 5 ||
		    strcmp(e->d_name + l - 4, ".ckz") || !strcmp(e->d_name + l - kl, keep))
			continue;
		unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
}

/* Is name a shard "rank-*.ckz" of another save than the one whose suffix is keep? */
static int other_save(const char *name, const char *keep, size_t kl)
{
	size_t l = strlen(name);

	return !strncmp(name, "rank-", 5) && l >= kl + 5 && !strcmp(name + l - 4, ".ckz") &&
	       strcmp(name + l - kl, keep);
}

void ckpt_store__free_paths(char **paths, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
}

int ckpt_store__list_other_saves(const char *stepdir, uint64_t keep_id, char ***paths, size_t *n)
{
	char keep[32], **v = NULL;
	size_t kl, cnt = 0;
	DIR *d;
	struct dirent *e;
	int rc = 0;

	*paths = NULL;
	*n = 0;
	snprintf(keep, sizeof(keep), "-%016" PRIx64 ".ckz", keep_id);
	kl = strlen(keep);
	if (!(d = opendir(stepdir)))
		return 0;
	while ((e = readdir(d))) {
		char **nv, *p;
		size_t len;

		if (!other_save(e->d_name, keep, kl))
			continue;
		len = strlen(stepdir) + strlen(e->d_name) + 2;
		if (!(nv = realloc(v, (cnt + 1) * sizeof(*v))) || !(p = malloc(len))) {
			if (nv)
				v = nv;
			rc = -1;
			break;
		}
		v = nv;
		snprintf(p, len, "%s/%s", stepdir, e->d_name);
		v[cnt++] = p;
	}
	closedir(d);
	if (rc < 0) {
		ckpt_store__free_paths(v, cnt);
		return rc;
	}
	*paths = v;
	*n = cnt;
	return 0;
}

static int64_t mtime_ns(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

int ckpt_store__sweep_superseded(const char *stepdir, uint64_t keep_id,
				 const struct stat *manifest_st, uint64_t fs_now_ns, double grace_s)
{
	char keep[32], path[CKPT_PATH_MAX];
	struct stat mst, st;
	size_t kl;
	DIR *d;
	struct dirent *e;
	int removed = 0;

	snprintf(keep, sizeof(keep), "-%016" PRIx64 ".ckz", keep_id);
	kl = strlen(keep);
	/* (1) the MANIFEST read is still the one in place: same inode, same mtime */
	if (snprintf(path, sizeof(path), "%s/%s", stepdir, CKPT_MANIFEST_NAME) >= (int)sizeof(path) ||
	    lstat(path, &mst) < 0 || mst.st_dev != manifest_st->st_dev ||
	    mst.st_ino != manifest_st->st_ino || mtime_ns(&mst) != mtime_ns(manifest_st))
		return 0;
	/* (3) readers of the save it superseded had read_grace seconds (fs time on both sides) */
	if ((double)((int64_t)fs_now_ns - mtime_ns(&mst)) < grace_s * 1e9)
		return 0;
	if (!(d = opendir(stepdir)))
		return 0;
	while ((e = readdir(d))) {
		if (!other_save(e->d_name, keep, kl) ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		/* (2) strictly older than the commit that superseded it: equal mtimes (a coarse
		 * clock) keep the shard, the safe side */
		if (mtime_ns(&st) < mtime_ns(&mst) && unlinkat(dirfd(d), e->d_name, 0) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}
