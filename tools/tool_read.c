/* SPDX-License-Identifier: MIT */
/* Parallel, verifying decoder of compressed shards for the restore tool.
 *
 * Every chunk of a shared-tier shard is independent (docs/FORMAT.md), so threads claim chunks
 * from one counter and decode them straight to their place in the output, in any order. A
 * region's XXH3 is one sequential hash over its raw bytes and cannot be combined from parts: it
 * runs in chunk order while the chunks decode, by whichever thread finds its region's next chunk
 * decoded and nobody hashing that region (as the library's reader, ckpt_shard__read_region, does
 * for one region), so no hashing pass is left once the last chunk is decoded.
 *
 * A restore decodes on background threads while the caller writes (tool_read_start): chunks
 * decode into a ring of a few chunk-sized slots, the writer takes each chunk once it is hashed in
 * order (the region's last chunk once its checksum matched) and hands its slot back by asking for
 * the next one (tool_read_next). Threads claim chunks in region order and wait for a free slot, so
 * memory stays bounded by the ring whatever the shard's size, the slots stay warm in the caches,
 * and each page of them is faulted in once, not once per page of the shard.
 *
 * Verifying without restoring keeps memory bounded: a region is decoded window by window (a few
 * chunks per thread, in parallel) and each window is hashed in order into the region's running
 * XXH3 before the next one overwrites it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "codec.h"
#include "io.h"
#include "tool.h"

/* Verify only: raw bytes decoded per window; more when needed to give every thread a chunk, up
 * to WINDOW_MAX. */
#define WINDOW_BYTES (256ull << 20)
#define WINDOW_MAX (2ull << 30)
/* Restore: chunk slots per decoding thread in the ring, and two more: one the writer holds, one
 * for the thread that decodes ahead while the next-in-order chunk is still decoding. */
#define SLOTS_PER_THREAD 2
/* ... within this many bytes (more threads or bigger chunks get fewer slots, at least two) */
#define RING_BUDGET (256ull << 20)

struct item {
	uint32_t region, chunk;
};

struct job {
	struct ckpt_shard *s;
	int stream;                  /* restore (tool_read_start); else verify only */
	/* restore: chunk k decodes into slot k % nslots, free again once the writer has asked for
	 * a later chunk (consumed > k, under mu) */
	uint8_t *ring;
	size_t slot_size, nslots;
	size_t consumed;             /* chunks (items) the writer is done with */
	/* restore: the running hash of each region, in chunk order (under mu) */
	size_t *region_item;         /* index of each region's first item */
	uint32_t *nhashed;           /* chunks of each region hashed so far */
	uint8_t *hashing;            /* a thread holds the region's hasher role */
	uint8_t *done;               /* per item: decoded */
	uint8_t *verified;           /* per region: every chunk hashed and the checksum matched */
	pthread_cond_t cv;           /* restore: a region advanced, or a thread failed or ended */
	unsigned running;            /* restore: background threads not ended yet (under mu) */
	struct ckpt_hash **rhash;    /* per region, while it is being hashed */
	struct item *items;
	size_t nitems;
	size_t hi;                   /* run_phase decodes items from `next` up to hi */
	uint8_t *window;             /* verify only: where the items of one window decompress */
	uint32_t win_c0;             /* chunk number of the window's first item */
	_Atomic size_t next;
	_Atomic int failed;
	_Atomic uint64_t *progress;
	size_t max_stored;
	pthread_mutex_t mu;
	int rc;
	struct ckpt_err err;
};

struct worker {
	struct job *job;
	pthread_t thread;
	struct ckpt_codec *codec;
	uint8_t *stored;             /* one chunk's stored bytes */
	struct ckpt_err err;
};

struct tool_reader {
	struct job j;
	struct worker *ws;
	unsigned nthreads;           /* workers */
	unsigned started;            /* background threads to join */
};

static uint8_t *slot(const struct job *j, size_t item)
{
	return j->ring + (item % j->nslots) * j->slot_size;
}

