/* SPDX-License-Identifier: MIT */
/* Unit tests of the storage module: the filesystem table, mountinfo parsing, classification of
 * real directories (ext4, tmpfs, overlay, proc), the persistence verdict and its Kubernetes /home
 * rule, cluster and launcher detection, and the warning or error ckpt_open gives. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "ckpt.h"
#include "config.h"
#include "harness.h"
#include "storage.h"

static char *base;        /* a fresh directory under $TMPDIR */
static char tmpfs_dir[PATH_MAX];   /* a tmpfs: one we mounted, or /dev/shm; "" when none */
static int tmpfs_mounted;
static char ovl_dir[PATH_MAX + 16]; /* an overlay we mounted; "" when we could not */

/* Every variable the module reads besides CKPT_*: the tests set them one at a time. */
static const char *const env_vars[] = {
	"SLURM_JOB_ID", "SLURM_JOBID", "KUBERNETES_SERVICE_HOST", "OMPI_COMM_WORLD_RANK",
	"OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE", "MV2_COMM_WORLD_RANK",
	"MV2_COMM_WORLD_SIZE", "PMIX_RANK", "SLURM_PROCID", "SLURM_NTASKS",
};

static void clear_env(void)
{
	th_clean_environment();
	for (size_t i = 0; i < sizeof(env_vars) / sizeof(env_vars[0]); i++)
		unsetenv(env_vars[i]);
}

static int suite_init(void)
{
	char path[PATH_MAX];

	clear_env();
	if (!(base = th_mkdtemp("storage")))
		return -1;
	/* A tmpfs and an overlay of our own where we may mount (root in a container that allows
	 * it); otherwise /dev/shm stands in for the tmpfs and the overlay tests are skipped. */
	snprintf(path, sizeof(path), "%s/tmpfs", base);
	mkdir(path, 0755);
	if (th_sh("mount -t tmpfs -o size=32m ckpt-test '%s' 2>/dev/null", path) == 0) {
		snprintf(tmpfs_dir, sizeof(tmpfs_dir), "%s", path);
		tmpfs_mounted = 1;
	} else if (th_sh("test \"$(stat -f -c %%T /dev/shm 2>/dev/null)\" = tmpfs && "
			 "test -w /dev/shm") == 0) {
		snprintf(tmpfs_dir, sizeof(tmpfs_dir), "/dev/shm/ckpt-storage-XXXXXX");
		if (!mkdtemp(tmpfs_dir))
			tmpfs_dir[0] = '\0';
	}
	snprintf(path, sizeof(path), "%s/ovl", base);
	if (th_sh("mkdir -p '%s/lower' '%s/upper' '%s/work' '%s/merged' && mount -t overlay "
		  "overlay -o lowerdir='%s/lower',upperdir='%s/upper',workdir='%s/work' "
		  "'%s/merged' 2>/dev/null", path, path, path, path, path, path, path, path) == 0)
		snprintf(ovl_dir, sizeof(ovl_dir), "%s/merged", path);
	if (!tmpfs_dir[0])
		fprintf(stderr, "note: no tmpfs to test with (cannot mount, no /dev/shm)\n");
	else
		fprintf(stderr, "note: tmpfs: %s%s\n", tmpfs_dir, tmpfs_mounted ? " (mounted)" : "");
	if (!ovl_dir[0])
		fprintf(stderr, "note: cannot mount an overlay here: overlay tests skipped\n");
	return 0;
}

static int suite_clean(void)
{
	if (ovl_dir[0])
		th_sh("umount '%s'", ovl_dir);
	if (tmpfs_mounted)
		th_sh("umount '%s'", tmpfs_dir);
	else if (tmpfs_dir[0])
		th_rmtree(tmpfs_dir);
	th_rmtree(base);
	free(base);
	clear_env();
	return 0;
}

/* ---- stderr capture: ckpt_config__log writes there ---- */

static int saved_fd = -1;
static char cap_path[PATH_MAX];

