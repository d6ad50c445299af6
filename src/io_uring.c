/* SPDX-License-Identifier: MIT */
/* io_uring backend: several O_DIRECT writes in flight from one thread, so copying the next buffer
 * overlaps with the device writing the previous ones. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <liburing.h>

#include "ckpt.h"
#include "io.h"

struct uring_req {
	int fd;
	const char *buf;
	size_t len;
	uint64_t off;
};

struct uring_state {
	struct io_uring ring;
	struct uring_req *reqs; /* by slot, to finish short writes */
};

static int uring_open(struct ckpt_io *io, unsigned depth, struct ckpt_err *err)
{
	struct uring_state *s = calloc(1, sizeof(*s));
	int rc;

	if (!s || !(s->reqs = calloc(depth, sizeof(*s->reqs)))) {
		free(s);
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for the io_uring queue");
	}
	/* Fails with -ENOSYS or -EPERM where a seccomp profile forbids io_uring_setup. */
	if ((rc = io_uring_queue_init(depth, &s->ring, 0)) < 0) {
		free(s->reqs);
		free(s);
		return ckpt_err__set(err, CKPT_ENOTSUP, "io_uring_queue_init: %s", strerror(-rc));
	}
	io->priv = s;
	return CKPT_OK;
}

static void uring_close(struct ckpt_io *io)
{
	struct uring_state *s = io->priv;

	if (!s)
		return;
	io_uring_queue_exit(&s->ring);
	free(s->reqs);
	free(s);
}

static int uring_submit(struct ckpt_io *io, int fd, const void *buf, size_t len, uint64_t off,
			unsigned slot, struct ckpt_err *err)
{
	struct uring_state *s = io->priv;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
	int rc;

	if (!sqe) /* cannot happen: the caller keeps at most `depth` writes outstanding */
		return ckpt_err__set(err, CKPT_EIO, "io_uring submission queue full");
	s->reqs[slot] = (struct uring_req){ fd, buf, len, off };
	io_uring_prep_write(sqe, fd, buf, (unsigned)len, off);
	io_uring_sqe_set_data64(sqe, slot);
	if ((rc = io_uring_submit(&s->ring)) < 0)
		return ckpt_err__errno(err, -rc, "io_uring_submit");
	return CKPT_OK;
}

static int uring_reap(struct ckpt_io *io, unsigned *slot, struct ckpt_err *err)
{
	struct uring_state *s = io->priv;
	struct io_uring_cqe *cqe;
	struct uring_req *r;
	int rc, res;

	do
		rc = io_uring_wait_cqe(&s->ring, &cqe);
	while (rc == -EINTR);
	if (rc < 0)
		return ckpt_err__errno(err, -rc, "io_uring_wait_cqe");
	*slot = (unsigned)io_uring_cqe_get_data64(cqe);
	res = cqe->res;
	io_uring_cqe_seen(&s->ring, cqe);
	r = &s->reqs[*slot];
	if (res < 0)
		return ckpt_err__errno(err, -res, "write local shard at offset %llu",
				       (unsigned long long)r->off);
	if ((size_t)res < r->len) /* rare (e.g. nearly full disk): finish synchronously */
		return ckpt_io__pwrite_full(r->fd, r->buf + res, r->len - (size_t)res,
					    r->off + (uint64_t)res, err, "local shard");
	return CKPT_OK;
}

const struct ckpt_io_ops ckpt_io__uring_ops = {
	.name = "uring",
	.open = uring_open,
	.close = uring_close,
	.submit = uring_submit,
	.reap = uring_reap,
};
