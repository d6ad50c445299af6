/* SPDX-License-Identifier: MIT */
/* zstd chunk compression, XXH3-64 checksums and the chunk check. Each chunk is independent (one
 * zstd frame, or one transform payload of xform.c), so chunks compress in parallel, in any order,
 * and any region decompresses without touching the others. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>

#include "ckpt.h"
#include "codec.h"
#include "xform.h"

/* The index (fmt) and the payload head (xform) name chunk transforms with the same numbers. */
_Static_assert(CKPT_XFORM_PLAIN == CKPT_CHUNK_XFORM_PLAIN, "chunk transform ids");
_Static_assert(CKPT_XFORM_BYTEGROUP == CKPT_CHUNK_XFORM_BYTEGROUP, "chunk transform ids");

struct ckpt_codec {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	int level;
	int xform;          /* encode_chunk writes transform payloads (ckpt_codec__set_transform) */
	unsigned hint;      /* element width hint: 0 detect, 1, 2, 4 or 8 */
	uint8_t *scratch;   /* grouped bytes of one chunk, encoding and decoding */
	size_t scratch_cap;
	void *sample;       /* ckpt_xform__choose_in's sample, allocated at the first transform */
};

/* A scratch buffer of at least n bytes (n > 0). */
static int scratch(struct ckpt_codec *c, size_t n, struct ckpt_err *err)
{
	uint8_t *p;

	if (c->scratch_cap >= n)
		return CKPT_OK;
	if (!(p = malloc(n)))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for a %zu-byte chunk", n);
	free(c->scratch);
	c->scratch = p;
	c->scratch_cap = n;
	return CKPT_OK;
}

void ckpt_codec__set_transform(struct ckpt_codec *c, int on, unsigned hint_width)
{
	c->xform = on;
	c->hint = hint_width;
}

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
	free(c->scratch);
	free(c->sample);
	free(c);
}

size_t ckpt_codec__bound(size_t raw)
{
	size_t z = ZSTD_compressBound(raw), x = ckpt_xform__bound(raw);

	return z > x ? z : x;
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
	struct ckpt_xform_plan plan;
	size_t stored;
	int rc;

	if (c->xform) {
		/* Chosen from this chunk's own bytes (docs/TRANSFORM.md 2): plain, raw or grouped. */
		if (!c->sample)
			c->sample = malloc(ckpt_xform__sample_size()); /* NULL: choose mallocs */
		ckpt_xform__choose_in(&plan, raw, n, c->hint, c->sample);
		if (n && (rc = scratch(c, n, err)) < 0)
			return rc;
		if ((rc = ckpt_xform__encode(dst, cap, &stored, raw, n, &plan, c->cctx, c->level,
					     c->scratch, err)) < 0)
			return rc;
		/* the payload's head says what the encoder did (it may store a chunk raw) */
		out->xform = ((const uint8_t *)dst)[0];
		out->width = ((const uint8_t *)dst)[1];
	} else {
		if ((rc = ckpt_codec__compress(c, dst, cap, raw, n, &stored, err)) < 0)
			return rc;
		out->xform = out->width = 0;
	}
	out->stored_size = stored;
	out->stored_xxh3 = XXH3_64bits(dst, stored);
	return CKPT_OK;
}

/* Decode the transform payload of chunk i (its stored hash already checked) into raw bytes. */
static int decode_payload(struct ckpt_codec *c, const struct ckpt_region_meta *r, uint32_t i,
			  const void *stored, void *dst, struct ckpt_err *err)
{
	const struct ckpt_chunk *ch = &r->chunks[i];
	size_t raw = (size_t)ckpt_fmt__chunk_raw(r, i);
	uint8_t xf = 0, w = 0;
	int rc;

	if (raw && (rc = scratch(c, raw, err)) < 0)
		return rc;
	if ((rc = ckpt_xform__decode(dst, raw, stored, (size_t)ch->stored_size, c->dctx,
				     c->scratch, &xf, &w, err)) < 0)
		return rc;
	/* the head repeats the index entry (docs/FORMAT.md 3.7): a mismatch is damage */
	if (xf != ch->xform || w != ch->width)
		return ckpt_err__set(err, CKPT_ECORRUPT,
				     "payload says transform %u width %u, the index %u width %u", xf,
				     w, ch->xform, ch->width);
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
		if (r->transform == CKPT_TRANSFORM_CHUNKS)
			rc = decode_payload(c, r, i, stored, dst, err);
		else
			rc = ckpt_codec__decompress(c, dst, raw, stored, ch->stored_size, err);
		if (rc < 0) {
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
