/* SPDX-License-Identifier: MIT */
/* libckpt public API: fast local checkpoints, drained asynchronously to a shared volume. */
#ifndef CKPT_H
#define CKPT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Overview
 * --------
 * ckpt_save() writes a step's regions to the node-local directory (local_dir), makes them
 * durable there (write, fsync, atomic rename, directory fsync) and returns. Background drain
 * threads then compress (zstd) and checksum (xxHash XXH3-64) a copy onto the shared volume
 * (shared_dir), and commit it there atomically: a reader sees all of a step or none of it.
 *
 * Threads: every function that takes a ckpt_ctx may be called from any thread; calls on one
 * context are serialized by the library (a second caller waits until the first returns, also
 * while the first blocks in ckpt_wait). Separate contexts are independent. The drain runs on the
 * library's own threads, at a lower CPU priority (drain_nice).
 *
 * Ownership: objects returned through an `out` argument belong to the caller, who frees them
 * with the matching _free or _close function. Returned strings are borrowed (see each function).
 *
 * Errors: every call that can fail returns CKPT_OK (0) or one of the negative CKPT_E* codes
 * below, which are pinned forever. ckpt_errmsg() then says what failed, on which path, and the
 * system's words.
 */

typedef struct ckpt_config ckpt_config; /* opaque: configuration keys and values */
typedef struct ckpt_ctx ckpt_ctx;       /* opaque: one open checkpointer */

/* One named buffer of a step. `name` is 1..CKPT_NAME_MAX bytes, unique within the step. */
typedef struct ckpt_region {
	const char *name;
	const void *data;
	size_t size;
} ckpt_region;

#define CKPT_NAME_MAX 255

/* What ckpt_list_regions() reports for one region of a step. */
typedef struct ckpt_region_info {
	char name[CKPT_NAME_MAX + 1]; /* NUL-terminated */
	uint64_t size;                /* bytes, uncompressed */
} ckpt_region_info;

enum {
	CKPT_OK = 0,
	CKPT_EINVAL = -1,    /* bad argument, key or value; a NULL pointer */
	CKPT_ENOMEM = -2,    /* out of memory */
	CKPT_EIO = -3,       /* an I/O system call failed (see ckpt_errmsg) */
	CKPT_ENOSPC = -4,    /* a tier is full (or over its quota) */
	CKPT_ENOENT = -5,    /* no such step or region */
	CKPT_ECORRUPT = -6,  /* a checksum or format check failed */
	CKPT_ENOTSUP = -7,   /* not supported by this build (e.g. MPI, io_uring) */
	CKPT_ETIMEDOUT = -8, /* a wait ran past its time limit */
	CKPT_EPERM = -9,     /* permission denied on a directory or file */
	CKPT_EMPI = -10,     /* an MPI call failed, or ranks disagreed */
	CKPT_EBUSY = -11,    /* the job (this rank) is open in another process on this node */
	CKPT_ENRANKS = -12,  /* the step was saved by another number of ranks: ckpt_load_rank */
	CKPT_ESTALE = -13,   /* the save of a step this context reads was replaced and removed */
	/* more codes may follow, each a distinct negative value, never renumbered */
};

/* ckpt_wait(ctx, CKPT_STEP_ALL) waits for every step saved so far. */
#define CKPT_STEP_ALL UINT64_MAX

/*
 * Configuration. ckpt_config_new() fills the defaults, then applies every CKPT_<KEY> environment
 * variable (e.g. CKPT_LOCAL_DIR for `local_dir`); ckpt_config_set() overrides a key afterwards.
 * Keys (libckpt(7) and README.md give defaults and ranges):
 *   local_dir, shared_dir, name, compress_level, keep_local, keep_shared, drain_threads,
 *   io_backend (auto|uring|posix), chunk_size, max_pending, close_timeout, io_depth, drain_nice,
 *   mpi_timeout, log_level, require_persistent (0|1), cluster (auto|none|slurm|kubernetes),
 *   fault_kill_at (tests only).
 * ckpt_config_new fails only for lack of memory. An unknown key or a bad value given to
 * ckpt_config_set is CKPT_EINVAL, described by ckpt_config_errmsg(). A bad CKPT_* variable is
 * kept aside: ckpt_open then fails with CKPT_EINVAL naming it, unless the program set that key.
 */
int ckpt_config_new(ckpt_config **out);
int ckpt_config_set(ckpt_config *cfg, const char *key, const char *value);
/* Current value of `key` as a string (borrowed, valid until the next set or free); NULL when the
 * key is unknown or cfg is NULL. */
const char *ckpt_config_get(const ckpt_config *cfg, const char *key);
/* Why the last ckpt_config_new/ckpt_config_set on cfg failed; "" when nothing failed. Never NULL. */
const char *ckpt_config_errmsg(const ckpt_config *cfg);
void ckpt_config_free(ckpt_config *cfg); /* NULL is a no-op */

