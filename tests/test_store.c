/* SPDX-License-Identifier: MIT */
/* Unit tests of the store module: names, directories, durable publication, scans and cleanup. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "store.h"
#include "harness.h"

static char *root;
static int seq;

/* Directories that serve as a base for longer paths stay well below PATH_MAX. */
#define DLEN 1024

static int suite_init(void)
{
	root = th_mkdtemp("store");
	return root ? 0 : -1;
}

static int suite_clean(void)
{
	th_rmtree(root);
	free(root);
	return 0;
}

/* A fresh directory below root for one test. */
static void fresh(char *buf, size_t len, const char *tag)
{
	snprintf(buf, len, "%s/%s-%d", root, tag, seq++);
	if (mkdir(buf, 0700) < 0)
		CU_FAIL("mkdir");
}

static int write_file(const char *dir, const char *name, const char *content)
{
	char p[4096];
	FILE *f;

	if (snprintf(p, sizeof(p), "%s/%s", dir, name) >= (int)sizeof(p) || !(f = fopen(p, "w")))
		return -1;
	fputs(content, f);
	return fclose(f);
}

static int exists(const char *dir, const char *name)
{
	char p[4096];
	struct stat st;

	if (snprintf(p, sizeof(p), "%s/%s", dir, name) >= (int)sizeof(p))
		return 0;
	return lstat(p, &st) == 0;
}

static int is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Number of entries of dir other than . and .. (files and directories, not recursive) */
static int nentries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

static void test_names(void)
{
	static const uint64_t steps[] = { 0, 1, 42, 9999999999ull, 10000000000000000000ull,
					  UINT64_MAX - 6, UINT64_MAX - 1 };
	char buf[4096], small[20];

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		uint64_t back = 12345;
		const char *base;

		CU_ASSERT_EQUAL_FATAL(ckpt_store__step_dir(buf, sizeof(buf), "/j", steps[i]),
				      CKPT_OK);
		CU_ASSERT_EQUAL(strncmp(buf, "/j/step-", 8), 0);
		CU_ASSERT_EQUAL(strlen(buf), 3 + 25);
		base = buf + 3;
		if (ckpt_store__parse_step(base, &back) != 0 || back != steps[i]) {
			fprintf(stderr, "step %" PRIu64 ": dir '%s' parses back as %" PRIu64 "\n",
				steps[i], base, back);
			CU_FAIL("step directory name does not round-trip");
		}
	}
	CU_ASSERT_EQUAL(ckpt_store__step_dir(buf, sizeof(buf), "/j", 42), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(buf, "/j/step-00000000000000000042");
	/* a buffer too small is an error, not a truncated name */
	CU_ASSERT_EQUAL(ckpt_store__step_dir(small, sizeof(small), "/j", 42), CKPT_EINVAL);

	ckpt_store__local_name(buf, sizeof(buf), 3);
	CU_ASSERT_STRING_EQUAL(buf, "rank-000003.ckl");
	ckpt_store__local_name(buf, sizeof(buf), 1234567);
	CU_ASSERT_STRING_EQUAL(buf, "rank-1234567.ckl");
	ckpt_store__shared_name(buf, sizeof(buf), 3, 0xdeadbeefull);
	CU_ASSERT_STRING_EQUAL(buf, "rank-000003-00000000deadbeef.ckz");
	ckpt_store__shared_name(buf, sizeof(buf), 0, UINT64_MAX);
	CU_ASSERT_STRING_EQUAL(buf, "rank-000000-ffffffffffffffff.ckz");
}

static void test_parse_step_bad(void)
{
	static const char *bad[] = {
		"step-1",
		"step-000000000000000000x1",
		"step-00000000000000000000001",  /* 26 digits */
		"step-0000000000000000000001",   /* 22 digits */
		"step-99999999999999999999",     /* 20 digits above UINT64_MAX */
		"step-18446744073709551616",     /* UINT64_MAX + 1 */
		"step-20000000000000000000",
		"",
		"step-",
		"step",
		"STEP-00000000000000000001",
		"step_00000000000000000001",
		"Xstep-0000000000000000001",
		"step-0000000000000000001 ",
		"step- 0000000000000000001",
		"step--0000000000000000001",
		"step-+0000000000000000001",
		"step-0000000000000000001/",
		".tmp.step-000000000000001",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 777;

		if (ckpt_store__parse_step(bad[i], &v) == 0) {
			fprintf(stderr, "parse_step accepted '%s' as %" PRIu64 "\n", bad[i], v);
			CU_FAIL("bad step name accepted");
		}
		CU_ASSERT_EQUAL(v, 777);
	}
}

