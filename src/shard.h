/* SPDX-License-Identifier: MIT */
/* Shard files: the full-speed local writer, and the verifying reader of both tiers. */
#ifndef CKPT_SHARD_H
#define CKPT_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"
#include "codec.h"
#include "fmt.h"
#include "io.h"
#include "store.h"

/* Aligned bounce buffers and the io queue used by ckpt_save (one set per context). */
struct ckpt_writer {
	struct ckpt_io *io;
	void **bufs;        /* io->depth buffers of bufsize bytes, CKPT_ALIGN-aligned */
	size_t bufsize;
	struct ckpt_hash *hash; /* of the region being written */
};

int ckpt_shard__writer_new(struct ckpt_writer **out, enum ckpt_backend backend, unsigned depth,
			   struct ckpt_err *err);
void ckpt_shard__writer_free(struct ckpt_writer *w);

/*
 * Write one raw local shard durably as stepdir/final_base:
 * O_DIRECT writes (several in flight) of a header block, each region at a CKPT_ALIGN offset, and
 * an index block ending in the trailer; fdatasync; rename from a temporary name; fsync stepdir.
 * XXH3 of each region is computed while it is written. h->nregions must equal n.
 * On failure nothing is left under final_base (the temporary file is removed).
 */
int ckpt_shard__write_local(struct ckpt_writer *w, const char *stepdir, const char *final_base,
			    const struct ckpt_header *h, const ckpt_region *regs, size_t n,
			    const char *fault_kill_at, struct ckpt_err *err);

/* An open, structurally validated shard (header, trailer and index checksums verified). */
struct ckpt_shard {
	int fd;
	uint64_t file_size;
	struct ckpt_header hdr;
	struct ckpt_trailer trl;
	struct ckpt_index idx;
	char path[CKPT_PATH_MAX];
};

int ckpt_shard__open(struct ckpt_shard **out, const char *path, struct ckpt_err *err);
void ckpt_shard__close(struct ckpt_shard *s);
/* Read region r into buf (r->raw_size bytes), verifying every chunk checksum (compressed tier)
 * and the region checksum. codec may be NULL for a raw shard. */
int ckpt_shard__read_region(struct ckpt_shard *s, const struct ckpt_region_meta *r, void *buf,
			    struct ckpt_codec *codec, struct ckpt_err *err);
/* Verify every checksum of every region (reads all data). */
int ckpt_shard__verify(struct ckpt_shard *s, struct ckpt_codec *codec, struct ckpt_err *err);

#endif
