/* SPDX-License-Identifier: MIT */
/* Configuration keys, their defaults and validation, and the CKPT_<KEY> environment variables.
 * This is the only file of the library that calls getenv(). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "config.h"

enum ktype {
	K_PATH, K_NAME, K_INT, K_UINT, K_SIZE, K_BACKEND, K_SECONDS, K_STR, K_CLUSTER, K_XFORM,
	K_WIDTH
};

struct key {
	const char *name;
	enum ktype type;
	size_t off;
	long long min, max; /* for K_INT / K_UINT / K_SIZE / K_SECONDS */
	const char *def;
};

#define OFF(f) offsetof(struct ckpt_config, f)

/* Order matters: index i is origin[i]. Defaults are strings so that one parser serves all. */
static const struct key keys[CKPT_NKEYS] = {
	{ "local_dir", K_PATH, OFF(local_dir), 0, 0, NULL },
	{ "shared_dir", K_PATH, OFF(shared_dir), 0, 0, NULL },
	{ "name", K_NAME, OFF(name), 0, 0, "default" },
	{ "compress_level", K_INT, OFF(compress_level), -7, 19, "1" },
	{ "keep_local", K_UINT, OFF(keep_local), 0, 1000000, "2" },
	{ "keep_shared", K_UINT, OFF(keep_shared), 0, 1000000, "3" },
	{ "drain_threads", K_UINT, OFF(drain_threads), 1, 256, "2" },
	{ "io_backend", K_BACKEND, OFF(io_backend), 0, 0, "auto" },
	{ "chunk_size", K_SIZE, OFF(chunk_size), 64 << 10, 256 << 20, "4M" },
	{ "max_pending", K_UINT, OFF(max_pending), 1, 1024, "2" },
	{ "close_timeout", K_SECONDS, OFF(close_timeout), 0, 86400 * 7, "600" },
	{ "io_depth", K_UINT, OFF(io_depth), 1, 64, "4" },
	{ "drain_nice", K_INT, OFF(drain_nice), 0, 19, "10" },
	{ "mpi_timeout", K_SECONDS, OFF(mpi_timeout), 1, 86400 * 7, "600" },
	{ "fault_kill_at", K_STR, OFF(fault_kill_at), 0, 0, NULL },
	{ "log_level", K_INT, OFF(log_level), 0, 2, "1" },
	/* 0 on every cluster type: a warning cannot break a run that worked before; production job
	 * templates set CKPT_REQUIRE_PERSISTENT=1 (docs/STORAGE.md). */
	{ "require_persistent", K_INT, OFF(require_persistent), 0, 1, "0" },
	{ "cluster", K_CLUSTER, OFF(cluster), 0, 0, "auto" },
	/* Snapshot mode (stage.c): ckpt_save copies into at most this much library-owned memory and
	 * returns; 0 keeps ckpt_save durable on return. */
	{ "stage_bytes", K_SIZE, OFF(stage_bytes), 0, 1LL << 40, "0" },
	/* auto: byte-grouped chunks where they pay (docs/FORMAT.md 3.8); none: transform 0 regions
	 * that libckpt before chunk transforms reads */
	{ "chunk_transform", K_XFORM, OFF(chunk_transform), 0, 0, "auto" },
	{ "elem_width", K_WIDTH, OFF(elem_width), 0, 0, "auto" },
	/* issue 13: bounds on a shared volume that does not answer (a hard NFS mount whose server
	 * is away blocks every call in the kernel) */
	{ "probe_timeout", K_SECONDS, OFF(probe_timeout), 1, 86400, "5" },
	{ "stall_after", K_SECONDS, OFF(stall_after), 1, 86400, "5" },
	{ "stall_wait", K_SECONDS, OFF(stall_wait), 0, 86400, "0.5" },
	/* docs/CONCURRENCY.md: how long a superseded save or a retired step stays readable for
	 * readers on other nodes, and how stale the writer lease gets before another writer may
	 * take the job over (its heartbeat is writer_lease / 3). */
	{ "read_grace", K_SECONDS, OFF(read_grace), 0, 86400 * 7, "60" },
	{ "writer_lease", K_SECONDS, OFF(writer_lease), 3, 86400 * 7, "60" },
};

static const char *const cluster_names[] = { "auto", "none", "slurm", "kubernetes" };