static void test_mkdirs(void)
{
	struct ckpt_err err;
	char base[DLEN], p[4096], file[4096];
	char *longp;

	fresh(base, sizeof(base), "mkdirs");
	snprintf(p, sizeof(p), "%s/a/b/c/d", base);
	CU_ASSERT_EQUAL(ckpt_store__mkdirs(p, NULL), CKPT_OK);
	CU_ASSERT(is_dir(p));
	/* again: nothing to do */
	CU_ASSERT_EQUAL(ckpt_store__mkdirs(p, NULL), CKPT_OK);
	/* trailing slashes and a partly existing path */
	snprintf(p, sizeof(p), "%s/a/b/x/y//", base);
	CU_ASSERT_EQUAL(ckpt_store__mkdirs(p, NULL), CKPT_OK);
	snprintf(p, sizeof(p), "%s/a/b/x/y", base);
	CU_ASSERT(is_dir(p));
	CU_ASSERT_EQUAL(ckpt_store__mkdirs("/", NULL), CKPT_OK);

	/* a component that is a regular file: a clear error naming it, nothing created */
	snprintf(file, sizeof(file), "%s/plain", base);
	CU_ASSERT_EQUAL_FATAL(write_file(base, "plain", "x"), 0);
	snprintf(p, sizeof(p), "%s/plain/sub/dir", base);
	err.msg[0] = '\0';
	CU_ASSERT(ckpt_store__mkdirs(p, &err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, file));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "not a directory"));
	err.msg[0] = '\0';
	CU_ASSERT_EQUAL(ckpt_store__mkdirs(file, &err), CKPT_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, file));
	/* empty and over-long paths */
	CU_ASSERT_EQUAL(ckpt_store__mkdirs("", NULL), CKPT_EINVAL);
	longp = malloc(CKPT_PATH_MAX + 10);
	CU_ASSERT_PTR_NOT_NULL_FATAL(longp);
	memset(longp, 'a', CKPT_PATH_MAX + 9);
	longp[0] = '/';
	longp[CKPT_PATH_MAX + 9] = '\0';
	CU_ASSERT_EQUAL(ckpt_store__mkdirs(longp, NULL), CKPT_EINVAL);
	free(longp);
	/* permissions (root bypasses them) */
	if (geteuid() != 0) {
		snprintf(p, sizeof(p), "%s/ro", base);
		CU_ASSERT_EQUAL_FATAL(mkdir(p, 0500), 0);
		snprintf(p, sizeof(p), "%s/ro/x/y", base);
		err.msg[0] = '\0';
		CU_ASSERT_EQUAL(ckpt_store__mkdirs(p, &err), CKPT_EPERM);
		CU_ASSERT(err.msg[0] != '\0');
	}
}

/* Checks that name (a basename) is ".tmp.<host>.<pid>.<8 hex>.<final>". */
static int tmp_name_ok(const char *name, const char *final)
{
	char want[256];
	size_t n;

	n = (size_t)snprintf(want, sizeof(want), ".tmp.%s.%ld.", ckpt_store__hostname(),
			     (long)getpid());
	if (strncmp(name, want, n))
		return 0;
	for (int i = 0; i < 8; i++)
		if (!strchr("0123456789abcdef", name[n + (size_t)i]) || !name[n + (size_t)i])
			return 0;
	return name[n + 8] == '.' && !strcmp(name + n + 9, final);
}

static void test_tmp_path(void)
{
	char a[4096], b[4096], small[16];
	const char *host = ckpt_store__hostname();

	CU_ASSERT_EQUAL_FATAL(ckpt_store__tmp_path(a, sizeof(a), "/some/dir", "MANIFEST"), CKPT_OK);
	CU_ASSERT_EQUAL(strncmp(a, "/some/dir/.tmp.", 15), 0);
	CU_ASSERT(tmp_name_ok(a + strlen("/some/dir/"), "MANIFEST"));
	/* two names for the same file differ */
	CU_ASSERT_EQUAL(ckpt_store__tmp_path(b, sizeof(b), "/some/dir", "MANIFEST"), CKPT_OK);
	CU_ASSERT_STRING_NOT_EQUAL(a, b);
	CU_ASSERT_EQUAL(ckpt_store__tmp_path(small, sizeof(small), "/some/dir", "MANIFEST"),
			CKPT_EINVAL);
	/* the host part is one safe path component */
	CU_ASSERT(strlen(host) > 0 && strlen(host) <= 64);
	CU_ASSERT_PTR_NULL(strchr(host, '/'));
	CU_ASSERT_PTR_NULL(strchr(host, '.'));
	CU_ASSERT_PTR_EQUAL(ckpt_store__hostname(), host);
	CU_ASSERT_NOT_EQUAL(ckpt_store__random64(), 0);
	CU_ASSERT_NOT_EQUAL(ckpt_store__random64(), ckpt_store__random64());
	CU_ASSERT(ckpt_store__now_ns() > 1500000000ull * 1000000000ull); /* after 2017 */
}

static void test_publish(void)
{
	struct ckpt_err err;
	char d[DLEN], tmp[4096];
	uint8_t *buf = NULL;
	size_t len = 0;
	char p[4096];

	fresh(d, sizeof(d), "publish");
	CU_ASSERT_EQUAL_FATAL(ckpt_store__tmp_path(tmp, sizeof(tmp), d, "final"), CKPT_OK);
	CU_ASSERT_EQUAL_FATAL(write_file(d, strrchr(tmp, '/') + 1, "new content"), 0);
	CU_ASSERT_EQUAL(ckpt_store__publish(tmp, d, "final", NULL), CKPT_OK);
	CU_ASSERT(exists(d, "final"));
	CU_ASSERT_EQUAL(access(tmp, F_OK), -1);
	CU_ASSERT_EQUAL(nentries(d), 1);
	snprintf(p, sizeof(p), "%s/final", d);
	CU_ASSERT_EQUAL(ckpt_store__read_file(p, &buf, &len, 100, NULL), CKPT_OK);
	CU_ASSERT_EQUAL(len, 11);
	CU_ASSERT(buf && !memcmp(buf, "new content", 11));
	free(buf);
	/* publishing over an existing file replaces it */
	CU_ASSERT_EQUAL_FATAL(ckpt_store__tmp_path(tmp, sizeof(tmp), d, "final"), CKPT_OK);
	CU_ASSERT_EQUAL_FATAL(write_file(d, strrchr(tmp, '/') + 1, "v2"), 0);
	CU_ASSERT_EQUAL(ckpt_store__publish(tmp, d, "final", NULL), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_store__read_file(p, &buf, &len, 100, NULL), CKPT_OK);
	CU_ASSERT(len == 2 && buf && !memcmp(buf, "v2", 2));
	free(buf);
	CU_ASSERT_EQUAL(nentries(d), 1);
	/* a missing temporary file */
	err.msg[0] = '\0';
	CU_ASSERT_EQUAL(ckpt_store__publish(tmp, d, "final", &err), CKPT_ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, tmp));
	CU_ASSERT(exists(d, "final"));
}

