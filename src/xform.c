/* SPDX-License-Identifier: MIT */
/* Byte grouping of chunks, the choice of a transform from a sample of the data, and the stored
 * payload of one transformed chunk (docs/FORMAT.md 3.8; the choice: docs/TRANSFORM.md).
 *
 * Why byte grouping: in an array of floats, the bytes that carry sign and exponent are few-valued
 * and compressible, the low mantissa bytes are noise. Interleaved, zstd sees noise everywhere
 * (fp32 weights: 1.08x at level 1). Grouped into planes, each plane gets its own zstd frame and
 * so its own entropy tables; the noise planes are stored raw, which also saves the CPU zstd
 * would spend on them, and the exponent planes are entropy-coded. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_c_literalCompressionMode: see compress_plane */
#include <zstd.h>
#include <zstd_errors.h>

#include "ckpt.h"
#include "xform.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#define XFORM_SSE2 1
#endif

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* ---- transposes ---- */

/* gcc -O2 (12.2) leaves both strided loops scalar (one byte per iteration); the SSE2 kernels
 * below move 16 elements per iteration. They need nothing beyond SSE2, the x86-64 baseline, so
 * there is no runtime dispatch: grouping by repeated even/odd byte splits (and + shift +
 * packus) and ungrouping by the inverse interleaves (unpacklo/hi) are SSE2 only; pshufb
 * (SSSE3) or AVX2 would not make the copy of a 4 MiB chunk, which streams through memory, much
 * faster (bench/xform_bench.c compares with memcpy). */

static size_t group_scalar(uint8_t *const *d, const uint8_t *s, size_t i, size_t m, unsigned w)
{
	for (; i < m; i++)
		for (unsigned k = 0; k < w; k++)
			d[k][i] = s[i * w + k];
	return m;
}

static size_t ungroup_scalar(uint8_t *d, const uint8_t *const *p, size_t i, size_t m, unsigned w)
{
	for (; i < m; i++)
		for (unsigned k = 0; k < w; k++)
			d[i * w + k] = p[k][i];
	return m;
}

#ifdef XFORM_SSE2
/* Split 32 bytes a|b into their even-indexed and odd-indexed bytes. */
static inline void split(__m128i a, __m128i b, __m128i *ev, __m128i *od)
{
	const __m128i lo = _mm_set1_epi16(0x00ff);

	*ev = _mm_packus_epi16(_mm_and_si128(a, lo), _mm_and_si128(b, lo));
	*od = _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8));
}

/* The inverse of split: interleave ev and od into 32 bytes a|b. */
static inline void merge(__m128i ev, __m128i od, __m128i *a, __m128i *b)
{
	*a = _mm_unpacklo_epi8(ev, od);
	*b = _mm_unpackhi_epi8(ev, od);
}

#define LD(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define ST(p, v) _mm_storeu_si128((__m128i *)(void *)(p), (v))

/* Each kernel handles 16 elements per iteration and returns how many elements it did. */
static size_t group2(uint8_t *const *d, const uint8_t *s, size_t m)
{
	size_t i;

	for (i = 0; i + 16 <= m; i += 16) {
		__m128i e, o;

		split(LD(s + 2 * i), LD(s + 2 * i + 16), &e, &o);
		ST(d[0] + i, e);
		ST(d[1] + i, o);
	}
	return i;
}

static size_t group4(uint8_t *const *d, const uint8_t *s, size_t m)
{
	size_t i;

	for (i = 0; i + 16 <= m; i += 16) {
		const uint8_t *q = s + 4 * i;
		__m128i e0, o0, e1, o1, p0, p1, p2, p3;

		/* bytes (0 2)(1 3) of each element, then 0 | 2 and 1 | 3 */
		split(LD(q), LD(q + 16), &e0, &o0);
		split(LD(q + 32), LD(q + 48), &e1, &o1);
		split(e0, e1, &p0, &p2);
		split(o0, o1, &p1, &p3);
		ST(d[0] + i, p0);
		ST(d[1] + i, p1);
		ST(d[2] + i, p2);
		ST(d[3] + i, p3);
	}
	return i;
}