/* The first failure wins; the others stop claiming work. */
static void fail(struct job *j, int rc, const struct ckpt_err *e)
{
	pthread_mutex_lock(&j->mu);
	if (!j->rc) {
		j->rc = rc;
		ckpt_err__copy(&j->err, e);
	}
	atomic_store(&j->failed, 1);
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
}

/* Restore: chunk it->chunk of its region is decoded; hash, in order, every decoded chunk of the
 * region that follows the last one hashed, unless another thread is at it, and check the region's
 * checksum after its last chunk. */
static int hash_region(struct worker *w, const struct item *it)
{
	struct job *j = w->job;
	uint32_t i = it->region;
	const struct ckpt_region_meta *r = &j->s->idx.regions[i];
	int rc = CKPT_OK;

	pthread_mutex_lock(&j->mu);
	j->done[j->region_item[i] + it->chunk] = 1;
	if (j->hashing[i]) {
		pthread_mutex_unlock(&j->mu);
		return CKPT_OK; /* the thread hashing this region finds our chunk decoded */
	}
	j->hashing[i] = 1;
	if (!j->rhash[i] && ckpt_codec__hash_new(&j->rhash[i]) < 0) {
		j->hashing[i] = 0;
		pthread_mutex_unlock(&j->mu);
		return ckpt_err__set(&w->err, CKPT_ENOMEM, "out of memory verifying %s",
				     j->s->path);
	}
	while (j->nhashed[i] < r->nchunks && j->done[j->region_item[i] + j->nhashed[i]]) {
		uint32_t c = j->nhashed[i];

		pthread_mutex_unlock(&j->mu);
		ckpt_codec__hash_update(j->rhash[i], slot(j, j->region_item[i] + c),
					(size_t)ckpt_fmt__chunk_raw(r, c));
		pthread_mutex_lock(&j->mu);
		j->nhashed[i]++;
	}
	if (j->nhashed[i] == r->nchunks) {
		/* in the same critical section as the last nhashed++: a waiter never sees the
		 * region fully hashed without knowing whether it matched */
		if (ckpt_codec__hash_digest(j->rhash[i]) != r->raw_xxh3)
			rc = ckpt_err__set(&w->err, CKPT_ECORRUPT,
					   "%s: region '%s' checksum mismatch", j->s->path,
					   r->name);
		else
			j->verified[i] = 1;
		ckpt_codec__hash_free(j->rhash[i]);
		j->rhash[i] = NULL;
	}
	j->hashing[i] = 0;
	pthread_cond_broadcast(&j->cv); /* the writer may be waiting for these bytes */
	pthread_mutex_unlock(&j->mu);
	return rc;
}

static int do_chunk(struct worker *w, const struct item *it)
{
	struct job *j = w->job;
	const struct ckpt_region_meta *r = &j->s->idx.regions[it->region];
	const struct ckpt_chunk *ch = &r->chunks[it->chunk];
	uint64_t raw = ckpt_fmt__chunk_raw(r, it->chunk);
	uint8_t *dst;
	int rc;

	if ((rc = ckpt_io__pread_full(j->s->fd, w->stored, ch->stored_size, ch->offset, &w->err,
				      j->s->path)) < 0)
		return rc;
	dst = j->stream ? slot(j, (size_t)(it - j->items))
			: j->window + (uint64_t)(it->chunk - j->win_c0) * r->chunk_raw;
	/* The library's chunk check, without the region hash: chunks decode here in any order, and
	 * the region's raw bytes are hashed in order as they come (hash_region, verify_windows). */
	if ((rc = ckpt_codec__check_chunk(w->codec, r, it->chunk, w->stored, dst, NULL,
					  &w->err)) < 0) {
		char msg[CKPT_ERRMSG_MAX];

		memcpy(msg, w->err.msg, sizeof(msg));
		return ckpt_err__set(&w->err, rc, "%s: %s", j->s->path, msg);
	}
	if (j->progress)
		atomic_fetch_add(j->progress, raw);
	return j->stream ? hash_region(w, it) : CKPT_OK;
}

