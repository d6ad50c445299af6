/* SPDX-License-Identifier: MIT */
/* libFuzzer target: shard index decoding and validation (ckpt_fmt__decode_index).
 * Input: a 24-byte prefix giving what the reader knows from the header and trailer, then the
 * index bytes:
 *   0  u32 nregions     (header)
 *   4  u32 flags        (bit 0: compressed tier)
 *   8  u64 data_start   (header data_offset)
 *   16 u64 data_end     (trailer index_offset)
 * An index that decodes must satisfy what readers rely on (every chunk inside the data area, the
 * chunk geometry follows from the sizes, names unique and findable) and re-encode to an index that
 * decodes the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

static void same(const struct ckpt_index *a, const struct ckpt_index *b)
{
	FUZZ_CHECK(a->nregions == b->nregions);
	for (uint32_t i = 0; i < a->nregions; i++) {
		const struct ckpt_region_meta *x = &a->regions[i], *y = &b->regions[i];

		FUZZ_CHECK(x->name_len == y->name_len && !memcmp(x->name, y->name, x->name_len + 1));
		FUZZ_CHECK(x->codec == y->codec && x->transform == y->transform);
		FUZZ_CHECK(x->nchunks == y->nchunks && x->raw_size == y->raw_size);
		FUZZ_CHECK(x->raw_xxh3 == y->raw_xxh3 && x->chunk_raw == y->chunk_raw);
		for (uint32_t c = 0; c < x->nchunks; c++)
			FUZZ_CHECK(!memcmp(&x->chunks[c], &y->chunks[c], sizeof(x->chunks[c])));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct ckpt_index idx, again;
	struct ckpt_err err;
	uint64_t ds, de;
	uint32_t nregions;
	int compressed;
	size_t isz;
	uint8_t *enc;

	if (len < 24)
		return 0;
	nregions = ckpt_fmt__get32(data);
	compressed = ckpt_fmt__get32(data + 4) & 1;
	ds = ckpt_fmt__get64(data + 8);
	de = ckpt_fmt__get64(data + 16);
	data += 24;
	len -= 24;
	if (ckpt_fmt__decode_index(&idx, data, len, nregions, ds, de, compressed, &err) != CKPT_OK) {
		FUZZ_CHECK(idx.regions == NULL && idx.nregions == 0 && err.msg[0] != '\0');
		return 0;
	}
	FUZZ_CHECK(idx.nregions == nregions);
	for (uint32_t i = 0; i < idx.nregions; i++) {
		const struct ckpt_region_meta *r = &idx.regions[i];
		uint64_t sum = 0;

		FUZZ_CHECK(r->name_len >= 1 && r->name_len <= CKPT_NAME_MAX);
		FUZZ_CHECK(strlen(r->name) == r->name_len);
		FUZZ_CHECK(ckpt_fmt__find_region(&idx, r->name) == r);
		FUZZ_CHECK(r->codec == (compressed ? CKPT_CODEC_ZSTD : CKPT_CODEC_NONE));
		FUZZ_CHECK((r->nchunks == 0) == (r->raw_size == 0));
		for (uint32_t c = 0; c < r->nchunks; c++) {
			const struct ckpt_chunk *ch = &r->chunks[c];
			uint64_t raw = ckpt_fmt__chunk_raw(r, c);

			FUZZ_CHECK(ch->offset >= ds && ch->offset <= de);
			FUZZ_CHECK(ch->stored_size <= de - ch->offset);
			FUZZ_CHECK(raw >= 1 && raw <= r->chunk_raw);
			/* what the readers allocate and decompress into */
			FUZZ_CHECK(!compressed || raw <= CKPT_MAX_CHUNK_RAW);
			sum += raw;
		}
		FUZZ_CHECK(sum == r->raw_size);
	}
	isz = ckpt_fmt__index_size(idx.regions, idx.nregions);
	FUZZ_CHECK(isz == len);
	enc = malloc(isz ? isz : 1);
	FUZZ_CHECK(enc);
	ckpt_fmt__encode_index(enc, idx.regions, idx.nregions);
	FUZZ_CHECK(ckpt_fmt__decode_index(&again, enc, isz, nregions, ds, de, compressed, &err) ==
		   CKPT_OK);
	same(&idx, &again);
	ckpt_fmt__index_free(&again);
	free(enc);
	ckpt_fmt__index_free(&idx);
	return 0;
}
