/* SPDX-License-Identifier: MIT */
/* The compressed (shared-tier) shard writer. The drain encodes chunks of a local shard on several
 * threads and hands each one here as soon as it is encoded, in any order; this file decides where
 * it goes (the next free offset), checks the raw bytes against each region's checksum (in plan
 * order, off the write path), encodes the header, the index and the trailer (through fmt) and
 * makes the file durable under its final name. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "shard.h"

void ckpt_shard__zabort(struct ckpt_zwriter *z)
{
	if (!z)
		return;
	if (z->fd >= 0)
		close(z->fd);
	z->fd = -1;
	/* By the step directory's descriptor, not by path: if the directory was renamed or moved
	 * away meanwhile, the temporary file went with it and its path names nothing (or something
	 * else); the descriptor still finds it. */
	if (z->tmp_base)
		unlinkat(z->dir_fd, z->tmp_base, 0);
	z->tmp_base = NULL;
}

void ckpt_shard__zclose(struct ckpt_zwriter *z)
{
	if (!z)
		return;
	ckpt_shard__zabort(z); /* still named tmp: not published */
	if (z->dir_fd >= 0)
		close(z->dir_fd);
	if (z->meta)
		for (uint32_t i = 0; i < z->nregions; i++)
			free(z->meta[i].chunks);
	free(z->meta);
	free(z->plan);
	ckpt_codec__hash_free(z->rhash);
	free(z);
}

/* The output index: the local shard's regions cut into chunks of cs raw bytes (the last chunk of
 * a region may be shorter), and the plan that visits those chunks in file order. */
static int plan(struct ckpt_zwriter *z, uint64_t cs, int transform, struct ckpt_err *err)
{
	const struct ckpt_index *idx = &z->src->idx;
	uint64_t n = 0;

	for (uint32_t i = 0; i < idx->nregions; i++)
		n += idx->regions[i].raw_size / cs + (idx->regions[i].raw_size % cs != 0);
	if (n > UINT32_MAX || ckpt_codec__hash_new(&z->rhash) < 0 ||
	    !(z->meta = calloc(idx->nregions ? idx->nregions : 1, sizeof(*z->meta))) ||
	    !(z->plan = calloc(n ? n : 1, sizeof(*z->plan))))
		goto nomem;
	z->nregions = idx->nregions;
	for (uint32_t i = 0; i < idx->nregions; i++) {
		const struct ckpt_region_meta *s = &idx->regions[i];
		struct ckpt_region_meta *m = &z->meta[i];

		*m = *s; /* name, sizes and raw_xxh3 stay; the chunking changes */
		m->codec = CKPT_CODEC_ZSTD;
		/* an empty region has no chunk to transform: it stays a version 1 entry */
		m->transform = (uint8_t)(s->raw_size ? transform : CKPT_TRANSFORM_NONE);
		m->chunk_raw = s->raw_size ? cs : 0;
		m->nchunks = (uint32_t)(s->raw_size / cs + (s->raw_size % cs != 0));
		m->chunks = NULL;
		if (m->nchunks && !(m->chunks = calloc(m->nchunks, sizeof(*m->chunks))))
			goto nomem;
		for (uint32_t c = 0; c < m->nchunks; c++)
			z->plan[z->nplan++] = (struct ckpt_zpiece){ i, c, s->chunks[0].offset + c * cs,
								    ckpt_fmt__chunk_raw(m, c) };
	}
	return CKPT_OK;
nomem:
	return ckpt_err__set(err, CKPT_ENOMEM, "out of memory planning the drain of step %llu",
			     (unsigned long long)z->src->hdr.step);
}

/* Remove what an earlier failed drain of this shard's rank, in this process, left in the step
 * directory because it could not (the volume had turned read-only, so the unlink of
 * ckpt_shard__zabort failed too). Only names of this host and this pid that end in this rank's
 * compressed shard name: one context per job rank per process (the rank lock), and this drain is
 * the rank's only one, so none of them is in use. Never another process's file. */
