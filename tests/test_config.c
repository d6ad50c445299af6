/* SPDX-License-Identifier: MIT */
/* Unit tests of the configuration module: keys, defaults, validation, CKPT_* environment. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "config.h"
#include "config_hint.h"
#include "harness.h"

/* Every key with its documented default, as ckpt_config_get prints it. */
static const struct {
	const char *key, *def;
} defaults[] = {
	{ "local_dir", "" },        { "shared_dir", "" },     { "name", "default" },
	{ "compress_level", "1" },  { "keep_local", "2" },    { "keep_shared", "3" },
	{ "drain_threads", "2" },   { "io_backend", "auto" }, { "chunk_size", "4194304" },
	{ "max_pending", "2" },     { "close_timeout", "600" }, { "io_depth", "4" },
	{ "drain_nice", "10" },     { "mpi_timeout", "600" }, { "fault_kill_at", "" },
	{ "log_level", "1" },       { "require_persistent", "0" }, { "cluster", "auto" },
	{ "stage_bytes", "0" },
	{ "chunk_transform", "auto" }, { "elem_width", "auto" },
	{ "probe_timeout", "5" },   { "stall_after", "5" },   { "stall_wait", "0.5" },
	{ "read_grace", "60" },     { "writer_lease", "60" },
};
#define NDEFAULTS (sizeof(defaults) / sizeof(defaults[0]))

static char *envname(const char *key)
{
	static char buf[80];
	size_t i;

	snprintf(buf, sizeof(buf), "CKPT_");
	for (i = 0; key[i] && i < 60; i++)
		buf[5 + i] = (char)(key[i] >= 'a' && key[i] <= 'z' ? key[i] - 32 : key[i]);
	buf[5 + i] = '\0';
	return buf;
}

/* The tests must not see a CKPT_* variable of whoever runs them. */
static void unset_all_env(void)
{
	for (size_t i = 0; ckpt_config__key(i); i++)
		unsetenv(envname(ckpt_config__key(i)));
}

static int suite_init(void)
{
	unset_all_env();
	return 0;
}

static int key_index(const char *key)
{
	for (size_t i = 0; ckpt_config__key(i); i++)
		if (!strcmp(ckpt_config__key(i), key))
			return (int)i;
	return -1;
}

