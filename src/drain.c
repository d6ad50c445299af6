/* SPDX-License-Identifier: MIT */
/* The drain pipeline: the threads and the queue that take each saved step from the local tier to
 * the shared tier, then hand it to the commit layer (commit.c) and to retention (retention.c).
 * Both are below the drain: it calls them, they never call it.
 *
 * One job (a step's local shard) is drained at a time by all drain threads together: each thread
 * claims the next chunk of the plan, reads and encodes it on its own (codec.c: the chunk
 * transform chosen from the data, then zstd), and writes it at once wherever the file ends (the
 * shard writer, shard_shared.c): no thread waits for another's chunk to be written first. Each
 * region's raw bytes must still be checked against its checksum in order: a thread whose chunk is
 * next does that, then the chunks parked by faster threads (a bounded window of raw buffers); a
 * thread whose chunk is not next parks it and goes on with a spare buffer. The thread that leaves
 * the last chunk finishes the job: the writer's index, trailer, fsync and rename, then the
 * commit. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "commit.h"
#include "drain.h"
#include "internal.h"
#include "retention.h"
#include "step.h"

struct drain_job {
	struct ckpt_step_rec *rec;
	struct ckpt_shard *src;        /* the local shard */
	struct ckpt_zwriter *out;      /* the compressed shard being written */
	uint64_t step, save_id;
	uint32_t next_claim;           /* pieces of out->plan */
	uint32_t nhashed;              /* pieces written and checked (ckpt_shard__zhash), in order */
	int hashing;                   /* a thread is checking pieces (only one at a time) */
	/* The reorder window of raw buffers: pieces written but not yet checked wait in `parked`
	 * (nparked of them); the buffers the job owns and no thread holds wait in `spare`. The job
	 * allocates at most `window` buffers: a thread that would need more waits. Both arrays hold
	 * window + drain_threads entries. */
	struct { uint32_t k; uint8_t *buf; } *parked;
	uint8_t **spare;
	unsigned nparked, nspare, nalloc, window;
	unsigned refs;
	uint8_t *width;                /* per region: the element width hint of its chunks */
	int failed;
	int finishing;
	struct ckpt_err err;
};

struct worker {
	struct ckpt_ctx *ctx;
	struct ckpt_codec *codec;
	uint8_t *raw, *out;
	size_t out_cap;
	int ready;             /* named and at its priority: ckpt_drain__start waits for this */
};

/* Monotonic seconds: stall detection must not jump with the wall clock. */
static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The drain got an answer from the shared tier (ctx->mu held). After a stall that the save path
 * warned of, say once that the volume answers again. */
static void progress(struct ckpt_ctx *ctx)
{
	uint64_t t = mono_ns();

	if (ctx->stall_warned_ns) {
		ckpt_config__log(ctx->cfg, 1, "shared_dir %s answers again, after %.0f s without "
				 "progress; the drain catches up with the newest step",
				 ctx->shared_root, (double)(t - ctx->progress_ns) / 1e9);
		ctx->stall_warned_ns = 0;
	}
	ctx->progress_ns = t;
}

static void job_free(struct drain_job *j)
{
	if (!j)
		return;
	ckpt_shard__zclose(j->out); /* removes the output unless it was published */
	ckpt_shard__close(j->src);
	for (unsigned i = 0; i < j->nparked; i++)
		free(j->parked[i].buf);
	for (unsigned i = 0; i < j->nspare; i++)
		free(j->spare[i]);
	free(j->parked);
	free(j->spare);
	free(j->width);
	free(j);
}

/* Start reading piece k of the local shard into the page cache, without waiting for it. */
static void prefetch(const struct drain_job *j, uint32_t k)
{
	posix_fadvise(j->src->fd, (off_t)j->out->plan[k].src_off, (off_t)j->out->plan[k].raw,
		      POSIX_FADV_WILLNEED);
}

/* Open the local shard and the output. Runs without ctx->mu. */
static int job_setup(struct ckpt_ctx *ctx, struct ckpt_step_rec *rec, struct drain_job **out,
		     struct ckpt_err *err)
{
	struct drain_job *j;
	char stepdir[CKPT_PATH_MAX], final[64];
	int rc;