const char *ckpt_config__cluster_name(enum ckpt_cluster c)
{
	return (unsigned)c < sizeof(cluster_names) / sizeof(cluster_names[0]) ? cluster_names[c] :
	       "auto";
}

const char *ckpt_config__env(const char *name)
{
	const char *v = name ? getenv(name) : NULL;

	return v && *v ? v : NULL;
}

const char *ckpt_config__key(size_t i)
{
	return i < CKPT_NKEYS ? keys[i].name : NULL;
}

int ckpt_config__parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: return -1;
	}
	if (*end == 'i' && shift)
		end++;
	if (*end == 'B' && shift)
		end++;
	if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_ll(const char *s, long long *out)
{
	char *end;

	if (!*s)
		return -1;
	errno = 0;
	*out = strtoll(s, &end, 10);
	return (errno || *end) ? -1 : 0;
}

/* A plain decimal number of seconds: digits with at most one '.', at least one digit. */
static int decimal(const char *s)
{
	int digits = 0, dots = 0;

	for (; *s; s++) {
		if (isdigit((unsigned char)*s))
			digits++;
		else if (*s == '.' && !dots)
			dots++;
		else
			return 0;
	}
	return digits > 0;
}

/* Job names become directory names: keep them to a portable, unambiguous alphabet. */
static int valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 128 || s[0] == '.' || s[0] == '-')
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
			return 0;
	return 1;
}

static int set_key(struct ckpt_config *cfg, const struct key *k, const char *v, const char *from)
{
	void *field = (char *)cfg + k->off;
	long long ll;
	uint64_t sz;
	double d;
	char *end, *dup;

	switch (k->type) {
	case K_PATH:
	case K_NAME:
	case K_STR:
		if (k->type == K_PATH && (!*v || strlen(v) > CKPT_CONFIG_PATH_MAX ||
					  strlen(v) != strcspn(v, "\n\r")))
			return ckpt_err__set(&cfg->err, CKPT_EINVAL,
					     "%s: bad value for key '%s' (a path of 1 to %d bytes "
					     "without line breaks; this one has %zu bytes): '%.200s%s'",
					     from, k->name, CKPT_CONFIG_PATH_MAX, strlen(v), v,
					     strlen(v) > 200 ? "..." : "");
		if (k->type == K_NAME && !valid_name(v))
			return ckpt_err__set(&cfg->err, CKPT_EINVAL,
					     "%s: bad value for key '%s' (1-128 characters of "
					     "A-Z a-z 0-9 . _ -, not starting with . or -): '%s'",
					     from, k->name, v);
		if (!(dup = strdup(v)))
			return ckpt_err__set(&cfg->err, CKPT_ENOMEM, "out of memory");
		free(*(char **)field);
		*(char **)field = dup;
		return CKPT_OK;
	case K_INT:
	case K_UINT:
		if (parse_ll(v, &ll) || ll < k->min || ll > k->max)
			goto range;
		if (k->type == K_INT)
			*(int *)field = (int)ll;
		else
			*(unsigned *)field = (unsigned)ll;
		return CKPT_OK;
	case K_SIZE:
		if (ckpt_config__parse_size(v, &sz) || sz < (uint64_t)k->min || sz > (uint64_t)k->max)
			goto range;
		*(uint64_t *)field = sz;
		return CKPT_OK;
	case K_SECONDS:
		/* Plain decimal only (digits and one '.'): strtod alone would also take hex
		 * (0x10, 0x1p4), exponents (1e3), "inf" and leading blanks, none of which the
		 * documentation promises. */
		if (!decimal(v))
			goto range;
		errno = 0;
		d = strtod(v, &end);
		if (*end || errno || !isfinite(d) || d < k->min || d > k->max)
			goto range;
		*(double *)field = d;
		return CKPT_OK;
	case K_BACKEND:
		if (!strcmp(v, "auto"))
			cfg->io_backend = CKPT_BACKEND_AUTO;
		else if (!strcmp(v, "uring") || !strcmp(v, "io_uring"))
			cfg->io_backend = CKPT_BACKEND_URING;
		else if (!strcmp(v, "posix"))
			cfg->io_backend = CKPT_BACKEND_POSIX;
		else
			return ckpt_err__set(&cfg->err, CKPT_EINVAL,
					     "%s: bad value for key '%s' (auto, uring or posix): '%s'",
					     from, k->name, v);
		return CKPT_OK;
	case K_XFORM:
		if (!strcmp(v, "auto") || !strcmp(v, "none")) {
			cfg->chunk_transform = !strcmp(v, "auto");
			return CKPT_OK;
		}
		return ckpt_err__set(&cfg->err, CKPT_EINVAL,
				     "%s: bad value for key '%s' (auto or none): '%s'", from, k->name,
				     v);
	case K_WIDTH:
		if (!strcmp(v, "auto")) {
			cfg->elem_width = 0;
			return CKPT_OK;
		}
		if (!strcmp(v, "1") || !strcmp(v, "2") || !strcmp(v, "4") || !strcmp(v, "8")) {
			cfg->elem_width = (unsigned)(v[0] - '0');
			return CKPT_OK;
		}
		return ckpt_err__set(&cfg->err, CKPT_EINVAL,
				     "%s: bad value for key '%s' (auto, 1, 2, 4 or 8): '%s'", from,
				     k->name, v);
	case K_CLUSTER:
		for (size_t i = 0; i < sizeof(cluster_names) / sizeof(cluster_names[0]); i++)
			if (!strcmp(v, cluster_names[i])) {
				cfg->cluster = (enum ckpt_cluster)i;
				return CKPT_OK;
			}
		return ckpt_err__set(&cfg->err, CKPT_EINVAL,
				     "%s: bad value for key '%s' (auto, none, slurm or kubernetes): "
				     "'%s'", from, k->name, v);
	}
range:
	return ckpt_err__set(&cfg->err, CKPT_EINVAL,
			     "%s: bad value for key '%s' (expected %s from %lld to %lld): '%s'",
			     from, k->name, k->type == K_SIZE ? "a size in bytes (K/M/G suffix)" :
			     k->type == K_SECONDS ? "decimal seconds" : "an integer", k->min, k->max, v);
}