static void remove_own_leftovers(int dir_fd, const char *final_base)
{
	char prefix[128], rank_part[32];
	struct dirent *e;
	DIR *d;
	int fd;

	snprintf(prefix, sizeof(prefix), ".tmp.%s.%ld.", ckpt_store__hostname(), (long)getpid());
	/* final_base is "rank-RRRRRR-<save id>.ckz": keep "rank-RRRRRR-" */
	snprintf(rank_part, sizeof(rank_part), "%.12s", final_base);
	if (strncmp(rank_part, "rank-", 5) || strlen(rank_part) != 12 ||
	    (fd = dup(dir_fd)) < 0)
		return;
	if (!(d = fdopendir(fd))) {
		close(fd);
		return;
	}
	while ((e = readdir(d))) {
		const char *tail;
		size_t n = strlen(e->d_name);

		if (strncmp(e->d_name, prefix, strlen(prefix)) || n < 4 ||
		    strcmp(e->d_name + n - 4, ".ckz"))
			continue;
		/* .tmp.<host>.<pid>.<8 hex>.<final name>: the final name follows the random part */
		tail = e->d_name + strlen(prefix);
		if (strlen(tail) > 9 && tail[8] == '.' && !strncmp(tail + 9, rank_part, 12))
			unlinkat(dir_fd, e->d_name, 0);
	}
	closedir(d);
}

int ckpt_shard__zopen(struct ckpt_zwriter **out, const struct ckpt_shard *src, uint64_t chunk_size,
		      int transform, const char *stepdir, const char *final_base,
		      struct ckpt_err *err)
{
	struct ckpt_zwriter *z;
	struct ckpt_header h;
	uint8_t hbuf[CKPT_HEADER_SIZE];
	const char *base;
	int rc;

