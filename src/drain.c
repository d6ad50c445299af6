/* SPDX-License-Identifier: MIT */
/* Background drain: local shard -> zstd chunks -> shared tier, then commit and retention.
 *
 * One job (a step's local shard) is drained at a time by all drain threads together: each thread
 * claims the next chunk, reads and compresses it on its own, then waits for its turn to append it
 * to the output file, so chunks land in order while compression runs in parallel (the scheme of
 * zstd's own multithreading, but with independent frames so that regions stay separable). The
 * thread that writes the last chunk finishes the job: index, trailer, fsync, rename, commit. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "internal.h"
#include "step.h"

struct item {
	uint32_t region, chunk;
	uint64_t src_off, raw;
};

struct drain_job {
	struct ckpt_step_rec *rec;
	struct ckpt_shard *src;
	uint64_t step, save_id;
	int out_fd;
	int dir_fd;                    /* the step directory the output is created in, or -1 */
	char stepdir[CKPT_PATH_MAX];
	char tmp[CKPT_PATH_MAX];       /* its path, while the output is still named .tmp.* */
	char final[64];
	struct ckpt_region_meta *meta; /* output index: src regions re-chunked */
	struct item *items;
	uint32_t nitems;
	uint32_t next_claim, next_write;
	uint64_t out_off;
	unsigned refs;
	int failed;
	int finishing;
	struct ckpt_err err;
	XXH3_state_t *rstate;          /* region hash, touched only by the writer of the turn */
};

struct worker {
	struct ckpt_ctx *ctx;
	struct ckpt_codec *codec;
	uint8_t *raw, *out;
	size_t out_cap;
};

/* Close and remove the unpublished output. By the step directory's descriptor, not by path: if
 * the directory was renamed or moved away meanwhile, the temporary file went with it and its path
 * names nothing (or something else); the descriptor still finds it. */
static void drop_output(struct drain_job *j)
{
	if (j->out_fd >= 0)
		close(j->out_fd);
	j->out_fd = -1;
	if (j->tmp[0]) {
		if (j->dir_fd >= 0)
			unlinkat(j->dir_fd, strrchr(j->tmp, '/') + 1, 0);
		else
			unlink(j->tmp);
	}
	j->tmp[0] = '\0';
}

static void job_free(struct drain_job *j)
{
	if (!j)
		return;
	drop_output(j); /* still named tmp: the job did not publish */
	if (j->dir_fd >= 0)
		close(j->dir_fd);
	if (j->meta)
		for (uint32_t i = 0; i < j->src->idx.nregions; i++)
			free(j->meta[i].chunks);
	free(j->meta);
	free(j->items);
	ckpt_shard__close(j->src);
	if (j->rstate)
		XXH3_freeState(j->rstate);
	free(j);
}

/* Start reading item k of the local shard into the page cache, without waiting for it. */
static void prefetch(const struct drain_job *j, uint32_t k)
{
	posix_fadvise(j->src->fd, (off_t)j->items[k].src_off, (off_t)j->items[k].raw,
		      POSIX_FADV_WILLNEED);
}

/* Open the local shard and the output file; plan the chunks. Runs without ctx->mu. */
static int job_setup(struct ckpt_ctx *ctx, struct ckpt_step_rec *rec, struct drain_job **out,
		     struct ckpt_err *err)
{
	struct drain_job *j;
	struct ckpt_header h;
	uint8_t hbuf[CKPT_HEADER_SIZE];
	uint64_t cs = ctx->cfg->chunk_size, n = 0;
	int rc;

