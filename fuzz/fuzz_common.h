/* SPDX-License-Identifier: MIT */
/* Helpers shared by the libFuzzer targets: a private temporary file, checksum repair, checks.
 *
 * Every structure of the format carries an XXH3 checksum, so a mutated input almost never passes
 * the first check. The targets therefore run each input twice: as it is (the checks that refuse
 * it), and once more with every checksum recomputed (fuzz_fix_*), which lets mutations reach the
 * field validation, the index walk, the zstd decoder and the region hashes behind it. */
#ifndef CKPT_FUZZ_COMMON_H
#define CKPT_FUZZ_COMMON_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "fmt.h"

/* A failed invariant is a finding: abort so that libFuzzer keeps the input as a crash. */
#define FUZZ_CHECK(cond)                                                                        \
	do {                                                                                    \
		if (!(cond)) {                                                                  \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                \
		}                                                                               \
	} while (0)

/* Bounds of what a target reads back, so that a forged size cannot make the harness (not the
 * library) allocate gigabytes. Inputs are at most a few hundred KiB. */
#define FUZZ_MAX_RAW (4u << 20)

static char fuzz_dir[4096];

static inline void fuzz_cleanup(void)
{
	char cmd[4200];

	if (fuzz_dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fuzz_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir);
		fuzz_dir[0] = '\0';
	}
}

/* A directory of this process, on tmpfs when there is one (every input is written to a file). */
static inline const char *fuzz_tmpdir(void)
{
	const char *base = getenv("FUZZ_TMPDIR");

	if (fuzz_dir[0])
		return fuzz_dir;
	if (!base || !*base)
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/ckpt-fuzz-XXXXXX", base);
	if (!mkdtemp(fuzz_dir)) {
		perror(fuzz_dir);
		abort();
	}
	atexit(fuzz_cleanup);
	return fuzz_dir;
}

static inline void fuzz_write_file(const char *path, const uint8_t *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t done = 0;

	if (fd < 0) {
		perror(path);
		abort();
	}
	while (done < len) {
		ssize_t n = write(fd, data + done, len - done);

		if (n <= 0) {
			perror(path);
			abort();
		}
		done += (size_t)n;
	}
	close(fd);
}

static inline int fuzz_in(uint64_t off, uint64_t size, size_t len)
{
	return off <= len && size <= len - off;
}

/* Decode one transform payload (docs/FORMAT.md 3.8.2) of want raw bytes into raw, independently of
 * the code under test: planes with libzstd, un-grouped byte by byte. 1 when it decodes. */
static inline int fuzz_decode_payload(uint8_t *raw, uint64_t want, const uint8_t *p, uint64_t sz)
{
	unsigned w;
	uint64_t m, pos;
	uint8_t *plane;
	int ok = 0;

	if (sz < 8 || (p[0] != 1 && p[0] != 2) || ckpt_fmt__get32(p + 4) != want)
		return 0;
	w = p[1];
	if ((p[0] == 1 && w != 1) || (p[0] == 2 && w != 2 && w != 4 && w != 8) || sz < 8 + 8 * w)
		return 0;
	m = want / w;
	pos = 8 + 8 * (uint64_t)w;
	if (!(plane = malloc(m ? m : 1)))
		return 0;
	for (unsigned k = 0; k < w; k++) {
		const uint8_t *e = p + 8 + 8 * k;
		uint64_t ps = ckpt_fmt__get32(e + 4);

		if (ps > sz - pos)
			goto out;
		if (e[0] == 0 && ps == m) {
			memcpy(plane, p + pos, (size_t)m);
		} else if (e[0] == 1) {
			size_t got = ZSTD_decompress(plane, (size_t)m, p + pos, (size_t)ps);

			if (ZSTD_isError(got) || got != m)
				goto out;
		} else {
			goto out;
		}
		for (uint64_t i = 0; i < m; i++)
			raw[i * w + k] = plane[i];
		pos += ps;
	}
	if (sz - pos != want - m * w)
		goto out;
	memcpy(raw + m * w, p + pos, (size_t)(want - m * w));
	ok = 1;
out:
	free(plane);
	return ok;
}

/* XXH3 of a region whose stored chunks are zstd frames (transform 0) or transform payloads
 * (transform 1; chunk entries of esize bytes): decode with libzstd itself (not the code under
 * test). 0 and *ok = 0 when a chunk does not decode to its raw bytes. */
