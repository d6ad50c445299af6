/* SPDX-License-Identifier: MIT */
/* Unit tests of the codec module: zstd chunk round trips, damaged input, XXH3-64 checksums, the
 * chunk check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>

#include "ckpt.h"
#include "codec.h"
#include "harness.h"

#define RAW_SIZE (4u << 20) /* one default chunk */

static uint8_t *raw;      /* real weights when available, else pseudo-random bytes */
static size_t raw_len;
static int raw_is_real;

static int suite_init(void)
{
	if (!(raw = malloc(RAW_SIZE)))
		return -1;
	raw_len = th_real_data("weights-fp32.bin", raw, RAW_SIZE);
	raw_is_real = raw_len > 0;
	if (!raw_len) {
		printf("(weights-fp32.bin not found: using pseudo-random bytes) ");
		th_fill(raw, RAW_SIZE, 42);
		raw_len = RAW_SIZE;
	}
	return 0;
}

static int suite_clean(void)
{
	free(raw);
	return 0;
}

/* Compress src at `level`, decompress, compare. Returns the compressed size, 0 on failure. */
static size_t roundtrip(int level, const void *src, size_t n)
{
	struct ckpt_codec *c = NULL;
	struct ckpt_err err = { "" };
	size_t cap = ckpt_codec__bound(n), csize = 0;
	uint8_t *comp = malloc(cap), *back = malloc(n ? n : 1);
	int ok = 0;

	if (!comp || !back || ckpt_codec__new(&c, level) != CKPT_OK)
		goto out;
	if (ckpt_codec__compress(c, comp, cap, src, n, &csize, &err) != CKPT_OK) {
		fprintf(stderr, "compress level %d: %s\n", level, err.msg);
		goto out;
	}
	if (csize == 0 || csize > cap)
		goto out;
	memset(back, 0xa5, n ? n : 1);
	if (ckpt_codec__decompress(c, back, n, comp, csize, &err) != CKPT_OK) {
		fprintf(stderr, "decompress level %d: %s\n", level, err.msg);
		goto out;
	}
	ok = memcmp(back, src, n) == 0 &&
	     ckpt_codec__xxh3(back, n) == ckpt_codec__xxh3(src, n);
out:
	ckpt_codec__free(c);
	free(comp);
	free(back);
	return ok ? csize : 0;
}

static void test_roundtrip(void)
{
	size_t c1 = roundtrip(1, raw, raw_len);
	size_t c3 = roundtrip(3, raw, raw_len);

	CU_ASSERT(c1 > 0);
	CU_ASSERT(c3 > 0);
	/* smaller and odd sizes, and the empty chunk */
	CU_ASSERT(roundtrip(1, raw, 1) > 0);
	CU_ASSERT(roundtrip(1, raw + 7, 65537) > 0);
	CU_ASSERT(roundtrip(3, raw, 0) > 0);
	CU_ASSERT(roundtrip(-1, raw, 100000) > 0);
	if (raw_is_real)
		printf("(weights: %zu -> %zu bytes at level 1, %zu at level 3) ", raw_len, c1, c3);
	/* data with structure compresses (a sanity check that compression happens at all) */
	{
		uint8_t *z = calloc(1, 1 << 20);

		CU_ASSERT_PTR_NOT_NULL_FATAL(z);
		size_t cz = roundtrip(1, z, 1 << 20);
		CU_ASSERT(cz > 0 && cz < 4096);
		free(z);
	}
}

/* The level is honoured, and a chunk is a standard zstd frame that records its content size (so
 * `zstd -d` or any other decoder reads a shard's chunks). */
