/* SPDX-License-Identifier: MIT */
/* `ckpt doctor`: what the configured directories are (filesystem, persistence verdict, free
 * space, measured bandwidth), whether io_uring works here, the MPI build, the cluster and
 * launcher seen in the environment, and the effective configuration with each value's origin.
 *
 * It asks the library's own modules (config.c, storage.c, io.c), so that its verdicts are the
 * ones ckpt_open acts on. It writes nothing but one temporary file per tier, unlinked as soon
 * as it is created, so that a killed doctor leaves nothing behind. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef HAVE_MPI
#include <mpi.h>
#endif

#include "ckpt.h"
#include "config.h"
#include "io.h"
#include "storage.h"
#include "store.h"
#include "tool.h"

/* Exit statuses of `ckpt doctor` (ckpt(1)). 0 and 64 are every subcommand's; 3 is an I/O error
 * as everywhere. */
enum {
	DOC_EXIT_WARN = 1, /* ckpt_open would warn: shared_dir not persistent, local_dir on NFS */
	DOC_EXIT_FAIL = 2, /* ckpt_open would fail: a directory missing, bad config, refused verdict */
};

#define DOC_ALIGN 4096
#define DOC_CHUNK (8u << 20)
#define DOC_MAX_NOTES 16

struct bench {
	int ran;
	int direct;           /* O_DIRECT held for both passes */
	uint64_t bytes;
	double wsec, rsec;    /* write + fsync; read */
	char skipped[160];    /* why not measured, "" when measured or failed */
	char error[CKPT_ERRMSG_MAX];
};

struct tier {
	const char *key;      /* "local_dir" / "shared_dir" */
	const char *dir;      /* as configured, NULL when unset */
	char real[PATH_MAX];
	int usable;           /* exists, is a directory, writable, classified */
	char error[CKPT_ERRMSG_MAX];
	struct ckpt_fsinfo fs;
	struct bench bw;
};

struct report {
	ckpt_config *cfg;
	char bad_env[CKPT_ERRMSG_MAX];
	enum ckpt_cluster cluster;
	const char *cluster_why;
	int have_rank;
	uint32_t rank, size;
	const char *rank_src;
	struct tier t[2];     /* local, shared */
	int have_verdict;
	enum ckpt_verdict verdict;
	char reason[CKPT_ERRMSG_MAX];
	int uring_built, uring_ok;
	char uring_msg[CKPT_ERRMSG_MAX];
	char mpi_lib[256];
	char *warn[DOC_MAX_NOTES], *fail[DOC_MAX_NOTES], *info[DOC_MAX_NOTES];
	size_t nwarn, nfail, ninfo;
	int io_error;
};

static const char usage_doctor[] =
	"usage: ckpt doctor [--local-dir DIR] [--shared-dir DIR] [--name NAME] [--set KEY=VALUE]...\n"
	"                   [--bytes SIZE] [--json] [--quiet]\n"
	"Reports, for the configured directories: filesystem type, persistence verdict, free\n"
	"space and a short measured write (with fsync) and read bandwidth (--bytes, default 64M;\n"
	"0 skips it); whether io_uring is usable; the MPI build; the cluster type and launcher\n"
	"rank seen in the environment; and every configuration key with where its value came\n"
	"from (default, environment, config). Options default to the CKPT_* variables.\n"
	"Exit status: 0 healthy; 1 warnings (ckpt_open would warn); 2 ckpt_open would fail;\n"
	"3 I/O error while measuring; 64 bad usage. See ckpt(1).\n";

static void note(char **list, size_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note(char **list, size_t *n, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (*n >= DOC_MAX_NOTES)
		return;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) >= 0)
		list[(*n)++] = s;
	va_end(ap);
}

static int doc_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int doc_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("ckpt doctor: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'ckpt doctor --help'.\n", stderr);
	return TOOL_EXIT_USAGE;
}

/* ---------------------------------------------------------------------------------------------
 * Measurements
 */