static size_t group8(uint8_t *const *d, const uint8_t *s, size_t m)
{
	size_t i;

	for (i = 0; i + 16 <= m; i += 16) {
		const uint8_t *q = s + 8 * i;
		__m128i e[4], o[4], ee[2], eo[2], oe[2], oo[2], p[8];

		/* bytes (0 2 4 6)(1 3 5 7), then (0 4)(2 6)(1 5)(3 7), then each alone */
		for (int j = 0; j < 4; j++)
			split(LD(q + 32 * j), LD(q + 32 * j + 16), &e[j], &o[j]);
		split(e[0], e[1], &ee[0], &eo[0]);
		split(e[2], e[3], &ee[1], &eo[1]);
		split(o[0], o[1], &oe[0], &oo[0]);
		split(o[2], o[3], &oe[1], &oo[1]);
		split(ee[0], ee[1], &p[0], &p[4]);
		split(eo[0], eo[1], &p[2], &p[6]);
		split(oe[0], oe[1], &p[1], &p[5]);
		split(oo[0], oo[1], &p[3], &p[7]);
		for (int k = 0; k < 8; k++)
			ST(d[k] + i, p[k]);
	}
	return i;
}

static size_t ungroup2(uint8_t *d, const uint8_t *const *p, size_t m)
{
	size_t i;

	for (i = 0; i + 16 <= m; i += 16) {
		__m128i a, b;

		merge(LD(p[0] + i), LD(p[1] + i), &a, &b);
		ST(d + 2 * i, a);
		ST(d + 2 * i + 16, b);
	}
	return i;
}

static size_t ungroup4(uint8_t *d, const uint8_t *const *p, size_t m)
{
	size_t i;

	for (i = 0; i + 16 <= m; i += 16) {
		uint8_t *q = d + 4 * i;
		__m128i e0, e1, o0, o1, a, b;

		merge(LD(p[0] + i), LD(p[2] + i), &e0, &e1);
		merge(LD(p[1] + i), LD(p[3] + i), &o0, &o1);
		merge(e0, o0, &a, &b);
		ST(q, a);
		ST(q + 16, b);
		merge(e1, o1, &a, &b);
		ST(q + 32, a);
		ST(q + 48, b);
	}
	return i;
}

static size_t ungroup8(uint8_t *d, const uint8_t *const *p, size_t m)
{
	size_t i;

	for (i = 0; i + 16 <= m; i += 16) {
		uint8_t *q = d + 8 * i;
		__m128i ee[2], eo[2], oe[2], oo[2], e[4], o[4], a, b;

		merge(LD(p[0] + i), LD(p[4] + i), &ee[0], &ee[1]);
		merge(LD(p[2] + i), LD(p[6] + i), &eo[0], &eo[1]);
		merge(LD(p[1] + i), LD(p[5] + i), &oe[0], &oe[1]);
		merge(LD(p[3] + i), LD(p[7] + i), &oo[0], &oo[1]);
		merge(ee[0], eo[0], &e[0], &e[1]);
		merge(ee[1], eo[1], &e[2], &e[3]);
		merge(oe[0], oo[0], &o[0], &o[1]);
		merge(oe[1], oo[1], &o[2], &o[3]);
		for (int j = 0; j < 4; j++) {
			merge(e[j], o[j], &a, &b);
			ST(q + 32 * j, a);
			ST(q + 32 * j + 16, b);
		}
	}
	return i;
}
#endif

const char *ckpt_xform__impl(void)
{
#ifdef XFORM_SSE2
	return "sse2";
#else
	return "scalar";
#endif
}

static void group_planes(uint8_t *const *d, const uint8_t *s, size_t m, unsigned w)
{
	size_t i = 0;

#ifdef XFORM_SSE2
	i = w == 2 ? group2(d, s, m) : w == 4 ? group4(d, s, m) : w == 8 ? group8(d, s, m) : 0;
#endif
	switch (w) { /* constant widths let the compiler unroll the inner loop */
	case 2: group_scalar(d, s, i, m, 2); break;
	case 4: group_scalar(d, s, i, m, 4); break;
	case 8: group_scalar(d, s, i, m, 8); break;
	default: group_scalar(d, s, i, m, w); break;
	}
}

void ckpt_xform__group(uint8_t *dst, const uint8_t *src, size_t n, unsigned w)
{
	uint8_t *d[CKPT_XFORM_MAX_WIDTH];
	size_t m;

	if (w <= 1 || w > CKPT_XFORM_MAX_WIDTH) {
		if (n)
			memcpy(dst, src, n);
		return;
	}
	m = n / w;
	for (unsigned k = 0; k < w; k++)
		d[k] = dst + k * m;
	group_planes(d, src, m, w);
	if (n % w)
		memcpy(dst + w * m, src + w * m, n % w);
}