static void test_write_durable(void)
{
	struct ckpt_err err;
	char d[DLEN], p[4096], missing[2 * DLEN];
	uint8_t data[10000], *buf = NULL;
	size_t len = 0;

	fresh(d, sizeof(d), "durable");
	th_fill(data, sizeof(data), 4);
	CU_ASSERT_EQUAL(ckpt_store__write_durable(d, "MANIFEST", data, sizeof(data), NULL), CKPT_OK);
	snprintf(p, sizeof(p), "%s/MANIFEST", d);
	CU_ASSERT_EQUAL(ckpt_store__read_file(p, &buf, &len, sizeof(data), NULL), CKPT_OK);
	CU_ASSERT_EQUAL(len, sizeof(data));
	CU_ASSERT(buf && !memcmp(buf, data, sizeof(data)));
	free(buf);
	CU_ASSERT_EQUAL(th_count_files(d, ".tmp.*"), 0);
	CU_ASSERT_EQUAL(nentries(d), 1);
	/* rewriting replaces the content whole (shorter this time) */
	CU_ASSERT_EQUAL(ckpt_store__write_durable(d, "MANIFEST", "short", 5, NULL), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_store__read_file(p, &buf, &len, sizeof(data), NULL), CKPT_OK);
	CU_ASSERT(len == 5 && buf && !memcmp(buf, "short", 5));
	free(buf);
	CU_ASSERT_EQUAL(th_count_files(d, ".tmp.*"), 0);
	/* an empty file */
	CU_ASSERT_EQUAL(ckpt_store__write_durable(d, "empty", "", 0, NULL), CKPT_OK);
	CU_ASSERT(exists(d, "empty"));
	CU_ASSERT_EQUAL(nentries(d), 2);
	/* a missing directory: an error naming it, and nothing left behind */
	snprintf(missing, sizeof(missing), "%s/nope", d);
	err.msg[0] = '\0';
	CU_ASSERT_EQUAL(ckpt_store__write_durable(missing, "MANIFEST", "x", 1, &err), CKPT_ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, missing));
	CU_ASSERT_EQUAL(nentries(d), 2);
	/* the final name is a directory: the rename fails and the temporary file is removed */
	CU_ASSERT_EQUAL_FATAL(mkdir(missing, 0700), 0);
	snprintf(p, sizeof(p), "%s/MANIFEST", missing);
	CU_ASSERT_EQUAL_FATAL(mkdir(p, 0700), 0);
	err.msg[0] = '\0';
	CU_ASSERT(ckpt_store__write_durable(missing, "MANIFEST", "x", 1, &err) < 0);
	CU_ASSERT(err.msg[0] != '\0');
	CU_ASSERT_EQUAL(th_count_files(missing, ".tmp.*"), 0);
	CU_ASSERT(is_dir(p));
	if (geteuid() != 0) {
		CU_ASSERT_EQUAL(chmod(missing, 0500), 0);
		CU_ASSERT_EQUAL(ckpt_store__write_durable(missing, "other", "x", 1, NULL), CKPT_EPERM);
		CU_ASSERT_EQUAL(chmod(missing, 0700), 0);
	}
}

static void test_read_file(void)
{
	struct ckpt_err err;
	char d[DLEN], p[4096], link[4096];
	uint8_t *buf;
	size_t len;

	fresh(d, sizeof(d), "read");
	CU_ASSERT_EQUAL_FATAL(write_file(d, "f", "0123456789"), 0);
	snprintf(p, sizeof(p), "%s/f", d);
	CU_ASSERT_EQUAL(ckpt_store__read_file(p, &buf, &len, 10, NULL), CKPT_OK);
	CU_ASSERT(len == 10 && buf && !memcmp(buf, "0123456789", 10));
	free(buf);
	/* one byte over the limit */
	buf = (uint8_t *)1;
	len = 99;
	err.msg[0] = '\0';
	CU_ASSERT_EQUAL(ckpt_store__read_file(p, &buf, &len, 9, &err), CKPT_ECORRUPT);
	CU_ASSERT_PTR_NULL(buf);
	CU_ASSERT_EQUAL(len, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, p));
	/* a symbolic link, even to a good file, is refused */
	snprintf(link, sizeof(link), "%s/link", d);
	CU_ASSERT_EQUAL_FATAL(symlink(p, link), 0);
	buf = (uint8_t *)1;
	err.msg[0] = '\0';
	CU_ASSERT(ckpt_store__read_file(link, &buf, &len, 100, &err) < 0);
	CU_ASSERT_PTR_NULL(buf);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, link));
	/* a directory, a missing file */
	CU_ASSERT(ckpt_store__read_file(d, &buf, &len, 1 << 20, NULL) < 0);
	CU_ASSERT_PTR_NULL(buf);
	snprintf(p, sizeof(p), "%s/missing", d);
	CU_ASSERT_EQUAL(ckpt_store__read_file(p, &buf, &len, 100, NULL), CKPT_ENOENT);
	CU_ASSERT_PTR_NULL(buf);
	/* an empty file is a valid, empty result */
	CU_ASSERT_EQUAL_FATAL(write_file(d, "e", ""), 0);
	snprintf(p, sizeof(p), "%s/e", d);
	CU_ASSERT_EQUAL(ckpt_store__read_file(p, &buf, &len, 0, NULL), CKPT_OK);
	CU_ASSERT_EQUAL(len, 0);
	CU_ASSERT_PTR_NOT_NULL(buf);
	free(buf);
}

