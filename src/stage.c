/* SPDX-License-Identifier: MIT */
/* Snapshot saves: ckpt_save stalls for a copy into host memory, not for the disk.
 *
 * The pool is one anonymous mapping of stage_bytes, reserved at first use; its pages are touched
 * by the first saves and then reused, so a save's copy pays no page faults (a fresh 256 MiB costs
 * 65536 of them, more than the copy itself). Blocks are CKPT_ALIGN-aligned, first fit over a
 * sorted free list: a step takes one block per region, and buffers the caller holds
 * (ckpt_stage_alloc) are blocks too, so the budget covers both.
 *
 * The copy: the caller's thread and one helper per other online CPU (at most 7) take 8 MiB pieces
 * of the regions and memcpy them; the last piece of a region zeroes the padding up to CKPT_ALIGN.
 * The checksums are not computed during the copy: the region's XXH3 streams (it cannot be split
 * across threads), and on this project's 2-core machines it costs as much as the copy itself
 * (measured: copy and hash fused in 256 KiB pieces took 2.35x a plain memcpy of the step, the
 * target is 1.3x). The writer thread computes each region's XXH3 from the staged bytes, which are
 * the caller's bytes at the call and which nobody can change any more, as it submits them
 * (shard_local.c); every reader checks it. What this gives up: a corruption of the staging memory
 * between the copy and the write would be checksummed as data (the durable mode hashes the bounce
 * copy the same way, so it does not catch that either).
 *
 * The writer thread makes each staged step durable locally, in the order they were saved, with the
 * steps of a durable ckpt_save (shard_local.c: O_DIRECT straight from the staging memory,
 * fdatasync, rename, directory fsync), then frees its blocks and queues the drain. A crash before
 * that loses the staged step only: its temporary file is never taken for a step, and the steps
 * before it were durable already.
 *
 * Locking: the pool, the queue and the step records are under ctx->mu; the copy threads have
 * their own lock. Lock order: api_mu, then the MPI engine's, then ctx->mu. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commit_mpi.h"
#include "context.h"
#include "drain.h"
#include "retention.h"
#include "stage.h"
#include "step.h"

#define SPLIT_PIECE (8u << 20)  /* the pieces the copy threads take */
#define MAX_COPIERS 8

struct ext {
	size_t off, len;
};

enum { B_HELD = 1, B_CLAIMED = 2, B_STAGED = 3 };

struct blk {
	size_t off, len;
	int state;
};

struct sjob {
	uint64_t step, save_id, created_ns;
	size_t n;
	ckpt_region *regs;      /* data: staging blocks; names: copies */
	uint64_t *xxh3;
	unsigned char *hashed;
	struct sjob *next;
};

struct citem {
	const char *src;
	char *dst;
	size_t len;
	size_t pad;             /* zero bytes after dst + len (the region's last piece) */
};

struct ckpt_stage {
	char *base;
	size_t cap, used;
	struct ext *fr;
	size_t nfr, capfr;
	struct blk *blks;
	size_t nblks, capblks;
	pthread_cond_t room;    /* blocks were freed (with ctx->mu) */
	pthread_cond_t work;    /* the writer's queue changed (with ctx->mu) */
	struct sjob *qhead, *qtail;
	struct sjob *cur;       /* being written */
	int stopping;
	int writer_on;
	pthread_t writer;
	struct ckpt_writer *w;
	struct ckpt_ctx *ctx;
	int claimed;            /* ckpt_stage__claim: the next save stages claimed buffers */

	/* copy threads */
	pthread_mutex_t cmu;
	pthread_cond_t cgo, cdone;
	pthread_t copiers[MAX_COPIERS];
	unsigned ncopiers;
	uint64_t gen;
	int cstop;
	struct citem *items;
	size_t nitems, next, done;
};

static size_t align_up(size_t v)
{
	return (v + CKPT_ALIGN - 1) & ~(size_t)(CKPT_ALIGN - 1);
}

/* ---- the pool (ctx->mu held) ---- */