static void test_defaults(void)
{
	ckpt_config *cfg = NULL;
	size_t nkeys = 0;

	CU_ASSERT_EQUAL_FATAL(ckpt_config_new(&cfg), CKPT_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	/* the table above covers every key the module has, and nothing else */
	while (ckpt_config__key(nkeys))
		nkeys++;
	CU_ASSERT_EQUAL(nkeys, CKPT_NKEYS);
	CU_ASSERT_EQUAL(nkeys, NDEFAULTS);
	for (size_t i = 0; i < NDEFAULTS; i++) {
		const char *v = ckpt_config_get(cfg, defaults[i].key);

		CU_ASSERT_PTR_NOT_NULL(v);
		if (!v || strcmp(v, defaults[i].def)) {
			fprintf(stderr, "default of %s: got '%s', want '%s'\n", defaults[i].key,
				v ? v : "(null)", defaults[i].def);
			CU_FAIL("wrong default");
		}
		CU_ASSERT(key_index(defaults[i].key) >= 0);
		CU_ASSERT_EQUAL(cfg->origin[key_index(defaults[i].key)], CKPT_FROM_DEFAULT);
	}
	CU_ASSERT_PTR_NULL(ckpt_config_get(cfg, "no_such_key"));
	CU_ASSERT_PTR_NULL(ckpt_config_get(cfg, ""));
	CU_ASSERT_PTR_NULL(ckpt_config_get(cfg, NULL));
	CU_ASSERT_PTR_NULL(ckpt_config_get(NULL, "name"));
	CU_ASSERT_STRING_EQUAL(ckpt_config_errmsg(cfg), "");
	CU_ASSERT_PTR_NOT_NULL(ckpt_config_errmsg(NULL));
	CU_ASSERT_EQUAL(ckpt_config__check(cfg, NULL), CKPT_OK);
	ckpt_config_free(cfg);
	CU_ASSERT_EQUAL(ckpt_config_new(NULL), CKPT_EINVAL);
}

/* One ckpt_config_set case: want is the get() result after a good value, NULL for a bad one. */
struct set_case {
	const char *key, *value, *want;
};

static const struct set_case set_cases[] = {
	{ "local_dir", "/tmp/ckpt-local", "/tmp/ckpt-local" },
	{ "local_dir", "relative/dir", "relative/dir" },
	{ "local_dir", "", NULL },
	{ "local_dir", "a\nb", NULL },
	{ "local_dir", "a\rb", NULL },
	{ "shared_dir", "/mnt/shared", "/mnt/shared" },
	{ "shared_dir", "", NULL },
	{ "name", "job-1.a_b", "job-1.a_b" },
	{ "name", "A", "A" },
	{ "name", "../x", NULL },
	{ "name", ".hidden", NULL },
	{ "name", "-dash", NULL },
	{ "name", "a/b", NULL },
	{ "name", "a b", NULL },
	{ "name", "", NULL },
	{ "name", "x\ty", NULL },
	{ "compress_level", "-7", "-7" },
	{ "compress_level", "19", "19" },
	{ "compress_level", "3", "3" },
	{ "compress_level", "20", NULL },
	{ "compress_level", "-8", NULL },
	{ "compress_level", "abc", NULL },
	{ "compress_level", "3x", NULL },
	{ "compress_level", "", NULL },
	{ "compress_level", "99999999999999999999999", NULL },
	{ "keep_local", "0", "0" },
	{ "keep_local", "1000000", "1000000" },
	{ "keep_local", "1000001", NULL },
	{ "keep_local", "-1", NULL },
	{ "keep_shared", "0", "0" },
	{ "keep_shared", "7", "7" },
	{ "keep_shared", "-1", NULL },
	{ "keep_shared", "4294967296", NULL },
	{ "drain_threads", "1", "1" },
	{ "drain_threads", "256", "256" },
	{ "drain_threads", "0", NULL },
	{ "drain_threads", "257", NULL },
	{ "io_backend", "posix", "posix" },
	{ "io_backend", "uring", "uring" },
	{ "io_backend", "io_uring", "uring" },
	{ "io_backend", "auto", "auto" },
	{ "io_backend", "URING", NULL },
	{ "io_backend", "aio", NULL },
	{ "io_backend", "", NULL },
	{ "chunk_size", "65536", "65536" },
	{ "chunk_size", "64K", "65536" },
	{ "chunk_size", "64k", "65536" },
	{ "chunk_size", "64KiB", "65536" },
	{ "chunk_size", "64KB", "65536" },
	{ "chunk_size", "1M", "1048576" },
	{ "chunk_size", "2MiB", "2097152" },
	{ "chunk_size", "256M", "268435456" },
	{ "chunk_size", "65535", NULL },
	{ "chunk_size", "257M", NULL },
	{ "chunk_size", "1G", NULL },
	{ "chunk_size", "1GiB", NULL },
	{ "chunk_size", "4X", NULL },
	{ "chunk_size", "-1", NULL },
	{ "chunk_size", "", NULL },
	{ "chunk_size", "4 M", NULL },
	{ "chunk_size", "0x10000", NULL },
	{ "chunk_size", "M", NULL },
	{ "max_pending", "1", "1" },
	{ "max_pending", "1024", "1024" },
	{ "max_pending", "0", NULL },
	{ "max_pending", "1025", NULL },
	{ "close_timeout", "0", "0" },
	{ "close_timeout", "0.5", "0.5" },
	/* get prints plain decimals that set takes back ("%g" printed 6.04799e+05 and 3e-22) */
	{ "close_timeout", "604799.125", "604799.125" },
	{ "close_timeout", "00000.0000000000000000003", "0" },
	{ "close_timeout", "0.000000001", "0.000000001" },
	{ "close_timeout", "600.000", "600" },
	{ "close_timeout", "1e3", NULL },     /* decimal only, as documented */
	{ "close_timeout", "0x10", NULL },
	{ "close_timeout", "0x1p4", NULL },
	{ "close_timeout", " 5", NULL },
	{ "close_timeout", "1.5.2", NULL },
	{ "close_timeout", ".", NULL },
	{ "close_timeout", "+5", NULL },
	{ "close_timeout", "2.", "2" },
	{ "close_timeout", "604800", "604800" },
	{ "close_timeout", "604801", NULL },
	{ "close_timeout", "-1", NULL },
	{ "close_timeout", "nan", NULL },
	{ "close_timeout", "inf", NULL },
	{ "close_timeout", "5s", NULL },
	{ "close_timeout", "", NULL },
	{ "io_depth", "1", "1" },
	{ "io_depth", "64", "64" },
	{ "io_depth", "0", NULL },
	{ "io_depth", "65", NULL },
	{ "drain_nice", "0", "0" },
	{ "drain_nice", "19", "19" },
	{ "drain_nice", "-1", NULL },
	{ "drain_nice", "20", NULL },
	{ "mpi_timeout", "1", "1" },
	{ "mpi_timeout", "2.5", "2.5" },
	{ "mpi_timeout", "0.5", NULL },
	{ "mpi_timeout", "0", NULL },
	{ "mpi_timeout", "1e1", NULL },
	{ "mpi_timeout", "0x10", NULL },
	{ "fault_kill_at", "after-write", "after-write" },
	{ "log_level", "0", "0" },
	{ "log_level", "2", "2" },
	{ "log_level", "3", NULL },
	{ "log_level", "-1", NULL },
	{ "require_persistent", "1", "1" },
	{ "require_persistent", "0", "0" },
	{ "require_persistent", "2", NULL },
	{ "require_persistent", "yes", NULL },
	{ "cluster", "slurm", "slurm" },
	{ "cluster", "kubernetes", "kubernetes" },
	{ "cluster", "none", "none" },
	{ "cluster", "auto", "auto" },
	{ "stage_bytes", "0", "0" },
	{ "stage_bytes", "256M", "268435456" },
	{ "stage_bytes", "1T", NULL },
	{ "stage_bytes", "-1", NULL },
	{ "read_grace", "0", "0" },
	{ "read_grace", "2.5", "2.5" },
	{ "read_grace", "-1", NULL },
	{ "writer_lease", "3", "3" },
	{ "writer_lease", "2", NULL },
	{ "cluster", "k8s", NULL },
	{ "cluster", "Slurm", NULL },
	{ "cluster", "", NULL },
	{ "chunk_transform", "none", "none" },
	{ "chunk_transform", "auto", "auto" },
	{ "chunk_transform", "bytegroup", NULL },
	{ "chunk_transform", "", NULL },
	{ "elem_width", "2", "2" },
	{ "elem_width", "8", "8" },
	{ "elem_width", "1", "1" },
	{ "elem_width", "auto", "auto" },
	{ "elem_width", "3", NULL },
	{ "elem_width", "16", NULL },
	{ "elem_width", "4x", NULL },
};

static void test_set_values(void)
{
	ckpt_config *cfg = NULL;

	CU_ASSERT_EQUAL_FATAL(ckpt_config_new(&cfg), CKPT_OK);
	for (size_t i = 0; i < sizeof(set_cases) / sizeof(set_cases[0]); i++) {
		const struct set_case *c = &set_cases[i];
		int idx = key_index(c->key);
		char before[4096];
		const char *got, *msg;
		int origin, rc;

		CU_ASSERT_FATAL(idx >= 0);
		snprintf(before, sizeof(before), "%s", ckpt_config_get(cfg, c->key));
		origin = cfg->origin[idx];
		rc = ckpt_config_set(cfg, c->key, c->value);
		got = ckpt_config_get(cfg, c->key);
		msg = ckpt_config_errmsg(cfg);
		CU_ASSERT_PTR_NOT_NULL_FATAL(got);
		CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
		if (c->want) {
			if (rc != CKPT_OK || strcmp(got, c->want)) {
				fprintf(stderr, "set %s='%s': rc %d, get '%s', want '%s' (%s)\n",
					c->key, c->value, rc, got, c->want, msg);
				CU_FAIL("good value refused or stored wrong");
			}
			CU_ASSERT_EQUAL(cfg->origin[idx], CKPT_FROM_SET);
			CU_ASSERT_STRING_EQUAL(msg, "");
		} else {
			if (rc != CKPT_EINVAL) {
				fprintf(stderr, "set %s='%s': rc %d, want CKPT_EINVAL\n", c->key,
					c->value, rc);
				CU_FAIL("bad value accepted");
			}
			/* a refused value leaves the old one in place */
			CU_ASSERT_STRING_EQUAL(got, before);
			CU_ASSERT_EQUAL(cfg->origin[idx], origin);
			/* the message names the key and quotes the value */
			if (!strstr(msg, c->key) || !strstr(msg, c->value)) {
				fprintf(stderr, "set %s='%s': message '%s' does not name both\n",
					c->key, c->value, msg);
				CU_FAIL("error message does not name key and value");
			}
		}
	}
	ckpt_config_free(cfg);
}

/* ckpt.h: a returned value stays valid "until the next set or free". Reading other keys in
 * between (a program printing its whole configuration) must not change it. */
static void test_get_lifetime(void)
{
	ckpt_config *cfg = NULL;
	const char *depth, *keep, *chunk, *timeout, *name;

	CU_ASSERT_EQUAL_FATAL(ckpt_config_new(&cfg), CKPT_OK);
	depth = ckpt_config_get(cfg, "io_depth");
	keep = ckpt_config_get(cfg, "keep_local");
	chunk = ckpt_config_get(cfg, "chunk_size");
	timeout = ckpt_config_get(cfg, "close_timeout");
	name = ckpt_config_get(cfg, "name");
	CU_ASSERT_FATAL(depth && keep && chunk && timeout && name);
	CU_ASSERT_STRING_EQUAL(depth, "4");
	CU_ASSERT_STRING_EQUAL(keep, "2");
	CU_ASSERT_STRING_EQUAL(chunk, "4194304");
	CU_ASSERT_STRING_EQUAL(timeout, "600");
	CU_ASSERT_STRING_EQUAL(name, "default");
	/* setting another key does not invalidate them either */
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "max_pending", "5"), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(depth, "4");
	CU_ASSERT_STRING_EQUAL(name, "default");
	ckpt_config_free(cfg);
}