static void test_list_steps(void)
{
	struct ckpt_err err;
	char d[DLEN], p[4096];
	uint64_t *steps = (uint64_t *)1;
	size_t n = 99;
	static const uint64_t made[] = { 300, 2, 10, UINT64_MAX - 6, 0 };

	fresh(d, sizeof(d), "list");
	for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
		CU_ASSERT_EQUAL(ckpt_store__step_dir(p, sizeof(p), d, made[i]), CKPT_OK);
		CU_ASSERT_EQUAL(mkdir(p, 0700), 0);
	}
	/* junk that must be ignored */
	snprintf(p, sizeof(p), "%s/step-1", d);
	CU_ASSERT_EQUAL(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/step-0000000000000000000x5", d);
	CU_ASSERT_EQUAL(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/.tmp.step-00000000000000000007", d);
	CU_ASSERT_EQUAL(mkdir(p, 0700), 0);
	CU_ASSERT_EQUAL(write_file(d, "README", "junk"), 0);
	CU_ASSERT_EQUAL(write_file(d, "step-00000000000000000008.bak", "junk"), 0);

	CU_ASSERT_EQUAL_FATAL(ckpt_store__list_steps(d, &steps, &n, NULL), CKPT_OK);
	CU_ASSERT_EQUAL_FATAL(n, 5);
	CU_ASSERT_PTR_NOT_NULL_FATAL(steps);
	CU_ASSERT_EQUAL(steps[0], 0);
	CU_ASSERT_EQUAL(steps[1], 2);
	CU_ASSERT_EQUAL(steps[2], 10);
	CU_ASSERT_EQUAL(steps[3], 300);
	CU_ASSERT_EQUAL(steps[4], UINT64_MAX - 6);
	free(steps);

	/* many steps: the array grows, and stays sorted numerically */
	fresh(d, sizeof(d), "list-many");
	for (uint64_t s = 0; s < 100; s++) {
		CU_ASSERT_EQUAL(ckpt_store__step_dir(p, sizeof(p), d, (s * 37) % 100 * 1000), CKPT_OK);
		CU_ASSERT_EQUAL(mkdir(p, 0700), 0);
	}
	CU_ASSERT_EQUAL_FATAL(ckpt_store__list_steps(d, &steps, &n, NULL), CKPT_OK);
	CU_ASSERT_EQUAL_FATAL(n, 100);
	for (size_t i = 0; i < n; i++)
		CU_ASSERT_EQUAL(steps[i], i * 1000);
	free(steps);

	/* a missing job directory has no steps; a file in its place is an error */
	snprintf(p, sizeof(p), "%s/missing", d);
	steps = (uint64_t *)1;
	CU_ASSERT_EQUAL(ckpt_store__list_steps(p, &steps, &n, NULL), CKPT_OK);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_PTR_NULL(steps);
	fresh(d, sizeof(d), "list-empty");
	CU_ASSERT_EQUAL(ckpt_store__list_steps(d, &steps, &n, NULL), CKPT_OK);
	CU_ASSERT_EQUAL(n, 0);
	free(steps);
	CU_ASSERT_EQUAL(write_file(d, "file", "x"), 0);
	snprintf(p, sizeof(p), "%s/file", d);
	err.msg[0] = '\0';
	CU_ASSERT(ckpt_store__list_steps(p, &steps, &n, &err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, p));
}

static pid_t dead_pid(void)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return pid;
}

static void test_cleanup_tmp(void)
{
	char job[DLEN], step[4096], step2[4096], name[512];
	const char *host = ckpt_store__hostname();
	pid_t dead = dead_pid();

	CU_ASSERT_FATAL(dead > 0);
	CU_ASSERT_EQUAL_FATAL(kill(dead, 0), -1); /* reaped: no such process now */
	fresh(job, sizeof(job), "cleanup");
	CU_ASSERT_EQUAL(ckpt_store__step_dir(step, sizeof(step), job, 5), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_store__step_dir(step2, sizeof(step2), job, 6), CKPT_OK);
	CU_ASSERT_EQUAL_FATAL(mkdir(step, 0700), 0);
	CU_ASSERT_EQUAL_FATAL(mkdir(step2, 0700), 0);

	/* abandoned by a dead process of this host: removed */
	snprintf(name, sizeof(name), ".tmp.%s.%ld.0badf00d.rank-000000.ckl", host, (long)dead);
	CU_ASSERT_EQUAL(write_file(step, name, "x"), 0);
	snprintf(name, sizeof(name), ".tmp.%s.%ld.x.y", host, (long)dead);
	CU_ASSERT_EQUAL(write_file(step2, name, "x"), 0);
	/* a live process of this host (us): kept */
	snprintf(name, sizeof(name), ".tmp.%s.%ld.x.y", host, (long)getpid());
	CU_ASSERT_EQUAL(write_file(step, name, "x"), 0);
	/* other hosts, including one as long as ours and one whose name starts with ours: kept */
	snprintf(name, sizeof(name), ".tmp.otherhost.%ld.x.y", (long)dead);
	CU_ASSERT_EQUAL(write_file(step, name, "x"), 0);
	snprintf(name, sizeof(name), ".tmp.%c%s.%ld.x.y", host[0] == 'q' ? 'r' : 'q', host + 1,
		 (long)dead);
	CU_ASSERT_EQUAL(write_file(step, name, "x"), 0);
	snprintf(name, sizeof(name), ".tmp.%sX.%ld.x.y", host, (long)dead);
	CU_ASSERT_EQUAL(write_file(step, name, "x"), 0);
	snprintf(name, sizeof(name), ".tmp.%s1%ld.x.y", host, (long)dead);
	CU_ASSERT_EQUAL(write_file(step, name, "x"), 0);
	/* malformed pids and other files: kept */
	snprintf(name, sizeof(name), ".tmp.%s.0.x.y", host);
	CU_ASSERT_EQUAL(write_file(step, name, "x"), 0);
	snprintf(name, sizeof(name), ".tmp.%s.-1.x.y", host);
	CU_ASSERT_EQUAL(write_file(step, name, "x"), 0);
	snprintf(name, sizeof(name), ".tmp.%s.%ldx.y", host, (long)dead);
	CU_ASSERT_EQUAL(write_file(step, name, "x"), 0);
	CU_ASSERT_EQUAL(write_file(step, "rank-000000.ckl", "x"), 0);
	CU_ASSERT_EQUAL(write_file(step, "MANIFEST", "x"), 0);

	CU_ASSERT_EQUAL(ckpt_store__cleanup_tmp(job), 2);
	snprintf(name, sizeof(name), ".tmp.%s.%ld.0badf00d.rank-000000.ckl", host, (long)dead);
	CU_ASSERT_FALSE(exists(step, name));
	snprintf(name, sizeof(name), ".tmp.%s.%ld.x.y", host, (long)dead);
	CU_ASSERT_FALSE(exists(step2, name));
	snprintf(name, sizeof(name), ".tmp.%s.%ld.x.y", host, (long)getpid());
	CU_ASSERT(exists(step, name));
	snprintf(name, sizeof(name), ".tmp.otherhost.%ld.x.y", (long)dead);
	CU_ASSERT(exists(step, name));
	snprintf(name, sizeof(name), ".tmp.%c%s.%ld.x.y", host[0] == 'q' ? 'r' : 'q', host + 1,
		 (long)dead);
	CU_ASSERT(exists(step, name));
	snprintf(name, sizeof(name), ".tmp.%sX.%ld.x.y", host, (long)dead);
	CU_ASSERT(exists(step, name));
	snprintf(name, sizeof(name), ".tmp.%s1%ld.x.y", host, (long)dead);
	CU_ASSERT(exists(step, name));
	CU_ASSERT(exists(step, "rank-000000.ckl"));
	CU_ASSERT(exists(step, "MANIFEST"));
	CU_ASSERT_EQUAL(nentries(step), 10);
	CU_ASSERT_EQUAL(nentries(step2), 0);
	/* nothing more to do the second time; a missing job directory is fine */
	CU_ASSERT_EQUAL(ckpt_store__cleanup_tmp(job), 0);
	snprintf(step, sizeof(step), "%s/missing", job);
	CU_ASSERT_EQUAL(ckpt_store__cleanup_tmp(step), 0);
}

