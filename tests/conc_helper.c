/* SPDX-License-Identifier: MIT */
/* Issue 12 scenarios (tests/test_conc.sh): several processes, each a "node" with its own
 * local_dir, on one job's shared directory, on the public API, with real processes and files.
 *
 *   conc_helper resave  BASE          (a) writer re-saves + another node loops open/close
 *   conc_helper reader  BASE          (b) reader on another node during re-saves and retention
 *   conc_helper tools   BASE TOOL     (c) ckpt-restore / ckpt verify during retention
 *   conc_helper dupopen BASE          (d) second open of a job rank in one process
 *   conc_helper latest1 BASE STEP     (e) a 1-process open of the MPI job's shared tier
 *   conc_helper tryopen LOCAL SHARED  internal: exit 0 opened, 11 CKPT_EBUSY, 1 other error
 *
 * Every scenario prints its figures on one "figures:" line, one line per promise ("ok - ..." or
 * "FAIL - ..."), and exits 1 when a promise is broken. Each is bounded in iterations (CONC_*
 * variables below) and in time (CONC_SECONDS, default 60): at the deadline it stops and judges
 * what it saw. Processes synchronise through pipes, never through sleeps.
 *
 * Every save carries its identity inside its bytes: both regions ("a" and "b") start with a tag
 * {magic, step, save counter} followed by real training data derived from (step, counter), so
 * a reader can tell which save a region came from, whether its bytes are intact, and whether two
 * loads of one step came from different saves. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "harness.h"

#define TAG_MAGIC 0x31656e6f636b7063ull /* "cpkcone1" */
#define TAG_BYTES 24u

static const char *base;
static size_t region_size;
static double deadline;
static int failed;

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int past_deadline(void)
{
	return now_s() >= deadline;
}

static unsigned long env_ul(const char *name, unsigned long def)
{
	const char *v = getenv(name);

	return v && *v ? strtoul(v, NULL, 10) : def;
}

static void check(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int cond, const char *fmt, ...)
{
	va_list ap;

	printf("  %s - ", cond ? "ok" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!cond)
		failed = 1;
}

/* base/<node>, created: one node's local_dir. */
static void node_dir(char *buf, size_t len, const char *node)
{
	snprintf(buf, len, "%s/%s", base, node);
	mkdir(buf, 0750);
}

/* Open the job "job" of base/shared from node `node` with the key/value pairs kv. */
static ckpt_ctx *open_node(const char *node, const char *const *kv, int *rc_out)
{
	struct th_env e = { 0 };
	ckpt_config *cfg = NULL;
	ckpt_ctx *ctx = NULL;
	int rc;

	node_dir(e.local, sizeof(e.local), node);
	node_dir(e.shared, sizeof(e.shared), "shared");
	if ((rc = ckpt_config_new(&cfg)) == CKPT_OK &&
	    (rc = ckpt_config_set(cfg, "local_dir", e.local)) == CKPT_OK &&
	    (rc = ckpt_config_set(cfg, "shared_dir", e.shared)) == CKPT_OK &&
	    (rc = ckpt_config_set(cfg, "name", "job")) == CKPT_OK)
		for (size_t i = 0; kv && kv[i] && rc == CKPT_OK; i += 2)
			rc = ckpt_config_set(cfg, kv[i], kv[i + 1]);
	if (rc == CKPT_OK)
		rc = ckpt_open(&ctx, cfg);
	ckpt_config_free(cfg);
	if (rc_out)
		*rc_out = rc;
	return ctx;
}

/* The regions of save `counter` of `step` (two buffers of region_size bytes). */
static void make_save(uint8_t *a, uint8_t *b, uint64_t step, uint64_t counter)
{
	uint64_t tag[3] = { TAG_MAGIC, step, counter };

	th_make_data(a + TAG_BYTES, region_size - TAG_BYTES, step << 32 | counter);
	th_make_data(b + TAG_BYTES, region_size - TAG_BYTES, ~(step << 32 | counter));
	memcpy(a, tag, TAG_BYTES);
	memcpy(b, tag, TAG_BYTES);
}

/* Which save a loaded region is: its counter, or -1 when its bytes are not exactly that save's
 * (tag or data damaged). `which` is 'a' or 'b'. */