static void capture_begin(void)
{
	int fd;

	snprintf(cap_path, sizeof(cap_path), "%s/stderr.txt", base);
	fflush(stderr);
	saved_fd = dup(2);
	fd = open(cap_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CU_ASSERT_FATAL(fd >= 0 && saved_fd >= 0);
	dup2(fd, 2);
	close(fd);
}

/* Stop capturing; returns what was written (static buffer). */
static const char *capture_end(void)
{
	static char buf[16384];
	FILE *f;
	size_t n = 0;

	fflush(stderr);
	dup2(saved_fd, 2);
	close(saved_fd);
	saved_fd = -1;
	if ((f = fopen(cap_path, "r"))) {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
	return buf;
}

static int contains(const char *hay, const char *needle)
{
	if (strstr(hay, needle))
		return 1;
	fprintf(stderr, "'%s' does not contain '%s'\n", hay, needle);
	return 0;
}

static char *subdir(const char *parent, const char *name)
{
	static char bufs[4][2 * PATH_MAX];
	static int next;
	char *p = bufs[next++ % 4];

	snprintf(p, sizeof(bufs[0]), "%s/%s", parent, name);
	mkdir(p, 0755);
	return p;
}

/* ---- the table ---- */

static void test_table(void)
{
	static const struct {
		uint64_t magic;
		const char *name;
		enum ckpt_fsclass cls;
	} cases[] = {
		{ 0x6969, "nfs", CKPT_FS_NETWORK },        { 0x0BD00BD0, "lustre", CKPT_FS_NETWORK },
		{ 0x47504653, "gpfs", CKPT_FS_NETWORK },   { 0x00C36400, "ceph", CKPT_FS_NETWORK },
		{ 0x19830326, "beegfs", CKPT_FS_NETWORK }, { 0xFF534D42, "cifs", CKPT_FS_NETWORK },
		{ 0xFE534D42, "smb3", CKPT_FS_NETWORK },   { 0x65735546, "fuse", CKPT_FS_UNKNOWN },
		{ 0x794C7630, "overlay", CKPT_FS_OVERLAY }, { 0x01021994, "tmpfs", CKPT_FS_MEMORY },
		{ 0x858458F6, "ramfs", CKPT_FS_MEMORY },   { 0xEF53, "ext4", CKPT_FS_BLOCK },
		{ 0x58465342, "xfs", CKPT_FS_BLOCK },      { 0x9123683E, "btrfs", CKPT_FS_BLOCK },
		{ 0x2FC12FC1, "zfs", CKPT_FS_BLOCK },      { 0x01021997, "9p", CKPT_FS_HOST },
		{ 0x9FA0, "proc", CKPT_FS_PSEUDO },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ckpt_fstype *t = ckpt_storage__by_magic(cases[i].magic);

		CU_ASSERT_PTR_NOT_NULL_FATAL(t);
		if (strcmp(t->name, cases[i].name) || t->cls != cases[i].cls) {
			fprintf(stderr, "magic 0x%llx: got %s/%s\n",
				(unsigned long long)cases[i].magic, t->name,
				ckpt_storage__class_name(t->cls));
			CU_FAIL("wrong table entry for a magic");
		}
	}
	/* f_type is a signed long: a sign-extended magic is the same filesystem */
	CU_ASSERT_STRING_EQUAL(ckpt_storage__by_magic(0xFFFFFFFFFF534D42ull)->name, "cifs");
	CU_ASSERT_PTR_NULL(ckpt_storage__by_magic(0x12345678));
	CU_ASSERT_PTR_NULL(ckpt_storage__by_magic(0));
	/* mountinfo names, FUSE subtypes */
	CU_ASSERT_EQUAL(ckpt_storage__by_name("nfs4")->cls, CKPT_FS_NETWORK);
	CU_ASSERT_EQUAL(ckpt_storage__by_name("fuse.juicefs")->cls, CKPT_FS_NETWORK);
	CU_ASSERT_EQUAL(ckpt_storage__by_name("fuse.sshfs")->cls, CKPT_FS_NETWORK);
	CU_ASSERT_EQUAL(ckpt_storage__by_name("fuse3.sshfs")->cls, CKPT_FS_NETWORK);
	CU_ASSERT_EQUAL(ckpt_storage__by_name("fuse.JuiceFS")->cls, CKPT_FS_NETWORK);
	CU_ASSERT_EQUAL(ckpt_storage__by_name("fuse.lxcfs")->cls, CKPT_FS_PSEUDO);
	CU_ASSERT_EQUAL(ckpt_storage__by_name("fuse.fuse-overlayfs")->cls, CKPT_FS_OVERLAY);
	CU_ASSERT_EQUAL(ckpt_storage__by_name("fuseblk")->cls, CKPT_FS_BLOCK);
	CU_ASSERT_EQUAL(ckpt_storage__by_name("virtiofs")->cls, CKPT_FS_HOST);
	CU_ASSERT_PTR_NOT_NULL(ckpt_storage__by_name("fuse.s3fs")->caveat);
	CU_ASSERT_PTR_NOT_NULL(ckpt_storage__by_name("fuse.mountpoint-s3")->caveat);
	CU_ASSERT_PTR_NULL(ckpt_storage__by_name("fuse.juicefs")->caveat);
	CU_ASSERT_PTR_NULL(ckpt_storage__by_name("fuse.something-new"));
	CU_ASSERT_PTR_NULL(ckpt_storage__by_name(""));
	CU_ASSERT_PTR_NULL(ckpt_storage__by_name(NULL));
	/* pinned names */
	CU_ASSERT_STRING_EQUAL(ckpt_storage__verdict_name(CKPT_VERDICT_PERSISTENT),
			       "persistent-shared");
	CU_ASSERT_STRING_EQUAL(ckpt_storage__verdict_name(CKPT_VERDICT_NODE_LOCAL), "node-local");
	CU_ASSERT_STRING_EQUAL(ckpt_storage__verdict_name(CKPT_VERDICT_EPHEMERAL), "ephemeral");
	CU_ASSERT_STRING_EQUAL(ckpt_storage__verdict_name(CKPT_VERDICT_SAME_AS_LOCAL),
			       "same-as-local");
	CU_ASSERT_STRING_EQUAL(ckpt_storage__verdict_name(CKPT_VERDICT_UNKNOWN), "unknown");
	CU_ASSERT_STRING_EQUAL(ckpt_storage__class_name(CKPT_FS_NETWORK), "network");
	CU_ASSERT_STRING_EQUAL(ckpt_storage__class_name(CKPT_FS_UNKNOWN), "unknown");
}

/* ---- mountinfo ---- */

static const char mountinfo[] =
	"22 27 0:21 / /proc rw,relatime - proc proc rw\n"
	"27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
	"30 27 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw\n"
	"40 27 0:45 / /mnt/pvc rw,relatime shared:5 master:3 - nfs4 10.0.0.5:/export/pvc-12 rw\n"
	"41 27 259:1 /var/lib/kubelet/pods/0a1b/volumes/kubernetes.io~empty-dir/scratch /scratch "
	"rw - ext4 /dev/nvme0n1p1 rw\n"
	"42 27 0:50 / /my\\040data rw - fuse.juicefs JuiceFS:jfs rw\n"
	"43 27 0:51 / /stack rw - tmpfs one rw\n"
	"44 27 0:52 / /stack rw - tmpfs two rw\n"
	"45 27 254:0 /srv/bind /bound rw - ext4 /dev/vda rw\n"
	"46 45 0:53 / /bound/inner rw - xfs /dev/sdb rw\n"
	"garbage line without fields\n"
	"47 27 0:54 / /short rw -\n";

static void test_mountinfo(void)
{
	struct ckpt_mount m;

	CU_ASSERT_EQUAL(ckpt_storage__find_mount(&m, mountinfo, "/mnt/pvc/ckpt/run", 0), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(m.point, "/mnt/pvc");
	CU_ASSERT_STRING_EQUAL(m.fstype, "nfs4");
	CU_ASSERT_STRING_EQUAL(m.source, "10.0.0.5:/export/pvc-12");
	CU_ASSERT_EQUAL(m.major, 0);
	CU_ASSERT_EQUAL(m.minor, 45);
	/* a sibling that only shares a prefix is not below the mount point */
	CU_ASSERT_EQUAL(ckpt_storage__find_mount(&m, mountinfo, "/mnt/pvc2", 0), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(m.point, "/");
	CU_ASSERT_STRING_EQUAL(m.fstype, "ext4");
	/* octal escapes */
	CU_ASSERT_EQUAL(ckpt_storage__find_mount(&m, mountinfo, "/my data/x", 0), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(m.point, "/my data");
	CU_ASSERT_STRING_EQUAL(m.fstype, "fuse.juicefs");
	/* the mount root (a Kubernetes emptyDir bind) */
	CU_ASSERT_EQUAL(ckpt_storage__find_mount(&m, mountinfo, "/scratch", 0), CKPT_OK);
	CU_ASSERT_PTR_NOT_NULL(strstr(m.root, "kubernetes.io~empty-dir"));
	/* mounted over: the later line wins */
	CU_ASSERT_EQUAL(ckpt_storage__find_mount(&m, mountinfo, "/stack", 0), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(m.source, "two");
	/* ... unless stat says the device is the earlier one's */
	CU_ASSERT_EQUAL(ckpt_storage__find_mount(&m, mountinfo, "/stack", makedev(0, 51)),
			CKPT_OK);
	CU_ASSERT_STRING_EQUAL(m.source, "one");
	/* nested mounts: the deepest */
	CU_ASSERT_EQUAL(ckpt_storage__find_mount(&m, mountinfo, "/bound/inner/a", 0), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(m.fstype, "xfs");
	CU_ASSERT_EQUAL(ckpt_storage__find_mount(&m, mountinfo, "/bound/other", 0), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(m.root, "/srv/bind");
	/* a truncated line is skipped, not misread */
	CU_ASSERT_EQUAL(ckpt_storage__find_mount(&m, mountinfo, "/short", 0), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(m.point, "/");
	/* nothing matches a relative path, or no text */
	CU_ASSERT_EQUAL(ckpt_storage__find_mount(&m, mountinfo, "relative", 0), CKPT_ENOENT);
	CU_ASSERT_EQUAL(ckpt_storage__find_mount(&m, NULL, "/x", 0), CKPT_ENOENT);
	CU_ASSERT_EQUAL(ckpt_storage__find_mount(&m, "", "/x", 0), CKPT_ENOENT);
}

/* ---- real directories ---- */

static void probe(struct ckpt_fsinfo *fs, const char *path)
{
	char *mi = ckpt_storage__read_mountinfo(NULL);
	struct ckpt_err e = { "" };
	char real[PATH_MAX];

	CU_ASSERT_PTR_NOT_NULL_FATAL(realpath(path, real));
	if (ckpt_storage__probe(fs, real, mi, &e) < 0) {
		fprintf(stderr, "probe %s: %s\n", real, e.msg);
		CU_FAIL("probe failed");
	}
	free(mi);
}

static void test_probe_tmp(void)
{
	struct ckpt_fsinfo fs;
	struct ckpt_err e = { "" };
	char want[128] = "";
	FILE *p;

	probe(&fs, base);
	CU_ASSERT(fs.have_mount);
	CU_ASSERT(fs.total_bytes > 0);
	CU_ASSERT(fs.free_bytes <= fs.total_bytes);
	CU_ASSERT(fs.fstype[0] != '\0');
	/* the same type findmnt(8) names, when it is installed */
	if ((p = popen("findmnt -n -o FSTYPE --target \"${TMPDIR:-/tmp}\" 2>/dev/null", "r"))) {
		if (fgets(want, sizeof(want), p))
			want[strcspn(want, "\n")] = '\0';
		pclose(p);
	}
	if (want[0] && strcmp(want, fs.fstype)) {
		fprintf(stderr, "findmnt says %s, probe says %s\n", want, fs.fstype);
		CU_FAIL("fstype differs from findmnt");
	}
	/* what the temporary directory is determines what it must be classified as */
	if (!strcmp(fs.fstype, "ext4") || !strcmp(fs.fstype, "xfs") ||
	    !strcmp(fs.fstype, "btrfs")) {
		CU_ASSERT_EQUAL(fs.cls, CKPT_FS_BLOCK);
		CU_ASSERT_EQUAL(fs.node_local, 1);
	} else if (!strcmp(fs.fstype, "tmpfs")) {
		CU_ASSERT_EQUAL(fs.cls, CKPT_FS_MEMORY);
	}
	/* a missing directory is an error with the path in it */
	CU_ASSERT_EQUAL(ckpt_storage__probe(&fs, "/nonexistent/ckpt-x", NULL, &e), CKPT_ENOENT);
	CU_ASSERT(contains(e.msg, "/nonexistent/ckpt-x"));
	/* without mountinfo the magic still classifies */
	CU_ASSERT_EQUAL(ckpt_storage__probe(&fs, base, NULL, &e), CKPT_OK);
	CU_ASSERT_FALSE(fs.have_mount);
	CU_ASSERT(fs.cls != CKPT_FS_UNKNOWN);
}

/* A FUSE filesystem the table does not know is classified by its mount source: a userspace NFS
 * client (fuse-nfs, source nfs://...) or any host:path source is a network filesystem; an
 * unknown FUSE with a local-looking source stays what the magic says. */
static void test_probe_fuse_source(void)
{
	static const char *const cases[][2] = {
		{ "fuse.fuse-nfs", "nfs://127.0.0.1/export" },
		{ "fuse.fuse-nfs", "NFS://server/export" },
		{ "fuse", "server:/export/home" },
		{ "fuse.smbnetfs", "smb://fileserver/share" },
		{ "fuse3.something", "user@host:/data" },
	};
	struct ckpt_fsinfo fs, plain;
	struct ckpt_err e = { "" };
	char real[PATH_MAX], mi[2 * PATH_MAX];
	struct stat st;

	CU_ASSERT_PTR_NOT_NULL_FATAL(realpath(base, real));
	CU_ASSERT_FATAL(stat(real, &st) == 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(mi, sizeof(mi), "36 1 %u:%u / %s rw,relatime - %s %s rw\n",
			 major(st.st_dev), minor(st.st_dev), real, cases[i][0], cases[i][1]);
		CU_ASSERT_EQUAL_FATAL(ckpt_storage__probe(&fs, real, mi, &e), CKPT_OK);
		CU_ASSERT(fs.have_mount);
		CU_ASSERT_STRING_EQUAL(fs.fstype, cases[i][0]);
		if (fs.cls != CKPT_FS_NETWORK)
			fprintf(stderr, "%s from %s: class %d\n", cases[i][0], cases[i][1], fs.cls);
		CU_ASSERT_EQUAL(fs.cls, CKPT_FS_NETWORK);
		CU_ASSERT_EQUAL(fs.node_local, 0);
	}
	/* a local source says nothing: the classification is the magic's, as without the rule */
	CU_ASSERT_EQUAL_FATAL(ckpt_storage__probe(&plain, real, NULL, &e), CKPT_OK);
	snprintf(mi, sizeof(mi), "36 1 %u:%u / %s rw,relatime - fuse.unknownfs /dev/sdz1 rw\n",
		 major(st.st_dev), minor(st.st_dev), real);
	CU_ASSERT_EQUAL_FATAL(ckpt_storage__probe(&fs, real, mi, &e), CKPT_OK);
	CU_ASSERT_EQUAL(fs.cls, plain.cls);
	snprintf(mi, sizeof(mi), "36 1 %u:%u / %s rw,relatime - fuse.unknownfs unknownfs rw\n",
		 major(st.st_dev), minor(st.st_dev), real);
	CU_ASSERT_EQUAL_FATAL(ckpt_storage__probe(&fs, real, mi, &e), CKPT_OK);
	CU_ASSERT_EQUAL(fs.cls, plain.cls);
}

static void test_probe_proc(void)
{
	struct ckpt_fsinfo fs;
	char reason[CKPT_ERRMSG_MAX];

	probe(&fs, "/proc");
	CU_ASSERT_STRING_EQUAL(fs.fstype, "proc");
	CU_ASSERT_EQUAL(fs.magic, 0x9FA0);
	CU_ASSERT_EQUAL(fs.cls, CKPT_FS_PSEUDO);
	CU_ASSERT_EQUAL(ckpt_storage__verdict(&fs, NULL, CKPT_CLUSTER_NONE, "/home", reason,
					      sizeof(reason)), CKPT_VERDICT_EPHEMERAL);
}

static void test_probe_tmpfs(void)
{
	struct ckpt_fsinfo fs, local;
	char reason[CKPT_ERRMSG_MAX];

	if (!tmpfs_dir[0]) {
		fprintf(stderr, "skipped: no tmpfs\n");
		return;
	}
	probe(&fs, tmpfs_dir);
	probe(&local, base);
	CU_ASSERT_STRING_EQUAL(fs.fstype, "tmpfs");
	CU_ASSERT_EQUAL(fs.magic, 0x01021994);
	CU_ASSERT_EQUAL(fs.cls, CKPT_FS_MEMORY);
	CU_ASSERT_EQUAL(fs.node_local, 1);
	CU_ASSERT(fs.have_mount);
	CU_ASSERT_EQUAL(ckpt_storage__verdict(&fs, &local, CKPT_CLUSTER_NONE, "/home", reason,
					      sizeof(reason)), CKPT_VERDICT_EPHEMERAL);
	CU_ASSERT(contains(reason, "tmpfs"));
	CU_ASSERT(contains(reason, "memory"));
	if (tmpfs_mounted) {
		CU_ASSERT_EQUAL(fs.total_bytes, 32u << 20);
		CU_ASSERT_STRING_EQUAL(fs.mount.source, "ckpt-test");
	}
}

static void test_probe_overlay(void)
{
	struct ckpt_fsinfo fs;
	char reason[CKPT_ERRMSG_MAX];

	if (!ovl_dir[0]) {
		fprintf(stderr, "skipped: no overlay\n");
		return;
	}
	probe(&fs, ovl_dir);
	CU_ASSERT_STRING_EQUAL(fs.fstype, "overlay");
	CU_ASSERT_EQUAL(fs.magic, 0x794C7630);
	CU_ASSERT_EQUAL(fs.cls, CKPT_FS_OVERLAY);
	CU_ASSERT_EQUAL(ckpt_storage__verdict(&fs, NULL, CKPT_CLUSTER_KUBERNETES, "/home", reason,
					      sizeof(reason)), CKPT_VERDICT_EPHEMERAL);
	CU_ASSERT(contains(reason, "container"));
	CU_ASSERT(contains(reason, "is the volume mounted"));
}

static void test_same_filesystem(void)
{
	struct ckpt_fsinfo s, l;
	char reason[CKPT_ERRMSG_MAX];

	probe(&l, subdir(base, "loc"));
	probe(&s, subdir(base, "sha"));
	CU_ASSERT_EQUAL(s.dev, l.dev);
	if (s.cls == CKPT_FS_NETWORK || s.cls == CKPT_FS_MEMORY || s.cls == CKPT_FS_OVERLAY) {
		fprintf(stderr, "skipped: $TMPDIR is on %s\n", s.fstype);
		return;
	}
	CU_ASSERT_EQUAL(ckpt_storage__verdict(&s, &l, CKPT_CLUSTER_NONE, "/home", reason,
					      sizeof(reason)), CKPT_VERDICT_SAME_AS_LOCAL);
	CU_ASSERT(contains(reason, "same filesystem as local_dir"));
	CU_ASSERT(contains(reason, l.path));
	/* another filesystem for local_dir: no longer the same */
	if (tmpfs_dir[0]) {
		probe(&l, tmpfs_dir);
		CU_ASSERT(ckpt_storage__verdict(&s, &l, CKPT_CLUSTER_NONE, "/home", reason,
						sizeof(reason)) != CKPT_VERDICT_SAME_AS_LOCAL);
	}
}

/* ---- the verdict, on described filesystems ---- */

/* A filesystem as probe would describe it, from one line of the mountinfo above. */
static void fake(struct ckpt_fsinfo *fs, const char *path, const char *mi_line_point,
		 const char *fstype, unsigned dev)
{
	const struct ckpt_fstype *t = ckpt_storage__by_name(fstype);

	memset(fs, 0, sizeof(*fs));
	snprintf(fs->path, sizeof(fs->path), "%s", path);
	snprintf(fs->fstype, sizeof(fs->fstype), "%s", fstype);
	fs->cls = t ? t->cls : CKPT_FS_UNKNOWN;
	fs->caveat = t ? t->caveat : NULL;
	fs->dev = makedev(0, dev);
	fs->have_mount = mi_line_point != NULL;
	if (mi_line_point)
		ckpt_storage__find_mount(&fs->mount, mountinfo, mi_line_point, 0);
}

static enum ckpt_verdict verdict(const struct ckpt_fsinfo *s, const struct ckpt_fsinfo *l,
				 enum ckpt_cluster c, char *reason)
{
	return ckpt_storage__verdict(s, l, c, "/home", reason, CKPT_ERRMSG_MAX);
}

static void test_verdict_rules(void)
{
	struct ckpt_fsinfo s, l, nfs;
	char reason[CKPT_ERRMSG_MAX];

	fake(&l, "/nvme/ckpt", "/", "ext4", 1);
	/* a network filesystem is persistent on every cluster type */
	fake(&nfs, "/mnt/pvc/ckpt", "/mnt/pvc", "nfs4", 45);
	for (int c = CKPT_CLUSTER_NONE; c <= CKPT_CLUSTER_KUBERNETES; c++) {
		CU_ASSERT_EQUAL(verdict(&nfs, &l, (enum ckpt_cluster)c, reason),
				CKPT_VERDICT_PERSISTENT);
		CU_ASSERT(contains(reason, "network filesystem"));
		CU_ASSERT(contains(reason, "10.0.0.5:/export/pvc-12"));
	}
	/* ... also on the same device as local_dir (both on NFS: local_dir is warned about) */
	CU_ASSERT_EQUAL(verdict(&nfs, &nfs, CKPT_CLUSTER_NONE, reason), CKPT_VERDICT_PERSISTENT);
	/* a disk of this node */
	fake(&s, "/data/ckpt", "/", "ext4", 2);
	CU_ASSERT_EQUAL(verdict(&s, &l, CKPT_CLUSTER_SLURM, reason), CKPT_VERDICT_NODE_LOCAL);
	CU_ASSERT(contains(reason, "a disk of this node"));
	CU_ASSERT(contains(reason, "/dev/vda"));
	/* the same device as local_dir */
	fake(&s, "/data/ckpt", "/", "ext4", 1);
	CU_ASSERT_EQUAL(verdict(&s, &l, CKPT_CLUSTER_NONE, reason), CKPT_VERDICT_SAME_AS_LOCAL);
	CU_ASSERT(contains(reason, "/nvme/ckpt"));
	CU_ASSERT(contains(reason, "device 0:1"));
	/* memory beats same-as-local: the stronger reason is named */
	fake(&s, "/dev/shm/ckpt", "/dev/shm", "tmpfs", 1);
	CU_ASSERT_EQUAL(verdict(&s, &l, CKPT_CLUSTER_NONE, reason), CKPT_VERDICT_EPHEMERAL);
	/* a Kubernetes emptyDir, whatever the cluster detection says */
	fake(&s, "/scratch/ckpt", "/scratch", "ext4", 3);
	CU_ASSERT_EQUAL(verdict(&s, &l, CKPT_CLUSTER_NONE, reason), CKPT_VERDICT_EPHEMERAL);
	CU_ASSERT(contains(reason, "emptyDir"));
	/* a whole block device mounted on its own: on Kubernetes maybe a block PV */
	fake(&s, "/bound/inner/ckpt", "/bound/inner", "xfs", 4);
	CU_ASSERT_EQUAL(verdict(&s, &l, CKPT_CLUSTER_KUBERNETES, reason), CKPT_VERDICT_UNKNOWN);
	CU_ASSERT(contains(reason, "PersistentVolume"));
	CU_ASSERT_EQUAL(verdict(&s, &l, CKPT_CLUSTER_SLURM, reason), CKPT_VERDICT_NODE_LOCAL);
	/* a network block device */
	fake(&s, "/bound/inner/ckpt", "/bound/inner", "xfs", 4);
	snprintf(s.mount.source, sizeof(s.mount.source), "/dev/rbd0");
	CU_ASSERT_EQUAL(verdict(&s, &l, CKPT_CLUSTER_NONE, reason), CKPT_VERDICT_UNKNOWN);
	CU_ASSERT(contains(reason, "network block device"));
	/* FUSE with an unknown subtype, a VM host's directory */
	fake(&s, "/x", NULL, "fuse.something-new", 5);
	CU_ASSERT_EQUAL(verdict(&s, &l, CKPT_CLUSTER_NONE, reason), CKPT_VERDICT_UNKNOWN);
	fake(&s, "/x", NULL, "9p", 5);
	CU_ASSERT_EQUAL(verdict(&s, &l, CKPT_CLUSTER_NONE, reason), CKPT_VERDICT_UNKNOWN);
	CU_ASSERT(contains(reason, "VM host"));
	/* no comparison without local_dir */
	fake(&s, "/data/ckpt", "/", "ext4", 1);
	CU_ASSERT_EQUAL(verdict(&s, NULL, CKPT_CLUSTER_NONE, reason), CKPT_VERDICT_NODE_LOCAL);
}

/* The cluster provider's rule: on Kubernetes /home is node-local and ephemeral, on Slurm it is
 * the persistent NFS share. */
static void test_kubernetes_home(void)
{
	static const char mi[] =
		"27 1 254:0 / / rw - overlay overlay rw\n"
		"50 27 254:1 /home /home rw - ext4 /dev/nvme0n1p1 rw\n"
		"51 50 0:60 / /home/me/pvc rw - nfs4 10.0.0.5:/vol rw\n"
		"52 27 0:61 / /home2 rw - nfs 10.0.0.5:/home rw\n"
		"53 27 259:3 / /homeblk rw - ext4 /dev/sdc rw\n";
	struct ckpt_fsinfo s, l;
	char reason[CKPT_ERRMSG_MAX];

	fake(&l, "/nvme/ckpt", "/", "ext4", 1);
	/* /home as the container's own directory (overlay root) */
	memset(&s, 0, sizeof(s));
	snprintf(s.path, sizeof(s.path), "/home/me/ckpt");
	ckpt_storage__find_mount(&s.mount, mi, "/", 0);
	s.have_mount = 1;
	s.cls = CKPT_FS_OVERLAY;
	snprintf(s.fstype, sizeof(s.fstype), "overlay");
	CU_ASSERT_EQUAL(verdict(&s, &l, CKPT_CLUSTER_KUBERNETES, reason), CKPT_VERDICT_EPHEMERAL);
	CU_ASSERT(contains(reason, "on Kubernetes /home is node-local and ephemeral"));
	/* /home bound from the node's disk (hostPath): the rule, not the generic node-local one */
	ckpt_storage__find_mount(&s.mount, mi, "/home/me/ckpt", 0);
	CU_ASSERT_STRING_EQUAL(s.mount.point, "/home");
	s.cls = CKPT_FS_BLOCK;
	s.dev = makedev(254, 1);
	snprintf(s.fstype, sizeof(s.fstype), "ext4");
	CU_ASSERT_EQUAL(verdict(&s, &l, CKPT_CLUSTER_KUBERNETES, reason), CKPT_VERDICT_EPHEMERAL);
	CU_ASSERT(contains(reason, "on Kubernetes /home is node-local and ephemeral"));
	CU_ASSERT(contains(reason, "/dev/nvme0n1p1"));
	/* the same directory on Slurm is judged by its filesystem: a node disk here */
	CU_ASSERT_EQUAL(verdict(&s, &l, CKPT_CLUSTER_SLURM, reason), CKPT_VERDICT_NODE_LOCAL);
	CU_ASSERT(strstr(reason, "Kubernetes") == NULL);
	/* a PVC mounted inside /home is persistent */
	snprintf(s.path, sizeof(s.path), "/home/me/pvc/ckpt");
	ckpt_storage__find_mount(&s.mount, mi, s.path, 0);
	s.cls = CKPT_FS_NETWORK;
	snprintf(s.fstype, sizeof(s.fstype), "nfs4");
	CU_ASSERT_EQUAL(verdict(&s, &l, CKPT_CLUSTER_KUBERNETES, reason), CKPT_VERDICT_PERSISTENT);
	/* Slurm's /home over NFS is persistent (here with the prefix of the test's choice) */
	snprintf(s.path, sizeof(s.path), "/home2/me/ckpt");
	ckpt_storage__find_mount(&s.mount, mi, s.path, 0);
	CU_ASSERT_EQUAL(ckpt_storage__verdict(&s, &l, CKPT_CLUSTER_SLURM, "/home2", reason,
					      sizeof(reason)), CKPT_VERDICT_PERSISTENT);
	/* ... and a network filesystem at /home is a mounted volume even on Kubernetes */
	CU_ASSERT_EQUAL(ckpt_storage__verdict(&s, &l, CKPT_CLUSTER_KUBERNETES, "/home2", reason,
					      sizeof(reason)), CKPT_VERDICT_PERSISTENT);
	/* a whole block device mounted at the home prefix: maybe a block PV, not the rule */
	snprintf(s.path, sizeof(s.path), "/homeblk/ckpt");
	ckpt_storage__find_mount(&s.mount, mi, s.path, 0);
	s.cls = CKPT_FS_BLOCK;
	s.dev = makedev(259, 3);
	CU_ASSERT_EQUAL(ckpt_storage__verdict(&s, &l, CKPT_CLUSTER_KUBERNETES, "/homeblk", reason,
					      sizeof(reason)), CKPT_VERDICT_UNKNOWN);
	/* "/homework" is not below "/home" */
	snprintf(s.path, sizeof(s.path), "/homework/ckpt");
	ckpt_storage__find_mount(&s.mount, mi, "/", 0);
	s.cls = CKPT_FS_OVERLAY;
	CU_ASSERT_EQUAL(verdict(&s, &l, CKPT_CLUSTER_KUBERNETES, reason), CKPT_VERDICT_EPHEMERAL);
	CU_ASSERT(strstr(reason, "/home is node-local") == NULL);
}

/* The rule on a real directory: the home prefix is a parameter, so the test's own temporary
 * directory plays /home. */
static void test_kubernetes_home_real(void)
{
	struct ckpt_fsinfo s, l;
	char reason[CKPT_ERRMSG_MAX], home[PATH_MAX];

	CU_ASSERT_PTR_NOT_NULL_FATAL(realpath(base, home));
	probe(&s, subdir(base, "user"));
	if (s.cls == CKPT_FS_NETWORK) {
		fprintf(stderr, "skipped: $TMPDIR is on %s\n", s.fstype);
		return;
	}
	if (tmpfs_dir[0])
		probe(&l, tmpfs_dir);
	CU_ASSERT_EQUAL(ckpt_storage__verdict(&s, tmpfs_dir[0] ? &l : NULL,
					      CKPT_CLUSTER_KUBERNETES, home, reason,
					      sizeof(reason)), CKPT_VERDICT_EPHEMERAL);
	CU_ASSERT(contains(reason, "is node-local and ephemeral"));
}

/* ---- the environment ---- */

static void test_cluster(void)
{
	ckpt_config *cfg;
	const char *why;

	clear_env();
	CU_ASSERT_EQUAL_FATAL(ckpt_config_new(&cfg), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_storage__cluster(cfg, &why), CKPT_CLUSTER_NONE);
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	CU_ASSERT_EQUAL(ckpt_storage__cluster(cfg, &why), CKPT_CLUSTER_KUBERNETES);
	CU_ASSERT_STRING_EQUAL(why, "KUBERNETES_SERVICE_HOST");
	/* Slurm on Kubernetes keeps the Slurm /home */
	setenv("SLURM_JOB_ID", "1234", 1);
	CU_ASSERT_EQUAL(ckpt_storage__cluster(cfg, &why), CKPT_CLUSTER_SLURM);
	CU_ASSERT_STRING_EQUAL(why, "SLURM_JOB_ID");
	unsetenv("SLURM_JOB_ID");
	setenv("SLURM_JOBID", "1234", 1);
	CU_ASSERT_EQUAL(ckpt_storage__cluster(cfg, NULL), CKPT_CLUSTER_SLURM);
	/* an empty variable is unset */
	setenv("SLURM_JOBID", "", 1);
	CU_ASSERT_EQUAL(ckpt_storage__cluster(cfg, NULL), CKPT_CLUSTER_KUBERNETES);
	/* the key overrides the environment */
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "cluster", "none"), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_storage__cluster(cfg, &why), CKPT_CLUSTER_NONE);
	CU_ASSERT_STRING_EQUAL(why, "config key cluster");
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "cluster", "slurm"), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_storage__cluster(cfg, NULL), CKPT_CLUSTER_SLURM);
	CU_ASSERT_STRING_EQUAL(ckpt_config_get(cfg, "cluster"), "slurm");
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "cluster", "pbs"), CKPT_EINVAL);
	CU_ASSERT(contains(ckpt_config_errmsg(cfg), "auto, none, slurm or kubernetes"));
	ckpt_config_free(cfg);
	/* ... also as CKPT_CLUSTER */
	setenv("CKPT_CLUSTER", "kubernetes", 1);
	CU_ASSERT_EQUAL_FATAL(ckpt_config_new(&cfg), CKPT_OK);
	unsetenv("KUBERNETES_SERVICE_HOST");
	CU_ASSERT_EQUAL(ckpt_storage__cluster(cfg, NULL), CKPT_CLUSTER_KUBERNETES);
	ckpt_config_free(cfg);
	CU_ASSERT(contains(ckpt_storage__advice(CKPT_CLUSTER_KUBERNETES), "PersistentVolumeClaim"));
	CU_ASSERT(contains(ckpt_storage__advice(CKPT_CLUSTER_SLURM), "/home"));
	clear_env();
}

static void test_launcher_rank(void)
{
	uint32_t r = 99, n = 99;
	const char *src = NULL;

	clear_env();
	CU_ASSERT_EQUAL(ckpt_storage__launcher_rank(&r, &n, &src), CKPT_ENOENT);
	setenv("SLURM_PROCID", "5", 1);
	setenv("SLURM_NTASKS", "8", 1);
	CU_ASSERT_EQUAL(ckpt_storage__launcher_rank(&r, &n, &src), CKPT_OK);
	CU_ASSERT_EQUAL(r, 5);
	CU_ASSERT_EQUAL(n, 8);
	CU_ASSERT_STRING_EQUAL(src, "SLURM_PROCID");
	/* mpirun inside an allocation: the MPI launcher's rank wins over the batch step's */
	setenv("OMPI_COMM_WORLD_RANK", "3", 1);
	setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
	CU_ASSERT_EQUAL(ckpt_storage__launcher_rank(&r, &n, &src), CKPT_OK);
	CU_ASSERT_EQUAL(r, 3);
	CU_ASSERT_EQUAL(n, 4);
	CU_ASSERT_STRING_EQUAL(src, "OMPI_COMM_WORLD_RANK");
	/* a malformed value is skipped; a size below the rank is dropped */
	setenv("OMPI_COMM_WORLD_RANK", "3x", 1);
	CU_ASSERT_EQUAL(ckpt_storage__launcher_rank(&r, &n, &src), CKPT_OK);
	CU_ASSERT_STRING_EQUAL(src, "SLURM_PROCID");
	setenv("SLURM_NTASKS", "2", 1);
	CU_ASSERT_EQUAL(ckpt_storage__launcher_rank(&r, &n, NULL), CKPT_OK);
	CU_ASSERT_EQUAL(r, 5);
	CU_ASSERT_EQUAL(n, 0);
	clear_env();
	/* MPICH/Hydra, and PMIx with Slurm's task count */
	setenv("PMI_RANK", "7", 1);
	setenv("PMI_SIZE", "16", 1);
	CU_ASSERT_EQUAL(ckpt_storage__launcher_rank(&r, &n, &src), CKPT_OK);
	CU_ASSERT_EQUAL(r, 7);
	CU_ASSERT_EQUAL(n, 16);
	clear_env();
	setenv("PMIX_RANK", "2", 1);
	CU_ASSERT_EQUAL(ckpt_storage__launcher_rank(&r, NULL, &src), CKPT_OK);
	CU_ASSERT_EQUAL(r, 2);
	CU_ASSERT_STRING_EQUAL(src, "PMIX_RANK");
	setenv("SLURM_NTASKS", "6", 1);
	CU_ASSERT_EQUAL(ckpt_storage__launcher_rank(&r, &n, &src), CKPT_OK);
	CU_ASSERT_EQUAL(n, 6);
	setenv("PMIX_RANK", "-1", 1);
	unsetenv("SLURM_NTASKS");
	CU_ASSERT_EQUAL(ckpt_storage__launcher_rank(&r, &n, &src), CKPT_ENOENT);
	clear_env();
}

/* ---- ckpt_open: the warning, the error ---- */

static int open_with(const char *local, const char *shared, const char *const *kv)
{
	ckpt_config *cfg;
	ckpt_ctx *ctx = NULL;
	int rc;

	CU_ASSERT_EQUAL_FATAL(ckpt_config_new(&cfg), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "local_dir", local), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "shared_dir", shared), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "name", "storagetest"), CKPT_OK);
	for (size_t i = 0; kv && kv[i]; i += 2)
		CU_ASSERT_EQUAL(ckpt_config_set(cfg, kv[i], kv[i + 1]), CKPT_OK);
	rc = ckpt_open(&ctx, cfg);
	ckpt_config_free(cfg);
	if (ctx)
		CU_ASSERT_EQUAL(ckpt_close(ctx), CKPT_OK);
	return rc;
}