/* Retention renames what it removes into the job directory (.tmp.<host>.<pid>.<rand>.retired) and
 * deletes it later; cleanup_tmp removes every retired entry left behind, of any host or process,
 * and nothing else of the job directory. */
static void test_retire(void)
{
	char job[DLEN], step[4096], trash[4096], trash2[4096], path[4200], name[512];
	struct stat st;

	fresh(job, sizeof(job), "retire");
	CU_ASSERT_EQUAL(ckpt_store__step_dir(step, sizeof(step), job, 3), CKPT_OK);
	CU_ASSERT_EQUAL_FATAL(mkdir(step, 0700), 0);
	CU_ASSERT_EQUAL(write_file(step, "rank-000000-00000000000000aa.ckz", "shard"), 0);
	CU_ASSERT_EQUAL(write_file(step, "MANIFEST", "m"), 0);
	CU_ASSERT_EQUAL(write_file(job, "big.ckl", "local shard"), 0);

	/* a step directory: gone from its name at once, whole under the retired one */
	CU_ASSERT_EQUAL(ckpt_store__retire(step, job, trash, sizeof(trash)), 0);
	CU_ASSERT(lstat(step, &st) < 0 && errno == ENOENT);
	CU_ASSERT(strncmp(trash, job, strlen(job)) == 0 && trash[strlen(job)] == '/');
	CU_ASSERT(strstr(trash, "/.tmp.") != NULL);
	CU_ASSERT(strlen(trash) > 8 && !strcmp(trash + strlen(trash) - 8, ".retired"));
	CU_ASSERT(exists(trash, "MANIFEST") && exists(trash, "rank-000000-00000000000000aa.ckz"));
	/* a file */
	snprintf(path, sizeof(path), "%s/big.ckl", job);
	CU_ASSERT_EQUAL(ckpt_store__retire(path, job, trash2, sizeof(trash2)), 0);
	CU_ASSERT_FALSE(exists(job, "big.ckl"));
	CU_ASSERT(strcmp(trash, trash2) != 0);
	CU_ASSERT(lstat(trash2, &st) == 0 && S_ISREG(st.st_mode));
	/* a missing path: -1, errno ENOENT */
	CU_ASSERT(ckpt_store__retire(path, job, trash2, sizeof(trash2)) == -1 && errno == ENOENT);
	CU_ASSERT_EQUAL(ckpt_store__retire(path, job, trash2, 10), -1); /* name too long */

	/* the step directory is removed with its files */
	ckpt_store__remove_retired(trash);
	CU_ASSERT(lstat(trash, &st) < 0 && errno == ENOENT);
	ckpt_store__remove_retired(trash); /* already gone: nothing happens */

	/* left behind: this process's, another host's (a dead pid or not), a file and a
	 * directory; cleanup_tmp removes them all, and keeps what is not retired */
	snprintf(name, sizeof(name), ".tmp.otherhost.1.0badf00d.retired");
	CU_ASSERT_EQUAL(mkdir(strcat(strcat(strcpy(path, job), "/"), name), 0700), 0);
	CU_ASSERT_EQUAL(write_file(path, "rank-000001-00000000000000bb.ckz", "x"), 0);
	CU_ASSERT_EQUAL(write_file(job, ".tmp.otherhost.1.12345678.rank-000000.ckl", "x"), 0);
	CU_ASSERT_EQUAL(write_file(job, ".lock-rank-0", ""), 0);
	CU_ASSERT_EQUAL(write_file(job, "retired", ""), 0);
	CU_ASSERT_EQUAL(ckpt_store__cleanup_tmp(job), 2);
	CU_ASSERT(lstat(trash2, &st) < 0 && errno == ENOENT);
	CU_ASSERT_FALSE(exists(job, name));
	CU_ASSERT(exists(job, ".tmp.otherhost.1.12345678.rank-000000.ckl"));
	CU_ASSERT(exists(job, ".lock-rank-0"));
	CU_ASSERT(exists(job, "retired"));
	CU_ASSERT_EQUAL(nentries(job), 3);
}