	*out = NULL;
	if (!(j = calloc(1, sizeof(*j))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for a drain job");
	j->out_fd = -1;
	j->dir_fd = -1;
	j->rec = rec;
	j->step = rec->step;
	if ((rc = ckpt_step__open_local(&j->src, ctx->local_job, rec->step, ctx->rank, err)) < 0)
		goto fail;
	/* The local file holds the newest save of this step (a later save renamed over it). */
	j->save_id = j->src->hdr.save_id;
	posix_fadvise(j->src->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	for (uint32_t i = 0; i < j->src->idx.nregions; i++) {
		uint64_t raw = j->src->idx.regions[i].raw_size;

		n += raw / cs + (raw % cs != 0);
	}
	rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory planning the drain of step %llu",
			   (unsigned long long)rec->step);
	if (n > UINT32_MAX || !(j->rstate = XXH3_createState()) ||
	    !(j->meta = calloc(j->src->idx.nregions ? j->src->idx.nregions : 1, sizeof(*j->meta))) ||
	    !(j->items = calloc(n ? n : 1, sizeof(*j->items))))
		goto fail;
	for (uint32_t i = 0; i < j->src->idx.nregions; i++) {
		const struct ckpt_region_meta *s = &j->src->idx.regions[i];
		struct ckpt_region_meta *m = &j->meta[i];

		*m = *s;
		m->codec = CKPT_CODEC_ZSTD;
		m->chunk_raw = s->raw_size ? cs : 0;
		m->nchunks = (uint32_t)(s->raw_size / cs + (s->raw_size % cs != 0));
		m->chunks = NULL;
		if (m->nchunks && !(m->chunks = calloc(m->nchunks, sizeof(*m->chunks))))
			goto fail;
		for (uint32_t c = 0; c < m->nchunks; c++)
			j->items[j->nitems++] = (struct item){ i, c, s->chunks[0].offset + c * cs,
							       ckpt_fmt__chunk_raw(m, c) };
	}
	/* The local copy was written with O_DIRECT: none of it is cached. Ask for the first chunk
	 * of every drain thread now; process_chunk asks for the following ones. */
	for (uint32_t k = 0; k < j->nitems && k < ctx->cfg->drain_threads; k++)
		prefetch(j, k);

	if ((rc = ckpt_store__step_dir(j->stepdir, sizeof(j->stepdir), ctx->shared_job,
				       rec->step)) < 0 ||
	    (rc = ckpt_store__same_dir(ctx->shared_root, ctx->shared_dev, ctx->shared_ino,
				       err)) < 0 ||
	    (rc = ckpt_store__mkdirs(j->stepdir, err)) < 0 ||
	    (rc = ckpt_store__check_step_dir(j->stepdir, err)) < 0)
		goto fail;
	ckpt_store__shared_name(j->final, sizeof(j->final), ctx->rank, j->save_id);
	if ((rc = ckpt_store__tmp_path(j->tmp, sizeof(j->tmp), j->stepdir, j->final)) < 0) {
		ckpt_err__set(err, rc, "path too long under %s", j->stepdir);
		j->tmp[0] = '\0';
		goto fail;
	}
	/* The step directory is held open (never through a symlink) so that a failed drain can
	 * remove its temporary file wherever the directory went meanwhile (drop_output). */
	j->dir_fd = open(j->stepdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (j->dir_fd < 0) {
		rc = ckpt_err__errno(err, errno, "open %s", j->stepdir);
		j->tmp[0] = '\0';
		goto fail;
	}
	/* Written under a temporary name: readers and the commit never look at .tmp.* files. */
	j->out_fd = openat(j->dir_fd, strrchr(j->tmp, '/') + 1,
			   O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (j->out_fd < 0) {
		rc = ckpt_err__errno(err, errno, "create %s", j->tmp);
		j->tmp[0] = '\0';
		goto fail;
	}
	h = j->src->hdr;
	h.flags = CKPT_FLAG_COMPRESSED;
	h.data_offset = CKPT_HEADER_SIZE;
	ckpt_fmt__encode_header(hbuf, &h);
	if ((rc = ckpt_io__pwrite_full(j->out_fd, hbuf, sizeof(hbuf), 0, err, j->tmp)) < 0)
		goto fail;
	j->out_off = CKPT_HEADER_SIZE;
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

static void process_chunk(struct worker *w, struct drain_job *j, uint32_t i)
{
	struct ckpt_ctx *ctx = w->ctx;
	const struct item *it = &j->items[i];
	struct ckpt_region_meta *m = &j->meta[it->region];
	struct ckpt_err err = { "" };
	size_t csize;
	uint64_t h;
	int rc;

	/* Threads claim chunks in turn, so this thread's next one is most likely i + threads:
	 * have the kernel read it while we compress this one, so that the pread below does not
	 * leave a core idle waiting for the device (bench/ckpt_bench, 256 MiB, with the writeback
	 * change below: drain/zstd CLI 0.82-0.85x -> 0.99-1.10x, 2 threads on 2 cores). */
	if (i + ctx->cfg->drain_threads < j->nitems)
		prefetch(j, i + ctx->cfg->drain_threads);
	if ((rc = ckpt_io__pread_full(j->src->fd, w->raw, it->raw, it->src_off, &err,
				      j->src->path)) < 0 ||
	    (rc = ckpt_codec__compress(w->codec, w->out, w->out_cap, w->raw, it->raw, &csize,
				       &err)) < 0)
		goto fail;
	h = XXH3_64bits(w->out, csize);

	pthread_mutex_lock(&ctx->mu);
	while (j->next_write != i && !j->failed && !ctx->abort)
		pthread_cond_wait(&ctx->cv, &ctx->mu);
	rc = j->failed ? j->failed : ctx->abort ? CKPT_ETIMEDOUT : CKPT_OK;
	pthread_mutex_unlock(&ctx->mu);
	if (rc < 0)
		return; /* someone else recorded why */

	/* Our turn: this thread alone touches out_off, rstate and the chunk table now. */
	if (it->chunk == 0)
		XXH3_64bits_reset(j->rstate);
	XXH3_64bits_update(j->rstate, w->raw, it->raw);
	if (it->chunk + 1 == m->nchunks && XXH3_64bits_digest(j->rstate) != m->raw_xxh3) {
		/* The local copy changed since it was saved: never publish bad data as good. */
		rc = ckpt_err__set(&err, CKPT_ECORRUPT,
				   "%s: region '%s' checksum mismatch; step %llu not drained",
				   j->src->path, m->name, (unsigned long long)j->step);
		goto fail;
	}
	if ((rc = ckpt_io__pwrite_full(j->out_fd, w->out, csize, j->out_off, &err, j->tmp)) < 0)
		goto fail;
#ifdef SYNC_FILE_RANGE_WRITE
	/* Start writing this chunk back now, without waiting: the device works while we compress
	 * the next chunks, instead of all at once in job_finish's fsync, which stays the
	 * durability point (this call is advisory and reports no durable state). */
	sync_file_range(j->out_fd, (off_t)j->out_off, (off_t)csize, SYNC_FILE_RANGE_WRITE);
#endif
	m->chunks[it->chunk] = (struct ckpt_chunk){ j->out_off, csize, h };
	pthread_mutex_lock(&ctx->mu);
	j->out_off += csize;
	j->next_write++;
	pthread_cond_broadcast(&ctx->cv);
	pthread_mutex_unlock(&ctx->mu);
	if (i + 1 == j->nitems / 2)
		ckpt_config__fault(ctx->cfg->fault_kill_at, "drain.midway");
	return;
fail:
	job_fail(ctx, j, rc, &err);
}

/* Index, trailer, fsync, rename, commit. Runs without ctx->mu. */
static int job_finish(struct ckpt_ctx *ctx, struct drain_job *j, struct ckpt_err *err)
{
	const char *kill_at = ctx->cfg->fault_kill_at;
	uint32_t nreg = j->src->idx.nregions;
	size_t isz = ckpt_fmt__index_size(j->meta, nreg);
	struct ckpt_trailer t;
	struct ckpt_drained d;
	uint8_t *buf;
	int rc;

	if (!(buf = malloc(isz + CKPT_TRAILER_SIZE)))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for the index of %s", j->tmp);
	ckpt_fmt__encode_index(buf, j->meta, nreg);
	t = (struct ckpt_trailer){ j->out_off, isz, XXH3_64bits(buf, isz), j->src->trl.raw_total,
				   j->out_off + isz + CKPT_TRAILER_SIZE, j->save_id };
	ckpt_fmt__encode_trailer(buf + isz, &t);
	rc = ckpt_io__pwrite_full(j->out_fd, buf, isz + CKPT_TRAILER_SIZE, j->out_off, err, j->tmp);
	free(buf);
	if (rc < 0)
		return rc;
	ckpt_config__fault(kill_at, "drain.written");
	/* 1. fsync the shard: its bytes are durable before it gets its final name */
	if (fsync(j->out_fd) < 0)
		return ckpt_err__errno(err, errno, "fsync %s", j->tmp);
	close(j->out_fd);
	j->out_fd = -1;
	/* 2. rename + fsync(dir): the shard is durable under its final name. It is not yet part of
	 *    any committed step: only a MANIFEST naming its save id makes it visible. */
	if ((rc = ckpt_store__publish(j->tmp, j->stepdir, j->final, err)) < 0)
		return rc;
	j->tmp[0] = '\0';
	ckpt_config__fault(kill_at, "drain.published");
	d.step = j->step;
	d.save_id = j->save_id;
	d.created_ns = j->src->hdr.created_ns;
	d.shard = (struct ckpt_manifest_rank){ t.file_size, t.index_xxh3, t.raw_total, nreg };
	/* 3. commit (writes the MANIFEST durably, or the MPI protocol) */
	return ctx->commit(ctx, &d, err);
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
		if (rc == CKPT_OK)
			ckpt_drain__retention(ctx);
		ctx->pending--;
	}
	ctx->job = NULL;
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
	if (rc >= 0 || !ctx->vote_fail)
		return rc;
	ctx->vote_fail(ctx, step, save_id, rc, e->msg);
	return CKPT_COMMIT_PENDING;
}

/* Called with ctx->mu held after a worker leaves a job: finish it when nothing is left. */
static void maybe_finish(struct worker *w, struct drain_job *j)
{
	struct ckpt_ctx *ctx = w->ctx;
	struct ckpt_err err = { "" };
	int rc;

	if (j->finishing || j->refs || (!j->failed && j->next_write < j->nitems))
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
		drop_output(j);
	rc = vote_if_failed(ctx, j->step, j->save_id, rc, &err);
	pthread_mutex_lock(&ctx->mu);
	job_end(ctx, j, rc, &err);
}

static void empty_trash(struct ckpt_ctx *ctx);

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct ckpt_ctx *ctx = w->ctx;

	/* Linux applies a nice value to the calling thread only: the drain yields the CPU to the
	 * training threads, whose speed is what users pay for. */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), ctx->cfg->drain_nice);
	pthread_mutex_lock(&ctx->mu);
	for (;;) {
		struct drain_job *j = ctx->job;

		if (ctx->abort)
			break;
		/* First, so that ckpt_wait, which waits for the trash, need not wait for the chunks
		 * of the next drain too; the other threads go on with those meanwhile. */
		if (ctx->ntrash && !ctx->emptying) {
			empty_trash(ctx);
			continue;
		}
		if (j && !j->failed && j->next_claim < j->nitems) {
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
			pthread_mutex_unlock(&ctx->mu);
			rc = job_setup(ctx, rec, &j, &err);
			if (rc < 0)
				rc = vote_if_failed(ctx, rec->step, rec->save_id, rc, &err);
			pthread_mutex_lock(&ctx->mu);
			ctx->setting_up = 0;
			if (rc == CKPT_COMMIT_PENDING) {
				pthread_cond_broadcast(&ctx->cv);
				continue;
			}
			if (rc < 0) {
				if (!rec->queued) {
					rec->state = CKPT_STATE_FAILED;
					rec->rc = rc;
					ckpt_err__copy(&rec->err, &err);
				}
				ctx->pending--;
				pthread_cond_broadcast(&ctx->cv);
				continue;
			}
			ctx->job = j;
			pthread_cond_broadcast(&ctx->cv);
			maybe_finish(w, j); /* a step without data finishes at once */
			continue;
		}
		if (ctx->stopping && !ctx->job && !ctx->qhead && !ctx->setting_up && !ctx->ntrash &&
		    !ctx->emptying)
			break;
		pthread_cond_wait(&ctx->cv, &ctx->mu);
	}
	pthread_mutex_unlock(&ctx->mu);
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
	}
	for (unsigned i = 0; i < n; i++) {
		if ((rc = pthread_create(&ctx->threads[i], NULL, worker_main, &ws[i])) != 0)
			return ckpt_err__errno(err, rc, "pthread_create (drain thread %u)", i);
		ctx->nthreads++;
	}
	return CKPT_OK;
}

