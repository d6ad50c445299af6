/* SPDX-License-Identifier: MIT */
/* The front of the io module: backend selection and the bookkeeping shared by both backends, and
 * the blocking full-length pread/pwrite that every module uses for all but local-shard data. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "ckpt.h"
#include "io.h"

int ckpt_io__open(struct ckpt_io **out, enum ckpt_backend backend, unsigned depth,
		  struct ckpt_err *err)
{
	struct ckpt_io *io;
	int rc = CKPT_ENOTSUP;

	*out = NULL;
	if (!(io = calloc(1, sizeof(*io))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for the I/O queue");
	io->depth = depth;
	if (backend != CKPT_BACKEND_POSIX) {
#ifdef HAVE_LIBURING
		io->ops = &ckpt_io__uring_ops;
		rc = io->ops->open(io, depth, err);
#else
		rc = ckpt_err__set(err, CKPT_ENOTSUP, "io_backend uring: built without liburing");
#endif
		if (rc == CKPT_OK)
			goto done;
		if (backend == CKPT_BACKEND_URING)
			goto fail;
		/* auto: io_uring unavailable (old kernel, seccomp): the POSIX path is a full peer. */
	}
	io->ops = &ckpt_io__posix_ops;
	if ((rc = io->ops->open(io, depth, err)) < 0)
		goto fail;
done:
	*out = io;
	return CKPT_OK;
fail:
	free(io);
	return rc;
}

void ckpt_io__close(struct ckpt_io *io)
{
	if (!io)
		return;
	if (io->ops && io->inflight)
		ckpt_io__reap_all(io, NULL);
	if (io->ops)
		io->ops->close(io);
	free(io);
}

const char *ckpt_io__name(const struct ckpt_io *io)
{
	return io ? io->ops->name : "none";
}

int ckpt_io__submit(struct ckpt_io *io, int fd, const void *buf, size_t len, uint64_t off,
		    unsigned slot, struct ckpt_err *err)
{
	int rc = io->ops->submit(io, fd, buf, len, off, slot, err);

	if (rc == CKPT_OK)
		io->inflight++;
	return rc;
}

int ckpt_io__reap(struct ckpt_io *io, unsigned *slot, struct ckpt_err *err)
{
	int rc = io->ops->reap(io, slot, err);

	io->inflight--;
	return rc;
}

int ckpt_io__reap_all(struct ckpt_io *io, struct ckpt_err *err)
{
	int first = CKPT_OK, rc;
	unsigned slot;

	while (io->inflight) {
		/* Keep reaping after an error: buffers must not be reused while a write is in flight. */
		rc = ckpt_io__reap(io, &slot, first == CKPT_OK ? err : NULL);
		if (rc < 0 && first == CKPT_OK)
			first = rc;
	}
	return first;
}

int ckpt_io__pwrite_full(int fd, const void *buf, size_t len, uint64_t off, struct ckpt_err *err,
			 const char *what)
{
	const char *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return ckpt_err__errno(err, errno, "write %s at offset %llu", what,
					       (unsigned long long)off);
		}
		if (n == 0)
			return ckpt_err__set(err, CKPT_EIO, "write %s: no progress at offset %llu",
					     what, (unsigned long long)off);
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return CKPT_OK;
}

int ckpt_io__pread_full(int fd, void *buf, size_t len, uint64_t off, struct ckpt_err *err,
			const char *what)
{
	char *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return ckpt_err__errno(err, errno, "read %s at offset %llu", what,
					       (unsigned long long)off);
		}
		if (n == 0)
			return ckpt_err__set(err, CKPT_ECORRUPT,
					     "read %s: file ends before offset %llu (truncated)", what,
					     (unsigned long long)off);
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return CKPT_OK;
}
