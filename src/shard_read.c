/* SPDX-License-Identifier: MIT */
/* The shard reader of both tiers. It validates structure before it trusts any offset, and every
 * byte (the chunk check of codec.c) before returning it. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shard.h"

#define MAX_INDEX_SIZE (512ull << 20)
#define VERIFY_PIECE (8u << 20) /* raw regions are verified through a buffer of this size */

/* Prefix an error message from the format decoder with the file it came from. */
static int in_file(struct ckpt_err *err, int rc, const char *path)
{
	char msg[CKPT_ERRMSG_MAX];

	if (err) {
		memcpy(msg, err->msg, sizeof(msg));
		ckpt_err__set(err, rc, "%s: %s", path, msg);
	}
	return rc;
}

int ckpt_shard__open(struct ckpt_shard **out, const char *path, struct ckpt_err *err)
{
	struct ckpt_shard *s;
	uint8_t buf[CKPT_HEADER_SIZE], *index = NULL;
	struct stat st;
	int rc;

	*out = NULL;
	if (!(s = calloc(1, sizeof(*s))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory opening %s", path);
	snprintf(s->path, sizeof(s->path), "%s", path);
	/* O_NOFOLLOW: a symlink planted in a checkpoint directory is never followed. */
	if ((s->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0) {
		rc = ckpt_err__errno(err, errno, "open %s", path);
		goto fail;
	}
	if (fstat(s->fd, &st) < 0) {
		rc = ckpt_err__errno(err, errno, "stat %s", path);
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < CKPT_HEADER_SIZE + CKPT_TRAILER_SIZE) {
		/* Set only on failure: ckpt_errmsg must not report a problem after a call that
		 * succeeded. */
		rc = ckpt_err__set(err, CKPT_ECORRUPT, "%s: not a regular file of shard size", path);
		goto fail;
	}
	s->file_size = (uint64_t)st.st_size;
	if ((rc = ckpt_io__pread_full(s->fd, buf, sizeof(buf), 0, err, path)) < 0)
		goto fail;
	if ((rc = ckpt_fmt__decode_header(&s->hdr, buf, sizeof(buf), err)) < 0)
		goto fail_in;
	if ((rc = ckpt_io__pread_full(s->fd, buf, CKPT_TRAILER_SIZE,
				      s->file_size - CKPT_TRAILER_SIZE, err, path)) < 0)
		goto fail;
	if ((rc = ckpt_fmt__decode_trailer(&s->trl, buf, CKPT_TRAILER_SIZE, err)) < 0)
		goto fail_in;
	rc = CKPT_ECORRUPT;
	if (s->trl.file_size != s->file_size) {
		ckpt_err__set(err, rc, "%s: file is %llu bytes, its trailer says %llu (truncated?)",
			      path, (unsigned long long)s->file_size,
			      (unsigned long long)s->trl.file_size);
		goto fail;
	}
	if (s->trl.save_id != s->hdr.save_id || s->trl.index_offset < s->hdr.data_offset ||
	    s->trl.index_offset > s->file_size - CKPT_TRAILER_SIZE ||
	    s->trl.index_size > s->file_size - CKPT_TRAILER_SIZE - s->trl.index_offset ||
	    s->trl.index_size > MAX_INDEX_SIZE) {
		ckpt_err__set(err, rc, "%s: trailer does not match the header or the file", path);
		goto fail;
	}
	if (!(index = malloc(s->trl.index_size ? s->trl.index_size : 1))) {
		rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory reading index of %s", path);
		goto fail;
	}
	if ((rc = ckpt_io__pread_full(s->fd, index, s->trl.index_size, s->trl.index_offset, err,
				      path)) < 0)
		goto fail;
	if (ckpt_codec__xxh3(index, s->trl.index_size) != s->trl.index_xxh3) {
		rc = ckpt_err__set(err, CKPT_ECORRUPT, "%s: index checksum mismatch", path);
		goto fail;
	}
	if ((rc = ckpt_fmt__decode_index(&s->idx, index, s->trl.index_size, s->hdr.nregions,
					 s->hdr.data_offset, s->trl.index_offset,
					 s->hdr.flags & CKPT_FLAG_COMPRESSED, err)) < 0)
		goto fail_in;
	free(index);
	*out = s;
	return CKPT_OK;
fail_in:
	in_file(err, rc, path);
fail:
	free(index);
	ckpt_shard__close(s);
	return rc;
}

void ckpt_shard__close(struct ckpt_shard *s)
{
	if (!s)
		return;
	if (s->fd >= 0)
		close(s->fd);
	ckpt_fmt__index_free(&s->idx);
	free(s);
}

static uint64_t max_stored(const struct ckpt_region_meta *r)
{
	uint64_t m = 0;

	for (uint32_t c = 0; c < r->nchunks; c++)
		if (r->chunks[c].stored_size > m)
			m = r->chunks[c].stored_size;
	return m;
}

/* Read chunk i of r into place and check it (ckpt_codec__check_chunk). A raw chunk is read straight
 * to dst; a compressed one into `stored` (room for its stored size) first. */
static int read_chunk(struct ckpt_shard *s, const struct ckpt_region_meta *r, uint32_t i,
		      uint8_t *stored, void *dst, struct ckpt_codec *codec, struct ckpt_hash *h,
		      struct ckpt_err *err)
{
	const struct ckpt_chunk *ch = &r->chunks[i];
	void *in = r->codec == CKPT_CODEC_NONE ? dst : stored;
	int rc;

	if ((rc = ckpt_io__pread_full(s->fd, in, ch->stored_size, ch->offset, err, s->path)) < 0)
		return rc;
	if ((rc = ckpt_codec__check_chunk(codec, r, i, in, dst, h, err)) < 0)
		return in_file(err, rc, s->path);
	return CKPT_OK;
}

/* An empty region has no chunk to check: its raw_xxh3 must still be that of zero bytes. */
static int check_empty(struct ckpt_shard *s, const struct ckpt_region_meta *r, struct ckpt_err *err)
{
	if (ckpt_codec__xxh3(NULL, 0) != r->raw_xxh3)
		return ckpt_err__set(err, CKPT_ECORRUPT, "%s: region '%s' checksum mismatch", s->path,
				     r->name);
	return CKPT_OK;
}

/*
 * Parallel decoding of one region (ckpt_load from the shared tier). Chunks are independent, so a
 * few threads (the caller among them) claim them in order from one counter and each one reads,
 * checks and decodes its chunk (ckpt_codec__check_chunk: stored hash, decompression, un-grouping)
 * straight into the caller's buffer at the chunk's offset. The region's XXH3 is one sequential
 * hash over the raw bytes: it is computed in chunk order while the others decode, by whichever
 * thread finds the next chunk in order decoded and nobody hashing (the hasher role passes
 * between threads under the lock), so that no hashing pass is left after the last chunk. One
 * thread alone (one chunk, one CPU) does exactly what the serial reader did.
 *
 * Errors are those of the serial reader, in the same order: a chunk that fails stops the claiming
 * of later chunks; every earlier chunk, already claimed, still finishes, and the failure reported
 * is that of the lowest chunk that failed, which is the one the serial reader would have met first.
 * The region checksum is compared only when every chunk decoded.
 */
#define READ_THREADS 4             /* at most, the caller included */
#define READ_MEMORY (64ull << 20)  /* per region read: stored bytes + scratch of every thread */

struct rjob {
	struct ckpt_shard *s;
	const struct ckpt_region_meta *r;
	uint8_t *buf;
	pthread_mutex_t mu;
	uint32_t next;      /* the next chunk to claim */
	uint32_t stop;      /* claim nothing from here on: the lowest failed chunk, or nchunks */
	uint32_t nhashed;   /* chunks hashed into h, in order */
	int hashing;        /* a thread holds the hasher role */
	uint8_t *done;      /* per chunk: decoded into buf */
	struct ckpt_hash *h;
	int rc;             /* of chunk `stop`, when it failed */
	struct ckpt_err err;
};

struct rworker {
	struct rjob *j;
	struct ckpt_codec *codec;
	uint8_t *stored;    /* one chunk's stored bytes (compressed regions) */
	pthread_t thread;
	struct ckpt_err err;
};

/* The CPUs this process may run on (its affinity mask: a container's cpuset), at least 1. */
static unsigned cpus(void)
{
	cpu_set_t set;
	long n;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

/* Hash, in order, every decoded chunk from j->nhashed on. Called with j->mu held by the thread
 * that took the hasher role; drops the lock while hashing. */
static void hash_in_order(struct rjob *j)
{
	while (j->nhashed < j->stop && j->done[j->nhashed]) {
		uint32_t c = j->nhashed;

		pthread_mutex_unlock(&j->mu);
		ckpt_codec__hash_update(j->h, j->buf + (uint64_t)c * j->r->chunk_raw,
					(size_t)ckpt_fmt__chunk_raw(j->r, c));
		pthread_mutex_lock(&j->mu);
		j->nhashed++;
	}
}

static void *rwork(void *arg)
{
	struct rworker *w = arg;
	struct rjob *j = w->j;

	pthread_mutex_lock(&j->mu);
	while (j->next < j->stop) {
		uint32_t c = j->next++;
		int rc;

		pthread_mutex_unlock(&j->mu);
		rc = read_chunk(j->s, j->r, c, w->stored, j->buf + (uint64_t)c * j->r->chunk_raw,
				w->codec, NULL, &w->err);
		pthread_mutex_lock(&j->mu);
		if (rc < 0) {
			if (c < j->stop) { /* the lowest failure wins: the serial reader's */
				j->stop = c;
				j->rc = rc;
				ckpt_err__copy(&j->err, &w->err);
			}
			continue;
		}
		j->done[c] = 1;
		if (!j->hashing) {
			j->hashing = 1;
			hash_in_order(j);
			j->hashing = 0;
		}
	}
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

int ckpt_shard__read_region(struct ckpt_shard *s, const struct ckpt_region_meta *r, void *buf,
			    struct ckpt_codec *codec, struct ckpt_err *err)
{
	struct rworker ws[READ_THREADS];
	struct rjob j;
	uint64_t stored_max = 0, per_thread;
	unsigned n, started = 1;
	int rc = CKPT_OK;

	if (!r->nchunks)
		return check_empty(s, r, err);
	if (r->codec != CKPT_CODEC_NONE && !codec)
		return ckpt_err__set(err, CKPT_EINVAL, "no codec to read %s", s->path);
	memset(&j, 0, sizeof(j));
	memset(ws, 0, sizeof(ws));
	j.s = s;
	j.r = r;
	j.buf = buf;
	j.stop = r->nchunks;
	if (r->codec != CKPT_CODEC_NONE)
		stored_max = max_stored(r);
	/* Threads: one per chunk, at most READ_THREADS and the CPUs we may use, and within
	 * READ_MEMORY of buffers (a thread holds one chunk's stored bytes and its codec's scratch
	 * of one raw chunk: 256 MiB chunks are read by one thread, as before). */
	per_thread = stored_max + (r->codec != CKPT_CODEC_NONE ? r->chunk_raw : 0);
	n = cpus();
	if (n > READ_THREADS)
		n = READ_THREADS;
	if (n > r->nchunks)
		n = r->nchunks;
	if (per_thread && n > READ_MEMORY / per_thread)
		n = READ_MEMORY / per_thread > 1 ? (unsigned)(READ_MEMORY / per_thread) : 1;
	pthread_mutex_init(&j.mu, NULL);
	if (ckpt_codec__hash_new(&j.h) < 0 || !(j.done = calloc(r->nchunks, 1)))
		goto nomem;
	for (unsigned t = 0; t < n; t++) {
		ws[t].j = &j;
		/* the caller's codec for the calling thread; each helper gets its own */
		if (t == 0)
			ws[t].codec = codec;
		else if (ckpt_codec__new(&ws[t].codec, 1) < 0)
			break; /* fewer threads: slower, not wrong */
		if (r->codec != CKPT_CODEC_NONE && !(ws[t].stored = malloc(stored_max + 1))) {
			if (t == 0)
				goto nomem;
			ckpt_codec__free(ws[t].codec);
			ws[t].codec = NULL;
			break;
		}
		if (t > 0 && pthread_create(&ws[t].thread, NULL, rwork, &ws[t]) != 0) {
			ckpt_codec__free(ws[t].codec);
			ws[t].codec = NULL;
			free(ws[t].stored);
			ws[t].stored = NULL;
			break;
		}
		if (t > 0)
			started++;
	}
	rwork(&ws[0]);
	for (unsigned t = 1; t < started; t++)
		pthread_join(ws[t].thread, NULL);
	if (j.stop < r->nchunks) {
		rc = j.rc;
		ckpt_err__copy(err, &j.err);
		goto out;
	}
	/* Every thread has left, and each one hashed what it found decoded before leaving: the
	 * region is hashed whole (a chunk left unhashed would be a bug, and a mismatch below). */
	assert(j.nhashed == r->nchunks);
	if (ckpt_codec__hash_digest(j.h) != r->raw_xxh3) {
		rc = ckpt_err__set(err, CKPT_ECORRUPT, "%s: region '%s' checksum mismatch", s->path,
				   r->name);
		goto out;
	}
	goto out;
nomem:
	rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory reading %s", s->path);
out:
	for (unsigned t = 0; t < started; t++) {
		if (t > 0)
			ckpt_codec__free(ws[t].codec);
		free(ws[t].stored);
	}
	ckpt_codec__hash_free(j.h);
	free(j.done);
	pthread_mutex_destroy(&j.mu);
	return rc;
}

int ckpt_shard__verify(struct ckpt_shard *s, struct ckpt_codec *codec, struct ckpt_err *err)
{
	struct ckpt_hash *h = NULL;
	uint8_t *raw = NULL, *stored = NULL;
	size_t cap = VERIFY_PIECE;
	int rc = CKPT_OK;

	if (ckpt_codec__hash_new(&h) < 0 || !(raw = malloc(cap))) {
		rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory verifying %s", s->path);
		goto out;
	}
	for (uint32_t i = 0; i < s->idx.nregions && rc == CKPT_OK; i++) {
		const struct ckpt_region_meta *r = &s->idx.regions[i];
		/* one chunk's raw bytes, never more than the region holds: a 100-byte region of a
		 * shard drained with chunk_size 256M needs 100 bytes, not 256 MiB */
		uint64_t need = r->chunk_raw < r->raw_size ? r->chunk_raw : r->raw_size;

		if (!r->nchunks) {
			rc = check_empty(s, r, err);
		} else if (r->codec == CKPT_CODEC_NONE) {
			/* A raw region is one chunk that may be larger than memory: the chunk check
			 * needs it whole, so it is streamed through a bounded buffer and hashed
			 * here instead (the check of a raw chunk is its raw_xxh3 alone). */
			ckpt_codec__hash_reset(h);
			for (uint64_t done = 0; done < r->raw_size && rc == CKPT_OK;) {
				size_t piece = r->raw_size - done < cap ? r->raw_size - done : cap;

				rc = ckpt_io__pread_full(s->fd, raw, piece, r->chunks[0].offset + done,
							 err, s->path);
				ckpt_codec__hash_update(h, raw, piece);
				done += piece;
			}
			if (rc == CKPT_OK && ckpt_codec__hash_digest(h) != r->raw_xxh3)
				rc = ckpt_err__set(err, CKPT_ECORRUPT,
						   "%s: region '%s' checksum mismatch", s->path,
						   r->name);
		} else if (!codec) {
			rc = ckpt_err__set(err, CKPT_EINVAL, "no codec to verify %s", s->path);
		} else {
			free(stored);
			if (!(stored = malloc(max_stored(r) + 1))) {
				rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory verifying %s",
						   s->path);
				break;
			}
			if (need > cap) {
				uint8_t *nr = realloc(raw, need);

				if (!nr) {
					rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory verifying %s",
							   s->path);
					break;
				}
				raw = nr;
				cap = need;
			}
			/* every chunk decodes into the same buffer: the region hash runs over them */
			for (uint32_t c = 0; c < r->nchunks && rc == CKPT_OK; c++)
				rc = read_chunk(s, r, c, stored, raw, codec, h, err);
		}
	}
out:
	ckpt_codec__hash_free(h);
	free(raw);
	free(stored);
	return rc;
}
