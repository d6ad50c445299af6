/* SPDX-License-Identifier: MIT */
/* The ckpt operator tool (private): the command table, options and context (ckpt.c), the job
 * directories (tool_job.c), each command's result and the one printer that renders it as text or
 * JSON (tool_print.c), parallel shard decoding (tool_read.c), JSON, sizes, progress (tool_out.c).
 * Each command lives in tools/cmd_<name>.c. */
#ifndef CKPT_TOOL_H
#define CKPT_TOOL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "ckpt.h"
#include "config.h"
#include "error.h"
#include "shard.h"
#include "storage.h"
#include "store.h"

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
	uint64_t *xxh3;    /* n entries: each region's XXH3-64 from the index (what is verified) */
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

/*
 * The restore's read, in the background: tool_read_start starts `nthreads` threads decoding the
 * shard's chunks in order into a ring of a few chunk-sized slots (memory bounded whatever the
 * shard's size), while the caller writes what is ready. tool_read_next (a ckpt_shard_next_fn,
 * arg the reader) hands over region i's bytes from offset off on, up to the end of their chunk,
 * once they are hashed in order; the region's last chunk only once its checksum matched; len 0
 * once the region is whole. Asking for region bytes hands back every slot before them, so the
 * caller asks in order (regions in order, each from 0 to its end). Any damage anywhere in the
 * shard makes every later tool_read_next fail with it. tool_read_cancel stops the threads early
 * (the writer failed). tool_read_finish joins them, frees the reader and returns the first
 * decoding failure (err), or CKPT_OK (also after a cancel).
 */
struct tool_reader;
int tool_read_start(struct tool_reader **out, struct ckpt_shard *s, unsigned nthreads,
		    _Atomic uint64_t *progress, struct ckpt_err *err);
int tool_read_next(void *reader, size_t i, uint64_t off, const void **p, size_t *len,
		   struct ckpt_err *err);
void tool_read_cancel(struct tool_reader *rd);
int tool_read_finish(struct tool_reader *rd, struct ckpt_err *err);

/* What the drain chose for each stored chunk of compressed shards (docs/FORMAT.md 3.8), counted
 * from their indexes without reading data: `ckpt ls` and `ckpt verify` report it. */
struct tool_xstats {
	uint64_t chunks;       /* stored chunks */
	uint64_t zstd;         /* one zstd frame, no transform (a transform 0 region: files written
				* before chunk transforms, or with chunk_transform=0) */
	uint64_t plain;        /* a transform payload of the bytes as they are, compressed */
	uint64_t w2, w4, w8;   /* byte-grouped by element width 2, 4, 8 */
	uint64_t raw;          /* stored as they are (a plain payload with its one plane raw) */
	uint64_t raw_bytes, stored_bytes; /* of those chunks: their ratio is the data's ratio */
};

struct tool_xregion {
	char *name;
	struct tool_xstats x;
};

/* One step (or shard): every chunk, and per region name (summed over the shards added). */
struct tool_xform {
	struct tool_xstats all;
	struct tool_xregion *regs;
	size_t nregs;
};

/* Add the chunks of the compressed shard s (its index). -1 when out of memory. */
int tool_xform_add(struct tool_xform *x, const struct ckpt_shard *s);
void tool_xform_free(struct tool_xform *x); /* NULL-safe; leaves it empty */

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

/* ---- ckpt.c: the command table, options, messages ---- */

/* Every option of every command. A command names those it takes (TOOL_OPT bits); one parser
 * reads them all, so that an option means the same thing wherever it applies and one of another
 * command is refused by name ("does not apply to ls"). */
enum tool_opt {
	OPT_SHARED_DIR, OPT_LOCAL_DIR, OPT_NAME, OPT_STEP, OPT_ALL, OPT_RANK, OPT_THREADS,
	OPT_VERIFY_ONLY, OPT_DRY_RUN, OPT_KEEP_SHARED, OPT_KEEP_LOCAL, OPT_MIN_AGE, OPT_SET,
	OPT_BYTES, OPT_DURABLE, OPT_JSON, OPT_QUIET, OPT_HELP, OPT_VERSION,
	OPT__COUNT
};
#define TOOL_OPT(o) (1u << OPT_##o)
/* Taken by every command. */
#define TOOL_OPTS_COMMON (TOOL_OPT(JSON) | TOOL_OPT(QUIET) | TOOL_OPT(HELP) | TOOL_OPT(VERSION))

struct tool_range {
	uint32_t lo, hi;
};