static void test_level_and_frame(void)
{
	const size_t n = 256 << 10;
	char *text = malloc(n);
	size_t cap = ckpt_codec__bound(n), sizes[2] = { 0, 0 };
	uint8_t *dst = malloc(cap), *ref = malloc(cap), *back = malloc(n);
	const int levels[2] = { 1, 19 };
	size_t pos = 0;
	static const char *words[16] = { "tensor", "gradient", "layer", "weight", "bias", "step",
					 "rank", "shard", "chunk", "region", "optimizer",
					 "momentum", "epoch", "batch", "loss", "learning" };
	unsigned x = 1;

	CU_ASSERT_FATAL(text && dst && ref && back);
	/* text-like data from a small vocabulary: the higher level finds more of its structure */
	while (pos < n) {
		x = x * 1103515245u + 12345u;
		pos += (size_t)snprintf(text + pos, n - pos, "%s %s=%u\n", words[(x >> 16) & 15],
					words[(x >> 20) & 15], (x >> 24) & 7);
	}
	for (int i = 0; i < 2; i++) {
		struct ckpt_codec *c = NULL;
		size_t want;

		CU_ASSERT_EQUAL_FATAL(ckpt_codec__new(&c, levels[i]), CKPT_OK);
		CU_ASSERT_EQUAL(ckpt_codec__compress(c, dst, cap, text, n, &sizes[i], NULL), CKPT_OK);
		want = ZSTD_compress(ref, cap, text, n, levels[i]);
		CU_ASSERT_FATAL(!ZSTD_isError(want));
		CU_ASSERT_EQUAL(sizes[i], want);
		CU_ASSERT_EQUAL(ZSTD_getFrameContentSize(dst, sizes[i]), n);
		CU_ASSERT_EQUAL(ZSTD_decompress(back, n, dst, sizes[i]), n);
		CU_ASSERT_EQUAL(memcmp(back, text, n), 0);
		ckpt_codec__free(c);
	}
	CU_ASSERT(sizes[1] < sizes[0]);
	free(text);
	free(dst);
	free(ref);
	free(back);
}

/* A compressed copy of the test data, shared by the corruption tests. */
struct packed {
	struct ckpt_codec *c;
	uint8_t *comp, *out;
	size_t csize, n;
};

static int pack(struct packed *p, size_t n)
{
	size_t cap = ckpt_codec__bound(n);

	memset(p, 0, sizeof(*p));
	p->n = n;
	if (ckpt_codec__new(&p->c, 1) != CKPT_OK || !(p->comp = malloc(cap)) ||
	    !(p->out = malloc(n + 1)))
		return -1;
	return ckpt_codec__compress(p->c, p->comp, cap, raw, n, &p->csize, NULL);
}

static void unpack_free(struct packed *p)
{
	ckpt_codec__free(p->c);
	free(p->comp);
	free(p->out);
}

static void test_wrong_raw_size(void)
{
	struct packed p;
	struct ckpt_err err;
	const size_t n = 1 << 20;

	CU_ASSERT_EQUAL_FATAL(pack(&p, n), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_codec__decompress(p.c, p.out, n, p.comp, p.csize, NULL), CKPT_OK);
	CU_ASSERT_EQUAL(memcmp(p.out, raw, n), 0);
	/* the index says fewer bytes than the frame holds: refused, and nothing is written past
	 * the `raw` bytes the caller's buffer holds */
	err.msg[0] = '\0';
	p.out[n - 1] = 0x5c;
	CU_ASSERT_EQUAL(ckpt_codec__decompress(p.c, p.out, n - 1, p.comp, p.csize, &err),
			CKPT_ECORRUPT);
	CU_ASSERT(err.msg[0] != '\0');
	CU_ASSERT_EQUAL(p.out[n - 1], 0x5c);
	CU_ASSERT_EQUAL(ckpt_codec__decompress(p.c, p.out, 1, p.comp, p.csize, NULL),
			CKPT_ECORRUPT);
	CU_ASSERT_EQUAL(ckpt_codec__decompress(p.c, p.out, 0, p.comp, p.csize, NULL),
			CKPT_ECORRUPT);
	/* ... or more */
	err.msg[0] = '\0';
	CU_ASSERT_EQUAL(ckpt_codec__decompress(p.c, p.out, n + 1, p.comp, p.csize, &err),
			CKPT_ECORRUPT);
	CU_ASSERT(err.msg[0] != '\0');
	/* the context is still usable after a failure */
	CU_ASSERT_EQUAL(ckpt_codec__decompress(p.c, p.out, n, p.comp, p.csize, NULL), CKPT_OK);
	CU_ASSERT_EQUAL(memcmp(p.out, raw, n), 0);
	unpack_free(&p);
}