void ckpt_xform__ungroup_planes(uint8_t *dst, const uint8_t *const *planes, const uint8_t *tail,
				size_t n, unsigned w)
{
	size_t m, i = 0;

	if (w <= 1 || w > CKPT_XFORM_MAX_WIDTH) {
		if (n)
			memcpy(dst, planes[0], n);
		return;
	}
	m = n / w;
#ifdef XFORM_SSE2
	i = w == 2 ? ungroup2(dst, planes, m) : w == 4 ? ungroup4(dst, planes, m)
		: w == 8 ? ungroup8(dst, planes, m) : 0;
#endif
	switch (w) {
	case 2: ungroup_scalar(dst, planes, i, m, 2); break;
	case 4: ungroup_scalar(dst, planes, i, m, 4); break;
	case 8: ungroup_scalar(dst, planes, i, m, 8); break;
	default: ungroup_scalar(dst, planes, i, m, w); break;
	}
	if (n % w)
		memcpy(dst + w * m, tail, n % w);
}

void ckpt_xform__ungroup(uint8_t *dst, const uint8_t *src, size_t n, unsigned w)
{
	const uint8_t *p[CKPT_XFORM_MAX_WIDTH];
	size_t m;

	if (w <= 1 || w > CKPT_XFORM_MAX_WIDTH) {
		if (n)
			memcpy(dst, src, n);
		return;
	}
	m = n / w;
	for (unsigned k = 0; k < w; k++)
		p[k] = src + k * m;
	ckpt_xform__ungroup_planes(dst, p, src + w * m, n, w);
}

/* ---- choosing a transform ---- */

/*
 * The detector looks at SAMPLE_BLOCKS blocks of SAMPLE_BLOCK bytes spread evenly over the chunk
 * (the whole chunk when it is smaller), at offsets that are multiples of 8 so that byte k of an
 * element stays at sample offset k mod w. From that sample:
 *  - one pass counts 8 byte histograms (offset mod 8); summing them gives the histogram of every
 *    plane of widths 1, 2, 4 and 8, hence each plane's order-0 entropy H (bits per byte), which
 *    is what an entropy coder gets and about what zstd gets on float planes;
 *  - for the plain bytes and the planes of the best width, the share R of bytes covered by
 *    repeats of 8 bytes or more (a tiny LZ parse): what order-0 entropy does not see (text,
 *    tables, runs), and the sign that a plane wants zstd's match finder.
 * A plane is estimated at H * (1 - R) bits per byte, or 8 when that saves less than 1/32 (raw).
 * Grouping is chosen when its estimate beats the plain bytes' by 2%.
 */
#define SAMPLE_BLOCKS 16
#define SAMPLE_BLOCK 2048
#define SAMPLE_MAX (SAMPLE_BLOCKS * SAMPLE_BLOCK)
#define RAW_BITS 7.75  /* 8 * (1 - 1/32): less gain than this and the plane is stored raw */
#define LZ_SHARE 0.10  /* repeats covering this much of a plane: zstd's match finder pays */
#define LZ_BITS 1.0    /* Huffman cannot go below 1 bit per byte: runs need LZ */
#define REPEAT_MAX 8192 /* bytes of each candidate the repeat parse reads (its cost) */

/* Order-0 entropy in bits per byte, with the Miller-Madow correction: the plain estimate from
 * a few KiB reads low (random bytes sampled 4 KiB at a time look like 7.95 bits). */
static double entropy(const uint32_t *h, uint32_t total)
{
	double s = 0;
	int seen = 0;

	if (!total)
		return 0;
	for (int i = 0; i < 256; i++)
		if (h[i]) {
			s += h[i] * log2((double)h[i]);
			seen++;
		}
	s = log2((double)total) - s / total + (seen - 1) / (2.0 * total * 0.6931471805599453);
	return s < 8 ? s : 8;
}

static uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

/* Share of p[0, len) covered by repeats of at least 8 bytes of earlier bytes (greedy parse,
 * one candidate per hash bucket). len <= REPEAT_MAX. */
