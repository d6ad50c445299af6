/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the chunk codec (ckpt_codec__decompress of untrusted zstd frames, and the
 * compress/decompress round trip at every level the configuration allows).
 * Input: byte 0 selects the level, bytes 1..4 (u32) the raw size the index would claim, then a
 * zstd frame (a stored chunk). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "codec.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

static struct ckpt_codec *codecs[27]; /* compress_level -7..19 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct ckpt_codec *c;
	struct ckpt_err err;
	size_t raw, cap, got;
	uint8_t *dst, *back;
	int level, rc;

	if (len < 5)
		return 0;
	level = data[0] % 27;
	if (!codecs[level])
		FUZZ_CHECK(ckpt_codec__new(&codecs[level], level - 7) == CKPT_OK);
	c = codecs[level];
	raw = ckpt_fmt__get32(data + 1) % (FUZZ_MAX_RAW + 1);
	data += 5;
	len -= 5;

	/* decompress: exactly `raw` bytes or CKPT_ECORRUPT, never more than raw written */
	dst = malloc(raw ? raw : 1);
	FUZZ_CHECK(dst);
	rc = ckpt_codec__decompress(c, dst, raw, data, len, &err);
	FUZZ_CHECK(rc == CKPT_OK || (rc == CKPT_ECORRUPT && err.msg[0]));
	free(dst);

	/* round trip of the input itself as a chunk */
	cap = ckpt_codec__bound(len);
	dst = malloc(cap);
	back = malloc(len ? len : 1);
	FUZZ_CHECK(dst && back);
	FUZZ_CHECK(ckpt_codec__compress(c, dst, cap, data, len, &got, &err) == CKPT_OK);
	FUZZ_CHECK(got <= cap);
	FUZZ_CHECK(ckpt_codec__decompress(c, back, len, dst, got, &err) == CKPT_OK);
	FUZZ_CHECK(!memcmp(back, data, len));
	if (len)
		FUZZ_CHECK(ckpt_codec__decompress(c, back, len - 1, dst, got, &err) == CKPT_ECORRUPT);
	free(dst);
	free(back);
	return 0;
}