static void test_corrupt_input(void)
{
	struct packed p;
	const size_t n = 256 << 10;
	uint8_t *bad;
	unsigned refused = 0, silent = 0;

	CU_ASSERT_EQUAL_FATAL(pack(&p, n), CKPT_OK);
	bad = malloc(p.csize + 16);
	CU_ASSERT_PTR_NOT_NULL_FATAL(bad);

	/* truncated frames, at every length in the first 64 bytes and then sparsely */
	for (size_t len = 0; len < p.csize; len += len < 64 ? 1 : 997)
		CU_ASSERT_EQUAL(ckpt_codec__decompress(p.c, p.out, n, p.comp, len, NULL),
				CKPT_ECORRUPT);
	CU_ASSERT_EQUAL(ckpt_codec__decompress(p.c, p.out, n, p.comp, p.csize - 1, NULL),
			CKPT_ECORRUPT);
	/* a damaged frame header (magic) */
	for (int i = 0; i < 4; i++) {
		memcpy(bad, p.comp, p.csize);
		bad[i] ^= 0x10;
		CU_ASSERT_EQUAL(ckpt_codec__decompress(p.c, p.out, n, bad, p.csize, NULL),
				CKPT_ECORRUPT);
	}
	/* random garbage of the same length */
	th_fill(bad, p.csize, 7);
	CU_ASSERT_EQUAL(ckpt_codec__decompress(p.c, p.out, n, bad, p.csize, NULL), CKPT_ECORRUPT);
	/* Damage anywhere else: zstd frames here carry no checksum of their own, so some damage
	 * decodes to wrong bytes (the chunk's XXH3 in the index catches that); the codec must
	 * only never crash, overrun `raw` bytes, or report anything but OK or CKPT_ECORRUPT. */
	for (size_t pos = 0; pos < p.csize; pos += 1 + pos / 8) {
		int rc;

		memcpy(bad, p.comp, p.csize);
		bad[pos] ^= 0xff;
		p.out[n] = 0x5c; /* canary just past the output */
		rc = ckpt_codec__decompress(p.c, p.out, n, bad, p.csize, NULL);
		CU_ASSERT(rc == CKPT_OK || rc == CKPT_ECORRUPT);
		CU_ASSERT_EQUAL(p.out[n], 0x5c);
		if (rc == CKPT_ECORRUPT)
			refused++;
		else
			silent++;
		/* whatever the codec says, the stored-bytes checksum always sees the damage */
		CU_ASSERT_NOT_EQUAL(ckpt_codec__xxh3(bad, p.csize), ckpt_codec__xxh3(p.comp, p.csize));
	}
	CU_ASSERT(refused > 0);
	/* trailing bytes after the frame start a second (broken) frame */
	memcpy(bad, p.comp, p.csize);
	memset(bad + p.csize, 0x77, 16);
	CU_ASSERT_EQUAL(ckpt_codec__decompress(p.c, p.out, n, bad, p.csize + 16, NULL),
			CKPT_ECORRUPT);
	/* and the intact frame still decodes */
	CU_ASSERT_EQUAL(ckpt_codec__decompress(p.c, p.out, n, p.comp, p.csize, NULL), CKPT_OK);
	CU_ASSERT_EQUAL(memcmp(p.out, raw, n), 0);
	free(bad);
	unpack_free(&p);
	(void)silent;
}

static void test_bound(void)
{
	static const size_t sizes[] = { 0, 1, 100, 4096, 65536, 1 << 20, 4u << 20 };
	struct ckpt_codec *c = NULL;
	struct ckpt_err err = { "" };
	uint8_t *rnd, *dst;
	size_t cs = 0;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		CU_ASSERT(ckpt_codec__bound(sizes[i]) >= sizes[i]);
		CU_ASSERT(ckpt_codec__bound(sizes[i]) <= sizes[i] + sizes[i] / 64 + 1024);
	}
	/* incompressible data fits the bound at any level ... */
	rnd = malloc(1 << 20);
	dst = malloc(ckpt_codec__bound(1 << 20));
	CU_ASSERT_PTR_NOT_NULL_FATAL(rnd);
	CU_ASSERT_PTR_NOT_NULL_FATAL(dst);
	th_fill(rnd, 1 << 20, 99);
	for (int level = 1; level <= 3; level += 2) {
		CU_ASSERT_EQUAL_FATAL(ckpt_codec__new(&c, level), CKPT_OK);
		CU_ASSERT_EQUAL(ckpt_codec__compress(c, dst, ckpt_codec__bound(1 << 20), rnd, 1 << 20,
						     &cs, &err), CKPT_OK);
		CU_ASSERT(cs >= (1 << 20) && cs <= ckpt_codec__bound(1 << 20));
		ckpt_codec__free(c);
	}
	/* ... but not a buffer that is too small: an error, not an overrun */
	CU_ASSERT_EQUAL_FATAL(ckpt_codec__new(&c, 1), CKPT_OK);
	memset(dst, 0x3c, 1 << 20);
	err.msg[0] = '\0';
	cs = 12345;
	CU_ASSERT(ckpt_codec__compress(c, dst, 1000, rnd, 1 << 20, &cs, &err) < 0);
	CU_ASSERT(err.msg[0] != '\0');
	CU_ASSERT_EQUAL(dst[1000], 0x3c);
	CU_ASSERT_EQUAL(cs, 12345);
	ckpt_codec__free(c);
	ckpt_codec__free(NULL);
	free(rnd);
	free(dst);
}