static int64_t save_of(const uint8_t *buf, int which, uint64_t step)
{
	static uint8_t *expect;
	uint64_t tag[3];

	memcpy(tag, buf, TAG_BYTES);
	if (tag[0] != TAG_MAGIC || tag[1] != step || tag[2] >> 32)
		return -1;
	if (!expect && !(expect = malloc(region_size)))
		return -1;
	th_make_data(expect, region_size - TAG_BYTES,
		     which == 'a' ? step << 32 | tag[2] : ~(step << 32 | tag[2]));
	return memcmp(expect, buf + TAG_BYTES, region_size - TAG_BYTES) ? -1 : (int64_t)tag[2];
}

static int save_step(ckpt_ctx *ctx, uint8_t *a, uint8_t *b, uint64_t step, uint64_t counter)
{
	ckpt_region r[2] = { { "a", a, region_size }, { "b", b, region_size } };

	make_save(a, b, step, counter);
	return ckpt_save(ctx, step, r, 2);
}

/* Is step's MANIFEST on the shared tier now? */
static int manifest_present(uint64_t step)
{
	char p[PATH_MAX];
	struct stat st;

	snprintf(p, sizeof(p), "%s/shared/job/step-%020" PRIu64 "/MANIFEST", base, step);
	return lstat(p, &st) == 0;
}

/* Non-blocking: has the other end of `fd` closed it (or written)? */
static int signalled(int fd)
{
	struct pollfd p = { fd, POLLIN, 0 };

	return poll(&p, 1, 0) > 0;
}

/* Block until the other side writes a byte or closes: 1 on a byte, 0 on EOF. */
static int wait_byte(int fd)
{
	char c;
	ssize_t n;

	while ((n = read(fd, &c, 1)) < 0 && errno == EINTR)
		;
	return n == 1;
}

static void send_byte(int fd)
{
	char c = 1;

	while (write(fd, &c, 1) < 0 && errno == EINTR)
		;
}