static void fill_random(unsigned char *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;

	/* Incompressible, so that a compressing or deduplicating filesystem (ZFS, some NAS)
	 * reports what checkpoints will see, not what zeros would. */
	for (size_t i = 0; i + 8 <= n; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
}

/*
 * Write `bytes` to a new file in dir in 8 MiB pieces, fsync (what ckpt_save and a drain wait
 * for), then read it back. O_DIRECT where the filesystem takes it, so that neither pass measures
 * the page cache; otherwise the cached pages are dropped between the passes. The file is
 * unlinked right after it is created: nothing is left behind whatever happens.
 */
static void bench_dir(struct bench *b, const char *dir, uint64_t bytes)
{
	char path[PATH_MAX + 128];
	struct ckpt_err e = { "" };
	unsigned char *buf = NULL;
	uint64_t off;
	double t0;
	int fd;

	b->bytes = (bytes + DOC_ALIGN - 1) / DOC_ALIGN * DOC_ALIGN;
	if (ckpt_store__tmp_path(path, sizeof(path), dir, "doctor-bench") < 0) {
		snprintf(b->error, sizeof(b->error), "path too long: %s", dir);
		return;
	}
	b->direct = 1;
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_DIRECT, 0600);
	if (fd < 0 && errno == EINVAL) {
		b->direct = 0;
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	}
	if (fd < 0) {
		ckpt_err__errno(&e, errno, "create %s", path);
		snprintf(b->error, sizeof(b->error), "%s", e.msg);
		return;
	}
	unlink(path);
	if (posix_memalign((void **)&buf, DOC_ALIGN, DOC_CHUNK)) {
		snprintf(b->error, sizeof(b->error), "out of memory");
		close(fd);
		return;
	}
	fill_random(buf, DOC_CHUNK, 42);
	t0 = tool_now();
	for (off = 0; off < b->bytes; off += DOC_CHUNK) {
		size_t n = b->bytes - off < DOC_CHUNK ? (size_t)(b->bytes - off) : DOC_CHUNK;

		memcpy(buf, &off, sizeof(off)); /* no two pieces alike */
		if (ckpt_io__pwrite_full(fd, buf, n, off, &e, "doctor write") < 0)
			goto fail;
	}
	if (fsync(fd) < 0) {
		ckpt_err__errno(&e, errno, "fsync %s", dir);
		goto fail;
	}
	b->wsec = tool_now() - t0;
	if (!b->direct)
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	t0 = tool_now();
	for (off = 0; off < b->bytes; off += DOC_CHUNK) {
		size_t n = b->bytes - off < DOC_CHUNK ? (size_t)(b->bytes - off) : DOC_CHUNK;

		if (ckpt_io__pread_full(fd, buf, n, off, &e, "doctor read") < 0)
			goto fail;
	}
	b->rsec = tool_now() - t0;
	b->ran = 1;
	free(buf);
	close(fd);
	return;
fail:
	snprintf(b->error, sizeof(b->error), "%s", e.msg);
	free(buf);
	close(fd);
}

static double mb_per_s(uint64_t bytes, double secs)
{
	return secs > 0 ? (double)bytes / secs / 1e6 : 0;
}

/* io_uring as ckpt_save would use it: a ring, and one O_DIRECT write through it. A seccomp
 * profile (recent Docker and containerd defaults) or kernel.io_uring_disabled makes
 * io_uring_setup fail; io_backend=auto then uses POSIX writes. */
