/* SPDX-License-Identifier: MIT */
/* The context object shared by the api, commit and drain modules (private, never installed).
 *
 * The layering of the library, top down (docs/ARCHITECTURE.md is the same map, for readers). A
 * module uses only modules below it, and its #includes show that; no two modules call each other.
 *   api       api.c: public ckpt_* (check arguments, api_mu, call inward); api_mpi.c: ckpt_open_mpi
 *             and the collective save, latest and recovery
 *   context   context.c: open/shutdown, local save and backpressure, step listings; stage.c:
 *             snapshot saves (staging pool, copy threads, the background local writer)
 *   commit    commit_mpi.c: the MPI vote engine; commit.c: the commit point (the one function that
 *             writes a MANIFEST) and the single-process commit
 *   drain     drain.c: threads, queue, one job at a time; drain_retention.c: keep_local,
 *             keep_shared and the trash (this header: the context they share with the above)
 *   step      step.c: a step's MANIFEST and shards, found and checked on either tier
 *   shard     shard_local.c: the local writer; shard_shared.c: the compressed writer the drain
 *             feeds; shard_read.c: the verifying reader of both tiers
 *   storage   storage_class.c: filesystem classification, persistence verdict, the check at
 *             open; storage_cluster.c: cluster type, launcher rank
 *   store     store_layout.c: names and paths; store_durable.c: write, fsync, rename, directory
 *             fsync, guarded reads; store_scan.c: scans, removal; store_host.c: host, clock, ids
 *   codec     codec.c: zstd, XXH3-64, the chunk check (uses fmt's index entries); xform.c: the
 *             byte-grouping chunk transform (pure buffers; wired into the drain by issue 15)
 *   io        io.c: backend choice, full pread/pwrite; io_uring.c, io_posix.c: the backends
 *   fmt       fmt.c: encode/decode of header, index, trailer, MANIFEST; pure buffers. Below codec,
 *             so it seals its own structures with one private XXH3 call (fmt.c: checksum)
 *   config    config.c: keys, defaults, the only getenv(); config_log.c; config_fault.c
 *   error     error.c
 * Direct uses below the drain (each also uses error): config, fmt: none; io: config; codec: fmt;
 * store: io; storage: config; shard: codec, fmt, io, store, config; step: shard, store, fmt.
 * The one call upward: a drain thread ends a job through the hooks ctx->commit and
 * ctx->vote_fail, set by the context at open, while the commit layer updates the drain's step
 * records (ckpt_drain__rec, ckpt_drain__retention): a cycle through function pointers, kept for
 * now and written down here. Without MPI, api.h and commit_mpi.h give static inline stand-ins
 * that are never reached (ctx->mpi is always NULL). */
#ifndef CKPT_INTERNAL_H
#define CKPT_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "ckpt.h"
#include "codec.h"
#include "config.h"
#include "error.h"
#include "shard.h"
#include "store.h"

/* What this context knows of a step it saved (or found to re-drain at open). */
struct ckpt_step_rec {
	uint64_t step;
	uint64_t save_id;       /* of the newest local save of this step */
	int state;              /* CKPT_STATE_LOCAL / _COMMITTED / _FAILED */
	int rc;                 /* the last drain's result */
	int queued;             /* waiting in the drain queue (not yet started) */
	uint64_t saved_ns;      /* when the newest local save was made (ckpt_drain_lag) */
	struct ckpt_err err;    /* the last drain's failure */
	int local_rc;           /* snapshot mode: the newest save's background local write (stage.c) */
	struct ckpt_step_rec *qnext;
};

/* What a finished drain hands to the commit step. */
struct ckpt_drained {
	uint64_t step;
	uint64_t save_id;
	uint64_t created_ns;
	struct ckpt_manifest_rank shard; /* this rank's durable shard on the shared tier */
};

/* What a commit hook returns when the outcome arrives later (MPI): the step stays LOCAL and
 * pending until the commit protocol settles it. Never returned to users. */
#define CKPT_COMMIT_PENDING 1

struct ckpt_ctx;
/* A drain that failed on this rank (MPI: tell rank 0 so the round ends). NULL when single. */
typedef void (*ckpt_vote_fail_fn)(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id, int rc,
				  const char *msg);
/* Commit a drained shard (single process: write the MANIFEST; MPI: the collective protocol).
 * Called from a drain thread without ctx->mu held. */
