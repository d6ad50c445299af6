/* SPDX-License-Identifier: MIT */
/* The durable filesystem steps: mkdir -p, write -> fsync -> rename -> directory fsync, each step
 * commented with what a crash between two of them leaves; and the guarded reads and checks that
 * go with them (no symlink followed, shared_dir still the directory the job opened). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "io.h"
#include "store.h"

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

	if (stat(dir, &st) < 0) {
		int e = errno;
		/* "gone" only for a directory that is not there (any more); a server that does not
		 * answer (a soft NFS mount's EIO or ETIMEDOUT) is "not responding" (issue 13) */
		const char *what = e == ENOENT || e == ENOTDIR || e == ESTALE || e == ENOTCONN ?
					   "is gone" :
				   e == EIO || e == ETIMEDOUT || e == EHOSTDOWN || e == EHOSTUNREACH ||
					   e == ENETUNREACH || e == EAGAIN || e == EINTR ?
					   "is not responding" :
					   "cannot be reached";

		return ckpt_err__set(err, CKPT_EIO, "shared_dir %s %s (%s): nothing written there",
				     dir, what, strerror(e));
	}
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

int ckpt_store__rename(const char *tmp, const char *dir, const char *final_base,
		       struct ckpt_err *err)
{
	char final[CKPT_PATH_MAX];

	if (snprintf(final, sizeof(final), "%s/%s", dir, final_base) >= (int)sizeof(final))
		return ckpt_err__set(err, CKPT_EINVAL, "path too long in %s", dir);
	/* rename is atomic: a reader sees the old file or the complete new one, never a mix. */
	if (rename(tmp, final) < 0)
		return ckpt_err__errno(err, errno, "rename %s to %s", tmp, final);
	return CKPT_OK;
}

int ckpt_store__publish(const char *tmp, const char *dir, const char *final_base,
			struct ckpt_err *err)
{
	int rc = ckpt_store__rename(tmp, dir, final_base, err);

	/* Until the directory is fsync'd, a crash may forget the rename: fsync makes it durable. */
	return rc < 0 ? rc : ckpt_store__fsync_dir(dir, err);
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

int ckpt_store__fs_now(const char *dir, uint64_t *ns, struct ckpt_err *err)
{
	char tmp[CKPT_PATH_MAX];
	struct stat st;
	int fd, rc = CKPT_OK;

	*ns = 0;
	if (ckpt_store__tmp_path(tmp, sizeof(tmp), dir, "probe") < 0)
		return ckpt_err__set(err, CKPT_EINVAL, "path too long in %s", dir);
	/* The filesystem stamps a new file with its own time (an NFS server's, not this node's):
	 * the clock every age judged against a file's mtime is measured with. No fsync: the probe
	 * is removed at once, and a crash leaves a .tmp name of this host for cleanup_tmp. */
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640)) < 0)
		return ckpt_err__errno(err, errno, "create %s", tmp);
	if (fstat(fd, &st) < 0)
		rc = ckpt_err__errno(err, errno, "stat %s", tmp);
	else
		*ns = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
	close(fd);
	unlink(tmp);
	return rc;
}

int ckpt_store__create_durable(const char *dir, const char *final_base, const void *buf,
			       size_t len, struct ckpt_err *err)
{
	char tmp[CKPT_PATH_MAX], final[CKPT_PATH_MAX];
	int fd, rc;

	if ((rc = ckpt_store__tmp_path(tmp, sizeof(tmp), dir, final_base)) < 0 ||
	    snprintf(final, sizeof(final), "%s/%s", dir, final_base) >= (int)sizeof(final))
		return ckpt_err__set(err, CKPT_EINVAL, "path too long in %s", dir);
	/* 1. the content under a temporary name, 2. fsync it: durable before any name points at it */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0)
		return ckpt_err__errno(err, errno, "create %s", tmp);
	if ((rc = ckpt_io__pwrite_full(fd, buf, len, 0, err, tmp)) == CKPT_OK && fsync(fd) < 0)
		rc = ckpt_err__errno(err, errno, "fsync %s", tmp);
	close(fd);
	/* 3. link, not rename: it fails with EEXIST when the name exists, so of two processes that
	 * both found no file, exactly one creates it (atomic on local filesystems and NFS). */
	if (rc == CKPT_OK && link(tmp, final) < 0) {
		if (errno == EEXIST)
			rc = 1;
		else if (errno == EPERM || errno == ENOTSUP || errno == ENOSYS || errno == EMLINK)
			/* a filesystem without hard links (some FUSE and SMB mounts): a rename, which
			 * is not exclusive; two creators at once then both believe they created it,
			 * and the one whose name lost finds out when it reads the file back */
			rc = rename(tmp, final) < 0 ?
			     ckpt_err__errno(err, errno, "rename %s to %s", tmp, final) : CKPT_OK;
		else
			rc = ckpt_err__errno(err, errno, "link %s to %s", tmp, final);
	}
	unlink(tmp);
	/* 4. fsync the directory: the new name (and the temporary one's removal) is durable */
	if (rc == CKPT_OK)
		rc = ckpt_store__fsync_dir(dir, err);
	return rc;
}

int ckpt_store__lease_format(char *buf, const struct ckpt_store_lease *l)
{
	return snprintf(buf, CKPT_LEASE_MAX, "ckpt-writer-lease 1 %016" PRIx64 " %ld %s\n", l->id,
			l->pid, l->host);
}

int ckpt_store__lease_read(const char *jobdir, struct ckpt_store_lease *l, int64_t *mtime_ns,
			   double *age)
{
	char path[CKPT_PATH_MAX], text[CKPT_LEASE_MAX + 1], nl;
	unsigned long long id = 0;
	struct stat st;
	uint8_t *buf;
	size_t len;
	uint64_t now;
	int n = 0, rc = 0;

	memset(l, 0, sizeof(*l));
	if (snprintf(path, sizeof(path), "%s/%s", jobdir, CKPT_LEASE_NAME) >= (int)sizeof(path))
		return -1;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 1 : -1;
	if (mtime_ns)
		*mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	if (age)
		*age = ckpt_store__fs_now(jobdir, &now, NULL) < 0 ? 0 :
		       ((double)now - ((double)st.st_mtim.tv_sec * 1e9 + (double)st.st_mtim.tv_nsec)) /
		       1e9;
	if (ckpt_store__read_file(path, &buf, &len, CKPT_LEASE_MAX, NULL) < 0)
		return errno == ENOENT ? 1 : -1;
	memcpy(text, buf, len);
	text[len] = '\0';
	free(buf);
	/* exactly "ckpt-writer-lease 1 <16 hex> <pid> <host>\n", nothing after the newline */
	if (sscanf(text, "ckpt-writer-lease 1 %16llx %ld %255[^ \n]%c%n", &id, &l->pid, l->host,
		   &nl, &n) != 4 || nl != '\n' || (size_t)n != len || l->pid <= 0)
		rc = -1;
	l->id = id;
	return rc;
}
