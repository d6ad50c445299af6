/* SPDX-License-Identifier: MIT */
/* ckpt: the operator's command for libckpt checkpoints (ls, verify, gc, restore); installed a
 * second time as ckpt-restore, which behaves as `ckpt restore`.
 *
 * It works on the files alone, with no MPI launcher and no running job: the layout and the
 * checks are those of the library (store.c, step.c, shard.c), linked in from its internal
 * convenience library, so that the tool and the library can never disagree about what a valid
 * step is. Local shards are written by the library's own writer (ckpt_shard__write_local), so a
 * restored file is byte for byte what ckpt_save wrote. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "codec.h"
#include "config.h"
#include "shard.h"
#include "step.h"
#include "storage.h"
#include "store.h"
#include "tool.h"

/* ---------------------------------------------------------------------------------------------
 * Options
 */

struct range {
	uint32_t lo, hi;
};

enum cmd { CMD_LS, CMD_VERIFY, CMD_GC, CMD_RESTORE };

struct opts {
	enum cmd cmd;
	ckpt_config *cfg;
	const char *shared_dir, *local_dir, *name;
	int name_given;
	char shared_job[CKPT_PATH_MAX], local_job[CKPT_PATH_MAX];
	int have_step;
	uint64_t step;
	struct range *ranks; /* NULL: every rank */
	size_t nranges;
	unsigned threads;
	int verify_only, dry_run, json, quiet, all;
	int have_keep_shared, have_keep_local;
	unsigned keep_shared, keep_local;
	double min_age;
};

static const char *prog = "ckpt";
static struct tool_progress pg; /* also serializes messages on stderr */

/* A warning or error on stderr, printed even with --quiet: quiet silences the summary and the
 * progress bar, never a problem. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char msg[2 * CKPT_ERRMSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	tool_progress_msg(&pg, "%s: %s\n", prog, msg);
}

static const char usage_restore[] =
	"usage: %s --shared-dir DIR --local-dir DIR --name NAME [--step N]\n"
	"       [--rank R[,R-R...]|auto] [--threads N] [--verify-only] [--dry-run] [--json]\n"
	"       [--quiet]\n"
	"Brings the newest committed step (or step N) of job NAME from the shared volume back to\n"
	"the local directory in the library's local format. Options default to CKPT_SHARED_DIR,\n"
	"CKPT_LOCAL_DIR and CKPT_NAME.\n";

static const char usage_main[] =
	"usage: ckpt COMMAND [OPTIONS]\n"
	"  ls       [--shared-dir DIR] [--local-dir DIR] [--name NAME] [--json]\n"
	"           list jobs and their steps on both tiers\n"
	"  verify   --shared-dir DIR [--local-dir DIR] --name NAME [--step N | --all]\n"
	"           [--rank LIST] [--threads N] [--json] [--quiet]\n"
	"           verify every checksum of a step (default: the newest committed one)\n"
	"  gc       --shared-dir DIR [--local-dir DIR] --name NAME [--keep-shared N]\n"
	"           [--keep-local N] [--min-age SECONDS] [--dry-run] [--json] [--quiet]\n"
	"           remove abandoned incomplete steps, apply retention by hand\n"
	"  restore  --shared-dir DIR --local-dir DIR --name NAME [--step N] [--rank LIST]\n"
	"           [--threads N] [--verify-only] [--dry-run] [--json] [--quiet]\n"
	"           bring a committed step back to the local directory (also: ckpt-restore)\n"
	"  doctor   [--shared-dir DIR] [--local-dir DIR] [--set KEY=VALUE]... [--bytes SIZE]\n"
	"           [--json] [--quiet]\n"
	"           check the directories (filesystem, persistence, free space, bandwidth),\n"
	"           io_uring, the MPI build and the effective configuration\n"
	"  help     this text\n"
	"--rank auto means this process's rank, from the launcher's environment\n"
	"(OMPI_COMM_WORLD_RANK, PMI_RANK, MV2_COMM_WORLD_RANK, PMIX_RANK, SLURM_PROCID).\n"
	"Directories and name default to CKPT_SHARED_DIR, CKPT_LOCAL_DIR, CKPT_NAME.\n"
	"Exit status: 0 success; 1 nothing to restore or verify (no committed step);\n"
	"2 damaged (the requested step, or every step); 3 I/O error; 64 bad usage.\n"
	"See ckpt(1) and ckpt-restore(1).\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	char msg[CKPT_ERRMSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\nTry '%s --help'.\n", prog, msg, prog);
	return TOOL_EXIT_USAGE;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return (errno || *end) ? -1 : 0;
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
	uint64_t v;

	if (parse_u64(s, &v) || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* "3", "0,2", "4-7,9", "all", or "auto": this process's rank from its launcher (srun, mpirun),
 * so that `srun ckpt-restore --rank auto` restores one shard per task. */
static int parse_ranks(struct opts *o, const char *s)
{
	const char *p = s;

	free(o->ranks);
	o->ranks = NULL;
	o->nranges = 0;
	if (!strcmp(s, "all"))
		return 0;
	if (!strcmp(s, "auto")) {
		uint32_t r;

		if (ckpt_storage__launcher_rank(&r, NULL, NULL) < 0 || r >= CKPT_MAX_RANKS ||
		    !(o->ranks = malloc(sizeof(*o->ranks))))
			return -2;
		o->ranks[0] = (struct range){ r, r };
		o->nranges = 1;
		return 0;
	}
	while (*p) {
		uint64_t lo, hi;
		char *end;
		struct range *nr;

		if (*p < '0' || *p > '9')
			return -1;
		errno = 0;
		lo = hi = strtoull(p, &end, 10);
		if (*end == '-') {
			p = end + 1;
			if (*p < '0' || *p > '9')
				return -1;
			hi = strtoull(p, &end, 10);
		}
		if (errno || lo > hi || hi >= CKPT_MAX_RANKS || (*end && *end != ','))
			return -1;
		if (!(nr = realloc(o->ranks, (o->nranges + 1) * sizeof(*nr))))
			return -1;
		o->ranks = nr;
		o->ranks[o->nranges++] = (struct range){ (uint32_t)lo, (uint32_t)hi };
		p = *end ? end + 1 : end;
		if (*end == ',' && !*p)
			return -1;
	}
	return o->nranges ? 0 : -1;
}

static int rank_selected(const struct opts *o, uint32_t r)
{
	if (!o->ranks)
		return 1;
	for (size_t i = 0; i < o->nranges; i++)
		if (r >= o->ranks[i].lo && r <= o->ranks[i].hi)
			return 1;
	return 0;
}

static uint32_t rank_max(const struct opts *o)
{
	uint32_t m = 0;

	for (size_t i = 0; i < o->nranges; i++)
		if (o->ranks[i].hi > m)
			m = o->ranks[i].hi;
	return m;
}

static unsigned default_threads(void)
{
	cpu_set_t set;
	long n;

	/* The CPUs this process may run on (a container's or a job step's share), not the host's. */
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		n = CPU_COUNT(&set);
	else
		n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 256 ? 256 : (unsigned)n;
}

enum {
	O_SHARED = 256, O_LOCAL, O_NAME, O_STEP, O_RANK, O_THREADS, O_VERIFY_ONLY, O_DRY_RUN,
	O_JSON, O_KEEP_SHARED, O_KEEP_LOCAL, O_MIN_AGE, O_ALL, O_VERSION,
};

/* Which options each command takes. */
static int allowed(enum cmd c, int opt)
{
	switch (opt) {
	case O_SHARED: case O_LOCAL: case O_NAME: case O_JSON: case 'q': case 'h': case O_VERSION:
		return 1;
	case O_STEP: case O_RANK: case O_THREADS:
		return c == CMD_RESTORE || c == CMD_VERIFY;
	case O_VERIFY_ONLY:
		return c == CMD_RESTORE;
	case O_DRY_RUN:
		return c == CMD_RESTORE || c == CMD_GC;
	case O_ALL:
		return c == CMD_VERIFY;
	case O_KEEP_SHARED: case O_KEEP_LOCAL: case O_MIN_AGE:
		return c == CMD_GC;
	}
	return 0;
}