/* Restore: wait until item i's slot is free (the writer is done with item i - nslots); 0 when
 * the read failed or was cancelled meanwhile. */
static int wait_slot(struct job *j, size_t i)
{
	int ok;

	pthread_mutex_lock(&j->mu);
	while (i >= j->consumed + j->nslots && !atomic_load(&j->failed))
		pthread_cond_wait(&j->cv, &j->mu);
	ok = !atomic_load(&j->failed);
	pthread_mutex_unlock(&j->mu);
	return ok;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct job *j = w->job;
	size_t n = j->hi, i;
	int rc;

	while (!atomic_load(&j->failed) && (i = atomic_fetch_add(&j->next, 1)) < n) {
		if (j->stream && !wait_slot(j, i))
			break;
		rc = do_chunk(w, &j->items[i]);
		if (rc < 0) {
			fail(j, rc, &w->err);
			break;
		}
	}
	return NULL;
}

/* Decode items lo..hi on nthreads threads (the calling thread is one of them). */
static void run_phase(struct job *j, struct worker *ws, unsigned nthreads, size_t lo, size_t hi)
{
	unsigned started = 1;

	j->hi = hi;
	atomic_store(&j->next, lo);
	for (unsigned t = 1; t < nthreads; t++) {
		if (pthread_create(&ws[t].thread, NULL, work, &ws[t]) != 0)
			break; /* fewer threads: slower, not wrong */
		started++;
	}
	work(&ws[0]);
	for (unsigned t = 1; t < started; t++)
		pthread_join(ws[t].thread, NULL);
}

void tool_shard_data_free(struct tool_shard_data *d)
{
	if (!d)
		return;
	if (d->mem)
		munmap(d->mem, d->len);
	free(d->regs);
	free(d->xxh3);
	memset(d, 0, sizeof(*d));
}

/* How many chunks of r one window holds (at least one, at most r->nchunks). */
static uint64_t window_chunks(const struct ckpt_region_meta *r, unsigned nthreads)
{
	uint64_t per;

	if (!r->chunk_raw)
		return 1;
	per = WINDOW_BYTES / r->chunk_raw;
	if (per < nthreads)
		per = nthreads < WINDOW_MAX / r->chunk_raw ? nthreads : WINDOW_MAX / r->chunk_raw;
	if (per > r->nchunks)
		per = r->nchunks;
	return per ? per : 1;
}

/* Verify only: decode each region window by window and hash the windows in order. */
static int verify_windows(struct job *j, struct worker *ws, unsigned nthreads, struct ckpt_err *err)
{
	struct ckpt_hash *st = NULL;
	size_t k = 0;
	int rc = CKPT_OK;

	if (ckpt_codec__hash_new(&st) < 0)
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory verifying %s", j->s->path);
	for (uint32_t i = 0; i < j->s->idx.nregions && !rc; i++) {
		const struct ckpt_region_meta *r = &j->s->idx.regions[i];
		uint32_t w = (uint32_t)window_chunks(r, nthreads);

		ckpt_codec__hash_reset(st);
		for (uint32_t c0 = 0; c0 < r->nchunks && !rc; c0 += w) {
			uint32_t c1 = r->nchunks - c0 < w ? r->nchunks : c0 + w;
			uint64_t bytes = 0;

			j->win_c0 = c0;
			run_phase(j, ws, nthreads, k + c0, k + c1);
			if (j->rc) {
				rc = j->rc;
				ckpt_err__copy(err, &j->err);
				break;
			}
			for (uint32_t c = c0; c < c1; c++)
				bytes += ckpt_fmt__chunk_raw(r, c);
			ckpt_codec__hash_update(st, j->window, bytes);
		}
		k += r->nchunks;
		if (!rc && ckpt_codec__hash_digest(st) != r->raw_xxh3)
			rc = ckpt_err__set(err, CKPT_ECORRUPT, "%s: region '%s' checksum mismatch",
					   j->s->path, r->name);
	}
	ckpt_codec__hash_free(st);
	return rc;
}