static double repeat_share(const uint8_t *p, size_t len)
{
	uint16_t tab[4096] = { 0 }; /* position + 1 of the last 8 bytes with this hash */
	size_t i = 0, covered = 0;

	while (i + 8 <= len) {
		uint64_t v = load64(p + i);
		uint32_t h = (uint32_t)((v * 0x9e3779b97f4a7c15ull) >> 52), c = tab[h];

		tab[h] = (uint16_t)(i + 1);
		if (c && load64(p + c - 1) == v) {
			size_t j = 8;

			while (i + j < len && p[c - 1 + j] == p[i + j])
				j++;
			covered += j;
			i += j;
		} else {
			i++;
		}
	}
	return len ? (double)covered / len : 0;
}

struct sample {
	uint8_t bytes[SAMPLE_MAX];
	uint8_t grouped[SAMPLE_MAX];
	size_t len;
	uint32_t hist[8][256]; /* by offset mod 8 */
	double h[4][8];        /* entropy of plane k of width 1 << j */
};

/* Entropy of plane k of width w: the sum of the histograms of offsets k, k + w, ... */
static double plane_entropy(const struct sample *s, unsigned w, unsigned k)
{
	uint32_t h[256] = { 0 }, total = 0;

	for (unsigned j = k; j < 8; j += w)
		for (int b = 0; b < 256; b++)
			h[b] += s->hist[j][b];
	for (int b = 0; b < 256; b++)
		total += h[b];
	return entropy(h, total);
}

static void take_sample(struct sample *s, const uint8_t *src, size_t n)
{
	size_t i;

	if (n <= SAMPLE_MAX) {
		memcpy(s->bytes, src, n);
		s->len = n;
	} else {
		s->len = 0;
		for (size_t b = 0; b < SAMPLE_BLOCKS; b++) {
			size_t off = (n - SAMPLE_BLOCK) / (SAMPLE_BLOCKS - 1) * b & ~(size_t)7;

			memcpy(s->bytes + s->len, src + off, SAMPLE_BLOCK);
			s->len += SAMPLE_BLOCK;
		}
	}
	memset(s->hist, 0, sizeof(s->hist));
	for (i = 0; i < s->len; i++)
		s->hist[i & 7][s->bytes[i]]++;
	for (unsigned j = 0; j < 4; j++)
		for (unsigned k = 0; k < 1u << j; k++)
			s->h[j][k] = plane_entropy(s, 1u << j, k);
}

static double plane_bits(double h, double r)
{
	double bits = h * (1 - r);

	return bits >= RAW_BITS ? 8 : bits;
}

/* Fill plan for width w (1, 2, 4, 8) from the sample; returns the estimate in bits per byte. */
static double plan_width(struct ckpt_xform_plan *plan, struct sample *s, unsigned w)
{
	size_t m = s->len / w;
	double sum = 0;

	plan->xform = w == 1 ? CKPT_XFORM_PLAIN : CKPT_XFORM_BYTEGROUP;
	plan->width = (uint8_t)w;
	memset(plan->how, 0, sizeof(plan->how));
	ckpt_xform__group(s->grouped, s->bytes, s->len, w);
	for (unsigned k = 0; k < w; k++) {
		double h = s->h[w == 1 ? 0 : w == 2 ? 1 : w == 4 ? 2 : 3][k];
		double r = repeat_share(s->grouped + k * m, m < REPEAT_MAX / w ? m : REPEAT_MAX / w);
		double bits = plane_bits(h, r);

		sum += bits;
		if (bits >= 8)
			plan->how[k] = CKPT_XFORM_HOW_RAW;
		else if (r >= LZ_SHARE || h < LZ_BITS)
			plan->how[k] = CKPT_XFORM_HOW_LZ;
		else
			plan->how[k] = CKPT_XFORM_HOW_HUF;
	}
	plan->est_bits = (float)(sum / w);
	return sum / w;
}

size_t ckpt_xform__sample_size(void)
{
	return sizeof(struct sample);
}

void ckpt_xform__choose(struct ckpt_xform_plan *out, const void *src, size_t n, unsigned hint_width)
{
	ckpt_xform__choose_in(out, src, n, hint_width, NULL);
}