static int pool_alloc(struct ckpt_stage *st, size_t size, int state, void **out)
{
	size_t len = align_up(size ? size : 1);

	for (size_t i = 0; i < st->nfr; i++) {
		struct ext *e = &st->fr[i];

		if (e->len < len)
			continue;
		if (st->nblks == st->capblks) {
			size_t cap = st->capblks ? 2 * st->capblks : 64;
			struct blk *nb = realloc(st->blks, cap * sizeof(*nb));

			if (!nb)
				return CKPT_ENOMEM;
			st->blks = nb;
			st->capblks = cap;
		}
		st->blks[st->nblks++] = (struct blk){ e->off, len, state };
		*out = st->base + e->off;
		e->off += len;
		e->len -= len;
		if (!e->len) {
			memmove(e, e + 1, (st->nfr - i - 1) * sizeof(*e));
			st->nfr--;
		}
		st->used += len;
		return CKPT_OK;
	}
	return CKPT_ENOSPC;
}

static struct blk *pool_find(struct ckpt_stage *st, const void *p)
{
	if (!st || (const char *)p < st->base || (const char *)p >= st->base + st->cap)
		return NULL;
	for (size_t i = 0; i < st->nblks; i++)
		if (st->base + st->blks[i].off == (const char *)p)
			return &st->blks[i];
	return NULL;
}

/* Give block b back to the free list, merged with its neighbours. The free list only grows by at
 * most one entry and was sized for it when the block was made (see pool_reserve_ext). */
static void pool_release(struct ckpt_stage *st, struct blk *b)
{
	size_t off = b->off, len = b->len, i = 0;

	st->used -= len;
	*b = st->blks[--st->nblks];
	while (i < st->nfr && st->fr[i].off < off)
		i++;
	if (i > 0 && st->fr[i - 1].off + st->fr[i - 1].len == off) {
		st->fr[i - 1].len += len;
		if (i < st->nfr && off + len == st->fr[i].off) {
			st->fr[i - 1].len += st->fr[i].len;
			memmove(&st->fr[i], &st->fr[i + 1], (st->nfr - i - 1) * sizeof(*st->fr));
			st->nfr--;
		}
	} else if (i < st->nfr && off + len == st->fr[i].off) {
		st->fr[i].off = off;
		st->fr[i].len += len;
	} else {
		memmove(&st->fr[i + 1], &st->fr[i], (st->nfr - i) * sizeof(*st->fr));
		st->fr[i] = (struct ext){ off, len };
		st->nfr++;
	}
	pthread_cond_broadcast(&st->room);
}

/* Blocks split the free space into at most nblks + 1 extents: keep room for that many, so that a
 * release never needs memory. */
static int pool_reserve_ext(struct ckpt_stage *st, size_t more)
{
	size_t need = st->nblks + more + 1;

	if (need > st->capfr) {
		struct ext *nf = realloc(st->fr, 2 * need * sizeof(*nf));

		if (!nf)
			return CKPT_ENOMEM;
		st->fr = nf;
		st->capfr = 2 * need;
	}
	return CKPT_OK;
}

static void pool_release_ptr(struct ckpt_stage *st, const void *p)
{
	struct blk *b = pool_find(st, p);

	if (b)
		pool_release(st, b);
}

/* ---- the copy threads ---- */

static void copy_item(const struct citem *it)
{
	if (it->len)
		memcpy(it->dst, it->src, it->len);
	if (it->pad)
		memset(it->dst + it->len, 0, it->pad);
}

/* Take items until none is left; returns how many this thread did. */
static size_t copy_some(struct ckpt_stage *st)
{
	size_t did = 0, i;

	while ((i = __atomic_fetch_add(&st->next, 1, __ATOMIC_RELAXED)) < st->nitems) {
		copy_item(&st->items[i]);
		did++;
	}
	return did;
}

static void *copier_main(void *arg)
{
	struct ckpt_stage *st = arg;
	uint64_t seen = 0;

	/* normal priority: ckpt_save waits for the copies (they are the training loop's stall) */
	pthread_setname_np(pthread_self(), "ckpt-copy"); /* for top -H, ps -L, gdb */
	pthread_mutex_lock(&st->cmu);
	for (;;) {
		size_t did;

		while (st->gen == seen && !st->cstop)
			pthread_cond_wait(&st->cgo, &st->cmu);
		if (st->cstop)
			break;
		seen = st->gen;
		pthread_mutex_unlock(&st->cmu);
		did = copy_some(st);
		pthread_mutex_lock(&st->cmu);
		st->done += did;
		if (st->done == st->nitems)
			pthread_cond_broadcast(&st->cdone);
	}
	pthread_mutex_unlock(&st->cmu);
	return NULL;
}