static void test_set_long_values(void)
{
	ckpt_config *cfg = NULL;
	char name[201], path[3002];

	CU_ASSERT_EQUAL_FATAL(ckpt_config_new(&cfg), CKPT_OK);
	/* job names: at most 128 characters */
	memset(name, 'n', sizeof(name));
	name[128] = '\0';
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "name", name), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "name"), name);
	name[128] = 'n';
	name[129] = '\0';
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "name", name), CKPT_EINVAL);
	name[129] = 'n';
	name[200] = '\0';
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "name", name), CKPT_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_config_errmsg(cfg), "'name'"));
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_config_errmsg(cfg), name));
	CU_ASSERT_EQUAL(strlen(ckpt_config_get(cfg, "name")), 128);

	/* paths: at most 3000 bytes */
	memset(path, 'p', sizeof(path));
	path[0] = '/';
	path[3000] = '\0';
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "local_dir", path), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "local_dir"), path);
	path[3000] = 'p';
	path[3001] = '\0';
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "shared_dir", path), CKPT_EINVAL);
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "shared_dir"), "");
	/* The message must still say which key was refused, however long the value is. */
	if (!strstr(ckpt_config_errmsg(cfg), "shared_dir")) {
		fprintf(stderr, "message for a 3001-byte shared_dir does not name the key: '%.80s...'\n",
			ckpt_config_errmsg(cfg));
		CU_FAIL("long value pushes the key out of the error message");
	}
	/* ... and the limit, so that the user knows what to change */
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_config_errmsg(cfg), "1 to 3000 bytes"));
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_config_errmsg(cfg), "3001 bytes"));
	ckpt_config_free(cfg);
}