int ckpt_drain__stop(struct ckpt_ctx *ctx, double timeout)
{
	struct worker *ws = ctx->drain_workers;
	struct timespec dl;
	int rc = CKPT_OK;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += (time_t)timeout;
	dl.tv_nsec += (long)((timeout - (double)(time_t)timeout) * 1e9);
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&ctx->mu);
	ctx->stopping = 1;
	pthread_cond_broadcast(&ctx->cv);
	while (ctx->pending && ctx->nthreads)
		if (pthread_cond_timedwait(&ctx->cv, &ctx->mu, &dl) == ETIMEDOUT) {
			/* Abandon what is left: the local copies stay and ckpt_open drains them. */
			ctx->abort = 1;
			rc = CKPT_ETIMEDOUT;
			pthread_cond_broadcast(&ctx->cv);
			break;
		}
	pthread_mutex_unlock(&ctx->mu);
	for (unsigned i = 0; i < ctx->nthreads; i++)
		pthread_join(ctx->threads[i], NULL);
	/* An aborted job was left by its workers: free it here. And what they left in the trash. */
	if (ctx->job) {
		job_free(ctx->job);
		ctx->job = NULL;
	}
	pthread_mutex_lock(&ctx->mu);
	if (ctx->ntrash)
		empty_trash(ctx);
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
	return rc;
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