static void probe_uring(struct report *r)
{
	struct ckpt_io *io = NULL;
	struct ckpt_err e = { "" };
	const struct tier *l = &r->t[0];
	char path[PATH_MAX + 128];
	void *buf = NULL;
	unsigned slot;
	int fd = -1, rc;

#ifdef HAVE_LIBURING
	r->uring_built = 1;
#endif
	if ((rc = ckpt_io__open(&io, CKPT_BACKEND_URING, 1, &e)) < 0) {
		snprintf(r->uring_msg, sizeof(r->uring_msg), "%s", e.msg);
		return;
	}
	if (!l->usable) {
		r->uring_ok = 1;
		snprintf(r->uring_msg, sizeof(r->uring_msg),
			 "a ring opens (no usable local_dir to write a test block in)");
		ckpt_io__close(io);
		return;
	}
	if (ckpt_store__tmp_path(path, sizeof(path), l->real, "doctor-uring") == CKPT_OK &&
	    ((fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_DIRECT, 0600)) >= 0 ||
	     (errno == EINVAL &&
	      (fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) >= 0)))
		unlink(path);
	if (fd < 0 || posix_memalign(&buf, DOC_ALIGN, DOC_ALIGN)) {
		ckpt_err__errno(&e, errno, "cannot create a test file in %s", l->real);
		snprintf(r->uring_msg, sizeof(r->uring_msg), "%s", e.msg);
	} else {
		memset(buf, 0xA5, DOC_ALIGN);
		rc = ckpt_io__submit(io, fd, buf, DOC_ALIGN, 0, 0, &e);
		if (rc == CKPT_OK)
			rc = ckpt_io__reap(io, &slot, &e);
		if (rc == CKPT_OK) {
			r->uring_ok = 1;
			snprintf(r->uring_msg, sizeof(r->uring_msg),
				 "a 4 KiB write through io_uring in local_dir succeeded");
		} else {
			snprintf(r->uring_msg, sizeof(r->uring_msg), "%s", e.msg);
		}
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	ckpt_io__close(io);
}

static void probe_mpi(struct report *r)
{
#ifdef HAVE_MPI
	char v[MPI_MAX_LIBRARY_VERSION_STRING];
	int len = 0;

	/* One of the few MPI calls allowed before MPI_Init: the doctor never starts MPI. */
	if (MPI_Get_library_version(v, &len) == MPI_SUCCESS && len > 0) {
		v[len < (int)sizeof(v) ? len : (int)sizeof(v) - 1] = '\0';
		v[strcspn(v, "\n")] = '\0'; /* the first line names library and version */
		snprintf(r->mpi_lib, sizeof(r->mpi_lib), "%s", v);
	}
#else
	(void)r;
#endif
}

/* ---------------------------------------------------------------------------------------------
 * Directories
 */

/* The checks of ckpt_open (check_dir), then the classification. */
static void probe_tier(struct tier *t, const char *mountinfo)
{
	struct ckpt_err e = { "" };
	struct stat st;

	if (!t->dir) {
		snprintf(t->error, sizeof(t->error), "%s is not set (--%s or CKPT_%s)", t->key,
			 !strcmp(t->key, "local_dir") ? "local-dir" : "shared-dir",
			 !strcmp(t->key, "local_dir") ? "LOCAL_DIR" : "SHARED_DIR");
		return;
	}
	if (stat(t->dir, &st) < 0) {
		snprintf(t->error, sizeof(t->error), "%s %s: %s%s", t->key, t->dir, strerror(errno),
			 errno == ENOENT ? " (is the volume mounted?)" : "");
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(t->error, sizeof(t->error), "%s %s is not a directory", t->key, t->dir);
		return;
	}
	if (access(t->dir, W_OK | X_OK) < 0) {
		snprintf(t->error, sizeof(t->error), "%s %s is not writable: %s", t->key, t->dir,
			 strerror(errno));
		return;
	}
	if (!realpath(t->dir, t->real)) {
		snprintf(t->error, sizeof(t->error), "realpath %s: %s", t->dir, strerror(errno));
		return;
	}
	if (ckpt_storage__probe(&t->fs, t->real, mountinfo, &e) < 0) {
		snprintf(t->error, sizeof(t->error), "%s", e.msg);
		return;
	}
	t->usable = 1;
}

static int is_within(const char *path, const char *base)
{
	size_t n = strlen(base);

	if (n == 1 && base[0] == '/')
		return 1;
	return !strncmp(path, base, n) && (path[n] == '\0' || path[n] == '/');
}

