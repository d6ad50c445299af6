/* SPDX-License-Identifier: MIT */
/* ckpt: the operator's command for libckpt checkpoints; installed a second time as ckpt-restore,
 * which behaves as `ckpt restore`.
 *
 * This file is the driver: the table of commands, the one option parser, usage errors, and
 * main, which runs a command and hands its result to the one printer (tool_print.c). Each
 * command lives in cmd_<name>.c; a new one is a new file and one line in `commands` below.
 *
 * The tool works on the files alone, with no MPI launcher and no running job: the layout and the
 * checks are those of the library (store_*.c, step.c, shard_*.c), linked in from its internal
 * convenience library, so that the tool and the library can never disagree about what a valid
 * step is. */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

/* `ckpt --help` lists them in this order. */
static const struct tool_cmd *const commands[] = {
	&tool_cmd_ls, &tool_cmd_verify, &tool_cmd_gc, &tool_cmd_restore, &tool_cmd_doctor, NULL,
};

/* Every long option; -q and -h are the short ones. */
static const struct {
	const char *name;
	int has_arg;
	enum tool_opt id;
} options[] = {
	{ "shared-dir", required_argument, OPT_SHARED_DIR },
	{ "local-dir", required_argument, OPT_LOCAL_DIR },
	{ "name", required_argument, OPT_NAME },
	{ "step", required_argument, OPT_STEP },
	{ "all", no_argument, OPT_ALL },
	{ "rank", required_argument, OPT_RANK },
	{ "ranks", required_argument, OPT_RANK },
	{ "threads", required_argument, OPT_THREADS },
	{ "verify-only", no_argument, OPT_VERIFY_ONLY },
	{ "dry-run", no_argument, OPT_DRY_RUN },
	{ "keep-shared", required_argument, OPT_KEEP_SHARED },
	{ "keep-local", required_argument, OPT_KEEP_LOCAL },
	{ "min-age", required_argument, OPT_MIN_AGE },
	{ "set", required_argument, OPT_SET },
	{ "bytes", required_argument, OPT_BYTES },
	{ "durable", no_argument, OPT_DURABLE },
	{ "json", no_argument, OPT_JSON },
	{ "quiet", no_argument, OPT_QUIET },
	{ "help", no_argument, OPT_HELP },
	{ "version", no_argument, OPT_VERSION },
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))
#define OPT_VAL 256 /* getopt's value of options[i] is OPT_VAL + its id */

void tool_say(struct tool_ctx *t, const char *fmt, ...)
{
	char msg[2 * CKPT_ERRMSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	tool_progress_msg(&t->pg, "%s: %s\n", t->prog, msg);
}

int tool_usage_error(struct tool_ctx *t, const char *fmt, ...)
{
	char msg[CKPT_ERRMSG_MAX];
	va_list ap;
	int own = t->cmd && strcmp(t->prog, "ckpt-restore");

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\nTry '%s%s%s --help'.\n", t->prog, msg, t->prog, own ? " " : "",
		own ? t->cmd->name : "");
	return TOOL_EXIT_USAGE;
}

/* ---------------------------------------------------------------------------------------------
 * Values
 */

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
 * so that `srun ckpt-restore --rank auto` restores one shard per task. 0, -1 for a bad list,
 * -2 for auto without a launcher. */
static int parse_ranks(struct tool_opts *o, const char *s)
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
		o->ranks[0] = (struct tool_range){ r, r };
		o->nranges = 1;
		return 0;
	}
	while (*p) {
		uint64_t lo, hi;
		char *end;
		struct tool_range *nr;

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
		o->ranks[o->nranges++] = (struct tool_range){ (uint32_t)lo, (uint32_t)hi };
		p = *end ? end + 1 : end;
		if (*end == ',' && !*p)
			return -1;
	}
	return o->nranges ? 0 : -1;
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

/* ---------------------------------------------------------------------------------------------
 * Options
 */