void ckpt_xform__choose_in(struct ckpt_xform_plan *out, const void *src, size_t n,
			   unsigned hint_width, void *sample)
{
	struct sample *s = sample;
	struct ckpt_xform_plan plain, grouped;
	double best = 9, est_plain, est_grouped;
	unsigned w = 0;

	memset(out, 0, sizeof(*out));
	out->xform = CKPT_XFORM_PLAIN;
	out->width = 1;
	if (n < 64) { /* tables and frames would cost more than any gain */
		out->how[0] = CKPT_XFORM_HOW_RAW;
		out->est_bits = 8;
		return;
	}
	/* ~66 KiB: on the heap rather than on a drain thread's stack */
	if (!s && !(s = malloc(sizeof(*s)))) {
		out->how[0] = CKPT_XFORM_HOW_LZ; /* what plain zstd would do */
		out->est_bits = 8;
		return;
	}
	take_sample(s, src, n);
	if (hint_width == 1 || hint_width == 2 || hint_width == 4 || hint_width == 8) {
		w = hint_width;
	} else {
		/* the best width by order-0 entropy alone (cheap: no repeat parse); a wider
		 * grouping must win by 0.5% (bf16 grouped by 4 or 8 is bf16 grouped by 2) */
		for (unsigned c = 2; c <= 8; c *= 2) {
			double sum = 0;

			for (unsigned k = 0; k < c; k++)
				sum += plane_bits(s->h[c == 2 ? 1 : c == 4 ? 2 : 3][k], 0);
			if (sum / c < best * 0.995) {
				best = sum / c;
				w = c;
			}
		}
	}
	est_plain = plan_width(&plain, s, 1);
	if (w == 1) {
		*out = plain;
	} else {
		est_grouped = plan_width(&grouped, s, w);
		*out = hint_width == w || est_grouped < est_plain * 0.98 ? grouped : plain;
	}
	if (s != sample)
		free(s);
}

/* ---- encoding ---- */

size_t ckpt_xform__bound(size_t n)
{
	return CKPT_XFORM_HEAD_SIZE + CKPT_XFORM_MAX_WIDTH * CKPT_XFORM_PLANE_ENTRY_SIZE + n;
}

/*
 * Compress one plane of m bytes into at most cap bytes; *size = 0 means "store raw" (zstd could
 * not get under cap). HOW_HUF uses zstd's fastest level with literal compression forced on:
 * the match finder then almost never runs and the frame is Huffman-coded literals, which on
 * exponent planes is both smaller (2.99x against 2.74x at level 1 on fp32 weights) and several
 * times faster to compress and to decompress. ZSTD_c_literalCompressionMode is an experimental
 * parameter of libzstd: if a libzstd refuses it, HOW_HUF falls back to the caller's level.
 */
static int compress_plane(ZSTD_CCtx *cctx, uint8_t *dst, size_t cap, const uint8_t *src,
			  size_t m, enum ckpt_xform_how how, int level, size_t *size,
			  struct ckpt_err *err)
{
	size_t r;

	*size = 0;
	ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
	if (how == CKPT_XFORM_HOW_HUF &&
	    (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, ZSTD_minCLevel())) ||
	     ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_literalCompressionMode,
						 ZSTD_ps_enable))))
		how = CKPT_XFORM_HOW_LZ;
	if (how == CKPT_XFORM_HOW_LZ) {
		ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
		r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
		/* negative levels store literals uncompressed by default, which leaves float
		 * bytes exactly as large as they were (1.000): keep Huffman on */
		if (!ZSTD_isError(r) && level < 0)
			ZSTD_CCtx_setParameter(cctx, ZSTD_c_literalCompressionMode, ZSTD_ps_enable);
		if (ZSTD_isError(r))
			return ckpt_err__set(err, CKPT_EIO, "zstd level %d: %s", level,
					     ZSTD_getErrorName(r));
	}
	/* the frame carries its content size and no checksum (the chunk's hashes cover it) */
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0);
	r = ZSTD_compress2(cctx, dst, cap, src, m);
	if (ZSTD_isError(r)) {
		if (ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall)
			return CKPT_OK; /* not worth it: raw */
		return ckpt_err__set(err, CKPT_EIO, "zstd compression failed: %s",
				     ZSTD_getErrorName(r));
	}
	*size = r;
	return CKPT_OK;
}

static int plan_valid(const struct ckpt_xform_plan *p)
{
	if (p->xform == CKPT_XFORM_PLAIN)
		return p->width == 1;
	if (p->xform == CKPT_XFORM_BYTEGROUP)
		return p->width == 2 || p->width == 4 || p->width == 8;
	return 0;
}

