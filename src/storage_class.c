/* SPDX-License-Identifier: MIT */
/* What kind of filesystem holds each tier: the filesystem table, mountinfo, the probe of a
 * directory, the persistence verdict on shared_dir and the check ckpt_open makes with it. Where
 * the job runs (cluster type, launcher rank) is storage_cluster.c. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>

#include "ckpt.h"
#include "storage.h"

/* ---------------------------------------------------------------------------------------------
 * The filesystem table
 *
 * Names are those of /proc/self/mountinfo (the kernel's or FUSE's "fuse.<subtype>"); magics
 * those of statfs(2) (linux/magic.h, and the vendors' headers for the out-of-tree ones: Lustre,
 * GPFS, BeeGFS, ZFS, PanFS, OrangeFS). The magic is the fallback when /proc is not mounted. The
 * first entry of a magic names it.
 */

static const char objstore[] =
	"an object store behind FUSE: rename is a copy and a delete, and fsync may not reach the "
	"store; check commits with a crash drill before relying on it";

static const struct ckpt_fstype fstypes[] = {
	/* network and cluster filesystems: the data lives on servers */
	{ 0x6969, "nfs", CKPT_FS_NETWORK, NULL },
	{ 0x6969, "nfs4", CKPT_FS_NETWORK, NULL },
	{ 0x0BD00BD0, "lustre", CKPT_FS_NETWORK, NULL },
	{ 0x47504653, "gpfs", CKPT_FS_NETWORK, NULL },
	{ 0x00C36400, "ceph", CKPT_FS_NETWORK, NULL },
	{ 0x19830326, "beegfs", CKPT_FS_NETWORK, NULL },
	{ 0x19830326, "fhgfs", CKPT_FS_NETWORK, NULL },
	{ 0, "wekafs", CKPT_FS_NETWORK, NULL },
	{ 0xFF534D42, "cifs", CKPT_FS_NETWORK, NULL },
	{ 0xFE534D42, "smb3", CKPT_FS_NETWORK, NULL },
	{ 0x517B, "smbfs", CKPT_FS_NETWORK, NULL },
	{ 0x5346414F, "afs", CKPT_FS_NETWORK, NULL },
	{ 0x6B414653, "afs", CKPT_FS_NETWORK, NULL },
	{ 0x20030528, "pvfs2", CKPT_FS_NETWORK, NULL },
	{ 0xAAD7AAEA, "panfs", CKPT_FS_NETWORK, NULL },
	{ 0x01161970, "gfs2", CKPT_FS_NETWORK, NULL },
	{ 0x7461636F, "ocfs2", CKPT_FS_NETWORK, NULL },
	{ 0x73757245, "coda", CKPT_FS_NETWORK, NULL },
	{ 0x013111A8, "ibrix", CKPT_FS_NETWORK, NULL },
	{ 0x61636673, "acfs", CKPT_FS_NETWORK, NULL },
	{ 0xBEEFDEAD, "cvfs", CKPT_FS_NETWORK, NULL },
	{ 0, "glusterfs", CKPT_FS_NETWORK, NULL },
	{ 0, "fuse.glusterfs", CKPT_FS_NETWORK, NULL },
	{ 0, "fuse.ceph-fuse", CKPT_FS_NETWORK, NULL },
	{ 0, "fuse.ceph", CKPT_FS_NETWORK, NULL },
	{ 0, "fuse.juicefs", CKPT_FS_NETWORK, NULL },
	{ 0, "fuse.sshfs", CKPT_FS_NETWORK, NULL },
	{ 0, "fuse.mfs", CKPT_FS_NETWORK, NULL },
	{ 0, "fuse.seaweedfs", CKPT_FS_NETWORK, NULL },
	{ 0, "fuse.alluxio-fuse", CKPT_FS_NETWORK, NULL },
	{ 0, "fuse.daos", CKPT_FS_NETWORK, NULL },
	{ 0, "fuse.dfuse", CKPT_FS_NETWORK, NULL },
	{ 0, "fuse.quobyte", CKPT_FS_NETWORK, NULL },
	{ 0, "fuse.xtreemfs", CKPT_FS_NETWORK, NULL },
	{ 0, "fuse.hf3fs", CKPT_FS_NETWORK, NULL },
	{ 0, "fuse.gcsfuse", CKPT_FS_NETWORK, objstore },
	{ 0, "fuse.s3fs", CKPT_FS_NETWORK, objstore },
	{ 0, "fuse.goofys", CKPT_FS_NETWORK, objstore },
	{ 0, "fuse.geesefs", CKPT_FS_NETWORK, objstore },
	{ 0, "fuse.rclone", CKPT_FS_NETWORK, objstore },
	{ 0, "fuse.blobfuse", CKPT_FS_NETWORK, objstore },
	{ 0, "fuse.blobfuse2", CKPT_FS_NETWORK, objstore },
	{ 0, "fuse.ossfs", CKPT_FS_NETWORK, objstore },
	{ 0, "fuse.cosfs", CKPT_FS_NETWORK, objstore },
	{ 0, "fuse.mountpoint-s3", CKPT_FS_NETWORK,
	  "Mountpoint for Amazon S3 cannot rename files, which every libckpt commit does: drains "
	  "will fail" },
	/* filesystems on a block device: a disk (or a network block device) of this node */
	{ 0xEF53, "ext4", CKPT_FS_BLOCK, NULL },
	{ 0xEF53, "ext3", CKPT_FS_BLOCK, NULL },
	{ 0xEF53, "ext2", CKPT_FS_BLOCK, NULL },
	{ 0x58465342, "xfs", CKPT_FS_BLOCK, NULL },
	{ 0x9123683E, "btrfs", CKPT_FS_BLOCK, NULL },
	{ 0x2FC12FC1, "zfs", CKPT_FS_BLOCK, NULL },
	{ 0xF2F52010, "f2fs", CKPT_FS_BLOCK, NULL },
	{ 0xCA451A4E, "bcachefs", CKPT_FS_BLOCK, NULL },
	{ 0x3153464A, "jfs", CKPT_FS_BLOCK, NULL },
	{ 0x52654973, "reiserfs", CKPT_FS_BLOCK, NULL },
	{ 0x3434, "nilfs2", CKPT_FS_BLOCK, NULL },
	{ 0x4D44, "vfat", CKPT_FS_BLOCK, NULL },
	{ 0x4D44, "msdos", CKPT_FS_BLOCK, NULL },
	{ 0x2011BAB0, "exfat", CKPT_FS_BLOCK, NULL },
	{ 0x5346544E, "ntfs", CKPT_FS_BLOCK, NULL },
	{ 0x7366746E, "ntfs3", CKPT_FS_BLOCK, NULL },
	{ 0, "fuseblk", CKPT_FS_BLOCK, NULL },
	{ 0x482B, "hfsplus", CKPT_FS_BLOCK, NULL },
	{ 0x15013346, "udf", CKPT_FS_BLOCK, NULL },
	{ 0x9660, "iso9660", CKPT_FS_BLOCK, NULL },
	{ 0x73717368, "squashfs", CKPT_FS_BLOCK, NULL },
	{ 0xE0F5E1E2, "erofs", CKPT_FS_BLOCK, NULL },
	/* memory */
	{ 0x01021994, "tmpfs", CKPT_FS_MEMORY, NULL },
	{ 0x01021994, "devtmpfs", CKPT_FS_MEMORY, NULL },
	{ 0x858458F6, "ramfs", CKPT_FS_MEMORY, NULL },
	{ 0x958458F6, "hugetlbfs", CKPT_FS_MEMORY, NULL },
	/* a container's layers */
	{ 0x794C7630, "overlay", CKPT_FS_OVERLAY, NULL },
	{ 0x61756673, "aufs", CKPT_FS_OVERLAY, NULL },
	{ 0, "fuse.fuse-overlayfs", CKPT_FS_OVERLAY, NULL },
	/* a VM host's directory */
	{ 0x01021997, "9p", CKPT_FS_HOST, NULL },
	{ 0, "virtiofs", CKPT_FS_HOST, NULL },
	{ 0x786F4256, "vboxsf", CKPT_FS_HOST, NULL },
	{ 0xBACBACBC, "vmhgfs", CKPT_FS_HOST, NULL },
	{ 0, "fuse.vmhgfs-fuse", CKPT_FS_HOST, NULL },
	{ 0x7C7C6673, "prl_fs", CKPT_FS_HOST, NULL },
	{ 0x00C0FFEE, "hostfs", CKPT_FS_HOST, NULL },
	/* kernel pseudo-filesystems */
	{ 0x9FA0, "proc", CKPT_FS_PSEUDO, NULL },
	{ 0x62656572, "sysfs", CKPT_FS_PSEUDO, NULL },
	{ 0x27E0EB, "cgroup", CKPT_FS_PSEUDO, NULL },
	{ 0x63677270, "cgroup2", CKPT_FS_PSEUDO, NULL },
	{ 0x1CD1, "devpts", CKPT_FS_PSEUDO, NULL },
	{ 0x64626720, "debugfs", CKPT_FS_PSEUDO, NULL },
	{ 0x74726163, "tracefs", CKPT_FS_PSEUDO, NULL },
	{ 0x73636673, "securityfs", CKPT_FS_PSEUDO, NULL },
	{ 0x6165676C, "pstore", CKPT_FS_PSEUDO, NULL },
	{ 0xCAFE4A11, "bpf", CKPT_FS_PSEUDO, NULL },
	{ 0x19800202, "mqueue", CKPT_FS_PSEUDO, NULL },
	{ 0x62656570, "configfs", CKPT_FS_PSEUDO, NULL },
	{ 0x0187, "autofs", CKPT_FS_PSEUDO, NULL },
	{ 0x42494E4D, "binfmt_misc", CKPT_FS_PSEUDO, NULL },
	{ 0xDE5E81E4, "efivarfs", CKPT_FS_PSEUDO, NULL },
	{ 0x65735543, "fusectl", CKPT_FS_PSEUDO, NULL },
	{ 0x6E736673, "nsfs", CKPT_FS_PSEUDO, NULL },
	{ 0x67596969, "rpc_pipefs", CKPT_FS_PSEUDO, NULL },
	{ 0xF97CFF8C, "selinuxfs", CKPT_FS_PSEUDO, NULL },
	{ 0, "fuse.lxcfs", CKPT_FS_PSEUDO, NULL },
	{ 0, "fuse.gvfsd-fuse", CKPT_FS_PSEUDO, NULL },
	{ 0, "fuse.portal", CKPT_FS_PSEUDO, NULL },
	/* FUSE without a known subtype says nothing about where the data lives */
	{ 0x65735546, "fuse", CKPT_FS_UNKNOWN, NULL },
};

