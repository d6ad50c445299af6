/* SPDX-License-Identifier: MIT */
/* Writes the seed corpus of the fuzz targets (fuzz/corpus/<target>/) from real files: a small
 * checkpoint saved and drained by the library itself (local shard, compressed shards, MANIFESTs),
 * the golden v1 fixtures, and a few damaged copies of each.
 * Usage: mkcorpus OUTDIR FIXTURES_DIR   (scripts/fuzz.sh --make-corpus runs it) */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt.h"
#include "config.h"
#include "fmt.h"
#include "fuzz_common.h"

static const char *outdir;
static int nfiles;

static __attribute__((noreturn)) void die(const char *what, const char *detail)
{
	fprintf(stderr, "mkcorpus: %s: %s\n", what, detail);
	exit(1);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	if (!f)
		die(path, strerror(errno));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	if (n < 0 || !(buf = malloc((size_t)n + 1)) || fread(buf, 1, (size_t)n, f) != (size_t)n)
		die(path, "cannot read");
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* OUTDIR/target/name <- prefix (plen bytes) + data (len bytes) */
static void emit2(const char *target, const char *name, const void *prefix, size_t plen,
		  const void *data, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, target);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
	if (!(f = fopen(path, "wb")) || fwrite(prefix, 1, plen, f) != plen ||
	    fwrite(data, 1, len, f) != len || fclose(f))
		die(path, "cannot write");
	nfiles++;
}

static void emit(const char *target, const char *name, const void *data, size_t len)
{
	emit2(target, name, "", 0, data, len);
}

/* The first file in dir whose name starts with prefix and ends with suffix. */
static void find(char *out, size_t len, const char *dir, const char *prefix, const char *suffix)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		die(dir, strerror(errno));
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name), s = strlen(suffix);

		if (!strncmp(e->d_name, prefix, strlen(prefix)) && n >= s &&
		    !strcmp(e->d_name + n - s, suffix)) {
			snprintf(out, len, "%s/%s", dir, e->d_name);
			closedir(d);
			return;
		}
	}
	die(dir, "no shard found");
}

/* Seeds derived from one shard: the file, its header and trailer, its index, its zstd chunks. */
static void shard_seeds(const char *tag, const uint8_t *f, size_t len)
{
	const uint8_t *t = f + len - CKPT_TRAILER_SIZE;
	uint64_t ioff = ckpt_fmt__get64(t + 8), isize = ckpt_fmt__get64(t + 16);
	uint8_t prefix[24];
	char name[256];

	emit("fuzz_shard", tag, f, len);
	snprintf(name, sizeof(name), "%s.header", tag);
	emit("fuzz_header", name, f, CKPT_HEADER_SIZE);
	snprintf(name, sizeof(name), "%s.trailer", tag);
	emit("fuzz_header", name, t, CKPT_TRAILER_SIZE);
	ckpt_fmt__put32(prefix, ckpt_fmt__get32(f + 40));
	ckpt_fmt__put32(prefix + 4, ckpt_fmt__get32(f + 12));
	ckpt_fmt__put64(prefix + 8, ckpt_fmt__get32(f + 44));
	ckpt_fmt__put64(prefix + 16, ioff);
	snprintf(name, sizeof(name), "%s.index", tag);
	emit2("fuzz_index", name, prefix, sizeof(prefix), f + ioff, (size_t)isize);

	/* each zstd chunk as a codec input: level byte, raw size, frame */
	if (ckpt_fmt__get32(f + 12) & CKPT_FLAG_COMPRESSED) {
		struct ckpt_index idx;
		int k = 0;

		if (ckpt_fmt__decode_index(&idx, f + ioff, (size_t)isize, ckpt_fmt__get32(f + 40),
					   ckpt_fmt__get32(f + 44), ioff, 1, NULL) != CKPT_OK)
			die(tag, "index does not decode");
		for (uint32_t i = 0; i < idx.nregions && k < 4; i++)
			for (uint32_t c = 0; c < idx.regions[i].nchunks && k < 4; c++, k++) {
				const struct ckpt_chunk *ch = &idx.regions[i].chunks[c];
				uint8_t p[5] = { (uint8_t)(8 + k) };

				ckpt_fmt__put32(p + 1, (uint32_t)ckpt_fmt__chunk_raw(&idx.regions[i], c));
				snprintf(name, sizeof(name), "%s.chunk%d", tag, k);
				emit2("fuzz_codec", name, p, 5, f + ch->offset, (size_t)ch->stored_size);
			}
		ckpt_fmt__index_free(&idx);
	}
}

