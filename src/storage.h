/* SPDX-License-Identifier: MIT */
/* Where the job runs: the cluster type, the launcher's rank (storage_cluster.c), and what kind of
 * filesystem holds each tier, network or node-local, persistent or ephemeral (storage_class.c),
 * for ckpt_open and `ckpt doctor`. Not to be confused with the store (store.h): where libckpt's
 * own files go and how they are written. */
#ifndef CKPT_STORAGE_H
#define CKPT_STORAGE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "error.h"

/*
 * What a filesystem type is, as far as checkpoints care. The class is a property of the type
 * alone; where the data lives (a disk of this node, a server) decides the persistence verdict.
 */
enum ckpt_fsclass {
	CKPT_FS_UNKNOWN = 0,
	CKPT_FS_NETWORK,  /* nfs, lustre, gpfs, cephfs, beegfs, cifs, network FUSE: outlives the node */
	CKPT_FS_BLOCK,    /* ext4, xfs, btrfs, zfs, ... on a block device: a disk of some node */
	CKPT_FS_MEMORY,   /* tmpfs, ramfs: gone at reboot, pod restart or unmount */
	CKPT_FS_OVERLAY,  /* overlay, aufs: a container's writable layer, gone with the container */
	CKPT_FS_HOST,     /* 9p, virtiofs, vboxsf: a VM host's directory; no promise either way */
	CKPT_FS_PSEUDO,   /* proc, sysfs, cgroup, ...: not a place for data */
};

/* The persistence verdict on shared_dir. Pinned names (ckpt_storage__verdict_name) appear in
 * warnings, in `ckpt doctor --json` and in docs/STORAGE.md. */
enum ckpt_verdict {
	CKPT_VERDICT_PERSISTENT = 0, /* "persistent-shared": a network/cluster filesystem */
	CKPT_VERDICT_NODE_LOCAL,     /* "node-local": a disk of this node (lost with the node) */
	CKPT_VERDICT_EPHEMERAL,      /* "ephemeral": memory, a container layer, /home on Kubernetes */
	CKPT_VERDICT_SAME_AS_LOCAL,  /* "same-as-local": the filesystem that holds local_dir */
	CKPT_VERDICT_UNKNOWN,        /* "unknown": libckpt cannot tell; no warning */
};

/* One entry of the filesystem table: the statfs(2) magic (0 when the type has none of its own,
 * e.g. a FUSE subtype), the name /proc/self/mountinfo gives, its class, and a caveat to print
 * with it (NULL when none), e.g. object stores whose rename is not atomic. */
struct ckpt_fstype {
	uint64_t magic;
	const char *name;
	enum ckpt_fsclass cls;
	const char *caveat;
};

/* The table, by magic or by mountinfo name ("nfs4", "fuse.juicefs"); NULL when unknown. A name
 * "fuse.X" with an unknown X matches nothing: plain FUSE says nothing about where data lives. */
const struct ckpt_fstype *ckpt_storage__by_magic(uint64_t magic);
const struct ckpt_fstype *ckpt_storage__by_name(const char *name);
/* "network", "block", "memory", "overlay", "host", "pseudo", "unknown". */
const char *ckpt_storage__class_name(enum ckpt_fsclass c);
/* "persistent-shared", "node-local", "ephemeral", "same-as-local", "unknown". */
const char *ckpt_storage__verdict_name(enum ckpt_verdict v);

/* The mount that holds a path, from one line of /proc/self/mountinfo (octal escapes decoded). */
struct ckpt_mount {
	unsigned major, minor;
	char root[1024];       /* the directory of the filesystem mounted there ("/" for all of it) */
	char point[1024];      /* the mount point */
	char fstype[64];       /* "ext4", "nfs4", "fuse.sshfs" */
	char source[512];      /* "/dev/nvme0n1p2", "server:/export", "tmpfs" */
};

/*
 * Find in `text` (the contents of a mountinfo file) the mount that holds `path` (canonical, as
 * realpath gives it): the last-mounted entry with the longest mount point that is `path` or one
 * of its parents, preferring entries whose device is `dev` (st_dev of path; pass 0 for any), so
 * that a bind mount of another filesystem over a parent is not mistaken for path's own.
 * CKPT_OK, or CKPT_ENOENT when no line matches (out is then zeroed). Pure: no system calls.
 */
int ckpt_storage__find_mount(struct ckpt_mount *out, const char *text, const char *path,
			     dev_t dev);