#define NFSTYPES (sizeof(fstypes) / sizeof(fstypes[0]))

const struct ckpt_fstype *ckpt_storage__by_magic(uint64_t magic)
{
	/* statfs's f_type is a signed long on some ABIs: compare the low 32 bits, where every
	 * magic lives. */
	magic &= 0xFFFFFFFFu;
	for (size_t i = 0; i < NFSTYPES; i++)
		if (fstypes[i].magic && fstypes[i].magic == magic)
			return &fstypes[i];
	return NULL;
}

const struct ckpt_fstype *ckpt_storage__by_name(const char *name)
{
	if (!name || !*name)
		return NULL;
	for (size_t i = 0; i < NFSTYPES; i++)
		if (!strcmp(fstypes[i].name, name))
			return &fstypes[i];
	/* "fuse.juicefs" and "fuse.JuiceFS" are the same program; "fuse3.x" exists too */
	if (!strncmp(name, "fuse3.", 6)) {
		char alt[64];

		snprintf(alt, sizeof(alt), "fuse.%s", name + 6);
		return ckpt_storage__by_name(alt);
	}
	for (size_t i = 0; i < NFSTYPES; i++)
		if (!strcasecmp(fstypes[i].name, name))
			return &fstypes[i];
	return NULL;
}

const char *ckpt_storage__class_name(enum ckpt_fsclass c)
{
	switch (c) {
	case CKPT_FS_NETWORK: return "network";
	case CKPT_FS_BLOCK: return "block";
	case CKPT_FS_MEMORY: return "memory";
	case CKPT_FS_OVERLAY: return "overlay";
	case CKPT_FS_HOST: return "host";
	case CKPT_FS_PSEUDO: return "pseudo";
	case CKPT_FS_UNKNOWN: break;
	}
	return "unknown";
}