/* One option with its value (optarg). Returns -1 to go on, else the exit status. */
static int take_option(struct tool_ctx *t, enum tool_opt id, const char *arg)
{
	struct tool_opts *o = &t->o;
	const char *key = NULL, *val = arg;
	char kbuf[64], *end;
	int rc;

	switch (id) {
	case OPT_SHARED_DIR: key = "shared_dir"; break;
	case OPT_LOCAL_DIR: key = "local_dir"; break;
	case OPT_NAME: key = "name"; break;
	case OPT_SET: {
		const char *eq = strchr(arg, '=');

		if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof(kbuf))
			return tool_usage_error(t, "--set wants KEY=VALUE, got '%s'", arg);
		memcpy(kbuf, arg, (size_t)(eq - arg));
		kbuf[eq - arg] = '\0';
		key = kbuf;
		val = eq + 1;
		break;
	}
	case OPT_STEP:
		if (parse_u64(arg, &o->step) || o->step == UINT64_MAX)
			return tool_usage_error(t, "bad step '%s'", arg);
		o->have_step = 1;
		break;
	case OPT_ALL: o->all = 1; break;
	case OPT_RANK:
		if ((rc = parse_ranks(o, arg)) == -2)
			return tool_usage_error(t, "--rank auto: no rank in the environment (set by srun "
						"or mpirun: SLURM_PROCID, OMPI_COMM_WORLD_RANK, "
						"PMI_RANK, PMIX_RANK)");
		if (rc)
			return tool_usage_error(t, "bad rank list '%s' (e.g. 0 or 0,2 or 4-7, auto)",
						arg);
		break;
	case OPT_THREADS:
		if (parse_uint(arg, 1024, &o->threads) || !o->threads)
			return tool_usage_error(t, "bad thread count '%s' (1 to 1024)", arg);
		break;
	case OPT_VERIFY_ONLY: o->verify_only = 1; break;
	case OPT_DRY_RUN: o->dry_run = 1; break;
	case OPT_KEEP_SHARED:
		if (parse_uint(arg, 1000000, &o->keep_shared))
			return tool_usage_error(t, "bad --keep-shared '%s'", arg);
		o->have_keep_shared = 1;
		break;
	case OPT_KEEP_LOCAL:
		if (parse_uint(arg, 1000000, &o->keep_local))
			return tool_usage_error(t, "bad --keep-local '%s'", arg);
		o->have_keep_local = 1;
		break;
	case OPT_MIN_AGE:
		errno = 0;
		o->min_age = strtod(arg, &end);
		if (!*arg || *end || errno || !(o->min_age >= 0) || o->min_age > 1e9)
			return tool_usage_error(t, "bad --min-age '%s' (seconds)", arg);
		break;
	case OPT_BYTES:
		if (ckpt_config__parse_size(arg, &o->bytes) || o->bytes > (64ull << 30))
			return tool_usage_error(t, "bad --bytes '%s' (a size such as 64M, at most 64G; "
						"0 skips the measurement)", arg);
		break;
	case OPT_DURABLE: o->durable = 1; break;
	case OPT_JSON: o->json = 1; break;
	case OPT_QUIET: o->quiet = 1; break;
	case OPT_HELP:
		tool_print_usage(stdout, t->prog, t->cmd, commands);
		return TOOL_EXIT_OK;
	case OPT_VERSION:
		printf("%s (libckpt) %s\n", t->prog, ckpt_version());
		return TOOL_EXIT_OK;
	case OPT__COUNT:
		break;
	}
	if (key && ckpt_config_set(o->cfg, key, val) < 0)
		return tool_usage_error(t, "%s", ckpt_config_errmsg(o->cfg));
	return -1;
}

/* The options of t->cmd in argv (argv[0] is the command), over the CKPT_* environment. Returns
 * -1 to go on, else the exit status. */
