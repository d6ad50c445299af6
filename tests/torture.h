/* SPDX-License-Identifier: MIT */
/* Shared by tests/torture.c and tests/torture_mpi.c: the workload's data, its journal, and the
 * check that a step read back through the public API is exactly one save of it. */
#ifndef CKPT_TORTURE_H
#define CKPT_TORTURE_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"

/*
 * A save is named by (step, seed): `seed` is a random 64-bit value chosen for each save, so that
 * saving a step again gives other bytes. Every byte of every region is a function of (step, seed,
 * rank), and the small region "meta" spells out (step, seed, rank): a reader first learns which
 * save it holds, then checks that every other byte is exactly that save's. A region that belongs
 * to another save than "meta" is a torn step; a "meta" of another step or rank is a wrong one.
 */
#define TT_META 96
#define TT_NREG 4

enum { TT_OK = 0, TT_ERR = 1, TT_WRONG = 2, TT_TORN = 3 };

static inline uint64_t tt_mix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

/* The main region's size varies with the save, so that a mix-up shows in sizes too. */
static inline size_t tt_weights_size(size_t base, uint64_t seed)
{
	return base + (size_t)(seed % 97) * 4099u;
}

static inline size_t tt_bias_size(uint64_t seed)
{
	return 3000u + (size_t)(seed % 500);
}

/* Deterministic bytes of region `which` of save (step, seed) of `rank`: half of them zero, so
 * that zstd has real work (about 2:1) and the drain takes a while. */
static inline void tt_gen(void *buf, size_t n, uint64_t step, uint64_t seed, uint32_t rank,
			  unsigned which)
{
	unsigned char *p = buf;
	uint64_t x = tt_mix(step ^ tt_mix(seed ^ tt_mix(((uint64_t)rank << 8) | which))) | 1;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		uint64_t v;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		v = x & 0x00ff00ff00ff00ffull;
		memcpy(p + i, &v, 8);
	}
	for (; i < n; i++)
		p[i] = (unsigned char)(x >> (8 * (i % 8)));
}

static inline void tt_meta(char out[TT_META], uint64_t step, uint64_t seed, uint32_t rank)
{
	memset(out, 0, TT_META);
	snprintf(out, TT_META, "torture step=%" PRIu64 " seed=%016" PRIx64 " rank=%" PRIu32, step,
		 seed, rank);
}

static inline int tt_parse_meta(const char *m, uint64_t *step, uint64_t *seed, uint32_t *rank)
{
	char buf[TT_META + 1];

	memcpy(buf, m, TT_META);
	buf[TT_META] = '\0';
	return sscanf(buf, "torture step=%" SCNu64 " seed=%" SCNx64 " rank=%" SCNu32, step, seed,
		      rank) == 3 ? 0 : -1;
}

/* The buffers of one save. */
struct tt_save {
	unsigned char *w, *b;
	size_t wn, bn;
	char meta[TT_META];
	ckpt_region r[TT_NREG];
};

/* Fill s with save (step, seed) of rank; base is the main region's minimum size. */
static inline int tt_build(struct tt_save *s, size_t base, uint64_t step, uint64_t seed,
			   uint32_t rank)
{
	s->wn = tt_weights_size(base, seed);
	s->bn = tt_bias_size(seed);
	/* +1: an odd address, so that the local writer takes its bounce-buffer path too */
	if (!(s->w = malloc(s->wn + 1)) || !(s->b = malloc(s->bn))) {
		free(s->w);
		s->w = NULL;
		return -1;
	}
	tt_gen(s->w + (step & 1), s->wn, step, seed, rank, 1);
	tt_gen(s->b, s->bn, step, seed, rank, 2);
	tt_meta(s->meta, step, seed, rank);
	s->r[0] = (ckpt_region){ "meta", s->meta, TT_META };
	s->r[1] = (ckpt_region){ "weights", s->w + (step & 1), s->wn };
	s->r[2] = (ckpt_region){ "optimizer/bias", s->b, s->bn };
	s->r[3] = (ckpt_region){ "empty", s->b, 0 };
	return 0;
}