const char *ckpt_storage__verdict_name(enum ckpt_verdict v)
{
	switch (v) {
	case CKPT_VERDICT_PERSISTENT: return "persistent-shared";
	case CKPT_VERDICT_NODE_LOCAL: return "node-local";
	case CKPT_VERDICT_EPHEMERAL: return "ephemeral";
	case CKPT_VERDICT_SAME_AS_LOCAL: return "same-as-local";
	case CKPT_VERDICT_UNKNOWN: break;
	}
	return "unknown";
}

/* ---------------------------------------------------------------------------------------------
 * /proc/self/mountinfo
 *
 * One line per mount: "ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER".
 * ROOT, POINT and SOURCE escape space, tab, newline and backslash as \ooo.
 */

/* Copy the next space-separated field of *p into out (decoded), advance *p. 0, or -1 at the end
 * of the line. */
static int next_field(const char **p, char *out, size_t len)
{
	const char *s = *p;
	size_t n = 0;

	while (*s == ' ')
		s++;
	if (!*s || *s == '\n')
		return -1;
	while (*s && *s != ' ' && *s != '\n') {
		char c = *s++;

		if (c == '\\' && s[0] >= '0' && s[0] <= '3' && s[1] >= '0' && s[1] <= '7' &&
		    s[2] >= '0' && s[2] <= '7') {
			c = (char)((s[0] - '0') * 64 + (s[1] - '0') * 8 + (s[2] - '0'));
			s += 3;
		}
		if (n + 1 < len)
			out[n++] = c;
	}
	if (len)
		out[n] = '\0';
	*p = s;
	return 0;
}