static void test_open_warns(void)
{
	const char *out;
	const char *quiet[] = { "log_level", "0", NULL };

	clear_env();
	if (!tmpfs_dir[0]) {
		fprintf(stderr, "skipped: no tmpfs\n");
		return;
	}
	capture_begin();
	CU_ASSERT_EQUAL(open_with(subdir(base, "local1"), subdir(tmpfs_dir, "w1"), NULL), CKPT_OK);
	out = capture_end();
	CU_ASSERT(contains(out, "libckpt: warning: shared_dir is not persistent (ephemeral)"));
	CU_ASSERT(contains(out, "tmpfs"));
	CU_ASSERT(contains(out, "require_persistent=1"));
	CU_ASSERT(contains(out, "a network filesystem that outlives this node"));
	/* exactly one line */
	CU_ASSERT_PTR_NULL(strchr(strchr(out, '\n') ? strchr(out, '\n') + 1 : out, '\n'));
	/* the advice follows the cluster type */
	setenv("SLURM_JOB_ID", "42", 1);
	capture_begin();
	CU_ASSERT_EQUAL(open_with(subdir(base, "local1"), subdir(tmpfs_dir, "w1"), NULL), CKPT_OK);
	out = capture_end();
	CU_ASSERT(contains(out, "/home (the cluster's persistent NFS share)"));
	clear_env();
	/* log_level 0 silences it */
	capture_begin();
	CU_ASSERT_EQUAL(open_with(subdir(base, "local1"), subdir(tmpfs_dir, "w1"), quiet), CKPT_OK);
	out = capture_end();
	CU_ASSERT_STRING_EQUAL(out, "");
}