/* What ckpt_open would say about these directories: the same rules, as notes. */
static void judge(struct report *r)
{
	struct tier *l = &r->t[0], *s = &r->t[1];
	const char *vn;

	for (int i = 0; i < 2; i++)
		if (!r->t[i].usable)
			note(r->fail, &r->nfail, "%s", r->t[i].error);
	if (l->usable && s->usable && is_within(s->real, l->real))
		note(r->fail, &r->nfail, "shared_dir %s is %s local_dir %s: the shared copy must live "
		     "on another (persistent) volume", s->real,
		     strcmp(s->real, l->real) ? "inside" : "the same directory as", l->real);
	if (s->usable) {
		r->have_verdict = 1;
		r->verdict = ckpt_storage__verdict(&s->fs, l->usable ? &l->fs : NULL, r->cluster,
						   "/home", r->reason, sizeof(r->reason));
		vn = ckpt_storage__verdict_name(r->verdict);
		switch (r->verdict) {
		case CKPT_VERDICT_NODE_LOCAL:
		case CKPT_VERDICT_EPHEMERAL:
		case CKPT_VERDICT_SAME_AS_LOCAL:
			if (r->cfg->require_persistent)
				note(r->fail, &r->nfail, "shared_dir is not persistent (%s): %s; %s "
				     "(require_persistent=1 refuses it)", vn, r->reason,
				     ckpt_storage__advice(r->cluster));
			else
				note(r->warn, &r->nwarn, "shared_dir is not persistent (%s): %s; %s",
				     vn, r->reason, ckpt_storage__advice(r->cluster));
			break;
		case CKPT_VERDICT_UNKNOWN:
			note(r->info, &r->ninfo, "cannot tell whether shared_dir is persistent: %s",
			     r->reason);
			break;
		case CKPT_VERDICT_PERSISTENT:
			if (s->fs.caveat)
				note(r->warn, &r->nwarn, "shared_dir is on %s, %s", s->fs.fstype,
				     s->fs.caveat);
			break;
		}
	}
	if (l->usable && l->fs.cls == CKPT_FS_NETWORK)
		note(r->warn, &r->nwarn, "local_dir %s is on %s, a network filesystem: ckpt_save runs "
		     "at network speed; point local_dir at node-local NVMe", l->real, l->fs.fstype);
	if (l->usable && l->fs.cls == CKPT_FS_OVERLAY)
		note(r->info, &r->ninfo, "local_dir %s is on %s, the container's writable layer: "
		     "mount the node's NVMe there", l->real, l->fs.fstype);
	if (r->bad_env[0])
		note(r->fail, &r->nfail, "%s", r->bad_env);
	if (!r->uring_ok)
		note(r->info, &r->ninfo, "io_uring is not usable (%s): io_backend=auto uses POSIX "
		     "writes%s", r->uring_msg,
		     r->cfg->io_backend == CKPT_BACKEND_URING ? "; io_backend=uring fails" : "");
	if (r->cfg->io_backend == CKPT_BACKEND_URING && !r->uring_ok)
		note(r->fail, &r->nfail, "io_backend is uring but io_uring is not usable here: %s",
		     r->uring_msg);
}

/* ---------------------------------------------------------------------------------------------
 * Output
 */

static const char *origin_name(enum ckpt_origin o)
{
	switch (o) {
	case CKPT_FROM_ENV: return "environment";
	case CKPT_FROM_SET: return "config";
	case CKPT_FROM_BAD_ENV: return "bad-environment";
	case CKPT_FROM_DEFAULT: break;
	}
	return "default";
}

static void env_var(char *buf, size_t len, const char *key)
{
	size_t i;

	snprintf(buf, len, "CKPT_");
	for (i = 0; key[i] && 5 + i + 1 < len; i++)
		buf[5 + i] = (char)(key[i] >= 'a' && key[i] <= 'z' ? key[i] - 32 : key[i]);
	buf[5 + i] = '\0';
}

static const char *node_local_word(int v)
{
	return v > 0 ? "node-local" : v == 0 ? "shared" : "unknown";
}

