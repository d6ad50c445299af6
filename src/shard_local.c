/* SPDX-License-Identifier: MIT */
/* The local shard writer. It streams each region through aligned buffers into O_DIRECT writes with
 * several in flight, hashing as it copies, so ckpt_save costs about what the device takes. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "shard.h"

#define BOUNCE_SIZE (8u << 20)

static uint64_t align_up(uint64_t v)
{
	return (v + CKPT_ALIGN - 1) & ~(uint64_t)(CKPT_ALIGN - 1);
}

int ckpt_shard__writer_new(struct ckpt_writer **out, enum ckpt_backend backend, unsigned depth,
			   struct ckpt_err *err)
{
	struct ckpt_writer *w;
	int rc;

	*out = NULL;
	if (!(w = calloc(1, sizeof(*w))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for the local writer");
	if ((rc = ckpt_io__open(&w->io, backend, depth, err)) < 0)
		goto fail;
	w->bufsize = BOUNCE_SIZE;
	rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory for %u bounce buffers", depth);
	if (!(w->bufs = calloc(depth, sizeof(void *))) || ckpt_codec__hash_new(&w->hash) < 0)
		goto fail;
	for (unsigned i = 0; i < depth; i++)
		if (posix_memalign(&w->bufs[i], CKPT_ALIGN, w->bufsize))
			goto fail;
	ckpt_err__clear(err);
	*out = w;
	return CKPT_OK;
fail:
	ckpt_shard__writer_free(w);
	return rc;
}

void ckpt_shard__writer_free(struct ckpt_writer *w)
{
	if (!w)
		return;
	if (w->bufs && w->io)
		for (unsigned i = 0; i < w->io->depth; i++)
			free(w->bufs[i]);
	free(w->bufs);
	ckpt_codec__hash_free(w->hash);
	ckpt_io__close(w->io);
	free(w);
}

/* Slots: a buffer (or a caller's aligned memory) may be reused only after its write completes. */
struct wjob {
	struct ckpt_writer *w;
	int fd;
	int direct;
	unsigned nfree;
	unsigned *freelist;
	struct ckpt_err *err;
	int in_place;       /* staged regions: aligned and zero-padded, written from where they are */
	ckpt_shard_ready_fn ready; /* regions filled in while they are written (write_local_ready) */
	void *ready_arg;
	int ready_failed;   /* the failure is the caller's (ready), its message kept as it is */
};

/* write_local_ready: wait until the first `want` bytes of region i are final; *avail gets how many
 * are (a multiple of CKPT_ALIGN, or all of them). */
static int wait_ready(struct wjob *j, size_t i, uint64_t size, uint64_t want, uint64_t *avail)
{
	uint64_t have = 0;
	int rc = j->ready(j->ready_arg, i, want, &have, j->err);

	if (rc < 0) {
		j->ready_failed = 1;
		return rc;
	}
	assert(have >= want && have <= size);
	/* the bytes past the last whole block may still be changing: never written before the
	 * rest of their block */
	*avail = have == size ? size : have & ~(uint64_t)(CKPT_ALIGN - 1);
	return CKPT_OK;
}

static int get_slot(struct wjob *j, unsigned *slot)
{
	if (j->nfree) {
		*slot = j->freelist[--j->nfree];
		return CKPT_OK;
	}
	return ckpt_io__reap(j->w->io, slot, j->err); /* the slot is free even when the write failed */
}

/* hashed: *hash already holds the region's XXH3 (computed while it was staged, or given to
 * write_local_ready). With j->ready, region i is written as its bytes become final. */
