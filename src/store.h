/* SPDX-License-Identifier: MIT */
/* The store: where files go on both tiers and how they get there durably. Layout and names
 * (store_layout.c), durable steps and guarded reads (store_durable.c), scans and removal
 * (store_scan.c), host name, clock and random ids (store_host.c). */
#ifndef CKPT_STORE_H
#define CKPT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/*
 * Layout (docs/FORMAT.md):
 *   <local_dir>/<name>/step-<20 digits>/rank-<6 digits>.ckl             raw shard, one per rank
 *   <shared_dir>/<name>/step-<20 digits>/rank-<6 digits>-<save id>.ckz  compressed shard
 *   <shared_dir>/<name>/step-<20 digits>/MANIFEST                       commit record
 *   temporary files: .tmp.<host>.<pid>.<random>.<final name>, in the same directory
 */
#define CKPT_PATH_MAX 4096
#define CKPT_MANIFEST_NAME "MANIFEST"

/* ---- store_layout.c: names and paths ---- */
int ckpt_store__step_dir(char *buf, size_t len, const char *jobdir, uint64_t step);
void ckpt_store__local_name(char *buf, size_t len, uint32_t rank);
void ckpt_store__shared_name(char *buf, size_t len, uint32_t rank, uint64_t save_id);
/* Parse "step-NNNN..." into *step; 0 on success. */
int ckpt_store__parse_step(const char *name, uint64_t *step);
/* A temporary name in dir for final_base, unique across hosts and processes. */
int ckpt_store__tmp_path(char *buf, size_t len, const char *dir, const char *final_base);

/* ---- store_durable.c: durable steps, guarded reads ---- */
/* A step directory must be a real directory: a symlink planted in its place (pointing into
 * another job or anywhere else) is never followed. CKPT_ENOENT when absent, CKPT_ECORRUPT for a
 * symlink or another kind of file. */
int ckpt_store__check_step_dir(const char *path, struct ckpt_err *err);
/* Is `dir` still the directory (device, inode) the job opened? A volume unmounted under a running
 * job leaves its bare mount point: writing there would "commit" onto the root filesystem.
 * CKPT_EIO with a message when it changed or vanished. */
int ckpt_store__same_dir(const char *dir, uint64_t dev, uint64_t ino, struct ckpt_err *err);
/* mkdir -p; each directory it creates is made durable by fsync of its parent. */
int ckpt_store__mkdirs(const char *path, struct ckpt_err *err);
/* fsync a directory so that entries created or renamed in it survive a crash. */
int ckpt_store__fsync_dir(const char *path, struct ckpt_err *err);
/* rename(tmp, dir/final_base) only: the new name is visible, not yet durable. */
int ckpt_store__rename(const char *tmp, const char *dir, const char *final_base,
		       struct ckpt_err *err);
/* rename(tmp, dir/final_base) then fsync(dir): after this returns the new name is durable. */
int ckpt_store__publish(const char *tmp, const char *dir, const char *final_base,
			struct ckpt_err *err);
/* Write a small file durably under dir/final_base (tmp, write, fsync, rename, fsync dir). */
int ckpt_store__write_durable(const char *dir, const char *final_base, const void *buf, size_t len,
			      struct ckpt_err *err);
/* The shared filesystem's clock: the mtime (ns) of a probe file created in dir and removed at
 * once. Ages of files written by other nodes are judged with this, never with this node's
 * clock (docs/CONCURRENCY.md). */
int ckpt_store__fs_now(const char *dir, uint64_t *ns, struct ckpt_err *err);
/* Create dir/final_base durably with buf (tmp, write, fsync, link, fsync dir) only when the name
 * does not exist: 0 created, 1 the name existed (nothing written), or a CKPT_E* error. */
int ckpt_store__create_durable(const char *dir, const char *final_base, const void *buf,
			       size_t len, struct ckpt_err *err);
