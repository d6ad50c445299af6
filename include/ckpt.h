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
	CKPT_ENOENT = -5,    /* no such step, region or directory */
	CKPT_ECORRUPT = -6,  /* a checksum or format check failed */
	CKPT_ENOTSUP = -7,   /* not supported by this build (e.g. MPI, io_uring) */
	CKPT_ETIMEDOUT = -8, /* a wait ran past its time limit */
	CKPT_EPERM = -9,     /* permission denied on a directory or file */
	CKPT_EMPI = -10,     /* an MPI call failed, or ranks disagreed */
	CKPT_EBUSY = -11,    /* the job rank is open already (this process or another, this node),
			      * or a commit was refused: another live process is the job's writer */
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
 *   stage_bytes (snapshot mode, see "Snapshot saves" below), chunk_transform (auto|none),
 *   elem_width (auto|1|2|4|8; per region: ckpt_region_hint), fault_kill_at (tests only).
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
 * shared_dir must exist: CKPT_ENOENT when it does not (a missing mount point is never created);
 * a missing local_dir is created with its parents (the local tier is ephemeral: a recreated node
 * starts empty). CKPT_EPERM when a directory is not writable, CKPT_EINVAL when a key is unset, a path is
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
 * Training never waits for the shared volume: when `max_pending` steps are already saved but
 * not yet committed (the volume is slow or not responding), the older steps still waiting for
 * their drain are skipped once this one is durable locally: their local copies are removed and
 * ckpt_wait on them returns CKPT_ENOENT. After a node loss the newest complete step is what
 * counts; the step being drained and the newest one always stay. Local disk stays within
 * keep_local + max_pending steps (max_pending counted as at least 2). One warning per outage
 * names a shared_dir whose drain made no progress for `stall_after` seconds. With MPI the ranks
 * agree to skip: when any rank's drain is behind, every rank skips its queued older steps.
 * Saving a step number again replaces that step: the local copy is replaced at once (atomically);
 * on the shared volume the old save stays until the new one is committed, which replaces it
 * atomically. A failed ckpt_save leaves the step as it was, except when only the last directory
 * fsync failed: the new save is then in place (the error is still returned) and is drained.
 * With MPI the call is collective: every rank passes the same step; a rank that does not call it
 * within mpi_timeout seconds of the others makes them return CKPT_ETIMEDOUT, naming it.
 * Errors: CKPT_EINVAL (bad step, regions, names, duplicates), CKPT_ENOSPC, CKPT_EIO, CKPT_EMPI,
 * CKPT_ETIMEDOUT (MPI).
 * Snapshot mode (stage_bytes > 0): returns once the regions are copied into the library's staging
 * memory; see "Snapshot saves" below.
 */
int ckpt_save(ckpt_ctx *ctx, uint64_t step, const ckpt_region *regions, size_t nregions);

/*
 * Element width hint for the regions named `name` (1..CKPT_NAME_MAX bytes): the size in bytes of
 * one element of their data (a dtype's item size: 4 for float32, 2 for bfloat16 and float16, 8
 * for float64; 1 for bytes), so that the drain's chunk transforms (chunk_transform=auto) group
 * their bytes with that width instead of detecting it from the data. elem_width is 1, 2, 4 or 8,
 * or 0 to remove the hint. Precedence, for each region: its hint, else the elem_width
 * configuration key, else detection per chunk (the default); with chunk_transform=none hints are
 * ignored. A hint is read when a step's drain starts, so it applies to the drains of later saves
 * (and of earlier saves whose drain has not started yet); every chunk of a region in one drain
 * uses the same one. The name need not have been saved yet; hints last until ckpt_close and are
 * not saved anywhere. A hint is a performance hint only: a wrong one costs compression ratio and
 * speed, never data (every chunk records its transform and width, and reads back bit-exact).
 * Does no I/O and never waits for the drain (only, as every call, for another call on ctx to
 * return). Not collective with MPI: each rank hints its own regions.
 * Errors: CKPT_EINVAL (NULL ctx or name, a name of 0 or more than CKPT_NAME_MAX bytes, another
 * width), CKPT_ENOMEM.
 */
int ckpt_region_hint(ckpt_ctx *ctx, const char *name, unsigned elem_width);

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
 * ckpt_wait with a bound: CKPT_ETIMEDOUT when `step` (or CKPT_STEP_ALL) is not committed within
 * `seconds` (>= 0; 0 asks without waiting); ckpt_errmsg then says whether shared_dir is not
 * responding. The drains go on. With MPI it returns within `seconds` plus a few ms.
 */
int ckpt_wait_timeout(ckpt_ctx *ctx, uint64_t step, double seconds);

/* How far the shared tier is behind the local one (ckpt_drain_lag). */
typedef struct ckpt_lag_info {
	uint64_t newest_local;     /* newest step this context saved (valid if has_local) */
	uint64_t newest_committed; /* newest step this context committed (valid if has_committed) */
	int has_local, has_committed;
	double seconds_behind;     /* age of the oldest save still waiting for its drain; 0: none */
	int stalled;               /* 1: shared_dir is not responding (no drain progress for
				    * stall_after seconds while a drain is in progress) */
	double stalled_seconds;    /* how long the drain has been without progress, when stalled */
	unsigned pending;          /* saved steps whose drain is queued or running */
	unsigned skipped;          /* superseded steps skipped without a drain since open */
	uint64_t reserved[4];      /* 0 */
} ckpt_lag_info;

/*
 * Non-blocking: the drain lag of ctx into *out (see ckpt_lag_info). CKPT_EINVAL on NULL.
 */
int ckpt_drain_lag(ckpt_ctx *ctx, ckpt_lag_info *out);

