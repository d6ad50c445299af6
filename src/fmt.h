/* SPDX-License-Identifier: MIT */
/* On-disk layout of shard files and manifests: encode/decode pure buffers, no I/O.
 * docs/FORMAT.md is the specification; this code follows it byte for byte. */
#ifndef CKPT_FMT_H
#define CKPT_FMT_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define CKPT_FMT_VERSION 1
#define CKPT_HEADER_SIZE 64
#define CKPT_TRAILER_SIZE 64
#define CKPT_ALIGN 4096            /* local shards: data offsets and file size */
#define CKPT_REGION_ENTRY_SIZE 40  /* fixed part of an index region entry */
#define CKPT_CHUNK_ENTRY_SIZE 24    /* a chunk entry of a transform 0 region */
#define CKPT_CHUNK_ENTRY_SIZE_X 32  /* a chunk entry of a transform 1 region (xform, width) */
#define CKPT_MANIFEST_HEAD 48
#define CKPT_MANIFEST_RANK 32
#define CKPT_MAX_REGIONS (1u << 20)
#define CKPT_MAX_RANKS (1u << 24)
#define CKPT_MAX_CHUNK_RAW (1ull << 30) /* bound on one compressed chunk's raw size */

#define CKPT_FLAG_COMPRESSED 1u    /* header flag: shared-tier shard (zstd chunks) */

enum ckpt_codec_id { CKPT_CODEC_NONE = 0, CKPT_CODEC_ZSTD = 1 };
/* Chunk entry byte 24 of a transform 1 region: the chunk's transform, equal to the payload's
 * first byte (codec module, xform.h: CKPT_XFORM_PLAIN and CKPT_XFORM_BYTEGROUP, which xform.c
 * checks against these). Pinned forever. */
#define CKPT_CHUNK_XFORM_PLAIN 1
#define CKPT_CHUNK_XFORM_BYTEGROUP 2

/* Region entry byte 2 (docs/FORMAT.md 3.4). Pinned forever. */
enum ckpt_transform {
	CKPT_TRANSFORM_NONE = 0,  /* 24-byte chunk entries; a chunk is a zstd frame or raw bytes */
	CKPT_TRANSFORM_CHUNKS = 1 /* 32-byte chunk entries; a chunk is a transform payload (xform.h) */
};

struct ckpt_header {
	uint32_t version;
	uint32_t flags;
	uint64_t step;
	uint64_t save_id;
	uint32_t rank;
	uint32_t nranks;
	uint32_t nregions;
	uint32_t data_offset;
	uint64_t created_ns;
};

struct ckpt_chunk {
	uint64_t offset;      /* in the file */
	uint64_t stored_size; /* bytes in the file */
	uint64_t stored_xxh3; /* XXH3-64 of the stored bytes */
	uint8_t xform;        /* transform 1 regions: the payload's transform (CKPT_XFORM_*) */
	uint8_t width;        /* and its element width; both 0 in a transform 0 region */
};

struct ckpt_region_meta {
	char name[256];
	uint16_t name_len;
	uint8_t transform;
	uint8_t codec;
	uint32_t nchunks;
	uint64_t raw_size;
	uint64_t raw_xxh3;    /* XXH3-64 of the whole uncompressed region */
	uint64_t chunk_raw;   /* raw bytes per chunk (the last one may hold fewer) */
	struct ckpt_chunk *chunks;
};

struct ckpt_trailer {
	uint64_t index_offset;
	uint64_t index_size;
	uint64_t index_xxh3;
	uint64_t raw_total;
	uint64_t file_size;
	uint64_t save_id;
};

/* A parsed index: regions and their chunks, owned together. */
struct ckpt_index {
	uint32_t nregions;
	struct ckpt_region_meta *regions;
};

struct ckpt_manifest_rank {
	uint64_t file_size;
	uint64_t index_xxh3;
	uint64_t raw_bytes;
	uint32_t nregions;
};

struct ckpt_manifest {
	uint32_t version;
	uint32_t nranks;
	uint64_t step;
	uint64_t save_id;
	uint64_t created_ns;
	struct ckpt_manifest_rank *ranks; /* nranks entries, owned */
};

void ckpt_fmt__encode_header(uint8_t out[CKPT_HEADER_SIZE], const struct ckpt_header *h);
int ckpt_fmt__decode_header(struct ckpt_header *h, const uint8_t *buf, size_t len,
			    struct ckpt_err *err);

void ckpt_fmt__encode_trailer(uint8_t out[CKPT_TRAILER_SIZE], const struct ckpt_trailer *t);
int ckpt_fmt__decode_trailer(struct ckpt_trailer *t, const uint8_t *buf, size_t len,
			     struct ckpt_err *err);

/* Size in bytes of the encoded index of these regions. */
size_t ckpt_fmt__index_size(const struct ckpt_region_meta *r, uint32_t n);
/* Encode into out (index_size bytes). */
void ckpt_fmt__encode_index(uint8_t *out, const struct ckpt_region_meta *r, uint32_t n);
/*
 * Decode and validate an index of `nregions` regions against the data area
 * [data_start, data_end) of a file: every chunk lies inside it, chunk counts match sizes, names
 * are 1..255 bytes without NUL and unique. `compressed` says which tier's rules apply.
 */
int ckpt_fmt__decode_index(struct ckpt_index *out, const uint8_t *buf, size_t len,
			   uint32_t nregions, uint64_t data_start, uint64_t data_end,
			   int compressed, struct ckpt_err *err);
void ckpt_fmt__index_free(struct ckpt_index *idx);
/* Region `name`, or NULL. */
const struct ckpt_region_meta *ckpt_fmt__find_region(const struct ckpt_index *idx,
						     const char *name);
/* Bytes of one chunk entry of r (24 or 32, by r->transform). */
size_t ckpt_fmt__chunk_entry_size(const struct ckpt_region_meta *r);
/* Raw bytes of chunk i of r. */
uint64_t ckpt_fmt__chunk_raw(const struct ckpt_region_meta *r, uint32_t i);

size_t ckpt_fmt__manifest_size(uint32_t nranks);
void ckpt_fmt__encode_manifest(uint8_t *out, const struct ckpt_manifest *m);
int ckpt_fmt__decode_manifest(struct ckpt_manifest *m, const uint8_t *buf, size_t len,
			      struct ckpt_err *err);
void ckpt_fmt__manifest_free(struct ckpt_manifest *m);

/* Little-endian helpers (also used by tests and tools). */
void ckpt_fmt__put64(uint8_t *p, uint64_t v);
void ckpt_fmt__put32(uint8_t *p, uint32_t v);
uint64_t ckpt_fmt__get64(const uint8_t *p);
uint32_t ckpt_fmt__get32(const uint8_t *p);

#endif