/* Copy regs into job j's blocks with every thread, in pieces; the caller's thread works too.
 * No checksum here: the writer computes each region's XXH3 from the staged bytes (see the top of
 * this file for why). */
static int copy_step(struct ckpt_stage *st, struct sjob *j, const ckpt_region *regs,
		     struct ckpt_err *err)
{
	size_t nitems = 0, k = 0;
	struct citem *items;

	for (size_t i = 0; i < j->n; i++)
		nitems += regs[i].size ? (regs[i].size + SPLIT_PIECE - 1) / SPLIT_PIECE : 1;
	if (!(items = calloc(nitems ? nitems : 1, sizeof(*items))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory staging %zu regions", j->n);
	for (size_t i = 0; i < j->n; i++) {
		size_t sz = regs[i].size, pad = align_up(sz) - sz, off = 0;
		char *dst = (char *)j->regs[i].data;

		do {
			size_t len = sz - off < SPLIT_PIECE ? sz - off : SPLIT_PIECE;

			items[k++] = (struct citem){ (const char *)regs[i].data + off, dst + off, len,
						     off + len == sz ? pad : 0 };
			off += len;
		} while (off < sz);
		j->hashed[i] = 0;
	}
	pthread_mutex_lock(&st->cmu);
	st->items = items;
	st->nitems = k;
	st->next = 0;
	st->done = 0;
	st->gen++;
	pthread_cond_broadcast(&st->cgo);
	pthread_mutex_unlock(&st->cmu);
	k = copy_some(st);
	pthread_mutex_lock(&st->cmu);
	st->done += k;
	while (st->done < st->nitems)
		pthread_cond_wait(&st->cdone, &st->cmu);
	st->items = NULL;
	st->nitems = 0;
	pthread_mutex_unlock(&st->cmu);
	free(items);
	return CKPT_OK;
}

/* ---- the writer thread ---- */

static void job_free(struct sjob *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->n && j->regs; i++)
		free((char *)j->regs[i].name);
	free(j->regs);
	free(j->xxh3);
	free(j->hashed);
	free(j);
}

/* Give the job's blocks back (ctx->mu held). */
static void job_release(struct ckpt_stage *st, struct sjob *j)
{
	for (size_t i = 0; i < j->n; i++)
		if (j->regs[i].data)
			pool_release_ptr(st, j->regs[i].data);
}

/* The steps of a durable ckpt_save (context.c: ckpt_ctx__save_local), from staging memory. */
static int write_job(struct ckpt_ctx *ctx, struct ckpt_stage *st, struct sjob *j,
		     struct ckpt_err *err, int *published)
{
	struct ckpt_header h = { CKPT_FMT_VERSION, 0, j->step, j->save_id, ctx->rank, ctx->nranks,
				 (uint32_t)j->n, CKPT_ALIGN, j->created_ns };
	char dir[CKPT_PATH_MAX], base[64];
	int rc, new_dir;

