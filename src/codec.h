/* SPDX-License-Identifier: MIT */
/* Chunks as the shard index describes them: zstd compression, XXH3-64 checksums, and the one
 * chunk check that every reader applies. Pure buffers, no I/O: callers read and write the bytes. */
#ifndef CKPT_CODEC_H
#define CKPT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "fmt.h"

struct ckpt_codec; /* per-thread compression and decompression contexts */

int ckpt_codec__new(struct ckpt_codec **out, int level);
void ckpt_codec__free(struct ckpt_codec *c);
/* Chunk transforms (docs/FORMAT.md 3.8): on, ckpt_codec__encode_chunk writes a transform payload
 * chosen from each chunk's bytes (the region then has transform 1); off (the default), one plain
 * zstd frame. hint_width: 0 detects the element width, 1, 2, 4 or 8 imposes it. */
void ckpt_codec__set_transform(struct ckpt_codec *c, int on, unsigned hint_width);
/* Worst-case stored size of a chunk of `raw` bytes (plain or transformed). */
size_t ckpt_codec__bound(size_t raw);
/* Compress src into dst (cap bytes); *out_size gets the compressed size. */
int ckpt_codec__compress(struct ckpt_codec *c, void *dst, size_t cap, const void *src, size_t n,
			 size_t *out_size, struct ckpt_err *err);
/* Decompress exactly `raw` bytes from one chunk; anything else is CKPT_ECORRUPT. */
int ckpt_codec__decompress(struct ckpt_codec *c, void *dst, size_t raw, const void *src, size_t n,
			   struct ckpt_err *err);

/* XXH3-64 (seed 0) of n bytes: the checksum of every chunk and region (docs/FORMAT.md 1). */
uint64_t ckpt_codec__xxh3(const void *p, size_t n);

/* A running XXH3-64 over bytes handed in pieces, in order (a region's raw bytes, chunk by chunk):
 * its digest equals ckpt_codec__xxh3 of the pieces joined. One thread at a time. */
struct ckpt_hash;
/* CKPT_OK, or CKPT_ENOMEM. The new hash is reset. */
int ckpt_codec__hash_new(struct ckpt_hash **out);
void ckpt_codec__hash_free(struct ckpt_hash *h); /* NULL-safe */
void ckpt_codec__hash_reset(struct ckpt_hash *h);
void ckpt_codec__hash_update(struct ckpt_hash *h, const void *p, size_t n);
uint64_t ckpt_codec__hash_digest(const struct ckpt_hash *h);

/*
 * Encode one chunk of a compressed shard: compress the n raw bytes into dst (cap bytes, at least
 * ckpt_codec__bound(n)) and fill in out->stored_size, out->stored_xxh3 (the XXH3-64 of the stored
 * bytes), and out->xform and out->width (the chunk transform of the payload; 0 without
 * transforms). out->offset, where the chunk goes in the file, is the writer's to set.
 */
int ckpt_codec__encode_chunk(struct ckpt_codec *c, void *dst, size_t cap, const void *raw,
			     size_t n, struct ckpt_chunk *out, struct ckpt_err *err);

/*
 * The chunk check (docs/FORMAT.md 3.7, check 6), for chunk i of region r of a decoded index, whose
 * r->chunks[i].stored_size stored bytes the caller has read into `stored`:
 *   1. a compressed chunk: XXH3-64 of the stored bytes against the entry's stored_xxh3, before
 *      the decompressor sees them; then decompression to exactly ckpt_fmt__chunk_raw(r, i) bytes
 *      at dst (dst != stored): one zstd frame, or in a transform 1 region a transform payload,
 *      decoded and un-grouped (its head must repeat the entry's xform and width). A raw chunk (CKPT_CODEC_NONE, local shards): its stored bytes are the raw bytes,
 *      copied to dst unless dst == stored.
 *   2. the raw bytes go into `region`, the running hash of r's raw bytes (reset at chunk 0, so
 *      chunks must come in order), and after the last chunk its digest is compared with
 *      r->raw_xxh3. NULL: the raw bytes are not hashed here, for a caller that decodes chunks
 *      out of order and hashes the region itself (ckpt_codec__hash_*), as tools/tool_read.c does.
 * codec may be NULL for a raw region. CKPT_OK; CKPT_ECORRUPT with "region 'NAME' chunk I ..." or
 * "region 'NAME' checksum mismatch" in err (callers prefix the file's path); CKPT_EINVAL when a
 * compressed region comes without a codec.
 */
int ckpt_codec__check_chunk(struct ckpt_codec *c, const struct ckpt_region_meta *r, uint32_t i,
			    const void *stored, void *dst, struct ckpt_hash *region,
			    struct ckpt_err *err);

#endif
