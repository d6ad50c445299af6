/* SPDX-License-Identifier: MIT */
/* ckpt_bench: ckpt_save blocking time against raw O_DIRECT writes, and drain throughput against
 * the zstd command line, on the same directories and the same bytes (real trained weights).
 *
 * A benchmark, not a test: it prints figures and whether the targets are met, and exits 0 either
 * way (1 only when it cannot run). It calls the public API only, so it measures what users get.
 *
 * Method, and why:
 * - Each repetition runs, back to back: the raw write, ckpt_save from a 4096-aligned buffer and
 *   its drain, ckpt_save from a 64-byte-aligned buffer (what malloc'd tensors usually are: the
 *   library must copy through its bounce buffers) and its drain, then the zstd CLI. Interleaving
 *   lets every variant share the machine's noise instead of each getting its own.
 * - ckpt_wait follows every ckpt_save, so no drain runs during the next measurement; sync() runs
 *   before every timed step, so no writeback of earlier dirty pages lands inside one.
 * - The drain reads a local copy written with O_DIRECT, i.e. from the device; the zstd input is
 *   evicted from the page cache (fdatasync + POSIX_FADV_DONTNEED) before each run, for the same
 *   footing. zstd runs at the drain threads' nice level (drain_nice), so that other load on the
 *   machine slows both alike. zstd does not fsync its output, the drain does (and renames and
 *   commits): both zstd figures are printed; the target uses the plain CLI, the stricter one.
 * - --ranks N forks N processes (one context each, like N ranks of a node) that run every step in
 *   lockstep: a barrier starts each step on all of them, a step takes as long as its slowest
 *   rank, and throughput counts the bytes of all ranks.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "config.h" /* ckpt_config__parse_size: --size takes what chunk_size takes */

#define ALIGN 4096
#define PIECE (8u << 20)   /* raw baseline: one pwrite per 8 MiB, the library's bounce size */
#define MISALIGN 64        /* the "tensor" buffer: 64-byte aligned, never 4096-byte aligned */
#define MAXREGIONS 64
#define MAXSETS 16
#define MAXRANKS 64
#define TARGET_SAVE 1.10   /* median ckpt_save <= 1.10 x median raw write */
#define TARGET_DRAIN 1.00  /* drain MB/s >= 1.0 x zstd CLI MB/s */

extern char **environ;

static const char *const data_files[] = { "weights-fp32.bin", "adamw-state-fp32.bin",
					  "weights-bf16.bin" };
#define NDATA (sizeof(data_files) / sizeof(*data_files))

struct opts {
	const char *local, *shared, *data, *backend;
	uint64_t size;
	unsigned reps, threads, regions, ranks;
	int level, json, aligned_only, no_sets;
	uint64_t set_size;         /* part c: bytes per data set (each tiled to this size), or 0 */
	uint64_t set_sizes[4];     /* --set-size, each a pass of part c (0: the files as they are) */
	unsigned nset_sizes;
	unsigned set_reps;         /* part c: repetitions (medians) */
	const char *tool;          /* part c: the `ckpt` tool, for `ckpt restore`; NULL: not run */
	const char *sets[MAXSETS]; /* extra KEY=VALUE for ckpt_config_set */
	unsigned nsets;
};

/* The timed steps of one repetition. */
enum { P_RAW, P_SAVE_A, P_DRAIN_A, P_SAVE_M, P_DRAIN_M, P_ZSTD, P_ZSYNC, NPHASE };
enum { F_WALL, F_USR, F_SYS, NFIELD };

/* Shared by the ranks (MAP_SHARED): the barrier, and every rank's measurements. */
struct board {
	unsigned nranks, reps;
	unsigned count, gen;      /* barrier */
	int stop, stop_at_release; /* a signal asks to stop; all ranks learn it at one barrier */
	int abort;                 /* a rank failed: the others leave too */
	int raw_direct, zstd_failed;
	unsigned reps_done;
	uint64_t stored, zstored;
	double cell[];             /* [rank][phase][rep][field] */
};

static struct board *bd;

static double *cell(unsigned rank, unsigned phase, unsigned rep, unsigned field)
{
	return &bd->cell[(((size_t)rank * NPHASE + phase) * bd->reps + rep) * NFIELD + field];
}

/* Everything this process creates, so that cleanup() removes exactly that and nothing else. */
static struct {
	char local_tmp[PATH_MAX], shared_tmp[PATH_MAX]; /* mkdtemp'd by rank 0: removed whole */
	char local[PATH_MAX], shared[PATH_MAX];
	long pid0;                                      /* names: ckpt-bench-<pid0>-<rank> */
	unsigned first, last;                           /* ranks whose files this one removes */
} made;

static pid_t kids[MAXRANKS]; /* rank k > 0, in rank 0 */

static void rank_paths(unsigned k, char *job_l, char *job_s, char *raw, char *zin, char *zout);

static void on_signal(int sig)
{
	(void)sig;
	if (bd)
		bd->stop = 1;
}

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("ckpt_bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (bd)
		__atomic_store_n(&bd->abort, 1, __ATOMIC_SEQ_CST);
	exit(1); /* atexit: cleanup() */
}