/* The writer lease <jobdir>/.writer (docs/FORMAT.md 2.1): one line, at most 512 bytes. */
#define CKPT_LEASE_NAME ".writer"
#define CKPT_LEASE_MAX 512
struct ckpt_store_lease {
	uint64_t id;          /* the writer's random id */
	long pid;             /* its rank 0's process id */
	char host[256];       /* its host, as in temporary names */
};
/* Format l into buf (CKPT_LEASE_MAX bytes); returns the length. */
int ckpt_store__lease_format(char *buf, const struct ckpt_store_lease *l);
/* Read <jobdir>/.writer: 0 with *l, its mtime (ns) and its age in fs time (seconds, when age is
 * not NULL: ckpt_store__fs_now in jobdir); 1 when there is none; -1 when it is there but does
 * not parse (then judged by mtime and age alone). */
int ckpt_store__lease_read(const char *jobdir, struct ckpt_store_lease *l, int64_t *mtime_ns,
			   double *age);
/* Read a whole regular file of at most max bytes (no symlinks followed). */
int ckpt_store__read_file(const char *path, uint8_t **out, size_t *len, size_t max,
			  struct ckpt_err *err);

/* ---- store_scan.c: scans and removal ---- */
/* Step numbers present under jobdir (any state), ascending. *steps is malloc'd (may be NULL). */
int ckpt_store__list_steps(const char *jobdir, uint64_t **steps, size_t *n, struct ckpt_err *err);
/* Remove temporary files left in jobdir and its step directories by dead processes of this host,
 * and every copy retired into jobdir itself (ckpt_store__retire). Returns how many were removed.
 * On a shared tier only for the holder of the writer lease (docs/CONCURRENCY.md). */
int ckpt_store__cleanup_tmp(const char *jobdir);
/* Remove a step directory. The MANIFEST goes first and its removal is made durable before any
 * shard, so a crash midway leaves an uncommitted step, never a committed one with holes. */
int ckpt_store__remove_step(const char *stepdir, struct ckpt_err *err);
/* Move a file or step directory that is no longer wanted out of sight: rename it to a .tmp.*
 * name in jobdir (written to trash, len bytes), which scans ignore and ckpt_store__cleanup_tmp
 * removes, whoever retired it. Fast whatever the size. 0, or -1 with errno. */
int ckpt_store__retire(const char *path, const char *jobdir, char *trash, size_t len);
/* Remove what ckpt_store__retire moved away: a file, or a directory and its files. */
void ckpt_store__remove_retired(const char *trash);
/* Remove every file "rank-*" in stepdir whose save id differs from keep_id (superseded shards).
 * Only for a caller that knows no other writer is alive and readers had their grace period. */
void ckpt_store__remove_other_saves(const char *stepdir, uint64_t keep_id);
/* The paths of the shards "rank-*.ckz" in stepdir whose save id differs from keep_id (what a
 * commit superseded): *paths is malloc'd, each path too (ckpt_store__free_paths). -1 when out of
 * memory. */
int ckpt_store__list_other_saves(const char *stepdir, uint64_t keep_id, char ***paths, size_t *n);
void ckpt_store__free_paths(char **paths, size_t n);
/* Rule S of docs/CONCURRENCY.md, for an open or `ckpt gc` that holds the writer lease: remove
 * the shards of stepdir whose save id differs from keep_id, the save named by the MANIFEST whose
 * lstat the caller took before reading it (manifest_st), only when (1) the MANIFEST is still that
 * file, (2) the shard's mtime is older than the MANIFEST's (it existed before the commit that
 * superseded it; a shard renamed into place since is a writer's in-flight one) and (3) the
 * MANIFEST is at least grace_s seconds old at fs time fs_now_ns. Returns how many it removed. */
struct stat;
int ckpt_store__sweep_superseded(const char *stepdir, uint64_t keep_id,
				 const struct stat *manifest_st, uint64_t fs_now_ns, double grace_s);

/* ---- store_host.c: this host and this moment ---- */
/* A random non-zero 64-bit value (getrandom; time and pid if that fails). */
uint64_t ckpt_store__random64(void);
/* CLOCK_REALTIME in nanoseconds (the created_ns of headers and manifests). */
uint64_t ckpt_store__now_ns(void);
/* gethostname() made a safe path component ('/', '.', spaces and control
 * characters become '_'). */
const char *ckpt_store__hostname(void);

#endif