static inline void tt_free(struct tt_save *s)
{
	free(s->w);
	free(s->b);
	s->w = s->b = NULL;
}

/* Load region `name` of rank's shard of step into a fresh buffer of its size. */
static inline int tt_load(ckpt_ctx *ctx, uint64_t step, uint32_t rank, const char *name,
			  unsigned char **out, size_t *n)
{
	int rc;

	*out = NULL;
	if ((rc = ckpt_region_size_rank(ctx, step, rank, name, n)) != CKPT_OK)
		return rc;
	if (!(*out = malloc(*n ? *n : 1)))
		return CKPT_ENOMEM;
	memset(*out, 0xa5, *n);
	if ((rc = ckpt_load_rank(ctx, step, rank, name, *out, *n)) != CKPT_OK) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

/*
 * Read rank's shard of `step` back and check it is exactly one save: *seed gets the save it
 * claims to be. TT_OK, TT_ERR (a call failed; why says which), TT_WRONG ("meta" names another
 * step or rank, or is unreadable garbage), TT_TORN (a region is not the bytes of that save).
 */
static inline int tt_check(ckpt_ctx *ctx, uint64_t step, uint32_t rank, size_t base,
			   uint64_t *seed, char *why, size_t whylen)
{
	unsigned char *m = NULL, *d = NULL, *want = NULL;
	uint64_t mstep, mseed;
	uint32_t mrank;
	size_t n = 0;
	int rc, res = TT_OK;

	*seed = 0;
	if ((rc = tt_load(ctx, step, rank, "meta", &m, &n)) != CKPT_OK) {
		snprintf(why, whylen, "load meta: %s: %s", ckpt_strerror(rc), ckpt_errmsg(ctx));
		return TT_ERR;
	}
	if (n != TT_META || tt_parse_meta((char *)m, &mstep, &mseed, &mrank) || mstep != step ||
	    mrank != rank) {
		snprintf(why, whylen, "meta of step %" PRIu64 " rank %" PRIu32 " is '%.*s'", step,
			 rank, (int)(n < TT_META ? n : TT_META), (char *)m);
		free(m);
		return TT_WRONG;
	}
	free(m);
	*seed = mseed;
	for (unsigned which = 1; which <= 3 && res == TT_OK; which++) {
		const char *name = which == 1 ? "weights" : which == 2 ? "optimizer/bias" : "empty";
		size_t expect = which == 1 ? tt_weights_size(base, mseed) :
				which == 2 ? tt_bias_size(mseed) : 0;

		if ((rc = tt_load(ctx, step, rank, name, &d, &n)) != CKPT_OK) {
			snprintf(why, whylen, "load %s: %s: %s", name, ckpt_strerror(rc),
				 ckpt_errmsg(ctx));
			res = TT_ERR; /* detected, not returned: an error, never a torn read */
			break;
		}
		if (n != expect || !(want = malloc(n ? n : 1))) {
			snprintf(why, whylen, "region %s of step %" PRIu64 " is %zu bytes, save %016"
				 PRIx64 " has %zu", name, step, n, mseed, expect);
			res = TT_TORN;
		} else {
			tt_gen(want, n, step, mseed, rank, which);
			if (memcmp(want, d, n)) {
				snprintf(why, whylen, "region %s of step %" PRIu64 " differs from save "
					 "%016" PRIx64, name, step, mseed);
				res = TT_TORN;
			}
		}
		free(want);
		free(d);
		want = d = NULL;
	}
	return res;
}

/* Journal: one line per event, appended and made durable before the workload goes on.
 *   S step seed   about to call ckpt_save for this save
 *   W step seed   ckpt_save returned CKPT_OK (durable on the local tier)
 *   C step seed   ckpt_wait returned CKPT_OK (committed on the shared tier) */
static inline void tt_journal(int fd, char type, uint64_t step, uint64_t seed)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "%c %" PRIu64 " %016" PRIx64 "\n", type, step, seed);

	if (write(fd, line, (size_t)n) != n || fdatasync(fd) < 0) {
		fprintf(stderr, "torture: journal write: %s\n", strerror(errno));
		_exit(30);
	}
}

#endif