static int write_region(struct wjob *j, const ckpt_region *r, size_t i, uint64_t off,
			uint64_t *hash, int hashed)
{
	struct ckpt_hash *h = j->w->hash;
	const char *p = r->data;
	size_t left = r->size;
	uint64_t done = 0, avail = j->ready ? 0 : r->size;
	unsigned slot;
	int rc;

	ckpt_codec__hash_reset(h);
	while (left) {
		const void *src;
		size_t piece, len;

		if (done == avail) {
			/* at least one more block (or the region's end), then whatever is ready */
			uint64_t want = r->size - done > CKPT_ALIGN ? done + CKPT_ALIGN : r->size;

			if ((rc = wait_ready(j, i, r->size, want, &avail)) < 0)
				return rc;
		}
		if ((rc = get_slot(j, &slot)) < 0)
			return rc;
		piece = avail - done < j->w->bufsize ? (size_t)(avail - done) : j->w->bufsize;
		if (j->in_place) {
			/* Staging memory (stage.c): CKPT_ALIGN-aligned, its padding zeroed, and no
			 * longer the caller's, so nothing can change it: no bounce copy. */
			if (!hashed)
				ckpt_codec__hash_update(h, p, piece);
			src = p;
			len = (size_t)align_up(piece);
		} else if (!j->direct) {
			/* Buffered I/O (no O_DIRECT on this filesystem): the kernel copies anyway. */
			ckpt_codec__hash_update(h, p, piece);
			src = p;
			len = piece;
		} else {
			/* O_DIRECT always goes through our aligned buffers, zero-padded to the block
			 * size, hashing the copy while it is in cache. Even when the caller's memory is
			 * aligned: handing it to the device directly measured slower here (bench/,
			 * 256 MiB: 1.15x the raw write, against 0.97-1.00x through the buffers). The
			 * copy overlaps the writes in flight; our likely gain is that the same few
			 * buffers are pinned for each write instead of ever new ranges of the caller's
			 * memory. Registering them (io_uring_register_buffers) is a possible next step. */
			memcpy(j->w->bufs[slot], p, piece);
			len = (size_t)align_up(piece);
			memset((char *)j->w->bufs[slot] + piece, 0, len - piece);
			ckpt_codec__hash_update(h, j->w->bufs[slot], piece);
			src = j->w->bufs[slot];
		}
		if ((rc = ckpt_io__submit(j->w->io, j->fd, src, len, off, slot, j->err)) < 0) {
			j->freelist[j->nfree++] = slot;
			return rc;
		}
		p += piece;
		off += len;
		left -= piece;
		done += piece;
	}
	/* The whole region, verified: only now may the file ever get its final name. An empty
	 * region is asked too (its checksum is still checked). */
	if (j->ready && (rc = wait_ready(j, i, r->size, r->size, &avail)) < 0)
		return rc;
	if (!hashed)
		*hash = ckpt_codec__hash_digest(h);
	return CKPT_OK;
}

static int write_local(struct ckpt_writer *w, const char *stepdir, const char *final_base,
		       const struct ckpt_header *h, const ckpt_region *regs, size_t n,
		       const uint64_t *xxh3, const unsigned char *hashed, int in_place,
		       ckpt_shard_ready_fn ready, void *ready_arg, const char *fault_kill_at,
		       struct ckpt_err *err)
{
	struct ckpt_region_meta *meta = NULL;
	struct ckpt_chunk *chunks = NULL;
	struct ckpt_header hdr = *h;
	struct ckpt_trailer trl;
	struct wjob j = { w, -1, 1, 0, NULL, err, in_place, ready, ready_arg, 0 };
	char tmp[CKPT_PATH_MAX];
	uint64_t off, raw_total = 0;
	size_t index_size, tail_len;
	void *tail = NULL;
	unsigned slot;
	int rc, tail_owned = 0;

	if ((rc = ckpt_store__tmp_path(tmp, sizeof(tmp), stepdir, final_base)) < 0)
		return ckpt_err__set(err, rc, "path too long under %s", stepdir);
	meta = calloc(n ? n : 1, sizeof(*meta));
	chunks = calloc(n ? n : 1, sizeof(*chunks));
	j.freelist = calloc(w->io->depth, sizeof(unsigned));
	if (!meta || !chunks || !j.freelist) {
		rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory saving %zu regions", n);
		goto out;
	}
	for (unsigned i = 0; i < w->io->depth; i++)
		j.freelist[j.nfree++] = w->io->depth - 1 - i;

