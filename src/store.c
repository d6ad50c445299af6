/* SPDX-License-Identifier: MIT */
/* Filesystem steps shared by both tiers: names, directories, durable publication, scans. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "io.h"
#include "store.h"

int ckpt_store__step_dir(char *buf, size_t len, const char *jobdir, uint64_t step)
{
	int n = snprintf(buf, len, "%s/step-%020" PRIu64, jobdir, step);

	return (n < 0 || (size_t)n >= len) ? CKPT_EINVAL : CKPT_OK;
}

void ckpt_store__local_name(char *buf, size_t len, uint32_t rank)
{
	snprintf(buf, len, "rank-%06" PRIu32 ".ckl", rank);
}

void ckpt_store__shared_name(char *buf, size_t len, uint32_t rank, uint64_t save_id)
{
	snprintf(buf, len, "rank-%06" PRIu32 "-%016" PRIx64 ".ckz", rank, save_id);
}

int ckpt_store__parse_step(const char *name, uint64_t *step)
{
	uint64_t v = 0;

	if (strncmp(name, "step-", 5) || strlen(name) != 25)
		return -1;
	for (const char *p = name + 5; *p; p++) {
		uint64_t d;

		if (*p < '0' || *p > '9')
			return -1;
		d = (uint64_t)(*p - '0');
		if (v > (UINT64_MAX - d) / 10) /* v * 10 + d would overflow */
			return -1;
		v = v * 10 + d;
	}
	*step = v;
	return 0;
}

uint64_t ckpt_store__random64(void)
{
	uint64_t v = 0;

	/* getrandom never blocks after boot-time seeding; fall back to time and pid if it fails. */
	if (getrandom(&v, sizeof(v), 0) != sizeof(v))
		v = ckpt_store__now_ns() ^ ((uint64_t)getpid() << 32);
	return v ? v : 1;
}

uint64_t ckpt_store__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *ckpt_store__hostname(void)
{
	static char host[65];

	if (!host[0]) {
		char h[256] = "";

		gethostname(h, sizeof(h) - 1);
		/* Keep it a single path component of safe characters. */
		size_t j = 0;
		for (size_t i = 0; h[i] && j < sizeof(host) - 1; i++)
			host[j++] = (h[i] == '/' || h[i] == '.' || h[i] < 33) ? '_' : h[i];
		if (!j)
			host[j++] = 'h';
		host[j] = '\0';
	}
	return host;
}

int ckpt_store__check_step_dir(const char *path, struct ckpt_err *err)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return ckpt_err__errno(err, errno, "step directory %s", path);
	if (!S_ISDIR(st.st_mode))
		return ckpt_err__set(err, CKPT_ECORRUPT,
				     "%s is a %s, not a step directory: not followed", path,
				     S_ISLNK(st.st_mode) ? "symbolic link" : "non-directory");
	return CKPT_OK;
}

int ckpt_store__same_dir(const char *dir, uint64_t dev, uint64_t ino, struct ckpt_err *err)
{
	struct stat st;

	if (stat(dir, &st) < 0)
		return ckpt_err__set(err, CKPT_EIO, "shared_dir %s is gone (%s): nothing written there",
				     dir, strerror(errno));
	if ((uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino)
		return ckpt_err__set(err, CKPT_EIO,
				     "shared_dir %s is no longer the directory it was when the job opened "
				     "it (the volume was unmounted or replaced?): nothing written there",
				     dir);
	return CKPT_OK;
}

int ckpt_store__fsync_dir(const char *path, struct ckpt_err *err)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = CKPT_OK;

	if (fd < 0)
		return ckpt_err__errno(err, errno, "open directory %s for fsync", path);
	if (fsync(fd) < 0 && errno != EINVAL) /* EINVAL: a filesystem without directory fsync */
		rc = ckpt_err__errno(err, errno, "fsync directory %s", path);
	close(fd);
	return rc;
}