static int wait_child(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static const char *const quiet_kv[] = { "log_level", "0", NULL };

/* ---------------------------------------------------------------------------------------------
 * (a) A confirmed commit is deleted by another node's open.
 *
 * The writer (this process) re-saves steps 1..CONC_STEPS, CONC_RESAVES times each, waits for
 * each save, with keep_shared=0 and keep_local=1 (retention removes local copies once the shared
 * copy is committed). Another process, a node of its own, loops ckpt_open/ckpt_close on the same
 * shared_dir and name. Afterwards a third node, whose local_dir is empty, loads every step: the
 * last save that ckpt_wait confirmed must be there, bit-exact.
 */
static int scen_resave(void)
{
	unsigned long nsteps = env_ul("CONC_STEPS", 10), resaves = env_ul("CONC_RESAVES", 5);
	const char *const wkv[] = { "keep_shared", "0", "keep_local", "1", "log_level", "0", NULL };
	uint64_t *confirmed = calloc(nsteps + 1, sizeof(*confirmed)), counter = 0;
	unsigned long saves = 0, wait_failed = 0, save_failed = 0, lost = 0, wrong = 0;
	uint8_t *a = malloc(region_size), *b = malloc(region_size);
	int stop[2], res[2], rc;
	unsigned long opens[2] = { 0, 0 }; /* opened, refused */
	pid_t pid;
	ckpt_ctx *ctx;

	if (!confirmed || !a || !b || pipe(stop) || pipe(res))
		return 2;
	/* The opener: a process of its own before this one opens anything. */
	if ((pid = fork()) == 0) {
		close(stop[1]);
		close(res[0]);
		for (unsigned long i = 0; i < 1000000 && !signalled(stop[0]) && !past_deadline();
		     i++) {
			ckpt_ctx *o = open_node("node-opener", quiet_kv, &rc);

			opens[rc == CKPT_OK ? 0 : 1]++;
			ckpt_close(o);
		}
		if (write(res[1], opens, sizeof(opens)) != sizeof(opens))
			_exit(2);
		_exit(0);
	}
	close(stop[0]);
	close(res[1]);
	if (!(ctx = open_node("node-writer", wkv, &rc))) {
		fprintf(stderr, "writer open: %s: %s\n", ckpt_strerror(rc), ckpt_errmsg(NULL));
		close(stop[1]);
		wait_child(pid);
		return 2;
	}
	for (uint64_t step = 1; step <= nsteps && !past_deadline(); step++)
		for (unsigned long r = 0; r < resaves && !past_deadline(); r++) {
			if ((rc = save_step(ctx, a, b, step, ++counter)) != CKPT_OK) {
				save_failed++;
				continue;
			}
			saves++;
			if ((rc = ckpt_wait(ctx, step)) == CKPT_OK)
				confirmed[step] = counter;
			else
				wait_failed++;
		}
	rc = ckpt_close(ctx);
	close(stop[1]); /* EOF: the opener stops */
	if (read(res[0], opens, sizeof(opens)) != sizeof(opens))
		opens[0] = opens[1] = 0;
	close(res[0]);
	wait_child(pid);

	/* The shared tier alone: a node with an empty local_dir. */
	if (!(ctx = open_node("node-verifier", quiet_kv, &rc))) {
		fprintf(stderr, "verifier open: %s: %s\n", ckpt_strerror(rc), ckpt_errmsg(NULL));
		return 2;
	}
	unsigned long nconfirmed = 0;

	for (uint64_t step = 1; step <= nsteps; step++) {
		int64_t got;

		if (!confirmed[step])
			continue;
		nconfirmed++;
		rc = ckpt_load(ctx, step, "a", a, region_size);
		if (rc == CKPT_OK)
			rc = ckpt_load(ctx, step, "b", b, region_size);
		if (rc != CKPT_OK) {
			if (lost++ < 3)
				printf("    step %" PRIu64 " (save %" PRIu64 " confirmed): %s: %s\n",
				       step, confirmed[step], ckpt_strerror(rc), ckpt_errmsg(ctx));
			continue;
		}
		if ((got = save_of(a, 'a', step)) != (int64_t)confirmed[step] ||
		    save_of(b, 'b', step) != got) {
			wrong++;
			printf("    step %" PRIu64 ": loaded save %" PRId64 ", confirmed %" PRIu64 "\n",
			       step, got, confirmed[step]);
		}
	}
	ckpt_close(ctx);
	printf("figures: resave steps=%lu saves=%lu save_failed=%lu wait_failed=%lu "
	       "confirmed_steps=%lu lost=%lu wrong_save=%lu opener_opens=%lu opener_refused=%lu\n",
	       nsteps, saves, save_failed, wait_failed, nconfirmed, lost, wrong, opens[0], opens[1]);
	check(saves > 0 && nconfirmed > 0, "the writer saved (%lu) and confirmed (%lu steps)", saves,
	      nconfirmed);
	check(opens[0] + opens[1] > 0, "the other node opened the job while the writer ran (%lu "
	      "opens, %lu refused)", opens[0], opens[1]);
	check(lost == 0, "every step whose save ckpt_wait confirmed loads from the shared tier "
	      "alone (%lu of %lu lost)", lost, nconfirmed);
	check(wrong == 0, "and it is the confirmed save, bit-exact (%lu other saves)", wrong);
	free(confirmed);
	free(a);
	free(b);
	return failed;
}

/* ---------------------------------------------------------------------------------------------
 * (b) A reader on another node loads continuously during re-saves and retention.
 *
 * The writer (this process) saves steps 1, 2, ... CONC_RESAVES times each (keep_shared=3,
 * keep_local=1), waiting for each save. Once the first step is committed, a reader process on a
 * node of its own loops: ckpt_latest, then ckpt_load of region "a" and of region "b" of that step.
 * False errors: CKPT_ECORRUPT, CKPT_ENOENT, or any other error than a code added after CKPT_EBUSY
 * (which issue 12 reserves for "the save you were reading is gone"). Mixed saves: "a" and "b"
 * of one step, loaded by one context, from different saves.
 */
struct reader_figures {
	unsigned long pairs, latest_err, corrupt, enoent_committed, enoent_retired, gone,
		other_err, bad_bytes, mixed;
	int first_rc;
	char first_msg[256];
};

static void reader_error(struct reader_figures *f, ckpt_ctx *ctx, int rc, uint64_t step)
{
	if (rc == CKPT_ECORRUPT)
		f->corrupt++;
	else if (rc == CKPT_ENOENT)
		*(manifest_present(step) ? &f->enoent_committed : &f->enoent_retired) += 1;
	else if (rc < CKPT_EBUSY)
		f->gone++; /* a distinct, new code: accepted */
	else
		f->other_err++;
	if (!f->first_rc && rc >= CKPT_EBUSY) {
		f->first_rc = rc;
		snprintf(f->first_msg, sizeof(f->first_msg), "step %" PRIu64 ": %s", step,
			 ckpt_errmsg(ctx));
	}
}

static void reader(int go, int stop, int res, unsigned long max_pairs)
{
	struct reader_figures f = { 0 };
	uint8_t *a = malloc(region_size), *b = malloc(region_size);
	ckpt_ctx *ctx;
	int rc;

	if (!a || !b || !wait_byte(go))
		_exit(2);
	/* One context for the whole run: "the loads of one context for a step come from one save".
	 * (A read-only open, when the library has one, belongs here.) */
	if (!(ctx = open_node("node-reader", NULL, &rc))) {
		fprintf(stderr, "reader open: %s: %s\n", ckpt_strerror(rc), ckpt_errmsg(NULL));
		_exit(2);
	}
	while (f.pairs < max_pairs && !signalled(stop) && !past_deadline()) {
		uint64_t step;
		int64_t sa, sb;

		f.pairs++;
		if ((rc = ckpt_latest(ctx, &step)) != CKPT_OK) {
			f.latest_err++;
			if (!f.first_rc) {
				f.first_rc = rc;
				snprintf(f.first_msg, sizeof(f.first_msg), "latest: %s",
					 ckpt_errmsg(ctx));
			}
			continue;
		}
		if ((rc = ckpt_load(ctx, step, "a", a, region_size)) != CKPT_OK) {
			reader_error(&f, ctx, rc, step);
			continue;
		}
		if ((rc = ckpt_load(ctx, step, "b", b, region_size)) != CKPT_OK) {
			reader_error(&f, ctx, rc, step);
			continue;
		}
		sa = save_of(a, 'a', step);
		sb = save_of(b, 'b', step);
		if (sa < 0 || sb < 0)
			f.bad_bytes++;
		else if (sa != sb)
			f.mixed++;
	}
	ckpt_close(ctx);
	if (write(res, &f, sizeof(f)) != sizeof(f))
		_exit(2);
	_exit(0);
}

static int scen_reader(void)
{
	unsigned long nsteps = env_ul("CONC_STEPS", 60), resaves = env_ul("CONC_RESAVES", 3);
	const char *const wkv[] = { "keep_shared", "3", "keep_local", "1", "log_level", "0", NULL };
	unsigned long saves = 0, failures = 0;
	uint8_t *a = malloc(region_size), *b = malloc(region_size);
	struct reader_figures f = { 0 };
	uint64_t counter = 0, step;
	int go[2], stop[2], res[2], rc, went = 0, st;
	pid_t pid;
	ckpt_ctx *ctx;

	if (!a || !b || pipe(go) || pipe(stop) || pipe(res))
		return 2;
	if ((pid = fork()) == 0) {
		close(go[1]);
		close(stop[1]);
		close(res[0]);
		reader(go[0], stop[0], res[1], env_ul("CONC_PAIRS", 1000000));
	}
	close(go[0]);
	close(stop[0]);
	close(res[1]);
	if (!(ctx = open_node("node-writer", wkv, &rc))) {
		fprintf(stderr, "writer open: %s: %s\n", ckpt_strerror(rc), ckpt_errmsg(NULL));
		close(go[1]);
		close(stop[1]);
		wait_child(pid);
		return 2;
	}
	for (step = 1; step <= nsteps && !past_deadline(); step++)
		for (unsigned long r = 0; r < resaves && !past_deadline(); r++) {
			if ((rc = save_step(ctx, a, b, step, ++counter)) == CKPT_OK)
				rc = ckpt_wait(ctx, step);
			saves += rc == CKPT_OK;
			failures += rc != CKPT_OK;
			if (rc == CKPT_OK && !went) {
				send_byte(go[1]); /* a committed step exists from now on */
				went = 1;
			}
		}
	close(stop[1]);
	close(go[1]);
	if (read(res[0], &f, sizeof(f)) != sizeof(f))
		memset(&f, 0, sizeof(f));
	close(res[0]);
	st = wait_child(pid);
	ckpt_close(ctx);
	printf("figures: reader steps=%" PRIu64 " writer_saves=%lu writer_failures=%lu pairs=%lu "
	       "latest_err=%lu corrupt=%lu enoent_committed=%lu enoent_retired=%lu other_err=%lu "
	       "gone_distinct=%lu bad_bytes=%lu mixed=%lu\n",
	       step - 1, saves, failures, f.pairs, f.latest_err, f.corrupt, f.enoent_committed,
	       f.enoent_retired, f.other_err, f.gone, f.bad_bytes, f.mixed);
	if (f.first_rc)
		printf("    first false error: %s: %s\n", ckpt_strerror(f.first_rc), f.first_msg);
	check(st == 0 && f.pairs > 0, "the reader ran (%lu pairs, exit %d)", f.pairs, st);
	check(failures == 0, "the writer's saves all committed (%lu failed)", failures);
	check(f.latest_err == 0, "ckpt_latest always named a step (%lu errors)", f.latest_err);
	check(f.corrupt == 0, "no CKPT_ECORRUPT for intact steps (%lu)", f.corrupt);
	check(f.enoent_committed + f.enoent_retired == 0,
	      "no CKPT_ENOENT for the step ckpt_latest just named (%lu while still committed, %lu "
	      "retired meanwhile)", f.enoent_committed, f.enoent_retired);
	check(f.other_err == 0, "no other error (%lu)", f.other_err);
	check(f.bad_bytes == 0, "every loaded region is exactly one save's bytes (%lu not)",
	      f.bad_bytes);
	check(f.mixed == 0, "two loads of one step in one context come from one save (%lu mixed of "
	      "%lu pairs)", f.mixed, f.pairs);
	free(a);
	free(b);
	return failed;
}

/* ---------------------------------------------------------------------------------------------
 * (c) ckpt-restore and ckpt verify during retention (keep_shared=1).
 *
 * A writer process commits steps 1, 2, ... (one save each, keep_shared=1: every commit retires
 * the step before). Once step 1 is committed, this process runs `ckpt-restore` (a link named so,
 * to TOOL) into a fresh local directory and `ckpt verify`, alternately, CONC_TOOL_RUNS times in
 * all. A committed step exists throughout, so every run must exit 0.
 */
struct tool_counts {
	unsigned long runs, ok, nothing, damaged, io, other;
};

static int run_tool(char *const argv[], const char *log)
{
	pid_t pid;
	int fd;

	if ((pid = fork()) == 0) {
		if ((fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640)) < 0)
			_exit(127);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid < 0 ? -1 : wait_child(pid);
}

static void count_exit(struct tool_counts *c, int code, const char *what, const char *log)
{
	c->runs++;
	switch (code) {
	case 0: c->ok++; return;
	case 1: c->nothing++; break;
	case 2: c->damaged++; break;
	case 3: c->io++; break;
	default: c->other++; break;
	}
	if (c->runs - c->ok <= 2) {
		printf("    %s exited %d:\n", what, code);
		th_sh("sed 's/^/      /' '%s' | head -5", log);
		fflush(stdout);
	}
}

static int scen_tools(const char *tool)
{
	unsigned long runs = env_ul("CONC_TOOL_RUNS", 300), commits = 0, failures = 0;
	const char *const wkv[] = { "keep_shared", "1", "keep_local", "1", "log_level", "0", NULL };
	struct tool_counts rs = { 0 }, vf = { 0 };
	char restore[PATH_MAX], shared[PATH_MAX], local[PATH_MAX], log[PATH_MAX], real[PATH_MAX];
	int go[2], stop[2], res[2], rc;
	pid_t pid;

	if (!tool || !realpath(tool, real))
		return 2;
	snprintf(restore, sizeof(restore), "%s/ckpt-restore", base);
	if (symlink(real, restore) < 0)
		return 2;
	snprintf(shared, sizeof(shared), "%s/shared", base);
	snprintf(local, sizeof(local), "%s/node-restore", base);
	snprintf(log, sizeof(log), "%s/tool.log", base);
	if (pipe(go) || pipe(stop) || pipe(res))
		return 2;
	if ((pid = fork()) == 0) {
		uint8_t *a = malloc(region_size), *b = malloc(region_size);
		unsigned long n[2] = { 0, 0 };
		ckpt_ctx *ctx;

		close(go[0]);
		close(stop[1]);
		close(res[0]);
		if (!a || !b || !(ctx = open_node("node-writer", wkv, &rc)))
			_exit(2);
		for (uint64_t step = 1; step < 1000000 && !signalled(stop[0]) && !past_deadline();
		     step++) {
			if ((rc = save_step(ctx, a, b, step, step)) == CKPT_OK)
				rc = ckpt_wait(ctx, step);
			n[rc == CKPT_OK ? 0 : 1]++;
			if (rc == CKPT_OK && n[0] == 1)
				send_byte(go[1]);
		}
		ckpt_close(ctx);
		if (write(res[1], n, sizeof(n)) != sizeof(n))
			_exit(2);
		_exit(0);
	}
	close(go[1]);
	close(stop[0]);
	close(res[1]);
	if (!wait_byte(go[0])) {
		close(stop[1]);
		wait_child(pid);
		return 2;
	}
	for (unsigned long i = 0; i < runs && !past_deadline(); i++) {
		if (i % 2 == 0) {
			char *const argv[] = { restore, "--shared-dir", shared, "--local-dir", local,
					       "--name", "job", NULL };

			th_rmtree(local); /* a new node each time */
			mkdir(local, 0750);
			count_exit(&rs, run_tool(argv, log), "ckpt-restore", log);
		} else {
			char *const argv[] = { real, "verify", "--shared-dir", shared, "--name", "job",
					       NULL };

			count_exit(&vf, run_tool(argv, log), "ckpt verify", log);
		}
	}
	close(stop[1]);
	{
		unsigned long n[2] = { 0, 0 };

		if (read(res[0], n, sizeof(n)) == sizeof(n)) {
			commits = n[0];
			failures = n[1];
		}
	}
	close(res[0]);
	rc = wait_child(pid);
	printf("figures: tools writer_commits=%lu writer_failures=%lu restore_runs=%lu ok=%lu "
	       "no_step=%lu damaged=%lu io=%lu other=%lu verify_runs=%lu ok=%lu no_step=%lu "
	       "damaged=%lu io=%lu other=%lu\n",
	       commits, failures, rs.runs, rs.ok, rs.nothing, rs.damaged, rs.io, rs.other, vf.runs,
	       vf.ok, vf.nothing, vf.damaged, vf.io, vf.other);
	check(rc == 0 && commits > 1 && failures == 0, "the writer committed %lu steps during the "
	      "runs (%lu failed, exit %d)", commits, failures, rc);
	check(rs.runs > 0 && rs.ok == rs.runs, "ckpt-restore restored a step every time (%lu of "
	      "%lu: %lu \"no step\", %lu \"damaged\", %lu I/O, %lu other)", rs.ok, rs.runs,
	      rs.nothing, rs.damaged, rs.io, rs.other);
	check(vf.runs > 0 && vf.ok == vf.runs, "ckpt verify found the newest step intact every time "
	      "(%lu of %lu: %lu \"no step\", %lu \"damaged\", %lu I/O, %lu other)", vf.ok,
	      vf.runs, vf.nothing, vf.damaged, vf.io, vf.other);
	return failed;
}

/* ---------------------------------------------------------------------------------------------
 * (d) A second open of a job rank in one process, and the lock that closing it drops.
 */

/* Another process's ckpt_open of the job from node `node`: 0 opened, 11 CKPT_EBUSY, 1 other. */
static int try_open_elsewhere(const char *node)
{
	char local[PATH_MAX], shared[PATH_MAX], self[PATH_MAX];
	ssize_t n;
	pid_t pid;

	node_dir(local, sizeof(local), node);
	node_dir(shared, sizeof(shared), "shared");
	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) <= 0)
		return -1;
	self[n] = '\0';
	fflush(stdout);
	if ((pid = fork()) == 0) {
		char *const argv[] = { self, "tryopen", local, shared, NULL };

		execv(self, argv); /* a new process image: no state of this one's threads */
		_exit(127);
	}
	return pid < 0 ? -1 : wait_child(pid);
}