static void reader_free(struct tool_reader *rd)
{
	struct job *j;

	if (!rd)
		return;
	j = &rd->j;
	for (unsigned t = 0; rd->ws && t < rd->nthreads; t++) {
		ckpt_codec__free(rd->ws[t].codec);
		free(rd->ws[t].stored);
	}
	free(rd->ws);
	free(j->items);
	if (j->ring)
		munmap(j->ring, j->nslots * j->slot_size);
	for (uint32_t i = 0; j->rhash && i < j->s->idx.nregions; i++)
		ckpt_codec__hash_free(j->rhash[i]); /* regions left half hashed by a failure */
	free(j->rhash);
	free(j->region_item);
	free(j->nhashed);
	free(j->hashing);
	free(j->done);
	free(j->verified);
	free(j->window);
	pthread_cond_destroy(&j->cv);
	pthread_mutex_destroy(&j->mu);
	free(rd);
}

/* Plan the read of s (one item per chunk, region by region), and with stream set the ring the
 * chunks decode into, else the verify window; workers for nthreads threads (fewer when there are
 * fewer chunks). */
static int plan(struct tool_reader **rdp, int stream, struct ckpt_shard *s, unsigned nthreads,
		_Atomic uint64_t *progress, struct ckpt_err *err)
{
	struct tool_reader *rd;
	struct job *j;
	uint64_t window = 0, slot_size = 0;
	uint32_t nreg = s->idx.nregions;
	int rc;

	*rdp = NULL;
	if (!(s->hdr.flags & CKPT_FLAG_COMPRESSED))
		return ckpt_err__set(err, CKPT_EINVAL, "%s is not a shared-tier shard", s->path);
	if (!(rd = calloc(1, sizeof(*rd))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory planning the read of %s",
				     s->path);
	j = &rd->j;
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, NULL);
	j->s = s;
	j->stream = stream;
	j->progress = progress;
	if (nthreads < 1)
		nthreads = 1;

	/* Plan: one item per chunk, region by region. */
	rc = ckpt_err__set(err, CKPT_ENOMEM, "out of memory planning the read of %s", s->path);
	for (uint32_t i = 0; i < nreg; i++) {
		const struct ckpt_region_meta *r = &s->idx.regions[i];

		j->nitems += r->nchunks;
		if (r->nchunks && ckpt_fmt__chunk_raw(r, 0) > slot_size)
			slot_size = ckpt_fmt__chunk_raw(r, 0); /* the first chunk is the largest */
		for (uint32_t c = 0; c < r->nchunks; c++)
			if (r->chunks[c].stored_size > j->max_stored)
				j->max_stored = (size_t)r->chunks[c].stored_size;
		/* a window never holds more than its region: a small region of a shard drained with
		 * a large chunk_size needs its own size, not window_chunks * chunk_raw */
		if (r->nchunks) {
			uint64_t w = window_chunks(r, nthreads) * r->chunk_raw;

			if (w > r->raw_size)
				w = r->raw_size;
			if (w > window)
				window = w;
		}
	}
	if (!(j->items = calloc(j->nitems ? j->nitems : 1, sizeof(*j->items))) ||
	    !(j->region_item = calloc(nreg ? nreg : 1, sizeof(*j->region_item))) ||
	    !(j->nhashed = calloc(nreg ? nreg : 1, sizeof(*j->nhashed))) ||
	    !(j->hashing = calloc(nreg ? nreg : 1, 1)) ||
	    !(j->verified = calloc(nreg ? nreg : 1, 1)) ||
	    !(j->rhash = calloc(nreg ? nreg : 1, sizeof(*j->rhash))) ||
	    !(j->done = calloc(j->nitems ? j->nitems : 1, 1)))
		goto fail;
	for (uint32_t i = 0, k = 0; i < nreg; i++) {
		j->region_item[i] = k;
		for (uint32_t c = 0; c < s->idx.regions[i].nchunks; c++)
			j->items[k++] = (struct item){ i, c };
	}
	if (stream) {
		/* Address space only until a chunk decodes into it (mmap, not malloc, and no swap
		 * reserved: a shard that claims huge chunks fails at its first read, not here;
		 * tests/test_hostile) */
		j->nslots = (size_t)(nthreads < 1024 ? nthreads : 1024) * SLOTS_PER_THREAD + 2;
		/* many threads or huge chunks: as many slots as RING_BUDGET holds, at least two
		 * (one the writer holds, one decoding) */
		if (slot_size && j->nslots > RING_BUDGET / slot_size)
			j->nslots = RING_BUDGET / slot_size > 2 ? (size_t)(RING_BUDGET / slot_size) : 2;
		if (j->nslots > j->nitems)
			j->nslots = j->nitems ? j->nitems : 1;
		j->slot_size = slot_size ? (size_t)slot_size : 1;
		if (slot_size > SIZE_MAX / j->nslots ||
		    (j->ring = mmap(NULL, j->nslots * j->slot_size, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)) ==
			    MAP_FAILED) {
			j->ring = NULL;
			rc = ckpt_err__set(err, CKPT_ENOMEM, "%s: no memory for %zu chunks of %llu "
					   "bytes", s->path, j->nslots,
					   (unsigned long long)slot_size);
			goto fail;
		}
	} else if (window > SIZE_MAX || !(j->window = malloc((size_t)window + 1))) {
		goto fail;
	}
	if (nthreads > j->nitems)
		nthreads = j->nitems ? (unsigned)j->nitems : 1;
	if (!(rd->ws = calloc(nthreads, sizeof(*rd->ws))))
		goto fail;
	rd->nthreads = nthreads;
	for (unsigned t = 0; t < nthreads; t++) {
		rd->ws[t].job = j;
		if (ckpt_codec__new(&rd->ws[t].codec, 1) < 0 ||
		    !(rd->ws[t].stored = malloc(j->max_stored + 1)))
			goto fail;
	}
	ckpt_err__clear(err);
	*rdp = rd;
	return CKPT_OK;
fail:
	reader_free(rd);
	return rc;
}