int ckpt_store__mkdirs(const char *path, struct ckpt_err *err)
{
	char buf[CKPT_PATH_MAX];
	struct stat st;
	size_t len = strlen(path);
	int rc;

	if (len == 0 || len >= sizeof(buf))
		return ckpt_err__set(err, CKPT_EINVAL, "directory path too long or empty");
	if (stat(path, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return ckpt_err__set(err, CKPT_EINVAL, "%s exists and is not a directory",
					     path);
		return CKPT_OK;
	}
	memcpy(buf, path, len + 1);
	while (len > 1 && buf[len - 1] == '/')
		buf[--len] = '\0';
	char *slash = strrchr(buf, '/');
	if (slash && slash != buf) {
		*slash = '\0';
		if ((rc = ckpt_store__mkdirs(buf, err)) < 0)
			return rc;
		*slash = '/';
	}
	if (mkdir(buf, 0750) < 0 && errno != EEXIST)
		return ckpt_err__errno(err, errno, "mkdir %s", buf);
	/* The new entry lives in the parent: fsync the parent so the directory survives a crash. */
	if (slash && slash != buf) {
		*slash = '\0';
		rc = ckpt_store__fsync_dir(buf, err);
		*slash = '/';
		return rc;
	}
	return ckpt_store__fsync_dir(slash ? "/" : ".", err);
}

int ckpt_store__tmp_path(char *buf, size_t len, const char *dir, const char *final_base)
{
	int n = snprintf(buf, len, "%s/.tmp.%s.%ld.%08" PRIx32 ".%s", dir, ckpt_store__hostname(),
			 (long)getpid(), (uint32_t)ckpt_store__random64(), final_base);

	return (n < 0 || (size_t)n >= len) ? CKPT_EINVAL : CKPT_OK;
}

int ckpt_store__publish(const char *tmp, const char *dir, const char *final_base,
			struct ckpt_err *err)
{
	char final[CKPT_PATH_MAX];

	if (snprintf(final, sizeof(final), "%s/%s", dir, final_base) >= (int)sizeof(final))
		return ckpt_err__set(err, CKPT_EINVAL, "path too long in %s", dir);
	/* rename is atomic: a reader sees the old file or the complete new one, never a mix. */
	if (rename(tmp, final) < 0)
		return ckpt_err__errno(err, errno, "rename %s to %s", tmp, final);
	/* Until the directory is fsync'd, a crash may forget the rename: fsync makes it durable. */
	return ckpt_store__fsync_dir(dir, err);
}

int ckpt_store__write_durable(const char *dir, const char *final_base, const void *buf, size_t len,
			      struct ckpt_err *err)
{
	char tmp[CKPT_PATH_MAX];
	int fd = -1, rc;

	if ((rc = ckpt_store__tmp_path(tmp, sizeof(tmp), dir, final_base)) < 0)
		return ckpt_err__set(err, rc, "path too long in %s", dir);
	/* 1. write the content under a temporary name (readers ignore .tmp.* names) */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0)
		return ckpt_err__errno(err, errno, "create %s", tmp);
	if ((rc = ckpt_io__pwrite_full(fd, buf, len, 0, err, tmp)) < 0)
		goto fail;
	/* 2. fsync the file: its bytes are durable before any name points at them */
	if (fsync(fd) < 0) {
		rc = ckpt_err__errno(err, errno, "fsync %s", tmp);
		goto fail;
	}
	close(fd);
	fd = -1;
	/* 3. rename into place, 4. fsync the directory (inside publish) */
	if ((rc = ckpt_store__publish(tmp, dir, final_base, err)) < 0)
		goto fail;
	return CKPT_OK;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return rc;
}

int ckpt_store__read_file(const char *path, uint8_t **out, size_t *len, size_t max,
			  struct ckpt_err *err)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t got = 0;
	int fd, rc = CKPT_OK;

	*out = NULL;
	*len = 0;
	/* O_NONBLOCK: a FIFO planted under this name must not hang us (regular files ignore it). */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0)
		return ckpt_err__errno(err, errno, "open %s", path);
	if (fstat(fd, &st) < 0) {
		rc = ckpt_err__errno(err, errno, "stat %s", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		rc = ckpt_err__set(err, CKPT_ECORRUPT, "%s is not a regular file of at most %zu bytes",
				   path, max);
		goto out;
	}
	if (!(buf = malloc((size_t)st.st_size + 1))) {
		rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory reading %s", path);
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = ckpt_err__errno(err, errno, "read %s", path);
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	*out = buf;
	*len = got;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

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
	 * them, or one of another host (a shared tier). Removing one that its owner is removing
	 * too is harmless. */
	if ((jd = opendir(jobdir))) {
		struct dirent *e;

		while ((e = readdir(jd))) {
			size_t l = strlen(e->d_name);

			if (strncmp(e->d_name, ".tmp.", 5) || l < 13 ||
			    strcmp(e->d_name + l - 8, ".retired") ||
			    snprintf(path, sizeof(path), "%s/%s", jobdir, e->d_name) >= (int)sizeof(path))
				continue;
			ckpt_store__remove_retired(path);
			removed++;
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
