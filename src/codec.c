/* SPDX-License-Identifier: MIT */
/* zstd chunk compression and XXH3-64 checksums. Each chunk is one independent zstd frame, so
 * chunks compress in parallel and any region decompresses without touching the others. */
#include <stdlib.h>

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