static const char *cmd_name(enum cmd c)
{
	static const char *n[] = { "ls", "verify", "gc", "restore" };

	return n[c];
}

/* Returns -1 to go on, else the exit status. */
static int parse_opts(struct opts *o, int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "shared-dir", required_argument, NULL, O_SHARED },
		{ "local-dir", required_argument, NULL, O_LOCAL },
		{ "name", required_argument, NULL, O_NAME },
		{ "step", required_argument, NULL, O_STEP },
		{ "rank", required_argument, NULL, O_RANK },
		{ "ranks", required_argument, NULL, O_RANK },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "verify-only", no_argument, NULL, O_VERIFY_ONLY },
		{ "dry-run", no_argument, NULL, O_DRY_RUN },
		{ "json", no_argument, NULL, O_JSON },
		{ "quiet", no_argument, NULL, 'q' },
		{ "keep-shared", required_argument, NULL, O_KEEP_SHARED },
		{ "keep-local", required_argument, NULL, O_KEEP_LOCAL },
		{ "min-age", required_argument, NULL, O_MIN_AGE },
		{ "all", no_argument, NULL, O_ALL },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, O_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	struct ckpt_err err = { "" };
	int c, rc;

	o->threads = default_threads();
	o->min_age = 60;
	if ((rc = ckpt_config_new(&o->cfg)) < 0) {
		fprintf(stderr, "%s: %s\n", prog, ckpt_strerror(rc));
		return TOOL_EXIT_IO;
	}
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":qh", lopts, NULL)) != -1) {
		const char *key = NULL;
		char *end;

		if (c == '?')
			return usage_error("unknown option '%s'", argv[optind - 1]);
		if (c == ':')
			return usage_error("option '%s' needs a value", argv[optind - 1]);
		if (!allowed(o->cmd, c))
			return usage_error("option '%s' does not apply to %s", argv[optind - 1],
					   o->cmd == CMD_RESTORE ? "restore" : cmd_name(o->cmd));
		switch (c) {
		case O_SHARED: key = "shared_dir"; break;
		case O_LOCAL: key = "local_dir"; break;
		case O_NAME: key = "name"; break;
		case O_STEP:
			if (parse_u64(optarg, &o->step) || o->step == UINT64_MAX)
				return usage_error("bad step '%s'", optarg);
			o->have_step = 1;
			break;
		case O_RANK:
			if ((rc = parse_ranks(o, optarg)) == -2)
				return usage_error("--rank auto: no rank in the environment (set by srun "
						   "or mpirun: SLURM_PROCID, OMPI_COMM_WORLD_RANK, "
						   "PMI_RANK, PMIX_RANK)");
			if (rc)
				return usage_error("bad rank list '%s' (e.g. 0 or 0,2 or 4-7, auto)",
						   optarg);
			break;
		case O_THREADS:
			if (parse_uint(optarg, 1024, &o->threads) || !o->threads)
				return usage_error("bad thread count '%s' (1 to 1024)", optarg);
			break;
		case O_VERIFY_ONLY: o->verify_only = 1; break;
		case O_DRY_RUN: o->dry_run = 1; break;
		case O_JSON: o->json = 1; break;
		case 'q': o->quiet = 1; break;
		case O_ALL: o->all = 1; break;
		case O_KEEP_SHARED:
			if (parse_uint(optarg, 1000000, &o->keep_shared))
				return usage_error("bad --keep-shared '%s'", optarg);
			o->have_keep_shared = 1;
			break;
		case O_KEEP_LOCAL:
			if (parse_uint(optarg, 1000000, &o->keep_local))
				return usage_error("bad --keep-local '%s'", optarg);
			o->have_keep_local = 1;
			break;
		case O_MIN_AGE:
			errno = 0;
			o->min_age = strtod(optarg, &end);
			if (!*optarg || *end || errno || !(o->min_age >= 0) || o->min_age > 1e9)
				return usage_error("bad --min-age '%s' (seconds)", optarg);
			break;
		case 'h':
			if (o->cmd == CMD_RESTORE && strcmp(prog, "ckpt"))
				printf(usage_restore, prog);
			else
				fputs(usage_main, stdout);
			if (o->cmd == CMD_RESTORE && strcmp(prog, "ckpt"))
				printf("Exit status: 0 success; 1 nothing to restore; 2 damaged; "
				       "3 I/O error; 64 bad usage. See ckpt-restore(1).\n");
			return TOOL_EXIT_OK;
		case O_VERSION:
			printf("%s (libckpt) %s\n", prog, ckpt_version());
			return TOOL_EXIT_OK;
		}
		if (key && ckpt_config_set(o->cfg, key, optarg) < 0)
			return usage_error("%s", ckpt_config_errmsg(o->cfg));
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	/* A bad CKPT_* variable fails here as it would fail ckpt_open, unless overridden above. */
	if (ckpt_config__check(o->cfg, &err) < 0)
		return usage_error("%s", err.msg);
	o->shared_dir = o->cfg->shared_dir;
	o->local_dir = o->cfg->local_dir;
	o->name = o->cfg->name;
	for (size_t i = 0; ckpt_config__key(i); i++)
		if (!strcmp(ckpt_config__key(i), "name"))
			o->name_given = o->cfg->origin[i] != CKPT_FROM_DEFAULT;
	if (o->shared_dir &&
	    snprintf(o->shared_job, sizeof(o->shared_job), "%s/%s", o->shared_dir, o->name) >=
		    (int)sizeof(o->shared_job))
		return usage_error("shared_dir path too long");
	if (o->local_dir &&
	    snprintf(o->local_job, sizeof(o->local_job), "%s/%s", o->local_dir, o->name) >=
		    (int)sizeof(o->local_job))
		return usage_error("local_dir path too long");
	if (o->have_step && o->all)
		return usage_error("--step and --all exclude each other");
	return -1;
}

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 */

static const char *status_for(int code)
{
	switch (code) {
	case TOOL_EXIT_OK: return "ok";
	case TOOL_EXIT_NOTHING: return "nothing";
	case TOOL_EXIT_DAMAGED: return "damaged";
	case TOOL_EXIT_IO: return "io_error";
	default: return "usage";
	}
}

/* A directory the user named must exist: a missing one usually means an unmounted volume, and
 * creating it would put checkpoints on the wrong filesystem. Returns an exit status or -1. */
static int need_dir(const char *key, const char *dir)
{
	struct stat st;

	if (!dir)
		return usage_error("%s is not set (--%s or CKPT_%s)", key,
				   !strcmp(key, "shared_dir") ? "shared-dir" : "local-dir",
				   !strcmp(key, "shared_dir") ? "SHARED_DIR" : "LOCAL_DIR");
	if (stat(dir, &st) < 0) {
		say("%s %s: %s%s", key, dir, strerror(errno),
		    errno == ENOENT ? " (is the volume mounted?)" : "");
		return TOOL_EXIT_IO;
	}
	if (!S_ISDIR(st.st_mode)) {
		say("%s %s is not a directory", key, dir);
		return TOOL_EXIT_IO;
	}
	return -1;
}

/* The rule of ckpt_open: the shared copy may not live inside the local directory. */
static int check_tiers(const struct opts *o)
{
	char s[PATH_MAX], l[PATH_MAX];
	size_t n;

	if (!o->shared_dir || !o->local_dir || !realpath(o->shared_dir, s) ||
	    !realpath(o->local_dir, l))
		return -1;
	n = strlen(l);
	if ((n == 1 && l[0] == '/') || (!strncmp(s, l, n) && (s[n] == '\0' || s[n] == '/')))
		return usage_error("shared_dir %s is %s local_dir %s", s,
				   strcmp(s, l) ? "inside" : "the same directory as", l);
	return -1;
}