/* A background decoder: work, then tell a waiting writer that one fewer thread can make
 * progress. */
static void *bg_work(void *arg)
{
	struct worker *w = arg;
	struct job *j = w->job;

	work(w);
	pthread_mutex_lock(&j->mu);
	j->running--;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

int tool_read_start(struct tool_reader **out, struct ckpt_shard *s, unsigned nthreads,
		    _Atomic uint64_t *progress, struct ckpt_err *err)
{
	struct tool_reader *rd;
	struct job *j;
	int rc;

	*out = NULL;
	if ((rc = plan(&rd, 1, s, nthreads, progress, err)) < 0)
		return rc;
	j = &rd->j;
	j->hi = j->nitems;
	atomic_store(&j->next, 0);
	pthread_mutex_lock(&j->mu);
	j->running = rd->nthreads;
	pthread_mutex_unlock(&j->mu);
	for (unsigned t = 0; t < rd->nthreads; t++) {
		if (pthread_create(&rd->ws[t].thread, NULL, bg_work, &rd->ws[t]) != 0)
			break; /* fewer threads: slower, not wrong */
		rd->started++;
	}
	pthread_mutex_lock(&j->mu);
	j->running -= rd->nthreads - rd->started;
	pthread_mutex_unlock(&j->mu);
	if (!rd->started) {
		/* no thread at all (the ring would stall a decoder in this thread): give up */
		reader_free(rd);
		return ckpt_err__errno(err, EAGAIN, "no thread to decode %s", s->path);
	}
	*out = rd;
	return CKPT_OK;
}

int tool_read_next(void *arg, size_t i, uint64_t off, const void **p, size_t *len,
		   struct ckpt_err *err)
{
	struct tool_reader *rd = arg;
	struct job *j = &rd->j;
	const struct ckpt_region_meta *r = &j->s->idx.regions[i];
	uint32_t c;
	size_t k;
	int rc = CKPT_OK, ok = 0;

	*p = NULL;
	*len = 0;
	if (!r->nchunks) {
		/* no chunk: nothing to wait for; its checksum must still be that of its (no) bytes */
		if (r->raw_size || ckpt_codec__xxh3("", 0) != r->raw_xxh3)
			return ckpt_err__set(err, CKPT_ECORRUPT, "%s: region '%s' checksum mismatch",
					     j->s->path, r->name);
		return CKPT_OK;
	}
	c = off >= r->raw_size ? r->nchunks : (uint32_t)(off / r->chunk_raw);
	k = j->region_item[i] + c;
	pthread_mutex_lock(&j->mu);
	if (k > j->consumed) {
		j->consumed = k; /* every chunk before k is written: its slot is free */
		pthread_cond_broadcast(&j->cv);
	}
	for (;;) {
		/* chunk c hashed in order; the region's last one (and its end) once verified */
		ok = c + 1 < r->nchunks ? j->nhashed[i] > c : j->verified[i];
		if (ok || j->rc || !j->running)
			break;
		pthread_cond_wait(&j->cv, &j->mu);
	}
	if (j->rc) {
		/* any damage, in this region or a later one, ends the write */
		rc = j->rc;
		ckpt_err__copy(err, &j->err);
	} else if (!ok) {
		/* every thread ended without decoding it: only after tool_read_cancel */
		rc = ckpt_err__set(err, CKPT_EIO, "%s: the read of region '%s' was cancelled",
				   j->s->path, r->name);
	} else if (c < r->nchunks) {
		uint64_t in = off - (uint64_t)c * r->chunk_raw;

		*p = slot(j, k) + in;
		*len = (size_t)(ckpt_fmt__chunk_raw(r, c) - in);
	}
	pthread_mutex_unlock(&j->mu);
	return rc;
}

void tool_read_cancel(struct tool_reader *rd)
{
	if (!rd)
		return;
	pthread_mutex_lock(&rd->j.mu);
	atomic_store(&rd->j.failed, 1);
	pthread_cond_broadcast(&rd->j.cv); /* decoders waiting for a slot */
	pthread_mutex_unlock(&rd->j.mu);
}

int tool_read_finish(struct tool_reader *rd, struct ckpt_err *err)
{
	int rc;

	if (!rd)
		return CKPT_OK;
	for (unsigned t = 0; t < rd->started; t++)
		pthread_join(rd->ws[t].thread, NULL);
	if ((rc = rd->j.rc) < 0)
		ckpt_err__copy(err, &rd->j.err);
	reader_free(rd);
	return rc;
}

static uint64_t align_up(uint64_t v)
{
	return (v + CKPT_ALIGN - 1) & ~(uint64_t)(CKPT_ALIGN - 1);
}

/* Every region into out->mem, each at an aligned offset, as the restore's writer takes them. */
static int read_all(struct tool_reader *rd, struct tool_shard_data *out, struct ckpt_shard *s,
		    struct ckpt_err *err)
{
	uint32_t nreg = s->idx.nregions;
	uint64_t total = 0;
	int rc = CKPT_OK;

	for (uint32_t i = 0; i < nreg; i++)
		total += align_up(s->idx.regions[i].raw_size);
	if (total > SIZE_MAX)
		return ckpt_err__set(err, CKPT_ENOMEM, "%s: %llu bytes do not fit in memory",
				     s->path, (unsigned long long)total);
	out->len = total ? (size_t)total : CKPT_ALIGN;
	/* an anonymous mapping: page-aligned, zero where no region byte goes, returned to the
	 * system at once by munmap however big the shard */
	out->mem = mmap(NULL, out->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (out->mem == MAP_FAILED) {
		out->mem = NULL;
		return ckpt_err__errno(err, errno, "memory for the %llu bytes of %s",
				       (unsigned long long)total, s->path);
	}
	if (!(out->regs = calloc(nreg ? nreg : 1, sizeof(*out->regs))) ||
	    !(out->xxh3 = calloc(nreg ? nreg : 1, sizeof(*out->xxh3))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory reading %s", s->path);
	out->n = nreg;
	total = 0;
	for (uint32_t i = 0; i < nreg && rc == CKPT_OK; i++) {
		const struct ckpt_region_meta *r = &s->idx.regions[i];
		uint8_t *dst = (uint8_t *)out->mem + total;
		uint64_t done = 0;
		const void *p;
		size_t len;

		out->regs[i] = (ckpt_region){ r->name, dst, (size_t)r->raw_size };
		out->xxh3[i] = r->raw_xxh3;
		while ((rc = tool_read_next(rd, i, done, &p, &len, err)) == CKPT_OK && len) {
			memcpy(dst + done, p, len);
			done += len;
		}
		total += align_up(r->raw_size);
	}
	return rc;
}

int tool_read_shard(struct tool_shard_data *out, struct ckpt_shard *s, unsigned nthreads,
		    _Atomic uint64_t *progress, struct ckpt_err *err)
{
	struct tool_reader *rd;
	int rc, rc2;

	if (!out) {
		if ((rc = plan(&rd, 0, s, nthreads, progress, err)) < 0)
			return rc;
		rc = verify_windows(&rd->j, rd->ws, rd->nthreads, err);
		reader_free(rd);
		return rc;
	}
	memset(out, 0, sizeof(*out));
	if ((rc = tool_read_start(&rd, s, nthreads, progress, err)) < 0)
		return rc;
	if ((rc = read_all(rd, out, s, err)) < 0)
		tool_read_cancel(rd);
	rc2 = tool_read_finish(rd, err);
	if (rc == CKPT_OK)
		rc = rc2;
	if (rc < 0)
		tool_shard_data_free(out);
	return rc;
}

/* ---- chunk transforms, from the index ---- */

static void xstats_add(struct tool_xstats *x, const struct ckpt_region_meta *r)
{
	for (uint32_t i = 0; i < r->nchunks; i++) {
		const struct ckpt_chunk *c = &r->chunks[i];
		uint64_t raw = ckpt_fmt__chunk_raw(r, i);

		x->chunks++;
		x->raw_bytes += raw;
		x->stored_bytes += c->stored_size;
		if (r->transform == CKPT_TRANSFORM_NONE)
			x->zstd++;
		else if (c->xform == CKPT_CHUNK_XFORM_BYTEGROUP)
			*(c->width == 2 ? &x->w2 : c->width == 4 ? &x->w4 : &x->w8) += 1;
		/* a raw plain payload: head (8) and one plane entry (8), then the raw bytes
		 * (docs/FORMAT.md 3.8.2); a compressed one is smaller */
		else if (c->stored_size == raw + 16)
			x->raw++;
		else
			x->plain++;
	}
}

int tool_xform_add(struct tool_xform *x, const struct ckpt_shard *s)
{
	for (uint32_t k = 0; k < s->idx.nregions; k++) {
		const struct ckpt_region_meta *r = &s->idx.regions[k];
		struct tool_xregion *g = NULL;

		for (size_t i = 0; i < x->nregs && !g; i++)
			if (!strcmp(x->regs[i].name, r->name))
				g = &x->regs[i];
		if (!g) {
			struct tool_xregion *n = realloc(x->regs, (x->nregs + 1) * sizeof(*n));

			if (!n)
				return -1;
			x->regs = n;
			g = &x->regs[x->nregs];
			memset(g, 0, sizeof(*g));
			if (!(g->name = strdup(r->name)))
				return -1;
			x->nregs++;
		}
		xstats_add(&g->x, r);
		xstats_add(&x->all, r);
	}
	return 0;
}

void tool_xform_free(struct tool_xform *x)
{
	if (!x)
		return;
	for (size_t i = 0; i < x->nregs; i++)
		free(x->regs[i].name);
	free(x->regs);
	memset(x, 0, sizeof(*x));
}