static void test_remove_step(void)
{
	struct ckpt_err err;
	char d[DLEN], step[2 * DLEN], sub[4096];
	char evbuf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	int ifd, first_is_manifest = -1, deletes = 0;
	ssize_t n;

	fresh(d, sizeof(d), "remove");
	CU_ASSERT_EQUAL(ckpt_store__step_dir(step, sizeof(step), d, 9), CKPT_OK);
	CU_ASSERT_EQUAL_FATAL(mkdir(step, 0700), 0);
	/* MANIFEST created first, so that directory order alone would not list it first on
	 * filesystems that return entries newest first */
	CU_ASSERT_EQUAL(write_file(step, "MANIFEST", "m"), 0);
	for (int r = 0; r < 6; r++) {
		char name[64];

		ckpt_store__shared_name(name, sizeof(name), (uint32_t)r, 0xabc);
		CU_ASSERT_EQUAL(write_file(step, name, "shard"), 0);
	}
	CU_ASSERT_EQUAL(write_file(step, ".tmp.h.1.x.y", "t"), 0);

	/* watch the deletions to see their order */
	ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	CU_ASSERT_FATAL(ifd >= 0);
	CU_ASSERT_FATAL(inotify_add_watch(ifd, step, IN_DELETE) >= 0);
	CU_ASSERT_EQUAL(ckpt_store__remove_step(step, NULL), CKPT_OK);
	CU_ASSERT_FALSE(is_dir(step));
	while ((n = read(ifd, evbuf, sizeof(evbuf))) > 0) {
		for (char *p = evbuf; p < evbuf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;

			if ((ev->mask & IN_DELETE) && ev->len) {
				if (first_is_manifest < 0)
					first_is_manifest = !strcmp(ev->name, "MANIFEST");
				deletes++;
			}
			p += sizeof(*ev) + ev->len;
		}
	}
	close(ifd);
	CU_ASSERT_EQUAL(deletes, 8);
	CU_ASSERT_EQUAL(first_is_manifest, 1);

	/* already gone: fine */
	CU_ASSERT_EQUAL(ckpt_store__remove_step(step, NULL), CKPT_OK);
	/* no MANIFEST (an uncommitted step): fine */
	CU_ASSERT_EQUAL_FATAL(mkdir(step, 0700), 0);
	CU_ASSERT_EQUAL(write_file(step, "rank-000000.ckl", "x"), 0);
	CU_ASSERT_EQUAL(ckpt_store__remove_step(step, NULL), CKPT_OK);
	CU_ASSERT_FALSE(is_dir(step));
	/* something it cannot remove (a subdirectory): an error, but the step is uncommitted */
	CU_ASSERT_EQUAL_FATAL(mkdir(step, 0700), 0);
	CU_ASSERT_EQUAL(write_file(step, "MANIFEST", "m"), 0);
	snprintf(sub, sizeof(sub), "%s/subdir", step);
	CU_ASSERT_EQUAL_FATAL(mkdir(sub, 0700), 0);
	err.msg[0] = '\0';
	CU_ASSERT(ckpt_store__remove_step(step, &err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, step));
	CU_ASSERT_FALSE(exists(step, "MANIFEST"));
}

static void test_remove_other_saves(void)
{
	char step[DLEN], name[128];
	const uint64_t keep = 0x1234, other = 0xfeedface12345678ull;

	fresh(step, sizeof(step), "saves");
	for (uint32_t r = 0; r < 3; r++) {
		ckpt_store__shared_name(name, sizeof(name), r, keep);
		CU_ASSERT_EQUAL(write_file(step, name, "keep"), 0);
		ckpt_store__shared_name(name, sizeof(name), r, other);
		CU_ASSERT_EQUAL(write_file(step, name, "old"), 0);
	}
	ckpt_store__shared_name(name, sizeof(name), 7, 0x99);
	CU_ASSERT_EQUAL(write_file(step, name, "older"), 0);
	/* not superseded shards: kept */
	CU_ASSERT_EQUAL(write_file(step, "MANIFEST", "m"), 0);
	CU_ASSERT_EQUAL(write_file(step, "rank-000000.ckl", "local"), 0);
	CU_ASSERT_EQUAL(write_file(step, ".tmp.h.1.2.rank-000000-0000000000000099.ckz", "t"), 0);
	CU_ASSERT_EQUAL(write_file(step, "notes-0000000000000099.ckz", "n"), 0);
	CU_ASSERT_EQUAL(write_file(step, "rank-000000-0000000000000099.ckz.bak", "b"), 0);

	ckpt_store__remove_other_saves(step, keep);
	CU_ASSERT_EQUAL(th_count_files(step, "rank-*.ckz"), 3);
	for (uint32_t r = 0; r < 3; r++) {
		ckpt_store__shared_name(name, sizeof(name), r, keep);
		CU_ASSERT(exists(step, name));
		ckpt_store__shared_name(name, sizeof(name), r, other);
		CU_ASSERT_FALSE(exists(step, name));
	}
	CU_ASSERT(exists(step, "MANIFEST"));
	CU_ASSERT(exists(step, "rank-000000.ckl"));
	CU_ASSERT(exists(step, ".tmp.h.1.2.rank-000000-0000000000000099.ckz"));
	CU_ASSERT(exists(step, "notes-0000000000000099.ckz"));
	CU_ASSERT(exists(step, "rank-000000-0000000000000099.ckz.bak"));
	CU_ASSERT_EQUAL(nentries(step), 8);
	/* a missing directory is a no-op */
	strcat(step, "/missing");
	ckpt_store__remove_other_saves(step, keep);
}

