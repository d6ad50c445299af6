/* SPDX-License-Identifier: MIT */
/* Positional I/O. Asynchronous writes for the local tier, behind one small ops table: io_uring when
 * the kernel (and the container's seccomp profile) allows it, plain pwrite otherwise (io.c,
 * io_uring.c, io_posix.c); and the blocking full-length pread/pwrite of every other file (io.c). */
#ifndef CKPT_IO_H
#define CKPT_IO_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"

struct ckpt_io;

struct ckpt_io_ops {
	const char *name;
	int (*open)(struct ckpt_io *io, unsigned depth, struct ckpt_err *err);
	void (*close)(struct ckpt_io *io);
	/* Queue a write of len bytes at off; `slot` (< depth) comes back from reap. The caller never
	 * has more than `depth` writes outstanding. */
	int (*submit)(struct ckpt_io *io, int fd, const void *buf, size_t len, uint64_t off,
		      unsigned slot, struct ckpt_err *err);
	/* Wait for one outstanding write; *slot tells which. Returns its result: CKPT_OK when every
	 * byte was written (short writes are completed internally), else the error. */
	int (*reap)(struct ckpt_io *io, unsigned *slot, struct ckpt_err *err);
};

struct ckpt_io {
	const struct ckpt_io_ops *ops;
	unsigned depth;
	unsigned inflight;
	void *priv;
};

/* Open a writer with `depth` slots. CKPT_BACKEND_AUTO tries io_uring and falls back to POSIX when
 * io_uring_queue_init fails; CKPT_BACKEND_URING fails with CKPT_ENOTSUP then. */
int ckpt_io__open(struct ckpt_io **out, enum ckpt_backend backend, unsigned depth,
		  struct ckpt_err *err);
void ckpt_io__close(struct ckpt_io *io);
const char *ckpt_io__name(const struct ckpt_io *io);
int ckpt_io__submit(struct ckpt_io *io, int fd, const void *buf, size_t len, uint64_t off,
		    unsigned slot, struct ckpt_err *err);
int ckpt_io__reap(struct ckpt_io *io, unsigned *slot, struct ckpt_err *err);
/* Reap everything outstanding; the first error wins. */
int ckpt_io__reap_all(struct ckpt_io *io, struct ckpt_err *err);

/* Write all of buf at off with pwrite, retrying short writes and EINTR. */
int ckpt_io__pwrite_full(int fd, const void *buf, size_t len, uint64_t off, struct ckpt_err *err,
			 const char *what);
/* Read exactly len bytes at off; a short read is CKPT_ECORRUPT (the file is shorter than its
 * index claims). */
int ckpt_io__pread_full(int fd, void *buf, size_t len, uint64_t off, struct ckpt_err *err,
			const char *what);

extern const struct ckpt_io_ops ckpt_io__posix_ops;
#ifdef HAVE_LIBURING
extern const struct ckpt_io_ops ckpt_io__uring_ops;
#endif

#endif