typedef int (*ckpt_commit_fn)(struct ckpt_ctx *ctx, const struct ckpt_drained *d,
			      struct ckpt_err *err);

struct drain_job;
struct ckpt_deferred;
struct ckpt_lease;
struct worker;
struct ckpt_stage;

struct ckpt_ctx {
	struct ckpt_config *cfg;
	char local_job[CKPT_PATH_MAX];  /* <local_dir>/<name> */
	char shared_job[CKPT_PATH_MAX]; /* <shared_dir>/<name> */
	char shared_root[CKPT_PATH_MAX];/* realpath of shared_dir */
	uint64_t shared_dev, shared_ino; /* ... as it was at open (ckpt_store__same_dir) */
	uint32_t rank, nranks;
	ckpt_commit_fn commit;
	ckpt_vote_fail_fn vote_fail;
	void *mpi;                      /* struct ckpt_mpi, when opened with MPI */
	int resolved;                   /* MPI: ckpt_latest agreed that step resolved_step is read */
	uint64_t resolved_step;         /* from save resolved_save on every rank */
	uint64_t resolved_save;
	struct ckpt_pin *pins;          /* the save each step read so far is read from (api_mu) */
	size_t npins, cappins;

	int lock_fd;                    /* fcntl lock on .lock-rank-R: one process per rank */
	pthread_mutex_t api_mu;         /* serializes the public calls on this context */
	struct ckpt_err err;            /* ckpt_errmsg(); written under api_mu */
	struct ckpt_writer *writer;     /* local tier writes (api thread only) */
	struct ckpt_codec *codec;       /* loads from the shared tier (api thread only) */

	pthread_mutex_t mu;             /* protects everything below */
	pthread_cond_t cv;              /* any change of the below */
	struct ckpt_step_rec **recs;
	size_t nrecs, caprecs;
	struct ckpt_step_rec *qhead, *qtail;
	unsigned pending;               /* queued + running drains */
	struct drain_job *job;          /* the drain in progress */
	int setting_up;                 /* a worker is opening the next job */
	int stopping;                   /* finish the queue, then exit */
	int abort;                      /* exit now: abandon the job in progress */
	pthread_t *threads;
	unsigned nthreads;
	struct worker *drain_workers;
	char **trash;                   /* retired copies (.tmp.* names) that a drain thread removes */
	size_t ntrash, captrash;
	int emptying;                   /* a drain thread is removing a batch taken from trash */
	struct ckpt_stage *stage;       /* snapshot mode (stage.c); NULL until its first use */
	int retaining;                  /* retention is reading the shared tier (ctx->mu dropped) */
	int retain_again;               /* ... and another commit asked for it meanwhile */
	/* Stalls (issue 13): the drain's last progress on the shared tier, and whether the save path
	 * has warned of the current stall. A stalled drain is one busy for stall_after seconds
	 * without progress. */
	uint64_t progress_ns;
	uint64_t stall_warned_ns;       /* when the warning was given (0: none this stall) */
	unsigned skipped;               /* superseded steps skipped since open */
	int behind;                     /* a save waited stall_wait in vain: skip at once until the
					 * drain is within max_pending again */
	/* Shutdown with threads stuck in the kernel: they are detached, and the last one to leave
	 * frees the context through `release` (set by the context at open). */
	unsigned alive;                 /* drain threads not yet returned */
	int detached;
	void (*release)(struct ckpt_ctx *ctx);
	struct ckpt_deferred *deferred; /* what waits read_grace before retention retires it */
	size_t ndeferred, capdeferred;

	struct ckpt_lease *lease;       /* rank 0: the writer lease (commit.c); NULL elsewhere */
};

/* drain.c: the pipeline */
int ckpt_drain__start(struct ckpt_ctx *ctx, struct ckpt_err *err);
/* Wait up to `timeout` seconds for the queue to empty, then stop the threads (returning within
 * `timeout` even when a thread is stuck in a call on the shared volume: ckpt_drain__release).
 * CKPT_ETIMEDOUT when drains were abandoned. */
int ckpt_drain__stop(struct ckpt_ctx *ctx, double timeout);
/* Queue rec for draining (ctx->mu held). */
void ckpt_drain__enqueue(struct ckpt_ctx *ctx, struct ckpt_step_rec *rec);
/* The drain has fallen behind (ctx->mu held): take out of the queue the queued steps older than
 * `step` (superseded: the newest complete step is what matters after a node loss) and store
 * their steps in skip[] (at most cap). Returns how many. Their records go back to state NONE
 * with rc CKPT_ENOENT; the caller removes their local copies without ctx->mu. */