/* Set dir/name's mtime to sec seconds (and nsec) since the epoch. */
static int set_mtime(const char *dir, const char *name, time_t sec, long nsec)
{
	char path[DLEN + 128];
	struct timespec ts[2] = { { 0, UTIME_OMIT }, { sec, nsec } };

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
}

/* Rule S of docs/CONCURRENCY.md: a superseded shard goes only when the MANIFEST is the one read,
 * the shard is strictly older than it, and the MANIFEST is read_grace old in fs time; a shard
 * renamed in after the MANIFEST (a live writer's in-flight one) never goes. */
static void test_sweep_superseded(void)
{
	char step[DLEN], keep[64], old[64], inflight[64], same[64], mpath[DLEN + 16];
	const uint64_t keep_id = 0xabc, old_id = 0x111, inflight_id = 0x222, same_id = 0x333;
	const time_t t = 1700000000;
	const uint64_t t_ns = (uint64_t)t * 1000000000u;
	struct stat st, st2;

	fresh(step, sizeof(step), "sweep");
	ckpt_store__shared_name(keep, sizeof(keep), 0, keep_id);
	ckpt_store__shared_name(old, sizeof(old), 0, old_id);
	ckpt_store__shared_name(inflight, sizeof(inflight), 0, inflight_id);
	ckpt_store__shared_name(same, sizeof(same), 1, same_id);
	CU_ASSERT_EQUAL(write_file(step, "MANIFEST", "m"), 0);
	CU_ASSERT_EQUAL(write_file(step, keep, "k"), 0);
	CU_ASSERT_EQUAL(write_file(step, old, "o"), 0);
	CU_ASSERT_EQUAL(write_file(step, inflight, "i"), 0);
	CU_ASSERT_EQUAL(write_file(step, same, "s"), 0);
	CU_ASSERT_EQUAL(set_mtime(step, "MANIFEST", t, 500), 0);
	CU_ASSERT_EQUAL(set_mtime(step, keep, t - 10, 0), 0);
	CU_ASSERT_EQUAL(set_mtime(step, old, t - 20, 0), 0);
	CU_ASSERT_EQUAL(set_mtime(step, inflight, t, 501), 0); /* renamed in after the commit */
	CU_ASSERT_EQUAL(set_mtime(step, same, t, 500), 0);     /* a coarse clock: equal */
	snprintf(mpath, sizeof(mpath), "%s/MANIFEST", step);
	CU_ASSERT_EQUAL_FATAL(lstat(mpath, &st), 0);

	/* (3) readers' grace not over: 59.9 s of a 60 s grace */
	CU_ASSERT_EQUAL(ckpt_store__sweep_superseded(step, keep_id, &st, t_ns + 500 + 59900000000ull,
						     60), 0);
	CU_ASSERT_EQUAL(nentries(step), 5);
	/* (1) the MANIFEST was replaced after it was read (re-committed): nothing */
	CU_ASSERT_EQUAL(write_file(step, ".new", "m2"), 0);
	CU_ASSERT_EQUAL(set_mtime(step, ".new", t, 500), 0);
	{
		char a[DLEN + 16];

		snprintf(a, sizeof(a), "%s/.new", step);
		CU_ASSERT_EQUAL_FATAL(rename(a, mpath), 0);
	}
	CU_ASSERT_EQUAL(ckpt_store__sweep_superseded(step, keep_id, &st, t_ns + 3600000000000ull, 60),
			0);
	CU_ASSERT_EQUAL(nentries(step), 5);
	/* the same MANIFEST, grace over: only the shard strictly older than it goes */
	CU_ASSERT_EQUAL_FATAL(lstat(mpath, &st2), 0);
	CU_ASSERT_EQUAL(ckpt_store__sweep_superseded(step, keep_id, &st2, t_ns + 61000000000ull, 60),
			1);
	CU_ASSERT_FALSE(exists(step, old));
	CU_ASSERT(exists(step, keep));
	CU_ASSERT(exists(step, inflight));
	CU_ASSERT(exists(step, same));
	CU_ASSERT(exists(step, "MANIFEST"));
	/* grace 0: still never an in-flight one */
	CU_ASSERT_EQUAL(ckpt_store__sweep_superseded(step, keep_id, &st2, t_ns, 0), 0);
	CU_ASSERT(exists(step, inflight));
	/* no MANIFEST: nothing */
	CU_ASSERT_EQUAL(unlink(mpath), 0);
	CU_ASSERT_EQUAL(ckpt_store__sweep_superseded(step, keep_id, &st2, t_ns + 61000000000ull, 60),
			0);
	CU_ASSERT_EQUAL(nentries(step), 3);
}

/* What a commit defers: exactly the other saves' shards, as paths. */
static void test_list_other_saves(void)
{
	char step[DLEN], name[64], **paths;
	size_t n;

	fresh(step, sizeof(step), "others");
	ckpt_store__shared_name(name, sizeof(name), 0, 0x10);
	CU_ASSERT_EQUAL(write_file(step, name, "k"), 0);
	ckpt_store__shared_name(name, sizeof(name), 0, 0x20);
	CU_ASSERT_EQUAL(write_file(step, name, "o"), 0);
	ckpt_store__shared_name(name, sizeof(name), 3, 0x20);
	CU_ASSERT_EQUAL(write_file(step, name, "o"), 0);
	CU_ASSERT_EQUAL(write_file(step, "MANIFEST", "m"), 0);
	CU_ASSERT_EQUAL(write_file(step, ".tmp.h.1.2.rank-000000-0000000000000030.ckz", "t"), 0);
	CU_ASSERT_EQUAL_FATAL(ckpt_store__list_other_saves(step, 0x10, &paths, &n), 0);
	CU_ASSERT_EQUAL(n, 2);
	for (size_t i = 0; i < n; i++) {
		CU_ASSERT(!strncmp(paths[i], step, strlen(step)));
		CU_ASSERT_PTR_NOT_NULL(strstr(paths[i], "-0000000000000020.ckz"));
	}
	ckpt_store__free_paths(paths, n);
	strcat(step, "/missing");
	CU_ASSERT_EQUAL(ckpt_store__list_other_saves(step, 0x10, &paths, &n), 0);
	CU_ASSERT_EQUAL(n, 0);
}

