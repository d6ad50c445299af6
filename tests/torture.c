/* SPDX-License-Identifier: MIT */
/* Crash torture: SIGKILL a saving job (one process, or some or all ranks of an MPI job) and
 * ckpt-restore at random moments, then check against an independent journal that the newest
 * acknowledged step survived, bit-exact, on both tiers and from the shared tier alone.
 *
 * The truth does not come from the library. The workload appends to a journal, made durable
 * before it goes on, the saves it starts (S), those ckpt_save acknowledged (W: durable locally;
 * in snapshot mode, stage_bytes > 0 in every other run of the workload, ckpt_wait_local
 * acknowledges that, after every other save) and those ckpt_wait acknowledged (C: committed on
 * the shared tier). Every byte of a save is a
 * function of (step, seed). After each kill the checker knows:
 *   - from the shared tier alone, ckpt_latest must name a step >= the newest C, and every
 *     committed step must read back as one save of it no older than its last C;
 *   - with the local tier too, ckpt_latest must name a step >= the newest W, readable as a save
 *     no older than its last W; recovery (the next ckpt_open) must then commit it, so that the
 *     shared tier alone gives the same step and the same save;
 *   - a killed ckpt-restore, run again, must publish exactly that save on the local tier.
 * Wrong (a step or save that should not be there, a step missing) and torn (regions of two saves,
 * or bytes of none) results are counted and make the run fail.
 *
 * Usage: torture [--duration SEC | --iterations N] [--seed N] [--dir DIR] [--size BYTES]
 *                [--tool PATH] [--mpi-worker PATH] [--mpirun PATH] [--np N] [--verbose] [--keep]
 * `make check` runs a short run (tests/test_torture.sh); `make torture` a long one. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "harness.h"
#include "torture.h"

#define JOB "job"
#define KEEP_LOCAL "2"
#define KEEP_SHARED "3"

struct opts {
	double duration;       /* seconds; 0 = use iterations */
	long iterations;
	uint64_t seed;
	char dir[PATH_MAX];
	size_t size;           /* main region of the single-process workload */
	size_t mpi_size;       /* main region of each rank */
	const char *tool;      /* tools/ckpt: restore kills; NULL: none */
	const char *mpi_worker;/* tests/torture_mpi; NULL: no MPI rounds */
	const char *mpirun;
	int np;
	int verbose;
	int keep;
	int sabotage;          /* test the checker: damage what it must find */
};

/* What each kill hit, judged from what it left on disk (and, for the single process, what the
 * workload said it was doing). */
enum moment { M_OPEN, M_LOCAL, M_DRAIN, M_COMMIT, M_WAIT, M_BETWEEN, M_RESTORE, M_NMOMENTS };
static const char *const moment_name[M_NMOMENTS] = {
	"open/recovery", "local write", "drain", "commit", "waiting", "between calls", "restore",
};

struct stats {
	long iterations;
	long kills, kills_random, kills_fault, kills_mpi_one, kills_mpi_all, kills_restore;
	long moments[M_NMOMENTS];
	long views, steps_verified, restores_verified, acked_steps;
	long wrong, torn, errors;
	long sabotaged, sabotage_caught, leftovers;
	long other_rounds, other_opens, other_writer; /* the other node (issue 12) */
	uint64_t newest_single, newest_mpi;
};

static struct opts O;
static struct stats ST;
static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state = tt_mix(rng_state);
	return rng_state;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(double ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)((ms - 1000.0 * (double)(time_t)(ms / 1000))
							  * 1e6) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;

	if (!O.verbose)
		return;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