static void test_set_bad_calls(void)
{
	ckpt_config *cfg = NULL;

	CU_ASSERT_EQUAL_FATAL(ckpt_config_new(&cfg), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "no_such_key", "1"), CKPT_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_config_errmsg(cfg), "no_such_key"));
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "", "1"), CKPT_EINVAL);
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "NAME", "x"), CKPT_EINVAL); /* keys are lower case */
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "name"), "default");
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, NULL, "1"), CKPT_EINVAL);
	CU_ASSERT_NOT_EQUAL(ckpt_config_errmsg(cfg)[0], '\0');
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "name", NULL), CKPT_EINVAL);
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "name"), "default");
	CU_ASSERT_EQUAL(ckpt_config_set(NULL, "name", "x"), CKPT_EINVAL);
	/* a success clears the last failure */
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "name", "ok"), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(ckpt_config_errmsg(cfg), "");
	/* the value is copied: the caller's buffer may change afterwards */
	{
		char buf[] = "copied";

		CU_ASSERT_EQUAL(ckpt_config_set(cfg, "name", buf), CKPT_OK);
		buf[0] = 'X';
		CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "name"), "copied");
	}
	ckpt_config_free(cfg);
}

/* A good value for every key, as set in the environment, and the get() result expected. */
static const struct set_case env_cases[] = {
	{ "local_dir", "/env/local", "/env/local" },
	{ "shared_dir", "/env/shared", "/env/shared" },
	{ "name", "envjob", "envjob" },
	{ "compress_level", "5", "5" },
	{ "keep_local", "4", "4" },
	{ "keep_shared", "0", "0" },
	{ "drain_threads", "3", "3" },
	{ "io_backend", "posix", "posix" },
	{ "chunk_size", "1M", "1048576" },
	{ "max_pending", "9", "9" },
	{ "close_timeout", "1.5", "1.5" },
	{ "io_depth", "8", "8" },
	{ "drain_nice", "0", "0" },
	{ "mpi_timeout", "30", "30" },
	{ "fault_kill_at", "before-rename", "before-rename" },
	{ "log_level", "2", "2" },
	{ "require_persistent", "1", "1" },
	{ "cluster", "kubernetes", "kubernetes" },
	{ "stage_bytes", "2G", "2147483648" },
	{ "chunk_transform", "none", "none" },
	{ "elem_width", "4", "4" },
	{ "probe_timeout", "2.5", "2.5" },
	{ "stall_after", "30", "30" },
	{ "stall_wait", "0", "0" },
	{ "read_grace", "5", "5" },
	{ "writer_lease", "90", "90" },
};