static int scen_tryopen(const char *local, const char *shared)
{
	ckpt_config *cfg = NULL;
	ckpt_ctx *ctx = NULL;
	int rc;

	if ((rc = ckpt_config_new(&cfg)) == CKPT_OK &&
	    (rc = ckpt_config_set(cfg, "local_dir", local)) == CKPT_OK &&
	    (rc = ckpt_config_set(cfg, "shared_dir", shared)) == CKPT_OK &&
	    (rc = ckpt_config_set(cfg, "name", "job")) == CKPT_OK &&
	    (rc = ckpt_config_set(cfg, "log_level", "0")) == CKPT_OK)
		rc = ckpt_open(&ctx, cfg);
	ckpt_config_free(cfg);
	if (rc != CKPT_OK && rc != CKPT_EBUSY)
		fprintf(stderr, "tryopen: %s: %s\n", ckpt_strerror(rc), ckpt_errmsg(NULL));
	ckpt_close(ctx);
	return rc == CKPT_OK ? 0 : rc == CKPT_EBUSY ? 11 : 1;
}

static int scen_dupopen(void)
{
	ckpt_ctx *c1, *c2;
	int rc, other;

	if (!(c1 = open_node("node", quiet_kv, &rc))) {
		fprintf(stderr, "open: %s: %s\n", ckpt_strerror(rc), ckpt_errmsg(NULL));
		return 2;
	}
	other = try_open_elsewhere("node");
	check(other == 11, "another process's open of the same rank is refused with CKPT_EBUSY "
	      "while the first context is open (child exit %d: 0 opened, 11 EBUSY)", other);
	c2 = open_node("node", quiet_kv, &rc);
	check(rc == CKPT_EBUSY, "a second ckpt_open of the same job rank in the same process fails "
	      "with CKPT_EBUSY (got %s%s%s)", ckpt_strerror(rc), rc ? ": " : "",
	      rc ? ckpt_errmsg(NULL) : "");
	if (c2) {
		ckpt_close(c2); /* today: releases the process's fcntl lock on the lock file */
		other = try_open_elsewhere("node");
		check(other == 11, "after closing the second context, another process's open is still "
		      "refused while the first is open (child exit %d: 0 opened, 11 EBUSY)", other);
	}
	ckpt_close(c1);
	other = try_open_elsewhere("node");
	check(other == 0, "after ckpt_close of the first context the rank opens again (child exit "
	      "%d)", other);
	printf("figures: dupopen second_open_rc=%d\n", rc);
	return failed;
}