static void damaged(const char *tag, const uint8_t *f, size_t len)
{
	uint8_t *c = malloc(len);
	char name[256];

	memcpy(c, f, len);
	c[len / 2] ^= 0x01; /* a bit of the data or the index */
	snprintf(name, sizeof(name), "%s.flipped", tag);
	emit("fuzz_shard", name, c, len);
	snprintf(name, sizeof(name), "%s.truncated", tag);
	emit("fuzz_shard", name, f, len - 1);
	free(c);
}

/* A structurally valid shard (every checksum right) whose empty region "empty" claims a chunk
 * size of 2^42 bytes: once made ckpt_shard__verify ask for 4 TiB (fixed in src/fmt.c and
 * in the shard reader, now src/shard_read.c); kept as a regression input. */
static void forged(const char *tag, const uint8_t *f, size_t len)
{
	uint8_t *c = malloc(len);
	const uint8_t *t = f + len - CKPT_TRAILER_SIZE;
	size_t pos = 0, isize = (size_t)ckpt_fmt__get64(t + 16);
	uint8_t *idx;
	char name[256];

	memcpy(c, f, len);
	idx = c + ckpt_fmt__get64(t + 8);
	while (pos + CKPT_REGION_ENTRY_SIZE <= isize) {
		uint16_t nl = (uint16_t)(idx[pos] | idx[pos + 1] << 8);
		uint32_t nc = ckpt_fmt__get32(idx + pos + 4);

		if (nl == 5 && !memcmp(idx + pos + CKPT_REGION_ENTRY_SIZE, "empty", 5))
			ckpt_fmt__put64(idx + pos + 24, 1ull << 42);
		pos += CKPT_REGION_ENTRY_SIZE + nl +
		       (size_t)nc * (idx[pos + 2] == CKPT_TRANSFORM_CHUNKS ? CKPT_CHUNK_ENTRY_SIZE_X :
				     CKPT_CHUNK_ENTRY_SIZE);
	}
	fuzz_fix_shard(c, len);
	snprintf(name, sizeof(name), "%s.empty-region-chunk-raw-2e42", tag);
	emit("fuzz_shard", name, c, len);
	free(c);
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
}

static void checkpoint(const char *tmp)
{
	static uint8_t weights[3000], bias[100], one[1], pattern[200000];
	static char longname[256];
	char local[4200], shared[4200];
	ckpt_config *cfg;
	ckpt_ctx *ctx;

	fill(weights, sizeof(weights), 1);
	fill(bias, sizeof(bias), 2);
	one[0] = 42;
	for (size_t i = 0; i < sizeof(pattern); i++) /* compressible, several chunks */
		pattern[i] = (uint8_t)((i * 31 + i / 1000) % 251);
	memset(longname, 'n', 255);
	snprintf(local, sizeof(local), "%s/local", tmp);
	snprintf(shared, sizeof(shared), "%s/shared", tmp);
	mkdir(local, 0755);
	mkdir(shared, 0755);
	ckpt_config_new(&cfg);
	ckpt_config_set(cfg, "local_dir", local);
	ckpt_config_set(cfg, "shared_dir", shared);
	ckpt_config_set(cfg, "name", "corpus");
	ckpt_config_set(cfg, "chunk_size", "64K");
	ckpt_config_set(cfg, "compress_level", "3");
	ckpt_config_set(cfg, "io_backend", "posix");
	ckpt_config_set(cfg, "keep_local", "5");
	ckpt_config_set(cfg, "log_level", "0");
	if (ckpt_open(&ctx, cfg) != CKPT_OK)
		die("ckpt_open", ckpt_errmsg(NULL));
	ckpt_config_free(cfg);
	{
		ckpt_region r[] = { { "weights", weights, sizeof(weights) },
				    { "bias", bias, sizeof(bias) },
				    { "empty", "", 0 },
				    { longname, one, 1 } };

		if (ckpt_save(ctx, 1, r, 4) != CKPT_OK)
			die("ckpt_save 1", ckpt_errmsg(ctx));
	}
	{
		ckpt_region r[] = { { "pattern", pattern, sizeof(pattern) }, { "bias", bias, 10 } };

		if (ckpt_save(ctx, 2, r, 2) != CKPT_OK)
			die("ckpt_save 2", ckpt_errmsg(ctx));
	}
	if (ckpt_wait(ctx, CKPT_STEP_ALL) != CKPT_OK)
		die("ckpt_wait", ckpt_errmsg(ctx));
	if (ckpt_close(ctx) != CKPT_OK)
		die("ckpt_close", "failed");
}

