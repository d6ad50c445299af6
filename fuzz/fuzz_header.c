/* SPDX-License-Identifier: MIT */
/* libFuzzer target: shard header and trailer decoding (ckpt_fmt__decode_header/_trailer).
 * Input: any bytes; the first 64 are taken as a header and as a trailer. A structure that decodes
 * must encode back to the same 64 bytes: every byte of both is a field or the checksum. */
#include <stdint.h>
#include <string.h>

#include "ckpt.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	uint8_t buf[64], enc[64];
	struct ckpt_header h;
	struct ckpt_trailer t;
	struct ckpt_err err;

	/* as it is: also shorter than a header */
	if (ckpt_fmt__decode_header(&h, data, len, &err) == CKPT_OK) {
		ckpt_fmt__encode_header(enc, &h);
		FUZZ_CHECK(!memcmp(enc, data, 64));
	}
	if (ckpt_fmt__decode_trailer(&t, data, len, &err) == CKPT_OK) {
		ckpt_fmt__encode_trailer(enc, &t);
		FUZZ_CHECK(!memcmp(enc, data, 64));
	}
	/* with the checksum repaired, so that mutations reach the field checks */
	memset(buf, 0, sizeof(buf));
	memcpy(buf, data, len < 64 ? len : 64);
	ckpt_fmt__put64(buf + 56, XXH3_64bits(buf, 56));
	if (ckpt_fmt__decode_header(&h, buf, sizeof(buf), &err) == CKPT_OK) {
		FUZZ_CHECK(h.version == CKPT_FMT_VERSION && h.rank < h.nranks);
		FUZZ_CHECK(h.nregions <= CKPT_MAX_REGIONS && h.data_offset >= CKPT_HEADER_SIZE);
		ckpt_fmt__encode_header(enc, &h);
		FUZZ_CHECK(!memcmp(enc, buf, 64));
	} else {
		FUZZ_CHECK(err.msg[0] != '\0');
	}
	if (ckpt_fmt__decode_trailer(&t, buf, sizeof(buf), &err) == CKPT_OK) {
		ckpt_fmt__encode_trailer(enc, &t);
		FUZZ_CHECK(!memcmp(enc, buf, 64));
	} else {
		FUZZ_CHECK(err.msg[0] != '\0');
	}
	return 0;
}