static void print_tier_json(struct tool_json *j, const struct report *r, int i)
{
	const struct tier *t = &r->t[i];
	char magic[24];

	tool_json_obj(j, t->key);
	tool_json_str(j, "path", t->dir);
	tool_json_str(j, "realpath", t->usable ? t->real : NULL);
	tool_json_bool(j, "usable", t->usable);
	tool_json_str(j, "error", t->usable ? NULL : t->error);
	if (t->usable) {
		snprintf(magic, sizeof(magic), "0x%llx", (unsigned long long)t->fs.magic);
		tool_json_str(j, "fstype", t->fs.fstype);
		tool_json_str(j, "magic", magic);
		tool_json_str(j, "class", ckpt_storage__class_name(t->fs.cls));
		if (t->fs.node_local < 0)
			tool_json_null(j, "node_local");
		else
			tool_json_bool(j, "node_local", t->fs.node_local);
		tool_json_str(j, "mount_point", t->fs.have_mount ? t->fs.mount.point : NULL);
		tool_json_str(j, "mount_source", t->fs.have_mount ? t->fs.mount.source : NULL);
		tool_json_str(j, "mount_root", t->fs.have_mount ? t->fs.mount.root : NULL);
		tool_json_u64(j, "free_bytes", t->fs.free_bytes);
		tool_json_u64(j, "total_bytes", t->fs.total_bytes);
		tool_json_str(j, "caveat", t->fs.caveat);
	}
	if (i == 1 && r->have_verdict) {
		tool_json_str(j, "verdict", ckpt_storage__verdict_name(r->verdict));
		tool_json_str(j, "reason", r->reason);
	}
	tool_json_obj(j, "bandwidth");
	tool_json_bool(j, "measured", t->bw.ran);
	tool_json_u64(j, "bytes", t->bw.bytes);
	tool_json_bool(j, "direct", t->bw.direct);
	if (t->bw.ran) {
		tool_json_num(j, "write_mb_per_s", mb_per_s(t->bw.bytes, t->bw.wsec));
		tool_json_num(j, "read_mb_per_s", mb_per_s(t->bw.bytes, t->bw.rsec));
		tool_json_num(j, "write_seconds", t->bw.wsec);
		tool_json_num(j, "read_seconds", t->bw.rsec);
	} else {
		tool_json_null(j, "write_mb_per_s");
		tool_json_null(j, "read_mb_per_s");
	}
	tool_json_str(j, "skipped", t->bw.skipped[0] ? t->bw.skipped : NULL);
	tool_json_str(j, "error", t->bw.error[0] ? t->bw.error : NULL);
	tool_json_end(j, '}');
	tool_json_end(j, '}');
}