/* snprintf for paths: a truncated path is an error, never a different file. */
__attribute__((format(printf, 3, 4))) static void pathf(char *buf, size_t len, const char *fmt,
							...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len)
		die("path too long: %s...", buf);
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);

	if (!p)
		die("out of memory");
	return p;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double tv(struct timeval t)
{
	return (double)t.tv_sec + (double)t.tv_usec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(const double *v, unsigned n)
{
	double *s, m;

	if (!n)
		return 0;
	s = xcalloc(n, sizeof(*s));
	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	m = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	free(s);
	return m;
}

static double minimum(const double *v, unsigned n)
{
	double m = n ? v[0] : 0;

	for (unsigned i = 1; i < n; i++)
		if (v[i] < m)
			m = v[i];
	return m;
}

static double mbps(uint64_t bytes, double s)
{
	return s > 0 ? (double)bytes / s / 1e6 : 0;
}

/* All ranks wait here; returns the stop request as the last one to arrive saw it, so that every
 * rank takes the same decision. Polls (no process-shared futex needed): 0.2 ms of latency at
 * most, against steps of tens of milliseconds. */
static int barrier(void)
{
	unsigned gen = __atomic_load_n(&bd->gen, __ATOMIC_SEQ_CST);

	if (__atomic_add_fetch(&bd->count, 1, __ATOMIC_SEQ_CST) == bd->nranks) {
		__atomic_store_n(&bd->count, 0, __ATOMIC_SEQ_CST);
		__atomic_store_n(&bd->stop_at_release, bd->stop, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&bd->gen, 1, __ATOMIC_SEQ_CST);
	} else {
		struct timespec ts = { 0, 200000 };

		while (__atomic_load_n(&bd->gen, __ATOMIC_SEQ_CST) == gen) {
			if (__atomic_load_n(&bd->abort, __ATOMIC_SEQ_CST))
				die("another rank failed");
			nanosleep(&ts, NULL);
		}
	}
	return __atomic_load_n(&bd->stop_at_release, __ATOMIC_SEQ_CST);
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *f)
{
	(void)st;
	(void)f;
	if (type == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

static void rm_tree(const char *path)
{
	if (path[0])
		nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void cleanup(void)
{
	char jl[PATH_MAX], js[PATH_MAX], raw[PATH_MAX], zin[PATH_MAX], zout[PATH_MAX];

	if (!made.local[0] || !made.shared[0])
		return;
	/* Rank 0 leaving early: the others see bd->abort at their next barrier and exit. */
	for (unsigned k = 1; made.first == 0 && k <= made.last; k++)
		if (kids[k] > 0)
			while (waitpid(kids[k], NULL, 0) < 0 && errno == EINTR)
				;
	for (unsigned k = made.first; k <= made.last; k++) {
		rank_paths(k, jl, js, raw, zin, zout);
		unlink(raw);
		unlink(zin);
		unlink(zout);
		rm_tree(jl);
		rm_tree(js);
	}
	rm_tree(made.local_tmp);
	rm_tree(made.shared_tmp);
}

static const char *fs_name(const char *dir, char *buf, size_t len)
{
	struct statfs sf;

	if (statfs(dir, &sf) < 0)
		return "unknown";
	switch ((unsigned long)sf.f_type) {
	case 0xEF53: return "ext4";
	case 0x58465342: return "xfs";
	case 0x9123683E: return "btrfs";
	case 0x01021994: return "tmpfs";
	case 0x6969: return "nfs";
	case 0x794c7630: return "overlayfs";
	case 0x0BD00BD0: return "lustre";
	case 0x47504653: return "gpfs";
	case 0x19830326: return "beegfs";
	case 0x2fc12fc1: return "zfs";
	case 0x65735546: return "fuse";
	case 0xF2F52010: return "f2fs";
	case 0xFF534D42: return "cifs";
	default:
		snprintf(buf, len, "0x%lx", (unsigned long)sf.f_type);
		return buf;
	}
}

static double loadavg(void)
{
	double l = -1;
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		if (fscanf(f, "%lf", &l) != 1)
			l = -1;
		fclose(f);
	}
	return l;
}

static int has_data(const char *dir)
{
	char p[PATH_MAX];

	for (size_t i = 0; i < NDATA; i++) {
		if (snprintf(p, sizeof(p), "%s/%s", dir, data_files[i]) >= (int)sizeof(p) ||
		    access(p, R_OK))
			return 0;
	}
	return 1;
}

/* --data; else ../shared/data beside the source tree (CKPT_BENCH_SRCDIR when the build passes
 * it, else this file's compile-time path); else $CKPT_TEST_DATA. */
static const char *find_data(const char *given, char *buf, size_t len)
{
	const char *env = getenv("CKPT_TEST_DATA");
	char src[PATH_MAX];

	if (given) {
		if (!has_data(given))
			die("--data %s: needs %s, %s and %s (see shared/data/README.md)", given,
			    data_files[0], data_files[1], data_files[2]);
		return given;
	}
#ifdef CKPT_BENCH_SRCDIR
	snprintf(src, sizeof(src), "%s", CKPT_BENCH_SRCDIR);
#else
	snprintf(src, sizeof(src), "%s", __FILE__);
	for (int up = 0; up < 2; up++) { /* dirname twice: bench/ckpt_bench.c -> bench -> . */
		char *slash = strrchr(src, '/');

		if (slash)
			slash[slash == src] = '\0';
		else
			snprintf(src, sizeof(src), "%s", strcmp(src, ".") ? "." : "..");
	}
#endif
	pathf(buf, len, "%s/../shared/data", src);
	if (has_data(buf))
		return buf;
	if (env && has_data(env))
		return env;
	die("real training data not found: tried %s and $CKPT_TEST_DATA (%s); "
	    "pass --data DIR holding %s, %s and %s",
	    buf, env ? env : "unset", data_files[0], data_files[1], data_files[2]);
}

/* Fill buf with the three data files concatenated, repeated until size bytes. */
static uint64_t load_data(const char *dir, uint8_t *buf, uint64_t size)
{
	uint8_t *cat = NULL;
	uint64_t catlen = 0;

	for (size_t i = 0; i < NDATA; i++) {
		char p[PATH_MAX];
		uint8_t *grown;
		struct stat st;
		int fd;

		pathf(p, sizeof(p), "%s/%s", dir, data_files[i]);
		if ((fd = open(p, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0)
			die("open %s: %s", p, strerror(errno));
		if (!(grown = realloc(cat, catlen + (uint64_t)st.st_size)))
			die("out of memory reading %s", p);
		cat = grown;
		for (off_t got = 0; got < st.st_size;) {
			ssize_t n = read(fd, cat + catlen + got, (size_t)(st.st_size - got));

			if (n <= 0)
				die("read %s: %s", p, n ? strerror(errno) : "file shrank");
			got += n;
		}
		catlen += (uint64_t)st.st_size;
		close(fd);
	}
	if (!catlen)
		die("the data files in %s are empty", dir);
	for (uint64_t off = 0; off < size; off += catlen)
		memcpy(buf + off, cat, (size_t)(size - off < catlen ? size - off : catlen));
	free(cat);
	return catlen;
}

/* Read the file at p whole into *out (malloc'd); its size. */
static uint64_t load_data_one(const char *p, uint8_t **out)
{
	struct stat st;
	int fd;

	if ((fd = open(p, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0)
		die("open %s: %s", p, strerror(errno));
	if (!st.st_size || !(*out = malloc((size_t)st.st_size)))
		die("%s: empty, or out of memory", p);
	for (off_t got = 0; got < st.st_size;) {
		ssize_t n = read(fd, *out + got, (size_t)(st.st_size - got));

		if (n <= 0)
			die("read %s: %s", p, n ? strerror(errno) : "file shrank");
		got += n;
	}
	close(fd);
	return (uint64_t)st.st_size;
}

/* fsync (or fdatasync) a file; then optionally drop its now clean pages from the page cache. */
static void sync_file(const char *path, int datasync, int evict)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	if ((datasync ? fdatasync(fd) : fsync(fd)) < 0)
		die("fsync %s: %s", path, strerror(errno));
	if (evict)
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
}

/* pwrite all of buf to fd, `piece` bytes at a time, one after the other; dies on an error. */
static void write_all(int fd, const char *path, const uint8_t *buf, uint64_t size, size_t piece)
{
	for (uint64_t off = 0; off < size;) {
		size_t len = size - off < piece ? (size_t)(size - off) : piece;
		ssize_t n = pwrite(fd, buf + off, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("write %s: %s", path, n ? strerror(errno) : "no progress");
		off += (uint64_t)n;
	}
}

static void write_file(const char *path, const uint8_t *buf, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0)
		die("create %s: %s", path, strerror(errno));
	write_all(fd, path, buf, size, 1u << 30);
	close(fd);
}

/* The baseline: open O_DIRECT, pwrite 8 MiB pieces one after the other from an aligned buffer,
 * one fdatasync, close. Seconds from open to close; the file is removed afterwards, untimed. */
static double raw_write(const char *path, const uint8_t *buf, uint64_t size, int *direct)
{
	double t0 = now(), t;
	int fd;

	*direct = 1;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_DIRECT, 0600);
	if (fd < 0 && errno == EINVAL) { /* no O_DIRECT here (tmpfs): as the library does */
		*direct = 0;
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	}
	if (fd < 0)
		die("create %s: %s", path, strerror(errno));
	write_all(fd, path, buf, size, PIECE);
	if (fdatasync(fd) < 0)
		die("fdatasync %s: %s", path, strerror(errno));
	close(fd);
	t = now() - t0;
	unlink(path);
	return t;
}

/* Bytes of the compressed shard of `step` on the shared tier. The layout
 * (<job>/step-%020llu/rank-*.ckz) is the library's, see docs/FORMAT.md. */
static uint64_t stored_bytes(const char *shared_job, uint64_t step)
{
	char dir[PATH_MAX], p[PATH_MAX];
	uint64_t sum = 0;
	struct dirent *e;
	struct stat st;
	DIR *d;

	pathf(dir, sizeof(dir), "%s/step-%020" PRIu64, shared_job, step);
	if (!(d = opendir(dir)))
		return 0;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);

		if (e->d_name[0] == '.' || l < 4 || strcmp(e->d_name + l - 4, ".ckz"))
			continue;
		pathf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (stat(p, &st) == 0)
			sum += (uint64_t)st.st_size;
	}
	closedir(d);
	return sum;
}

static void check(ckpt_ctx *ctx, int rc, const char *what)
{
	if (rc < 0)
		die("%s: %s (%s)", what, ckpt_strerror(rc), ctx ? ckpt_errmsg(ctx) : "");
}

/* Job directories, the raw file, the zstd input and output of rank k. */
static void rank_paths(unsigned k, char *job_l, char *job_s, char *raw, char *zin, char *zout)
{
	pathf(job_l, PATH_MAX, "%s/ckpt-bench-%ld-%u", made.local, made.pid0, k);
	pathf(job_s, PATH_MAX, "%s/ckpt-bench-%ld-%u", made.shared, made.pid0, k);
	pathf(raw, PATH_MAX, "%s.raw", job_l);
	pathf(zin, PATH_MAX, "%s.zin", job_l);
	pathf(zout, PATH_MAX, "%s.zst", job_s);
}

/* One rank's state while it runs. */
struct rank {
	unsigned k;
	const struct opts *o;
	const uint8_t *buf, *mbuf;
	ckpt_ctx *ctx;
	uint64_t step;
	int nice_delta;
	char job_s[PATH_MAX], raw[PATH_MAX], zin[PATH_MAX], zout[PATH_MAX];
};

/* ckpt_save of buf split into regions, timed; then ckpt_wait, timed from save's return (the
 * drain: read the local copy, compress, write, fsync, rename, commit). */
static void ckpt_round(struct rank *rk, const uint8_t *buf, unsigned rep, unsigned p_save,
		       unsigned p_drain)
{
	const struct opts *o = rk->o;
	ckpt_region regs[MAXREGIONS];
	char names[MAXREGIONS][16];
	uint64_t per = (o->size / o->regions) & ~(uint64_t)(ALIGN - 1), off = 0, step = ++rk->step;
	struct rusage r1, r2;
	double t0, t1, t2;

	for (unsigned i = 0; i < o->regions; i++) {
		snprintf(names[i], sizeof(names[i]), "region%u", i);
		regs[i].name = names[i];
		regs[i].data = buf + off;
		regs[i].size = (size_t)(i + 1 == o->regions ? o->size - off : per);
		off += regs[i].size;
	}
	sync();
	barrier();
	t0 = now();
	check(rk->ctx, ckpt_save(rk->ctx, step, regs, o->regions), "ckpt_save");
	t1 = now();
	getrusage(RUSAGE_SELF, &r1); /* the drain threads are ours: RUSAGE_SELF counts them */
	check(rk->ctx, ckpt_wait(rk->ctx, step), "ckpt_wait (the drain failed)");
	t2 = now();
	getrusage(RUSAGE_SELF, &r2);
	*cell(rk->k, p_save, rep, F_WALL) = t1 - t0;
	*cell(rk->k, p_drain, rep, F_WALL) = t2 - t1;
	*cell(rk->k, p_drain, rep, F_USR) = tv(r2.ru_utime) - tv(r1.ru_utime);
	*cell(rk->k, p_drain, rep, F_SYS) = tv(r2.ru_stime) - tv(r1.ru_stime);
	if (rk->k == 0)
		bd->stored = stored_bytes(rk->job_s, step);
}

/* nice -n N zstd -L -TT -q -f -o OUT IN, its input evicted from the page cache just before;
 * then fsync its output (timed apart). Marks the board when zstd (or nice) is missing/fails. */
static void zstd_round(struct rank *rk, unsigned rep)
{
	const struct opts *o = rk->o;
	char lvl[32], thr[16], nic[16];
	char *argv[] = { "nice", "-n", nic, "zstd", lvl, thr, "-q", "-f", "-o",
			 rk->zout, rk->zin, NULL };
	struct rusage ru;
	struct stat st;
	double t0, t1;
	pid_t pid;
	int status, ok;

	snprintf(nic, sizeof(nic), "%d", rk->nice_delta);
	if (o->level < 0)
		snprintf(lvl, sizeof(lvl), "--fast=%d", -o->level);
	else
		snprintf(lvl, sizeof(lvl), "-%d", o->level);
	snprintf(thr, sizeof(thr), "-T%u", o->threads);
	sync_file(rk->zin, 1, 1);
	sync();
	barrier();
	t0 = now();
	ok = posix_spawnp(&pid, "nice", NULL, NULL, argv, environ) == 0;
	while (ok && wait4(pid, &status, 0, &ru) < 0)
		if (errno != EINTR)
			ok = 0;
	t1 = now();
	if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		bd->zstd_failed = 1;
		unlink(rk->zout);
		return;
	}
	sync_file(rk->zout, 0, 0); /* also keeps its writeback out of the next step */
	*cell(rk->k, P_ZSTD, rep, F_WALL) = t1 - t0;
	*cell(rk->k, P_ZSTD, rep, F_USR) = tv(ru.ru_utime);
	*cell(rk->k, P_ZSTD, rep, F_SYS) = tv(ru.ru_stime);
	*cell(rk->k, P_ZSYNC, rep, F_WALL) = now() - t0;
	if (rk->k == 0 && stat(rk->zout, &st) == 0)
		bd->zstored = (uint64_t)st.st_size;
	unlink(rk->zout);
}


/* ---- c. chunk transforms per data set (issue 15) ---- */

static const char *verdict(int ok);
static ckpt_config *configure(const struct opts *o, const char *name);
static void cfg_copy(const ckpt_config *cfg, const char *key, char *buf, size_t len);

/* sync, then drop the page cache (root only): 1 when dropped. */
static int drop_caches(void)
{
	int fd, ok;

	sync();
	if ((fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC)) < 0)
		return 0;
	ok = write(fd, "3", 1) == 1;
	close(fd);
	return ok;
}

/* Run `sh -c cmd`; its wall time and its CPU seconds (user + sys); -1 when it fails. */
static double shell_timed(const char *cmd, double *cpu)
{
	char *argv[] = { "sh", "-c", (char *)cmd, NULL };
	struct rusage ru;
	double t0 = now();
	pid_t pid;
	int st;

	if (posix_spawnp(&pid, "sh", NULL, NULL, argv, environ) != 0)
		return -1;
	while (wait4(pid, &st, 0, &ru) < 0)
		if (errno != EINTR)
			return -1;
	*cpu = tv(ru.ru_utime) + tv(ru.ru_stime);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? now() - t0 : -1;
}

struct xset {
	const char *name;
	int files[3]; /* indexes into data_files, -1 = none */
	double target;
};

/* Read data file i whole. */
static uint8_t *read_data(const char *dir, int i, uint64_t *len)
{
	char p[PATH_MAX];
	uint8_t *b = NULL;

	pathf(p, sizeof(p), "%s/%s", dir, data_files[i]);
	*len = load_data_one(p, &b);
	return b;
}

/* Drop the page cache (when we may) and run `sh -c cmd`, timed; -1 when it fails. */
static double cold_shell(const char *cmd, double *cpu, int *cold)
{
	*cold &= drop_caches();
	return shell_timed(cmd, cpu);
}

/* Per mode (0 none, 1 auto) and repetition: what part c measures of the library. */
enum { X_RATIO, X_DRAIN, X_DRAIN_CPU, X_LOAD, X_LOAD_CPU, X_TOOL, X_TOOL_CPU, X_TOOLD, X_TOOLD_CPU,
       NX };
/* ... and of the zstd CLI. */
enum { Z_C, Z_C_CPU, Z_D, Z_D_CPU, Z_DF, Z_DF_CPU, Z_DW, Z_DW_CPU, NZ };

/* One drain, one restore by ckpt_load and one by the restore tool of the set's regions with
 * chunk_transform = mode (1 auto, 0 none), into res[0..NX). */
static void xset_lib(const struct opts *o, const struct xset *x, const ckpt_region *regs, int nreg,
		     uint64_t total, int mode, unsigned rep, double *res, int *cold)
{
	char name[64], sj[PATH_MAX], cmd[4 * PATH_MAX];
	ckpt_config *cfg;
	ckpt_ctx *ctx;
	struct rusage r1, r2;
	double t1, t2;
	uint8_t *back;

	snprintf(name, sizeof(name), "ckpt-bench-%ld-x%s%d-%u", made.pid0, x->name, mode, rep);
	pathf(sj, sizeof(sj), "%s/%s", made.shared, name);
	cfg = configure(o, name);
	if (ckpt_config_set(cfg, "chunk_transform", mode ? "auto" : "none"))
		die("chunk_transform: %s", ckpt_config_errmsg(cfg));
	check(NULL, ckpt_open(&ctx, cfg), "ckpt_open");
	*cold &= drop_caches();
	check(ctx, ckpt_save(ctx, 1, regs, (size_t)nreg), "ckpt_save");
	t1 = now();
	getrusage(RUSAGE_SELF, &r1);
	check(ctx, ckpt_wait(ctx, 1), "ckpt_wait");
	t2 = now();
	getrusage(RUSAGE_SELF, &r2);
	res[X_DRAIN] = t2 - t1;
	res[X_DRAIN_CPU] = tv(r2.ru_utime) - tv(r1.ru_utime) + tv(r2.ru_stime) - tv(r1.ru_stime);
	res[X_RATIO] = (double)total / (double)stored_bytes(sj, 1);
	check(ctx, ckpt_close(ctx), "ckpt_close");
	/* restore from the shared tier only: the local copy is gone, the cache cold */
	pathf(cmd, sizeof(cmd), "rm -rf '%s/%s'", made.local, name);
	if (system(cmd) != 0)
		die("%s failed", cmd);
	check(NULL, ckpt_open(&ctx, cfg), "ckpt_open");
	ckpt_config_free(cfg);
	if (!(back = malloc(regs[0].size)))
		die("out of memory");
	*cold &= drop_caches();
	getrusage(RUSAGE_SELF, &r1);
	t1 = now();
	for (int f = 0; f < nreg; f++)
		check(ctx, ckpt_load(ctx, 1, regs[f].name, back, regs[f].size), "ckpt_load");
	t2 = now();
	getrusage(RUSAGE_SELF, &r2);
	if (memcmp(back, regs[nreg - 1].data, regs[nreg - 1].size))
		die("ckpt_load of %s returned other bytes", x->name);
	res[X_LOAD] = t2 - t1;
	res[X_LOAD_CPU] = tv(r2.ru_utime) - tv(r1.ru_utime) + tv(r2.ru_stime) - tv(r1.ru_stime);
	free(back);
	check(ctx, ckpt_close(ctx), "ckpt_close");
	/* the restore tool: the shared copy back to the local tier, as it restores by default (a
	 * cache copy: buffered writes left to the kernel's writeback) and with --durable (O_DIRECT,
	 * fdatasync, directory fsync); the first copy is removed before the second is timed (the
	 * page cache is synced and dropped before each, untimed) */
	res[X_TOOL] = res[X_TOOL_CPU] = res[X_TOOLD] = res[X_TOOLD_CPU] = 0;
	for (int durable = 0; o->tool && durable < 2; durable++) {
		double *t = &res[durable ? X_TOOLD : X_TOOL];

		pathf(cmd, sizeof(cmd), "rm -rf '%s/%s'", made.local, name);
		if (system(cmd) != 0)
			die("%s failed", cmd);
		pathf(cmd, sizeof(cmd), "CKPT_LOG_LEVEL=0 '%s' restore --shared-dir '%s' --local-dir "
		      "'%s' --name '%s' --step 1 --quiet%s", o->tool, made.shared, made.local, name,
		      durable ? " --durable" : "");
		t[0] = cold_shell(cmd, &t[1], cold);
		if (t[0] < 0)
			die("%s failed", cmd);
	}
	pathf(cmd, sizeof(cmd), "rm -rf '%s/%s' '%s'", made.local, name, sj);
	if (system(cmd) != 0)
		die("%s failed", cmd);
}

/* One data set through the library (chunk_transform auto and none) and the zstd CLI, same bytes,
 * o->set_reps times, interleaved; medians are printed. */
static void xset_run(const struct opts *o, const char *data, const struct xset *x, int *cold)
{
	uint8_t *parts[3] = { 0 };
	uint64_t lens[3] = { 0 }, total = 0, per;
	ckpt_region regs[3];
	int nreg = 0, nice_delta;
	unsigned reps = o->set_reps;
	char in[PATH_MAX], out[PATH_MAX], dec[PATH_MAX], cmd[4 * PATH_MAX], nice_s[32];
	double *lib[2][NX], *z[NZ], m[2][NX], mz[NZ], z_ratio = 0;
	struct stat st;
	ckpt_config *cfg;
	int fd;

	for (int f = 0; f < 3 && x->files[f] >= 0; f++, nreg++) {
		uint64_t n;
		uint8_t *raw = read_data(data, x->files[f], &n);

		/* each file as it is, or tiled to set_size bytes split among the set's files
		 * (--set-size: tiling makes repeats that the zstd CLI's window may see and
		 * independent chunks cannot, so the default is the files as they are) */
		per = o->set_size ? (o->set_size / (uint64_t)(x->files[1] >= 0 ? 3 : 1)) &
				    ~(uint64_t)4095 : n;
		if (!(parts[f] = malloc((size_t)per)))
			die("out of memory for data set %s", x->name);
		for (uint64_t off = 0; off < per; off += n)
			memcpy(parts[f] + off, raw, (size_t)(per - off < n ? per - off : n));
		free(raw);
		lens[f] = per;
		total += per;
		regs[f] = (ckpt_region){ data_files[x->files[f]], parts[f], (size_t)per };
	}
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < NX; i++)
			lib[k][i] = xcalloc(reps, sizeof(double));
	for (int i = 0; i < NZ; i++)
		z[i] = xcalloc(reps, sizeof(double));
	/* zstd at the drain's priority, as in part b: other load on the machine slows both alike */
	cfg = configure(o, "ckpt-bench-nice");
	cfg_copy(cfg, "drain_nice", nice_s, sizeof(nice_s));
	ckpt_config_free(cfg);
	nice_delta = atoi(nice_s) - getpriority(PRIO_PROCESS, 0);
	if (nice_delta < 0)
		nice_delta = 0;

	/* the baseline's input: the same bytes as one file, back to back */
	pathf(in, sizeof(in), "%s/ckpt-bench-%ld-x%s.in", made.local, made.pid0, x->name);
	pathf(out, sizeof(out), "%s/ckpt-bench-%ld-x%s.zst", made.shared, made.pid0, x->name);
	pathf(dec, sizeof(dec), "%s/ckpt-bench-%ld-x%s.out", made.local, made.pid0, x->name);
	if ((fd = open(in, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		die("create %s: %s", in, strerror(errno));
	{
		uint8_t *cat = malloc((size_t)total);
		uint64_t at = 0;

		if (!cat)
			die("out of memory for data set %s", x->name);
		for (int f = 0; f < nreg; f++, at += lens[f - 1])
			memcpy(cat + at, parts[f], (size_t)lens[f]);
		write_all(fd, in, cat, total, PIECE);
		free(cat);
	}
	close(fd);
	for (unsigned rep = 0; rep < reps; rep++) {
		for (int mode = 1; mode >= 0; mode--) {
			double r[NX];

			xset_lib(o, x, regs, nreg, total, mode, rep, r, cold);
			for (int i = 0; i < NX; i++)
				lib[mode][i][rep] = r[i];
		}
		/* `zstd -L -TT IN -o OUT && sync -f OUT`; `zstd -d -c OUT >/dev/null` (what ckpt_load
		 * does: decode to memory); `zstd -d OUT -o DEC` (what the restore tool does: a file
		 * left to the kernel's writeback); `zstd -d OUT -o DEC && sync -f DEC` (what
		 * `ckpt restore --durable` does: a durable file) */
		snprintf(cmd, sizeof(cmd), "nice -n %d zstd -q -f %s%d -T%u '%s' -o '%s' && sync -f "
			 "'%s'", nice_delta, o->level < 0 ? "--fast=" : "-",
			 o->level < 0 ? -o->level : o->level, o->threads, in, out, out);
		z[Z_C][rep] = cold_shell(cmd, &z[Z_C_CPU][rep], cold);
		if (z[Z_C][rep] < 0)
			break;
		z_ratio = stat(out, &st) == 0 && st.st_size ? (double)total / (double)st.st_size : 0;
		snprintf(cmd, sizeof(cmd), "zstd -q -d -c '%s' >/dev/null", out);
		z[Z_D][rep] = cold_shell(cmd, &z[Z_D_CPU][rep], cold);
		snprintf(cmd, sizeof(cmd), "zstd -q -f -d '%s' -o '%s'", out, dec);
		z[Z_DF][rep] = cold_shell(cmd, &z[Z_DF_CPU][rep], cold);
		unlink(dec);
		snprintf(cmd, sizeof(cmd), "zstd -q -f -d '%s' -o '%s' && sync -f '%s'", out, dec, dec);
		z[Z_DW][rep] = cold_shell(cmd, &z[Z_DW_CPU][rep], cold);
		unlink(dec);
		unlink(out);
	}
	unlink(in);
	for (int f = 0; f < nreg; f++)
		free(parts[f]);
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < NX; i++) {
			m[k][i] = median(lib[k][i], reps);
			free(lib[k][i]);
		}
	for (int i = 0; i < NZ; i++) {
		mz[i] = median(z[i], reps);
		free(z[i]);
	}
	{
		double gb = (double)total / 1e9;

		printf("   %-6s %4.0f MiB  ratio: auto %.3fx, none %.3fx, zstd CLI %.3fx (target >= "
		       "%.2fx: %s)\n", x->name, (double)total / 1048576, m[1][X_RATIO],
		       m[0][X_RATIO], z_ratio, x->target, verdict(m[1][X_RATIO] >= x->target));
		if (mz[Z_C] > 0)
			printf("          drain: auto %.3f s (%.1f CPU s/GB), none %.3f s (%.1f), "
			       "zstd+sync %.3f s (%.1f): CLI/auto %.2fx (target >= 1.80x: %s)\n",
			       m[1][X_DRAIN], m[1][X_DRAIN_CPU] / gb, m[0][X_DRAIN],
			       m[0][X_DRAIN_CPU] / gb, mz[Z_C], mz[Z_C_CPU] / gb,
			       mz[Z_C] / m[1][X_DRAIN], verdict(mz[Z_C] / m[1][X_DRAIN] >= 1.8));
		if (mz[Z_D] > 0)
			printf("          restore (ckpt_load, shared only): auto %.3f s (%.1f CPU s/GB), "
			       "none %.3f s (%.1f), zstd -d >/dev/null %.3f s (%.1f): zstd/auto %.2fx "
			       "(target >= 1.50x: %s)\n",
			       m[1][X_LOAD], m[1][X_LOAD_CPU] / gb, m[0][X_LOAD],
			       m[0][X_LOAD_CPU] / gb, mz[Z_D], mz[Z_D_CPU] / gb,
			       mz[Z_D] / m[1][X_LOAD], verdict(mz[Z_D] / m[1][X_LOAD] >= 1.5));
		if (o->tool && mz[Z_DF] > 0)
			printf("          restore (ckpt restore, the local copy left to writeback): "
			       "auto %.3f s (%.1f CPU s/GB), none %.3f s (%.1f), zstd -d -o %.3f s "
			       "(%.1f): zstd/auto %.2fx (target >= 1.50x: %s)\n",
			       m[1][X_TOOL], m[1][X_TOOL_CPU] / gb, m[0][X_TOOL],
			       m[0][X_TOOL_CPU] / gb, mz[Z_DF], mz[Z_DF_CPU] / gb,
			       mz[Z_DF] / m[1][X_TOOL], verdict(mz[Z_DF] / m[1][X_TOOL] >= 1.5));
		if (o->tool && mz[Z_DW] > 0)
			printf("          restore --durable (fdatasync before exit): auto %.3f s (%.1f "
			       "CPU s/GB), none %.3f s (%.1f), zstd -d -o + sync -f %.3f s (%.1f): "
			       "zstd/auto %.2fx (both wait for the device's writes)\n",
			       m[1][X_TOOLD], m[1][X_TOOLD_CPU] / gb, m[0][X_TOOLD],
			       m[0][X_TOOLD_CPU] / gb, mz[Z_DW], mz[Z_DW_CPU] / gb,
			       mz[Z_DW] / m[1][X_TOOLD]);
	}
}

static void xsets(const struct opts *o, const char *data)
{
	static const struct xset sets[] = {
		{ "fp32", { 0, -1, -1 }, 1.17 },
		{ "bf16", { 2, -1, -1 }, 1.42 },
		{ "adamw", { 1, -1, -1 }, 1.25 },
		{ "mixed", { 0, 1, 2 }, 1.22 },
	};
	int cold = 1;
	struct opts os = *o;

	for (unsigned k = 0; k < (o->nset_sizes ? o->nset_sizes : 1); k++) {
		os.set_size = o->nset_sizes ? o->set_sizes[k] : 0;
		printf("\nc%s. chunk transforms per data set, %s (compress_level=%d, drain_threads=%u, "
		       "chunk transform auto vs none vs the zstd CLI, same bytes, same run; medians "
		       "of %u repetitions)\n", o->nset_sizes > 1 ? (const char *[]){ "1", "2", "3",
		       "4" }[k] : "", os.set_size ? "the files tiled" : "the files as they are",
		       o->level, o->threads, o->set_reps);
		for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
			fflush(stdout);
			xset_run(&os, data, &sets[i], &cold);
		}
	}
	printf("   page cache %s before each timed drain, restore and zstd run; zstd compresses at "
	       "the drain's nice level; load average %.2f now\n",
	       cold ? "dropped" : "NOT dropped (needs root)", loadavg());
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ckpt_bench [options]\n"
		"  --local DIR       node-local directory (default: mkdtemp under $TMPDIR or /tmp)\n"
		"  --shared DIR      shared directory (default: mkdtemp under $TMPDIR or /tmp)\n"
		"  --data DIR        weights-fp32.bin, adamw-state-fp32.bin, weights-bf16.bin\n"
		"                    (default: ../shared/data beside the source tree, then\n"
		"                    $CKPT_TEST_DATA)\n"
		"  --size BYTES      bytes per save and rank, K/M/G suffixes (default 256M)\n"
		"  --reps R          repetitions (default 5)\n"
		"  --level L         compress_level and zstd -L (default 1)\n"
		"  --threads T       drain_threads and zstd -T (default 2)\n"
		"  --regions N       regions per save, 1..%d (default 4)\n"
		"  --ranks N         N processes in lockstep, one context each (default 1)\n"
		"  --backend B       io_backend: auto, uring or posix (default auto)\n"
		"  --set KEY=VALUE   any other ckpt_config_set key (io_depth, chunk_size, drain_nice,\n"
		"                    ...), applied last; repeatable\n"
		"  --aligned-only    skip the 64-byte-aligned (copying) save; halves the memory\n"
		"  --json            one JSON object on stdout instead of the table\n"
		"  --no-sets         skip part c (chunk transforms per data set; 1 rank, table only)\n"
		"  --set-size BYTES  part c: bytes per data set, its files tiled, or asis: the files\n"
		"                    as they are, 4 to 20 MiB (the default); repeatable (up to 4):\n"
		"                    part c once per size\n"
		"  --set-reps R      part c: repetitions, medians printed (default 3)\n"
		"  --tool PATH       part c: also time `PATH restore` (the ckpt tool) against\n"
		"                    `zstd -d -o FILE`, and `PATH restore --durable` against\n"
		"                    `zstd -d -o FILE && sync -f FILE`\n",
		MAXREGIONS);
}