static void test_env_applied(void)
{
	ckpt_config *cfg = NULL;
	size_t n = sizeof(env_cases) / sizeof(env_cases[0]);

	CU_ASSERT_EQUAL(n, CKPT_NKEYS);
	for (size_t i = 0; i < n; i++)
		setenv(envname(env_cases[i].key), env_cases[i].value, 1);
	CU_ASSERT_EQUAL(ckpt_config_new(&cfg), CKPT_OK);
	unset_all_env();
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	for (size_t i = 0; i < n; i++) {
		const char *got = ckpt_config_get(cfg, env_cases[i].key);

		if (!got || strcmp(got, env_cases[i].want)) {
			fprintf(stderr, "%s=%s: get '%s'\n", envname(env_cases[i].key),
				env_cases[i].value, got ? got : "(null)");
			CU_FAIL("environment variable not applied");
		}
		CU_ASSERT_EQUAL(cfg->origin[key_index(env_cases[i].key)], CKPT_FROM_ENV);
	}
	CU_ASSERT_EQUAL(ckpt_config__check(cfg, NULL), CKPT_OK);
	/* ckpt_config_set overrides the environment */
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "name", "fromset"), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "name"), "fromset");
	CU_ASSERT_EQUAL(cfg->origin[key_index("name")], CKPT_FROM_SET);
	ckpt_config_free(cfg);

	/* an empty variable counts as unset */
	setenv("CKPT_NAME", "", 1);
	setenv("CKPT_COMPRESS_LEVEL", "", 1);
	CU_ASSERT_EQUAL(ckpt_config_new(&cfg), CKPT_OK);
	unset_all_env();
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "name"), "default");
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "compress_level"), "1");
	CU_ASSERT_EQUAL(ckpt_config__check(cfg, NULL), CKPT_OK);
	ckpt_config_free(cfg);

	/* the environment is read by ckpt_config_new, not later */
	CU_ASSERT_EQUAL(ckpt_config_new(&cfg), CKPT_OK);
	setenv("CKPT_IO_DEPTH", "16", 1);
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "io_depth"), "4");
	unset_all_env();
	ckpt_config_free(cfg);
}

