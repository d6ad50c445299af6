/* SPDX-License-Identifier: MIT */
/* zstd compression of chunks and XXH3 checksums: pure buffers, no I/O. */
#ifndef CKPT_CODEC_H
#define CKPT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct ckpt_codec; /* per-thread compression and decompression contexts */

int ckpt_codec__new(struct ckpt_codec **out, int level);
void ckpt_codec__free(struct ckpt_codec *c);
/* Worst-case compressed size of `raw` bytes. */
size_t ckpt_codec__bound(size_t raw);
/* Compress src into dst (cap bytes); *out_size gets the compressed size. */
int ckpt_codec__compress(struct ckpt_codec *c, void *dst, size_t cap, const void *src, size_t n,
			 size_t *out_size, struct ckpt_err *err);
/* Decompress exactly `raw` bytes from one chunk; anything else is CKPT_ECORRUPT. */
int ckpt_codec__decompress(struct ckpt_codec *c, void *dst, size_t raw, const void *src, size_t n,
			   struct ckpt_err *err);
uint64_t ckpt_codec__xxh3(const void *p, size_t n);

#endif