/* A failure of the promise: always printed. kind: "WRONG", "TORN" or "ERROR". */
static void bad(long *counter, const char *kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void bad(long *counter, const char *kind, const char *fmt, ...)
{
	va_list ap;

	(*counter)++;
	printf("torture: %s%s (iteration %ld): ", O.sabotage ? "caught sabotage, " : "", kind,
	       ST.iterations);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static void path(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void path(char *buf, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, PATH_MAX, fmt, ap);
	va_end(ap);
}

/* ---------------------------------------------------------------------------------------------
 * The journal and what it says must be true
 */

struct jent {
	char t;
	uint64_t step, seed;
};

struct journal {
	struct jent *e;
	size_t n;
	uint64_t max_w, max_c; /* 0: none (steps start at 1) */
};

static int journal_read(const char *file, struct journal *j)
{
	FILE *f = fopen(file, "r");
	char line[128];
	size_t cap = 0;

	memset(j, 0, sizeof(*j));
	if (!f)
		return errno == ENOENT ? 0 : -1;
	while (fgets(line, sizeof(line), f)) {
		struct jent e;

		/* a line cut by the kill has no newline: the event did not happen durably */
		if (!strchr(line, '\n') ||
		    sscanf(line, "%c %" SCNu64 " %" SCNx64, &e.t, &e.step, &e.seed) != 3)
			continue;
		if (j->n == cap) {
			struct jent *ne = realloc(j->e, (cap = cap ? 2 * cap : 256) * sizeof(*ne));

			if (!ne) {
				fclose(f);
				return -1;
			}
			j->e = ne;
		}
		j->e[j->n++] = e;
		if (e.t == 'W' && e.step > j->max_w)
			j->max_w = e.step;
		if (e.t == 'C' && e.step > j->max_c)
			j->max_c = e.step;
	}
	fclose(f);
	return 0;
}

/*
 * May `seed` be what a reader finds for `step`? Only a save started no earlier than the last
 * acknowledgement of the given kind ('W' for a reader with the local tier, 'C' for one with the
 * shared tier alone): an acknowledged save can be superseded by a newer one, never by an older.
 */
static int journal_allows(const struct journal *j, uint64_t step, uint64_t seed, char ack)
{
	size_t from = 0;

	for (size_t i = 0; i < j->n; i++)
		if (j->e[i].step == step && j->e[i].t == ack)
			from = i + 1;
	if (from && j->e[from - 1].seed == seed)
		return 1; /* the acknowledged save itself */
	for (size_t i = from; i < j->n; i++)
		if (j->e[i].step == step && j->e[i].t == 'S' && j->e[i].seed == seed)
			return 1;
	return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The single-process workload (a forked child, killed by the parent or by a fault point)
 */

enum phase { PH_NONE, PH_OPEN, PH_SAVE, PH_WAIT, PH_BETWEEN };

static const char *const fault_points[] = {
	"save.written", "save.synced", "save.published", "drain.midway",
	"drain.written", "drain.published", "commit.before", "commit.done",
};
#define NFAULTS (sizeof(fault_points) / sizeof(fault_points[0]))

static ckpt_ctx *open_job(const char *local, const char *shared, const char *const *kv)
{
	static const char *const fixed[] = { "name", JOB, "keep_local", KEEP_LOCAL,
					     "keep_shared", KEEP_SHARED, "log_level", "0", NULL };

	return th_open_dirs(local, shared, fixed, kv);
}

static void workload(uint64_t gen, const char *fault, volatile int *phase)
{
	char local[PATH_MAX], shared[PATH_MAX], jpath[PATH_MAX], chunk[16], pend[8], thr[8];
	const char *kv[16];
	uint64_t r = tt_mix(O.seed ^ tt_mix(gen)), latest = 0, start, counter = 0;
	size_t k = 0;
	ckpt_ctx *ctx;
	int jfd, wait_every = (int)(r % 3) + 1; /* ckpt_wait every 1, 2 or 3 steps */
	int snapshot = (r >> 32) & 1;           /* stage_bytes: ckpt_save returns once staged */

	path(local, "%s/local", O.dir);
	path(shared, "%s/shared", O.dir);
	path(jpath, "%s/journal", O.dir);
	/* vary what the library may vary, one configuration per run of the workload */
	snprintf(chunk, sizeof(chunk), "%s", (const char *[]){ "64K", "256K", "1M" }[(r >> 8) % 3]);
	snprintf(pend, sizeof(pend), "%u", (unsigned)((r >> 12) % 3) + 1);
	snprintf(thr, sizeof(thr), "%u", (unsigned)((r >> 16) % 3) + 1);
	kv[k++] = "chunk_size", kv[k++] = chunk;
	kv[k++] = "max_pending", kv[k++] = pend;
	kv[k++] = "drain_threads", kv[k++] = thr;
	kv[k++] = "io_backend", kv[k++] = (r >> 20) & 1 ? "posix" : "auto";
	/* a pool of 3 steps' worth or of 1.5 (the second waits for room); a step larger than the
	 * pool (O.size > 16M) is written directly */
	if (snapshot)
		kv[k++] = "stage_bytes", kv[k++] = (r >> 33) & 1 ? "6M" : "3M";
	if (fault)
		kv[k++] = "fault_kill_at", kv[k++] = fault;
	kv[k] = NULL;
	*phase = PH_OPEN;
	if (!(ctx = open_job(local, shared, kv)))
		_exit(10);
	if ((jfd = open(jpath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0)
		_exit(11);
	if (ckpt_latest(ctx, &latest) != CKPT_OK)
		latest = 0;
	start = latest + 1;
	/* sometimes roll back and save steps that exist again (a job restarted from an older
	 * step): the new saves must replace the old ones, atomically */
	if ((r >> 24) % 6 == 0 && latest > 1)
		start = latest - (r >> 28) % 2;
	/* the rounds with another node (odd gen) save every step twice: re-saves are what a
	 * careless sweep by another node's open deletes under the writer (issue 12) */
	for (uint64_t s = start, rep = 0;; s += (gen % 2 == 0 || ++rep % 2 == 0)) {
		uint64_t seed = tt_mix(r + ++counter);
		struct tt_save sv;
		int rc;

		if (tt_build(&sv, O.size, s, seed, 0) < 0)
			_exit(12);
		tt_journal(jfd, 'S', s, seed);
		*phase = PH_SAVE;
		if ((rc = ckpt_save(ctx, s, sv.r, TT_NREG)) != CKPT_OK) {
			fprintf(stderr, "torture: workload: save %" PRIu64 ": %s: %s\n", s,
				ckpt_strerror(rc), ckpt_errmsg(ctx));
			_exit(13);
		}
		tt_free(&sv); /* snapshot mode: the step holds what it held during the call */
		if (snapshot && counter % 2) {
			/* staged, not acknowledged: a kill may lose it (and only it) */
		} else if (snapshot && (rc = ckpt_wait_local(ctx, s)) != CKPT_OK) {
			fprintf(stderr, "torture: workload: wait_local %" PRIu64 ": %s: %s\n", s,
				ckpt_strerror(rc), ckpt_errmsg(ctx));
			_exit(15);
		} else {
			tt_journal(jfd, 'W', s, seed);
		}
		if (counter % (uint64_t)wait_every == 0) {
			*phase = PH_WAIT;
			if ((rc = ckpt_wait(ctx, s)) != CKPT_OK) {
				fprintf(stderr, "torture: workload: wait %" PRIu64 ": %s: %s\n", s,
					ckpt_strerror(rc), ckpt_errmsg(ctx));
				_exit(14);
			}
			tt_journal(jfd, 'C', s, seed);
		}
		*phase = PH_BETWEEN;
	}
}

/* Another node of the same job (a local_dir of its own, read_grace 0) that opens and closes the
 * job in a loop while the workload runs, and goes on after the workload is killed until it is
 * killed itself: while the workload lives it is a non-writer and must delete nothing; once the
 * workload is dead it may take the writer lease (a job restarted on another node) and sweep, by
 * the rules of docs/CONCURRENCY.md, which must keep every acknowledged step. counts[0]: opens,
 * counts[1]: opens that took the lease (a .writer naming this process). */
static pid_t spawn_other_node(volatile long *counts)
{
	pid_t pid;

	fflush(NULL);
	if ((pid = fork()) != 0)
		return pid;
	{
		char local[PATH_MAX], shared[PATH_MAX], lease[PATH_MAX], mine[32];
		static const char *const kv[] = { "read_grace", "0", NULL };
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0)
			dup2(fd, 2);
		path(local, "%s/other-node", O.dir);
		path(shared, "%s/shared", O.dir);
		path(lease, "%s/shared/%s/.writer", O.dir, JOB);
		mkdir(local, 0755);
		snprintf(mine, sizeof(mine), " %ld ", (long)getpid());
		for (;;) {
			ckpt_ctx *c = open_job(local, shared, kv);
			char text[600] = "";
			FILE *f;

			counts[0]++;
			if (c && (f = fopen(lease, "r"))) {
				if (fgets(text, sizeof(text), f) && strstr(text, mine))
					counts[1]++;
				fclose(f);
			}
			ckpt_close(c);
		}
	}
}

/* ---------------------------------------------------------------------------------------------
 * Checking the three views of a single-process job
 */

/* The save id in a MANIFEST (offset 24), or 0. */
static uint64_t manifest_save(const char *stepdir)
{
	char p[PATH_MAX];
	unsigned char b[32];
	uint64_t v = 0;
	int fd;

	path(p, "%s/MANIFEST", stepdir);
	if ((fd = open(p, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	if (pread(fd, b, sizeof(b), 0) == (ssize_t)sizeof(b))
		for (int i = 7; i >= 0; i--)
			v = (v << 8) | b[24 + i];
	close(fd);
	return v;
}

/* Steps the killed process saved or drained: those of the journal lines it wrote. */
struct touched {
	uint64_t v[64];
	size_t n;
};

static int was_touched(const struct touched *t, uint64_t step)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i] == step)
			return 1;
	return 0;
}

/* Was a commit in flight in a touched step: a durable shard that no MANIFEST names yet, or a
 * MANIFEST being written? (Older steps may hold what a kill during retention left: FORMAT.md
 * 7.3.) */
static int commit_in_flight(const char *sjob, const struct touched *t)
{
	DIR *d = opendir(sjob), *sd;
	struct dirent *e, *f;
	int found = 0;

	while (d && !found && (e = readdir(d))) {
		char sp[PATH_MAX], want[32];
		uint64_t id, step;

		if (strncmp(e->d_name, "step-", 5) || sscanf(e->d_name, "step-%" SCNu64, &step) != 1 ||
		    !was_touched(t, step))
			continue;
		path(sp, "%s/%s", sjob, e->d_name);
		id = manifest_save(sp);
		snprintf(want, sizeof(want), "-%016" PRIx64 ".ckz", id);
		if (!(sd = opendir(sp)))
			continue;
		while (!found && (f = readdir(sd))) {
			size_t l = strlen(f->d_name);

			if (!strncmp(f->d_name, ".tmp.", 5) && l > 9 && !strcmp(f->d_name + l - 9,
										".MANIFEST"))
				found = 1;
			else if (!strncmp(f->d_name, "rank-", 5) && l > 20 &&
				 strcmp(f->d_name + l - strlen(want), want))
				found = 1;
		}
		closedir(sd);
	}
	if (d)
		closedir(d);
	return found;
}

static enum moment classify(int phase, const struct touched *t)
{
	char l[PATH_MAX], s[PATH_MAX];

	path(l, "%s/local/%s", O.dir, JOB);
	path(s, "%s/shared/%s", O.dir, JOB);
	if (commit_in_flight(s, t))
		return M_COMMIT;
	if (th_count_files(s, ".tmp.*.ckz"))
		return M_DRAIN;
	if (th_count_files(l, ".tmp.*"))
		return M_LOCAL;
	switch (phase) {
	case PH_OPEN: return M_OPEN;
	case PH_SAVE: return M_LOCAL;
	case PH_WAIT: return M_WAIT;
	default: return M_BETWEEN;
	}
}

/* Steps with a MANIFEST file on the shared tier, ascending. */
static size_t committed_steps(const char *sjob, uint64_t *out, size_t cap)
{
	DIR *d = opendir(sjob);
	struct dirent *e;
	size_t n = 0;

	/* The newest `cap` of them, whatever readdir's order: with more committed steps than
	 * cap (shared steps beyond keep_shared stay for read_grace, and no workload process
	 * lives that long here), the first cap read were an arbitrary subset, and "the newest"
	 * an older step than the restore then found (false ERRORs in 300-second runs). */
	while (d && (e = readdir(d))) {
		char p[PATH_MAX];
		struct stat st;
		uint64_t s;
		size_t lo = 0;

		if (strlen(e->d_name) != 25 || sscanf(e->d_name, "step-%" SCNu64, &s) != 1)
			continue;
		path(p, "%s/%s/MANIFEST", sjob, e->d_name);
		if (stat(p, &st) != 0)
			continue;
		if (n < cap) {
			out[n++] = s;
			continue;
		}
		for (size_t i = 1; i < n; i++) /* full: replace the oldest kept, if older */
			if (out[i] < out[lo])
				lo = i;
		if (out[lo] < s)
			out[lo] = s;
	}
	if (d)
		closedir(d);
	for (size_t i = 1; i < n; i++)
		for (size_t k = i; k > 0 && out[k - 1] > out[k]; k--) {
			uint64_t t = out[k];

			out[k] = out[k - 1];
			out[k - 1] = t;
		}
	return n;
}

/* Check one step read through ctx as rank `rank`; *seed gets the save found. 0: fine. */
static int check_step(ckpt_ctx *ctx, const char *view, const struct journal *j, uint64_t step,
		      uint32_t rank, size_t base, char ack, uint64_t *seed)
{
	char why[600];
	int res = tt_check(ctx, step, rank, base, seed, why, sizeof(why));

	switch (res) {
	case TT_OK:
		break;
	case TT_ERR:
		bad(&ST.errors, "ERROR", "%s: step %" PRIu64 ": %s", view, step, why);
		return -1;
	case TT_WRONG:
		bad(&ST.wrong, "WRONG", "%s: step %" PRIu64 ": %s", view, step, why);
		return -1;
	default:
		bad(&ST.torn, "TORN", "%s: step %" PRIu64 ": %s", view, step, why);
		return -1;
	}
	if (!journal_allows(j, step, *seed, ack)) {
		bad(&ST.wrong, "WRONG", "%s: step %" PRIu64 " holds save %016" PRIx64 ", which is "
		    "older than its last acknowledged save or was never made", view, step, *seed);
		return -1;
	}
	ST.steps_verified++;
	return 0;
}

/*
 * One view of the job: ckpt_latest must be >= min and hold an allowed save. With all_committed,
 * every step with a MANIFEST must read back as an allowed save and none may be newer than what
 * ckpt_latest says. Returns the latest step (0: none) and its save in *seed; -1 on a failure.
 */
static int64_t check_view(ckpt_ctx *ctx, const char *view, const struct journal *j, uint64_t min,
			  char ack, int all_committed, const char *sjob, uint64_t *seed)
{
	uint64_t latest = 0, v[256];
	int rc = ckpt_latest(ctx, &latest), failed = 0;

	ST.views++;
	*seed = 0;
	if (rc == CKPT_ENOENT) {
		if (min) {
			bad(&ST.wrong, "WRONG", "%s: ckpt_latest finds no step, but step %" PRIu64
			    " was acknowledged", view, min);
			return -1;
		}
		latest = 0;
	} else if (rc != CKPT_OK) {
		bad(&ST.errors, "ERROR", "%s: ckpt_latest: %s: %s", view, ckpt_strerror(rc),
		    ckpt_errmsg(ctx));
		return -1;
	} else if (latest < min) {
		bad(&ST.wrong, "WRONG", "%s: ckpt_latest says %" PRIu64 ", but step %" PRIu64
		    " was acknowledged", view, latest, min);
		return -1;
	} else if (check_step(ctx, view, j, latest, 0, O.size, ack, seed) < 0) {
		return -1;
	}
	if (all_committed) {
		size_t n = committed_steps(sjob, v, 256);

		for (size_t i = 0; i < n; i++) {
			uint64_t s;

			if (v[i] > latest) {
				bad(&ST.wrong, "WRONG", "%s: step %" PRIu64 " is committed but "
				    "ckpt_latest says %" PRIu64, view, v[i], latest);
				failed = 1;
			} else if (v[i] != latest &&
				   check_step(ctx, view, j, v[i], 0, O.size, 'C', &s) < 0) {
				failed = 1;
			}
		}
	}
	return failed ? -1 : (int64_t)latest;
}

/* Move the local job directory aside (the node is recreated) and back. */
static void local_away(int away)
{
	char l[PATH_MAX], a[PATH_MAX];

	path(l, "%s/local/%s", O.dir, JOB);
	path(a, "%s/local-away", O.dir);
	if (away) {
		th_sh("rm -rf '%s'", a);
		if (rename(l, a) < 0 && errno != ENOENT)
			fprintf(stderr, "torture: rename %s: %s\n", l, strerror(errno));
	} else {
		th_sh("rm -rf '%s'", l);
		if (rename(a, l) < 0 && errno != ENOENT)
			fprintf(stderr, "torture: rename %s: %s\n", a, strerror(errno));
	}
}

/* After a kill: the shared tier alone, then both tiers (recovery), then the shared tier alone
 * again. Returns the recovered latest step (0: none) and its save, or -1. */
static int64_t check_single(uint64_t *seed_out)
{
	char local[PATH_MAX], shared[PATH_MAX], sjob[PATH_MAX], jpath[PATH_MAX];
	struct journal j;
	ckpt_ctx *ctx;
	uint64_t seed_a = 0, seed_b = 0, seed_c = 0;
	int64_t la, lb, lc;
	int rc;

	path(local, "%s/local", O.dir);
	path(shared, "%s/shared", O.dir);
	path(sjob, "%s/shared/%s", O.dir, JOB);
	path(jpath, "%s/journal", O.dir);
	if (journal_read(jpath, &j) < 0) {
		bad(&ST.errors, "ERROR", "cannot read the journal %s", jpath);
		return -1;
	}
	/* 1. the node is lost: the shared tier alone */
	local_away(1);
	if (!(ctx = open_job(local, shared, NULL))) {
		bad(&ST.errors, "ERROR", "ckpt_open on the shared tier alone failed");
		local_away(0);
		free(j.e);
		return -1;
	}
	la = check_view(ctx, "shared tier alone, before recovery", &j, j.max_c, 'C', 1, sjob,
			&seed_a);
	ckpt_close(ctx);
	local_away(0);
	/* 2. the node survived: both tiers; the open re-drains what was not committed */
	if (!(ctx = open_job(local, shared, NULL))) {
		bad(&ST.errors, "ERROR", "ckpt_open with both tiers failed");
		free(j.e);
		return -1;
	}
	lb = check_view(ctx, "both tiers", &j, j.max_w, 'W', 0, sjob, &seed_b);
	if ((rc = ckpt_wait(ctx, CKPT_STEP_ALL)) != CKPT_OK)
		bad(&ST.errors, "ERROR", "recovery: ckpt_wait(ALL): %s: %s", ckpt_strerror(rc),
		    ckpt_errmsg(ctx));
	if ((rc = ckpt_close(ctx)) != CKPT_OK)
		bad(&ST.errors, "ERROR", "recovery: ckpt_close: %s", ckpt_strerror(rc));
	if (th_count_files(O.dir, ".tmp.*"))
		bad(&ST.errors, "ERROR", "temporary files of the killed process remain after "
		    "recovery");
	/* 3. recovery committed everything: the shared tier alone gives the same step and save */
	local_away(1);
	ctx = open_job(local, shared, NULL);
	lc = ctx ? check_view(ctx, "shared tier alone, after recovery", &j, j.max_c, 'C', 1, sjob,
			      &seed_c) : -1;
	if (ctx)
		ckpt_close(ctx);
	else
		bad(&ST.errors, "ERROR", "ckpt_open on the shared tier alone failed");
	local_away(0);
	if (lb >= 0 && lc >= 0 && (lb != lc || seed_b != seed_c))
		bad(&ST.wrong, "WRONG", "after recovery the shared tier holds step %" PRId64
		    " save %016" PRIx64 ", both tiers said step %" PRId64 " save %016" PRIx64,
		    lc, seed_c, lb, seed_b);
	note("  views: shared %" PRId64 ", both %" PRId64 ", shared after recovery %" PRId64
	     " (acknowledged: W %" PRIu64 ", C %" PRIu64 ")\n", la, lb, lc, j.max_w, j.max_c);
	ST.acked_steps = (long)j.max_c;
	free(j.e);
	*seed_out = seed_c;
	return la < 0 || lb < 0 || lc < 0 ? -1 : lc;
}

/* ---------------------------------------------------------------------------------------------
 * Rounds
 */

/*
 * --sabotage: prove that the checker is not vacuous. Odd iterations remove what was
 * acknowledged (every MANIFEST from the newest acknowledged commit on, every local copy from the
 * newest acknowledged save on); even ones make the journal claim a newer save of the newest
 * committed step than the one on disk. Each must be reported as WRONG.
 */
static void sabotage(void)
{
	char jpath[PATH_MAX], sjob[PATH_MAX];
	struct journal j;
	uint64_t v[256];
	size_t n;

	path(jpath, "%s/journal", O.dir);
	path(sjob, "%s/shared/%s", O.dir, JOB);
	if (journal_read(jpath, &j) < 0 || !j.max_c) {
		free(j.e);
		return;
	}
	ST.sabotaged++;
	if (ST.iterations % 2) {
		n = committed_steps(sjob, v, 256);
		for (size_t i = 0; i < n; i++)
			if (v[i] >= j.max_c)
				th_sh("rm -f '%s/step-%020" PRIu64 "/MANIFEST'", sjob, v[i]);
		for (uint64_t s = j.max_w; s < j.max_w + 64; s++)
			th_sh("rm -rf '%s/local/%s/step-%020" PRIu64 "'", O.dir, JOB, s);
	} else {
		int fd = open(jpath, O_WRONLY | O_APPEND);
		/* The newest committed step on disk, not the newest acknowledged one: a kill between a
		 * commit and its acknowledgement leaves newer commits, whose retention may already
		 * have removed the acknowledged step, and a claim about a removed step is no lie. */
		uint64_t target = j.max_c;

		n = committed_steps(sjob, v, 256);
		for (size_t i = 0; i < n; i++)
			if (v[i] > target)
				target = v[i];
		if (fd >= 0) {
			uint64_t fake = tt_mix(target ^ 0xbad);

			tt_journal(fd, 'S', j.max_w + 1000, fake); /* never saved, never read */
			for (size_t i = 0; i < j.n; i++)
				if (j.e[i].t == 'C' && j.e[i].step == target)
					fake = tt_mix(j.e[i].seed);
			tt_journal(fd, 'S', target, fake);
			tt_journal(fd, 'C', target, fake);
			close(fd);
		}
	}
	free(j.e);
}

static void single_round(uint64_t gen)
{
	volatile int *phase = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
				   -1, 0);
	const char *fault = NULL;
	char errf[PATH_MAX];
	uint64_t seed = 0;
	int64_t latest;
	double delay;
	pid_t pid;
	off_t joff;
	int st = 0, by_fault;

	if (phase == MAP_FAILED) {
		bad(&ST.errors, "ERROR", "mmap: %s", strerror(errno));
		return;
	}
	*phase = PH_NONE;
	by_fault = rnd() % 5 == 0 && !O.sabotage;
	if (by_fault)
		fault = fault_points[rnd() % NFAULTS];
	/* a third of the kills land in the first 80 ms (open, recovery, first saves); sabotage
	 * needs committed steps to damage */
	delay = O.sabotage ? 400 + (double)(rnd() % 800) :
		rnd() % 3 == 0 ? (double)(rnd() % 80) : (double)(rnd() % 1200);
	path(errf, "%s/workload.err", O.dir);
	{
		char jp[PATH_MAX];
		struct stat jst;

		path(jp, "%s/journal", O.dir);
		joff = stat(jp, &jst) == 0 ? jst.st_size : 0;
	}
	fflush(NULL);
	if ((pid = fork()) < 0) {
		bad(&ST.errors, "ERROR", "fork: %s", strerror(errno));
		munmap((void *)phase, 4096);
		return;
	}
	if (pid == 0) {
		int fd = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd >= 0)
			dup2(fd, 2);
		workload(gen, fault, phase);
		_exit(0);
	}
	if (by_fault) {
		/* the fault point kills it; a point it never reaches within 20 s is a test bug */
		for (int i = 0; i < 2000 && waitpid(pid, &st, WNOHANG) == 0; i++)
			sleep_ms(10);
		if (kill(pid, 0) == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			bad(&ST.errors, "ERROR", "fault point %s never fired", fault);
		}
	} else {
		double t0 = now();
		pid_t other = -1;

		/* every other round: the other node starts once the workload holds the job */
		if (gen % 2 == 1 && !O.sabotage) {
			while ((now() - t0) * 1000 < delay && (*phase == PH_NONE || *phase == PH_OPEN) &&
			       waitpid(pid, &st, WNOHANG) == 0)
				sleep_ms(1);
			if (*phase != PH_NONE && *phase != PH_OPEN)
				other = spawn_other_node((volatile long *)(phase + 8));
		}
		if ((now() - t0) * 1000 < delay)
			sleep_ms(delay - (now() - t0) * 1000);
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		if (other > 0) {
			/* a little longer: the other node meets the dead workload's job */
			sleep_ms((double)(rnd() % 100));
			kill(other, SIGKILL);
			waitpid(other, NULL, 0);
			ST.other_rounds++;
			ST.other_opens += ((volatile long *)(phase + 8))[0];
			ST.other_writer += ((volatile long *)(phase + 8))[1];
		}
	}
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
		bad(&ST.errors, "ERROR", "the workload ended with status %d before the kill:",
		    WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		th_sh("sed 's/^/    /' '%s' | tail -5", errf);
	} else {
		struct touched t = { { 0 }, 0 };
		char jp[PATH_MAX], line[128];
		FILE *jf;
		enum moment m;

		/* the steps of the journal lines this run wrote; the fault-point kills come before
		 * the first line sometimes: then the moment is judged by the phase alone */
		path(jp, "%s/journal", O.dir);
		if ((jf = fopen(jp, "r"))) {
			fseeko(jf, joff, SEEK_SET);
			while (fgets(line, sizeof(line), jf) && t.n < 64) {
				uint64_t step;
				char ty;

				if (sscanf(line, "%c %" SCNu64, &ty, &step) == 2 &&
				    !was_touched(&t, step))
					t.v[t.n++] = step;
			}
			fclose(jf);
		}
		m = classify(*phase, &t);

		ST.kills++;
		ST.moments[m]++;
		if (by_fault)
			ST.kills_fault++;
		else
			ST.kills_random++;
		note("iteration %ld: single process killed %s (%s)\n", ST.iterations,
		     by_fault ? fault : "at random", moment_name[m]);
	}
	munmap((void *)phase, 4096);
	if (O.sabotage) {
		long before = ST.wrong, had = ST.sabotaged;

		sabotage();
		latest = check_single(&seed);
		if (ST.sabotaged > had && ST.wrong > before)
			ST.sabotage_caught++;
		/* start afresh, so that each damage is caught on its own */
		th_sh("rm -rf '%s/local/%s' '%s/shared/%s' '%s/journal'", O.dir, JOB, O.dir, JOB,
		   O.dir);
		return;
	}
	latest = check_single(&seed);
	if (latest > 0 && (uint64_t)latest > ST.newest_single)
		ST.newest_single = (uint64_t)latest;
}

/* Run tool with args (NULL-terminated); stdout and stderr to files in O.dir. Returns the pid. */
static pid_t spawn(const char *prog, char *const argv[], const char *outname)
{
	char out[PATH_MAX];
	pid_t pid;

	path(out, "%s/%s", O.dir, outname);
	fflush(NULL);
	if ((pid = fork()) == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(prog, argv);
		_exit(127);
	}
	return pid;
}

static int wait_status(pid_t pid)
{
	int st = 0;

	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
}

/* Kill ckpt-restore at a random moment (or at one of its fault points), run it again, and check
 * that the local tier it built holds exactly the newest committed step. */
static void restore_round(uint64_t expect_step, uint64_t expect_seed)
{
	static double last_secs = 0.05;
	char shared[PATH_MAX], rdir[PATH_MAX], empty[PATH_MAX], link[PATH_MAX], abs_tool[PATH_MAX];
	const char *fault = NULL;
	struct journal j;
	char jpath[PATH_MAX];
	int as_restore = (int)(rnd() & 1), code;
	double t0;
	pid_t pid;

	path(shared, "%s/shared", O.dir);
	path(rdir, "%s/restored", O.dir);
	path(empty, "%s/no-shared", O.dir);
	path(jpath, "%s/journal", O.dir);
	if (!realpath(O.tool, abs_tool)) {
		bad(&ST.errors, "ERROR", "tool %s: %s", O.tool, strerror(errno));
		return;
	}
	path(link, "%s/bin/ckpt-restore", O.dir);
	if (rnd() % 3 == 0)
		th_sh("rm -rf '%s'", rdir); /* a new node; otherwise an old restore is updated */
	mkdir(rdir, 0755);
	mkdir(empty, 0755);
	if (rnd() % 4 == 0)
		fault = (const char *[]){ "save.written", "save.synced",
					  "save.published" }[rnd() % 3];
	{
		char *argv_r[] = { link, "--shared-dir", shared, "--local-dir", rdir, "--name", JOB,
				   "--threads", "2", "--quiet", NULL };
		char *argv_c[] = { abs_tool, "restore", "--shared-dir", shared, "--local-dir", rdir,
				   "--name", JOB, "--threads", "2", "--quiet", NULL };
		double delay = (double)(rnd() % 1000) / 1000.0 * last_secs * 1500.0;
		int st;

		if (fault)
			setenv("CKPT_FAULT_KILL_AT", fault, 1);
		pid = spawn(as_restore ? link : abs_tool, as_restore ? argv_r : argv_c,
			    "restore.out");
		if (fault)
			unsetenv("CKPT_FAULT_KILL_AT");
		if (!fault) {
			sleep_ms(delay);
			kill(pid, SIGKILL);
		}
		st = wait_status(pid);
		if (st == 128 + SIGKILL) {
			ST.kills++;
			ST.kills_restore++;
			ST.moments[M_RESTORE]++;
			note("iteration %ld: restore killed %s\n", ST.iterations,
			     fault ? fault : "at random");
		} else if (st != 0 && st != 1) {
			bad(&ST.errors, "ERROR", "ckpt restore (before the kill) exited %d", st);
			th_sh("sed 's/^/    /' '%s/restore.out' | tail -5", O.dir);
		}
		/* run it again to the end */
		t0 = now();
		pid = spawn(as_restore ? link : abs_tool, as_restore ? argv_r : argv_c,
			    "restore.out");
		code = wait_status(pid);
		last_secs = now() - t0;
	}
	if (code != (expect_step ? 0 : 1)) {
		bad(&ST.errors, "ERROR", "ckpt restore run again exited %d (expected %d)", code,
		    expect_step ? 0 : 1);
		th_sh("sed 's/^/    /' '%s/restore.out' | tail -5", O.dir);
		return;
	}
	if (th_count_files(rdir, ".tmp.*")) {
		bad(&ST.errors, "ERROR", "the rerun of ckpt restore left temporary files");
		return;
	}
	if (!expect_step)
		return;
	if (journal_read(jpath, &j) < 0)
		return;
	/* the restored local tier alone (an empty shared tier): the committed step, bit-exact */
	{
		ckpt_ctx *ctx = open_job(rdir, empty, NULL);
		uint64_t seed = 0, latest = 0;
		int rc;

		if (!ctx) {
			bad(&ST.errors, "ERROR", "ckpt_open of the restored local tier failed");
		} else {
			if ((rc = ckpt_latest(ctx, &latest)) != CKPT_OK || latest < expect_step)
				bad(&ST.wrong, "WRONG", "restored tier: ckpt_latest %s %" PRIu64
				    ", expected step %" PRIu64, ckpt_strerror(rc), latest,
				    expect_step);
			else if (check_step(ctx, "restored local tier", &j, expect_step, 0, O.size,
					    'C', &seed) == 0) {
				if (seed != expect_seed)
					bad(&ST.wrong, "WRONG", "restored step %" PRIu64 " is save %016"
					    PRIx64 ", the committed one is %016" PRIx64, expect_step,
					    seed, expect_seed);
				else
					ST.restores_verified++;
			}
			/* keep the restored tier free of the local-only state the open created */
			ckpt_close(ctx);
		}
		th_sh("rm -rf '%s/%s'", empty, JOB);
	}
	free(j.e);
}

/* ---------------------------------------------------------------------------------------------
 * MPI rounds: tests/torture_mpi is the workload (run) and the checker (check)
 */

static int read_pid(const char *file, pid_t *pid)
{
	FILE *f = fopen(file, "r");
	long v = 0;
	int ok;

	if (!f)
		return -1;
	ok = fscanf(f, "%ld", &v) == 1 && v > 0;
	fclose(f);
	*pid = (pid_t)v;
	return ok ? 0 : -1;
}

static int wait_pid_timeout(pid_t pid, double secs, int *status)
{
	double end = now() + secs;

	while (now() < end) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid)
			return 0;
		if (r < 0)
			return -1;
		sleep_ms(5);
	}
	return -1;
}

