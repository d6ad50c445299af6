/* SPDX-License-Identifier: MIT */
/* Shared helpers for the CUnit test programs: temporary directories, data, an honest exit code. */
#ifndef CKPT_TEST_HARNESS_H
#define CKPT_TEST_HARNESS_H

#include <CUnit/Basic.h>
#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"

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
/* Real training state (../shared/data: 8 MiB of fp32 weights then 8 MiB of AdamW moments, tiled),
 * with the low byte of every 4-byte value perturbed by `seed` so that every version differs;
 * pseudo-random bytes without the data. The first call reads the files (once, whichever thread
 * calls first); a program that forks should make it before the first fork. */
void th_make_data(void *buf, size_t n, uint64_t seed);
/* Load region `name` of `step` and compare it with expect; 1 when bit-exact. A failed load is
 * reported on stderr. */
int th_load_eq(ckpt_ctx *ctx, uint64_t step, const char *name, const void *expect, size_t n);
/* Unset every inherited CKPT_* variable except CKPT_TEST_DATA, so that a user's environment
 * cannot change what a test means. */
void th_clean_environment(void);

/* A test's directories <base>/local and <base>/shared, both created. th_env_teardown (a suite
 * cleanup, also safe after a fatal assertion) removes those still alive. */
struct th_env {
	char *base;
	char local[4096];
	char shared[4096];
};
int th_env_new(struct th_env *e, const char *tag);
void th_env_free(struct th_env *e);
void th_env_teardown(void);
/* ckpt_open with local_dir and shared_dir, name "job", then the key/value pairs of fixed (a
 * program's own settings) and then those of kv (a test's), each NULL-terminated and may be NULL.
 * NULL on failure (a key refused, or ckpt_open failed), with the reason on stderr. */
ckpt_ctx *th_open_dirs(const char *local, const char *shared, const char *const *fixed,
		       const char *const *kv);
/* In multi-process test programs (MPI ranks): an expectation that, when it fails, says where
 * and which rank (the program's `rank`) and counts in the program's `failures`. */
#define TH_EXPECT(cond, ...)                                                                     \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "rank %d: %s:%d: expected %s: ", rank, __FILE__, __LINE__,  \
				#cond);                                                          \
			fprintf(stderr, __VA_ARGS__);                                            \
			fprintf(stderr, "\n");                                                   \
			failures++;                                                              \
		}                                                                                \
	} while (0)

/* The configuration of one "node" of a multi-process test (MPI ranks, concurrent processes):
 * local_dir base/node and shared_dir base/shared, both created, then the key/value pairs of kv
 * (NULL-terminated; "name" among them). NULL on failure, with the reason on stderr. */
ckpt_config *th_node_config(const char *base, const char *node, const char *const *kv);
/* th_open_dirs on e's directories, no fixed settings. */
ckpt_ctx *th_open(const struct th_env *e, const char *const *kv);

/* Run the registered suites with the basic runner and return the exit status the program should
 * use: non-zero when any assertion failed or any test/suite could not run. */
/* The threads of this process whose name (/proc/self/task/N/comm) starts with prefix: returns
 * how many, and in *at_nice how many of them run at nice value `nice`. */
int th_threads_named(const char *prefix, int nice, int *at_nice);

int th_run(void);

#endif