size_t ckpt_drain__skip_superseded(struct ckpt_ctx *ctx, uint64_t step, uint64_t *skip,
				   size_t cap);
/* Is the drain busy and without progress on the shared tier for stall_after seconds? (ctx->mu
 * held). Returns the seconds it has been stuck, 0 when it is not. */
double ckpt_drain__stalled(const struct ckpt_ctx *ctx);
/* After ckpt_drain__stop (ctx->mu not held, nothing else touches ctx): join the threads, free
 * the drain's part of ctx and return 0; or, with may_detach while threads are still stuck in the
 * kernel, detach them and return 1: the last one frees the drain's part and then ctx through
 * ctx->release, and the caller must not touch ctx again. */
int ckpt_drain__release(struct ckpt_ctx *ctx, int may_detach);
/* Find or create the record of `step` (ctx->mu held). NULL when out of memory. */
struct ckpt_step_rec *ckpt_drain__rec(struct ckpt_ctx *ctx, uint64_t step, int create);
/* Is a drain of rec in progress? (ctx->mu held) */
int ckpt_drain__running(const struct ckpt_ctx *ctx, const struct ckpt_step_rec *rec);
/* drain_retention.c: retention and the trash */
/* Apply keep_local / keep_shared (ctx->mu held: a save cannot rename into a step meanwhile).
 * All of it runs under the lock: the listing of both job directories, the header, trailer and
 * index of each local copy, the MANIFEST of each step (small reads, mostly cached) and the
 * renames into the trash. What takes long, removing the retired files (tens of ms for a large
 * one, that a save must not wait for), happens later without the lock: the drain threads empty
 * the trash (drain_retention.c). */
void ckpt_drain__retention(struct ckpt_ctx *ctx);
/* Wait until the trash is empty (ctx->mu held): what retention removed is then gone. */
void ckpt_drain__wait_trash(struct ckpt_ctx *ctx);
/* Remove what retention retired (ctx->mu held; dropped while removing). One thread at a time, so
 * that ckpt_drain__wait_trash knows when all is gone. For drain threads and ckpt_drain__stop. */
void ckpt_drain__empty_trash(struct ckpt_ctx *ctx);

/* Superseded shards of stepdir (other saves than keep_id), just made unreachable by a commit:
 * retired once read_grace seconds have passed (at once when read_grace is 0). Takes ctx->mu. */
void ckpt_drain__defer_superseded(struct ckpt_ctx *ctx, const char *stepdir, uint64_t keep_id);
/* Free what is still deferred (ctx->mu not needed: no thread runs). Left on disk: the next
 * writer's open (rule S) or retention removes it once its grace is over. */
void ckpt_drain__free_deferred(struct ckpt_ctx *ctx);

/* commit.c: the writer lease (docs/CONCURRENCY.md, FORMAT.md) */
/* Take the writer lease of the job's shared directory: 1 taken (and its heartbeat started), 0
 * held by another live writer (err says who: host, pid, heartbeat age), or a CKPT_E* error.
 * Rank 0 only; at open, and by the commit point of a context that does not hold it. */
int ckpt_commit__lease_take(struct ckpt_ctx *ctx, struct ckpt_err *err);
/* Does this context hold the writer lease (as far as it knows)? */
int ckpt_commit__lease_held(const struct ckpt_ctx *ctx);
/* Stop the heartbeat and remove the lease file if it is still this context's; free it. */
void ckpt_commit__lease_release(struct ckpt_ctx *ctx);

/* commit.c */
/* The commit point, the one place a MANIFEST is written: encode m, check that shared_dir is still
 * the directory opened, write it durably (write, fsync, rename, fsync dir), then remove the shards
 * of other saves of the step. Single-process and MPI (rank 0) commits both end here. Any thread,
 * without ctx->mu. */
int ckpt_commit__point(struct ckpt_ctx *ctx, const struct ckpt_manifest *m, struct ckpt_err *err);
/* ckpt_commit_fn of a single-process context: a one-rank manifest through the commit point. */
int ckpt_commit__single(struct ckpt_ctx *ctx, const struct ckpt_drained *d, struct ckpt_err *err);

#endif