/* "CKPT_" followed by the key in capitals; buf holds 64 bytes. */
static void env_name(size_t i, char *buf)
{
	size_t j;

	memcpy(buf, "CKPT_", 5);
	for (j = 0; keys[i].name[j] && j < 57; j++)
		buf[5 + j] = (char)toupper((unsigned char)keys[i].name[j]);
	buf[5 + j] = '\0';
}

static const struct key *find_key(const char *name)
{
	for (size_t i = 0; i < CKPT_NKEYS; i++)
		if (!strcmp(keys[i].name, name))
			return &keys[i];
	return NULL;
}

int ckpt_config_new(ckpt_config **out)
{
	struct ckpt_config *cfg;
	char envname[64];
	const char *v;
	int rc;

	if (!out)
		return CKPT_EINVAL;
	*out = NULL;
	if (!(cfg = calloc(1, sizeof(*cfg))))
		return CKPT_ENOMEM;
	for (size_t i = 0; i < CKPT_NKEYS; i++)
		if (keys[i].def && (rc = set_key(cfg, &keys[i], keys[i].def, "default")) < 0)
			goto fail;
	for (size_t i = 0; i < CKPT_NKEYS; i++) {
		env_name(i, envname);
		if (!(v = getenv(envname)) || !*v)
			continue;
		if (set_key(cfg, &keys[i], v, envname) < 0) {
			/* A bad environment variable must not pass silently, nor make the config
			 * unusable: ckpt_open fails naming it, unless the program sets the key. */
			cfg->origin[i] = CKPT_FROM_BAD_ENV;
			ckpt_err__clear(&cfg->err);
			continue;
		}
		cfg->origin[i] = CKPT_FROM_ENV;
	}
	*out = cfg;
	return CKPT_OK;
fail:
	ckpt_config_free(cfg);
	return rc;
}

int ckpt_config_set(ckpt_config *cfg, const char *key, const char *value)
{
	const struct key *k;
	int rc;

	if (!cfg)
		return CKPT_EINVAL;
	if (!key || !value)
		return ckpt_err__set(&cfg->err, CKPT_EINVAL, "ckpt_config_set: NULL %s",
				     key ? "value" : "key");
	if (!(k = find_key(key)))
		return ckpt_err__set(&cfg->err, CKPT_EINVAL, "unknown configuration key '%s'", key);
	if ((rc = set_key(cfg, k, value, "ckpt_config_set")) < 0)
		return rc;
	cfg->origin[k - keys] = CKPT_FROM_SET;
	ckpt_err__clear(&cfg->err);
	return CKPT_OK;
}