static void print_json(const struct report *r, int code)
{
	struct tool_json j;
	char var[80];

	tool_json_init(&j, stdout);
	tool_json_obj(&j, NULL);
	tool_json_str(&j, "command", "doctor");
	tool_json_str(&j, "version", ckpt_version());
	tool_json_obj(&j, "cluster");
	tool_json_str(&j, "type", ckpt_config__cluster_name(r->cluster));
	tool_json_str(&j, "evidence", r->cluster_why);
	tool_json_str(&j, "advice", ckpt_storage__advice(r->cluster));
	tool_json_end(&j, '}');
	if (r->have_rank) {
		tool_json_obj(&j, "launcher");
		tool_json_u64(&j, "rank", r->rank);
		if (r->size)
			tool_json_u64(&j, "size", r->size);
		else
			tool_json_null(&j, "size");
		tool_json_str(&j, "source", r->rank_src);
		tool_json_end(&j, '}');
	} else {
		tool_json_null(&j, "launcher");
	}
	tool_json_obj(&j, "tiers");
	print_tier_json(&j, r, 0);
	print_tier_json(&j, r, 1);
	tool_json_end(&j, '}');
	tool_json_obj(&j, "io_uring");
	tool_json_bool(&j, "built", r->uring_built);
	tool_json_bool(&j, "usable", r->uring_ok);
	tool_json_str(&j, "detail", r->uring_msg);
	tool_json_end(&j, '}');
	tool_json_obj(&j, "mpi");
#ifdef HAVE_MPI
	tool_json_bool(&j, "built", 1);
#else
	tool_json_bool(&j, "built", 0);
#endif
	tool_json_str(&j, "library", r->mpi_lib[0] ? r->mpi_lib : NULL);
	tool_json_end(&j, '}');
	tool_json_arr(&j, "config");
	for (size_t i = 0; ckpt_config__key(i); i++) {
		const char *k = ckpt_config__key(i);

		tool_json_obj(&j, NULL);
		tool_json_str(&j, "key", k);
		tool_json_str(&j, "value", ckpt_config_get(r->cfg, k));
		tool_json_str(&j, "origin", origin_name(r->cfg->origin[i]));
		env_var(var, sizeof(var), k);
		tool_json_str(&j, "variable", r->cfg->origin[i] == CKPT_FROM_ENV ||
			      r->cfg->origin[i] == CKPT_FROM_BAD_ENV ? var : NULL);
		tool_json_end(&j, '}');
	}
	tool_json_end(&j, ']');
	tool_json_arr(&j, "errors");
	for (size_t i = 0; i < r->nfail; i++)
		tool_json_str(&j, NULL, r->fail[i]);
	tool_json_end(&j, ']');
	tool_json_arr(&j, "warnings");
	for (size_t i = 0; i < r->nwarn; i++)
		tool_json_str(&j, NULL, r->warn[i]);
	tool_json_end(&j, ']');
	tool_json_arr(&j, "notes");
	for (size_t i = 0; i < r->ninfo; i++)
		tool_json_str(&j, NULL, r->info[i]);
	tool_json_end(&j, ']');
	tool_json_str(&j, "status", code == TOOL_EXIT_OK ? "ok" : code == DOC_EXIT_WARN ? "warning" :
		      code == DOC_EXIT_FAIL ? "error" : "io_error");
	tool_json_u64(&j, "exit_code", (uint64_t)code);
	tool_json_end(&j, '}');
}

static void print_tier_human(const struct report *r, int i)
{
	const struct tier *t = &r->t[i];
	char fr[32], tot[32], sz[32];

	printf("%-10s %s\n", t->key, t->dir ? t->dir : "(not set)");
	if (!t->usable) {
		printf("  problem      %s\n", t->error);
		return;
	}
	if (strcmp(t->dir, t->real))
		printf("  realpath     %s\n", t->real);
	printf("  filesystem   %s", t->fs.fstype);
	if (t->fs.have_mount && t->fs.mount.source[0] && strcmp(t->fs.mount.source, t->fs.fstype))
		printf(" (%s)", t->fs.mount.source);
	if (t->fs.have_mount)
		printf(", mounted at %s", t->fs.mount.point);
	printf("; %s, %s\n", ckpt_storage__class_name(t->fs.cls), node_local_word(t->fs.node_local));
	if (i == 1 && r->have_verdict) {
		printf("  verdict      %s: %s\n", ckpt_storage__verdict_name(r->verdict), r->reason);
	}
	if (t->fs.caveat)
		printf("  caveat       %s\n", t->fs.caveat);
	tool_size(fr, sizeof(fr), t->fs.free_bytes, 0);
	tool_size(tot, sizeof(tot), t->fs.total_bytes, 0);
	printf("  free         %s of %s\n", fr, tot);
	tool_size(sz, sizeof(sz), t->bw.bytes, 0);
	if (t->bw.ran) {
		printf("  write        %.1f MB/s (%s, %s, with fsync)\n",
		       mb_per_s(t->bw.bytes, t->bw.wsec), sz, t->bw.direct ? "O_DIRECT" : "buffered");
		printf("  read         %.1f MB/s (%s, %s)\n", mb_per_s(t->bw.bytes, t->bw.rsec), sz,
		       t->bw.direct ? "O_DIRECT" : "buffered, cache dropped");
	} else if (t->bw.error[0]) {
		printf("  bandwidth    FAILED: %s\n", t->bw.error);
	} else if (t->bw.skipped[0]) {
		printf("  bandwidth    not measured: %s\n", t->bw.skipped);
	}
}