/* The parsed command line, over the CKPT_* environment. */
struct tool_opts {
	ckpt_config *cfg;                /* shared_dir, local_dir, name, io settings, ... */
	const char *shared_dir, *local_dir, *name; /* borrowed from cfg; dirs may be NULL */
	int name_given;                  /* --name or CKPT_NAME, not the default */
	char shared_job[CKPT_PATH_MAX], local_job[CKPT_PATH_MAX]; /* <dir>/<name>, "" when unset */
	char config_error[CKPT_ERRMSG_MAX]; /* a bad CKPT_* variable, for commands that report it */
	int have_step;
	uint64_t step;
	struct tool_range *ranks;        /* NULL: every rank */
	size_t nranges;
	unsigned threads;
	int all, verify_only, dry_run, json, quiet;
	int durable;                     /* restore: wait until the local copy is on the device */
	int have_keep_shared, have_keep_local;
	unsigned keep_shared, keep_local;
	double min_age;                  /* seconds */
	uint64_t bytes;                  /* doctor's bandwidth test */
};

struct tool_ctx;
struct tool_result;

/* A subcommand: one entry of the table in ckpt.c, defined in its own cmd_<name>.c. */
struct tool_cmd {
	const char *name;
	const char *alias;      /* another name it answers to, or NULL */
	/* Does the work and fills res (nothing on stdout: tool_print renders res); returns the
	 * exit status. Problems go to stderr as they happen (tool_say). */
	int (*run)(struct tool_ctx *t, struct tool_result *res);
	unsigned opts;          /* TOOL_OPT bits */
	unsigned flags;         /* TOOL_CMD_* */
	const char *synopsis;   /* its options, lines separated by '\n' */
	const char *summary;    /* what it does, for `ckpt --help` */
	const char *help;       /* what `ckpt CMD --help` says after the synopsis */
	const char *exits;      /* its exit statuses, the end of `ckpt CMD --help` */
};
/* A bad CKPT_* variable is a finding the command reports (in o.config_error), not bad usage. */
#define TOOL_CMD_REPORTS_CONFIG 1u

extern const struct tool_cmd tool_cmd_ls, tool_cmd_verify, tool_cmd_gc, tool_cmd_restore,
	tool_cmd_doctor;

/* What a command runs with: no global state, so that every piece of it can be read alone. */
struct tool_ctx {
	const char *prog;             /* "ckpt" or "ckpt-restore": the first word of messages */
	const struct tool_cmd *cmd;
	struct tool_opts o;
	struct tool_progress pg;      /* the progress bar; also serializes messages on stderr */
};

/* A warning or error on stderr, printed even with --quiet: quiet silences the summary and the
 * progress bar, never a problem. */