const char *ckpt_config_get(const ckpt_config *cfg, const char *key)
{
	struct ckpt_config *c = (struct ckpt_config *)cfg; /* getbuf: one per key */
	const struct key *k;
	const void *field;
	char *buf;

	if (!cfg || !key || !(k = find_key(key)))
		return NULL;
	field = (const char *)cfg + k->off;
	buf = c->getbuf[k - keys];
	switch (k->type) {
	case K_PATH:
	case K_NAME:
	case K_STR:
		return *(char *const *)field ? *(char *const *)field : "";
	case K_INT:
		snprintf(buf, sizeof(c->getbuf[0]), "%d", *(const int *)field);
		break;
	case K_UINT:
		snprintf(buf, sizeof(c->getbuf[0]), "%u", *(const unsigned *)field);
		break;
	case K_SIZE:
		snprintf(buf, sizeof(c->getbuf[0]), "%llu",
			 (unsigned long long)*(const uint64_t *)field);
		break;
	case K_SECONDS: {
		/* Plain decimal, never an exponent: "%g" printed 604799.125 as 604799 and a tiny
		 * value as 3e-19, which set refuses (fuzz_config). Nanoseconds at most, trailing
		 * zeros dropped; up to 604800 s that is 15 significant digits, which a double
		 * carries exactly back through set. */
		size_t n = (size_t)snprintf(buf, sizeof(c->getbuf[0]), "%.9f",
					    *(const double *)field);

		while (n > 1 && buf[n - 1] == '0')
			buf[--n] = '\0';
		if (n > 1 && buf[n - 1] == '.')
			buf[--n] = '\0';
		break;
	}
	case K_BACKEND:
		return cfg->io_backend == CKPT_BACKEND_URING ? "uring" :
		       cfg->io_backend == CKPT_BACKEND_POSIX ? "posix" : "auto";
	case K_CLUSTER:
		return ckpt_config__cluster_name(cfg->cluster);
	case K_XFORM:
		return cfg->chunk_transform ? "auto" : "none";
	case K_WIDTH:
		if (!cfg->elem_width)
			return "auto";
		snprintf(buf, sizeof(c->getbuf[0]), "%u", cfg->elem_width);
		break;
	}
	return buf;
}

const char *ckpt_config_errmsg(const ckpt_config *cfg)
{
	return cfg ? cfg->err.msg : "no configuration (NULL)";
}

void ckpt_config_free(ckpt_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->local_dir);
	free(cfg->shared_dir);
	free(cfg->name);
	free(cfg->fault_kill_at);
	free(cfg);
}

int ckpt_config__dup(struct ckpt_config **out, const struct ckpt_config *src)
{
	struct ckpt_config *c;

	*out = NULL;
	if (!(c = malloc(sizeof(*c))))
		return CKPT_ENOMEM;
	memcpy(c, src, sizeof(*c));
	c->local_dir = src->local_dir ? strdup(src->local_dir) : NULL;
	c->shared_dir = src->shared_dir ? strdup(src->shared_dir) : NULL;
	c->name = src->name ? strdup(src->name) : NULL;
	c->fault_kill_at = src->fault_kill_at ? strdup(src->fault_kill_at) : NULL;
	if ((src->local_dir && !c->local_dir) || (src->shared_dir && !c->shared_dir) ||
	    (src->name && !c->name) || (src->fault_kill_at && !c->fault_kill_at)) {
		ckpt_config_free(c);
		return CKPT_ENOMEM;
	}
	*out = c;
	return CKPT_OK;
}

int ckpt_config__check(const struct ckpt_config *cfg, struct ckpt_err *err)
{
	struct ckpt_config scratch;
	char envname[64];
	const char *v;

	for (size_t i = 0; i < CKPT_NKEYS; i++) {
		if (cfg->origin[i] != CKPT_FROM_BAD_ENV)
			continue;
		env_name(i, envname);
		v = getenv(envname);
		/* Parse again into a scratch config only to produce the same message. */
		memset(&scratch, 0, sizeof(scratch));
		set_key(&scratch, &keys[i], v ? v : "", envname);
		/* (a rejected value is never stored, so scratch owns no string) */
		return ckpt_err__set(err, CKPT_EINVAL, "%s", scratch.err.msg[0] ? scratch.err.msg :
				     "bad CKPT_* environment variable");
	}
	return CKPT_OK;
}
