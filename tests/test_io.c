/* SPDX-License-Identifier: MIT */
/* Unit tests of the io module: both backends, write errors, the fallback under a seccomp filter. */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt.h"
#include "io.h"
#include "harness.h"

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425 /* the same number on every architecture */
#endif

#define DEPTH 4
#define BLOCK (64u << 10)
#define NWRITES 16

static char *dir;
static int seq;

static int suite_init(void)
{
	dir = th_mkdtemp("io");
	return dir ? 0 : -1;
}

static int suite_clean(void)
{
	th_rmtree(dir);
	free(dir);
	return 0;
}

static void path_for(char *buf, size_t len, const char *tag)
{
	snprintf(buf, len, "%s/%s-%d", dir, tag, seq++);
}

/* Open for writing with O_DIRECT where the filesystem allows it (tmpfs does not). */
static int open_target(const char *path, int *direct)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0600);

	*direct = fd >= 0;
	if (fd < 0 && errno == EINVAL)
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	return fd;
}

/* Write NWRITES aligned blocks with up to DEPTH in flight, checking that each reaped slot is one
 * that was outstanding; then read the file back. Returns the number of problems found. */
static int write_and_verify(struct ckpt_io *io, const char *path)
{
	void *bufs[DEPTH] = { NULL };
	int owner[DEPTH];          /* write index held by each slot, -1 when free */
	unsigned maxflight = 0, slot;
	struct ckpt_err err = { "" };
	int fd, direct, problems = 0, rc;
	uint8_t *back = NULL, *want = NULL;

	if ((fd = open_target(path, &direct)) < 0) {
		fprintf(stderr, "open %s: %s\n", path, strerror(errno));
		return 1;
	}
	for (int i = 0; i < DEPTH; i++) {
		owner[i] = -1;
		if (posix_memalign(&bufs[i], 4096, BLOCK))
			problems++;
	}
	if (problems)
		goto out;
	for (int w = 0; w < NWRITES; w++) {
		/* find a free slot, reaping one when all are busy */
		for (slot = 0; slot < DEPTH && owner[slot] >= 0; slot++)
			;
		if (slot == DEPTH) {
			if ((rc = ckpt_io__reap(io, &slot, &err)) != CKPT_OK) {
				fprintf(stderr, "reap: %d %s\n", rc, err.msg);
				problems++;
			}
			if (slot >= DEPTH || owner[slot] < 0) {
				fprintf(stderr, "reap returned slot %u, which was not in flight\n", slot);
				problems++;
				goto out;
			}
			owner[slot] = -1;
		}
		th_fill(bufs[slot], BLOCK, 1000 + (uint64_t)w);
		owner[slot] = w;
		if ((rc = ckpt_io__submit(io, fd, bufs[slot], BLOCK, (uint64_t)w * BLOCK, slot,
					  &err)) != CKPT_OK) {
			fprintf(stderr, "submit %d: %d %s\n", w, rc, err.msg);
			problems++;
			owner[slot] = -1;
		}
		if (io->inflight > maxflight)
			maxflight = io->inflight;
	}
	if (maxflight != DEPTH) {
		fprintf(stderr, "at most %u writes were in flight, want %u\n", maxflight, DEPTH);
		problems++;
	}
	/* reap the rest one by one: each slot in flight comes back exactly once */
	while (io->inflight) {
		if ((rc = ckpt_io__reap(io, &slot, &err)) != CKPT_OK)
			problems++;
		if (slot >= DEPTH || owner[slot] < 0) {
			fprintf(stderr, "final reap returned slot %u, not in flight\n", slot);
			problems++;
			goto out;
		}
		owner[slot] = -1;
	}
	for (int i = 0; i < DEPTH; i++)
		if (owner[i] >= 0)
			problems++;
	if (fsync(fd) < 0)
		problems++;
	/* read back through a separate, buffered descriptor */
	back = malloc(BLOCK);
	want = malloc(BLOCK);
	{
		int rfd = open(path, O_RDONLY | O_CLOEXEC);
		struct stat st;

		if (rfd < 0 || !back || !want || fstat(rfd, &st) < 0 ||
		    st.st_size != (off_t)NWRITES * BLOCK) {
			fprintf(stderr, "%s: wrong size or unreadable\n", path);
			problems++;
		} else {
			for (int w = 0; w < NWRITES; w++) {
				th_fill(want, BLOCK, 1000 + (uint64_t)w);
				if (ckpt_io__pread_full(rfd, back, BLOCK, (uint64_t)w * BLOCK, &err,
							"test") != CKPT_OK ||
				    memcmp(back, want, BLOCK)) {
					fprintf(stderr, "block %d differs\n", w);
					problems++;
				}
			}
		}
		if (rfd >= 0)
			close(rfd);
	}
out:
	for (int i = 0; i < DEPTH; i++)
		free(bufs[i]);
	free(back);
	free(want);
	close(fd);
	(void)direct;
	return problems;
}