/* ---------------------------------------------------------------------------------------------
 * (e) helper: a 1-process open (no MPI) of the shared tier that an MPI job wrote.
 */
static int scen_latest1(uint64_t expect)
{
	uint64_t step = 0;
	ckpt_ctx *ctx;
	int rc;

	if (!(ctx = open_node("node-single", quiet_kv, &rc))) {
		fprintf(stderr, "open: %s: %s\n", ckpt_strerror(rc), ckpt_errmsg(NULL));
		return 2;
	}
	rc = ckpt_latest(ctx, &step);
	check(rc == CKPT_OK && step == expect, "a 1-process ckpt_latest names step %" PRIu64
	      " (got %s, step %" PRIu64 "%s%s)", expect, ckpt_strerror(rc), rc ? 0 : step,
	      rc ? ": " : "", rc ? ckpt_errmsg(ctx) : "");
	ckpt_close(ctx);
	return failed;
}

int main(int argc, char **argv)
{
	const char *scen = argc > 1 ? argv[1] : "";
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	th_clean_environment();
	if (argc == 4 && !strcmp(scen, "tryopen"))
		return scen_tryopen(argv[2], argv[3]);
	if (argc < 3) {
		fprintf(stderr, "usage: %s resave|reader|tools|dupopen|latest1 BASE [TOOL|STEP]\n",
			argv[0]);
		return 64;
	}
	base = argv[2];
	region_size = env_ul("CONC_SIZE", 65536);
	if (region_size < 2 * TAG_BYTES)
		region_size = 2 * TAG_BYTES;
	deadline = now_s() + (double)env_ul("CONC_SECONDS", 60);
	signal(SIGPIPE, SIG_IGN);
	/* th_make_data reads the real weights on its first call: before any fork */
	{
		uint8_t warm[64];

		th_make_data(warm, sizeof(warm), 0);
	}
	printf("conc %s (region %zu bytes x 2)\n", scen, region_size);
	if (!strcmp(scen, "resave"))
		rc = scen_resave();
	else if (!strcmp(scen, "reader"))
		rc = scen_reader();
	else if (!strcmp(scen, "tools"))
		rc = scen_tools(argc > 3 ? argv[3] : NULL);
	else if (!strcmp(scen, "dupopen"))
		rc = scen_dupopen();
	else if (!strcmp(scen, "latest1"))
		rc = scen_latest1(argc > 3 ? strtoull(argv[3], NULL, 10) : 0);
	else
		rc = 64;
	return rc;
}
