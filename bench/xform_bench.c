/* SPDX-License-Identifier: MIT */
/* Micro-benchmark of the chunk transforms (src/xform.c) on real data: compression ratio and
 * single-thread speeds per chunk of plain zstd, the automatic choice and fixed element widths,
 * the cost of the choice, and the byte-grouping transposes against memcpy.
 *
 *   bench/xform_bench [--data DIR] [--level N]... [--chunk BYTES] [--reps N]
 *
 * Speeds are MB (10^6 bytes) of raw data per second of this thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID), the best of --reps runs, so that other processes on the machine
 * change them less. Ratios are raw bytes / stored bytes over the whole data set. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zstd.h>

#include "ckpt.h"
#include "xform.h"

static double cpu_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint8_t *load(const char *dir, const char *name, size_t *n)
{
	char path[4096];
	FILE *f;
	uint8_t *b = NULL;
	long len;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (!(f = fopen(path, "rb")))
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (b = malloc((size_t)len)) && fread(b, 1, (size_t)len, f) == (size_t)len) {
		*n = (size_t)len;
	} else {
		free(b);
		b = NULL;
	}
	fclose(f);
	return b;
}

struct ctx {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	uint8_t *stored; /* one stored chunk per chunk of the data set */
	size_t *ssize;
	uint8_t *scratch, *back;
	size_t chunk, cap;
	int reps;
};

/* mode: 0 plain zstd (ZSTD_compressCCtx, what the drain stores today), 1 automatic choice,
 * 2/4/8 grouped with that width (plane modes chosen), -2/-4/-8 grouped with every plane zstd at
 * the level (no raw planes, no Huffman-only planes). */
static int run(struct ctx *c, const char *set, const uint8_t *data, size_t n, int mode, int level,
	       double plain_dmbs)
{
	struct ckpt_err err = { "" };
	size_t nch = (n + c->chunk - 1) / c->chunk, total = 0;
	double tc = 1e30, td = 1e30, tchoose = 1e30;
	unsigned widths[9] = { 0 };
	char name[32];

	for (int rep = 0; rep < c->reps; rep++) {
		double t0, tch = 0;

		total = 0;
		memset(widths, 0, sizeof(widths));
		t0 = cpu_now();
		for (size_t i = 0; i < nch; i++) {
			const uint8_t *src = data + i * c->chunk;
			size_t len = n - i * c->chunk < c->chunk ? n - i * c->chunk : c->chunk;
			uint8_t *dst = c->stored + i * c->cap;
			struct ckpt_xform_plan plan;

			if (mode == 0) {
				c->ssize[i] = ZSTD_compressCCtx(c->cctx, dst, c->cap, src, len, level);
				if (ZSTD_isError(c->ssize[i]))
					return fprintf(stderr, "zstd: %s\n",
						       ZSTD_getErrorName(c->ssize[i])), -1;
			} else {
				double t1 = cpu_now();

				ckpt_xform__choose(&plan, src, len, mode == 1 ? 0 : (unsigned)abs(mode));
				tch += cpu_now() - t1;
				if (mode < 0)
					for (int k = 0; k < plan.width; k++)
						plan.how[k] = CKPT_XFORM_HOW_LZ;
				if (ckpt_xform__encode(dst, c->cap, &c->ssize[i], src, len, &plan,
						       c->cctx, level, c->scratch, &err) != CKPT_OK)
					return fprintf(stderr, "encode: %s\n", err.msg), -1;
				widths[dst[1]]++;
			}
			total += c->ssize[i];
		}
		t0 = cpu_now() - t0;
		tc = t0 < tc ? t0 : tc;
		tchoose = tch < tchoose ? tch : tchoose;
		t0 = cpu_now();
		for (size_t i = 0; i < nch; i++) {
			size_t len = n - i * c->chunk < c->chunk ? n - i * c->chunk : c->chunk;
			const uint8_t *dst = c->stored + i * c->cap;

			if (mode == 0) {
				size_t r = ZSTD_decompressDCtx(c->dctx, c->back, len, dst, c->ssize[i]);

				if (ZSTD_isError(r) || r != len)
					return fprintf(stderr, "zstd -d failed\n"), -1;
			} else if (ckpt_xform__decode(c->back, len, dst, c->ssize[i], c->dctx,
						      c->scratch, NULL, NULL, &err) != CKPT_OK) {
				return fprintf(stderr, "decode: %s\n", err.msg), -1;
			}
			if (memcmp(c->back, data + i * c->chunk, len))
				return fprintf(stderr, "%s: chunk %zu differs after decoding\n", set,
					       i), -1;
		}
		t0 = cpu_now() - t0;
		td = t0 < td ? t0 : td;
	}
	if (mode == 0)
		snprintf(name, sizeof(name), "plain zstd");
	else if (mode == 1)
		snprintf(name, sizeof(name), "auto");
	else
		snprintf(name, sizeof(name), "width %d%s", abs(mode), mode < 0 ? " all-zstd" : "");
	printf("%-6s %-18s %3d %7.3f %8.0f %8.0f %6.2fx", set, name, level, (double)n / total,
	       n / tc / 1e6, n / td / 1e6, plain_dmbs > 0 ? n / td / 1e6 / plain_dmbs : 1.0);
	if (mode != 0)
		printf(" %6.1f %5.2f%%", tchoose / nch * 1e6, 100 * tchoose / tc);
	else
		printf(" %6s %6s", "-", "-");
	if (mode == 1) {
		printf("  chunks:");
		for (int w = 1; w <= 8; w++)
			if (widths[w])
				printf(" w%d=%u", w, widths[w]);
	}
	printf("\n");
	return mode == 0 ? (int)(n / td / 1e6) : 0;
}

