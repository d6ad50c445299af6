/* SPDX-License-Identifier: MIT */
/* libFuzzer target: a whole shard file, both tiers, through every reader of shard data:
 * ckpt_shard__open (header, trailer, index), ckpt_shard__read_region and ckpt_shard__verify
 * (zstd decompression of untrusted chunks, chunk and region checksums), and the restore tool's
 * parallel decoder tool_read_shard (tools/tool_read.c), restoring and verify-only.
 * Input: a shard file (.ckl or .ckz). Each input runs as it is, then with every checksum repaired
 * (fuzz_common.h) so that mutations get past the checksums to the code behind them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "codec.h"
#include "fuzz_common.h"
#include "shard.h"
#include "tool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

static struct ckpt_codec *codec;
static char path[4200];

/* Raw bytes the readers would produce: bounded so that the harness stays small. */
static int small_enough(const struct ckpt_shard *s)
{
	uint64_t total = 0;

	for (uint32_t i = 0; i < s->idx.nregions; i++) {
		const struct ckpt_region_meta *r = &s->idx.regions[i];

		if (r->raw_size > FUZZ_MAX_RAW)
			return 0;
		total += r->raw_size;
	}
	return total <= FUZZ_MAX_RAW;
}

static void read_all(const uint8_t *data, size_t len)
{
	struct ckpt_shard *s;
	struct ckpt_err err;
	struct tool_shard_data out;
	int rc, compressed, all_ok = 1;

	fuzz_write_file(path, data, len);
	err.msg[0] = '\0';
	if ((rc = ckpt_shard__open(&s, path, &err)) < 0) {
		FUZZ_CHECK(s == NULL && err.msg[0] != '\0');
		return;
	}
	/* what an open shard promises its users */
	FUZZ_CHECK(s->file_size == len && s->trl.file_size == len);
	FUZZ_CHECK(s->hdr.save_id == s->trl.save_id && s->hdr.nregions == s->idx.nregions);
	FUZZ_CHECK(s->trl.index_offset >= s->hdr.data_offset);
	FUZZ_CHECK(s->trl.index_offset + s->trl.index_size <= len - CKPT_TRAILER_SIZE);
	compressed = !!(s->hdr.flags & CKPT_FLAG_COMPRESSED);
	if (!small_enough(s)) {
		ckpt_shard__close(s);
		return;
	}
	for (uint32_t i = 0; i < s->idx.nregions; i++) {
		const struct ckpt_region_meta *r = &s->idx.regions[i];
		uint8_t *buf = malloc(r->raw_size ? r->raw_size : 1);

		FUZZ_CHECK(buf);
		FUZZ_CHECK(ckpt_fmt__find_region(&s->idx, r->name) == r);
		rc = ckpt_shard__read_region(s, r, buf, codec, &err);
		FUZZ_CHECK(rc == CKPT_OK || rc == CKPT_ECORRUPT);
		if (rc == CKPT_OK)
			FUZZ_CHECK(XXH3_64bits(buf, r->raw_size) == r->raw_xxh3);
		else
			all_ok = 0;
		free(buf);
	}
	rc = ckpt_shard__verify(s, codec, &err);
	FUZZ_CHECK(rc == CKPT_OK || rc == CKPT_ECORRUPT);
	/* the two readers agree on what is intact */
	FUZZ_CHECK((rc == CKPT_OK) == all_ok);
	if (compressed) {
		int vrc = rc;

		rc = tool_read_shard(&out, s, 2, NULL, &err);
		FUZZ_CHECK(rc == CKPT_OK || rc == CKPT_ECORRUPT);
		FUZZ_CHECK((rc == CKPT_OK) == (vrc == CKPT_OK));
		if (rc == CKPT_OK) {
			FUZZ_CHECK(out.n == s->idx.nregions);
			for (size_t i = 0; i < out.n; i++)
				FUZZ_CHECK(XXH3_64bits(out.regs[i].data, out.regs[i].size) ==
					   s->idx.regions[i].raw_xxh3);
		} else {
			FUZZ_CHECK(out.mem == NULL && out.regs == NULL);
		}
		tool_shard_data_free(&out);
		rc = tool_read_shard(NULL, s, 2, NULL, &err);
		FUZZ_CHECK((rc == CKPT_OK) == (vrc == CKPT_OK));
	}
	ckpt_shard__close(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	uint8_t *fixed;

	if (!codec) {
		snprintf(path, sizeof(path), "%s/shard", fuzz_tmpdir());
		FUZZ_CHECK(ckpt_codec__new(&codec, 1) == CKPT_OK);
	}
	read_all(data, len);
	if (!(fixed = malloc(len ? len : 1)))
		return 0;
	memcpy(fixed, data, len);
	fuzz_fix_shard(fixed, len);
	if (memcmp(fixed, data, len))
		read_all(fixed, len);
	free(fixed);
	return 0;
}
