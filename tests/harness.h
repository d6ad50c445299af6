/* SPDX-License-Identifier: MIT */
/* Shared helpers for the CUnit test programs: temporary directories, data, an honest exit code. */
#ifndef CKPT_TEST_HARNESS_H
#define CKPT_TEST_HARNESS_H

#include <CUnit/Basic.h>
#include <stddef.h>
#include <stdint.h>

/* A fresh directory under $TMPDIR (or /tmp), removed by th_rmtree. Returns a malloc'd path. */
char *th_mkdtemp(const char *tag);
/* rm -rf path (no-op for NULL). */
void th_rmtree(const char *path);
/* Deterministic pseudo-random bytes. */
void th_fill(void *buf, size_t n, uint64_t seed);
/* Read up to n bytes of a file of ../shared/data (real trained weights) into buf; returns bytes
 * read, or 0 when the file is missing (callers then fall back to th_fill). */
size_t th_real_data(const char *file, void *buf, size_t n);
/* Run `cmd` with /bin/sh; returns its exit status (or -1). */
int th_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Count the files below dir whose name matches glob pattern (fnmatch). */
int th_count_files(const char *dir, const char *pattern);
/* Run the registered suites with the basic runner and return the exit status the program should
 * use: non-zero when any assertion failed or any test/suite could not run. */
int th_run(void);

#endif
