/* SPDX-License-Identifier: MIT */
/* What the two files of the MPI commit protocol share (private to them, never included elsewhere):
 * the engine's state (struct ckpt_mpi), the messages between ranks, and the engine's helpers that
 * the agreement rounds use. commit_mpi.h stays the interface for the rest of the library.
 *
 * One way between the two files: commit_mpi_agree.c (the bounded agreement rounds of the
 * collective calls, ckpt_mpi__agree, and ckpt_mpi__close, whose last step is such a round) uses
 * commit_mpi.c (the vote engine: votes, outcomes, the progress engine that moves every message,
 * and the mailboxes where it files the rounds' parts and results); the engine calls nothing of
 * commit_mpi_agree.c. */
#ifndef CKPT_COMMIT_MPI_PRIV_H
#define CKPT_COMMIT_MPI_PRIV_H

#include <mpi.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "commit_mpi.h"
#include "internal.h"

#define TAG_VOTE 7401
#define TAG_OUTCOME 7402
#define TAG_COLL 7403     /* a rank's part of a collective round, to rank 0 */
#define TAG_COLL_RES 7404 /* rank 0's result of a round, to each rank */
#define MSG_LEN 256
#define CALL_LEN 24
#define NDEAD 64          /* (step, save id) pairs rank 0 remembers as not to be committed */

struct vote {
	uint64_t step, save_id, created_ns;
	uint64_t file_size, index_xxh3, raw_bytes;
	int32_t rc;
	uint32_t rank, nregions;
	uint32_t awaits; /* the voting rank waits for the outcome (its step is pending) */
	uint32_t skipped; /* the rank skipped the step (superseded, not drained): end the round */
	char msg[MSG_LEN];
};

struct outcome {
	uint64_t step, save_id;
	int32_t rc;
	uint32_t failed_rank;
	uint32_t skipped; /* the ranks skipped the step: not a failure */
	char msg[MSG_LEN];
};

/* Bounded collective rounds (ckpt_mpi__agree): point-to-point messages through rank 0 rather
 * than MPI collectives, which can be neither cancelled nor left pending safely (a late rank's
 * next collective would match the abandoned one). Rounds are numbered per context; every rank
 * makes the same collective calls in the same order, so round n is the same call everywhere. */
struct coll {
	uint64_t seq;
	uint64_t key; /* with call, names the call (ckpt_save: its step) */
	uint64_t v[CKPT_MPI_NV];
	int32_t rc;
	uint32_t rank;
	uint32_t withdraw; /* the rank gave up waiting (its deadline passed): fail the round */
	char call[CALL_LEN];
};

struct coll_res {
	uint64_t seq;
	uint64_t key;
	uint64_t v[CKPT_MPI_NV];
	int32_t rc;     /* CKPT_OK: every rank took part; else why the round failed */
	int32_t minrc;  /* the lowest rc contributed, and the first rank that gave it */
	uint32_t who;
	uint32_t missed; /* the recipient took no part (late, or in another call): resynchronizes */
	char call[CALL_LEN];
	char msg[MSG_LEN];
};

struct sendbuf {
	MPI_Request req;
	union {
		struct vote v;
		struct outcome o;
		struct coll c;
		struct coll_res r;
	} u;
	struct sendbuf *next;
};

/* Rank 0: the parts received for one round. */
struct cround {
	uint64_t seq;
	struct coll *part; /* [size] */
	uint8_t *have;     /* [size] parts received, then [size] those received at the first
			    * withdrawal: who the withdrawing rank waited for */
	uint32_t n, withdrawn;
	struct cround *next;
};

/* Every rank but 0: results received from rank 0. */
struct cres {
	struct coll_res r;
	struct cres *next;
};

struct dead {
	uint64_t step, save_id;
	int32_t rc;
	uint32_t skipped;
	char msg[MSG_LEN];
};

struct round;
struct await;

struct ckpt_mpi {
	MPI_Comm comm;
	int rank, size, thread_level;
	pthread_mutex_t mu;      /* serializes the engine and guards the lists below */
	struct vote *outbox;
	size_t nout, capout;
	struct round *rounds;    /* rank 0 */
	struct sendbuf *sends;
	struct await *awaits;
	pthread_t thread;
	int thread_on, thread_stop;
	int broken;
	uint64_t seq;            /* the next collective round of this rank */
	uint64_t decided;        /* rank 0: rounds below it are decided (late parts are dropped) */
	struct cround *crounds;  /* rank 0 */
	struct cres *cresults;   /* other ranks */
	struct dead dead[NDEAD]; /* rank 0: saves that must not commit (skipped, failed ckpt_save) */
	unsigned ndead;
};

static inline struct ckpt_mpi *M(struct ckpt_ctx *ctx)
{
	return ctx->mpi;
}

/* Send msg (len bytes, copied) to rank dest without blocking; the engine frees the copy when the
 * send completes. Out of memory or an MPI error: nothing is sent, and the receiver's deadline
 * reports it. mp->mu held. */
void ckpt_mpi__send(struct ckpt_mpi *mp, int dest, int tag, const void *msg, size_t len);
/* Rank 0, mp->mu held: the parts of round seq received so far (created empty if new; NULL when
 * out of memory). The engine files each part it receives here (TAG_COLL); the rounds take their
 * own part and decide. */
struct cround *ckpt_mpi__cround_get(struct ckpt_mpi *mp, uint64_t seq);
/* Rank 0, mp->mu held: unlink and free round r. */
void ckpt_mpi__cround_drop(struct ckpt_mpi *mp, struct cround *r);
/* ckpt_mpi__close, first half: stop the engine's thread (this thread drives the engine from here
 * on) and make one pass, so that every rank finishes its exchanges. */
void ckpt_mpi__stop(struct ckpt_ctx *ctx);
/* ckpt_mpi__close, last half: one more pass, cancel the sends still pending (to a rank that is
 * gone), free the engine and its communicator; ctx->mpi becomes NULL. */
void ckpt_mpi__end(struct ckpt_ctx *ctx);

#endif