static void mpi_argv(char **argv, const char *mode, const char *mdir, char *gen, char *size)
{
	static char np[16];
	size_t k = 0;

	snprintf(np, sizeof(np), "%d", O.np);
	argv[k++] = (char *)O.mpirun;
	argv[k++] = "-np";
	argv[k++] = np;
	argv[k++] = "--oversubscribe";
	argv[k++] = (char *)O.mpi_worker;
	argv[k++] = (char *)mdir;
	argv[k++] = (char *)mode;
	argv[k++] = size;
	argv[k++] = gen;
	argv[k] = NULL;
}

/* Judge the output of `torture_mpi DIR check`: see torture_mpi.c for the lines. */
static void judge_mpi(const char *outfile, const struct journal *j)
{
	FILE *f = fopen(outfile, "r");
	char line[1024];
	int64_t both = -2, after = -2;
	uint64_t seed_both = 0, seed_after = 0;
	int lines = 0;

	if (!f) {
		bad(&ST.errors, "ERROR", "no output from the MPI checker");
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		char view[32], status[16], why[700] = "";
		uint64_t step, seed, latest;
		int rc;

		if (sscanf(line, "VIEW %31s %d %" SCNu64 " %15s %" SCNx64 " %699[^\n]", view, &rc,
			   &latest, status, &seed, why) >= 5) {
			uint64_t min = !strcmp(view, "both") ? j->max_w : j->max_c;
			char ack = !strcmp(view, "both") ? 'W' : 'C';

			lines++;
			ST.views++;
			if (rc == CKPT_ENOENT) {
				if (min)
					bad(&ST.wrong, "WRONG", "MPI %s: ckpt_latest finds no step, but "
					    "step %" PRIu64 " was acknowledged", view, min);
				latest = 0;
			} else if (rc != CKPT_OK) {
				bad(&ST.errors, "ERROR", "MPI %s: ckpt_latest: %s %s", view,
				    ckpt_strerror(rc), why);
				continue;
			} else if (latest < min) {
				bad(&ST.wrong, "WRONG", "MPI %s: ckpt_latest says %" PRIu64 ", but step %"
				    PRIu64 " was acknowledged", view, latest, min);
			} else if (strcmp(status, "OK")) {
				bad(!strcmp(status, "TORN") ? &ST.torn : !strcmp(status, "WRONG") ?
				    &ST.wrong : &ST.errors, status, "MPI %s: step %" PRIu64 ": %s", view,
				    latest, why);
			} else if (!journal_allows(j, latest, seed, ack)) {
				bad(&ST.wrong, "WRONG", "MPI %s: step %" PRIu64 " holds save %016" PRIx64
				    ", older than acknowledged or never made", view, latest, seed);
			} else {
				ST.steps_verified++;
			}
			if (!strcmp(view, "both")) {
				both = (int64_t)latest;
				seed_both = seed;
			} else if (!strcmp(view, "after")) {
				after = (int64_t)latest;
				seed_after = seed;
			}
		} else if (sscanf(line, "COMMITTED %31s %" SCNu64 " %15s %" SCNx64 " %699[^\n]", view,
				  &step, status, &seed, why) >= 4) {
			if (strcmp(status, "OK"))
				bad(!strcmp(status, "TORN") ? &ST.torn : !strcmp(status, "WRONG") ?
				    &ST.wrong : &ST.errors, status, "MPI %s: committed step %" PRIu64
				    ": %s", view, step, why);
			else if (!journal_allows(j, step, seed, 'C'))
				bad(&ST.wrong, "WRONG", "MPI %s: committed step %" PRIu64 " holds save %016"
				    PRIx64 ", older than acknowledged or never made", view, step, seed);
			else
				ST.steps_verified++;
		} else if (sscanf(line, "NEWER %31s %" SCNu64, view, &step) == 2) {
			bad(&ST.wrong, "WRONG", "MPI %s: step %" PRIu64 " is committed but ckpt_latest "
			    "says less", view, step);
		} else if (sscanf(line, "FAIL %699[^\n]", why) == 1) {
			bad(&ST.errors, "ERROR", "MPI checker: %s", why);
		}
	}
	fclose(f);
	if (lines != 3)
		bad(&ST.errors, "ERROR", "the MPI checker reported %d views of 3", lines);
	else if (both != after || seed_both != seed_after)
		bad(&ST.wrong, "WRONG", "MPI: after recovery the shared tier holds step %" PRId64
		    " save %016" PRIx64 ", both tiers said %" PRId64 " save %016" PRIx64, after,
		    seed_after, both, seed_both);
	else if (both > 0 && (uint64_t)both > ST.newest_mpi)
		ST.newest_mpi = (uint64_t)both;
}