static void roundtrip(enum ckpt_backend backend, const char *name)
{
	struct ckpt_io *io = NULL;
	struct ckpt_err err = { "" };
	char path[4096];
	int rc;

	rc = ckpt_io__open(&io, backend, DEPTH, &err);
	if (rc != CKPT_OK)
		fprintf(stderr, "ckpt_io__open(%s): %d %s\n", name, rc, err.msg);
	CU_ASSERT_EQUAL_FATAL(rc, CKPT_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(io);
	CU_ASSERT_STRING_EQUAL(ckpt_io__name(io), name);
	CU_ASSERT_EQUAL(io->depth, DEPTH);
	CU_ASSERT_EQUAL(io->inflight, 0);
	path_for(path, sizeof(path), name);
	CU_ASSERT_EQUAL(write_and_verify(io, path), 0);
	/* the queue is reusable for a second file */
	path_for(path, sizeof(path), name);
	CU_ASSERT_EQUAL(write_and_verify(io, path), 0);
	ckpt_io__close(io);
}

static void test_posix_roundtrip(void)
{
	roundtrip(CKPT_BACKEND_POSIX, "posix");
}

static void test_uring_roundtrip(void)
{
#ifdef HAVE_LIBURING
	roundtrip(CKPT_BACKEND_URING, "uring");
#else
	struct ckpt_io *io = (struct ckpt_io *)1;

	printf("SKIP: built without liburing (uring backend round trip); ");
	CU_ASSERT_EQUAL(ckpt_io__open(&io, CKPT_BACKEND_URING, DEPTH, NULL), CKPT_ENOTSUP);
	CU_ASSERT_PTR_NULL(io);
#endif
}

static void test_auto(void)
{
	struct ckpt_io *io = NULL;
	char path[4096];

	CU_ASSERT_EQUAL_FATAL(ckpt_io__open(&io, CKPT_BACKEND_AUTO, DEPTH, NULL), CKPT_OK);
#ifdef HAVE_LIBURING
	/* io_uring works in this process (the uring test needs it), so auto picks it */
	CU_ASSERT_STRING_EQUAL(ckpt_io__name(io), "uring");
#else
	CU_ASSERT_STRING_EQUAL(ckpt_io__name(io), "posix");
#endif
	path_for(path, sizeof(path), "auto");
	CU_ASSERT_EQUAL(write_and_verify(io, path), 0);
	ckpt_io__close(io);
	CU_ASSERT_STRING_EQUAL(ckpt_io__name(NULL), "none");
	ckpt_io__close(NULL);
}

static int is_ckpt_error(int rc)
{
	return rc < 0 && rc >= CKPT_EMPI &&
	       strcmp(ckpt_strerror(rc), ckpt_strerror(-1000)) != 0;
}

/* A write that the kernel refuses comes back as a CKPT code, from submit or from reap; the other
 * writes in flight still complete and reap_all leaves nothing outstanding. */
static void write_errors(enum ckpt_backend backend)
{
	struct ckpt_io *io = NULL;
	struct ckpt_err err;
	char path[4096];
	void *buf = NULL;
	int rw, ro, rc, direct;
	unsigned slot = 99;
	uint8_t check[4096];

	CU_ASSERT_EQUAL_FATAL(ckpt_io__open(&io, backend, DEPTH, NULL), CKPT_OK);
	CU_ASSERT_FATAL(posix_memalign(&buf, 4096, 4096) == 0);
	th_fill(buf, 4096, 3);
	path_for(path, sizeof(path), "err");
	rw = open_target(path, &direct);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	CU_ASSERT_FATAL(rw >= 0 && ro >= 0);

	/* one bad write alone */
	err.msg[0] = '\0';
	rc = ckpt_io__submit(io, ro, buf, 4096, 0, 2, &err);
	if (rc == CKPT_OK) {
		rc = ckpt_io__reap(io, &slot, &err);
		CU_ASSERT_EQUAL(slot, 2);
	}
	CU_ASSERT(is_ckpt_error(rc));
	CU_ASSERT(err.msg[0] != '\0');
	CU_ASSERT_EQUAL(io->inflight, 0);

	/* a bad write between good ones: reap_all reports it, the good ones land */
	err.msg[0] = '\0';
	CU_ASSERT_EQUAL(ckpt_io__submit(io, rw, buf, 4096, 0, 0, NULL), CKPT_OK);
	rc = ckpt_io__submit(io, ro, buf, 4096, 4096, 1, &err);
	CU_ASSERT(rc == CKPT_OK || is_ckpt_error(rc));
	CU_ASSERT_EQUAL(ckpt_io__submit(io, rw, buf, 4096, 8192, 3, NULL), CKPT_OK);
	if (rc == CKPT_OK)
		rc = ckpt_io__reap_all(io, &err);
	else
		CU_ASSERT_EQUAL(ckpt_io__reap_all(io, NULL), CKPT_OK);
	CU_ASSERT(is_ckpt_error(rc));
	CU_ASSERT(err.msg[0] != '\0');
	CU_ASSERT_EQUAL(io->inflight, 0);
	CU_ASSERT_EQUAL(ckpt_io__pread_full(ro, check, 4096, 0, NULL, "t"), CKPT_OK);
	CU_ASSERT_EQUAL(memcmp(check, buf, 4096), 0);
	CU_ASSERT_EQUAL(ckpt_io__pread_full(ro, check, 4096, 8192, NULL, "t"), CKPT_OK);
	CU_ASSERT_EQUAL(memcmp(check, buf, 4096), 0);

	/* O_DIRECT refuses a misaligned offset (where the filesystem supports O_DIRECT) */
	if (direct) {
		err.msg[0] = '\0';
		rc = ckpt_io__submit(io, rw, buf, 4096, 100, 0, &err);
		if (rc == CKPT_OK)
			rc = ckpt_io__reap(io, &slot, &err);
		CU_ASSERT(is_ckpt_error(rc));
		CU_ASSERT(err.msg[0] != '\0');
	}
	/* and the queue still works afterwards */
	CU_ASSERT_EQUAL(ckpt_io__submit(io, rw, buf, 4096, 12288, 0, NULL), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_io__reap(io, &slot, NULL), CKPT_OK);
	CU_ASSERT_EQUAL(slot, 0);
	close(rw);
	close(ro);
	free(buf);
	ckpt_io__close(io);
}

static void test_posix_errors(void)
{
	write_errors(CKPT_BACKEND_POSIX);
}

static void test_uring_errors(void)
{
#ifdef HAVE_LIBURING
	write_errors(CKPT_BACKEND_URING);
#else
	printf("SKIP: built without liburing (uring write errors); ");
#endif
}

/* In a child limited by RLIMIT_FSIZE, a write crossing the limit is first short, then refused
 * with EFBIG: the backend finishes the short write itself and reports CKPT_ENOSPC. */
static int fsize_child(enum ckpt_backend backend, const char *path)
{
	struct ckpt_io *io = NULL;
	struct rlimit rl = { 3 * 4096 + 512, 3 * 4096 + 512 };
	struct stat st;
	unsigned slot;
	void *buf;
	int fd, rc;

	signal(SIGXFSZ, SIG_IGN);
	if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
		return 10;
	if (ckpt_io__open(&io, backend, DEPTH, NULL) != CKPT_OK)
		return 11;
	if (posix_memalign(&buf, 4096, 8 * 4096))
		return 12;
	th_fill(buf, 8 * 4096, 11);
	if ((fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		return 13;
	rc = ckpt_io__submit(io, fd, buf, 8 * 4096, 0, 1, NULL);
	if (rc == CKPT_OK)
		rc = ckpt_io__reap(io, &slot, NULL);
	if (rc != CKPT_ENOSPC) {
		fprintf(stderr, "write past RLIMIT_FSIZE (%s): rc %d, want CKPT_ENOSPC\n",
			ckpt_io__name(io), rc);
		return 14;
	}
	/* the bytes below the limit were written */
	if (fstat(fd, &st) < 0 || st.st_size != (off_t)rl.rlim_cur)
		return 15;
	{
		uint8_t back[3 * 4096 + 512];

		if (ckpt_io__pread_full(fd, back, sizeof(back), 0, NULL, "t") != CKPT_OK ||
		    memcmp(back, buf, sizeof(back)))
			return 16;
	}
	close(fd);
	ckpt_io__close(io);
	free(buf);
	return 0;
}

static void fsize_limit(enum ckpt_backend backend)
{
	char path[4096];
	pid_t pid;
	int st;

	path_for(path, sizeof(path), "fsize");
	fflush(NULL);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0)
		_exit(fsize_child(backend, path));
	CU_ASSERT_EQUAL_FATAL(waitpid(pid, &st, 0), pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "fsize child: status 0x%x\n", st);
		CU_FAIL("write past RLIMIT_FSIZE");
	}
}

static void test_posix_short_write(void)
{
	fsize_limit(CKPT_BACKEND_POSIX);
}

static void test_uring_short_write(void)
{
#ifdef HAVE_LIBURING
	fsize_limit(CKPT_BACKEND_URING);
#else
	printf("SKIP: built without liburing (uring short write); ");
#endif
}

static void test_full_helpers(void)
{
	struct ckpt_err err;
	char path[4096];
	uint8_t data[100], back[200];
	int fd, ro, wo;

	path_for(path, sizeof(path), "full");
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	th_fill(data, sizeof(data), 8);
	CU_ASSERT_EQUAL(ckpt_io__pwrite_full(fd, data, sizeof(data), 0, NULL, "t"), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_io__pread_full(fd, back, 100, 0, NULL, "t"), CKPT_OK);
	CU_ASSERT_EQUAL(memcmp(back, data, 100), 0);
	CU_ASSERT_EQUAL(ckpt_io__pread_full(fd, back, 40, 60, NULL, "t"), CKPT_OK);
	CU_ASSERT_EQUAL(memcmp(back, data + 60, 40), 0);
	CU_ASSERT_EQUAL(ckpt_io__pread_full(fd, back, 0, 100, NULL, "t"), CKPT_OK);
	/* reading past the end: the file is shorter than an index claims */
	err.msg[0] = '\0';
	CU_ASSERT_EQUAL(ckpt_io__pread_full(fd, back, 200, 0, &err, "shard X"), CKPT_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "shard X"));
	CU_ASSERT_EQUAL(ckpt_io__pread_full(fd, back, 1, 100, NULL, "t"), CKPT_ECORRUPT);
	CU_ASSERT_EQUAL(ckpt_io__pread_full(fd, back, 41, 60, NULL, "t"), CKPT_ECORRUPT);
	CU_ASSERT_EQUAL(ckpt_io__pread_full(fd, back, 1, 1u << 30, NULL, "t"), CKPT_ECORRUPT);
	/* a write at an offset leaves a hole, which reads as zeros */
	CU_ASSERT_EQUAL(ckpt_io__pwrite_full(fd, data, 10, 150, NULL, "t"), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_io__pread_full(fd, back, 160, 0, NULL, "t"), CKPT_OK);
	CU_ASSERT_EQUAL(back[120], 0);
	CU_ASSERT_EQUAL(memcmp(back + 150, data, 10), 0);
	/* system errors become CKPT codes with the system's words */
	ro = open(path, O_RDONLY | O_CLOEXEC);
	wo = open(path, O_WRONLY | O_CLOEXEC);
	CU_ASSERT_FATAL(ro >= 0 && wo >= 0);
	err.msg[0] = '\0';
	CU_ASSERT_EQUAL(ckpt_io__pwrite_full(ro, data, 10, 0, &err, "ro file"), CKPT_EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "ro file"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, strerror(EBADF)));
	CU_ASSERT_EQUAL(ckpt_io__pread_full(wo, back, 10, 0, NULL, "t"), CKPT_EIO);
	CU_ASSERT_EQUAL(ckpt_io__pread_full(-1, back, 10, 0, NULL, "t"), CKPT_EIO);
	CU_ASSERT_EQUAL(ckpt_io__pwrite_full(-1, data, 10, 0, NULL, "t"), CKPT_EIO);
	close(ro);
	close(wo);
	close(fd);
}