static unsigned parse_uint(const char *s, unsigned lo, unsigned hi, const char *opt)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || !*s || *end || v < (long)lo || v > (long)hi)
		die("%s %s: expected an integer from %u to %u", opt, s, lo, hi);
	return (unsigned)v;
}

static void parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "local", required_argument, 0, 'l' },   { "shared", required_argument, 0, 's' },
		{ "data", required_argument, 0, 'd' },    { "size", required_argument, 0, 'z' },
		{ "reps", required_argument, 0, 'r' },    { "level", required_argument, 0, 'L' },
		{ "threads", required_argument, 0, 'T' }, { "regions", required_argument, 0, 'n' },
		{ "ranks", required_argument, 0, 'R' },   { "backend", required_argument, 0, 'b' },
		{ "set", required_argument, 0, 'S' },     { "aligned-only", no_argument, 0, 'A' },
		{ "json", no_argument, 0, 'j' },          { "help", no_argument, 0, 'h' },
		{ "no-sets", no_argument, 0, 'N' },       { "set-size", required_argument, 0, 'Z' },
		{ "set-reps", required_argument, 0, 'E' }, { "tool", required_argument, 0, 't' },
		{ 0, 0, 0, 0 }
	};
	int c;

	*o = (struct opts){ .backend = "auto", .size = 256ull << 20, .reps = 5, .threads = 2,
			    .regions = 4, .ranks = 1, .level = 1, .set_size = 0, .set_reps = 3 };
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'l': o->local = optarg; break;
		case 's': o->shared = optarg; break;
		case 'd': o->data = optarg; break;
		case 'b': o->backend = optarg; break;
		case 'j': o->json = 1; break;
		case 'A': o->aligned_only = 1; break;
		case 'N': o->no_sets = 1; break;
		case 'E': o->set_reps = parse_uint(optarg, 1, 100, "--set-reps"); break;
		case 't': o->tool = optarg; break;
		case 'Z':
			if (o->nset_sizes == 4)
				die("--set-size: at most 4");
			if (!strcmp(optarg, "asis")) {
				o->set_sizes[o->nset_sizes++] = 0;
				break;
			}
			if (ckpt_config__parse_size(optarg, &o->set_sizes[o->nset_sizes]) ||
			    o->set_sizes[o->nset_sizes] < (3u << 20))
				die("--set-size %s: expected bytes (>= 3M) or asis", optarg);
			o->nset_sizes++;
			break;
		case 'r': o->reps = parse_uint(optarg, 1, 1000, "--reps"); break;
		case 'T': o->threads = parse_uint(optarg, 1, 256, "--threads"); break;
		case 'n': o->regions = parse_uint(optarg, 1, MAXREGIONS, "--regions"); break;
		case 'R': o->ranks = parse_uint(optarg, 1, MAXRANKS, "--ranks"); break;
		case 'L':
			o->level = optarg[0] == '-' ? -(int)parse_uint(optarg + 1, 1, 7, "--level") :
						      (int)parse_uint(optarg, 0, 19, "--level");
			break;
		case 'z':
			if (ckpt_config__parse_size(optarg, &o->size) || o->size < ALIGN)
				die("--size %s: expected bytes (>= 4K) with an optional K/M/G suffix",
				    optarg);
			break;
		case 'S':
			if (o->nsets == MAXSETS || !strchr(optarg, '='))
				die("--set %s: expected KEY=VALUE (at most %d of them)", optarg, MAXSETS);
			o->sets[o->nsets++] = optarg;
			break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(1);
		}
	}
	if (optind < argc) {
		usage(stderr);
		exit(1);
	}
	/* O_DIRECT writes whole blocks and every region starts on one: round up to 4 KiB. */
	o->size = (o->size + ALIGN - 1) & ~(uint64_t)(ALIGN - 1);
	if (o->size / o->regions < ALIGN)
		die("--size is too small for %u regions of at least 4 KiB", o->regions);
}

