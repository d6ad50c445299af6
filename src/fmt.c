/* SPDX-License-Identifier: MIT */
/* Encoding and validating decoding of shard headers, indexes, trailers and manifests.
 * Pure functions over buffers: everything read from disk is untrusted, so every count and size is
 * bounds-checked before it is used to allocate or index. */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "ckpt.h"
#include "fmt.h"

static const uint8_t header_magic[8] = { 'C', 'K', 'P', 'T', 'S', 'H', 'R', 'D' };
static const uint8_t trailer_magic[8] = { 'C', 'K', 'P', 'T', 'T', 'R', 'L', 'R' };
static const uint8_t manifest_magic[8] = { 'C', 'K', 'P', 'T', 'M', 'N', 'F', 'S' };

void ckpt_fmt__put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void ckpt_fmt__put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

uint64_t ckpt_fmt__get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

uint32_t ckpt_fmt__get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* The XXH3-64 that seals a header, trailer or MANIFEST (docs/FORMAT.md 1). The only hash call
 * outside codec.c: fmt sits below codec (codec reads index entries that fmt defines), so fmt
 * cannot use codec's hash; both are the same one-line call into libxxhash. */
static uint64_t checksum(const void *p, size_t n)
{
	return XXH3_64bits(p, n);
}

#define put64 ckpt_fmt__put64
#define put32 ckpt_fmt__put32
#define get64 ckpt_fmt__get64
#define get32 ckpt_fmt__get32

void ckpt_fmt__encode_header(uint8_t out[CKPT_HEADER_SIZE], const struct ckpt_header *h)
{
	memset(out, 0, CKPT_HEADER_SIZE);
	memcpy(out, header_magic, 8);
	put32(out + 8, h->version);
	put32(out + 12, h->flags);
	put64(out + 16, h->step);
	put64(out + 24, h->save_id);
	put32(out + 32, h->rank);
	put32(out + 36, h->nranks);
	put32(out + 40, h->nregions);
	put32(out + 44, h->data_offset);
	put64(out + 48, h->created_ns);
	put64(out + 56, checksum(out, 56));
}

int ckpt_fmt__decode_header(struct ckpt_header *h, const uint8_t *buf, size_t len,
			    struct ckpt_err *err)
{
	if (len < CKPT_HEADER_SIZE)
		return ckpt_err__set(err, CKPT_ECORRUPT, "shard header truncated (%zu bytes)", len);
	if (memcmp(buf, header_magic, 8))
		return ckpt_err__set(err, CKPT_ECORRUPT, "not a libckpt shard (bad magic)");
	if (get64(buf + 56) != checksum(buf, 56))
		return ckpt_err__set(err, CKPT_ECORRUPT, "shard header checksum mismatch");
	h->version = get32(buf + 8);
	h->flags = get32(buf + 12);
	h->step = get64(buf + 16);
	h->save_id = get64(buf + 24);
	h->rank = get32(buf + 32);
	h->nranks = get32(buf + 36);
	h->nregions = get32(buf + 40);
	h->data_offset = get32(buf + 44);
	h->created_ns = get64(buf + 48);
	if (h->version != CKPT_FMT_VERSION)
		return ckpt_err__set(err, CKPT_ECORRUPT,
				     "shard format version %u is not supported (this library reads %u)",
				     h->version, CKPT_FMT_VERSION);
	if (h->flags & ~CKPT_FLAG_COMPRESSED)
		return ckpt_err__set(err, CKPT_ECORRUPT, "shard header has unknown flags 0x%x",
				     h->flags);
	if (h->nranks == 0 || h->nranks > CKPT_MAX_RANKS || h->rank >= h->nranks)
		return ckpt_err__set(err, CKPT_ECORRUPT, "shard header: rank %u of %u is invalid",
				     h->rank, h->nranks);
	if (h->nregions > CKPT_MAX_REGIONS)
		return ckpt_err__set(err, CKPT_ECORRUPT, "shard header: %u regions is too many",
				     h->nregions);
	if (h->data_offset < CKPT_HEADER_SIZE)
		return ckpt_err__set(err, CKPT_ECORRUPT, "shard header: data offset %u overlaps it",
				     h->data_offset);
	return CKPT_OK;
}