/*
 * Non-blocking: the state of `step` saved by this context. *state receives one of CKPT_STATE_*.
 * Also advances MPI commits when the MPI library gives no progress thread.
 */
enum {
	CKPT_STATE_NONE = 0,      /* this context never saved the step */
	CKPT_STATE_LOCAL = 1,     /* durable locally, drain queued or running */
	CKPT_STATE_COMMITTED = 2, /* committed on the shared volume */
	CKPT_STATE_FAILED = 3,    /* drain failed; local copy kept; see ckpt_wait's result */
	CKPT_STATE_STAGED = 4,    /* snapshot mode: copied into staging memory, not yet durable
				   * locally (a crash of the process loses this save) */
};
int ckpt_poll(ckpt_ctx *ctx, uint64_t step, int *state);

/*
 * Snapshot saves
 * --------------
 * With stage_bytes > 0 (a host-memory budget, e.g. "2G"), ckpt_save copies the regions into
 * staging memory that the library owns (several threads) and returns: the caller may reuse its
 * buffers at once. A library thread then computes each region's XXH3 from the staged bytes (the
 * caller's bytes at the call) and writes the step to local_dir exactly as a durable ckpt_save
 * would (O_DIRECT from the staging memory, fdatasync, rename, directory fsync), gives its staging
 * memory back to the pool, and queues the drain. Steps are written locally in the order they were saved.
 *   States: ckpt_poll says CKPT_STATE_STAGED until the local copy is durable, then
 *   CKPT_STATE_LOCAL, CKPT_STATE_COMMITTED (or CKPT_STATE_FAILED) as before. ckpt_wait_local waits
 *   for local durability only; ckpt_wait waits for the commit as before (so through staging), and
 *   returns the error of a failed background local write. ckpt_latest and ckpt_load see a staged
 *   step only once it is durable locally.
 *   Crash: a crash of the process loses the steps still staged (and only those): every step that
 *   was durable locally or committed before stays intact and readable, and the temporary file of
 *   a torn local write is never taken for a step (it is removed by the next ckpt_open).
 *   Memory: staging memory never exceeds stage_bytes. The pool's pages are touched on first use
 *   and reused by the following saves (so the copy does not pay page faults each time); they are
 *   returned to the system by ckpt_close. When the pool cannot hold a step now (earlier staged
 *   steps are still being written), ckpt_save waits until their local writes free enough of it;
 *   a step larger than stage_bytes, or one that cannot fit even when nothing else is staged
 *   (memory the caller holds from ckpt_stage_alloc), is written directly as without snapshot mode
 *   (after the staged steps before it), and ckpt_save returns when it is durable. max_pending
 *   counts staged steps too.
 *   MPI: ckpt_save stays collective; the ranks agree that every rank staged the step. A rank
 *   whose background local write fails votes against the step, which then commits nowhere
 *   (ckpt_wait returns the error).
 */

/*
 * Wait until `step` (or every step saved so far, for CKPT_STEP_ALL) is durable on the local tier,
 * not for the drain. Returns CKPT_OK once it is, or the error of the step's background local
 * write (snapshot mode; the staged save is then lost, the step is as it was before it, and
 * ckpt_errmsg says what failed). Without snapshot mode a successful ckpt_save already was durable
 * locally: CKPT_OK at once. CKPT_ENOENT when this context never saved `step`.
 */
int ckpt_wait_local(ckpt_ctx *ctx, uint64_t step);

/*
 * Staging memory for a copy-free save (snapshot mode; e.g. a GPU's device-to-host copy straight
 * into it). ckpt_stage_alloc sets *out to `size` bytes (size > 0) of the context's staging pool,
 * aligned to 4096 bytes; the caller fills it, then hands it to ckpt_save_staged, or gives it
 * back with ckpt_stage_free. When the pool has no room now but staged steps are being written,
 * it waits for them; CKPT_ENOMEM when the pool cannot hold `size` bytes even then (the request
 * exceeds stage_bytes, or the caller holds the rest); CKPT_EINVAL when stage_bytes is 0. The
 * memory belongs to the context: ckpt_close frees what the caller still holds. Pinning it for a
 * GPU (cudaHostRegister) is the caller's choice, undone before ckpt_stage_free/ckpt_save_staged.
 */
int ckpt_stage_alloc(ckpt_ctx *ctx, size_t size, void **out);
/* Give back a buffer from ckpt_stage_alloc that will not be saved. NULL is a no-op; CKPT_EINVAL
 * for a pointer that is not a buffer of ctx's pool (held by the caller). */
int ckpt_stage_free(ckpt_ctx *ctx, void *buf);
/*
 * ckpt_save of regions whose `data` are buffers from ckpt_stage_alloc on ctx (each the start of
 * its own buffer, size at most the size allocated): no copy is made. Ownership of every such
 * buffer passes to the library when the call is made, whatever it returns: the library frees it
 * once the step is durable locally (or at once when the save fails), and the caller must not
 * touch it again. Returns once the step is staged, as ckpt_save in snapshot mode; the regions'
 * checksums are computed by the background writer. With MPI the call is collective, as ckpt_save.
 * Errors: those of ckpt_save; CKPT_EINVAL when a region's data is not such a buffer (or names one
 * twice) or is larger than its buffer.
 */
int ckpt_save_staged(ckpt_ctx *ctx, uint64_t step, const ckpt_region *regions, size_t nregions);

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
 * Returns within close_timeout (plus 0.1 s for the threads to leave) also when a drain thread is
 * stuck in a call on a shared volume that does not answer: that thread is detached and frees
 * what it uses when the call returns, without committing anything.
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