static void make_dir(const char *given, char *out, char *tmpl, const char *what)
{
	const char *base = getenv("TMPDIR");
	struct stat st;

	if (given) {
		if (stat(given, &st) < 0 || !S_ISDIR(st.st_mode))
			die("--%s %s: not a directory", what, given);
		pathf(out, PATH_MAX, "%s", given);
		return;
	}
	pathf(tmpl, PATH_MAX, "%s/ckpt-bench-%s.XXXXXX", base && *base ? base : "/tmp", what);
	if (!mkdtemp(tmpl))
		die("mkdtemp %s: %s", tmpl, strerror(errno));
	pathf(out, PATH_MAX, "%s", tmpl);
}

static ckpt_config *configure(const struct opts *o, const char *name)
{
	ckpt_config *cfg;
	char lv[16], th[16];

	check(NULL, ckpt_config_new(&cfg), "ckpt_config_new");
	snprintf(lv, sizeof(lv), "%d", o->level);
	snprintf(th, sizeof(th), "%u", o->threads);
	if (ckpt_config_set(cfg, "local_dir", made.local) ||
	    ckpt_config_set(cfg, "shared_dir", made.shared) || ckpt_config_set(cfg, "name", name) ||
	    ckpt_config_set(cfg, "compress_level", lv) ||
	    ckpt_config_set(cfg, "drain_threads", th) ||
	    ckpt_config_set(cfg, "io_backend", o->backend))
		die("configuration: %s", ckpt_config_errmsg(cfg));
	for (unsigned i = 0; i < o->nsets; i++) {
		char kv[512], *eq;

		snprintf(kv, sizeof(kv), "%s", o->sets[i]);
		eq = strchr(kv, '=');
		*eq = '\0';
		if (ckpt_config_set(cfg, kv, eq + 1))
			die("--set %s: %s", o->sets[i], ckpt_config_errmsg(cfg));
	}
	return cfg;
}