/* Is path equal to base or below it? Both canonical. */
static int within(const char *path, const char *base)
{
	size_t n = strlen(base);

	if (n == 1 && base[0] == '/')
		return path[0] == '/';
	return !strncmp(path, base, n) && (path[n] == '\0' || path[n] == '/');
}

static int parse_line(const char *line, struct ckpt_mount *m)
{
	char f[1024];
	const char *p = line;

	memset(m, 0, sizeof(*m));
	if (next_field(&p, f, sizeof(f)) || next_field(&p, f, sizeof(f)) ||
	    next_field(&p, f, sizeof(f)) || sscanf(f, "%u:%u", &m->major, &m->minor) != 2 ||
	    next_field(&p, m->root, sizeof(m->root)) || next_field(&p, m->point, sizeof(m->point)) ||
	    next_field(&p, f, sizeof(f)))
		return -1;
	/* optional fields ("shared:1", "master:2") until the separator */
	do {
		if (next_field(&p, f, sizeof(f)))
			return -1;
	} while (strcmp(f, "-"));
	if (next_field(&p, m->fstype, sizeof(m->fstype)) ||
	    next_field(&p, m->source, sizeof(m->source)))
		return -1;
	return 0;
}

int ckpt_storage__find_mount(struct ckpt_mount *out, const char *text, const char *path,
			     dev_t dev)
{
	struct ckpt_mount m;
	size_t best_len = 0;
	int found = 0, best_dev = 0;

	memset(out, 0, sizeof(*out));
	if (!text || !path)
		return CKPT_ENOENT;
	for (const char *line = text; *line;) {
		const char *nl = strchr(line, '\n');

		if (parse_line(line, &m) == 0 && m.point[0] == '/' && within(path, m.point)) {
			size_t len = strlen(m.point);
			int dm = dev && makedev(m.major, m.minor) == dev;

			/* Prefer the device that stat(path) reports, then the deepest mount point;
			 * among equals the later line, which is mounted over the earlier. */
			if (!found || dm > best_dev || (dm == best_dev && len >= best_len)) {
				*out = m;
				best_len = len;
				best_dev = dm;
				found = 1;
			}
		}
		if (!nl)
			break;
		line = nl + 1;
	}
	return found ? CKPT_OK : CKPT_ENOENT;
}

