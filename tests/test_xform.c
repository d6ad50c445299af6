/* SPDX-License-Identifier: MIT */
/* Unit tests of the xform module: byte-grouping round trips for every width and odd tail, encoded
 * chunks of every choice, the transform detector on real and synthetic data, damaged payloads. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "ckpt.h"
#include "harness.h"
#include "xform.h"

#define CHUNK (4u << 20)

static uint8_t *fp32, *bf16, *adamw; /* one chunk each: real data, or synthetic floats */
static int real_data;
static ZSTD_CCtx *cctx;
static ZSTD_DCtx *dctx;

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Normally distributed floats of scale sd: what trained weights look like to a compressor. */
static void fill_gauss(float *f, size_t n, double sd)
{
	for (size_t i = 0; i < n; i++) {
		double u = ((next() >> 11) + 1.0) / 9007199254740993.0, v = (next() >> 11) / 9007199254740992.0;

		f[i] = (float)(sd * sqrt(-2 * log(u)) * cos(2 * M_PI * v));
	}
}

static int suite_init(void)
{
	fp32 = malloc(CHUNK);
	bf16 = malloc(CHUNK);
	adamw = malloc(CHUNK);
	cctx = ZSTD_createCCtx();
	dctx = ZSTD_createDCtx();
	if (!fp32 || !bf16 || !adamw || !cctx || !dctx)
		return -1;
	real_data = th_real_data("weights-fp32.bin", fp32, CHUNK) == CHUNK &&
		    th_real_data("weights-bf16.bin", bf16, CHUNK) == CHUNK &&
		    th_real_data("adamw-state-fp32.bin", adamw, CHUNK) == CHUNK;
	if (!real_data) {
		float *f = (float *)(void *)fp32;

		printf("(../shared/data not found: synthetic floats) ");
		fill_gauss(f, CHUNK / 4, 0.02);
		for (size_t i = 0; i < CHUNK / 2; i++) { /* bf16: the high half of an fp32 */
			uint32_t u;

			memcpy(&u, &f[i % (CHUNK / 4)], 4);
			bf16[2 * i] = (uint8_t)(u >> 16);
			bf16[2 * i + 1] = (uint8_t)(u >> 24);
		}
		fill_gauss((float *)(void *)adamw, CHUNK / 4, 1e-4);
	}
	return 0;
}

static int suite_clean(void)
{
	free(fp32);
	free(bf16);
	free(adamw);
	ZSTD_freeCCtx(cctx);
	ZSTD_freeDCtx(dctx);
	return 0;
}

/* ---- transposes ---- */

/* Group/ungroup n bytes of width w and compare with the definition; 1 when all is right. */
static int check_group(const uint8_t *src, size_t n, unsigned w)
{
	uint8_t *g = malloc(n + 16), *back = malloc(n + 16);
	const uint8_t *planes[8];
	size_t m = w ? n / w : n;
	int ok = g && back;

	if (!ok)
		goto out;
	memset(g, 0xee, n + 16);
	memset(back, 0xdd, n + 16);
	ckpt_xform__group(g, src, n, w);
	for (size_t i = 0; i < m && w > 1; i++)
		for (unsigned k = 0; k < w; k++)
			ok &= g[k * m + i] == src[i * w + k];
	if (w > 1)
		ok &= memcmp(g + w * m, src + w * m, n % w) == 0; /* the tail, unchanged */
	else
		ok &= memcmp(g, src, n) == 0;
	ok &= g[n] == 0xee; /* nothing written past n */
	ckpt_xform__ungroup(back, g, n, w);
	ok &= memcmp(back, src, n) == 0 && back[n] == 0xdd;
	/* from separate plane buffers, as the decoder does */
	if (w > 1) {
		uint8_t *sep = malloc(n + 64);

		if (!sep) {
			ok = 0;
			goto out;
		}
		for (unsigned k = 0; k < w; k++) {
			memcpy(sep + k * (m + 7), g + k * m, m);
			planes[k] = sep + k * (m + 7); /* unaligned, apart */
		}
		memset(back, 0xcc, n + 16);
		ckpt_xform__ungroup_planes(back, planes, g + w * m, n, w);
		ok &= memcmp(back, src, n) == 0 && back[n] == 0xcc;
		free(sep);
	}
out:
	free(g);
	free(back);
	return ok;
}

