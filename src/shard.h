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

/* Called by ckpt_shard__write_local_stream for the bytes of region i from offset `off` on (0, then
 * the end of what it returned last): block until some are final, set *p and *len (> 0) to them,
 * valid until the next call. Once the region is whole and its bytes hash to the XXH3 given for it,
 * *len = 0 (also for an empty region, whose checksum is still checked). A negative return (a
 * CKPT_E* code, err set) aborts the write: the temporary file is removed and the code returned,
 * with err as the callback set it. */
typedef int (*ckpt_shard_next_fn)(void *arg, size_t i, uint64_t off, const void **p, size_t *len,
				  struct ckpt_err *err);

/* A local shard of regions that arrive piece by piece (the restore tool decodes while it writes):
 * regs[i] gives each region's name and size (data unused), xxh3[i] its XXH3-64, not computed
 * again here: next() vouches for it. The same file as ckpt_shard__write_local, byte for byte,
 * written with buffered pwrite from next()'s pieces; renamed only after next() has verified every
 * region, with the same crash points. durable: fdatasync before the rename, fsync of stepdir
 * after, as ckpt_save. Not durable: neither; the file is a cache copy of a step durable elsewhere
 * (committed on the shared tier), written back by the kernel after the call returns.
 * On failure nothing is left under final_base (the temporary file is removed). */
int ckpt_shard__write_local_stream(const char *stepdir, const char *final_base,
				   const struct ckpt_header *h, const ckpt_region *regs, size_t n,
				   const uint64_t *xxh3, ckpt_shard_next_fn next, void *next_arg,
				   int durable, const char *fault_kill_at, struct ckpt_err *err);

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
 * and the region checksum. codec may be NULL for a raw shard. A region of several chunks is
 * decoded on up to 4 threads (the caller one of them, codec its codec; see shard_read.c); the
 * error reported is that of the first damaged chunk. */
int ckpt_shard__read_region(struct ckpt_shard *s, const struct ckpt_region_meta *r, void *buf,
			    struct ckpt_codec *codec, struct ckpt_err *err);
/* Verify every checksum of every region (reads all data). */
int ckpt_shard__verify(struct ckpt_shard *s, struct ckpt_codec *codec, struct ckpt_err *err);

/*
 * The compressed (shared-tier) writer: a shard drained from the local shard `src`, its regions cut
 * into chunks of chunk_size raw bytes. The plan lists the chunks, with where each one's raw bytes
 * are in `src`; the caller (the drain) reads and encodes them on any thread
 * (ckpt_codec__encode_chunk) and writes each one as soon as it is encoded, in any order
 * (ckpt_shard__zwrite, thread-safe); it also hands every piece's raw bytes to ckpt_shard__zhash in
 * plan order, one call at a time, so that each region's checksum is checked against the local
 * shard's before the shard is published.
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
	uint32_t next;              /* the piece the next ckpt_shard__zhash expects */
	struct ckpt_region_meta *meta; /* the output index, filled in as chunks land */
	uint32_t nregions;
	struct ckpt_hash *rhash;    /* raw bytes of the region being hashed */
	uint64_t off;               /* where the next chunk goes (atomic: ckpt_shard__zwrite) */
	int fd;
	int dir_fd;                 /* the step directory, held open */
	char stepdir[CKPT_PATH_MAX];
	char final[64];
	char tmp[CKPT_PATH_MAX];    /* the file's path while it is named .tmp.* */
	const char *tmp_base;       /* its last component; NULL once published or never created */
};

/* Plan the shard and create it under a temporary name in stepdir (an existing real directory) with
 * its header written. transform: CKPT_TRANSFORM_NONE (every chunk one zstd frame, 24-byte chunk
 * entries: a version 1 file that older readers read) or CKPT_TRANSFORM_CHUNKS (transform payloads,
 * 32-byte entries; docs/FORMAT.md 3.4). Empty regions keep transform 0 (they have no chunk). On
 * failure nothing is left in stepdir. */
int ckpt_shard__zopen(struct ckpt_zwriter **out, const struct ckpt_shard *src, uint64_t chunk_size,
		      int transform, const char *stepdir, const char *final_base,
		      struct ckpt_err *err);
/* Write piece k of the plan: ch (stored_size, stored_xxh3, xform and width, as
 * ckpt_codec__encode_chunk gave them) and its stored bytes, at the next free offset of the data
 * area. Any order, from any thread, each piece once. */
int ckpt_shard__zwrite(struct ckpt_zwriter *z, uint32_t k, const struct ckpt_chunk *ch,
		       const void *stored, struct ckpt_err *err);
/* Hash the raw bytes of the next piece (z->next) into its region's checksum. At a region's last
 * chunk that checksum must equal the local shard's: CKPT_ECORRUPT otherwise (the local copy
 * changed since it was saved). Plan order, one thread at a time. */
int ckpt_shard__zhash(struct ckpt_zwriter *z, const void *raw, struct ckpt_err *err);
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
