/* SPDX-License-Identifier: MIT */
/* The local shard writer. It streams each region through aligned buffers into O_DIRECT writes with
 * several in flight, hashing as it copies, so ckpt_save costs about what the device takes; and,
 * for the restore tool, the same file from pieces a decoder hands over (write_local_stream). */
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
};

static int get_slot(struct wjob *j, unsigned *slot)
{
	if (j->nfree) {
		*slot = j->freelist[--j->nfree];
		return CKPT_OK;
	}
	return ckpt_io__reap(j->w->io, slot, j->err); /* the slot is free even when the write failed */
}

/* hashed: *hash already holds the region's XXH3 (computed while it was staged). */
static int write_region(struct wjob *j, const ckpt_region *r, uint64_t off, uint64_t *hash,
			int hashed)
{
	struct ckpt_hash *h = j->w->hash;
	const char *p = r->data;
	size_t left = r->size;
	unsigned slot;
	int rc;

	ckpt_codec__hash_reset(h);
	while (left) {
		const void *src;
		size_t piece, len;

		if ((rc = get_slot(j, &slot)) < 0)
			return rc;
		piece = left < j->w->bufsize ? left : j->w->bufsize;
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
	}
	if (!hashed)
		*hash = ckpt_codec__hash_digest(h);
	return CKPT_OK;
}

/* The index entry of a region written whole at off (one chunk, or none when it is empty). */
static void region_meta(struct ckpt_region_meta *m, struct ckpt_chunk *chunk, const char *name,
			uint64_t size, uint64_t off, uint64_t xxh3)
{
	m->name_len = (uint16_t)strlen(name);
	memcpy(m->name, name, m->name_len);
	m->codec = CKPT_CODEC_NONE;
	m->raw_size = size;
	m->chunk_raw = size;
	m->nchunks = size ? 1 : 0;
	m->raw_xxh3 = xxh3;
	m->chunks = chunk;
	*chunk = (struct ckpt_chunk){ off, size, xxh3, 0, 0 };
}

/* The last block(s) of a local shard, index and trailer, for regions ending at off: tail_len
 * bytes (a CKPT_ALIGN multiple) at tail, zero where nothing is encoded. */
static size_t tail_size(const struct ckpt_region_meta *meta, size_t n)
{
	return (size_t)align_up(ckpt_fmt__index_size(meta, (uint32_t)n) + CKPT_TRAILER_SIZE);
}

static void encode_tail(void *tail, size_t tail_len, const struct ckpt_region_meta *meta, size_t n,
			uint64_t off, uint64_t raw_total, uint64_t save_id)
{
	size_t index_size = ckpt_fmt__index_size(meta, (uint32_t)n);
	struct ckpt_trailer trl;

	memset(tail, 0, tail_len);
	ckpt_fmt__encode_index(tail, meta, (uint32_t)n);
	trl = (struct ckpt_trailer){ off, index_size, ckpt_codec__xxh3(tail, index_size), raw_total,
				     off + tail_len, save_id };
	ckpt_fmt__encode_trailer((uint8_t *)tail + tail_len - CKPT_TRAILER_SIZE, &trl);
}

/* A failed write names its file (the io backends know offsets, not paths), unless the failure
 * was someone else's (the caller's callback) or the message names the directory already. */
static void name_file(struct ckpt_err *err, int rc, const char *tmp, const char *stepdir)
{
	char msg[CKPT_ERRMSG_MAX];

	if (!err || strstr(err->msg, stepdir))
		return;
	memcpy(msg, err->msg, sizeof(msg));
	ckpt_err__set(err, rc, "%s: %s", tmp, msg);
}

static int write_local(struct ckpt_writer *w, const char *stepdir, const char *final_base,
		       const struct ckpt_header *h, const ckpt_region *regs, size_t n,
		       const uint64_t *xxh3, const unsigned char *hashed, int in_place,
		       const char *fault_kill_at, struct ckpt_err *err)
{
	struct ckpt_region_meta *meta = NULL;
	struct ckpt_chunk *chunks = NULL;
	struct ckpt_header hdr = *h;
	struct wjob j = { w, -1, 1, 0, NULL, err, in_place };
	char tmp[CKPT_PATH_MAX];
	uint64_t off, raw_total = 0;
	size_t tail_len;
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
		int have = in_place && hashed && hashed[i];
		uint64_t hash = have ? xxh3[i] : 0;

		if ((rc = write_region(&j, &regs[i], off, &hash, have)) < 0)
			goto out;
		region_meta(&meta[i], &chunks[i], regs[i].name, regs[i].size, off, hash);
		raw_total += regs[i].size;
		off += align_up(regs[i].size);
	}
	tail_len = tail_size(meta, n);
	if ((rc = get_slot(&j, &slot)) < 0)
		goto out;
	if (tail_len <= w->bufsize) {
		tail = w->bufs[slot];
	} else if (posix_memalign(&tail, CKPT_ALIGN, tail_len)) {
		tail = NULL;
		rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory for a %zu-byte index", tail_len);
		goto out;
	} else {
		tail_owned = 1;
	}
	encode_tail(tail, tail_len, meta, n, off, raw_total, hdr.save_id);
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
		name_file(err, rc, tmp, stepdir);
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
	return write_local(w, stepdir, final_base, h, regs, n, NULL, NULL, 0, fault_kill_at, err);
}