/*
 * Open a checkpointer for one process (no MPI). Creates <local_dir>/<name> and
 * <shared_dir>/<name> when missing, removes temporary files abandoned by dead processes of this
 * host, and queues for draining every step that is complete locally but not committed on the
 * shared volume (the process died mid-drain). The config is copied; the caller may free it.
 * local_dir and shared_dir must exist: CKPT_ENOENT when one does not (a missing mount point is
 * never created), CKPT_EPERM when one is not writable, CKPT_EINVAL when a key is unset, a path is
 * not a directory, or shared_dir is local_dir or inside it. A shared_dir that would not outlive
 * this node (tmpfs, a container's overlay, a node's disk, /home on Kubernetes, the filesystem of
 * local_dir) gets one warning on stderr, or CKPT_EINVAL with require_persistent=1. On failure
 * *out is NULL and ckpt_errmsg(NULL) describes the failure (in the calling thread).
 */
int ckpt_open(ckpt_ctx **out, const ckpt_config *cfg);

/*
 * MPI. ckpt_open_mpi() (declared in <ckpt_mpi.h>) takes an MPI_Comm; this variant takes the
 * communicator's Fortran handle (MPI_Comm_c2f, or mpi4py's comm.py2f()) so that callers without
 * <mpi.h> (ctypes) can use it. Collective over the communicator. In a build without MPI it
 * returns CKPT_ENOTSUP.
 */
int ckpt_open_mpi_f(ckpt_ctx **out, const ckpt_config *cfg, int fortran_comm);

/*
 * Save `nregions` regions as checkpoint `step`. Returns once the data is durable on the local
 * tier (written, fsync'd, renamed into place, directory fsync'd); the caller may then reuse the
 * buffers. Draining to the shared volume continues in the background (see ckpt_wait).
 * Backpressure: when `max_pending` steps are already saved but not yet committed on shared,
 * ckpt_save first waits for the oldest of them to finish draining (or fail).
 * Saving a step number again replaces that step: the local copy is replaced at once (atomically);
 * on the shared volume the old save stays until the new one is committed, which replaces it
 * atomically. A failed ckpt_save leaves the step as it was, except when only the last directory
 * fsync failed: the new save is then in place (the error is still returned) and is drained.
 * With MPI the call is collective: every rank passes the same step.
 * Errors: CKPT_EINVAL (bad step, regions, names, duplicates), CKPT_ENOSPC, CKPT_EIO, CKPT_EMPI.
 */
int ckpt_save(ckpt_ctx *ctx, uint64_t step, const ckpt_region *regions, size_t nregions);

/*
 * Wait until `step` (or every step saved so far, for CKPT_STEP_ALL) is committed on the shared
 * volume, and return its drain's result: CKPT_OK, or the error that stopped it (the local copy is
 * kept; ckpt_errmsg says what failed). For CKPT_STEP_ALL, the error of the first step whose last
 * drain failed. CKPT_ENOENT when this context neither saved `step` nor found it to re-drain at
 * open. Older copies that retention (keep_local, keep_shared) removed on the way are deleted by
 * then too, so their disk space is free.
 */
int ckpt_wait(ckpt_ctx *ctx, uint64_t step);

/*
 * Non-blocking: the state of `step` saved by this context. *state receives one of CKPT_STATE_*.
 * Also advances MPI commits when the MPI library gives no progress thread.
 */
enum {
	CKPT_STATE_NONE = 0,      /* this context never saved the step */
	CKPT_STATE_LOCAL = 1,     /* durable locally, drain queued or running */
	CKPT_STATE_COMMITTED = 2, /* committed on the shared volume */
	CKPT_STATE_FAILED = 3,    /* drain failed; local copy kept; see ckpt_wait's result */
};
int ckpt_poll(ckpt_ctx *ctx, uint64_t step, int *state);

/* The newest (highest-numbered) step whose copy is complete and structurally intact (header,
 * index, trailer and MANIFEST checksums; data checksums are verified by ckpt_load), committed on
 * shared or complete locally, whatever the number of ranks that saved it (a step saved by
 * another number of ranks than this context's is read with ckpt_load_rank: ckpt_load of it
 * fails with CKPT_ENRANKS). CKPT_ENOENT when there is none. Steps that vanish while it looks
 * (retired, re-saved) make it look again; it never reports "none" while a committed step existed
 * throughout. It pins the step to the save it names: this context's reads of the step come from
 * that save (see ckpt_load); calling ckpt_latest again re-pins to the newest save. With MPI:
 * collective, every rank gets the same answer, and every rank then reads the same save. */
int ckpt_latest(ckpt_ctx *ctx, uint64_t *step);

/* Where a copy of a step is, for ckpt_step_info.tiers. */
#define CKPT_TIER_LOCAL 1u  /* this rank's shard is on this node's local tier */
#define CKPT_TIER_SHARED 2u /* the step is committed on the shared tier */