static void test_xxh3(void)
{
	uint8_t buf[4096];
	uint64_t h;
	unsigned same = 0;

	/* known values of XXH3-64 (seed 0): pinned by the format, as checksums are on disk */
	CU_ASSERT_EQUAL(ckpt_codec__xxh3("", 0), 0x2D06800538D394C2ull);
	CU_ASSERT_EQUAL(ckpt_codec__xxh3("", 0), XXH3_64bits("", 0));
	th_fill(buf, sizeof(buf), 5);
	CU_ASSERT_EQUAL(ckpt_codec__xxh3(buf, sizeof(buf)), XXH3_64bits(buf, sizeof(buf)));
	CU_ASSERT_EQUAL(ckpt_codec__xxh3(raw, raw_len), XXH3_64bits(raw, raw_len));
	/* every single-bit flip of a small buffer changes the hash */
	h = ckpt_codec__xxh3(buf, 64);
	for (unsigned bit = 0; bit < 64 * 8; bit++) {
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		same += ckpt_codec__xxh3(buf, 64) == h;
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	CU_ASSERT_EQUAL(same, 0);
	CU_ASSERT_EQUAL(ckpt_codec__xxh3(buf, 64), h);
	/* a flip deep inside a large buffer, and a length change */
	h = ckpt_codec__xxh3(raw, raw_len);
	raw[raw_len / 2 + 3] ^= 0x01;
	CU_ASSERT_NOT_EQUAL(ckpt_codec__xxh3(raw, raw_len), h);
	raw[raw_len / 2 + 3] ^= 0x01;
	CU_ASSERT_EQUAL(ckpt_codec__xxh3(raw, raw_len), h);
	CU_ASSERT_NOT_EQUAL(ckpt_codec__xxh3(raw, raw_len - 1), h);
}

/* A running hash over pieces equals the one-shot hash of the whole. */
static void test_hash_pieces(void)
{
	struct ckpt_hash *h;
	size_t piece = 4096 * 3 + 7;

	CU_ASSERT_EQUAL_FATAL(ckpt_codec__hash_new(&h), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_codec__hash_digest(h), ckpt_codec__xxh3("", 0));
	for (size_t off = 0; off < raw_len; off += piece)
		ckpt_codec__hash_update(h, raw + off, raw_len - off < piece ? raw_len - off : piece);
	CU_ASSERT_EQUAL(ckpt_codec__hash_digest(h), ckpt_codec__xxh3(raw, raw_len));
	ckpt_codec__hash_reset(h);
	ckpt_codec__hash_update(h, raw, 100);
	CU_ASSERT_EQUAL(ckpt_codec__hash_digest(h), ckpt_codec__xxh3(raw, 100));
	ckpt_codec__hash_free(h);
	ckpt_codec__hash_free(NULL);
}

/* A compressed region of raw_len bytes in chunks of a third of it (the last one shorter), encoded
 * with ckpt_codec__encode_chunk: the index entry and each chunk's stored bytes. */
struct zregion {
	struct ckpt_region_meta r;
	struct ckpt_chunk ch[4];
	uint8_t *stored[4];
};

static void zregion_make(struct zregion *z, struct ckpt_codec *c)
{
	size_t cap;

	memset(z, 0, sizeof(*z));
	strcpy(z->r.name, "weights");
	z->r.name_len = 7;
	z->r.codec = CKPT_CODEC_ZSTD;
	z->r.raw_size = raw_len;
	z->r.raw_xxh3 = ckpt_codec__xxh3(raw, raw_len);
	z->r.chunk_raw = raw_len / 3 + 1;
	z->r.nchunks = 3;
	z->r.chunks = z->ch;
	cap = ckpt_codec__bound(z->r.chunk_raw);
	for (uint32_t i = 0; i < 3; i++) {
		uint64_t n = ckpt_fmt__chunk_raw(&z->r, i);

		z->stored[i] = malloc(cap);
		CU_ASSERT_PTR_NOT_NULL_FATAL(z->stored[i]);
		CU_ASSERT_EQUAL_FATAL(ckpt_codec__encode_chunk(c, z->stored[i], cap,
							       raw + i * z->r.chunk_raw, n, &z->ch[i],
							       NULL), CKPT_OK);
		CU_ASSERT_EQUAL(z->ch[i].stored_xxh3,
				ckpt_codec__xxh3(z->stored[i], z->ch[i].stored_size));
	}
	CU_ASSERT(ckpt_fmt__chunk_raw(&z->r, 2) < z->r.chunk_raw);
}

static void zregion_free(struct zregion *z)
{
	for (int i = 0; i < 4; i++)
		free(z->stored[i]);
}

/* Check every chunk of z in order into out; the first failure's code, and its message in err. */
static int zregion_check(struct zregion *z, struct ckpt_codec *c, uint8_t *out,
			 struct ckpt_hash *h, struct ckpt_err *err)
{
	int rc;

	for (uint32_t i = 0; i < z->r.nchunks; i++)
		if ((rc = ckpt_codec__check_chunk(c, &z->r, i, z->stored[i],
						  out + i * z->r.chunk_raw, h, err)) < 0)
			return rc;
	return CKPT_OK;
}

static void test_check_chunk(void)
{
	struct ckpt_codec *c;
	struct ckpt_hash *h;
	struct ckpt_err err = { "" };
	struct zregion z;
	uint8_t *out = malloc(raw_len + 1);

	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_EQUAL_FATAL(ckpt_codec__new(&c, 1), CKPT_OK);
	CU_ASSERT_EQUAL_FATAL(ckpt_codec__hash_new(&h), CKPT_OK);
	zregion_make(&z, c);

	/* good chunks: every byte back, region hash checked after the last one */
	memset(out, 0xee, raw_len);
	CU_ASSERT_EQUAL(zregion_check(&z, c, out, h, &err), CKPT_OK);
	CU_ASSERT_EQUAL(memcmp(out, raw, raw_len), 0);
	/* and again with the same hash (reset at chunk 0), and without a region hash */
	CU_ASSERT_EQUAL(zregion_check(&z, c, out, h, &err), CKPT_OK);
	CU_ASSERT_EQUAL(zregion_check(&z, c, out, NULL, &err), CKPT_OK);

	/* a flipped stored byte: caught by stored_xxh3 before zstd sees it, naming the chunk */
	z.stored[1][z.ch[1].stored_size / 2] ^= 0x10;
	CU_ASSERT_EQUAL(zregion_check(&z, c, out, h, &err), CKPT_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "region 'weights' chunk 1 checksum mismatch"));
	CU_ASSERT_EQUAL(zregion_check(&z, c, out, NULL, &err), CKPT_ECORRUPT);
	z.stored[1][z.ch[1].stored_size / 2] ^= 0x10;
	/* a flipped stored_xxh3 in the index entry: the same verdict */
	z.ch[0].stored_xxh3 ^= 1;
	CU_ASSERT_EQUAL(zregion_check(&z, c, out, h, &err), CKPT_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "chunk 0 checksum mismatch"));
	z.ch[0].stored_xxh3 ^= 1;

	/* a flipped raw hash: every chunk decodes, the region check after the last one fails; a
	 * caller that hashes the region itself (NULL) gets the chunks */
	z.r.raw_xxh3 ^= 1ull << 40;
	err.msg[0] = '\0';
	CU_ASSERT_EQUAL(ckpt_codec__check_chunk(c, &z.r, 0, z.stored[0], out, h, &err), CKPT_OK);
	CU_ASSERT_EQUAL(zregion_check(&z, c, out, h, &err), CKPT_ECORRUPT);
	CU_ASSERT_STRING_EQUAL(err.msg, "region 'weights' checksum mismatch");
	CU_ASSERT_EQUAL(zregion_check(&z, c, out, NULL, &err), CKPT_OK);
	z.r.raw_xxh3 ^= 1ull << 40;
	CU_ASSERT_EQUAL(zregion_check(&z, c, out, h, &err), CKPT_OK);

	/* a wrong raw size: the last chunk decodes to fewer bytes than the index says, and a chunk
	 * size that does not match what was compressed fails at chunk 0 */
	z.r.raw_size++;
	CU_ASSERT_EQUAL(zregion_check(&z, c, out, h, &err), CKPT_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "region 'weights' chunk 2: "));
	z.r.raw_size--;
	z.r.chunk_raw--;
	CU_ASSERT_EQUAL(ckpt_codec__check_chunk(c, &z.r, 0, z.stored[0], out, h, &err),
			CKPT_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "region 'weights' chunk 0: "));
	z.r.chunk_raw++;
	CU_ASSERT_EQUAL(zregion_check(&z, c, out, h, &err), CKPT_OK);

	/* no codec for a compressed region: an argument error, not corruption */
	CU_ASSERT_EQUAL(ckpt_codec__check_chunk(NULL, &z.r, 0, z.stored[0], out, h, &err),
			CKPT_EINVAL);

	zregion_free(&z);
	ckpt_codec__hash_free(h);
	ckpt_codec__free(c);
	free(out);
}

