/* SPDX-License-Identifier: MIT */
/* Scenarios of a stalled shared volume (issue 13), on the public API, driven by tests/test_stall.sh
 * against tests/stallfs.py: the volume stalls and resumes through stallfs's control socket.
 *
 *   stall_helper outage|close|open|open_late|kill|retention LOCAL SHARED CTLSOCK
 *
 * LOCAL is an empty node-local directory, SHARED an empty directory on the stallfs mount. Every
 * scenario prints its measurements as "figure: NAME=VALUE" and its verdicts as
 * "target: NAME PASS|FAIL (...)"; the exit status is 0 when every target passed, 1 when one
 * failed, 2 when the scenario could not be set up. Tunables (environment, seconds unless said):
 *   STALL_OUTAGE (15)       how long the volume is stalled
 *   STALL_INTERVAL (0.5)    time between two ckpt_save calls of the training loop
 *   STALL_MB (4)            MiB of training state per step (real weights, tests/harness.h)
 *   STALL_SAVE_LIMIT (2)    a ckpt_save must return faster than this
 *   STALL_CLOSE_TIMEOUT (3) close_timeout
 *   STALL_OPEN_BOUND (10)   the documented bound of ckpt_open on a stalled volume
 *   STALL_MARGIN (1)        slack added to close_timeout and to the open bound
 *   STALL_KEEP_LOCAL (2), STALL_MAX_PENDING (2)
 *   STALL_MODE (stall)      "eio": during the outage every call fails with EIO instead of
 *                           blocking, as on a soft mount (no "not responding" target then)
 * The outage is a sleep on a thread of its own (that sleep is the outage); everything else waits
 * on events: stallfs's replies, a pipe from the child, the library's return. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "harness.h"

#define JOB "stalljob"

static const char *local_dir, *shared_dir, *ctl_path;
static double outage_s, interval_s, save_limit, close_timeout, open_bound, margin;
static unsigned keep_local, max_pending;
static size_t state_size;
static int failed_targets;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double env_d(const char *name, double def)
{
	const char *v = getenv(name);

	return v && *v ? atof(v) : def;
}

static void sleep_s(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void target(const char *name, int ok, const char *fmt, ...)
{
	va_list ap;

	printf("target: %s %s (", name, ok ? "PASS" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(")\n");
	fflush(stdout);
	if (!ok)
		failed_targets++;
}

static void figure(const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("figure: %s=", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "stall_helper: setup failed: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(2);
}

/* ---- stallfs control: one command per connection, one line back ---- */

