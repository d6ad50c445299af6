/* SPDX-License-Identifier: MIT */
/* Where files go: the names of step directories, shards and temporary files on both tiers
 * (docs/FORMAT.md, "Layout"). Pure string work, except that a temporary name asks store_host.c
 * for the host, pid and a random number that make it unique. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"
#include "store.h"

int ckpt_store__step_dir(char *buf, size_t len, const char *jobdir, uint64_t step)
{
	int n = snprintf(buf, len, "%s/step-%020" PRIu64, jobdir, step);

	return (n < 0 || (size_t)n >= len) ? CKPT_EINVAL : CKPT_OK;
}

void ckpt_store__local_name(char *buf, size_t len, uint32_t rank)
{
	snprintf(buf, len, "rank-%06" PRIu32 ".ckl", rank);
}

void ckpt_store__shared_name(char *buf, size_t len, uint32_t rank, uint64_t save_id)
{
	snprintf(buf, len, "rank-%06" PRIu32 "-%016" PRIx64 ".ckz", rank, save_id);
}

int ckpt_store__parse_step(const char *name, uint64_t *step)
{
	uint64_t v = 0;

	if (strncmp(name, "step-", 5) || strlen(name) != 25)
		return -1;
	for (const char *p = name + 5; *p; p++) {
		uint64_t d;

		if (*p < '0' || *p > '9')
			return -1;
		d = (uint64_t)(*p - '0');
		if (v > (UINT64_MAX - d) / 10) /* v * 10 + d would overflow */
			return -1;
		v = v * 10 + d;
	}
	*step = v;
	return 0;
}

int ckpt_store__tmp_path(char *buf, size_t len, const char *dir, const char *final_base)
{
	int n = snprintf(buf, len, "%s/.tmp.%s.%ld.%08" PRIx32 ".%s", dir, ckpt_store__hostname(),
			 (long)getpid(), (uint32_t)ckpt_store__random64(), final_base);

	return (n < 0 || (size_t)n >= len) ? CKPT_EINVAL : CKPT_OK;
}