void tool_say(struct tool_ctx *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "prog: message" and where to find help, on stderr; returns TOOL_EXIT_USAGE. */
int tool_usage_error(struct tool_ctx *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- tool_job.c: the job directories as the commands see them ---- */

/* A directory the user named must exist: a missing one usually means an unmounted volume, and
 * creating it would put checkpoints on the wrong filesystem. Returns an exit status or -1. */
int tool_need_dir(struct tool_ctx *t, const char *key, const char *dir);
/* The rule of ckpt_open: the shared copy may not live inside the local directory. Returns
 * TOOL_EXIT_USAGE, or -1 when the tiers are apart (or cannot be resolved). */
int tool_check_tiers(struct tool_ctx *t);
int tool_rank_selected(const struct tool_opts *o, uint32_t r);
uint32_t tool_rank_max(const struct tool_opts *o);
/* Ranks with a local shard file (rank-NNNNNN.ckl) in stepdir, ascending, into a malloc'd *out.
 * 0 (none, or no such directory) or more; -1 when out of memory. */
long tool_local_files(const char *stepdir, uint32_t **out);
/* Does dir look like a libckpt job directory: a step directory (step-<20 digits>) or a rank
 * lock (.lock-rank-N) in it (docs/FORMAT.md section 2)? */
int tool_is_job_dir(const char *dir);
/* "dir/step-<20 digits>" into buf. */
void tool_step_path(char *buf, size_t len, const char *job, uint64_t step);

/* ---- results: what each command found, for the one printer (tool_print.c) ---- */

/* ls: one step of one job, as both tiers show it. */
struct tool_ls_row {
	uint64_t step;
	const char *state;    /* committed, damaged, local only, local, incomplete */
	uint32_t nranks;      /* 0: unknown */
	uint64_t raw, stored;
	uint64_t saved_ns, committed_ns;
	uint32_t *lranks;     /* local shards that open (structure verified) */
	size_t nl;
	uint32_t *lbad;       /* local shard files that do not */
	size_t nbad;
	int have_xf;          /* committed: the chunk transforms of every shard (xf) */
	struct tool_xform xf;
	char err[CKPT_ERRMSG_MAX];
};

struct tool_ls_job {
	char *name;
	struct tool_ls_row *rows;
	size_t nrows;
};

struct tool_ls {
	struct tool_ls_job *jobs;
	size_t njobs;
};

/* verify: one file checked. */
struct tool_check {
	const char *tier;     /* "shared" or "local" */
	int64_t rank;         /* -1: the step's MANIFEST */
	int rc;               /* CKPT_OK, CKPT_ECORRUPT (damaged), another code (error) */
	const char *note;     /* said of a good file in the text ("ok", another save, ...) */
	char err[CKPT_ERRMSG_MAX];
};

struct tool_verify_step {
	uint64_t step;
	uint32_t nranks;
	uint64_t raw;         /* bytes of the selected ranks */
	int bad;
	struct tool_check *checks;
	size_t n;
	struct tool_xform xf; /* the chunk transforms of the shared shards that opened */
};

struct tool_verify {
	struct tool_verify_step *steps;
	size_t n;
};

/* gc: one removal, done, planned (--dry-run) or failed. */
struct tool_gc_action {
	const char *tier;
	uint64_t step;
	int64_t rank;         /* -1: a whole step directory */
	const char *reason;
	int rc;
	char err[CKPT_ERRMSG_MAX];
};

struct tool_gc {
	struct tool_gc_action *acts;
	size_t n;
	size_t removed;       /* actions that succeeded (or would) */
	int have_newest;
	uint64_t newest;      /* the newest committed step */
};

/* restore: what happened to one rank. */
struct tool_restore_rank {
	uint32_t rank;
	const char *action;   /* restored, present, kept_newer, verified, would_restore, failed */
	int replaced;         /* a damaged or older local copy was replaced */
	uint64_t raw, stored;
};

struct tool_restore_damaged {
	uint64_t step;
	char msg[CKPT_ERRMSG_MAX];
};

struct tool_restore {
	int have_step;
	uint64_t step, save_id;
	uint32_t nranks;
	int fallback;         /* an older step than the newest committed one */
	struct tool_restore_rank *ranks;
	size_t nr;
	struct tool_restore_damaged *dmg;
	size_t nd;
	uint64_t raw, written;
	double secs;
	int durable;          /* --durable: the written copies were fdatasync'ed before exit */
	char error[2 * CKPT_ERRMSG_MAX];
};

/* doctor */
#define TOOL_DOC_MAX_NOTES 16
/* Exit statuses of `ckpt doctor` (ckpt(1)). 0 and 64 are every subcommand's; 3 is an I/O error
 * as everywhere. */
enum {
	TOOL_DOC_WARN = 1, /* ckpt_open would warn: shared_dir not persistent, local_dir on NFS */
	TOOL_DOC_FAIL = 2, /* ckpt_open would fail: a directory missing, bad config, refused verdict */
};

struct tool_bench {
	int ran;
	int direct;           /* O_DIRECT held for both passes */
	uint64_t bytes;
	double wsec, rsec;    /* write + fsync; read */
	char skipped[160];    /* why not measured, "" when measured or failed */
	char error[CKPT_ERRMSG_MAX];
};

struct tool_tier {
	const char *key;      /* "local_dir" / "shared_dir" */
	const char *dir;      /* as configured, NULL when unset */
	char real[PATH_MAX];
	int usable;           /* exists, is a directory, writable, classified */
	char error[CKPT_ERRMSG_MAX];
	struct ckpt_fsinfo fs;
	struct tool_bench bw;
};

struct tool_doctor {
	const ckpt_config *cfg;
	enum ckpt_cluster cluster;
	const char *cluster_why;
	int have_rank;
	uint32_t rank, size;
	const char *rank_src;
	struct tool_tier t[2];     /* local, shared */
	int have_verdict;
	enum ckpt_verdict verdict;
	char reason[CKPT_ERRMSG_MAX];
	int uring_built, uring_ok;
	char uring_msg[CKPT_ERRMSG_MAX];
	int mpi_built;
	char mpi_lib[256];
	char *warn[TOOL_DOC_MAX_NOTES], *fail[TOOL_DOC_MAX_NOTES], *info[TOOL_DOC_MAX_NOTES];
	size_t nwarn, nfail, ninfo;
	int io_error;
};

enum tool_kind { TOOL_NONE, TOOL_LS, TOOL_VERIFY, TOOL_GC, TOOL_RESTORE, TOOL_DOCTOR };

struct tool_result {
	enum tool_kind kind;  /* which member of u; set first by the command */
	int report;           /* 0: nothing for stdout (bad usage, or a failure before the command
			       * found anything: the message went to stderr) */
	int code;             /* the exit status */
	union {
		struct tool_ls ls;
		struct tool_verify verify;
		struct tool_gc gc;
		struct tool_restore restore;
		struct tool_doctor doctor;
	} u;
};

/* ---- tool_print.c: the one printer ---- */

/* Render res on stdout: one JSON object with --json, else the text (none with --quiet). */
void tool_print(const struct tool_ctx *t, const struct tool_result *res);
void tool_result_free(struct tool_result *res);
/* "ok", "nothing", "damaged", "io_error", "usage" */
const char *tool_status_name(int code);
/* `ckpt --help`, or `ckpt CMD --help` when cmd is not NULL (prog: "ckpt" or "ckpt-restore"). */
void tool_print_usage(FILE *f, const char *prog, const struct tool_cmd *cmd,
		      const struct tool_cmd *const *cmds);

#endif