static void print_human(const struct report *r, int code)
{
	char var[80];

	printf("ckpt doctor (libckpt %s)\n\n", ckpt_version());
	printf("cluster      %s (%s)\n", ckpt_config__cluster_name(r->cluster), r->cluster_why);
	if (r->have_rank) {
		if (r->size)
			printf("launcher     rank %" PRIu32 " of %" PRIu32 " (%s)\n", r->rank, r->size,
			       r->rank_src);
		else
			printf("launcher     rank %" PRIu32 " (%s)\n", r->rank, r->rank_src);
	} else {
		printf("launcher     none (no rank in the environment)\n");
	}
	printf("io_uring     %s: %s\n", r->uring_ok ? "usable" : "NOT usable", r->uring_msg);
#ifdef HAVE_MPI
	printf("MPI          built with MPI%s%s%s\n", r->mpi_lib[0] ? " (" : "", r->mpi_lib,
	       r->mpi_lib[0] ? ")" : "");
#else
	printf("MPI          built without MPI (ckpt_open_mpi returns CKPT_ENOTSUP)\n");
#endif
	printf("\n");
	print_tier_human(r, 0);
	print_tier_human(r, 1);
	printf("\nconfiguration (value, origin)\n");
	for (size_t i = 0; ckpt_config__key(i); i++) {
		const char *k = ckpt_config__key(i), *v = ckpt_config_get(r->cfg, k);
		enum ckpt_origin o = r->cfg->origin[i];

		env_var(var, sizeof(var), k);
		printf("  %-20s %-24s %s%s%s%s\n", k, v && *v ? v : "(unset)", origin_name(o),
		       o == CKPT_FROM_ENV || o == CKPT_FROM_BAD_ENV ? " (" : "",
		       o == CKPT_FROM_ENV || o == CKPT_FROM_BAD_ENV ? var : "",
		       o == CKPT_FROM_ENV || o == CKPT_FROM_BAD_ENV ? ")" : "");
	}
	printf("\n");
	for (size_t i = 0; i < r->nfail; i++)
		printf("ERROR: %s\n", r->fail[i]);
	for (size_t i = 0; i < r->nwarn; i++)
		printf("WARNING: %s\n", r->warn[i]);
	for (size_t i = 0; i < r->ninfo; i++)
		printf("note: %s\n", r->info[i]);
	printf("result: %s\n", code == TOOL_EXIT_OK ? "ok" :
	       code == DOC_EXIT_WARN ? "warnings (ckpt_open would warn)" :
	       code == DOC_EXIT_FAIL ? "errors (ckpt_open would fail)" :
	       "I/O error while measuring");
}

/* ---------------------------------------------------------------------------------------------
 * main
 */

