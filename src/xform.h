/* SPDX-License-Identifier: MIT */
/* Chunk transforms before zstd: byte grouping (planes), the choice of a transform from the data,
 * and the self-describing stored payload of one chunk. Pure buffers, no I/O (fuzzable).
 *
 * The stored payload is specified byte by byte in docs/FORMAT.md 3.8. In short: an 8-byte head
 * (transform, element width, raw size), one 8-byte entry per plane (mode raw or zstd, stored
 * size), the planes' stored bytes in plane order, then the n % width tail bytes verbatim.
 * All functions are thread-safe given distinct contexts and scratch buffers. */
#ifndef CKPT_XFORM_H
#define CKPT_XFORM_H

#include <stddef.h>
#include <stdint.h>

#include <zstd.h>

#include "error.h"

/* Chunk transform ids: payload byte 0 and, in phase 2, the index's per-chunk transform byte.
 * Pinned forever; 0 is never valid (an all-zero payload is refused). */
#define CKPT_XFORM_PLAIN 1     /* one plane: the chunk's bytes as they are */
#define CKPT_XFORM_BYTEGROUP 2 /* width 2, 4 or 8: byte k of every element in plane k */

/* Plane modes (the first byte of a plane entry). Pinned forever. */
#define CKPT_XFORM_RAW 0  /* stored as it is */
#define CKPT_XFORM_ZSTD 1 /* one zstd frame that decodes to exactly the plane */

#define CKPT_XFORM_HEAD_SIZE 8
#define CKPT_XFORM_PLANE_ENTRY_SIZE 8
#define CKPT_XFORM_MAX_WIDTH 8
/* Largest chunk a payload may describe (the format's limit of chunk_raw when reading). */
#define CKPT_XFORM_MAX_RAW (1u << 30)

/* How the encoder compresses a plane it stores as zstd. Not recorded: every one is a standard
 * zstd frame that ZSTD_decompressDCtx reads. */
enum ckpt_xform_how {
	CKPT_XFORM_HOW_RAW = 0, /* do not try: store raw */
	CKPT_XFORM_HOW_LZ,      /* zstd at the caller's level (LZ + entropy) */
	CKPT_XFORM_HOW_HUF,     /* entropy coding only: zstd's fastest level with Huffman literals */
};

/* What to do with one chunk: the transform, the element width and how each plane is compressed.
 * Filled by ckpt_xform__choose, or by a caller that knows better. */
struct ckpt_xform_plan {
	uint8_t xform;                        /* CKPT_XFORM_PLAIN or CKPT_XFORM_BYTEGROUP */
	uint8_t width;                        /* 1 for PLAIN; 2, 4 or 8 for BYTEGROUP */
	uint8_t how[CKPT_XFORM_MAX_WIDTH];    /* enum ckpt_xform_how, per plane (width entries) */
	float est_bits;                       /* the detector's estimate, bits per raw byte */
};

/* Byte grouping of n bytes with element width w (1, 2, 4 or 8): with m = n / w elements,
 * dst[k * m + i] = src[i * w + k] for k < w, i < m, then the t = n % w tail bytes
 * src[w * m ..] copied to dst[w * m ..] unchanged. Width 1 is a copy. src and dst must not
 * overlap. SSE2 on x86-64, a scalar loop elsewhere. */
void ckpt_xform__group(uint8_t *dst, const uint8_t *src, size_t n, unsigned w);
/* The inverse: plane k of m bytes read from planes[k], the tail from tail (n % w bytes). */
void ckpt_xform__ungroup_planes(uint8_t *dst, const uint8_t *const *planes, const uint8_t *tail,
				size_t n, unsigned w);
/* The inverse of ckpt_xform__group on one contiguous grouped buffer. */
void ckpt_xform__ungroup(uint8_t *dst, const uint8_t *src, size_t n, unsigned w);
/* Which implementation the transposes use: "sse2" or "scalar" (for the benchmark). */
const char *ckpt_xform__impl(void);

/* Choose a plan for n raw bytes from a sample of the data (about 32 KiB, read in blocks spread
 * over the chunk): the order-0 entropy of every byte plane for widths 1, 2, 4, 8 and the share of
 * each candidate that repeats 8-byte strings. hint_width: 0 = detect the width; 1, 2, 4 or 8 =
 * the element width is known (a dtype): only the plane modes are chosen. Costs well under 1% of
 * compressing the chunk at level 1. Never fails; src may be NULL when n is 0. */
void ckpt_xform__choose(struct ckpt_xform_plan *out, const void *src, size_t n, unsigned hint_width);
/* The same with the caller's scratch of ckpt_xform__sample_size() bytes (NULL: a malloc'ed one,
 * freed before it returns). The codec keeps one per drain thread: no allocation per chunk, and
 * nothing held by a thread alone when the process ends mid-chunk (a crash test's kill). */
size_t ckpt_xform__sample_size(void);
void ckpt_xform__choose_in(struct ckpt_xform_plan *out, const void *src, size_t n,
			   unsigned hint_width, void *sample);

/* Most bytes ckpt_xform__encode writes for n raw bytes (a plane is stored raw when zstd does not
 * make it at least 1/32 smaller, so the payload never exceeds the raw size plus its table). */
size_t ckpt_xform__bound(size_t n);

/* Encode n raw bytes (n <= CKPT_XFORM_MAX_RAW) with plan into dst (cap bytes, at least
 * ckpt_xform__bound(n)); *out_size gets the payload's size. cctx belongs to the caller (its
 * parameters are reset); level is the zstd level of HOW_LZ planes (negative levels keep Huffman
 * literals on). scratch: n bytes of the caller's (unused by PLAIN). When every plane ends up raw
 * the chunk is stored as PLAIN raw, whatever the plan said. Returns CKPT_OK, CKPT_EINVAL (bad
 * plan or sizes), or CKPT_EIO when zstd fails, with a message in err. */
int ckpt_xform__encode(void *dst, size_t cap, size_t *out_size, const void *src, size_t n,
		       const struct ckpt_xform_plan *plan, ZSTD_CCtx *cctx, int level,
		       void *scratch, struct ckpt_err *err);

/* Decode a stored payload of len bytes into exactly n raw bytes at dst. dctx belongs to the
 * caller; scratch: n bytes of the caller's (used by BYTEGROUP chunks). Every field is checked
 * before use and nothing outside src[0, len) and dst[0, n) is touched: any malformed payload is
 * CKPT_ECORRUPT with a message (an unknown transform is named in it). *xform and *width (either
 * may be NULL) get the payload's transform and width when the head is valid. */
int ckpt_xform__decode(void *dst, size_t n, const void *src, size_t len, ZSTD_DCtx *dctx,
		       void *scratch, uint8_t *xform, uint8_t *width, struct ckpt_err *err);

#endif
