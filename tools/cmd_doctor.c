/* SPDX-License-Identifier: MIT */
/* `ckpt doctor`: what the configured directories are (filesystem, persistence verdict, free
 * space, measured bandwidth), whether io_uring works here, the MPI build, the cluster and
 * launcher seen in the environment, and the effective configuration with each value's origin.
 *
 * It asks the library's own modules (config.c, storage_class.c, io.c), so that its verdicts are the
 * ones ckpt_open acts on. It writes nothing but one temporary file per tier, unlinked as soon
 * as it is created, so that a killed doctor leaves nothing behind. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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

#define DOC_ALIGN 4096
#define DOC_CHUNK (8u << 20)

static void note(char **list, size_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note(char **list, size_t *n, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (*n >= TOOL_DOC_MAX_NOTES)
		return;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) >= 0)
		list[(*n)++] = s;
	va_end(ap);
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
static void bench_dir(struct tool_bench *b, const char *dir, uint64_t bytes)
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

/* io_uring as ckpt_save would use it: a ring, and one O_DIRECT write through it. A seccomp
 * profile (recent Docker and containerd defaults) or kernel.io_uring_disabled makes
 * io_uring_setup fail; io_backend=auto then uses POSIX writes. */
static void probe_uring(struct tool_doctor *r)
{
	struct ckpt_io *io = NULL;
	struct ckpt_err e = { "" };
	const struct tool_tier *l = &r->t[0];
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

/* The MPI the library was built with, from its headers: the tool calls no MPI function, so that
 * it runs (ckpt-restore in a slim init container) and starts fast without an MPI library. */
static void probe_mpi(struct tool_doctor *r)
{
#ifdef HAVE_MPI
	r->mpi_built = 1;
#if defined(OMPI_MAJOR_VERSION) && defined(OMPI_MINOR_VERSION) && defined(OMPI_RELEASE_VERSION)
	snprintf(r->mpi_lib, sizeof(r->mpi_lib), "Open MPI v%d.%d.%d (MPI %d.%d)", OMPI_MAJOR_VERSION,
		 OMPI_MINOR_VERSION, OMPI_RELEASE_VERSION, MPI_VERSION, MPI_SUBVERSION);
#elif defined(MPICH_VERSION)
	snprintf(r->mpi_lib, sizeof(r->mpi_lib), "MPICH %s (MPI %d.%d)", MPICH_VERSION, MPI_VERSION,
		 MPI_SUBVERSION);
#else
	snprintf(r->mpi_lib, sizeof(r->mpi_lib), "MPI %d.%d", MPI_VERSION, MPI_SUBVERSION);
#endif
#else
	(void)r;
#endif
}

/* ---------------------------------------------------------------------------------------------
 * Directories
 */

/* The checks of ckpt_open (check_dir), then the classification. */
static void probe_tier(struct tool_tier *t, const char *mountinfo)
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
static void judge(struct tool_doctor *r, const char *bad_config)
{
	struct tool_tier *l = &r->t[0], *s = &r->t[1];
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
	if (bad_config[0])
		note(r->fail, &r->nfail, "%s", bad_config);
	if (!r->uring_ok)
		note(r->info, &r->ninfo, "io_uring is not usable (%s): io_backend=auto uses POSIX "
		     "writes%s", r->uring_msg,
		     r->cfg->io_backend == CKPT_BACKEND_URING ? "; io_backend=uring fails" : "");
	if (r->cfg->io_backend == CKPT_BACKEND_URING && !r->uring_ok)
		note(r->fail, &r->nfail, "io_backend is uring but io_uring is not usable here: %s",
		     r->uring_msg);
}

/* One tier's probes and measurement, in a thread with a deadline (issue 13): on a hard NFS mount
 * whose server is away every call on the volume blocks in the kernel. The doctor then reports the
 * directory as not responding after probe_timeout seconds (plus the measurement's own time at
 * 1 MiB/s) instead of hanging. An abandoned thread owns its job (a reference count) and frees it
 * if its call ever returns; the process exit ends it otherwise. */
struct tier_job {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refs, done;
	const char *stage;
	struct tool_tier t;
	char *mountinfo;
	char *dir;              /* t.dir's own copy: the thread may outlive the caller's config */
	uint64_t bytes;
};

static void tier_unref(struct tier_job *j)
{
	int last;

	pthread_mutex_lock(&j->mu);
	last = --j->refs == 0;
	pthread_mutex_unlock(&j->mu);
	if (last) {
		free(j->mountinfo);
		free(j->dir);
		free(j);
	}
}

static void tier_stage(struct tier_job *j, const char *stage)
{
	pthread_mutex_lock(&j->mu);
	j->stage = stage;
	pthread_mutex_unlock(&j->mu);
}

static void tier_work(struct tier_job *j)
{
	struct tool_tier *tt = &j->t;
	char need[32];

	tier_stage(j, "stat, access, realpath and statfs");
	probe_tier(tt, j->mountinfo);
	if (!tt->usable)
		return;
	tt->bw.bytes = j->bytes;
	if (!j->bytes) {
		snprintf(tt->bw.skipped, sizeof(tt->bw.skipped), "--bytes 0");
	} else if (tt->fs.free_bytes < j->bytes + (16u << 20)) {
		tool_size(need, sizeof(need), j->bytes, 0);
		snprintf(tt->bw.skipped, sizeof(tt->bw.skipped), "less than %s + 16 MiB free", need);
	} else {
		tier_stage(j, "measuring the bandwidth (write, fsync, read)");
		bench_dir(&tt->bw, tt->real, j->bytes);
	}
}

static void *tier_main(void *arg)
{
	struct tier_job *j = arg;

	pthread_setname_np(pthread_self(), "ckpt-probe");
	tier_work(j);
	pthread_mutex_lock(&j->mu);
	j->done = 1;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
	tier_unref(j);
	return NULL;
}

/* Probe tt (its key and dir set) with a deadline: 0 when done, -1 when abandoned. */
static int probe_bounded(struct tool_tier *tt, const char *mi, uint64_t bytes, double limit)
{
	struct tier_job *j = calloc(1, sizeof(*j));
	struct timespec dl;
	pthread_t th;
	int rc = 0;

	if (!j) {
		probe_tier(tt, mi);
		return 0;
	}
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, NULL);
	j->refs = 2;
	j->t = *tt;
	/* The probe thread, abandoned at the deadline, may run on after the caller has freed its
	 * configuration (where tt->dir points): it reads only memory the job owns. */
	if (tt->dir && !(j->dir = strdup(tt->dir))) {
		pthread_mutex_destroy(&j->mu);
		pthread_cond_destroy(&j->cv);
		free(j);
		probe_tier(tt, mi);
		return 0;
	}
	j->t.dir = j->dir;
	j->bytes = bytes;
	j->mountinfo = mi ? strdup(mi) : NULL;
	if (pthread_create(&th, NULL, tier_main, j) != 0) {
		tier_work(j);
		j->done = 1;
		j->refs = 1;
	} else {
		pthread_detach(th);
	}
	limit += (double)bytes / (1 << 20); /* the measurement at 1 MiB/s at worst */
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += (time_t)limit;
	dl.tv_nsec += (long)((limit - (double)(time_t)limit) * 1e9);
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&j->mu);
	while (!j->done && pthread_cond_timedwait(&j->cv, &j->mu, &dl) != ETIMEDOUT)
		;
	if (j->done) {
		const char *dir = tt->dir; /* the caller's, not the job's copy (freed below) */

		*tt = j->t;
		tt->dir = dir;
	} else {
		tt->usable = 0;
		snprintf(tt->error, sizeof(tt->error), "%s %s is not responding: no answer within "
			 "%.0f s to %s (is its server down? a hard NFS mount waits for it)", tt->key,
			 tt->dir, limit, j->stage ? j->stage : "the first probe");
		rc = -1;
	}
	pthread_mutex_unlock(&j->mu);
	tier_unref(j);
	return rc;
}