static int parse_opts(struct tool_ctx *t, int argc, char **argv)
{
	struct option lopts[NOPTIONS + 1];
	struct tool_opts *o = &t->o;
	struct ckpt_err err = { "" };
	int c, rc;

	o->threads = default_threads();
	o->min_age = 60;
	o->bytes = 64u << 20;
	if ((rc = ckpt_config_new(&o->cfg)) < 0) {
		fprintf(stderr, "%s: %s\n", t->prog, ckpt_strerror(rc));
		return TOOL_EXIT_IO;
	}
	for (size_t i = 0; i < NOPTIONS; i++)
		lopts[i] = (struct option){ options[i].name, options[i].has_arg, NULL,
					    OPT_VAL + (int)options[i].id };
	lopts[NOPTIONS] = (struct option){ NULL, 0, NULL, 0 };
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":qh", lopts, NULL)) != -1) {
		enum tool_opt id = c == 'q' ? OPT_QUIET : c == 'h' ? OPT_HELP : (enum tool_opt)(c - OPT_VAL);

		if (c == '?')
			return tool_usage_error(t, "unknown option '%s'", argv[optind - 1]);
		if (c == ':')
			return tool_usage_error(t, "option '%s' needs a value", argv[optind - 1]);
		if (!((t->cmd->opts | TOOL_OPTS_COMMON) & (1u << id)))
			return tool_usage_error(t, "option '%s' does not apply to %s", argv[optind - 1],
						t->cmd->name);
		if ((rc = take_option(t, id, optarg)) >= 0)
			return rc;
	}
	if (optind < argc)
		return tool_usage_error(t, "unexpected argument '%s'", argv[optind]);
	/* A bad CKPT_* variable fails here as it would fail ckpt_open, unless overridden above;
	 * doctor reports it instead. */
	if (ckpt_config__check(o->cfg, &err) < 0) {
		if (!(t->cmd->flags & TOOL_CMD_REPORTS_CONFIG))
			return tool_usage_error(t, "%s", err.msg);
		snprintf(o->config_error, sizeof(o->config_error), "%s", err.msg);
	}
	o->shared_dir = o->cfg->shared_dir;
	o->local_dir = o->cfg->local_dir;
	o->name = o->cfg->name;
	for (size_t i = 0; ckpt_config__key(i); i++)
		if (!strcmp(ckpt_config__key(i), "name"))
			o->name_given = o->cfg->origin[i] != CKPT_FROM_DEFAULT;
	if (o->shared_dir &&
	    snprintf(o->shared_job, sizeof(o->shared_job), "%s/%s", o->shared_dir, o->name) >=
		    (int)sizeof(o->shared_job))
		return tool_usage_error(t, "shared_dir path too long");
	if (o->local_dir &&
	    snprintf(o->local_job, sizeof(o->local_job), "%s/%s", o->local_dir, o->name) >=
		    (int)sizeof(o->local_job))
		return tool_usage_error(t, "local_dir path too long");
	if (o->have_step && o->all)
		return tool_usage_error(t, "--step and --all exclude each other");
	return -1;
}

/* ---------------------------------------------------------------------------------------------
 * main
 */

static const struct tool_cmd *find_cmd(const char *name)
{
	for (size_t i = 0; commands[i]; i++)
		if (!strcmp(name, commands[i]->name) ||
		    (commands[i]->alias && !strcmp(name, commands[i]->alias)))
			return commands[i];
	return NULL;
}

int main(int argc, char **argv)
{
	struct tool_ctx t;
	struct tool_result res;
	const char *base = strrchr(argv[0], '/');
	int code;

	memset(&t, 0, sizeof(t));
	memset(&res, 0, sizeof(res));
	t.prog = "ckpt";
	base = base ? base + 1 : argv[0];
	/* Invoked as ckpt-restore (the installed link): `ckpt restore`. */
	if (!strncmp(base, "ckpt-restore", 12)) {
		t.prog = "ckpt-restore";
		t.cmd = &tool_cmd_restore;
	} else if (argc < 2) {
		/* No command is bad usage: the usage goes where errors go, with status 64. */
		tool_print_usage(stderr, t.prog, NULL, commands);
		return TOOL_EXIT_USAGE;
	} else if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
		   !strcmp(argv[1], "-h")) {
		/* `ckpt help COMMAND` is `ckpt COMMAND --help` */
		const struct tool_cmd *c = argc > 2 ? find_cmd(argv[2]) : NULL;

		if (argc > 2 && !c)
			return tool_usage_error(&t, "unknown command '%s'", argv[2]);
		tool_print_usage(stdout, t.prog, c, commands);
		return TOOL_EXIT_OK;
	} else if (!strcmp(argv[1], "--version")) {
		printf("ckpt (libckpt) %s\n", ckpt_version());
		return TOOL_EXIT_OK;
	} else if (!(t.cmd = find_cmd(argv[1]))) {
		return tool_usage_error(&t, "unknown command '%s'", argv[1]);
	} else {
		argc--;
		argv++;
	}
	/* A reader that goes away (| head) is not an error worth a signal. */
	signal(SIGPIPE, SIG_IGN);
	code = parse_opts(&t, argc, argv);
	/* The bar only on a terminal, never in a log file or under --quiet. */
	tool_progress_init(&t.pg, isatty(STDERR_FILENO) && !t.o.quiet);
	if (code < 0) {
		code = res.code = t.cmd->run(&t, &res);
		tool_print(&t, &res);
	}
	tool_progress_destroy(&t.pg);
	if (fflush(stdout) != 0 && code == TOOL_EXIT_OK)
		code = TOOL_EXIT_IO;
	tool_result_free(&res);
	ckpt_config_free(t.o.cfg);
	free(t.o.ranks);
	return code;
}