/* The payload of a chunk stored as it is: head, one raw plane, the bytes. */
static size_t encode_raw(uint8_t *d, const void *src, size_t n)
{
	memset(d, 0, CKPT_XFORM_HEAD_SIZE + CKPT_XFORM_PLANE_ENTRY_SIZE);
	d[0] = CKPT_XFORM_PLAIN;
	d[1] = 1;
	put32(d + 4, (uint32_t)n);
	d[8] = CKPT_XFORM_RAW;
	put32(d + 12, (uint32_t)n);
	if (n)
		memcpy(d + 16, src, n);
	return 16 + n;
}

int ckpt_xform__encode(void *dst, size_t cap, size_t *out_size, const void *src, size_t n,
		       const struct ckpt_xform_plan *plan, ZSTD_CCtx *cctx, int level,
		       void *scratch, struct ckpt_err *err)
{
	const uint8_t *planes[CKPT_XFORM_MAX_WIDTH];
	uint8_t *d = dst;
	unsigned w;
	size_t m, pos, nraw = 0;
	int rc;

	if (!dst || !out_size || (!src && n) || !plan || !cctx)
		return ckpt_err__set(err, CKPT_EINVAL, "xform encode: NULL argument");
	*out_size = 0;
	if (n > CKPT_XFORM_MAX_RAW || cap < ckpt_xform__bound(n) || !plan_valid(plan))
		return ckpt_err__set(err, CKPT_EINVAL,
				     "xform encode: %zu bytes, capacity %zu, transform %u width %u",
				     n, cap, plan->xform, plan->width);
	w = plan->width;
	if (w > 1 && !scratch)
		return ckpt_err__set(err, CKPT_EINVAL, "xform encode: no scratch buffer");
	m = n / w;
	if (w == 1) {
		planes[0] = src;
	} else {
		ckpt_xform__group(scratch, src, n, w);
		for (unsigned k = 0; k < w; k++)
			planes[k] = (const uint8_t *)scratch + k * m;
	}
	memset(d, 0, CKPT_XFORM_HEAD_SIZE + w * CKPT_XFORM_PLANE_ENTRY_SIZE);
	d[0] = plan->xform;
	d[1] = (uint8_t)w;
	put32(d + 4, (uint32_t)n);
	pos = CKPT_XFORM_HEAD_SIZE + w * CKPT_XFORM_PLANE_ENTRY_SIZE;
	for (unsigned k = 0; k < w; k++) {
		uint8_t *e = d + CKPT_XFORM_HEAD_SIZE + k * CKPT_XFORM_PLANE_ENTRY_SIZE;
		/* zstd must save at least 1/32 (and one byte) to be worth its decoding time */
		size_t limit = m - (m / 32 > 0 ? m / 32 : 1), size = 0;

		if (plan->how[k] != CKPT_XFORM_HOW_RAW && m >= 32) {
			rc = compress_plane(cctx, d + pos, limit, planes[k], m, plan->how[k],
					    level, &size, err);
			if (rc < 0)
				return rc;
		}
		if (size) {
			e[0] = CKPT_XFORM_ZSTD;
		} else {
			e[0] = CKPT_XFORM_RAW;
			size = m;
			if (m)
				memcpy(d + pos, planes[k], m);
			nraw++;
		}
		put32(e + 4, (uint32_t)size);
		pos += size;
	}
	if (nraw == w && w > 1) { /* grouping gained nothing: do not make the reader ungroup */
		*out_size = encode_raw(d, src, n);
		return CKPT_OK;
	}
	if (n % w)
		memcpy(d + pos, (const uint8_t *)src + w * m, n % w);
	*out_size = pos + n % w;
	return CKPT_OK;
}

/* ---- decoding (untrusted input) ---- */