struct ckpt_step_rec *ckpt_drain__rec(struct ckpt_ctx *ctx, uint64_t step, int create)
{
	struct ckpt_step_rec *r;

	for (size_t i = 0; i < ctx->nrecs; i++)
		if (ctx->recs[i]->step == step)
			return ctx->recs[i];
	if (!create)
		return NULL;
	if (ctx->nrecs == ctx->caprecs) {
		size_t cap = ctx->caprecs ? 2 * ctx->caprecs : 16;
		struct ckpt_step_rec **nr = realloc(ctx->recs, cap * sizeof(*nr));

		if (!nr)
			return NULL;
		ctx->recs = nr;
		ctx->caprecs = cap;
	}
	if (!(r = calloc(1, sizeof(*r))))
		return NULL;
	r->step = step;
	ctx->recs[ctx->nrecs++] = r;
	return r;
}

int ckpt_drain__running(const struct ckpt_ctx *ctx, const struct ckpt_step_rec *rec)
{
	return ctx->job && ctx->job->rec == rec;
}

/* Is the local copy of `step` (this rank's) committed on shared with the same save id? */
static int local_is_committed(struct ckpt_ctx *ctx, uint64_t step, uint64_t local_save)
{
	struct ckpt_manifest m;
	int ok;

	if (ckpt_step__manifest(ctx->shared_job, step, &m, 0, NULL) < 0)
		return 0;
	ok = m.save_id == local_save;
	ckpt_fmt__manifest_free(&m);
	return ok;
}