static int run(struct tool_ctx *t, struct tool_result *out)
{
	struct tool_doctor *r = &out->u.doctor;
	uint64_t bytes = t->o.bytes;
	char *mi;

	out->kind = TOOL_DOCTOR;
	out->report = 1;
	r->cfg = t->o.cfg;
	r->cluster = ckpt_storage__cluster(t->o.cfg, &r->cluster_why);
	r->have_rank = ckpt_storage__launcher_rank(&r->rank, &r->size, &r->rank_src) == CKPT_OK;
	r->t[0].key = "local_dir";
	r->t[0].dir = t->o.local_dir;
	r->t[1].key = "shared_dir";
	r->t[1].dir = t->o.shared_dir;
	mi = ckpt_storage__read_mountinfo(NULL);
	for (int i = 0; i < 2; i++) {
		struct tool_tier *tt = &r->t[i];

		if (probe_bounded(tt, mi, bytes, r->cfg->probe_timeout) < 0) {
			fprintf(stderr, "ckpt doctor: %s\n", tt->error);
			continue;
		}
		if (tt->usable && tt->bw.error[0]) {
			r->io_error = 1;
			note(r->warn, &r->nwarn, "%s: measuring bandwidth failed: %s", tt->key,
			     tt->bw.error);
		}
	}
	free(mi);
	probe_uring(r);
	probe_mpi(r);
	/* A bad CKPT_* variable is a finding here, not a usage error: ckpt_open would refuse it. */
	judge(r, t->o.config_error);
	return r->nfail ? TOOL_DOC_FAIL : r->io_error ? TOOL_EXIT_IO : r->nwarn ? TOOL_DOC_WARN :
	       TOOL_EXIT_OK;
}

const struct tool_cmd tool_cmd_doctor = {
	.name = "doctor",
	.run = run,
	.opts = TOOL_OPT(SHARED_DIR) | TOOL_OPT(LOCAL_DIR) | TOOL_OPT(NAME) | TOOL_OPT(SET) |
		TOOL_OPT(BYTES),
	.flags = TOOL_CMD_REPORTS_CONFIG,
	.synopsis = "[--local-dir DIR] [--shared-dir DIR] [--name NAME] [--set KEY=VALUE]...\n"
		    "[--bytes SIZE] [--json] [--quiet]",
	.summary = "check the directories (filesystem, persistence, free space, bandwidth),\n"
		   "io_uring, the MPI build and the effective configuration",
	.help = "Reports, for the configured directories: filesystem type, persistence verdict, free\n"
		"space and a short measured write (with fsync) and read bandwidth (--bytes, default 64M;\n"
		"0 skips it); whether io_uring is usable; the MPI build; the cluster type and launcher\n"
		"rank seen in the environment; and every configuration key with where its value came\n"
		"from (default, environment, config).\n",
	.exits = "Exit status: 0 healthy; 1 warnings (ckpt_open would warn); 2 ckpt_open would fail;\n"
		"3 I/O error while measuring; 64 bad usage. See ckpt(1).\n",
};