static double gbs(double bytes, double t)
{
	return bytes / t / 1e9;
}

/* What gcc makes of the obvious loop (the bench is built with the project's CFLAGS, -O2). */
static void __attribute__((noinline)) naive_group(uint8_t *d, const uint8_t *s, size_t n, unsigned w)
{
	size_t m = n / w;

	for (size_t i = 0; i < m; i++)
		for (unsigned k = 0; k < w; k++)
			d[k * m + i] = s[i * w + k];
}

static void transposes(const uint8_t *data, size_t chunk, int reps)
{
	uint8_t *a = malloc(chunk), *b = malloc(chunk);
	int iters = 20;
	double t, best;

	memcpy(a, data, chunk);
	memcpy(b, data, chunk);
	best = 1e30;
	for (int r = 0; r < reps; r++) {
		t = cpu_now();
		for (int i = 0; i < iters; i++) {
			memcpy(b, a, chunk);
			__asm__ volatile("" ::"r"(b) : "memory");
		}
		t = cpu_now() - t;
		best = t < best ? t : best;
	}
	printf("\ntransposes on %zu-byte buffers (%s kernels), GB/s of CPU time, best of %d:\n",
	       chunk, ckpt_xform__impl(), reps);
	printf("  memcpy          %6.2f\n", gbs((double)chunk * iters, best));
	for (unsigned w = 2; w <= 8; w *= 2) {
		double g = 1e30, u = 1e30, nv = 1e30;

		for (int r = 0; r < reps; r++) {
			t = cpu_now();
			for (int i = 0; i < iters; i++)
				ckpt_xform__group(b, a, chunk, w);
			t = cpu_now() - t;
			g = t < g ? t : g;
			t = cpu_now();
			for (int i = 0; i < iters; i++)
				ckpt_xform__ungroup(a, b, chunk, w);
			t = cpu_now() - t;
			u = t < u ? t : u;
			t = cpu_now();
			for (int i = 0; i < iters; i++) {
				naive_group(b, a, chunk, w);
				__asm__ volatile("" ::"r"(b) : "memory");
			}
			t = cpu_now() - t;
			nv = t < nv ? t : nv;
		}
		printf("  width %u: group %6.2f  ungroup %6.2f  (plain C loop at -O2: %6.2f)\n", w,
		       gbs((double)chunk * iters, g), gbs((double)chunk * iters, u),
		       gbs((double)chunk * iters, nv));
	}
	free(a);
	free(b);
}