struct kept {
	uint64_t step, created, save_id;
	int keep;
};

static int by_step_desc(const void *a, const void *b)
{
	const struct kept *x = a, *y = b;

	return x->step < y->step ? 1 : x->step > y->step ? -1 : 0;
}

static int by_created_desc(const void *a, const void *b)
{
	const struct kept *x = a, *y = b;

	return x->created < y->created ? 1 : x->created > y->created ? -1 : 0;
}

/* Mark the `keep` highest-numbered and the `keep` most recently created entries. Both count:
 * after a job rolls back to an earlier step number, its new steps are the most recent ones and
 * must not be deleted as "old", while the higher-numbered ones stay until the user removes them. */
static void mark_kept(struct kept *v, size_t n, unsigned keep)
{
	qsort(v, n, sizeof(*v), by_step_desc);
	for (size_t i = 0; i < n; i++)
		v[i].keep = i < keep;
	qsort(v, n, sizeof(*v), by_created_desc);
	for (size_t i = 0; i < n && i < keep; i++)
		v[i].keep = 1;
}

/* The local copies of this rank (complete ones only), or the committed steps on shared. */
static size_t list_kept(struct ckpt_ctx *ctx, int shared, struct kept **out)
{
	struct ckpt_manifest m;
	struct ckpt_shard *s;
	uint64_t *steps;
	size_t n, nv = 0;

	*out = NULL;
	if (ckpt_store__list_steps(shared ? ctx->shared_job : ctx->local_job, &steps, &n, NULL) < 0)
		return 0;
	if (n && (*out = calloc(n, sizeof(**out))))
		for (size_t i = 0; i < n; i++) {
			if (shared) {
				if (ckpt_step__manifest(ctx->shared_job, steps[i], &m, 0, NULL) < 0)
					continue; /* uncommitted: maybe in progress; `ckpt gc` cleans */
				(*out)[nv++] = (struct kept){ steps[i], m.created_ns, m.save_id, 0 };
				ckpt_fmt__manifest_free(&m);
			} else {
				if (ckpt_step__open_local(&s, ctx->local_job, steps[i], ctx->rank,
							  NULL) < 0)
					continue;
				(*out)[nv++] = (struct kept){ steps[i], s->hdr.created_ns,
							      s->hdr.save_id, 0 };
				ckpt_shard__close(s);
			}
		}
	free(steps);
	return nv;
}