static void mpi_round(uint64_t gen, int kill_all)
{
	char mdir[PATH_MAX], pdir[PATH_MAX], pf[PATH_MAX], out[PATH_MAX], jpath[PATH_MAX];
	char gens[24], sizes[24], *argv[12];
	pid_t mpirun, ranks[64];
	struct journal j;
	int status = 0, victim = -1, n = 0;
	double t_end;

	if (O.np > 64)
		return;
	path(mdir, "%s/mpi", O.dir);
	path(pdir, "%s/mpi/pids", O.dir);
	path(jpath, "%s/mpi/journal", O.dir);
	th_sh("mkdir -p '%s' && rm -f '%s'/rank-*", pdir, pdir);
	snprintf(gens, sizeof(gens), "%" PRIu64, tt_mix(O.seed ^ tt_mix(gen)));
	snprintf(sizes, sizeof(sizes), "%zu", O.mpi_size);
	mpi_argv(argv, "run", mdir, gens, sizes);
	mpirun = spawn(O.mpirun, argv, "mpi-run.out");
	/* wait until every rank has told us its pid */
	t_end = now() + 60;
	while (n < O.np && now() < t_end) {
		n = 0;
		for (int r = 0; r < O.np; r++) {
			path(pf, "%s/rank-%d", pdir, r);
			n += read_pid(pf, &ranks[r]) == 0;
		}
		if (waitpid(mpirun, &status, WNOHANG) == mpirun) {
			bad(&ST.errors, "ERROR", "mpirun ended before every rank started");
			th_sh("sed 's/^/    /' '%s/mpi-run.out' | tail -8", O.dir);
			return;
		}
		sleep_ms(5);
	}
	if (n < O.np) {
		bad(&ST.errors, "ERROR", "the MPI ranks did not start within 60 s");
		kill(mpirun, SIGKILL);
		waitpid(mpirun, &status, 0);
		return;
	}
	sleep_ms(rnd() % 3 == 0 ? (double)(rnd() % 150) : (double)(rnd() % 2500));
	if (waitpid(mpirun, &status, WNOHANG) == mpirun) {
		bad(&ST.errors, "ERROR", "the MPI workload ended before the kill");
		th_sh("sed 's/^/    /' '%s/mpi-run.out' | tail -8", O.dir);
		return;
	}
	if (kill_all) {
		for (int r = 0; r < O.np; r++)
			kill(ranks[r], SIGKILL);
	} else {
		victim = (int)(rnd() % (uint64_t)O.np);
		kill(ranks[victim], SIGKILL);
	}
	/* mpirun notices and ends the job; if it does not, everything goes */
	if (wait_pid_timeout(mpirun, 60, &status) < 0) {
		bad(&ST.errors, "ERROR", "mpirun did not end within 60 s of the kill");
		for (int r = 0; r < O.np; r++)
			kill(ranks[r], SIGKILL);
		kill(mpirun, SIGKILL);
		waitpid(mpirun, &status, 0);
	}
	for (int r = 0; r < O.np; r++) {
		for (int i = 0; i < 1000 && kill(ranks[r], 0) == 0; i++)
			sleep_ms(10);
		if (kill(ranks[r], 0) == 0) {
			kill(ranks[r], SIGKILL);
			sleep_ms(100);
		}
	}
	ST.kills++;
	if (kill_all)
		ST.kills_mpi_all++;
	else
		ST.kills_mpi_one++;
	note("iteration %ld: MPI job, %s killed\n", ST.iterations, kill_all ? "every rank" :
	     "one rank");
	if (journal_read(jpath, &j) < 0) {
		bad(&ST.errors, "ERROR", "cannot read %s", jpath);
		return;
	}
	mpi_argv(argv, "check", mdir, gens, sizes);
	path(out, "%s/mpi-check.out", O.dir);
	{
		pid_t pid = spawn(O.mpirun, argv, "mpi-check.out");
		int code = -1;

		if (wait_pid_timeout(pid, 300, &status) < 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
		} else {
			code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		}
		if (code != 0) {
			bad(&ST.errors, "ERROR", "the MPI checker exited %d", code);
			th_sh("sed 's/^/    /' '%s' | tail -12", out);
		}
	}
	judge_mpi(out, &j);
	free(j.e);
}

