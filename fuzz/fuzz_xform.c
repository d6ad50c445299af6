/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the chunk transform payload decoder (ckpt_xform__decode of untrusted stored
 * chunks), and the choose → encode → decode round trip with damaged payloads.
 * Input: byte 0 selects the mode (bits 0-1), the width hint (bits 2-3: 0, 2, 4, 8) and the zstd
 * level (bits 4-7: -5..10); then
 *   mode 0: u32 raw size the index would claim, then a stored payload;
 *   mode 1: a stored payload, with the raw size taken from its own head (so that mutations
 *           reach the plane table and the zstd frames without having to match two fields);
 *   mode 2/3: raw bytes to choose, encode and decode; the first 8 bytes (mode 3) are four
 *           (position, xor) pairs applied to the encoded payload before a second decode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "ckpt.h"
#include "fuzz_common.h"
#include "xform.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

static ZSTD_CCtx *cctx;
static ZSTD_DCtx *dctx;

/* Decode with exact-size heap buffers (ASan sees any write past n, any read past len). */
static int decode(const uint8_t *payload, size_t len, size_t n, uint8_t **out)
{
	struct ckpt_err err = { "" };
	uint8_t *copy = malloc(len ? len : 1), *dst = malloc(n ? n : 1), *scratch = malloc(n ? n : 1);
	uint8_t xf = 0, w = 0;
	int rc;

	FUZZ_CHECK(copy && dst && scratch);
	if (len)
		memcpy(copy, payload, len);
	rc = ckpt_xform__decode(dst, n, copy, len, dctx, scratch, &xf, &w, &err);
	FUZZ_CHECK(rc == CKPT_OK || (rc == CKPT_ECORRUPT && err.msg[0]));
	if (rc == CKPT_OK) {
		/* a payload that decodes says what it is: a known transform and width */
		FUZZ_CHECK(xf == CKPT_XFORM_PLAIN || xf == CKPT_XFORM_BYTEGROUP);
		FUZZ_CHECK(xf == CKPT_XFORM_PLAIN ? w == 1 : (w == 2 || w == 4 || w == 8));
		FUZZ_CHECK(len >= CKPT_XFORM_HEAD_SIZE + (size_t)w * CKPT_XFORM_PLANE_ENTRY_SIZE);
	}
	free(copy);
	free(scratch);
	if (out && rc == CKPT_OK)
		*out = dst;
	else
		free(dst);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static const unsigned hints[4] = { 0, 2, 4, 8 };
	struct ckpt_xform_plan plan;
	struct ckpt_err err = { "" };
	unsigned mode, hint;
	int level;

	if (!cctx) {
		cctx = ZSTD_createCCtx();
		dctx = ZSTD_createDCtx();
		FUZZ_CHECK(cctx && dctx);
	}
	if (len < 1)
		return 0;
	mode = data[0] & 3;
	hint = hints[(data[0] >> 2) & 3];
	level = (int)(data[0] >> 4) - 5;
	data++;
	len--;

	if (mode == 0) {
		if (len < 4)
			return 0;
		decode(data + 4, len - 4, ckpt_fmt__get32(data) % (FUZZ_MAX_RAW + 1), NULL);
	} else if (mode == 1) {
		size_t n = len >= 8 ? ckpt_fmt__get32(data + 4) : 0;

		if (n <= FUZZ_MAX_RAW)
			decode(data, len, n, NULL);
	} else {
		const uint8_t *flips = data;
		size_t nflips = 0, cap, size;
		uint8_t *payload, *scratch, *back = NULL;

		if (mode == 3) {
			if (len < 8)
				return 0;
			nflips = 4;
			data += 8;
			len -= 8;
		}
		ckpt_xform__choose(&plan, data, len, hint);
		cap = ckpt_xform__bound(len);
		payload = malloc(cap);
		scratch = malloc(len ? len : 1);
		FUZZ_CHECK(payload && scratch);
		FUZZ_CHECK(ckpt_xform__encode(payload, cap, &size, data, len, &plan, cctx, level,
					      scratch, &err) == CKPT_OK);
		FUZZ_CHECK(size <= cap);
		FUZZ_CHECK(decode(payload, size, len, &back) == CKPT_OK);
		FUZZ_CHECK(!memcmp(back, data, len));
		free(back);
		/* the wrong raw size, a truncation: always refused */
		FUZZ_CHECK(decode(payload, size, len + 1, NULL) == CKPT_ECORRUPT);
		FUZZ_CHECK(decode(payload, size - 1, len, NULL) == CKPT_ECORRUPT);
		for (size_t i = 0; i < nflips; i++)
			payload[(flips[2 * i] | (size_t)flips[2 * i + 1] << 8) % size] ^=
				(uint8_t)(flips[2 * i + 1] | 1);
		if (nflips)
			decode(payload, size, len, NULL);
		free(payload);
		free(scratch);
	}
	return 0;
}