char *ckpt_storage__read_mountinfo(const char *path)
{
	FILE *f = fopen(path ? path : "/proc/self/mountinfo", "re");
	char *buf = NULL, *nb;
	size_t len = 0, cap = 0, got;

	if (!f)
		return NULL;
	/* procfs files report size 0: read until EOF */
	do {
		if (cap - len < 4096) {
			if (!(nb = realloc(buf, cap = cap ? 2 * cap : 16384))) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		got = fread(buf + len, 1, cap - len - 1, f);
		len += got;
	} while (got > 0);
	fclose(f);
	buf[len] = '\0';
	return buf;
}

/* ---------------------------------------------------------------------------------------------
 * Probing and the verdict
 */

/* A mount source that names another machine: "nfs://server/export", "smb://...", or the
 * "[user@]host:/path" of NFS, sshfs and friends. "/dev/..", a plain word ("fuse", "tmpfs"),
 * or a local path do not. */
static int network_source(const char *src)
{
	static const char *const schemes[] = { "nfs://", "nfs4://", "smb://", "cifs://",
					       "sftp://", "ssh://", "ceph://", "gluster://",
					       "glusterfs://", "lustre://", "9p://" };
	const char *colon = strchr(src, ':'), *slash = strchr(src, '/');

	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (!strncasecmp(src, schemes[i], strlen(schemes[i])))
			return 1;
	/* host:path, with a non-empty host before any '/', and no "scheme://" (handled above) */
	return colon && colon != src && (!slash || colon < slash) && strncmp(colon, "://", 3) &&
	       src[0] != '/';
}

int ckpt_storage__probe(struct ckpt_fsinfo *out, const char *path, const char *mountinfo,
			struct ckpt_err *err)
{
	const struct ckpt_fstype *t = NULL;
	struct statfs sfs;
	struct statvfs svfs;
	struct stat st;

	memset(out, 0, sizeof(*out));
	out->node_local = -1;
	snprintf(out->path, sizeof(out->path), "%s", path);
	if (statfs(path, &sfs) < 0)
		return ckpt_err__errno(err, errno, "statfs %s", path);
	if (stat(path, &st) < 0)
		return ckpt_err__errno(err, errno, "stat %s", path);
	if (statvfs(path, &svfs) < 0)
		return ckpt_err__errno(err, errno, "statvfs %s", path);
	out->magic = (uint64_t)sfs.f_type & 0xFFFFFFFFu;
	out->dev = st.st_dev;
	out->free_bytes = (uint64_t)svfs.f_bavail * svfs.f_frsize;
	out->total_bytes = (uint64_t)svfs.f_blocks * svfs.f_frsize;
	if (mountinfo && ckpt_storage__find_mount(&out->mount, mountinfo, path, st.st_dev) == CKPT_OK)
		out->have_mount = 1;
	/* The mountinfo name is the precise one (nfs4 vs nfs, fuse.<subtype>); the magic serves
	 * when /proc is missing, or when the name is not in the table but the magic is. */
	if (out->have_mount)
		t = ckpt_storage__by_name(out->mount.fstype);
	if (!t || (t->cls == CKPT_FS_UNKNOWN && ckpt_storage__by_magic(out->magic) &&
		   ckpt_storage__by_magic(out->magic)->cls != CKPT_FS_UNKNOWN))
		t = ckpt_storage__by_magic(out->magic);
	if (out->have_mount && out->mount.fstype[0])
		snprintf(out->fstype, sizeof(out->fstype), "%s", out->mount.fstype);
	else if (t)
		snprintf(out->fstype, sizeof(out->fstype), "%s", t->name);
	else
		snprintf(out->fstype, sizeof(out->fstype), "0x%llx", (unsigned long long)out->magic);
	if (t) {
		out->cls = t->cls;
		out->caveat = t->caveat;
	}
	/* A FUSE filesystem the table does not name (fuse-nfs, a userspace SMB or NFS client)
	 * says where its data lives through its mount source: a network URL or host:path. */
	if (out->have_mount && !strncmp(out->mount.fstype, "fuse", 4) &&
	    (!ckpt_storage__by_name(out->mount.fstype) ||
	     ckpt_storage__by_name(out->mount.fstype)->cls == CKPT_FS_UNKNOWN) &&
	    network_source(out->mount.source)) {
		out->cls = CKPT_FS_NETWORK;
		out->caveat = NULL;
	}
	switch (out->cls) {
	case CKPT_FS_NETWORK: out->node_local = 0; break;
	case CKPT_FS_BLOCK:
	case CKPT_FS_MEMORY:
	case CKPT_FS_OVERLAY:
	case CKPT_FS_PSEUDO: out->node_local = 1; break;
	case CKPT_FS_HOST:
	case CKPT_FS_UNKNOWN: out->node_local = -1; break;
	}
	return CKPT_OK;
}

/* A block device reached over the network: Ceph RBD, NBD, DRBD. Persistent beyond this node,
 * readable by one node at a time. */
static int network_block(const char *source)
{
	return !strncmp(source, "/dev/rbd", 8) || !strncmp(source, "/dev/nbd", 8) ||
	       !strncmp(source, "/dev/drbd", 9);
}

/* "ext4 on /dev/nvme0n1p1" or "tmpfs" */
static void describe(char *buf, size_t len, const struct ckpt_fsinfo *fs)
{
	if (fs->have_mount && fs->mount.source[0] && strcmp(fs->mount.source, fs->fstype) &&
	    strcmp(fs->mount.source, "none"))
		snprintf(buf, len, "%s (%s)", fs->fstype, fs->mount.source);
	else
		snprintf(buf, len, "%s", fs->fstype);
}

enum ckpt_verdict ckpt_storage__verdict(const struct ckpt_fsinfo *s, const struct ckpt_fsinfo *l,
					enum ckpt_cluster cluster, const char *home, char *reason,
					size_t len)
{
	char what[700];
	const char *point = s->have_mount ? s->mount.point : "?";
	int whole = s->have_mount && !strcmp(s->mount.root, "/");

	describe(what, sizeof(what), s);
	/* 1. Kubernetes /home: a directory of the node's (or the container's) own filesystem,
	 * unless a volume is mounted at or inside it. A filesystem mounted above /home, or a
	 * directory of another one bound at /home (hostPath), is the node's. */
	if (cluster == CKPT_CLUSTER_KUBERNETES && home && within(s->path, home) &&
	    s->cls != CKPT_FS_NETWORK &&
	    (!s->have_mount || (within(home, s->mount.point) &&
				(strcmp(home, s->mount.point) || !whole)))) {
		snprintf(reason, len, "on Kubernetes %s is node-local and ephemeral (%s is on %s, "
			 "mounted at %s)", home, s->path, what, point);
		return CKPT_VERDICT_EPHEMERAL;
	}
	/* 2. gone with the process tree, the pod or the reboot, whatever the cluster */
	if (s->cls == CKPT_FS_MEMORY) {
		snprintf(reason, len, "%s is on %s, which lives in memory: it is gone at the next "
			 "reboot, pod restart or unmount", s->path, what);
		return CKPT_VERDICT_EPHEMERAL;
	}
	if (s->cls == CKPT_FS_OVERLAY) {
		snprintf(reason, len, "%s is on %s, a container's writable layer: it is gone with the "
			 "container (is the volume mounted there?)", s->path, what);
		return CKPT_VERDICT_EPHEMERAL;
	}
	if (s->have_mount && strstr(s->mount.root, "/kubernetes.io~empty-dir/")) {
		snprintf(reason, len, "%s is a Kubernetes emptyDir volume on %s: it is deleted with "
			 "the pod", s->path, what);
		return CKPT_VERDICT_EPHEMERAL;
	}
	if (s->cls == CKPT_FS_PSEUDO) {
		snprintf(reason, len, "%s is on %s, a kernel pseudo-filesystem, not storage", s->path,
			 what);
		return CKPT_VERDICT_EPHEMERAL;
	}
	/* 3. one filesystem for both tiers: one failure loses both copies. On a network filesystem
	 * the shared copy is still safe (local_dir gets its own warning). */
	if (l && l->dev == s->dev && s->cls != CKPT_FS_NETWORK) {
		snprintf(reason, len, "%s is on the same filesystem as local_dir %s (%s, device "
			 "%u:%u): one lost node or disk loses both copies", s->path, l->path, what,
			 major(s->dev), minor(s->dev));
		return CKPT_VERDICT_SAME_AS_LOCAL;
	}
	/* 4. */
	if (s->cls == CKPT_FS_NETWORK) {
		snprintf(reason, len, "%s is on %s, a network filesystem", s->path, what);
		return CKPT_VERDICT_PERSISTENT;
	}
	/* 5. */
	if (s->cls == CKPT_FS_BLOCK) {
		if (s->have_mount && network_block(s->mount.source)) {
			snprintf(reason, len, "%s is on %s, a network block device: it may outlive "
				 "this node, but other nodes cannot read it", s->path, what);
			return CKPT_VERDICT_UNKNOWN;
		}
		if (cluster == CKPT_CLUSTER_KUBERNETES && whole && strcmp(point, "/")) {
			snprintf(reason, len, "%s is on %s mounted at %s: on Kubernetes that is a "
				 "block-backed PersistentVolume (persistent) or a node disk (lost with "
				 "the node); libckpt cannot tell which", s->path, what, point);
			return CKPT_VERDICT_UNKNOWN;
		}
		snprintf(reason, len, "%s is on %s, a disk of this node: it is lost when the node "
			 "is recreated", s->path, what);
		return CKPT_VERDICT_NODE_LOCAL;
	}
	/* 6. */
	if (s->cls == CKPT_FS_HOST)
		snprintf(reason, len, "%s is on %s, a directory of the VM host: it outlives this "
			 "machine, not the host; libckpt cannot tell more", s->path, what);
	else
		snprintf(reason, len, "%s is on %s, a filesystem libckpt does not know", s->path,
			 what);
	return CKPT_VERDICT_UNKNOWN;
}

/* ---------------------------------------------------------------------------------------------
 * The check at open
 */

int ckpt_storage__check(const struct ckpt_config *cfg, const char *local, const char *shared,
			uint32_t rank, struct ckpt_err *err)
{
	struct ckpt_fsinfo *fs;
	char reason[CKPT_ERRMSG_MAX];
	char *mi;
	enum ckpt_cluster cluster;
	enum ckpt_verdict v;
	int rc, loud = rank == 0 ? 1 : 2;

	if (!(fs = malloc(2 * sizeof(*fs))))
		return ckpt_err__set(err, CKPT_ENOMEM, "out of memory classifying the directories");
	mi = ckpt_storage__read_mountinfo(NULL);
	if ((rc = ckpt_storage__probe(&fs[0], local, mi, err)) < 0 ||
	    (rc = ckpt_storage__probe(&fs[1], shared, mi, err)) < 0)
		goto out;
	cluster = ckpt_storage__cluster(cfg, NULL);
	v = ckpt_storage__verdict(&fs[1], &fs[0], cluster, "/home", reason, sizeof(reason));
	switch (v) {
	case CKPT_VERDICT_NODE_LOCAL:
	case CKPT_VERDICT_EPHEMERAL:
	case CKPT_VERDICT_SAME_AS_LOCAL:
		if (cfg->require_persistent) {
			rc = ckpt_err__set(err, CKPT_EINVAL, "shared_dir is not persistent (%s): %s; "
					   "%s (require_persistent=1 refuses it)",
					   ckpt_storage__verdict_name(v), reason,
					   ckpt_storage__advice(cluster));
			goto out;
		}
		ckpt_config__log(cfg, loud, "shared_dir is not persistent (%s): %s; %s "
				 "(require_persistent=1 makes this an error)",
				 ckpt_storage__verdict_name(v), reason, ckpt_storage__advice(cluster));
		break;
	case CKPT_VERDICT_UNKNOWN:
		ckpt_config__log(cfg, 2, "shared_dir: cannot tell whether it is persistent: %s",
				 reason);
		break;
	case CKPT_VERDICT_PERSISTENT:
		ckpt_config__log(cfg, 2, "shared_dir: %s", reason);
		break;
	}
	if (fs[1].caveat && v == CKPT_VERDICT_PERSISTENT)
		ckpt_config__log(cfg, loud, "shared_dir %s is on %s, %s", shared, fs[1].fstype,
				 fs[1].caveat);
	if (fs[0].cls == CKPT_FS_NETWORK)
		ckpt_config__log(cfg, loud, "local_dir %s is on %s, a network filesystem: ckpt_save "
				 "runs at network speed; point local_dir at node-local NVMe", local,
				 fs[0].fstype);
	else if (fs[0].cls == CKPT_FS_OVERLAY)
		ckpt_config__log(cfg, 2, "local_dir %s is on %s, the container's writable layer: "
				 "mount the node's NVMe there", local, fs[0].fstype);
	rc = CKPT_OK;
out:
	free(mi);
	free(fs);
	return rc;
}