/* ---------------------------------------------------------------------------------------------
 * main
 */

static void usage(void)
{
	fprintf(stderr,
		"usage: torture [--duration SEC | --iterations N] [--seed N] [--dir DIR]\n"
		"               [--size BYTES] [--tool PATH] [--mpi-worker PATH] [--mpirun PATH]\n"
		"               [--np N] [--verbose] [--keep] [--sabotage]\n");
}

static int parse(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "duration", required_argument, NULL, 'd' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "seed", required_argument, NULL, 's' },
		{ "dir", required_argument, NULL, 'D' },
		{ "size", required_argument, NULL, 'S' },
		{ "tool", required_argument, NULL, 't' },
		{ "mpi-worker", required_argument, NULL, 'm' },
		{ "mpirun", required_argument, NULL, 'r' },
		{ "np", required_argument, NULL, 'p' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "keep", no_argument, NULL, 'k' },
		{ "sabotage", no_argument, NULL, 'X' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *tmp = getenv("TMPDIR");
	int c;

	O.duration = 0;
	O.iterations = 0;
	O.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
	O.size = 2u << 20;
	O.mpi_size = 512u << 10;
	O.mpirun = "mpirun";
	O.np = 4;
	O.dir[0] = '\0';
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'd': O.duration = strtod(optarg, NULL); break;
		case 'n': O.iterations = strtol(optarg, NULL, 10); break;
		case 's': O.seed = strtoull(optarg, NULL, 0); break;
		case 'D': snprintf(O.dir, sizeof(O.dir), "%s", optarg); break;
		case 'S': O.size = strtoull(optarg, NULL, 0); break;
		case 't': O.tool = optarg; break;
		case 'm': O.mpi_worker = optarg; break;
		case 'r': O.mpirun = optarg; break;
		case 'p': O.np = atoi(optarg); break;
		case 'v': O.verbose = 1; break;
		case 'k': O.keep = 1; break;
		case 'X': O.sabotage = 1; break;
		default: usage(); return -1;
		}
	}
	if (optind < argc || O.np < 2 || O.size < 4096) {
		usage();
		return -1;
	}
	if (O.duration <= 0 && O.iterations <= 0)
		O.duration = 30;
	if (!O.dir[0]) {
		snprintf(O.dir, sizeof(O.dir), "%s/ckpt-torture-XXXXXX", tmp && *tmp ? tmp : "/tmp");
		if (!mkdtemp(O.dir)) {
			perror("torture: mkdtemp");
			return -1;
		}
	} else if (mkdir(O.dir, 0755) < 0 && errno != EEXIST) {
		perror("torture: mkdir");
		return -1;
	}
	return 0;
}