static inline uint64_t fuzz_raw_hash(const uint8_t *file, size_t len, const uint8_t *chunks,
				     size_t esize, uint32_t nchunks, uint64_t raw_size,
				     uint64_t chunk_raw, int *ok)
{
	XXH3_state_t *st;
	uint8_t *raw;
	uint64_t h = 0;

	*ok = 0;
	if (raw_size > FUZZ_MAX_RAW || (raw_size && chunk_raw == 0))
		return 0;
	if (!(raw = malloc(raw_size ? raw_size : 1)) || !(st = XXH3_createState())) {
		free(raw);
		return 0;
	}
	XXH3_64bits_reset(st);
	for (uint32_t c = 0; c < nchunks; c++) {
		uint64_t off = ckpt_fmt__get64(chunks + esize * c);
		uint64_t sz = ckpt_fmt__get64(chunks + esize * c + 8);
		uint64_t start = (uint64_t)c * chunk_raw;
		uint64_t want;
		size_t got;

		if (start >= raw_size || !fuzz_in(off, sz, len))
			goto out;
		want = raw_size - start < chunk_raw ? raw_size - start : chunk_raw;
		if (esize == CKPT_CHUNK_ENTRY_SIZE_X) {
			if (!fuzz_decode_payload(raw, want, file + off, sz))
				goto out;
		} else {
			got = ZSTD_decompress(raw, (size_t)want, file + off, (size_t)sz);
			if (ZSTD_isError(got) || got != want)
				goto out;
		}
		XXH3_64bits_update(st, raw, (size_t)want);
	}
	h = XXH3_64bits_digest(st);
	*ok = 1;
out:
	XXH3_freeState(st);
	free(raw);
	return h;
}

/*
 * Recompute every checksum of a shard image in place (file = the whole file): the header's, each
 * chunk's stored XXH3 and each region's raw XXH3 (zstd regions: when they decode), the index's
 * and the trailer's; the trailer's file_size is set to len. Fields are walked leniently, without
 * the library's validation: what is out of range stays as it is.
 */
static inline void fuzz_fix_shard(uint8_t *file, size_t len)
{
	uint64_t ioff, isize;
	uint32_t nregions;
	uint8_t *t;
	size_t pos = 0;

	if (len < CKPT_HEADER_SIZE + CKPT_TRAILER_SIZE)
		return;
	ckpt_fmt__put64(file + 56, XXH3_64bits(file, 56));
	t = file + len - CKPT_TRAILER_SIZE;
	nregions = ckpt_fmt__get32(file + 40);
	ioff = ckpt_fmt__get64(t + 8);
	isize = ckpt_fmt__get64(t + 16);
	if (fuzz_in(ioff, isize, len - CKPT_TRAILER_SIZE)) {
		uint8_t *idx = file + ioff;

		for (uint32_t i = 0; i < nregions && isize - pos >= CKPT_REGION_ENTRY_SIZE; i++) {
			uint8_t *e = idx + pos;
			uint16_t name_len = (uint16_t)(e[0] | e[1] << 8);
			uint32_t nchunks = ckpt_fmt__get32(e + 4);
			uint64_t raw_size = ckpt_fmt__get64(e + 8), chunk_raw = ckpt_fmt__get64(e + 24);
			uint8_t *chunks;
			/* transform 1 regions have 32-byte chunk entries (docs/FORMAT.md 3.5) */
			size_t esize = e[2] == CKPT_TRANSFORM_CHUNKS ? CKPT_CHUNK_ENTRY_SIZE_X :
				       CKPT_CHUNK_ENTRY_SIZE;

			pos += CKPT_REGION_ENTRY_SIZE;
			if (isize - pos < name_len)
				break;
			pos += name_len;
			if ((uint64_t)nchunks * esize > isize - pos)
				break;
			chunks = idx + pos;
			for (uint32_t c = 0; c < nchunks; c++) {
				uint8_t *ce = chunks + (size_t)c * esize;
				uint64_t off = ckpt_fmt__get64(ce), sz = ckpt_fmt__get64(ce + 8);

				if (fuzz_in(off, sz, len))
					ckpt_fmt__put64(ce + 16, XXH3_64bits(file + off, (size_t)sz));
			}
			if (e[3] == CKPT_CODEC_NONE && nchunks == 1) {
				uint64_t off = ckpt_fmt__get64(chunks);

				if (fuzz_in(off, raw_size, len))
					ckpt_fmt__put64(e + 16, XXH3_64bits(file + off, (size_t)raw_size));
			} else if (e[3] == CKPT_CODEC_NONE && nchunks == 0) {
				ckpt_fmt__put64(e + 16, XXH3_64bits(NULL, 0));
			} else if (e[3] == CKPT_CODEC_ZSTD) {
				int ok;
				uint64_t h = fuzz_raw_hash(file, len, chunks, esize, nchunks, raw_size,
							   chunk_raw, &ok);

				if (ok)
					ckpt_fmt__put64(e + 16, h);
			}
			pos += (size_t)nchunks * esize;
		}
		ckpt_fmt__put64(t + 24, XXH3_64bits(idx, (size_t)isize));
	}
	ckpt_fmt__put64(t + 40, len);
	ckpt_fmt__put64(t + 56, XXH3_64bits(t, 56));
}

/* The MANIFEST's checksum: its last 8 bytes, over everything before them. */
static inline void fuzz_fix_manifest(uint8_t *m, size_t len)
{
	if (len >= 8)
		ckpt_fmt__put64(m + len - 8, XXH3_64bits(m, len - 8));
}

#endif