/* ---- the fallback when a seccomp profile forbids io_uring (as Docker's default does) ---- */

static int forbid_io_uring(void)
{
	struct sock_filter f[] = {
#if defined(__x86_64__)
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
#elif defined(__aarch64__)
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_AARCH64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
#endif
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { (unsigned short)(sizeof(f) / sizeof(f[0])), f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}

/* Exit codes of the child, so the parent can say which step failed. */
enum {
	FB_OK = 0, FB_NNP_SECCOMP = 10, FB_FILTER_INEFFECTIVE, FB_AUTO_OPEN, FB_AUTO_NAME,
	FB_AUTO_WRITE, FB_URING_NOT_REFUSED, FB_CONFIG, FB_OPEN, FB_SAVE, FB_WAIT, FB_LOAD_LOCAL,
	FB_NO_MANIFEST, FB_LOAD_SHARED, FB_CLOSE, FB_OPEN_URING, FB_SKIP = 77,
};

static const char *fb_what(int code)
{
	switch (code) {
	case FB_NNP_SECCOMP: return "installing the seccomp filter";
	case FB_FILTER_INEFFECTIVE: return "the filter did not make io_uring_setup fail with EPERM";
	case FB_AUTO_OPEN: return "ckpt_io__open(AUTO) failed";
	case FB_AUTO_NAME: return "ckpt_io__open(AUTO) did not pick posix";
	case FB_AUTO_WRITE: return "writes through the fallback";
	case FB_URING_NOT_REFUSED: return "ckpt_io__open(URING) was not CKPT_ENOTSUP";
	case FB_CONFIG: return "ckpt_config_new/set";
	case FB_OPEN: return "ckpt_open";
	case FB_SAVE: return "ckpt_save";
	case FB_WAIT: return "ckpt_wait";
	case FB_LOAD_LOCAL: return "ckpt_load (local copy) not bit-exact";
	case FB_NO_MANIFEST: return "no MANIFEST committed on the shared tier";
	case FB_LOAD_SHARED: return "ckpt_load (shared copy) not bit-exact";
	case FB_CLOSE: return "ckpt_close";
	case FB_OPEN_URING: return "ckpt_open with io_backend=uring was not CKPT_ENOTSUP";
	default: return "unexpected exit";
	}
}

static int fallback_child(const char *base)
{
	struct ckpt_io *io = (struct ckpt_io *)1;
	struct ckpt_err err = { "" };
	char local[2048], shared[2048], path[4096];
	const size_t wsize = (3u << 20) + 12345, ssize = 1000;
	uint8_t *w = malloc(wsize), *s = malloc(ssize), *back = malloc(wsize);
	ckpt_config *cfg = NULL;
	ckpt_ctx *ctx = NULL;
	long r;
	int rc;

	if (forbid_io_uring() < 0)
		return errno == EINVAL ? FB_SKIP : FB_NNP_SECCOMP;
	/* the filter works: the raw system call is refused */
	{
		uint8_t params[120];

		memset(params, 0, sizeof(params));
		errno = 0;
		r = syscall(__NR_io_uring_setup, 4, params);
		if (r != -1 || errno != EPERM)
			return FB_FILTER_INEFFECTIVE;
	}
	/* ckpt_io__open: auto falls back, uring refuses */
	if ((rc = ckpt_io__open(&io, CKPT_BACKEND_AUTO, DEPTH, &err)) != CKPT_OK) {
		fprintf(stderr, "ckpt_io__open(AUTO) in the filtered child: %d %s\n", rc, err.msg);
		return FB_AUTO_OPEN;
	}
	if (strcmp(ckpt_io__name(io), "posix"))
		return FB_AUTO_NAME;
	snprintf(path, sizeof(path), "%s/fallback-io", base);
	if (write_and_verify(io, path))
		return FB_AUTO_WRITE;
	ckpt_io__close(io);
	io = (struct ckpt_io *)1;
	rc = ckpt_io__open(&io, CKPT_BACKEND_URING, DEPTH, &err);
	if (rc != CKPT_ENOTSUP || io != NULL) {
		fprintf(stderr, "ckpt_io__open(URING) in the filtered child: %d\n", rc);
		return FB_URING_NOT_REFUSED;
	}

	/* the whole public API on top of the fallback */
	if (!w || !s || !back)
		return FB_CONFIG;
	if (!th_real_data("weights-fp32.bin", w, wsize))
		th_fill(w, wsize, 21);
	th_fill(s, ssize, 22);
	snprintf(local, sizeof(local), "%s/local", base);
	snprintf(shared, sizeof(shared), "%s/shared", base);
	if (ckpt_config_new(&cfg) || ckpt_config_set(cfg, "local_dir", local) ||
	    ckpt_config_set(cfg, "shared_dir", shared) || ckpt_config_set(cfg, "name", "fallback") ||
	    ckpt_config_set(cfg, "chunk_size", "1M"))
		return FB_CONFIG;
	if ((rc = ckpt_open(&ctx, cfg)) != CKPT_OK) {
		fprintf(stderr, "ckpt_open: %d %s\n", rc, ckpt_errmsg(NULL));
		return FB_OPEN;
	}
	{
		ckpt_region regs[2] = { { "weights", w, wsize }, { "small", s, ssize } };

		if ((rc = ckpt_save(ctx, 7, regs, 2)) != CKPT_OK) {
			fprintf(stderr, "ckpt_save: %d %s\n", rc, ckpt_errmsg(ctx));
			return FB_SAVE;
		}
	}
	if ((rc = ckpt_wait(ctx, 7)) != CKPT_OK) {
		fprintf(stderr, "ckpt_wait: %d %s\n", rc, ckpt_errmsg(ctx));
		return FB_WAIT;
	}
	memset(back, 0, wsize);
	if (ckpt_load(ctx, 7, "weights", back, wsize) || memcmp(back, w, wsize) ||
	    ckpt_load(ctx, 7, "small", back, ssize) || memcmp(back, s, ssize))
		return FB_LOAD_LOCAL;
	snprintf(path, sizeof(path), "%s/fallback/step-%020d/MANIFEST", shared, 7);
	if (access(path, F_OK))
		return FB_NO_MANIFEST;
	/* without the local copy, the load decompresses the shared one */
	if (th_sh("rm -rf '%s/fallback/step-%020d'", local, 7))
		return FB_LOAD_SHARED;
	memset(back, 0, wsize);
	if ((rc = ckpt_load(ctx, 7, "weights", back, wsize)) || memcmp(back, w, wsize) ||
	    ckpt_load(ctx, 7, "small", back, ssize) || memcmp(back, s, ssize)) {
		fprintf(stderr, "ckpt_load from shared: %d %s\n", rc, ckpt_errmsg(ctx));
		return FB_LOAD_SHARED;
	}
	if ((rc = ckpt_close(ctx)) != CKPT_OK) {
		fprintf(stderr, "ckpt_close: %d\n", rc);
		return FB_CLOSE;
	}
	/* asking for io_uring explicitly fails at open */
	ctx = NULL;
	if (ckpt_config_set(cfg, "io_backend", "uring"))
		return FB_CONFIG;
	rc = ckpt_open(&ctx, cfg);
	if (rc != CKPT_ENOTSUP || ctx) {
		fprintf(stderr, "ckpt_open(io_backend=uring) in the filtered child: %d\n", rc);
		return FB_OPEN_URING;
	}
	ckpt_config_free(cfg);
	free(w);
	free(s);
	free(back);
	return FB_OK;
}

static void test_seccomp_fallback(void)
{
	char *base = th_mkdtemp("io-fallback");
	char sub[4096];
	pid_t pid;
	int st;

	CU_ASSERT_PTR_NOT_NULL_FATAL(base);
	snprintf(sub, sizeof(sub), "%s/local", base);
	CU_ASSERT_EQUAL(mkdir(sub, 0700), 0);
	snprintf(sub, sizeof(sub), "%s/shared", base);
	CU_ASSERT_EQUAL(mkdir(sub, 0700), 0);
	fflush(NULL);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		/* the child's copy of base is its own to free: valgrind checks the child's leaks too */
		int code = fallback_child(base);

		free(base);
		_exit(code);
	}
	CU_ASSERT_EQUAL(waitpid(pid, &st, 0), pid);
	if (WIFEXITED(st) && WEXITSTATUS(st) == FB_SKIP) {
		printf("SKIP: this kernel has no seccomp filters; fallback untested; ");
	} else if (!WIFEXITED(st) || WEXITSTATUS(st) != FB_OK) {
		fprintf(stderr, "seccomp child: %s (status 0x%x)\n",
			WIFEXITED(st) ? fb_what(WEXITSTATUS(st)) : "killed by a signal", st);
		CU_FAIL("io_uring fallback under seccomp");
	}
	th_rmtree(base);
	free(base);
}

int main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
#ifndef HAVE_LIBURING
	printf("built without liburing: the uring-specific tests are skipped\n");
#endif
	s = CU_add_suite("io", suite_init, suite_clean);
	if (!s || !CU_add_test(s, "posix round trip", test_posix_roundtrip) ||
	    !CU_add_test(s, "uring round trip", test_uring_roundtrip) ||
	    !CU_add_test(s, "auto", test_auto) ||
	    !CU_add_test(s, "posix write errors", test_posix_errors) ||
	    !CU_add_test(s, "uring write errors", test_uring_errors) ||
	    !CU_add_test(s, "posix short write", test_posix_short_write) ||
	    !CU_add_test(s, "uring short write", test_uring_short_write) ||
	    !CU_add_test(s, "pwrite_full and pread_full", test_full_helpers) ||
	    !CU_add_test(s, "fallback under seccomp", test_seccomp_fallback)) {
		CU_cleanup_registry();
		return 1;
	}
	return th_run();
}
