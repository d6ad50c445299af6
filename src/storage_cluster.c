/* SPDX-License-Identifier: MIT */
/* Where the job runs: the cluster type (Slurm, Kubernetes, none), where persistent data belongs
 * there, and this process's rank from its launcher, all from variables read through config.c. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "ckpt.h"
#include "storage.h"

enum ckpt_cluster ckpt_storage__cluster(const struct ckpt_config *cfg, const char **why)
{
	const char *w = "no SLURM_JOB_ID or KUBERNETES_SERVICE_HOST in the environment";
	enum ckpt_cluster c = CKPT_CLUSTER_NONE;

	if (cfg && cfg->cluster != CKPT_CLUSTER_AUTO) {
		c = cfg->cluster;
		w = "config key cluster";
	} else if (ckpt_config__env("SLURM_JOB_ID")) {
		c = CKPT_CLUSTER_SLURM;
		w = "SLURM_JOB_ID";
	} else if (ckpt_config__env("SLURM_JOBID")) {
		c = CKPT_CLUSTER_SLURM;
		w = "SLURM_JOBID";
	} else if (ckpt_config__env("KUBERNETES_SERVICE_HOST")) {
		c = CKPT_CLUSTER_KUBERNETES;
		w = "KUBERNETES_SERVICE_HOST";
	}
	if (why)
		*why = w;
	return c;
}

const char *ckpt_storage__advice(enum ckpt_cluster cluster)
{
	switch (cluster) {
	case CKPT_CLUSTER_KUBERNETES:
		return "mount a PersistentVolumeClaim (the shared volume) and point shared_dir at it";
	case CKPT_CLUSTER_SLURM:
		return "point shared_dir at /home (the cluster's persistent NFS share) or another "
		       "shared filesystem";
	default:
		return "point shared_dir at a network filesystem that outlives this node";
	}
}

static int env_u32(const char *name, uint32_t *out)
{
	const char *v = ckpt_config__env(name);
	char *end;
	unsigned long long x;

	if (!v || *v < '0' || *v > '9')
		return -1;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno || *end || x >= UINT32_MAX)
		return -1;
	*out = (uint32_t)x;
	return 0;
}

int ckpt_storage__launcher_rank(uint32_t *rank, uint32_t *size, const char **source)
{
	/* rank variable, its size variable (NULL: none of its own) */
	static const char *const vars[][2] = {
		{ "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE" },
		{ "PMI_RANK", "PMI_SIZE" },
		{ "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE" },
		{ "PMIX_RANK", NULL },
		{ "SLURM_PROCID", "SLURM_NTASKS" },
	};
	uint32_t r, n = 0;

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		if (env_u32(vars[i][0], &r))
			continue;
		if (!vars[i][1] || env_u32(vars[i][1], &n))
			n = 0;
		if (!vars[i][1] && env_u32("SLURM_NTASKS", &n))
			n = 0; /* srun --mpi=pmix: the step's task count */
		if (n && r >= n)
			n = 0; /* inconsistent: trust the rank, not the size */
		*rank = r;
		if (size)
			*size = n;
		if (source)
			*source = vars[i][0];
		return CKPT_OK;
	}
	return CKPT_ENOENT;
}
