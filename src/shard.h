/* SPDX-License-Identifier: MIT */
/* Shard files: the full-speed local writer (shard_local.c), the compressed shared-tier writer that
 * the drain feeds (shard_shared.c), and the verifying reader of both tiers (shard_read.c). */
#ifndef CKPT_SHARD_H
#define CKPT_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"
#include "codec.h"
#include "fmt.h"
#include "io.h"
#include "store.h"

/* Aligned bounce buffers and the io queue used by ckpt_save (one set per context). */
struct ckpt_writer {
	struct ckpt_io *io;
	void **bufs;        /* io->depth buffers of bufsize bytes, CKPT_ALIGN-aligned */
	size_t bufsize;
	struct ckpt_hash *hash; /* of the region being written */
};

int ckpt_shard__writer_new(struct ckpt_writer **out, enum ckpt_backend backend, unsigned depth,
			   struct ckpt_err *err);
void ckpt_shard__writer_free(struct ckpt_writer *w);

/*
 * Write one raw local shard durably as stepdir/final_base:
 * O_DIRECT writes (several in flight) of a header block, each region at a CKPT_ALIGN offset, and
 * an index block ending in the trailer; fdatasync; rename from a temporary name; fsync stepdir.
 * XXH3 of each region is computed while it is written. h->nregions must equal n.
 * On failure nothing is left under final_base (the temporary file is removed).
 */
int ckpt_shard__write_local(struct ckpt_writer *w, const char *stepdir, const char *final_base,
			    const struct ckpt_header *h, const ckpt_region *regs, size_t n,
			    const char *fault_kill_at, struct ckpt_err *err);

/* ckpt_shard__write_local for staged regions (snapshot mode, stage.c): each regs[i].data is
 * CKPT_ALIGN-aligned with its bytes up to the next CKPT_ALIGN multiple zeroed, and stays unchanged
 * until the call returns; it is written from there (O_DIRECT) without a bounce copy. Where
 * hashed[i] is set (hashed may be NULL), xxh3[i] is region i's XXH3-64, computed as it was staged;
 * the others are hashed here before they are written. Same file, same durability steps and crash
 * points as ckpt_shard__write_local. */
int ckpt_shard__write_staged(struct ckpt_writer *w, const char *stepdir, const char *final_base,
			     const struct ckpt_header *h, const ckpt_region *regs, size_t n,
			     const uint64_t *xxh3, const unsigned char *hashed,
			     const char *fault_kill_at, struct ckpt_err *err);

/* An open, structurally validated shard (header, trailer and index checksums verified). */
struct ckpt_shard {
	int fd;
	uint64_t file_size;
	struct ckpt_header hdr;
	struct ckpt_trailer trl;
	struct ckpt_index idx;
	char path[CKPT_PATH_MAX];
};

int ckpt_shard__open(struct ckpt_shard **out, const char *path, struct ckpt_err *err);
void ckpt_shard__close(struct ckpt_shard *s);
/* Read region r into buf (r->raw_size bytes), verifying every chunk checksum (compressed tier)
 * and the region checksum. codec may be NULL for a raw shard. */
int ckpt_shard__read_region(struct ckpt_shard *s, const struct ckpt_region_meta *r, void *buf,
			    struct ckpt_codec *codec, struct ckpt_err *err);
/* Verify every checksum of every region (reads all data). */
int ckpt_shard__verify(struct ckpt_shard *s, struct ckpt_codec *codec, struct ckpt_err *err);

/*
 * The compressed (shared-tier) writer: a shard drained from the local shard `src`, its regions cut
 * into chunks of chunk_size raw bytes. The plan lists the chunks in the order they must be
 * appended, with where each one's raw bytes are in `src`; the caller (the drain) reads and
 * compresses them on any thread (ckpt_codec__encode_chunk) and appends them one at a time, in
 * plan order. Not thread-safe: the caller serializes every call on one writer.
 */
struct ckpt_zpiece {
	uint32_t region, chunk;
	uint64_t src_off;           /* where the chunk's raw bytes are in src */
	uint64_t raw;               /* how many */
};

struct ckpt_zwriter {
	const struct ckpt_shard *src; /* borrowed: outlives the writer */
	struct ckpt_zpiece *plan;
	uint32_t nplan;
	uint32_t next;              /* the piece the next ckpt_shard__zappend writes */
	struct ckpt_region_meta *meta; /* the output index, filled in as chunks land */
	uint32_t nregions;
	struct ckpt_hash *rhash;    /* raw bytes of the region being appended */
	uint64_t off;               /* where the next chunk goes */
	int fd;
	int dir_fd;                 /* the step directory, held open */
	char stepdir[CKPT_PATH_MAX];
	char final[64];
	char tmp[CKPT_PATH_MAX];    /* the file's path while it is named .tmp.* */
	const char *tmp_base;       /* its last component; NULL once published or never created */
};

/* Plan the shard and create it under a temporary name in stepdir (an existing real directory) with
 * its header written. On failure nothing is left in stepdir. */
int ckpt_shard__zopen(struct ckpt_zwriter **out, const struct ckpt_shard *src, uint64_t chunk_size,
		      const char *stepdir, const char *final_base, struct ckpt_err *err);
/* Append the next piece of the plan: ch (stored_size, stored_xxh3, as ckpt_codec__encode_chunk
 * gave them) and its stored bytes, and the piece's raw bytes, hashed into its region's checksum.
 * At a region's last chunk that checksum must equal the local shard's: CKPT_ECORRUPT otherwise
 * (the local copy changed since it was saved). */
int ckpt_shard__zappend(struct ckpt_zwriter *z, const struct ckpt_chunk *ch, const void *stored,
			const void *raw, struct ckpt_err *err);
/* After the last piece: write index and trailer, fsync, rename to final_base, fsync stepdir. The
 * shard is then durable but not committed; *out gets its MANIFEST entry. Crash points
 * "drain.written" and "drain.published" (docs/FORMAT.md). */
int ckpt_shard__zfinish(struct ckpt_zwriter *z, const char *fault_kill_at,
			struct ckpt_manifest_rank *out, struct ckpt_err *err);
/* Close the file and remove it unless published; the writer stays valid for ckpt_shard__zclose. */
void ckpt_shard__zabort(struct ckpt_zwriter *z);
/* ckpt_shard__zabort, then free. NULL-safe. */
void ckpt_shard__zclose(struct ckpt_zwriter *z);

#endif