static void test_open_same_fs(void)
{
	struct ckpt_fsinfo fs;
	const char *out;

	clear_env();
	probe(&fs, base);
	if (fs.cls == CKPT_FS_NETWORK) {
		fprintf(stderr, "skipped: $TMPDIR is on %s\n", fs.fstype);
		return;
	}
	capture_begin();
	CU_ASSERT_EQUAL(open_with(subdir(base, "l2"), subdir(base, "s2"), NULL), CKPT_OK);
	out = capture_end();
	CU_ASSERT(contains(out, "shared_dir is not persistent ("));
	CU_ASSERT(contains(out, fs.cls == CKPT_FS_BLOCK ? "same-as-local" : "ephemeral"));
}

static void test_open_refuses(void)
{
	const char *strict[] = { "require_persistent", "1", NULL };
	const char *out;

	clear_env();
	if (!tmpfs_dir[0]) {
		fprintf(stderr, "skipped: no tmpfs\n");
		return;
	}
	capture_begin();
	CU_ASSERT_EQUAL(open_with(subdir(base, "local3"), subdir(tmpfs_dir, "r3"), strict),
			CKPT_EINVAL);
	out = capture_end();
	CU_ASSERT(contains(ckpt_errmsg(NULL), "shared_dir is not persistent (ephemeral)"));
	CU_ASSERT(contains(ckpt_errmsg(NULL), "tmpfs"));
	CU_ASSERT(contains(ckpt_errmsg(NULL), "require_persistent=1"));
	CU_ASSERT_STRING_EQUAL(out, ""); /* an error, not also a warning */
	/* nothing was created on either tier */
	CU_ASSERT_EQUAL(th_sh("test ! -e '%s/local3/storagetest' && test ! -e '%s/r3/storagetest'",
			      base, tmpfs_dir), 0);
	/* ... also through CKPT_REQUIRE_PERSISTENT */
	setenv("CKPT_REQUIRE_PERSISTENT", "1", 1);
	CU_ASSERT_EQUAL(open_with(subdir(base, "local3"), subdir(tmpfs_dir, "r3"), NULL),
			CKPT_EINVAL);
	clear_env();
}