	*out = NULL;
	if (!(j = calloc(1, sizeof(*j))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for a drain job");
	j->rec = rec;
	j->step = rec->step;
	if ((rc = ckpt_step__open_local(&j->src, ctx->local_job, rec->step, ctx->rank, err)) < 0)
		goto fail;
	/* The local file holds the newest save of this step (a later save renamed over it). */
	j->save_id = j->src->hdr.save_id;
	posix_fadvise(j->src->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	if ((rc = ckpt_store__step_dir(stepdir, sizeof(stepdir), ctx->shared_job, rec->step)) < 0 ||
	    (rc = ckpt_store__same_dir(ctx->shared_root, ctx->shared_dev, ctx->shared_ino,
				       err)) < 0 ||
	    (rc = ckpt_store__mkdirs(stepdir, err)) < 0 ||
	    (rc = ckpt_store__check_step_dir(stepdir, err)) < 0)
		goto fail;
	ckpt_store__shared_name(final, sizeof(final), ctx->rank, j->save_id);
	if ((rc = ckpt_shard__zopen(&j->out, j->src, ctx->cfg->chunk_size,
				    ctx->cfg->chunk_transform ? CKPT_TRANSFORM_CHUNKS :
				    CKPT_TRANSFORM_NONE, stepdir, final, err)) < 0)
		goto fail;
	/* Each region's width hint, read once for the whole job (so that a ckpt_region_hint call
	 * meanwhile cannot change a region's width between its chunks): ckpt_region_hint's, else
	 * the elem_width key (0: detected per chunk). */
	if (!(j->width = calloc(j->src->idx.nregions + 1, 1))) {
		rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory for a drain job");
		goto fail;
	}
	pthread_mutex_lock(&ctx->mu);
	for (uint32_t r = 0; r < j->src->idx.nregions; r++) {
		const struct ckpt_region_meta *m = &j->src->idx.regions[r];
		unsigned w = ckpt_config__hint_get(ctx->hints, m->name, m->name_len);

		j->width[r] = (uint8_t)(w ? w : ctx->cfg->elem_width);
	}
	pthread_mutex_unlock(&ctx->mu);
	/* As many spare raw buffers as threads, within 64 MiB (at least one). */
	j->window = ctx->cfg->drain_threads;
	if ((uint64_t)j->window * ctx->cfg->chunk_size > (64u << 20))
		j->window = (unsigned)((64u << 20) / ctx->cfg->chunk_size);
	if (j->window < 1)
		j->window = 1;
	/* The job holds at most the buffers it allocated plus one per thread that parked its own
	 * and waits for a spare (the thread then takes one of them back). */
	if (!(j->parked = calloc(j->window + ctx->cfg->drain_threads, sizeof(*j->parked))) ||
	    !(j->spare = calloc(j->window + ctx->cfg->drain_threads, sizeof(*j->spare)))) {
		rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory for a drain job");
		goto fail;
	}
	/* The local copy was written with O_DIRECT: none of it is cached. Ask for the first chunk
	 * of every drain thread now; process_chunk asks for the following ones. */
	for (uint32_t k = 0; k < j->out->nplan && k < ctx->cfg->drain_threads; k++)
		prefetch(j, k);
	*out = j;
	return CKPT_OK;
fail:
	job_free(j);
	return rc;
}

static void job_fail(struct ckpt_ctx *ctx, struct drain_job *j, int rc, const struct ckpt_err *e)
{
	pthread_mutex_lock(&ctx->mu);
	if (!j->failed) {
		j->failed = rc;
		ckpt_err__copy(&j->err, e);
	}
	pthread_cond_broadcast(&ctx->cv);
	pthread_mutex_unlock(&ctx->mu);
}

/* Check the raw bytes of piece i (in buf, which the job now owns unless it is w->raw) and then
 * those of every parked piece that follows, in plan order. Called with ctx->mu held, by the one
 * thread that set j->hashing; drops the lock while hashing. CKPT_OK or the first failure. */
static int check_in_order(struct worker *w, struct drain_job *j, uint32_t i, uint8_t *buf,
			  struct ckpt_err *err)
{
	struct ckpt_ctx *ctx = w->ctx;
	int rc = CKPT_OK;

	for (;;) {
		pthread_mutex_unlock(&ctx->mu);
		rc = ckpt_shard__zhash(j->out, buf, err);
		pthread_mutex_lock(&ctx->mu);
		if (buf != w->raw)
			j->spare[j->nspare++] = buf; /* a parked buffer is free again */
		if (rc < 0 || j->failed)
			break;
		j->nhashed++;
		pthread_cond_broadcast(&ctx->cv);
		i++;
		buf = NULL;
		for (unsigned q = 0; q < j->nparked; q++)
			if (j->parked[q].k == i) {
				buf = j->parked[q].buf;
				j->parked[q] = j->parked[--j->nparked];
				break;
			}
		if (!buf)
			break;
	}
	return rc;
}

static void process_chunk(struct worker *w, struct drain_job *j, uint32_t i)
{
	struct ckpt_ctx *ctx = w->ctx;
	const struct ckpt_zpiece *p = &j->out->plan[i];
	struct ckpt_err err = { "" };
	struct ckpt_chunk ch;
	int rc;

	/* Threads claim chunks in turn, so this thread's next one is most likely i + threads:
	 * have the kernel read it while we compress this one, so that the pread below does not
	 * leave a core idle waiting for the device (bench/ckpt_bench, 256 MiB, with the writeback
	 * in ckpt_shard__zwrite: drain/zstd CLI 0.82-0.85x -> 0.99-1.10x, 2 threads on 2 cores). */
	if (i + ctx->cfg->drain_threads < j->out->nplan)
		prefetch(j, i + ctx->cfg->drain_threads);
	/* (a thread that parked its buffer while the job failed may have none left) */
	if (!w->raw && !(w->raw = malloc((size_t)ctx->cfg->chunk_size))) {
		rc = ckpt_err__set(&err, CKPT_ENOMEM, "out of memory for a drain buffer");
		goto fail;
	}
	ckpt_codec__set_transform(w->codec, ctx->cfg->chunk_transform, j->width[p->region]);
	if ((rc = ckpt_io__pread_full(j->src->fd, w->raw, p->raw, p->src_off, &err,
				      j->src->path)) < 0 ||
	    (rc = ckpt_codec__encode_chunk(w->codec, w->out, w->out_cap, w->raw, p->raw, &ch,
					   &err)) < 0 ||
	    /* written at once, wherever the file ends: no waiting for the chunks before it */
	    (rc = ckpt_shard__zwrite(j->out, i, &ch, w->out, &err)) < 0)
		goto fail;
	if (i + 1 == j->out->nplan / 2)
		ckpt_config__fault(ctx->cfg->fault_kill_at, "drain.midway");

	pthread_mutex_lock(&ctx->mu);
	if (j->failed || ctx->abort) {
		pthread_mutex_unlock(&ctx->mu);
		return; /* someone else recorded why */
	}
	progress(ctx); /* a chunk reached the shared tier: the volume answers */
	if (j->nhashed == i && !j->hashing) {
		/* Our piece is the next to check: check it, and the parked ones behind it. */
		j->hashing = 1;
		rc = check_in_order(w, j, i, w->raw, &err);
		j->hashing = 0;
		pthread_mutex_unlock(&ctx->mu);
		if (rc < 0)
			goto fail;
		return;
	}
	/* Not our turn: park the raw bytes for the thread that checks them, and take a spare
	 * buffer for our next chunk (a new one while the window allows, else wait for one). */
	j->parked[j->nparked].k = i;
	j->parked[j->nparked++].buf = w->raw;
	w->raw = NULL;
	while (!j->nspare && j->nalloc >= j->window && !j->failed && !ctx->abort)
		pthread_cond_wait(&ctx->cv, &ctx->mu);
	if (j->nspare) {
		w->raw = j->spare[--j->nspare];
	} else if (j->nalloc < j->window) {
		j->nalloc++; /* the job owns it (job_free) once this thread parks it */
		pthread_mutex_unlock(&ctx->mu);
		w->raw = malloc((size_t)ctx->cfg->chunk_size); /* NULL: the next chunk says so */
		return;
	}
	pthread_mutex_unlock(&ctx->mu);
	return;
fail:
	job_fail(ctx, j, rc, &err);
}

/* Index, trailer, fsync, rename (the writer), then the commit. Runs without ctx->mu. */
static int job_finish(struct ckpt_ctx *ctx, struct drain_job *j, struct ckpt_err *err)
{
	struct ckpt_drained d;
	int rc;

	if ((rc = ckpt_shard__zfinish(j->out, ctx->cfg->fault_kill_at, &d.shard, err)) < 0)
		return rc;
	/* ckpt_close gave up on this drain (it was stuck on the volume) and the next open drains
	 * the step again: commit nothing behind its back. */
	pthread_mutex_lock(&ctx->mu);
	rc = ctx->abort;
	pthread_mutex_unlock(&ctx->mu);
	if (rc)
		return ckpt_err__set(err, CKPT_ETIMEDOUT, "drain of step %llu abandoned by ckpt_close",
				     (unsigned long long)j->step);
	d.step = j->step;
	d.save_id = j->save_id;
	d.created_ns = j->src->hdr.created_ns;
	/* The shard is durable under its final name (ckpt_shard__zfinish: 1. fsync, 2. rename and
	 * directory fsync); 3. commit (writes the MANIFEST durably, or the MPI protocol). */
	return ckpt_commit__drained(ctx, &d, err);
}

/* The job is over (done, failed, or handed to the commit protocol): record the outcome and free
 * the job. Called with ctx->mu held. */
static void job_end(struct ckpt_ctx *ctx, struct drain_job *j, int rc, const struct ckpt_err *e)
{
	struct ckpt_step_rec *rec = j->rec;

	/* CKPT_COMMIT_PENDING: the MPI protocol settles the step (and `pending`) later. A later save
	 * of the same step may have replaced the local copy meanwhile: only the outcome of the
	 * newest save decides the step's state. */
	if (rc != CKPT_COMMIT_PENDING) {
		if ((rec->save_id == j->save_id || rc < 0) && !rec->queued) {
			rec->state = rc < 0 ? CKPT_STATE_FAILED : CKPT_STATE_COMMITTED;
			rec->rc = rc;
			if (rc < 0)
				ckpt_err__copy(&rec->err, e);
			else
				ckpt_err__clear(&rec->err);
		}
		ctx->pending--;
	}
	progress(ctx);
	rec->draining = 0;
	ctx->job = NULL;
	/* Retention reads the shared tier with ctx->mu dropped; ckpt_wait waits for it
	 * (ctx->retaining). The job is off the context first, so that a new one can start. */
	if (rc == CKPT_OK)
		ckpt_retention__apply(ctx);
	else if (rc < 0)
		ckpt_retention__release_failed(ctx); /* a newer step may supersede this one */
	pthread_cond_broadcast(&ctx->cv);
	pthread_mutex_unlock(&ctx->mu);
	job_free(j);
	pthread_mutex_lock(&ctx->mu);
}

/* With MPI a failure is a vote too; hand it over without ctx->mu held (lock order: the MPI
 * engine's lock, then ctx->mu). Returns the rc the job ends with. */
static int vote_if_failed(struct ckpt_ctx *ctx, uint64_t step, uint64_t save_id, int rc,
			  const struct ckpt_err *e)
{
	int gone;

	if (rc >= 0 || !ctx->with_mpi)
		return rc;
	pthread_mutex_lock(&ctx->mu);
	gone = ctx->abort; /* after ckpt_close gave up: the MPI engine may be gone */
	pthread_mutex_unlock(&ctx->mu);
	if (gone)
		return rc;
	return ckpt_commit__vote_failed(ctx, step, save_id, rc, e->msg);
}

/* Called with ctx->mu held after a worker leaves a job: finish it when nothing is left. */
static void maybe_finish(struct worker *w, struct drain_job *j)
{
	struct ckpt_ctx *ctx = w->ctx;
	struct ckpt_err err = { "" };
	int rc;

	if (j->finishing || j->refs || (!j->failed && j->nhashed < j->out->nplan))
		return;
	j->finishing = 1;
	pthread_mutex_unlock(&ctx->mu);
	if (j->failed) {
		ckpt_err__copy(&err, &j->err);
		rc = j->failed;
	} else {
		rc = job_finish(ctx, j, &err);
	}
	/* Remove the partial output before anyone learns the outcome: a caller that ckpt_wait wakes
	 * must find the shared tier as the drain left it (no temporary file taking the space a
	 * retry needs, no open file keeping the volume busy). No other worker touches j now. */
	if (rc < 0)
		ckpt_shard__zabort(j->out);
	rc = vote_if_failed(ctx, j->step, j->save_id, rc, &err);
	pthread_mutex_lock(&ctx->mu);
	job_end(ctx, j, rc, &err);
}

/* Linux applies a nice value to the calling thread only: the drain yields the CPU to the training
 * threads, whose speed is what users pay for. drain_nice is relative to the nice value of the
 * thread that opened the context (inherited by this one): in a job started with `nice -n 15` the
 * drain runs at 19, never ahead of training. */
void ckpt_drain__lower_priority(int drain_nice)
{
	int base, prio;

	errno = 0;
	base = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
	if (base == -1 && errno)
		base = 0;
	prio = base + drain_nice;
	if (prio > 19)
		prio = 19;
	if (prio > base)
		setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), prio);
}

/* ckpt_open's work on the shared tier (issue 13): the writer lease, the removal of temporary and
 * superseded files, the scan for local steps to drain again. A drain thread does it, without
 * ctx->mu, while ckpt_open waits for it until probe_timeout: a volume that stops answering right
 * after the probes then delays nothing but the drain, which waits for it anyway. */
static void open_work(struct ckpt_ctx *ctx)
{
	struct ckpt_err why = { "" };
	struct ckpt_redrain *v = NULL;
	size_t n = 0;
	int rc, gone;

	/* One writer per job (docs/CONCURRENCY.md): rank 0 takes the writer lease. While another
	 * live writer holds it this context runs as a non-writer: it reads, deletes nothing on
	 * the shared tier, and its commits are refused until the lease is free. */
	rc = ctx->rank == 0 ? ckpt_commit__lease_take(ctx, &why) : 0;
	pthread_mutex_lock(&ctx->mu);
	gone = ctx->abort;
	pthread_mutex_unlock(&ctx->mu);
	if (gone) {
		/* ckpt_close gave up on this context meanwhile: a lease taken now is no live one */
		ckpt_commit__lease_abandon(ctx);
		return;
	}
	if (rc < 0)
		ckpt_config__log(ctx->cfg, 1, "%s; the commits take the writer lease later", why.msg);
	else if (rc == 0 && ctx->rank == 0)
		ckpt_config__log(ctx->cfg, 1, "%s; it opens as a reader: its saves stay local, their "
				 "drains fail with CKPT_EBUSY until that writer is gone", why.msg);
	if (ckpt_commit__lease_held(ctx)) {
		ckpt_store__cleanup_tmp(ctx->shared_job);
		ckpt_retention__sweep(ctx);
	}
	if ((rc = ckpt_retention__recover_scan(ctx, &v, &n, &why)) < 0)
		ckpt_config__log(ctx->cfg, 1, "the local steps left to drain could not be listed: %s",
				 why.msg);
	pthread_mutex_lock(&ctx->mu);
	for (size_t i = 0; i < n && !ctx->abort; i++) {
		struct ckpt_step_rec *rec = ckpt_retention__rec(ctx, v[i].step, 1);

		/* a step the caller saved since ckpt_open returned is its own, newer save */
		if (!rec || rec->state != CKPT_STATE_NONE || rec->save_id)
			continue;
		rec->save_id = v[i].save_id;
		rec->saved_ns = v[i].created_ns;
		ckpt_drain__enqueue(ctx, rec);
	}
	pthread_mutex_unlock(&ctx->mu);
	free(v);
}

static void drain_release_late(struct ckpt_ctx *ctx);

void (*ckpt_drain__test_hook)(const char *point);

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct ckpt_ctx *ctx = w->ctx;
	int last;

