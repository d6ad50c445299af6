/* SPDX-License-Identifier: MIT */
/* Unit tests of the on-disk format: round trips, golden bytes, and rejection of damaged input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <xxhash.h>

#include "ckpt.h"
#include "fmt.h"
#include "harness.h"

/* ---- headers ---- */

static const struct ckpt_header sample_hdr = {
	.version = CKPT_FMT_VERSION,
	.flags = CKPT_FLAG_COMPRESSED,
	.step = 0x0102030405060708ull,
	.save_id = 0x1112131415161718ull,
	.rank = 0x212223,
	.nranks = 0x313233,
	.nregions = 77,
	.data_offset = 4096,
	.created_ns = 0x6162636465666768ull,
};

static int hdr_equal(const struct ckpt_header *a, const struct ckpt_header *b)
{
	return a->version == b->version && a->flags == b->flags && a->step == b->step &&
	       a->save_id == b->save_id && a->rank == b->rank && a->nranks == b->nranks &&
	       a->nregions == b->nregions && a->data_offset == b->data_offset &&
	       a->created_ns == b->created_ns;
}

static void test_header_roundtrip(void)
{
	struct ckpt_header h = sample_hdr, d;
	struct ckpt_err err = { "" };
	uint8_t buf[CKPT_HEADER_SIZE + 16];

	h.rank = 5;
	h.nranks = 6;
	ckpt_fmt__encode_header(buf, &h);
	memset(&d, 0xa5, sizeof(d));
	CU_ASSERT_EQUAL(ckpt_fmt__decode_header(&d, buf, CKPT_HEADER_SIZE, &err), CKPT_OK);
	CU_ASSERT(hdr_equal(&h, &d));
	/* a longer buffer (the header is read with the first block) is fine */
	CU_ASSERT_EQUAL(ckpt_fmt__decode_header(&d, buf, sizeof(buf), &err), CKPT_OK);
	/* the uncompressed flavour, rank 0 of 1, the largest counts */
	h.flags = 0;
	h.rank = 0;
	h.nranks = 1;
	h.nregions = CKPT_MAX_REGIONS;
	h.step = UINT64_MAX;
	h.data_offset = CKPT_HEADER_SIZE;
	ckpt_fmt__encode_header(buf, &h);
	CU_ASSERT_EQUAL(ckpt_fmt__decode_header(&d, buf, CKPT_HEADER_SIZE, &err), CKPT_OK);
	CU_ASSERT(hdr_equal(&h, &d));
	h.rank = CKPT_MAX_RANKS - 1;
	h.nranks = CKPT_MAX_RANKS;
	ckpt_fmt__encode_header(buf, &h);
	CU_ASSERT_EQUAL(ckpt_fmt__decode_header(&d, buf, CKPT_HEADER_SIZE, &err), CKPT_OK);
	CU_ASSERT(hdr_equal(&h, &d));
}