int ckpt_shard__write_staged(struct ckpt_writer *w, const char *stepdir, const char *final_base,
			     const struct ckpt_header *h, const ckpt_region *regs, size_t n,
			     const uint64_t *xxh3, const unsigned char *hashed,
			     const char *fault_kill_at, struct ckpt_err *err)
{
	return write_local(w, stepdir, final_base, h, regs, n, xxh3, hashed, 1, fault_kill_at,
			   err);
}

int ckpt_shard__write_local_stream(const char *stepdir, const char *final_base,
				   const struct ckpt_header *h, const ckpt_region *regs, size_t n,
				   const uint64_t *xxh3, ckpt_shard_next_fn next, void *next_arg,
				   int durable, const char *fault_kill_at, struct ckpt_err *err)
{
	struct ckpt_region_meta *meta = NULL;
	struct ckpt_chunk *chunks = NULL;
	struct ckpt_header hdr = *h;
	char tmp[CKPT_PATH_MAX];
	uint64_t off, raw_total = 0;
	size_t tail_len;
	void *block = NULL;
	int fd = -1, rc, theirs = 0;

	if ((rc = ckpt_store__tmp_path(tmp, sizeof(tmp), stepdir, final_base)) < 0)
		return ckpt_err__set(err, rc, "path too long under %s", stepdir);
	meta = calloc(n ? n : 1, sizeof(*meta));
	chunks = calloc(n ? n : 1, sizeof(*chunks));
	if (!meta || !chunks) {
		rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory restoring %zu regions", n);
		goto out;
	}
	/* The layout first (the index holds the checksums next() verifies): each region at an
	 * aligned offset after the header block, as write_local lays it out. */
	off = CKPT_ALIGN;
	for (size_t i = 0; i < n; i++) {
		region_meta(&meta[i], &chunks[i], regs[i].name, regs[i].size, off, xxh3[i]);
		raw_total += regs[i].size;
		off += align_up(regs[i].size);
	}
	tail_len = tail_size(meta, n);
	if (!(block = malloc(tail_len > CKPT_ALIGN ? tail_len : CKPT_ALIGN))) {
		rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory for a %zu-byte index", tail_len);
		goto out;
	}

	/* 1. create the temporary file, buffered: the bytes come from a decoder chunk by chunk
	 *    and the program that waits for this restore reads them next, from the page cache. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0) {
		rc = ckpt_err__errno(err, errno, "create %s", tmp);
		goto out;
	}

	/* 2. write the header block, each region as next() hands it over (the padding up to the
	 *    next region is never written: it reads as zeros), the index block with the trailer */
	hdr.data_offset = CKPT_ALIGN;
	hdr.nregions = (uint32_t)n;
	memset(block, 0, CKPT_ALIGN);
	ckpt_fmt__encode_header(block, &hdr);
	if ((rc = ckpt_io__pwrite_full(fd, block, CKPT_ALIGN, 0, err, tmp)) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		uint64_t done = 0;

		for (;;) {
			const void *p;
			size_t len;

			if ((rc = next(next_arg, i, done, &p, &len, err)) < 0) {
				theirs = 1;
				goto out;
			}
			if (!len)
				break; /* the whole region, verified */
			if ((rc = ckpt_io__pwrite_full(fd, p, len, chunks[i].offset + done, err,
						       tmp)) < 0)
				goto out;
			done += len;
		}
	}
	encode_tail(block, tail_len, meta, n, off, raw_total, hdr.save_id);
	if ((rc = ckpt_io__pwrite_full(fd, block, tail_len, off, err, tmp)) < 0)
		goto out;
	ckpt_config__fault(fault_kill_at, "save.written");

	/* 3. durable: fdatasync, data and file size on the device before the file gets its final
	 *    name. Otherwise none: a cache copy of a step that stays durable elsewhere (committed
	 *    on the shared tier) is left to the kernel's writeback, so that the job waiting for
	 *    the restore waits for the decoder, not for the device. A power loss before the
	 *    writeback may leave it short or zeroed under its final name: every reader verifies a
	 *    local shard (its structure at open, each region's XXH3 as it loads; ckpt restore a
	 *    present copy whole) and replaces it, or reads the shared tier. */
	if (durable && fdatasync(fd) < 0) {
		rc = ckpt_err__errno(err, errno, "fdatasync %s", tmp);
		goto out;
	}
	ckpt_config__fault(fault_kill_at, "save.synced"); /* also without: the same crash points */
	/* close can report a write error late (network filesystems): never publish over one */
	rc = close(fd);
	fd = -1;
	if (rc < 0) {
		rc = ckpt_err__errno(err, errno, "close %s", tmp);
		goto out;
	}
	/* 4. rename into place; durable: fsync the step directory (a crash before it may lose
	 *    the new name: never a partial file). A cache copy's name reaches the device with the
	 *    writeback too (a crash may forget it: the next restore writes it again). */
	rc = durable ? ckpt_store__publish(tmp, stepdir, final_base, err)
		     : ckpt_store__rename(tmp, stepdir, final_base, err);
	if (rc == CKPT_OK)
		ckpt_config__fault(fault_kill_at, "save.published");
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0) {
		if (!theirs)
			name_file(err, rc, tmp, stepdir);
		unlink(tmp);
	}
	free(block);
	free(chunks);
	free(meta);
	return rc;
}