/* A raw chunk (local shard): the stored bytes are the raw bytes; raw_xxh3 decides. */
static void test_check_raw_chunk(void)
{
	struct ckpt_region_meta r;
	struct ckpt_chunk ch;
	struct ckpt_hash *h;
	struct ckpt_err err = { "" };
	uint8_t *out = malloc(raw_len);

	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_EQUAL_FATAL(ckpt_codec__hash_new(&h), CKPT_OK);
	memset(&r, 0, sizeof(r));
	strcpy(r.name, "w");
	r.name_len = 1;
	r.codec = CKPT_CODEC_NONE;
	r.raw_size = r.chunk_raw = raw_len;
	r.raw_xxh3 = ckpt_codec__xxh3(raw, raw_len);
	r.nchunks = 1;
	r.chunks = &ch;
	ch = (struct ckpt_chunk){ 4096, raw_len, r.raw_xxh3, 0, 0 };

	/* good: copied to dst, or checked in place (dst == stored), no codec needed */
	CU_ASSERT_EQUAL(ckpt_codec__check_chunk(NULL, &r, 0, raw, out, h, &err), CKPT_OK);
	CU_ASSERT_EQUAL(memcmp(out, raw, raw_len), 0);
	CU_ASSERT_EQUAL(ckpt_codec__check_chunk(NULL, &r, 0, out, out, h, &err), CKPT_OK);
	/* a flipped byte, or a flipped raw hash */
	out[raw_len - 1] ^= 0x80;
	CU_ASSERT_EQUAL(ckpt_codec__check_chunk(NULL, &r, 0, out, out, h, &err), CKPT_ECORRUPT);
	CU_ASSERT_STRING_EQUAL(err.msg, "region 'w' checksum mismatch");
	out[raw_len - 1] ^= 0x80;
	r.raw_xxh3 ^= 4;
	CU_ASSERT_EQUAL(ckpt_codec__check_chunk(NULL, &r, 0, out, out, h, &err), CKPT_ECORRUPT);
	r.raw_xxh3 ^= 4;
	/* a wrong raw size: stored and raw sizes of a raw chunk must agree */
	ch.stored_size--;
	CU_ASSERT_EQUAL(ckpt_codec__check_chunk(NULL, &r, 0, out, out, h, &err), CKPT_ECORRUPT);
	ch.stored_size++;
	CU_ASSERT_EQUAL(ckpt_codec__check_chunk(NULL, &r, 0, out, out, h, &err), CKPT_OK);

	ckpt_codec__hash_free(h);
	free(out);
}

int main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("codec", suite_init, suite_clean);
	if (!s || !CU_add_test(s, "round trip", test_roundtrip) ||
	    !CU_add_test(s, "level and frame", test_level_and_frame) ||
	    !CU_add_test(s, "wrong raw size", test_wrong_raw_size) ||
	    !CU_add_test(s, "corrupt input", test_corrupt_input) ||
	    !CU_add_test(s, "bound", test_bound) ||
	    !CU_add_test(s, "xxh3", test_xxh3) ||
	    !CU_add_test(s, "hash in pieces", test_hash_pieces) ||
	    !CU_add_test(s, "chunk check", test_check_chunk) ||
	    !CU_add_test(s, "chunk check, raw chunk", test_check_raw_chunk)) {
		CU_cleanup_registry();
		return 1;
	}
	return th_run();
}