/* shared_dir under /home on Kubernetes, for real, where the test may create a directory in /home
 * (root; skipped elsewhere: the pure rule is tested above). */
static void test_open_kubernetes_home(void)
{
	const char *strict[] = { "require_persistent", "1", NULL };
	const char *by_key[] = { "require_persistent", "1", "cluster", "kubernetes", NULL };
	struct ckpt_fsinfo fs;
	char home[] = "/home/ckpt-test-XXXXXX";
	const char *out;

	clear_env();
	if (access("/home", W_OK) < 0 || !mkdtemp(home)) {
		fprintf(stderr, "skipped: /home is not writable here\n");
		return;
	}
	probe(&fs, home);
	if (fs.cls == CKPT_FS_NETWORK) {
		fprintf(stderr, "skipped: /home is on %s here\n", fs.fstype);
		goto out;
	}
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	CU_ASSERT_EQUAL(open_with(subdir(base, "local4"), home, strict), CKPT_EINVAL);
	CU_ASSERT(contains(ckpt_errmsg(NULL), "on Kubernetes /home is node-local and ephemeral"));
	CU_ASSERT(contains(ckpt_errmsg(NULL), "mount a PersistentVolumeClaim"));
	capture_begin();
	CU_ASSERT_EQUAL(open_with(subdir(base, "local4"), home, NULL), CKPT_OK);
	out = capture_end();
	CU_ASSERT(contains(out, "on Kubernetes /home is node-local and ephemeral"));
	/* the cluster key does the same without the variable */
	clear_env();
	CU_ASSERT_EQUAL(open_with(subdir(base, "local4"), home, by_key), CKPT_EINVAL);
	CU_ASSERT(contains(ckpt_errmsg(NULL), "on Kubernetes /home"));
	/* on Slurm the same directory is judged by its filesystem, not by the /home rule */
	setenv("SLURM_JOB_ID", "42", 1);
	CU_ASSERT_EQUAL(open_with(subdir(base, "local4"), home, strict),
			fs.cls == CKPT_FS_NETWORK ? CKPT_OK : CKPT_EINVAL);
	CU_ASSERT(strstr(ckpt_errmsg(NULL), "Kubernetes") == NULL);
out:
	clear_env();
	th_rmtree(home);
}