int ckpt_xform__decode(void *dst, size_t n, const void *src, size_t len, ZSTD_DCtx *dctx,
		       void *scratch, uint8_t *xform, uint8_t *width, struct ckpt_err *err)
{
	const uint8_t *s = src, *planes[CKPT_XFORM_MAX_WIDTH];
	uint8_t mode[CKPT_XFORM_MAX_WIDTH];
	size_t psize[CKPT_XFORM_MAX_WIDTH];
	unsigned w;
	size_t m, pos;
	uint32_t raw;

	if (!dst && n)
		return ckpt_err__set(err, CKPT_EINVAL, "xform decode: NULL destination");
	if (!dctx || (!src && len))
		return ckpt_err__set(err, CKPT_EINVAL, "xform decode: NULL argument");
	if (len < CKPT_XFORM_HEAD_SIZE)
		return ckpt_err__set(err, CKPT_ECORRUPT,
				     "stored chunk of %zu bytes is shorter than its %d-byte head",
				     len, CKPT_XFORM_HEAD_SIZE);
	if (s[0] != CKPT_XFORM_PLAIN && s[0] != CKPT_XFORM_BYTEGROUP)
		return ckpt_err__set(err, CKPT_ECORRUPT,
				     "stored chunk uses transform %u, unknown to this version of "
				     "libckpt (it knows 1 plain, 2 bytegroup)", s[0]);
	w = s[1];
	if (s[0] == CKPT_XFORM_PLAIN ? w != 1 : (w != 2 && w != 4 && w != 8))
		return ckpt_err__set(err, CKPT_ECORRUPT,
				     "stored chunk: transform %u with element width %u", s[0], w);
	if (s[2] || s[3])
		return ckpt_err__set(err, CKPT_ECORRUPT,
				     "stored chunk: reserved head bytes are %02x %02x, not 0",
				     s[2], s[3]);
	raw = get32(s + 4);
	if (raw != n)
		return ckpt_err__set(err, CKPT_ECORRUPT,
				     "stored chunk holds %u raw bytes, the index says %zu", raw, n);
	if (xform)
		*xform = s[0];
	if (width)
		*width = (uint8_t)w;
	pos = CKPT_XFORM_HEAD_SIZE + w * CKPT_XFORM_PLANE_ENTRY_SIZE;
	if (len < pos)
		return ckpt_err__set(err, CKPT_ECORRUPT,
				     "stored chunk of %zu bytes is shorter than its plane table",
				     len);
	m = n / w;
	/* the whole table first: no zstd call on a payload whose layout is wrong */
	for (unsigned k = 0; k < w; k++) {
		const uint8_t *e = s + CKPT_XFORM_HEAD_SIZE + k * CKPT_XFORM_PLANE_ENTRY_SIZE;

		mode[k] = e[0];
		psize[k] = get32(e + 4);
		if (e[1] || e[2] || e[3])
			return ckpt_err__set(err, CKPT_ECORRUPT,
					     "stored chunk: plane %u has non-zero reserved bytes", k);
		if (mode[k] == CKPT_XFORM_RAW ? psize[k] != m
		    : mode[k] != CKPT_XFORM_ZSTD || psize[k] == 0 || psize[k] >= m)
			return ckpt_err__set(err, CKPT_ECORRUPT,
					     "stored chunk: plane %u of %zu bytes has mode %u and "
					     "stored size %zu", k, m, mode[k], psize[k]);
		if (psize[k] > len - pos)
			return ckpt_err__set(err, CKPT_ECORRUPT,
					     "stored chunk: plane %u ends past the chunk's %zu bytes",
					     k, len);
		planes[k] = s + pos;
		pos += psize[k];
	}
	if (len - pos != n % w)
		return ckpt_err__set(err, CKPT_ECORRUPT,
				     "stored chunk has %zu bytes after its planes, expected %zu",
				     len - pos, n % w);
	if (w > 1 && !scratch)
		return ckpt_err__set(err, CKPT_EINVAL, "xform decode: no scratch buffer");
	for (unsigned k = 0; k < w; k++) {
		uint8_t *out = w == 1 ? dst : (uint8_t *)scratch + k * m;
		size_t r;

		if (mode[k] == CKPT_XFORM_RAW) {
			if (w == 1 && m)
				memcpy(dst, planes[0], m);
			continue; /* grouped raw planes are ungrouped straight from src */
		}
		r = ZSTD_decompressDCtx(dctx, out, m, planes[k], psize[k]);
		if (ZSTD_isError(r))
			return ckpt_err__set(err, CKPT_ECORRUPT,
					     "stored chunk: plane %u: zstd decompression failed: %s",
					     k, ZSTD_getErrorName(r));
		if (r != m)
			return ckpt_err__set(err, CKPT_ECORRUPT,
					     "stored chunk: plane %u decompressed to %zu bytes, "
					     "expected %zu", k, r, m);
		planes[k] = out;
	}
	if (w > 1)
		ckpt_xform__ungroup_planes(dst, planes, s + pos, n, w);
	return CKPT_OK;
}