	/* 1. create the temporary file: O_DIRECT bypasses the page cache so that the device works
	 *    while we copy; filesystems without O_DIRECT (tmpfs on old kernels) get buffered I/O. */
	j.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_DIRECT, 0640);
	if (j.fd < 0 && errno == EINVAL) {
		j.direct = 0;
		j.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
	}
	if (j.fd < 0) {
		rc = ckpt_err__errno(err, errno, "create %s", tmp);
		goto out;
	}

	/* 2. write header block, regions (each at an aligned offset), index block with trailer */
	hdr.data_offset = CKPT_ALIGN;
	hdr.nregions = (uint32_t)n;
	if ((rc = get_slot(&j, &slot)) < 0)
		goto out;
	memset(w->bufs[slot], 0, CKPT_ALIGN);
	ckpt_fmt__encode_header(w->bufs[slot], &hdr);
	if ((rc = ckpt_io__submit(w->io, j.fd, w->bufs[slot], CKPT_ALIGN, 0, slot, err)) < 0)
		goto out;
	off = CKPT_ALIGN;
	for (size_t i = 0; i < n; i++) {
		struct ckpt_region_meta *m = &meta[i];

		m->name_len = (uint16_t)strlen(regs[i].name);
		memcpy(m->name, regs[i].name, m->name_len);
		m->codec = CKPT_CODEC_NONE;
		m->raw_size = regs[i].size;
		m->chunk_raw = regs[i].size;
		m->nchunks = regs[i].size ? 1 : 0;
		m->chunks = &chunks[i];
		if (in_place && hashed && hashed[i])
			m->raw_xxh3 = xxh3[i];
		if ((rc = write_region(&j, &regs[i], i, off, &m->raw_xxh3,
				       in_place && hashed && hashed[i])) < 0)
			goto out;
		chunks[i] = (struct ckpt_chunk){ off, regs[i].size, m->raw_xxh3, 0, 0 };
		raw_total += regs[i].size;
		off += align_up(regs[i].size);
	}
	index_size = ckpt_fmt__index_size(meta, (uint32_t)n);
	tail_len = (size_t)align_up(index_size + CKPT_TRAILER_SIZE);
	if ((rc = get_slot(&j, &slot)) < 0)
		goto out;
	if (tail_len <= w->bufsize) {
		tail = w->bufs[slot];
	} else if (posix_memalign(&tail, CKPT_ALIGN, tail_len)) {
		tail = NULL;
		rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory for a %zu-byte index", index_size);
		goto out;
	} else {
		tail_owned = 1;
	}
	memset(tail, 0, tail_len);
	ckpt_fmt__encode_index(tail, meta, (uint32_t)n);
	trl = (struct ckpt_trailer){ off, index_size, ckpt_codec__xxh3(tail, index_size), raw_total,
				     off + tail_len, hdr.save_id };
	ckpt_fmt__encode_trailer((uint8_t *)tail + tail_len - CKPT_TRAILER_SIZE, &trl);
	if ((rc = ckpt_io__submit(w->io, j.fd, tail, tail_len, off, slot, err)) < 0)
		goto out;
	if ((rc = ckpt_io__reap_all(w->io, err)) < 0)
		goto out;
	ckpt_config__fault(fault_kill_at, "save.written");

	/* 3. fdatasync: data and the file size are durable before the file gets its final name */
	if (fdatasync(j.fd) < 0) {
		rc = ckpt_err__errno(err, errno, "fdatasync %s", tmp);
		goto out;
	}
	ckpt_config__fault(fault_kill_at, "save.synced");
	close(j.fd);
	j.fd = -1;
	/* 4. rename into place and fsync the step directory (a crash before the directory fsync may
	 *    lose the new name, leaving the previous step as the newest: never a partial file) */
	rc = ckpt_store__publish(tmp, stepdir, final_base, err);
	if (rc == CKPT_OK)
		ckpt_config__fault(fault_kill_at, "save.published");
out:
	if (w->io->inflight)
		ckpt_io__reap_all(w->io, NULL); /* no buffer may be freed or reused mid-write */
	if (j.fd >= 0)
		close(j.fd);
	if (rc < 0) {
		/* the io backends know offsets, not paths: name the file here (not in a message of
		 * the ready callback's: the failure was not this file's) */
		if (err && !j.ready_failed && !strstr(err->msg, stepdir)) {
			char msg[CKPT_ERRMSG_MAX];

			memcpy(msg, err->msg, sizeof(msg));
			ckpt_err__set(err, rc, "%s: %s", tmp, msg);
		}
		unlink(tmp);
	}
	if (tail_owned)
		free(tail);
	free(j.freelist);
	free(chunks);
	free(meta);
	return rc;
}

int ckpt_shard__write_local(struct ckpt_writer *w, const char *stepdir, const char *final_base,
			    const struct ckpt_header *h, const ckpt_region *regs, size_t n,
			    const char *fault_kill_at, struct ckpt_err *err)
{
	return write_local(w, stepdir, final_base, h, regs, n, NULL, NULL, 0, NULL, NULL,
			   fault_kill_at, err);
}

int ckpt_shard__write_staged(struct ckpt_writer *w, const char *stepdir, const char *final_base,
			     const struct ckpt_header *h, const ckpt_region *regs, size_t n,
			     const uint64_t *xxh3, const unsigned char *hashed,
			     const char *fault_kill_at, struct ckpt_err *err)
{
	return write_local(w, stepdir, final_base, h, regs, n, xxh3, hashed, 1, NULL, NULL,
			   fault_kill_at, err);
}

int ckpt_shard__write_local_ready(struct ckpt_writer *w, const char *stepdir,
				  const char *final_base, const struct ckpt_header *h,
				  const ckpt_region *regs, size_t n, const uint64_t *xxh3,
				  ckpt_shard_ready_fn ready, void *ready_arg,
				  const char *fault_kill_at, struct ckpt_err *err)
{
	unsigned char *hashed;
	int rc;

	/* every region's XXH3 is the caller's: each region's bytes are hashed once, by the
	 * caller, as they are checked */
	if (!(hashed = malloc(n ? n : 1)))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory saving %zu regions", n);
	memset(hashed, 1, n ? n : 1);
	rc = write_local(w, stepdir, final_base, h, regs, n, xxh3, hashed, 1, ready, ready_arg,
			 fault_kill_at, err);
	free(hashed);
	return rc;
}