/* Retire path (a local shard, or a shared step directory) into jobdir's trash: a rename under
 * ctx->mu, the removal later by a drain thread without it (empty_trash). Where the rename fails,
 * or the trash cannot grow, the removal happens here. */
static void retire(struct ckpt_ctx *ctx, const char *path, const char *jobdir, int is_step)
{
	char trash[CKPT_PATH_MAX], *copy = NULL;

	if (ctx->ntrash == ctx->captrash) {
		size_t cap = ctx->captrash ? 2 * ctx->captrash : 8;
		char **t = realloc(ctx->trash, cap * sizeof(*t));

		if (t) {
			ctx->trash = t;
			ctx->captrash = cap;
		}
	}
	if (ctx->ntrash < ctx->captrash && ckpt_store__retire(path, jobdir, trash, sizeof(trash)) == 0) {
		if ((copy = strdup(trash))) {
			ctx->trash[ctx->ntrash++] = copy;
			pthread_cond_broadcast(&ctx->cv); /* wake a drain thread to remove it */
		} else {
			ckpt_store__remove_retired(trash);
		}
		return;
	}
	if (is_step)
		ckpt_store__remove_step(path, NULL);
	else
		unlink(path);
}

/* Remove what retention retired (ctx->mu held; dropped while removing). One thread at a time, so
 * that ckpt_drain__wait_trash knows when all is gone. */
static void empty_trash(struct ckpt_ctx *ctx)
{
	char **t = ctx->trash;
	size_t n = ctx->ntrash;

	ctx->trash = NULL;
	ctx->ntrash = ctx->captrash = 0;
	ctx->emptying = 1;
	pthread_mutex_unlock(&ctx->mu);
	ckpt_config__fault(ctx->cfg->fault_kill_at, "retention.retired");
	for (size_t i = 0; i < n; i++) {
		ckpt_store__remove_retired(t[i]);
		free(t[i]);
	}
	free(t);
	pthread_mutex_lock(&ctx->mu);
	ctx->emptying = 0;
	pthread_cond_broadcast(&ctx->cv);
}

void ckpt_drain__wait_trash(struct ckpt_ctx *ctx)
{
	while ((ctx->ntrash || ctx->emptying) && ctx->nthreads)
		pthread_cond_wait(&ctx->cv, &ctx->mu);
}

void ckpt_drain__retention(struct ckpt_ctx *ctx)
{
	char dir[CKPT_PATH_MAX], path[CKPT_PATH_MAX + 64], base[64];
	struct kept *v;
	size_t n;

	/* Local tier: beyond the kept copies, one goes only once its shared copy is committed
	 * (same save id) and no drain of it is queued or running. */
	n = list_kept(ctx, 0, &v);
	mark_kept(v, n, ctx->cfg->keep_local);
	for (size_t i = 0; i < n; i++) {
		struct ckpt_step_rec *rec = ckpt_drain__rec(ctx, v[i].step, 0);

		/* a step whose last drain failed keeps its local copy even when a MANIFEST exists:
		 * the commit may have been reported failed after its rename (directory fsync) */
		if (v[i].keep ||
		    (rec && (rec->state == CKPT_STATE_LOCAL || rec->state == CKPT_STATE_FAILED ||
			     rec->queued)) ||
		    (ctx->job && ctx->job->step == v[i].step) ||
		    !local_is_committed(ctx, v[i].step, v[i].save_id))
			continue;
		ckpt_store__step_dir(dir, sizeof(dir), ctx->local_job, v[i].step);
		ckpt_store__local_name(base, sizeof(base), ctx->rank);
		snprintf(path, sizeof(path), "%s/%s", dir, base);
		retire(ctx, path, ctx->local_job, 0);
		rmdir(dir); /* fails while other ranks of this node still have files there: fine */
	}
	free(v);
	/* Shared tier (rank 0 only): the kept committed steps. */
	if (ctx->rank != 0 || ctx->cfg->keep_shared == 0)
		return;
	n = list_kept(ctx, 1, &v);
	mark_kept(v, n, ctx->cfg->keep_shared);
	for (size_t i = 0; i < n; i++)
		if (!v[i].keep) {
			/* readers see the whole step or nothing: the rename takes it away at once */
			ckpt_store__step_dir(dir, sizeof(dir), ctx->shared_job, v[i].step);
			retire(ctx, dir, ctx->shared_job, 1);
		}
	free(v);
}