int tool_doctor_main(int argc, char **argv)
{
	enum { O_SHARED = 256, O_LOCAL, O_NAME, O_SET, O_BYTES, O_JSON };
	static const struct option lopts[] = {
		{ "shared-dir", required_argument, NULL, O_SHARED },
		{ "local-dir", required_argument, NULL, O_LOCAL },
		{ "name", required_argument, NULL, O_NAME },
		{ "set", required_argument, NULL, O_SET },
		{ "bytes", required_argument, NULL, O_BYTES },
		{ "json", no_argument, NULL, O_JSON },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct report r;
	struct ckpt_err e = { "" };
	uint64_t bytes = 64u << 20;
	int json = 0, quiet = 0, c, code;
	char *mi;

	memset(&r, 0, sizeof(r));
	if (ckpt_config_new(&r.cfg) < 0) {
		fprintf(stderr, "ckpt doctor: out of memory\n");
		return TOOL_EXIT_IO;
	}
	optind = 1;
	opterr = 0;
	code = -1;
	while (code < 0 && (c = getopt_long(argc, argv, ":qh", lopts, NULL)) != -1) {
		const char *key = NULL, *val = optarg;
		char kbuf[64];

		switch (c) {
		case '?': code = doc_usage("unknown option '%s'", argv[optind - 1]); break;
		case ':': code = doc_usage("option '%s' needs a value", argv[optind - 1]); break;
		case O_SHARED: key = "shared_dir"; break;
		case O_LOCAL: key = "local_dir"; break;
		case O_NAME: key = "name"; break;
		case O_SET: {
			const char *eq = strchr(optarg, '=');

			if (!eq || eq == optarg || (size_t)(eq - optarg) >= sizeof(kbuf)) {
				code = doc_usage("--set wants KEY=VALUE, got '%s'", optarg);
				break;
			}
			memcpy(kbuf, optarg, (size_t)(eq - optarg));
			kbuf[eq - optarg] = '\0';
			key = kbuf;
			val = eq + 1;
			break;
		}
		case O_BYTES:
			if (ckpt_config__parse_size(optarg, &bytes) || bytes > (64ull << 30))
				code = doc_usage("bad --bytes '%s' (a size such as 64M, at most 64G; "
						 "0 skips the measurement)", optarg);
			break;
		case O_JSON: json = 1; break;
		case 'q': quiet = 1; break;
		case 'h':
			fputs(usage_doctor, stdout);
			code = TOOL_EXIT_OK;
			break;
		}
		if (code < 0 && key && ckpt_config_set(r.cfg, key, val) < 0)
			code = doc_usage("%s", ckpt_config_errmsg(r.cfg));
	}
	if (code < 0 && optind < argc)
		code = doc_usage("unexpected argument '%s'", argv[optind]);
	if (code >= 0) {
		ckpt_config_free(r.cfg);
		return code;
	}
	/* A bad CKPT_* variable is a finding here, not a usage error: ckpt_open would refuse it. */
	if (ckpt_config__check(r.cfg, &e) < 0)
		snprintf(r.bad_env, sizeof(r.bad_env), "%s", e.msg);
	r.cluster = ckpt_storage__cluster(r.cfg, &r.cluster_why);
	r.have_rank = ckpt_storage__launcher_rank(&r.rank, &r.size, &r.rank_src) == CKPT_OK;
	r.t[0].key = "local_dir";
	r.t[0].dir = r.cfg->local_dir;
	r.t[1].key = "shared_dir";
	r.t[1].dir = r.cfg->shared_dir;
	mi = ckpt_storage__read_mountinfo(NULL);
	for (int i = 0; i < 2; i++) {
		struct tier *t = &r.t[i];
		char need[32];

		probe_tier(t, mi);
		if (!t->usable)
			continue;
		t->bw.bytes = bytes;
		if (!bytes) {
			snprintf(t->bw.skipped, sizeof(t->bw.skipped), "--bytes 0");
		} else if (t->fs.free_bytes < bytes + (16u << 20)) {
			tool_size(need, sizeof(need), bytes, 0);
			snprintf(t->bw.skipped, sizeof(t->bw.skipped), "less than %s + 16 MiB free",
				 need);
		} else {
			bench_dir(&t->bw, t->real, bytes);
			if (t->bw.error[0]) {
				r.io_error = 1;
				note(r.warn, &r.nwarn, "%s: measuring bandwidth failed: %s", t->key,
				     t->bw.error);
			}
		}
	}
	free(mi);
	probe_uring(&r);
	probe_mpi(&r);
	judge(&r);
	code = r.nfail ? DOC_EXIT_FAIL : r.io_error ? TOOL_EXIT_IO : r.nwarn ? DOC_EXIT_WARN :
	       TOOL_EXIT_OK;
	if (json)
		print_json(&r, code);
	else if (!quiet)
		print_human(&r, code);
	for (size_t i = 0; i < r.nwarn; i++)
		free(r.warn[i]);
	for (size_t i = 0; i < r.nfail; i++)
		free(r.fail[i]);
	for (size_t i = 0; i < r.ninfo; i++)
		free(r.info[i]);
	ckpt_config_free(r.cfg);
	return code;
}
