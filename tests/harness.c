/* SPDX-License-Identifier: MIT */
/* Shared helpers for the CUnit test programs. */
#include <dirent.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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
	/* no machine-wide fallback: make check sets CKPT_TEST_DATA (beside the source tree) */
	const char *dirs[] = { getenv("CKPT_TEST_DATA"), "../shared/data", "../../shared/data",
			       "../../../shared/data" };
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

int th_threads_named(const char *prefix, int nice, int *at_nice)
{
	char path[512], comm[64], stat[1024];
	int named = 0;
	struct dirent *e;
	DIR *d;
	FILE *f;

	*at_nice = 0;
	if (!(d = opendir("/proc/self/task")))
		return -1;
	while ((e = readdir(d))) {
		char *p;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		if (!(f = fopen(path, "r")))
			continue;
		p = fgets(comm, sizeof(comm), f);
		fclose(f);
		if (!p || strncmp(comm, prefix, strlen(prefix)))
			continue;
		named++;
		/* field 19 of stat is the nice value; the name (field 2) ends at the last ')' */
		snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
		if (!(f = fopen(path, "r")))
			continue;
		if (fgets(stat, sizeof(stat), f) && (p = strrchr(stat, ')'))) {
			for (int i = 0; i < 17 && p; i++)
				p = strchr(p + 1, ' ');
			*at_nice += p && strtol(p + 1, NULL, 10) == nice;
		}
		fclose(f);
	}
	closedir(d);
	return named;
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

static unsigned char *real;
static size_t real_n;

static void load_real(void)
{
	if (!(real = malloc(16u << 20)))
		return;
	real_n = th_real_data("weights-fp32.bin", real, 8u << 20);
	if (real_n == 8u << 20)
		real_n += th_real_data("adamw-state-fp32.bin", real + real_n, 8u << 20);
	if (!real_n) {
		free(real);
		real = NULL;
	}
}

void th_make_data(void *buf, size_t n, uint64_t seed)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	unsigned char *p = buf;

	pthread_once(&once, load_real); /* test threads may call this at once */
	if (!real) {
		th_fill(buf, n, seed);
		return;
	}
	for (size_t off = 0; off < n;) {
		size_t piece = n - off < real_n ? n - off : real_n;

		memcpy(p + off, real, piece);
		off += piece;
	}
	for (size_t i = 0; i < n; i += 4) {
		uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ull ^ (i * 0xD1B54A32D192ED03ull);

		x ^= x >> 29;
		p[i] ^= (unsigned char)(x | 1);
	}
}

int th_load_eq(ckpt_ctx *ctx, uint64_t step, const char *name, const void *expect, size_t n)
{
	void *buf = malloc(n ? n : 1);
	int rc, ok;

	if (!buf)
		return 0;
	memset(buf, 0xee, n);
	rc = ckpt_load(ctx, step, name, buf, n);
	if (rc != CKPT_OK)
		fprintf(stderr, "load step %llu '%s': %s: %s\n", (unsigned long long)step, name,
			ckpt_strerror(rc), ckpt_errmsg(ctx));
	ok = rc == CKPT_OK && (n == 0 || memcmp(buf, expect, n) == 0);
	free(buf);
	return ok;
}

void th_clean_environment(void)
{
	extern char **environ;
	char name[256];

	for (size_t i = 0; environ[i];) {
		size_t n = strcspn(environ[i], "=");

		if (strncmp(environ[i], "CKPT_", 5) || n >= sizeof(name) ||
		    !strncmp(environ[i], "CKPT_TEST_DATA=", 15)) {
			i++;
			continue;
		}
		memcpy(name, environ[i], n);
		name[n] = '\0';
		unsetenv(name); /* environ shifts down: look at index i again */
	}
}

/* Directories of the running tests, removed by th_env_teardown also after a fatal assertion. */
static char *live[8];

int th_env_new(struct th_env *e, const char *tag)
{
	memset(e, 0, sizeof(*e));
	if (!(e->base = th_mkdtemp(tag)))
		return -1;
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (!live[i]) {
			live[i] = e->base;
			break;
		}
	snprintf(e->local, sizeof(e->local), "%s/local", e->base);
	snprintf(e->shared, sizeof(e->shared), "%s/shared", e->base);
	if (mkdir(e->local, 0755) < 0 || mkdir(e->shared, 0755) < 0)
		return -1;
	return 0;
}

void th_env_free(struct th_env *e)
{
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (live[i] == e->base)
			live[i] = NULL;
	th_rmtree(e->base);
	free(e->base);
	e->base = NULL;
}

void th_env_teardown(void)
{
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (live[i]) {
			th_rmtree(live[i]);
			free(live[i]);
			live[i] = NULL;
		}
}

static int set_all(ckpt_config *cfg, const char *const *kv)
{
	for (size_t i = 0; kv && kv[i]; i += 2)
		if (ckpt_config_set(cfg, kv[i], kv[i + 1]) != CKPT_OK) {
			fprintf(stderr, "config %s=%s: %s\n", kv[i], kv[i + 1],
				ckpt_config_errmsg(cfg));
			return -1;
		}
	return 0;
}

ckpt_ctx *th_open_dirs(const char *local, const char *shared, const char *const *fixed,
		       const char *const *kv)
{
	ckpt_config *cfg = NULL;
	ckpt_ctx *ctx = NULL;
	int rc;

	if (ckpt_config_new(&cfg) != CKPT_OK)
		return NULL;
	if (ckpt_config_set(cfg, "local_dir", local) != CKPT_OK ||
	    ckpt_config_set(cfg, "shared_dir", shared) != CKPT_OK ||
	    ckpt_config_set(cfg, "name", "job") != CKPT_OK || set_all(cfg, fixed) < 0 ||
	    set_all(cfg, kv) < 0) {
		ckpt_config_free(cfg);
		return NULL;
	}
	rc = ckpt_open(&ctx, cfg);
	if (rc != CKPT_OK)
		fprintf(stderr, "ckpt_open: %s: %s\n", ckpt_strerror(rc), ckpt_errmsg(NULL));
	ckpt_config_free(cfg);
	return ctx;
}

ckpt_config *th_node_config(const char *base, const char *node, const char *const *kv)
{
	char local[4096], shared[4096];
	ckpt_config *cfg = NULL;

	snprintf(local, sizeof(local), "%s/%s", base, node);
	snprintf(shared, sizeof(shared), "%s/shared", base);
	if (th_sh("mkdir -p '%s' '%s'", local, shared) != 0) {
		fprintf(stderr, "th_node_config: cannot create %s and %s\n", local, shared);
		return NULL;
	}
	if (ckpt_config_new(&cfg) != CKPT_OK)
		return NULL;
	if (ckpt_config_set(cfg, "local_dir", local) != CKPT_OK ||
	    ckpt_config_set(cfg, "shared_dir", shared) != CKPT_OK || set_all(cfg, kv) < 0) {
		fprintf(stderr, "th_node_config: %s\n", ckpt_config_errmsg(cfg));
		ckpt_config_free(cfg);
		return NULL;
	}
	return cfg;
}

ckpt_ctx *th_open(const struct th_env *e, const char *const *kv)
{
	return th_open_dirs(e->local, e->shared, NULL, kv);
}