/* What ckpt_list_steps() reports for one step. */
typedef struct ckpt_step_info {
	uint64_t step;
	uint64_t save_id;    /* the save of the step that this context's reads would use */
	uint64_t created_ns; /* when that save was made (ns since the Unix epoch) */
	uint32_t nranks;     /* how many ranks saved it (ckpt_load_rank reads each one) */
	uint32_t tiers;      /* CKPT_TIER_LOCAL | CKPT_TIER_SHARED */
	int committed;       /* 1: committed on the shared tier; 0: complete locally only */
	uint32_t reserved[7]; /* zero; room for more fields without changing the size */
} ckpt_step_info;

/*
 * The steps this context can read, newest first: committed on the shared tier (whatever number
 * of ranks saved them), or complete locally (this rank's copy, saved by as many ranks as this
 * context has). Steps in progress, removed meanwhile or damaged are left out (a damaged one with
 * a warning). Fills up to `cap` entries of `out` (which may be NULL when cap is 0) and sets
 * *count to the number of steps; call with cap 0 first to size the array. Not collective: with
 * MPI it is this rank's view. Pins nothing. Errors: CKPT_EINVAL, CKPT_EIO, CKPT_ENOMEM.
 */
int ckpt_list_steps(ckpt_ctx *ctx, ckpt_step_info *out, size_t cap, size_t *count);

/*
 * Any rank's shard, for jobs that reshard: the same as ckpt_load / ckpt_region_size for the shard
 * that rank `rank` saved (read locally when this node holds it, else from the shared tier).
 * ckpt_step_nranks tells how many ranks saved `step`.
 */
int ckpt_load_rank(ckpt_ctx *ctx, uint64_t step, uint32_t rank, const char *name, void *buf,
		   size_t size);
int ckpt_region_size_rank(ckpt_ctx *ctx, uint64_t step, uint32_t rank, const char *name,
			  size_t *size);
int ckpt_step_nranks(ckpt_ctx *ctx, uint64_t step, uint32_t *nranks);

/* This context's rank and number of ranks (0 and 1 without MPI). */
int ckpt_rank(const ckpt_ctx *ctx, uint32_t *rank, uint32_t *nranks);

/* Uncompressed size of region `name` of `step`. CKPT_ENOENT if the step or region is missing. */
int ckpt_region_size(ckpt_ctx *ctx, uint64_t step, const char *name, size_t *size);

/*
 * The regions of `step`, in the order they were saved. Fills up to `cap` entries of `out`
 * (which may be NULL when cap is 0) and sets *count to the number of regions the step has;
 * call with cap 0 first to size the array.
 */
int ckpt_list_regions(ckpt_ctx *ctx, uint64_t step, ckpt_region_info *out, size_t cap,
		      size_t *count);

/*
 * Read region `name` of `step` into `buf`, whose `size` must equal the region's size. Reads the
 * local copy when it is present and its checksum verifies; otherwise reads the shared copy,
 * decompressing and verifying every chunk. CKPT_ECORRUPT when no intact copy of the same save
 * exists: a damaged local copy of a re-saved step never falls back to an older save of it, so a
 * step is never assembled from two saves.
 * One save per step and context: the first read of a step (any of ckpt_load, ckpt_load_rank,
 * ckpt_region_size(_rank), ckpt_list_regions, ckpt_step_nranks), or ckpt_latest before it, pins
 * the step to the save it finds; every later read of that step by this context reads that save,
 * even while a writer elsewhere re-saves the step. When that save has been removed meanwhile
 * (the step was re-saved or retired on the shared tier, past the writer's read_grace), the read
 * fails with CKPT_ESTALE, never with data of another save: call ckpt_latest again and restart
 * reading from the step it names. This context's own ckpt_save of a step drops its pin.
 * CKPT_ENRANKS when the step was saved by another number of ranks than this context has (its
 * shard numbered like this rank is another rank's part of the model): read the shards with
 * ckpt_load_rank, ckpt_step_nranks telling how many, and reshard. ckpt_region_size and
 * ckpt_list_regions fail the same way.
 */
int ckpt_load(ckpt_ctx *ctx, uint64_t step, const char *name, void *buf, size_t size);

/*
 * Finish pending drains (waiting at most `close_timeout` seconds), stop the threads, free ctx.
 * Returns CKPT_ETIMEDOUT when drains were still running at the deadline (their local copies
 * stay and are drained again by the next ckpt_open), else the error of the first step whose last
 * drain failed, else CKPT_OK. With MPI it is collective.
 * NULL is a no-op returning CKPT_OK. ctx is freed in every case.
 */
int ckpt_close(ckpt_ctx *ctx);

/* Short description of a CKPT_* code ("invalid argument", ...). Never NULL, also for unknown
 * codes. The string is static. */
const char *ckpt_strerror(int rc);

/* The last failure on ctx: what failed, which path, the system's words. "" when none; never NULL.
 * Borrowed: valid until the next call on ctx. */
const char *ckpt_errmsg(const ckpt_ctx *ctx);

/* Library version as "MAJOR.MINOR.PATCH". Static string. */
const char *ckpt_version(void);

#ifdef __cplusplus
}
#endif
#endif /* CKPT_H */