static void manifest_seeds(void)
{
	struct ckpt_manifest_rank ranks[3] = { { 1637, 0x1234, 150100, 2 },
					       { 4096, 0x5678, 0, 0 },
					       { 20480, 0x9abc, 3101, 4 } };
	struct ckpt_manifest m = { CKPT_FMT_VERSION, 3, 42, 0xcac93e6d83414f64ull, 1700000000ull,
				   ranks };
	size_t n = ckpt_fmt__manifest_size(3);
	uint8_t *buf = malloc(n);

	ckpt_fmt__encode_manifest(buf, &m);
	emit("fuzz_manifest", "three-ranks", buf, n);
	emit("fuzz_manifest", "three-ranks.truncated", buf, n - 8);
	buf[12] = 2; /* nranks no longer fits the size */
	emit("fuzz_manifest", "three-ranks.bad-nranks", buf, n);
	free(buf);
}

static void config_seeds(void)
{
	/* a good and a bad value of each key; keys missing here get "1" and "" */
	static const char *const vals[][3] = {
		{ "local_dir", "/tmp/ckpt-local", "" },
		{ "shared_dir", "/tmp/ckpt-shared", "/path/with\nnewline" },
		{ "name", "llama-7b.run_3", ".hidden" },
		{ "compress_level", "-7", "20" },
		{ "keep_local", "2", "-1" },
		{ "keep_shared", "0", "1000001" },
		{ "drain_threads", "256", "0" },
		{ "io_backend", "posix", "io-uring" },
		{ "chunk_size", "64KiB", "63K" },
		{ "max_pending", "1024", "0" },
		{ "close_timeout", "0.5", "nan" },
		{ "io_depth", "64", "65" },
		{ "drain_nice", "19", "-1" },
		{ "mpi_timeout", "86400", "0.9" },
		{ "fault_kill_at", "save.written", "" },
		{ "log_level", "2", "3" },
		{ "require_persistent", "1", "2" },
		{ "cluster", "kubernetes", "k8s" },
	};
	static const char *const other[] = {
		"\xff" "chunk_size=4M", "\xff" "chunk_size=18446744073709551615G",
		"\xff" "no_such_key=1", "\xff" "step-00000000000000000042",
		"\xff" "step-18446744073709551616", "\xff" "mpi_timeout=1e400",
		"\xff" "close_timeout=0x1p3", "\xff" "keep_local= 7",
	};
	char name[64];
	const char *key;
	uint8_t sel;

	for (size_t i = 0; (key = ckpt_config__key(i)); i++) {
		const char *good = "1", *bad = "";

		for (size_t k = 0; k < sizeof(vals) / sizeof(vals[0]); k++)
			if (!strcmp(vals[k][0], key)) {
				good = vals[k][1];
				bad = vals[k][2];
			}
		sel = (uint8_t)i;
		snprintf(name, sizeof(name), "%s-good", key);
		emit2("fuzz_config", name, &sel, 1, good, strlen(good));
		snprintf(name, sizeof(name), "%s-bad", key);
		emit2("fuzz_config", name, &sel, 1, bad, strlen(bad));
	}
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		snprintf(name, sizeof(name), "other%02zu", i);
		emit("fuzz_config", name, other[i], strlen(other[i]));
	}
}

/* /proc/self/mountinfo as it looks on a laptop, a Slurm node and in a Kubernetes pod; the first
 * line is the path looked up, the last byte the cluster type. */
static void mountinfo_seeds(void)
{
	static const char *const seeds[][2] = {
		{ "laptop", "/home/me/ckpt\n"
		  "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n"
		  "24 22 0:21 / /proc rw,nosuid shared:12 - proc proc rw\n"
		  "30 22 0:25 / /tmp rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=8g\n"
		  "40 22 0:40 / /home/me/my\\040drive rw - fuse.sshfs me@host:/x rw\n" },
		{ "slurm", "/home/alice/run3\n"
		  "21 1 8:1 / / rw - xfs /dev/sda1 rw\n"
		  "60 21 0:50 / /home rw,relatime shared:30 - nfs4 nas:/export/home rw,vers=4.2\n"
		  "61 21 0:51 / /lustre rw - lustre 10.0.0.1@o2ib:/fs rw\n"
		  "62 21 259:0 / /local/nvme rw - ext4 /dev/nvme0n1 rw\n" },
		{ "kubernetes", "/home/jovyan/ckpt\n"
		  "500 400 0:120 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/a,upperdir=/b\n"
		  "510 500 259:1 /var/lib/kubelet/pods/0f/volumes/kubernetes.io~empty-dir/scratch "
		  "/scratch rw - ext4 /dev/nvme0n1p1 rw\n"
		  "520 500 0:130 /pvc-1 /home/jovyan/ckpt rw - nfs 10.1.2.3:/vol/pvc-1 rw\n"
		  "530 500 43:0 / /data rw - ext4 /dev/nbd0 rw\n" },
		{ "escapes", "/mnt/a b\n"
		  "1 0 0:1 / /mnt/a\\040b rw - virtiofs share\\011name rw\n"
		  "2 0 0:2 /\\134 /mnt rw shared:1 master:2 - 9p host rw\n"
		  "3 0 x:y / /mnt/a\\040b rw - nfs bad\n" },
	};
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		uint8_t cluster = (uint8_t)i; /* none, slurm, kubernetes, none */

		emit2("fuzz_mountinfo", seeds[i][0], seeds[i][1], strlen(seeds[i][1]), &cluster, 1);
	}
}