	pthread_setname_np(pthread_self(), "ckpt-drain"); /* for top -H, ps -L, gdb */
	ckpt_drain__lower_priority(ctx->cfg->drain_nice);
	pthread_mutex_lock(&ctx->mu);
	w->ready = 1;
	pthread_cond_broadcast(&ctx->cv);
	for (;;) {
		struct drain_job *j = ctx->job;

		if (ctx->abort)
			break;
		/* First, so that ckpt_wait, which waits for the trash, need not wait for the chunks
		 * of the next drain too; the other threads go on with those meanwhile. */
		/* (not while retention is putting more into it: one batch holds what one pass
		 * retired, which the crash points of retention rely on) */
		if (ctx->ntrash && !ctx->emptying && !ctx->retaining) {
			progress(ctx); /* busy from now */
			ckpt_retention__empty_trash(ctx);
			progress(ctx);
			continue;
		}
		if (ctx->open_work == 1 && !ctx->setting_up) {
			/* first: no job starts before the open's sweep (it removes temporary files) */
			ctx->open_work = 2;
			ctx->setting_up = 1;
			progress(ctx); /* busy from now: the stall clock starts */
			pthread_mutex_unlock(&ctx->mu);
			open_work(ctx);
			pthread_mutex_lock(&ctx->mu);
			ctx->setting_up = 0;
			ctx->open_work = 0;
			ctx->pending--;
			progress(ctx);
			pthread_cond_broadcast(&ctx->cv);
			continue;
		}
		if (j && !j->failed && j->next_claim < j->out->nplan) {
			uint32_t i = j->next_claim++;

			j->refs++;
			pthread_mutex_unlock(&ctx->mu);
			process_chunk(w, j, i);
			pthread_mutex_lock(&ctx->mu);
			j->refs--;
			maybe_finish(w, j);
			continue;
		}
		if (!j && ctx->qhead && !ctx->setting_up) {
			struct ckpt_step_rec *rec = ctx->qhead;
			struct ckpt_err err = { "" };
			int rc;

			ctx->qhead = rec->qnext;
			if (!ctx->qhead)
				ctx->qtail = NULL;
			rec->queued = 0;
			rec->qnext = NULL;
			ctx->setting_up = 1;
			progress(ctx); /* busy from now: the stall clock starts */
			pthread_mutex_unlock(&ctx->mu);
			if (ckpt_drain__test_hook)
				ckpt_drain__test_hook("job.setup");
			rc = job_setup(ctx, rec, &j, &err);
			if (rc < 0)
				rc = vote_if_failed(ctx, rec->step, rec->save_id, rc, &err);
			pthread_mutex_lock(&ctx->mu);
			ctx->setting_up = 0;
			progress(ctx);
			if (rc == CKPT_COMMIT_PENDING) {
				pthread_cond_broadcast(&ctx->cv);
				continue;
			}
			if (rc < 0) {
				if (!rec->queued) {
					rec->state = CKPT_STATE_FAILED;
					rec->rc = rc;
					ckpt_err__copy(&rec->err, &err);
					ckpt_retention__release_failed(ctx);
				}
				ctx->pending--;
				pthread_cond_broadcast(&ctx->cv);
				continue;
			}
			ctx->job = j;
			j->rec->draining = 1; /* what retention leaves alone (retention.c) */
			pthread_cond_broadcast(&ctx->cv);
			maybe_finish(w, j); /* a step without data finishes at once */
			continue;
		}
		if (ctx->stopping && !ctx->job && !ctx->qhead && !ctx->setting_up && !ctx->ntrash &&
		    !ctx->emptying)
			break;
		pthread_cond_wait(&ctx->cv, &ctx->mu);
	}
	/* The last thing this thread does with ctx. After ckpt_close detached the threads (one was
	 * stuck on the volume), the last to leave frees the context: nobody else holds it then. */
	ctx->alive--;
	last = ctx->detached && !ctx->alive;
	pthread_cond_broadcast(&ctx->cv);
	pthread_mutex_unlock(&ctx->mu);
	if (last)
		drain_release_late(ctx);
	return NULL;
}