/* What ckpt_storage__probe found out about one directory. */
struct ckpt_fsinfo {
	char path[4096];            /* canonical */
	uint64_t magic;             /* statfs f_type */
	char fstype[64];            /* mountinfo's name, else the table's, else "0x<magic>" */
	enum ckpt_fsclass cls;
	const char *caveat;         /* the table's caveat, or NULL */
	int node_local;             /* 1 on this node only, 0 reachable from other nodes, -1 unknown */
	dev_t dev;                  /* st_dev */
	uint64_t free_bytes;        /* available to this user (statvfs f_bavail) */
	uint64_t total_bytes;
	int have_mount;             /* mount below is valid */
	struct ckpt_mount mount;
};

/*
 * statfs, stat and statvfs of `path` (a directory, canonical), and the matching line of
 * `mountinfo` (the file's text; NULL: look up nothing, classify by magic alone). CKPT_OK, or the
 * translated errno of the failing call with its message in err.
 */
int ckpt_storage__probe(struct ckpt_fsinfo *out, const char *path, const char *mountinfo,
			struct ckpt_err *err);

/* Read /proc/self/mountinfo (or `path`, for tests) into a malloc'd NUL-terminated string;
 * NULL when it cannot be read (not Linux, no /proc): classification then uses statfs alone. */
char *ckpt_storage__read_mountinfo(const char *path);

/*
 * The persistence verdict on `shared` given `local` (NULL: no comparison) on cluster type
 * `cluster` (not AUTO), where the home directories are below `home` ("/home"; a parameter so
 * that tests need not write there). The reason, one clause naming the evidence and what to do,
 * goes to `reason`. Pure: no system calls. The rules, first match wins:
 *   1. Kubernetes, path at or below `home`, and the filesystem is mounted at `home` or above it
 *      (not a volume mounted inside it) -> ephemeral
 *   2. memory filesystem -> ephemeral;  overlay -> ephemeral;  a Kubernetes emptyDir -> ephemeral
 *   3. same device as local_dir, not a network filesystem -> same-as-local
 *   4. network filesystem -> persistent-shared
 *   5. block filesystem -> node-local (but unknown for a network block device, or on Kubernetes
 *      for a whole device mounted on its own: that may be a block-backed PersistentVolume)
 *   6. anything else -> unknown
 */
enum ckpt_verdict ckpt_storage__verdict(const struct ckpt_fsinfo *shared,
					const struct ckpt_fsinfo *local, enum ckpt_cluster cluster,
					const char *home, char *reason, size_t len);

/* The cluster type: cfg's `cluster` key unless "auto", else Slurm when SLURM_JOB_ID (or
 * SLURM_JOBID) is set, else Kubernetes when KUBERNETES_SERVICE_HOST is set, else none. Slurm
 * wins when both are set: Slurm on Kubernetes (Slinky) keeps the Slurm /home. *why (may be NULL)
 * receives a static phrase naming the evidence ("SLURM_JOB_ID", "config key cluster"). */
enum ckpt_cluster ckpt_storage__cluster(const struct ckpt_config *cfg, const char **why);

/* Where persistent data belongs on a cluster type: one sentence for messages and the doctor. */
const char *ckpt_storage__advice(enum ckpt_cluster cluster);

/* The rank and size of this process from its launcher's environment, for the tools: Open MPI
 * (OMPI_COMM_WORLD_RANK/SIZE), PMIx (PMIX_RANK, size from OMPI/SLURM), MPICH/Hydra
 * (PMI_RANK/PMI_SIZE), then Slurm (SLURM_PROCID/SLURM_NTASKS): an MPI launcher's variables come
 * first because mpirun inside a Slurm allocation leaves the batch step's SLURM_PROCID in place.
 * *size is 0 when unknown. *source names the rank variable. CKPT_OK, or CKPT_ENOENT when no
 * variable holds a valid rank. */
int ckpt_storage__launcher_rank(uint32_t *rank, uint32_t *size, const char **source);

/*
 * The check ckpt_open makes after both directories exist: classify them (reading mountinfo
 * once) and, when shared_dir is not persistent, warn on standard error (rank 0 at log_level 1,
 * other ranks at 2, so that a 1000-rank job prints one warning, not a thousand) or, with
 * require_persistent=1, fail with CKPT_EINVAL and the reason in err. local_dir on a network
 * filesystem is a warning too (saves would run at network speed). Cheap: 2 statfs, 2 stat,
 * 2 statvfs and one read of mountinfo.
 */
int ckpt_storage__check(const struct ckpt_config *cfg, const char *local, const char *shared,
			uint32_t rank, struct ckpt_err *err);

#endif
