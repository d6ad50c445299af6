/* SPDX-License-Identifier: MIT */
/* Configuration keys, defaults and CKPT_* environment variables (private view; config.c), and
 * what two keys do at run time: log_level (config_log.c) and fault_kill_at (config_fault.c). */
#ifndef CKPT_CONFIG_H
#define CKPT_CONFIG_H

/* Longest local_dir / shared_dir accepted, in bytes (paths below them must still fit PATH_MAX). */
#define CKPT_CONFIG_PATH_MAX 3000

#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum ckpt_backend { CKPT_BACKEND_AUTO = 0, CKPT_BACKEND_URING = 1, CKPT_BACKEND_POSIX = 2 };

/* Where the job runs, which decides what /home is (storage_cluster.c). AUTO: from the
 * environment. */
enum ckpt_cluster {
	CKPT_CLUSTER_AUTO = 0,
	CKPT_CLUSTER_NONE = 1,
	CKPT_CLUSTER_SLURM = 2,
	CKPT_CLUSTER_KUBERNETES = 3,
};

/* Where a value came from, for diagnostics. */
enum ckpt_origin { CKPT_FROM_DEFAULT = 0, CKPT_FROM_ENV = 1, CKPT_FROM_SET = 2, CKPT_FROM_BAD_ENV = 3 };

#define CKPT_NKEYS 26

struct ckpt_config {
	char *local_dir;
	char *shared_dir;
	char *name;
	int compress_level;
	unsigned keep_local;
	unsigned keep_shared;     /* 0: keep every committed step */
	unsigned drain_threads;
	enum ckpt_backend io_backend;
	uint64_t chunk_size;      /* raw bytes per compressed chunk */
	unsigned max_pending;     /* saved-but-uncommitted steps before ckpt_save waits */
	double close_timeout;     /* seconds */
	unsigned io_depth;        /* writes in flight on the local tier */
	int drain_nice;           /* nice value of drain threads */
	double mpi_timeout;       /* seconds a rank waits for the others */
	char *fault_kill_at;      /* testing: SIGKILL this process at the named point */
	int log_level;            /* 0 silent, 1 warnings (stderr), 2 info */
	int require_persistent;   /* 1: ckpt_open refuses a shared_dir that is not persistent */
	enum ckpt_cluster cluster; /* slurm, kubernetes, none; auto: from the environment */
	uint64_t stage_bytes;     /* snapshot mode's host-memory budget for staging; 0: off */
	int chunk_transform;      /* 1 auto: chunk transforms chosen per chunk; 0 none (version 1) */
	unsigned elem_width;      /* element width hint of the transforms: 0 auto, 1, 2, 4, 8 */
	double probe_timeout;     /* seconds ckpt_open and ckpt doctor wait for shared_dir */
	double stall_after;       /* seconds without drain progress: shared_dir not responding */
	double stall_wait;        /* seconds ckpt_save waits for a drain before skipping steps */
	double read_grace;        /* seconds a superseded save / retired step stays readable */
	double writer_lease;      /* seconds without heartbeat before the writer lease expires */
	enum ckpt_origin origin[CKPT_NKEYS];
	struct ckpt_err err;      /* last ckpt_config_set failure */
	char getbuf[CKPT_NKEYS][32]; /* ckpt_config_get of numbers: one buffer per key */
};

/* Deep copy (strings duplicated). */
int ckpt_config__dup(struct ckpt_config **out, const struct ckpt_config *src);
/* CKPT_OK, or CKPT_EINVAL with the first bad CKPT_* environment variable (that the program did
 * not override with ckpt_config_set) described in err. */
int ckpt_config__check(const struct ckpt_config *cfg, struct ckpt_err *err);
/* Name of key i (0..CKPT_NKEYS-1), or NULL past the end. */
const char *ckpt_config__key(size_t i);
/* Parse a size such as "4M", "65536", "1G" into bytes. 0 on success, -1 on a bad value. */
int ckpt_config__parse_size(const char *s, uint64_t *out);

/* The process environment, for the modules that need more than CKPT_<KEY> (the cluster type,
 * the launcher's rank): getenv(name), or NULL when unset or empty. Keeping every getenv() in this
 * file keeps the list of variables the library reads in one place. */
const char *ckpt_config__env(const char *name);
/* "auto", "none", "slurm", "kubernetes". */
const char *ckpt_config__cluster_name(enum ckpt_cluster c);

/* Crash tests: SIGKILL this process when `point` equals the fault_kill_at key's value. The points
 * are listed in docs/FORMAT.md (durability) and exercised by tests/test_crash.c. */
void ckpt_config__fault(const char *fault_kill_at, const char *point);

/* "libckpt: warning: ..." on stderr when log_level >= 1 (info: >= 2). For what a user must see
 * although the call succeeded: a fallback to another copy, a shared_dir that is not persistent. */
void ckpt_config__log(const struct ckpt_config *cfg, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