/* Only what this program sets may reach ckpt_config_new: drop inherited CKPT_* variables. */
static void clean_environment(void)
{
	extern char **environ;
	char name[256];

	for (size_t i = 0; environ[i];) {
		size_t n = strcspn(environ[i], "=");

		if (strncmp(environ[i], "CKPT_", 5) || n >= sizeof(name)) {
			i++;
			continue;
		}
		memcpy(name, environ[i], n);
		name[n] = '\0';
		unsetenv(name);
	}
}

int main(int argc, char **argv)
{
	double t0, elapsed;
	int mpi_ok, tool_ok, fails;

	setvbuf(stdout, NULL, _IOLBF, 0);
	clean_environment();
	if (parse(argc, argv) < 0)
		return 64;
	rng_state = O.seed;
	th_sh("mkdir -p '%s/local' '%s/shared' '%s/bin'", O.dir, O.dir, O.dir);
	tool_ok = O.tool && access(O.tool, X_OK) == 0;
	if (tool_ok) {
		char abs_tool[PATH_MAX], link[PATH_MAX];

		path(link, "%s/bin/ckpt-restore", O.dir);
		if (realpath(O.tool, abs_tool))
			symlink(abs_tool, link);
	}
	mpi_ok = O.mpi_worker && access(O.mpi_worker, X_OK) == 0;
	if (mpi_ok) {
		setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
		setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
		setenv("OMPI_MCA_btl", "self,vader", 0);
		setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
		setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
	}
	printf("torture: seed %" PRIu64 ", %s %g, directory %s, single-process steps of %zu+ bytes"
	       "%s%s\n", O.seed, O.duration > 0 ? "seconds" : "iterations",
	       O.duration > 0 ? O.duration : (double)O.iterations, O.dir, O.size,
	       mpi_ok ? ", MPI rounds" : ", no MPI rounds", tool_ok ? ", restore kills" :
	       ", no restore kills");
	t0 = now();
	for (;;) {
		uint64_t seed = 0;
		int64_t latest;
		long it = ST.iterations;

		if (O.duration > 0 ? now() - t0 >= O.duration : it >= O.iterations)
			break;
		ST.iterations++;
		/* one MPI round in five (kill one rank, then every rank, alternately); a restore
		 * kill after one single-process round in three */
		if (mpi_ok && it % 5 == 2 && !O.sabotage) {
			mpi_round((uint64_t)it, (it / 5) % 2);
			continue;
		}
		single_round((uint64_t)it);
		if (tool_ok && it % 3 == 0 && !O.sabotage) {
			char sjob[PATH_MAX];
			uint64_t v[256];
			size_t n;

			/* the newest committed step, as the recovery (checked above) left it */
			path(sjob, "%s/shared/%s", O.dir, JOB);
			n = committed_steps(sjob, v, 256);
			latest = n ? (int64_t)v[n - 1] : 0;
			if (latest > 0) {
				char l[PATH_MAX], s[PATH_MAX], why[600];
				ckpt_ctx *ctx;

				/* its save, read from the shared tier alone */
				path(l, "%s/no-local", O.dir);
				path(s, "%s/shared", O.dir);
				mkdir(l, 0755);
				if ((ctx = open_job(l, s, NULL))) {
					if (tt_check(ctx, (uint64_t)latest, 0, O.size, &seed, why,
						     sizeof(why)) != TT_OK)
						bad(&ST.errors, "ERROR", "before the restore: %s", why);
					ckpt_close(ctx);
				}
				th_sh("rm -rf '%s'", l);
			}
			restore_round((uint64_t)(latest > 0 ? latest : 0), seed);
		}
	}
	/* What kills during retention leave (FORMAT.md 7.3): uncommitted step directories on the
	 * shared tier. `ckpt gc` removes them and must keep every committed step intact. */
	if (tool_ok && !O.sabotage) {
		char sjob[PATH_MAX];
		uint64_t seed;
		int64_t before, after;
		int rc;

		path(sjob, "%s/shared/%s", O.dir, JOB);
		ST.leftovers = th_sh("n=0; for d in '%s'/step-*; do [ -d \"$d\" ] && [ ! -e \"$d/MANIFEST\" ] "
				  "&& n=$((n+1)); done; exit $n", sjob);
		before = check_single(&seed);
		rc = th_sh("'%s' gc --shared-dir '%s/shared' --local-dir '%s/local' --name %s --min-age 0 "
			"--quiet >/dev/null 2>&1", O.tool, O.dir, O.dir, JOB);
		if (rc != 0)
			bad(&ST.errors, "ERROR", "ckpt gc exited %d", rc);
		after = check_single(&seed);
		if (before != after)
			bad(&ST.wrong, "WRONG", "ckpt gc changed the newest step from %" PRId64 " to %"
			    PRId64, before, after);
		if (th_sh("for d in '%s'/step-*; do [ -d \"$d\" ] && [ ! -e \"$d/MANIFEST\" ] && exit 1; "
		       "done; exit 0", sjob))
			bad(&ST.errors, "ERROR", "ckpt gc left uncommitted step directories");
	}
	elapsed = now() - t0;
	if (O.sabotage) {
		fails = ST.sabotaged == 0 || ST.sabotage_caught != ST.sabotaged;
		printf("torture: sabotage: %ld damaged or falsified states, %ld caught: %s\n",
		       ST.sabotaged, ST.sabotage_caught, fails ? "FAIL" : "ok");
		if (!O.keep)
			th_sh("rm -rf '%s'", O.dir);
		return fails ? 1 : 0;
	}
	fails = ST.wrong + ST.torn + ST.errors > 0 || ST.kills == 0;
	printf("torture: %ld iterations in %.1f s (seed %" PRIu64 ")\n", ST.iterations, elapsed,
	       O.seed);
	printf("torture: kills %ld: single process at random %ld, at fault points %ld; MPI one "
	       "rank %ld, every rank %ld; ckpt-restore %ld\n", ST.kills, ST.kills_random,
	       ST.kills_fault, ST.kills_mpi_one, ST.kills_mpi_all, ST.kills_restore);
	printf("torture: kill moments:");
	for (int m = 0; m < M_NMOMENTS; m++)
		printf(" %s %ld%s", moment_name[m], ST.moments[m], m + 1 < M_NMOMENTS ? "," : "\n");
	printf("torture: views checked %ld, steps verified bit-exact %ld, restores verified %ld, "
	       "newest step: single %" PRIu64 ", MPI %" PRIu64 "\n", ST.views, ST.steps_verified,
	       ST.restores_verified, ST.newest_single, ST.newest_mpi);
	printf("torture: another node opening the job (issue 12): %ld rounds, %ld opens, %ld of them "
	       "as the writer after the workload's kill\n", ST.other_rounds, ST.other_opens,
	       ST.other_writer);
	if (tool_ok)
		printf("torture: uncommitted step directories left by kills during retention: %ld, "
		       "removed by ckpt gc, committed steps intact\n", ST.leftovers);
	printf("torture: wrong %ld, torn %ld, errors %ld: %s\n", ST.wrong, ST.torn, ST.errors,
	       fails ? "FAIL" : "ok");
	if (!O.keep && !fails)
		th_sh("rm -rf '%s'", O.dir);
	else
		printf("torture: files kept in %s\n", O.dir);
	return fails ? 1 : 0;
}
