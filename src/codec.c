/* SPDX-License-Identifier: MIT */
/* zstd chunk compression, XXH3-64 checksums and the chunk check. Each chunk is one independent
 * zstd frame, so chunks compress in parallel and any region decompresses without touching the
 * others. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>

#include "ckpt.h"
#include "codec.h"

struct ckpt_codec {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	int level;
};

int ckpt_codec__new(struct ckpt_codec **out, int level)
{
	struct ckpt_codec *c;

	*out = NULL;
	if (!(c = calloc(1, sizeof(*c))))
		return CKPT_ENOMEM;
	c->level = level;
	c->cctx = ZSTD_createCCtx();
	c->dctx = ZSTD_createDCtx();
	if (!c->cctx || !c->dctx) {
		ckpt_codec__free(c);
		return CKPT_ENOMEM;
	}
	*out = c;
	return CKPT_OK;
}

void ckpt_codec__free(struct ckpt_codec *c)
{
	if (!c)
		return;
	ZSTD_freeCCtx(c->cctx);
	ZSTD_freeDCtx(c->dctx);
	free(c);
}

size_t ckpt_codec__bound(size_t raw)
{
	return ZSTD_compressBound(raw);
}

int ckpt_codec__compress(struct ckpt_codec *c, void *dst, size_t cap, const void *src, size_t n,
			 size_t *out_size, struct ckpt_err *err)
{
	/* The frame records its content size and a zstd checksum is not needed: the chunk's XXH3
	 * in the index covers the stored bytes, and the region's XXH3 covers the raw bytes. */
	size_t r = ZSTD_compressCCtx(c->cctx, dst, cap, src, n, c->level);

	if (ZSTD_isError(r))
		return ckpt_err__set(err, CKPT_EIO, "zstd compression failed: %s",
				     ZSTD_getErrorName(r));
	*out_size = r;
	return CKPT_OK;
}

int ckpt_codec__decompress(struct ckpt_codec *c, void *dst, size_t raw, const void *src, size_t n,
			   struct ckpt_err *err)
{
	size_t r = ZSTD_decompressDCtx(c->dctx, dst, raw, src, n);

	if (ZSTD_isError(r))
		return ckpt_err__set(err, CKPT_ECORRUPT, "zstd decompression failed: %s",
				     ZSTD_getErrorName(r));
	if (r != raw)
		return ckpt_err__set(err, CKPT_ECORRUPT,
				     "chunk decompressed to %zu bytes, index says %zu", r, raw);
	return CKPT_OK;
}

uint64_t ckpt_codec__xxh3(const void *p, size_t n)
{
	return XXH3_64bits(p, n);
}

struct ckpt_hash {
	XXH3_state_t *st;
};

int ckpt_codec__hash_new(struct ckpt_hash **out)
{
	struct ckpt_hash *h;

	*out = NULL;
	if (!(h = malloc(sizeof(*h))))
		return CKPT_ENOMEM;
	if (!(h->st = XXH3_createState())) {
		free(h);
		return CKPT_ENOMEM;
	}
	XXH3_64bits_reset(h->st);
	*out = h;
	return CKPT_OK;
}

void ckpt_codec__hash_free(struct ckpt_hash *h)
{
	if (!h)
		return;
	XXH3_freeState(h->st);
	free(h);
}

void ckpt_codec__hash_reset(struct ckpt_hash *h)
{
	XXH3_64bits_reset(h->st);
}

void ckpt_codec__hash_update(struct ckpt_hash *h, const void *p, size_t n)
{
	XXH3_64bits_update(h->st, p, n);
}

uint64_t ckpt_codec__hash_digest(const struct ckpt_hash *h)
{
	return XXH3_64bits_digest(h->st);
}

int ckpt_codec__encode_chunk(struct ckpt_codec *c, void *dst, size_t cap, const void *raw,
			     size_t n, struct ckpt_chunk *out, struct ckpt_err *err)
{
	size_t stored;
	int rc;

	if ((rc = ckpt_codec__compress(c, dst, cap, raw, n, &stored, err)) < 0)
		return rc;
	out->stored_size = stored;
	out->stored_xxh3 = XXH3_64bits(dst, stored);
	return CKPT_OK;
}

int ckpt_codec__check_chunk(struct ckpt_codec *c, const struct ckpt_region_meta *r, uint32_t i,
			    const void *stored, void *dst, struct ckpt_hash *region,
			    struct ckpt_err *err)
{
	const struct ckpt_chunk *ch = &r->chunks[i];
	uint64_t raw = ckpt_fmt__chunk_raw(r, i);
	int rc;

	if (r->codec == CKPT_CODEC_NONE) {
		/* A local shard's region is one chunk of raw bytes. Its stored_xxh3 equals raw_xxh3,
		 * and the format has readers check raw_xxh3 (below), so it is hashed once. */
		if (ch->stored_size != raw)
			return ckpt_err__set(err, CKPT_ECORRUPT,
					     "region '%s' chunk %u: %llu bytes stored for %llu raw",
					     r->name, i, (unsigned long long)ch->stored_size,
					     (unsigned long long)raw);
		if (dst != stored)
			memcpy(dst, stored, raw);
	} else {
		if (!c)
			return ckpt_err__set(err, CKPT_EINVAL, "region '%s': no codec to decode it",
					     r->name);
		/* The stored bytes are checked before the decompressor sees them: zstd is never fed
		 * damaged input, and the message can say which chunk of which region is bad. */
		if (XXH3_64bits(stored, ch->stored_size) != ch->stored_xxh3)
			return ckpt_err__set(err, CKPT_ECORRUPT,
					     "region '%s' chunk %u checksum mismatch", r->name, i);
		if ((rc = ckpt_codec__decompress(c, dst, raw, stored, ch->stored_size, err)) < 0) {
			char msg[CKPT_ERRMSG_MAX];

			snprintf(msg, sizeof(msg), "%s", err ? err->msg : "");
			return ckpt_err__set(err, rc, "region '%s' chunk %u: %s", r->name, i, msg);
		}
	}
	if (!region)
		return CKPT_OK;
	if (i == 0)
		ckpt_codec__hash_reset(region);
	ckpt_codec__hash_update(region, dst, raw);
	if (i + 1 == r->nchunks && ckpt_codec__hash_digest(region) != r->raw_xxh3)
		return ckpt_err__set(err, CKPT_ECORRUPT, "region '%s' checksum mismatch", r->name);
	return CKPT_OK;
}