static void test_group_roundtrip(void)
{
	static const unsigned widths[] = { 1, 2, 4, 8 };
	uint8_t *buf = malloc(300000);

	CU_ASSERT_FATAL(buf != NULL);
	th_fill(buf, 300000, 7);
	for (size_t wi = 0; wi < 4; wi++) {
		unsigned w = widths[wi];

		for (size_t n = 0; n <= 64; n++)
			CU_ASSERT(check_group(buf, n, w));
		for (int r = 0; r < 40; r++)
			CU_ASSERT(check_group(buf + next() % 64, next() % 200000, w));
		CU_ASSERT(check_group(fp32, CHUNK, w));
		CU_ASSERT(check_group(fp32 + 1, CHUNK - 7, w));
	}
	free(buf);
}

/* ---- encode / decode ---- */

/* Encode with plan, check the bound, decode, compare. Returns the stored size (0 on failure);
 * *xf and *wd get what the payload says. */
static size_t roundtrip(const void *src, size_t n, const struct ckpt_xform_plan *plan, int level,
			uint8_t *xf, uint8_t *wd)
{
	struct ckpt_err err = { "" };
	size_t cap = ckpt_xform__bound(n), size = 0;
	uint8_t *dst = malloc(cap + 1), *scratch = malloc(n + 1), *back = malloc(n + 16);
	uint8_t x = 0, w = 0;
	int ok = 0;

	if (!dst || !scratch || !back)
		goto out;
	dst[cap] = 0x5a;
	if (ckpt_xform__encode(dst, cap, &size, src, n, plan, cctx, level, scratch, &err) !=
	    CKPT_OK) {
		fprintf(stderr, "encode: %s\n", err.msg);
		goto out;
	}
	if (size > cap || dst[cap] != 0x5a)
		goto out;
	memset(back, 0xa5, n + 16);
	if (ckpt_xform__decode(back, n, dst, size, dctx, scratch, &x, &w, &err) != CKPT_OK) {
		fprintf(stderr, "decode: %s\n", err.msg);
		goto out;
	}
	ok = memcmp(back, src, n) == 0 && back[n] == 0xa5 && x == dst[0] && w == dst[1];
	if (xf)
		*xf = x;
	if (wd)
		*wd = w;
out:
	free(dst);
	free(scratch);
	free(back);
	return ok ? size : 0;
}

static struct ckpt_xform_plan make_plan(unsigned w, enum ckpt_xform_how how)
{
	struct ckpt_xform_plan p = { 0 };

	p.xform = w == 1 ? CKPT_XFORM_PLAIN : CKPT_XFORM_BYTEGROUP;
	p.width = (uint8_t)w;
	for (unsigned k = 0; k < w; k++)
		p.how[k] = (uint8_t)how;
	return p;
}