static void test_header_bitflips(void)
{
	struct ckpt_header h = sample_hdr, d;
	struct ckpt_err err;
	uint8_t buf[CKPT_HEADER_SIZE];
	unsigned missed = 0;

	ckpt_fmt__encode_header(buf, &h);
	CU_ASSERT_EQUAL_FATAL(ckpt_fmt__decode_header(&d, buf, sizeof(buf), NULL), CKPT_OK);
	for (unsigned bit = 0; bit < CKPT_HEADER_SIZE * 8; bit++) {
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		err.msg[0] = '\0';
		if (ckpt_fmt__decode_header(&d, buf, sizeof(buf), &err) != CKPT_ECORRUPT ||
		    !err.msg[0]) {
			fprintf(stderr, "header bit %u flipped: not detected\n", bit);
			missed++;
		}
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	CU_ASSERT_EQUAL(missed, 0);
	/* and the buffer is intact again */
	CU_ASSERT_EQUAL(ckpt_fmt__decode_header(&d, buf, sizeof(buf), NULL), CKPT_OK);
}

static void test_header_truncated(void)
{
	struct ckpt_header d;
	uint8_t buf[CKPT_HEADER_SIZE];

	ckpt_fmt__encode_header(buf, &sample_hdr);
	for (size_t len = 0; len < CKPT_HEADER_SIZE; len++)
		CU_ASSERT_EQUAL(ckpt_fmt__decode_header(&d, buf, len, NULL), CKPT_ECORRUPT);
}

#define MUT(name, stmt) static void name(struct ckpt_header *x) { stmt; }
MUT(m_ver0, x->version = 0)
MUT(m_ver2, x->version = CKPT_FMT_VERSION + 1)
MUT(m_flags, x->flags = 2)
MUT(m_flags_hi, x->flags = 0x80000001u)
MUT(m_nranks0, (x->nranks = 0, x->rank = 0))
MUT(m_rank_eq, x->rank = x->nranks)
MUT(m_nranks_big, (x->nranks = CKPT_MAX_RANKS + 1, x->rank = 0))
MUT(m_nregions, x->nregions = CKPT_MAX_REGIONS + 1)
MUT(m_doff, x->data_offset = CKPT_HEADER_SIZE - 1)
MUT(m_doff0, x->data_offset = 0)
#undef MUT

/* Values a writer could encode (with a valid checksum) that a reader must still refuse. */
static void test_header_semantics(void)
{
	struct ckpt_header h, d;
	struct ckpt_err err;
	uint8_t buf[CKPT_HEADER_SIZE];
	static const struct {
		const char *what;
		void (*mut)(struct ckpt_header *);
	} cases[] = {
		{ "version 0", m_ver0 },        { "future version", m_ver2 },
		{ "unknown flag", m_flags },    { "high flag", m_flags_hi },
		{ "0 ranks", m_nranks0 },       { "rank == nranks", m_rank_eq },
		{ "too many ranks", m_nranks_big }, { "too many regions", m_nregions },
		{ "data overlaps header", m_doff }, { "data offset 0", m_doff0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		h = sample_hdr;
		h.rank = 1;
		h.nranks = 4;
		cases[i].mut(&h);
		ckpt_fmt__encode_header(buf, &h);
		err.msg[0] = '\0';
		if (ckpt_fmt__decode_header(&d, buf, sizeof(buf), &err) != CKPT_ECORRUPT ||
		    !err.msg[0]) {
			fprintf(stderr, "header with %s accepted\n", cases[i].what);
			CU_FAIL("invalid header accepted");
		}
	}
	/* a trailer is not a header */
	{
		struct ckpt_trailer t = { 1, 2, 3, 4, 5, 6 };

		ckpt_fmt__encode_trailer(buf, &t);
		CU_ASSERT_EQUAL(ckpt_fmt__decode_header(&d, buf, sizeof(buf), NULL), CKPT_ECORRUPT);
	}
}

/* The layout is pinned: a change here breaks every checkpoint ever written. */
static void test_header_golden(void)
{
	static const uint8_t want[CKPT_HEADER_SIZE] = {
		'C', 'K', 'P', 'T', 'S', 'H', 'R', 'D',          /*  0 magic */
		0x01, 0x00, 0x00, 0x00,                          /*  8 version 1 */
		0x01, 0x00, 0x00, 0x00,                          /* 12 flags */
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  /* 16 step */
		0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  /* 24 save id */
		0x24, 0x23, 0x22, 0x21,                          /* 32 rank */
		0x34, 0x33, 0x32, 0x31,                          /* 36 nranks */
		0x44, 0x43, 0x42, 0x41,                          /* 40 nregions */
		0x54, 0x53, 0x52, 0x51,                          /* 44 data offset */
		0x68, 0x67, 0x66, 0x65, 0x64, 0x63, 0x62, 0x61,  /* 48 created ns */
		0xfd, 0x8c, 0xce, 0x09, 0xfe, 0x7f, 0x47, 0x74,  /* 56 XXH3-64 of bytes 0..55 */
	};
	struct ckpt_header h = {
		.version = 1, .flags = 1, .step = 0x0102030405060708ull,
		.save_id = 0x1112131415161718ull, .rank = 0x21222324, .nranks = 0x31323334,
		.nregions = 0x41424344, .data_offset = 0x51525354,
		.created_ns = 0x6162636465666768ull,
	};
	uint8_t buf[CKPT_HEADER_SIZE];

	CU_ASSERT_EQUAL(CKPT_HEADER_SIZE, 64);
	CU_ASSERT_EQUAL(CKPT_FMT_VERSION, 1);
	memset(buf, 0xee, sizeof(buf));
	ckpt_fmt__encode_header(buf, &h);
	for (size_t i = 0; i < sizeof(want); i++)
		if (buf[i] != want[i]) {
			fprintf(stderr, "header byte %zu: 0x%02x, want 0x%02x\n", i, buf[i], want[i]);
			CU_FAIL("header layout changed");
		}
	CU_ASSERT_EQUAL(ckpt_fmt__get64(buf + 56), XXH3_64bits(buf, 56));
}

/* ---- trailers ---- */

static const struct ckpt_trailer sample_trl = {
	.index_offset = 0x0102030405060708ull,
	.index_size = 0x1112131415161718ull,
	.index_xxh3 = 0x2122232425262728ull,
	.raw_total = 0x3132333435363738ull,
	.file_size = 0x4142434445464748ull,
	.save_id = 0x5152535455565758ull,
};

static void test_trailer(void)
{
	static const uint8_t want[CKPT_TRAILER_SIZE] = {
		'C', 'K', 'P', 'T', 'T', 'R', 'L', 'R',
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /*  8 index offset */
		0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, /* 16 index size */
		0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21, /* 24 index xxh3 */
		0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31, /* 32 raw total */
		0x48, 0x47, 0x46, 0x45, 0x44, 0x43, 0x42, 0x41, /* 40 file size */
		0x58, 0x57, 0x56, 0x55, 0x54, 0x53, 0x52, 0x51, /* 48 save id */
		0xec, 0x84, 0x31, 0x0f, 0xb0, 0x4e, 0x6d, 0xb1, /* 56 XXH3-64 of bytes 0..55 */
	};
	struct ckpt_trailer d;
	struct ckpt_err err;
	uint8_t buf[CKPT_TRAILER_SIZE];
	unsigned missed = 0;

	CU_ASSERT_EQUAL(CKPT_TRAILER_SIZE, 64);
	ckpt_fmt__encode_trailer(buf, &sample_trl);
	CU_ASSERT_EQUAL(memcmp(buf, want, sizeof(want)), 0);
	memset(&d, 0, sizeof(d));
	CU_ASSERT_EQUAL_FATAL(ckpt_fmt__decode_trailer(&d, buf, sizeof(buf), NULL), CKPT_OK);
	CU_ASSERT_EQUAL(d.index_offset, sample_trl.index_offset);
	CU_ASSERT_EQUAL(d.index_size, sample_trl.index_size);
	CU_ASSERT_EQUAL(d.index_xxh3, sample_trl.index_xxh3);
	CU_ASSERT_EQUAL(d.raw_total, sample_trl.raw_total);
	CU_ASSERT_EQUAL(d.file_size, sample_trl.file_size);
	CU_ASSERT_EQUAL(d.save_id, sample_trl.save_id);
	for (unsigned bit = 0; bit < CKPT_TRAILER_SIZE * 8; bit++) {
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		err.msg[0] = '\0';
		if (ckpt_fmt__decode_trailer(&d, buf, sizeof(buf), &err) != CKPT_ECORRUPT ||
		    !err.msg[0]) {
			fprintf(stderr, "trailer bit %u flipped: not detected\n", bit);
			missed++;
		}
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	CU_ASSERT_EQUAL(missed, 0);
	for (size_t len = 0; len < CKPT_TRAILER_SIZE; len++)
		CU_ASSERT_EQUAL(ckpt_fmt__decode_trailer(&d, buf, len, NULL), CKPT_ECORRUPT);
	/* a header is not a trailer */
	ckpt_fmt__encode_header(buf, &sample_hdr);
	CU_ASSERT_EQUAL(ckpt_fmt__decode_trailer(&d, buf, sizeof(buf), NULL), CKPT_ECORRUPT);
}

/* ---- manifests ---- */

static void test_manifest(void)
{
	static const uint8_t want[88] = {
		'C', 'K', 'P', 'T', 'M', 'N', 'F', 'S',
		0x01, 0x00, 0x00, 0x00,                         /*  8 version */
		0x01, 0x00, 0x00, 0x00,                         /* 12 nranks */
		0x48, 0x47, 0x46, 0x45, 0x44, 0x43, 0x42, 0x41, /* 16 step */
		0x58, 0x57, 0x56, 0x55, 0x54, 0x53, 0x52, 0x51, /* 24 save id */
		0x68, 0x67, 0x66, 0x65, 0x64, 0x63, 0x62, 0x61, /* 32 created ns */
		0, 0, 0, 0, 0, 0, 0, 0,                         /* 40 reserved */
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* 48 rank 0: file size */
		0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, /* 56 index xxh3 */
		0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21, /* 64 raw bytes */
		0x34, 0x33, 0x32, 0x31, 0, 0, 0, 0,             /* 72 nregions, pad */
		0xb7, 0x44, 0x84, 0x98, 0xf9, 0x91, 0xf5, 0x5f, /* 80 XXH3-64 of bytes 0..79 */
	};
	struct ckpt_manifest_rank r1 = { 0x0102030405060708ull, 0x1112131415161718ull,
					 0x2122232425262728ull, 0x31323334 };
	struct ckpt_manifest m1 = { 1, 1, 0x4142434445464748ull, 0x5152535455565758ull,
				    0x6162636465666768ull, &r1 };
	struct ckpt_manifest_rank ranks[3];
	struct ckpt_manifest m = { CKPT_FMT_VERSION, 3, 42, 0xabcdef, 123456789, ranks }, d;
	struct ckpt_err err;
	uint8_t *buf, *big;
	size_t n;
	unsigned missed = 0;

	/* golden bytes of a one-rank manifest */
	CU_ASSERT_EQUAL_FATAL(ckpt_fmt__manifest_size(1), sizeof(want));
	buf = malloc(sizeof(want));
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	ckpt_fmt__encode_manifest(buf, &m1);
	CU_ASSERT_EQUAL(memcmp(buf, want, sizeof(want)), 0);
	free(buf);

	for (unsigned i = 0; i < 3; i++)
		ranks[i] = (struct ckpt_manifest_rank){ 1000 + i, 0x1111ull * (i + 1), 7 * i, i };
	n = ckpt_fmt__manifest_size(3);
	CU_ASSERT_EQUAL(n, CKPT_MANIFEST_HEAD + 3 * CKPT_MANIFEST_RANK + 8);
	buf = malloc(n + 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	ckpt_fmt__encode_manifest(buf, &m);
	CU_ASSERT_EQUAL_FATAL(ckpt_fmt__decode_manifest(&d, buf, n, NULL), CKPT_OK);
	CU_ASSERT_EQUAL(d.version, CKPT_FMT_VERSION);
	CU_ASSERT_EQUAL(d.nranks, 3);
	CU_ASSERT_EQUAL(d.step, 42);
	CU_ASSERT_EQUAL(d.save_id, 0xabcdef);
	CU_ASSERT_EQUAL(d.created_ns, 123456789);
	for (unsigned i = 0; i < 3; i++) {
		CU_ASSERT_EQUAL(d.ranks[i].file_size, ranks[i].file_size);
		CU_ASSERT_EQUAL(d.ranks[i].index_xxh3, ranks[i].index_xxh3);
		CU_ASSERT_EQUAL(d.ranks[i].raw_bytes, ranks[i].raw_bytes);
		CU_ASSERT_EQUAL(d.ranks[i].nregions, ranks[i].nregions);
	}
	ckpt_fmt__manifest_free(&d);
	CU_ASSERT_PTR_NULL(d.ranks);
	ckpt_fmt__manifest_free(&d); /* twice is harmless */
	ckpt_fmt__manifest_free(NULL);

	/* every single-bit flip is detected */
	for (unsigned bit = 0; bit < n * 8; bit++) {
		int rc;

		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		err.msg[0] = '\0';
		rc = ckpt_fmt__decode_manifest(&d, buf, n, &err);
		if (rc != CKPT_ECORRUPT || !err.msg[0]) {
			fprintf(stderr, "manifest bit %u flipped: rc %d\n", bit, rc);
			missed++;
		}
		CU_ASSERT_PTR_NULL(d.ranks); /* nothing to free after a failure */
		ckpt_fmt__manifest_free(&d);
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	CU_ASSERT_EQUAL(missed, 0);
	/* truncated or extended */
	for (size_t len = 0; len < n; len++)
		CU_ASSERT_EQUAL(ckpt_fmt__decode_manifest(&d, buf, len, NULL), CKPT_ECORRUPT);
	buf[n] = 0;
	CU_ASSERT_EQUAL(ckpt_fmt__decode_manifest(&d, buf, n + 1, NULL), CKPT_ECORRUPT);
	free(buf);

	/* a future version, with a valid checksum */
	m.version = CKPT_FMT_VERSION + 1;
	buf = malloc(n);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	ckpt_fmt__encode_manifest(buf, &m);
	CU_ASSERT_EQUAL(ckpt_fmt__decode_manifest(&d, buf, n, NULL), CKPT_ECORRUPT);
	ckpt_fmt__manifest_free(&d);
	free(buf);

	/* a huge rank count in a small buffer is refused before allocating */
	big = calloc(1, ckpt_fmt__manifest_size(1));
	CU_ASSERT_PTR_NOT_NULL_FATAL(big);
	m.version = CKPT_FMT_VERSION;
	m.nranks = 1;
	ckpt_fmt__encode_manifest(big, &m);
	ckpt_fmt__put32(big + 12, 0xffffffffu);
	CU_ASSERT_EQUAL(ckpt_fmt__decode_manifest(&d, big, ckpt_fmt__manifest_size(1), NULL),
			CKPT_ECORRUPT);
	ckpt_fmt__put32(big + 12, 0);
	CU_ASSERT_EQUAL(ckpt_fmt__decode_manifest(&d, big, ckpt_fmt__manifest_size(1), NULL),
			CKPT_ECORRUPT);
	free(big);
}

/* ---- indexes ---- */

#define NREG 4
#define DSTART 4096ull
#define DEND (1ull << 24)

/* Four regions of a compressed (shared-tier) shard: several chunks, one chunk, empty, and a
 * region whose last chunk is short. */
struct fixture {
	struct ckpt_region_meta r[NREG];
	struct ckpt_chunk ch[NREG][8];
};

static void make_compressed(struct fixture *f)
{
	static const struct {
		const char *name;
		uint64_t raw, chunk;
	} spec[NREG] = {
		{ "weights", 4000, 1000 }, { "opt.state", 10, 1000 }, { "empty", 0, 0 },
		{ "x", 2500, 1000 },
	};
	uint64_t off = DSTART;

	memset(f, 0, sizeof(*f));
	for (int i = 0; i < NREG; i++) {
		struct ckpt_region_meta *r = &f->r[i];

		r->name_len = (uint16_t)strlen(spec[i].name);
		memcpy(r->name, spec[i].name, r->name_len);
		r->transform = CKPT_TRANSFORM_NONE;
		r->codec = CKPT_CODEC_ZSTD;
		r->raw_size = spec[i].raw;
		r->chunk_raw = spec[i].chunk;
		r->raw_xxh3 = 0x1000 + (uint64_t)i;
		r->nchunks = spec[i].chunk ? (uint32_t)((spec[i].raw + spec[i].chunk - 1) /
							 spec[i].chunk) : 0;
		r->chunks = f->ch[i];
		for (uint32_t c = 0; c < r->nchunks; c++) {
			f->ch[i][c].offset = off;
			f->ch[i][c].stored_size = 100 + c;
			f->ch[i][c].stored_xxh3 = 0xc0ffee00ull + c;
			off += 100 + c;
		}
	}
}

/* Three regions of a raw (local-tier) shard: one chunk each, stored == raw size. */
static void make_local(struct fixture *f)
{
	static const char *names[3] = { "a", "bb", "zero" };
	static const uint64_t sizes[3] = { 5000, 8192, 0 };
	uint64_t off = DSTART;

	memset(f, 0, sizeof(*f));
	for (int i = 0; i < 3; i++) {
		struct ckpt_region_meta *r = &f->r[i];

		r->name_len = (uint16_t)strlen(names[i]);
		memcpy(r->name, names[i], r->name_len);
		r->codec = CKPT_CODEC_NONE;
		r->raw_size = sizes[i];
		r->chunk_raw = sizes[i];
		r->raw_xxh3 = 0x2000 + (uint64_t)i;
		r->nchunks = sizes[i] ? 1 : 0;
		r->chunks = f->ch[i];
		f->ch[i][0] = (struct ckpt_chunk){ off, sizes[i], 0xabc + (uint64_t)i, 0, 0 };
		off += (sizes[i] + 4095) / 4096 * 4096;
	}
}

static uint8_t *encode(const struct ckpt_region_meta *r, uint32_t n, size_t *len)
{
	uint8_t *b;

	*len = ckpt_fmt__index_size(r, n);
	b = malloc(*len + 64); /* room for trailing-garbage tests */
	if (b) {
		memset(b, 0x5a, *len + 64);
		ckpt_fmt__encode_index(b, r, n);
	}
	return b;
}

static int decode(const struct ckpt_region_meta *r, uint32_t n, int compressed)
{
	struct ckpt_index idx;
	struct ckpt_err err = { "" };
	size_t len;
	uint8_t *b = encode(r, n, &len);
	int rc;

	if (!b)
		return CKPT_ENOMEM;
	rc = ckpt_fmt__decode_index(&idx, b, len, n, DSTART, DEND, compressed, &err);
	if (rc == CKPT_OK)
		ckpt_fmt__index_free(&idx);
	else if (!err.msg[0])
		rc = 1; /* a refusal without a message: make the caller's assertion fail */
	free(b);
	return rc;
}

static void check_same(const struct ckpt_index *idx, const struct ckpt_region_meta *r, uint32_t n)
{
	CU_ASSERT_EQUAL_FATAL(idx->nregions, n);
	for (uint32_t i = 0; i < n; i++) {
		const struct ckpt_region_meta *a = &idx->regions[i], *b = &r[i];

		CU_ASSERT_EQUAL(a->name_len, b->name_len);
		CU_ASSERT_EQUAL(memcmp(a->name, b->name, b->name_len), 0);
		CU_ASSERT_EQUAL(a->name[a->name_len], '\0');
		CU_ASSERT_EQUAL(a->transform, b->transform);
		CU_ASSERT_EQUAL(a->codec, b->codec);
		CU_ASSERT_EQUAL(a->nchunks, b->nchunks);
		CU_ASSERT_EQUAL(a->raw_size, b->raw_size);
		CU_ASSERT_EQUAL(a->raw_xxh3, b->raw_xxh3);
		CU_ASSERT_EQUAL(a->chunk_raw, b->chunk_raw);
		for (uint32_t c = 0; c < b->nchunks && c < a->nchunks; c++) {
			CU_ASSERT_EQUAL(a->chunks[c].offset, b->chunks[c].offset);
			CU_ASSERT_EQUAL(a->chunks[c].stored_size, b->chunks[c].stored_size);
			CU_ASSERT_EQUAL(a->chunks[c].stored_xxh3, b->chunks[c].stored_xxh3);
		}
	}
}

static void test_index_roundtrip(void)
{
	struct fixture f;
	struct ckpt_index idx;
	size_t len;
	uint8_t *b;

	make_compressed(&f);
	b = encode(f.r, NREG, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_EQUAL(len, 4 * CKPT_REGION_ENTRY_SIZE + strlen("weights") + strlen("opt.state") +
			     strlen("empty") + strlen("x") + (4 + 1 + 0 + 3) * CKPT_CHUNK_ENTRY_SIZE);
	CU_ASSERT_EQUAL_FATAL(ckpt_fmt__decode_index(&idx, b, len, NREG, DSTART, DEND, 1, NULL),
			      CKPT_OK);
	check_same(&idx, f.r, NREG);
	CU_ASSERT_PTR_EQUAL(ckpt_fmt__find_region(&idx, "x"), &idx.regions[3]);
	CU_ASSERT_PTR_EQUAL(ckpt_fmt__find_region(&idx, "weights"), &idx.regions[0]);
	CU_ASSERT_PTR_NULL(ckpt_fmt__find_region(&idx, "weight"));
	CU_ASSERT_PTR_NULL(ckpt_fmt__find_region(&idx, ""));
	ckpt_fmt__index_free(&idx);
	CU_ASSERT_PTR_NULL(idx.regions);
	CU_ASSERT_EQUAL(idx.nregions, 0);
	ckpt_fmt__index_free(&idx);
	ckpt_fmt__index_free(NULL);
	/* the same bytes under the local tier's rules are refused (codec, chunk geometry) */
	CU_ASSERT_EQUAL(ckpt_fmt__decode_index(&idx, b, len, NREG, DSTART, DEND, 0, NULL),
			CKPT_ECORRUPT);
	free(b);

	make_local(&f);
	b = encode(f.r, 3, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_EQUAL_FATAL(ckpt_fmt__decode_index(&idx, b, len, 3, DSTART, DEND, 0, NULL),
			      CKPT_OK);
	check_same(&idx, f.r, 3);
	ckpt_fmt__index_free(&idx);
	CU_ASSERT_EQUAL(ckpt_fmt__decode_index(&idx, b, len, 3, DSTART, DEND, 1, NULL),
			CKPT_ECORRUPT);
	free(b);

	/* an empty index */
	CU_ASSERT_EQUAL(ckpt_fmt__index_size(NULL, 0), 0);
	{
		uint8_t dummy = 0;

		CU_ASSERT_EQUAL(ckpt_fmt__decode_index(&idx, &dummy, 0, 0, DSTART, DEND, 1, NULL),
				CKPT_OK);
		CU_ASSERT_EQUAL(idx.nregions, 0);
		ckpt_fmt__index_free(&idx);
		CU_ASSERT_EQUAL(ckpt_fmt__decode_index(&idx, &dummy, 1, 0, DSTART, DEND, 1, NULL),
				CKPT_ECORRUPT);
	}
	/* a name of exactly 255 bytes */
	make_compressed(&f);
	memset(f.r[1].name, 'n', 255);
	f.r[1].name_len = 255;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_OK);
}

/* The encoded index entry layout is pinned too. */
static void test_index_golden(void)
{
	struct ckpt_chunk ch = { 0x0102030405060708ull, 0x20, 0x3132333435363738ull, 0, 0 };
	struct ckpt_region_meta r;
	uint8_t buf[CKPT_REGION_ENTRY_SIZE + 2 + CKPT_CHUNK_ENTRY_SIZE];
	static const uint8_t want[sizeof(buf)] = {
		0x02, 0x00,                                     /*  0 name length */
		0x00,                                           /*  2 transform */
		0x01,                                           /*  3 codec: zstd */
		0x01, 0x00, 0x00, 0x00,                         /*  4 chunk count */
		0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /*  8 raw size 4096 */
		0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, /* 16 raw xxh3 */
		0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, /* 24 chunk raw 64K */
		0, 0, 0, 0, 0, 0, 0, 0,                         /* 32 reserved */
		'w', '0',                                       /* 40 name */
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* chunk offset */
		0x20, 0, 0, 0, 0, 0, 0, 0,                      /* stored size */
		0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31, /* stored xxh3 */
	};

	memset(&r, 0, sizeof(r));
	memcpy(r.name, "w0", 2);
	r.name_len = 2;
	r.codec = CKPT_CODEC_ZSTD;
	r.nchunks = 1;
	r.raw_size = 4096;
	r.raw_xxh3 = 0x1112131415161718ull;
	r.chunk_raw = 65536;
	r.chunks = &ch;
	CU_ASSERT_EQUAL_FATAL(ckpt_fmt__index_size(&r, 1), sizeof(buf));
	memset(buf, 0xee, sizeof(buf));
	ckpt_fmt__encode_index(buf, &r, 1);
	CU_ASSERT_EQUAL(memcmp(buf, want, sizeof(want)), 0);
}

static void test_index_truncated(void)
{
	struct fixture f;
	struct ckpt_index idx;
	size_t len;
	uint8_t *b;

	make_compressed(&f);
	b = encode(f.r, NREG, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	for (size_t l = 0; l < len; l++) {
		int rc = ckpt_fmt__decode_index(&idx, b, l, NREG, DSTART, DEND, 1, NULL);

		if (rc != CKPT_ECORRUPT) {
			fprintf(stderr, "index truncated to %zu of %zu bytes: rc %d\n", l, len, rc);
			CU_FAIL("truncated index accepted");
		}
		CU_ASSERT_PTR_NULL(idx.regions);
	}
	/* trailing garbage: the index must fill its buffer exactly */
	for (size_t extra = 1; extra <= 64; extra *= 2)
		CU_ASSERT_EQUAL(ckpt_fmt__decode_index(&idx, b, len + extra, NREG, DSTART, DEND, 1,
						       NULL), CKPT_ECORRUPT);
	/* a region count that disagrees with the bytes */
	CU_ASSERT_EQUAL(ckpt_fmt__decode_index(&idx, b, len, NREG - 1, DSTART, DEND, 1, NULL),
			CKPT_ECORRUPT);
	CU_ASSERT_EQUAL(ckpt_fmt__decode_index(&idx, b, len, NREG + 1, DSTART, DEND, 1, NULL),
			CKPT_ECORRUPT);
	free(b);
}

static void test_index_chunk_bounds(void)
{
	struct fixture f;

	/* offsets must lie in [data_start, data_end) and the chunk must end by data_end */
	make_compressed(&f);
	f.ch[0][0].offset = DSTART - 1;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	make_compressed(&f);
	f.ch[0][2].offset = 0;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	make_compressed(&f);
	f.ch[3][2].offset = DEND;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	make_compressed(&f);
	f.ch[3][2].offset = DEND - f.ch[3][2].stored_size + 1; /* ends one byte past data_end */
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	make_compressed(&f);
	f.ch[3][2].offset = DEND - f.ch[3][2].stored_size; /* ends exactly at data_end: fine */
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_OK);
	make_compressed(&f);
	f.ch[1][0].offset = UINT64_MAX - 10; /* offset + size would wrap around */
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	make_compressed(&f);
	f.ch[1][0].stored_size = UINT64_MAX;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);

	/* compressed chunks: not empty, not implausibly larger than their raw bytes */
	make_compressed(&f);
	f.ch[0][1].stored_size = 0;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	make_compressed(&f);
	f.ch[0][1].stored_size = 2 * 1000 + 65536 + 1;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	make_compressed(&f);
	f.ch[0][1].stored_size = 2 * 1000 + 65536;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_OK);

	/* local tier: the one chunk holds exactly the raw bytes, inside the data area */
	make_local(&f);
	f.ch[0][0].stored_size = 4999;
	CU_ASSERT_EQUAL(decode(f.r, 3, 0), CKPT_ECORRUPT);
	make_local(&f);
	f.ch[1][0].offset = DEND - 8191;
	CU_ASSERT_EQUAL(decode(f.r, 3, 0), CKPT_ECORRUPT);
	make_local(&f);
	f.ch[1][0].offset = DSTART - 4096;
	CU_ASSERT_EQUAL(decode(f.r, 3, 0), CKPT_ECORRUPT);
	make_local(&f);
	CU_ASSERT_EQUAL(decode(f.r, 3, 0), CKPT_OK);
}

static void test_index_chunk_counts(void)
{
	struct fixture f;

	/* 4000 raw bytes in chunks of 1000 are 4 chunks: 3 or 5 is corrupt */
	make_compressed(&f);
	f.r[0].nchunks = 3;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	make_compressed(&f);
	f.r[0].nchunks = 5;
	f.ch[0][4] = (struct ckpt_chunk){ DSTART, 10, 0, 0, 0 };
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	/* an empty region has no chunk */
	make_compressed(&f);
	f.r[2].nchunks = 1;
	f.ch[2][0] = (struct ckpt_chunk){ DSTART, 10, 0, 0, 0 };
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	/* a chunk size of 0 for a non-empty region */
	make_compressed(&f);
	f.r[1].chunk_raw = 0;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	/* an empty region has chunk size 0: readers size their buffers by it (fuzz_shard found a
	 * 3760-byte shard whose empty region's 2^42 made ckpt_shard__verify ask for 4 TiB) */
	make_compressed(&f);
	f.r[2].chunk_raw = 1ull << 42;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	make_local(&f);
	f.r[2].chunk_raw = 4096;
	CU_ASSERT_EQUAL(decode(f.r, 3, 0), CKPT_ECORRUPT);
	/* compressed chunks above the 1 GiB bound */
	make_compressed(&f);
	f.r[1].chunk_raw = CKPT_MAX_CHUNK_RAW + 1;
	f.r[1].raw_size = CKPT_MAX_CHUNK_RAW + 1;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	/* a count of 2^32-1 with a tiny buffer: refused without allocating it */
	make_compressed(&f);
	f.r[1].raw_size = 0xffffffffull;
	f.r[1].chunk_raw = 1;
	f.r[1].nchunks = 1; /* encode writes one entry; patch the count below */
	{
		struct ckpt_index idx;
		size_t len;
		uint8_t *b = encode(f.r, NREG, &len);
		size_t off = CKPT_REGION_ENTRY_SIZE + f.r[0].name_len +
			     f.r[0].nchunks * CKPT_CHUNK_ENTRY_SIZE;

		CU_ASSERT_PTR_NOT_NULL_FATAL(b);
		ckpt_fmt__put32(b + off + 4, 0xffffffffu);
		CU_ASSERT_EQUAL(ckpt_fmt__decode_index(&idx, b, len, NREG, DSTART, DEND, 1, NULL),
				CKPT_ECORRUPT);
		free(b);
	}
	/* local tier: exactly one chunk per non-empty region */
	make_local(&f);
	f.r[0].nchunks = 2;
	f.ch[0][1] = f.ch[0][0];
	CU_ASSERT_EQUAL(decode(f.r, 3, 0), CKPT_ECORRUPT);
	make_local(&f);
	f.r[0].chunk_raw = 1000; /* 5 chunks of 1000 would be needed */
	CU_ASSERT_EQUAL(decode(f.r, 3, 0), CKPT_ECORRUPT);
	make_local(&f);
	f.r[1].nchunks = 0;
	CU_ASSERT_EQUAL(decode(f.r, 3, 0), CKPT_ECORRUPT);
}

static void test_index_names(void)
{
	struct fixture f;

	make_compressed(&f);
	f.r[0].name_len = 0;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	make_compressed(&f);
	memset(f.r[0].name, 'n', 256);
	f.r[0].name_len = 256;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	/* an embedded NUL (the decoded name would silently read "a") */
	make_compressed(&f);
	memcpy(f.r[3].name, "a\0b", 3);
	f.r[3].name_len = 3;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	make_compressed(&f);
	memcpy(f.r[3].name, "ab\0", 3);
	f.r[3].name_len = 3;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	/* duplicates, adjacent or not */
	make_compressed(&f);
	memcpy(f.r[3].name, "weights", 7);
	f.r[3].name_len = 7;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	make_compressed(&f);
	memcpy(f.r[2].name, "x", 1);
	f.r[2].name_len = 1;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	/* a prefix is not a duplicate */
	make_compressed(&f);
	memcpy(f.r[3].name, "weightsX", 8);
	f.r[3].name_len = 8;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_OK);
}

static void test_index_codec_transform(void)
{
	struct fixture f;
	struct ckpt_index idx;
	struct ckpt_err err = { "" };
	size_t len;
	uint8_t *b;

	make_compressed(&f);
	f.r[1].transform = 2; /* unknown to this version: refused, named */
	b = encode(f.r, NREG, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_EQUAL(ckpt_fmt__decode_index(&idx, b, len, NREG, DSTART, DEND, 1, &err),
			CKPT_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "transform 2, unknown"));
	free(b);
	make_compressed(&f);
	f.r[1].transform = 255;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	/* the codec must match the tier */
	make_compressed(&f);
	f.r[2].codec = CKPT_CODEC_NONE;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	make_compressed(&f);
	f.r[0].codec = 7;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	make_local(&f);
	f.r[1].codec = CKPT_CODEC_ZSTD;
	CU_ASSERT_EQUAL(decode(f.r, 3, 0), CKPT_ECORRUPT);
	make_local(&f);
	f.r[2].codec = 9;
	CU_ASSERT_EQUAL(decode(f.r, 3, 0), CKPT_ECORRUPT);
}

/* Transform 1 regions (docs/FORMAT.md 3.4, 3.8.1): 32-byte chunk entries with xform and width,
 * checked when the index is decoded. */
static void set_xform(struct fixture *f, uint8_t xform, uint8_t width)
{
	make_compressed(f);
	for (int i = 0; i < NREG; i++) {
		if (!f->r[i].raw_size)
			continue;
		f->r[i].transform = CKPT_TRANSFORM_CHUNKS;
		for (uint32_t c = 0; c < f->r[i].nchunks; c++) {
			f->ch[i][c].xform = xform;
			f->ch[i][c].width = width;
			f->ch[i][c].stored_size = 8 + 8 * width; /* the smallest payload */
		}
	}
}

static void test_index_chunk_transforms(void)
{
	struct fixture f;
	struct ckpt_index idx;
	struct ckpt_err err = { "" };
	size_t len, len0;
	uint8_t *b;

	make_compressed(&f);
	len0 = ckpt_fmt__index_size(f.r, NREG);
	set_xform(&f, CKPT_CHUNK_XFORM_BYTEGROUP, 2);
	b = encode(f.r, NREG, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	/* 8 more bytes per chunk entry: 4 + 1 + 3 chunks */
	CU_ASSERT_EQUAL(len, len0 + 8 * 8);
	CU_ASSERT_EQUAL_FATAL(ckpt_fmt__decode_index(&idx, b, len, NREG, DSTART, DEND, 1, &err),
			      CKPT_OK);
	check_same(&idx, f.r, NREG);
	CU_ASSERT_EQUAL(idx.regions[0].chunks[3].xform, 2);
	CU_ASSERT_EQUAL(idx.regions[0].chunks[3].width, 2);
	CU_ASSERT_EQUAL(idx.regions[2].transform, 0);
	ckpt_fmt__index_free(&idx);
	/* the entry's bytes: offset, stored_size, stored_xxh3, xform, width, 6 reserved zeros */
	{
		const uint8_t *e = b + CKPT_REGION_ENTRY_SIZE + 7; /* "weights" */

		CU_ASSERT_EQUAL(ckpt_fmt__get64(e + 8), 24);
		CU_ASSERT(e[24] == 2 && e[25] == 2);
		for (int k = 26; k < 32; k++)
			CU_ASSERT_EQUAL(e[k], 0);
	}
	free(b);
	set_xform(&f, CKPT_CHUNK_XFORM_PLAIN, 1);
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_OK);
	set_xform(&f, CKPT_CHUNK_XFORM_BYTEGROUP, 8);
	f.ch[1][0].stored_size = 72; /* opt.state: 10 raw bytes, at most 10 + 72 stored */
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_OK);
	/* an unknown chunk transform is refused at open, naming it */
	set_xform(&f, 3, 1);
	b = encode(f.r, NREG, &len);
	CU_ASSERT_EQUAL(ckpt_fmt__decode_index(&idx, b, len, NREG, DSTART, DEND, 1, &err),
			CKPT_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "chunk transform 3, unknown"));
	free(b);
	set_xform(&f, 0, 1);
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	/* widths that do not fit the transform */
	set_xform(&f, CKPT_CHUNK_XFORM_PLAIN, 2);
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	set_xform(&f, CKPT_CHUNK_XFORM_BYTEGROUP, 1);
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	set_xform(&f, CKPT_CHUNK_XFORM_BYTEGROUP, 3);
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	set_xform(&f, CKPT_CHUNK_XFORM_BYTEGROUP, 16);
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	/* stored sizes: below head + plane table, or above raw + 72 */
	set_xform(&f, CKPT_CHUNK_XFORM_BYTEGROUP, 4);
	f.ch[0][1].stored_size = 39;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	set_xform(&f, CKPT_CHUNK_XFORM_BYTEGROUP, 4);
	f.ch[1][0].stored_size = 10 + 73;
	CU_ASSERT_EQUAL(decode(f.r, NREG, 1), CKPT_ECORRUPT);
	/* reserved bytes are ignored */
	set_xform(&f, CKPT_CHUNK_XFORM_BYTEGROUP, 4);
	b = encode(f.r, NREG, &len);
	b[CKPT_REGION_ENTRY_SIZE + 7 + 30] = 0x77;
	CU_ASSERT_EQUAL_FATAL(ckpt_fmt__decode_index(&idx, b, len, NREG, DSTART, DEND, 1, &err),
			      CKPT_OK);
	ckpt_fmt__index_free(&idx);
	free(b);
	/* a local (raw) shard never has transform 1 */
	make_local(&f);
	f.r[0].transform = CKPT_TRANSFORM_CHUNKS;
	CU_ASSERT_EQUAL(decode(f.r, 3, 0), CKPT_ECORRUPT);
}

/* Runs fn in a child whose address space is capped a little above its current size: an
 * allocation driven by an untrusted count (hundreds of MB) then fails with ENOMEM instead of
 * going unnoticed. Returns the decode result, or 1000+ on a child failure. */
static int in_small_child(int (*fn)(void))
{
	pid_t pid;
	int st;

	fflush(NULL);
	if ((pid = fork()) < 0)
		return 1001;
	if (pid == 0) {
		unsigned long pages = 0;
		struct rlimit rl;
		FILE *f = fopen("/proc/self/statm", "r");

		if (f) {
			if (fscanf(f, "%lu", &pages) != 1)
				pages = 0;
			fclose(f);
		}
		if (pages) {
			rl.rlim_cur = rl.rlim_max = pages * (unsigned long)sysconf(_SC_PAGESIZE) +
						    (64ul << 20);
			setrlimit(RLIMIT_AS, &rl);
		}
		_exit(-fn()); /* CKPT codes are small negatives */
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return 1002;
	return -WEXITSTATUS(st);
}

static int decode_many_regions(void)
{
	struct ckpt_index idx;
	uint8_t buf[4096];
	int rc;

	memset(buf, 0, sizeof(buf));
	/* 2^20 regions (the format's limit) would need >= 40 MiB of index: this buffer has 4 KiB */
	rc = ckpt_fmt__decode_index(&idx, buf, sizeof(buf), CKPT_MAX_REGIONS, DSTART, DEND, 1, NULL);
	if (rc == CKPT_OK)
		ckpt_fmt__index_free(&idx);
	return rc;
}

static int decode_too_many_regions(void)
{
	struct ckpt_index idx;
	uint8_t buf[64] = { 0 };

	return ckpt_fmt__decode_index(&idx, buf, sizeof(buf), UINT32_MAX, DSTART, DEND, 1, NULL);
}

static void test_index_nregions(void)
{
	struct fixture f;
	struct ckpt_index idx;
	size_t len;
	uint8_t *b;

	CU_ASSERT_EQUAL(in_small_child(decode_many_regions), CKPT_ECORRUPT);
	CU_ASSERT_EQUAL(in_small_child(decode_too_many_regions), CKPT_ECORRUPT);
	/* a region count just above what the buffer can hold */
	make_compressed(&f);
	b = encode(f.r, NREG, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_EQUAL(ckpt_fmt__decode_index(&idx, b, len,
					       (uint32_t)(len / CKPT_REGION_ENTRY_SIZE + 1), DSTART,
					       DEND, 1, NULL), CKPT_ECORRUPT);
	CU_ASSERT_EQUAL(ckpt_fmt__decode_index(&idx, b, len, CKPT_MAX_REGIONS + 1, DSTART, DEND, 1,
					       NULL), CKPT_ECORRUPT);
	free(b);
}

/* Flip every bit of an encoded index: a decoder must never crash or read out of bounds (run
 * under valgrind/ASan to see the latter), and must refuse whatever breaks a structural rule. */
static void test_index_bitflips(void)
{
	struct fixture f;
	struct ckpt_index idx;
	size_t len;
	uint8_t *b, *copy;
	unsigned ok = 0, bad = 0;

	make_compressed(&f);
	b = encode(f.r, NREG, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	copy = malloc(len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(copy);
	for (size_t bit = 0; bit < len * 8; bit++) {
		int rc;

		memcpy(copy, b, len);
		copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		rc = ckpt_fmt__decode_index(&idx, copy, len, NREG, DSTART, DEND, 1, NULL);
		if (rc == CKPT_OK) {
			ok++;
			ckpt_fmt__index_free(&idx);
		} else {
			CU_ASSERT_EQUAL(rc, CKPT_ECORRUPT);
			bad++;
		}
	}
	/* Checksums live in the trailer, so some flips (in checksums, offsets) still parse; but
	 * every flip of a name length, codec, transform or count byte must be refused. */
	CU_ASSERT(bad > 0);
	CU_ASSERT(ok > 0);
	for (unsigned byte = 0; byte < 8; byte++) {
		for (unsigned bit = 0; bit < 8; bit++) {
			memcpy(copy, b, len);
			copy[byte] ^= (uint8_t)(1u << bit);
			CU_ASSERT_EQUAL(ckpt_fmt__decode_index(&idx, copy, len, NREG, DSTART, DEND,
							       1, NULL), CKPT_ECORRUPT);
		}
	}
	free(copy);
	free(b);
}

static void test_chunk_raw(void)
{
	struct ckpt_region_meta r;

	memset(&r, 0, sizeof(r));
	r.raw_size = 2500;
	r.chunk_raw = 1000;
	CU_ASSERT_EQUAL(ckpt_fmt__chunk_raw(&r, 0), 1000);
	CU_ASSERT_EQUAL(ckpt_fmt__chunk_raw(&r, 1), 1000);
	CU_ASSERT_EQUAL(ckpt_fmt__chunk_raw(&r, 2), 500);
	r.raw_size = 3000;
	CU_ASSERT_EQUAL(ckpt_fmt__chunk_raw(&r, 2), 1000);
	r.raw_size = 5;
	CU_ASSERT_EQUAL(ckpt_fmt__chunk_raw(&r, 0), 5);
	r.raw_size = 1;
	r.chunk_raw = 1;
	CU_ASSERT_EQUAL(ckpt_fmt__chunk_raw(&r, 0), 1);
	/* sizes beyond 32 bits */
	r.raw_size = (1ull << 40) + 1;
	r.chunk_raw = 1ull << 30;
	CU_ASSERT_EQUAL(ckpt_fmt__chunk_raw(&r, 0), 1ull << 30);
	CU_ASSERT_EQUAL(ckpt_fmt__chunk_raw(&r, 1023), 1ull << 30);
	CU_ASSERT_EQUAL(ckpt_fmt__chunk_raw(&r, 1024), 1);
	/* the chunk sizes add up to the region */
	{
		uint64_t sum = 0;

		r.raw_size = 12345677;
		r.chunk_raw = 65536;
		for (uint32_t i = 0; i < (r.raw_size + r.chunk_raw - 1) / r.chunk_raw; i++)
			sum += ckpt_fmt__chunk_raw(&r, i);
		CU_ASSERT_EQUAL(sum, r.raw_size);
	}
}

static void test_le_helpers(void)
{
	uint8_t b[8];

	ckpt_fmt__put64(b, 0x0123456789abcdefull);
	CU_ASSERT_EQUAL(b[0], 0xef);
	CU_ASSERT_EQUAL(b[7], 0x01);
	CU_ASSERT_EQUAL(ckpt_fmt__get64(b), 0x0123456789abcdefull);
	ckpt_fmt__put32(b, 0xdeadbeefu);
	CU_ASSERT_EQUAL(b[0], 0xef);
	CU_ASSERT_EQUAL(b[3], 0xde);
	CU_ASSERT_EQUAL(ckpt_fmt__get32(b), 0xdeadbeefu);
	ckpt_fmt__put64(b, UINT64_MAX);
	CU_ASSERT_EQUAL(ckpt_fmt__get64(b), UINT64_MAX);
	CU_ASSERT_EQUAL(ckpt_fmt__get32(b + 4), UINT32_MAX);
}

int main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("fmt", NULL, NULL);
	if (!s || !CU_add_test(s, "header round trip", test_header_roundtrip) ||
	    !CU_add_test(s, "header bit flips", test_header_bitflips) ||
	    !CU_add_test(s, "header truncated", test_header_truncated) ||
	    !CU_add_test(s, "header semantics", test_header_semantics) ||
	    !CU_add_test(s, "header golden bytes", test_header_golden) ||
	    !CU_add_test(s, "trailer", test_trailer) ||
	    !CU_add_test(s, "manifest", test_manifest) ||
	    !CU_add_test(s, "index round trip", test_index_roundtrip) ||
	    !CU_add_test(s, "index golden bytes", test_index_golden) ||
	    !CU_add_test(s, "index truncated", test_index_truncated) ||
	    !CU_add_test(s, "index chunk bounds", test_index_chunk_bounds) ||
	    !CU_add_test(s, "index chunk counts", test_index_chunk_counts) ||
	    !CU_add_test(s, "index names", test_index_names) ||
	    !CU_add_test(s, "index codec and transform", test_index_codec_transform) ||
	    !CU_add_test(s, "index chunk transforms", test_index_chunk_transforms) ||
	    !CU_add_test(s, "index region count", test_index_nregions) ||
	    !CU_add_test(s, "index bit flips", test_index_bitflips) ||
	    !CU_add_test(s, "chunk_raw", test_chunk_raw) ||
	    !CU_add_test(s, "little-endian helpers", test_le_helpers)) {
		CU_cleanup_registry();
		return 1;
	}
	return th_run();
}