/* ckpt_config_get's answer is borrowed (valid until the next set or free): keep a copy. */
static void cfg_copy(const ckpt_config *cfg, const char *key, char *buf, size_t len)
{
	const char *v = ckpt_config_get(cfg, key);

	snprintf(buf, len, "%s", v ? v : "?");
}

/* Everything one rank does; its results go to the board. */
static void run_rank(unsigned k, const struct opts *o, const uint8_t *buf, const uint8_t *mbuf,
		     int progress)
{
	struct rank rk = { .k = k, .o = o, .buf = buf, .mbuf = mbuf };
	char name[64], job_l[PATH_MAX], nice_s[32];
	ckpt_config *cfg;
	int rc;

	rank_paths(k, job_l, rk.job_s, rk.raw, rk.zin, rk.zout);
	snprintf(name, sizeof(name), "ckpt-bench-%ld-%u", made.pid0, k);
	cfg = configure(o, name);
	cfg_copy(cfg, "drain_nice", nice_s, sizeof(nice_s));
	/* zstd at the drain's priority. nice(1) adds to ours and cannot go below it. */
	rk.nice_delta = atoi(nice_s) - getpriority(PRIO_PROCESS, 0);
	if (rk.nice_delta < 0)
		rk.nice_delta = 0;
	if ((rc = ckpt_open(&rk.ctx, cfg)) < 0)
		die("ckpt_open: %s (%s)", ckpt_strerror(rc), ckpt_errmsg(NULL));
	ckpt_config_free(cfg);

	/* The zstd input: the same bytes, durable, evicted again before each run. */
	write_file(rk.zin, buf, o->size);
	sync_file(rk.zin, 1, 1);

	/* Untimed warm-up: thread start, first page faults, first directories. */
	{
		ckpt_region w = { "warmup", buf, (size_t)(o->size < (64u << 20) ? o->size : 64u << 20) };

		check(rk.ctx, ckpt_save(rk.ctx, ++rk.step, &w, 1), "ckpt_save (warm-up)");
		check(rk.ctx, ckpt_wait(rk.ctx, rk.step), "ckpt_wait (warm-up)");
	}

	for (unsigned r = 0; r < o->reps; r++) {
		int direct;

		if (barrier())
			break;
		if (progress && k == 0)
			fprintf(stderr, "\rrepetition %u/%u ", r + 1, o->reps);
		sync();
		barrier();
		*cell(k, P_RAW, r, F_WALL) = raw_write(rk.raw, buf, o->size, &direct);
		if (!direct)
			bd->raw_direct = 0;
		ckpt_round(&rk, buf, r, P_SAVE_A, P_DRAIN_A);
		if (mbuf)
			ckpt_round(&rk, mbuf, r, P_SAVE_M, P_DRAIN_M);
		if (!bd->zstd_failed)
			zstd_round(&rk, r);
		else
			barrier(); /* keep step with the others */
		if (k == 0)
			bd->reps_done = r + 1;
	}
	if (progress && k == 0)
		fprintf(stderr, "\r                    \r");
	check(rk.ctx, ckpt_close(rk.ctx), "ckpt_close");
}