static void test_encode_every_plan(void)
{
	static const unsigned widths[] = { 1, 2, 4, 8 };
	uint8_t *rnd = malloc(100000);

	CU_ASSERT_FATAL(rnd != NULL);
	th_fill(rnd, 100000, 3);
	for (size_t wi = 0; wi < 4; wi++) {
		for (int how = CKPT_XFORM_HOW_RAW; how <= CKPT_XFORM_HOW_HUF; how++) {
			struct ckpt_xform_plan p = make_plan(widths[wi], how);

			for (size_t n = 0; n <= 64; n++) {
				CU_ASSERT(roundtrip(fp32, n, &p, 1, NULL, NULL) > 0);
				CU_ASSERT(roundtrip(rnd, n, &p, 1, NULL, NULL) > 0);
			}
			for (int r = 0; r < 6; r++) {
				size_t n = 64 + next() % 300000;

				CU_ASSERT(roundtrip(bf16 + 2 * (next() % 1000), n, &p, 1, NULL, NULL) > 0);
				CU_ASSERT(roundtrip(rnd, n % 100000, &p, -5, NULL, NULL) > 0);
			}
			CU_ASSERT(roundtrip(adamw, CHUNK, &p, 3, NULL, NULL) > 0);
		}
	}
	/* a plan that mixes plane modes, with a tail */
	{
		struct ckpt_xform_plan p = make_plan(4, CKPT_XFORM_HOW_RAW);
		uint8_t xf, wd;

		p.how[1] = CKPT_XFORM_HOW_LZ;
		p.how[3] = CKPT_XFORM_HOW_HUF;
		CU_ASSERT(roundtrip(fp32, 1000003, &p, 1, &xf, &wd) > 0);
		CU_ASSERT_EQUAL(xf, CKPT_XFORM_BYTEGROUP);
		CU_ASSERT_EQUAL(wd, 4);
	}
	free(rnd);
}

/* Incompressible bytes end up stored as they are, whatever the plan, at 16 bytes of overhead. */
static void test_incompressible_is_raw(void)
{
	uint8_t *rnd = malloc(1 << 20);
	uint8_t xf, wd;

	CU_ASSERT_FATAL(rnd != NULL);
	th_fill(rnd, 1 << 20, 11);
	for (unsigned w = 1; w <= 8; w *= 2) {
		struct ckpt_xform_plan p = make_plan(w, CKPT_XFORM_HOW_LZ);

		CU_ASSERT_EQUAL(roundtrip(rnd, (1 << 20) - 3, &p, 1, &xf, &wd), (1 << 20) - 3 + 16);
		CU_ASSERT_EQUAL(xf, CKPT_XFORM_PLAIN);
		CU_ASSERT_EQUAL(wd, 1);
	}
	free(rnd);
}

/* ---- the detector ---- */

static size_t zstd_size(const void *src, size_t n, int level)
{
	size_t cap = ZSTD_compressBound(n), r;
	void *dst = malloc(cap);

	r = dst ? ZSTD_compressCCtx(cctx, dst, cap, src, n, level) : 0;
	free(dst);
	return ZSTD_isError(r) ? 0 : r;
}

/* Choose, encode and decode; returns the stored size, 0 on failure. */
static size_t auto_size(const void *src, size_t n, unsigned hint, struct ckpt_xform_plan *plan)
{
	ckpt_xform__choose(plan, src, n, hint);
	return roundtrip(src, n, plan, 1, NULL, NULL);
}