	*out = NULL;
	if (!(z = calloc(1, sizeof(*z))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for a shard writer");
	z->fd = -1;
	z->dir_fd = -1;
	z->src = src;
	snprintf(z->stepdir, sizeof(z->stepdir), "%s", stepdir);
	snprintf(z->final, sizeof(z->final), "%s", final_base);
	if ((rc = plan(z, chunk_size, transform, err)) < 0)
		goto fail;
	if ((rc = ckpt_store__tmp_path(z->tmp, sizeof(z->tmp), stepdir, final_base)) < 0) {
		ckpt_err__set(err, rc, "path too long under %s", stepdir);
		goto fail;
	}
	base = strrchr(z->tmp, '/') + 1; /* tmp_path is always "<stepdir>/<name>" */
	/* The step directory is held open (never through a symlink) so that a failed drain can
	 * remove its temporary file wherever the directory went meanwhile (ckpt_shard__zabort). */
	z->dir_fd = open(stepdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (z->dir_fd < 0) {
		rc = ckpt_err__errno(err, errno, "open %s", stepdir);
		goto fail;
	}
	remove_own_leftovers(z->dir_fd, final_base);
	/* Written under a temporary name: readers and the commit never look at .tmp.* files. */
	z->fd = openat(z->dir_fd, base, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (z->fd < 0) {
		rc = ckpt_err__errno(err, errno, "create %s", z->tmp);
		goto fail;
	}
	z->tmp_base = base;
	h = src->hdr;
	h.flags = CKPT_FLAG_COMPRESSED;
	h.data_offset = CKPT_HEADER_SIZE; /* chunks follow the header back to back */
	ckpt_fmt__encode_header(hbuf, &h);
	if ((rc = ckpt_io__pwrite_full(z->fd, hbuf, sizeof(hbuf), 0, err, z->tmp)) < 0)
		goto fail;
	z->off = CKPT_HEADER_SIZE;
	*out = z;
	return CKPT_OK;
fail:
	ckpt_shard__zclose(z);
	return rc;
}

int ckpt_shard__zwrite(struct ckpt_zwriter *z, uint32_t k, const struct ckpt_chunk *ch,
		       const void *stored, struct ckpt_err *err)
{
	const struct ckpt_zpiece *p = &z->plan[k];
	struct ckpt_region_meta *m = &z->meta[p->region];
	/* Chunks go back to back in the order they finish (docs/FORMAT.md 3.3: any order, no
	 * overlap); the index records where each one went. The only state writers share. */
	uint64_t off = __atomic_fetch_add(&z->off, ch->stored_size, __ATOMIC_RELAXED);
	int rc;

	if ((rc = ckpt_io__pwrite_full(z->fd, stored, ch->stored_size, off, err, z->tmp)) < 0)
		return rc;
#ifdef SYNC_FILE_RANGE_WRITE
	/* Start writing this chunk back now, without waiting: the device works while the drain
	 * compresses the next chunks, instead of all at once in ckpt_shard__zfinish's fsync, which
	 * stays the durability point (this call is advisory and reports no durable state). */
	sync_file_range(z->fd, (off_t)off, (off_t)ch->stored_size, SYNC_FILE_RANGE_WRITE);
#endif
	m->chunks[p->chunk] = (struct ckpt_chunk){ off, ch->stored_size, ch->stored_xxh3,
						   m->transform ? ch->xform : 0,
						   m->transform ? ch->width : 0 };
	return CKPT_OK;
}

int ckpt_shard__zhash(struct ckpt_zwriter *z, const void *raw, struct ckpt_err *err)
{
	const struct ckpt_zpiece *p = &z->plan[z->next];
	const struct ckpt_region_meta *m = &z->meta[p->region];

	/* The region checksum is one sequential hash: that is why pieces come here in order. */
	if (p->chunk == 0)
		ckpt_codec__hash_reset(z->rhash);
	ckpt_codec__hash_update(z->rhash, raw, p->raw);
	if (p->chunk + 1 == m->nchunks && ckpt_codec__hash_digest(z->rhash) != m->raw_xxh3)
		/* The local copy changed since it was saved: never publish bad data as good. */
		return ckpt_err__set(err, CKPT_ECORRUPT,
				     "%s: region '%s' checksum mismatch; step %llu not drained",
				     z->src->path, m->name, (unsigned long long)z->src->hdr.step);
	z->next++;
	return CKPT_OK;
}

int ckpt_shard__zfinish(struct ckpt_zwriter *z, const char *fault_kill_at,
			struct ckpt_manifest_rank *out, struct ckpt_err *err)
{
	size_t isz = ckpt_fmt__index_size(z->meta, z->nregions);
	struct ckpt_trailer t;
	uint8_t *buf;
	int rc;

	if (!(buf = malloc(isz + CKPT_TRAILER_SIZE)))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for the index of %s", z->tmp);
	ckpt_fmt__encode_index(buf, z->meta, z->nregions);
	t = (struct ckpt_trailer){ z->off, isz, ckpt_codec__xxh3(buf, isz), z->src->trl.raw_total,
				   z->off + isz + CKPT_TRAILER_SIZE, z->src->hdr.save_id };
	ckpt_fmt__encode_trailer(buf + isz, &t);
	rc = ckpt_io__pwrite_full(z->fd, buf, isz + CKPT_TRAILER_SIZE, z->off, err, z->tmp);
	free(buf);
	if (rc < 0)
		return rc;
	/* (the crash points keep the names they had when this code lived in the drain) */
	ckpt_config__fault(fault_kill_at, "drain.written");
	/* 1. fsync the shard: its bytes are durable before it gets its final name */
	if (fsync(z->fd) < 0)
		return ckpt_err__errno(err, errno, "fsync %s", z->tmp);
	close(z->fd);
	z->fd = -1;
	/* 2. rename + fsync(dir): the shard is durable under its final name. It is not yet part of
	 *    any committed step: only a MANIFEST naming its save id makes it visible. */
	if ((rc = ckpt_store__publish(z->tmp, z->stepdir, z->final, err)) < 0)
		return rc;
	z->tmp_base = NULL;
	ckpt_config__fault(fault_kill_at, "drain.published");
	*out = (struct ckpt_manifest_rank){ t.file_size, t.index_xxh3, t.raw_total, z->nregions };
	return CKPT_OK;
}