/* Across ranks: a step lasts until its slowest rank is done; CPU seconds add up. */
static void gather(unsigned phase, unsigned n, double *wall, double *usr, double *sys)
{
	for (unsigned r = 0; r < n; r++) {
		wall[r] = usr[r] = sys[r] = 0;
		for (unsigned k = 0; k < bd->nranks; k++) {
			if (*cell(k, phase, r, F_WALL) > wall[r])
				wall[r] = *cell(k, phase, r, F_WALL);
			usr[r] += *cell(k, phase, r, F_USR);
			sys[r] += *cell(k, phase, r, F_SYS);
		}
	}
}

/* A string as a JSON string literal (paths may hold quotes or backslashes). */
static void jstr(const char *key, const char *s)
{
	printf("\"%s\":\"", key);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	printf("\",");
}

static void jarr(const char *key, const double *v, unsigned n)
{
	printf("\"%s\":[", key);
	for (unsigned i = 0; i < n; i++)
		printf("%s%.6f", i ? "," : "", v[i]);
	printf("],");
}

static const char *verdict(int ok)
{
	return ok ? "met" : "MISSED";
}

int main(int argc, char **argv)
{
	struct opts o;
	const char *data, *lfs, *sfs;
	char databuf[PATH_MAX], fsb1[32], fsb2[32], bk[32], depth[32], chunk[32], dnice[32];
	uint8_t *buf = NULL, *mbase = NULL;
	uint64_t catlen, total;
	size_t bdsize;
	ckpt_config *cfg;
	double load0;
	unsigned n, nd;
	int progress, failed = 0;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	parse(argc, argv, &o);
	progress = !o.json && isatty(STDERR_FILENO);
	load0 = loadavg();
	data = find_data(o.data, databuf, sizeof(databuf));

	/* The bytes: one 4096-aligned buffer; for the copying variant the same bytes at +64. The
	 * ranks share both (copy-on-write after fork, and nobody writes them). */
	if (posix_memalign((void **)&buf, ALIGN, (size_t)o.size))
		die("out of memory for %" PRIu64 " bytes", o.size);
	catlen = load_data(data, buf, o.size);
	if (!o.aligned_only) {
		if (posix_memalign((void **)&mbase, ALIGN, (size_t)o.size + ALIGN))
			die("out of memory for a second %" PRIu64 " bytes (try --aligned-only)",
			    o.size);
		memcpy(mbase + MISALIGN, buf, (size_t)o.size);
	}

	bdsize = sizeof(*bd) + (size_t)o.ranks * NPHASE * o.reps * NFIELD * sizeof(double);
	bd = mmap(NULL, bdsize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (bd == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	bd->nranks = o.ranks;
	bd->reps = o.reps;
	bd->raw_direct = 1;

	made.pid0 = (long)getpid();
	made.first = 0;
	made.last = o.ranks - 1;
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	make_dir(o.local, made.local, made.local_tmp, "local");
	make_dir(o.shared, made.shared, made.shared_tmp, "shared");
	lfs = fs_name(made.local, fsb1, sizeof(fsb1));
	sfs = fs_name(made.shared, fsb2, sizeof(fsb2));

	fflush(NULL);
	for (unsigned k = 1; k < o.ranks; k++) {
		if ((kids[k] = fork()) < 0)
			die("fork: %s", strerror(errno));
		if (kids[k] == 0) {
			/* A child removes its own files only; rank 0 removes the directories. */
			memset(kids, 0, sizeof(kids));
			made.local_tmp[0] = made.shared_tmp[0] = '\0';
			made.first = made.last = k;
			run_rank(k, &o, buf, mbase ? mbase + MISALIGN : NULL, 0);
			exit(0);
		}
	}
	run_rank(0, &o, buf, mbase ? mbase + MISALIGN : NULL, progress);
	for (unsigned k = 1; k < o.ranks; k++) {
		int st;

		while (waitpid(kids[k], &st, 0) < 0 && errno == EINTR)
			;
		kids[k] = 0;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			failed = 1;
	}
	if (failed)
		die("a rank failed (see its message above)");
	n = bd->reps_done;
	if (!n)
		die("no repetition completed");
	if (n < o.reps)
		fprintf(stderr, "ckpt_bench: interrupted; reporting %u repetitions\n", n);
	if (bd->zstd_failed)
		fprintf(stderr, "ckpt_bench: `nice zstd` failed or is not installed: "
			"no zstd comparison\n");

	cfg = configure(&o, "report");
	cfg_copy(cfg, "io_backend", bk, sizeof(bk));
	cfg_copy(cfg, "io_depth", depth, sizeof(depth));
	cfg_copy(cfg, "chunk_size", chunk, sizeof(chunk));
	cfg_copy(cfg, "drain_nice", dnice, sizeof(dnice));
	ckpt_config_free(cfg);

	{
		double raw[3][1000], sa[3][1000], sm[3][1000], dr[3][2000], zs[3][1000], zf[3][1000];
		int zok = !bd->zstd_failed, has_m = !o.aligned_only;

		total = o.size * o.ranks;
		gather(P_RAW, n, raw[0], raw[1], raw[2]);
		gather(P_SAVE_A, n, sa[0], sa[1], sa[2]);
		gather(P_SAVE_M, n, sm[0], sm[1], sm[2]);
		gather(P_DRAIN_A, n, dr[0], dr[1], dr[2]);
		nd = n;
		if (has_m) { /* the drain after either save reads the same file: one series */
			gather(P_DRAIN_M, n, dr[0] + n, dr[1] + n, dr[2] + n);
			nd = 2 * n;
		}
		gather(P_ZSTD, n, zs[0], zs[1], zs[2]);
		gather(P_ZSYNC, n, zf[0], zf[1], zf[2]);

		double raw_med = median(raw[0], n), raw_min = minimum(raw[0], n);
		double sa_med = median(sa[0], n), sa_min = minimum(sa[0], n);
		double sm_med = median(sm[0], n), sm_min = minimum(sm[0], n);
		double d_med = median(dr[0], nd), d_min = minimum(dr[0], nd);
		double d_usr = median(dr[1], nd), d_sys = median(dr[2], nd);
		double z_med = median(zs[0], n), z_min = minimum(zs[0], n);
		double z_usr = median(zs[1], n), z_sys = median(zs[2], n), zf_med = median(zf[0], n);
		double ratio_a = sa_med / raw_med, ratio_m = sm_med / raw_med;
		double d_mbps = mbps(total, d_med), z_mbps = mbps(total, z_med);
		double zf_mbps = mbps(total, zf_med);
		double dratio = zok ? d_mbps / z_mbps : 0, dratio_f = zok ? d_mbps / zf_mbps : 0;
		double cr_ckpt = bd->stored ? (double)o.size / (double)bd->stored : 0;
		double cr_zstd = bd->zstored ? (double)o.size / (double)bd->zstored : 0;
		int save_ok = ratio_a <= TARGET_SAVE, save_m_ok = ratio_m <= TARGET_SAVE;
		int drain_ok = zok && dratio >= TARGET_DRAIN;

		if (o.json) {
			printf("{\"version\":\"%s\",\"size\":%" PRIu64 ",\"ranks\":%u,\"regions\":%u,"
			       "\"reps\":%u,",
			       ckpt_version(), o.size, o.ranks, o.regions, n);
			jstr("data", data);
			printf("\"machine\":{\"nproc\":%ld,\"loadavg_at_start\":%.2f,", ncpu, load0);
			jstr("local_dir", made.local);
			jstr("local_fs", lfs);
			jstr("shared_dir", made.shared);
			printf("\"shared_fs\":\"%s\"},", sfs);
			printf("\"config\":{\"io_backend\":\"%s\",\"io_depth\":%s,\"chunk_size\":%s,"
			       "\"compress_level\":%d,\"drain_threads\":%u,\"drain_nice\":%s},",
			       bk, depth, chunk, o.level, o.threads, dnice);
			printf("\"raw_o_direct\":%s,", bd->raw_direct ? "true" : "false");
			jarr("raw_s", raw[0], n);
			jarr("save_aligned_s", sa[0], n);
			if (has_m)
				jarr("save_misaligned_s", sm[0], n);
			jarr("drain_s", dr[0], nd);
			jarr("drain_user_s", dr[1], nd);
			jarr("drain_sys_s", dr[2], nd);
			if (zok) {
				jarr("zstd_s", zs[0], n);
				jarr("zstd_user_s", zs[1], n);
				jarr("zstd_sys_s", zs[2], n);
				jarr("zstd_fsync_s", zf[0], n);
			}
			printf("\"raw_median_s\":%.6f,\"raw_min_s\":%.6f,", raw_med, raw_min);
			printf("\"save_median_s\":%.6f,\"save_min_s\":%.6f,\"save_ratio\":%.4f,",
			       sa_med, sa_min, ratio_a);
			if (has_m)
				printf("\"save_misaligned_median_s\":%.6f,\"save_misaligned_min_s\":%.6f,"
				       "\"save_misaligned_ratio\":%.4f,",
				       sm_med, sm_min, ratio_m);
			printf("\"drain_median_s\":%.6f,\"drain_min_s\":%.6f,\"drain_mbps\":%.1f,"
			       "\"drain_compression_ratio\":%.4f,",
			       d_med, d_min, d_mbps, cr_ckpt);
			if (zok)
				printf("\"zstd_median_s\":%.6f,\"zstd_min_s\":%.6f,\"zstd_mbps\":%.1f,"
				       "\"zstd_fsync_mbps\":%.1f,\"zstd_compression_ratio\":%.4f,"
				       "\"drain_ratio\":%.4f,\"drain_ratio_vs_fsync\":%.4f,",
				       z_med, z_min, z_mbps, zf_mbps, cr_zstd, dratio, dratio_f);
			else
				printf("\"zstd_mbps\":null,\"drain_ratio\":null,");
			printf("\"target_save\":%.2f,\"save_met\":%s,", TARGET_SAVE,
			       save_ok ? "true" : "false");
			if (has_m)
				printf("\"save_misaligned_met\":%s,", save_m_ok ? "true" : "false");
			printf("\"target_drain\":%.2f,\"drain_met\":%s}\n", TARGET_DRAIN,
			       !zok ? "null" : drain_ok ? "true" : "false");
		} else {
			printf("libckpt %s benchmark: %.0f MiB per save", ckpt_version(),
			       (double)o.size / 1048576);
			if (o.ranks > 1)
				printf(" and rank, %u ranks in lockstep (times: slowest rank; MB/s: "
				       "all ranks' bytes)",
				       o.ranks);
			printf(", %u regions, %u repetitions\n", o.regions, n);
			printf("data     %s: 3 files, %.0f MiB, tiled\n", data,
			       (double)catlen / 1048576);
			printf("machine  %ld CPUs, load average %.2f at start; local %s (%s), "
			       "shared %s (%s)\n",
			       ncpu, load0, made.local, lfs, made.shared, sfs);
			printf("config   io_backend=%s (the configured value: auto means io_uring where "
			       "the kernel allows it, else posix)\n"
			       "         io_depth=%s chunk_size=%s compress_level=%d drain_threads=%u "
			       "drain_nice=%s\n",
			       bk, depth, chunk, o.level, o.threads, dnice);
			printf("method   ckpt_wait after every ckpt_save: no drain overlaps the next "
			       "measurement; sync() before\n"
			       "         each timed step; zstd runs at the drain's nice level; MB = 10^6 "
			       "bytes\n");
			if (load0 > (double)ncpu / 2)
				printf("warning  the machine was busy at start: expect noisy figures\n");
			printf("\na. ckpt_save blocking time                       median       min     "
			       "MB/s\n");
			printf("   raw %-8s pwrite 8 MiB pieces + fdatasync %7.3f s %7.3f s %7.0f\n",
			       bd->raw_direct ? "O_DIRECT" : "buffered", raw_med, raw_min,
			       mbps(total, raw_med));
			printf("   ckpt_save, 4096-aligned buffer             %7.3f s %7.3f s %7.0f\n",
			       sa_med, sa_min, mbps(total, sa_med));
			if (has_m)
				printf("   ckpt_save, 64-byte-aligned buffer (copied) %7.3f s %7.3f s "
				       "%7.0f\n",
				       sm_med, sm_min, mbps(total, sm_med));
			printf("   ratio ckpt_save/raw, aligned buffer   %5.2fx   target <= %.2fx: %s\n",
			       ratio_a, TARGET_SAVE, verdict(save_ok));
			if (has_m)
				printf("   ratio ckpt_save/raw, 64-byte buffer   %5.2fx   target <= %.2fx: "
				       "%s\n",
				       ratio_m, TARGET_SAVE, verdict(save_m_ok));
			printf("\nb. drain throughput (raw bytes)           median     MB/s  user s   "
			       "sys s  compression\n");
			printf("   ckpt drain (save return -> wait)   %7.3f s %7.0f %7.2f %7.2f %8.3fx\n",
			       d_med, d_mbps, d_usr, d_sys, cr_ckpt);
			if (zok) {
				char cmd[64];

				snprintf(cmd, sizeof(cmd), "zstd -%s%d -T%u", o.level < 0 ? "-fast=" : "",
					 o.level < 0 ? -o.level : o.level, o.threads);
				printf("   %-33s  %7.3f s %7.0f %7.2f %7.2f %8.3fx\n", cmd, z_med, z_mbps,
				       z_usr, z_sys, cr_zstd);
				printf("   %-33s  %7.3f s %7.0f\n", "zstd, then fsync(output)", zf_med,
				       zf_mbps);
				printf("   ratio ckpt/zstd CLI                 %5.2fx   target >= %.2fx: "
				       "%s\n",
				       dratio, TARGET_DRAIN, verdict(drain_ok));
				printf("   ratio ckpt/(zstd CLI + fsync)       %5.2fx   (the drain also "
				       "fsyncs, renames, commits)\n",
				       dratio_f);
			} else {
				printf("   zstd CLI: not run (not installed, or it failed)\n");
			}
			if (!o.no_sets && o.ranks == 1)
				xsets(&o, data);
			printf("\n(a benchmark: the exit status is 0 whether or not targets are met)\n");
		}
	}
	free(buf);
	free(mbase);
	return 0;
}