static void test_env_bad(void)
{
	struct ckpt_err err;
	ckpt_config *cfg = NULL;

	/* One bad variable: ckpt_config_new still succeeds, keeps the default, and check names it. */
	setenv("CKPT_COMPRESS_LEVEL", "99", 1);
	setenv("CKPT_NAME", "goodname", 1);
	CU_ASSERT_EQUAL(ckpt_config_new(&cfg), CKPT_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "compress_level"), "1");
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "name"), "goodname");
	CU_ASSERT_STRING_EQUAL(ckpt_config_errmsg(cfg), "");
	CU_ASSERT_EQUAL(cfg->origin[key_index("compress_level")], CKPT_FROM_BAD_ENV);
	memset(&err, 0, sizeof(err));
	CU_ASSERT_EQUAL(ckpt_config__check(cfg, &err), CKPT_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "CKPT_COMPRESS_LEVEL"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "99"));
	/* a dup carries the bad variable along (ckpt_open checks its copy) */
	{
		struct ckpt_config *d = NULL;

		CU_ASSERT_EQUAL_FATAL(ckpt_config__dup(&d, cfg), CKPT_OK);
		CU_ASSERT_EQUAL(ckpt_config__check(d, NULL), CKPT_EINVAL);
		ckpt_config_free(d);
	}
	/* a refused set does not clear it; setting the key does */
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "compress_level", "100"), CKPT_EINVAL);
	CU_ASSERT_EQUAL(ckpt_config__check(cfg, NULL), CKPT_EINVAL);
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "compress_level", "3"), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_config__check(cfg, NULL), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "compress_level"), "3");
	ckpt_config_free(cfg);
	unset_all_env();

	/* Bad variables of several types; check names the first one in key order. */
	setenv("CKPT_NAME", "../x", 1);
	setenv("CKPT_CHUNK_SIZE", "4X", 1);
	setenv("CKPT_IO_BACKEND", "aio", 1);
	CU_ASSERT_EQUAL(ckpt_config_new(&cfg), CKPT_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "name"), "default");
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "chunk_size"), "4194304");
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "io_backend"), "auto");
	memset(&err, 0, sizeof(err));
	CU_ASSERT_EQUAL(ckpt_config__check(cfg, &err), CKPT_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "CKPT_NAME"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "../x"));
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "name", "fixed"), CKPT_OK);
	memset(&err, 0, sizeof(err));
	CU_ASSERT_EQUAL(ckpt_config__check(cfg, &err), CKPT_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "CKPT_IO_BACKEND"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "aio"));
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "io_backend", "posix"), CKPT_OK);
	memset(&err, 0, sizeof(err));
	CU_ASSERT_EQUAL(ckpt_config__check(cfg, &err), CKPT_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "CKPT_CHUNK_SIZE"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "4X"));
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "chunk_size", "64K"), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_config__check(cfg, NULL), CKPT_OK);
	ckpt_config_free(cfg);
	unset_all_env();

	/* ckpt_open refuses a config with a bad variable and names it. */
	setenv("CKPT_DRAIN_THREADS", "0", 1);
	CU_ASSERT_EQUAL(ckpt_config_new(&cfg), CKPT_OK);
	unset_all_env();
	{
		ckpt_ctx *ctx = NULL;

		CU_ASSERT_EQUAL(ckpt_open(&ctx, cfg), CKPT_EINVAL);
		CU_ASSERT_PTR_NULL(ctx);
		CU_ASSERT_PTR_NOT_NULL(strstr(ckpt_errmsg(NULL), "CKPT_DRAIN_THREADS"));
	}
	ckpt_config_free(cfg);
}

static void test_dup(void)
{
	ckpt_config *cfg = NULL;
	struct ckpt_config *d = NULL;

	CU_ASSERT_EQUAL_FATAL(ckpt_config_new(&cfg), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "local_dir", "/l"), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "shared_dir", "/s"), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "name", "dupjob"), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "fault_kill_at", "point"), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "chunk_size", "128K"), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "close_timeout", "2.25"), CKPT_OK);
	CU_ASSERT_EQUAL_FATAL(ckpt_config__dup(&d, cfg), CKPT_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	/* every string is a copy of its own */
	CU_ASSERT_PTR_NOT_EQUAL(d->local_dir, cfg->local_dir);
	CU_ASSERT_PTR_NOT_EQUAL(d->shared_dir, cfg->shared_dir);
	CU_ASSERT_PTR_NOT_EQUAL(d->name, cfg->name);
	CU_ASSERT_PTR_NOT_EQUAL(d->fault_kill_at, cfg->fault_kill_at);
	for (size_t i = 0; ckpt_config__key(i); i++) {
		const char *k = ckpt_config__key(i);
		char a[4096];

		snprintf(a, sizeof(a), "%s", ckpt_config_get(cfg, k));
		CU_ASSERT_STRING_EQUAL(ckpt_config_get(d, k), a);
		CU_ASSERT_EQUAL(d->origin[i], cfg->origin[i]);
	}
	/* changing one leaves the other alone */
	CU_ASSERT_EQUAL(ckpt_config_set(d, "name", "other"), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_config_set(d, "io_depth", "2"), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "name"), "dupjob");
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "io_depth"), "4");
	/* the copy outlives the original (valgrind/ASan would see a use after free) */
	ckpt_config_free(cfg);
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(d, "local_dir"), "/l");
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(d, "shared_dir"), "/s");
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(d, "fault_kill_at"), "point");
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(d, "chunk_size"), "131072");
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(d, "close_timeout"), "2.25");
	ckpt_config_free(d);

	/* a config with NULL strings (local_dir unset) duplicates too */
	CU_ASSERT_EQUAL_FATAL(ckpt_config_new(&cfg), CKPT_OK);
	CU_ASSERT_EQUAL_FATAL(ckpt_config__dup(&d, cfg), CKPT_OK);
	CU_ASSERT_PTR_NULL(d->local_dir);
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(d, "local_dir"), "");
	ckpt_config_free(d);
	ckpt_config_free(cfg);
	ckpt_config_free(NULL); /* a no-op */
}