int main(int argc, char **argv)
{
	const char *dir = "../shared/data";
	static const char *files[3] = { "weights-fp32.bin", "weights-bf16.bin",
					"adamw-state-fp32.bin" };
	static const char *names[4] = { "fp32", "bf16", "adamw", "mixed" };
	uint8_t *sets[4] = { NULL };
	size_t lens[4] = { 0 };
	int levels[8], nlevels = 0, opt;
	struct ctx c = { .chunk = 4u << 20, .reps = 3 };
	static const struct option longopts[] = {
		{ "data", required_argument, NULL, 'd' },  { "level", required_argument, NULL, 'l' },
		{ "chunk", required_argument, NULL, 'c' }, { "reps", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};

	while ((opt = getopt_long(argc, argv, "d:l:c:r:", longopts, NULL)) != -1) {
		switch (opt) {
		case 'd': dir = optarg; break;
		case 'l':
			if (nlevels < 8)
				levels[nlevels++] = atoi(optarg);
			break;
		case 'c': c.chunk = strtoull(optarg, NULL, 0); break;
		case 'r': c.reps = atoi(optarg) > 0 ? atoi(optarg) : 1; break;
		default:
			fprintf(stderr, "usage: %s [--data DIR] [--level N]... [--chunk BYTES] "
				"[--reps N]\n", argv[0]);
			return 64;
		}
	}
	if (!nlevels)
		levels[nlevels++] = 1;
	if (c.chunk < 64 || c.chunk > CKPT_XFORM_MAX_RAW)
		return fprintf(stderr, "--chunk: 64..%u\n", CKPT_XFORM_MAX_RAW), 64;
	for (int i = 0; i < 3; i++) {
		if (!(sets[i] = load(dir, files[i], &lens[i]))) {
			fprintf(stderr, "xform_bench: cannot read %s/%s\n", dir, files[i]);
			return 77;
		}
		lens[3] += lens[i];
	}
	/* the mixed set: the three files back to back, as one checkpoint would hold them */
	sets[3] = malloc(lens[3]);
	for (size_t i = 0, off = 0; i < 3; off += lens[i], i++)
		memcpy(sets[3] + off, sets[i], lens[i]);
	c.cap = ckpt_xform__bound(c.chunk);
	if (ZSTD_compressBound(c.chunk) > c.cap)
		c.cap = ZSTD_compressBound(c.chunk);
	c.cctx = ZSTD_createCCtx();
	c.dctx = ZSTD_createDCtx();
	c.stored = malloc(c.cap * ((lens[3] + c.chunk - 1) / c.chunk));
	c.ssize = calloc((lens[3] + c.chunk - 1) / c.chunk, sizeof(size_t));
	c.scratch = malloc(c.chunk);
	c.back = malloc(c.chunk);
	if (!sets[3] || !c.cctx || !c.dctx || !c.stored || !c.ssize || !c.scratch || !c.back)
		return fprintf(stderr, "out of memory\n"), 1;

	printf("chunk %zu bytes, libzstd %s, one thread, best of %d; MB/s of raw bytes per CPU "
	       "second\n", c.chunk, ZSTD_versionString(), c.reps);
	printf("%-6s %-18s %3s %7s %8s %8s %7s %6s %6s\n", "set", "method", "lvl", "ratio",
	       "comp", "decomp", "dec/pl", "us/ch", "choose");
	for (int l = 0; l < nlevels; l++) {
		for (int s = 0; s < 4; s++) {
			static const int modes[] = { 0, 1, 2, 4, 8, -4 };
			int plain = 0;

			for (size_t k = 0; k < sizeof(modes) / sizeof(modes[0]); k++) {
				int r = run(&c, names[s], sets[s], lens[s], modes[k], levels[l],
					    plain);

				if (r < 0)
					return 1;
				if (modes[k] == 0)
					plain = r;
			}
		}
	}
	printf("(dec/pl: decompression speed / plain zstd's; us/ch: microseconds of the choice "
	       "per chunk; choose: its share of the compression time)\n");
	transposes(sets[0], c.chunk, c.reps);
	for (int i = 0; i < 4; i++)
		free(sets[i]);
	free(c.stored);
	free(c.ssize);
	free(c.scratch);
	free(c.back);
	ZSTD_freeCCtx(c.cctx);
	ZSTD_freeDCtx(c.dctx);
	return 0;
}