void ckpt_fmt__encode_trailer(uint8_t out[CKPT_TRAILER_SIZE], const struct ckpt_trailer *t)
{
	memset(out, 0, CKPT_TRAILER_SIZE);
	memcpy(out, trailer_magic, 8);
	put64(out + 8, t->index_offset);
	put64(out + 16, t->index_size);
	put64(out + 24, t->index_xxh3);
	put64(out + 32, t->raw_total);
	put64(out + 40, t->file_size);
	put64(out + 48, t->save_id);
	put64(out + 56, checksum(out, 56));
}

int ckpt_fmt__decode_trailer(struct ckpt_trailer *t, const uint8_t *buf, size_t len,
			     struct ckpt_err *err)
{
	if (len < CKPT_TRAILER_SIZE)
		return ckpt_err__set(err, CKPT_ECORRUPT, "shard trailer truncated");
	if (memcmp(buf, trailer_magic, 8))
		return ckpt_err__set(err, CKPT_ECORRUPT,
				     "shard trailer missing (file truncated or incomplete)");
	if (get64(buf + 56) != checksum(buf, 56))
		return ckpt_err__set(err, CKPT_ECORRUPT, "shard trailer checksum mismatch");
	t->index_offset = get64(buf + 8);
	t->index_size = get64(buf + 16);
	t->index_xxh3 = get64(buf + 24);
	t->raw_total = get64(buf + 32);
	t->file_size = get64(buf + 40);
	t->save_id = get64(buf + 48);
	return CKPT_OK;
}

size_t ckpt_fmt__chunk_entry_size(const struct ckpt_region_meta *r)
{
	return r->transform == CKPT_TRANSFORM_CHUNKS ? CKPT_CHUNK_ENTRY_SIZE_X : CKPT_CHUNK_ENTRY_SIZE;
}

size_t ckpt_fmt__index_size(const struct ckpt_region_meta *r, uint32_t n)
{
	size_t sz = 0;

	for (uint32_t i = 0; i < n; i++)
		sz += CKPT_REGION_ENTRY_SIZE + r[i].name_len +
		      (size_t)r[i].nchunks * ckpt_fmt__chunk_entry_size(&r[i]);
	return sz;
}

void ckpt_fmt__encode_index(uint8_t *out, const struct ckpt_region_meta *r, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		put16(out, r[i].name_len);
		out[2] = r[i].transform;
		out[3] = r[i].codec;
		put32(out + 4, r[i].nchunks);
		put64(out + 8, r[i].raw_size);
		put64(out + 16, r[i].raw_xxh3);
		put64(out + 24, r[i].chunk_raw);
		put64(out + 32, 0); /* reserved */
		memcpy(out + CKPT_REGION_ENTRY_SIZE, r[i].name, r[i].name_len);
		out += CKPT_REGION_ENTRY_SIZE + r[i].name_len;
		for (uint32_t c = 0; c < r[i].nchunks; c++) {
			put64(out, r[i].chunks[c].offset);
			put64(out + 8, r[i].chunks[c].stored_size);
			put64(out + 16, r[i].chunks[c].stored_xxh3);
			if (r[i].transform == CKPT_TRANSFORM_CHUNKS) {
				out[24] = r[i].chunks[c].xform;
				out[25] = r[i].chunks[c].width;
				memset(out + 26, 0, 6); /* reserved */
			}
			out += ckpt_fmt__chunk_entry_size(&r[i]);
		}
	}
}

uint64_t ckpt_fmt__chunk_raw(const struct ckpt_region_meta *r, uint32_t i)
{
	uint64_t start = (uint64_t)i * r->chunk_raw;

	return r->raw_size - start < r->chunk_raw ? r->raw_size - start : r->chunk_raw;
}