static void test_strerror(void)
{
	const char *unknown = ckpt_strerror(-1000);
	const char *seen[14];
	int codes[] = { CKPT_OK,     CKPT_EINVAL,  CKPT_ENOMEM,   CKPT_EIO,
			CKPT_ENOSPC, CKPT_ENOENT,  CKPT_ECORRUPT, CKPT_ENOTSUP,
			CKPT_ETIMEDOUT, CKPT_EPERM, CKPT_EMPI, CKPT_EBUSY,
			CKPT_ENRANKS, CKPT_ESTALE };
	int others[] = { 1, 2, -14, -15, -1000, 1000, INT_MIN, INT_MAX };

	/* the codes are pinned forever */
	CU_ASSERT_EQUAL(CKPT_OK, 0);
	CU_ASSERT_EQUAL(CKPT_EINVAL, -1);
	CU_ASSERT_EQUAL(CKPT_ENOMEM, -2);
	CU_ASSERT_EQUAL(CKPT_EIO, -3);
	CU_ASSERT_EQUAL(CKPT_ENOSPC, -4);
	CU_ASSERT_EQUAL(CKPT_ENOENT, -5);
	CU_ASSERT_EQUAL(CKPT_ECORRUPT, -6);
	CU_ASSERT_EQUAL(CKPT_ENOTSUP, -7);
	CU_ASSERT_EQUAL(CKPT_ETIMEDOUT, -8);
	CU_ASSERT_EQUAL(CKPT_EPERM, -9);
	CU_ASSERT_EQUAL(CKPT_EMPI, -10);
	CU_ASSERT_EQUAL(CKPT_EBUSY, -11);
	CU_ASSERT_EQUAL(CKPT_ENRANKS, -12);
	CU_ASSERT_EQUAL(CKPT_ESTALE, -13);
	CU_ASSERT_PTR_NOT_NULL_FATAL(unknown);
	CU_ASSERT(strlen(unknown) > 0);
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		seen[i] = ckpt_strerror(codes[i]);
		CU_ASSERT_PTR_NOT_NULL_FATAL(seen[i]);
		CU_ASSERT(strlen(seen[i]) > 0);
		CU_ASSERT(strcmp(seen[i], unknown) != 0);
		for (size_t j = 0; j < i; j++)
			CU_ASSERT(strcmp(seen[i], seen[j]) != 0); /* each code its own text */
	}
	CU_ASSERT_STRING_EQUAL(ckpt_strerror(CKPT_EINVAL), "invalid argument");
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		const char *s = ckpt_strerror(others[i]);

		CU_ASSERT_PTR_NOT_NULL_FATAL(s);
		CU_ASSERT_STRING_EQUAL(s, unknown);
	}
}