int ckpt_drain__start(struct ckpt_ctx *ctx, struct ckpt_err *err)
{
	unsigned n = ctx->cfg->drain_threads;
	struct worker *ws;
	size_t cs = (size_t)ctx->cfg->chunk_size;
	int rc;

	if (!(ctx->threads = calloc(n, sizeof(pthread_t))) || !(ws = calloc(n, sizeof(*ws))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for drain threads");
	ctx->drain_workers = ws;
	for (unsigned i = 0; i < n; i++) {
		ws[i].ctx = ctx;
		ws[i].out_cap = ckpt_codec__bound(cs);
		if ((rc = ckpt_codec__new(&ws[i].codec, ctx->cfg->compress_level)) < 0 ||
		    !(ws[i].raw = malloc(cs)) || !(ws[i].out = malloc(ws[i].out_cap)))
			return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for drain buffers");
		ckpt_codec__set_transform(ws[i].codec, ctx->cfg->chunk_transform,
					  ctx->cfg->elem_width);
	}
	for (unsigned i = 0; i < n; i++) {
		pthread_mutex_lock(&ctx->mu);
		ctx->alive++;
		pthread_mutex_unlock(&ctx->mu);
		if ((rc = pthread_create(&ctx->threads[i], NULL, worker_main, &ws[i])) != 0) {
			pthread_mutex_lock(&ctx->mu);
			ctx->alive--;
			pthread_mutex_unlock(&ctx->mu);
			return ckpt_err__errno(err, rc, "pthread_create (drain thread %u)", i);
		}
		ctx->nthreads++;
	}
	/* Return once every thread has its name and priority: nothing of the drain then runs at
	 * the training thread's priority, and what ckpt_open returns is what `top -H` shows. */
	pthread_mutex_lock(&ctx->mu);
	for (unsigned i = 0; i < n; i++)
		while (!ws[i].ready)
			pthread_cond_wait(&ctx->cv, &ctx->mu);
	pthread_mutex_unlock(&ctx->mu);
	return CKPT_OK;
}

static void deadline_in(struct timespec *dl, double timeout)
{
	clock_gettime(CLOCK_REALTIME, dl);
	dl->tv_sec += (time_t)timeout;
	dl->tv_nsec += (long)((timeout - (double)(time_t)timeout) * 1e9);
	if (dl->tv_nsec >= 1000000000L) {
		dl->tv_sec++;
		dl->tv_nsec -= 1000000000L;
	}
}

int ckpt_drain__stop(struct ckpt_ctx *ctx, double timeout)
{
	struct timespec dl, grace;
	int rc = CKPT_OK;

	deadline_in(&dl, timeout);
	pthread_mutex_lock(&ctx->mu);
	ctx->stopping = 1;
	pthread_cond_broadcast(&ctx->cv);
	while (ctx->pending && ctx->alive)
		if (pthread_cond_timedwait(&ctx->cv, &ctx->mu, &dl) == ETIMEDOUT) {
			/* Abandon what is left: the local copies stay and ckpt_open drains them. */
			rc = CKPT_ETIMEDOUT;
			break;
		}
	/* The threads leave at their next look at ctx->abort. One stuck in a call on the shared
	 * volume (a hard NFS mount whose server is away) cannot: it is not waited for past the
	 * deadline, and ckpt_drain__release detaches it. Without a deadline left, a moment for
	 * the others to see the flag. */
	ctx->abort = rc < 0 || ctx->pending;
	pthread_cond_broadcast(&ctx->cv);
	deadline_in(&grace, 0.1);
	if (rc < 0 || grace.tv_sec > dl.tv_sec ||
	    (grace.tv_sec == dl.tv_sec && grace.tv_nsec > dl.tv_nsec))
		dl = grace;
	while (ctx->alive)
		if (pthread_cond_timedwait(&ctx->cv, &ctx->mu, &dl) == ETIMEDOUT) {
			rc = CKPT_ETIMEDOUT;
			break;
		}
	pthread_mutex_unlock(&ctx->mu);
	return rc;
}

/* Free the drain's part of ctx; every thread has returned. */
static void drain_free(struct ckpt_ctx *ctx)
{
	struct worker *ws = ctx->drain_workers;

	/* An aborted job was left by its workers: free it here. And what they left in the trash. */
	if (ctx->job) {
		ctx->job->rec->draining = 0;
		job_free(ctx->job);
		ctx->job = NULL;
	}
	pthread_mutex_lock(&ctx->mu);
	if (ctx->ntrash)
		ckpt_retention__empty_trash(ctx);
	free(ctx->trash);
	ctx->trash = NULL;
	ctx->captrash = 0;
	pthread_mutex_unlock(&ctx->mu);
	for (unsigned i = 0; ws && i < ctx->cfg->drain_threads; i++) {
		ckpt_codec__free(ws[i].codec);
		free(ws[i].raw);
		free(ws[i].out);
	}
	free(ws);
	ctx->drain_workers = NULL;
	free(ctx->threads);
	ctx->threads = NULL;
	ctx->nthreads = 0;
}

/* The rest of ckpt_ctx__free once every drain thread has returned: what the context left to the
 * layers below it (it freed its own part before ckpt_drain__release). Called by ckpt_close, or
 * by the last detached thread long after ckpt_close returned, when they were stuck on the
 * volume; nobody else holds ctx then. */
static void free_rest(struct ckpt_ctx *ctx)
{
	if (ctx->threads)
		drain_free(ctx);
	ckpt_commit__lease_release(ctx); /* after the drains: it was held through them */
	ckpt_retention__free_deferred(ctx);
	for (size_t i = 0; i < ctx->nrecs; i++)
		free(ctx->recs[i]);
	free(ctx->recs);
	for (size_t i = 0; i < ctx->ntrash; i++) /* a context whose drain never started */
		free(ctx->trash[i]);
	free(ctx->trash);
	ckpt_config__hints_free(ctx->hints);
	ckpt_config_free(ctx->cfg); /* last: the above may still read the configuration */
	pthread_mutex_destroy(&ctx->api_mu);
	pthread_mutex_destroy(&ctx->mu);
	pthread_cond_destroy(&ctx->cv);
	free(ctx);
}

/* What the last detached thread calls: ckpt_close has returned long ago. */
static void drain_release_late(struct ckpt_ctx *ctx)
{
	free_rest(ctx);
}

int ckpt_drain__release(struct ckpt_ctx *ctx, int may_detach)
{
	pthread_mutex_lock(&ctx->mu);
	if (ctx->alive && may_detach) {
		/* Stuck in the kernel: each thread that returned is joined by detaching it, the
		 * others free themselves; the last one frees the context (worker_main). */
		for (unsigned i = 0; i < ctx->nthreads; i++)
			pthread_detach(ctx->threads[i]);
		ctx->abort = 1;
		ctx->detached = 1;
		/* a reopen in this process must not find the job written by this dead context */
		ckpt_commit__lease_abandon(ctx);
		pthread_cond_broadcast(&ctx->cv);
		pthread_mutex_unlock(&ctx->mu);
		return 1;
	}
	pthread_mutex_unlock(&ctx->mu);
	for (unsigned i = 0; i < ctx->nthreads; i++)
		pthread_join(ctx->threads[i], NULL);
	free_rest(ctx);
	return 0;
}

void ckpt_drain__enqueue(struct ckpt_ctx *ctx, struct ckpt_step_rec *rec)
{
	rec->state = CKPT_STATE_LOCAL;
	if (rec->queued)
		return; /* already waiting: it will read the newest local copy */
	rec->queued = 1;
	rec->qnext = NULL;
	if (ctx->qtail)
		ctx->qtail->qnext = rec;
	else
		ctx->qhead = rec;
	ctx->qtail = rec;
	ctx->pending++;
	pthread_cond_broadcast(&ctx->cv);
}

size_t ckpt_drain__skip_superseded(struct ckpt_ctx *ctx, uint64_t step, uint64_t *skip,
				   size_t cap)
{
	struct ckpt_step_rec **pp = &ctx->qhead, *r;
	size_t n = 0;

	ctx->qtail = NULL;
	while ((r = *pp)) {
		/* Only queued drains, never the running one: its job holds the local copy. Nor a
		 * retry of a failed drain: retention keeps those copies too, until they drain. */
		if (r->step < step && r->rc == CKPT_OK && n < cap) {
			*pp = r->qnext;
			r->queued = 0;
			r->qnext = NULL;
			r->state = CKPT_STATE_NONE;
			r->rc = CKPT_ENOENT;
			r->save_id = 0;
			ckpt_err__set(&r->err, CKPT_ENOENT, "step %llu was skipped: superseded by "
				      "step %llu before it could be drained (the shared volume fell "
				      "behind)", (unsigned long long)r->step,
				      (unsigned long long)step);
			skip[n++] = r->step;
			ctx->pending--;
			ctx->skipped++;
			continue;
		}
		ctx->qtail = r;
		pp = &r->qnext;
	}
	if (n)
		pthread_cond_broadcast(&ctx->cv);
	return n;
}

double ckpt_drain__stalled(const struct ckpt_ctx *ctx)
{
	double stuck;

	if (!ctx->job && !ctx->setting_up && !ctx->emptying && !ctx->retaining)
		return 0;
	stuck = (double)(mono_ns() - ctx->progress_ns) / 1e9;
	return stuck >= ctx->cfg->stall_after ? stuck : 0;
}

int ckpt_drain__running(const struct ckpt_ctx *ctx, const struct ckpt_step_rec *rec)
{
	return ctx->job && ctx->job->rec == rec;
}