static int ctl(const char *cmd, char *reply, size_t len)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char buf[512];
	size_t got = 0;
	ssize_t n;
	int fd, ok;

	if (strlen(ctl_path) >= sizeof(a.sun_path))
		die("control socket path too long: %s", ctl_path);
	strcpy(a.sun_path, ctl_path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect %s: %s", ctl_path, strerror(errno));
	snprintf(buf, sizeof(buf), "%s\n", cmd);
	if (write(fd, buf, strlen(buf)) != (ssize_t)strlen(buf))
		die("write to %s: %s", ctl_path, strerror(errno));
	while (got + 1 < sizeof(buf) && (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	buf[got] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	ok = !strncmp(buf, "ok", 2);
	if (reply)
		snprintf(reply, len, "%s", buf);
	return ok ? 0 : -1;
}

static void volume(const char *cmd)
{
	char reply[512];

	if (ctl(cmd, reply, sizeof(reply)) < 0)
		die("stallfs %s: %s", cmd, reply);
	printf("stallfs: %s: %s\n", cmd, reply);
	fflush(stdout);
}

/* The outage: stall now, resume after outage_s on a thread of its own. */
struct outage {
	pthread_t th;
	double t_stall, t_resume;
};

static void *resume_later(void *arg)
{
	struct outage *o = arg;

	sleep_s(o->t_stall + outage_s - now());
	volume("resume");
	o->t_resume = now();
	return NULL;
}

/* STALL_MODE=eio: the outage fails every call with EIO (a soft mount timing out) instead */
static const char *outage_mode = "stall";

static void outage_start(struct outage *o)
{
	volume(outage_mode);
	o->t_stall = now();
	o->t_resume = 0;
	if (pthread_create(&o->th, NULL, resume_later, o) != 0)
		die("pthread_create");
}

static void outage_end(struct outage *o)
{
	pthread_join(o->th, NULL);
}

/* ---- the checkpointer ---- */

static ckpt_ctx *open_at(const char *local, const char *extra_key, const char *extra_val, int *rcp)
{
	ckpt_config *cfg;
	ckpt_ctx *ctx = NULL;
	char v[64];
	int rc;

	if (ckpt_config_new(&cfg) != CKPT_OK)
		die("ckpt_config_new");
	ckpt_config_set(cfg, "local_dir", local);
	ckpt_config_set(cfg, "shared_dir", shared_dir);
	ckpt_config_set(cfg, "name", JOB);
	ckpt_config_set(cfg, "chunk_size", "1M");
	snprintf(v, sizeof(v), "%u", keep_local);
	ckpt_config_set(cfg, "keep_local", v);
	snprintf(v, sizeof(v), "%u", max_pending);
	ckpt_config_set(cfg, "max_pending", v);
	snprintf(v, sizeof(v), "%g", close_timeout);
	ckpt_config_set(cfg, "close_timeout", v);
	if (extra_key && ckpt_config_set(cfg, extra_key, extra_val) != CKPT_OK)
		die("%s=%s: %s", extra_key, extra_val, ckpt_config_errmsg(cfg));
	rc = ckpt_open(&ctx, cfg);
	ckpt_config_free(cfg);
	if (rcp)
		*rcp = rc;
	else if (rc != CKPT_OK)
		die("ckpt_open %s: %s", local, ckpt_errmsg(NULL));
	return ctx;
}

static unsigned char *state_buf;

static int save(ckpt_ctx *ctx, uint64_t step, double *took)
{
	ckpt_region r[2] = { { "state", state_buf, state_size }, { "step", &step, sizeof(step) } };
	double t0;
	int rc;

	th_make_data(state_buf, state_size, step);
	t0 = now();
	rc = ckpt_save(ctx, step, r, 2);
	if (took)
		*took = now() - t0;
	if (rc != CKPT_OK)
		fprintf(stderr, "ckpt_save step %llu: %s: %s\n", (unsigned long long)step,
			ckpt_strerror(rc), ckpt_errmsg(ctx));
	return rc;
}

/* Is step bit-exact in ctx (both regions)? */
static int step_ok(ckpt_ctx *ctx, uint64_t step)
{
	unsigned char *want = malloc(state_size);
	int ok;

	if (!want)
		die("out of memory");
	th_make_data(want, state_size, step);
	ok = th_load_eq(ctx, step, "state", want, state_size) &&
	     th_load_eq(ctx, step, "step", &step, sizeof(step));
	free(want);
	return ok;
}

static char *job_path(const char *dir)
{
	static char p[2][4096];
	static int k;

	k ^= 1;
	snprintf(p[k], sizeof(p[k]), "%s/%s", dir, JOB);
	return p[k];
}

static int local_steps(void)
{
	return th_count_files(job_path(local_dir), "rank-*.ckl");
}

static int has_local(uint64_t step)
{
	char p[4096 + 64];
	struct stat st;

	snprintf(p, sizeof(p), "%s/step-%020llu/rank-000000.ckl", job_path(local_dir),
		 (unsigned long long)step);
	return stat(p, &st) == 0;
}

/* The shared tier alone: a new, empty local directory; latest and a bit-exact load. Returns
 * the latest step (0 when none) and whether it loaded bit-exact. */
static uint64_t shared_only(const uint64_t *checks, size_t nchecks, int *all_ok)
{
	char fresh[4096];
	ckpt_ctx *ctx;
	uint64_t latest = 0;
	int rc;

	snprintf(fresh, sizeof(fresh), "%s/../fresh-XXXXXX", local_dir);
	if (!mkdtemp(fresh))
		die("mkdtemp %s: %s", fresh, strerror(errno));
	ctx = open_at(fresh, NULL, NULL, NULL);
	*all_ok = 1;
	if ((rc = ckpt_latest(ctx, &latest)) != CKPT_OK) {
		fprintf(stderr, "ckpt_latest (shared only): %s: %s\n", ckpt_strerror(rc),
			ckpt_errmsg(ctx));
		latest = 0;
		*all_ok = 0;
	} else if (!step_ok(ctx, latest)) {
		*all_ok = 0;
	}
	for (size_t i = 0; i < nchecks; i++)
		if (!step_ok(ctx, checks[i])) {
			fprintf(stderr, "step %llu does not load bit-exact from the shared tier\n",
				(unsigned long long)checks[i]);
			*all_ok = 0;
		}
	ckpt_close(ctx);
	th_rmtree(fresh);
	return latest;
}

/* stderr of the library into a file for a while, so that its warnings can be counted. */
struct capture {
	int saved;
	char path[4096];
};

static void capture_begin(struct capture *c)
{
	int fd;

	snprintf(c->path, sizeof(c->path), "%s/../stderr-XXXXXX", local_dir);
	if ((fd = mkstemp(c->path)) < 0)
		die("mkstemp %s: %s", c->path, strerror(errno));
	fflush(stderr);
	c->saved = dup(2);
	dup2(fd, 2);
	close(fd);
}

/* Ends the capture, copies what was said to stderr, counts lines containing `needle`. */
static int capture_end(struct capture *c, const char *needle, char *first, size_t len)
{
	char line[2048];
	FILE *f;
	int n = 0;

	fflush(stderr);
	dup2(c->saved, 2);
	close(c->saved);
	if (first && len)
		first[0] = '\0';
	if (!(f = fopen(c->path, "r")))
		return 0;
	while (fgets(line, sizeof(line), f)) {
		fputs(line, stderr);
		if (strstr(line, needle)) {
			if (!n && first)
				snprintf(first, len, "%.*s", (int)strcspn(line, "\n"), line);
			n++;
		}
	}
	fclose(f);
	unlink(c->path);
	return n;
}

/* ---- (a) a long outage while training saves every interval_s ---- */

static int scenario_outage(void)
{
	struct outage o;
	struct capture cap;
	ckpt_ctx *ctx = open_at(local_dir, NULL, NULL, NULL);
	double took, max_save = 0, max_save_at = 0, next, t_end, t0;
	uint64_t step = 0, newest = 0, latest;
	int rc, max_local = 0, n_out = 0, n_slow = 0, warned, ok, newest_gone = 0;
	char said[512];

	/* warm-up with the volume answering: three steps committed */
	for (step = 1; step <= 3; step++) {
		if (save(ctx, step, NULL) != CKPT_OK)
			die("warm-up save");
		sleep_s(interval_s);
	}
	if ((rc = ckpt_wait(ctx, CKPT_STEP_ALL)) != CKPT_OK)
		die("warm-up ckpt_wait: %s", ckpt_errmsg(ctx));
	newest = step - 1;

	capture_begin(&cap);
	outage_start(&o);
	t_end = o.t_stall + outage_s + 3 * interval_s; /* a few saves after the volume is back */
	next = now();
	for (; now() < t_end; step++) {
		sleep_s(next - now());
		next = now() + interval_s;
		if ((rc = save(ctx, step, &took)) == CKPT_OK)
			newest = step;
		if (took > max_save) {
			max_save = took;
			max_save_at = now() - took - o.t_stall;
		}
		if (took >= 0.25) {
			n_slow++;
			fprintf(stderr, "stall_helper: ckpt_save of step %llu took %.2f s (%.1f s into "
				"the outage)\n", (unsigned long long)step, took,
				now() - took - o.t_stall);
		}
		if (!o.t_resume || now() < o.t_resume) {
			int k = local_steps();

			n_out++;
			if (k > max_local)
				max_local = k;
			/* the newest step is never the one that goes: its local copy is kept */
			if (rc == CKPT_OK && !has_local(step))
				newest_gone++;
		}
	}
	outage_end(&o);
	warned = capture_end(&cap, "not responding", said, sizeof(said));

	t0 = now();
	rc = ckpt_wait(ctx, CKPT_STEP_ALL);
	figure("outage_catchup_wait_s", "%.2f (ckpt_wait(ALL) after the volume came back: %s%s%s)",
	       now() - t0, ckpt_strerror(rc), rc ? ": " : "", rc ? ckpt_errmsg(ctx) : "");
	t0 = now();
	rc = ckpt_close(ctx);
	figure("outage_close_s", "%.2f (%s)", now() - t0, ckpt_strerror(rc));

	latest = shared_only(NULL, 0, &ok);
	figure("outage_seconds", "%.1f", outage_s);
	figure("outage_saves", "%d during the outage, %llu steps in all (newest saved: %llu)",
	       n_out, (unsigned long long)step - 1, (unsigned long long)newest);
	figure("outage_max_save_s", "%.2f (%.1f s into the outage)", max_save, max_save_at);
	figure("outage_slow_saves", "%d of >= 0.25 s", n_slow);
	figure("outage_max_local_steps", "%d (keep_local %u + max_pending %u = %u)", max_local,
	       keep_local, max_pending, keep_local + max_pending);
	figure("outage_not_responding_warnings", "%d%s%s", warned, warned ? ": " : "", said);
	target("no_save_blocks", max_save < save_limit, "longest ckpt_save %.2f s, limit %.2f s",
	       max_save, save_limit);
	target("local_disk_bounded", max_local <= (int)(keep_local + max_pending),
	       "at most %d local steps during the outage, bound %u", max_local,
	       keep_local + max_pending);
	target("newest_local_kept", newest_gone == 0, "%d saves during the outage whose local "
	       "copy was gone right after ckpt_save returned", newest_gone);
	target("newest_committed_bit_exact", latest == newest && ok,
	       "shared tier alone: latest %llu, newest saved %llu, %s", (unsigned long long)latest,
	       (unsigned long long)newest, ok ? "bit-exact" : "NOT bit-exact or unreadable");
	if (!strcmp(outage_mode, "stall"))
		target("one_warning_per_outage", warned >= 1 && warned <= 2,
		       "%d lines saying \"not responding\"", warned);
	return failed_targets ? 1 : 0;
}

/* ---- (b) ckpt_close while a drain is stuck in a call on the volume ---- */

static int scenario_close(void)
{
	struct outage o;
	ckpt_ctx *ctx = open_at(local_dir, NULL, NULL, NULL);
	double took, t_close;
	char reply[512];
	uint64_t latest, want = 3;
	int rc, kept, ok;

	if (outage_s < close_timeout + margin + 2)
		die("STALL_OUTAGE (%g) must exceed close_timeout + margin + 2", outage_s);
	for (uint64_t s = 1; s <= 2; s++)
		if (save(ctx, s, NULL) != CKPT_OK)
			die("save %llu", (unsigned long long)s);
	if (ckpt_wait(ctx, CKPT_STEP_ALL) != CKPT_OK)
		die("ckpt_wait: %s", ckpt_errmsg(ctx));

	outage_start(&o);
	rc = save(ctx, 3, &took);
	figure("close_save_during_outage_s", "%.2f (%s)", took, ckpt_strerror(rc));
	/* the drain of step 3 is now in a call on the volume, blocked in the kernel */
	if (ctl("wait-blocked 1 10", reply, sizeof(reply)) < 0)
		die("no drain call reached the volume: %s", reply);
	printf("stallfs: %s\n", reply);
	t_close = now();
	rc = ckpt_close(ctx);
	t_close = now() - t_close;
	kept = has_local(3);
	figure("close_during_outage_s", "%.2f (close_timeout %g; returned %s; the volume came back "
	       "%.1f s after the stall)", t_close, close_timeout, ckpt_strerror(rc), outage_s);
	target("close_bounded", t_close <= close_timeout + margin,
	       "ckpt_close took %.2f s, bound close_timeout %g + %g", t_close, close_timeout, margin);
	target("close_says_timedout", rc == CKPT_ETIMEDOUT, "ckpt_close returned %s",
	       ckpt_strerror(rc));
	target("close_keeps_local_copy", kept, "local copy of step 3 %s", kept ? "kept" : "gone");
	outage_end(&o);

	/* the next open drains what close left */
	ctx = open_at(local_dir, NULL, NULL, NULL);
	rc = ckpt_wait(ctx, CKPT_STEP_ALL);
	ckpt_close(ctx);
	latest = shared_only(&want, 1, &ok);
	target("reopen_commits_left_step", rc == CKPT_OK && latest == 3 && ok,
	       "after the reopen: ckpt_wait %s, latest on shared %llu, %s", ckpt_strerror(rc),
	       (unsigned long long)latest, ok ? "bit-exact" : "NOT bit-exact or unreadable");
	return failed_targets ? 1 : 0;
}

/* ---- (c) ckpt_open on a stalled volume ---- */

static int scenario_open(void)
{
	struct outage o;
	struct capture cap;
	ckpt_ctx *ctx = open_at(local_dir, NULL, NULL, NULL);
	double t_open, took, t_close;
	char said[512];
	int rc, n, named, in_msg;

	if (save(ctx, 1, NULL) != CKPT_OK || ckpt_wait(ctx, CKPT_STEP_ALL) != CKPT_OK)
		die("save step 1: %s", ckpt_errmsg(ctx));
	ckpt_close(ctx);

	outage_start(&o);
	capture_begin(&cap);
	t_open = now();
	ctx = open_at(local_dir, NULL, NULL, &rc);
	t_open = now() - t_open;
	n = capture_end(&cap, "not responding", said, sizeof(said));
	in_msg = rc != CKPT_OK && strstr(ckpt_errmsg(NULL), "not responding") != NULL;
	named = rc == CKPT_OK ? n > 0 : in_msg;
	figure("open_during_outage_s", "%.2f (bound %g + %g; returned %s%s%s; the volume came back "
	       "%.1f s after the stall)", t_open, open_bound, margin, ckpt_strerror(rc),
	       rc ? ": " : "", rc ? ckpt_errmsg(NULL) : "", outage_s);
	target("open_bounded", t_open <= open_bound + margin, "ckpt_open took %.2f s, bound %g + %g",
	       t_open, open_bound, margin);
	target("open_says_not_responding", named, "%s",
	       rc == CKPT_OK ? (n ? said : "opened without a warning") : ckpt_errmsg(NULL));
	if (rc == CKPT_OK) {
		/* it works locally: a save returns at local speed, close is bounded */
		rc = save(ctx, 2, &took);
		figure("open_then_save_s", "%.2f (%s)", took, ckpt_strerror(rc));
		target("open_then_save_fast", rc == CKPT_OK && took < save_limit,
		       "ckpt_save after the open: %s in %.2f s", ckpt_strerror(rc), took);
		t_close = now();
		rc = ckpt_close(ctx);
		t_close = now() - t_close;
		figure("open_then_close_s", "%.2f (%s)", t_close, ckpt_strerror(rc));
		target("open_then_close_bounded", t_close <= close_timeout + margin,
		       "ckpt_close %.2f s, bound %g + %g", t_close, close_timeout, margin);
	}
	outage_end(&o);
	return failed_targets ? 1 : 0;
}

/* ---- (e) the volume stalls while the drain applies retention: ckpt_save must not wait ----
 * Retention runs after each commit and reads the shared MANIFEST of every older local step
 * before it removes that step's local copy. stallfs stalls at exactly that read (the first
 * "open" of a MANIFEST: the commit itself creates and renames one, it never opens one). */
static int scenario_retention(void)
{
	struct outage o;
	ckpt_ctx *ctx = open_at(local_dir, "keep_local", "1", NULL);
	double took;
	char reply[512];
	int rc;

	if (save(ctx, 1, NULL) != CKPT_OK || ckpt_wait(ctx, 1) != CKPT_OK)
		die("step 1: %s", ckpt_errmsg(ctx));
	if (ctl("stall-at open /MANIFEST", reply, sizeof(reply)) < 0)
		die("stallfs stall-at: %s", reply);
	/* step 2 commits; retention then looks at step 1's MANIFEST and blocks */
	if (save(ctx, 2, NULL) != CKPT_OK)
		die("step 2: %s", ckpt_errmsg(ctx));
	if (ctl("wait-blocked 1 30", reply, sizeof(reply)) < 0)
		die("retention never read a MANIFEST: %s", reply);
	printf("stallfs: %s\n", reply);
	o.t_stall = now();
	o.t_resume = 0;
	if (pthread_create(&o.th, NULL, resume_later, &o) != 0)
		die("pthread_create");
	rc = save(ctx, 3, &took);
	figure("retention_save_s", "%.2f (%s; keep_local 1, 1 step pending; the volume stalled in "
	       "the drain's retention, back after %.1f s)", took, ckpt_strerror(rc), outage_s);
	target("retention_save_fast", rc == CKPT_OK && took < save_limit,
	       "ckpt_save while the drain's retention waits on the volume: %s in %.2f s",
	       ckpt_strerror(rc), took);
	outage_end(&o);
	rc = ckpt_close(ctx);
	return failed_targets ? 1 : 0;
}

/* ---- (f) the volume answers ckpt_open's probes, then stalls: the open's work on the shared
 * tier (the writer lease, the sweep, the re-drain scan) must not hold ckpt_open. A step left
 * undrained by the previous context (its drain failed with EIO) is drained once the volume is
 * back, and the step saved meanwhile too. stallfs stalls at the first lookup of the writer
 * lease: the first call on the volume after the probes. */
static int scenario_open_late(void)
{
	struct outage o;
	struct capture cap;
	ckpt_ctx *ctx = open_at(local_dir, NULL, NULL, NULL);
	uint64_t want[2] = { 2, 3 }, latest;
	double t_open, took;
	char said[512];
	int rc, n, ok;

	if (outage_s < 5 + margin + 1)
		die("STALL_OUTAGE (%g) must exceed probe_timeout 5 + margin + 1", outage_s);
	if (save(ctx, 1, NULL) != CKPT_OK || ckpt_wait(ctx, CKPT_STEP_ALL) != CKPT_OK)
		die("save step 1: %s", ckpt_errmsg(ctx));
	volume("eio");
	if (save(ctx, 2, NULL) != CKPT_OK || ckpt_wait(ctx, 2) == CKPT_OK)
		die("step 2 should be saved and fail to drain");
	volume("resume");
	ckpt_close(ctx); /* reports step 2's failure; its local copy stays */
	if (!has_local(2))
		die("the local copy of step 2 is gone");

	volume("stall-at getattr " JOB "/.writer");
	o.t_stall = now();
	o.t_resume = 0;
	if (pthread_create(&o.th, NULL, resume_later, &o) != 0)
		die("pthread_create");
	capture_begin(&cap);
	t_open = now();
	ctx = open_at(local_dir, NULL, NULL, &rc);
	t_open = now() - t_open;
	n = capture_end(&cap, "not responding", said, sizeof(said));
	figure("open_late_s", "%.2f (bound 5 + %g; returned %s%s%s; the volume stalled after the "
	       "probes, back %.1f s after the stall)", t_open, margin, ckpt_strerror(rc),
	       rc ? ": " : "", rc ? ckpt_errmsg(NULL) : "", outage_s);
	/* the bound: probe_timeout (5, the default) from the start of ckpt_open, probes included */
	target("open_late_bounded", rc == CKPT_OK && t_open <= 5 + margin,
	       "ckpt_open %s in %.2f s, bound probe_timeout 5 + %g", ckpt_strerror(rc), t_open,
	       margin);
	target("open_late_says_not_responding", n > 0, "%s", n ? said : "no warning");
	if (rc != CKPT_OK) {
		outage_end(&o);
		return 1;
	}
	rc = save(ctx, 3, &took);
	figure("open_late_save_s", "%.2f (%s)", took, ckpt_strerror(rc));
	target("open_late_save_fast", rc == CKPT_OK && took < save_limit,
	       "ckpt_save after the open: %s in %.2f s", ckpt_strerror(rc), took);
	outage_end(&o);
	rc = ckpt_wait(ctx, CKPT_STEP_ALL);
	figure("open_late_wait", "%s%s%s", ckpt_strerror(rc), rc ? ": " : "",
	       rc ? ckpt_errmsg(ctx) : "");
	ckpt_close(ctx);
	latest = shared_only(want, 2, &ok);
	target("open_late_redrained", rc == CKPT_OK && latest == 3 && ok,
	       "after the volume came back: ckpt_wait %s, latest on shared %llu, steps 2 and 3 %s",
	       ckpt_strerror(rc), (unsigned long long)latest,
	       ok ? "bit-exact" : "NOT bit-exact or unreadable");
	return failed_targets ? 1 : 0;
}

/* ---- (d) kill -9 of the saving process during an outage, then restart ---- */

/* What a SIGKILLed process is doing after up to a second: every thread dead (Z), or threads still
 * exiting, stuck in the kernel (state and wchan of each). A diagnostic figure, not a
 * synchronisation: nothing waits on it. */
static void proc_state(pid_t pid, char *out, size_t len)
{
	char path[300], buf[512], wchan[128];
	struct dirent *e;
	size_t off = 0;
	int alive = 1;
	DIR *d;
	FILE *f;

	out[0] = '\0';
	for (int i = 0; i < 100 && alive; i++) {
		snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
		alive = 0;
		off = 0;
		out[0] = '\0';
		if (!(d = opendir(path)))
			break;
		while ((e = readdir(d))) {
			char state = '?';

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", (int)pid, e->d_name);
			if ((f = fopen(path, "r"))) {
				if (fgets(buf, sizeof(buf), f) && strrchr(buf, ')'))
					state = strrchr(buf, ')')[2];
				fclose(f);
			}
			snprintf(wchan, sizeof(wchan), "-");
			snprintf(path, sizeof(path), "/proc/%d/task/%s/wchan", (int)pid, e->d_name);
			if (state != 'Z' && (f = fopen(path, "r"))) {
				if (!fgets(wchan, sizeof(wchan), f))
					snprintf(wchan, sizeof(wchan), "?");
				fclose(f);
			}
			if (state != 'Z')
				alive = 1;
			if (off < len)
				off += (size_t)snprintf(out + off, len - off, "%sthread %s %c%s%s",
							off ? ", " : "", e->d_name, state,
							state == 'Z' ? "" : " in ",
							state == 'Z' ? "" : wchan);
		}
		closedir(d);
		if (alive)
			sleep_s(0.01);
	}
	if (off < len)
		snprintf(out + off, len - off, " (1 s after SIGKILL: %s)",
			 alive ? "threads still exiting, blocked in the kernel" : "all dead");
}

static int scenario_kill(void)
{
	const uint64_t committed[3] = { 1, 2, 3 };
	struct outage o;
	ckpt_ctx *ctx = open_at(local_dir, "keep_shared", "0", NULL);
	int fds[2], st, ok, n_after = 0;
	uint64_t last = 0, s, latest;
	double t_kill, t_reap, t_deadline;
	char pstate[1024];
	pid_t pid, parent;
	int rc;

	/* each committed before the next (a save while two drains are behind may skip the older
	 * queued step, issue 13: these three must all be on the shared tier) */
	for (s = 1; s <= 3; s++)
		if (save(ctx, s, NULL) != CKPT_OK || ckpt_wait(ctx, s) != CKPT_OK)
			die("save %llu", (unsigned long long)s);
	if (ckpt_wait(ctx, CKPT_STEP_ALL) != CKPT_OK)
		die("ckpt_wait: %s", ckpt_errmsg(ctx));
	ckpt_close(ctx);

	if (pipe(fds) < 0)
		die("pipe: %s", strerror(errno));
	parent = getpid();
	if ((pid = fork()) < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		/* the training process: saves steps 4, 5, ... and says which are durable locally;
		 * it dies with us, should we be killed first (a timeout of the driver) */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(3);
		close(fds[0]);
		ctx = open_at(local_dir, "keep_shared", "0", NULL);
		for (s = 4;; s++) {
			if (save(ctx, s, NULL) == CKPT_OK &&
			    write(fds[1], &s, sizeof(s)) != (ssize_t)sizeof(s))
				_exit(3);
			sleep_s(interval_s);
		}
	}
	close(fds[1]);
	/* the volume stalls once the child has saved two steps of its own */
	while (last < 5 && read(fds[0], &s, sizeof(s)) == (ssize_t)sizeof(s))
		last = s;
	if (last < 5)
		die("the training process stopped before step 5");
	outage_start(&o);
	/* it trains on for half the outage (or blocks), then dies */
	t_deadline = o.t_stall + outage_s / 2;
	for (;;) {
		struct pollfd p = { fds[0], POLLIN, 0 };
		double left = t_deadline - now();

		if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) <= 0 || now() >= t_deadline)
			break;
		if (read(fds[0], &s, sizeof(s)) != (ssize_t)sizeof(s))
			break;
		last = s;
		n_after++;
	}
	t_kill = now();
	kill(pid, SIGKILL);
	proc_state(pid, pstate, sizeof(pstate));
	waitpid(pid, &st, 0);
	t_reap = now();
	close(fds[0]);
	outage_end(&o);
	figure("kill_saves_during_outage", "%d in %.1f s (newest durable locally: step %llu)",
	       n_after, t_kill - o.t_stall, (unsigned long long)last);
	figure("kill_state_after_kill", "%s", pstate);
	figure("kill_reaped_after_s", "%.2f (%s)", t_reap - t_kill,
	       t_reap >= o.t_resume && o.t_resume ? "only once the volume came back" :
						    "during the outage");

	/* restart with the volume back: the newest complete local step is drained */
	ctx = open_at(local_dir, "keep_shared", "0", NULL);
	rc = ckpt_wait(ctx, CKPT_STEP_ALL);
	figure("kill_restart_wait", "%s", ckpt_strerror(rc));
	ckpt_close(ctx);
	latest = shared_only(committed, 3, &ok);
	target("kill_nothing_lost", ok, "steps 1-3 committed before the outage %s",
	       ok ? "load bit-exact from shared" : "are NOT all intact on shared");
	target("kill_newest_committed", latest >= last && latest <= last + 1 && ok,
	       "latest on shared %llu, newest durable locally when killed %llu",
	       (unsigned long long)latest, (unsigned long long)last);
	return failed_targets ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *sc = argc == 5 ? argv[1] : "";
	int rc;

	if (argc != 5) {
		fprintf(stderr, "usage: stall_helper outage|close|open|open_late|kill|retention LOCAL SHARED "
				"CTLSOCK\n");
		return 2;
	}
	th_clean_environment();
	local_dir = argv[2];
	shared_dir = argv[3];
	ctl_path = argv[4];
	outage_s = env_d("STALL_OUTAGE", 15);
	interval_s = env_d("STALL_INTERVAL", 0.5);
	save_limit = env_d("STALL_SAVE_LIMIT", 2);
	close_timeout = env_d("STALL_CLOSE_TIMEOUT", 3);
	open_bound = env_d("STALL_OPEN_BOUND", 10);
	margin = env_d("STALL_MARGIN", 1);
	keep_local = (unsigned)env_d("STALL_KEEP_LOCAL", 2);
	max_pending = (unsigned)env_d("STALL_MAX_PENDING", 2);
	if (getenv("STALL_MODE") && !strcmp(getenv("STALL_MODE"), "eio"))
		outage_mode = "eio";
	state_size = (size_t)(env_d("STALL_MB", 4) * (1 << 20)) & ~(size_t)3;
	if (!(state_buf = malloc(state_size)))
		die("out of memory");
	th_make_data(state_buf, state_size, 0); /* reads the real weights once, before any fork */
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("scenario %s: %s outage %g s, save every %g s, %zu MiB/step, keep_local %u, "
	       "max_pending %u, close_timeout %g\n", sc, outage_mode, outage_s, interval_s, state_size >> 20,
	       keep_local, max_pending, close_timeout);
	if (!strcmp(sc, "outage"))
		rc = scenario_outage();
	else if (!strcmp(sc, "close"))
		rc = scenario_close();
	else if (!strcmp(sc, "open"))
		rc = scenario_open();
	else if (!strcmp(sc, "kill"))
		rc = scenario_kill();
	else if (!strcmp(sc, "retention"))
		rc = scenario_retention();
	else if (!strcmp(sc, "open_late"))
		rc = scenario_open_late();
	else
		die("unknown scenario %s", sc);
	free(state_buf);
	return rc;
}