static void test_parse_size(void)
{
	static const struct {
		const char *s;
		int ok;
		uint64_t v;
	} t[] = {
		{ "0", 1, 0 },
		{ "1", 1, 1 },
		{ "65536", 1, 65536 },
		{ "1K", 1, 1024 },
		{ "1k", 1, 1024 },
		{ "1KiB", 1, 1024 },
		{ "1KB", 1, 1024 },
		{ "1Ki", 1, 1024 },
		{ "3M", 1, 3ull << 20 },
		{ "3m", 1, 3ull << 20 },
		{ "3MiB", 1, 3ull << 20 },
		{ "5G", 1, 5ull << 30 },
		{ "5g", 1, 5ull << 30 },
		{ "5GiB", 1, 5ull << 30 },
		{ "18446744073709551615", 1, UINT64_MAX },
		{ "17179869183G", 1, 17179869183ull << 30 },
		{ "17179869184G", 0, 0 },          /* 2^64: overflows */
		{ "18446744073709551616", 0, 0 },  /* 2^64 */
		{ "99999999999999999999999", 0, 0 },
		{ "", 0, 0 },
		{ "4X", 0, 0 },
		{ "-1", 0, 0 },
		{ "+1", 0, 0 },
		{ " 1", 0, 0 },
		{ "1 ", 0, 0 },
		{ "1B", 0, 0 },
		{ "1iB", 0, 0 },
		{ "1T", 0, 0 },
		{ "1KK", 0, 0 },
		{ "1KiBx", 0, 0 },
		{ "1Kib", 0, 0 },
		{ "K", 0, 0 },
		{ "0x10", 0, 0 },
		{ "1.5M", 0, 0 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		uint64_t v = 0xdeadbeef;
		int rc = ckpt_config__parse_size(t[i].s, &v);

		if (t[i].ok ? (rc != 0 || v != t[i].v) : rc != -1) {
			fprintf(stderr, "parse_size('%s'): rc %d value %llu\n", t[i].s, rc,
				(unsigned long long)v);
			CU_FAIL("parse_size");
		}
		if (!t[i].ok)
			CU_ASSERT_EQUAL(v, 0xdeadbeef); /* untouched on failure */
	}
	{
		uint64_t v = 7;

		CU_ASSERT_EQUAL(ckpt_config__parse_size(NULL, &v), -1);
		CU_ASSERT_EQUAL(v, 7);
	}
}

/* The per-region width hints (config_hint.c): many names survive the table's growth, 0 removes
 * one, names are compared by their bytes and length, a NULL table is empty. */
static void test_hints(void)
{
	struct ckpt_hints *h = NULL;
	struct ckpt_err err = { "" };
	char name[32];
	int bad = 0;

	CU_ASSERT_EQUAL(ckpt_config__hint_get(NULL, "w", 1), 0);
	CU_ASSERT_EQUAL(ckpt_config__hint_set(&h, "w", 1, 0, &err), CKPT_OK);
	CU_ASSERT_PTR_NULL(h); /* removing from nothing allocates nothing */
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "layers.%d.w", i);
		if (ckpt_config__hint_set(&h, name, strlen(name), 1u << (i % 4), &err) != CKPT_OK)
			bad++;
	}
	CU_ASSERT_EQUAL(bad, 0);
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "layers.%d.w", i);
		if (ckpt_config__hint_get(h, name, strlen(name)) != 1u << (i % 4))
			bad++;
	}
	CU_ASSERT_EQUAL(bad, 0);
	/* a prefix of a hinted name is another name */
	CU_ASSERT_EQUAL(ckpt_config__hint_get(h, "layers.10.w", 9), 0);
	CU_ASSERT_EQUAL(ckpt_config__hint_get(h, "layers.1.w", 10), 2);
	CU_ASSERT_EQUAL(ckpt_config__hint_set(&h, "layers.1.w", 10, 0, &err), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_config__hint_get(h, "layers.1.w", 10), 0);
	CU_ASSERT_EQUAL(ckpt_config__hint_set(&h, "layers.1.w", 10, 8, &err), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_config__hint_get(h, "layers.1.w", 10), 8);
	CU_ASSERT_EQUAL(ckpt_config__hint_get(h, "layers.2.w", 10), 4);
	ckpt_config__hints_free(h);
	ckpt_config__hints_free(NULL);
}

int main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("config", suite_init, NULL);
	if (!s || !CU_add_test(s, "defaults", test_defaults) ||
	    !CU_add_test(s, "set good and bad values", test_set_values) ||
	    !CU_add_test(s, "get values stay valid", test_get_lifetime) ||
	    !CU_add_test(s, "set long values", test_set_long_values) ||
	    !CU_add_test(s, "set bad calls", test_set_bad_calls) ||
	    !CU_add_test(s, "environment applied", test_env_applied) ||
	    !CU_add_test(s, "bad environment", test_env_bad) ||
	    !CU_add_test(s, "dup deep-copies", test_dup) ||
	    !CU_add_test(s, "strerror", test_strerror) ||
	    !CU_add_test(s, "parse_size", test_parse_size) ||
	    !CU_add_test(s, "per-region width hints", test_hints)) {
		CU_cleanup_registry();
		return 1;
	}
	return th_run();
}
