/* SPDX-License-Identifier: MIT */
/* The context object shared by the modules from retention up (private, never installed): the
 * "ctx" module of the layering, a header only, just below retention.
 *
 * The layering of the library, top down (docs/ARCHITECTURE.md is the same map, for readers). A
 * module uses only modules below it, and its #includes show that (tests/test_layering.sh); no two
 * modules call each other, and nothing calls back up through a function pointer.
 *   api       api.c: public ckpt_* (check arguments, api_mu, call inward); api_mpi.c: ckpt_open_mpi
 *             and the collective save, latest and recovery
 *   context   context.c: open/shutdown, local save and backpressure, step listings; stage.c:
 *             snapshot saves (staging pool, copy threads, the background local writer)
 *   drain     drain.c (drain.h): threads, queue, one job at a time; it ends a job by calling the
 *             commit layer (ckpt_commit__drained, ckpt_commit__vote_failed) and retention, and
 *             after a shutdown with stuck threads its last thread frees what the context left
 *   commit    commit.c (commit.h): the writer lease, the commit point (the one function that
 *             writes a MANIFEST), the single-process commit and the drain's entry points, which
 *             dispatch on ctx->with_mpi; commit_mpi.c (commit_mpi.h): the MPI vote engine;
 *             commit_mpi_agree.c: the bounded agreement rounds of the collective calls and the
 *             closing round, above the engine (commit_mpi_priv.h, the state both share; the
 *             engine calls nothing of it)
 *   retention retention.c (retention.h): the step records (ckpt_retention__rec), keep_local,
 *             keep_shared, read_grace and the trash
 *   ctx       this header: struct ckpt_ctx, the step record, what a drain hands to the commit
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
 *   config    config.c: keys, defaults, the only getenv(); config_log.c; config_fault.c;
 *             config_hint.c: the per-region width hints of ckpt_region_hint
 *   error     error.c
 * Direct uses below the drain (each also uses error): config, fmt: none; io: config; codec: fmt;
 * store: io; storage: config; shard: codec, fmt, io, store, config; step: shard, store, fmt.
 * Above: retention uses step and the modules below it; commit uses retention and below; the
 * drain uses commit, retention and below. The layering is one-way:
 * what a lower module needs to know of a higher one is a field of the context (the record's
 * `draining`, kept by the drain; ctx->with_mpi). Without MPI, api.h and commit_mpi.h give static
 * inline stand-ins that are never reached (ctx->mpi is always NULL). */
#ifndef CKPT_INTERNAL_H
#define CKPT_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "ckpt.h"
#include "codec.h"
#include "config.h"
#include "config_hint.h"
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
	int draining;           /* the drain's job in progress is this step (drain.c sets it) */
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

/* What the commit layer returns when the outcome arrives later (MPI): the step stays LOCAL and
 * pending until the commit protocol settles it. Never returned to users. */
#define CKPT_COMMIT_PENDING 1

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
	void *mpi;                      /* struct ckpt_mpi, when opened with MPI (NULL after close) */
	int with_mpi;                   /* opened with MPI: how a drain commits (commit.c), constant */
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
	/* ckpt_open's work on the shared tier (issue 13), done by a drain thread while ckpt_open
	 * waits for it until open_deadline_ns (monotonic): 1 to do, 2 in progress, 0 done. It
	 * counts as one in `pending` until done. */
	int open_work;
	uint64_t open_deadline_ns;
	int stopping;                   /* finish the queue, then exit */
	int abort;                      /* exit now: abandon the job in progress */
	pthread_t *threads;
	unsigned nthreads;
	struct worker *drain_workers;
	char **trash;                   /* retired copies (.tmp.* names) that a drain thread removes */
	size_t ntrash, captrash;
	int emptying;                   /* a drain thread is removing a batch taken from trash */
	struct ckpt_stage *stage;       /* snapshot mode (stage.c); NULL until its first use */
	struct ckpt_hints *hints;       /* ckpt_region_hint's widths (config_hint.c); the drain
					 * reads them when a job starts (drain.c: job_setup) */
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
	 * frees what is left of the context (ckpt_drain__release). */
	unsigned alive;                 /* drain threads not yet returned */
	int detached;
	struct ckpt_deferred *deferred; /* what waits read_grace before retention retires it */
	size_t ndeferred, capdeferred;

	struct ckpt_lease *lease;       /* rank 0: the writer lease (commit.c); NULL elsewhere */
};

#endif