static int is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* rank-NNNNNN.ckl */
static int parse_local_name(const char *name, uint32_t *rank)
{
	uint64_t v = 0;
	size_t n = strlen(name), i;

	if (n < 5 + 6 + 4 || strncmp(name, "rank-", 5) || strcmp(name + n - 4, ".ckl"))
		return -1;
	for (i = 5; i < n - 4; i++) {
		if (name[i] < '0' || name[i] > '9' || v >= CKPT_MAX_RANKS)
			return -1;
		v = v * 10 + (uint64_t)(name[i] - '0');
	}
	*rank = (uint32_t)v;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Ranks with a local shard file in stepdir, ascending. */
static size_t local_files(const char *stepdir, uint32_t **out)
{
	DIR *d = opendir(stepdir);
	struct dirent *e;
	size_t n = 0, cap = 0;
	uint32_t r, *v = NULL, *nv;

	*out = NULL;
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		if (parse_local_name(e->d_name, &r))
			continue;
		if (n == cap) {
			if (!(nv = realloc(v, (cap = cap ? 2 * cap : 8) * sizeof(*v))))
				break;
			v = nv;
		}
		v[n++] = r;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), cmp_u32);
	*out = v;
	return n;
}

/* "0-3,5" */
static void rank_list(char *buf, size_t len, const uint32_t *r, size_t n)
{
	size_t pos = 0;

	buf[0] = '\0';
	if (!n) {
		snprintf(buf, len, "-");
		return;
	}
	for (size_t i = 0; i < n && pos < len;) {
		size_t j = i;

		while (j + 1 < n && r[j + 1] == r[j] + 1)
			j++;
		pos += (size_t)snprintf(buf + pos, len - pos, "%s%" PRIu32, i ? "," : "", r[i]);
		if (j > i && pos < len)
			pos += (size_t)snprintf(buf + pos, len - pos, "-%" PRIu32, r[j]);
		i = j + 1;
	}
}

static void step_path(char *buf, size_t len, const char *job, uint64_t step)
{
	ckpt_store__step_dir(buf, len, job, step);
}

/* ---------------------------------------------------------------------------------------------
 * restore
 */

struct rank_res {
	uint32_t rank;
	const char *action; /* restored, present, kept_newer, verified, would_restore, failed */
	int replaced;       /* a damaged or older local copy was replaced */
	uint64_t raw, stored;
};

struct damaged {
	uint64_t step;
	char msg[CKPT_ERRMSG_MAX];
};

struct result {
	int code;
	int have_step;
	uint64_t step, save_id;
	uint32_t nranks;
	struct rank_res *ranks;
	size_t nr;
	struct damaged *dmg;
	size_t nd;
	uint64_t raw, written;
	double secs;
	char error[2 * CKPT_ERRMSG_MAX];
};

enum local_state { L_NONE, L_SAME, L_NEWER, L_REPLACE };

/* What the local copy of rank r of the committed step m is, and whether it must be rewritten. */
static enum local_state local_state(const struct opts *o, const struct ckpt_manifest *m,
				    uint32_t r, struct ckpt_codec *codec)
{
	struct ckpt_shard *s;
	struct ckpt_err e = { "" };
	enum local_state st = L_REPLACE;

	int rc = ckpt_step__open_local(&s, o->local_job, m->step, r, &e);

	if (rc < 0) {
		if (rc == CKPT_ENOENT)
			return L_NONE;
		say("local copy of step %" PRIu64 " rank %" PRIu32 " is unusable, replacing it: %s",
		    m->step, r, e.msg);
		return L_REPLACE;
	}
	if (s->hdr.save_id == m->save_id && s->hdr.nranks == m->nranks)
		st = L_SAME;
	else if (s->hdr.created_ns > m->created_ns)
		st = L_NEWER; /* saved again after the commit and not drained yet: the only copy */
	if (st != L_REPLACE && ckpt_shard__verify(s, codec, &e) < 0) {
		say("local copy of step %" PRIu64 " rank %" PRIu32 " is damaged, replacing it: %s",
		    m->step, r, e.msg);
		st = L_REPLACE;
	}
	ckpt_shard__close(s);
	return st;
}

/* Restore (or verify, or plan) the selected ranks of the committed step m. On CKPT_ECORRUPT the
 * step is damaged, and the shards this call published are removed again so that the local tier
 * does not hold part of a step that will not be restored. *write_failed tells a failure of the
 * local tier (always an I/O error) from one of the shared tier. */
static int restore_step(const struct opts *o, const struct ckpt_manifest *m, struct result *res,
			struct ckpt_writer *w, struct ckpt_codec *codec, int *write_failed,
			struct ckpt_err *err)
{
	char dir[CKPT_PATH_MAX], base[64], path[CKPT_PATH_MAX + 64];
	uint32_t *published = NULL;
	size_t npub = 0;
	uint64_t total = 0;
	int rc = CKPT_OK, writing = !o->verify_only && !o->dry_run;
	double t0 = tool_now();