	*published = 0;
	if ((rc = ckpt_store__step_dir(dir, sizeof(dir), ctx->local_job, j->step)) < 0)
		return ckpt_err__set(err, rc, "path too long: %s", ctx->local_job);
	ckpt_store__local_name(base, sizeof(base), ctx->rank);
	/* As in ckpt_ctx__save_local: a new step directory's entry is made durable by the fsync of
	 * the job directory after the shard is published. */
	new_dir = mkdir(dir, 0750) == 0;
	if (!new_dir && errno != EEXIST)
		rc = ckpt_store__mkdirs(dir, err);
	else
		rc = CKPT_OK;
	if (rc == CKPT_OK)
		rc = ckpt_store__check_step_dir(dir, err);
	if (rc == CKPT_OK)
		rc = ckpt_shard__write_staged(st->w, dir, base, &h, j->regs, j->n, j->xxh3, j->hashed,
					      ctx->cfg->fault_kill_at, err);
	if (rc == CKPT_OK && new_dir)
		rc = ckpt_store__fsync_dir(ctx->local_job, err);
	if (rc < 0 && !ctx->mpi) {
		struct ckpt_shard *s;

		/* only the last directory fsync failed: the save is in place and is drained */
		if (ckpt_step__open_local(&s, ctx->local_job, j->step, ctx->rank, NULL) == CKPT_OK) {
			*published = s->hdr.save_id == j->save_id;
			ckpt_shard__close(s);
		}
	}
	return rc;
}

static void *writer_main(void *arg)
{
	struct ckpt_stage *st = arg;
	struct ckpt_ctx *ctx = st->ctx;

	/* Background work like the drain's: it yields to training (drain_nice). When the pool is
	 * full a ckpt_save waits for it, and then training is not using the CPU anyway. */
	pthread_setname_np(pthread_self(), "ckpt-stage"); /* for top -H, ps -L, gdb */
	ckpt_drain__lower_priority(ctx->cfg->drain_nice);
	pthread_mutex_lock(&ctx->mu);
	for (;;) {
		struct ckpt_step_rec *rec;
		struct ckpt_err err = { "" };
		struct sjob *j;
		int rc, published;

		while (!st->qhead && !st->stopping)
			pthread_cond_wait(&st->work, &ctx->mu);
		if (!(j = st->qhead))
			break;
		st->qhead = j->next;
		if (!st->qhead)
			st->qtail = NULL;
		st->cur = j;
		pthread_mutex_unlock(&ctx->mu);
		rc = write_job(ctx, st, j, &err, &published);
		if (rc < 0 && !published && ctx->mpi)
			/* the other ranks staged and write theirs: vote against the step, as a
			 * failed drain does; the outcome settles its record and `pending` */
			ckpt_mpi__vote_failure(ctx, j->step, j->save_id, rc, err.msg);
		pthread_mutex_lock(&ctx->mu);
		/* durable locally (or lost): the staging memory is free for the next saves */
		job_release(st, j);
		rec = ckpt_retention__rec(ctx, j->step, 0);
		if (rc == CKPT_OK || published) {
			/* durable locally: drain it (a later save of the step, still staged, is
			 * drained after it lands; the drain reads the newest local copy) */
			if (rec->save_id == j->save_id)
				rec->local_rc = CKPT_OK;
			ctx->pending--; /* counted again by the drain queue */
			ckpt_drain__enqueue(ctx, rec);
		} else if (rec->save_id != j->save_id) {
			/* superseded by a later save of the step: that one decides the step */
			if (!ctx->mpi)
				ctx->pending--; /* with MPI: when the outcome of the vote arrives */
		} else {
			rec->local_rc = rc;
			ckpt_err__copy(&rec->err, &err);
			if (!ctx->mpi) {
				/* the staged save is lost; no local copy of it to retry */
				if (!rec->queued && !ckpt_drain__running(ctx, rec)) {
					rec->state = CKPT_STATE_FAILED;
					rec->rc = rc;
				}
				rec->save_id = 0;
				ctx->pending--;
			}
		}
		if (rc < 0)
			ckpt_config__log(ctx->cfg, 1, "step %llu: the staged save was lost: %s",
					 (unsigned long long)j->step, err.msg);
		st->cur = NULL;
		job_free(j);
		pthread_cond_broadcast(&ctx->cv);
	}
	pthread_mutex_unlock(&ctx->mu);
	return NULL;
}

/* ---- life ---- */

static int stage_get(struct ckpt_ctx *ctx, struct ckpt_err *err)
{
	struct ckpt_stage *st;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int rc;

	if (ctx->stage)
		return CKPT_OK;
	if (!ctx->cfg->stage_bytes)
		return ckpt_err__set(err, CKPT_EINVAL, "stage_bytes is 0: snapshot mode is off");
	if (!(st = calloc(1, sizeof(*st))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for the staging pool");
	st->ctx = ctx;
	st->cap = align_up(ctx->cfg->stage_bytes);
	/* Reserved, not touched: pages become resident as the saves first use them. */
	st->base = mmap(NULL, st->cap, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (st->base == MAP_FAILED) {
		rc = ckpt_err__errno(err, errno, "reserve stage_bytes=%zu of staging memory", st->cap);
		free(st);
		return rc == CKPT_EIO ? CKPT_ENOMEM : rc;
	}
#ifdef MADV_HUGEPAGE
	madvise(st->base, st->cap, MADV_HUGEPAGE); /* fewer faults and TLB misses; a hint */
#endif
	pthread_cond_init(&st->room, NULL);
	pthread_cond_init(&st->work, NULL);
	pthread_mutex_init(&st->cmu, NULL);
	pthread_cond_init(&st->cgo, NULL);
	pthread_cond_init(&st->cdone, NULL);
	ctx->stage = st; /* from here ckpt_stage__free undoes it all */
	rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory for the staging pool");
	if (!(st->fr = malloc(16 * sizeof(*st->fr))))
		goto fail;
	st->capfr = 16;
	st->fr[0] = (struct ext){ 0, st->cap };
	st->nfr = 1;
	if ((rc = ckpt_shard__writer_new(&st->w, ctx->cfg->io_backend, ctx->cfg->io_depth, err)) < 0)
		goto fail;
	if (pthread_create(&st->writer, NULL, writer_main, st)) {
		rc = ckpt_err__set(err, CKPT_ENOMEM, "cannot start the staging writer thread");
		goto fail;
	}
	st->writer_on = 1;
	/* The copy uses every core the training loop stalls on anyway. */
	for (long i = 1; i < ncpu && st->ncopiers < MAX_COPIERS - 1; i++) {
		if (pthread_create(&st->copiers[st->ncopiers], NULL, copier_main, st))
			break;
		st->ncopiers++;
	}
	return CKPT_OK;
fail:
	ckpt_stage__free(ctx); /* the next snapshot save tries again */
	return rc;
}

void ckpt_stage__stop(struct ckpt_ctx *ctx)
{
	struct ckpt_stage *st = ctx->stage;

	if (!st)
		return;
	if (st->writer_on) {
		pthread_mutex_lock(&ctx->mu);
		st->stopping = 1;
		pthread_cond_broadcast(&st->work);
		pthread_mutex_unlock(&ctx->mu);
		pthread_join(st->writer, NULL);
		st->writer_on = 0;
	}
	pthread_mutex_lock(&st->cmu);
	st->cstop = 1;
	pthread_cond_broadcast(&st->cgo);
	pthread_mutex_unlock(&st->cmu);
	for (unsigned i = 0; i < st->ncopiers; i++)
		pthread_join(st->copiers[i], NULL);
	st->ncopiers = 0;
}

void ckpt_stage__free(struct ckpt_ctx *ctx)
{
	struct ckpt_stage *st = ctx ? ctx->stage : NULL;

	if (!st)
		return;
	ckpt_stage__stop(ctx);
	while (st->qhead) { /* never written (a failed start): lost like a crash would lose them */
		struct sjob *j = st->qhead;

		st->qhead = j->next;
		job_free(j);
	}
	ckpt_shard__writer_free(st->w);
	munmap(st->base, st->cap);
	pthread_cond_destroy(&st->room);
	pthread_cond_destroy(&st->work);
	pthread_mutex_destroy(&st->cmu);
	pthread_cond_destroy(&st->cgo);
	pthread_cond_destroy(&st->cdone);
	free(st->fr);
	free(st->blks);
	free(st);
	ctx->stage = NULL;
}

/* ---- the calls ---- */

int ckpt_stage__staged(const struct ckpt_ctx *ctx, uint64_t step)
{
	const struct ckpt_stage *st = ctx->stage;

	if (!st)
		return 0;
	if (st->cur && (step == CKPT_STEP_ALL || st->cur->step == step))
		return 1;
	for (const struct sjob *j = st->qhead; j; j = j->next)
		if (step == CKPT_STEP_ALL || j->step == step)
			return 1;
	return 0;
}

void ckpt_stage__wait(struct ckpt_ctx *ctx, uint64_t step)
{
	while (ckpt_stage__staged(ctx, step))
		pthread_cond_wait(&ctx->cv, &ctx->mu);
}

/* Blocks for every region (ctx->mu held), all or none. */
static int take_blocks(struct ckpt_stage *st, struct sjob *j, const ckpt_region *regs)
{
	int rc = pool_reserve_ext(st, j->n);

	for (size_t i = 0; i < j->n && rc == CKPT_OK; i++) {
		void *p;

		if ((rc = pool_alloc(st, regs[i].size, B_STAGED, &p)) == CKPT_OK)
			j->regs[i].data = p;
	}
	if (rc < 0)
		for (size_t i = 0; i < j->n; i++)
			if (j->regs[i].data) {
				pool_release_ptr(st, j->regs[i].data);
				j->regs[i].data = NULL;
			}
	return rc;
}

int ckpt_stage__save(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id,
		     const ckpt_region *regs, size_t n)
{
	struct ckpt_step_rec *rec;
	struct ckpt_stage *st;
	struct sjob *j;
	size_t need = 0;
	int rc, claimed;

	if ((rc = stage_get(ctx, &ctx->err)) < 0)
		return rc;
	st = ctx->stage;
	claimed = st->claimed;
	st->claimed = 0;
	for (size_t i = 0; i < n; i++)
		need += align_up(regs[i].size ? regs[i].size : 1);
	if (!claimed && need > st->cap)
		goto direct;
	rc = ckpt_err__set(&ctx->err, CKPT_ENOMEM, "out of memory staging step %llu",
			   (unsigned long long)step);
	if (!(j = calloc(1, sizeof(*j))))
		return rc;
	j->step = step;
	j->save_id = save_id;
	j->created_ns = ckpt_store__now_ns();
	j->n = n;
	if (!(j->regs = calloc(n ? n : 1, sizeof(*j->regs))) ||
	    !(j->xxh3 = calloc(n ? n : 1, sizeof(*j->xxh3))) ||
	    !(j->hashed = calloc(n ? n : 1, 1)))
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if (!(j->regs[i].name = strdup(regs[i].name)))
			goto fail;
		j->regs[i].size = regs[i].size;
	}

	pthread_mutex_lock(&ctx->mu);
	/* Backpressure as in ckpt_ctx__save_local: staged steps count in `pending`. */
	while (ctx->pending >= ctx->cfg->max_pending)
		ckpt_ctx__wait_progress(ctx);
	if (claimed) {
		for (size_t i = 0; i < n; i++) {
			struct blk *b = pool_find(st, regs[i].data);

			if (!b)
				continue; /* an empty region without a buffer */
			b->state = B_STAGED;
			j->regs[i].data = regs[i].data;
			/* the padding is ours now: zero it (the file's bytes there are zeros) */
			memset((char *)regs[i].data + regs[i].size, 0,
			       align_up(regs[i].size) - regs[i].size);
		}
	} else {
		/* Room in the pool: wait while staged steps will free some; when none is left to
		 * do so, the step cannot fit now (the caller holds the rest): write it directly. */
		while ((rc = take_blocks(st, j, regs)) == CKPT_ENOSPC && (st->qhead || st->cur))
			pthread_cond_wait(&st->room, &ctx->mu);
		if (rc < 0) {
			pthread_mutex_unlock(&ctx->mu);
			job_free(j);
			if (rc == CKPT_ENOSPC)
				goto direct;
			return ckpt_err__set(&ctx->err, rc, "out of memory staging step %llu",
					     (unsigned long long)step);
		}
	}
	if (!(rec = ckpt_retention__rec(ctx, step, 1))) {
		job_release(st, j);
		pthread_mutex_unlock(&ctx->mu);
		job_free(j);
		return ckpt_err__set(&ctx->err, CKPT_ENOMEM, "out of memory for a step record");
	}
	/* LOCAL keeps retention away from the step; the newest save's id decides its outcome. */
	rec->state = CKPT_STATE_LOCAL;
	rec->save_id = save_id;
	rec->local_rc = CKPT_OK;
	ctx->pending++;
	pthread_mutex_unlock(&ctx->mu);

	if (!claimed && (rc = copy_step(st, j, regs, &ctx->err)) < 0) {
		pthread_mutex_lock(&ctx->mu);
		job_release(st, j);
		rec->local_rc = rc;
		rec->save_id = 0;
		if (!rec->queued && !ckpt_drain__running(ctx, rec))
			rec->state = CKPT_STATE_NONE;
		ctx->pending--;
		pthread_cond_broadcast(&ctx->cv);
		pthread_mutex_unlock(&ctx->mu);
		job_free(j);
		return rc;
	}
	ckpt_config__fault(ctx->cfg->fault_kill_at, "stage.copied");

	pthread_mutex_lock(&ctx->mu);
	if (st->qtail)
		st->qtail->next = j;
	else
		st->qhead = j;
	st->qtail = j;
	pthread_cond_broadcast(&st->work);
	pthread_mutex_unlock(&ctx->mu);
	return CKPT_OK;

fail:
	job_free(j);
	return rc;
direct:
	/* The step is written by the api thread: the staged steps before it go first, so that the
	 * newest save of a step is the one that stays. */
	pthread_mutex_lock(&ctx->mu);
	ckpt_stage__wait(ctx, CKPT_STEP_ALL);
	pthread_mutex_unlock(&ctx->mu);
	ckpt_config__log(ctx->cfg, 2, "step %llu (%zu bytes) does not fit stage_bytes=%zu: written "
			 "directly", (unsigned long long)step, need, st->cap);
	return CKPT_STAGE_DIRECT;
}

int ckpt_stage__alloc(struct ckpt_ctx *ctx, size_t size, void **out)
{
	struct ckpt_stage *st;
	int rc;

	if ((rc = stage_get(ctx, &ctx->err)) < 0)
		return rc;
	st = ctx->stage;
	if (!size || align_up(size) > st->cap)
		return ckpt_err__set(&ctx->err, size ? CKPT_ENOMEM : CKPT_EINVAL,
				     "ckpt_stage_alloc: %zu bytes (the pool holds stage_bytes=%zu)",
				     size, st->cap);
	pthread_mutex_lock(&ctx->mu);
	while ((rc = pool_reserve_ext(st, 1)) == CKPT_OK &&
	       (rc = pool_alloc(st, size, B_HELD, out)) == CKPT_ENOSPC && (st->qhead || st->cur))
		pthread_cond_wait(&st->room, &ctx->mu);
	pthread_mutex_unlock(&ctx->mu);
	if (rc == CKPT_ENOSPC)
		return ckpt_err__set(&ctx->err, CKPT_ENOMEM,
				     "ckpt_stage_alloc: no room for %zu bytes: the caller holds %zu of "
				     "stage_bytes=%zu", size, st->used, st->cap);
	if (rc < 0)
		return ckpt_err__set(&ctx->err, rc, "out of memory in ckpt_stage_alloc");
	return CKPT_OK;
}

int ckpt_stage__free_buf(struct ckpt_ctx *ctx, void *buf)
{
	struct blk *b;
	int rc = CKPT_OK;

	if (!buf)
		return CKPT_OK;
	pthread_mutex_lock(&ctx->mu);
	if ((b = pool_find(ctx->stage, buf)) && b->state == B_HELD)
		pool_release(ctx->stage, b);
	else
		rc = ckpt_err__set(&ctx->err, CKPT_EINVAL,
				   "ckpt_stage_free: %p is not a buffer from ckpt_stage_alloc", buf);
	pthread_mutex_unlock(&ctx->mu);
	return rc;
}

int ckpt_stage__claim(struct ckpt_ctx *ctx, const ckpt_region *regs, size_t n)
{
	struct ckpt_stage *st = ctx->stage;
	int rc = CKPT_OK;

	pthread_mutex_lock(&ctx->mu);
	/* every buffer the caller holds is ours from here, even when the call fails */
	for (size_t i = 0; i < n && st; i++) {
		struct blk *b = pool_find(st, regs[i].data);

		if (!b && !regs[i].data && !regs[i].size)
			continue; /* an empty region needs no buffer */
		if (!b) {
			if (rc == CKPT_OK)
				rc = ckpt_err__set(&ctx->err, CKPT_EINVAL, "ckpt_save_staged: region "
						   "'%s' is not a buffer from ckpt_stage_alloc",
						   regs[i].name ? regs[i].name : "?");
		} else if (b->state != B_HELD) {
			if (rc == CKPT_OK)
				rc = ckpt_err__set(&ctx->err, CKPT_EINVAL, "ckpt_save_staged: region "
						   "'%s' names a buffer twice or one already handed "
						   "over", regs[i].name ? regs[i].name : "?");
		} else {
			b->state = B_CLAIMED;
			if (regs[i].size > b->len && rc == CKPT_OK)
				rc = ckpt_err__set(&ctx->err, CKPT_EINVAL, "ckpt_save_staged: region "
						   "'%s' is %zu bytes, its buffer %zu",
						   regs[i].name ? regs[i].name : "?", regs[i].size,
						   b->len);
		}
	}
	if (!st)
		rc = ckpt_err__set(&ctx->err, CKPT_EINVAL,
				   "ckpt_save_staged: no buffer was allocated (ckpt_stage_alloc)");
	if (st)
		st->claimed = rc == CKPT_OK;
	pthread_mutex_unlock(&ctx->mu);
	return rc;
}

void ckpt_stage__unclaim(struct ckpt_ctx *ctx)
{
	struct ckpt_stage *st = ctx->stage;

	if (!st)
		return;
	pthread_mutex_lock(&ctx->mu);
	st->claimed = 0;
	for (size_t i = 0; i < st->nblks;)
		if (st->blks[i].state == B_CLAIMED)
			pool_release(st, &st->blks[i]); /* moves the last block here */
		else
			i++;
	pthread_mutex_unlock(&ctx->mu);
}