static void test_detect_floats(void)
{
	struct ckpt_xform_plan p;
	size_t s, plain;

	/* fp32: 4 planes (8 would be two elements at a time), the low mantissa bytes raw, and
	 * clearly smaller than plain zstd */
	s = auto_size(fp32, CHUNK, 0, &p);
	plain = zstd_size(fp32, CHUNK, 1);
	CU_ASSERT_EQUAL(p.xform, CKPT_XFORM_BYTEGROUP);
	CU_ASSERT_EQUAL(p.width, 4);
	CU_ASSERT_EQUAL(p.how[0], CKPT_XFORM_HOW_RAW);
	CU_ASSERT_NOT_EQUAL(p.how[3], CKPT_XFORM_HOW_RAW);
	CU_ASSERT(s > 0 && s < plain * 0.95);
	printf("\n    fp32: plain %.3fx, auto %.3fx", (double)CHUNK / plain, (double)CHUNK / s);

	/* bf16: grouped by 2 (wider gains nothing), the exponent plane compressed */
	s = auto_size(bf16, CHUNK, 0, &p);
	plain = zstd_size(bf16, CHUNK, 1);
	CU_ASSERT_EQUAL(p.xform, CKPT_XFORM_BYTEGROUP);
	CU_ASSERT_EQUAL(p.width, 2);
	CU_ASSERT_NOT_EQUAL(p.how[1], CKPT_XFORM_HOW_RAW);
	CU_ASSERT(s > 0 && s < plain * 0.92);
	printf(", bf16: plain %.3fx, auto %.3fx", (double)CHUNK / plain, (double)CHUNK / s);

	s = auto_size(adamw, CHUNK, 0, &p);
	plain = zstd_size(adamw, CHUNK, 1);
	CU_ASSERT_EQUAL(p.xform, CKPT_XFORM_BYTEGROUP);
	CU_ASSERT_EQUAL(p.width % 4, 0);
	CU_ASSERT(s > 0 && s < plain * 0.95);
	printf(", adamw: plain %.3fx, auto %.3fx\n    ", (double)CHUNK / plain, (double)CHUNK / s);

	/* a slice anywhere in the data, at an element boundary, and small chunks too */
	ckpt_xform__choose(&p, fp32 + 4 * 100003, 65536, 0);
	CU_ASSERT_EQUAL(p.xform, CKPT_XFORM_BYTEGROUP);
	CU_ASSERT_EQUAL(p.width, 4);
	ckpt_xform__choose(&p, bf16 + 2 * 77777, 65536, 0);
	CU_ASSERT_EQUAL(p.xform, CKPT_XFORM_BYTEGROUP);
	CU_ASSERT_EQUAL(p.width, 2);

	/* a hint sets the width, the planes are still chosen from the data */
	ckpt_xform__choose(&p, fp32, CHUNK, 2);
	CU_ASSERT_EQUAL(p.xform, CKPT_XFORM_BYTEGROUP);
	CU_ASSERT_EQUAL(p.width, 2);
	ckpt_xform__choose(&p, fp32, CHUNK, 1);
	CU_ASSERT_EQUAL(p.xform, CKPT_XFORM_PLAIN);
}

static void test_detect_other_data(void)
{
	struct ckpt_xform_plan p;
	size_t n = 1 << 20, s, plain;
	uint8_t *buf = malloc(n);
	static const char *words[] = { "checkpoint ", "the ", "tensor ", "of ", "rank ",
				       "gradient ", "step ", "and ", "weights ", "a " };

	CU_ASSERT_FATAL(buf != NULL);
	/* random bytes: stored raw (compression would gain nothing) */
	th_fill(buf, n, 5);
	s = auto_size(buf, n, 0, &p);
	CU_ASSERT_EQUAL(p.xform, CKPT_XFORM_PLAIN);
	CU_ASSERT_EQUAL(p.how[0], CKPT_XFORM_HOW_RAW);
	CU_ASSERT_EQUAL(s, n + 16);

	/* text: plain zstd (grouping would break its repeats); as small as zstd makes it */
	for (size_t i = 0; i < n;) {
		const char *w = words[next() % 10];
		size_t l = strlen(w) < n - i ? strlen(w) : n - i;

		memcpy(buf + i, w, l);
		i += l;
	}
	s = auto_size(buf, n, 0, &p);
	plain = zstd_size(buf, n, 1);
	CU_ASSERT_EQUAL(p.xform, CKPT_XFORM_PLAIN);
	CU_ASSERT(s > 0 && s <= plain + plain / 20 + 64);

	/* zeros, and int64 counters: tiny */
	memset(buf, 0, n);
	s = auto_size(buf, n, 0, &p);
	CU_ASSERT(s > 0 && s < n / 1000);
	for (size_t i = 0; i < n / 8; i++) {
		uint64_t v = i * 3;

		memcpy(buf + 8 * i, &v, 8);
	}
	s = auto_size(buf, n, 0, &p);
	plain = zstd_size(buf, n, 1);
	CU_ASSERT(s > 0 && s <= plain + plain / 20 + 64);

	/* the same random 4 KiB block again and again: zstd, never raw */
	th_fill(buf, 4096, 9);
	for (size_t i = 4096; i < n; i += 4096)
		memcpy(buf + i, buf, 4096);
	s = auto_size(buf, n, 0, &p);
	CU_ASSERT(s > 0 && s < n / 50);

	/* tiny and empty chunks */
	CU_ASSERT(auto_size(buf, 0, 0, &p) == 16);
	CU_ASSERT(auto_size(fp32, 63, 0, &p) > 0);
	CU_ASSERT(auto_size(fp32, 65, 0, &p) > 0);
	free(buf);
}