/* fs_now is the filesystem's stamp of a new file, and leaves nothing behind; create_durable
 * creates once, and says 1 (nothing written) when the name exists. */
static void test_fs_now_and_create(void)
{
	char dir[DLEN], path[DLEN + 16];
	struct ckpt_err err = { "" };
	uint64_t now = 0;
	uint8_t *buf;
	size_t len;

	fresh(dir, sizeof(dir), "fsnow");
	CU_ASSERT_EQUAL(ckpt_store__fs_now(dir, &now, &err), CKPT_OK);
	CU_ASSERT(now > (uint64_t)1600000000 * 1000000000u);
	CU_ASSERT_EQUAL(nentries(dir), 0);
	CU_ASSERT(ckpt_store__fs_now("/nonexistent-ckpt-dir", &now, &err) < 0);
	CU_ASSERT_EQUAL(ckpt_store__create_durable(dir, ".writer", "one\n", 4, &err), 0);
	CU_ASSERT_EQUAL(ckpt_store__create_durable(dir, ".writer", "two\n", 4, &err), 1);
	CU_ASSERT_EQUAL(nentries(dir), 1); /* no temporary file left */
	snprintf(path, sizeof(path), "%s/.writer", dir);
	CU_ASSERT_EQUAL_FATAL(ckpt_store__read_file(path, &buf, &len, 64, NULL), CKPT_OK);
	CU_ASSERT(len == 4 && !memcmp(buf, "one\n", 4));
	free(buf);
}

/* The lease file's exact line (docs/FORMAT.md 2.1): what is written reads back; anything else
 * does not parse (-1) but still gives the file's age; no file is 1. */
static void test_lease_read(void)
{
	char dir[DLEN], text[CKPT_LEASE_MAX];
	struct ckpt_store_lease l = { 0xfeedface01234567ull, 4242, "node-7" }, r;
	int64_t mt = 0;
	double age = -1;
	int len;

	fresh(dir, sizeof(dir), "lease");
	CU_ASSERT_EQUAL(ckpt_store__lease_read(dir, &r, &mt, &age), 1);
	len = ckpt_store__lease_format(text, &l);
	CU_ASSERT_STRING_EQUAL(text, "ckpt-writer-lease 1 feedface01234567 4242 node-7\n");
	CU_ASSERT_EQUAL(len, (int)strlen(text));
	CU_ASSERT_EQUAL(write_file(dir, ".writer", text), 0);
	CU_ASSERT_EQUAL(set_mtime(dir, ".writer", time(NULL) - 100, 0), 0);
	CU_ASSERT_EQUAL(ckpt_store__lease_read(dir, &r, &mt, &age), 0);
	CU_ASSERT(r.id == l.id && r.pid == 4242 && !strcmp(r.host, "node-7"));
	CU_ASSERT(age > 90 && age < 200); /* against the filesystem's clock */
	CU_ASSERT(mt > 0);
	CU_ASSERT_EQUAL(nentries(dir), 1); /* the probe is gone */
	static const char *const bad[] = {
		"ckpt-writer-lease 1 feedface01234567 4242 node-7",        /* no newline */
		"ckpt-writer-lease 1 feedface01234567 4242 node-7\nx",     /* after the newline */
		"ckpt-writer-lease 2 feedface01234567 4242 node-7\n",      /* version */
		"ckpt-writer-lease 1 feedface01234567 0 node-7\n",         /* pid */
		"ckpt-writer-lease 1 feedface01234567 4242 node 7\n",      /* a space in host */
		"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(write_file(dir, ".writer", bad[i]), 0);
		CU_ASSERT_EQUAL(ckpt_store__lease_read(dir, &r, NULL, NULL), -1);
	}
}

int main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("store", suite_init, suite_clean);
	if (!s || !CU_add_test(s, "names", test_names) ||
	    !CU_add_test(s, "parse_step rejects", test_parse_step_bad) ||
	    !CU_add_test(s, "mkdirs", test_mkdirs) ||
	    !CU_add_test(s, "tmp_path", test_tmp_path) ||
	    !CU_add_test(s, "publish", test_publish) ||
	    !CU_add_test(s, "write_durable", test_write_durable) ||
	    !CU_add_test(s, "read_file", test_read_file) ||
	    !CU_add_test(s, "list_steps", test_list_steps) ||
	    !CU_add_test(s, "cleanup_tmp", test_cleanup_tmp) ||
	    !CU_add_test(s, "retire and remove_retired", test_retire) ||
	    !CU_add_test(s, "remove_step", test_remove_step) ||
	    !CU_add_test(s, "remove_other_saves", test_remove_other_saves) ||
	    !CU_add_test(s, "sweep_superseded (rule S)", test_sweep_superseded) ||
	    !CU_add_test(s, "list_other_saves", test_list_other_saves) ||
	    !CU_add_test(s, "fs_now and create_durable", test_fs_now_and_create) ||
	    !CU_add_test(s, "lease_read and lease_format", test_lease_read)) {
		CU_cleanup_registry();
		return 1;
	}
	return th_run();
}