int main(int argc, char **argv)
{
	const char *fixtures;
	char tmp[4096], dir[4300], path[4400];
	const char *base = getenv("TMPDIR");
	uint8_t *f;
	size_t len;

	if (argc != 3) {
		fprintf(stderr, "usage: mkcorpus OUTDIR FIXTURES_DIR\n");
		return 64;
	}
	outdir = argv[1];
	fixtures = argv[2];
	mkdir(outdir, 0755);
	snprintf(tmp, sizeof(tmp), "%s/ckpt-mkcorpus-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(tmp))
		die(tmp, strerror(errno));
	checkpoint(tmp);

	/* what the library just wrote */
	snprintf(dir, sizeof(dir), "%s/local/corpus/step-%020d", tmp, 1);
	snprintf(path, sizeof(path), "%s/rank-000000.ckl", dir);
	f = slurp(path, &len);
	shard_seeds("local-4regions.ckl", f, len);
	damaged("local-4regions.ckl", f, len);
	free(f);
	for (int step = 1; step <= 2; step++) {
		char tag[64];

		snprintf(dir, sizeof(dir), "%s/shared/corpus/step-%020d", tmp, step);
		find(path, sizeof(path), dir, "rank-000000-", ".ckz");
		f = slurp(path, &len);
		snprintf(tag, sizeof(tag), "shared-step%d.ckz", step);
		shard_seeds(tag, f, len);
		if (step == 1)
			forged(tag, f, len);
		if (step == 2)
			damaged(tag, f, len);
		free(f);
		snprintf(path, sizeof(path), "%s/MANIFEST", dir);
		f = slurp(path, &len);
		snprintf(tag, sizeof(tag), "step%d", step);
		emit("fuzz_manifest", tag, f, len);
		free(f);
	}

	/* the golden fixtures, intact and damaged */
	snprintf(dir, sizeof(dir), "%s/v1/shared/fixture/step-%020d", fixtures, 7);
	find(path, sizeof(path), dir, "rank-000000-", ".ckz");
	f = slurp(path, &len);
	shard_seeds("fixture-v1.ckz", f, len);
	free(f);
	snprintf(path, sizeof(path), "%s/MANIFEST", dir);
	f = slurp(path, &len);
	emit("fuzz_manifest", "fixture-v1", f, len);
	free(f);
	/* chunk transforms: 32-byte chunk entries, grouped, raw and zstd payloads */
	snprintf(dir, sizeof(dir), "%s/v1-xform/shared/fixture/step-%020d", fixtures, 9);
	find(path, sizeof(path), dir, "rank-000000-", ".ckz");
	f = slurp(path, &len);
	shard_seeds("fixture-v1-xform.ckz", f, len);
	damaged("fixture-v1-xform.ckz", f, len);
	free(f);
	snprintf(path, sizeof(path), "%s/v1/local/fixture/step-%020d/rank-000000.ckl", fixtures, 7);
	f = slurp(path, &len);
	shard_seeds("fixture-v1.ckl", f, len);
	free(f);
	{
		static const char *const broken[] = { "flipped-chunk", "truncated-shard" };

		for (size_t i = 0; i < 2; i++) {
			char tag[64];

			snprintf(dir, sizeof(dir), "%s/v1-broken/%s/shared/fixture/step-%020d", fixtures,
				 broken[i], 7);
			find(path, sizeof(path), dir, "rank-000000-", ".ckz");
			f = slurp(path, &len);
			snprintf(tag, sizeof(tag), "fixture-%s.ckz", broken[i]);
			emit("fuzz_shard", tag, f, len);
			free(f);
		}
		snprintf(path, sizeof(path), "%s/v1-broken/bad-manifest/shared/fixture/step-%020d/"
			 "MANIFEST", fixtures, 7);
		f = slurp(path, &len);
		emit("fuzz_manifest", "fixture-bad-manifest", f, len);
		free(f);
	}
	manifest_seeds();
	config_seeds();
	mountinfo_seeds();

	snprintf(path, sizeof(path), "rm -rf '%s'", tmp);
	if (system(path) != 0)
		fprintf(stderr, "mkcorpus: could not remove %s\n", tmp);
	printf("mkcorpus: %d files in %s\n", nfiles, outdir);
	return 0;
}