/* ---- hostile payloads ---- */

/* Decode damaged payload: must fail with CKPT_ECORRUPT and a message, or succeed; never write
 * outside dst[0, n). Returns 1 when it failed, 0 when it decoded, -1 on a broken promise. */
static int decode_damaged(const uint8_t *pl, size_t len, size_t n)
{
	struct ckpt_err err = { "" };
	uint8_t *copy = malloc(len ? len : 1), *dst = malloc(n + 32), *scratch = malloc(n + 32);
	int rc, res = -1;

	if (!copy || !dst || !scratch)
		goto out;
	memcpy(copy, pl, len); /* a heap block of exactly len bytes: ASan sees any over-read */
	memset(dst + n, 0x77, 32);
	memset(scratch + n, 0x66, 32);
	rc = ckpt_xform__decode(dst, n, copy, len, dctx, scratch, NULL, NULL, &err);
	for (int i = 0; i < 32; i++)
		if (dst[n + i] != 0x77 || scratch[n + i] != 0x66)
			goto out;
	if (rc == CKPT_OK)
		res = 0;
	else if (rc == CKPT_ECORRUPT && err.msg[0])
		res = 1;
out:
	free(copy);
	free(dst);
	free(scratch);
	return res;
}

static void test_corrupt_payloads(void)
{
	struct ckpt_xform_plan plans[3];
	struct ckpt_err err = { "" };
	size_t n = 4099, cap = ckpt_xform__bound(n), len;
	uint8_t *pl = malloc(cap), *scratch = malloc(n), *dst = malloc(n);
	const uint8_t *srcs[3] = { fp32, bf16, fp32 };

	CU_ASSERT_FATAL(pl && scratch && dst);
	plans[0] = make_plan(4, CKPT_XFORM_HOW_HUF);
	plans[0].how[0] = plans[0].how[1] = CKPT_XFORM_HOW_RAW; /* raw, raw, huf, huf + tail */
	plans[1] = make_plan(2, CKPT_XFORM_HOW_LZ);
	plans[2] = make_plan(1, CKPT_XFORM_HOW_LZ);
	for (int pi = 0; pi < 3; pi++) {
		int failed = 0, decoded = 0, broken = 0;

		CU_ASSERT_EQUAL_FATAL(ckpt_xform__encode(pl, cap, &len, srcs[pi], n, &plans[pi], cctx, 1,
							 scratch, &err), CKPT_OK);
		CU_ASSERT(len < n); /* at least one zstd plane in it */
		CU_ASSERT_EQUAL(decode_damaged(pl, len, n), 0);
		/* every byte flipped, two ways */
		for (size_t i = 0; i < len; i++) {
			for (int f = 0; f < 2; f++) {
				uint8_t old = pl[i];
				int r;

				pl[i] ^= f ? 0xff : 0x01;
				r = decode_damaged(pl, len, n);
				pl[i] = old;
				failed += r == 1;
				decoded += r == 0;
				broken += r < 0;
			}
		}
		CU_ASSERT_EQUAL(broken, 0);
		/* the head and table are checked strictly: flips there always fail */
		for (size_t i = 0; i < CKPT_XFORM_HEAD_SIZE + 8u * pl[1]; i++) {
			uint8_t old = pl[i];

			pl[i] ^= 0x01;
			CU_ASSERT_EQUAL(decode_damaged(pl, len, n), 1);
			pl[i] = old;
		}
		/* every truncation, one byte more, a wrong expected size */
		for (size_t l = 0; l < len; l++)
			CU_ASSERT_EQUAL(decode_damaged(pl, l, n), 1);
		pl[len] = 0;
		CU_ASSERT_EQUAL(decode_damaged(pl, len + 1, n), 1);
		CU_ASSERT_EQUAL(decode_damaged(pl, len, n - 1), 1);
		CU_ASSERT_EQUAL(decode_damaged(pl, len, n + 1), 1);
		printf("\n    plan %d: %zu-byte payload, %d flips refused, %d decoded", pi, len,
		       failed, decoded);
	}
	printf("\n    ");
	/* an unknown transform is named */
	CU_ASSERT_EQUAL_FATAL(ckpt_xform__encode(pl, cap, &len, fp32, n, &plans[0], cctx, 1, scratch,
						 &err), CKPT_OK);
	pl[0] = 3;
	CU_ASSERT_EQUAL(ckpt_xform__decode(dst, n, pl, len, dctx, scratch, NULL, NULL, &err),
			CKPT_ECORRUPT);
	CU_ASSERT(strstr(err.msg, "transform 3") != NULL);
	/* all zeros */
	memset(pl, 0, 64);
	CU_ASSERT_EQUAL(decode_damaged(pl, 64, 16), 1);
	free(pl);
	free(scratch);
	free(dst);
}

