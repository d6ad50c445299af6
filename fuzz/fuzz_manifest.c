/* SPDX-License-Identifier: MIT */
/* libFuzzer target: MANIFEST decoding (ckpt_fmt__decode_manifest), and reading one from a step
 * directory (ckpt_step__manifest: the file read, the step check, the shard lookups it names).
 * Input: a MANIFEST file. Runs it as it is and with its checksum repaired; a manifest that decodes
 * must encode back to the same bytes, reserved bytes aside. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt.h"
#include "fuzz_common.h"
#include "step.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

static void roundtrip(const struct ckpt_manifest *m, const uint8_t *buf, size_t len)
{
	size_t n = ckpt_fmt__manifest_size(m->nranks);
	uint8_t *enc, *want;

	FUZZ_CHECK(n == len && m->nranks >= 1 && m->nranks <= CKPT_MAX_RANKS);
	FUZZ_CHECK(m->version == CKPT_FMT_VERSION && m->ranks);
	enc = malloc(n);
	want = malloc(n);
	FUZZ_CHECK(enc && want);
	ckpt_fmt__encode_manifest(enc, m);
	/* reserved bytes are written as zero and ignored when read (docs/FORMAT.md section 10) */
	memcpy(want, buf, n);
	memset(want + 40, 0, 8);
	for (uint32_t r = 0; r < m->nranks; r++)
		memset(want + CKPT_MANIFEST_HEAD + (size_t)r * CKPT_MANIFEST_RANK + 28, 0, 4);
	fuzz_fix_manifest(want, n);
	FUZZ_CHECK(!memcmp(enc, want, n));
	free(enc);
	free(want);
}

/* Through the file system: <dir>/job/step-<its step>/MANIFEST, shards checked. */
static void from_file(const uint8_t *buf, size_t len)
{
	static char job[4200];
	char step[4300], path[4400];
	struct ckpt_manifest m;
	struct ckpt_err err;
	uint64_t s = len >= 24 ? ckpt_fmt__get64(buf + 16) : 7;

	if (!job[0]) {
		snprintf(job, sizeof(job), "%s/job", fuzz_tmpdir());
		FUZZ_CHECK(mkdir(job, 0700) == 0);
	}
	snprintf(step, sizeof(step), "%s/step-%020llu", job, (unsigned long long)s);
	mkdir(step, 0700);
	snprintf(path, sizeof(path), "%s/MANIFEST", step);
	fuzz_write_file(path, buf, len);
	if (ckpt_step__manifest(job, s, &m, 1, &err) == CKPT_OK) {
		/* no shard exists: only a manifest naming none could pass, and none can */
		FUZZ_CHECK(!"a manifest without its shards passed");
	}
	FUZZ_CHECK(m.ranks == NULL && err.msg[0] != '\0');
	unlink(path);
	rmdir(step);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct ckpt_manifest m;
	struct ckpt_err err;
	uint8_t *buf;

	if (ckpt_fmt__decode_manifest(&m, data, len, &err) == CKPT_OK) {
		roundtrip(&m, data, len);
		ckpt_fmt__manifest_free(&m);
	} else {
		FUZZ_CHECK(m.ranks == NULL && err.msg[0] != '\0');
	}
	if (!(buf = malloc(len ? len : 1)))
		return 0;
	memcpy(buf, data, len);
	fuzz_fix_manifest(buf, len);
	if (ckpt_fmt__decode_manifest(&m, buf, len, &err) == CKPT_OK) {
		roundtrip(&m, buf, len);
		ckpt_fmt__manifest_free(&m);
	}
	from_file(buf, len);
	free(buf);
	return 0;
}
