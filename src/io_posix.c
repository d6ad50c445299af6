/* SPDX-License-Identifier: MIT */
/* POSIX backend: each submitted write runs synchronously with pwrite; reap hands back results in
 * order. Used where io_uring is missing or forbidden (container seccomp profiles). */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "ckpt.h"
#include "io.h"

struct posix_state {
	unsigned head, count;
	unsigned *slots;
	int *results;
	struct ckpt_err *errs;
};

static int posix_open(struct ckpt_io *io, unsigned depth, struct ckpt_err *err)
{
	struct posix_state *s = calloc(1, sizeof(*s));

	if (!s || !(s->slots = calloc(depth, sizeof(unsigned))) ||
	    !(s->results = calloc(depth, sizeof(int))) ||
	    !(s->errs = calloc(depth, sizeof(struct ckpt_err)))) {
		if (s) {
			free(s->slots);
			free(s->results);
		}
		free(s);
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for the I/O queue");
	}
	io->priv = s;
	return CKPT_OK;
}

static void posix_close(struct ckpt_io *io)
{
	struct posix_state *s = io->priv;

	if (!s)
		return;
	free(s->slots);
	free(s->results);
	free(s->errs);
	free(s);
}

static int posix_submit(struct ckpt_io *io, int fd, const void *buf, size_t len, uint64_t off,
			unsigned slot, struct ckpt_err *err)
{
	struct posix_state *s = io->priv;
	unsigned i = (s->head + s->count) % io->depth;

	(void)err;
	s->slots[i] = slot;
	s->results[i] = ckpt_io__pwrite_full(fd, buf, len, off, &s->errs[i], "local shard");
	s->count++;
	return CKPT_OK;
}

static int posix_reap(struct ckpt_io *io, unsigned *slot, struct ckpt_err *err)
{
	struct posix_state *s = io->priv;
	unsigned i = s->head;

	*slot = s->slots[i];
	s->head = (s->head + 1) % io->depth;
	s->count--;
	if (s->results[i] < 0)
		ckpt_err__copy(err, &s->errs[i]);
	return s->results[i];
}

const struct ckpt_io_ops ckpt_io__posix_ops = {
	.name = "posix",
	.open = posix_open,
	.close = posix_close,
	.submit = posix_submit,
	.reap = posix_reap,
};
