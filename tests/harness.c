/* SPDX-License-Identifier: MIT */
/* Shared helpers for the CUnit test programs. */
#include <dirent.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "harness.h"

char *th_mkdtemp(const char *tag)
{
	const char *base = getenv("TMPDIR");
	char *p;

	if (!base || !*base)
		base = "/tmp";
	if (asprintf(&p, "%s/ckpt-%s-XXXXXX", base, tag) < 0)
		return NULL;
	if (!mkdtemp(p)) {
		free(p);
		return NULL;
	}
	return p;
}

int th_sh(const char *fmt, ...)
{
	char *cmd;
	va_list ap;
	int st;

	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) < 0) {
		va_end(ap);
		return -1;
	}
	va_end(ap);
	st = system(cmd);
	free(cmd);
	return (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
}

void th_rmtree(const char *path)
{
	if (path && *path && strcmp(path, "/"))
		th_sh("chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", path, path);
}

void th_fill(void *buf, size_t n, uint64_t seed)
{
	unsigned char *p = buf;
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)x;
	}
}

size_t th_real_data(const char *file, void *buf, size_t n)
{
	const char *dirs[] = { getenv("CKPT_TEST_DATA"), "../shared/data", "../../shared/data",
			       "../../../shared/data", "/work/shared/data" };
	char path[4096];

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		FILE *f;
		size_t got;

		if (!dirs[i])
			continue;
		snprintf(path, sizeof(path), "%s/%s", dirs[i], file);
		if (!(f = fopen(path, "rb")))
			continue;
		got = fread(buf, 1, n, f);
		fclose(f);
		return got;
	}
	return 0;
}

static int count_rec(const char *dir, const char *pattern)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		char p[4096];
		struct stat st;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (lstat(p, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode))
			n += count_rec(p, pattern);
		else if (!fnmatch(pattern, e->d_name, 0))
			n++;
	}
	closedir(d);
	return n;
}

int th_count_files(const char *dir, const char *pattern)
{
	return count_rec(dir, pattern);
}

int th_run(void)
{
	unsigned failures, tests_failed, suites_failed;

	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	/* The basic runner exits 0 even when assertions fail: count failures ourselves. */
	failures = CU_get_number_of_failures();
	tests_failed = CU_get_number_of_tests_failed();
	suites_failed = CU_get_number_of_suites_failed();
	if (CU_get_number_of_tests_run() == 0) {
		fprintf(stderr, "no test ran\n");
		failures++;
	}
	CU_cleanup_registry();
	return (failures || tests_failed || suites_failed || CU_get_error()) ? 1 : 0;
}