/* Ranks other than 0 say it at info level: one warning per job, not one per rank. */
static void test_check_ranks(void)
{
	ckpt_config *cfg;
	struct ckpt_err e = { "" };
	char l[PATH_MAX], s[PATH_MAX];
	const char *out;

	clear_env();
	if (!tmpfs_dir[0]) {
		fprintf(stderr, "skipped: no tmpfs\n");
		return;
	}
	CU_ASSERT_PTR_NOT_NULL_FATAL(realpath(subdir(base, "local5"), l));
	CU_ASSERT_PTR_NOT_NULL_FATAL(realpath(tmpfs_dir, s));
	CU_ASSERT_EQUAL_FATAL(ckpt_config_new(&cfg), CKPT_OK);
	capture_begin();
	CU_ASSERT_EQUAL(ckpt_storage__check(cfg, l, s, 3, &e), CKPT_OK);
	out = capture_end();
	CU_ASSERT_STRING_EQUAL(out, "");
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "log_level", "2"), CKPT_OK);
	capture_begin();
	CU_ASSERT_EQUAL(ckpt_storage__check(cfg, l, s, 3, &e), CKPT_OK);
	out = capture_end();
	CU_ASSERT(contains(out, "libckpt: info: shared_dir is not persistent (ephemeral)"));
	/* the error is every rank's */
	CU_ASSERT_EQUAL(ckpt_config_set(cfg, "require_persistent", "1"), CKPT_OK);
	CU_ASSERT_EQUAL(ckpt_storage__check(cfg, l, s, 3, &e), CKPT_EINVAL);
	CU_ASSERT(contains(e.msg, "ephemeral"));
	ckpt_config_free(cfg);
}