	*write_failed = 0;
	step_path(dir, sizeof(dir), o->local_job, m->step);
	free(res->ranks);
	res->nr = 0;
	res->raw = res->written = 0;
	if (!(res->ranks = calloc(m->nranks, sizeof(*res->ranks))) ||
	    !(published = calloc(m->nranks, sizeof(*published))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory");
	/* Progress counts each byte twice when it is written: once decompressed, once written. */
	for (uint32_t r = 0; r < m->nranks; r++)
		if (rank_selected(o, r))
			total += m->ranks[r].raw_bytes * (writing ? 2 : 1);
	tool_progress_begin(&pg, total, writing ? 2 : 1);
	for (uint32_t r = 0; r < m->nranks; r++) {
		struct rank_res *rr;
		struct ckpt_shard *sh = NULL;
		struct tool_shard_data data;
		struct ckpt_header h;
		enum local_state ls = L_NONE;

		if (!rank_selected(o, r))
			continue;
		rr = &res->ranks[res->nr++];
		*rr = (struct rank_res){ r, "failed", 0, m->ranks[r].raw_bytes,
					 m->ranks[r].file_size };
		res->raw += rr->raw;
		if ((rc = ckpt_step__open_shared(&sh, o->shared_job, m, r, err)) < 0)
			break;
		if (!o->verify_only) {
			ls = local_state(o, m, r, codec);
			if (ls == L_SAME || ls == L_NEWER) {
				rr->action = ls == L_SAME ? "present" : "kept_newer";
				if (ls == L_NEWER)
					say("step %" PRIu64 " rank %" PRIu32 ": the local copy is a newer "
					    "save, not yet committed; it is kept", m->step, r);
				atomic_fetch_add(&pg.done, rr->raw * (writing ? 2 : 1));
				ckpt_shard__close(sh);
				continue;
			}
			rr->replaced = ls == L_REPLACE;
		}
		if (o->dry_run && !o->verify_only) {
			rr->action = "would_restore";
			atomic_fetch_add(&pg.done, rr->raw);
			ckpt_shard__close(sh);
			continue;
		}
		tool_progress_label(&pg, "step %" PRIu64 " rank %" PRIu32 " %s", m->step, r,
				    writing ? "decompressing" : "verifying");
		rc = tool_read_shard(writing ? &data : NULL, sh, o->threads, &pg.done, err);
		if (rc < 0) {
			ckpt_shard__close(sh);
			break;
		}
		if (!writing) {
			rr->action = "verified";
			ckpt_shard__close(sh);
			continue;
		}
		/* The local header is the one ckpt_save wrote for this save: same step, save id,
		 * rank, rank count and creation time, so the library sees the committed save. */
		h = (struct ckpt_header){ CKPT_FMT_VERSION, 0, m->step, m->save_id, r, m->nranks,
					  (uint32_t)data.n, CKPT_ALIGN, sh->hdr.created_ns };
		ckpt_store__local_name(base, sizeof(base), r);
		tool_progress_label(&pg, "step %" PRIu64 " rank %" PRIu32 " writing", m->step, r);
		/* write_local: temporary name, O_DIRECT writes, fdatasync, rename, fsync of the
		 * directory. A kill before the rename leaves only a .tmp file of a dead process,
		 * which nothing reads and the next run (or ckpt_open) removes. */
		tool_progress_track_writes(&pg, rr->raw);
		if ((rc = ckpt_store__mkdirs(dir, err)) == CKPT_OK)
			rc = ckpt_shard__write_local(w, dir, base, &h, data.regs, data.n,
						     o->cfg->fault_kill_at, err);
		tool_progress_untrack(&pg);
		atomic_fetch_add(&pg.done, rr->raw);
		tool_shard_data_free(&data);
		ckpt_shard__close(sh);
		if (rc < 0) {
			*write_failed = 1;
			break;
		}
		published[npub++] = r;
		rr->action = "restored";
		res->written += rr->raw;
	}
	tool_progress_end(&pg);
	if (rc == CKPT_ECORRUPT && !*write_failed) {
		for (size_t i = 0; i < npub; i++) {
			ckpt_store__local_name(base, sizeof(base), published[i]);
			snprintf(path, sizeof(path), "%s/%s", dir, base);
			unlink(path);
		}
		if (npub)
			rmdir(dir); /* only when empty: other ranks' files stay */
	}
	res->secs = tool_now() - t0;
	free(published);
	return rc;
}

static void restore_json(const struct opts *o, const struct result *res, int fallback)
{
	struct tool_json j;

	tool_json_init(&j, stdout);
	tool_json_obj(&j, NULL);
	tool_json_str(&j, "command", "restore");
	tool_json_str(&j, "status", status_for(res->code));
	tool_json_u64(&j, "exit_code", (uint64_t)res->code);
	tool_json_str(&j, "job", o->name);
	tool_json_str(&j, "shared_dir", o->shared_dir);
	tool_json_str(&j, "local_dir", o->local_dir);
	if (o->have_step)
		tool_json_u64(&j, "requested_step", o->step);
	else
		tool_json_null(&j, "requested_step");
	if (res->have_step) {
		char id[24];

		tool_json_u64(&j, "step", res->step);
		snprintf(id, sizeof(id), "%016" PRIx64, res->save_id);
		tool_json_str(&j, "save_id", id);
		tool_json_u64(&j, "nranks", res->nranks);
	} else {
		tool_json_null(&j, "step");
	}
	tool_json_bool(&j, "fallback", fallback);
	tool_json_bool(&j, "verify_only", o->verify_only);
	tool_json_bool(&j, "dry_run", o->dry_run);
	tool_json_arr(&j, "ranks");
	for (size_t i = 0; i < res->nr; i++) {
		tool_json_obj(&j, NULL);
		tool_json_u64(&j, "rank", res->ranks[i].rank);
		tool_json_str(&j, "action", res->ranks[i].action);
		tool_json_bool(&j, "replaced", res->ranks[i].replaced);
		tool_json_u64(&j, "raw_bytes", res->ranks[i].raw);
		tool_json_u64(&j, "stored_bytes", res->ranks[i].stored);
		tool_json_end(&j, '}');
	}
	tool_json_end(&j, ']');
	tool_json_u64(&j, "raw_bytes", res->raw);
	tool_json_u64(&j, "written_bytes", res->written);
	tool_json_num(&j, "seconds", res->secs);
	tool_json_arr(&j, "damaged");
	for (size_t i = 0; i < res->nd; i++) {
		tool_json_obj(&j, NULL);
		tool_json_u64(&j, "step", res->dmg[i].step);
		tool_json_str(&j, "error", res->dmg[i].msg);
		tool_json_end(&j, '}');
	}
	tool_json_end(&j, ']');
	tool_json_str(&j, "error", res->error[0] ? res->error : NULL);
	tool_json_end(&j, '}');
}

static void restore_summary(const struct opts *o, const struct result *res)
{
	char raw[32], rate[32];
	size_t written = 0, present = 0, kept = 0;

	for (size_t i = 0; i < res->nr; i++) {
		const char *a = res->ranks[i].action;

		written += !strcmp(a, "restored");
		present += !strcmp(a, "present");
		kept += !strcmp(a, "kept_newer");
	}
	tool_size(raw, sizeof(raw), res->raw, 0);
	if (o->verify_only) {
		printf("step %" PRIu64 " of job '%s' verified: %zu rank%s, %s, every checksum "
		       "matches\n", res->step, o->name, res->nr, res->nr == 1 ? "" : "s", raw);
		return;
	}
	if (o->dry_run) {
		printf("would restore step %" PRIu64 " of job '%s' to %s:\n", res->step, o->name,
		       o->local_job);
		for (size_t i = 0; i < res->nr; i++) {
			tool_size(raw, sizeof(raw), res->ranks[i].raw, 0);
			printf("  rank %" PRIu32 ": %s (%s)\n", res->ranks[i].rank,
			       !strcmp(res->ranks[i].action, "present") ?
			       "already present and verified, kept" :
			       !strcmp(res->ranks[i].action, "kept_newer") ?
			       "local copy is a newer uncommitted save, kept" :
			       res->ranks[i].replaced ? "would replace the local copy" :
			       "would restore", raw);
		}
		return;
	}
	tool_size(rate, sizeof(rate), res->secs > 0 ? (uint64_t)(res->written / res->secs) : 0, 0);
	printf("restored step %" PRIu64 " of job '%s' to %s: %zu rank%s (%zu written, %zu already "
	       "present%s), %s in %.2f s (%s/s)\n", res->step, o->name, o->local_job, res->nr,
	       res->nr == 1 ? "" : "s", written, present, kept ? ", some newer local saves kept" : "",
	       raw, res->secs, rate);
}

static int cmd_restore(struct opts *o)
{
	struct result res;
	struct ckpt_writer *w = NULL;
	struct ckpt_codec *codec = NULL;
	struct ckpt_err err = { "" };
	uint64_t *steps = NULL;
	size_t nsteps = 0;
	int rc, code = -1, fallback = 0, wf = 0;

	memset(&res, 0, sizeof(res));
	if (!o->shared_dir)
		return need_dir("shared_dir", NULL);
	if (!o->local_dir && !o->verify_only)
		return need_dir("local_dir", NULL);
	/* --verify-only reads the shared tier alone: a CKPT_LOCAL_DIR of another node is no error */
	if ((code = need_dir("shared_dir", o->shared_dir)) >= 0 ||
	    (!o->verify_only && (code = need_dir("local_dir", o->local_dir)) >= 0) ||
	    (!o->verify_only && (code = check_tiers(o)) >= 0))
		goto out;
	if (ckpt_codec__new(&codec, 1) < 0) {
		code = TOOL_EXIT_IO;
		snprintf(res.error, sizeof(res.error), "out of memory");
		goto out;
	}
	if (o->have_step) {
		char d[CKPT_PATH_MAX];

		step_path(d, sizeof(d), o->shared_job, o->step);
		if (is_dir(d) && (steps = malloc(sizeof(*steps))))
			steps[nsteps++] = o->step;
	} else if ((rc = ckpt_store__list_steps(o->shared_job, &steps, &nsteps, &err)) < 0) {
		code = TOOL_EXIT_IO;
		snprintf(res.error, sizeof(res.error), "%s", err.msg);
		goto out;
	}
	if (!o->verify_only && !o->dry_run) {
		if ((rc = ckpt_store__mkdirs(o->local_job, &err)) < 0 ||
		    (rc = ckpt_shard__writer_new(&w, o->cfg->io_backend, o->cfg->io_depth, &err)) < 0) {
			code = TOOL_EXIT_IO;
			snprintf(res.error, sizeof(res.error), "%s", err.msg);
			goto out;
		}
		/* What restores (or saves) killed on this host left behind. */
		ckpt_store__cleanup_tmp(o->local_job);
	}
	/* Newest first: the first committed step that restores intact wins. */
	for (size_t i = nsteps; i-- > 0 && code < 0;) {
		struct ckpt_manifest m;
		uint64_t step = steps[i];
		struct damaged *nd;

		rc = ckpt_step__manifest(o->shared_job, step, &m, 1, &err);
		if (rc == CKPT_ENOENT)
			continue; /* not committed: in progress, or abandoned */
		if (rc == CKPT_OK) {
			if (o->ranks && rank_max(o) >= m.nranks) {
				code = usage_error("step %" PRIu64 " has %" PRIu32 " ranks: no rank %"
						   PRIu32, step, m.nranks, rank_max(o));
				ckpt_fmt__manifest_free(&m);
				break;
			}
			res.have_step = 1;
			res.step = step;
			res.save_id = m.save_id;
			res.nranks = m.nranks;
			rc = restore_step(o, &m, &res, w, codec, &wf, &err);
			ckpt_fmt__manifest_free(&m);
			if (rc == CKPT_OK) {
				code = TOOL_EXIT_OK;
				break;
			}
		}
		if (rc != CKPT_ECORRUPT || wf) {
			/* Not damage: the volume, the local disk or memory failed. An older step
			 * would most likely fail the same way; stop and say so. */
			code = TOOL_EXIT_IO;
			snprintf(res.error, sizeof(res.error), "%s", err.msg);
			break;
		}
		res.have_step = 0;
		if ((nd = realloc(res.dmg, (res.nd + 1) * sizeof(*nd)))) {
			res.dmg = nd;
			res.dmg[res.nd].step = step;
			snprintf(res.dmg[res.nd].msg, sizeof(res.dmg[res.nd].msg), "%s", err.msg);
			res.nd++;
		}
		say("step %" PRIu64 " is damaged: %s", step, err.msg);
		if (o->have_step) {
			code = TOOL_EXIT_DAMAGED;
			snprintf(res.error, sizeof(res.error), "step %" PRIu64 " is damaged: %s", step,
				 err.msg);
			break;
		}
		fallback = 1;
	}
	if (code < 0) {
		if (res.nd) {
			code = TOOL_EXIT_DAMAGED;
			snprintf(res.error, sizeof(res.error),
				 "every committed step of job '%s' is damaged", o->name);
		} else {
			code = TOOL_EXIT_NOTHING;
			if (o->have_step)
				snprintf(res.error, sizeof(res.error),
					 "step %" PRIu64 " of job '%s' is not committed under %s",
					 o->step, o->name, o->shared_dir);
			else
				snprintf(res.error, sizeof(res.error),
					 "no committed step of job '%s' under %s", o->name,
					 o->shared_dir);
		}
	}
	if (code == TOOL_EXIT_OK && fallback)
		say("%s step %" PRIu64 ", the newest intact step, instead",
		    o->verify_only ? "verified" : o->dry_run ? "planned" : "restored", res.step);
out:
	res.code = code;
	if (code != TOOL_EXIT_OK && code != TOOL_EXIT_USAGE && res.error[0])
		say("%s", res.error);
	if (o->json && code != TOOL_EXIT_USAGE)
		restore_json(o, &res, fallback);
	else if (code == TOOL_EXIT_OK && !o->quiet)
		restore_summary(o, &res);
	ckpt_shard__writer_free(w);
	ckpt_codec__free(codec);
	free(steps);
	free(res.ranks);
	free(res.dmg);
	return code;
}

/* ---------------------------------------------------------------------------------------------
 * ls
 */

struct row {
	uint64_t step;
	const char *state; /* committed, local only, incomplete, damaged */
	uint32_t nranks;   /* 0: unknown */
	uint64_t raw, stored;
	uint64_t saved_ns, committed_ns;
	uint32_t *lranks;  /* local shards that open (structure verified) */
	size_t nl;
	uint32_t *lbad;    /* local shard files that do not */
	size_t nbad;
	char err[CKPT_ERRMSG_MAX];
};

static uint64_t mtime_ns(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return 0;
	return (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
}

static void fill_row(const struct opts *o, const char *sjob, const char *ljob, struct row *w)
{
	char sdir[CKPT_PATH_MAX], ldir[CKPT_PATH_MAX], path[CKPT_PATH_MAX + 16];
	struct ckpt_manifest m;
	struct ckpt_err e = { "" };
	uint32_t *files = NULL;
	size_t nf;
	int rc = CKPT_ENOENT;
	uint64_t lraw = 0, lstored = 0;

	(void)o;
	if (sjob) {
		step_path(sdir, sizeof(sdir), sjob, w->step);
		rc = ckpt_step__manifest(sjob, w->step, &m, 0, &e);
	}
	if (rc == CKPT_OK) {
		w->nranks = m.nranks;
		w->saved_ns = m.created_ns;
		for (uint32_t r = 0; r < m.nranks; r++) {
			w->raw += m.ranks[r].raw_bytes;
			w->stored += m.ranks[r].file_size;
		}
		snprintf(path, sizeof(path), "%s/%s", sdir, CKPT_MANIFEST_NAME);
		w->committed_ns = mtime_ns(path);
		ckpt_fmt__manifest_free(&m);
		/* Structure of every shard (trailers and indexes; the data is `ckpt verify`'s). */
		rc = ckpt_step__manifest(sjob, w->step, &m, 1, &e);
		if (rc == CKPT_OK)
			ckpt_fmt__manifest_free(&m);
		w->state = rc == CKPT_OK ? "committed" : "damaged";
	} else if (rc != CKPT_ENOENT) {
		w->state = "damaged";
	}
	if (rc != CKPT_OK && rc != CKPT_ENOENT)
		snprintf(w->err, sizeof(w->err), "%s", e.msg);

	if (ljob) {
		step_path(ldir, sizeof(ldir), ljob, w->step);
		nf = local_files(ldir, &files);
		w->lranks = calloc(nf ? nf : 1, sizeof(uint32_t));
		w->lbad = calloc(nf ? nf : 1, sizeof(uint32_t));
		for (size_t i = 0; i < nf && w->lranks && w->lbad; i++) {
			struct ckpt_shard *s;

			if (ckpt_step__open_local(&s, ljob, w->step, files[i], NULL) < 0) {
				w->lbad[w->nbad++] = files[i];
				continue;
			}
			w->lranks[w->nl++] = files[i];
			lraw += s->trl.raw_total;
			lstored += s->file_size;
			if (!w->nranks || !w->state)
				w->nranks = s->hdr.nranks;
			if (!w->saved_ns)
				w->saved_ns = s->hdr.created_ns;
			ckpt_shard__close(s);
		}
		free(files);
	}
	if (!w->state) {
		if (w->nl) {
			w->state = "local only";
			w->raw = lraw;
			w->stored = lstored;
		} else {
			w->state = "incomplete";
		}
	}
}

static int valid_job_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 128 || s[0] == '.' || s[0] == '-')
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
			return 0;
	return 1;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Job directories under dir, added to *names (deduplicated later). */
static int add_jobs(const char *dir, char ***names, size_t *n)
{
	DIR *d;
	struct dirent *e;
	char path[CKPT_PATH_MAX + 256];

	if (!dir)
		return 0;
	if (!(d = opendir(dir))) {
		say("cannot list %s: %s", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d))) {
		char **nn;

		if (!valid_job_name(e->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (!is_dir(path) || !(nn = realloc(*names, (*n + 1) * sizeof(*nn))))
			continue;
		*names = nn;
		if (((*names)[*n] = strdup(e->d_name)))
			(*n)++;
	}
	closedir(d);
	return 0;
}

static int cmd_ls(struct opts *o)
{
	char **names = NULL;
	size_t nnames = 0;
	int code = TOOL_EXIT_OK, c;
	struct tool_json j;

	if (!o->shared_dir && !o->local_dir)
		return usage_error("ls needs --shared-dir or --local-dir (or CKPT_SHARED_DIR, "
				   "CKPT_LOCAL_DIR)");
	if ((o->shared_dir && (c = need_dir("shared_dir", o->shared_dir)) >= 0) ||
	    (o->local_dir && (c = need_dir("local_dir", o->local_dir)) >= 0))
		return c;
	if (o->name_given) {
		if ((names = malloc(sizeof(*names))) && (names[0] = strdup(o->name)))
			nnames = 1;
	} else if (add_jobs(o->shared_dir, &names, &nnames) < 0 ||
		   add_jobs(o->local_dir, &names, &nnames) < 0) {
		code = TOOL_EXIT_IO;
	}
	if (nnames)
		qsort(names, nnames, sizeof(*names), cmp_str);
	if (o->json) {
		tool_json_init(&j, stdout);
		tool_json_obj(&j, NULL);
		tool_json_str(&j, "command", "ls");
		tool_json_str(&j, "shared_dir", o->shared_dir);
		tool_json_str(&j, "local_dir", o->local_dir);
		tool_json_arr(&j, "jobs");
	} else {
		printf("%-16s %10s  %-10s %5s %9s %9s %6s  %-19s  %s\n", "JOB", "STEP", "STATE",
		       "RANKS", "RAW", "STORED", "RATIO", "COMMITTED", "LOCAL");
	}
	for (size_t i = 0; i < nnames; i++) {
		char sjob[CKPT_PATH_MAX], ljob[CKPT_PATH_MAX];
		uint64_t *a = NULL, *b = NULL;
		size_t na = 0, nb = 0, ia = 0, ib = 0;
		struct ckpt_err e = { "" };

		if (i && !strcmp(names[i], names[i - 1]))
			continue;
		snprintf(sjob, sizeof(sjob), "%s/%s", o->shared_dir ? o->shared_dir : "", names[i]);
		snprintf(ljob, sizeof(ljob), "%s/%s", o->local_dir ? o->local_dir : "", names[i]);
		if ((o->shared_dir && ckpt_store__list_steps(sjob, &a, &na, &e) < 0) ||
		    (o->local_dir && ckpt_store__list_steps(ljob, &b, &nb, &e) < 0)) {
			say("%s", e.msg);
			code = TOOL_EXIT_IO;
		}
		if (o->json) {
			tool_json_obj(&j, NULL);
			tool_json_str(&j, "name", names[i]);
			tool_json_arr(&j, "steps");
		}
		/* Merge the two ascending lists. */
		while (ia < na || ib < nb) {
			struct row w;
			char lr[256], raw[16], st[16], ratio[16], when[32];

			memset(&w, 0, sizeof(w));
			if (ib >= nb || (ia < na && a[ia] <= b[ib]))
				w.step = a[ia];
			else
				w.step = b[ib];
			if (ia < na && a[ia] == w.step)
				ia++;
			if (ib < nb && b[ib] == w.step)
				ib++;
			fill_row(o, o->shared_dir ? sjob : NULL, o->local_dir ? ljob : NULL, &w);
			if (o->json) {
				tool_json_obj(&j, NULL);
				tool_json_u64(&j, "step", w.step);
				tool_json_str(&j, "state", w.state);
				if (w.nranks)
					tool_json_u64(&j, "nranks", w.nranks);
				else
					tool_json_null(&j, "nranks");
				tool_json_u64(&j, "raw_bytes", w.raw);
				tool_json_u64(&j, "stored_bytes", w.stored);
				if (w.stored && w.raw && !strcmp(w.state, "committed"))
					tool_json_num(&j, "ratio", (double)w.raw / (double)w.stored);
				else
					tool_json_null(&j, "ratio");
				tool_time_iso(when, sizeof(when), w.committed_ns);
				tool_json_str(&j, "committed", w.committed_ns ? when : NULL);
				tool_time_iso(when, sizeof(when), w.saved_ns);
				tool_json_str(&j, "saved", w.saved_ns ? when : NULL);
				tool_json_arr(&j, "local_ranks");
				for (size_t k = 0; k < w.nl; k++)
					tool_json_u64(&j, NULL, w.lranks[k]);
				tool_json_end(&j, ']');
				tool_json_arr(&j, "local_damaged");
				for (size_t k = 0; k < w.nbad; k++)
					tool_json_u64(&j, NULL, w.lbad[k]);
				tool_json_end(&j, ']');
				tool_json_str(&j, "error", w.err[0] ? w.err : NULL);
				tool_json_end(&j, '}');
			} else {
				rank_list(lr, sizeof(lr), w.lranks, w.nl);
				if (w.nbad) {
					size_t l = strlen(lr);

					snprintf(lr + l, sizeof(lr) - l, " (damaged: ");
					l = strlen(lr);
					rank_list(lr + l, sizeof(lr) - l, w.lbad, w.nbad);
					l = strlen(lr);
					snprintf(lr + l, sizeof(lr) - l, ")");
				}
				if (w.raw || w.stored) {
					tool_size(raw, sizeof(raw), w.raw, 1);
					tool_size(st, sizeof(st), w.stored, 1);
				} else {
					snprintf(raw, sizeof(raw), "-");
					snprintf(st, sizeof(st), "-");
				}
				if (w.stored && w.raw && !strcmp(w.state, "committed"))
					snprintf(ratio, sizeof(ratio), "%.2f", (double)w.raw /
										   (double)w.stored);
				else
					snprintf(ratio, sizeof(ratio), "-");
				tool_time(when, sizeof(when), w.committed_ns);
				if (w.nranks)
					printf("%-16s %10" PRIu64 "  %-10s %5" PRIu32 " %9s %9s %6s  "
					       "%-19s  %s\n", names[i], w.step, w.state, w.nranks, raw,
					       st, ratio, when, lr);
				else
					printf("%-16s %10" PRIu64 "  %-10s %5s %9s %9s %6s  %-19s  %s\n",
					       names[i], w.step, w.state, "-", raw, st, ratio, when, lr);
				if (w.err[0])
					printf("%-16s %10s  ^ %s\n", "", "", w.err);
			}
			free(w.lranks);
			free(w.lbad);
		}
		if (o->json) {
			tool_json_end(&j, ']');
			tool_json_end(&j, '}');
		}
		free(a);
		free(b);
	}
	if (o->json) {
		tool_json_end(&j, ']');
		tool_json_u64(&j, "exit_code", (uint64_t)code);
		tool_json_end(&j, '}');
	}
	for (size_t i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	return code;
}

/* ---------------------------------------------------------------------------------------------
 * verify
 */

static int cmd_verify(struct opts *o)
{
	uint64_t *steps = NULL, *todo = NULL;
	size_t nsteps = 0, ntodo = 0;
	struct ckpt_codec *codec = NULL;
	struct ckpt_err e = { "" };
	struct tool_json j;
	int code, damaged = 0, io = 0, checked = 0;
	char sz[32];

	if ((code = need_dir("shared_dir", o->shared_dir)) >= 0 ||
	    (o->local_dir && (code = need_dir("local_dir", o->local_dir)) >= 0))
		return code;
	if (ckpt_codec__new(&codec, 1) < 0 ||
	    ckpt_store__list_steps(o->shared_job, &steps, &nsteps, &e) < 0) {
		say("%s", e.msg[0] ? e.msg : "out of memory");
		ckpt_codec__free(codec);
		return TOOL_EXIT_IO;
	}
	todo = calloc(nsteps + 1, sizeof(*todo));
	/* Which steps: --step N; --all: each with a MANIFEST; else the newest with one. */
	for (size_t i = nsteps; todo && i-- > 0;) {
		char path[CKPT_PATH_MAX + 16], d[CKPT_PATH_MAX];
		struct stat st;

		step_path(d, sizeof(d), o->shared_job, steps[i]);
		snprintf(path, sizeof(path), "%s/%s", d, CKPT_MANIFEST_NAME);
		if (o->have_step ? steps[i] != o->step : lstat(path, &st) < 0)
			continue;
		todo[ntodo++] = steps[i];
		if (!o->all)
			break;
	}
	if (o->json) {
		tool_json_init(&j, stdout);
		tool_json_obj(&j, NULL);
		tool_json_str(&j, "command", "verify");
		tool_json_str(&j, "job", o->name);
		tool_json_arr(&j, "steps");
	}
	for (size_t i = 0; i < ntodo; i++) {
		struct ckpt_manifest m;
		char ldir[CKPT_PATH_MAX];
		uint32_t *files = NULL;
		size_t nf = 0;
		int rc, step_bad = 0;
		uint64_t total = 0;

		rc = ckpt_step__manifest(o->shared_job, todo[i], &m, 0, &e);
		if (rc == CKPT_ENOENT && o->have_step) {
			ntodo = 0; /* "not committed": nothing to verify */
			break;
		}
		checked++;
		if (o->json) {
			tool_json_obj(&j, NULL);
			tool_json_u64(&j, "step", todo[i]);
			tool_json_arr(&j, "shards");
		}
		if (rc < 0) {
			step_bad = 1;
			*(rc == CKPT_ECORRUPT || rc == CKPT_ENOENT ? &damaged : &io) += 1;
			say("step %" PRIu64 ": MANIFEST: %s", todo[i], e.msg);
			if (o->json) {
				tool_json_obj(&j, NULL);
				tool_json_str(&j, "tier", "shared");
				tool_json_str(&j, "file", CKPT_MANIFEST_NAME);
				tool_json_str(&j, "status", rc == CKPT_ECORRUPT ? "damaged" : "error");
				tool_json_str(&j, "error", e.msg);
				tool_json_end(&j, '}');
			}
			m.nranks = 0;
		}
		for (uint32_t r = 0; r < m.nranks; r++)
			if (rank_selected(o, r))
				total += m.ranks[r].raw_bytes;
		tool_progress_begin(&pg, total, 1);
		for (uint32_t r = 0; r < m.nranks; r++) {
			struct ckpt_shard *s;

			if (!rank_selected(o, r))
				continue;
			tool_progress_label(&pg, "step %" PRIu64 " rank %" PRIu32, todo[i], r);
			rc = ckpt_step__open_shared(&s, o->shared_job, &m, r, &e);
			if (rc == CKPT_OK) {
				rc = tool_read_shard(NULL, s, o->threads, &pg.done, &e);
				ckpt_shard__close(s);
			}
			if (rc < 0) {
				step_bad = 1;
				*(rc == CKPT_ECORRUPT ? &damaged : &io) += 1;
				say("step %" PRIu64 " rank %" PRIu32 " (shared): %s", todo[i], r, e.msg);
			}
			if (o->json) {
				tool_json_obj(&j, NULL);
				tool_json_str(&j, "tier", "shared");
				tool_json_u64(&j, "rank", r);
				tool_json_str(&j, "status", rc == CKPT_OK ? "ok" :
					      rc == CKPT_ECORRUPT ? "damaged" : "error");
				tool_json_str(&j, "error", rc == CKPT_OK ? NULL : e.msg);
				tool_json_end(&j, '}');
			}
		}
		tool_progress_end(&pg);
		/* Local copies present on this node, of any save. */
		if (o->local_dir) {
			step_path(ldir, sizeof(ldir), o->local_job, todo[i]);
			nf = local_files(ldir, &files);
		}
		for (size_t k = 0; k < nf; k++) {
			struct ckpt_shard *s;
			const char *what = "ok";

			if (!rank_selected(o, files[k]))
				continue;
			rc = ckpt_step__open_local(&s, o->local_job, todo[i], files[k], &e);
			if (rc == CKPT_OK) {
				if (m.nranks && s->hdr.save_id != m.save_id)
					what = "ok (another save than the committed one)";
				rc = ckpt_shard__verify(s, codec, &e);
				ckpt_shard__close(s);
			}
			if (rc < 0) {
				step_bad = 1;
				*(rc == CKPT_ECORRUPT ? &damaged : &io) += 1;
				say("step %" PRIu64 " rank %" PRIu32 " (local): %s", todo[i], files[k],
				    e.msg);
			} else if (!o->json && !o->quiet) {
				printf("step %" PRIu64 " rank %" PRIu32 " local: %s\n", todo[i],
				       files[k], what);
			}
			if (o->json) {
				tool_json_obj(&j, NULL);
				tool_json_str(&j, "tier", "local");
				tool_json_u64(&j, "rank", files[k]);
				tool_json_str(&j, "status", rc == CKPT_OK ? "ok" :
					      rc == CKPT_ECORRUPT ? "damaged" : "error");
				tool_json_str(&j, "error", rc == CKPT_OK ? NULL : e.msg);
				tool_json_end(&j, '}');
			}
		}
		free(files);
		if (o->json) {
			tool_json_end(&j, ']');
			tool_json_str(&j, "status", step_bad ? "damaged" : "ok");
			tool_json_end(&j, '}');
		} else if (!o->quiet) {
			tool_size(sz, sizeof(sz), total, 0);
			if (step_bad)
				printf("step %" PRIu64 ": DAMAGED\n", todo[i]);
			else
				printf("step %" PRIu64 ": ok, %" PRIu32 " rank%s, %s, every checksum "
				       "matches\n", todo[i], m.nranks, m.nranks == 1 ? "" : "s", sz);
		}
		ckpt_fmt__manifest_free(&m);
	}
	code = io ? TOOL_EXIT_IO : damaged ? TOOL_EXIT_DAMAGED :
	       checked ? TOOL_EXIT_OK : TOOL_EXIT_NOTHING;
	if (code == TOOL_EXIT_NOTHING) {
		if (o->have_step)
			say("step %" PRIu64 " of job '%s' is not committed under %s", o->step, o->name,
			    o->shared_dir);
		else
			say("no committed step of job '%s' under %s", o->name, o->shared_dir);
	}
	if (o->json) {
		tool_json_end(&j, ']');
		tool_json_str(&j, "status", status_for(code));
		tool_json_u64(&j, "exit_code", (uint64_t)code);
		tool_json_end(&j, '}');
	}
	ckpt_codec__free(codec);
	free(steps);
	free(todo);
	return code;
}

/* ---------------------------------------------------------------------------------------------
 * gc
 */

struct gc {
	const struct opts *o;
	struct tool_json j;
	size_t removed;
	int io;
};

static void gc_action(struct gc *g, const char *tier, uint64_t step, int64_t rank,
		      const char *reason, int rc, const char *msg)
{
	const char *verb = g->o->dry_run ? "would remove" : rc < 0 ? "FAILED to remove" : "removed";

	if (rc < 0) {
		g->io = 1;
		say("%s %s step %" PRIu64 ": %s", verb, tier, step, msg);
	} else {
		g->removed++;
	}
	if (g->o->json) {
		tool_json_obj(&g->j, NULL);
		tool_json_str(&g->j, "tier", tier);
		tool_json_u64(&g->j, "step", step);
		if (rank >= 0)
			tool_json_u64(&g->j, "rank", (uint64_t)rank);
		else
			tool_json_null(&g->j, "rank");
		tool_json_str(&g->j, "reason", reason);
		tool_json_bool(&g->j, "done", !g->o->dry_run && rc >= 0);
		tool_json_str(&g->j, "error", rc < 0 ? msg : NULL);
		tool_json_end(&g->j, '}');
	} else if (!g->o->quiet && rc >= 0) {
		if (rank >= 0)
			printf("%s %s step %" PRIu64 " rank %" PRId64 " (%s)\n", verb, tier, step, rank,
			       reason);
		else
			printf("%s %s step %" PRIu64 " (%s)\n", verb, tier, step, reason);
	}
}

/* May a step directory without MANIFEST be an abandoned one? Not while a live process of this
 * host has a temporary file in it, nor while anything in it changed in the last min_age
 * seconds (a writer on another host: its process cannot be checked from here). */
static int dir_busy(const char *dir, double min_age)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	struct stat st;
	const char *host = ckpt_store__hostname();
	size_t hl = strlen(host);
	double now = (double)ckpt_store__now_ns() / 1e9;
	int busy = 0;

	if (!d)
		return 0;
	if (fstat(dirfd(d), &st) == 0 &&
	    now - ((double)st.st_mtim.tv_sec + (double)st.st_mtim.tv_nsec / 1e9) < min_age)
		busy = 1;
	while (!busy && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    now - ((double)st.st_mtim.tv_sec + (double)st.st_mtim.tv_nsec / 1e9) < min_age)
			busy = 1;
		if (!strncmp(e->d_name, ".tmp.", 5) && !strncmp(e->d_name + 5, host, hl) &&
		    e->d_name[5 + hl] == '.') {
			long pid = strtol(e->d_name + 6 + hl, NULL, 10);

			if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
				busy = 1;
		}
	}
	closedir(d);
	return busy;
}

static int dir_empty(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int empty = 1;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			empty = 0;
	closedir(d);
	return empty;
}

static int cmd_gc(struct opts *o)
{
	struct gc g = { o, { 0 }, 0, 0 };
	uint64_t *steps = NULL, *lsteps = NULL;
	size_t n = 0, nl = 0, kept = 0;
	struct ckpt_err e = { "" };
	int have_newest = 0, have_intact = 0, code;
	uint64_t newest = 0, intact = 0;
	char dir[CKPT_PATH_MAX];
	unsigned char *committed;

	if ((code = need_dir("shared_dir", o->shared_dir)) >= 0 ||
	    (o->local_dir && (code = need_dir("local_dir", o->local_dir)) >= 0) ||
	    (code = check_tiers(o)) >= 0)
		return code;
	if (ckpt_store__list_steps(o->shared_job, &steps, &n, &e) < 0 ||
	    (o->local_dir && ckpt_store__list_steps(o->local_job, &lsteps, &nl, &e) < 0)) {
		say("%s", e.msg);
		free(steps);
		return TOOL_EXIT_IO;
	}
	if (o->json) {
		tool_json_init(&g.j, stdout);
		tool_json_obj(&g.j, NULL);
		tool_json_str(&g.j, "command", "gc");
		tool_json_str(&g.j, "job", o->name);
		tool_json_bool(&g.j, "dry_run", o->dry_run);
		tool_json_arr(&g.j, "actions");
	}
	/* Classify the shared steps: committed means a MANIFEST that decodes (the library's
	 * retention counts the same); the newest of them, and the newest whose shards all check
	 * out, are never removed. */
	committed = calloc(n ? n : 1, 1);
	for (size_t i = n; committed && i-- > 0;) {
		struct ckpt_manifest m;
		int rc = ckpt_step__manifest(o->shared_job, steps[i], &m, 0, NULL);

		if (rc == CKPT_OK) {
			ckpt_fmt__manifest_free(&m);
			committed[i] = 1;
			if (!have_newest) {
				have_newest = 1;
				newest = steps[i];
			}
			if (!have_intact &&
			    ckpt_step__manifest(o->shared_job, steps[i], &m, 1, NULL) == CKPT_OK) {
				ckpt_fmt__manifest_free(&m);
				have_intact = 1;
				intact = steps[i];
			}
		} else if (rc != CKPT_ENOENT) {
			committed[i] = 2; /* damaged MANIFEST: left for the operator (ckpt verify) */
		}
	}
	for (size_t i = n; committed && i-- > 0;) {
		int rc = CKPT_OK;

		step_path(dir, sizeof(dir), o->shared_job, steps[i]);
		if (committed[i] == 0) {
			/* Incomplete. Only older than the newest committed step is it abandoned: a
			 * newer one may be draining, or be re-drained by the next ckpt_open. */
			if (!have_newest || steps[i] > newest || dir_busy(dir, o->min_age))
				continue;
			if (!o->dry_run)
				rc = ckpt_store__remove_step(dir, &e);
			gc_action(&g, "shared", steps[i], -1, "incomplete, abandoned", rc, e.msg);
		} else if (committed[i] == 1) {
			if (kept++ < o->keep_shared || !o->have_keep_shared || o->keep_shared == 0 ||
			    steps[i] == newest || (have_intact && steps[i] == intact))
				continue;
			/* remove_step uncommits first: a crash midway leaves an incomplete step */
			if (!o->dry_run)
				rc = ckpt_store__remove_step(dir, &e);
			gc_action(&g, "shared", steps[i], -1, "retention: --keep-shared", rc, e.msg);
		}
	}
	/* Local tier: temporary files of dead processes of this host, then keep_local. A local
	 * shard goes only when the shared tier has committed the same save: never the only copy. */
	if (o->local_dir && !o->dry_run)
		ckpt_store__cleanup_tmp(o->local_job);
	kept = 0;
	for (size_t i = nl; i-- > 0;) {
		uint32_t *files = NULL;
		size_t nf;
		struct ckpt_manifest m;
		int have_m;

		step_path(dir, sizeof(dir), o->local_job, lsteps[i]);
		if (dir_empty(dir)) {
			/* left by a killed save or restore */
			if (!dir_busy(dir, o->min_age)) {
				int rc = o->dry_run || rmdir(dir) == 0 ? 0 :
					 ckpt_err__errno(&e, errno, "rmdir %s", dir);

				gc_action(&g, "local", lsteps[i], -1, "empty", rc, e.msg);
			}
			continue;
		}
		if (!o->have_keep_local || kept++ < o->keep_local)
			continue;
		have_m = ckpt_step__manifest(o->shared_job, lsteps[i], &m, 0, NULL) == CKPT_OK;
		nf = local_files(dir, &files);
		for (size_t k = 0; have_m && k < nf; k++) {
			struct ckpt_shard *s;
			char base[64], path[CKPT_PATH_MAX + 64];
			int same, rc = 0;

			if (ckpt_step__open_local(&s, o->local_job, lsteps[i], files[k], NULL) < 0)
				continue;
			same = s->hdr.save_id == m.save_id;
			ckpt_shard__close(s);
			if (!same)
				continue;
			ckpt_store__local_name(base, sizeof(base), files[k]);
			snprintf(path, sizeof(path), "%s/%s", dir, base);
			if (!o->dry_run && unlink(path) < 0)
				rc = ckpt_err__errno(&e, errno, "unlink %s", path);
			gc_action(&g, "local", lsteps[i], files[k],
				  "retention: --keep-local, committed on shared", rc, e.msg);
		}
		if (have_m)
			ckpt_fmt__manifest_free(&m);
		if (!o->dry_run)
			rmdir(dir); /* when empty: other ranks or uncommitted saves keep it */
		free(files);
	}
	if (!o->dry_run)
		ckpt_store__cleanup_tmp(o->shared_job);
	code = g.io || !committed ? TOOL_EXIT_IO : TOOL_EXIT_OK;
	if (o->json) {
		tool_json_end(&g.j, ']');
		if (have_newest)
			tool_json_u64(&g.j, "newest_committed", newest);
		else
			tool_json_null(&g.j, "newest_committed");
		tool_json_u64(&g.j, "exit_code", (uint64_t)code);
		tool_json_end(&g.j, '}');
	} else if (!o->quiet) {
		printf("gc: %s %zu item%s of job '%s'\n", o->dry_run ? "would remove" : "removed",
		       g.removed, g.removed == 1 ? "" : "s", o->name);
	}
	free(committed);
	free(steps);
	free(lsteps);
	return code;
}

/* ---------------------------------------------------------------------------------------------
 * main
 */

int main(int argc, char **argv)
{
	struct opts o;
	const char *base = strrchr(argv[0], '/');
	int code;

	memset(&o, 0, sizeof(o));
	base = base ? base + 1 : argv[0];
	/* Invoked as ckpt-restore (the installed link): `ckpt restore`. */
	if (!strncmp(base, "ckpt-restore", 12)) {
		prog = "ckpt-restore";
		o.cmd = CMD_RESTORE;
	} else {
		const char *c = argc > 1 ? argv[1] : "help";

		if (!strcmp(c, "help") || !strcmp(c, "--help") || !strcmp(c, "-h")) {
			fputs(usage_main, stdout);
			return argc > 1 ? TOOL_EXIT_OK : TOOL_EXIT_USAGE;
		}
		if (!strcmp(c, "--version")) {
			printf("ckpt (libckpt) %s\n", ckpt_version());
			return TOOL_EXIT_OK;
		}
		/* doctor has options of its own (--set, --bytes) and reads no checkpoint */
		if (!strcmp(c, "doctor")) {
			signal(SIGPIPE, SIG_IGN);
			return tool_doctor_main(argc - 1, argv + 1);
		}
		if (!strcmp(c, "ls") || !strcmp(c, "list"))
			o.cmd = CMD_LS;
		else if (!strcmp(c, "verify"))
			o.cmd = CMD_VERIFY;
		else if (!strcmp(c, "gc"))
			o.cmd = CMD_GC;
		else if (!strcmp(c, "restore"))
			o.cmd = CMD_RESTORE;
		else
			return usage_error("unknown command '%s'", c);
		argc--;
		argv++;
	}
	/* A reader that goes away (| head) is not an error worth a signal. */
	signal(SIGPIPE, SIG_IGN);
	code = parse_opts(&o, argc, argv);
	/* The bar only on a terminal, never in a log file or under --quiet. */
	tool_progress_init(&pg, isatty(STDERR_FILENO) && !o.quiet);
	if (code < 0) {
		switch (o.cmd) {
		case CMD_LS: code = cmd_ls(&o); break;
		case CMD_VERIFY: code = cmd_verify(&o); break;
		case CMD_GC: code = cmd_gc(&o); break;
		case CMD_RESTORE: code = cmd_restore(&o); break;
		}
	}
	tool_progress_destroy(&pg);
	if (fflush(stdout) != 0 && code == TOOL_EXIT_OK)
		code = TOOL_EXIT_IO;
	ckpt_config_free(o.cfg);
	free(o.ranks);
	return code;
}