static void test_bad_arguments(void)
{
	struct ckpt_err err = { "" };
	struct ckpt_xform_plan p = make_plan(4, CKPT_XFORM_HOW_LZ);
	uint8_t buf[256], scratch[64];
	size_t size = 99;

	/* capacity below the bound */
	CU_ASSERT_EQUAL(ckpt_xform__encode(buf, ckpt_xform__bound(64) - 1, &size, fp32, 64, &p,
					   cctx, 1, scratch, &err), CKPT_EINVAL);
	/* plans that do not exist */
	p.width = 3;
	CU_ASSERT_EQUAL(ckpt_xform__encode(buf, sizeof(buf), &size, fp32, 64, &p, cctx, 1, scratch,
					   &err), CKPT_EINVAL);
	p = make_plan(1, CKPT_XFORM_HOW_LZ);
	p.xform = 9;
	CU_ASSERT_EQUAL(ckpt_xform__encode(buf, sizeof(buf), &size, fp32, 64, &p, cctx, 1, scratch,
					   &err), CKPT_EINVAL);
	/* grouping needs scratch */
	p = make_plan(2, CKPT_XFORM_HOW_LZ);
	CU_ASSERT_EQUAL(ckpt_xform__encode(buf, sizeof(buf), &size, fp32, 64, &p, cctx, 1, NULL,
					   &err), CKPT_EINVAL);
	/* more than a chunk may hold: refused before anything is read */
	CU_ASSERT_EQUAL(ckpt_xform__encode(buf, sizeof(buf), &size, fp32,
					   (size_t)CKPT_XFORM_MAX_RAW + 1, &p, cctx, 1, scratch,
					   &err), CKPT_EINVAL);
	CU_ASSERT(err.msg[0] != '\0');
}

int main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("xform", suite_init, suite_clean);
	if (!s || !CU_add_test(s, "group round trip", test_group_roundtrip) ||
	    !CU_add_test(s, "encode every plan", test_encode_every_plan) ||
	    !CU_add_test(s, "incompressible is raw", test_incompressible_is_raw) ||
	    !CU_add_test(s, "detect floats", test_detect_floats) ||
	    !CU_add_test(s, "detect other data", test_detect_other_data) ||
	    !CU_add_test(s, "corrupt payloads", test_corrupt_payloads) ||
	    !CU_add_test(s, "bad arguments", test_bad_arguments)) {
		CU_cleanup_registry();
		return 1;
	}
	return th_run();
}