int main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("storage", suite_init, suite_clean);
	if (!s || !CU_add_test(s, "filesystem table", test_table) ||
	    !CU_add_test(s, "mountinfo parsing", test_mountinfo) ||
	    !CU_add_test(s, "probe $TMPDIR", test_probe_tmp) ||
	    !CU_add_test(s, "probe /proc", test_probe_proc) ||
	    !CU_add_test(s, "probe: FUSE classified by its source", test_probe_fuse_source) ||
	    !CU_add_test(s, "probe tmpfs", test_probe_tmpfs) ||
	    !CU_add_test(s, "probe overlay", test_probe_overlay) ||
	    !CU_add_test(s, "same filesystem as local_dir", test_same_filesystem) ||
	    !CU_add_test(s, "verdict rules", test_verdict_rules) ||
	    !CU_add_test(s, "Kubernetes /home rule", test_kubernetes_home) ||
	    !CU_add_test(s, "Kubernetes /home rule on a real directory",
			 test_kubernetes_home_real) ||
	    !CU_add_test(s, "cluster type", test_cluster) ||
	    !CU_add_test(s, "launcher rank", test_launcher_rank) ||
	    !CU_add_test(s, "ckpt_open warns", test_open_warns) ||
	    !CU_add_test(s, "ckpt_open warns: same filesystem", test_open_same_fs) ||
	    !CU_add_test(s, "require_persistent refuses", test_open_refuses) ||
	    !CU_add_test(s, "ckpt_open on Kubernetes /home", test_open_kubernetes_home) ||
	    !CU_add_test(s, "ranks other than 0", test_check_ranks)) {
		CU_cleanup_registry();
		return 1;
	}
	return th_run();
}
