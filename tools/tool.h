/* SPDX-License-Identifier: MIT */
/* Helpers of the ckpt operator tool (private): parallel shard decoding, JSON, progress, sizes. */
#ifndef CKPT_TOOL_H
#define CKPT_TOOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "ckpt.h"
#include "error.h"
#include "shard.h"

/* Exit statuses of every subcommand, documented in ckpt(1) and ckpt-restore(1). Pinned: scripts
 * and init containers test them. */
enum {
	TOOL_EXIT_OK = 0,      /* success */
	TOOL_EXIT_NOTHING = 1, /* nothing to restore / verify: no committed step (or not step N) */
	TOOL_EXIT_DAMAGED = 2, /* the requested step, or every step, is damaged */
	TOOL_EXIT_IO = 3,      /* an I/O or system error (unwritable, full, unreadable, memory) */
	TOOL_EXIT_USAGE = 64,  /* bad usage (EX_USAGE of sysexits.h) */
};

/* ---- tool_read.c ---- */

/* The decoded regions of one shard, in one anonymous mapping: each region starts at a
 * CKPT_ALIGN-aligned address, so that the O_DIRECT local writer sends it to the device without a
 * copy. */
struct tool_shard_data {
	void *mem;
	size_t len;
	ckpt_region *regs; /* n entries; names point into the shard's index */
	size_t n;
};

/*
 * Decompress every region of the compressed shard s with `nthreads` threads, checking each
 * chunk's stored XXH3 before the decompressor sees it and each region's XXH3 afterwards.
 * `progress` (may be NULL) grows by the raw bytes of every chunk decoded. With out NULL the data
 * is verified and dropped. CKPT_ECORRUPT for any mismatch (message in err), CKPT_EIO etc. for
 * read failures, CKPT_ENOMEM. On failure *out is empty.
 * The shard stays owned by the caller and must outlive the call; s->idx names are borrowed by
 * out->regs.
 */
int tool_read_shard(struct tool_shard_data *out, struct ckpt_shard *s, unsigned nthreads,
		    _Atomic uint64_t *progress, struct ckpt_err *err);
void tool_shard_data_free(struct tool_shard_data *d); /* empty or NULL: no-op */

/* ---- tool_out.c ---- */

/* A minimal streaming JSON writer: one document, compact, on one line. */
struct tool_json {
	FILE *f;
	int depth;
	int first[64];
};

void tool_json_init(struct tool_json *j, FILE *f);
/* key is NULL inside arrays and for the top-level value. */
void tool_json_obj(struct tool_json *j, const char *key);
void tool_json_arr(struct tool_json *j, const char *key);
void tool_json_end(struct tool_json *j, char close); /* '}' or ']'; a newline after the last */
void tool_json_str(struct tool_json *j, const char *key, const char *v); /* NULL: null */
void tool_json_u64(struct tool_json *j, const char *key, uint64_t v);
void tool_json_num(struct tool_json *j, const char *key, double v);
void tool_json_bool(struct tool_json *j, const char *key, int v);
void tool_json_null(struct tool_json *j, const char *key);

/* "1.50 GiB" (long) or "1.5G" (short) into buf. */
void tool_size(char *buf, size_t len, uint64_t bytes, int short_form);
/* "2024-05-01 12:00:03" (local time) into buf; "-" for 0. */
void tool_time(char *buf, size_t len, uint64_t ns);
/* "2024-05-01T12:00:03Z" (UTC) into buf. */
void tool_time_iso(char *buf, size_t len, uint64_t ns);
double tool_now(void); /* monotonic seconds */

/* A progress bar on stderr: bytes, rate, ETA, redrawn by its own thread every 200 ms. It draws
 * only when enabled (stderr is a terminal and the user did not ask for --quiet). */
struct tool_progress {
	_Atomic uint64_t done;
	uint64_t total;
	unsigned scale;
	int enabled;
	double t0;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	int running;
	char label[96];
	uint64_t track_cap;     /* a write in progress: count up to this many bytes it writes */
	uint64_t wb0, wc0;      /* /proc/self/io counters when it started */
};

void tool_progress_init(struct tool_progress *p, int enabled);
/* Start drawing a bar towards `total` units (p->done counts them); the bar shows bytes of
 * units / scale (a restore counts each byte twice: decompressed, then written). */
void tool_progress_begin(struct tool_progress *p, uint64_t total, unsigned scale);
void tool_progress_label(struct tool_progress *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A write that reports no progress of its own (ckpt_shard__write_local) is about to send `cap`
 * bytes: until untrack, the bar adds what this process writes, up to cap, to p->done. The caller
 * adds cap to p->done itself when the write is over. */
void tool_progress_track_writes(struct tool_progress *p, uint64_t cap);
void tool_progress_untrack(struct tool_progress *p);
/* Stop drawing and erase the bar, so that what follows starts on a clean line. */
void tool_progress_end(struct tool_progress *p);
void tool_progress_destroy(struct tool_progress *p);
/* Print a message on stderr, erasing the bar first (the next redraw puts it back below). */
void tool_progress_msg(struct tool_progress *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- doctor.c ---- */

/* `ckpt doctor ARGS` (argv[0] is "doctor"): filesystem, persistence verdict, free space and
 * bandwidth of both tiers, io_uring, MPI build, cluster, launcher rank, and the effective
 * configuration with origins; human-readable or --json. Returns the exit status (ckpt(1)). */
int tool_doctor_main(int argc, char **argv);

#endif