void ckpt_fmt__index_free(struct ckpt_index *idx)
{
	if (!idx || !idx->regions)
		return;
	for (uint32_t i = 0; i < idx->nregions; i++)
		free(idx->regions[i].chunks);
	free(idx->regions);
	idx->regions = NULL;
	idx->nregions = 0;
}

static int cmp_name(const void *a, const void *b)
{
	const struct ckpt_region_meta *x = *(const struct ckpt_region_meta *const *)a;
	const struct ckpt_region_meta *y = *(const struct ckpt_region_meta *const *)b;

	return strcmp(x->name, y->name);
}

/* Names must be unique; sort pointers to find duplicates in n log n. */
static int check_unique(const struct ckpt_index *idx, struct ckpt_err *err)
{
	const struct ckpt_region_meta **v;
	int rc = CKPT_OK;

	if (idx->nregions < 2)
		return CKPT_OK;
	if (!(v = malloc(idx->nregions * sizeof(*v))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory checking region names");
	for (uint32_t i = 0; i < idx->nregions; i++)
		v[i] = &idx->regions[i];
	qsort(v, idx->nregions, sizeof(*v), cmp_name);
	for (uint32_t i = 1; i < idx->nregions; i++)
		if (!strcmp(v[i - 1]->name, v[i]->name)) {
			rc = ckpt_err__set(err, CKPT_ECORRUPT, "shard index: region '%s' appears twice",
					   v[i]->name);
			break;
		}
	free(v);
	return rc;
}

/* The transform fields of chunk entry c of a transform 1 region (docs/FORMAT.md 3.7, step 4):
 * a known chunk transform, a width that fits it, and a stored size between the smallest payload
 * of that width and the largest a writer makes (raw bytes + head + plane table). */
static int check_xform_entry(struct ckpt_region_meta *r, uint32_t c, const uint8_t *p,
			     struct ckpt_err *err)
{
	struct ckpt_chunk *ch = &r->chunks[c];
	uint64_t raw = ckpt_fmt__chunk_raw(r, c);

	ch->xform = p[24];
	ch->width = p[25];
	if (ch->xform != CKPT_CHUNK_XFORM_PLAIN && ch->xform != CKPT_CHUNK_XFORM_BYTEGROUP)
		return ckpt_err__set(err, CKPT_ECORRUPT,
				     "region '%s' chunk %u uses chunk transform %u, unknown to this "
				     "version", r->name, c, ch->xform);
	if (ch->xform == CKPT_CHUNK_XFORM_PLAIN ? ch->width != 1 :
	    (ch->width != 2 && ch->width != 4 && ch->width != 8))
		return ckpt_err__set(err, CKPT_ECORRUPT,
				     "region '%s' chunk %u: element width %u is invalid for chunk "
				     "transform %u", r->name, c, ch->width, ch->xform);
	if (ch->stored_size < 8 + 8 * (uint64_t)ch->width || ch->stored_size > raw + 72)
		return ckpt_err__set(err, CKPT_ECORRUPT,
				     "region '%s' chunk %u: %llu bytes stored for %llu raw", r->name,
				     c, (unsigned long long)ch->stored_size, (unsigned long long)raw);
	return CKPT_OK;
}

int ckpt_fmt__decode_index(struct ckpt_index *out, const uint8_t *buf, size_t len,
			   uint32_t nregions, uint64_t data_start, uint64_t data_end,
			   int compressed, struct ckpt_err *err)
{
	struct ckpt_index idx = { 0, NULL };
	size_t pos = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (nregions > CKPT_MAX_REGIONS)
		return ckpt_err__set(err, CKPT_ECORRUPT, "shard index: too many regions");
	/* Each region needs at least its fixed entry: bound the allocation by the buffer. */
	if ((uint64_t)nregions * CKPT_REGION_ENTRY_SIZE > len)
		return ckpt_err__set(err, CKPT_ECORRUPT, "shard index: %u regions do not fit %zu bytes",
				     nregions, len);
	if (nregions && !(idx.regions = calloc(nregions, sizeof(*idx.regions))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory reading shard index");
	idx.nregions = nregions;
	for (uint32_t i = 0; i < nregions; i++) {
		struct ckpt_region_meta *r = &idx.regions[i];
		const uint8_t *p;
		uint64_t expect;
		size_t esz;

		if (len - pos < CKPT_REGION_ENTRY_SIZE)
			goto trunc;
		p = buf + pos;
		r->name_len = get16(p);
		r->transform = p[2];
		r->codec = p[3];
		r->nchunks = get32(p + 4);
		r->raw_size = get64(p + 8);
		r->raw_xxh3 = get64(p + 16);
		r->chunk_raw = get64(p + 24);
		pos += CKPT_REGION_ENTRY_SIZE;
		if (r->name_len == 0 || r->name_len > CKPT_NAME_MAX || len - pos < r->name_len)
			goto bad;
		memcpy(r->name, buf + pos, r->name_len);
		r->name[r->name_len] = '\0';
		if (memchr(r->name, '\0', r->name_len))
			goto bad;
		pos += r->name_len;
		if (r->transform != CKPT_TRANSFORM_NONE && r->transform != CKPT_TRANSFORM_CHUNKS) {
			rc = ckpt_err__set(err, CKPT_ECORRUPT,
					   "region '%s' uses transform %u, unknown to this version",
					   r->name, r->transform);
			ckpt_fmt__index_free(&idx);
			return rc;
		}
		if (r->codec != (compressed ? CKPT_CODEC_ZSTD : CKPT_CODEC_NONE))
			goto bad;
		/* chunk transforms exist only in compressed shards (docs/FORMAT.md 3.4) */
		if (r->transform == CKPT_TRANSFORM_CHUNKS && !compressed)
			goto bad;
		esz = ckpt_fmt__chunk_entry_size(r);
		/* Chunk geometry must follow from the sizes, so a reader never trusts counts alone. */
		if (r->raw_size == 0) {
			/* an empty region has no chunk, and no chunk size to allocate for */
			if (r->chunk_raw != 0)
				goto bad;
			expect = 0;
		} else {
			if (r->chunk_raw == 0 || (compressed && r->chunk_raw > CKPT_MAX_CHUNK_RAW))
				goto bad;
			expect = r->raw_size / r->chunk_raw + (r->raw_size % r->chunk_raw != 0);
			if (!compressed && expect != 1)
				goto bad;
		}
		if (r->nchunks != expect)
			goto bad;
		if ((uint64_t)r->nchunks * esz > len - pos)
			goto trunc;
		if (r->nchunks && !(r->chunks = calloc(r->nchunks, sizeof(*r->chunks)))) {
			ckpt_fmt__index_free(&idx);
			return ckpt_err__set(err, CKPT_ENOMEM, "out of memory reading shard index");
		}
		for (uint32_t c = 0; c < r->nchunks; c++) {
			struct ckpt_chunk *ch = &r->chunks[c];

			p = buf + pos;
			ch->offset = get64(p);
			ch->stored_size = get64(p + 8);
			ch->stored_xxh3 = get64(p + 16);
			pos += esz;
			if (ch->offset < data_start || ch->offset > data_end ||
			    ch->stored_size > data_end - ch->offset)
				goto bad;
			if (!compressed && ch->stored_size != r->raw_size)
				goto bad;
			if (r->transform == CKPT_TRANSFORM_CHUNKS) {
				if ((rc = check_xform_entry(r, c, p, err)) < 0) {
					ckpt_fmt__index_free(&idx);
					return rc;
				}
			} else if (compressed &&
				   (ch->stored_size == 0 ||
				    ch->stored_size > 2 * ckpt_fmt__chunk_raw(r, c) + 65536)) {
				goto bad;
			}
		}
	}
	if (pos != len)
		goto bad;
	if ((rc = check_unique(&idx, err)) < 0) {
		ckpt_fmt__index_free(&idx);
		return rc;
	}
	*out = idx;
	return CKPT_OK;
trunc:
	ckpt_fmt__index_free(&idx);
	return ckpt_err__set(err, CKPT_ECORRUPT, "shard index truncated");
bad:
	ckpt_fmt__index_free(&idx);
	return ckpt_err__set(err, CKPT_ECORRUPT, "shard index entry is invalid (at byte %zu)", pos);
}

const struct ckpt_region_meta *ckpt_fmt__find_region(const struct ckpt_index *idx,
						     const char *name)
{
	for (uint32_t i = 0; i < idx->nregions; i++)
		if (!strcmp(idx->regions[i].name, name))
			return &idx->regions[i];
	return NULL;
}

size_t ckpt_fmt__manifest_size(uint32_t nranks)
{
	return CKPT_MANIFEST_HEAD + (size_t)nranks * CKPT_MANIFEST_RANK + 8;
}

void ckpt_fmt__encode_manifest(uint8_t *out, const struct ckpt_manifest *m)
{
	size_t n = ckpt_fmt__manifest_size(m->nranks);

	memset(out, 0, n);
	memcpy(out, manifest_magic, 8);
	put32(out + 8, m->version);
	put32(out + 12, m->nranks);
	put64(out + 16, m->step);
	put64(out + 24, m->save_id);
	put64(out + 32, m->created_ns);
	put64(out + 40, 0); /* reserved */
	for (uint32_t r = 0; r < m->nranks; r++) {
		uint8_t *p = out + CKPT_MANIFEST_HEAD + (size_t)r * CKPT_MANIFEST_RANK;

		put64(p, m->ranks[r].file_size);
		put64(p + 8, m->ranks[r].index_xxh3);
		put64(p + 16, m->ranks[r].raw_bytes);
		put32(p + 24, m->ranks[r].nregions);
		put32(p + 28, 0);
	}
	put64(out + n - 8, checksum(out, n - 8));
}

int ckpt_fmt__decode_manifest(struct ckpt_manifest *m, const uint8_t *buf, size_t len,
			      struct ckpt_err *err)
{
	uint32_t nranks;

	memset(m, 0, sizeof(*m));
	if (len < ckpt_fmt__manifest_size(1) || memcmp(buf, manifest_magic, 8))
		return ckpt_err__set(err, CKPT_ECORRUPT, "not a libckpt manifest (%zu bytes)", len);
	nranks = get32(buf + 12);
	if (nranks == 0 || nranks > CKPT_MAX_RANKS || len != ckpt_fmt__manifest_size(nranks))
		return ckpt_err__set(err, CKPT_ECORRUPT, "manifest size %zu does not fit %u ranks",
				     len, nranks);
	if (get64(buf + len - 8) != checksum(buf, len - 8))
		return ckpt_err__set(err, CKPT_ECORRUPT, "manifest checksum mismatch");
	m->version = get32(buf + 8);
	if (m->version != CKPT_FMT_VERSION)
		return ckpt_err__set(err, CKPT_ECORRUPT, "manifest version %u is not supported",
				     m->version);
	m->nranks = nranks;
	m->step = get64(buf + 16);
	m->save_id = get64(buf + 24);
	m->created_ns = get64(buf + 32);
	if (!(m->ranks = calloc(nranks, sizeof(*m->ranks))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory reading manifest");
	for (uint32_t r = 0; r < nranks; r++) {
		const uint8_t *p = buf + CKPT_MANIFEST_HEAD + (size_t)r * CKPT_MANIFEST_RANK;

		m->ranks[r].file_size = get64(p);
		m->ranks[r].index_xxh3 = get64(p + 8);
		m->ranks[r].raw_bytes = get64(p + 16);
		m->ranks[r].nregions = get32(p + 24);
	}
	return CKPT_OK;
}

void ckpt_fmt__manifest_free(struct ckpt_manifest *m)
{
	if (m) {
		free(m->ranks);
		m->ranks = NULL;
	}
}
